//! The procedure log of one database: every line a guest logs (through
//! `heliosdb_log`, the WIT `log`, or its stdout and stderr), kept here so
//! that a call the core runs whole logs a line without Python.
//!
//! One sequence of lines serves three readers, each a window on its newest
//! end: the in-memory log (`Database.logs`, the newest `memory_*`), the
//! lines not persisted yet (the telemetry flush, the newest `retention_*`
//! since the last flush), and the lines not yet echoed to Python's
//! `logging` (at the end of each operation). Lines past every window are
//! dropped oldest first, the newest always kept, as `telemetry.LogBuffer`
//! did.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The log levels, least severe first (the WIT `log-level` cases).
pub const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// `name` as one of [`LEVELS`].
#[must_use]
pub fn level(name: &str) -> Option<&'static str> {
    LEVELS.iter().copied().find(|l| *l == name)
}

/// The bounds of a [`Sink`] (the constants of `telemetry.py`).
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    pub memory_lines: usize,
    pub memory_bytes: usize,
    pub retention_lines: usize,
    pub retention_bytes: usize,
    /// A message keeps this many bytes; a longer one is cut there (on a
    /// character boundary) and ends in the marker.
    pub message_bytes: usize,
    /// What a line costs against the byte bounds besides its message.
    pub line_bytes: usize,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Seconds since the Unix epoch.
    pub time: f64,
    pub procedure: Arc<str>,
    pub version: i64,
    pub level: &'static str,
    pub message: Box<str>,
}

struct Kept {
    seq: u64,
    line: Arc<Line>,
    cost: usize,
}

#[derive(Default)]
struct State {
    lines: VecDeque<Kept>,
    bytes: usize,
    next: u64,
    // Lines before these sequence numbers were persisted, echoed.
    flushed: u64,
    echoed: u64,
}

/// A database's procedure log.
pub struct Sink {
    limits: LogLimits,
    // The end of a cut message; `{}` becomes the message's full length.
    marker: String,
    state: Mutex<State>,
}

/// Lines not persisted yet, and the mark that [`Sink::flushed`] takes
/// once they are.
pub struct Pending {
    pub lines: Vec<Arc<Line>>,
    pub upto: u64,
}

