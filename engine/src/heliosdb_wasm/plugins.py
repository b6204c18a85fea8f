"""Query-hook plugins: loading, the pipeline every statement runs through,
hot reload with automatic rollback, A/B routing and metrics (docs/plugins.md).

A Pipeline holds one ``_Slot`` per plugin name. A statement takes an
immutable snapshot of the slots when it starts and calls the versions it
chose then, so replacing a plugin (a new file, a new manifest, ``CREATE
PLUGIN``) swaps one reference: statements in flight finish on the version
they started with and new statements see the new one. Plugins are loaded
with the procedure machinery (invoke.load): same ABIs, capabilities, limits
and compiled-code cache; each version keeps its own pool of instances,
shared by every connection.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import logging
import threading
import time
import tomllib
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _core, native, sqlast
from .abi_basic import BasicModule
from .abi_component import ComponentModule, sql_of_value, value_variant
from .errors import (
    InvalidArgument,
    PluginError,
    PluginRejected,
    ProcedureError,
)
from .hostapi import CallContext, Session
from .invoke import HostedHooks, LoadedModule, fault_hook, load
from .policy import Capabilities, Limits
from .registry import ProcedureVersion, sha256_hex
from .runtime import Runtime, core_error, default_runtime
from .telemetry import Metrics as CallMetrics
from .values import Column, Signature, SqlType, SqlValue

if TYPE_CHECKING:
    from .database import Database, Result
    from .ddl import CreatePlugin
    from .pgwire import Executor, WireSession

HOOKS = ("pre-parse", "post-parse", "pre-execution", "post-execution")
# What each stage may answer besides allow and reject.
_STAGE_ACTIONS = {
    "pre-parse": {"allow", "reject", "rewrite"},
    "post-parse": {"allow", "reject", "rewrite"},
    "pre-execution": {"allow", "reject"},
    "post-execution": {"allow", "reject", "replace-rows"},
}
# A Basic-ABI hook is a procedure (request JSON) RETURNS JSON.
_REQUEST = Signature(params=(Column("request", SqlType.JSON),), returns=SqlType.JSON)
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")

log = logging.getLogger("heliosdb_wasm.plugins")


# --- manifests ---------------------------------------------------------------


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


def _guest_json(answer: str) -> Any:
    """A Basic-ABI plugin's JSON answer: anything else is the plugin's fault."""
    try:
        return json.loads(answer)
    except (ValueError, RecursionError) as exc:
        raise PluginError(f"the plugin answered with something other than JSON: {exc}") from None


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


def check(spec: PluginSpec, runtime: Runtime) -> None:
    """Loads ``spec`` once (module, hooks, a verifying instance) and lets it go."""
    PluginVersion(spec, 0, spec.wasm, spec.origin, runtime, _Counters())


def _read_wasm(base: Path, file: str, where: str) -> tuple[bytes, str]:
    path = (base / file).resolve()
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise InvalidArgument(f"{where}: cannot read {path}: {exc.strerror}") from None


# --- verdicts ----------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    action: str
    payload: Any = None
    set_session: tuple[tuple[str, str], ...] = ()


def verdict_from_json(doc: Any) -> Verdict:
    """A Basic-ABI hook's answer (docs/plugins.md §3) as a Verdict."""
    if not isinstance(doc, dict) or "action" not in doc:
        raise PluginError('the verdict must be an object with an "action"')
    unknown = set(doc) - {"action", "set-session"}
    if unknown:
        raise PluginError(f"the verdict has unknown member(s) {sorted(unknown)}")
    action = doc["action"]
    if action == "allow":
        kind, payload = "allow", None
    elif isinstance(action, dict) and len(action) == 1:
        ((kind, payload),) = action.items()
        if kind == "reject":
            if not isinstance(payload, dict) or set(payload) != {"sqlstate", "message"}:
                raise PluginError('reject needs {"sqlstate": ..., "message": ...}')
            payload = (str(payload["sqlstate"]), str(payload["message"]))
        elif kind == "rewrite":
            if not isinstance(payload, str):
                raise PluginError("rewrite needs a string")
        elif kind == "replace-rows":
            if not isinstance(payload, list) or not all(isinstance(r, list) for r in payload):
                raise PluginError("replace-rows needs a list of rows")
            payload = [tuple(_value_from_json(v) for v in row) for row in payload]
        else:
            raise PluginError(f"unknown action {kind!r}")
    else:
        raise PluginError(f"unknown action {action!r}")
    return Verdict(kind, payload, _pairs(doc.get("set-session", [])))


