"""The Basic ABI's import table is the WIT host API, lowered by one rule.

wit/ is the host API; docs/abi.md §4 flattens it for core modules. This
derives each import's wasm type from the WIT (resolved by wasm-tools) by that
rule and compares it with what the engine links (the core's table,
engine/core/src/abi.rs, as abi_basic.HOST_IMPORTS) and with the table in
docs/abi.md, so a function added to, changed in or removed
from one of the three without the others fails here.

The lowering (docs/abi.md §4-§5):
* a string, a list or a record (encoded, section 5) is (ptr, len: i32); an
  enum is one i32; s64/u64 are i64, smaller integers and bool i32, f64 f64;
* `result<T, error>` returns an i32 status; a T other than `_` is written
  to an out area whose pointer is the last parameter; a plain result is
  returned as itself; none returns nothing;
* interface `host` functions are `heliosdb_<name>`, `plugin-host` ones
  `<name>`, with `-` as `_`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from heliosdb_wasm import _core
from heliosdb_wasm.abi_basic import HOST_IMPORTS

ROOT = Path(__file__).parent.parent
# Imports of the Basic ABI's own mechanics, with no WIT function behind them:
# how parameters come in, results go out, and errors cross (docs/abi.md §4).
ABI_ONLY = {"heliosdb_get_param", "heliosdb_return", "heliosdb_error", "heliosdb_last_error"}
PREFIX = {"host": "heliosdb_", "plugin-host": ""}
_SCALARS = {
    "s64": ("i64",),
    "u64": ("i64",),
    "s32": ("i32",),
    "u32": ("i32",),
    "s16": ("i32",),
    "u16": ("i32",),
    "s8": ("i32",),
    "u8": ("i32",),
    "bool": ("i32",),
    "char": ("i32",),
    "f64": ("f64",),
    "f32": ("f32",),
    "string": ("i32", "i32"),
}

Signature = tuple[tuple[str, ...], tuple[str, ...]]


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    tool = shutil.which("wasm-tools")
    assert tool is not None, "wasm-tools is part of the engine's dev extra"
    out = subprocess.run(
        [tool, "component", "wit", str(ROOT / "wit"), "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def _kind(doc: dict[str, Any], ty: str | int) -> Any:
    """A type's definition, through aliases (``type x = y``)."""
    while isinstance(ty, int):
        kind = doc["types"][ty]["kind"]
        if isinstance(kind, dict) and "type" in kind:
            ty = kind["type"]
            continue
        return kind
    return ty


def _flat_param(doc: dict[str, Any], ty: str | int) -> tuple[str, ...]:
    kind = _kind(doc, ty)
    if isinstance(kind, str):
        return _SCALARS[kind]
    if "enum" in kind:
        return ("i32",)
    if {"list", "record", "variant", "tuple", "option"} & set(kind):
        return ("i32", "i32")  # encoded in guest memory (section 5)
    raise AssertionError(f"no Basic-ABI lowering for {kind}")


def _lowered(doc: dict[str, Any], function: dict[str, Any]) -> Signature:
    params: list[str] = []
    for p in function["params"]:
        params += _flat_param(doc, p["type"])
    result = function.get("result")
    if result is None:
        return tuple(params), ()
    kind = _kind(doc, result)
    if isinstance(kind, dict) and "result" in kind:
        if kind["result"].get("ok") is not None:
            params.append("i32")  # the out area
        return tuple(params), ("i32",)
    (flat,) = _SCALARS[kind] if isinstance(kind, str) else (None,)
    assert flat is not None, f"{function['name']}: a plain result must be a scalar"
    return tuple(params), (flat,)


def _from_wit(doc: dict[str, Any]) -> dict[str, Signature]:
    derived = {}
    for interface in doc["interfaces"]:
        prefix = PREFIX.get(interface["name"])
        if prefix is None:
            continue
        for name, function in interface["functions"].items():
            derived[prefix + name.replace("-", "_")] = _lowered(doc, function)
    return derived


def test_every_host_import_is_its_wit_function_lowered(resolved: dict[str, Any]) -> None:
    derived = _from_wit(resolved)
    linked = {k: v for k, v in HOST_IMPORTS.items() if k not in ABI_ONLY}
    assert set(linked) == set(derived), "imports without a WIT function, or WIT without an import"
    for name, signature in derived.items():
        assert HOST_IMPORTS[name] == signature, name
    assert set(ABI_ONLY) <= set(HOST_IMPORTS)


def test_docs_abi_lists_exactly_the_linked_imports() -> None:
    text = (ROOT / "docs" / "abi.md").read_text()
    section = text[text.index("## 4. Host imports") : text.index("**Buffer ownership.**")]
    documented = {}
    for name, params, result in re.findall(
        r"^\| `(\w+)` \| `\(([^)]*)\)(?: -> (\w+))?`", section, re.MULTILINE
    ):
        groups = [g.strip() for g in params.split(",") if g.strip()] if params else []
        # "a, b: i32" gives both the type after the colon that ends their group.
        types: list[str] = []
        pending = 0
        for g in groups:
            pending += 1
            if ":" in g:
                types += [g.split(":")[1].strip()] * pending
                pending = 0
        assert pending == 0, f"{name}: a parameter without a type in docs/abi.md"
        documented[name] = (tuple(types), (result,) if result else ())
    assert documented == HOST_IMPORTS


def test_the_status_codes_are_the_wit_error_cases_in_order(resolved: dict[str, Any]) -> None:
    """heliosdb_* statuses are the index + 1 of the WIT error variant's
    cases (docs/abi.md §4): the core's list is that variant."""
    variants = [
        [case["name"] for case in ty["kind"]["variant"]["cases"]]
        for ty in resolved["types"]
        if ty.get("name") == "error" and "variant" in ty.get("kind", {})
    ]
    assert variants, "wit/ declares the error variant"
    assert variants[0] == _core.BASIC_STATUS_CASES
