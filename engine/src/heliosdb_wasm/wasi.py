"""Deny-by-default WASI for guests whose language runtimes need it.

Go's wasip1 runtime and componentize-py's CPython import WASI for clocks,
randomness and stdout even when a procedure never touches a file. The engine
grants exactly that: wasmtime's own WASI implementation configured with no
arguments, no environment, no preopened directories, no network and an empty
stdin. What the guest writes to stdout and stderr becomes procedure log lines
(info and warn).

Core modules may import any ``wasi_snapshot_preview1`` function (with nothing
preopened, the file and socket ones can only fail with EBADF); components may
import the WASI 0.2 interfaces below and nothing else of WASI.
"""

from __future__ import annotations

import atexit
import gc
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import wasmtime

from .policy import Capabilities, Limits

WASIP1_MODULE = "wasi_snapshot_preview1"
# errno of WASI preview 1 for a bad address.
WASI_EFAULT = 21
# The seed of the fixed "random" stream of procedures without `random`.
SEEDED_RANDOM = 0x48454C494F53

# Every function of WASI preview 1 (wasi_snapshot_preview1): importing one
# outside this list is a typo or a different ABI, refused at registration.
WASIP1_FUNCTIONS = frozenset(
    [
        "args_get",
        "args_sizes_get",
        "environ_get",
        "environ_sizes_get",
        "clock_res_get",
        "clock_time_get",
        "fd_advise",
        "fd_allocate",
        "fd_close",
        "fd_datasync",
        "fd_fdstat_get",
        "fd_fdstat_set_flags",
        "fd_fdstat_set_rights",
        "fd_filestat_get",
        "fd_filestat_set_size",
        "fd_filestat_set_times",
        "fd_pread",
        "fd_prestat_get",
        "fd_prestat_dir_name",
        "fd_pwrite",
        "fd_read",
        "fd_readdir",
        "fd_renumber",
        "fd_seek",
        "fd_sync",
        "fd_tell",
        "fd_write",
        "path_create_directory",
        "path_filestat_get",
        "path_filestat_set_times",
        "path_link",
        "path_open",
        "path_readlink",
        "path_remove_directory",
        "path_rename",
        "path_symlink",
        "path_unlink_file",
        "poll_oneoff",
        "proc_exit",
        "proc_raise",
        "sched_yield",
        "random_get",
        "sock_accept",
        "sock_recv",
        "sock_send",
        "sock_shutdown",
    ]
)

# WASI 0.2 packages a component may import. Filesystem and sockets are listed
# because CPython's runtime imports them unconditionally; with no preopens and
# wasmtime's default deny-all socket policy they can reach nothing.
WASIP2_INTERFACE_PREFIXES = (
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:io/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
)

# A guest printing in a loop must not grow the log without bound between
# newlines: longer lines are cut here.
MAX_LINE_BYTES = 8192
# Lines written outside any call (start function, _initialize) kept for the next.
MAX_HELD_LINES = 100
# What language runtimes print on stderr when an allocation fails (Go's
# runtime, CPython's MemoryError, Rust's std alloc error handler).
OUT_OF_MEMORY_MARKERS = ("out of memory", "MemoryError", "memory allocation of")


def says_out_of_memory(text: str) -> bool:
    return any(marker in text for marker in OUT_OF_MEMORY_MARKERS)


def is_wasip2_interface(name: str) -> bool:
    return name.startswith(WASIP2_INTERFACE_PREFIXES)


class LogSink(Protocol):
    def log(self, level: str, message: str) -> None: ...


