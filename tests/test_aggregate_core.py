"""Aggregates SQLite calls in the Rust core (engine/core/src/python/
aggregate.rs): each group on an instance pinned from the pool, its state
kept in the core, no Python per row; and the Python groups of aggregates
the core cannot run, driven from the same SQL function."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime

import heliosdb_wasm as h
from conftest import TEST_LIMITS, b64
from heliosdb_wasm import _core

UDAF = Path(__file__).parent / "fixtures" / "singlestore"
WASM = bytes(wasmtime.wat2wasm((UDAF / "udaf.wat").read_text()))
WIT = (UDAF / "udaf.wit").read_bytes()

AVG = (
    "CREATE AGGREGATE avg_h(DOUBLE NOT NULL) RETURNS DOUBLE NOT NULL WITH STATE HANDLE"
    f" AS WASM FROM BASE64 '{b64(WASM)}' WITH WIT FROM BASE64 '{b64(WIT)}'"
    " INITIALIZE WITH avg_init ITERATE WITH avg_iter MERGE WITH avg_merge"
    " TERMINATE WITH avg_term DESTROY WITH avg_destroy"
)
SUM_SQ = (
    "CREATE AGGREGATE sum_sq(BIGINT) RETURNS BIGINT WITH STATE BIGINT"
    f" AS WASM FROM BASE64 '{b64(WASM)}' WITH WIT FROM BASE64 '{b64(WIT)}'"
    " INITIALIZE WITH sq_init ITERATE WITH sq_iter MERGE WITH sq_merge TERMINATE WITH sq_term"
)
BASIC_SUM_SQ = (
    "CREATE AGGREGATE bsum_sq(BIGINT) RETURNS BIGINT WITH STATE BIGINT AS WASM ABI BASIC"
    f" FROM BASE64 '{b64(WASM)}'"
    ' INITIALIZE WITH "sq-init" ITERATE WITH "sq-iter" MERGE WITH "sq-merge"'
    ' TERMINATE WITH "sq-term"'
)


@pytest.fixture
def db() -> h.Database:
    database = h.Database.open(":memory:", limits=TEST_LIMITS)
    for ddl in (AVG, SUM_SQ, BASIC_SUM_SQ):
        database.execute(ddl)
    database.execute("CREATE TABLE t(g INTEGER, x)")
    return database


def _core_of(db: h.Database, name: str) -> _core.Aggregate:
    target = db._runner(name)._aggregate
    assert isinstance(target, _core.Aggregate), f"{name} is not run by the core"
    return target


def test_every_group_runs_in_the_core_on_one_pinned_instance(db: h.Database) -> None:
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 999)"
        " INSERT INTO t SELECT i % 10, i FROM n"
    )
    rows = db.execute(
        "SELECT g, avg_h(x), sum_sq(x), bsum_sq(x), avg(x), sum(x * x) FROM t GROUP BY g"
    ).rows
    assert len(rows) == 10
    for _, avg_h, sum_sq, bsum_sq, avg, sum_x2 in rows:
        assert avg_h == pytest.approx(avg) and sum_sq == bsum_sq == sum_x2
    for name in ("avg_h", "sum_sq", "bsum_sq"):
        # Groups one after another: one instance, handed from group to group.
        assert _core_of(db, name).instantiated == 1


def test_a_handle_is_destroyed_with_its_group(db: h.Database) -> None:
    # udaf.wat's handles are 16-byte slots from a bump allocator in one
    # 64 KiB page: 5 000 groups whose handles leaked would run out of
    # memory (a trap) past about 4 000.
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 9999)"
        " INSERT INTO t SELECT i / 2, i FROM n"
    )
    rows = db.execute("SELECT g, avg_h(x) FROM t GROUP BY g").rows
    assert len(rows) == 5000
    assert all(avg == 2 * g + 0.5 for g, avg in rows)
    assert _core_of(db, "avg_h").instantiated == 1


def test_a_failed_row_destroys_the_handle_and_hands_the_instance_back(db: h.Database) -> None:
    db.execute("INSERT INTO t VALUES (1, 1.0), (1, 'abc'), (1, 3.0)")
    # More failed groups than the page holds handles: each one's was freed.
    for _ in range(4500):
        with pytest.raises(h.InvalidArgument, match=r"argument x: expected a number \(float64\)"):
            db.execute("SELECT avg_h(x) FROM t")
    db.execute("DELETE FROM t WHERE x = 'abc'")
    assert db.execute("SELECT avg_h(x) FROM t").scalar() == 2.0
    target = _core_of(db, "avg_h")
    assert target.instantiated == 1 and target.idle_instances == 1
    (m,) = db.metrics("avg_h").values()
    assert m.error_codes == {"invalid-argument": 4500}


def test_a_basic_abi_aggregate_skips_nulls_and_refuses_what_is_no_number(
    db: h.Database,
) -> None:
    db.execute("INSERT INTO t VALUES (1, 3), (1, NULL), (1, 4), (1, 2.0)")
    # A strict transition: the NULL row is skipped; 2.0 is the integer 2.
    assert db.execute("SELECT bsum_sq(x) FROM t").scalar() == 29
    db.execute("INSERT INTO t VALUES (1, 'four')")
    with pytest.raises(h.InvalidArgument, match=r"\[bsum_sq v1\].*expected BIGINT, got TEXT"):
        db.execute("SELECT bsum_sq(x) FROM t")
    db.execute("UPDATE t SET x = 2.5 WHERE x = 'four'")
    with pytest.raises(h.InvalidArgument, match="expected BIGINT, got REAL"):
        db.execute("SELECT bsum_sq(x) FROM t")
    # SingleStore's WIT says s64, no option: a NULL is refused, by name.
    db.execute("DELETE FROM t WHERE x = 2.5")
    with pytest.raises(h.InvalidArgument, match="argument x may not be NULL"):
        db.execute("SELECT sum_sq(x) FROM t")


def test_each_role_call_counts_as_a_call(db: h.Database) -> None:
    db.execute("INSERT INTO t VALUES (1, 1.0), (1, 2.0), (2, 3.0)")
    assert db.execute("SELECT sum(a) FROM (SELECT avg_h(x) a FROM t GROUP BY g)").scalar() == 4.5
    db.execute("SELECT 1")  # the next statement folds the core's tally in
    (m,) = db.metrics("avg_h").values()
    # Per group INITIALIZE, TERMINATE and DESTROY, and ITERATE per row.
    assert (m.calls, m.errors) == (2 * 3 + 3, 0)


def test_no_rows_initialize_then_terminate(db: h.Database) -> None:
    assert db.execute("SELECT avg_h(x), sum_sq(x), bsum_sq(x) FROM t").rows == [(0.0, 0, 0)]


def test_a_trap_poisons_the_groups_instance_only(tmp_path: Path) -> None:
    wat = """(module
      (memory (export "memory") 1)
      (func (export "init") (result i64) (i64.const 0))
      (func (export "iter") (param i64 i64) (result i64)
        (if (i64.eq (local.get 1) (i64.const 13)) (then unreachable))
        (i64.add (local.get 0) (local.get 1)))
      (func (export "merge") (param i64 i64) (result i64) (i64.add (local.get 0) (local.get 1)))
      (func (export "term") (param i64) (result i64) (local.get 0)))"""
    db = h.Database.open(str(tmp_path / "a.db"), limits=TEST_LIMITS)
    db.execute(
        "CREATE AGGREGATE unlucky(BIGINT) RETURNS BIGINT WITH STATE BIGINT AS WASM ABI BASIC"
        f" FROM BASE64 '{b64(wasmtime.wat2wasm(wat))}'"
        " INITIALIZE WITH init ITERATE WITH iter MERGE WITH merge TERMINATE WITH term"
    )
    db.execute("CREATE TABLE t(x)")
    db.execute("INSERT INTO t VALUES (1), (13), (2)")
    with pytest.raises(h.ProcedureTrap, match="unreachable") as err:
        db.execute("SELECT unlucky(x) FROM t")
    assert err.value.procedure == "unlucky"
    db.execute("DELETE FROM t WHERE x = 13")
    assert db.execute("SELECT unlucky(x) FROM t").scalar() == 3
    # The trapped instance was dropped, the next group made a new one.
    assert _core_of(db, "unlucky").instantiated == 2


def test_threads_on_one_database_each_get_their_own_groups(db: h.Database) -> None:
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 1999)"
        " INSERT INTO t SELECT i % 7, i FROM n"
    )
    expected = db.execute("SELECT g, avg(x), sum(x * x) FROM t GROUP BY g").rows

    def once() -> None:
        got = db.execute("SELECT g, avg_h(x), bsum_sq(x) FROM t GROUP BY g").rows
        assert [(g, pytest.approx(a), s) for g, a, s in got] == expected

    _in_threads(once, 20)


def _in_threads(once: Callable[[], None], times: int, threads: int = 4) -> None:
    """``once`` ``times`` over on each of ``threads`` threads at once; the
    first failure of any is the test's."""
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(times):
                once()
        except BaseException as exc:  # noqa: BLE001 - reported in the test's thread
            failures.append(exc)

    running = [threading.Thread(target=work) for _ in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join()
    assert failures == []


def _bytesum(tmp_path: Path, wit_arg: str, wasm_arg: str, sql_arg: str) -> h.Database:
    """bytesum(x): the sum of x, an argument of WIT type ``wit_arg``."""
    wat = f"""(module
      (memory (export "memory") 1)
      (func (export "canonical_abi_realloc") (param i32 i32 i32 i32) (result i32) unreachable)
      (func (export "canonical_abi_free") (param i32 i32 i32))
      (func (export "c-init") (result i64) (i64.const 0))
      (func (export "c-iter") (param i64 {wasm_arg}) (result i64)
        (i64.add (local.get 0) {"(i64.extend_i32_u (local.get 1))" if wasm_arg == "i32" else "(local.get 1)"}))
      (func (export "c-merge") (param i64 i64) (result i64) (i64.add (local.get 0) (local.get 1)))
      (func (export "c-term") (param i64) (result i64) (local.get 0)))"""
    wit = (
        f"c-init: func() -> s64\nc-iter: func(s: s64, x: {wit_arg}) -> s64\n"
        "c-merge: func(a: s64, b: s64) -> s64\nc-term: func(s: s64) -> s64\n"
    ).encode()
    db = h.Database.open(str(tmp_path / "p.db"), limits=TEST_LIMITS)
    db.execute(
        f"CREATE AGGREGATE bytesum({sql_arg}) RETURNS BIGINT WITH STATE BIGINT"
        f" AS WASM FROM BASE64 '{b64(wasmtime.wat2wasm(wat))}' WITH WIT FROM BASE64 '{b64(wit)}'"
        " INITIALIZE WITH c_init ITERATE WITH c_iter MERGE WITH c_merge TERMINATE WITH c_term"
    )
    db.execute("CREATE TABLE t(g, x)")
    return db


def test_a_small_integer_argument_is_range_checked_in_the_core(tmp_path: Path) -> None:
    # A u8 argument: the core checks each row's range; a value outside is
    # Python's to refuse, with the Canonical ABI's words.
    db = _bytesum(tmp_path, "u8", "i32", "TINYINT")
    db.execute("INSERT INTO t VALUES (1, 200), (1, 100), (2, 7)")
    assert db.execute("SELECT g, bytesum(x) FROM t GROUP BY g").rows == [(1, 300), (2, 7)]
    target = _core_of(db, "bytesum")
    db.execute("INSERT INTO t VALUES (2, 300)")
    with pytest.raises(h.InvalidArgument, match="300 is out of range for u8"):
        db.execute("SELECT g, bytesum(x) FROM t GROUP BY g")
    db.execute("UPDATE t SET x = -1 WHERE x = 300")
    with pytest.raises(h.InvalidArgument, match="-1 is out of range for u8"):
        db.execute("SELECT bytesum(x) FROM t")
    # The failed groups let their instances go: the next statement is exact.
    db.execute("DELETE FROM t WHERE x = -1")
    assert db.execute("SELECT bytesum(x) FROM t").scalar() == 307
    assert db.execute("SELECT bytesum(x) FROM t WHERE 0").scalar() == 0
    assert target.idle_instances >= 1


def test_an_aggregate_the_core_cannot_run_gets_python_groups(tmp_path: Path) -> None:
    # A u64 argument needs the Canonical ABI's own conversion: Python groups.
    db = _bytesum(tmp_path, "u64", "i64", "BIGINT")
    db.execute("INSERT INTO t VALUES (1, 200), (1, 100), (2, 7)")
    assert db.execute("SELECT g, bytesum(x) FROM t GROUP BY g").rows == [(1, 300), (2, 7)]
    assert db._runner("bytesum")._aggregate is False
    db.execute("INSERT INTO t VALUES (2, -5)")
    with pytest.raises(h.InvalidArgument, match="-5 is out of range for u64"):
        db.execute("SELECT g, bytesum(x) FROM t GROUP BY g")
    db.execute("DELETE FROM t WHERE x = -5")
    assert db.execute("SELECT bytesum(x) FROM t").scalar() == 307


# A string argument and a tuple state: each role call goes through the
# core's Canonical ABI on the instance the group holds. The allocator is a
# bump pointer that counts live buffers (reset when none is left).
STRING_AGGREGATE = """(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (global $live (export "live") (mut i32) (i32.const 0))
  (func (export "canonical_abi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.add (local.get 3) (i32.const 8))))
    (global.set $live (i32.add (global.get $live) (i32.const 1)))
    (local.get $p))
  (func $free (param i32 i32 i32)
    (global.set $live (i32.sub (global.get $live) (i32.const 1)))
    (if (i32.eqz (global.get $live)) (then (global.set $heap (i32.const 1024)))))
  (func (export "canonical_abi_free") (param i32 i32 i32)
    (call $free (local.get 0) (local.get 1) (local.get 2)))
  ;; state tuple<u32, s64>: (rows, bytes); flat, two values
  (func (export "l-init") (result i32)
    (i32.store (i32.const 16) (i32.const 0))
    (i64.store (i32.const 24) (i64.const 0))
    (i32.const 16))
  (func (export "l-iter") (param $n i32) (param $bytes i64) (param $ptr i32) (param $len i32)
        (result i32)
    (call $free (local.get $ptr) (local.get $len) (i32.const 1))
    (i32.store (i32.const 16) (i32.add (local.get $n) (i32.const 1)))
    (i64.store (i32.const 24) (i64.add (local.get $bytes) (i64.extend_i32_u (local.get $len))))
    (i32.const 16))
  (func (export "l-merge") (param i32 i64 i32 i64) (result i32) (i32.const 16))
  (func (export "l-term") (param $n i32) (param $bytes i64) (result i64)
    (i64.add (i64.mul (i64.extend_i32_u (local.get $n)) (i64.const 1000)) (local.get $bytes))))"""
STRING_WIT = b"""l-init: func() -> tuple<u32, s64>
l-iter: func(s: tuple<u32, s64>, x: string) -> tuple<u32, s64>
l-merge: func(a: tuple<u32, s64>, b: tuple<u32, s64>) -> tuple<u32, s64>
l-term: func(s: tuple<u32, s64>) -> s64
"""


def test_an_aggregate_of_strings_and_a_tuple_state_holds_one_instance(tmp_path: Path) -> None:
    """A string argument and a tuple state (JSON between the role calls):
    each role call in the core's Canonical ABI, on the instance its group
    holds; a NULL refused in the Canonical ABI's words."""
    db = h.Database.open(str(tmp_path / "s.db"), limits=TEST_LIMITS)
    db.execute(
        "CREATE AGGREGATE lens(TEXT) RETURNS BIGINT WITH STATE JSON"
        f" AS WASM FROM BASE64 '{b64(wasmtime.wat2wasm(STRING_AGGREGATE))}'"
        f" WITH WIT FROM BASE64 '{b64(STRING_WIT)}'"
        " INITIALIZE WITH l_init ITERATE WITH l_iter MERGE WITH l_merge TERMINATE WITH l_term"
    )
    db.execute("CREATE TABLE t(g, x)")
    db.execute("INSERT INTO t VALUES (1, 'ab'), (1, 'héllo'), (2, ''), (3, 'xyz')")
    assert db.execute("SELECT g, lens(x) FROM t GROUP BY g ORDER BY g").rows == [
        (1, 2008),
        (2, 1000),
        (3, 1003),
    ]
    assert db._runner("lens")._aggregate is False  # Python drives the groups
    assert db.execute("SELECT lens(x) FROM t WHERE 0").scalar() == 0
    db.execute("INSERT INTO t VALUES (2, NULL)")
    with pytest.raises(h.InvalidArgument, match="argument x may not be NULL") as err:
        db.execute("SELECT g, lens(x) FROM t GROUP BY g")
    assert err.value.procedure == "lens"
    db.execute("DELETE FROM t WHERE x IS NULL")
    # The groups gave their instance back: the one instance served them all.
    assert db.execute("SELECT lens(x) FROM t").scalar() == 4011
    roles = db._runner("lens")._roles
    assert roles and all(n.instantiated == 1 for n in roles.values())


WASI_AGGREGATE = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "memory allocation of 64 bytes failed\\n")
  (global $inits (mut i32) (i32.const 0))
  (func (export "canonical_abi_realloc") (param i32 i32 i32 i32) (result i32) unreachable)
  (func (export "canonical_abi_free") (param i32 i32 i32))
  ;; What wit-bindgen's wasm32-wasi reactors run once per instance.
  (func (export "_initialize") (global.set $inits (i32.add (global.get $inits) (i32.const 1))))
  (func (export "w-init") (result i64) (i64.extend_i32_u (global.get $inits)))
  (func (export "w-iter") (param $s i64) (param $x i64) (result i64)
    (if (i64.eq (local.get $x) (i64.const 13))
      (then
        ;; As Rust's alloc error handler: a line on stderr, then abort.
        (i32.store (i32.const 16) (i32.const 64))
        (i32.store (i32.const 20) (i32.const 37))
        (drop (call $fd_write (i32.const 2) (i32.const 16) (i32.const 1) (i32.const 24)))
        unreachable))
    (i64.add (local.get $s) (local.get $x)))
  (func (export "w-merge") (param i64 i64) (result i64) (i64.add (local.get 0) (local.get 1)))
  (func (export "w-term") (param $s i64) (result i64) (local.get $s)))"""
WASI_WIT = (
    b"w-init: func() -> s64\nw-iter: func(s: s64, x: s64) -> s64\n"
    b"w-merge: func(a: s64, b: s64) -> s64\nw-term: func(s: s64) -> s64\n"
)


def test_a_wasi_guests_aggregate_runs_in_the_core(tmp_path: Path) -> None:
    """What wit-bindgen builds for wasm32-wasi imports WASI: its aggregate
    runs in the core too, on the WASI-linked pool (``_initialize`` once per
    instance), and an allocation failure reported on stderr before the
    trap is the memory limit, as for any WASI guest."""
    db = h.Database.open(str(tmp_path / "w.db"), limits=TEST_LIMITS)
    db.execute(
        "CREATE AGGREGATE wsum(BIGINT) RETURNS BIGINT WITH STATE BIGINT"
        f" AS WASM FROM BASE64 '{b64(wasmtime.wat2wasm(WASI_AGGREGATE))}'"
        f" WITH WIT FROM BASE64 '{b64(WASI_WIT)}'"
        " INITIALIZE WITH w_init ITERATE WITH w_iter MERGE WITH w_merge TERMINATE WITH w_term"
    )
    db.execute("CREATE TABLE t(g, x)")
    db.execute("INSERT INTO t VALUES (1, 10), (1, 20), (2, 5)")
    # The state starts at _initialize's count: 1, once per instance.
    assert db.execute("SELECT g, wsum(x) FROM t GROUP BY g").rows == [(1, 31), (2, 6)]
    made = _core_of(db, "wsum").instantiated  # the pool is the module's (registration's too)
    db.execute("INSERT INTO t VALUES (2, 13)")
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT g, wsum(x) FROM t GROUP BY g")
    assert err.value.limit == "memory" and err.value.procedure == "wsum"
    db.execute("DELETE FROM t WHERE x = 13")
    assert db.execute("SELECT wsum(x) FROM t").scalar() == 36
    # The instance that trapped was dropped; the new one ran _initialize.
    assert _core_of(db, "wsum").instantiated == made + 1


def test_sql_uses_an_aggregate_as_it_uses_its_own(db: h.Database) -> None:
    db.execute("INSERT INTO t VALUES (1, 1), (1, 2), (2, 3), (2, 3)")
    assert db.execute("SELECT sum_sq(DISTINCT x) FROM t").scalar() == 14
    assert db.execute("SELECT sum_sq(x) FILTER (WHERE x > 1) FROM t").scalar() == 22
    assert db.execute(
        "SELECT g, (SELECT sum_sq(x) FROM t u WHERE u.g <= t.g) FROM t GROUP BY g"
    ).rows == [(1, 5), (2, 23)]
    assert db.execute("SELECT g FROM t GROUP BY g HAVING avg_h(x) > 2").rows == [(2,)]
    # No xValue/xInverse: SQLite refuses a window, typed, before any row runs.
    with pytest.raises(h.SqlError, match="may not be used as a window function"):
        db.execute("SELECT sum_sq(x) OVER (ORDER BY x) FROM t")


def test_an_interrupted_statement_hands_the_groups_instance_back(db: h.Database) -> None:
    """SQLite ends an interrupted aggregate with xFinal too: the group's
    instance goes back to the pool and its HANDLE is destroyed."""
    timer = threading.Timer(0.05, db.conn.interrupt)
    timer.start()
    try:
        with pytest.raises(h.ProcedureError):
            db.execute(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n)"
                " SELECT avg_h(i) FROM n"
            )
    finally:
        timer.cancel()
    db.execute("INSERT INTO t VALUES (1, 2.0), (1, 4.0)")
    assert db.execute("SELECT avg_h(x) FROM t").scalar() == 3.0
    target = _core_of(db, "avg_h")
    assert target.instantiated == 1 and target.idle_instances == 1


HOSTED_AGGREGATE = """(module
  (import "heliosdb" "heliosdb_log" (func $log (param i32 i32 i32)))
  (import "heliosdb" "heliosdb_error" (func $error (param i32 i32 i32 i32)))
  (import "heliosdb" "heliosdb_query" (func $query (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "a group starts")
  (data (i32.const 32) "negative")
  (data (i32.const 64) "no negative values")
  (data (i32.const 96) "SELECT 1 FROM secret")
  (func (export "heliosdb_abi_version") (result i32) (i32.const 1))
  (func (export "heliosdb_alloc") (param i32 i32) (result i32) (i32.const 8192))
  (func (export "h-init") (result i64)
    (call $log (i32.const 2) (i32.const 0) (i32.const 14))
    (i64.const 0))
  (func (export "h-iter") (param $s i64) (param $x i64) (result i64)
    (if (i64.lt_s (local.get $x) (i64.const 0))
      (then
        (call $error (i32.const 32) (i32.const 8) (i32.const 64) (i32.const 18))
        (return (local.get $s))))
    ;; 999: the status of a query the aggregate has no capability for.
    (if (i64.eq (local.get $x) (i64.const 999))
      (then (return (i64.extend_i32_s
        (call $query (i32.const 96) (i32.const 20) (i32.const 4000) (i32.const 4) (i32.const 4096))))))
    ;; 1000: a trap.
    (if (i64.eq (local.get $x) (i64.const 1000)) (then unreachable))
    (i64.add (local.get $s) (local.get $x)))
  (func (export "h-merge") (param i64 i64) (result i64) (i64.add (local.get 0) (local.get 1)))
  (func (export "h-term") (param $s i64) (result i64) (local.get $s)))"""


HSUM = (
    "CREATE AGGREGATE hsum(BIGINT) RETURNS BIGINT WITH STATE BIGINT AS WASM ABI BASIC"
    f" FROM BASE64 '{b64(wasmtime.wat2wasm(HOSTED_AGGREGATE))}'"
    ' INITIALIZE WITH "h-init" ITERATE WITH "h-iter" MERGE WITH "h-merge"'
    ' TERMINATE WITH "h-term"'
)


def test_an_aggregate_with_host_imports_runs_in_the_core(tmp_path: Path) -> None:
    """A Basic-ABI module that imports host functions: each role call has a
    hosted call's bracket in the core (its host functions served there, its
    log lines in the procedure's log, heliosdb_error its typed error, the
    capability authorizer on its queries), with no Python group."""
    db = h.Database.open(str(tmp_path / "hosted.db"), limits=TEST_LIMITS)
    db.execute(HSUM)
    db.execute("CREATE TABLE t(g, x)")
    db.execute("CREATE TABLE secret(v)")
    db.execute("INSERT INTO t VALUES (1, 10), (1, 20), (2, 5), (3, NULL)")
    assert db.execute("SELECT g, hsum(x) FROM t GROUP BY g").rows == [(1, 30), (2, 5), (3, 0)]
    target = _core_of(db, "hsum")
    assert [r.message for r in db.logs("hsum")] == ["a group starts"] * 3
    # Reading a table it was not granted: the guest gets access-denied (1).
    assert db.execute("SELECT hsum(x) FROM (SELECT 999 AS x)").scalar() == 1
    # heliosdb_error is the row's typed error, located; the instance stays sound.
    made = target.instantiated
    with pytest.raises(h.UserError, match="no negative values") as err:
        db.execute("SELECT hsum(x) FROM (SELECT -1 AS x)")
    assert err.value.user_code == "negative" and err.value.procedure == "hsum"
    with pytest.raises(h.ProcedureTrap) as trap:
        db.execute("SELECT hsum(x) FROM (SELECT 1000 AS x)")
    assert trap.value.procedure == "hsum"
    assert db.execute("SELECT g, hsum(x) FROM t GROUP BY g").rows == [(1, 30), (2, 5), (3, 0)]
    assert target.instantiated == made + 1  # only the trapped instance was replaced
    (m,) = db.metrics("hsum").values()
    # Per group INITIALIZE and TERMINATE, ITERATE per row that is no NULL;
    # the failed ones counted as errors.
    assert (m.calls, m.errors) == (9 + 3 + 2 + 2 + 9, 2)


def test_threads_share_a_hosted_aggregate_and_its_log(tmp_path: Path) -> None:
    """Threads on one Database run groups of an aggregate with host imports
    at once: each its own instance and host state, every group's log line
    recorded once, the answers exact."""
    db = h.Database.open(str(tmp_path / "threads.db"), limits=TEST_LIMITS)
    db.execute(HSUM)
    db.execute("CREATE TABLE t(g, x)")
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 999)"
        " INSERT INTO t SELECT i % 5, i % 900 FROM n"  # 999 and 1000 are special
    )
    expected = db.execute("SELECT g, sum(x) FROM t GROUP BY g").rows

    def once() -> None:
        assert db.execute("SELECT g, hsum(x) FROM t GROUP BY g").rows == expected

    _in_threads(once, 10)
    assert [r.message for r in db.logs("hsum")] == ["a group starts"] * (4 * 10 * 5)
