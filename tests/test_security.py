"""Capabilities and limits: each grant allows exactly what docs/security.md says,
each limit fails the call with limit-exceeded naming it, and the next call works."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import heliosdb_wasm as h
from conftest import Register, b64, wasm_of

# --- a loopback HTTP server -------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        port = self.server.server_address[1]
        if self.path == "/ok":
            self._send(200, b"hello")
        elif self.path == "/missing":
            self._send(404, b"no such page")
        elif self.path == "/big":
            self._send(200, b"x" * 100_000)
        elif self.path == "/redirect-in":
            self._redirect("/ok")
        elif self.path == "/redirect-out":
            self._redirect(f"http://localhost:{port}/ok")
        elif self.path == "/slow":
            time.sleep(3)
            self._send(200, b"late")
        else:
            self._send(500, b"?")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _fetch(db: h.Database, export: str, url: str) -> object:
    return db.execute(f"SELECT {export}(?)", [url]).scalar()


def _register_fetch(register: Register, caps: tuple[str, ...], extra: str = "") -> None:
    for export in ("fetch_status", "fetch_body_len"):
        register(export, "(url TEXT) RETURNS BIGINT", "capabilities", caps=caps, extra=extra)


def test_network_grants_exactly_one_host(db: h.Database, register: Register, server: str) -> None:
    _register_fetch(register, ("network:127.0.0.1",))
    assert _fetch(db, "fetch_status", f"{server}/ok") == 200
    assert _fetch(db, "fetch_body_len", f"{server}/ok") == len("hello")
    assert _fetch(db, "fetch_status", f"{server}/missing") == 404  # an answer, not an error
    assert _fetch(db, "fetch_status", f"{server}/redirect-in") == 200
    # The same server under another name is another host.
    access_denied = -1
    port = server.rsplit(":", 1)[1]
    assert _fetch(db, "fetch_status", f"http://localhost:{port}/ok") == access_denied
    assert _fetch(db, "fetch_status", f"{server}/redirect-out") == access_denied
    assert _fetch(db, "fetch_status", "http://example.com/") == access_denied
    invalid = -5
    assert _fetch(db, "fetch_status", "file:///etc/passwd") == invalid
    assert _fetch(db, "fetch_status", f"http://user:pw@127.0.0.1:{port}/ok") == invalid


def test_without_network_nothing_is_reachable(
    db: h.Database, register: Register, server: str
) -> None:
    _register_fetch(register, ())
    assert _fetch(db, "fetch_status", f"{server}/ok") == -1  # access-denied


def test_fetch_limits_end_the_call(db: h.Database, register: Register, server: str) -> None:
    _register_fetch(register, ("network:127.0.0.1",), "WITH (max_fetch_bytes = 1000)")
    with pytest.raises(h.ResourceLimitExceeded) as err:
        _fetch(db, "fetch_body_len", f"{server}/big")
    assert err.value.limit == "max_fetch_bytes" and "1000" in str(err.value)
    assert _fetch(db, "fetch_status", f"{server}/ok") == 200  # the next call works
    register(
        "slow",
        "(url TEXT) RETURNS BIGINT",
        "capabilities",
        caps=("network:127.0.0.1",),
        extra="WITH (timeout_seconds = 1)",
        export="fetch_status",
    )
    started = time.monotonic()
    with pytest.raises(h.ResourceLimitExceeded) as err:
        _fetch(db, "slow", f"{server}/slow")
    assert err.value.limit == "timeout" and time.monotonic() - started < 2.5


def test_a_fetch_late_in_a_call_gets_only_the_time_left(
    db: h.Database, register: Register, server: str
) -> None:
    # 0.7 s go in the call's own query, then a fetch of a page that takes
    # 3 s: the call ends at its 1 s deadline, not 1 s after the fetch began.
    db.conn.create_scalar_function("pause", lambda: time.sleep(0.7) or 0, 0)
    register(
        "pause_then_fetch",
        "(url TEXT) RETURNS BIGINT",
        "capabilities",
        caps=("network:127.0.0.1",),
        extra="WITH (timeout_seconds = 1)",
    )
    started = time.monotonic()
    with pytest.raises(h.ResourceLimitExceeded) as err:
        _fetch(db, "pause_then_fetch", f"{server}/slow")
    assert err.value.limit == "timeout"
    assert time.monotonic() - started < 1.5


def test_crypto_digest_and_hmac(db: h.Database, register: Register) -> None:
    register(
        "sha",
        "(data BLOB) RETURNS BIGINT",
        "capabilities",
        caps=("crypto",),
        export="sha256_first_byte",
    )
    register(
        "mac", "(data BLOB) RETURNS BIGINT", "capabilities", caps=("crypto",), export="hmac_len"
    )
    register("unknown_digest", "() RETURNS BIGINT", "capabilities", caps=("crypto",))
    register("nosha", "(data BLOB) RETURNS BIGINT", "capabilities", export="sha256_first_byte")
    data = b"heliosdb"
    assert db.execute("SELECT sha(?)", [data]).scalar() == hashlib.sha256(data).digest()[0]
    assert db.execute("SELECT mac(?)", [data]).scalar() == 32
    assert db.execute("SELECT unknown_digest()").scalar() == -5  # invalid-argument
    assert db.execute("SELECT nosha(?)", [data]).scalar() == -1  # access-denied


# --- limits -------------------------------------------------------------------------


def test_query_rows_limit(db: h.Database, register: Register) -> None:
    register(
        "rows", "(n BIGINT) RETURNS BIGINT", "capabilities", extra="WITH (max_query_rows = 50)"
    )
    assert db.execute("SELECT rows(50)").scalar() == 0
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT rows(51)")
    assert err.value.limit == "max_query_rows" and "50" in str(err.value)
    assert db.execute("SELECT rows(3)").scalar() == 0


def test_log_bytes_limit(db: h.Database, register: Register) -> None:
    register(
        "log_bytes",
        "(n BIGINT, m BIGINT) RETURNS BIGINT",
        "capabilities",
        extra="WITH (max_log_bytes = 1000)",
    )
    assert db.execute("SELECT log_bytes(100, 10)").scalar() == 100
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT log_bytes(100, 11)")
    assert err.value.limit == "max_log_bytes"
    assert db.execute("SELECT log_bytes(1000, 1)").scalar() == 1000  # per call


def test_argument_and_result_size_limits(db: h.Database, register: Register) -> None:
    register(
        "big_text",
        "(n BIGINT) RETURNS TEXT",
        "capabilities",
        extra="WITH (max_result_bytes = 4096)",
    )
    assert len(str(db.execute("SELECT big_text(4096)").scalar())) == 4096
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT big_text(4097)")
    assert err.value.limit == "max_result_bytes"
    register(
        "sha",
        "(data BLOB) RETURNS BIGINT",
        "capabilities",
        caps=("crypto",),
        export="sha256_first_byte",
        extra="WITH (max_arg_bytes = 100)",
    )
    assert db.execute("SELECT sha(?)", [b"x" * 100]).scalar() is not None
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT sha(?)", [b"x" * 101])
    assert err.value.limit == "max_arg_bytes"


def test_table_and_instance_limits_refuse_a_module_at_registration(db: h.Database) -> None:
    import wasmtime

    wasm = wasmtime.wat2wasm(
        '(module (table 5000 funcref) (func (export "f") (result i64) i64.const 1))'
    )
    with pytest.raises(h.ResourceLimitExceeded):
        db.execute(
            "CREATE PROCEDURE f() RETURNS BIGINT LANGUAGE wasm WITH (max_table_elements = 1000)"
            f" AS $wasm${b64(wasm)}$wasm$"
        )
    db.execute(f"CREATE PROCEDURE f() RETURNS BIGINT LANGUAGE wasm AS $wasm${b64(wasm)}$wasm$")
    assert db.execute("SELECT f()").scalar() == 1


def test_unknown_limits_are_refused(db: h.Database) -> None:
    with pytest.raises(h.InvalidArgument, match="unknown limit"):
        db.execute(
            "CREATE PROCEDURE f() RETURNS BIGINT LANGUAGE wasm WITH (max_happiness = 1)"
            f" AS $wasm${b64(wasm_of('numeric'))}$wasm$"
        )


# --- procedures calling procedures ----------------------------------------------


def test_a_callee_runs_with_its_own_capabilities(db: h.Database, register: Register) -> None:
    # count_rows reads items (host.wat): registered once with read:items and
    # once without it.
    register("count_items", "() RETURNS BIGINT", "host", export="count_rows", caps=("read:items",))
    register("count_blind", "() RETURNS BIGINT", "host", export="count_rows")
    sql = "(sql TEXT) RETURNS BIGINT"
    # The caller lacks read:items, yet its callee reads items with its own grant.
    register("via_items", sql, "capabilities", export="run_sql", caps=("call:count_items",))
    assert db.execute("SELECT via_items('SELECT count_items()')").scalar() == 2
    assert db.execute("SELECT via_items('SELECT count(*) FROM items')").scalar() == -1
    # The caller holds read:items; its callee does not, and gains nothing from it.
    register(
        "via_blind", sql, "capabilities", export="run_sql", caps=("call:count_blind", "read:items")
    )
    assert db.execute("SELECT via_blind('SELECT count(*) FROM items')").scalar() == 2
    access_denied = 1  # count_rows returns the failed query's status
    assert db.execute("SELECT via_blind('SELECT count_blind()')").scalar() == access_denied
    # And calling a procedure needs call:<name>.
    assert db.execute("SELECT via_blind('SELECT count_items()')").scalar() == -1
