"""The core's Basic-ABI encodings (engine/core/src/encoding.rs) agree with
docs/abi.md §5-§6 as Python's reference implementation here writes them:
byte for byte for rows, value for value and error for error for parameter
lists, on generated inputs (bounded, derandomized)."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heliosdb_wasm import _core, values
from heliosdb_wasm.errors import AbiError

SETTINGS = settings(
    max_examples=300, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
sql_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(max_size=64),
)


def reference_params(data: bytes) -> list[Any]:
    """Section 5 read by Python's bounds-checked reader (values._Reader, which
    the engine still uses for row and HTTP buffers)."""
    if not data:
        return []
    r = values._Reader(data, "parameter list")
    decoded = [r.value() for _ in range(r.count(1))]
    r.done()
    return decoded


def reference_rows(columns: list[str], rows: list[tuple[Any, ...]]) -> bytes:
    out = bytearray(struct.pack("<I", len(columns)))
    for name in columns:
        data = name.encode()
        out += struct.pack("<I", len(data)) + data
    out += struct.pack("<I", len(rows))
    for row in rows:
        for value in row:
            values.encode_value(out, value)
    return bytes(out)


@SETTINGS
@given(
    st.integers(0, 4).flatmap(
        lambda n: st.tuples(
            st.lists(st.text(max_size=8), min_size=n, max_size=n),
            st.lists(st.tuples(*[sql_values] * n), max_size=6),
        )
    )
)
def test_rows_are_the_documented_bytes(case: tuple[list[str], list[tuple[Any, ...]]]) -> None:
    columns, rows = case
    assert _core.encode_rows(columns, rows) == reference_rows(columns, rows)


@SETTINGS
@given(st.lists(sql_values, max_size=8))
def test_parameter_lists_decode_to_what_was_encoded(params: list[Any]) -> None:
    data = bytearray(struct.pack("<I", len(params)))
    for p in params:
        values.encode_value(data, p)
    assert _core.decode_params(bytes(data)) == params
    assert values.decode_params(bytes(data)) == params


@SETTINGS
@given(st.binary(max_size=40))
def test_malformed_lists_fail_alike(data: bytes) -> None:
    """Any bytes at all: the same values, or an abi-error with the same words."""
    try:
        expected: Any = reference_params(data)
    except AbiError as exc:
        expected = exc.message
    try:
        got: Any = _core.decode_params(data)
    except _core.CoreError as exc:
        assert exc.args[0] == "abi-error"
        got = exc.args[1]
    assert got == expected


def test_values_the_encoding_cannot_carry_are_refused() -> None:
    with pytest.raises(TypeError, match="cannot encode a list"):
        _core.encode_rows(["x"], [([1, 2],)])
    with pytest.raises(ValueError, match="a row of 2 value"):
        _core.encode_rows(["x"], [(1, 2)])
    assert _core.encode_rows(["x"], [(bytearray(b"ab"),), (memoryview(b"c"),)]) == reference_rows(
        ["x"], [(b"ab",), (b"c",)]
    )
    # A lone surrogate crosses as Python's "surrogatepass" writes it.
    assert _core.encode_rows(["x"], [("\udc80",)]) == reference_rows(["x"], [("\udc80",)])
