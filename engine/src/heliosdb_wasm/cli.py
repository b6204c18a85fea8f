"""The ``heliosdb-wasm`` command line."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from . import archive, ddl, scaffold
from .database import Database, Result
from .errors import InvalidArgument, ProcedureError, ProcedureTrap, RoleError
from .registry import ProcedureVersion
from .roles import check_name as check_role_name
from .values import SqlValue

if TYPE_CHECKING:
    from .plugins.tracing import Tracing


def _cell(value: SqlValue) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return "x'" + value.hex() + "'"
    return str(value)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[SqlValue]]) -> str:
    """A plain-text table, as psql prints one."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    line = " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "-+-".join("-" * w for w in widths)]
    out += [" | ".join(t.ljust(w) for t, w in zip(row, widths, strict=True)) for row in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def _jsonable(value: SqlValue) -> Any:
    return value.hex() if isinstance(value, bytes) else value


_db_option = click.option("--db", "db_path", required=True, help="Database file.")
_json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


class _Group(click.Group):
    """Any ProcedureError a command lets through (a busy or damaged file on
    open, say) ends it with the typed error, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ProcedureError as exc:
            _fail(exc, as_json="--json" in sys.argv)


@click.group(cls=_Group)
@click.version_option(package_name="heliosdb-wasm")
def main() -> None:
    """WebAssembly stored procedures for an embedded SQL database."""


@main.command()
@click.option("--db", "db_path", default=":memory:", show_default=True, help="Database file.")
@click.option(
    "-f",
    "--file",
    "scripts",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Run the statements of a SQL script (repeatable, in order).",
)
@click.option("--echo", is_flag=True, help="Print each statement before its result.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON lines.")
@click.argument("sql", nargs=-1)
def sql(
    db_path: str, scripts: tuple[Path, ...], echo: bool, as_json: bool, sql: tuple[str, ...]
) -> None:
    """Run SQL (including procedure DDL and CALL) against a database."""
    text = ";\n".join([*(s.read_text() for s in scripts), " ".join(sql)])
    if not text.strip():
        raise click.UsageError("give SQL as arguments or with --file")
    with Database.open(db_path) as db:
        for statement in ddl.split_statements(text):
            if echo and not as_json:
                click.secho(f"\n{statement};", fg="cyan")
            try:
                result = db.execute(statement)
            except ProcedureError as exc:
                _fail(exc, as_json)
            _print(result, as_json)


def _print(result: Result, as_json: bool) -> None:
    if as_json:
        rows = [dict(zip(result.columns, map(_jsonable, r), strict=True)) for r in result.rows]
        click.echo(json.dumps({"columns": result.columns, "rows": rows, "changes": result.changes}))
    elif result.columns:
        click.echo(format_table(result.columns, result.rows))


def _fail(exc: ProcedureError, as_json: bool) -> NoReturn:
    stack = exc.stack() if isinstance(exc, ProcedureTrap) else ""
    if as_json:
        record: dict[str, Any] = {
            "error": exc.code,
            "procedure": exc.procedure,
            "message": exc.message,
        }
        if isinstance(exc, ProcedureTrap) and exc.backtrace:
            record["backtrace"] = list(exc.backtrace)
        click.echo(json.dumps(record))
    else:
        click.secho(f"error: {exc}", fg="red", err=True)
        if stack:
            click.secho(stack, fg="red", err=True)
    sys.exit(1)


def _listing(records: list[dict[str, Any]], as_json: bool, **columns: Callable[[Any], Any]) -> None:
    """Records as JSON, or as a table of the given columns (header -> cell)."""
    if as_json:
        click.echo(json.dumps(records))
        return
    rows = [tuple(cell(r) for cell in columns.values()) for r in records]
    click.echo(format_table([c.replace("_", " ") for c in columns], rows))


T = TypeVar("T")


def _read_db(db_path: str, as_json: bool, read: Callable[[Database], T]) -> T:
    """``read(db)`` on the database file; a ProcedureError exits with its code."""
    with Database.open(db_path) as db:
        try:
            return read(db)
        except ProcedureError as exc:
            _fail(exc, as_json)


@main.command()
@_db_option
@_json_option
def procedures(db_path: str, as_json: bool) -> None:
    """List the registered procedures and their active versions."""
    with Database.open(db_path) as db:
        procs = db.procedures()
        for name, error in db.damaged().items():
            click.secho(f"warning: {name} is not available: {error}", fg="yellow", err=True)
    records = [
        {
            "name": p.name,
            "version": p.version,
            "abi": p.abi,
            "signature": p.signature.render(),
            "capabilities": p.capabilities.sorted(),
        }
        for p in procs
    ]
    _listing(
        records,
        as_json,
        name=lambda r: r["name"],
        version=lambda r: r["version"],
        abi=lambda r: r["abi"],
        signature=lambda r: r["signature"],
        capabilities=lambda r: ", ".join(r["capabilities"]),
    )


def _columns(spec: str, what: str) -> str:
    """ "a:BIGINT,b:DOUBLE" -> "a BIGINT, b DOUBLE" (types are checked by the DDL)."""
    parts = []
    for item in filter(None, (x.strip() for x in spec.split(","))):
        name, sep, type_ = item.partition(":")
        if not sep or not name.strip() or not type_.strip():
            raise click.BadParameter(f"{item!r} is not name:TYPE", param_hint=what)
        parts.append(f"{name.strip()} {type_.strip()}")
    return ", ".join(parts)


def _create_statement(
    name: str,
    wasm: Path,
    params: str | None,
    returns: str | None,
    returns_table: str | None,
    capabilities: str,
    export: str | None,
    called_on_null_input: bool,
    replace: bool,
) -> str:
    head = f"CREATE {'OR REPLACE ' if replace else ''}PROCEDURE {name}"
    if params is not None or returns or returns_table:
        head += f"({_columns(params or '', '--params')})"
        if returns_table:
            head += f" RETURNS TABLE({_columns(returns_table, '--returns-table')})"
        elif returns:
            head += f" RETURNS {returns}"
    clauses = [head, "LANGUAGE wasm"]
    if called_on_null_input:
        clauses.append("CALLED ON NULL INPUT")
    caps = [c.strip() for c in capabilities.split(",") if c.strip()]
    if caps:
        quoted = ", ".join("'" + c.replace("'", "''") + "'" for c in caps)
        clauses.append(f"CAPABILITIES ({quoted})")
    if export:
        clauses.append("USING EXPORT '" + export.replace("'", "''") + "'")
    clauses.append(f"AS $wasm$file://{wasm.resolve()}$wasm$")
    return " ".join(clauses)


_signature_options = [
    click.option("--params", help='Parameters, e.g. "customer_id:BIGINT,order_total:DOUBLE".'),
    click.option("--returns", help="Result type, e.g. DOUBLE (components may omit the signature)."),
    click.option("--returns-table", help='Table result columns, e.g. "region:TEXT,total:DOUBLE".'),
    click.option("--capabilities", default="", help='e.g. "read:customers,write:orders".'),
    click.option("--export", "export", help="The export to call (default: the name)."),
    click.option("--called-on-null-input", is_flag=True, help="Pass NULL arguments to the guest."),
]


def _with_signature_options(func: Any) -> Any:
    for option in reversed(_signature_options):
        func = option(func)
    return func


@main.group()
def procedure() -> None:
    """Register, inspect, version and drop procedures."""


@procedure.command("create")
@_db_option
@click.option("--name", required=True, help="SQL name of the procedure.")
@click.option(
    "--file", "wasm", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@_with_signature_options
@click.option("--replace", is_flag=True, help="Replace an existing procedure (a new version).")
def procedure_create(
    db_path: str,
    name: str,
    wasm: Path,
    params: str | None,
    returns: str | None,
    returns_table: str | None,
    capabilities: str,
    export: str | None,
    called_on_null_input: bool,
    replace: bool,
) -> None:
    """Register a .wasm file as a procedure (CREATE PROCEDURE)."""
    statement = _create_statement(
        name,
        wasm,
        params,
        returns,
        returns_table,
        capabilities,
        export,
        called_on_null_input,
        replace,
    )
    with Database.open(db_path) as db:
        try:
            db.execute(statement)
        except ProcedureError as exc:
            _fail(exc, False)
        created = next(p for p in db.procedures() if p.name == name)
    click.echo(f"{created.name} v{created.version} ({created.abi}) {created.signature.render()}")


def _versions_table(versions: Sequence[ProcedureVersion]) -> str:
    rows = [
        (
            v.version,
            "*" if v.active else "",
            v.abi,
            v.export,
            v.signature.render(),
            ", ".join(v.capabilities.sorted()),
            v.module_sha256[:12],
        )
        for v in versions
    ]
    return format_table(
        ["version", "active", "abi", "export", "signature", "capabilities", "module"], rows
    )


def _version_json(v: ProcedureVersion) -> dict[str, Any]:
    return {
        "name": v.name,
        "version": v.version,
        "active": v.active,
        "abi": v.abi,
        "export": v.export,
        "signature": v.signature.render(),
        "capabilities": v.capabilities.sorted(),
        "limits": v.limit_overrides,
        "module_sha256": v.module_sha256,
        "created_at": v.created_at,
    }


@procedure.command("list")
@_db_option
@_json_option
@click.pass_context
def procedure_list(ctx: click.Context, db_path: str, as_json: bool) -> None:
    """List procedures and their active versions."""
    ctx.invoke(procedures, db_path=db_path, as_json=as_json)


@procedure.command("info")
@_db_option
@_json_option
@click.argument("name")
def procedure_info(db_path: str, name: str, as_json: bool) -> None:
    """Everything about one procedure: its active version and all versions."""
    versions = _read_db(db_path, as_json, lambda db: db.versions(name))
    active = next(v for v in versions if v.active)
    if as_json:
        click.echo(json.dumps({**_version_json(active), "versions": [v.version for v in versions]}))
        return
    click.echo(f"{active.name} v{active.version} ({active.abi}, export {active.export})")
    click.echo(f"  signature     {active.signature.render()}")
    click.echo(f"  capabilities  {', '.join(active.capabilities.sorted()) or '(none)'}")
    click.echo(f"  limits        {active.limit_overrides or '(defaults)'}")
    click.echo(f"  module        sha256 {active.module_sha256}")
    click.echo(f"  versions      {', '.join(str(v.version) for v in versions)}")


@procedure.command("versions")
@_db_option
@_json_option
@click.argument("name")
def procedure_versions(db_path: str, name: str, as_json: bool) -> None:
    """All versions of a procedure; * marks the active one."""
    versions = _read_db(db_path, as_json, lambda db: db.versions(name))
    if as_json:
        click.echo(json.dumps([_version_json(v) for v in versions]))
    else:
        click.echo(_versions_table(versions))


@procedure.command("use")
@_db_option
@click.argument("name")
@click.argument("version", type=int)
def procedure_use(db_path: str, name: str, version: int) -> None:
    """Make VERSION the active version of NAME (ALTER PROCEDURE ... USE VERSION)."""
    _run_statement(db_path, f"ALTER PROCEDURE {name} USE VERSION {version}")
    click.echo(f"{name}: version {version} is active")


@procedure.command("drop")
@_db_option
@click.option("--if-exists", is_flag=True)
@click.argument("name")
def procedure_drop(db_path: str, name: str, if_exists: bool) -> None:
    """Drop a procedure and all its versions."""
    _run_statement(db_path, f"DROP PROCEDURE {'IF EXISTS ' if if_exists else ''}{name}")
    click.echo(f"{name}: dropped")


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.3f}"


@procedure.command("metrics")
@_db_option
@_json_option
@click.argument("name")
def procedure_metrics(db_path: str, name: str, as_json: bool) -> None:
    """Calls, errors, latency percentiles, fuel and memory, per version (recorded by the engine)."""
    by_version = _read_db(db_path, as_json, lambda db: db.metrics(name))
    if as_json:
        click.echo(json.dumps({str(v): m.to_json() for v, m in sorted(by_version.items())}))
        return
    if not by_version:
        click.echo(f"{name}: no calls recorded yet")
        return
    rows = []
    for version, m in sorted(by_version.items()):
        j = m.to_json()
        codes = ", ".join(f"{c} {n}" for c, n in sorted(m.error_codes.items()))
        rows.append(
            (
                version,
                m.calls,
                f"{m.errors}" + (f" ({codes})" if codes else ""),
                _ms(j["mean_seconds"]),
                _ms(j["p50_seconds"]),
                _ms(j["p90_seconds"]),
                _ms(j["p99_seconds"]),
                "-" if j["fuel_mean"] is None else f"{j['fuel_mean']:.0f}",
                "-" if m.max_memory is None else f"{m.max_memory / 1024 / 1024:.1f} MiB",
            )
        )
    headers = [
        "version",
        "calls",
        "errors",
        "mean ms",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "fuel/call",
        "max memory",
    ]
    click.echo(format_table(headers, rows))
    click.echo("(percentiles are histogram bucket bounds, within about 9 %)")


_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """30s, 15m, 1h, 7d -> seconds."""
    unit = text[-1:].lower()
    try:
        if unit not in _DURATION or float(text[:-1]) < 0:
            raise ValueError
        return float(text[:-1]) * _DURATION[unit]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration like 30s, 15m, 1h or 7d") from None


@main.command()
@_db_option
@click.option("--procedure", "name", help="Only this procedure's lines.")
@click.option("--last", help="Only lines from the last 30s, 15m, 1h, 7d, ...")
@click.option(
    "--level",
    type=click.Choice(["trace", "debug", "info", "warn", "error"]),
    help="Only lines at this level or above.",
)
@click.option("--limit", default=1000, show_default=True, help="At most this many (the newest).")
@_json_option
def logs(
    db_path: str, name: str | None, last: str | None, level: str | None, limit: int, as_json: bool
) -> None:
    """The procedure log as persisted in the database."""
    import time

    since = time.time() - _duration(last) if last else None
    levels = None
    if level is not None:
        order = ["trace", "debug", "info", "warn", "error"]
        levels = tuple(order[order.index(level) :])
    with Database.open(db_path) as db:
        records = db.persisted_logs(name, since, levels, limit)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "time": r.time,
                        "procedure": r.procedure,
                        "version": r.version,
                        "level": r.level,
                        "message": r.message,
                    }
                    for r in records
                ]
            )
        )
        return
    colours = {"warn": "yellow", "error": "red", "trace": "bright_black", "debug": "bright_black"}
    for r in records:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.time))
        click.secho(
            f"{stamp} {r.level:<5} {r.procedure} v{r.version}: {r.message}",
            fg=colours.get(r.level),
        )


@procedure.command("profile")
@_db_option
@click.option("--param", "values", multiple=True, help="name=value, in parameter order.")
@click.option("--calls", default=100, show_default=True, help="How many calls to make.")
@_json_option
@click.argument("name")
def procedure_profile(
    db_path: str, name: str, values: tuple[str, ...], calls: int, as_json: bool
) -> None:
    """Call NAME repeatedly and break each call down: instantiate, marshal, guest, host.

    The calls run in a transaction that is rolled back: profiling leaves the
    data as it was.
    """
    from .telemetry import CallStats

    args = [_param_value(item.partition("=")[2]) for item in values]
    seen: list[CallStats] = []
    with Database.open(db_path) as db:
        db.session.telemetry.listeners.append(
            lambda s: seen.append(s) if s.procedure.lower() == name.lower() else None
        )
        db.execute("BEGIN")
        try:
            for _ in range(max(1, calls)):
                db.call(name, *args)
        except ProcedureError as exc:
            db.execute("ROLLBACK")
            _fail(exc, as_json)
        db.execute("ROLLBACK")
    if not seen:
        _fail(ProcedureError(f"no call of {name} was recorded"), as_json)
    parts = ["total", "instantiate", "marshal", "guest", "host"]
    summary: dict[str, dict[str, float]] = {}
    for part in parts:
        samples = sorted(getattr(s, part) for s in seen)
        summary[part] = {
            "mean": sum(samples) / len(samples),
            "p50": samples[len(samples) // 2],
            "p99": samples[min(len(samples) - 1, (len(samples) * 99) // 100)],
            "max": samples[-1],
        }
    fuel = [s.fuel_used for s in seen if s.fuel_used is not None]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "procedure": name,
                    "calls": len(seen),
                    "seconds": summary,
                    "fuel_mean": sum(fuel) / len(fuel) if fuel else None,
                }
            )
        )
        return
    rows = [
        (part, *(f"{summary[part][k] * 1e6:.1f}" for k in ("mean", "p50", "p99", "max")))
        for part in parts
    ]
    click.echo(f"{name}: {len(seen)} calls (rolled back)")
    click.echo(format_table(["part", "mean µs", "p50 µs", "p99 µs", "max µs"], rows))
    if fuel:
        click.echo(f"fuel per call: {sum(fuel) / len(fuel):.0f}")
    click.echo(
        "instantiate: only calls that needed a new instance (the pool keeps them);"
        " marshal: the host's side of the call (argument/result conversion, the call's"
        " savepoint and bookkeeping); guest: time in wasm minus host; host: time in"
        " host API calls (queries, logging, nested procedures)"
    )


def _run_statement(db_path: str, statement: str) -> None:
    with Database.open(db_path) as db:
        try:
            db.execute(statement)
        except ProcedureError as exc:
            _fail(exc, False)


def _param_value(text: str) -> SqlValue:
    """--param values: NULL, integers and floats as numbers, anything else text."""
    if text.upper() == "NULL":
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


@main.command("test")
@click.argument("wasm", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--export", "export", required=True, help="The export to call.")
@click.option("--params", help='Signature, e.g. "customer_id:BIGINT,order_total:DOUBLE".')
@click.option("--returns", help="Result type (core modules need the signature).")
@click.option("--returns-table", help='Table result columns, e.g. "region:TEXT,total:DOUBLE".')
@click.option("--capabilities", default="", help='e.g. "read:customers".')
@click.option("--param", "values", multiple=True, help="name=value, in parameter order.")
@click.option("--db", "db_path", default=":memory:", help="Run against this database.")
@click.option(
    "--fixture",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="SQL to run first (tables and rows the procedure needs).",
)
@click.option("--expect", help="Expected result; numbers compare to 1e-9 relative.")
@click.option("--expect-error", help="Expected error code, e.g. user-error.")
def test_command(
    wasm: Path,
    export: str,
    params: str | None,
    returns: str | None,
    returns_table: str | None,
    capabilities: str,
    values: tuple[str, ...],
    db_path: str,
    fixture: Path | None,
    expect: str | None,
    expect_error: str | None,
) -> None:
    """Call one export of WASM locally and check the result (exit 0 pass, 1 fail)."""
    args: list[SqlValue] = []
    for item in values:
        _name, sep, text = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not name=value", param_hint="--param")
        args.append(_param_value(text))
    name = "heliosdb_test_" + "".join(c if c.isalnum() else "_" for c in export)
    statement = _create_statement(
        name, wasm, params, returns, returns_table, capabilities, export, False, True
    )
    with Database.open(db_path) as db:
        try:
            if fixture is not None:
                db.execute(fixture.read_text())
            db.execute(statement)
            table = db.versions(name)[0].signature.is_table
            holes = ", ".join("?" * len(args))
            query = f"SELECT * FROM {name}({holes})" if table else f"SELECT {name}({holes})"
            result = db.execute(query, args)
            got: Any = result.rows if table else result.scalar()
        except ProcedureError as exc:
            if expect_error is not None and exc.code == expect_error:
                click.secho(f"PASS  {export} failed with {exc.code} as expected", fg="green")
                return
            click.secho(f"FAIL  {export}: {exc}", fg="red")
            sys.exit(1)
        finally:
            if db_path != ":memory:":
                db.execute(f"DROP PROCEDURE IF EXISTS {name}")
        for record in db.logs(name):
            click.echo(f"  log {record.level}: {record.message}")
    if expect_error is not None:
        click.secho(f"FAIL  {export} returned {got!r}, expected error {expect_error}", fg="red")
        sys.exit(1)
    if expect is not None and not _matches(got, expect):
        click.secho(f"FAIL  {export} returned {got!r}, expected {expect}", fg="red")
        sys.exit(1)
    click.secho(f"PASS  {export} returned {got!r}", fg="green")


def _matches(got: Any, expect: str) -> bool:
    wanted = _param_value(expect)
    if isinstance(got, float) and isinstance(wanted, int | float):
        return math.isclose(got, float(wanted), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(got, list):
        return json.dumps(got) == expect or str(got) == expect
    return got == wanted or str(got) == expect


@main.command()
@click.argument("project", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--abi",
    type=click.Choice(["basic", "component", "all"]),
    default="all",
    show_default=True,
    help="all = every ABI the project's language can build.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("build"),
    show_default=True,
)
@click.option("--name", help="Artifact base name (default: the package or procedure name).")
@click.option("--force", is_flag=True, help="Rebuild even when up to date.")
def build(project: Path, abi: str, out_dir: Path, name: str | None, force: bool) -> None:
    """Build a procedure project (Rust, Go, Python, AssemblyScript, JS) to WebAssembly."""
    from .toolchains import BuildError, abis_for, build_project

    try:
        abis = abis_for(project) if abi == "all" else (abi,)
        for which in abis:
            build_project(project, out_dir, which, name=name, log=click.echo, force=force)
    except BuildError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)


@main.command()
@click.option("--lang", "language", required=True, type=click.Choice(scaffold.LANGUAGES))
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Create the project folder NAME in here.",
)
def init(language: str, name: str, parent: Path) -> None:
    """Create a procedure project NAME that builds and passes `test` out of the box."""
    try:
        project = scaffold.init_project(language, name, parent)
    except scaffold.ScaffoldError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    click.echo(f"created {project} ({language}); next: see {project / 'README.md'}")


# --- extension archives ---------------------------------------------------------------


@main.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("build/extensions"),
    show_default=True,
)
@click.option(
    "--sign",
    "key_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Sign with this Ed25519 private key (heliosdb-wasm keygen).",
)
def pack(source: Path, out_dir: Path, key_file: Path | None) -> None:
    """Build and pack an extension archive from SOURCE (extension.toml or its folder)."""
    key = archive.load_private_key(key_file) if key_file else None
    try:
        output = archive.pack_project(source, out_dir, key, log=click.echo)
    except archive.ArchiveError as exc:
        _fail(exc, False)
    manifest = archive.read_archive(output).manifest
    signed = " (signed)" if key else ""
    click.echo(
        f"packed {output}: {manifest.name} {manifest.version}, "
        f"{len(manifest.procedures)} procedure(s){signed}"
    )


def _describe(arc: archive.Archive, key_status: str) -> dict[str, Any]:
    m = arc.manifest
    return {
        "name": m.name,
        "version": m.version,
        "description": m.description,
        "license": m.license,
        "signature": key_status,
        "procedures": [
            {
                "name": p.name,
                "abi": p.abi,
                "file": p.file,
                "export": p.export or p.name,
                "signature": p.signature,
                "capabilities": list(p.capabilities),
                "limits": p.limits,
            }
            for p in m.procedures
        ],
        "files": m.files,
    }


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--key", help="Trusted public key (64 hex digits or a .pub file): require its signature."
)
@_json_option
def verify(path: Path, key: str | None, as_json: bool) -> None:
    """Check an archive's structure, hashes and (with --key) signature; show what it installs."""
    try:
        arc = archive.read_archive(path)
        if key is not None:
            arc.verify_signature(archive.load_public_key(key))
            status = "valid"
        else:
            status = "present, not checked (no --key)" if arc.signature else "unsigned"
    except archive.ArchiveError as exc:
        _fail(exc, as_json)
    info = _describe(arc, status)
    if as_json:
        click.echo(json.dumps(info))
        return
    click.secho(
        f"OK  {info['name']} {info['version']}: {len(arc.members)} files, hashes match", fg="green"
    )
    click.echo(f"  signature     {status}")
    if info["description"]:
        click.echo(f"  description   {info['description']}")
    rows = [
        (
            p["name"],
            p["abi"],
            p["signature"] or "(from the component)",
            ", ".join(p["capabilities"]) or "(none)",
        )
        for p in info["procedures"]
    ]
    click.echo(format_table(["procedure", "abi", "signature", "capabilities"], rows))


@main.command()
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
)
def keygen(name: str, directory: Path) -> None:
    """Create an Ed25519 key pair NAME.key (private, mode 600) and NAME.pub."""
    try:
        public = archive.generate_key(directory / f"{name}.key", directory / f"{name}.pub")
    except archive.ArchiveError as exc:
        _fail(exc, False)
    click.echo(
        f"wrote {directory / (name + '.key')} (keep it secret) and {directory / (name + '.pub')}"
    )
    click.echo(f"public key {public.hex()}")


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_db_option
@click.option(
    "--key", help="Trusted public key (64 hex digits or a .pub file): require its signature."
)
@_json_option
def install(path: Path, db_path: str, key: str | None, as_json: bool) -> None:
    """Install an extension archive into a database: all its procedures or none."""
    ext = _read_db(db_path, as_json, lambda db: db.install_extension(path, key))
    created = [{"procedure": p, "version": v} for p, v in ext.procedures]
    if as_json:
        click.echo(json.dumps({"name": ext.name, "version": ext.version, "procedures": created}))
        return
    click.secho(f"installed {ext.name} {ext.version}", fg="green")
    for p, v in ext.procedures:
        click.echo(f"  {p} v{v}")


