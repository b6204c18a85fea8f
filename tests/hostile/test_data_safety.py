"""No acknowledged write is lost and no failed statement is half applied:
busy files, threads sharing one Database, statements that fail midway.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

import heliosdb_wasm as h
from conftest import TEST_LIMITS, b64, wasm_of

SQL_PROC = "USING EXPORT 'run_sql' AS $wasm${}$wasm$"


def _sql_procedure(db: h.Database, name: str, *caps: str) -> None:
    grants = f"CAPABILITIES ({', '.join(repr(c) for c in caps)})" if caps else ""
    db.execute(
        f"CREATE PROCEDURE {name}(sql TEXT) RETURNS TEXT LANGUAGE wasm {grants} "
        + SQL_PROC.format(b64(wasm_of("host_sql")))
    )


def _ledger(db: h.Database) -> None:
    db.execute(
        "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);"
        "CREATE TABLE transfers(id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER);"
        "INSERT INTO accounts VALUES (1, 1000), (2, 1000);"
        "CREATE TABLE seq(n INTEGER); INSERT INTO seq VALUES (1), (2), (3), (4), (5);"
        "CREATE PROCEDURE transfer(src BIGINT, dst BIGINT, amount BIGINT, mode BIGINT)"
        " RETURNS BIGINT LANGUAGE wasm"
        " CAPABILITIES ('write:accounts', 'read:accounts', 'write:transfers')"
        f" AS $wasm${b64(wasm_of('ledger'))}$wasm$"
    )


def _untouched(db: h.Database) -> None:
    assert db.execute("SELECT count(*) FROM transfers").scalar() == 0
    assert db.execute("SELECT balance FROM accounts ORDER BY id").rows == [(1000,), (1000,)]


# --- one statement: all or nothing -----------------------------------------------------


def test_a_statement_failing_on_its_fourth_row_keeps_nothing_of_the_first_three(
    tmp_path: Path,
) -> None:
    with h.Database.open(tmp_path / "a.db", limits=TEST_LIMITS) as db:
        _ledger(db)
        failing = "SELECT transfer(1, 2, 10, CASE WHEN n = 4 THEN 1 ELSE 0 END) FROM seq"
        with pytest.raises(h.ProcedureTrap):
            db.execute(failing)
        _untouched(db)
        assert db.conn.getautocommit()
        # Inside the user's transaction only the failed statement is undone.
        db.execute("BEGIN")
        db.execute("SELECT transfer(1, 2, 5, 0)")
        with pytest.raises(h.ProcedureTrap):
            db.execute(failing)
        db.execute("COMMIT")
        assert db.execute("SELECT count(*) FROM transfers").scalar() == 1
        assert db.execute("SELECT sum(balance) FROM accounts").scalar() == 2000


def test_a_batch_is_all_or_nothing(tmp_path: Path) -> None:
    with h.Database.open(tmp_path / "a.db", limits=TEST_LIMITS) as db:
        _ledger(db)
        with pytest.raises(h.ProcedureTrap):
            db.call_batch("transfer", [[1] * 5, [2] * 5, [10] * 5, [0, 0, 0, 1, 0]])
        _untouched(db)
        assert db.call_batch("transfer", [[1, 2], [2, 1], [10, 20], [0, 0]]) == [10, 20]
        assert db.execute("SELECT count(*) FROM transfers").scalar() == 2


def test_one_statement_commits_once(tmp_path: Path) -> None:
    with h.Database.open(tmp_path / "a.db", limits=TEST_LIMITS) as db:
        _ledger(db)
        commits = []
        db.conn.set_commit_hook(lambda: commits.append(1) or False)
        db.execute("SELECT transfer(1, 2, 1, 0) FROM seq")
        assert len(commits) == 1
        assert db.execute("SELECT count(*) FROM transfers").scalar() == 5


# --- busy files ---------------------------------------------------------------------------


def test_a_commit_that_finds_the_file_busy_is_a_typed_error_and_leaves_no_transaction(
    tmp_path: Path,
) -> None:
    path = tmp_path / "busy.db"
    with h.Database.open(path, limits=TEST_LIMITS, wal=False, busy_timeout=0.2) as db:
        assert db.execute("PRAGMA journal_mode").scalar() == "delete"
        db.execute("CREATE TABLE pub(id INTEGER PRIMARY KEY, v TEXT)")
        _sql_procedure(db, "writer", "write:pub")
        reader = apsw.Connection(str(path))
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM pub").fetchall()  # holds a read lock
        attempts = [
            lambda: db.execute("INSERT INTO pub(v) VALUES ('direct')"),
            lambda: db.execute("SELECT writer('INSERT INTO pub(v) VALUES (''sql'')')"),
            lambda: db.call("writer", "INSERT INTO pub(v) VALUES ('call')"),
        ]
        for attempt in attempts:
            with pytest.raises(h.DatabaseBusy) as err:
                attempt()
            assert err.value.code == "busy" and err.value.retryable
            assert db.conn.getautocommit(), "left inside a transaction"
        reader.execute("COMMIT")
        for attempt in attempts:  # retried, they commit
            attempt()
        reader.close()
    with h.Database.open(path, wal=False) as db:
        rows = db.execute("SELECT v FROM pub ORDER BY id").rows
    assert rows == [("direct",), ("sql",), ("call",)]


def test_a_procedures_own_statement_that_finds_the_file_busy_is_a_typed_error(
    tmp_path: Path,
) -> None:
    """The core runs the procedure's INSERT (statement.rs): another
    connection's write lock makes it DatabaseBusy, the call ends, nothing of
    it stays, and the retry commits."""
    path = tmp_path / "busy.db"
    with h.Database.open(path, limits=TEST_LIMITS, busy_timeout=0.2) as db:
        db.execute("CREATE TABLE pub(id INTEGER PRIMARY KEY, v TEXT)")
        _sql_procedure(db, "writer", "write:pub")
        other = apsw.Connection(str(path))
        other.execute("BEGIN IMMEDIATE")  # holds the write lock
        with pytest.raises(h.DatabaseBusy) as err:
            db.call("writer", "INSERT INTO pub(v) VALUES ('call')")
        assert err.value.procedure == "writer" and err.value.retryable
        assert db.conn.getautocommit(), "left inside a transaction"
        other.execute("ROLLBACK")
        other.close()
        assert db.execute("SELECT count(*) FROM pub").scalar() == 0
        db.call("writer", "INSERT INTO pub(v) VALUES ('call')")
        assert db.execute("SELECT v FROM pub").rows == [("call",)]


def test_opening_a_locked_file_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    h.Database.open(path, wal=False).close()
    holder = apsw.Connection(str(path))
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(h.DatabaseBusy):
            h.Database.open(path, busy_timeout=0.1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with h.Database.open(path) as db:  # and once free, it opens (and turns to WAL)
        assert db.execute("PRAGMA journal_mode").scalar() == "wal"


# --- threads sharing one Database -------------------------------------------------------------


def test_threads_sharing_a_database_keep_their_own_grants_and_every_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.db"
    db = h.Database.open(path, limits=TEST_LIMITS, busy_timeout=5)
    db.execute(
        "CREATE TABLE pub(id INTEGER PRIMARY KEY, who TEXT);"
        "CREATE TABLE secrets(x TEXT); INSERT INTO secrets VALUES ('s3cr3t');"
    )
    _sql_procedure(db, "nogrants")
    _sql_procedure(db, "writer", "write:pub")
    _sql_procedure(db, "snoop", "read:secrets")
    stop = time.monotonic() + 3.0
    acknowledged: Counter[str] = Counter()
    problems: list[str] = []
    lock = threading.Lock()

    def work(kind: str, seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop:
            tag = f"{kind}{seed}"
            try:
                if kind == "nogrants":
                    db.execute("SELECT nogrants('SELECT x FROM secrets')")
                    problems.append("a procedure without grants read the secret")
                elif kind == "snoop":
                    assert db.call("snoop", "SELECT x FROM secrets") == "s3cr3t"
                elif kind == "writer":
                    db.execute(f"SELECT writer('INSERT INTO pub(who) VALUES (''{tag}'')')")
                    with lock:
                        acknowledged[tag] += 1
                elif kind == "tx":
                    db.execute("BEGIN")
                    n = rng.randint(1, 3)
                    for _ in range(n):
                        db.execute("INSERT INTO pub(who) VALUES (?)", [tag])
                    db.execute("COMMIT")
                    with lock:
                        acknowledged[tag] += n
            except h.CapabilityDenied as exc:
                if kind != "nogrants":
                    problems.append(f"{kind}: {exc}")
            except Exception as exc:  # noqa: BLE001 - every other outcome is a finding
                problems.append(f"{kind}: {type(exc).__name__}: {exc}")

    kinds = ["nogrants", "nogrants", "snoop", "snoop", "writer", "writer", "tx", "tx"]
    threads = [threading.Thread(target=work, args=(k, i)) for i, k in enumerate(kinds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    db.close()
    assert problems == [], problems[:5]
    with h.Database.open(path) as db:
        stored = Counter(str(r[0]) for r in db.execute("SELECT who FROM pub"))
    assert stored == acknowledged
    assert sum(acknowledged.values()) > 50


def test_another_threads_open_transaction_is_waited_for_then_refused(tmp_path: Path) -> None:
    db = h.Database.open(tmp_path / "t.db", busy_timeout=0.3)
    db.execute("CREATE TABLE t(x)")
    db.execute("BEGIN")
    db.execute("INSERT INTO t VALUES (1)")
    outcome: list[BaseException | None] = []

    def other() -> None:
        try:
            db.execute("INSERT INTO t VALUES (2)")
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], h.DatabaseBusy)
    db.execute("ROLLBACK")
    # With the transaction over, the other thread's statement goes through.
    t = threading.Thread(target=other)
    t.start()
    t.join(5)
    assert outcome[1] is None
    assert db.execute("SELECT x FROM t").rows == [(2,)]
    db.close()


def test_a_closed_database_says_so(tmp_path: Path) -> None:
    db = h.Database.open(tmp_path / "c.db", limits=TEST_LIMITS)
    _sql_procedure(db, "p")
    db.close()
    db.close()  # harmless
    for use in (lambda: db.execute("SELECT 1"), lambda: db.call("p", "SELECT 1")):
        with pytest.raises(h.InvalidArgument, match="closed"):
            use()


_KILLED_WRITER = """
import sys, heliosdb_wasm as h
db = h.Database.open(sys.argv[1])
n = 0
while True:
    db.execute("SELECT writer('INSERT INTO pub(v) VALUES (''x'')')")
    n += 1
    print(n, flush=True)
