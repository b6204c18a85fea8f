"""The PostgreSQL 3.0 protocol's framing: buffered reads with deadlines,
message bodies, outgoing messages, and the ways a connection ends."""

from __future__ import annotations

import io
import socket
import struct
import time

from .errors import WireError

MAX_STARTUP_BYTES = 10_000  # PostgreSQL's own limit for the startup packet
_CHUNK = 1024 * 1024  # the most one read asks the socket for
_TIMEOUT_SLACK = 0.05  # seconds a timeout may run late rather than cost a system call
_RECV = 65536  # what a read asks for at least, to take several small messages at once
INT32_MAX = 2**31 - 1
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 3
# A FATAL message to a client going away gets this long to leave.
FAREWELL_SECONDS = 1.0
# --- protocol plumbing -------------------------------------------------------------


class Disconnected(Exception):
    """The client went away (EOF or a socket error)."""


class ProtocolViolation(Exception):
    """A malformed message: report 08P01 and close the connection."""


class ReadTimeout(Exception):
    """The client did not send in time (see Input.read)."""


class Terminate(Exception):
    """End the connection with a FATAL error (a timeout of WireLimits, a
    failed authentication)."""

    def __init__(
        self, sqlstate: str, message: str, *, detail: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.error = WireError(sqlstate, message, detail=detail, hint=hint)


class Input:
    """What the client sends, buffered; every read waits until a deadline
    (``time.monotonic()`` seconds, None: forever) however slowly the bytes
    trickle in, and keeps no more than the bytes that actually came."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.pos = 0
        self.timeout: float | None = None

    def set_timeout(self, timeout: float | None) -> None:
        """The socket's timeout (reads and writes); a value at most
        _TIMEOUT_SLACK shorter than the current one keeps it (a system call)."""
        current = self.timeout
        if timeout is None or current is None or not 0 <= current - timeout <= _TIMEOUT_SLACK:
            self.sock.settimeout(timeout)
            self.timeout = timeout

    def pending(self) -> int:
        """Bytes received and not read yet."""
        return len(self.buffer) - self.pos

    @staticmethod
    def deadline(seconds: float) -> float | None:
        """The deadline ``seconds`` from now (0: none)."""
        return time.monotonic() + seconds if seconds else None

    def _recv(self, size: int, deadline: float | None) -> bytes:
        timeout = None
        if deadline is not None:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise ReadTimeout
        try:
            if timeout != self.timeout:
                self.set_timeout(timeout)
            data = self.sock.recv(size)
        except TimeoutError:
            raise ReadTimeout from None
        except (OSError, ValueError) as exc:
            raise Disconnected(str(exc)) from None
        if not data:
            raise Disconnected("end of stream")
        return data

    def read(self, n: int, deadline: float | None = None, seconds: float = 0) -> bytes:
        """Exactly ``n`` bytes, by ``deadline`` or within ``seconds`` (0:
        however long it takes) of when the read has to wait."""
        available = len(self.buffer) - self.pos
        if available >= n:
            start = self.pos
            self.pos += n
            return self.buffer[start : self.pos]
        if deadline is None:
            deadline = self.deadline(seconds)
        parts = [self.buffer[self.pos :]] if available else []
        have = available
        self.buffer, self.pos = b"", 0
        while have < n:
            data = self._recv(max(_RECV, min(n - have, _CHUNK)), deadline)
            if have + len(data) > n:  # the start of the next message: keep it
                self.buffer, self.pos = data, n - have
                data = data[: n - have]
            parts.append(data)
            have += len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def discard(self, n: int, seconds: float) -> None:
        """Skip ``n`` bytes, holding at most one chunk of them at a time."""
        available = len(self.buffer) - self.pos
        if available >= n:
            self.pos += n
            return
        deadline = self.deadline(seconds)
        n -= available
        self.buffer, self.pos = b"", 0
        while n:
            n -= len(self._recv(min(n, _CHUNK), deadline))


class Body:
    """Reads the fields of one message body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolViolation("insufficient data left in message")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int16(self) -> int:
        value: int = struct.unpack("!h", self.take(2))[0]
        return value

    def int32(self) -> int:
        value: int = struct.unpack("!i", self.take(4))[0]
        return value

    def byte(self) -> bytes:
        return self.take(1)

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ProtocolViolation("invalid string in message")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation("invalid UTF-8 in message") from None

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolViolation("invalid message format")


def cstr(text: str) -> bytes:
    return text.encode("utf-8", "replace").replace(b"\0", b"") + b"\0"


def message(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


# Messages that only the client sends; anything else is garbage.
FRONTEND_KINDS = frozenset(b"QPBDECHSXFdcf"[i : i + 1] for i in range(13))
# Extended-protocol messages: after an error the server skips them until Sync.
EXTENDED_KINDS = frozenset(b"PBDECH"[i : i + 1] for i in range(6))


def notice_fields(
    severity: str, state: str, message: str, detail: str | None, hint: str | None
) -> bytes:
    out = io.BytesIO()
    fields = [(b"S", severity), (b"V", severity), (b"C", state), (b"M", message)]
    if detail:
        fields.append((b"D", detail))
    if hint:
        fields.append((b"H", hint))
    for code, text in fields:
        out.write(code + cstr(text))
    out.write(b"\0")
    return out.getvalue()
