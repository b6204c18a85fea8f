"""Who may connect to the PostgreSQL endpoint, and how: roles in the
database, SCRAM-SHA-256 (and -PLUS) authentication, TLS with a certificate
of a throwaway CA made here, trust on loopback only, and the hostile side
of it all (bad SASL messages, stalls, plaintext piggybacked on an
SSLRequest). Real clients (psycopg, asyncpg, psql) prove the exchange
interoperates; a hand-made client does what real clients never do."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import asyncpg
import psycopg
import psycopg.errors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import heliosdb_wasm as h
from conftest import Pki, server_stays_quiet
from heliosdb_wasm import registry, roles
from heliosdb_wasm.pgwire import Server, WireLimits, execute_statement
from heliosdb_wasm.pgwire.server import is_loopback
from heliosdb_wasm.pgwire.tls import TlsConfig

PASSWORD = "correct horse battery staple"
INFINITE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
SSL_REQUEST = struct.pack("!ii", 8, 80877103)
CLI = [sys.executable, "-m", "heliosdb_wasm.cli"]


# --- servers --------------------------------------------------------------------------------


def seeded(path: Path) -> Path:
    """alice may log in with PASSWORD; bob has a password but may not log
    in; carol may log in but has no password."""
    with h.Database.open(path) as db:
        db.create_role("alice", PASSWORD)
        db.create_role("bob", PASSWORD, login=False)
        db.create_role("carol")
        db.execute("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1), (2)")
    return path


@contextmanager
def serving(path: Path, **kwargs: Any) -> Iterator[Server]:
    with Server(path, port=0, **kwargs) as server:
        yield server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with serving(seeded(tmp_path / "auth.db")) as srv:
        yield srv


@pytest.fixture
def tls_server(tmp_path: Path, pki: Pki) -> Iterator[Server]:
    with serving(seeded(tmp_path / "tls.db"), tls=TlsConfig.load(pki.cert, pki.key)) as srv:
        yield srv


def connect(server: Server, user: str = "alice", **kwargs: Any) -> psycopg.Connection[Any]:
    host, port = server.address
    kwargs.setdefault("password", PASSWORD)
    return psycopg.connect(
        host=kwargs.pop("host", host),
        port=port,
        user=user,
        dbname="auth",
        connect_timeout=5,
        autocommit=True,
        **kwargs,
    )


@pytest.fixture
def quiet(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Whatever a client sends, the server logs no warning and no thread dies."""
    with server_stays_quiet(capfd):
        yield


# --- a hand-made client ---------------------------------------------------------------------


def fields_of(payload: bytes) -> dict[str, str]:
    return {p[:1].decode(): p[1:].decode() for p in payload.rstrip(b"\0").split(b"\0") if p}


class Raw:
    """The client side of the protocol, one message at a time."""

    def __init__(self, server: Server, timeout: float = 10) -> None:
        self.sock: socket.socket = socket.create_connection(server.address, timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def tls(self, ca: Path) -> None:
        self.sock.sendall(SSL_REQUEST)
        assert self.sock.recv(1) == b"S"
        context = ssl.create_default_context(cafile=str(ca))
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")

    def startup(self, user: str) -> None:
        params = b"user\0" + user.encode() + b"\0database\0auth\0\0"
        self.sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)

    def send(self, kind: bytes, payload: bytes) -> None:
        self.sock.sendall(kind + struct.pack("!i", len(payload) + 4) + payload)

    def _read(self, n: int) -> bytes | None:
        while len(self.buffer) < n:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                return None
            if not chunk:
                return None
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def message(self) -> tuple[bytes, bytes] | None:
        header = self._read(5)
        if header is None:
            return None
        body = self._read(struct.unpack("!i", header[1:])[0] - 4)
        return None if body is None else (header[:1], body)

    def auth(self) -> tuple[int, bytes]:
        """The next Authentication message: its code and the rest."""
        m = self.message()
        assert m is not None and m[0] == b"R", m
        return struct.unpack("!i", m[1][:4])[0], m[1][4:]

    def error(self) -> dict[str, str]:
        """The ErrorResponse that ends the connection (then EOF)."""
        messages = []
        while (m := self.message()) is not None:
            messages.append(m)
        found = [fields_of(p) for k, p in messages if k == b"E"]
        assert len(found) == 1, messages
        return found[0]

    def initial(self, mechanism: str, data: bytes) -> None:
        self.send(b"p", mechanism.encode() + b"\0" + struct.pack("!i", len(data)) + data)


