"""Limits end in typed errors (never a hang or a crash); bad modules are refused
at registration with the registry unchanged."""

from __future__ import annotations

import time

import pytest
import wasmtime

import heliosdb_wasm as h
from conftest import Register, b64, registry_snapshot, wasm_of


def test_infinite_loop_hits_the_wall_clock(register: Register) -> None:
    with h.Database.open(":memory:", limits=h.Limits(timeout_seconds=0.3)) as db:
        db.execute(
            f"CREATE PROCEDURE spin() RETURNS BIGINT LANGUAGE wasm AS $wasm${b64(wasm_of('limits'))}$wasm$"
        )
        started = time.monotonic()
        with pytest.raises(h.ResourceLimitExceeded) as err:
            db.execute("SELECT spin()")
        assert err.value.limit == "timeout" and err.value.code == "limit-exceeded"
        assert time.monotonic() - started < 2.0


def test_infinite_loop_runs_out_of_fuel(register: Register) -> None:
    with h.Database.open(":memory:", limits=h.Limits(fuel=1_000_000)) as db:
        db.execute(
            f"CREATE PROCEDURE spin() RETURNS BIGINT LANGUAGE wasm AS $wasm${b64(wasm_of('limits'))}$wasm$"
        )
        with pytest.raises(h.ResourceLimitExceeded) as err:
            db.execute("SELECT spin()")
        assert err.value.limit == "fuel"
        # Fuel is per call: the next call starts with a full tank.
        with pytest.raises(h.ResourceLimitExceeded):
            db.execute("SELECT spin()")


def test_per_procedure_limits_from_ddl(db: h.Database) -> None:
    db.execute(
        "CREATE PROCEDURE spin() RETURNS BIGINT LANGUAGE wasm WITH (fuel = 5000)"
        f" AS $wasm${b64(wasm_of('limits'))}$wasm$"
    )
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT spin()")
    assert "5000" in str(err.value)


@pytest.mark.parametrize("limit", ["max_arg_bytes", "max_result_bytes"])
def test_payload_limits_hold_at_least_one_number(db: h.Database, limit: str) -> None:
    # A number counts 8 bytes against both: a smaller limit would refuse
    # every call, so it is refused where it is set, naming it.
    with pytest.raises(h.InvalidArgument, match=f"limit {limit} is at least 8"):
        h.Limits(**{limit: 7})
    before = registry_snapshot(db)
    with pytest.raises(h.DdlError, match=f"limit {limit} is at least 8.* near '4'"):
        db.execute(
            f"CREATE PROCEDURE spin() RETURNS BIGINT LANGUAGE wasm WITH ({limit} = 4)"
            f" AS $wasm${b64(wasm_of('limits'))}$wasm$"
        )
    assert registry_snapshot(db) == before
    assert h.Limits(**{limit: 8}).to_json()[limit] == 8


def test_memory_cannot_grow_past_the_limit(db: h.Database, register: Register) -> None:
    register("grow_forever", "() RETURNS BIGINT", "limits")
    pages = db.execute("SELECT grow_forever()").scalar()
    # 16 MiB default = 256 pages in total, one of which the module starts with.
    assert pages == 255
    register("grow_and_use", "(pages INTEGER) RETURNS BIGINT", "limits")
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT grow_and_use(1000)")
    assert err.value.limit == "memory"
    assert db.execute("SELECT grow_and_use(10)").scalar() is not None


def test_grow_to_raises_the_memory_limit(db: h.Database) -> None:
    db.execute(
        "CREATE PROCEDURE grow_and_use(pages INTEGER) RETURNS BIGINT LANGUAGE wasm GROW TO 80 MB"
        f" AS $wasm${b64(wasm_of('limits'))}$wasm$"
    )
    assert db.execute("SELECT grow_and_use(1000)").scalar() is not None


