"""Values on the wire: type OIDs, a result column's type, and the text and
binary formats of results and bound parameters."""

from __future__ import annotations

import contextlib
import datetime
import decimal
import json
import math
import re
import struct
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from ..values import SqlValue
from .errors import WireError

# Type OIDs (pg_type.oid).
OID_BOOL = 16
OID_BYTEA = 17
OID_NAME = 19
OID_INT8 = 20
OID_INT2 = 21
OID_INT4 = 23
OID_TEXT = 25
OID_OID = 26
OID_JSON = 114
OID_FLOAT4 = 700
OID_FLOAT8 = 701
OID_UNKNOWN = 705
OID_BPCHAR = 1042
OID_VARCHAR = 1043
OID_NUMERIC = 1700
OID_UUID = 2950
OID_JSONB = 3802
OID_TEXT_ARRAY = 1009
_VECTOR = re.compile(r"\s*-?[0-9]+(?:\s+-?[0-9]+)*\s*")

TYPLEN = {OID_BOOL: 1, OID_INT8: 8, OID_FLOAT8: 8}
INT_OIDS = {OID_INT2, OID_INT4, OID_INT8, OID_OID}
FLOAT_OIDS = {OID_FLOAT4, OID_FLOAT8}
STRING_OIDS = {0, OID_TEXT, OID_NAME, OID_UNKNOWN, OID_BPCHAR, OID_VARCHAR, OID_JSON}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# --- values ---------------------------------------------------------------------------


def column_oid(values: Sequence[SqlValue]) -> int:
    """The type of a result column, from its values (all-NULL is text)."""
    kinds: set[type] = set()
    for v in values:
        if v is not None:
            kinds.add(type(v))
    if not kinds:
        return OID_TEXT
    if kinds == {bool}:
        return OID_BOOL
    if kinds <= {int, bool}:
        fits = all(
            _INT64_MIN <= v <= _INT64_MAX for v in values if isinstance(v, int)
        )  # Python ints from an executor may be wider than SQLite's
        return OID_INT8 if fits else OID_TEXT
    if kinds <= {int, bool, float}:
        return OID_FLOAT8
    if kinds == {bytes}:
        return OID_BYTEA
    return OID_TEXT


def declared_oid(decltype: str | None) -> int | None:
    """The type a column's declaration asks for (SQLite's affinity rules)."""
    d = (decltype or "").upper()
    if not d:
        return None
    if "BOOL" in d:
        return OID_BOOL
    if "INT" in d:
        return OID_INT8
    if "CHAR" in d or "CLOB" in d or "TEXT" in d:
        return OID_TEXT
    if "BLOB" in d or "BYTEA" in d:
        return OID_BYTEA
    if "REAL" in d or "FLOA" in d or "DOUB" in d:
        return OID_FLOAT8
    return None


def fits(oid: int, values: Iterable[SqlValue]) -> bool:
    """Whether every value of a column can be sent as ``oid``."""
    for v in values:
        if v is None:
            continue
        if oid == OID_BOOL:
            if not (isinstance(v, bool) or (type(v) is int and v in (0, 1))):
                return False
        elif oid == OID_INT8:
            if not isinstance(v, int) or not _INT64_MIN <= v <= _INT64_MAX:
                return False
        elif oid == OID_FLOAT8:
            if not isinstance(v, int | float):
                return False
        elif oid == OID_TEXT:
            if not isinstance(v, str):
                return False
        elif oid == OID_BYTEA and not isinstance(v, bytes):
            return False
    return True


