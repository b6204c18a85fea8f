"""SQL-level prepared statements and cursors: ``PREPARE``/``EXECUTE`` and
``DECLARE``/``FETCH``/``MOVE``/``CLOSE``.

They are the connection's state, as the protocol's statements and portals
are (``Connection`` keeps both in one namespace each, as PostgreSQL does).
A cursor's query runs when it is declared and its rows are held until it is
closed, counted against ``max_buffer_bytes``: SQLite cannot keep a statement
stepping between the client's FETCHes while other statements run on the same
connection. Without ``WITH HOLD`` a cursor ends with its transaction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..database import Result
from ..values import SqlValue
from .dialect import IDENTIFIER, identifier
from .errors import WireError

_NAME = rf"(?P<name>{IDENTIFIER})"
_PREPARE = re.compile(
    rf"\s*PREPARE\s+{_NAME}\s*(?:\((?P<types>[^)]*)\))?\s*AS\s+(?P<body>.+)",
    re.IGNORECASE | re.DOTALL,
)
_EXECUTE = re.compile(
    rf"\s*EXECUTE\s+{_NAME}\s*(?:\((?P<args>.*)\))?\s*;?\s*", re.IGNORECASE | re.DOTALL
)
_DECLARE = re.compile(
    rf"\s*DECLARE\s+{_NAME}\s+"
    r"(?:(?:BINARY|INSENSITIVE|ASENSITIVE|NO\s+SCROLL|SCROLL)\s+)*"
    r"CURSOR\s+(?:(?P<hold>WITH|WITHOUT)\s+HOLD\s+)?FOR\s+(?P<query>.+)",
    re.IGNORECASE | re.DOTALL,
)
_DIRECTION = (
    r"(?P<direction>NEXT|PRIOR|FIRST|LAST|ALL|(?:ABSOLUTE|RELATIVE)\s+[+-]?\d+"
    r"|(?:FORWARD|BACKWARD)(?:\s+(?:ALL|[+-]?\d+))?|[+-]?\d+)"
)
_FETCH = re.compile(
    rf"\s*(?P<verb>FETCH|MOVE)\s+(?:{_DIRECTION}\s+)?(?:(?:FROM|IN)\s+)?{_NAME}\s*;?\s*",
    re.IGNORECASE | re.DOTALL,
)
_CLOSE = re.compile(rf"\s*CLOSE\s+(?:(?P<all>ALL)|{_NAME})\s*;?\s*", re.IGNORECASE | re.DOTALL)
_ALL = 2**62


def _match(pattern: re.Pattern[str], sql: str, usage: str) -> re.Match[str]:
    m = pattern.fullmatch(sql)
    if m is None:
        raise WireError("42601", f"syntax error: expected {usage}")
    return m


@dataclass(frozen=True)
class Prepare:
    name: str
    types: list[str]
    body: str


def parse_prepare(sql: str) -> Prepare:
    m = _match(_PREPARE, sql, "PREPARE name [(type, ...)] AS statement")
    types = [t.strip() for t in (m.group("types") or "").split(",") if t.strip()]
    return Prepare(identifier(m.group("name")), types, m.group("body").strip().rstrip(";"))


def parse_execute(sql: str) -> tuple[str, str | None]:
    """The statement's name and its argument list's text (None: no arguments)."""
    m = _match(_EXECUTE, sql, "EXECUTE name [(argument, ...)]")
    args = m.group("args")
    return identifier(m.group("name")), args if args is not None and args.strip() else None


@dataclass(frozen=True)
class Declare:
    name: str
    hold: bool
    query: str


def parse_declare(sql: str) -> Declare:
    m = _match(_DECLARE, sql, "DECLARE name [options] CURSOR [WITH HOLD] FOR query")
    hold = (m.group("hold") or "").upper() == "WITH"
    return Declare(identifier(m.group("name")), hold, m.group("query").strip().rstrip(";"))


def parse_close(sql: str) -> str | None:
    """The cursor CLOSE names, or None for CLOSE ALL."""
    m = _match(_CLOSE, sql, "CLOSE name | ALL")
    return None if m.group("all") else identifier(m.group("name"))


@dataclass(frozen=True)
class Fetch:
    verb: str  # FETCH or MOVE
    direction: list[str]
    name: str


def parse_fetch(sql: str) -> Fetch:
    m = _match(_FETCH, sql, "FETCH [direction] [FROM] name")
    direction = (m.group("direction") or "NEXT").upper().split()
    return Fetch(m.group("verb").upper(), direction, identifier(m.group("name")))


@dataclass
class Cursor:
    result: Result
    oids: list[int]  # its columns' types, as Describe told them
    hold: bool
    size: int
    position: int = 0  # 0: before the first row; len + 1: after the last

    def fetch(self, fetch: Fetch) -> tuple[str, Result]:
        """FETCH or MOVE: the command tag and the rows (none for MOVE)."""
        rows = self._move(fetch.direction)
        result = Result(self.result.columns, rows if fetch.verb == "FETCH" else [])
        return f"{fetch.verb} {len(rows)}", result

    def _move(self, words: Sequence[str]) -> list[tuple[SqlValue, ...]]:
        kind, count = words[0], words[1] if len(words) > 1 else None
        if kind in ("FIRST", "LAST", "ABSOLUTE"):
            n = {"FIRST": 1, "LAST": -1}.get(kind) or int(count or 0)
            return self._at(n if n >= 0 else len(self.result.rows) + 1 + n)
        if kind == "RELATIVE":
            return self._at(self.position + int(count or 0))
        if kind == "PRIOR":
            return self._step(-1)
        if kind in ("FORWARD", "BACKWARD"):
            n = 1 if count is None else _ALL if count == "ALL" else int(count)
            return self._step(-n if kind == "BACKWARD" else n)
        if kind == "ALL":
            return self._step(_ALL)
        if kind == "NEXT":
            return self._step(1)
        return self._step(int(kind))

    def _current(self) -> list[tuple[SqlValue, ...]]:
        rows = self.result.rows
        return [rows[self.position - 1]] if 1 <= self.position <= len(rows) else []

    def _at(self, target: int) -> list[tuple[SqlValue, ...]]:
        """Onto one row (ABSOLUTE, RELATIVE): that row, if there is one there."""
        self.position = min(max(target, 0), len(self.result.rows) + 1)
        return self._current()

    def _step(self, n: int) -> list[tuple[SqlValue, ...]]:
        rows, p = self.result.rows, self.position
        if n >= 0:
            taken = rows[p : p + n] if p < len(rows) else []
            self.position = min(p + n, len(rows) + 1)
            return list(taken)
        start = max(p - 1 + n, 0)  # the rows before the current one, nearest first
        taken = rows[start : max(p - 1, 0)][::-1]
        self.position = max(p + n, 0)
        return list(taken)
