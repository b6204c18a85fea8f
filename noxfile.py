"""The project's single entry point: `nox -l` lists the sessions.

Sessions share artifacts through build/ and reuse their virtualenvs, so a
second run only rebuilds what changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

ROOT = Path(__file__).parent
BUILD = ROOT / "build"
EXAMPLES = ROOT / "examples"

nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "tests", "demo"]

ENGINE = ["-e", f"{ROOT / 'engine'}[dev]"]


def _install(session: nox.Session) -> None:
    session.install(*ENGINE)


def _rust_wasm_toolchain(session: nox.Session) -> None:
    """Make sure Rust can target wasm32-unknown-unknown.

    rustup's target is preferred; where rustup cannot download it (as on this
    project's machines) Debian's rustc-web with its std sources builds std
    for the target itself (see heliosdb_wasm.build).
    """
    if shutil.which("rustup"):
        installed = subprocess.run(
            ["rustup", "target", "list", "--installed"], capture_output=True, text=True
        ).stdout.split()
        if "wasm32-unknown-unknown" in installed:
            return
    if Path("/usr/bin/cargo").exists() and Path("/usr/lib/rustlib/src/rust/library").exists():
        return
    if shutil.which("apt-get") and os.geteuid() == 0:
        session.log("installing Debian's Rust toolchain with wasm support (rustc-web)")
        session.run("apt-get", "update", "-q", external=True)
        session.run(
            "apt-get",
            "install",
            "-y",
            "-q",
            "rustc-web",
            "cargo-web",
            "rust-web-src",
            "lld-22",
            external=True,
            env={"DEBIAN_FRONTEND": "noninteractive"},
        )
        return
    session.error(
        "Rust cannot target wasm32-unknown-unknown: run `rustup target add wasm32-unknown-unknown`"
    )


def _projects() -> list[Path]:
    return sorted(p.parent for p in EXAMPLES.glob("*/*/Cargo.toml"))


def _build_examples(session: nox.Session) -> None:
    _rust_wasm_toolchain(session)
    for project in _projects():
        session.run(
            "heliosdb-wasm",
            "build",
            str(project),
            "--abi",
            "both",
            "--out",
            str(BUILD / "examples"),
        )


@nox.session
def build(session: nox.Session) -> None:
    """Compile every example, both ABIs, into build/examples (skips what is up to date)."""
    _install(session)
    _build_examples(session)


@nox.session
def tests(session: nox.Session) -> None:
    """Build the examples, then run the engine test suite."""
    _install(session)
    _build_examples(session)
    session.run(
        "pytest",
        "-q",
        str(ROOT / "tests"),
        *session.posargs,
        env={"HELIOSDB_BUILD_DIR": str(BUILD)},
    )


@nox.session
def demo(session: nox.Session) -> None:
    """Build the examples, register them with SQL in a fresh database, run the seed's queries."""
    _install(session)
    _build_examples(session)
    db = BUILD / "demo.db"
    db.unlink(missing_ok=True)
    session.chdir(ROOT)
    session.run(
        "heliosdb-wasm",
        "sql",
        "--db",
        str(db),
        "--echo",
        "-f",
        str(EXAMPLES / "seed.sql"),
        "-f",
        str(EXAMPLES / "demo.sql"),
    )
    session.log(f"demo database left at {db}")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy --strict over the engine and this file."""
    _install(session)
    session.run(
        "ruff", "check", "--config", "engine/pyproject.toml", "engine", "tests", "noxfile.py"
    )
    session.run("mypy", "--config-file", "engine/pyproject.toml", "engine/src/heliosdb_wasm")


@nox.session
def ci(session: nox.Session) -> None:
    """Everything CI runs: lint, tests, demo."""
    for name in ("lint", "tests", "demo"):
        session.notify(name)