@dataclass
class ScramClient:
    """RFC 5802's client, written from the RFC (not from the server's code)."""

    password: str
    gs2: str = "n,,"
    nonce: str = "fyko+d2lbbFgONRv9qkxdawL"
    binding: bytes = b""

    @property
    def first_bare(self) -> str:
        return f"n=,r={self.nonce}"

    def first(self) -> bytes:
        return (self.gs2 + self.first_bare).encode()

    def final(self, server_first: str, *, proof: bytes | None = None) -> bytes:
        attrs = dict(a.split("=", 1) for a in server_first.split(","))
        salt, iterations = base64.b64decode(attrs["s"]), int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        cbind = base64.b64encode(self.gs2.encode() + self.binding).decode()
        without_proof = f"c={cbind},r={attrs['r']}"
        message = f"{self.first_bare},{server_first},{without_proof}".encode()
        signature = hmac.digest(stored_key, message, "sha256")
        if proof is None:
            proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def server_first(raw: Raw, user: str, client: ScramClient, mechanism: str = "SCRAM-SHA-256") -> str:
    raw.startup(user)
    code, mechanisms = raw.auth()
    assert code == 10 and mechanism.encode() + b"\0" in mechanisms
    raw.initial(mechanism, client.first())
    code, first = raw.auth()
    assert code == 11
    return first.decode()


# --- roles: the Python API ------------------------------------------------------------------


def test_roles_are_stored_as_scram_verifiers_never_as_passwords(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with h.Database.open(path) as db:
        alice = db.create_role("alice", PASSWORD)
        assert alice.login and alice.has_password and PASSWORD not in repr(alice)
        assert alice.verifier is not None and alice.verifier.startswith("SCRAM-SHA-256$4096:")
        verifier = roles.Verifier.parse(alice.verifier)
        assert len(verifier.salt) == 16 and len(verifier.stored_key) == 32
        assert [r.name for r in db.roles()] == ["alice"]
        later = db.set_role_password("alice", "another password")
        assert later.verifier != alice.verifier and later.updated_at >= alice.created_at
        assert not db.set_role_login("alice", False).login
        assert db.set_role_password("alice", None).verifier is None
        # A ready-made verifier (psql's \password sends one) is kept as it is.
        made = roles.make_verifier("made elsewhere")
        assert db.set_role_password("alice", made).verifier == made
        assert db.drop_role("alice") and db.roles() == []
        assert db.drop_role("alice", if_exists=True) is False
    assert PASSWORD.encode() not in path.read_bytes()
    assert b"another password" not in path.read_bytes()


@pytest.mark.parametrize(
    ("name", "code", "sqlstate"),
    [
        ("", "invalid-name", "42602"),
        ("x" * 300, "name-too-long", "42622"),
        ("é" * 32, "name-too-long", "42622"),  # 64 bytes
        ("a\0b", "invalid-name", "42602"),
        ("new\nline", "invalid-name", "42602"),
        ("pg_monitor", "reserved-name", "42939"),
        ("public", "reserved-name", "42939"),
        ("current_user", "reserved-name", "42939"),
        (42, "invalid-name", "42602"),
    ],
)
def test_role_names_are_validated(name: Any, code: str, sqlstate: str) -> None:
    with h.Database.open(":memory:") as db:
        with pytest.raises(h.RoleError) as err:
            db.create_role(name, PASSWORD)
        assert (err.value.code, err.value.sqlstate) == (code, sqlstate)
        assert db.roles() == []


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("", "invalid-password"),
        ("x" * 2000, "invalid-password"),
        ("a\0b", "invalid-password"),
        ("md5" + "0123456789abcdef" * 2, "md5-password"),
        ("SCRAM-SHA-256$4096:c2FsdA==$bm90IDMyIGJ5dGVz:bm90IDMyIGJ5dGVz", "invalid-password"),
        ("SCRAM-SHA-256$x:y", "invalid-password"),
    ],
)
def test_bad_passwords_and_verifiers_are_refused(password: str, code: str) -> None:
    with h.Database.open(":memory:") as db:
        db.create_role("alice", PASSWORD)
        before = db.role("alice")
        with pytest.raises(h.RoleError) as err:
            db.set_role_password("alice", password)
        assert err.value.code == code
        assert password[:40] not in str(err.value) or not password  # never quoted back
        assert db.role("alice") == before


def test_role_names_are_unique_and_case_sensitive() -> None:
    with h.Database.open(":memory:") as db:
        db.create_role("Alice", PASSWORD)
        db.create_role("alice", PASSWORD)
        with pytest.raises(h.RoleError) as err:
            db.create_role("alice", PASSWORD)
        assert err.value.code == "already-exists"
        with pytest.raises(h.RoleError) as err:
            db.set_role_password("nobody", PASSWORD)
        assert err.value.code == "not-found"
        with pytest.raises(h.RoleError):
            db.drop_role("nobody")
        assert [r.name for r in db.roles()] == ["Alice", "alice"]


def test_clients_cannot_read_or_write_the_role_table(server: Server) -> None:
    with connect(server) as conn:
        for sql in (
            "SELECT * FROM _heliosdb_roles",
            "UPDATE _heliosdb_roles SET can_login = 1",
            "SELECT value FROM _heliosdb_meta",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)


