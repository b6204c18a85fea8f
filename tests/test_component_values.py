"""Component values as the core converts them (engine/core/src/python/component.rs),
shape by shape (tests/fixtures/shapes.wit): every value a procedure or plugin
may pass is lowered to the export's WIT type and lifted back unchanged, and
a value the type cannot hold is refused with a TypeError or ValueError naming
the parameter - before any guest runs.
"""

from __future__ import annotations

import math
import subprocess
from typing import Any

import pytest

from conftest import FIXTURES
from heliosdb_wasm import _core
from heliosdb_wasm.registry import sha256_hex
from heliosdb_wasm.runtime import Runtime


@pytest.fixture(scope="module")
def shapes(wasm_tools: str, tmp_path_factory: pytest.TempPathFactory) -> _core.Component:
    tmp = tmp_path_factory.mktemp("shapes")
    (tmp / "wit").mkdir()
    (tmp / "wit" / "shapes.wit").write_text((FIXTURES / "shapes.wit").read_text())
    core, component = tmp / "core.wasm", tmp / "shapes.wasm"
    subprocess.run(
        [
            wasm_tools,
            "component",
            "embed",
            "--dummy",
            str(tmp / "wit"),
            "--world",
            "shapes",
            "-o",
            str(core),
        ],
        check=True,
    )
    subprocess.run([wasm_tools, "component", "new", str(core), "-o", str(component)], check=True)
    wasm = component.read_bytes()
    return _core.Component(Runtime().core, sha256_hex(wasm), wasm)


def point(x: Any, y: Any, label: Any) -> dict[str, Any]:
    return {"x": x, "y": y, "label": label}


# f's parameters, in order.
NAMES = [
    "a",
    "b",
    "c",
    "d",
    "e",
    "g",
    "h",
    "i",
    "j",
    "k",
    "l",
    "m",
    "n",
    "o",
    "p",
    "q",
    "r",
    "s",
    "t",
    "u",
    "v",
    "w",
    "x",
    "y",
    "z",
    "aa",
    "ab",
    "ac",
    "ad",
    "ae",
    "af",
]
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
    "t": [("none", None), ("int", 5), ("text", "txt"), ("blob", b"\0\1"), ("flag", True)],
    "u": [("a", "x"), ("b", ""), ("c", None)],
    "v": ["red", "blue"],
    "w": [[], ["read", "exec"], ["read", "write", "exec"]],
    "x": [None, 0, -5],
    # option<option<T>>: None is the outer none (some(none) has no plain form).
    "y": [None, "x"],
    "z": [("ok", 5), ("err", "err")],
    "aa": [("ok", None), ("err", "bad")],
    "ab": [("ok", "x"), ("err", "y")],
    "ac": [("ok", None), ("err", None)],
    "ad": [[], [point(1.0, None, "a"), point(2.0, 2.5, "b")]],
    "ae": [[], [("content-type", "text/plain"), ("x", "")]],
    "af": [None, b"", b"xy"],
}

BAD: dict[str, list[Any]] = {
    "a": [1, None, "true"],
    "b": ["1", 1.0, 128, -129],
    "c": [-1, 256],
    "h": [-1, 2**32],
    "j": [-1, 2**64],
    "l": ["x", None],
    "m": ["", "ab", 1],
    "n": [b"x", None],
    "o": ["x", None],
    "p": [["a", 3, "c"]],
    "q": [[[1], ["x"], [2]]],
    "r": [
        object(),
        point("no", None, "p"),
        point(1.0, "no", "p"),
        point(1.0, None, 3),
        {"x": 1.0, "y": None},
    ],
    "s": [("a",), ("a", "b")],
    "t": [1.5, [1], ("zz", 1), ("int", "5")],
    "u": ["a", ("zz", None), ("a", 3)],
    "v": [3, "purple"],
    "w": [["read", 3], ["nope"]],
    "y": [5],
    "z": ["x", ("maybe", 1), ("ok", "5")],
    "ad": [[point(1.0, None, "a"), point(1.0, None, 7), point(1.0, None, "c")]],
    "ae": [[("a", "b"), ("c",)]],
}


def args_with(name: str, value: Any) -> list[Any]:
    """The arguments of f: ``value`` for ``name``, the first good value elsewhere."""
    return [value if n == name else GOOD[n][0] for n in NAMES]


def normal(name: str, v: Any) -> Any:
    return sorted(v) if name == "w" else v


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, values in GOOD.items() for v in values])
def test_values_cross_unchanged(shapes: _core.Component, name: str, value: Any) -> None:
    out = _core.lower_and_lift(shapes, None, "f", args_with(name, value))
    got = out[NAMES.index(name)]
    assert normal(name, got) == normal(name, value)
    assert type(got) is type(value)
    if isinstance(value, float):
        assert math.copysign(1, got) == math.copysign(1, value)  # -0.0 stays -0.0


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, values in BAD.items() for v in values])
def test_values_a_type_cannot_hold_are_refused_naming_the_parameter(
    shapes: _core.Component, name: str, value: Any
) -> None:
    with pytest.raises((TypeError, ValueError), match=rf"f\({name}\)"):
        _core.lower_and_lift(shapes, None, "f", args_with(name, value))


def test_every_shape_is_described(shapes: _core.Component) -> None:
    ((iface, fname, params, result),) = shapes.exports
    assert (iface, fname) == (None, "f")
    types = dict(params)
    assert [n for n, _ in params] == NAMES
    assert types["r"] == (
        "record",
        (("x", ("f64",)), ("y", ("option", ("f64",))), ("label", ("string",))),
    )
    assert types["t"][0] == "variant" and types["t"][1][0] == ("none", None)
    assert types["v"] == ("enum", ("red", "green", "blue"))
    assert types["w"] == ("flags", ("read", "write", "exec"))
    assert types["aa"] == ("result", None, ("string",))
    assert types["ac"] == ("result", None, None)
    assert result is not None and result[0] == "result"
