//! `Numeric.hosted`: a procedure whose
//! module imports host functions or WASI, or a component, run whole in the
//! core — from SQLite (a `Scalar`), `Database.call` or a batch — with no
//! Python per row.
//!
//! It does what `invoke.Runner` and `hostapi.CallContext` do around a call:
//! the connection's call depth, the caller's statement policy set aside, a
//! writer's savepoint (and the guest's own transactions as savepoints), an
//! instance from the pool, the deadline. Its statements run in the core
//! (`PyHost::statement`); a host function that needs Python (a log line, a
//! fetch, a digest) gets a `CallContext` made for the call on first use.
//! Failures become the typed errors in Python, through `hooks`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use wasmtime::component::{Type, Val as ComponentVal};
use wasmtime::{Val, ValRaw};

use super::basic::{BasicPool, Pool, PyHost, StatementScope};
use super::component::{arg_val, export_type, lift, ComponentPool as PyComponentPool};
use super::gate::Gate;
use super::logs::LogTarget;
use super::numeric::{
    fault_exception, hook_error, limits_from, slot_args, to_slot, within_arg_bytes, Answer,
    Failure, Kind, Param, Profile, TallyInner, Target,
};
use super::policy::Grants;
use super::runtime::core_error;
use super::with_gil;
use crate::basic::{self, Arg, BasicState, CallFailure, Fault, Lower};
use crate::component::ComponentPool;
use crate::error::{CallError, Limit};
use crate::gate::{deadline_after, ExecError, Gate as CoreGate};
use crate::logs::Sink;
use crate::policy::Grants as CoreGrants;
use crate::pool::{Instances, PooledInstance};
use crate::statement::RowLimits;

/// What a hosted call runs: a Basic-ABI module's export ([`BasicGuest`]) or
/// a component's ([`ComponentGuest`]). Everything around the call — depth,
/// policy, savepoints, the guest's transactions, typed failures — is
/// [`Hosted`]'s, the same for both.
pub trait Guest: Send + Sync + Sized + 'static {
    /// A call's arguments as this guest takes them.
    type Args: Send;
    /// What a call that did not fail left.
    type Done;
    /// The arguments of a call, or why this guest cannot take them (the
    /// call's `InvalidArgument`, before it runs).
    fn prepare(&self, args: Vec<Arg>) -> Result<Self::Args, String>;
    /// One call on an instance of the pool, `host` serving its host
    /// functions.
    ///
    /// # Errors
    ///
    /// An instance could not be made (its start or `_initialize` failed).
    fn call(&self, host: PyHost, args: Self::Args) -> Result<GuestCall<Self::Done>, CallError>;
    /// A successful call's answer: the number in `slots[0]`, NULL, or a
    /// value Python made.
    fn answer(
        &self,
        hosted: &Hosted<Self>,
        done: Self::Done,
        slots: &mut [ValRaw],
        started: Instant,
    ) -> Result<Answer, Failure>;
    fn idle_count(&self) -> usize;
    fn instantiated_count(&self) -> usize;
    /// [`Target::prewarm`] of the guest's pool.
    ///
    /// # Errors
    ///
    /// An instance could not be made.
    fn prewarm(&self, n: usize) -> Result<(), CallError>;
    /// `hosted` as a Basic-ABI export's, if it is one.
    fn basic(_hosted: &Hosted<Self>) -> Option<&Hosted<BasicGuest>> {
        None
    }
    /// `hosted` as a component's export, if it is one.
    fn component(_hosted: &Hosted<Self>) -> Option<&Hosted<ComponentGuest>> {
        None
    }
}

/// What one guest call left.
pub struct GuestCall<D> {
    result: Result<D, CallFailure<PyErr>>,
    // heliosdb_error's (code, message): raising and then trapping is how a
    // language without exceptions throws.
    raised: Option<(String, String)>,
    out_of_memory: bool,
    fuel_used: u64,
    memory_bytes: Option<usize>,
    // Taking an instance from the pool (making one when none was idle),
    // time in the guest, and the part of it in host functions: a profile's.
    instantiate: Duration,
    wasm: Duration,
    in_host: Duration,
    host: Option<PyHost>,
}

/// A Basic-ABI export.
pub struct BasicGuest {
    pool: Arc<Pool>,
    export: String,
    lowering: Vec<Lower>,
}

/// A component's export.
pub struct ComponentGuest {
    pool: Arc<ComponentPool<PyHost>>,
    interface: Option<String>,
    name: String,
    params: Vec<(String, Type)>,
    result: Option<Type>,
}

