//! `Numeric`: one numeric export of an import-free module, with its pool.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PySequence, PyString, PyTuple};
use wasmtime::{Linker, ValRaw};

use super::hosted::{BasicGuest, ComponentGuest, Hosted};
use super::runtime::{core_error, PyModule_};
use super::with_gil;
use crate::basic::Arg;
use crate::error::CallError;
use crate::limits::Limits;
use crate::pool::{InstancePool, Instances, StoreData};
use crate::typed::{Export, NumType};

/// An SQL number type as it crosses into wasm (docs/abi.md §3): BIGINT i64,
/// INTEGER i32, DOUBLE f64, REAL f32, BOOLEAN an i32 that is 0 or 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    I64,
    I32,
    F64,
    F32,
    Bool,
}

impl Kind {
    /// The kinds of a signature: each parameter's, and the result's if any.
    pub fn signature(
        params: &[String],
        result: Option<&str>,
    ) -> PyResult<(Box<[Self]>, Option<Self>)> {
        let params = params
            .iter()
            .map(|p| Self::parse(p))
            .collect::<PyResult<Box<[Self]>>>()?;
        Ok((params, result.map(Self::parse).transpose()?))
    }

    pub fn parse(name: &str) -> PyResult<Self> {
        Ok(match name {
            "i64" => Self::I64,
            "i32" => Self::I32,
            "f64" => Self::F64,
            "f32" => Self::F32,
            "bool" => Self::Bool,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown value kind {other:?}"
                )))
            }
        })
    }

    pub(super) fn wasm(self) -> NumType {
        match self {
            Self::I64 => NumType::I64,
            Self::I32 | Self::Bool => NumType::I32,
            Self::F64 => NumType::F64,
            Self::F32 => NumType::F32,
        }
    }
}

/// A parameter as the core takes it: a number of a kind, or a text or blob
/// buffer (only procedures whose host functions the core serves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Num(Kind),
    Text,
    Blob,
    /// Text that must be valid JSON: the guest gets the text.
    Json,
}

impl Param {
    /// `"text"`, `"blob"`, `"json"`, or a number kind.
    pub fn parse_all(names: &[String]) -> PyResult<Box<[Self]>> {
        names
            .iter()
            .map(|name| match name.as_str() {
                "text" => Ok(Self::Text),
                "blob" => Ok(Self::Blob),
                "json" => Ok(Self::Json),
                other => Kind::parse(other).map(Self::Num),
            })
            .collect()
    }

    /// The number kinds of `params`, if every one is a number.
    pub fn kinds(params: &[Self]) -> Option<Box<[Kind]>> {
        params
            .iter()
            .map(|p| match p {
                Self::Num(kind) => Some(*kind),
                Self::Text | Self::Blob | Self::Json => None,
            })
            .collect()
    }
}

/// A Python value for a buffer parameter: str for text, bytes-like for a
/// blob (TypeError for anything else: `Runner.call` names the argument).
pub fn to_buffer(value: &Bound<'_, PyAny>, param: Param) -> PyResult<Arg> {
    if value.is_none() {
        // CALLED ON NULL INPUT: the guest is told it is NULL.
        return Ok(Arg::Null);
    }
    match param {
        // JSON was checked by the caller (values.coerce, with Python's words).
        Param::Text | Param::Json => Ok(Arg::Text(
            value.cast::<PyString>()?.to_str()?.as_bytes().to_vec(),
        )),
        Param::Blob => {
            if let Ok(b) = value.cast::<PyBytes>() {
                Ok(Arg::Blob(b.as_bytes().to_vec()))
            } else {
                Err(PyTypeError::new_err(format!(
                    "a blob parameter takes bytes, not {}",
                    value.get_type().name()?
                )))
            }
        }
        Param::Num(kind) => Ok(slot_arg(kind, to_slot(value, kind)?)),
    }
}

/// Python values as the arguments of parameters `specs` (`to_buffer`
/// each); a `ValueError` for another count.
fn buffer_args(specs: &[Param], args: &Bound<'_, PySequence>) -> PyResult<Vec<Arg>> {
    let n = args.len()?;
    if n != specs.len() {
        return Err(PyValueError::new_err(format!(
            "expected {} argument(s), got {n}",
            specs.len()
        )));
    }
    (0..n)
        .map(|i| to_buffer(&args.get_item(i)?, specs[i]))
        .collect()
}

/// A slot of `kind` as the argument it stands for.
pub fn slot_arg(kind: Kind, slot: ValRaw) -> Arg {
    match kind {
        Kind::I64 => Arg::Integer(slot.get_i64()),
        Kind::I32 => Arg::Integer(i64::from(slot.get_i32())),
        Kind::Bool => Arg::Boolean(slot.get_i32() != 0),
        Kind::F64 => Arg::Real(f64::from_bits(slot.get_f64())),
        Kind::F32 => Arg::Real(f64::from(f32::from_bits(slot.get_f32()))),
    }
}

