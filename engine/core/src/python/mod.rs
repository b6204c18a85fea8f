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
//! - [`encoding`]: the Basic ABI's parameter and row encodings;
//! - [`policy`]: `Grants` and `Authorizer`, the capability authorizer of a
//!   procedure's statements;
//! - [`statement`]: `run_statement`, a procedure's SQL statement on apsw's
//!   connection;
//! - [`sqlite`]: `Scalar`, a `Numeric` registered straight into SQLite on
//!   apsw's connection, so a row costs no Python at all.
//!
//! Failures cross as Python exceptions built by a hook Python gives each
//! `Numeric` (`fault`), so the typed errors stay defined in one place,
//! `heliosdb_wasm.errors`.

mod encoding;
mod numeric;
mod policy;
mod runtime;
mod sqlite;
mod statement;
mod values;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<runtime::PyRuntime>()?;
    m.add_class::<runtime::PyModule_>()?;
    m.add_class::<numeric::Numeric>()?;
    m.add_class::<numeric::Tally>()?;
    m.add_class::<sqlite::Scalar>()?;
    m.add_class::<policy::Grants>()?;
    m.add_class::<policy::Authorizer>()?;
    m.add_function(wrap_pyfunction!(sqlite::extension_entry_point, m)?)?;
    m.add_function(wrap_pyfunction!(sqlite::sqlite_ready, m)?)?;
    m.add_function(wrap_pyfunction!(statement::run_statement, m)?)?;
    m.add_function(wrap_pyfunction!(statement::run_statement_encoded, m)?)?;
    m.add("SqlFailure", m.py().get_type::<statement::SqlFailure>())?;
    m.add_function(wrap_pyfunction!(encoding::decode_params, m)?)?;
    m.add_function(wrap_pyfunction!(encoding::encode_rows, m)?)?;
    m.add("CoreError", m.py().get_type::<runtime::CoreError>())?;
    m.add("WASMTIME_VERSION", runtime::WASMTIME_VERSION)?;
    m.add("BASIC_HOST_MODULE", crate::abi::HOST_MODULE)?;
    m.add("BASIC_HOST_IMPORTS", runtime::basic_host_imports(m.py())?)?;
    Ok(())
}