def test_a_role_row_changed_outside_the_engine_lets_nobody_in(tmp_path: Path) -> None:
    path = seeded(tmp_path / "t.db")
    conn = apsw.Connection(str(path))
    conn.execute("UPDATE _heliosdb_roles SET can_login = 1 WHERE name = 'bob'")
    conn.close()
    with h.Database.open(path) as db:
        with pytest.raises(h.RegistryError) as err:
            db.role("bob")
        assert err.value.code == "tampered"
        assert [r.name for r in db.roles()] == ["alice", "carol"]  # listed without it
    with serving(path) as srv, pytest.raises(psycopg.OperationalError, match="password auth"):
        connect(srv, "bob")


def test_a_version_3_database_gains_the_role_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    h.Database.open(path).close()
    conn = apsw.Connection(str(path))
    conn.execute(
        "DROP TABLE _heliosdb_roles; DELETE FROM _heliosdb_meta WHERE key = 'scram_mock_secret';"
        "UPDATE _heliosdb_meta SET value = '3' WHERE key = 'schema_version'"
    )
    conn.close()
    with h.Database.open(path) as db:
        db.create_role("alice", PASSWORD)
        meta = dict(db.execute("SELECT key, value FROM _heliosdb_meta").rows)
    assert (
        meta["schema_version"] == str(registry.SCHEMA_VERSION)
        and len(str(meta["scram_mock_secret"])) == 64
    )


# --- SCRAM with real clients ----------------------------------------------------------------


def test_psycopg_and_asyncpg_log_in_with_the_password(server: Server) -> None:
    with connect(server) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
        assert conn.execute("SHOW session_authorization").fetchone() == ("alice",)
        with pytest.raises(psycopg.errors.CantChangeRuntimeParam):
            conn.execute("SET session_authorization = 'bob'")
    host, port = server.address

    async def main() -> Any:
        conn = await asyncpg.connect(
            host=host, port=port, user="alice", password=PASSWORD, database="auth"
        )
        try:
            return await conn.fetchval("SELECT sum(x) FROM t")
        finally:
            await conn.close()

    assert asyncio.run(main()) == 3


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("alice", "wrong password"),
        ("nobody", PASSWORD),  # no such role
        ("bob", PASSWORD),  # may not log in, though the password is right
        ("carol", ""),  # has no password
        ("Alice", PASSWORD),  # names are case-sensitive
    ],
)
def test_every_failure_is_the_same_28p01(server: Server, user: str, password: str) -> None:
    with pytest.raises(psycopg.OperationalError) as err:
        connect(server, user, password=password or "anything")
    assert f'password authentication failed for user "{user}"' in str(err.value)
    assert PASSWORD not in str(err.value)


def test_unknown_and_real_roles_go_through_the_same_exchange(server: Server) -> None:
    """No user enumeration: a role that does not exist (or may not log in)
    gets a salt and the default iteration count like a real one, the same
    salt every time, and fails only at the end, with the same message."""

    def exchange(user: str) -> tuple[bytes, int, dict[str, str]]:
        with Raw(server) as raw:
            client = ScramClient("wrong password")
            first = server_first(raw, user, client)
            attrs = dict(a.split("=", 1) for a in first.split(","))
            assert attrs["r"].startswith(client.nonce) and len(attrs["r"]) > len(client.nonce)
            raw.send(b"p", client.final(first))
            return base64.b64decode(attrs["s"]), int(attrs["i"]), raw.error()

    answers = {user: exchange(user) for user in ("alice", "nobody", "bob", "carol")}
    for user, (salt, iterations, error) in answers.items():
        assert (len(salt), iterations) == (16, 4096), user
        assert (error["S"], error["C"]) == ("FATAL", "28P01"), user
        assert error["M"] == f'password authentication failed for user "{user}"'
    assert len({salt for salt, _, _ in answers.values()}) == 4
    assert exchange("nobody")[0] == answers["nobody"][0]


def test_a_made_up_salt_survives_a_restart(tmp_path: Path) -> None:
    path = seeded(tmp_path / "restart.db")
    salts = []
    for _ in range(2):
        with serving(path) as srv, Raw(srv) as raw:
            first = server_first(raw, "nobody", ScramClient(PASSWORD))
            salts.append(dict(a.split("=", 1) for a in first.split(","))["s"])
    assert salts[0] == salts[1]


def test_the_hand_made_client_logs_in_and_checks_the_server(server: Server) -> None:
    with Raw(server) as raw:
        client = ScramClient(PASSWORD)
        first = server_first(raw, "alice", client)
        raw.send(b"p", client.final(first))
        code, final = raw.auth()
        assert code == 12 and final.startswith(b"v=")
        assert raw.auth() == (0, b"")