def test_runaway_recursion_and_other_traps(db: h.Database, register: Register) -> None:
    register("recurse", "(n BIGINT) RETURNS BIGINT", "limits")
    register("trap", "() RETURNS BIGINT", "limits")
    register("div_zero", "(n BIGINT) RETURNS BIGINT", "limits")
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT recurse(1)")
    assert err.value.limit == "stack"
    with pytest.raises(h.ProcedureTrap):
        db.execute("SELECT trap()")
    with pytest.raises(h.ProcedureTrap) as trap:
        db.execute("SELECT div_zero(0)")
    assert "divide by zero" in str(trap.value) or "division" in str(trap.value)
    assert db.execute("SELECT div_zero(5)").scalar() is not None


def test_modules_that_cannot_start_are_refused_at_registration() -> None:
    with h.Database.open(":memory:", limits=h.Limits(timeout_seconds=0.3)) as db:
        # A start function that never returns: interrupted, then refused.
        with pytest.raises(h.ResourceLimitExceeded) as err:
            db.execute(
                "CREATE PROCEDURE f() RETURNS BIGINT LANGUAGE wasm"
                f" AS $wasm${b64(wasm_of('start_loop'))}$wasm$"
            )
        assert err.value.limit == "timeout"
        # An initial memory larger than the limit: refused, with the way out.
        big = wasmtime.wat2wasm(
            '(module (memory 300) (func (export "f") (result i64) i64.const 1))'
        )
        with pytest.raises(h.ResourceLimitExceeded) as err:
            db.execute(
                f"CREATE PROCEDURE f() RETURNS BIGINT LANGUAGE wasm AS $wasm${b64(big)}$wasm$"
            )
        assert err.value.limit == "memory"
        assert db.procedures() == []
        db.execute(
            "CREATE PROCEDURE f() RETURNS BIGINT LANGUAGE wasm GROW TO 20 MB"
            f" AS $wasm${b64(big)}$wasm$"
        )
        assert db.execute("SELECT f()").scalar() == 1


@pytest.mark.parametrize(("depth", "expected"), [(1, 4), (8, 1)])
def test_reentrant_calls_are_limited_in_depth(depth: int, expected: int) -> None:
    # count_rows queries `items`; here `items` is a view that calls count_rows
    # again: procedure -> query -> procedure -> ... until the depth limit.
    with h.Database.open(":memory:", limits=h.Limits(max_call_depth=depth)) as db:
        db.execute(
            "CREATE PROCEDURE count_rows() RETURNS BIGINT LANGUAGE wasm"
            " CAPABILITIES ('read:items', 'call:count_rows')"
            f" AS $wasm${b64(wasm_of('host'))}$wasm$"
        )
        db.execute(
            "CREATE VIEW items AS SELECT 1 AS n FROM (SELECT count_rows() AS c) WHERE c IS NOT NULL"
        )
        # With depth 1 the nested call is refused and count_rows sees its query
        # fail with status 4 (limit-exceeded); deeper, the innermost refusal
        # unwinds into ordinary one-row answers.
        assert db.execute("SELECT count_rows()").scalar() == expected


@pytest.mark.parametrize(
    ("fixture", "signature", "fragment"),
    [
        ("bad_unknown_import", "() RETURNS BIGINT", "unknown host import"),
        ("bad_import_type", "() RETURNS BIGINT", "has type"),
        ("bad_foreign_import", "() RETURNS BIGINT", "is not allowed"),
        ("bad_version", "() RETURNS BIGINT", "version 99"),
        ("bad_no_marker", "() RETURNS BIGINT", "heliosdb_abi_version"),
        ("bad_no_alloc", "(s TEXT) RETURNS TEXT", "heliosdb_alloc"),
        ("wrong_signature", "(a BIGINT) RETURNS BIGINT", "(i64) -> (i64)"),
    ],
)
def test_bad_modules_are_refused_at_registration(
    db: h.Database, fixture: str, signature: str, fragment: str
) -> None:
    wasm = wasm_of(fixture)
    export = {"wrong_signature": "f_i32", "bad_no_alloc": "echo_text"}.get(fixture, "f")
    before = registry_snapshot(db)
    with pytest.raises(h.AbiError) as err:
        db.execute(
            f"CREATE PROCEDURE p{signature} LANGUAGE wasm USING EXPORT '{export}'"
            f" AS $wasm${b64(wasm)}$wasm$"
        )
    assert err.value.code == "abi-error"
    assert fragment in str(err.value), str(err.value)
    assert registry_snapshot(db) == before