@main.command()
@_db_option
@_json_option
def extensions(db_path: str, as_json: bool) -> None:
    """List installed extensions (every version)."""
    with Database.open(db_path) as db:
        installed = db.extensions()
    records = [
        {
            "name": e.name,
            "version": e.version,
            "signed_by": e.signed_by,
            "procedures": [{"procedure": p, "version": v} for p, v in e.procedures],
            "installed_at": e.installed_at,
        }
        for e in installed
    ]
    _listing(
        records,
        as_json,
        extension=lambda r: r["name"],
        version=lambda r: r["version"],
        signed_by=lambda r: r["signed_by"][:16] + "…" if r["signed_by"] else "unsigned",
        procedures=lambda r: ", ".join(
            f"{p['procedure']} v{p['version']}" for p in r["procedures"]
        ),
    )


# --- query-hook plugins without a server (plugins/tools.py) -------------------------------


def _plugin_sources(func: Callable[..., None]) -> Callable[..., None]:
    """--manifest, --plugins-dir and --db: where plugins are looked up."""
    func = click.option(
        "--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), help="Database file."
    )(func)
    func = click.option(
        "--plugins-dir",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="Every *.toml manifest of this directory.",
    )(func)
    return click.option(
        "--manifest",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="plugins.toml.",
    )(func)


