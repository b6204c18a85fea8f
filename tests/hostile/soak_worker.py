"""One process of the multi-process soak (test_soak.py): threads that share
one Database and one thread with its own transfer money through the ledger
procedure while another process keeps taking the write lock away. Every
attempt is recorded as acknowledged (the call returned) or not (it raised),
with an amount unique to the attempt, so the parent can tell lost writes
from phantom ones.

    python soak_worker.py DB SECONDS SEED OUT.json
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections import Counter

import heliosdb_wasm as h

ACCOUNTS = 10


def main(path: str, seconds: float, seed: int, out: str) -> None:
    deadline = time.monotonic() + seconds
    acknowledged: list[list[int]] = []
    outcomes: Counter[str] = Counter()
    unexpected: list[str] = []
    lock = threading.Lock()
    shared = h.Database.open(path, busy_timeout=0.05)

    def work(worker: int, db: h.Database) -> None:
        rng = random.Random(seed * 100 + worker)
        attempt = 0
        while time.monotonic() < deadline:
            attempt += 1
            # Unique per attempt: seed, worker and attempt number.
            amount = (seed * 100 + worker) * 1_000_000 + attempt
            src, dst = rng.sample(range(1, ACCOUNTS + 1), 2)
            mode = 1 if rng.random() < 0.1 else 0  # 1: traps after the debit
            explicit = rng.random() < 0.3
            try:
                if explicit:
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        db.execute("SELECT transfer(?, ?, ?, ?)", [src, dst, amount, mode])
                    except BaseException:
                        db.execute("ROLLBACK")
                        raise
                    db.execute("COMMIT")
                else:
                    db.execute("SELECT transfer(?, ?, ?, ?)", [src, dst, amount, mode])
                outcome = "ok"
            except h.ProcedureError as exc:
                outcome = exc.code
            except Exception as exc:  # noqa: BLE001 - an untyped error is a finding
                outcome = "untyped"
                with lock:
                    unexpected.append(f"{type(exc).__name__}: {exc}")
            with lock:
                outcomes[outcome] += 1
                if outcome == "ok":
                    if mode == 1:
                        unexpected.append("a trapping transfer was acknowledged")
                    acknowledged.append([src, dst, amount])
                elif outcome not in ("busy", "trap"):
                    unexpected.append(f"mode {mode}: {outcome}")

    own = h.Database.open(path, busy_timeout=0.05)
    threads = [threading.Thread(target=work, args=(i, shared)) for i in range(2)]
    threads.append(threading.Thread(target=work, args=(2, own)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shared.close()
    own.close()
    with open(out, "w") as f:
        json.dump({"acknowledged": acknowledged, "outcomes": outcomes, "unexpected": unexpected}, f)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
