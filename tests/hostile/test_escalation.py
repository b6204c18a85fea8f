"""Capability escalation: no principal — a wire client, a procedure, a trigger
or view either planted — gets more than it was granted, and the registry that
holds every grant is reachable only by the engine's own statements.
docs/security.md (threat model) says what each case proves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

import heliosdb_wasm as h
from conftest import TEST_LIMITS, b64, registry_snapshot, wasm_of

READ_SECRET = "SELECT x FROM secrets"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        db.execute(
            "CREATE TABLE pub(id INTEGER PRIMARY KEY, v TEXT);"
            "CREATE TABLE secrets(x TEXT); INSERT INTO secrets VALUES ('s3cr3t');"
        )
        _create(db, "reader", "read:pub")
    return path


def _create(db: h.Database, name: str, *caps: str, extra: str = "") -> None:
    grants = f"CAPABILITIES ({', '.join(repr(c) for c in caps)})" if caps else ""
    db.execute(
        f"CREATE PROCEDURE {name}(sql TEXT) RETURNS TEXT LANGUAGE wasm {grants} {extra}"
        f" USING EXPORT 'run_sql' AS $wasm${b64(wasm_of('host_sql'))}$wasm$"
    )


@pytest.fixture
def client(path: Path) -> Iterator[h.Database]:
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        db.serve_clients()
        yield db


def _snapshot(path: Path) -> list[tuple[object, ...]]:
    with h.Database.open(path, limits=TEST_LIMITS) as owner:
        return registry_snapshot(owner)


def _caps_of(path: Path, name: str) -> list[str]:
    conn = apsw.Connection(str(path))
    try:
        row = conn.execute(
            "SELECT capabilities FROM _heliosdb_versions WHERE name = ?", (name,)
        ).fetchall()
        return list(json.loads(row[0][0]))
    finally:
        conn.close()


# --- wire clients -------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE _heliosdb_versions RENAME TO x",
        "ALTER TABLE _heliosdb_versions ADD COLUMN y",
        "ALTER TABLE _heliosdb_versions RENAME COLUMN capabilities TO c",
        "CREATE INDEX i ON _heliosdb_versions(capabilities)",
        "CREATE TEMP TRIGGER t AFTER INSERT ON _heliosdb_versions BEGIN SELECT 1; END",
        "CREATE TABLE _heliosdb_shadow(x)",
        "UPDATE _heliosdb_versions SET capabilities = '[\"read:*\"]'",
        "SELECT * FROM _heliosdb_modules",
        "PRAGMA journal_mode = DELETE",
        "PRAGMA writable_schema = ON",
        "PRAGMA schema_version = 1",
        "CREATE TRIGGER planted AFTER INSERT ON pub BEGIN SELECT 1; END",
    ],
)
def test_a_client_cannot_reach_the_registry_or_shared_settings(
    client: h.Database, path: Path, sql: str
) -> None:
    before = _snapshot(path)
    with pytest.raises(h.CapabilityDenied):
        client.execute(sql)
    assert _snapshot(path) == before
    assert client.execute("PRAGMA journal_mode").scalar() == "wal"


def test_the_rename_attack_leaves_every_grant_as_it_was(client: h.Database, path: Path) -> None:
    with pytest.raises(h.CapabilityDenied):
        client.execute(
            "ALTER TABLE _heliosdb_versions RENAME TO x;"
            "UPDATE x SET capabilities = '[\"read:*\"]';"
            "ALTER TABLE x RENAME TO _heliosdb_versions"
        )
    assert _caps_of(path, "reader") == ["read:pub"]
    with pytest.raises(h.CapabilityDenied):
        client.execute("SELECT reader(?)", [READ_SECRET])


def test_a_client_may_read_shared_settings_and_use_its_own_tables(client: h.Database) -> None:
    assert client.execute("PRAGMA journal_mode").scalar() == "wal"
    client.execute("CREATE TABLE mine(x); CREATE INDEX mine_x ON mine(x)")
    client.execute("ALTER TABLE mine ADD COLUMN y; INSERT INTO mine VALUES (1, 2)")
    assert client.execute("SELECT x + y FROM mine").scalar() == 3


def test_a_client_never_makes_the_server_read_a_file(path: Path, tmp_path: Path) -> None:
    real = tmp_path / "real.wasm"
    real.write_bytes(wasm_of("numeric"))
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        db.serve_clients(allow_ddl=True)
        answers = set()
        for target in (real, tmp_path / "missing.wasm", Path("/dev/zero")):
            with pytest.raises(h.CapabilityDenied) as err:
                db.execute(
                    "CREATE PROCEDURE f(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
                    f" USING EXPORT 'add_i64' AS $wasm$file://{target}$wasm$"
                )
            answers.add(str(err.value))
            with pytest.raises(h.CapabilityDenied) as err:
                db.execute(f"CREATE EXTENSION e FROM '{target}'")
        # The same answer whether the file exists, is missing or is endless.
        assert len(answers) == 1
        assert not db.registry.exists("f")


def test_a_client_without_ddl_rights_is_refused_before_its_module_is_decoded(
    client: h.Database,
) -> None:
    with pytest.raises(h.CapabilityDenied, match="--allow-ddl"):
        client.execute(
            "CREATE PROCEDURE f(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
            " AS $wasm$!!! not base64 !!!$wasm$"
        )


# --- procedures -----------------------------------------------------------------------


def test_ddl_on_a_table_covers_its_indexes_and_alterations(path: Path) -> None:
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        _create(db, "admin", "ddl:pub", "write:pub", "read:pub")
        for sql in (
            "CREATE INDEX pub_v ON pub(v)",
            "ALTER TABLE pub ADD COLUMN w TEXT",
            "ALTER TABLE pub RENAME COLUMN w TO w2",
            "ALTER TABLE pub DROP COLUMN w2",
            "DROP INDEX pub_v",
        ):
            db.execute("SELECT admin(?)", [sql])
        columns = [r[1] for r in db.execute("SELECT * FROM pragma_table_info('pub')")]
        assert columns == ["id", "v"]
        # ... and nothing else: not another table, not the schema itself.
        for sql, missing in (
            ("CREATE INDEX s_x ON secrets(x)", "ddl:secrets"),
            ("ALTER TABLE secrets ADD COLUMN y", "ddl:secrets"),
            ("ALTER TABLE _heliosdb_versions RENAME TO x", "ddl:_heliosdb_versions"),
            ("SELECT sql FROM sqlite_master", "read:sqlite_master"),
        ):
            with pytest.raises(h.CapabilityDenied, match=missing):
                db.execute("SELECT admin(?)", [sql])


def test_a_procedure_cannot_plant_a_trigger(path: Path) -> None:
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        _create(db, "planter", "ddl:pub", "write:pub", "read:pub")
        for temp in ("", "TEMP "):
            with pytest.raises(h.CapabilityDenied, match="CREATE TRIGGER"):
                db.execute(
                    "SELECT planter(?)",
                    [
                        f"CREATE {temp}TRIGGER leak AFTER INSERT ON pub BEGIN"
                        " UPDATE pub SET v = (SELECT x FROM secrets); END"
                    ],
                )
        db.execute("INSERT INTO pub(v) VALUES ('owner')")
        assert db.execute("SELECT v FROM pub").rows == [("owner",)]


def test_a_planted_trigger_never_reaches_the_registry(path: Path) -> None:
    # A client trusted with DDL plants a trigger that would grant read:* on
    # the owner's next insert.
    with h.Database.open(path, limits=TEST_LIMITS) as client:
        client.serve_clients(allow_ddl=True)
        client.execute(
            "CREATE TRIGGER escalate AFTER INSERT ON pub BEGIN"
            " UPDATE _heliosdb_versions SET capabilities = '[\"read:*\"]'; END"
        )
    with h.Database.open(path, limits=TEST_LIMITS) as owner:
        with pytest.raises(h.CapabilityDenied, match="trigger or view escalate"):
            owner.execute("INSERT INTO pub(v) VALUES ('x')")
        # Not through the raw connection either: the engine's own rule.
        with pytest.raises(apsw.AuthError):
            owner.conn.execute("INSERT INTO pub(v) VALUES ('x')")
        assert owner.execute("SELECT count(*) FROM pub").scalar() == 0
    assert _caps_of(path, "reader") == ["read:pub"]


def test_a_view_over_the_registry_reads_nothing(path: Path) -> None:
    with h.Database.open(path, limits=TEST_LIMITS) as client:
        client.serve_clients(allow_ddl=True)
        client.execute("CREATE VIEW grants AS SELECT capabilities FROM _heliosdb_versions")
        with pytest.raises(h.CapabilityDenied):
            client.execute("SELECT * FROM grants")
    with h.Database.open(path, limits=TEST_LIMITS) as owner:
        with pytest.raises(h.CapabilityDenied):
            owner.execute("SELECT * FROM grants")
        _create(owner, "viewer", "read:grants")
        with pytest.raises(h.CapabilityDenied):
            owner.execute("SELECT viewer('SELECT * FROM grants')")


def test_the_owners_sql_reads_but_never_rewrites_the_registry(path: Path) -> None:
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        assert db.execute("SELECT count(*) FROM _heliosdb_versions").scalar() == 1
        for sql in (
            "UPDATE _heliosdb_versions SET capabilities = '[]'",
            "DELETE FROM _heliosdb_modules",
            "ALTER TABLE _heliosdb_versions RENAME TO x",
            "DROP TABLE _heliosdb_plugins",
        ):
            with pytest.raises(h.CapabilityDenied, match="engine's table"):
                db.execute(sql)
    assert _caps_of(path, "reader") == ["read:pub"]


# --- the registry's own integrity ----------------------------------------------------------


def _tamper(path: Path, sql: str) -> None:
    """What whoever can write the file (or an SQL injection) might do."""
    conn = apsw.Connection(str(path))
    conn.execute(sql)
    conn.close()


def test_a_tampered_grant_is_refused_and_the_rest_stays_usable(path: Path) -> None:
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        _create(db, "other", "read:pub")
    _tamper(
        path, "UPDATE _heliosdb_versions SET capabilities = '[\"read:*\"]' WHERE name = 'reader'"
    )
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        with pytest.raises(h.RegistryError) as err:
            db.call("reader", READ_SECRET)
        assert err.value.code == "tampered"
        assert set(db.damaged()) == {"reader"}
        assert [p.name for p in db.procedures()] == ["other"]
        assert db.call("other", "SELECT 'n=' || count(*) FROM pub") == "n=0"


def test_a_keyed_seal_cannot_be_forged_by_recomputing_it(path: Path) -> None:
    key = b"k" * 32
    with h.Database.open(path, limits=TEST_LIMITS, seal_key=key) as db:
        assert set(db.damaged()) == {"reader"}  # sealed without the key
        assert db.reseal() == 1
        assert db.call("reader", "SELECT 'n=' || count(*) FROM pub") == "n=0"
    # A forger who knows the algorithm but not the key re-seals the row.
    conn = apsw.Connection(str(path))
    plain = h.Database(conn)
    forged_caps = json.dumps(["read:*"])
    row = conn.execute(
        "SELECT name, version, abi, export, signature, capabilities, limits, module_sha256, wit"
        " FROM _heliosdb_versions WHERE name = 'reader'"
    ).fetchall()[0]
    fields = list(row)
    fields[5] = forged_caps
    seal = plain.registry._version_seal(*fields)
    conn.execute(
        "UPDATE _heliosdb_versions SET capabilities = ?, seal = ? WHERE name = 'reader'",
        (forged_caps, seal),
    )
    plain.close()
    with h.Database.open(path, limits=TEST_LIMITS, seal_key=key) as db:
        with pytest.raises(h.RegistryError) as err:
            db.call("reader", READ_SECRET)
        assert err.value.code == "tampered"


@pytest.mark.parametrize(
    "column, value",
    [
        ("signature", "{not json"),
        ("capabilities", '["read:"]'),
        ("limits", '"a string"'),
        ("limits", '{"fuel": "lots"}'),
        ("limits", '{"no_such_limit": 1}'),
        ("signature", "[]"),
    ],
)
def test_a_damaged_row_does_not_make_the_file_unopenable(
    path: Path, column: str, value: str
) -> None:
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        _create(db, "other", "read:pub")
    conn = apsw.Connection(str(path))
    conn.execute(f"UPDATE _heliosdb_versions SET {column} = ? WHERE name = 'reader'", (value,))
    # ... re-sealed, as by a buggy tool that knows the seal: the row is
    # damaged, not merely tampered with.
    engine = h.Database(conn)
    engine.reseal()
    engine.close()
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        with pytest.raises(h.RegistryError) as err:
            db.call("reader", "SELECT 1")
        assert err.value.code == "damaged"
        assert db.call("other", "SELECT 'n=' || count(*) FROM pub") == "n=0"


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, why",
    [
        ("length", "SQLite has a function"),
        ("lower", "SQLite has a function"),
        ("json_each", "SQLite has a function or table"),
        ('"É"', "ASCII"),
        ("x" * 300, "the most is 63"),
        ('"sqlite_x"', "reserved"),
        ('"_heliosdb_x"', "reserved"),
    ],
)
def test_names_sql_already_has_or_cannot_hold_are_refused_before_writing(
    path: Path, name: str, why: str
) -> None:
    with h.Database.open(path, limits=TEST_LIMITS) as db:
        db.execute("CREATE TABLE guarded(s TEXT CHECK (length(s) < 5))")
        before = registry_snapshot(db)
        with pytest.raises(h.ProcedureError, match=why):
            db.execute(
                f"CREATE PROCEDURE {name}(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
                f" USING EXPORT 'add_i64' AS $wasm${b64(wasm_of('numeric'))}$wasm$"
            )
        assert registry_snapshot(db) == before
        with pytest.raises(h.ConstraintViolation):
            db.execute("INSERT INTO guarded VALUES ('too long')")
    with h.Database.open(path, limits=TEST_LIMITS) as db:  # still opens
        assert db.damaged() == {}


def test_the_engines_cached_statements_are_no_way_around_the_authorizer(
    path: Path,
) -> None:
    # The engine runs its own registry statements on every connection, a
    # client's too; apsw caches prepared statements by their text.
    with h.Database.open(path, limits=TEST_LIMITS) as client:
        client.serve_clients()
        client.call("reader", "SELECT 'n=' || count(*) FROM pub")  # loads it: engine SQL ran
        engine_sql = (
            "SELECT name, active_version FROM _heliosdb_procedures WHERE name = ?",
            "DELETE FROM _heliosdb_log WHERE id <= ?",
        )
        for sql in engine_sql:
            with pytest.raises(h.CapabilityDenied):
                client.execute(sql, ["reader"] if "name" in sql else [10**9])
