//! Aggregates (SingleStore's `CREATE AGGREGATE`) registered straight into
//! SQLite: `AggregateFunction` is the SQL function, `Aggregate` the core's
//! own run of one, for a module that imports nothing or WASI only, whose
//! roles take and return numbers.
//!
//! SQLite keeps each group's state in its aggregate context. Here that is
//! an instance pinned from the version's pool for the group's rows, and the
//! state INITIALIZE returned, kept as the raw wasm value it is: a HANDLE
//! into guest memory never leaves the core, and a value state is never
//! converted either. Every role call has a call's budget (fuel, deadline),
//! counts as one call in the version's tally and fails as any call does
//! (`fault`, the typed error). A row whose values are not the exact numbers
//! the guest takes goes to `coerce`, Python's rules and messages, which
//! may also skip it (a Basic-ABI aggregate skips a row with a NULL, as
//! PostgreSQL does for a strict transition function).
//!
//! A module that imports host functions (or WASI, its output granted as
//! log lines) has each role call in a hosted call's bracket (`host`, a
//! `Numeric.hosted` of the module's pool: depth, policy, its host functions
//! served, its log lines, typed failures). An aggregate the core cannot run
//! (a state or argument that needs Python's lifting) gets a Python group
//! per group instead
//! (`invoke.Aggregate`: `step(*args)`, `final()`, `abandon()`), driven from
//! here as apsw would.
//!
//! SQLite calls `xFinal` for every group, also to clean up when the
//! statement failed (an error in a row, an interrupt): a group whose row
//! failed calls DESTROY and hands its instance back without TERMINATE, and
//! no Python is called while the statement's error is pending.

use std::ffi::c_int;
use std::ptr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libsqlite3_sys as ffi;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use wasmtime::{ExternType, ValRaw};

use super::hosted::{BasicGuest, Hosted};
use super::numeric::{
    failure_exception, to_slot, Failure, Kind, Numeric, Tally, TallyInner, Target,
};
use super::pinned::{Pinned, Pool};
use super::runtime::core_error;
use super::sqlite::{
    create_function, detached, guarded, number_slot, pending, result_from_python, set_result,
    to_python, Found,
};
use super::with_gil;
use crate::basic::{Arg, Lower};
use crate::typed::{Export, NumType};

/// Arguments up to this many are lowered on the stack (the state takes a
/// slot too); a wider aggregate still works, allocating per row.
const INLINE_SLOTS: usize = 16;

/// One version's aggregate as the core runs it.
pub struct AggregateInner {
    pool: Pool,
    initialize: Export,
    iterate: Export,
    terminate: Export,
    destroy: Option<Export>,
    params: Box<[Kind]>,
    result: Kind,
    tally: Arc<TallyInner>,
    // fault(code, message, limit, frames, seconds, row) -> the exception
    fault: Py<PyAny>,
    // coerce(args) -> the row's values as exact numbers, None to skip the
    // row, or raises the typed error
    coerce: Py<PyAny>,
    // A module with host imports (or WASI output granted): each role call
    // in a hosted call's bracket (`hosted.rs`), its host functions served.
    host: Option<Arc<dyn Target>>,
    // Per argument, the range a small integer (u8, s8, u16, s16) must be
    // in to be exact; a value outside goes to `coerce`, whose error it is.
    ranges: Box<[Option<(i64, i64)>]>,
}

/// A numeric aggregate of a module that imports nothing (`module`, a
/// `Module`) or a `BasicPool` of one with imports: WASI only, for a guest
/// granted no `stdout` (its output is only read for allocation failures),
/// else with `host` serving its calls: `roles` are the exports
/// of INITIALIZE, ITERATE, TERMINATE and DESTROY (or None), `params` the
/// kinds ITERATE takes after the state, `result` TERMINATE's. The state's
/// type is whatever single number INITIALIZE returns; every role must
/// agree with it.
#[pyclass(module = "heliosdb_wasm._core", frozen)]
pub struct Aggregate {
    inner: Arc<AggregateInner>,
}

