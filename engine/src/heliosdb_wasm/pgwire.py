"""A PostgreSQL wire-protocol (3.0) endpoint in front of the embedded database.

Design: one listening socket and one thread per client connection (standard
library only). Each connection opens its OWN ``Database`` on the file, in the
thread that serves it, because apsw connections here are used by one thread
only; SQLite's locking (WAL mode, which the server turns on) arbitrates between
them. Every statement a client runs, through the simple or the extended
protocol, goes one at a time through the server's ``executor`` hook with its
final SQL text (``$n`` placeholders already turned into SQLite's ``?n``) and
its bound values; ``execute_statement`` is the default executor. The extended
protocol runs a portal when it is first described or executed and buffers its
rows: SQLite columns are dynamically typed, so the type a RowDescription
announces (the declared type where every value fits it, else one chosen from
the values) is only known once the rows are.

Deliberate differences from PostgreSQL: no authentication, no TLS; statements
of an extended-protocol pipeline without an explicit BEGIN commit one by one
(SQLite autocommit) instead of as one implicit transaction; SET is not
transactional and SET LOCAL is refused; COPY and the function-call message are
not supported.

Hostile clients: ``WireLimits`` bounds what one connection may cost (threads,
time idle or in one statement, message, value and buffered-result sizes), each
limit reported with PostgreSQL's SQLSTATE; docs/security.md explains them.
"""

from __future__ import annotations

import binascii
import contextlib
import decimal
import errno
import functools
import io
import itertools
import logging
import math
import re
import secrets
import selectors
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Protocol

import apsw
import apsw.ext

from . import ddl
from .archive import ArchiveError
from .database import Database, Result
from .errors import (
    AbiError,
    CapabilityDenied,
    ConstraintViolation,
    DdlError,
    InvalidArgument,
    PluginError,
    PluginRejected,
    ProcedureError,
    ProcedureTrap,
    RegistryError,
    ResourceLimitExceeded,
    SqlError,
    UserError,
)
from .policy import MAX_MODULE_BYTES, MIB, Limits
from .values import SqlValue

__all__ = [
    "SERVER_VERSION",
    "Executor",
    "Server",
    "WireError",
    "WireLimits",
    "WireSession",
    "command_tag",
    "execute_statement",
    "sqlstate_for",
    "translate_placeholders",
]

_log = logging.getLogger("heliosdb_wasm.pgwire")

SERVER_VERSION = "15.0 (HeliosDB)"
MAX_STARTUP_BYTES = 10_000  # PostgreSQL's own limit for the startup packet
_CHUNK = 1024 * 1024  # the most one read asks the socket for
_TIMEOUT_SLACK = 0.05  # seconds a timeout may run late rather than cost a system call
_RECV = 65536  # what a read asks for at least, to take several small messages at once
_INT32_MAX = 2**31 - 1

# Type OIDs (pg_type.oid).
OID_BOOL = 16
OID_BYTEA = 17
OID_NAME = 19
OID_INT8 = 20
OID_INT2 = 21
OID_INT4 = 23
OID_TEXT = 25
OID_OID = 26
OID_JSON = 114
OID_FLOAT4 = 700
OID_FLOAT8 = 701
OID_UNKNOWN = 705
OID_BPCHAR = 1042
OID_VARCHAR = 1043
OID_NUMERIC = 1700
OID_UUID = 2950
OID_JSONB = 3802

_TYPLEN = {OID_BOOL: 1, OID_INT8: 8, OID_FLOAT8: 8}
_INT_OIDS = {OID_INT2, OID_INT4, OID_INT8, OID_OID}
_FLOAT_OIDS = {OID_FLOAT4, OID_FLOAT8}
_STRING_OIDS = {0, OID_TEXT, OID_NAME, OID_UNKNOWN, OID_BPCHAR, OID_VARCHAR, OID_JSON}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102
_PROTOCOL_3 = 3


# --- the public interface ----------------------------------------------------------


@dataclass(frozen=True)
class WireLimits:
    """What one client may cost the server; every default lives here
    (docs/security.md gives the reasons). Times are in seconds, 0 = none.

    max_connections
        Clients served at once. One more gets FATAL 53300 (too_many_connections)
        from the accepting thread, which reads no more than its startup packet.
    authentication_timeout
        The whole startup (SSL refusal, startup packet) must arrive within this;
        else FATAL 57014, as PostgreSQL's authentication_timeout.
    idle_session_timeout
        Waiting for the next message outside a transaction: FATAL 57P05.
    idle_in_transaction_session_timeout
        Waiting for the next message inside a transaction block (or a failed
        one): FATAL 25P03. The connection's rollback frees the locks it held.
    statement_timeout
        One statement's running time: it is interrupted with 57014 and the
        connection stays usable. A session's ``SET statement_timeout`` (and the
        two idle timeouts) can only make its own limit shorter.
    max_message_bytes
        One protocol message, hence one query text or one Bind's parameters.
        A longer one is read and thrown away in bounded chunks and answered
        with 54000; the connection goes on.
    max_value_bytes
        One string or blob SQLite builds or reads for a client (its
        SQLITE_LIMIT_LENGTH): 54000 past it. At least MAX_MODULE_BYTES by
        default, because the engine reads a stored module on the client's
        connection to call it.
    max_buffer_bytes
        Memory one connection may hold in results (SQLite hands every row to
        Python before the first is sent), prepared statements and portals,
        estimated as Python object sizes: 54000 past it.
    """

    max_connections: int = 64
    authentication_timeout: float = 60.0
    idle_session_timeout: float = 600.0
    idle_in_transaction_session_timeout: float = 300.0
    statement_timeout: float = 300.0
    max_message_bytes: int = 16 * MIB
    max_value_bytes: int = MAX_MODULE_BYTES
    max_buffer_bytes: int = 256 * MIB

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            seconds = f.name.endswith("_timeout")
            kinds = (int, float) if seconds else (int,)
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise InvalidArgument(f"wire limit {f.name} must be a number, got {value!r}")
            if seconds and not 0 <= value <= _INT32_MAX // 1000:
                raise InvalidArgument(f"wire limit {f.name} must be 0..{_INT32_MAX // 1000} s")
            if not seconds and not 1 <= value <= _INT32_MAX:
                raise InvalidArgument(f"wire limit {f.name} must be 1..{_INT32_MAX}, got {value}")
        if self.authentication_timeout <= 0:
            raise InvalidArgument("wire limit authentication_timeout must be positive")
        if self.max_message_bytes < MAX_STARTUP_BYTES:
            raise InvalidArgument(
                f"wire limit max_message_bytes must be at least {MAX_STARTUP_BYTES}"
            )


@dataclass
class WireSession:
    """One client connection's state."""

    params: dict[str, str]
    """Startup parameters (user, database, application_name, options, ...)."""
    variables: dict[str, str]
    """Session variables (SET / RESET / SHOW), by lower-case name."""
    db: Database
    """This connection's own Database (used only by the thread serving it)."""
    process_id: int
    protected: set[str] = field(default_factory=set)
    """Variables clients may not SET or RESET (SQLSTATE 42501)."""
    defaults: dict[str, str] = field(default_factory=dict)
    """The server's values of variables (its timeouts): what a session starts
    with and RESET returns to, unless the startup packet says otherwise."""


class Executor(Protocol):
    """Runs one statement for a session (the hook a query pipeline wraps)."""

    def __call__(self, session: WireSession, sql: str, params: Sequence[SqlValue]) -> Result: ...