/// A Python number into a slot, as the SQL value it stands for: integers
/// must fit their type (OverflowError), a boolean parameter takes an int or
/// bool (its truth), a float parameter a float or an int (TypeError for
/// anything else, so the caller can fall back on `Runner.call`, which
/// names the argument).
pub fn to_slot(value: &Bound<'_, PyAny>, kind: Kind) -> PyResult<ValRaw> {
    match kind {
        Kind::I64 | Kind::I32 => {
            if !value.is_instance_of::<PyInt>() {
                return Err(PyTypeError::new_err(format!(
                    "an integer parameter takes int, not {}",
                    value.get_type().name()?
                )));
            }
            let x: i64 = value.extract().map_err(|_| {
                PyOverflowError::new_err("a value out of range for a 64-bit parameter")
            })?;
            if kind == Kind::I64 {
                Ok(ValRaw::i64(x))
            } else {
                let x = i32::try_from(x).map_err(|_| {
                    PyOverflowError::new_err("a value out of range for a 32-bit parameter")
                })?;
                Ok(ValRaw::i32(x))
            }
        }
        Kind::Bool => {
            if !value.is_instance_of::<PyInt>() {
                return Err(PyTypeError::new_err(format!(
                    "a boolean parameter takes bool or int, not {}",
                    value.get_type().name()?
                )));
            }
            Ok(ValRaw::i32(i32::from(value.is_truthy()?)))
        }
        Kind::F64 | Kind::F32 => {
            let d: f64 = if let Ok(f) = value.cast::<PyFloat>() {
                f.value()
            } else if value.is_instance_of::<PyInt>() {
                value.extract::<f64>()?
            } else {
                return Err(PyTypeError::new_err(format!(
                    "a float parameter takes float or int, not {}",
                    value.get_type().name()?
                )));
            };
            Ok(float_slot(kind, d))
        }
    }
}

/// A slot of `kind` in 8 bytes (a batch holds its values so: half a
/// `ValRaw`, so a million-row batch touches half the pages).
fn pack(kind: Kind, slot: ValRaw) -> u64 {
    match kind {
        #[allow(clippy::cast_sign_loss)] // bits, not a number
        Kind::I64 => slot.get_i64() as u64,
        #[allow(clippy::cast_sign_loss)]
        Kind::I32 | Kind::Bool => u64::from(slot.get_i32() as u32),
        Kind::F64 => slot.get_f64(),
        Kind::F32 => u64::from(slot.get_f32()),
    }
}

/// The slot `pack` made `bits` of.
fn unpack(kind: Kind, bits: u64) -> ValRaw {
    #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)] // bits
    match kind {
        Kind::I64 => ValRaw::i64(bits as i64),
        Kind::I32 | Kind::Bool => ValRaw::i32(bits as u32 as i32),
        Kind::F64 => ValRaw::f64(bits),
        Kind::F32 => ValRaw::f32(bits as u32),
    }
}

/// A double into an f64 slot or (rounded) an f32 one.
pub fn float_slot(kind: Kind, d: f64) -> ValRaw {
    if kind == Kind::F64 {
        ValRaw::f64(d.to_bits())
    } else {
        #[allow(clippy::cast_possible_truncation)] // REAL is f32: rounding is the point
        ValRaw::f32((d as f32).to_bits())
    }
}

/// The result slot as a Python value.
fn from_slot(py: Python<'_>, kind: Option<Kind>, slot: ValRaw) -> Py<PyAny> {
    match kind {
        None => py.None(),
        Some(Kind::I64) => slot
            .get_i64()
            .into_pyobject(py)
            .unwrap()
            .into_any()
            .unbind(),
        Some(Kind::I32) => slot
            .get_i32()
            .into_pyobject(py)
            .unwrap()
            .into_any()
            .unbind(),
        Some(Kind::Bool) => PyBool::new(py, slot.get_i32() != 0)
            .to_owned()
            .into_any()
            .unbind(),
        Some(Kind::F64) => f64::from_bits(slot.get_f64())
            .into_pyobject(py)
            .unwrap()
            .into_any()
            .unbind(),
        Some(Kind::F32) => f64::from(f32::from_bits(slot.get_f32()))
            .into_pyobject(py)
            .unwrap()
            .into_any()
            .unbind(),
    }
}

/// Successful calls counted for telemetry without Python per call, in the
/// shape of `telemetry.Metrics`' latency histogram. Counted with relaxed
/// atomics from any thread: a drain may see a call's count a moment before
/// its time, never lose either.
///
/// Reading the clock twice costs more than a numeric call itself (~15 ns
/// each here, a quarter of an SQL row), so single calls are timed one in
/// [`SAMPLE_EVERY`] per thread (and the first): the others count in the
/// bucket and with the duration of the last timed one. Batches and failed
/// calls are always timed.
pub struct TallyInner {
    base_seconds: f64,
    per_octave: f64,
    nanos: AtomicU64,
    histogram: Box<[AtomicU64]>,
    // The last timed call: its nanoseconds (UNTIMED before the first) and bucket.
    last_nanos: AtomicU64,
    last_bucket: AtomicUsize,
    // Fuel used and the largest memory seen (0: none), by calls that report them.
    fuel: AtomicU64,
    max_memory: AtomicU64,
}

/// One single call in this many is timed (per thread).
pub const SAMPLE_EVERY: u32 = 16;
const UNTIMED: u64 = u64::MAX;

thread_local! {
    static CALLS_ON_THREAD: Cell<u32> = const { Cell::new(0) };
}

impl TallyInner {
    fn bucket(&self, seconds: f64) -> usize {
        let last = self.histogram.len() - 1;
        if seconds <= self.base_seconds {
            0
        } else {
            // telemetry.bucket_of: int(log2(s / base) * per_octave) + 1, capped.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let index = ((seconds / self.base_seconds).log2() * self.per_octave) as usize;
            (index + 1).min(last)
        }
    }

