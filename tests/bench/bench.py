"""`nox -s bench`: what a procedure call costs, next to its baselines, in one run.

Every figure is measured here, now, on this machine, and reported as a ratio
against a baseline measured in the same run (a plain Python function, a
Python SQLite UDF, SQLite's own expression, PostgreSQL's PL/pgSQL and
PL/Python when a PostgreSQL server can be started). Writes
build/bench/bench.json and build/bench/bench.png, and prints the table.

    python tests/bench/bench.py [--rows N] [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import wasmtime

import heliosdb_wasm as h
from heliosdb_wasm import _core, native

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
BUILD = ROOT / "build"


@dataclass
class Row:
    group: str
    name: str
    value: float | None  # seconds (per call / per row / total), or values per second
    unit: str
    baseline: str | None = None  # name of the row in the same group it is compared with
    note: str = ""
    ratio: float | None = None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def find(self, group: str, name: str) -> Row | None:
        return next((r for r in self.rows if r.group == group and r.name == name), None)

    def ratios(self) -> None:
        for r in self.rows:
            base = self.find(r.group, r.baseline) if r.baseline else None
            if base is not None and base.value and r.value is not None:
                r.ratio = r.value / base.value


def wat(name: str) -> bytes:
    return wasmtime.wat2wasm((FIXTURES / f"{name}.wat").read_text())  # type: ignore[no-any-return]


def b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def best_of(fn: Callable[[], Any], number: int, repeat: int = 5) -> float:
    """Seconds per call: the best of ``repeat`` runs of ``number`` calls."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def seconds_per_row(db: h.Database, sql: str, rows: int, params: Sequence[Any] = ()) -> float:
    """``sql`` (a statement over ``rows`` rows) warmed up — instances pooled,
    the statement prepared — then the best of three, per row; its answer
    the same every time."""
    expected = db.execute(sql, params).scalar()
    per = best_of(lambda: db.execute(sql, params), 1, repeat=3) / rows
    assert db.execute(sql, params).scalar() == expected
    return per


# --- per-call overhead ------------------------------------------------------------------


def per_call(report: Report, n: int) -> None:
    g = "per call: add_i64(a, b)"
    wasm = wat("numeric")
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    func = wasmtime.Instance(store, wasmtime.Module(engine, wasm), []).exports(store)["add_i64"]
    assert isinstance(func, wasmtime.Func)

    def py_add(a: int, b: int) -> int:
        return a + b

    report.add(Row(g, "plain Python function", best_of(lambda: py_add(40, 2), n), "s/call"))
    report.add(
        Row(
            g,
            "wasmtime Func.__call__ (naive)",
            best_of(lambda: func(store, 40, 2), n // 10),
            "s/call",
            "plain Python function",
        )
    )
    with h.Database.open(":memory:") as db:
        db.execute(
            "CREATE PROCEDURE add_i64(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
            f" AS $wasm${b64(wasm)}$wasm$"
        )
        db.call("add_i64", 1, 2)
        numeric = db._runner("add_i64").numeric()
        report.add(
            Row(
                g,
                "engine fast path (the core's Numeric.call)",
                best_of(lambda: numeric.call([40, 2]), n),
                "s/call",
                "plain Python function",
                "the Rust core from Python: values checked, pooled instance, GIL released",
            )
        )
        report.add(
            Row(
                g,
                "engine Database.call",
                best_of(lambda: db.call("add_i64", 40, 2), n),
                "s/call",
                "plain Python function",
            )
        )
        xs = list(range(1_000_000))
        ones = [1] * len(xs)
        db.call_batch("add_i64", [xs[:10], ones[:10]])
        per = best_of(lambda: db.call_batch("add_i64", [xs, ones]), 1, repeat=3) / len(xs)
        batch = "batch: Database.call_batch(add_i64), 1M rows"
        report.add(Row(batch, "calls per second", 1 / per, "calls/s"))
        report.add(Row(batch, "argument values per second", 2 / per, "values/s"))


# --- per row in SQL -----------------------------------------------------------------------


def per_row(report: Report, rows: int, component: bytes | None, pg: Postgres | None) -> None:
    g = f"per row: SELECT sum(f(x)) over {rows:,} rows"
    with h.Database.open(":memory:") as db:
        db.execute("CREATE TABLE t(x INTEGER)")
        db.execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?)"
            " INSERT INTO t SELECT x FROM c",
            [rows],
        )
        db.execute(
            "CREATE PROCEDURE add_i64(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
            f" AS $wasm${b64(wat('numeric'))}$wasm$"
        )
        db.conn.create_scalar_function("py_add", lambda a, b: a + b, 2, deterministic=True)

        def scan(expr: str) -> float:
            return seconds_per_row(db, f"SELECT sum({expr}) FROM t", rows)

        builtin = scan("x + 1")
        report.add(Row(g, "SQLite expression x + 1", builtin, "s/row"))
        report.add(
            Row(g, "Python SQLite UDF", scan("py_add(x, 1)"), "s/row", "SQLite expression x + 1")
        )
        report.add(
            Row(
                g,
                "wasm Basic ABI (fast path)",
                scan("add_i64(x, 1)"),
                "s/row",
                "Python SQLite UDF",
                "SQLite calls the Rust core directly" if native.sqlite_direct() else "via apsw",
            )
        )
        if native.sqlite_direct():
            # The same Numeric reached through apsw's Python function
            # machinery, as where SQLite cannot load the core as an extension.
            os.environ["HELIOSDB_WASM_SQLITE_DIRECT"] = "0"
            try:
                db.execute(
                    "CREATE PROCEDURE add_apsw(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
                    f" USING EXPORT 'add_i64' AS $wasm${b64(wat('numeric'))}$wasm$"
                )
            finally:
                del os.environ["HELIOSDB_WASM_SQLITE_DIRECT"]
            report.add(
                Row(
                    g,
                    "wasm Basic ABI (the core via apsw)",
                    scan("add_apsw(x, 1)"),
                    "s/row",
                    "Python SQLite UDF",
                )
            )
        if component is not None:
            db.execute(
                "CREATE PROCEDURE c_add LANGUAGE wasm USING EXPORT 'add'"
                f" AS $wasm${b64(component)}$wasm$"
            )
            # ~35 µs a row: measured on the first 20 000 rows only.
            sql = "SELECT sum(c_add(x, 1)) FROM t WHERE rowid <= 20000"
            db.execute(sql)
            per = best_of(lambda: db.execute(sql), 1, repeat=3) / min(rows, 20000)
            report.add(
                Row(
                    g,
                    "wasm component (Canonical ABI)",
                    per,
                    "s/row",
                    "Python SQLite UDF",
                    "first 20 000 rows",
                )
            )
    if pg is not None:
        base = pg.per_row(f"SELECT sum(x + 1) FROM generate_series(1, {rows}) x", rows)
        plpgsql = pg.per_row(
            f"SELECT sum(add_plpgsql(x, 1)) FROM generate_series(1, {rows}) x", rows
        )
        report.add(
            Row(
                g,
                "PostgreSQL PL/pgSQL",
                plpgsql - base,
                "s/row",
                None,
                "minus PostgreSQL's own sum(x + 1)",
            )
        )
        if pg.plpython:
            plpy = pg.per_row(f"SELECT sum(add_plpy(x, 1)) FROM generate_series(1, {rows}) x", rows)
            report.add(
                Row(
                    g,
                    "PostgreSQL PL/Python",
                    plpy - base,
                    "s/row",
                    "PostgreSQL PL/pgSQL",
                    "minus PostgreSQL's own sum(x + 1)",
                )
            )
        for name in ("wasm Basic ABI (fast path)", "wasm component (Canonical ABI)"):
            row = report.find(g, name)
            if row is not None:
                report.add(Row(g, f"{name} vs PL/pgSQL", row.value, "s/row", "PostgreSQL PL/pgSQL"))
    else:
        report.add(Row(g, "PostgreSQL PL/pgSQL", None, "s/row", note="no PostgreSQL server here"))


