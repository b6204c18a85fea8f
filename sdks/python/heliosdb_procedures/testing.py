"""A stand-in for the host, so procedures and plugins run under plain pytest.

Inside a component the SDK calls the ``wit_world`` bindings componentize-py
generates; on a host they do not exist. ``use_host(FakeHost(...))`` puts a
Python implementation of the same host functions in their place for the
duration of a ``with`` block::

    from heliosdb_procedures.testing import FakeHost, use_host

    def test_rate_limit():
        host = FakeHost(now_us=1_700_000_000_000_000)
        with use_host(host):
            verdict = my_plugin.authenticate(Context(connection={"jwt": token}), "SELECT 1")
        host.advance(ms=1000)  # the next fixed window of count_in_window

``FakeHost`` keeps a settable clock (``now``), fixed-window counters
(``count_in_window``, per window aligned to the Unix epoch, as the host's),
HMAC and digests (``hashlib``), the log lines (``logs``) and, when given a
``sqlite3`` connection, ``query``/``execute``/transactions against it.
Anything else (``fetch``) is refused with AccessDenied unless a handler is
given. Host errors are raised as the SDK's own exceptions, exactly as a
procedure sees them inside a component.
"""

from __future__ import annotations

import enum
import hashlib
import hmac as _hmac
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import heliosdb_procedures as _sdk

from . import AccessDenied, ConstraintViolation, InvalidArgument, SqlError
from . import plugin as _plugin_sdk

__all__ = ["FakeHost", "use_host"]


# -- stand-ins for the generated ``types`` bindings -------------------------------
# (named as componentize-py names them, so the SDK cannot tell the difference)


@dataclass
class Value_Null:
    pass


@dataclass
class Value_Integer:
    value: int


@dataclass
class Value_Real:
    value: float


@dataclass
class Value_Text:
    value: str


@dataclass
class Value_Blob:
    value: bytes


@dataclass
class Value_Boolean:
    value: bool


@dataclass
class Rows:
    columns: list[str]
    values: list[list[Any]]


TYPES = SimpleNamespace(
    Value_Null=Value_Null,
    Value_Integer=Value_Integer,
    Value_Real=Value_Real,
    Value_Text=Value_Text,
    Value_Blob=Value_Blob,
    Value_Boolean=Value_Boolean,
    Rows=Rows,
)


class LogLevel(enum.Enum):
    TRACE = "trace"
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


@dataclass
class HttpRequest:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _plain(value: Any) -> Any:
    return getattr(value, "value", None)


def _wrap(value: Any) -> Any:
    if value is None:
        return Value_Null()
    if isinstance(value, int):
        return Value_Integer(value)
    if isinstance(value, float):
        return Value_Real(value)
    if isinstance(value, str):
        return Value_Text(value)
    return Value_Blob(bytes(value))


@dataclass
class FakeHost:
    """The host functions of wit/host.wit and wit/plugin.wit, in Python."""

    now_us: int = 1_700_000_000_000_000
    db: sqlite3.Connection | None = None
    crypto: bool = True
    fetch: Callable[[HttpRequest], HttpResponse] | None = None
    logs: list[tuple[str, str]] = field(default_factory=list)
    counters: dict[tuple[str, int, int], int] = field(default_factory=dict)

    # What the SDK looks up on the bindings module besides the functions.
    LogLevel = LogLevel
    HttpRequest = HttpRequest

    def advance(self, *, ms: int = 0, seconds: float = 0) -> None:
        """Move the clock forward."""
        self.now_us += ms * 1000 + round(seconds * 1_000_000)

    # -- host ----------------------------------------------------------------

    def now(self) -> int:
        return self.now_us

    def log(self, level: LogLevel, message: str) -> None:
        self.logs.append((level.value, message))

    def digest(self, algorithm: str, data: bytes) -> bytes:
        self._need_crypto()
        try:
            return hashlib.new(algorithm.replace("-", "_"), data).digest()
        except ValueError:
            raise InvalidArgument(f"unknown digest algorithm {algorithm!r}") from None

    def hmac(self, algorithm: str, key: bytes, data: bytes) -> bytes:
        self._need_crypto()
        try:
            return _hmac.new(key, data, algorithm.replace("-", "_")).digest()
        except ValueError:
            raise InvalidArgument(f"unknown digest algorithm {algorithm!r}") from None

    def query(self, sql: str, params: list[Any]) -> Rows:
        cursor = self._run(sql, params)
        columns = [d[0] for d in cursor.description or ()]
        return Rows(columns, [[_wrap(v) for v in row] for row in cursor.fetchall()])

    def execute(self, sql: str, params: list[Any]) -> int:
        return self._run(sql, params).rowcount

    def begin_tx(self) -> None:
        self._run("SAVEPOINT heliosdb_fake", [])

    def commit_tx(self) -> None:
        self._run("RELEASE heliosdb_fake", [])

    def rollback_tx(self) -> None:
        self._run("ROLLBACK TO heliosdb_fake", [])
        self._run("RELEASE heliosdb_fake", [])

    def http_fetch(self, request: HttpRequest) -> HttpResponse:
        if self.fetch is None:
            raise AccessDenied(f"the test host grants no network access ({request.url})")
        return self.fetch(request)

    # -- plugin-host ---------------------------------------------------------

    def count_in_window(self, key: str, window_ms: int) -> int:
        if window_ms <= 0:
            raise InvalidArgument("window_ms must be positive")
        slot = (key, window_ms, self.now_us // 1000 // window_ms)
        self.counters[slot] = self.counters.get(slot, 0) + 1
        return self.counters[slot]

    # -- helpers ---------------------------------------------------------------

    def _need_crypto(self) -> None:
        if not self.crypto:
            raise AccessDenied("the crypto capability is not granted")

    def _run(self, sql: str, params: list[Any]) -> sqlite3.Cursor:
        if self.db is None:
            raise AccessDenied("the test host has no database (FakeHost(db=sqlite3.connect(...)))")
        try:
            return self.db.execute(sql, [_plain(p) for p in params])
        except sqlite3.IntegrityError as exc:
            raise ConstraintViolation(str(exc)) from None
        except sqlite3.Error as exc:
            raise SqlError(str(exc)) from None


@contextmanager
def use_host(host: FakeHost) -> Iterator[FakeHost]:
    """Route the SDK's host calls (host and plugin-host) to ``host``."""
    saved = (_sdk._host, _sdk._types, _plugin_sdk._plugin_host)
    _sdk._host, _sdk._types, _plugin_sdk._plugin_host = host, TYPES, host  # type: ignore[assignment]
    try:
        yield host
    finally:
        _sdk._host, _sdk._types, _plugin_sdk._plugin_host = saved