    /// Whether the next single call on this thread should be timed.
    pub fn time_next(&self) -> bool {
        let n = CALLS_ON_THREAD.with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            n
        });
        n.is_multiple_of(SAMPLE_EVERY) || self.last_nanos.load(Ordering::Relaxed) == UNTIMED
    }

    /// One successful single call: timed (`Some`), or counted as the last
    /// timed one was.
    pub fn count_call(&self, elapsed: Option<Duration>) {
        match elapsed {
            Some(elapsed) => {
                let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(UNTIMED - 1);
                let bucket = self.bucket(elapsed.as_secs_f64());
                self.last_bucket.store(bucket, Ordering::Relaxed);
                self.last_nanos.store(nanos, Ordering::Relaxed);
                self.add(1, nanos, bucket);
            }
            None => {
                let nanos = self.last_nanos.load(Ordering::Relaxed);
                let bucket = self.last_bucket.load(Ordering::Relaxed);
                self.add(1, if nanos == UNTIMED { 0 } else { nanos }, bucket);
            }
        }
    }

    /// `calls` successful calls that took `seconds` in all, each put in the
    /// bucket of their mean (as `telemetry.Metrics.count_many`).
    pub fn count_many(&self, calls: u64, seconds: f64) {
        if calls == 0 {
            return;
        }
        #[allow(clippy::cast_precision_loss)] // a mean for a histogram bucket
        let bucket = self.bucket(seconds / calls as f64);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        self.add(calls, (seconds * 1e9).round() as u64, bucket);
    }

    /// What a call used: its fuel, and its memory at the end.
    pub fn count_resources(&self, fuel: u64, memory_bytes: Option<usize>) {
        self.fuel.fetch_add(fuel, Ordering::Relaxed);
        if let Some(bytes) = memory_bytes {
            let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
            // A load first: memory rarely grows, and a locked
            // read-modify-write on every call is the dearer operation.
            if bytes > self.max_memory.load(Ordering::Relaxed) {
                self.max_memory.fetch_max(bytes, Ordering::Relaxed);
            }
        }
    }

    fn add(&self, calls: u64, nanos: u64, bucket: usize) {
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        self.histogram[bucket].fetch_add(calls, Ordering::Relaxed);
    }
}

/// The successful calls of one `Numeric` since the last `drain()`, folded
/// into the version's metrics by `Telemetry.collect`.
#[pyclass(module = "heliosdb_wasm._core", frozen)]
pub struct Tally {
    pub inner: Arc<TallyInner>,
}

#[pymethods]
impl Tally {
    #[new]
    fn new(base_seconds: f64, per_octave: f64, buckets: usize) -> PyResult<Self> {
        if !(base_seconds > 0.0 && per_octave > 0.0 && (1..=1 << 20).contains(&buckets)) {
            return Err(PyValueError::new_err("bad histogram shape"));
        }
        Ok(Self {
            inner: Arc::new(TallyInner {
                base_seconds,
                per_octave,
                nanos: AtomicU64::new(0),
                histogram: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
                last_nanos: AtomicU64::new(UNTIMED),
                last_bucket: AtomicUsize::new(0),
                fuel: AtomicU64::new(0),
                max_memory: AtomicU64::new(0),
            }),
        })
    }

    /// Counts one successful call of `seconds` (what the core does per call).
    fn count(&self, seconds: f64) -> PyResult<()> {
        if !(seconds.is_finite() && seconds >= 0.0) {
            return Err(PyValueError::new_err(
                "seconds must be a finite, non-negative number",
            ));
        }
        self.inner.count_many(1, seconds);
        Ok(())
    }

    /// `(calls, seconds, {bucket: calls}, fuel, max_memory)` counted since
    /// the last drain (`max_memory` None when no call reported one).
    #[allow(clippy::type_complexity)]
    fn drain<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(u64, f64, Bound<'py, PyDict>, u64, Option<u64>)> {
        let inner = &*self.inner;
        let histogram = PyDict::new(py);
        let mut calls = 0;
        for (bucket, n) in inner.histogram.iter().enumerate() {
            let n = n.swap(0, Ordering::Relaxed);
            if n > 0 {
                histogram.set_item(bucket, n)?;
                calls += n;
            }
        }
        #[allow(clippy::cast_precision_loss)] // nanoseconds to seconds
        let seconds = inner.nanos.swap(0, Ordering::Relaxed) as f64 / 1e9;
        let fuel = inner.fuel.swap(0, Ordering::Relaxed);
        let memory = inner.max_memory.swap(0, Ordering::Relaxed);
        Ok((
            calls,
            seconds,
            histogram,
            fuel,
            (memory > 0).then_some(memory),
        ))
    }

    /// Whether a `Numeric` still counts into this tally.
    #[getter]
    fn attached(&self) -> bool {
        Arc::strong_count(&self.inner) > 1
    }
}

