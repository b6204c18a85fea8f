"""Plugin specs: plugins.toml's [[plugin]] tables (one manifest, or every
manifest of a plugins directory) and CREATE PLUGIN, validated into
PluginSpec, and what the registry stores of them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    InvalidArgument,
    ProcedureError,
)
from ..policy import MAX_MODULE_BYTES, Capabilities, Limits
from ..registry import sha256_hex

if TYPE_CHECKING:
    from ..ddl import CreatePlugin

HOOKS = ("pre-parse", "post-parse", "pre-execution", "post-execution")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")
_WASM_MAGIC = b"\0asm"

# A spec's origin says where its module came from: a file's path, or one of
# these prefixes and what follows (no file to watch for either).
SQL_ORIGIN = "sql:"  # CREATE PLUGIN: "sql:<name>"
INLINE_ORIGIN = "inline:"  # wasm_base64 in a manifest: "inline:<manifest path>"


def origin_file(origin: str) -> str | None:
    """The file a module was read from, or None when it was not read from one."""
    return None if origin.startswith((SQL_ORIGIN, INLINE_ORIGIN)) else origin


@dataclass(frozen=True)
class PluginSpec:
    """One plugin as configured: plugins.toml's [[plugin]] or CREATE PLUGIN."""

    name: str
    wasm: bytes
    origin: str
    priority: int = 100
    enabled: bool = True
    hooks: frozenset[str] | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)
    limits: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    # A/B: a second build that serves `candidate_percent` % of sessions.
    candidate: bytes | None = None
    candidate_origin: str | None = None
    candidate_percent: int = 0

    @property
    def sha256(self) -> str:
        return sha256_hex(self.wasm)

    @property
    def fingerprint(self) -> str:
        """What makes two specs the same version: module, grants, limits, config."""
        doc = json.dumps(
            [
                sha256_hex(self.wasm),
                sorted(self.hooks) if self.hooks is not None else None,
                sorted(self.capabilities.grants),
                dict(self.limits),
                dict(self.config),
            ],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(doc.encode()).hexdigest()


@dataclass(frozen=True)
class PipelineSettings:
    """The [pipeline] table of plugins.toml."""

    # A new version (or candidate) whose failures exceed this share of its
    # first `probation_calls` calls, after at least `min_calls`, is rolled back.
    max_error_rate: float = 0.2
    min_calls: int = 10
    probation_calls: int = 200
    # How often the manifest and plugin files are checked for changes.
    reload_interval: float = 0.5
    # How long a changed file must hold still before it is read. Most writers
    # truncate and then write: a manifest caught in between reads as a valid,
    # shorter (or empty) one, and applying it would drop plugins - tenant
    # isolation among them - until the next check.
    settle_time: float = 0.1


_PLUGIN_KEYS = {
    "name",
    "file",
    "wasm_base64",
    "priority",
    "enabled",
    "hooks",
    "capabilities",
    "limits",
    "config",
    "candidate",
}


def read_manifest(path: Path) -> tuple[PipelineSettings, list[PluginSpec]]:
    """Parse plugins.toml; relative files are relative to it. Every error
    names the plugin and the key."""
    settings, specs = read_manifests([path])
    return settings or PipelineSettings(), specs


def read_manifests(paths: Sequence[Path]) -> tuple[PipelineSettings | None, list[PluginSpec]]:
    """Several manifests as one: their plugins together (a name defined in
    two files is refused, naming both) and the [pipeline] table of the one
    file that has it, or None (two that have one are refused, naming both)."""
    settings: PipelineSettings | None = None
    settings_from: Path | None = None
    owners: dict[str, Path] = {}
    specs: list[PluginSpec] = []
    for path in paths:
        own_settings, own_specs = _read_one(path)
        if own_settings is not None:
            if settings_from is not None:
                raise InvalidArgument(
                    f"{path}: a [pipeline] table is already set by {settings_from};"
                    " only one manifest may set it"
                )
            settings, settings_from = own_settings, path
        for spec in own_specs:
            first = owners.get(spec.name)
            if first is not None:
                raise InvalidArgument(
                    f"plugin {spec.name!r} is defined in both {first} and {path}",
                    procedure=spec.name,
                )
            owners[spec.name] = path
            specs.append(spec)
    return settings, specs


def directory_manifests(directory: Path) -> list[Path]:
    """The manifests of a plugins directory: its ``*.toml`` entries, sorted
    by name. Hidden names are skipped: a Kubernetes ConfigMap volume keeps
    its real files in ``..<timestamp>/`` and ``..data/`` and shows each key
    as a symlink into ``..data``."""
    try:
        names = os.listdir(directory)
    except OSError as exc:
        raise InvalidArgument(
            f"cannot read the plugins directory {directory}: {exc.strerror}"
        ) from None
    return [
        directory / name
        for name in sorted(names)
        if name.endswith(".toml") and not name.startswith(".") and not (directory / name).is_dir()
    ]


def _read_one(path: Path) -> tuple[PipelineSettings | None, list[PluginSpec]]:
    """One manifest: its [pipeline] table if it has one, and its plugins."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"{path}: {exc}") from None
    except RecursionError:
        raise InvalidArgument(f"{path}: nested too deeply") from None
    unknown = set(doc) - {"plugin", "pipeline"}
    if unknown:
        raise InvalidArgument(f"{path}: unknown table(s) {sorted(unknown)}")
    settings: PipelineSettings | None = None
    if "pipeline" in doc:
        raw_settings = doc["pipeline"]
        if not isinstance(raw_settings, dict):
            raise InvalidArgument(f"{path}: [pipeline] must be a table")
        try:
            settings = PipelineSettings(**raw_settings)
        except TypeError as exc:
            raise InvalidArgument(f"{path}: [pipeline]: {exc}") from None
        _check_settings(settings, f"{path}: [pipeline]")
    plugins = doc.get("plugin", [])
    if not isinstance(plugins, list):
        raise InvalidArgument(f"{path}: plugin must be an array of tables ([[plugin]])")
    specs: list[PluginSpec] = []
    for i, raw in enumerate(plugins):
        specs.append(_spec(raw, path, f"{path}: plugin #{i + 1}"))
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise InvalidArgument(f"{path}: plugin name(s) used twice: {sorted(dup)}")
    return settings, specs


def _check_settings(settings: PipelineSettings, where: str) -> None:
    def number(name: str, low: float, high: float | None = None, whole: bool = False) -> None:
        value = getattr(settings, name)
        kinds = (int,) if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            kind = "an integer" if whole else "a number"
            raise InvalidArgument(f"{where}: {name} must be {kind}, got {value!r}")
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise InvalidArgument(f"{where}: {name} must be {bounds}, got {value!r}")

    number("max_error_rate", 0, 1)
    number("min_calls", 0, whole=True)
    number("probation_calls", 0, whole=True)
    number("reload_interval", 0.01)
    number("settle_time", 0, 60)


def manifest_files(path: Path) -> list[str]:
    """The plugin files a manifest names, as read_manifest finds them;
    nothing for a manifest that does not parse."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):  # TOMLDecodeError too
        return []
    files = []
    plugins = doc.get("plugin", [])
    for raw in plugins if isinstance(plugins, list) else []:
        if not isinstance(raw, dict):
            continue
        candidate = raw.get("candidate")
        named = [raw.get("file"), candidate.get("file") if isinstance(candidate, dict) else None]
        for file in named:
            if isinstance(file, str):
                files.append(_file_path(path.parent, file))
    return files


def _file_path(base: Path, file: str) -> str:
    # Absolute but not resolved: through a symlink (a ConfigMap's key) the
    # path stays the one the manifest names while its target is swapped.
    return os.path.abspath(base / file)


def _spec(raw: Any, manifest: Path, where: str) -> PluginSpec:
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{where}: must be a table")
    name = raw.get("name")
    wasm, origin = _module(raw, manifest, f"{where} ({name})")
    candidate = raw.get("candidate")
    cand_wasm: bytes | None = None
    cand_origin: str | None = None
    if isinstance(candidate, dict) and ("file" in candidate or "wasm_base64" in candidate):
        cand_wasm, cand_origin = _module(candidate, manifest, f"{where} ({name}) candidate")
    return _build(raw, wasm, origin, cand_wasm, cand_origin, where)


def _module(raw: dict[str, Any], manifest: Path, where: str) -> tuple[bytes, str]:
    """A table's module and its origin: ``file`` (relative to the manifest)
    or ``wasm_base64``, exactly one of them."""
    file, inline = raw.get("file"), raw.get("wasm_base64")
    if file is None and inline is None:
        raise InvalidArgument(f"{where}: file is required (or the module inline, wasm_base64)")
    if file is not None and inline is not None:
        raise InvalidArgument(f"{where}: give file or wasm_base64, not both")
    if file is not None:
        if not isinstance(file, str):
            raise InvalidArgument(f"{where}: file must be a string")
        return _read_wasm(manifest.parent, file, where)
    if not isinstance(inline, str):
        raise InvalidArgument(f"{where}: wasm_base64 must be a string")
    # Whitespace is allowed, so a long body may be wrapped over lines of a
    # multi-line string; anything else outside the alphabet is an error.
    text = "".join(inline.split())
    if len(text) > (MAX_MODULE_BYTES // 3 + 1) * 4:
        raise InvalidArgument(f"{where}: wasm_base64 is larger than {MAX_MODULE_BYTES} bytes")
    try:
        wasm = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{where}: wasm_base64 is not valid base64") from None
    if wasm[:4] != _WASM_MAGIC:
        raise InvalidArgument(
            f"{where}: wasm_base64 is not a WebAssembly module (no \\0asm header)"
        )
    return wasm, f"{INLINE_ORIGIN}{manifest}"


def _build(
    raw: dict[str, Any],
    wasm: bytes,
    origin: str,
    candidate: bytes | None,
    candidate_origin: str | None,
    where: str,
) -> PluginSpec:
    """A validated PluginSpec from a manifest table (or the JSON SQL stores)."""
    unknown = set(raw) - _PLUGIN_KEYS
    if unknown:
        raise InvalidArgument(f"{where}: unknown key(s) {sorted(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS:
        raise InvalidArgument(f"{where}: name must be [a-z0-9_-]+, got {name!r}")
    where = f"{where} ({name})"
    priority = raw.get("priority", 100)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise InvalidArgument(f"{where}: priority must be an integer")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidArgument(f"{where}: enabled must be true or false")
    hooks = raw.get("hooks")
    if hooks is not None:
        if not isinstance(hooks, list) or not all(h in HOOKS for h in hooks):
            raise InvalidArgument(f"{where}: hooks must be a list of {', '.join(HOOKS)}")
        hooks = frozenset(hooks)
    caps_raw = raw.get("capabilities", [])
    if not isinstance(caps_raw, list) or not all(isinstance(c, str) for c in caps_raw):
        raise InvalidArgument(f"{where}: capabilities must be a list of strings")
    limits = raw.get("limits", {})
    if not isinstance(limits, dict):
        raise InvalidArgument(f"{where}: limits must be a table")
    try:
        caps = Capabilities.parse(caps_raw)
        Limits().with_overrides(**limits)
    except ProcedureError as exc:
        raise InvalidArgument(f"{where}: {exc.message}") from None
    config = raw.get("config", {})
    if not isinstance(config, dict):
        raise InvalidArgument(f"{where}: config must be a table")
    percent = 0
    if "candidate" in raw:
        cand = raw["candidate"]
        if (
            not isinstance(cand, dict)
            or set(cand) - {"file", "wasm_base64", "percent"}
            or candidate is None
        ):
            raise InvalidArgument(
                f"{where}: candidate must be {{ file = ... (or wasm_base64 = ...), percent = N }}"
            )
        percent = cand.get("percent", 0)
        if not isinstance(percent, int) or not 0 <= percent <= 100:
            raise InvalidArgument(f"{where}: candidate percent must be 0..100")
    return PluginSpec(
        name=name,
        wasm=wasm,
        origin=origin,
        priority=priority,
        enabled=enabled,
        hooks=hooks,
        capabilities=caps,
        limits=dict(limits),
        config=config,
        candidate=candidate,
        candidate_origin=candidate_origin,
        candidate_percent=percent,
    )


def spec_from_ddl(stmt: CreatePlugin) -> PluginSpec:
    """The spec of a CREATE PLUGIN statement."""
    try:
        config = json.loads(stmt.config)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, too deep, too long
        raise InvalidArgument(f"plugin {stmt.name}: CONFIG is not JSON: {exc}") from None
    raw: dict[str, Any] = {
        "name": stmt.name,
        "priority": stmt.priority,
        "enabled": stmt.enabled,
        "capabilities": list(stmt.capabilities),
        "limits": dict(stmt.limit_overrides),
        "config": config,
    }
    if stmt.hooks is not None:
        raw["hooks"] = list(stmt.hooks)
    return _build(raw, stmt.wasm, f"{SQL_ORIGIN}{stmt.name}", None, None, "CREATE PLUGIN")


def spec_to_json(spec: PluginSpec) -> dict[str, Any]:
    """What the registry stores of a SQL-created plugin (its modules aside:
    a candidate is named by its hash)."""
    doc: dict[str, Any] = {
        "priority": spec.priority,
        "enabled": spec.enabled,
        "capabilities": sorted(spec.capabilities.grants),
        "limits": dict(spec.limits),
        "config": dict(spec.config),
    }
    if spec.hooks is not None:
        doc["hooks"] = sorted(spec.hooks)
    if spec.candidate is not None:
        doc["candidate"] = {"sha256": sha256_hex(spec.candidate), "percent": spec.candidate_percent}
    return doc


def spec_from_json(
    name: str, doc: dict[str, Any], wasm: bytes, origin: str, candidate: bytes | None = None
) -> PluginSpec:
    """A SQL-created plugin from what the registry stores (checked there)."""
    raw = {"name": name, **doc}
    cand_origin = None
    if candidate is not None:
        named = doc.get("candidate")
        percent = named.get("percent", 0) if isinstance(named, dict) else 0
        raw["candidate"] = {"percent": percent}
        cand_origin = f"{origin}#candidate"
    else:
        raw.pop("candidate", None)
    return _build(raw, wasm, origin, candidate, cand_origin, "registry plugin")


def _read_wasm(base: Path, file: str, where: str) -> tuple[bytes, str]:
    path = _file_path(base, file)
    try:
        return Path(path).read_bytes(), path
    except OSError as exc:
        raise InvalidArgument(f"{where}: cannot read {path}: {exc.strerror}") from None