pub struct Hosted<G: Guest> {
    guest: G,
    status: Arc<Py<PyAny>>,
    specs: Box<[Param]>,
    // The number kinds of the parameters; empty when some are buffers.
    params: Box<[Kind]>,
    max_arg_bytes: usize,
    result: Option<Kind>,
    gate: Arc<CoreGate>,
    grants: Arc<CoreGrants>,
    is_procedure: Arc<Py<PyAny>>,
    timeout: Duration,
    max_value_bytes: usize,
    rows: RowLimits,
    max_depth: usize,
    // May write (`write:`, `ddl:`, `transaction`): each call in a savepoint.
    writes: bool,
    // The result is not a number (text, blob, JSON): `hooks.lift` makes it.
    lifts: bool,
    // A table procedure's columns the core hands to Python as they are
    // (`exact_rows`); None: not a table, or its rows are Python's to make.
    table: Option<Box<[Option<Column>]>>,
    tally: Arc<TallyInner>,
    // fault(code, message, limit, frames, seconds, row), as a pure Numeric's
    fault: Py<PyAny>,
    // context(seconds_left), lift(tag, payload), raised(code, message,
    // seconds), host_fault(exc, seconds), host_error(busy, message),
    // invalid(message, seconds), too_deep(), log_limit(): see invoke.HostedHooks
    hooks: Arc<Py<PyAny>>,
    log: Arc<LogTarget>,
    // The host state of the last call that needed no Python, for the next.
    hosts: HostSlot,
}

/// One `PyHost` kept between calls: made and dropped per call it cost a
/// dozen reference counts, an authorizer and their allocations. Taken by
/// one call at a time (a nested call of the same procedure, or a call on
/// another thread meanwhile, makes its own).
#[derive(Default)]
pub struct HostSlot(Mutex<Option<PyHost>>);

impl HostSlot {
    fn take(&self, deadline: Instant, read_only: bool) -> Option<PyHost> {
        self.0.try_lock().ok()?.take()?.rearm(deadline, read_only)
    }

    fn put(&self, host: PyHost) {
        if let Ok(mut slot) = self.0.try_lock() {
            if slot.is_none() {
                *slot = Some(host);
                return;
            }
        }
        drop(host);
    }
}

fn lower(param: Param) -> Lower {
    match param {
        Param::Num(Kind::I64) => Lower::I64,
        Param::Num(Kind::I32 | Kind::Bool) => Lower::I32,
        Param::Num(Kind::F64) => Lower::F64,
        Param::Num(Kind::F32) => Lower::F32,
        Param::Text | Param::Blob | Param::Json => Lower::Buffer,
    }
}

impl<G: Guest> Hosted<G> {
    /// A hook's answer: the typed error it returns (or the error calling it raised).
    fn hook_error<A>(&self, name: &str, args: A) -> Failure
    where
        A: for<'py> pyo3::call::PyCallArgs<'py>,
    {
        hook_error(&self.hooks, name, args)
    }

    /// One call inside the depth and policy bracket (and the call's
    /// savepoint, for a writer: `read_only` when it could not be opened);
    /// the savepoints of the transactions the guest left open go into
    /// `open_tx`.
    fn run<D>(
        &self,
        call: impl FnOnce(PyHost) -> Result<GuestCall<D>, CallError>,
        answer: impl FnOnce(D) -> Result<Answer, Failure>,
        started: Instant,
        read_only: bool,
        open_tx: &mut Vec<String>,
    ) -> Result<Answer, Failure> {
        let elapsed = || started.elapsed();
        let deadline = deadline_after(started, self.timeout);
        let host = self.hosts.take(deadline, read_only).unwrap_or_else(|| {
            let scope = StatementScope {
                gate: self.gate.clone(),
                grants: self.grants.clone(),
                read_only,
                is_procedure: self.is_procedure.clone(),
                deadline,
                max_value_bytes: self.max_value_bytes,
                rows: self.rows,
                policy: None,
            };
            PyHost::hosted(
                self.status.clone(),
                self.hooks.clone(),
                scope,
                self.log.clone(),
            )
        });
        let mut call = call(host).map_err(|error| Failure::Call {
            error,
            elapsed: elapsed(),
        })?;
        if let Some(host) = call.host.as_mut() {
            *open_tx = std::mem::take(&mut host.tx);
        }
        // Whether the guest said it ran out of memory just before it
        // trapped: on stderr, or in a log line (hostapi.CallContext.log)
        // of the context a host function made.
        let logged_it = match call.host.take() {
            Some(host) if host.needs_gil() => with_gil(|py| {
                let said = host.said_out_of_memory(py);
                drop(host); // under the GIL
                said
            }),
            Some(host) => {
                self.hosts.put(host);
                false
            }
            None => false,
        };
        let out_of_memory = call.out_of_memory || logged_it;
        let seconds = || elapsed().as_secs_f64();
        if Profile::wanted() {
            Profile {
                instantiate: call.instantiate,
                wasm: call.wasm,
                host: call.in_host,
                fuel_used: Some(call.fuel_used),
                memory_bytes: call.memory_bytes,
            }
            .record();
        }
        if call.result.is_ok() {
            self.tally
                .count_resources(call.fuel_used, call.memory_bytes);
        }
        let done = match call.result {
            Ok(done) => done,
            Err(CallFailure::Call(CallError::Trap { .. })) if call.raised.is_some() => {
                // Raising and then trapping is how a language without
                // exceptions throws: the raised error is the outcome.
                let (code, message) = call.raised.unwrap_or_default();
                return Err(self.hook_error("raised", (code, message, seconds())));
            }
            Err(CallFailure::Call(error)) => {
                return Err(Failure::Call {
                    error: basic::out_of_memory_trap(error, out_of_memory),
                    elapsed: elapsed(),
                })
            }
            Err(CallFailure::Fault(Fault::Abi(message))) => {
                return Err(Failure::Call {
                    error: CallError::Abi { message },
                    elapsed: elapsed(),
                })
            }
            Err(CallFailure::Fault(Fault::Memory(message))) => {
                return Err(Failure::Call {
                    error: CallError::LimitExceeded {
                        limit: Limit::Memory,
                        message,
                    },
                    elapsed: elapsed(),
                })
            }
            Err(CallFailure::Fault(Fault::Host(err))) => {
                return Err(with_gil(|py| {
                    self.hook_error("host_fault", (err.into_value(py), seconds()))
                }))
            }
        };
        if let Some((code, message)) = call.raised {
            return Err(self.hook_error("raised", (code, message, seconds())));
        }
        answer(done)
    }

