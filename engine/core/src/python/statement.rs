//! A procedure's SQL statement on apsw's connection (`crate::statement`)
//! under the connection's gate (`crate::gate`): its policy, deadline and
//! length limit. The host functions of the calls the core runs whole (both
//! ABIs) run it with no Python at all, without the GIL; a refusal becomes
//! the typed error through `hostapi.CallContext.statement_error`.

use std::sync::Arc;
use std::time::Instant;

use super::policy::GuestPolicy;
use smallvec::SmallVec;

use crate::encoding::Param;
use crate::gate::Gate;
use crate::statement::{run_cached, Bind, Failure, RowLimits, RowSink};

/// What bounds one guest statement.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    /// The calling procedure's deadline.
    pub deadline: Instant,
    pub max_value_bytes: usize,
    pub rows: RowLimits,
}

/// Why a statement did not complete: what `CallContext.statement_error`
/// types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub kind: &'static str,
    pub message: String,
    pub own_deadline: bool,
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
    sink: &mut (impl RowSink + ?Sized),
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

/// [`bounded`] with the parameters as the host functions decoded them
/// (either ABI's).
///
/// # Errors
///
/// As [`bounded`].
pub fn bounded_params(
    gate: &Gate,
    policy: Arc<GuestPolicy>,
    scope: Scope,
    sql: &str,
    params: &[Param<'_>],
    sink: &mut (impl RowSink + ?Sized),
) -> Result<i64, Refused> {
    let binds: SmallVec<[Bind<'_>; 4]> = params
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
    bounded(gate, policy, scope, sql, &binds, sink)
}

/// A sink for a statement whose rows nobody reads (`execute`): they are
/// still counted against the limits as they come.
pub struct Ignored;

impl RowSink for Ignored {
    fn columns(&mut self, _: &mut dyn ExactSizeIterator<Item = &[u8]>) {}
    fn null(&mut self) {}
    fn integer(&mut self, _: i64) {}
    fn real(&mut self, _: f64) {}
    fn text(&mut self, _: &[u8]) {}
    fn blob(&mut self, _: &[u8]) {}
    fn end_row(&mut self) {}
}
