"""The wasmtime runtime shared by every database in the process.

One wasmtime Engine (compiled code is only shareable within an engine), one
epoch ticker thread that makes wall-clock deadlines possible, and a cache of
compiled modules and components keyed by their SHA-256: in memory, and on
disk so that the next process deserializes (milliseconds) instead of
compiling (seconds for a CPython component).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import mmap
import os
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import wasmtime
import wasmtime.component as wc

from . import _core
from .errors import AbiError, ProcedureError, ProcedureTrap, ResourceLimitExceeded
from .policy import Limits

EPOCH_TICK_SECONDS = 0.005
WASM_PAGE = 65536
MAX_WASM_STACK = 512 * 1024
# Set to a folder to move the compiled-code cache, or to "off" to disable it.
CACHE_ENV = "HELIOSDB_WASM_CACHE"
# The cache's size cap in MiB; least recently used entries go first.
CACHE_MAX_ENV = "HELIOSDB_WASM_CACHE_MAX_MB"
CACHE_MAX_BYTES = 2 << 30

T = TypeVar("T")
# A module's bytes, or how to read them: a module found in the compiled-code
# cache is never read from the registry at all.
Source = bytes | Callable[[], bytes]


def source_bytes(source: Source) -> bytes:
    """A module's bytes, read now if ``source`` is the function reading them."""
    return source() if callable(source) else source