@pytest.mark.parametrize(
    "wasm",
    [
        b"\0asm\x01\x00\x00\x00\x01\xff\xff",  # truncated section
        b"\0asm\x02\x00\x00\x00",  # unknown version
        b"\0asm\x0d\x00\x01\x00\x07\x05garbage",  # malformed component
        b"\0asm" + b"\x01\x00\x00\x00" + b"\x00" * 64,  # junk custom sections
    ],
)
def test_malformed_binaries_are_refused(db: h.Database, wasm: bytes) -> None:
    before = registry_snapshot(db)
    with pytest.raises(h.AbiError):
        db.execute(f"CREATE PROCEDURE p() RETURNS BIGINT LANGUAGE wasm AS $wasm${b64(wasm)}$wasm$")
    assert registry_snapshot(db) == before


@pytest.mark.parametrize(
    ("export", "signature"),
    [
        ("log_oob", "() RETURNS BIGINT"),
        ("return_oob", "() RETURNS BIGINT"),
        ("query_oob", "() RETURNS BIGINT"),
        ("bad_utf8", "() RETURNS BIGINT"),
    ],
)
def test_out_of_bounds_buffers_are_abi_errors(
    db: h.Database, register: Register, export: str, signature: str
) -> None:
    register("p", signature, "bad_oob_pointers", export=export)
    with pytest.raises(h.AbiError):
        db.execute("SELECT p()")


@pytest.mark.parametrize("fixture", ["bad_alloc_garbage", "bad_alloc_trap"])
def test_a_broken_guest_allocator_is_contained(
    db: h.Database, register: Register, fixture: str
) -> None:
    register("p", "(s TEXT) RETURNS TEXT", fixture, export="echo_text")
    with pytest.raises(h.ProcedureError) as err:
        db.execute("SELECT p('hello')")
    assert err.value.code in ("abi-error", "trap", "limit-exceeded")
    assert db.execute("SELECT count(*) FROM items").scalar() == 2


def test_malformed_parameter_buffers(db: h.Database, register: Register) -> None:
    register("p", "() RETURNS BIGINT", "bad_bad_params", export="count_too_big")
    register("q", "() RETURNS BIGINT", "bad_bad_params", export="unknown_tag")
    for name in ("p", "q"):
        with pytest.raises(h.AbiError):
            db.execute(f"SELECT {name}()")


@pytest.mark.parametrize(
    ("imports", "say"),
    [
        # An SDK allocator reporting through the host log (the Rust SDK's components).
        (
            '(import "heliosdb" "heliosdb_log" (func $say (param i32 i32 i32)))',
            "(call $say (i32.const 4) (i32.const 16) (i32.const 13))",
        ),
        # A language runtime printing to stderr (Go, CPython).
        (
            '(import "wasi_snapshot_preview1" "fd_write"'
            " (func $w (param i32 i32 i32 i32) (result i32)))",
            "(i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 14))"
            " (drop (call $w (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))",
        ),
    ],
)
def test_a_guest_reporting_out_of_memory_then_trapping_hit_the_memory_limit(
    db: h.Database, imports: str, say: str
) -> None:
    wasm = wasmtime.wat2wasm(
        f"""(module {imports}
          (memory (export "memory") 1)
          (data (i32.const 16) "out of memory\\n")
          (func (export "heliosdb_abi_version") (result i32) i32.const 1)
          (func (export "f") (result i64) {say} unreachable))"""
    )
    db.execute(f"CREATE PROCEDURE f() RETURNS BIGINT LANGUAGE wasm AS $wasm${b64(wasm)}$wasm$")
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT f()")
    assert err.value.limit == "memory"
    # Without the report, the same trap is an ordinary trap.
    plain = wasmtime.wat2wasm('(module (func (export "f") (result i64) unreachable))')
    db.execute(
        "CREATE PROCEDURE g() RETURNS BIGINT LANGUAGE wasm USING EXPORT 'f'"
        f" AS $wasm${b64(plain)}$wasm$"
    )
    with pytest.raises(h.ProcedureTrap):
        db.execute("SELECT g()")
