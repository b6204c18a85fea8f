"""JavaScript/TypeScript procedures: type annotations -> WIT -> QuickJS component.

Every exported function of ``procedure.ts`` (or ``procedure.js`` with JSDoc
types) is a procedure. Node.js reads the file with the TypeScript compiler
(sdks/js/tools/heliosdb-js.mjs; nothing is executed) and reports each
function's types as written; this module maps them to WIT, generates an entry
module that calls the user's functions through the SDK (which turns thrown
errors into the WIT ``error`` result) and runs componentize-qjs with every
WASI import stubbed out, so the component needs nothing but the host API.

The type analysis is shared with the AssemblyScript toolchain, whose sources
are TypeScript syntax too.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from .common import BuildError, Export, Record, Repo, kebab, run, wit_package, world_wit

ABIS = ("component",)
WORLD = "procedure-component"
SOURCES = ("procedure.ts", "procedure.js", "procedure.mjs")
ENTRY = "__heliosdb_entry.js"

# Annotation -> WIT type. The aliases come from the SDKs ("heliosdb"); the
# plain TypeScript names are accepted where they are unambiguous.
SCALARS = {
    "i64": "s64",
    "i32": "s32",
    "f64": "f64",
    "f32": "f32",
    "number": "f64",
    "bool": "bool",
    "boolean": "bool",
    "string": "string",
    "Json": "string",
    "Blob": "list<u8>",
    "Uint8Array": "list<u8>",
}


@dataclass(frozen=True)
class Param:
    name: str  # as written in the source
    wit: str


@dataclass(frozen=True)
class Procedure:
    """One exported function, mapped to WIT."""

    name: str  # as written in the source
    params: tuple[Param, ...]
    export: Export
    returns_json: bool
    table: Record | None
    row_fields: tuple[str, ...]  # the row type's field names as written


def node() -> str:
    found = shutil.which("node")
    if found is None:
        raise BuildError("Node.js is not installed (it runs the JavaScript build tools)")
    return found


def sdk_tools(repo: Repo) -> Path:
    """sdks/js with its npm dependencies installed."""
    sdk = repo.sdk("js")
    if not (sdk / "node_modules" / "typescript").is_dir():
        raise BuildError(
            f"the JavaScript SDK's tools are not installed: run `npm ci --prefix {sdk}`"
        )
    return sdk


def analyze_file(source: Path, repo: Repo) -> dict[str, object]:
    """The exported functions and record types of ``source`` (see heliosdb-js.mjs)."""
    tool = sdk_tools(repo) / "tools" / "heliosdb-js.mjs"
    found = json.loads(run([node(), str(tool), "analyze", str(source)], "reading " + source.name))
    assert isinstance(found, dict)
    return found


def _strip_null(text: str) -> str | None:
    """``T | null`` (either order) -> T, else None."""
    parts = [p.strip() for p in text.split("|")]
    if len(parts) == 2 and "null" in parts:
        return parts[0] if parts[1] == "null" else parts[1]
    return None


def _unwrap(text: str, generic: str) -> str | None:
    prefix = generic + "<"
    if text.startswith(prefix) and text.endswith(">"):
        return text[len(prefix) : -1].strip()
    return None


def scalar(text: str | None, where: str, nullable_box: str | None = None) -> str:
    """The WIT type of a parameter or result annotation."""
    if text is None:
        raise BuildError(f"{where}: needs a type (e.g. i64, f64, string; see the SDK README)")
    inner = _strip_null(text)
    if inner is not None:
        if nullable_box is not None:
            boxed = _unwrap(inner, nullable_box)
            if boxed is None:
                raise BuildError(
                    f"{where}: nullable numbers are written {nullable_box}<T> | null, not {text}"
                )
            inner = boxed
        return f"option<{scalar(inner, where)}>"
    wit = SCALARS.get(text)
    if wit is None:
        raise BuildError(
            f"{where}: type {text} has no SQL mapping (use {', '.join(SCALARS)}, "
            "T | null, or an array of an interface for a table)"
        )
    return wit


def row_type(text: str | None) -> str | None:
    """``Row[]`` or ``Array<Row>`` -> Row."""
    if text is None:
        return None
    if text.endswith("[]"):
        return text[:-2].strip()
    return _unwrap(text, "Array")


def procedures(source: Path, repo: Repo, nullable_box: str | None = None) -> list[Procedure]:
    """The procedures of ``source`` with their WIT types."""
    found = analyze_file(source, repo)
    records: dict[str, list[dict[str, str | None]]] = found["records"]  # type: ignore[assignment]
    out: list[Procedure] = []
    for fn in found["functions"]:  # type: ignore[attr-defined]
        name = fn["name"]
        where = f"{source}:{fn['line']} {name}"
        params = []
        for p in fn["params"]:
            if p["optional"]:
                raise BuildError(f"{where}: parameter {p['name']} cannot be optional")
            wit = scalar(p["type"], f"{where}({p['name']})", nullable_box)
            params.append(Param(p["name"], wit))
        returns = fn["returns"]
        table: Record | None = None
        fields: tuple[str, ...] = ()
        result: str | None
        row = row_type(returns)
        if returns == "void":
            result = None
        elif row is not None and row in records:
            fields = tuple(str(f["name"]) for f in records[row])
            table = Record(
                kebab(row),
                tuple(
                    (kebab(str(f["name"])), scalar(f["type"], f"{where} row {row}.{f['name']}"))
                    for f in records[row]
                ),
            )
            result = f"list<{table.name}>"
        else:
            result = scalar(returns, f"{where} result", nullable_box)
        export = Export(kebab(name), tuple((kebab(p.name), p.wit) for p in params), result, True)
        out.append(Procedure(name, tuple(params), export, returns == "Json", table, fields))
    if not out:
        raise BuildError(f"{source}: exports no function (every exported function is a procedure)")
    return out


def camel(kebab_name: str) -> str:
    """What componentize-qjs calls a WIT name in JavaScript."""
    head, *rest = kebab_name.split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def entry_module(procs: list[Procedure], user_module: str) -> str:
    """The module componentize-qjs exports from: calls the user's functions."""
    lines = [
        "// Generated by heliosdb-wasm build: binds the procedures to the WIT world.",
        f'import * as user from "./{user_module}";',
        'import { __invoke } from "./heliosdb.js";',
        "",
    ]
    for p in procs:
        args = ", ".join(f"a{i}" for i in range(len(p.params)))
        call = f"user.{p.name}({args})"
        if p.table is not None:
            # Rows cross as WIT records, whose JS keys are camelCase.
            keys = ", ".join(f"{camel(kebab(f))}: row[{json.dumps(f)}]" for f in p.row_fields)
            call = f"Array.from({call}, (row) => ({{ {keys} }}))"
        kind = "json" if p.returns_json else "value"
        lines += [
            f"export function {camel(p.export.name)}({args}) {{",
            f'  return __invoke(() => {call}, "{kind}");',
            "}",
            "",
        ]
    return "\n".join(lines)


