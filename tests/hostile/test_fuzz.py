"""Fuzzing, bounded in time: every input is accepted or refused with a typed error.

The DDL parser and the statement splitter get statements built from the
grammar (keywords, numbers of every size, strings with NUL and lone
surrogates, deep nesting, unterminated quotes) and then mutated; the archive
reader gets valid archives mutated byte by byte and member by member; the
PostgreSQL wire decoders, the SCRAM exchange and the role statements get
random bytes and words. The property is always the same:
a result, or a ProcedureError (or the module's own typed error: WireError
and the protocol violation of pgwire), never any other exception.

Deterministic (derandomize, no example database) and small: each test runs
in a few seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import apsw
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import heliosdb_wasm as h
from conftest import TEST_LIMITS, b64, tar_of, wasm_of
from heliosdb_wasm import archive as ar
from heliosdb_wasm import ddl, pgwire
from heliosdb_wasm.database import Result
from heliosdb_wasm.pgwire import codec, protocol


def fuzz(examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


NUMERIC = b64(wasm_of("numeric"))

# --- the grammar's pieces -----------------------------------------------------------

KEYWORDS = [
    "CREATE",
    "OR",
    "REPLACE",
    "PROCEDURE",
    "FUNCTION",
    "AGGREGATE",
    "PLUGIN",
    "EXTENSION",
    "ALTER",
    "DROP",
    "IF",
    "EXISTS",
    "CALL",
    "SHOW",
    "PLUGINS",
    "EXTENSIONS",
    "RETURNS",
    "TABLE",
    "VOID",
    "LANGUAGE",
    "wasm",
    "CALLED",
    "ON",
    "NULL",
    "INPUT",
    "STRICT",
    "CAPABILITIES",
    "GROW",
    "TO",
    "MB",
    "KB",
    "GB",
    "WITH",
    "USING",
    "EXPORT",
    "AS",
    "VERSION",
    "USE",
    "FROM",
    "LOCAL",
    "INFILE",
    "BASE64",
    "KEY",
    "WASM",
    "ABI",
    "BASIC",
    "CANONICAL",
    "WIT",
    "STATE",
    "HANDLE",
    "INITIALIZE",
    "ITERATE",
    "MERGE",
    "TERMINATE",
    "SERIALIZE",
    "DEFINER",
    "PRIORITY",
    "ENABLE",
    "DISABLE",
    "ENABLED",
    "DISABLED",
    "HOOKS",
    "CONFIG",
    "LIMITS",
    "NOT",
    "BIGINT",
    "INTEGER",
    "DOUBLE",
    "PRECISION",
    "TEXT",
    "BLOB",
    "JSON",
    "BOOLEAN",
    "VARCHAR",
    "BEGIN",
    "END",
    "TRIGGER",
    "SELECT",
    "EXPLAIN",
    "TEMP",
]
LIMIT_NAMES = [f.name for f in fields(h.Limits)]

numbers = st.one_of(
    st.integers(0, 2**70).map(str),
    st.sampled_from(
        [
            "0",
            "1",
            "1.5",
            "2.0",
            "0.000001",
            "9" * 20,
            "9" * 400,
            "9" * 5000,
            "0" * 30 + "1",
            "9" * 400 + ".5",
            "9223372036854775807",
            "9223372036854775808",
            "4611686018427387904",
            "31536000",
            "31536001",
        ]
    ),
)
# Text a string literal may hold: the odd characters come often.
text = st.lists(
    st.one_of(
        st.sampled_from(["\x00", "\ud800", "\udfff", "'", "''", '"', ";", "$", "$$", "\n", "é"]),
        st.characters(codec="utf-8"),
    ),
    max_size=12,
).map("".join)
strings = st.one_of(
    text.map(lambda s: "'" + s.replace("'", "''") + "'"),
    st.sampled_from(
        [
            "'m.wasm'",
            "'x.wit'",
            "'bin.wit'",
            "'missing'",
            "''",
            "'.'",
            "'a.tar'",
            "'unterminated",
            "'" + "a/" * 300 + "'",
            f"'{NUMERIC}'",
            "'read:items'",
            "'pre-parse'",
            "'{}'",
            "'" + "[" * 3000 + "'",
        ]
    ),
)
identifiers = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
    st.sampled_from(
        [
            "p",
            "q",
            "add_i64",
            '""',
            '"a b"',
            "[x y]",
            "`q`",
            '"p"',
            "x" * 300,
            '"' + "y" * 300 + '"',
            "sqlite_x",
            "_heliosdb_x",
            "abs",
        ]
    ),
    text.map(lambda s: '"' + s.replace('"', '""') + '"'),
)
types = st.sampled_from(
    [
        "BIGINT",
        "INTEGER",
        "DOUBLE",
        "DOUBLE PRECISION",
        "REAL",
        "BOOLEAN",
        "TEXT",
        "BLOB",
        "JSON",
        "VARCHAR(255)",
        "VARCHAR(" + "9" * 30 + ")",
        "NOPE",
    ]
)
bodies = st.sampled_from(
    [
        f"$wasm${NUMERIC}$wasm$",
        "$wasm$file://m.wasm$wasm$",
        "$wasm$file://missing$wasm$",
        f"'{NUMERIC}'",
        "$wasm$!!$wasm$",
        "$wasm$aGVsbG8=$wasm$",
        "$wasm$unterminated",
        "$$ $$",
        "$wasm$file://\x00$wasm$",
    ]
)
nesting = st.sampled_from(["(", "[", "'", '"', "`", "/*", "$a$"]).flatmap(
    lambda opener: st.integers(1, 3000).map(lambda n: opener * n)
)
CLAUSES = [
    "",
    "STRICT",
    "CALLED ON NULL INPUT",
    "RETURNS NULL ON NULL INPUT",
    "CAPABILITIES ({s})",
    "CAPABILITIES ({s}, {s})",
    "GROW TO {n} {unit}",
    "WITH ({limit} = {n})",
    "WITH ({limit} = {n}, {limit} = {n})",
    "USING EXPORT {s}",
    "LANGUAGE {i}",
]
TEMPLATES = [
    "CREATE {or} PROCEDURE {i}(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm {clause}"
    " {clause} USING EXPORT 'add_i64' AS {b}",
    "CREATE {or} PROCEDURE {i}({i} {t}, {i} {t}) RETURNS {t} LANGUAGE wasm {clause} {clause} AS {b}",
    "CREATE PROCEDURE {i}() RETURNS TABLE({i} {t}) LANGUAGE wasm {clause} AS {b}",
    "CREATE PROCEDURE {i} LANGUAGE wasm {clause} AS {b}",
    "ALTER PROCEDURE {i} VERSION {n} AS {b}",
    "ALTER PROCEDURE {i} USE VERSION {n}",
    "DROP PROCEDURE IF EXISTS {i}",
    "DROP FUNCTION {i}",
    "CALL {i}({n}, {s})",
    "CALL {i}({nest})",
    "SELECT {i}({n}, {n})",
    "SELECT {s}, {n}",
    "CREATE EXTENSION {i} FROM {s}",
    "CREATE EXTENSION {i} FROM {s} KEY {s}",
    "CREATE EXTENSION {i} FROM BASE64 {s} KEY {s}",
    "CREATE EXTENSION {i} FROM LOCAL INFILE {s}",
    "DROP EXTENSION IF EXISTS {i}",
    "CREATE {or} PLUGIN {i} PRIORITY {n} {enabled} HOOKS ({s}) CAPABILITIES ({s}) CONFIG {s}"
    " LIMITS ({limit} = {n}) AS {b}",
    "ALTER PLUGIN {i} PRIORITY {n}",
    "ALTER PLUGIN {i} {enabled}",
    "DROP PLUGIN IF EXISTS {i}",
    "CREATE {or} FUNCTION {i}({i} {t} NOT NULL) RETURNS {t} AS WASM ABI {abi} GROW TO {n}"
    " FROM BASE64 {s} WITH WIT FROM LOCAL INFILE {s}",
    "CREATE FUNCTION {i}({i} {t}) RETURNS {t} NULL AS WASM FROM LOCAL INFILE {s} USING EXPORT {s}",
    "CREATE AGGREGATE {i}({t}) RETURNS {t} WITH STATE {t} AS WASM ABI BASIC FROM BASE64 {s}"
    " INITIALIZE WITH {i} ITERATE WITH {i} MERGE WITH {i} TERMINATE WITH {i} DEFINER = {s}",
    "SHOW PLUGINS",
    "SHOW EXTENSIONS",
    "CREATE TRIGGER {i} AFTER INSERT ON {i} BEGIN SELECT {n}; SELECT {s}; END",
]
FILLERS: dict[str, st.SearchStrategy[str]] = {
    "{i}": identifiers,
    "{n}": numbers,
    "{s}": strings,
    "{t}": types,
    "{b}": bodies,
    "{nest}": nesting,
    "{or}": st.sampled_from(["", "OR REPLACE"]),
    "{unit}": st.sampled_from(["MB", "KB", "GB", "MIB", "PAGES"]),
    "{limit}": st.sampled_from([*LIMIT_NAMES, "speed", "fuel"]),
    "{enabled}": st.sampled_from(["ENABLED", "DISABLED", "ENABLE", "DISABLE"]),
    "{abi}": st.sampled_from(["BASIC", "CANONICAL", "OTHER"]),
    "{clause}": st.sampled_from(CLAUSES),
}
PLACEHOLDER = re.compile("|".join(re.escape(k) for k in FILLERS))
soup_token = st.one_of(
    st.sampled_from(KEYWORDS),
    numbers,
    strings,
    identifiers,
    types,
    bodies,
    nesting,
    st.sampled_from([*list("(),;=.*:$"), "--", "\n", "\x0b", "\u3000"]),
)


@st.composite
def statements(draw: st.DrawFn) -> str:
    """A statement of the grammar, a token soup, either one mutated."""
    if draw(st.integers(0, 3)) == 0:
        sql = " ".join(draw(st.lists(soup_token, max_size=25)))
    else:
        sql = draw(st.sampled_from(TEMPLATES))
        for _ in range(40):  # clauses hold placeholders of their own
            m = PLACEHOLDER.search(sql)
            if m is None:
                break
            sql = sql[: m.start()] + draw(FILLERS[m.group()]) + sql[m.end() :]
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(sql)))
        if draw(st.booleans()):
            sql = sql[:at] + " " + draw(soup_token) + " " + sql[at:]
        else:
            sql = sql[:at] + sql[at + draw(st.integers(0, 20)) :]
    return sql


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files the statements may name: a module, WIT text, bytes that are not text."""
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "m.wasm").write_bytes(wasm_of("numeric"))
    (folder / "x.wit").write_text("package a:b;\n")
    (folder / "bin.wit").write_bytes(b"\xff\xfe")
    (folder / "a.tar").write_bytes(b"not a tar")
    return folder


