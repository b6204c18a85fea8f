"""COPY ... FROM STDIN and COPY ... TO STDOUT: the statement, and the text
and CSV formats, streamed.

``Connection`` runs the protocol (CopyInResponse, CopyData, CopyDone,
CopyFail; CopyOutResponse) and sends the rows through the executor as
ordinary statements (batched INSERTs in, one SELECT out), so plugins see and
may rewrite what COPY reads and writes, as they do every other statement.
Input is decoded as it arrives: no more than one unfinished line (or CSV
record) is held between CopyData messages. Files and programs on the server
are refused: a client never makes the server read or write one (psql's
``\\copy`` sends the file through STDIN).
"""

from __future__ import annotations

import codecs
import csv
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ..values import SqlValue
from .codec import encode_text
from .dialect import IDENTIFIER, identifier
from .errors import WireError

_NAME = IDENTIFIER
_COPY = re.compile(
    rf"""\s*COPY\s+(?:
        \((?P<query>.+)\)
      | (?P<table>(?:(?:{_NAME})\s*\.\s*)?(?:{_NAME}))\s*(?:\((?P<columns>[^)]*)\))?
    )\s+(?P<direction>FROM|TO)\s+(?P<target>STDIN|STDOUT|PROGRAM\b.*|'.*)
    (?P<options>.*?)\s*;?\s*""",
    re.IGNORECASE | re.DOTALL | re.VERBOSE,
)
_OPTION_WORDS = re.compile(
    r"""\s*(?:
        (?P<word>[A-Za-z_]+)
      | '(?P<string>(?:[^']|'')*)'
      | (?P<punct>[(),])
    )""",
    re.VERBOSE,
)
_TEXT_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_TEXT_SPECIAL = re.compile(r"\\(?:x[0-9A-Fa-f]{1,2}|[0-7]{1,3}|.)", re.DOTALL)


@dataclass(frozen=True)
class Copy:
    table: str | None  # COPY table ...
    schema: str | None
    columns: list[str]
    query: str | None  # COPY (query) TO STDOUT
    direction: str  # "FROM" or "TO"
    format: str = "text"  # "text", "csv" or "binary" (FROM only)
    delimiter: str = "\t"
    null: str = "\\N"
    header: bool = False
    quote: str = '"'
    escape: str = '"'
    force_quote: list[str] = field(default_factory=list)


def parse_copy(sql: str) -> Copy:
    """A COPY statement; WireError for what the endpoint does not do."""
    m = _COPY.fullmatch(sql)
    if m is None:
        raise WireError(
            "42601",
            "syntax error in COPY: expected COPY table [(columns)] FROM STDIN | TO STDOUT"
            " [WITH (options)], or COPY (query) TO STDOUT",
        )
    direction = m.group("direction").upper()
    target = m.group("target").upper()
    if target not in ("STDIN", "STDOUT"):
        raise WireError(
            "42501",
            "COPY to or from a file or program on the server is not allowed for clients",
            hint="Send the data through STDIN or STDOUT (psql's \\copy does).",
        )
    if (direction, target) not in (("FROM", "STDIN"), ("TO", "STDOUT")):
        raise WireError("42601", f"COPY {direction} {target}: use FROM STDIN or TO STDOUT")
    query = m.group("query")
    if query is not None and direction == "FROM":
        raise WireError("42601", "COPY (query) can only be used with TO")
    table = schema = None
    if m.group("table"):
        parts = [p for p in re.split(r"\s*\.\s*(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", m.group("table"))]
        table = identifier(parts[-1])
        schema = identifier(parts[0]) if len(parts) == 2 else None
        if schema not in (None, "public", "main"):
            raise WireError("3F000", f'schema "{schema}" does not exist')
    columns = [identifier(c) for c in (m.group("columns") or "").split(",") if c.strip()]
    options = _options(m.group("options"))
    csv_format = options.get("format") == "csv"
    if options.get("format") == "binary" and direction == "TO":
        raise WireError(
            "0A000", "COPY TO in binary format is not supported", hint="Use FORMAT text or csv."
        )
    quote = str(options.get("quote", '"'))
    return Copy(
        table,
        schema,
        columns,
        query,
        direction,
        format=str(options.get("format", "text")),
        delimiter=str(options.get("delimiter", "," if csv_format else "\t")),
        null=str(options.get("null", "" if csv_format else "\\N")),
        header=bool(options.get("header", False)),
        quote=quote,
        escape=str(options.get("escape", quote)),
    )


