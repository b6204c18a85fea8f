"""The heliosdb-wasm command line."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from conftest import wasm_of
from heliosdb_wasm.cli import main


def test_sql_runs_scripts_and_ddl_against_a_file(tmp_path: Path) -> None:
    module = tmp_path / "numeric.wasm"
    module.write_bytes(wasm_of("numeric"))
    script = tmp_path / "s.sql"
    script.write_text(
        "CREATE PROCEDURE add_i64(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
        f" AS $wasm$file://{module}$wasm$;\nSELECT add_i64(40, 2) AS answer;"
    )
    db = str(tmp_path / "x.db")
    runner = CliRunner()
    result = runner.invoke(main, ["sql", "--db", db, "-f", str(script)])
    assert result.exit_code == 0, result.output
    assert "answer" in result.output and "42" in result.output and "(1 row)" in result.output

    listed = runner.invoke(main, ["procedures", "--db", db, "--json"])
    assert listed.exit_code == 0
    assert json.loads(listed.output) == [
        {
            "name": "add_i64",
            "version": 1,
            "abi": "basic",
            "signature": "(a BIGINT, b BIGINT) RETURNS BIGINT",
            "capabilities": [],
        }
    ]


def test_sql_errors_exit_1_with_the_code(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["sql", "--json", "SELECT no_such_function()"])
    assert result.exit_code == 1
    assert json.loads(result.output)["error"] == "sql-error"
    result = runner.invoke(main, ["sql"])
    assert result.exit_code == 2 and "give SQL" in result.output


def _numeric(tmp_path: Path) -> Path:
    module = tmp_path / "numeric.wasm"
    module.write_bytes(wasm_of("numeric"))
    return module


def test_procedure_lifecycle_create_info_versions_use_drop(tmp_path: Path) -> None:
    module = _numeric(tmp_path)
    db = str(tmp_path / "p.db")
    runner = CliRunner()
    signature = ["--params", "a:BIGINT,b:BIGINT", "--returns", "BIGINT"]
    made = runner.invoke(
        main,
        [
            "procedure",
            "create",
            "--db",
            db,
            "--name",
            "op",
            "--file",
            str(module),
            "--export",
            "add_i64",
            *signature,
            "--capabilities",
            "read:orders",
        ],
    )
    assert made.exit_code == 0, made.output
    assert made.output.startswith("op v1 (basic)")
    again = runner.invoke(
        main,
        [
            "procedure",
            "create",
            "--db",
            db,
            "--name",
            "op",
            "--file",
            str(module),
            "--export",
            "mul_i64",
            *signature,
        ],
    )
    assert again.exit_code == 1 and "already exists" in again.output
    replaced = runner.invoke(
        main,
        [
            "procedure",
            "create",
            "--db",
            db,
            "--name",
            "op",
            "--file",
            str(module),
            "--export",
            "mul_i64",
            *signature,
            "--replace",
        ],
    )
    assert replaced.exit_code == 0 and replaced.output.startswith("op v2")

    def answer() -> object:
        out = runner.invoke(main, ["sql", "--db", db, "--json", "SELECT op(6, 7) AS v"])
        assert out.exit_code == 0, out.output
        return json.loads(out.output)["rows"][0]["v"]

    assert answer() == 42
    info = json.loads(runner.invoke(main, ["procedure", "info", "--db", db, "--json", "op"]).output)
    assert info["version"] == 2 and info["export"] == "mul_i64" and info["versions"] == [1, 2]
    versions = json.loads(
        runner.invoke(main, ["procedure", "versions", "--db", db, "--json", "op"]).output
    )
    assert [(v["version"], v["active"], v["capabilities"]) for v in versions] == [
        (1, False, ["read:orders"]),
        (2, True, []),
    ]
    used = runner.invoke(main, ["procedure", "use", "--db", db, "op", "1"])
    assert used.exit_code == 0, used.output
    assert answer() == 13
    table = runner.invoke(main, ["procedure", "versions", "--db", db, "op"])
    assert "add_i64" in table.output and "mul_i64" in table.output
    assert runner.invoke(main, ["procedure", "drop", "--db", db, "op"]).exit_code == 0
    missing = runner.invoke(main, ["procedure", "info", "--db", db, "op"])
    assert missing.exit_code == 1 and "op" in missing.output
    assert (
        runner.invoke(main, ["procedure", "drop", "--db", db, "--if-exists", "op"]).exit_code == 0
    )


def test_procedure_create_rejects_a_malformed_signature(tmp_path: Path) -> None:
    module = _numeric(tmp_path)
    result = CliRunner().invoke(
        main,
        [
            "procedure",
            "create",
            "--db",
            str(tmp_path / "p.db"),
            "--name",
            "op",
            "--file",
            str(module),
            "--params",
            "a BIGINT",
            "--returns",
            "BIGINT",
        ],
    )
    assert result.exit_code == 2 and "is not name:TYPE" in result.output


def test_test_command_passes_fails_and_checks_expected_errors(tmp_path: Path) -> None:
    module = str(_numeric(tmp_path))
    runner = CliRunner()
    common = [module, "--export", "mul_f64", "--params", "a:DOUBLE,b:DOUBLE", "--returns", "DOUBLE"]
    ok = runner.invoke(
        main, ["test", *common, "--param", "a=599.99", "--param", "b=0.2", "--expect", "119.998"]
    )
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("PASS")
    wrong = runner.invoke(
        main, ["test", *common, "--param", "a=2", "--param", "b=3", "--expect", "7"]
    )
    assert wrong.exit_code == 1 and "FAIL" in wrong.output and "expected 7" in wrong.output
    # A declared signature that does not fit the export is an error, not a pass.
    bad = runner.invoke(
        main,
        [
            "test",
            module,
            "--export",
            "mul_f64",
            "--params",
            "a:TEXT",
            "--returns",
            "DOUBLE",
            "--param",
            "a=x",
        ],
    )
    assert bad.exit_code == 1 and "FAIL" in bad.output
    expected = runner.invoke(
        main,
        [
            "test",
            module,
            "--export",
            "mul_f64",
            "--params",
            "a:TEXT",
            "--returns",
            "DOUBLE",
            "--param",
            "a=x",
            "--expect-error",
            "invalid-argument",
        ],
    )
    # Whatever code the engine chose, the check must pass only when it is the one named.
    assert (expected.exit_code == 0) == ("invalid-argument" in bad.output)


def test_test_command_runs_a_fixture_and_a_table_procedure(tmp_path: Path) -> None:
    host = tmp_path / "host.wasm"
    host.write_bytes(wasm_of("host"))
    fixture = tmp_path / "fixture.sql"
    fixture.write_text(
        "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
        "INSERT INTO items VALUES (1, 'a'), (2, 'b');"
    )
    result = CliRunner().invoke(
        main,
        [
            "test",
            str(host),
            "--export",
            "count_rows",
            "--params",
            "",
            "--returns",
            "BIGINT",
            "--capabilities",
            "read:items",
            "--fixture",
            str(fixture),
            "--expect",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output


def test_keygen_pack_verify_install_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "numeric.wasm").write_bytes(wasm_of("numeric"))
    (tmp_path / "extension.toml").write_text(
        'name = "math"\nversion = "1.0.0"\n\n[[procedures]]\nname = "add_i64"\n'
        'file = "numeric.wasm"\nabi = "basic"\nsignature = "(a BIGINT, b BIGINT) RETURNS BIGINT"\n'
    )
    runner = CliRunner()
    keys = runner.invoke(main, ["keygen", "team", "--dir", str(tmp_path)])
    assert keys.exit_code == 0, keys.output
    assert (tmp_path / "team.key").stat().st_mode & 0o077 == 0  # private key not readable by others
    out = tmp_path / "dist"
    packed = runner.invoke(
        main, ["pack", str(tmp_path), "--out", str(out), "--sign", str(tmp_path / "team.key")]
    )
    assert packed.exit_code == 0, packed.output
    archive = out / "math-1.0.0.tar.gz"
    checked = runner.invoke(
        main, ["verify", str(archive), "--key", str(tmp_path / "team.pub"), "--json"]
    )
    assert checked.exit_code == 0, checked.output
    info = json.loads(checked.output)
    assert info["signature"] == "valid" and info["procedures"][0]["name"] == "add_i64"
    other = runner.invoke(main, ["keygen", "other", "--dir", str(tmp_path)])
    assert other.exit_code == 0
    wrong = runner.invoke(main, ["verify", str(archive), "--key", str(tmp_path / "other.pub")])
    assert wrong.exit_code == 1 and "does not verify" in wrong.output
    db = str(tmp_path / "x.db")
    refused = runner.invoke(
        main, ["install", str(archive), "--db", db, "--key", str(tmp_path / "other.pub")]
    )
    assert refused.exit_code == 1
    assert json.loads(runner.invoke(main, ["extensions", "--db", db, "--json"]).output) == []
    done = runner.invoke(
        main, ["install", str(archive), "--db", db, "--key", str(tmp_path / "team.pub")]
    )
    assert done.exit_code == 0, done.output
    answer = runner.invoke(main, ["sql", "--db", db, "--json", "SELECT add_i64(40, 2) AS v"])
    assert json.loads(answer.output)["rows"] == [{"v": 42}]


def test_init_refuses_a_bad_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["init", "--lang", "go", "Bad-Name", "--dir", str(tmp_path)])
    assert result.exit_code == 1 and "error" in result.output
    assert list(tmp_path.iterdir()) == []
