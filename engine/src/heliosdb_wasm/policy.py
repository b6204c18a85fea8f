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
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property
from typing import Any

import apsw

from . import _core
from .errors import InvalidArgument

MIB = 1024 * 1024
# The largest binary CREATE PROCEDURE accepts (a componentize-py component,
# CPython included, is about 18 MiB).
MAX_MODULE_BYTES = 128 * MIB
# The largest integer a limit (or any number DDL takes) may be: SQLite stores
# signed 64-bit integers, and wasmtime counts fuel and memory in 64 bits.
MAX_INTEGER = 2**63 - 1
# The largest float limit (timeout_seconds): a year, far from the 64-bit
# epoch deadline it becomes.
MAX_SECONDS = 365 * 24 * 3600.0


@dataclass(frozen=True)
class Limits:
    """Per-call resource limits of a procedure. Every default lives here;
    each can be overridden per procedure (``WITH (name = value)`` in DDL,
    ``limits`` in an extension manifest, ``GROW TO n MB`` for memory).

    memory_bytes
        Largest linear memory the guest may grow to.
    fuel
        Wasm fuel per call: roughly one unit per instruction executed. Makes
        runaway loops fail deterministically, well before the wall clock does.
    timeout_seconds
        Wall-clock deadline per call, enforced by epoch interruption in the
        guest and by an SQLite progress handler in the procedure's statements
        (a nested procedure's by the earlier of its and its caller's), so
        host time (queries, fetches) counts too.
    pool_size
        Idle instances kept per procedure version for reuse.
    max_call_depth
        Nesting of procedure -> query -> procedure calls.
    max_table_elements, max_tables, max_instances, max_memories
        What one instance may create: table slots, tables, (component) core
        instances and memories.
    max_arg_bytes, max_result_bytes
        Bytes passed in, and bytes handed back: a text, blob or JSON value
        its length, a number 8 (so neither is below 8), every cell of a
        table result.
    max_query_rows
        Rows one host query may return to the guest. Its text and blob bytes,
        plus 8 per cell, count against ``max_result_bytes`` as well.
    max_log_bytes
        Bytes the procedure may log in one call (stdout and stderr included).
    max_fetch_bytes
        Bytes of one HTTP response body (``network:`` capability).
    max_value_bytes
        Largest string or blob SQLite may build while one of the procedure's
        statements runs (SQLite's length limit: ``randomblob``, ``zeroblob``,
        ``group_concat``, ``printf``, a value read from a table, a row
        written), so such a statement cannot cost the host more memory than
        this per value. A nested procedure's statements get the smaller of
        its own and its caller's.
    """

    memory_bytes: int = 16 * MIB
    fuel: int = 2_000_000_000
    timeout_seconds: float = 10.0
    pool_size: int = 10
    max_call_depth: int = 8
    max_table_elements: int = 100_000
    max_tables: int = 10
    max_instances: int = 100
    max_memories: int = 4
    max_arg_bytes: int = 16 * MIB
    max_result_bytes: int = 16 * MIB
    max_query_rows: int = 100_000
    max_log_bytes: int = 1 * MIB
    max_fetch_bytes: int = 4 * MIB
    max_value_bytes: int = 16 * MIB

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            problem = limit_problem(f.name, value)
            if problem is not None:
                raise InvalidArgument(problem)
            if value <= 0:
                raise InvalidArgument(f"limit {f.name} must be positive, got {value}")

    def with_overrides(self, **overrides: Any) -> Limits:
        if not overrides:
            return self
        unknown = set(overrides) - {f.name for f in fields(self)}
        if unknown:
            raise InvalidArgument(f"unknown limit(s): {', '.join(sorted(unknown))}")
        return replace(self, **overrides)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Limits:
        return cls().with_overrides(**data)


# The kind of number each limit takes, as Limits declares it.
_LIMIT_KINDS = {f.name: type(f.default) for f in fields(Limits)}
LIMIT_NAMES = frozenset(_LIMIT_KINDS)