def _options(text: str) -> dict[str, str | bool]:
    """PostgreSQL's ``WITH (FORMAT csv, HEADER, ...)`` and the old ``CSV HEADER``."""
    words: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _OPTION_WORDS.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip():
                raise WireError("42601", f"syntax error in COPY options at {text[pos:][:32]!r}")
            break
        pos = m.end()
        if m.group("word"):
            words.append(("word", m.group("word").lower()))
        elif m.group("string") is not None:
            words.append(("string", m.group("string").replace("''", "'")))
    options: dict[str, str | bool] = {}
    values = iter(words)
    for kind, word in values:
        if kind != "word" or word == "with":
            continue
        if word in ("csv", "binary", "text") and "format" not in options:
            options["format"] = word
        elif word == "format":
            options["format"] = next(values, ("", ""))[1]
        elif word == "header":
            options["header"] = True
        elif word in ("delimiter", "null", "quote", "escape"):
            found = next(values, ("", ""))
            if found == ("word", "as"):  # the old syntax: DELIMITER AS ','
                found = next(values, ("", ""))
            if found[0] != "string":
                raise WireError("42601", f"COPY {word.upper()} needs a quoted string")
            options[word] = found[1]
        elif word == "encoding":
            encoding = next(values, ("", ""))[1]
            if encoding.replace("-", "").lower() != "utf8":
                raise WireError("0A000", f"COPY ENCODING {encoding!r}: only UTF8 is supported")
        elif word == "freeze":
            continue
        elif word.startswith("force"):
            raise WireError("0A000", f"COPY option {word.upper()} is not supported")
        elif word in ("true", "false", "on", "off", "as"):
            continue
        else:
            raise WireError("42601", f'option "{word}" not recognized in COPY')
    fmt = str(options.get("format", "text"))
    if fmt not in ("text", "csv", "binary"):
        raise WireError("22023", f'COPY format "{fmt}" not recognized')
    delimiter = str(options.get("delimiter", "," if fmt == "csv" else "\t"))
    if len(delimiter) != 1 or delimiter in ("\r", "\n", "\\"):
        raise WireError("22023", "COPY delimiter must be a single one-byte character")
    for key in ("quote", "escape"):
        if key in options and len(str(options[key])) != 1:
            raise WireError("22023", f"COPY {key} must be a single one-byte character")
    return options


# --- decoding what the client sends ------------------------------------------------------


class Decoder:
    """Rows out of COPY data, fed as it arrives in CopyData messages."""

    def __init__(self, copy: Copy, max_row_bytes: int) -> None:
        self.copy = copy
        self.max_row_bytes = max_row_bytes
        self.pending = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.line = 0
        self.ended = False
        self.skip_header = copy.header

    def feed(self, data: bytes) -> Iterator[list[str | None]]:
        try:
            # A character may be split between two CopyData messages.
            text = self._decoder.decode(data)
        except UnicodeDecodeError:
            raise WireError(
                "22021", f"invalid byte sequence for encoding UTF8 at line {self.line + 1}"
            ) from None
        if self.ended:
            return
        self.pending += text
        yield from self._records(final=False)
        if len(self.pending) > self.max_row_bytes:
            raise _too_long(self.line + 1, self.max_row_bytes)

    def finish(self) -> Iterator[list[str | None]]:
        yield from self.feed(b"")
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise WireError(
                "22021", f"invalid byte sequence for encoding UTF8 at line {self.line + 1}"
            ) from None
        yield from self._records(final=True)

    def _records(self, final: bool) -> Iterator[list[str | None]]:
        while not self.ended:
            record = self._next_record(final)
            if record is None:
                return
            self.line += 1
            if self.skip_header:
                self.skip_header = False
                continue
            yield record

    def _next_record(self, final: bool) -> list[str | None] | None:
        text = self.pending
        if self.copy.format == "csv":
            end = _csv_record_end(text, self.copy.quote, self.copy.escape)
        else:
            end = text.find("\n")
        if end < 0:
            if not final or not text:
                return None
            end = len(text)
        raw, self.pending = text[:end], text[end + 1 :]
        if raw.endswith("\r"):
            raw = raw[:-1]
        if raw == "\\.":
            self.ended = True  # the end-of-data marker
            return None
        if self.copy.format == "csv":
            return self._csv_fields(raw)
        return self._text_fields(raw)

    def _text_fields(self, raw: str) -> list[str | None]:
        fields: list[str | None] = []
        for part in raw.split(self.copy.delimiter):
            if part == self.copy.null:
                fields.append(None)
            else:
                fields.append(_TEXT_SPECIAL.sub(_unescape, part) if "\\" in part else part)
        return fields

    def _csv_fields(self, raw: str) -> list[str | None]:
        copy = self.copy
        reader = csv.reader(
            [raw],
            delimiter=copy.delimiter,
            quotechar=copy.quote,
            escapechar=None if copy.escape == copy.quote else copy.escape,
            doublequote=copy.escape == copy.quote,
            strict=True,
        )
        try:
            parsed = next(reader, [])
        except csv.Error as exc:
            raise WireError("22P04", f"bad CSV data at line {self.line}: {exc}") from None
        # An unquoted empty field is NULL (FORMAT csv, NULL ''); csv loses the
        # quoting, so look at the raw text.
        quoted = _quoted_fields(raw, copy.delimiter, copy.quote)
        return [
            None if value == copy.null and not quoted[i] else value
            for i, value in enumerate(parsed)
        ]


def _unescape(m: re.Match[str]) -> str:
    escape = m.group()[1:]
    if escape[0] == "x" and len(escape) > 1:
        return chr(int(escape[1:], 16))
    if escape[0] in "01234567":
        return chr(int(escape, 8))
    return _TEXT_ESCAPES.get(escape, escape)