/// What a `Numeric` calls, and the `Scalar`s bound to it: an import-free
/// export ([`Pure`]) or one of a module with host imports
/// (`super::hosted::Hosted`).
pub trait Target: Send + Sync {
    fn params(&self) -> &[Kind];
    fn result(&self) -> Option<Kind>;
    /// Slots a call needs (arguments in, the result in the first).
    fn slots(&self) -> usize;
    /// Whether a NULL argument may reach the guest as a zero (CALLED ON
    /// NULL INPUT). A guest that can ask `heliosdb_get_param` must see it
    /// NULL instead, so such rows go by arguments (`call_args`).
    fn zeros_for_nulls(&self) -> bool;
    /// One call with the arguments in `slots`; the result in `slots[0]`
    /// (`Answer::Slot`), or SQL NULL, or a value Python made (a text, blob
    /// or JSON result the guest gave `heliosdb_return`). Called without the
    /// GIL.
    ///
    /// # Errors
    ///
    /// Why the call failed.
    fn call_slots(&self, slots: &mut [ValRaw]) -> Result<Answer, Failure>;
    /// Every row of `columns` (packed values), each row's result into
    /// `results` (the rows whose result is not a number into `others`,
    /// None for NULL); the rows done and the failure that stopped them.
    fn run_rows(
        &self,
        columns: &[Vec<u64>],
        results: &mut [u64],
        others: &mut Vec<(usize, Answer)>,
    ) -> (usize, Option<Failure>) {
        let mut row = vec![ValRaw::i64(0); self.slots()];
        for (r, result) in results.iter_mut().enumerate() {
            for ((slot, column), kind) in row.iter_mut().zip(columns).zip(self.params()) {
                *slot = unpack(*kind, column[r]);
            }
            match self.call_slots(&mut row) {
                Err(failure) => return (r, Some(failure)),
                Ok(Answer::Slot) => {}
                Ok(other) => others.push((r, other)),
            }
            if let Some(kind) = self.result() {
                *result = pack(kind, row[0]);
            }
        }
        (results.len(), None)
    }
    /// The Python exception for `failure` (`row`: the rows of a batch
    /// done before it).
    fn exception(&self, py: Python<'_>, failure: Failure, row: Option<usize>) -> PyErr;
    /// Every parameter, buffers included (`params` has the number kinds
    /// only when there is no buffer).
    fn specs(&self) -> Box<[Param]> {
        self.params().iter().map(|k| Param::Num(*k)).collect()
    }
    /// One call with `args` (some of them buffers); a number result in
    /// `out[0]`. Called without the GIL.
    ///
    /// # Errors
    ///
    /// Why the call failed.
    fn call_args(&self, _args: Vec<Arg>, _out: &mut [ValRaw]) -> Result<Answer, Failure> {
        Err(Failure::Raised(PyTypeError::new_err(
            "this procedure takes numbers only",
        )))
    }
    /// Instances idle in the pool, and made since it was built.
    fn idle_count(&self) -> usize;
    fn instantiated_count(&self) -> usize;
    /// Makes instances until `n` are idle (at most the pool's size), so
    /// the calls that come need to make none.
    ///
    /// # Errors
    ///
    /// An instance could not be made (its start or `_initialize` failed).
    fn prewarm(&self, n: usize) -> Result<(), CallError>;
    /// This target as the bracket of calls on instances their caller holds
    /// (an aggregate group's role calls, `aggregate.rs`): a Basic-ABI
    /// module's hosted export.
    fn basic_host(&self) -> Option<&Hosted<BasicGuest>> {
        None
    }
    /// This target as a component's hosted export (its calls may take any
    /// of the component's types: `Numeric.call_values`).
    fn component_host(&self) -> Option<&Hosted<ComponentGuest>> {
        None
    }
    /// This target as a SingleStore function (`canonical.rs`), whose
    /// instances a caller may hold (`Numeric.hold`).
    fn canonical(&self) -> Option<&super::canonical::Canonical> {
        None
    }
}

/// Where one call's time went, for `procedure profile` (`Numeric.profiled`):
/// kept per thread by the call that ran last on it, so recording it costs a
/// call a few stores and no lock.
#[derive(Clone, Copy, Default)]
pub struct Profile {
    pub instantiate: Duration,
    pub wasm: Duration,
    pub host: Duration,
    pub fuel_used: Option<u64>,
    pub memory_bytes: Option<usize>,
}

thread_local! {
    static LAST_PROFILE: Cell<Option<Profile>> = const { Cell::new(None) };
    static PROFILING: Cell<bool> = const { Cell::new(false) };
}

impl Profile {
    /// Whether the calls on this thread are being profiled: their time in
    /// host functions is measured then (two clock reads each, which calls
    /// no one profiles save).
    pub fn wanted() -> bool {
        PROFILING.with(Cell::get)
    }

    /// This thread's last call's profile is `self` (recorded only while
    /// [`wanted`](Self::wanted)).
    pub fn record(self) {
        LAST_PROFILE.with(|last| last.set(Some(self)));
    }

    /// The profile the last call on this thread recorded, if any since the
    /// last `take`.
    pub fn take() -> Option<Self> {
        LAST_PROFILE.with(Cell::take)
    }
}

/// A `Profile` as Python gets it.
type ProfileTuple = (f64, f64, f64, Option<u64>, Option<usize>);

/// What a call gave.
pub enum Answer {
    /// The number in `slots[0]`.
    Slot,
    Null,
    /// A value other than a number, as Python made it.
    Value(Py<PyAny>),
    /// Text or bytes the core made, for SQLite or Python to take as they
    /// are (no Python needed for an SQL result).
    Text(String),
    Bytes(Vec<u8>),
}

impl Answer {
    /// The answer as a Python value (`kind`: the number's, for `Slot`).
    pub fn into_py(self, py: Python<'_>, kind: Option<Kind>, slot: ValRaw) -> Py<PyAny> {
        match self {
            Self::Slot => from_slot(py, kind, slot),
            Self::Null => py.None(),
            Self::Value(value) => value,
            Self::Text(text) => PyString::new(py, &text).into_any().unbind(),
            Self::Bytes(bytes) => PyBytes::new(py, &bytes).into_any().unbind(),
        }
    }
}

/// Why a call failed.
pub enum Failure {
    /// The guest failed: the `fault` hook makes the typed error.
    Call { error: CallError, elapsed: Duration },
    /// The typed error already (a host function's, located and counted).
    Raised(PyErr),
}

/// What a `Numeric` of an import-free module shares with its `Scalar`s.
pub struct Pure {
    pool: InstancePool<()>,
    export: Export,
    params: Box<[Kind]>,
    result: Option<Kind>,
    tally: Arc<TallyInner>,
    // fault(code, message, limit, frames, seconds, row) -> the exception to raise
    fault: Py<PyAny>,
}

/// The exception the `fault` hook makes of a guest failure (and counts in
/// the version's metrics).
pub fn fault_exception(
    py: Python<'_>,
    fault: &Py<PyAny>,
    error: &CallError,
    elapsed: Duration,
    row: Option<usize>,
) -> PyErr {
    let args = (
        error.code(),
        error.message(),
        error.limit_name(),
        error.frame_lines(),
        elapsed.as_secs_f64(),
        row,
    );
    match fault.call1(py, args) {
        Ok(exc) => PyErr::from_value(exc.into_bound(py)),
        Err(err) => err,
    }
}

/// The typed error `hooks.<name>(*args)` returns (or the error calling it
/// raised), as a call's failure.
pub fn hook_error<A>(hooks: &Py<PyAny>, name: &str, args: A) -> Failure
where
    A: for<'py> pyo3::call::PyCallArgs<'py>,
{
    Failure::Raised(with_gil(|py| {
        match hooks.bind(py).call_method1(name, args) {
            Ok(exc) => PyErr::from_value(exc),
            Err(err) => err,
        }
    }))
}

/// The Python exception for `failure`: the typed error `fault` makes of a
/// guest's, or the one a hook made already.
pub fn failure_exception(
    py: Python<'_>,
    fault: &Py<PyAny>,
    failure: Failure,
    row: Option<usize>,
) -> PyErr {
    match failure {
        Failure::Call { error, elapsed } => fault_exception(py, fault, &error, elapsed, row),
        Failure::Raised(err) => err,
    }
}

/// The arguments of a call whose parameters are all numbers, from its slots.
pub fn slot_args(params: &[Kind], slots: &[ValRaw]) -> Vec<Arg> {
    params
        .iter()
        .zip(slots)
        .map(|(kind, slot)| slot_arg(*kind, *slot))
        .collect()
}

/// The bytes `args` count against `max_arg_bytes`, as Runner._arguments
/// counts them: a buffer's length, 8 a number.
pub fn arg_bytes(args: &[Arg]) -> usize {
    args.iter()
        .map(|a| match a {
            Arg::Text(b) | Arg::Blob(b) => b.len(),
            Arg::Null => 0,
            _ => 8,
        })
        .sum()
}

/// `args` within `max` bytes (`max_arg_bytes`), or the refusal
/// `hooks.too_many_arg_bytes` makes, before any guest runs.
pub fn within_arg_bytes(args: &[Arg], max: usize, hooks: &Py<PyAny>) -> Result<(), Failure> {
    let size = arg_bytes(args);
    if size > max {
        return Err(hook_error(hooks, "too_many_arg_bytes", (size,)));
    }
    Ok(())
}

impl Target for Pure {
    fn params(&self) -> &[Kind] {
        &self.params
    }

