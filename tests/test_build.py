"""`heliosdb-wasm build`: language detection, naming, up-to-date checks, and the
pieces that turn source into WIT (fast: no compiler runs here)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import wasmtime

from conftest import ROOT
from heliosdb_wasm import toolchains
from heliosdb_wasm.toolchains import python as py
from heliosdb_wasm.toolchains import rust
from heliosdb_wasm.toolchains.common import BuildError, Export, Record, Repo, kebab, world_wit


@pytest.mark.parametrize(
    ("project", "language"),
    [
        ("examples/calculate_discount/rust", "rust"),
        ("examples/calculate_discount/go", "go"),
        ("examples/calculate_discount/python", "python"),
        ("tests/conformance/impl/rust", "rust"),
    ],
)
def test_languages_are_detected(project: str, language: str) -> None:
    assert toolchains.detect_language(ROOT / project) == language


def test_an_unknown_project_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("nothing to build")
    with pytest.raises(BuildError, match="not a procedure project"):
        toolchains.build_project(tmp_path, tmp_path / "out", "basic")


def test_an_abi_the_language_cannot_build_is_refused() -> None:
    with pytest.raises(BuildError, match="python procedures build as component"):
        toolchains.build_project(ROOT / "examples/calculate_discount/python", ROOT / "x", "basic")


def test_artifacts_are_named_after_the_package_or_the_procedure() -> None:
    assert toolchains.project_name(ROOT / "examples/detect_fraud/go", "go") == "detect_fraud"
    assert toolchains.project_name(ROOT / "tests/conformance/impl/python", "python") == (
        "conformance"
    )


def test_up_to_date_artifacts_are_not_rebuilt(tmp_path: Path) -> None:
    project = ROOT / "examples" / "calculate_discount" / "python"
    out = tmp_path / "out"
    out.mkdir()
    artifact = out / "calculate_discount.component.wasm"
    artifact.write_bytes(b"built earlier")
    future = time.time() + 3600
    os.utime(artifact, (future, future))
    lines: list[str] = []
    assert toolchains.build_project(project, out, "component", log=lines.append) == artifact
    assert artifact.read_bytes() == b"built earlier"
    assert "up to date" in lines[0]


def test_the_repository_is_found_from_a_project() -> None:
    assert Repo.find(ROOT / "examples" / "validate_order" / "go").root == ROOT


def test_kebab_case() -> None:
    assert kebab("calculate_discount") == "calculate-discount"
    assert kebab("SalesRow") == "sales-row"
    assert kebab("customer_id") == "customer-id"


def test_world_includes_the_host_api_and_the_exports() -> None:
    world = world_wit(
        "w",
        [Export("f", (("a", "s64"),), "list<row>", fallible=True)],
        [Record("row", (("n", "s64"),))],
    )
    assert "include heliosdb:procedures/procedure@0.1.0;" in world
    assert "record row { n: s64 }" in world
    assert "export f: func(a: s64) -> result<list<row>, error>;" in world


PYTHON_PROCEDURES = """
from dataclasses import dataclass
from heliosdb_procedures import I32, Json, procedure

@dataclass
class Pair:
    name: str
    size: int | None

def helper(x): return x

@procedure
def mixed(a: int, b: I32, c: float, d: str, e: bytes, f: bool, g: int | None) -> Json:
    return {}

@procedure
def pairs(n: int) -> list[Pair]:
    return []

@procedure
def nothing() -> None:
    pass
"""


def test_python_hints_become_wit() -> None:
    procs = {p.name: p for p in py.analyze(PYTHON_PROCEDURES, "procedure.py")}
    assert set(procs) == {"mixed", "pairs", "nothing"}  # helper is not exported
    assert procs["mixed"].export.wit() == (
        "export mixed: func(a: s64, b: s32, c: f64, d: string, e: list<u8>, f: bool,"
        " g: option<s64>) -> result<string, error>;"
    )
    assert procs["mixed"].returns_json
    assert procs["pairs"].table == Record("pair", (("name", "string"), ("size", "option<s64>")))
    assert procs["nothing"].export.wit() == "export nothing: func() -> result<_, error>;"
    entry = py.entry_module(list(procs.values()))
    compile(entry, "heliosdb_entry.py", "exec")  # the generated module is valid Python
    assert "_sdk._rows(wit_world.Pair, ['name', 'size'])" in entry


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("@procedure\ndef f(a): return 1", "parameter a needs a type hint"),
        ("@procedure\ndef f(a: int): return 1", "return type needs a type hint"),
        ("@procedure\ndef f(a: dict) -> int: return 1", "type dict has no SQL mapping"),
        ("@procedure\ndef f(*a: int) -> int: return 1", "plain positional parameters"),
        ("def f(a: int) -> int: return 1", "no function is marked @procedure"),
        ("def f(:", "procedure.py:1"),
    ],
)
def test_python_procedures_with_bad_hints_are_build_errors(source: str, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        py.analyze(source, "procedure.py")


def test_rust_wit_items_come_from_the_custom_section() -> None:
    wasm = wasmtime.wat2wasm(
        '(module (@custom "heliosdb:wit" "export f: func() -> s64;\\n")'
        ' (@custom "heliosdb:wit" "record r { a: s64 }\\nexport f: func() -> s64;\\n"))'
    )
    assert rust.wit_items(wasm) == ["export f: func() -> s64;", "record r { a: s64 }"]
    with pytest.raises(BuildError, match="no #\\[heliosdb_procedure\\]"):
        rust.wit_items(wasmtime.wat2wasm("(module)"))
