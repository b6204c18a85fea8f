"""The WIT dialect of wit-bindgen 0.2: the type model with that era's layout
and flattening (wit-parser's SizeAlign, quirks included), and its parser."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..errors import (
    AbiError,
)

ABI = "singlestore"
REALLOC = "canonical_abi_realloc"
FREE = "canonical_abi_free"
# wit-bindgen's abi.rs: MAX_FLAT_PARAMS and MAX_FLAT_RESULTS.
MAX_FLAT_PARAMS = 16
MAX_FLAT_RESULTS = 1

_I64_MAX = 2**63 - 1

# A type as the core takes it (WitType.core).
CoreType = tuple[Any, ...]


def sql_name(wit_name: str) -> str:
    return wit_name.replace("-", "_")


def _align_to(value: int, align: int) -> int:
    return (value + align - 1) & ~(align - 1)


# =============================================================================
# The WIT type model, with wit-bindgen 0.2's layout and flattening
# =============================================================================


class WitType:
    """A resolved WIT type: its memory ``size``/``align`` and ``flat`` core
    value types, computed once when the type is built.

    ``extent`` is how many bytes from its start a stored value may touch:
    its size, except where the variant quirk (module docstring) puts a
    payload past the end. Reads and writes cover the extent, exactly as the
    generated code's loads and stores did, so the quirk never becomes a
    host-side fault.
    """

    size: int
    align: int
    flat: tuple[str, ...]
    extent: int

    def render(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.render()

    @cached_property
    def core(self) -> CoreType:
        """The type as the core takes it (engine/core/src/canonical/types.rs):
        ``(kind, render, size, align, extent, flat, *details)``, with this
        module's layout, so the core never computes one of its own."""
        return (
            self._kind,
            self.render(),
            self.size,
            self.align,
            self.extent,
            self.flat,
            *self._details(),
        )

    _kind = ""

    def _details(self) -> tuple[Any, ...]:
        return ()


# name -> (size, align, flat, struct code for memory)
_PRIMS: dict[str, tuple[int, int, tuple[str, ...], str]] = {
    "unit": (0, 1, (), ""),
    "bool": (1, 1, ("i32",), "B"),
    "u8": (1, 1, ("i32",), "B"),
    "s8": (1, 1, ("i32",), "b"),
    "u16": (2, 2, ("i32",), "H"),
    "s16": (2, 2, ("i32",), "h"),
    "u32": (4, 4, ("i32",), "I"),
    "s32": (4, 4, ("i32",), "i"),
    "char": (4, 4, ("i32",), "I"),
    "float32": (4, 4, ("f32",), "f"),
    "u64": (8, 8, ("i64",), "Q"),
    "s64": (8, 8, ("i64",), "q"),
    "float64": (8, 8, ("f64",), "d"),
    "string": (8, 4, ("i32", "i32"), ""),
}
_INT_RANGES = {
    "u8": (0, 2**8 - 1),
    "s8": (-(2**7), 2**7 - 1),
    "u16": (0, 2**16 - 1),
    "s16": (-(2**15), 2**15 - 1),
    "u32": (0, 2**32 - 1),
    "s32": (-(2**31), 2**31 - 1),
    "u64": (0, 2**64 - 1),
    "s64": (-(2**63), 2**63 - 1),
}


class Prim(WitType):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.size, self.align, self.flat, self.code = _PRIMS[kind]
        self.extent = self.size
        self._kind = kind

    def render(self) -> str:
        return self.kind


UNIT = Prim("unit")


class ListType(WitType):
    def __init__(self, element: WitType) -> None:
        self.element = element
        self.size, self.align, self.flat = 8, 4, ("i32", "i32")
        self.extent = 8

    _kind = "list"

    def _details(self) -> tuple[Any, ...]:
        return (self.element.core,)

    def render(self) -> str:
        return f"list<{self.element.render()}>"


