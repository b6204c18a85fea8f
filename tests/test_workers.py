"""`serve --workers N`: several processes on one port (pgwire/workers.py).

Clients of different workers run in parallel; a cancel request reaches the
session whichever worker accepted it; a worker that dies is replaced; the
supervisor's SIGTERM stops them all.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors

from heliosdb_wasm.pgwire.server import Server, Worker

INFINITE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    cmd = [sys.executable, "-m", "heliosdb_wasm.cli", "serve", "--db", str(tmp_path / "w.db")]
    cmd += ["--port", "0", "--auth", "trust", "--workers", "2"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "(2 worker processes)" in line, line + (proc.stderr.read() if proc.stderr else "")
    port = int(line.split("listening on 127.0.0.1:")[1].split()[0])
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def connect(port: int) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1", port=port, user="u", dbname="d", autocommit=True, connect_timeout=10
    )


def _workers_of(proc: subprocess.Popen[str]) -> list[int]:
    """The supervisor's live child processes."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _parent(int(entry.name)) == proc.pid:
            children.append(int(entry.name))
    return sorted(children)


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    state, parent = stat.rsplit(")", 1)[1].split()[:2]
    return -1 if state == "Z" else int(parent)  # a zombie serves nobody


def test_clients_are_served_by_the_workers_and_cancel_reaches_any_of_them(
    supervisor: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = supervisor
    conns = [connect(port) for _ in range(8)]
    try:
        seen = {c.info.backend_pid >> Worker.PID_BITS for c in conns}
        assert seen <= {0, 1}
        for c in conns:
            c.execute("CREATE TABLE IF NOT EXISTS t(x)")
            c.execute("INSERT INTO t VALUES (1)")
        assert conns[0].execute("SELECT count(*) FROM t").fetchone() == (8,)
        for c in conns[:4]:  # whichever worker the cancel request lands on
            timer = threading.Timer(0.3, c.cancel_safe)
            timer.start()
            started = time.monotonic()
            with pytest.raises(pg_errors.QueryCanceled):
                c.execute(INFINITE)
            assert time.monotonic() - started < 10
            timer.join()
    finally:
        for c in conns:
            c.close()
    assert len(_workers_of(proc)) == 2


def test_a_killed_worker_is_replaced(supervisor: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = supervisor
    before = _workers_of(proc)
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = _workers_of(proc)
        if len(now) == 2 and before[0] not in now:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no new worker: {_workers_of(proc)}")
    for _ in range(4):
        with connect(port) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_sigterm_stops_every_worker(supervisor: tuple[subprocess.Popen[str], int]) -> None:
    proc, _port = supervisor
    workers = _workers_of(proc)
    assert len(workers) == 2
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=40) == 0
    assert all(_parent(w) != proc.pid for w in workers)


def test_a_cancel_for_another_workers_session_is_handed_to_it(tmp_path: Path) -> None:
    # Two workers in one process, sharing one socket: the second is asked to
    # cancel the first one's session.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    rundir = tmp_path / "run"
    rundir.mkdir()
    servers = [
        Server(
            tmp_path / "w.db",
            auth="trust",
            worker=Worker(i, 2, os.dup(listener.fileno()), rundir),
        )
        for i in range(2)
    ]
    listener.close()
    for s in servers:
        s.start()
    try:
        with connect(port) as conn:
            pid = conn.info.backend_pid
            owner = pid >> Worker.PID_BITS
            other = servers[1 - owner]
            secret = servers[owner]._connections[pid][0].secret
            timer = threading.Timer(0.3, other._cancel, args=(pid, secret))
            timer.start()
            with pytest.raises(pg_errors.QueryCanceled):
                conn.execute(INFINITE)
            timer.join()
    finally:
        for s in servers:
            s.stop()


@pytest.mark.parametrize("flag", [["--metrics-port", "0"], ["--capture", "c.jsonl"]])
def test_one_process_options_are_refused_with_workers(tmp_path: Path, flag: list[str]) -> None:
    cmd = [sys.executable, "-m", "heliosdb_wasm.cli", "serve", "--db", str(tmp_path / "w.db")]
    done = subprocess.run(
        [*cmd, "--auth", "trust", "--workers", "2", *flag],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "not with --workers" in done.stderr