# --- aggregates -----------------------------------------------------------------------------


def aggregate(report: Report, rows: int, pg: Postgres | None) -> None:
    """SingleStore's CREATE AGGREGATE (a sum of squares, the state a number
    kept in the core; an average whose state is a HANDLE into guest memory)
    over a table, against a Python aggregate UDF, SQLite's own sum(x * x)
    and a PL/pgSQL aggregate."""
    g = f"aggregate per row: SELECT sum_sq(x) over {rows:,} rows"
    udaf = ROOT / "tests" / "fixtures" / "singlestore"
    wasm = b64(wasmtime.wat2wasm((udaf / "udaf.wat").read_text()))
    wit = b64((udaf / "udaf.wit").read_bytes())
    sum_sq = (
        "CREATE AGGREGATE {name}(BIGINT) RETURNS BIGINT WITH STATE BIGINT"
        f" AS WASM FROM BASE64 '{wasm}' WITH WIT FROM BASE64 '{wit}'"
        " INITIALIZE WITH sq_init ITERATE WITH sq_iter MERGE WITH sq_merge TERMINATE WITH sq_term"
    )
    with h.Database.open(":memory:") as db:
        db.execute("CREATE TABLE t(x INTEGER)")
        db.execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?)"
            " INSERT INTO t SELECT x % 1000 FROM c",
            [rows],
        )
        db.execute(sum_sq.format(name="sum_sq"))
        db.execute(
            "CREATE AGGREGATE avg_h(DOUBLE NOT NULL) RETURNS DOUBLE NOT NULL WITH STATE HANDLE"
            f" AS WASM FROM BASE64 '{wasm}' WITH WIT FROM BASE64 '{wit}'"
            " INITIALIZE WITH avg_init ITERATE WITH avg_iter MERGE WITH avg_merge"
            " TERMINATE WITH avg_term DESTROY WITH avg_destroy"
        )

        class PySumSq:
            def __init__(self) -> None:
                self.total = 0

            def step(self, x: int) -> None:
                self.total += x * x

            def final(self) -> int:
                return self.total

        db.conn.create_aggregate_function("py_sum_sq", PySumSq)

        def scan(expr: str, limit: int = rows) -> float:
            return seconds_per_row(db, f"SELECT {expr} FROM t WHERE rowid <= {limit}", limit)

        report.add(Row(g, "SQLite sum(x * x)", scan("sum(x * x)"), "s/row"))
        report.add(
            Row(
                g, "Python SQLite aggregate UDF", scan("py_sum_sq(x)"), "s/row", "SQLite sum(x * x)"
            )
        )
        report.add(
            Row(
                g,
                "wasm aggregate (the core)",
                scan("sum_sq(x)"),
                "s/row",
                "Python SQLite aggregate UDF",
                "SingleStore Canonical ABI, a BIGINT state",
            )
        )
        report.add(
            Row(
                g,
                "wasm aggregate, HANDLE state",
                scan("avg_h(x)"),
                "s/row",
                "Python SQLite aggregate UDF",
                "state in guest memory: avg_h(x)",
            )
        )
        # The same aggregate as Python drives it, where SQLite cannot load
        # the core as an extension (and as every aggregate ran before).
        os.environ["HELIOSDB_WASM_SQLITE_DIRECT"] = "0"
        try:
            db.execute(sum_sq.format(name="sum_sq_apsw"))
        finally:
            del os.environ["HELIOSDB_WASM_SQLITE_DIRECT"]
        report.add(
            Row(
                g,
                "wasm aggregate (Python groups via apsw)",
                scan("sum_sq_apsw(x)", min(rows, 20_000)),
                "s/row",
                "Python SQLite aggregate UDF",
                "first 20 000 rows",
            )
        )
    if pg is not None:
        series = f"FROM (SELECT x % 1000 AS x FROM generate_series(1, {rows}) x) s"
        base = pg.per_row(f"SELECT sum(x * x) {series}", rows)
        plpgsql = pg.per_row(f"SELECT sum_sq_plpgsql(x) {series}", rows)
        report.add(
            Row(
                g,
                "PostgreSQL PL/pgSQL aggregate",
                plpgsql - base,
                "s/row",
                None,
                "minus PostgreSQL's own sum(x * x)",
            )
        )
        row = report.find(g, "wasm aggregate (the core)")
        if row is not None:
            report.add(
                Row(
                    g,
                    "wasm aggregate vs PL/pgSQL",
                    row.value,
                    "s/row",
                    "PostgreSQL PL/pgSQL aggregate",
                )
            )


