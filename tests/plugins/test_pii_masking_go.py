"""The Go PII-masking plugin (examples/plugins/pii_masking/go) and the Go SDK's
plugin package (sdks/go/plugin), called the way the engine calls a Basic-ABI
hook: the export post_execution as a procedure (request JSON) RETURNS JSON
(docs/plugins.md §3), from SQL."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from click.testing import CliRunner

import heliosdb_wasm as h
from conftest import BUILD, ROOT, TEST_LIMITS
from heliosdb_wasm import sqlast
from heliosdb_wasm.cli import main
from heliosdb_wasm.plugins.verdicts import value_to_json

PROJECT = ROOT / "examples" / "plugins" / "pii_masking" / "go"
SDK = ROOT / "sdks" / "go"
# The Go and Rust SDKs' AST fixtures (written by sdks/plugin-ast-cases.py).
AST_CASES = ROOT / "sdks" / "plugin-ast-cases.json"

CONFIG = {
    "columns": {"ssn": "ssn", "email": "email", "phone": "phone"},
    "admin_roles": ["admin"],
    "role_variable": "auth.role",
}
COLUMNS = ["id", "name", "ssn", "email", "phone"]
BIG = 2**62 + 1  # not a double: survives only if no one goes through float64


def go_or_skip() -> str:
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed: the Go plugin needs Go 1.24 or later (go.dev/dl)")
    return go


@pytest.fixture(scope="session")
def plugin_wasm() -> Path:
    go_or_skip()
    out = BUILD / "plugins" / "go"
    result = CliRunner().invoke(main, ["build", str(PROJECT), "--abi", "basic", "--out", str(out)])
    assert result.exit_code == 0, result.output
    path = out / "pii_masking.basic.wasm"
    assert path.is_file(), result.output
    return path


@pytest.fixture(scope="module")
def db(plugin_wasm: Path) -> Iterator[h.Database]:
    with h.Database.open(":memory:", limits=TEST_LIMITS) as database:
        database.execute(
            "CREATE PROCEDURE post_execution(request JSON) RETURNS JSON LANGUAGE wasm "
            f"USING EXPORT 'post_execution' AS $wasm$file://{plugin_wasm.resolve()}$wasm$"
        )
        yield database


# A Python/SQLite value in the JSON form of WIT types.value, as the engine writes it.
wire = value_to_json


def request(
    rows: list[list[Any]],
    columns: list[str] = COLUMNS,
    *,
    user: str = "bob",
    session: list[list[str]] | None = None,
    config: Any = CONFIG,
) -> dict[str, Any]:
    return {
        "ctx": {
            "query-id": 7,
            "user": user,
            "database": "shop",
            "application-name": "psql",
            "connection": [["user", user], ["application_name", "psql"]],
            "session": session or [],
            "tables": ["people"],
            "config": config if isinstance(config, str) else json.dumps(config),
        },
        "columns": columns,
        "rows": [[wire(v) for v in row] for row in rows],
    }


def call(db: h.Database, req: dict[str, Any]) -> Any:
    result = db.execute("SELECT post_execution(?)", [json.dumps(req)])
    return json.loads(result.rows[0][0])


def replaced(rows: list[list[Any]]) -> dict[str, Any]:
    return {"action": {"replace-rows": [[wire(v) for v in row] for row in rows]}}


ALICE = [1, "Alice", "123-45-6789", "alice@example.com", "+1 (555) 123-4567"]
ALICE_MASKED = [1, "Alice", "***-**-6789", "a***@example.com", "+* (***) ***-4567"]


def test_the_module_exports_the_hook_and_imports_nothing_new(plugin_wasm: Path) -> None:
    module = wasmtime.Module(wasmtime.Engine(), plugin_wasm.read_bytes())
    exports = {e.name for e in module.exports}
    assert {"post_execution", "heliosdb_abi_version", "memory"} <= exports
    assert not exports & {"pre_parse", "post_parse", "pre_execution"}
    # count_in_window is imported only by modules that call it, so this one
    # loads on engines without plugin support too.
    heliosdb = {i.name for i in module.imports if i.module == "heliosdb"}
    assert "count_in_window" not in heliosdb


def test_non_admins_get_masked_rows(db: h.Database) -> None:
    bob = [2, "Bob", "987654321", "b@x.io", "555.123.4567"]
    verdict = call(db, request([ALICE, bob]))
    assert verdict == replaced([ALICE_MASKED, [2, "Bob", "*****4321", "b***@x.io", "***.***.4567"]])


def test_admins_see_raw_rows(db: h.Database) -> None:
    verdict = call(db, request([ALICE], session=[["auth.role", "admin"]]))
    assert verdict == {"action": "allow"}


def test_rows_of_a_real_query(db: h.Database) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS people(id INTEGER, name TEXT, ssn TEXT, email TEXT, phone TEXT)"
    )
    db.execute("DELETE FROM people")
    db.execute("INSERT INTO people VALUES (?, ?, ?, ?, ?)", ALICE)
    result = db.execute("SELECT id, name, SSN, Email, phone FROM people")
    verdict = call(db, request([list(r) for r in result.rows], columns=result.columns))
    assert verdict == replaced([ALICE_MASKED])


def test_nulls_stay_null_and_other_values_become_null(db: h.Database) -> None:
    rows = [
        [3, None, None, None, None],
        [4, "Dan", 123456789, b"dan@example.com", 5551234567.0],
        [5, "Eve", True, 42, None],
    ]
    verdict = call(db, request(rows))
    assert verdict == replaced(
        [
            [3, None, None, None, None],
            [4, "Dan", None, None, None],
            [5, "Eve", None, None, None],
        ]
    )


def test_unchanged_rows_are_allowed(db: h.Database) -> None:
    # Only NULLs in the masked columns, or none of them in the result.
    assert call(db, request([[3, None, None, None, None]])) == {"action": "allow"}
    assert call(db, request([[1, "Alice"]], columns=["id", "name"])) == {"action": "allow"}
    assert call(db, request([], columns=COLUMNS)) == {"action": "allow"}


def test_other_columns_pass_through_exactly(db: h.Database) -> None:
    row = [BIG, -(2**63), 2**63 - 1, 0.1, math.inf, b"\x00\xff", "123-45-6789"]
    columns = ["id", "min", "max", "r", "inf", "raw", "ssn"]
    verdict = call(db, request([row], columns=columns))
    assert verdict == replaced([[*row[:-1], "***-**-6789"]])
    cells = verdict["action"]["replace-rows"][0]
    assert cells[0] == {"integer": BIG} and cells[1] == {"integer": -(2**63)}


@pytest.mark.parametrize(
    ("user", "session", "config", "masked"),
    [
        # The session variable an authentication plugin set decides ...
        ("bob", [["auth.role", "admin"]], CONFIG, False),
        ("admin", [["auth.role", "clerk"]], CONFIG, True),
        # ... set but empty it is no role, not a reason to trust the user name.
        ("admin", [["auth.role", ""]], CONFIG, True),
        # Without it, the connection's user does.
        ("admin", [], CONFIG, False),
        ("bob", [["other", "admin"]], CONFIG, True),
        # Names match exactly.
        ("bob", [["AUTH.ROLE", "admin"]], CONFIG, True),
        ("Admin", [], CONFIG, True),
        (
            "bob",
            [["app.role", "dba"]],
            {**CONFIG, "role_variable": "app.role", "admin_roles": ["dba"]},
            False,
        ),
        # role_variable "" ignores the session altogether.
        ("bob", [["auth.role", "admin"]], {**CONFIG, "role_variable": ""}, True),
        ("admin", [["auth.role", "clerk"]], {**CONFIG, "role_variable": ""}, False),
        # Without admin_roles nobody sees raw values.
        ("admin", [["auth.role", "admin"]], {"columns": CONFIG["columns"]}, True),
    ],
)
def test_the_role(
    db: h.Database, user: str, session: list[list[str]], config: dict[str, Any], masked: bool
) -> None:
    verdict = call(db, request([ALICE], user=user, session=session, config=config))
    assert verdict == (replaced([ALICE_MASKED]) if masked else {"action": "allow"})


def test_column_names_and_patterns(db: h.Database) -> None:
    config = {
        "columns": {"ssn": ["*_ssn", "tax_id"], "email": "contact", "phone": ["mobile*"]},
        "detect": [],
    }
    columns = ["Customer_SSN", "TAX_ID", "Contact", "Mobile_Phone", "ssn", "note"]
    row = ["123-45-6789", "98-7654321", "carol@example.com", "555 123 4567", "111-22-3333", "x"]
    verdict = call(db, request([row], columns=columns, config=config))
    assert verdict == replaced(
        [["***-**-6789", "**-***4321", "c***@example.com", "*** *** 4567", "111-22-3333", "x"]]
    )


def test_values_are_also_recognised_by_shape(db: h.Database) -> None:
    # SELECT ssn AS x, email AS y: an alias must not unmask a value.
    columns = ["x", "y", "z", "w"]
    row = ["123-45-6789", "alice@example.com", "+1 555 123 4567", "order 123-45-6789"]
    verdict = call(db, request([row], columns=columns))
    assert verdict == replaced([["***-**-6789", "a***@example.com", *row[2:]]])
    # Phone numbers only on request; detect [] turns shapes off.
    config = {**CONFIG, "detect": ["phone"]}
    verdict = call(db, request([row], columns=columns, config=config))
    assert verdict == replaced([[row[0], row[1], "+* *** *** 4567", row[3]]])
    verdict = call(db, request([row], columns=columns, config={**CONFIG, "detect": []}))
    assert verdict == {"action": "allow"}


def test_the_defaults(db: h.Database) -> None:
    # An empty config masks the columns named ssn, email and phone for everyone.
    verdict = call(db, request([ALICE], user="admin", config="{}"))
    assert verdict == replaced([ALICE_MASKED])
    verdict = call(db, request([ALICE], user="admin", config=""))
    assert verdict == replaced([ALICE_MASKED])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{not json", "plugin config: invalid character"),
        ('["ssn"]', "plugin config: json: cannot unmarshal array"),
        (
            {"columns": {"passport": "passport"}},
            'columns: unknown kind "passport" (ssn, email or phone)',
        ),
        ({"columns": {"ssn": []}}, "columns.ssn: no column names"),
        ({"columns": {"ssn": 5}}, "expected a column name or a list of names, got 5"),
        ({"columns": {"ssn": ["*"]}}, 'columns.ssn: "*" is not a column name or pattern'),
        ({"detect": ["ssn", "iban"]}, 'detect: unknown kind "iban"'),
        ({"admin_role": ["admin"]}, 'unknown field "admin_role"'),
        ({"admin_roles": "admin"}, "cannot unmarshal string"),
        ({"admin_roles": [""]}, "admin_roles: an empty role name"),
        ({"role_variable": 1}, "cannot unmarshal number"),
    ],
)
def test_config_errors_fail_the_hook(db: h.Database, config: Any, message: str) -> None:
    with pytest.raises(h.UserError) as failed:
        call(db, request([ALICE], config=config))
    assert failed.value.user_code == "PLUGIN_CONFIG"
    assert message in str(failed.value)


def test_a_malformed_request_is_an_invalid_argument(db: h.Database) -> None:
    bad = request([ALICE])
    bad["rows"][0][0] = {"integer": 1.5}
    with pytest.raises(h.InvalidArgument, match="the post_execution request does not decode"):
        db.execute("SELECT post_execution(?)", [json.dumps(bad)])


def test_many_rows(db: h.Database) -> None:
    rows = [[i, f"n{i}", f"{i % 1000:03d}-45-6789", f"u{i}@example.com", None] for i in range(2000)]
    verdict = call(db, request(rows))
    out = verdict["action"]["replace-rows"]
    assert len(out) == 2000
    assert out[1999] == [
        wire(1999),
        wire("n1999"),
        wire("***-**-6789"),
        wire("u***@example.com"),
        "null",
    ]


# --- the SDK's AST helpers, against the engine's parser and renderer -------------


def test_the_go_ast_fixtures_are_what_the_engine_parses() -> None:
    cases = json.loads(AST_CASES.read_text())
    for case in cases["tables"] + cases["add_predicate"] + cases["reference"]:
        tree = sqlast.parse(case["sql"])[0]
        assert json.loads(sqlast.dumps(tree)) == case["ast"], case["sql"]
        assert sqlast.tables(tree) == case["tables"], case["sql"]
    for case in cases["add_predicate"]:
        want = json.loads(sqlast.dumps(sqlast.parse(case["want_sql"])[0]))
        assert want == case["want"], case["want_sql"]


def test_go_add_predicate_renders_as_expected(tmp_path: Path) -> None:
    go = go_or_skip()
    out = tmp_path / "rewritten.json"
    env = {**os.environ, "HELIOSDB_AST_OUT": str(out), "GOTOOLCHAIN": "local", "GOFLAGS": ""}
    env.pop("GOOS", None)
    env.pop("GOARCH", None)
    subprocess.run(
        [go, "test", "-count=1", "-run", "TestAddPredicateMatchesTheEngine", "./plugin/"],
        cwd=SDK,
        env=env,
        check=True,
        capture_output=True,
    )
    rewritten = json.loads(out.read_text())
    assert len(rewritten) == len(json.loads(AST_CASES.read_text())["add_predicate"])
    for case in rewritten:
        # The engine accepts the tree node by node and renders the expected SQL.
        got = sqlast.render(sqlast.loads(case["got"]))
        assert got == sqlast.render(sqlast.parse(case["want_sql"])[0]), case["sql"]
