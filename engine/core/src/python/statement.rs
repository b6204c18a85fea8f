//! `run_statement`: a procedure's SQL statement on apsw's connection
//! (`crate::statement`), for `hostapi.CallContext`. The statement runs
//! without the GIL; apsw's authorizer and progress handler, which Python
//! set on the connection for this statement, take it themselves.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat, PyList, PyString, PyTuple};

use super::runtime::core_error;
use super::values::{sql_value, SqlValue};
use crate::encoding::{decode_params, Param, RowsWriter};
use crate::statement::{run, Bind, RowLimits, RowSink};

create_exception!(
    _core,
    SqlFailure,
    PyException,
    "A procedure's statement failed. args: (kind, message); kind is one of \
     auth, constraint, busy, interrupt, toobig, bindings, several, \
     max_query_rows, max_result_bytes, sql."
);

enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

#[derive(Default)]
struct Collect {
    columns: Vec<String>,
    cells: Vec<Cell>,
}

impl RowSink for Collect {
    fn columns(&mut self, names: &[&[u8]]) {
        self.columns = names
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
    }
    fn null(&mut self) {
        self.cells.push(Cell::Null);
    }
    fn integer(&mut self, x: i64) {
        self.cells.push(Cell::Integer(x));
    }
    fn real(&mut self, x: f64) {
        self.cells.push(Cell::Real(x));
    }
    fn text(&mut self, utf8: &[u8]) {
        self.cells.push(Cell::Text(utf8.to_vec()));
    }
    fn blob(&mut self, bytes: &[u8]) {
        self.cells.push(Cell::Blob(bytes.to_vec()));
    }
    fn end_row(&mut self) {}
}

/// A bound value from Python (already `values.to_sqlite`-checked).
enum Owned {
    Null,
    Integer(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

fn owned(value: &Bound<'_, PyAny>) -> PyResult<Owned> {
    Ok(match sql_value(value)? {
        Some(SqlValue::Null) => Owned::Null,
        Some(SqlValue::Boolean(b)) => Owned::Integer(i64::from(b)),
        Some(SqlValue::Integer(x)) => Owned::Integer(x),
        Some(SqlValue::Real(x)) => Owned::Real(x),
        Some(SqlValue::Text(s)) => Owned::Text(s.to_str()?.as_bytes().to_vec()),
        Some(SqlValue::Blob(b)) => Owned::Blob(b.to_vec()),
        Some(SqlValue::Buffer(b)) => Owned::Blob(b),
        None => {
            return Err(PyTypeError::new_err(format!(
                "SQLite cannot bind a value of type {}",
                value.get_type().name()?
            )))
        }
    })
}

/// Runs the one statement `sql` with `params` on the `sqlite3*` at `db`:
/// `(columns, rows, changes)`, or `SqlFailure(kind, message)`.
#[pyfunction]
#[pyo3(signature = (db, sql, params, max_rows, max_bytes))]
pub fn run_statement<'py>(
    py: Python<'py>,
    db: usize,
    sql: &str,
    params: Vec<Bound<'py, PyAny>>,
    max_rows: usize,
    max_bytes: usize,
) -> PyResult<(Vec<String>, Bound<'py, PyList>, i64)> {
    if !super::sqlite::sqlite_ready() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "the core is not loaded as an SQLite extension (native.load_sqlite_api)",
        ));
    }
    let owned = params.iter().map(owned).collect::<PyResult<Vec<_>>>()?;
    let binds: Vec<Bind<'_>> = owned
        .iter()
        .map(|o| match o {
            Owned::Null => Bind::Null,
            Owned::Integer(x) => Bind::Integer(*x),
            Owned::Real(x) => Bind::Real(*x),
            Owned::Text(t) => Bind::Text(t),
            Owned::Blob(b) => Bind::Blob(b),
        })
        .collect();
    let mut sink = Collect::default();
    let limits = RowLimits {
        max_rows,
        max_bytes,
    };
    // SAFETY: `db` is apsw's open connection, which the caller holds for
    // this call (it runs inside one of its statements or its own call).
    let outcome = py.detach(|| unsafe { run(db as *mut _, sql, &binds, limits, &mut sink) });
    // An exception a Python callback of the connection raised meanwhile
    // (the authorizer, the progress handler) is the statement's error.
    if let Some(err) = PyErr::take(py) {
        return Err(err);
    }
    let changes = match outcome {
        Ok(changes) => changes,
        Err(failure) => return Err(SqlFailure::new_err((failure.kind(), failure.message()))),
    };
    let width = sink.columns.len();
    let rows = PyList::empty(py);
    if width > 0 {
        for chunk in sink.cells.chunks(width) {
            let mut values: Vec<Bound<'py, PyAny>> = Vec::with_capacity(width);
            for cell in chunk {
                values.push(match cell {
                    Cell::Null => py.None().into_bound(py),
                    Cell::Integer(x) => x.into_pyobject(py)?.into_any(),
                    Cell::Real(x) => PyFloat::new(py, *x).into_any(),
                    // As apsw gives text: invalid UTF-8 is an error there too.
                    Cell::Text(t) => PyString::from_bytes(py, t)?.into_any(),
                    Cell::Blob(b) => PyBytes::new(py, b).into_any(),
                });
            }
            rows.append(PyTuple::new(py, values)?)?;
        }
    }
    Ok((sink.columns, rows, changes))
}

/// [`run_statement`] for the Basic ABI: the parameters as the guest encoded
/// them (docs/abi.md §5) and the rows encoded for it (§6), with no Python
/// value in between: `(rows, changes)`. A malformed parameter list is
/// `CoreError("abi-error", ...)`, raised before the statement is prepared.
#[pyfunction]
#[pyo3(signature = (db, sql, params, max_rows, max_bytes))]
pub fn run_statement_encoded<'py>(
    py: Python<'py>,
    db: usize,
    sql: &str,
    params: &[u8],
    max_rows: usize,
    max_bytes: usize,
) -> PyResult<(Bound<'py, PyBytes>, i64)> {
    if !super::sqlite::sqlite_ready() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "the core is not loaded as an SQLite extension (native.load_sqlite_api)",
        ));
    }
    let decoded = decode_params(params).map_err(|e| core_error("abi-error", e.to_string()))?;
    let binds: Vec<Bind<'_>> = decoded
        .iter()
        .map(|p| match *p {
            Param::Null => Bind::Null,
            Param::Integer(x) => Bind::Integer(x),
            Param::Real(x) => Bind::Real(x),
            Param::Text(t) => Bind::Text(t.as_bytes()),
            Param::Blob(b) => Bind::Blob(b),
            Param::Boolean(b) => Bind::Integer(i64::from(b)),
        })
        .collect();
    let mut rows = RowsWriter::new(std::iter::empty());
    let limits = RowLimits {
        max_rows,
        max_bytes,
    };
    // SAFETY: as in `run_statement`.
    let outcome = py.detach(|| unsafe { run(db as *mut _, sql, &binds, limits, &mut rows) });
    if let Some(err) = PyErr::take(py) {
        return Err(err);
    }
    match outcome {
        Ok(changes) => Ok((PyBytes::new(py, &rows.finish()), changes)),
        Err(failure) => Err(SqlFailure::new_err((failure.kind(), failure.message()))),
    }
}
