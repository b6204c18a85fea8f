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
import re
import uuid
from collections.abc import Callable
from typing import Any

import apsw

from .. import __version__
from ..values import SqlValue
from .codec import FALSE_WORDS, TRUE_WORDS
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
        "gen_random_uuid": (lambda: str(uuid.uuid4()), 0, False),
    }
    for name, (function, nargs, deterministic) in functions.items():
        conn.create_scalar_function(name, function, nargs, deterministic=deterministic)
