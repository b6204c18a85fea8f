//! Deny-by-default WASI preview 1 for core modules whose language runtimes
//! import it (Go's wasip1 runtime, C on wasi-libc), even when a procedure
//! never touches a file.
//!
//! wasmtime's own implementation (`wasmtime-wasi`), configured from the
//! procedure's capabilities: clocks always; no arguments, an empty stdin, no
//! network; only the `env:` variables and `filesystem:` folders it is
//! granted; its stdout and stderr line-buffered into the call's log
//! (`Output`); without `random`, a fixed "random" stream, so its runtime
//! still starts and its results repeat. One function is the engine's own:
//! `poll_oneoff`, so that a guest's sleep cannot outlast its call's timeout
//! (wasmtime sleeps on the calling thread, where no epoch can interrupt it).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::io::AsyncWrite;
use wasmtime::{Caller, Extern, Linker, Trap};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{FsPerms, HostMonotonicClock, WasiCtx, WasiCtxBuilder};

/// The import module of WASI preview 1.
pub const WASIP1_MODULE: &str = "wasi_snapshot_preview1";
/// The seed of the fixed "random" stream of procedures without `random`.
pub const SEEDED_RANDOM: u64 = 0x4845_4C49_4F53;
/// A guest printing in a loop must not grow the log without bound between
/// newlines: longer lines are cut here.
pub const MAX_LINE_BYTES: usize = 8192;
/// Lines written outside any call (a start function, `_initialize`) kept
/// for the next call.
pub const MAX_HELD_LINES: usize = 100;
/// What language runtimes print on stderr when an allocation fails (Go's
/// runtime, CPython's `MemoryError`, Rust's std alloc error handler).
pub const OUT_OF_MEMORY_MARKERS: [&str; 3] =
    ["out of memory", "MemoryError", "memory allocation of"];

/// The log level of each stream: stdout, stderr.
const LEVELS: [&str; 2] = ["info", "warn"];

#[must_use]
pub fn says_out_of_memory(text: &str) -> bool {
    OUT_OF_MEMORY_MARKERS.iter().any(|m| text.contains(m))
}

/// A folder a `filesystem:` capability grants, seen by the guest at its
/// host path.
#[derive(Clone, Debug)]
pub struct Folder {
    pub path: PathBuf,
    pub writable: bool,
}

/// What a procedure's capabilities grant of WASI.
#[derive(Clone, Debug, Default)]
pub struct WasiSpec {
    /// `env:` variables that exist in the host's environment, with values.
    pub env: Vec<(String, String)>,
    pub folders: Vec<Folder>,
    /// `stdout`: output lines reach the log (else they are only read, for
    /// out-of-memory reports).
    pub stdout: bool,
    /// `random`: the OS's randomness instead of the fixed stream.
    pub random: bool,
    /// The call's log limit: output queued past it is not kept (logging
    /// what is kept already ends the call).
    pub max_log_bytes: usize,
}

impl WasiSpec {
    /// A store's WASI context, its output, and (until the first call sets
    /// the call's own) `timeout` from now as the bound of its sleeps.
    ///
    /// # Errors
    ///
    /// A granted folder that cannot be opened, naming it.
    pub fn build(&self, timeout: Duration) -> Result<Wasi, String> {
        let start = Instant::now();
        let (mut builder, output) = self.builder(start)?;
        Ok(Wasi {
            ctx: builder.build_p1(),
            output,
            clock_start: start,
            deadline: Instant::now() + timeout,
        })
    }

    /// A component store's WASI 0.2 context and its output.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_p2(&self) -> Result<(WasiCtx, Output), String> {
        let (mut builder, output) = self.builder(Instant::now())?;
        Ok((builder.build(), output))
    }

    fn builder(&self, clock_start: Instant) -> Result<(WasiCtxBuilder, Output), String> {
        let output = Output::new(self.stdout, self.max_log_bytes);
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(Stream {
                output: output.clone(),
                index: 0,
            })
            .stderr(Stream {
                output: output.clone(),
                index: 1,
            })
            .envs(&self.env)
            .monotonic_clock(Monotonic { start: clock_start })
            // Files are opened and read on the calling thread: stores here
            // never run async.
            .allow_blocking_current_thread(true);
        for folder in &self.folders {
            let perms = if folder.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            let guest = folder.path.to_string_lossy();
            builder
                .preopened_dir(&folder.path, guest.as_ref(), perms)
                .map_err(|e| format!("cannot open folder {}: {e:#}", folder.path.display()))?;
        }
        if !self.random {
            builder
                .secure_random(StdRng::seed_from_u64(SEEDED_RANDOM))
                .insecure_random(StdRng::seed_from_u64(SEEDED_RANDOM))
                .insecure_random_seed(u128::from(SEEDED_RANDOM));
        }
        Ok((builder, output))
    }
}

