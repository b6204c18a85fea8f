"""The numeric path through the Rust core (native.py): every check runs on
each way SQL reaches a procedure, with the same answers and errors: the
core's function SQLite calls with no apsw in between (``direct``:
Scalar.bind) and apsw's Python function over the core's Numeric (``apsw``:
HELIOSDB_WASM_SQLITE_DIRECT=0)."""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import heliosdb_wasm as h
from conftest import TEST_LIMITS, b64, wasm_of
from heliosdb_wasm import _core
from heliosdb_wasm.database import Database

PROCEDURES = {
    "add_i64": "(a BIGINT, b BIGINT) RETURNS BIGINT",
    "add_i32": "(a INTEGER, b INTEGER) RETURNS INTEGER",
    "mul_f64": "(a DOUBLE, b DOUBLE) RETURNS DOUBLE",
    "half_f32": "(a REAL) RETURNS REAL",
    "is_positive": "(a BIGINT) RETURNS BOOLEAN",
    "identity_f64": "(a DOUBLE) RETURNS DOUBLE",
}
MODES = ["direct", "apsw"]
NUMERIC = b64(wasm_of("numeric"))
LIMITS = b64(wasm_of("limits"))

# name -> the core Scalars Database made for it, oldest first.
Scalars = dict[str, list[Any]]


@pytest.fixture
def scalars() -> Scalars:
    return {}


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, scalars: Scalars) -> str:
    mode: str = request.param
    monkeypatch.setenv("HELIOSDB_WASM_SQLITE_DIRECT", "1" if mode == "direct" else "0")
    make = Database._native_scalar

    def spy(self: Database, version: Any, slow: Callable[..., Any]) -> _core.Scalar | None:
        made = make(self, version, slow)
        if made is not None:
            scalars.setdefault(version.name.lower(), []).append(made)
        return made

    monkeypatch.setattr(Database, "_native_scalar", spy)
    return mode


def numeric(db: h.Database, name: str) -> _core.Numeric | None:
    return db._runner(name)._numeric


@pytest.fixture
def db(mode: str, scalars: Scalars) -> Iterator[h.Database]:
    with h.Database.open(":memory:", limits=TEST_LIMITS) as database:
        for name, sig in PROCEDURES.items():
            database.execute(f"CREATE PROCEDURE {name}{sig} LANGUAGE wasm AS $wasm${NUMERIC}$wasm$")
        for export in ("spin", "div_zero"):
            params = "(n BIGINT)" if export == "div_zero" else "()"
            database.execute(
                f"CREATE PROCEDURE {export}{params} RETURNS BIGINT LANGUAGE wasm"
                f" AS $wasm${LIMITS}$wasm$"
            )
        database.execute(
            "CREATE PROCEDURE nullable(a BIGINT) RETURNS BIGINT LANGUAGE wasm"
            f" CALLED ON NULL INPUT USING EXPORT 'identity_i64' AS $wasm${NUMERIC}$wasm$"
        )
        database.execute(
            "CREATE PROCEDURE bool_add(a BOOLEAN, b INTEGER) RETURNS INTEGER LANGUAGE wasm"
            f" USING EXPORT 'add_i32' AS $wasm${NUMERIC}$wasm$"
        )
        database.execute(
            "CREATE PROCEDURE nullable_f(a DOUBLE) RETURNS DOUBLE LANGUAGE wasm"
            f" CALLED ON NULL INPUT USING EXPORT 'identity_f64' AS $wasm${NUMERIC}$wasm$"
        )
        assert database._runner("add_i64")._fast
        assert set(scalars) >= set(PROCEDURES)  # made in every mode; bound only when direct
        yield database


def test_numbers_round_trip_exactly(db: h.Database) -> None:
    big = 2**63 - 1
    assert db.execute("SELECT add_i64(?, 0), add_i64(?, 0)", [big, -(2**63)]).rows == [
        (big, -(2**63))
    ]
    assert db.execute("SELECT add_i64(?, 1)", [big]).scalar() == -(2**63)  # wraps, like wasm
    assert db.execute("SELECT add_i64(40, 2.0)").scalar() == 42  # an integral REAL is fine
    assert db.execute("SELECT add_i32(2147483647, 1)").scalar() == -(2**31)
    assert db.execute("SELECT mul_f64(1.5, -2.0)").scalar() == -3.0
    assert db.execute("SELECT half_f32(3.0)").scalar() == 1.5
    assert db.execute("SELECT is_positive(5), is_positive(-5)").rows == [(1, 0)]
    assert math.copysign(1, db.execute("SELECT identity_f64(-0.0)").scalar()) == -1  # type: ignore[arg-type]


