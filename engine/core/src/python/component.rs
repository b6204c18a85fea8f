//! `Component` and `ComponentPool`: components in the core
//! (`crate::component`), called whole on the hosted path (`hosted.rs`),
//! their values crossing as plain Python values where Python gives or
//! takes them (a plugin hook's arguments, a result that is not a number).
//!
//! A component value as Python sees it: `bool`, `int` (every integer
//! type), `float`, `str` (`string` and `char`), `bytes` (`list<u8>`),
//! `list`, `tuple`, `dict` (a record, by WIT field name), `(case, payload)`
//! (a variant; payload None without one), `str` (an enum case), None or the
//! payload (an option), `("ok", v)` / `("err", e)` (a result), `list[str]`
//! (flags). Types cross as descriptors (`describe`): `("s64",)`,
//! `("list", T)`, `("option", T)`, `("result", T | None, E | None)`,
//! `("record", ((name, T), ...))`, `("tuple", (T, ...))`,
//! `("variant", ((name, T | None), ...))`, `("enum", names)`,
//! `("flags", names)`, and `("resource",)` for what procedures cannot use.

use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PySequence, PyString, PyTuple};
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, Type, Val};

use super::basic::{wasi_spec, PyHost};
use super::numeric::limits_from;
use super::runtime::{core_error, PyRuntime};
use crate::basic::Arg;
use crate::component::{ComponentPool as CorePool, ComponentPre};
use crate::engine::Runtime;

/// One compiled component, from the cache or compiled now.
#[pyclass(name = "Component", module = "heliosdb_wasm._core", frozen)]
pub struct PyComponent {
    component: Component,
    runtime: Runtime,
}

/// An export: its interface (None at the top level), name, parameters
/// `(name, type)` and result type.
type Export<'py> = (
    Option<String>,
    String,
    Vec<(String, Bound<'py, PyTuple>)>,
    Option<Bound<'py, PyTuple>>,
);

#[pymethods]
impl PyComponent {
    /// The component whose SHA-256 is `sha256`: `source` is its bytes, or a
    /// callable returning them (called only when the cache has nothing).
    #[new]
    fn new(
        py: Python<'_>,
        runtime: &PyRuntime,
        sha256: &str,
        source: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        Ok(Self {
            component: runtime.compiled(py, sha256, source)?,
            runtime: runtime.runtime.clone(),
        })
    }

    /// The names of the component's imports (interfaces, as `ns:pkg/iface@v`).
    #[getter]
    fn imports(&self) -> Vec<String> {
        let engine = self.runtime.engine();
        let ty = self.component.component_type();
        ty.imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    /// The exported functions, at the top level and one interface deep.
    #[getter]
    fn exports<'py>(&self, py: Python<'py>) -> PyResult<Vec<Export<'py>>> {
        let engine = self.runtime.engine();
        let ty = self.component.component_type();
        let mut out = Vec::new();
        for (name, item) in ty.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(func) => out.push(export(py, None, name, &func)?),
                ComponentItem::ComponentInstance(instance) => {
                    for (fname, fitem) in instance.exports(engine) {
                        if let ComponentItem::ComponentFunc(func) = fitem.ty {
                            out.push(export(py, Some(name), fname, &func)?);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

fn export<'py>(
    py: Python<'py>,
    interface: Option<&str>,
    name: &str,
    func: &ComponentFunc,
) -> PyResult<Export<'py>> {
    let params = func
        .params()
        .map(|(n, t)| Ok((n.to_owned(), describe(py, &t)?)))
        .collect::<PyResult<Vec<_>>>()?;
    let result = func
        .results()
        .next()
        .map(|t| describe(py, &t))
        .transpose()?;
    Ok((
        interface.map(str::to_owned),
        name.to_owned(),
        params,
        result,
    ))
}

/// A type's descriptor (see the module documentation).
fn describe<'py>(py: Python<'py>, ty: &Type) -> PyResult<Bound<'py, PyTuple>> {
    let name = |n: &str| PyTuple::new(py, [n]);
    let opt = |t: Option<Type>| -> PyResult<Py<PyAny>> {
        Ok(match t {
            Some(t) => describe(py, &t)?.into_any().unbind(),
            None => py.None(),
        })
    };
    match ty {
        Type::Bool => name("bool"),
        Type::S8 => name("s8"),
        Type::U8 => name("u8"),
        Type::S16 => name("s16"),
        Type::U16 => name("u16"),
        Type::S32 => name("s32"),
        Type::U32 => name("u32"),
        Type::S64 => name("s64"),
        Type::U64 => name("u64"),
        Type::Float32 => name("f32"),
        Type::Float64 => name("f64"),
        Type::Char => name("char"),
        Type::String => name("string"),
        Type::List(list) => ("list", describe(py, &list.ty())?).into_pyobject(py),
        Type::Option(option) => ("option", describe(py, &option.ty())?).into_pyobject(py),
        Type::Result(result) => ("result", opt(result.ok())?, opt(result.err())?).into_pyobject(py),
        Type::Record(record) => {
            let fields = record
                .fields()
                .map(|f| Ok((f.name.to_owned(), describe(py, &f.ty)?)))
                .collect::<PyResult<Vec<_>>>()?;
            ("record", PyTuple::new(py, fields)?).into_pyobject(py)
        }
        Type::Tuple(tuple) => {
            let items = tuple
                .types()
                .map(|t| describe(py, &t))
                .collect::<PyResult<Vec<_>>>()?;
            ("tuple", PyTuple::new(py, items)?).into_pyobject(py)
        }
        Type::Variant(variant) => {
            let cases = variant
                .cases()
                .map(|c| Ok((c.name.to_owned(), opt(c.ty)?)))
                .collect::<PyResult<Vec<_>>>()?;
            ("variant", PyTuple::new(py, cases)?).into_pyobject(py)
        }
        Type::Enum(e) => ("enum", PyTuple::new(py, e.names())?).into_pyobject(py),
        Type::Flags(f) => ("flags", PyTuple::new(py, f.names())?).into_pyobject(py),
        _ => name("resource"),
    }
}