def _tools_call(as_json: bool, call: Callable[[], T]) -> T:
    """``call()``; a ProcedureError exits with its code and message."""
    try:
        return call()
    except ProcedureError as exc:
        _fail(exc, as_json)


@main.group()
def plugin() -> None:
    """Query-hook plugins without a server: list, test, deploy, replay (docs/plugins.md §9)."""


@plugin.command("list")
@_plugin_sources
@_json_option
def plugin_list(
    manifest: Path | None, plugins_dir: Path | None, db_path: Path | None, as_json: bool
) -> None:
    """Every plugin of a manifest, a plugins directory and a database, in the order they run."""
    from .plugins import tools

    if manifest is None and plugins_dir is None and db_path is None:
        raise click.UsageError("give --manifest, --plugins-dir or --db")
    sources = tools.Sources(manifest, plugins_dir, db_path)
    rows = _tools_call(as_json, lambda: tools.list_plugins(sources))
    _listing(
        [dataclasses.asdict(r) for r in rows],
        as_json,
        name=lambda r: r["name"],
        origin=lambda r: r["origin"],
        version=lambda r: r["version"] if r["version"] is not None else r["sha256"][:12],
        hooks=lambda r: ",".join(r["hooks"]),
        priority=lambda r: r["priority"],
        enabled=lambda r: r["enabled"],
        candidate=lambda r: (
            f"{r['candidate_sha256'][:12]} ({r['candidate_percent']}%)"
            if r["candidate_sha256"]
            else ""
        ),
    )


