//! `BasicPool` and `BasicInstance`: Basic-ABI modules with host imports,
//! called in the core (`crate::basic`), their host functions served by the
//! call's `hostapi.CallContext`.
//!
//! The guest runs without the GIL; a host function takes it only for what
//! the context does in Python (a statement, a log line, a savepoint).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PySequence};
use wasmtime::Val;

use super::logs::{LogTarget, Logged};
use super::numeric::{field, limits_from};
use super::policy::GuestPolicy;
use super::runtime::{core_error, PyModule_};
use super::statement::{bounded_params, Ignored, Scope};
use super::values::{sql_value, SqlValue};
use super::with_gil;
use crate::basic::{
    self, status_of, Arg, BasicState, CallFailure, Called, Failure, Fault, Host, Lower, Outcome, Tx,
};
use crate::encoding::{Param, RowSink};
use crate::error::CallError;
use crate::gate::Gate as CoreGate;
use crate::policy::Grants as CoreGrants;
use crate::pool::{InstancePool, PooledInstance};
use crate::statement::RowLimits;
use crate::wasi::{self, Folder, WasiSpec};

create_exception!(
    _core,
    GuestFault,
    PyException,
    "A Basic-ABI call failed in the guest or broke the ABI. args: (code, \
     message, limit, frames), as `runtime.core_error` takes them."
);

/// The host functions' view of one call: the Python `CallContext`, and
/// `status(exc) -> int | None`, the status code a host error gives the
/// guest (None: the error ends the call).
pub struct PyHost {
    // The call's context; made on first use by `hooks.context(seconds_left)` when the
    // core runs the whole call (`hosted`) and only some host functions
    // need Python.
    ctx: Option<Py<PyAny>>,
    hooks: Option<Arc<Py<PyAny>>>,
    status: Arc<Py<PyAny>>,
    // What the call's statements run under: given by `hosted`.
    scope: Option<StatementScope>,
    // Log bytes of the call so far, and whether a line said the guest ran
    // out of memory: kept here when the lines go to `hooks.log`.
    logged: usize,
    out_of_memory: bool,
    // The savepoints of the guest's open transactions, innermost last,
    // when the core runs the call whole (else the context keeps them).
    pub tx: Vec<String>,
    // Where a call the core runs whole logs.
    log: Option<Arc<LogTarget>>,
}

pub struct StatementScope {
    pub gate: Arc<CoreGate>,
    pub grants: Arc<CoreGrants>,
    pub read_only: bool,
    pub is_procedure: Arc<Py<PyAny>>,
    pub deadline: Instant,
    pub max_value_bytes: usize,
    pub rows: RowLimits,
    // The authorizer of the call's statements, made at the first one and
    // reset for each.
    pub policy: Option<Arc<GuestPolicy>>,
}

impl PyHost {
    /// The host of a call whose `CallContext` Python made.
    pub fn of_context(ctx: Py<PyAny>, status: Arc<Py<PyAny>>) -> Self {
        Self {
            ctx: Some(ctx),
            hooks: None,
            status,
            scope: None,
            logged: 0,
            out_of_memory: false,
            tx: Vec::new(),
            log: None,
        }
    }

    /// The host of a call the core runs whole: no context until a host
    /// function needs one.
    pub fn hosted(
        status: Arc<Py<PyAny>>,
        hooks: Arc<Py<PyAny>>,
        scope: StatementScope,
        log: Arc<LogTarget>,
    ) -> Self {
        Self {
            ctx: None,
            hooks: Some(hooks),
            status,
            scope: Some(scope),
            logged: 0,
            out_of_memory: false,
            tx: Vec::new(),
            log: Some(log),
        }
    }

    /// A host `hosted` made, back from a call that needed no Python
    /// (`needs_gil` false), made ready for the next call of the same
    /// procedure: its deadline and mode, nothing logged, no transaction.
    /// The statement authorizer is kept (it is reset per statement) when
    /// the mode is the same. None if this host is not reusable.
    pub fn rearm(mut self, deadline: Instant, read_only: bool) -> Option<Self> {
        if self.needs_gil() || !self.tx.is_empty() {
            return None;
        }
        let scope = self.scope.as_mut()?;
        scope.deadline = deadline;
        if scope.read_only != read_only {
            scope.read_only = read_only;
            scope.policy = None;
        }
        self.logged = 0;
        Some(self)
    }