/// `value` as a component value of type `ty`; `what` names it in errors.
pub fn lower(value: &Bound<'_, PyAny>, ty: &Type, what: &str) -> PyResult<Val> {
    let wrong = |expected: &str| {
        PyTypeError::new_err(format!(
            "{what}: expected {expected}, got {}",
            value
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))
    };
    if is_integer(ty) {
        let x: i128 = if value.is_instance_of::<PyBool>() {
            i128::from(value.extract::<bool>()?)
        } else {
            value.extract().map_err(|_| wrong(expected(ty)))?
        };
        return integer(ty, x).map_err(|kind| {
            PyValueError::new_err(format!("{what}: {x} is out of range for {kind}"))
        });
    }
    Ok(match ty {
        Type::Bool => Val::Bool(value.extract().map_err(|_| wrong(expected(ty)))?),
        #[allow(clippy::cast_possible_truncation)] // f32 is the guest's choice
        Type::Float32 => {
            Val::Float32(value.extract::<f64>().map_err(|_| wrong("a number"))? as f32)
        }
        Type::Float64 => Val::Float64(value.extract().map_err(|_| wrong("a number"))?),
        Type::Char => {
            let s: String = value.extract().map_err(|_| wrong("a one-character str"))?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => return Err(wrong("a one-character str")),
            }
        }
        Type::String => Val::String(value.extract().map_err(|_| wrong("a str"))?),
        Type::List(list) => {
            let elem = list.ty();
            if matches!(elem, Type::U8) && !value.is_instance_of::<PyList>() {
                let bytes: Vec<u8> = value.extract().map_err(|_| wrong("bytes"))?;
                return Ok(Val::List(bytes.into_iter().map(Val::U8).collect()));
            }
            let items = value.cast::<PySequence>().map_err(|_| wrong("a list"))?;
            let n = items.len()?;
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                out.push(lower(&items.get_item(i)?, &elem, what)?);
            }
            Val::List(out)
        }
        Type::Option(option) => {
            if value.is_none() {
                Val::Option(None)
            } else {
                Val::Option(Some(Box::new(lower(value, &option.ty(), what)?)))
            }
        }
        Type::Result(result) => {
            let (case, payload): (String, Bound<'_, PyAny>) = value
                .extract()
                .map_err(|_| wrong("('ok' | 'err', payload)"))?;
            let side = |t: Option<Type>| -> PyResult<Option<Box<Val>>> {
                t.map(|t| lower(&payload, &t, what).map(Box::new))
                    .transpose()
            };
            match case.as_str() {
                "ok" => Val::Result(Ok(side(result.ok())?)),
                "err" => Val::Result(Err(side(result.err())?)),
                _ => return Err(wrong("('ok' | 'err', payload)")),
            }
        }
        Type::Record(record) => {
            let dict = value.cast::<PyDict>().map_err(|_| wrong("a dict"))?;
            let mut fields = Vec::new();
            for field in record.fields() {
                let item = dict.get_item(field.name)?.ok_or_else(|| {
                    PyValueError::new_err(format!("{what}: field {} is missing", field.name))
                })?;
                fields.push((field.name.to_owned(), lower(&item, &field.ty, what)?));
            }
            Val::Record(fields)
        }
        Type::Tuple(tuple) => {
            let items = value.cast::<PySequence>().map_err(|_| wrong("a tuple"))?;
            let types: Vec<Type> = tuple.types().collect();
            if items.len()? != types.len() {
                return Err(wrong(&format!("a tuple of {}", types.len())));
            }
            let mut out = Vec::with_capacity(types.len());
            for (i, t) in types.iter().enumerate() {
                out.push(lower(&items.get_item(i)?, t, what)?);
            }
            Val::Tuple(out)
        }
        Type::Variant(variant) => {
            let (case, payload): (String, Bound<'_, PyAny>) = match value.extract::<String>() {
                Ok(case) => (case, value.py().None().into_bound(value.py())),
                Err(_) => value.extract().map_err(|_| wrong("(case, payload)"))?,
            };
            let Some(c) = variant.cases().find(|c| c.name == case) else {
                return Err(PyValueError::new_err(format!(
                    "{what}: {case:?} is not a case of the variant"
                )));
            };
            let payload =
                c.ty.map(|t| lower(&payload, &t, what).map(Box::new))
                    .transpose()?;
            Val::Variant(case, payload)
        }
        Type::Enum(e) => {
            let case: String = value.extract().map_err(|_| wrong("a case name"))?;
            if !e.names().any(|n| n == case) {
                return Err(PyValueError::new_err(format!(
                    "{what}: {case:?} is not a case of the enum"
                )));
            }
            Val::Enum(case)
        }
        Type::Flags(f) => {
            let names: Vec<String> = value.extract().map_err(|_| wrong("a list of flags"))?;
            if let Some(bad) = names.iter().find(|n| !f.names().any(|m| m == n.as_str())) {
                return Err(PyValueError::new_err(format!("{what}: no flag {bad:?}")));
            }
            Val::Flags(names)
        }
        _ => return Err(wrong("a value of a type procedures can pass")),
    })
}

