"""A client session: the limits a connection has, its state, session
variables (SET / RESET / SHOW), and the default executor."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Protocol

from .. import ddl
from ..database import Database, Result
from ..errors import DdlError, InvalidArgument
from ..policy import MAX_MODULE_BYTES, MIB
from ..values import SqlValue
from .dialect import TRANSACTION_VERBS, keywords, sqlite_transaction
from .errors import WireError
from .protocol import INT32_MAX, MAX_STARTUP_BYTES
from .translate import expand, to_sqlite

SERVER_VERSION = "15.0 (HeliosDB)"
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
            if seconds and not 0 <= value <= INT32_MAX // 1000:
                raise InvalidArgument(f"wire limit {f.name} must be 0..{INT32_MAX // 1000} s")
            if not seconds and not 1 <= value <= INT32_MAX:
                raise InvalidArgument(f"wire limit {f.name} must be 1..{INT32_MAX}, got {value}")
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


def execute_statement(session: WireSession, sql: str, params: Sequence[SqlValue]) -> Result:
    """The default executor: one statement.

    ``SET name = value`` / ``SET name TO value`` / ``SET SESSION ...`` /
    ``RESET name`` / ``RESET ALL`` / ``SHOW name`` / ``SHOW ALL`` act on
    ``session.variables`` and never reach SQLite; PostgreSQL's transaction
    spellings (``START TRANSACTION``, ``BEGIN ISOLATION LEVEL ...``,
    ``ABORT``, ``COMMIT WORK``) become SQLite's; everything else runs with
    ``session.db.execute(sql, params)``, in SQLite's dialect where it was
    written in PostgreSQL's (``translate``).
    """
    words = keywords(sql, 2)
    verb = words[0] if words else ""
    if verb in ("SET", "RESET", "SHOW"):
        return variable_statement(session, verb, sql)
    if verb == "UNLISTEN" and _nothing_to_release(sql):
        return Result()
    if verb in TRANSACTION_VERBS:
        sql = sqlite_transaction(sql)
    statements = expand(sql) if verb in _EXPANDED_VERBS else None
    if statements is None:
        return session.db.execute(to_sqlite(sql), params)
    return _all_or_none(session.db, statements)


_EXPANDED_VERBS = {"DROP", "TRUNCATE", "CREATE", "ALTER", "VACUUM"}


def _all_or_none(db: Database, statements: list[str]) -> Result:
    """Several statements for one: all of them, or (on an error) none."""
    if not statements:
        return Result()
    if len(statements) == 1:
        return db.execute(statements[0])
    changes = 0
    db.conn.execute("SAVEPOINT heliosdb_statement")
    try:
        for statement in statements:
            changes += db.execute(statement).changes
    except BaseException:
        db.conn.execute("ROLLBACK TO heliosdb_statement")
        db.conn.execute("RELEASE heliosdb_statement")
        raise
    db.conn.execute("RELEASE heliosdb_statement")
    return Result(changes=changes)


def _nothing_to_release(sql: str) -> bool:
    """``UNLISTEN *``, which pools send when they take a connection back
    (asyncpg): the endpoint has no LISTEN, so there is nothing to stop."""
    return ddl.keywords(sql, 3) == ["UNLISTEN"] and sql.strip().rstrip(";").strip().endswith("*")


# --- session variables ----------------------------------------------------------

# Variables PostgreSQL reports with ParameterStatus, by lower-case name.
REPORTED = {
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
    "search_path": '"$user", public',
    "default_table_access_method": "heap",
    "max_identifier_length": "63",
    # What psql's \password and libpq's PQencryptPasswordConn ask before
    # hashing a new password on the client: the only kind stored here.
    "password_encryption": "scram-sha-256",
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
    # The authenticated user: becoming another role takes a new connection.
    "session_authorization",
}
_STARTUP_ONLY = {"user", "database", "options", "replication"}
_UTF8_NAMES = {"utf8", "utf-8", "unicode", "sql_ascii"}


def initial_variables(
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
    for name in DURATIONS:
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


def variable_statement(session: WireSession, verb: str, sql: str) -> Result:
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
            initial = initial_variables(session.params, session.defaults)
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
    initial = initial_variables(session.params, session.defaults)
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
    if name in DURATIONS:
        value = _duration_text(parse_duration(name, value))
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
DURATIONS = ("statement_timeout", "idle_session_timeout", "idle_in_transaction_session_timeout")
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
    return ms if ms <= INT32_MAX else None


def parse_duration(name: str, text: str) -> int:
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


def seconds_text(seconds: float) -> str:
    return _duration_text(round(seconds * 1000))


def effective_seconds(server: float, session: str | None) -> float:
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
    return Result([REPORTED.get(name, name)], [(session.variables[name],)])