def _pairs(raw: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or not all(
        isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(x, str) for x in p)
        for p in raw
    ):
        raise PluginError("set-session must be a list of [name, value] pairs of strings")
    return tuple((str(a), str(b)) for a, b in raw)


def value_to_json(value: SqlValue) -> Any:
    """A SQL value in the JSON form of the WIT `value` variant."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return {"boolean": value}
    if isinstance(value, int):
        return {"integer": value}
    if isinstance(value, float):
        return {"real": value}
    if isinstance(value, str):
        return {"text": value}
    return {"blob": list(bytes(value))}


def _value_from_json(doc: Any) -> SqlValue:
    if doc == "null":
        return None
    if isinstance(doc, dict) and len(doc) == 1:
        ((kind, v),) = doc.items()
        if kind == "integer" and isinstance(v, int) and not isinstance(v, bool):
            return v
        if kind == "real" and isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
        if kind == "text" and isinstance(v, str):
            return v
        if kind == "boolean" and isinstance(v, bool):
            return v
        if kind == "blob" and isinstance(v, list):
            try:
                return bytes(v)
            except (TypeError, ValueError):
                pass
    raise PluginError(f"not a SQL value: {json.dumps(doc)[:80]}")


def _verdict_from_component(raw: dict[str, Any]) -> Verdict:
    """A component hook's verdict record (a dict by WIT field name) as a Verdict."""
    tag, payload = raw["action"]
    if tag == "reject":
        payload = (str(payload["sqlstate"]), str(payload["message"]))
    elif tag == "replace-rows":
        payload = [tuple(sql_of_value(v) for v in row) for row in payload]
    return Verdict(tag, payload, tuple((str(a), str(b)) for a, b in raw["set-session"]))


# --- one loaded version --------------------------------------------------------


