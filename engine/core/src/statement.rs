//! A procedure's SQL statement run on the caller's SQLite connection: one
//! statement, its parameters bound, its rows handed to a [`RowSink`] as
//! they come and counted against the procedure's row and byte limits.
//!
//! The connection's authorizer, progress handler and length limit are set
//! by whoever calls this (today `hostapi.CallContext`); this owns the
//! statement itself. SQLite's API comes from the routine table the core got
//! as an extension of apsw's SQLite (`python::sqlite`).

use std::ffi::{c_int, CStr};
use std::ptr;

use libsqlite3_sys as ffi;

/// What a result cell costs against `max_result_bytes` besides its text or
/// blob bytes (its tag and length, or its number): `hostapi.CELL_BYTES`.
pub const CELL_BYTES: usize = 8;

/// A value to bind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bind<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

pub use crate::encoding::RowSink;

/// Why a statement failed, classified as the host's typed errors are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The authorizer denied something (the denied grant is the
    /// authorizer's to name).
    Auth(String),
    Constraint(String),
    /// Another connection holds a lock past the busy timeout.
    Busy(String),
    /// The progress handler stopped it (the deadline), or someone called
    /// sqlite3_interrupt.
    Interrupt(String),
    /// A string or blob over SQLite's length limit (`max_value_bytes`).
    TooBig(String),
    /// The parameters do not fit the statement.
    Bindings(String),
    /// The text holds more than one statement.
    Several,
    TooManyRows(usize),
    TooManyBytes(usize),
    Sql(String),
}

impl Failure {
    /// The name Python maps to a typed error (`hostapi._statement`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Auth(_) => "auth",
            Self::Constraint(_) => "constraint",
            Self::Busy(_) => "busy",
            Self::Interrupt(_) => "interrupt",
            Self::TooBig(_) => "toobig",
            Self::Bindings(_) => "bindings",
            Self::Several => "several",
            Self::TooManyRows(_) => "max_query_rows",
            Self::TooManyBytes(_) => "max_result_bytes",
            Self::Sql(_) => "sql",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::Auth(m)
            | Self::Constraint(m)
            | Self::Busy(m)
            | Self::Interrupt(m)
            | Self::TooBig(m)
            | Self::Bindings(m)
            | Self::Sql(m) => m.clone(),
            Self::Several => "one statement per query/execute call; got several".into(),
            Self::TooManyRows(max) => {
                format!("the query returned more than max_query_rows ({max}) rows")
            }
            Self::TooManyBytes(max) => format!(
                "the query returned more than max_result_bytes ({max}) bytes \
                 (text and blob bytes, {CELL_BYTES} per cell)"
            ),
        }
    }
}

/// The limits on what one statement may return.
#[derive(Debug, Clone, Copy)]
pub struct RowLimits {
    pub max_rows: usize,
    pub max_bytes: usize,
}

/// Finalizes the statement whatever happens.
struct Stmt(*mut ffi::sqlite3_stmt);

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: a statement this module prepared and nobody else holds.
        unsafe { ffi::sqlite3_finalize(self.0) };
    }
}