class WireError(Exception):
    """An error with its SQLSTATE, reported to the client as an ErrorResponse."""

    def __init__(
        self,
        sqlstate: str,
        message: str,
        *,
        detail: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.detail = detail
        self.hint = hint


def execute_statement(session: WireSession, sql: str, params: Sequence[SqlValue]) -> Result:
    """The default executor: one statement.

    ``SET name = value`` / ``SET name TO value`` / ``SET SESSION ...`` /
    ``RESET name`` / ``RESET ALL`` / ``SHOW name`` / ``SHOW ALL`` act on
    ``session.variables`` and never reach SQLite; PostgreSQL's transaction
    spellings (``START TRANSACTION``, ``BEGIN ISOLATION LEVEL ...``,
    ``ABORT``, ``COMMIT WORK``) become SQLite's; everything else runs with
    ``session.db.execute(sql, params)``.
    """
    words = _keywords(sql, 2)
    verb = words[0] if words else ""
    if verb in ("SET", "RESET", "SHOW"):
        return _variable_statement(session, verb, sql)
    if verb in _TRANSACTION_VERBS:
        sql = _sqlite_transaction(sql)
    return session.db.execute(sql, params)


# --- session variables ----------------------------------------------------------

# Variables PostgreSQL reports with ParameterStatus, by lower-case name.
_REPORTED = {
    "application_name": "application_name",
    "client_encoding": "client_encoding",
    "datestyle": "DateStyle",
    "default_transaction_read_only": "default_transaction_read_only",
    "in_hot_standby": "in_hot_standby",
    "integer_datetimes": "integer_datetimes",
    "intervalstyle": "IntervalStyle",
    "is_superuser": "is_superuser",
    "server_encoding": "server_encoding",
    "server_version": "server_version",
    "session_authorization": "session_authorization",
    "standard_conforming_strings": "standard_conforming_strings",
    "timezone": "TimeZone",
}
_DEFAULTS = {
    "application_name": "",
    "client_encoding": "UTF8",
    "datestyle": "ISO, MDY",
    "default_transaction_read_only": "off",
    "in_hot_standby": "off",
    "integer_datetimes": "on",
    "intervalstyle": "postgres",
    "is_superuser": "off",
    "server_encoding": "UTF8",
    "server_version": SERVER_VERSION,
    "server_version_num": "150000",
    "standard_conforming_strings": "on",
    "timezone": "UTC",
    # SQLite transactions are serializable.
    "transaction_isolation": "serializable",
    "default_transaction_isolation": "serializable",
}
# Fixed by the server: a client cannot change what it is talking to.
_READ_ONLY = {
    "server_version",
    "server_version_num",
    "server_encoding",
    "integer_datetimes",
    "in_hot_standby",
    "is_superuser",
}
_STARTUP_ONLY = {"user", "database", "options", "replication"}
_UTF8_NAMES = {"utf8", "utf-8", "unicode", "sql_ascii"}


def _initial_variables(
    params: dict[str, str], defaults: dict[str, str] | None = None
) -> dict[str, str]:
    """What a session starts with (and RESET goes back to)."""
    variables = dict(_DEFAULTS)
    variables.update(defaults or {})
    variables["session_authorization"] = params.get("user", "")
    for name, value in params.items():
        if name.lower() not in _STARTUP_ONLY and not name.startswith("_pq_."):
            variables[name.lower()] = value
    for name, value in _options(params.get("options", "")):
        variables[name.lower()] = value
    for name in _DURATIONS:
        ms = _duration_ms(variables.get(name, ""))
        if ms is not None:  # else refused at startup (_startup_packet)
            variables[name] = _duration_text(ms)
    # Text always goes out as UTF-8 whatever the client asked for at startup
    # (psql under a C locale asks for SQL_ASCII, a subset).
    variables["client_encoding"] = "UTF8"
    for name in _READ_ONLY:
        if name in _DEFAULTS:
            variables[name] = _DEFAULTS[name]
    return variables


def _options(text: str) -> list[tuple[str, str]]:
    """``-c name=value`` and ``--name=value`` settings of the startup ``options``."""
    words: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, ""))
        elif ch.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    settings: list[tuple[str, str]] = []
    pending_c = False
    for word in words:
        if pending_c or word.startswith("--"):
            name, sep, value = word.removeprefix("--").partition("=")
            if sep:
                settings.append((name.replace("-", "_"), value))
            pending_c = False
        elif word == "-c":
            pending_c = True
        elif word.startswith("-c"):
            name, sep, value = word[2:].partition("=")
            if sep:
                settings.append((name, value))
    return settings


def _variable_statement(session: WireSession, verb: str, sql: str) -> Result:
    if len(sql) > _MAX_VARIABLE_STATEMENT:
        raise WireError(
            "54000", f"{verb} statements are limited to {_MAX_VARIABLE_STATEMENT} characters"
        )
    try:
        tokens = ddl.tokenize(sql)
    except DdlError as exc:
        raise WireError("42601", exc.message) from None
    while tokens and tokens[-1].text == ";":
        tokens.pop()
    if verb == "SHOW":
        return _show(session, tokens[1:])
    if verb == "RESET":
        if len(tokens) < 2:
            raise WireError("42601", "RESET takes a parameter name, or ALL")
        if len(tokens) == 2 and tokens[1].upper == "ALL" and tokens[1].kind == "word":
            initial = _initial_variables(session.params, session.defaults)
            protected = {p.lower() for p in session.protected}
            for key in list(session.variables):
                if key not in protected and key not in _READ_ONLY:
                    session.variables.pop(key)
            for key, value in initial.items():
                if key not in protected:
                    session.variables[key] = value
            return Result()
        name, rest = _dotted_name(tokens[1:])
        if rest:
            raise WireError("42601", f"syntax error at or near {rest[0].text!r}")
        _reset(session, name)
        return Result()
    return _set(session, tokens[1:])


def _name_of(token: ddl.Token) -> str:
    if token.kind == "qident" and token.text.startswith('"'):
        return token.text[1:-1].replace('""', '"')
    if token.kind != "word":
        raise WireError("42601", f"syntax error at or near {token.text!r}")
    return token.text.lower()


def _dotted_name(tokens: list[ddl.Token]) -> tuple[str, list[ddl.Token]]:
    """A (possibly qualified: ``myapp.tenant``) parameter name and the rest."""
    if not tokens:
        raise WireError("42601", "a parameter name is missing")
    parts = [_name_of(tokens[0])]
    rest = tokens[1:]
    while len(rest) >= 2 and rest[0].text == ".":
        parts.append(_name_of(rest[1]))
        rest = rest[2:]
    return ".".join(parts), rest


def _check_settable(session: WireSession, name: str) -> None:
    if name in {p.lower() for p in session.protected}:
        raise WireError("42501", f'permission denied to set parameter "{name}"')
    if name in _READ_ONLY:
        raise WireError("55P02", f'parameter "{name}" cannot be changed')


def _reset(session: WireSession, name: str) -> None:
    _check_settable(session, name)
    initial = _initial_variables(session.params, session.defaults)
    if name in initial:
        session.variables[name] = initial[name]
    else:
        session.variables.pop(name, None)


def _set(session: WireSession, tokens: list[ddl.Token]) -> Result:
    if tokens and tokens[0].upper == "SESSION":
        tokens = tokens[1:]
        if tokens and tokens[0].upper == "CHARACTERISTICS":
            return Result()  # transaction characteristics: SQLite's are fixed
    elif tokens and tokens[0].upper == "LOCAL":
        raise WireError(
            "0A000",
            "SET LOCAL is not supported",
            hint="Use SET (session scope) and RESET it when the transaction ends.",
        )
    if tokens and tokens[0].upper == "TRANSACTION":
        return Result()  # isolation levels: SQLite transactions are serializable
    if len(tokens) >= 2 and tokens[0].upper == "TIME" and tokens[1].upper == "ZONE":
        name, rest = "timezone", tokens[2:]
    elif tokens and tokens[0].upper == "NAMES":
        name, rest = "client_encoding", tokens[1:]
    elif tokens and tokens[0].upper == "SCHEMA":
        name, rest = "search_path", tokens[1:]
    else:
        name, rest = _dotted_name(tokens)
        if not rest or (rest[0].text != "=" and rest[0].upper != "TO"):
            raise WireError("42601", f"SET {name}: expected TO or = and a value")
        rest = rest[1:]
    _check_settable(session, name)
    if not rest:
        raise WireError("42601", f"SET {name}: a value is missing")
    if len(rest) == 1 and rest[0].kind == "word" and rest[0].upper in ("DEFAULT", "LOCAL"):
        _reset(session, name)
        return Result()
    value = _set_value(rest)
    if name == "client_encoding":
        if value.lower() not in _UTF8_NAMES:
            raise WireError(
                "0A000", f"client encoding {value!r} is not supported: this server speaks UTF8"
            )
        value = "UTF8"
    if name in _DURATIONS:
        value = _duration_text(_parse_duration(name, value))
    previous = session.variables.get(name)
    session.variables[name] = value
    if sum(len(k) + len(v) for k, v in session.variables.items()) > _MAX_VARIABLES_CHARS:
        if previous is None:
            del session.variables[name]
        else:
            session.variables[name] = previous
        raise WireError(
            "54000", f"the session's variables are limited to {_MAX_VARIABLES_CHARS} characters"
        )
    return Result()


# What SET, RESET and SHOW may cost: they keep their values in memory.
_MAX_VARIABLE_STATEMENT = 64 * 1024
_MAX_VARIABLES_CHARS = 1024 * 1024

# Time settings (PostgreSQL's units; a bare number is milliseconds), each the
# session's side of a WireLimits field of the same name.
_DURATIONS = ("statement_timeout", "idle_session_timeout", "idle_in_transaction_session_timeout")
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(us|ms|s|min|h|d)?\s*")
_UNIT_MS = {
    "us": 0.001,
    "ms": 1.0,
    "s": 1000.0,
    "min": 60_000.0,
    "h": 3_600_000.0,
    "d": 86_400_000.0,
}


def _duration_ms(text: str) -> int | None:
    """A duration setting in whole milliseconds, or None if it is not one."""
    return _cached_duration_ms(text) if len(text) <= 40 else None


@functools.lru_cache(maxsize=64)  # read before every statement and every wait
def _cached_duration_ms(text: str) -> int | None:
    m = _DURATION.fullmatch(text)
    if m is None:
        return None
    ms = round(float(m.group(1)) * _UNIT_MS[m.group(2) or "ms"])
    return ms if ms <= _INT32_MAX else None


