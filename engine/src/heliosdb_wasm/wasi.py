"""What a procedure's capabilities grant of WASI, for the core to build.

Go's wasip1 runtime and componentize-py's CPython import WASI for clocks,
randomness and stdout even when a procedure never touches a file. The core
grants exactly that (engine/core/src/wasi.rs): wasmtime's own WASI with no
arguments, no environment, no preopened directories, no network and an
empty stdin, unless the capabilities say otherwise; what the guest writes
to stdout and stderr becomes procedure log lines (info and warn).

Core modules may import any ``wasi_snapshot_preview1`` function (with nothing
preopened, the file and socket ones can only fail with EBADF); components may
import the WASI 0.2 interfaces below and nothing else of WASI.
"""

from __future__ import annotations

import os
from typing import Any

from . import _core
from .policy import Capabilities, Limits

WASIP1_MODULE = "wasi_snapshot_preview1"

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

# WASI 0.2 packages a component may import: the core's list
# (engine/core/src/component.rs), which links them. Filesystem and sockets
# are there because CPython's runtime imports them unconditionally; with no
# preopens and wasmtime's default deny-all socket policy they reach nothing.
WASIP2_INTERFACE_PREFIXES = tuple(_core.WASIP2_PREFIXES)


def is_wasip2_interface(name: str) -> bool:
    return name.startswith(WASIP2_INTERFACE_PREFIXES)


def wasi_grants(caps: Capabilities, limits: Limits) -> dict[str, Any]:
    """What ``caps`` grant of WASI, as the core's pools take it
    (engine/core/src/wasi.rs): the ``env:`` variables set now with their
    values, the ``filesystem:`` folders, ``stdout`` and ``random``."""
    return {
        "env": [(name, os.environ[name]) for name in caps.targets("env") if name in os.environ],
        "folders": [(folder.path, folder.writable) for folder in caps.folders()],
        "stdout": caps.allows("stdout"),
        "random": caps.allows("random"),
        "max_log_bytes": limits.max_log_bytes,
    }