def coerce(value: SqlValue, oid: int, column: str) -> SqlValue:
    """``value`` as the type a column was described with before it ran.

    SQLite keeps any value in any column, so a column declared INTEGER may
    hold text; what cannot be sent as the described type is refused (22P02)
    rather than sent in a form the client would misread.
    """
    if value is None or oid not in _COERCED:
        return value
    if oid == OID_INT8:
        if isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX:
            return int(value)
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            return int(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return int(value.strip())
    elif oid == OID_FLOAT8:
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return float(value)
    elif oid == OID_BOOL:
        if isinstance(value, bool) or (type(value) is int and value in (0, 1)):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
            return value.strip().lower() in TRUE_WORDS
    elif oid == OID_BYTEA:
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8", "surrogatepass")
    elif oid == OID_TEXT or oid in ELEMENT_OF:
        return value  # every value has a text form (encode_text); arrays are text
    shown = repr(value if not isinstance(value, str | bytes) else value[:64])
    raise WireError(
        "22P02",
        f'column "{column}" is {TYPE_NAMES[oid]} but holds {shown} '
        "(SQLite keeps any value in any column; cast it in the query)",
    )


_COERCED = {OID_INT8, OID_FLOAT8, OID_BOOL, OID_BYTEA, OID_TEXT, 1000, 1016, 1022, OID_TEXT_ARRAY}
TYPE_NAMES = {
    OID_INT8: "bigint",
    OID_FLOAT8: "double precision",
    OID_BOOL: "boolean",
    OID_BYTEA: "bytea",
    OID_TEXT: "text",
}


# --- arrays -------------------------------------------------------------------------------
# An array is its text form (``{1,"a b",NULL}``) in SQLite; on the wire it is
# text[] (the form every client reads).


def elements(array: SqlValue) -> list[Any] | None:
    """An array's elements: a JSON array (what ARRAY[...] is translated to)
    or PostgreSQL's text form ``{a,"b c",NULL}`` (what drivers send)."""
    if array is None:
        return None
    text = array.decode("utf-8", "replace") if isinstance(array, bytes) else str(array)
    if text.startswith("["):
        try:
            loaded = json.loads(text)
        except ValueError:
            return [text]
        return list(loaded) if isinstance(loaded, list) else [loaded]
    if text.startswith("{") and text.endswith("}"):
        return _pg_array_items(text[1:-1])
    if _VECTOR.fullmatch(text):
        # int2vector and oidvector (pg_index.indkey): "1 2 3", numbers.
        return [int(n) for n in text.split()]
    return [text]


def _pg_array_items(inner: str) -> list[Any]:
    items: list[Any] = []
    i, n = 0, len(inner)
    while i < n:
        if inner[i] == '"':
            j, chars = i + 1, []
            while j < n and inner[j] != '"':
                if inner[j] == "\\" and j + 1 < n:
                    j += 1
                chars.append(inner[j])
                j += 1
            items.append("".join(chars))
            i = j + 1
        else:
            j = inner.find(",", i)
            j = n if j < 0 else j
            word = inner[i:j].strip()
            items.append(None if word.upper() == "NULL" else word)
            i = j
        while i < n and inner[i] in ", ":
            i += 1
    return items


def array_text(values: Sequence[SqlValue]) -> str:
    """PostgreSQL's text form of an array: ``{1,"a b",NULL}``."""
    return "{" + ",".join(_array_item(v) for v in values) + "}"


def _array_item(value: SqlValue) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        value = "\\x" + value.hex()
    text = str(value)
    if text == "" or text.upper() == "NULL" or any(c in text for c in '{},"\\ '):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


# Array types by their element's type (describe picks one; text otherwise).
ARRAY_OF = {OID_BOOL: 1000, OID_INT8: 1016, OID_FLOAT8: 1022, OID_TEXT: OID_TEXT_ARRAY}
ELEMENT_OF = {array: element for element, array in ARRAY_OF.items()}


def _array_elements(value: SqlValue, oid: int) -> list[SqlValue]:
    element = ELEMENT_OF[oid]
    items: list[SqlValue] = []
    for item in elements(value) or []:
        if item is not None and element != OID_TEXT:
            item = coerce(item, element, "array element")
        items.append(item)
    return items


def _encode_array_text(value: SqlValue, oid: int) -> bytes:
    element = ELEMENT_OF[oid]
    items = [
        None if v is None else encode_text(v, element).decode("utf-8", "surrogatepass")
        for v in _array_elements(value, oid)
    ]
    return array_text(items).encode("utf-8", "surrogatepass")


def _encode_array_binary(value: SqlValue, oid: int) -> bytes:
    """An array in binary: one dimension, lower bound 1."""
    element = ELEMENT_OF[oid]
    items = _array_elements(value, oid)
    has_null = int(any(v is None for v in items))
    parts = [struct.pack("!iiiii", 1, has_null, element, len(items), 1)]
    for item in items:
        if item is None:
            parts.append(struct.pack("!i", -1))
        else:
            data = encode_binary(item, element)
            parts.append(struct.pack("!i", len(data)) + data)
    return b"".join(parts)


def _float_text(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    text = repr(v)
    # PostgreSQL prints integral floats without ".0".
    return text[:-2] if text.endswith(".0") else text


def encode_text(value: SqlValue, oid: int) -> bytes:
    if oid in ELEMENT_OF and value is not None:
        return _encode_array_text(value, oid)
    if isinstance(value, bool):
        if oid in (OID_BOOL, OID_TEXT):
            return b"t" if value else b"f"
        return b"1" if value else b"0"
    if oid == OID_BOOL and isinstance(value, int):
        return b"t" if value else b"f"
    if isinstance(value, float):
        return _float_text(value).encode()
    if isinstance(value, bytes):
        return b"\\x" + value.hex().encode()
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return str(value).encode()


def encode_binary(value: SqlValue, oid: int) -> bytes:
    # The column's type was chosen to fit every value (column_oid, fits).
    if oid == OID_INT8 and isinstance(value, int):
        return struct.pack("!q", value)
    if oid == OID_FLOAT8 and isinstance(value, int | float):
        return struct.pack("!d", value)
    if oid == OID_BOOL:
        return b"\x01" if value else b"\x00"
    if oid == OID_BYTEA and isinstance(value, bytes):
        return value
    if oid in ELEMENT_OF:
        return _encode_array_binary(value, oid)
    return encode_text(value, oid)


def _decode_numeric_text(text: str) -> SqlValue:
    try:
        d = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        raise WireError("22P02", f"invalid input syntax for type numeric: {text!r}") from None
    return _from_decimal(d)


def _from_decimal(d: decimal.Decimal) -> SqlValue:
    # adjusted(): the exponent of the leading digit; past 18 the value is
    # beyond 64 bits, and int() of 1e1000000 would take seconds.
    if d.is_finite() and d.adjusted() < 19 and d == d.to_integral_value():
        n = int(d)
        if _INT64_MIN <= n <= _INT64_MAX:
            return n
    # Like an over-long integer literal in SQLite: stored as REAL.
    return float(d)


def _decode_numeric_binary(data: bytes) -> SqlValue:
    if len(data) < 8:
        raise WireError("22P03", "invalid binary numeric")
    ndigits, weight, sign, _dscale = struct.unpack_from("!hhHh", data)
    if ndigits < 0 or len(data) != 8 + 2 * ndigits:
        raise WireError("22P03", "invalid binary numeric")
    if sign == 0xC000:
        return None  # NaN: SQLite has no NaN, it binds NULL
    if sign in (0xD000, 0xF000):
        return math.inf if sign == 0xD000 else -math.inf
    digits = struct.unpack_from(f"!{ndigits}h", data, 8)
    value = decimal.Decimal(0)
    with decimal.localcontext() as ctx:
        ctx.prec = 4 * max(ndigits, 1) + 40
        base = decimal.Decimal(10000)
        for i, digit in enumerate(digits):
            value += digit * base ** (weight - i)
        if sign == 0x4000:
            value = -value
    return _from_decimal(value)


TRUE_WORDS = {"t", "true", "y", "yes", "on", "1"}
FALSE_WORDS = {"f", "false", "n", "no", "off", "0"}


_BYTEA_ESCAPE = re.compile(r"\\(?:(\\)|([0-3][0-7][0-7]))?")


def _decode_bytea_text(text: str) -> bytes:
    if text.startswith("\\x"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise WireError("22P02", "invalid hexadecimal data in bytea") from None
    # The escape format: \\ and \ooo (octal); everything else as it is.
    out = bytearray()
    last = 0
    for m in _BYTEA_ESCAPE.finditer(text):
        out += text[last : m.start()].encode("utf-8")
        if m.group(1) is not None:
            out.append(0x5C)
        elif m.group(2) is not None:
            out.append(int(m.group(2), 8))
        else:
            raise WireError("22P02", "invalid input syntax for type bytea")
        last = m.end()
    out += text[last:].encode("utf-8")
    return bytes(out)


def decode_param(data: bytes, oid: int, binary: bool, index: int) -> SqlValue:
    """A bound parameter value (text or binary format) as SQLite takes it."""
    if binary:
        return _decode_binary(data, oid, index)
    if oid == OID_BYTEA:
        return _decode_bytea_text(_utf8(data, index))
    text = _utf8(data, index)
    try:
        if oid in INT_OIDS:
            return int(text.strip())
        if oid in FLOAT_OIDS:
            return float(text)
    except ValueError:
        raise WireError(
            "22P02", f"invalid input syntax for parameter ${index + 1} (type oid {oid}): {text!r}"
        ) from None
    if oid == OID_NUMERIC:
        return _decode_numeric_text(text)
    if oid == OID_BOOL:
        word = text.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise WireError("22P02", f"invalid input syntax for type boolean: {text!r}")
    # Text, unknown and every other type (dates, uuids, json, ...) as text.
    return text


_BINARY_STRUCTS = {
    OID_INT2: struct.Struct("!h"),
    OID_INT4: struct.Struct("!i"),
    OID_INT8: struct.Struct("!q"),
    OID_OID: struct.Struct("!I"),
    OID_FLOAT4: struct.Struct("!f"),
    OID_FLOAT8: struct.Struct("!d"),
}


def _decode_binary(data: bytes, oid: int, index: int) -> SqlValue:
    fixed = _BINARY_STRUCTS.get(oid)
    if fixed is not None:
        if len(data) != fixed.size:
            raise WireError("22P03", f"incorrect binary data format in bind parameter {index + 1}")
        value: int | float = fixed.unpack(data)[0]
        return value
    if oid == OID_BOOL:
        if len(data) != 1:
            raise WireError("22P03", f"incorrect binary data format in bind parameter {index + 1}")
        return data != b"\x00"
    if oid == OID_BYTEA:
        return data
    if oid in STRING_OIDS:
        return _utf8(data, index)
    if oid == OID_JSONB:
        if not data or data[0] != 1:
            raise WireError("22P03", f"unsupported jsonb version in bind parameter {index + 1}")
        return _utf8(data[1:], index)
    if oid == OID_NUMERIC:
        return _decode_numeric_binary(data)
    if oid == OID_UUID and len(data) == 16:
        return str(uuid.UUID(bytes=data))
    if oid in _DATETIME_OIDS:
        return _decode_datetime(data, oid, index)
    raise WireError(
        "0A000",
        f"binary format for parameter ${index + 1} of type oid {oid} is not supported",
        hint="Send this parameter in text format.",
    )


OID_DATE = 1082
OID_TIME = 1083
OID_TIMESTAMP = 1114
OID_TIMESTAMPTZ = 1184
OID_TIMETZ = 1266
_DATETIME_OIDS = {OID_DATE: 4, OID_TIME: 8, OID_TIMESTAMP: 8, OID_TIMESTAMPTZ: 8, OID_TIMETZ: 12}
# PostgreSQL counts days and microseconds from 2000-01-01 (UTC for timestamptz).
_EPOCH = datetime.datetime(2000, 1, 1)
_INFINITY = {
    2**31 - 1: "infinity",
    -(2**31): "-infinity",
    2**63 - 1: "infinity",
    -(2**63): "-infinity",
}


def _decode_datetime(data: bytes, oid: int, index: int) -> str:
    """A binary date or time as the ISO text SQLite's date functions read."""
    if len(data) != _DATETIME_OIDS[oid]:
        raise WireError("22P03", f"incorrect binary data format in bind parameter {index + 1}")
    if oid == OID_DATE:
        days = struct.unpack("!i", data)[0]
        if days in _INFINITY:
            return _INFINITY[days]
        return _shifted(datetime.timedelta(days=days), index).date().isoformat()
    micros = struct.unpack("!q", data[:8])[0]
    if oid in (OID_TIME, OID_TIMETZ):
        if not 0 <= micros <= 86_400_000_000:
            raise WireError("22008", f"time out of range in bind parameter {index + 1}")
        text = (datetime.datetime.min + datetime.timedelta(microseconds=micros)).time().isoformat()
        if micros == 86_400_000_000:
            text = "24:00:00"
        if oid == OID_TIMETZ:
            west = struct.unpack("!i", data[8:])[0]  # seconds west of UTC
            text += _offset(-west)
        return text
    if micros in _INFINITY:
        return _INFINITY[micros]
    stamp = _shifted(datetime.timedelta(microseconds=micros), index).isoformat(" ")
    return stamp + "+00:00" if oid == OID_TIMESTAMPTZ else stamp


def _shifted(delta: datetime.timedelta, index: int) -> datetime.datetime:
    try:
        return _EPOCH + delta
    except OverflowError:
        raise WireError(
            "22008", f"date out of range in bind parameter {index + 1} (years 1-9999)"
        ) from None


def _offset(seconds: int) -> str:
    sign = "+" if seconds >= 0 else "-"
    hours, rest = divmod(abs(seconds), 3600)
    return f"{sign}{hours:02d}:{rest // 60:02d}"


def _utf8(data: bytes, index: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(
            "22021", f"invalid byte sequence for encoding UTF8 in parameter ${index + 1}"
        ) from None
