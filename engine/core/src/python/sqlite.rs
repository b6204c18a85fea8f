//! `Scalar`: a numeric procedure registered straight into SQLite.
//!
//! apsw calls a Python function per row with every value boxed; for a
//! numeric procedure that is most of the cost. The core is loaded once as an
//! SQLite extension of apsw's own SQLite (on a private connection, so no
//! user connection ever has extension loading on): the entry point only
//! keeps SQLite's routine table. `Scalar.bind` then registers the function
//! with `sqlite3_create_function_v2` on apsw's connection, and a row runs
//! here: SQLite values straight into the call's slots, the guest call from
//! the pool, the result straight back.
//!
//! Python is only entered for what needs it: finding the procedure's
//! `Numeric` on the first call (`acquire`), a failure (the typed error is
//! raised in Python and left pending, which apsw reports when the
//! statement fails, as it does for its own functions), and values the
//! numeric path does not take (text, out of range: they go to `slow`,
//! `Runner.call`, which converts or refuses them with the argument's name).

use std::ffi::{c_char, c_int, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use libsqlite3_sys as ffi;
use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat, PyString, PyTuple};
use wasmtime::ValRaw;

use super::numeric::{float_slot, slot_arg, Answer, Kind, Numeric, Param, Target};
use super::values::{sql_value, SqlValue};
use super::with_gil;
use crate::basic::Arg;

/// The name of the extension's entry point, for `Connection.load_extension`.
const ENTRY_POINT: &str = "sqlite3_heliosdbcore_init";

/// Whether SQLite's routine table has been handed to the entry point.
static READY: AtomicBool = AtomicBool::new(false);

/// The entry point SQLite calls when the core is loaded as an extension.
///
/// # Safety
///
/// Called by SQLite's `sqlite3_load_extension` with its routine table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_heliosdbcore_init(
    _db: *mut ffi::sqlite3,
    _err: *mut *mut c_char,
    api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    if api.is_null() {
        return ffi::SQLITE_ERROR;
    }
    // SAFETY: SQLite hands a valid routine table that outlives the process's
    // use of it (it is part of the SQLite library apsw keeps loaded).
    match unsafe { ffi::rusqlite_extension_init2(api) } {
        Ok(()) => {
            READY.store(true, Ordering::Release);
            ffi::SQLITE_OK
        }
        Err(_) => ffi::SQLITE_ERROR,
    }
}

/// The entry point's name: `conn.load_extension(_core.__file__, name)`.
#[pyfunction]
pub fn extension_entry_point() -> &'static str {
    ENTRY_POINT
}

/// Whether the core has SQLite's routine table (the extension was loaded).
#[pyfunction]
pub fn sqlite_ready() -> bool {
    READY.load(Ordering::Acquire)
}

struct ScalarInner {
    // Every parameter; `params` has their number kinds when no parameter
    // is a buffer (`buffers` false), and is empty otherwise.
    specs: Box<[Param]>,
    buffers: bool,
    params: Box<[Kind]>,
    result: Option<Kind>,
    // CALLED ON NULL INPUT: NULL arguments reach the guest as zeros.
    null_call: bool,
    // None: this version has no numeric path, every row is `slow`'s.
    target: Found<dyn Target>,
    slow: Py<PyAny>,
}

/// A procedure as SQLite calls it. `acquire()` returns the `Numeric` to
/// call (looked up on the first row, and again after `release()`), or None
/// to send every row to `slow(*args)` (`Runner.call`).
#[pyclass(module = "heliosdb_wasm._core", frozen)]
pub struct Scalar {
    inner: Arc<ScalarInner>,
}