    /// A value Python made of the result (`hooks.convert` for a
    /// component's, `hooks.lift` for what a Basic-ABI guest gave
    /// `heliosdb_return`) as the call's answer: into `slots[0]` when the
    /// result is a number.
    fn python_answer(
        &self,
        slots: &mut [ValRaw],
        started: Instant,
        make: impl for<'py> FnOnce(Python<'py>, &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>>,
    ) -> Result<Answer, Failure> {
        let kind = self.result;
        let lifted = with_gil(|py| -> PyResult<Answer> {
            let value = make(py, self.hooks.bind(py))?;
            if value.is_none() {
                return Ok(Answer::Null);
            }
            match kind {
                Some(kind) => to_slot(&value, kind).map(|slot| {
                    slots[0] = slot;
                    Answer::Slot
                }),
                None => Ok(Answer::Value(value.unbind())),
            }
        });
        lifted.map_err(|err| {
            let seconds = started.elapsed().as_secs_f64();
            with_gil(|py| self.hook_error("host_fault", (err.into_value(py), seconds)))
        })
    }
}

impl Guest for BasicGuest {
    type Args = Vec<Arg>;
    // The wasm results and what the guest gave heliosdb_return.
    type Done = (Vec<Val>, Returned);

    fn prepare(&self, args: Vec<Arg>) -> Result<Vec<Arg>, String> {
        Ok(args)
    }

    fn call(&self, host: PyHost, args: Vec<Arg>) -> Result<GuestCall<Self::Done>, CallError> {
        let acquiring = Profile::wanted().then(Instant::now);
        let mut instance = self.pool.acquire()?;
        let instantiate = acquiring.map(|t| t.elapsed()).unwrap_or_default();
        let called = basic::call(
            &mut instance,
            Some(host),
            &self.export,
            &self.lowering,
            args,
        );
        if !instance.is_poisoned() {
            self.pool.release(instance);
        }
        Ok(GuestCall {
            instantiate,
            ..basic_call(called)
        })
    }

    fn basic(hosted: &Hosted<Self>) -> Option<&Hosted<BasicGuest>> {
        Some(hosted)
    }