_PAYLOAD_LIMITS = frozenset({"max_arg_bytes", "max_result_bytes"})


def limit_problem(name: str, value: object) -> str | None:
    """What is wrong with ``value`` as limit ``name`` (None: nothing this
    knows of; Limits refuses unknown names and values that are not positive).
    Shared by Limits itself, ``WITH (...)`` and extension manifests."""
    kind = _LIMIT_KINDS.get(name)
    if kind is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"limit {name} needs a number"
    if kind is int and not isinstance(value, int):
        return f"limit {name} needs a whole number"
    if kind is int and value > MAX_INTEGER:
        return f"limit {name} is at most {MAX_INTEGER}"
    if name in _PAYLOAD_LIMITS and 0 < value < 8:
        # A number counts 8 bytes: a smaller limit would refuse every call
        # that passes or returns one.
        return f"limit {name} is at least 8 (one number), got {value}"
    if kind is float and not value <= MAX_SECONDS:  # also infinity and NaN
        return f"limit {name} is at most {MAX_SECONDS:.0f} (a year)"
    return None


# --- capabilities -----------------------------------------------------------

# The catalogue (docs/security.md). kind -> what its target is, or None when
# the capability stands alone.
_KINDS: dict[str, str | None] = {
    "read": "table",  # SELECT from the table (``*``: every user table)
    "write": "table",  # INSERT / UPDATE / DELETE on the table (``*``: every user table)
    "ddl": "table",  # CREATE / DROP / ALTER of the table, its indexes and triggers
    "call": "procedure",  # call the named procedure from the procedure's SQL
    "transaction": None,  # begin-tx / commit-tx / rollback-tx
    "network": "host",  # http-fetch to exactly this host (any port, http or https)
    "filesystem": "path",  # this host folder, preopened through WASI (":ro" or ":rw")
    "env": "variable",  # this host environment variable, visible through WASI
    "clock": None,  # now() and the WASI clocks (granted by default)
    "random": None,  # WASI randomness from the OS (else a fixed, seeded stream)
    "crypto": None,  # the digest / HMAC host functions
    "log": None,  # the procedure log (granted by default)
    "stdout": None,  # WASI stdout/stderr become log lines (else they are dropped)
}
# Granted to every procedure, listed or not.
DEFAULT_GRANTS = frozenset({"clock", "log"})
_TARGETS = {
    "table": re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$|^\*$"),
    "procedure": re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$"),
    "host": re.compile(
        r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"
    ),
    "variable": re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$"),
}
_EXAMPLES = {
    "table": "read:orders",
    "procedure": "call:calculate_discount",
    "host": "network:api.example.com",
    "path": "filesystem:/srv/data:ro",
    "variable": "env:TZ",
}
REGISTRY_PREFIX = "_heliosdb_"


@dataclass(frozen=True)
class FolderGrant:
    path: str
    writable: bool


@dataclass(frozen=True)
class Capabilities:
    """A validated set of capability grants such as ``read:customers``."""

    grants: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, items: Iterable[str]) -> Capabilities:
        grants = set()
        for raw in items:
            grants.add(_parse_one(raw))
        return cls(frozenset(grants))

    def allows(self, kind: str, target: str | None = None) -> bool:
        if target is None:
            return kind in self.grants or kind in DEFAULT_GRANTS
        if kind in ("read", "write", "ddl", "call"):
            target = target.lower()
            if target.startswith(REGISTRY_PREFIX):
                return False
            # The wildcard covers user tables, not SQLite's own (sqlite_master).
            wildcard = (
                kind in ("read", "write")
                and f"{kind}:*" in self.grants
                and not target.startswith("sqlite_")
            )
            return f"{kind}:{target}" in self.grants or wildcard
        if kind == "network":
            return f"network:{target.lower()}" in self.grants
        return f"{kind}:{target}" in self.grants

    def can_write(self) -> bool:
        """Whether any grant lets the procedure change the database."""
        return any(g.startswith(("write:", "ddl:")) or g == "transaction" for g in self.grants)

    def targets(self, kind: str) -> list[str]:
        prefix = kind + ":"
        return sorted(g[len(prefix) :] for g in self.grants if g.startswith(prefix))

    def folders(self) -> list[FolderGrant]:
        """The ``filesystem:`` grants."""
        out = []
        for target in self.targets("filesystem"):
            path, _, mode = target.rpartition(":")
            out.append(FolderGrant(path, mode == "rw"))
        return out

    def sorted(self) -> list[str]:
        return sorted(self.grants)

    @cached_property
    def core_grants(self) -> _core.Grants:
        """The grants as the core's authorizer takes them (made once)."""
        return _core.Grants(sorted(self.grants))