#[pymethods]
impl Scalar {
    #[new]
    fn new(
        params: Vec<String>,
        result: Option<String>,
        null_call: bool,
        acquire: Py<PyAny>,
        slow: Py<PyAny>,
    ) -> PyResult<Self> {
        let specs = Param::parse_all(&params)?;
        let result = result.as_deref().map(Kind::parse).transpose()?;
        let kinds = Param::kinds(&specs);
        Ok(Self {
            inner: Arc::new(ScalarInner {
                buffers: kinds.is_none(),
                params: kinds.unwrap_or_default(),
                specs,
                result,
                null_call,
                target: Found::new(acquire),
                slow,
            }),
        })
    }

    /// Registers this as the SQL function `name` on the `sqlite3*` at
    /// `db` (apsw's `Connection.sqlite3_pointer()`), with one argument per
    /// parameter. apsw's `create_scalar_function(name, None, n)` removes it.
    fn bind(&self, db: usize, name: &str) -> PyResult<()> {
        let nargs = self.inner.specs.len();
        create_function(db, name, nargs, self.inner.clone(), Some(xfunc), None, None)
    }

    /// Forgets the `Numeric`: the next row asks `acquire` again (the
    /// procedure's Runner was replaced or removed).
    fn release(&self, py: Python<'_>) {
        self.inner.target.release(py);
    }
}

/// What an SQL function the core registered calls, found through Python's
/// `acquire()` on first use and kept until `release`: a target, or None —
/// Python serves every call (remembered too, until `release`).
pub(super) struct Found<T: ?Sized> {
    target: RwLock<Option<Arc<T>>>,
    python_only: AtomicBool,
    acquire: Py<PyAny>,
}

impl<T: ?Sized + Send + Sync> Found<T> {
    pub(super) fn new(acquire: Py<PyAny>) -> Self {
        Self {
            target: RwLock::new(None),
            python_only: AtomicBool::new(false),
            acquire,
        }
    }

