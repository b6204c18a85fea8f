//! `Gate`: the connection's gate (`crate::gate`) as `hostapi.Session`
//! holds it — the policy behind the connection's authorizer, and a
//! procedure's statements run under their bounds.

use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use super::policy::Authorizer;
use super::with_gil;
use crate::gate::{Gate as CoreGate, Policy};

/// A Python callable as a policy: `policy(action, p1, p2, db, trigger)`.
/// One that raises, or answers something that is not an int, denies.
struct PyPolicy(Py<PyAny>);

impl Policy for PyPolicy {
    fn authorize(
        &self,
        action: i32,
        p1: Option<&str>,
        p2: Option<&str>,
        db: Option<&str>,
        trigger: Option<&str>,
    ) -> i32 {
        with_gil(|py| {
            match self
                .0
                .call1(py, (action, p1, p2, db, trigger))
                .and_then(|r| r.extract::<i32>(py))
            {
                Ok(answer) => answer,
                Err(err) => {
                    err.write_unraisable(py, Some(self.0.bind(py)));
                    crate::policy::DENY
                }
            }
        })
    }
}

/// The policy behind the authorizer, as Python reads it to put it back
/// later (a nested call saves its caller's and clears it).
#[pyclass(module = "heliosdb_wasm._core", frozen)]
pub struct PolicyToken {
    inner: Arc<dyn Policy>,
}

/// The gate of one apsw connection (`db`: its `sqlite3*`), installed on
/// first use and alive as long as the connection.
#[pyclass(module = "heliosdb_wasm._core", frozen)]
pub struct Gate {
    pub inner: Arc<CoreGate>,
}

#[pymethods]
impl Gate {
    /// `cache_statements`: keep procedures' read-only statements prepared
    /// (only for a connection that finalizes them before it closes:
    /// `hostapi.Connection`).
    #[new]
    #[pyo3(signature = (db, cache_statements))]
    fn new(db: usize, cache_statements: bool) -> PyResult<Self> {
        if !super::sqlite::sqlite_ready() {
            return Err(PyRuntimeError::new_err(
                "the core is not loaded as an SQLite extension (native.load_sqlite_api)",
            ));
        }
        if db == 0 {
            return Err(PyValueError::new_err("no connection"));
        }
        // SAFETY: `db` is apsw's open connection (Session hands its
        // sqlite3_pointer()); the routine table is loaded.
        let inner = unsafe { CoreGate::install(db as *mut _) }.map_err(PyRuntimeError::new_err)?;
        inner.statements.enable(cache_statements);
        Ok(Self { inner })
    }

    /// The policy behind the authorizer: None (the engine's own rule), a
    /// `PolicyToken` read back earlier, an `Authorizer`, or a callable.
    #[getter]
    fn get_policy(&self) -> Option<PolicyToken> {
        self.inner.policy().map(|inner| PolicyToken { inner })
    }

    #[setter]
    fn set_policy(&self, policy: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let policy: Option<Arc<dyn Policy>> = match policy {
            None => None,
            Some(p) => Some(if let Ok(token) = p.cast::<PolicyToken>() {
                token.get().inner.clone()
            } else if let Ok(authorizer) = p.cast::<Authorizer>() {
                authorizer.get().inner.clone()
            } else if p.is_callable() {
                Arc::new(PyPolicy(p.clone().unbind()))
            } else {
                return Err(PyValueError::new_err("a policy must be callable"));
            }),
        };
        self.inner.set_policy(policy);
        Ok(())
    }

    /// The owner's length limit under the guest statements in progress,
    /// or None when none is.
    #[getter]
    fn host_length(&self) -> Option<i32> {
        self.inner.host_length()
    }

    /// Guest statements in progress on the connection.
    #[getter]
    fn depth(&self) -> usize {
        self.inner.depth()
    }

    /// Starts a procedure call; False if `max_depth` are in progress.
    fn enter_call(&self, max_depth: usize) -> bool {
        self.inner.enter_call(max_depth)
    }

    fn exit_call(&self) {
        self.inner.exit_call();
    }

    /// Finalizes the cached statements of procedures: before the
    /// connection closes (SQLite keeps a connection with statements open),
    /// and when the set of procedures changes.
    fn clear_statements(&self) {
        self.inner.statements.clear();
    }

    /// Statements cached.
    #[getter]
    fn cached_statements(&self) -> usize {
        self.inner.statements.len()
    }

    /// Procedure calls in progress on the connection, nested.
    #[getter]
    fn calls(&self) -> usize {
        self.inner.calls()
    }
}
