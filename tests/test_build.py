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
from heliosdb_wasm.toolchains import assemblyscript as asc
from heliosdb_wasm.toolchains import js, rust
from heliosdb_wasm.toolchains import python as py
from heliosdb_wasm.toolchains.common import BuildError, Export, Record, Repo, kebab, world_wit


@pytest.mark.parametrize(
    ("project", "language"),
    [
        ("examples/calculate_discount/rust", "rust"),
        ("examples/calculate_discount/go", "go"),
        ("examples/calculate_discount/python", "python"),
        ("tests/conformance/impl/rust", "rust"),
        ("examples/calculate_discount/js", "js"),
        ("examples/calculate_discount/assemblyscript", "assemblyscript"),
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


# --- JavaScript / TypeScript and AssemblyScript ------------------------------------

REPO = Repo(ROOT)
needs_js_tools = pytest.mark.skipif(
    not (ROOT / "sdks/js/node_modules/typescript").is_dir(),
    reason="the JS SDK's tools are not installed (npm ci --prefix sdks/js)",
)

TS_PROCEDURES = """
import { type i64, type i32, type f64, type Json } from "heliosdb";
export interface Pair { firstName: string; size: i64 | null }
function helper(): i64 { return 1; }
export function mixed(a: i64, b: i32, c: f64, d: string, e: Uint8Array, f: boolean,
                      g: i64 | null): Json { return "{}"; }
export function pairs(n: i64): Pair[] { return []; }
export function nothing(): void {}
"""


def _procedures(
    tmp_path: Path, source: str, name: str = "procedure.ts", **kw: str
) -> list[js.Procedure]:
    path = tmp_path / name
    path.write_text(source)
    return js.procedures(path, REPO, **kw)


@needs_js_tools
def test_typescript_annotations_become_wit(tmp_path: Path) -> None:
    procs = {p.name: p for p in _procedures(tmp_path, TS_PROCEDURES)}
    assert set(procs) == {"mixed", "pairs", "nothing"}  # helper is not exported
    assert procs["mixed"].export.wit() == (
        "export mixed: func(a: s64, b: s32, c: f64, d: string, e: list<u8>, f: bool,"
        " g: option<s64>) -> result<string, error>;"
    )
    assert procs["mixed"].returns_json
    assert procs["pairs"].table == Record(
        "pair", (("first-name", "string"), ("size", "option<s64>"))
    )
    assert procs["nothing"].export.wit() == "export nothing: func() -> result<_, error>;"
    entry = js.entry_module(list(procs.values()), "procedure.js")
    # Row objects are re-keyed to componentize-qjs's camelCase record fields.
    assert '({ firstName: row["firstName"], size: row["size"] })' in entry
    assert "export function mixed(a0, a1, a2, a3, a4, a5, a6)" in entry


@needs_js_tools
def test_plain_javascript_takes_its_types_from_jsdoc(tmp_path: Path) -> None:
    source = """
    /** @param {i64} n @param {string} s @returns {string} */
    export function repeat(n, s) { return s.repeat(n); }
    """
    (proc,) = _procedures(tmp_path, source, "procedure.js")
    assert proc.export.wit() == "export repeat: func(n: s64, s: string) -> result<string, error>;"


@needs_js_tools
@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("export function f(a) { return 1; }", r"f\(a\): needs a type"),
        ("export function f(a: Map<string, i64>): i64 { return 1; }", "has no SQL mapping"),
        ("export function f(a?: i64): i64 { return 1; }", "cannot be optional"),
        ("export const f = (a: i64): i64 => a;", "export procedures as `export function f"),
        ("function f(a: i64): i64 { return a; }", "exports no function"),
        ("export function f(a: i64: i64 {", "procedure.ts:1"),
    ],
)
def test_typescript_procedures_with_bad_types_are_build_errors(
    tmp_path: Path, source: str, message: str
) -> None:
    with pytest.raises(BuildError, match=message):
        _procedures(tmp_path, source)


AS_PROCEDURES = """
import { Json, Nullable } from "heliosdb";
export class Row { label: string = ""; n: i32 = 0; ok: bool = false }
export function nums(a: i64, b: i32, c: f64, d: f32, e: bool): bool { return e; }
export function text(s: string, b: Uint8Array): string { return s; }
export function maybe(x: Nullable<i64> | null): Nullable<i64> | null { return x; }
export function table(n: i64): Row[] { return []; }
"""


@needs_js_tools
def test_assemblyscript_wrappers_follow_the_basic_abi(tmp_path: Path) -> None:
    procs = _procedures(tmp_path, AS_PROCEDURES, nullable_box="Nullable")
    entry = asc.entry_module(procs)
    assert "export function nums(a0: i64, a1: i32, a2: f64, a3: f32, a4: i32): i32 {" in entry
    assert "return user.nums(a0, a1, a2, a3, a4 != 0) ? 1 : 0;" in entry
    assert "export function text(a0p: usize, a0l: usize, a1p: usize, a1l: usize): void {" in entry
    assert "__returnText(user.text(__takeText(a0p, a0l), __takeBlob(a1p, a1l)));" in entry
    assert "(__argIsNull(0) ? null : new Nullable<i64>(a0))" in entry
    assert 'const w = new __RowsWriter(["label", "n", "ok"]);' in entry
    assert "w.int(<i64>row.n);" in entry
    # The batch entry point (docs/abi.md §9): columns one after another.
    assert "export function nums__batch(count: i32, args: usize, out: usize): i32 {" in entry
    assert "load<i32>(args + <usize>count * (0 + 8) + <usize>i * 4)" in entry
    assert "store<i32>(out + <usize>i * 4, user.nums(" in entry
    assert "text__batch" not in entry and "maybe__batch" not in entry


@needs_js_tools
def test_assemblyscript_nullable_numbers_must_be_boxed(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"written Nullable<T> \| null"):
        _procedures(
            tmp_path, "export function f(x: i64 | null): i64 { return 0; }", nullable_box="Nullable"
        )


@needs_js_tools
def test_the_host_api_types_are_generated_from_the_wit() -> None:
    import subprocess

    done = subprocess.run(
        ["node", str(ROOT / "sdks/js/tools/types.mjs"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@needs_js_tools
def test_the_sdk_and_the_typescript_procedures_type_check() -> None:
    """tsc over the SDK, the examples and the conformance implementation,
    against the host API's generated declarations."""
    import subprocess

    tsc = ROOT / "sdks/js/node_modules/.bin/tsc"
    done = subprocess.run([str(tsc), "-p", str(ROOT / "sdks/js")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
