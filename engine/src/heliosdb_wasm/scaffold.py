"""New procedure projects: what ``heliosdb-wasm init --lang LANG NAME`` writes.

Each scaffold is the smallest project of its language that follows the
conventions of ``examples/`` (so ``heliosdb-wasm build`` detects and builds it
like an example): one procedure ``NAME(a BIGINT, b BIGINT) RETURNS BIGINT``
that logs at info and returns ``a + b``, and a README.md with the commands that
build, test and register it. Projects are created outside this repository, so
the Rust and Go manifests point at the SDKs of the checkout this package runs
from, by absolute path.
"""

from __future__ import annotations

import keyword
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from string import Template

from .toolchains.common import BuildError, Repo

__all__ = ["LANGUAGES", "ScaffoldError", "init_project"]

LANGUAGES: tuple[str, ...] = ("rust", "python", "js", "assemblyscript", "go")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# WIT identifiers (component exports) are kebab-case words that start with a letter.
_WIT_PARTS = re.compile(r"^[a-z][a-z0-9]*(_[a-z][a-z0-9]*)*$")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_RUST_KEYWORDS = _words(
    "abstract as async await become box break const continue crate do dyn else enum "
    "extern false final fn for gen if impl in let loop macro match mod move mut override "
    "priv pub ref return self static struct super trait true try type typeof unsafe "
    "unsized use virtual where while yield"
)
_JS_KEYWORDS = _words(
    "await break case catch class const continue debugger default delete do else enum "
    "export extends false finally for function if implements import in instanceof "
    "interface let new null package private protected public return static super switch "
    "this throw true try typeof var void while with yield"
)
# Without a package name the build names the artifact after the folder, unless
# the folder is called like a language (examples/<procedure>/<language>/).
_FOLDER_NAMED = _words("rust go python assemblyscript js javascript")
# Names that clash with the language (keywords) or with what the templates import.
_RESERVED: dict[str, frozenset[str]] = {
    "rust": _RUST_KEYWORDS | {"log", "heliosdb_wasm_sdk"},
    "python": frozenset(keyword.kwlist) | {"log", "heliosdb_procedures"},
    "js": _JS_KEYWORDS | _FOLDER_NAMED | {"log", "heliosdb"},
    "assemblyscript": _JS_KEYWORDS | _FOLDER_NAMED | {"log", "heliosdb", "i64"},
    "go": _FOLDER_NAMED | {"main", "heliosdb"},
}


class ScaffoldError(Exception):
    """A project could not be created; the message says why."""


@dataclass(frozen=True)
class _Names:
    snake: str  # the SQL name, Rust/Python function, Basic-ABI export
    kebab: str  # the WIT export of a component
    camel: str  # the JavaScript/AssemblyScript function
    pascal: str  # the (exported) Go function

    @classmethod
    def of(cls, name: str) -> _Names:
        parts = name.split("_")
        camel = parts[0] + "".join(p.capitalize() for p in parts[1:])
        return cls(name, "-".join(parts), camel, camel[:1].upper() + camel[1:])


# ---------------------------------------------------------------- templates

_RUST_CARGO = """\
[package]
name = "$snake"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
# The SDK of the HeliosDB WASM checkout this project was created from.
heliosdb-wasm-sdk = { path = "$sdk/heliosdb-wasm-sdk" }

[profile.release]
opt-level = "s"
lto = true
panic = "abort"
codegen-units = 1

# Not part of any parent workspace.
[workspace]
"""

_RUST_LIB = """\
//! $snake: adds two numbers.

use heliosdb_wasm_sdk::{heliosdb_procedure, log};

#[heliosdb_procedure]
fn $snake(a: i64, b: i64) -> i64 {
    log::info(&format!("$snake({a}, {b})"));
    a + b
}
"""

_PYTHON_PROCEDURE = '''\
"""$snake: adds two numbers."""

from heliosdb_procedures import log, procedure


@procedure
def $snake(a: int, b: int) -> int:
    log.info(f"$snake({a}, {b})")
    return a + b
'''

_PYTHON_PYPROJECT = """\
[project]
name = "$snake"
version = "0.1.0"
description = "The $snake stored procedure for HeliosDB WASM."
requires-python = ">=3.11"
"""

_JS_PROCEDURE = """\
// $snake: adds two numbers.
import { log, type i64 } from "heliosdb";

export function $camel(a: i64, b: i64): i64 {
  log.info(`$snake($${a}, $${b})`);
  return a + b;
}
"""