    /// Whether a context was made for the call (dropping it takes the
    /// GIL) or a log line said the guest ran out of memory.
    pub fn needs_gil(&self) -> bool {
        self.ctx.is_some() || self.out_of_memory
    }

    /// A transaction host function of a call the core runs whole: a
    /// savepoint of the guest's own, as `CallContext.begin_tx` and the rest.
    fn own_transaction(&mut self, op: Tx) -> Result<(), Failure<PyErr>> {
        let Some(scope) = &self.scope else {
            return Err(Failure::Fatal(PyRuntimeError::new_err(
                "a call without a scope",
            )));
        };
        let gate = scope.gate.clone();
        let refuse = |case: &str, message: &str| Failure::Status {
            status: status_of(case),
            message: message.to_owned(),
        };
        let result = match op {
            Tx::Begin => {
                if !scope.grants.has_kind("transaction") {
                    return Err(refuse("access-denied", "missing capability transaction"));
                }
                if scope.read_only {
                    return Err(refuse(
                        "invalid-argument",
                        "cannot begin a transaction: the calling statement is itself writing, \
                         so this call is read-only",
                    ));
                }
                let name = gate.savepoint_name("tx");
                let opened = gate.exec(&format!("SAVEPOINT {name}"));
                if opened.is_ok() {
                    self.tx.push(name);
                }
                opened
            }
            Tx::Commit => {
                let Some(name) = self.tx.pop() else {
                    return Err(refuse("invalid-argument", "commit-tx without begin-tx"));
                };
                gate.exec(&format!("RELEASE {name}"))
            }
            Tx::Rollback => {
                let Some(name) = self.tx.pop() else {
                    return Err(refuse("invalid-argument", "rollback-tx without begin-tx"));
                };
                gate.exec(&format!("ROLLBACK TO {name}"))
                    .and_then(|()| gate.exec(&format!("RELEASE {name}")))
            }
        };
        result.map_err(|err| {
            with_gil(|py| {
                let hooks = self.hooks.as_ref().expect("checked by the caller");
                match hooks
                    .bind(py)
                    .call_method1(intern!(py, "host_error"), (err.is_busy(), err.message))
                {
                    Ok(error) => self.failure(py, PyErr::from_value(error)),
                    Err(err) => Failure::Fatal(err),
                }
            })
        })
    }

    /// Whether the guest logged that it ran out of memory.
    pub fn said_out_of_memory(&self, py: Python<'_>) -> bool {
        self.out_of_memory
            || self.ctx.as_ref().is_some_and(|ctx| {
                ctx.bind(py)
                    .getattr(intern!(py, "out_of_memory"))
                    .and_then(|v| v.is_truthy())
                    .unwrap_or(false)
            })
    }

