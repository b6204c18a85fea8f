//! `LogSink`: a database's procedure log (`crate::logs`) for Python, and
//! what a call the core runs whole logs into it (`LogTarget`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::logs::{level, Line, LogLimits, Sink};
use crate::wasi::says_out_of_memory;

/// A line as Python's `telemetry.LogRecord` takes it.
type Record = (f64, String, i64, &'static str, String);

fn record(line: &Line) -> Record {
    (
        line.time,
        line.procedure.to_string(),
        line.version,
        line.level,
        line.message.to_string(),
    )
}

fn records(lines: &[Arc<Line>]) -> Vec<Record> {
    lines.iter().map(|l| record(l)).collect()
}

/// Seconds since the Unix epoch, as `time.time()`.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The procedure log of one database: lines come in from the core and
/// from `hostapi.log_line`; `Database.logs`, the telemetry flush and the
/// echo to Python's logging read their windows of it (`crate::logs`).
#[pyclass(module = "heliosdb_wasm._core", frozen)]
pub struct LogSink {
    pub inner: Arc<Sink>,
}

#[pymethods]
impl LogSink {
    #[new]
    #[allow(clippy::too_many_arguments)] // telemetry.py's constants, one each
    #[pyo3(signature = (memory_lines, memory_bytes, retention_lines, retention_bytes, message_bytes, line_bytes, marker))]
    fn new(
        memory_lines: usize,
        memory_bytes: usize,
        retention_lines: usize,
        retention_bytes: usize,
        message_bytes: usize,
        line_bytes: usize,
        marker: &str,
    ) -> Self {
        let limits = LogLimits {
            memory_lines,
            memory_bytes,
            retention_lines,
            retention_bytes,
            message_bytes,
            line_bytes,
        };
        Self {
            inner: Arc::new(Sink::new(limits, marker)),
        }
    }

    /// Adds a line, its message cut to `message_bytes` (a lone surrogate
    /// in it, which UTF-8 cannot hold, becomes U+FFFD).
    fn push(
        &self,
        time: f64,
        procedure: &str,
        version: i64,
        level_name: &str,
        message: &Bound<'_, PyString>,
    ) -> PyResult<()> {
        let level = level(level_name)
            .ok_or_else(|| PyValueError::new_err(format!("unknown log level {level_name:?}")))?;
        let message = message.to_string_lossy();
        self.inner
            .push(time, procedure.into(), version, level, &message);
        Ok(())
    }

    /// One line of a call on Python's general path (`hostapi.log_line`),
    /// after `logged` bytes of the same call, by the rule a call the core
    /// runs whole logs by ([`LogTarget::log`]): the bytes logged now and
    /// whether the line said the guest ran out of memory; None if it is
    /// over `max_log_bytes` (nothing logged).
    #[allow(clippy::too_many_arguments)] // one line and where it belongs
    fn log_line(
        &self,
        procedure: &str,
        version: i64,
        max_log_bytes: usize,
        level_name: &str,
        message: &Bound<'_, PyString>,
        logged: usize,
    ) -> PyResult<Option<(usize, bool)>> {
        let level = level(level_name)
            .ok_or_else(|| PyValueError::new_err(format!("unknown log level {level_name:?}")))?;
        let target = LogTarget {
            sink: self.inner.clone(),
            procedure: procedure.into(),
            version,
            max_log_bytes,
        };
        let mut logged = logged;
        Ok(
            match target.log(&mut logged, level, &message.to_string_lossy()) {
                Logged::OverLimit => None,
                Logged::Line { out_of_memory } => Some((logged, out_of_memory)),
            },
        )
    }

    /// The in-memory log: `(time, procedure, version, level, message)`
    /// tuples, oldest first.
    fn memory(&self) -> Vec<Record> {
        records(&self.inner.memory())
    }

    /// The lines not persisted yet, and the mark to give `flushed` once
    /// they are.
    fn pending(&self) -> (Vec<Record>, u64) {
        let pending = self.inner.pending();
        (records(&pending.lines), pending.upto)
    }

    fn flushed(&self, upto: u64) {
        self.inner.flushed(upto);
    }

    /// How many lines a flush would persist now.
    #[getter]
    fn pending_count(&self) -> usize {
        self.inner.pending_count()
    }

    /// The lines logged since the last echo at one of `levels`.
    fn take_echo(&self, levels: Vec<String>) -> Vec<Record> {
        records(&self.inner.take_echo(|l| levels.iter().any(|w| w == l)))
    }
}

/// Where a call the core runs whole logs: the database's sink, under the
/// procedure's name and version, at most `max_log_bytes` a call.
pub struct LogTarget {
    pub sink: Arc<Sink>,
    pub procedure: Arc<str>,
    pub version: i64,
    pub max_log_bytes: usize,
}

/// What logging one line did: over the call's log bound, or whether the
/// line said the guest ran out of memory.
pub enum Logged {
    OverLimit,
    Line { out_of_memory: bool },
}

impl LogTarget {
    /// One line, after `logged` bytes of the same call (counted in UTF-8
    /// bytes before any cut, as hostapi.log_line counts them).
    pub fn log(&self, logged: &mut usize, level: &'static str, message: &str) -> Logged {
        *logged += message.len();
        if *logged > self.max_log_bytes {
            return Logged::OverLimit;
        }
        let out_of_memory = matches!(level, "warn" | "error") && says_out_of_memory(message);
        self.sink
            .push(now(), self.procedure.clone(), self.version, level, message);
        Logged::Line { out_of_memory }
    }
}
