"""One loaded build of a plugin: its module, hooks and pool of instances."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import _core, native
from ..abi_basic import BasicModule
from ..abi_component import ComponentModule, value_variant
from ..errors import (
    InvalidArgument,
    PluginError,
    ProcedureError,
)
from ..hostapi import CallContext, Session
from ..invoke import HostedHooks, LoadedModule, fault_hook, load
from ..policy import Limits
from ..registry import ProcedureVersion, sha256_hex
from ..runtime import Runtime, core_error
from ..telemetry import Metrics as CallMetrics
from ..values import Column, Signature, SqlType
from .manifest import HOOKS, PluginSpec
from .verdicts import (
    STAGE_ACTIONS,
    Verdict,
    guest_json,
    value_from_json,
    verdict_from_component,
    verdict_from_json,
)

_REQUEST = Signature(params=(Column("request", SqlType.JSON),), returns=SqlType.JSON)


class Counters:
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
        counters: Counters,
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
                verdict = verdict_from_json(guest_json(hook.call([request])))
        except PluginError as exc:
            raise PluginError(exc.message, procedure=self.name, version=self.version) from None
        except ProcedureError as exc:
            raise PluginError(
                f"{stage} failed: {exc.code}: {exc.message}",
                procedure=self.name,
                version=self.version,
            ) from None
        if verdict.action not in STAGE_ACTIONS[stage]:
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
                value = [value_variant(value_from_json(v)) for v in value]
            elif key == "rows":
                value = [[value_variant(value_from_json(v)) for v in row] for row in value]
            lowered.append(value)
        try:
            raw = hook.call_values(lowered)
        except (TypeError, ValueError) as exc:
            # An argument the hook's types cannot take: the guest never ran.
            raise InvalidArgument(str(exc)) from None
        return verdict_from_component(raw)


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


def check(spec: PluginSpec, runtime: Runtime) -> None:
    """Loads ``spec`` once (module, hooks, a verifying instance) and lets it go."""
    PluginVersion(spec, 0, spec.wasm, spec.origin, runtime, Counters())
