"""Procedure DDL, the versioned registry, and persistence across reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

import heliosdb_wasm as h
from conftest import TEST_LIMITS, Register, b64, registry_snapshot, wasm_of
from heliosdb_wasm import ddl, registry
from heliosdb_wasm.runtime import Runtime

ADD = "(a BIGINT, b BIGINT) RETURNS BIGINT"


def test_split_statements_keeps_quotes_dollar_bodies_and_triggers() -> None:
    script = """
        CREATE TABLE t(x); -- a comment; with a semicolon
        INSERT INTO t VALUES ('a;b');
        CREATE TRIGGER trg AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END;
        CREATE PROCEDURE p() RETURNS BIGINT LANGUAGE wasm AS $wasm$ab;cd$wasm$;
        SELECT 1
    """
    parts = ddl.split_statements(script)
    assert len(parts) == 5
    assert parts[1] == "INSERT INTO t VALUES ('a;b')"
    assert parts[2].endswith("END")
    assert "$wasm$ab;cd$wasm$" in parts[3]


def test_parse_create_with_every_clause(tmp_path: Path) -> None:
    module = tmp_path / "m.wasm"
    module.write_bytes(wasm_of("numeric"))
    stmt = ddl.parse(
        "CREATE OR REPLACE PROCEDURE calc(customer_id BIGINT, total DOUBLE PRECISION)"
        " RETURNS DOUBLE LANGUAGE wasm CALLED ON NULL INPUT"
        " CAPABILITIES ('read:customers', 'write:orders') GROW TO 32 MB"
        " WITH (fuel = 5000, timeout_seconds = 1.5) USING EXPORT 'calc_v2'"
        " AS $wasm$file://m.wasm$wasm$",
        tmp_path,
    )
    assert isinstance(stmt, ddl.CreateProcedure)
    assert stmt.replace and stmt.export == "calc_v2"
    assert stmt.capabilities == ("read:customers", "write:orders")
    assert stmt.limit_overrides == {
        "memory_bytes": 32 * 1024 * 1024,
        "fuel": 5000,
        "timeout_seconds": 1.5,
    }
    assert stmt.signature is not None
    assert stmt.signature.render() == "(customer_id BIGINT, total DOUBLE) RETURNS DOUBLE"
    assert stmt.signature.called_on_null_input
    assert stmt.wasm == module.read_bytes()


def test_plain_sql_is_not_procedure_ddl() -> None:
    assert ddl.parse("SELECT 1") is None
    assert ddl.parse("CREATE TABLE procedure(x)") is None


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        (
            "CREATE PROCEDURE p(a BIGINT) RETURNS BIGINT AS $wasm$AGFzbQEAAAA=$wasm$",
            "LANGUAGE wasm",
        ),
        (
            "CREATE PROCEDURE p(a WIBBLE) RETURNS BIGINT LANGUAGE wasm AS $wasm$x$wasm$",
            "unknown SQL type",
        ),
        (
            "CREATE PROCEDURE p(a BIGINT, a BIGINT) RETURNS BIGINT LANGUAGE wasm AS $wasm$x$wasm$",
            "duplicate parameter",
        ),
        ("CREATE PROCEDURE p(a BIGINT) LANGUAGE wasm AS $wasm$AGFzbQEAAAA=$wasm$", "needs RETURNS"),
        (
            "CREATE PROCEDURE p(a BIGINT) RETURNS BIGINT LANGUAGE python AS $wasm$x$wasm$",
            "LANGUAGE wasm",
        ),
        ("CREATE PROCEDURE p() RETURNS BIGINT LANGUAGE wasm AS $wasm$!!notbase64$wasm$", "base64"),
        (
            "CREATE PROCEDURE p() RETURNS BIGINT LANGUAGE wasm AS $wasm$aGVsbG8=$wasm$",
            "not WebAssembly",
        ),
        (
            "CREATE PROCEDURE p() RETURNS BIGINT LANGUAGE wasm AS $wasm$file:///no/such.wasm$wasm$",
            "cannot read",
        ),
        ("CREATE PROCEDURE p() RETURNS BIGINT LANGUAGE wasm AS $wasm$unterminated", "unterminated"),
        (
            "CREATE PROCEDURE p() RETURNS BIGINT LANGUAGE wasm GROW TO 3 PAGES AS $wasm$x$wasm$",
            "MB",
        ),
        ("ALTER PROCEDURE p VERSION 0 AS $wasm$x$wasm$", "numbered from 1"),
    ],
)
def test_bad_ddl_is_a_typed_error_and_changes_nothing(
    db: h.Database, sql: str, fragment: str
) -> None:
    before = registry_snapshot(db)
    with pytest.raises(h.DdlError) as err:
        db.execute(sql)
    assert err.value.code == "syntax-error"
    assert fragment in str(err.value)
    assert registry_snapshot(db) == before


def test_create_call_replace_alter_use_drop(db: h.Database, register: Register) -> None:
    register("calc", ADD, "numeric", export="add_i64")
    assert db.execute("SELECT calc(2, 40)").scalar() == 42
    assert db.call("calc", 1, 2) == 3
    assert db.execute("CALL calc(5, 6)").rows == [(11,)]

    with pytest.raises(h.RegistryError) as err:
        register("calc", ADD, "numeric", export="add_i64")
    assert err.value.code == "already-exists"

    # Version 2 multiplies (the same module, a different export).
    db.execute(
        f"CREATE OR REPLACE PROCEDURE calc{ADD} LANGUAGE wasm USING EXPORT 'mul_i64'"
        f" AS $wasm${b64(wasm_of('numeric'))}$wasm$"
    )
    assert db.execute("SELECT calc(6, 7)").scalar() == 42
    assert [v.version for v in db.versions("calc")] == [1, 2]
    assert [v.active for v in db.versions("calc")] == [False, True]

    db.execute("ALTER PROCEDURE calc USE VERSION 1")
    assert db.execute("SELECT calc(6, 7)").scalar() == 13
    with pytest.raises(h.RegistryError) as err:
        db.execute("ALTER PROCEDURE calc USE VERSION 9")
    assert err.value.code == "no-such-version"
    assert db.execute("SELECT calc(6, 7)").scalar() == 13

    db.execute("DROP PROCEDURE calc")
    with pytest.raises(h.SqlError):
        db.execute("SELECT calc(1, 2)")
    with pytest.raises(h.RegistryError) as err:
        db.execute("DROP PROCEDURE calc")
    assert err.value.code == "not-found"
    db.execute("DROP PROCEDURE IF EXISTS calc")
    # Dropping the last user of a module removes the module too.
    assert db.execute("SELECT count(*) FROM _heliosdb_modules").scalar() == 0


def test_alter_version_checks_the_new_module_against_the_signature(
    db: h.Database, register: Register
) -> None:
    register("calc", ADD, "numeric", export="add_i64")
    before = registry_snapshot(db)
    with pytest.raises(h.AbiError):
        # wrong_signature.wat exports f_i32, not add_i64
        db.execute(
            f"ALTER PROCEDURE calc VERSION 2 AS $wasm${b64(wasm_of('wrong_signature'))}$wasm$"
        )
    assert registry_snapshot(db) == before
    db.execute(f"ALTER PROCEDURE calc VERSION 5 AS $wasm${b64(wasm_of('numeric'))}$wasm$")
    assert [v.version for v in db.versions("calc")] == [1, 5]
    with pytest.raises(h.RegistryError) as err:
        db.execute(f"ALTER PROCEDURE calc VERSION 5 AS $wasm${b64(wasm_of('numeric'))}$wasm$")
    assert err.value.code == "already-exists"


def test_name_clashing_with_a_table_is_refused(db: h.Database, register: Register) -> None:
    with pytest.raises(h.RegistryError) as err:
        register("items", ADD, "numeric", export="add_i64")
    assert err.value.code == "already-exists"


def test_registry_survives_reopen_and_modules_live_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    module = tmp_path / "numeric.wasm"
    module.write_bytes(wasm_of("numeric"))
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        db.execute(
            f"CREATE PROCEDURE calc{ADD} LANGUAGE wasm USING EXPORT 'add_i64'"
            f" AS $wasm$file://{module}$wasm$"
        )
        db.execute(f"ALTER PROCEDURE calc VERSION 2 AS $wasm$file://{module}$wasm$")
        db.execute("ALTER PROCEDURE calc USE VERSION 1")
    module.unlink()  # the file carries the module; the original is not needed
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        assert db.execute("SELECT calc(40, 2)").scalar() == 42
        procs = db.procedures()
        assert [(p.name, p.version, p.abi) for p in procs] == [("calc", 1, "basic")]
        assert procs[0].signature.render() == ADD


def test_corrupt_module_bytes_are_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.db"
    with h.Database.open(path) as db:
        db.execute(
            f"CREATE PROCEDURE calc{ADD} LANGUAGE wasm USING EXPORT 'add_i64'"
            f" AS $wasm${b64(wasm_of('numeric'))}$wasm$"
        )
        db.conn.execute("UPDATE _heliosdb_modules SET wasm = wasm || x'00'")
    # A runtime with no compiled code for the module has to read its bytes.
    monkeypatch.setenv("HELIOSDB_WASM_CACHE", "off")
    fresh = Runtime()
    with h.Database.open(path, runtime=fresh) as db, pytest.raises(h.RegistryError) as err:
        db.execute("SELECT calc(1, 2)")
    assert err.value.code == "corrupt"


def test_capabilities_are_validated(db: h.Database, register: Register) -> None:
    for caps in (
        ("network:evil.com/path",),
        ("network:",),
        ("filesystem:relative/dir",),
        ("filesystem:/srv/../etc",),
        ("env:1BAD",),
        ("ddl:*",),
        ("call:*",),
        ("clock:fast",),
        ("rocket:launch",),
        ("read:",),
        ("read:_heliosdb_modules",),
        ("transaction:x",),
    ):
        with pytest.raises(h.InvalidArgument):
            register("calc", ADD, "numeric", caps=caps, export="add_i64")
    assert db.procedures() == []


def test_call_statement_for_table_and_void(db: h.Database, register: Register) -> None:
    register("fruit", "() RETURNS TABLE(name TEXT, qty BIGINT)", "host", export="rows_table")
    result = db.execute("CALL fruit()")
    assert result.columns == ["name", "qty"]
    assert result.rows == [("apple", 3), ("pear", 5)]


def test_a_version_1_registry_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with h.Database.open(path) as db:
        db.execute(
            f"CREATE PROCEDURE calc{ADD} LANGUAGE wasm USING EXPORT 'add_i64'"
            f" AS $wasm${b64(wasm_of('numeric'))}$wasm$"
        )
        # What an engine of schema version 1 left behind: no WIT, no seals.
        db.conn.execute("ALTER TABLE _heliosdb_versions DROP COLUMN wit")
        db.conn.execute("ALTER TABLE _heliosdb_versions DROP COLUMN seal")
        db.conn.execute("ALTER TABLE _heliosdb_plugins DROP COLUMN seal")
        db.conn.execute("ALTER TABLE _heliosdb_plugins DROP COLUMN candidate")
        db.conn.execute("UPDATE _heliosdb_meta SET value = '1' WHERE key = 'schema_version'")
    with h.Database.open(path) as db:
        assert db.execute("SELECT calc(1, 2)").scalar() == 3
        meta = db.conn.execute("SELECT value FROM _heliosdb_meta WHERE key = 'schema_version'")
        assert [tuple(r) for r in meta] == [(str(registry.SCHEMA_VERSION),)]
        columns = {r[1] for r in db.conn.execute("PRAGMA table_info(_heliosdb_versions)")}
        assert {"wit", "seal"} <= columns
        columns = {r[1] for r in db.conn.execute("PRAGMA table_info(_heliosdb_plugins)")}
        assert {"seal", "candidate"} <= columns
        # The rows found were sealed as they stood.
        assert db.procedures()[0].capabilities == h.Capabilities()
