"""PostgreSQL's built-in functions that clients and their drivers call, on a
client's SQLite connection.

Drivers ask for ``version()``, ``current_schema()`` and
``current_setting(...)`` while they connect, and pools call
``pg_advisory_unlock_all()`` when a connection is returned; ``translate``
turns PostgreSQL's spellings (``'t'::bool``, ``x ~ 'pattern'``) into calls
of the functions here. Each answers from the session it was installed for.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import apsw
import apsw.ext

from .. import __version__
from ..values import SqlValue
from .codec import FALSE_WORDS, TRUE_WORDS, array_text, elements
from .errors import WireError
from .session import SERVER_VERSION, WireSession

# A pattern longer than this is refused before it is compiled: Python's re has
# no time limit, and statement_timeout cannot interrupt a running match.
MAX_PATTERN_CHARS = 4096


def version_text() -> str:
    """What ``version()`` says: PostgreSQL's shape, which drivers parse."""
    return (
        f"PostgreSQL {SERVER_VERSION.split()[0]} (HeliosDB WASM {__version__}, "
        f"SQLite {apsw.sqlite_lib_version()})"
    )


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    if len(pattern) > MAX_PATTERN_CHARS:
        raise WireError(
            "54000",
            f"regular expression of {len(pattern)} characters (at most {MAX_PATTERN_CHARS})",
        )
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise WireError("2201B", f"invalid regular expression: {exc}") from None


def regexp(pattern: SqlValue, value: SqlValue) -> int | None:
    """SQLite's ``value REGEXP pattern``: PostgreSQL's ``value ~ pattern``."""
    if pattern is None or value is None:
        return None
    return int(_compiled(str(pattern)).search(str(value)) is not None)


def pg_bool(value: SqlValue) -> int | None:
    """A cast to boolean as PostgreSQL reads one (SQLite would make 'true' 0)."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return int(value != 0)
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return 1
    if word in FALSE_WORDS:
        return 0
    raise WireError("22P02", f'invalid input syntax for type boolean: "{text[:64]}"')


class _ArrayAgg:
    """array_agg(x): its values as PostgreSQL's text form of an array."""

    def __init__(self) -> None:
        self.values: list[SqlValue] = []

    def step(self, *values: SqlValue) -> None:
        self.values.append(values[0])

    def final(self) -> str | None:
        return array_text(self.values) if self.values else None


def array_get(array: SqlValue, index: SqlValue) -> SqlValue:
    """array[i], counted from 1; NULL past either end."""
    values = elements(array)
    if values is None or not isinstance(index, int) or not 1 <= index <= len(values):
        return None
    value: SqlValue = values[index - 1]
    return value


def array_upper(array: SqlValue, dimension: SqlValue) -> int | None:
    values = elements(array)
    return len(values) if values and dimension == 1 else None


def generate_series(start: int, stop: int, step: int = 1) -> Iterator[tuple[int]]:
    """PostgreSQL's generate_series over integers (apsw's table-valued function)."""
    if step == 0:
        raise WireError("22023", "step size cannot equal zero")
    value = start
    while (value <= stop) if step > 0 else (value >= stop):
        yield (value,)
        value += step


generate_series.columns = ("value",)  # type: ignore[attr-defined]
generate_series.column_access = apsw.ext.VTColumnAccess.By_Index  # type: ignore[attr-defined]


def array_json(array: SqlValue) -> str | None:
    values = elements(array)
    return None if values is None else json.dumps(values)


def array_to_string(array: SqlValue, separator: SqlValue, null: SqlValue = None) -> str | None:
    values = elements(array)
    if values is None:
        return None
    shown = [str(v) if v is not None else null for v in values]
    return ("" if separator is None else str(separator)).join(
        str(v) for v in shown if v is not None
    )


def install(conn: apsw.Connection, session: WireSession) -> None:
    """Register the functions on ``conn``, answering for ``session``."""
    user = session.params.get("user", "")
    database = session.params.get("database", user)

    def current_setting(name: SqlValue, missing_ok: SqlValue = 0) -> str | None:
        text = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        value = session.variables.get(text.lower())
        if value is None and not missing_ok:
            raise WireError("42704", f'unrecognized configuration parameter "{text[:64]}"')
        return value

    def constant(value: SqlValue) -> Callable[[], SqlValue]:
        return lambda: value

    functions: dict[str, tuple[Callable[..., Any], int, bool]] = {
        # name: (function, number of arguments or -1, deterministic)
        "version": (constant(version_text()), 0, True),
        "current_database": (constant(database), 0, True),
        "current_catalog": (constant(database), 0, True),
        "current_schema": (constant("public"), 0, True),
        "current_schemas": (lambda _implicit: "{pg_catalog,public}", 1, True),
        "current_user": (constant(user), 0, True),
        "session_user": (constant(user), 0, True),
        "pg_backend_pid": (constant(session.process_id), 0, True),
        "current_setting": (current_setting, -1, False),
        # A pool returns a connection with this; the endpoint has no advisory
        # locks, so there are none to release.
        "pg_advisory_unlock_all": (constant(None), 0, True),
        "pg_encoding_to_char": (lambda _encoding: "UTF8", 1, True),
        "pg_bool": (pg_bool, 1, True),
        "regexp": (regexp, 2, True),
        "pg_array_json": (array_json, 1, True),
        "pg_array": (lambda *values: array_text(values), -1, True),
        "pg_array_get": (array_get, 2, True),
        "array_upper": (array_upper, 2, True),
        "array_length": (array_upper, 2, True),
        "pg_relation_is_publishable": (lambda _oid: 0, 1, True),
        "gen_random_uuid": (lambda: str(uuid.uuid4()), 0, False),
    }
    for name, (function, nargs, deterministic) in functions.items():
        conn.create_scalar_function(name, function, nargs, deterministic=deterministic)
    conn.create_aggregate_function("pg_array_agg", _ArrayAgg, 1)
    apsw.ext.make_virtual_module(conn, "generate_series", generate_series)
