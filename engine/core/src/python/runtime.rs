//! `Runtime` and `Module`: the engine, the compiled-module cache, and one
//! compiled module as Python sees it.

use std::sync::Arc;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use wasmtime::{ExternType, ValType};

use crate::cache::{Artifact, CacheError, ModuleCache};
use crate::engine::{Runtime, RuntimeConfig};

/// The wasmtime the core is built with (Cargo.toml pins it exactly).
pub const WASMTIME_VERSION: &str = "48.0.8";

create_exception!(
    _core,
    CoreError,
    PyException,
    "The core refused something before any guest ran: a module wasmtime \
     cannot compile, a bad key, an engine it cannot build. args: (code, message)."
);

/// A `CoreError` with the code of the matching `heliosdb_wasm.errors` class.
pub fn core_error(code: &str, message: impl Into<String>) -> PyErr {
    CoreError::new_err((code.to_owned(), message.into()))
}

/// An import: module, name, and a function's parameter and result types.
type ImportType = (String, String, Option<Vec<String>>, Option<Vec<String>>);

/// The process's wasmtime engine, its epoch ticker and its compiled-module
/// cache (`$HELIOSDB_WASM_CACHE`, as Python's cache).
#[pyclass(name = "Runtime", module = "heliosdb_wasm._core", frozen)]
pub struct PyRuntime {
    pub runtime: Runtime,
    cache: Arc<ModuleCache>,
}

#[pymethods]
impl PyRuntime {
    #[new]
    #[pyo3(signature = (max_wasm_stack))]
    fn new(max_wasm_stack: usize) -> PyResult<Self> {
        let config = RuntimeConfig {
            max_wasm_stack,
            ..RuntimeConfig::default()
        };
        let runtime = Runtime::new(&config)
            .map_err(|err| core_error("invalid-argument", format!("the wasm engine: {err:#}")))?;
        Ok(Self {
            runtime,
            cache: Arc::new(ModuleCache::from_env()),
        })
    }

    /// The compiled-module cache's counters: (hits, misses, evictions, rejected).
    fn cache_stats(&self) -> (u64, u64, u64, u64) {
        let s = self.cache.stats();
        (s.hits, s.misses, s.evictions, s.rejected)
    }

    /// The cache's folder, or None when it is off.
    #[getter]
    fn cache_dir(&self) -> Option<String> {
        self.cache.dir().map(|d| d.display().to_string())
    }
}

impl PyRuntime {
    /// The compiled module or component whose SHA-256 is `sha256`, from the
    /// cache or compiled now without the GIL: `source` is its bytes, or a
    /// callable returning them, read only when the cache has nothing.
    pub fn compiled<A: Artifact + Send>(
        &self,
        py: Python<'_>,
        sha256: &str,
        source: &Bound<'_, PyAny>,
    ) -> PyResult<A> {
        if let Some(found) = self.lookup(py, sha256)? {
            return Ok(found);
        }
        let data = if source.is_callable() {
            source.call0()?
        } else {
            source.clone()
        };
        // bytes as they are; bytearray, memoryview (a registry blob) copied once.
        let bytes: Bound<'_, PyBytes> = match data.cast_into::<PyBytes>() {
            Ok(bytes) => bytes,
            Err(other) => py
                .get_type::<PyBytes>()
                .call1((other.into_inner(),))?
                .cast_into::<PyBytes>()?,
        };
        let wasm = bytes.as_bytes();
        let (engine, cache) = (self.runtime.engine(), &self.cache);
        py.detach(|| cache.compile_and_store(engine, sha256, wasm))
            .map_err(refused)
    }

    /// The cached module or component whose SHA-256 is `sha256`, if any.
    pub fn lookup<A: Artifact + Send>(&self, py: Python<'_>, sha256: &str) -> PyResult<Option<A>> {
        let (engine, cache) = (self.runtime.engine(), &self.cache);
        py.detach(|| cache.lookup(engine, sha256)).map_err(refused)
    }
}

fn refused(err: CacheError) -> PyErr {
    match err {
        CacheError::InvalidKey(_) => PyValueError::new_err(err.to_string()),
        other => core_error("abi-error", format!("{other}")),
    }
}

/// One compiled core module, from the cache or compiled now.
#[pyclass(name = "Module", module = "heliosdb_wasm._core", frozen)]
pub struct PyModule_ {
    pub module: wasmtime::Module,
    pub runtime: Runtime,
}

