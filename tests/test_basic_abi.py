"""The Basic ABI (docs/abi.md) end to end: values, every host function, errors, rollback."""

from __future__ import annotations

import math
import time

import pytest
import wasmtime

import heliosdb_wasm as h
from conftest import Register, b64


def count(db: h.Database) -> int:
    return int(db.execute("SELECT count(*) FROM items").scalar() or 0)


# --- values ---------------------------------------------------------------------


def test_numeric_module_without_imports_runs_as_is(db: h.Database, register: Register) -> None:
    register("add_i64", "(a BIGINT, b BIGINT) RETURNS BIGINT", "numeric")
    register("mul_f64", "(a DOUBLE, b DOUBLE) RETURNS DOUBLE", "numeric")
    register("add_i32", "(a INTEGER, b INTEGER) RETURNS INTEGER", "numeric")
    register("half_f32", "(a REAL) RETURNS REAL", "numeric")
    register("is_positive", "(a BIGINT) RETURNS BOOLEAN", "numeric")
    register("identity_i64", "(a BIGINT) RETURNS BIGINT", "numeric")
    register("identity_f64", "(a DOUBLE) RETURNS DOUBLE", "numeric")
    assert db.execute(
        "SELECT add_i64(2, 40), mul_f64(1.5, 4), add_i32(-3, 1), half_f32(3)"
    ).rows == [(42, 6.0, -2, 1.5)]
    assert db.execute("SELECT is_positive(5), is_positive(-5)").rows == [(1, 0)]
    lo, hi = -(2**63), 2**63 - 1
    assert db.execute(f"SELECT identity_i64({lo}), identity_i64({hi})").rows == [(lo, hi)]
    inf, nan, negzero = (
        db.call("identity_f64", math.inf),
        db.call("identity_f64", math.nan),
        db.call("identity_f64", -0.0),
    )
    assert inf == math.inf and math.isnan(nan) and math.copysign(1, negzero) == -1
    # Numeric procedures over a table, inside an ordinary query.
    assert db.execute("SELECT sum(add_i64(id, 10)) FROM items").scalar() == 23


def test_null_arguments_return_null_without_running_the_guest(
    db: h.Database, register: Register
) -> None:
    register("add_i64", "(a BIGINT, b BIGINT) RETURNS BIGINT", "numeric")
    assert db.execute("SELECT add_i64(NULL, 1)").scalar() is None


def test_called_on_null_input_lets_the_guest_see_nulls(db: h.Database, register: Register) -> None:
    register("nullable_tag", "(a BIGINT) RETURNS BIGINT", "text", extra="CALLED ON NULL INPUT")
    assert db.execute("SELECT nullable_tag(NULL), nullable_tag(5)").rows == [(0, 1)]


def test_argument_types_are_checked(db: h.Database, register: Register) -> None:
    register("add_i32", "(a INTEGER, b INTEGER) RETURNS INTEGER", "numeric")
    with pytest.raises(h.InvalidArgument) as err:
        db.execute("SELECT add_i32('seven', 1)")
    assert "argument a" in str(err.value)
    with pytest.raises(h.InvalidArgument):
        db.execute(f"SELECT add_i32({2**40}, 1)")  # out of INTEGER range
    with pytest.raises(h.InvalidArgument):
        db.call("add_i32", 1)  # wrong arity through the Python API


def test_text_blob_and_empty_values(db: h.Database, register: Register) -> None:
    register("echo_text", "(s TEXT) RETURNS TEXT", "text")
    register("echo_blob", "(b BLOB) RETURNS BLOB", "text")
    register("text_length", "(s TEXT) RETURNS BIGINT", "text")
    assert db.execute("SELECT echo_text('héllo wörld ✓')").scalar() == "héllo wörld ✓"
    assert db.execute("SELECT echo_text('')").scalar() == ""
    assert db.execute("SELECT text_length('✓✓')").scalar() == 6
    assert db.execute("SELECT echo_blob(x'00ff0010')").scalar() == b"\x00\xff\x00\x10"
    big = "x" * (1024 * 1024)
    assert db.call("echo_text", big) == big


def test_return_null_overrides_the_wasm_result(db: h.Database, register: Register) -> None:
    register("return_null", "() RETURNS BIGINT", "text")
    assert db.execute("SELECT return_null()").scalar() is None


def test_missing_return_and_bad_json_are_abi_errors(db: h.Database, register: Register) -> None:
    register("no_return", "(s TEXT) RETURNS TEXT", "text")
    register("return_json_bad", "(s TEXT) RETURNS JSON", "text")
    with pytest.raises(h.AbiError) as err:
        db.execute("SELECT no_return('x')")
    assert "heliosdb_return" in str(err.value) and err.value.procedure == "no_return"
    with pytest.raises(h.AbiError) as err:
        db.execute("SELECT return_json_bad('x')")
    assert "JSON" in str(err.value)


