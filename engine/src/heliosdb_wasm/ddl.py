"""Procedure DDL: splitting scripts into statements and parsing the statements
that SQLite does not know (CREATE/ALTER/DROP PROCEDURE, CALL).

Grammar (keywords case-insensitive, clauses after the signature in any order)::

    CREATE [OR REPLACE] PROCEDURE name [(arg TYPE, ...)]
        [RETURNS TYPE | RETURNS TABLE(col TYPE, ...) | RETURNS VOID]
        LANGUAGE wasm
        [CALLED ON NULL INPUT | RETURNS NULL ON NULL INPUT | STRICT]
        [CAPABILITIES ('read:customers', ...)]
        [GROW TO n MB]
        [WITH (fuel = n, timeout_seconds = n, ...)]
        [USING EXPORT 'name']
        AS $wasm$file://path.wasm$wasm$        -- or base64, or '...'
    ALTER PROCEDURE name VERSION n AS $wasm$...$wasm$
    ALTER PROCEDURE name USE VERSION n
    DROP PROCEDURE [IF EXISTS] name
    CALL name(expr, ...)
    CREATE EXTENSION name FROM 'archive.tar.gz' [KEY 'hex public key or key file']
    DROP EXTENSION [IF EXISTS] name
"""

from __future__ import annotations

import base64
import binascii
import errno
import functools
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from .errors import DdlError, InvalidArgument
from .policy import MAX_INTEGER, MAX_MODULE_BYTES, MIB, limit_problem
from .values import Column, Signature, SqlType, parse_type

WASM_MAGIC = b"\0asm"


# --- tokens -------------------------------------------------------------------

# What SQL text can never hold: SQLite ends a statement at NUL, and a lone
# surrogate has no UTF-8 form.
_UNSAYABLE = re.compile("[\x00\ud800-\udfff]")


