"""SQLSTATEs: the one error type the endpoint raises itself, the
mapping of the engine's and SQLite's errors, and ErrorResponse fields."""

from __future__ import annotations

import apsw

from ..archive import ArchiveError
from ..errors import (
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


def error_fields(exc: BaseException) -> tuple[str, str, str | None, str | None]:
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
