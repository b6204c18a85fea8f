"""What every language's build shares: errors, export descriptions, WIT worlds."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


class BuildError(Exception):
    """A procedure project could not be built; the message says why."""


@dataclass(frozen=True)
class Record:
    """A WIT record: the row type of a table-valued procedure."""

    name: str
    fields: tuple[tuple[str, str], ...]  # (kebab name, WIT type)

    def wit(self) -> str:
        body = ", ".join(f"{n}: {t}" for n, t in self.fields)
        return f"record {self.name} {{ {body} }}"


@dataclass(frozen=True)
class Export:
    """One exported procedure function in WIT terms."""

    name: str
    params: tuple[tuple[str, str], ...]  # (kebab name, WIT type)
    result: str | None
    fallible: bool

    def wit(self) -> str:
        params = ", ".join(f"{n}: {t}" for n, t in self.params)
        if self.fallible:
            returns = f" -> result<{self.result or '_'}, error>"
        else:
            returns = f" -> {self.result}" if self.result is not None else ""
        return f"export {self.name}: func({params}){returns};"


def kebab(name: str) -> str:
    """snake_case or CamelCase -> kebab-case, as WIT identifiers are written."""
    out: list[str] = []
    for i, ch in enumerate(name):
        if ch == "_":
            out.append("-")
        elif ch.isupper():
            if i and name[i - 1] not in "_" and not name[i - 1].isupper():
                out.append("-")
            out.append(ch.lower())
        else:
            out.append(ch)
    return "".join(out).strip("-")


def world_wit(world: str, exports: list[Export], records: list[Record]) -> str:
    """A world that imports the host API and exports ``exports``."""
    unique = list(dict.fromkeys(r.wit() for r in records))
    return world_of_items(world, unique + [e.wit() for e in exports])


def world_of_items(world: str, items: list[str]) -> str:
    """A world that imports the host API and holds ``items`` (exports, records)."""
    lines = [
        "package heliosdb:generated;",
        "",
        f"world {world} {{",
        "  include heliosdb:procedures/procedure@0.1.0;",
        "  use heliosdb:procedures/types@0.1.0.{error};",
        *(f"  {item}" for item in items),
        "}",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Repo:
    """Where the SDKs and the host API's WIT live (a checkout of this repository)."""

    root: Path

    @property
    def wit(self) -> Path:
        return self.root / "wit"

    def sdk(self, language: str) -> Path:
        return self.root / "sdks" / language

    @classmethod
    def find(cls, start: Path) -> Repo:
        """The checkout containing ``start``, or $HELIOSDB_WASM_HOME."""
        env = os.environ.get("HELIOSDB_WASM_HOME")
        candidates = [Path(env)] if env else []
        candidates += [start.resolve(), *start.resolve().parents]
        candidates += [Path(__file__).resolve().parents[4]]  # editable install
        for path in candidates:
            if (path / "wit" / "host.wit").is_file() and (path / "sdks").is_dir():
                return cls(path)
        raise BuildError(
            "cannot find the HeliosDB WASM SDKs (a checkout with wit/ and sdks/): "
            "build from inside the repository or set HELIOSDB_WASM_HOME"
        )


def wit_package(target: Path, repo: Repo, world: str) -> Path:
    """A WIT folder holding ``world`` with the host API as its dependency."""
    deps = target / "deps" / "heliosdb"
    deps.mkdir(parents=True, exist_ok=True)
    for f in repo.wit.glob("*.wit"):
        shutil.copy(f, deps / f.name)
    (target / "world.wit").write_text(world)
    return target


def run(
    command: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> str:
    """Run a toolchain command; its output becomes the BuildError if it fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env)
    except FileNotFoundError:
        raise BuildError(f"{what}: {command[0]} is not installed") from None
    if done.returncode != 0:
        output = (done.stderr + done.stdout).strip()
        raise BuildError(f"{what} failed ({' '.join(command[:3])} ...):\n{output}")
    return done.stdout
