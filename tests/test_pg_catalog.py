"""pg_catalog and information_schema as clients read them: psql's backslash
commands, SQLAlchemy's inspector, and plain queries, against the endpoint."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import heliosdb_wasm as h
from conftest import TEST_LIMITS, numeric_procedure, pg_connect, pg_tool
from heliosdb_wasm.pgwire import Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    db = h.Database.open(tmp_path / "shop.db")
    db.execute(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT 'nobody',"
        " total REAL, vip BOOLEAN);"
        "CREATE INDEX customers_by_name ON customers (name);"
        "CREATE TABLE orders (id INTEGER PRIMARY KEY,"
        " customer_id INTEGER NOT NULL REFERENCES customers (id), code TEXT UNIQUE);"
        "CREATE VIEW big AS SELECT id FROM customers WHERE total > 100"
    )
    numeric_procedure(db, "add_i64", "(a BIGINT, b BIGINT) RETURNS BIGINT")
    db.close()
    with Server(tmp_path / "shop.db", auth="trust", port=0, limits=TEST_LIMITS) as srv:
        yield srv


def connect(server: Server, **kwargs: Any) -> psycopg.Connection[Any]:
    return pg_connect(server, "shop", **kwargs)


def psql(server: Server, *commands: str) -> str:
    binary = pg_tool("psql")
    host, port = server.address
    args = [binary, "-h", host, "-p", str(port), "-U", "tester", "-d", "shop", "-X"]
    args += ["-v", "ON_ERROR_STOP=1"]
    for command in commands:
        args += ["-c", command]
    run = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
    )
    assert (run.returncode, run.stderr) == (0, ""), run.stdout
    return run.stdout


def lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


# --- psql -----------------------------------------------------------------------------


def test_psql_lists_tables_views_indexes_schemas_roles_databases(server: Server) -> None:
    assert lines(psql(server, r"\dt")) == [
        "List of relations",
        "Schema | Name | Type | Owner",
        "--------+-----------+-------+--------",
        "public | customers | table | tester",
        "public | orders | table | tester",
        "(2 rows)",
    ]
    relations = lines(psql(server, r"\d"))
    assert "public | big | view | tester" in relations
    assert not any("_heliosdb" in line for line in relations)  # the engine's tables
    indexes = lines(psql(server, r"\di"))
    assert "public | customers_by_name | index | tester | customers" in indexes
    assert "public | customers_pkey | index | tester | customers" in indexes
    assert any(line.startswith("public | sqlite_autoindex_orders_1 | index") for line in indexes)
    assert "public | tester" in lines(psql(server, r"\dn"))
    roles = lines(psql(server, r"\du"))
    assert roles[-1].startswith("tester |")
    assert roles[-1].endswith("| {}")
    assert any(line.startswith("shop | tester | UTF8 |") for line in lines(psql(server, r"\l")))


def test_psql_describes_a_table(server: Server) -> None:
    described = lines(psql(server, r"\d customers"))
    assert described[:7] == [
        'Table "public.customers"',
        "Column | Type | Collation | Nullable | Default",
        "--------+------------------+-----------+----------+----------",
        "id | bigint | | not null |",
        "name | text | | not null | 'nobody'",
        "total | double precision | | |",
        "vip | boolean | | |",
    ]
    assert described[7:] == [
        "Indexes:",
        '"customers_pkey" PRIMARY KEY, btree (id)',
        '"customers_by_name" btree (name)',
    ]
    orders = lines(psql(server, r"\d orders"))
    assert '"sqlite_autoindex_orders_1" UNIQUE CONSTRAINT, btree (code)' in orders


def test_psql_lists_procedures_and_expands_rows(server: Server) -> None:
    functions = lines(psql(server, r"\df"))
    assert "public | add_i64 | bigint | a bigint, b bigint | func" in functions
    expanded = lines(psql(server, r"\x on", "SELECT id, name FROM customers LIMIT 0"))
    assert expanded == ["Expanded display is on.", "(0 rows)"]


def test_the_catalog_follows_schema_changes_on_the_same_connection(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        query = "SELECT relname FROM pg_catalog.pg_class WHERE relkind = 'r' ORDER BY 1"
        assert conn.execute(query).fetchall() == [("customers",), ("orders",)]
        conn.execute("CREATE TABLE later (x TEXT)")
        assert conn.execute(query).fetchall() == [("customers",), ("later",), ("orders",)]
        conn.execute("DROP TABLE later")
        assert conn.execute(query).fetchall() == [("customers",), ("orders",)]


def test_the_catalog_cannot_be_written_or_hidden(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        with pytest.raises(psycopg.Error, match="may not be modified"):
            conn.execute("DELETE FROM pg_catalog.pg_namespace")
        with pytest.raises(psycopg.Error, match="may not be modified"):
            conn.execute("INSERT INTO pg_class (oid) VALUES (1)")
        with pytest.raises(psycopg.Error, match="may not be dropped"):
            conn.execute("DROP TABLE pg_class")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="catalog relation"):
            conn.execute("CREATE TABLE pg_type (x)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="catalog relation"):
            conn.execute("CREATE VIEW Pg_Class AS SELECT 1")
        assert conn.execute("SELECT count(*) FROM pg_type WHERE typname = 'int8'").fetchone() == (
            1,
        )


def test_information_schema(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name, table_type FROM information_schema.tables"
            " WHERE table_schema = 'public' ORDER BY table_name"
        ).fetchall()
        assert tables == [("big", "VIEW"), ("customers", "BASE TABLE"), ("orders", "BASE TABLE")]
        columns = conn.execute(
            "SELECT c.column_name, c.data_type, c.is_nullable, c.column_default"
            " FROM information_schema.columns c WHERE c.table_name = %s"
            " ORDER BY c.ordinal_position",
            ("customers",),
        ).fetchall()
        assert columns == [
            ("id", "bigint", "NO", None),
            ("name", "text", "NO", "'nobody'"),
            ("total", "double precision", "YES", None),
            ("vip", "boolean", "YES", None),
        ]


def test_catalog_oids_name_the_same_objects_from_query_to_query(server: Server) -> None:
    with connect(server, autocommit=True) as conn:
        (oid,) = conn.execute("SELECT 'customers'::regclass").fetchone()
        assert oid >= 16384
        assert conn.execute("SELECT relname FROM pg_class WHERE oid = %s", (oid,)).fetchone() == (
            "customers",
        )
        keys = conn.execute(
            "SELECT contype, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'orders'::regclass ORDER BY contype"
        ).fetchall()
        assert keys == [
            ("f", "FOREIGN KEY (customer_id) REFERENCES customers(id)"),
            ("p", "PRIMARY KEY (id)"),
            ("u", "UNIQUE (code)"),
        ]
        with pytest.raises(psycopg.errors.UndefinedTable, match='relation "nope"'):
            conn.execute("SELECT 'nope'::regclass")
        assert conn.execute("SELECT to_regclass('nope')").fetchone() == (None,)


# --- SQLAlchemy -----------------------------------------------------------------------


def test_sqlalchemy_reflects_tables_keys_and_indexes(server: Server) -> None:
    host, port = server.address
    engine = sa.create_engine(f"postgresql+psycopg://tester@{host}:{port}/shop")
    try:
        orders = sa.Table("orders", sa.MetaData(), autoload_with=engine)
        assert [(c.name, str(c.type), c.nullable, c.primary_key) for c in orders.columns] == [
            ("id", "BIGINT", False, True),
            ("customer_id", "BIGINT", False, False),
            ("code", "TEXT", True, False),
        ]
        inspector = sa.inspect(engine)
        assert inspector.get_pk_constraint("orders")["constrained_columns"] == ["id"]
        (fk,) = inspector.get_foreign_keys("orders")
        assert (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"]) == (
            ["customer_id"],
            "customers",
            ["id"],
        )
        assert [u["column_names"] for u in inspector.get_unique_constraints("orders")] == [["code"]]
        assert [
            (i["name"], i["column_names"], i["unique"]) for i in inspector.get_indexes("customers")
        ] == [("customers_by_name", ["name"], False)]
        customers = inspector.get_columns("customers")
        assert [(c["name"], c["default"]) for c in customers][:2] == [
            ("id", None),
            ("name", "'nobody'"),
        ]
    finally:
        engine.dispose()


def test_sqlalchemy_orm_round_trip(server: Server) -> None:
    class Base(DeclarativeBase):
        pass

    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]
        total: Mapped[float | None]

    host, port = server.address
    engine = sa.create_engine(f"postgresql+psycopg://tester@{host}:{port}/shop")
    try:
        with Session(engine) as session:
            session.add_all([Customer(id=1, name="ada", total=2.5), Customer(id=2, name="bob")])
            session.commit()
            ada = session.scalars(sa.select(Customer).where(Customer.name == "ada")).one()
            assert (ada.id, ada.total) == (1, 2.5)
            ada.total = 3.0
            session.commit()
            added = session.scalar(
                sa.select(sa.func.add_i64(Customer.id, 40)).where(Customer.id == 2)
            )
            assert added == 42
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT total FROM customers WHERE id = 1")).scalar() == 3.0
    finally:
        engine.dispose()


def test_sqlalchemy_connects_inspects_and_runs_core_statements(server: Server) -> None:
    host, port = server.address
    engine = sa.create_engine(f"postgresql+psycopg://tester@{host}:{port}/shop")
    try:
        inspector = sa.inspect(engine)
        assert inspector.get_table_names() == ["customers", "orders"]
        assert inspector.has_table("orders") and not inspector.has_table("nope")
        assert inspector.get_view_names() == ["big"]
        customers = sa.table("customers", sa.column("id"), sa.column("name"), sa.column("total"))
        with engine.begin() as conn:
            conn.execute(customers.insert(), [{"id": 1, "name": "ada", "total": 2.5}])
            conn.execute(customers.insert(), [{"id": 2, "name": "bob", "total": 10.0}])
            total = conn.execute(sa.select(sa.func.sum(customers.c.total))).scalar_one()
            assert total == 12.5
            added = conn.execute(sa.select(sa.func.add_i64(customers.c.id, 40))).scalars().all()
            assert sorted(added) == [41, 42]
    finally:
        engine.dispose()