"""


def _acknowledged_until_killed(script: str, path: Path, seconds: float, at_least: int) -> int:
    """Runs ``script`` on ``path`` in a child that prints the count of the
    writes it has had acknowledged, SIGKILLs it once ``seconds`` passed and
    ``at_least`` were acknowledged: the last count it printed."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    acknowledged = 0
    start = time.monotonic()
    for line in child.stdout:
        acknowledged = int(line)
        if time.monotonic() - start > seconds and acknowledged >= at_least:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    for line in child.stdout:  # what it printed before it died
        acknowledged = int(line)
    return acknowledged


def test_sigkill_in_the_middle_of_writes_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        db.execute("CREATE TABLE pub(id INTEGER PRIMARY KEY, v TEXT)")
        _sql_procedure(db, "writer", "write:pub")
    acknowledged = _acknowledged_until_killed(_KILLED_WRITER, path, seconds=1.5, at_least=21)
    with h.Database.open(path) as db:
        assert db.execute("PRAGMA integrity_check").scalar() == "ok"
        stored = db.execute("SELECT count(*) FROM pub").scalar()
    # Every acknowledged write is there; at most the one in flight besides.
    assert acknowledged <= stored <= acknowledged + 1  # type: ignore[operator]


_KILLED_LOGGER = """
import sys, heliosdb_wasm as h
db = h.Database.open(sys.argv[1])
n = 0
while True:
    db.execute("INSERT INTO pub(v) SELECT logs(?)", [n])
    n += 1
    print(n, flush=True)
"""


