"""SQL <-> WIT values: each WIT type's SQL type, its conversion both ways and
its JSON form (see the package docstring for the mapping)."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from typing import Any

from ..errors import (
    AbiError,
    InvalidArgument,
    UserError,
)
from ..values import Column, SqlType, SqlValue
from .wit import (
    _I64_MAX,
    _INT_RANGES,
    UNIT,
    Case,
    EnumType,
    ExpectedType,
    FlagsType,
    ListType,
    OptionType,
    Prim,
    RecordType,
    TupleType,
    UnionType,
    VariantType,
    WitType,
    _Cases,
    sql_name,
)

# =============================================================================
# SQL <-> WIT values
# =============================================================================

_SQL_PRIMS = {
    "s64": SqlType.BIGINT,
    "u64": SqlType.BIGINT,
    "u32": SqlType.BIGINT,
    "s32": SqlType.INTEGER,
    "s16": SqlType.INTEGER,
    "s8": SqlType.INTEGER,
    "u16": SqlType.INTEGER,
    "u8": SqlType.INTEGER,
    "bool": SqlType.BOOLEAN,
    "float32": SqlType.REAL,
    "float64": SqlType.DOUBLE,
    "char": SqlType.TEXT,
    "string": SqlType.TEXT,
}


def _is_bytes(ty: WitType) -> bool:
    return isinstance(ty, ListType) and isinstance(ty.element, Prim) and ty.element.kind == "u8"


def sql_type(ty: WitType) -> SqlType:
    """The SQL type a WIT value is seen as (option<T> is a nullable T)."""
    if isinstance(ty, OptionType):
        return sql_type(ty.payload)
    if isinstance(ty, Prim) and ty.kind in _SQL_PRIMS:
        return _SQL_PRIMS[ty.kind]
    if isinstance(ty, EnumType):
        return SqlType.TEXT
    if _is_bytes(ty):
        return SqlType.BLOB
    return SqlType.JSON


def _children(ty: WitType) -> tuple[WitType, ...]:
    if isinstance(ty, ListType):
        return (ty.element,)
    if isinstance(ty, TupleType):
        return ty.items
    if isinstance(ty, RecordType):
        return tuple(t for _, t in ty.fields)
    if isinstance(ty, _Cases):
        return ty.payloads
    return ()


def _ambiguous_option(ty: WitType) -> WitType | None:
    """An option<T> whose none could not be told from a T (JSON null)."""
    if isinstance(ty, OptionType) and (isinstance(ty.payload, OptionType) or ty.payload is UNIT):
        return ty
    for child in _children(ty):
        found = _ambiguous_option(child)
        if found is not None:
            return found
    return None


def _has_buffers(ty: WitType) -> bool:
    """Whether a value of ``ty`` contains a string or list (an owned buffer)."""
    if isinstance(ty, ListType) or (isinstance(ty, Prim) and ty.kind == "string"):
        return True
    return any(_has_buffers(c) for c in _children(ty))


def _f32(x: float) -> float:
    """``x`` rounded to float32, as the guest will see it (inf beyond range)."""
    try:
        return float(struct.unpack("<f", struct.pack("<f", x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


def _check_int(kind: str, value: int, what: str) -> int:
    lo, hi = _INT_RANGES[kind]
    if not lo <= value <= hi:
        raise InvalidArgument(f"{what}: {value} is out of range for {kind} ({lo}..{hi})")
    return value


def _check_char(value: str, what: str) -> str:
    if len(value) != 1 or 0xD800 <= ord(value) <= 0xDFFF:
        raise InvalidArgument(f"{what}: a char is exactly one Unicode scalar value, got {value!r}")
    return value


def _check_text(value: str, what: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{what}: text with a lone surrogate is not UTF-8") from None
    return value


def _case_index(ty: _Cases, name: str) -> int:
    """The case called ``name`` (either spelling), or -1."""
    names = [ty.case_name(i) for i in range(ty.count)]
    key = sql_name(name)
    return names.index(key) if key in names else -1


def _from_sql(ty: WitType, value: SqlValue, what: str) -> Any:
    """An SQL argument (already coerced to the signature's type) as a WIT value."""
    if isinstance(ty, OptionType):
        return None if value is None else _from_sql(ty.payload, value, what)
    if value is None:
        raise InvalidArgument(f"{what} may not be NULL (its WIT type {ty.render()} is no option)")
    sql = sql_type(ty)
    if sql is SqlType.JSON:
        if not isinstance(value, str):
            raise InvalidArgument(f"{what}: expected JSON text for {ty.render()}")
        try:
            data = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise InvalidArgument(f"{what}: not valid JSON ({exc})") from None
        return _from_json(ty, data, what)
    if isinstance(ty, EnumType):
        if not isinstance(value, str):
            raise InvalidArgument(f"{what}: expected a case name of {ty.name}")
        return _enum_from(ty, value, what)
    if sql is SqlType.BLOB:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InvalidArgument(f"{what}: expected a BLOB")
        return bytes(value)
    assert isinstance(ty, Prim)
    return _prim_from(ty.kind, value, what, from_json=False)


def _enum_from(ty: EnumType, value: str, what: str) -> int:
    index = _case_index(ty, value)
    if index < 0:
        cases = ", ".join(sql_name(c) for c in ty.cases)
        raise InvalidArgument(f"{what}: {value!r} is not a case of {ty.name} ({cases})")
    return index


_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _prim_from(kind: str, value: Any, what: str, from_json: bool) -> Any:
    if kind in _INT_RANGES:
        if isinstance(value, float) and value.is_integer() and from_json:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument(f"{what}: expected an integer ({kind}), got {value!r}")
        return _check_int(kind, value, what)
    if kind in ("float32", "float64"):
        if from_json and isinstance(value, str) and value in _NON_FINITE:
            value = _NON_FINITE[value]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidArgument(f"{what}: expected a number ({kind}), got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            raise InvalidArgument(f"{what}: {value} is too large for {kind}") from None
        return _f32(number) if kind == "float32" else number
    if kind == "bool":
        if not isinstance(value, bool) and (from_json or not isinstance(value, int)):
            raise InvalidArgument(f"{what}: expected a boolean, got {value!r}")
        return bool(value)
    if not isinstance(value, str):
        raise InvalidArgument(f"{what}: expected text ({kind}), got {value!r}")
    if kind == "char":
        return _check_char(value, what)
    if kind == "string":
        return _check_text(value, what)
    raise InvalidArgument(f"{what}: a {kind} value cannot be passed")


def _from_json(ty: WitType, data: Any, what: str) -> Any:
    """A parsed JSON value as a WIT value of ``ty`` (the JSON form above)."""
    if isinstance(ty, OptionType):
        return None if data is None else _from_json(ty.payload, data, what)
    if isinstance(ty, Prim):
        if ty.kind == "unit":
            if data is not None:
                raise InvalidArgument(f"{what}: expected null (no value), got {data!r}")
            return None
        return _prim_from(ty.kind, data, what, from_json=True)
    if isinstance(ty, ListType):
        if not isinstance(data, list):
            raise InvalidArgument(f"{what}: expected an array for {ty.render()}")
        items = [_from_json(ty.element, x, f"{what}[{i}]") for i, x in enumerate(data)]
        return bytes(items) if _is_bytes(ty) else items
    if isinstance(ty, TupleType):
        if not isinstance(data, list) or len(data) != len(ty.items):
            raise InvalidArgument(f"{what}: expected an array of {len(ty.items)} for {ty.render()}")
        return tuple(
            _from_json(t, x, f"{what}[{i}]")
            for i, (t, x) in enumerate(zip(ty.items, data, strict=True))
        )
    if isinstance(ty, RecordType):
        if not isinstance(data, dict):
            raise InvalidArgument(f"{what}: expected an object for record {ty.name}")
        keys = {sql_name(k): k for k in data}
        unknown = set(keys) - {sql_name(f) for f, _ in ty.fields}
        if unknown:
            raise InvalidArgument(
                f"{what}: record {ty.name} has no field {sorted(unknown)[0]!r} "
                f"(fields: {', '.join(sql_name(f) for f, _ in ty.fields)})"
            )
        values = []
        for fname, fty in ty.fields:
            key = keys.get(sql_name(fname))
            if key is None and not isinstance(fty, OptionType):
                raise InvalidArgument(f"{what}: record {ty.name} needs field {sql_name(fname)!r}")
            values.append(
                None if key is None else _from_json(fty, data[key], f"{what}.{sql_name(fname)}")
            )
        return tuple(values)
    if isinstance(ty, FlagsType):
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise InvalidArgument(f"{what}: expected an array of flag names for {ty.name}")
        names = [sql_name(f) for f in ty.flags]
        bits = 0
        for x in data:
            if sql_name(x) not in names:
                raise InvalidArgument(
                    f"{what}: {x!r} is not a flag of {ty.name} ({', '.join(names)})"
                )
            bits |= 1 << names.index(sql_name(x))
        return bits
    if isinstance(ty, EnumType):
        if not isinstance(data, str):
            raise InvalidArgument(f"{what}: expected a case name of {ty.name}")
        return _enum_from(ty, data, what)
    assert isinstance(ty, _Cases)
    # variant, union, expected: {"case": payload}; a payload-less case may
    # also be given as its bare name.
    if isinstance(data, str) and not isinstance(ty, ExpectedType | UnionType):
        data = {data: None}
    if not isinstance(data, dict) or len(data) != 1:
        cases = ", ".join(ty.case_name(i) for i in range(ty.count))
        raise InvalidArgument(f'{what}: expected {{"case": payload}} for {ty.render()} ({cases})')
    ((name, payload),) = data.items()
    index = _case_index(ty, name)
    if index < 0:
        cases = ", ".join(ty.case_name(i) for i in range(ty.count))
        raise InvalidArgument(f"{what}: {name!r} is not a case of {ty.render()} ({cases})")
    return Case(index, _from_json(ty.payloads[index], payload, f"{what}.{name}"))


def _to_json(ty: WitType, value: Any) -> Any:
    if isinstance(ty, OptionType):
        return None if value is None else _to_json(ty.payload, value)
    if isinstance(ty, Prim):
        if isinstance(value, float) and not math.isfinite(value):
            return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(ty, ListType):
        if isinstance(value, bytes):
            return list(value)
        return [_to_json(ty.element, x) for x in value]
    if isinstance(ty, TupleType):
        return [_to_json(t, x) for t, x in zip(ty.items, value, strict=True)]
    if isinstance(ty, RecordType):
        return {sql_name(f): _to_json(t, x) for (f, t), x in zip(ty.fields, value, strict=True)}
    if isinstance(ty, FlagsType):
        return [sql_name(f) for i, f in enumerate(ty.flags) if value >> i & 1]
    if isinstance(ty, EnumType):
        return ty.case_name(value)
    assert isinstance(ty, _Cases) and isinstance(value, Case)
    return {ty.case_name(value.index): _to_json(ty.payloads[value.index], value.value)}


def _json_text(ty: WitType, value: Any) -> str:
    return json.dumps(
        _to_json(ty, value), ensure_ascii=False, allow_nan=False, separators=(",", ":")
    )


def _to_sql(ty: WitType, value: Any, what: str) -> SqlValue:
    """A lifted WIT value as the SQL value of ``sql_type(ty)``."""
    if isinstance(ty, OptionType):
        return None if value is None else _to_sql(ty.payload, value, what)
    if ty is UNIT:
        return None
    sql = sql_type(ty)
    if sql is SqlType.JSON:
        return _json_text(ty, value)
    if isinstance(ty, EnumType):
        return ty.case_name(value)
    if isinstance(ty, Prim) and ty.kind == "u64" and value > _I64_MAX:
        raise AbiError(f"{what}: the u64 value {value} does not fit in BIGINT")
    assert isinstance(value, int | float | str | bytes)  # bool is an int
    return value


def _plain(ty: WitType) -> bool:
    """Whether ``_to_sql`` returns values of ``ty`` unchanged."""
    if isinstance(ty, OptionType):
        ty = ty.payload
    return isinstance(ty, Prim) and ty.kind not in ("unit", "u64")


def _unwrap_result(ty: WitType) -> WitType:
    """The type SQL sees of a result: expected<T, E> is T (an err fails the
    call), option<T> a nullable T."""
    if isinstance(ty, ExpectedType):
        ty = ty.ok
    return ty.payload if isinstance(ty, OptionType) else ty


def _table_record(ty: WitType) -> RecordType | None:
    if isinstance(ty, ListType) and isinstance(ty.element, RecordType):
        return ty.element
    return None


def _guest_error(ty: WitType, payload: Any) -> UserError:
    """The UserError for an ``err`` result: the error case as the code when
    the error type names one, the payload (text or JSON) as the message."""
    if isinstance(ty, EnumType):
        return UserError(ty.case_name(payload), ty.case_name(payload))
    if isinstance(ty, VariantType):
        case = ty.case_name(payload.index)
        inner = ty.payloads[payload.index]
        if inner is UNIT:
            return UserError(case, case)
        value = payload.value
        text = value if isinstance(value, str) else _json_text(inner, value)
        return UserError(case, text)
    if ty is UNIT:
        return UserError("error", "the function returned an error")
    if isinstance(ty, Prim) and ty.kind in ("string", "char"):
        return UserError("error", str(payload))
    return UserError("error", _json_text(ty, payload))


def _same_types(a: Sequence[Column] | None, b: Sequence[Column] | None) -> bool:
    if a is None or b is None:
        return a is b
    return [c.type for c in a] == [c.type for c in b]


def _compatible(declared: SqlType, derived: SqlType) -> bool:
    text = {SqlType.TEXT, SqlType.JSON}
    return declared == derived or (declared in text and derived in text)
