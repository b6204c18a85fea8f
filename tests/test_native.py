"""The C fast path (fastcall.NativeCall, built from _native.c) behaves exactly
like the ctypes one (fastcall.RawCall): every check runs on both."""

from __future__ import annotations

import gc
import math
import os
import shutil
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

import heliosdb_wasm as h
from conftest import TEST_LIMITS, b64, wasm_of
from heliosdb_wasm import fastcall, telemetry
from heliosdb_wasm.runtime import Runtime, deadline_ticks, translate_trap
from heliosdb_wasm.values import SqlType as T

NATIVE_MISSING = "heliosdb_wasm._native is not built (no C compiler at install time)"
needs_native = pytest.mark.skipif(fastcall._native is None, reason=NATIVE_MISSING)

Make = Callable[..., fastcall.FastCall]


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return Runtime()  # its epoch ticker drives the timeouts


@pytest.fixture(
    params=[
        fastcall.RawCall,
        pytest.param(fastcall.NativeCall, marks=needs_native),
    ],
    ids=["raw", "native"],
)
def make(request: pytest.FixtureRequest, runtime: Runtime) -> Make:
    """make(fixture, export, params, returns, fuel=..., timeout=...) -> caller."""
    cls = request.param
    modules: dict[str, wasmtime.Module] = {}

    def go(
        fixture: str,
        export: str,
        params: list[T],
        returns: T | None,
        fuel: int = TEST_LIMITS.fuel,
        timeout: float = TEST_LIMITS.timeout_seconds,
    ) -> fastcall.FastCall:
        if fixture not in modules:
            modules[fixture] = wasmtime.Module(runtime.engine, wasm_of(fixture))
        store = wasmtime.Store(runtime.engine)
        store.set_fuel(fuel)
        store.set_epoch_deadline(1)
        instance = wasmtime.Instance(store, modules[fixture], [])
        func = instance.exports(store)[export]
        ticks = deadline_ticks(timeout)
        call: fastcall.FastCall = cls(store, func, params, returns, fuel, ticks)
        return call

    return go


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN and -0.0 unequal to 0.0."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    return type(a) is type(b) and a == b


def test_numbers_round_trip_exactly(make: Make) -> None:
    add64 = make("numeric", "add_i64", [T.BIGINT, T.BIGINT], T.BIGINT)
    assert add64([40, 2]) == 42
    assert add64([2**63 - 1, 1]) == -(2**63)  # wraps, like wasm
    assert add64([2**64 + 5, True]) == 6  # wider ints wrap as ctypes does
    assert add64([-(2**63), 0]) == -(2**63)
    add32 = make("numeric", "add_i32", [T.INTEGER, T.INTEGER], T.INTEGER)
    assert add32([2**31 - 1, 1]) == -(2**31)
    assert add32([2**32 + 7, 0]) == 7
    half = make("numeric", "half_f32", [T.REAL], T.REAL)
    assert half([3.0]) == 1.5
    assert half([0.1]) == 0.05000000074505806  # rounded to f32
    assert half([1e300]) == math.inf
    assert half([3]) == 1.5  # an int is a fine float
    ident = make("numeric", "identity_f64", [T.DOUBLE], T.DOUBLE)
    assert same(ident([-0.0]), -0.0)
    assert math.isnan(ident([math.nan]))
    assert ident([-math.inf]) == -math.inf
    assert same(ident([7]), 7.0)
    mul = make("numeric", "mul_f64", [T.DOUBLE, T.DOUBLE], T.DOUBLE)
    assert mul([1.5, -2.0]) == -3.0
    positive = make("numeric", "is_positive", [T.BIGINT], T.BOOLEAN)
    assert positive([5]) is True and positive([-5]) is False
    # A sequence other than a list works too.
    assert add64((1, 2)) == 3