def test_non_ascii_passwords_are_saslprepped_as_libpq_does(tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    with h.Database.open(path) as db:
        # U+00AD (soft hyphen) is mapped to nothing, U+2168 (ROMAN NUMERAL
        # NINE) to "IX" by NFKC: libpq hashes "pässIX" for either spelling.
        db.create_role("ursula", "päss\u00ad\u2168")
    with serving(path) as srv:
        for password in ("päss\u00ad\u2168", "pässIX"):
            with connect(srv, "ursula", password=password) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect(srv, "ursula", password="pass IX")


def test_trust_lets_anyone_in_on_loopback(tmp_path: Path) -> None:
    with (
        serving(seeded(tmp_path / "trust.db"), auth="trust") as srv,
        connect(srv, "whoever", password="ignored") as conn,
    ):
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("", False),
        ("::", False),
        ("10.1.2.3", False),
        ("db.example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_trust_off_loopback_is_refused_before_binding(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        port = taken.getsockname()[1]
        # The port is taken: binding first would fail with OSError instead.
        with pytest.raises(h.InvalidArgument, match="loopback"):
            Server(tmp_path / "open.db", host="0.0.0.0", port=port, auth="trust")
    with pytest.raises(h.InvalidArgument, match="unknown auth mode"):
        Server(tmp_path / "open.db", port=0, auth="md5")  # type: ignore[arg-type]


def test_scram_is_the_default_and_a_client_without_a_password_is_refused(server: Server) -> None:
    host, port = server.address
    with Raw(server) as raw:
        raw.startup("alice")
        code, mechanisms = raw.auth()
        assert code == 10 and mechanisms == b"SCRAM-SHA-256\0\0"  # no -PLUS without TLS
    env = {**os.environ, "PGPASSWORD": "", "PGCONNECT_TIMEOUT": "5"}
    done = subprocess.run(
        ["psql", "-X", "-w", "-h", host, "-p", str(port), "-U", "alice", "-d", "auth", "-c", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode != 0 and "password" in done.stderr


# --- TLS ------------------------------------------------------------------------------------


def test_psycopg_verify_full_with_channel_binding(tls_server: Server, pki: Pki) -> None:
    with connect(
        tls_server,
        host="localhost",
        sslmode="verify-full",
        sslrootcert=str(pki.ca),
        channel_binding="require",
    ) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
    with Raw(tls_server) as raw:
        raw.tls(pki.ca)
        raw.startup("alice")
        assert raw.auth() == (10, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0")


def test_psql_over_tls_with_a_password(tls_server: Server, pki: Pki) -> None:
    if shutil.which("psql") is None:
        pytest.fail("psql is not installed (nox -s tests installs it)")
    host, port = tls_server.address
    env = {**os.environ, "PGPASSWORD": PASSWORD, "PGSSLMODE": "require"}
    base = ["psql", "-X", "-h", host, "-p", str(port), "-U", "alice", "-d", "auth"]
    done = subprocess.run(
        [*base, "-c", r"\conninfo", "-c", "SELECT count(*) FROM t", "-c", r"\du"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "SSL connection (protocol: TLSv1." in done.stdout
    lines = [line.split("|")[0].strip() for line in done.stdout.splitlines()]
    assert {"alice", "bob", "carol"} <= set(lines)
    assert " 2\n" in done.stdout
    verified = {**env, "PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(pki.ca)}
    done = subprocess.run(
        [*base[:3], "localhost", *base[4:], "-Atc", "SELECT 42"],
        capture_output=True,
        text=True,
        env=verified,
        timeout=30,
    )
    assert (done.returncode, done.stdout) == (0, "42\n"), done.stderr


def test_asyncpg_over_tls_with_a_password(tls_server: Server, pki: Pki) -> None:
    _host, port = tls_server.address
    context = ssl.create_default_context(cafile=str(pki.ca))

    async def main() -> Any:
        conn = await asyncpg.connect(
            host="localhost", port=port, user="alice", password=PASSWORD, database="auth",
            ssl=context,
        )  # fmt: skip
        try:
            return await conn.fetchval("SELECT sum(x) FROM t")
        finally:
            await conn.close()

    assert asyncio.run(main()) == 3


def test_tls_require_refuses_plaintext_but_honours_cancel(tmp_path: Path, pki: Pki) -> None:
    tls = TlsConfig.load(pki.cert, pki.key, required=True)
    with serving(seeded(tmp_path / "req.db"), tls=tls) as srv:
        with pytest.raises(psycopg.OperationalError, match="only TLS connections"):
            connect(srv, sslmode="disable")
        with Raw(srv) as raw:
            raw.startup("alice")
            error = raw.error()
            assert (error["S"], error["C"]) == ("FATAL", "28000")
        with connect(srv, sslmode="require") as conn:
            assert conn.pgconn.ssl_in_use
            # libpq >= 17 sends this cancel request over TLS too.
            timer = threading.Timer(0.3, conn.cancel_safe)
            timer.start()
            try:
                with pytest.raises(psycopg.errors.QueryCanceled):
                    conn.execute(INFINITE)
            finally:
                timer.join()
            assert conn.execute("SELECT 1").fetchone() == (1,)
        if shutil.which("psql") is None:
            pytest.fail("psql is not installed (nox -s tests installs it)")
        # psql 15's cancel on Ctrl-C (SIGINT) is a plaintext CancelRequest:
        # honoured although the session it cancels had to be TLS.
        host, port = srv.address
        proc = subprocess.Popen(
            [
                "psql",
                "-X",
                "-h",
                host,
                "-p",
                str(port),
                "-U",
                "alice",
                "-d",
                "auth",
                "-c",
                INFINITE,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PGPASSWORD": PASSWORD, "PGSSLMODE": "require"},
        )
        try:
            assert until(lambda: len(srv._connections) == 1)
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert "Cancel request sent" in err and "ERROR:  interrupted" in err, err


def until(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize("tls", [True, False])
def test_plaintext_piggybacked_on_an_ssl_request_is_refused(
    tmp_path: Path, pki: Pki, tls: bool, quiet: None
) -> None:
    """CVE-2021-23214: bytes sent after the SSLRequest, before the handshake,
    were not encrypted; they are refused, not read as if they had been."""
    config = TlsConfig.load(pki.cert, pki.key) if tls else None
    with serving(seeded(tmp_path / "cve.db"), auth="trust", tls=config) as srv, Raw(srv) as raw:
        params = b"user\0alice\0database\0auth\0\0"
        startup = struct.pack("!ii", 8 + len(params), 196608) + params
        raw.sock.sendall(SSL_REQUEST + startup + b"Q\0\0\0\x0eSELECT 1;\0")
        error = raw.error()
    assert (error["S"], error["C"]) == ("FATAL", "08P01")
    assert error["M"] == "received unencrypted data after SSL request"


def test_a_client_that_never_finishes_the_handshake_is_dropped(
    tmp_path: Path, pki: Pki, quiet: None
) -> None:
    limits = WireLimits(authentication_timeout=0.5)
    config = TlsConfig.load(pki.cert, pki.key)
    with serving(seeded(tmp_path / "hs.db"), tls=config, wire_limits=limits) as srv:
        started = time.monotonic()
        with Raw(srv) as raw:
            raw.sock.sendall(SSL_REQUEST)
            assert raw.sock.recv(1) == b"S"
            raw.sock.sendall(b"\x16\x03\x01\x00")  # the start of a ClientHello, then nothing
            assert raw.sock.recv(100) == b""
        assert time.monotonic() - started < 3
        with Raw(srv) as raw:
            raw.sock.sendall(SSL_REQUEST)
            assert raw.sock.recv(1) == b"S"
            raw.sock.sendall(b"this is not TLS at all" * 10)
            assert raw.message() is None
        with connect(srv, sslmode="require") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("missing", "cannot read the TLS certificate"),
        ("garbage", "cannot load the TLS certificate"),
        ("mismatched", "does not belong to the certificate"),
        ("encrypted", "the TLS key is encrypted"),
    ],
)
def test_bad_certificates_fail_at_startup(
    tmp_path: Path, pki: Pki, which: str, message: str
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    cert, key = {
        "missing": (tmp_path / "nope.pem", pki.key),
        "garbage": (garbage, pki.key),
        "mismatched": (pki.cert, pki.other_key),
        "encrypted": (pki.cert, pki.encrypted_key),
    }[which]
    with pytest.raises(h.InvalidArgument, match=message):
        TlsConfig.load(cert, key)


# --- hostile SASL ---------------------------------------------------------------------------


@pytest.fixture
def strict(tmp_path: Path, pki: Pki) -> Iterator[Server]:
    """A TLS server whose clients have half a second to authenticate."""
    config = TlsConfig.load(pki.cert, pki.key)
    limits = WireLimits(authentication_timeout=0.5)
    with serving(seeded(tmp_path / "hostile.db"), tls=config, wire_limits=limits) as srv:
        yield srv


def _initial(mechanism: bytes, data: bytes) -> bytes:
    return mechanism + b"\0" + struct.pack("!i", len(data)) + data


@pytest.mark.parametrize(
    ("kind", "payload", "state", "message"),
    [
        (b"p", _initial(b"PLAIN", b"n,,n=,r=abc"), "08P01", "invalid SASL authentication mech"),
        (b"p", _initial(b"SCRAM-SHA-256", b"garbage"), "08P01", "malformed SCRAM message"),
        (b"p", _initial(b"SCRAM-SHA-256", b"n,,n=,r=a,b"), "08P01", "malformed SCRAM message"),
        (b"p", _initial(b"SCRAM-SHA-256", b"n,,n=,r=\x01"), "08P01", "printable nonce"),
        (b"p", _initial(b"SCRAM-SHA-256", b"n,a=bob,n=,r=abc"), "08P01", "authorization ident"),
        (b"p", _initial(b"SCRAM-SHA-256", b"n,,m=ext,n=,r=abc"), "08P01", "unsupported SCRAM ext"),
        (b"p", _initial(b"SCRAM-SHA-256", b"p=tls-server-end-point,,n=,r=a"), "08P01", "without"),
        (b"p", _initial(b"SCRAM-SHA-256", b"n,,n=,r=\xff\xfe"), "08P01", "not UTF-8"),
        (b"p", _initial(b"SCRAM-SHA-256", b"n,,n=\0,r=a"), "08P01", "NUL"),
        (b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", -1), "08P01", "initial response is missing"),
        (b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", 99), "08P01", "insufficient data"),
        (b"p", b"SCRAM-SHA-256", "08P01", "invalid string"),
        (b"Q", b"SELECT 1\0", "08P01", "expected SASL response"),
        (b"p", b"x" * 70_000, "08P01", "invalid SASL message length"),
    ],
)
def test_bad_sasl_initial_responses_are_fatal_protocol_errors(
    server: Server, quiet: None, kind: bytes, payload: bytes, state: str, message: str
) -> None:
    with Raw(server) as raw:
        raw.startup("alice")
        assert raw.auth()[0] == 10
        raw.send(kind, payload)
        error = raw.error()
    assert (error["S"], error["C"]) == ("FATAL", state)
    assert message in error["M"], error
    with connect(server) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize(
    ("final", "state", "message"),
    [
        (lambda first: b"c=biws,r=wrong,p=" + b"A" * 44, "08P01", "nonce mismatch"),
        (lambda first: b"garbage", "08P01", "proof is missing"),
        (lambda first: b"r=x,c=biws,p=AAAA", "08P01", "channel binding attribute"),
        (lambda first: b"c=!!!,r=x,p=AAAA", "08P01", "invalid base64"),
        (lambda first: b"c=eSws," + _nonce(first) + b",p=AAAA", "08P01", "binding check failed"),
        (lambda first: b"c=biws," + _nonce(first) + b",p=AAAA", "08P01", "wrong length"),
        (
            lambda first: ScramClient(PASSWORD).final(first, proof=b"\0" * 32),
            "28P01",
            "password authentication failed",
        ),
    ],
)
def test_bad_sasl_final_messages(
    server: Server, quiet: None, final: Any, state: str, message: str
) -> None:
    with Raw(server) as raw:
        first = server_first(raw, "alice", ScramClient(PASSWORD))
        raw.send(b"p", final(first))
        error = raw.error()
    assert (error["S"], error["C"]) == ("FATAL", state)
    assert message in error["M"], error


def _nonce(first: str) -> bytes:
    return b"r=" + dict(a.split("=", 1) for a in first.split(","))["r"].encode()


def test_channel_binding_over_tls(strict: Server, pki: Pki, quiet: None) -> None:
    host_cert = x509.load_pem_x509_certificate(pki.cert.read_bytes())
    binding = hashlib.sha256(host_cert.public_bytes(serialization.Encoding.DER)).digest()
    plus = "SCRAM-SHA-256-PLUS"
    gs2 = "p=tls-server-end-point,,"
    with Raw(strict) as raw:
        raw.tls(pki.ca)
        client = ScramClient(PASSWORD, gs2=gs2, binding=binding)
        raw.send(b"p", client.final(server_first(raw, "alice", client, plus)))
        assert raw.auth()[0] == 12
    with Raw(strict) as raw:  # data bound to another certificate
        raw.tls(pki.ca)
        client = ScramClient(PASSWORD, gs2=gs2, binding=b"\0" * 32)
        raw.send(b"p", client.final(server_first(raw, "alice", client, plus)))
        assert raw.error()["M"] == "SCRAM channel binding check failed"
    with Raw(strict) as raw:  # "y": PLUS was offered, so someone removed it
        raw.tls(pki.ca)
        raw.startup("alice")
        raw.auth()
        raw.initial("SCRAM-SHA-256", ScramClient(PASSWORD, gs2="y,,").first())
        assert "negotiation error" in raw.error()["M"]
    with Raw(strict) as raw:  # PLUS selected without binding data
        raw.tls(pki.ca)
        raw.startup("alice")
        raw.auth()
        raw.initial(plus, ScramClient(PASSWORD).first())
        assert "does not include channel binding data" in raw.error()["M"]
    with Raw(strict) as raw:  # a binding type this server does not have
        raw.tls(pki.ca)
        raw.startup("alice")
        raw.auth()
        raw.initial(plus, ScramClient(PASSWORD, gs2="p=tls-unique,,").first())
        assert "unsupported SCRAM channel-binding type" in raw.error()["M"]


def test_a_client_stalling_mid_sasl_is_disconnected_with_57014(strict: Server, quiet: None) -> None:
    for stage in ("before the initial response", "before the final message"):
        started = time.monotonic()
        with Raw(strict) as raw:
            raw.startup("alice")
            raw.auth()
            if stage == "before the final message":
                raw.initial("SCRAM-SHA-256", ScramClient(PASSWORD).first())
                raw.auth()
            error = raw.error()
        assert (error["S"], error["C"]) == ("FATAL", "57014"), stage
        assert time.monotonic() - started < 3
    with Raw(strict) as raw:  # a message that trickles in does not reset the clock
        raw.startup("alice")
        raw.auth()
        raw.sock.sendall(b"p\0\0\0\x40SCRAM")
        assert raw.error()["C"] == "57014"


def test_a_client_that_gives_up_mid_sasl_leaves_quietly(server: Server, quiet: None) -> None:
    with Raw(server) as raw:
        raw.startup("alice")
        raw.auth()
        raw.send(b"X", b"")
        assert raw.message() is None
    with connect(server) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_no_user_name_is_refused(server: Server, quiet: None) -> None:
    with Raw(server) as raw:
        raw.sock.sendall(struct.pack("!ii", 8 + 15, 196608) + b"database\0auth\0\0")
        error = raw.error()
    assert (error["C"], error["M"]) == (
        "28000",
        "no PostgreSQL user name specified in startup packet",
    )


# --- role statements over the wire ----------------------------------------------------------


def test_a_client_changes_its_own_password(server: Server) -> None:
    with connect(server) as conn:
        conn.execute("ALTER ROLE alice WITH PASSWORD 'second password'")
        # libpq hashes on the client, as psql's \password does.
        verifier = conn.pgconn.encrypt_password(b"third password", b"alice", b"scram-sha-256")
        assert verifier.startswith(b"SCRAM-SHA-256$4096:")
        conn.execute(f"ALTER USER CURRENT_USER PASSWORD '{verifier.decode()}'")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="MD5"):
            conn.execute("ALTER ROLE alice PASSWORD 'md5" + "0" * 32 + "'")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="malformed SCRAM"):
            conn.execute("ALTER ROLE alice PASSWORD 'SCRAM-SHA-256$4096:bad$worse'")
        for sql in (
            "ALTER ROLE bob PASSWORD 'taken over'",
            "ALTER ROLE alice NOLOGIN",
            "CREATE ROLE mallory LOGIN PASSWORD 'x'",
            "DROP ROLE bob",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="--allow-ddl"):
                conn.execute(sql)
    with pytest.raises(psycopg.OperationalError):
        connect(server, password="second password")
    with connect(server, password="third password") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_psql_password_command(server: Server) -> None:
    if shutil.which("psql") is None:
        pytest.fail("psql is not installed (nox -s tests installs it)")
    host, port = server.address
    done = subprocess.run(
        ["psql", "-X", "-h", host, "-p", str(port), "-U", "alice", "-d", "auth"],
        # No terminal (a new session): psql reads the new password from stdin.
        input="\\password\nfrom psql\nfrom psql\nSELECT 7;\n",
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": PASSWORD},
        start_new_session=True,
        timeout=30,
    )
    assert done.returncode == 0 and " 7" in done.stdout, done.stderr
    with connect(server, password="from psql") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_role_ddl_over_the_wire_with_allow_ddl(tmp_path: Path) -> None:
    with serving(seeded(tmp_path / "ddl.db"), allow_ddl=True) as srv:
        with connect(srv) as conn:
            conn.execute("CREATE USER dave WITH PASSWORD 'dave''s password'")
            conn.execute('CREATE ROLE "Readers"')  # a role: NOLOGIN unless told
            conn.execute("ALTER ROLE bob LOGIN")
            rows = conn.execute(
                "SELECT rolname, rolcanlogin FROM pg_roles ORDER BY rolname"
            ).fetchall()
            assert ("Readers", False) in rows and ("dave", True) in rows and ("bob", True) in rows
            names = [r[0] for r in conn.execute("SELECT usename FROM pg_user").fetchall()]
            assert "dave" in names and "Readers" not in names
            with pytest.raises(psycopg.errors.DuplicateObject):
                conn.execute("CREATE ROLE dave")
            with pytest.raises(psycopg.errors.UndefinedObject):
                conn.execute("DROP ROLE nobody, dave")
            with pytest.raises(psycopg.errors.ObjectInUse):
                conn.execute("DROP ROLE alice")
            with pytest.raises(psycopg.errors.FeatureNotSupported):
                conn.execute("CREATE ROLE boss SUPERUSER")
            with pytest.raises(psycopg.errors.ReservedName):
                conn.execute("CREATE ROLE pg_boss")
            conn.execute('DROP ROLE IF EXISTS nobody, "Readers"')
            conn.execute("BEGIN")
            conn.execute("DROP ROLE bob")
            conn.execute("ROLLBACK")  # a role statement is part of the transaction
        with connect(srv, "dave", password="dave's password") as conn:
            roles_now = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
            assert roles_now == {"alice", "bob", "carol", "dave"}
        with connect(srv, "bob") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_passwords_never_reach_the_executor_logs_or_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def recording(session: Any, sql: str, params: Any) -> h.Result:
        seen.append(sql)
        return execute_statement(session, sql, params)

    secret = "Sup3r-Secret-Passw0rd"
    caplog.set_level(logging.DEBUG)
    with (
        serving(seeded(tmp_path / "leak.db"), executor=recording, allow_ddl=True) as srv,
        connect(srv) as conn,
    ):
        conn.execute(f"ALTER ROLE alice PASSWORD '{secret}'")
        for sql in (
            f"ALTER ROLE alice PASSWORD '{secret}' SUPERUSER",
            f"ALTER ROLE alice PASSWORD '{secret}' nonsense",
            f"CREATE ROLE alice PASSWORD '{secret}'",
            f"ALTER ROLE nobody PASSWORD '{secret}'",
            f"ALTER ROLE alice PASSWORD E'{secret}'",
            f"ALTER ROLE alice PASSWORD '{secret}",
        ):
            with pytest.raises(psycopg.Error) as err:
                conn.execute(sql)
            assert secret not in str(err.value), sql
        with conn.cursor() as cur:  # the extended protocol: Parse, Describe, Execute
            cur.execute(f"ALTER ROLE alice PASSWORD '{secret}2'", prepare=True)
        conn.execute("SELECT 1")
    assert seen and not any(secret in sql for sql in seen)
    assert not any(secret in record.getMessage() for record in caplog.records)
    with h.Database.open(tmp_path / "leak.db") as db:
        assert secret.encode() not in (tmp_path / "leak.db").read_bytes()
        assert db.role("alice") is not None


# --- the command line -----------------------------------------------------------------------


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True, timeout=60)


def test_role_commands(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")
    done = cli("role", "create", "alice", "--db", db, "--password-stdin", stdin=PASSWORD + "\n")
    assert done.returncode == 0 and "role alice created" in done.stdout, done.stderr
    done = cli("role", "create", "bob", "--db", db, "--no-login", "--password-stdin", stdin="b\n")
    assert done.returncode == 0 and "cannot log in" in done.stdout
    listed = cli("role", "list", "--db", db, "--json")
    records = json.loads(listed.stdout)
    assert [(r["name"], r["login"], r["password"]) for r in records] == [
        ("alice", True, True),
        ("bob", False, True),
    ]
    assert "SCRAM-SHA-256$" not in listed.stdout
    table = cli("role", "list", "--db", db).stdout
    assert "alice | yes" in table and "bob   | no" in table
    assert (
        cli("role", "password", "alice", "--db", db, "--password-stdin", stdin="n\n").returncode
        == 0
    )
    with h.Database.open(db) as opened:
        verifier = opened.role("alice")
        assert verifier is not None and verifier.verifier is not None
        parsed = roles.Verifier.parse(verifier.verifier)
        salted = roles.salted_password("n", parsed.salt, parsed.iterations)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        assert hashlib.sha256(client_key).digest() == parsed.stored_key
    bad = cli("role", "create", "pg_x", "--db", db, "--password-stdin", stdin="x\n")
    assert bad.returncode == 1 and "reserved" in bad.stderr and "Traceback" not in bad.stderr
    empty = cli("role", "create", "eve", "--db", db, "--password-stdin", stdin="\n")
    assert empty.returncode == 2 and "no password" in empty.stderr
    no_tty = cli("role", "create", "eve", "--db", db)
    assert no_tty.returncode == 2 and "--password-stdin" in no_tty.stderr
    missing = cli("role", "password", "nobody", "--db", db)  # refused before any prompt
    assert missing.returncode == 1 and 'role "nobody" does not exist' in missing.stderr
    assert cli("role", "drop", "bob", "--db", db).returncode == 0
    gone = cli("role", "drop", "bob", "--db", db)
    assert gone.returncode == 1 and 'role "bob" does not exist' in gone.stderr
    assert "did not exist" in cli("role", "drop", "bob", "--if-exists", "--db", db).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--auth", "trust", "--host", "0.0.0.0"], "loopback"),
        (["--tls-cert", "nope.pem"], "go together"),
        (["--tls", "require"], "needs a certificate"),
        (["--tls-cert", "nope.pem", "--tls-key", "nope.key"], "cannot read the TLS certificate"),
    ],
)
def test_serve_refuses_bad_security_flags(tmp_path: Path, args: list[str], message: str) -> None:
    done = cli("serve", "--db", str(tmp_path / "s.db"), "--port", "0", *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_serve_hints_at_creating_a_role_and_serves_tls(tmp_path: Path, pki: Pki) -> None:
    db = tmp_path / "serve.db"
    args = ["serve", "--db", str(db), "--port", "0", "--tls-cert", str(pki.cert)]
    proc = subprocess.Popen(
        [*CLI, *args, "--tls-key", str(pki.key), "--tls", "require"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert "listening on 127.0.0.1:" in line, line + proc.stderr.read()
        port = int(line.split("127.0.0.1:")[1].split()[0])
        assert "scram; TLS required" in proc.stdout.readline()
        assert "heliosdb-wasm role create NAME" in proc.stderr.readline()
        with h.Database.open(db) as opened:
            opened.create_role("alice", PASSWORD)
        args = {"host": "localhost", "port": port, "user": "alice", "dbname": "serve"}
        with psycopg.connect(
            **args, password=PASSWORD, sslmode="verify-full", sslrootcert=str(pki.ca)
        ) as conn:
            assert conn.execute("SELECT 40 + 2").fetchone() == (42,)
        proc.terminate()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        _out, err = proc.communicate()
    assert "Traceback" not in err
