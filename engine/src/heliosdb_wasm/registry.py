"""The versioned procedure registry, stored inside the database file itself.

Modules are stored once by SHA-256, so a backup of the file carries every
version of every procedure. Each procedure has numbered versions (signature,
ABI, export, capabilities, limit overrides, module) and exactly one active
version. All writes here run inside the caller's savepoint, so a failed DDL
statement leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import apsw

from .errors import RegistryError
from .policy import Capabilities, Limits
from .values import Signature

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS _heliosdb_meta(
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _heliosdb_modules(
    sha256 TEXT PRIMARY KEY,
    abi TEXT NOT NULL CHECK (abi IN ('basic', 'component')),
    size INTEGER NOT NULL,
    wasm BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS _heliosdb_procedures(
    name TEXT PRIMARY KEY COLLATE NOCASE,
    active_version INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS _heliosdb_versions(
    name TEXT NOT NULL COLLATE NOCASE
        REFERENCES _heliosdb_procedures(name) ON DELETE CASCADE,
    version INTEGER NOT NULL CHECK (version > 0),
    module_sha256 TEXT NOT NULL REFERENCES _heliosdb_modules(sha256),
    abi TEXT NOT NULL,
    export TEXT NOT NULL,
    signature TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    limits TEXT NOT NULL,
    created_at REAL NOT NULL,
    wit TEXT,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS _heliosdb_plugins(
    name TEXT PRIMARY KEY COLLATE NOCASE,
    version INTEGER NOT NULL,
    spec TEXT NOT NULL,
    wasm BLOB NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS _heliosdb_extensions(
    name TEXT NOT NULL COLLATE NOCASE,
    version TEXT NOT NULL,
    manifest TEXT NOT NULL,
    archive_sha256 TEXT NOT NULL,
    signed_by TEXT,
    procedures TEXT NOT NULL,
    installed_at REAL NOT NULL,
    PRIMARY KEY (name, version)
);
"""