def _parse_one(raw: str) -> str:
    item = raw.strip()
    kind, sep, target = item.partition(":")
    kind = kind.lower()
    if kind not in _KINDS:
        known = ", ".join(f"{k}:<{t}>" if t else k for k, t in _KINDS.items())
        raise InvalidArgument(f"unknown capability {raw!r} (known: {known})")
    what = _KINDS[kind]
    if what is None:
        if sep:
            raise InvalidArgument(f"capability {kind!r} takes no target")
        return kind
    if not target:
        raise InvalidArgument(f"capability {raw!r} needs a {what}, e.g. {_EXAMPLES[what]}")
    if what == "path":
        return f"filesystem:{_folder(raw, target)}"
    if not _TARGETS[what].match(target):
        raise InvalidArgument(
            f"capability {raw!r}: {target!r} is not a valid {what}, e.g. {_EXAMPLES[what]}"
        )
    if target == "*" and kind not in ("read", "write"):
        raise InvalidArgument(f"capability {raw!r}: only read:* and write:* take a wildcard")
    if what in ("table", "procedure"):
        if target.startswith(REGISTRY_PREFIX):
            raise InvalidArgument(f"capability {raw!r}: the procedure registry cannot be granted")
        return f"{kind}:{target.lower()}"
    if what == "host":
        return f"network:{target.lower()}"
    return f"{kind}:{target}"


def _folder(raw: str, target: str) -> str:
    """``/path``, ``/path:ro`` or ``/path:rw`` -> normalized ``/path:ro|rw``."""
    path, mode = target, "ro"
    if target.endswith((":ro", ":rw")):
        path, mode = target[:-3], target[-2:]
    if not path.startswith("/") or "\x00" in path:
        raise InvalidArgument(f"capability {raw!r}: the folder must be an absolute path")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise InvalidArgument(f"capability {raw!r}: '.' and '..' are not allowed in the path")
    return "/" + "/".join(parts) + ":" + mode


_ALWAYS_DENIED = {
    apsw.SQLITE_ATTACH: "ATTACH",
    apsw.SQLITE_DETACH: "DETACH",
    apsw.SQLITE_PRAGMA: "PRAGMA",
    apsw.SQLITE_TRANSACTION: "transaction statements (use begin-tx/commit-tx)",
    apsw.SQLITE_SAVEPOINT: "SAVEPOINT (use begin-tx/commit-tx)",
}

Authorizer = Callable[[int, str | None, str | None, str | None, str | None], int]


def _denier(denied: list[str]) -> Callable[[str], int]:
    """SQLITE_DENY, noting what was denied: SQLite itself only says "not
    authorized", and the error should name the missing grant."""

    def deny(what: str) -> int:
        denied.append(what)
        return int(apsw.SQLITE_DENY)

    return deny


