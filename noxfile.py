"""The project's single entry point: `nox -l` lists the sessions.

Sessions share artifacts through build/ and reuse their virtualenvs, so a
second run only rebuilds what changed. Toolchains the examples need (Rust's
wasm target, Go, the npm packages) are checked and, where the machine allows,
installed by the sessions themselves.
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
CONFORMANCE = ROOT / "tests" / "conformance"
JS_SDK = ROOT / "sdks" / "js"
CORE = ROOT / "engine" / "core"
CORE_TARGET = Path.home() / ".cache" / "heliosdb-wasm" / "cargo-core"

nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "tests", "conformance", "demo"]

ENGINE = ["-e", f"{ROOT / 'engine'}[dev]"]
LANGUAGE_DIRS = ("rust", "go", "python", "assemblyscript", "js")


def _install(session: nox.Session) -> None:
    # maturin builds the runtime core (engine/core) into the target folder
    # every session and clone shares: wasmtime is compiled once per machine
    # (a first build takes minutes; after that a session's install relinks).
    if not shutil.which("cargo"):
        session.error("Rust (cargo) is needed to build the engine's core: https://rustup.rs")
    session.install(*ENGINE, env={"CARGO_TARGET_DIR": str(CORE_TARGET)})


def _projects(parent: Path) -> list[Path]:
    """<parent>/*/<language>/ project folders, in a stable order."""
    return sorted(p for p in parent.glob("*/*") if p.is_dir() and p.name in LANGUAGE_DIRS)


def _rust_wasm_toolchain(session: nox.Session) -> None:
    """Make sure Rust can target wasm32-unknown-unknown.

    rustup's target is preferred; where rustup cannot download it (as on this
    project's machines) Debian's rustc-web with its std sources builds std
    for the target itself (see heliosdb_wasm/toolchains/rust.py).
    """
    if shutil.which("rustup"):
        installed = subprocess.run(
            ["rustup", "target", "list", "--installed"], capture_output=True, text=True
        ).stdout.split()
        if "wasm32-unknown-unknown" in installed:
            return
    if Path("/usr/bin/cargo").exists() and Path("/usr/lib/rustlib/src/rust/library").exists():
        return
    session.log("installing Debian's Rust toolchain with wasm support (rustc-web)")
    if _apt(session, "rustc-web", "cargo-web", "rust-web-src", "lld-22"):
        return
    session.error(
        "Rust cannot target wasm32-unknown-unknown: run `rustup target add wasm32-unknown-unknown`"
    )


def _apt(session: nox.Session, *packages: str) -> bool:
    """Install Debian packages where this runs as root with apt; False if it cannot."""
    if not (shutil.which("apt-get") and os.geteuid() == 0):
        return False
    session.run("apt-get", "update", "-q", external=True)
    session.run(
        "apt-get",
        "install",
        "-y",
        "-q",
        *packages,
        external=True,
        env={"DEBIAN_FRONTEND": "noninteractive"},
    )
    return True


def _toolchains(session: nox.Session, projects: list[Path]) -> None:
    languages = {p.name for p in projects}
    if "rust" in languages:
        _rust_wasm_toolchain(session)
    if "go" in languages and not shutil.which("go"):
        session.error("Go >= 1.24 is needed for the Go examples: https://go.dev/dl/")
    if languages & {"assemblyscript", "js"}:
        if not shutil.which("node"):
            session.error("Node.js >= 20 is needed for the JavaScript examples")
        # npm records what it installed in node_modules/.package-lock.json:
        # reinstall when the project's lock file is newer.
        lock, installed = JS_SDK / "package-lock.json", JS_SDK / "node_modules/.package-lock.json"
        if not installed.exists() or lock.stat().st_mtime > installed.stat().st_mtime:
            session.run(
                "npm", "ci", "--prefix", str(JS_SDK), "--no-audit", "--no-fund", external=True
            )


def _build(session: nox.Session, project: Path, out: Path, *extra: str) -> None:
    session.run("heliosdb-wasm", "build", str(project), "--out", str(out), *extra)


def _build_examples(session: nox.Session) -> None:
    projects = _projects(EXAMPLES)
    _toolchains(session, projects)
    for project in projects:
        _build(session, project, BUILD / "examples" / project.name)


