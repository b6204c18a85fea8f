"""The three example plugins in front of a real PostgreSQL (proxy mode).

The same modules and manifest as test_end_to_end.py, unchanged: the JWT
plugin (Python) authenticates each session from a `-c jwt=...` option that
never reaches PostgreSQL, the tenant plugin (Rust) rewrites PostgreSQL-dialect
statements so a session sees its tenant's rows only, and the PII plugin (Go)
masks the rows PostgreSQL returns unless the session's role is admin. The
client authenticates to PostgreSQL with its own password throughout.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pgcluster
import psycopg
import pytest
from psycopg import errors as pg_errors
from test_end_to_end import SEED, jwt, manifest

from heliosdb_wasm.pgwire import Server
from heliosdb_wasm.pgwire.proxy import Upstream
from heliosdb_wasm.plugins.pipeline import Pipeline

PASSWORD = "tenant-app-secret"


@pytest.fixture(scope="module")
def upstream(pg_cluster: pgcluster.Cluster) -> pgcluster.Cluster:
    pg_cluster.psql(
        f"CREATE ROLE tenant_app LOGIN PASSWORD '{PASSWORD}';"
        " CREATE DATABASE tenants OWNER tenant_app;"
    )
    with psycopg.connect(
        host="127.0.0.1",
        port=pg_cluster.port,
        user="tenant_app",
        password=PASSWORD,
        dbname="tenants",
    ) as conn:
        conn.execute(SEED)
    return pg_cluster


@pytest.fixture
def proxy(upstream: pgcluster.Cluster, tmp_path: Path) -> Iterator[Server]:
    path = tmp_path / "plugins.toml"
    path.write_text(manifest(tmp_path))
    pipeline = Pipeline()
    pipeline.watch(path)
    target = Upstream.parse(f"postgresql://127.0.0.1:{upstream.port}?sslmode=disable")
    try:
        with Server(tmp_path / "plugins.db", port=0, upstream=target, pipeline=pipeline) as server:
            yield server
    finally:
        pipeline.close()


def connect(server: Server, token: str | None, **kw: Any) -> psycopg.Connection[Any]:
    host, port = server.address
    return psycopg.connect(
        host=host,
        port=port,
        user="tenant_app",
        password=PASSWORD,
        dbname="tenants",
        options=f"-c jwt={token}" if token else "",
        autocommit=True,
        connect_timeout=5,
        **kw,
    )


def test_tenants_see_their_rows_masked_unless_admin(proxy: Server) -> None:
    with connect(proxy, jwt("u1", "acme")) as acme:
        rows = acme.execute("SELECT id, name, ssn, email FROM customers ORDER BY id").fetchall()
        assert [r[:2] for r in rows] == [(1, "Alice"), (2, "Bob")]
        assert rows[0][2:] == ("***-**-6789", "a***@acme.test")
        # PostgreSQL's dialect goes through the rewrite.
        assert acme.execute(
            "SELECT count(*)::int FROM orders WHERE total::numeric > 10"
        ).fetchone() == (2,)
        # Prepared and binary: the same isolation and masking.
        for _ in range(3):
            cur = acme.cursor(binary=True)
            got = cur.execute("SELECT ssn FROM customers WHERE id = %s", (3,), prepare=True)
            assert got.fetchall() == []
        cur = acme.execute("UPDATE orders SET total = 0 WHERE id = 12")
        assert cur.rowcount == 0  # globex's order: not this tenant's
    with connect(proxy, jwt("root", "acme", role="admin")) as admin:
        assert admin.execute("SELECT ssn FROM customers WHERE id = 1").fetchone() == (
            "123-45-6789",
        )
    with connect(proxy, jwt("u3", "globex")) as globex:
        assert globex.execute("SELECT name FROM customers").fetchall() == [("Carol",)]


def test_a_session_without_a_valid_token_is_refused(proxy: Server) -> None:
    with (
        connect(proxy, None) as anonymous,
        pytest.raises(pg_errors.InvalidAuthorizationSpecification, match="authentication required"),
    ):
        anonymous.execute("SELECT name FROM customers")
    forged = jwt("u1", "acme")[:-3] + "abc"
    with (
        connect(proxy, forged) as bad,
        pytest.raises(pg_errors.InvalidAuthorizationSpecification),
    ):
        bad.execute("SELECT 1")


def test_postgresql_itself_never_saw_another_tenants_write(
    proxy: Server, upstream: pgcluster.Cluster
) -> None:
    with connect(proxy, jwt("u3", "globex")) as globex:
        globex.execute("DELETE FROM orders")
    with psycopg.connect(
        host="127.0.0.1", port=upstream.port, user="tenant_app", password=PASSWORD, dbname="tenants"
    ) as direct:
        assert direct.execute("SELECT id FROM orders ORDER BY id").fetchall() == [(10,), (11,)]
        direct.execute("INSERT INTO orders VALUES (12, 'globex', 3, 999.0)")