@plugin.command("test")
@click.argument("source", metavar="PLUGIN")
@click.option("--sql", "sql", multiple=True, help="A statement to run (repeatable).")
@click.option(
    "--sql-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Statements to run, separated by semicolons.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A startup parameter of the session (user=alice, tenant=acme).",
)
@click.option("--config", help="The plugin's config as a JSON object (replaces its own).")
@_plugin_sources
@_json_option
def plugin_test(
    source: str,
    sql: tuple[str, ...],
    sql_file: Path | None,
    params: tuple[str, ...],
    config: str | None,
    manifest: Path | None,
    plugins_dir: Path | None,
    db_path: Path | None,
    as_json: bool,
) -> None:
    """Run statements through one PLUGIN (a .wasm file, or a plugin's name in
    --manifest, --plugins-dir or --db) and print each hook's verdict.

    The statements run on --db (an empty database in memory without it), as
    the server would run them; exit status 1 if one was rejected or failed.
    """
    from .plugins import tools

    def run() -> list[tools.StatementRun]:
        sources = tools.Sources(manifest, plugins_dir, db_path)
        spec = tools.resolve(source, sources, config=tools.parse_config(config))
        statements = tools.statements_of(sql, sql_file)
        parameters = tools.parse_pairs(params, "--param")
        if db_path is None:
            with Database.open(":memory:") as db:
                return tools.run_statements(spec, statements, parameters, db)
        with tools.open_existing(db_path) as db:
            return tools.run_statements(spec, statements, parameters, db)

    runs = _tools_call(as_json, run)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in runs]))
    else:
        for r in runs:
            click.echo(r.sql)
            for call in r.calls:
                click.echo(f"  {call['stage']:<15} {_verdict_text(call)}")
            click.echo(f"  => {_outcome_text(r)}")
    if any(r.outcome != "ok" for r in runs):
        sys.exit(1)