@pytest.mark.parametrize(
    ("export", "params", "returns", "args"),
    [
        ("add_i64", [T.BIGINT, T.BIGINT], T.BIGINT, [1.5, 1]),
        ("add_i64", [T.BIGINT, T.BIGINT], T.BIGINT, [None, 1]),
        ("add_i64", [T.BIGINT, T.BIGINT], T.BIGINT, ["forty", 2]),
        ("add_i32", [T.INTEGER, T.INTEGER], T.INTEGER, [1, 2.0]),
        ("mul_f64", [T.DOUBLE, T.DOUBLE], T.DOUBLE, [1.0, None]),
        ("half_f32", [T.REAL], T.REAL, ["x"]),
    ],
)
def test_bad_values_raise_what_ctypes_raises(
    make: Make, runtime: Runtime, export: str, params: list[T], returns: T, args: list[Any]
) -> None:
    call = make("numeric", export, params, returns)
    with pytest.raises(TypeError) as err:
        call(args)
    store = wasmtime.Store(runtime.engine)
    instance = wasmtime.Instance(store, wasmtime.Module(runtime.engine, wasm_of("numeric")), [])
    reference = fastcall.RawCall(store, instance.exports(store)[export], params, returns, 1, 1)
    with pytest.raises(TypeError) as expected:
        reference(args)
    assert str(err.value) == str(expected.value)


def test_wrong_arity_is_a_value_error(make: Make) -> None:
    add64 = make("numeric", "add_i64", [T.BIGINT, T.BIGINT], T.BIGINT)
    with pytest.raises(ValueError):
        add64([1])
    with pytest.raises(ValueError):
        add64([1, 2, 3])


@needs_native
def test_native_agrees_with_raw_on_a_sweep(runtime: Runtime) -> None:
    module = wasmtime.Module(runtime.engine, wasm_of("numeric"))
    ints = [0, 1, -1, 2**31 - 1, -(2**31), 2**31, 2**32 - 1, 2**63 - 1, -(2**63), 2**63, 2**100 + 3]
    floats = [0.0, -0.0, 0.1, -2.5, 1e38, 3.5e38, 1e-46, math.inf, -math.inf, math.nan, 2**70]
    cases: list[tuple[str, list[T], T, list[list[Any]]]] = [
        ("add_i64", [T.BIGINT, T.BIGINT], T.BIGINT, [[a, b] for a in ints for b in ints]),
        ("add_i32", [T.INTEGER, T.INTEGER], T.INTEGER, [[a, b] for a in ints for b in ints]),
        ("is_positive", [T.BIGINT], T.BOOLEAN, [[a] for a in ints]),
        ("half_f32", [T.REAL], T.REAL, [[x] for x in floats + ints]),
        ("mul_f64", [T.DOUBLE, T.DOUBLE], T.DOUBLE, [[x, y] for x in floats for y in floats]),
    ]
    for export, params, returns, rows in cases:
        callers = []
        for cls in (fastcall.RawCall, fastcall.NativeCall):
            store = wasmtime.Store(runtime.engine)
            store.set_fuel(TEST_LIMITS.fuel)
            func = wasmtime.Instance(store, module, []).exports(store)[export]
            callers.append(cls(store, func, params, returns, TEST_LIMITS.fuel, 400))
        raw, native = callers
        for row in rows:
            assert same(raw(row), native(row)), (export, row)


@pytest.mark.parametrize(
    ("export", "args", "code", "error", "limit"),
    [
        ("trap", [], wasmtime.TrapCode.UNREACHABLE, h.ProcedureTrap, None),
        ("div_zero", [0], wasmtime.TrapCode.INTEGER_DIVISION_BY_ZERO, h.ProcedureTrap, None),
        ("recurse", [0], wasmtime.TrapCode.STACK_OVERFLOW, h.ResourceLimitExceeded, "stack"),
    ],
)
def test_traps_become_the_same_typed_errors(
    make: Make,
    export: str,
    args: list[int],
    code: wasmtime.TrapCode,
    error: type[h.ProcedureError],
    limit: str | None,
) -> None:
    call = make("limits", export, [T.BIGINT] * len(args), T.BIGINT)
    with pytest.raises(wasmtime.Trap) as trap:
        call(args)
    assert trap.value.trap_code == code
    assert "wasm trap:" in str(trap.value)
    assert trap.value.__context__ is None  # nothing of the C side leaks through
    typed = translate_trap(trap.value, TEST_LIMITS, None)
    assert type(typed) is error
    assert getattr(typed, "limit", None) == limit