_ASC_INDEX = """\
// $snake: adds two numbers.
import { log } from "heliosdb";

export function $camel(a: i64, b: i64): i64 {
  log.info("$snake(" + a.toString() + ", " + b.toString() + ")");
  return a + b;
}
"""

_GO_MOD = """\
module example.com/heliosdb/$snake

go 1.24

require github.com/heliosdb/heliosdb-wasm/sdks/go v0.0.0

replace github.com/heliosdb/heliosdb-wasm/sdks/go => $sdk
"""

_GO_MAIN = """\
// $snake adds two numbers.
package main

import (
	"strconv"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

// $pascal returns a + b.
//
//heliosdb:procedure $snake
func $pascal(a, b int64) int64 {
	heliosdb.Log.Info("$snake(" + strconv.FormatInt(a, 10) + ", " + strconv.FormatInt(b, 10) + ")")
	return a + b
}

func main() {} // required by package main; never called
"""

_GITIGNORE = "/build/\n*.key\n"

_EXTENSION = """\
# `heliosdb-wasm pack .` builds this project and packs it as an extension
# archive (docs/archive.md in the HeliosDB WASM repository).
name = "$snake"
version = "0.1.0"
description = "$snake(a, b): a + b, written in $language"

[[procedures]]
name = "$snake"
project = "."
abi = "$abi"
signature = "(a BIGINT, b BIGINT) RETURNS BIGINT"
export = "$export"
capabilities = []
"""
_SIGNATURE = '--params "a:BIGINT,b:BIGINT" --returns BIGINT'
_CALL = "--param a=40 --param b=2 --expect 42"

_README = """\
# $snake

A HeliosDB WASM stored procedure in $language, created by `heliosdb-wasm init`:
`$snake(a BIGINT, b BIGINT) RETURNS BIGINT` logs its arguments at info and
returns `a + b`. The code is in `$source`.

$notes

## Build

```sh
heliosdb-wasm build . --out build
```

This writes `build/$snake.$abi.wasm`$also.

## Test

```sh
heliosdb-wasm test $artifact --export $export $sig $call
```
$extra_test
## Register

```sh
heliosdb-wasm procedure create --db app.db --name $snake --file $artifact $sig --export $export
heliosdb-wasm sql --db app.db "SELECT $snake(40, 2)"
```

or in SQL (`file://` paths are relative to the current directory):

```sql
CREATE PROCEDURE $snake(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm
    USING EXPORT '$export' AS $$wasm$$file://build/$snake.$abi.wasm$$wasm$$;
SELECT $snake(40, 2);   -- 42
```

## Ship

`extension.toml` describes the project as an extension archive: build, pack,
sign and install it in one go (all procedures or none).

```sh
heliosdb-wasm keygen me                                       # me.key, me.pub
heliosdb-wasm pack . --out build/extensions --sign me.key     # build/extensions/$snake-0.1.0.tar.gz
heliosdb-wasm verify build/extensions/$snake-0.1.0.tar.gz --key me.pub
heliosdb-wasm install build/extensions/$snake-0.1.0.tar.gz --db shipped.db --key me.pub
heliosdb-wasm sql --db shipped.db "SELECT $snake(40, 2)"
```
"""

_SDK_NOTE = (
    "`heliosdb-wasm build` takes the SDKs from the HeliosDB WASM checkout it is "
    "installed from (or from `$$HELIOSDB_WASM_HOME`), here `$root`."
)

_NOTES = {
    "rust": (
        "`Cargo.toml` depends on the Rust SDK by the absolute path of the checkout this "
        "project was created from (`$sdk`); edit that path if the checkout moves. "
        "Rust builds both ABIs: a Basic-ABI core module and a component. "
    )
    + _SDK_NOTE,
    "python": (
        "Python procedures build as components with componentize-py; every function "
        "marked `@procedure` in `procedure.py` is exported, and `pyproject.toml` names "
        "the artifact. "
    )
    + _SDK_NOTE,
    "js": (
        "Every exported function of `procedure.ts` is a procedure; it builds as a "
        "QuickJS component whose export is the kebab-case name. The build needs Node.js "
        "and the JavaScript SDK's tools (`npm ci --prefix $root/sdks/js`). "
    )
    + _SDK_NOTE,
    "assemblyscript": (
        "Every exported function of `assembly/index.ts` is a procedure; it builds as a "
        "Basic-ABI core module whose export is the snake_case name. The build needs "
        "Node.js and the JavaScript SDK's tools (`npm ci --prefix $root/sdks/js`). "
    )
    + _SDK_NOTE,
    "go": (
        "Go 1.24 or later. `go.mod` replaces the SDK module with the absolute path of "
        "the checkout this project was created from (`$sdk`), for editors and "
        "hand builds; `heliosdb-wasm build` always substitutes the checkout it runs from. "
    )
    + _SDK_NOTE,
}

