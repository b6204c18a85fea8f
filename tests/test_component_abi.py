"""The Canonical ABI with a hand-written component (tests/fixtures/component_math.*)."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

import heliosdb_wasm as h
from conftest import b64, make_component, registry_snapshot, seeded_discount


@pytest.fixture(scope="module")
def math_component(wasm_tools: str, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_component(wasm_tools, "component_math", "math", tmp_path_factory.mktemp("c"))


def create(db: h.Database, name: str, wasm: bytes, head: str = "", tail: str = "") -> None:
    db.execute(f"CREATE PROCEDURE {name}{head} LANGUAGE wasm {tail} AS $wasm${b64(wasm)}$wasm$")


def test_signature_is_read_from_the_component(db: h.Database, math_component: bytes) -> None:
    for name in ("maybe_double", "safe_div", "stamp"):
        create(db, name, math_component)
    create(db, "add_two", math_component, tail="USING EXPORT 'add'")
    rendered = {p.name: p.signature.render() for p in db.procedures()}
    assert rendered == {
        "add_two": "(a BIGINT, b BIGINT) RETURNS BIGINT",
        "maybe_double": "(x DOUBLE) RETURNS DOUBLE",
        "safe_div": "(a BIGINT, b BIGINT) RETURNS BIGINT",
        "stamp": "() RETURNS BIGINT",
    }
    assert {p.abi for p in db.procedures()} == {"component"}


def test_values_options_results_and_host_calls(db: h.Database, math_component: bytes) -> None:
    create(db, "add_two", math_component, tail="USING EXPORT 'add'")
    create(db, "maybe_double", math_component)
    create(db, "safe_div", math_component)
    create(db, "stamp", math_component)
    row = db.execute(
        "SELECT add_two(40, 2), maybe_double(2.5), maybe_double(NULL), safe_div(7, 2), stamp() > 0"
    ).rows
    assert row == [(42, 5.0, None, 3, 1)]
    # A non-option parameter: NULL in, NULL out, guest not run.
    assert db.execute("SELECT add_two(NULL, 1)").scalar() is None


def test_err_results_raise_the_wit_error_case(db: h.Database, math_component: bytes) -> None:
    create(db, "safe_div", math_component)
    with pytest.raises(h.InvalidArgument) as err:
        db.execute("SELECT safe_div(1, 0)")
    assert err.value.code == "invalid-argument"
    assert err.value.message == "division by zero"
    assert err.value.procedure == "safe_div"
    assert db.execute("SELECT safe_div(9, 3)").scalar() == 3


def test_declared_signature_must_match(db: h.Database, math_component: bytes) -> None:
    before = registry_snapshot(db)
    with pytest.raises(h.AbiError) as err:
        create(db, "safe_div", math_component, head="(a DOUBLE, b DOUBLE) RETURNS DOUBLE")
    assert "does not match" in str(err.value)
    with pytest.raises(h.AbiError) as err:
        create(db, "nope", math_component)
    assert "exports no function" in str(err.value)
    assert registry_snapshot(db) == before
    create(db, "safe_div", math_component, head="(a BIGINT, b BIGINT) RETURNS BIGINT")
    assert db.execute("SELECT safe_div(8, 2)").scalar() == 4


def test_component_limits(math_component: bytes) -> None:
    with h.Database.open(":memory:", limits=h.Limits(timeout_seconds=0.3)) as db:
        create(db, "spin", math_component)
        with pytest.raises(h.ResourceLimitExceeded) as err:
            db.execute("SELECT spin()")
        assert err.value.limit == "timeout"
    with h.Database.open(":memory:", limits=h.Limits(fuel=10_000)) as db:
        create(db, "spin", math_component)
        with pytest.raises(h.ResourceLimitExceeded) as err:
            db.execute("SELECT spin()")
        assert err.value.limit == "fuel"


def test_components_with_other_imports_are_refused(
    db: h.Database, wasm_tools: str, tmp_path: Path
) -> None:
    # Only the host API and deny-by-default WASI may be imported; an HTTP
    # client interface, say, is refused.
    wat = tmp_path / "w.wat"
    wat.write_text(
        '(component (import "wasi:http/outgoing-handler@0.2.0" (instance)) '
        '(core module $m (func (export "f") (result i64) i64.const 1)) '
        "(core instance $i (instantiate $m)) "
        '(func (export "f") (result s64) (canon lift (core func $i "f"))))'
    )
    out = tmp_path / "w.wasm"
    subprocess.run([wasm_tools, "parse", str(wat), "-o", str(out)], check=True)
    before = registry_snapshot(db)
    with pytest.raises(h.AbiError) as err:
        create(db, "f", out.read_bytes())
    assert "wasi:http/outgoing-handler" in str(err.value)
    assert registry_snapshot(db) == before


def test_a_process_exits_cleanly_with_live_component_instances(
    math_component: bytes, tmp_path: Path
) -> None:
    # Stores still alive at exit are dropped while the interpreter tears
    # modules down: nothing in them may need Python by then.
    wasm = tmp_path / "math.wasm"
    wasm.write_bytes(math_component)
    script = f"""
import heliosdb_wasm as h
db = h.Database.open(":memory:")
db.execute("CREATE PROCEDURE stamp LANGUAGE wasm AS $wasm$file://{wasm}$wasm$")
assert db.execute("SELECT stamp() > 0").scalar() == 1
numeric = db._runner("stamp").numeric()
assert numeric.idle_instances >= 1  # kept in the core's pool until exit
print("done")
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert (out.returncode, out.stdout.strip()) == (0, "done"), out.stderr[-2000:]


def test_instances_discarded_after_traps_do_not_pile_up(math_component: bytes) -> None:
    # A trapped instance is dropped (its memory may be corrupt) and the next
    # call gets a new one; what it held — its store, the host state in it,
    # the call's Python hooks — goes with it: nothing accumulates.
    with h.Database.open(":memory:", limits=h.Limits(fuel=10_000)) as db:
        create(db, "spin", math_component)
        for _ in range(3):
            with pytest.raises(h.ResourceLimitExceeded):
                db.execute("SELECT spin()")
        numeric = db._runner("spin").numeric()
        made = numeric.instantiated
        gc.collect()
        before = len(gc.get_objects())
        for _ in range(200):
            with pytest.raises(h.ResourceLimitExceeded):
                db.execute("SELECT spin()")
        gc.collect()
        assert len(gc.get_objects()) - before < 50
        assert numeric.instantiated == made + 200
        assert numeric.idle_instances <= 1


def test_a_profiled_component_call_is_broken_down_by_the_core() -> None:
    # The Rust component of calculate_discount queries the customers table:
    # a profile sees its time in the guest and in the host, and the fuel it
    # burned; the call runs where every call runs, and counts once.
    from heliosdb_wasm.telemetry import CallStats

    with seeded_discount("component", "rust") as db:
        seen: list[CallStats] = []
        db.session.telemetry.listeners.append(seen.append)
        for _ in range(3):
            assert db.call("cd", 12345, 100.0) == db.call("cd", 12345, 100.0)
        assert len(seen) == 6
        for s in seen:
            assert s.error is None and s.fuel_used and s.host > 0 and s.guest > 0
            assert s.total >= s.instantiate + s.guest + s.host
        assert db.metrics("cd")[1].calls == 6
