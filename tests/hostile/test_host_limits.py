"""Limits bound the work the host does for a procedure, not only the guest's own.

A guest that does almost nothing itself (tests/fixtures/host_work.wat) can
still ask SQLite for unbounded work: a query that never ends, values of a
gigabyte, a million rows, megabytes of log per call. Each case must end in a
typed ResourceLimitExceeded naming the limit, in about the time the limit
allows, with the host's memory and file barely grown; afterwards the host is
fine: the connection has its own settings back and a healthy procedure works.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import heliosdb_wasm as h
from conftest import TEST_LIMITS, b64, wasm_of
from heliosdb_wasm import _core, telemetry

MIB = 1024 * 1024
# A query that never ends, and one that would take hours: the CTE is named t
# because that is the table the procedures may read (CTEs are authorized by name).
ENDLESS = "WITH RECURSIVE t(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM t) SELECT count(*) FROM t"
CROSS_JOIN = (
    "WITH RECURSIVE t(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM t WHERE x < 2000)"
    " SELECT count(*) FROM t a, t b, t c"
)


def _quoted(sql: str) -> str:
    return sql.replace("'", "''")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _create(db: h.Database, name: str, export: str, clauses: str = "") -> None:
    wasm = b64(wasm_of("host_work"))
    db.execute(
        f"CREATE PROCEDURE {name}({'n BIGINT' if export == 'log_bytes' else 'sql TEXT'})"
        f" RETURNS BIGINT LANGUAGE wasm {clauses} USING EXPORT '{export}' AS $wasm${wasm}$wasm$"
    )


def _healthy(db: h.Database) -> None:
    assert db.execute("SELECT healthy(40, 2)").scalar() == 42
    assert db.execute("SELECT run_sql('SELECT count(*) FROM t')").scalar() == 1


@pytest.fixture
def db() -> Iterator[h.Database]:
    with h.Database.open(":memory:", limits=TEST_LIMITS) as database:
        database.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
        wasm = b64(wasm_of("numeric"))
        database.execute(
            "CREATE PROCEDURE healthy(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
            f" USING EXPORT 'add_i64' AS $wasm${wasm}$wasm$"
        )
        _create(database, "run_sql", "run_sql", "CAPABILITIES ('read:t')")
        yield database


@contextmanager
def watchdog(db: h.Database, seconds: float = 8.0) -> Iterator[None]:
    """Interrupts the connection after ``seconds``, so a deadline that is not
    honoured fails the test (an untyped interruption) instead of hanging it."""
    timer = threading.Timer(seconds, db.conn.interrupt)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


# --- the deadline bounds SQLite work -----------------------------------------------


@pytest.mark.parametrize("sql", [ENDLESS, CROSS_JOIN], ids=["endless CTE", "2000^3 cross join"])
def test_a_query_ends_at_the_procedures_deadline(db: h.Database, sql: str) -> None:
    _create(db, "slow_sql", "run_sql", "CAPABILITIES ('read:t') WITH (timeout_seconds = 0.5)")
    started = time.monotonic()
    with watchdog(db), pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT slow_sql(?)", [sql])
    elapsed = time.monotonic() - started
    assert err.value.code == "limit-exceeded" and err.value.limit == "timeout", err.value
    assert err.value.procedure == "slow_sql"
    assert 0.5 <= elapsed < 1.5, elapsed
    # The handler is gone: the user's own long statement runs to its end.
    assert db.execute("SELECT count(*) FROM (" + CROSS_JOIN.replace("2000", "100") + ")").scalar()
    _healthy(db)


def test_a_nested_query_ends_at_its_callers_deadline(db: h.Database) -> None:
    _create(db, "inner_sql", "run_sql", "CAPABILITIES ('read:t') WITH (timeout_seconds = 10)")
    _create(
        db,
        "outer_sql",
        "run_sql",
        "CAPABILITIES ('read:t', 'call:inner_sql') WITH (timeout_seconds = 0.5)",
    )
    started = time.monotonic()
    with watchdog(db):
        status = db.execute("SELECT outer_sql(?)", [f"SELECT inner_sql('{_quoted(ENDLESS)}')"])
    # The callee's timeout is an error the caller's guest got as a status.
    assert status.scalar() == -4  # limit-exceeded
    assert time.monotonic() - started < 1.5
    # After the callee's statement the caller's handler is back in force:
    # the endless rest of the caller's own statement still ends on time.
    started = time.monotonic()
    rest = "WITH RECURSIVE t(x) AS (SELECT inner_sql('SELECT 1') UNION ALL SELECT x + 1 FROM t)"
    with watchdog(db), pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT outer_sql(?)", [rest + " SELECT count(*) FROM t"])
    assert err.value.limit == "timeout" and err.value.procedure == "outer_sql"
    assert time.monotonic() - started < 1.5
    _healthy(db)


def test_a_nested_query_ends_at_its_own_earlier_deadline(db: h.Database) -> None:
    _create(db, "quick_sql", "run_sql", "CAPABILITIES ('read:t') WITH (timeout_seconds = 0.3)")
    _create(db, "patient_sql", "run_sql", "CAPABILITIES ('read:t', 'call:quick_sql')")
    started = time.monotonic()
    with watchdog(db):
        status = db.execute("SELECT patient_sql(?)", [f"SELECT quick_sql('{_quoted(ENDLESS)}')"])
    assert status.scalar() == -4
    assert 0.3 <= time.monotonic() - started < 1.2
    assert db.execute("SELECT patient_sql('SELECT quick_sql(''SELECT 1'')')").scalar() == 1
    _healthy(db)


# --- value sizes and result bytes ----------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT randomblob(2000000)",
        "SELECT zeroblob(2000000)",
        "WITH RECURSIVE t(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM t WHERE x < 100)"
        " SELECT length(group_concat(hex(zeroblob(20000)))) FROM t",
        "SELECT length(printf('%.*c', 2000000, 'x'))",
    ],
    ids=["randomblob", "zeroblob", "group_concat", "printf"],
)
def test_values_over_max_value_bytes_are_refused(db: h.Database, sql: str) -> None:
    _create(db, "big_sql", "run_sql", f"CAPABILITIES ('read:t') WITH (max_value_bytes = {MIB})")
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT big_sql(?)", [sql])
    assert err.value.code == "limit-exceeded" and err.value.limit == "max_value_bytes"
    assert str(MIB) in str(err.value)
    # Just under the limit is fine, and the user's SQL has its own limit back.
    assert db.execute("SELECT big_sql('SELECT zeroblob(1000000)')").scalar() == 1
    assert db.execute("SELECT length(zeroblob(5000000))").scalar() == 5_000_000
    _healthy(db)


def test_query_rows_count_against_max_result_bytes(db: h.Database) -> None:
    _create(db, "rows_sql", "run_sql", f"CAPABILITIES ('read:t') WITH (max_result_bytes = {MIB})")
    rows = "WITH RECURSIVE t(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM t WHERE x < {})"
    many = rows.format(1000) + " SELECT zeroblob(2000) FROM t"  # 2 MB
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT rows_sql(?)", [many])
    assert err.value.code == "limit-exceeded" and err.value.limit == "max_result_bytes"
    text = rows.format(100) + " SELECT printf('%.*c', 2000, 'é') FROM t"  # 400 kB of UTF-8
    assert db.execute("SELECT rows_sql(?)", [text]).scalar() == 100
    # Small cells count too: 200 000 numbers are over 1 MiB at 8 bytes each.
    assert db.execute("SELECT rows_sql(?)", [rows.format(50_000) + " SELECT x FROM t"]).scalar()
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT rows_sql(?)", [rows.format(50_000) + " SELECT x, x, x, x FROM t"])
    assert err.value.limit == "max_result_bytes"
    _healthy(db)


# --- the log ----------------------------------------------------------------------------


def test_the_log_is_bounded_in_memory_and_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        _create(db, "log_bytes", "log_bytes")  # no capabilities at all
        for _ in range(20):  # warm up: instances, caches, the first pages
            db.execute("SELECT log_bytes(?)", [MIB])
        db.persisted_logs()
        rss, size = _rss_bytes(), path.stat().st_size
        for i in range(400):
            assert db.execute("SELECT log_bytes(?)", [MIB]).scalar() == MIB
            if i % 40 == 0:
                db.session.telemetry.last_flush = 0  # flush after this statement
        newest = db.persisted_logs("log_bytes", limit=5)
        in_memory = db.logs("log_bytes")
        rss_growth, file_growth = _rss_bytes() - rss, path.stat().st_size - size
    assert rss_growth < 32 * MIB, rss_growth
    assert file_growth < 32 * MIB, file_growth
    marker = telemetry.TRUNCATED_MARKER.format(MIB)
    clipped = "x" * telemetry.LOG_MESSAGE_BYTES + marker
    assert [r.message for r in newest] == [clipped] * 5
    assert in_memory[-1].message == clipped
    held = sum(len(r.message) + telemetry.LOG_LINE_BYTES for r in in_memory)
    assert held <= telemetry.LOG_MEMORY_BYTES
    with h.Database.open(path) as db:
        stored = db.execute("SELECT sum(octet_length(message)) FROM _heliosdb_log").scalar()
        assert stored == db.execute("SELECT bytes FROM _heliosdb_log_size").scalar()
        assert isinstance(stored, int) and stored <= telemetry.LOG_RETENTION_BYTES
        assert db.persisted_logs("log_bytes", limit=1)[0].message == clipped


def test_the_persisted_log_keeps_its_newest_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telemetry, "LOG_RETENTION_BYTES", 10_000)
    path = tmp_path / "r.db"
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        _create(db, "log_bytes", "log_bytes")
        for n in (3000, 10, 4000, 2500, 900, 1):
            db.execute("SELECT log_bytes(?)", [n])
            db.session.telemetry.last_flush = 0
        db.persisted_logs()
        # The newest 7411 bytes fit in 10 000; with the 3000 before them they do not.
        assert [len(r.message) for r in db.persisted_logs()] == [10, 4000, 2500, 900, 1]
        # A database that predates the kept sum (or lost it) is counted again.
        raw = db.conn.cursor()
        raw.execute("DELETE FROM _heliosdb_log_size")
        db.execute("SELECT log_bytes(9000)")
        assert [len(r.message) for r in db.persisted_logs()] == [900, 1, 9000]
        assert db.execute("SELECT bytes FROM _heliosdb_log_size").scalar() == 9901
        # Lines deleted behind the engine's back make the sum too large: the
        # log is pruned early, never late, until the sum is found out.
        raw.execute("DELETE FROM _heliosdb_log")
        db.execute("SELECT log_bytes(9000)")
        assert [len(r.message) for r in db.persisted_logs()] == [9000]
        assert db.execute("SELECT bytes FROM _heliosdb_log_size").scalar() == 9000


def test_the_in_memory_log_drops_its_oldest_lines_first() -> None:
    line = telemetry.LOG_LINE_BYTES
    log = _core.LogSink(3, 1000, 3, 1000, telemetry.LOG_MESSAGE_BYTES, line, "")
    for i, n in enumerate((100, 200, 300, 400)):
        log.push(0.0, "p", 1, "info", str(i) * n)
    assert [r[4][0] for r in log.memory()] == ["2", "3"]  # 2 and 3 with overhead fit in 1000
    for _ in range(5):
        log.push(0.0, "p", 1, "info", "z")
    assert len(log.memory()) == 3
    log.push(0.0, "p", 1, "info", "w" * 5000)
    assert [r[4][0] for r in log.memory()] == ["w"]  # the newest line always stays
    with pytest.raises(ValueError, match="unknown log level"):
        log.push(0.0, "p", 1, "loud", "x")
    sink = telemetry.new_log_sink()
    sink.push(0.0, "p", 1, "info", "é" * 40_000)
    (record,) = sink.memory()
    assert record[4].endswith(telemetry.TRUNCATED_MARKER.format(80_000))
    assert len(record[4].encode()) == telemetry.LOG_MESSAGE_BYTES + len(
        telemetry.TRUNCATED_MARKER.format(80_000)
    )
    # A lone surrogate cannot be UTF-8: it is logged as U+FFFD (one per
    # byte of its surrogatepass form), not refused.
    sink.push(0.0, "p", 1, "info", "a\ud800b")
    assert sink.memory()[-1][4] == "a" + "\ufffd" * 3 + "b"