# --- host functions ---------------------------------------------------------------


def test_query_and_execute(db: h.Database, register: Register) -> None:
    register("count_rows", "() RETURNS BIGINT", "host", caps=("read:items",))
    register("insert_item", "(id BIGINT) RETURNS BIGINT", "host", caps=("write:items",))
    register("query_param_text", "(label TEXT) RETURNS BIGINT", "host", caps=("read:items",))
    assert db.execute("SELECT count_rows()").scalar() == 2
    assert db.execute("SELECT insert_item(10)").scalar() == 1
    assert db.execute("SELECT id FROM items WHERE id = 10").scalar() == 10
    assert db.call("count_rows") == 3
    # Parameters are bound, never spliced: a quote in the value is just data.
    assert db.execute("SELECT query_param_text('pear')").scalar() == 1
    assert db.call("query_param_text", "x' OR '1'='1") == 0


def test_capabilities_are_enforced_by_the_authorizer(db: h.Database, register: Register) -> None:
    register("count_rows", "() RETURNS BIGINT", "host")
    register("insert_item", "(id BIGINT) RETURNS BIGINT", "host", caps=("read:items",))
    before = count(db)
    # count_rows returns the query status when the query fails: 1 = access-denied.
    assert db.execute("SELECT count_rows()").scalar() == 1
    assert db.execute("SELECT insert_item(99)").scalar() == 1
    assert count(db) == before


def test_sql_errors_reach_the_guest_as_status_and_message(
    db: h.Database, register: Register
) -> None:
    register("bad_sql", "() RETURNS BIGINT", "host")
    register("bad_sql_message", "() RETURNS TEXT", "host")
    assert db.execute("SELECT bad_sql()").scalar() == 2
    assert "syntax error" in str(db.execute("SELECT bad_sql_message()").scalar())


def test_user_error_fails_the_call_and_rolls_back(db: h.Database, register: Register) -> None:
    register("insert_then_error", "(id BIGINT) RETURNS BIGINT", "host", caps=("write:items",))
    before = count(db)
    with pytest.raises(h.UserError) as err:
        db.execute("SELECT insert_then_error(50)")
    assert err.value.code == "user-error" and err.value.user_code == "BOOM"
    assert err.value.message == "exploded"
    assert (err.value.procedure, err.value.version) == ("insert_then_error", 1)
    assert count(db) == before


def test_a_trap_after_a_recorded_error_raises_that_error(
    db: h.Database, register: Register
) -> None:
    register("insert_error_then_trap", "(id BIGINT) RETURNS BIGINT", "host", caps=("write:items",))
    before = count(db)
    with pytest.raises(h.UserError) as err:
        db.execute("SELECT insert_error_then_trap(55)")
    assert err.value.user_code == "BOOM" and err.value.message == "exploded"
    assert count(db) == before


def test_trap_rolls_back_and_the_next_call_works(db: h.Database, register: Register) -> None:
    register("insert_then_trap", "(id BIGINT) RETURNS BIGINT", "host", caps=("write:items",))
    register("insert_item", "(id BIGINT) RETURNS BIGINT", "host", caps=("write:items",))
    before = count(db)
    with pytest.raises(h.ProcedureTrap) as err:
        db.execute("SELECT insert_then_trap(60)")
    assert err.value.code == "trap" and "unreachable" in str(err.value)
    assert count(db) == before
    assert db.execute("SELECT insert_item(61)").scalar() == 1
    assert count(db) == before + 1


def test_a_failed_call_rolls_back_inside_the_callers_transaction(
    db: h.Database, register: Register
) -> None:
    register("insert_then_error", "(id BIGINT) RETURNS BIGINT", "host", caps=("write:items",))
    register("insert_item", "(id BIGINT) RETURNS BIGINT", "host", caps=("write:items",))
    db.execute("BEGIN")
    db.execute("INSERT INTO items(id) VALUES (70)")
    db.execute("SELECT insert_item(71)")
    with pytest.raises(h.UserError):
        db.execute("SELECT insert_then_error(72)")
    db.execute("COMMIT")
    ids = [r[0] for r in db.execute("SELECT id FROM items WHERE id >= 70 ORDER BY id")]
    assert ids == [70, 71]


