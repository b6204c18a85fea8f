//! The typed error of a procedure call.

use std::fmt;

use wasmtime::{Trap, WasmBacktrace};

use crate::limiter::Refusal;

/// The limit a call exceeded, named as Python's `ResourceLimitExceeded.limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    Fuel,
    Timeout,
    Memory,
    Stack,
    TableElements,
    Instances,
    Tables,
    Memories,
}

impl Limit {
    /// The name Python reports in `ResourceLimitExceeded.limit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fuel => "fuel",
            Self::Timeout => "timeout",
            Self::Memory => "memory",
            Self::Stack => "stack",
            Self::TableElements => "max_table_elements",
            Self::Instances => "max_instances",
            Self::Tables => "max_tables",
            Self::Memories => "max_memories",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One frame of a guest backtrace, innermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The module's name, from its name section.
    pub module: Option<String>,
    /// The function's name, from the name section (`$name` in WAT).
    pub function: Option<String>,
    /// The function's index in the module, for frames without a name.
    pub func_index: u32,
    /// Byte offset of the trapping instruction in the module.
    pub offset: Option<usize>,
    /// Source file and line, from DWARF when the module carries it.
    pub file: Option<String>,
    pub line: Option<u32>,
}

impl Frame {
    fn from_info(info: &wasmtime::FrameInfo) -> Self {
        let symbol = info.symbols().first();
        Self {
            module: info.module().name().map(str::to_owned),
            function: info.func_name().map(str::to_owned),
            func_index: info.func_index(),
            offset: info.module_offset(),
            file: symbol.and_then(|s| s.file()).map(str::to_owned),
            line: symbol.and_then(wasmtime::FrameSymbol::line),
        }
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}!", self.module.as_deref().unwrap_or("<module>"))?;
        match &self.function {
            Some(name) => f.write_str(name)?,
            None => write!(f, "<wasm function {}>", self.func_index)?,
        }
        if let Some(offset) = self.offset {
            write!(f, " @ {offset:#x}")?;
        }
        if let (Some(file), Some(line)) = (&self.file, self.line) {
            write!(f, " ({file}:{line})")?;
        }
        Ok(())
    }
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The guest used up one of its [`Limits`](crate::Limits).
    #[error("{limit} limit exceeded: {message}")]
    LimitExceeded { limit: Limit, message: String },
    /// The guest trapped.
    #[error("trap: {message}")]
    Trap {
        message: String,
        backtrace: Vec<Frame>,
    },
    /// The call does not fit the module: missing export, wrong signature.
    #[error("ABI error: {message}")]
    Abi { message: String },
}

