//! A Basic-ABI call (docs/abi.md §3-§9): the per-call state and the
//! `heliosdb_*` host functions, reading and writing guest memory directly
//! and allocating guest buffers through the guest's own `heliosdb_alloc`.
//!
//! What the host functions do against the database (a statement, a log
//! line, a savepoint, a fetch) is the embedder's [`Host`]: the Python
//! binding forwards it to `hostapi.CallContext`. Everything the ABI itself
//! defines — pointers, bounds, encodings, status codes, the returned and
//! raised values, the last error — is here, once.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smallvec::SmallVec;
use wasmtime::{AsContextMut, Caller, Engine, Func, Instance, Linker, Memory, Val, ValRaw};

use crate::abi::HOST_MODULE;
use crate::encoding::{
    decode_params_into, utf8_reason, Param, RowSink, RowsWriter, TAG_BLOB, TAG_BOOLEAN,
    TAG_INTEGER, TAG_NULL, TAG_REAL, TAG_TEXT,
};
use crate::error::{CallError, Limit};
use crate::pool::{PooledInstance, StoreData};
use crate::typed::NumType;
use crate::wasi::{self, Wasi};

/// The error cases a fallible host function reports, by status code
/// (docs/abi.md §4: 0 is success, then these in order).
pub const STATUS_CASES: [&str; 6] = [
    "access-denied",
    "sql-error",
    "constraint",
    "limit-exceeded",
    "invalid-argument",
    "user-error",
];

/// The status code of the WIT error case `case` (`sql-error` for a case
/// that has none).
pub fn status_of(case: &str) -> i32 {
    STATUS_CASES
        .iter()
        .position(|c| *c == case)
        .map_or(2, |i| i32::try_from(i).unwrap_or(1) + 1)
}

/// The log levels of `heliosdb_log`, by number.
pub const LOG_LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// An argument of the call, as `heliosdb_get_param` hands it out.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Null,
    Boolean(bool),
    Integer(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

/// How one SQL parameter crosses into the export (docs/abi.md §3): a
/// number in its wasm type, or a `(ptr, len)` buffer the host allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lower {
    I64,
    I32,
    F64,
    F32,
    Buffer,
}

/// What a host operation's failure means for the guest.
#[derive(Debug)]
pub enum Failure<E> {
    /// The guest gets `status` and may read `message` with `heliosdb_last_error`.
    Status { status: i32, message: String },
    /// The call ends with this error (a limit of this call, a busy file,
    /// anything the guest must not catch and carry on from).
    Fatal(E),
}

/// A transaction host function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tx {
    Begin,
    Commit,
    Rollback,
}

/// What the host functions need from the embedder for one call.
pub trait Host {
    /// The embedder's error, raised after the call when it ends one.
    type Error;
    /// `heliosdb_query` (and the WIT `query`): the statement's rows into
    /// `rows`, whichever ABI encodes them for the guest.
    fn query(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        rows: &mut dyn RowSink,
    ) -> Result<(), Failure<Self::Error>>;
    /// `heliosdb_execute`: the rows changed.
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<i64, Failure<Self::Error>>;
    fn transaction(&mut self, op: Tx) -> Result<(), Failure<Self::Error>>;
    /// `heliosdb_http_fetch`, the request and response as docs/abi.md §7 encodes them.
    fn http_fetch(&mut self, request: &[u8]) -> Result<Vec<u8>, Failure<Self::Error>>;
    fn digest(&mut self, algorithm: &str, data: &[u8]) -> Result<Vec<u8>, Failure<Self::Error>>;
    fn hmac(
        &mut self,
        algorithm: &str,
        key: &[u8],
        data: &[u8],
    ) -> Result<Vec<u8>, Failure<Self::Error>>;
    /// `heliosdb_log`; infallible for the guest, so any error ends the call.
    fn log(&mut self, level: &'static str, message: &str) -> Result<(), Self::Error>;
    /// `count_in_window` (query-hook plugins); infallible for the guest too.
    fn count_in_window(&mut self, key: &str, window_ms: i64) -> Result<i64, Self::Error>;
    /// Whether the call's `Outcome` reports its time in the guest and in
    /// host functions: two clock reads per host function, which a caller
    /// that does not report them saves.
    fn timed(&self) -> bool {
        true
    }
}

/// Why a host function ended the call.
#[derive(Debug)]
pub enum Fault<E> {
    /// The guest broke the ABI (a buffer outside memory, invalid UTF-8, an
    /// unknown level): `AbiError`.
    Abi(String),
    /// `heliosdb_alloc` returned 0: the guest is out of memory.
    Memory(String),
    /// The embedder's error.
    Host(E),
}

/// Why a call failed.
#[derive(Debug)]
pub enum CallFailure<E> {
    /// A trap or a limit, classified by the pool.
    Call(CallError),
    /// A host function ended it.
    Fault(Fault<E>),
}

/// The guest's exports the host functions use, resolved once per instance.
#[derive(Clone, Copy)]
struct Guest {
    memory: Option<Memory>,
    alloc: Option<Func>,
    // `heliosdb_alloc` is `(i32, i32) -> i32`, so it is called without
    // wasmtime's per-call type check (a type-registry lookup).
    alloc_typed: bool,
}

impl Guest {
    const NONE: Self = Self {
        memory: None,
        alloc: None,
        alloc_typed: false,
    };
}

/// The state of a store's current call (`StoreData::host`).
pub struct BasicState<H: Host> {
    host: Option<H>,
    guest: Option<Guest>,
    args: Vec<Arg>,
    returned: Option<(u8, Vec<u8>)>,
    raised: Option<(String, String)>,
    last_error: Option<(i32, String)>,
    fault: Option<Fault<H::Error>>,
    host_time: Duration,
    // WASI preview 1, for a module that imports it (wasi.rs).
    wasi: Option<Wasi>,
    // Exports called before: a call then skips the name lookup and the
    // type's construction.
    exports: Vec<Arc<Callee>>,
}

impl<H: Host> Default for BasicState<H> {
    fn default() -> Self {
        Self {
            host: None,
            guest: None,
            args: Vec::new(),
            returned: None,
            raised: None,
            last_error: None,
            fault: None,
            host_time: Duration::ZERO,
            wasi: None,
            exports: Vec::new(),
        }
    }
}

impl<H: Host> BasicState<H> {
    /// The state of a store whose module imports WASI preview 1.
    #[must_use]
    pub fn with_wasi(wasi: Wasi) -> Self {
        Self {
            wasi: Some(wasi),
            ..Self::default()
        }
    }
}

/// What one call left besides its wasm results.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `heliosdb_return(tag, ...)`: the tag and the payload bytes.
    pub returned: Option<(u8, Vec<u8>)>,
    /// `heliosdb_error(code, message)`.
    pub raised: Option<(String, String)>,
    /// Time inside the guest, and the part of it spent in host functions.
    pub wasm: Duration,
    pub host: Duration,
    pub fuel_used: u64,
    /// The guest's memory after the call, if it exports one.
    pub memory_bytes: Option<usize>,
    /// The guest's runtime wrote that an allocation failed (on stderr):
    /// the trap that followed is the memory limit.
    pub out_of_memory: bool,
}