/// A component value of type `ty` as Python sees it.
pub fn lift(py: Python<'_>, val: &Val, ty: &Type) -> PyResult<Py<PyAny>> {
    let obj = |o: Bound<'_, PyAny>| o.unbind();
    Ok(match val {
        Val::Bool(b) => obj(PyBool::new(py, *b).to_owned().into_any()),
        Val::S8(x) => obj(x.into_pyobject(py)?.into_any()),
        Val::U8(x) => obj(x.into_pyobject(py)?.into_any()),
        Val::S16(x) => obj(x.into_pyobject(py)?.into_any()),
        Val::U16(x) => obj(x.into_pyobject(py)?.into_any()),
        Val::S32(x) => obj(x.into_pyobject(py)?.into_any()),
        Val::U32(x) => obj(x.into_pyobject(py)?.into_any()),
        Val::S64(x) => obj(x.into_pyobject(py)?.into_any()),
        Val::U64(x) => obj(x.into_pyobject(py)?.into_any()),
        Val::Float32(x) => obj(f64::from(*x).into_pyobject(py)?.into_any()),
        Val::Float64(x) => obj(x.into_pyobject(py)?.into_any()),
        Val::Char(c) => obj(PyString::new(py, c.encode_utf8(&mut [0; 4])).into_any()),
        Val::String(s) => obj(PyString::new(py, s).into_any()),
        Val::List(items) => {
            let Type::List(list) = ty else {
                return Err(mismatch());
            };
            let elem = list.ty();
            if matches!(elem, Type::U8) {
                let bytes: Vec<u8> = items
                    .iter()
                    .map(|v| if let Val::U8(b) = v { *b } else { 0 })
                    .collect();
                obj(PyBytes::new(py, &bytes).into_any())
            } else {
                let out = items
                    .iter()
                    .map(|v| lift(py, v, &elem))
                    .collect::<PyResult<Vec<_>>>()?;
                obj(PyList::new(py, out)?.into_any())
            }
        }
        Val::Record(fields) => {
            let Type::Record(record) = ty else {
                return Err(mismatch());
            };
            let dict = PyDict::new(py);
            for ((name, v), field) in fields.iter().zip(record.fields()) {
                dict.set_item(name, lift(py, v, &field.ty)?)?;
            }
            obj(dict.into_any())
        }
        Val::Tuple(items) => {
            let Type::Tuple(tuple) = ty else {
                return Err(mismatch());
            };
            let out = items
                .iter()
                .zip(tuple.types())
                .map(|(v, t)| lift(py, v, &t))
                .collect::<PyResult<Vec<_>>>()?;
            obj(PyTuple::new(py, out)?.into_any())
        }
        Val::Variant(case, payload) => {
            let Type::Variant(variant) = ty else {
                return Err(mismatch());
            };
            let case_ty = variant
                .cases()
                .find(|c| c.name == case.as_str())
                .and_then(|c| c.ty);
            let payload = match (payload, case_ty) {
                (Some(v), Some(t)) => lift(py, v, &t)?,
                _ => py.None(),
            };
            obj((case.as_str(), payload).into_pyobject(py)?.into_any())
        }
        Val::Enum(case) => obj(PyString::new(py, case).into_any()),
        Val::Option(inner) => match (inner, ty) {
            (Some(v), Type::Option(option)) => lift(py, v, &option.ty())?,
            (None, _) => py.None(),
            _ => return Err(mismatch()),
        },
        Val::Result(result) => {
            let Type::Result(rt) = ty else {
                return Err(mismatch());
            };
            let (case, payload, t) = match result {
                Ok(v) => ("ok", v, rt.ok()),
                Err(e) => ("err", e, rt.err()),
            };
            let payload = match (payload, t) {
                (Some(v), Some(t)) => lift(py, v, &t)?,
                _ => py.None(),
            };
            obj((case, payload).into_pyobject(py)?.into_any())
        }
        Val::Flags(names) => obj(PyList::new(py, names)?.into_any()),
        _ => return Err(mismatch()),
    })
}

