"""Each WIT type's SQL type (see the package docstring for the mapping) and
what a signature derived from the WIT needs to know of it. The values
themselves, SQL and JSON to WIT and back, are converted in the core
(engine/core/src/canonical/values.rs), in the words this mapping has."""

from __future__ import annotations

from collections.abc import Sequence

from ..values import Column, SqlType
from .wit import (
    UNIT,
    EnumType,
    ExpectedType,
    ListType,
    OptionType,
    Prim,
    RecordType,
    TupleType,
    WitType,
    _Cases,
)

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


def _same_types(a: Sequence[Column] | None, b: Sequence[Column] | None) -> bool:
    if a is None or b is None:
        return a is b
    return [c.type for c in a] == [c.type for c in b]


def _compatible(declared: SqlType, derived: SqlType) -> bool:
    text = {SqlType.TEXT, SqlType.JSON}
    return declared == derived or (declared in text and derived in text)
