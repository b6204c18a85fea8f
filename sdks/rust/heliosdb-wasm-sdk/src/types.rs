//! Values, rows and errors: the WIT `types` interface as Rust types.

use std::fmt;

/// One SQL value (WIT `value`). With the `plugin` feature it has the JSON
/// form of docs/plugins.md §3: `"null"`, `{"integer": n}`, `{"text": s}`, ...
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Boolean(bool),
}

macro_rules! value_from {
    ($($t:ty => $case:ident as $as:ty),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$case(v as $as)
            }
        })*
    };
}
value_from!(i64 => Integer as i64, i32 => Integer as i64, u32 => Integer as i64,
            f64 => Real as f64, f32 => Real as f64);

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Boolean(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Blob(v.to_vec())
    }
}
impl From<Json> for Value {
    fn from(v: Json) -> Self {
        Value::Text(v.0)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A JSON result or argument (SQL `JSON`): the text of a JSON document.
#[derive(Clone, Debug, PartialEq)]
pub struct Json(pub String);

/// Converts a query's cell to a Rust type.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Option<Self>;
    const EXPECTED: &'static str;
}

impl FromValue for i64 {
    const EXPECTED: &'static str = "an integer";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Integer(i) => Some(*i),
            Value::Boolean(b) => Some(*b as i64),
            _ => None,
        }
    }
}
impl FromValue for f64 {
    const EXPECTED: &'static str = "a number";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Real(f) => Some(*f),
            Value::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }
}
impl FromValue for bool {
    const EXPECTED: &'static str = "a boolean";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Boolean(b) => Some(*b),
            Value::Integer(i) => Some(*i != 0),
            _ => None,
        }
    }
}
impl FromValue for String {
    const EXPECTED: &'static str = "text";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl FromValue for Vec<u8> {
    const EXPECTED: &'static str = "a blob";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}
impl FromValue for Value {
    const EXPECTED: &'static str = "a value";
    fn from_value(value: &Value) -> Option<Self> {
        Some(value.clone())
    }
}
impl<T: FromValue> FromValue for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A query result: column names and rows of values (WIT `rows`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub values: Vec<Vec<Value>>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Row `index`, if there is one.
    pub fn row(&self, index: usize) -> Option<RowRef<'_>> {
        self.values.get(index).map(|values| RowRef { columns: &self.columns, values })
    }

    pub fn first(&self) -> Option<RowRef<'_>> {
        self.row(0)
    }

    pub fn iter(&self) -> impl Iterator<Item = RowRef<'_>> {
        self.values.iter().map(|values| RowRef { columns: &self.columns, values })
    }
}

/// One row of a [`Rows`], with typed access by column name.
#[derive(Clone, Copy, Debug)]
pub struct RowRef<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl RowRef<'_> {
    /// The value of `column` as `T`; an `invalid-argument` error when the
    /// column is missing or holds another type (use `Option<T>` for NULLs).
    pub fn get<T: FromValue>(&self, column: &str) -> Result<T, Error> {
        let index = self
            .columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| Error::InvalidArgument(format!("no column {column:?}")))?;
        let value = &self.values[index];
        T::from_value(value).ok_or_else(|| {
            Error::InvalidArgument(format!("column {column:?} is {value:?}, not {}", T::EXPECTED))
        })
    }

    pub fn values(&self) -> &[Value] {
        self.values
    }
}

/// A struct whose `Vec` is a table result: `#[derive(Row)]`.
pub trait Row {
    fn columns() -> &'static [&'static str];
    fn into_values(self) -> Vec<Value>;
}

/// Every way a host call or a procedure can fail (WIT `error`).
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    AccessDenied(String),
    SqlError(String),
    Constraint(String),
    LimitExceeded(String),
    InvalidArgument(String),
    User { code: String, message: String },
}

impl Error {
    /// A user error: the call fails with `code` (machine-readable) and `message`.
    pub fn user(code: impl Into<String>, message: impl Into<String>) -> Self {
        Error::User { code: code.into(), message: message.into() }
    }

    /// The WIT error case: `access-denied`, `sql-error`, ..., `user-error`.
    pub fn case(&self) -> &'static str {
        match self {
            Error::AccessDenied(_) => "access-denied",
            Error::SqlError(_) => "sql-error",
            Error::Constraint(_) => "constraint",
            Error::LimitExceeded(_) => "limit-exceeded",
            Error::InvalidArgument(_) => "invalid-argument",
            Error::User { .. } => "user-error",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Error::AccessDenied(m)
            | Error::SqlError(m)
            | Error::Constraint(m)
            | Error::LimitExceeded(m)
            | Error::InvalidArgument(m) => m,
            Error::User { message, .. } => message,
        }
    }

    /// From a Basic-ABI status code (docs/abi.md §4) and message.
    #[cfg(not(feature = "component"))]
    pub(crate) fn from_status(status: i32, message: String) -> Self {
        match status {
            1 => Error::AccessDenied(message),
            3 => Error::Constraint(message),
            4 => Error::LimitExceeded(message),
            5 => Error::InvalidArgument(message),
            6 => Error::User { code: "user-error".into(), message },
            _ => Error::SqlError(message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::User { code, message } => write!(f, "{code}: {message}"),
            other => write!(f, "{}: {}", other.case(), other.message()),
        }
    }
}

impl std::error::Error for Error {}
