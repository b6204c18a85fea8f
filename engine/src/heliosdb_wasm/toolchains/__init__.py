"""Building procedure projects: one module per guest language.

``build_project`` detects the language of a project folder, asks that
language's module to compile it for an ABI, and skips the work when the
artifact is newer than every input (the project, the language's SDK and
the host API's WIT). Each language module provides ``ABIS`` (the ABIs it can
build), ``detect(project)`` and ``build(project, abi, work, output, repo)``.
"""

from __future__ import annotations

import importlib
import re
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

from .common import BuildError, Repo

__all__ = ["LANGUAGES", "BuildError", "abis_for", "build_project", "detect_language"]

# Detection order matters: a JS project may also contain a Cargo.toml-free
# package.json, a Go project never has procedure.py, and so on.
LANGUAGES = ("rust", "go", "python", "assemblyscript", "js")
# Folders and files that never feed a build.
_IGNORED = {"target", "node_modules", "__pycache__", ".git", "build"}


def _module(language: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"{__name__}.{language}")
    except ModuleNotFoundError:
        return None


def detect_language(project: Path) -> str:
    for language in LANGUAGES:
        module = _module(language)
        if module is not None and module.detect(project):
            return language
    raise BuildError(
        f"{project}: not a procedure project (expected Cargo.toml, go.mod, procedure.py, "
        "an AssemblyScript assembly/ folder or procedure.js)"
    )


def abis_for(project: Path) -> tuple[str, ...]:
    """The ABIs the project's language can build."""
    module = _module(detect_language(project))
    assert module is not None
    return tuple(module.ABIS)


def project_name(project: Path, language: str) -> str:
    """The artifact's base name: the package's own name where there is one."""
    name: str | None = None
    try:
        if language == "rust":
            name = tomllib.loads((project / "Cargo.toml").read_text())["package"]["name"]
        elif language == "python" and (project / "pyproject.toml").exists():
            name = tomllib.loads((project / "pyproject.toml").read_text())["project"]["name"]
    except (KeyError, tomllib.TOMLDecodeError):
        name = None
    if name is None:
        # examples/<procedure>/<language>/: the procedure names the artifact.
        folder = project.resolve()
        name = folder.parent.name if folder.name in (*LANGUAGES, "javascript") else folder.name
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _inputs(project: Path, repo: Repo, language: str) -> Iterator[Path]:
    sdk = "js" if language in ("assemblyscript", "js") else language
    for root in (project, repo.sdk(sdk), repo.wit):
        for path in root.rglob("*"):
            if path.is_file() and not _IGNORED.intersection(path.relative_to(root).parts):
                yield path


def _up_to_date(output: Path, inputs: Iterator[Path]) -> bool:
    if not output.exists():
        return False
    built = output.stat().st_mtime
    return all(p.stat().st_mtime <= built for p in inputs)


def build_project(
    project: Path,
    out_dir: Path,
    abi: str,
    name: str | None = None,
    log: Callable[[str], None] = print,
    force: bool = False,
) -> Path:
    """Build ``project`` for ``abi`` into ``out_dir/<name>.<abi>.wasm``."""
    if not project.is_dir():
        raise BuildError(f"{project}: no such project folder")
    language = detect_language(project)
    module = _module(language)
    assert module is not None
    if abi not in module.ABIS:
        raise BuildError(
            f"{project}: {language} procedures build as {' or '.join(module.ABIS)}, not {abi}"
        )
    repo = Repo.find(project)
    output = out_dir / f"{name or project_name(project, language)}.{abi}.wasm"
    if not force and _up_to_date(output, _inputs(project, repo, language)):
        log(f"  up to date  {output}")
        return output
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log(f"  building    {project} ({language}, {abi})")
    with tempfile.TemporaryDirectory(prefix="heliosdb-build-") as work:
        partial = Path(work) / output.name
        module.build(project.resolve(), abi, Path(work), partial, repo)
        if not partial.exists():
            raise BuildError(f"{project}: the {language} build produced no {output.name}")
        staged = output.with_name(output.name + ".partial")
        shutil.copyfile(partial, staged)
        staged.replace(output)  # readers never see half a module
    log(
        f"  built       {output} ({output.stat().st_size / 1e6:.1f} MB, "
        f"{time.monotonic() - started:.1f} s)"
    )
    return output