def test_procedure_inside_a_writing_statement_runs_read_only(
    db: h.Database, register: Register
) -> None:
    register("count_rows", "() RETURNS BIGINT", "host", caps=("read:items",))
    register("insert_item", "(id BIGINT) RETURNS BIGINT", "host", caps=("write:items",))
    db.execute("CREATE TABLE log(n INTEGER)")
    db.execute("INSERT INTO log SELECT count_rows()")
    assert db.execute("SELECT n FROM log").scalar() == 2
    # A write from inside a writing statement is refused (status 1), not half-applied.
    db.execute("INSERT INTO log SELECT insert_item(80)")
    assert db.execute("SELECT n FROM log ORDER BY rowid DESC LIMIT 1").scalar() == 1
    assert db.execute("SELECT count(*) FROM items WHERE id = 80").scalar() == 0


def test_log_levels_are_captured(db: h.Database, register: Register) -> None:
    register("log_levels", "() RETURNS BIGINT", "host")
    assert db.execute("SELECT log_levels()").scalar() == 5
    logs = db.logs("log_levels")
    assert [(r.level, r.message) for r in logs] == [
        ("trace", "t"),
        ("debug", "d"),
        ("info", "i"),
        ("warn", "w"),
        ("error", "e"),
    ]
    assert all(r.version == 1 for r in logs)


def test_now_is_unix_microseconds(db: h.Database, register: Register) -> None:
    register("now", "() RETURNS BIGINT", "host")
    before = time.time_ns() // 1000
    value = db.execute("SELECT now()").scalar()
    assert isinstance(value, int) and before <= value <= time.time_ns() // 1000


def test_transactions(db: h.Database, register: Register) -> None:
    caps = ("write:items", "transaction")
    register("tx_commit", "(id BIGINT) RETURNS BIGINT", "host", caps=caps)
    register("tx_rollback", "(id BIGINT) RETURNS BIGINT", "host", caps=caps)
    register("commit_without_begin", "() RETURNS BIGINT", "host", caps=caps)
    register("tx_left_open", "(id BIGINT) RETURNS BIGINT", "host", caps=caps)
    before = count(db)
    db.execute("SELECT tx_commit(90)")
    assert count(db) == before + 1
    assert db.execute("SELECT tx_rollback(91)").scalar() == 0
    assert count(db) == before + 1
    assert db.execute("SELECT commit_without_begin()").scalar() == 5
    with pytest.raises(h.InvalidArgument) as err:
        db.execute("SELECT tx_left_open(92)")
    assert "still open" in str(err.value)
    assert count(db) == before + 1


def test_transactions_need_the_capability(db: h.Database, register: Register) -> None:
    register("tx_commit", "(id BIGINT) RETURNS BIGINT", "host", caps=("write:items",))
    before = count(db)
    db.execute("SELECT tx_commit(93)")  # begin fails with access-denied; the guest goes on
    assert db.execute("SELECT count(*) FROM items WHERE id = 93").scalar() in (0, 1)
    assert count(db) >= before


def test_table_procedure_is_usable_as_a_table(db: h.Database, register: Register) -> None:
    register("fruit", "() RETURNS TABLE(name TEXT, qty BIGINT)", "host", export="rows_table")
    assert db.execute("SELECT * FROM fruit()").rows == [("apple", 3), ("pear", 5)]
    assert db.execute("SELECT sum(qty) FROM fruit() WHERE name <> 'apple'").scalar() == 5
    assert db.call("fruit") == [("apple", 3), ("pear", 5)]


def test_table_columns_must_match_the_declaration(db: h.Database, register: Register) -> None:
    register("fruit", "() RETURNS TABLE(name TEXT)", "host", export="rows_table")
    with pytest.raises(h.AbiError) as err:
        db.execute("SELECT * FROM fruit()")
    assert "columns" in str(err.value)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("access-denied", h.CapabilityDenied),
        ("sql-error", h.SqlError),
        ("constraint", h.ConstraintViolation),
        ("invalid-argument", h.InvalidArgument),
        ("OUT_OF_STOCK", h.UserError),
    ],
)
def test_error_codes_that_name_a_wit_case_pass_the_host_error_on(
    db: h.Database, code: str, error: type[h.ProcedureError]
) -> None:
    wasm = wasmtime.wat2wasm(
        f"""(module
          (import "heliosdb" "heliosdb_error" (func $error (param i32 i32 i32 i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "{code}")
          (data (i32.const 64) "passed on")
          (func (export "heliosdb_abi_version") (result i32) i32.const 1)
          (func (export "f") (result i64)
            (call $error (i32.const 16) (i32.const {len(code)}) (i32.const 64) (i32.const 9))
            i64.const 0))"""
    )
    db.execute(f"CREATE PROCEDURE f() RETURNS BIGINT LANGUAGE wasm AS $wasm${b64(wasm)}$wasm$")
    with pytest.raises(error) as err:
        db.execute("SELECT f()")
    assert err.value.message == "passed on"
    assert err.value.code == ("user-error" if code == "OUT_OF_STOCK" else code)
