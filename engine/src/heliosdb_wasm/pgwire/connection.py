"""One client connection: startup, the simple and extended query
protocols, and what one session may cost (WireLimits)."""

from __future__ import annotations

import binascii
import collections
import contextlib
import logging
import secrets
import socket
import ssl
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import apsw
import apsw.ext

from .. import ddl
from ..database import Database, Result
from ..errors import DdlError, ProcedureError
from ..policy import Limits
from ..values import SqlValue
from . import auth, catalog, functions, roles
from .auth import AuthMode
from .codec import (
    OID_TEXT,
    TYPE_NAMES,
    TYPLEN,
    coerce,
    column_oid,
    declared_oid,
    decode_param,
    encode_binary,
    encode_text,
    fits,
)
from .copy import BinaryDecoder, Copy, Decoder, Encoder, parse_copy
from .cursors import (
    Cursor,
    parse_close,
    parse_declare,
    parse_execute,
    parse_fetch,
    parse_prepare,
)
from .describe import Description, describe, family
from .dialect import (
    command_tag,
    is_deallocate,
    keywords,
    names,
    outside_implicit,
    quoted,
    translate_placeholders,
)
from .errors import WireError, error_fields, sqlstate_for
from .protocol import (
    CANCEL_REQUEST,
    EXTENDED_KINDS,
    FAREWELL_SECONDS,
    FRONTEND_KINDS,
    GSSENC_REQUEST,
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
from .session import (
    DURATIONS,
    REPORTED,
    Executor,
    WireLimits,
    WireSession,
    effective_seconds,
    initial_variables,
    parse_duration,
    seconds_text,
)
from .tls import TlsConfig
from .translate import to_sqlite
from .watchdog import Watchdog

_log = logging.getLogger("heliosdb_wasm.pgwire")


class ServerSide(Protocol):
    """What a connection needs of the server that accepted it."""

    db_path: str
    executor: Executor
    limits: Limits | None
    allow_ddl: bool
    wire_limits: WireLimits
    auth: AuthMode
    tls: TlsConfig | None
    _watchdog: Watchdog

    def _forget(self, conn: Connection) -> None: ...

    def _cancel(self, pid: int, secret: int) -> None: ...


@dataclass
class Statement:
    sql: str  # with ?n placeholders
    param_oids: list[int]
    empty: bool
    size: int = 0  # what it counts against max_buffer_bytes
    described: bool = False
    description: Description | None = None  # once described (None: it cannot be)


@dataclass
class Portal:
    statement: Statement
    params: list[SqlValue]
    result_formats: list[int]
    result: Result | None = None
    oids: list[int] = field(default_factory=list)
    coerced: bool = False  # values are made the described types (codec.coerce)
    tag: str = ""
    position: int = 0
    size: int = 0  # what it counts against max_buffer_bytes, rows included


# Rows one INSERT of COPY FROM carries (fewer if they would pass SQLite's
# parameter limit).
_COPY_BATCH_ROWS = 500
# Statement descriptions a connection remembers (_described); each is small.
_DESCRIPTIONS = 256
# What a prepared statement or a portal is estimated to cost besides its text,
# parameters and rows (the objects that hold them), and a buffered row besides
# its values (the row's slot in the result list and its GC header).
_ENTRY_BYTES = 512
_ROW_BYTES = 24
# Output is buffered up to this much between writes to the socket.
_OUT_BYTES = 256 * 1024


class Connection:
    """One client connection, served by its own thread."""

    def __init__(self, server: ServerSide, sock: socket.socket, process_id: int) -> None:
        self.server = server
        self.limits = server.wire_limits
        self.sock = sock
        self.process_id = process_id
        self.secret = secrets.randbits(31)
        self.input = Input(sock)
        self.out = bytearray()
        self.session: WireSession | None = None
        self.db: Database | None = None
        self.statements: dict[str, Statement] = {}
        self.portals: dict[str, Portal] = {}
        self.cursors: dict[str, Cursor] = {}
        self.descriptions: collections.OrderedDict[
            tuple[str, tuple[int, ...]], tuple[tuple[int, int, int], Description | None]
        ] = collections.OrderedDict()
        self.failed = False  # an error inside a transaction block: 'E' until it ends
        self.ignore_till_sync = False
        self.reported: dict[str, str] = {}
        # Set while the startup packet may still come; then the idle limits apply.
        self.startup_deadline: float | None = None
        self.farewell = False  # sending a FATAL error: a short send timeout
        self.encrypted = False  # TLS is up (after an SSLRequest)
        # The time limits as this session has them, until a statement may
        # have changed its transaction or variables (see _idle_limit).
        self.idle: tuple[float, str, str] | None = None
        self.statement_seconds: float | None = None
        # max_buffer_bytes: what statements and portals hold between messages,
        # and what the running statement's rows add (counted by _count_row).
        self.held = 0
        self.row_bytes = 0
        self.row_budget = sys.maxsize  # bounded only while a statement runs

    # -- I/O ---------------------------------------------------------------------------

    def _send(self, kind: bytes, payload: bytes = b"") -> None:
        self.out += message(kind, payload)
        if len(self.out) >= _OUT_BYTES:
            self._flush()

    def _send_parts(self, kind: bytes, parts: list[bytes]) -> None:
        """One message made of ``parts``; a big one is not copied again."""
        size = sum(map(len, parts))
        header = kind + struct.pack("!i", size + 4)
        if size < _OUT_BYTES:
            self.out += header
            for part in parts:
                self.out += part
            if len(self.out) >= _OUT_BYTES:
                self._flush()
            return
        self._flush()
        for part in (header, *parts):
            self._write(part)

    def _flush(self) -> None:
        if self.out:
            try:
                self._write(self.out)
            finally:
                self.out.clear()

    def _write(self, data: bytes | bytearray) -> None:
        try:
            # A client that does not read what it asked for is as idle as
            # one that does not write.
            timeout = self._send_timeout()
            if timeout != self.input.timeout:
                self.input.set_timeout(timeout)
            self.sock.sendall(data)
        except (OSError, ValueError) as exc:
            raise Disconnected(str(exc)) from None

    def _send_timeout(self) -> float | None:
        if self.farewell:
            return FAREWELL_SECONDS
        if self.startup_deadline is not None:
            return max(self.startup_deadline - time.monotonic(), 0.001)
        seconds = self._idle_limit()[0]
        return seconds or None

    def _send_error(self, exc: BaseException, severity: str = "ERROR") -> None:
        state, message, detail, hint = error_fields(exc)
        self._send(b"E", notice_fields(severity, state, message, detail, hint))

    def _send_fatal(self, exc: BaseException) -> None:
        """Tell a client why it is being disconnected, if it still listens."""
        self.farewell = True
        with contextlib.suppress(Disconnected):
            self._send_error(exc, "FATAL")
            self._flush()

    def _send_notice(self, state: str, message: str) -> None:
        self._send(b"N", notice_fields("WARNING", state, message, None, None))

    def _in_transaction(self) -> bool:
        assert self.db is not None
        return self.failed or not self.db.conn.getautocommit()

    def _status(self) -> bytes:
        if self.failed:
            return b"E"
        assert self.db is not None
        return b"I" if self.db.conn.getautocommit() else b"T"

    def _ready(self) -> None:
        self._send(b"Z", self._status())
        self._flush()

    # -- limits ------------------------------------------------------------------------

    def _limit(self, name: str) -> float:
        """A time limit of WireLimits as this session has it (0: none)."""
        server: float = getattr(self.limits, name)
        if self.session is None:
            return server
        return effective_seconds(server, self.session.variables.get(name))

    def _idle_limit(self) -> tuple[float, str, str]:
        """How long the client may keep the server waiting now, and the error
        that ends the connection then (kept until a statement may have
        changed the transaction or the session's variables)."""
        if self.idle is None:
            if self._in_transaction():
                self.idle = (
                    self._limit("idle_in_transaction_session_timeout"),
                    "25P03",
                    "terminating connection due to idle-in-transaction timeout",
                )
            else:
                self.idle = (
                    self._limit("idle_session_timeout"),
                    "57P05",
                    "terminating connection due to idle-session timeout",
                )
        return self.idle

    def _count_row(self, _cursor: apsw.Cursor, row: tuple[SqlValue, ...]) -> tuple[SqlValue, ...]:
        """The connection's row tracer: every row SQLite hands to Python on
        this connection counts against max_buffer_bytes."""
        self.row_bytes += _ROW_BYTES + sys.getsizeof(row) + sum(map(sys.getsizeof, row))
        if self.row_bytes > self.row_budget:
            raise self._buffer_full()
        return row

    def _buffer_full(self) -> WireError:
        return WireError(
            "54000",
            f"this connection would buffer more than max_buffer_bytes "
            f"({self.limits.max_buffer_bytes} bytes) of results, prepared statements and portals",
            hint="Ask for fewer rows at a time (LIMIT/OFFSET or a keyset), close unused "
            "prepared statements and portals, or raise the server's --max-buffer-bytes.",
        )

    def _hold(self, size: int, freed: int = 0) -> None:
        """Account ``size`` more bytes kept between messages (``freed`` fewer)."""
        if size > freed and self.held - freed + size > self.limits.max_buffer_bytes:
            raise self._buffer_full()
        self.held += size - freed

    def _keep_statement(self, name: str, statement: Statement) -> None:
        old = self.statements.get(name)
        self._hold(statement.size, old.size if old is not None else 0)
        self.statements[name] = statement

    def _drop_statement(self, name: str) -> Statement | None:
        statement = self.statements.pop(name, None)
        if statement is not None:
            self.held -= statement.size
        return statement

    def _keep_portal(self, name: str, portal: Portal) -> None:
        old = self.portals.get(name)
        self._hold(portal.size, old.size if old is not None else 0)
        self.portals[name] = portal

    def _drop_portal(self, name: str) -> None:
        portal = self.portals.pop(name, None)
        if portal is not None:
            self.held -= portal.size

    def _drop_portals(self) -> None:
        """At the end of a transaction: its portals, and its cursors without HOLD."""
        for portal in self.portals.values():
            self.held -= portal.size
        self.portals.clear()
        for name in [n for n, c in self.cursors.items() if not c.hold]:
            self._drop_cursor(name)

    def _drop_cursor(self, name: str) -> None:
        cursor = self.cursors.pop(name, None)
        if cursor is not None:
            self.held -= cursor.size

    # -- lifecycle ---------------------------------------------------------------------

    def serve(self) -> None:
        """The thread's body: startup, then messages until Terminate or EOF."""
        try:
            if self._startup():
                self._loop()
        except Disconnected:
            pass
        except Terminate as exc:
            self._send_fatal(exc.error)
        except ProtocolViolation as exc:
            self._send_fatal(WireError("08P01", str(exc)))
        except Exception as exc:  # noqa: BLE001 - a connection's bug must not kill the server
            _log.exception("pgwire connection %d failed", self.process_id)
            self._send_fatal(exc)
        finally:
            self._close()

    def _close(self) -> None:
        self.server._forget(self)
        if self.db is not None:
            db, self.db = self.db, None
            try:
                db.close()
            except Exception:  # noqa: BLE001 - closing must finish whatever happened
                _log.exception("closing the database of connection %d", self.process_id)
        if isinstance(self.sock, ssl.SSLSocket) and self.encrypted:
            # TLS's close_notify, which libpq reads as the end of a cancel
            # request's connection (an EOF without it is an "SSL error").
            with contextlib.suppress(OSError, ValueError):
                self.sock.settimeout(FAREWELL_SECONDS)
                self.sock.unwrap()
        with contextlib.suppress(OSError):
            self.sock.close()

    def interrupt(self) -> None:
        """Cancel the running statement (called from another thread)."""
        db = self.db
        if db is not None:
            with contextlib.suppress(Exception):
                db.conn.interrupt()

    def shutdown(self) -> None:
        """Make the serving thread's blocking reads and writes end (other thread)."""
        self.interrupt()
        with contextlib.suppress(OSError, ValueError):
            # The socket's own shutdown, not SSLSocket's: that one would
            # tear down the TLS state under the thread reading from it.
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    def _startup(self) -> bool:
        # The whole startup must come within authentication_timeout, however
        # slowly its bytes trickle in.
        self.startup_deadline = time.monotonic() + self.limits.authentication_timeout
        try:
            return self._startup_packet()
        except ReadTimeout:
            raise Terminate("57014", "canceling authentication due to timeout") from None

    def _startup_packet(self) -> bool:
        deadline = self.startup_deadline
        while True:
            length = struct.unpack("!i", self.input.read(4, deadline))[0]
            if not 8 <= length <= MAX_STARTUP_BYTES:
                raise ProtocolViolation(f"invalid length of startup packet: {length}")
            body = Body(self.input.read(length - 4, deadline))
            code = body.int32()
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                body.end()
                self._negotiate(code == SSL_REQUEST)
                continue
            if code == CANCEL_REQUEST:
                pid, secret = body.int32(), body.int32()
                self.server._cancel(pid, secret)
                return False
            break
        major, minor = code >> 16, code & 0xFFFF
        if major != PROTOCOL_3:
            raise ProtocolViolation(f"unsupported frontend protocol {major}.{minor}")
        params: dict[str, str] = {}
        while True:
            key = body.cstring()
            if not key:
                break
            params[key] = body.cstring()
        body.end()
        return self._open_session(params, minor)

    def _open_session(self, params: dict[str, str], minor: int) -> bool:
        """After the startup packet: the session opened on the database and
        the client told it may go on (False if it was refused)."""
        unknown = [k for k in params if k.startswith("_pq_.")]
        if minor > 0 or unknown:
            payload = struct.pack("!ii", PROTOCOL_3 << 16, len(unknown))
            self._send(b"v", payload + b"".join(cstr(k) for k in unknown))
        self._refuse_plaintext()
        defaults = {name: seconds_text(getattr(self.limits, name)) for name in DURATIONS}
        variables = initial_variables(params, defaults)
        try:
            for name in DURATIONS:
                parse_duration(name, variables[name])
            self.db = Database.open(self.server.db_path, limits=self.server.limits)
        except Exception as exc:  # noqa: BLE001 - reported to the client, which goes away
            self._send_fatal(exc)
            return False
        self._authenticate(params.get("user", ""))
        try:
            self.db.serve_clients(allow_ddl=self.server.allow_ddl, reserved=catalog.RELATIONS)
            conn = self.db.conn
            conn.limit(apsw.SQLITE_LIMIT_LENGTH, self.limits.max_value_bytes)
            conn.row_trace = self._count_row
        except Exception as exc:  # noqa: BLE001 - reported to the client, which goes away
            self._send_fatal(exc)
            return False
        self.session = WireSession(
            params=params,
            variables=variables,
            db=self.db,
            process_id=self.process_id,
            protected=set(),
            defaults=defaults,
        )
        functions.install(self.db.conn, self.session)
        catalog.install(self.db, self.session)
        self.startup_deadline = None
        self._send(b"R", struct.pack("!i", 0))  # AuthenticationOk
        self._report_parameters()
        self._send(b"K", struct.pack("!ii", self.process_id, self.secret))
        self._ready()
        return True

    def _refuse_plaintext(self) -> None:
        """Terminate a client without TLS when the server requires it."""
        tls = self.server.tls
        if tls is not None and tls.required and not self.encrypted:
            raise Terminate(
                "28000",
                "this server accepts only TLS connections (it was started with --tls require)",
                hint="Connect with sslmode=require, or verify-full with the server's CA.",
            )

    def _negotiate(self, ssl_request: bool) -> None:
        """Answer an SSLRequest ('S' and the TLS handshake, when the server
        has TLS) or a GSSENCRequest ('N')."""
        if self.input.pending():
            # CVE-2021-23214: bytes that came with the request came before
            # any handshake, so in plaintext, and may be a man in the middle's.
            raise Terminate(
                "08P01",
                "received unencrypted data after SSL request",
                detail="This could be either a client-software bug or evidence of an "
                "attempted man-in-the-middle attack.",
            )
        tls = self.server.tls
        if not ssl_request or tls is None or self.encrypted:
            self.out += b"N"
            self._flush()
            return
        self.out += b"S"
        self._flush()
        self._start_tls(tls)

    def _start_tls(self, tls: TlsConfig) -> None:
        """The server's side of the TLS handshake, by the startup deadline;
        from then on every read and write goes through TLS (a new Input on
        the TLS socket: the old one's buffer is empty, _negotiate checked)."""
        assert self.startup_deadline is not None
        remaining = self.startup_deadline - time.monotonic()
        if remaining <= 0:
            raise ReadTimeout
        try:
            wrapped = tls.context.wrap_socket(
                self.sock, server_side=True, do_handshake_on_connect=False
            )
        except (OSError, ValueError) as exc:
            raise Disconnected(str(exc)) from None
        self.sock = wrapped
        self.input = Input(wrapped)
        try:
            wrapped.settimeout(remaining)
            wrapped.do_handshake()
        except (OSError, ValueError) as exc:
            # A client that cannot finish the handshake (or does not in time)
            # can be told nothing: it speaks neither TLS nor plaintext now.
            _log.debug("pgwire connection %d: TLS handshake failed: %s", self.process_id, exc)
            raise Disconnected(str(exc)) from None
        self.encrypted = True

    def _authenticate(self, user: str) -> None:
        """Authenticate the startup packet's ``user`` as the server is told
        to (auth.py); Terminate if the client cannot."""
        if self.server.auth == "trust":
            return
        if not user:
            raise Terminate("28000", "no PostgreSQL user name specified in startup packet")
        tls = self.server.tls
        binding = tls.binding if tls is not None and self.encrypted else None
        # From here on the startup user is the authenticated role: the
        # session's params (plugins' context.user) need nothing else.
        auth.scram(self, user, lambda: self._credentials(user), binding)

    def _credentials(self, user: str) -> auth.Credentials:
        db = self.db
        assert db is not None
        role = None
        try:
            role = db.role(user)
        except ProcedureError as exc:  # a damaged or tampered row: nobody logs in with it
            _log.warning("pgwire: role %r cannot be used: %s", user, exc)
        with db.session.internal():
            secret = db.registry.mock_secret()
        return auth.Credentials.of(role, user, secret)

    def send_auth(self, code: int, payload: bytes = b"") -> None:
        self._send(b"R", struct.pack("!i", code) + payload)
        self._flush()

    def read_sasl(self) -> Body:
        header = self.input.read(5, self.startup_deadline)
        kind = header[:1]
        length = struct.unpack("!i", header[1:])[0]
        if kind == b"X":
            raise Disconnected("the client gave up authenticating")
        if kind != b"p":
            raise Terminate("08P01", f"expected SASL response, got message type {kind!r}")
        if not 4 <= length <= 4 + auth.MAX_SASL_BYTES:
            raise Terminate("08P01", f"invalid SASL message length {length}")
        return Body(self.input.read(length - 4, self.startup_deadline))

    def _report_parameters(self) -> None:
        assert self.session is not None
        for key, name in REPORTED.items():
            value = self.session.variables.get(key, "")
            if self.reported.get(key) != value:
                self.reported[key] = value
                self._send(b"S", cstr(name) + cstr(value))

    def _loop(self) -> None:
        handlers = {
            b"Q": self._query,
            b"P": self._parse,
            b"B": self._bind,
            b"D": self._describe,
            b"E": self._execute,
            b"C": self._close_message,
            b"H": self._flush_message,
        }
        while True:
            kind, body = self._next_message()
            if body is None:
                continue  # too long: answered and thrown away
            if kind == b"X":
                return
            if kind == b"S":
                body.end()
                self._sync()
                continue
            if kind in (b"d", b"c", b"f"):
                continue  # COPY data outside COPY: ignored, as PostgreSQL does
            handler = handlers.get(kind)
            if handler is None:  # b"F"
                self._send_error(WireError("0A000", "the function call message is not supported"))
                self._ready()
                continue
            if self.ignore_till_sync and kind != b"Q":
                continue
            try:
                handler(body)
            except (Disconnected, ProtocolViolation, Terminate):
                raise
            except Exception as exc:  # noqa: BLE001 - every failure becomes an ErrorResponse
                if sqlstate_for(exc) == "XX000":  # a bug somewhere, not a bad statement
                    _log.exception("pgwire connection %d: internal error", self.process_id)
                self._send_error(exc)
                self._after_extended_error(kind)

    def _next_message(self) -> tuple[bytes, Body | None]:
        """The next message; its body is None if it was too long (the client
        was told, and the bytes are gone). A client idle past its limit, or
        sending one message slower than that, is disconnected."""
        seconds, state, message = self._idle_limit()
        try:
            header = self.input.read(5, seconds=seconds)
            kind = header[:1]
            length = struct.unpack("!i", header[1:])[0]
            if kind not in FRONTEND_KINDS:
                raise ProtocolViolation(f"invalid frontend message type {kind!r}")
            if length < 4:
                raise ProtocolViolation(f"invalid message length {length}")
            if length <= self.limits.max_message_bytes:
                return kind, Body(self.input.read(length - 4, seconds=seconds))
            if kind in (b"S", b"H", b"X"):  # these have (almost) no body
                raise ProtocolViolation(f"invalid message length {length}")
            # Thrown away in chunks, so the stream stays in step and the
            # session goes on (PostgreSQL closes the connection instead).
            self.input.discard(length - 4, seconds)
        except ReadTimeout:
            raise Terminate(state, message) from None
        if kind in (b"d", b"c", b"f") or (self.ignore_till_sync and kind != b"Q"):
            return kind, None
        self._send_error(
            WireError(
                "54000",
                f"message of {length} bytes exceeds max_message_bytes "
                f"({self.limits.max_message_bytes})",
                hint="Send the data in smaller statements or parameters, or raise the "
                "server's --max-message-bytes.",
            )
        )
        if kind in EXTENDED_KINDS:
            self.ignore_till_sync = True
        else:
            self.ignore_till_sync = False
            self._ready()
        return kind, None

    def _after_extended_error(self, kind: bytes) -> None:
        if kind != b"Q":
            self.ignore_till_sync = True

    # -- running statements ------------------------------------------------------------

    def _run(
        self, sql: str, params: Sequence[SqlValue], implicit: bool = False
    ) -> tuple[Result, str]:
        """One statement through the executor, with PostgreSQL's transaction rules."""
        session, db = self.session, self.db
        assert session is not None and db is not None
        words = keywords(sql, 2)
        verb = words[0] if words else ""
        was_failed = self.failed
        if self.failed:
            if verb not in ("ROLLBACK", "ABORT", "COMMIT", "END"):
                raise WireError(
                    "25P02",
                    "current transaction is aborted, commands ignored until end of "
                    "transaction block",
                )
            if verb in ("COMMIT", "END"):
                sql, verb = "ROLLBACK", "ROLLBACK"  # a failed transaction cannot commit
        was_in_transaction = not db.conn.getautocommit()
        try:
            result, tag = self._statement(session, verb, sql, params)
        except Exception as exc:
            state = sqlstate_for(exc)
            if verb in ("COMMIT", "END", "ROLLBACK", "ABORT") and state == "25P01":
                # PostgreSQL only warns about ending a transaction that is not
                # there; a failed one SQLite already rolled back ends silently.
                if not was_failed:
                    self._send_notice("25P01", "there is no transaction in progress")
                self.failed = False
                return Result(), command_tag(sql, Result())
            if verb in ("BEGIN", "START") and state == "25001":
                self._send_notice("25001", "there is already a transaction in progress")
                return Result(), "BEGIN"
            if not implicit and (was_in_transaction or not db.conn.getautocommit()):
                self.failed = True
            raise
        finally:
            self.idle = self.statement_seconds = None
            self._report_parameters()
        self.failed = False
        self.idle = None
        return result, tag

    def _statement(
        self, session: WireSession, verb: str, sql: str, params: Sequence[SqlValue]
    ) -> tuple[Result, str]:
        """One statement: the connection's own (prepared statements and
        cursors in SQL) or the executor's."""
        if verb == "COPY":
            raise WireError(
                "0A000",
                "COPY in the extended query protocol is not supported",
                hint="Send COPY as a simple query (psql, psycopg's copy() and asyncpg do).",
            )
        if verb == "PREPARE":
            self._prepare_sql(sql)
            return Result(), "PREPARE"
        if verb == "EXECUTE":
            name, args = parse_execute(sql)
            statement = self._prepared(name)
            values = self._arguments(session, statement, args, params)
            result = self._limited(session, statement.sql, values)
            return result, command_tag(statement.sql, result)
        if verb == "DECLARE":
            return self._declare(session, sql, params), "DECLARE CURSOR"
        if verb in ("FETCH", "MOVE"):
            fetch = parse_fetch(sql)
            cursor = self.cursors.get(fetch.name)
            if cursor is None:
                raise WireError("34000", f'cursor "{fetch.name}" does not exist')
            tag, result = cursor.fetch(fetch)
            return result, tag
        if verb == "CLOSE":
            closed = parse_close(sql)
            if closed is None:
                for name in list(self.cursors):
                    self._drop_cursor(name)
                return Result(), "CLOSE CURSOR ALL"
            if closed not in self.cursors:
                raise WireError("34000", f'cursor "{closed}" does not exist')
            self._drop_cursor(closed)
            return Result(), "CLOSE CURSOR"
        if verb in ("CREATE", "ALTER", "DROP") and roles.is_role_statement(sql):
            if params:
                raise WireError("42P02", "role statements take no parameters")
            user = session.params.get("user", "")
            return roles.run(session.db, sql, user, allow_ddl=self.server.allow_ddl)
        result = self._limited(session, sql, params)
        return result, command_tag(sql, result)

    # -- COPY ------------------------------------------------------------------------

    def _copy(self, sql: str, implicit: bool) -> str:
        """COPY FROM STDIN / TO STDOUT; its command tag."""
        if self.failed:
            raise WireError(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            )
        copy = parse_copy(sql)
        if copy.direction == "TO":
            return self._copy_out(copy)
        return self._copy_in(copy, implicit)

    def _copy_out(self, copy: Copy) -> str:
        assert copy.query is not None or copy.table is not None
        if copy.query is not None:
            sql, _ = translate_placeholders(copy.query)
        else:
            columns = ", ".join(quoted(c) for c in copy.columns) if copy.columns else "*"
            sql = f"SELECT {columns} FROM {quoted(copy.table or '')}"
        result, _tag = self._run(sql, ())
        oids = self._result_oids(sql, result)
        encoder = Encoder(copy, result.columns, oids)
        n = len(result.columns)
        self._send(b"H", struct.pack(f"!bh{n}h", 0, n, *([0] * n)))
        header = encoder.header()
        if header is not None:
            self._send(b"d", header)
        for row in result.rows:
            self._send(b"d", encoder.row(row))
        self._send(b"c")
        return f"COPY {len(result.rows)}"

    def _copy_columns(self, copy: Copy) -> tuple[list[str], list[int]]:
        """The columns COPY FROM fills and their declared types (oids)."""
        assert self.db is not None and copy.table is not None
        declared = {
            str(name).lower(): (str(name), str(decl or ""))
            for name, decl, hidden in self.db.conn.execute(
                "SELECT name, type, hidden FROM pragma_table_xinfo(?)", (copy.table,)
            )
            if not hidden
        }
        if not declared:
            raise WireError("42P01", f'relation "{copy.table}" does not exist')
        names = copy.columns or [name for name, _ in declared.values()]
        missing = [c for c in names if c.lower() not in declared]
        if missing:
            raise WireError(
                "42703", f'column "{missing[0]}" of relation "{copy.table}" does not exist'
            )
        return names, [declared_oid(declared[c.lower()][1]) or 0 for c in names]

    def _copy_in(self, copy: Copy, implicit: bool) -> str:
        """Rows from the client's CopyData into the table, all or none."""
        session, db = self.session, self.db
        assert session is not None and db is not None and copy.table is not None
        names, oids = self._copy_columns(copy)
        n = len(names)
        binary = copy.format == "binary"
        self._send(b"G", struct.pack(f"!bh{n}h", int(binary), n, *([int(binary)] * n)))
        self._flush()
        per_batch = max(1, min(_COPY_BATCH_ROWS, ddl.MAX_PLACEHOLDER // n))
        into = f"INSERT INTO {quoted(copy.table)} ({', '.join(quoted(c) for c in names)}) VALUES "
        longest = self.limits.max_message_bytes
        decoder: Decoder | BinaryDecoder = (
            BinaryDecoder(longest) if binary else Decoder(copy, longest)
        )
        batch: list[SqlValue] = []
        count = 0

        def row_values(fields: Sequence[str | bytes | None]) -> None:
            if len(fields) != n:
                raise WireError(
                    "22P04",
                    f"COPY {copy.table}, line {decoder.line}: {len(fields)} columns, expected {n}",
                )
            for i, (text, oid) in enumerate(zip(fields, oids, strict=True)):
                try:
                    batch.append(None if text is None else self._copy_value(text, oid, i))
                except WireError as exc:
                    raise WireError(
                        exc.sqlstate,
                        f"COPY {copy.table}, line {decoder.line}, column {names[i]}: "
                        f"{str(text)[:64]!r} is not a valid {TYPE_NAMES.get(oid, 'value')}",
                    ) from None

        def insert() -> None:
            nonlocal count
            rows = len(batch) // n
            if rows:
                holes = ", ".join(["(" + ", ".join(["?"] * n) + ")"] * rows)
                self._limited(session, into + holes, batch)
                count += rows
                batch.clear()

        outer = not db.conn.getautocommit()
        db.conn.execute("SAVEPOINT heliosdb_copy" if outer else "BEGIN")
        error: BaseException | None = None
        try:
            while True:
                kind, body = self._next_message()
                if kind == b"d":
                    if body is None:
                        error = error or WireError(
                            "54000",
                            f"a CopyData message exceeds max_message_bytes "
                            f"({self.limits.max_message_bytes})",
                        )
                    elif error is None:
                        try:
                            for fields in decoder.feed(body.data):
                                row_values(fields)
                                if len(batch) >= per_batch * n:
                                    insert()
                        except Exception as exc:  # noqa: BLE001 - reported after CopyDone
                            error = exc
                    continue
                if kind == b"c" and body is not None:
                    if error is None:
                        try:
                            for fields in decoder.finish():
                                row_values(fields)
                            insert()
                        except Exception as exc:  # noqa: BLE001 - reported below
                            error = exc
                    break
                if kind == b"f":
                    reason = body.cstring() if body is not None else ""
                    error = WireError("57014", f"COPY from stdin failed: {reason}")
                    break
                if kind in (b"H", b"S"):
                    continue  # ignored during COPY, as PostgreSQL does
                if kind == b"X":
                    raise Terminate("08006", "the client ended the session during COPY")
                error = WireError(
                    "08P01", f"unexpected message type {kind!r} during COPY from stdin"
                )
                break
        except BaseException:
            self._end_copy(outer, ok=False)
            raise
        self._end_copy(outer, ok=error is None)
        if error is not None:
            if outer and not implicit:
                self.failed = True
            raise error
        return f"COPY {count}"

    @staticmethod
    def _copy_value(field: str | bytes, oid: int, index: int) -> SqlValue:
        if isinstance(field, bytes):
            return decode_param(field, oid or OID_TEXT, True, index)
        return decode_param(field.encode("utf-8", "surrogatepass"), oid, False, index)

    def _end_copy(self, outer: bool, ok: bool) -> None:
        assert self.db is not None
        conn = self.db.conn
        with contextlib.suppress(apsw.Error):
            if outer:
                if not ok:
                    conn.execute("ROLLBACK TO heliosdb_copy")
                conn.execute("RELEASE heliosdb_copy")
            elif not conn.getautocommit():
                conn.execute("COMMIT" if ok else "ROLLBACK")

    def _prepare_sql(self, sql: str) -> None:
        """PREPARE name [(types)] AS statement: a prepared statement, as Parse makes."""
        prepare = parse_prepare(sql)
        if prepare.name in self.statements:
            raise WireError("42P05", f'prepared statement "{prepare.name}" already exists')
        body, highest = translate_placeholders(prepare.body)
        oids = [declared_oid(t) or 0 for t in prepare.types]
        oids += [0] * (highest - len(oids))
        size = _ENTRY_BYTES + sys.getsizeof(body) + 8 * len(oids)
        self._keep_statement(prepare.name, Statement(body, oids, False, size))

    def _arguments(
        self,
        session: WireSession,
        statement: Statement,
        args: str | None,
        params: Sequence[SqlValue],
    ) -> list[SqlValue]:
        """EXECUTE's arguments: expressions, evaluated as one SELECT."""
        self._infer_params(statement)
        values: list[SqlValue] = []
        if args is not None:
            evaluated = self._limited(session, f"SELECT {args}", params)
            values = list(evaluated.rows[0]) if evaluated.rows else []
        if len(values) != len(statement.param_oids):
            raise WireError(
                "42601",
                f"wrong number of parameters for prepared statement: it takes "
                f"{len(statement.param_oids)}, EXECUTE gives {len(values)}",
            )
        return [
            coerce(v, family(oid) or OID_TEXT, f"${i}") if oid else v
            for i, (v, oid) in enumerate(zip(values, statement.param_oids, strict=True), 1)
        ]

    def _declare(self, session: WireSession, sql: str, params: Sequence[SqlValue]) -> Result:
        declare = parse_declare(sql)
        assert self.db is not None
        if not declare.hold and self.db.conn.getautocommit():
            raise WireError("25P01", "DECLARE CURSOR can only be used in transaction blocks")
        if declare.name in self.cursors:
            raise WireError("42P03", f'cursor "{declare.name}" already exists')
        query, _ = translate_placeholders(declare.query)
        result = self._limited(session, query, params)
        size = _ENTRY_BYTES + self.row_bytes
        self._hold(size)
        oids = self._result_oids(query, result)
        self.cursors[declare.name] = Cursor(result, oids, declare.hold, size)
        return Result()

    def _limited(self, session: WireSession, sql: str, params: Sequence[SqlValue]) -> Result:
        """The executor, within statement_timeout and max_buffer_bytes."""
        self.row_bytes = 0
        self.row_budget = self.limits.max_buffer_bytes - self.held
        if self.statement_seconds is None:
            self.statement_seconds = self._limit("statement_timeout")
        seconds = self.statement_seconds
        watchdog = self.server._watchdog
        token = watchdog.arm(self, seconds) if seconds else None
        try:
            return self.server.executor(session, sql, params)
        except Exception as exc:
            if token is not None and watchdog.disarm(token):
                raise WireError("57014", "canceling statement due to statement timeout") from exc
            if self.row_bytes > self.row_budget:
                # Whoever read the rows (a procedure's query) may have wrapped it.
                raise self._buffer_full() from exc
            raise
        finally:
            self.row_budget = sys.maxsize
            if token is not None:
                watchdog.disarm(token)

    def _result_oids(self, sql: str, result: Result) -> list[int]:
        """Column types: the declared type where the values fit it, else the
        values' (a cursor's: those of all its rows, as it was described)."""
        if keywords(sql, 1) == ["FETCH"]:
            cursor = self.cursors.get(parse_fetch(sql).name)
            if cursor is not None:
                return cursor.oids
        columns = len(result.columns)
        declared: list[int | None] = [None] * columns
        if columns and len(result.decltypes) == columns:
            # The statement SQLite ran said: no second prepare.
            declared = [declared_oid(d) for d in result.decltypes]
        elif columns:
            assert self.db is not None
            try:
                description = apsw.ext.query_info(self.db.conn, to_sqlite(sql)).description
                if description is not None and len(description) == columns:
                    declared = [declared_oid(d[1]) for d in description]
            except Exception:  # noqa: BLE001 - not plain SQLite (CALL, SHOW, rewritten): use values
                pass
        oids = []
        for i in range(columns):
            column = [row[i] for row in result.rows]
            oid = declared[i]
            oids.append(oid if oid is not None and fits(oid, column) else column_oid(column))
        return oids

    def _row_description(self, result: Result, oids: list[int], formats: list[int]) -> None:
        parts = [struct.pack("!h", len(result.columns))]
        for name, oid, fmt in zip(result.columns, oids, formats, strict=True):
            parts.append(cstr(name))
            parts.append(struct.pack("!ihIhih", 0, 0, oid, TYPLEN.get(oid, -1), -1, fmt))
        self._send(b"T", b"".join(parts))

    def _data_rows(
        self,
        rows: Sequence[tuple[SqlValue, ...]],
        oids: list[int],
        formats: list[int],
        coerced: Sequence[str] | None = None,
    ) -> None:
        """DataRow messages; ``coerced``: the column names, when values are
        made their column's described type first."""
        count = struct.pack("!h", len(oids))
        null = struct.pack("!i", -1)
        pack = struct.Struct("!i").pack
        for row in rows:
            parts = [count]
            for i, (value, oid, fmt) in enumerate(zip(row, oids, formats, strict=True)):
                if coerced is not None:
                    value = coerce(value, oid, coerced[i])
                if value is None:
                    parts.append(null)
                elif isinstance(value, bytes) and not fmt:
                    # bytea's hex text without the copies of encode_text
                    # (a blob may be max_value_bytes long).
                    parts += (pack(2 * len(value) + 2), b"\\x", binascii.hexlify(value))
                else:
                    data = encode_binary(value, oid) if fmt else encode_text(value, oid)
                    parts.append(pack(len(data)))
                    parts.append(data)
            self._send_parts(b"D", parts)

    # -- simple query ----------------------------------------------------------------

    def _query(self, body: Body) -> None:
        sql = body.cstring()
        body.end()
        self.ignore_till_sync = False
        # Protocol-level state of the extended protocol ends with a simple query.
        self._drop_portal("")
        try:
            statements = ddl.split_statements(sql)
        except DdlError as exc:
            self._send_error(WireError("42601", exc.message))
            self._ready()
            return
        if not statements:
            self._send(b"I")
            self._ready()
            return
        assert self.db is not None
        implicit = (
            len(statements) > 1
            and not self.failed
            and self.db.conn.getautocommit()
            and not any(outside_implicit(s) for s in statements)
        )
        if implicit:
            # PostgreSQL runs a multi-statement query as one transaction.
            self.db.conn.execute("BEGIN")
        ok = True
        for statement in statements:
            try:
                if is_deallocate(statement):
                    self._deallocate(statement)
                    self._send(b"C", cstr("DEALLOCATE"))
                    continue
                if keywords(statement, 1) == ["COPY"]:
                    self._send(b"C", cstr(self._copy(statement, implicit)))
                    continue
                result, tag = self._run(statement, (), implicit)
                if result.columns:
                    oids = self._result_oids(statement, result)
                    formats = [0] * len(oids)
                    self._row_description(result, oids, formats)
                    self._data_rows(result.rows, oids, formats)
                self._send(b"C", cstr(tag))
            except (Disconnected, ProtocolViolation):
                raise
            except Exception as exc:  # noqa: BLE001 - reported; the query stops here
                self._send_error(exc)
                ok = False
                break
        if implicit and not self.db.conn.getautocommit():
            try:
                self.db.conn.execute("COMMIT" if ok else "ROLLBACK")
            except apsw.Error as exc:
                self._send_error(exc)
                with contextlib.suppress(apsw.Error):
                    self.db.conn.execute("ROLLBACK")
        if self.db.conn.getautocommit():
            self._drop_portals()  # they end with their transaction, as at Sync
        self.idle = None
        self._ready()

    # -- extended query -----------------------------------------------------------------

    def _parse(self, body: Body) -> None:
        name = body.cstring()
        query = body.cstring()
        count = body.int16()
        oids = [body.int32() & 0xFFFFFFFF for _ in range(max(count, 0))]
        body.end()
        if name and name in self.statements:
            raise WireError("42P05", f'prepared statement "{name}" already exists')
        try:
            statements = ddl.split_statements(query)
            if len(statements) > 1:
                raise WireError(
                    "42601", "cannot insert multiple commands into a prepared statement"
                )
            sql, highest = translate_placeholders(statements[0] if statements else "")
        except DdlError as exc:
            raise WireError("42601", exc.message) from None
        oids += [0] * (highest - len(oids))
        size = _ENTRY_BYTES + sys.getsizeof(sql) + 8 * len(oids)
        self._keep_statement(name, Statement(sql, oids, not statements, size))
        self._send(b"1")

    def _bind(self, body: Body) -> None:
        portal_name = body.cstring()
        statement_name = body.cstring()
        formats = [body.int16() for _ in range(max(body.int16(), 0))]
        count = body.int16()
        raw: list[bytes | None] = []
        for _ in range(max(count, 0)):
            length = body.int32()
            raw.append(None if length == -1 else body.take(length))
        result_formats = [body.int16() for _ in range(max(body.int16(), 0))]
        body.end()
        statement = self._prepared(statement_name)
        self._infer_params(statement)
        if portal_name and portal_name in self.portals:
            raise WireError("42P03", f'cursor "{portal_name}" already exists')
        nparams = len(statement.param_oids)
        if len(raw) != nparams:
            raise WireError(
                "08P01",
                f'bind message supplies {len(raw)} parameters, but prepared statement "'
                f'{statement_name}" requires {nparams}',
            )
        if len(formats) not in (0, 1, nparams):
            raise WireError("08P01", f"bind message has {len(formats)} parameter formats")
        if any(f not in (0, 1) for f in formats + result_formats):
            raise WireError("08P01", "unsupported format code")
        params: list[SqlValue] = []
        for i, data in enumerate(raw):
            fmt = formats[0] if len(formats) == 1 else formats[i] if formats else 0
            params.append(
                None if data is None else decode_param(data, statement.param_oids[i], fmt == 1, i)
            )
        size = _ENTRY_BYTES + sum(map(sys.getsizeof, params))
        self._keep_portal(portal_name, Portal(statement, params, result_formats, size=size))
        self._send(b"2")

    def _materialize(self, portal: Portal) -> Result:
        if portal.result is None:
            statement = portal.statement
            result, tag = self._run(statement.sql, portal.params)
            columns = self._statement_columns(statement)
            if columns is not None and [c[0] for c in columns] == result.columns:
                # What Describe said (or would have): the rows are sent so.
                portal.oids = [c[1] for c in columns]
                portal.coerced = True
            elif result.columns:
                portal.oids = self._result_oids(statement.sql, result)
            portal.tag = tag
            portal.result = result
            # Kept until the portal is closed: counted against max_buffer_bytes.
            portal.size += self.row_bytes
            self.held += self.row_bytes
        return portal.result

    def _formats(self, portal: Portal) -> list[int]:
        n = len(portal.oids)
        wanted = portal.result_formats
        if not wanted:
            return [0] * n
        if len(wanted) == 1:
            return wanted * n
        if len(wanted) != n:
            raise WireError(
                "08P01", f"bind message has {len(wanted)} result formats but query has {n} columns"
            )
        return list(wanted)

    def _describe(self, body: Body) -> None:
        what = body.byte()
        name = body.cstring()
        body.end()
        if what == b"S":
            statement = self._prepared(name)
            self._infer_params(statement)
            oids = [o or OID_TEXT for o in statement.param_oids]
            self._send(b"t", struct.pack(f"!h{len(oids)}I", len(oids), *oids))
            columns = self._statement_columns(statement)
            if columns is None:
                self._send(b"n")
            else:
                names = [c[0] for c in columns]
                self._row_description(Result(names), [c[1] for c in columns], [0] * len(names))
        elif what == b"P" and name in self.cursors and name not in self.portals:
            # A cursor DECLAREd in SQL is a portal too (psycopg's named cursors
            # describe it so).
            cursor = self.cursors[name]
            if cursor.result.columns:
                self._row_description(cursor.result, cursor.oids, [0] * len(cursor.oids))
            else:
                self._send(b"n")
        elif what == b"P":
            portal = self._portal(name)
            if portal.statement.empty:
                self._send(b"n")
                return
            result = self._materialize(portal)
            if result.columns:
                self._row_description(result, portal.oids, self._formats(portal))
            else:
                self._send(b"n")
        else:
            raise ProtocolViolation(f"invalid DESCRIBE message subtype {what!r}")

    def _prepared(self, name: str) -> Statement:
        statement = self.statements.get(name)
        if statement is None:
            raise WireError("26000", f'prepared statement "{name}" does not exist')
        return statement

    def _portal(self, name: str) -> Portal:
        portal = self.portals.get(name)
        if portal is None:
            raise WireError("34000", f'portal "{name}" does not exist')
        return portal

    def _description(self, statement: Statement) -> Description | None:
        """What a statement's columns and parameters are (``describe``),
        worked out once per prepared statement."""
        if not statement.described:
            statement.described = True
            words = keywords(statement.sql, 1)
            if (
                not statement.empty
                and words
                and words[0] not in ("SET", "RESET", "SHOW")
                # Their text holds a password, which no cache should keep.
                and not roles.is_role_statement(statement.sql)
            ):
                assert self.db is not None
                statement.description = self._described(statement)
        return statement.description

    def _described(self, statement: Statement) -> Description | None:
        """``describe``, remembered per text and parameter types while the
        schema, the data (procedures are rows) and this connection's own
        changes stand still, outside transactions: drivers that Parse the same
        unnamed statement for every execution pay for it once."""
        assert self.db is not None
        conn = self.db.conn
        if not conn.getautocommit():
            # Inside a transaction no PRAGMA may be read (it would start the
            # read snapshot before the first write: describe's own note).
            return describe(self.db, statement.sql, statement.param_oids)
        stamp = catalog.schema_stamp(conn)
        key = (statement.sql, tuple(statement.param_oids))
        found = self.descriptions.get(key)
        if found is not None and found[0] == stamp:
            self.descriptions.move_to_end(key)
            return found[1]
        description = describe(self.db, statement.sql, statement.param_oids)
        self.descriptions[key] = (stamp, description)
        if len(self.descriptions) > _DESCRIPTIONS:
            self.descriptions.popitem(last=False)
        return description

    def _infer_params(self, statement: Statement) -> None:
        """Parameters the client left untyped take the type their use gives them."""
        if 0 in statement.param_oids:
            description = self._description(statement)
            if description is not None:
                for number, oid in description.params.items():
                    if number <= len(statement.param_oids) and not statement.param_oids[number - 1]:
                        statement.param_oids[number - 1] = oid

    def _statement_columns(self, statement: Statement) -> list[tuple[str, int]] | None:
        """A statement's columns without running it (None: it returns no rows).

        Only SQLite's own statements and SHOW can be described in advance; a
        CALL or procedure DDL answers NoData here although a CALL returns a
        row at execution. Column types follow ``describe``'s rule, which the
        portal then keeps.
        """
        words = keywords(statement.sql, 2)
        if words and words[0] == "SHOW":
            name = words[1].lower() if len(words) > 1 else "setting"
            return [(REPORTED.get(name, name), OID_TEXT)]
        description = self._description(statement)
        return description.columns if description is not None else None

    def _execute(self, body: Body) -> None:
        name = body.cstring()
        max_rows = body.int32()
        body.end()
        portal = self._portal(name)
        if portal.statement.empty:
            self._send(b"I")
            return
        result = self._materialize(portal)
        if not result.columns:
            self._send(b"C", cstr(portal.tag))
            return
        start = portal.position
        end = len(result.rows) if max_rows <= 0 else min(len(result.rows), start + max_rows)
        names = result.columns if portal.coerced else None
        self._data_rows(result.rows[start:end], portal.oids, self._formats(portal), names)
        portal.position = end
        if end < len(result.rows):
            self._send(b"s")  # PortalSuspended: the client may Execute again for more
            return
        tag = portal.tag
        if tag.startswith("SELECT ") and start:
            tag = f"SELECT {end - start}"
        self._send(b"C", cstr(tag))

    def _close_message(self, body: Body) -> None:
        what = body.byte()
        name = body.cstring()
        body.end()
        if what == b"S":
            self._drop_statement(name)
        elif what == b"P":
            self._drop_portal(name)
        else:
            raise ProtocolViolation(f"invalid CLOSE message subtype {what!r}")
        self._send(b"3")

    def _flush_message(self, body: Body) -> None:
        body.end()
        self._flush()

    def _sync(self) -> None:
        self.ignore_till_sync = False
        self.idle = None
        assert self.db is not None
        if self.db.conn.getautocommit():
            # Portals live until their transaction ends.
            self._drop_portals()
        self._ready()

    def _deallocate(self, sql: str) -> None:
        """DEALLOCATE [PREPARE] name | ALL: protocol state, not a database statement."""
        words = names(sql, 4)
        rest = words[1:]
        if rest and rest[0].upper() == "PREPARE":
            rest = rest[1:]
        if len(rest) != 1:
            raise WireError("42601", "DEALLOCATE takes one statement name, or ALL")
        if rest[0].upper() == "ALL":
            for name in [k for k in self.statements if k]:
                self._drop_statement(name)
        elif self._drop_statement(rest[0]) is None:
            raise WireError("26000", f'prepared statement "{rest[0]}" does not exist')