def _build_plugins(session: nox.Session) -> None:
    """examples/plugins/<plugin>/<language>/ into build/plugins/<language>/."""
    projects = _projects(EXAMPLES / "plugins")
    _toolchains(session, projects)
    for project in projects:
        # Rust, Go and AssemblyScript plugins are Basic-ABI modules (docs/plugins.md
        # §3); the Rust SDK's component build has no plugin world yet.
        abi = "component" if project.name in ("python", "js") else "basic"
        _build(session, project, BUILD / "plugins" / project.name, "--abi", abi)


def _build_conformance(session: nox.Session) -> None:
    projects = sorted(p for p in (CONFORMANCE / "impl").iterdir() if p.is_dir())
    _toolchains(session, projects)
    for project in projects:
        _build(session, project, BUILD / "conformance", "--name", project.name)


@nox.session
def build(session: nox.Session) -> None:
    """Compile every example and example plugin into build/examples|plugins/<language>/."""
    _install(session)
    _build_examples(session)
    _build_plugins(session)


@nox.session
def tests(session: nox.Session) -> None:
    """Build the examples and plugins, then run the engine test suite."""
    _install(session)
    _build_examples(session)
    _build_plugins(session)
    _pg_clients(session)
    _client_libraries(session)
    session.run(
        "pytest",
        "-q",
        str(ROOT / "tests"),
        "--ignore",
        str(CONFORMANCE),
        *session.posargs,
        env={"HELIOSDB_BUILD_DIR": str(BUILD)},
    )
    # The runtime core's own tests (engine/core: limits, pool, traps).
    _cargo(session, "test", "-q")
    # The SDKs' own unit tests (encoders, decoders, AST helpers) on the host.
    with session.chdir(ROOT / "sdks" / "go"):
        session.run("go", "test", "./...", external=True, env={"GOTOOLCHAIN": "local"})
    with session.chdir(ROOT / "sdks" / "rust"):
        session.run(
            "cargo",
            "test",
            "-q",
            "-p",
            "heliosdb-wasm-sdk",
            "--features",
            "plugin",
            external=True,
            env={"CARGO_TARGET_DIR": str(BUILD / "cargo-host")},
        )


@nox.session
def conformance(session: nox.Session) -> None:
    """Build every language's conformance implementation and print the matrix."""
    _install(session)
    _build_conformance(session)
    _runner(
        session,
        "--json",
        str(BUILD / "conformance.json"),
        "--markdown",
        str(BUILD / "conformance.md"),
    )


def _runner(session: nox.Session, *args: str) -> None:
    """tests/conformance/runner.py over the conformance builds."""
    session.run(
        "python", str(CONFORMANCE / "runner.py"), "--build", str(BUILD / "conformance"), *args
    )


@nox.session
def package(session: nox.Session) -> None:
    """An extension archive per example (examples/*/extension.toml) and per conformance build."""
    _install(session)
    out = BUILD / "extensions"
    manifests = sorted(EXAMPLES.glob("*/extension.toml"))
    _toolchains(session, _projects(EXAMPLES))
    for manifest in manifests:
        session.run("heliosdb-wasm", "pack", str(manifest.parent), "--out", str(out))
    _build_conformance(session)
    _runner(session, "--pack", str(out))
    for archive in sorted(out.glob("*.tar.gz")):
        session.run("heliosdb-wasm", "verify", str(archive), silent=True)
    session.log(f"archives in {out}")


def _pg_clients(session: nox.Session) -> None:
    """psql and pgbench, which the client tests run against the endpoint (Debian's
    postgresql-15 has both); CI fails those tests rather than skip them without."""
    if any(Path(f"/usr/lib/postgresql/{v}/bin/pgbench").exists() for v in (15, 16, 17)):
        return
    if not _apt(session, "postgresql-15", "postgresql-client-15"):
        session.warn("no psql/pgbench: their client tests skip (CI fails them)")


CLIENTS = ROOT / "tests" / "clients"


def _client_libraries(session: nox.Session) -> None:
    """node-postgres (npm) and the PostgreSQL JDBC driver (Maven Central), for the
    client tests; installed here, never by the tests."""
    node = CLIENTS / "node"
    lock, installed = node / "package-lock.json", node / "node_modules/.package-lock.json"
    if not installed.exists() or lock.stat().st_mtime > installed.stat().st_mtime:
        session.run("npm", "ci", "--prefix", str(node), "--no-audit", "--no-fund", external=True)
    jars = BUILD / "clients" / "java"
    if not any(jars.glob("postgresql-*.jar")):
        if not shutil.which("mvn"):
            session.warn("no Maven: the JDBC client test skips (CI fails it)")
            return
        with session.chdir(CLIENTS / "java"):
            session.run(
                "mvn", "-q", "-B", "dependency:copy-dependencies",
                f"-DoutputDirectory={jars}", external=True,
            )  # fmt: skip


