"""SingleStore's Canonical ABI (the singlestore package): core modules made by
wit-bindgen 0.2 plus their old-dialect WIT, hand-written in
tests/fixtures/singlestore/ with allocators that count live allocations."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import apsw
import pytest
import wasmtime
from hypothesis import given, settings
from hypothesis import strategies as st

import heliosdb_wasm as h
from conftest import FIXTURES, TEST_LIMITS
from heliosdb_wasm import _core
from heliosdb_wasm.hostapi import Session
from heliosdb_wasm.invoke import Runner
from heliosdb_wasm.policy import Capabilities, Limits
from heliosdb_wasm.registry import ProcedureVersion, sha256_hex
from heliosdb_wasm.runtime import Runtime
from heliosdb_wasm.singlestore import SingleStoreModule
from heliosdb_wasm.singlestore.wit import (
    ExpectedType,
    FlagsType,
    Prim,
    TupleType,
    VariantType,
    WitSyntaxError,
    parse_wit,
)
from heliosdb_wasm.values import Column, Signature, SqlType

SS = FIXTURES / "singlestore"
# SingleStore's documented examples live with the demo that uses them.
EXAMPLES = FIXTURES.parent.parent / "examples" / "singlestore"


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return Runtime()


def load(
    runtime: Runtime, name: str, wit: str | None = None, wat: str | None = None
) -> SingleStoreModule:
    """tests/fixtures/singlestore/<name>.wat with its .wit (or the given texts)."""
    folder = EXAMPLES if name == "split" else SS
    if wat is None:
        wat = (folder / f"{name}.wat").read_text()
    wasm = wasmtime.wat2wasm(wat)
    text = wit if wit is not None else (folder / f"{name}.wit").read_text()
    return SingleStoreModule(runtime, sha256_hex(wasm), wasm, text)


# Each Guest's own pool: the module keeps one per limits.
_POOLS = itertools.count(1)


class Guest:
    """A module's functions called as a database calls them (a Runner each,
    arguments coerced to the signature), all on one instance of a pool of
    the Guest's own, so a test can watch one guest's allocator across calls."""

    def __init__(
        self, module: SingleStoreModule, limits: Limits = TEST_LIMITS, caps: Sequence[str] = ()
    ) -> None:
        self.module = module
        self.limits = dataclasses.replace(limits, max_log_bytes=limits.max_log_bytes + next(_POOLS))
        self.caps = Capabilities.parse(caps)
        self.session = Session(apsw.Connection(":memory:"), lambda name: False)
        self._runners: dict[tuple[str, Signature | None], Runner] = {}
        self._traced = False
        self._last = self.runner(next(iter(module.functions.values())).name)

    def runner(self, export: str, signature: Signature | None = None) -> Runner:
        key = (export, signature)
        run = self._runners.get(key)
        if run is None:
            run = self._runners[key] = runner(
                self.module, export, signature, self.limits, self.caps, self.session
            )
        return run

    def __call__(self, export: str, *args: Any) -> Any:
        self._last = self.runner(export)
        return self._last.call(list(args))

    @property
    def poisoned(self) -> bool:
        """Whether a call dropped the instance: the pool made one and has
        none idle (every function's runner shares the Guest's pool)."""
        numeric = self._last.numeric()
        return numeric.instantiated > 0 and numeric.idle_instances == 0

    def live(self) -> int:
        return int(self("live-allocations"))

    def trace(self) -> list[tuple[str, int, int]]:
        """What the host asked of the guest's allocator since the last trace
        (after freeing the copy the last trace-take returned)."""
        flat = json.loads(self("trace-take"))
        calls = [
            ("realloc" if op == 0 else "free", size, align)
            for op, size, align in zip(flat[::3], flat[1::3], flat[2::3], strict=True)
        ]
        if self._traced:
            assert calls[0][0::2] == ("free", 4), calls
            calls = calls[1:]
        self._traced = True
        return calls


def runner(
    module: SingleStoreModule,
    export: str,
    signature: Signature | None = None,
    limits: Limits = TEST_LIMITS,
    caps: Capabilities | None = None,
    session: Session | None = None,
) -> Runner:
    version = ProcedureVersion(
        name=export.replace("-", "_"),
        version=1,
        abi="singlestore",
        export=export,
        signature=module.check(export, signature),
        capabilities=caps or Capabilities(),
        limit_overrides={},
        module_sha256="0" * 64,
        created_at=0.0,
    )
    session = session or Session(apsw.Connection(":memory:"), lambda name: False)
    return Runner(version, module, limits, session)


@pytest.fixture(scope="module")
def types(runtime: Runtime) -> SingleStoreModule:
    return load(runtime, "types")


@pytest.fixture(scope="module")
def split(runtime: Runtime) -> SingleStoreModule:
    return load(runtime, "split")


@pytest.fixture(scope="module")
def hostile(runtime: Runtime) -> SingleStoreModule:
    return load(runtime, "hostile")


@pytest.fixture
def guest(types: SingleStoreModule) -> Iterator[Guest]:
    g = Guest(types, caps=("stdout",))
    yield g
    # Whatever a test did, the host must have freed every buffer it owned and
    # handed every argument over: the guest's allocator is back to zero.
    if not g.poisoned:
        assert g.live() == 0


# --- the WIT dialect ---------------------------------------------------------------


def test_the_old_dialect_parses_with_wit_bindgen_layouts() -> None:
    doc = parse_wit((SS / "types.wit").read_text())
    layout = {name: (t.size, t.align, t.flat) for name, t in doc.types.items()}
    assert layout["widths"] == (32, 8, ("i32", "i32", "i32", "i64", "i32", "i32", "i32", "i64"))
    assert layout["person"] == (32, 4, ("i32",) * 8)
    # circle's f64 and rect's first f32 share a slot, joined to i64.
    assert layout["shape"] == (16, 8, ("i32", "i64", "f32"))
    assert layout["color"] == (1, 1, ("i32",))
    assert layout["perms"] == (1, 1, ("i32",))
    assert layout["num"] == (16, 8, ("i32", "i64", "i32"))
    assert isinstance(doc.types["label"], Prim) and doc.types["label"].kind == "string"

    many = doc.functions["many"]
    assert len(many.flat_params) == 18 and many.indirect_params
    assert (many.core_params, many.core_results) == (("i32",), ("i32",))
    assert (many.params_tuple.size, many.params_tuple.align) == (72, 4)
    safe_div = doc.functions["safe-div"]
    assert safe_div.result.flat == ("i32", "i32", "i32") and safe_div.retptr
    assert doc.functions["check-even"].core_results == ("i32",)  # expected<unit, unit>: direct
    assert doc.functions["noop"].core_results == ()
    assert doc.functions["classify"].render() == "classify: func(x: s32) -> expected<unit, color>"

    split = parse_wit((EXAMPLES / "split.wit").read_text())
    sub = split.types["subphrase"]
    assert (sub.size, sub.align, sub.flat) == (12, 4, ("i32", "i32", "i32"))
    assert split.functions["split-str"].core_params == ("i32",) * 4


def test_layout_quirks_of_the_time() -> None:
    doc = parse_wit(
        """
        // names may be escaped keywords, and types used before they are defined
        %type: func(%list: later) -> expected<tuple<u32, u32, u32>, u64>
        record later { x: option<s64> }
        flags wide { f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16,
                     f17, f18, f19, f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30, f31,
                     f32, f33 }
        big: func(w: wide) -> wide
        """
    )
    fn = doc.functions["type"]
    assert fn.params[0][0] == "list"
    later = doc.types["later"]
    assert (later.size, later.align) == (16, 8)  # option<s64>: tag, payload at 8
    result = fn.result
    assert isinstance(result, ExpectedType)
    # SizeAlign::variant of that time: the size is the largest case at its own
    # alignment (4 + 12), not rounded up; every payload sits at 8.
    assert (result.size, result.align, result.payload_offset) == (16, 8, 8)
    assert result.flat == ("i32", "i64", "i32", "i32")
    wide = doc.types["wide"]
    assert isinstance(wide, FlagsType)
    assert (wide.size, wide.align, wide.flat) == (8, 4, ("i32", "i32"))
    cases = ", ".join(f"c{i}" for i in range(256))
    big = parse_wit(f"variant v {{ {cases} }}\nf: func(x: v)").types["v"]
    assert isinstance(big, VariantType) and big.tag_size == 2  # u8 up to 255 cases
    assert isinstance(parse_wit("f: func(x: tuple<>)").functions["f"].params[0][1], TupleType)


QUIRK_WAT = """
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "canonical_abi_realloc") (param i32 i32 i32) (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (i32.add (local.get $size) (i32.const 64))))
    (local.get $p))
  (func (export "canonical_abi_free") (param i32 i32 i32))
  ;; ok([1, 2, 3]): discriminant @0, the tuple @8..20, past the 16-byte size
  (func (export "quirk-out") (result i32)
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.store (i32.const 24) (i32.const 1))
    (i32.store (i32.const 28) (i32.const 2))
    (i32.store (i32.const 32) (i32.const 3))
    (i32.const 16))
  ;; the third u32 of the last element's ok payload: 16 bytes into it
  (func (export "quirk-in") (param $p i32) (param $n i32) (result i32)
    (i32.load offset=16
      (i32.add (local.get $p) (i32.mul (i32.sub (local.get $n) (i32.const 1)) (i32.const 16))))))
