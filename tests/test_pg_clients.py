"""PostgreSQL clients as people use them, against the endpoint: the dialect
they write (translated to SQLite's), the types they read and send (asyncpg
reads and sends binary in the types a statement was described with),
prepared statements and cursors in SQL, and what pools send."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import psycopg.errors
import pytest

import heliosdb_wasm as h
from conftest import TEST_LIMITS, installed, numeric_procedure, pg_connect, pg_tool
from heliosdb_wasm.database import Result
from heliosdb_wasm.pgwire import Server, WireError, WireSession, execute_statement
from heliosdb_wasm.pgwire.cursors import Cursor, parse_fetch
from heliosdb_wasm.pgwire.translate import expand, needs_translation, to_sqlite
from heliosdb_wasm.values import SqlValue


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    db = h.Database.open(tmp_path / "clients.db")
    db.execute(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, total REAL,"
        " vip BOOLEAN, born DATE, photo BLOB, loose)"
    )
    db.execute(
        "INSERT INTO customers VALUES (1, 'ada', 2.5, 1, '1990-01-02', x'00ff', 7),"
        " (2, 'bob', 10, 0, NULL, NULL, 'seven')"
    )
    numeric_procedure(db, "add_i64", "(a BIGINT, b BIGINT) RETURNS BIGINT")
    numeric_procedure(db, "mul_f64", "(a DOUBLE, b DOUBLE) RETURNS DOUBLE")
    db.close()
    with Server(tmp_path / "clients.db", auth="trust", port=0, limits=TEST_LIMITS) as srv:
        yield srv


def connect(server: Server, **kwargs: Any) -> psycopg.Connection[Any]:
    return pg_connect(server, "shop", **kwargs)


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 30))


async def asyncpg_connect(server: Server) -> asyncpg.Connection:
    host, port = server.address
    return await asyncpg.connect(host=host, port=port, user="tester", database="shop")


# --- the dialect ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("postgres", "sqlite"),
    [
        ("SELECT 'x'::text", "SELECT CAST('x' AS TEXT) AS \"text\""),
        ("SELECT pg_catalog.version()", 'SELECT VERSION() AS "version"'),
        ("SELECT current_schema()", 'SELECT CURRENT_SCHEMA() AS "current_schema"'),
        ("SELECT ?1::int", 'SELECT CAST(?1 AS INTEGER) AS "int4"'),
        ("SELECT E'a\\nb' AS s", "SELECT 'a\nb' AS s"),
        ("SELECT 't'::bool AS b", "SELECT PG_BOOL('t') AS b"),
        ("SELECT 1 WHERE 'abc' ~ '^a'", "SELECT 1 AS \"?column?\" WHERE 'abc' REGEXP '^a'"),
        (
            "SELECT relname FROM t WHERE relname OPERATOR(pg_catalog.~) '^(x)$'"
            " COLLATE pg_catalog.default",
            "SELECT relname FROM t WHERE relname REGEXP '^(x)$'",
        ),
        ("SELECT 2 = ANY(ARRAY[1, 2]) AS hit", "SELECT 2 IN (1, 2) AS hit"),
        ("SELECT * FROM public.customers", "SELECT * FROM main.customers"),
        ("SELECT x::regclass AS r FROM t", "SELECT PG_REGCLASS(x) AS r FROM t"),
        ("SELECT json_build_object('a', 1) AS j", "SELECT JSON_OBJECT('a', 1) AS j"),
    ],
)
def test_postgres_spellings_become_sqlite(postgres: str, sqlite: str) -> None:
    assert to_sqlite(postgres) == sqlite


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "SELECT 'a::b ~ ILIKE' -- now() version() ::int",
        "SELECT /* x::int */ name FROM customers WHERE id = ?1",
        "CREATE PROCEDURE p() RETURNS BIGINT LANGUAGE wasm AS $$ x::int $$",
        "SET search_path = public",
    ],
)
def test_sqlite_statements_and_quoted_marks_are_left_alone(sql: str) -> None:
    assert not needs_translation(sql)
    assert to_sqlite(sql) is sql


@pytest.mark.parametrize(
    ("postgres", "sqlite"),
    [
        ("DROP TABLE IF EXISTS a, public.b", ["DROP TABLE IF EXISTS a", "DROP TABLE IF EXISTS b"]),
        ("TRUNCATE TABLE a, b RESTART IDENTITY", ["DELETE FROM a", "DELETE FROM b"]),
        ("create table t(x int) with (fillfactor=100)", ["create table t(x int)"]),
        ("alter table t add primary key (x)", ['CREATE UNIQUE INDEX "t_pkey" ON t (x)']),
        ("VACUUM ANALYZE t", ["ANALYZE t"]),
        ("VACUUM", []),
        ("DROP TABLE a", None),
        ("CREATE TABLE t (x)", None),
    ],
)
def test_ddl_sqlite_spells_differently(postgres: str, sqlite: list[str] | None) -> None:
    assert expand(postgres) == sqlite


def test_ddl_sqlite_cannot_do_is_refused_by_name() -> None:
    with pytest.raises(WireError, match="ADD FOREIGN KEY is not supported"):
        expand("ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (x) REFERENCES u (y)")


def test_several_statements_for_one_are_all_or_none(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("TRUNCATE customers, _heliosdb_procedures")  # the second is refused
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (2,)
        assert conn.execute("TRUNCATE customers").statusmessage == "TRUNCATE TABLE"
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (0,)


def test_what_sqlglot_cannot_read_is_left_for_sqlite_to_refuse() -> None:
    broken = "SELECT (1::int"
    assert needs_translation(broken)
    assert to_sqlite(broken) == broken


def test_psycopg_reads_postgres_functions_and_casts(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        version, database, schema, user = conn.execute(
            "SELECT version(), current_database(), current_schema(), current_user"
        ).fetchone()
        assert version.startswith("PostgreSQL 15.0 (HeliosDB WASM")
        assert (database, schema, user) == ("shop", "public", "tester")
        row = conn.execute(
            "SELECT 'x'::text, '42'::int, 't'::bool, 'off'::boolean, E'a\\tb',"
            " current_setting('server_version_num')::int, 'Ada' ~* '^a', 'b' !~ 'a'"
        ).fetchone()
        assert row == ("x", 42, 1, 0, "a\tb", 150000, 1, 1)
        assert conn.execute("SELECT name FROM public.customers WHERE id = 1").fetchone() == ("ada",)
        now = conn.execute("SELECT now()").fetchone()[0]
        assert datetime.datetime.fromisoformat(now).year >= 2026
        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="boolean"):
            conn.execute("SELECT 'maybe'::bool")
        with pytest.raises(psycopg.errors.InvalidRegularExpression):
            conn.execute("SELECT 'a' ~ '('")
        with pytest.raises(psycopg.errors.UndefinedObject, match="no_such_setting"):
            conn.execute("SELECT current_setting('no_such_setting')")


# --- types: described, then sent so --------------------------------------------------


def test_asyncpg_reads_every_result_in_its_described_type(server: Server) -> None:
    async def check() -> None:
        conn = await asyncpg_connect(server)
        try:
            row = await conn.fetchrow(
                "SELECT 1 AS i, 1.5 AS f, 'x' AS t, count(*) AS n, 2 > 1 AS yes,"
                " add_i64(40, 2) AS added, mul_f64(1.5, 2) AS product, NULL AS absent,"
                " length('abc') AS len, 'x' || 1 AS joined, -(3) AS neg FROM customers"
            )
            assert dict(row) == {
                "i": 1,
                "f": 1.5,
                "t": "x",
                "n": 2,
                "yes": True,
                "added": 42,
                "product": 3.0,
                "absent": None,
                "len": 3,
                "joined": "x1",
                "neg": -3,
            }
            rows = await conn.fetch("SELECT * FROM customers ORDER BY id")
            assert [tuple(r) for r in rows] == [
                (1, "ada", 2.5, True, "1990-01-02", b"\x00\xff", "7"),
                (2, "bob", 10.0, False, None, None, "seven"),
            ]
            statement = await conn.prepare("SELECT id, total, vip, name, photo FROM customers")
            assert [a.type.name for a in statement.get_attributes()] == [
                "int8",
                "float8",
                "bool",
                "text",
                "bytea",
            ]
        finally:
            await conn.close()

    run(check())


def test_a_value_that_is_not_its_columns_declared_type_is_refused(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        conn.execute("UPDATE customers SET total = 'lots' WHERE id = 2")

    async def check() -> None:
        conn = await asyncpg_connect(server)
        try:
            with pytest.raises(
                asyncpg.exceptions.InvalidTextRepresentationError,
                match="column \"total\" is double precision but holds 'lots'",
            ):
                await conn.fetch("SELECT total FROM customers")
            # Cast in the query, and it is the cast's type.
            rows = await conn.fetch("SELECT CAST(total AS TEXT) AS t FROM customers ORDER BY id")
            assert [r["t"] for r in rows] == ["2.5", "lots"]
        finally:
            await conn.close()

    run(check())


def test_untyped_parameters_take_the_type_of_their_use(server: Server) -> None:
    async def check() -> None:
        conn = await asyncpg_connect(server)
        try:
            assert await conn.fetchval("SELECT name FROM customers WHERE id = $1", 2) == "bob"
            assert await conn.fetchval("SELECT add_i64($1, $2)", 40, 2) == 42
            assert await conn.fetchval("SELECT mul_f64($1, 2)", 1.25) == 2.5
            assert await conn.fetchval("SELECT $1::int + 1", 41) == 42
            assert await conn.fetchval("SELECT total * $1 FROM customers WHERE id = 1", 2.0) == 5
            rows = await conn.fetch("SELECT id FROM customers ORDER BY id LIMIT $1 OFFSET $2", 1, 1)
            assert [r["id"] for r in rows] == [2]
            await conn.execute(
                "INSERT INTO customers (id, name, total, vip) VALUES ($1, $2, $3, $4)",
                3,
                "cy",
                1.0,
                True,
            )
            await conn.execute("UPDATE customers SET total = $1 WHERE id = $2", 4.5, 3)
            row = await conn.fetchrow("SELECT total, vip FROM customers WHERE id = 3")
            assert tuple(row) == (4.5, True)
            # What no use types is text, as PostgreSQL's unknown.
            assert await conn.fetchval("SELECT $1", "free") == "free"
            with pytest.raises(asyncpg.exceptions.DataError, match="expected str"):
                await conn.fetchval("SELECT $1", 5)
        finally:
            await conn.close()

    run(check())


def test_an_asyncpg_pool_takes_its_connections_back(server: Server) -> None:
    async def check() -> None:
        host, port = server.address
        pool = await asyncpg.create_pool(
            host=host, port=port, user="tester", database="shop", min_size=1, max_size=1
        )
        try:
            for i in range(3):
                async with pool.acquire() as conn:
                    assert await conn.fetchval("SELECT add_i64($1, 1)", i) == i + 1
        finally:
            await pool.close()

    run(check())


def test_psycopg_binds_dates_and_times_in_binary(server: Server) -> None:
    when = datetime.datetime(2020, 1, 2, 3, 4, 5, 600)
    with connect(server, autocommit=True) as conn:
        row = conn.execute(
            "SELECT %b, %b, %b, %b",
            (
                datetime.date(2020, 1, 2),
                when,
                when.replace(tzinfo=datetime.UTC),
                datetime.time(23, 59, 1),
            ),
        ).fetchone()
        assert row == (
            "2020-01-02",
            "2020-01-02 03:04:05.000600",
            "2020-01-02 03:04:05.000600+00:00",
            "23:59:01",
        )
        # SQLite's date functions read them.
        assert conn.execute(
            "SELECT date(%b, '+1 day')", (datetime.date(2020, 2, 28),)
        ).fetchone() == ("2020-02-29",)
        # psycopg sends dates and timestamps as its own binary types.
        conn.execute(
            "INSERT INTO customers (id, name, born) VALUES (9, 'di', %s)",
            (datetime.date(1999, 12, 31),),
        )
        assert conn.execute("SELECT born FROM customers WHERE id = 9").fetchone() == ("1999-12-31",)


# --- PREPARE / EXECUTE, DECLARE / FETCH / CLOSE ------------------------------------------


def test_prepare_and_execute_in_sql(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        conn.execute("PREPARE by_id (int) AS SELECT name FROM customers WHERE id = $1")
        assert conn.execute("EXECUTE by_id(2)").fetchone() == ("bob",)
        assert conn.execute("EXECUTE by_id('1')").fetchone() == ("ada",)  # coerced to int
        conn.execute("PREPARE two AS SELECT add_i64($1, $2)")
        assert conn.execute("EXECUTE two (40, 2)").fetchone() == (42,)
        with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
            conn.execute("PREPARE two AS SELECT 1")
        with pytest.raises(psycopg.errors.SyntaxError, match="takes 2, EXECUTE gives 1"):
            conn.execute("EXECUTE two (1)")
        conn.execute("DEALLOCATE two")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            conn.execute("EXECUTE two (1, 2)")


def test_psycopg_named_cursors(server: Server) -> None:
    with connect(server) as conn:
        with conn.cursor("by_name") as cur:
            cur.execute("SELECT id, name FROM customers ORDER BY id")
            assert cur.fetchone() == (1, "ada")
            assert cur.fetchmany(5) == [(2, "bob")]
            assert cur.fetchall() == []
        conn.commit()
        with conn.cursor("kept", withhold=True) as cur:
            cur.execute("SELECT name FROM customers ORDER BY id")
            conn.commit()  # a cursor WITH HOLD outlives its transaction
            assert cur.fetchall() == [("ada",), ("bob",)]


def test_sql_cursors_move_both_ways_and_end_with_their_transaction(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.NoActiveSqlTransaction):
            conn.execute("DECLARE c CURSOR FOR SELECT 1")
        conn.execute("BEGIN")
        conn.execute(
            "DECLARE c SCROLL CURSOR FOR WITH RECURSIVE s(value) AS"
            " (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 5) SELECT value FROM s"
        )
        assert conn.execute("FETCH 2 FROM c").fetchall() == [(1,), (2,)]
        assert conn.execute("FETCH PRIOR FROM c").fetchall() == [(1,)]
        assert conn.execute("FETCH LAST IN c").fetchall() == [(5,)]
        assert conn.execute("FETCH BACKWARD 2 FROM c").fetchall() == [(4,), (3,)]
        assert conn.execute("FETCH ABSOLUTE 1 FROM c").fetchall() == [(1,)]
        cur = conn.execute("MOVE FORWARD ALL IN c")
        assert cur.statusmessage == "MOVE 4"
        assert conn.execute("FETCH NEXT FROM c").fetchall() == []
        conn.execute("COMMIT")
        with pytest.raises(psycopg.errors.InvalidCursorName):
            conn.execute("FETCH c")
        conn.execute("DECLARE h CURSOR WITH HOLD FOR SELECT 1")
        assert conn.execute("CLOSE h").statusmessage == "CLOSE CURSOR"
        with pytest.raises(psycopg.errors.InvalidCursorName):
            conn.execute("CLOSE h")
        assert conn.execute("CLOSE ALL").statusmessage == "CLOSE CURSOR ALL"


def test_fetch_directions_follow_postgresql() -> None:
    def cursor() -> Cursor:
        return Cursor(Result(["v"], [(i,) for i in range(1, 6)]), [20], hold=False, size=0)

    def fetch(c: Cursor, sql: str) -> list[int]:
        return [int(r[0]) for r in c.fetch(parse_fetch(sql))[1].rows]  # type: ignore[arg-type]

    c = cursor()
    assert fetch(c, "FETCH RELATIVE 0 FROM c") == []
    assert fetch(c, "FETCH FORWARD FROM c") == [1]
    assert fetch(c, "FETCH RELATIVE 0 FROM c") == [1]
    assert fetch(c, "FETCH RELATIVE 2 FROM c") == [3]
    assert fetch(c, "FETCH ABSOLUTE -2 FROM c") == [4]
    assert fetch(c, "FETCH -1 FROM c") == [3]
    assert fetch(c, "FETCH ALL FROM c") == [4, 5]
    assert fetch(c, "FETCH BACKWARD ALL FROM c") == [5, 4, 3, 2, 1]
    assert fetch(c, "FETCH FIRST FROM c") == [1]
    assert fetch(c, "FETCH ABSOLUTE 9 FROM c") == []
    assert c.position == 6
    assert fetch(c, 'FETCH NEXT FROM "c"') == []


# --- COPY ---------------------------------------------------------------------------------


def test_psycopg_copies_in_and_out_in_text_and_csv(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        with conn.cursor().copy("COPY customers (id, name, total, vip) FROM STDIN") as copy:
            copy.write_row((3, "tab\there", 1.5, True))
            copy.write_row((4, "back\\slash\nnewline", None, False))
        with conn.cursor().copy(
            "COPY customers (id, name, loose) FROM STDIN WITH (FORMAT csv, HEADER)"
        ) as copy:
            copy.write('id,name,loose\n5,"comma, ""quoted""",\n6,six,""\n8,"two\nlines",x\n')
        rows = conn.execute(
            "SELECT id, name, total, vip, loose FROM customers WHERE id > 2 ORDER BY id"
        )
        assert rows.fetchall() == [
            (3, "tab\there", 1.5, True, None),
            (4, "back\\slash\nnewline", None, False, None),
            (5, 'comma, "quoted"', None, None, None),  # unquoted empty: NULL
            (6, "six", None, None, ""),  # quoted empty: ''
            (8, "two\nlines", None, None, "x"),
        ]
        with conn.cursor().copy("COPY customers (id, name, vip) TO STDOUT") as copy:
            text = b"".join(bytes(chunk) for chunk in copy)
        assert text.splitlines()[2:4] == [b"3\ttab\\there\tt", b"4\tback\\\\slash\\nnewline\tf"]
        with conn.cursor().copy(
            "COPY (SELECT id, name, loose FROM customers WHERE id >= 5 ORDER BY id) TO STDOUT"
            " WITH CSV HEADER"
        ) as copy:
            csv_text = b"".join(bytes(chunk) for chunk in copy).decode()
        assert csv_text == 'id,name,loose\n5,"comma, ""quoted""",\n6,six,""\n8,"two\nlines",x\n'