/// A call's results, or why it failed; what it left (returned, raised,
/// times) is its `Outcome` either way.
pub type Called<T, H> = (
    Result<T, CallFailure<<H as Host>::Error>>,
    Outcome,
    Option<H>,
);

/// A host function's early exit: a fault of the call, or an error of a
/// guest call it made (`heliosdb_alloc` trapped), passed on as it is.
enum Stop<E> {
    Fault(Fault<E>),
    Wasm(wasmtime::Error),
}

impl<E> From<Fault<E>> for Stop<E> {
    fn from(fault: Fault<E>) -> Self {
        Self::Fault(fault)
    }
}

type Ctx<'a, H> = Caller<'a, StoreData<BasicState<H>>>;
type Step<T, E> = Result<T, Stop<E>>;

fn abi<T, E>(message: impl Into<String>) -> Step<T, E> {
    Err(Stop::Fault(Fault::Abi(message.into())))
}

fn state<'a, H: Host>(caller: &'a mut Ctx<'_, H>) -> &'a mut BasicState<H> {
    &mut caller.data_mut().host
}

/// The call's host, or the fault of a host call made while instantiating
/// (a start function: there is no call yet). What the guest wrote on
/// stdout and stderr since the last host call is logged first, so its
/// lines and its `heliosdb_log` calls stay in order.
fn host<'a, H: Host>(caller: &'a mut Ctx<'_, H>) -> Step<&'a mut H, H::Error> {
    host_in(state(caller))
}

/// [`host`] of a state borrowed beside guest memory
/// ([`with_statement`]).
fn host_in<H: Host>(state: &mut BasicState<H>) -> Step<&mut H, H::Error> {
    let BasicState { host, wasi, .. } = state;
    let Some(host) = host.as_mut() else {
        return abi("host functions cannot be called while instantiating");
    };
    if let Some(wasi) = wasi {
        log_output(host, wasi).map_err(|e| Stop::Fault(Fault::Host(e)))?;
    }
    Ok(host)
}

fn log_output<H: Host>(host: &mut H, wasi: &Wasi) -> Result<(), H::Error> {
    for (level, line) in wasi.output.take() {
        host.log(level, &line)?;
    }
    Ok(())
}

fn guest<H: Host>(caller: &mut Ctx<'_, H>) -> Step<Guest, H::Error> {
    if state(caller).host.is_none() {
        return abi("host functions cannot be called while instantiating");
    }
    Ok(state(caller).guest.unwrap_or(Guest::NONE))
}

fn memory<E>(guest: Guest) -> Step<Memory, E> {
    guest.memory.map_or_else(
        || abi("the module exports no memory, but a host call needs it"),
        Ok,
    )
}

/// `len` bytes at `ptr` of guest memory, copied out.
fn read<H: Host>(
    caller: &mut Ctx<'_, H>,
    ptr: i32,
    len: i32,
    what: &str,
) -> Step<Vec<u8>, H::Error> {
    // Nothing to read needs no memory.
    if len == 0 {
        return Ok(Vec::new());
    }
    let mem = memory(guest(caller)?)?;
    slice(mem.data(&*caller), ptr, len, what).map(<[u8]>::to_vec)
}

fn text<H: Host>(
    caller: &mut Ctx<'_, H>,
    ptr: i32,
    len: i32,
    what: &str,
) -> Step<String, H::Error> {
    let bytes = read(caller, ptr, len, what)?;
    String::from_utf8(bytes).or_else(|err| {
        let reason = utf8_reason(err.as_bytes(), &err.utf8_error());
        abi(format!("{what}: invalid UTF-8 ({reason})"))
    })
}

/// `len` bytes at `ptr` of `data` (guest memory), borrowed.
fn slice<'m, E>(data: &'m [u8], ptr: i32, len: i32, what: &str) -> Step<&'m [u8], E> {
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    if len == 0 {
        return Ok(&[]);
    }
    match data.get(ptr..ptr + len) {
        Some(bytes) => Ok(bytes),
        None => abi(format!(
            "{what}: buffer at {ptr:#x} of {len} bytes is outside linear memory ({} bytes)",
            data.len()
        )),
    }
}

