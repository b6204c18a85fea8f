//! `Numeric.canonical`: a SingleStore Canonical-ABI function (wit-bindgen
//! 0.2) of numbers, strings and byte lists, run whole in the core — the
//! buffers allocated with the guest's `canonical_abi_realloc`, the export
//! called with the flat values, a string or `list<u8>` result read from the
//! return area and handed back to `canonical_abi_free`, all on one budget,
//! exactly as `singlestore/abi.py` (the general path, which keeps every
//! other type) does it and words its failures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use wasmtime::{Memory, ValRaw};

use super::numeric::{
    failure_exception, hook_error, slot_args, within_arg_bytes, Answer, Failure, Kind, Param,
    TallyInner, Target,
};
use super::pinned::{Pinned, Pool};
use super::with_gil;
use crate::basic::{self, Arg};
use crate::error::CallError;
use crate::pool::Instances;
use crate::typed::{Export, NumType};

const REALLOC: &str = "canonical_abi_realloc";
const FREE: &str = "canonical_abi_free";

/// What the function returns, as this path lifts it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Returns {
    /// A number of a kind, or nothing (`unit`).
    Num(Option<Kind>),
    /// A `string` (through the return area).
    Text,
    /// A `list<u8>` (through the return area).
    Bytes,
}

/// One function, its exports prepared against the module.
pub struct Canonical {
    pool: Pool,
    // The function's WIT name, as messages give it.
    name: Box<str>,
    export: Export,
    realloc: Option<Export>,
    free: Option<Export>,
    specs: Box<[Param]>,
    // The number kinds of the parameters; empty when some are buffers.
    params: Box<[Kind]>,
    returns: Returns,
    max_arg_bytes: usize,
    max_result_bytes: usize,
    tally: Arc<TallyInner>,
    fault: Py<PyAny>,
    // too_many_arg_bytes(size), canonical_error(kind, message, seconds),
    // not_utf8(name, data, seconds): see invoke.HostedHooks
    hooks: Py<PyAny>,
}

/// Why a run failed before the guest's own failure is classified.
enum Fail {
    Call(CallError),
    /// As `singlestore/abi.py` raises it: `kind` "abi" or "memory", with
    /// the message.
    Worded(&'static str, String),
    /// More than `max_result_bytes` read back.
    ResultLimit,
    /// A returned string that is not UTF-8 (Python's decoder says why).
    NotUtf8(Vec<u8>),
}

impl From<CallError> for Fail {
    fn from(error: CallError) -> Self {
        Self::Call(error)
    }
}

impl Canonical {
    /// `name` of `pool`'s module with `params` (numbers, `text`, `blob`),
    /// its flat core signature checked here.
    ///
    /// # Errors
    ///
    /// The export, the allocator or the free function the types need is
    /// missing or of another type.
    #[allow(clippy::too_many_arguments)] // one function's whole setup
    pub fn new(
        pool: Pool,
        name: &str,
        specs: Box<[Param]>,
        returns: Returns,
        max_arg_bytes: usize,
        max_result_bytes: usize,
        tally: Arc<TallyInner>,
        fault: Py<PyAny>,
        hooks: Py<PyAny>,
    ) -> Result<Self, CallError> {
        let module = pool.module().clone();
        let mut flat = Vec::new();
        for spec in &*specs {
            match spec {
                Param::Num(kind) => flat.push(kind.wasm()),
                Param::Text | Param::Blob => flat.extend([NumType::I32, NumType::I32]),
                Param::Json => {
                    return Err(CallError::abi("a JSON parameter takes the general path"))
                }
            }
        }
        let results: Vec<NumType> = match returns {
            Returns::Num(kind) => kind.iter().map(|k| k.wasm()).collect(),
            Returns::Text | Returns::Bytes => vec![NumType::I32],
        };
        let export = Export::new(&module, name, &flat, &results)?;
        let buffers_in = specs.iter().any(|p| matches!(p, Param::Text | Param::Blob));
        let buffers_out = matches!(returns, Returns::Text | Returns::Bytes);
        let i32s = |n: usize| vec![NumType::I32; n];
        let realloc = buffers_in
            .then(|| Export::new(&module, REALLOC, &i32s(4), &i32s(1)))
            .transpose()?;
        let free = buffers_out
            .then(|| Export::new(&module, FREE, &i32s(3), &[]))
            .transpose()?;
        Ok(Self {
            pool,
            name: name.into(),
            export,
            realloc,
            free,
            params: Param::kinds(&specs).unwrap_or_default(),
            specs,
            returns,
            max_arg_bytes,
            max_result_bytes,
            tally,
            fault,
            hooks,
        })
    }

