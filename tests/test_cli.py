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
