"""Under load and faults: threads transfer money between accounts through a wasm
procedure while some transfers trap, run out of fuel or time, or exceed their
memory. Afterwards every invariant of the ledger must hold: the total is
unchanged, each balance equals the replay of the recorded transfers, every
successful call left exactly one record, every failure was reported as a
typed error, the instance pools stayed bounded and memory did not grow.

HELIOSDB_SOAK_SECONDS sets the length of the run (default 6).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import apsw
import pytest

import heliosdb_wasm as h
from conftest import b64, wasm_of

ACCOUNTS = 10
OPENING_BALANCE = 1_000
THREADS = 4
# mode -> (what the transfer does, the error it must end in, its weight)
MODES = {
    0: ("completes", None, 80),
    1: ("traps after the debit", "trap", 8),
    2: ("spins after the debit", "limit-exceeded", 4),
    3: ("grows memory after the debit", "limit-exceeded", 8),
}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _setup(path: Path) -> None:
    with h.Database.open(path) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(
            "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);"
            "CREATE TABLE transfers(id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER,"
            " amount INTEGER);"
        )
        db.execute(
            "INSERT INTO accounts(id, balance) SELECT value, ? FROM json_each(?)",
            [OPENING_BALANCE, str(list(range(1, ACCOUNTS + 1)))],
        )
        db.execute(
            "CREATE PROCEDURE transfer(src BIGINT, dst BIGINT, amount BIGINT, mode BIGINT)"
            " RETURNS BIGINT LANGUAGE wasm"
            " CAPABILITIES ('write:accounts', 'read:accounts', 'write:transfers')"
            " WITH (fuel = 20000000, timeout_seconds = 2, memory_bytes = 4194304)"
            f" AS $wasm${b64(wasm_of('ledger'))}$wasm$"
        )


def test_soak_ledger_under_concurrent_faults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seconds = float(os.environ.get("HELIOSDB_SOAK_SECONDS", "6"))
    path = tmp_path / "ledger.db"
    _setup(path)
    injected: Counter[str] = Counter()
    observed: Counter[str] = Counter()
    unexpected: list[str] = []
    busy_retries = [0]
    done: list[tuple[int, int, int]] = []  # successful (src, dst, amount)
    lock = threading.Lock()
    rss: dict[str, int] = {}
    pool_sizes: list[int] = []
    start = time.monotonic()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        modes, weights = list(MODES), [m[2] for m in MODES.values()]
        with h.Database.open(path) as db:
            calls = 0
            while time.monotonic() - start < seconds:
                src, dst = rng.sample(range(1, ACCOUNTS + 1), 2)
                amount = rng.randint(1, 50)
                mode = rng.choices(modes, weights)[0]
                expected = MODES[mode][1]
                # BEGIN IMMEDIATE takes the write lock up front, as a writing
                # client should; SQLite's busy wait can starve one connection
                # while the others keep the lock busy, so it retries.
                for _attempt in range(100):
                    try:
                        db.execute("BEGIN IMMEDIATE")
                        break
                    except h.SqlError as exc:
                        assert "locked" in str(exc), exc
                        with lock:
                            busy_retries[0] += 1
                else:
                    raise AssertionError("never got the write lock")
                try:
                    got = db.execute(
                        "SELECT transfer(?, ?, ?, ?)", [src, dst, amount, mode]
                    ).scalar()
                    outcome = None
                except h.ProcedureError as exc:
                    got, outcome = None, exc.code
                db.execute("COMMIT")
                calls += 1
                with lock:
                    if expected is not None:
                        injected[MODES[mode][0]] += 1
                    if outcome is not None:
                        observed[outcome] += 1
                    if outcome != expected or (outcome is None and got != amount):
                        unexpected.append(f"mode {mode}: got {got!r} / {outcome}")
                    if outcome is None:
                        done.append((src, dst, amount))
                if calls == 20 and seed == 0:
                    rss["warm"] = _rss_bytes()
            with lock:
                pool_sizes.extend(r.idle_instances() for r in db._runners.values())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    rss["end"] = _rss_bytes()

    checks = 0
    with h.Database.open(path) as db:
        balances = dict(db.execute("SELECT id, balance FROM accounts").rows)
        records = db.execute("SELECT src, dst, amount FROM transfers ORDER BY id").rows
        integrity = db.execute("PRAGMA integrity_check").scalar()
    replay = {i: OPENING_BALANCE for i in range(1, ACCOUNTS + 1)}
    for src, dst, amount in records:
        replay[int(src)] -= int(amount)  # type: ignore[call-overload]
        replay[int(dst)] += int(amount)  # type: ignore[call-overload]

    assert integrity == "ok"
    checks += 1
    assert sum(balances.values()) == ACCOUNTS * OPENING_BALANCE  # type: ignore[arg-type]
    checks += 1
    assert balances == replay, "balances differ from the recorded transfers"
    checks += 1
    assert Counter(map(tuple, records)) == Counter(done), "lost or duplicated writes"
    checks += 1
    assert unexpected == [], unexpected[:5]
    checks += 1
    assert sum(observed.values()) == sum(injected.values()), "a failure went unreported"
    checks += 1
    assert all(n <= h.Limits().pool_size for n in pool_sizes), pool_sizes
    checks += 1
    growth = rss["end"] - rss.get("warm", rss["end"])
    assert growth < 200 * 1024 * 1024, f"memory grew by {growth / 1e6:.0f} MB"
    checks += 1

    calls = len(done) + sum(observed.values())
    with capsys.disabled():
        print(
            f"\nsoak: {seconds:g} s, {THREADS} threads, {calls} calls "
            f"({calls / seconds:.0f}/s), {len(done)} transfers committed; "
            f"failures injected {sum(injected.values())} {dict(injected)}; "
            f"observed {sum(observed.values())} {dict(observed)}; "
            f"busy retries {busy_retries[0]}; invariant checks {checks} passed; RSS {rss['end'] / 1e6:.0f} MB "
            f"(+{growth / 1e6:.1f} MB after warm-up)"
        )


def test_soak_processes_threads_and_a_lock_thief(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two processes, each with two threads sharing one Database and one
    with its own, transfer money while a third connection keeps taking the
    write lock for 20-100 ms at a time (busy errors injected on purpose).
    Every acknowledged transfer must be stored, nothing unacknowledged may
    be, and the books must balance."""
    seconds = float(os.environ.get("HELIOSDB_SOAK_SECONDS", "6"))
    path = tmp_path / "ledger.db"
    _setup(path)
    stop = threading.Event()
    thefts = [0]

    def thief() -> None:
        rng = random.Random(7)
        conn = apsw.Connection(str(path))
        conn.set_busy_timeout(1000)
        while not stop.is_set():
            try:
                conn.execute("BEGIN EXCLUSIVE")
            except apsw.BusyError:  # the workers hold it: take it next time
                continue
            thefts[0] += 1
            time.sleep(rng.uniform(0.02, 0.1))
            conn.execute("COMMIT")
            time.sleep(rng.uniform(0.05, 0.2))
        conn.close()

    worker = Path(__file__).with_name("soak_worker.py")
    outs = [tmp_path / f"worker{i}.json" for i in range(2)]
    thread = threading.Thread(target=thief)
    thread.start()
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, str(worker), str(path), str(seconds), str(i + 1), str(out)]
            )
            for i, out in enumerate(outs)
        ]
        codes = [p.wait(timeout=seconds + 120) for p in procs]
    finally:
        stop.set()
        thread.join(timeout=10)
    assert codes == [0, 0]
    acknowledged: Counter[tuple[int, int, int]] = Counter()
    outcomes: Counter[str] = Counter()
    unexpected: list[str] = []
    for out in outs:
        report = json.loads(out.read_text())
        acknowledged.update(tuple(t) for t in report["acknowledged"])
        outcomes.update(report["outcomes"])
        unexpected += report["unexpected"]
    with h.Database.open(path) as db:
        stored = Counter(
            (int(s), int(d), int(a))  # type: ignore[call-overload]
            for s, d, a in db.execute("SELECT src, dst, amount FROM transfers").rows
        )
        total = db.execute("SELECT sum(balance) FROM accounts").scalar()
        integrity = db.execute("PRAGMA integrity_check").scalar()
    lost = acknowledged - stored
    phantom = stored - acknowledged
    assert unexpected == [], unexpected[:5]
    assert integrity == "ok"
    assert not lost, f"{sum(lost.values())} acknowledged transfers are missing"
    assert not phantom, f"{sum(phantom.values())} transfers stored that were reported failed"
    assert total == ACCOUNTS * OPENING_BALANCE
    assert outcomes["busy"] > 0 and outcomes["ok"] > 0, outcomes
    assert thefts[0] > 0 and not thread.is_alive()
    with capsys.disabled():
        print(
            f"\nsoak (2 processes x 3 threads, {seconds:g} s): {sum(outcomes.values())} calls,"
            f" {outcomes['ok']} acknowledged, {outcomes['busy']} busy, {outcomes['trap']} traps;"
            f" lock taken {thefts[0]} times; lost 0, phantom 0"
        )