    fn result(&self) -> Option<Kind> {
        self.result
    }

    fn slots(&self) -> usize {
        self.export.slots().max(1)
    }

    fn zeros_for_nulls(&self) -> bool {
        true
    }

    fn call_slots(&self, slots: &mut [ValRaw]) -> Result<Answer, Failure> {
        let started = self.tally.time_next().then(Instant::now);
        let outcome = self.pool.acquire().and_then(|mut instance| {
            let outcome = self.export.call_raw(&mut instance, slots);
            self.pool.release(instance);
            outcome
        });
        let elapsed = started.map(|started| started.elapsed());
        match outcome {
            Ok(()) => {
                self.tally.count_call(elapsed);
                Ok(Answer::Slot)
            }
            Err(error) => Err(Failure::Call {
                error,
                elapsed: elapsed.unwrap_or_default(),
            }),
        }
    }

    /// Every row on one instance, re-armed per row (never NULL).
    fn run_rows(
        &self,
        columns: &[Vec<u64>],
        results: &mut [u64],
        _others: &mut Vec<(usize, Answer)>,
    ) -> (usize, Option<Failure>) {
        let width = self.slots();
        let mut row = vec![ValRaw::i64(0); width];
        let rows = results.len();
        let started = Instant::now();
        let mut instance = match self.pool.acquire() {
            Ok(instance) => instance,
            Err(error) => {
                let elapsed = started.elapsed();
                return (0, Some(Failure::Call { error, elapsed }));
            }
        };
        for (r, result) in results.iter_mut().enumerate() {
            for ((slot, column), kind) in row.iter_mut().zip(columns).zip(self.params.iter()) {
                *slot = unpack(*kind, column[r]);
            }
            if let Err(error) = self.export.call_raw(&mut instance, &mut row) {
                // The rows done are counted here; the failed one by `fault`.
                self.tally
                    .count_many(r as u64, started.elapsed().as_secs_f64());
                let elapsed = Duration::ZERO;
                return (r, Some(Failure::Call { error, elapsed }));
            }
            if let Some(kind) = self.result {
                *result = pack(kind, row[0]);
            }
        }
        self.tally
            .count_many(rows as u64, started.elapsed().as_secs_f64());
        self.pool.release(instance);
        (rows, None)
    }

    fn exception(&self, py: Python<'_>, failure: Failure, row: Option<usize>) -> PyErr {
        failure_exception(py, &self.fault, failure, row)
    }

    fn idle_count(&self) -> usize {
        self.pool.idle_count()
    }

    fn instantiated_count(&self) -> usize {
        self.pool.instantiated_count()
    }

