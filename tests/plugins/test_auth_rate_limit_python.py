"""The Python query-hook plugin SDK and examples/plugins/auth_rate_limit/python.

Three layers, fastest first: the plugin's logic imported on the host with the
SDK's host imports replaced by heliosdb_procedures.testing.FakeHost; the
SDK's AST helpers against heliosdb_wasm.sqlast round trips and the build's
WIT world and entry module; and the components `heliosdb-wasm build` makes,
checked with `wasm-tools component wit` and called through wasmtime with the
host imports stubbed (the engine's plugin pipeline is tested elsewhere).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.metadata
import importlib.util
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import wasmtime
import wasmtime.component as wc

from conftest import BUILD, ROOT
from heliosdb_wasm import sqlast, toolchains
from heliosdb_wasm.toolchains import python as py
from heliosdb_wasm.toolchains.common import BuildError, Repo
from heliosdb_wasm.wasi import is_wasip2_interface

# The SDK is a guest package, not installed on the host: import it from the tree.
sys.path.insert(0, str(ROOT / "sdks" / "python"))
from heliosdb_procedures import ProcedureError
from heliosdb_procedures.plugin import (
    Context,
    Verdict,
    add_predicate,
    allow,
    count_in_window,
    reject,
    replace_rows,
    rewrite,
    tables,
)
from heliosdb_procedures.testing import FakeHost, use_host

PROJECT = ROOT / "examples" / "plugins" / "auth_rate_limit" / "python"
SECRET = "correct horse battery staple"
ISSUER = "https://auth.example.com"
AUDIENCE = "heliosdb"
NOW = 1_700_000_000  # seconds; the fake host clock starts here
CONFIG: dict[str, Any] = {
    "secret": SECRET,
    "issuer": ISSUER,
    "audience": AUDIENCE,
    "role_claim": "role",
    "tenant_claim": "tenant",
    "rate_limit": {"queries": 3, "window_ms": 1000},
}
PLUGIN_IMPORTS = {
    f"heliosdb:procedures/{name}@0.1.0" for name in ("types", "host", "plugin-types", "plugin-host")
}
PRE_PARSE = "heliosdb:procedures/pre-parse@0.1.0"
# componentize-py's own export (its interpreter's init hook), in every component it makes.
COMPONENTIZE_PY_EXPORT = "exports"


# --- tokens --------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(header: dict[str, Any], claims: dict[str, Any], secret: str = SECRET) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 300,
        "role": "analyst",
        "tenant": "acme",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def token(secret: str = SECRET, alg: str = "HS256", **overrides: Any) -> str:
    return sign({"alg": alg, "typ": "JWT"}, claims(**overrides), secret)


def alg_none_token() -> str:
    unsigned = sign({"alg": "none", "typ": "JWT"}, claims())
    return unsigned.rsplit(".", 1)[0] + "."


def tampered_token() -> str:
    header, _, signature = token().split(".")
    payload = b64url(json.dumps(claims(sub="mallory", role="admin")).encode())
    return f"{header}.{payload}.{signature}"


# --- the plugin on the host -------------------------------------------------------


def load_plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("auth_rate_limit_plugin", PROJECT / "plugin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PLUGIN = load_plugin()


@pytest.fixture
def host() -> Iterator[FakeHost]:
    fake = FakeHost(now_us=NOW * 1_000_000)
    with use_host(fake):
        yield fake


def context(
    connection: dict[str, str] | None = None, config: dict[str, Any] | None = None
) -> Context:
    return Context(
        query_id=1,
        user="alice",
        database="shop",
        application_name="psql",
        connection={"user": "alice", "database": "shop", **(connection or {})},
        config=CONFIG if config is None else config,
    )


def authenticate(jwt: str | None = None, **ctx: Any) -> Verdict:
    connection = ctx.pop("connection", {} if jwt is None else {"jwt": jwt})
    verdict = PLUGIN.authenticate(context(connection, **ctx), "SELECT 1")
    assert isinstance(verdict, Verdict)
    return verdict


def test_a_valid_token_is_allowed_and_sets_the_session(host: FakeHost) -> None:
    verdict = authenticate(token())
    assert verdict.action == "allow"
    assert verdict.session_updates == [
        ("auth.user", "alice"),
        ("auth.role", "analyst"),
        ("tenant", "acme"),
    ]


def test_missing_claims_are_set_empty_so_the_client_cannot_supply_them(host: FakeHost) -> None:
    connection = {"tenant": "victim", "options": "-c auth.role=admin"}
    verdict = authenticate(connection={"jwt": token(role=None, tenant=None), **connection})
    assert verdict.session_updates == [("auth.user", "alice"), ("auth.role", ""), ("tenant", "")]
    assert authenticate(token(tenant=42)).session_updates[-1] == ("tenant", "42")


def test_the_claim_names_are_configurable(host: FakeHost) -> None:
    config = {**CONFIG, "role_claim": "https://example.com/role", "tenant_claim": "org"}
    verdict = authenticate(
        token(**{"https://example.com/role": "admin", "org": "initech"}), config=config
    )
    assert verdict.session_updates == [
        ("auth.user", "alice"),
        ("auth.role", "admin"),
        ("tenant", "initech"),
    ]


REJECTED_TOKENS: list[tuple[str, Callable[[], str], str]] = [
    ("bad signature", lambda: token(secret="not the secret"), "bad signature"),
    ("tampered payload", tampered_token, "bad signature"),
    ("alg none", alg_none_token, "only HS256"),
    ("alg HS512", lambda: token(alg="HS512"), "only HS256"),
    ("alg RS256", lambda: token(alg="RS256"), "only HS256"),
    ("expired", lambda: token(exp=NOW - 1), "token expired"),
    ("expires now", lambda: token(exp=NOW), "token expired"),
    ("not yet valid", lambda: token(nbf=NOW + 60), "not yet valid"),
    ("wrong issuer", lambda: token(iss="https://evil.example.com"), "wrong issuer"),
    ("no issuer", lambda: token(iss=None), "wrong issuer"),
    ("wrong audience", lambda: token(aud="someone-else"), "wrong audience"),
    ("no subject", lambda: token(sub=None), "no subject"),
    ("exp not a number", lambda: token(exp="tomorrow"), "claim exp is not a number"),
    ("role not a string", lambda: token(role=["admin"]), "claim role is not a string"),
    ("two segments", lambda: token().rsplit(".", 1)[0], "malformed token"),
    ("not base64url", lambda: "a+b.c/d.e=f", "malformed token"),
    ("header not JSON", lambda: f"{b64url(b'nope')}.{b64url(b'{}')}.x", "malformed token header"),
    ("oversized", lambda: "a" * 9000, "token too long"),
]


@pytest.mark.parametrize(
    ("jwt", "reason"),
    [(make, reason) for _, make, reason in REJECTED_TOKENS],
    ids=[n for n, _, _ in REJECTED_TOKENS],
)
def test_invalid_tokens_are_rejected_without_echoing_them(
    host: FakeHost, jwt: Callable[[], str], reason: str
) -> None:
    text = jwt()
    verdict = authenticate(text)
    assert verdict.action == "reject"
    assert verdict.sqlstate == "28000"
    message = verdict.message or ""
    assert message.startswith("invalid token: ") and reason in message
    assert text not in message
    assert verdict.session_updates == []


def test_an_audience_list_may_contain_ours(host: FakeHost) -> None:
    assert authenticate(token(aud=["other", AUDIENCE])).action == "allow"
    assert authenticate(token(aud=["other"])).message == "invalid token: wrong audience"


def test_issuer_and_audience_are_only_checked_when_configured(host: FakeHost) -> None:
    config = {"secret": SECRET}
    assert authenticate(token(iss="anyone", aud="anything"), config=config).action == "allow"


def test_leeway_tolerates_clock_skew(host: FakeHost) -> None:
    config = {**CONFIG, "leeway_seconds": 30}
    assert authenticate(token(exp=NOW - 10), config=config).action == "allow"
    assert authenticate(token(nbf=NOW + 10), config=config).action == "allow"
    assert authenticate(token(exp=NOW - 31), config=config).action == "reject"


@pytest.mark.parametrize(
    "connection",
    [{}, {"jwt": ""}, {"options": "-c search_path=public"}, {"options": ""}],
    ids=["nothing", "empty jwt", "options without jwt", "empty options"],
)
def test_a_missing_token_is_rejected(host: FakeHost, connection: dict[str, str]) -> None:
    verdict = authenticate(connection=connection)
    assert (verdict.action, verdict.sqlstate) == ("reject", "28000")
    assert verdict.message is not None and "authentication required" in verdict.message


@pytest.mark.parametrize(
    "options",
    [
        "-c jwt={t}",
        "-cjwt={t}",
        "--jwt={t}",
        "-c search_path=public   -c jwt={t} -c statement_timeout=5s",
        "-c application_name=my\\ app -c jwt={t}",
    ],
)
def test_the_token_may_come_in_options(host: FakeHost, options: str) -> None:
    verdict = authenticate(connection={"options": options.format(t=token())})
    assert verdict.action == "allow", verdict.message
    assert verdict.session_updates[0] == ("auth.user", "alice")


def test_the_jwt_parameter_wins_over_options(host: FakeHost) -> None:
    connection = {"jwt": token(sub="bob"), "options": f"-c jwt={token(sub='carol')}"}
    assert authenticate(connection=connection).session_updates[0] == ("auth.user", "bob")


def test_a_bearer_prefix_is_accepted(host: FakeHost) -> None:
    assert authenticate(f"Bearer {token()}").action == "allow"


def test_options_are_split_as_postgres_splits_them() -> None:
    settings = PLUGIN.option_settings(r"-c a=1 -cb=2 --log-level=debug -c path=C:\\x\ y -d 5 stray")
    assert settings == {"a": "1", "b": "2", "log_level": "debug", "path": "C:\\x y"}


def test_the_rate_limit_applies_per_user_and_fixed_window(host: FakeHost) -> None:
    alice, bob = token(), token(sub="bob")
    assert [authenticate(alice).action for _ in range(3)] == ["allow"] * 3
    limited = authenticate(alice)
    assert (limited.action, limited.sqlstate) == ("reject", "53400")
    assert limited.message == "rate limit exceeded: 3 queries per 1000 ms"
    assert authenticate(bob).action == "allow"  # another user's own budget
    host.advance(ms=1000)  # the next window
    assert [authenticate(alice).action for _ in range(3)] == ["allow"] * 3
    assert authenticate(alice).action == "reject"
    assert ("user:alice", 1000, (NOW * 1000) // 1000 + 1) in host.counters


def test_rejected_tokens_do_not_count_against_the_limit(host: FakeHost) -> None:
    for _ in range(5):
        assert authenticate(token(secret="wrong")).action == "reject"
    assert host.counters == {}


def test_without_a_rate_limit_nothing_is_counted(host: FakeHost) -> None:
    config = {k: v for k, v in CONFIG.items() if k != "rate_limit"}
    for _ in range(10):
        assert authenticate(token(), config=config).action == "allow"
    assert host.counters == {}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "config.secret"),
        ({"secret": ""}, "config.secret"),
        ({"secret": SECRET, "rate_limit": {"queries": 10}}, "rate_limit.window_ms"),
        ({"secret": SECRET, "rate_limit": {"queries": -1, "window_ms": 5}}, "rate_limit.queries"),
        ({"secret": SECRET, "issuer": 5}, "config.issuer"),
    ],
)
def test_a_broken_config_fails_the_statement(
    host: FakeHost, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ProcedureError, match=message) as failure:
        authenticate(token(), config=config)
    assert failure.value.code == "invalid-config"


# --- the SDK on the host ------------------------------------------------------------


def test_context_accessors() -> None:
    ctx = Context(
        connection=[("jwt", "t"), ("options", "-c x=1")],
        session={"tenant": "acme"},
        config='{"a": {"b": [1, 2]}}',
    )
    assert (ctx.connection("jwt"), ctx.connection("nope"), ctx.connection("nope", "d")) == (
        "t",
        None,
        "d",
    )
    assert (ctx.session("tenant"), ctx.session("auth.user")) == ("acme", None)
    assert ctx.config() == {"a": {"b": [1, 2]}}
    assert Context(config="").config() == {}
    with pytest.raises(ProcedureError, match="not a JSON object"):
        Context(config="[1]").config()


def test_verdicts() -> None:
    assert allow() == Verdict("allow")
    rejected = reject("42501", "no").set_session("a", "1").set_session("b", "2")
    assert (rejected.sqlstate, rejected.message, rejected.session_updates) == (
        "42501",
        "no",
        [("a", "1"), ("b", "2")],
    )
    assert rewrite({"node": "select"}).text == '{"node":"select"}'
    assert rewrite("SELECT 2").text == "SELECT 2"
    assert replace_rows([(1, "x"), (None, b"\x00")]).rows == [[1, "x"], [None, b"\x00"]]
    with pytest.raises(ValueError, match="SQLSTATE"):
        reject("4250", "too short")
    with pytest.raises(TypeError, match="must be a str"):
        allow().set_session("n", 5)  # type: ignore[arg-type]


def test_count_in_window_needs_a_host() -> None:
    with pytest.raises(RuntimeError, match="only available inside a plugin"):
        count_in_window("k", 1000)
    with use_host(FakeHost(now_us=0)) as fake:
        assert [count_in_window("k", 10) for _ in range(3)] == [1, 2, 3]
        fake.advance(ms=10)
        assert count_in_window("k", 10) == 1
        with pytest.raises(ValueError, match="window_ms"):
            count_in_window("k", 0)


def test_the_fake_host_runs_queries_and_crypto() -> None:
    from heliosdb_procedures import hmac as host_hmac
    from heliosdb_procedures import log, now, query, query_one

    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t(a INTEGER, b TEXT)")
    db.execute("INSERT INTO t VALUES (1, 'x'), (2, NULL)")
    with use_host(FakeHost(now_us=5, db=db)) as fake:
        assert query("SELECT a, b FROM t WHERE a >= ? ORDER BY a", 1) == [
            {"a": 1, "b": "x"},
            {"a": 2, "b": None},
        ]
        assert query_one("SELECT count(*) AS n FROM t") == {"n": 2}
        assert now() == 5
        assert host_hmac("sha256", b"k", b"d") == hmac.new(b"k", b"d", hashlib.sha256).digest()
        log.warn("careful")
        assert fake.logs == [("warn", "careful")]


# --- the AST helpers against the engine's JSON form ----------------------------------

TABLE_STATEMENTS = [
    "SELECT * FROM Orders",
    "SELECT a FROM t AS x WHERE b = 1",
    "SELECT * FROM a, b LEFT JOIN c USING (x) WHERE a.x = 1",
    "WITH o AS (SELECT * FROM orders) SELECT * FROM o JOIN customers ON o.cid = customers.id",
    "SELECT * FROM customers WHERE id IN (SELECT cid FROM orders WHERE total > (SELECT 1 FROM limits))",
    "SELECT 1 UNION SELECT 2 FROM t UNION ALL SELECT 3 FROM u",
    "INSERT INTO log (a) SELECT a FROM main.events",
    "UPDATE t SET a = 1 FROM u JOIN v ON u.id = v.id WHERE t.id = u.id",
    "DELETE FROM t WHERE id IN (SELECT id FROM dead)",
    "SELECT * FROM json_each('[1]')",
    "SELECT * FROM (SELECT * FROM inner_t) AS s JOIN other ON 1",
    'SELECT * FROM "Order Items" oi',
    "SELECT * FROM a JOIN (b JOIN c ON b.id = c.id) ON a.id = b.id",
    "SELECT * FROM ((SELECT 1 FROM s) AS q JOIN ((t) AS u JOIN v ON 1) ON 1)",
    "UPDATE t SET a = 1 FROM (u JOIN v ON 1) WHERE t.id = u.id",
]


@pytest.mark.parametrize("sql", TABLE_STATEMENTS)
def test_tables_agrees_with_the_engine(sql: str) -> None:
    (tree,) = sqlast.parse(sql)
    assert tables(sqlast.to_json(tree)) == sqlast.tables(tree)


PREDICATES = [
    (
        "SELECT * FROM orders",
        "SELECT * FROM orders WHERE orders.tenant_id = 'acme'",
        1,
    ),
    (
        "SELECT * FROM ORDERS AS o WHERE o.total > 5 OR o.id = 1",
        "SELECT * FROM ORDERS AS o WHERE (o.total > 5 OR o.id = 1) AND o.tenant_id = 'acme'",
        1,
    ),
    (
        "SELECT * FROM customers AS c LEFT JOIN orders AS o ON o.cid = c.id",
        "SELECT * FROM customers AS c LEFT JOIN orders AS o ON (o.cid = c.id) AND o.tenant_id = 'acme'",
        1,
    ),
    (
        "SELECT * FROM customers, orders WHERE customers.id = orders.cid",
        "SELECT * FROM customers CROSS JOIN orders WHERE (customers.id = orders.cid) AND orders.tenant_id = 'acme'",
        1,
    ),
    (
        "SELECT * FROM orders AS a JOIN orders AS b ON a.id = b.parent",
        "SELECT * FROM orders AS a JOIN orders AS b ON (a.id = b.parent) AND b.tenant_id = 'acme' WHERE a.tenant_id = 'acme'",
        2,
    ),
    (
        "SELECT * FROM customers WHERE id IN (SELECT cid FROM orders)",
        "SELECT * FROM customers WHERE id IN (SELECT cid FROM orders WHERE orders.tenant_id = 'acme')",
        1,
    ),
    (
        "WITH o AS (SELECT * FROM orders) SELECT * FROM o",
        "WITH o AS (SELECT * FROM orders WHERE orders.tenant_id = 'acme') SELECT * FROM o",
        1,
    ),
    (
        "SELECT id FROM orders UNION SELECT id FROM main.orders",
        "SELECT id FROM orders WHERE orders.tenant_id = 'acme' UNION SELECT id FROM main.orders WHERE orders.tenant_id = 'acme'",
        2,
    ),
    (
        "UPDATE orders SET total = 0 WHERE id = 2",
        "UPDATE orders SET total = 0 WHERE (id = 2) AND orders.tenant_id = 'acme'",
        1,
    ),
    (
        "DELETE FROM Orders",
        "DELETE FROM Orders WHERE Orders.tenant_id = 'acme'",
        1,
    ),
    (
        "UPDATE customers SET n = 1 FROM items JOIN orders ON orders.id = items.oid",
        "UPDATE customers SET n = 1 FROM items JOIN orders ON (orders.id = items.oid) AND orders.tenant_id = 'acme'",
        1,
    ),
    (
        "SELECT * FROM customers",
        "SELECT * FROM customers",
        0,
    ),
    # Parenthesised joins: sqlglot holds them as a subquery around a table (or
    # a group) carrying joins. The group's first table takes the condition of
    # the group's place, its joined tables their own join's on.
    (
        "SELECT * FROM (orders JOIN x ON 1)",
        "SELECT * FROM (orders JOIN x ON 1) WHERE orders.tenant_id = 'acme'",
        1,
    ),
    (
        "SELECT * FROM (x JOIN orders AS o ON o.id = x.id) WHERE x.k = 1",
        "SELECT * FROM (x JOIN orders AS o ON (o.id = x.id) AND o.tenant_id = 'acme') WHERE x.k = 1",
        1,
    ),
    (
        "SELECT * FROM a JOIN (orders JOIN c ON orders.id = c.id) ON a.id = orders.id",
        "SELECT * FROM a JOIN (orders JOIN c ON orders.id = c.id) ON (a.id = orders.id) AND orders.tenant_id = 'acme'",
        1,
    ),
    (
        "SELECT * FROM a LEFT JOIN (b JOIN orders ON b.id = orders.id) ON a.id = b.id",
        "SELECT * FROM a LEFT JOIN (b JOIN orders ON (b.id = orders.id) AND orders.tenant_id = 'acme') ON a.id = b.id",
        1,
    ),
    (
        "SELECT * FROM a JOIN (orders CROSS JOIN orders AS o2) ON 1",
        "SELECT * FROM a JOIN (orders CROSS JOIN orders AS o2) ON ((1) AND orders.tenant_id = 'acme') AND o2.tenant_id = 'acme'",
        2,
    ),
    (
        "SELECT * FROM a, (orders JOIN b USING (id))",
        "SELECT * FROM a CROSS JOIN (orders JOIN b USING (id)) WHERE orders.tenant_id = 'acme'",
        1,
    ),
    (
        "SELECT * FROM ((orders JOIN x ON 1))",
        "SELECT * FROM ((orders JOIN x ON 1)) WHERE orders.tenant_id = 'acme'",
        1,
    ),
    (
        "SELECT * FROM ((orders AS o JOIN x ON 1) JOIN orders ON orders.id = o.id)",
        "SELECT * FROM ((orders AS o JOIN x ON 1) JOIN orders ON (orders.id = o.id) AND orders.tenant_id = 'acme') WHERE o.tenant_id = 'acme'",
        2,
    ),
    (
        "SELECT * FROM (x JOIN (y JOIN orders ON y.id = orders.id) ON x.id = y.id)",
        "SELECT * FROM (x JOIN (y JOIN orders ON (y.id = orders.id) AND orders.tenant_id = 'acme') ON x.id = y.id)",
        1,
    ),
    (
        "SELECT * FROM ((SELECT 1 AS id) AS s JOIN orders ON orders.id = s.id)",
        "SELECT * FROM ((SELECT 1 AS id) AS s JOIN orders ON (orders.id = s.id) AND orders.tenant_id = 'acme')",
        1,
    ),
    (
        "SELECT * FROM (json_each('[1]') AS j JOIN orders ON 1)",
        "SELECT * FROM (JSON_EACH('[1]') AS j JOIN orders ON (1) AND orders.tenant_id = 'acme')",
        1,
    ),
    (
        "SELECT * FROM x WHERE id IN (SELECT orders.id FROM (orders JOIN y ON 1))",
        "SELECT * FROM x WHERE id IN (SELECT orders.id FROM (orders JOIN y ON 1) WHERE orders.tenant_id = 'acme')",
        1,
    ),
    (
        "UPDATE t SET a = 1 FROM (orders JOIN u ON u.id = orders.id) WHERE t.id = u.id",
        "UPDATE t SET a = 1 FROM (orders JOIN u ON u.id = orders.id) WHERE (t.id = u.id) AND orders.tenant_id = 'acme'",
        1,
    ),
    # Parentheses around one table give it their alias (SQLite: `(orders) AS o`
    # is orders named o), the outermost one when nested.
    (
        "SELECT * FROM (orders) AS o",
        "SELECT * FROM (orders) AS o WHERE o.tenant_id = 'acme'",
        1,
    ),
    (
        "SELECT * FROM ((orders AS p) AS q) AS r JOIN (orders) AS s ON s.id = r.id",
        "SELECT * FROM ((orders AS p) AS q) AS r JOIN (orders) AS s ON (s.id = r.id) AND s.tenant_id = 'acme' WHERE r.tenant_id = 'acme'",
        2,
    ),
    (
        "SELECT * FROM ((orders) AS o JOIN x ON 1) AS g",
        "SELECT * FROM ((orders) AS o JOIN x ON 1) AS g WHERE o.tenant_id = 'acme'",
        1,
    ),
    # The preserved side of a RIGHT or FULL join keeps rows its on rejects:
    # it is filtered in the where (or the group's place) instead.
    (
        "SELECT * FROM x RIGHT JOIN orders ON x.id = orders.id",
        "SELECT * FROM x RIGHT JOIN orders ON x.id = orders.id WHERE orders.tenant_id = 'acme'",
        1,
    ),
    (
        "SELECT * FROM x FULL OUTER JOIN orders AS o ON x.id = o.id WHERE x.k = 1",
        "SELECT * FROM x FULL OUTER JOIN orders AS o ON x.id = o.id WHERE (x.k = 1) AND o.tenant_id = 'acme'",
        1,
    ),
    (
        "SELECT * FROM a LEFT JOIN (x RIGHT JOIN orders ON x.id = orders.id) ON a.id = orders.id",
        "SELECT * FROM a LEFT JOIN (x RIGHT JOIN orders ON x.id = orders.id) ON (a.id = orders.id) AND orders.tenant_id = 'acme'",
        1,
    ),
    # `x IN orders` is `x IN (SELECT * FROM orders)`.
    (
        "SELECT * FROM x WHERE id IN orders",
        "SELECT * FROM x WHERE id IN (SELECT * FROM orders WHERE orders.tenant_id = 'acme')",
        1,
    ),
    (
        "DELETE FROM x WHERE id NOT IN main.Orders",
        "DELETE FROM x WHERE NOT id IN (SELECT * FROM main.Orders WHERE Orders.tenant_id = 'acme')",
        1,
    ),
    (
        "SELECT * FROM x WHERE id IN other",
        "SELECT * FROM x WHERE id IN other",
        0,
    ),
    # The row an upsert's DO UPDATE changes (and RETURNING shows).
    (
        "INSERT INTO orders (id, v) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET v = excluded.v",
        "INSERT INTO orders (id, v) VALUES (1, 2) ON CONFLICT(id) DO UPDATE SET v = excluded.v WHERE orders.tenant_id = 'acme'",
        1,
    ),
    (
        "INSERT INTO orders AS o (id) VALUES (1) ON CONFLICT (id) WHERE id > 0 DO UPDATE SET v = 1 WHERE v > 0 OR v < 0 RETURNING *",
        "INSERT INTO orders AS o (id) VALUES (1) ON CONFLICT(id) WHERE id > 0 DO UPDATE SET v = 1 WHERE (v > 0 OR v < 0) AND o.tenant_id = 'acme' RETURNING *",
        1,
    ),
    (
        "INSERT INTO orders (id) VALUES (1) ON CONFLICT DO NOTHING",
        "INSERT INTO orders (id) VALUES (1) ON CONFLICT DO NOTHING",
        0,
    ),
    (
        "INSERT INTO log SELECT * FROM (SELECT id FROM orders UNION SELECT id FROM x JOIN orders AS o ON o.id = x.id) AS u",
        "INSERT INTO log SELECT * FROM (SELECT id FROM orders WHERE orders.tenant_id = 'acme' UNION SELECT id FROM x JOIN orders AS o ON (o.id = x.id) AND o.tenant_id = 'acme') AS u",
        2,
    ),
]


@pytest.mark.parametrize(("sql", "expected", "count"), PREDICATES)
def test_add_predicate_round_trips_through_the_engine(sql: str, expected: str, count: int) -> None:
    (tree,) = sqlast.parse(sql)
    ast = json.loads(sqlast.dumps(tree))
    assert add_predicate(ast, "orders", "tenant_id", "acme") == count
    assert sqlast.render(sqlast.loads(json.dumps(ast))) == expected


def test_add_predicate_values_and_names() -> None:
    (tree,) = sqlast.parse('SELECT * FROM "Order Items" AS oi')
    ast = sqlast.to_json(tree)
    assert add_predicate(ast, "order items", "tenant id", 42) == 1
    assert sqlast.render(sqlast.from_json(ast)) == (
        'SELECT * FROM "Order Items" AS oi WHERE oi."tenant id" = 42'
    )
    ast = sqlast.to_json(sqlast.parse('SELECT * FROM "Order Items"')[0])
    add_predicate(ast, "Order Items", "t", "it's")
    assert sqlast.render(sqlast.from_json(ast)) == (
        "SELECT * FROM \"Order Items\" WHERE \"Order Items\".t = 'it''s'"
    )
    with pytest.raises(TypeError, match="str or int"):
        add_predicate(ast, "x", "y", True)
    # A negative integer is a neg of its digits, as the engine parses `-7`.
    ast = sqlast.to_json(sqlast.parse("SELECT * FROM t")[0])
    assert add_predicate(ast, "t", "n", -7) == 1
    assert ast == sqlast.to_json(sqlast.parse("SELECT * FROM t WHERE t.n = -7")[0])


def test_a_left_join_keeps_its_meaning() -> None:
    db = sqlite3.connect(":memory:")
    db.executescript(
        "CREATE TABLE customers(id INTEGER, name TEXT);"
        "CREATE TABLE orders(id INTEGER, cid INTEGER, tenant_id TEXT);"
        "INSERT INTO customers VALUES (1, 'ann'), (2, 'bo');"
        "INSERT INTO orders VALUES (10, 1, 'acme'), (11, 2, 'other');"
    )
    (tree,) = sqlast.parse(
        "SELECT c.name, o.id FROM customers c LEFT JOIN orders o ON o.cid = c.id ORDER BY c.id"
    )
    ast = sqlast.to_json(tree)
    add_predicate(ast, "orders", "tenant_id", "acme")
    rows = db.execute(sqlast.render(sqlast.from_json(ast))).fetchall()
    assert rows == [("ann", 10), ("bo", None)]  # bo stays, other tenant's order is gone


# Isolation, proven on a database: two tenants' rows, and the rewritten statement
# must see (or change) exactly what the original sees (or changes) in a database
# holding only tenant a's rows. Tenant b's rows reference tenant a's and back, so
# that a join which lets one through shows it.

TENANT_SCHEMA = """
CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE orders(id INTEGER PRIMARY KEY, tenant_id TEXT, cid INTEGER, total INTEGER);
CREATE TABLE items(id INTEGER PRIMARY KEY, tenant_id TEXT, oid INTEGER, sku TEXT);
CREATE TABLE flags(tenant_id TEXT);
CREATE TABLE archive(oid INTEGER, sku TEXT);
INSERT INTO customers VALUES (1, 'ann'), (2, 'bo'), (3, 'cy');
"""
TENANT_ROWS = {
    "a": """
        INSERT INTO orders VALUES (1, 'a', 1, 10), (2, 'a', 2, 20);
        INSERT INTO items VALUES (10, 'a', 1, 'x'), (11, 'a', 2, 'y'), (14, 'a', 3, 'z');
        INSERT INTO flags VALUES ('a');
    """,
    "b": """
        INSERT INTO orders VALUES (3, 'b', 1, 30), (4, 'b', 3, 40);
        INSERT INTO items VALUES (12, 'b', 3, 'p'), (13, 'b', 1, 'q'), (15, 'b', 4, 'r');
        INSERT INTO flags VALUES ('b');
    """,
}
TENANT_TABLES = {"orders": 1, "items": 1, "flags": 0}  # table: its tenant column


def _tenant_db(*tenants: str) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.executescript(TENANT_SCHEMA + "".join(TENANT_ROWS[t] for t in tenants))
    return db


def _isolated(sql: str, tenant: str = "a") -> tuple[str, int]:
    (tree,) = sqlast.parse(sql)
    ast = json.loads(sqlast.dumps(tree))
    added = sum(add_predicate(ast, t, "tenant_id", tenant) for t in TENANT_TABLES)
    return sqlast.render(sqlast.loads(json.dumps(ast))), added


def _rows(db: sqlite3.Connection, sql: str) -> list[tuple[Any, ...]]:
    return sorted(db.execute(sql).fetchall(), key=repr)


ISOLATED_QUERIES = [
    # parenthesised joins, as the FROM item
    "SELECT * FROM (orders JOIN items ON items.oid = orders.id)",
    "SELECT * FROM (orders AS o LEFT JOIN items AS i ON i.oid = o.id)",
    "SELECT * FROM (customers AS c JOIN orders AS o ON o.cid = c.id)",
    "SELECT * FROM (orders, items) WHERE items.oid = orders.id",
    "SELECT * FROM (orders JOIN items USING (tenant_id))",
    "SELECT * FROM (orders CROSS JOIN items)",
    # ... as a joined item, inner and outer
    "SELECT * FROM customers AS c JOIN (orders JOIN items ON items.oid = orders.id) ON orders.cid = c.id",
    "SELECT * FROM customers AS c LEFT JOIN (orders AS o JOIN items AS i ON i.oid = o.id) ON o.cid = c.id",
    "SELECT * FROM customers AS c LEFT JOIN (items JOIN orders ON orders.id = items.oid) ON orders.cid = c.id",
    "SELECT * FROM customers AS c LEFT JOIN (orders AS o LEFT JOIN items AS i ON i.oid = o.id) ON o.cid = c.id",
    "SELECT * FROM customers AS c, (orders JOIN items ON items.oid = orders.id)",
    # nested groups
    "SELECT * FROM ((orders JOIN items ON items.oid = orders.id))",
    "SELECT * FROM ((orders AS o JOIN customers AS c ON c.id = o.cid) JOIN items AS i ON i.oid = o.id)",
    "SELECT * FROM (customers AS c JOIN (orders JOIN items ON items.oid = orders.id) ON orders.cid = c.id)",
    "SELECT * FROM customers AS c LEFT JOIN ((orders AS o JOIN items AS i ON i.oid = o.id)) ON o.cid = c.id",
    "SELECT * FROM (customers AS c LEFT JOIN (orders AS o LEFT JOIN items AS i ON i.oid = o.id) ON o.cid = c.id)",
    # parentheses around one table, which take their alias
    "SELECT * FROM (orders) AS o",
    "SELECT * FROM ((orders))",
    "SELECT * FROM ((orders) AS o JOIN (items) AS i ON i.oid = o.id)",
    "SELECT * FROM customers AS c LEFT JOIN ((orders AS x) AS o) AS p ON p.cid = c.id",
    # groups starting with a derived table, VALUES or a table function
    "SELECT * FROM ((SELECT 1 AS k) AS s JOIN orders ON orders.cid = s.k)",
    "SELECT * FROM ((VALUES (1), (3)) AS v JOIN orders ON 1)",
    "SELECT * FROM (json_each('[1, 3]') AS j JOIN items ON items.oid = j.value)",
    # groups in subqueries, CTEs, unions
    "SELECT * FROM customers WHERE id IN (SELECT orders.cid FROM (orders JOIN items ON items.oid = orders.id))",
    "SELECT c.name, (SELECT count(*) FROM (orders JOIN items ON items.oid = orders.id) WHERE orders.cid = c.id) FROM customers AS c",
    "SELECT count(*) FROM (SELECT o.id FROM (orders AS o LEFT JOIN items AS i ON i.oid = o.id)) AS s",
    "WITH g AS (SELECT orders.id, items.sku FROM (orders JOIN items ON items.oid = orders.id)) SELECT * FROM g",
    "SELECT * FROM (SELECT id FROM orders UNION SELECT oid FROM (items JOIN customers ON customers.id = items.oid)) AS u",
    "SELECT id FROM orders UNION ALL SELECT id FROM (items) INTERSECT SELECT id FROM items",
    # a table-valued subquery, a CTE, window functions, EXISTS, recursion
    "SELECT * FROM (SELECT * FROM orders) AS s JOIN items ON items.oid = s.id",
    "WITH orders_b AS (SELECT * FROM orders) SELECT * FROM customers AS c LEFT JOIN orders_b ON orders_b.cid = c.id",
    "SELECT id, sum(total) OVER (PARTITION BY cid), (SELECT max(id) FROM items) FROM orders",
    "SELECT c.id, row_number() OVER (ORDER BY (SELECT count(*) FROM orders WHERE cid = c.id)) FROM customers AS c",
    "SELECT * FROM customers AS c WHERE EXISTS (SELECT 1 FROM items JOIN orders ON orders.id = items.oid WHERE orders.cid = c.id)",
    "WITH RECURSIVE r(n) AS (SELECT 0 UNION SELECT n + 1 FROM r, orders WHERE n < orders.id) SELECT * FROM r",
    "SELECT * FROM (VALUES (1), (3)) AS v JOIN orders ON orders.id = v.column1",
    # outer joins whose preserved side is the table
    "SELECT * FROM customers AS c RIGHT JOIN orders AS o ON o.cid = c.id",
    "SELECT * FROM items RIGHT JOIN (orders JOIN customers ON customers.id = orders.cid) ON items.oid = orders.id",
    "SELECT * FROM customers AS c LEFT JOIN (items RIGHT JOIN orders ON items.oid = orders.id) ON orders.cid = c.id",
    # a table after IN
    "SELECT name, 'b' IN flags, (SELECT count(*) FROM flags) FROM customers",
    "SELECT * FROM customers WHERE 'b' NOT IN main.flags",
]


@pytest.mark.parametrize("sql", ISOLATED_QUERIES)
def test_add_predicate_isolates_tenants_in_a_database(sql: str) -> None:
    both, only_a = _tenant_db("a", "b"), _tenant_db("a")
    rewritten, added = _isolated(sql)
    assert added > 0
    expected = _rows(only_a, sql)
    assert _rows(both, sql) != expected, "the statement would not show a leak"
    assert _rows(both, rewritten) == expected, rewritten


# Statements whose meaning the predicate narrows without letting tenant b in: the
# table is on the side an outer join pads with NULLs but sits in the FROM, so it is
# filtered in the WHERE (docs/plugins.md), which drops the padded rows too.
NARROWED_QUERIES = [
    "SELECT o.id, c.name FROM orders AS o RIGHT JOIN customers AS c ON o.cid = c.id",
    "SELECT o.id, c.name FROM orders AS o FULL JOIN customers AS c ON o.cid = c.id",
    "SELECT o.id, c.name FROM customers AS c FULL OUTER JOIN orders AS o ON o.cid = c.id",
]


@pytest.mark.parametrize("sql", NARROWED_QUERIES)
def test_add_predicate_may_narrow_outer_joins_but_never_leaks(sql: str) -> None:
    both, only_a = _tenant_db("a", "b"), _tenant_db("a")
    rewritten, _ = _isolated(sql)
    rows = _rows(both, rewritten)
    assert rows and set(rows) <= set(_rows(only_a, sql))


ISOLATED_CHANGES = [
    "UPDATE orders SET total = total + 1 WHERE cid = 1",
    "UPDATE orders AS o SET total = 0 FROM (items JOIN customers ON customers.id = items.oid) WHERE items.oid = o.id",
    "UPDATE customers SET name = name || '!' FROM (orders JOIN items ON items.oid = orders.id) WHERE orders.cid = customers.id",
    "UPDATE customers SET name = 'x' FROM customers AS c2 JOIN (orders LEFT JOIN items ON items.oid = orders.id) ON orders.cid = c2.id WHERE c2.id = customers.id",
    "UPDATE items SET sku = (SELECT group_concat(orders.id) FROM (orders JOIN customers ON customers.id = orders.cid))",
    "DELETE FROM items WHERE oid IN (SELECT orders.id FROM (orders JOIN customers ON customers.id = orders.cid) WHERE customers.name = 'ann')",
    "DELETE FROM orders WHERE id IN (SELECT oid FROM items)",
    "DELETE FROM customers WHERE id NOT IN (SELECT cid FROM (orders JOIN items ON items.oid = orders.id))",
    "INSERT INTO archive SELECT orders.id, items.sku FROM (orders JOIN items ON items.oid = orders.id)",
    "INSERT INTO archive SELECT oid, sku FROM (SELECT oid, sku FROM items UNION SELECT id, 'o' FROM orders) AS u",
    "INSERT INTO archive WITH w AS (SELECT * FROM ((orders) AS o JOIN items AS i ON i.oid = o.id)) SELECT id, sku FROM w",
]


def _state(db: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {name: _rows(db, f"SELECT * FROM {name}") for name in sorted(names)}


@pytest.mark.parametrize("sql", ISOLATED_CHANGES)
def test_add_predicate_isolates_tenants_changes(sql: str) -> None:
    both, only_a, untouched = _tenant_db("a", "b"), _tenant_db("a"), _tenant_db("a", "b")
    rewritten, added = _isolated(sql)
    assert added > 0
    before = _state(both)
    only_a.execute(sql)
    both.execute(rewritten)
    after = _state(both)
    untouched.execute(sql)
    assert _state(untouched) != after, "the statement would not show a leak"
    for name, rows in after.items():
        if name in TENANT_TABLES:
            # tenant b's rows as they were; tenant a's as if alone
            column = TENANT_TABLES[name]
            assert [r for r in rows if r[column] == "b"] == [
                r for r in before[name] if r[column] == "b"
            ]
            rows = [r for r in rows if r[column] != "b"]
        assert rows == _state(only_a)[name], (name, rewritten)


def test_an_upsert_cannot_change_or_return_another_tenants_row() -> None:
    db = _tenant_db("a", "b")
    sql = (
        "INSERT INTO orders (id, tenant_id, cid, total) VALUES ({id}, 'a', 1, 99) "
        "ON CONFLICT (id) DO UPDATE SET total = excluded.total RETURNING *"
    )
    # Without the predicate the update lands on tenant b's order 3 and returns it.
    rewritten, added = _isolated(sql.format(id=3))
    assert added == 1
    assert db.execute(rewritten).fetchall() == []
    assert db.execute("SELECT * FROM orders WHERE id = 3").fetchall() == [(3, "b", 1, 30)]
    # Tenant a's own row is still upserted.
    rewritten, _ = _isolated(sql.format(id=1))
    assert db.execute(rewritten).fetchall() == [(1, "a", 1, 99)]


# --- the build: detection, WIT world, entry module -------------------------------------


def test_a_plugin_project_is_detected_and_named() -> None:
    assert toolchains.detect_language(PROJECT) == "python"
    assert toolchains.abis_for(PROJECT) == ("component",)
    assert toolchains.project_name(PROJECT, "python") == "auth_rate_limit"


HOOK_SOURCE = """
from heliosdb_procedures import plugin
from heliosdb_procedures.plugin import post_execution, pre_parse