def _record_layout(types: Sequence[WitType]) -> tuple[int, int, tuple[int, ...], int]:
    """SizeAlign::record and field_offsets: each field at its own alignment,
    the size rounded up to the largest; and the extent."""
    size, align, offsets, extent = 0, 1, [], 0
    for t in types:
        size = _align_to(size, t.align)
        offsets.append(size)
        extent = max(extent, size + t.extent)
        size += t.size
        align = max(align, t.align)
    size = _align_to(size, align)
    return size, align, tuple(offsets), max(size, extent)


class TupleType(WitType):
    def __init__(self, items: Sequence[WitType]) -> None:
        self.items = tuple(items)
        self.size, self.align, self.offsets, self.extent = _record_layout(self.items)
        self.flat = tuple(f for t in self.items for f in t.flat)

    _kind = "tuple"

    def _details(self) -> tuple[Any, ...]:
        return (tuple((t.core, o) for t, o in zip(self.items, self.offsets, strict=True)),)

    def render(self) -> str:
        return f"tuple<{', '.join(t.render() for t in self.items)}>"


class RecordType(WitType):
    def __init__(self, name: str, fields: Sequence[tuple[str, WitType]]) -> None:
        self.name = name
        self.fields = tuple(fields)
        self.size, self.align, self.offsets, self.extent = _record_layout(
            [t for _, t in self.fields]
        )
        self.flat = tuple(f for _, t in self.fields for f in t.flat)
        self.layout = tuple((t, o) for (_, t), o in zip(self.fields, self.offsets, strict=True))

    _kind = "record"

    def _details(self) -> tuple[Any, ...]:
        fields = zip(self.fields, self.offsets, strict=True)
        return (tuple((sql_name(f), t.core, o) for (f, t), o in fields),)

    def render(self) -> str:
        return self.name


class FlagsType(WitType):
    def __init__(self, name: str, flags: Sequence[str]) -> None:
        self.name = name
        self.flags = tuple(flags)
        n = len(self.flags)
        # FlagsRepr: U8 up to 8 flags, U16 up to 16, else n/32 u32 words.
        self.words = 1 if n <= 16 else (n + 31) // 32
        self.code = "B" if n <= 8 else "H" if n <= 16 else "I"
        self.size = 1 if n <= 8 else 2 if n <= 16 else 4 * self.words
        self.align = min(self.size, 4)
        self.extent = self.size
        self.flat = ("i32",) * self.words

    _kind = "flags"

    def _details(self) -> tuple[Any, ...]:
        return (tuple(sql_name(f) for f in self.flags), self.words)

    def render(self) -> str:
        return self.name


def _join(a: str, b: str) -> str:
    """abi.rs `join`: the core type one flat slot has when two cases share it."""
    if a == b:
        return a
    if {a, b} == {"i32", "f32"}:
        return "i32"
    return "i64"


def _tag_size(cases: int) -> int:
    # Variant::tag: u8 up to 255 cases (u8::max_value()), then u16, then u32.
    return 1 if cases <= 0xFF else 2 if cases <= 0xFFFF else 4


_TAG_CODE = {1: "B", 2: "H", 4: "I"}


class _Cases(WitType):
    """What variant, union, option, expected and enum share: a discriminant of
    ``tag_size`` bytes in memory (an i32 when flat) and one payload per case,
    all at ``payload_offset``; flat, the payloads share joined slots."""

    payloads: tuple[WitType, ...]
    count: int
    tag_size: int
    payload_offset: int
    joined: tuple[str, ...]

    def _layout(self, payloads: Sequence[WitType], tag_size: int, count: int = 0) -> None:
        self.payloads = tuple(payloads)
        self.count = count or len(self.payloads)
        self.tag_size = tag_size
        # SizeAlign::variant, verbatim (see the module docstring).
        size, align, max_align = tag_size, tag_size, 1
        for t in self.payloads:
            align = max(align, t.align)
            size = max(size, _align_to(tag_size, t.align) + t.size)
            max_align = max(max_align, t.align)
        self.size, self.align = size, align
        self.payload_offset = _align_to(tag_size, max_align)
        self.extent = max([size] + [self.payload_offset + t.extent for t in self.payloads])
        joined: list[str] = []
        for t in self.payloads:
            for i, f in enumerate(t.flat):
                if i < len(joined):
                    joined[i] = _join(joined[i], f)
                else:
                    joined.append(f)
        self.joined = tuple(joined)
        self.flat = ("i32", *joined)

    def case_name(self, index: int) -> str:
        raise NotImplementedError

    def _details(self) -> tuple[Any, ...]:
        payloads = self.payloads or (UNIT,) * self.count
        cases = tuple((self.case_name(i), t.core) for i, t in enumerate(payloads))
        return (cases, self.tag_size, self.payload_offset, self.joined)


