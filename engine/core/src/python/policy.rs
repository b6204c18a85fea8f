//! `Grants` and `Authorizer`: the capability authorizer of a procedure's
//! statements (`crate::policy`) as the SQLite authorizer callback Python's
//! `Session` hands apsw while a guest statement is prepared.

use std::sync::{Arc, Mutex, PoisonError};

use pyo3::prelude::*;

use crate::policy::{Grants as CoreGrants, StatementAuthorizer};

/// A procedure's normalized grants, made once per `Capabilities`.
#[pyclass(module = "heliosdb_wasm._core", frozen)]
pub struct Grants {
    inner: Arc<CoreGrants>,
}

#[pymethods]
impl Grants {
    #[new]
    fn new(grants: Vec<String>) -> Self {
        Self {
            inner: Arc::new(CoreGrants::new(grants.iter().map(String::as_str))),
        }
    }
}

/// The authorizer of one statement: `authorizer(action, p1, p2, db,
/// trigger) -> SQLITE_OK | SQLITE_DENY`; `denied` names what it refused.
/// `is_procedure(name)` is asked only for function calls.
#[pyclass(module = "heliosdb_wasm._core", frozen)]
pub struct Authorizer {
    state: Mutex<StatementAuthorizer>,
    is_procedure: Py<PyAny>,
}

#[pymethods]
impl Authorizer {
    #[new]
    fn new(grants: &Grants, read_only: bool, is_procedure: Py<PyAny>) -> Self {
        Self {
            state: Mutex::new(StatementAuthorizer::new(grants.inner.clone(), read_only)),
            is_procedure,
        }
    }

    #[pyo3(signature = (action, p1, p2, db, trigger))]
    fn __call__(
        &self,
        py: Python<'_>,
        action: i32,
        p1: Option<&str>,
        p2: Option<&str>,
        db: Option<&str>,
        trigger: Option<&str>,
    ) -> i32 {
        let _ = (db, trigger);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.authorize(action, p1, p2, |name| {
            // A failing callback denies: the function is not known to be safe.
            self.is_procedure
                .call1(py, (name,))
                .and_then(|r| r.is_truthy(py))
                .unwrap_or(true)
        })
    }

    /// What was denied, first first.
    #[getter]
    fn denied(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .denied()
            .to_vec()
    }
}