def test_a_bad_row_leaves_no_row_of_its_copy(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        with (
            pytest.raises(
                psycopg.errors.InvalidTextRepresentation,
                match=r"COPY customers, line 2, column total: 'lots' is not a valid double",
            ),
            conn.cursor().copy("COPY customers (id, name, total) FROM STDIN") as copy,
        ):
            copy.write("10\tok\t1\n11\tbad\tlots\n")
        with (
            pytest.raises(psycopg.errors.BadCopyFileFormat, match="2 columns, expected 3"),
            conn.cursor().copy("COPY customers (id, name, total) FROM STDIN") as copy,
        ):
            copy.write("12\tshort\n")
        with (
            pytest.raises(RuntimeError, match="gives up"),
            conn.cursor().copy("COPY customers (id, name) FROM STDIN") as copy,
        ):
            copy.write("13\tx\n")
            raise RuntimeError("the client gives up")  # psycopg sends CopyFail
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (2,)
        # Inside a transaction a failed COPY fails the transaction, as in PostgreSQL.
        conn.execute("BEGIN")
        conn.execute("INSERT INTO customers (id, name) VALUES (20, 'kept?')")
        with (
            pytest.raises(psycopg.errors.InvalidTextRepresentation),
            conn.cursor().copy("COPY customers (id, total) FROM STDIN") as copy,
        ):
            copy.write("21\tnope\n")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (2,)


def test_copy_never_touches_server_files_and_names_what_it_refuses(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        for sql in ("COPY customers FROM '/etc/passwd'", "COPY customers TO PROGRAM 'id'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="file or program"):
                conn.execute(sql)
        with pytest.raises(psycopg.errors.UndefinedTable, match='"nope"'):
            conn.execute("COPY nope FROM STDIN")
        with pytest.raises(psycopg.errors.UndefinedColumn, match='"nope" of relation'):
            conn.execute("COPY customers (nope) FROM STDIN")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="extended query protocol"):
            conn.execute("COPY customers TO STDOUT", prepare=True)
        with pytest.raises(psycopg.errors.SyntaxError, match='option "bogus"'):
            conn.execute("COPY customers TO STDOUT WITH (bogus)")


def test_psql_copies_files_through_stdin_and_stdout(server: Server, tmp_path: Path) -> None:
    binary = pg_tool("psql")
    source = tmp_path / "in.csv"
    source.write_text("30,from a file\n31,another\n")
    target = tmp_path / "out.txt"
    host, port = server.address
    run = subprocess.run(
        [
            *(binary, "-X", "-h", host, "-p", str(port), "-U", "tester", "-d", "shop"),
            *("-v", "ON_ERROR_STOP=1"),
            *("-c", f"\\copy customers (id, name) from '{source}' csv"),
            *("-c", f"\\copy (select id, name from customers where id >= 30) to '{target}'"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (run.returncode, run.stdout, run.stderr) == (0, "COPY 2\nCOPY 2\n", "")
    assert target.read_text() == "30\tfrom a file\n31\tanother\n"


def test_asyncpg_copies_records_in_binary_and_tables_out(server: Server) -> None:
    async def check() -> None:
        conn = await asyncpg_connect(server)
        try:
            done = await conn.copy_records_to_table(
                "customers",
                records=[(40, "bin", 0.5, True, b"\x01\x02"), (41, "nul", None, None, None)],
                columns=["id", "name", "total", "vip", "photo"],
            )
            assert done == "COPY 2"
            row = await conn.fetchrow("SELECT name, total, vip, photo FROM customers WHERE id = 40")
            assert tuple(row) == ("bin", 0.5, True, b"\x01\x02")
            out = io.BytesIO()
            assert (
                await conn.copy_from_query(
                    "SELECT id, total FROM customers WHERE id >= 40 ORDER BY id", output=out
                )
                == "COPY 2"
            )
            assert out.getvalue() == b"40\t0.5\n41\t\\N\n"
        finally:
            await conn.close()

    run(check())


def test_copy_runs_through_the_executor_plugins_wrap(tmp_path: Path) -> None:
    """What COPY reads and writes are ordinary statements to the executor (the
    plugin pipeline), so a rule on SELECT and INSERT holds for COPY too."""
    seen: list[str] = []

    def guarded(session: WireSession, sql: str, params: Sequence[SqlValue]) -> Result:
        seen.append(sql)
        if "secrets" in sql and not sql.startswith("INSERT"):
            raise WireError("42501", "secrets are not for you")
        return execute_statement(session, sql, params)

    with h.Database.open(tmp_path / "guarded.db") as db:
        db.execute("CREATE TABLE secrets (v TEXT)")
    with (
        Server(tmp_path / "guarded.db", auth="trust", port=0, executor=guarded) as server,
        connect(server, autocommit=True) as conn,
    ):
        with conn.cursor().copy("COPY secrets FROM STDIN") as copy:
            copy.write("a\nb\n")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not for you"):
            conn.execute("COPY secrets TO STDOUT")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not for you"):
            conn.execute("COPY (SELECT * FROM secrets) TO STDOUT")
    assert seen[0] == 'INSERT INTO "secrets" ("v") VALUES (?), (?)'
    assert seen[1:] == ['SELECT * FROM "secrets"', "SELECT * FROM secrets"]


# --- pgbench ------------------------------------------------------------------------------


def test_pgbench_initializes_and_runs_in_every_protocol_mode(tmp_path: Path) -> None:
    pgbench = pg_tool("pgbench")
    with h.Database.open(tmp_path / "bench.db") as db:
        numeric_procedure(db, "add_i64", "(a BIGINT, b BIGINT) RETURNS BIGINT")
    script = tmp_path / "call.sql"
    script.write_text("\\set a random(1, 1000)\nSELECT add_i64(:a, 1);\n")
    with Server(tmp_path / "bench.db", auth="trust", port=0, limits=TEST_LIMITS) as server:
        host, port = server.address
        target = ["-h", host, "-p", str(port), "-U", "tester", "shop"]

        def pgbench_run(*args: str) -> str:
            run = subprocess.run(
                [pgbench, *args, *target], capture_output=True, text=True, timeout=120
            )
            assert run.returncode == 0, run.stderr
            return run.stdout + run.stderr

        # -i: DROP TABLE a, b, ...; CREATE TABLE ... WITH (fillfactor); COPY;
        # VACUUM ANALYZE; ALTER TABLE ... ADD PRIMARY KEY.
        assert "done in" in pgbench_run("-i", "-s", "1", "-q")
        for mode in ("simple", "extended", "prepared"):
            for workload in ((), ("-S",), ("-f", str(script))):
                out = pgbench_run("-n", "-M", mode, "-t", "25", "-c", "2", *workload)
                assert "number of transactions actually processed: 50/50" in out, out
                assert "number of failed transactions: 0 (0.000%)" in out, out
        with pg_connect(server, autocommit=True) as conn:
            accounts, history, tellers, branches = conn.execute(
                "SELECT (SELECT count(*) FROM pgbench_accounts),"
                " (SELECT count(*) FROM pgbench_history),"
                " (SELECT count(*) FROM pgbench_tellers),"
                " (SELECT count(*) FROM pgbench_branches)"
            ).fetchone()
            assert (accounts, history, tellers, branches) == (100_000, 150, 10, 1)
            # TPC-B's invariant: every balance moved by exactly the deltas recorded.
            moved = conn.execute(
                "SELECT (SELECT sum(abalance) FROM pgbench_accounts),"
                " (SELECT sum(tbalance) FROM pgbench_tellers),"
                " (SELECT sum(bbalance) FROM pgbench_branches),"
                " (SELECT sum(delta) FROM pgbench_history)"
            ).fetchone()
            assert len(set(moved)) == 1, moved


# --- node-postgres and JDBC ---------------------------------------------------------------

CLIENTS = Path(__file__).parent / "clients"


def test_node_postgres(server: Server) -> None:
    installed(CLIENTS / "node" / "node_modules" / "pg", "node-postgres (nox -s tests: npm ci)")
    host, port = server.address
    run = subprocess.run(
        ["node", str(CLIENTS / "node" / "client.mjs"), host, str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["version"].startswith("PostgreSQL 15.0")
    # node-postgres reads int8 as a string (it cannot be a JS number exactly).
    assert out["simple"] == [
        {"id": "1", "name": "ada", "total": 2.5, "vip": True},
        {"id": "2", "name": "bob", "total": 10, "vip": False},
    ]
    assert out["typed"] == {"sum": "42", "t": "x"}
    assert out["named"] == ["ada", "bob"]
    assert out["fields"] == [20, 701, 25]
    assert (out["after_rollback"], out["error"], out["after_error"]) == (2, "42P01", "1")
    assert out["pool"] == ["2", "3", "4", "5"]


def test_jdbc(server: Server) -> None:
    build = Path(os.environ.get("HELIOSDB_BUILD_DIR", CLIENTS.parent.parent / "build"))
    jar = next((build / "clients" / "java").glob("postgresql-*.jar"), None)
    installed(jar, "the PostgreSQL JDBC driver (nox -s tests: mvn, into build/clients/java)")
    installed(shutil.which("java"), "java")
    host, port = server.address
    run = subprocess.run(
        ["java", "-cp", str(jar), str(CLIENTS / "java" / "Client.java"), host, str(port)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = dict(line.split("=", 1) for line in run.stdout.splitlines())
    assert out == {
        "product": "PostgreSQL 15",
        "rows": "1|ada|2.5|true;2|bob|10.0|false",
        "sums": "40,41,42",
        "inserted": "1",
        "after_rollback": "2",
        "error": "42P01",
        "tables": "customers",
    }