@post_execution
def mask(ctx, columns, rows): ...

def helper(ctx, sql): ...

@plugin.pre_parse
def auth(ctx, sql, *extra): ...
"""


def test_hooks_become_the_world_and_the_entry_module() -> None:
    hooks = py.analyze_plugin(HOOK_SOURCE, "plugin.py")
    assert [(h.stage, h.function) for h in hooks] == [
        ("pre_parse", "auth"),
        ("post_execution", "mask"),
    ]
    world = py.plugin_world_wit(hooks)
    assert "include heliosdb:procedures/plugin-imports@0.1.0;" in world
    assert [line.strip() for line in world.splitlines() if "export" in line] == [
        "export heliosdb:procedures/pre-parse@0.1.0;",
        "export heliosdb:procedures/post-execution@0.1.0;",
    ]
    entry = py.plugin_entry_module(hooks)
    compile(entry, "heliosdb_entry.py", "exec")
    assert "class PreParse(_exports.PreParse):" in entry
    assert "return _sdk._post_execution(_user.mask, ctx, columns, rows)" in entry


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def f(ctx, sql): ...", "no function is marked as a hook"),
        ("@pre_parse\ndef f(ctx, sql): ...\n@pre_parse\ndef g(ctx, sql): ...", "already f"),
        ("@pre_parse\ndef f(ctx): ...", r"called as f\(ctx, sql\)"),
        ("@pre_execution\ndef f(ctx, sql, params, more): ...", r"f\(ctx, sql, params\)"),
        ("@pre_parse\n@post_parse\ndef f(ctx, x): ...", "one function is one hook"),
        ("@procedure\ndef f(a: int) -> int: ...", "not @procedure"),
        ("def f(:", "plugin.py:1"),
    ],
)
def test_bad_plugins_are_build_errors(source: str, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        py.analyze_plugin(source, "plugin.py")


def test_a_project_is_procedures_or_a_plugin(tmp_path: Path) -> None:
    (tmp_path / "procedure.py").write_text("")
    (tmp_path / "plugin.py").write_text("")
    with pytest.raises(BuildError, match=r"both procedure\.py and plugin\.py"):
        py.build(tmp_path, "component", tmp_path, tmp_path / "x.wasm", Repo(ROOT))


# --- the components -------------------------------------------------------------------


def _componentize_py_or_skip() -> None:
    try:
        py.componentize_py()
    except BuildError:
        pytest.skip("componentize-py is missing (pip install componentize-py)")


@pytest.fixture(scope="session")
def auth_component() -> Path:
    _componentize_py_or_skip()
    return toolchains.build_project(
        PROJECT, BUILD / "plugins" / "python", "component", log=lambda _: None
    )


HOOKS_PLUGIN = '''
"""Every hook, to exercise the SDK's conversions inside a component."""
from heliosdb_procedures import ProcedureError
from heliosdb_procedures.plugin import (
    Context, Verdict, add_predicate, allow, post_execution, post_parse, pre_execution,
    reject, replace_rows, rewrite, tables,
)