@fuzz(1000)
@given(sql=statements())
def test_the_ddl_parser_parses_or_refuses(base_dir: Path, sql: str) -> None:
    try:
        parts = ddl.split_statements(sql)
    except h.ProcedureError:
        parts = [sql]
    for part in parts:
        with contextlib.suppress(h.ProcedureError):
            ddl.parse(part, base_dir)


@pytest.fixture(scope="module")
def fuzz_db(base_dir: Path) -> Iterator[h.Database]:
    with h.Database.open(":memory:", limits=TEST_LIMITS) as db:
        db.base_dir = base_dir
        db.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, label TEXT)")
        # A name no statement drawn can touch (identifiers are at most 9 long).
        db.execute(
            "CREATE PROCEDURE fuzz_sentinel(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
            f" USING EXPORT 'add_i64' AS $wasm${NUMERIC}$wasm$"
        )
        yield db


@fuzz(500)
@given(script=st.lists(statements(), min_size=1, max_size=4))
def test_executing_ddl_succeeds_or_fails_typed(fuzz_db: h.Database, script: list[str]) -> None:
    """Through the engine: the limits, versions and paths a statement names
    reach wasmtime, SQLite and the file system."""
    for sql in script:
        with contextlib.suppress(h.ProcedureError):
            fuzz_db.execute(sql)
    assert fuzz_db.execute("SELECT fuzz_sentinel(40, 2)").scalar() == 42