# --- SingleStore's Canonical ABI ---------------------------------------------------------


def singlestore(report: Report, rows: int) -> None:
    """A SingleStore function taking and returning a string (its buffers
    through the guest's canonical_abi_realloc and canonical_abi_free), over a
    table, against a Python SQLite UDF doing the same."""
    g = f"SingleStore function per row: SELECT sum(length(echo_string(s))) over {rows:,} rows"
    folder = ROOT / "tests" / "fixtures" / "singlestore"
    wasm = b64(wasmtime.wat2wasm((folder / "types.wat").read_text()))
    wit = b64((folder / "types.wit").read_bytes())
    with h.Database.open(":memory:") as db:
        db.execute("CREATE TABLE t(s TEXT)")
        db.execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?)"
            " INSERT INTO t SELECT 'customer-' || x FROM c",
            [rows],
        )
        db.execute(
            f"CREATE FUNCTION echo_string AS WASM FROM BASE64 '{wasm}' WITH WIT FROM BASE64 '{wit}'"
        )
        db.conn.create_scalar_function("py_echo", lambda s: s, 1, deterministic=True)

        def scan(fn: str) -> float:
            return seconds_per_row(db, f"SELECT sum(length({fn}(s))) FROM t", rows)

        report.add(Row(g, "Python SQLite UDF (s -> s)", scan("py_echo"), "s/row"))
        report.add(
            Row(
                g,
                "wasm SingleStore Canonical ABI (the core)",
                scan("echo_string"),
                "s/row",
                "Python SQLite UDF (s -> s)",
                "a string in and out through the guest's allocator",
            )
        )
        # A record (JSON in SQL): parsed, lowered field by field (a list of
        # strings and an option too), lifted and written back as JSON.
        g = f"SingleStore record per row: SELECT sum(length(echo_person(p))) over {rows:,} rows"
        db.execute("ALTER TABLE t ADD COLUMN p TEXT")
        db.execute(
            "UPDATE t SET p = json_object('name', s, 'age', rowid % 100,"
            " 'tags', json_array('a', s), 'nick_name', NULL)"
        )
        db.execute(
            f"CREATE FUNCTION echo_person AS WASM FROM BASE64 '{wasm}' WITH WIT FROM BASE64 '{wit}'"
        )

        def py_person(p: str) -> str:
            return json.dumps(json.loads(p), ensure_ascii=False, separators=(",", ":"))

        db.conn.create_scalar_function("py_person", py_person, 1, deterministic=True)

        def scan_person(fn: str) -> float:
            return seconds_per_row(db, f"SELECT sum(length({fn}(p))) FROM t", rows)

        report.add(
            Row(g, "Python SQLite UDF (json.loads, json.dumps)", scan_person("py_person"), "s/row")
        )
        report.add(
            Row(
                g,
                "wasm SingleStore record (the core)",
                scan_person("echo_person"),
                "s/row",
                "Python SQLite UDF (json.loads, json.dumps)",
                "record<string, u8, list<string>, option<string>> as JSON in and out",
            )
        )


# --- one host query per row --------------------------------------------------------------


def rate_lookup_tables(db: h.Database, rows: int) -> None:
    """The host-query bench's tables `cust` and `ids` of `rows` rows, the
    procedure `rate(id)` (rate_lookup.wat) and its plain Python twin
    `py_rate(id)`, a sqlite3 UDF on the same connection (tests/bench/callgrind.py
    profiles the same)."""
    wasm = wasmtime.wat2wasm((ROOT / "tests" / "bench" / "rate_lookup.wat").read_text())
    db.execute("CREATE TABLE cust(id INTEGER PRIMARY KEY, rate REAL)")
    db.execute("CREATE TABLE ids(id INTEGER)")
    db.execute(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?)"
        " INSERT INTO cust SELECT x, x * 0.5 FROM c",
        [rows],
    )
    db.execute("INSERT INTO ids SELECT id FROM cust")
    db.execute(
        "CREATE PROCEDURE rate(id BIGINT) RETURNS DOUBLE LANGUAGE wasm"
        f" CAPABILITIES ('read:cust') AS $wasm${b64(wasm)}$wasm$"
    )
    conn = db.conn

    def py_rate(id_: int) -> float:
        row = conn.execute("SELECT rate FROM cust WHERE id = ?", (id_,)).fetchone()
        return float(row[0]) if row else 0.0

    conn.create_scalar_function("py_rate", py_rate, 1)


def host_query(report: Report, rows: int) -> None:
    """A procedure that runs one query per call, over a table in SQL, against
    a plain Python UDF on the same connection running the same query."""
    g = f"one host query per row: SELECT sum(rate(id)) over {rows:,} rows"
    with h.Database.open(":memory:") as db:
        rate_lookup_tables(db, rows)

        def scan(fn: str) -> float:
            return seconds_per_row(db, f"SELECT sum({fn}(id)) FROM ids", rows)

        join = best_of(
            lambda: db.execute("SELECT sum(c.rate) FROM ids JOIN cust c USING (id)"), 1, 3
        )
        report.add(Row(g, "SQL join (no function)", join / rows, "s/row"))
        report.add(
            Row(g, "plain Python sqlite3 UDF", scan("py_rate"), "s/row", "SQL join (no function)")
        )
        report.add(
            Row(
                g,
                "wasm Basic ABI",
                scan("rate"),
                "s/row",
                "plain Python sqlite3 UDF",
                "hand-written module",
            )
        )


