"""Proxy mode: the plugin pipeline in front of a real PostgreSQL server
(``serve --upstream postgresql://host:port``, docs/pgwire.md §Proxy).

Each client connection gets one connection to the upstream server, opened
with the client's own startup parameters; authentication is relayed between
the two untouched (a SCRAM exchange is end to end, so the proxy never holds a
password), except that channel binding is not offered, since the client's
TLS session ends at the proxy. After that every message is forwarded as it
came, and the upstream's answers likewise, except where a hook acts:

- pre-parse and post-parse run on a simple query's text and on each Parse
  (in PostgreSQL's dialect), and may rewrite it before it is forwarded;
- pre-execution runs on a simple query and on each Execute, with the
  portal's parameters;
- post-execution sees the rows of a simple query or an Execute, which are
  held back (at most max_buffer_bytes) until its hooks have run, and may
  replace them.

A statement a hook rejects is still sent upstream, as one that fails at the
same step (a syntax error for a query or Parse, an Execute of a portal that
does not exist), and the proxy answers with the plugin's error in place of
the upstream's. So the upstream alone keeps the protocol's state -
transaction aborted or not, messages skipped until Sync - and what the
client sees is what PostgreSQL would have said had it refused the statement
itself.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import select
import socket
import ssl
import struct
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..database import Database
from ..errors import InvalidArgument, PluginError, ProcedureError
from ..values import SqlValue
from . import codec
from .connection import Connection, ServerSide
from .errors import WireError, error_fields
from .protocol import (
    CANCEL_REQUEST,
    MAX_STARTUP_BYTES,
    PROTOCOL_3,
    SSL_REQUEST,
    Body,
    Disconnected,
    Input,
    ProtocolViolation,
    ReadTimeout,
    Terminate,
    cstr,
    message,
    notice_fields,
)
from .session import DURATIONS, WireSession, initial_variables, seconds_text
from .tls import end_point_hash

if TYPE_CHECKING:
    from ..plugins.pipeline import Pipeline, Trip

_log = logging.getLogger("heliosdb_wasm.pgwire")

DIALECT = "postgres"
# Startup parameters (and -c settings of `options`) kept for the plugins and
# not sent upstream, which would refuse a setting it does not know.
LOCAL_PARAMS = frozenset({"jwt", "authorization"})
SSLMODES = ("disable", "prefer", "require", "verify-ca", "verify-full")
# Authentication requests the proxy relays (and those after which the client
# answers): cleartext, MD5, SASL, SASL continue; SASL final and Ok end it.
_AUTH_OK, _AUTH_ANSWERED, _AUTH_SASL, _AUTH_SASL_FINAL = 0, (3, 5, 10, 11), 10, 12
# A statement that fails upstream at the step a plugin refused.
_REJECTED_SQL = "HELIOSDB REJECTED {}"
_REJECTED_PORTAL = "heliosdb-rejected-{}"
_OUT_BYTES = 256 * 1024


@dataclass(frozen=True)
class Upstream:
    """Where the proxy connects, and how."""

    host: str
    port: int = 5432
    sslmode: str = "prefer"
    sslrootcert: str | None = None
    connect_timeout: float = 10.0
    local_params: frozenset[str] = LOCAL_PARAMS

    @classmethod
    def parse(cls, url: str, local_params: Sequence[str] = ()) -> Upstream:
        """``postgresql://host[:port][?sslmode=...&sslrootcert=...&connect_timeout=...]``.

        No user, password or database: each client's own are passed through,
        so the upstream authenticates and authorises every client itself."""
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port or 5432
        except ValueError as exc:
            raise InvalidArgument(f"--upstream {url!r}: {exc}") from None
        if parts.scheme not in ("postgresql", "postgres"):
            raise InvalidArgument(f"--upstream must be a postgresql:// URL, got {url!r}")
        if not parts.hostname:
            raise InvalidArgument(f"--upstream {url!r} names no host")
        if parts.username or parts.password or parts.path.strip("/") or parts.fragment:
            raise InvalidArgument(
                "--upstream takes a host, a port and connection options only: each client's "
                "own user, password and database are passed through to the upstream server"
            )
        options: dict[str, str] = {}
        for key, values in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items():
            if key not in ("sslmode", "sslrootcert", "connect_timeout"):
                raise InvalidArgument(f"--upstream: unknown option {key!r}")
            options[key] = values[-1]
        sslmode = options.get("sslmode", "prefer")
        if sslmode not in SSLMODES:
            raise InvalidArgument(f"--upstream: sslmode must be one of {', '.join(SSLMODES)}")
        try:
            timeout = float(options.get("connect_timeout", "10"))
        except ValueError:
            timeout = -1
        if not 0 < timeout <= 3600:
            raise InvalidArgument("--upstream: connect_timeout must be seconds in (0, 3600]")
        names = frozenset(LOCAL_PARAMS | {p.lower() for p in local_params})
        return cls(parts.hostname, port, sslmode, options.get("sslrootcert"), timeout, names)

    def tls_context(self) -> ssl.SSLContext | None:
        """The client-side TLS context for sslmode (None: no TLS)."""
        if self.sslmode == "disable":
            return None
        if self.sslmode in ("verify-ca", "verify-full"):
            try:
                context = ssl.create_default_context(cafile=self.sslrootcert)
            except (OSError, ssl.SSLError) as exc:
                raise InvalidArgument(f"--upstream sslrootcert: {exc}") from None
            context.check_hostname = self.sslmode == "verify-full"
        else:  # as libpq: encrypted, not authenticated
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def connect(self, timeout: float) -> socket.socket:
        """A connection to the server, encrypted as sslmode says."""
        timeout = min(timeout, self.connect_timeout)
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise WireError(
                "08001", f"could not connect to the upstream server {self.host}:{self.port}: {exc}"
            ) from None
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        context = self.tls_context()
        if context is None:
            return sock
        try:
            sock.sendall(struct.pack("!ii", 8, SSL_REQUEST))
            answer = sock.recv(1)
            if answer == b"S":
                return context.wrap_socket(sock, server_hostname=self.host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise WireError("08001", f"TLS with the upstream server failed: {exc}") from None
        if answer == b"N" and self.sslmode == "prefer":
            return sock
        sock.close()
        raise WireError("08001", "the upstream server does not accept TLS, which sslmode requires")

    def cancel(self, pid: int, secret: int) -> None:
        """Ask the upstream server to cancel what a session of its runs."""
        with (
            contextlib.suppress(OSError),
            socket.create_connection((self.host, self.port), timeout=2) as sock,
        ):
            sock.sendall(struct.pack("!iiii", 16, CANCEL_REQUEST, pid, secret))
            sock.recv(1)  # the server closes it when done


def forwarded_params(params: dict[str, str], local: frozenset[str]) -> dict[str, str]:
    """The startup parameters the upstream gets: the local ones left out,
    also from ``options``."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if key.lower() in local:
            continue
        if key == "options":
            value = _strip_options(value, local)
            if not value:
                continue
        out[key] = value
    return out


