//! The core's hold on one SQLite connection: the authorizer, installed
//! once and answering with the policy of whatever statement is being
//! prepared, and the bounds of procedures' statements — the deadline
//! through the progress handler and `max_value_bytes` through SQLite's
//! length limit — innermost last.
//!
//! Installing an authorizer expires every prepared statement, so it is
//! installed once per connection and the policy behind it changes instead.
//! The gate lives as long as the connection: SQLite owns a reference to it
//! (`sqlite3_set_clientdata`) and drops it when the connection closes, so
//! the callbacks never see a freed gate whoever closes the connection when.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use libsqlite3_sys as ffi;

use crate::policy::{registry_access, DENY, OK};
use crate::statement::StatementCache;

/// SQLite calls a guest statement's progress handler every this many
/// virtual-machine steps. Measured on a loop of the cheapest opcodes:
/// +2.4 % (+0.6 % at 10 000), with calls about 0.1 ms apart, so a deadline
/// is noticed within a millisecond of SQLite work. Opcodes working on values
/// near `max_value_bytes` are slower (instr or LIKE on 16 MB, ~1 ms each):
/// a statement made of those can overrun its deadline by about a second.
pub const PROGRESS_STEPS: c_int = 1000;

/// `sqlite3_set_clientdata` came with 3.44.0.
const MIN_SQLITE: c_int = 3_044_000;

/// The client-data key the gate is kept under.
const KEY: &CStr = c"heliosdb_wasm.gate";

/// A policy deciding the authorizer's actions (sqlite3.h's codes and
/// strings, `OK` or `DENY`).
pub trait Policy: Send + Sync {
    fn authorize(
        &self,
        action: i32,
        p1: Option<&str>,
        p2: Option<&str>,
        db: Option<&str>,
        trigger: Option<&str>,
    ) -> i32;
}

/// What one guest statement may spend of its connection.
#[derive(Debug, Clone, Copy)]
struct Bound {
    deadline: Instant,
    max_value_bytes: c_int,
    // The length limit before this bound, put back when it ends.
    previous_length: c_int,
    // The deadline is the procedure's own, not a calling procedure's.
    own_deadline: bool,
}

/// The deadline a bounded statement ran under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
    /// The deadline is the procedure's own, not a calling procedure's.
    pub own: bool,
}

impl Deadline {
    /// Whether it has passed (after an interrupt: the interrupt is then the
    /// deadline's, not someone's `sqlite3_interrupt`). Asked only when a
    /// statement failed, so a statement that did not costs no clock read.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.at
    }
}

/// `timeout` after `now`; a timeout past what an `Instant` holds is a year
/// (as good as never, and no overflow).
pub fn deadline_after(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(86_400 * 365)))
        .unwrap_or(now)
}

/// What the callbacks read: the policy behind the authorizer, and the
/// bounds of the guest statements in progress.
#[derive(Default)]
struct State {
    policy: Option<Arc<dyn Policy>>,
    bounds: Vec<Bound>,
}

/// One connection's authorizer and bounds.
pub struct Gate {
    db: *mut ffi::sqlite3,
    // One lock for both: a guest statement changes them together.
    state: Mutex<State>,
    // Procedure calls in progress on the connection, nested in each other
    // (whichever path runs them: Python's CallContext or the core's).
    calls: AtomicUsize,
    // Guest statements in progress (the length of `state.bounds`), read by
    // the progress handler without the lock.
    bounding: AtomicUsize,
    /// Procedures' read-only statements, prepared once.
    pub statements: StatementCache,
    // Numbers the savepoints the core opens (its own prefix: Python's
    // `Session.savepoint_name` numbers the others).
    savepoints: std::sync::atomic::AtomicU64,
}

/// A host statement that failed: SQLite's primary code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecError {
    pub code: c_int,
    pub message: String,
}

impl ExecError {
    /// Another connection holds the lock (or this one is mid-statement in
    /// a way that forbids the operation, which SQLite reports the same way).
    pub fn is_busy(&self) -> bool {
        matches!(self.code & 0xff, ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED)
    }
}

// SAFETY: `db` is only handed to SQLite's API, which serializes a
// connection itself (the threading mode apsw opens connections in); the
// rest is behind mutexes.
unsafe impl Send for Gate {}
// SAFETY: as for Send.
unsafe impl Sync for Gate {}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// # Safety
///
/// SQLite passes a nul-terminated string or null.
unsafe fn text<'a>(p: *const c_char) -> Option<&'a str> {
    // SAFETY: the caller's contract.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_str().unwrap_or(""))
}

