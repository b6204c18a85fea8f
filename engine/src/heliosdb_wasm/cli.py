"""The ``heliosdb-wasm`` command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from . import ddl
from .database import Database, Result
from .errors import ProcedureError
from .values import SqlValue


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


@click.group()
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


def _fail(exc: ProcedureError, as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps({"error": exc.code, "procedure": exc.procedure, "message": exc.message})
        )
    else:
        click.secho(f"error: {exc}", fg="red", err=True)
    sys.exit(1)


@main.command()
@click.option("--db", "db_path", required=True, help="Database file.")
@click.option("--json", "as_json", is_flag=True)
def procedures(db_path: str, as_json: bool) -> None:
    """List the registered procedures and their active versions."""
    with Database.open(db_path) as db:
        procs = db.procedures()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": p.name,
                        "version": p.version,
                        "abi": p.abi,
                        "signature": p.signature.render(),
                        "capabilities": p.capabilities.sorted(),
                    }
                    for p in procs
                ]
            )
        )
        return
    rows = [
        (p.name, p.version, p.abi, p.signature.render(), ", ".join(p.capabilities.sorted()))
        for p in procs
    ]
    click.echo(format_table(["name", "version", "abi", "signature", "capabilities"], rows))


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


if __name__ == "__main__":  # pragma: no cover
    main()
