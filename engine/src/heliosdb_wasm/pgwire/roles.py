"""Role statements over the wire: CREATE ROLE/USER, ALTER ROLE/USER and
DROP ROLE/USER, run by the connection itself on the roles of the database
(``Database.create_role`` and the rest).

A client may change its own password (``ALTER ROLE CURRENT_USER PASSWORD
'...'``, or psql's ``\\password``, which sends a verifier it hashed itself);
creating, dropping or changing any other role, or anyone's LOGIN, takes a
server started with ``--allow-ddl``. These statements never reach the
executor, hence neither the query plugins nor anything that records
statement text: their text holds a password. For the same reason no error
here quotes a string of the statement.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import ddl
from ..database import Database, Result
from ..errors import DdlError
from .dialect import keywords
from .errors import WireError

_VERBS = {"CREATE", "ALTER", "DROP"}
# What every role here is anyway (no superusers, no privileges but the
# plugins'), so saying it changes nothing.
_NO_OPS = {"NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE", "NOREPLICATION", "NOBYPASSRLS"}
_NO_OPS |= {"INHERIT", "NOINHERIT"}
_UNSUPPORTED = {
    "SUPERUSER": "superusers",
    "CREATEDB": "CREATEDB",
    "CREATEROLE": "CREATEROLE (roles are managed with --allow-ddl or the CLI)",
    "REPLICATION": "replication",
    "BYPASSRLS": "row-level security",
    "CONNECTION": "connection limits",
    "VALID": "password expiry (VALID UNTIL)",
    "IN": "role membership",
    "ROLE": "role membership",
    "ADMIN": "role membership",
    "USER": "role membership",
    "SYSID": "SYSID",
    "RENAME": "renaming roles",
    "SET": "per-role settings",
    "RESET": "per-role settings",
}
_CURRENT = {"CURRENT_USER", "SESSION_USER", "CURRENT_ROLE"}


def is_role_statement(sql: str) -> bool:
    words = keywords(sql, 2)
    return len(words) == 2 and words[0] in _VERBS and words[1] in ("ROLE", "USER")


@dataclass
class _Parsed:
    verb: str
    names: list[str]
    login: bool | None = None
    password: str | None = None
    password_given: bool = False  # PASSWORD NULL sets none: given, None
    if_exists: bool = False
    current: bool = False  # ALTER ROLE CURRENT_USER (SESSION_USER, CURRENT_ROLE)


def run(db: Database, sql: str, user: str, *, allow_ddl: bool) -> tuple[Result, str]:
    """Run one role statement as ``user``; its result and command tag."""
    parsed = _parse(sql)
    if parsed.verb == "CREATE":
        _require(allow_ddl, "create roles")
        (name,) = parsed.names
        # PostgreSQL's rule: CREATE USER may log in, CREATE ROLE may not.
        login = parsed.login if parsed.login is not None else _is_user(sql)
        db.create_role(name, parsed.password, login=login)
        return Result(), "CREATE ROLE"
    if parsed.verb == "DROP":
        _require(allow_ddl, "drop roles")
        for name in parsed.names:
            if name == user:
                raise WireError("55006", "current user cannot be dropped")
            if not parsed.if_exists and db.role(name) is None:
                raise WireError("42704", f'role "{name}" does not exist')
        for name in parsed.names:  # all of them exist: none is refused halfway
            db.drop_role(name, if_exists=True)
        return Result(), "DROP ROLE"
    (name,) = parsed.names
    target = user if parsed.current else name
    if target != user or parsed.login is not None:
        _require(allow_ddl, "alter other roles, or whether a role may log in")
    if parsed.password_given:
        db.set_role_password(target, parsed.password)
    if parsed.login is not None:
        db.set_role_login(target, parsed.login)
    if not parsed.password_given and parsed.login is None and db.role(target) is None:
        raise WireError("42704", f'role "{target}" does not exist')
    return Result(), "ALTER ROLE"


def _is_user(sql: str) -> bool:
    return keywords(sql, 2)[1] == "USER"


def _require(allowed: bool, what: str) -> None:
    if not allowed:
        raise WireError(
            "42501",
            f"permission denied to {what}",
            hint="A client may change its own password (ALTER ROLE CURRENT_USER PASSWORD ...,"
            " psql's \\password); anything else takes a server started with --allow-ddl,"
            " or `heliosdb-wasm role ...` on the database file.",
        )


def _syntax(token: ddl.Token | None) -> WireError:
    if token is None:
        return WireError("42601", "syntax error at end of input")
    # A string may be a password: never quoted back.
    shown = "a string" if token.kind in ("string", "dollar") else repr(token.text)
    return WireError("42601", f"syntax error at or near {shown}")


def _name(token: ddl.Token | None) -> str:
    """A role name as PostgreSQL reads it: a bare word folded to lower case,
    a double-quoted one as it is."""
    if token is None:
        raise _syntax(None)
    if token.kind == "word":
        if token.upper in _CURRENT:
            raise WireError("42939", f"role name {token.text.lower()!r} is reserved")
        return token.text.lower()
    if token.kind == "qident" and token.text.startswith('"'):
        return token.text[1:-1].replace('""', '"')
    raise _syntax(token)


def _parse(sql: str) -> _Parsed:
    try:
        tokens = ddl.tokenize(sql)
    except DdlError:
        # The message quotes the text after the quote it could not close.
        raise WireError("42601", "unterminated quoted string in a role statement") from None
    while tokens and tokens[-1].text == ";":
        tokens.pop()
    verb = tokens[0].upper
    rest = tokens[2:]
    if verb == "DROP":
        parsed = _Parsed(verb, [])
        if len(rest) >= 2 and rest[0].upper == "IF" and rest[1].upper == "EXISTS":
            parsed.if_exists, rest = True, rest[2:]
        while True:
            parsed.names.append(_name(rest[0] if rest else None))
            rest = rest[1:]
            if not rest:
                return parsed
            if rest[0].text != ",":
                raise _syntax(rest[0])
            rest = rest[1:]
    if verb == "ALTER" and rest and rest[0].kind == "word" and rest[0].upper in _CURRENT:
        parsed = _Parsed(verb, [""], current=True)
    else:
        parsed = _Parsed(verb, [_name(rest[0] if rest else None)])
    rest = rest[1:]
    if rest and rest[0].kind == "word" and rest[0].upper == "WITH":
        rest = rest[1:]
    while rest:
        word = rest[0]
        if word.kind != "word":
            raise _syntax(word)
        option = word.upper
        if option in ("LOGIN", "NOLOGIN"):
            parsed.login = option == "LOGIN"
            rest = rest[1:]
        elif option in _NO_OPS:
            rest = rest[1:]
        elif option == "UNENCRYPTED":
            raise WireError("0A000", "UNENCRYPTED PASSWORD is no longer supported")
        elif option in ("PASSWORD", "ENCRYPTED"):
            if option == "ENCRYPTED":
                rest = rest[1:]
                if not rest or rest[0].upper != "PASSWORD":
                    raise _syntax(rest[0] if rest else None)
            parsed.password, parsed.password_given = _password(rest[1] if len(rest) > 1 else None)
            rest = rest[2:]
        elif option in _UNSUPPORTED:
            raise WireError(
                "0A000",
                f"{_UNSUPPORTED[option]} is not supported by this server",
                hint="A role here is a name, a password and whether it may log in.",
            )
        else:
            raise _syntax(word)
    if verb == "ALTER" and parsed.login is None and not parsed.password_given:
        raise WireError("42601", "ALTER ROLE: expected PASSWORD, LOGIN or NOLOGIN")
    return parsed


def _password(token: ddl.Token | None) -> tuple[str | None, bool]:
    if token is not None and token.kind == "word" and token.upper == "NULL":
        return None, True
    if token is not None and token.kind == "string":
        return token.text[1:-1].replace("''", "'"), True
    if token is not None and token.kind == "dollar":
        text = token.text
        return text[text.index("$", 1) + 1 : text.rindex("$", 0, -1)], True
    raise WireError(
        "42601",
        "PASSWORD takes a string constant or NULL",
        hint="Write the password in single quotes (E'' escape strings are not supported here).",
    )
