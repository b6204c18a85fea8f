"""Hostile clients of the PostgreSQL endpoint: each case must end in a
PostgreSQL error with the right SQLSTATE (docs/security.md, "wire endpoint
limits"), never a traceback or a dead thread, while every other client goes
on being served. Servers listen on 127.0.0.1 only, with small limits so that
every case is quick; every wait is bounded."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import pytest

from conftest import server_stays_quiet
from heliosdb_wasm import Result
from heliosdb_wasm.pgwire import Server, WireLimits, command_tag, translate_placeholders
from heliosdb_wasm.pgwire.codec import _decode_bytea_text
from heliosdb_wasm.pgwire.dialect import _main_verb_of_with, keywords, sqlite_transaction

INFINITE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
INFINITE_ROWS = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x, 'padding' FROM c"
)
MIB = 1024 * 1024


# --- harness ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_tracebacks(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Whatever a client does, the server logs no error and no thread dies."""
    with server_stays_quiet(capfd):
        yield


@contextmanager
def serving(tmp_path: Path, **limits: Any) -> Iterator[Server]:
    with Server(
        tmp_path / "wire.db", auth="trust", port=0, wire_limits=WireLimits(**limits)
    ) as srv:
        yield srv
        connections_end(srv)


def connect(server: Server, **kwargs: Any) -> psycopg.Connection[Any]:
    host, port = server.address
    return psycopg.connect(
        host=host,
        port=port,
        user="hostile",
        dbname="wire",
        connect_timeout=5,
        autocommit=True,
        **kwargs,
    )


