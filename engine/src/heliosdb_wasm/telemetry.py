"""What the engine records about procedure calls: metrics, the log, profiles.

Every call produces a ``CallStats`` (timings split into instantiate, marshal,
guest and host time; fuel and memory used; the error code if it failed).
``Telemetry`` folds them into per-version metrics with a log-scale latency
histogram and keeps the procedure log lines, both in memory until they are
flushed into the database (``_heliosdb_metrics``, ``_heliosdb_log``) so that
another process (``heliosdb-wasm procedure metrics``, ``heliosdb-wasm logs``)
sees them. Flushing happens between statements, never inside the caller's
own transaction, at most once a second (or when much is pending) and when
the database is closed.

The log lines live in the Rust core (``new_log_sink``), which a call it runs
whole logs into without Python; they are echoed to Python's ``logging`` at
the end of each operation (``hostapi.Session.echo_logs``).

The log is bounded in bytes wherever it is held: each line's message is cut
to ``LOG_MESSAGE_BYTES`` (with a marker saying so), the in-memory log keeps
the newest ``LOG_MEMORY_BYTES``, and the persisted one the newest
``LOG_RETENTION_BYTES`` of messages, pruned in the flush's own transaction.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import apsw

from . import _core
from .policy import MIB

SCHEMA = """
CREATE TABLE IF NOT EXISTS _heliosdb_metrics(
    name TEXT NOT NULL COLLATE NOCASE,
    version INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    error_codes TEXT NOT NULL,
    total_seconds REAL NOT NULL,
    fuel INTEGER NOT NULL,
    max_memory INTEGER,
    histogram TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS _heliosdb_log(
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    procedure TEXT NOT NULL COLLATE NOCASE,
    version INTEGER NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS _heliosdb_log_by_procedure ON _heliosdb_log(procedure, time);
CREATE TABLE IF NOT EXISTS _heliosdb_log_size(
    id INTEGER PRIMARY KEY CHECK (id = 1),
    bytes INTEGER NOT NULL
);
"""

# The persisted log keeps this many lines, and this many bytes of messages
# (_heliosdb_log_size keeps the sum); older lines are deleted on flush.
LOG_RETENTION = 100_000
LOG_RETENTION_BYTES = 8 * MIB
# The in-memory log (Database.logs) keeps the newest lines up to both bounds;
# each line costs its message's bytes plus LOG_LINE_BYTES.
LOG_MEMORY_LINES = 10_000
LOG_MEMORY_BYTES = 8 * MIB
LOG_LINE_BYTES = 128
# A line's message keeps this many bytes; a longer one is cut there and ends
# in TRUNCATED_MARKER, which gives its full length (cut once, where the line
# enters the log: engine/core/src/logs.rs).
LOG_MESSAGE_BYTES = 64 * 1024
TRUNCATED_MARKER = " ... [truncated: {} bytes in all]"
FLUSH_INTERVAL_SECONDS = 1.0
FLUSH_PENDING_CALLS = 10_000
# Telemetry.due() reads the core's tallies every this many times it is asked.
COLLECT_EVERY = 64

# Latency buckets: four per power of two from 1 µs (about ±9 % resolution).
_BUCKETS_PER_OCTAVE = 4
_BASE_SECONDS = 1e-6
_NUM_BUCKETS = 4 * 30  # up to ~1000 s


def bucket_of(seconds: float) -> int:
    if seconds <= _BASE_SECONDS:
        return 0
    index = int(math.log2(seconds / _BASE_SECONDS) * _BUCKETS_PER_OCTAVE) + 1
    return min(index, _NUM_BUCKETS - 1)


def bucket_upper(index: int) -> float:
    """The upper bound of bucket ``index``, in seconds."""
    return _BASE_SECONDS * 2 ** (index / _BUCKETS_PER_OCTAVE)


class LogRecord(NamedTuple):
    """One line of the procedure log. A named tuple, not a dataclass: a
    tuple of plain values is one the cyclic collector stops tracking, and a
    busy procedure keeps thousands of them in memory (cProfile/perf of a
    procedure that logs per call: the collector's passes were ~8 % of it)."""

    time: float
    procedure: str
    version: int
    level: str
    message: str


def new_log_sink() -> _core.LogSink:
    """A database's procedure log (engine/core/src/logs.rs): the in-memory
    log keeps the newest LOG_MEMORY_LINES lines within LOG_MEMORY_BYTES, the
    lines not persisted yet the newest LOG_RETENTION within
    LOG_RETENTION_BYTES (each line costing its message's UTF-8 bytes plus
    LOG_LINE_BYTES, the newest always kept); a message is cut to
    LOG_MESSAGE_BYTES and ends in TRUNCATED_MARKER."""
    return _core.LogSink(
        LOG_MEMORY_LINES,
        LOG_MEMORY_BYTES,
        LOG_RETENTION,
        LOG_RETENTION_BYTES,
        LOG_MESSAGE_BYTES,
        LOG_LINE_BYTES,
        TRUNCATED_MARKER,
    )


@dataclass(frozen=True)
class CallStats:
    """One call, timed. ``marshal`` is the host side of argument and result
    conversion; ``guest`` is time inside wasm minus ``host`` (time in host
    API functions, including procedures it called)."""

    procedure: str
    version: int
    started: float
    total: float
    instantiate: float
    marshal: float
    guest: float
    host: float
    fuel_used: int | None
    memory_bytes: int | None
    error: str | None


@dataclass
class Metrics:
    """Calls of one procedure version, summed."""

    calls: int = 0
    errors: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)
    total_seconds: float = 0.0
    fuel: int = 0
    max_memory: int | None = None
    histogram: dict[int, int] = field(default_factory=dict)

    def add(self, s: CallStats) -> None:
        self.count(s.total, s.error)
        self.fuel += s.fuel_used or 0
        if s.memory_bytes is not None:
            self.max_memory = max(self.max_memory or 0, s.memory_bytes)

    def count(self, seconds: float, error: str | None) -> None:
        self.calls += 1
        self.total_seconds += seconds
        if error is not None:
            self.errors += 1
            self.error_codes[error] = self.error_codes.get(error, 0) + 1
        b = bucket_of(seconds)
        self.histogram[b] = self.histogram.get(b, 0) + 1

    def clear(self) -> None:
        self.calls = self.errors = self.fuel = 0
        self.error_codes = {}
        self.total_seconds = 0.0
        self.max_memory = None
        self.histogram = {}

    def count_many(self, calls: int, seconds: float) -> None:
        """``calls`` successful calls that took ``seconds`` in all (a batch):
        each is put in the histogram bucket of their mean."""
        if calls <= 0:
            return
        self.calls += calls
        self.total_seconds += seconds
        b = bucket_of(seconds / calls)
        self.histogram[b] = self.histogram.get(b, 0) + calls

    def merge(self, other: Metrics) -> None:
        self.calls += other.calls
        self.errors += other.errors
        for code, n in other.error_codes.items():
            self.error_codes[code] = self.error_codes.get(code, 0) + n
        self.total_seconds += other.total_seconds
        self.fuel += other.fuel
        if other.max_memory is not None:
            self.max_memory = max(self.max_memory or 0, other.max_memory)
        for b, n in other.histogram.items():
            self.histogram[b] = self.histogram.get(b, 0) + n

    def percentile(self, p: float) -> float | None:
        """Latency at percentile ``p`` (0-100): the upper bound of its bucket."""
        if not self.calls:
            return None
        wanted = math.ceil(self.calls * p / 100)
        seen = 0
        for b in sorted(self.histogram):
            seen += self.histogram[b]
            if seen >= wanted:
                return bucket_upper(b)
        return bucket_upper(max(self.histogram))

    def to_json(self) -> dict[str, Any]:
        mean = self.total_seconds / self.calls if self.calls else None
        return {
            "calls": self.calls,
            "errors": self.errors,
            "error_codes": dict(self.error_codes),
            "mean_seconds": mean,
            "p50_seconds": self.percentile(50),
            "p90_seconds": self.percentile(90),
            "p99_seconds": self.percentile(99),
            "fuel_total": self.fuel,
            "fuel_mean": self.fuel / self.calls if self.calls else None,
            "max_memory_bytes": self.max_memory,
        }


class Telemetry:
    """Per-database call metrics and log lines, pending until flushed."""

    def __init__(self) -> None:
        # By (lower-case name, version); call collect() first for the counts
        # the collectors below still hold.
        self.pending: dict[tuple[str, int], Metrics] = {}
        self.pending_calls = 0
        # Every log line, the ones not persisted yet among them: the core
        # writes lines there itself (a call it runs whole).
        self.logs = new_log_sink()
        self.listeners: list[Callable[[CallStats], None]] = []
        # Calls counted elsewhere (the Rust core's tallies, native.py):
        # each collector folds its counts into ``metrics()`` and
        # ``pending_calls``, and returns False once it will count no more.
        self.collectors: list[Callable[[], bool]] = []
        self.last_flush = time.monotonic()
        self._due_checks = 0

    def collect(self) -> None:
        if self.collectors:
            self.collectors[:] = [c for c in self.collectors if c()]

    def record(self, stats: CallStats) -> None:
        self.metrics(stats.procedure, stats.version).add(stats)
        self.pending_calls += 1
        for listener in self.listeners:
            listener(stats)

    def metrics(self, procedure: str, version: int) -> Metrics:
        """The pending metrics of one version, which the fast path updates
        itself (``Metrics.count`` and ``pending_calls``). The object lives as
        long as this Telemetry: flushing empties it in place."""
        key = (procedure.lower(), version)
        found = self.pending.get(key)
        if found is None:
            found = self.pending[key] = Metrics()
        return found

    def due(self) -> bool:
        """Whether to flush now: something is pending and the interval has
        passed, or FLUSH_PENDING_CALLS calls and lines are pending. Asked
        after every operation, so within the interval the core's tallies
        are read only every COLLECT_EVERY times (draining one costs more
        than the numeric call it counts)."""
        if time.monotonic() - self.last_flush >= FLUSH_INTERVAL_SECONDS:
            self.collect()
            return bool(self.pending_calls or self.logs.pending_count)
        self._due_checks += 1
        if self._due_checks >= COLLECT_EVERY:
            self._due_checks = 0
            self.collect()
        return self.pending_calls + self.logs.pending_count >= FLUSH_PENDING_CALLS

    def flush(self, conn: apsw.Connection) -> None:
        """Write what is pending in one transaction (the caller checked autocommit)."""
        self.collect()
        if not self.pending_calls and not self.logs.pending_count:
            return
        pending = {k: m for k, m in self.pending.items() if m.calls}
        # Marked persisted only once committed: a busy file keeps them.
        logs, upto = self.logs.pending()
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for (name, version), metrics in pending.items():
                merged = read_metrics(conn, name, version) or Metrics()
                merged.merge(metrics)
                cur.execute(
                    "INSERT OR REPLACE INTO _heliosdb_metrics(name, version, calls, errors,"
                    " error_codes, total_seconds, fuel, max_memory, histogram, updated_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        name,
                        version,
                        merged.calls,
                        merged.errors,
                        json.dumps(merged.error_codes),
                        merged.total_seconds,
                        merged.fuel,
                        merged.max_memory,
                        json.dumps({str(k): v for k, v in sorted(merged.histogram.items())}),
                        time.time(),
                    ),
                )
            if logs:
                _append_logs(conn, logs)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        for m in pending.values():
            m.clear()
        self.logs.flushed(upto)
        self.pending_calls = 0
        self.last_flush = time.monotonic()


def _append_logs(conn: apsw.Connection, logs: list[tuple[float, str, int, str, str]]) -> None:
    """Insert ``logs`` (in the caller's transaction) and prune the oldest
    lines beyond LOG_RETENTION lines and LOG_RETENTION_BYTES bytes of
    messages, keeping their sum in _heliosdb_log_size so that a flush costs
    what it inserts and deletes, not what the table holds. The pending
    buffer holds no more than either bound, so only older lines go."""
    before = _int(conn, "SELECT max(id) FROM _heliosdb_log") or 0
    total = _int(conn, "SELECT bytes FROM _heliosdb_log_size WHERE id = 1")
    if total is None:  # a database from before the sum was kept: count once
        total = _int(conn, "SELECT sum(octet_length(message)) FROM _heliosdb_log") or 0
    conn.cursor().executemany(
        "INSERT INTO _heliosdb_log(time, procedure, version, level, message) VALUES (?,?,?,?,?)",
        logs,
    )
    # What was inserted, measured as what is deleted will be: by SQLite.
    sql = "SELECT sum(octet_length(message)) FROM _heliosdb_log WHERE id > ?"
    added = _int(conn, sql, (before,)) or 0
    total += added
    newest = _int(conn, "SELECT max(id) FROM _heliosdb_log") or 0
    total -= _delete_through(conn, newest - LOG_RETENTION)
    for _ in range(2):
        if total <= LOG_RETENTION_BYTES:
            break
        excess, seen = total - LOG_RETENTION_BYTES, 0
        older = "SELECT id, octet_length(message) FROM _heliosdb_log WHERE id <= ? ORDER BY id"
        for row_id, size in conn.cursor().execute(older, (before,)):
            seen += size
            if seen >= excess:
                total -= _delete_through(conn, row_id)
                break
        else:
            # The older lines hold less than the sum says (some were deleted
            # behind the engine's back): now it is known, prune by it.
            total = seen + added
    conn.cursor().execute(
        "INSERT OR REPLACE INTO _heliosdb_log_size(id, bytes) VALUES (1, ?)", (total,)
    )


def _delete_through(conn: apsw.Connection, last_id: int) -> int:
    """Delete the log lines up to id ``last_id``: the message bytes deleted."""
    sql = "SELECT sum(octet_length(message)) FROM _heliosdb_log WHERE id <= ?"
    size = _int(conn, sql, (last_id,)) or 0
    conn.cursor().execute("DELETE FROM _heliosdb_log WHERE id <= ?", (last_id,))
    return size


def _int(conn: apsw.Connection, sql: str, params: tuple[int, ...] = ()) -> int | None:
    """The integer ``sql`` selects (None for no row or NULL)."""
    for (value,) in conn.cursor().execute(sql, params):
        return None if value is None else int(value)
    return None


def read_metrics(conn: apsw.Connection, name: str, version: int) -> Metrics | None:
    for row in conn.cursor().execute(
        "SELECT calls, errors, error_codes, total_seconds, fuel, max_memory, histogram"
        " FROM _heliosdb_metrics WHERE name = ? AND version = ?",
        (name, version),
    ):
        calls, errors, codes, total, fuel, memory, histogram = row
        return Metrics(
            calls=calls,
            errors=errors,
            error_codes=json.loads(codes),
            total_seconds=total,
            fuel=fuel,
            max_memory=memory,
            histogram={int(k): v for k, v in json.loads(histogram).items()},
        )
    return None


def read_logs(
    conn: apsw.Connection,
    procedure: str | None = None,
    since: float | None = None,
    levels: tuple[str, ...] | None = None,
    limit: int = 1000,
) -> list[LogRecord]:
    """Persisted log lines, oldest first (the newest ``limit`` that match)."""
    where: list[str] = []
    params: list[Any] = []
    if procedure is not None:
        where.append("procedure = ?")
        params.append(procedure)
    if since is not None:
        where.append("time >= ?")
        params.append(since)
    if levels:
        where.append(f"level IN ({', '.join('?' * len(levels))})")
        params.extend(levels)
    sql = "SELECT time, procedure, version, level, message FROM _heliosdb_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    rows = list(conn.cursor().execute(sql, (*params, limit)))
    return [LogRecord(t, p, v, lv, m) for t, p, v, lv, m in reversed(rows)]