    fn prewarm(&self, n: usize) -> Result<(), CallError> {
        self.pool.prewarm(n)
    }
}

/// `dict[key]` of a dict the engine passes (`what` names it), or an error
/// saying it is missing or, as `wrong` says, cannot be taken.
pub fn field<'py, T: FromPyObjectOwned<'py>>(
    dict: &Bound<'py, PyDict>,
    what: &str,
    key: &str,
    wrong: &str,
) -> PyResult<T> {
    dict.get_item(key)?
        .ok_or_else(|| PyValueError::new_err(format!("{what}: {key} is missing")))?
        .extract()
        .map_err(|_| PyValueError::new_err(format!("{what}: {key} {wrong}")))
}

pub fn limits_from(dict: &Bound<'_, PyDict>) -> PyResult<Limits> {
    fn get<'py, T: FromPyObjectOwned<'py>>(dict: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
        field(dict, "limits", key, "is out of range")
    }
    let timeout: f64 = get(dict, "timeout_seconds")?;
    Ok(Limits {
        memory_bytes: get(dict, "memory_bytes")?,
        fuel: get(dict, "fuel")?,
        timeout: Duration::try_from_secs_f64(timeout)
            .map_err(|_| PyValueError::new_err("limits: timeout_seconds is out of range"))?,
        pool_size: get(dict, "pool_size")?,
        max_table_elements: get(dict, "max_table_elements")?,
        max_tables: get(dict, "max_tables")?,
        max_instances: get(dict, "max_instances")?,
        max_memories: get(dict, "max_memories")?,
    })
}

/// One numeric export of an import-free module under a procedure version's
/// limits: its instance pool, its prepared export and its tally.
///
/// `params` and `result` are kinds (`"i64"`, `"i32"`, `"f64"`, `"f32"`,
/// `"bool"`); `limits` is `policy.Limits.to_json()`; `fault(code, message,
/// limit, frames, seconds, row)` returns the exception a failed call raises.
/// `module` if it imports nothing: only such a module's instances need no
/// host state (checked before its exports, so that is the error given).
pub fn import_free(module: &PyModule_) -> PyResult<&PyModule_> {
    if module.module.imports().len() > 0 {
        return Err(core_error(
            "abi-error",
            "a module with imports has no numeric fast path",
        ));
    }
    Ok(module)
}

/// A pool of `module`, which imports nothing ([`import_free`]), under `limits`.
pub fn pure_pool(module: &PyModule_, limits: Limits) -> PyResult<InstancePool<()>> {
    let linker: Linker<StoreData<()>> = Linker::new(module.runtime.engine());
    let pre = linker
        .instantiate_pre(&module.module)
        .map_err(|e| core_error("abi-error", format!("{e:#}")))?;
    InstancePool::new(&module.runtime, pre, limits, || Ok(()))
        .map_err(|e| core_error(e.code(), e.to_string()))
}

#[pyclass(module = "heliosdb_wasm._core", frozen)]
pub struct Numeric {
    pub inner: Arc<dyn Target>,
}

impl Numeric {
    fn canonical_target(&self) -> PyResult<&super::canonical::Canonical> {
        self.inner
            .canonical()
            .ok_or_else(|| PyTypeError::new_err("not a SingleStore function"))
    }
}

#[pymethods]
impl Numeric {
    #[new]
    #[pyo3(signature = (module, export, params, result, limits, tally, fault))]
    fn new(
        module: &PyModule_,
        export: &str,
        params: Vec<String>,
        result: Option<String>,
        limits: &Bound<'_, PyDict>,
        tally: &Tally,
        fault: Py<PyAny>,
    ) -> PyResult<Self> {
        let (params, result) = Kind::signature(&params, result.as_deref())?;
        let limits = limits_from(limits)?;
        let abi = |e: CallError| core_error(e.code(), e.to_string());
        let module = import_free(module)?;
        let wasm_params: Vec<NumType> = params.iter().map(|k| k.wasm()).collect();
        let wasm_results: Vec<NumType> = result.iter().map(|k| k.wasm()).collect();
        let export =
            Export::new(&module.module, export, &wasm_params, &wasm_results).map_err(abi)?;
        let pool = pure_pool(module, limits)?;
        Ok(Self {
            inner: Arc::new(Pure {
                pool,
                export,
                params,
                result,
                tally: tally.inner.clone(),
                fault,
            }),
        })
    }