    /// The whole call on `instance`: buffers in, the export, the result
    /// out (a number into `out[0]`) and its buffer freed.
    fn body(
        &self,
        instance: &mut Pinned,
        args: &[Arg],
        out: &mut [ValRaw],
    ) -> Result<Answer, Fail> {
        // Looked up by name once a call, not at every access.
        let memory = instance.memory();
        let mut flat: Vec<ValRaw> = Vec::with_capacity(args.len() * 2 + 1);
        for (arg, spec) in args.iter().zip(&*self.specs) {
            match (arg, spec) {
                (Arg::Text(bytes), _) => {
                    self.lower(instance, memory, bytes, "a string", &mut flat)?;
                }
                (Arg::Blob(bytes), _) => {
                    self.lower(instance, memory, bytes, "a list<u8>", &mut flat)?;
                }
                (_, Param::Num(kind)) => flat.push(number(*kind, arg).ok_or_else(|| {
                    Fail::Worded(
                        "abi",
                        format!("{}: an argument is not a {kind:?}", self.name),
                    )
                })?),
                _ => {
                    return Err(Fail::Worded(
                        "abi",
                        format!("{}: an argument of another type", self.name),
                    ))
                }
            }
        }
        flat.resize(self.export.slots().max(1), ValRaw::i64(0));
        instance.call_armed(&self.export, &mut flat)?;
        match self.returns {
            Returns::Num(None) => Ok(Answer::Null),
            Returns::Num(Some(_)) => {
                out[0] = flat[0];
                Ok(Answer::Slot)
            }
            Returns::Text | Returns::Bytes => {
                self.lift(instance, memory, flat[0].get_u32() as usize)
            }
        }
    }

    /// `data` into a buffer from `canonical_abi_realloc(0, 0, 1, len)`,
    /// called for every buffer, even an empty one (as the hosts of the time
    /// did); its pointer and length into `flat`.
    fn lower(
        &self,
        instance: &mut Pinned,
        memory: Option<Memory>,
        data: &[u8],
        what: &str,
        flat: &mut Vec<ValRaw>,
    ) -> Result<(), Fail> {
        let realloc = self.realloc.as_ref().expect("checked at construction");
        let size = u32::try_from(data.len())
            .map_err(|_| Fail::Worded("abi", format!("{what} of {} bytes", data.len())))?;
        let mut slots = [
            ValRaw::i32(0),
            ValRaw::i32(0),
            ValRaw::i32(1),
            ValRaw::u32(size),
        ];
        instance.call_armed(realloc, &mut slots)?;
        let ptr = slots[0].get_u32() as usize;
        let len = data.len();
        if len > 0 && ptr == 0 {
            return Err(Fail::Worded(
                "memory",
                format!(
                    "{REALLOC} returned 0 for {what} ({len} bytes): the guest is out of memory"
                ),
            ));
        }
        let memory = no_memory(memory)?;
        let now = instance.memory_size(memory);
        if ptr + len > now {
            return Err(Fail::Worded(
                "abi",
                format!(
                    "{REALLOC} returned {ptr:#x} for {what} ({len} bytes), outside linear \
                     memory ({now} bytes)"
                ),
            ));
        }
        if len > 0 && !instance.write(memory, ptr, data) {
            return Err(Fail::Worded(
                "abi",
                format!("{what}: {len} bytes at {ptr:#x} are outside linear memory ({now} bytes)"),
            ));
        }
        #[allow(clippy::cast_possible_truncation)] // inside a 32-bit memory
        flat.push(ValRaw::u32(ptr as u32));
        flat.push(ValRaw::u32(size));
        Ok(())
    }

    /// The string or byte list the return area at `area` points to, then
    /// `canonical_abi_free` of its buffer. Every pointer and length is
    /// checked against the memory as it is after the call, and the bytes
    /// read count against `max_result_bytes`.
    fn lift(
        &self,
        instance: &mut Pinned,
        memory: Option<Memory>,
        area: usize,
    ) -> Result<Answer, Fail> {
        let name = &self.name;
        let memory = no_memory(memory)?;
        let size = instance.memory_size(memory);
        let mut budget = self.max_result_bytes;
        let mut read = |instance: &Pinned, ptr: usize, len: usize, what: &str| {
            let outside = || {
                Fail::Worded(
                    "abi",
                    format!(
                        "{name}: {what} at {ptr:#x} of {len} bytes is outside linear memory \
                         ({size} bytes)"
                    ),
                )
            };
            if ptr + len > size {
                return Err(outside());
            }
            budget = budget.checked_sub(len).ok_or(Fail::ResultLimit)?;
            instance.read(memory, ptr, len).ok_or_else(outside)
        };
        let cell = read(instance, area, 8, "the return area")?;
        let word = |at: usize| u32::from_le_bytes(cell[at..at + 4].try_into().expect("4 bytes"));
        let (ptr, len) = (word(0) as usize, word(4) as usize);
        let what = if self.returns == Returns::Text {
            "a returned string"
        } else {
            "a returned list<u8>"
        };
        let data = read(instance, ptr, len, what)?;
        let answer = if self.returns == Returns::Text {
            Answer::Text(String::from_utf8(data).map_err(|e| Fail::NotUtf8(e.into_bytes()))?)
        } else {
            Answer::Bytes(data)
        };
        let free = self.free.as_ref().expect("checked at construction");
        #[allow(clippy::cast_possible_truncation)] // both came from u32 words
        let mut slots = [
            ValRaw::u32(ptr as u32),
            ValRaw::u32(len as u32),
            ValRaw::i32(1),
        ];
        instance.call_armed(free, &mut slots)?;
        Ok(answer)
    }