def source_file(project: Path) -> Path | None:
    for name in SOURCES:
        if (project / name).is_file():
            return project / name
    return None


def detect(project: Path) -> bool:
    return source_file(project) is not None


def build(project: Path, abi: str, work: Path, output: Path, repo: Repo) -> None:
    """Compile ``project/procedure.ts`` (or .js) into the component ``output``."""
    if abi != "component":
        raise BuildError(
            "JavaScript procedures build as QuickJS components; for the Basic ABI "
            "write them in AssemblyScript (sdks/js/README.md)"
        )
    source = source_file(project)
    assert source is not None
    procs = procedures(source, repo)
    records = [p.table for p in procs if p.table is not None]
    wit_dir = wit_package(work / "wit", repo, world_wit(WORLD, [p.export for p in procs], records))
    sdk = sdk_tools(repo)
    js = work / "js"
    run(
        [
            node(),
            str(sdk / "tools" / "heliosdb-js.mjs"),
            "transpile",
            str(project),
            str(js),
            str(sdk / "src" / "heliosdb.ts"),
        ],
        "compiling TypeScript",
    )
    user_module = source.with_suffix(".js").name
    (js / ENTRY).write_text(entry_module(procs, user_module))
    run(
        [
            str(sdk / "node_modules" / ".bin" / "componentize-qjs"),
            "--wit",
            str(wit_dir),
            "--world",
            WORLD,
            "--js",
            str(js / ENTRY),
            "--module-root",
            str(js),
            "--stub-wasi",  # no WASI at all: the host API is everything
            "--sync",  # wasmtime-py has no component-model async
            "--output",
            str(output),
        ],
        "componentize-qjs",
        cwd=js,
    )