    /// A procedure whose module imports host functions or WASI, or a
    /// component, run whole in the core (`hosted.rs`): `pool` is the
    /// version's `BasicPool` with `export` its export's name, or its
    /// `ComponentPool` with `export` `(interface or None, name)`; `hooks`
    /// its `invoke.HostedHooks`, the rest the version's limits and grants
    /// and the connection's gate; `writes`: each call runs in its own
    /// savepoint; `lifts`: the result is not a number (`result` is None) and
    /// `hooks.lift` (what a Basic-ABI guest gave `heliosdb_return`) or
    /// `hooks.convert` (a component's value) makes it; `table`, a table
    /// procedure's column kinds (`i64`, `i32`, `f64`, `text`, `blob`, None
    /// for others): rows whose every value is exactly of its column's type
    /// go to Python as they are, with no conversion there. A component's
    /// `params` may be empty: its calls then take its own types
    /// (`call_values`).
    #[staticmethod]
    #[allow(clippy::too_many_arguments)] // one procedure version's whole setup
    #[pyo3(signature = (pool, export, params, result, limits, tally, fault, hooks, gate, grants, is_procedure, writes, lifts, log, table=None))]
    fn hosted(
        pool: &Bound<'_, PyAny>,
        export: &Bound<'_, PyAny>,
        params: Vec<String>,
        result: Option<String>,
        limits: &Bound<'_, PyDict>,
        tally: &Tally,
        fault: Py<PyAny>,
        hooks: Py<PyAny>,
        gate: &super::gate::Gate,
        grants: &super::policy::Grants,
        is_procedure: Py<PyAny>,
        writes: bool,
        lifts: bool,
        log: (PyRef<'_, super::logs::LogSink>, String, i64),
        table: Option<Vec<Option<String>>>,
    ) -> PyResult<Self> {
        let args = super::hosted::HostedArgs {
            params: Param::parse_all(&params)?,
            result: result.as_deref().map(Kind::parse).transpose()?,
            limits,
            tally: tally.inner.clone(),
            fault,
            hooks,
            gate,
            grants,
            is_procedure,
            writes,
            lifts,
            table: table.map(|columns| {
                columns
                    .iter()
                    .map(|c| super::hosted::Column::parse(c.as_deref()))
                    .collect()
            }),
            log: (log.0.inner.clone(), log.1, log.2),
        };
        let inner: Arc<dyn Target> = if let Ok(pool) = pool.cast::<super::basic::BasicPool>() {
            let export: String = export.extract()?;
            Arc::new(super::hosted::basic(pool.get(), &export, args)?)
        } else {
            let pool = pool.cast::<super::component::ComponentPool>()?;
            let (interface, name): (Option<String>, String) = export.extract()?;
            Arc::new(super::hosted::component(
                pool.get(),
                interface.as_deref(),
                &name,
                args,
            )?)
        };
        Ok(Self { inner })
    }

    /// A function of a SingleStore Canonical-ABI module run whole in the
    /// core (`canonical.rs`), of any WIT types: `module` a `Module` that
    /// imports nothing or a `BasicPool` of one that imports WASI only,
    /// `function` its `WitFunction.core`, `params` the declared parameters
    /// as the core takes them from SQL (number kinds, `"text"`, `"blob"`,
    /// `"json"`), `result` the declared result's kind if it is a number;
    /// `convert`: the declared types are not the WIT's, and results go
    /// through `hooks.canonical_result`; `hooks` its `invoke.HostedHooks`.
    #[staticmethod]
    #[allow(clippy::too_many_arguments)] // one function's whole setup
    #[pyo3(signature = (module, function, params, result, limits, tally, fault, hooks, convert=false, log=None))]
    fn canonical(
        module: &Bound<'_, PyAny>,
        function: &Bound<'_, PyAny>,
        params: Vec<String>,
        result: Option<String>,
        limits: &Bound<'_, PyDict>,
        tally: &Tally,
        fault: Py<PyAny>,
        hooks: Py<PyAny>,
        convert: bool,
        log: Option<(Py<super::logs::LogSink>, String, i64)>,
    ) -> PyResult<Self> {
        use super::canonical::{Canonical, Function};
        let result = result.as_deref().map(Kind::parse).transpose()?;
        let get =
            |key: &str| -> PyResult<usize> { field(limits, "limits", key, "is out of range") };
        let canonical = Canonical::new(
            super::pinned::Pool::from_py(module, limits)?,
            Function::from_py(function)?,
            Param::parse_all(&params)?,
            result,
            convert,
            get("max_arg_bytes")?,
            get("max_result_bytes")?,
            tally.inner.clone(),
            fault,
            hooks,
            log.map(|(sink, procedure, version)| -> PyResult<_> {
                Ok(Arc::new(super::logs::LogTarget {
                    sink: sink.get().inner.clone(),
                    procedure: procedure.into(),
                    version,
                    max_log_bytes: get("max_log_bytes")?,
                }))
            })
            .transpose()?,
        )
        .map_err(|e| core_error(e.code(), e.to_string()))?;
        Ok(Self {
            inner: Arc::new(canonical),
        })
    }

    /// An instance of a SingleStore function's module held for several
    /// calls of its functions (an aggregate group's): `call_held` on it,
    /// then `release_held`.
    fn hold(&self, py: Python<'_>) -> PyResult<super::canonical::Held> {
        let canonical = self.canonical_target()?;
        match py.detach(|| canonical.hold()) {
            Ok(instance) => Ok(super::canonical::Held {
                instance: std::sync::Mutex::new(Some(instance)),
            }),
            Err(error) => Err(self.inner.exception(
                py,
                Failure::Call {
                    error,
                    elapsed: Duration::ZERO,
                },
                None,
            )),
        }
    }

    /// One call of this function on `held` with `args` (SQL values, as
    /// `call` takes them). A call that poisons the instance drops it.
    fn call_held(
        &self,
        py: Python<'_>,
        held: &super::canonical::Held,
        args: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let canonical = self.canonical_target()?;
        let values = buffer_args(&self.inner.specs(), args.cast::<PySequence>()?)?;
        let mut slot = held
            .instance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let instance = slot
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("the held instance is gone"))?;
        let mut out = [ValRaw::i64(0)];
        let outcome = py.detach(|| canonical.call_on(instance, values, &mut out, Instant::now()));
        if instance.is_poisoned() {
            *slot = None;
        }
        drop(slot);
        match outcome {
            Ok(answer) => Ok(answer.into_py(py, self.inner.result(), out[0])),
            Err(failure) => Err(self.inner.exception(py, failure, None)),
        }
    }

    /// `held`'s instance back to the pool (unless a call poisoned it).
    fn release_held(&self, held: &super::canonical::Held) -> PyResult<()> {
        let canonical = self.canonical_target()?;
        let taken = held
            .instance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(instance) = taken {
            canonical.release(instance);
        }
        Ok(())
    }

    /// `rows` rows through the Basic-ABI batch entry point `name`
    /// (docs/abi.md §9) of a hosted export: the argument columns `data` laid
    /// out in guest memory, `out_size` bytes of results back. The guest runs
    /// without the GIL.
    fn call_guest_batch<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        rows: u32,
        data: Vec<u8>,
        out_size: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let inner = &*self.inner;
        let host = inner
            .basic_host()
            .ok_or_else(|| PyTypeError::new_err("not a hosted Basic-ABI export"))?;
        match py.detach(|| host.call_batch(name, rows, &data, out_size)) {
            Ok(out) => Ok(PyBytes::new(py, &out)),
            Err(failure) => Err(inner.exception(py, failure, None)),
        }
    }

    /// One call of a component's hosted export with `args` as plain Python
    /// values of its own types (records as dicts, variants as `(case,
    /// payload)`): `TypeError`/`ValueError` before the guest runs for one
    /// that does not fit. The guest runs without the GIL.
    fn call_values(&self, py: Python<'_>, args: &Bound<'_, PySequence>) -> PyResult<Py<PyAny>> {
        self.inner
            .component_host()
            .ok_or_else(|| PyTypeError::new_err("not a component's hosted export"))?
            .call_values(py, args)
    }

    /// Makes instances until `n` are idle in the pool (at most its
    /// `pool_size`): the calls that come make none. Without the GIL.
    fn prewarm(&self, py: Python<'_>, n: usize) -> PyResult<()> {
        let inner = &*self.inner;
        py.detach(|| inner.prewarm(n))
            .map_err(|e| core_error(e.code(), e.to_string()))
    }