    /// The target, asking `acquire()` (its answer made into a target by
    /// `take`) under the GIL the first time. Taken out of the lock for the
    /// call: a guest with host imports may call this very function again
    /// from its query, and `release` must never wait on a call in
    /// progress; and stored after the GIL is let go, so no thread waits for
    /// the lock while holding the GIL a call in progress may need.
    pub(super) fn get(
        &self,
        take: impl FnOnce(&Bound<'_, PyAny>) -> PyResult<Arc<T>>,
    ) -> PyResult<Option<Arc<T>>> {
        let found = self
            .target
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if found.is_some() || self.python_only.load(Ordering::Acquire) {
            return Ok(found);
        }
        let got = with_gil(|py| -> PyResult<Option<Arc<T>>> {
            let got = self.acquire.call0(py)?;
            if got.is_none(py) {
                self.python_only.store(true, Ordering::Release);
                return Ok(None);
            }
            take(got.bind(py)).map(Some)
        })?;
        if let Some(found) = &got {
            *self.target.write().unwrap_or_else(PoisonError::into_inner) = Some(found.clone());
        }
        Ok(got)
    }

    /// Forgets the target: the next call asks `acquire` again (the
    /// version's Runner was replaced or removed). Calls running keep theirs.
    pub(super) fn release(&self, py: Python<'_>) {
        // Without the GIL: a call in progress holds the lock and may need it.
        let old = py.detach(|| {
            self.target
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        });
        self.python_only.store(false, Ordering::Release);
        drop(old);
    }
}

/// Runs `call` (a guest call) without holding the GIL: released if apsw
/// kept it for this statement, so other threads run while the guest does.
pub(super) fn detached<R: Send>(call: impl FnOnce() -> R + Send) -> R {
    // SAFETY: PyGILState_Check only reads the thread state.
    if unsafe { pyo3::ffi::PyGILState_Check() } == 1 {
        with_gil(|py| py.detach(call))
    } else {
        call()
    }
}

/// An SQL function's callback: a row (scalar) or a group's row (aggregate).
pub(super) type RowCallback =
    unsafe extern "C" fn(*mut ffi::sqlite3_context, c_int, *mut *mut ffi::sqlite3_value);
/// An aggregate's end of a group.
pub(super) type FinalCallback = unsafe extern "C" fn(*mut ffi::sqlite3_context);

/// Registers the SQL function `name` of `nargs` arguments on the
/// `sqlite3*` at `db` (apsw's `Connection.sqlite3_pointer()`): a scalar
/// (`xfunc`) or an aggregate (`xstep`, `xfinal`), whose callbacks find
/// `data` as their user data. SQLite owns `data` from here and drops it
/// when the function is replaced or the connection closes.
pub(super) fn create_function<T: Send + Sync>(
    db: usize,
    name: &str,
    nargs: usize,
    data: Arc<T>,
    xfunc: Option<RowCallback>,
    xstep: Option<RowCallback>,
    xfinal: Option<FinalCallback>,
) -> PyResult<()> {
    if !sqlite_ready() {
        return Err(PyRuntimeError::new_err(
            "the core is not loaded as an SQLite extension",
        ));
    }
    let name = CString::new(name).map_err(|_| PyValueError::new_err("a NUL in the name"))?;
    let nargs = c_int::try_from(nargs).map_err(|_| PyValueError::new_err("too many parameters"))?;
    let data = Arc::into_raw(data).cast_mut().cast::<c_void>();
    // SAFETY: `db` is apsw's open connection, which the caller holds;
    // SQLite keeps `data` until it calls `destroy` (also on failure).
    let rc = unsafe {
        ffi::sqlite3_create_function_v2(
            db as *mut ffi::sqlite3,
            name.as_ptr(),
            nargs,
            ffi::SQLITE_UTF8,
            data,
            xfunc,
            xstep,
            xfinal,
            Some(destroy::<T>),
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(PyRuntimeError::new_err(format!(
            "sqlite3_create_function_v2 failed: code {rc}"
        )));
    }
    Ok(())
}

unsafe extern "C" fn destroy<T>(data: *mut c_void) {
    // SAFETY: `data` is the `Arc` that `create_function` leaked for SQLite.
    drop(unsafe { Arc::from_raw(data.cast::<T>().cast_const()) });
}

/// Runs `f` with the function's user data (a `T` registered by
/// `create_function`) and the call's arguments; a panic must not unwind
/// into SQLite, so it becomes the statement's error.
///
/// # Safety
///
/// `ctx` and `argv` (`argc` values) are the current call's, and the
/// function was registered with a `T`.
pub(super) unsafe fn guarded<T>(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
    f: impl FnOnce(&T, &[*mut ffi::sqlite3_value]),
) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the caller's contract.
        let data = unsafe { &*ffi::sqlite3_user_data(ctx).cast::<T>() };
        let args = if argc <= 0 || argv.is_null() {
            &[][..]
        } else {
            // SAFETY: as above.
            unsafe { std::slice::from_raw_parts(argv, argc as usize) }
        };
        f(data, args);
    }));
    if outcome.is_err() {
        // SAFETY: `ctx` is this call's context.
        unsafe {
            ffi::sqlite3_result_error(ctx, c"internal error in the procedure core".as_ptr(), -1)
        };
    }
}

unsafe extern "C" fn xfunc(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite's call of the function `bind` registered with a ScalarInner.
    unsafe {
        guarded(ctx, argc, argv, |scalar: &ScalarInner, args| {
            // SAFETY: `ctx` and `args` are this call's.
            row(scalar, ctx, args);
        });
    }
}

/// The slots (or, with buffers, the arguments) of one row, or why it
/// cannot take the core's path.
enum Lowered {
    /// `zeroed_null`: a NULL argument (CALLED ON NULL INPUT) is a zero.
    Slots {
        zeroed_null: bool,
    },
    Args(Vec<Arg>),
    Null,
    Slow,
}