def _parse_duration(name: str, text: str) -> int:
    ms = _duration_ms(text)
    if ms is None:
        raise WireError(
            "22023",
            f'invalid value for parameter "{name}": "{text}"',
            hint='Valid units are "us", "ms", "s", "min", "h" and "d"; a bare number is ms.',
        )
    return ms


def _duration_text(ms: int) -> str:
    """How PostgreSQL shows a duration: in the largest unit that divides it."""
    if ms == 0:
        return "0"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _seconds_text(seconds: float) -> str:
    return _duration_text(round(seconds * 1000))


def _effective_seconds(server: float, session: str | None) -> float:
    """A time limit as the session sees it: the shorter of the server's and
    the session's own (0, a missing or a malformed value: none of its own)."""
    ms = _duration_ms(session) if session is not None else None
    if not ms:
        return server
    mine = ms / 1000
    return mine if not server else min(server, mine)


def _set_value(tokens: list[ddl.Token]) -> str:
    items: list[str] = []
    current = ""
    for tok in tokens:
        if tok.text == ",":
            items.append(current)
            current = ""
        elif tok.kind == "string":
            current += tok.text[1:-1].replace("''", "'")
        elif tok.kind == "qident" and tok.text.startswith('"'):
            current += tok.text[1:-1].replace('""', '"')
        elif tok.kind == "dollar":
            current += tok.text[tok.text.index("$", 1) + 1 : tok.text.rindex("$", 0, -1)]
        else:
            current += tok.text
    items.append(current)
    return ", ".join(items)


def _show(session: WireSession, tokens: list[ddl.Token]) -> Result:
    if len(tokens) == 1 and tokens[0].kind == "word" and tokens[0].upper == "ALL":
        rows: list[tuple[SqlValue, ...]] = [
            (name, value, "") for name, value in sorted(session.variables.items())
        ]
        return Result(["name", "setting", "description"], rows)
    if len(tokens) >= 2 and tokens[0].upper == "TIME" and tokens[1].upper == "ZONE":
        name, rest = "timezone", tokens[2:]
    elif tokens and tokens[0].upper == "TRANSACTION":
        name, rest = "transaction_isolation", tokens[3:]  # SHOW TRANSACTION ISOLATION LEVEL
    else:
        name, rest = _dotted_name(tokens)
    if rest:
        raise WireError("42601", f"syntax error at or near {rest[0].text!r}")
    if name not in session.variables:
        raise WireError("42704", f'unrecognized configuration parameter "{name}"')
    return Result([_REPORTED.get(name, name)], [(session.variables[name],)])


# --- SQL text -------------------------------------------------------------------------