def test_sigkill_while_procedures_log_leaves_whole_lines_and_every_write(
    tmp_path: Path,
) -> None:
    """The procedure log is flushed in a transaction of its own after the
    statements that logged committed (at most a second or 10 000 calls
    later): a process killed meanwhile loses the lines not flushed yet —
    never a write it acknowledged, never half a line, and the file is
    sound."""
    path = tmp_path / "logged.db"
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        db.execute("CREATE TABLE pub(id INTEGER PRIMARY KEY, v INTEGER)")
        db.execute(
            "CREATE PROCEDURE logs(x BIGINT) RETURNS BIGINT LANGUAGE wasm"
            f" AS $wasm${b64(wasm_of('hosted'))}$wasm$"
        )
    # Past a flush or two.
    acknowledged = _acknowledged_until_killed(_KILLED_LOGGER, path, seconds=2.5, at_least=0)
    with h.Database.open(path) as db:
        assert db.execute("PRAGMA integrity_check").scalar() == "ok"
        stored = db.execute("SELECT count(*) FROM pub").scalar()
        lines = db.persisted_logs("logs", limit=1_000_000)
    assert acknowledged <= stored <= acknowledged + 1  # type: ignore[operator]
    assert 0 < len(lines) <= stored  # type: ignore[operator]
    assert {(r.level, r.message, r.version) for r in lines} == {("info", "hello from the core", 1)}


