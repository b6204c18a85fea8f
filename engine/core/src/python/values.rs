//! A Python value as the SQL value it stands for: the one type dispatch
//! the binding's three ways into SQLite share (rows encoded for a guest,
//! statement parameters, a scalar's result). Each decides what it takes.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyFloat, PyInt, PyMemoryView, PyString};

/// What `values.to_sqlite` can give, told apart.
pub enum SqlValue<'a, 'py> {
    Null,
    Boolean(bool),
    Integer(i64),
    Real(f64),
    /// Left to the caller: text with a lone surrogate has no UTF-8 form,
    /// and only rows for a guest carry one (as "surrogatepass" bytes).
    Text(&'a Bound<'py, PyString>),
    Blob(&'a [u8]),
    /// bytearray or memoryview, copied.
    Buffer(Vec<u8>),
}

/// `value` as an SQL value; `None` for a type that is none of them.
///
/// # Errors
///
/// An int beyond 64 bits (OverflowError), a memoryview that cannot be read.
pub fn sql_value<'a, 'py>(value: &'a Bound<'py, PyAny>) -> PyResult<Option<SqlValue<'a, 'py>>> {
    Ok(Some(if value.is_none() {
        SqlValue::Null
    } else if let Ok(b) = value.cast::<PyBool>() {
        SqlValue::Boolean(b.is_true())
    } else if value.is_instance_of::<PyInt>() {
        SqlValue::Integer(value.extract()?)
    } else if let Ok(f) = value.cast::<PyFloat>() {
        SqlValue::Real(f.value())
    } else if let Ok(s) = value.cast::<PyString>() {
        SqlValue::Text(s)
    } else if let Ok(b) = value.cast::<PyBytes>() {
        SqlValue::Blob(b.as_bytes())
    } else if let Ok(b) = value.cast::<PyByteArray>() {
        SqlValue::Buffer(b.to_vec())
    } else if value.is_instance_of::<PyMemoryView>() {
        let bytes = value.py().get_type::<PyBytes>().call1((value,))?;
        SqlValue::Buffer(bytes.cast::<PyBytes>()?.as_bytes().to_vec())
    } else {
        return Ok(None);
    }))
}