/// Runs `run` with a statement's SQL and encoded parameters borrowed from
/// guest memory (no copy: the guest does not run while its host function
/// does, and the statement cannot reach this store) and the call's host.
fn with_statement<H: Host, T>(
    caller: &mut Ctx<'_, H>,
    (sql_ptr, sql_len, p_ptr, p_len): (i32, i32, i32, i32),
    (sql_what, params_what): (&str, &str),
    run: impl FnOnce(&mut H, &str, &[Param<'_>]) -> T,
) -> Step<T, H::Error> {
    let mem = memory(guest(caller)?)?;
    let (data, store) = mem.data_and_store_mut(&mut *caller);
    let sql = slice(data, sql_ptr, sql_len, sql_what)?;
    let sql = std::str::from_utf8(sql).or_else(|err| {
        let reason = utf8_reason(sql, &err);
        abi(format!("{sql_what}: invalid UTF-8 ({reason})"))
    })?;
    let params = slice(data, p_ptr, p_len, params_what)?;
    // A malformed list is refused before the statement is prepared.
    let params: SmallVec<[Param<'_>; 4]> = match decode_params_into(params) {
        Ok(params) => params,
        Err(err) => return abi(err.to_string()),
    };
    let host = host_in(&mut store.host)?;
    Ok(run(host, sql, &params))
}

fn write<E>(
    mut ctx: impl AsContextMut,
    guest: Guest,
    ptr: u32,
    bytes: &[u8],
    what: &str,
) -> Step<(), E> {
    let mem = memory(guest)?;
    let data = mem.data_mut(&mut ctx);
    let size = data.len();
    let ptr = ptr as usize;
    match data.get_mut(ptr..ptr + bytes.len()) {
        Some(area) => {
            area.copy_from_slice(bytes);
            Ok(())
        }
        None => abi(format!(
            "{what}: {} bytes at {ptr:#x} are outside linear memory ({size} bytes)",
            bytes.len()
        )),
    }
}

/// Copies `bytes` into a buffer the guest's `heliosdb_alloc(size, 1)`
/// returns: `(ptr, len)`, `(0, 0)` for nothing. The allocator runs on the
/// call's fuel and deadline; it may grow (and move) memory, which is why
/// no host function holds a view of memory across it.
fn give<E>(mut ctx: impl AsContextMut, guest: Guest, bytes: &[u8]) -> Step<(u32, u32), E> {
    if bytes.is_empty() {
        return Ok((0, 0));
    }
    let Some(alloc) = guest.alloc else {
        return abi("the module must export heliosdb_alloc for this call");
    };
    let Ok(len) = i32::try_from(bytes.len()) else {
        return Err(Stop::Fault(Fault::Memory(format!(
            "heliosdb_alloc could not allocate {} bytes",
            bytes.len()
        ))));
    };
    let ptr = if guest.alloc_typed {
        let mut raw = [ValRaw::i32(len), ValRaw::i32(1)];
        // SAFETY: `alloc_typed` says its type is `(i32, i32) -> i32`; the
        // slots hold both arguments and room for the result. The engine is
        // synchronous.
        unsafe { alloc.call_unchecked(&mut ctx, std::ptr::from_mut(&mut raw[..])) }
            .map_err(Stop::Wasm)?;
        raw[0].get_u32()
    } else {
        // wasmtime's check says what is wrong with its type.
        let mut out = [Val::I32(0)];
        alloc
            .call(&mut ctx, &[Val::I32(len), Val::I32(1)], &mut out)
            .map_err(Stop::Wasm)?;
        out[0].i32().unwrap_or(0) as u32
    };
    if ptr == 0 {
        return Err(Stop::Fault(Fault::Memory(format!(
            "heliosdb_alloc could not allocate {} bytes",
            bytes.len()
        ))));
    }
    write(&mut ctx, guest, ptr, bytes, "heliosdb_alloc result")?;
    Ok((ptr, len as u32))
}

fn pair(ptr: u32, len: u32) -> [u8; 8] {
    let mut out = [0; 8];
    out[..4].copy_from_slice(&ptr.to_le_bytes());
    out[4..].copy_from_slice(&len.to_le_bytes());
    out
}

/// Runs a fallible host operation: 0, or its status with the message kept
/// for `heliosdb_last_error`; a fatal failure ends the call.
fn status<H: Host>(
    caller: &mut Ctx<'_, H>,
    outcome: Result<(), Failure<H::Error>>,
) -> Step<i32, H::Error> {
    match outcome {
        Ok(()) => Ok(0),
        Err(Failure::Status { status, message }) => {
            state(caller).last_error = Some((status, message));
            Ok(status)
        }
        Err(Failure::Fatal(err)) => Err(Stop::Fault(Fault::Host(err))),
    }
}

/// A fallible host operation that hands the guest a buffer through `out`.
fn buffer_result<H: Host>(
    caller: &mut Ctx<'_, H>,
    out: i32,
    what: &str,
    result: Result<Vec<u8>, Failure<H::Error>>,
) -> Step<i32, H::Error> {
    match result {
        Ok(bytes) => {
            let guest = guest(caller)?;
            let (ptr, len) = give(&mut *caller, guest, &bytes)?;
            write(&mut *caller, guest, out as u32, &pair(ptr, len), what)?;
            Ok(0)
        }
        Err(failure) => status(caller, Err(failure)),
    }
}

/// When a host function started, if the call is [`Host::timed`].
fn host_timer<H: Host>(caller: &mut Ctx<'_, H>) -> Option<Instant> {
    state(caller)
        .host
        .as_ref()
        .is_some_and(H::timed)
        .then(Instant::now)
}

/// The wasmtime result of a host function: a fault is kept in the state
/// (the call's outcome) and unwinds the guest with a trap.
fn finish<H: Host, T>(
    caller: &mut Ctx<'_, H>,
    started: Option<Instant>,
    step: Step<T, H::Error>,
) -> wasmtime::Result<T> {
    let s = state(caller);
    if let Some(started) = started {
        s.host_time += started.elapsed();
    }
    match step {
        Ok(value) => Ok(value),
        Err(Stop::Wasm(err)) => Err(err),
        Err(Stop::Fault(fault)) => {
            s.fault.get_or_insert(fault);
            Err(wasmtime::Error::msg("heliosdb host function failed"))
        }
    }
}

macro_rules! define {
    ($linker:ident, $name:literal, |$caller:ident $(, $arg:ident : $ty:ty)*| -> $ret:ty $body:block) => {
        $linker.func_wrap(
            HOST_MODULE,
            $name,
            |mut $caller: Ctx<'_, H>, $($arg: $ty),*| -> wasmtime::Result<$ret> {
                let started = host_timer(&mut $caller);
                let step = (|| -> Step<$ret, H::Error> { $body })();
                finish(&mut $caller, started, step)
            },
        )?;
    };
}

/// A linker with every Basic-ABI host function (`crate::abi::HOST_IMPORTS`)
/// defined; a module links the ones it imports.
///
/// # Errors
///
/// Only if wasmtime refuses a definition (it does not for these types).
#[allow(clippy::too_many_lines)] // one definition per host function
pub fn linker<H: Host + Send + 'static>(
    engine: &Engine,
    with_wasi: bool,
) -> wasmtime::Result<Linker<StoreData<BasicState<H>>>>
where
    H::Error: Send,
{
    let mut linker = Linker::new(engine);
    if with_wasi {
        // Every store of a module that imports WASI has a context
        // (`BasicState::with_wasi`): the embedder links WASI only then.
        wasi::add_to_linker(&mut linker, |data: &mut StoreData<BasicState<H>>| {
            data.host
                .wasi
                .as_mut()
                .expect("a store linked with WASI has a WASI context")
        })?;
    }
    define!(linker, "heliosdb_query", |caller,
                                       sql_ptr: i32,
                                       sql_len: i32,
                                       p_ptr: i32,
                                       p_len: i32,
                                       out: i32|
     -> i32 {
        let at = (sql_ptr, sql_len, p_ptr, p_len);
        let result = with_statement(
            &mut caller,
            at,
            ("query SQL", "query parameters"),
            |h, sql, p| {
                let mut rows = RowsWriter::new(std::iter::empty());
                h.query(sql, p, &mut rows).map(|()| rows.finish())
            },
        )?;
        buffer_result(&mut caller, out, "query out area", result)
    });
    define!(linker, "heliosdb_execute", |caller,
                                         sql_ptr: i32,
                                         sql_len: i32,
                                         p_ptr: i32,
                                         p_len: i32,
                                         out: i32|
     -> i32 {
        let at = (sql_ptr, sql_len, p_ptr, p_len);
        match with_statement(
            &mut caller,
            at,
            ("execute SQL", "execute parameters"),
            |h, sql, p| h.execute(sql, p),
        )? {
            Ok(changed) => {
                let guest = guest(&mut caller)?;
                write(
                    &mut caller,
                    guest,
                    out as u32,
                    &changed.to_le_bytes(),
                    "execute out area",
                )?;
                Ok(0)
            }
            Err(failure) => status(&mut caller, Err(failure)),
        }
    });
    define!(linker, "heliosdb_get_param", |caller,
                                           index: i32,
                                           out: i32|
     -> i32 {
        host(&mut caller)?;
        let count = state(&mut caller).args.len();
        let Some(arg) = usize::try_from(index)
            .ok()
            .and_then(|i| state(&mut caller).args.get(i).cloned())
        else {
            return abi(format!(
                "heliosdb_get_param: no argument {index} (the call has {count})"
            ));
        };
        let guest = guest(&mut caller)?;
        let what = "get_param out area";
        let (tag, area): (u8, [u8; 8]) = match arg {
            Arg::Null => return Ok(i32::from(TAG_NULL)),
            Arg::Boolean(b) => (TAG_BOOLEAN, i64::from(b).to_le_bytes()),
            Arg::Integer(x) => (TAG_INTEGER, x.to_le_bytes()),
            Arg::Real(x) => (TAG_REAL, x.to_le_bytes()),
            Arg::Text(bytes) => {
                let (ptr, len) = give(&mut caller, guest, &bytes)?;
                (TAG_TEXT, pair(ptr, len))
            }
            Arg::Blob(bytes) => {
                let (ptr, len) = give(&mut caller, guest, &bytes)?;
                (TAG_BLOB, pair(ptr, len))
            }
        };
        write(&mut caller, guest, out as u32, &area, what)?;
        Ok(i32::from(tag))
    });
    define!(linker, "heliosdb_return", |caller,
                                        tag: i32,
                                        ptr: i32,
                                        len: i32|
     -> () {
        host(&mut caller)?;
        let payload = if tag == i32::from(TAG_NULL) {
            Vec::new()
        } else {
            read(&mut caller, ptr, len, "heliosdb_return")?
        };
        // The tag is checked where the payload is decoded (values.py).
        state(&mut caller).returned = Some((u8::try_from(tag).unwrap_or(u8::MAX), payload));
        Ok(())
    });
    define!(linker, "heliosdb_log", |caller,
                                     level: i32,
                                     ptr: i32,
                                     len: i32|
     -> () {
        host(&mut caller)?;
        let Some(name) = usize::try_from(level).ok().and_then(|l| LOG_LEVELS.get(l)) else {
            return abi(format!("heliosdb_log: unknown level {level} (0..4)"));
        };
        let message = text(&mut caller, ptr, len, "log message")?;
        host(&mut caller)?
            .log(name, &message)
            .map_err(|e| Stop::Fault(Fault::Host(e)))
    });
    for (name, op) in [
        ("heliosdb_begin_tx", Tx::Begin),
        ("heliosdb_commit_tx", Tx::Commit),
        ("heliosdb_rollback_tx", Tx::Rollback),
    ] {
        linker.func_wrap(
            HOST_MODULE,
            name,
            move |mut caller: Ctx<'_, H>| -> wasmtime::Result<i32> {
                let started = host_timer(&mut caller);
                let step = (|| {
                    let outcome = host(&mut caller)?.transaction(op);
                    status(&mut caller, outcome)
                })();
                finish(&mut caller, started, step)
            },
        )?;
    }
    linker.func_wrap(HOST_MODULE, "heliosdb_now", || -> i64 {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
    })?;
    define!(linker, "heliosdb_error", |caller,
                                       c_ptr: i32,
                                       c_len: i32,
                                       m_ptr: i32,
                                       m_len: i32|
     -> () {
        host(&mut caller)?;
        let code = text(&mut caller, c_ptr, c_len, "error code")?;
        let message = text(&mut caller, m_ptr, m_len, "error message")?;
        state(&mut caller).raised = Some((code, message));
        Ok(())
    });
    define!(linker, "heliosdb_last_error", |caller, out: i32| -> i32 {
        host(&mut caller)?;
        let Some((code, message)) = state(&mut caller).last_error.clone() else {
            return Ok(0);
        };
        let guest = guest(&mut caller)?;
        let (ptr, len) = give(&mut caller, guest, message.as_bytes())?;
        write(
            &mut caller,
            guest,
            out as u32,
            &pair(ptr, len),
            "last_error out area",
        )?;
        Ok(code)
    });
    define!(linker, "heliosdb_http_fetch", |caller,
                                            req_ptr: i32,
                                            req_len: i32,
                                            out: i32|
     -> i32 {
        let request = read(&mut caller, req_ptr, req_len, "request")?;
        let result = host(&mut caller)?.http_fetch(&request);
        buffer_result(&mut caller, out, "http_fetch out area", result)
    });
    define!(linker, "heliosdb_digest", |caller,
                                        a_ptr: i32,
                                        a_len: i32,
                                        d_ptr: i32,
                                        d_len: i32,
                                        out: i32|
     -> i32 {
        let algorithm = text(&mut caller, a_ptr, a_len, "digest algorithm")?;
        let data = read(&mut caller, d_ptr, d_len, "digest data")?;
        let result = host(&mut caller)?.digest(&algorithm, &data);
        buffer_result(&mut caller, out, "digest out area", result)
    });
    define!(linker, "heliosdb_hmac", |caller,
                                      a_ptr: i32,
                                      a_len: i32,
                                      k_ptr: i32,
                                      k_len: i32,
                                      d_ptr: i32,
                                      d_len: i32,
                                      out: i32|
     -> i32 {
        let algorithm = text(&mut caller, a_ptr, a_len, "hmac algorithm")?;
        let key = read(&mut caller, k_ptr, k_len, "hmac key")?;
        let data = read(&mut caller, d_ptr, d_len, "hmac data")?;
        let result = host(&mut caller)?.hmac(&algorithm, &key, &data);
        buffer_result(&mut caller, out, "hmac out area", result)
    });
    define!(linker, "count_in_window", |caller,
                                        ptr: i32,
                                        len: i32,
                                        window_ms: i64|
     -> i64 {
        host(&mut caller)?;
        let key = text(&mut caller, ptr, len, "counter key")?;
        host(&mut caller)?
            .count_in_window(&key, window_ms)
            .map_err(|e| Stop::Fault(Fault::Host(e)))
    });
    Ok(linker)
}