def test_a_transaction_whose_thread_ended_is_rolled_back_not_waited_for(tmp_path: Path) -> None:
    db = h.Database.open(tmp_path / "t.db", busy_timeout=5)
    db.execute("CREATE TABLE t(x)")

    def forgetful() -> None:
        db.execute("BEGIN")
        db.execute("INSERT INTO t VALUES (1)")  # and the thread ends: no COMMIT

    t = threading.Thread(target=forgetful)
    t.start()
    t.join(5)
    start = time.monotonic()
    db.execute("INSERT INTO t VALUES (2)")
    assert time.monotonic() - start < 1, "waited for a thread that is gone"
    assert db.execute("SELECT x FROM t").rows == [(2,)]
    db.close()


def test_threads_calling_a_numeric_procedure_while_its_version_changes(tmp_path: Path) -> None:
    """The core's SQL function and Numeric under threads: scans in SQL,
    Database.call, call_batch, and a thread switching the active version
    (which releases the Scalar's Numeric) — every answer is one version's
    or the other's, nothing crashes, nothing deadlocks."""
    numeric = b64(wasm_of("numeric"))
    with h.Database.open(tmp_path / "t.db") as db:
        db.execute("CREATE TABLE t(x INTEGER)")
        db.execute(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 200)"
            " INSERT INTO t SELECT x FROM n"
        )
        for export in ("add_i64", "mul_i64"):
            db.execute(
                "CREATE OR REPLACE PROCEDURE f(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
                f" USING EXPORT '{export}' AS $wasm${numeric}$wasm$"
            )
        sums = {sum(x + 2 for x in range(1, 201)), sum(x * 2 for x in range(1, 201))}
        stop = threading.Event()
        errors: list[BaseException] = []
        seen: list[object] = []

        def scan() -> None:
            while not stop.is_set():
                seen.append(db.execute("SELECT sum(f(x, 2)) FROM t").scalar())

        def call() -> None:
            while not stop.is_set():
                seen.append(db.call("f", 3, 2))
                seen.append(tuple(db.call_batch("f", [[3, 4], [2, 2]])))

        def switch() -> None:
            version = 1
            while not stop.is_set():
                db.execute(f"ALTER PROCEDURE f USE VERSION {version}")
                version = 3 - version

        def guarded(fn: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                try:
                    fn()
                except BaseException as exc:  # noqa: BLE001 - collected for the assert
                    errors.append(exc)

            return run

        threads = [threading.Thread(target=guarded(fn)) for fn in (scan, scan, call, call, switch)]
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
        assert errors == []
        assert set(seen) <= sums | {5, 6, (5, 6), (6, 8)}
        assert sums <= set(seen)  # both versions answered scans (~10 000 answers in 2 s here)