def test_nulls_and_bad_arguments(db: h.Database) -> None:
    assert db.execute("SELECT add_i64(NULL, 1)").scalar() is None
    assert db.execute("SELECT nullable(NULL)").scalar() == 0  # NULL arrives as 0
    assert db.execute("SELECT nullable_f(NULL)").scalar() == 0.0
    with pytest.raises(h.InvalidArgument, match="out of range") as err:
        db.execute("SELECT add_i32(?, 1)", [2**40])
    assert (err.value.procedure, err.value.version) == ("add_i32", 1)
    with pytest.raises(h.InvalidArgument, match="out of range"):
        db.execute("SELECT add_i32(?, 1)", [2**31])
    assert db.execute("SELECT add_i32(?, 0)", [-(2**31)]).scalar() == -(2**31)
    with pytest.raises(h.InvalidArgument, match="expected BIGINT") as err:
        db.execute("SELECT add_i64('forty', 2)")
    assert err.value.procedure == "add_i64"
    with pytest.raises(h.InvalidArgument, match="expected BIGINT"):
        db.execute("SELECT add_i64(1, x'00')")
    with pytest.raises(h.InvalidArgument, match="expected BIGINT, got REAL"):
        db.execute("SELECT add_i64(1.5, 2)")
    with pytest.raises(h.InvalidArgument, match="expected DOUBLE"):
        db.execute("SELECT mul_f64(2.0, 'x')")
    with pytest.raises(h.InvalidArgument, match="takes 2 argument"):
        db.call("add_i64", 1)
    # The arguments are checked in order: a NULL before a bad one wins.
    assert db.execute("SELECT add_i64(NULL, 'forty')").scalar() is None
    with pytest.raises(h.InvalidArgument, match="expected BIGINT"):
        db.execute("SELECT add_i64('forty', NULL)")


def test_numbers_convert_as_coerce_does(db: h.Database) -> None:
    assert db.execute("SELECT mul_f64(3, 2)").scalar() == 6.0  # ints are fine floats
    assert db.execute("SELECT mul_f64(?, 1.0)", [2**53 + 1]).scalar() == float(2**53 + 1)
    assert db.execute("SELECT half_f32(3)").scalar() == 1.5
    assert db.execute("SELECT half_f32(0.1)").scalar() == 0.05000000074505806
    assert db.execute("SELECT bool_add(7, 1), bool_add(0, 1), bool_add(-1, 0)").rows == [(2, 1, 1)]
    with pytest.raises(h.InvalidArgument, match="expected BOOLEAN"):
        db.execute("SELECT bool_add(0.5, 1)")
    assert db.execute("SELECT add_i64(?, ?)", [True, 2]).scalar() == 3
    assert db.call("add_i64", True, 2) == 3
    assert db.call("is_positive", 5) is True  # CALL keeps the BOOLEAN a bool
    assert db.execute("SELECT identity_f64(?)", [math.inf]).scalar() == math.inf


def test_limits_and_traps_then_the_next_call_works(db: h.Database) -> None:
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT spin()")
    assert err.value.limit == "fuel" and err.value.procedure == "spin"
    assert db.execute("SELECT add_i64(40, 2)").scalar() == 42
    (metrics,) = db.metrics("spin").values()
    assert (metrics.calls, metrics.errors) == (1, 1)


def test_a_trap_mid_statement_then_a_fresh_instance(
    db: h.Database, mode: str, scalars: Scalars
) -> None:
    db.execute("CREATE TABLE t(n INTEGER, o INTEGER)")
    db.execute("INSERT INTO t VALUES (1, 1), (50, 2), (0, 3), (4, 4)")
    made: list[int] = []
    for _ in range(2):
        with pytest.raises(h.ProcedureTrap, match="divide by zero") as err:
            db.execute("SELECT div_zero(n) FROM t ORDER BY o")
        assert (err.value.procedure, err.value.version) == ("div_zero", 1)
        assert not isinstance(err.value.__cause__, Exception)
        core = numeric(db, "div_zero")
        # The trapped instance was dropped, never pooled again.
        assert core is not None and core.idle_instances == 0
        made.append(core.instantiated)
        assert db.execute("SELECT sum(div_zero(n)) FROM t WHERE n > 0").scalar() == 127
        assert core.idle_instances == 1
    assert made[1] == made[0] + 1  # a fresh instance after each trap
    m = db.metrics("div_zero")[1]
    assert (m.calls, m.errors, m.error_codes) == (12, 2, {"trap": 2})
    assert sum(m.histogram.values()) == 12


def test_an_endless_loop_times_out_in_sql(mode: str) -> None:
    """The epoch ticker is a Rust thread: a guest that loops times out
    whether or not the GIL is held around it."""
    limits = h.Limits(timeout_seconds=0.2, fuel=2**62)
    with h.Database.open(":memory:", limits=limits) as db:
        db.execute(f"CREATE PROCEDURE spin() RETURNS BIGINT LANGUAGE wasm AS $wasm${LIMITS}$wasm$")
        for _ in range(2):
            with pytest.raises(h.ResourceLimitExceeded) as err:
                db.execute("SELECT spin()")
            assert err.value.limit == "timeout"
        assert db.metrics("spin")[1].errors == 2