# Everything a scan of SQL text must step over whole, each one match whether it
# is terminated or runs to the end of the text, so that no scan ever comes
# back to it: quotes, comments and $tag$ bodies (none of them nest in SQLite).
# The scans below are linear in the text and keep no object per character or
# per token; the statement splitter (ddl) has its own.
_OPAQUE = r"""
    '[^']*(?:''[^']*)*'?
  | "[^"]*(?:""[^"]*)*"?
  | `[^`]*`?
  | \[[^\]]*\]?
  | --[^\n]*
  | /\*(?:.*?\*/|.*)
  | \$(?P<tag>[A-Za-z_]*)\$(?:.*?\$(?P=tag)\$|(?P<open>.*))
"""
# Placeholders are found in the UTF-8 bytes: a ``$`` becomes ``?`` in place.
_PLACEHOLDER_SCAN = re.compile(
    (_OPAQUE + r"| \$(?P<n>[0-9]+)(?P<fraction>\.[0-9])?").encode(), re.VERBOSE | re.DOTALL
)
_WORD_SCAN = re.compile(
    _OPAQUE + r"| (?P<word>[A-Za-z_][A-Za-z0-9_]*) | (?P<paren>[()])", re.VERBOSE | re.DOTALL
)
_TRANSACTION_VERBS = {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"}
# Statements a multi-statement simple query is not wrapped in a transaction
# around: they manage transactions themselves or cannot run inside one.
_NO_IMPLICIT = _TRANSACTION_VERBS | ddl.TRANSACTION_CONTROL
_CREATE_MODIFIERS = {"OR", "REPLACE", "TEMP", "TEMPORARY", "UNIQUE", "VIRTUAL", "IF", "NOT"}
_keywords = ddl.keywords


def _all_words(sql: str, n: int) -> list[str] | None:
    """Every word of a statement outside quotes and comments, upper case, or
    None if there are more than ``n``."""
    words: list[str] = []
    for m in _WORD_SCAN.finditer(sql):
        word = m.group("word")
        if word is not None:
            if len(words) == n:
                return None
            words.append(word.upper())
    return words


def _names(sql: str, n: int) -> list[str]:
    """Up to ``n`` words and double-quoted names of a statement, as written."""
    names: list[str] = []
    for m in _WORD_SCAN.finditer(sql):
        text = m.group()
        if m.group("word") is not None:
            names.append(text)
        elif len(text) >= 2 and text[0] == text[-1] == '"':
            names.append(text[1:-1].replace('""', '"'))
        if len(names) == n:
            break
    return names


def _sqlite_transaction(sql: str) -> str:
    """PostgreSQL's transaction statements in SQLite's dialect."""
    # The longest is BEGIN TRANSACTION ISOLATION LEVEL READ UNCOMMITTED READ WRITE.
    words = _all_words(sql, 12)
    if not words:
        return sql
    verb, rest = words[0], words[1:]
    if verb == "START":
        return "BEGIN"
    if verb == "BEGIN":
        native = not rest or rest in (["TRANSACTION"],) or rest[0] in _SQLITE_BEGIN
        return sql if native else "BEGIN"
    if verb == "ABORT":
        return "ROLLBACK"
    if verb in ("COMMIT", "END") and set(rest) <= {"WORK", "TRANSACTION", "AND", "NO", "CHAIN"}:
        return "COMMIT"
    if verb == "ROLLBACK" and set(rest) <= {"WORK", "TRANSACTION", "AND", "NO", "CHAIN"}:
        return "ROLLBACK"
    return sql


_SQLITE_BEGIN = {"DEFERRED", "IMMEDIATE", "EXCLUSIVE"}


def translate_placeholders(sql: str) -> tuple[str, int]:
    """PostgreSQL's ``$n`` placeholders as SQLite's ``?n``, and the highest n.

    Placeholders inside string literals, quoted identifiers, comments and
    ``$tag$`` bodies are left alone. Raises DdlError for an unterminated
    ``$tag$`` body, WireError 42P02 for a ``$n`` past SQLite's limit.
    """
    if "$" not in sql:
        return sql, 0
    data = bytearray(sql.encode("utf-8", "surrogatepass"))
    highest = 0
    found = False
    for m in _PLACEHOLDER_SCAN.finditer(data):
        kind = m.lastgroup
        if kind == "open":
            raise DdlError(f"unterminated ${m.group('tag').decode()}$ body at offset {m.start()}")
        if kind != "n":
            continue  # quoted, a comment, or $1.5
        digits = m.group("n")
        number = int(digits) if len(digits) <= 6 else 0
        if not 1 <= number <= ddl.MAX_PLACEHOLDER:
            raise WireError("42P02", f"there is no parameter ${digits[:12].decode()}")
        highest = max(highest, number)
        data[m.start()] = 0x3F  # "?"
        found = True
    return (data.decode("utf-8", "surrogatepass") if found else sql), highest


def _main_verb_of_with(sql: str) -> str:
    """SELECT, INSERT, UPDATE or DELETE: what a ``WITH ...`` statement does."""
    depth = 0
    first = True
    for m in _WORD_SCAN.finditer(sql):
        paren = m.group("paren")
        if paren is not None:
            depth += 1 if paren == "(" else -1
            continue
        word = m.group("word")
        if word is None:
            continue
        if first:  # WITH itself
            first = False
            continue
        if depth == 0 and word.upper() in _MAIN_VERBS:
            return word.upper()
    return "SELECT"


_MAIN_VERBS = {"SELECT", "INSERT", "REPLACE", "UPDATE", "DELETE", "VALUES"}


def command_tag(sql: str, result: Result) -> str:
    """The CommandComplete tag PostgreSQL would send for ``sql``."""
    words = _keywords(sql, 6)
    verb = words[0] if words else ""
    if verb == "WITH":
        verb = _main_verb_of_with(sql)
    affected = len(result.rows) if result.columns else result.changes
    if verb in ("INSERT", "REPLACE"):
        return f"INSERT 0 {affected}"
    if verb in ("UPDATE", "DELETE"):
        return f"{verb} {affected}"
    if verb in ("SELECT", "VALUES", "TABLE"):
        return f"SELECT {len(result.rows)}"
    if verb in ("BEGIN", "START"):
        return "BEGIN"
    if verb in ("COMMIT", "END"):
        return "COMMIT"
    if verb in ("ROLLBACK", "ABORT"):
        return "ROLLBACK"
    if verb in ("CREATE", "DROP", "ALTER"):
        objects = [w for w in words[1:] if w not in _CREATE_MODIFIERS]
        return f"{verb} {objects[0]}" if objects else verb
    if verb in ("SET", "RESET", "SHOW", "CALL", "SAVEPOINT", "RELEASE"):
        return verb
    if result.columns:
        return f"SELECT {len(result.rows)}"
    return verb or "OK"


# --- errors -------------------------------------------------------------------------

# (message fragment, SQLSTATE), first match wins: apsw/SQLite report most
# errors as SQLError with only the text to tell them apart.
_MESSAGE_STATES: tuple[tuple[str, str], ...] = (
    ("unique constraint failed", "23505"),
    ("primary key must be unique", "23505"),
    ("not null constraint failed", "23502"),
    ("foreign key constraint failed", "23503"),
    ("check constraint failed", "23514"),
    ("constraint failed", "23000"),
    ("syntax error", "42601"),
    ("incomplete input", "42601"),
    ("unrecognized token", "42601"),
    ("unterminated", "42601"),
    ("no such table", "42P01"),
    ("no such view", "42P01"),
    ("no such column", "42703"),
    ("no such function", "42883"),
    ("wrong number of arguments to function", "42883"),
    ("no such index", "42704"),
    ("no such trigger", "42704"),
    ("no such savepoint", "3B001"),
    ("ambiguous column name", "42702"),
    ("duplicate column name", "42701"),
    ("already exists", "42P07"),
    ("not authorized", "42501"),
    ("prohibited", "42501"),
    ("cannot start a transaction within a transaction", "25001"),
    ("no transaction is active", "25P01"),
    ("readonly database", "25006"),
    ("database is locked", "55P03"),
    ("database table is locked", "55P03"),
    ("interrupted", "57014"),
    ("misuse of aggregate", "42803"),
    ("misuse of window function", "42803"),
    ("integer overflow", "22003"),
    ("datatype mismatch", "42804"),
    ("too many terms", "54001"),
    ("string or blob too big", "54000"),
)

_APSW_STATES: tuple[tuple[str, str], ...] = (
    ("BusyError", "55P03"),
    ("LockedError", "55P03"),
    ("ReadOnlyError", "25006"),
    ("InterruptError", "57014"),
    ("TooBigError", "54000"),
    ("NoMemError", "53200"),
    ("FullError", "53100"),
    ("CorruptError", "XX001"),
    ("NotADBError", "XX001"),
    ("CantOpenError", "58030"),
    ("IOError", "58030"),
    ("AuthError", "42501"),
    ("MismatchError", "42804"),
    ("RangeError", "22023"),
    ("BindingsError", "08P01"),
)

_SQLITE_BUSY_SNAPSHOT = 517
_CONSTRAINT_STATES = {
    2067: "23505",  # SQLITE_CONSTRAINT_UNIQUE
    1555: "23505",  # SQLITE_CONSTRAINT_PRIMARYKEY
    1299: "23502",  # SQLITE_CONSTRAINT_NOTNULL
    787: "23503",  # SQLITE_CONSTRAINT_FOREIGNKEY
    275: "23514",  # SQLITE_CONSTRAINT_CHECK
}
_REGISTRY_STATES = {"not-found": "42883", "already-exists": "42723", "no-such-version": "42704"}


def _apsw_error(exc: BaseException) -> BaseException | None:
    """The apsw exception behind ``exc`` (SqlError keeps it as its context)."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, apsw.Error):
            return exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return None


def _by_message(message: str) -> str | None:
    lower = message.lower()
    for fragment, state in _MESSAGE_STATES:
        if fragment in lower:
            return state
    return None


def sqlstate_for(exc: BaseException) -> str:
    """The SQLSTATE an exception is reported with.

    An exception with a ``sqlstate`` attribute (a str) keeps it; the engine's
    typed errors and apsw's errors map to the nearest PostgreSQL condition;
    anything else is XX000 (internal error).
    """
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str) and state:
        return state
    if isinstance(exc, CapabilityDenied):
        return "42501"
    if isinstance(exc, ResourceLimitExceeded):
        # A wall-clock limit is PostgreSQL's statement_timeout: query_canceled.
        return "57014" if exc.limit == "timeout" else "53400"
    if isinstance(exc, InvalidArgument):
        return "22023"
    if isinstance(exc, UserError):
        return "P0001"
    if isinstance(exc, ProcedureTrap):
        return "38000"
    if isinstance(exc, AbiError):
        return "39000"
    if isinstance(exc, RegistryError):
        return _REGISTRY_STATES.get(exc.code, "42000")
    if isinstance(exc, DdlError):
        return "42601"
    if isinstance(exc, ArchiveError):
        return "22023"
    inner = _apsw_error(exc)
    if inner is not None:
        kind = type(inner).__name__
        if kind == "ConstraintError":
            extended = getattr(inner, "extendedresult", None)
            return (
                _CONSTRAINT_STATES.get(extended, "23000") if isinstance(extended, int) else "23000"
            )
        if kind == "BusyError" and getattr(inner, "extendedresult", None) == _SQLITE_BUSY_SNAPSHOT:
            return "40001"
        for name, mapped in _APSW_STATES:
            if kind == name:
                return mapped
    message = exc.message if isinstance(exc, ProcedureError) else str(exc)
    by_text = _by_message(message)
    if by_text is not None:
        return by_text
    if isinstance(exc, ConstraintViolation):
        return "23000"
    if isinstance(exc, SqlError) or inner is not None:
        return "42000"
    if isinstance(exc, ProcedureError):
        return "38000"
    return "XX000"


def _error_fields(exc: BaseException) -> tuple[str, str, str | None, str | None]:
    """(SQLSTATE, message, detail, hint) of an exception."""
    state = sqlstate_for(exc)
    detail = getattr(exc, "detail", None)
    hint = getattr(exc, "hint", None)
    detail = detail if isinstance(detail, str) else None
    hint = hint if isinstance(hint, str) else None
    if isinstance(exc, ProcedureError):
        message = exc.message
        parts = []
        if exc.procedure is not None:
            kind = "plugin" if isinstance(exc, PluginRejected | PluginError) else "procedure"
            where = f"{kind} {exc.procedure}"
            parts.append(where if exc.version is None else f"{where} version {exc.version}")
        if parts or not isinstance(exc, SqlError | ConstraintViolation):
            # Plain SQLite errors say all there is in the message.
            parts.append(f"heliosdb code {exc.code}")
        if isinstance(exc, UserError) and exc.user_code:
            parts.append(f"user code {exc.user_code}")
        if isinstance(exc, ResourceLimitExceeded):
            parts.append(f"limit {exc.limit}")
        if isinstance(exc, ProcedureTrap) and exc.backtrace:
            # SingleStore's documentation promises "a stack into the Wasm
            # function" for a crash; psql shows DETAIL line by line.
            parts.append("wasm backtrace:\n" + exc.stack())
        detail = detail or "; ".join(parts) or None
        if isinstance(exc, CapabilityDenied) and hint is None and exc.procedure is not None:
            hint = "Grant the capability with CAPABILITIES (...) in CREATE PROCEDURE."
    elif isinstance(exc, WireError):
        message = exc.message
    elif state == "XX000":
        message = f"internal error: {type(exc).__name__}: {exc}"
    else:
        message = str(exc)
    return state, message, detail, hint


# --- values ---------------------------------------------------------------------------


def _column_oid(values: Sequence[SqlValue]) -> int:
    """The type of a result column, from its values (all-NULL is text)."""
    kinds: set[type] = set()
    for v in values:
        if v is not None:
            kinds.add(type(v))
    if not kinds:
        return OID_TEXT
    if kinds == {bool}:
        return OID_BOOL
    if kinds <= {int, bool}:
        fits = all(
            _INT64_MIN <= v <= _INT64_MAX for v in values if isinstance(v, int)
        )  # Python ints from an executor may be wider than SQLite's
        return OID_INT8 if fits else OID_TEXT
    if kinds <= {int, bool, float}:
        return OID_FLOAT8
    if kinds == {bytes}:
        return OID_BYTEA
    return OID_TEXT


def _declared_oid(decltype: str | None) -> int | None:
    """The type a column's declaration asks for (SQLite's affinity rules)."""
    d = (decltype or "").upper()
    if not d:
        return None
    if "BOOL" in d:
        return OID_BOOL
    if "INT" in d:
        return OID_INT8
    if "CHAR" in d or "CLOB" in d or "TEXT" in d:
        return OID_TEXT
    if "BLOB" in d or "BYTEA" in d:
        return OID_BYTEA
    if "REAL" in d or "FLOA" in d or "DOUB" in d:
        return OID_FLOAT8
    return None


def _fits(oid: int, values: Iterable[SqlValue]) -> bool:
    """Whether every value of a column can be sent as ``oid``."""
    for v in values:
        if v is None:
            continue
        if oid == OID_BOOL:
            if not (isinstance(v, bool) or (type(v) is int and v in (0, 1))):
                return False
        elif oid == OID_INT8:
            if not isinstance(v, int) or not _INT64_MIN <= v <= _INT64_MAX:
                return False
        elif oid == OID_FLOAT8:
            if not isinstance(v, int | float):
                return False
        elif oid == OID_TEXT:
            if not isinstance(v, str):
                return False
        elif oid == OID_BYTEA and not isinstance(v, bytes):
            return False
    return True


def _float_text(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    text = repr(v)
    # PostgreSQL prints integral floats without ".0".
    return text[:-2] if text.endswith(".0") else text


def _encode_text(value: SqlValue, oid: int) -> bytes:
    if isinstance(value, bool):
        if oid in (OID_BOOL, OID_TEXT):
            return b"t" if value else b"f"
        return b"1" if value else b"0"
    if oid == OID_BOOL and isinstance(value, int):
        return b"t" if value else b"f"
    if isinstance(value, float):
        return _float_text(value).encode()
    if isinstance(value, bytes):
        return b"\\x" + value.hex().encode()
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return str(value).encode()


def _encode_binary(value: SqlValue, oid: int) -> bytes:
    # The column's type was chosen to fit every value (_column_oid, _fits).
    if oid == OID_INT8 and isinstance(value, int):
        return struct.pack("!q", value)
    if oid == OID_FLOAT8 and isinstance(value, int | float):
        return struct.pack("!d", value)
    if oid == OID_BOOL:
        return b"\x01" if value else b"\x00"
    if oid == OID_BYTEA and isinstance(value, bytes):
        return value
    return _encode_text(value, oid)


def _decode_numeric_text(text: str) -> SqlValue:
    try:
        d = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        raise WireError("22P02", f"invalid input syntax for type numeric: {text!r}") from None
    return _from_decimal(d)


def _from_decimal(d: decimal.Decimal) -> SqlValue:
    # adjusted(): the exponent of the leading digit; past 18 the value is
    # beyond 64 bits, and int() of 1e1000000 would take seconds.
    if d.is_finite() and d.adjusted() < 19 and d == d.to_integral_value():
        n = int(d)
        if _INT64_MIN <= n <= _INT64_MAX:
            return n
    # Like an over-long integer literal in SQLite: stored as REAL.
    return float(d)


def _decode_numeric_binary(data: bytes) -> SqlValue:
    if len(data) < 8:
        raise WireError("22P03", "invalid binary numeric")
    ndigits, weight, sign, _dscale = struct.unpack_from("!hhHh", data)
    if ndigits < 0 or len(data) != 8 + 2 * ndigits:
        raise WireError("22P03", "invalid binary numeric")
    if sign == 0xC000:
        return None  # NaN: SQLite has no NaN, it binds NULL
    if sign in (0xD000, 0xF000):
        return math.inf if sign == 0xD000 else -math.inf
    digits = struct.unpack_from(f"!{ndigits}h", data, 8)
    value = decimal.Decimal(0)
    with decimal.localcontext() as ctx:
        ctx.prec = 4 * max(ndigits, 1) + 40
        base = decimal.Decimal(10000)
        for i, digit in enumerate(digits):
            value += digit * base ** (weight - i)
        if sign == 0x4000:
            value = -value
    return _from_decimal(value)


_TRUE = {"t", "true", "y", "yes", "on", "1"}
_FALSE = {"f", "false", "n", "no", "off", "0"}


_BYTEA_ESCAPE = re.compile(r"\\(?:(\\)|([0-3][0-7][0-7]))?")


def _decode_bytea_text(text: str) -> bytes:
    if text.startswith("\\x"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise WireError("22P02", "invalid hexadecimal data in bytea") from None
    # The escape format: \\ and \ooo (octal); everything else as it is.
    out = bytearray()
    last = 0
    for m in _BYTEA_ESCAPE.finditer(text):
        out += text[last : m.start()].encode("utf-8")
        if m.group(1) is not None:
            out.append(0x5C)
        elif m.group(2) is not None:
            out.append(int(m.group(2), 8))
        else:
            raise WireError("22P02", "invalid input syntax for type bytea")
        last = m.end()
    out += text[last:].encode("utf-8")
    return bytes(out)


def _decode_param(data: bytes, oid: int, binary: bool, index: int) -> SqlValue:
    """A bound parameter value (text or binary format) as SQLite takes it."""
    if binary:
        return _decode_binary(data, oid, index)
    if oid == OID_BYTEA:
        return _decode_bytea_text(_utf8(data, index))
    text = _utf8(data, index)
    try:
        if oid in _INT_OIDS:
            return int(text.strip())
        if oid in _FLOAT_OIDS:
            return float(text)
    except ValueError:
        raise WireError(
            "22P02", f"invalid input syntax for parameter ${index + 1} (type oid {oid}): {text!r}"
        ) from None
    if oid == OID_NUMERIC:
        return _decode_numeric_text(text)
    if oid == OID_BOOL:
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise WireError("22P02", f"invalid input syntax for type boolean: {text!r}")
    # Text, unknown and every other type (dates, uuids, json, ...) as text.
    return text


_BINARY_STRUCTS = {
    OID_INT2: struct.Struct("!h"),
    OID_INT4: struct.Struct("!i"),
    OID_INT8: struct.Struct("!q"),
    OID_OID: struct.Struct("!I"),
    OID_FLOAT4: struct.Struct("!f"),
    OID_FLOAT8: struct.Struct("!d"),
}


def _decode_binary(data: bytes, oid: int, index: int) -> SqlValue:
    fixed = _BINARY_STRUCTS.get(oid)
    if fixed is not None:
        if len(data) != fixed.size:
            raise WireError("22P03", f"incorrect binary data format in bind parameter {index + 1}")
        value: int | float = fixed.unpack(data)[0]
        return value
    if oid == OID_BOOL:
        if len(data) != 1:
            raise WireError("22P03", f"incorrect binary data format in bind parameter {index + 1}")
        return data != b"\x00"
    if oid == OID_BYTEA:
        return data
    if oid in _STRING_OIDS:
        return _utf8(data, index)
    if oid == OID_JSONB:
        if not data or data[0] != 1:
            raise WireError("22P03", f"unsupported jsonb version in bind parameter {index + 1}")
        return _utf8(data[1:], index)
    if oid == OID_NUMERIC:
        return _decode_numeric_binary(data)
    if oid == OID_UUID and len(data) == 16:
        return str(uuid.UUID(bytes=data))
    raise WireError(
        "0A000",
        f"binary format for parameter ${index + 1} of type oid {oid} is not supported",
        hint="Send this parameter in text format.",
    )


def _utf8(data: bytes, index: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(
            "22021", f"invalid byte sequence for encoding UTF8 in parameter ${index + 1}"
        ) from None


# --- protocol plumbing -------------------------------------------------------------


class _Disconnected(Exception):
    """The client went away (EOF or a socket error)."""


class _ProtocolViolation(Exception):
    """A malformed message: report 08P01 and close the connection."""


class _Timeout(Exception):
    """The client did not send in time (see _Input.read)."""


class _Terminate(Exception):
    """End the connection with a FATAL error (a timeout of WireLimits)."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.error = WireError(sqlstate, message)


