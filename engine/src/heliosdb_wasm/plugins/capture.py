"""``serve --capture FILE``: the statements clients send, as JSON lines that
``heliosdb-wasm plugin replay`` runs through plugin versions
(docs/plugins.md §9).

Each line is one statement as the pipeline received it, before any plugin
ran::

    {"time": "2026-01-31T12:00:00.123Z", "connection": 7,
     "parameters": {"user": "alice", "database": "shop", "password": "<redacted>"},
     "session": {"tenant": "acme", ...}, "sql": "SELECT ...", "params": [{"integer": 5}]}

``parameters`` are the connection's startup parameters and ``session`` its
variables at that moment (including those plugins set earlier), each with
the values of secret-looking names (password, token, jwt, secret, api key,
credential) replaced by ``<redacted>``. ``params`` (the bound values, in the
JSON form of docs/plugins.md §3) only with ``capture_params``: they are
the data itself.

Writing never holds up a statement: records go through a bounded queue to a
writer thread, which takes them in batches (woken every ``_BATCH_SECONDS``,
not per record: a wake-up per statement would hand the GIL back and forth
twice a statement); when the disk falls behind and the queue is full,
records are dropped and counted (and logged), not waited for. The file is rotated when a
line would take it past ``max_bytes``: FILE becomes FILE.1 (replacing an
older FILE.1), so the capture holds at most twice ``max_bytes``. A write
that fails (disk full, file gone) stops the capture, with an error logged;
the server goes on.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import InvalidArgument, PluginError
from ..values import SqlValue
from .verdicts import value_from_json, value_to_json

if TYPE_CHECKING:
    from ..pgwire import WireSession

log = logging.getLogger("heliosdb_wasm.plugins")

REDACTED = "<redacted>"
_SECRET = re.compile(
    r"pass(word|wd)?|secret|token|jwt|api[_.-]?key|credential|private[_.-]?key", re.IGNORECASE
)
# A `-c name=value` (or `--name=value`) setting of the startup `options` whose name is secret.
_SECRET_OPTION = re.compile(r"((?:-c\s*|--)([\w.-]+)=)((?:\\.|\S)*)")
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_QUEUE = 10_000
_BATCH_SECONDS = 0.05


@functools.lru_cache(maxsize=4096)  # the same few dozen names, statement after statement
def _secret(name: str) -> bool:
    return _SECRET.search(name) is not None


def redacted(values: Mapping[str, str]) -> dict[str, str]:
    """``values`` with secret-looking names' values replaced, ``options`` included."""
    out = {}
    for name, value in values.items():
        if _secret(name):
            out[name] = REDACTED
        elif name == "options":
            out[name] = _SECRET_OPTION.sub(
                lambda m: m.group(1) + (REDACTED if _secret(m.group(2)) else m.group(3)),
                value,
            )
        else:
            out[name] = value
    return out


class Capture:
    """Appends the statements of a server to ``path`` from a thread of its own."""

    def __init__(
        self, path: Path, *, capture_params: bool = False, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        if max_bytes < 1024:
            raise InvalidArgument(
                f"the capture size limit must be at least 1024 bytes, got {max_bytes}"
            )
        self.path = path
        self.capture_params = capture_params
        self.max_bytes = max_bytes
        self.written = 0
        self.dropped = 0
        self.rotations = 0
        try:
            self._file: IO[str] | None = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise InvalidArgument(f"cannot write the capture file {path}: {exc.strerror}") from None
        self._size = self._file.tell()
        # Appended by connection threads, taken by the writer: deque's
        # append and popleft are atomic.
        self._pending: deque[dict[str, Any]] = deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, name="heliosdb-capture", daemon=True)
        self._thread.start()

    def record(self, session: WireSession, sql: str, params: Sequence[SqlValue]) -> None:
        """Queues one statement; never blocks (a full queue drops it)."""
        if self._file is None:
            return
        doc: dict[str, Any] = {
            "time": time.time(),
            "connection": session.process_id,
            "parameters": dict(session.params),
            "session": dict(session.variables),
            "sql": sql,
        }
        if self.capture_params:
            doc["params"] = list(params)
        if len(self._pending) < _QUEUE:
            self._pending.append(doc)
        else:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "statement capture falling behind: records dropped",
                    extra={"event": "capture-dropped", "error": f"{self.dropped} so far"},
                )

    def close(self) -> None:
        """Writes what is queued and closes the file."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _write(self) -> None:
        while True:
            stopping = self._stop.wait(_BATCH_SECONDS)
            try:
                while self._pending:
                    self._append(_line(self._pending.popleft(), self.capture_params))
            except OSError as exc:
                log.error(
                    "statement capture stopped: cannot write",
                    extra={"event": "capture-failed", "error": f"{self.path}: {exc.strerror}"},
                )
                self._close_file()
                return
            self._flush()
            if stopping:
                break
        self._close_file()

    def _append(self, line: str) -> None:
        size = len(line.encode("utf-8"))
        if size > self.max_bytes:
            self.dropped += 1  # one statement larger than the whole limit
            return
        if self._size + size > self.max_bytes and self._size > 0:
            self._rotate()
        assert self._file is not None
        self._file.write(line)
        self._size += size
        self.written += 1

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        os.replace(self.path, f"{self.path}.1")
        self._file = self.path.open("w", encoding="utf-8")
        self._size = 0
        self.rotations += 1

    def _flush(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.flush()

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


def _line(doc: dict[str, Any], with_params: bool) -> str:
    """One record as its JSON line: made on the writer thread, off the
    statement's path."""
    t = doc["time"]
    out: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
        + f".{int(t * 1000) % 1000:03d}Z",
        "connection": doc["connection"],
        "parameters": redacted(doc["parameters"]),
        "session": redacted(doc["session"]),
        "sql": doc["sql"],
    }
    if with_params:
        out["params"] = [value_to_json(v) for v in doc["params"]]
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n"


# --- reading a capture -------------------------------------------------------------------


@dataclass(frozen=True)
class Captured:
    """One captured statement."""

    line: int
    time: str
    connection: int
    parameters: dict[str, str]
    session: dict[str, str]
    sql: str
    params: tuple[SqlValue, ...] | None


def read_capture(path: Path) -> list[Captured]:
    """The statements of a capture file; a line that is not a capture
    record is an InvalidArgument naming the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgument(f"cannot read the capture {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{path}: not UTF-8 text: {exc}") from None
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise InvalidArgument(f"{where}: not JSON: {exc}") from None
        records.append(_captured(doc, number, where))
    return records


def _captured(doc: Any, number: int, where: str) -> Captured:
    if not isinstance(doc, dict) or not isinstance(doc.get("sql"), str):
        raise InvalidArgument(f'{where}: a capture record is an object with a "sql" string')

    def strings(key: str) -> dict[str, str]:
        value = doc.get(key, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise InvalidArgument(f"{where}: {key} must be an object of strings")
        return dict(value)

    connection = doc.get("connection", 0)
    if not isinstance(connection, int) or isinstance(connection, bool):
        raise InvalidArgument(f"{where}: connection must be an integer")
    params: tuple[SqlValue, ...] | None = None
    if "params" in doc:
        if not isinstance(doc["params"], list):
            raise InvalidArgument(f"{where}: params must be a list")
        try:
            params = tuple(value_from_json(v) for v in doc["params"])
        except PluginError as exc:
            raise InvalidArgument(f"{where}: params: {exc.message}") from None
    return Captured(
        line=number,
        time=str(doc.get("time", "")),
        connection=connection,
        parameters=strings("parameters"),
        session=strings("session"),
        sql=doc["sql"],
        params=params,
    )