class OptionType(_Cases):
    _kind = "option"

    def __init__(self, payload: WitType) -> None:
        self.payload = payload
        self._layout([UNIT, payload], 1)

    def render(self) -> str:
        return f"option<{self.payload.render()}>"

    def case_name(self, index: int) -> str:
        return ("none", "some")[index]


class ExpectedType(_Cases):
    _kind = "expected"

    def __init__(self, ok: WitType, err: WitType) -> None:
        self.ok, self.err = ok, err
        self._layout([ok, err], 1)

    def render(self) -> str:
        return f"expected<{self.ok.render()}, {self.err.render()}>"

    def case_name(self, index: int) -> str:
        return ("ok", "err")[index]


class VariantType(_Cases):
    _kind = "variant"

    def __init__(self, name: str, cases: Sequence[tuple[str, WitType]]) -> None:
        self.name = name
        self.cases = tuple(cases)
        self._layout([t for _, t in self.cases], _tag_size(len(self.cases)))

    def render(self) -> str:
        return self.name

    def case_name(self, index: int) -> str:
        return sql_name(self.cases[index][0])


class UnionType(_Cases):
    _kind = "union"

    def __init__(self, name: str, cases: Sequence[WitType]) -> None:
        self.name = name
        self._layout(cases, _tag_size(len(cases)))

    def render(self) -> str:
        return self.name

    def case_name(self, index: int) -> str:
        return str(index)


class EnumType(_Cases):
    _kind = "enum"

    def __init__(self, name: str, cases: Sequence[str]) -> None:
        self.name = name
        self.cases = tuple(cases)
        self._layout([], _tag_size(len(self.cases)), len(self.cases))

    def render(self) -> str:
        return self.name

    def case_name(self, index: int) -> str:
        return sql_name(self.cases[index])


@dataclass(frozen=True)
class Case:
    """A value of a variant, union or expected: case ``index`` and its payload."""

    index: int
    value: Any = None


@dataclass(frozen=True)
class WitFunction:
    """One WIT function and its core signature under wit-bindgen 0.2's rules."""

    name: str
    params: tuple[tuple[str, WitType], ...]
    result: WitType
    line: int

    @property
    def sql_name(self) -> str:
        return sql_name(self.name)

    @cached_property
    def flat_params(self) -> tuple[str, ...]:
        return tuple(f for _, t in self.params for f in t.flat)

    @cached_property
    def indirect_params(self) -> bool:
        return len(self.flat_params) > MAX_FLAT_PARAMS

    @cached_property
    def retptr(self) -> bool:
        return len(self.result.flat) > MAX_FLAT_RESULTS

    @cached_property
    def core_params(self) -> tuple[str, ...]:
        return ("i32",) if self.indirect_params else self.flat_params

    @cached_property
    def core_results(self) -> tuple[str, ...]:
        return ("i32",) if self.retptr else self.result.flat

    @cached_property
    def params_tuple(self) -> TupleType:
        """The parameters as one tuple: the layout of the >16-value form."""
        return TupleType([t for _, t in self.params])

    @cached_property
    def core(self) -> tuple[str, tuple[tuple[str, CoreType], ...], CoreType, CoreType | None, bool]:
        """The function as the core calls it (engine/core/src/python/
        canonical.rs): its name, each parameter's SQL name and type, the
        result's type, the parameters' tuple when they travel through
        memory, and whether the result does."""
        params = tuple((sql_name(n), t.core) for n, t in self.params)
        indirect = self.params_tuple.core if self.indirect_params else None
        return (self.name, params, self.result.core, indirect, self.retptr)

    def render(self) -> str:
        params = ", ".join(f"{n}: {t.render()}" for n, t in self.params)
        result = "" if self.result is UNIT else f" -> {self.result.render()}"
        return f"{self.name}: func({params}){result}"


