"""SingleStore compatibility at the SQL level (docs/singlestore.md): CREATE
FUNCTION ... AS WASM in every form, and SingleStore's extension archives.
The canonical ABI itself is tested in test_singlestore_abi.py."""

from __future__ import annotations

import base64
import io
import tarfile
from pathlib import Path

import pytest
import wasmtime

import heliosdb_wasm as h
from conftest import wasm_of
from heliosdb_wasm import ddl
from heliosdb_wasm.archive import ArchiveError

NUMERIC = wasm_of("numeric")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def db() -> h.Database:
    return h.Database.open(":memory:")


def test_basic_abi_function_from_base64_and_local_infile(db: h.Database, tmp_path: Path) -> None:
    db.execute(
        "CREATE FUNCTION add_i64(a BIGINT NOT NULL, b BIGINT NOT NULL) RETURNS BIGINT NOT NULL"
        f" AS WASM ABI BASIC FROM BASE64 '{b64(NUMERIC)}'"
    )
    (tmp_path / "numeric.wasm").write_bytes(NUMERIC)
    db.base_dir = tmp_path
    db.execute(
        "CREATE FUNCTION times(a DOUBLE, b DOUBLE) RETURNS DOUBLE AS WASM ABI BASIC"
        " GROW TO 1048576 FROM LOCAL INFILE 'numeric.wasm' USING EXPORT 'mul_f64'"
    )
    assert db.execute("SELECT add_i64(40, 2), times(1.5, 4)").rows == [(42, 6.0)]
    (version,) = [p for p in db.procedures() if p.name == "times"]
    assert version.limit_overrides == {"memory_bytes": 1048576}
    assert version.export == "mul_f64"


def test_singlestore_types_map_to_the_basic_abi(db: h.Database) -> None:
    # INT/SMALLINT/TINYINT/BOOL -> i32, FLOAT -> f32, TIMESTAMP -> i64.
    db.execute(
        "CREATE FUNCTION add32(a INT, b SMALLINT) RETURNS TINYINT AS WASM ABI BASIC"
        f" FROM BASE64 '{b64(NUMERIC)}' USING EXPORT 'add_i32'"
    )
    db.execute(
        "CREATE FUNCTION half(a FLOAT) RETURNS FLOAT AS WASM ABI BASIC"
        f" FROM BASE64 '{b64(NUMERIC)}' USING EXPORT 'half_f32'"
    )
    db.execute(
        "CREATE FUNCTION later(a TIMESTAMP, b TIMESTAMP) RETURNS TIMESTAMP AS WASM ABI BASIC"
        f" FROM BASE64 '{b64(NUMERIC)}' USING EXPORT 'add_i64'"
    )
    assert db.execute("SELECT add32(2, 3), half(5), later(1700000000, 60)").rows == [
        (5, 2.5, 1700000060)
    ]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("CREATE FUNCTION f AS WASM FROM BASE64 'AGFzbQEAAAA='", "needs WITH WIT"),
        ("CREATE FUNCTION f AS WASM ABI BASIC FROM BASE64 'AGFzbQEAAAA='", "parameter list"),
        ("CREATE FUNCTION f() RETURNS INT AS WASM ABI FANCY FROM BASE64 'AGFzbQEAAAA='", "BASIC"),
        ("CREATE FUNCTION f() RETURNS INT AS WASM ABI BASIC FROM BASE64 '!!!'", "base64"),
        (
            "CREATE FUNCTION f() RETURNS INT AS WASM ABI BASIC FROM BASE64 'aGVsbG8='",
            "not WebAssembly",
        ),
        (
            "CREATE FUNCTION f() RETURNS INT AS WASM ABI BASIC FROM LOCAL INFILE '/nope.wasm'",
            "cannot read",
        ),
        (
            "CREATE FUNCTION f() RETURNS INT AS WASM ABI BASIC FROM BASE64 'AGFzbQEAAAA=' junk",
            "unexpected",
        ),
    ],
)
def test_bad_create_function_is_a_typed_error(db: h.Database, sql: str, message: str) -> None:
    with pytest.raises(h.ProcedureError, match=message):
        db.execute(sql)
    assert db.procedures() == []