_COMPONENT_TEST = """
The component takes the same test with its kebab-case export:

```sh
heliosdb-wasm test build/$snake.component.wasm --export $kebab $sig $call
```
"""


@dataclass(frozen=True)
class _Layout:
    language: str  # as the README calls it
    abi: str  # the ABI the README's commands use
    component: bool  # whether that ABI's export is the kebab-case name
    files: dict[str, str]  # relative path -> template; the procedure's source first
    sdk: str  # the sdks/ folder the manifest points at


_LAYOUTS = {
    "rust": _Layout(
        "Rust",
        "basic",
        False,
        {"src/lib.rs": _RUST_LIB, "Cargo.toml": _RUST_CARGO},
        "rust",
    ),
    "python": _Layout(
        "Python",
        "component",
        True,
        {"procedure.py": _PYTHON_PROCEDURE, "pyproject.toml": _PYTHON_PYPROJECT},
        "python",
    ),
    "js": _Layout("TypeScript", "component", True, {"procedure.ts": _JS_PROCEDURE}, "js"),
    "assemblyscript": _Layout(
        "AssemblyScript", "basic", False, {"assembly/index.ts": _ASC_INDEX}, "js"
    ),
    "go": _Layout("Go", "basic", False, {"main.go": _GO_MAIN, "go.mod": _GO_MOD}, "go"),
}


def _check(language: str, name: str, target: Path) -> None:
    if language not in LANGUAGES:
        raise ScaffoldError(f"unknown language {language!r}: choose one of {', '.join(LANGUAGES)}")
    if not _NAME.match(name):
        raise ScaffoldError(
            f"invalid procedure name {name!r}: use lowercase letters, digits and _, "
            "starting with a letter (^[a-z][a-z0-9_]*$)"
        )
    if not _WIT_PARTS.match(name):
        raise ScaffoldError(
            f"invalid procedure name {name!r}: every _-separated part must start with a "
            "letter, and _ may not repeat or end the name (WIT export names are kebab-case)"
        )
    if name.startswith("heliosdb_"):
        raise ScaffoldError(f"invalid procedure name {name!r}: the heliosdb_ prefix is reserved")
    if name in _RESERVED[language] or (language == "js" and _Names.of(name).camel in _JS_KEYWORDS):
        raise ScaffoldError(f"invalid procedure name {name!r}: it is reserved in {language}")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not an empty folder")


def init_project(language: str, name: str, parent: Path) -> Path:
    """Create parent/<name>/ holding a new procedure project that builds with
    `heliosdb-wasm build` and passes `heliosdb-wasm test` out of the box. Returns the folder."""
    target = parent / name
    _check(language, name, target)
    try:
        repo = Repo.find(Path(__file__))
    except BuildError as exc:
        raise ScaffoldError(str(exc)) from None
    layout = _LAYOUTS[language]
    names = _Names.of(name)
    root = repo.root.resolve()
    values = {
        "snake": names.snake,
        "kebab": names.kebab,
        "camel": names.camel,
        "pascal": names.pascal,
        "root": str(root),
        "sdk": str(root / "sdks" / layout.sdk),
        "language": layout.language,
        "abi": layout.abi,
        "export": names.kebab if layout.component else names.snake,
        "artifact": f"build/{name}.{layout.abi}.wasm",
        "sig": _SIGNATURE,
        "call": _CALL,
    }
    rust = language == "rust"
    values["notes"] = textwrap.fill(Template(_NOTES[language]).substitute(values), 80)
    values["source"] = next(iter(layout.files))
    values["also"] = f" and `build/{name}.component.wasm`" if rust else ""
    values["extra_test"] = Template(_COMPONENT_TEST).substitute(values) if rust else ""
    files = {path: Template(text).substitute(values) for path, text in layout.files.items()}
    files["README.md"] = Template(_README).substitute(values)
    files[".gitignore"] = _GITIGNORE
    files["extension.toml"] = Template(_EXTENSION).substitute(values)
    try:
        target.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            file = target / path
            file.parent.mkdir(parents=True, exist_ok=True)
            with file.open("x", encoding="utf-8") as out:  # never overwrite
                out.write(text)
    except OSError as exc:
        raise ScaffoldError(f"cannot create {target}: {exc}") from None
    return target