"""
QUIRK_WIT = """
quirk-out: func() -> expected<tuple<u32, u32, u32>, u64>
quirk-in: func(l: list<expected<tuple<u32, u32, u32>, u64>>) -> u32
"""


def test_the_variant_quirk_is_reproduced_not_a_fault(runtime: Runtime) -> None:
    # A payload that runs past its variant's size is read and written where
    # the generated code put it, not cut off and not a host-side error.
    g = Guest(load(runtime, "inline", wit=QUIRK_WIT, wat=QUIRK_WAT))
    assert g("quirk-out") == "[1,2,3]"
    assert g("quirk-in", '[{"ok": [1, 2, 3]}, {"err": 5}, {"ok": [7, 8, 9]}]') == 9


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        ("f: func(x: strin) -> s32", "1:12", "unknown type `strin`"),
        ("f: func(x: f32)", "1:12", "spells it float32"),
        ("f: func() -> result<s32, string>", "1:14", "spells it expected<T, E>"),
        ("record r { a: s32, a: s32 }", "1:20", "duplicate field `a`"),
        ("record a { b: b }\nrecord b { a: a }", "1:8", "refers to itself (a -> b -> a)"),
        ("// fine\n  /* open /* nested */", "2:3", "unterminated /* comment"),
        ("f: func() -> $", "1:14", "unexpected character '$'"),
        ("record r { type: s32 }", "1:12", "keyword `type` (write %type"),
        ("package foo:bar;", "1:1", "newer WIT dialect"),
        ("variant v {}", "1:9", "has no cases"),
        ("f: func(x: s32)\nf: func()", "2:1", "already declared at 1:1"),
        ("f: func(x: list<s32)", "1:20", "expected `>`, found `)`"),
        ("f: async func()", "1:4", "async functions are not supported"),
        ("resource r", "1:1", "resources are not supported"),
        ("interface i {}", "1:1", "interface blocks are not supported"),
        ("f: func(x: _)", "1:12", "only allowed inside expected"),
        ("f: func(x: s32, x: s32)", "1:17", "duplicate parameter `x`"),
        ("a-b: func()\na_b: func()", "2:1", "the same SQL name"),
        ("f: s32", "1:4", "expected `func`"),
        ("f: func() -> (a: s32)", "1:14", "multiple results"),
        ("enum e { a, b", "1:14", "expected `}`, found the end of the text"),
        ("record bad- { }", "1:8", "malformed identifier `bad-`"),
    ],
)
def test_malformed_wit_names_line_and_column(text: str, where: str, fragment: str) -> None:
    with pytest.raises(WitSyntaxError) as err:
        parse_wit(text)
    assert isinstance(err.value, h.AbiError)
    assert err.value.message.startswith(f"WIT {where}: "), err.value.message
    assert fragment in err.value.message


# --- signatures ------------------------------------------------------------------------


def test_signatures_come_from_the_wit(types: SingleStoreModule, split: SingleStoreModule) -> None:
    rendered = {name: types.check(name, None).render() for name in types.functions}
    assert rendered == {
        "live_allocations": "() RETURNS BIGINT",
        "trace_take": "() RETURNS JSON",
        "init_count": "() RETURNS BIGINT",
        "echo_u8": "(x INTEGER) RETURNS INTEGER",
        "echo_u16": "(x INTEGER) RETURNS INTEGER",
        "echo_u32": "(x BIGINT) RETURNS BIGINT",
        "echo_u64": "(x BIGINT) RETURNS BIGINT",
        "echo_s8": "(x INTEGER) RETURNS INTEGER",
        "echo_s16": "(x INTEGER) RETURNS INTEGER",
        "echo_s32": "(x INTEGER) RETURNS INTEGER",
        "echo_s64": "(x BIGINT) RETURNS BIGINT",
        "echo_bool": "(x BOOLEAN) RETURNS BOOLEAN",
        "echo_f32": "(x REAL) RETURNS REAL",
        "echo_f64": "(x DOUBLE) RETURNS DOUBLE",
        "echo_char": "(x TEXT) RETURNS TEXT",
        "echo_string": "(s TEXT) RETURNS TEXT",
        "echo_bytes": "(b BLOB) RETURNS BLOB",
        "echo_strings": "(l JSON) RETURNS JSON",
        "echo_widths": "(w JSON) RETURNS JSON",
        "echo_person": "(p JSON) RETURNS JSON",
        "maybe_double": "(x BIGINT) RETURNS BIGINT",
        "option_len": "(s TEXT) RETURNS BIGINT",
        "safe_div": "(a INTEGER, b INTEGER) RETURNS INTEGER",
        "classify": "(x INTEGER) RETURNS VOID",
        "check_even": "(x INTEGER) RETURNS VOID",
        "swap": "(t JSON) RETURNS JSON",
        "area": "(s JSON) RETURNS DOUBLE",
        "echo_shape": "(s JSON) RETURNS JSON",
        "next_color": "(c TEXT) RETURNS TEXT",
        "echo_perms": "(p JSON) RETURNS JSON",
        "echo_num": "(n JSON) RETURNS JSON",
        "many": "("
        + ", ".join(f"a{i} INTEGER" for i in range(1, 17))
        + ", tail TEXT) RETURNS JSON",
        "noop": "() RETURNS VOID",
        "hello": "() RETURNS VOID",
    }
    option = types.check("maybe_double", None)
    assert option.called_on_null_input and option.nullable_params == frozenset({0})
    assert not types.check("echo-s32", None).called_on_null_input
    assert (
        split.check("split_str", None).render()
        == "(s TEXT, delimiter TEXT) RETURNS TABLE(str TEXT, idx INTEGER)"
    )
    assert split.check("power-of", None) == split.check("power_of", None)


def test_a_declared_signature_must_match_the_wit(
    types: SingleStoreModule, split: SingleStoreModule
) -> None:
    text, json_ = Column("s", SqlType.TEXT), Column("s", SqlType.JSON)
    # TEXT and JSON are interchangeable; the declared names and types win.
    sig = types.check("echo-string", Signature((json_,), SqlType.JSON))
    assert sig.render() == "(s JSON) RETURNS JSON"
    assert types.check("echo-shape", Signature((text,), SqlType.TEXT)).returns is SqlType.TEXT
    with pytest.raises(h.AbiError) as err:
        types.check("echo-s32", Signature((Column("x", SqlType.BIGINT),), SqlType.BIGINT))
    assert str(err.value) == (
        "abi-error: the WIT function `echo-s32: func(x: s32) -> s32` has the SQL signature "
        "(x INTEGER) RETURNS INTEGER, which does not match the declared (x BIGINT) RETURNS BIGINT"
    )
    with pytest.raises(h.AbiError, match="does not match"):
        split.check("split-str", Signature((text, text), SqlType.TEXT))
    with pytest.raises(h.AbiError, match="does not match"):
        types.check("noop", Signature((), SqlType.BIGINT))
    table = (Column("piece", SqlType.TEXT), Column("at", SqlType.INTEGER))
    assert split.check("split-str", Signature((text, text), table=table)).table == table
    with pytest.raises(h.AbiError, match="CALLED ON NULL INPUT"):
        types.check(
            "echo-s32",
            Signature((Column("x", SqlType.INTEGER),), SqlType.INTEGER, called_on_null_input=True),
        )


def test_unknown_and_unexported_functions(runtime: Runtime, types: SingleStoreModule) -> None:
    with pytest.raises(h.AbiError, match="exports no function 'nope'"):
        types.check("nope", None)
    wit = (EXAMPLES / "split.wit").read_text() + "\nmissing-one: func() -> s32\n"
    module = load(runtime, "split", wit=wit)
    with pytest.raises(
        h.AbiError, match="declares 'missing_one', but the module does not export it"
    ):
        module.check("missing_one", None)


def test_nested_options_have_no_sql_form(runtime: Runtime) -> None:
    wat = '(module (func (export "f") (param i32 i32 i32) (result i32) (i32.const 0)))'
    module = load(runtime, "inline", wit="f: func(x: option<option<s32>>) -> s32", wat=wat)
    with pytest.raises(h.AbiError, match=r"option<option<s32>> has no SQL or JSON form"):
        module.check("f", None)


# --- values, every type ---------------------------------------------------------------

EXTREMES = [
    ("echo-u8", 0),
    ("echo-u8", 255),
    ("echo-s8", -128),
    ("echo-s8", 127),
    ("echo-u16", 65535),
    ("echo-s16", -32768),
    ("echo-s16", 32767),
    ("echo-u32", 0),
    ("echo-u32", 2**32 - 1),
    ("echo-s32", -(2**31)),
    ("echo-s32", 2**31 - 1),
    ("echo-u64", 0),
    ("echo-u64", 2**63 - 1),
    ("echo-s64", -(2**63)),
    ("echo-s64", 2**63 - 1),
]


def test_integers_round_trip_at_their_extremes(guest: Guest) -> None:
    for export, value in EXTREMES:
        assert guest(export, value) == value, export


@pytest.mark.parametrize(
    ("export", "value"),
    [
        ("echo-u8", 256),
        ("echo-u8", -1),
        ("echo-s8", 128),
        ("echo-u16", -1),
        ("echo-s16", 40000),
        ("echo-u32", -1),
        ("echo-u64", -1),
    ],
)
def test_integers_out_of_range_are_refused_before_the_guest_runs(
    guest: Guest, export: str, value: int
) -> None:
    with pytest.raises(h.InvalidArgument, match="out of range"):
        guest(export, value)
    assert not guest.poisoned


def test_u64_beyond_bigint(guest: Guest, hostile: SingleStoreModule) -> None:
    # JSON carries the whole u64 range; BIGINT cannot, so such a result is an error.
    widths = {
        "a": 255,
        "b": 65535,
        "c": 2**32 - 1,
        "d": 2**64 - 1,
        "e": -128,
        "f": -32768,
        "g": -(2**31),
        "h": -(2**63),
    }
    assert json.loads(guest("echo-widths", json.dumps(widths))) == widths
    bad = Guest(hostile)
    with pytest.raises(
        h.AbiError,
        match="u64-max result: the u64 value 18446744073709551615 does not fit in BIGINT",
    ):
        bad("u64-max")
    assert not bad.poisoned  # the call itself was sound


def test_bool_and_floats(guest: Guest) -> None:
    assert guest("echo-bool", True) is True
    assert guest("echo-bool", False) is False
    assert guest("echo-f64", 0.1) == 0.1
    assert guest("echo-f64", math.inf) == math.inf
    assert guest("echo-f64", -math.inf) == -math.inf
    assert math.isnan(guest("echo-f64", math.nan))
    assert math.copysign(1, guest("echo-f64", -0.0)) == -1
    assert guest("echo-f32", 1.5) == 1.5
    assert guest("echo-f32", 0.1) == pytest.approx(0.1) and guest("echo-f32", 0.1) != 0.1  # float32
    assert guest("echo-f32", 1e300) == math.inf  # beyond float32: infinity, as a cast would
    assert math.isnan(guest("echo-f32", math.nan))


def test_chars(guest: Guest) -> None:
    for ch in ("a", "é", "✓", "😀", "\x00"):
        assert guest("echo-char", ch) == ch
    for bad in ("", "ab", "\ud800"):
        with pytest.raises(h.InvalidArgument, match=r"exactly one Unicode scalar value|surrogate"):
            guest("echo-char", bad)


def test_strings_and_bytes(guest: Guest) -> None:
    for text in ("", "hello", "héllo wörld ✓ 😀", "nul\x00inside", "x" * 100_000):
        assert guest("echo-string", text) == text
    for blob in (b"", b"\x00\xff\x00", bytes(range(256)) * 100):
        assert guest("echo-bytes", blob) == blob
    assert json.loads(guest("echo-strings", json.dumps(["a", "", "ü😀"]))) == ["a", "", "ü😀"]
    assert guest("echo-strings", "[]") == "[]"
    with pytest.raises(h.InvalidArgument, match="lone surrogate"):
        guest("echo-string", "\ud800")


def test_records_as_json(guest: Guest) -> None:
    ann = {"name": "Ann", "age": 42, "tags": ["x", "yz", ""], "nick_name": "an"}
    assert json.loads(guest("echo-person", json.dumps(ann))) == ann
    # Either spelling of a field name; a missing option is none (null).
    bob = guest("echo-person", '{"name": "Bob", "age": 7, "tags": [], "nick-name": null}')
    assert bob == '{"name":"Bob","age":7,"tags":[],"nick_name":null}'
    assert guest("echo-person", '{"name": "Cy", "age": 1, "tags": ["t"]}').endswith(
        '"nick_name":null}'
    )
    for bad, fragment in [
        ('{"name": "x", "age": 1, "tags": [], "extra": 1}', "has no field 'extra'"),
        ('{"age": 1, "tags": []}', "needs field 'name'"),
        ('{"name": "x", "age": 300, "tags": []}', "argument p.age: 300 is out of range for u8"),
        ('{"name": "x", "age": 1, "tags": [1]}', "argument p.tags[0]: expected text"),
        ("[1, 2]", "expected an object for record person"),
        ("{not json", "not valid JSON"),
        ('{"name": "x", "age": 1e400, "tags": []}', "expected an integer"),
    ]:
        with pytest.raises(h.InvalidArgument) as err:
            guest("echo-person", bad)
        assert fragment in err.value.message
    assert not guest.poisoned


def test_json_nested_too_deep_is_an_argument_error(guest: Guest) -> None:
    # Declared TEXT, so only this ABI parses it (values.check_json would
    # meet the same text for a JSON parameter).
    sig = guest.module.check("echo-person", Signature((Column("p", SqlType.TEXT),), SqlType.TEXT))
    with pytest.raises(h.InvalidArgument, match="not valid JSON"):
        guest.runner("echo-person", sig).call(["[" * 100_000])
    assert not guest.poisoned


def test_options(guest: Guest) -> None:
    assert guest("maybe-double", None) is None
    assert guest("maybe-double", 21) == 42
    assert guest("maybe-double", -(2**62)) == -(2**63)
    assert guest("option-len", None) is None
    assert guest("option-len", "") == 0
    assert guest("option-len", "héllo") == 6  # bytes of UTF-8


def test_expected_ok_and_err(guest: Guest) -> None:
    assert guest("safe-div", 7, 2) == 3
    with pytest.raises(h.UserError) as err:
        guest("safe-div", 1, 0)
    assert (err.value.user_code, err.value.message) == ("error", "division by zero")
    assert not guest.poisoned and guest.live() == 0  # the error text was freed
    assert guest("classify", 5) is None  # expected<_, E>: VOID
    with pytest.raises(h.UserError) as err:
        guest("classify", -2)
    assert (err.value.user_code, err.value.message) == ("green", "green")
    assert guest("check-even", 4) is None
    with pytest.raises(h.UserError, match="returned an error"):
        guest("check-even", 3)


@pytest.fixture(scope="module")
def round_trips(types: SingleStoreModule) -> Guest:
    return Guest(types)


_PEOPLE = st.fixed_dictionaries(
    {
        "name": st.text(),
        "age": st.integers(0, 255),
        "tags": st.lists(st.text(), max_size=4),
        "nick_name": st.one_of(st.none(), st.text()),
    }
)
_SHAPES = st.one_of(
    st.builds(lambda r: {"circle": r}, st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(
        lambda w, h: {"rect": [w, h]},
        st.floats(width=32, allow_nan=False, allow_infinity=False),
        st.floats(width=32, allow_nan=False, allow_infinity=False),
    ),
    st.just({"point": None}),
)


@settings(max_examples=150, deadline=None)
@given(person=_PEOPLE, shape=_SHAPES, words=st.lists(st.text(), max_size=6))
def test_any_value_round_trips_through_guest_memory(
    round_trips: Guest, person: dict[str, Any], shape: dict[str, Any], words: list[str]
) -> None:
    """Records with nested buffers, variants with joined float slots and
    lists of strings, lowered into the guest and lifted back by the core:
    the value that comes back is the one that went in, and every buffer
    is freed on both sides."""
    g = round_trips
    assert json.loads(g("echo-person", json.dumps(person))) == person
    assert json.loads(g("echo-shape", json.dumps(shape))) == shape
    assert json.loads(g("echo-strings", json.dumps(words))) == words
    assert g.live() == 0


def test_tuples_variants_enums_flags_unions(guest: Guest) -> None:
    assert guest("swap", '["x", 3]') == '[3,"x"]'
    assert guest("area", '{"circle": 2}') == pytest.approx(math.pi * 4)
    assert guest("area", '{"rect": [3, 4.5]}') == 13.5
    assert guest("area", '"point"') == 0.0
    for shape in (
        '{"circle":2.5}',
        '{"rect":[1.5,-2.0]}',
        '{"point":null}',
        '{"circle":"-Infinity"}',
    ):
        assert guest("echo-shape", shape) == shape
    assert guest("next-color", "blue") == "red"
    assert guest("next-color", "red") == "green"
    with pytest.raises(h.InvalidArgument, match="'purple' is not a case of color"):
        guest("next-color", "purple")
    assert guest("echo-perms", '["exec", "read"]') == '["read","exec"]'
    assert guest("echo-perms", "[]") == "[]"
    assert guest("echo-num", '{"0": -5}') == '{"0":-5}'
    assert guest("echo-num", '{"1": "five"}') == '{"1":"five"}'
    with pytest.raises(h.InvalidArgument, match="too large for float64"):
        guest("echo-shape", '{"circle": ' + "9" * 400 + "}")
    for bad in ('{"square": 1}', '{"circle": 1, "point": null}', "3"):
        with pytest.raises(h.InvalidArgument):
            guest("echo-shape", bad)


def test_more_than_16_flat_parameters_go_through_memory(guest: Guest) -> None:
    # The host allocates the parameter tuple, the guest frees it; the
    # tuple<s64, string> result comes back through the return area.
    assert guest("many", *range(1, 17), "tail ✓") == '[136,"tail ✓"]'
    assert guest("many", *([-(2**31)] * 16), "") == f'[{-(2**31) * 16},""]'


def test_buffers_are_allocated_and_freed_in_wit_bindgens_order(guest: Guest) -> None:
    guest.trace()
    guest("echo-strings", '["ab", "", "cde"]')
    # The element array first, then each string (even an empty one); back
    # from the guest, each string as it is read, then the array.
    assert guest.trace() == [
        ("realloc", 24, 4),
        ("realloc", 2, 1),
        ("realloc", 0, 1),
        ("realloc", 3, 1),
        ("free", 2, 1),
        ("free", 0, 1),
        ("free", 3, 1),
        ("free", 24, 4),
    ]
    guest("many", *range(16), "xy")
    # The parameter tuple, then what it points to; the guest frees the tuple.
    assert guest.trace() == [("realloc", 72, 4), ("realloc", 2, 1), ("free", 2, 1)]
    guest("echo-person", '{"name": "n", "age": 1, "tags": ["t"], "nick_name": "k"}')
    assert guest.trace() == [
        ("realloc", 1, 1),  # name
        ("realloc", 8, 4),  # tags
        ("realloc", 1, 1),  # tags[0]
        ("realloc", 1, 1),  # nick_name
        ("free", 1, 1),
        ("free", 1, 1),
        ("free", 8, 4),
        ("free", 1, 1),
    ]


def test_void_and_wasi_output(guest: Guest) -> None:
    assert guest("noop") is None
    assert guest("hello") is None
    assert [r.message for r in guest.session.logs] == ["hello from wasi"]


def test_initialize_runs_once_per_instance(types: SingleStoreModule) -> None:
    first = Guest(types)
    for _ in range(5):
        first("noop")
    assert first("init-count") == 1
    second = Guest(types)
    assert second("init-count") == 1


# --- SingleStore's documented examples ---------------------------------------------------


def test_power_of_and_split_str_as_documented(split: SingleStoreModule) -> None:
    g = Guest(split)
    assert g("power-of", 2, 10) == 1024
    assert g("power-of", 3, 0) == 1
    assert g("power-of", -2, 3) == -8
    assert g("power-of", 2, 31) == -(2**31)  # wraps, as the release build does
    assert g("split-str", "hello world foo", " ") == [("hello", 0), ("world", 6), ("foo", 12)]
    assert g("split-str", "a, b, c", ", ") == [("a", 0), ("b", 3), ("c", 6)]
    assert g("split-str", "añb", "ñ") == [("a", 0), ("b", 3)]  # byte offsets
    assert g("split-str", "no delimiter", ",") == [("no delimiter", 0)]
    assert g("split-str", ",,", ",") == [("", 0), ("", 1), ("", 2)]
    assert g("split-str", "", ",") == [("", 0)]
    assert g.live() == 0


def test_split_str_is_a_table_function(split: SingleStoreModule) -> None:
    run = runner(split, "split-str")
    assert run.signature.table == (Column("str", SqlType.TEXT), Column("idx", SqlType.INTEGER))
    assert run.call(["a b", " "]) == [("a", 0), ("b", 2)]
    assert run.call([None, " "]) == []  # strict: NULL in, no rows, guest not run
    assert run.idle_instances() == 1


def test_guest_memory_stays_flat_over_100k_calls(split: SingleStoreModule) -> None:
    g = Guest(split)
    rows = [("a", 0), ("b", 2), ("c", 4)]
    run = g.runner("split-str")
    for i in range(100_000):
        result = run.call(["a,b,c", ","])
        if i % 20_000 == 0:
            assert result == rows
            assert g.live() == 0
    # One instance served every call, its allocator back where it started.
    assert g.live() == 0 and g("init-count") == 1
    assert run.numeric().instantiated == 1


def test_a_numeric_module_takes_the_fast_path(runtime: Runtime) -> None:
    module = load(runtime, "split", wit="power-of: func(base: s32, exp: s32) -> s32")
    assert module.pure
    run = runner(module, "power_of")
    assert run._fast
    slow = Guest(module)
    for base, exp in [(2, 10), (-3, 3), (2, 31), (7, 0), (2**31 - 1, 2)]:
        assert run.call([base, exp]) == slow("power-of", base, exp)
    assert run.call([None, 2]) is None
    with pytest.raises(h.InvalidArgument):
        run.call([2**31, 1])
    # Anything that needs the Canonical ABI's conversions stays off it.
    assert not load(runtime, "split").pure
    assert not load(runtime, "split", wit="live-allocations: func() -> u32").pure


def test_nulls_through_the_runner(runtime: Runtime, types: SingleStoreModule) -> None:
    assert runner(types, "maybe-double").call([None]) is None
    assert runner(types, "maybe-double").call([4]) == 8
    assert runner(types, "option_len").call([None]) is None
    assert runner(types, "safe-div").call([None, 1]) is None  # strict: guest not run
    wat = '(module (func (export "f") (param i32 i32 i32) (result i32) (local.get 0)))'
    module = load(runtime, "inline", wit="f: func(a: option<s32>, b: s32) -> s32", wat=wat)
    with pytest.raises(h.InvalidArgument, match="argument b may not be NULL"):
        runner(module, "f").call([1, None])


# --- hostile modules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("export", "fragment"),
    [
        (
            "oob-pointer",
            "oob-pointer: a returned string at 0x7ffffff0 of 4 bytes is outside linear memory (262144 bytes)",
        ),
        ("oob-length", "is outside linear memory"),
        ("oob-return-area", "the return area at 0xfffffffc of 8 bytes is outside linear memory"),
        (
            "huge-list",
            "a returned list<string> at 0x1000 of 4294967296 bytes is outside linear memory",
        ),
        ("bad-utf8", "bad-utf8: a returned string is not valid UTF-8"),
        ("bad-bool", "bad-bool: invalid bool 2"),
        ("bad-u8", "bad-u8: 300 is out of range for u8"),
        ("bad-s8", "bad-s8: 200 is out of range for s8"),
        ("bad-char", "bad-char: invalid char 0xd800"),
        ("bad-enum", "bad-enum: invalid discriminant 7 for color"),
        ("bad-flags", "bad-flags: flags perms has bits set beyond its 3 flags"),
        ("bad-option", "bad-option: invalid discriminant 5 for option<s64>"),
    ],
)
def test_lying_results_are_typed_abi_errors(
    hostile: SingleStoreModule, export: str, fragment: str
) -> None:
    g = Guest(hostile)
    with pytest.raises(h.AbiError) as err:
        g(export)
    assert fragment in err.value.message
    assert g.poisoned  # its buffers were not freed: never reused
    assert Guest(hostile)("ok-string") == "ok"


def test_a_result_too_big_to_copy_is_a_limit(hostile: SingleStoreModule) -> None:
    g = Guest(hostile)
    with pytest.raises(h.ResourceLimitExceeded) as err:
        g("list-bomb")
    assert err.value.limit == "max_result_bytes"


@pytest.mark.parametrize(
    ("mode", "export", "error", "fragment"),
    [
        (
            1,
            "take",
            h.ResourceLimitExceeded,
            "canonical_abi_realloc returned 0 for a string (3 bytes)",
        ),
        (
            2,
            "take",
            h.AbiError,
            "canonical_abi_realloc returned 0xfffffff0 for a string (3 bytes), outside linear memory",
        ),
        (3, "take", h.ProcedureTrap, "unreachable"),
        (4, "ok-string", h.ProcedureTrap, "unreachable"),  # a trap in canonical_abi_free
    ],
)
def test_a_misbehaving_allocator(
    hostile: SingleStoreModule, mode: int, export: str, error: type[h.ProcedureError], fragment: str
) -> None:
    g = Guest(hostile)
    assert g("take", "abc") == 3
    g("set-mode", mode)
    args = ["abc"] if export == "take" else []
    with pytest.raises(error) as err:
        g(export, *args)
    assert fragment in err.value.message
    assert g.poisoned


def test_traps_and_limits(hostile: SingleStoreModule) -> None:
    g = Guest(hostile)
    with pytest.raises(h.ProcedureTrap, match="unreachable"):
        g("trap")
    assert g.poisoned
    with pytest.raises(h.ResourceLimitExceeded) as err:
        Guest(hostile, limits=Limits(fuel=100_000))("spin")
    assert err.value.limit == "fuel"
    with pytest.raises(h.ResourceLimitExceeded) as err:
        Guest(hostile, limits=Limits(timeout_seconds=0.2))("spin")
    assert err.value.limit == "timeout"


def test_modules_that_do_not_fit_are_refused_at_load(runtime: Runtime) -> None:
    wasm = wasmtime.wat2wasm((EXAMPLES / "split.wat").read_text())
    with pytest.raises(h.AbiError, match="needs its WIT file"):
        SingleStoreModule(runtime, sha256_hex(wasm), wasm, None)
    with pytest.raises(h.AbiError) as err:
        load(runtime, "split", wit="power-of: func(base: s64, exp: s32) -> s32")
    assert err.value.message == (
        "export power-of has type (i32, i32) -> (i32), but the WIT "
        "`power-of: func(base: s64, exp: s32) -> s32` needs (i64, i32) -> (i32)"
    )
    with pytest.raises(
        h.AbiError,
        match=r"has type \(i32, i32, i32, i32\) -> \(i32\), but .* needs \(i32, i32\) -> \(i32\)",
    ):
        load(runtime, "split", wit="split-str: func(s: string) -> list<string>")
    with pytest.raises(h.AbiError, match="exports none of the WIT's functions"):
        load(runtime, "split", wit="other: func()")
    with pytest.raises(h.AbiError, match="must export canonical_abi_realloc"):
        load(
            runtime,
            "inline",
            wit="take: func(s: string) -> u32",
            wat='(module (memory (export "memory") 1) (func (export "take") (param i32 i32) (result i32) (local.get 1)))',
        )
    with pytest.raises(
        h.AbiError, match=r"canonical_abi_realloc has type \(i32, i32\) -> \(i32\), expected"
    ):
        load(
            runtime,
            "inline",
            wit="f: func() -> s32",
            wat='(module (func (export "canonical_abi_realloc") (param i32 i32) (result i32) (i32.const 0))'
            ' (func (export "f") (result i32) (i32.const 0)))',
        )
    with pytest.raises(h.AbiError, match="may only import wasi_snapshot_preview1"):
        load(
            runtime,
            "inline",
            wit="f: func() -> s32",
            wat='(module (import "env" "abort" (func)) (func (export "f") (result i32) (i32.const 0)))',
        )
    with pytest.raises(h.AbiError, match="WIT 1:9"):
        load(runtime, "split", wit="f: func(")


def test_an_initializer_that_traps_is_refused(runtime: Runtime) -> None:
    module = load(
        runtime,
        "inline",
        wit="f: func() -> s32",
        wat='(module (func (export "_initialize") unreachable) (func (export "f") (result i32) (i32.const 0)))',
    )
    with pytest.raises(h.ProcedureTrap):
        module.verify(TEST_LIMITS, Capabilities())


# --- a WASI guest's numeric functions, run whole in the core --------------------------------


def test_a_wasi_guests_numeric_functions_run_whole_in_the_core(tmp_path: Path) -> None:
    """A module wit-bindgen built for wasm32-wasi imports WASI, so it has no
    import-free fast path; its functions of numbers and strings run whole in
    the core (canonical.rs, on the module's WASI-linked pool) instead of
    Python, with the same results, NULL rule, errors and output."""
    wasm = base64.b64encode(
        wasmtime.wat2wasm((FIXTURES / "singlestore" / "types.wat").read_text())
    ).decode()
    wit = base64.b64encode((FIXTURES / "singlestore" / "types.wit").read_bytes()).decode()
    db = h.Database.open(str(tmp_path / "w.db"), limits=TEST_LIMITS)
    for name in ("echo_s64", "echo_f32", "echo_s32", "hello", "echo_string"):
        db.execute(
            f"CREATE FUNCTION {name} AS WASM FROM BASE64 '{wasm}' WITH WIT FROM BASE64 '{wit}'"
        )
    db.execute("CREATE TABLE t(x)")
    db.execute("INSERT INTO t VALUES (1), (-9223372036854775808), (NULL), (9223372036854775807)")
    assert db.execute("SELECT echo_s64(x) FROM t").rows == [
        (1,),
        (-(2**63),),
        (None,),  # RETURNS NULL ON NULL INPUT
        (2**63 - 1,),
    ]
    assert db.execute("SELECT echo_f32(1.5), echo_s32(-7)").rows == [(1.5, -7)]
    with pytest.raises(h.InvalidArgument, match="out of range for INTEGER"):
        db.execute("SELECT echo_s32(4294967296)")
    # SingleStore's DDL grants nothing: the guest's stdout is not captured.
    assert db.execute("SELECT hello()").scalar() is None
    assert db.logs("hello") == []
    for name in ("echo_s64", "echo_f32", "echo_s32", "hello"):
        runner = db._runner(name)
        assert isinstance(runner._numeric, _core.Numeric), name  # the core's
        assert name in db._scalars  # SQLite calls it in the core
    # Strings in and out are the core's too (canonical.rs), and so is a
    # list of strings (JSON in SQL).
    assert db.execute("SELECT echo_string('héllo')").scalar() == "héllo"
    assert isinstance(db._runner("echo_string")._numeric, _core.Numeric)
    db.execute(
        f"CREATE FUNCTION echo_strings AS WASM FROM BASE64 '{wasm}' WITH WIT FROM BASE64 '{wit}'"
    )
    assert db.execute("""SELECT echo_strings('["a", "b"]')""").scalar() == '["a","b"]'
    assert isinstance(db._runner("echo_strings")._numeric, _core.Numeric)


def test_a_wasi_guests_numeric_function_fails_as_any_call(tmp_path: Path) -> None:
    """On the core's hosted path a WASI guest's trap is typed with its
    backtrace, a runaway loop ends at the fuel limit, and the next call
    gets a fresh instance."""
    wat = """(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "canonical_abi_realloc") (param i32 i32 i32 i32) (result i32) unreachable)
      (func (export "canonical_abi_free") (param i32 i32 i32))
      (func $boom (export "boom") (param $x i64) (result i64)
        (if (i64.eq (local.get $x) (i64.const 0)) (then unreachable))
        (local.get $x))
      (func (export "spin") (param $x i64) (result i64)
        (loop $l (br $l))
        (local.get $x)))"""
    wit = b"boom: func(x: s64) -> s64\nspin: func(x: s64) -> s64\n"
    db = h.Database.open(str(tmp_path / "f.db"), limits=TEST_LIMITS.with_overrides(fuel=1_000_000))
    wasm = base64.b64encode(wasmtime.wat2wasm(wat)).decode()
    for name in ("boom", "spin"):
        db.execute(
            f"CREATE FUNCTION {name} AS WASM FROM BASE64 '{wasm}'"
            f" WITH WIT FROM BASE64 '{base64.b64encode(wit).decode()}'"
        )
    with pytest.raises(h.ProcedureTrap, match="unreachable") as err:
        db.execute("SELECT boom(0)")
    assert err.value.procedure == "boom" and "boom" in err.value.stack()
    assert db.execute("SELECT boom(7)").scalar() == 7
    with pytest.raises(h.ResourceLimitExceeded) as limit:
        db.execute("SELECT spin(1)")
    assert limit.value.limit == "fuel"
    assert isinstance(db._runner("boom")._numeric, _core.Numeric)


# --- the core's Canonical ABI (canonical.rs): from SQL and from a Runner alike ----------


def _core_db(tmp_path: Path, name: str, limits: Limits = TEST_LIMITS) -> h.Database:
    """A database with every function of tests/fixtures/singlestore/<name>."""
    folder = FIXTURES / "singlestore"
    wasm = wasmtime.wat2wasm((folder / f"{name}.wat").read_text())
    wit = (folder / f"{name}.wit").read_text()
    db = h.Database.open(str(tmp_path / f"{name}.db"), limits=limits)
    for fn in SingleStoreModule(db.runtime, sha256_hex(wasm), wasm, wit).functions.values():
        db.execute(
            f"CREATE FUNCTION {fn.sql_name} AS WASM FROM BASE64 '{base64.b64encode(wasm).decode()}'"
            f" WITH WIT FROM BASE64 '{base64.b64encode(wit.encode()).decode()}'"
        )
    return db


@pytest.mark.parametrize(
    "export", ["oob-pointer", "oob-length", "oob-return-area", "bad-utf8", "trap", "ok-string"]
)
def test_sql_and_a_runner_fail_alike(
    hostile: SingleStoreModule, tmp_path: Path, export: str
) -> None:
    """The same hostile function called by a Runner (as Database.call does)
    and by SQLite (the core's binding): the same result, or the same typed
    error with the same message."""
    db = _core_db(tmp_path, "hostile")
    name = export.replace("-", "_")
    assert db._runner(name)._canonical
    try:
        expected: Any = Guest(hostile)(export)
    except h.ProcedureError as exc:
        expected = exc
    if isinstance(expected, h.ProcedureError):
        with pytest.raises(h.ProcedureError) as err:
            db.execute(f"SELECT {name}()")
        assert type(err.value) is type(expected)
        assert err.value.message == expected.message
        assert err.value.procedure == name
    else:
        assert db.execute(f"SELECT {name}()").scalar() == expected
    assert db.execute("SELECT ok_string()").scalar() == "ok"  # a fresh instance if poisoned


def test_the_core_holds_results_to_max_result_bytes(
    types: SingleStoreModule, tmp_path: Path
) -> None:
    limits = TEST_LIMITS.with_overrides(max_result_bytes=100)
    db = _core_db(tmp_path, "types", limits)
    with pytest.raises(h.ResourceLimitExceeded) as runner_error:
        Guest(types, limits=limits)("echo-string", "x" * 200)
    with pytest.raises(h.ResourceLimitExceeded) as core:
        db.execute("SELECT echo_string(?)", ["x" * 200])
    assert core.value.limit == runner_error.value.limit == "max_result_bytes"
    assert core.value.message == runner_error.value.message
    assert db.execute("SELECT echo_string(?)", ["x" * 80]).scalar() == "x" * 80
    assert db.execute("SELECT echo_bytes(?)", [b"\x00\xff"]).scalar() == b"\x00\xff"
    assert db.execute("SELECT echo_string('')").scalar() == ""


def test_the_core_refuses_oversized_arguments_before_the_guest_runs(tmp_path: Path) -> None:
    limits = TEST_LIMITS.with_overrides(max_arg_bytes=100)
    db = _core_db(tmp_path, "types", limits)
    assert db.execute("SELECT echo_string(?)", ["x" * 90]).scalar() == "x" * 90
    made = db._runner("echo_string").numeric().instantiated  # the module's pool
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT echo_string(?)", ["x" * 200])
    assert err.value.limit == "max_arg_bytes" and "200 bytes" in err.value.message
    assert err.value.procedure == "echo_string"
    # Refused before an instance was taken: the pooled one serves the next.
    assert db.execute("SELECT echo_string(?)", ["x" * 90]).scalar() == "x" * 90
    assert db._runner("echo_string").numeric().instantiated == made


_ALLOCATOR = """(module
  (memory (export "memory") 1)
  (func (export "canonical_abi_realloc") (param i32 i32 i32 i32) (result i32) {realloc})
  (func (export "canonical_abi_free") (param i32 i32 i32))
  (func (export "take") (param i32 i32) (result i32) (local.get 1)))"""


@pytest.mark.parametrize(
    ("realloc", "error", "fragment"),
    [
        ("(i32.const 0)", h.ResourceLimitExceeded, "returned 0 for a string (3 bytes)"),
        ("(i32.const -16)", h.AbiError, "returned 0xfffffff0 for a string (3 bytes), outside"),
        ("unreachable", h.ProcedureTrap, "unreachable"),
    ],
)
def test_the_core_survives_a_misbehaving_allocator(
    tmp_path: Path, realloc: str, error: type[h.ProcedureError], fragment: str
) -> None:
    wat = _ALLOCATOR.format(realloc=realloc)
    wit = "take: func(s: string) -> s32\n"
    db = h.Database.open(str(tmp_path / "a.db"), limits=TEST_LIMITS)
    db.execute(
        f"CREATE FUNCTION take AS WASM FROM BASE64 '{base64.b64encode(wasmtime.wat2wasm(wat)).decode()}'"
        f" WITH WIT FROM BASE64 '{base64.b64encode(wit.encode()).decode()}'"
    )
    assert db._runner("take")._canonical
    wasm = wasmtime.wat2wasm(wat)
    with pytest.raises(error) as runner_error:
        Guest(SingleStoreModule(db.runtime, sha256_hex(wasm), wasm, wit))("take", "abc")
    with pytest.raises(error) as core:
        db.execute("SELECT take('abc')")
    assert fragment in core.value.message
    assert core.value.message == runner_error.value.message
