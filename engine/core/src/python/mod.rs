//! The extension module `heliosdb_wasm._core`: the runtime as Python sees it.
//!
//! Python keeps everything above the runtime (DDL, registry, policy,
//! telemetry's aggregation); it hands the core module bytes, limits as
//! data, and a few hooks, and calls procedures through it:
//!
//! - [`runtime`]: `Runtime` (the process's engine and compiled-module
//!   cache) and `Module` (one compiled module version, its imports and
//!   exports);
//! - [`numeric`]: `Numeric`, one numeric export of an import-free module
//!   with its instance pool and limits, called from Python one row or a
//!   batch at a time; `Tally`, its successful calls for telemetry;
//! - [`basic`]: `BasicPool` and `BasicInstance`, Basic-ABI modules with
//!   host imports, their host functions in the core and the call's
//!   `CallContext` behind them;
//! - [`component`]: `Component` and `ComponentPool`, components with the
//!   host interfaces and WASI 0.2 in the core, and their values;
//! - [`hosted`]: `Numeric.hosted`, a numeric procedure with host imports
//!   run whole in the core;
//! - [`encoding`]: the Basic ABI's parameter and row encodings;
//! - [`policy`]: `Grants` and `Authorizer`, the capability authorizer of a
//!   procedure's statements;
//! - [`gate`]: `Gate`, the connection's authorizer and the bounds of a
//!   procedure's statements, which [`statement`] runs on apsw's connection;
//! - [`sqlite`]: `Scalar`, a `Numeric` registered straight into SQLite on
//!   apsw's connection, so a row costs no Python at all.
//!
//! Failures cross as Python exceptions built by a hook Python gives each
//! `Numeric` (`fault`), so the typed errors stay defined in one place,
//! `heliosdb_wasm.errors`.

mod aggregate;
mod basic;
mod canonical;
mod component;
mod encoding;
mod gate;
mod hosted;
mod logs;
mod numeric;
mod pinned;
mod policy;
mod runtime;
mod sqlite;
mod statement;
mod values;

use pyo3::prelude::*;

/// Runs `f` holding the GIL, taken with `PyGILState_Ensure` whatever PyO3
/// believes. SQLite calls into the core from inside apsw, which releases
/// the GIL around its statements without PyO3 knowing: in a nested call (a
/// procedure's query calling a procedure) PyO3's own count says this thread
/// is attached while it is not, and `Python::attach` would run Python
/// without a thread state.
pub(crate) fn with_gil<R>(f: impl FnOnce(Python<'_>) -> R) -> R {
    struct Release(pyo3::ffi::PyGILState_STATE);
    impl Drop for Release {
        fn drop(&mut self) {
            // SAFETY: pairs the PyGILState_Ensure below, on the same thread.
            unsafe { pyo3::ffi::PyGILState_Release(self.0) }
        }
    }
    // SAFETY: the interpreter is running (it loaded this module and apsw);
    // Ensure is reentrant.
    let _release = Release(unsafe { pyo3::ffi::PyGILState_Ensure() });
    // SAFETY: the GIL is held until `_release` drops, after `f`.
    f(unsafe { Python::assume_attached() })
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<runtime::PyRuntime>()?;
    m.add_class::<runtime::PyModule_>()?;
    m.add_class::<numeric::Numeric>()?;
    m.add_class::<canonical::Held>()?;
    m.add_function(wrap_pyfunction!(canonical::canonical_argument, m)?)?;
    m.add_class::<basic::BasicPool>()?;
    m.add_class::<basic::BasicInstance>()?;
    m.add_class::<component::PyComponent>()?;
    m.add_class::<component::ComponentPool>()?;
    m.add_function(wrap_pyfunction!(component::lower_and_lift, m)?)?;
    m.add("GuestFault", m.py().get_type::<basic::GuestFault>())?;
    m.add_class::<numeric::Tally>()?;
    m.add_class::<logs::LogSink>()?;
    m.add_class::<sqlite::Scalar>()?;
    m.add_class::<aggregate::Aggregate>()?;
    m.add_class::<aggregate::AggregateFunction>()?;
    m.add_class::<policy::Grants>()?;
    m.add_class::<policy::Authorizer>()?;
    m.add_function(wrap_pyfunction!(policy::registry_access, m)?)?;
    m.add_function(wrap_pyfunction!(sqlite::extension_entry_point, m)?)?;
    m.add_function(wrap_pyfunction!(sqlite::sqlite_ready, m)?)?;
    m.add_class::<gate::Gate>()?;
    m.add_class::<gate::PolicyToken>()?;
    m.add_function(wrap_pyfunction!(encoding::decode_params, m)?)?;
    m.add_function(wrap_pyfunction!(encoding::encode_rows, m)?)?;
    m.add("CoreError", m.py().get_type::<runtime::CoreError>())?;
    m.add("WASMTIME_VERSION", runtime::WASMTIME_VERSION)?;
    m.add("BASIC_HOST_MODULE", crate::abi::HOST_MODULE)?;
    m.add("BASIC_HOST_IMPORTS", runtime::basic_host_imports(m.py())?)?;
    m.add("BASIC_STATUS_CASES", crate::basic::STATUS_CASES.to_vec())?;
    m.add(
        "WASIP2_PREFIXES",
        crate::component::WASIP2_PREFIXES.to_vec(),
    )?;
    Ok(())
}
