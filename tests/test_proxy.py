"""Proxy mode (pgwire/proxy.py): the wire endpoint in front of a real
PostgreSQL 15 cluster that the tests start themselves.

Without plugins, clients must not be able to tell the proxy from the server:
authentication, the simple and extended protocols, binary values, COPY,
server-side cursors, notifications, cancel and transaction state all come
from PostgreSQL. With plugins, a rejection is PostgreSQL's own kind of error
in the right place of the stream (and fails the transaction like one), and
rewrites and replaced rows are what the client gets.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pgcluster
import psycopg
import pytest
from psycopg import errors as pg_errors

import heliosdb_wasm as h
from conftest import Pki, allow, pg_tool, reject, spec
from heliosdb_wasm.pgwire import Server
from heliosdb_wasm.pgwire.proxy import Upstream, forwarded_params
from heliosdb_wasm.pgwire.tls import TlsConfig
from heliosdb_wasm.plugins.pipeline import Pipeline

PASSWORD = "app-secret"
SEED = """
CREATE TABLE customers(id int PRIMARY KEY, tenant_id text NOT NULL, name text, ssn text);
INSERT INTO customers VALUES (1, 'acme', 'Alice', '123-45-6789'),
                             (2, 'acme', 'Bob', '222-33-4444'),
                             (3, 'globex', 'Carol', '999-88-7777');
CREATE TABLE events(id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(),
                    payload jsonb, amount numeric(10, 2));