# --- the splitter against SQLite's own completeness check --------------------------

closed_pieces = st.sampled_from(
    [
        "SELECT 1",
        "x",
        ";",
        " ",
        "\n",
        "\t",
        "\x0b",
        "\u3000",
        "é",
        "'a;b'",
        "'it''s'",
        '"q;"',
        "[br;]",
        "`bq;`",
        "/* c; */",
        "-- c;\n",
        "(",
        ")",
        "CREATE",
        "create",
        "TRIGGER",
        "trigger",
        "TEMP",
        "TEMPORARY",
        "END",
        "end",
        "EXPLAIN",
        "BEGIN",
        "1end",
        "end1",
        "end_",
        "$wasm$a;b$wasm$",
        "$$;$$",
        "CREATE TRIGGER t BEGIN",
        "END;",
        "CREATE TEMP TRIGGER",
        "EXPLAIN CREATE TRIGGER",
    ]
)


def split_by_sqlite(sql: str) -> list[str]:
    """The splitter's specification: at each top-level semicolon, a statement
    ends where SQLite's sqlite3_complete says it is complete (dollar bodies
    read as strings)."""
    out: list[str] = []
    start, first = 0, None
    for tok in ddl.tokenize(sql):
        if tok.text != ";":
            first = tok.pos if first is None else first
            continue
        candidate = re.sub(r"\$([A-Za-z_]*)\$.*?\$\1\$", "''", sql[start : tok.pos + 1], flags=re.S)
        if apsw.complete(candidate):
            if first is not None:
                out.append(sql[first : tok.pos].strip())
            start, first = tok.pos + 1, None
    if first is not None:
        out.append(sql[first:].strip())
    return out