/// `value` (of SQLite type `ty`, not NULL) as a number of `kind`, if it is
/// one exactly; None sends the row to `slow` (`Runner.call`), which
/// converts or refuses it with the argument's name.
///
/// # Safety
///
/// `value` is one of the current call's arguments.
pub(super) unsafe fn number_slot(
    kind: Kind,
    value: *mut ffi::sqlite3_value,
    ty: c_int,
) -> Option<ValRaw> {
    // SAFETY (all arms): reading the value as the type it has.
    Some(match (kind, ty) {
        (Kind::I64, ffi::SQLITE_INTEGER) => ValRaw::i64(unsafe { ffi::sqlite3_value_int64(value) }),
        // Out of range: `Runner.call` says so.
        (Kind::I32, ffi::SQLITE_INTEGER) => {
            ValRaw::i32(i32::try_from(unsafe { ffi::sqlite3_value_int64(value) }).ok()?)
        }
        (Kind::Bool, ffi::SQLITE_INTEGER) => {
            ValRaw::i32(i32::from(unsafe { ffi::sqlite3_value_int64(value) } != 0))
        }
        (Kind::F64 | Kind::F32, ffi::SQLITE_FLOAT) => {
            float_slot(kind, unsafe { ffi::sqlite3_value_double(value) })
        }
        #[allow(clippy::cast_precision_loss)] // float(int): round to nearest, as Python
        (Kind::F64 | Kind::F32, ffi::SQLITE_INTEGER) => {
            float_slot(kind, unsafe { ffi::sqlite3_value_int64(value) } as f64)
        }
        _ => return None,
    })
}

/// The arguments of a row whose parameters include buffers: numbers as
/// `lower` takes them, text that is valid UTF-8, blobs; in order, so a bad
/// argument before a NULL is still `Runner.call`'s error. A NULL is the
/// call's NULL result (RETURNS NULL ON NULL INPUT) or an `Arg::Null` the
/// guest can ask `heliosdb_get_param` about (CALLED ON NULL INPUT).
unsafe fn lower_args(scalar: &ScalarInner, args: &[*mut ffi::sqlite3_value]) -> Lowered {
    if args.len() != scalar.specs.len() {
        return Lowered::Slow;
    }
    let mut out = Vec::with_capacity(args.len());
    for (value, spec) in args.iter().zip(scalar.specs.iter()) {
        let value = *value;
        // SAFETY (all): `value` is one of this call's arguments, read as the
        // type it has; text and blob bytes are copied at once.
        let ty = unsafe { ffi::sqlite3_value_type(value) };
        if ty == ffi::SQLITE_NULL {
            if !scalar.null_call {
                return Lowered::Null; // RETURNS NULL ON NULL INPUT: no call
            }
            // CALLED ON NULL INPUT: the guest is told it is NULL.
            out.push(Arg::Null);
            continue;
        }
        out.push(match (spec, ty) {
            (Param::Text | Param::Json, ffi::SQLITE_TEXT) => {
                let bytes = unsafe { value_bytes(value, ffi::sqlite3_value_text(value)) };
                if std::str::from_utf8(bytes).is_err() {
                    return Lowered::Slow; // `Runner.call` says why
                }
                // What serde_json accepts Python's json.loads accepts too
                // (it refuses NaN, lone surrogates, deep nesting, which
                // Python takes): anything else is `Runner.call`'s to
                // accept or to refuse in Python's words.
                if *spec == Param::Json
                    && serde_json::from_slice::<serde_json::Value>(bytes).is_err()
                {
                    return Lowered::Slow;
                }
                Arg::Text(bytes.to_vec())
            }
            (Param::Blob, ffi::SQLITE_BLOB) => {
                let p = unsafe { ffi::sqlite3_value_blob(value) }.cast::<u8>();
                Arg::Blob(unsafe { value_bytes(value, p) }.to_vec())
            }
            (Param::Num(kind), _) => match unsafe { number_slot(*kind, value, ty) } {
                Some(slot) => slot_arg(*kind, slot),
                None => return Lowered::Slow,
            },
            _ => return Lowered::Slow,
        });
    }
    Lowered::Args(out)
}