def connections_end(server: Server, timeout: float = 5.0) -> None:
    """Wait until the server serves no connection (every thread ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with server._lock:
            threads = [t for _c, t in server._connections.values()]
        if not threads:
            return
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0))
    assert not server._connections, "connections still served"


def pgwire_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("pgwire-"))


def until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


Message = tuple[str, bytes]


def fields_of(payload: bytes) -> dict[str, str]:
    """The fields of an ErrorResponse or NoticeResponse, by code letter."""
    out = {}
    for part in payload.rstrip(b"\0").split(b"\0"):
        if part:
            out[part[:1].decode()] = part[1:].decode()
    return out


class Raw:
    """A hand-made protocol client for what real clients never do."""

    def __init__(self, server: Server, *, startup: bool = True, timeout: float = 10) -> None:
        self.sock = socket.create_connection(server.address, timeout=timeout)
        self.buffer = b""
        if startup:
            self.startup()
            self.until_ready()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def startup(self) -> None:
        params = b"user\0raw\0database\0raw\0\0"
        self.sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        self.sock.sendall(kind + struct.pack("!i", len(payload) + 4) + payload)

    def query(self, sql: str) -> list[Message]:
        self.send(b"Q", sql.encode() + b"\0")
        return self.until_ready()

    def parse(self, name: str, sql: str) -> None:
        self.send(b"P", name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!h", 0))

    def bind_execute(self, portal: str, statement: str, max_rows: int = 1) -> None:
        self.send(b"B", f"{portal}\0{statement}\0".encode() + struct.pack("!hhh", 0, 0, 0))
        self.send(b"E", portal.encode() + b"\0" + struct.pack("!i", max_rows))

    def sync(self) -> list[Message]:
        self.send(b"S")
        return self.until_ready()

    def message(self) -> Message | None:
        """The next message, None at the end of the stream."""
        while len(self.buffer) < 5 or len(self.buffer) < 1 + int.from_bytes(self.buffer[1:5]):
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buffer += chunk
        length = int.from_bytes(self.buffer[1:5])
        kind, payload = self.buffer[:1].decode(), self.buffer[5 : 1 + length]
        self.buffer = self.buffer[1 + length :]
        return kind, payload

    def until_ready(self) -> list[Message]:
        messages = []
        while (m := self.message()) is not None:
            messages.append(m)
            if m[0] == "Z":
                return messages
        raise AssertionError(f"connection closed after {messages}")

    def until_closed(self) -> list[Message]:
        messages = []
        while (m := self.message()) is not None:
            messages.append(m)
        return messages


def errors(messages: list[Message]) -> list[tuple[str, str]]:
    """(severity, SQLSTATE) of each ErrorResponse."""
    found = []
    for kind, payload in messages:
        if kind == "E":
            f = fields_of(payload)
            found.append((f["V"], f["C"]))
    return found


# --- 1. connections --------------------------------------------------------------------------


def test_a_connection_over_max_connections_gets_53300_and_the_others_are_served(
    tmp_path: Path,
) -> None:
    with serving(tmp_path, max_connections=3, statement_timeout=10) as srv:
        clients = [connect(srv) for _ in range(3)]
        with Raw(srv, startup=False) as extra:
            extra.startup()
            assert errors(extra.until_closed()) == [("FATAL", "53300")]
        # psycopg asks for SSL first: refused, then told in its own protocol.
        with pytest.raises(psycopg.OperationalError, match="too many clients"):
            connect(srv)
        # A flood of connections that send nothing costs no thread each.
        threads = pgwire_threads()
        flood = [socket.create_connection(srv.address, timeout=5) for _ in range(200)]
        time.sleep(0.2)
        assert pgwire_threads() == threads
        assert [c.execute("SELECT 1").fetchone() for c in clients] == [(1,)] * 3
        for s in flood:
            s.close()
        # A cancel request still gets through when the server is full.
        timer = threading.Timer(0.3, clients[0].cancel_safe)
        timer.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            clients[0].execute(INFINITE)
        timer.join()
        clients.pop().close()
        assert until(lambda: len(srv._connections) < 3)
        with connect(srv) as again:
            assert again.execute("SELECT 2").fetchone() == (2,)
        for c in clients:
            c.close()


# --- 2. time: startup and idle sessions --------------------------------------------------------


def test_the_startup_must_finish_within_authentication_timeout(tmp_path: Path) -> None:
    with serving(tmp_path, authentication_timeout=0.5) as srv:
        started = time.monotonic()
        with Raw(srv, startup=False) as silent:
            assert errors(silent.until_closed()) == [("FATAL", "57014")]
        assert time.monotonic() - started < 3
        # A startup packet trickling in a byte at a time does not reset the clock.
        params = b"user\0slow\0database\0slow\0\0"
        packet = struct.pack("!ii", 8 + len(params), 196608) + params
        started = time.monotonic()
        with Raw(srv, startup=False) as slow:
            with pytest.raises(OSError):
                for byte in packet:
                    slow.sock.sendall(bytes([byte]))
                    time.sleep(0.1)
            assert errors(slow.until_closed()) == [("FATAL", "57014")]
        assert time.monotonic() - started < 3
        with connect(srv) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_an_idle_session_is_closed_with_57p05_but_not_inside_a_transaction(
    tmp_path: Path,
) -> None:
    with serving(tmp_path, idle_session_timeout=0.4, idle_in_transaction_session_timeout=0) as srv:
        with Raw(srv) as idle:
            started = time.monotonic()
            assert errors(idle.until_closed()) == [("FATAL", "57P05")]
            assert 0.3 < time.monotonic() - started < 3
        with Raw(srv) as busy:
            busy.query("BEGIN")
            time.sleep(0.8)  # idle_in_transaction_session_timeout is 0: none
            assert errors(busy.query("SELECT 1")) == []
            busy.query("COMMIT")
            assert errors(busy.until_closed()) == [("FATAL", "57P05")]
        with connect(srv) as conn:
            conn.execute("SET idle_session_timeout = '100ms'")
            assert conn.execute("SHOW idle_session_timeout").fetchone() == ("100ms",)
            time.sleep(0.3)
            with pytest.raises(psycopg.OperationalError, match="idle-session timeout"):
                conn.execute("SELECT 1")


def test_idle_in_transaction_is_closed_with_25p03_and_its_locks_are_freed(tmp_path: Path) -> None:
    with serving(tmp_path, idle_session_timeout=0, idle_in_transaction_session_timeout=0.4) as srv:
        with connect(srv) as setup:
            setup.execute("CREATE TABLE t(x INTEGER)")
        with Raw(srv) as holder, connect(srv) as writer:
            holder.query("BEGIN IMMEDIATE")
            holder.query("INSERT INTO t VALUES (1)")
            started = time.monotonic()
            assert errors(holder.until_closed()) == [("FATAL", "25P03")]
            assert time.monotonic() - started < 3
            writer.execute("INSERT INTO t VALUES (2)")  # the write lock was released
            assert writer.execute("SELECT x FROM t").fetchall() == [(2,)]
        with Raw(srv) as idle:
            time.sleep(0.8)  # idle_session_timeout is 0: an idle session may stay
            assert errors(idle.query("SELECT 1")) == []


# --- 3. message size ---------------------------------------------------------------------------


def test_a_message_over_max_message_bytes_gets_54000_and_the_session_goes_on(
    tmp_path: Path,
) -> None:
    assert WireLimits().max_message_bytes == 16 * MIB
    with serving(tmp_path, max_message_bytes=1 * MIB) as srv:
        with Raw(srv) as raw:
            answer = raw.query("SELECT '" + "x" * (2 * MIB) + "'")
            assert errors(answer) == [("ERROR", "54000")]
            assert answer[-1] == ("Z", b"I")
            assert errors(raw.query("SELECT 1")) == []
            # In a pipeline: the error, then everything skipped until Sync.
            raw.send(b"P", b"\0SELECT '" + b"y" * (2 * MIB) + b"'\0\0\0")
            raw.bind_execute("", "")
            assert errors(raw.sync()) == [("ERROR", "54000")]
            assert errors(raw.query("SELECT 2")) == []
        with connect(srv) as conn:
            with pytest.raises(psycopg.errors.ProgramLimitExceeded):
                conn.execute("SELECT length(%s)", ["z" * (2 * MIB)])
            assert conn.execute("SELECT length(%s)", ["z" * 1000]).fetchone() == (1000,)
        # A claim of 2 GiB that never comes holds no memory and ends with the client.
        with Raw(srv) as liar:
            liar.sock.sendall(b"Q" + struct.pack("!i", 2**31 - 1) + b"SELECT")
        connections_end(srv)
        # A message type that has no body must not claim one.
        with Raw(srv) as raw:
            raw.sock.sendall(b"S" + struct.pack("!i", 2 * MIB))
            assert errors(raw.until_closed()) == [("FATAL", "08P01")]


def test_copy_holds_at_most_one_row_and_a_row_past_the_limit_is_refused(tmp_path: Path) -> None:
    with serving(tmp_path, max_message_bytes=1 * MIB) as srv, connect(srv) as conn:
        conn.execute("CREATE TABLE c(x TEXT)")
        # Many rows in small messages stream through in batches.
        with conn.cursor().copy("COPY c FROM STDIN") as copy:
            for _ in range(200):
                copy.write("row\n" * 100)
        assert conn.execute("SELECT count(*) FROM c").fetchone() == (20_000,)
        # One row that never ends is refused when it passes the limit; the
        # whole COPY is undone and the session goes on.
        with (
            pytest.raises(psycopg.errors.ProgramLimitExceeded, match="COPY row 1 is longer"),
            conn.cursor().copy("COPY c FROM STDIN") as copy,
        ):
            for _ in range(40):
                copy.write("y" * (64 * 1024))
        assert conn.execute("SELECT count(*) FROM c").fetchone() == (20_000,)


def test_a_client_gone_in_the_middle_of_copy_leaves_nothing_and_no_lock(tmp_path: Path) -> None:
    """As if the client were SIGKILLed: its socket closes while COPY rows are
    in flight (some already inserted in a batch); the COPY is rolled back and
    the write lock freed."""
    with serving(tmp_path) as srv:
        with connect(srv) as setup:
            setup.execute("CREATE TABLE c(x TEXT)")
        with Raw(srv) as dying:
            dying.send(b"Q", b"COPY c FROM STDIN\0")
            assert dying.message() is not None  # CopyInResponse
            dying.send(b"d", b"row\n" * 1500)  # past one batch of 500: rows were inserted
            time.sleep(0.3)
        connections_end(srv)
        with connect(srv) as conn:
            assert conn.execute("SELECT count(*) FROM c").fetchone() == (0,)
            conn.execute("INSERT INTO c VALUES ('after')")  # no lock was left behind
            assert conn.execute("SELECT count(*) FROM c").fetchone() == (1,)


# --- 4. statement time -------------------------------------------------------------------------


def test_statement_timeout_cancels_with_57014_and_the_connection_stays_usable(
    tmp_path: Path,
) -> None:
    with serving(tmp_path, statement_timeout=0.5) as srv, connect(srv) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("500ms",)
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            conn.execute(INFINITE)
        assert time.monotonic() - started < 5
        assert conn.execute("SELECT 1").fetchone() == (1,)
        # A session may not raise the server's limit...
        conn.execute("SET statement_timeout = '1h'")
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute(INFINITE)
        assert time.monotonic() - started < 5
        # ...but may lower it, through the extended protocol too.
        conn.execute("SET statement_timeout = 50")
        assert conn.execute("SHOW statement_timeout").fetchone() == ("50ms",)
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute(INFINITE.replace("SELECT 1", "SELECT %s"), [1])
        assert time.monotonic() - started < 0.45
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SET statement_timeout = 'forever'")
        conn.execute("RESET statement_timeout")
        assert conn.execute("SHOW statement_timeout").fetchone() == ("500ms",)
        # Inside a transaction the timeout fails the transaction, as in PostgreSQL.
        conn.execute("CREATE TABLE t(x INTEGER)")
        with pytest.raises(psycopg.errors.QueryCanceled), conn.transaction():
            conn.execute("INSERT INTO t VALUES (1)")
            conn.execute(INFINITE)
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_a_session_with_no_server_statement_timeout_may_set_its_own(tmp_path: Path) -> None:
    with serving(tmp_path, statement_timeout=0) as srv:
        with connect(srv, options="-c statement_timeout=200ms") as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() == ("200ms",)
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute(INFINITE)
        with Raw(srv, startup=False) as bad:
            params = b"user\0raw\0options\0-c statement_timeout=soon\0\0"
            bad.sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
            assert errors(bad.until_closed()) == [("FATAL", "22023")]


# --- 5. PRAGMAs that change the file for everyone ---------------------------------------------


@pytest.mark.parametrize(
    "pragma",
    [
        "journal_mode = DELETE",
        "locking_mode = EXCLUSIVE",
        "page_size = 512",
        "auto_vacuum = FULL",
        "synchronous = OFF",
        "wal_autocheckpoint = 0",
        "user_version = 7",
        "application_id = 7",
        "busy_timeout = 2147483647",
        "cache_size = -100000000",
        "temp_store = MEMORY",
        "mmap_size = 1000000000",
        "threads = 8",
        "soft_heap_limit = 1",
        "hard_heap_limit = 1",
        "wal_checkpoint(TRUNCATE)",
    ],
)
def test_pragmas_that_change_the_file_or_the_process_are_refused(
    tmp_path: Path, pragma: str
) -> None:
    with serving(tmp_path) as srv, connect(srv) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"PRAGMA {pragma}")
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_pragmas_that_only_read_stay_allowed(tmp_path: Path) -> None:
    with serving(tmp_path) as srv, connect(srv) as conn:
        conn.execute("CREATE TABLE t(x INTEGER)")
        for pragma in (
            "journal_mode",
            "synchronous",
            "user_version",
            "table_info(t)",
            "foreign_keys = ON",
            "wal_checkpoint(PASSIVE)",
            "quick_check",
        ):
            conn.execute(f"PRAGMA {pragma}")


# --- 6. statement memory ---------------------------------------------------------------------


def test_a_value_over_max_value_bytes_gets_54000(tmp_path: Path) -> None:
    assert WireLimits().max_value_bytes == 128 * MIB
    with serving(tmp_path) as srv, connect(srv) as conn:
        started = time.monotonic()
        with pytest.raises(psycopg.errors.ProgramLimitExceeded):
            conn.execute("SELECT length(randomblob(999999999))")
        assert time.monotonic() - started < 2  # refused before it is built
    with serving(tmp_path, max_value_bytes=4 * MIB) as srv, connect(srv) as conn:
        for sql in (
            "SELECT length(group_concat(randomblob(100000))) FROM"
            " (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 100)"
            " SELECT x FROM c)",
            "SELECT length(zeroblob(5000000))",
            "SELECT length(printf('%.*c', 5000000, 'x'))",
            "SELECT length(replace(hex(zeroblob(1000000)), '0', '000'))",
        ):
            with pytest.raises(psycopg.errors.ProgramLimitExceeded):
                conn.execute(sql)
        assert conn.execute("SELECT length(randomblob(1000000))").fetchone() == (1000000,)


def test_buffered_results_stop_at_max_buffer_bytes(tmp_path: Path) -> None:
    with serving(tmp_path, max_buffer_bytes=8 * MIB, statement_timeout=20) as srv:
        with connect(srv) as conn:
            conn.execute("CREATE TABLE t(x INTEGER, pad TEXT)")
            conn.execute(
                "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
                " LIMIT 1000) SELECT x, 'some padding text' FROM c"
            )
            for sql, params in (
                (INFINITE_ROWS, None),  # never ends: only the cap stops it
                ("SELECT * FROM t a, t b, t c", None),
                ("SELECT * FROM t a, t b, t c WHERE a.x > %s", [0]),  # extended protocol
            ):
                started = time.monotonic()
                with pytest.raises(psycopg.errors.ProgramLimitExceeded):
                    conn.execute(sql, params)
                assert time.monotonic() - started < 10
            assert len(conn.execute("SELECT * FROM t a, t b LIMIT 20000").fetchall()) == 20000
        # Portals kept open in a transaction count too, and are freed with it.
        with Raw(srv) as raw:
            raw.query("BEGIN")
            raw.parse("big", "SELECT * FROM t a, t b LIMIT 20000")
            for i in range(20):
                raw.bind_execute(f"p{i}", "big")
            answer = raw.sync()
            assert ("ERROR", "54000") in errors(answer)
            raw.query("COMMIT")
            raw.bind_execute("again", "big")
            assert errors(raw.sync()) == []
            # And so do prepared statements.
            text = "SELECT 1 -- " + "x" * 500_000
            for i in range(20):
                raw.parse(f"s{i}", text)
            assert ("ERROR", "54000") in errors(raw.sync())
            assert errors(raw.query("DEALLOCATE ALL")) == []
            raw.parse("fits", text)
            assert errors(raw.sync()) == []


def test_session_variables_are_bounded(tmp_path: Path) -> None:
    with serving(tmp_path) as srv, connect(srv) as conn:
        with pytest.raises(psycopg.errors.ProgramLimitExceeded):
            conn.execute("SET myapp.blob = '" + "x" * 100_000 + "'")
        with pytest.raises(psycopg.errors.ProgramLimitExceeded):
            for i in range(100):
                conn.execute(f"SET myapp.v{i} = '" + "x" * 60_000 + "'")
        conn.execute("RESET ALL")
        conn.execute("SET myapp.small = 'ok'")
        assert conn.execute("SHOW myapp.small").fetchone() == ("ok",)


# --- 7. the endpoint's own parsing is linear --------------------------------------------------


def bounded(call: Callable[[], object], seconds: float, peak_bytes: int | None) -> None:
    started = time.perf_counter()
    call()
    elapsed = time.perf_counter() - started
    assert elapsed < seconds, f"took {elapsed:.2f} s"
    if peak_bytes is None:
        return
    tracemalloc.start()
    try:
        call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < peak_bytes, f"peaked at {peak / MIB:.1f} MiB"


@pytest.mark.parametrize(
    ("sql", "traced"),
    [
        pytest.param("SELECT $1, '" + "x" * 10_000_000 + "'", True, id="10MB-literal"),
        pytest.param(
            "WITH a AS (SELECT 1) SELECT $1, '" + "x" * 10_000_000 + "'", True, id="10MB-with"
        ),
        pytest.param("SELECT $1 " + "[" * 150_000, True, id="150KB-open-bracket"),
        # Token-dense: a match object each, so tracemalloc would take seconds.
        pytest.param("SELECT " + ",".join(["$1"] * 700_000), False, id="2MB-placeholders"),
        pytest.param(
            "WITH a AS (SELECT 1) SELECT " + ",".join(["a"] * 1_000_000), False, id="2MB-words"
        ),
        pytest.param("COMMIT " + "/*" * 75_000, False, id="150KB-open-comments"),
        pytest.param("--\n" * 330_000 + "BEGIN", False, id="1MB-line-comments"),
        pytest.param("/**/" * 250_000 + "COMMIT WORK", False, id="1MB-block-comments"),
    ],
)
def test_the_endpoints_own_parsing_is_linear(sql: str, traced: bool) -> None:
    # Each took seconds or built gigabytes before (see docs/security.md).
    def peak(n: int) -> int | None:
        return n if traced else None

    bounded(lambda: translate_placeholders(sql), 2.0, peak(2 * len(sql) + MIB))
    bounded(lambda: keywords(sql, 6), 0.5, peak(MIB))
    bounded(lambda: command_tag(sql, Result()), 2.0, peak(MIB))
    bounded(lambda: _main_verb_of_with(sql), 2.0, peak(MIB))
    bounded(lambda: sqlite_transaction(sql), 2.0, peak(MIB))
    # Comment runs are where keywords kept backtracking state (78 MB per MB).
    if not traced and sql.endswith(("BEGIN", "WORK")):
        tracemalloc.start()
        try:
            assert keywords(sql, 6)
            assert tracemalloc.get_traced_memory()[1] < MIB
        finally:
            tracemalloc.stop()


def test_placeholders_past_sqlites_limit_are_refused_before_any_allocation(tmp_path: Path) -> None:
    with serving(tmp_path) as srv, connect(srv) as conn:
        for n in (0, 32767, 99999, 10**30):
            with pytest.raises(psycopg.errors.UndefinedParameter):
                conn.execute(f"SELECT ${n}", prepare=True)
        assert translate_placeholders("SELECT $32766")[1] == 32766


def test_escape_format_bytea_is_decoded_in_linear_time() -> None:
    text = "ab\\\\\\001é" * 500_000
    expected = "ab\\\x01é".encode() * 500_000
    started = time.perf_counter()
    assert _decode_bytea_text(text) == expected
    assert time.perf_counter() - started < 2


# --- 8. nothing leaks ------------------------------------------------------------------------


def test_threads_return_to_their_baseline_after_every_kind_of_abuse(tmp_path: Path) -> None:
    before = threading.active_count()
    srv = Server(
        tmp_path / "leak.db",
        auth="trust",
        port=0,
        wire_limits=WireLimits(
            max_connections=8,
            authentication_timeout=0.3,
            idle_session_timeout=5,
            statement_timeout=0.2,
            max_message_bytes=64 * 1024,
            max_buffer_bytes=2 * MIB,
        ),
    )
    srv.start()
    try:
        baseline = threading.active_count()
        assert baseline - before <= 2  # the accepting thread and the watchdog
        for _round in range(2):
            clients = [connect(srv) for _ in range(8)]
            refused = [Raw(srv, startup=False) for _ in range(20)]
            for r in refused:
                r.startup()
            assert all(errors(r.until_closed()) == [("FATAL", "53300")] for r in refused)
            for r in refused:
                r.sock.close()
            for c in clients[:4]:
                with pytest.raises(psycopg.errors.QueryCanceled):
                    c.execute(INFINITE)
            for c in clients[4:]:
                with pytest.raises(psycopg.errors.ProgramLimitExceeded):
                    c.execute(INFINITE_ROWS)
                with pytest.raises(psycopg.errors.ProgramLimitExceeded):
                    c.execute("SELECT %s", ["x" * 100_000])
            for c in clients:
                c.close()
            assert until(lambda: not srv._connections)
            silent = [Raw(srv, startup=False) for _ in range(8)]
            assert all(errors(r.until_closed()) == [("FATAL", "57014")] for r in silent)
            for r in silent:
                r.sock.close()
            assert until(lambda: not srv._connections)
            idle = [Raw(srv) for _ in range(8)]
            for r in idle:
                r.query("SET idle_session_timeout = '300ms'")
            assert all(errors(r.until_closed()) == [("FATAL", "57P05")] for r in idle)
            for r in idle:
                r.sock.close()
            connections_end(srv)
            assert until(lambda: threading.active_count() == baseline)
    finally:
        srv.stop()
    assert until(lambda: threading.active_count() == before)


# --- the serve command -----------------------------------------------------------------------


def test_serve_flags_set_the_wire_limits(tmp_path: Path) -> None:
    from heliosdb_wasm.cli import serve

    defaults = WireLimits()
    for option in serve.params:
        if option.name and hasattr(defaults, option.name):
            default = getattr(defaults, option.name)
            text = f"{default:g}" if isinstance(default, float) else str(default)
            assert f"[default: {text}]" in (getattr(option, "help", "") or ""), option.name
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "heliosdb_wasm.cli",
            "serve",
            "--db",
            str(tmp_path / "c.db"),
            "--port",
            "0",
            "--auth",
            "trust",
            "--max-connections",
            "1",
            "--statement-timeout",
            "0.3",
            "--max-message-bytes",
            "100000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on 127.0.0.1:" in line, line
        port = int(line.split("127.0.0.1:")[1].split()[0])
        args: dict[str, Any] = {"host": "127.0.0.1", "port": port, "user": "u", "dbname": "c"}
        with psycopg.connect(**args, autocommit=True, connect_timeout=5) as conn:
            with pytest.raises(psycopg.OperationalError, match="too many clients"):
                psycopg.connect(**args, connect_timeout=5)
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute(INFINITE)
            with pytest.raises(psycopg.errors.ProgramLimitExceeded):
                conn.execute("SELECT %s", ["x" * 200_000])
            assert conn.execute("SELECT 42").fetchone() == (42,)
        proc.terminate()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        _out, err = proc.communicate()
    assert "Traceback" not in err
    cli = [sys.executable, "-m", "heliosdb_wasm.cli", "serve", "--db", str(tmp_path / "d.db")]
    bad = subprocess.run(
        [*cli, "--max-connections", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "--max-connections" in bad.stderr