@dataclass(frozen=True)
class ProcedureVersion:
    """One registered version of a procedure."""

    name: str
    version: int
    abi: str
    export: str
    signature: Signature
    capabilities: Capabilities
    limit_overrides: dict[str, Any]
    module_sha256: str
    created_at: float
    active: bool = False
    # The WIT of a SingleStore canonical-ABI function (abi "singlestore").
    wit: str | None = None

    def limits(self, defaults: Limits) -> Limits:
        return defaults.with_overrides(**self.limit_overrides)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Registry:
    """Reads and writes the registry tables on one connection."""

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn

    def ensure_schema(self) -> None:
        cur = self.conn.cursor()
        cur.execute(_SCHEMA)
        row = self._one("SELECT value FROM _heliosdb_meta WHERE key = 'schema_version'")
        if row is None:
            cur.execute(
                "INSERT INTO _heliosdb_meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        elif int(row[0]) < SCHEMA_VERSION:
            self._migrate(int(row[0]))
        elif int(row[0]) > SCHEMA_VERSION:
            raise RegistryError(
                f"the database's registry is schema version {row[0]}; this engine "
                f"understands up to {SCHEMA_VERSION}",
                code="schema-too-new",
            )

    def _migrate(self, found: int) -> None:
        """Brings an older registry up to SCHEMA_VERSION, in place."""
        cur = self.conn.cursor()
        if found < 2:  # 2: the WIT of SingleStore canonical-ABI functions
            columns = {r[1] for r in cur.execute("PRAGMA table_info(_heliosdb_versions)")}
            if "wit" not in columns:
                cur.execute("ALTER TABLE _heliosdb_versions ADD COLUMN wit TEXT")
        cur.execute(
            "UPDATE _heliosdb_meta SET value = ? WHERE key = 'schema_version'",
            (str(SCHEMA_VERSION),),
        )

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        for row in self.conn.cursor().execute(sql, params):
            return tuple(row)
        return None

    # -- modules -------------------------------------------------------------

    def store_module(self, wasm: bytes, abi: str, digest: str | None = None) -> str:
        """Store a module once; ``digest`` is its SHA-256 when the caller has it
        already (an 18 MB component takes ~15 ms to hash)."""
        digest = digest or sha256_hex(wasm)
        self.conn.cursor().execute(
            "INSERT OR IGNORE INTO _heliosdb_modules(sha256, abi, size, wasm, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (digest, abi, len(wasm), wasm, time.time()),
        )
        return digest

    def module_bytes(self, sha256: str) -> bytes:
        # CAST: a damaged row may hold TEXT, which must be reported as corrupt,
        # not fail to decode.
        row = self._one(
            "SELECT CAST(wasm AS BLOB) FROM _heliosdb_modules WHERE sha256 = ?", (sha256,)
        )
        if row is None:
            raise RegistryError(
                f"module {sha256[:12]} is missing from the registry", code="not-found"
            )
        data = bytes(row[0])
        if sha256_hex(data) != sha256:
            raise RegistryError(
                f"module {sha256[:12]} is corrupt: its bytes no longer match its hash",
                code="corrupt",
            )
        return data

    def _collect_modules(self) -> None:
        self.conn.cursor().execute(
            "DELETE FROM _heliosdb_modules WHERE sha256 NOT IN "
            "(SELECT module_sha256 FROM _heliosdb_versions)"
        )

    # -- query-hook plugins (created with SQL; see plugins.py) -----------------

    def plugin_rows(self) -> list[tuple[str, int, dict[str, Any], bytes]]:
        """(name, version, spec as JSON, module) of every SQL-created plugin."""
        rows = self.conn.cursor().execute(
            "SELECT name, version, spec, wasm FROM _heliosdb_plugins ORDER BY name"
        )
        return [(n, int(v), json.loads(spec), bytes(w)) for n, v, spec, w in rows]

    def plugin_row(self, name: str) -> tuple[int, dict[str, Any]] | None:
        row = self._one("SELECT version, spec FROM _heliosdb_plugins WHERE name = ?", (name,))
        return None if row is None else (int(row[0]), json.loads(row[1]))

    def plugins_stamp(self) -> str:
        """Changes whenever a plugin is created, altered or dropped."""
        row = self._one("SELECT group_concat(name || ':' || version) FROM _heliosdb_plugins")
        return str(row[0]) if row and row[0] is not None else ""

    def put_plugin(self, name: str, spec: dict[str, Any], wasm: bytes) -> int:
        found = self.plugin_row(name)
        version = 1 if found is None else found[0] + 1
        self.conn.cursor().execute(
            "INSERT OR REPLACE INTO _heliosdb_plugins(name, version, spec, wasm, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (name, version, json.dumps(spec, sort_keys=True), wasm, time.time()),
        )
        return version

    def alter_plugin(self, name: str, changes: dict[str, Any]) -> None:
        found = self.plugin_row(name)
        if found is None:
            raise RegistryError(f"no plugin named {name}", code="not-found", procedure=name)
        version, spec = found
        self.conn.cursor().execute(
            "UPDATE _heliosdb_plugins SET version = ?, spec = ?, updated_at = ? WHERE name = ?",
            (version + 1, json.dumps({**spec, **changes}, sort_keys=True), time.time(), name),
        )

    def drop_plugin(self, name: str) -> None:
        if self.plugin_row(name) is None:
            raise RegistryError(f"no plugin named {name}", code="not-found", procedure=name)
        self.conn.cursor().execute("DELETE FROM _heliosdb_plugins WHERE name = ?", (name,))

    # -- procedures ----------------------------------------------------------

    def exists(self, name: str) -> bool:
        return self._one("SELECT 1 FROM _heliosdb_procedures WHERE name = ?", (name,)) is not None

    def names(self) -> list[str]:
        return [
            str(r[0])
            for r in self.conn.cursor().execute(
                "SELECT name FROM _heliosdb_procedures ORDER BY name"
            )
        ]

    def add_version(
        self,
        *,
        name: str,
        version: int | None,
        abi: str,
        export: str,
        signature: Signature,
        capabilities: Capabilities,
        limit_overrides: dict[str, Any],
        module_sha256: str,
        wit: str | None = None,
    ) -> int:
        """Add a version (the next number unless given) and make it active."""
        now = time.time()
        latest = self._one("SELECT max(version) FROM _heliosdb_versions WHERE name = ?", (name,))
        next_version = (latest[0] or 0) + 1 if latest else 1
        if version is None:
            version = next_version
        elif self._one(
            "SELECT 1 FROM _heliosdb_versions WHERE name = ? AND version = ?", (name, version)
        ):
            raise RegistryError(
                f"procedure {name} already has a version {version}", code="already-exists"
            )
        cur = self.conn.cursor()
        cur.execute(
            "INSERT INTO _heliosdb_procedures(name, active_version, created_at) VALUES (?, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET active_version = excluded.active_version",
            (name, version, now),
        )
        cur.execute(
            "INSERT INTO _heliosdb_versions(name, version, module_sha256, abi, export,"
            " signature, capabilities, limits, created_at, wit) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                name,
                version,
                module_sha256,
                abi,
                export,
                json.dumps(signature.to_json()),
                json.dumps(capabilities.sorted()),
                json.dumps(limit_overrides),
                now,
                wit,
            ),
        )
        return version

    def use_version(self, name: str, version: int) -> None:
        self.get(name, version)  # raises if absent
        self.conn.cursor().execute(
            "UPDATE _heliosdb_procedures SET active_version = ? WHERE name = ?", (version, name)
        )

    def drop(self, name: str) -> None:
        if not self.exists(name):
            raise RegistryError(f"no procedure named {name}", code="not-found", procedure=name)
        cur = self.conn.cursor()
        cur.execute("DELETE FROM _heliosdb_versions WHERE name = ?", (name,))
        cur.execute("DELETE FROM _heliosdb_procedures WHERE name = ?", (name,))
        self._collect_modules()

    def get(self, name: str, version: int | None = None) -> ProcedureVersion:
        """The active version of ``name``, or the given version."""
        head = self._one(
            "SELECT name, active_version FROM _heliosdb_procedures WHERE name = ?", (name,)
        )
        if head is None:
            raise RegistryError(f"no procedure named {name}", code="not-found", procedure=name)
        canonical, active = head
        wanted = active if version is None else version
        row = self._one(
            f"SELECT {_VERSION_COLUMNS} FROM _heliosdb_versions WHERE name = ? AND version = ?",
            (name, wanted),
        )
        if row is None:
            raise RegistryError(
                f"procedure {canonical} has no version {wanted}",
                code="no-such-version",
                procedure=canonical,
            )
        return _version(row, active)

    def versions(self, name: str) -> list[ProcedureVersion]:
        active = self.get(name).version
        return [
            _version(tuple(row), active)
            for row in self.conn.cursor().execute(
                f"SELECT {_VERSION_COLUMNS} FROM _heliosdb_versions"
                " WHERE name = ? ORDER BY version",
                (name,),
            )
        ]

    # -- extensions ------------------------------------------------------------

    def add_extension(
        self,
        *,
        name: str,
        version: str,
        manifest: str,
        archive_sha256: str,
        signed_by: str | None,
        procedures: list[tuple[str, int]],
    ) -> None:
        if self.extension_versions(name, version):
            raise RegistryError(
                f"extension {name} {version} is already installed", code="already-exists"
            )
        self.conn.cursor().execute(
            "INSERT INTO _heliosdb_extensions(name, version, manifest, archive_sha256,"
            " signed_by, procedures, installed_at) VALUES (?,?,?,?,?,?,?)",
            (
                name,
                version,
                manifest,
                archive_sha256,
                signed_by,
                json.dumps([[p, v] for p, v in procedures]),
                time.time(),
            ),
        )

    def extension_versions(self, name: str, version: str | None = None) -> list[Extension]:
        """Installed versions of extension ``name`` (or one of them), oldest first."""
        sql = f"SELECT {_EXTENSION_COLUMNS} FROM _heliosdb_extensions WHERE name = ?"
        params: tuple[Any, ...] = (name,)
        if version is not None:
            sql += " AND version = ?"
            params += (version,)
        rows = self.conn.cursor().execute(sql + " ORDER BY installed_at, rowid", params)
        return [_extension(tuple(r)) for r in rows]

    def extensions(self) -> list[Extension]:
        rows = self.conn.cursor().execute(
            f"SELECT {_EXTENSION_COLUMNS} FROM _heliosdb_extensions ORDER BY name, installed_at"
        )
        return [_extension(tuple(r)) for r in rows]

    def owner_of(self, procedure: str) -> str | None:
        """The extension that installed ``procedure``, if any."""
        for ext in self.extensions():
            if any(p.lower() == procedure.lower() for p, _ in ext.procedures):
                return ext.name
        return None

    def drop_extension(self, name: str) -> list[str]:
        """Forget every version of ``name``; returns the procedures they installed."""
        installed = self.extension_versions(name)
        if not installed:
            raise RegistryError(f"no extension named {name}", code="not-found")
        self.conn.cursor().execute("DELETE FROM _heliosdb_extensions WHERE name = ?", (name,))
        return list(dict.fromkeys(p for ext in installed for p, _ in ext.procedures))