/// One call of `export` with `args`, each lowered as `lowering` says, on
/// `instance`, with `host` serving its host functions: the wasm results and
/// what the call left, or why it failed (the instance is then poisoned).
/// The host comes back in either case. Without a host, every host function
/// the guest calls ends the call (the ABI-version check at registration).
pub fn call<H: Host>(
    instance: &mut PooledInstance<BasicState<H>>,
    host: Option<H>,
    export: &str,
    lowering: &[Lower],
    args: Vec<Arg>,
) -> Called<Vec<Val>, H> {
    let handle = instance.instance();
    let func = export_of(instance, handle, export);
    begin(instance, handle, host, args);
    let (result, wasm) = match func {
        None => (
            Err(CallFailure::Call(CallError::abi(format!(
                "the module exports no function {export:?}"
            )))),
            Duration::ZERO,
        ),
        Some(callee) => run(instance, &callee, lowering),
    };
    let result = settle_output(instance, result);
    let (mut outcome, host) = end(instance);
    outcome.wasm = wasm;
    (result, outcome, host)
}

/// A batch call (docs/abi.md §9): `name(count, args_ptr, out_ptr)` with the
/// argument columns `data` copied into guest memory and `out_size` result
/// bytes read back; the buffers go back to `heliosdb_free` if the guest has one.
pub fn call_batch<H: Host>(
    instance: &mut PooledInstance<BasicState<H>>,
    host: Option<H>,
    name: &str,
    count: u32,
    data: &[u8],
    out_size: usize,
) -> Called<Vec<u8>, H> {
    let handle = instance.instance();
    let func = handle.get_func(instance.store_mut(), name);
    let free = handle.get_func(instance.store_mut(), "heliosdb_free");
    begin(instance, handle, host, Vec::new());
    let started = Instant::now();
    let result = match func {
        None => Err(CallFailure::Call(CallError::abi(format!(
            "the module exports no function {name:?}"
        )))),
        Some(func) => batch(instance, func, free, name, count, data, out_size),
    };
    let wasm = started.elapsed();
    let result = settle_output(instance, result);
    let (mut outcome, host) = end(instance);
    outcome.wasm = wasm;
    (result, outcome, host)
}

