//! `Grants` and `Authorizer`: the capability authorizer of a procedure's
//! statements (`crate::policy`), as the policy the connection's gate
//! (`crate::gate`) answers with while a guest statement is prepared.

use std::sync::{Arc, Mutex, PoisonError};

use pyo3::prelude::*;

use super::with_gil;
use crate::gate::Policy;
use crate::policy::{Grants as CoreGrants, StatementAuthorizer};
use crate::statement::CacheKey;

/// A procedure's normalized grants, made once per `Capabilities`.
#[pyclass(module = "heliosdb_wasm._core", frozen)]
pub struct Grants {
    pub inner: Arc<CoreGrants>,
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

/// One guest statement's authorizer: the grants, and `is_procedure(name)`
/// asked (in Python) only for function calls.
pub struct GuestPolicy {
    state: Mutex<StatementAuthorizer>,
    grants: Arc<CoreGrants>,
    read_only: bool,
    // Shared: a policy is made per statement, where the GIL may not be held.
    is_procedure: Arc<Py<PyAny>>,
}

impl GuestPolicy {
    pub fn new(grants: Arc<CoreGrants>, read_only: bool, is_procedure: Arc<Py<PyAny>>) -> Self {
        Self {
            state: Mutex::new(StatementAuthorizer::new(grants.clone(), read_only)),
            grants,
            read_only,
            is_procedure,
        }
    }

    /// What a statement authorized by this policy may be cached under:
    /// the same grants (by identity, kept alive by the entry) and mode
    /// authorize it the same way.
    pub fn cache_key(&self) -> CacheKey {
        CacheKey {
            id: (Arc::as_ptr(&self.grants) as usize, self.read_only),
            owner: self.grants.clone(),
        }
    }

    /// Made ready for another statement of the same call.
    pub fn reset(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reset();
    }

    /// What was denied, first first.
    pub fn denied(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .denied()
            .to_vec()
    }
}

impl Policy for GuestPolicy {
    fn authorize(
        &self,
        action: i32,
        p1: Option<&str>,
        p2: Option<&str>,
        _db: Option<&str>,
        _trigger: Option<&str>,
    ) -> i32 {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.authorize(action, p1, p2, |name| {
            // A failing callback denies: the function is not known to be safe.
            with_gil(|py| {
                self.is_procedure
                    .call1(py, (name,))
                    .and_then(|r| r.is_truthy(py))
                    .unwrap_or(true)
            })
        })
    }
}

/// The authorizer of one statement: `authorizer(action, p1, p2, db,
/// trigger) -> SQLITE_OK | SQLITE_DENY`; `denied` names what it refused.
#[pyclass(module = "heliosdb_wasm._core", frozen)]
pub struct Authorizer {
    pub inner: Arc<GuestPolicy>,
}

#[pymethods]
impl Authorizer {
    #[new]
    fn new(grants: &Grants, read_only: bool, is_procedure: Py<PyAny>) -> Self {
        Self {
            inner: Arc::new(GuestPolicy::new(
                grants.inner.clone(),
                read_only,
                Arc::new(is_procedure),
            )),
        }
    }

    #[pyo3(signature = (action, p1, p2, db, trigger))]
    fn __call__(
        &self,
        action: i32,
        p1: Option<&str>,
        p2: Option<&str>,
        db: Option<&str>,
        trigger: Option<&str>,
    ) -> i32 {
        self.inner.authorize(action, p1, p2, db, trigger)
    }

    /// What was denied, first first.
    #[getter]
    fn denied(&self) -> Vec<String> {
        self.inner.denied()
    }
}

/// The engine table an authorizer action reads, writes or changes, if any
/// (`crate::policy::registry_access`), for the owner's and clients' rules.
#[pyfunction]
#[pyo3(signature = (action, p1, p2))]
pub fn registry_access(action: i32, p1: Option<&str>, p2: Option<&str>) -> Option<String> {
    crate::policy::registry_access(action, p1, p2).map(str::to_owned)
}
