"""The fast call path (fastcall.py) gives exactly the answers and errors of
the general path; every check runs on both."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

import heliosdb_wasm as h
from conftest import TEST_LIMITS, b64, wasm_of
from heliosdb_wasm.invoke import Runner

PROCEDURES = {
    "add_i64": "(a BIGINT, b BIGINT) RETURNS BIGINT",
    "add_i32": "(a INTEGER, b INTEGER) RETURNS INTEGER",
    "mul_f64": "(a DOUBLE, b DOUBLE) RETURNS DOUBLE",
    "half_f32": "(a REAL) RETURNS REAL",
    "is_positive": "(a BIGINT) RETURNS BOOLEAN",
    "identity_f64": "(a DOUBLE) RETURNS DOUBLE",
}


@pytest.fixture(params=["fast", "general"])
def db(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[h.Database]:
    if request.param == "general":
        original = Runner.__init__

        def general_only(self: Runner, *args: object) -> None:
            original(self, *args)  # type: ignore[arg-type]
            self._fast = False

        monkeypatch.setattr(Runner, "__init__", general_only)
    with h.Database.open(":memory:", limits=TEST_LIMITS) as database:
        for name, sig in PROCEDURES.items():
            database.execute(
                f"CREATE PROCEDURE {name}{sig} LANGUAGE wasm"
                f" AS $wasm${b64(wasm_of('numeric'))}$wasm$"
            )
        database.execute(
            "CREATE PROCEDURE spin() RETURNS BIGINT LANGUAGE wasm"
            f" AS $wasm${b64(wasm_of('limits'))}$wasm$"
        )
        database.execute(
            "CREATE PROCEDURE nullable(a BIGINT) RETURNS BIGINT LANGUAGE wasm"
            " CALLED ON NULL INPUT USING EXPORT 'identity_i64'"
            f" AS $wasm${b64(wasm_of('numeric'))}$wasm$"
        )
        assert database._runner("add_i64")._fast is (request.param == "fast")
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
    with pytest.raises(h.InvalidArgument, match="out of range"):
        db.execute("SELECT add_i32(?, 1)", [2**40])
    with pytest.raises(h.InvalidArgument, match="expected BIGINT"):
        db.execute("SELECT add_i64('forty', 2)")
    with pytest.raises(h.InvalidArgument, match="takes 2 argument"):
        db.call("add_i64", 1)


def test_limits_and_traps_then_the_next_call_works(db: h.Database) -> None:
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT spin()")
    assert err.value.limit == "fuel" and err.value.procedure == "spin"
    assert db.execute("SELECT add_i64(40, 2)").scalar() == 42
    (metrics,) = db.metrics("spin").values()
    assert (metrics.calls, metrics.errors) == (1, 1)