def test_create_function_parses_every_clause() -> None:
    stmt = ddl.parse(
        "CREATE OR REPLACE FUNCTION split_str AS WASM ABI CANONICAL GROW TO 65536"
        f" FROM BASE64 '{b64(NUMERIC)}' WITH WIT FROM BASE64 '{b64(b'split-str: func() -> u8')}'"
        " USING EXPORT 'split-str'"
    )
    assert isinstance(stmt, ddl.CreateProcedure)
    assert (stmt.name, stmt.replace, stmt.abi, stmt.export, stmt.signature) == (
        "split_str",
        True,
        "singlestore",
        "split-str",
        None,
    )
    assert stmt.wit == "split-str: func() -> u8"
    assert stmt.limit_overrides == {"memory_bytes": 65536}
    table = ddl.parse(
        "CREATE FUNCTION t(s TEXT) RETURNS TABLE(str TEXT, idx INT) AS WASM"
        f" FROM BASE64 '{b64(NUMERIC)}' WITH WIT FROM BASE64 '{b64(b'x')}'"
    )
    assert isinstance(table, ddl.CreateProcedure) and table.signature is not None
    assert [c.name for c in table.signature.table or ()] == ["str", "idx"]


def tar(members: dict[str, bytes], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


SCRIPT = b"""
CREATE FUNCTION add_i64(a BIGINT, b BIGINT) RETURNS BIGINT AS WASM ABI BASIC
    FROM LOCAL INFILE 'numeric.wasm';
CREATE FUNCTION `mul`(a DOUBLE, b DOUBLE) RETURNS DOUBLE AS WASM ABI BASIC
    FROM LOCAL INFILE 'numeric.wasm' USING EXPORT 'mul_f64';
"""


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_singlestore_archive_installs_as_is(db: h.Database, tmp_path: Path, fmt: int) -> None:
    archive = tmp_path / "mathx.tar"
    archive.write_bytes(tar({"mathx.sql": SCRIPT, "numeric.wasm": NUMERIC}, fmt))
    db.execute(f"CREATE EXTENSION mathx FROM LOCAL INFILE '{archive}'")
    assert db.execute("SELECT add_i64(1, 2), mul(2, 4)").rows == [(3, 8.0)]
    shown = db.execute("SHOW EXTENSIONS")
    assert shown.columns[:3] == ["name", "version", "functions"]
    assert shown.rows[0][0] == "mathx" and "add_i64 v1" in str(shown.rows[0][2])
    with pytest.raises(h.RegistryError, match="already installed"):
        db.execute(f"CREATE EXTENSION mathx FROM BASE64 '{b64(archive.read_bytes())}'")
    db.execute("DROP EXTENSION mathx")
    assert db.procedures() == [] and db.execute("SHOW EXTENSIONS").rows == []
    db.execute(f"CREATE EXTENSION mathx FROM BASE64 '{b64(archive.read_bytes())}'")
    assert db.execute("SELECT add_i64(2, 2)").scalar() == 4


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"numeric.wasm": NUMERIC}, "exactly one"),
        ({"a.sql": SCRIPT, "b.sql": SCRIPT, "numeric.wasm": NUMERIC}, "exactly one"),
        ({"mathx.sql": SCRIPT}, "not in the archive"),
        ({"mathx.sql": b"DROP TABLE t;", "numeric.wasm": NUMERIC}, "may only hold CREATE FUNCTION"),
        ({"mathx.sql": b"CREATE AGGREGATE s(INT) RETURNS INT WITH STATE INT;"}, "AGGREGATE"),
        ({"mathx.sql": b"-- nothing\n"}, "creates no function"),
        (
            {
                "mathx.sql": SCRIPT.replace(b"numeric.wasm", b"../etc/passwd"),
                "numeric.wasm": NUMERIC,
            },
            "not in the archive",
        ),
    ],
)
def test_bad_singlestore_archives_install_nothing(
    db: h.Database, members: dict[str, bytes], message: str
) -> None:
    with pytest.raises(ArchiveError, match=message):
        db.execute(f"CREATE EXTENSION mathx FROM BASE64 '{b64(tar(members))}'")
    assert db.procedures() == []
    assert db.execute("SHOW EXTENSIONS").rows == []