def test_fuel_runs_out_and_is_refilled_per_call(make: Make) -> None:
    spin = make("limits", "spin", [], T.BIGINT, fuel=1_000_000)
    for _ in range(2):  # fuel is re-armed: the second call fails the same way
        with pytest.raises(wasmtime.Trap) as trap:
            spin([])
        assert trap.value.trap_code == wasmtime.TrapCode.OUT_OF_FUEL
        typed = translate_trap(trap.value, TEST_LIMITS, None)
        assert isinstance(typed, h.ResourceLimitExceeded) and typed.limit == "fuel"


def test_an_endless_loop_times_out(make: Make) -> None:
    """The GIL is released during the call, so the epoch ticker still runs."""
    spin = make("limits", "spin", [], T.BIGINT, fuel=2**62, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(wasmtime.Trap) as trap:
        spin([])
    assert time.monotonic() - started < 2.0
    assert trap.value.trap_code == wasmtime.TrapCode.INTERRUPT
    limits = h.Limits(timeout_seconds=0.2, fuel=2**62)
    typed = translate_trap(trap.value, limits, None)
    assert isinstance(typed, h.ResourceLimitExceeded) and typed.limit == "timeout"


def test_the_instance_keeps_working_after_a_trap(make: Make) -> None:
    div = make("limits", "div_zero", [T.BIGINT], T.BIGINT)
    for _ in range(3):
        with pytest.raises(wasmtime.Trap):
            div([0])
        assert div([5]) == 20


def test_the_caller_keeps_its_store_alive(make: Make) -> None:
    add64 = make("numeric", "add_i64", [T.BIGINT, T.BIGINT], T.BIGINT)  # holds the only refs
    gc.collect()
    assert add64([40, 2]) == 42


def test_batch_calls_once_per_row(make: Make) -> None:
    add64 = make("numeric", "add_i64", [T.BIGINT, T.BIGINT], T.BIGINT)
    assert add64.batch([[1, 2, 2**63 - 1], (10, 20, 1)]) == [11, 22, -(2**63)]
    assert add64.batch([[], []]) == []
    positive = make("numeric", "is_positive", [T.BIGINT], T.BOOLEAN)
    assert positive.batch([range(-1, 2)]) == [False, False, True]
    with pytest.raises(ValueError):
        add64.batch([[1, 2], [1]])
    with pytest.raises(ValueError):
        add64.batch([[1, 2]])
    with pytest.raises(TypeError):
        add64.batch([[1, None], [1, 2]])


def test_batch_without_parameters_needs_rows(make: Make) -> None:
    spin = make("limits", "spin", [], T.BIGINT, fuel=1_000)
    with pytest.raises(wasmtime.Trap) as trap:
        spin.batch([], rows=3)
    assert trap.value.trap_code == wasmtime.TrapCode.OUT_OF_FUEL
    assert trap.value.row == 0 and trap.value.results == []
    with pytest.raises(ValueError):
        spin.batch([])


def test_batch_stops_at_the_first_failing_row(make: Make) -> None:
    div = make("limits", "div_zero", [T.BIGINT], T.BIGINT)
    with pytest.raises(wasmtime.Trap) as trap:
        div.batch([[1, 50, 0, 4]])
    assert trap.value.trap_code == wasmtime.TrapCode.INTEGER_DIVISION_BY_ZERO
    assert trap.value.row == 2 and trap.value.results == [100, 2]
    assert div.batch([[4]]) == [25]


def test_make_call_prefers_native_unless_disabled(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = wasmtime.Store(runtime.engine)
    func = wasmtime.Instance(
        store, wasmtime.Module(runtime.engine, wasm_of("numeric")), []
    ).exports(store)["add_i64"]

    def made() -> fastcall.FastCall:
        return fastcall.make_call(store, func, [T.BIGINT, T.BIGINT], T.BIGINT, 1000, 10)

    monkeypatch.setenv("HELIOSDB_WASM_NATIVE", "0")
    assert type(made()) is fastcall.RawCall
    monkeypatch.delenv("HELIOSDB_WASM_NATIVE")
    expected = fastcall.RawCall if fastcall._native is None else fastcall.NativeCall
    assert type(made()) is expected
    monkeypatch.setattr(fastcall, "_native", None)
    assert type(made()) is fastcall.RawCall


def test_native_extension_is_built_where_it_can_be() -> None:
    """An install on a machine with a C compiler and the Python headers
    compiles it; a silently missing build must not go unnoticed there."""
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    if shutil.which(compiler) is None or not headers.exists():
        pytest.skip(f"no C compiler ({compiler}) or no {headers}: RawCall only")
    assert fastcall._native is not None, NATIVE_MISSING + "; reinstall the engine"


@pytest.fixture(params=["1", "0"], ids=["native", "raw"])
def db(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[h.Database]:
    if request.param == "1" and fastcall._native is None:
        pytest.skip(NATIVE_MISSING)
    monkeypatch.setenv("HELIOSDB_WASM_NATIVE", request.param)
    made: list[type] = []
    original = fastcall.make_call

    def spy(*args: Any) -> fastcall.FastCall:
        call = original(*args)
        made.append(type(call))
        return call

    monkeypatch.setattr("heliosdb_wasm.abi_basic.make_call", spy)
    with h.Database.open(":memory:", limits=TEST_LIMITS) as database:
        database.execute(
            "CREATE PROCEDURE add_i64(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
            f" AS $wasm${b64(wasm_of('numeric'))}$wasm$"
        )
        database.execute(
            "CREATE PROCEDURE div_zero(n BIGINT) RETURNS BIGINT LANGUAGE wasm"
            f" AS $wasm${b64(wasm_of('limits'))}$wasm$"
        )
        assert database._runner("add_i64")._fast
        yield database
    expected = fastcall.NativeCall if request.param == "1" else fastcall.RawCall
    assert made and set(made) == {expected}


def test_the_engine_gives_the_same_answers(db: h.Database) -> None:
    db.execute("CREATE TABLE t(x INTEGER)")
    db.execute(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000)"
        " INSERT INTO t SELECT x FROM n"
    )
    assert db.execute("SELECT sum(add_i64(x, 1)) FROM t").scalar() == 501500
    assert db.execute("SELECT add_i64(?, 1)", [2**63 - 1]).scalar() == -(2**63)
    with pytest.raises(h.ProcedureTrap, match="divide by zero") as err:
        db.execute("SELECT div_zero(0)")
    assert err.value.procedure == "div_zero"
    assert db.execute("SELECT div_zero(5)").scalar() == 20


# -- the SQL function SQLite calls directly (_native.Scalar) ----------------------


@needs_native
def test_the_tally_buckets_as_telemetry_does() -> None:
    assert fastcall._native is not None
    tally = fastcall._native.Tally(
        telemetry._BASE_SECONDS, telemetry._BUCKETS_PER_OCTAVE, telemetry._NUM_BUCKETS
    )
    expected = telemetry.Metrics()
    samples = [0.0, 1e-9, 1e-6, 1.0000001e-6, 2e-6, 2.3784e-6, 1e-3, 0.5, 3.0, 1e4, 1e9]
    samples += [1e-6 * 2 ** (i / 4) for i in range(125)]
    samples += [1e-6 * 2 ** (i / 4) * (1 + 1e-12) for i in range(125)]
    for s in samples:
        tally.count(s)
        expected.count(s, None)
    calls, seconds, histogram = tally.drain()
    assert (calls, histogram) == (expected.calls, expected.histogram)
    assert seconds == pytest.approx(expected.total_seconds)
    assert tally.drain() == (0, 0.0, {})
    assert tally.attached is False


@needs_native
def test_scalar_hooks(runtime: Runtime) -> None:
    """acquire() None -> slow for every call; a bad acquire() is a TypeError;
    an on_fault that returns is a SystemError; release() hands back the
    instance."""
    native = fastcall._native
    assert native is not None
    store = wasmtime.Store(runtime.engine)
    store.set_fuel(10_000)
    module = wasmtime.Module(runtime.engine, wasm_of("limits"))
    func = wasmtime.Instance(store, module, []).exports(store)["div_zero"]
    call = fastcall.NativeCall(store, func, [T.BIGINT], T.BIGINT, 10_000, 400)

    tally = native.Tally(1e-6, 4, 120)

    def scalar(
        acquire: Callable[[], Any], slow: Callable[..., Any] = lambda *a: ("slow", a)
    ) -> Any:
        return native.Scalar(b"\x01", 1, False, acquire, slow, native.Tally(1e-6, 4, 120))

    assert scalar(print)(None) is None  # NULL: nothing acquired, nothing called
    assert scalar(print)("x") == ("slow", ("x",))  # an unusual value: the Python path
    declined = scalar(lambda: None)
    assert declined(5) == ("slow", (5,)) and declined.python_only
    assert declined(None) == ("slow", (None,))  # from now on all of it
    assert declined(1, 2) == ("slow", (1, 2))  # any other arity: the Python path

    for bad in [(1, 2), ("owner", "instance", object(), print), ("o", "i", call.caller, 3)]:
        with pytest.raises(TypeError):
            scalar(lambda bad=bad: bad)(5)
    other = fastcall.NativeCall(store, func, [T.DOUBLE], T.BIGINT, 10_000, 400)
    with pytest.raises(TypeError, match="signature"):
        scalar(lambda: ("o", "i", other.caller, print))(5)

    faults: list[tuple[Any, ...]] = []

    def on_fault(instance: Any, error: int, trap: int, seconds: float) -> None:
        faults.append((instance, error, trap, seconds))
        fastcall.fault_exception(error, trap)  # takes ownership

    owners = {"div_zero": "owner"}
    s = native.Scalar(
        b"\x01",
        1,
        False,
        lambda: ("owner", "instance", call.caller, on_fault),
        lambda *a: ("slow", a),
        tally,
        owners,
        "div_zero",
    )
    assert tally.attached
    with pytest.raises(ValueError, match="another Scalar"):
        native.Scalar(b"\x01", 1, False, print, print, tally)
    assert s(5) == 20 and s.instance == "instance"
    with pytest.raises(SystemError, match="returned instead of raising"):
        s(0)
    ((instance, error, trap, seconds),) = faults
    assert instance == "instance" and error == 0 and trap != 0 and 0 <= seconds < 1
    assert s.instance is None
    assert s(4) == 25 and s.instance == "instance"  # acquired again
    assert s.release() == "instance" and s.instance is None
    assert s.release() is None
    assert s(4) == 25
    owners["div_zero"] = "a newer owner"  # the instance is no longer current's
    with pytest.raises(SystemError):  # re-acquired: this acquire still says "owner"
        s(0)
    calls, _, histogram = tally.drain()
    assert calls == 3 and sum(histogram.values()) == 3
    del s
    gc.collect()
    assert not tally.attached


def test_sql_calls_the_c_function_directly(db: h.Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the native path SQLite never enters Runner.call for ordinary
    rows; without it, every row goes through it."""
    from heliosdb_wasm.invoke import Runner

    entered: list[int] = []
    original = Runner.call

    def counting(self: Runner, args: Any) -> Any:
        entered.append(1)
        return original(self, args)

    monkeypatch.setattr(Runner, "call", counting)
    db.execute("CREATE TABLE t(x INTEGER)")
    db.execute(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 300)"
        " INSERT INTO t SELECT x FROM n"
    )
    assert db.execute("SELECT sum(add_i64(x, 1)) FROM t").scalar() == 45150 + 300
    native = os.environ["HELIOSDB_WASM_NATIVE"] == "1"
    assert len(entered) == (0 if native else 300)
    entered.clear()
    with pytest.raises(h.InvalidArgument):  # the unusual value: the Python path
        db.execute("SELECT add_i64(x, 'one') FROM t")
    assert len(entered) == 1
    assert db.metrics("add_i64")[1].calls == 301  # the failed check counts
    runner = db._runner("add_i64")
    # The SQL function holds one instance while bound; CALL uses the pool.
    assert runner.idle_instances() == (0 if native else 1)
    assert db.call("add_i64", 1, 2) == 3
    assert runner.idle_instances() == 1


def test_dropping_releases_the_held_instance(db: h.Database) -> None:
    assert db.execute("SELECT add_i64(1, 2)").scalar() == 3
    t = db.session.telemetry
    native = os.environ["HELIOSDB_WASM_NATIVE"] == "1"
    assert len(t.collectors) == (1 if native else 0)
    runner = db._runners["add_i64"]
    instances = {id(i) for i in runner._idle}
    db.execute("DROP PROCEDURE add_i64")
    gc.collect()
    t.collect()
    assert t.collectors == []  # the function was freed, its tally folded and let go
    db._flush_telemetry(force=True)
    persisted = telemetry.read_metrics(db.conn, "add_i64", 1)
    assert persisted is not None and persisted.calls == 1
    assert "add_i64" not in db._runners
    assert not instances & {id(i) for r in db._runners.values() for i in r._idle}