unsafe extern "C" fn authorize(
    data: *mut c_void,
    action: c_int,
    p1: *const c_char,
    p2: *const c_char,
    db: *const c_char,
    trigger: *const c_char,
) -> c_int {
    // SAFETY: `data` is the gate SQLite holds a reference to (`install`).
    let gate = unsafe { &*data.cast::<Gate>() };
    // SAFETY: SQLite's strings, valid during the callback.
    let (p1, p2, db, trigger) = unsafe { (text(p1), text(p2), text(db), text(trigger)) };
    let policy = lock(&gate.state).policy.clone();
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match policy {
        Some(policy) => policy.authorize(action, p1, p2, db, trigger),
        None => host_rule(action, p1, p2, trigger),
    }));
    answer.unwrap_or(DENY)
}

/// The engine's own statements and the raw connection: whoever planted a
/// trigger or view, its body never reaches the registry, as under every
/// policy.
fn host_rule(action: i32, p1: Option<&str>, p2: Option<&str>, trigger: Option<&str>) -> i32 {
    if trigger.is_some() && registry_access(action, p1, p2).is_some() {
        DENY
    } else {
        OK
    }
}

unsafe extern "C" fn progress(data: *mut c_void) -> c_int {
    // SAFETY: as in `authorize`.
    let gate = unsafe { &*data.cast::<Gate>() };
    // The handler stays installed between guest statements (removing it
    // cost an SQLite call per statement): outside them it answers at once.
    if gate.bounding.load(Ordering::Acquire) == 0 {
        return 0;
    }
    let state = lock(&gate.state);
    c_int::from(
        state
            .bounds
            .last()
            .is_some_and(|b| Instant::now() >= b.deadline),
    )
}

unsafe extern "C" fn release(data: *mut c_void) {
    // SAFETY: the reference `install` gave SQLite, dropped once at close.
    drop(unsafe { Arc::from_raw(data.cast::<Gate>()) });
}

impl Gate {
    /// The gate of `db`, installed now if it has none.
    ///
    /// # Errors
    ///
    /// An SQLite older than 3.44, which has no client data.
    ///
    /// # Safety
    ///
    /// `db` is an open connection, and SQLite's routine table is loaded.
    pub unsafe fn install(db: *mut ffi::sqlite3) -> Result<Arc<Self>, String> {
        // SAFETY: the routine table is loaded (the caller's contract).
        let version = unsafe { ffi::sqlite3_libversion_number() };
        if version < MIN_SQLITE {
            return Err(format!(
                "SQLite {version} is older than 3.44, which the engine's core needs \
                 (apsw from PyPI ships a newer one)"
            ));
        }
        // SAFETY: `db` is open.
        let found = unsafe { ffi::sqlite3_get_clientdata(db, KEY.as_ptr()) };
        if !found.is_null() {
            let found = found.cast::<Self>().cast_const();
            // SAFETY: a gate SQLite holds a reference to; this adds ours.
            unsafe { Arc::increment_strong_count(found) };
            // SAFETY: the count was incremented for this Arc.
            return Ok(unsafe { Arc::from_raw(found) });
        }
        let gate = Arc::new(Self {
            db,
            state: Mutex::default(),
            calls: AtomicUsize::new(0),
            bounding: AtomicUsize::new(0),
            statements: StatementCache::default(),
            savepoints: std::sync::atomic::AtomicU64::new(0),
        });
        let data = Arc::into_raw(gate.clone()).cast_mut().cast::<c_void>();
        // SAFETY: `db` is open; SQLite keeps `data` until it closes and
        // then calls `release` once.
        unsafe {
            ffi::sqlite3_set_clientdata(db, KEY.as_ptr(), data, Some(release));
            ffi::sqlite3_set_authorizer(db, Some(authorize), data);
        }
        Ok(gate)
    }

    /// Puts `policy` behind the authorizer; the one it replaces.
    pub fn set_policy(&self, policy: Option<Arc<dyn Policy>>) -> Option<Arc<dyn Policy>> {
        std::mem::replace(&mut lock(&self.state).policy, policy)
    }

    pub fn policy(&self) -> Option<Arc<dyn Policy>> {
        lock(&self.state).policy.clone()
    }