    /// The call's `CallContext`.
    fn context<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(ctx) = &self.ctx {
            return Ok(ctx.bind(py).clone());
        }
        let hooks = self
            .hooks
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("a call without a context"))?;
        // What is left of the call's time is the context's (a fetch may take
        // no more), not a timeout of its own from now.
        let left = self.scope.as_ref().map_or(0.0, |s| {
            s.deadline
                .saturating_duration_since(Instant::now())
                .as_secs_f64()
        });
        let ctx = hooks
            .bind(py)
            .call_method1(intern!(py, "context"), (left,))?;
        self.ctx = Some(ctx.clone().unbind());
        Ok(ctx)
    }

    /// The scope of the call's statements: a call the core runs whole has
    /// one; a host behind a `CallContext` (SingleStore's general path,
    /// whose guests import WASI at most) runs no statements.
    fn statement_scope(&mut self) -> Result<&StatementScope, Failure<PyErr>> {
        self.scope.as_ref().ok_or_else(|| {
            Failure::Fatal(pyo3::exceptions::PyRuntimeError::new_err(
                "this call runs no statements (no statement scope)",
            ))
        })
    }

    /// One statement of the guest's, run here under the call's scope: no
    /// Python unless it fails (the typed error is the context's to make).
    fn statement(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        rows: &mut dyn RowSink,
    ) -> Result<i64, Failure<PyErr>> {
        self.statement_scope()?;
        let s = self.scope.as_mut().expect("made above");
        let policy = s
            .policy
            .get_or_insert_with(|| {
                Arc::new(GuestPolicy::new(
                    s.grants.clone(),
                    s.read_only,
                    s.is_procedure.clone(),
                ))
            })
            .clone();
        policy.reset();
        let scope = Scope {
            deadline: s.deadline,
            max_value_bytes: s.max_value_bytes,
            rows: s.rows,
        };
        let gate = s.gate.clone();
        let outcome = bounded_params(&gate, policy.clone(), scope, sql, params, rows);
        outcome.or_else(|refused| {
            with_gil(|py| {
                // A nested procedure's error, left by apsw, is the statement's.
                if let Some(err) = PyErr::take(py) {
                    return Err(self.failure(py, err));
                }
                let args = (
                    refused.kind,
                    refused.message,
                    policy.denied(),
                    refused.own_deadline,
                );
                let error = self
                    .context(py)
                    .and_then(|ctx| ctx.call_method1(intern!(py, "statement_error"), args));
                match error {
                    Ok(error) => Err(self.failure(py, PyErr::from_value(error))),
                    Err(err) => Err(Failure::Fatal(err)),
                }
            })
        })
    }

    fn failure(&self, py: Python<'_>, err: PyErr) -> Failure<PyErr> {
        let value = err.value(py);
        let status = self
            .status
            .call1(py, (value,))
            .and_then(|s| s.extract::<Option<i32>>(py));
        match status {
            Ok(Some(status)) => {
                let message = value
                    .getattr(intern!(py, "message"))
                    .and_then(|m| m.extract::<String>())
                    .unwrap_or_else(|_| value.to_string());
                Failure::Status { status, message }
            }
            Ok(None) => Failure::Fatal(err),
            Err(other) => Failure::Fatal(other),
        }
    }

    /// `ctx.<method>(*args)`, converted.
    fn invoke<'py, A, T>(
        &mut self,
        py: Python<'py>,
        method: &Bound<'py, pyo3::types::PyString>,
        args: A,
        convert: impl FnOnce(&Bound<'py, PyAny>) -> PyResult<T>,
    ) -> PyResult<T>
    where
        A: pyo3::call::PyCallArgs<'py>,
    {
        self.context(py)?
            .call_method1(method, args)
            .and_then(|r| convert(&r))
    }

    /// [`Self::invoke`] for a fallible host function: its error classified.
    fn call<'py, A, T>(
        &mut self,
        py: Python<'py>,
        method: &Bound<'py, pyo3::types::PyString>,
        args: A,
        convert: impl FnOnce(&Bound<'py, PyAny>) -> PyResult<T>,
    ) -> Result<T, Failure<PyErr>>
    where
        A: pyo3::call::PyCallArgs<'py>,
    {
        self.invoke(py, method, args, convert)
            .map_err(|err| self.failure(py, err))
    }
}

fn bytes_of(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    Ok(value.cast::<PyBytes>()?.as_bytes().to_vec())
}

impl Host for PyHost {
    type Error = PyErr;

    fn query(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        rows: &mut dyn RowSink,
    ) -> Result<(), Failure<PyErr>> {
        self.statement(sql, params, rows).map(|_| ())
    }

    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<i64, Failure<PyErr>> {
        self.statement(sql, params, &mut Ignored)
    }

    fn transaction(&mut self, op: Tx) -> Result<(), Failure<PyErr>> {
        // A call the core runs whole keeps its own transactions, also after
        // a host function living in Python made it a context: the context
        // never sees them (`Hosted::bracketed` rolls back what is left open).
        if self.hooks.is_some() {
            return self.own_transaction(op);
        }
        with_gil(|py| {
            let method = match op {
                Tx::Begin => intern!(py, "begin_tx"),
                Tx::Commit => intern!(py, "commit_tx"),
                Tx::Rollback => intern!(py, "rollback_tx"),
            };
            self.call(py, method, (), |_| Ok(()))
        })
    }