class Runtime:
    """Owns the wasmtime Engine and the epoch ticker."""

    def __init__(self, max_wasm_stack: int = MAX_WASM_STACK) -> None:
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        config.wasm_component_model = True
        # A guest's runaway recursion must trap well before it could exhaust
        # the host thread's own stack. wasmtime fixes this per engine, so it
        # is a runtime setting (Database.open(runtime=Runtime(...))), not a
        # per-procedure limit.
        config.max_wasm_stack = max_wasm_stack
        self.max_wasm_stack = max_wasm_stack
        self.engine = wasmtime.Engine(config)
        # The Rust core's engine (heliosdb_wasm._core): every core module
        # runs there; components still run on wasmtime-py's engine above
        # until the core owns them too.
        self.core = _core.Runtime(max_wasm_stack)
        self.disk_cache = DiskCache.default(self._fingerprint(max_wasm_stack))
        self._components: dict[str, wc.Component] = {}
        self._lock = threading.Lock()
        self._ticker = threading.Thread(target=self._tick, name="heliosdb-wasm-epoch", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while True:
            time.sleep(EPOCH_TICK_SECONDS)
            self.engine.increment_epoch()

    @staticmethod
    def _fingerprint(max_wasm_stack: int) -> str:
        # Serialized code is only valid for the same wasmtime build and the
        # same engine settings; both are part of every cache key.
        settings = (
            importlib.metadata.version("wasmtime"),
            "fuel",
            "epoch",
            "component-model",
            max_wasm_stack,
        )
        return hashlib.sha256(repr(settings).encode()).hexdigest()[:16]

    def component(self, sha256: str, wasm: Source) -> wc.Component:
        return self._compile(
            self._components,
            sha256,
            "component",
            lambda: wc.Component(self.engine, source_bytes(wasm)),
            lambda path: wc.Component.deserialize_file(self.engine, str(path)),
        )

    def _compile(
        self,
        cache: dict[str, T],
        key: str,
        kind: str,
        build: Callable[[], T],
        load: Callable[[Path], T],
    ) -> T:
        with self._lock:
            hit = cache.get(key)
        if hit is not None:
            return hit
        compiled: T | None = None
        if self.disk_cache is not None:
            path = self.disk_cache.get(kind, key)
            if path is not None:
                try:
                    compiled = load(path)
                except wasmtime.WasmtimeError:
                    self.disk_cache.discard(kind, key)
        if compiled is None:
            try:
                compiled = build()
            except wasmtime.WasmtimeError as exc:
                raise AbiError(f"invalid WebAssembly: {_first_line(exc)}") from None
            if self.disk_cache is not None:
                self.disk_cache.put(kind, key, compiled.serialize())  # type: ignore[attr-defined]
        with self._lock:
            return cache.setdefault(key, compiled)

    def store(self, limits: Limits) -> wasmtime.Store:
        """A store that enforces ``limits`` (fuel and deadline are set per call)."""
        store = wasmtime.Store(self.engine)
        store.set_limits(
            memory_size=limits.memory_bytes,
            table_elements=limits.max_table_elements,
            instances=limits.max_instances,
            tables=limits.max_tables,
            memories=limits.max_memories,
        )
        arm(store, limits)
        return store


class DiskCache:
    """Compiled code on disk: per (kind, module hash, engine fingerprint) a
    ``.cwasm`` file exactly as wasmtime serialized it, and a ``.sum`` file
    with its size and CRC-32.

    The payload stays a plain wasmtime artifact so that wasmtime can map it
    (``deserialize_file``) instead of Python reading and copying 40 MB of
    compiled CPython (see the cold-start rows of ``nox -s bench``). The checksum is
    there to catch a truncated or damaged file (not tampering: the folder must
    be private to the user, because wasmtime trusts what it deserializes);
    such an entry is deleted and rebuilt. Both files are written to temporary
    names and renamed into place, never rewritten in place, so a mapped file
    never changes under a running process and concurrent processes at worst
    compile the same module twice.

    The folder is kept under ``max_bytes`` by deleting the least recently
    used entries after each write (a hit refreshes an entry's mtime).
    """

    def __init__(self, folder: Path, fingerprint: str, max_bytes: int = CACHE_MAX_BYTES) -> None:
        self.folder = folder
        self.fingerprint = fingerprint
        self.max_bytes = max_bytes

    @classmethod
    def default(cls, fingerprint: str) -> DiskCache | None:
        configured = os.environ.get(CACHE_ENV, "")
        if configured.lower() == "off":
            return None
        base = Path(configured) if configured else _user_cache() / "heliosdb-wasm"
        try:
            base.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError:
            return None
        try:
            max_bytes = int(os.environ.get(CACHE_MAX_ENV, "0")) << 20 or CACHE_MAX_BYTES
        except ValueError:
            max_bytes = CACHE_MAX_BYTES
        return cls(base, fingerprint, max_bytes)

    def path(self, kind: str, key: str) -> Path:
        return self.folder / f"{kind}-{key}-{self.fingerprint}.cwasm"

    def get(self, kind: str, key: str) -> Path | None:
        """The entry's file if it is complete and undamaged."""
        path = self.path(kind, key)
        try:
            size, crc = (int(x) for x in path.with_suffix(".sum").read_text().split())
            with path.open("rb") as f:
                if os.fstat(f.fileno()).st_size != size or size == 0:
                    raise ValueError("size")
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    if zlib.crc32(data) != crc:
                        raise ValueError("checksum")
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            self.discard(kind, key)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return path

    def put(self, kind: str, key: str, payload: bytes) -> None:
        target = self.path(kind, key)
        try:
            self._replace(target, payload)
            self._replace(
                target.with_suffix(".sum"), f"{len(payload)} {zlib.crc32(payload)}\n".encode()
            )
        except OSError:
            return  # a cache that cannot be written only costs a recompile
        self._trim(keep=target)

    def _trim(self, keep: Path) -> None:
        entries: list[tuple[float, int, Path]] = []
        try:
            with os.scandir(self.folder) as it:
                for entry in it:
                    if entry.name.endswith(".cwasm"):
                        st = entry.stat()
                        entries.append((st.st_mtime, st.st_size, Path(entry.path)))
        except OSError:
            return
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            if path != keep:
                path.unlink(missing_ok=True)
                path.with_suffix(".sum").unlink(missing_ok=True)
                total -= size

    def _replace(self, target: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
            raise

    def discard(self, kind: str, key: str) -> None:
        path = self.path(kind, key)
        path.unlink(missing_ok=True)
        path.with_suffix(".sum").unlink(missing_ok=True)


def _user_cache() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg else Path.home() / ".cache"


def deadline_ticks(seconds: float) -> int:
    """Epoch ticks for a wall-clock budget (at least one, so it can expire)."""
    return max(1, int(seconds / EPOCH_TICK_SECONDS))


def arm(store: wasmtime.Store, limits: Limits) -> None:
    """Refill fuel and reset the wall-clock deadline before a call."""
    store.set_fuel(limits.fuel)
    store.set_epoch_deadline(deadline_ticks(limits.timeout_seconds))


def translate_trap(
    exc: BaseException,
    limits: Limits,
    memory_bytes: int | None,
    guest_out_of_memory: bool = False,
) -> ProcedureError:
    """The typed error for a wasmtime failure during a call or instantiation.

    ``memory_bytes`` is the guest's memory size when it trapped: a guest whose
    memory.grow was refused at the limit typically traps soon after (Rust's
    allocator aborts), and reporting that as a memory limit is what the user
    needs to hear. wasmtime-py offers no hook that would see the refused grow
    itself, so a guest runtime that said "out of memory" on stderr just
    before trapping (``guest_out_of_memory``: Go, CPython) counts too.
    """
    if isinstance(exc, ProcedureError):
        return exc
    code = exc.trap_code if isinstance(exc, wasmtime.Trap) else None
    message = _first_line(exc)
    # wasmtime's text starts with a backtrace header and ends in
    # "Caused by: wasm trap: <reason>"; that reason is the useful part.
    text = str(exc)
    if "wasm trap:" in text:
        cause = text.rsplit("wasm trap:", 1)[1].strip()
        message = cause.splitlines()[0] if cause else message
    if code is None and isinstance(exc, wasmtime.WasmtimeError):
        # Component calls report traps as a WasmtimeError without a code.
        code = _TRAP_TEXT.get(message)
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return limit_error("fuel", message, limits)
    if code == wasmtime.TrapCode.INTERRUPT:
        return limit_error("timeout", message, limits)
    if code == wasmtime.TrapCode.STACK_OVERFLOW:
        return limit_error("stack", message, limits)
    for marker, limit in (
        ("table limits", "max_table_elements"),
        ("instance count too high", "max_instances"),
        ("table count too high", "max_tables"),
        ("memory count too high", "max_memories"),
    ):
        if marker in message:
            return limit_error(limit, message, limits)
    # Allocators grow memory in steps (a MiB or more), so "near" is a
    # sixteenth of the limit, at least a page.
    margin = max(WASM_PAGE, limits.memory_bytes // 16)
    at_limit = memory_bytes is not None and memory_bytes + margin > limits.memory_bytes
    if at_limit or guest_out_of_memory or "exceeds memory limits" in message:
        return limit_error("memory", message, limits)
    return ProcedureTrap(message, backtrace=trap_frames(exc))


def trap_frames(exc: BaseException) -> tuple[str, ...]:
    """A wasmtime-py trap's frames, innermost first, as the core writes them
    (``module!function @ offset``)."""
    if not isinstance(exc, wasmtime.Trap):
        return ()
    out = []
    for frame in exc.frames:
        name = frame.func_name or f"<wasm function {frame.func_index}>"
        out.append(f"{frame.module_name or '<module>'}!{name} @ {frame.module_offset:#x}")
    return tuple(out)


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