def _verdict_text(call: dict[str, Any]) -> str:
    action = call["action"]
    if action == "reject":
        text = f"reject {call['sqlstate']}: {call['message']}"
    elif action == "error":
        text = f"error: {call['message']}"
    elif action == "rewrite":
        text = f"rewrite: {call.get('sql', call.get('ast'))}"
    elif action == "replace-rows":
        text = f"replace-rows: {json.dumps(call['rows'])}"
    else:
        text = action
    if call.get("set-session"):
        text += f" (set {json.dumps(call['set-session'])})"
    return text


def _outcome_text(run: Any) -> str:
    if run.outcome != "ok":
        return f"{run.outcome} {run.sqlstate}: {run.message}"
    if run.columns:
        return f"ok, {len(run.rows)} row(s): {json.dumps(run.rows)}"
    return f"ok, {run.changes} change(s)"


@plugin.command("deploy")
@click.argument("wasm", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--db",
    "db_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Database file.",
)
@click.option("--name", required=True, help="The plugin's name.")
@click.option("--priority", type=int, help="Lower runs first (default 100).")
@click.option("--hooks", help='Comma-separated, e.g. "pre-parse,post-parse" (default: all).')
@click.option("--capabilities", help='Comma-separated, e.g. "read:orders".')
@click.option("--config", help="The plugin's config as a JSON object.")
@click.option("--limit", "limits", multiple=True, metavar="NAME=VALUE", help="A limit override.")
@click.option("--enabled/--disabled", default=None, help="Whether it runs (default: enabled).")
@click.option(
    "--candidate-percent",
    type=click.IntRange(0, 100),
    help="Deploy as the A/B candidate of the existing plugin, for this share of sessions.",
)
@_json_option
def plugin_deploy(
    wasm: Path,
    db_path: Path,
    name: str,
    priority: int | None,
    hooks: str | None,
    capabilities: str | None,
    config: str | None,
    limits: tuple[str, ...],
    enabled: bool | None,
    candidate_percent: int | None,
    as_json: bool,
) -> None:
    """CREATE PLUGIN from the command line: WASM as the plugin --name of --db.

    Replacing a plugin keeps the settings not given here. With
    --candidate-percent, WASM becomes the plugin's A/B candidate instead
    (ALTER PLUGIN ... CANDIDATE), with the plugin's settings. A server on
    the database picks the change up by itself.
    """
    from .plugins import tools

    def split(text: str | None) -> list[str] | None:
        return None if text is None else [t.strip() for t in text.split(",") if t.strip()]

    def run() -> tools.Deployed:
        return tools.deploy(
            db_path,
            name,
            wasm,
            priority=priority,
            hooks=split(hooks),
            capabilities=split(capabilities),
            config=tools.parse_config(config),
            limits=tools.parse_pairs(limits, "--limit") if limits else None,
            enabled=enabled,
            candidate_percent=candidate_percent,
        )

    done = _tools_call(as_json, run)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(done)))
    elif done.candidate_percent is not None:
        click.echo(
            f"plugin {done.name} v{done.version}: candidate {done.sha256[:12]}"
            f" for {done.candidate_percent}% of sessions"
        )
    else:
        click.echo(f"plugin {done.name} v{done.version}: {done.sha256[:12]}")


