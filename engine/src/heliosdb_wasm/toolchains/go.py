"""Go procedures: heliosdb-gen wrappers + ``GOOS=wasip1 GOARCH=wasm`` c-shared build.

A Go project is a module (``go.mod``) whose ``package main`` marks procedure
functions with ``//heliosdb:procedure [sql_name]``. The SDK's generator
(sdks/go/cmd/heliosdb-gen) writes the ``//go:wasmexport`` wrappers into the
work directory, and ``go build`` sees them through an ``-overlay`` as the
project's ``heliosdb_exports.go``, so the source tree stays untouched. A
``-modfile`` copy of the project's ``go.mod`` points the SDK module at this
checkout's ``sdks/go``, whatever the project's own ``replace`` says; the SDK
uses only the standard library, so nothing is downloaded.

The result is a WASI reactor core module for the Basic ABI: it imports
``wasi_snapshot_preview1`` (linked deny-by-default by the engine) and the
``heliosdb`` host functions, and exports ``_initialize``, which the engine
runs once per instance.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from .common import BuildError, Repo, run

ABIS = ("basic",)
SDK_MODULE = "github.com/heliosdb/heliosdb-wasm/sdks/go"
GENERATED = "heliosdb_exports.go"
GENERATOR = "./cmd/heliosdb-gen"
MIN_GO = (1, 24)  # //go:wasmexport


def detect(project: Path) -> bool:
    return (project / "go.mod").is_file()


def _go() -> str:
    found = shutil.which("go")
    if found is None:
        raise BuildError("Go is not installed: Go procedures need Go 1.24 or later (go.dev/dl)")
    return found


def _env(target: bool) -> dict[str, str]:
    env = dict(os.environ)
    # Never fetch a newer toolchain behind the user's back (and work offline).
    env.setdefault("GOTOOLCHAIN", "local")
    env["CGO_ENABLED"] = "0"
    if target:
        env["GOOS"], env["GOARCH"] = "wasip1", "wasm"
    else:  # the generator runs on this machine
        env.pop("GOOS", None)
        env.pop("GOARCH", None)
    return env


def _check_version(go: str) -> None:
    out = run([go, "env", "GOVERSION"], "go env", env=_env(target=False)).strip()
    found = re.match(r"go(\d+)\.(\d+)", out)
    if found and (int(found[1]), int(found[2])) < MIN_GO:
        need = ".".join(map(str, MIN_GO))
        raise BuildError(f"Go procedures need Go {need} or later (//go:wasmexport); found {out}")


def _modfile(project: Path, work: Path, go: str, repo: Repo) -> Path:
    """A copy of go.mod that requires the SDK from this checkout."""
    modfile = work / "go.mod"
    shutil.copyfile(project / "go.mod", modfile)
    if (project / "go.sum").is_file():
        shutil.copyfile(project / "go.sum", work / "go.sum")
    sdk = repo.sdk("go").resolve()
    if not (sdk / "go.mod").is_file():
        raise BuildError(f"the Go SDK is missing: {sdk}/go.mod not found")
    edits = [f"-replace={SDK_MODULE}={sdk}"]
    mod_json = run(
        [go, "mod", "edit", "-json", str(modfile)], "go mod edit", env=_env(target=False)
    )
    listed = json.loads(mod_json)
    if not any(r.get("Path") == SDK_MODULE for r in listed.get("Require") or []):
        edits.append(f"-require={SDK_MODULE}@v0.0.0")
    run([go, "mod", "edit", *edits, str(modfile)], "go mod edit", env=_env(target=False))
    return modfile


def build(project: Path, abi: str, work: Path, output: Path, repo: Repo) -> None:
    """Compile the Go module ``project`` into the core module ``output``."""
    if abi not in ABIS:
        raise BuildError(
            "Go procedures build only for the Basic ABI (a wasip1 core module); "
            "see sdks/go/README.md, 'Component build', for why there is no component route"
        )
    go = _go()
    _check_version(go)
    project = project.resolve()
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    generated = work / GENERATED
    run(
        [go, "run", "-buildvcs=false", GENERATOR, "-o", str(generated), str(project)],
        "heliosdb-gen",
        cwd=repo.sdk("go"),
        env=_env(target=False),
    )
    overlay = work / "overlay.json"
    overlay.write_text(json.dumps({"Replace": {str(project / GENERATED): str(generated)}}))
    modfile = _modfile(project, work, go, repo)
    output.parent.mkdir(parents=True, exist_ok=True)
    run(
        [
            go,
            "build",
            "-buildmode=c-shared",
            "-trimpath",
            "-buildvcs=false",
            f"-modfile={modfile}",
            f"-overlay={overlay}",
            "-o",
            str(output.resolve()),
            ".",
        ],
        "go build",
        cwd=project,
        env=_env(target=True),
    )