@dataclass(frozen=True)
class WitDocument:
    functions: dict[str, WitFunction]
    types: dict[str, WitType]


# =============================================================================
# The WIT parser (the old dialect of wit-bindgen 0.2)
# =============================================================================


class WitSyntaxError(AbiError):
    """The WIT text is malformed; ``line`` and ``column`` are 1-based."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(f"WIT {line}:{column}: {message}")
        self.line = line
        self.column = column


# The reserved words of that dialect's lexer: a field or function with one of
# these names is written with a leading `%`.
_KEYWORDS = frozenset(
    {
        "use",
        "type",
        "resource",
        "func",
        "u8",
        "u16",
        "u32",
        "u64",
        "s8",
        "s16",
        "s32",
        "s64",
        "float32",
        "float64",
        "char",
        "handle",
        "record",
        "flags",
        "variant",
        "enum",
        "union",
        "bool",
        "string",
        "option",
        "expected",
        "list",
        "as",
        "from",
        "static",
        "interface",
        "tuple",
        "async",
        "unit",
        "future",
        "stream",
    }
)
_PRIM_KEYWORDS = frozenset(_PRIMS)
_UNSUPPORTED = {
    "use": "`use` (imports from other WIT files)",
    "resource": "resources",
    "interface": "interface blocks",
    "handle": "handles",
    "future": "future<T>",
    "stream": "stream<T, E>",
    "async": "async functions",
    "static": "static functions",
}
_NEW_DIALECT = {
    "f32": "float32",
    "f64": "float64",
    "result": "expected<T, E>",
}
_PUNCT = "{}()<>,:=;"


@dataclass(frozen=True)
class _Token:
    kind: str  # "id", "kw", "punct", "_", "eof"
    text: str
    line: int
    col: int

    def describe(self) -> str:
        if self.kind == "eof":
            return "the end of the text"
        if self.kind == "kw":
            return f"keyword `{self.text}`"
        return f"`{self.text}`"


def _tokenize(text: str) -> Iterator[_Token]:
    """The tokens of ``text``, lazily: a bad character further on does not
    hide an earlier, more telling, parse error."""
    i, line, col, n = 0, 1, 1, len(text)

    def advance(count: int) -> None:
        nonlocal i, line, col
        for ch in text[i : i + count]:
            if ch == "\n":
                line, col = line + 1, 1
            else:
                col += 1
        i += count

    while i < n:
        ch = text[i]
        if ch in " \t\r\n\ufeff":
            advance(1)
        elif text.startswith("//", i):
            end = text.find("\n", i)
            advance((n if end < 0 else end) - i)
        elif text.startswith("/*", i):
            # Block comments nest, as in the lexer of the time.
            start_line, start_col, depth = line, col, 0
            while True:
                if i >= n:
                    raise WitSyntaxError(start_line, start_col, "unterminated /* comment")
                if text.startswith("/*", i):
                    depth += 1
                    advance(2)
                elif text.startswith("*/", i):
                    depth -= 1
                    advance(2)
                    if depth == 0:
                        break
                else:
                    advance(1)
        elif text.startswith("->", i):
            yield _Token("punct", "->", line, col)
            advance(2)
        elif ch in _PUNCT:
            yield _Token("punct", ch, line, col)
            advance(1)
        elif ch == "%" or (ch.isascii() and (ch.isalpha() or ch == "_")):
            explicit = ch == "%"
            j = i + 1 if explicit else i
            k = j
            while k < n and (text[k].isascii() and (text[k].isalnum() or text[k] in "_-")):
                if text.startswith("->", k):
                    break
                k += 1
            word = text[j:k]
            if explicit and not word:
                raise WitSyntaxError(line, col, "`%` must be followed by an identifier")
            if not explicit and word == "_":
                yield _Token("_", word, line, col)
            else:
                if word.endswith("-") or "--" in word or word.startswith("-"):
                    raise WitSyntaxError(line, col, f"malformed identifier `{word}`")
                if word[0].isdigit():
                    raise WitSyntaxError(
                        line, col, f"an identifier cannot start with a digit: `{word}`"
                    )
                kind = "kw" if not explicit and word in _KEYWORDS else "id"
                yield _Token(kind, word, line, col)
            advance(k - i)
        else:
            raise WitSyntaxError(line, col, f"unexpected character {ch!r}")
    yield _Token("eof", "", line, col)


# Unresolved type expressions: ("prim", kind) | ("list", t) | ("option", t) |
# ("expected", ok, err) | ("tuple", [t, ...]) | ("name", name, token).
_Expr = tuple[Any, ...]


@dataclass
class _Def:
    kind: str  # record, variant, enum, flags, union, alias
    token: _Token
    body: Any


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.ahead: list[_Token] = []
        self.defs: dict[str, _Def] = {}
        self.funcs: dict[str, tuple[_Token, list[tuple[str, _Expr]], _Expr | None]] = {}

    # -- tokens --------------------------------------------------------------

    def peek(self, ahead: int = 0) -> _Token:
        while len(self.ahead) <= ahead:
            tok = next(self.tokens, None)
            self.ahead.append(tok if tok is not None else self.ahead[-1])  # eof repeats
        return self.ahead[ahead]

    def next(self) -> _Token:
        tok = self.peek()
        if tok.kind != "eof":
            self.ahead.pop(0)
        return tok

    def error(self, tok: _Token, message: str) -> WitSyntaxError:
        return WitSyntaxError(tok.line, tok.col, message)

    def eat(self, text: str) -> bool:
        tok = self.peek()
        if tok.kind in ("punct", "kw") and tok.text == text:
            self.next()
            return True
        return False

    def expect(self, text: str) -> _Token:
        tok = self.next()
        if tok.kind not in ("punct", "kw") or tok.text != text:
            raise self.error(tok, f"expected `{text}`, found {tok.describe()}")
        return tok

    def ident(self, what: str) -> _Token:
        tok = self.next()
        if tok.kind == "id":
            return tok
        if tok.kind == "kw":
            raise self.error(
                tok,
                f"expected {what}, found keyword `{tok.text}` "
                f"(write %{tok.text} to use it as a name)",
            )
        raise self.error(tok, f"expected {what}, found {tok.describe()}")

    def items(self, close: str, parse_one: Callable[[], None]) -> None:
        """Comma-separated items up to ``close``, a trailing comma allowed."""
        while not self.eat(close):
            parse_one()
            if not self.eat(","):
                self.expect(close)
                return

    # -- items -----------------------------------------------------------------

    def document(self) -> None:
        while self.peek().kind != "eof":
            self.item()

    def item(self) -> None:
        tok = self.peek()
        if tok.kind == "kw" and tok.text in ("record", "variant", "enum", "flags", "union", "type"):
            self.next()
            name = self.ident(f"a name for the {tok.text}")
            if name.text in self.defs:
                first = self.defs[name.text].token
                raise self.error(
                    name, f"type `{name.text}` is already defined at {first.line}:{first.col}"
                )
            body = getattr(self, "_" + tok.text)(name)
            self.defs[name.text] = _Def("alias" if tok.text == "type" else tok.text, name, body)
            return
        if tok.kind == "kw" and tok.text in _UNSUPPORTED:
            raise self.error(
                tok, f"{_UNSUPPORTED[tok.text]} are not supported in a SingleStore WIT file"
            )
        if tok.kind == "id":
            if tok.text in ("package", "world", "export", "import", "include") and not (
                self.peek(1).kind == "punct" and self.peek(1).text == ":"
            ):
                raise self.error(
                    tok,
                    f"`{tok.text}` belongs to the newer WIT dialect; a SingleStore WIT file "
                    "has top-level types and `name: func(...)` functions only",
                )
            self.function()
            return
        raise self.error(
            tok,
            f"expected a type definition (record, variant, enum, flags, union, type) "
            f"or a function `name: func(...)`, found {tok.describe()}",
        )

    def function(self) -> None:
        name = self.next()
        if name.text in self.funcs:
            first = self.funcs[name.text][0]
            raise self.error(
                name, f"function `{name.text}` is already declared at {first.line}:{first.col}"
            )
        self.expect(":")
        tok = self.peek()
        if tok.kind == "kw" and tok.text in ("async", "static"):
            raise self.error(tok, f"{_UNSUPPORTED[tok.text]} are not supported")
        if not (tok.kind == "kw" and tok.text == "func"):
            raise self.error(
                tok,
                f"expected `func` after `{name.text}:`, found {tok.describe()} "
                "(global values are not supported)",
            )
        self.next()
        self.expect("(")
        params: list[tuple[str, _Expr]] = []
        seen: set[str] = set()

        def param() -> None:
            pname = self.ident("a parameter name")
            if pname.text in seen:
                raise self.error(pname, f"duplicate parameter `{pname.text}`")
            seen.add(pname.text)
            self.expect(":")
            params.append((pname.text, self.type_expr()))

        self.items(")", param)
        result: _Expr | None = None
        if self.eat("->"):
            if self.peek().kind == "punct" and self.peek().text == "(":
                raise self.error(
                    self.peek(), "named or multiple results are not part of this WIT dialect"
                )
            result = self.type_expr()
        self.funcs[name.text] = (name, params, result)

    def _record(self, name: _Token) -> list[tuple[_Token, _Expr]]:
        fields: list[tuple[_Token, _Expr]] = []

        def field() -> None:
            fname = self.ident("a field name")
            if any(f.text == fname.text for f, _ in fields):
                raise self.error(fname, f"duplicate field `{fname.text}` in record {name.text}")
            self.expect(":")
            fields.append((fname, self.type_expr()))

        self.expect("{")
        self.items("}", field)
        return fields

    def _variant(self, name: _Token) -> list[tuple[_Token, _Expr | None]]:
        cases: list[tuple[_Token, _Expr | None]] = []

        def case() -> None:
            cname = self.ident("a case name")
            if any(c.text == cname.text for c, _ in cases):
                raise self.error(cname, f"duplicate case `{cname.text}` in {name.text}")
            payload = None
            if self.eat("("):
                payload = self.type_expr()
                self.expect(")")
            cases.append((cname, payload))

        self.expect("{")
        self.items("}", case)
        if not cases:
            raise self.error(name, f"variant {name.text} has no cases")
        return cases

    def _names(self, name: _Token, kind: str, what: str) -> list[str]:
        names: list[str] = []

        def one() -> None:
            tok = self.ident(f"a {what} name")
            if tok.text in names:
                raise self.error(tok, f"duplicate {what} `{tok.text}` in {name.text}")
            names.append(tok.text)

        self.expect("{")
        self.items("}", one)
        if kind == "enum" and not names:
            raise self.error(name, f"enum {name.text} has no cases")
        return names

    def _enum(self, name: _Token) -> list[str]:
        return self._names(name, "enum", "case")

    def _flags(self, name: _Token) -> list[str]:
        return self._names(name, "flags", "flag")

    def _union(self, name: _Token) -> list[_Expr]:
        cases: list[_Expr] = []
        self.expect("{")
        self.items("}", lambda: cases.append(self.type_expr()))
        if not cases:
            raise self.error(name, f"union {name.text} has no cases")
        return cases

    def _type(self, name: _Token) -> _Expr:
        self.expect("=")
        return self.type_expr()

    # -- types -------------------------------------------------------------------

    def type_expr(self, unit_ok: bool = False) -> _Expr:
        tok = self.next()
        if tok.kind == "_":
            if not unit_ok:
                raise self.error(tok, "`_` (no value) is only allowed inside expected<...>")
            return ("prim", "unit")
        if tok.kind == "id":
            after = self.peek()
            if after.kind == "punct" and after.text == "<":
                hint = _NEW_DIALECT.get(tok.text)
                extra = f" (this WIT dialect spells it {hint})" if hint else ""
                raise self.error(tok, f"unknown type `{tok.text}<...>`{extra}")
            return ("name", tok.text, tok)
        if tok.kind != "kw":
            raise self.error(tok, f"expected a type, found {tok.describe()}")
        if tok.text in _PRIM_KEYWORDS:
            return ("prim", tok.text)
        if tok.text in ("list", "option"):
            self.expect("<")
            inner = self.type_expr()
            self.expect(">")
            return (tok.text, inner)
        if tok.text == "expected":
            self.expect("<")
            ok = self.type_expr(unit_ok=True)
            self.expect(",")
            err = self.type_expr(unit_ok=True)
            self.expect(">")
            return ("expected", ok, err)
        if tok.text == "tuple":
            self.expect("<")
            items: list[_Expr] = []
            self.items(">", lambda: items.append(self.type_expr()))
            return ("tuple", items)
        if tok.text in _UNSUPPORTED:
            raise self.error(tok, f"{_UNSUPPORTED[tok.text]} are not supported")
        raise self.error(tok, f"expected a type, found {tok.describe()}")


class _Resolver:
    """Turns names into types: definitions may come in any order, but may
    not refer to themselves."""

    def __init__(self, defs: dict[str, _Def]) -> None:
        self.defs = defs
        self.done: dict[str, WitType] = {}
        self.active: list[str] = []

    def named(self, name: str, tok: _Token) -> WitType:
        found = self.done.get(name)
        if found is not None:
            return found
        d = self.defs.get(name)
        if d is None:
            hint = _NEW_DIALECT.get(name)
            extra = f" (this WIT dialect spells it {hint})" if hint else ""
            raise WitSyntaxError(tok.line, tok.col, f"unknown type `{name}`{extra}")
        if name in self.active:
            cycle = " -> ".join([*self.active[self.active.index(name) :], name])
            raise WitSyntaxError(
                d.token.line, d.token.col, f"type `{name}` refers to itself ({cycle})"
            )
        self.active.append(name)
        try:
            ty = self.build(d, name)
        finally:
            self.active.pop()
        self.done[name] = ty
        return ty

    def build(self, d: _Def, name: str) -> WitType:
        if d.kind == "alias":
            return self.expr(d.body)
        if d.kind == "record":
            return RecordType(name, [(f.text, self.expr(t)) for f, t in d.body])
        if d.kind == "variant":
            return VariantType(
                name, [(c.text, UNIT if t is None else self.expr(t)) for c, t in d.body]
            )
        if d.kind == "enum":
            return EnumType(name, d.body)
        if d.kind == "flags":
            return FlagsType(name, d.body)
        return UnionType(name, [self.expr(t) for t in d.body])

    def expr(self, e: _Expr) -> WitType:
        kind = e[0]
        if kind == "prim":
            return UNIT if e[1] == "unit" else Prim(e[1])
        if kind == "name":
            return self.named(e[1], e[2])
        if kind == "list":
            return ListType(self.expr(e[1]))
        if kind == "option":
            return OptionType(self.expr(e[1]))
        if kind == "expected":
            return ExpectedType(self.expr(e[1]), self.expr(e[2]))
        return TupleType([self.expr(t) for t in e[1]])


def parse_wit(text: str) -> WitDocument:
    """Parse a WIT file of wit-bindgen 0.2's dialect; a WitSyntaxError (an
    AbiError) says what is wrong and where (line:column)."""
    parser = _Parser(text)
    parser.document()
    resolver = _Resolver(parser.defs)
    types = {name: resolver.named(name, d.token) for name, d in parser.defs.items()}
    functions: dict[str, WitFunction] = {}
    by_sql: dict[str, str] = {}
    for name, (tok, params, result) in parser.funcs.items():
        other = by_sql.get(sql_name(name))
        if other is not None:
            raise WitSyntaxError(
                tok.line, tok.col, f"functions `{other}` and `{name}` have the same SQL name"
            )
        by_sql[sql_name(name)] = name
        functions[name] = WitFunction(
            name=name,
            params=tuple((p, resolver.expr(t)) for p, t in params),
            result=UNIT if result is None else resolver.expr(result),
            line=tok.line,
        )
    return WitDocument(functions=functions, types=types)
