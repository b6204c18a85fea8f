"""SQL types, procedure signatures, and the Basic-ABI value and rows encodings.

The encodings are specified in docs/abi.md (sections 5 and 6); this module is
their only implementation on the host side.
"""

from __future__ import annotations

import enum
import json
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import apsw

from . import _core
from .errors import AbiError, InvalidArgument

SqlValue = None | int | float | str | bytes | bool
"""A value as SQLite and Python exchange it (bool only on the way out)."""


class SqlType(enum.Enum):
    BIGINT = "BIGINT"
    INTEGER = "INTEGER"
    DOUBLE = "DOUBLE"
    REAL = "REAL"
    BOOLEAN = "BOOLEAN"
    TEXT = "TEXT"
    BLOB = "BLOB"
    JSON = "JSON"

    @property
    def is_numeric(self) -> bool:
        return self in _NUMERIC

    @property
    def wasm(self) -> tuple[str, ...]:
        """The wasm value types of this SQL type as a Basic-ABI parameter."""
        return _WASM_PARAMS[self]


_NUMERIC = frozenset(
    {SqlType.BIGINT, SqlType.INTEGER, SqlType.DOUBLE, SqlType.REAL, SqlType.BOOLEAN}
)
_WASM_PARAMS: dict[SqlType, tuple[str, ...]] = {
    SqlType.BIGINT: ("i64",),
    SqlType.INTEGER: ("i32",),
    SqlType.DOUBLE: ("f64",),
    SqlType.REAL: ("f32",),
    SqlType.BOOLEAN: ("i32",),
    SqlType.TEXT: ("i32", "i32"),
    SqlType.BLOB: ("i32", "i32"),
    SqlType.JSON: ("i32", "i32"),
}

_ALIASES: dict[str, SqlType] = {
    "BIGINT": SqlType.BIGINT,
    "INT8": SqlType.BIGINT,
    "INTEGER": SqlType.INTEGER,
    "INT": SqlType.INTEGER,
    "INT4": SqlType.INTEGER,
    "SMALLINT": SqlType.INTEGER,
    "TINYINT": SqlType.INTEGER,
    "DOUBLE": SqlType.DOUBLE,
    "DOUBLE PRECISION": SqlType.DOUBLE,
    "FLOAT8": SqlType.DOUBLE,
    "REAL": SqlType.REAL,
    "FLOAT": SqlType.REAL,
    "FLOAT4": SqlType.REAL,
    "BOOLEAN": SqlType.BOOLEAN,
    "BOOL": SqlType.BOOLEAN,
    "TEXT": SqlType.TEXT,
    "VARCHAR": SqlType.TEXT,
    "STRING": SqlType.TEXT,
    "BLOB": SqlType.BLOB,
    "BYTEA": SqlType.BLOB,
    "JSON": SqlType.JSON,
    # SingleStore's spellings (docs/singlestore.md): TIMESTAMP crosses the
    # Basic ABI as an i64, the text and binary kinds as TEXT and BLOB.
    "TIMESTAMP": SqlType.BIGINT,
    "CHAR": SqlType.TEXT,
    "TINYTEXT": SqlType.TEXT,
    "MEDIUMTEXT": SqlType.TEXT,
    "LONGTEXT": SqlType.TEXT,
    "BINARY": SqlType.BLOB,
    "VARBINARY": SqlType.BLOB,
    "TINYBLOB": SqlType.BLOB,
    "MEDIUMBLOB": SqlType.BLOB,
    "LONGBLOB": SqlType.BLOB,
}


def parse_type(text: str) -> SqlType:
    """A SQL type name (case-insensitive, with aliases) as a SqlType."""
    key = " ".join(text.upper().split())
    if key.startswith("VARCHAR("):
        key = "VARCHAR"
    try:
        return _ALIASES[key]
    except KeyError:
        known = ", ".join(t.value for t in SqlType)
        raise InvalidArgument(f"unknown SQL type {text!r} (known: {known})") from None


@dataclass(frozen=True)
class Column:
    name: str
    type: SqlType


