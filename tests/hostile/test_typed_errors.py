"""Bad input gets a typed error naming what was wrong, in bounded time.

Each case here was once a raw Python exception (ctypes.ArgumentError,
OverflowError, ValueError, RecursionError, UnicodeDecodeError), a silently
wrapped value, a blocked reader or a quadratic scan. Now it is a
ProcedureError with its code: DDL ``syntax-error``, archives
``invalid-archive``, values ``invalid-argument``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import apsw
import pytest
import wasmtime
from click.testing import CliRunner

import heliosdb_wasm as h
from conftest import b64, registry_snapshot, tar_of, wasm_of
from heliosdb_wasm import archive as ar
from heliosdb_wasm import ddl, policy
from heliosdb_wasm.cli import main

ADD = "(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
BODY = f"AS $wasm${b64(wasm_of('numeric'))}$wasm$"
ADD_BODY = f"USING EXPORT 'add_i64' {BODY}"
HUGE = "9" * 400


# --- DDL: numbers, text, paths ----------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        # Limits: integers must be whole, every number bounded and finite.
        (f"CREATE PROCEDURE p{ADD} WITH (fuel = 1.5) {ADD_BODY}", "fuel needs a whole number"),
        (f"CREATE PROCEDURE p{ADD} WITH (pool_size = 2.0) {ADD_BODY}", "whole number"),
        (f"CREATE PROCEDURE p{ADD} WITH (fuel = 99999999999999999999) {ADD_BODY}", "at most"),
        (
            f"CREATE PROCEDURE p{ADD} WITH (memory_bytes = 9223372036854775808) {ADD_BODY}",
            "at most",
        ),
        (f"CREATE PROCEDURE p{ADD} WITH (timeout_seconds = {HUGE}) {ADD_BODY}", "at most"),
        (f"CREATE PROCEDURE p{ADD} WITH (timeout_seconds = {HUGE}.5) {ADD_BODY}", "at most"),
        (f"CREATE PROCEDURE p{ADD} WITH (timeout_seconds = 31536001) {ADD_BODY}", "at most"),
        (f"CREATE PROCEDURE p{ADD} GROW TO 9007199254740992 GB {ADD_BODY}", "memory size"),
        (f"CREATE PROCEDURE p{ADD} GROW TO {HUGE} MB {ADD_BODY}", "too large"),
        # Every other integer: versions, priorities, type lengths.
        ("ALTER PROCEDURE p USE VERSION 99999999999999999999", "too large"),
        ("ALTER PROCEDURE p USE VERSION 9223372036854775807", "too large"),
        (f"ALTER PROCEDURE p VERSION {HUGE} {BODY}", "too large"),
        (
            f"CREATE PROCEDURE p(a VARCHAR({'9' * 5000})) RETURNS BIGINT LANGUAGE wasm {BODY}",
            "too large",
        ),
        (f"CREATE PLUGIN pl PRIORITY {HUGE} {BODY}", "too large"),
        (f"ALTER PLUGIN pl PRIORITY {HUGE}", "too large"),
        # Text SQLite cannot take: NUL anywhere, lone surrogates.
        ("SELECT '\x00'", "NUL"),
        ("SELECT 1; -- \x00", "NUL"),
        ("CREATE EXTENSION e FROM '\x00'", "NUL"),
        ("CREATE EXTENSION e FROM 'a.tar' KEY '\x00'", "NUL"),
        (f'CREATE PROCEDURE "p\x00"{ADD} {ADD_BODY}', "NUL"),
        (f"CREATE PROCEDURE p{ADD} USING EXPORT 'add\x00' {BODY}", "NUL"),
        ("CREATE PROCEDURE p() RETURNS BIGINT LANGUAGE wasm AS $wasm$file://\x00$wasm$", "NUL"),
        ("CREATE FUNCTION f(a BIGINT) RETURNS BIGINT AS WASM FROM LOCAL INFILE '\x00'", "NUL"),
        ("SELECT '\ud800'", "surrogate"),
        ("CREATE EXTENSION e FROM '\udcff'", "surrogate"),
        (f'CREATE PROCEDURE "\udfff"{ADD} {ADD_BODY}', "surrogate"),
    ],
)
def test_bad_ddl_numbers_and_text_are_syntax_errors(
    db: h.Database, sql: str, fragment: str
) -> None:
    before = registry_snapshot(db)
    with pytest.raises(h.DdlError, match=fragment) as err:
        db.execute(sql)
    assert err.value.code == "syntax-error"
    assert registry_snapshot(db) == before


def test_every_limit_at_its_maximum_is_usable(db: h.Database) -> None:
    """The maxima the parser allows are ones the engine can apply."""
    for i, limit in enumerate(fields(h.Limits)):
        top = policy.MAX_INTEGER if limit.type in (int, "int") else int(policy.MAX_SECONDS)
        db.execute(f"CREATE PROCEDURE p{i}{ADD} WITH ({limit.name} = {top}) {ADD_BODY}")
        assert db.execute(f"SELECT p{i}(40, 2)").scalar() == 42, limit.name
    db.execute(f"CREATE PROCEDURE grown{ADD} GROW TO 8589934591 GB {ADD_BODY}")
    assert db.execute("SELECT grown(1, 2)").scalar() == 3


def test_the_largest_version_leaves_room_for_the_next(db: h.Database) -> None:
    db.execute(f"CREATE PROCEDURE p{ADD} {ADD_BODY}")
    db.execute(f"ALTER PROCEDURE p VERSION {ddl.MAX_VERSION} {BODY}")
    db.execute(f"CREATE OR REPLACE PROCEDURE p{ADD} {ADD_BODY}")
    assert [v.version for v in db.versions("p")] == [1, ddl.MAX_VERSION, ddl.MAX_VERSION + 1]
    db.execute(f"ALTER PROCEDURE p USE VERSION {ddl.MAX_VERSION}")


def _unblock(fifo: Path) -> None:
    """Wake a reader blocked opening ``fifo`` (it then reads end of file)."""
    with contextlib.suppress(OSError):  # no reader waiting
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def _refused_without_blocking(fifo: Path, action: Callable[[], object]) -> h.ProcedureError:
    """``action`` (which opens ``fifo``) must fail with a typed error at
    once, not block waiting for a writer."""
    errors: list[h.ProcedureError] = []

    def run() -> None:
        try:
            action()
        except h.ProcedureError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5)
    try:
        assert not thread.is_alive(), "the reader blocked on the FIFO"
    finally:
        _unblock(fifo)
        thread.join(5)
    assert len(errors) == 1
    return errors[0]


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE EXTENSION e FROM '{path}'",
        "CREATE PROCEDURE p() RETURNS BIGINT LANGUAGE wasm AS $wasm$file://{path}$wasm$",
        "CREATE FUNCTION f(a BIGINT) RETURNS BIGINT AS WASM ABI BASIC FROM LOCAL INFILE '{path}'",
    ],
)
def test_a_fifo_named_in_ddl_is_refused_not_waited_for(
    db: h.Database, tmp_path: Path, statement: str
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    error = _refused_without_blocking(fifo, lambda: db.execute(statement.format(path=fifo)))
    assert "not a regular file" in error.message


def test_a_key_file_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "key.pub"
    os.mkfifo(fifo)
    error = _refused_without_blocking(fifo, lambda: ar.load_public_key(str(fifo)))
    assert isinstance(error, ar.ArchiveError) and "not a regular file" in error.message
    with pytest.raises(ar.ArchiveError, match="not a file name"):
        ar.load_public_key("key\x00.pub")


def test_read_file_takes_regular_files_up_to_its_limit(tmp_path: Path) -> None:
    small = tmp_path / "m.wasm"
    small.write_bytes(b"0123456789")
    assert ddl.read_file(small, 10) == b"0123456789"
    with pytest.raises(OSError, match="larger than 9 bytes"):
        ddl.read_file(small, 9)
    for other in (Path("/dev/zero"), tmp_path):  # a device never ends; a folder
        with pytest.raises(OSError):
            ddl.read_file(other, 10)


# --- archives -----------------------------------------------------------------------

SPEC = ar.ProcedureSpec(
    name="add_i64",
    file="wasm/numeric.wasm",
    abi="basic",
    signature="(a BIGINT, b BIGINT) RETURNS BIGINT",
)


def archive_of(members: dict[str, bytes] | None = None, manifest: bytes | None = None) -> bytes:
    """A HeliosDB archive of ``members`` (default: the numeric module and
    its install.sql) whose manifest lists them with their true digests."""
    files = {"wasm/numeric.wasm": wasm_of("numeric")}
    draft = ar.Manifest("math", "1.0.0", (SPEC,), {})
    files[ar.INSTALL] = ar.install_statements(draft).encode()
    files.update(members or {})
    digests = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
    text = ar.Manifest("math", "1.0.0", (SPEC,), digests).to_toml().encode()
    return tar_of({ar.MANIFEST: manifest if manifest is not None else text, **files})


def test_the_archive_builder_builds_installable_archives(db: h.Database) -> None:
    db.install_extension(archive_of())
    assert db.execute("SELECT add_i64(40, 2)").scalar() == 42


def test_a_deeply_nested_manifest_is_an_archive_error(tmp_path: Path) -> None:
    deep = b"format = " + b"[" * 10_000 + b"]" * 10_000 + b"\n"
    with pytest.raises(ar.ArchiveError, match="nested too deeply") as err:
        ar.read_any(archive_of(manifest=deep))
    assert err.value.code == "invalid-archive"
    path = tmp_path / "deep.tar"
    path.write_bytes(archive_of(manifest=deep))
    result = CliRunner().invoke(main, ["verify", str(path)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "nested too deeply" in result.output


def test_an_install_script_that_is_not_utf8_is_an_archive_error(db: h.Database) -> None:
    before = registry_snapshot(db)
    bad = archive_of({ar.INSTALL: b"CREATE PROCEDURE \xff\xfe;"})
    with pytest.raises(ar.ArchiveError, match=r"install.sql is not UTF-8 text \(byte 17\)"):
        db.install_extension(bad)
    assert registry_snapshot(db) == before


@pytest.mark.parametrize(
    ("members", "fragment"),
    [
        ({"wit/numeric.wit": b"package a:b;\n\xc3("}, "wit/numeric.wit is not UTF-8"),
        ({"docs/README.SQL": b"\x80"}, "README.SQL is not UTF-8"),
    ],
)
def test_text_members_must_be_utf8(members: dict[str, bytes], fragment: str) -> None:
    with pytest.raises(ar.ArchiveError, match=fragment):
        ar.read_any(archive_of(members))
    ar.read_any(archive_of({"docs/logo.png": b"\x89PNG\xff"}))  # other members are bytes


TOP = {"format": "1", "name": '"math"', "version": '"1.0.0"'}
PROC = {"name": '"add_i64"', "file": '"wasm/numeric.wasm"', "abi": '"basic"'}
FILES = '[files]\n"wasm/numeric.wasm" = "' + "0" * 64 + '"\n'


def manifest_text(
    top: dict[str, str | None] | None = None, proc: dict[str, str] | None = None
) -> bytes:
    """The template with ``top`` and ``proc`` fields replaced (None: left out)."""
    lines = [f"{k} = {v}" for k, v in {**TOP, **(top or {})}.items() if v is not None]
    lines += ["[[procedures]]", *(f"{k} = {v}" for k, v in {**PROC, **(proc or {})}.items())]
    return ("\n".join(lines) + "\n" + FILES).encode()


def test_the_manifest_template_is_valid() -> None:
    assert ar.parse_manifest(manifest_text()).procedures[0].name == "add_i64"
    limits = {"fuel": "9223372036854775807", "timeout_seconds": "1"}
    inline = "{ " + ", ".join(f"{k} = {v}" for k, v in limits.items()) + " }"
    spec = ar.parse_manifest(manifest_text(proc={"limits": inline})).procedures[0]
    assert spec.limits == {"fuel": 2**63 - 1, "timeout_seconds": 1}


@pytest.mark.parametrize(
    ("top", "proc", "fragment"),
    [
        # format: exactly the integer 1
        ({"format": "true"}, {}, "format must be 1, not a bool"),
        ({"format": "1.0"}, {}, "format must be 1, not a float"),
        ({"format": '"1"'}, {}, "format must be 1"),
        ({"format": "9" * 5000}, {}, "not valid TOML"),
        ({"format": "{" + "a = { " * 5000 + "}" * 5001}, {}, "TOML: nested too deeply"),
        ({"format": None, "format.a" + ".a" * 3000: "1"}, {}, "format must be 1, not a dict"),
        # names and versions are matched whole (a newline is not a $)
        ({"name": '"math\\n"'}, {}, "must match"),
        ({"name": "1"}, {}, "name must be a string"),
        ({"version": '"1.0.0\\n"'}, {}, "MAJOR.MINOR.PATCH"),
        ({"version": "[]"}, {}, "version must be a string"),
        ({"description": "{}"}, {}, "description must be a string"),
        ({"license": "1"}, {}, "license must be a string"),
        # every procedure field, the wrong TOML type
        ({}, {"name": "1"}, "name must be a string"),
        ({}, {"abi": "1"}, "abi must be a string"),
        ({}, {"file": "[]"}, "file must be a string"),
        ({}, {"export": "1"}, "export must be a string"),
        ({}, {"signature": "[]"}, "signature must be a string"),
        ({}, {"capabilities": '"read:t"'}, "list of strings"),
        ({}, {"capabilities": "[1]"}, "list of strings"),
        ({}, {"description": "1.5"}, "description must be a string"),
        ({}, {"limits": '"fuel"'}, "limits must map"),
        # limits: known names, whole numbers where Limits has integers, bounded
        ({}, {"limits": "{ fuel = 1.5 }"}, "fuel needs a whole number"),
        ({}, {"limits": "{ fuel = true }"}, "fuel needs a number"),
        ({}, {"limits": "{ fuel = { a = 1 } }"}, "fuel needs a number"),
        ({}, {"limits": "{ fuel = 9223372036854775808 }"}, "at most"),
        ({}, {"limits": "{ fuel = " + "9" * 5000 + " }"}, "not valid TOML"),
        ({}, {"limits": "{ timeout_seconds = inf }"}, "at most"),
        ({}, {"limits": "{ timeout_seconds = nan }"}, "at most"),
        ({}, {"limits": "{ speed = 1 }"}, "unknown limit 'speed'"),
    ],
)
def test_every_manifest_field_is_checked(
    top: dict[str, str | None], proc: dict[str, str], fragment: str
) -> None:
    with pytest.raises(ar.ArchiveError, match=fragment) as err:
        ar.parse_manifest(manifest_text(top, proc))
    assert err.value.code == "invalid-archive"


@pytest.mark.parametrize(
    "data", [b"\xff\xfe", "format = 1\nname = 'é'\n".encode("latin-1")], ids=["bom", "latin-1"]
)
def test_a_manifest_that_is_not_utf8_is_an_archive_error(data: bytes) -> None:
    with pytest.raises(ar.ArchiveError, match=r"manifest\.toml is not UTF-8"):
        ar.read_any(archive_of(manifest=data))


# --- values -------------------------------------------------------------------------

TRUTH = wasmtime.wat2wasm('(module (func (export "truth") (param i32) (result i32) local.get 0))')


@pytest.fixture
def numeric(db: h.Database) -> h.Database:
    for name, signature in [
        ("add_i64", ADD),
        ("add_i32", "(a INTEGER, b INTEGER) RETURNS INTEGER LANGUAGE wasm"),
        ("identity_f64", "(a DOUBLE) RETURNS DOUBLE LANGUAGE wasm"),
    ]:
        db.execute(f"CREATE PROCEDURE {name}{signature} {BODY}")
    db.execute(
        "CREATE PROCEDURE truth(b BOOLEAN) RETURNS INTEGER LANGUAGE wasm"
        f" AS $wasm${b64(TRUTH)}$wasm$"
    )
    return db


@pytest.mark.parametrize(
    ("name", "columns", "fragment"),
    [
        (
            "add_i64",
            [[1, 2**63], [0, 0]],
            "argument a: 9223372036854775808 is out of range for BIGINT",
        ),
        ("add_i64", [[0], [-(2**63) - 1]], "argument b: -9223372036854775809 is out of range"),
        ("add_i64", [[2**64], [0]], "out of range for BIGINT"),
        ("add_i64", [[10**5000], [0]], "an integer of 16610 bits is out of range for BIGINT"),
        ("add_i32", [[2**31], [0]], "out of range for INTEGER"),
        ("identity_f64", [[2**1030]], "an integer of 1031 bits is out of range for DOUBLE"),
    ],
)
def test_a_batch_never_wraps_a_value(
    numeric: h.Database, name: str, columns: list[list[Any]], fragment: str
) -> None:
    with pytest.raises(h.InvalidArgument, match=fragment):
        numeric.call_batch(name, columns)
    with pytest.raises(h.InvalidArgument, match=fragment):
        numeric.call(name, *[column[-1] for column in columns])


def test_a_batch_converts_as_the_row_path_does(numeric: h.Database) -> None:
    values = [2, 0, True, False, 2**40, -1]
    assert numeric.call_batch("truth", [values]) == [numeric.call("truth", v) for v in values]
    assert numeric.call_batch("truth", [values]) == [1, 0, 1, 0, 1, 1]
    edge = [2**63 - 1, -(2**63), 0]
    assert numeric.call_batch("add_i64", [edge, [0, 0, 0]]) == edge


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (2**63, "parameter.*9223372036854775808 is out of range for a 64-bit integer"),
        (-(2**63) - 1, "out of range for a 64-bit integer"),
        pytest.param(10**5000, "an integer of 16610 bits", id="10**5000"),
        ("\ud800", r"a lone surrogate '\\ud800' \(at 0\) has no UTF-8 form"),
        ("ok \udfff", r"lone surrogate '\\udfff' \(at 3\)"),
        (object(), "SQLite cannot store a value of type object"),
        ([1], "SQLite cannot store a value of type list"),
    ],
)
def test_an_sql_parameter_sqlite_cannot_hold_is_an_invalid_argument(
    db: h.Database, value: object, fragment: str
) -> None:
    with pytest.raises(h.InvalidArgument, match=fragment) as err:
        db.execute("SELECT ?", [value])
    assert err.value.code == "invalid-argument"


def test_every_value_sqlite_can_hold_still_binds(db: h.Database) -> None:
    values: list[Any] = [2**63 - 1, -(2**63), True, 1e308, "é \U0001f600", b"\x00", None]
    got = db.execute("SELECT " + ", ".join("?" * len(values)), values).rows[0]
    assert got == (2**63 - 1, -(2**63), 1, 1e308, "é \U0001f600", b"\x00", None)
    blobs = [bytearray(b"ab"), memoryview(b"cd"), apsw.zeroblob(2)]
    assert db.execute("SELECT ?, ?, ?", blobs).rows == [(b"ab", b"cd", b"\x00\x00")]


# --- the statement splitter: linear time, memory of the statements --------------


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _peak(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _tokenize(sql: str) -> None:
    with contextlib.suppress(h.DdlError):
        ddl.tokenize(sql)


@pytest.mark.parametrize("opener", ["[", '"', "`", "/*", "$a$", "'x", "$$", "CREATE TRIGGER x;"])
def test_unterminated_openers_are_scanned_once(opener: str) -> None:
    """150 KB of an opener that never closes: once took 16 s (quadratic)."""
    sql = "SELECT " + opener * (150_000 // len(opener))
    assert _timed(lambda: _tokenize(sql)) < 1.0
    try:
        assert _timed(lambda: ddl.split_statements(sql)) < 1.0
    except h.DdlError as exc:  # an unterminated $tag$ body
        assert "unterminated" in exc.message


def test_a_trigger_with_many_statements_is_split_in_linear_time() -> None:
    sql = "CREATE TRIGGER t AFTER INSERT ON x BEGIN " + "SELECT 1;" * 20_000 + " END; SELECT 2"
    parts: list[str] = []
    assert _timed(lambda: parts.extend(ddl.split_statements(sql))) < 0.5
    assert len(parts) == 2 and parts[0].endswith("END") and parts[1] == "SELECT 2"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT '" + "x" * 10_000_000 + "'",  # a 10 MB literal: once 2.6 GB
        "SELECT " + "1," * 1_000_000 + "1",  # 2 MB of tokens: once 266 MB
        "SELECT $b$" + "y" * 5_000_000 + "$b$; SELECT 'x' ; -- ;\n",
    ],
    ids=["literal", "token-dense", "dollar"],
)
def test_splitting_costs_the_statements_not_the_bytes(sql: str) -> None:
    assert _peak(lambda: ddl.split_statements(sql)) < 5 * len(sql)
    assert _timed(lambda: ddl.split_statements(sql)) < 1.0


def test_parsing_a_call_does_not_tokenize_its_arguments() -> None:
    sql = "CALL p(" + "1," * 1_000_000 + "1)"
    stmt: list[Any] = []
    assert _peak(lambda: stmt.append(ddl.parse(sql))) < 3 * len(sql)
    assert isinstance(stmt[0], ddl.Call) and stmt[0].args_sql.endswith(",1")


@pytest.mark.parametrize(
    "overrides",
    [{"fuel": 1.5}, {"fuel": 2**64}, {"timeout_seconds": float("nan")}, {"pool_size": True}],
)
def test_the_python_api_refuses_ill_typed_limits(overrides: dict[str, object]) -> None:
    with pytest.raises(h.InvalidArgument, match="limit"):
        h.Limits(**overrides)  # type: ignore[arg-type]
    with pytest.raises(h.InvalidArgument, match="limit"):
        h.Limits().with_overrides(**overrides)


def test_a_bad_sql_parameter_is_named(tmp_path: Path) -> None:
    with h.Database.open(":memory:") as db, pytest.raises(h.InvalidArgument, match="parameter 2"):
        db.execute("SELECT ?, ?", [1, 2**63])


def test_a_lone_surrogate_argument_is_refused_before_the_guest_runs(tmp_path: Path) -> None:
    with h.Database.open(":memory:") as db:
        db.execute(
            "CREATE PROCEDURE echo(s TEXT) RETURNS TEXT LANGUAGE wasm USING EXPORT 'echo_text'"
            f" AS $wasm${b64(wasm_of('text'))}$wasm$"
        )
        with pytest.raises(h.InvalidArgument, match="surrogate"):
            db.call("echo", "a\ud800")
        assert db.call("echo", "ok") == "ok"


def test_hostile_plugin_config_and_placeholders_are_typed() -> None:
    from heliosdb_wasm import sqlast
    from heliosdb_wasm.plugins import manifest

    stmt = ddl.parse(
        "CREATE PLUGIN pl CONFIG '" + "[" * 100_000 + f"' AS $wasm${b64(wasm_of('numeric'))}$wasm$"
    )
    assert isinstance(stmt, ddl.CreatePlugin)
    with pytest.raises(h.InvalidArgument, match="CONFIG"):
        manifest.spec_from_ddl(stmt)
    with pytest.raises(h.InvalidArgument, match="32766"):
        sqlast._named_placeholders("SELECT ?" + "9" * 5000)


def test_a_huge_numeric_parameter_decodes_in_bounded_time() -> None:
    import time as _time

    from heliosdb_wasm.pgwire import codec

    start = _time.perf_counter()
    assert codec.decode_param(b"1e1000000", codec.OID_NUMERIC, False, 0) == float("inf")
    assert _time.perf_counter() - start < 1.0