impl Sink {
    #[must_use]
    pub fn new(limits: LogLimits, marker: &str) -> Self {
        Self {
            limits,
            marker: marker.to_owned(),
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `message` cut to the message bound, marked with its full length.
    #[must_use]
    pub fn clip(&self, message: &str) -> Box<str> {
        let limit = self.limits.message_bytes;
        if message.len() <= limit {
            return message.into();
        }
        let mut end = limit;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let marker = self.marker.replace("{}", &message.len().to_string());
        format!("{}{marker}", &message[..end]).into_boxed_str()
    }

    /// Adds a line (its message clipped).
    pub fn push(
        &self,
        time: f64,
        procedure: Arc<str>,
        version: i64,
        level: &'static str,
        message: &str,
    ) {
        let message = self.clip(message);
        let cost = message.len() + self.limits.line_bytes;
        let line = Arc::new(Line {
            time,
            procedure,
            version,
            level,
            message,
        });
        let max_lines = self.limits.memory_lines.max(self.limits.retention_lines);
        let max_bytes = self.limits.memory_bytes.max(self.limits.retention_bytes);
        let mut state = self.lock();
        let seq = state.next;
        state.next += 1;
        state.bytes += cost;
        state.lines.push_back(Kept { seq, line, cost });
        while state.lines.len() > 1 && (state.bytes > max_bytes || state.lines.len() > max_lines) {
            if let Some(old) = state.lines.pop_front() {
                state.bytes -= old.cost;
            }
        }
    }

    /// The newest lines from `from` on within `max_lines` and `max_bytes`
    /// (the newest always), oldest first.
    fn window(state: &State, from: u64, max_lines: usize, max_bytes: usize) -> Vec<Arc<Line>> {
        let mut bytes = 0;
        let mut taken = Vec::new();
        for kept in state.lines.iter().rev() {
            if kept.seq < from || taken.len() == max_lines {
                break;
            }
            bytes += kept.cost;
            if bytes > max_bytes && !taken.is_empty() {
                break;
            }
            taken.push(kept.line.clone());
        }
        taken.reverse();
        taken
    }

    /// The in-memory log, oldest first.
    pub fn memory(&self) -> Vec<Arc<Line>> {
        let state = self.lock();
        let l = self.limits;
        Self::window(&state, 0, l.memory_lines, l.memory_bytes)
    }

    /// Lines logged since the last flush, within the retention bounds.
    pub fn pending(&self) -> Pending {
        let state = self.lock();
        let l = self.limits;
        Pending {
            lines: Self::window(&state, state.flushed, l.retention_lines, l.retention_bytes),
            upto: state.next,
        }
    }

    /// How many lines a flush would persist now.
    pub fn pending_count(&self) -> usize {
        let state = self.lock();
        // Sequence numbers are consecutive: no need to walk the lines.
        let first = state.lines.front().map_or(state.next, |kept| kept.seq);
        let unflushed = state.next - state.flushed.max(first);
        usize::try_from(unflushed)
            .unwrap_or(usize::MAX)
            .min(self.limits.retention_lines)
    }

    /// The lines of a [`pending`](Self::pending) were persisted.
    pub fn flushed(&self, upto: u64) {
        let mut state = self.lock();
        state.flushed = state.flushed.max(upto);
    }

    /// Lines logged since the last echo whose level `wants`, oldest first
    /// (within the memory bounds: what `Database.logs` could still show).
    pub fn take_echo(&self, wants: impl Fn(&str) -> bool) -> Vec<Arc<Line>> {
        let mut state = self.lock();
        if state.echoed == state.next {
            return Vec::new();
        }
        let l = self.limits;
        let lines = Self::window(&state, state.echoed, l.memory_lines, l.memory_bytes);
        state.echoed = state.next;
        lines.into_iter().filter(|line| wants(line.level)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(memory_lines: usize, retention_lines: usize) -> Sink {
        Sink::new(
            LogLimits {
                memory_lines,
                memory_bytes: 1 << 20,
                retention_lines,
                retention_bytes: 1 << 20,
                message_bytes: 8,
                line_bytes: 100,
            },
            " ... [{} bytes]",
        )
    }

    fn messages(lines: &[Arc<Line>]) -> Vec<&str> {
        lines.iter().map(|l| &*l.message).collect()
    }

    #[test]
    fn each_reader_sees_its_window_of_the_newest_lines() {
        let sink = sink(2, 3);
        let p: Arc<str> = "p".into();
        for m in ["a", "b", "c", "d"] {
            sink.push(1.0, p.clone(), 1, "info", m);
        }
        assert_eq!(messages(&sink.memory()), ["c", "d"]);
        let pending = sink.pending();
        assert_eq!(messages(&pending.lines), ["b", "c", "d"]);
        assert_eq!(sink.pending_count(), 3);
        // A failed flush keeps them; a done one does not.
        assert_eq!(messages(&sink.pending().lines), ["b", "c", "d"]);
        sink.flushed(pending.upto);
        assert!(sink.pending().lines.is_empty());
        assert_eq!(sink.pending_count(), 0);
        sink.push(2.0, p, 1, "warn", "e");
        assert_eq!(messages(&sink.pending().lines), ["e"]);
        assert_eq!(sink.pending_count(), 1);
        assert_eq!(messages(&sink.take_echo(|l| l == "warn")), ["e"]);
        assert!(sink.take_echo(|_| true).is_empty());
    }

    #[test]
    fn a_long_message_is_cut_on_a_character_boundary_and_marked() {
        let sink = sink(10, 10);
        // 'é' is two bytes: a cut at 8 falls inside the fifth one.
        assert_eq!(&*sink.clip("ééééé"), "éééé ... [10 bytes]");
        assert_eq!(&*sink.clip("short"), "short");
    }

    #[test]
    fn the_byte_bound_keeps_the_newest_line_whatever_its_size() {
        let sink = Sink::new(
            LogLimits {
                memory_lines: 10,
                memory_bytes: 150,
                retention_lines: 10,
                retention_bytes: 150,
                message_bytes: 1000,
                line_bytes: 100,
            },
            "",
        );
        let p: Arc<str> = "p".into();
        sink.push(0.0, p.clone(), 1, "info", "one");
        sink.push(0.0, p, 1, "info", &"x".repeat(500));
        assert_eq!(sink.memory().len(), 1);
        assert_eq!(sink.pending().lines.len(), 1);
    }
}