def _csv_record_end(text: str, quote: str, escape: str) -> int:
    """Where the first CSV record of ``text`` ends (a newline outside quotes), or -1."""
    inside = False
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if inside:
            if ch == escape and escape != quote and i + 1 < n:
                i += 2
                continue
            if ch == quote:
                if escape == quote and i + 1 < n and text[i + 1] == quote:
                    i += 2
                    continue
                inside = False
        elif ch == quote:
            inside = True
        elif ch == "\n":
            return i
        i += 1
    return -1


def _quoted_fields(raw: str, delimiter: str, quote: str) -> list[bool]:
    quoted: list[bool] = []
    start = True
    inside = False
    for ch in raw:
        if start:
            quoted.append(ch == quote)
            start = False
        if ch == quote:
            inside = not inside
        elif ch == delimiter and not inside:
            start = True
    if start:
        quoted.append(False)
    return quoted


def _too_long(line: int, limit: int) -> WireError:
    return WireError(
        "54000",
        f"COPY row {line} is longer than {limit} bytes (max_message_bytes)",
        hint="A row of COPY data is held whole before it is inserted.",
    )


_BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


class BinaryDecoder:
    """Rows of COPY's binary format: each field's bytes (None for NULL), fed
    as CopyData arrives; at most one unfinished tuple is held."""

    def __init__(self, max_row_bytes: int) -> None:
        self.max_row_bytes = max_row_bytes
        self.buffer = bytearray()
        self.header = False
        self.ended = False
        self.line = 0

    def feed(self, data: bytes) -> Iterator[list[bytes | None]]:
        self.buffer += data
        while not self.ended:
            if not self.header:
                if len(self.buffer) < 19:
                    return
                if bytes(self.buffer[:11]) != _BINARY_SIGNATURE:
                    raise WireError("22P04", "COPY file signature not recognized")
                extension = struct.unpack_from("!i", self.buffer, 15)[0]
                if extension < 0 or len(self.buffer) < 19 + extension:
                    return
                del self.buffer[: 19 + extension]
                self.header = True
                continue
            row = self._tuple()
            if row is None:
                if len(self.buffer) > self.max_row_bytes:
                    raise _too_long(self.line + 1, self.max_row_bytes)
                return
            yield row

    def _tuple(self) -> list[bytes | None] | None:
        buffer = self.buffer
        if len(buffer) < 2:
            return None
        count = struct.unpack_from("!h", buffer, 0)[0]
        if count == -1:
            self.ended = True
            del buffer[:2]
            return None
        pos = 2
        fields: list[bytes | None] = []
        for _ in range(max(count, 0)):
            if len(buffer) < pos + 4:
                return None
            length = struct.unpack_from("!i", buffer, pos)[0]
            pos += 4
            if length == -1:
                fields.append(None)
                continue
            if length < 0:
                raise WireError("22P04", f"invalid field length {length} in COPY binary data")
            if len(buffer) < pos + length:
                return None
            fields.append(bytes(buffer[pos : pos + length]))
            pos += length
        del buffer[:pos]
        self.line += 1
        return fields

    def finish(self) -> Iterator[list[bytes | None]]:
        if self.buffer or not self.header:
            raise WireError("22P04", "COPY binary data ended in the middle of a row")
        return iter(())


# --- encoding what the client receives ---------------------------------------------------


class Encoder:
    """COPY TO rows in text or CSV."""

    def __init__(self, copy: Copy, columns: Sequence[str], oids: Sequence[int]) -> None:
        self.copy = copy
        self.oids = list(oids)
        self.columns = list(columns)

    def header(self) -> bytes | None:
        if not self.copy.header:
            return None
        return self._line(list(self.columns))

    def row(self, row: Sequence[SqlValue]) -> bytes:
        values: list[str | None] = [
            None if v is None else encode_text(v, oid).decode("utf-8", "surrogatepass")
            for v, oid in zip(row, self.oids, strict=True)
        ]
        return self._line(values)

    def _line(self, values: list[str | None]) -> bytes:
        copy = self.copy
        if copy.format == "csv":
            parts = [copy.null if v is None else _csv_cell(v, copy) for v in values]
        else:
            parts = [copy.null if v is None else _escape_text(v, copy.delimiter) for v in values]
        return (copy.delimiter.join(parts) + "\n").encode("utf-8", "surrogatepass")


def _csv_cell(value: str, copy: Copy) -> str:
    """A CSV value, quoted when it must be: it holds the delimiter, a quote or
    a line break, or would read back as NULL."""
    special = (copy.delimiter, copy.quote, "\n", "\r")
    if value != copy.null and not any(c in value for c in special) and value.strip() == value:
        return value
    doubled = value.replace(copy.escape, copy.escape * 2) if copy.escape != copy.quote else value
    doubled = doubled.replace(copy.quote, copy.escape + copy.quote)
    return f"{copy.quote}{doubled}{copy.quote}"


def _escape_text(value: str, delimiter: str) -> str:
    value = value.replace("\\", "\\\\")
    for ch, escaped in (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        value = value.replace(ch, escaped)
    if delimiter != "\t":
        value = value.replace(delimiter, "\\" + delimiter)
    return value