fn is_integer(ty: &Type) -> bool {
    matches!(
        ty,
        Type::S8 | Type::U8 | Type::S16 | Type::U16 | Type::S32 | Type::U32 | Type::S64 | Type::U64
    )
}

/// `x` as a value of the integer type `ty`, or the type's name when it is
/// out of its range.
fn integer(ty: &Type, x: i128) -> Result<Val, &'static str> {
    let (val, name) = match ty {
        Type::S8 => (i8::try_from(x).ok().map(Val::S8), "s8"),
        Type::U8 => (u8::try_from(x).ok().map(Val::U8), "u8"),
        Type::S16 => (i16::try_from(x).ok().map(Val::S16), "s16"),
        Type::U16 => (u16::try_from(x).ok().map(Val::U16), "u16"),
        Type::S32 => (i32::try_from(x).ok().map(Val::S32), "s32"),
        Type::U32 => (u32::try_from(x).ok().map(Val::U32), "u32"),
        Type::S64 => (i64::try_from(x).ok().map(Val::S64), "s64"),
        Type::U64 => (u64::try_from(x).ok().map(Val::U64), "u64"),
        _ => (None, "an integer type"),
    };
    val.ok_or(name)
}

fn mismatch() -> PyErr {
    PyRuntimeError::new_err("a component value does not match its type")
}

type Pre = ComponentPre<PyHost>;

/// The instances of one component version under one set of limits and
/// WASI grants, linked once.
#[pyclass(module = "heliosdb_wasm._core", frozen)]
pub struct ComponentPool {
    pub pool: Arc<CorePool<PyHost>>,
    pub status: Arc<Py<PyAny>>,
    component: Component,
}

impl ComponentPool {
    /// The component, for the types of its exports.
    pub fn component(&self) -> &Component {
        &self.component
    }
}

#[pymethods]
impl ComponentPool {
    /// `component`'s instances under `limits` (`policy.Limits.to_json()`);
    /// `status(exc)` as for the Basic ABI's host functions; `wasi` as
    /// `BasicPool` takes it (None: nothing granted).
    #[new]
    #[pyo3(signature = (component, limits, status, wasi=None))]
    fn new(
        component: &PyComponent,
        limits: &Bound<'_, PyDict>,
        status: Py<PyAny>,
        wasi: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let limits = limits_from(limits)?;
        let spec = wasi_spec(wasi)?;
        let pre = Pre::new(&component.runtime, &component.component, limits, spec)
            .map_err(|e| core_error(e.code(), e.message().to_owned()))?;
        Ok(Self {
            pool: Arc::new(CorePool::new(pre)),
            status: Arc::new(status),
            component: component.component.clone(),
        })
    }
}