    fn answer(
        &self,
        hosted: &Hosted<Self>,
        (values, returned): Self::Done,
        slots: &mut [ValRaw],
        started: Instant,
    ) -> Result<Answer, Failure> {
        // heliosdb_return's value (or, for a result that is not a number,
        // its absence): decoded, converted and checked in Python's words,
        // by `hooks.lift`.
        if let (Some((TAG_ROWS, payload)), Some(table)) = (&returned, &hosted.table) {
            if let Some(rows) = with_gil(|py| exact_rows(py, table, payload, hosted.rows.max_bytes))
            {
                return Ok(Answer::Value(rows));
            }
        }
        let returned = match returned {
            Some((tag, payload)) => Some((Some(tag), payload)),
            None if hosted.lifts => Some((None, Vec::new())),
            None => None,
        };
        if let Some((tag, payload)) = returned {
            return hosted.python_answer(slots, started, |py, hooks| {
                hooks.call_method1(intern!(py, "lift"), (tag, PyBytes::new(py, &payload)))
            });
        }
        if let Some(first) = values.first() {
            slots[0] = basic::raw_of(first);
        }
        Ok(Answer::Slot)
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

/// `heliosdb_return`'s tag for rows (docs/abi.md §6).
const TAG_ROWS: u8 = 6;

/// A table column whose values the core hands to Python as they are, when
/// each is of the column's own SQL type: what `values.convert_result`
/// would return unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    BigInt,
    Integer,
    Double,
    Text,
    Blob,
}

impl Column {
    /// A column kind as Python names it (`i64`, `i32`, `f64`, `text`,
    /// `blob`); None for any other, whose values Python converts.
    pub fn parse(name: Option<&str>) -> Option<Self> {
        Some(match name? {
            "i64" => Self::BigInt,
            "i32" => Self::Integer,
            "f64" => Self::Double,
            "text" => Self::Text,
            "blob" => Self::Blob,
            _ => return None,
        })
    }
}

/// The rows a guest gave `heliosdb_return` as Python's list of tuples, the
/// table procedure's result, when every cell is NULL or exactly of its
/// column's type and they fit `max_bytes` (text and blobs their length,
/// numbers 8, as `invoke.held` counts); None: Python converts them, or
/// refuses them in its own words (`hooks.lift`).
fn exact_rows(
    py: Python<'_>,
    table: &[Option<Column>],
    payload: &[u8],
    max_bytes: usize,
) -> Option<Py<PyAny>> {
    use crate::encoding::{decode_rows, Param as Cell};
    let (columns, rows) = decode_rows(payload).ok()?;
    if columns.len() != table.len() {
        return None;
    }
    let mut exact = Vec::with_capacity(rows.len());
    for row in &rows {
        let cells = row.iter().zip(table).map(|(cell, column)| {
            Some(match (cell, column) {
                (Cell::Null, _) => Exact::Null,
                (Cell::Integer(x), Some(Column::BigInt)) => Exact::Int(*x),
                (Cell::Real(x), Some(Column::Double)) => Exact::Real(*x),
                (Cell::Integer(x), Some(Column::Integer)) if i32::try_from(*x).is_ok() => {
                    Exact::Int(*x)
                }
                (Cell::Text(t), Some(Column::Text)) => Exact::Text(t),
                (Cell::Blob(b), Some(Column::Blob)) => Exact::Blob(b),
                _ => return None,
            })
        });
        exact.push(cells.collect::<Option<Vec<_>>>()?);
    }
    rows_to_py(py, &exact, max_bytes)
}

/// A component table procedure's `list<record>` as Python's list of
/// tuples, when every field is none or exactly of its column's type and
/// they fit `max_bytes`, as [`exact_rows`] does for the Basic ABI; None:
/// `hooks.convert` makes them.
fn exact_records(
    py: Python<'_>,
    table: &[Option<Column>],
    value: &ComponentVal,
    max_bytes: usize,
) -> Option<Py<PyAny>> {
    fn cell(value: &ComponentVal, column: Option<Column>) -> Option<Exact<'_>> {
        Some(match (value, column?) {
            (ComponentVal::Option(None), _) => Exact::Null,
            (ComponentVal::Option(Some(inner)), column) => cell(inner, Some(column))?,
            (ComponentVal::S64(x), Column::BigInt) => Exact::Int(*x),
            (ComponentVal::S32(x), Column::Integer) => Exact::Int((*x).into()),
            (ComponentVal::Float64(x), Column::Double) => Exact::Real(*x),
            (ComponentVal::String(t), Column::Text) => Exact::Text(t),
            _ => return None,
        })
    }
    let ComponentVal::List(records) = value else {
        return None;
    };
    let mut rows = Vec::with_capacity(records.len());
    for record in records {
        let ComponentVal::Record(fields) = record else {
            return None;
        };
        if fields.len() != table.len() {
            return None;
        }
        let cells = fields
            .iter()
            .zip(table)
            .map(|((_, field), column)| cell(field, *column));
        rows.push(cells.collect::<Option<Vec<_>>>()?);
    }
    rows_to_py(py, &rows, max_bytes)
}

/// A cell of a row handed to Python as it is.
enum Exact<'v> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'v str),
    Blob(&'v [u8]),
}

impl Exact<'_> {
    /// What the cell counts against `max_result_bytes`, as `invoke.held`
    /// counts it: text and blobs their length, a number 8, NULL nothing.
    fn bytes(&self) -> usize {
        match self {
            Self::Null => 0,
            Self::Int(_) | Self::Real(_) => 8,
            Self::Text(t) => t.len(),
            Self::Blob(b) => b.len(),
        }
    }

    fn to_py<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        match self {
            Self::Null => py.None().into_bound(py),
            Self::Int(x) => x
                .into_pyobject(py)
                .map_or_else(|e| match e {}, |o| o.into_any()),
            Self::Real(x) => pyo3::types::PyFloat::new(py, *x).into_any(),
            Self::Text(t) => pyo3::types::PyString::new(py, t).into_any(),
            Self::Blob(b) => PyBytes::new(py, b).into_any(),
        }
    }
}

/// Rows as Python's list of tuples, if they fit `max_bytes` (None: over
/// it, for Python to refuse in its words, or Python could not make them).
fn rows_to_py(py: Python<'_>, rows: &[Vec<Exact<'_>>], max_bytes: usize) -> Option<Py<PyAny>> {
    let size: usize = rows.iter().flatten().map(Exact::bytes).sum();
    if size > max_bytes {
        return None;
    }
    let tuples = rows
        .iter()
        .map(|row| pyo3::types::PyTuple::new(py, row.iter().map(|cell| cell.to_py(py))));
    let tuples = tuples.collect::<PyResult<Vec<_>>>().ok()?;
    pyo3::types::PyList::new(py, tuples)
        .ok()
        .map(|list| list.into_any().unbind())
}

/// What a Basic-ABI guest gave `heliosdb_return`: the tag and the payload.
type Returned = Option<(u8, Vec<u8>)>;