class _Input:
    """What the client sends, buffered; every read waits until a deadline
    (``time.monotonic()`` seconds, None: forever) however slowly the bytes
    trickle in, and keeps no more than the bytes that actually came."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.pos = 0
        self.timeout: float | None = None

    def set_timeout(self, timeout: float | None) -> None:
        """The socket's timeout (reads and writes); a value at most
        _TIMEOUT_SLACK shorter than the current one keeps it (a system call)."""
        current = self.timeout
        if timeout is None or current is None or not 0 <= current - timeout <= _TIMEOUT_SLACK:
            self.sock.settimeout(timeout)
            self.timeout = timeout

    @staticmethod
    def deadline(seconds: float) -> float | None:
        """The deadline ``seconds`` from now (0: none)."""
        return time.monotonic() + seconds if seconds else None

    def _recv(self, size: int, deadline: float | None) -> bytes:
        timeout = None
        if deadline is not None:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise _Timeout
        try:
            if timeout != self.timeout:
                self.set_timeout(timeout)
            data = self.sock.recv(size)
        except TimeoutError:
            raise _Timeout from None
        except (OSError, ValueError) as exc:
            raise _Disconnected(str(exc)) from None
        if not data:
            raise _Disconnected("end of stream")
        return data

    def read(self, n: int, deadline: float | None = None, seconds: float = 0) -> bytes:
        """Exactly ``n`` bytes, by ``deadline`` or within ``seconds`` (0:
        however long it takes) of when the read has to wait."""
        available = len(self.buffer) - self.pos
        if available >= n:
            start = self.pos
            self.pos += n
            return self.buffer[start : self.pos]
        if deadline is None:
            deadline = self.deadline(seconds)
        parts = [self.buffer[self.pos :]] if available else []
        have = available
        self.buffer, self.pos = b"", 0
        while have < n:
            data = self._recv(max(_RECV, min(n - have, _CHUNK)), deadline)
            if have + len(data) > n:  # the start of the next message: keep it
                self.buffer, self.pos = data, n - have
                data = data[: n - have]
            parts.append(data)
            have += len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def discard(self, n: int, seconds: float) -> None:
        """Skip ``n`` bytes, holding at most one chunk of them at a time."""
        available = len(self.buffer) - self.pos
        if available >= n:
            self.pos += n
            return
        deadline = self.deadline(seconds)
        n -= available
        self.buffer, self.pos = b"", 0
        while n:
            n -= len(self._recv(min(n, _CHUNK), deadline))


class _Body:
    """Reads the fields of one message body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _ProtocolViolation("insufficient data left in message")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int16(self) -> int:
        value: int = struct.unpack("!h", self.take(2))[0]
        return value

    def int32(self) -> int:
        value: int = struct.unpack("!i", self.take(4))[0]
        return value

    def byte(self) -> bytes:
        return self.take(1)

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise _ProtocolViolation("invalid string in message")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _ProtocolViolation("invalid UTF-8 in message") from None

    def end(self) -> None:
        if self.pos != len(self.data):
            raise _ProtocolViolation("invalid message format")


