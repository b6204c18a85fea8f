"""The security policy: resource limits and capabilities, and how they are enforced.

Limits are applied to each wasmtime store (memory, fuel, epoch deadline).
Capabilities are enforced by SQLite's authorizer while a procedure's own
statements are prepared, so a grant is checked on the tables a statement really
touches (through joins, subqueries, views and triggers), never by matching SQL
text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

import apsw

from .errors import InvalidArgument

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-call resource limits of a procedure. Every default lives here.

    memory_bytes
        Largest linear memory the guest may grow to (``GROW TO n MB`` in DDL).
    fuel
        Wasm fuel per call: roughly one unit per instruction executed. Makes
        runaway loops fail deterministically, well before the wall clock does.
    timeout_seconds
        Wall-clock deadline per call, enforced by epoch interruption, so host
        time (queries) counts too.
    pool_size
        Idle instances kept per procedure version for reuse.
    max_call_depth
        Nesting of procedure -> query -> procedure calls.
    """

    memory_bytes: int = 16 * MIB
    fuel: int = 2_000_000_000
    timeout_seconds: float = 10.0
    pool_size: int = 10
    max_call_depth: int = 8

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value <= 0:
                raise InvalidArgument(f"limit {name} must be positive, got {value}")

    def with_overrides(self, **overrides: Any) -> Limits:
        unknown = set(overrides) - set(asdict(self))
        if unknown:
            raise InvalidArgument(f"unknown limit(s): {', '.join(sorted(unknown))}")
        return replace(self, **overrides)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Limits:
        return cls().with_overrides(**data)


# --- capabilities -----------------------------------------------------------

# kind -> whether it takes a target (``read:orders``) or stands alone.
_KINDS: dict[str, bool] = {
    "read": True,  # SELECT from the table (``*``: every user table)
    "write": True,  # INSERT / UPDATE / DELETE on the table
    "ddl": True,  # CREATE / DROP / ALTER of the table, its indexes and triggers
    "call": True,  # call the named procedure from the procedure's SQL
    "transaction": False,  # begin-tx / commit-tx / rollback-tx
}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$|^\*$")
REGISTRY_PREFIX = "_heliosdb_"


@dataclass(frozen=True)
class Capabilities:
    """A validated set of capability grants such as ``read:customers``."""

    grants: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, items: Iterable[str]) -> Capabilities:
        grants = set()
        for raw in items:
            item = raw.strip()
            kind, _, target = item.partition(":")
            kind = kind.lower()
            if kind not in _KINDS:
                known = ", ".join(f"{k}:<name>" if t else k for k, t in _KINDS.items())
                raise InvalidArgument(f"unknown capability {raw!r} (known: {known})")
            if _KINDS[kind]:
                if not target or not _IDENT.match(target):
                    raise InvalidArgument(
                        f"capability {raw!r} needs a table or procedure name, e.g. {kind}:orders"
                    )
                if target.startswith(REGISTRY_PREFIX):
                    raise InvalidArgument(
                        f"capability {raw!r}: the procedure registry cannot be granted"
                    )
                grants.add(f"{kind}:{target.lower()}")
            else:
                if target:
                    raise InvalidArgument(f"capability {kind!r} takes no target")
                grants.add(kind)
        return cls(frozenset(grants))

    def allows(self, kind: str, target: str | None = None) -> bool:
        if target is None:
            return kind in self.grants
        target = target.lower()
        if target.startswith(REGISTRY_PREFIX):
            return False
        return f"{kind}:{target}" in self.grants or f"{kind}:*" in self.grants

    def sorted(self) -> list[str]:
        return sorted(self.grants)


_WRITE_ACTIONS = {apsw.SQLITE_INSERT, apsw.SQLITE_UPDATE, apsw.SQLITE_DELETE}
_DDL_ACTIONS = {
    getattr(apsw, name)
    for name in dir(apsw)
    if name.startswith(("SQLITE_CREATE_", "SQLITE_DROP_")) and isinstance(getattr(apsw, name), int)
} | {apsw.SQLITE_ALTER_TABLE, apsw.SQLITE_REINDEX, apsw.SQLITE_ANALYZE}
_ALWAYS_DENIED = {
    apsw.SQLITE_ATTACH: "ATTACH",
    apsw.SQLITE_DETACH: "DETACH",
    apsw.SQLITE_PRAGMA: "PRAGMA",
    apsw.SQLITE_TRANSACTION: "transaction statements (use begin-tx/commit-tx)",
    apsw.SQLITE_SAVEPOINT: "SAVEPOINT (use begin-tx/commit-tx)",
}

Authorizer = Callable[[int, str | None, str | None, str | None, str | None], int]


def make_authorizer(
    caps: Capabilities,
    *,
    read_only: bool,
    is_procedure: Callable[[str], bool],
    denied: list[str],
) -> Authorizer:
    """An SQLite authorizer that allows exactly what ``caps`` grants.

    The first missing capability is appended to ``denied`` so the host can
    report which grant was missing (SQLite itself only says "not authorized").
    """

    def deny(what: str) -> int:
        denied.append(what)
        return int(apsw.SQLITE_DENY)

    def authorize(
        action: int,
        p1: str | None,
        p2: str | None,
        _db: str | None,
        _trigger: str | None,
    ) -> int:
        if action == apsw.SQLITE_READ:
            if p1 and not caps.allows("read", p1):
                return deny(f"read:{p1}")
        elif action in _WRITE_ACTIONS:
            if read_only:
                return deny(
                    f"write:{p1} (the calling statement is itself writing, so "
                    "this call is read-only; call the procedure from SELECT or CALL)"
                )
            if p1 and not caps.allows("write", p1):
                return deny(f"write:{p1}")
        elif action in _DDL_ACTIONS:
            table = p2 if action in _INDEX_LIKE else p1
            if read_only or not table or not caps.allows("ddl", table):
                return deny(f"ddl:{table}")
        elif action in _ALWAYS_DENIED:
            return deny(_ALWAYS_DENIED[action])
        elif action == apsw.SQLITE_FUNCTION:
            name = (p2 or "").lower()
            if name == "load_extension":
                return deny("load_extension")
            if is_procedure(name) and not caps.allows("call", name):
                return deny(f"call:{name}")
        return int(apsw.SQLITE_OK)

    return authorize


# For these DDL actions SQLite passes the object name in p1 and its table in p2.
_INDEX_LIKE = {
    apsw.SQLITE_CREATE_INDEX,
    apsw.SQLITE_DROP_INDEX,
    apsw.SQLITE_CREATE_TRIGGER,
    apsw.SQLITE_DROP_TRIGGER,
    apsw.SQLITE_CREATE_TEMP_INDEX,
    apsw.SQLITE_DROP_TEMP_INDEX,
    apsw.SQLITE_CREATE_TEMP_TRIGGER,
    apsw.SQLITE_DROP_TEMP_TRIGGER,
}