/// The bytes SQLite holds for `value`, whose text or blob pointer is `p`.
///
/// # Safety
///
/// `p` is what sqlite3_value_text/blob just returned for `value`.
unsafe fn value_bytes<'v>(value: *mut ffi::sqlite3_value, p: *const u8) -> &'v [u8] {
    if p.is_null() {
        return &[];
    }
    // SAFETY: SQLite's `sqlite3_value_bytes` bytes at `p`.
    unsafe {
        let n = usize::try_from(ffi::sqlite3_value_bytes(value)).unwrap_or(0);
        std::slice::from_raw_parts(p, n)
    }
}

unsafe fn lower(
    scalar: &ScalarInner,
    args: &[*mut ffi::sqlite3_value],
    slots: &mut [ValRaw],
) -> Lowered {
    let mut zeroed_null = false;
    if args.len() != scalar.params.len() {
        return Lowered::Slow;
    }
    for ((value, kind), slot) in args.iter().zip(scalar.params.iter()).zip(slots.iter_mut()) {
        let value = *value;
        // SAFETY: `value` is one of this call's arguments.
        let ty = unsafe { ffi::sqlite3_value_type(value) };
        if ty == ffi::SQLITE_NULL {
            if !scalar.null_call {
                return Lowered::Null; // RETURNS NULL ON NULL INPUT: no call
            }
            zeroed_null = true;
            *slot = ValRaw::i64(0);
            continue;
        }
        // SAFETY: one of this call's arguments, of type `ty`.
        match unsafe { number_slot(*kind, value, ty) } {
            Some(number) => *slot = number,
            None => return Lowered::Slow,
        }
    }
    Lowered::Slots { zeroed_null }
}

/// The procedure's `Numeric` (`acquire()`'s answer) as the target of
/// `scalar`, whose signature it must have.
fn numeric_of(scalar: &ScalarInner, got: &Bound<'_, PyAny>) -> PyResult<Arc<dyn Target>> {
    let inner = got.cast::<Numeric>()?.get().inner.clone();
    if inner.specs() != scalar.specs || inner.result() != scalar.result {
        return Err(PyTypeError::new_err(
            "the Numeric's signature differs from the Scalar's",
        ));
    }
    Ok(inner)
}

unsafe fn row(
    scalar: &ScalarInner,
    ctx: *mut ffi::sqlite3_context,
    args: &[*mut ffi::sqlite3_value],
) {
    let mut slots = [ValRaw::i64(0); 16];
    if args.len() > slots.len() {
        // SAFETY: this call's context and arguments.
        return unsafe { slow(scalar, ctx, args) };
    }
    // Checked in order before anything else, as `Runner.call` does: a
    // bad argument before a NULL is still an error.
    // SAFETY: this call's arguments.
    let lowered = unsafe {
        if scalar.buffers {
            lower_args(scalar, args)
        } else {
            lower(scalar, args, &mut slots)
        }
    };
    let (zeroed_null, buffers) = match lowered {
        Lowered::Null => return unsafe { ffi::sqlite3_result_null(ctx) },
        Lowered::Slow => return unsafe { slow(scalar, ctx, args) },
        Lowered::Slots { zeroed_null } => (zeroed_null, None),
        Lowered::Args(values) => (false, Some(values)),
    };
    let target = match scalar.target.get(|got| numeric_of(scalar, got)) {
        Ok(Some(target)) => target,
        // SAFETY (both): this call's context and arguments.
        Ok(None) => return unsafe { slow(scalar, ctx, args) },
        Err(err) => return with_gil(|py| unsafe { pending(py, ctx, err) }),
    };
    let buffers = if zeroed_null && !target.zeros_for_nulls() {
        // The guest may ask heliosdb_get_param whether it is NULL: it is
        // told, the call goes by arguments.
        Some(
            args.iter()
                .zip(scalar.params.iter())
                .zip(slots.iter())
                .map(|((value, kind), slot)| {
                    // SAFETY: one of this call's arguments.
                    if unsafe { ffi::sqlite3_value_type(*value) } == ffi::SQLITE_NULL {
                        Arg::Null
                    } else {
                        slot_arg(*kind, *slot)
                    }
                })
                .collect(),
        )
    } else {
        buffers
    };
    let slots = &mut slots[..target.slots()];
    let call = || match buffers {
        Some(values) => target.call_args(values, slots),
        None => target.call_slots(slots),
    };
    let outcome = detached(call);
    match outcome {
        // SAFETY (both): this call's context.
        Ok(Answer::Slot) => unsafe { set_result(ctx, target.result(), slots[0]) },
        Ok(Answer::Null) => unsafe { ffi::sqlite3_result_null(ctx) },
        // SAFETY (both): this call's context.
        Ok(Answer::Text(text)) => unsafe { result_text(ctx, &text) },
        Ok(Answer::Bytes(bytes)) => unsafe { result_blob(ctx, &bytes) },
        Ok(Answer::Value(value)) => with_gil(|py| {
            // SAFETY: this call's context.
            if let Err(err) = unsafe { result_from_python(ctx, value.bind(py)) } {
                unsafe { pending(py, ctx, err) };
            }
        }),
        Err(failure) => with_gil(|py| {
            let err = target.exception(py, failure, None);
            // SAFETY: this call's context.
            unsafe { pending(py, ctx, err) }
        }),
    }
}