def _cstr(text: str) -> bytes:
    return text.encode("utf-8", "replace").replace(b"\0", b"") + b"\0"


def _message(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


@dataclass
class _Statement:
    sql: str  # with ?n placeholders
    param_oids: list[int]
    empty: bool
    size: int = 0  # what it counts against max_buffer_bytes


@dataclass
class _Portal:
    statement: _Statement
    params: list[SqlValue]
    result_formats: list[int]
    result: Result | None = None
    oids: list[int] = field(default_factory=list)
    tag: str = ""
    position: int = 0
    size: int = 0  # what it counts against max_buffer_bytes, rows included


# What a prepared statement or a portal is estimated to cost besides its text,
# parameters and rows (the objects that hold them), and a buffered row besides
# its values (the row's slot in the result list and its GC header).
_ENTRY_BYTES = 512
_ROW_BYTES = 24
# Output is buffered up to this much between writes to the socket.
_OUT_BYTES = 256 * 1024
# A FATAL message to a client going away gets this long to leave.
_FAREWELL_SECONDS = 1.0
# Messages that only the client sends; anything else is garbage.
_FRONTEND_KINDS = frozenset(b"QPBDECHSXFdcf"[i : i + 1] for i in range(13))
# Extended-protocol messages: after an error the server skips them until Sync.
_EXTENDED_KINDS = frozenset(b"PBDECH"[i : i + 1] for i in range(6))


class _Connection:
    """One client connection, served by its own thread."""

    def __init__(self, server: Server, sock: socket.socket, process_id: int) -> None:
        self.server = server
        self.limits = server.wire_limits
        self.sock = sock
        self.process_id = process_id
        self.secret = secrets.randbits(31)
        self.input = _Input(sock)
        self.out = bytearray()
        self.session: WireSession | None = None
        self.db: Database | None = None
        self.statements: dict[str, _Statement] = {}
        self.portals: dict[str, _Portal] = {}
        self.failed = False  # an error inside a transaction block: 'E' until it ends
        self.ignore_till_sync = False
        self.reported: dict[str, str] = {}
        # Set while the startup packet may still come; then the idle limits apply.
        self.startup_deadline: float | None = None
        self.farewell = False  # sending a FATAL error: a short send timeout
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
        self.out += _message(kind, payload)
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
            raise _Disconnected(str(exc)) from None

    def _send_timeout(self) -> float | None:
        if self.farewell:
            return _FAREWELL_SECONDS
        if self.startup_deadline is not None:
            return max(self.startup_deadline - time.monotonic(), 0.001)
        seconds = self._idle_limit()[0]
        return seconds or None

    def _send_error(self, exc: BaseException, severity: str = "ERROR") -> None:
        state, message, detail, hint = _error_fields(exc)
        self._send(b"E", _notice_fields(severity, state, message, detail, hint))

    def _send_fatal(self, exc: BaseException) -> None:
        """Tell a client why it is being disconnected, if it still listens."""
        self.farewell = True
        with contextlib.suppress(_Disconnected):
            self._send_error(exc, "FATAL")
            self._flush()

    def _send_notice(self, state: str, message: str) -> None:
        self._send(b"N", _notice_fields("WARNING", state, message, None, None))

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
        return _effective_seconds(server, self.session.variables.get(name))

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

    def _keep_statement(self, name: str, statement: _Statement) -> None:
        old = self.statements.get(name)
        self._hold(statement.size, old.size if old is not None else 0)
        self.statements[name] = statement

    def _drop_statement(self, name: str) -> _Statement | None:
        statement = self.statements.pop(name, None)
        if statement is not None:
            self.held -= statement.size
        return statement

    def _keep_portal(self, name: str, portal: _Portal) -> None:
        old = self.portals.get(name)
        self._hold(portal.size, old.size if old is not None else 0)
        self.portals[name] = portal

    def _drop_portal(self, name: str) -> None:
        portal = self.portals.pop(name, None)
        if portal is not None:
            self.held -= portal.size

    def _drop_portals(self) -> None:
        for portal in self.portals.values():
            self.held -= portal.size
        self.portals.clear()

    # -- lifecycle ---------------------------------------------------------------------

    def serve(self) -> None:
        """The thread's body: startup, then messages until Terminate or EOF."""
        try:
            if self._startup():
                self._loop()
        except _Disconnected:
            pass
        except _Terminate as exc:
            self._send_fatal(exc.error)
        except _ProtocolViolation as exc:
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
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _startup(self) -> bool:
        # The whole startup must come within authentication_timeout, however
        # slowly its bytes trickle in.
        self.startup_deadline = time.monotonic() + self.limits.authentication_timeout
        try:
            return self._startup_packet()
        except _Timeout:
            raise _Terminate("57014", "canceling authentication due to timeout") from None

    def _startup_packet(self) -> bool:
        deadline = self.startup_deadline
        while True:
            length = struct.unpack("!i", self.input.read(4, deadline))[0]
            if not 8 <= length <= MAX_STARTUP_BYTES:
                raise _ProtocolViolation(f"invalid length of startup packet: {length}")
            body = _Body(self.input.read(length - 4, deadline))
            code = body.int32()
            if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                self.out += b"N"
                self._flush()
                continue
            if code == _CANCEL_REQUEST:
                pid, secret = body.int32(), body.int32()
                self.server._cancel(pid, secret)
                return False
            break
        major, minor = code >> 16, code & 0xFFFF
        if major != _PROTOCOL_3:
            raise _ProtocolViolation(f"unsupported frontend protocol {major}.{minor}")
        params: dict[str, str] = {}
        while True:
            key = body.cstring()
            if not key:
                break
            params[key] = body.cstring()
        body.end()
        unknown = [k for k in params if k.startswith("_pq_.")]
        if minor > 0 or unknown:
            payload = struct.pack("!ii", _PROTOCOL_3 << 16, len(unknown))
            self._send(b"v", payload + b"".join(_cstr(k) for k in unknown))
        defaults = {name: _seconds_text(getattr(self.limits, name)) for name in _DURATIONS}
        variables = _initial_variables(params, defaults)
        try:
            for name in _DURATIONS:
                _parse_duration(name, variables[name])
            self.db = Database.open(self.server.db_path, limits=self.server.limits)
            self.db.serve_clients(allow_ddl=self.server.allow_ddl)
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
        self.startup_deadline = None
        self._send(b"R", struct.pack("!i", 0))  # AuthenticationOk
        self._report_parameters()
        self._send(b"K", struct.pack("!ii", self.process_id, self.secret))
        self._ready()
        return True

    def _report_parameters(self) -> None:
        assert self.session is not None
        for key, name in _REPORTED.items():
            value = self.session.variables.get(key, "")
            if self.reported.get(key) != value:
                self.reported[key] = value
                self._send(b"S", _cstr(name) + _cstr(value))

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
            except (_Disconnected, _ProtocolViolation, _Terminate):
                raise
            except Exception as exc:  # noqa: BLE001 - every failure becomes an ErrorResponse
                if sqlstate_for(exc) == "XX000":  # a bug somewhere, not a bad statement
                    _log.exception("pgwire connection %d: internal error", self.process_id)
                self._send_error(exc)
                self._after_extended_error(kind)

    def _next_message(self) -> tuple[bytes, _Body | None]:
        """The next message; its body is None if it was too long (the client
        was told, and the bytes are gone). A client idle past its limit, or
        sending one message slower than that, is disconnected."""
        seconds, state, message = self._idle_limit()
        try:
            header = self.input.read(5, seconds=seconds)
            kind = header[:1]
            length = struct.unpack("!i", header[1:])[0]
            if kind not in _FRONTEND_KINDS:
                raise _ProtocolViolation(f"invalid frontend message type {kind!r}")
            if length < 4:
                raise _ProtocolViolation(f"invalid message length {length}")
            if length <= self.limits.max_message_bytes:
                return kind, _Body(self.input.read(length - 4, seconds=seconds))
            if kind in (b"S", b"H", b"X"):  # these have (almost) no body
                raise _ProtocolViolation(f"invalid message length {length}")
            # Thrown away in chunks, so the stream stays in step and the
            # session goes on (PostgreSQL closes the connection instead).
            self.input.discard(length - 4, seconds)
        except _Timeout:
            raise _Terminate(state, message) from None
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
        if kind in _EXTENDED_KINDS:
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
        words = _keywords(sql, 2)
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
            result = self._limited(session, sql, params)
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
        return result, command_tag(sql, result)

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
        """Column types: the declared type where the values fit it, else the values'."""
        columns = len(result.columns)
        declared: list[int | None] = [None] * columns
        if columns:
            assert self.db is not None
            try:
                description = apsw.ext.query_info(self.db.conn, sql).description
                if description is not None and len(description) == columns:
                    declared = [_declared_oid(d[1]) for d in description]
            except Exception:  # noqa: BLE001 - not plain SQLite (CALL, SHOW, rewritten): use values
                pass
        oids = []
        for i in range(columns):
            column = [row[i] for row in result.rows]
            oid = declared[i]
            oids.append(oid if oid is not None and _fits(oid, column) else _column_oid(column))
        return oids

    def _row_description(self, result: Result, oids: list[int], formats: list[int]) -> None:
        parts = [struct.pack("!h", len(result.columns))]
        for name, oid, fmt in zip(result.columns, oids, formats, strict=True):
            parts.append(_cstr(name))
            parts.append(struct.pack("!ihIhih", 0, 0, oid, _TYPLEN.get(oid, -1), -1, fmt))
        self._send(b"T", b"".join(parts))

    def _data_rows(
        self, rows: Sequence[tuple[SqlValue, ...]], oids: list[int], formats: list[int]
    ) -> None:
        count = struct.pack("!h", len(oids))
        null = struct.pack("!i", -1)
        pack = struct.Struct("!i").pack
        for row in rows:
            parts = [count]
            for value, oid, fmt in zip(row, oids, formats, strict=True):
                if value is None:
                    parts.append(null)
                elif isinstance(value, bytes) and not fmt:
                    # bytea's hex text without the copies of _encode_text
                    # (a blob may be max_value_bytes long).
                    parts += (pack(2 * len(value) + 2), b"\\x", binascii.hexlify(value))
                else:
                    data = _encode_binary(value, oid) if fmt else _encode_text(value, oid)
                    parts.append(pack(len(data)))
                    parts.append(data)
            self._send_parts(b"D", parts)

    # -- simple query ----------------------------------------------------------------

    def _query(self, body: _Body) -> None:
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
            and not any(_outside_implicit(s) for s in statements)
        )
        if implicit:
            # PostgreSQL runs a multi-statement query as one transaction.
            self.db.conn.execute("BEGIN")
        ok = True
        for statement in statements:
            try:
                if _is_deallocate(statement):
                    self._deallocate(statement)
                    self._send(b"C", _cstr("DEALLOCATE"))
                    continue
                result, tag = self._run(statement, (), implicit)
                if result.columns:
                    oids = self._result_oids(statement, result)
                    formats = [0] * len(oids)
                    self._row_description(result, oids, formats)
                    self._data_rows(result.rows, oids, formats)
                self._send(b"C", _cstr(tag))
            except (_Disconnected, _ProtocolViolation):
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

    def _parse(self, body: _Body) -> None:
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
        self._keep_statement(name, _Statement(sql, oids, not statements, size))
        self._send(b"1")

    def _bind(self, body: _Body) -> None:
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
                None if data is None else _decode_param(data, statement.param_oids[i], fmt == 1, i)
            )
        size = _ENTRY_BYTES + sum(map(sys.getsizeof, params))
        self._keep_portal(portal_name, _Portal(statement, params, result_formats, size=size))
        self._send(b"2")

    def _materialize(self, portal: _Portal) -> Result:
        if portal.result is None:
            result, tag = self._run(portal.statement.sql, portal.params)
            portal.oids = self._result_oids(portal.statement.sql, result) if result.columns else []
            portal.tag = tag
            portal.result = result
            # Kept until the portal is closed: counted against max_buffer_bytes.
            portal.size += self.row_bytes
            self.held += self.row_bytes
        return portal.result

    def _formats(self, portal: _Portal) -> list[int]:
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

    def _describe(self, body: _Body) -> None:
        what = body.byte()
        name = body.cstring()
        body.end()
        if what == b"S":
            statement = self._prepared(name)
            oids = [o or OID_TEXT for o in statement.param_oids]
            self._send(b"t", struct.pack(f"!h{len(oids)}I", len(oids), *oids))
            columns = self._statement_columns(statement)
            if columns is None:
                self._send(b"n")
            else:
                names = [c[0] for c in columns]
                self._row_description(Result(names), [c[1] for c in columns], [0] * len(names))
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
            raise _ProtocolViolation(f"invalid DESCRIBE message subtype {what!r}")

    def _prepared(self, name: str) -> _Statement:
        statement = self.statements.get(name)
        if statement is None:
            raise WireError("26000", f'prepared statement "{name}" does not exist')
        return statement

    def _portal(self, name: str) -> _Portal:
        portal = self.portals.get(name)
        if portal is None:
            raise WireError("34000", f'portal "{name}" does not exist')
        return portal

    def _statement_columns(self, statement: _Statement) -> list[tuple[str, int]] | None:
        """A statement's columns without running it (None: it returns no rows).

        Only SQLite's own statements and SHOW can be described in advance; a
        CALL or procedure DDL answers NoData here although a CALL returns a
        row at execution. Column types come from declarations (text where
        there is none); an executed portal may report a more exact type.
        """
        words = _keywords(statement.sql, 2)
        verb = words[0] if words else ""
        if statement.empty or verb in ("SET", "RESET"):
            return None
        if verb == "SHOW":
            name = words[1].lower() if len(words) > 1 else "setting"
            return [(_REPORTED.get(name, name), OID_TEXT)]
        assert self.db is not None
        try:
            description = apsw.ext.query_info(self.db.conn, statement.sql).description
        except Exception:  # noqa: BLE001 - not plain SQLite: it cannot be described
            return None
        if not description:
            return None
        return [(d[0], _declared_oid(d[1]) or OID_TEXT) for d in description]

    def _execute(self, body: _Body) -> None:
        name = body.cstring()
        max_rows = body.int32()
        body.end()
        portal = self._portal(name)
        if portal.statement.empty:
            self._send(b"I")
            return
        result = self._materialize(portal)
        if not result.columns:
            self._send(b"C", _cstr(portal.tag))
            return
        start = portal.position
        end = len(result.rows) if max_rows <= 0 else min(len(result.rows), start + max_rows)
        self._data_rows(result.rows[start:end], portal.oids, self._formats(portal))
        portal.position = end
        if end < len(result.rows):
            self._send(b"s")  # PortalSuspended: the client may Execute again for more
            return
        tag = portal.tag
        if tag.startswith("SELECT ") and start:
            tag = f"SELECT {end - start}"
        self._send(b"C", _cstr(tag))

    def _close_message(self, body: _Body) -> None:
        what = body.byte()
        name = body.cstring()
        body.end()
        if what == b"S":
            self._drop_statement(name)
        elif what == b"P":
            self._drop_portal(name)
        else:
            raise _ProtocolViolation(f"invalid CLOSE message subtype {what!r}")
        self._send(b"3")

    def _flush_message(self, body: _Body) -> None:
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
        words = _names(sql, 4)
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