"""


@pytest.fixture(scope="module")
def cluster(pg_cluster: pgcluster.Cluster) -> pgcluster.Cluster:
    """The session's cluster with this module's roles and database."""
    pg_cluster.psql(
        f"CREATE ROLE app LOGIN PASSWORD '{PASSWORD}';"
        " CREATE ROLE other LOGIN PASSWORD 'other-secret';"
        " CREATE DATABASE shop OWNER app;"
    )
    with psycopg.connect(
        host="127.0.0.1", port=pg_cluster.port, user="app", password=PASSWORD, dbname="shop"
    ) as conn:
        conn.execute(SEED)
    return pg_cluster


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    p = Pipeline()
    yield p
    p.close()


@pytest.fixture
def proxy(cluster: pgcluster.Cluster, pipeline: Pipeline, tmp_path: Path) -> Iterator[Server]:
    upstream = Upstream.parse(f"postgresql://127.0.0.1:{cluster.port}?sslmode=disable")
    with Server(tmp_path / "plugins.db", port=0, upstream=upstream, pipeline=pipeline) as server:
        yield server


def connect(server: Server, **kw: Any) -> psycopg.Connection[Any]:
    host, port = server.address
    args: dict[str, Any] = {
        "host": host,
        "port": port,
        "user": "app",
        "password": PASSWORD,
        "dbname": "shop",
        "connect_timeout": 5,
        "autocommit": True,
    }
    return psycopg.connect(**{**args, **kw})


# --- without plugins: PostgreSQL, unchanged --------------------------------------------


def test_statements_run_on_postgresql_as_the_client_authenticated(proxy: Server) -> None:
    with connect(proxy) as conn:
        version = conn.execute("SELECT version()").fetchone()
        assert version is not None and version[0].startswith("PostgreSQL 1")
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            "app",
            "shop",
        )
        # PostgreSQL's own dialect and types, not SQLite's.
        assert conn.execute("SELECT '{\"a\": [1, 2]}'::jsonb -> 'a' ->> 1").fetchone() == ("2",)
        assert conn.execute("SELECT array_agg(x) FROM generate_series(1, 3) x").fetchone() == (
            [1, 2, 3],
        )


def test_a_wrong_password_or_unknown_user_is_refused_by_postgresql(proxy: Server) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(proxy, password="wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(proxy, user="nobody")
    with pytest.raises(psycopg.OperationalError, match='database "nowhere" does not exist'):
        connect(proxy, dbname="nowhere")


def test_channel_binding_is_not_offered_through_the_proxy(proxy: Server) -> None:
    # The client's TLS session (if any) is the proxy's: binding it to the
    # upstream's SCRAM exchange cannot work, so only plain SCRAM is offered.
    with pytest.raises(psycopg.OperationalError, match="channel binding"):
        connect(proxy, channel_binding="require")


def test_extended_protocol_binary_prepared_and_pipeline(proxy: Server) -> None:
    with connect(proxy) as conn:
        for _ in range(3):  # psycopg prepares from the second run on
            assert conn.execute(
                "SELECT name FROM customers WHERE id = %s", (2,), prepare=True
            ).fetchone() == ("Bob",)
        cur = conn.cursor(binary=True)
        cur.execute("SELECT id, name, 1.5::float8, now() > '2000-01-01' FROM customers ORDER BY 1")
        rows = cur.fetchall()
        assert [r[:3] for r in rows[:2]] == [(1, "Alice", 1.5), (2, "Bob", 1.5)]
        assert all(r[3] is True for r in rows)
        with conn.pipeline():
            a = conn.execute("SELECT count(*) FROM customers")
            b = conn.execute("SELECT %s::int + 1", (41,))
        assert a.fetchone() == (3,) and b.fetchone() == (42,)


def test_errors_and_transaction_state_are_postgresqls(proxy: Server) -> None:
    with connect(proxy, autocommit=False) as conn:
        conn.execute("SELECT 1")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        with pytest.raises(pg_errors.UndefinedTable):
            conn.execute("SELECT * FROM missing")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(pg_errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_copy_in_and_out(proxy: Server) -> None:
    with connect(proxy) as conn:
        conn.execute("CREATE TEMP TABLE t(a int, b text)")
        with conn.cursor().copy("COPY t FROM STDIN") as copy:
            for i in range(1000):
                copy.write_row((i, f"row {i}"))
        assert conn.execute("SELECT count(*), sum(a) FROM t").fetchone() == (1000, 499500)
        out = b""
        with conn.cursor().copy("COPY (SELECT a, b FROM t WHERE a < 3 ORDER BY a) TO STDOUT") as c:
            for block in c:
                out += bytes(block)
        assert out == b"0\trow 0\n1\trow 1\n2\trow 2\n"
        with (
            pytest.raises(pg_errors.InvalidTextRepresentation),
            conn.cursor().copy("COPY t FROM STDIN") as copy,
        ):
            copy.write(b"not a number\tx\n")
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)


def test_server_side_cursors(proxy: Server) -> None:
    with connect(proxy, autocommit=False) as conn, conn.cursor(name="big") as cur:
        cur.itersize = 7
        cur.execute("SELECT x FROM generate_series(1, 100) x")
        assert sum(r[0] for r in cur) == 5050


def test_notifications_arrive_while_the_client_waits(proxy: Server) -> None:
    with connect(proxy) as listener, connect(proxy) as sender:
        listener.execute("LISTEN jobs")
        got: list[str] = []

        def receive() -> None:
            for note in listener.notifies(timeout=10, stop_after=1):
                got.append(note.payload)

        t = threading.Thread(target=receive)
        t.start()
        time.sleep(0.3)
        sender.execute("NOTIFY jobs, 'hello'")
        t.join(timeout=15)
        assert got == ["hello"]


def test_cancel_reaches_the_upstream(proxy: Server) -> None:
    with connect(proxy) as conn:
        timer = threading.Timer(0.5, conn.cancel_safe)
        timer.start()
        started = time.monotonic()
        with pytest.raises(pg_errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 10
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_asyncpg_pool_and_types(proxy: Server) -> None:
    host, port = proxy.address

    async def run() -> None:
        pool = await asyncpg.create_pool(
            host=host,
            port=port,
            user="app",
            password=PASSWORD,
            database="shop",
            min_size=1,
            max_size=3,
        )
        try:
            async with pool.acquire() as conn:
                row = await conn.fetchrow(
                    "INSERT INTO events(payload, amount) VALUES ($1, $2) RETURNING id, amount",
                    '{"k": 1}',
                    12.5,
                )
                assert row is not None and float(row["amount"]) == 12.5
                names = await conn.fetch("SELECT name FROM customers WHERE id = ANY($1)", [1, 3])
                assert sorted(r["name"] for r in names) == ["Alice", "Carol"]
            results = await asyncio.gather(
                *(pool.fetchval("SELECT $1::int * 2", i) for i in range(20))
            )
            assert results == [i * 2 for i in range(20)]
        finally:
            await pool.close()

    asyncio.run(run())


def test_psql_describes_postgresqls_catalog(proxy: Server) -> None:
    psql = pg_tool("psql")
    host, port = proxy.address
    done = subprocess.run(
        [psql, "-X", "-h", host, "-p", str(port), "-U", "app", "-d", "shop", "-c", r"\d customers"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PGPASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert "customers_pkey" in done.stdout and "tenant_id" in done.stdout


def test_startup_options_for_plugins_are_not_sent_upstream(proxy: Server) -> None:
    # PostgreSQL refuses a setting it does not know; jwt is the plugins'.
    with connect(proxy, options="-c jwt=abc.def -c search_path=public") as conn:
        assert conn.execute("SHOW search_path").fetchone() == ("public",)
    params = forwarded_params(
        {"user": "u", "jwt": "x", "options": r"-c jwt=a\ b -c work_mem=64kB --tenant=t"},
        frozenset({"jwt", "tenant"}),
    )
    assert params == {"user": "u", "options": "-c work_mem=64kB"}


# --- with plugins -----------------------------------------------------------------------


def test_a_rejection_is_an_error_in_place_and_fails_the_transaction(
    proxy: Server, pipeline: Pipeline
) -> None:
    guard = spec("guard", {"pre-execution": reject("42501", "no deleting customers")})
    with connect(proxy, autocommit=False) as conn:
        conn.execute("SELECT 1")  # in a transaction now
        pipeline.install(guard)
        with pytest.raises(pg_errors.InsufficientPrivilege, match="no deleting customers"):
            conn.execute("DELETE FROM customers")
        # PostgreSQL failed the transaction itself, as if it had refused.
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        pipeline.remove("guard")
        with pytest.raises(pg_errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
    pipeline.install(guard)
    with connect(proxy) as conn, pytest.raises(pg_errors.InsufficientPrivilege):
        conn.execute("SELECT %s::int", (1,))  # the extended protocol too
    pipeline.remove("guard")
    with connect(proxy) as conn:
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (3,)


def test_a_pre_parse_rewrite_is_what_postgresql_runs(proxy: Server, pipeline: Pipeline) -> None:
    rewrite = {"action": {"rewrite": "SELECT 'rewritten'::text AS answer"}}
    pipeline.install(spec("rewriter", {"pre-parse": rewrite}))
    with connect(proxy) as conn:
        assert conn.execute("SELECT 'original'").fetchone() == ("rewritten",)
    # At Parse: what PostgreSQL prepares is the rewritten statement.
    pipeline.install(spec("rewriter", {"pre-parse": {"action": {"rewrite": "SELECT upper($1)"}}}))
    with connect(proxy) as conn:
        for _ in range(3):
            assert conn.execute("SELECT %s::text", ("x",), prepare=True).fetchone() == ("X",)


def test_post_execution_replaces_rows_in_text_and_binary(proxy: Server, pipeline: Pipeline) -> None:
    masked = [[{"integer": 1}, {"text": "masked"}], [{"integer": 2}, "null"]]
    rows = {"action": {"replace-rows": masked}}
    pipeline.install(spec("masker", {"post-execution": rows}))
    with connect(proxy) as conn:
        q = "SELECT id, ssn FROM customers WHERE id < 3 ORDER BY id"
        assert conn.execute(q).fetchall() == [(1, "masked"), (2, None)]
        assert conn.cursor(binary=True).execute(q).fetchall() == [(1, "masked"), (2, None)]
        assert conn.execute(q.replace("ORDER", "AND id > %s ORDER"), (0,)).fetchall() == [
            (1, "masked"),
            (2, None),
        ]
        # Two statements in one query would give rows the hook never saw.
        with pytest.raises(pg_errors.SyntaxError, match="exactly one statement"):
            conn.execute("SELECT 1; SELECT ssn FROM customers")
        # A replaced value the column's type cannot take is the plugin's error.
        pipeline.install(
            spec(
                "masker",
                {"post-execution": {"action": {"replace-rows": [[{"text": "x"}, {"integer": 1}]]}}},
            )
        )
        with pytest.raises(psycopg.Error, match="replace-rows gave 'x'"):
            conn.cursor(binary=True).execute("SELECT 1::int, 'a'::text")
        assert conn.execute("SELECT 'a'::text, 2::int").fetchone() == ("x", 1)


def test_plugins_see_the_connection_and_set_session_variables(
    proxy: Server, pipeline: Pipeline
) -> None:
    pipeline.install(spec("setter", {"pre-parse": allow(tenant="acme")}))
    with connect(proxy) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert pipeline.metrics.calls("setter") >= 1


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db", "postgresql:// URL"),
        ("postgresql://", "names no host"),
        ("postgresql://u:p@db/app", "passed through"),
        ("postgresql://db?sslmode=sometimes", "sslmode must be one of"),
        ("postgresql://db?user=x", "unknown option 'user'"),
        ("postgresql://db:99999", "Port out of range"),
        ("postgresql://db?connect_timeout=0", "connect_timeout"),
    ],
)
def test_bad_upstream_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(h.InvalidArgument, match=message):
        Upstream.parse(url)


def test_an_unreachable_upstream_is_the_clients_error(tmp_path: Path) -> None:
    upstream = Upstream.parse(f"postgresql://127.0.0.1:{pgcluster.free_port()}?sslmode=disable")
    with (
        Server(tmp_path / "p.db", port=0, upstream=upstream) as server,
        pytest.raises(psycopg.OperationalError, match="could not connect to the upstream"),
    ):
        connect(server)


def test_serve_upstream_from_the_command_line(cluster: pgcluster.Cluster, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "heliosdb_wasm.cli", "serve", "--db", str(tmp_path / "p.db")]
    cmd += ["--port", "0", "--upstream", f"postgresql://127.0.0.1:{cluster.port}?sslmode=disable"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"(proxy to 127.0.0.1:{cluster.port})" in line, line
        port = int(line.split("listening on 127.0.0.1:")[1].split()[0])
        with psycopg.connect(
            host="127.0.0.1", port=port, user="app", password=PASSWORD, dbname="shop"
        ) as conn:
            assert conn.execute("SELECT count(*) FROM customers").fetchone() == (3,)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- failures on either side ------------------------------------------------------------------


def _backends(cluster: pgcluster.Cluster, user: str = "app") -> int:
    out = cluster.psql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}'")
    return int(out.strip())


def _wait_for(check: Any, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_each_client_has_one_upstream_session_closed_with_it(
    proxy: Server, cluster: pgcluster.Cluster
) -> None:
    assert _wait_for(lambda: _backends(cluster) == 0)
    clients = [connect(proxy) for _ in range(3)]
    assert _backends(cluster) == 3
    for c in clients:
        c.close()
    assert _wait_for(lambda: _backends(cluster) == 0)


def test_a_client_that_vanishes_mid_query_frees_its_upstream_session(
    proxy: Server, cluster: pgcluster.Cluster
) -> None:
    assert _wait_for(lambda: _backends(cluster) == 0)
    conn = connect(proxy)
    conn.pgconn.send_query(b"SELECT pg_sleep(0.5)")
    conn.pgconn.flush()
    # Gone without a Terminate: the socket shut down under psycopg's feet.
    with socket.socket(fileno=os.dup(conn.pgconn.socket)) as raw:
        raw.shutdown(socket.SHUT_RDWR)
    assert _wait_for(lambda: _backends(cluster) == 0)
    conn.close()
    with connect(proxy) as again:
        assert again.execute("SELECT 1").fetchone() == (1,)


def test_an_upstream_that_ends_the_session_is_the_clients_fatal_error(
    proxy: Server, cluster: pgcluster.Cluster
) -> None:
    with connect(proxy) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert pid is not None
        cluster.psql(f"SELECT pg_terminate_backend({pid[0]})")
        with pytest.raises(psycopg.OperationalError, match="terminating connection"):
            conn.execute("SELECT 1")
            conn.execute("SELECT 1")  # if the notice came only now
    with connect(proxy) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_message_over_max_message_bytes_ends_the_session(
    cluster: pgcluster.Cluster, tmp_path: Path
) -> None:
    from heliosdb_wasm.pgwire import WireLimits

    upstream = Upstream.parse(f"postgresql://127.0.0.1:{cluster.port}?sslmode=disable")
    limits = WireLimits(max_message_bytes=100_000)
    with Server(tmp_path / "p.db", port=0, upstream=upstream, wire_limits=limits) as server:
        with (
            connect(server) as conn,
            pytest.raises(psycopg.OperationalError, match="max_message_bytes"),
        ):
            conn.execute("SELECT %s::text", ("x" * 200_000,))
        with connect(server) as conn:
            assert conn.execute("SELECT length(%s::text)", ("x" * 50_000,)).fetchone() == (50_000,)


def test_tls_from_the_client_to_the_proxy_and_from_the_proxy_to_postgresql(
    cluster: pgcluster.Cluster, pki: Pki, tmp_path: Path
) -> None:
    # PostgreSQL takes TLS from its own copy of the certificate (its files
    # must be the server user's, the key private).
    cert, key = cluster.root / "server.crt", cluster.root / "server.key"
    shutil.copy(pki.cert, cert)
    shutil.copy(pki.key, key)
    key.chmod(0o600)
    if os.geteuid() == 0:
        for path in (cert, key):
            shutil.chown(path, "postgres", "postgres")
    cluster.psql(
        f"ALTER SYSTEM SET ssl_cert_file = '{cert}'; ALTER SYSTEM SET ssl_key_file = '{key}';"
        " ALTER SYSTEM SET ssl = on; SELECT pg_reload_conf();"
    )
    try:
        assert _wait_for(lambda: cluster.psql("SHOW ssl").strip() == "on")
        url = f"postgresql://127.0.0.1:{cluster.port}?sslmode=verify-full&sslrootcert={pki.ca}"
        tls = TlsConfig.load(pki.cert, pki.key, required=True)
        with Server(tmp_path / "p.db", port=0, upstream=Upstream.parse(url), tls=tls) as server:
            # The proxy has PostgreSQL's certificate: channel binding passes through.
            with connect(
                server,
                sslmode="verify-full",
                sslrootcert=str(pki.ca),
                channel_binding="require",
            ) as conn:
                assert conn.pgconn.ssl_in_use
                upstream_tls = conn.execute(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                ).fetchone()
                assert upstream_tls == (True,)
            with pytest.raises(psycopg.OperationalError, match="accepts only TLS"):
                connect(server, sslmode="disable")
    finally:
        cluster.psql("ALTER SYSTEM RESET ssl; SELECT pg_reload_conf();")


def test_an_upstream_without_tls_is_refused_when_sslmode_requires_it(
    cluster: pgcluster.Cluster, tmp_path: Path
) -> None:
    url = f"postgresql://127.0.0.1:{cluster.port}?sslmode=require"
    with (
        Server(tmp_path / "p.db", port=0, upstream=Upstream.parse(url)) as server,
        pytest.raises(psycopg.OperationalError, match="does not accept TLS"),
    ):
        connect(server)


def test_proxied_statements_are_captured_without_their_values(
    cluster: pgcluster.Cluster, tmp_path: Path
) -> None:
    from heliosdb_wasm.plugins.capture import Capture

    path = tmp_path / "capture.jsonl"
    capture = Capture(path)
    pipeline = Pipeline(capture=capture)
    upstream = Upstream.parse(f"postgresql://127.0.0.1:{cluster.port}?sslmode=disable")
    try:
        with (
            Server(tmp_path / "p.db", port=0, upstream=upstream, pipeline=pipeline) as server,
            connect(server, options="-c jwt=secret-token") as conn,
        ):
            conn.execute("SELECT count(*) FROM customers")
            conn.execute("SELECT name FROM customers WHERE ssn = %s", ("123-45-6789",))
    finally:
        pipeline.close()
        capture.close()
    text = path.read_text()
    assert "SELECT count(*) FROM customers" in text
    assert "WHERE ssn = $1" in text
    assert "123-45-6789" not in text and "secret-token" not in text


def test_a_failed_post_execution_hook_fails_the_upstream_transaction(
    proxy: Server, pipeline: Pipeline, cluster: pgcluster.Cluster
) -> None:
    # The hook answers rows of the wrong width: the client gets the plugin's
    # error, and PostgreSQL must not keep the write the client saw fail.
    wrong = {"action": {"replace-rows": [[{"integer": 1}]]}}
    update = "UPDATE customers SET name = 'changed' WHERE id = 1 RETURNING id, name"
    for binary in (False, True):
        with connect(proxy, autocommit=False) as conn:
            conn.execute("SELECT 1")
            pipeline.install(spec("broken", {"post-execution": wrong}))
            with pytest.raises(psycopg.Error, match="replace-rows gave a row of 1 values"):
                conn.cursor(binary=binary).execute(update)
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
            pipeline.remove("broken")
            with pytest.raises(pg_errors.InFailedSqlTransaction):
                conn.execute("SELECT 1")
            conn.execute(
                "COMMIT"
            )  # PostgreSQL's answer to COMMIT in a failed transaction: ROLLBACK
        with psycopg.connect(
            host="127.0.0.1", port=cluster.port, user="app", password=PASSWORD, dbname="shop"
        ) as direct:
            assert direct.execute("SELECT name FROM customers WHERE id = 1").fetchone() == (
                "Alice",
            )
    with connect(proxy) as conn:  # and the session goes on
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (3,)