def _postgres(session: nox.Session) -> None:
    """Debian's PostgreSQL with PL/Python, for the bench's baselines (root + apt only)."""
    have_server = any(Path(f"/usr/lib/postgresql/{v}/bin/initdb").exists() for v in (15, 16, 17))
    have_plpython = any(
        Path(f"/usr/lib/postgresql/{v}/lib/plpython3.so").exists() for v in (15, 16, 17)
    )
    if have_server and have_plpython:
        return
    if not _apt(session, "postgresql", "postgresql-plpython3-15"):
        session.warn("no PostgreSQL: the bench reports its rows as n/a")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks with ratios against baselines from the same run (JSON + PNG in build/bench/)."""
    _install(session)
    session.install("matplotlib")
    _build_examples(session)
    _build_plugins(session)
    _postgres(session)
    session.run("python", str(ROOT / "tests" / "bench" / "bench.py"), *session.posargs)


@nox.session
def profile(session: nox.Session) -> None:
    """Instructions per call, from valgrind's callgrind, for the bench's targets a
    wall-clock ratio alone does not explain (tests/bench/callgrind.py)."""
    _install(session)
    if shutil.which("valgrind") is None:
        _apt(session, "valgrind")
    session.run("python", str(ROOT / "tests" / "bench" / "callgrind.py"), *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Build the examples, register them with SQL in a fresh database, run the seed's
    queries; then serve a database over the PostgreSQL protocol behind the three
    example plugins and query it as different tenants and roles."""
    _install(session)
    _build_examples(session)
    _build_plugins(session)
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
    session.run("python", str(EXAMPLES / "plugins" / "demo.py"))
    _singlestore_demo(session)


def _singlestore_demo(session: nox.Session) -> None:
    """SingleStore's power-of and split-str, as modules and as an extension archive."""
    import tarfile

    src, out = EXAMPLES / "singlestore", BUILD / "singlestore"
    out.mkdir(parents=True, exist_ok=True)
    session.run("wasm-tools", "parse", str(src / "split.wat"), "-o", str(out / "split.wasm"))
    shutil.copy(src / "split.wit", out / "split.wit")
    script = out / "s2demo.sql"
    script.write_text(
        "CREATE FUNCTION power_of AS WASM FROM LOCAL INFILE 'split.wasm'"
        " WITH WIT FROM LOCAL INFILE 'split.wit';\n"
        "CREATE FUNCTION split_str AS WASM FROM LOCAL INFILE 'split.wasm'"
        " WITH WIT FROM LOCAL INFILE 'split.wit';\n"
    )
    with tarfile.open(out / "s2demo.tar", "w", format=tarfile.GNU_FORMAT) as archive:
        for name in ("s2demo.sql", "split.wasm", "split.wit"):
            archive.add(out / name, arcname=name)
    db = out / "demo.db"
    db.unlink(missing_ok=True)
    session.run("heliosdb-wasm", "sql", "--db", str(db), "--echo", "-f", str(src / "demo.sql"))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy --strict over the engine and this file; clippy and rustfmt
    over the runtime core."""
    _install(session)
    session.run(
        "ruff", "check", "--config", "engine/pyproject.toml", "engine", "tests", "noxfile.py"
    )
    session.run("mypy", "--config-file", "engine/pyproject.toml", "engine/src/heliosdb_wasm")
    _cargo(session, "fmt", "--check")
    # With and without the Python binding: `cargo test` builds the latter.
    _cargo(session, "clippy", "-q", "--all-targets", "--", "-D", "warnings")
    _cargo(session, "clippy", "-q", "--all-targets", "--features", "python", "--", "-D", "warnings")


def _cargo(session: nox.Session, *args: str) -> None:
    """cargo in engine/core, building into a target folder under the home
    directory that outlives clones: wasmtime is compiled once per machine."""
    with session.chdir(CORE):
        session.run("cargo", *args, external=True, env={"CARGO_TARGET_DIR": str(CORE_TARGET)})


@nox.session
def ci(session: nox.Session) -> None:
    """Everything CI runs: lint, tests, conformance, package, demo."""
    for name in ("lint", "tests", "conformance", "package", "demo"):
        session.notify(name)
