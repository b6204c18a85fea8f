"""The host API (wit/host.wit) implemented against the caller's SQLite connection.

A CallContext exists for the duration of one procedure call. Both ABI loaders
translate their guest's imports into calls on it, so query/execute/log/
transactions/now behave identically for core modules and components.

Every call of a procedure that may write runs inside a savepoint of the
caller's transaction, so a failed call rolls back exactly what it wrote (one
that may not write needs none). When the caller is itself a writing
statement (``UPDATE t SET x = proc(y)``) SQLite cannot open a savepoint; the
call then runs read-only and the statement's own rollback covers it.
"""

from __future__ import annotations

import hashlib
import hmac as hmac_module
import itertools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import apsw

from . import _core, fetch, native
from .errors import (
    AbiError,
    CapabilityDenied,
    ConstraintViolation,
    DatabaseBusy,
    InvalidArgument,
    ProcedureError,
    ResourceLimitExceeded,
    SqlError,
)
from .policy import Authorizer, Capabilities, Limits
from .telemetry import LogRecord, Telemetry
from .values import SqlValue, decode_http_request, encode_http_response

LOG_LEVELS = ("trace", "debug", "info", "warn", "error")
# What the connection's gate answers with (Session.policy).
Policy = Authorizer | _core.Authorizer | _core.PolicyToken | None
T = TypeVar("T")

# digest / hmac algorithms: fixed-length hashlib digests under WIT-style names.
_ALGORITHMS = {
    name.replace("_", "-"): name
    for name in sorted(hashlib.algorithms_guaranteed)
    if not name.startswith("shake")
}


def _algorithm(caps: Capabilities, algorithm: str) -> str:
    """hashlib's name for ``algorithm``, if the procedure may use it."""
    if not caps.allows("crypto"):
        raise CapabilityDenied("missing capability crypto")
    name = _ALGORITHMS.get(algorithm.lower())
    if name is None:
        raise InvalidArgument(
            f"unknown digest algorithm {algorithm!r} (known: {', '.join(_ALGORITHMS)})"
        )
    return name


_PY_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
_logger = logging.getLogger("heliosdb_wasm.procedure")


class Connection(apsw.Connection):
    """apsw's connection as the engine opens it: it finalizes the core's
    cached statements (gate.rs) before it closes, since SQLite refuses to
    close a connection whose statements are open, whoever calls close().
    A connection of another class gets no statement cache."""

    gate: _core.Gate | None = None

    def close(self, force: bool = False) -> None:
        if self.gate is not None:
            self.gate.clear_statements()
        super().close(force)

    def __del__(self) -> None:
        if self.gate is not None:
            self.gate.clear_statements()


class Session:
    """Per-database state the host API needs: the connection, the procedure
    log, and the stack of procedure calls in progress on this connection."""

    def __init__(self, conn: apsw.Connection, is_procedure: Callable[[str], bool]) -> None:
        self.conn = conn
        # The connection's sqlite3*, for the core (it runs procedures'
        # statements on it through SQLite's routine table).
        if not native.load_sqlite_api():
            raise SqlError(
                "this SQLite cannot load extensions, which the engine's core needs to run "
                "procedures' statements (apsw from PyPI can)"
            )
        self.db = conn.sqlite3_pointer()
        self.is_procedure = is_procedure
        self.telemetry = Telemetry()
        self._names = itertools.count(1)
        # The connection's authorizer and the bounds of the guest statements
        # running on it (engine/core/src/gate.rs), installed once: setting
        # an authorizer expires every prepared statement.
        self.gate = _core.Gate(self.db, isinstance(conn, Connection))
        if isinstance(conn, Connection):
            conn.gate = self.gate
        # Calls the core runs whole on this connection for others than the
        # registry's procedures (query-hook plugins), made on first use:
        # they hold the connection's gate.
        # (plugin, hook) -> {version: its call}
        self.hosted: dict[tuple[str, str], dict[int, _core.Numeric]] = {}

    @property
    def logs(self) -> list[LogRecord]:
        """The in-memory procedure log, oldest first (telemetry.LOG_MEMORY_LINES
        and LOG_MEMORY_BYTES)."""
        return [LogRecord(*r) for r in self.telemetry.logs.memory()]

    def echo_logs(self) -> None:
        """The lines logged since the last echo, into Python's logging at
        their levels (at the end of an operation: a call the core runs whole
        logs without Python). Lines at a level the logger would drop are not
        even copied out of the core."""
        levels = [n for n, lvl in _PY_LEVELS.items() if _logger.isEnabledFor(lvl)]
        if not levels:
            return
        for t, procedure, version, level, message in self.telemetry.logs.take_echo(levels):
            # The record is made now; when the line was logged is procedure_time.
            _logger.log(
                _PY_LEVELS[level],
                "%s v%d: %s",
                procedure,
                version,
                message,
                extra={"procedure_time": t},
            )

    @property
    def depth(self) -> int:
        """Procedure calls in progress on the connection, nested (counted
        by the gate: the core runs some calls whole, engine/core/src/python/
        hosted.rs)."""
        return self.gate.calls

    @property
    def policy(self) -> Policy:
        """The policy of the statement being prepared: a guest statement's
        authorizer, the owner's or a client's rules; None for the host's own
        statements, where the core's rule keeps trigger and view bodies out
        of the registry (as every policy does)."""
        return self.gate.policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        self.gate.policy = policy

    @contextmanager
    def internal(self) -> Iterator[None]:
        """The engine's own statements (registry reads while loading a
        procedure) in the middle of a statement that runs under a policy."""
        outer, self.policy = self.policy, None
        try:
            with engine_statements(self):
                yield
        finally:
            self.policy = outer

    def savepoint_name(self, kind: str) -> str:
        return f"heliosdb_{kind}_{next(self._names)}"

    def run(self, sql: str) -> None:
        self.conn.cursor().execute(sql)