#[pymethods]
impl PyModule_ {
    /// The module whose SHA-256 is `sha256`: `source` is its bytes, or a
    /// callable returning them (called only when the cache has nothing).
    /// Compiling runs without the GIL.
    #[new]
    fn new(
        py: Python<'_>,
        runtime: &PyRuntime,
        sha256: &str,
        source: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        Ok(Self {
            module: runtime.compiled(py, sha256, source)?,
            runtime: runtime.runtime.clone(),
        })
    }

    /// The module whose SHA-256 is `sha256` from the compiled-module cache,
    /// or None when it has none (nothing is compiled).
    #[staticmethod]
    fn cached(py: Python<'_>, runtime: &PyRuntime, sha256: &str) -> PyResult<Option<Self>> {
        let found = runtime.lookup(py, sha256)?;
        Ok(found.map(|module| Self {
            module,
            runtime: runtime.runtime.clone(),
        }))
    }

    /// `(module, name)` of every import.
    #[getter]
    fn imports(&self) -> Vec<(String, String)> {
        self.module
            .imports()
            .map(|i| (i.module().to_owned(), i.name().to_owned()))
            .collect()
    }

    /// `(module, name, params, results)` of every import: a function's
    /// wasm types, or None and None for another kind of import.
    #[getter]
    fn import_types(&self) -> Vec<ImportType> {
        self.module
            .imports()
            .map(|i| {
                let (params, results) = match i.ty() {
                    ExternType::Func(ty) => (
                        Some(ty.params().map(|t| type_name(&t)).collect()),
                        Some(ty.results().map(|t| type_name(&t)).collect()),
                    ),
                    _ => (None, None),
                };
                (i.module().to_owned(), i.name().to_owned(), params, results)
            })
            .collect()
    }

    /// The names of every export (functions, memories, tables, globals).
    #[getter]
    fn export_names(&self) -> Vec<String> {
        self.module.exports().map(|e| e.name().to_owned()).collect()
    }

    /// `(name, kind)` of every export: `func`, `memory` (32-bit),
    /// `memory64`, `table`, `global` or `tag`.
    #[getter]
    fn export_kinds(&self) -> Vec<(String, &'static str)> {
        self.module
            .exports()
            .map(|e| {
                let kind = match e.ty() {
                    ExternType::Func(_) => "func",
                    ExternType::Memory(m) if m.is_64() => "memory64",
                    ExternType::Memory(_) => "memory",
                    ExternType::Table(_) => "table",
                    ExternType::Global(_) => "global",
                    ExternType::Tag(_) => "tag",
                };
                (e.name().to_owned(), kind)
            })
            .collect()
    }

    /// `name -> (params, results)` of every exported function, as wasm type
    /// names (`i32`, `i64`, `f32`, `f64`, `v128`, `funcref`, ...).
    #[getter]
    fn functions(&self) -> Vec<(String, Vec<String>, Vec<String>)> {
        self.module
            .exports()
            .filter_map(|e| match e.ty() {
                ExternType::Func(ty) => Some((
                    e.name().to_owned(),
                    ty.params().map(|t| type_name(&t)).collect(),
                    ty.results().map(|t| type_name(&t)).collect(),
                )),
                _ => None,
            })
            .collect()
    }
}

/// `crate::abi::HOST_IMPORTS` as `{name: (params, results)}` of wasm type
/// names: what `abi_basic` links and checks modules against.
pub fn basic_host_imports(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let table = PyDict::new(py);
    for import in crate::abi::HOST_IMPORTS {
        let names = |types: &[crate::typed::NumType]| -> Vec<String> {
            types.iter().map(ToString::to_string).collect()
        };
        let params = PyTuple::new(py, names(import.params))?;
        let results = PyTuple::new(py, names(import.results))?;
        table.set_item(import.name, (params, results))?;
    }
    Ok(table)
}

fn type_name(ty: &ValType) -> String {
    match ty {
        ValType::I32 => "i32".into(),
        ValType::I64 => "i64".into(),
        ValType::F32 => "f32".into(),
        ValType::F64 => "f64".into(),
        ValType::V128 => "v128".into(),
        ValType::Ref(r) => r.to_string(),
    }
}