    /// Runs `f` (one guest statement) under `policy`, `deadline` and
    /// `max_value_bytes`, each no looser than the bound of the guest
    /// statement it runs inside; the enclosing policy and bounds come back
    /// after. `None` instead of running `f` when the deadline has passed
    /// already.
    pub fn bounded<R>(
        &self,
        policy: Arc<dyn Policy>,
        deadline: Instant,
        max_value_bytes: usize,
        f: impl FnOnce() -> R,
    ) -> (Option<R>, Deadline) {
        let max_value_bytes = c_int::try_from(max_value_bytes).unwrap_or(c_int::MAX);
        let mut bound = Bound {
            deadline,
            max_value_bytes,
            previous_length: 0,
            own_deadline: true,
        };
        let data = std::ptr::from_ref(self).cast_mut().cast::<c_void>();
        let (outer, first) = {
            let mut state = lock(&self.state);
            if let Some(enclosing) = state.bounds.last() {
                bound.own_deadline = deadline <= enclosing.deadline;
                bound.deadline = deadline.min(enclosing.deadline);
                bound.max_value_bytes = max_value_bytes.min(enclosing.max_value_bytes);
            }
            let outcome = Deadline {
                at: bound.deadline,
                own: bound.own_deadline,
            };
            if outcome.expired() {
                return (None, outcome);
            }
            // SAFETY: `db` is open while its gate is used (sqlite3_limit
            // takes no lock of SQLite's, so it is called under ours).
            bound.previous_length = unsafe {
                ffi::sqlite3_limit(self.db, ffi::SQLITE_LIMIT_LENGTH, bound.max_value_bytes)
            };
            state.bounds.push(bound);
            self.bounding.store(state.bounds.len(), Ordering::Release);
            let first = state.bounds.len() == 1;
            (state.policy.replace(policy), first)
        };
        if first {
            // Outside our lock: SQLite takes the connection's mutex, which
            // a statement running the progress callback holds.
            // SAFETY: `db` is open; `data` (the gate) outlives it.
            unsafe { ffi::sqlite3_progress_handler(self.db, PROGRESS_STEPS, Some(progress), data) };
        }
        let result = f();
        {
            let mut state = lock(&self.state);
            state.policy = outer;
            if let Some(bound) = state.bounds.pop() {
                // SAFETY: as above.
                unsafe {
                    ffi::sqlite3_limit(self.db, ffi::SQLITE_LIMIT_LENGTH, bound.previous_length)
                };
            }
            self.bounding.store(state.bounds.len(), Ordering::Release);
        }
        let outcome = Deadline {
            at: bound.deadline,
            own: bound.own_deadline,
        };
        (Some(result), outcome)
    }

    /// The length limit the connection's owner set, under every bound of
    /// the guest statements in progress (the engine's own statements in the
    /// middle of one run under it), or `None` when none is in progress.
    pub fn host_length(&self) -> Option<c_int> {
        lock(&self.state).bounds.first().map(|b| b.previous_length)
    }

    /// Starts a procedure call: false (and nothing counted) if `max`
    /// calls are in progress already.
    pub fn enter_call(&self, max: usize) -> bool {
        self.calls
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Ends a call [`enter_call`](Self::enter_call) started.
    pub fn exit_call(&self) {
        let _ = self
            .calls
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Procedure calls in progress on the connection.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Acquire)
    }

    /// Guest statements in progress on the connection.
    pub fn depth(&self) -> usize {
        lock(&self.state).bounds.len()
    }

    pub fn db(&self) -> *mut ffi::sqlite3 {
        self.db
    }

    /// A new savepoint name of `kind` ("call", "tx"), unique on the connection.
    pub fn savepoint_name(&self, kind: &str) -> String {
        let n = self.savepoints.fetch_add(1, Ordering::Relaxed) + 1;
        format!("heliosdb_core_{kind}_{n}")
    }

    /// Runs the host's own statement `sql` (a savepoint's SAVEPOINT,
    /// RELEASE or ROLLBACK TO) under the host rule: call it with no guest
    /// policy in place.
    ///
    /// # Errors
    ///
    /// What SQLite refused.
    pub fn exec(&self, sql: &str) -> Result<(), ExecError> {
        let text = std::ffi::CString::new(sql).map_err(|_| ExecError {
            code: ffi::SQLITE_MISUSE,
            message: "a NUL in a host statement".into(),
        })?;
        // SAFETY: `db` is open while its gate is used; no callback, no
        // error buffer (the message comes from sqlite3_errmsg).
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.db,
                text.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if rc == ffi::SQLITE_OK {
            return Ok(());
        }
        // SAFETY: `db` is open; the message is copied at once.
        let message = unsafe {
            let p = ffi::sqlite3_errmsg(self.db);
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        Err(ExecError { code: rc, message })
    }
}
