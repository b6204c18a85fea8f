"""Where the time of one call goes: instruction counts per call, from
valgrind's callgrind, for the bench's targets that a wall-clock ratio alone
does not explain (`nox -s profile`).

Instructions, not seconds: on a shared machine a wall-clock profile moves by
±30 % between runs, an instruction count by well under 1 %. Each scenario
runs its SQL in a fresh process under callgrind; the counts are the
inclusive instructions of named frames (the SQL function SQLite calls, and
the steps of the call below it) divided by the number of calls.
"""

from __future__ import annotations

import argparse
import base64
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "tests" / "bench"


@dataclass(frozen=True)
class Scenario:
    """A query run `runs` times over `rows` rows: one call per row."""

    name: str
    sql: str
    # The SQL function's entry frame, then the frames below it to report.
    frames: tuple[tuple[str, str], ...]
    rows: int = 4000
    runs: int = 2
    # "rate": cust/ids and the test modules, the SQL run; "discount":
    # examples/seed.sql and the built calculate_discount examples; "batch":
    # call_batch of the test module over `rows` rows (no SQL).
    setup: str = "rate"
    # The calculate_discount example a "discount" scenario calls: (language, ABI).
    example: tuple[str, str] | None = None


# Frame labels are what the table prints; the patterns match callgrind's
# function names (Rust's demangled paths, SQLite's and CPython's symbols).
SCENARIOS = {
    "host-query": Scenario(
        "one host query per row, Basic ABI (rate_lookup.wat)",
        "SELECT sum(rate(id)) FROM ids",
        (
            ("the SQL function (entry)", r"heliosdb_core::python::sqlite::xfunc$"),
            ("  the call's bracket and the guest", r"Target>::call_args$"),
            ("    the wasm call (guest + host import)", r"Func::call_unchecked_raw$"),
            ("      heliosdb_query (reads, host)", r"heliosdb_core::basic::with_statement$"),
            ("        the statement under the gate", r"heliosdb_core::gate::Gate::bounded$"),
            ("          bind, step, columns, reset", r"heliosdb_core::statement::execute$"),
            (
                "            sqlite3_step (the query itself)",
                r"libsqlite3_sys::bindings::sqlite3_step$",
            ),
        ),
    ),
    "python-udf": Scenario(
        "one host query per row, plain Python sqlite3 UDF (the baseline)",
        "SELECT sum(py_rate(id)) FROM ids",
        (
            ("the SQL function (entry)", r"^cbdispatch_func$"),
            ("  sqlite3_step (the query itself)", r"^sqlite3_step'2$"),
        ),
    ),
    "component": Scenario(
        "a trivial component call (add: s64, s64 -> s64, importing the host)",
        "SELECT sum(c_add(id, 1)) FROM ids",
        (
            ("the SQL function (entry)", r"heliosdb_core::python::sqlite::xfunc$"),
            ("  the call's bracket and the guest", r"Target>::call_args$"),
            ("    arguments made component values", r"core::iter::adapters::try_process$"),
            ("    pool, instance and the call", r"ComponentGuest as .*Guest>::call$"),
            ("      wasmtime's dynamic component call", r"component::func::Func::call$"),
            ("        lowering and lifting (Val)", r"Func::with_lift_context$"),
            ("        the core wasm call", r"wasmtime::runtime::func::Func::call_unchecked_raw$"),
        ),
    ),
    "batch": Scenario(
        "Database.call_batch(add_i64), Python lists in and out",
        "",
        (
            ("the batch (entry)", r"Numeric::__pymethod_batch__$"),
            ("  the rows' calls (no Python)", r"run_rows$"),
            ("    the core wasm calls", r"wasmtime::runtime::func::Func::call_unchecked_raw$"),
            ("  Python ints in and out", "=0-1"),
        ),
        rows=100_000,
        runs=1,
        setup="batch",
    ),
    "basic": Scenario(
        "a trivial Basic-ABI call (add_i64, import-free: the fast path)",
        "SELECT sum(add_i64(id, 1)) FROM ids",
        (
            ("the SQL function (entry)", r"heliosdb_core::python::sqlite::xfunc$"),
            ("  the core wasm call", r"wasmtime::runtime::func::Func::call_unchecked_raw$"),
        ),
    ),
}


# calculate_discount's steps, by ABI.
BASIC_DISCOUNT = (
    ("the SQL function (entry)", r"heliosdb_core::python::sqlite::xfunc$"),
    ("  the call's bracket and the guest", r"Target>::call_args$"),
    ("    the wasm call", r"wasmtime::runtime::func::Func::call_unchecked_raw$"),
    ("      host functions, all of them", r"HostFunc::array_call_trampoline$"),
    ("      the guest's own code (SDK, runtime, procedure)", "=2-3"),
    ("      heliosdb_query (reads, host)", r"heliosdb_core::basic::with_statement$"),
    ("        the statement under the gate", r"heliosdb_core::gate::Gate::bounded$"),
    ("          sqlite3_step (the query itself)", r"libsqlite3_sys::bindings::sqlite3_step$"),
    ("      heliosdb_log (the log line)", r"heliosdb_core::python::logs::LogTarget::log$"),
)
COMPONENT_DISCOUNT = (
    ("the SQL function (entry)", r"heliosdb_core::python::sqlite::xfunc$"),
    ("  the call's bracket and the guest", r"Target>::call_args$"),
    ("    wasmtime's dynamic component call", r"component::func::Func::call$"),
    ("      host functions, all of them", r"HostFn::cabi_entrypoint$"),
    ("      the guest's own code (SDK, runtime, procedure)", "=2-3"),
    ("      host query (WIT values <-> rows)", r"procedures::host::Host>::query$"),
    ("        the statement under the gate", r"heliosdb_core::gate::Gate::bounded$"),
    ("          sqlite3_step (the query itself)", r"libsqlite3_sys::bindings::sqlite3_step$"),
)
for _lang, _abi in (
    ("rust", "basic"),
    ("go", "basic"),
    ("rust", "component"),
    ("js", "component"),
    ("python", "component"),
):
    SCENARIOS[f"discount-{_lang}-{_abi}"] = Scenario(
        f"calculate_discount, {_lang} {_abi} (one indexed lookup, a log line)",
        "SELECT sum(cd(12345, id * 1.0)) FROM ids",
        BASIC_DISCOUNT if _abi == "basic" else COMPONENT_DISCOUNT,
        rows=2000 if _lang in ("rust", "go") else 300,
        setup="discount",
        example=(_lang, _abi),
    )