def table_rows(report: Report, rows: int) -> None:
    """A table procedure's rows through its virtual table: exactly of their
    columns' types (handed over by the core as they are) or needing a
    conversion (Python's), against SQLite producing as many rows itself."""
    g = f"table procedure rows: SELECT sum(i) FROM numbers({rows:,})"
    wasm = b64(wat("table_rows"))
    with h.Database.open(":memory:") as db:
        for name, table in (
            ("numbers", "i BIGINT, half DOUBLE, label TEXT"),
            ("numbers_conv", "i DOUBLE, half DOUBLE, label TEXT"),
        ):
            db.execute(
                f"CREATE PROCEDURE {name}(n BIGINT) RETURNS TABLE({table}) LANGUAGE wasm"
                f" USING EXPORT 'numbers' AS $wasm${wasm}$wasm$"
            )

        def scan(sql: str) -> float:
            return seconds_per_row(db, sql, rows)

        cte = (
            "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < ?)"
            " SELECT sum(i) FROM (SELECT i, i / 2.0, 'x' FROM c)"
        )
        base = seconds_per_row(db, cte, rows, [rows - 1])
        report.add(Row(g, "SQLite recursive CTE (no procedure)", base, "s/row"))
        report.add(
            Row(
                g,
                "wasm Basic ABI, rows of their columns' types",
                scan(f"SELECT sum(i) FROM numbers({rows})"),
                "s/row",
                "SQLite recursive CTE (no procedure)",
                "handed over by the core, served by apsw's virtual table",
            )
        )
        report.add(
            Row(
                g,
                "wasm Basic ABI, rows converted in Python",
                scan(f"SELECT sum(i) FROM numbers_conv({rows})"),
                "s/row",
                "SQLite recursive CTE (no procedure)",
                "an integer for a DOUBLE column: values.convert_result",
            )
        )


def instances(report: Report) -> None:
    """A new pooled instance, and what procedures cost in memory."""
    g = "instances and memory (numeric Basic-ABI module)"
    wasm = wat("numeric")
    with h.Database.open(":memory:") as db:
        db.execute(
            "CREATE PROCEDURE add_i64(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
            f" AS $wasm${b64(wasm)}$wasm$"
        )
        runner = db._runner("add_i64")
        warm = runner.numeric()
        warm.call([1, 2])
        core_module, export = runner.module.core_export("add_i64")  # type: ignore[attr-defined]
        params, result = native.kinds(runner.signature)
        limits = runner.limits.to_json()

        def fresh() -> None:
            _core.Numeric(
                core_module, export, params, result, limits, native.new_tally(), print
            ).call([1, 2])

        per_new = best_of(fresh, 200)
        per_warm = best_of(lambda: warm.call([1, 2]), 20_000)
        report.add(
            Row(g, "new pool + first call", per_new, "s/call", note="InstancePre, store, instance")
        )
        report.add(Row(g, "warm call", per_warm, "s/call"))
        report.add(Row(g, "a new pooled instance", per_new - per_warm, "s", note="the difference"))
    out = subprocess.run(
        [sys.executable, "-c", MANY.format(wasm=b64(wasm))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    report.add(Row(g, "RSS of a process with 100 procedures", float(out[0]), "bytes"))
    report.add(Row(g, "RSS per registered, called procedure", float(out[1]), "bytes"))
    report.add(
        Row(
            g,
            "RSS per pooled instance (the core's)",
            float(out[2]),
            "bytes",
            note="500 pools, one instance each",
        )
    )


MANY = """
import os, heliosdb_wasm as h
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
db = h.Database.open(":memory:")
base = rss()
for i in range(100):
    db.execute(
        f"CREATE PROCEDURE p{{i}}(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
        f" USING EXPORT 'add_i64' AS $wasm${wasm}$wasm$"
    )
    assert db.execute(f"SELECT p{{i}}(1, 2)").scalar() == 3
total, per = rss(), (rss() - base) / 100
# Pooled instances of the core: 500 pools of one numeric export, one instance each.
runner = db._runner("p0")
module, export = runner.module.core_export("add_i64")
from heliosdb_wasm import _core, native
params, result = native.kinds(runner.signature)
before = rss()
pools = [
    _core.Numeric(module, export, params, result, runner.limits.to_json(), native.new_tally(), print)
    for _ in range(500)
]
for n in pools:
    n.call([1, 2])
print(total, per, (rss() - before) / 500)
"""


# --- the seed's calculate_discount ----------------------------------------------------------


def discount(report: Report, calls: int, pg: Postgres | None) -> None:
    g = f"calculate_discount (one indexed lookup), {calls:,} calls in one SELECT"
    seed = (ROOT / "examples" / "seed.sql").read_text()
    with h.Database.open(":memory:") as db:
        db.execute(seed)
        db.execute("CREATE TABLE calls(i INTEGER)")
        db.execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?)"
            " INSERT INTO calls SELECT x FROM c",
            [calls],
        )
        for lang, abi, name in [
            ("rust", "basic", "cd_rust_basic"),
            ("rust", "component", "cd_rust_component"),
            ("go", "basic", "cd_go"),
            ("js", "component", "cd_js"),
            ("python", "component", "cd_py"),
        ]:
            ddl = discount_ddl(name, lang, abi)
            if ddl is None:
                report.add(Row(g, f"{lang} {abi}", None, "s/call", note="not built"))
                continue
            db.execute(ddl)
            sql = f"SELECT sum({name}(12345, i * 1.0)) FROM calls"
            db.execute(sql)
            per = best_of(lambda sql=sql: db.execute(sql), 1, repeat=3) / calls
            report.add(
                Row(
                    g,
                    f"{lang} {abi}",
                    per,
                    "s/call",
                    "PostgreSQL PL/pgSQL" if pg is not None else None,
                )
            )
    if pg is not None:
        base = pg.per_row(f"SELECT sum(i * 1.0) FROM generate_series(1, {calls}) i", calls)
        per = pg.per_row(
            f"SELECT sum(calculate_discount(12345, i * 1.0)) FROM generate_series(1, {calls}) i",
            calls,
        )
        report.add(
            Row(
                g,
                "PostgreSQL PL/pgSQL",
                per - base,
                "s/call",
                note="same lookup and rates, minus the bare loop",
            )
        )


# --- cold start and memory ----------------------------------------------------------------------


REGISTER = """
import sys, time
import heliosdb_wasm as h
db = h.Database.open({db!r})
db.execute(open({seed!r}).read())
t = time.perf_counter()
db.execute({ddl!r})
print(time.perf_counter() - t)
"""

FIRST_CALL = """
import sys, time
import heliosdb_wasm as h
db = h.Database.open({db!r})
t = time.perf_counter()
db.execute("SELECT cd(12345, 599.99)")
print(time.perf_counter() - t)
"""