    fn http_fetch(&mut self, request: &[u8]) -> Result<Vec<u8>, Failure<PyErr>> {
        with_gil(|py| {
            let args = (PyBytes::new(py, request),);
            self.call(py, intern!(py, "http_fetch_encoded"), args, bytes_of)
        })
    }

    fn digest(&mut self, algorithm: &str, data: &[u8]) -> Result<Vec<u8>, Failure<PyErr>> {
        with_gil(|py| {
            let args = (algorithm, PyBytes::new(py, data));
            self.call(py, intern!(py, "digest"), args, bytes_of)
        })
    }

    fn hmac(
        &mut self,
        algorithm: &str,
        key: &[u8],
        data: &[u8],
    ) -> Result<Vec<u8>, Failure<PyErr>> {
        with_gil(|py| {
            let args = (algorithm, PyBytes::new(py, key), PyBytes::new(py, data));
            self.call(py, intern!(py, "hmac"), args, bytes_of)
        })
    }

    fn log(&mut self, level: &'static str, message: &str) -> Result<(), PyErr> {
        // A call the core runs whole: the line goes into the database's
        // log here, with no Python (and no context made for it).
        if let (Some(hooks), Some(target)) = (&self.hooks, &self.log) {
            return match target.log(&mut self.logged, level, message) {
                Logged::Line { out_of_memory } => {
                    self.out_of_memory |= out_of_memory;
                    Ok(())
                }
                Logged::OverLimit => with_gil(|py| {
                    let error = hooks.bind(py).call_method0(intern!(py, "log_limit"))?;
                    Err(PyErr::from_value(error))
                }),
            };
        }
        with_gil(|py| self.invoke(py, intern!(py, "log"), (level, message), |_| Ok(())))
    }

    fn count_in_window(&mut self, key: &str, window_ms: i64) -> Result<i64, PyErr> {
        with_gil(|py| {
            self.invoke(py, intern!(py, "count_in_window"), (key, window_ms), |r| {
                r.extract()
            })
        })
    }

    // A call the core runs whole reports no split of its time, unless it
    // is being profiled.
    fn timed(&self) -> bool {
        self.hooks.is_none() || super::numeric::Profile::wanted()
    }
}

pub type Pool = InstancePool<BasicState<PyHost>>;

/// The instances of one module version under one set of limits, with the
/// host functions linked once (an `InstancePre`).
#[pyclass(module = "heliosdb_wasm._core", frozen)]
pub struct BasicPool {
    pub pool: Arc<Pool>,
    pub status: Arc<Py<PyAny>>,
}

pub fn guest_fault(error: &CallError) -> PyErr {
    GuestFault::new_err((
        error.code(),
        error.message().to_owned(),
        error.limit_name(),
        error.frame_lines(),
    ))
}

pub fn failure_error(failure: CallFailure<PyErr>) -> PyErr {
    match failure {
        CallFailure::Call(error) => guest_fault(&error),
        CallFailure::Fault(Fault::Abi(message)) => {
            GuestFault::new_err(("abi-error", message, None::<&str>, Vec::<String>::new()))
        }
        CallFailure::Fault(Fault::Memory(message)) => GuestFault::new_err((
            "limit-exceeded",
            message,
            Some("memory"),
            Vec::<String>::new(),
        )),
        CallFailure::Fault(Fault::Host(err)) => err,
    }
}

