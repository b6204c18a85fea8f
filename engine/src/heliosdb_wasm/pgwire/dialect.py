"""SQL text as PostgreSQL clients write it: placeholders, transaction
statements, and the command tags PostgreSQL answers with."""

from __future__ import annotations

import re

from .. import ddl
from ..database import Result
from ..errors import DdlError
from .errors import WireError

# --- SQL text -------------------------------------------------------------------------

# Everything a scan of SQL text must step over whole, each one match whether it
# is terminated or runs to the end of the text, so that no scan ever comes
# back to it: quotes, comments and $tag$ bodies (none of them nest in SQLite).
# The scans below are linear in the text and keep no object per character or
# per token; the statement splitter (ddl) has its own.
OPAQUE = r"""
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
    (OPAQUE + r"| \$(?P<n>[0-9]+)(?P<fraction>\.[0-9])?").encode(), re.VERBOSE | re.DOTALL
)
_WORD_SCAN = re.compile(
    OPAQUE + r"| (?P<word>[A-Za-z_][A-Za-z0-9_]*) | (?P<paren>[()])", re.VERBOSE | re.DOTALL
)
# An SQL name as written: double-quoted (with "" inside) or bare.
IDENTIFIER = r'"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*'
TRANSACTION_VERBS = {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"}
# Statements a multi-statement simple query is not wrapped in a transaction
# around: they manage transactions themselves or cannot run inside one.
_NO_IMPLICIT = TRANSACTION_VERBS | ddl.TRANSACTION_CONTROL
_CREATE_MODIFIERS = {"OR", "REPLACE", "TEMP", "TEMPORARY", "UNIQUE", "VIRTUAL", "IF", "NOT"}
keywords = ddl.keywords


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


def identifier(text: str) -> str:
    """A name as PostgreSQL resolves it: unquoted, or folded to lower case."""
    text = text.strip()
    return text[1:-1].replace('""', '"') if text.startswith('"') else text.lower()


def quoted(name: str) -> str:
    """``name`` as a double-quoted identifier, whatever it holds."""
    return '"' + name.replace('"', '""') + '"'


def names(sql: str, n: int) -> list[str]:
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


def sqlite_transaction(sql: str) -> str:
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
    words = keywords(sql, 6)
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
    if verb == "TRUNCATE":
        return "TRUNCATE TABLE"
    if verb in ("SET", "RESET", "SHOW", "CALL", "SAVEPOINT", "RELEASE", "UNLISTEN"):
        return verb
    if verb == "CLOSE":
        return "CLOSE CURSOR ALL" if words[1:2] == ["ALL"] else "CLOSE CURSOR"
    if result.columns:
        return f"SELECT {len(result.rows)}"
    return verb or "OK"


def outside_implicit(sql: str) -> bool:
    """Whether a statement keeps a multi-statement query out of one transaction."""
    words = keywords(sql, 4)
    if not words:
        return False
    if words[0] in _NO_IMPLICIT or words[0] == "DEALLOCATE":
        return True
    # Procedure DDL also changes the Database's bindings in memory, which a
    # rollback of the implicit transaction would not undo.
    return words[0] in ("CREATE", "ALTER", "DROP") and bool(
        {"PROCEDURE", "EXTENSION"} & set(words[1:])
    )


def is_deallocate(sql: str) -> bool:
    words = keywords(sql, 1)
    return bool(words) and words[0] == "DEALLOCATE"
