"""The listening side: accepting clients (and refusing those over
max_connections), cancel requests, statement timeouts, shutdown."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import itertools
import logging
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..database import Database
from ..errors import InvalidArgument
from ..policy import Limits
from .auth import AUTH_MODES, AuthMode
from .connection import Connection
from .protocol import (
    CANCEL_REQUEST,
    FAREWELL_SECONDS,
    GSSENC_REQUEST,
    MAX_STARTUP_BYTES,
    SSL_REQUEST,
    message,
    notice_fields,
)
from .proxy import ProxyConnection, Upstream
from .session import Executor, WireLimits, execute_statement
from .tls import TlsConfig
from .watchdog import Watchdog

if TYPE_CHECKING:
    from ..plugins.pipeline import Pipeline

_log = logging.getLogger("heliosdb_wasm.pgwire")

# --- the server -----------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine: localhost,
    127.0.0.0/8 or ::1 (also as an IPv4-mapped address). "" and 0.0.0.0
    are every interface, and any other name may resolve anywhere."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


# A client refused for max_connections may take this long to send its startup
# packet (to be told why in its own protocol), and this many may wait at once;
# more are closed with a best-effort error and nothing read.
_REFUSAL_SECONDS = 5.0
_MAX_REFUSALS = 32
_TOO_MANY = message(
    b"E",
    notice_fields("FATAL", "53300", "sorry, too many clients already", None, None),
)


@dataclass
class _Refusal:
    """A connection over max_connections, handled on the accepting thread:
    at most MAX_STARTUP_BYTES read, SSL refused, then FATAL 53300 (a cancel
    request is still honoured)."""

    sock: socket.socket
    deadline: float
    data: bytes = b""
    negotiations: int = 0

    def readable(self, server: Server) -> bool:
        """Take what arrived; whether the refusal is over."""
        try:
            chunk = self.sock.recv(MAX_STARTUP_BYTES + 16 - len(self.data))
        except BlockingIOError:
            return False
        except OSError:
            return True
        if not chunk:
            return True
        self.data += chunk
        while True:
            if len(self.data) < 8:
                return False
            length, code = struct.unpack_from("!ii", self.data)
            if not 8 <= length <= MAX_STARTUP_BYTES:
                break  # garbage: refused all the same
            if len(self.data) < length:
                return False
            packet, self.data = self.data[:length], self.data[length:]
            if code in (SSL_REQUEST, GSSENC_REQUEST) and self.negotiations < 2:
                self.negotiations += 1
                self.send(b"N")
                continue
            if code == CANCEL_REQUEST and length == 16:
                server._cancel(*struct.unpack_from("!ii", packet, 8))
                return True
            break
        self.send(_TOO_MANY)
        return True

    def send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.sock.send(data)  # a few bytes into an empty socket buffer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Server:
    """A PostgreSQL wire-protocol server for one database file.

    Binds at construction (``port=0`` picks a free port; see ``address``).
    ``start()`` serves in a background thread, ``serve_forever()`` in the
    calling one; ``stop()`` (or leaving the ``with`` block) stops accepting,
    closes every client connection and joins the threads. The server turns
    the file's journal into WAL so readers and a writer on different
    connections do not block each other. ``wire_limits`` bounds what each
    client may cost (WireLimits); ``limits`` are the procedures' own.

    With ``upstream`` the server is a proxy in front of that PostgreSQL
    server (proxy.py): statements go there, through ``pipeline``'s hooks,
    and the database file holds only what the plugins use.

    ``auth``: ``"scram"`` (the default) lets in only roles of the database
    that prove their password with SCRAM-SHA-256 (``Database.create_role``);
    ``"trust"`` lets anyone in as the user they name, and is refused unless
    ``host`` is a loopback address. ``tls`` (``TlsConfig.load``) answers
    SSLRequests with TLS, and with ``required`` refuses clients without it.
    """

    def __init__(
        self,
        db_path: str | Path,
        *,
        executor: Executor = execute_statement,
        host: str = "127.0.0.1",
        port: int = 5433,
        limits: Limits | None = None,
        allow_ddl: bool = False,
        wire_limits: WireLimits | None = None,
        upstream: Upstream | None = None,
        pipeline: Pipeline | None = None,
        auth: AuthMode = "scram",
        tls: TlsConfig | None = None,
        worker: Worker | None = None,
    ) -> None:
        if str(db_path) in ("", ":memory:"):
            raise InvalidArgument(
                "the server needs a database file: every client connection opens its own, "
                "and in-memory databases are not shared"
            )
        if auth not in AUTH_MODES:
            raise InvalidArgument(f"unknown auth mode {auth!r} (known: {', '.join(AUTH_MODES)})")
        if auth == "trust" and not is_loopback(host):
            raise InvalidArgument(
                f"--auth trust lets anyone who can reach {host or 'every address'} in as any "
                "user: it is allowed only on a loopback address (127.0.0.1, ::1, localhost); "
                "use --auth scram (create a role with `heliosdb-wasm role create`)"
            )
        self.auth: AuthMode = auth
        self.tls = tls
        self.db_path = str(db_path)
        self.executor = executor
        self.limits = limits
        self.wire_limits = wire_limits or WireLimits()
        # Clients may not create procedures or plugins unless told so: one
        # that may create a procedure can read any table through it, whatever
        # the query plugins check (Database.serve_clients).
        self.allow_ddl = allow_ddl
        self.upstream = upstream
        self.pipeline = pipeline
        if upstream is not None:
            upstream.tls_context()  # a bad sslrootcert fails here, not at the first client
        # Fail here, not at the first client, if the file cannot be used;
        # and create the engine's schema once instead of racing at connect.
        with Database.open(self.db_path, limits=limits) as db:
            db.conn.execute("PRAGMA journal_mode = WAL")
        self.worker = worker
        if worker is None:
            self._listener = socket.create_server((host, port), backlog=128)
        else:
            # The socket the workers share: non-blocking, since the others
            # may have taken the connection that woke this one.
            self._listener = socket.socket(fileno=worker.listen_fd)
            self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: dict[int, tuple[Connection, threading.Thread]] = {}
        # A worker's process ids say which worker serves them (cancel requests
        # reach any worker).
        self._pids = itertools.count((worker.index << Worker.PID_BITS if worker else 0) + 1)
        self._cancels = _CancelInbox(self, worker) if worker is not None else None
        self._thread: threading.Thread | None = None
        self._watchdog = Watchdog(f"pgwire-watchdog-{self.address[1]}")
        self._closed = False

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Serve in a background thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self.serve_forever, name=f"pgwire-accept-{self.address[1]}", daemon=True
        )
        self._thread.start()

    def serve_forever(self) -> None:
        """Accept clients until ``stop()``."""
        self._watchdog.start()
        refusals: dict[socket.socket, _Refusal] = {}
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            try:
                while not self._stopping.is_set():
                    timeout = None
                    if refusals:
                        soonest = min(r.deadline for r in refusals.values())
                        timeout = max(soonest - time.monotonic(), 0)
                    for key, _events in selector.select(timeout):
                        if key.fileobj is self._wake_r or self._stopping.is_set():
                            return
                        if key.fileobj is self._listener:
                            self._accept(selector, refusals)
                        elif isinstance(key.data, _Refusal) and key.data.readable(self):
                            self._end_refusal(selector, refusals, key.data)
                    now = time.monotonic()
                    for refusal in [r for r in refusals.values() if r.deadline <= now]:
                        self._end_refusal(selector, refusals, refusal)
            finally:
                for refusal in list(refusals.values()):
                    self._end_refusal(selector, refusals, refusal)

    def _accept(
        self, selector: selectors.BaseSelector, refusals: dict[socket.socket, _Refusal]
    ) -> None:
        try:
            sock, _addr = self._listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                time.sleep(0.05)  # out of descriptors: let connections end first
            return
        with self._lock:
            full = len(self._connections) >= self.wire_limits.max_connections
        if not full:
            self._spawn(sock)
            return
        sock.setblocking(False)
        refusal = _Refusal(sock, time.monotonic() + _REFUSAL_SECONDS)
        if len(refusals) >= _MAX_REFUSALS:
            refusal.send(_TOO_MANY)
            refusal.close()
            return
        refusals[sock] = refusal
        selector.register(sock, selectors.EVENT_READ, refusal)

    @staticmethod
    def _end_refusal(
        selector: selectors.BaseSelector,
        refusals: dict[socket.socket, _Refusal],
        refusal: _Refusal,
    ) -> None:
        refusals.pop(refusal.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(refusal.sock)
        refusal.close()

    def _spawn(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pid = next(self._pids)
        conn = (
            ProxyConnection(self, sock, pid)
            if self.upstream is not None
            else Connection(self, sock, pid)
        )
        thread = threading.Thread(target=conn.serve, name=f"pgwire-{pid}", daemon=True)
        with self._lock:
            stopping = self._stopping.is_set()
            if not stopping:
                self._connections[pid] = (conn, thread)
        if stopping:
            conn._close()
            return
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: refused like one too many
            _log.warning("pgwire: cannot start a thread for connection %d", pid)
            with contextlib.suppress(OSError):
                sock.settimeout(FAREWELL_SECONDS)
                sock.sendall(_TOO_MANY)
            conn._close()

    def _forget(self, conn: Connection) -> None:
        with self._lock:
            self._connections.pop(conn.process_id, None)

    def _cancel(self, pid: int, secret: int) -> None:
        worker = self.worker
        if worker is not None and pid >> Worker.PID_BITS != worker.index:
            worker.forward_cancel(pid, secret)
            return
        with self._lock:
            found = self._connections.get(pid)
        if found is not None and found[0].secret == secret:
            found[0].interrupt()

    def stop(self) -> None:
        """Stop accepting, close client connections, join the threads."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            connections = list(self._connections.values())
        for conn, _thread in connections:
            conn.shutdown()
        for _conn, thread in connections:
            if thread is not threading.current_thread() and thread.ident is not None:
                thread.join(timeout=30)
                if thread.is_alive():
                    _log.warning("pgwire: %s did not stop within 30 s", thread.name)
        self._watchdog.stop()
        if self._cancels is not None:
            self._cancels.close()
        if not self._closed:
            self._closed = True
            for s in (self._listener, self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    s.close()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- several processes on one port -------------------------------------------------------


@dataclass(frozen=True)
class Worker:
    """This server is worker ``index`` of ``count`` processes accepting on
    one listening socket (``serve --workers``): Python runs one thread at a
    time per process, so clients served by different processes run in
    parallel. ``rundir`` holds each worker's cancel inbox."""

    index: int
    count: int
    listen_fd: int
    rundir: Path

    PID_BITS = 22  # process ids of worker i: i << 22 + 1, ...
    MAX_WORKERS = 64

    def inbox(self, index: int) -> str:
        return str(self.rundir / f"cancel-{index}.sock")

    def forward_cancel(self, pid: int, secret: int) -> None:
        """Hands a cancel request to the worker that serves ``pid``."""
        owner = pid >> self.PID_BITS
        if not 0 <= owner < self.count:
            return  # no such session: ignored, as PostgreSQL does
        with (
            contextlib.suppress(OSError),
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
        ):
            sock.sendto(struct.pack("!ii", pid, secret), self.inbox(owner))


class _CancelInbox:
    """A worker's Unix datagram socket for the cancel requests other workers
    received for its sessions."""

    def __init__(self, server: Server, worker: Worker) -> None:
        self._server = server
        path = worker.inbox(worker.index)
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(path)
        self._sock.settimeout(0.5)  # so close() is seen
        self._path = path
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"pgwire-cancels-{worker.index}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) == 8:
                pid, secret = struct.unpack("!ii", data)
                self._server._cancel(pid, secret)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(OSError):
            Path(self._path).unlink()