def _strip_options(text: str, local: frozenset[str]) -> str:
    """``options`` without the -c/-- settings named in ``local`` (libpq's
    escaping: a backslash makes the next character literal)."""
    words: list[str] = []
    word: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            word.append(ch)
            escaped = False
        elif ch == "\\":
            word.append(ch)
            escaped = True
        elif ch.isspace():
            if word:
                words.append("".join(word))
                word = []
        else:
            word.append(ch)
    if word:
        words.append("".join(word))
    kept: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w == "-c" and i + 1 < len(words):
            setting, take = words[i + 1], 2
        elif w.startswith("-c") or w.startswith("--"):
            setting, take = w[2:], 1
        else:
            kept.append(w)
            i += 1
            continue
        name = setting.split("=", 1)[0].replace("\\", "").replace("-", "_").lower()
        if name not in local:
            kept.extend(words[i : i + take])
        i += take
    return " ".join(kept)


_BINDING_HINT = (
    "The client's TLS session ends at the proxy, so SCRAM channel binding with the "
    "upstream works only when the proxy has the upstream's certificate (--tls-cert, "
    "--tls-key). Otherwise connect with channel_binding=disable, or use "
    "sslmode=disable between the proxy and the upstream."
)


def _with_hint(payload: bytes, hint: str) -> bytes:
    """An ErrorResponse with a hint added (unless it has one)."""
    if payload.startswith(b"H") or b"\0H" in payload:
        return payload
    return payload[:-1] + b"H" + cstr(hint) + b"\0"