def run_scenario(name: str, rows: int, runs: int) -> None:
    """The inner process: a database set up for `name`, its SQL run `runs` times."""
    import wasmtime
    from bench import discount_ddl, rate_lookup_tables

    import heliosdb_wasm as h

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    if SCENARIOS[name].setup == "discount":
        with h.Database.open(":memory:") as db:
            db.execute((ROOT / "examples" / "seed.sql").read_text())
            db.execute("CREATE TABLE ids(id INTEGER)")
            db.execute(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?)"
                " INSERT INTO ids SELECT x FROM c",
                [rows],
            )
            lang, abi = SCENARIOS[name].example or ("rust", "basic")
            ddl = discount_ddl("cd", lang, abi)
            if ddl is None:
                raise SystemExit(f"calculate_discount is not built for {lang} {abi} (nox -s build)")
            db.execute(ddl)
            for _ in range(runs):
                db.execute(SCENARIOS[name].sql)
        return
    with h.Database.open(":memory:") as db:
        rate_lookup_tables(db, rows)
        add = wasmtime.wat2wasm(
            '(module (func (export "add_i64") (param i64 i64) (result i64)'
            " (i64.add (local.get 0) (local.get 1))))"
        )
        db.execute(
            "CREATE PROCEDURE add_i64(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
            f" AS $wasm${b64(add)}$wasm$"
        )
        if name == "component":
            sys.path.insert(0, str(ROOT / "tests"))
            from conftest import make_component

            tool = shutil.which("wasm-tools")
            if tool is None:
                raise SystemExit("wasm-tools is needed for the component scenario")
            with tempfile.TemporaryDirectory() as tmp:
                component = make_component(tool, "component_math", "math", Path(tmp))
            db.execute(
                "CREATE PROCEDURE c_add LANGUAGE wasm USING EXPORT 'add'"
                f" AS $wasm${b64(component)}$wasm$"
            )
        if SCENARIOS[name].setup == "batch":
            xs = list(range(rows))
            ones = [1] * rows
            for _ in range(runs):
                db.call_batch("add_i64", [xs, ones])
            return
        for _ in range(runs):
            db.execute(SCENARIOS[name].sql)


# "Ir (pct)  file:function [object]", the file "???" without debug info.
LINE = re.compile(
    r"^\s*([\d,]+)\s+\([\s\d.]+%\)\s+(?:\?\?\?:|\S*?\.(?:c|h|S|rs|cc|cpp):)?(.+?)\s+\["
)


def inclusive(out_file: Path) -> dict[str, int]:
    """Every function's inclusive instruction count in a callgrind output."""
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(out_file)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    counts: dict[str, int] = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            name = m.group(2).strip()
            counts[name] = counts.get(name, 0) + int(m.group(1).replace(",", ""))
    return counts


def profile(name: str, out: Path) -> list[tuple[str, float | None]]:
    scenario = SCENARIOS[name]
    out_file = out / f"callgrind.{name}"
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out_file}",
            sys.executable,
            __file__,
            "--run",
            name,
            "--rows",
            str(scenario.rows),
            "--runs",
            str(scenario.runs),
        ],
        check=True,
        capture_output=True,
    )
    counts = inclusive(out_file)
    calls = scenario.rows * scenario.runs
    table: list[tuple[str, float | None]] = []
    for label, pattern in scenario.frames:
        if pattern.startswith("="):
            # "=i-j": frame i less frame j (what is left of a frame besides one below it).
            i, j = (table[int(k)][1] for k in pattern[1:].split("-"))
            table.append((label, None if i is None or j is None else i - j))
            continue
        rx = re.compile(pattern)
        found = [n for name_, n in counts.items() if rx.search(name_)]
        table.append((label, max(found) / calls if found else None))
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", choices=sorted(SCENARIOS), help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=4000, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "profile")
    parser.add_argument("scenarios", nargs="*", help=f"some of {', '.join(SCENARIOS)} (all)")
    args = parser.parse_args()
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.run:
        run_scenario(args.run, args.rows, args.runs)
        return 0
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        print("valgrind (Debian's package) is needed: apt-get install valgrind", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.scenarios or list(SCENARIOS):
        print(f"{SCENARIOS[name].name}:")
        for label, per_call in profile(name, args.out):
            shown = "n/a" if per_call is None else f"{per_call:,.0f}"
            print(f"  {label:<54} {shown:>8} instructions/call")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