    /// `call`, and where its time went: `(instantiate, wasm, host)` seconds
    /// (`wasm` includes `host`, the time in host functions), fuel used and
    /// the guest's memory (None where the core does not know). A call of an
    /// import-free module records no profile: all of its time is the
    /// guest's, and the caller measures that.
    fn profiled(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyAny>,
    ) -> PyResult<(Py<PyAny>, Option<ProfileTuple>)> {
        Profile::take();
        let outer = PROFILING.with(|p| p.replace(true));
        let result = self.call(py, args);
        PROFILING.with(|p| p.set(outer));
        let result = result?;
        let profile = Profile::take().map(|p| {
            (
                p.instantiate.as_secs_f64(),
                p.wasm.as_secs_f64(),
                p.host.as_secs_f64(),
                p.fuel_used,
                p.memory_bytes,
            )
        });
        Ok((result, profile))
    }

    /// One call: `args` are exact numbers for the parameters (the caller
    /// has coerced them); TypeError/OverflowError if one is not, before the
    /// guest runs. The guest runs without the GIL.
    fn call(&self, py: Python<'_>, args: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let inner = &*self.inner;
        let args = args.cast::<PySequence>()?;
        let n = args.len()?;
        let specs = inner.specs();
        // A NULL for a guest that must see it as one (CALLED ON NULL
        // INPUT, host functions): the call goes by arguments too.
        let by_args = specs.len() != inner.params().len()
            || (!inner.zeros_for_nulls()
                && (0..n).any(|i| args.get_item(i).is_ok_and(|a| a.is_none())));
        if by_args {
            // Some parameters are buffers, or NULL: the call goes by arguments.
            let values = buffer_args(&specs, args)?;
            let mut out = [ValRaw::i64(0)];
            return match py.detach(|| inner.call_args(values, &mut out)) {
                Ok(answer) => Ok(answer.into_py(py, inner.result(), out[0])),
                Err(failure) => Err(inner.exception(py, failure, None)),
            };
        }
        if n != inner.params().len() {
            return Err(PyValueError::new_err(format!(
                "expected {} argument(s), got {n}",
                inner.params().len()
            )));
        }
        // On the stack for the usual signature: this is a per-call path.
        let mut inline = [ValRaw::i64(0); 16];
        let mut spilled = Vec::new();
        let slots: &mut [ValRaw] = if inner.slots() <= inline.len() {
            &mut inline[..inner.slots()]
        } else {
            spilled.resize(inner.slots(), ValRaw::i64(0));
            &mut spilled
        };
        for (i, (slot, kind)) in slots.iter_mut().zip(inner.params().iter()).enumerate() {
            *slot = to_slot(&args.get_item(i)?, *kind)?;
        }
        match py.detach(|| inner.call_slots(slots)) {
            Ok(answer) => Ok(answer.into_py(py, inner.result(), slots[0])),
            Err(failure) => Err(inner.exception(py, failure, None)),
        }
    }

    /// Every row of `columns` (`columns[i][row]` the i-th argument), on one
    /// instance at a time and without the GIL. Every value is converted
    /// before any row runs (TypeError/OverflowError: nothing ran). A failed
    /// row raises what `fault` returns for it, with `row` the rows done.
    fn batch<'py>(
        &self,
        py: Python<'py>,
        columns: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let inner = &*self.inner;
        if inner.specs().len() != inner.params().len() {
            // The caller goes row by row (Runner.call_batch).
            return Err(PyTypeError::new_err(
                "a batch of buffer parameters goes row by row",
            ));
        }
        let columns = columns.cast::<PySequence>()?;
        if columns.len()? != inner.params().len() {
            return Err(PyValueError::new_err(format!(
                "expected {} column(s), got {}",
                inner.params().len(),
                columns.len()?
            )));
        }
        // Column by column into one buffer per column (sequential writes);
        // every value is converted before any row runs.
        let mut rows: Option<usize> = None;
        let mut converted: Vec<Vec<u64>> = Vec::with_capacity(inner.params().len());
        for (c, kind) in inner.params().iter().enumerate() {
            let column = columns.get_item(c)?;
            let column = column.cast::<PySequence>()?;
            let n = column.len()?;
            let expected = *rows.get_or_insert(n);
            if n != expected {
                return Err(PyValueError::new_err(format!(
                    "column {c} has {n} value(s), expected {expected}"
                )));
            }
            let mut values = Vec::with_capacity(n);
            if let Ok(list) = column.cast::<PyList>() {
                for value in list.iter() {
                    values.push(pack(*kind, to_slot(&value, *kind)?));
                }
            } else if let Ok(tuple) = column.cast::<PyTuple>() {
                for value in tuple.iter() {
                    values.push(pack(*kind, to_slot(&value, *kind)?));
                }
            } else {
                for r in 0..n {
                    values.push(pack(*kind, to_slot(&column.get_item(r)?, *kind)?));
                }
            }
            converted.push(values);
        }
        let Some(rows) = rows else {
            return Err(PyValueError::new_err("a batch needs at least one column"));
        };
        let mut results = vec![0u64; rows];
        let mut others = Vec::new();
        let (done, failure) = py.detach(|| inner.run_rows(&converted, &mut results, &mut others));
        if let Some(failure) = failure {
            return Err(inner.exception(py, failure, Some(done)));
        }
        let kind = inner.result();
        let slot = |bits: u64| kind.map_or(ValRaw::i64(0), |k| unpack(k, bits));
        let list = PyList::new(
            py,
            results.iter().map(|bits| from_slot(py, kind, slot(*bits))),
        )?;
        for (row, answer) in others {
            list.set_item(row, answer.into_py(py, kind, ValRaw::i64(0)))?;
        }
        Ok(list)
    }

    /// Instances waiting for reuse in the pool.
    #[getter]
    fn idle_instances(&self) -> usize {
        self.inner.idle_count()
    }

    /// Instances created since the pool was built.
    #[getter]
    fn instantiated(&self) -> usize {
        self.inner.instantiated_count()
    }
}