def discount_ddl(name: str, lang: str, abi: str) -> str | None:
    """CREATE PROCEDURE for the built calculate_discount example, if it is built."""
    path = BUILD / "examples" / lang / f"calculate_discount.{abi}.wasm"
    if not path.exists():
        return None
    sig = "(customer_id BIGINT, order_total DOUBLE) RETURNS DOUBLE" if abi == "basic" else ""
    export = "calculate_discount" if abi == "basic" else "calculate-discount"
    return (
        f"CREATE PROCEDURE {name}{sig} LANGUAGE wasm CAPABILITIES ('read:customers')"
        f" USING EXPORT '{export}' AS $wasm$file://{path}$wasm$"
    )


def cold_start(report: Report) -> None:
    """Registration, then the first call from a fresh process that opens the
    database file: the cold start a deployed procedure pays."""
    g = "cold start: first call of calculate_discount from a fresh process"
    seed = str(ROOT / "examples" / "seed.sql")
    for lang, abi in [
        ("rust", "basic"),
        ("go", "basic"),
        ("assemblyscript", "basic"),
        ("js", "component"),
        ("python", "component"),
    ]:
        ddl = discount_ddl("cd", lang, abi)
        if ddl is None:
            continue
        for cache in ("off", "warm"):
            with tempfile.TemporaryDirectory() as tmp:
                env = dict(os.environ, HELIOSDB_WASM_CACHE="off" if cache == "off" else tmp)

                def run(script: str, env: dict[str, str] = env) -> float:
                    out = subprocess.run(
                        [sys.executable, "-c", script],
                        env=env,
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                    return float(out.split()[-1])

                db = str(Path(tmp) / "cold.db")
                if cache == "warm":  # a first registration fills the cache
                    run(REGISTER.format(db=str(Path(tmp) / "fill.db"), seed=seed, ddl=ddl))
                register = run(REGISTER.format(db=db, seed=seed, ddl=ddl))
                first = run(FIRST_CALL.format(db=db))
                name = f"{lang} {abi}, cache {cache}"
                report.add(
                    Row(
                        g,
                        f"{name}: register",
                        register,
                        "s",
                        f"{lang} {abi}, cache off: register" if cache == "warm" else None,
                    )
                )
                report.add(
                    Row(
                        g,
                        f"{name}: first call",
                        first,
                        "s",
                        f"{lang} {abi}, cache off: first call" if cache == "warm" else None,
                    )
                )


MEMORY = """
import os, heliosdb_wasm as h
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
db = h.Database.open(":memory:", limits=h.Limits(pool_size=32))
db.execute({ddl!r})
numeric = db._runner("p").numeric()
numeric.prewarm(1)  # compiled, one instance
before = rss()
numeric.prewarm(21)
assert numeric.idle_instances == 21
print((rss() - before) / 20)
"""


PLUGIN_SEED = """
CREATE TABLE customers(id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL, name TEXT, ssn TEXT,
                       email TEXT, phone TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
INSERT INTO customers SELECT i, CASE i % 2 WHEN 0 THEN 'acme' ELSE 'globex' END,
       'name ' || i, '123-45-' || (1000 + i), 'user' || i || '@example.com', '555-010-' || i
FROM n;
"""
PLUGIN_SECRET = "bench-secret-0123456789abcdef0123"


def _bench_jwt(sub: str, tenant: str) -> str:
    import base64
    import hashlib
    import hmac

    def enc(doc: dict[str, Any]) -> str:
        raw = json.dumps(doc, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = {"sub": sub, "tenant": tenant, "role": "analyst", "exp": int(time.time()) + 3600}
    head = enc({"alg": "HS256", "typ": "JWT"}) + "." + enc(claims)
    sig = hmac.new(PLUGIN_SECRET.encode(), head.encode(), hashlib.sha256).digest()
    return head + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


def plugin_latency(report: Report, queries: int) -> None:
    """Statements through the wire endpoint with 0, 1 and 3 example plugins,
    and what each plugin stage adds per statement (issue 7)."""
    import psycopg

    from heliosdb_wasm.pgwire import Server, execute_statement
    from heliosdb_wasm.plugins.manifest import PluginSpec
    from heliosdb_wasm.plugins.pipeline import Pipeline

    files = {
        "auth": BUILD / "plugins" / "python" / "auth_rate_limit.component.wasm",
        "tenant": BUILD / "plugins" / "rust" / "tenant_isolation.basic.wasm",
        "pii": BUILD / "plugins" / "go" / "pii_masking.basic.wasm",
    }
    if not all(f.exists() for f in files.values()):
        print("plugins not built (nox -s build): no plugin rows", file=sys.stderr)
        return
    configs: dict[str, dict[str, Any]] = {
        "auth": {"secret": PLUGIN_SECRET},
        "tenant": {"tables": ["customers"], "column": "tenant_id", "variable": "tenant"},
        "pii": {
            "columns": {"ssn": "ssn", "email": "email", "phone": "phone"},
            "admin_roles": ["admin"],
            "role_variable": "auth.role",
        },
    }
    priorities = {"auth": 10, "tenant": 20, "pii": 30}
    g = "plugins: one statement through the PostgreSQL-wire endpoint (psycopg, prepared)"
    stages = "plugins: time per hook call (mean, inside the pipeline)"
    sql = "SELECT id, name, ssn, email FROM customers WHERE id BETWEEN %s AND %s"
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        with h.Database.open(db) as setup:
            setup.execute(PLUGIN_SEED)
        for label, names in (
            ("0 plugins", ()),
            ("1 plugin (tenant isolation, Rust)", ("tenant",)),
            ("3 plugins (auth Python, tenant Rust, masking Go)", ("auth", "tenant", "pii")),
        ):
            pipeline = Pipeline()
            for name in names:
                pipeline.install(
                    PluginSpec(
                        name=name,
                        wasm=files[name].read_bytes(),
                        origin=str(files[name]),
                        priority=priorities[name],
                        config=configs[name],
                    )
                )
            executor = pipeline.executor(execute_statement)
            with Server(db, auth="trust", port=0, executor=executor) as server:
                host, port = server.address
                options = f"-c jwt={_bench_jwt('bench', 'acme')} -c tenant=acme"
                with psycopg.connect(
                    host=host,
                    port=port,
                    user="bench",
                    dbname="b",
                    options=options,
                    autocommit=True,
                    prepare_threshold=0,
                ) as conn:
                    for i in range(50):
                        conn.execute(sql, (i, i + 9)).fetchall()
                    per = (
                        best_of(
                            lambda: [
                                conn.execute(sql, (i, i + 9)).fetchall() for i in range(queries)
                            ],
                            1,
                            repeat=3,
                        )
                        / queries
                    )
            baseline = "0 plugins: per statement" if names else None
            report.add(Row(g, f"{label}: per statement", per, "s", baseline))
            report.add(Row(g, f"{label}: statements per second", 1 / per, "queries/s"))
            for (plugin, _version, stage), hist in sorted(pipeline.metrics._latency.items()):
                if label.startswith("3") or len(names) == 1:
                    report.add(
                        Row(
                            stages,
                            f"{plugin} {stage} ({label[:9].strip()})",
                            hist.sum / max(1, hist.count),
                            "s",
                        )
                    )


def _pgbench() -> str | None:
    found = shutil.which("pgbench")
    for version in ("17", "16", "15"):
        path = Path(f"/usr/lib/postgresql/{version}/bin/pgbench")
        if found is None and path.exists():
            found = str(path)
    return found


def _pgbench_run(
    pgbench: str,
    target: tuple[str, int, str, str],
    script: Path,
    clients: int,
    mode: str,
    secs: int,
) -> tuple[float, float]:
    """(transactions per second, mean latency in seconds) of one pgbench run."""
    host, port, user, dbname = target
    out = subprocess.run(
        [
            pgbench,
            "-n",
            "-h",
            host,
            "-p",
            str(port),
            "-U",
            user,
            "-c",
            str(clients),
            "-j",
            str(clients),
            "-T",
            str(secs),
            "-M",
            mode,
            "-f",
            str(script),
            dbname,
        ],
        capture_output=True,
        text=True,
        timeout=secs + 120,
        env={**os.environ, "PGPASSWORD": "", "PGOPTIONS": ""},
    )
    if out.returncode != 0:
        raise RuntimeError(f"pgbench failed: {out.stderr.strip()[-500:]}")
    tps = latency = None
    for line in out.stdout.splitlines():
        if line.startswith("tps = "):
            tps = float(line.split()[2])
        elif line.startswith("latency average = "):
            latency = float(line.split()[3]) / 1000
    if tps is None or latency is None:
        raise RuntimeError(f"pgbench printed no tps: {out.stdout[-500:]}")
    return tps, latency


WIRE_SCRIPTS = {
    "SELECT 1": "SELECT 1;\n",
    "pgbench -S (indexed read)": (
        "\\set aid random(1, 100000)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
    ),
    "calculate_discount call": "SELECT calculate_discount(12345, 100.0);\n",
}


def wire_throughput(report: Report, secs: int, pg: Postgres | None) -> None:
    """pgbench against `serve`, the proxy and PostgreSQL 15, same scripts,
    same run (issue 14 §6): 1 and 4 clients, simple and prepared."""
    from heliosdb_wasm.pgwire import Server
    from heliosdb_wasm.pgwire.proxy import Upstream

    pgbench = _pgbench()
    ddl = discount_ddl("calculate_discount", "rust", "basic")
    if pgbench is None or ddl is None:
        print("no pgbench or calculate_discount not built: no wire rows", file=sys.stderr)
        return
    g = "wire: pgbench transactions per second (1 and 4 clients)"
    lat = "wire: latency of one statement, 1 client (pgbench, mean)"
    with tempfile.TemporaryDirectory() as tmp:
        scripts = {}
        for i, (name, text) in enumerate(WIRE_SCRIPTS.items()):
            scripts[name] = Path(tmp) / f"script{i}.sql"
            scripts[name].write_text(text)
        db = Path(tmp) / "wire.db"
        with h.Database.open(db) as setup:
            setup.execute((ROOT / "examples" / "seed.sql").read_text())
            setup.execute(ddl)
        targets: dict[str, tuple[str, int, str, str]] = {}
        servers: list[Server] = []
        processes: list[subprocess.Popen[str]] = []
        try:
            local = Server(db, port=0, auth="trust")
            local.start()
            servers.append(local)
            targets["serve"] = (*local.address, "bench", "bench")
            # The same file served by two processes (serve --workers 2).
            cmd = [sys.executable, "-m", "heliosdb_wasm.cli", "serve", "--db", str(db)]
            cmd += ["--port", "0", "--auth", "trust", "--workers", "2"]
            supervisor = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            processes.append(supervisor)
            line = supervisor.stdout.readline() if supervisor.stdout else ""
            if "listening on" in line:
                port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
                targets["serve --workers 2"] = ("127.0.0.1", port, "bench", "bench")
            if pg is not None:
                targets["PostgreSQL 15"] = ("127.0.0.1", pg.port, "bench", "postgres")
                upstream = Upstream.parse(f"postgresql://127.0.0.1:{pg.port}?sslmode=disable")
                proxy = Server(Path(tmp) / "proxy.db", port=0, upstream=upstream)
                proxy.start()
                servers.append(proxy)
                targets["proxy (no plugins)"] = (*proxy.address, "bench", "postgres")
            for name, target in targets.items():
                init = subprocess.run(
                    [
                        pgbench,
                        "-i",
                        "-q",
                        "-s",
                        "1",
                        "-h",
                        target[0],
                        "-p",
                        str(target[1]),
                        "-U",
                        target[2],
                        target[3],
                    ],
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                if init.returncode != 0:
                    print(f"pgbench -i on {name} failed: {init.stderr[-300:]}", file=sys.stderr)
                    continue
                for script, path in scripts.items():
                    for mode in ("simple", "prepared"):
                        for clients in (1, 4):
                            tps, latency = _pgbench_run(pgbench, target, path, clients, mode, secs)
                            base = "PostgreSQL 15" if name != "PostgreSQL 15" and pg else None
                            key = f"{script}, {mode}, {clients}c"
                            report.add(
                                Row(
                                    g,
                                    f"{name}: {key}",
                                    tps,
                                    "tx/s",
                                    f"{base}: {key}" if base else None,
                                )
                            )
                            if clients == 1:
                                report.add(
                                    Row(
                                        lat,
                                        f"{name}: {script}, {mode}",
                                        latency,
                                        "s",
                                        f"{base}: {script}, {mode}" if base else None,
                                    )
                                )
        finally:
            for server in servers:
                server.stop()
            for proc in processes:
                proc.terminate()
                proc.wait(timeout=60)


def memory(report: Report) -> None:
    g = "memory per pooled instance (RSS, 20 instances)"
    for lang, abi in [
        ("rust", "basic"),
        ("go", "basic"),
        ("js", "component"),
        ("python", "component"),
    ]:
        ddl = discount_ddl("p", lang, abi)
        if ddl is None:
            continue
        out = subprocess.run(
            [sys.executable, "-c", MEMORY.format(ddl=ddl)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        report.add(Row(g, f"{lang} {abi}", float(out), "bytes", note="resident pages it touched"))


# --- PostgreSQL -----------------------------------------------------------------------------------


class Postgres:
    """A throwaway PostgreSQL cluster on a loopback port (Debian's packages)."""

    FUNCTIONS = textwrap.dedent("""
        CREATE FUNCTION add_plpgsql(a bigint, b bigint) RETURNS bigint
            LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN a + b; END $$;
        CREATE FUNCTION sq_step(s bigint, x bigint) RETURNS bigint
            LANGUAGE plpgsql IMMUTABLE STRICT AS $$ BEGIN RETURN s + x * x; END $$;
        CREATE AGGREGATE sum_sq_plpgsql(bigint) (SFUNC = sq_step, STYPE = bigint, INITCOND = 0);
        CREATE TABLE customers(id bigint PRIMARY KEY, name text, tier text);
        INSERT INTO customers VALUES (12345, 'Ada', 'gold'), (23456, 'Alan', 'silver');
        CREATE FUNCTION calculate_discount(customer_id bigint, order_total double precision)
            RETURNS double precision LANGUAGE plpgsql AS $$
        DECLARE t text;
        BEGIN
            SELECT tier INTO t FROM customers WHERE id = customer_id;
            IF NOT FOUND THEN RAISE EXCEPTION 'CUSTOMER_NOT_FOUND'; END IF;
            RETURN order_total * CASE t WHEN 'gold' THEN 0.20 WHEN 'silver' THEN 0.10
                                        WHEN 'bronze' THEN 0.05 ELSE 0 END;
        END $$;
    """)

    def __init__(self, bindir: Path, port: int = 55432) -> None:
        self.bindir = bindir
        self.port = port
        self.data = Path(tempfile.mkdtemp(prefix="heliosdb-bench-pg-"))
        self.plpython = False
        self._as_postgres = os.geteuid() == 0

    def _run(
        self, *cmd: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        full = list(cmd)
        if self._as_postgres:
            full = ["runuser", "-u", "postgres", "--", *full]
        return subprocess.run(full, check=check, capture_output=True, text=True, input=stdin)

    def start(self) -> None:
        if self._as_postgres:
            shutil.chown(self.data, "postgres", "postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "bench")
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-w",
            "-l",
            str(self.data / "log"),
            "-o",
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1",
            "start",
        )
        self.psql(self.FUNCTIONS)
        done = self.psql("CREATE EXTENSION plpython3u;", check=False)
        if done.returncode == 0:
            self.plpython = True
            self.psql(
                "CREATE FUNCTION add_plpy(a bigint, b bigint) RETURNS bigint"
                " LANGUAGE plpython3u IMMUTABLE AS $$ return a + b $$;"
            )

    def psql(self, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run(
            "psql",
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "bench",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
            check=check,
            stdin=script,
        )

    def per_row(self, sql: str, rows: int) -> float:
        """Seconds per row of ``sql``: the best of three, timed by psql."""
        out = self.psql(f"\\timing on\n{sql};\n{sql};\n{sql};\n").stdout
        times = [
            float(line.split()[1]) / 1000 for line in out.splitlines() if line.startswith("Time:")
        ]
        return min(times) / rows

    def stop(self) -> None:
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-m",
            "immediate",
            "stop",
            check=False,
        )
        shutil.rmtree(self.data, ignore_errors=True)


def find_postgres() -> Postgres | None:
    for version in ("17", "16", "15"):
        bindir = Path(f"/usr/lib/postgresql/{version}/bin")
        if (bindir / "initdb").exists() and shutil.which("psql"):
            pg = Postgres(bindir)
            try:
                pg.start()
            except (subprocess.CalledProcessError, OSError) as exc:
                print(f"PostgreSQL could not start: {exc}", file=sys.stderr)
                return None
            return pg
    return None


# --- the component for per-row ------------------------------------------------------------------


def math_component() -> bytes | None:
    tool = shutil.which("wasm-tools")
    if tool is None:
        return None
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_component

    with tempfile.TemporaryDirectory() as tmp:
        return make_component(tool, "component_math", "math", Path(tmp))


# --- output ----------------------------------------------------------------------------------------


def show(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit.startswith("s"):
        if value < 1e-3:
            return f"{value * 1e6:.3f} µs"
        return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "bytes":
        if abs(value) < 1024 * 1024:
            return f"{value / 1024:.1f} KiB"
        return f"{value / 1024 / 1024:.2f} MiB"
    return f"{value:,.0f} {unit}"


def render(report: Report) -> str:
    lines = []
    for group in dict.fromkeys(r.group for r in report.rows):
        lines += ["", group]
        for r in (r for r in report.rows if r.group == group):
            ratio = f"{r.ratio:8.2f}x {r.baseline}" if r.ratio is not None else ""
            note = f"  ({r.note})" if r.note else ""
            lines.append(f"  {r.name:<48} {show(r.value, r.unit):>12}  {ratio}{note}")
    lines += ["", "targets (issues 13 and 14):"]
    for t in report.targets:
        lines.append(f"  {'met ' if t['met'] else 'GAP '} {t['target']}: {t['measured']}")
    return "\n".join(lines)


def targets(report: Report, rows: int) -> None:
    """Issue 13's targets, each a ratio against a baseline of the same run."""

    def value(group_prefix: str, name: str) -> float | None:
        for r in report.rows:
            if r.group.startswith(group_prefix) and r.name == name:
                return r.value
        return None

    def add(target: str, measured: str, met: bool) -> None:
        report.targets.append({"target": target, "measured": measured, "met": met})

    fast = next((r for r in report.rows if r.name.startswith("engine fast path")), None)
    if fast is not None and fast.value is not None:
        add("warm Basic-ABI scalar call ≤ 1 µs", show(fast.value, "s"), fast.value <= 1e-6)
    wasm_row = value("per row", "wasm Basic ABI (fast path)")
    pl = value("per row", "PostgreSQL PL/pgSQL")
    if wasm_row is not None:
        add(
            "per row in SQL ≤ 0.5x PL/pgSQL per row",
            f"{show(wasm_row, 's')} vs {show(pl, 's')}"
            + (f" ({wasm_row / pl:.2f}x)" if pl else ""),
            pl is not None and wasm_row <= 0.5 * pl,
        )
    discount_pl = value("calculate_discount", "PostgreSQL PL/pgSQL")
    for name, limit in (("rust basic", 0.5), ("go basic", 1.0), ("rust component", 1.0)):
        got = value("calculate_discount", name)
        if got is not None and discount_pl:
            add(
                f"calculate_discount {name} ≤ {limit:g}x PL/pgSQL",
                f"{show(got, 's')} vs {show(discount_pl, 's')} ({got / discount_pl:.1f}x)",
                got <= limit * discount_pl,
            )
    for lang, limit in (("rust basic", 1e-3), ("python component", 15e-3)):
        first = value("cold start", f"{lang}, cache warm: first call")
        if first is not None:
            add(
                f"cold start from cache ≤ {limit * 1e3:.0f} ms ({lang})",
                f"{show(first, 's')} first call from a fresh process",
                first <= limit,
            )
    host = value("one host query", "wasm Basic ABI")
    udf = value("one host query", "plain Python sqlite3 UDF")
    if host is not None and udf:
        add(
            "one host query per row ≤ 0.5x a plain Python sqlite3 UDF",
            f"{show(host, 's')} vs {show(udf, 's')} ({host / udf:.1f}x)",
            host <= 0.5 * udf,
        )
    component = value("per row", "wasm component (Canonical ABI)")
    if component is not None and wasm_row:
        add(
            "trivial component call ≤ 1.5x a trivial Basic-ABI call",
            f"{show(component, 's')} vs {show(wasm_row, 's')} ({component / wasm_row:.0f}x)",
            component <= 1.5 * wasm_row,
        )
    for served in ("serve", "serve --workers 2"):
        for script in ("SELECT 1", "pgbench -S (indexed read)"):
            for mode in ("simple", "prepared"):
                one = value("wire: pgbench", f"serve: {script}, {mode}, 1c")
                four = value("wire: pgbench", f"{served}: {script}, {mode}, 4c")
                if one and four:
                    add(
                        f"{served}, {script} {mode}: 4 clients ≥ 1.5x one client's tps (serve's)",
                        f"{four:,.0f} vs {one:,.0f} tx/s ({four / one:.2f}x)",
                        four >= 1.5 * one,
                    )
    ours = value("wire: latency", "serve: SELECT 1, simple")
    theirs = value("wire: latency", "PostgreSQL 15: SELECT 1, simple")
    if ours is not None and theirs:
        add(
            "plugin-free simple statement ≤ 2x PostgreSQL's latency",
            f"{show(ours, 's')} vs {show(theirs, 's')} ({ours / theirs:.2f}x)",
            ours <= 2 * theirs,
        )
    tenant = next(
        (
            r.value
            for r in report.rows
            if r.group.startswith("plugins: time per hook")
            and r.name.startswith("tenant post-parse (1 plugin")
        ),
        None,
    )
    if tenant is not None:
        add("tenant-isolation hook ≤ 50 µs per statement", show(tenant, "s"), tenant <= 50e-6)
    new = value("instances", "a new pooled instance")
    if new is not None:
        add("a new pooled instance ≤ 10 µs", show(new, "s"), new <= 10e-6)
    values = value("batch", "argument values per second")
    calls_s = value("batch", "calls per second")
    if values is not None and calls_s is not None:
        add(
            "call_batch ≥ 50 M argument values/s (trivial numeric procedure)",
            f"{values / 1e6:.1f} M argument values/s ({calls_s / 1e6:.1f} M calls/s)",
            values >= 50e6,
        )


def plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [
        g
        for g in dict.fromkeys(r.group for r in report.rows)
        if g.startswith(("per call", "per row", "calculate_discount"))
    ]
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 3.2 * len(groups)))
    for ax, group in zip(axes if len(groups) > 1 else [axes], groups, strict=True):
        rows = [
            r
            for r in report.rows
            if r.group == group and r.value is not None and not r.name.endswith("vs PL/pgSQL")
        ]
        ax.barh([r.name for r in rows], [r.value * 1e6 for r in rows])  # type: ignore[operator]
        ax.set_xscale("log")
        ax.set_xlabel("µs (log scale)")
        ax.set_title(group, fontsize=10)
        for i, r in enumerate(rows):
            ax.text(r.value * 1e6, i, f" {show(r.value, r.unit)}", va="center", fontsize=8)  # type: ignore[operator]
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="fewer rows and calls (a smoke run)")
    parser.add_argument("--out", type=Path, default=BUILD / "bench")
    args = parser.parse_args()
    rows = 50_000 if args.quick else args.rows
    calls = 20_000 if args.quick else 200_000
    report = Report(
        machine={
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "wasmtime": wasmtime.__version__ if hasattr(wasmtime, "__version__") else "?",
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    )
    pg = find_postgres()
    try:
        per_call(report, calls)
        per_row(report, rows, math_component(), pg)
        aggregate(report, rows, pg)
        singlestore(report, 20_000 if args.quick else 100_000)
        host_query(report, 5_000 if args.quick else 20_000)
        table_rows(report, 20_000 if args.quick else 100_000)
        instances(report)
        discount(report, 2_000, pg)
        cold_start(report)
        memory(report)
        plugin_latency(report, 300 if args.quick else 2_000)
        wire_throughput(report, 2 if args.quick else 8, pg)
    finally:
        if pg is not None:
            pg.stop()
    report.ratios()
    targets(report, rows)
    print(render(report))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(asdict(report), indent=2))
    try:
        plot(report, args.out / "bench.png")
        print(f"\nwrote {args.out / 'bench.json'} and {args.out / 'bench.png'}")
    except ImportError:
        print(f"\nwrote {args.out / 'bench.json'} (no matplotlib: no plot)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