@dataclass(frozen=True)
class Extension:
    """One installed version of an extension archive."""

    name: str
    version: str
    manifest: str
    archive_sha256: str
    signed_by: str | None
    procedures: tuple[tuple[str, int], ...]  # (procedure, version it created)
    installed_at: float


_EXTENSION_COLUMNS = "name, version, manifest, archive_sha256, signed_by, procedures, installed_at"


def _extension(row: tuple[Any, ...]) -> Extension:
    name, version, manifest, sha, signed_by, procs, installed = row
    return Extension(
        name=name,
        version=version,
        manifest=manifest,
        archive_sha256=sha,
        signed_by=signed_by,
        procedures=tuple((str(p), int(v)) for p, v in json.loads(procs)),
        installed_at=installed,
    )


_VERSION_COLUMNS = (
    "name, version, abi, export, signature, capabilities, limits, module_sha256, created_at, wit"
)


def _version(row: tuple[Any, ...], active: int) -> ProcedureVersion:
    name, version, abi, export, sig, caps, limits, sha, created, wit = row
    return ProcedureVersion(
        name=name,
        version=version,
        abi=abi,
        export=export,
        signature=Signature.from_json(json.loads(sig)),
        capabilities=Capabilities.parse(json.loads(caps)),
        limit_overrides=json.loads(limits),
        module_sha256=sha,
        created_at=created,
        active=version == active,
        wit=wit,
    )