@dataclass(frozen=True)
class Signature:
    """The SQL signature of a procedure.

    ``returns`` is the scalar result type; ``table`` the columns of a
    table-valued procedure; both ``None`` means VOID.
    """

    params: tuple[Column, ...]
    returns: SqlType | None = None
    table: tuple[Column, ...] | None = None
    called_on_null_input: bool = False
    nullable_params: frozenset[int] = field(default_factory=frozenset)

    @property
    def is_table(self) -> bool:
        return self.table is not None

    def render(self) -> str:
        args = ", ".join(f"{c.name} {c.type.value}" for c in self.params)
        if self.table is not None:
            cols = ", ".join(f"{c.name} {c.type.value}" for c in self.table)
            ret = f"TABLE({cols})"
        else:
            ret = self.returns.value if self.returns else "VOID"
        return f"({args}) RETURNS {ret}"

    def to_json(self) -> dict[str, Any]:
        return {
            "params": [[c.name, c.type.value] for c in self.params],
            "returns": self.returns.value if self.returns else None,
            "table": (
                [[c.name, c.type.value] for c in self.table] if self.table is not None else None
            ),
            "called_on_null_input": self.called_on_null_input,
            "nullable_params": sorted(self.nullable_params),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Signature:
        table = data.get("table")
        return cls(
            params=tuple(Column(n, SqlType(t)) for n, t in data["params"]),
            returns=SqlType(data["returns"]) if data.get("returns") else None,
            table=(tuple(Column(n, SqlType(t)) for n, t in table) if table is not None else None),
            called_on_null_input=bool(data.get("called_on_null_input")),
            nullable_params=frozenset(data.get("nullable_params", ())),
        )


def fits(
    declared: Signature, derived: Signature, compatible: Callable[[SqlType, SqlType], bool]
) -> bool:
    """Whether a declared SQL signature has the shape of the one an ABI
    derived from the module's own types, type by type (``compatible``
    allows the ABI's equivalences, such as JSON for TEXT)."""

    def columns(a: Sequence[Column], b: Sequence[Column]) -> bool:
        return len(a) == len(b) and all(
            compatible(x.type, y.type) for x, y in zip(a, b, strict=True)
        )

    if not columns(declared.params, derived.params):
        return False
    if declared.table is not None or derived.table is not None:
        return (
            declared.table is not None
            and derived.table is not None
            and columns(declared.table, derived.table)
        )
    if declared.returns is None or derived.returns is None:
        return declared.returns is derived.returns
    return compatible(declared.returns, derived.returns)


# --- argument and result coercion -------------------------------------------

_I32 = (-(2**31), 2**31 - 1)
_I64 = (-(2**63), 2**63 - 1)


def coerce(value: SqlValue, sql_type: SqlType, what: str) -> SqlValue:
    """Convert a value SQLite handed us to the Python value of ``sql_type``.

    SQLite is dynamically typed, so an argument may arrive as any storage class;
    anything that does not convert losslessly is an InvalidArgument naming
    ``what`` rather than a silently mangled value.
    """
    if value is None:
        return None
    t = sql_type
    if t in (SqlType.BIGINT, SqlType.INTEGER):
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise InvalidArgument(f"{what}: expected {t.value}, got {_kind(value)}")
        lo, hi = _I32 if t is SqlType.INTEGER else _I64
        if not lo <= value <= hi:
            raise InvalidArgument(f"{what}: {_int(value)} is out of range for {t.value}")
        return value
    if t in (SqlType.DOUBLE, SqlType.REAL):
        if isinstance(value, float):
            return float(value)
        if isinstance(value, int):  # and bool
            try:
                return float(value)
            except OverflowError:  # past 1.8e308
                message = f"{what}: {_int(value)} is out of range for {t.value}"
                raise InvalidArgument(message) from None
        raise InvalidArgument(f"{what}: expected {t.value}, got {_kind(value)}")
    if t is SqlType.BOOLEAN:
        if isinstance(value, (bool, int)):
            return bool(value)
        raise InvalidArgument(f"{what}: expected BOOLEAN, got {_kind(value)}")
    if t is SqlType.BLOB:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        raise InvalidArgument(f"{what}: expected BLOB, got {_kind(value)}")
    # TEXT and JSON
    if not isinstance(value, str):
        raise InvalidArgument(f"{what}: expected {t.value}, got {_kind(value)}")
    if not value.isascii() and (bad := _SURROGATE.search(value)) is not None:
        raise InvalidArgument(f"{what}: a lone surrogate {bad.group()!r} has no UTF-8 form")
    if t is SqlType.JSON:
        check_json(value, what)
    return value


def check_json(text: str, what: str) -> None:
    try:
        json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"{what}: not valid JSON ({exc})") from None
    except RecursionError:
        raise InvalidArgument(f"{what}: JSON nested too deeply") from None