/// Each of `args` lowered to the type of the matching parameter of the
/// export `name` (in `interface`, if given) and lifted back, as a call
/// would pass them: what the conversions do, without running the guest.
#[pyfunction]
#[pyo3(signature = (component, interface, name, args))]
pub fn lower_and_lift(
    py: Python<'_>,
    component: &PyComponent,
    interface: Option<&str>,
    name: &str,
    args: &Bound<'_, PySequence>,
) -> PyResult<Vec<Py<PyAny>>> {
    let Some(func) = export_type(&component.component, interface, name) else {
        return Err(PyValueError::new_err(format!("no export {name:?}")));
    };
    let params: Vec<(String, Type)> = func.params().map(|(n, t)| (n.to_owned(), t)).collect();
    let n = args.len()?;
    if n != params.len() {
        return Err(PyValueError::new_err(format!(
            "{name} takes {} argument(s), got {n}",
            params.len()
        )));
    }
    params
        .iter()
        .enumerate()
        .map(|(i, (pname, t))| {
            let val = lower(&args.get_item(i)?, t, &format!("{name}({pname})"))?;
            lift(py, &val, t)
        })
        .collect()
}

/// A SQL argument as a component value of type `ty`, or why it cannot be
/// one (the caller's `InvalidArgument`).
pub fn arg_val(arg: &Arg, ty: &Type, what: &dyn Fn() -> String) -> Result<Val, String> {
    // Worded as `lower` words it for the same value from Python.
    let wrong = || {
        let got = match arg {
            Arg::Null => "NoneType",
            Arg::Integer(_) => "int",
            Arg::Real(_) => "float",
            Arg::Text(_) => "str",
            Arg::Blob(_) => "bytes",
            Arg::Boolean(_) => "bool",
        };
        format!("{}: expected {}, got {got}", what(), expected(ty))
    };
    if is_integer(ty) {
        let x = match arg {
            Arg::Integer(x) => i128::from(*x),
            Arg::Boolean(b) => i128::from(*b),
            _ => return Err(wrong()),
        };
        return integer(ty, x)
            .map_err(|kind| format!("{}: {x} is out of range for {kind}", what()));
    }
    Ok(match ty {
        Type::Option(option) => match arg {
            Arg::Null => Val::Option(None),
            _ => Val::Option(Some(Box::new(arg_val(arg, &option.ty(), what)?))),
        },
        Type::Bool => match arg {
            Arg::Boolean(b) => Val::Bool(*b),
            Arg::Integer(x) => Val::Bool(*x != 0),
            _ => return Err(wrong()),
        },
        Type::Float32 | Type::Float64 => {
            #[allow(clippy::cast_precision_loss)] // as Python's float()
            let x = match arg {
                Arg::Real(x) => *x,
                Arg::Integer(x) => *x as f64,
                _ => return Err(wrong()),
            };
            if matches!(ty, Type::Float32) {
                #[allow(clippy::cast_possible_truncation)] // f32 is the guest's choice
                Val::Float32(x as f32)
            } else {
                Val::Float64(x)
            }
        }
        Type::String => match arg {
            Arg::Text(bytes) => Val::String(
                String::from_utf8(bytes.clone())
                    .map_err(|_| format!("{}: invalid UTF-8", what()))?,
            ),
            _ => return Err(wrong()),
        },
        Type::List(list) if matches!(list.ty(), Type::U8) => match arg {
            Arg::Blob(bytes) => Val::List(bytes.iter().copied().map(Val::U8).collect()),
            _ => return Err(wrong()),
        },
        _ => return Err(wrong()),
    })
}

/// What a parameter of type `ty` takes, as `lower`'s errors say it.
fn expected(ty: &Type) -> &'static str {
    match ty {
        Type::Bool => "a bool",
        Type::Float32 | Type::Float64 => "a number",
        Type::String => "a str",
        Type::List(_) => "bytes",
        ty if is_integer(ty) => "an integer",
        _ => "a value of a type procedures can pass",
    }
}

/// A component's export found by interface and name, and its type.
pub fn export_type(
    component: &Component,
    interface: Option<&str>,
    name: &str,
) -> Option<ComponentFunc> {
    let engine = component.engine();
    let ty = component.component_type();
    let item = match interface {
        Some(i) => match ty.get_export(engine, i).map(|e| e.ty) {
            Some(ComponentItem::ComponentInstance(instance)) => {
                instance.get_export(engine, name).map(|e| e.ty)
            }
            _ => None,
        },
        None => ty.get_export(engine, name).map(|e| e.ty),
    };
    match item {
        Some(ComponentItem::ComponentFunc(func)) => Some(func),
        _ => None,
    }
}
