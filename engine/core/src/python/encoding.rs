//! The Basic ABI's encodings (`crate::encoding`) for Python: the one
//! implementation both engines use while host functions still run in
//! Python (`values.decode_params`, `values.encode_rows` call these).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyList, PySequence, PyString};

use super::runtime::core_error;
use super::values::{sql_value, SqlValue};
use crate::encoding::{decode_params as decode, Param, RowsWriter};

/// A guest's parameter list as Python values (None, int, float, str,
/// bytes, bool); `CoreError("abi-error", ...)` for a malformed one.
#[pyfunction]
pub fn decode_params<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
    let params = decode(data).map_err(|e| core_error("abi-error", e.to_string()))?;
    let out = PyList::empty(py);
    for param in params {
        let value: Bound<'py, PyAny> = match param {
            Param::Null => py.None().into_bound(py),
            Param::Integer(x) => x.into_pyobject(py)?.into_any(),
            Param::Real(x) => PyFloat::new(py, x).into_any(),
            Param::Text(s) => PyString::new(py, s).into_any(),
            Param::Blob(b) => PyBytes::new(py, b).into_any(),
            Param::Boolean(b) => PyBool::new(py, b).to_owned().into_any(),
        };
        out.append(value)?;
    }
    Ok(out)
}

/// `columns` and `rows` (sequences of SQL values) in the rows encoding.
#[pyfunction]
pub fn encode_rows<'py>(
    py: Python<'py>,
    columns: Vec<String>,
    rows: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut w = RowsWriter::new(columns.iter().map(String::as_bytes));
    let rows = rows.cast::<PySequence>()?;
    for row in rows.try_iter()? {
        let row = row?;
        let mut width = 0;
        for value in row.try_iter()? {
            cell(&mut w, &value?)?;
            width += 1;
        }
        if width != columns.len() {
            return Err(PyValueError::new_err(format!(
                "a row of {width} value(s) for {} column(s)",
                columns.len()
            )));
        }
        w.end_row();
    }
    Ok(PyBytes::new(py, &w.finish()))
}

fn cell(w: &mut RowsWriter, value: &Bound<'_, PyAny>) -> PyResult<()> {
    match sql_value(value)? {
        Some(SqlValue::Null) => w.null(),
        Some(SqlValue::Boolean(b)) => w.boolean(b),
        Some(SqlValue::Integer(x)) => w.integer(x),
        Some(SqlValue::Real(x)) => w.real(x),
        Some(SqlValue::Text(s)) => match s.to_str() {
            Ok(text) => w.text(text.as_bytes()),
            // A lone surrogate (text SQLite held as invalid UTF-8): its
            // bytes as Python's "surrogatepass" writes them.
            Err(_) => {
                let raw = s.call_method1("encode", ("utf-8", "surrogatepass"))?;
                w.text(raw.cast::<PyBytes>()?.as_bytes());
            }
        },
        Some(SqlValue::Blob(b)) => w.blob(b),
        Some(SqlValue::Buffer(b)) => w.blob(&b),
        None => {
            return Err(PyTypeError::new_err(format!(
                "cannot encode a {} value",
                value.get_type().name()?
            )))
        }
    }
    Ok(())
}