def _without_plus(payload: bytes) -> bytes:
    """AuthenticationSASL without the channel-binding mechanisms: the
    client's TLS session is the proxy's, not the upstream's."""
    names = [n for n in payload[4:].split(b"\0") if n]
    kept = [n for n in names if not n.endswith(b"-PLUS")]
    return payload[:4] + b"".join(n + b"\0" for n in kept) + b"\0"


@dataclass
class _Pending:
    """A forwarded message whose answer has not come yet."""

    kind: bytes  # Q, P, B, D, E, C, F
    rejection: BaseException | None = None  # the upstream fails it; this is what the client gets
    trip: Trip | None = None  # post-execution hooks to run on its rows
    swallow: bool = False  # the proxy's own Describe: its answer is not forwarded
    description: list[tuple[str, int, int]] | None = None  # (name, oid, format) of its rows
    feeds: _Pending | None = None  # the Execute the swallowed Describe describes


@dataclass
class _Rows:
    """A result held back for post-execution."""

    header: bytes | None  # the RowDescription, forwarded first (simple queries)
    columns: list[tuple[str, int, int]]
    rows: list[list[bytes | None]] = field(default_factory=list)
    size: int = 0


class ProxySide(ServerSide, Protocol):
    """What a proxy connection needs of its server besides a connection's."""

    upstream: Upstream | None
    pipeline: Pipeline | None


