"""Python procedures: type hints -> WIT world -> componentize-py component.

The procedure module is read with ``ast`` (never imported on the host: it
imports bindings that exist only inside the component). Each function marked
``@procedure`` becomes an export whose WIT type follows from its hints; a
generated entry module implements componentize-py's ``WitWorld`` by calling
the user's functions through the SDK (sdks/python), which turns a raised
ProcedureError into the WIT ``error`` result.
"""

from __future__ import annotations

import ast
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .common import BuildError, Export, Record, Repo, kebab, run, wit_package, world_wit

ENTRY_MODULE = "heliosdb_entry"
WORLD = "procedure-component"
ABIS = ("component",)
PROCEDURE_MODULE = "procedure"

_SCALARS = {
    "int": "s64",
    "I32": "s32",
    "float": "f64",
    "F32": "f32",
    "str": "string",
    "bytes": "list<u8>",
    "bool": "bool",
    "Json": "string",
}


@dataclass(frozen=True)
class PyProcedure:
    name: str
    params: tuple[str, ...]
    export: Export
    returns_json: bool
    table: Record | None


def _annotation_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return ast.unparse(node)


def _optional_inner(node: ast.expr) -> ast.expr | None:
    """``X | None`` or ``Optional[X]`` -> X."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        for a, b in ((node.left, node.right), (node.right, node.left)):
            if isinstance(b, ast.Constant) and b.value is None:
                return a
    if isinstance(node, ast.Subscript) and _annotation_name(node.value) == "Optional":
        return node.slice
    return None


def _list_inner(node: ast.expr) -> ast.expr | None:
    if isinstance(node, ast.Subscript) and _annotation_name(node.value) in ("list", "List"):
        return node.slice
    return None


def _scalar(node: ast.expr, where: str) -> str:
    inner = _optional_inner(node)
    if inner is not None:
        return f"option<{_scalar(inner, where)}>"
    name = _annotation_name(node)
    wit = _SCALARS.get(name)
    if wit is None:
        known = ", ".join(_SCALARS)
        raise BuildError(f"{where}: type {ast.unparse(node)} has no SQL mapping (use {known})")
    return wit


def _records(tree: ast.Module) -> dict[str, list[tuple[str, ast.expr]]]:
    """Classes with annotated fields (dataclasses, NamedTuples): table rows."""
    found: dict[str, list[tuple[str, ast.expr]]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            fields = [
                (stmt.target.id, stmt.annotation)
                for stmt in node.body
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
            ]
            if fields:
                found[node.name] = fields
    return found


def _is_procedure(func: ast.FunctionDef) -> bool:
    return any(_annotation_name(d) == "procedure" for d in func.decorator_list)


def analyze(source: str, filename: str) -> list[PyProcedure]:
    """The procedures a module defines, with their WIT types."""
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        raise BuildError(f"{filename}:{exc.lineno}: {exc.msg}") from None
    records = _records(tree)
    procedures: list[PyProcedure] = []
    for node in tree.body:
        if not (isinstance(node, ast.FunctionDef) and _is_procedure(node)):
            continue
        where = f"{filename}:{node.lineno} {node.name}"
        args = node.args
        if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs:
            raise BuildError(f"{where}: procedures take plain positional parameters only")
        params: list[tuple[str, str]] = []
        for arg in args.args:
            if arg.annotation is None:
                raise BuildError(f"{where}: parameter {arg.arg} needs a type hint")
            params.append((kebab(arg.arg), _scalar(arg.annotation, f"{where}({arg.arg})")))
        if node.returns is None:
            raise BuildError(f"{where}: the return type needs a type hint (-> None for none)")
        table: Record | None = None
        result: str | None
        returns_json = False
        row = _list_inner(node.returns)
        if isinstance(node.returns, ast.Constant) and node.returns.value is None:
            result = None
        elif row is not None and _annotation_name(row) in records:
            row_name = _annotation_name(row)
            table = Record(
                kebab(row_name),
                tuple(
                    (kebab(f), _scalar(t, f"{where} row {row_name}.{f}"))
                    for f, t in records[row_name]
                ),
            )
            result = f"list<{table.name}>"
        else:
            result = _scalar(node.returns, f"{where} result")
            returns_json = _annotation_name(node.returns) == "Json"
        procedures.append(
            PyProcedure(
                name=node.name,
                params=tuple(a.arg for a in args.args),
                export=Export(kebab(node.name), tuple(params), result, fallible=True),
                returns_json=returns_json,
                table=table,
            )
        )
    if not procedures:
        raise BuildError(f"{filename}: no function is marked @procedure")
    return procedures


def entry_module(procedures: list[PyProcedure]) -> str:
    """componentize-py's WitWorld implementation, calling the user's functions."""
    lines = [
        "# Generated by heliosdb-wasm build; binds procedure.py to the WIT world.",
        "import wit_world",
        "import heliosdb_procedures as _sdk",
        f"import {PROCEDURE_MODULE} as _user",
        "",
        "",
        "def _same(value):",
        "    return value",
        "",
        "",
        "class WitWorld(wit_world.WitWorld):",
    ]
    for p in procedures:
        if p.table is not None:
            record = "".join(part.capitalize() for part in p.table.name.split("-"))
            fields = [f.replace("-", "_") for f, _ in p.table.fields]
            convert = f"_sdk._rows(wit_world.{record}, {fields!r})"
        else:
            convert = "_sdk._json" if p.returns_json else "_same"
        args = "".join(f", {a}" for a in p.params)
        tuple_args = "".join(f"{a}, " for a in p.params)
        lines += [
            f"    def {p.name}(self{args}):",
            f"        return _sdk._invoke(_user.{p.name}, ({tuple_args}), {convert})",
            "",
        ]
    return "\n".join(lines) + "\n"


def componentize_py() -> str:
    found = shutil.which("componentize-py") or str(Path(sys.executable).parent / "componentize-py")
    if not Path(found).exists():
        raise BuildError("componentize-py is missing: pip install componentize-py")
    return found


def detect(project: Path) -> bool:
    return (project / f"{PROCEDURE_MODULE}.py").is_file()


def build(project: Path, abi: str, work: Path, output: Path, repo: Repo) -> None:
    """Compile ``project/procedure.py`` into the component ``output``."""
    if abi != "component":
        raise BuildError(
            "Python procedures build only as components (componentize-py); "
            "there is no Basic-ABI route for CPython"
        )
    source_file = project / f"{PROCEDURE_MODULE}.py"
    procedures = analyze(source_file.read_text(encoding="utf-8"), str(source_file))
    records = [p.table for p in procedures if p.table is not None]
    world = world_wit(WORLD, [p.export for p in procedures], records)
    wit_dir = wit_package(work / "wit", repo, world)
    gen = work / "py"
    gen.mkdir(parents=True, exist_ok=True)
    (gen / f"{ENTRY_MODULE}.py").write_text(entry_module(procedures))
    run(
        [
            componentize_py(),
            "-d",
            str(wit_dir),
            "-w",
            WORLD,
            "componentize",
            ENTRY_MODULE,
            "-p",
            str(gen),
            "-p",
            str(repo.sdk("python")),
            "-p",
            str(project),
            "-o",
            str(output),
        ],
        "componentize-py",
    )