pub(super) unsafe fn set_result(ctx: *mut ffi::sqlite3_context, kind: Option<Kind>, slot: ValRaw) {
    // SAFETY (all arms): `ctx` is this call's context.
    unsafe {
        match kind {
            Some(Kind::I64) => ffi::sqlite3_result_int64(ctx, slot.get_i64()),
            Some(Kind::I32) => ffi::sqlite3_result_int64(ctx, i64::from(slot.get_i32())),
            // values.to_sqlite: a boolean is 0 or 1
            Some(Kind::Bool) => ffi::sqlite3_result_int64(ctx, i64::from(slot.get_i32() != 0)),
            Some(Kind::F64) => ffi::sqlite3_result_double(ctx, f64::from_bits(slot.get_f64())),
            Some(Kind::F32) => {
                ffi::sqlite3_result_double(ctx, f64::from(f32::from_bits(slot.get_f32())));
            }
            None => ffi::sqlite3_result_null(ctx),
        }
    }
}

/// `text` as the call's result (SQLite copies it).
///
/// # Safety
///
/// `ctx` is the current call's context.
unsafe fn result_text(ctx: *mut ffi::sqlite3_context, text: &str) {
    // SAFETY: the caller's context; SQLITE_TRANSIENT makes SQLite copy.
    unsafe {
        ffi::sqlite3_result_text64(
            ctx,
            text.as_ptr().cast(),
            text.len() as u64,
            ffi::SQLITE_TRANSIENT(),
            ffi::SQLITE_UTF8 as u8,
        );
    }
}

/// `bytes` as the call's result (SQLite copies them).
///
/// # Safety
///
/// `ctx` is the current call's context.
unsafe fn result_blob(ctx: *mut ffi::sqlite3_context, bytes: &[u8]) {
    // SAFETY: as `result_text`.
    unsafe {
        ffi::sqlite3_result_blob64(
            ctx,
            bytes.as_ptr().cast(),
            bytes.len() as u64,
            ffi::SQLITE_TRANSIENT(),
        );
    }
}

/// `err` as the statement's error, left pending for apsw to raise (it
/// prefers a pending exception to SQLite's message).
pub(super) unsafe fn pending(py: Python<'_>, ctx: *mut ffi::sqlite3_context, err: PyErr) {
    let text = err
        .value(py)
        .str()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let text = CString::new(text.replace('\0', " ")).unwrap_or_default();
    // SAFETY: this call's context; SQLite copies the message.
    unsafe { ffi::sqlite3_result_error(ctx, text.as_ptr(), -1) };
    err.restore(py);
}