def log_limit(limits: Limits) -> ResourceLimitExceeded:
    return ResourceLimitExceeded(
        f"logged more than max_log_bytes ({limits.max_log_bytes}) in one call",
        limit="max_log_bytes",
    )


def log_line(
    session: Session,
    procedure: str,
    version: int,
    limits: Limits,
    level: str,
    message: str,
    logged: int,
) -> tuple[int, bool]:
    """A guest's log line, after ``logged`` bytes in the same call: into the
    procedure log, telemetry and Python's logging. The bytes logged now,
    and whether the line says the guest ran out of memory (an SDK's
    allocator, just before the guest aborts). Over ``max_log_bytes`` the
    call ends (ResourceLimitExceeded)."""
    # The core's rule, as for a call it runs whole; the database's log
    # cuts the message and echoes it to Python's logging at the end of the
    # operation (Session.echo_logs).
    got = session.telemetry.logs.log_line(
        procedure, version, limits.max_log_bytes, level, message, logged
    )
    if got is None:
        raise log_limit(limits)
    return got


def busy_error(message: str) -> DatabaseBusy:
    return DatabaseBusy(
        f"the database is locked by another connection ({message}); nothing was committed: retry"
    )


def sql_error(exc: apsw.Error) -> ProcedureError:
    """The typed error for what SQLite raised on a statement: the owner's, a
    client's, or (for a busy file) a procedure's."""
    if isinstance(exc, apsw.BusyError | apsw.LockedError):
        return busy_error(str(exc))
    if isinstance(exc, apsw.ConstraintError):
        return ConstraintViolation(str(exc))
    return SqlError(str(exc))


QueryResult = tuple[list[str], list[tuple[SqlValue, ...]]]


def is_fatal(exc: ProcedureError) -> bool:
    """Whether a host function's error must end the call instead of being
    handed to the guest: a limit this call itself exceeded (rows, log bytes,
    fetch size, deadline). The guest cannot catch it and carry on; its
    instance is discarded. A busy file, too: the statement the call runs in
    can only be retried whole. A nested procedure's errors, already located
    at that procedure, are ordinary results the guest may handle."""
    return isinstance(exc, ResourceLimitExceeded | DatabaseBusy) and exc.procedure is None