def test_every_row_is_counted(db: h.Database) -> None:
    db.execute("CREATE TABLE t(x INTEGER)")
    db.execute(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 500)"
        " INSERT INTO t SELECT x FROM n"
    )
    assert db.execute("SELECT sum(add_i64(x, 1)) FROM t").scalar() == 125250 + 500
    m = db.metrics("add_i64")[1]
    assert (m.calls, m.errors, sum(m.histogram.values())) == (500, 0, 500)
    assert 0 < m.total_seconds < 5
    # Inside a transaction nothing is flushed, and the pending counts still show.
    db.execute("BEGIN")
    db.execute("SELECT add_i64(x, NULL) FROM t")  # NULL in, NULL out: no call
    db.execute("SELECT add_i64(x, x) FROM t WHERE x <= 100")
    assert db.metrics("add_i64")[1].calls == 600
    db.execute("COMMIT")
    assert db.metrics("add_i64")[1].calls == 600
    assert db.session.telemetry.pending_calls == 0  # all of it persisted


def test_replace_alter_and_drop_while_bound(db: h.Database, mode: str, scalars: Scalars) -> None:
    assert db.execute("SELECT add_i64(6, 7)").scalar() == 13
    db.execute(
        "CREATE OR REPLACE PROCEDURE add_i64(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
        f" USING EXPORT 'mul_i64' AS $wasm${NUMERIC}$wasm$"
    )
    assert db.execute("SELECT add_i64(6, 7)").scalar() == 42
    db.execute("ALTER PROCEDURE add_i64 USE VERSION 1")
    assert db.execute("SELECT add_i64(6, 7)").scalar() == 13
    db.execute("ALTER PROCEDURE add_i64 USE VERSION 2")
    assert db.execute("SELECT add_i64(6, 7), add_i64(2, 2)").rows == [(42, 4)]
    assert db.call("add_i64", 6, 7) == 42
    metrics = db.metrics("add_i64")
    assert (metrics[1].calls, metrics[2].calls) == (2, 3 + 1)
    assert len(scalars["add_i64"]) == 4  # one per binding
    core = numeric(db, "add_i64")
    assert core is not None
    db.execute("DROP PROCEDURE add_i64")
    with pytest.raises(h.SqlError, match="no such function"):
        db.execute("SELECT add_i64(6, 7)")
    gc.collect()
    db.metrics("mul_f64")  # collects: the dropped function's tallies are let go
    assert len(db.session.telemetry.collectors) <= len(PROCEDURES) + 4
    db.execute(
        "CREATE PROCEDURE add_i64(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
        f" AS $wasm${NUMERIC}$wasm$"
    )
    assert db.execute("SELECT add_i64(6, 7)").scalar() == 13


def test_call_batch_matches_row_by_row_calls(db: h.Database) -> None:
    xs = list(range(-5, 995))
    ys = [7] * len(xs)
    assert db.call_batch("add_i64", [xs, ys]) == [db.call("add_i64", x, 7) for x in xs]
    assert db.call_batch("mul_f64", [[1.5, -2.0], [2.0, 0.25]]) == [3.0, -0.5]
    assert db.call_batch("add_i64", [[], []]) == []
    # NULLs, loose types and out-of-range values take the row-by-row path.
    assert db.call_batch("add_i64", [[1, None, 3], [1, 1, 1]]) == [2, None, 4]
    assert db.call_batch("add_i64", [[1, 2.0], [1, 1]]) == [2, 3]
    with pytest.raises(h.InvalidArgument, match="out of range"):
        db.call_batch("add_i32", [[1, 2**40], [1, 1]])
    with pytest.raises(h.InvalidArgument, match="column"):
        db.call_batch("add_i64", [[1, 2]])
    with pytest.raises(h.InvalidArgument, match="differ in length"):
        db.call_batch("add_i64", [[1, 2], [1]])


def test_call_batch_counts_every_row_and_reports_a_trap(db: h.Database) -> None:
    before = sum(m.calls for m in db.metrics("add_i64").values())
    db.call_batch("add_i64", [list(range(500)), list(range(500))])
    assert sum(m.calls for m in db.metrics("add_i64").values()) == before + 500
    assert db.call_batch("div_zero", [[1, 2, 50]]) == [100, 50, 2]
    with pytest.raises(h.ProcedureTrap) as err:
        db.call_batch("div_zero", [[1, 2, 0, 4]])
    assert "divide by zero" in str(err.value) and err.value.procedure == "div_zero"
    assert db.call_batch("div_zero", [[4]]) == [25]  # the next batch works
