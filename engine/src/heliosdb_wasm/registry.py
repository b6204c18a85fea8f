"""The versioned procedure registry, stored inside the database file itself.

Modules are stored once by SHA-256, so a backup of the file carries every
version of every procedure. Each procedure has numbered versions (signature,
ABI, export, capabilities, limit overrides, module) and exactly one active
version. All writes here run inside the caller's savepoint, so a failed DDL
statement leaves nothing behind.

Every version row (and plugin row) carries a seal over what it grants —
module hash, signature, capabilities, limits — so a row changed by anything
but this module is refused (code ``tampered``) instead of granting what it
says. With a key (``Database.open(seal_key=...)``, kept outside the file) the
seal is an HMAC that even someone who can write the file cannot forge;
without one it is a plain SHA-256 that catches edits through SQL and
damage, not a forger (docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import apsw

from .errors import ProcedureError, RegistryError
from .policy import Capabilities, Limits
from .roles import Role
from .values import Signature

SCHEMA_VERSION = 5

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
    seal TEXT,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS _heliosdb_plugins(
    name TEXT PRIMARY KEY COLLATE NOCASE,
    version INTEGER NOT NULL,
    spec TEXT NOT NULL,
    wasm BLOB NOT NULL,
    updated_at REAL NOT NULL,
    seal TEXT,
    candidate BLOB
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
CREATE TABLE IF NOT EXISTS _heliosdb_roles(
    name TEXT PRIMARY KEY,
    verifier TEXT CHECK (verifier IS NULL OR verifier LIKE 'SCRAM-SHA-256$%'),
    can_login INTEGER NOT NULL CHECK (can_login IN (0, 1)),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    seal TEXT
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

    def __init__(self, conn: apsw.Connection, seal_key: bytes | None = None) -> None:
        self.conn = conn
        self.seal_key = seal_key

    def seal(self, *fields: object) -> str:
        """The seal of a row's granting fields (see the module docstring)."""
        message = json.dumps(fields, separators=(",", ":")).encode()
        if self.seal_key is not None:
            return "hmac-sha256:" + hmac.new(self.seal_key, message, hashlib.sha256).hexdigest()
        return "sha256:" + hashlib.sha256(message).hexdigest()

    def _check_seal(self, what: str, found: object, *fields: object) -> None:
        if not isinstance(found, str) or not hmac.compare_digest(found, self.seal(*fields)):
            raise RegistryError(
                f"{what}: its registry row does not match its seal (changed outside the "
                "engine, or sealed with another key); refusing to use it",
                code="tampered",
            )

    def reseal(self) -> int:
        """Seals every row as it stands now, with this registry's key: for a
        new key, or after the owner repaired rows by hand. Returns the rows."""
        cur = self.conn.cursor()
        rows: list[tuple[Any, ...]] = cur.execute(
            "SELECT name, version, abi, export, signature, capabilities, limits,"
            " module_sha256, wit FROM _heliosdb_versions"
        ).fetchall()
        for row in rows:
            cur.execute(
                "UPDATE _heliosdb_versions SET seal = ? WHERE name = ? AND version = ?",
                (self._version_seal(*row), row[0], row[1]),
            )
        plugins: list[tuple[Any, ...]] = cur.execute(
            "SELECT name, version, spec, wasm FROM _heliosdb_plugins"
        ).fetchall()
        for name, version, spec, wasm in plugins:
            cur.execute(
                "UPDATE _heliosdb_plugins SET seal = ? WHERE name = ?",
                (self._plugin_seal(name, version, spec, bytes(wasm)), name),
            )
        roles: list[tuple[Any, ...]] = cur.execute(
            "SELECT name, verifier, can_login FROM _heliosdb_roles"
        ).fetchall()
        for name, verifier, can_login in roles:
            cur.execute(
                "UPDATE _heliosdb_roles SET seal = ? WHERE name = ?",
                (self._role_seal(name, verifier, bool(can_login)), name),
            )
        return len(rows) + len(plugins) + len(roles)

    def _version_seal(self, name: str, version: int, *fields: object) -> str:
        return self.seal("version", str(name).lower(), version, *fields)

    def _plugin_seal(self, name: str, version: int, spec: str, wasm: bytes) -> str:
        return self.seal(*self._plugin_fields(name, version, spec, wasm))

    def ensure_schema(self) -> None:
        cur = self.conn.cursor()
        cur.execute(_SCHEMA)
        row = self._one("SELECT value FROM _heliosdb_meta WHERE key = 'schema_version'")
        if row is None:
            cur.execute(
                "INSERT INTO _heliosdb_meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            self._add_mock_secret()
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
        columns = {r[1] for r in cur.execute("PRAGMA table_info(_heliosdb_versions)")}
        if found < 2 and "wit" not in columns:  # 2: SingleStore canonical-ABI WIT
            cur.execute("ALTER TABLE _heliosdb_versions ADD COLUMN wit TEXT")
        if found < 3:  # 3: seals; the rows found are trusted as they are
            if "seal" not in columns:
                cur.execute("ALTER TABLE _heliosdb_versions ADD COLUMN seal TEXT")
            plugin_columns = {r[1] for r in cur.execute("PRAGMA table_info(_heliosdb_plugins)")}
            if "seal" not in plugin_columns:
                cur.execute("ALTER TABLE _heliosdb_plugins ADD COLUMN seal TEXT")
            self.reseal()
        if found < 4:  # 4: a plugin's A/B candidate module (its hash is in the sealed spec)
            plugin_columns = {r[1] for r in cur.execute("PRAGMA table_info(_heliosdb_plugins)")}
            if "candidate" not in plugin_columns:
                cur.execute("ALTER TABLE _heliosdb_plugins ADD COLUMN candidate BLOB")
        if found < 5:  # 5: roles (the table is created above)
            self._add_mock_secret()
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

    # -- query-hook plugins (created with SQL; see plugins/) -----------------

    def plugin_rows(self) -> list[tuple[str, int, dict[str, Any], bytes, bytes | None]]:
        """(name, version, spec as JSON, module, A/B candidate module or None)
        of every SQL-created plugin."""
        rows = self.conn.cursor().execute(
            "SELECT name, version, spec, wasm, seal, candidate FROM _heliosdb_plugins ORDER BY name"
        )
        out = []
        for name, version, spec, wasm, seal, candidate in rows:
            self._check_seal(
                f"plugin {name}", seal, *self._plugin_fields(name, version, spec, wasm)
            )
            doc = _json(f"plugin {name}", spec)
            out.append((name, int(version), doc, bytes(wasm), _candidate(name, doc, candidate)))
        return out

    @staticmethod
    def _plugin_fields(name: str, version: int, spec: str, wasm: bytes) -> tuple[object, ...]:
        return ("plugin", str(name).lower(), version, spec, sha256_hex(bytes(wasm)))

    def plugin_row(self, name: str) -> tuple[int, dict[str, Any]] | None:
        row = self._one("SELECT version, spec FROM _heliosdb_plugins WHERE name = ?", (name,))
        return None if row is None else (int(row[0]), _json(f"plugin {name}", row[1]))

    def plugins_stamp(self) -> str:
        """Changes whenever a plugin is created, altered or dropped."""
        row = self._one("SELECT group_concat(name || ':' || version) FROM _heliosdb_plugins")
        return str(row[0]) if row and row[0] is not None else ""

    def put_plugin(self, name: str, spec: dict[str, Any], wasm: bytes) -> int:
        found = self.plugin_row(name)
        version = 1 if found is None else found[0] + 1
        text = json.dumps(spec, sort_keys=True)
        self.conn.cursor().execute(
            "INSERT OR REPLACE INTO _heliosdb_plugins(name, version, spec, wasm, updated_at, seal)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (name, version, text, wasm, time.time(), self._plugin_seal(name, version, text, wasm)),
        )
        return version

    def alter_plugin(self, name: str, changes: dict[str, Any]) -> None:
        version, spec, wasm, candidate = self.plugin_whole(name)
        self.rewrite_plugin(name, version + 1, {**spec, **changes}, wasm, candidate)

    def plugin_whole(self, name: str) -> tuple[int, dict[str, Any], bytes, bytes | None]:
        """(version, spec, module, candidate module) of one plugin, checked."""
        row = self._one(
            "SELECT version, spec, wasm, seal, candidate FROM _heliosdb_plugins WHERE name = ?",
            (name,),
        )
        if row is None:
            raise RegistryError(f"no plugin named {name}", code="not-found", procedure=name)
        version, spec, wasm, seal, candidate = row
        self._check_seal(f"plugin {name}", seal, *self._plugin_fields(name, version, spec, wasm))
        doc = _json(f"plugin {name}", spec)
        return int(version), doc, bytes(wasm), _candidate(name, doc, candidate)

    def rewrite_plugin(
        self,
        name: str,
        version: int,
        spec: dict[str, Any],
        wasm: bytes,
        candidate: bytes | None,
    ) -> None:
        """Replaces a plugin's row whole. A candidate module is recorded in
        the spec by its hash, so the seal covers it too."""
        spec = {k: v for k, v in spec.items() if k != "candidate"} | (
            {
                "candidate": {
                    "sha256": sha256_hex(candidate),
                    "percent": spec["candidate"]["percent"],
                }
            }
            if candidate is not None
            else {}
        )
        text = json.dumps(spec, sort_keys=True)
        self.conn.cursor().execute(
            "UPDATE _heliosdb_plugins SET version = ?, spec = ?, wasm = ?, candidate = ?,"
            " updated_at = ?, seal = ? WHERE name = ?",
            (
                version,
                text,
                wasm,
                candidate,
                time.time(),
                self._plugin_seal(name, version, text, wasm),
                name,
            ),
        )

    def drop_plugin(self, name: str) -> None:
        if self.plugin_row(name) is None:
            raise RegistryError(f"no plugin named {name}", code="not-found", procedure=name)
        self.conn.cursor().execute("DELETE FROM _heliosdb_plugins WHERE name = ?", (name,))

    # -- roles (the wire endpoint's users; roles.py) ----------------------------

    def _add_mock_secret(self) -> None:
        """The secret the salts of roles that do not exist are derived from
        (roles.mock_salt): made once per database, so they stay the same
        across restarts, as real salts do."""
        self.conn.cursor().execute(
            "INSERT OR IGNORE INTO _heliosdb_meta(key, value) VALUES ('scram_mock_secret', ?)",
            (secrets.token_hex(32),),
        )

    def mock_secret(self) -> bytes:
        row = self._one("SELECT value FROM _heliosdb_meta WHERE key = 'scram_mock_secret'")
        return str(row[0]).encode() if row is not None else b""

    def _role_seal(self, name: str, verifier: str | None, login: bool) -> str:
        return self.seal("role", name, verifier, login)

    def role(self, name: str) -> Role | None:
        """The role ``name`` (names are case-sensitive, as PostgreSQL's)."""
        row = self._one(f"SELECT {_ROLE_COLUMNS} FROM _heliosdb_roles WHERE name = ?", (name,))
        return None if row is None else self._role(row)

    def role_names(self) -> list[str]:
        rows = self.conn.cursor().execute("SELECT name FROM _heliosdb_roles ORDER BY name")
        return [str(r[0]) for r in rows]

    def _role(self, row: tuple[Any, ...]) -> Role:
        name, verifier, can_login, created, updated, seal = row
        self._check_seal(f"role {name}", seal, "role", name, verifier, bool(can_login))
        return Role(
            name=str(name),
            login=bool(can_login),
            created_at=float(created),
            updated_at=float(updated),
            verifier=verifier,
        )

    def put_role(self, name: str, verifier: str | None, login: bool, *, new: bool) -> None:
        """Create (``new``) or update a role's row."""
        now = time.time()
        seal = self._role_seal(name, verifier, login)
        cur = self.conn.cursor()
        if new:
            cur.execute(
                "INSERT INTO _heliosdb_roles(name, verifier, can_login, created_at, updated_at,"
                " seal) VALUES (?, ?, ?, ?, ?, ?)",
                (name, verifier, int(login), now, now, seal),
            )
        else:
            cur.execute(
                "UPDATE _heliosdb_roles SET verifier = ?, can_login = ?, updated_at = ?, seal = ?"
                " WHERE name = ?",
                (verifier, int(login), now, seal, name),
            )

    def drop_role(self, name: str) -> None:
        self.conn.cursor().execute("DELETE FROM _heliosdb_roles WHERE name = ?", (name,))

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
        sig, caps, limits = (
            json.dumps(signature.to_json()),
            json.dumps(capabilities.sorted()),
            json.dumps(limit_overrides),
        )
        cur.execute(
            "INSERT INTO _heliosdb_versions(name, version, module_sha256, abi, export,"
            " signature, capabilities, limits, created_at, wit, seal)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                name,
                version,
                module_sha256,
                abi,
                export,
                sig,
                caps,
                limits,
                now,
                wit,
                self._version_seal(
                    name, version, abi, export, sig, caps, limits, module_sha256, wit
                ),
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
        return self._version(row, active)

    def versions(self, name: str) -> list[ProcedureVersion]:
        active = self.get(name).version
        return [
            self._version(tuple(row), active)
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

    def _version(self, row: tuple[Any, ...], active: int) -> ProcedureVersion:
        name, version, abi, export, sig, caps, limits, sha, created, wit, seal = row
        what = f"procedure {name} v{version}"
        self._check_seal(what, seal, *self._version_fields(row))
        try:
            grants = _json(what, caps)
            overrides = _json(what, limits)
            if not isinstance(grants, list) or not isinstance(overrides, dict):
                raise TypeError("capabilities or limits of the wrong JSON type")
            Limits().with_overrides(**overrides)  # refuses unknown or ill-typed limits
            return ProcedureVersion(
                name=name,
                version=version,
                abi=abi,
                export=export,
                signature=Signature.from_json(_json(what, sig)),
                capabilities=Capabilities.parse(grants),
                limit_overrides=overrides,
                module_sha256=sha,
                created_at=created,
                active=version == active,
                wit=wit,
            )
        except (ProcedureError, TypeError, ValueError, KeyError, AttributeError) as exc:
            if isinstance(exc, RegistryError):
                raise
            raise RegistryError(
                f"{what}: its registry row is damaged ({exc})", code="damaged", procedure=name
            ) from None

    @staticmethod
    def _version_fields(row: tuple[Any, ...]) -> tuple[object, ...]:
        name, version, abi, export, sig, caps, limits, sha, _created, wit, _seal = row
        return ("version", str(name).lower(), version, abi, export, sig, caps, limits, sha, wit)

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
        procedures=tuple((str(p), int(v)) for p, v in _json(f"extension {name}", procs)),
        installed_at=installed,
    )


_ROLE_COLUMNS = "name, verifier, can_login, created_at, updated_at, seal"
_VERSION_COLUMNS = (
    "name, version, abi, export, signature, capabilities, limits, module_sha256, created_at,"
    " wit, seal"
)


def _json(what: str, text: object) -> Any:
    try:
        return json.loads(text)  # type: ignore[arg-type]
    except (TypeError, ValueError, RecursionError):
        raise RegistryError(
            f"{what}: its registry row is damaged (not JSON)", code="damaged"
        ) from None


def _candidate(name: str, spec: dict[str, Any], found: object) -> bytes | None:
    """A plugin's candidate module, checked against the hash its sealed spec holds."""
    named = spec.get("candidate")
    if found is None and named is None:
        return None
    data = bytes(found) if isinstance(found, bytes | memoryview) else None
    if (
        data is None
        or not isinstance(named, dict)
        or not isinstance(named.get("sha256"), str)
        or not hmac.compare_digest(sha256_hex(data), named["sha256"])
    ):
        raise RegistryError(
            f"plugin {name}: its candidate module does not match its sealed hash; refusing"
            " to use it",
            code="tampered",
        )
    return data