/// One store's WASI: wasmtime's context, the guest's output and the
/// deadline its sleeps may not pass.
pub struct Wasi {
    pub ctx: WasiP1Ctx,
    pub output: Output,
    clock_start: Instant,
    /// Set by each call (`basic::begin`).
    pub deadline: Instant,
}

/// The guest's monotonic clock, from a start the engine knows, so that
/// `poll_oneoff` can turn an absolute monotonic time into a wait.
#[derive(Clone, Copy)]
struct Monotonic {
    start: Instant,
}

impl HostMonotonicClock for Monotonic {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A guest's stdout and stderr, cut into lines for the call's log.
///
/// The streams write here from inside WASI, where the call's host is out
/// of reach; the host functions and the end of the call take the lines
/// (`take`), so they reach the log in the order the guest wrote them
/// relative to its `heliosdb_log` calls.
#[derive(Clone)]
pub struct Output(Arc<Mutex<Lines>>);

struct Lines {
    forward: bool,
    cap: usize,
    partial: [Vec<u8>; 2],
    queued: VecDeque<(&'static str, String)>,
    queued_bytes: usize,
    in_call: bool,
    out_of_memory: bool,
}

impl Output {
    fn new(forward: bool, cap: usize) -> Self {
        Self(Arc::new(Mutex::new(Lines {
            forward,
            cap,
            partial: [Vec::new(), Vec::new()],
            queued: VecDeque::new(),
            queued_bytes: 0,
            in_call: false,
            out_of_memory: false,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Lines> {
        // Lines are whole or absent: a panic cannot leave them half-changed.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A call starts: the lines held since the last one are logged first.
    pub fn begin(&self) {
        let mut lines = self.lock();
        lines.in_call = true;
        lines.out_of_memory = false;
    }

    /// The call ends: unterminated output becomes its last lines.
    pub fn end(&self) {
        self.lock().end();
    }

    /// [`end`](Self::end), [`take`](Self::take) and
    /// [`out_of_memory`](Self::out_of_memory) at once, under one lock: what
    /// a call that logs its output at the end needs.
    pub fn finish(&self) -> (VecDeque<(&'static str, String)>, bool) {
        let mut lines = self.lock();
        lines.end();
        let queued = if lines.queued.is_empty() {
            VecDeque::new()
        } else {
            lines.queued_bytes = 0;
            std::mem::take(&mut lines.queued)
        };
        (queued, lines.out_of_memory)
    }

    /// The complete lines written since the last take, oldest first.
    pub fn take(&self) -> VecDeque<(&'static str, String)> {
        let mut lines = self.lock();
        lines.queued_bytes = 0;
        std::mem::take(&mut lines.queued)
    }

    /// Whether the guest reported a failed allocation during this call.
    #[must_use]
    pub fn out_of_memory(&self) -> bool {
        self.lock().out_of_memory
    }

    fn write(&self, index: usize, data: &[u8]) {
        let mut lines = self.lock();
        lines.partial[index].extend_from_slice(data);
        loop {
            let buf = &lines.partial[index];
            let (cut, skip) = match buf.iter().position(|&b| b == b'\n') {
                Some(cut) => (cut, 1),
                None if buf.len() > MAX_LINE_BYTES => (MAX_LINE_BYTES, 0),
                None => break,
            };
            let line: Vec<u8> = lines.partial[index].drain(..cut + skip).take(cut).collect();
            lines.emit(index, &line);
        }
    }
}

impl Lines {
    fn end(&mut self) {
        for index in 0..LEVELS.len() {
            // Only output left unterminated: an empty buffer keeps its memory.
            if !self.partial[index].is_empty() {
                let rest = std::mem::take(&mut self.partial[index]);
                self.emit(index, &rest);
            }
        }
        self.in_call = false;
    }

    fn emit(&mut self, index: usize, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        if index == 1 && says_out_of_memory(text) {
            self.out_of_memory = true;
        }
        if !self.forward {
            return;
        }
        if self.in_call {
            // Past the log limit the call fails when these are logged: more
            // would only cost memory.
            if self.queued_bytes > self.cap {
                return;
            }
        } else if self.queued.len() >= MAX_HELD_LINES {
            return;
        }
        self.queued_bytes += text.len();
        self.queued.push_back((LEVELS[index], text.to_owned()));
    }
}

/// stdout (`index` 0) or stderr (1) of one store.
#[derive(Clone)]
struct Stream {
    output: Output,
    index: usize,
}

impl IsTerminal for Stream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Stream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for Stream {
    async fn ready(&mut self) {}
}

impl OutputStream for Stream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.output.write(self.index, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(1 << 20)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.output.write(self.index, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Defines every WASI preview 1 function in `linker`, `project` giving a
/// store's `Wasi`: wasmtime's, except `poll_oneoff` (`bounded_poll`).
///
/// # Errors
///
/// Only if wasmtime refuses a definition (it does not for these types).
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    project: fn(&mut T) -> &mut Wasi,
) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, move |data| &mut project(data).ctx)?;
    linker.allow_shadowing(true);
    let defined = linker
        .func_wrap(
            WASIP1_MODULE,
            "poll_oneoff",
            move |mut caller: Caller<'_, T>,
                  subs: i32,
                  events: i32,
                  count: i32,
                  out: i32|
                  -> wasmtime::Result<i32> {
                let (clock_start, deadline) = {
                    let wasi = project(caller.data_mut());
                    (wasi.clock_start, wasi.deadline)
                };
                bounded_poll(
                    &mut caller,
                    clock_start,
                    deadline,
                    [subs, events, count, out],
                )
            },
        )
        .map(|_| ());
    linker.allow_shadowing(false);
    defined
}

// WASI preview 1 errno values and layouts (witx/p1/typenames.witx).
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
const SUBSCRIPTION_BYTES: usize = 48;
const EVENT_BYTES: usize = 32;
const EVENTTYPE_CLOCK: u8 = 0;
const CLOCK_REALTIME: u32 = 0;
const CLOCK_MONOTONIC: u32 = 1;
const SUBCLOCK_ABSTIME: u16 = 1;

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// `poll_oneoff(subscriptions, events, count, out_count)`.
///
/// A clock subscription waits on this thread, but never past the call's
/// deadline: a wait that would is cut there and ends the call as its
/// timeout. File-descriptor subscriptions are reported ready at once: with
/// stdin empty, stdout and stderr always writable and regular files always
/// readable, that is what wasmtime's reports too, and a guest polling a
/// descriptor that is not ready only spins on its own fuel.
fn bounded_poll<T>(
    caller: &mut Caller<'_, T>,
    clock_start: Instant,
    deadline: Instant,
    [subs, events, count, out]: [i32; 4],
) -> wasmtime::Result<i32> {
    let Some(memory) = caller.get_export("memory").and_then(Extern::into_memory) else {
        return Err(wasmtime::Error::msg(
            "poll_oneoff: the module exports no memory",
        ));
    };
    let count = count.cast_unsigned() as usize;
    if count == 0 {
        return Ok(ERRNO_INVAL);
    }
    let span = |ptr: i32, size: usize| {
        let start = ptr.cast_unsigned() as usize;
        let end = start.checked_add(count.checked_mul(size)?)?;
        (end <= memory.data_size(&*caller)).then_some(start..end)
    };
    let (Some(subs), Some(events)) = (span(subs, SUBSCRIPTION_BYTES), span(events, EVENT_BYTES))
    else {
        return Ok(ERRNO_FAULT);
    };
    let subs = memory.data(&*caller)[subs].to_vec();
    let now = Instant::now();
    // Each subscription's userdata and its event type; clocks with the
    // instant they are due.
    let mut ready: Vec<(u64, u8)> = Vec::new();
    let mut clocks: Vec<(u64, Instant)> = Vec::new();
    for sub in subs.chunks_exact(SUBSCRIPTION_BYTES) {
        let userdata = u64_at(sub, 0);
        let tag = sub[8];
        if tag != EVENTTYPE_CLOCK {
            ready.push((userdata, tag));
            continue;
        }
        let id = u32::from_le_bytes([sub[16], sub[17], sub[18], sub[19]]);
        let timeout = u64_at(sub, 24);
        let absolute = u16::from_le_bytes([sub[40], sub[41]]) & SUBCLOCK_ABSTIME != 0;
        let wait = match (id, absolute) {
            (CLOCK_MONOTONIC | CLOCK_REALTIME, false) => Duration::from_nanos(timeout),
            (CLOCK_MONOTONIC, true) => {
                (clock_start + Duration::from_nanos(timeout)).saturating_duration_since(now)
            }
            (CLOCK_REALTIME, true) => {
                let since_epoch = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or(Duration::ZERO);
                Duration::from_nanos(timeout).saturating_sub(since_epoch)
            }
            _ => return Ok(ERRNO_INVAL),
        };
        clocks.push((
            userdata,
            now.checked_add(wait)
                .unwrap_or(deadline.max(now) + Duration::from_secs(1)),
        ));
    }
    if ready.is_empty() {
        let due = clocks.iter().map(|c| c.1).min().unwrap_or(now);
        if due > deadline {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            return Err(Trap::Interrupt.into());
        }
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        ready.extend(
            clocks
                .iter()
                .filter(|c| c.1 <= now)
                .map(|c| (c.0, EVENTTYPE_CLOCK)),
        );
    }
    let mut bytes = vec![0; ready.len() * EVENT_BYTES];
    for (event, (userdata, tag)) in bytes.chunks_exact_mut(EVENT_BYTES).zip(&ready) {
        event[0..8].copy_from_slice(&userdata.to_le_bytes());
        // error (u16 at 8) is success; type at 10; fd_readwrite.nbytes and
        // flags (at 16 and 24) zero.
        event[10] = *tag;
    }
    let written = u32::try_from(ready.len()).unwrap_or(u32::MAX).to_le_bytes();
    let start = events.start;
    let out = out.cast_unsigned() as usize;
    let mem = memory.data_mut(&mut *caller);
    if out.checked_add(4).is_none_or(|end| end > mem.len()) {
        return Ok(ERRNO_FAULT);
    }
    mem[start..start + bytes.len()].copy_from_slice(&bytes);
    mem[out..out + 4].copy_from_slice(&written);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_into_lines_and_held_outside_calls() {
        let output = Output::new(true, 1 << 20);
        output.write(0, b"before\n");
        output.begin();
        output.write(0, b"one\r\ntw");
        output.write(1, b"o\n");
        output.write(0, b"o");
        output.write(0, &[b'x'; MAX_LINE_BYTES + 1]);
        output.end();
        let lines: Vec<_> = output.take().into_iter().collect();
        assert_eq!(lines[0], ("info", "before".to_owned()));
        assert_eq!(lines[1], ("info", "one".to_owned()));
        assert_eq!(lines[2], ("warn", "o".to_owned()));
        assert_eq!(lines[3].1.len(), MAX_LINE_BYTES);
        assert_eq!(lines[3].1, format!("two{}", "x".repeat(MAX_LINE_BYTES - 3)));
        assert_eq!(lines[4].1, "x".repeat(4));
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn without_forwarding_only_out_of_memory_is_noticed() {
        let output = Output::new(false, 1 << 20);
        output.begin();
        output.write(1, b"fatal error: runtime: out of memory\n");
        output.end();
        assert!(output.take().is_empty());
        assert!(output.out_of_memory());
        output.begin();
        assert!(!output.out_of_memory());
    }

    #[test]
    fn held_lines_and_queued_bytes_are_capped() {
        let output = Output::new(true, 10);
        for _ in 0..MAX_HELD_LINES + 5 {
            output.write(0, b"held\n");
        }
        assert_eq!(output.take().len(), MAX_HELD_LINES);
        output.begin();
        for _ in 0..10 {
            output.write(0, b"12345678\n");
        }
        // Queued until past the cap, then dropped.
        assert_eq!(output.take().len(), 2);
    }
}
