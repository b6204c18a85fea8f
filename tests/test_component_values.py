"""component_values.py against wasmtime-py's own conversion, type by type.

Both convert between Python values and wasmtime's C values for the same WIT
types (tests/fixtures/shapes.wit): every value lowered by one and lifted by
the other must come back as the all-wasmtime-py round trip brings it, and a
value one refuses the other refuses with the same exception type - so a
procedure or plugin sees exactly what it saw before the planned codecs.
"""

from __future__ import annotations

import ctypes
import math
import subprocess
from collections.abc import Callable
from ctypes import byref
from typing import Any

import pytest
import wasmtime
import wasmtime.component as wc
from wasmtime import _ffi as ffi

from conftest import FIXTURES
from heliosdb_wasm import component_values as cv

Val = ffi.wasmtime_component_val_t


@pytest.fixture(scope="module")
def types(wasm_tools: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, wc.ValType]:
    tmp = tmp_path_factory.mktemp("shapes")
    (tmp / "wit").mkdir()
    (tmp / "wit" / "shapes.wit").write_text((FIXTURES / "shapes.wit").read_text())
    core, component = tmp / "core.wasm", tmp / "shapes.wasm"
    subprocess.run(
        [wasm_tools, "component", "embed", "--dummy", str(tmp / "wit"), "--world", "shapes",
         "-o", str(core)],
        check=True,
    )
    subprocess.run([wasm_tools, "component", "new", str(core), "-o", str(component)], check=True)
    engine = wasmtime.Engine()
    fty = wc.Component(engine, component.read_bytes()).type.exports(engine)["f"].ty
    assert isinstance(fty, wc.FuncType) and fty.result is not None
    found = dict(fty.params)
    found["result"] = fty.result
    return found


def point(x: Any, y: Any, label: Any) -> wc.Record:
    r = wc.Record()
    r.x, r.y, r.label = x, y, label
    return r


V = wc.Variant
GOOD: dict[str, list[Any]] = {
    "a": [True, False],
    "b": [-128, 127],
    "c": [0, 255],
    "d": [-32768, 32767],
    "e": [0, 65535],
    "g": [-(2**31), 2**31 - 1],
    "h": [0, 2**32 - 1],
    "i": [-(2**63), 2**63 - 1],
    "j": [0, 2**64 - 1],
    "k": [1.5, -0.0, math.inf],
    "l": [3.25, -1e300, math.inf],
    "m": ["x", "€", "🦀"],
    "n": ["", "héllo", "a\0b", "🦀" * 1000],
    "o": [b"", bytes(range(256)), b"\0" * 70_000],
    "p": [[], ["a", "bc", ""]],
    "q": [[], [[1, 2], [], [3]]],
    "r": [point(1.0, None, "p"), point(2.0, 3.0, "")],
    "s": [("a", 7), ("", 0)],
    # Untagged: the cases' classes are distinct (True goes to int, its first match).
    "t": [None, 5, "txt", b"\0\1", True, False],
    # Tagged: two cases share str.
    "u": [V("a", "x"), V("b", ""), V("c")],
    "v": ["red", "blue"],
    "w": [set(), {"read", "exec"}, {"read", "write", "exec"}],
    "x": [None, 0, -5],
    "y": [V("none"), V("some", None), V("some", "x")],
    "z": [5, "err"],
    "aa": [None, "bad"],
    "ab": [V("ok", "x"), V("err", "y")],
    "ac": [V("ok"), V("err")],
    "ad": [[], [point(1.0, None, "a"), point(2.0, 2.5, "b")]],
    "ae": [[], [("content-type", "text/plain"), ("x", "")]],
    "af": [None, b"", b"xy"],
    "result": [[point(0.5, None, "r")], V("b", "e"), V("c")],
}

