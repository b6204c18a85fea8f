"""A throwaway PostgreSQL cluster on a loopback port, from Debian's server
binaries: what the proxy-mode tests put the wire endpoint in front of.

Host connections authenticate with SCRAM-SHA-256 (the default of PostgreSQL
15), so the tests see the proxy relay a real password exchange; the cluster's
own superuser works over its Unix socket without one. As root, the server
runs as the ``postgres`` user (initdb refuses root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "postgres"


def bindir() -> Path | None:
    """The newest installed server's programs."""
    for version in (17, 16, 15):
        path = Path(f"/usr/lib/postgresql/{version}/bin")
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Cluster:
    """``start()`` makes and starts it; ``stop()`` removes every trace."""

    def __init__(self, programs: Path) -> None:
        self.bindir = programs
        self.port = free_port()
        # Not under pytest's tmp_path: its parents are private to root, and
        # the server runs as another user.
        self.root = Path(tempfile.mkdtemp(prefix="heliosdb-pg-"))
        self.data = self.root / "data"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        full = list(cmd)
        if self._as_postgres:
            full = ["runuser", "-u", "postgres", "--", *full]
        return subprocess.run(
            full, check=True, capture_output=True, text=True, input=stdin, timeout=120
        )

    def start(self) -> None:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-w",
            "-l",
            str(self.root / "log"),
            "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def psql(self, script: str) -> str:
        """Runs ``script`` as the superuser over the Unix socket; its output."""
        done = self._run(
            str(self.bindir / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-h",
            str(self.root),
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
            stdin=script,
        )
        return done.stdout

    def log(self) -> str:
        try:
            return (self.root / "log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