@fuzz(1500)
@given(pieces=st.lists(closed_pieces, max_size=40))
def test_statements_end_where_sqlite_says_they_are_complete(pieces: list[str]) -> None:
    sql = "".join(pieces)
    assert ddl.split_statements(sql) == split_by_sqlite(sql)


# --- archives -------------------------------------------------------------------------

SPEC = ar.ProcedureSpec(
    name="add_one",
    file="wasm/numeric.wasm",
    abi="basic",
    export="add_i64",
    signature="(a BIGINT, b BIGINT) RETURNS BIGINT",
    limits={"fuel": 1000000},
)


def archive_of(install: bytes | None = None, manifest: bytes | None = None) -> bytes:
    files = {"wasm/numeric.wasm": wasm_of("numeric"), "wit/numeric.wit": b"// none\n"}
    files[ar.INSTALL] = (
        install or ar.install_statements(ar.Manifest("m", "1.0.0", (SPEC,), {})).encode()
    )
    digests = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
    text = ar.Manifest("m", "1.0.0", (SPEC,), digests, "fuzzed").to_toml().encode()
    return tar_of({ar.MANIFEST: text if manifest is None else manifest, **files})


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("packed") / "m.tar.gz"
    ar.pack("m", "1.0.0", (SPEC,), {"wasm/numeric.wasm": wasm_of("numeric")}, out)
    return out.read_bytes()


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(out)))
        how = draw(st.sampled_from(["flip", "set", "cut", "insert", "truncate"]))
        if how == "flip" and at < len(out):
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "set" and at < len(out):
            out[at] = draw(st.sampled_from([0, 0x30, 0x37, 0x7F, 0x80, 0xFF]))
        elif how == "cut":
            del out[at : at + draw(st.integers(1, 600))]
        elif how == "insert":
            out[at:at] = draw(st.binary(max_size=600))
        elif how == "truncate":
            del out[at:]
    return bytes(out)


def read_or_refuse(data: bytes) -> None:
    with contextlib.suppress(h.ProcedureError):
        arc = ar.read_any(data)
        if isinstance(arc, ar.Archive):
            for text in ddl.split_statements(arc.install_sql):
                ddl.parse(text, loader=lambda body: b"")


@fuzz(250)
@given(data=st.data())
def test_a_damaged_archive_is_read_or_refused(packed: bytes, data: st.DataObject) -> None:
    plain = archive_of()
    read_or_refuse(data.draw(mutated(data.draw(st.sampled_from([packed, plain])))))


toml_values = st.one_of(
    numbers,
    strings.map(lambda s: s.replace("\x00", "")),
    st.sampled_from(
        [
            "true",
            "false",
            "inf",
            "nan",
            "-0",
            "1979-05-27",
            "1979-05-27T07:32:00Z",
            "07:32:00",
            "[]",
            "[1, 'a']",
            "{}",
            "{ fuel = 1.5 }",
            "{ fuel = true }",
            "{ timeout_seconds = inf }",
            "{ a = { b = { c = 1 } } }",
            "[" * 2000 + "]" * 2000,
            '"\\u0000"',
            '"a\\nb"',
            "0x7f",
            "1_000",
            "'''multi\nline'''",
        ]
    ),
)
toml_keys = st.sampled_from(
    [
        "format",
        "name",
        "version",
        "description",
        "license",
        "procedures",
        "files",
        "file",
        "abi",
        "export",
        "signature",
        "capabilities",
        "limits",
        "limits.fuel",
        "limits.timeout_seconds",
        "format.a.b",
        '"install.sql"',
        '"wasm/numeric.wasm"',
        "extra",
    ]
)


