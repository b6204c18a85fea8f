"""Metrics, the persisted procedure log and call profiles."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import heliosdb_wasm as h
from conftest import wasm_of
from heliosdb_wasm import telemetry
from heliosdb_wasm.cli import main


def _setup(path: Path) -> None:
    module = path.parent / "host.wasm"
    module.write_bytes(wasm_of("host"))
    with h.Database.open(path) as db:
        db.execute(
            "CREATE TABLE items(id INTEGER PRIMARY KEY, label TEXT);"
            "INSERT INTO items VALUES (1, 'apple'), (2, 'pear');"
            "CREATE PROCEDURE count_rows() RETURNS BIGINT LANGUAGE wasm"
            f" CAPABILITIES ('read:items') AS $wasm$file://{module}$wasm$;"
            "CREATE PROCEDURE log_levels() RETURNS BIGINT LANGUAGE wasm"
            f" AS $wasm$file://{module}$wasm$;"
            "CREATE PROCEDURE trapper(id BIGINT) RETURNS BIGINT LANGUAGE wasm"
            " CAPABILITIES ('write:items')"
            f" USING EXPORT 'insert_then_trap' AS $wasm$file://{module}$wasm$;"
        )


def test_metrics_are_recorded_and_persisted_for_other_processes(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    _setup(path)
    with h.Database.open(path) as db:
        for _ in range(20):
            assert db.execute("SELECT count_rows()").scalar() == 2
        for _ in range(3):
            with pytest.raises(h.ProcedureTrap):
                db.execute("SELECT trapper(99)")
    # A new connection (as another process would) sees what was recorded.
    with h.Database.open(path) as db:
        (m,) = db.metrics("count_rows").values()
        assert m.calls == 20 and m.errors == 0
        assert m.fuel > 0 and m.max_memory is not None and m.max_memory >= 65536
        p50, p99 = m.percentile(50), m.percentile(99)
        assert p50 is not None and p99 is not None and 0 < p50 <= p99 < 1.0
        bad = db.metrics("trapper")[1]
        assert (bad.calls, bad.errors, bad.error_codes) == (3, 3, {"trap": 3})
        db.execute("SELECT count_rows()")
        assert db.metrics("count_rows")[1].calls == 21  # persisted + pending


def test_a_listened_call_is_profiled_in_the_core_and_counted_once(tmp_path: Path) -> None:
    """While someone listens (`procedure profile`), calls still run in the
    core: it says where each call's time went, and the metrics count each
    call once, the failed one as an error."""
    path = tmp_path / "p.db"
    _setup(path)
    seen: list[telemetry.CallStats] = []
    with h.Database.open(path) as db:
        db.session.telemetry.listeners.append(seen.append)
        for _ in range(5):
            assert db.call("count_rows") == 2
        with pytest.raises(h.ProcedureTrap):
            db.call("trapper", 99)
        assert db._runner("count_rows")._fast
        ok, failed = seen[:5], seen[5]
        assert all(s.procedure == "count_rows" and s.error is None for s in ok)
        for s in ok:
            assert s.host > 0 and s.guest > 0 and s.fuel_used and s.memory_bytes
            assert s.total >= s.instantiate + s.guest + s.host
        assert (failed.procedure, failed.error) == ("trapper", "trap")
        assert db.metrics("count_rows")[1].calls == 5
        bad = db.metrics("trapper")[1]
        assert (bad.calls, bad.errors) == (1, 1)


def test_telemetry_waits_for_the_callers_transaction(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    _setup(path)
    with h.Database.open(path) as db:
        db.execute("BEGIN")
        db.execute("SELECT count_rows()")
        db.session.telemetry.last_flush = 0  # due, but inside the user's transaction
        db.execute("SELECT count_rows()")
        db.session.telemetry.collect()  # the core's tallies (hosted calls)
        assert db.session.telemetry.pending_calls == 2
        db.execute("ROLLBACK")  # the user's rollback does not take the metrics with it
        assert db.session.telemetry.pending_calls == 0
        assert db.metrics("count_rows")[1].calls == 2


def test_the_log_is_persisted_and_filtered(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    _setup(path)
    with h.Database.open(path) as db:
        db.execute("SELECT log_levels()")
    with h.Database.open(path) as db:
        lines = db.persisted_logs("log_levels")
        assert [(r.level, r.version) for r in lines] == [
            ("trace", 1),
            ("debug", 1),
            ("info", 1),
            ("warn", 1),
            ("error", 1),
        ]
        assert [r.level for r in db.persisted_logs(levels=("warn", "error"))] == ["warn", "error"]
        assert db.persisted_logs(since=time.time() + 60) == []
        assert len(db.persisted_logs("log_levels", limit=2)) == 2


def test_old_log_lines_are_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "LOG_RETENTION", 7)
    path = tmp_path / "r.db"
    _setup(path)
    with h.Database.open(path) as db:
        for _ in range(4):
            db.execute("SELECT log_levels()")
            db.session.telemetry.last_flush = 0
    with h.Database.open(path) as db:
        assert len(db.persisted_logs(limit=100)) == 7


def test_histogram_percentiles() -> None:
    m = telemetry.Metrics()
    for micros in [10] * 90 + [1000] * 9 + [100_000]:
        m.add(telemetry.CallStats("p", 1, 0, micros / 1e6, 0, 0, 0, 0, None, None, None))
    assert m.percentile(50) == pytest.approx(10e-6, rel=0.2)
    assert m.percentile(95) == pytest.approx(1e-3, rel=0.2)
    assert m.percentile(100) == pytest.approx(0.1, rel=0.2)
    assert telemetry.Metrics().percentile(50) is None


def test_cli_metrics_logs_and_profile(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    _setup(path)
    db = str(path)
    runner = CliRunner()
    assert (
        runner.invoke(main, ["sql", "--db", db, "SELECT count_rows(), log_levels()"]).exit_code == 0
    )
    metrics = runner.invoke(main, ["procedure", "metrics", "--db", db, "--json", "count_rows"])
    assert metrics.exit_code == 0, metrics.output
    assert json.loads(metrics.output)["1"]["calls"] == 1
    table = runner.invoke(main, ["procedure", "metrics", "--db", db, "count_rows"])
    assert "p99 ms" in table.output
    lines = runner.invoke(
        main,
        [
            "logs",
            "--db",
            db,
            "--procedure",
            "log_levels",
            "--last",
            "1h",
            "--level",
            "warn",
            "--json",
        ],
    )
    assert [r["message"] for r in json.loads(lines.output)] == ["w", "e"]
    bad = runner.invoke(main, ["logs", "--db", db, "--last", "yesterday"])
    assert bad.exit_code == 2 and "not a duration" in bad.output
    profile = runner.invoke(
        main, ["procedure", "profile", "--db", db, "--calls", "50", "--json", "count_rows"]
    )
    assert profile.exit_code == 0, profile.output
    report = json.loads(profile.output)
    assert report["calls"] == 50 and report["fuel_mean"] > 0
    parts = report["seconds"]
    assert parts["host"]["mean"] > 0 and parts["guest"]["mean"] > 0
    assert parts["total"]["mean"] >= parts["host"]["mean"]
