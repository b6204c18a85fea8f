"""The batch ABI (docs/abi.md §9): `<export>__batch(count, args, out)` takes a
whole column per guest call; Database.call_batch uses it and gives exactly
the row-by-row answers."""

from __future__ import annotations

import pytest
import wasmtime

import heliosdb_wasm as h
from conftest import TEST_LIMITS, b64, seeded_discount

# What every module here has: memory, a bump allocator, the ABI version.
_RUNTIME = """
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "heliosdb_abi_version") (result i32) i32.const 1)
  (func (export "heliosdb_alloc") (param $n i32) (param i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (if (i32.gt_u (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
      (then (drop (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 1))))))
    (local.get $p))
  (func (export "heliosdb_free") (param i32 i32 i32) (global.set $heap (i32.const 1024)))
"""


def _batch_of(name: str) -> str:
    """``<name>__batch``: calls the (i64) -> i64 function ``$<name>`` per row."""
    return f"""
  (func (export "{name}__batch") (param $n i32) (param $args i32) (param $out i32) (result i32)
    (local $i i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i64.store (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 3)))
        (call ${name} (i64.load (i32.add (local.get $args) (i32.shl (local.get $i) (i32.const 3))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.get $n))
"""


# twice(x) = 2x, with a batch entry point; it imports heliosdb_log, so it is
# not an import-free module and the batch runs through the guest.
TWICE = f"""
(module
  (import "heliosdb" "heliosdb_log" (func $log (param i32 i32 i32)))
  (import "heliosdb" "heliosdb_error" (func $error (param i32 i32 i32 i32)))
  {_RUNTIME}
  (data (i32.const 0) "unlucky")
  (data (i32.const 16) "seventeen is refused")
  (func $twice (export "twice") (param $x i64) (result i64)
    (if (i64.eq (local.get $x) (i64.const 13)) (then unreachable))
    (if (i64.eq (local.get $x) (i64.const 17))
      (then
        (call $error (i32.const 0) (i32.const 7) (i32.const 16) (i32.const 20))
        (return (i64.const 0))))
    (i64.mul (local.get $x) (i64.const 2)))
  {_batch_of("twice")}
  (func (export "bad__batch") (param i32) (result i32) i32.const 0)
  (func (export "bad") (param i64) (result i64) (local.get 0)))
"""


@pytest.fixture
def db() -> h.Database:
    database = h.Database.open(":memory:", limits=TEST_LIMITS)
    wasm = b64(wasmtime.wat2wasm(TWICE))
    for name in ("twice", "bad"):
        database.execute(
            f"CREATE PROCEDURE {name}(x BIGINT) RETURNS BIGINT LANGUAGE wasm AS $wasm${wasm}$wasm$"
        )
    return database


def test_a_batch_crosses_into_the_guest_once_per_chunk(db: h.Database) -> None:
    runner = db._runner("twice")
    # The core runs the procedure whole (it may not write), and still hands
    # a batch to the guest's own entry point.
    assert runner._hosted and runner._guest_batch()
    xs = list(range(100, 10_100))  # more than one chunk of 4096 (13 would trap)
    assert db.call_batch("twice", [xs]) == [2 * x for x in xs]
    assert db.call_batch("twice", [[]]) == []
    # NULLs go row by row, with the row-by-row NULL semantics.
    assert db.call_batch("twice", [[1, None]]) == [2, None]
    (metrics,) = db.metrics("twice").values()
    assert metrics.calls == 10_000 + 1  # the NULL row never ran


def test_a_trap_in_a_batch_fails_it_and_the_next_batch_works(db: h.Database) -> None:
    with pytest.raises(h.ProcedureTrap) as err:
        db.call_batch("twice", [list(range(20))])
    assert err.value.procedure == "twice"
    assert db.call_batch("twice", [[20, 21]]) == [40, 42]


def test_a_row_that_raises_fails_its_batch_with_that_error(db: h.Database) -> None:
    # The guest's loop carries on after heliosdb_error; the batch fails with
    # the raised error all the same, counted once, and the next one is exact.
    with pytest.raises(h.UserError, match="seventeen is refused") as err:
        db.call_batch("twice", [[15, 16, 17, 18]])
    assert err.value.user_code == "unlucky" and err.value.procedure == "twice"
    assert db.call_batch("twice", [[15, 16]]) == [30, 32]
    (metrics,) = db.metrics("twice").values()
    assert (metrics.calls, metrics.errors) == (3, 1)


def test_a_batch_entry_point_of_the_wrong_type_is_an_abi_error(db: h.Database) -> None:
    with pytest.raises(h.AbiError, match="bad__batch must have type"):
        db.call_batch("bad", [[1, 2]])


@pytest.mark.parametrize("language", ["assemblyscript", "go", "rust"])
def test_sdk_procedures_get_a_batch_entry_point(language: str) -> None:
    with seeded_discount("basic", language) as db:
        assert db._runner("cd")._guest_batch()
        ids = [12345, 23456, 34567] * 100
        totals = [float(i) for i in range(300)]
        expected = [db.call("cd", c, t) for c, t in zip(ids, totals, strict=True)]
        assert db.call_batch("cd", [ids, totals]) == expected
        # A row that fails (no such customer) fails the batch with its error.
        with pytest.raises(h.UserError) as err:
            db.call_batch("cd", [[12345, 99999, 12345], [1.0, 2.0, 3.0]])
        assert err.value.user_code == "CUSTOMER_NOT_FOUND"


# loud(x) = x, printing "hello\n" to stdout once per row (WASI fd_write).
LOUD = f"""
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  {_RUNTIME}
  (data (i32.const 16) "hello\\n")
  (func $loud (export "loud") (param $x i64) (result i64)
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 6))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (local.get $x))
  {_batch_of("loud")})
"""


def test_batch_output_beyond_the_log_limit_fails_that_batch() -> None:
    db = h.Database.open(":memory:", limits=TEST_LIMITS)
    db.execute(
        "CREATE PROCEDURE loud(x BIGINT) RETURNS BIGINT LANGUAGE wasm "
        "CAPABILITIES ('stdout') WITH (max_log_bytes = 20) "
        f"AS $wasm${b64(wasmtime.wat2wasm(LOUD))}$wasm$"
    )
    assert db.call_batch("loud", [[1, 2]]) == [1, 2]  # 12 bytes of output
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.call_batch("loud", [list(range(10))])  # 60 bytes
    assert err.value.limit == "max_log_bytes"
    # The failure belongs to that batch: the next call is not charged with it.
    assert db.execute("SELECT loud(7)").scalar() == 7