def _outside_implicit(sql: str) -> bool:
    """Whether a statement keeps a multi-statement query out of one transaction."""
    words = _keywords(sql, 4)
    if not words:
        return False
    if words[0] in _NO_IMPLICIT or words[0] == "DEALLOCATE":
        return True
    # Procedure DDL also changes the Database's bindings in memory, which a
    # rollback of the implicit transaction would not undo.
    return words[0] in ("CREATE", "ALTER", "DROP") and bool(
        {"PROCEDURE", "EXTENSION"} & set(words[1:])
    )


def _is_deallocate(sql: str) -> bool:
    words = _keywords(sql, 1)
    return bool(words) and words[0] == "DEALLOCATE"


def _notice_fields(
    severity: str, state: str, message: str, detail: str | None, hint: str | None
) -> bytes:
    out = io.BytesIO()
    fields = [(b"S", severity), (b"V", severity), (b"C", state), (b"M", message)]
    if detail:
        fields.append((b"D", detail))
    if hint:
        fields.append((b"H", hint))
    for code, text in fields:
        out.write(code + _cstr(text))
    out.write(b"\0")
    return out.getvalue()


# --- the server -----------------------------------------------------------------------


class _Watchdog:
    """One thread per server that interrupts statements past their
    statement_timeout (``Connection.interrupt`` needs no GIL on the SQLite
    side, unlike a progress handler). A statement that outlives its deadline
    is interrupted again every _REINTERRUPT seconds until it ends: a CALL runs
    several SQLite statements, and an interrupt between two is lost."""

    _REINTERRUPT = 0.05

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()  # taken directly: arm and disarm run per statement
        self._cond = threading.Condition(self._lock)
        self._due: dict[int, tuple[float, _Connection]] = {}
        self._fired: set[int] = set()
        self._tokens = itertools.count(1)
        self._wake_at = math.inf  # when the thread means to look next
        self._stopped = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._cond:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def arm(self, conn: _Connection, seconds: float) -> int:
        """Interrupt ``conn`` ``seconds`` from now unless disarmed first."""
        deadline = time.monotonic() + seconds
        with self._lock:
            token = next(self._tokens)
            self._due[token] = (deadline, conn)
            if deadline < self._wake_at:
                self._cond.notify()
        return token

    def disarm(self, token: int) -> bool:
        """Forget a deadline; whether it had fired. No interrupt follows."""
        with self._lock:
            self._due.pop(token, None)
            if token in self._fired:
                self._fired.discard(token)
                return True
            return False

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                self._wake_at = math.inf
                for token, (deadline, conn) in list(self._due.items()):
                    if deadline <= now:
                        self._fired.add(token)
                        conn.interrupt()  # sqlite3_interrupt: safe from any thread
                        deadline = now + self._REINTERRUPT
                        self._due[token] = (deadline, conn)
                    self._wake_at = min(self._wake_at, deadline)
                timeout = None if self._wake_at == math.inf else self._wake_at - now
                self._cond.wait(timeout)