/// What [`basic::call`] (or [`basic::call_batch`]) left, as a hosted call's.
fn basic_call<T>((result, outcome, host): basic::Called<T, PyHost>) -> GuestCall<(T, Returned)> {
    let returned = outcome.returned;
    GuestCall {
        result: result.map(|values| (values, returned)),
        raised: outcome.raised,
        out_of_memory: outcome.out_of_memory,
        fuel_used: outcome.fuel_used,
        memory_bytes: outcome.memory_bytes,
        instantiate: Duration::ZERO,
        wasm: outcome.wasm,
        in_host: outcome.host,
        host,
    }
}

impl Hosted<BasicGuest> {
    /// One call of `export` (its parameters lowered as `lowering` says) on
    /// `instance`, which the caller holds for several calls — an aggregate
    /// group's, where its state lives — with a call's whole bracket, as
    /// [`Target::call_args`] has it; the export's number result into
    /// `out[0]`. A failure poisons the instance when it may be corrupt.
    /// Called without the GIL.
    ///
    /// # Errors
    ///
    /// Why the call failed, typed as any hosted call's failure is.
    pub fn call_on(
        &self,
        instance: &mut PooledInstance<BasicState<PyHost>>,
        export: &str,
        lowering: &[Lower],
        args: Vec<Arg>,
        out: &mut [ValRaw],
    ) -> Result<(), Failure> {
        let started = Instant::now();
        let answer = |(values, returned): <BasicGuest as Guest>::Done| {
            if returned.is_some() {
                // A role returns its state or result as the export's own
                // number: nothing here takes heliosdb_return's value.
                return Err(Failure::Call {
                    error: CallError::abi(format!(
                        "{export} gave heliosdb_return a value; an aggregate's \
                         functions return numbers"
                    )),
                    elapsed: started.elapsed(),
                });
            }
            if let (Some(first), Some(slot)) = (values.first(), out.first_mut()) {
                *slot = basic::raw_of(first);
            }
            Ok(Answer::Slot)
        };
        self.enter(
            |host| {
                Ok(basic_call(basic::call(
                    instance,
                    Some(host),
                    export,
                    lowering,
                    args,
                )))
            },
            answer,
            started,
            None,
        )
        .map(|_| ())
    }

    /// `name(count, args_ptr, out_ptr)`, a batch entry point (docs/abi.md
    /// §9), on an instance from the pool with a call's whole bracket: the
    /// argument columns `data` in, `out_size` bytes of results back. The
    /// `count` rows count as calls. Called without the GIL.
    ///
    /// # Errors
    ///
    /// Why the call failed; a row that raised `heliosdb_error` fails the
    /// batch with that error (the instance is not reused: the rows after it
    /// never ran).
    pub fn call_batch(
        &self,
        name: &str,
        count: u32,
        data: &[u8],
        out_size: usize,
    ) -> Result<Vec<u8>, Failure> {
        let started = Instant::now();
        let pool = &self.guest.pool;
        let mut out = Vec::new();
        self.enter(
            |host| {
                let acquiring = Profile::wanted().then(Instant::now);
                let mut instance = pool.acquire()?;
                let instantiate = acquiring.map(|t| t.elapsed()).unwrap_or_default();
                let called =
                    basic::call_batch(&mut instance, Some(host), name, count, data, out_size);
                if called.1.raised.is_some() {
                    instance.poison();
                }
                if !instance.is_poisoned() {
                    pool.release(instance);
                }
                Ok(GuestCall {
                    instantiate,
                    ..basic_call(called)
                })
            },
            |(bytes, _)| {
                out = bytes;
                Ok(Answer::Slot)
            },
            started,
            Some(count),
        )?;
        Ok(out)
    }
}

impl Guest for ComponentGuest {
    type Args = Vec<ComponentVal>;
    type Done = Option<ComponentVal>;

    fn prepare(&self, args: Vec<Arg>) -> Result<Vec<ComponentVal>, String> {
        args.iter()
            .zip(&self.params)
            .map(|(arg, (pname, ty))| arg_val(arg, ty, &|| format!("{}({pname})", self.name)))
            .collect()
    }

    fn call(
        &self,
        host: PyHost,
        args: Vec<ComponentVal>,
    ) -> Result<GuestCall<Self::Done>, CallError> {
        let acquiring = Profile::wanted().then(Instant::now);
        let mut instance = self.pool.acquire()?;
        let instantiate = acquiring.map(|t| t.elapsed()).unwrap_or_default();
        let (result, outcome, host) =
            instance.call(host, self.interface.as_deref(), &self.name, &args);
        self.pool.release(instance);
        Ok(GuestCall {
            result: result.map(|values| values.into_iter().next()),
            raised: None,
            out_of_memory: outcome.out_of_memory,
            fuel_used: outcome.fuel_used,
            memory_bytes: None,
            instantiate,
            wasm: outcome.wasm,
            in_host: outcome.host,
            host,
        })
    }