@fuzz(250)
@given(data=st.data())
def test_a_mutated_manifest_is_parsed_or_refused(data: st.DataObject) -> None:
    lines = ar.Manifest("m", "1.0.0", (SPEC,), {"install.sql": "0" * 64}).to_toml().splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(lines)))
        line = f"{data.draw(toml_keys)} = {data.draw(toml_values)}"
        if data.draw(st.booleans()) and at < len(lines):
            lines[at] = line
        else:
            lines.insert(at, data.draw(st.sampled_from([line, "[[procedures]]", "[files]", "[x]"])))
    with contextlib.suppress(ar.ArchiveError):
        ar.parse_manifest("\n".join(lines).encode("utf-8", "surrogatepass"))


@fuzz(150)
@given(install=st.lists(statements(), max_size=3), data=st.data())
def test_an_install_script_is_installed_or_refused(
    fuzz_db: h.Database, install: list[str], data: st.DataObject
) -> None:
    """Install scripts hold any DDL: every statement is parsed and checked
    against the manifest, and what does not fit is refused whole."""
    valid = ar.install_statements(ar.Manifest("m", "1.0.0", (SPEC,), {}))
    script = ";\n".join(
        [valid.rstrip().rstrip(";"), *install] if data.draw(st.booleans()) else install
    )
    encoded = script.encode("utf-8", "surrogatepass")
    with contextlib.suppress(h.ProcedureError):
        fuzz_db.install_extension(archive_of(install=encoded or b";"))
    with contextlib.suppress(h.ProcedureError):
        fuzz_db.execute("DROP EXTENSION IF EXISTS m")


# --- PostgreSQL wire decoders ---------------------------------------------------------

WIRE_ERRORS = (pgwire.WireError, protocol.ProtocolViolation, h.ProcedureError)
OIDS = [
    codec.OID_BOOL,
    codec.OID_BYTEA,
    codec.OID_INT2,
    codec.OID_INT4,
    codec.OID_INT8,
    codec.OID_OID,
    codec.OID_TEXT,
    codec.OID_VARCHAR,
    codec.OID_FLOAT4,
    codec.OID_FLOAT8,
    codec.OID_NUMERIC,
    codec.OID_UUID,
    codec.OID_JSON,
    codec.OID_JSONB,
    codec.OID_UNKNOWN,
]
param_bytes = st.one_of(
    st.binary(max_size=40),
    st.from_regex(r"\s*-?[0-9]{1,30}(\.[0-9]{0,12})?([eE][-+]?[0-9]{1,3})?\s*", fullmatch=True).map(
        str.encode
    ),
    st.sampled_from(
        [
            b"NaN",
            b"Infinity",
            b"-inf",
            b"t",
            b"off",
            b"\\x0g",
            b"\\x00ff",
            b"\\\\\\123\\9",
            b"\xff",
            b"9" * 5000,
            b"1e",
            b"\x00" * 8,
            b"\x7f\xff\x7f\xff\x00\x00\x00\x00",
            b"\x01{}",
            b"\x02",
        ]
    ),
)


@fuzz(1000)
@given(
    data=param_bytes,
    oid=st.one_of(st.sampled_from(OIDS), st.integers(0, 2**32 - 1)),
    binary=st.booleans(),
    index=st.integers(0, 2**15),
)
def test_wire_parameters_decode_or_fail_with_a_sqlstate(
    data: bytes, oid: int, binary: bool, index: int
) -> None:
    with contextlib.suppress(WIRE_ERRORS):
        codec.decode_param(data, oid, binary, index)


wire_sql = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "SELECT",
                "INSERT",
                "UPDATE",
                "DELETE",
                "WITH",
                "SET",
                "SHOW",
                "BEGIN",
                "COMMIT",
                "$1",
                "$2",
                "$" + "9" * 30,
                "$" + "9" * 5000,
                "$",
                "$$",
                "$a$",
                "?",
                "?1",
                "'",
                "'$1'",
                '"',
                "--",
                "\n",
                "/*",
                "*/",
                ";",
                "(",
                ")",
                "x",
                "VALUES",
            ]
        ),
        text,
    ),
    max_size=20,
).map(" ".join)