def _check_text(sql: str) -> None:
    bad = _UNSAYABLE.search(sql)
    if bad is not None:
        what = "a NUL character" if bad.group() == "\x00" else f"a lone surrogate {bad.group()!r}"
        raise DdlError(f"SQL text may not contain {what} (offset {bad.start()})")


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|--[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<dollar>\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$)
  | (?P<string>'[^']*(?:''[^']*)*')
  | (?P<qident>"[^"]*(?:""[^"]*)*"|`[^`]*`|\[[^\]]*\])
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(),;=.*:])
  | (?P<open>\$[A-Za-z_]*\$|['"`\[])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
# Quotes and comments are matched by runs of one character class, never by
# a repeated alternative: the regex engine then keeps no backtracking state
# per character, and an unterminated one fails once, not at every later
# quote character. An unterminated comment runs to the end, as in SQLite.


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper()


def iter_tokens(sql: str) -> Iterator[Token]:
    """The tokens of ``sql`` (white space and comments skipped) as they are
    scanned; an unterminated quote, identifier or ``$tag$`` body is a DdlError
    when the scan reaches it."""
    _check_text(sql)
    pos = 0
    while pos < len(sql):
        m = _TOKEN.match(sql, pos)
        assert m is not None  # <other> matches any character
        kind = m.lastgroup or "other"
        if kind == "tag":
            kind = "dollar"
        elif kind == "open":
            what = f"{m.group()} body" if m.group()[0] == "$" else f"quoted text {m.group()}"
            raise DdlError(f"unterminated {what} at offset {pos}: {sql[pos : pos + 30]!r}")
        if kind != "ws":
            yield Token(kind, m.group(), pos)
        pos = m.end()


def tokenize(sql: str) -> list[Token]:
    """Every token of ``sql`` (see iter_tokens)."""
    return list(iter_tokens(sql))


# White space and comments; possessive, so a long run keeps no backtracking state.
_SPACE = re.compile(r"(?:\s+|--[^\n]*|/\*(?:.*?\*/|.*))*+", re.DOTALL)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Statements that begin, end or need to be outside a transaction (SQLite
# refuses them inside one, or they end it): never wrapped in one.
TRANSACTION_CONTROL = frozenset(
    {
        "BEGIN",
        "COMMIT",
        "END",
        "ROLLBACK",
        "SAVEPOINT",
        "RELEASE",
        "VACUUM",
        "PRAGMA",
        "ATTACH",
        "DETACH",
    }
)
# Highest ?NNN / $n: SQLite's default SQLITE_LIMIT_VARIABLE_NUMBER (a Bind
# message cannot carry more than 32767 values anyway).
MAX_PLACEHOLDER = 32766


# Clients send the same statements again and again, and several layers ask
# for their first words: remembered for texts up to this long.
_CACHED_TEXT = 4096


def keywords(sql: str, n: int) -> list[str]:
    """The first ``n`` words of a statement, upper case (comments skipped),
    in one linear pass."""
    if len(sql) <= _CACHED_TEXT:
        return list(_cached_keywords(sql, n))
    return _keywords(sql, n)


@functools.lru_cache(maxsize=4096)
def _cached_keywords(sql: str, n: int) -> tuple[str, ...]:
    return tuple(_keywords(sql, n))


def _keywords(sql: str, n: int) -> list[str]:
    m = _SPACE.match(sql, 0)
    pos = m.end() if m else 0
    words: list[str] = []
    while len(words) < n:
        w = _WORD.match(sql, pos)
        if w is None:
            break
        words.append(w.group().upper())
        m = _SPACE.match(sql, w.end())
        pos = m.end() if m else w.end()
    return words


# split_statements ends a statement where sqlite3_complete() would: it runs
# SQLite's own state machine (complete.c), so CREATE TRIGGER ... BEGIN ...;
# END stays one statement, over one scan of the text. Token classes:
_SEMI, _WS, _OTHER, _EXPLAIN, _CREATE, _TEMP, _TRIGGER, _END = range(8)
_KEYWORDS = {
    "EXPLAIN": _EXPLAIN,
    "CREATE": _CREATE,
    "TEMP": _TEMP,
    "TEMPORARY": _TEMP,
    "TRIGGER": _TRIGGER,
    "END": _END,
}
# state -> token class -> state; the statement is complete in state 1.
_TRANSITIONS = (
    (1, 0, 2, 3, 4, 2, 2, 2),  # 0 nothing yet
    (1, 1, 2, 3, 4, 2, 2, 2),  # 1 complete
    (1, 2, 2, 2, 2, 2, 2, 2),  # 2 a statement
    (1, 3, 3, 2, 4, 2, 2, 2),  # 3 EXPLAIN
    (1, 4, 2, 2, 2, 4, 5, 2),  # 4 CREATE [TEMP]
    (6, 5, 5, 5, 5, 5, 5, 5),  # 5 in a trigger
    (6, 6, 5, 5, 5, 5, 5, 7),  # 6 a trigger's ;
    (1, 7, 5, 5, 5, 5, 5, 5),  # 7 a trigger's END
)
_SCAN = re.compile(
    r"""
    (?P<semi>;)
  | (?P<blank>[ \t\n\r\f]++|--[^\n]*+|/\*.*?\*/)
  | (?P<quoted>'[^']*+'|"[^"]*+"|`[^`]*+`|\[[^\]]*+\]|\$(?P<tag>[A-Za-z_]*+)\$.*?\$(?P=tag)\$)
  | (?P<open>/\*|['"`\[]|\$[A-Za-z_]*+\$)
  | (?P<word>(?:[0-9A-Za-z_\x80-\U0010ffff]|\$(?![A-Za-z_]*+\$))++)
  | (?P<other>[^;'"`\[$/\-\s0-9A-Za-z_\x80-\U0010ffff]++|.)
    """,
    re.VERBOSE | re.DOTALL,
)
# In states 2 and 5 nothing but ; changes the state: skip to what may start
# a ;, a quote, a comment or a dollar quote.
_SKIP = re.compile(r"[^;'\"`\[$/-]++")
# White space to the tokenizer (a statement starts after it) that
# sqlite3_complete counts as part of a word or as punctuation.
_NOT_SPACE = re.compile(r"\S")


def split_statements(sql: str) -> list[str]:
    """Split a script at top-level semicolons (see _split_statements)."""
    if len(sql) <= _CACHED_TEXT:
        return list(_cached_split(sql))
    return _split_statements(sql)


@functools.lru_cache(maxsize=2048)
def _cached_split(sql: str) -> tuple[str, ...]:
    return tuple(_split_statements(sql))


def _split_statements(sql: str) -> list[str]:
    """Split a script at top-level semicolons.

    Quotes, comments and ``$tag$`` bodies are skipped (an unterminated quote
    or comment runs to the end of the script, an unterminated ``$tag$`` body
    is a DdlError); a semicolon ends a statement where SQLite's
    sqlite3_complete would, with ``$tag$`` bodies taken as strings, so
    ``CREATE TRIGGER ... BEGIN ...; END`` stays together. Comments before a
    statement are dropped. One pass, no copy of the text but the statements.
    """
    _check_text(sql)
    statements = []
    state = 0
    first: int | None = None  # where the statement's first token is: comments before it go
    pos, end = 0, len(sql)
    while pos < end:
        if first is not None and (state == 2 or state == 5):
            skip = _SKIP.match(sql, pos)
            if skip is not None:
                pos = skip.end()
                if pos == end:
                    break
        m = _SCAN.match(sql, pos)
        assert m is not None  # <other> matches any character
        kind = m.lastgroup
        if kind == "semi":
            state = _TRANSITIONS[state][_SEMI]
            if state == 1:
                if first is not None:
                    statements.append(sql[first:pos].strip())
                state, first = 0, None
        elif kind == "blank":
            state = _TRANSITIONS[state][_WS]
        elif kind == "open":
            if m.group()[0] == "$":
                raise DdlError(f"unterminated {m.group()} body at offset {pos}")
            if first is None:
                first = pos
            break  # sqlite3_complete finds no end after it
        else:
            token = _OTHER
            if kind == "word" and m.end() - pos <= 9:  # no copy of a long word
                token = _KEYWORDS.get(m.group().upper(), _OTHER)
            state = _TRANSITIONS[state][token]
            if first is None:
                visible = _NOT_SPACE.search(sql, pos, m.end())
                if visible is not None:
                    first = visible.start()
        pos = m.end()
    if first is not None:
        statements.append(sql[first:].strip())
    return statements


# --- statements -------------------------------------------------------------


@dataclass(frozen=True)
class CreateProcedure:
    name: str
    signature: Signature | None
    wasm: bytes
    replace: bool = False
    capabilities: tuple[str, ...] = ()
    limit_overrides: dict[str, Any] = field(default_factory=dict)
    export: str | None = None
    # SingleStore's CREATE FUNCTION ... AS WASM: its ABI ("basic" or
    # "singlestore", the wit-bindgen 0.2 canonical ABI) and WIT text.
    abi: str | None = None
    wit: str | None = None


@dataclass(frozen=True)
class CreateAggregate:
    """SingleStore's CREATE AGGREGATE ... AS WASM (docs/singlestore.md): the
    module's exports that make up the aggregate, by role."""

    name: str
    params: tuple[SqlType, ...]
    returns: SqlType
    state: SqlType | None  # None: WITH STATE HANDLE
    wasm: bytes
    roles: dict[str, str]
    replace: bool = False
    abi: str = "singlestore"
    wit: str | None = None
    limit_overrides: dict[str, Any] = field(default_factory=dict)


AGGREGATE_ROLES = ("initialize", "iterate", "merge", "terminate")
AGGREGATE_OPTIONAL_ROLES = ("serialize", "deserialize", "copymerge", "clone", "destroy")


@dataclass(frozen=True)
class AlterVersion:
    name: str
    version: int
    wasm: bytes


@dataclass(frozen=True)
class UseVersion:
    name: str
    version: int


@dataclass(frozen=True)
class DropProcedure:
    name: str
    if_exists: bool = False


@dataclass(frozen=True)
class Call:
    name: str
    args_sql: str


@dataclass(frozen=True)
class CreateExtension:
    """CREATE EXTENSION name FROM {'archive' | LOCAL INFILE 'archive' | BASE64
    '...'} [KEY 'public key']: see archive.py (and, for SingleStore's plain
    tar archives, docs/singlestore.md)."""

    name: str
    path: Path | None
    key: str | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class DropExtension:
    name: str
    if_exists: bool = False


@dataclass(frozen=True)
class CreatePlugin:
    """CREATE [OR REPLACE] PLUGIN (docs/plugins.md §5)."""

    name: str
    wasm: bytes
    replace: bool = False
    priority: int = 100
    enabled: bool = True
    hooks: tuple[str, ...] | None = None
    capabilities: tuple[str, ...] = ()
    limit_overrides: dict[str, Any] = field(default_factory=dict)
    config: str = "{}"


@dataclass(frozen=True)
class AlterPlugin:
    """ALTER PLUGIN: ENABLE, DISABLE, PRIORITY n, or the A/B candidate:
    CANDIDATE PERCENT n [AS $wasm$...$wasm$], PROMOTE CANDIDATE, DROP CANDIDATE."""

    name: str
    enabled: bool | None = None
    priority: int | None = None
    candidate_percent: int | None = None
    candidate_wasm: bytes | None = None
    candidate: str | None = None  # "promote" or "drop"


@dataclass(frozen=True)
class DropPlugin:
    name: str
    if_exists: bool = False


@dataclass(frozen=True)
class ShowPlugins:
    pass


@dataclass(frozen=True)
class ShowExtensions:
    pass


Statement = (
    CreateProcedure
    | CreateAggregate
    | AlterVersion
    | UseVersion
    | DropProcedure
    | Call
    | CreateExtension
    | DropExtension
    | CreatePlugin
    | AlterPlugin
    | DropPlugin
    | ShowPlugins
    | ShowExtensions
)
PLUGIN_STATEMENTS = (CreatePlugin, AlterPlugin, DropPlugin, ShowPlugins)

_LEADS = re.compile(
    r"^\s*(?:CREATE\s+(?:OR\s+REPLACE\s+)?PROCEDURE|ALTER\s+PROCEDURE|DROP\s+PROCEDURE|CALL"
    r"|CREATE\s+EXTENSION|DROP\s+EXTENSION"
    r"|CREATE\s+(?:OR\s+REPLACE\s+)?PLUGIN|ALTER\s+PLUGIN|DROP\s+PLUGIN|SHOW\s+PLUGINS"
    r"|CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(?:[^;]*?)\bAS\s+WASM"
    r"|SHOW\s+EXTENSIONS|DROP\s+FUNCTION|DROP\s+AGGREGATE"
    r"|CREATE\s+(?:OR\s+REPLACE\s+)?AGGREGATE\s+(?:[^;]*?)\bAS\s+WASM)\b",
    re.IGNORECASE,
)

# Reads the module a body names (``file://...`` or base64) into bytes.
BodyLoader = Callable[[str], bytes]


def parse(
    sql: str, base_dir: Path | None = None, loader: BodyLoader | None = None
) -> Statement | None:
    """Parse ``sql`` if it is procedure DDL or CALL; ``None`` means plain SQL.

    ``loader`` replaces the default reading of module bodies: an extension's
    install script may only name files inside its own archive.
    """
    _check_text(sql)
    if not _LEADS.match(sql):
        return None
    return _Parser(sql, base_dir or Path.cwd(), loader).statement()


# The largest version number: far enough below 2**63 that the registry's
# next version (the largest + 1) always fits.
MAX_VERSION = 2**62


def _number(text: str) -> int | float:
    """A number token's value. An integer of more than 19 digits is past
    every maximum: it is taken as MAX_INTEGER + 1 rather than converted."""
    if "." in text:
        return float(text)
    digits = text.lstrip("0")
    return int(digits or "0") if len(digits) <= 19 else MAX_INTEGER + 1


class _Parser:
    def __init__(self, sql: str, base_dir: Path, loader: BodyLoader | None = None) -> None:
        self.loader = loader
        self.sql = sql
        # Tokens are read as far as the grammar looks: CALL's arguments, for
        # one, are never tokenized here.
        self._rest = (t for t in iter_tokens(sql) if t.text != ";")
        self.tokens: list[Token] = []
        self.i = 0
        self.base_dir = base_dir

    # -- token helpers ----------------------------------------------------------

    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        while len(self.tokens) <= j:
            tok = next(self._rest, None)
            if tok is None:
                return None
            self.tokens.append(tok)
        return self.tokens[j]

    def at(self, *words: str) -> bool:
        return all((t := self.peek(k)) is not None and t.upper == w for k, w in enumerate(words))

    def accept(self, *words: str) -> bool:
        if self.at(*words):
            self.i += len(words)
            return True
        return False

    def expect(self, *words: str) -> None:
        if not self.accept(*words):
            self.fail(f"expected {' '.join(words)}")

    def next(self, what: str) -> Token:
        tok = self.peek()
        if tok is None:
            self.fail(f"expected {what}, found the end of the statement")
        self.i += 1
        return tok

    def fail(self, message: str) -> NoReturn:
        tok = self.peek()
        where = f"near {tok.text[:40]!r} (offset {tok.pos})" if tok else "at the end"
        raise DdlError(f"{message} {where}")

    def ident(self, what: str) -> str:
        tok = self.next(what)
        if tok.kind == "word":
            return tok.text
        if tok.kind == "qident":
            return tok.text[1:-1]
        self.i -= 1
        self.fail(f"expected {what}")

    def integer(self, what: str, maximum: int = MAX_INTEGER) -> int:
        tok = self.next(what)
        if tok.kind != "number" or "." in tok.text:
            self.i -= 1
            self.fail(f"expected {what} (a whole number)")
        value = int(_number(tok.text))
        if value > maximum:
            self.i -= 1
            self.fail(f"{what} is too large (at most {maximum})")
        return value

    def string(self, what: str) -> str:
        tok = self.next(what)
        if tok.kind != "string":
            self.i -= 1
            self.fail(f"expected {what} as a quoted string")
        return tok.text[1:-1].replace("''", "'")

    def end(self) -> None:
        if self.peek() is not None:
            self.fail("unexpected text")

    # -- grammar ----------------------------------------------------------------

    def statement(self) -> Statement:
        if self.accept("CALL"):
            return self.call()
        if self.accept("SHOW", "PLUGINS"):
            self.end()
            return ShowPlugins()
        if self.accept("DROP", "PLUGIN"):
            if_exists = self.accept("IF", "EXISTS")
            name = self.ident("a plugin name")
            self.end()
            return DropPlugin(name, if_exists)
        if self.accept("ALTER", "PLUGIN"):
            name = self.ident("a plugin name")
            if self.accept("ENABLE"):
                self.end()
                return AlterPlugin(name, enabled=True)
            if self.accept("DISABLE"):
                self.end()
                return AlterPlugin(name, enabled=False)
            if self.accept("CANDIDATE"):
                self.expect("PERCENT")
                percent = self.integer("a percentage of sessions", maximum=100)
                wasm = self.body() if self.accept("AS") else None
                self.end()
                return AlterPlugin(name, candidate_percent=percent, candidate_wasm=wasm)
            if self.accept("PROMOTE", "CANDIDATE"):
                self.end()
                return AlterPlugin(name, candidate="promote")
            if self.accept("DROP", "CANDIDATE"):
                self.end()
                return AlterPlugin(name, candidate="drop")
            self.expect("PRIORITY")
            priority = self.integer("a priority")
            self.end()
            return AlterPlugin(name, priority=priority)
        if self.accept("SHOW", "EXTENSIONS"):
            self.end()
            return ShowExtensions()
        if self.at("CREATE", "FUNCTION") or self.at("CREATE", "OR", "REPLACE", "FUNCTION"):
            self.expect("CREATE")
            replace = self.accept("OR", "REPLACE")
            self.expect("FUNCTION")
            return self.create_function(replace)
        if self.at("CREATE", "PLUGIN") or self.at("CREATE", "OR", "REPLACE", "PLUGIN"):
            self.expect("CREATE")
            replace = self.accept("OR", "REPLACE")
            self.expect("PLUGIN")
            return self.create_plugin(replace)
        if self.accept("CREATE", "EXTENSION"):
            name = self.ident("an extension name")
            self.expect("FROM")
            if self.at("BASE64"):
                data = self.source("the archive")
                key = self.string("a public key") if self.accept("KEY") else None
                self.end()
                return CreateExtension(name, None, key, data)
            self.accept("LOCAL", "INFILE")
            path = Path(self.string("the archive path"))
            key = self.string("a public key") if self.accept("KEY") else None
            self.end()
            return CreateExtension(name, path if path.is_absolute() else self.base_dir / path, key)
        if self.accept("DROP", "EXTENSION"):
            if_exists = self.accept("IF", "EXISTS")
            name = self.ident("an extension name")
            self.end()
            return DropExtension(name, if_exists)
        if self.at("CREATE", "AGGREGATE") or self.at("CREATE", "OR", "REPLACE", "AGGREGATE"):
            self.expect("CREATE")
            replace = self.accept("OR", "REPLACE")
            self.expect("AGGREGATE")
            return self.create_aggregate(replace)
        if (
            self.accept("DROP", "PROCEDURE")
            or self.accept("DROP", "FUNCTION")
            or self.accept("DROP", "AGGREGATE")
        ):
            if_exists = self.accept("IF", "EXISTS")
            name = self.ident("a procedure name")
            self.end()
            return DropProcedure(name, if_exists)
        if self.accept("ALTER", "PROCEDURE"):
            name = self.ident("a procedure name")
            if self.accept("USE", "VERSION"):
                version = self.integer("a version number", MAX_VERSION)
                self.end()
                return UseVersion(name, version)
            self.expect("VERSION")
            version = self.integer("a version number", MAX_VERSION)
            if version < 1:
                self.fail("versions are numbered from 1")
            self.expect("AS")
            wasm = self.body()
            self.end()
            return AlterVersion(name, version, wasm)
        self.expect("CREATE")
        replace = self.accept("OR", "REPLACE")
        self.expect("PROCEDURE")
        return self.create(replace)

    def call(self) -> Call:
        name = self.ident("a procedure name")
        open_paren = self.peek()
        if open_paren is None or open_paren.text != "(":
            self.fail("expected ( after the procedure name")
        text = self.sql.rstrip().rstrip(";").rstrip()
        if not text.endswith(")"):
            raise DdlError("CALL must end with the closing ) of its arguments")
        return Call(name, text[open_paren.pos + 1 : -1])

    def create(self, replace: bool) -> CreateProcedure:
        name = self.ident("a procedure name")
        params: list[Column] | None = None
        if (tok := self.peek()) is not None and tok.text == "(":
            params = self.columns("parameter")
        returns: SqlType | None = None
        table: tuple[Column, ...] | None = None
        declared_returns = False
        language = None
        called_on_null = False
        caps: tuple[str, ...] = ()
        limits: dict[str, Any] = {}
        export = None
        while not self.at("AS"):
            if self.accept("RETURNS", "NULL", "ON", "NULL", "INPUT") or self.accept("STRICT"):
                called_on_null = False
            elif self.accept("CALLED", "ON", "NULL", "INPUT"):
                called_on_null = True
            elif self.accept("RETURNS"):
                declared_returns = True
                if self.accept("TABLE"):
                    table = tuple(self.columns("column"))
                elif not self.accept("VOID"):
                    returns = self.type_name()
            elif self.accept("LANGUAGE"):
                language = self.ident("a language").lower()
                if language != "wasm":
                    self.i -= 1
                    self.fail("only LANGUAGE wasm is supported")
            elif self.accept("CAPABILITIES"):
                caps = tuple(self.string_list())
            elif self.accept("GROW", "TO"):
                amount = self.integer("a memory size")
                unit = self.ident("MB or KB").upper()
                scale = {"MB": MIB, "MIB": MIB, "KB": 1024, "KIB": 1024, "GB": 1024 * MIB}
                if unit not in scale:
                    self.i -= 1
                    self.fail("expected MB, KB or GB")
                if amount * scale[unit] > MAX_INTEGER:
                    self.i -= 2
                    self.fail(f"a memory size is at most {MAX_INTEGER} bytes")
                limits["memory_bytes"] = amount * scale[unit]
            elif self.accept("WITH"):
                limits.update(self.options())
            elif self.accept("USING", "EXPORT"):
                export = self.string("the export name")
            elif self.peek() is None:
                self.fail("expected AS $wasm$...$wasm$")
            else:
                self.fail("unexpected clause")
        self.expect("AS")
        wasm = self.body()
        self.end()
        if language is None:
            raise DdlError(f"CREATE PROCEDURE {name}: LANGUAGE wasm is required")
        signature = None
        if params is not None:
            if not declared_returns:
                raise DdlError(f"CREATE PROCEDURE {name}: a declared parameter list needs RETURNS")
            signature = Signature(tuple(params), returns, table, called_on_null)
        elif declared_returns:
            raise DdlError(
                f"CREATE PROCEDURE {name}: RETURNS needs a parameter list, e.g. {name}()"
            )
        return CreateProcedure(name, signature, wasm, replace, caps, limits, export)

    def create_function(self, replace: bool) -> CreateProcedure:
        """SingleStore's CREATE FUNCTION ... AS WASM (docs/singlestore.md)."""
        name = self.ident("a function name")
        params: list[Column] | None = None
        returns: SqlType | None = None
        table: tuple[Column, ...] | None = None
        if (tok := self.peek()) is not None and tok.text == "(":
            params = self.columns("parameter", nullable_marks=True)
            self.expect("RETURNS")
            if self.accept("TABLE"):
                table = tuple(self.columns("column", nullable_marks=True))
            else:
                returns = self.type_name()
                self.null_marks()
        elif self.accept("RETURNS"):
            self.fail("RETURNS needs a parameter list, e.g. f()")
        abi, limits, wasm, wit = self.as_wasm(f"CREATE FUNCTION {name}")
        export = self.string("the export name") if self.accept("USING", "EXPORT") else None
        self.end()
        if abi == "singlestore" and wit is None:
            raise DdlError(
                f"CREATE FUNCTION {name}: the canonical ABI needs WITH WIT FROM ... "
                "(or ABI BASIC for a numbers-only module)"
            )
        if abi == "basic" and params is None:
            raise DdlError(f"CREATE FUNCTION {name}: ABI BASIC needs a parameter list and RETURNS")
        signature = Signature(tuple(params), returns, table) if params is not None else None
        return CreateProcedure(name, signature, wasm, replace, (), limits, export, abi=abi, wit=wit)

    def create_aggregate(self, replace: bool) -> CreateAggregate:
        """SingleStore's Wasm UDAF: parameters are types only."""
        name = self.ident("an aggregate name")
        self.expect("(")
        params: list[SqlType] = []
        while not self.accept(")"):
            if params:
                self.expect(",")
            params.append(self.type_name())
            self.null_marks()
        self.expect("RETURNS")
        returns = self.type_name()
        self.null_marks()
        self.expect("WITH", "STATE")
        state = None if self.accept("HANDLE") else self.type_name()
        abi, limits, wasm, wit = self.as_wasm(f"CREATE AGGREGATE {name}")
        roles: dict[str, str] = {}
        while (tok := self.peek()) is not None and tok.upper != "DEFINER":
            role = self.ident("a role (INITIALIZE, ITERATE, ...)").lower()
            if role not in AGGREGATE_ROLES + AGGREGATE_OPTIONAL_ROLES:
                self.i -= 1
                self.fail("expected INITIALIZE, ITERATE, MERGE, TERMINATE, SERIALIZE, ... WITH")
            if role in roles:
                self.i -= 1
                self.fail(f"{role.upper()} WITH is given twice")
            self.expect("WITH")
            roles[role] = self.ident("a function name")
        if self.accept("DEFINER"):  # SingleStore's DEFINER = 'user'@'host': no users here
            self.expect("=")
            while self.peek() is not None:
                self.i += 1
        self.end()
        missing = [r.upper() for r in AGGREGATE_ROLES if r not in roles]
        if missing:
            raise DdlError(f"CREATE AGGREGATE {name}: {', '.join(missing)} WITH ... is required")
        if abi == "singlestore" and wit is None:
            raise DdlError(f"CREATE AGGREGATE {name}: the canonical ABI needs WITH WIT FROM ...")
        return CreateAggregate(
            name, tuple(params), returns, state, wasm, roles, replace, abi, wit, limits
        )

    def as_wasm(self, what: str) -> tuple[str, dict[str, Any], bytes, str | None]:
        """AS WASM [ABI BASIC|CANONICAL] [GROW TO n] FROM src [WITH WIT FROM src]:
        the ABI, limits, module and WIT of SingleStore's CREATE FUNCTION and
        CREATE AGGREGATE."""
        self.expect("AS", "WASM")
        abi = "singlestore"
        if self.accept("ABI"):
            word = self.ident("BASIC or CANONICAL").upper()
            if word not in ("BASIC", "CANONICAL"):
                self.i -= 1
                self.fail("expected ABI BASIC or ABI CANONICAL")
            abi = "basic" if word == "BASIC" else "singlestore"
        limits: dict[str, Any] = {}
        if self.accept("GROW", "TO"):
            limits["memory_bytes"] = self.integer("a memory size in bytes")
        self.expect("FROM")
        wasm = self.source("the module")
        if wasm[:4] != WASM_MAGIC:
            raise DdlError(f"{what}: the module is not WebAssembly")
        wit: str | None = None
        if self.accept("WITH", "WIT", "FROM"):
            try:
                wit = self.source("the WIT").decode("utf-8")
            except UnicodeDecodeError:
                raise DdlError(f"{what}: the WIT is not UTF-8 text") from None
        return abi, limits, wasm, wit

    def source(self, what: str) -> bytes:
        """BASE64 '...' or LOCAL INFILE 'path' (relative to the script, or
        a member of the archive being installed)."""
        if self.accept("BASE64"):
            text = self.string(f"{what} as base64")
            try:
                return base64.b64decode("".join(text.split()), validate=True)
            except (binascii.Error, ValueError):
                raise DdlError(f"{what}: not valid base64") from None
        self.expect("LOCAL", "INFILE")
        path = self.string(f"the file of {what}")
        if self.loader is not None:
            return self.loader(f"file://{path}")
        target = Path(path) if Path(path).is_absolute() else self.base_dir / path
        try:
            return read_file(target, MAX_MODULE_BYTES)
        except OSError as exc:
            raise DdlError(f"cannot read {what} from {target}: {exc.strerror}") from None

    def null_marks(self) -> None:
        """SingleStore's NULL / NOT NULL after a type: nullability is the ABI's."""
        if not self.accept("NOT", "NULL"):
            self.accept("NULL")

    def create_plugin(self, replace: bool) -> CreatePlugin:
        name = self.ident("a plugin name")
        priority, enabled = 100, True
        hooks: tuple[str, ...] | None = None
        caps: tuple[str, ...] = ()
        limits: dict[str, Any] = {}
        config = "{}"
        while not self.at("AS"):
            if self.accept("PRIORITY"):
                priority = self.integer("a priority")
            elif self.accept("ENABLED"):
                enabled = True
            elif self.accept("DISABLED"):
                enabled = False
            elif self.accept("HOOKS"):
                hooks = tuple(self.string_list())
            elif self.accept("CAPABILITIES"):
                caps = tuple(self.string_list())
            elif self.accept("LIMITS") or self.accept("WITH"):
                limits.update(self.options())
            elif self.accept("CONFIG"):
                config = self.string("the config as a JSON object")
            elif self.peek() is None:
                self.fail("expected AS $wasm$...$wasm$")
            else:
                self.fail("unexpected clause")
        self.expect("AS")
        wasm = self.body()
        self.end()
        return CreatePlugin(name, wasm, replace, priority, enabled, hooks, caps, limits, config)

    def columns(self, what: str, nullable_marks: bool = False) -> list[Column]:
        self.expect("(")
        cols: list[Column] = []
        seen: set[str] = set()
        while not self.accept(")"):
            if cols:
                self.expect(",")
            name = self.ident(f"a {what} name")
            if name.lower() in seen:
                self.i -= 1
                self.fail(f"duplicate {what} {name}")
            seen.add(name.lower())
            cols.append(Column(name, self.type_name()))
            if nullable_marks:
                self.null_marks()
        return cols

    def type_name(self) -> SqlType:
        words = [self.ident("a type").upper()]
        if words[0] == "DOUBLE" and self.accept("PRECISION"):
            words.append("PRECISION")
        if self.accept("("):  # VARCHAR(255): the length is not enforced
            self.integer("a length")
            self.expect(")")
        try:
            return parse_type(" ".join(words))
        except InvalidArgument as exc:
            self.i -= 1
            self.fail(exc.message)

    def string_list(self) -> list[str]:
        self.expect("(")
        items: list[str] = []
        while not self.accept(")"):
            if items:
                self.expect(",")
            items.append(self.string("a capability"))
        return items

    def options(self) -> dict[str, Any]:
        self.expect("(")
        out: dict[str, Any] = {}
        while not self.accept(")"):
            if out:
                self.expect(",")
            key = self.ident("a limit name").lower()
            self.expect("=")
            tok = self.next("a number")
            if tok.kind != "number":
                self.i -= 1
                self.fail(f"limit {key} needs a number")
            value = _number(tok.text)
            problem = limit_problem(key, value)
            if problem is not None:
                self.i -= 1
                self.fail(problem)
            out[key] = value
        return out

    def body(self) -> bytes:
        tok = self.next("the module ($wasm$...$wasm$)")
        if tok.kind == "dollar":
            text = re.sub(r"^\$[A-Za-z_]*\$|\$[A-Za-z_]*\$$", "", tok.text)
        elif tok.kind == "string":
            text = tok.text[1:-1].replace("''", "'")
        else:
            self.i -= 1
            self.fail("expected the module as $wasm$...$wasm$")
        if self.loader is not None:
            return self.loader(text.strip())
        return load_body(text.strip(), self.base_dir)


def load_body(text: str, base_dir: Path) -> bytes:
    """The wasm bytes a DDL body names: ``file://path`` or base64."""
    if text.startswith("file://"):
        path = Path(text[len("file://") :])
        if not path.is_absolute():
            path = base_dir / path
        try:
            data = read_file(path, MAX_MODULE_BYTES)
        except OSError as exc:
            raise DdlError(f"cannot read module file {path}: {exc.strerror}") from None
    else:
        try:
            data = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise DdlError("the module body is neither file://path nor valid base64") from None
    if data[:4] != WASM_MAGIC:
        raise DdlError("the module body is not WebAssembly (no \\0asm header)")
    return data


def read_file(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``: anything else, or more than
    ``limit`` bytes, is an OSError, like a missing file (a FIFO would block
    the reader, a device such as /dev/zero never ends)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    with open(os.open(path, flags), "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes")
    return data