# A client refused for max_connections may take this long to send its startup
# packet (to be told why in its own protocol), and this many may wait at once;
# more are closed with a best-effort error and nothing read.
_REFUSAL_SECONDS = 5.0
_MAX_REFUSALS = 32
_TOO_MANY = _message(
    b"E",
    _notice_fields("FATAL", "53300", "sorry, too many clients already", None, None),
)


@dataclass
class _Refusal:
    """A connection over max_connections, handled on the accepting thread:
    at most MAX_STARTUP_BYTES read, SSL refused, then FATAL 53300 (a cancel
    request is still honoured)."""

    sock: socket.socket
    deadline: float
    data: bytes = b""
    negotiations: int = 0

    def readable(self, server: Server) -> bool:
        """Take what arrived; whether the refusal is over."""
        try:
            chunk = self.sock.recv(MAX_STARTUP_BYTES + 16 - len(self.data))
        except BlockingIOError:
            return False
        except OSError:
            return True
        if not chunk:
            return True
        self.data += chunk
        while True:
            if len(self.data) < 8:
                return False
            length, code = struct.unpack_from("!ii", self.data)
            if not 8 <= length <= MAX_STARTUP_BYTES:
                break  # garbage: refused all the same
            if len(self.data) < length:
                return False
            packet, self.data = self.data[:length], self.data[length:]
            if code in (_SSL_REQUEST, _GSSENC_REQUEST) and self.negotiations < 2:
                self.negotiations += 1
                self.send(b"N")
                continue
            if code == _CANCEL_REQUEST and length == 16:
                server._cancel(*struct.unpack_from("!ii", packet, 8))
                return True
            break
        self.send(_TOO_MANY)
        return True

    def send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.sock.send(data)  # a few bytes into an empty socket buffer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Server:
    """A PostgreSQL wire-protocol server for one database file.

    Binds at construction (``port=0`` picks a free port; see ``address``).
    ``start()`` serves in a background thread, ``serve_forever()`` in the
    calling one; ``stop()`` (or leaving the ``with`` block) stops accepting,
    closes every client connection and joins the threads. The server turns
    the file's journal into WAL so readers and a writer on different
    connections do not block each other. ``wire_limits`` bounds what each
    client may cost (WireLimits); ``limits`` are the procedures' own.
    """

    def __init__(
        self,
        db_path: str | Path,
        *,
        executor: Executor = execute_statement,
        host: str = "127.0.0.1",
        port: int = 5433,
        limits: Limits | None = None,
        allow_ddl: bool = False,
        wire_limits: WireLimits | None = None,
    ) -> None:
        if str(db_path) in ("", ":memory:"):
            raise InvalidArgument(
                "the server needs a database file: every client connection opens its own, "
                "and in-memory databases are not shared"
            )
        self.db_path = str(db_path)
        self.executor = executor
        self.limits = limits
        self.wire_limits = wire_limits or WireLimits()
        # Clients may not create procedures or plugins unless told so: one
        # that may create a procedure can read any table through it, whatever
        # the query plugins check (Database.serve_clients).
        self.allow_ddl = allow_ddl
        # Fail here, not at the first client, if the file cannot be used;
        # and create the engine's schema once instead of racing at connect.
        with Database.open(self.db_path, limits=limits) as db:
            db.conn.execute("PRAGMA journal_mode = WAL")
        self._listener = socket.create_server((host, port), backlog=128)
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: dict[int, tuple[_Connection, threading.Thread]] = {}
        self._pids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._watchdog = _Watchdog(f"pgwire-watchdog-{self.address[1]}")
        self._closed = False

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Serve in a background thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self.serve_forever, name=f"pgwire-accept-{self.address[1]}", daemon=True
        )
        self._thread.start()

    def serve_forever(self) -> None:
        """Accept clients until ``stop()``."""
        self._watchdog.start()
        refusals: dict[socket.socket, _Refusal] = {}
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            try:
                while not self._stopping.is_set():
                    timeout = None
                    if refusals:
                        soonest = min(r.deadline for r in refusals.values())
                        timeout = max(soonest - time.monotonic(), 0)
                    for key, _events in selector.select(timeout):
                        if key.fileobj is self._wake_r or self._stopping.is_set():
                            return
                        if key.fileobj is self._listener:
                            self._accept(selector, refusals)
                        elif isinstance(key.data, _Refusal) and key.data.readable(self):
                            self._end_refusal(selector, refusals, key.data)
                    now = time.monotonic()
                    for refusal in [r for r in refusals.values() if r.deadline <= now]:
                        self._end_refusal(selector, refusals, refusal)
            finally:
                for refusal in list(refusals.values()):
                    self._end_refusal(selector, refusals, refusal)

    def _accept(
        self, selector: selectors.BaseSelector, refusals: dict[socket.socket, _Refusal]
    ) -> None:
        try:
            sock, _addr = self._listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                time.sleep(0.05)  # out of descriptors: let connections end first
            return
        with self._lock:
            full = len(self._connections) >= self.wire_limits.max_connections
        if not full:
            self._spawn(sock)
            return
        sock.setblocking(False)
        refusal = _Refusal(sock, time.monotonic() + _REFUSAL_SECONDS)
        if len(refusals) >= _MAX_REFUSALS:
            refusal.send(_TOO_MANY)
            refusal.close()
            return
        refusals[sock] = refusal
        selector.register(sock, selectors.EVENT_READ, refusal)

    @staticmethod
    def _end_refusal(
        selector: selectors.BaseSelector,
        refusals: dict[socket.socket, _Refusal],
        refusal: _Refusal,
    ) -> None:
        refusals.pop(refusal.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(refusal.sock)
        refusal.close()

    def _spawn(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pid = next(self._pids)
        conn = _Connection(self, sock, pid)
        thread = threading.Thread(target=conn.serve, name=f"pgwire-{pid}", daemon=True)
        with self._lock:
            stopping = self._stopping.is_set()
            if not stopping:
                self._connections[pid] = (conn, thread)
        if stopping:
            conn._close()
            return
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: refused like one too many
            _log.warning("pgwire: cannot start a thread for connection %d", pid)
            with contextlib.suppress(OSError):
                sock.settimeout(_FAREWELL_SECONDS)
                sock.sendall(_TOO_MANY)
            conn._close()

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.pop(conn.process_id, None)

    def _cancel(self, pid: int, secret: int) -> None:
        with self._lock:
            found = self._connections.get(pid)
        if found is not None and found[0].secret == secret:
            found[0].interrupt()

    def stop(self) -> None:
        """Stop accepting, close client connections, join the threads."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            connections = list(self._connections.values())
        for conn, _thread in connections:
            conn.shutdown()
        for _conn, thread in connections:
            if thread is not threading.current_thread() and thread.ident is not None:
                thread.join(timeout=30)
                if thread.is_alive():
                    _log.warning("pgwire: %s did not stop within 30 s", thread.name)
        self._watchdog.stop()
        if not self._closed:
            self._closed = True
            for s in (self._listener, self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    s.close()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