@plugin.command("replay")
@click.argument("capture", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--plugin", "plugin_a", required=True, help="A .wasm file, or a plugin's name.")
@click.option("--against", "plugin_b", required=True, help="The version to compare it with.")
@click.option("--config", help="The plugins' config as a JSON object (replaces theirs).")
@_plugin_sources
@_json_option
def plugin_replay(
    capture: Path,
    plugin_a: str,
    plugin_b: str,
    config: str | None,
    manifest: Path | None,
    plugins_dir: Path | None,
    db_path: Path | None,
    as_json: bool,
) -> None:
    """Run the statements of CAPTURE (serve --capture) through two versions
    of a plugin and print where their verdicts differ; exit status 1 if any do.

    Each version runs on its own copy of --db (an empty database without it).
    A .wasm file given to --against takes the settings of --plugin's plugin.
    """
    from .plugins import capture as captures
    from .plugins import tools

    def run() -> tools.Replay:
        sources = tools.Sources(manifest, plugins_dir, db_path)
        overrides = tools.parse_config(config)
        a = tools.resolve(plugin_a, sources, config=overrides)
        b = tools.resolve(plugin_b, sources, config=overrides, like=a)
        return tools.replay(captures.read_capture(capture), a, b, db_path)

    result = _tools_call(as_json, run)
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        click.echo(f"replayed {result.statements} statement(s): {len(result.differences)} differ")
        for d in result.differences:
            click.echo(f"line {d.record.line} (connection {d.record.connection}): {d.record.sql}")
            for side, run_ in (("A", d.a), ("B", d.b)):
                verdicts = "; ".join(f"{c['stage']} {_verdict_text(c)}" for c in run_.calls)
                click.echo(f"  {side}: {verdicts or 'no hook'} => {_outcome_text(run_)}")
    if result.differences:
        sys.exit(1)


# --- roles (who may log in to `serve`) ------------------------------------------------


@main.group()
def role() -> None:
    """Create, list and drop the roles clients of `serve` log in as."""


_password_stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (for scripts).",
)