def test_a_half_bad_archive_installs_none_of_its_functions(db: h.Database) -> None:
    script = (
        SCRIPT
        + b"CREATE FUNCTION broken(a INT) RETURNS INT AS WASM ABI BASIC FROM LOCAL INFILE 'numeric.wasm';"
    )
    with pytest.raises(h.ProcedureError, match=r"broken|export"):
        db.execute(
            f"CREATE EXTENSION mathx FROM BASE64 '{b64(tar({'mathx.sql': script, 'numeric.wasm': NUMERIC}))}'"
        )
    assert db.procedures() == []


def test_an_archive_may_not_take_over_another_function(db: h.Database) -> None:
    db.execute(
        "CREATE FUNCTION add_i64(a BIGINT, b BIGINT) RETURNS BIGINT AS WASM ABI BASIC"
        f" FROM BASE64 '{b64(NUMERIC)}'"
    )
    with pytest.raises(ArchiveError, match="already exists"):
        db.execute(
            f"CREATE EXTENSION mathx FROM BASE64 '{b64(tar({'mathx.sql': SCRIPT, 'numeric.wasm': NUMERIC}))}'"
        )


EXAMPLES = Path(__file__).parent.parent / "examples" / "singlestore"


@pytest.fixture
def split(tmp_path: Path) -> tuple[Path, Path]:
    """SingleStore's documented examples as a .wasm and its old-dialect .wit."""
    wasm = tmp_path / "split.wasm"
    wasm.write_bytes(wasmtime.wat2wasm((EXAMPLES / "split.wat").read_text()))
    return wasm, EXAMPLES / "split.wit"


def test_canonical_functions_with_the_signature_from_the_wit(
    db: h.Database, split: tuple[Path, Path]
) -> None:
    wasm, wit = split
    db.execute(
        f"CREATE FUNCTION power_of AS WASM FROM LOCAL INFILE '{wasm}'"
        f" WITH WIT FROM LOCAL INFILE '{wit}'"
    )
    db.execute(
        f"CREATE FUNCTION split_str AS WASM FROM BASE64 '{b64(wasm.read_bytes())}'"
        f" WITH WIT FROM BASE64 '{b64(wit.read_bytes())}'"
    )
    # USING EXPORT binds any SQL name to any export.
    db.execute(
        f"CREATE FUNCTION pw(b INT, e INT) RETURNS INT AS WASM FROM LOCAL INFILE '{wasm}'"
        f" WITH WIT FROM LOCAL INFILE '{wit}' USING EXPORT 'power-of'"
    )
    assert db.execute("SELECT power_of(2, 10), pw(3, 3)").rows == [(1024, 27)]
    rows = db.execute("SELECT * FROM split_str('wasm rocks the house', ' ')").rows
    assert rows == [("wasm", 0), ("rocks", 5), ("the", 11), ("house", 15)]
    # A TVF joins like any table, and power_of works per row of it.
    joined = db.execute(
        "SELECT s.str, power_of(2, s.idx) FROM split_str('a,bb,ccc', ',') AS s ORDER BY s.idx"
    ).rows
    assert joined == [("a", 1), ("bb", 4), ("ccc", 32)]
    (version,) = [p for p in db.procedures() if p.name == "split_str"]
    assert version.abi == "singlestore" and version.signature.is_table


def test_canonical_functions_survive_a_reopen(split: tuple[Path, Path], tmp_path: Path) -> None:
    wasm, wit = split
    path = tmp_path / "s2.db"
    with h.Database.open(path) as db:
        db.execute(
            f"CREATE FUNCTION split_str AS WASM FROM LOCAL INFILE '{wasm}'"
            f" WITH WIT FROM LOCAL INFILE '{wit}'"
        )
    with h.Database.open(path) as db:
        assert db.execute("SELECT count(*) FROM split_str('a b c', ' ')").scalar() == 3


def test_a_declared_signature_must_match_the_wit(db: h.Database, split: tuple[Path, Path]) -> None:
    wasm, wit = split
    with pytest.raises(h.AbiError, match="power-of"):
        db.execute(
            f"CREATE FUNCTION power_of(b TEXT, e INT) RETURNS INT AS WASM"
            f" FROM LOCAL INFILE '{wasm}' WITH WIT FROM LOCAL INFILE '{wit}'"
        )
    with pytest.raises(h.ProcedureError, match="WIT"):
        db.execute(
            f"CREATE FUNCTION power_of AS WASM FROM LOCAL INFILE '{wasm}'"
            f" WITH WIT FROM BASE64 '{b64(b'power-of: func(base: s32 -> s32')}'"
        )
    assert db.procedures() == []