@post_parse
def isolate(ctx: Context, ast: dict) -> Verdict:
    tenant = ctx.session("tenant")
    if tenant is None:
        raise ProcedureError("NO_TENANT", "no tenant in the session")
    if add_predicate(ast, "orders", "tenant_id", tenant) == 0:
        return allow()
    return rewrite(ast).set_session("isolated", ",".join(tables(ast)))


@pre_execution
def check(ctx: Context, sql: str, params: list) -> Verdict:
    mode = ctx.config().get("mode")
    if mode == "explode":
        raise KeyError("boom")
    if mode == "forget":
        return None
    if "forbidden" in params:
        return reject("42501", "forbidden parameter")
    return allow().set_session("params", repr(params))


@post_execution
def mask(ctx: Context, columns: list, rows: list) -> Verdict:
    if "email" not in columns:
        return allow()
    i = columns.index("email")
    return replace_rows([[("***" if j == i else v) for j, v in enumerate(row)] for row in rows])
'''


@pytest.fixture(scope="session")
def hooks_component(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _componentize_py_or_skip()
    project = tmp_path_factory.mktemp("hooks")
    (project / "plugin.py").write_text(HOOKS_PLUGIN)
    output = project / "hooks.component.wasm"
    with tempfile.TemporaryDirectory(prefix="heliosdb-build-") as work:
        py.build(project, "component", Path(work), output, Repo(ROOT))
    return output


def world_items(wasm_tools: str, component: Path) -> tuple[set[str], set[str]]:
    """The imports and exports of the component's own world (not its packages)."""
    text = subprocess.run(
        [wasm_tools, "component", "wit", str(component)], capture_output=True, text=True, check=True
    ).stdout
    imports: set[str] = set()
    exports: set[str] = set()
    for line in text.split("\n}\n", 1)[0].splitlines():
        if line.startswith(("  import ", "  export ")):
            kind, name = line.split()[:2]
            (imports if kind == "import" else exports).add(name.rstrip(";:"))
    return imports, exports


def test_the_component_imports_the_plugin_api_and_exports_only_pre_parse(
    wasm_tools: str, auth_component: Path
) -> None:
    imports, exports = world_items(wasm_tools, auth_component)
    heliosdb = {i for i in imports if not is_wasip2_interface(i)}
    assert heliosdb <= PLUGIN_IMPORTS, heliosdb - PLUGIN_IMPORTS
    assert {"heliosdb:procedures/host@0.1.0", "heliosdb:procedures/plugin-host@0.1.0"} <= heliosdb
    assert exports - {COMPONENTIZE_PY_EXPORT} == {PRE_PARSE}


def test_every_hook_is_exported_when_defined(wasm_tools: str, hooks_component: Path) -> None:
    _, exports = world_items(wasm_tools, hooks_component)
    assert exports - {COMPONENTIZE_PY_EXPORT} == {
        f"heliosdb:procedures/{hook}@0.1.0"
        for hook in ("post-parse", "pre-execution", "post-execution")
    }


def compiled(engine: wasmtime.Engine, component: Path) -> wc.Component:
    """The component compiled by wasmtime-py, cached beside the build (a
    CPython component takes seconds to compile)."""
    wasm = component.read_bytes()
    version = importlib.metadata.version("wasmtime")
    key = hashlib.sha256(wasm + version.encode()).hexdigest()
    cached = BUILD / "test-components" / f"{key}.cwasm"
    if cached.exists():
        try:
            return wc.Component.deserialize_file(engine, str(cached))
        except wasmtime.WasmtimeError:
            cached.unlink()
    built = wc.Component(engine, wasm)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".tmp")
    partial.write_bytes(built.serialize())
    partial.replace(cached)
    return built


class Plugin:
    """A plugin component instantiated with the host imports stubbed: the
    clock and count-in-window from a FakeHost, hmac and digest computed,
    everything else refused. It runs on wasmtime-py, outside the engine,
    because the engine's clock is the host's own and these tests need the
    FakeHost's."""

    def __init__(self, component: Path, stderr: Path) -> None:
        engine = wasmtime.Engine()
        self.host = FakeHost()
        self.stderr = stderr
        self.component = compiled(engine, component)
        self.store = wasmtime.Store(engine)
        wasi = wasmtime.WasiConfig()
        wasi.stderr_file = str(stderr)  # a trap's Python traceback, for failures
        self.store.set_wasi(wasi)
        linker = wc.Linker(engine)
        linker.add_wasip2()
        denied = wc.Variant("access-denied", "not in this test")
        with linker.root() as root:
            for name in ("types", "plugin-types"):
                with root.add_instance(f"heliosdb:procedures/{name}@0.1.0"):
                    pass
            with root.add_instance("heliosdb:procedures/host@0.1.0") as host:
                host.add_func("now", lambda store: self.host.now())
                host.add_func(
                    "log",
                    lambda store, level, message: self.host.logs.append((str(level), message)),
                )
                host.add_func(
                    "hmac",
                    lambda store, alg, key, data: self.host.hmac(alg, bytes(key), bytes(data)),
                )
                host.add_func("digest", lambda store, alg, data: self.host.digest(alg, bytes(data)))
                for name in (
                    "query",
                    "execute",
                    "http-fetch",
                    "begin-tx",
                    "commit-tx",
                    "rollback-tx",
                ):
                    host.add_func(name, lambda store, *args: denied)
            with root.add_instance("heliosdb:procedures/plugin-host@0.1.0") as plugin_host:
                plugin_host.add_func(
                    "count-in-window",
                    lambda store, key, window: self.host.count_in_window(key, window),
                )
        self.instance = linker.instantiate(self.store, self.component)

    def call(self, hook: str, ctx: Context, *args: Any) -> Any:
        iface = self.instance.get_export_index(self.store, f"heliosdb:procedures/{hook}@0.1.0")
        index = self.instance.get_export_index(self.store, hook, iface)
        func = self.instance.get_func(self.store, index)
        assert func is not None, hook
        try:
            result = func(self.store, wit_context(ctx), *args)
        except wasmtime.WasmtimeError as exc:
            raise AssertionError(f"{exc}\n{self.stderr.read_text()}") from None
        func.post_return(self.store)
        return lift(result)

    def release(self) -> None:
        # wasmtime-py drops a store's WASI context on a runtime thread: the
        # store must go while Python still runs.
        del self.instance, self.store


def wit_context(ctx: Context) -> wc.Record:
    record = wc.Record()
    fields = {
        "query-id": ctx.query_id,
        "user": ctx.user,
        "database": ctx.database,
        "application-name": ctx.application_name,
        "connection": list(ctx.connection_params.items()),
        "session": list(ctx.session_vars.items()),
        "tables": ctx.tables,
        "config": ctx.config_json,
    }
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def lift(result: Any) -> Any:
    """A verdict as ("allow" | (sqlstate, message) | text | rows, set-session),
    an error as ("error", case, payload)."""
    if isinstance(result, wc.Variant):
        payload = result.payload
        if result.tag == "user-error":
            payload = (payload.code, payload.message)
        return ("error", result.tag, payload)
    action = result.action
    if action is None:
        action = "allow"
    elif isinstance(action, wc.Record):
        action = (action.sqlstate, action.message)
    return action, [tuple(p) for p in getattr(result, "set-session")]


@pytest.fixture(scope="session")
def auth_plugin(auth_component: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plugin]:
    plugin = Plugin(auth_component, tmp_path_factory.mktemp("auth") / "stderr.txt")
    yield plugin
    plugin.release()


@pytest.fixture
def wasm_auth(auth_plugin: Plugin) -> Plugin:
    auth_plugin.host = FakeHost(now_us=NOW * 1_000_000)
    return auth_plugin


def pre_parse(plugin: Plugin, connection: dict[str, str], config: dict[str, Any] = CONFIG) -> Any:
    return plugin.call("pre-parse", context(connection, config), "SELECT 1")


def test_the_component_allows_a_valid_token(wasm_auth: Plugin) -> None:
    assert pre_parse(wasm_auth, {"jwt": token()}) == (
        "allow",
        [("auth.user", "alice"), ("auth.role", "analyst"), ("tenant", "acme")],
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: token(secret="wrong"), "invalid token: bad signature"),
        (alg_none_token, "invalid token: unsupported signing algorithm (only HS256 is accepted)"),
        (lambda: token(exp=NOW - 1), "invalid token: token expired"),
        (lambda: token(nbf=NOW + 5), "invalid token: token not yet valid"),
        (lambda: token(iss="x"), "invalid token: wrong issuer"),
        (lambda: token(aud="x"), "invalid token: wrong audience"),
    ],
    ids=["bad signature", "alg none", "expired", "not yet valid", "issuer", "audience"],
)
def test_the_component_rejects_invalid_tokens(
    wasm_auth: Plugin, make: Callable[[], str], message: str
) -> None:
    assert pre_parse(wasm_auth, {"jwt": make()}) == (("28000", message), [])


def test_the_component_wants_a_token(wasm_auth: Plugin) -> None:
    (sqlstate, message), updates = pre_parse(wasm_auth, {})
    assert (sqlstate, updates) == ("28000", [])
    assert "authentication required" in message


def test_the_component_reads_the_token_from_options(wasm_auth: Plugin) -> None:
    verdict = pre_parse(wasm_auth, {"options": f"-c search_path=s -c jwt={token(sub='bob')}"})
    assert verdict[0] == "allow" and verdict[1][0] == ("auth.user", "bob")


def test_the_component_rate_limits(wasm_auth: Plugin) -> None:
    actions = [pre_parse(wasm_auth, {"jwt": token()})[0] for _ in range(4)]
    assert actions[:3] == ["allow"] * 3
    assert actions[3] == ("53400", "rate limit exceeded: 3 queries per 1000 ms")
    wasm_auth.host.advance(ms=1000)
    assert pre_parse(wasm_auth, {"jwt": token()})[0] == "allow"


def test_a_broken_config_is_a_typed_error(wasm_auth: Plugin) -> None:
    assert pre_parse(wasm_auth, {"jwt": token()}, config={"rate_limit": 5}) == (
        "error",
        "user-error",
        ("invalid-config", "auth_rate_limit: config.secret (the HS256 key) is missing"),
    )


@pytest.fixture(scope="session")
def hooks_plugin(
    hooks_component: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Plugin]:
    plugin = Plugin(hooks_component, tmp_path_factory.mktemp("hooks") / "stderr.txt")
    yield plugin
    plugin.release()


def test_post_parse_gets_and_returns_the_ast(hooks_plugin: Plugin) -> None:
    ctx = Context(session={"tenant": "acme"}, tables=["orders"])
    ast = sqlast.dumps(sqlast.parse("SELECT * FROM orders AS o WHERE o.id = ?1")[0])
    text, updates = hooks_plugin.call("post-parse", ctx, ast)
    assert sqlast.render(sqlast.loads(text)) == (
        "SELECT * FROM orders AS o WHERE (o.id = ?1) AND o.tenant_id = 'acme'"
    )
    assert updates == [("isolated", "orders")]
    unrelated = sqlast.dumps(sqlast.parse("SELECT 1")[0])
    assert hooks_plugin.call("post-parse", ctx, unrelated) == ("allow", [])
    assert hooks_plugin.call("post-parse", Context(), ast) == (
        "error",
        "user-error",
        ("NO_TENANT", "no tenant in the session"),
    )


def test_pre_execution_gets_plain_parameter_values(hooks_plugin: Plugin) -> None:
    params = [1, 2.5, "x", b"\x00\x01", None]
    assert hooks_plugin.call("pre-execution", Context(), "SELECT ?", params) == (
        "allow",
        [("params", repr(params))],
    )
    assert hooks_plugin.call("pre-execution", Context(), "SELECT ?", ["forbidden"]) == (
        ("42501", "forbidden parameter"),
        [],
    )


def test_hook_failures_become_typed_errors(hooks_plugin: Plugin) -> None:
    explode = Context(config={"mode": "explode"})
    assert hooks_plugin.call("pre-execution", explode, "SELECT 1", []) == (
        "error",
        "user-error",
        ("KeyError", "'boom'"),
    )
    forget = Context(config={"mode": "forget"})
    tag, case, (code, message) = hooks_plugin.call("pre-execution", forget, "SELECT 1", [])
    assert (tag, case, code) == ("error", "user-error", "TypeError")
    assert "check returned NoneType, not a Verdict" in message


def test_post_execution_replaces_rows(hooks_plugin: Plugin) -> None:
    rows = [[1, "ann@example.com", 2.5], [2, None, b"\x00"]]
    assert hooks_plugin.call("post-execution", Context(), ["id", "email", "x"], rows) == (
        [[1, "***", 2.5], [2, "***", b"\x00"]],
        [],
    )
    assert hooks_plugin.call("post-execution", Context(), ["id"], [[1]]) == ("allow", [])


def test_the_documented_build_command_finds_it_up_to_date(auth_component: Path) -> None:
    cli = shutil.which("heliosdb-wasm")
    if cli is None:
        pytest.skip("the heliosdb-wasm CLI is not on PATH")
    done = subprocess.run(
        [cli, "build", str(PROJECT), "--out", str(auth_component.parent)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout
