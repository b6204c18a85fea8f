"""The wasmtime runtime shared by every database in the process.

One wasmtime Engine (compiled code is only shareable within an engine), one
epoch ticker thread that makes wall-clock deadlines possible, and an in-memory
cache of compiled modules and components keyed by their SHA-256.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import wasmtime
import wasmtime.component as wc

from .errors import AbiError, ProcedureError, ProcedureTrap, ResourceLimitExceeded
from .policy import Limits

EPOCH_TICK_SECONDS = 0.005
WASM_PAGE = 65536

T = TypeVar("T")


class Runtime:
    """Owns the wasmtime Engine and the epoch ticker."""

    def __init__(self) -> None:
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        config.wasm_component_model = True
        # A guest's runaway recursion must trap well before it could exhaust
        # the host thread's own stack.
        config.max_wasm_stack = 512 * 1024
        self.engine = wasmtime.Engine(config)
        self._modules: dict[str, wasmtime.Module] = {}
        self._components: dict[str, wc.Component] = {}
        self._lock = threading.Lock()
        self._ticker = threading.Thread(target=self._tick, name="heliosdb-wasm-epoch", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while True:
            time.sleep(EPOCH_TICK_SECONDS)
            self.engine.increment_epoch()

    def module(self, sha256: str, wasm: bytes) -> wasmtime.Module:
        return self._compile(self._modules, sha256, lambda: wasmtime.Module(self.engine, wasm))

    def component(self, sha256: str, wasm: bytes) -> wc.Component:
        return self._compile(self._components, sha256, lambda: wc.Component(self.engine, wasm))

    def _compile(self, cache: dict[str, T], key: str, build: Callable[[], T]) -> T:
        with self._lock:
            hit = cache.get(key)
        if hit is not None:
            return hit
        try:
            compiled = build()
        except wasmtime.WasmtimeError as exc:
            raise AbiError(f"invalid WebAssembly: {_first_line(exc)}") from None
        with self._lock:
            return cache.setdefault(key, compiled)

    def store(self, limits: Limits) -> wasmtime.Store:
        """A store that enforces ``limits`` (fuel and deadline are set per call)."""
        store = wasmtime.Store(self.engine)
        store.set_limits(memory_size=limits.memory_bytes, instances=1000, tables=100, memories=4)
        arm(store, limits)
        return store


def arm(store: wasmtime.Store, limits: Limits) -> None:
    """Refill fuel and reset the wall-clock deadline before a call."""
    store.set_fuel(limits.fuel)
    store.set_epoch_deadline(max(1, int(limits.timeout_seconds / EPOCH_TICK_SECONDS)))


def translate_trap(exc: BaseException, limits: Limits, memory_bytes: int | None) -> ProcedureError:
    """The typed error for a wasmtime failure during a call or instantiation.

    ``memory_bytes`` is the guest's memory size when it trapped: a guest whose
    memory.grow was refused at the limit typically traps soon after (Rust's
    allocator aborts), and reporting that as a memory limit is what the user
    needs to hear.
    """
    if isinstance(exc, ProcedureError):
        return exc
    code = exc.trap_code if isinstance(exc, wasmtime.Trap) else None
    message = _first_line(exc)
    if code is None and isinstance(exc, wasmtime.WasmtimeError):
        # Component calls report traps as a WasmtimeError whose text ends in
        # "Caused by: wasm trap: <reason>"; that reason is the useful part.
        text = str(exc)
        cause = text.rsplit("wasm trap:", 1)[1].strip() if "wasm trap:" in text else ""
        message = cause.splitlines()[0] if cause else message
        code = _TRAP_TEXT.get(message)
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return ResourceLimitExceeded(f"fuel exhausted (limit {limits.fuel} units)", limit="fuel")
    if code == wasmtime.TrapCode.INTERRUPT:
        return ResourceLimitExceeded(
            f"wall-clock limit of {limits.timeout_seconds:g} s exceeded",
            limit="timeout",
        )
    if code == wasmtime.TrapCode.STACK_OVERFLOW:
        return ResourceLimitExceeded("wasm stack exhausted", limit="stack")
    at_limit = memory_bytes is not None and memory_bytes + WASM_PAGE > limits.memory_bytes
    if at_limit or "exceeds memory limits" in message:
        return ResourceLimitExceeded(
            f"memory limit of {limits.memory_bytes // 1024 // 1024} MiB reached ({message})",
            limit="memory",
        )
    return ProcedureTrap(message)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_TRAP_TEXT = {
    "all fuel consumed by WebAssembly": wasmtime.TrapCode.OUT_OF_FUEL,
    "interrupt": wasmtime.TrapCode.INTERRUPT,
    "call stack exhausted": wasmtime.TrapCode.STACK_OVERFLOW,
}

_default: Runtime | None = None
_default_lock = threading.Lock()


def default_runtime() -> Runtime:
    global _default
    with _default_lock:
        if _default is None:
            _default = Runtime()
        return _default