impl CallError {
    /// The machine-readable code of the matching Python `ProcedureError`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::LimitExceeded { .. } => "limit-exceeded",
            Self::Trap { .. } => "trap",
            Self::Abi { .. } => "abi-error",
        }
    }

    /// The message, without the kind `Display` puts in front.
    pub fn message(&self) -> &str {
        match self {
            Self::LimitExceeded { message, .. }
            | Self::Trap { message, .. }
            | Self::Abi { message } => message,
        }
    }

    /// The name of the limit exceeded (`Limit::as_str`), if that is what happened.
    pub fn limit_name(&self) -> Option<&'static str> {
        match self {
            Self::LimitExceeded { limit, .. } => Some(limit.as_str()),
            _ => None,
        }
    }

    /// A trap's frames, innermost first, as text; empty otherwise.
    pub fn frame_lines(&self) -> Vec<String> {
        match self {
            Self::Trap { backtrace, .. } => backtrace.iter().map(ToString::to_string).collect(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn abi(message: impl Into<String>) -> Self {
        Self::Abi {
            message: message.into(),
        }
    }

    /// Classifies an error from instantiating or calling the guest.
    ///
    /// `refusal` is what the store's limiter refused during the call: a trap
    /// that follows a refused growth is that limit, not a guest bug. Fuel,
    /// deadline and stack traps are exact whatever was refused before them.
    pub(crate) fn from_wasmtime(err: &wasmtime::Error, refusal: Option<Refusal>) -> Self {
        let trap = err.downcast_ref::<Trap>().copied();
        let limit = |limit, message: String| Self::LimitExceeded { limit, message };
        let cause = || describe(err, trap);
        match (trap, refusal) {
            (Some(Trap::OutOfFuel), _) => limit(Limit::Fuel, "fuel exhausted".into()),
            (Some(Trap::Interrupt), _) => {
                limit(Limit::Timeout, "wall-clock deadline exceeded".into())
            }
            (Some(Trap::StackOverflow), _) => limit(Limit::Stack, "wasm stack exhausted".into()),
            (_, Some(Refusal::Memory { desired })) => limit(
                Limit::Memory,
                format!(
                    "refused to grow linear memory to {desired} bytes ({})",
                    cause()
                ),
            ),
            (_, Some(Refusal::TableElements { desired })) => limit(
                Limit::TableElements,
                format!(
                    "refused to grow a table to {desired} elements ({})",
                    cause()
                ),
            ),
            // Not a trap: instantiation refused, or a host function's error.
            (None, None) => match count_limit(err) {
                Some(exceeded) => limit(exceeded, cause()),
                None => Self::Trap {
                    message: cause(),
                    backtrace: backtrace(err),
                },
            },
            (Some(_), None) => Self::Trap {
                message: cause(),
                backtrace: backtrace(err),
            },
        }
    }
}

/// The count limit an instantiation error reports. Wasmtime asks the limiter
/// for these maxima but does not report their use to it, so its message (of
/// the pinned wasmtime, checked by the tests) is the only witness.
fn count_limit(err: &wasmtime::Error) -> Option<Limit> {
    let message = err.to_string();
    [
        ("instance count too high", Limit::Instances),
        ("table count too high", Limit::Tables),
        ("memory count too high", Limit::Memories),
    ]
    .into_iter()
    .find_map(|(marker, limit)| message.contains(marker).then_some(limit))
}

/// What went wrong, in one line: the trap, or the error without the
/// backtrace wasmtime attaches as context (that goes to [`Frame`]s).
fn describe(err: &wasmtime::Error, trap: Option<Trap>) -> String {
    match trap {
        // As Python's messages: without the "wasm trap: " every trap has.
        Some(trap) => {
            let text = trap.to_string();
            match text.strip_prefix("wasm trap: ") {
                Some(bare) => bare.to_owned(),
                None => text,
            }
        }
        None if err.is::<WasmBacktrace>() => err.root_cause().to_string(),
        None => format!("{err:#}"),
    }
}

fn backtrace(err: &wasmtime::Error) -> Vec<Frame> {
    err.downcast_ref::<WasmBacktrace>()
        .map(|bt| bt.frames().iter().map(Frame::from_info).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Engine, Instance, Module, Store};

    fn trap_of(wat: &str, export: &str) -> CallError {
        let engine = Engine::default();
        let module = Module::new(&engine, wat).unwrap();
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let func = instance.get_func(&mut store, export).unwrap();
        let err = func.call(&mut store, &[], &mut []).unwrap_err();
        CallError::from_wasmtime(&err, None)
    }

    #[test]
    fn trap_carries_backtrace_with_wat_names() {
        let err = trap_of(
            r#"(module $proc
                (func $inner unreachable)
                (func $outer call $inner)
                (func (export "run") call $outer))"#,
            "run",
        );
        let CallError::Trap { message, backtrace } = &err else {
            panic!("not a trap: {err:?}");
        };
        assert_eq!(message, "wasm `unreachable` instruction executed");
        let names: Vec<_> = backtrace.iter().map(|f| f.function.as_deref()).collect();
        assert_eq!(names[..2], [Some("inner"), Some("outer")]);
        assert_eq!(backtrace[0].module.as_deref(), Some("proc"));
        assert!(backtrace[0].offset.is_some());
        assert_eq!(backtrace[2].func_index, 2);
        assert_eq!(err.code(), "trap");
        assert!(backtrace[0].to_string().starts_with("proc!inner @ 0x"));
    }

    #[test]
    fn trap_after_refusal_is_the_refused_limit() {
        let err = wasmtime::Error::from(Trap::UnreachableCodeReached);
        let memory = CallError::from_wasmtime(&err, Some(Refusal::Memory { desired: 1 << 20 }));
        assert!(matches!(
            memory,
            CallError::LimitExceeded {
                limit: Limit::Memory,
                ..
            }
        ));
        assert_eq!(memory.code(), "limit-exceeded");
        let table = CallError::from_wasmtime(&err, Some(Refusal::TableElements { desired: 9 }));
        assert!(matches!(
            table,
            CallError::LimitExceeded {
                limit: Limit::TableElements,
                ..
            }
        ));
    }

    #[test]
    fn fuel_timeout_and_stack_win_over_a_refusal() {
        let refusal = Some(Refusal::Memory { desired: 1 << 20 });
        for (trap, expected) in [
            (Trap::OutOfFuel, Limit::Fuel),
            (Trap::Interrupt, Limit::Timeout),
            (Trap::StackOverflow, Limit::Stack),
        ] {
            let err = CallError::from_wasmtime(&wasmtime::Error::from(trap), refusal);
            match err {
                CallError::LimitExceeded { limit, .. } => assert_eq!(limit, expected),
                other => panic!("{trap:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn limit_names_match_python() {
        // runtime.py's `translate_trap` reports these names today.
        let names = [
            Limit::Fuel,
            Limit::Timeout,
            Limit::Memory,
            Limit::Stack,
            Limit::TableElements,
            Limit::Instances,
            Limit::Tables,
            Limit::Memories,
        ]
        .map(Limit::as_str);
        assert_eq!(
            names,
            [
                "fuel",
                "timeout",
                "memory",
                "stack",
                "max_table_elements",
                "max_instances",
                "max_tables",
                "max_memories",
            ]
        );
    }
}
