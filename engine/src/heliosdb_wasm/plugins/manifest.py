"""Plugin specs: plugins.toml's [[plugin]] tables and CREATE PLUGIN, validated
into PluginSpec, and what the registry stores of them."""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    InvalidArgument,
    ProcedureError,
)
from ..policy import Capabilities, Limits
from ..registry import sha256_hex

if TYPE_CHECKING:
    from ..ddl import CreatePlugin

HOOKS = ("pre-parse", "post-parse", "pre-execution", "post-execution")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")


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
    settings = PipelineSettings()
    raw_settings = doc.get("pipeline", {})
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
        specs.append(_spec(raw, path.parent, f"{path}: plugin #{i + 1}"))
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
    """The plugin files a manifest names, resolved as read_manifest does;
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
                files.append(str((path.parent / file).resolve()))
    return files


def _spec(raw: Any, base: Path, where: str) -> PluginSpec:
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{where}: must be a table")
    name = raw.get("name")
    file = raw.get("file")
    if not isinstance(file, str):
        raise InvalidArgument(f"{where} ({name}): file is required")
    wasm, origin = _read_wasm(base, file, f"{where} ({name})")
    candidate = raw.get("candidate")
    cand_wasm: bytes | None = None
    cand_origin: str | None = None
    if isinstance(candidate, dict) and isinstance(candidate.get("file"), str):
        cand_wasm, cand_origin = _read_wasm(base, candidate["file"], f"{where} ({name}) candidate")
    return _build(raw, wasm, origin, cand_wasm, cand_origin, where)


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
        if not isinstance(cand, dict) or set(cand) - {"file", "percent"} or candidate is None:
            raise InvalidArgument(f"{where}: candidate must be {{ file = ..., percent = N }}")
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
    return _build(raw, stmt.wasm, f"sql:{stmt.name}", None, None, "CREATE PLUGIN")


def spec_to_json(spec: PluginSpec) -> dict[str, Any]:
    """What the registry stores of a SQL-created plugin (its module aside)."""
    doc: dict[str, Any] = {
        "priority": spec.priority,
        "enabled": spec.enabled,
        "capabilities": sorted(spec.capabilities.grants),
        "limits": dict(spec.limits),
        "config": dict(spec.config),
    }
    if spec.hooks is not None:
        doc["hooks"] = sorted(spec.hooks)
    return doc


def spec_from_json(name: str, doc: dict[str, Any], wasm: bytes, origin: str) -> PluginSpec:
    return _build({"name": name, **doc}, wasm, origin, None, None, "registry plugin")


def _read_wasm(base: Path, file: str, where: str) -> tuple[bytes, str]:
    path = (base / file).resolve()
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise InvalidArgument(f"{where}: cannot read {path}: {exc.strerror}") from None