BAD: dict[str, list[Any]] = {
    "a": [1, None],
    "b": ["1", 1.0],
    "l": [1, "x"],
    "m": ["", "ab", 1],
    "n": [b"x", None],
    "o": [[1, 2], bytearray(b"x"), "x"],
    "p": [["a", 3, "c"], ("a",)],
    "q": [[[1], ["x"], [2]]],
    "r": [object(), point("no", None, "p"), point(1.0, "no", "p"), point(1.0, None, 3)],
    "s": [("a",), ("a", "b"), ["a", 1]],
    "t": [1.5, [1]],
    "u": ["a", V("zz"), V("a", 3)],
    "v": [3],
    "w": [{"read", 3}, ["read"]],
    "y": ["x", None],
    "ab": ["x"],
    "ad": [[point(1.0, None, "a"), point(1.0, None, 7), point(1.0, None, "c")]],
    "ae": [[("a", "b"), ("c",)]],
}


def wasmtime_lower(ty: wc.ValType, value: Any) -> Any:
    raw = Val()
    ty.convert_to_c(None, value, ctypes.pointer(raw))  # type: ignore[arg-type]
    return raw


def codec_lower(ty: wc.ValType, value: Any) -> Any:
    raw = Val()
    cv.codec(ty).lower(None, value, raw)
    return raw


def wasmtime_lift(ty: wc.ValType, raw: Any) -> Any:
    return ty.convert_from_c(raw)  # frees as it reads


def codec_lift(ty: wc.ValType, raw: Any) -> Any:
    try:
        return cv.codec(ty).lift(raw)
    finally:
        ffi.wasmtime_component_val_delete(byref(raw))


def cases(table: dict[str, list[Any]]) -> list[tuple[str, Any]]:
    return [(name, value) for name, values in table.items() for value in values]


def plain(v: Any) -> Any:
    """``v`` with its Python types spelled out (True is not 1, -0.0 not 0.0)."""
    if isinstance(v, wc.Record):
        return ("Record", sorted((k, plain(x)) for k, x in vars(v).items()))
    if isinstance(v, wc.Variant):
        return ("Variant", v.tag, plain(v.payload))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, [plain(x) for x in v])
    if isinstance(v, set):
        return ("set", sorted(v))
    if isinstance(v, float):
        return ("float", repr(v))
    return (type(v).__name__, v)


def same(a: Any, b: Any) -> bool:
    return plain(a) == plain(b)


@pytest.mark.parametrize(("name", "value"), cases(GOOD))
@pytest.mark.parametrize(
    ("lower", "lift"),
    [(codec_lower, wasmtime_lift), (wasmtime_lower, codec_lift), (codec_lower, codec_lift)],
    ids=["codec-to-wasmtime", "wasmtime-to-codec", "codec-only"],
)
def test_values_cross_as_wasmtime_py_converts_them(
    types: dict[str, wc.ValType],
    name: str,
    value: Any,
    lower: Callable[[wc.ValType, Any], Any],
    lift: Callable[[wc.ValType, Any], Any],
) -> None:
    ty = types[name]
    expected = wasmtime_lift(ty, wasmtime_lower(ty, value))
    assert same(lift(ty, lower(ty, value)), expected)


@pytest.mark.parametrize(("name", "value"), cases(BAD))
def test_values_wasmtime_py_refuses_are_refused_alike(
    types: dict[str, wc.ValType], name: str, value: Any
) -> None:
    ty = types[name]
    with pytest.raises(Exception) as theirs:
        wasmtime_lower(ty, value)
    with pytest.raises(Exception) as ours:
        codec_lower(ty, value)
    assert type(ours.value) is type(theirs.value)
    # A refusal halfway through a list or record leaves nothing half-built:
    # the same codec still converts a good value.
    good = GOOD[name][-1]
    assert same(codec_lift(ty, codec_lower(ty, good)), wasmtime_lift(ty, wasmtime_lower(ty, good)))


def test_every_shape_is_planned_and_classed_as_wasmtime_py_does(
    types: dict[str, wc.ValType],
) -> None:
    for name, ty in types.items():
        theirs: set[type] = set()
        ty.add_classes(theirs)
        assert cv.codec(ty).classes == theirs, name


def test_types_left_to_wasmtime_py_are_reported() -> None:
    with pytest.raises(cv.Unplanned):
        cv.codec(wc.ErrorContext())
