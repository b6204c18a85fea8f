"""The three example plugins together behind the PostgreSQL-wire endpoint.

psycopg (and psql) sessions authenticate with a JWT (Python plugin), see
only their tenant's rows (Rust plugin) and masked PII unless admin (Go
plugin); a plugin is replaced while a load test runs without one failed
query; the metrics endpoint shows the calls.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import heliosdb_wasm as h
from conftest import BUILD, ROOT
from heliosdb_wasm.pgwire import Server, execute_statement
from heliosdb_wasm.plugins.metrics import MetricsServer
from heliosdb_wasm.plugins.pipeline import Pipeline

SECRET = "end-to-end-secret-0123456789abcdef"
PLUGINS = {
    "auth": ("python", "auth_rate_limit", "component"),
    "tenant": ("rust", "tenant_isolation", "basic"),
    "pii": ("go", "pii_masking", "basic"),
}
SEED = """
CREATE TABLE customers(id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL, name TEXT,
                       ssn TEXT, email TEXT, phone TEXT);
CREATE TABLE orders(id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL, customer_id INTEGER,
                    total REAL);
CREATE TABLE products(id INTEGER PRIMARY KEY, name TEXT);
INSERT INTO customers VALUES
  (1, 'acme', 'Alice', '123-45-6789', 'alice@acme.test', '+1 (555) 123-4567'),
  (2, 'acme', 'Bob', '222-33-4444', 'bob@acme.test', '555-987-6543'),
  (3, 'globex', 'Carol', '999-88-7777', 'carol@globex.test', '555-000-1111');
INSERT INTO orders VALUES (10, 'acme', 1, 100.0), (11, 'acme', 2, 50.0), (12, 'globex', 3, 999.0);
INSERT INTO products VALUES (1, 'anvil'), (2, 'rocket');
"""


def plugin_file(name: str) -> Path:
    """The built example plugin, built now if `nox -s build` has not."""
    lang, project, abi = PLUGINS[name]
    out = BUILD / "plugins" / lang
    path = out / f"{project}.{abi}.wasm"
    if not path.exists():
        if shutil.which("heliosdb-wasm") is None:
            pytest.fail("heliosdb-wasm is not installed")
        subprocess.run(
            [
                "heliosdb-wasm",
                "build",
                str(ROOT / "examples" / "plugins" / project / lang),
                "--out",
                str(out),
            ],
            check=True,
        )
    return path


def manifest(
    tmp: Path, *, rate: int = 10_000, tenant_file: Path | None = None, tenant_priority: int = 20
) -> str:
    tenant = tenant_file or plugin_file("tenant")
    return f"""
[pipeline]
reload_interval = 0.05

[[plugin]]
name = "auth"
file = "{plugin_file("auth")}"
priority = 10
[plugin.config]
secret = "{SECRET}"
issuer = "heliosdb-tests"
audience = "shop"
rate_limit = {{ queries = {rate}, window_ms = 60000 }}

[[plugin]]
name = "tenant"
file = "{tenant}"
priority = 20
[plugin.config]
tables = ["customers", "orders"]
column = "tenant_id"
variable = "tenant"