class CallContext:
    """What a call asks of Python: the host functions that live here (fetch,
    digest, hmac, count-in-window, a log line of a call with no log of its
    own in the core) and a failed statement's typed error, under the call's
    identity, grants and limits. A call the core runs makes one only when
    it needs one of them."""

    def __init__(
        self,
        session: Session,
        procedure: str,
        version: int,
        capabilities: Capabilities,
        limits: Limits,
    ) -> None:
        self.session = session
        self.procedure = procedure
        self.version = version
        self.capabilities = capabilities
        self.limits = limits
        # A log line said the guest ran out of memory (its trap is then the
        # memory limit).
        self.out_of_memory = False
        self.deadline = time.monotonic() + limits.timeout_seconds
        self.logged_bytes = 0
        # Set by the plugin pipeline for a hook call: the plugin's windowed
        # counters (plugin-host.count-in-window). Procedures have none.
        self.counter: Callable[[str, int], int] | None = None

    # -- the host API --------------------------------------------------------

    def log(self, level: str, message: str) -> None:
        self.logged_bytes, oom = log_line(
            self.session,
            self.procedure,
            self.version,
            self.limits,
            level,
            message,
            self.logged_bytes,
        )
        if oom:
            # An SDK's allocator reporting failure just before the guest
            # aborts: the trap that follows is the memory limit (runtime.py).
            self.out_of_memory = True

    def http_fetch(
        self, method: str, url: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> fetch.Response:
        return fetch.fetch(
            method,
            url,
            headers,
            body,
            allowed=lambda host: self.capabilities.allows("network", host),
            timeout=self.deadline - time.monotonic(),
            max_bytes=self.limits.max_fetch_bytes,
        )

    def http_fetch_encoded(self, request: bytes) -> bytes:
        """``http_fetch`` for the Basic ABI: the request and the response as
        docs/abi.md §7 encodes them (a malformed request is an AbiError)."""
        method, url, headers, body = decode_http_request(request)
        response = self.http_fetch(method, url, headers, body)
        return encode_http_response(response.status, response.headers, response.body)

    def digest(self, algorithm: str, data: bytes) -> bytes:
        return hashlib.new(_algorithm(self.capabilities, algorithm), data).digest()

    def hmac(self, algorithm: str, key: bytes, data: bytes) -> bytes:
        return hmac_module.new(key, data, _algorithm(self.capabilities, algorithm)).digest()

    def count_in_window(self, key: str, window_ms: int) -> int:
        if self.counter is None:
            raise CapabilityDenied("count-in-window is only available to query-hook plugins")
        if window_ms <= 0:
            raise InvalidArgument(f"count-in-window: the window must be positive, got {window_ms}")
        return self.counter(key, window_ms)

    @staticmethod
    def now() -> int:
        return time.time_ns() // 1000

    def statement_error(
        self, kind: str, message: str, denied: Sequence[str], own_deadline: bool
    ) -> ProcedureError:
        """The typed error for a statement the core reports failed
        (python/statement.rs ``Refused``'s kinds; ``denied``: what the
        authorizer refused)."""
        if kind == "timeout":
            if own_deadline:
                text = f"wall-clock limit of {self.limits.timeout_seconds:g} s exceeded in a query"
            else:
                text = "the calling procedure's wall-clock limit was reached in a query"
            return ResourceLimitExceeded(text, limit="timeout")
        if kind == "abi-error":
            return AbiError(message)
        if kind == "interrupt":  # someone else's sqlite3_interrupt
            return SqlError(message)
        if kind == "toobig":
            return ResourceLimitExceeded(
                f"a string or blob of the statement is over max_value_bytes "
                f"({self.limits.max_value_bytes})",
                limit="max_value_bytes",
            )
        if kind in ("max_query_rows", "max_result_bytes"):
            return ResourceLimitExceeded(message, limit=kind)
        if kind == "several":
            return InvalidArgument(message)
        if kind == "auth":
            return CapabilityDenied(f"missing capability {denied[0] if denied else message}")
        if kind == "constraint":
            return ConstraintViolation(message)
        if kind == "bindings":
            return InvalidArgument(f"parameters: {message}")
        if kind == "busy":
            return busy_error(message)
        if denied:  # SQLite reports some denials (functions) as plain errors
            return CapabilityDenied(f"missing capability {denied[0]}")
        return SqlError(message)


@contextmanager
def engine_statements(session: Session) -> Iterator[None]:
    """The engine's own statements in the middle of a guest statement (what
    Session.internal() brackets: loading a nested procedure, whose module
    may be larger than the guest's values may be) run under the host's
    length limit, not the guest's. The deadline stays: that work is done
    for the guest."""
    host = session.gate.host_length
    if host is None:
        yield
        return
    conn = session.conn
    guest = conn.limit(apsw.SQLITE_LIMIT_LENGTH, host)
    try:
        yield
    finally:
        conn.limit(apsw.SQLITE_LIMIT_LENGTH, guest)
