"""Project scaffolding (`heliosdb-wasm init`): refusals, and every language's
scaffold really builds and passes its README's `heliosdb-wasm test` (slow:
these run the compilers)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ROOT
from heliosdb_wasm.cli import main
from heliosdb_wasm.scaffold import LANGUAGES, ScaffoldError, init_project
from heliosdb_wasm.toolchains import build_project, detect_language

# The ABI each scaffold's README builds and tests first.
ABIS = {
    "rust": "basic",
    "python": "component",
    "js": "component",
    "assemblyscript": "basic",
    "go": "basic",
}


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("AddNumbers", "lowercase"),
        ("1add", "starting with a letter"),
        ("add-numbers", "lowercase letters, digits and _"),
        ("", "invalid procedure name"),
        ("add_2", "must start with a letter"),
        ("add__numbers", "may not repeat"),
        ("heliosdb_add", "reserved"),
    ],
)
def test_bad_names_are_refused(tmp_path: Path, name: str, problem: str) -> None:
    with pytest.raises(ScaffoldError, match=re.escape(problem)):
        init_project("rust", name, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("language", "name"), [("rust", "fn"), ("python", "class"), ("js", "delete"), ("go", "go")]
)
def test_reserved_names_are_refused(tmp_path: Path, language: str, name: str) -> None:
    with pytest.raises(ScaffoldError, match=f"reserved in {language}"):
        init_project(language, name, tmp_path)


def test_an_unknown_language_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match=r"unknown language 'cobol'.*rust, python"):
        init_project("cobol", "add_numbers", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_never_touched(tmp_path: Path) -> None:
    existing = tmp_path / "add_numbers"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match="already exists"):
        init_project("python", "add_numbers", tmp_path)
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]
    assert (existing / "notes.txt").read_text() == "mine"

    (tmp_path / "a_file").write_text("also mine")
    with pytest.raises(ScaffoldError, match="already exists"):
        init_project("go", "a_file", tmp_path)
    assert (tmp_path / "a_file").read_text() == "also mine"


def test_an_empty_folder_is_filled(tmp_path: Path) -> None:
    (tmp_path / "add_numbers").mkdir()
    project = init_project("python", "add_numbers", tmp_path)
    assert project == tmp_path / "add_numbers"
    assert (project / "procedure.py").is_file()


def test_sdks_are_referenced_by_absolute_path(tmp_path: Path) -> None:
    sdks = ROOT.resolve() / "sdks"
    rust = init_project("rust", "add_numbers", tmp_path / "r")
    assert f'path = "{sdks / "rust" / "heliosdb-wasm-sdk"}"' in (rust / "Cargo.toml").read_text()
    assert str(sdks / "rust") in (rust / "README.md").read_text()
    go = init_project("go", "add_numbers", tmp_path / "g")
    assert f"=> {sdks / 'go'}\n" in (go / "go.mod").read_text()


def _readme_test_commands(project: Path) -> list[list[str]]:
    """The `heliosdb-wasm test ...` lines of the project's README, as CLI arguments."""
    return [
        shlex.split(line)[1:]
        for line in (project / "README.md").read_text().splitlines()
        if line.startswith("heliosdb-wasm test ")
    ]


def _readme_ship_commands(project: Path) -> list[list[str]]:
    """The commands of the README's "Ship" section, as CLI arguments."""
    text = (project / "README.md").read_text().split("## Ship", 1)[1]
    return [
        shlex.split(line.split("  #")[0])[1:]
        for line in text.splitlines()
        if line.startswith("heliosdb-wasm ")
    ]


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_scaffold_builds_and_passes_its_test(
    tmp_path: Path, language: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "add_numbers"
    project = init_project(language, name, tmp_path)
    assert detect_language(project) == language
    readme = (project / "README.md").read_text()
    assert "heliosdb-wasm build . --out build" in readme
    assert "heliosdb-wasm procedure create" in readme

    abi = ABIS[language]
    export = "add-numbers" if abi == "component" else "add_numbers"
    commands = _readme_test_commands(project)
    assert commands[0] == [
        "test",
        f"build/{name}.{abi}.wasm",
        "--export",
        export,
        "--params",
        "a:BIGINT,b:BIGINT",
        "--returns",
        "BIGINT",
        "--param",
        "a=40",
        "--param",
        "b=2",
        "--expect",
        "42",
    ]
    # Every test the README gives (Rust's also covers its component).
    for args in commands:
        built_abi = args[1].split(".")[-2]
        artifact = build_project(project, project / "build", built_abi, log=lambda _: None)
        assert project / args[1] == artifact
        args[1] = str(artifact)  # the README's path is relative to the project
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert "PASS" in result.output
        assert "log info: add_numbers(40, 2)" in result.output

    # Then ship it as the README says: keygen, pack, verify, install, call.
    monkeypatch.chdir(project)
    ship = _readme_ship_commands(project)
    assert [c[0] for c in ship] == ["keygen", "pack", "verify", "install", "sql"]
    for args in ship:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (args, result.output)
    assert "42" in result.output.splitlines()[-2]