[[plugin]]
name = "pii"
file = "{plugin_file("pii")}"
priority = 30
[plugin.config]
columns = {{ ssn = "ssn", email = "email", phone = "phone" }}
admin_roles = ["admin"]
role_variable = "auth.role"
"""


def jwt(sub: str, tenant: str, role: str = "analyst", **extra: Any) -> str:
    def enc(doc: dict[str, Any]) -> str:
        raw = json.dumps(doc, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "sub": sub,
        "tenant": tenant,
        "role": role,
        "iss": "heliosdb-tests",
        "aud": "shop",
        "iat": now,
        "exp": now + 600,
        **extra,
    }
    head = enc({"alg": "HS256", "typ": "JWT"}) + "." + enc(claims)
    sig = hmac.new(SECRET.encode(), head.encode(), hashlib.sha256).digest()
    return head + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


class Stack:
    def __init__(self, server: Server, pipeline: Pipeline, manifest: Path) -> None:
        self.server = server
        self.pipeline = pipeline
        self.manifest = manifest

    def connect(self, token: str | None, **kw: Any) -> psycopg.Connection[Any]:
        host, port = self.server.address
        options = f"-c jwt={token}" if token else ""
        return psycopg.connect(
            host=host,
            port=port,
            user="app",
            dbname="shop",
            options=options,
            autocommit=True,
            connect_timeout=5,
            **kw,
        )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    db = tmp_path / "shop.db"
    with h.Database.open(db) as setup:
        setup.execute(SEED)
    path = tmp_path / "plugins.toml"
    path.write_text(manifest(tmp_path))
    pipeline = Pipeline()
    pipeline.watch(path)
    try:
        with Server(
            db, auth="trust", port=0, executor=pipeline.executor(execute_statement)
        ) as server:
            yield Stack(server, pipeline, path)
    finally:
        pipeline.close()


def test_sessions_see_only_their_tenant_masked_unless_admin(stack: Stack) -> None:
    with stack.connect(jwt("u1", "acme")) as acme:
        rows = acme.execute(
            "SELECT id, name, ssn, email, phone FROM customers ORDER BY id"
        ).fetchall()
        assert [r[:2] for r in rows] == [(1, "Alice"), (2, "Bob")]
        assert rows[0][2:] == ("***-**-6789", "a***@acme.test", "+* (***) ***-4567")
        joined = acme.execute(
            "SELECT c.name, o.total FROM orders o JOIN customers c ON c.id = o.customer_id"
            " WHERE o.total > 0 OR 1 = 1 ORDER BY o.id"
        ).fetchall()
        assert joined == [("Alice", 100.0), ("Bob", 50.0)]
        assert acme.execute(
            "SELECT count(*) FROM orders WHERE customer_id IN (SELECT id FROM customers)"
        ).fetchone() == (2,)
        assert acme.execute("SELECT count(*) FROM products").fetchone() == (2,)  # shared table
    with stack.connect(jwt("root", "acme", role="admin")) as admin:
        assert admin.execute("SELECT ssn FROM customers WHERE id = 1").fetchone() == (
            "123-45-6789",
        )
    with stack.connect(jwt("u3", "globex")) as globex:
        assert globex.execute("SELECT name FROM customers").fetchall() == [("Carol",)]
        # Writes to another tenant's rows change nothing.
        cur = globex.execute("UPDATE orders SET total = 0 WHERE id = 10")
        assert cur.rowcount == 0
        cur = globex.execute("DELETE FROM customers")
        assert cur.rowcount == 1
    with h.Database.open(stack.server.db_path) as check:
        assert check.execute("SELECT total FROM orders WHERE id = 10").scalar() == 100.0
        assert check.execute("SELECT count(*) FROM customers").scalar() == 2


def test_authentication_is_required_and_its_variables_cannot_be_overwritten(stack: Stack) -> None:
    with pytest.raises(psycopg.OperationalError) as refused, stack.connect(None) as conn:
        conn.execute("SELECT 1")
    assert "authentication required" in str(refused.value)
    with (
        stack.connect(None) as anon,
        pytest.raises(psycopg.errors.InvalidAuthorizationSpecification),
    ):
        anon.execute("SELECT 1")
    forged = jwt("u1", "acme")[:-3] + "abc"
    with (
        stack.connect(forged) as bad,
        pytest.raises(psycopg.errors.InvalidAuthorizationSpecification),
    ):
        bad.execute("SELECT 1")
    with stack.connect(jwt("u1", "acme")) as conn:
        conn.execute("SELECT 1")
        for sql in ("SET tenant = 'globex'", "SET auth.role = 'admin'", "RESET tenant"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (2,)


def test_the_rate_limit_rejects_the_extra_statements(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    with h.Database.open(db) as setup:
        setup.execute(SEED)
    path = tmp_path / "plugins.toml"
    path.write_text(manifest(tmp_path, rate=5))
    pipeline = Pipeline()
    pipeline.watch(path)
    try:
        with Server(
            db, auth="trust", port=0, executor=pipeline.executor(execute_statement)
        ) as server:
            stack = Stack(server, pipeline, path)
            with stack.connect(jwt("busy", "acme")) as conn:
                for _ in range(5):
                    conn.execute("SELECT 1")
                with pytest.raises(psycopg.errors.ConfigurationLimitExceeded):
                    conn.execute("SELECT 1")
            with stack.connect(jwt("calm", "acme")) as other:
                assert other.execute("SELECT 1").fetchone() == (1,)
    finally:
        pipeline.close()


def test_psql_sees_the_same_isolated_masked_rows(stack: Stack) -> None:
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is not installed (apt-get install postgresql-client)")
    host, port = stack.server.address
    dsn = f"host={host} port={port} user=app dbname=shop options='-c jwt={jwt('u1', 'acme')}'"
    out = subprocess.run(
        [psql, dsn, "-X", "-A", "-t", "-c", "SELECT name, ssn FROM customers ORDER BY id"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    assert out == ["Alice|***-**-6789", "Bob|***-**-4444"]


def test_a_plugin_is_replaced_under_load_with_no_failed_query(stack: Stack, tmp_path: Path) -> None:
    stop = threading.Event()
    failures: list[BaseException] = []
    done = [0]

    def client(tenant: str, expected: int) -> None:
        try:
            with stack.connect(jwt(f"load-{tenant}", tenant)) as conn:
                while not stop.is_set():
                    n = conn.execute("SELECT count(*) FROM customers").fetchone()
                    if n != (expected,):
                        raise AssertionError(f"{tenant} saw {n}")
                    done[0] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    threads = [
        threading.Thread(target=client, args=args)
        for args in (("acme", 2), ("globex", 1), ("acme", 2))
    ]
    for t in threads:
        t.start()
    before = {p["name"]: p["version"] for p in stack.pipeline.plugins()}
    for round_ in range(3):
        time.sleep(0.3)
        # A new build of the tenant plugin: the same code with a custom section
        # that makes it a different module, in a new file.
        build = tmp_path / f"tenant-{round_}.wasm"
        build.write_bytes(with_custom_section(plugin_file("tenant").read_bytes(), round_))
        stack.manifest.write_text(manifest(tmp_path, tenant_file=build))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            origins = {p["name"]: p["origin"] for p in stack.pipeline.plugins()}
            if origins.get("tenant") == str(build):
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the new build was not loaded")
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert failures == []
    assert done[0] > 50
    after = {p["name"]: p["version"] for p in stack.pipeline.plugins()}
    assert after["tenant"] > before["tenant"] and after["auth"] == before["auth"]
    # Every version served: the metrics show calls of each tenant build.
    text = stack.pipeline.metrics.render()
    served = {
        ln.split('version="')[1].split('"')[0]
        for ln in text.splitlines()
        if ln.startswith("heliosdb_plugin_calls_total") and 'plugin="tenant"' in ln
    }
    assert len(served) >= 3


def with_custom_section(wasm: bytes, n: int) -> bytes:
    name = b"heliosdb-test"
    payload = bytes([len(name)]) + name + n.to_bytes(4, "little")
    return wasm + b"\x00" + bytes([len(payload)]) + payload


def test_the_metrics_endpoint_shows_the_calls(stack: Stack) -> None:
    metrics = MetricsServer(stack.pipeline.metrics, "127.0.0.1", 0)
    metrics.start()
    try:
        with stack.connect(jwt("u1", "acme")) as conn:
            for _ in range(3):
                conn.execute("SELECT name FROM customers")
        host, port = metrics.address
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = response.read().decode()
    finally:
        metrics.stop()
    for plugin, stage in (
        ("auth", "pre-parse"),
        ("tenant", "post-parse"),
        ("pii", "post-execution"),
    ):
        line = next(
            ln
            for ln in text.splitlines()
            if ln.startswith("heliosdb_plugin_calls_total")
            and f'plugin="{plugin}"' in ln
            and f'stage="{stage}"' in ln
        )
        assert int(line.rsplit(" ", 1)[1]) >= 3
    assert 'heliosdb_queries_total{outcome="ok"}' in text