_SURROGATE = re.compile("[\ud800-\udfff]")


def to_sqlite(value: SqlValue, what: str = "SQL parameter") -> int | float | str | bytes | None:
    """A value as SQLite stores it (booleans become 0/1).

    Anything SQLite cannot hold is an InvalidArgument naming ``what``: an
    integer outside 64 bits, text with a lone surrogate (no UTF-8 form), a
    value of another type.
    """
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if not _I64[0] <= value <= _I64[1]:
            raise InvalidArgument(f"{what}: {_int(value)} is out of range for a 64-bit integer")
        return value
    if isinstance(value, str):
        if not value.isascii() and (bad := _SURROGATE.search(value)) is not None:
            raise InvalidArgument(
                f"{what}: a lone surrogate {bad.group()!r} (at {bad.start()}) has no UTF-8 form"
            )
        return value
    if value is None or isinstance(value, (float, bytes, bytearray, memoryview, apsw.zeroblob)):
        return value
    raise InvalidArgument(f"{what}: SQLite cannot store a value of type {type(value).__name__}")


def _int(value: int) -> str:
    """An integer for a message: its digits, or its size when there are
    too many to print (str() refuses over 4300 digits)."""
    return str(value) if value.bit_length() <= 128 else f"an integer of {value.bit_length()} bits"


def _kind(value: object) -> str:
    return {
        int: "INTEGER",
        float: "REAL",
        str: "TEXT",
        bytes: "BLOB",
        bool: "BOOLEAN",
    }.get(type(value), type(value).__name__)


# --- Basic-ABI encodings (docs/abi.md sections 5 and 6) ---------------------

TAG_NULL, TAG_INTEGER, TAG_REAL, TAG_TEXT, TAG_BLOB, TAG_BOOLEAN, TAG_ROWS = range(7)

_U32 = struct.Struct("<I")
_I64S = struct.Struct("<q")
_F64 = struct.Struct("<d")


def encode_value(out: bytearray, value: SqlValue) -> None:
    if value is None:
        out.append(TAG_NULL)
    elif isinstance(value, bool):
        out.append(TAG_BOOLEAN)
        out.append(1 if value else 0)
    elif isinstance(value, int):
        out.append(TAG_INTEGER)
        out += _I64S.pack(value)
    elif isinstance(value, float):
        out.append(TAG_REAL)
        out += _F64.pack(value)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        out.append(TAG_TEXT)
        out += _U32.pack(len(data))
        out += data
    elif isinstance(value, (bytes, bytearray, memoryview)):
        out.append(TAG_BLOB)
        out += _U32.pack(len(value))
        out += bytes(value)
    else:
        raise InvalidArgument(f"cannot encode a {type(value).__name__} value")


def encode_rows(columns: Sequence[str], rows: Sequence[Sequence[SqlValue]]) -> bytes:
    """Query results in the rows encoding (section 6), written by the core
    (engine/core/src/encoding.rs); tests/test_core_encoding.py holds it to
    ``encode_value``, byte for byte."""
    try:
        return _core.encode_rows(list(columns), rows)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(str(exc)) from None