class _Counters:
    """plugin-host.count-in-window: fixed windows per (plugin, key)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str, int], tuple[int, int]] = {}

    def count(self, plugin: str, key: str, window_ms: int) -> int:
        now = int(time.monotonic() * 1000)
        start = now - now % window_ms
        slot = (plugin, key, window_ms)
        with self._lock:
            began, n = self._windows.get(slot, (start, 0))
            n = n + 1 if began == start else 1
            self._windows[slot] = (start, n)
            if len(self._windows) > 100_000:  # forget windows long over
                for k, (b, _) in list(self._windows.items()):
                    if b + k[2] < start:
                        del self._windows[k]
            return n


class PluginVersion:
    """One build of a plugin, loaded and ready: its hooks and instance pool."""

    def __init__(
        self,
        spec: PluginSpec,
        version: int,
        wasm: bytes,
        origin: str,
        runtime: Runtime,
        counters: _Counters,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.version = version
        self.origin = origin
        self.sha256 = sha256_hex(wasm)
        self.limits = Limits().with_overrides(**dict(spec.limits))
        self.capabilities = spec.capabilities
        self.config_json = json.dumps(dict(spec.config))
        self.module: LoadedModule = load(runtime, self.sha256, wasm)
        self._counters = counters
        available = self._exported_hooks()
        wanted = spec.hooks if spec.hooks is not None else frozenset(available)
        missing = wanted - available
        if missing:
            raise InvalidArgument(
                f"plugin {spec.name}: the module does not export hook(s) {sorted(missing)}"
                f" (it has {sorted(available) or 'none'})"
            )
        if not wanted:
            raise InvalidArgument(
                f"plugin {spec.name}: the module exports no hook ({', '.join(HOOKS)})"
            )
        self.hooks = frozenset(wanted)
        # That it instantiates and speaks the ABI; its calls take their own.
        instance = self.module.verify(self.limits, self.capabilities)
        if instance is not None:
            instance.release()
        # probation bookkeeping (Pipeline._judge)
        self.calls = 0
        self.failures = 0

    def _exported_hooks(self) -> set[str]:
        if isinstance(self.module, ComponentModule):
            found = set()
            for hook in HOOKS:
                entry = self.module.functions.get(hook.replace("-", "_"))
                if entry is not None and entry[0] is not None and f"/{hook}@" in entry[0]:
                    found.add(hook)
            return found
        assert isinstance(self.module, BasicModule)
        return {h for h in HOOKS if h.replace("-", "_") in self.module.exports}

    def __repr__(self) -> str:
        return f"<plugin {self.name} v{self.version}>"

    def call(
        self, stage: str, session: Session, ctx: dict[str, Any], args: dict[str, Any]
    ) -> Verdict:
        """Runs one hook; any failure is a PluginError naming this version."""
        export = stage.replace("-", "_")
        try:
            hook = self._hook(session, export)
            if isinstance(self.module, ComponentModule):
                verdict = self._call_component(hook, ctx, args)
            else:
                request = json.dumps({"ctx": ctx, **args}, separators=(",", ":"))
                verdict = verdict_from_json(_guest_json(hook.call([request])))
        except PluginError as exc:
            raise PluginError(exc.message, procedure=self.name, version=self.version) from None
        except ProcedureError as exc:
            raise PluginError(
                f"{stage} failed: {exc.code}: {exc.message}",
                procedure=self.name,
                version=self.version,
            ) from None
        if verdict.action not in _STAGE_ACTIONS[stage]:
            raise PluginError(
                f"{stage} answered {verdict.action}, which that stage does not allow",
                procedure=self.name,
                version=self.version,
            )
        return verdict

    def _hook(self, session: Session, export: str) -> _core.Numeric:
        """The hook ``export`` as the core runs it whole on ``session``'s
        connection (hosted.rs: the version's limits and grants, its host
        functions in Rust, count-in-window and the rare ones in Python),
        made on first use per connection."""
        versions = session.hosted.setdefault((self.name, export), {})
        found = versions.get(self.version)
        if found is not None:
            return found
        module = self.module
        assert isinstance(module, BasicModule | ComponentModule)
        target: str | tuple[str | None, str] = export
        if isinstance(module, ComponentModule):
            iface, wit_name, _ = module.functions[export]
            target = (iface, wit_name)
        # What the hooks of a call (invoke.HostedHooks) read of a version.
        version = ProcedureVersion(
            name=self.name,
            version=self.version,
            abi=module.abi,
            export=export,
            signature=_REQUEST,
            capabilities=self.capabilities,
            limit_overrides={},
            module_sha256=self.sha256,
            created_at=0.0,
        )
        metrics = CallMetrics()  # the pipeline counts hook calls itself (Metrics)
        try:
            hook = self._hosted(session, module, target, version, metrics)
        except _core.CoreError as exc:
            code, message = exc.args
            raise core_error(code, message, None, [], self.limits) from None
        versions[self.version] = hook
        # A reloaded plugin's older versions go (and their instances with
        # them); two stay, for a candidate on probation beside the current.
        for old in sorted(versions)[:-2]:
            versions.pop(old, None)  # another thread on this connection may have
        return hook

    def _hosted(
        self,
        session: Session,
        module: BasicModule | ComponentModule,
        target: str | tuple[str | None, str],
        version: ProcedureVersion,
        metrics: CallMetrics,
    ) -> _core.Numeric:
        """``target`` of ``module`` as a hosted call on ``session``'s connection."""
        return _core.Numeric.hosted(
            module.core_pool(self.limits, self.capabilities),
            target,
            native.params_of(_REQUEST) if isinstance(module, BasicModule) else [],
            None,
            self.limits.to_json(),
            native.new_tally(),
            fault_hook(session, metrics, self.limits, version),
            _PluginHooks(session, metrics, self.limits, version, self._counter),
            session.gate,
            self.capabilities.core_grants,
            session.is_procedure,
            self.capabilities.can_write(),
            True,  # a JSON answer (Basic ABI) or a verdict record: the hooks make it
            (session.telemetry.logs, self.name, self.version),
        )

    def _counter(self, key: str, window_ms: int) -> int:
        return self._counters.count(self.name, key, window_ms)

    def _call_component(
        self, hook: _core.Numeric, ctx: dict[str, Any], args: dict[str, Any]
    ) -> Verdict:
        # The context record: a dict by WIT field name (ctx's keys are those).
        lowered: list[Any] = [ctx]
        for key, value in args.items():
            if key == "params":
                value = [value_variant(_value_from_json(v)) for v in value]
            elif key == "rows":
                value = [[value_variant(_value_from_json(v)) for v in row] for row in value]
            lowered.append(value)
        try:
            raw = hook.call_values(lowered)
        except (TypeError, ValueError) as exc:
            # An argument the hook's types cannot take: the guest never ran.
            raise InvalidArgument(str(exc)) from None
        return _verdict_from_component(raw)