def _new_password(from_stdin: bool) -> str:
    """A password from stdin's first line, or typed twice at a hidden prompt."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            raise click.UsageError("--password-stdin: standard input has no password")
        return password.removesuffix("\r")
    if not sys.stdin.isatty():
        raise click.UsageError("no terminal to ask for the password on: use --password-stdin")
    text: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return text


@role.command("create")
@_db_option
@_password_stdin_option
@click.option(
    "--login/--no-login",
    default=True,
    show_default=True,
    help="Whether the role may log in (a role that may not is refused like a wrong password).",
)
@click.argument("name")
def role_create(db_path: str, password_stdin: bool, login: bool, name: str) -> None:
    """Create role NAME with a password (stored as a SCRAM-SHA-256 verifier)."""
    check_role_name(name)  # before asking for a password it could not be given
    password = _new_password(password_stdin)
    with Database.open(db_path) as db:
        created = db.create_role(name, password, login=login)
    click.echo(f"role {created.name} created{'' if created.login else ' (cannot log in)'}")


@role.command("password")
@_db_option
@_password_stdin_option
@click.argument("name")
def role_password(db_path: str, password_stdin: bool, name: str) -> None:
    """Give role NAME a new password."""
    with Database.open(db_path) as db:
        if db.role(name) is None:  # before asking for a password it could not be given
            raise RoleError(f'role "{name}" does not exist', code="not-found")
        password = _new_password(password_stdin)
        db.set_role_password(name, password)
    click.echo(f"role {name}: password changed")


@role.command("drop")
@_db_option
@click.option("--if-exists", is_flag=True)
@click.argument("name")
def role_drop(db_path: str, if_exists: bool, name: str) -> None:
    """Drop role NAME (connections it has open stay open until they end)."""
    with Database.open(db_path) as db:
        dropped = db.drop_role(name, if_exists=if_exists)
    click.echo(f"role {name}: {'dropped' if dropped else 'did not exist'}")


@role.command("list")
@_db_option
@_json_option
def role_list(db_path: str, as_json: bool) -> None:
    """List roles (never their passwords or verifiers)."""
    roles = _read_db(db_path, as_json, lambda db: db.roles())
    records = [
        {
            "name": r.name,
            "login": r.login,
            "password": r.has_password,
            "created_at": r.created_at,
            "updated_at": r.updated_at,
        }
        for r in roles
    ]
    _listing(
        records,
        as_json,
        name=lambda r: r["name"],
        login=lambda r: "yes" if r["login"] else "no",
        password=lambda r: "SCRAM-SHA-256" if r["password"] else "none",
        changed=lambda r: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["updated_at"])),
    )


# --- the PostgreSQL wire protocol ----------------------------------------------------

# serve's flags, one per pgwire.WireLimits field: (type, metavar, help). The
# defaults shown are read from WireLimits, so they cannot drift from it.
_WIRE_LIMIT_FLAGS: dict[str, tuple[click.ParamType[Any], str | None, str]] = {
    "max_connections": (click.IntRange(1), None, "Clients served at once; one more gets 53300."),
    "authentication_timeout": (
        click.FloatRange(0, min_open=True),
        "SECONDS",
        "Time a client has to complete its startup.",
    ),
    "idle_session_timeout": (
        click.FloatRange(0),
        "SECONDS",
        "Disconnect a client idle outside a transaction (0: never).",
    ),
    "idle_in_transaction_session_timeout": (
        click.FloatRange(0),
        "SECONDS",
        "Disconnect a client idle inside a transaction (0: never).",
    ),
    "statement_timeout": (
        click.FloatRange(0),
        "SECONDS",
        "Cancel a statement running longer (0: never).",
    ),
    "max_message_bytes": (
        click.IntRange(10_000),
        "BYTES",
        "Longest protocol message (query text, Bind parameters).",
    ),
    "max_value_bytes": (
        click.IntRange(1),
        "BYTES",
        "Longest string or blob a client's SQL may build or read.",
    ),
    "max_buffer_bytes": (
        click.IntRange(1),
        "BYTES",
        "Rows, statements and portals a connection may hold.",
    ),
}


def _wire_limit_options(command: Callable[..., None]) -> Callable[..., None]:
    from .pgwire import WireLimits

    defaults = WireLimits()
    assert set(_WIRE_LIMIT_FLAGS) == {f.name for f in dataclasses.fields(WireLimits)}
    for name, (kind, metavar, text) in reversed(_WIRE_LIMIT_FLAGS.items()):
        default = getattr(defaults, name)
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        command = click.option(
            "--" + name.replace("_", "-"),
            name,
            type=kind,
            metavar=metavar,
            help=f"{text}  [default: {shown}]",
        )(command)
    return command


@main.command()
@_db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5433, show_default=True, type=int, help="0 picks a free port.")
@click.option(
    "--auth",
    type=click.Choice(["scram", "trust"]),
    default="scram",
    show_default=True,
    help="scram: roles of the database prove their password (SCRAM-SHA-256; see "
    "`heliosdb-wasm role create`). trust: anyone is let in as the user they name "
    "(loopback addresses only).",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The server's TLS certificate (PEM, chain after it): clients asking for TLS "
    "(sslmode=require, verify-full) get it.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The certificate's private key (PEM, unencrypted).",
)
@click.option(
    "--tls",
    "tls_mode",
    type=click.Choice(["prefer", "require"]),
    help="With --tls-cert: prefer (the default) also serves plaintext clients; require "
    "refuses them (FATAL 28000).",
)
@click.option(
    "--plugins",
    "plugins_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="plugins.toml: query-hook plugins, reloaded when it or a plugin file changes.",
)
@click.option(
    "--plugins-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="HELIOSDB_PLUGINS_DIR",
    help="Every *.toml manifest in DIR (a mounted ConfigMap, say), watched like --plugins."
    "  [env: HELIOSDB_PLUGINS_DIR]",
)
@click.option(
    "--metrics-port",
    type=int,
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (0 picks a free port).",
)
@click.option(
    "--allow-ddl",
    is_flag=True,
    help="Let clients create and drop procedures, extensions and plugins.",
)
@click.option(
    "--upstream",
    metavar="URL",
    help="Proxy mode: forward to this PostgreSQL server (postgresql://HOST[:PORT]"
    "[?sslmode=...]) through the plugins; --db then holds only the plugins' data.",
)
@click.option(
    "--local-param",
    "local_params",
    multiple=True,
    metavar="NAME",
    help="Proxy mode: a startup parameter or -c option for the plugins only, not sent "
    "upstream (jwt and authorization always are).",
)
@click.option(
    "--otlp-endpoint",
    metavar="URL",
    help="Send OpenTelemetry spans to this OTLP/HTTP collector (base URL, as"
    " OTEL_EXPORTER_OTLP_ENDPOINT, which is read too).",
)
@click.option(
    "--otel-statement-text",
    is_flag=True,
    help="Put each statement's text in its span (db.query.text): it may hold literals.",
)
@click.option(
    "--capture",
    "capture_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append every statement to FILE as JSON lines, for `plugin replay`.",
)
@click.option(
    "--capture-params",
    is_flag=True,
    help="Capture the statements' parameter values too (they are the data itself).",
)
@click.option(
    "--capture-max-bytes",
    type=click.IntRange(1024),
    default=64 * 1024 * 1024,
    show_default=True,
    help="Rotate the capture to FILE.1 past this size.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes serving the port: clients of different processes run in parallel"
    " (each gets a share of --max-connections).",
)
@click.option("--worker", hidden=True)  # I/N: this process is worker I (set by --workers)
@click.option("--listen-fd", type=int, hidden=True)
@click.option("--rundir", type=click.Path(file_okay=False, path_type=Path), hidden=True)
@_wire_limit_options
def serve(
    db_path: str,
    host: str,
    port: int,
    auth: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_mode: str | None,
    plugins_path: Path | None,
    plugins_dir: Path | None,
    metrics_port: int | None,
    allow_ddl: bool,
    upstream: str | None,
    local_params: tuple[str, ...],
    otlp_endpoint: str | None,
    otel_statement_text: bool,
    capture_path: Path | None,
    capture_params: bool,
    capture_max_bytes: int,
    workers: int,
    worker: str | None,
    listen_fd: int | None,
    rundir: Path | None,
    **wire_limits: Any,
) -> None:
    """Serve the database to PostgreSQL clients (psql, psycopg, ...) until Ctrl-C.

    Clients log in as roles of the database with their password (--auth
    scram, the default; create one with `heliosdb-wasm role create NAME
    --db FILE`), over TLS when the server has a certificate (--tls-cert,
    --tls-key). Every statement passes through the query-hook plugins of
    --plugins and of the database itself (CREATE PLUGIN); see
    docs/plugins.md. Authentication, TLS and the limits on what one client
    may cost are explained in docs/security.md.
    With --upstream, the statements go to that PostgreSQL server instead,
    which authenticates each client itself (--auth is then not used;
    docs/pgwire.md, proxy mode).
    """
    from .pgwire import Server, WireLimits, execute_statement
    from .pgwire.proxy import Upstream
    from .pgwire.server import Worker, is_loopback
    from .pgwire.tls import TlsConfig
    from .plugins.capture import Capture
    from .plugins.metrics import JsonLogFormatter, MetricsServer
    from .plugins.pipeline import Pipeline

    if auth == "trust" and not is_loopback(host):
        raise click.UsageError(
            f"--auth trust is allowed only on a loopback address (127.0.0.1, ::1, localhost), "
            f"not --host {host}: anyone who can reach it could log in as any user. "
            "Use --auth scram with roles (heliosdb-wasm role create)."
        )
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_mode is not None and tls_cert is None:
        raise click.UsageError(f"--tls {tls_mode} needs a certificate: --tls-cert and --tls-key")
    tls: TlsConfig | None = None
    if tls_cert is not None and tls_key is not None:
        try:
            tls = TlsConfig.load(tls_cert, tls_key, required=tls_mode == "require")
        except InvalidArgument as exc:
            raise click.UsageError(exc.message) from None

    this: Worker | None = None
    if worker is not None:
        if listen_fd is None or rundir is None:
            raise click.UsageError("--worker is set by --workers")
        index, _, count = worker.partition("/")
        this = Worker(int(index), int(count), listen_fd, rundir)
    elif workers > 1:
        for option, flag in ((metrics_port, "--metrics-port"), (capture_path, "--capture")):
            if option is not None:
                raise click.UsageError(f"{flag} serves one process: not with --workers")
        from .pgwire.workers import supervise

        try:  # the file's schema and WAL once, not raced by the workers
            with Database.open(db_path) as db:
                db.conn.execute("PRAGMA journal_mode = WAL")
        except ProcedureError as exc:
            raise click.UsageError(exc.message) from None
        argv = sys.argv[sys.argv.index("serve") + 1 :] if "serve" in sys.argv else []
        try:
            supervise(argv, host, port, workers)
        except OSError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)
        click.echo("stopped")
        return

    def say(line: str) -> None:
        if this is None:  # a worker's supervisor has said it
            click.echo(line)

    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    plugin_log = logging.getLogger("heliosdb_wasm.plugins")
    plugin_log.addHandler(handler)
    plugin_log.setLevel(logging.INFO)
    plugin_log.propagate = False
    try:
        given: dict[str, Any] = {k: v for k, v in wire_limits.items() if v is not None}
        if this is not None:
            total = given.get("max_connections", WireLimits().max_connections)
            given["max_connections"] = max(1, -(-total // this.count))
        limits = WireLimits(**given)
        target = Upstream.parse(upstream, local_params) if upstream is not None else None
    except InvalidArgument as exc:
        raise click.UsageError(exc.message) from None
    if capture_params and capture_path is None:
        raise click.UsageError("--capture-params needs --capture FILE")
    tracing = _tracing(otlp_endpoint, otel_statement_text)
    capture: Capture | None = None
    if capture_path is not None:
        try:
            capture = Capture(
                capture_path, capture_params=capture_params, max_bytes=capture_max_bytes
            )
        except ProcedureError as exc:
            raise click.UsageError(exc.message) from None
    pipeline = Pipeline(tracing=tracing[0] if tracing else None, capture=capture)
    metrics: MetricsServer | None = None
    try:
        pipeline.watch(plugins_path, Path(db_path), plugins_dir)
        server = Server(
            db_path,
            host=host,
            port=port,
            executor=pipeline.executor(execute_statement),
            allow_ddl=allow_ddl,
            wire_limits=limits,
            upstream=target,
            pipeline=pipeline,
            auth="trust" if auth == "trust" else "scram",
            tls=tls,
            worker=this,
        )
        if metrics_port is not None:
            metrics = MetricsServer(pipeline.metrics, host, metrics_port)
            metrics.start()
    except (OSError, ValueError, ProcedureError) as exc:
        pipeline.close()
        if tracing:
            tracing[1]()
        if capture is not None:
            capture.close()
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    bound_host, bound_port = server.address
    served = f"database {db_path}" if target is None else f"proxy to {target.host}:{target.port}"
    say(f"listening on {bound_host}:{bound_port} ({served}); Ctrl-C stops")
    secured = "no TLS"
    if tls is not None:
        secured = f"TLS {'required' if tls.required else 'offered'} ({tls.cert_file})"
    if target is not None:
        auth = "PostgreSQL's (relayed)"
    say(f"authentication: {auth}; {secured}")
    if this is None and target is None and auth == "scram":
        with Database.open(db_path) as db:
            can_log_in = [r.name for r in db.roles() if r.login and r.has_password]
        if not can_log_in:
            click.secho(
                "hint: no role can log in yet; create one with "
                f"`heliosdb-wasm role create NAME --db {db_path}`",
                fg="yellow",
                err=True,
            )
    for row in pipeline.plugins():
        say(f"plugin {row['name']} v{row['version']}: {', '.join(row['hooks'])}")
    if metrics is not None:
        m_host, m_port = metrics.address
        say(f"metrics at http://{m_host}:{m_port}/metrics")
    if tracing:
        say(f"tracing to {tracing[2]}")
    if capture is not None:
        say(f"capturing statements to {capture.path}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if metrics is not None:
            metrics.stop()
        pipeline.close()
        if tracing:
            tracing[1]()
        if capture is not None:
            capture.close()
    click.echo("stopped")


def _tracing(
    endpoint: str | None, statement_text: bool
) -> tuple[Tracing, Callable[[], None], str] | None:
    """The pipeline's Tracing, what flushes it at exit and where it sends
    spans, when an OTLP
    endpoint is given or the standard environment variables name one (and
    OTEL_SDK_DISABLED does not say otherwise); else None, and nothing of
    OpenTelemetry is imported."""
    env = os.environ
    configured = bool(
        endpoint
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    if not configured or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        if statement_text:
            raise click.UsageError("--otel-statement-text needs --otlp-endpoint")
        return None
    try:
        from .plugins.tracing import otlp_provider, tracing_of
    except ImportError as exc:
        raise click.UsageError(
            f"tracing needs OpenTelemetry ({exc.name} is missing):"
            " pip install 'heliosdb-wasm[otel]'"
        ) from None
    provider, url = otlp_provider(endpoint)
    return tracing_of(provider, statement_text=statement_text), provider.shutdown, url


if __name__ == "__main__":  # pragma: no cover
    main()