/// A row failed with `heliosdb_error`: the caller raises it.
const RAISED: i32 = -1;

fn batch<H: Host>(
    instance: &mut PooledInstance<BasicState<H>>,
    func: Func,
    free: Option<Func>,
    name: &str,
    count: u32,
    data: &[u8],
    out_size: usize,
) -> Result<Vec<u8>, CallFailure<H::Error>> {
    let mut results = Vec::new();
    let outcome = instance.run(|store| {
        let guest = guest_of(store);
        let args = give(&mut *store, guest, data).map_err(|s| unwind(store, s))?;
        let outs = give(&mut *store, guest, &vec![0; out_size]).map_err(|s| unwind(store, s))?;
        let mut out = [Val::I32(0)];
        let params = [
            count.cast_signed(),
            args.0.cast_signed(),
            outs.0.cast_signed(),
        ];
        func.call(&mut *store, &params.map(Val::I32), &mut out)?;
        if store.data().host.raised.is_some() {
            return Ok(RAISED);
        }
        let done = out[0].i32().unwrap_or(0);
        if let Some(mem) = guest.memory {
            let start = outs.0 as usize;
            if let Some(bytes) = mem.data(&*store).get(start..start + out_size) {
                results = bytes.to_vec();
            }
        }
        if let Some(free) = free {
            // The one case where the host frees: it allocated these for itself.
            for (ptr, size) in [args, outs] {
                if ptr != 0 {
                    let params = [ptr.cast_signed(), size.cast_signed(), 1];
                    free.call(&mut *store, &params.map(Val::I32), &mut [])?;
                }
            }
        }
        Ok(done)
    });
    match outcome {
        Err(err) => Err(failure(instance, err)),
        Ok(RAISED) => Ok(Vec::new()),
        Ok(done) if u32::try_from(done).ok() != Some(count) => {
            instance.poison();
            Err(CallFailure::Fault(Fault::Abi(format!(
                "{name} reported {done} of {count} rows done"
            ))))
        }
        Ok(_) if results.len() != out_size => {
            instance.poison();
            Err(CallFailure::Fault(Fault::Abi(format!(
                "{name} results: {out_size} bytes are outside linear memory"
            ))))
        }
        Ok(_) => Ok(results),
    }
}

fn begin<H: Host>(
    instance: &mut PooledInstance<BasicState<H>>,
    handle: Instance,
    host: Option<H>,
    args: Vec<Arg>,
) {
    let store = instance.store_mut();
    if store.data().host.guest.is_none() {
        let memory = handle.get_memory(&mut *store, "memory");
        let alloc = handle.get_func(&mut *store, "heliosdb_alloc");
        let alloc_typed = alloc.is_some_and(|f| {
            let ty = f.ty(&*store);
            ty.params()
                .map(|t| NumType::of(&t))
                .eq([Some(NumType::I32); 2])
                && ty
                    .results()
                    .map(|t| NumType::of(&t))
                    .eq([Some(NumType::I32)])
        });
        store.data_mut().host.guest = Some(Guest {
            memory,
            alloc,
            alloc_typed,
        });
    }
    if host.is_some() {
        // Without a host (the ABI-version check) output stays held.
        begin_wasi(instance);
    }
    let state = &mut instance.store_mut().data_mut().host;
    state.host = host;
    state.args = args;
    state.returned = None;
    state.raised = None;
    state.last_error = None;
    state.fault = None;
    state.host_time = Duration::ZERO;
}

/// Opens a call of a WASI guest's instance outside the Basic ABI (prepared
/// exports with no host behind them): WASI's deadline for sleeps set, its
/// output read from here on for an allocation failure. The output itself is
/// not logged: for a guest that was not granted `stdout`, nothing of it is
/// kept.
pub fn begin_wasi<H: Host>(instance: &mut PooledInstance<BasicState<H>>) {
    let timeout = instance.timeout();
    if let Some(wasi) = &mut instance.store_mut().data_mut().host.wasi {
        wasi.output.begin();
        wasi.deadline = Instant::now() + timeout;
    }
}

/// Closes what [`begin_wasi`] opened: whether the guest reported it ran
/// out of memory meanwhile (a trap that follows is the memory limit).
pub fn end_wasi<H: Host>(instance: &mut PooledInstance<BasicState<H>>) -> bool {
    finish_wasi(instance).1
}