class _PluginHooks(HostedHooks):
    """A hook's ``HostedHooks``: its answer is the plugin's own (a verdict
    record, or JSON text), and its calls may count in windows
    (plugin-host.count-in-window, a host function living in Python)."""

    def __init__(
        self,
        session: Session,
        metrics: CallMetrics,
        limits: Limits,
        version: ProcedureVersion,
        counter: Callable[[str, int], int],
    ) -> None:
        super().__init__(session, metrics, limits, version)
        self._counter = counter

    def context(self, seconds_left: float) -> CallContext:
        ctx = super().context(seconds_left)
        ctx.counter = self._counter
        return ctx

    def convert(self, value: Any) -> Any:
        return value


# --- metrics -------------------------------------------------------------------

_BUCKETS = (25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 0.1, 1.0)


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(_BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(_BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.sum += seconds
        self.count += 1


class Metrics:
    """Counters and latency histograms, rendered in Prometheus' text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, int, str, str], int] = {}
        self._latency: dict[tuple[str, int, str], _Histogram] = {}
        self._queries: dict[str, int] = {}
        self._query_latency = _Histogram()
        self._events: dict[tuple[str, str], int] = {}

    def hook(self, plugin: str, version: int, stage: str, outcome: str, seconds: float) -> None:
        with self._lock:
            key = (plugin, version, stage, outcome)
            self._calls[key] = self._calls.get(key, 0) + 1
            hist = self._latency.setdefault((plugin, version, stage), _Histogram())
            hist.observe(seconds)

    def query(self, outcome: str, seconds: float) -> None:
        with self._lock:
            self._queries[outcome] = self._queries.get(outcome, 0) + 1
            self._query_latency.observe(seconds)

    def event(self, plugin: str, kind: str) -> None:
        with self._lock:
            self._events[(plugin, kind)] = self._events.get((plugin, kind), 0) + 1

    def calls(self, plugin: str, stage: str | None = None) -> int:
        with self._lock:
            return sum(
                n for (p, _, s, _), n in self._calls.items() if p == plugin and stage in (None, s)
            )

    def render(self) -> str:
        out: list[str] = []
        with self._lock:
            out += [
                "# HELP heliosdb_plugin_calls_total Hook calls by plugin, version, stage, outcome.",
                "# TYPE heliosdb_plugin_calls_total counter",
            ]
            for (p, v, s, o), n in sorted(self._calls.items()):
                out.append(
                    f'heliosdb_plugin_calls_total{{plugin="{p}",version="{v}",stage="{s}",'
                    f'outcome="{o}"}} {n}'
                )
            out += [
                "# HELP heliosdb_plugin_duration_seconds Hook latency.",
                "# TYPE heliosdb_plugin_duration_seconds histogram",
            ]
            for (p, v, s), h in sorted(self._latency.items()):
                labels = f'plugin="{p}",version="{v}",stage="{s}"'
                out += _histogram_lines("heliosdb_plugin_duration_seconds", labels, h)
            out += [
                "# HELP heliosdb_queries_total Statements through the endpoint by outcome.",
                "# TYPE heliosdb_queries_total counter",
            ]
            for o, n in sorted(self._queries.items()):
                out.append(f'heliosdb_queries_total{{outcome="{o}"}} {n}')
            out += [
                "# HELP heliosdb_query_duration_seconds Statement latency including plugins.",
                "# TYPE heliosdb_query_duration_seconds histogram",
            ]
            out += _histogram_lines("heliosdb_query_duration_seconds", "", self._query_latency)
            out += [
                "# HELP heliosdb_plugin_events_total Reloads, rollbacks and load failures.",
                "# TYPE heliosdb_plugin_events_total counter",
            ]
            for (p, k), n in sorted(self._events.items()):
                out.append(f'heliosdb_plugin_events_total{{plugin="{p}",event="{k}"}} {n}')
        return "\n".join(out) + "\n"


def _histogram_lines(name: str, labels: str, h: _Histogram) -> list[str]:
    sep = "," if labels else ""
    lines = []
    running = 0
    for bound, n in zip(_BUCKETS, h.counts, strict=False):
        running += n
        lines.append(f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {running}')
    lines.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {h.count}')
    lines.append(f"{name}_sum{{{labels}}} {h.sum:.9f}" if labels else f"{name}_sum {h.sum:.9f}")
    lines.append(f"{name}_count{{{labels}}} {h.count}" if labels else f"{name}_count {h.count}")
    return lines


# --- the pipeline ----------------------------------------------------------------


@dataclass
class _Slot:
    """A plugin name's live state: what serves now, what served before, the A/B candidate."""

    spec: PluginSpec
    current: PluginVersion
    previous: PluginVersion | None = None
    candidate: PluginVersion | None = None
    on_probation: set[int] = field(default_factory=set)

    def choose(self, session_key: int) -> PluginVersion:
        # Stable per session: a session sees one version for its lifetime.
        bucket = zlib.crc32(f"{self.spec.name}:{session_key}".encode()) % 100
        if self.candidate is not None and bucket < self.spec.candidate_percent:
            return self.candidate
        return self.current


class Pipeline:
    """The ordered plugins every statement runs through."""

    def __init__(
        self,
        runtime: Runtime | None = None,
        settings: PipelineSettings | None = None,
    ) -> None:
        self.runtime = runtime or default_runtime()
        self.settings = settings or PipelineSettings()
        self.metrics = Metrics()
        self._counters = _Counters()
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._order: tuple[_Slot, ...] = ()
        self._versions = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._manifest: Path | None = None
        self._database: Database | None = None
        self._watch: threading.Thread | None = None
        self._stop = threading.Event()
        self._seen: dict[str, object] = {}

    # -- configuration ------------------------------------------------------

    def install(self, spec: PluginSpec) -> None:
        """Adds a plugin, or replaces its version if the spec changed. Loading
        happens before anything is swapped: a spec that fails to load leaves
        the pipeline as it was."""
        with self._lock:
            slot = self._slots.get(spec.name)
        new = self._prepare(spec, slot)
        if new is not None:
            self._commit({spec.name: new}, keep=None)

    def configure(self, specs: Sequence[PluginSpec]) -> None:
        """Makes the pipeline exactly ``specs``: new ones added, changed ones
        reloaded, missing ones removed - all in one swap, after every spec has
        loaded, so a manifest with one bad plugin changes nothing."""
        with self._lock:
            slots = dict(self._slots)
        prepared = {}
        for spec in specs:
            new = self._prepare(spec, slots.get(spec.name))
            if new is not None:
                prepared[spec.name] = new
        self._commit(prepared, keep={s.name for s in specs})

    def _prepare(self, spec: PluginSpec, slot: _Slot | None) -> _Slot | None:
        """The slot that serves ``spec`` next, loaded but not live yet; None
        if ``slot`` already serves it."""
        if slot is not None and slot.spec.fingerprint == spec.fingerprint:
            if slot.spec == spec and (spec.candidate is None or slot.candidate is not None):
                return None
            # Priority, enabled or the A/B share changed: the same versions serve.
            new = _Slot(**{**slot.__dict__, "spec": spec, "on_probation": set(slot.on_probation)})
        else:
            new = _Slot(spec=spec, current=self._load(spec, spec.wasm, spec.origin))
            if slot is not None:
                new.previous = slot.current
                new.on_probation.add(new.current.version)
        if spec.candidate is not None and new.candidate is None:
            origin = spec.candidate_origin or "candidate"
            new.candidate = self._load(spec, spec.candidate, origin)
            new.on_probation.add(new.candidate.version)
        return new

    def _commit(self, prepared: dict[str, _Slot], keep: set[str] | None) -> None:
        """Swaps in ``prepared`` and, unless ``keep`` is None, drops every
        plugin not named in it - one change under the lock."""
        with self._lock:
            reloaded = [
                name
                for name, new in prepared.items()
                if name in self._slots and new.current is not self._slots[name].current
            ]
            self._slots.update(prepared)
            if keep is not None:
                for name in [n for n in self._slots if n not in keep]:
                    del self._slots[name]
            self._reorder()
        for name in reloaded:
            self.metrics.event(name, "reload")
            version = prepared[name].current.version
            extra = {"plugin": name, "version": version, "event": "reload"}
            log.info("plugin reloaded", extra=extra)

    def _load(self, spec: PluginSpec, wasm: bytes, origin: str) -> PluginVersion:
        try:
            return PluginVersion(
                spec, next(self._versions), wasm, origin, self.runtime, self._counters
            )
        except ProcedureError as exc:
            self.metrics.event(spec.name, "load-failed")
            raise exc.located(spec.name, None) from None

    def remove(self, name: str) -> None:
        with self._lock:
            if name not in self._slots:
                raise InvalidArgument(f"no plugin named {name!r}")
            del self._slots[name]
            self._reorder()

    def _reorder(self) -> None:
        self._order = tuple(
            sorted(self._slots.values(), key=lambda s: (s.spec.priority, s.spec.name))
        )

    def plugins(self) -> list[dict[str, Any]]:
        """What SHOW PLUGINS lists."""
        rows = []
        for slot in self._order:
            rows.append(
                {
                    "name": slot.spec.name,
                    "version": slot.current.version,
                    "priority": slot.spec.priority,
                    "enabled": slot.spec.enabled,
                    "hooks": sorted(slot.current.hooks),
                    "sha256": slot.current.sha256,
                    "previous": slot.previous.version if slot.previous else None,
                    "candidate": slot.candidate.version if slot.candidate else None,
                    "candidate_percent": slot.spec.candidate_percent if slot.candidate else 0,
                    "calls": self.metrics.calls(slot.spec.name),
                    "origin": slot.current.origin,
                }
            )
        return rows

    # -- hot reload ----------------------------------------------------------

    def watch(self, manifest: Path | None = None, database: Path | None = None) -> None:
        """Loads the plugins of ``manifest`` (plugins.toml) and of ``database``
        (CREATE PLUGIN), then keeps the pipeline in step with both, and with
        the files the manifest names, from a background thread."""
        from .database import Database

        self._manifest = manifest
        if database is not None:
            self._database = Database.open(database)
        self._apply(self._read_sources())
        self._seen = self._stamps()
        self._watch = threading.Thread(
            target=self._watch_loop, name="heliosdb-plugins", daemon=True
        )
        self._watch.start()

    def close(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.join(timeout=5)
        if self._database is not None:
            self._database.close()
            self._database = None

    def _read_sources(self) -> tuple[PipelineSettings, list[PluginSpec]]:
        settings = self.settings
        specs: list[PluginSpec] = []
        if self._manifest is not None:
            settings, specs = read_manifest(self._manifest)
        if self._database is not None:
            names = {s.name for s in specs}
            for spec, _ in self._database.plugin_specs():
                if spec.name in names:
                    log.error(
                        "a plugin created with SQL has the name of one in the manifest;"
                        " the manifest's is used",
                        extra={"plugin": spec.name, "event": "name-clash"},
                    )
                    continue
                specs.append(spec)
        return settings, specs

    def _apply(self, sources: tuple[PipelineSettings, list[PluginSpec]]) -> None:
        settings, specs = sources
        self.configure(specs)
        self.settings = settings

    def _stamps(self) -> dict[str, object]:
        paths = []
        if self._manifest is not None:
            paths.append(str(self._manifest))
            # The files the manifest names, loaded or not: a reload that failed
            # on a half-copied plugin file is retried once the file changes.
            paths.extend(manifest_files(self._manifest))
        for slot in self._order:
            paths.append(slot.spec.origin)
            if slot.spec.candidate_origin:
                paths.append(slot.spec.candidate_origin)
        stamps: dict[str, object] = {}
        for p in paths:
            if p.startswith("sql:"):
                continue
            try:
                st = Path(p).stat()
                stamps[p] = (st.st_mtime_ns, st.st_size)
            except OSError:
                stamps[p] = None
        if self._database is not None:
            stamps["sql:"] = self._database.registry.plugins_stamp()
        return stamps

    def _watch_loop(self) -> None:
        while not self._stop.wait(self.settings.reload_interval):
            try:
                self.reload_if_changed()
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive a bad check
                # e.g. the database busy or gone for a moment: the next check retries.
                log.error(
                    "plugin reload check failed; the running plugins stay",
                    extra={"event": "reload-failed", "error": f"{type(exc).__name__}: {exc}"},
                )

    def reload_if_changed(self) -> bool:
        """Re-reads the sources if the manifest, a plugin file or the
        database's plugins changed; sources that fail to load are logged and
        the running plugins stay. Only a state of the files that holds still
        for ``settle_time``, and while it is read, is applied."""
        if self._manifest is None and self._database is None:
            return False
        stamps = self._stamps()
        if stamps == self._seen:
            return False
        while True:
            if self._stop.wait(self.settings.settle_time):
                return False
            settled = self._stamps()
            if settled == stamps:
                break
            stamps = settled
        try:
            sources = self._read_sources()
        except ProcedureError as exc:
            self._seen = stamps
            log.error(
                "plugin manifest unreadable; the running plugins stay",
                extra={"plugin": exc.procedure, "event": "reload-failed", "error": str(exc)},
            )
            return False
        if self._stamps() != stamps:
            return False  # written to while being read: the next check reads it again
        self._seen = stamps
        try:
            self._apply(sources)
        except ProcedureError as exc:
            log.error(
                "plugin reload failed; the running plugins stay",
                extra={"plugin": exc.procedure, "event": "reload-failed", "error": str(exc)},
            )
            return False
        self._seen = self._stamps()
        return True

    # -- probation and rollback ------------------------------------------------

    def _judge(self, slot_name: str, version: PluginVersion, failed: bool) -> None:
        with self._lock:
            slot = self._slots.get(slot_name)
            if slot is None or version.version not in slot.on_probation:
                return
            version.calls += 1
            version.failures += int(failed)
            s = self.settings
            rate = version.failures / version.calls
            if version.calls >= s.min_calls and rate > s.max_error_rate:
                slot.on_probation.discard(version.version)
                if slot.candidate is version:
                    new = _Slot(**{**slot.__dict__, "candidate": None})
                    what = "candidate dropped"
                elif slot.current is version and slot.previous is not None:
                    new = _Slot(**{**slot.__dict__, "current": slot.previous, "previous": None})
                    what = "rolled back"
                else:
                    return
                self._slots[slot_name] = new
                self._reorder()
                self.metrics.event(slot_name, "rollback")
                log.warning(
                    f"plugin {what}: {version.failures} of {version.calls} calls failed",
                    extra={"plugin": slot_name, "version": version.version, "event": "rollback"},
                )
            elif version.calls >= s.probation_calls:
                slot.on_probation.discard(version.version)

    # -- running a statement ---------------------------------------------------

    def executor(self, inner: Executor) -> Executor:
        """``inner`` (pgwire.execute_statement) with every plugin around it."""

        def run(session: WireSession, sql: str, params: Sequence[SqlValue]) -> Result:
            return self.run(session, sql, params, inner)

        return run

    def run(
        self,
        session: WireSession,
        sql: str,
        params: Sequence[SqlValue],
        inner: Executor,
    ) -> Result:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = self._run(session, sql, params, inner)
            outcome = "ok"
            return result
        except PluginRejected:
            outcome = "rejected"
            raise
        finally:
            self.metrics.query(outcome, time.perf_counter() - started)

    def _run(
        self, session: WireSession, sql: str, params: Sequence[SqlValue], inner: Executor
    ) -> Result:
        order = self._order  # the snapshot this statement runs with
        chosen = [
            (slot.spec.name, slot.choose(session.process_id)) for slot in order if slot.spec.enabled
        ]
        if not chosen:
            return inner(session, sql, params)
        query_id = next(self._query_ids)
        db_session = session.db.session
        tables: list[str] = []

        def stage(name: str, **args: Any) -> Iterator[tuple[PluginVersion, Verdict]]:
            for slot_name, version in chosen:
                if name not in version.hooks:
                    continue
                ctx = self._context(session, version, query_id, tables)
                t = time.perf_counter()
                try:
                    verdict = version.call(name, db_session, ctx, args)
                except PluginError as exc:
                    self.metrics.hook(
                        slot_name, version.version, name, "error", time.perf_counter() - t
                    )
                    self._judge(slot_name, version, failed=True)
                    log.error(
                        str(exc),
                        extra={
                            "plugin": slot_name,
                            "version": version.version,
                            "query_id": query_id,
                            "stage": name,
                            "event": "hook-failed",
                        },
                    )
                    raise
                outcome = "rejected" if verdict.action == "reject" else verdict.action
                self.metrics.hook(
                    slot_name, version.version, name, outcome, time.perf_counter() - t
                )
                self._judge(slot_name, version, failed=False)
                for key, value in verdict.set_session:
                    session.variables[key] = value
                    session.protected.add(key)
                if verdict.action == "reject":
                    sqlstate, message = verdict.payload
                    log.info(
                        "statement rejected",
                        extra={
                            "plugin": slot_name,
                            "version": version.version,
                            "query_id": query_id,
                            "stage": name,
                            "event": "rejected",
                        },
                    )
                    raise PluginRejected(
                        message, sqlstate=sqlstate, plugin=slot_name, version=version.version
                    )
                yield version, verdict
                args = {**args, **self._after(name, verdict, args)}

        for _, verdict in stage("pre-parse", sql=sql):
            if verdict.action == "rewrite":
                sql = verdict.payload
        if any("post-parse" in v.hooks for _, v in chosen):
            ast, found = _parsed(sql)
            tables[:] = found
            rewritten: str | None = None
            for version, verdict in stage("post-parse", ast=ast):
                if verdict.action == "rewrite":
                    try:
                        _rendered(verdict.payload)  # checked now, to blame this plugin
                    except sqlast.AstError as exc:
                        raise PluginError(
                            f"post-parse returned a bad AST: {exc.message}",
                            procedure=version.name,
                            version=version.version,
                        ) from None
                    rewritten = verdict.payload
            if rewritten is not None:
                sql, found = _rendered(rewritten)
                tables[:] = found
        elif any(("pre-execution" in v.hooks or "post-execution" in v.hooks) for _, v in chosen):
            # Unparsable: the context's tables stay empty; no stage here fails
            # closed on them.
            with contextlib.suppress(sqlast.AstError):
                tables[:] = _parsed(sql)[1]
        for _ in stage("pre-execution", sql=sql, params=[value_to_json(p) for p in params]):
            pass
        result = inner(session, sql, params)
        if result.columns and any("post-execution" in v.hooks for _, v in chosen):
            rows = [[value_to_json(v) for v in row] for row in result.rows]
            for version, verdict in stage(
                "post-execution", columns=list(result.columns), rows=rows
            ):
                if verdict.action == "replace-rows":
                    width = len(result.columns)
                    bad = next((r for r in verdict.payload if len(r) != width), None)
                    if bad is not None:
                        raise PluginError(
                            f"replace-rows gave a row of {len(bad)} values for {width} columns",
                            procedure=version.name,
                            version=version.version,
                        )
                    result.rows = list(verdict.payload)
        return result

    @staticmethod
    def _after(stage: str, verdict: Verdict, args: dict[str, Any]) -> dict[str, Any]:
        """The next plugin of a stage sees the previous one's rewrite."""
        if verdict.action == "rewrite":
            return {"sql": verdict.payload} if stage == "pre-parse" else {"ast": verdict.payload}
        if verdict.action == "replace-rows":
            return {"rows": [[value_to_json(v) for v in row] for row in verdict.payload]}
        return {}

    def _context(
        self, session: WireSession, version: PluginVersion, query_id: int, tables: list[str]
    ) -> dict[str, Any]:
        params = session.params
        return {
            "query-id": query_id,
            "user": params.get("user", ""),
            "database": params.get("database", ""),
            "application-name": params.get("application_name", ""),
            "connection": [[k, v] for k, v in params.items()],
            "session": [[k, v] for k, v in session.variables.items()],
            "tables": list(tables),
            "config": version.config_json,
        }


# --- parsing, cached ---------------------------------------------------------------
# Applications send the same statements again and again (prepared statements,
# ORMs); parsing and rendering with sqlglot costs hundreds of microseconds, a
# dictionary lookup nothing. Cached as text, since sqlglot trees are mutable.


@functools.lru_cache(maxsize=2048)
def _parsed(sql: str) -> tuple[str, tuple[str, ...]]:
    """The JSON AST of the one statement in ``sql`` and its tables."""
    trees = sqlast.parse(sql) if sql.strip() else []
    if len(trees) != 1:
        raise PluginRejected(
            f"the query plugins need exactly one statement per query, got {len(trees)}",
            sqlstate="42601",
            plugin="pipeline",
            version=0,
        )
    return sqlast.dumps(trees[0]), tuple(sqlast.tables(trees[0]))


@functools.lru_cache(maxsize=2048)
def _rendered(ast: str) -> tuple[str, tuple[str, ...]]:
    """The SQL text of a (rewritten) JSON AST and its tables."""
    tree = sqlast.loads(ast)
    return sqlast.render(tree), tuple(sqlast.tables(tree))


# --- observability ---------------------------------------------------------------


class MetricsServer:
    """``GET /metrics`` in Prometheus' text format, from a background thread."""

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 9187) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                body = metrics.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # scrapes every few seconds would drown the server's log

        self._http = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="heliosdb-metrics", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._http.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, with the plugin fields the pipeline logs
    (plugin, version, query_id, stage, event, error) when present."""

    FIELDS = ("plugin", "version", "query_id", "stage", "event", "error")

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                doc[name] = value
        return json.dumps(doc)
