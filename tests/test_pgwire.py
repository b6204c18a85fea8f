"""The PostgreSQL wire-protocol endpoint, tested with real clients (psycopg 3,
psql) and, for what clients never send, with hand-made protocol messages."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import pytest
from psycopg.pq import TransactionStatus

import heliosdb_wasm as h
from conftest import TEST_LIMITS, b64, pg_connect, serve, wasm_of
from heliosdb_wasm import Result
from heliosdb_wasm.pgwire import (
    Server,
    WireError,
    WireSession,
    command_tag,
    execute_statement,
    sqlstate_for,
    translate_placeholders,
)
from heliosdb_wasm.values import SqlValue

ADD = "(a BIGINT, b BIGINT) RETURNS BIGINT"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(
        tmp_path / "wire.db", auth="trust", port=0, limits=TEST_LIMITS, allow_ddl=True
    ) as srv:
        yield srv


def connect(server: Server, **kwargs: Any) -> psycopg.Connection[Any]:
    return pg_connect(server, "wire", **kwargs)


# --- types and values ------------------------------------------------------------------


def test_select_of_every_type(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        row = conn.execute(
            "SELECT 1, -9223372036854775808, 9223372036854775807, 2.5, 1e300, 'héllo ✓',"
            " x'00ff10', NULL, '', x''"
        ).fetchone()
        assert row == (
            1,
            -(2**63),
            2**63 - 1,
            2.5,
            1e300,
            "héllo ✓",
            b"\x00\xff\x10",
            None,
            "",
            b"",
        )
        described = conn.execute("SELECT 1 AS i, 2.5 AS f, 'x' AS t, x'00' AS b, NULL AS n")
        assert described.description is not None
        assert [(c.name, c.type_code) for c in described.description] == [
            ("i", 20),
            ("f", 701),
            ("t", 25),
            ("b", 17),
            ("n", 25),
        ]
        conn.execute("CREATE TABLE flags(id INTEGER PRIMARY KEY, ok BOOLEAN, n INTEGER)")
        conn.execute("INSERT INTO flags VALUES (1, 1, NULL), (2, 0, 7), (3, NULL, NULL)")
        # Declared types decide where the values fit: BOOLEAN 0/1 are booleans,
        # and an all-NULL INTEGER column is still int8.
        cur = conn.execute("SELECT ok, n FROM flags ORDER BY id")
        assert cur.fetchall() == [(True, None), (False, 7), (None, None)]
        assert cur.description is not None
        assert [c.type_code for c in cur.description] == [16, 20]
        # Mixed integers and reals are float8; anything else mixed is text.
        assert conn.execute("SELECT 1 UNION ALL SELECT 1.5").fetchall() == [(1.0,), (1.5,)]
        assert conn.execute("SELECT 1 UNION ALL SELECT 'a'").fetchall() == [("1",), ("a",)]
        # PostgreSQL's spellings of the special floats.
        assert conn.execute("SELECT 1e999, -1e999").fetchone() == (float("inf"), float("-inf"))


def test_parameters_in_text_and_binary_formats(server: Server) -> None:
    values: tuple[Any, ...] = (
        7,
        -(2**63),
        2**63 - 1,
        0.1,
        "it's ✓",
        b"\x00\x01\xff",
        None,
        True,
        False,
    )
    holes = ", ".join(["%s"] * len(values))
    with connect(server, autocommit=True) as conn:
        # True/False arrive as 1/0: SQLite has no boolean type.
        expected = (*values[:7], 1, 0)
        assert conn.execute(f"SELECT {holes}", values).fetchone() == expected
        assert conn.execute(f"SELECT {holes.replace('%s', '%t')}", values).fetchone() == expected
        binary = ", ".join(["%b"] * 6)
        assert conn.execute(f"SELECT {binary}", values[:6]).fetchone() == values[:6]
        # Placeholders in literals and comments are not parameters.
        row = conn.execute("SELECT %s, '$1', /* $2 */ %s -- $3", (1, 2)).fetchone()
        assert row == (1, "$1", 2)
        from decimal import Decimal

        assert conn.execute("SELECT %s, %s", (Decimal("12"), Decimal("1.5"))).fetchone() == (
            12,
            1.5,
        )


def test_binary_results(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        conn.execute("CREATE TABLE b(i INTEGER, f REAL, t TEXT, x BLOB, ok BOOLEAN)")
        conn.execute("INSERT INTO b VALUES (%s, %s, %s, %s, %s)", (-5, 0.25, "ü", b"\x00z", 1))
        conn.execute("INSERT INTO b VALUES (NULL, NULL, NULL, NULL, NULL)")
        cur = conn.cursor(binary=True)
        cur.execute("SELECT i, f, t, x, ok, 4611686018427387904 FROM b ORDER BY i IS NULL")
        assert cur.fetchall() == [
            (-5, 0.25, "ü", b"\x00z", True, 2**62),
            (None, None, None, None, None, 2**62),
        ]


def test_executemany_and_command_tags(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)")
        assert cur.statusmessage == "CREATE TABLE"
        cur.executemany("INSERT INTO t(name) VALUES (%s)", [("a",), ("b",), ("c",)])
        assert cur.rowcount == 3
        cur.execute("INSERT INTO t(name) VALUES ('d'), ('e')")
        assert cur.statusmessage == "INSERT 0 2"
        cur.execute("UPDATE t SET name = upper(name) WHERE id > %s", (3,))
        assert (cur.statusmessage, cur.rowcount) == ("UPDATE 2", 2)
        cur.execute("DELETE FROM t WHERE id = 1")
        assert cur.statusmessage == "DELETE 1"
        cur.execute("SELECT * FROM t ORDER BY id")
        assert cur.statusmessage == "SELECT 4"
        assert cur.fetchall() == [(2, "b"), (3, "c"), (4, "D"), (5, "E")]
        cur.execute("INSERT INTO t(name) VALUES ('f') RETURNING id")
        assert (cur.statusmessage, cur.fetchall()) == ("INSERT 0 1", [(6,)])
        cur.execute("WITH x AS (SELECT 1) DELETE FROM t WHERE id = 6")
        assert cur.statusmessage == "DELETE 1"
        cur.execute("CREATE UNIQUE INDEX t_name ON t(name)")
        assert cur.statusmessage == "CREATE INDEX"
    assert command_tag("DROP TABLE IF EXISTS x", Result()) == "DROP TABLE"
    assert command_tag("/* c */ begin", Result()) == "BEGIN"
    assert command_tag("PRAGMA table_info(t)", Result(["cid"], [(1,), (2,)])) == "SELECT 2"


def test_several_statements_in_one_simple_query(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        cur = conn.cursor()
        # No parameters: psycopg sends a simple Query with all of it.
        cur.execute(
            "CREATE TABLE s(x TEXT); INSERT INTO s VALUES ('a;b'), ('c;d');"
            " -- a comment; with a semicolon\n SELECT x FROM s ORDER BY x; SELECT count(*) FROM s"
        )
        results = []
        while True:
            results.append((cur.statusmessage, cur.fetchall() if cur.description else None))
            if not cur.nextset():
                break
        assert results == [
            ("CREATE TABLE", None),
            ("INSERT 0 2", None),
            ("SELECT 2", [("a;b",), ("c;d",)]),
            ("SELECT 1", [(2,)]),
        ]
        # Like PostgreSQL, the statements are one transaction: all or nothing.
        with pytest.raises(psycopg.errors.UndefinedTable):
            cur.execute(
                "INSERT INTO s VALUES ('e'); SELECT * FROM nope; INSERT INTO s VALUES ('f')"
            )
        assert conn.execute("SELECT count(*) FROM s").fetchone() == (2,)
        assert conn.info.transaction_status == TransactionStatus.IDLE
        # ... unless they manage transactions themselves.
        with pytest.raises(psycopg.errors.UndefinedTable):
            cur.execute("BEGIN; INSERT INTO s VALUES ('e'); COMMIT; SELECT * FROM nope")
        assert conn.execute("SELECT count(*) FROM s").fetchone() == (3,)
        cur.execute("")
        assert cur.pgresult is not None and cur.pgresult.status == psycopg.pq.ExecStatus.EMPTY_QUERY


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        ("SELEC 1", psycopg.errors.SyntaxError),
        ("SELECT * FROM missing", psycopg.errors.UndefinedTable),
        ("SELECT missing FROM e", psycopg.errors.UndefinedColumn),
        ("SELECT nofunc(1)", psycopg.errors.UndefinedFunction),
        ("INSERT INTO e(id, u, nn) VALUES (1, 'dup', 1)", psycopg.errors.UniqueViolation),
        ("INSERT INTO e(id, u, nn) VALUES (2, 'x', NULL)", psycopg.errors.NotNullViolation),
        ("INSERT INTO e(id, u, nn, c) VALUES (2, 'x', 1, -1)", psycopg.errors.CheckViolation),
        ("INSERT INTO e(id, u, nn, p) VALUES (2, 'x', 1, 99)", psycopg.errors.ForeignKeyViolation),
        ("CREATE TABLE e(x)", psycopg.errors.DuplicateTable),
        ("SHOW no_such_setting", psycopg.errors.UndefinedObject),
    ],
)
def test_errors_carry_their_sqlstate(server: Server, sql: str, error: type[Exception]) -> None:
    with connect(server, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS e(id INTEGER PRIMARY KEY, u TEXT UNIQUE, nn INT NOT NULL,"
            " c INT CHECK (c > 0), p INT REFERENCES e(id))"
        )
        conn.execute("INSERT OR IGNORE INTO e(id, u, nn) VALUES (1, 'dup', 1)")
        with pytest.raises(error):
            conn.execute(sql)
        # The connection is fine afterwards, through both protocols.
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT %s", (2,)).fetchone() == (2,)


def test_placeholders_become_sqlite_parameters() -> None:
    sql = "SELECT $1, '$2', \"$3\", $10 -- $4\n /* $5 */ + $2"
    assert translate_placeholders(sql) == (
        "SELECT ?1, '$2', \"$3\", ?10 -- $4\n /* $5 */ + ?2",
        10,
    )
    body = "CREATE PROCEDURE p() RETURNS BIGINT LANGUAGE wasm AS $wasm$ $1 $wasm$"
    assert translate_placeholders(body) == (body, 0)


def test_sqlstate_mapping_of_engine_errors() -> None:
    class Rejected(Exception):
        sqlstate = "42501"

    assert sqlstate_for(h.CapabilityDenied("no")) == "42501"
    assert sqlstate_for(h.ResourceLimitExceeded("fuel", limit="fuel")) == "53400"
    assert sqlstate_for(h.ResourceLimitExceeded("slow", limit="timeout")) == "57014"
    assert sqlstate_for(h.ProcedureTrap("boom")) == "38000"
    assert sqlstate_for(h.InvalidArgument("bad")) == "22023"
    assert sqlstate_for(h.UserError("E1", "nope")) == "P0001"
    assert sqlstate_for(h.DdlError("bad ddl")) == "42601"
    assert sqlstate_for(h.RegistryError("gone", code="not-found")) == "42883"
    assert sqlstate_for(h.SqlError("no such table: x")) == "42P01"
    assert sqlstate_for(h.ConstraintViolation("UNIQUE constraint failed: t.x")) == "23505"
    assert sqlstate_for(Rejected("by a plugin")) == "42501"
    assert sqlstate_for(WireError("0A000", "x")) == "0A000"
    assert sqlstate_for(RuntimeError("bug")) == "XX000"


# --- transactions --------------------------------------------------------------------------


def test_commit_rollback_and_a_failed_transaction(server: Server) -> None:
    with connect(server) as conn, connect(server, autocommit=True) as other:
        other.execute("CREATE TABLE tx(x INTEGER)")
        conn.execute("INSERT INTO tx VALUES (1)")
        assert conn.info.transaction_status == TransactionStatus.INTRANS
        assert other.execute("SELECT count(*) FROM tx").fetchone() == (0,)
        conn.commit()
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert other.execute("SELECT count(*) FROM tx").fetchone() == (1,)

        conn.execute("INSERT INTO tx VALUES (2)")
        conn.rollback()
        assert other.execute("SELECT count(*) FROM tx").fetchone() == (1,)

        # An error inside a transaction fails it ('E') until ROLLBACK, and
        # nothing of it commits.
        conn.execute("INSERT INTO tx VALUES (3)")
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM nope")
        assert conn.info.transaction_status == TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        assert conn.info.transaction_status == TransactionStatus.INERROR
        conn.commit()  # PostgreSQL rolls a failed transaction back on COMMIT
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert other.execute("SELECT count(*) FROM tx").fetchone() == (1,)

        conn.execute("INSERT INTO tx VALUES (4)")
        with pytest.raises(psycopg.errors.UndefinedColumn):
            conn.execute("SELECT nope FROM tx")
        conn.rollback()
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert conn.execute("SELECT count(*) FROM tx").fetchone() == (1,)
        conn.rollback()


def test_savepoints_and_postgres_transaction_spellings(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        conn.execute("CREATE TABLE sp(x INTEGER)")
        with conn.transaction():
            conn.execute("INSERT INTO sp VALUES (1)")
            with pytest.raises(psycopg.errors.UndefinedTable), conn.transaction():
                conn.execute("INSERT INTO sp VALUES (2)")
                conn.execute("SELECT * FROM nope")
            conn.execute("INSERT INTO sp VALUES (3)")
        assert conn.execute("SELECT x FROM sp ORDER BY x").fetchall() == [(1,), (3,)]
        for begin, end in [
            ("START TRANSACTION ISOLATION LEVEL SERIALIZABLE", "COMMIT WORK"),
            ("BEGIN READ WRITE", "END"),
            ("BEGIN WORK", "ABORT"),
        ]:
            conn.execute(begin)
            assert conn.info.transaction_status == TransactionStatus.INTRANS
            conn.execute(end)
            assert conn.info.transaction_status == TransactionStatus.IDLE
        # Ending a transaction that is not there only warns, as in PostgreSQL.
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.sqlstate or ""))
        cur = conn.execute("COMMIT")
        assert cur.statusmessage == "COMMIT" and notices == ["25P01"]


def test_autocommit_mode(server: Server) -> None:
    with connect(server, autocommit=True) as conn, connect(server, autocommit=True) as other:
        conn.execute("CREATE TABLE ac(x INTEGER)")
        conn.execute("INSERT INTO ac VALUES (%s)", (1,))
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert other.execute("SELECT x FROM ac").fetchall() == [(1,)]


def test_concurrent_clients_each_have_their_own_transaction(server: Server) -> None:
    with connect(server, autocommit=True) as setup:
        setup.execute("CREATE TABLE c(client INTEGER, n INTEGER)")
    clients = 6
    written = threading.Barrier(clients)
    checked = threading.Barrier(clients)
    seen: dict[str, Any] = {}
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            with connect(server) as conn:
                # Phase 1: client 0 holds uncommitted rows while the others look.
                if i == 0:
                    conn.execute("INSERT INTO c VALUES (0, -1)")
                    seen["own"] = conn.execute("SELECT count(*) FROM c").fetchone()
                written.wait(timeout=10)
                if i != 0:
                    seen[f"other{i}"] = conn.execute("SELECT count(*) FROM c").fetchone()
                    conn.rollback()
                checked.wait(timeout=10)
                if i == 0:
                    conn.rollback()
                # Phase 2: everyone writes at once, each in its own transaction
                # (SQLite serializes the writers; each waits for the lock).
                for _ in range(3):
                    with conn.transaction():
                        conn.cursor().executemany(
                            "INSERT INTO c VALUES (%s, %s)", [(i, n) for n in range(5)]
                        )
                        mine = conn.execute("SELECT count(*) FROM c WHERE client = %s", (i,))
                        seen.setdefault(f"mine{i}", []).append(mine.fetchone())
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            written.abort()
            checked.abort()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert seen["own"] == (1,)
    assert all(seen[f"other{i}"] == (0,) for i in range(1, clients))
    assert all(seen[f"mine{i}"] == [(5,), (10,), (15,)] for i in range(clients))
    with connect(server, autocommit=True) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT client) FROM c").fetchone() == (
            clients * 15,
            clients,
        )


def test_a_transaction_is_isolated_from_other_connections(server: Server) -> None:
    with connect(server) as writer, connect(server) as reader:
        writer.execute("CREATE TABLE iso(x INTEGER)")
        writer.commit()
        writer.execute("INSERT INTO iso VALUES (1)")
        assert reader.execute("SELECT count(*) FROM iso").fetchone() == (0,)
        writer.commit()
        # The reader's transaction keeps its snapshot until it ends (WAL).
        assert reader.execute("SELECT count(*) FROM iso").fetchone() == (0,)
        reader.rollback()
        assert reader.execute("SELECT count(*) FROM iso").fetchone() == (1,)


# --- session variables ------------------------------------------------------------------------


def test_set_show_reset(server: Server) -> None:
    with connect(server, autocommit=True, application_name="first") as conn:
        assert conn.execute("SHOW application_name").fetchone() == ("first",)
        assert conn.execute("SHOW TimeZone").fetchone() == ("UTC",)
        assert conn.execute("SHOW server_version").fetchone() == ("15.0 (HeliosDB)",)
        conn.execute("SET application_name = 'second'")
        # A reported parameter's new value reaches the client (ParameterStatus).
        assert conn.info.parameter_status("application_name") == "second"
        conn.execute("SET SESSION myapp.tenant TO 42")
        conn.execute("SET search_path TO public, other")
        conn.execute("SET TIME ZONE 'Europe/Paris'")
        assert conn.execute("SHOW myapp.tenant").fetchone() == ("42",)
        assert conn.execute("SHOW search_path").fetchone() == ("public, other",)
        assert conn.execute("SHOW timezone").fetchone() == ("Europe/Paris",)
        assert conn.info.parameter_status("TimeZone") == "Europe/Paris"
        conn.execute("RESET application_name")
        assert conn.execute("SHOW application_name").fetchone() == ("first",)
        conn.execute("RESET ALL")
        assert conn.execute("SHOW timezone").fetchone() == ("UTC",)
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("SHOW myapp.tenant")
        rows = dict((r[0], r[1]) for r in conn.execute("SHOW ALL").fetchall())
        assert rows["server_encoding"] == "UTF8" and rows["application_name"] == "first"
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("SET client_encoding TO 'LATIN1'")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("SET LOCAL x = 1")
        with pytest.raises(psycopg.errors.CantChangeRuntimeParam):
            conn.execute("SET server_version = '99'")


def test_startup_options_become_variables(server: Server) -> None:
    with connect(
        server, autocommit=True, options="-c myapp.role=reader --statement-timeout=5s"
    ) as c:
        assert c.execute("SHOW myapp.role").fetchone() == ("reader",)
        assert c.execute("SHOW statement_timeout").fetchone() == ("5s",)


def test_protected_variables_cannot_be_set(tmp_path: Path) -> None:
    def guarded(session: WireSession, sql: str, params: Sequence[SqlValue]) -> Result:
        session.protected.add("myapp.tenant")
        session.variables.setdefault("myapp.tenant", "acme")
        return execute_statement(session, sql, params)

    with (
        Server(tmp_path / "p.db", auth="trust", port=0, executor=guarded) as srv,
        connect(srv, autocommit=True) as conn,
    ):
        assert conn.execute("SHOW myapp.tenant").fetchone() == ("acme",)
        for sql in ("SET myapp.tenant = 'evil'", "RESET myapp.tenant"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
        conn.execute("RESET ALL")  # leaves protected variables alone
        conn.execute("SET other = 1")
        assert conn.execute("SHOW myapp.tenant").fetchone() == ("acme",)


# --- extended protocol ---------------------------------------------------------------------------


def test_prepared_statements(server: Server) -> None:
    with connect(server, autocommit=True, prepare_threshold=0) as conn:
        conn.execute("CREATE TABLE ps(x INTEGER, y TEXT)")
        for i in range(5):
            conn.execute("INSERT INTO ps VALUES (%s, %s)", (i, f"v{i}"))
        for i in range(5):
            assert conn.execute("SELECT y FROM ps WHERE x = %s", (i,)).fetchone() == (f"v{i}",)
    with connect(server, autocommit=True) as conn:
        for i in range(3):
            cur = conn.execute("SELECT x * %s FROM ps ORDER BY x", (i,), prepare=True)
            assert cur.fetchall() == [(x * i,) for x in range(5)]
        # DDL after preparing: SQLite re-prepares what changed.
        conn.execute("ALTER TABLE ps ADD COLUMN z INTEGER DEFAULT 9")
        assert conn.execute("SELECT * FROM ps WHERE x = %s", (1,), prepare=True).fetchone() == (
            1,
            "v1",
            9,
        )
        conn.execute("DEALLOCATE ALL")


def test_pipeline_error_discards_until_sync(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        conn.execute("CREATE TABLE pl(x INTEGER)")
        with pytest.raises(psycopg.errors.UndefinedTable), conn.pipeline():
            conn.execute("INSERT INTO pl VALUES (%s)", (1,))
            conn.execute("SELECT * FROM nope WHERE x = %s", (1,))
            conn.execute("INSERT INTO pl VALUES (%s)", (2,))
        # Statements commit one by one (SQLite autocommit); the one after the
        # error was never run.
        assert conn.execute("SELECT x FROM pl").fetchall() == [(1,)]


def test_portal_max_rows_and_statement_describe(server: Server) -> None:
    with RawClient(server) as raw:
        raw.simple(
            "CREATE TABLE m(x INTEGER, t TEXT); INSERT INTO m VALUES (1,'a'),(2,'b'),(3,'c')"
        )
        raw.parse("q", "SELECT x, t FROM m WHERE x >= $1 ORDER BY x", [23])
        raw.send(b"D", b"S" + b"q\0")
        raw.bind("", "q", [b"1"])
        raw.execute("", 2)
        raw.execute("", 2)
        raw.send(b"S")
        kinds = raw.until_ready()
        assert [k for k, _ in kinds] == ["1", "t", "T", "2", "D", "D", "s", "D", "C", "Z"]
        parameter_description = kinds[1][1]
        assert struct.unpack("!hi", parameter_description) == (1, 23)
        assert kinds[2][1].startswith(b"\x00\x02x\x00")  # two columns, "x" first
        assert kinds[-2][1] == b"SELECT 1\0"


def test_raw_error_in_extended_protocol_skips_to_sync(server: Server) -> None:
    with RawClient(server) as raw:
        raw.parse("", "SELECT * FROM nowhere", [])
        raw.bind("", "", [])
        raw.execute("", 0)  # fails: what follows up to Sync is skipped
        raw.parse("", "SELECT 1", [])
        raw.bind("", "", [])
        raw.execute("", 0)
        raw.send(b"S")
        kinds = raw.until_ready()
        assert [k for k, _ in kinds] == ["1", "2", "E", "Z"]
        assert b"C42P01\0" in kinds[2][1]
        assert kinds[-1][1] == b"I"
        raw.parse("", "SELECT $1 + 1", [20])
        raw.bind("", "", [struct.pack("!q", 41)], formats=[1], result_formats=[1])
        raw.send(b"D", b"P\0")
        raw.execute("", 0)
        raw.send(b"S")
        kinds = raw.until_ready()
        assert [k for k, _ in kinds] == ["1", "2", "T", "D", "C", "Z"]
        assert kinds[3][1] == b"\x00\x01\x00\x00\x00\x08" + struct.pack("!q", 42)
        # A value that is not of its declared type.
        raw.parse("", "SELECT $1", [20])
        raw.bind("", "", [b"forty-two"])
        raw.send(b"S")
        kinds = raw.until_ready()
        assert [k for k, _ in kinds] == ["1", "E", "Z"] and b"C22P02\0" in kinds[1][1]


# --- what the executor sees ------------------------------------------------------------------


def test_a_custom_executor_sees_every_statement(tmp_path: Path) -> None:
    seen: list[tuple[str, tuple[SqlValue, ...]]] = []

    def recording(session: WireSession, sql: str, params: Sequence[SqlValue]) -> Result:
        seen.append((sql, tuple(params)))
        if "forbidden" in sql:
            raise WireError("42501", "rejected by policy", hint="ask nicely")
        return execute_statement(session, sql, params)

    with (
        Server(tmp_path / "e.db", auth="trust", port=0, executor=recording) as srv,
        connect(srv) as conn,
    ):
        conn.execute("CREATE TABLE ex(x INTEGER)")  # BEGIN first (not autocommit)
        conn.execute("INSERT INTO ex VALUES (%s)", (5,))
        conn.cursor().executemany("INSERT INTO ex VALUES (%s)", [(6,), (7,)])
        conn.execute("SET myvar = 1; SELECT 1")
        conn.commit()
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
            conn.execute("SELECT 'forbidden'")
        assert err.value.diag.message_primary == "rejected by policy"
        assert err.value.diag.message_hint == "ask nicely"
        conn.rollback()
    assert seen == [
        ("BEGIN", ()),
        ("CREATE TABLE ex(x INTEGER)", ()),
        ("INSERT INTO ex VALUES (?1)", (5,)),
        ("INSERT INTO ex VALUES (?1)", (6,)),
        ("INSERT INTO ex VALUES (?1)", (7,)),
        ("SET myvar = 1", ()),
        ("SELECT 1", ()),
        ("COMMIT", ()),
        ("BEGIN", ()),
        ("SELECT 'forbidden'", ()),
        ("ROLLBACK", ()),
    ]


# --- procedures ---------------------------------------------------------------------------


def test_wasm_procedures_through_the_endpoint(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        conn.execute(
            f"CREATE PROCEDURE add_i64{ADD} LANGUAGE wasm USING EXPORT 'add_i64'"
            f" AS $wasm${b64(wasm_of('numeric'))}$wasm$"
        )
        conn.execute(
            "CREATE PROCEDURE trap() RETURNS BIGINT LANGUAGE wasm"
            f" AS $wasm${b64(wasm_of('limits'))}$wasm$"
        )
        assert conn.execute("SELECT add_i64(%s, %s)", (40, 2)).fetchone() == (42,)
        assert conn.execute("SELECT add_i64(40, 2)").fetchone() == (42,)
        cur = conn.execute("CALL add_i64(%s, 2)", (2**62,))
        assert (cur.statusmessage, cur.fetchall()) == ("CALL", [(2**62 + 2,)])
        with pytest.raises(psycopg.errors.ExternalRoutineException) as err:
            conn.execute("SELECT trap()")
        assert err.value.diag.message_detail and "trap" in err.value.diag.message_detail
        with pytest.raises(psycopg.errors.DuplicateFunction):
            conn.execute(
                f"CREATE PROCEDURE add_i64{ADD} LANGUAGE wasm USING EXPORT 'add_i64'"
                f" AS $wasm${b64(wasm_of('numeric'))}$wasm$"
            )
    # Another connection (its own Database) sees the registered procedure.
    with connect(server, autocommit=True) as conn:
        assert conn.execute("SELECT add_i64(1, 1)").fetchone() == (2,)


# --- robustness -----------------------------------------------------------------------------


def test_garbage_and_truncated_messages_do_not_hurt_the_server(server: Server) -> None:
    host, port = server.address

    def raw(data: bytes, *, read: bool = True) -> bytes:
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(data)
            if not read:
                return b""
            chunks = []
            try:
                while chunk := s.recv(65536):
                    chunks.append(chunk)
            except OSError:  # a reset after the server closed: what was read counts
                pass
            return b"".join(chunks)

    # Not a startup packet at all, an absurd length, truncated: closed.
    assert b"08P01" in raw(b"GET / HTTP/1.1\r\n\r\n")
    assert b"08P01" in raw(struct.pack("!i", 2**30) + b"xx")
    raw(struct.pack("!ii", 100, 196608) + b"user\0", read=False)
    assert raw(struct.pack("!iiii", 16, 80877102, 999, 1)) == b""  # cancel: quietly closed
    # After a good startup: an unknown message type, then a bad length.
    with RawClient(server) as client:
        client.sock.sendall(b"\x01garbage")
        assert b"08P01" in client.read_all()
    with RawClient(server) as client:
        client.sock.sendall(b"Q" + struct.pack("!i", 2))
        assert b"08P01" in client.read_all()
    with RawClient(server) as client:
        client.sock.sendall(b"P" + struct.pack("!i", 100) + b"unfinished")  # then goes away
    with RawClient(server) as client:
        client.send(b"P", b"\0SELECT 1")  # no terminator, no parameter count
        assert b"08P01" in client.read_all()
    # Every one of them was cleaned up, and the server still serves.
    with connect(server, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    deadline = time.monotonic() + 5
    while len(server._connections) > 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(server._connections) == 0


def test_cancel_interrupts_a_running_query(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        timer = threading.Timer(0.3, conn.cancel_safe)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)"
                " SELECT count(*) FROM n"
            )
        timer.join()
        assert time.monotonic() - started < 5
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_stop_closes_client_connections(tmp_path: Path) -> None:
    srv = Server(tmp_path / "s.db", auth="trust", port=0)
    srv.start()
    conn = connect(srv, autocommit=True)
    assert conn.execute("SELECT 1").fetchone() == (1,)
    srv.stop()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()
    with pytest.raises(OSError):
        socket.create_connection(srv.address, timeout=1).close()
    with pytest.raises(h.InvalidArgument, match="database file"):
        Server(":memory:", auth="trust", port=0)


# --- psql and the CLI -----------------------------------------------------------------------


def test_psql(server: Server) -> None:
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is not installed (apt-get install postgresql-client)")
    host, port = server.address
    run = subprocess.run(
        [
            psql,
            "-h",
            host,
            "-p",
            str(port),
            "-U",
            "someone",
            "-d",
            "x",
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT 1+1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
    )
    assert (run.returncode, run.stdout, run.stderr) == (0, "2\n", "")
    script = subprocess.run(
        [
            psql,
            "-h",
            host,
            "-p",
            str(port),
            "-U",
            "someone",
            "-d",
            "x",
            "-X",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
        ],
        input="CREATE TABLE p(x INTEGER, y TEXT);\nINSERT INTO p VALUES (1, 'one'), (2, NULL);\n"
        "SELECT * FROM p ORDER BY x;\nSELECT nope;\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert script.returncode == 3
    assert "x|y\n1|one\n2|\n(2 rows)" in script.stdout
    assert "no such column: nope" in script.stderr


def test_cli_serve(tmp_path: Path) -> None:
    proc, port = serve(tmp_path)
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="u", dbname="c") as conn:
            assert conn.execute("SELECT 40 + 2").fetchone() == (42,)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


# --- a minimal protocol client for what real clients never send ------------------------------


class RawClient:
    """Speaks just enough of the protocol to send hand-made messages."""

    def __init__(self, server: Server) -> None:
        self.sock = socket.create_connection(server.address, timeout=5)
        params = b"user\0raw\0database\0raw\0\0"
        self.sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        self.buffer = b""
        self.until_ready()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        self.sock.sendall(kind + struct.pack("!i", len(payload) + 4) + payload)

    def simple(self, sql: str) -> list[tuple[str, bytes]]:
        self.send(b"Q", sql.encode() + b"\0")
        return self.until_ready()

    def parse(self, name: str, sql: str, oids: list[int]) -> None:
        payload = name.encode() + b"\0" + sql.encode() + b"\0"
        self.send(b"P", payload + struct.pack(f"!h{len(oids)}i", len(oids), *oids))

    def bind(
        self,
        portal: str,
        statement: str,
        values: list[bytes | None],
        formats: list[int] | None = None,
        result_formats: list[int] | None = None,
    ) -> None:
        formats = formats or []
        result_formats = result_formats or []
        out = portal.encode() + b"\0" + statement.encode() + b"\0"
        out += struct.pack(f"!h{len(formats)}h", len(formats), *formats)
        out += struct.pack("!h", len(values))
        for v in values:
            out += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
        out += struct.pack(f"!h{len(result_formats)}h", len(result_formats), *result_formats)
        self.send(b"B", out)

    def execute(self, portal: str, max_rows: int) -> None:
        self.send(b"E", portal.encode() + b"\0" + struct.pack("!i", max_rows))

    def _fill(self, n: int) -> bool:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.buffer += chunk
        return True

    def until_ready(self) -> list[tuple[str, bytes]]:
        messages: list[tuple[str, bytes]] = []
        while True:
            assert self._fill(5), f"connection closed after {messages}"
            kind, length = self.buffer[:1].decode(), struct.unpack("!i", self.buffer[1:5])[0]
            assert self._fill(1 + length)
            messages.append((kind, self.buffer[5 : 1 + length]))
            self.buffer = self.buffer[1 + length :]
            if kind == "Z":
                return messages

    def read_all(self) -> bytes:
        data = self.buffer
        try:
            while chunk := self.sock.recv(65536):
                data += chunk
        except OSError:
            pass
        return data


def test_clients_may_not_run_ddl_or_touch_the_engines_tables_by_default(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    with h.Database.open(path) as db:
        db.execute(
            f"CREATE PROCEDURE calc{ADD} LANGUAGE wasm USING EXPORT 'add_i64'"
            f" AS $wasm${b64(wasm_of('numeric'))}$wasm$"
        )
    with Server(path, auth="trust", port=0) as srv, connect(srv, autocommit=True) as conn:
        assert conn.execute("SELECT calc(40, 2)").fetchone() == (42,)
        for sql in (
            f"CREATE PROCEDURE evil{ADD} LANGUAGE wasm USING EXPORT 'add_i64'"
            f" AS $wasm${b64(wasm_of('numeric'))}$wasm$",
            "DROP PROCEDURE calc",
            "SELECT * FROM _heliosdb_versions",
            "DELETE FROM _heliosdb_plugins",
            "ATTACH DATABASE ':memory:' AS other",
            "SELECT load_extension('x')",
            "PRAGMA writable_schema = ON",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
        assert conn.execute("SELECT calc(1, 2)").fetchone() == (3,)
    with h.Database.open(path) as db:
        assert [p.name for p in db.procedures()] == ["calc"]