def test_a_singlestore_archive_of_canonical_functions(
    db: h.Database, split: tuple[Path, Path]
) -> None:
    wasm, wit = split
    script = (
        b"CREATE FUNCTION power_of AS WASM FROM LOCAL INFILE 'split.wasm'"
        b" WITH WIT FROM LOCAL INFILE 'split.wit';\n"
        b"CREATE FUNCTION split_str RETURNS TABLE AS WASM FROM LOCAL INFILE 'split.wasm'"
        b" WITH WIT FROM LOCAL INFILE 'split.wit';\n"
    ).replace(b" RETURNS TABLE", b"")
    data = tar(
        {"s2demo.sql": script, "split.wasm": wasm.read_bytes(), "split.wit": wit.read_bytes()}
    )
    db.execute(f"CREATE EXTENSION s2demo FROM BASE64 '{b64(data)}'")
    assert db.execute("SELECT power_of(5, 2)").scalar() == 25
    assert db.execute("SELECT group_concat(str, '|') FROM split_str('x-y', '-')").scalar() == "x|y"
    db.execute("DROP EXTENSION s2demo")
    assert db.procedures() == []


def test_drop_function_is_drop_procedure(db: h.Database) -> None:
    db.execute(
        "CREATE FUNCTION add_i64(a BIGINT, b BIGINT) RETURNS BIGINT AS WASM ABI BASIC"
        f" FROM BASE64 '{b64(NUMERIC)}'"
    )
    db.execute("DROP FUNCTION add_i64")
    db.execute("DROP FUNCTION IF EXISTS add_i64")
    assert db.procedures() == []


UDAF = Path(__file__).parent / "fixtures" / "singlestore"
AVG = (
    "CREATE AGGREGATE avg_h(DOUBLE NOT NULL) RETURNS DOUBLE NOT NULL WITH STATE HANDLE"
    " AS WASM FROM BASE64 '{wasm}' WITH WIT FROM BASE64 '{wit}'"
    " INITIALIZE WITH avg_init ITERATE WITH avg_iter MERGE WITH avg_merge"
    " TERMINATE WITH avg_term SERIALIZE WITH avg_term DESERIALIZE WITH avg_init"
    " COPYMERGE WITH avg_merge CLONE WITH avg_init DESTROY WITH avg_destroy"
    " DEFINER = 'root'@'%'"
)


@pytest.fixture
def udaf() -> tuple[str, str]:
    wasm = bytes(wasmtime.wat2wasm((UDAF / "udaf.wat").read_text()))
    return b64(wasm), b64((UDAF / "udaf.wit").read_bytes())


def test_wasm_aggregates_with_a_handle_and_a_value_state(
    db: h.Database, udaf: tuple[str, str]
) -> None:
    wasm, wit = udaf
    db.execute(AVG.format(wasm=wasm, wit=wit))
    db.execute(
        "CREATE AGGREGATE sum_sq(BIGINT) RETURNS BIGINT WITH STATE BIGINT"
        f" AS WASM FROM BASE64 '{wasm}' WITH WIT FROM BASE64 '{wit}'"
        " INITIALIZE WITH sq_init ITERATE WITH sq_iter MERGE WITH sq_merge TERMINATE WITH sq_term"
    )
    db.execute("CREATE TABLE t(g TEXT, x INTEGER)")
    db.execute("INSERT INTO t VALUES ('a', 1), ('a', 2), ('a', 6), ('b', 10), ('b', 20)")
    assert db.execute("SELECT g, avg_h(x), sum_sq(x) FROM t GROUP BY g ORDER BY g").rows == [
        ("a", 3.0, 41),
        ("b", 15.0, 500),
    ]
    with pytest.raises(h.InvalidArgument, match="is an aggregate"):
        db.call("avg_h", 1.0)
    # No rows: INITIALIZE then TERMINATE, as SingleStore does.
    assert db.execute("SELECT avg_h(x), sum_sq(x) FROM t WHERE 0").rows == [(0.0, 0)]
    # Many groups, many times: still exact (that every group's handle is
    # destroyed: tests/test_aggregate_core.py).
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)"
        " INSERT INTO t SELECT 'g' || (i % 300), i FROM n"
    )
    rows = db.execute("SELECT g, avg_h(x), avg(x) FROM t WHERE g LIKE 'g%' GROUP BY g").rows
    assert len(rows) == 300 and all(abs(a - b) < 1e-9 for _, a, b in rows)