@fuzz(1000)
@given(sql=wire_sql, columns=st.lists(st.just("c"), max_size=2), changes=st.integers(0, 2**63))
def test_wire_statement_helpers_answer_or_fail_typed(
    sql: str, columns: list[str], changes: int
) -> None:
    for call in (
        lambda: pgwire.translate_placeholders(sql),
        lambda: pgwire.command_tag(sql, Result(columns, [(1,)] if columns else [], changes)),
    ):
        with contextlib.suppress(WIRE_ERRORS):
            call()


body_ops = st.lists(
    st.one_of(
        st.tuples(st.just("take"), st.integers(-2, 70)),
        st.tuples(st.sampled_from(["int16", "int32", "byte", "cstring", "end"]), st.just(0)),
    ),
    max_size=12,
)


@fuzz(1000)
@given(data=st.binary(max_size=64), ops=body_ops)
def test_wire_message_bodies_read_or_fail_as_protocol_violations(
    data: bytes, ops: list[tuple[str, int]]
) -> None:
    body = protocol.Body(data)
    for op, n in ops:
        reader: Any = getattr(body, op)
        with contextlib.suppress(WIRE_ERRORS):
            reader(n) if op == "take" else reader()


class _Sasl:
    """The connection's side of a SCRAM exchange, answering with fuzzed bytes."""

    def __init__(self, messages: list[bytes]) -> None:
        self.messages = messages

    def send_auth(self, code: int, payload: bytes = b"") -> None:
        pass

    def read_sasl(self) -> protocol.Body:
        if not self.messages:
            raise protocol.Disconnected("no more")
        return protocol.Body(self.messages.pop(0))


sasl_text = st.one_of(
    st.binary(max_size=80),
    st.lists(
        st.sampled_from(["n", "y", "p=tls-server-end-point", ",", "n=", "r=", "c=", "p=", "a=",
                         "m=", "biws", "x", "=", "\0", "\xff", "abc"]),
        max_size=16,
    ).map(lambda parts: "".join(parts).encode("utf-8", "surrogateescape")),
)  # fmt: skip


@fuzz(300)
@given(
    mechanism=st.sampled_from([b"SCRAM-SHA-256", b"SCRAM-SHA-256-PLUS", b"", b"x\xff"]),
    first=sasl_text,
    final=sasl_text,
    length_delta=st.integers(-3, 3),
    binding=st.sampled_from([None, b"\1" * 32]),
)
def test_a_scram_exchange_authenticates_nobody_it_should_not(
    mechanism: bytes, first: bytes, final: bytes, length_delta: int, binding: bytes | None
) -> None:
    from heliosdb_wasm.pgwire import auth
    from heliosdb_wasm.roles import make_verifier

    role = h.Role("alice", True, 0.0, 0.0, make_verifier("pw", iterations=1))
    initial = mechanism + b"\0" + struct.pack("!i", len(first) + length_delta) + first
    wire = _Sasl([initial, final])
    with pytest.raises((protocol.Terminate, protocol.ProtocolViolation, protocol.Disconnected)):
        auth.scram(wire, "alice", lambda: auth.Credentials.of(role, "alice", b"s"), binding)


role_words = st.lists(
    st.sampled_from(["WITH", "LOGIN", "NOLOGIN", "PASSWORD", "ENCRYPTED", "NULL", "'s3cr3t'",
                     "$$s3cr3t$$", "E", "'s3cr3t", "SUPERUSER", "IF", "EXISTS", ",", "x", '"Q"',
                     "CURRENT_USER", "RENAME", "TO", ";", "\0", "nosuperuser"]),
    max_size=8,
)  # fmt: skip


@fuzz(300)
@given(verb=st.sampled_from(["CREATE ROLE", "ALTER USER", "DROP ROLE"]), words=role_words)
def test_role_statements_parse_or_fail_without_quoting_a_password(
    verb: str, words: list[str]
) -> None:
    from heliosdb_wasm.pgwire import roles

    sql = " ".join([verb, *words])
    try:
        roles._parse(sql)
    except pgwire.WireError as exc:
        assert "s3cr3t" not in exc.message and "s3cr3t" not in (exc.hint or "")
