"""The Rust core's Python surface (heliosdb_wasm._core) on its own: what the
engine relies on when it hands the core a module, limits and hooks."""

from __future__ import annotations

import ast
import gc
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import heliosdb_wasm as h
from conftest import TEST_LIMITS, b64, wasm_of
from heliosdb_wasm import _core, native, telemetry
from heliosdb_wasm.registry import sha256_hex
from heliosdb_wasm.runtime import Runtime

Faults = list[tuple[Any, ...]]


def test_the_stub_names_what_the_module_has() -> None:
    """_core.pyi is what mypy checks the engine against: every class,
    function and method it names exists in the built module."""
    tree = ast.parse(Path(h.__file__).with_name("_core.pyi").read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            cls = getattr(_core, node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name != "__init__":
                    assert hasattr(cls, item.name), f"{node.name}.{item.name}"
        elif isinstance(node, ast.FunctionDef):
            assert callable(getattr(_core, node.name)), node.name
    assert _core.WASMTIME_VERSION.startswith("48.")


def test_the_tally_buckets_as_telemetry_does() -> None:
    tally = native.new_tally()
    expected = telemetry.Metrics()
    samples = [0.0, 1e-9, 1e-6, 1.0000001e-6, 2e-6, 2.3784e-6, 1e-3, 0.5, 3.0, 1e4, 1e9]
    samples += [1e-6 * 2 ** (i / 4) * 1.0001 for i in range(125)]
    for s in samples:
        tally.count(s)
        expected.count(s, None)
    calls, seconds, histogram, fuel, max_memory = tally.drain()
    assert (fuel, max_memory) == (0, None)  # counted only by calls that report them
    assert (calls, histogram) == (expected.calls, expected.histogram)
    assert seconds == pytest.approx(expected.total_seconds)
    assert tally.drain() == (0, 0.0, {}, 0, None)
    assert tally.attached is False  # no Numeric counts into it
    with pytest.raises(ValueError, match="histogram"):
        _core.Tally(0.0, 4, 120)


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return Runtime()


def module_of(runtime: Runtime, name: str) -> _core.Module:
    wasm = wasm_of(name)
    return _core.Module(runtime.core, sha256_hex(wasm), wasm)


def make(
    runtime: Runtime,
    export: str,
    params: list[_core.Kind],
    result: _core.Kind | None,
    faults: Faults,
    fixture: str = "limits",
    **limits: Any,
) -> tuple[_core.Numeric, _core.Tally]:
    tally = native.new_tally()

    def fault(*args: Any) -> BaseException:
        faults.append(args)
        return RuntimeError(args[1])

    numeric = _core.Numeric(
        module_of(runtime, fixture),
        export,
        params,
        result,
        TEST_LIMITS.with_overrides(**limits).to_json(),
        tally,
        fault,
    )
    return numeric, tally


def test_a_module_lists_its_imports_and_functions(runtime: Runtime) -> None:
    limits = module_of(runtime, "limits")
    assert limits.imports == []
    assert ("div_zero", ["i64"], ["i64"]) in limits.functions
    host = module_of(runtime, "host")
    assert ("heliosdb", "heliosdb_query") in host.imports
    with pytest.raises(_core.CoreError) as err:
        _core.Module(runtime.core, "00" * 32, b"\0asm\x01\0\0\0garbage")
    assert err.value.args[0] == "abi-error"
    with pytest.raises(ValueError, match="not a SHA-256"):
        _core.Module(runtime.core, "nothex", wasm_of("limits"))
    with pytest.raises(_core.CoreError, match="imports"):
        _core.Numeric(host, "run", [], "i64", TEST_LIMITS.to_json(), native.new_tally(), print)


def test_calls_check_values_before_the_guest_runs(runtime: Runtime) -> None:
    faults: Faults = []
    div, tally = make(runtime, "div_zero", ["i64"], "i64", faults)
    assert div.call([4]) == 25 and div.call((-50,)) == -2
    with pytest.raises(TypeError, match="int, not str"):
        div.call(["4"])
    with pytest.raises(OverflowError, match="64-bit"):
        div.call([2**63])
    with pytest.raises(ValueError, match="1 argument"):
        div.call([1, 2])
    with pytest.raises(TypeError, match="float"):
        div.batch([[1, 2, 1.5]])
    assert faults == [] and tally.drain()[0] == 2  # none of the refused ones ran
    assert tally.attached


def test_a_trap_reaches_the_fault_hook_with_its_backtrace(runtime: Runtime) -> None:
    faults: Faults = []
    div, tally = make(runtime, "div_zero", ["i64"], "i64", faults)
    with pytest.raises(RuntimeError, match="divide by zero"):
        div.call([0])
    ((code, message, limit, frames, seconds, row),) = faults
    assert (code, limit, row) == ("trap", None, None)
    assert "divide by zero" in message and 0 <= seconds < 1
    assert frames and frames[0].startswith("<module>!<wasm function")
    assert div.call([5]) == 20  # a fresh instance
    assert div.instantiated == 2 and div.idle_instances == 1
    # A batch stops at the failing row and says how many were done.
    with pytest.raises(RuntimeError):
        div.batch([[1, 2, 0, 4]])
    assert faults[-1][0] == "trap" and faults[-1][5] == 2
    assert tally.drain()[0] == 1 + 2


def test_limits_are_reported_exactly(runtime: Runtime) -> None:
    faults: Faults = []
    spin, _ = make(runtime, "spin", [], "i64", faults, fuel=10_000)
    with pytest.raises(RuntimeError):
        spin.call([])
    assert faults[-1][:3] == ("limit-exceeded", "fuel exhausted", "fuel")
    slow, _ = make(runtime, "spin", [], "i64", faults, fuel=2**62, timeout_seconds=0.05)
    started = time.monotonic()
    with pytest.raises(RuntimeError):
        slow.call([])
    assert faults[-1][2] == "timeout" and time.monotonic() - started < 1
    # A refused memory.grow followed by the guest's trap is the memory
    # limit, from wasmtime's ResourceLimiter: nothing inferred.
    grow, _ = make(runtime, "grow_and_use", ["i32"], "i64", faults, memory_bytes=1 << 20)
    assert grow.call([3]) == 4
    with pytest.raises(RuntimeError):
        grow.call([100])
    code, message, limit = faults[-1][:3]
    assert (code, limit) == ("limit-exceeded", "memory") and "refused to grow" in message
    deep, _ = make(runtime, "recurse", ["i64"], "i64", faults)
    with pytest.raises(RuntimeError):
        deep.call([0])
    assert faults[-1][2] == "stack"


def test_the_guest_runs_without_the_gil(runtime: Runtime) -> None:
    """Another Python thread makes progress while a guest loops."""
    faults: Faults = []
    spin, _ = make(runtime, "spin", [], "i64", faults, fuel=2**62, timeout_seconds=0.5)
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    thread = threading.Thread(target=count)
    thread.start()
    time.sleep(0.02)
    before = ticks
    with pytest.raises(RuntimeError):
        spin.call([])
    during = ticks - before
    stop.set()
    thread.join()
    assert faults[-1][2] == "timeout"
    assert during > 50  # ~500 while the guest held the thread for 0.5 s


def test_a_numeric_keeps_its_tally_attached_until_it_is_freed(runtime: Runtime) -> None:
    faults: Faults = []
    div, tally = make(runtime, "div_zero", ["i64"], "i64", faults)
    assert div.call([1]) == 100
    assert tally.attached
    del div
    gc.collect()
    assert not tally.attached
    assert tally.drain()[0] == 1  # what it counted before it went is still there


def test_sql_errors_of_the_hooks_are_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    """acquire() giving something that is not the procedure's Numeric is the
    statement's error, not a crash."""
    with h.Database.open(":memory:", limits=TEST_LIMITS) as db:
        db.execute(
            "CREATE PROCEDURE div_zero(n BIGINT) RETURNS BIGINT LANGUAGE wasm"
            f" AS $wasm${b64(wasm_of('limits'))}$wasm$"
        )
        if not native.sqlite_direct():
            pytest.skip("apsw's SQLite cannot load extensions here")
        other = db._runner("div_zero")
        wrong = _core.Numeric(
            module_of(other.module.runtime, "numeric"),  # type: ignore[attr-defined]
            "mul_f64",
            ["f64", "f64"],
            "f64",
            TEST_LIMITS.to_json(),
            native.new_tally(),
            print,
        )
        scalar = _core.Scalar(["i64"], "i64", False, lambda: wrong, lambda *a: None)
        scalar.bind(db.conn.sqlite3_pointer(), "div_zero")
        with pytest.raises(TypeError, match="signature"):
            db.execute("SELECT div_zero(5)")
        scalar = _core.Scalar(["i64"], "i64", False, lambda: None, lambda *a: ("slow", *a))
        scalar.bind(db.conn.sqlite3_pointer(), "div_zero")
        with pytest.raises(TypeError, match="cannot be a tuple"):
            db.execute("SELECT div_zero(5)")
        scalar = _core.Scalar(["i64"], "i64", False, lambda: None, lambda *a: a[0] * 2)
        scalar.bind(db.conn.sqlite3_pointer(), "div_zero")
        assert db.execute("SELECT div_zero(21), div_zero('x'), div_zero(NULL)").rows == [
            (42, "xx", None)
        ]


def test_a_trap_in_sql_carries_the_guest_backtrace() -> None:
    with h.Database.open(":memory:", limits=TEST_LIMITS) as db:
        db.execute(
            "CREATE PROCEDURE deep(n BIGINT) RETURNS BIGINT LANGUAGE wasm"
            f" USING EXPORT 'recurse' AS $wasm${b64(wasm_of('limits'))}$wasm$"
        )
        db.execute(
            "CREATE PROCEDURE boom() RETURNS BIGINT LANGUAGE wasm"
            f" USING EXPORT 'trap' AS $wasm${b64(wasm_of('limits'))}$wasm$"
        )
        with pytest.raises(h.ResourceLimitExceeded) as limit:
            db.execute("SELECT deep(0)")
        assert limit.value.limit == "stack"
        with pytest.raises(h.ProcedureTrap) as err:
            db.execute("SELECT boom()")
        assert "unreachable" in err.value.message
        assert err.value.backtrace and err.value.backtrace[0].startswith("<module>!")


def test_a_trap_shows_its_backtrace_in_the_log_the_cli_and_on_both_engines(
    tmp_path: Path,
) -> None:
    """SQL's call and Database.call (the core's two entries) give the
    same frames; the procedure log keeps them; the CLI prints them."""
    from click.testing import CliRunner

    from heliosdb_wasm.cli import main

    named = wasm_of("limits")
    path = tmp_path / "t.db"
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        db.execute(
            "CREATE PROCEDURE boom() RETURNS BIGINT LANGUAGE wasm"
            f" USING EXPORT 'trap' AS $wasm${b64(named)}$wasm$"
        )
        with pytest.raises(h.ProcedureTrap) as core:
            db.execute("SELECT boom()")
        with pytest.raises(h.ProcedureTrap) as called:
            db.call("boom")
        strip = [f.split(" @ ")[0] for f in core.value.backtrace]
        assert strip == [f.split(" @ ")[0] for f in called.value.backtrace]
        logged = [r for r in db.logs("boom") if r.level == "error"]
        assert len(logged) == 2 and "  at <module>!" in logged[0].message
    result = CliRunner().invoke(main, ["sql", "--db", str(path), "SELECT boom()"])
    assert result.exit_code == 1
    assert "  at <module>!<wasm function" in result.output


def test_the_wire_sends_the_backtrace_as_detail() -> None:
    from heliosdb_wasm.pgwire.errors import error_fields

    trap = h.ProcedureTrap(
        "wasm `unreachable` instruction executed",
        backtrace=("proc!inner @ 0x2a", "proc!outer @ 0x31"),
    ).located("boom", 1)
    state, message, detail, _ = error_fields(trap)
    assert state == "38000"  # external routine exception
    assert message == "wasm `unreachable` instruction executed"
    assert detail is not None and detail.endswith(
        "wasm backtrace:\n  at proc!inner @ 0x2a\n  at proc!outer @ 0x31"
    )
    assert "procedure boom version 1" in detail


def test_host_functions_and_wasi_run_in_the_core() -> None:
    """A module that imports host functions, or WASI: the core runs the
    whole call, also while someone profiles it."""
    with h.Database.open(":memory:") as db:
        db.execute("CREATE TABLE items(id INTEGER PRIMARY KEY)")
        db.execute(
            "CREATE PROCEDURE count_rows() RETURNS BIGINT LANGUAGE wasm"
            f" CAPABILITIES ('read:items') AS $wasm${b64(wasm_of('host'))}$wasm$"
        )
        db.execute(
            "CREATE PROCEDURE initialized() RETURNS BIGINT LANGUAGE wasm"
            f" AS $wasm${b64(wasm_of('wasi_guest'))}$wasm$"
        )
        db.execute("INSERT INTO items VALUES (1), (2)")
        runner = db._runner("count_rows")
        # Numbers in and out, and no writes: the core runs the call whole.
        assert runner._hosted and db.call("count_rows") == 2
        db.session.telemetry.collect()
        (m,) = db.metrics("count_rows").values()
        assert m.calls == 1 and m.fuel > 0 and m.max_memory == 65536
        # Profiled, each call is broken down by the core.
        seen: list[telemetry.CallStats] = []
        db.session.telemetry.listeners.append(seen.append)
        assert db.call("count_rows") == 2
        (stats,) = seen
        assert 0 < stats.host <= stats.host + stats.guest and stats.fuel_used
        assert stats.memory_bytes == 65536
        assert runner.numeric().instantiated == 1  # registration's instance
        wasi = db._runner("initialized")
        assert wasi._hosted and db.call("initialized") == 1
        assert wasi.numeric().instantiated == 1


def test_the_core_instance_refuses_what_it_cannot_call(runtime: Runtime) -> None:
    from heliosdb_wasm.abi_basic import host_status

    module = module_of(runtime, "host")
    pool = _core.BasicPool(module, TEST_LIMITS.to_json(), host_status)
    instance = pool.instance()
    with pytest.raises(_core.GuestFault) as err:
        instance.call(None, "no_such_export", b"", [])
    assert err.value.args[0] == "abi-error"
    assert instance.poisoned is False  # nothing ran
    with pytest.raises(ValueError, match="expected 1 argument"):
        instance.call(None, "insert_item", b"q", [])
    with pytest.raises(ValueError, match="unknown lowering"):
        instance.call(None, "insert_item", b"x", [1])
    with pytest.raises(TypeError, match="cannot be of type object"):
        instance.call(None, "insert_item", b"q", [object()])
    # Without a call context a host function ends the call as an ABI error.
    with pytest.raises(_core.GuestFault) as err:
        instance.call(None, "count_rows", b"", [])
    code, message, limit, frames = err.value.args
    assert (code, limit, frames) == ("abi-error", None, [])
    assert "host functions cannot be called" in message
    assert instance.poisoned is True
    with pytest.raises(RuntimeError, match="in use or released"):
        instance.call(None, "count_rows", b"", [])


def test_basic_modules_are_compiled_by_the_core_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A core module, with host functions or WASI, is compiled by the core
    that runs it and never by wasmtime-py (it stays off the cold start)."""
    monkeypatch.setenv("HELIOSDB_WASM_CACHE", str(tmp_path))
    runtime = Runtime()
    core_wasm, wasi_wasm = bytes(wasm_of("host")), bytes(wasm_of("wasi_guest"))
    with h.Database.open(":memory:", runtime=runtime) as db:
        db.execute("CREATE TABLE items(id INTEGER PRIMARY KEY)")
        db.execute(
            "CREATE PROCEDURE count_rows() RETURNS BIGINT LANGUAGE wasm"
            f" CAPABILITIES ('read:items') AS $wasm${b64(core_wasm)}$wasm$"
        )
        db.execute(
            "CREATE PROCEDURE initialized() RETURNS BIGINT LANGUAGE wasm"
            f" AS $wasm${b64(wasi_wasm)}$wasm$"
        )
        assert db.call("count_rows") == 0 and db.call("initialized") == 1
    core_sha, wasi_sha = sha256_hex(core_wasm), sha256_hex(wasi_wasm)
    assert _core.Module.cached(runtime.core, core_sha) is not None
    assert _core.Module.cached(runtime.core, wasi_sha) is not None


def test_a_first_call_imports_no_singlestore_abi(tmp_path: Path) -> None:
    """A cold start's budget is a millisecond; importing the SingleStore
    ABI package takes ~13 ms: a process that opens a database and calls a
    Basic-ABI procedure never imports it."""
    import subprocess
    import sys

    db = tmp_path / "cold.db"
    with h.Database.open(str(db)) as setup:
        setup.execute(
            "CREATE PROCEDURE add_i64(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
            f" AS $wasm${b64(wasm_of('numeric'))}$wasm$"
        )
    script = (
        "import sys, heliosdb_wasm as h\n"
        f"db = h.Database.open({str(db)!r})\n"
        "assert db.execute('SELECT add_i64(40, 2)').scalar() == 42\n"
        "print(sorted(m for m in sys.modules if m.startswith('heliosdb_wasm.singlestore.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    assert "heliosdb_wasm.singlestore.abi" not in out, out