    fn answer(
        &self,
        hosted: &Hosted<Self>,
        done: Self::Done,
        slots: &mut [ValRaw],
        started: Instant,
    ) -> Result<Answer, Failure> {
        let Some(mut value) = done else {
            return Ok(Answer::Null);
        };
        // The usual result, a number of the SQL type's kind: no type copied.
        if let (Some(kind), Some(n), false) = (hosted.result, number(&value), hosted.lifts) {
            if let Some(slot) = n.slot(kind) {
                slots[0] = slot;
                return Ok(Answer::Slot);
            }
        }
        let Some(mut ty) = self.result.clone() else {
            return Ok(Answer::Null);
        };
        // result<T, E>: its err is the call's error, as the guest typed it.
        if let (ComponentVal::Result(result), Type::Result(rt)) = (&value, &ty) {
            match result {
                Ok(ok) => {
                    let (Some(ok), Some(ok_ty)) = (ok.clone(), rt.ok()) else {
                        return Ok(Answer::Null);
                    };
                    (value, ty) = (*ok, ok_ty);
                }
                Err(err) => {
                    let payload = with_gil(|py| match (err, rt.err()) {
                        (Some(e), Some(t)) => lift(py, e, &t),
                        _ => Ok(py.None()),
                    });
                    return Err(match payload {
                        Ok(payload) => hosted.hook_error(
                            "component_error",
                            (payload, started.elapsed().as_secs_f64()),
                        ),
                        Err(err) => Failure::Raised(err),
                    });
                }
            }
        }
        if let (ComponentVal::Option(inner), Type::Option(ot)) = (&value, &ty) {
            let Some(inner) = inner.clone() else {
                return Ok(Answer::Null);
            };
            (value, ty) = (*inner, ot.ty());
        }
        if let Some(table) = &hosted.table {
            let max = hosted.rows.max_bytes;
            if let Some(rows) = with_gil(|py| exact_records(py, table, &value, max)) {
                return Ok(Answer::Value(rows));
            }
        }
        match (hosted.result, number(&value)) {
            (Some(kind), Some(n)) if !hosted.lifts => match n.slot(kind) {
                Some(slot) => {
                    slots[0] = slot;
                    Ok(Answer::Slot)
                }
                None => {
                    let message = format!("{} result: {n:?} does not fit its SQL type", self.name);
                    let seconds = started.elapsed().as_secs_f64();
                    Err(hosted.hook_error("invalid", (message, seconds)))
                }
            },
            _ => hosted.python_answer(slots, started, |py, hooks| {
                let value = lift(py, &value, &ty)?;
                hooks.call_method1(intern!(py, "convert"), (value,))
            }),
        }
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

    fn component(hosted: &Hosted<Self>) -> Option<&Hosted<ComponentGuest>> {
        Some(hosted)
    }
}

impl Hosted<ComponentGuest> {
    /// One call with `args` as plain Python values (a record a dict by
    /// field name, a variant `(case, payload)`, a list a list), lowered to
    /// the export's parameter types — `TypeError`/`ValueError` naming the
    /// parameter before the guest runs if one does not fit — for callers
    /// with types of their own (the query-hook plugins). The answer is any
    /// hosted component call's: `hooks.convert` makes a value that is not a
    /// number, an `err` is `hooks.component_error`'s. The guest runs
    /// without the GIL.
    ///
    /// # Errors
    ///
    /// An argument that does not fit, or why the call failed (typed).
    pub fn call_values(
        &self,
        py: Python<'_>,
        args: &Bound<'_, pyo3::types::PySequence>,
    ) -> PyResult<Py<PyAny>> {
        let guest = &self.guest;
        let n = args.len()?;
        if n != guest.params.len() {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "{} takes {} argument(s), got {n}",
                guest.name,
                guest.params.len()
            )));
        }
        let values = guest
            .params
            .iter()
            .enumerate()
            .map(|(i, (pname, ty))| {
                super::component::lower(&args.get_item(i)?, ty, &format!("{}({pname})", guest.name))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let mut out = [ValRaw::i64(0)];
        let outcome = py.detach(|| {
            let started = Instant::now();
            self.enter(
                |host| guest.call(host, values),
                |done| guest.answer(self, done, &mut out, started),
                started,
                None,
            )
        });
        match outcome {
            Ok(answer) => Ok(answer.into_py(py, self.result, out[0])),
            Err(failure) => Err(self.exception(py, failure, None)),
        }
    }
}

/// A component's scalar result as a number.
#[derive(Debug, Clone, Copy)]
enum Number {
    Int(i128),
    Float(f64),
}

fn number(val: &ComponentVal) -> Option<Number> {
    Some(match *val {
        ComponentVal::Bool(b) => Number::Int(i128::from(b)),
        ComponentVal::S8(x) => Number::Int(x.into()),
        ComponentVal::U8(x) => Number::Int(x.into()),
        ComponentVal::S16(x) => Number::Int(x.into()),
        ComponentVal::U16(x) => Number::Int(x.into()),
        ComponentVal::S32(x) => Number::Int(x.into()),
        ComponentVal::U32(x) => Number::Int(x.into()),
        ComponentVal::S64(x) => Number::Int(x.into()),
        ComponentVal::U64(x) => Number::Int(x.into()),
        ComponentVal::Float32(x) => Number::Float(x.into()),
        ComponentVal::Float64(x) => Number::Float(x),
        _ => return None,
    })
}