/// The connection's current error as a [`Failure`].
///
/// # Safety
///
/// `db` is an open connection.
unsafe fn failure(db: *mut ffi::sqlite3, rc: c_int) -> Failure {
    // SAFETY: `db` is open; SQLite's message stays valid until the next call.
    let message = unsafe {
        let p = ffi::sqlite3_errmsg(db);
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    match rc & 0xff {
        ffi::SQLITE_AUTH => Failure::Auth(message),
        ffi::SQLITE_CONSTRAINT => Failure::Constraint(message),
        ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED => Failure::Busy(message),
        ffi::SQLITE_INTERRUPT => Failure::Interrupt(message),
        ffi::SQLITE_TOOBIG => Failure::TooBig(message),
        ffi::SQLITE_RANGE => Failure::Bindings(message),
        _ => Failure::Sql(message),
    }
}

/// Prepares the first statement of `sql[offset..]`; `None` when only
/// whitespace and comments are left. Returns the offset after it.
unsafe fn prepare(
    db: *mut ffi::sqlite3,
    sql: &[u8],
    offset: usize,
) -> Result<(Option<Stmt>, usize), Failure> {
    let rest = &sql[offset..];
    let len = c_int::try_from(rest.len())
        .map_err(|_| Failure::TooBig("the SQL text is too long".into()))?;
    let mut stmt = ptr::null_mut();
    let mut tail = ptr::null();
    // SAFETY: `rest` is `len` valid bytes (SQLite reads no further); `db`
    // is open.
    let rc = unsafe {
        ffi::sqlite3_prepare_v2(db, rest.as_ptr().cast(), len, &raw mut stmt, &raw mut tail)
    };
    if rc != ffi::SQLITE_OK {
        // SAFETY: `db` is open.
        return Err(unsafe { failure(db, rc) });
    }
    let used = if tail.is_null() {
        rest.len()
    } else {
        // SAFETY: SQLite's tail points into `rest`.
        usize::try_from(unsafe { tail.cast::<u8>().offset_from(rest.as_ptr()) })
            .unwrap_or(rest.len())
    };
    Ok(((!stmt.is_null()).then_some(Stmt(stmt)), offset + used))
}

/// Runs the one statement in `sql` with `params`, its rows into `sink`;
/// the number of rows changed (`sqlite3_changes`).
///
/// # Errors
///
/// Every [`Failure`]; rows already handed to `sink` are the caller's to drop.
///
/// # Safety
///
/// `db` is an open connection that no other thread uses meanwhile (SQLite
/// serializes it; the caller holds it as part of a call on it).
pub unsafe fn run(
    db: *mut ffi::sqlite3,
    sql: &str,
    params: &[Bind<'_>],
    limits: RowLimits,
    sink: &mut (impl RowSink + ?Sized),
) -> Result<i64, Failure> {
    // SAFETY: the caller's contract.
    unsafe { run_with(db, sql, params, limits, sink, None) }
}

/// [`run`], reusing a statement prepared before from `cache` under the
/// same `key` (the policy it was authorized under, which `owner` keeps
/// alive) and leaving a read-only one there for the next time.
///
/// # Errors
///
/// As [`run`].
///
/// # Safety
///
/// As [`run`]; `cache` holds statements of `db` only.
pub unsafe fn run_cached(
    db: *mut ffi::sqlite3,
    sql: &str,
    params: &[Bind<'_>],
    limits: RowLimits,
    sink: &mut (impl RowSink + ?Sized),
    cache: &StatementCache,
    key: CacheKey,
) -> Result<i64, Failure> {
    // SAFETY: the caller's contract.
    unsafe { run_with(db, sql, params, limits, sink, Some((cache, key))) }
}

unsafe fn run_with(
    db: *mut ffi::sqlite3,
    sql: &str,
    params: &[Bind<'_>],
    limits: RowLimits,
    sink: &mut (impl RowSink + ?Sized),
    cache: Option<(&StatementCache, CacheKey)>,
) -> Result<i64, Failure> {
    if let Some((cache, key)) = &cache {
        if let Some(entry) = cache.take(sql, key) {
            // Known to be one statement, authorized under this key.
            // SAFETY: a statement of `db` (the cache's contract).
            let outcome = unsafe { execute(db, entry.stmt.0, params, limits, sink) };
            cache.put(entry);
            return outcome;
        }
    }
    let text = sql.as_bytes();
    // SAFETY: `db` is open (the caller's contract).
    let (stmt, after) = unsafe { prepare(db, text, 0)? };
    let Some(stmt) = stmt else {
        sink.columns(&mut std::iter::empty());
        return Ok(0); // only comments: nothing to run, as apsw
    };
    // SAFETY: `stmt` is prepared on `db`, alive until the end of this function.
    let changes = unsafe { execute(db, stmt.0, params, limits, sink)? };
    // A second statement in the text is refused before it runs.
    // SAFETY: `db` is open.
    if let (Some(_next), _) = unsafe { prepare(db, text, after)? } {
        return Err(Failure::Several);
    }
    match cache {
        // SAFETY: `stmt` is a live statement of `db`.
        Some((cache, key)) if unsafe { ffi::sqlite3_stmt_readonly(stmt.0) } != 0 => {
            cache.insert(sql, key, stmt);
        }
        _ => drop(stmt),
    }
    Ok(changes)
}

/// Binds `params`, steps `stmt` to the end with its rows into `sink`, and
/// resets it (bindings cleared) for another run.
///
/// # Safety
///
/// `stmt` is a statement of the open connection `db`, not running.
unsafe fn execute(
    db: *mut ffi::sqlite3,
    stmt: *mut ffi::sqlite3_stmt,
    params: &[Bind<'_>],
    limits: RowLimits,
    sink: &mut (impl RowSink + ?Sized),
) -> Result<i64, Failure> {
    struct Reset(*mut ffi::sqlite3_stmt);
    impl Drop for Reset {
        fn drop(&mut self) {
            // SAFETY: the statement `execute` ran; resetting a statement
            // that failed is how it is made reusable.
            unsafe {
                ffi::sqlite3_reset(self.0);
                ffi::sqlite3_clear_bindings(self.0);
            }
        }
    }
    let _reset = Reset(stmt);
    // SAFETY: `stmt` is prepared on `db` (the caller's contract).
    unsafe { bind(db, stmt, params)? };
    // SAFETY: as above.
    let ncols = unsafe { ffi::sqlite3_column_count(stmt) };
    // Borrowed from the statement, and only until the sink has copied them.
    sink.columns(&mut (0..ncols).map(|i| {
        // SAFETY: a column index of this statement.
        let p = unsafe { ffi::sqlite3_column_name(stmt, i) };
        if p.is_null() {
            &[][..]
        } else {
            // SAFETY: a NUL-terminated name SQLite keeps while the
            // statement lives, which outlasts this call.
            unsafe { CStr::from_ptr(p).to_bytes() }
        }
    }));
    let width = usize::try_from(ncols).unwrap_or(0);
    let (mut rows, mut size) = (0usize, 0usize);
    loop {
        // SAFETY: as above.
        let rc = unsafe { ffi::sqlite3_step(stmt) };
        if rc == ffi::SQLITE_DONE {
            break;
        }
        if rc != ffi::SQLITE_ROW {
            // SAFETY: `db` is open.
            return Err(unsafe { failure(db, rc) });
        }
        if rows == limits.max_rows {
            return Err(Failure::TooManyRows(limits.max_rows));
        }
        size += CELL_BYTES * width;
        for i in 0..ncols {
            // SAFETY: a column of the current row; pointers read before the
            // next call on the statement.
            unsafe {
                match ffi::sqlite3_column_type(stmt, i) {
                    ffi::SQLITE_INTEGER => sink.integer(ffi::sqlite3_column_int64(stmt, i)),
                    ffi::SQLITE_FLOAT => sink.real(ffi::sqlite3_column_double(stmt, i)),
                    ffi::SQLITE_TEXT => {
                        let bytes = column_bytes(stmt, i, ffi::sqlite3_column_text(stmt, i));
                        size += bytes.len();
                        sink.text(bytes);
                    }
                    ffi::SQLITE_BLOB => {
                        let p = ffi::sqlite3_column_blob(stmt, i).cast::<u8>();
                        let bytes = column_bytes(stmt, i, p);
                        size += bytes.len();
                        sink.blob(bytes);
                    }
                    _ => sink.null(),
                }
            }
        }
        // Counted as they come, so the host never holds more of them than
        // the guest may receive.
        if size > limits.max_bytes {
            return Err(Failure::TooManyBytes(limits.max_bytes));
        }
        sink.end_row();
        rows += 1;
    }
    // SAFETY: `db` is open.
    Ok(i64::from(unsafe { ffi::sqlite3_changes(db) }))
}

/// What a cached statement was authorized under: an identity of the
/// policy's inputs (its grants, whether the call was read-only), and the
/// value whose life keeps that identity from being reused.
#[derive(Clone)]
pub struct CacheKey {
    pub id: (usize, bool),
    pub owner: std::sync::Arc<dyn std::any::Any + Send + Sync>,
}

struct Entry {
    sql: Box<str>,
    id: (usize, bool),
    _owner: std::sync::Arc<dyn std::any::Any + Send + Sync>,
    stmt: Stmt,
    generation: u64,
}

/// Read-only statements of one connection, prepared (and authorized) once
/// and run again by the procedures' queries: SQLite re-prepares one itself
/// when the schema changes, under the authorizer then in place (the same
/// policy: statements only run inside their procedure's bounds).
///
/// A statement is taken out while it runs (a procedure's query may call a
/// procedure that runs the same text) and put back after. `clear` drops
/// every one: the set of procedures changed (the authorizer's answers for
/// a function call may differ), or the connection is about to close
/// (SQLite does not close a connection with statements outstanding).
pub struct StatementCache {
    inner: std::sync::Mutex<(Vec<Entry>, u64)>,
    enabled: std::sync::atomic::AtomicBool,
}

/// Statements kept per connection.
const CACHED: usize = 32;

// SAFETY: a statement is only used by whoever took it out of the cache,
// one at a time; SQLite serializes the connection it belongs to.
unsafe impl Send for Entry {}

impl Default for StatementCache {
    fn default() -> Self {
        Self {
            inner: std::sync::Mutex::new((Vec::new(), 0)),
            enabled: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl StatementCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<Entry>, u64)> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take(&self, sql: &str, key: &CacheKey) -> Option<Entry> {
        let mut inner = self.lock();
        let at = inner
            .0
            .iter()
            .position(|e| e.id == key.id && &*e.sql == sql)?;
        Some(inner.0.remove(at))
    }

    fn put(&self, entry: Entry) {
        let mut inner = self.lock();
        // Cleared while it ran: it goes.
        if entry.generation == inner.1 {
            inner.0.insert(0, entry);
            inner.0.truncate(CACHED);
        }
    }

    /// Turns caching on or off (off: nothing is kept; off by default).
    pub fn enable(&self, on: bool) {
        self.enabled.store(on, std::sync::atomic::Ordering::Release);
        if !on {
            self.clear();
        }
    }

    fn insert(&self, sql: &str, key: CacheKey, stmt: Stmt) {
        if !self.enabled.load(std::sync::atomic::Ordering::Acquire) {
            return; // dropped: finalized
        }
        let generation = self.lock().1;
        self.put(Entry {
            sql: sql.into(),
            id: key.id,
            _owner: key.owner,
            stmt,
            generation,
        });
    }

    /// Finalizes every statement (those running are dropped when they end).
    pub fn clear(&self) {
        let dropped = {
            let mut inner = self.lock();
            inner.1 += 1;
            std::mem::take(&mut inner.0)
        };
        drop(dropped);
    }

    pub fn len(&self) -> usize {
        self.lock().0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The bytes of column `i` of the current row, whose text or blob pointer
/// SQLite returned as `p` (NULL for an empty value).
///
/// # Safety
///
/// `p` is what sqlite3_column_text/blob just returned for that column; the
/// slice is read before the next call on the statement.
unsafe fn column_bytes<'s>(stmt: *mut ffi::sqlite3_stmt, i: c_int, p: *const u8) -> &'s [u8] {
    if p.is_null() {
        return &[];
    }
    // SAFETY: SQLite's value of `sqlite3_column_bytes` bytes at `p`.
    unsafe {
        let n = usize::try_from(ffi::sqlite3_column_bytes(stmt, i)).unwrap_or(0);
        std::slice::from_raw_parts(p, n)
    }
}

unsafe fn bind(
    db: *mut ffi::sqlite3,
    stmt: *mut ffi::sqlite3_stmt,
    params: &[Bind<'_>],
) -> Result<(), Failure> {
    // SAFETY: a prepared statement.
    let wanted = usize::try_from(unsafe { ffi::sqlite3_bind_parameter_count(stmt) }).unwrap_or(0);
    if wanted != params.len() {
        return Err(Failure::Bindings(format!(
            "the statement takes {wanted} parameter(s), {} were given",
            params.len()
        )));
    }
    for (i, param) in params.iter().enumerate() {
        let index = c_int::try_from(i + 1).unwrap_or(c_int::MAX);
        // SAFETY: `index` is a parameter of `stmt`; text and blobs are
        // copied by SQLite (SQLITE_TRANSIENT).
        let rc = unsafe {
            match *param {
                Bind::Null => ffi::sqlite3_bind_null(stmt, index),
                Bind::Integer(x) => ffi::sqlite3_bind_int64(stmt, index, x),
                Bind::Real(x) => ffi::sqlite3_bind_double(stmt, index, x),
                Bind::Text(t) => ffi::sqlite3_bind_text64(
                    stmt,
                    index,
                    t.as_ptr().cast(),
                    t.len() as u64,
                    ffi::SQLITE_TRANSIENT(),
                    ffi::SQLITE_UTF8 as u8,
                ),
                Bind::Blob(b) => ffi::sqlite3_bind_blob64(
                    stmt,
                    index,
                    b.as_ptr().cast(),
                    b.len() as u64,
                    ffi::SQLITE_TRANSIENT(),
                ),
            }
        };
        if rc != ffi::SQLITE_OK {
            // SAFETY: `db` is open.
            return Err(unsafe { failure(db, rc) });
        }
    }
    Ok(())
}
