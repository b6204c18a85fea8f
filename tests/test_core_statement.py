"""A procedure's statements run in the core (engine/core/src/statement.rs):
each way one can fail reaches the guest as the typed error the host API
names, and what succeeds returns the rows and changes apsw would."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

import heliosdb_wasm as h
from conftest import TEST_LIMITS, b64, wasm_of


@pytest.fixture
def db() -> Iterator[h.Database]:
    limits = TEST_LIMITS.with_overrides(max_query_rows=5, max_result_bytes=4096)
    with h.Database.open(":memory:", limits=limits) as database:
        database.execute("CREATE TABLE t(x INTEGER PRIMARY KEY, s TEXT)")
        database.execute("INSERT INTO t VALUES (1, 'one'), (2, 'two')")
        database.execute(
            "CREATE PROCEDURE run_sql(sql TEXT) RETURNS TEXT LANGUAGE wasm"
            " CAPABILITIES ('read:t', 'write:t')"
            f" USING EXPORT 'run_sql' AS $wasm${b64(wasm_of('host_sql'))}$wasm$"
        )
        yield database


def run(db: h.Database, sql: str) -> object:
    return db.call("run_sql", sql)


@pytest.mark.parametrize(
    ("sql", "error", "fragment"),
    [
        ("SELECT s FROM t; SELECT 2", h.InvalidArgument, "one statement per"),
        ("SELECT s FROM nowhere", h.SqlError, "no such table: nowhere"),
        ("SELEKT 1", h.SqlError, "syntax error"),
        ("INSERT INTO t VALUES (1, 'again')", h.ConstraintViolation, "UNIQUE constraint failed"),
        ("SELECT ?", h.InvalidArgument, "parameters: the statement takes 1"),
        (
            "SELECT * FROM sqlite_master",
            h.CapabilityDenied,
            "missing capability read:sqlite_master",
        ),
        (
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT n FROM c",
            h.ResourceLimitExceeded,
            "max_query_rows (5)",
        ),
        ("SELECT zeroblob(5000)", h.ResourceLimitExceeded, "max_result_bytes (4096)"),
    ],
)
def test_failures_are_typed(
    db: h.Database, sql: str, error: type[h.ProcedureError], fragment: str
) -> None:
    with pytest.raises(error, match=re.escape(fragment)):
        run(db, sql)


def test_rows_changes_and_comments(db: h.Database) -> None:
    assert run(db, "SELECT s FROM t WHERE x = 2 -- and a comment") == "two"
    assert run(db, "UPDATE t SET s = 'uno' WHERE x = 1; -- one statement") == "ok"
    assert db.execute("SELECT s FROM t WHERE x = 1").scalar() == "uno"
    assert run(db, "-- nothing at all") == "ok"
    # The second statement never runs: the first one's write stays only
    # because it is the first (the call failed as a whole and was undone).
    with pytest.raises(h.InvalidArgument):
        run(db, "UPDATE t SET s = 'x'; DELETE FROM t")
    assert db.execute("SELECT count(*) FROM t WHERE s = 'x'").scalar() == 0
    assert db.execute("SELECT count(*) FROM t").scalar() == 2


def test_a_statement_ends_at_the_deadline() -> None:
    limits = TEST_LIMITS.with_overrides(timeout_seconds=0.2)
    with h.Database.open(":memory:", limits=limits) as db:
        db.execute(
            "CREATE PROCEDURE run_sql(sql TEXT) RETURNS TEXT LANGUAGE wasm"
            f" USING EXPORT 'run_sql' AS $wasm${b64(wasm_of('host_sql'))}$wasm$"
        )
        endless = (
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT max(n) FROM c"
        )
        with pytest.raises(h.ResourceLimitExceeded) as err:
            db.call("run_sql", endless)
        assert err.value.limit == "timeout"