# PRAGMAs whose setting changes the file, its durability or its header for
# every other connection, or costs the whole process memory or threads: a
# wire client may read them but not set them.
SHARED_PRAGMAS = frozenset(
    {
        "application_id",
        "auto_vacuum",
        "busy_timeout",
        "cache_size",
        "cache_spill",
        "data_store_directory",
        "hard_heap_limit",
        "ignore_check_constraints",
        "journal_mode",
        "journal_size_limit",
        "locking_mode",
        "mmap_size",
        "page_size",
        "schema_version",
        "soft_heap_limit",
        "synchronous",
        "temp_store",
        "temp_store_directory",
        "threads",
        "trusted_schema",
        "user_version",
        "wal_autocheckpoint",
        "writable_schema",
    }
)


def _registry_access(action: int, p1: str | None, p2: str | None) -> str | None:
    """The engine table an action reads, writes or changes, if any: the
    core's rule (engine/core/src/policy.rs), which its own authorizer of
    procedures' statements and the connection's gate apply too."""
    return _core.registry_access(action, p1, p2)


def owner_authorizer(denied: list[str]) -> Authorizer:
    """The owner's own SQL (``Database.execute``): everything but changing
    the engine's tables, which only the engine's DDL writes (a procedure's
    capabilities live there). Reading them is the owner's right; the raw
    ``Database.conn`` stays unrestricted, like the file itself."""

    deny = _denier(denied)

    def authorize(
        action: int,
        p1: str | None,
        p2: str | None,
        _db: str | None,
        body: str | None,
    ) -> int:
        table = _registry_access(action, p1, p2)
        if table is not None:
            if body is not None:
                return deny(f"the engine's table {table} from the trigger or view {body}")
            if action != apsw.SQLITE_READ:
                return deny(f"changes to the engine's table {table} (use procedure DDL)")
        return int(apsw.SQLITE_OK)

    return authorize


_CREATES = {
    apsw.SQLITE_CREATE_TABLE,
    apsw.SQLITE_CREATE_VIEW,
    apsw.SQLITE_CREATE_TEMP_TABLE,
    apsw.SQLITE_CREATE_TEMP_VIEW,
    apsw.SQLITE_CREATE_VTABLE,
}


def client_authorizer(
    denied: list[str], *, allow_ddl: bool = False, reserved: frozenset[str] = frozenset()
) -> Authorizer:
    """What a remote client's own SQL may not do (``Database.serve_clients``):
    touch the engine's registry tables (procedures, plugins, modules), ATTACH
    or DETACH files, set the PRAGMAs every connection shares (journal mode,
    schema rules, heap limits), load extensions, or — unless ``allow_ddl`` —
    create triggers, which would run later with the rights of whoever writes
    the table. Everything else is the client's database to use; finer rules
    are the plugins' job."""

    deny = _denier(denied)

    def authorize(
        action: int,
        p1: str | None,
        p2: str | None,
        _db: str | None,
        _trigger: str | None,
    ) -> int:
        table = _registry_access(action, p1, p2)
        if table is not None:
            return deny(f"the engine's table {table}")
        if action in (apsw.SQLITE_ATTACH, apsw.SQLITE_DETACH):
            return deny(_ALWAYS_DENIED[action])
        if action == apsw.SQLITE_CREATE_TRIGGER and not allow_ddl:
            return deny("CREATE TRIGGER (start the server with --allow-ddl)")
        if action in _CREATES and (p1 or "").lower() in reserved:
            return deny(f"a table named {p1}, the name of a catalog relation")
        pragma = (p1 or "").lower() if action == apsw.SQLITE_PRAGMA else ""
        # Reading a shared setting is harmless; writable_schema is refused
        # outright, as before.
        if pragma in SHARED_PRAGMAS and (p2 is not None or pragma == "writable_schema"):
            return deny(f"PRAGMA {p1}")
        # A passive checkpoint waits for nobody; the others block every writer.
        if pragma == "wal_checkpoint" and p2 is not None and p2.lower() != "passive":
            return deny(f"PRAGMA wal_checkpoint({p2})")
        if action == apsw.SQLITE_FUNCTION and (p2 or "").lower() == "load_extension":
            return deny("load_extension")
        return int(apsw.SQLITE_OK)

    return authorize