#[pymethods]
impl BasicPool {
    /// `module`'s instances under `limits` (`policy.Limits.to_json()`);
    /// `status(exc)` as for the host functions (see `PyHost`). A module
    /// that imports WASI preview 1 gets it as `wasi` grants (a dict with
    /// `env` `[(name, value)]`, `folders` `[(path, writable)]`, `stdout`,
    /// `random` and `max_log_bytes`; none: nothing granted).
    #[new]
    #[pyo3(signature = (module, limits, status, wasi=None))]
    fn new(
        module: &PyModule_,
        limits: &Bound<'_, PyDict>,
        status: Py<PyAny>,
        wasi: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let limits = limits_from(limits)?;
        let with_wasi = module
            .module
            .imports()
            .any(|i| i.module() == wasi::WASIP1_MODULE);
        let spec = wasi_spec(wasi)?;
        let linker = basic::linker::<PyHost>(module.runtime.engine(), with_wasi)
            .map_err(|e| core_error("abi-error", format!("{e:#}")))?;
        let pre = linker.instantiate_pre(&module.module).map_err(|e| {
            let message = format!("{e:#}");
            if message.contains("incompatible import type") {
                core_error(
                    "abi-error",
                    format!("WASI import with the wrong type: {message}"),
                )
            } else {
                core_error("abi-error", message)
            }
        })?;
        let timeout = limits.timeout;
        let new_state = move || {
            if !with_wasi {
                return Ok(BasicState::default());
            }
            spec.build(timeout)
                .map(BasicState::with_wasi)
                .map_err(CallError::abi)
        };
        let pool = InstancePool::new(&module.runtime, pre, limits, new_state)
            .map_err(|e| core_error(e.code(), e.to_string()))?;
        Ok(Self {
            pool: Arc::new(pool),
            status: Arc::new(status),
        })
    }

    /// An instance of the pool (its start function and `_initialize` run
    /// under the limits when it is new): `GuestFault` if they fail. It goes
    /// back with `recycle`.
    fn instance(&self, py: Python<'_>) -> PyResult<BasicInstance> {
        let pool = self.pool.clone();
        let instance = py.detach(|| pool.acquire()).map_err(|e| guest_fault(&e))?;
        Ok(BasicInstance {
            slot: Mutex::new(Some(instance)),
            pool: self.pool.clone(),
            status: self.status.clone(),
            last: Mutex::new(Outcome::default()),
        })
    }
}

/// One instance with its own store.
#[pyclass(module = "heliosdb_wasm._core", frozen)]
pub struct BasicInstance {
    slot: Mutex<Option<PooledInstance<BasicState<PyHost>>>>,
    pool: Arc<Pool>,
    status: Arc<Py<PyAny>>,
    // What the last call left: raised error, times, fuel, memory.
    last: Mutex<Outcome>,
}

/// `BasicPool`'s `wasi` grants as a `WasiSpec` (None: nothing granted).
pub fn wasi_spec(wasi: Option<&Bound<'_, PyDict>>) -> PyResult<WasiSpec> {
    let Some(dict) = wasi else {
        return Ok(WasiSpec::default());
    };
    fn get<'py, T: FromPyObjectOwned<'py>>(dict: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
        field(dict, "wasi", key, "has the wrong type")
    }
    let folders: Vec<(PathBuf, bool)> = get(dict, "folders")?;
    Ok(WasiSpec {
        env: get(dict, "env")?,
        folders: folders
            .into_iter()
            .map(|(path, writable)| Folder { path, writable })
            .collect(),
        stdout: get(dict, "stdout")?,
        random: get(dict, "random")?,
        max_log_bytes: get(dict, "max_log_bytes")?,
    })
}

fn lowering(code: &[u8]) -> PyResult<Vec<Lower>> {
    code.iter()
        .map(|c| {
            Ok(match c {
                b'q' => Lower::I64,
                b'i' => Lower::I32,
                b'd' => Lower::F64,
                b'f' => Lower::F32,
                b's' => Lower::Buffer,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "unknown lowering {:?}",
                        char::from(*other)
                    )))
                }
            })
        })
        .collect()
}

fn arg(value: &Bound<'_, PyAny>) -> PyResult<Arg> {
    Ok(match sql_value(value)? {
        Some(SqlValue::Null) => Arg::Null,
        Some(SqlValue::Boolean(b)) => Arg::Boolean(b),
        Some(SqlValue::Integer(x)) => Arg::Integer(x),
        Some(SqlValue::Real(x)) => Arg::Real(x),
        Some(SqlValue::Text(s)) => Arg::Text(s.to_str()?.as_bytes().to_vec()),
        Some(SqlValue::Blob(b)) => Arg::Blob(b.to_vec()),
        Some(SqlValue::Buffer(b)) => Arg::Blob(b),
        None => {
            return Err(PyTypeError::new_err(format!(
                "a procedure argument cannot be of type {}",
                value.get_type().name()?
            )))
        }
    })
}