/// The whole row through `slow(*args)`, under the GIL.
unsafe fn slow(
    scalar: &ScalarInner,
    ctx: *mut ffi::sqlite3_context,
    args: &[*mut ffi::sqlite3_value],
) {
    with_gil(|py| {
        let outcome = (|| -> PyResult<()> {
            let values = args
                .iter()
                // SAFETY: this call's arguments.
                .map(|v| unsafe { to_python(py, *v) })
                .collect::<PyResult<Vec<_>>>()?;
            let out = scalar.slow.call1(py, PyTuple::new(py, values)?)?;
            // SAFETY: this call's context.
            unsafe { result_from_python(ctx, out.bind(py)) }
        })();
        if let Err(err) = outcome {
            // SAFETY: this call's context.
            unsafe { pending(py, ctx, err) };
        }
    });
}

pub(super) unsafe fn to_python(
    py: Python<'_>,
    value: *mut ffi::sqlite3_value,
) -> PyResult<Py<PyAny>> {
    // SAFETY (all arms): reading the value as the type it has; SQLite's
    // text and blob pointers stay valid until the value changes, and are
    // copied here.
    unsafe {
        Ok(match ffi::sqlite3_value_type(value) {
            ffi::SQLITE_INTEGER => ffi::sqlite3_value_int64(value)
                .into_pyobject(py)?
                .into_any()
                .unbind(),
            ffi::SQLITE_FLOAT => PyFloat::new(py, ffi::sqlite3_value_double(value))
                .into_any()
                .unbind(),
            ffi::SQLITE_TEXT => {
                let p = ffi::sqlite3_value_text(value);
                let n = usize::try_from(ffi::sqlite3_value_bytes(value)).unwrap_or(0);
                let bytes = if p.is_null() {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(p, n)
                };
                PyString::from_bytes(py, bytes)?.into_any().unbind()
            }
            ffi::SQLITE_BLOB => {
                let p = ffi::sqlite3_value_blob(value).cast::<u8>();
                let n = usize::try_from(ffi::sqlite3_value_bytes(value)).unwrap_or(0);
                let bytes = if p.is_null() {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(p, n)
                };
                PyBytes::new(py, bytes).into_any().unbind()
            }
            _ => py.None(),
        })
    }
}

/// A value of the types `values.to_sqlite` gives as the SQL result.
pub(super) unsafe fn result_from_python(
    ctx: *mut ffi::sqlite3_context,
    value: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = value.py();
    let found = sql_value(value).map_err(|err| {
        if err.is_instance_of::<PyOverflowError>(py) {
            PyOverflowError::new_err("the result does not fit in 64 bits")
        } else {
            err
        }
    })?;
    // SAFETY (all arms): `ctx` is this call's context; SQLite copies text
    // and blobs (SQLITE_TRANSIENT).
    unsafe {
        match found {
            Some(SqlValue::Null) => ffi::sqlite3_result_null(ctx),
            Some(SqlValue::Boolean(b)) => ffi::sqlite3_result_int64(ctx, i64::from(b)),
            Some(SqlValue::Integer(x)) => ffi::sqlite3_result_int64(ctx, x),
            Some(SqlValue::Real(x)) => ffi::sqlite3_result_double(ctx, x),
            Some(SqlValue::Text(s)) => result_text(ctx, s.to_str()?),
            Some(SqlValue::Blob(bytes)) => result_blob(ctx, bytes),
            // values.to_sqlite gives a result as bytes, never a buffer.
            Some(SqlValue::Buffer(_)) | None => {
                return Err(PyTypeError::new_err(format!(
                    "a procedure result cannot be a {}",
                    value.get_type().name()?
                )));
            }
        }
    }
    Ok(())
}