/// [`end_wasi`], and the lines the guest wrote meanwhile (for a caller that
/// logs them: only a guest granted `stdout` has any).
pub fn finish_wasi<H: Host>(
    instance: &mut PooledInstance<BasicState<H>>,
) -> (std::collections::VecDeque<(&'static str, String)>, bool) {
    instance
        .store_mut()
        .data_mut()
        .host
        .wasi
        .as_ref()
        .map(|wasi| wasi.output.finish())
        .unwrap_or_default()
}

/// `error` as the memory limit if it is a trap and the guest reported an
/// allocation failure just before it.
#[must_use]
pub fn out_of_memory_trap(error: CallError, out_of_memory: bool) -> CallError {
    match error {
        CallError::Trap { message, .. } if out_of_memory => CallError::LimitExceeded {
            limit: Limit::Memory,
            message,
        },
        other => other,
    }
}

fn end<H: Host>(instance: &mut PooledInstance<BasicState<H>>) -> (Outcome, Option<H>) {
    let fuel_left = instance.store_mut().get_fuel().unwrap_or(0);
    let fuel = instance.fuel();
    let memory_bytes = instance
        .store_mut()
        .data()
        .host
        .guest
        .and_then(|g| g.memory)
        .map(|m| m.data_size(instance.store_mut()));
    let state = &mut instance.store_mut().data_mut().host;
    let host = state.host.take();
    state.args = Vec::new();
    let out_of_memory = state
        .wasi
        .as_ref()
        .is_some_and(|w| w.output.out_of_memory());
    let outcome = Outcome {
        returned: state.returned.take(),
        raised: state.raised.take(),
        wasm: Duration::ZERO,
        host: state.host_time,
        fuel_used: fuel.saturating_sub(fuel_left),
        memory_bytes,
        out_of_memory,
    };
    (outcome, host)
}

/// The end of a call for its output: what the guest left unterminated
/// becomes its last lines, and the lines not logged yet are. Logging them
/// may fail the call (the log limit), which then poisons the instance; a
/// call that failed already keeps its own error.
fn settle_output<H: Host, T>(
    instance: &mut PooledInstance<BasicState<H>>,
    result: Result<T, CallFailure<H::Error>>,
) -> Result<T, CallFailure<H::Error>> {
    let logged = {
        let BasicState { host, wasi, .. } = &mut instance.store_mut().data_mut().host;
        let (Some(wasi), Some(host)) = (wasi.as_ref(), host.as_mut()) else {
            return result;
        };
        wasi.output.end();
        log_output(host, wasi)
    };
    match (result, logged) {
        (Ok(_), Err(err)) => {
            instance.poison();
            Err(CallFailure::Fault(Fault::Host(err)))
        }
        (result, _) => result,
    }
}

/// The error of a failed guest call: the host function's fault if one
/// ended it, else the pool's classification.
fn failure<H: Host>(
    instance: &mut PooledInstance<BasicState<H>>,
    err: CallError,
) -> CallFailure<H::Error> {
    instance.poison();
    match instance.store_mut().data_mut().host.fault.take() {
        // A limit the guest exhausted wins over the fault it caused.
        Some(fault) if !matches!(err, CallError::LimitExceeded { .. }) => CallFailure::Fault(fault),
        _ => CallFailure::Call(err),
    }
}

/// An export called before, resolved once per instance.
struct Callee {
    name: Box<str>,
    func: Func,
    // Zeroed slots of its result types.
    results: Vec<Val>,
    // Its parameter and result types, when every one is a number: a call
    // whose arguments have these types needs no check of wasmtime's, which
    // costs a type-registry lookup (and its lock) per call.
    numeric: Option<Signature>,
}

/// Parameter and result types, all numbers.
type Signature = (Box<[NumType]>, Box<[NumType]>);

impl Callee {
    /// Calls the export with `params`, its results into `results`.
    fn call<T>(
        &self,
        store: &mut wasmtime::Store<T>,
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()> {
        let Some((types, result_types)) = &self.numeric else {
            return self.func.call(store, params, results);
        };
        let typed = types.len() == params.len()
            && results.len() == result_types.len()
            && types
                .iter()
                .zip(params)
                .all(|(t, v)| NumType::of_val(v) == Some(*t));
        if !typed {
            // wasmtime's own check says what is wrong.
            return self.func.call(store, params, results);
        }
        let mut raw: SmallVec<[ValRaw; 8]> = params.iter().map(raw_of).collect();
        raw.resize(params.len().max(results.len()), ValRaw::i64(0));
        // SAFETY: the function's type is `types -> result_types`, all
        // numeric (checked when it was resolved); every argument has its
        // parameter's type, and `raw` has a slot per parameter and room for
        // every result. The engine is synchronous.
        unsafe {
            self.func
                .call_unchecked(&mut *store, std::ptr::from_mut(raw.as_mut_slice()))
        }?;
        for ((slot, ty), out) in raw.iter().zip(result_types.iter()).zip(results.iter_mut()) {
            *out = match ty {
                NumType::I32 => Val::I32(slot.get_i32()),
                NumType::I64 => Val::I64(slot.get_i64()),
                NumType::F32 => Val::F32(slot.get_f32()),
                NumType::F64 => Val::F64(slot.get_f64()),
            };
        }
        Ok(())
    }
}

/// A number as a raw slot (anything else, which no caller passes, as 0).
#[must_use]
pub fn raw_of(val: &Val) -> ValRaw {
    match *val {
        Val::I32(x) => ValRaw::i32(x),
        Val::I64(x) => ValRaw::i64(x),
        Val::F32(bits) => ValRaw::f32(bits),
        Val::F64(bits) => ValRaw::f64(bits),
        _ => ValRaw::i64(0),
    }
}

/// The function export `name`, looked up once per instance.
fn export_of<H: Host>(
    instance: &mut PooledInstance<BasicState<H>>,
    handle: Instance,
    name: &str,
) -> Option<Arc<Callee>> {
    let store = instance.store_mut();
    if let Some(callee) = store.data().host.exports.iter().find(|e| &*e.name == name) {
        return Some(callee.clone());
    }
    let func = handle.get_func(&mut *store, name)?;
    let ty = func.ty(&*store);
    let results: Vec<Val> = ty
        .results()
        .map(|t| Val::default_for_ty(&t).unwrap_or(Val::I32(0)))
        .collect();
    let params: Option<Box<[NumType]>> = ty.params().map(|t| NumType::of(&t)).collect();
    let result_types: Option<Box<[NumType]>> = ty.results().map(|t| NumType::of(&t)).collect();
    let callee = Arc::new(Callee {
        name: name.into(),
        func,
        results,
        numeric: params.zip(result_types),
    });
    store.data_mut().host.exports.push(callee.clone());
    Some(callee)
}

fn run<H: Host>(
    instance: &mut PooledInstance<BasicState<H>>,
    callee: &Callee,
    lowering: &[Lower],
) -> (Result<Vec<Val>, CallFailure<H::Error>>, Duration) {
    let args = std::mem::take(&mut instance.store_mut().data_mut().host.args);
    let mut results = callee.results.clone();
    let started = timed(instance).then(Instant::now);
    let outcome = instance.run(|store| {
        let guest = guest_of(store);
        let mut params: SmallVec<[Val; 8]> = SmallVec::with_capacity(lowering.len() + 2);
        for (arg, lower) in args.iter().zip(lowering) {
            lower_arg(&mut *store, guest, *lower, arg, &mut params)?;
        }
        // heliosdb_get_param reads them during the call.
        store.data_mut().host.args = args;
        callee.call(&mut *store, &params, &mut results)
    });
    let elapsed = started.map_or(Duration::ZERO, |s| s.elapsed());
    (
        outcome
            .map(|()| results)
            .map_err(|err| failure(instance, err)),
        elapsed,
    )
}

fn timed<H: Host>(instance: &mut PooledInstance<BasicState<H>>) -> bool {
    instance
        .store()
        .data()
        .host
        .host
        .as_ref()
        .is_some_and(H::timed)
}

fn guest_of<H: Host>(store: &wasmtime::Store<StoreData<BasicState<H>>>) -> Guest {
    store.data().host.guest.unwrap_or(Guest::NONE)
}

/// The trap a fault unwinds the guest with; the fault itself is kept in
/// the state as the call's outcome.
fn unwind<H: Host>(
    store: &mut wasmtime::Store<StoreData<BasicState<H>>>,
    stop: Stop<H::Error>,
) -> wasmtime::Error {
    match stop {
        Stop::Wasm(err) => err,
        Stop::Fault(fault) => {
            store.data_mut().host.fault.get_or_insert(fault);
            wasmtime::Error::msg("heliosdb host function failed")
        }
    }
}

fn lower_arg<H: Host>(
    store: &mut wasmtime::Store<StoreData<BasicState<H>>>,
    guest: Guest,
    lower: Lower,
    arg: &Arg,
    out: &mut SmallVec<[Val; 8]>,
) -> wasmtime::Result<()> {
    #[allow(clippy::cast_possible_truncation)] // INTEGER and REAL were range-checked by the caller
    match (lower, arg) {
        (Lower::I64, Arg::Integer(x)) => out.push(Val::I64(*x)),
        (Lower::I64, Arg::Boolean(b)) => out.push(Val::I64(i64::from(*b))),
        (Lower::I32, Arg::Integer(x)) => out.push(Val::I32(*x as i32)),
        (Lower::I32, Arg::Boolean(b)) => out.push(Val::I32(i32::from(*b))),
        (Lower::F64, Arg::Real(x)) => out.push(Val::F64(x.to_bits())),
        (Lower::F32, Arg::Real(x)) => out.push(Val::F32((*x as f32).to_bits())),
        // CALLED ON NULL INPUT: a NULL number reaches the guest as zero
        // (heliosdb_get_param tells it apart).
        (Lower::I64, _) => out.push(Val::I64(0)),
        (Lower::I32, _) => out.push(Val::I32(0)),
        (Lower::F64, _) => out.push(Val::F64(0)),
        (Lower::F32, _) => out.push(Val::F32(0)),
        (Lower::Buffer, Arg::Text(bytes) | Arg::Blob(bytes)) => {
            let (ptr, len) = give(&mut *store, guest, bytes).map_err(|stop| unwind(store, stop))?;
            out.extend([Val::I32(ptr.cast_signed()), Val::I32(len.cast_signed())]);
        }
        (Lower::Buffer, _) => out.extend([Val::I32(0), Val::I32(0)]),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::pool::InstancePool;
    use crate::testutil::runtime;
    use wasmtime::Module;

    use crate::testutil::{rows, Mock};

    const GUEST: &str = r#"(module
        (import "heliosdb" "heliosdb_query" (func $query (param i32 i32 i32 i32 i32) (result i32)))
        (import "heliosdb" "heliosdb_return" (func $return (param i32 i32 i32)))
        (import "heliosdb" "heliosdb_get_param" (func $param (param i32 i32) (result i32)))
        (import "heliosdb" "heliosdb_last_error" (func $last (param i32) (result i32)))
        (import "heliosdb" "heliosdb_log" (func $log (param i32 i32 i32)))
        (import "heliosdb" "heliosdb_error" (func $error (param i32 i32 i32 i32)))
        (memory (export "memory") 1)
        (data (i32.const 0) "SELECT 1badfatalhello")
        (global $heap (mut i32) (i32.const 4096))
        (func (export "heliosdb_alloc") (param $size i32) (param $align i32) (result i32)
            (local $ptr i32)
            (local.set $ptr (global.get $heap))
            (global.set $heap (i32.add (local.get $ptr) (local.get $size)))
            (local.get $ptr))
        ;; echo(text): the argument's buffer back as text
        (func (export "echo") (param $ptr i32) (param $len i32)
            (call $return (i32.const 3) (local.get $ptr) (local.get $len)))
        ;; param0(): heliosdb_get_param(0) of a text argument, returned
        (func (export "param0") (param i32 i32) (result i32)
            (local $tag i32)
            (local.set $tag (call $param (i32.const 0) (i32.const 512)))
            (call $return (local.get $tag) (i32.load (i32.const 512)) (i32.load (i32.const 516)))
            (local.get $tag))
        ;; rows(): SELECT 1 with a parameter list, its rows returned
        (func (export "rows") (result i32)
            (local $status i32)
            (i32.store (i32.const 600) (i32.const 0))
            (local.set $status (call $query (i32.const 0) (i32.const 8) (i32.const 600) (i32.const 4) (i32.const 512)))
            (call $return (i32.const 6) (i32.load (i32.const 512)) (i32.load (i32.const 516)))
            (local.get $status))
        ;; failing(): the status of "bad", then its message returned
        (func (export "failing") (result i32)
            (local $status i32)
            (local.set $status (call $query (i32.const 8) (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 512)))
            (drop (call $last (i32.const 520)))
            (call $return (i32.const 3) (i32.load (i32.const 520)) (i32.load (i32.const 524)))
            (local.get $status))
        (func (export "fatal") (result i32)
            (call $query (i32.const 11) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 512)))
        (func (export "outside")
            (call $log (i32.const 2) (i32.const 65530) (i32.const 100)))
        (func (export "bad_level")
            (call $log (i32.const 9) (i32.const 16) (i32.const 5)))
        (func (export "info")
            (call $log (i32.const 2) (i32.const 16) (i32.const 5)))
        (func (export "raise_and_trap")
            (call $error (i32.const 16) (i32.const 5) (i32.const 8) (i32.const 3))
            unreachable)
    )"#;

    fn pool(wat: &str) -> InstancePool<BasicState<Mock>> {
        let runtime = runtime();
        let module = Module::new(runtime.engine(), wat).unwrap();
        let pre = linker::<Mock>(runtime.engine(), false)
            .unwrap()
            .instantiate_pre(&module)
            .unwrap();
        InstancePool::new(&runtime, pre, Limits::default(), || {
            Ok(BasicState::default())
        })
        .unwrap()
    }

    const WASI_GUEST: &str = r#"(module
        (import "wasi_snapshot_preview1" "fd_write"
            (func $fd_write (param i32 i32 i32 i32) (result i32)))
        (import "heliosdb" "heliosdb_log" (func $log (param i32 i32 i32)))
        (memory (export "memory") 1)
        (data (i32.const 64) "out\nmid\ntail")
        (func $write (param $ptr i32) (param $len i32)
            (i32.store (i32.const 0) (local.get $ptr))
            (i32.store (i32.const 4) (local.get $len))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16))))
        (func (export "_initialize") (call $write (i32.const 64) (i32.const 4)))
        (func (export "f")
            (call $log (i32.const 2) (i32.const 68) (i32.const 3))
            (call $write (i32.const 72) (i32.const 4)))
    )"#;

    #[test]
    fn wasi_output_reaches_the_log_in_order_after_held_lines() {
        let runtime = runtime();
        let module = Module::new(runtime.engine(), WASI_GUEST).unwrap();
        let pre = linker::<Mock>(runtime.engine(), true)
            .unwrap()
            .instantiate_pre(&module)
            .unwrap();
        let spec = crate::wasi::WasiSpec {
            stdout: true,
            max_log_bytes: 1 << 20,
            ..crate::wasi::WasiSpec::default()
        };
        let limits = Limits::default();
        let timeout = limits.timeout;
        let pool = InstancePool::new(&runtime, pre, limits, move || {
            spec.build(timeout)
                .map(BasicState::with_wasi)
                .map_err(CallError::abi)
        })
        .unwrap();
        let mut instance = pool.acquire().unwrap();
        let (result, _, host) = call(&mut instance, Some(Mock::default()), "f", &[], vec![]);
        assert!(result.is_ok());
        // _initialize's line was held for the first call; the unterminated
        // tail is flushed when the call ends.
        let logs: Vec<_> = host.unwrap().logs.into_iter().map(|(_, m)| m).collect();
        assert_eq!(logs, ["out", "mid", "tail"]);
    }

    fn run(export: &str, lowering: &[Lower], args: Vec<Arg>) -> (Called<Vec<Val>, Mock>, bool) {
        let pool = pool(GUEST);
        let mut instance = pool.acquire().unwrap();
        let called = call(&mut instance, Some(Mock::default()), export, lowering, args);
        let poisoned = instance.is_poisoned();
        (called, poisoned)
    }

    #[test]
    fn arguments_of_other_types_than_the_export_takes_are_refused() {
        // `echo` takes (i32, i32): an i64 and one argument too few are
        // wasmtime's type errors (the unchecked call is only for exact
        // types), the instance poisoned and nothing run.
        let ((result, _, _), poisoned) = run("echo", &[Lower::I64], vec![Arg::Integer(1)]);
        let Err(CallFailure::Call(err)) = result else {
            panic!("expected a type error")
        };
        assert!(
            err.to_string().contains("type mismatch") || err.to_string().contains("expected"),
            "{err}"
        );
        assert!(poisoned);
        // Numbers of the right types run, and again on the same instance
        // (the export resolved once).
        let pool = pool(GUEST);
        let mut instance = pool.acquire().unwrap();
        for _ in 0..2 {
            let (result, _, _) = call(&mut instance, Some(Mock::default()), "rows", &[], vec![]);
            assert_eq!(result.unwrap()[0].i32(), Some(0));
        }
    }

    #[test]
    fn an_allocator_of_another_type_is_a_type_error_not_a_call() {
        let wat = r#"(module
            (import "heliosdb" "heliosdb_return" (func $return (param i32 i32 i32)))
            (memory (export "memory") 1)
            (func (export "heliosdb_alloc") (param i64 i32) (result i32) (i32.const 64))
            (func (export "echo") (param $ptr i32) (param $len i32)
                (call $return (i32.const 3) (local.get $ptr) (local.get $len))))"#;
        let pool = pool(wat);
        let mut instance = pool.acquire().unwrap();
        let (result, _, _) = call(
            &mut instance,
            Some(Mock::default()),
            "echo",
            &[Lower::Buffer],
            vec![Arg::Text(b"hi".to_vec())],
        );
        assert!(result.is_err());
        assert!(instance.is_poisoned());
    }

    #[test]
    fn a_text_argument_is_a_buffer_the_guest_allocated() {
        let ((result, outcome, _), poisoned) =
            run("echo", &[Lower::Buffer], vec![Arg::Text(b"hello".to_vec())]);
        assert!(result.is_ok() && !poisoned);
        assert_eq!(outcome.returned, Some((TAG_TEXT, b"hello".to_vec())));
        assert!(outcome.fuel_used > 0);
        assert_eq!(outcome.memory_bytes, Some(65536));
    }

    #[test]
    fn get_param_hands_out_the_argument() {
        let ((result, outcome, _), _) =
            run("param0", &[Lower::Buffer], vec![Arg::Blob(vec![9, 8])]);
        assert_eq!(result.unwrap()[0].i32(), Some(i32::from(TAG_BLOB)));
        assert_eq!(outcome.returned, Some((TAG_BLOB, vec![9, 8])));
    }

    #[test]
    fn a_query_reaches_the_host_and_its_rows_the_guest() {
        let ((result, outcome, host), _) = run("rows", &[], vec![]);
        assert_eq!(result.unwrap()[0].i32(), Some(0));
        assert_eq!(outcome.returned, Some((6, rows())));
        let host = host.unwrap();
        assert_eq!(host.queries, [("SELECT 1".to_owned(), vec![0, 0, 0, 0])]);
    }

    #[test]
    fn a_failed_host_call_is_a_status_and_a_last_error() {
        let ((result, outcome, _), poisoned) = run("failing", &[], vec![]);
        assert_eq!(result.unwrap()[0].i32(), Some(status_of("constraint")));
        assert_eq!(
            outcome.returned,
            Some((TAG_TEXT, b"UNIQUE failed".to_vec()))
        );
        assert!(!poisoned);
    }

    #[test]
    fn a_fatal_host_error_ends_the_call_and_poisons() {
        let ((result, _, _), poisoned) = run("fatal", &[], vec![]);
        assert!(matches!(result, Err(CallFailure::Fault(Fault::Host(e))) if e == "busy"));
        assert!(poisoned);
    }

    #[test]
    fn abi_faults_name_what_was_wrong() {
        let ((result, _, _), _) = run("outside", &[], vec![]);
        let Err(CallFailure::Fault(Fault::Abi(message))) = result else {
            panic!("not an ABI fault");
        };
        assert_eq!(
            message,
            "log message: buffer at 0xfffa of 100 bytes is outside linear memory (65536 bytes)"
        );
        let ((result, _, _), _) = run("bad_level", &[], vec![]);
        assert!(
            matches!(result, Err(CallFailure::Fault(Fault::Abi(m))) if m == "heliosdb_log: unknown level 9 (0..4)")
        );
    }

    #[test]
    fn logs_reach_the_host() {
        let ((result, outcome, host), _) = run("info", &[], vec![]);
        assert!(result.is_ok());
        assert_eq!(host.unwrap().logs, [("info", "hello".to_owned())]);
        assert!(outcome.host > Duration::ZERO);
    }

    #[test]
    fn raising_then_trapping_keeps_the_raised_error() {
        let ((result, outcome, _), poisoned) = run("raise_and_trap", &[], vec![]);
        assert!(matches!(
            result,
            Err(CallFailure::Call(CallError::Trap { .. }))
        ));
        assert_eq!(outcome.raised, Some(("hello".to_owned(), "bad".to_owned())));
        assert!(poisoned);
    }

    #[test]
    fn without_a_host_no_host_function_runs() {
        let pool = pool(GUEST);
        let mut instance = pool.acquire().unwrap();
        let (result, _, _) = call::<Mock>(&mut instance, None, "info", &[], vec![]);
        assert!(
            matches!(result, Err(CallFailure::Fault(Fault::Abi(m))) if m.contains("while instantiating"))
        );
    }

    #[test]
    fn a_start_function_may_not_call_the_host() {
        let wat = r#"(module
            (import "heliosdb" "heliosdb_log" (func $log (param i32 i32 i32)))
            (memory (export "memory") 1)
            (func $start (call $log (i32.const 2) (i32.const 0) (i32.const 0)))
            (start $start))"#;
        let Err(err) = pool(wat).acquire() else {
            panic!("instantiated");
        };
        assert_eq!(err.code(), "trap");
    }

    #[test]
    fn status_codes_follow_the_wit_cases() {
        assert_eq!(status_of("access-denied"), 1);
        assert_eq!(status_of("user-error"), 6);
        assert_eq!(status_of("nothing"), status_of("sql-error"));
    }
}