class _Reader:
    """A bounds-checked cursor over a guest buffer: every malformed buffer is
    an AbiError, never an IndexError or a partial decode."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise AbiError(
                f"{self.what}: truncated at byte {self.pos} (wanted {n} more of {len(self.data)})"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def text(self) -> str:
        raw = self.take(self.u32())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AbiError(f"{self.what}: invalid UTF-8 ({exc.reason})") from None

    def value(self) -> SqlValue:
        tag = self.take(1)[0]
        if tag == TAG_NULL:
            return None
        if tag == TAG_INTEGER:
            return int(_I64S.unpack(self.take(8))[0])
        if tag == TAG_REAL:
            return float(_F64.unpack(self.take(8))[0])
        if tag == TAG_TEXT:
            return self.text()
        if tag == TAG_BLOB:
            return self.take(self.u32())
        if tag == TAG_BOOLEAN:
            return self.take(1)[0] != 0
        raise AbiError(f"{self.what}: unknown value tag {tag} at byte {self.pos - 1}")

    def count(self, min_item_bytes: int) -> int:
        # A count larger than the remaining bytes could possibly hold is a lie;
        # refusing it early keeps a hostile buffer from making us loop.
        n = self.u32()
        if n * min_item_bytes > len(self.data) - self.pos:
            raise AbiError(f"{self.what}: count {n} exceeds the buffer")
        return n

    def done(self) -> None:
        if self.pos != len(self.data):
            raise AbiError(f"{self.what}: {len(self.data) - self.pos} trailing bytes")


def decode_params(data: bytes) -> list[SqlValue]:
    """A guest's parameter list (section 5), decoded by the core
    (engine/core/src/encoding.rs)."""
    try:
        return _core.decode_params(data)
    except _core.CoreError as exc:
        raise AbiError(exc.args[1]) from None


def decode_rows(data: bytes) -> tuple[list[str], list[tuple[SqlValue, ...]]]:
    r = _Reader(data, "rows buffer")
    columns = [r.text() for _ in range(r.count(4))]
    nrows = r.count(len(columns))
    rows = [tuple(r.value() for _ in columns) for _ in range(nrows)]
    r.done()
    return columns, rows


def decode_scalar(tag: int, payload: bytes) -> SqlValue:
    """A ``heliosdb_return(tag, ptr, len)`` payload (bare, no tag or length)."""
    if tag == TAG_NULL:
        return None
    if tag in (TAG_INTEGER, TAG_REAL):
        if len(payload) != 8:
            raise AbiError(f"return value: tag {tag} needs 8 bytes, got {len(payload)}")
        return (
            int(_I64S.unpack(payload)[0]) if tag == TAG_INTEGER else float(_F64.unpack(payload)[0])
        )
    if tag == TAG_TEXT:
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AbiError(f"return value: invalid UTF-8 ({exc.reason})") from None
    if tag == TAG_BLOB:
        return payload
    if tag == TAG_BOOLEAN:
        if len(payload) != 1:
            raise AbiError(f"return value: boolean needs 1 byte, got {len(payload)}")
        return payload[0] != 0
    raise AbiError(f"return value: unknown tag {tag}")


def convert_result(sig: Signature, value: Any) -> Any:
    """Check and convert a guest result to the declared SQL type."""
    if sig.table is not None:
        if not isinstance(value, tuple) or len(value) != 2:
            raise AbiError(f"expected a table result {sig.render()}, got a scalar")
        columns, rows = value
        if len(columns) != len(sig.table):
            raise AbiError(
                f"table result has {len(columns)} columns {columns}, declared "
                f"{len(sig.table)}: {[c.name for c in sig.table]}"
            )
        return [
            tuple(
                _coerce_out(cell, col.type, f"column {col.name}")
                for cell, col in zip(row, sig.table, strict=True)
            )
            for row in rows
        ]
    if isinstance(value, tuple):
        raise AbiError("procedure returned rows but is not declared RETURNS TABLE")
    if sig.returns is None:
        return None
    return _coerce_out(value, sig.returns, "result")


def _coerce_out(value: SqlValue, ty: SqlType, what: str) -> SqlValue:
    try:
        return coerce(value, ty, what)
    except InvalidArgument as exc:
        raise AbiError(exc.message) from None


# --- http-fetch (docs/abi.md §4) --------------------------------------------------
#
# request  := method, url, u32 nheaders, nheaders x (name, value), body
# response := u32 status, u32 nheaders, nheaders x (name, value), body
# where method, url, name, value are `u32 len, UTF-8` and body is `u32 len, bytes`.


def decode_http_request(data: bytes) -> tuple[str, str, list[tuple[str, str]], bytes]:
    r = _Reader(data, "http request")
    method = r.text()
    url = r.text()
    headers = [(r.text(), r.text()) for _ in range(r.count(8))]
    body = r.take(r.u32())
    r.done()
    return method, url, headers, body


def encode_http_response(status: int, headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
    out = bytearray(_U32.pack(status))
    out += _U32.pack(len(headers))
    for name, value in headers:
        for text in (name, value):
            data = text.encode("utf-8", "surrogateescape")
            out += _U32.pack(len(data))
            out += data
    out += _U32.pack(len(body))
    out += body
    return bytes(out)