impl Number {
    /// The number in a slot of `kind`, if it fits.
    fn slot(self, kind: Kind) -> Option<ValRaw> {
        #[allow(clippy::cast_possible_truncation)] // an f32 result stays f32
        Some(match (kind, self) {
            (Kind::I64, Number::Int(x)) => ValRaw::i64(i64::try_from(x).ok()?),
            (Kind::I32, Number::Int(x)) => ValRaw::i32(i32::try_from(x).ok()?),
            (Kind::Bool, Number::Int(x)) => ValRaw::i32(i32::from(x != 0)),
            (Kind::F64, Number::Float(x)) => ValRaw::f64(x.to_bits()),
            (Kind::F32, Number::Float(x)) => ValRaw::f32((x as f32).to_bits()),
            _ => return None,
        })
    }
}

impl<G: Guest> Hosted<G> {
    /// A writer's call in its own savepoint, so a failed call undoes
    /// exactly what it wrote (hostapi.CallContext: when the calling
    /// statement is itself writing, SQLite refuses the savepoint and the
    /// call runs read-only, covered by that statement's own rollback).
    fn bracketed<D>(
        &self,
        call: impl FnOnce(PyHost) -> Result<GuestCall<D>, CallError>,
        answer: impl FnOnce(D) -> Result<Answer, Failure>,
        started: Instant,
    ) -> Result<Answer, Failure> {
        let gate = &self.gate;
        let mut savepoint = None;
        let mut read_only = false;
        if self.writes {
            let name = gate.savepoint_name("call");
            match gate.exec(&format!("SAVEPOINT {name}")) {
                Ok(()) => savepoint = Some(name),
                Err(err) if err.is_busy() => read_only = true,
                Err(err) => return Err(self.host_error(&err, started)),
            }
        }
        let mut open_tx = Vec::new();
        let mut outcome = self.run(call, answer, started, read_only, &mut open_tx);
        // Transactions the guest left open are rolled back; returning with
        // one open is an error of its own.
        let left_open = open_tx.len();
        while let Some(name) = open_tx.pop() {
            let undone = gate
                .exec(&format!("ROLLBACK TO {name}"))
                .and_then(|()| gate.exec(&format!("RELEASE {name}")));
            if let Err(err) = undone {
                outcome = Err(self.host_error(&err, started));
            }
        }
        if left_open > 0 && outcome.is_ok() {
            let message = format!(
                "procedure returned with {left_open} transaction(s) still open; \
                 they were rolled back"
            );
            let seconds = started.elapsed().as_secs_f64();
            outcome = Err(self.hook_error("invalid", (message, seconds)));
        }
        if let Some(name) = savepoint {
            let closed = if outcome.is_ok() {
                gate.exec(&format!("RELEASE {name}"))
            } else {
                gate.exec(&format!("ROLLBACK TO {name}"))
                    .and_then(|()| gate.exec(&format!("RELEASE {name}")))
            };
            if let Err(err) = closed {
                if outcome.is_ok() {
                    outcome = Err(self.host_error(&err, started));
                }
            }
        }
        outcome
    }

    /// One call, `call` running the guest with `host` and `answer` making
    /// the call's answer of what it left, inside the connection's call
    /// depth, without the caller's statement policy, and bracketed
    /// ([`bracketed`](Self::bracketed)); counted in the tally if it succeeds.
    fn enter<D>(
        &self,
        call: impl FnOnce(PyHost) -> Result<GuestCall<D>, CallError>,
        answer: impl FnOnce(D) -> Result<Answer, Failure>,
        started: Instant,
        rows: Option<u32>,
    ) -> Result<Answer, Failure> {
        if !self.gate.enter_call(self.max_depth) {
            return Err(self.hook_error("too_deep", ()));
        }
        // The caller's statement policy (a procedure calling this one from
        // its query) is not this call's; it comes back after.
        let outer = self.gate.set_policy(None);
        let outcome = self.bracketed(call, answer, started);
        self.gate.set_policy(outer);
        self.gate.exit_call();
        match (&outcome, rows) {
            (Err(_), _) => {}
            // A batch: each row a call.
            (Ok(_), Some(rows)) => self
                .tally
                .count_many(rows.into(), started.elapsed().as_secs_f64()),
            (Ok(_), None) => {
                // Timed as a pure Numeric's calls are: every SAMPLE_EVERY-th.
                let elapsed = self.tally.time_next().then(|| started.elapsed());
                self.tally.count_call(elapsed);
            }
        }
        outcome
    }

    /// A host statement's failure (a savepoint refused) as the call's error.
    fn host_error(&self, err: &ExecError, started: Instant) -> Failure {
        let seconds = started.elapsed().as_secs_f64();
        Failure::Raised(with_gil(|py| {
            let hooks = self.hooks.bind(py);
            let error = hooks
                .call_method1(
                    intern!(py, "host_error"),
                    (err.is_busy(), err.message.as_str()),
                )
                .and_then(|exc| hooks.call_method1(intern!(py, "host_fault"), (exc, seconds)));
            match error {
                Ok(exc) => PyErr::from_value(exc),
                Err(err) => err,
            }
        }))
    }
}

impl<G: Guest> Target for Hosted<G> {
    fn params(&self) -> &[Kind] {
        &self.params
    }