class GuestOutput:
    """Line-buffers a guest's stdout and stderr into the current call's log.

    Output written while no call is running (by a start function or a
    reactor's ``_initialize``) is held and logged by the next call.
    """

    def __init__(self, forward: bool = True) -> None:
        self.sink: LogSink | None = None
        # Without the `stdout` capability lines are read (for out-of-memory
        # reports) but not logged.
        self.forward = forward
        self._partial = {"info": bytearray(), "warn": bytearray()}
        self._held: list[tuple[str, str]] = []
        # Set when the guest reported a failed allocation during this call.
        self.out_of_memory = False
        # What logging a line raised (the log-bytes limit): wasmtime calls the
        # writers from inside WASI, where an exception must not escape, so the
        # ABI raises it once the guest is back (``take_error``).
        self.error: Exception | None = None

    def writer(self, level: str) -> Callable[[bytes], None]:
        def write(data: bytes) -> None:
            buf = self._partial[level]
            buf += data
            while True:
                cut = buf.find(b"\n")
                if cut >= 0:
                    line, rest = bytes(buf[:cut]), cut + 1
                elif len(buf) > MAX_LINE_BYTES:
                    line, rest = bytes(buf[:MAX_LINE_BYTES]), MAX_LINE_BYTES
                else:
                    break
                del buf[:rest]
                self._emit(level, line)

        return write

    def _emit(self, level: str, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace").rstrip("\r")
        if level == "warn" and says_out_of_memory(text):
            self.out_of_memory = True
        if not self.forward or self.error is not None:
            return
        if self.sink is None:
            if len(self._held) < MAX_HELD_LINES:
                self._held.append((level, text))
            return
        try:
            self.sink.log(level, text)
        except Exception as exc:  # noqa: BLE001 - re-raised by take_error
            self.error = exc

    def take_error(self) -> Exception | None:
        error, self.error = self.error, None
        return error

    def begin(self, sink: LogSink) -> None:
        self.sink = sink
        self.out_of_memory = False
        held, self._held = self._held, []
        for level, text in held:
            sink.log(level, text)

    def end(self) -> None:
        """Flush unterminated output into the call's log and detach."""
        for level, buf in self._partial.items():
            if buf:
                self._emit(level, bytes(buf))
                buf.clear()
        self.sink = None


def wasi_config(output: GuestOutput, caps: Capabilities) -> wasmtime.WasiConfig:
    """The WASI context ``caps`` grant: clocks and captured stdio always; the
    ``env:`` variables and ``filesystem:`` folders listed; nothing else (no
    arguments, no stdin, no network)."""
    config = wasmtime.WasiConfig()
    config.stdout_custom = output.writer("info")
    config.stderr_custom = output.writer("warn")
    env = [(name, os.environ[name]) for name in caps.targets("env") if name in os.environ]
    if env:
        config.env = env
    for folder in caps.folders():
        config.preopen_dir(folder.path, folder.path, fs_mutable=folder.writable)
    return config


def wasi_grants(caps: Capabilities, limits: Limits) -> dict[str, Any]:
    """What ``caps`` grant of WASI, as the core's BasicPool takes it
    (engine/core/src/wasi.rs): the ``env:`` variables set now with their
    values, the ``filesystem:`` folders, ``stdout`` and ``random``."""
    return {
        "env": [(name, os.environ[name]) for name in caps.targets("env") if name in os.environ],
        "folders": [(folder.path, folder.writable) for folder in caps.folders()],
        "stdout": caps.allows("stdout"),
        "random": caps.allows("random"),
        "max_log_bytes": limits.max_log_bytes,
    }


def guest_output(caps: Capabilities) -> GuestOutput:
    return GuestOutput(forward=caps.allows("stdout"))


# wasmtime drops a store's WASI context, and with it the Python output
# callbacks, on a runtime thread; if that happens while the interpreter is
# shutting down the thread aborts noisily. Stores with WASI are therefore
# released explicitly at exit, while Python still runs.
class _HasStore(Protocol):
    def release(self) -> None: ...


_live: weakref.WeakSet[_HasStore] = weakref.WeakSet()
_live_lock = threading.Lock()


def track(owner: _HasStore) -> None:
    with _live_lock:
        _live.add(owner)


@atexit.register
def _release_all() -> None:
    # Unreachable instances in reference cycles (a traceback that kept a
    # frame, say) would otherwise be freed during finalization: collect
    # them now, while Python runs.
    gc.collect()
    with _live_lock:
        owners = list(_live)
        _live.clear()
    for owner in owners:
        owner.release()
    gc.collect()
