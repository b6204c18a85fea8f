"""The runtime shared by every database in the process: the Rust core's
engine (``heliosdb_wasm._core``), its epoch ticker and its compiled-code
cache, keyed by SHA-256 and kept on disk so that the next process maps
compiled code (milliseconds) instead of compiling (seconds for a CPython
component); and the typed errors of what the core reports.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from . import _core
from .errors import AbiError, ProcedureError, ProcedureTrap, ResourceLimitExceeded
from .policy import Limits

MAX_WASM_STACK = 512 * 1024
# Set to a folder to move the compiled-code cache, or to "off" to disable it
# (read by the core: engine/core/src/cache.rs).
CACHE_ENV = "HELIOSDB_WASM_CACHE"
# The cache's size cap in MiB; least recently used entries go first.
CACHE_MAX_ENV = "HELIOSDB_WASM_CACHE_MAX_MB"

# A module's bytes, or how to read them: a module found in the compiled-code
# cache is never read from the registry at all.
Source = bytes | Callable[[], bytes]


def source_bytes(source: Source) -> bytes:
    """A module's bytes, read now if ``source`` is the function reading them."""
    return source() if callable(source) else source


class Runtime:
    """The core's engine, with its epoch ticker and compiled-code cache."""

    def __init__(self, max_wasm_stack: int = MAX_WASM_STACK) -> None:
        # A guest's runaway recursion must trap well before it could exhaust
        # the host thread's own stack. wasmtime fixes this per engine, so it
        # is a runtime setting (Database.open(runtime=Runtime(...))), not a
        # per-procedure limit.
        self.max_wasm_stack = max_wasm_stack
        self.core = _core.Runtime(max_wasm_stack)


def limit_error(limit: str, detail: str, limits: Limits) -> ResourceLimitExceeded:
    """The error for a runtime limit, worded the same whichever engine saw it."""
    if limit == "fuel":
        message = f"fuel exhausted (limit {limits.fuel} units)"
    elif limit == "timeout":
        message = f"wall-clock limit of {limits.timeout_seconds:g} s exceeded"
    elif limit == "stack":
        message = "wasm stack exhausted"
    elif limit == "memory":
        message = f"memory limit of {limits.memory_bytes // 1024 // 1024} MiB reached ({detail})"
    else:
        message = f"{limit} ({getattr(limits, limit, '?')}) exceeded: {detail}"
    return ResourceLimitExceeded(message, limit=limit)


def core_error(
    code: str, message: str, limit: str | None, frames: list[str], limits: Limits
) -> ProcedureError:
    """The typed error for a failure the Rust core reports (its CallError:
    the limit is exact, from wasmtime's ResourceLimiter, never inferred)."""
    if code == "limit-exceeded" and limit is not None:
        return limit_error(limit, message, limits)
    if code == "trap":
        return ProcedureTrap(message, backtrace=tuple(frames))
    if code == "abi-error":
        return AbiError(message)
    return ProcedureError(message, code=code)


def host_bug(exc: BaseException) -> ProcedureError:
    """The typed error for what a host function raised that is not an
    engine error (a bug): the call fails as a trap, naming it."""
    if isinstance(exc, ProcedureError):
        return exc
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return ProcedureTrap(first)


_default: Runtime | None = None
_default_lock = threading.Lock()


def default_runtime() -> Runtime:
    global _default
    with _default_lock:
        if _default is None:
            _default = Runtime()
        return _default