#[pymethods]
impl Aggregate {
    #[new]
    #[allow(clippy::too_many_arguments)] // one version's roles, limits and hooks
    #[pyo3(signature = (module, roles, params, result, limits, tally, fault, coerce, host=None, ranges=None))]
    fn new(
        module: &Bound<'_, PyAny>,
        roles: (String, String, String, Option<String>),
        params: Vec<String>,
        result: &str,
        limits: &Bound<'_, PyDict>,
        tally: &Tally,
        fault: Py<PyAny>,
        coerce: Py<PyAny>,
        host: Option<PyRef<'_, Numeric>>,
        ranges: Option<Vec<Option<(i64, i64)>>>,
    ) -> PyResult<Self> {
        let pool = Pool::from_py(module, limits)?;
        let host = host.map(|numeric| numeric.inner.clone());
        if host.as_ref().is_some_and(|h| h.basic_host().is_none()) {
            return Err(PyValueError::new_err(
                "an aggregate's host is a Numeric.hosted of a BasicPool",
            ));
        }
        let module = pool.module().clone();
        let (params, result) = Kind::signature(&params, Some(result))?;
        let result = result.expect("a result kind was given");
        let ranges = ranges.unwrap_or_else(|| vec![None; params.len()]);
        if ranges.len() != params.len()
            || ranges
                .iter()
                .zip(params.iter())
                .any(|(r, k)| r.is_some() && *k != Kind::I32)
        {
            return Err(PyValueError::new_err(format!(
                "{} range(s) for {} parameter(s): one for each, an i32's only",
                ranges.len(),
                params.len()
            )));
        }
        let (initialize, iterate, terminate, destroy) = roles;
        let abi = |role: &str, name: &str, message: String| {
            core_error("abi-error", format!("{role} WITH {name}: {message}"))
        };
        let state = match module.get_export(&initialize) {
            Some(ExternType::Func(ty)) => {
                let results: Vec<_> = ty.results().collect();
                match results.as_slice() {
                    [one] => NumType::of(one),
                    _ => None,
                }
            }
            _ => None,
        }
        .ok_or_else(|| {
            abi(
                "INITIALIZE",
                &initialize,
                "not an exported function returning one number".into(),
            )
        })?;
        let export = |role: &str, name: &str, params: &[NumType], results: &[NumType]| {
            Export::new(&module, name, params, results).map_err(|e| abi(role, name, e.to_string()))
        };
        let mut iterate_params = vec![state];
        iterate_params.extend(params.iter().map(|k| k.wasm()));
        let inner = AggregateInner {
            initialize: export("INITIALIZE", &initialize, &[], &[state])?,
            iterate: export("ITERATE", &iterate, &iterate_params, &[state])?,
            terminate: export("TERMINATE", &terminate, &[state], &[result.wasm()])?,
            destroy: destroy
                .map(|name| export("DESTROY", &name, &[state], &[]))
                .transpose()?,
            pool,
            params,
            result,
            tally: tally.inner.clone(),
            fault,
            coerce,
            host,
            ranges: ranges.into(),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Instances waiting for reuse in the pool.
    #[getter]
    fn idle_instances(&self) -> usize {
        self.inner.pool.idle_count()
    }

    /// Instances created since the pool was built.
    #[getter]
    fn instantiated(&self) -> usize {
        self.inner.pool.instantiated_count()
    }
}

/// A role call through `host`'s bracket (it counts the call in the tally):
/// the export by name, its arguments the numbers in `slots`.
fn hosted_role(
    host: &Hosted<BasicGuest>,
    instance: &mut Pinned,
    export: &Export,
    slots: &mut [ValRaw],
) -> Result<(), Failure> {
    let Some(instance) = instance.basic_mut() else {
        return Err(Failure::Raised(PyValueError::new_err(
            "a hosted aggregate's instances come from a BasicPool",
        )));
    };
    let mut lowering = Vec::with_capacity(export.params().len());
    let mut args = Vec::with_capacity(export.params().len());
    for (ty, slot) in export.params().iter().zip(slots.iter()) {
        let (lower, arg) = match ty {
            NumType::I32 => (Lower::I32, Arg::Integer(slot.get_i32().into())),
            NumType::I64 => (Lower::I64, Arg::Integer(slot.get_i64())),
            NumType::F32 => (Lower::F32, Arg::Real(f32::from_bits(slot.get_f32()).into())),
            NumType::F64 => (Lower::F64, Arg::Real(f64::from_bits(slot.get_f64()))),
        };
        lowering.push(lower);
        args.push(arg);
    }
    host.call_on(instance, export.name(), &lowering, args, slots)
}

/// A group the core runs: its pinned instance once INITIALIZE ran, and the
/// state.
struct Group {
    target: Arc<AggregateInner>,
    instance: Option<Pinned>,
    state: ValRaw,
}

impl AggregateInner {
    /// One role call on `instance`, counted in the tally when it succeeds.
    fn run(
        &self,
        instance: &mut Pinned,
        export: &Export,
        slots: &mut [ValRaw],
    ) -> Result<(), Failure> {
        if let Some(host) = self.host.as_deref().and_then(Target::basic_host) {
            return hosted_role(host, instance, export, slots);
        }
        let started = self.tally.time_next().then(Instant::now);
        let outcome = instance.call(export, slots);
        let elapsed = started.map(|started| started.elapsed());
        match outcome {
            Ok(()) => {
                self.tally.count_call(elapsed);
                Ok(())
            }
            Err(error) => Err(Failure::Call {
                error,
                elapsed: elapsed.unwrap_or_default(),
            }),
        }
    }

    fn exception(&self, py: Python<'_>, failure: Failure) -> PyErr {
        failure_exception(py, &self.fault, failure, None)
    }
}

impl Group {
    fn new(target: Arc<AggregateInner>) -> Self {
        Self {
            target,
            instance: None,
            state: ValRaw::i64(0),
        }
    }

    /// INITIALIZE on an instance from the pool, unless it ran.
    fn start(&mut self) -> Result<(), Failure> {
        if self.instance.is_none() {
            let target = &*self.target;
            let mut instance = target.pool.acquire().map_err(|error| Failure::Call {
                error,
                elapsed: Duration::ZERO,
            })?;
            let mut slots = [ValRaw::i64(0)];
            // A failed INITIALIZE drops the instance: poisoned, or refused
            // before the guest ran (as good as new, but rare).
            target.run(&mut instance, &target.initialize, &mut slots)?;
            self.state = slots[0];
            self.instance = Some(instance);
        }
        Ok(())
    }

    /// ITERATE with the row's arguments in `slots[1..]` (`slots[0]` takes
    /// the state).
    fn step(&mut self, slots: &mut [ValRaw]) -> Result<(), Failure> {
        self.start()?;
        slots[0] = self.state;
        let target = &*self.target;
        let instance = self.instance.as_mut().expect("started");
        let outcome = target.run(instance, &target.iterate, slots);
        if outcome.is_err() && instance.is_poisoned() {
            self.instance = None; // never handed back
        }
        outcome?;
        self.state = slots[0];
        Ok(())
    }

    /// TERMINATE, then DESTROY; the instance goes back to the pool (unless
    /// a role failed it) and the group is done.
    fn finish(&mut self) -> Result<ValRaw, Failure> {
        self.start()?;
        let mut instance = self.instance.take().expect("started");
        let target = &*self.target;
        let mut slots = [self.state];
        let outcome = target
            .run(&mut instance, &target.terminate, &mut slots)
            .and_then(|()| self.destroy_on(&mut instance));
        target.pool.release(instance);
        outcome.map(|()| slots[0])
    }

    /// After a failed row, or when SQLite cleans up a statement that
    /// failed: DESTROY (its own failure is not reported: the statement's
    /// error is) and the instance back to the pool if it is still sound.
    fn abandon(&mut self) {
        if let Some(mut instance) = self.instance.take() {
            if !instance.is_poisoned() && self.destroy_on(&mut instance).is_ok() {
                self.target.pool.release(instance);
            }
        }
    }

    fn destroy_on(&self, instance: &mut Pinned) -> Result<(), Failure> {
        match &self.target.destroy {
            Some(destroy) => {
                let mut slots = [self.state];
                self.target.run(instance, destroy, &mut slots)
            }
            None => Ok(()),
        }
    }
}

/// What a group is: the core's, or a Python group (`invoke.Aggregate`).
enum GroupState {
    Core(Group),
    Python(Py<PyAny>),
}

/// What SQLite's aggregate context holds: the group, made by its first
/// row, and whether a row of it failed.
struct Context {
    group: Option<GroupState>,
    failed: bool,
}

struct FunctionInner {
    // None: the core cannot run this version, every group is a Python group.
    target: Found<AggregateInner>,
    group: Py<PyAny>,
}

/// An aggregate as SQLite calls it. `acquire()` returns the `Aggregate` to
/// run each group with (asked at the first group, and again after
/// `release()`), or None: every group is `group()`, a Python group.
#[pyclass(module = "heliosdb_wasm._core", frozen)]
pub struct AggregateFunction {
    inner: Arc<FunctionInner>,
}

#[pymethods]
impl AggregateFunction {
    #[new]
    fn new(acquire: Py<PyAny>, group: Py<PyAny>) -> Self {
        Self {
            inner: Arc::new(FunctionInner {
                target: Found::new(acquire),
                group,
            }),
        }
    }

    /// Registers this as the aggregate `name` of `nargs` arguments on the
    /// `sqlite3*` at `db` (apsw's `Connection.sqlite3_pointer()`).
    fn bind(&self, db: usize, name: &str, nargs: usize) -> PyResult<()> {
        let data = self.inner.clone();
        create_function(db, name, nargs, data, None, Some(xstep), Some(xfinal))
    }

    /// Forgets the `Aggregate`: the next group asks `acquire` again (the
    /// version's Runner was replaced or removed). Groups running keep the
    /// one they started with.
    fn release(&self, py: Python<'_>) {
        self.inner.target.release(py);
    }
}

/// The group's `Context` in SQLite's aggregate context, made on its first
/// row (`allocate`), or null: no row reached this group, or (`allocate`
/// false) SQLite is out of memory.
///
/// # Safety
///
/// `ctx` is the current call's context.
unsafe fn context(ctx: *mut ffi::sqlite3_context, allocate: bool) -> *mut *mut Context {
    let size = if allocate {
        c_int::try_from(std::mem::size_of::<*mut Context>()).unwrap_or(c_int::MAX)
    } else {
        0
    };
    // SAFETY: this call's context; SQLite zeroes new memory, so the slot
    // starts null.
    unsafe { ffi::sqlite3_aggregate_context(ctx, size) }.cast::<*mut Context>()
}

/// A new group: the core's, or a Python one.
fn new_group(function: &FunctionInner) -> PyResult<GroupState> {
    let target = function
        .target
        .get(|got| Ok(got.cast::<Aggregate>()?.get().inner.clone()))?;
    match target {
        Some(target) => Ok(GroupState::Core(Group::new(target))),
        None => with_gil(|py| Ok(GroupState::Python(function.group.call0(py)?))),
    }
}

unsafe extern "C" fn xstep(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite's call of the function `bind` registered.
    unsafe {
        guarded(ctx, argc, argv, |function: &FunctionInner, args| {
            // SAFETY: this call's context and arguments.
            step(function, ctx, args);
        });
    }
}

unsafe fn step(
    function: &FunctionInner,
    ctx: *mut ffi::sqlite3_context,
    args: &[*mut ffi::sqlite3_value],
) {
    // SAFETY: this call's context.
    let slot = unsafe { context(ctx, true) };
    if slot.is_null() {
        // SAFETY: this call's context.
        return unsafe { ffi::sqlite3_result_error_nomem(ctx) };
    }
    // SAFETY: `slot` points at this group's pointer, null until its first
    // row made the `Context` below (and freed only by `xfinal`).
    let context = unsafe {
        if (*slot).is_null() {
            *slot = Box::into_raw(Box::new(Context {
                group: None,
                failed: false,
            }));
        }
        &mut **slot
    };
    if context.failed {
        return; // SQLite stops at a failed row; nothing more to do
    }
    if context.group.is_none() {
        match new_group(function) {
            Ok(group) => context.group = Some(group),
            Err(err) => {
                context.failed = true;
                // SAFETY: this call's context.
                return with_gil(|py| unsafe { pending(py, ctx, err) });
            }
        }
    }
    let failed = match context.group.as_mut().expect("made above") {
        // SAFETY: this call's context and arguments.
        GroupState::Core(group) => unsafe { core_step(group, ctx, args) },
        // SAFETY: as above.
        GroupState::Python(group) => unsafe { python_step(group, ctx, args) },
    };
    if failed {
        context.failed = true;
        if let Some(GroupState::Core(group)) = &mut context.group {
            group.abandon();
        }
    }
}

/// One row of a core group; true if it failed (its error set on `ctx`).
unsafe fn core_step(
    group: &mut Group,
    ctx: *mut ffi::sqlite3_context,
    args: &[*mut ffi::sqlite3_value],
) -> bool {
    let target = group.target.clone();
    let width = target.params.len() + 1;
    let mut inline = [ValRaw::i64(0); INLINE_SLOTS];
    let mut spilled = Vec::new();
    let slots: &mut [ValRaw] = if width <= INLINE_SLOTS {
        &mut inline[..width]
    } else {
        spilled.resize(width, ValRaw::i64(0));
        &mut spilled
    };
    let mut exact = args.len() == target.params.len();
    if exact {
        let params = target.params.iter().zip(target.ranges.iter());
        for ((value, (kind, range)), slot) in args.iter().zip(params).zip(&mut slots[1..]) {
            // SAFETY: one of this call's arguments, read as the type it has.
            let number = unsafe {
                let ty = ffi::sqlite3_value_type(*value);
                if ty == ffi::SQLITE_NULL {
                    None
                } else {
                    number_slot(*kind, *value, ty)
                }
            };
            let fits = |n: &ValRaw| {
                range.is_none_or(|(lo, hi)| (lo..=hi).contains(&i64::from(n.get_i32())))
            };
            match number {
                Some(number) if fits(&number) => *slot = number,
                _ => {
                    exact = false;
                    break;
                }
            }
        }
    }
    if !exact {
        // SAFETY: this call's arguments.
        match unsafe { coerced(&target, args, &mut slots[1..]) } {
            Ok(true) => {}
            Ok(false) => return false, // the row is skipped
            Err(err) => {
                // SAFETY: this call's context.
                with_gil(|py| unsafe { pending(py, ctx, err) });
                return true;
            }
        }
    }
    match detached(|| group.step(slots)) {
        Ok(()) => false,
        Err(failure) => {
            with_gil(|py| {
                let err = target.exception(py, failure);
                // SAFETY: this call's context.
                unsafe { pending(py, ctx, err) }
            });
            true
        }
    }
}

/// A row through `coerce`: its values as exact numbers in `slots` (true),
/// or the row skipped (false).
unsafe fn coerced(
    target: &AggregateInner,
    args: &[*mut ffi::sqlite3_value],
    slots: &mut [ValRaw],
) -> PyResult<bool> {
    with_gil(|py| {
        let values = args
            .iter()
            // SAFETY: this call's arguments.
            .map(|v| unsafe { to_python(py, *v) })
            .collect::<PyResult<Vec<_>>>()?;
        let row = target.coerce.call1(py, (PyTuple::new(py, values)?,))?;
        if row.is_none(py) {
            return Ok(false);
        }
        let row = row.bind(py);
        if row.len()? != target.params.len() {
            return Err(PyValueError::new_err(format!(
                "coerce gave {} value(s) for {} parameter(s)",
                row.len()?,
                target.params.len()
            )));
        }
        for (i, (slot, kind)) in slots.iter_mut().zip(target.params.iter()).enumerate() {
            *slot = to_slot(&row.get_item(i)?, *kind)?;
        }
        Ok(true)
    })
}

/// One row of a Python group; true if it failed.
unsafe fn python_step(
    group: &Py<PyAny>,
    ctx: *mut ffi::sqlite3_context,
    args: &[*mut ffi::sqlite3_value],
) -> bool {
    with_gil(|py| {
        let outcome = (|| -> PyResult<()> {
            let values = args
                .iter()
                // SAFETY: this call's arguments.
                .map(|v| unsafe { to_python(py, *v) })
                .collect::<PyResult<Vec<_>>>()?;
            group.call_method1(py, "step", PyTuple::new(py, values)?)?;
            Ok(())
        })();
        match outcome {
            Ok(()) => false,
            Err(err) => {
                // SAFETY: this call's context.
                unsafe { pending(py, ctx, err) };
                true
            }
        }
    })
}

unsafe extern "C" fn xfinal(ctx: *mut ffi::sqlite3_context) {
    // SAFETY: SQLite's call of the function `bind` registered.
    unsafe {
        guarded(
            ctx,
            0,
            std::ptr::null_mut(),
            |function: &FunctionInner, _| {
                // SAFETY: this call's context.
                finish(function, ctx);
            },
        );
    }
}

unsafe fn finish(function: &FunctionInner, ctx: *mut ffi::sqlite3_context) {
    // SAFETY: this call's context.
    let slot = unsafe { context(ctx, false) };
    // SAFETY: a non-null slot holds null or the `Context` `step` made, which
    // is taken here, once: SQLite calls xFinal once per group.
    let taken = if slot.is_null() {
        None
    } else {
        let raw = unsafe { std::mem::replace(&mut *slot, ptr::null_mut()) };
        (!raw.is_null()).then(|| unsafe { Box::from_raw(raw) })
    };
    let (group, failed) = match taken {
        Some(context) => (context.group, context.failed),
        // No row reached this group: INITIALIZE then TERMINATE, as
        // SingleStore does; unless the statement failed already.
        None if slot.is_null() => {
            if with_gil(PyErr::occurred) {
                return;
            }
            match new_group(function) {
                Ok(group) => (Some(group), false),
                // SAFETY: this call's context.
                Err(err) => return with_gil(|py| unsafe { pending(py, ctx, err) }),
            }
        }
        // The first row failed before its group was made.
        None => (None, true),
    };
    match group {
        None => {}
        Some(GroupState::Core(mut group)) if failed => group.abandon(),
        Some(GroupState::Core(mut group)) => {
            let target = group.target.clone();
            match detached(|| group.finish()) {
                // SAFETY: this call's context.
                Ok(state) => unsafe { set_result(ctx, Some(target.result), state) },
                Err(failure) => with_gil(|py| {
                    // Cleaning up after the statement failed: its error
                    // stands, this one is dropped (and not counted).
                    if PyErr::occurred(py) {
                        return;
                    }
                    let err = target.exception(py, failure);
                    // SAFETY: this call's context.
                    unsafe { pending(py, ctx, err) }
                }),
            }
        }
        Some(GroupState::Python(group)) => with_gil(|py| {
            // An error pending is the statement's: kept while the group
            // lets its instance go.
            let pending_error = PyErr::take(py);
            if failed || pending_error.is_some() {
                if let Err(err) = group.call_method0(py, "abandon") {
                    err.write_unraisable(py, None);
                }
                if let Some(err) = pending_error {
                    err.restore(py);
                }
                return;
            }
            let outcome = group
                .call_method0(py, "final")
                // SAFETY: this call's context.
                .and_then(|value| unsafe { result_from_python(ctx, value.bind(py)) });
            if let Err(err) = outcome {
                // SAFETY: this call's context.
                unsafe { pending(py, ctx, err) };
            }
        }),
    }
}