def test_a_basic_abi_aggregate(db: h.Database, udaf: tuple[str, str]) -> None:
    wasm, _ = udaf
    db.execute(
        "CREATE AGGREGATE sum_sq(BIGINT) RETURNS BIGINT WITH STATE BIGINT AS WASM ABI BASIC"
        f" FROM BASE64 '{wasm}'"
        ' INITIALIZE WITH "sq-init" ITERATE WITH "sq-iter" MERGE WITH "sq-merge"'
        ' TERMINATE WITH "sq-term"'
    )
    assert db.execute("SELECT sum_sq(x) FROM (SELECT 3 AS x UNION ALL SELECT 4)").scalar() == 25


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.replace(" TERMINATE WITH avg_term", ""), "TERMINATE WITH"),
        (lambda s: s.replace("ITERATE WITH avg_iter", "ITERATE WITH avg_term"), "ITERATE"),
        (lambda s: s.replace("TERMINATE WITH avg_term", "TERMINATE WITH nope"), "nope"),
        (lambda s: s.replace("WITH STATE HANDLE", "WITH STATE"), "unknown SQL type"),
        (
            lambda s: s.replace(
                "INITIALIZE WITH avg_init", "INITIALIZE WITH avg_init INITIALIZE WITH avg_init"
            ),
            "twice",
        ),
    ],
)
def test_bad_aggregates_are_refused(
    db: h.Database, udaf: tuple[str, str], change: object, message: str
) -> None:
    wasm, wit = udaf
    with pytest.raises(h.ProcedureError, match=message):
        db.execute(change(AVG.format(wasm=wasm, wit=wit)))  # type: ignore[operator]
    assert db.procedures() == []


def test_an_archive_with_an_aggregate(db: h.Database, udaf: tuple[str, str]) -> None:
    wasm, wit = udaf
    script = (
        "CREATE FUNCTION sq_init AS WASM FROM LOCAL INFILE 'udaf.wasm'"
        " WITH WIT FROM LOCAL INFILE 'udaf.wit';\n"
        + AVG.replace("FROM BASE64 '{wasm}'", "FROM LOCAL INFILE 'udaf.wasm'").replace(
            "FROM BASE64 '{wit}'", "FROM LOCAL INFILE 'udaf.wit'"
        )
        + ";\n"
    )
    data = tar(
        {
            "stats.sql": script.encode(),
            "udaf.wasm": base64.b64decode(wasm),
            "udaf.wit": base64.b64decode(wit),
        }
    )
    db.execute(f"CREATE EXTENSION stats FROM BASE64 '{b64(data)}'")
    assert db.execute("SELECT avg_h(x) FROM (SELECT 1 AS x UNION ALL SELECT 2)").scalar() == 1.5
    assert db.execute("SELECT sq_init()").scalar() == 0
    db.execute("DROP EXTENSION stats")
    assert db.procedures() == []


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("TIMESTAMP", "BIGINT"),
        ("LONGTEXT", "TEXT"),
        ("MEDIUMTEXT", "TEXT"),
        ("CHAR", "TEXT"),
        ("VARBINARY", "BLOB"),
        ("LONGBLOB", "BLOB"),
    ],
)
def test_singlestore_type_spellings(spelling: str, expected: str) -> None:
    from heliosdb_wasm.values import parse_type

    assert parse_type(spelling).value == expected


def test_json_nested_too_deep_is_a_typed_error() -> None:
    from heliosdb_wasm.values import check_json

    with pytest.raises(h.InvalidArgument, match="nested too deeply"):
        check_json("[" * 100_000 + "]" * 100_000, "argument j")
