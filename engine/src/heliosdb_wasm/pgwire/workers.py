"""`serve --workers N`: N processes serving one listening socket.

Python runs one thread at a time per process, so one process serves its
clients' statements one after another however many cores there are. Each
worker is a whole `serve` process of its own (its plugins, its hot reload,
one SQLite connection per client; the database file in WAL mode is shared
as SQLite shares it), started with ``subprocess`` rather than ``fork`` so
nothing of the supervisor's threads or wasm engine is copied. They accept
on the socket the supervisor bound; a cancel request that reaches the wrong
worker is handed to the right one (server.Worker). The supervisor restarts
a worker that dies, at most once a second.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

_log = logging.getLogger("heliosdb_wasm.pgwire")

_RESTART_SECONDS = 1.0


def supervise(argv: Sequence[str], host: str, port: int, count: int) -> None:
    """Binds ``host:port``, runs ``count`` workers of ``serve argv`` on it and
    restarts those that die, until SIGINT or SIGTERM; then stops them all."""
    listener = socket.create_server((host, port), backlog=512)
    rundir = Path(tempfile.mkdtemp(prefix="heliosdb-serve-"))
    fd = listener.fileno()
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGTERM, stop)
    workers: dict[int, subprocess.Popen[bytes]] = {}
    started: dict[int, float] = {}

    def spawn(index: int) -> None:
        cmd = [sys.executable, "-m", "heliosdb_wasm.cli", "serve", *argv]
        cmd += ["--worker", f"{index}/{count}", "--listen-fd", str(fd), "--rundir", str(rundir)]
        workers[index] = subprocess.Popen(cmd, pass_fds=(fd,), stdin=subprocess.DEVNULL)
        started[index] = time.monotonic()

    try:
        for index in range(count):
            spawn(index)
        bound_host, bound_port = listener.getsockname()[:2]
        print(
            f"listening on {bound_host}:{bound_port} ({count} worker processes); Ctrl-C stops",
            flush=True,
        )
        while not stopping:
            time.sleep(0.2)
            for index, proc in list(workers.items()):
                code = proc.poll()
                if code is None or stopping:
                    continue
                _log.warning("serve: worker %d exited with %s; restarting it", index, code)
                print(f"worker {index} exited ({code}); restarting it", file=sys.stderr, flush=True)
                wait = started[index] + _RESTART_SECONDS - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                spawn(index)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for proc in workers.values():
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGINT)
        for proc in workers.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        listener.close()
        shutil.rmtree(rundir, ignore_errors=True)