class ProxyConnection(Connection):
    """One client, relayed to its own upstream connection."""

    server: ProxySide

    def __init__(self, server: ProxySide, sock: socket.socket, process_id: int) -> None:
        super().__init__(server, sock, process_id)
        assert server.upstream is not None
        self.upstream = server.upstream
        self.pipeline = server.pipeline
        self.up_sock: socket.socket | None = None
        self.up: Input | None = None
        self.up_out = bytearray()
        self.up_key: tuple[int, int] | None = None
        self.status = b"I"
        self.pending: collections.deque[_Pending] = collections.deque()
        self.skipping = False  # the upstream failed a message: it skips to Sync
        # A post-execution hook failed: the client got an error PostgreSQL
        # knows nothing of, so the rest of the batch's answers are dropped,
        # as PostgreSQL itself would skip to Sync, and an open transaction
        # is made to fail upstream too (at ReadyForQuery).
        self.failed_locally = False
        # Per statement and portal name: the SQL as it went upstream, its
        # parameter types, and the tables it names (for the plugins' context).
        self.prepared: dict[str, tuple[str, list[int], list[str]]] = {}
        # Per portal: its statement's SQL and tables, and its parameters as
        # bound (bytes, type oid, format), decoded only if a hook or the
        # capture wants them.
        self.bound: dict[str, tuple[str, list[str], list[tuple[bytes | None, int, int]]]] = {}
        self.rejections = 0
        self._poll: select.poll | None = None

    # -- state the local connection keeps in SQLite ---------------------------------------

    def _in_transaction(self) -> bool:
        return self.status != b"I"

    def _status(self) -> bytes:
        return self.status

    # -- startup ---------------------------------------------------------------------------

    def _open_session(self, params: dict[str, str], minor: int) -> bool:
        if params.get("replication", "false").lower() not in ("false", "off", "no", "0"):
            raise Terminate("0A000", "replication connections are not proxied")
        self._refuse_plaintext()
        defaults = {name: seconds_text(getattr(self.limits, name)) for name in DURATIONS}
        try:
            # The plugins' own database: their host calls run on it.
            self.db = Database.open(self.server.db_path, limits=self.server.limits)
            self.session = WireSession(
                params=params,
                variables=initial_variables(params, defaults),
                db=self.db,
                process_id=self.process_id,
                protected=set(),
                defaults=defaults,
            )
            deadline = self.startup_deadline
            assert deadline is not None
            sock = self.upstream.connect(max(deadline - time.monotonic(), 0.001))
        except Exception as exc:  # noqa: BLE001 - reported to the client, which goes away
            self._send_fatal(exc)
            return False
        self.up_sock, self.up = sock, Input(sock)
        up = forwarded_params(params, self.upstream.local_params)
        body = struct.pack("!i", (PROTOCOL_3 << 16) | minor)
        body += b"".join(cstr(k) + cstr(v) for k, v in up.items()) + b"\0"
        self._up_send_raw(struct.pack("!i", len(body) + 4) + body)
        self._up_flush()
        if not self._relay_authentication():
            return False
        self.startup_deadline = None
        return True

    def _relay_authentication(self) -> bool:
        """Relays authentication, then the server's parameters and state,
        up to its first ReadyForQuery; False if the upstream refused."""
        deadline = self.startup_deadline
        while True:
            kind, payload = self._up_read(deadline)
            if kind == b"R":
                code = struct.unpack_from("!i", payload)[0] if len(payload) >= 4 else -1
                if code == _AUTH_SASL and not self._binds_through():
                    payload = _without_plus(payload)
                elif code not in (_AUTH_OK, _AUTH_SASL_FINAL, *_AUTH_ANSWERED):
                    raise Terminate(
                        "28000",
                        f"the upstream server asks for an authentication ({code}) "
                        "the proxy cannot relay; use SCRAM, MD5 or a password",
                    )
                self._send(b"R", payload)
                self._flush()
                if code in _AUTH_ANSWERED:
                    self._relay_password(deadline)
            elif kind == b"K":
                self.up_key = struct.unpack("!ii", payload[:8])
                self._send(b"K", struct.pack("!ii", self.process_id, self.secret))
            elif kind == b"Z":
                self.status = payload[:1]
                self._send(b"Z", payload)
                self._flush()
                return True
            elif kind == b"E":
                if b"channel binding" in payload and self.encrypted:
                    payload = _with_hint(payload, _BINDING_HINT)
                self._send(b"E", payload)
                self._flush()
                return False
            elif kind in (b"S", b"N", b"v"):
                self._send(kind, payload)
            else:
                raise ProtocolViolation(f"unexpected message {kind!r} from the upstream server")

    def _binds_through(self) -> bool:
        """Whether SCRAM's channel binding can go through the proxy: the
        client's TLS session and the upstream's end in the same certificate
        (the operator gave the proxy the server's), so the two sessions'
        tls-server-end-point data are the same."""
        tls = self.server.tls
        up = self.up_sock
        if not self.encrypted or tls is None or tls.binding is None:
            return False
        if not isinstance(up, ssl.SSLSocket):
            return False
        der = up.getpeercert(binary_form=True)
        return der is not None and end_point_hash(der) == tls.binding

    def _relay_password(self, deadline: float | None) -> None:
        header = self.input.read(5, deadline)
        kind, length = header[:1], struct.unpack("!i", header[1:])[0]
        if kind != b"p":
            raise ProtocolViolation(f"expected a password message, got {kind!r}")
        if not 4 <= length <= MAX_STARTUP_BYTES:
            raise ProtocolViolation(f"invalid length of password message: {length}")
        self._up_send(b"p", self.input.read(length - 4, deadline))
        self._up_flush()

    # -- talking to the upstream ----------------------------------------------------------

    def _up_send_raw(self, data: bytes) -> None:
        self.up_out += data
        if len(self.up_out) >= _OUT_BYTES:
            self._up_flush()

    def _up_send(self, kind: bytes, payload: bytes) -> None:
        self._up_send_raw(message(kind, payload))

    def _up_flush(self) -> None:
        if not self.up_out:
            return
        assert self.up_sock is not None
        try:
            self.up_sock.sendall(self.up_out)
        except (OSError, ValueError) as exc:
            raise Terminate("08006", f"lost the connection to the upstream server: {exc}") from None
        finally:
            self.up_out.clear()

    def _up_read(self, deadline: float | None = None) -> tuple[bytes, bytes]:
        assert self.up is not None
        try:
            header = self.up.read(5, deadline)
            length = struct.unpack("!i", header[1:])[0]
            if length < 4:
                raise ProtocolViolation(f"the upstream server sent a message of length {length}")
            return header[:1], self.up.read(length - 4, deadline)
        except Disconnected:
            raise Terminate("08006", "the upstream server closed the connection") from None
        except ReadTimeout:
            raise Terminate("57014", "canceling authentication due to timeout") from None

    # -- lifecycle -------------------------------------------------------------------------

    def interrupt(self) -> None:
        key = self.up_key
        if key is not None:
            threading.Thread(
                target=self.upstream.cancel, args=key, name="pgwire-proxy-cancel", daemon=True
            ).start()

    def shutdown(self) -> None:
        for sock in (self.sock, self.up_sock):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _close(self) -> None:
        if self.up_sock is not None:
            with contextlib.suppress(OSError):
                self.up_sock.sendall(message(b"X"))
            with contextlib.suppress(OSError):
                self.up_sock.close()
        super()._close()

    # -- the relay -------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self._wait_for_client()
            kind, payload = self._client_message()
            if kind == b"X":
                return
            if kind == b"Q":
                self._relay_query(payload)
            elif kind == b"P":
                self._parse_message(payload)
            elif kind == b"B":
                self._bind_message(payload)
            elif kind == b"E":
                self._execute_message(payload)
            elif kind in (b"D", b"C"):
                if kind == b"C" and payload[:1] == b"S":
                    self.prepared.pop(Body(payload[1:]).cstring(), None)
                self._forward(kind, payload)
            elif kind == b"F":
                self._forward(kind, payload)
                self._up_flush()
                self._drain(until_ready=True)
            elif kind == b"H":
                self._up_send(kind, payload)
                self._up_flush()
                self._drain(until_ready=False)
            elif kind == b"S":
                self._up_send(kind, payload)
                self._up_flush()
                self._drain(until_ready=True)
            else:  # COPY data outside COPY: the upstream ignores it
                self._up_send(kind, payload)

    def _forward(self, kind: bytes, payload: bytes, trip: Trip | None = None) -> None:
        """Sends a message that the upstream answers, and expects its answer."""
        self._up_send(kind, payload)
        self.pending.append(_Pending(kind, trip=trip))

    def _wait_for_client(self) -> None:
        """Until the client sends something; meanwhile what the upstream
        sends unasked (notifications, notices, a shutdown) goes to the client."""
        assert self.up is not None and self.up_sock is not None
        self._flush()
        self._up_flush()
        if self._buffered(self.input):
            return
        seconds, state, text = self._idle_limit()
        deadline = Input.deadline(seconds)
        if self._poll is None:  # made once: a poll set per message costs system calls
            self._poll = select.poll()
            for sock in (self.sock, self.up_sock):
                self._poll.register(sock, select.POLLIN | select.POLLPRI)
        client = self.sock.fileno()
        while True:
            if self._buffered(self.up):
                ready: list[int] = []
            else:
                ms = None if deadline is None else max(deadline - time.monotonic(), 0) * 1000
                ready = [fd for fd, _ in self._poll.poll(ms)]
                if not ready:
                    raise Terminate(state, text)
                if client in ready:
                    return
            kind, payload = self._up_read()
            self._send(kind, payload)
            self._flush()
            if kind == b"E":  # e.g. the administrator ended the session
                raise Disconnected("the upstream server ended the session")

    @staticmethod
    def _buffered(source: Input) -> bool:
        sock = source.sock
        pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
        return len(source.buffer) > source.pos or pending > 0

    def _client_message(self) -> tuple[bytes, bytes]:
        seconds, state, text = self._idle_limit()
        try:
            header = self.input.read(5, seconds=seconds)
            kind, length = header[:1], struct.unpack("!i", header[1:])[0]
            if length < 4:
                raise ProtocolViolation(f"invalid message length {length}")
            if length > self.limits.max_message_bytes:
                # Skipping it would leave the upstream's state unknown.
                raise Terminate(
                    "54000",
                    f"message of {length} bytes exceeds max_message_bytes "
                    f"({self.limits.max_message_bytes})",
                )
            return kind, self.input.read(length - 4, seconds=seconds)
        except ReadTimeout:
            raise Terminate(state, text) from None

    # -- hooks -----------------------------------------------------------------------------

    def _trip(self, whole_query: bool = False) -> Trip | None:
        if self.pipeline is None or self.skipping:
            return None
        assert self.session is not None
        pipeline = self.pipeline
        trip = pipeline.trip(self.session, DIALECT, whole_query)
        # Without plugins a statement is still traced and captured when asked.
        wanted = trip.chosen or pipeline.tracing is not None or pipeline.capture is not None
        return trip if wanted else None

    def _relay_query(self, payload: bytes) -> None:
        body = Body(payload)
        sql = body.cstring()
        body.end()
        self.skipping = False
        trip = self._trip(whole_query=True)
        if trip is None:
            self._forward(b"Q", payload)
            self._up_flush()
            self._drain(until_ready=True)
            return
        trip.record(sql, ())
        with contextlib.suppress(ProcedureError), trip.timed(sql):
            try:
                sql = trip.parse(sql)
                trip.before_execution(sql, ())
            except ProcedureError as exc:
                self._reject(b"Q", exc)
                raise  # counted as rejected or failed, then suppressed
            post = trip if trip.wants("post-execution") else None
            self._forward(b"Q", cstr(sql), trip=post)
            self._up_flush()
            self._drain(until_ready=True)

    def _parse_message(self, payload: bytes) -> None:
        body = Body(payload)
        name, sql = body.cstring(), body.cstring()
        oids = [body.int32() for _ in range(body.int16())]
        body.end()
        trip = self._trip()
        if trip is None:
            self.prepared[name] = (sql, oids, [])
            self._forward(b"P", payload)
            return
        # Counted when it runs (Execute): a statement prepared once and run
        # many times is many statements.
        with contextlib.suppress(ProcedureError), trip.timed(sql, count=False):
            try:
                sql = trip.parse(sql)
            except ProcedureError as exc:
                self.prepared.pop(name, None)
                self._reject(b"P", exc, name=name)
                raise
            self.prepared[name] = (sql, oids, list(trip.tables))
            tail = struct.pack("!h", len(oids)) + b"".join(struct.pack("!i", o) for o in oids)
            self._forward(b"P", cstr(name) + cstr(sql) + tail)

    def _bind_message(self, payload: bytes) -> None:
        self._forward(b"B", payload)
        if self.pipeline is None:
            return
        body = Body(payload)
        portal, name = body.cstring(), body.cstring()
        formats = [body.int16() for _ in range(body.int16())]
        raw: list[bytes | None] = []
        for _ in range(body.int16()):
            n = body.int32()
            raw.append(None if n < 0 else body.take(n))
        sql, oids, tables = self.prepared.get(name, ("", [], []))
        cells = []
        for i, data in enumerate(raw):
            fmt = formats[0] if len(formats) == 1 else (formats[i] if i < len(formats) else 0)
            cells.append((data, oids[i] if i < len(oids) else 0, fmt))
        self.bound[portal] = (sql, tables, cells)

    def _execute_message(self, payload: bytes) -> None:
        body = Body(payload)
        portal = body.cstring()
        body.int32()
        body.end()
        trip = self._trip()
        if trip is None:
            self._forward(b"E", payload)
            return
        sql, tables, cells = self.bound.get(portal, ("", [], []))
        values: list[SqlValue] = []
        if trip.wants("pre-execution") or trip.pipeline.capture is not None:
            values = [_decoded(data, oid, fmt) for data, oid, fmt in cells]
        trip.tables[:] = tables
        trip.record(sql, values)
        with contextlib.suppress(ProcedureError), trip.timed(sql):
            try:
                trip.before_execution(sql, values)
            except ProcedureError as exc:
                self._reject(b"E", exc)
                raise
            if not trip.wants("post-execution"):
                self._forward(b"E", payload)
                return
            execute = _Pending(b"E", trip=trip)
            # The rows' types and formats, from a Describe of our own.
            self._up_send(b"D", b"P" + cstr(portal))
            self.pending.append(_Pending(b"D", swallow=True, feeds=execute))
            self._up_send(b"E", payload)
            self.pending.append(execute)

    def _reject(self, kind: bytes, exc: BaseException, name: str = "") -> None:
        """Forwards, in place of the refused message, one the upstream fails
        at the same step; its error is replaced by ``exc``."""
        self.rejections += 1
        if kind == b"E":
            self._forward(b"E", cstr(_REJECTED_PORTAL.format(self.rejections)) + b"\0\0\0\0")
        else:
            text = cstr(_REJECTED_SQL.format(self.rejections))
            payload = text if kind == b"Q" else cstr(name) + text + b"\0\0"
            self._forward(kind, payload)
        self.pending[-1].rejection = exc
        if kind == b"Q":
            self._up_flush()
            self._drain(until_ready=True)

    # -- the upstream's answers ------------------------------------------------------------

    def _drain(self, until_ready: bool) -> None:
        """Forwards the upstream's answers: up to ReadyForQuery, or until
        every forwarded message was answered (a Flush)."""
        held: _Rows | None = None
        current: _Pending | None = None  # the simple query (or function call) being answered
        while until_ready or (self.pending and not self.skipping):
            if current is None and self.pending and self.pending[0].kind in (b"Q", b"F"):
                current = self.pending.popleft()
            elif current is None and self.skipping:
                # A Query sent before the Sync that ends a failed extended
                # batch: the upstream skips it too, so no answer comes.
                break
            kind, payload = self._up_read()
            if kind == b"Z":
                if self.failed_locally and payload[:1] == b"T":
                    payload = self._fail_upstream_transaction()
                self.failed_locally = False
                self.status = payload[:1]
                self.pending.clear()
                self.skipping = False
                self._send(b"Z", payload)
                self._flush()
                return
            if kind in (b"N", b"S", b"A"):
                self._send(kind, payload)
                continue
            if kind == b"E":
                entry = current if current is not None else self._pop()
                held = None
                if not self.failed_locally:  # else the client had this batch's error
                    self._error(entry, payload)
                if current is None:
                    self.skipping = True
                    self.pending.clear()
                continue
            if kind == b"G" and self.failed_locally:  # the client skipped this COPY
                self._up_send(b"f", cstr("an earlier statement of this batch failed"))
                self._up_flush()
                continue
            if kind == b"G":  # CopyInResponse: the client's data, up to CopyDone or CopyFail
                self._send(kind, payload)
                self._relay_copy_in()
                continue
            if current is not None:
                held = self._answer_query(current, held, kind, payload)
                continue
            entry = self.pending[0] if self.pending else None
            if entry is None:
                raise ProtocolViolation(f"unexpected message {kind!r} from the upstream server")
            if entry.kind == b"D":
                if kind == b"t":  # ParameterDescription: a RowDescription or NoData follows
                    self._answer(kind, payload)
                    continue
                self.pending.popleft()
                if entry.swallow:
                    if entry.feeds is not None and kind == b"T":
                        entry.feeds.description = _columns(payload)
                    continue
            elif entry.kind == b"E":
                if kind == b"D" and entry.description is not None and entry.trip is not None:
                    held = held or _Rows(None, entry.description)
                    self._hold_row(held, payload)
                    continue
                if kind in (b"C", b"s", b"I"):
                    self.pending.popleft()
                    if held is not None and entry.trip is not None:
                        released = self._release(held, entry.trip)
                        held = None
                        if not released:
                            continue
            elif kind in (b"1", b"2", b"3"):
                self.pending.popleft()
            self._answer(kind, payload)
        self._flush()

    def _answer(self, kind: bytes, payload: bytes) -> None:
        """The upstream's answer to a client's message, unless the batch failed here."""
        if not self.failed_locally:
            self._send(kind, payload)

    def _fail_upstream_transaction(self) -> bytes:
        """Fails PostgreSQL's open transaction, as the client was told it
        failed: a statement that fails (its error the client already had);
        the ReadyForQuery that follows."""
        self.rejections += 1
        self._up_send(b"Q", cstr(_REJECTED_SQL.format(self.rejections)))
        self._up_flush()
        while True:
            kind, payload = self._up_read()
            if kind == b"Z":
                return payload
            if kind in (b"S", b"A"):
                self._send(kind, payload)

    def _pop(self) -> _Pending | None:
        return self.pending.popleft() if self.pending else None

    def _answer_query(
        self, query: _Pending, held: _Rows | None, kind: bytes, payload: bytes
    ) -> _Rows | None:
        """One message of a simple query's answer; the rows it holds back."""
        if query.trip is not None:
            if kind == b"T":
                return _Rows(payload, _columns(payload))
            if kind == b"D" and held is not None:
                self._hold_row(held, payload)
                return held
            if kind == b"C" and held is not None and not self._release(held, query.trip):
                return None  # its error instead of the rows and CommandComplete
        self._answer(kind, payload)
        return None

    def _error(self, entry: _Pending | None, payload: bytes) -> None:
        if entry is not None and entry.rejection is not None:
            state, text, detail, hint = error_fields(entry.rejection)
            self._send(b"E", notice_fields("ERROR", state, text, detail, hint))
        else:
            self._send(b"E", payload)

    def _relay_copy_in(self) -> None:
        self._flush()
        while True:
            kind, payload = self._client_message()
            self._up_send(kind, payload)
            if kind in (b"c", b"f", b"X"):
                self._up_flush()
                if kind == b"X":
                    raise Disconnected("the client ended the session during COPY")
                return

    # -- rows held for post-execution -----------------------------------------------------

    def _hold_row(self, held: _Rows, payload: bytes) -> None:
        body = Body(payload)
        cells: list[bytes | None] = []
        for _ in range(body.int16()):
            n = body.int32()
            cells.append(None if n < 0 else body.take(n))
        held.size += len(payload) + 64
        if held.size > self.limits.max_buffer_bytes:
            held.rows.clear()
            raise Terminate(
                "54000",
                "the post-execution hooks would hold more than max_buffer_bytes "
                f"({self.limits.max_buffer_bytes} bytes) of rows",
            )
        held.rows.append(cells)

    def _release(self, held: _Rows, trip: Trip) -> bool:
        """Runs post-execution on the held rows and sends them; False if it
        failed (its error was sent instead)."""
        columns = held.columns
        values = [
            [_decoded(cell, oid, fmt) for cell, (_, oid, fmt) in zip(row, columns, strict=True)]
            for row in held.rows
        ]
        try:
            replaced = trip.after_execution([c[0] for c in columns], values)
            rows = held.rows if replaced is None else _encoded(replaced, values, held, trip)
        except ProcedureError as exc:
            self._send_error(exc)
            self.failed_locally = True
            return False
        if held.header is not None:
            self._send(b"T", held.header)
        for row in rows:
            parts = [struct.pack("!h", len(row))]
            for cell in row:
                parts.append(b"\xff\xff\xff\xff" if cell is None else struct.pack("!i", len(cell)))
                if cell is not None:
                    parts.append(cell)
            self._send_parts(b"D", parts)
        return True