    /// A run's failure as the call's: the guest's own through `fault`, the
    /// ABI's worded as the general path words it.
    fn failure(&self, fail: Fail, elapsed: Duration) -> Failure {
        let seconds = elapsed.as_secs_f64();
        match fail {
            Fail::Call(error) => Failure::Call { error, elapsed },
            Fail::Worded(kind, message) => {
                hook_error(&self.hooks, "canonical_error", (kind, message, seconds))
            }
            Fail::ResultLimit => hook_error(
                &self.hooks,
                "canonical_error",
                ("result", self.name.to_string(), seconds),
            ),
            Fail::NotUtf8(data) => with_gil(|py| {
                hook_error(
                    &self.hooks,
                    "not_utf8",
                    (
                        self.name.to_string(),
                        PyBytes::new(py, &data).unbind(),
                        seconds,
                    ),
                )
            }),
        }
    }
}

fn no_memory(memory: Option<Memory>) -> Result<Memory, Fail> {
    memory.ok_or_else(|| Fail::Worded("abi", "the module exports no memory".into()))
}

/// A number argument in the slot of its parameter's kind (None: it is
/// not a number of that kind, or out of its range).
fn number(kind: Kind, arg: &Arg) -> Option<ValRaw> {
    Some(match (kind, arg) {
        (Kind::I64, Arg::Integer(x)) => ValRaw::i64(*x),
        (Kind::I32, Arg::Integer(x)) => ValRaw::i32(i32::try_from(*x).ok()?),
        (Kind::Bool, Arg::Boolean(b)) => ValRaw::i32(i32::from(*b)),
        (Kind::Bool, Arg::Integer(x)) => ValRaw::i32(i32::from(*x != 0)),
        (Kind::F64, Arg::Real(x)) => ValRaw::f64(x.to_bits()),
        #[allow(clippy::cast_possible_truncation)] // REAL is an f32: rounded, as Python's
        (Kind::F32, Arg::Real(x)) => ValRaw::f32((*x as f32).to_bits()),
        #[allow(clippy::cast_precision_loss)] // float(int), as Python's
        (Kind::F64, Arg::Integer(x)) => ValRaw::f64((*x as f64).to_bits()),
        #[allow(clippy::cast_precision_loss)]
        (Kind::F32, Arg::Integer(x)) => ValRaw::f32((*x as f32).to_bits()),
        _ => return None,
    })
}

impl Target for Canonical {
    fn params(&self) -> &[Kind] {
        &self.params
    }

    fn result(&self) -> Option<Kind> {
        match self.returns {
            Returns::Num(kind) => kind,
            Returns::Text | Returns::Bytes => None,
        }
    }

    fn slots(&self) -> usize {
        self.specs.len().max(1)
    }

    fn zeros_for_nulls(&self) -> bool {
        false
    }

    fn call_slots(&self, slots: &mut [ValRaw]) -> Result<Answer, Failure> {
        self.call_args(slot_args(&self.params, slots), slots)
    }

    fn specs(&self) -> Box<[Param]> {
        self.specs.clone()
    }

    fn call_args(&self, args: Vec<Arg>, out: &mut [ValRaw]) -> Result<Answer, Failure> {
        let started = Instant::now();
        within_arg_bytes(&args, self.max_arg_bytes, &self.hooks)?;
        let mut instance = self.pool.acquire().map_err(|error| Failure::Call {
            error,
            elapsed: started.elapsed(),
        })?;
        // One budget for the allocations, the export and the frees.
        instance.begin();
        instance.arm();
        let outcome = self.body(&mut instance, &args, out);
        let out_of_memory = instance.end();
        match outcome {
            Ok(answer) => {
                self.pool.release(instance);
                let elapsed = self.tally.time_next().then(|| started.elapsed());
                self.tally.count_call(elapsed);
                Ok(answer)
            }
            Err(fail) => {
                // Whatever failed, the instance may hold half a call.
                instance.poison();
                let fail = match fail {
                    Fail::Call(error) => {
                        Fail::Call(basic::out_of_memory_trap(error, out_of_memory))
                    }
                    other => other,
                };
                Err(self.failure(fail, started.elapsed()))
            }
        }
    }

    fn exception(&self, py: Python<'_>, failure: Failure, row: Option<usize>) -> PyErr {
        failure_exception(py, &self.fault, failure, row)
    }

    fn idle_count(&self) -> usize {
        self.pool.idle_count()
    }

    fn prewarm(&self, n: usize) -> Result<(), CallError> {
        self.pool.prewarm(n)
    }

    fn instantiated_count(&self) -> usize {
        self.pool.instantiated_count()
    }
}