    fn result(&self) -> Option<Kind> {
        self.result
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
        let args = match self.guest.prepare(args) {
            Ok(args) => args,
            Err(message) => {
                let seconds = started.elapsed().as_secs_f64();
                return Err(self.hook_error("invalid", (message, seconds)));
            }
        };
        self.enter(
            |host| self.guest.call(host, args),
            |done| self.guest.answer(self, done, out, started),
            started,
            None,
        )
    }

    fn exception(&self, py: Python<'_>, failure: Failure, row: Option<usize>) -> PyErr {
        match failure {
            Failure::Call { error, elapsed } => {
                fault_exception(py, &self.fault, &error, elapsed, row)
            }
            Failure::Raised(err) => {
                if let Some(row) = row {
                    let _ = err.value(py).setattr("row", row);
                }
                err
            }
        }
    }

    fn idle_count(&self) -> usize {
        self.guest.idle_count()
    }

    fn instantiated_count(&self) -> usize {
        self.guest.instantiated_count()
    }

    fn prewarm(&self, n: usize) -> Result<(), CallError> {
        self.guest.prewarm(n)
    }

    fn basic_host(&self) -> Option<&Hosted<BasicGuest>> {
        G::basic(self)
    }

    fn component_host(&self) -> Option<&Hosted<ComponentGuest>> {
        G::component(self)
    }
}

/// The arguments of `Numeric.hosted`.
pub struct HostedArgs<'a, 'py> {
    pub params: Box<[Param]>,
    pub result: Option<Kind>,
    pub limits: &'a Bound<'py, PyDict>,
    pub tally: Arc<TallyInner>,
    pub fault: Py<PyAny>,
    pub hooks: Py<PyAny>,
    pub gate: &'a Gate,
    pub grants: &'a Grants,
    pub is_procedure: Py<PyAny>,
    pub writes: bool,
    pub lifts: bool,
    /// A table procedure's columns the core may hand over as they are.
    pub table: Option<Box<[Option<Column>]>>,
    /// The database's log, the procedure's name and version.
    pub log: (Arc<Sink>, String, i64),
}

/// A Basic-ABI export of `pool` run whole in the core.
pub fn basic(
    pool: &BasicPool,
    export: &str,
    args: HostedArgs<'_, '_>,
) -> PyResult<Hosted<BasicGuest>> {
    let guest = BasicGuest {
        pool: pool.pool.clone(),
        export: export.to_owned(),
        lowering: args.params.iter().map(|p| lower(*p)).collect(),
    };
    hosted(guest, pool.status.clone(), args)
}

/// A component's export run whole in the core.
pub fn component(
    pool: &PyComponentPool,
    interface: Option<&str>,
    name: &str,
    args: HostedArgs<'_, '_>,
) -> PyResult<Hosted<ComponentGuest>> {
    let func = export_type(pool.component(), interface, name).ok_or_else(|| {
        core_error(
            "abi-error",
            format!("the component exports no function {name:?}"),
        )
    })?;
    let guest = ComponentGuest {
        pool: pool.pool.clone(),
        interface: interface.map(str::to_owned),
        name: name.to_owned(),
        params: func.params().map(|(n, t)| (n.to_owned(), t)).collect(),
        result: func.results().next(),
    };
    // No parameters given: the export is called with its own types only
    // (`call_values`, the plugins' hooks).
    if !args.params.is_empty() && guest.params.len() != args.params.len() {
        return Err(core_error(
            "abi-error",
            format!(
                "{name} takes {} parameter(s), not {}",
                guest.params.len(),
                args.params.len()
            ),
        ));
    }
    hosted(guest, pool.status.clone(), args)
}

fn hosted<G: Guest>(
    guest: G,
    status: Arc<Py<PyAny>>,
    args: HostedArgs<'_, '_>,
) -> PyResult<Hosted<G>> {
    let limits = args.limits;
    let get = |key: &str| -> PyResult<usize> {
        limits
            .get_item(key)?
            .ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err(format!("limits: {key} is missing"))
            })?
            .extract()
    };
    let core_limits = limits_from(limits)?;
    Ok(Hosted {
        guest,
        status,
        params: Param::kinds(&args.params).unwrap_or_default(),
        specs: args.params,
        max_arg_bytes: get("max_arg_bytes")?,
        result: args.result,
        gate: args.gate.inner.clone(),
        grants: args.grants.inner.clone(),
        is_procedure: Arc::new(args.is_procedure),
        timeout: core_limits.timeout,
        max_value_bytes: get("max_value_bytes")?,
        rows: RowLimits {
            max_rows: get("max_query_rows")?,
            max_bytes: get("max_result_bytes")?,
        },
        max_depth: get("max_call_depth")?,
        writes: args.writes,
        lifts: args.lifts,
        table: args.table,
        tally: args.tally,
        fault: args.fault,
        hooks: Arc::new(args.hooks),
        log: Arc::new(LogTarget {
            sink: args.log.0,
            procedure: args.log.1.into(),
            version: args.log.2,
            max_log_bytes: get("max_log_bytes")?,
        }),
        hosts: HostSlot::default(),
    })
}