def _columns(payload: bytes) -> list[tuple[str, int, int]]:
    """(name, type oid, format) of each column of a RowDescription."""
    body = Body(payload)
    out = []
    for _ in range(body.int16()):
        name = body.cstring()
        body.take(6)  # table oid, column number
        oid = body.int32()
        body.take(6)  # type size, type modifier
        out.append((name, oid, body.int16()))
    return out


def _decoded(data: bytes | None, oid: int, fmt: int) -> SqlValue:
    """A value as the plugins see it; one the proxy cannot read stays text
    (or bytes, in binary)."""
    if data is None:
        return None
    try:
        return codec.decode_param(data, oid, fmt == 1, 0)
    except (WireError, ValueError, struct.error):
        if fmt == 1:
            return data
        return data.decode("utf-8", "replace")


def _encoded(
    replaced: list[tuple[SqlValue, ...]],
    originals: list[list[SqlValue]],
    held: _Rows,
    trip: Trip,
) -> list[list[bytes | None]]:
    """The rows a plugin gave, in the columns' types and formats; a value it
    left as it was keeps its bytes."""
    out: list[list[bytes | None]] = []
    for r, row in enumerate(replaced):
        same = r < len(originals)
        cells: list[bytes | None] = []
        for c, value in enumerate(row):
            if same and c < len(originals[r]) and value == originals[r][c]:
                cells.append(held.rows[r][c])
                continue
            if value is None:
                cells.append(None)
                continue
            name, oid, fmt = held.columns[c]
            try:
                cells.append(_binary(value, oid) if fmt == 1 else codec.encode_text(value, oid))
            except (ValueError, TypeError, struct.error) as exc:
                version = trip.chosen[-1][1] if trip.chosen else None
                raise PluginError(
                    f"replace-rows gave {value!r} for column {name!r} (type oid {oid}), "
                    f"which it cannot take: {exc}",
                    procedure=version.name if version else None,
                    version=version.version if version else None,
                ) from None
        out.append(cells)
    return out


_PACKED = {codec.OID_INT2: "!h", codec.OID_INT4: "!i", codec.OID_INT8: "!q", codec.OID_OID: "!I"}


def _binary(value: SqlValue, oid: int) -> bytes:
    """A replaced value in PostgreSQL's binary format for ``oid`` (the types
    whose format is plain; for others a client must ask for text)."""
    if oid in _PACKED and isinstance(value, int) and not isinstance(value, bool):
        return struct.pack(_PACKED[oid], value)
    if oid in codec.FLOAT_OIDS and isinstance(value, int | float) and not isinstance(value, bool):
        return struct.pack("!f" if oid == codec.OID_FLOAT4 else "!d", value)
    if oid == codec.OID_BOOL and isinstance(value, bool | int):
        return b"\x01" if value else b"\x00"
    if oid == codec.OID_BYTEA and isinstance(value, bytes):
        return value
    if oid in codec.STRING_OIDS and isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if oid == codec.OID_JSONB and isinstance(value, str):
        return b"\x01" + value.encode("utf-8", "surrogatepass")  # jsonb's version byte
    raise ValueError(
        f"no binary form of {type(value).__name__} for this type; "
        "the client can ask for the column in text format"
    )
