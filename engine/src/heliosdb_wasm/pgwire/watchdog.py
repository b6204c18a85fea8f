"""Statement timeouts: one thread per server interrupts statements past
their deadline."""

from __future__ import annotations

import itertools
import math
import threading
import time
from typing import Protocol


class Interruptible(Protocol):
    """What the watchdog interrupts: a connection's running statement."""

    def interrupt(self) -> None: ...


class Watchdog:
    """One thread per server that interrupts statements past their
    statement_timeout (``Connection.interrupt`` needs no GIL on the SQLite
    side, unlike a progress handler). A statement that outlives its deadline
    is interrupted again every _REINTERRUPT seconds until it ends: a CALL runs
    several SQLite statements, and an interrupt between two is lost."""

    _REINTERRUPT = 0.05

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()  # taken directly: arm and disarm run per statement
        self._cond = threading.Condition(self._lock)
        self._due: dict[int, tuple[float, Interruptible]] = {}
        self._fired: set[int] = set()
        self._tokens = itertools.count(1)
        self._wake_at = math.inf  # when the thread means to look next
        self._stopped = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._cond:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def arm(self, conn: Interruptible, seconds: float) -> int:
        """Interrupt ``conn`` ``seconds`` from now unless disarmed first."""
        deadline = time.monotonic() + seconds
        with self._lock:
            token = next(self._tokens)
            self._due[token] = (deadline, conn)
            if deadline < self._wake_at:
                self._cond.notify()
        return token

    def disarm(self, token: int) -> bool:
        """Forget a deadline; whether it had fired. No interrupt follows."""
        with self._lock:
            self._due.pop(token, None)
            if token in self._fired:
                self._fired.discard(token)
                return True
            return False

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                self._wake_at = math.inf
                for token, (deadline, conn) in list(self._due.items()):
                    if deadline <= now:
                        self._fired.add(token)
                        conn.interrupt()  # sqlite3_interrupt: safe from any thread
                        deadline = now + self._REINTERRUPT
                        self._due[token] = (deadline, conn)
                    self._wake_at = min(self._wake_at, deadline)
                timeout = None if self._wake_at == math.inf else self._wake_at - now
                self._cond.wait(timeout)
