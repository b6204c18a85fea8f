"""Python procedures: type hints -> WIT world -> componentize-py component.

The procedure module is read with ``ast`` (never imported on the host: it
imports bindings that exist only inside the component). Each function marked
``@procedure`` becomes an export whose WIT type follows from its hints; a
generated entry module implements componentize-py's ``WitWorld`` by calling
the user's functions through the SDK (sdks/python), which turns a raised
ProcedureError into the WIT ``error`` result.

A project with ``plugin.py`` instead is a query-hook plugin (docs/plugins.md):
its functions marked ``@pre_parse``, ``@post_parse``, ``@pre_execution`` or
``@post_execution`` become exports of exactly those hook interfaces, in a
world that includes ``heliosdb:procedures/plugin-imports@0.1.0``.
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
PLUGIN_MODULE = "plugin"
PLUGIN_WORLD = "plugin-component"
WIT_PACKAGE = "heliosdb:procedures"
WIT_VERSION = "0.1.0"

# decorator -> (WIT interface, the hook's parameters after ctx); the SDK's
# heliosdb_procedures.plugin.HOOKS and wit/plugin.wit say the same.
HOOKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "pre_parse": ("pre-parse", ("sql",)),
    "post_parse": ("post-parse", ("ast",)),
    "pre_execution": ("pre-execution", ("sql", "params")),
    "post_execution": ("post-execution", ("columns", "rows")),
}

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


@dataclass(frozen=True)
class PyHook:
    """One hook a plugin.py defines: the decorator's name and the user's function."""

    stage: str  # the decorator: pre_parse, post_parse, ...
    function: str

    @property
    def interface(self) -> str:
        return HOOKS[self.stage][0]

    @property
    def qualified(self) -> str:
        return f"{WIT_PACKAGE}/{self.interface}@{WIT_VERSION}"


def _hook_stages(func: ast.FunctionDef) -> list[str]:
    return [name for d in func.decorator_list if (name := _annotation_name(d)) in HOOKS]


def _takes(args: ast.arguments, count: int) -> bool:
    """Whether a function can be called with ``count`` positional arguments."""
    positional = len(args.posonlyargs) + len(args.args)
    required = positional - len(args.defaults)
    keyword_only_required = any(d is None for d in args.kw_defaults)
    fits = required <= count and (count <= positional or args.vararg is not None)
    return fits and not keyword_only_required


def analyze_plugin(source: str, filename: str) -> list[PyHook]:
    """The hooks a plugin module defines, in the order of wit/plugin.wit."""
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        raise BuildError(f"{filename}:{exc.lineno}: {exc.msg}") from None
    found: dict[str, PyHook] = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        where = f"{filename}:{node.lineno} {node.name}"
        if _is_procedure(node):
            raise BuildError(f"{where}: a plugin exports hooks, not @procedure functions")
        stages = _hook_stages(node)
        if not stages:
            continue
        if len(stages) > 1:
            raise BuildError(f"{where}: one function is one hook (it has {', '.join(stages)})")
        stage = stages[0]
        if stage in found:
            raise BuildError(
                f"{where}: @{stage} is already {found[stage].function}; a plugin has one "
                "function per hook"
            )
        if not _takes(node.args, 1 + len(HOOKS[stage][1])):
            params = ", ".join(("ctx", *HOOKS[stage][1]))
            raise BuildError(f"{where}: a @{stage} hook is called as {node.name}({params})")
        found[stage] = PyHook(stage, node.name)
    if not found:
        names = ", ".join(f"@{h}" for h in HOOKS)
        raise BuildError(f"{filename}: no function is marked as a hook ({names})")
    return [found[stage] for stage in HOOKS if stage in found]


def plugin_world_wit(hooks: list[PyHook]) -> str:
    """The plugin's own world: the plugin imports and exactly its hooks."""
    lines = [
        "package heliosdb:generated;",
        "",
        f"world {PLUGIN_WORLD} {{",
        f"  include {WIT_PACKAGE}/plugin-imports@{WIT_VERSION};",
        *(f"  export {h.qualified};" for h in hooks),
        "}",
    ]
    return "\n".join(lines) + "\n"


def _class_name(interface: str) -> str:
    return "".join(part.capitalize() for part in interface.split("-"))


def plugin_entry_module(hooks: list[PyHook]) -> str:
    """componentize-py wants one class per exported interface, named after it."""
    lines = [
        "# Generated by heliosdb-wasm build; binds plugin.py's hooks to their interfaces.",
        "from wit_world import exports as _exports",
        "from heliosdb_procedures import plugin as _sdk",
        f"import {PLUGIN_MODULE} as _user",
    ]
    for h in hooks:
        cls = _class_name(h.interface)
        params = HOOKS[h.stage][1]
        args = "".join(f", {a}" for a in params)
        lines += [
            "",
            "",
            f"class {cls}(_exports.{cls}):",
            f"    def {h.stage}(self, ctx{args}):",
            f"        return _sdk._{h.stage}(_user.{h.function}, ctx{args})",
        ]
    return "\n".join(lines) + "\n"


def componentize_py() -> str:
    found = shutil.which("componentize-py") or str(Path(sys.executable).parent / "componentize-py")
    if not Path(found).exists():
        raise BuildError("componentize-py is missing: pip install componentize-py")
    return found


def detect(project: Path) -> bool:
    return any((project / f"{m}.py").is_file() for m in (PROCEDURE_MODULE, PLUGIN_MODULE))


def is_plugin(project: Path) -> bool:
    """A plugin project has plugin.py; one with procedure.py as well is ambiguous."""
    plugin = (project / f"{PLUGIN_MODULE}.py").is_file()
    if plugin and (project / f"{PROCEDURE_MODULE}.py").is_file():
        raise BuildError(
            f"{project}: has both procedure.py and plugin.py; a project is either "
            "procedures or a plugin"
        )
    return plugin


def build(project: Path, abi: str, work: Path, output: Path, repo: Repo) -> None:
    """Compile ``project/procedure.py`` (or ``plugin.py``) into the component ``output``."""
    if abi != "component":
        raise BuildError(
            "Python procedures build only as components (componentize-py); "
            "there is no Basic-ABI route for CPython"
        )
    if is_plugin(project):
        source_file = project / f"{PLUGIN_MODULE}.py"
        hooks = analyze_plugin(source_file.read_text(encoding="utf-8"), str(source_file))
        world_name, world = PLUGIN_WORLD, plugin_world_wit(hooks)
        entry = plugin_entry_module(hooks)
    else:
        source_file = project / f"{PROCEDURE_MODULE}.py"
        procedures = analyze(source_file.read_text(encoding="utf-8"), str(source_file))
        records = [p.table for p in procedures if p.table is not None]
        world_name, world = WORLD, world_wit(WORLD, [p.export for p in procedures], records)
        entry = entry_module(procedures)
    wit_dir = wit_package(work / "wit", repo, world)
    gen = work / "py"
    gen.mkdir(parents=True, exist_ok=True)
    (gen / f"{ENTRY_MODULE}.py").write_text(entry)
    run(
        [
            componentize_py(),
            "-d",
            str(wit_dir),
            "-w",
            world_name,
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