fn py_val(py: Python<'_>, val: &Val) -> Py<PyAny> {
    match *val {
        Val::I32(x) => x
            .into_pyobject(py)
            .map_or_else(|_| py.None(), |o| o.into_any().unbind()),
        Val::I64(x) => x
            .into_pyobject(py)
            .map_or_else(|_| py.None(), |o| o.into_any().unbind()),
        Val::F32(bits) => PyFloat::new(py, f64::from(f32::from_bits(bits)))
            .into_any()
            .unbind(),
        Val::F64(bits) => PyFloat::new(py, f64::from_bits(bits)).into_any().unbind(),
        _ => py.None(),
    }
}

type Returned = Option<(u8, Py<PyBytes>)>;
/// `heliosdb_error`'s `(code, message)`.
type Raised = Option<(String, String)>;

impl BasicInstance {
    fn with_slot<R>(
        &self,
        py: Python<'_>,
        ctx: Option<Py<PyAny>>,
        f: impl FnOnce(&mut PooledInstance<BasicState<PyHost>>, Option<PyHost>) -> Called<R, PyHost>
            + Send,
    ) -> PyResult<R>
    where
        R: Send,
    {
        let host = ctx.map(|ctx| self.host_of(ctx));
        // Taken out for the call: a second call on the same instance (it
        // is never shared, but a bug could) finds it gone instead of waiting.
        let mut instance = self
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("the instance is in use or released"))?;
        let (result, outcome, host) = py.detach(|| f(&mut instance, host));
        drop(host);
        let poisoned = instance.is_poisoned();
        if !poisoned {
            *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(instance);
        }
        // Kept for `stats` and `raised`, also when the call failed: a
        // language without exceptions throws by raising and then trapping.
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = outcome;
        result.map_err(failure_error)
    }
}

impl BasicInstance {
    fn host_of(&self, ctx: Py<PyAny>) -> PyHost {
        PyHost::of_context(ctx, self.status.clone())
    }
}

#[pymethods]
impl BasicInstance {
    /// One call of `export`: `lowering` has one letter per parameter
    /// (`q` i64, `i` i32, `d` f64, `f` f32, `s` a text/blob buffer), `args`
    /// the coerced values. `(result, returned, raised)`: the wasm result
    /// (or None), `heliosdb_return`'s `(tag, payload)` and
    /// `heliosdb_error`'s `(code, message)`, if the guest called them.
    /// Raises `GuestFault`, or the context's own error that ended the call.
    /// `ctx` None: no host function may be called.
    #[pyo3(signature = (ctx, export, lowering, args))]
    fn call(
        &self,
        py: Python<'_>,
        ctx: Option<Py<PyAny>>,
        export: &str,
        lowering: &[u8],
        args: &Bound<'_, PySequence>,
    ) -> PyResult<(Py<PyAny>, Returned, Raised)> {
        let lowering = self::lowering(lowering)?;
        let n = args.len()?;
        if n != lowering.len() {
            return Err(PyValueError::new_err(format!(
                "expected {} argument(s), got {n}",
                lowering.len()
            )));
        }
        let args = (0..n)
            .map(|i| arg(&args.get_item(i)?))
            .collect::<PyResult<Vec<_>>>()?;
        let values = self.with_slot(py, ctx, |instance, host| {
            basic::call(instance, host, export, &lowering, args)
        })?;
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let returned = last
            .returned
            .take()
            .map(|(tag, payload)| (tag, PyBytes::new(py, &payload).unbind()));
        let result = values.first().map_or_else(|| py.None(), |v| py_val(py, v));
        Ok((result, returned, last.raised.take()))
    }

    /// Whether a call failed on this instance (it is then dropped).
    #[getter]
    fn poisoned(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    /// Hands the instance back to its pool, where the calls the core runs
    /// whole take theirs (dropped instead if a call failed on it).
    fn recycle(&self) {
        let instance = self
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(instance) = instance {
            self.pool.release(instance);
        }
    }

    /// Drops the store now.
    fn release(&self) {
        let instance = self
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(instance);
    }
}
