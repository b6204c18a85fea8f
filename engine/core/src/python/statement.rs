//! A procedure's SQL statement on apsw's connection (`crate::statement`)
//! under the connection's gate (`crate::gate`): its policy, deadline and
//! length limit. Used by `Gate.run`/`Gate.run_encoded` (components, through
//! `hostapi.CallContext`) and by the Basic ABI's query and execute host
//! functions, which run it with no Python at all. The statement runs
//! without the GIL.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat, PyList, PyString, PyTuple};

use std::sync::Arc;
use std::time::Instant;

use super::policy::GuestPolicy;
use super::values::{sql_value, SqlValue};
use crate::encoding::{decode_params, Param, RowsWriter};
use crate::gate::Gate;
use crate::statement::{run_cached, Bind, Failure, RowLimits, RowSink};

create_exception!(
    _core,
    SqlFailure,
    PyException,
    "A procedure's statement failed. args: (kind, message, own_deadline); \
     kind is one of timeout (the deadline passed: own_deadline says whose), \
     auth, constraint, busy, interrupt, toobig, bindings, several, \
     max_query_rows, max_result_bytes, sql, abi-error (a malformed encoded \
     parameter list)."
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

/// What bounds one guest statement.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    /// The calling procedure's deadline.
    pub deadline: Instant,
    pub max_value_bytes: usize,
    pub rows: RowLimits,
}

/// Why a statement did not complete: `SqlFailure`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub kind: &'static str,
    pub message: String,
    pub own_deadline: bool,
}

impl Refused {
    pub fn into_py(self) -> PyErr {
        SqlFailure::new_err((self.kind, self.message, self.own_deadline))
    }
}

/// Runs the one statement `sql` under `policy` and `scope` on the gate's
/// connection, its rows into `sink`: the rows changed.
///
/// # Errors
///
/// What refused it; an interrupt after the deadline is `timeout`.
pub fn bounded(
    gate: &Gate,
    policy: Arc<GuestPolicy>,
    scope: Scope,
    sql: &str,
    binds: &[Bind<'_>],
    sink: &mut impl RowSink,
) -> Result<i64, Refused> {
    let db = gate.db();
    let key = policy.cache_key();
    let (outcome, deadline) = gate.bounded(policy, scope.deadline, scope.max_value_bytes, || {
        // SAFETY: `db` is the gate's open connection; the caller runs this
        // inside a call on it. The cache is the gate's, of `db`.
        unsafe { run_cached(db, sql, binds, scope.rows, sink, &gate.statements, key) }
    });
    let refused = |kind, message| Refused {
        kind,
        message,
        own_deadline: deadline.own,
    };
    match outcome {
        None => Err(refused("timeout", String::new())),
        Some(Ok(changes)) => Ok(changes),
        Some(Err(Failure::Interrupt(m))) if deadline.expired() => Err(refused("timeout", m)),
        Some(Err(failure)) => Err(refused(failure.kind(), failure.message())),
    }
}

/// [`bounded`] for the Basic ABI: the parameters as the guest encoded them
/// (docs/abi.md §5) and the rows encoded for it (§6).
///
/// # Errors
///
/// As [`bounded`]; a malformed parameter list is `abi-error`, found before
/// the statement is prepared.
pub fn bounded_encoded(
    gate: &Gate,
    policy: Arc<GuestPolicy>,
    scope: Scope,
    sql: &str,
    params: &[u8],
) -> Result<(Vec<u8>, i64), Refused> {
    let decoded = decode_params(params).map_err(|e| Refused {
        kind: "abi-error",
        message: e.to_string(),
        own_deadline: true,
    })?;
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
    let changes = bounded(gate, policy, scope, sql, &binds, &mut rows)?;
    Ok((rows.finish(), changes))
}

/// [`bounded`] with Python values: `(columns, rows, changes)`.
pub fn bounded_py<'py>(
    py: Python<'py>,
    gate: &Gate,
    policy: Arc<GuestPolicy>,
    scope: Scope,
    sql: &str,
    params: &[Bound<'py, PyAny>],
) -> PyResult<(Vec<String>, Bound<'py, PyList>, i64)> {
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
    let outcome = py.detach(|| bounded(gate, policy, scope, sql, &binds, &mut sink));
    // An exception a Python callback raised meanwhile (a nested
    // procedure, through apsw) is the statement's error.
    if let Some(err) = PyErr::take(py) {
        return Err(err);
    }
    let changes = outcome.map_err(Refused::into_py)?;
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
