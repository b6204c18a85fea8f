"""The AssemblyScript plugin SDK (sdks/js/assembly/plugin) and the API-key
authentication plugin written with it (examples/plugins/auth_token/assemblyscript).

The plugin runs in the engine's pipeline (Pipeline, PluginSpec) and behind
the wire endpoint with psycopg; its hook is also called directly as the
procedure (request JSON) RETURNS JSON it is (docs/plugins.md §3), with
requests the engine would never send. The SDK's JSON reader and writer,
SHA-256, reals and AST helpers are tested through a module built here from
HARNESS, whose procedures expose them to SQL; its four hooks run the SDK's
handlers through the pipeline.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import wasmtime

import heliosdb_wasm as h
from conftest import BUILD, ROOT, TEST_LIMITS, installed
from heliosdb_wasm.errors import InvalidArgument, PluginError, PluginRejected, ProcedureError
from heliosdb_wasm.pgwire import Server, execute_statement
from heliosdb_wasm.pgwire.errors import WireError
from heliosdb_wasm.pgwire.session import WireSession, _options, initial_variables
from heliosdb_wasm.plugins.manifest import PluginSpec, read_manifest
from heliosdb_wasm.plugins.pipeline import Pipeline

PROJECT = ROOT / "examples" / "plugins" / "auth_token" / "assemblyscript"
SDK = ROOT / "sdks" / "js"
AST_CASES = ROOT / "sdks" / "plugin-ast-cases.json"
INVALID_AUTHORIZATION = "28000"

# The API keys clients present, and what the plugin's config holds: only
# their SHA-256 hashes.
ALICE_KEY = "hdb_live_4f9c2a7e1b8d4c6f"
ROBOT_KEY = "Zm9vYmFyLmJhei9xdXV4+Y29ycmVjdA=="  # every RFC 6750 token character class
ANON_KEY = "no-entries-but-valid"
ENTRIES = {
    ALICE_KEY: {"role": "analyst", "tenant": "acme", "user": "alice"},
    ROBOT_KEY: {"role": "admin", "tenant": "globex"},
    ANON_KEY: {},
}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


CONFIG: dict[str, Any] = {"keys": {sha(k): v for k, v in ENTRIES.items()}}


def toolchain_or_skip() -> None:
    installed(shutil.which("node"), "Node.js (the AssemblyScript compiler runs on it)")
    installed(
        SDK / "node_modules" / "assemblyscript",
        f"the AssemblyScript compiler (npm ci --prefix {SDK})",
    )


def build(project: Path, out: Path, name: str | None = None) -> Path:
    from heliosdb_wasm.toolchains import BuildError, build_project

    toolchain_or_skip()
    try:
        return build_project(project, out, "basic", name=name, log=lambda _: None)
    except BuildError as exc:
        pytest.fail(f"{project} does not build: {exc}")


@pytest.fixture(scope="session")
def plugin_wasm() -> Path:
    return build(PROJECT, BUILD / "plugins" / "assemblyscript")


# --- the plugin in the pipeline --------------------------------------------------------


def session(db: h.Database, **params: str) -> WireSession:
    """A wire session with these startup parameters, as the server makes one."""
    startup = {"user": "app", "database": "shop", **params}
    return WireSession(params=startup, variables=initial_variables(startup), db=db, process_id=1)


def bearer_option(key: str) -> str:
    """`options` as libpq sends `-c authorization=Bearer <key>` (space escaped)."""
    return "-c authorization=Bearer\\ " + key


def pipeline_of(wasm: Path, config: Any = CONFIG) -> Pipeline:
    pipeline = Pipeline()
    pipeline.install(
        PluginSpec(name="auth", wasm=wasm.read_bytes(), origin=str(wasm), config=config)
    )
    return pipeline


def run(pipeline: Pipeline, s: WireSession, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return pipeline.run(s, sql, list(params), execute_statement).rows


@pytest.fixture
def db() -> Iterator[h.Database]:
    with h.Database.open(":memory:", limits=TEST_LIMITS) as database:
        yield database


@pytest.fixture(scope="module")
def auth(plugin_wasm: Path) -> Pipeline:
    return pipeline_of(plugin_wasm)


def test_the_build_is_a_basic_abi_module_exporting_pre_parse(plugin_wasm: Path) -> None:
    module = wasmtime.Module(wasmtime.Engine(), plugin_wasm.read_bytes())
    exports = {e.name for e in module.exports}
    assert {"pre_parse", "heliosdb_abi_version", "heliosdb_alloc", "memory"} <= exports
    assert not exports & {"post_parse", "pre_execution", "post_execution"}
    # Nothing but the host API; count_in_window only in modules that call it.
    assert {i.module for i in module.imports} == {"heliosdb"}
    assert "count_in_window" not in {i.name for i in module.imports}
    assert plugin_wasm.stat().st_size < 200_000


def test_a_valid_key_is_allowed_and_sets_the_session(auth: Pipeline, db: h.Database) -> None:
    s = session(db, options=bearer_option(ALICE_KEY))
    assert run(auth, s, "SELECT 40 + 2") == [(42,)]
    assert (s.variables["auth.user"], s.variables["auth.role"], s.variables["tenant"]) == (
        "alice",
        "analyst",
        "acme",
    )
    assert {"auth.user", "auth.role", "tenant"} <= s.protected
    # An entry without user, role or tenant sets them empty.
    s = session(db, options=bearer_option(ANON_KEY))
    run(auth, s, "SELECT 1")
    assert [s.variables[v] for v in ("auth.user", "auth.role", "tenant")] == ["", "", ""]


@pytest.mark.parametrize(
    "params",
    [
        {"authorization": f"Bearer {ROBOT_KEY}"},
        {"Authorization": f"bearer {ROBOT_KEY}"},
        {"AUTHORIZATION": f"  BEARER   {ROBOT_KEY}  "},
        {"authorization": ROBOT_KEY},  # a bare token
        {"options": f"-c Authorization=Bearer\\ {ROBOT_KEY} -c statement_timeout=5s"},
        {"options": f"--authorization={ROBOT_KEY}"},
        # The same token twice is not ambiguous.
        {"authorization": ROBOT_KEY, "options": f"-c authorization={ROBOT_KEY}"},
    ],
    ids=["param", "capitalised", "upper-spaced", "bare", "options", "long-option", "twice"],
)
def test_the_key_is_read_from_the_startup_parameters_and_options(
    auth: Pipeline, db: h.Database, params: dict[str, str]
) -> None:
    s = session(db, **params)
    assert run(auth, s, "SELECT 1") == [(1,)]
    assert (s.variables["auth.role"], s.variables["tenant"]) == ("admin", "globex")


REFUSED: list[tuple[str, dict[str, str], str]] = [
    ("none", {}, "authentication required"),
    ("empty", {"authorization": ""}, "malformed API key"),
    ("wrong key", {"authorization": f"Bearer {ALICE_KEY}x"}, "invalid API key"),
    ("hash instead of key", {"authorization": f"Bearer {sha(ALICE_KEY)}"}, "invalid API key"),
    ("other scheme", {"authorization": f"Basic {ALICE_KEY}"}, "only Bearer"),
    ("scheme only", {"authorization": "Bearer"}, "invalid API key"),
    ("scheme and spaces", {"authorization": "Bearer   "}, "invalid API key"),
    ("inner space", {"authorization": f"Bearer {ALICE_KEY} x"}, "malformed API key"),
    ("quote", {"authorization": 'Bearer a"b'}, "malformed API key"),
    ("padding inside", {"authorization": "Bearer ab=c"}, "malformed API key"),
    ("non-ascii", {"authorization": "Bearer kéy"}, "malformed API key"),
    ("control", {"authorization": "Bearer a\x01b"}, "malformed API key"),
    ("huge", {"authorization": "Bearer " + "a" * 1_000_000}, "malformed API key"),
    (
        "two keys",
        {"authorization": ALICE_KEY, "options": f"-c authorization={ROBOT_KEY}"},
        "ambiguous",
    ),
    ("session variable only", {"options": f"-c auth.key={ALICE_KEY}"}, "authentication required"),
]


@pytest.mark.parametrize(
    ("params", "why"), [(p, w) for _, p, w in REFUSED], ids=[n for n, _, _ in REFUSED]
)
def test_a_missing_or_invalid_key_is_refused_with_28000(
    auth: Pipeline, db: h.Database, params: dict[str, str], why: str
) -> None:
    s = session(db, **params)
    with pytest.raises(PluginRejected) as err:
        run(auth, s, "SELECT 1")
    assert err.value.sqlstate == INVALID_AUTHORIZATION
    assert why in err.value.message
    # The refusal never repeats what the client sent.
    for value in params.values():
        token = value.split()[-1] if value.split() else ""
        if len(token) > 3:
            assert token not in err.value.message
    assert "auth.role" not in s.protected


def test_every_statement_is_checked_set_included(auth: Pipeline, db: h.Database) -> None:
    s = session(db, options=bearer_option(ALICE_KEY))
    run(auth, s, "CREATE TABLE t(x)")
    run(auth, s, "SET search_path = public")
    s.params.pop("options")  # not what a client can do; the hook keeps no memory of it
    for sql in ("SELECT 1", "SET application_name = 'x'", "INSERT INTO t VALUES (1)"):
        with pytest.raises(PluginRejected):
            run(auth, s, sql)
    assert db.execute("SELECT count(*) FROM t").scalar() == 0


def test_the_client_cannot_bring_or_set_its_own_role(auth: Pipeline, db: h.Database) -> None:
    # The endpoint makes every -c option a session variable: the client's
    # own auth.role and tenant are overwritten by the key's.
    options = f"-c auth.role=admin -c tenant=victim -c auth.user=root {bearer_option(ALICE_KEY)}"
    s = session(db, options=options)
    assert s.variables["auth.role"] == "admin"  # before any statement
    run(auth, s, "SELECT 1")
    assert (s.variables["auth.user"], s.variables["auth.role"], s.variables["tenant"]) == (
        "alice",
        "analyst",
        "acme",
    )
    for sql in ("SET auth.role = 'admin'", "SET tenant TO 'globex'", "RESET auth.user"):
        with pytest.raises(WireError) as err:
            run(auth, s, sql)
        assert err.value.sqlstate == "42501"
    assert s.variables["auth.role"] == "analyst"


BROKEN_CONFIGS: list[tuple[str, Any, str]] = [
    ("empty", {}, "config.keys must be a table"),
    ("misspelt option", {**CONFIG, "key": {}}, 'no option "key"'),
    ("keys a list", {"keys": [sha(ALICE_KEY)]}, "config.keys must be a table"),
    ("no keys", {"keys": {}}, "config.keys is empty"),
    ("short hash", {"keys": {sha(ALICE_KEY)[:63]: {}}}, "not a SHA-256"),
    ("not hex", {"keys": {"g" * 64: {}}}, "not a SHA-256"),
    (
        "listed twice",
        {"keys": {sha(ALICE_KEY): {}, sha(ALICE_KEY).upper(): {"role": "admin"}}},
        "listed twice",
    ),
    ("entry not a table", {"keys": {sha(ALICE_KEY): "analyst"}}, "must be a table"),
    ("role not a string", {"keys": {sha(ALICE_KEY): {"role": 1}}}, "role must be a string"),
    ("misspelt entry", {"keys": {sha(ALICE_KEY): {"rol": "admin"}}}, 'no option "rol"'),
]


@pytest.mark.parametrize(
    ("config", "why"), [(c, w) for _, c, w in BROKEN_CONFIGS], ids=[n for n, _, _ in BROKEN_CONFIGS]
)
def test_a_broken_config_fails_every_statement_rather_than_allow_one(
    plugin_wasm: Path, db: h.Database, config: Any, why: str
) -> None:
    pipeline = pipeline_of(plugin_wasm, config)
    s = session(db, options=bearer_option(ALICE_KEY))
    for _ in range(2):
        with pytest.raises(PluginError) as err:
            run(pipeline, s, "SELECT 1")
        assert err.value.sqlstate == "38000"
        assert "pre-parse failed: user-error: auth_token: " in err.value.message
        assert why in err.value.message
    assert "auth.role" not in s.protected


def test_a_config_that_is_not_a_table_is_refused_when_it_loads(
    plugin_wasm: Path, tmp_path: Path, db: h.Database
) -> None:
    manifest = tmp_path / "plugins.toml"
    manifest.write_text(f'[[plugin]]\nname = "auth"\nfile = "{plugin_wasm}"\nconfig = "keys"\n')
    with pytest.raises(InvalidArgument, match="config must be a table"):
        read_manifest(manifest)
    with pytest.raises(ProcedureError, match="CONFIG is not JSON"):
        db.execute(f"CREATE PLUGIN auth CONFIG '{{\"keys\": ' AS $wasm$file://{plugin_wasm}$wasm$")
    # The table form loads; the keys are checked on the first statement (the
    # engine gives a plugin its config with each call, not at load).
    manifest.write_text(
        f'[[plugin]]\nname = "auth"\nfile = "{plugin_wasm}"\n'
        f'[plugin.config.keys."{sha(ALICE_KEY)}"]\nrole = "analyst"\n'
    )
    _, (spec,) = read_manifest(manifest)
    pipeline = Pipeline()
    pipeline.install(spec)
    s = session(db, options=bearer_option(ALICE_KEY))
    run(pipeline, s, "SELECT 1")
    assert s.variables["auth.role"] == "analyst"


def test_many_keys_and_a_reloaded_config(plugin_wasm: Path, db: h.Database) -> None:
    keys = {sha(f"key-{i}"): {"role": f"r{i}", "tenant": f"t{i}"} for i in range(3000)}
    pipeline = pipeline_of(plugin_wasm, {"keys": keys})
    s = session(db, authorization="Bearer key-2999")
    run(pipeline, s, "SELECT 1")
    assert (s.variables["auth.role"], s.variables["tenant"]) == ("r2999", "t2999")
    # A new config (a new plugin version) is read afresh, not served from the cache.
    pipeline.install(
        PluginSpec(
            name="auth",
            wasm=plugin_wasm.read_bytes(),
            origin=str(plugin_wasm),
            config={"keys": {sha("key-2999"): {"role": "revoked-elsewhere"}}},
        )
    )
    s = session(db, authorization="Bearer key-2999")
    run(pipeline, s, "SELECT 1")
    assert s.variables["auth.role"] == "revoked-elsewhere"
    with pytest.raises(PluginRejected):
        run(pipeline, session(db, authorization="Bearer key-1"), "SELECT 1")


# --- the hook called directly: requests the engine never sends --------------------------


@pytest.fixture(scope="module")
def hook_db(plugin_wasm: Path) -> Iterator[h.Database]:
    with h.Database.open(":memory:", limits=TEST_LIMITS) as database:
        for name, arg in (("pre_parse", "JSON"), ("pre_parse_raw", "BLOB")):
            # A JSON and a BLOB argument are both (ptr, len): the raw one
            # passes bytes that are not UTF-8.
            database.execute(
                f"CREATE PROCEDURE {name}(request {arg}) RETURNS JSON LANGUAGE wasm"
                f" USING EXPORT 'pre_parse' AS $wasm$file://{plugin_wasm.resolve()}$wasm$"
            )
        yield database


def request(
    connection: dict[str, str] | None = None, config: Any = CONFIG, sql: str = "SELECT 1"
) -> dict[str, Any]:
    return {
        "ctx": {
            "query-id": 7,
            "user": "app",
            "database": "shop",
            "application-name": "pytest",
            "connection": [[k, v] for k, v in (connection or {}).items()],
            "session": [],
            "tables": [],
            "config": config if isinstance(config, str) else json.dumps(config),
        },
        "sql": sql,
    }


def call(db: h.Database, req: Any) -> dict[str, Any]:
    text = req if isinstance(req, str) else json.dumps(req)
    answer = db.execute("SELECT pre_parse(?)", [text]).scalar()
    assert isinstance(answer, str)
    result: dict[str, Any] = json.loads(answer)
    return result


def allowed(db: h.Database) -> bool:
    """The hook still answers a good request (no instance was left broken)."""
    verdict = call(db, request({"authorization": ALICE_KEY}))
    return verdict == {
        "action": "allow",
        "set-session": [["auth.user", "alice"], ["auth.role", "analyst"], ["tenant", "acme"]],
    }


def test_the_verdicts_have_the_documented_json_form(hook_db: h.Database) -> None:
    assert allowed(hook_db)
    assert call(hook_db, request()) == {
        "action": {
            "reject": {
                "sqlstate": "28000",
                "message": "authentication required: connect with the startup parameter"
                " authorization (or options='-c authorization=Bearer\\ <key>')",
            }
        }
    }
    # Members a later engine adds are skipped; absent ones are empty.
    req = request({"authorization": ALICE_KEY})
    req["ctx"]["future"] = {"nested": [1, {"x": None}], "s": "\\u0000"}
    req["also-future"] = [True, False, None, 1.5e300, -0.0]
    assert call(hook_db, req)["action"] == "allow"
    # No context at all: no config, so no keys, which fails rather than allow.
    with pytest.raises(h.UserError) as err:
        call(hook_db, {"sql": "SELECT 1"})
    assert err.value.user_code == "PLUGIN_CONFIG"


def with_ctx(**members: Any) -> str:
    """A request whose context has these members instead (the config stays)."""
    req = request()
    req["ctx"].update(members)
    return json.dumps(req)


CTX = json.dumps(request()["ctx"])
# What the engine never sends (it checks that a JSON argument is JSON, so
# these go in as bytes, through pre_parse_raw): each is invalid-argument.
HOSTILE_REQUESTS: list[tuple[str, str, str]] = [
    ("not JSON", "{", "expected a string key"),
    ("empty", "", "expected an object"),
    ("not an object", "[]", "expected an object"),
    ("trailing data", json.dumps(request()) + " {}", "unexpected data"),
    ("no sql", json.dumps({"ctx": request()["ctx"]}), "no sql"),
    ("sql a number", json.dumps({**request(), "sql": 1}), "expected a string"),
    ("ctx a list", json.dumps({**request(), "ctx": []}), "expected an object"),
    ("query-id negative", with_ctx(**{"query-id": -1}), "u64"),
    ("user a number", with_ctx(user=1), "expected a string"),
    ("pairs of three", with_ctx(connection=[["a", "b", "c"]]), "ctx.connection"),
    ("pairs of one", with_ctx(connection=[["authorization"]]), "needs two members"),
    ("config a table", with_ctx(config={"keys": {}}), "ctx.config: expected a string"),
    ("deeply nested", '{"ctx": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}", "nested deeper"),
    ("deeply nested, unclosed", '{"x": ' + '{"a": ' * 50_000, "nested deeper"),
    ("escaped control characters", '{"ctx": ' + CTX + r', "sql": "a\nb\u0000\tc"}', ""),
    ("raw control character", '{"ctx": ' + CTX + ', "sql": "a\tb"}', "control character"),
    ("lone surrogate escape in a key", '{"\\ud800": 1, "ctx": ' + CTX + ', "sql": "x"}', ""),
    ("NaN and friends", '{"x": [NaN, -Infinity], "ctx": ' + CTX + ', "sql": "x"}', ""),
]


def call_raw(db: h.Database, text: str | bytes) -> dict[str, Any]:
    data = text.encode() if isinstance(text, str) else text
    answer = db.execute("SELECT pre_parse_raw(?)", [data]).scalar()
    assert isinstance(answer, str)
    result: dict[str, Any] = json.loads(answer)
    return result


@pytest.mark.parametrize(
    ("text", "why"),
    [(t, w) for _, t, w in HOSTILE_REQUESTS],
    ids=[n for n, _, _ in HOSTILE_REQUESTS],
)
def test_a_malformed_request_is_a_typed_error(hook_db: h.Database, text: str, why: str) -> None:
    if not why:  # decodes: a verdict, not an error
        assert call_raw(hook_db, text)["action"]["reject"]["sqlstate"] == "28000"
    else:
        with pytest.raises(InvalidArgument) as err:
            call_raw(hook_db, text)
        assert why in err.value.message and "the pre_parse request" in err.value.message
    assert allowed(hook_db)


def test_the_engine_checks_a_json_argument_first(hook_db: h.Database) -> None:
    for text in ("{", "[" * 100_000):
        with pytest.raises(InvalidArgument, match="argument request"):
            call(hook_db, text)


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b'{"sql": "\xff"}', 9),
        (b'{"sql": "\xc0\xaf"}', 9),  # an overlong "/"
        (b'{"sql": "\xed\xa0\x80"}', 9),  # a UTF-16 surrogate in UTF-8
        (b'{"sql": "\xf4\x90\x80\x80"}', 9),  # beyond U+10FFFF
        (b'{"sql": "ok\xe2\x82"}', 11),  # truncated
        (b"\x80", 0),
    ],
)
def test_a_request_that_is_not_utf8_is_a_typed_error(
    hook_db: h.Database, data: bytes, offset: int
) -> None:
    with pytest.raises(InvalidArgument, match=rf"request is not UTF-8 \(byte {offset}\)"):
        call_raw(hook_db, data)
    utf8 = request(sql="SELECT 'é😀'")
    assert call_raw(hook_db, json.dumps(utf8, ensure_ascii=False))["action"] != "allow"
    assert allowed(hook_db)


def test_a_hostile_config_is_a_typed_error(hook_db: h.Database) -> None:
    connection = {"authorization": ALICE_KEY}
    for config, why in (
        ('{"keys": ' + "[" * 10_000 + "]" * 10_000 + "}", "nested deeper"),
        ("[1, 2]", "not a JSON object"),
        ('{"keys": {}} x', "unexpected data"),
        ('{"keys": {"a": 1, "a": 2}}', "duplicate key"),
        ('{"keys": NaN}', "must be a table"),
    ):
        with pytest.raises(h.UserError) as err:
            call(hook_db, request(connection, config=config))
        assert err.value.user_code == "PLUGIN_CONFIG" and why in err.value.message
    # A config too large for the plugin's memory ends the call with a limit,
    # never a crash, and the next call gets a sound instance.
    huge = json.dumps({"keys": {sha(str(i)): {"role": "x" * 100} for i in range(40_000)}})
    with pytest.raises(h.ResourceLimitExceeded, match="memory limit of 16 MiB"):
        call(hook_db, request(connection, config=huge))
    assert allowed(hook_db)


def test_a_large_statement_is_read_and_refused(hook_db: h.Database) -> None:
    sql = "SELECT '" + "é" * 300_000 + "'"
    assert call(hook_db, request(sql=sql))["action"]["reject"]["sqlstate"] == "28000"
    assert call(hook_db, request({"authorization": ALICE_KEY}, sql=sql))["action"] == "allow"


# --- behind the wire endpoint -------------------------------------------------------------


@pytest.fixture
def server(plugin_wasm: Path, tmp_path: Path) -> Iterator[Server]:
    db = tmp_path / "shop.db"
    with h.Database.open(db) as setup:
        setup.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
        setup.execute("INSERT INTO notes VALUES (1, 'hello')")
    manifest = tmp_path / "plugins.toml"
    keys = "\n".join(
        f'[plugin.config.keys."{sha(k)}"]\n' + "".join(f'{n} = "{v}"\n' for n, v in e.items())
        for k, e in ENTRIES.items()
    )
    manifest.write_text(f'[[plugin]]\nname = "auth"\nfile = "{plugin_wasm}"\npriority = 0\n{keys}')
    pipeline = Pipeline()
    pipeline.watch(manifest)
    try:
        with Server(db, auth="trust", port=0, executor=pipeline.executor(execute_statement)) as srv:
            yield srv
    finally:
        pipeline.close()


def connect(server: Server, options: str = "") -> psycopg.Connection[Any]:
    host, port = server.address
    return psycopg.connect(
        host=host,
        port=port,
        user="app",
        dbname="shop",
        options=options,
        autocommit=True,
        connect_timeout=5,
    )


def test_psycopg_sessions_authenticate_with_a_bearer_key(server: Server) -> None:
    with connect(server, bearer_option(ALICE_KEY) + " -c tenant=globex") as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("hello",)]
        assert conn.execute("SHOW auth.role").fetchone() == ("analyst",)
        assert conn.execute("SHOW tenant").fetchone() == ("acme",)
        for sql in ("SET auth.role = 'admin'", "SET tenant = 'globex'", "RESET auth.user"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
        assert conn.execute("SHOW auth.role").fetchone() == ("analyst",)
    with connect(server, f"-c authorization={ROBOT_KEY}") as conn:
        assert conn.execute("SHOW auth.role").fetchone() == ("admin",)
    for options in ("", "-c authorization=Bearer\\ wrong", f"-c authorization=Basic\\ {ALICE_KEY}"):
        with (
            connect(server, options) as conn,
            pytest.raises(psycopg.errors.InvalidAuthorizationSpecification),
        ):
            conn.execute("SELECT body FROM notes")


def test_psql_authenticates_with_a_bearer_key(server: Server) -> None:
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is not installed (apt-get install postgresql-client)")
    host, port = server.address
    for options, ok in (
        # In a conninfo string the backslash that keeps the space is itself escaped.
        (f"-c authorization=Bearer\\\\ {ALICE_KEY}", True),
        (f"-c authorization={ALICE_KEY}", True),
        ("-c authorization=nope", False),
    ):
        dsn = f"host={host} port={port} user=app dbname=shop options='{options}'"
        done = subprocess.run(
            [psql, dsn, "-X", "-A", "-t", "-c", "SHOW auth.role"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if ok:
            assert (done.returncode, done.stdout.strip()) == (0, "analyst"), done.stderr
        else:
            assert done.returncode != 0 and "invalid API key" in done.stderr


# --- the SDK ------------------------------------------------------------------------------

# Procedures over the SDK's parts, and its four hooks (as the Rust SDK's
# test writes them: count statements per user, filter orders by the
# session's tenant, refuse i64::MAX, replace the rows).
HARNESS = """
import { Json, Value, raise } from "heliosdb";
import {
  Context, JsonValue, JsonWriter, Sha256, Verdict, addPredicate, allow, countInWindow, formatReal,
  handlePostExecution, handlePostParse, handlePreExecution, handlePreParse, kind, lastJsonError,
  lastValueError, optionSettings, parseJson, parseReal, parseValue, reject, replaceRows,
  rewriteAst, sha256, sha256Hex, tables, toHex, valueToJson,
} from "heliosdb/plugin";

export function json_round_trip(text: string, depth: i32): string {
  const v = parseJson(text, depth);
  return v === null ? "error: " + lastJsonError() : v.toJson();
}

export function sha256_hex(data: Uint8Array, chunk: i32): string {
  if (chunk <= 0) return toHex(sha256(data));
  const h = new Sha256();
  for (let i = 0; i < data.length; i += chunk) h.update(data.subarray(i, min(i + chunk, data.length)));
  return toHex(h.digest());
}

export function sha256_text(text: string): string {
  return sha256Hex(text);
}

export function parse_real(text: string): f64 {
  return parseReal(text);
}

export function format_real(x: f64): string {
  return formatReal(x);
}

export function value_round_trip(text: string): string {
  const v = parseValue(text);
  return v !== null ? valueToJson(v) : "error: " + lastValueError();
}

export function option_settings(text: string): Json {
  const w = new JsonWriter();
  const pairs = optionSettings(text);
  w.raw("[");
  for (let i = 0; i < pairs.length; i++) {
    if (i > 0) w.raw(",");
    w.raw("[").string(pairs[i].name).raw(",").string(pairs[i].value).raw("]");
  }
  return w.raw("]").finish();
}

// {"ast", "table"?, "column"?, "value"?} -> {"tables", "count"?, "tree"?}
export function ast_case(request: Json): Json {
  const c = parseJson(request)!;
  const ast = c.get("ast")!;
  const names = tables(ast);
  const out = JsonValue.object();
  const list = JsonValue.array();
  for (let i = 0; i < names.length; i++) list.push(JsonValue.string(names[i]));
  out.set("tables", list);
  const table = c.get("table");
  if (table !== null) {
    const value = c.get("value")!;
    const v = value.isString ? Value.text(value.text) : Value.int(value.asI64());
    const n = addPredicate(ast, table.text, c.get("column")!.text, v);
    out.set("count", JsonValue.integer(n)).set("tree", ast);
  }
  return out.toJson();
}

export function pre_parse(request: Uint8Array): Json {
  return handlePreParse(request, countStatements);
}

function countStatements(ctx: Context, sql: string): Verdict {
  const n = countInWindow(ctx.user, 60_000);
  if (n > 3) return reject("53400", n.toString() + " statements (" + sql + ")");
  return allow().setSession("rate.seen", n.toString());
}

export function post_parse(request: Uint8Array): Json {
  return handlePostParse(request, filterOrders);
}

function filterOrders(ctx: Context, ast: JsonValue): Verdict {
  const tenant = ctx.session("tenant");
  if (tenant === null) return kind(ast) == "select" ? allow() : reject("42501", "no tenant");
  if (addPredicate(ast, "orders", "tenant_id", Value.text(tenant)) == 0) return allow();
  return rewriteAst(ast);
}

export function pre_execution(request: Uint8Array): Json {
  return handlePreExecution(request, checkParams);
}

function checkParams(ctx: Context, sql: string, params: Value[]): Verdict {
  if (params.length > 0 && params[0].kind == 1 && params[0].int == i64.MAX_VALUE) raise("TOO_BIG", "no");
  if (params.length > 1) return reject("22023", valueToJson(params[1]));
  return allow();
}

export function post_execution(request: Uint8Array): Json {
  return handlePostExecution(request, describeRows);
}

function describeRows(ctx: Context, columns: string[], rows: Value[][]): Verdict {
  if (columns[0] == "wide") {
    const bad: Value[][] = [[Value.null()]];
    return replaceRows(bad);
  }
  if (columns[0] == "same") return replaceRows(rows);
  for (let i = 0; i < rows.length; i++) rows[i][0] = Value.text(columns.length.toString() + " columns");
  return replaceRows(rows);
}
"""

PROCEDURES = {
    "json_round_trip": "(text TEXT, depth INTEGER) RETURNS TEXT",
    "sha256_hex": "(data BLOB, chunk INTEGER) RETURNS TEXT",
    "sha256_text": "(text TEXT) RETURNS TEXT",
    "parse_real": "(text TEXT) RETURNS DOUBLE",
    "format_real": "(x DOUBLE) RETURNS TEXT",
    "value_round_trip": "(text TEXT) RETURNS TEXT",
    "option_settings": "(text TEXT) RETURNS JSON",
    "ast_case": "(request JSON) RETURNS JSON",
}


@pytest.fixture(scope="session")
def harness_wasm() -> Path:
    # Kept in the build folder and written only when it changed, so a second
    # run reuses the module (the build skips what is up to date).
    project = BUILD / "test-projects" / "as_plugin_sdk"
    source = project / "assembly" / "index.ts"
    if not source.exists() or source.read_text() != HARNESS:
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(HARNESS)
    return build(project, project / "build", name="as_plugin_sdk")


@pytest.fixture(scope="module")
def sdk(harness_wasm: Path) -> Iterator[h.Database]:
    limits = h.Limits(timeout_seconds=20.0, fuel=5_000_000_000)
    with h.Database.open(":memory:", limits=limits) as database:
        for name, signature in PROCEDURES.items():
            database.execute(
                f"CREATE PROCEDURE {name}{signature} LANGUAGE wasm USING EXPORT '{name}'"
                f" AS $wasm$file://{harness_wasm.resolve()}$wasm$"
            )
        yield database


def q(db: h.Database, sql: str, *params: Any) -> Any:
    return db.execute(sql, list(params)).scalar()


def round_trip(db: h.Database, text: str, depth: int = 512) -> str:
    out = q(db, "SELECT json_round_trip(?, ?)", text, depth)
    assert isinstance(out, str)
    return out


VALID_JSON = [
    "0",
    "-0",
    "  7  ",
    "-12.50e+03",
    "1E-7",
    "123456789012345678901234567890",
    '"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t"',
    '"\\u00e9\\ud83d\\ude00 é😀 \\u2028"',
    "[]",
    "{}",
    '[1, [2, [3, {"a": [], "b": {}}]], null, true, false]',
    '{"z": 1, "a": 2, "m": {"node": "x", "this": "y"}}',
    "NaN",
    "Infinity",
    "[-Infinity, 1e400]",
]
INVALID_JSON = [
    ("", "unexpected end"),
    ("[1,]", "expected a JSON value"),
    ("{,}", "expected a string key"),
    ('{"a" 1}', "expected :"),
    ('{"a": 1,}', "expected a string key"),
    ('{"a": 1 "b": 2}', "expected , or }"),
    ("[1 2]", "expected , or ]"),
    ('{"a": 1, "a": 2}', "duplicate key"),
    ("01", "malformed number"),
    ("1.", "digits after the decimal point"),
    ("1e+", "digits in the exponent"),
    ("+1", "expected a JSON value"),
    (".5", "expected a JSON value"),
    ("0x10", "unexpected data"),
    ('"a\tb"', "control character"),
    ('"\\x"', "invalid escape"),
    ('"\\u12g4"', "invalid \\u escape"),
    ('"abc', "unterminated string"),
    ("tru", "expected a JSON value"),
    ("nan", "expected a JSON value"),
    ("// c\n1", "expected a JSON value"),
    ("[1] [2]", "unexpected data"),
    ("'a'", "expected a JSON value"),
]


def test_the_json_reader_reads_json(sdk: h.Database) -> None:
    for text in VALID_JSON:
        out = round_trip(sdk, text)
        assert not out.startswith("error"), (text, out)
        if "NaN" not in text:
            assert json.loads(out) == json.loads(text), text
    # Numbers keep their text, digit for digit; objects their order.
    assert round_trip(sdk, "[123456789012345678901234567890, -12.50e+03]") == (
        "[123456789012345678901234567890,-12.50e+03]"
    )
    assert round_trip(sdk, '{"z": 1, "a": 2}') == '{"z":1,"a":2}'


@pytest.mark.parametrize(("text", "why"), INVALID_JSON, ids=[t for t, _ in INVALID_JSON])
def test_the_json_reader_refuses_anything_else(sdk: h.Database, text: str, why: str) -> None:
    out = round_trip(sdk, text)
    assert out.startswith("error: ") and why in out and "(at offset " in out


def test_json_nesting_is_bounded_and_costs_no_stack(sdk: h.Database) -> None:
    assert round_trip(sdk, "[" * 512 + "]" * 512) == "[" * 512 + "]" * 512
    assert "nested deeper than 512 levels" in round_trip(sdk, "[" * 513 + "]" * 513)
    assert round_trip(sdk, "[" * 3 + "]" * 3, 3) == "[[[]]]"
    assert "nested deeper than 2 levels" in round_trip(sdk, "[[[]]]", 2)
    # Far beyond any stack: a bound, not a trap.
    for text in ("[" * 1_000_000, '{"a":' * 300_000, "[" * 100_000 + "]" * 100_000):
        assert "nested deeper" in round_trip(sdk, text)
    deep = "[" * 20_000 + "]" * 20_000
    assert round_trip(sdk, deep, 20_000) == deep  # the writer does not recurse either


def test_json_strings_are_escaped_and_never_ill_formed(sdk: h.Database) -> None:
    rng = random.Random(14)
    alphabet = ['"', "\\", "/", "\n", "\x00", "\x1f", "\x7f", "é", "😀", "\u2028", "a", " "]
    for _ in range(200):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        for text in (json.dumps(s), json.dumps(s, ensure_ascii=False)):
            assert json.loads(round_trip(sdk, text)) == s
    # Lone surrogates are not text: U+FFFD, as Go's encoding/json reads them.
    assert json.loads(round_trip(sdk, '["\\ud800", "\\udc00x", "\\ud800\\u0041"]')) == [
        "\ufffd",
        "\ufffdx",
        "\ufffdA",
    ]
    assert round_trip(sdk, '"\\u0001\\u2029"') == '"\\u0001\\u2029"'


def test_reals_are_read_correctly_rounded_and_written_to_read_back(sdk: h.Database) -> None:
    rng = random.Random(1)
    texts = [
        "0.1",
        "0.30000000000000004",
        "9007199254740993",
        "2.2250738585072011e-308",  # the classic slow case
        "2.2250738585072012e-308",
        "4.9406564584124654e-324",
        "2.4703282292062327e-324",  # halfway to the smallest subnormal: to even
        "2.4703282292062328e-324",
        "1.7976931348623157e308",
        "1.7976931348623159e308",  # rounds to infinity
        "1e23",
        "8.98846567431158e307",
        "0." + "0" * 400 + "1",
        "1" + "0" * 400,
        "1." + "0" * 900 + "1",  # digits beyond the 800 kept
        "-0.0",
    ]
    for _ in range(800):
        x = struct.unpack("<d", rng.randbytes(8))[0]
        if math.isfinite(x):
            texts += [repr(x), f"{x:.25e}", f"{x:.3e}"]
    for text in texts:
        got = q(sdk, "SELECT parse_real(?)", text)
        assert struct.pack("<d", got) == struct.pack("<d", float(text)), text
    for x in [float(t) for t in texts[:400]] + [2.0, -0.0, 1e21, 5e-324, 1e300]:
        written = q(sdk, "SELECT format_real(?)", x)
        assert struct.pack("<d", float(written)) == struct.pack("<d", x)
        assert "." in written or "e" in written or "inf" in written.lower()
    assert [q(sdk, "SELECT format_real(?)", x) for x in (math.inf, -math.inf)] == [
        "Infinity",
        "-Infinity",
    ]


def test_sql_values_cross_exactly(sdk: h.Database) -> None:
    same = [
        '"null"',
        '{"integer":-9223372036854775808}',
        '{"integer":9223372036854775807}',
        '{"real":0.1}',
        '{"real":-Infinity}',
        '{"text":"a\\"b é"}',
        '{"blob":[0,255]}',
        '{"blob":[]}',
        '{"boolean":false}',
    ]
    for text in same:
        assert q(sdk, "SELECT value_round_trip(?)", text) == text
    assert q(sdk, "SELECT value_round_trip(?)", '{"real": 2}') == '{"real":2.0}'
    assert q(sdk, "SELECT value_round_trip(?)", '{"real": NaN}') == '"null"'
    for text, why in (
        ('{"integer": 9223372036854775808}', "within i64"),
        ('{"integer": 1.5}', "within i64"),
        ('{"blob": [256]}', "not a byte"),
        ('{"integer": 1, "text": "x"}', "exactly one member"),
        ("{}", "empty object"),
        ('"nul"', 'must be "null"'),
        ('{"date": 1}', 'unknown case "date"'),
        ("[1]", "expected an object"),
    ):
        out = q(sdk, "SELECT value_round_trip(?)", text)
        assert out.startswith("error: ") and why in out, (text, out)


FIPS_VECTORS = [
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    ),
    (
        b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
        b"lmnopqrsmnopqrstnopqrstu",
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
    ),
    (b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
]


def test_sha256_matches_the_fips_vectors_and_hashlib(sdk: h.Database) -> None:
    for data, digest in FIPS_VECTORS:
        for chunk in (0, 1000, 64, 63) if len(data) > 100 else (0, 1, 7, 64):
            assert q(sdk, "SELECT sha256_hex(?, ?)", data, chunk) == digest
    rng = random.Random(256)
    for n in [*range(130), 1000, 4095, 65537]:
        data = rng.randbytes(n)
        assert q(sdk, "SELECT sha256_hex(?, ?)", data, rng.choice([0, 1, 13, 64])) == (
            hashlib.sha256(data).hexdigest()
        )
    for text in ("", "abc", "é😀", "key with spaces", "\u2028" * 100):
        assert q(sdk, "SELECT sha256_text(?)", text) == sha(text)


def test_options_are_split_as_the_server_splits_them(sdk: h.Database) -> None:
    for options in (
        "",
        "-c authorization=Bearer\\ abc",
        "-cauthorization=x  -c   a=1\t-c b=2",
        "--client-encoding=UTF8 --x-y=1",
        "-c a\\\\b=c\\ d -c e=",
        "-c noequals -c -c f=g -c",
        "--flag h=i -c j=k\\",
        "-c x=é😀",
    ):
        got = json.loads(q(sdk, "SELECT option_settings(?)", options))
        assert [tuple(p) for p in got] == _options(options), options


def test_the_ast_helpers_match_the_shared_cases(sdk: h.Database) -> None:
    cases = json.loads(AST_CASES.read_text())
    checked = 0
    for section in ("tables", "add_predicate", "reference"):
        for case in cases[section]:
            req: dict[str, Any] = {"ast": case["ast"]}
            if section != "tables":
                req |= {k: case[k] for k in ("table", "column", "value")}
            out = json.loads(q(sdk, "SELECT ast_case(?)", json.dumps(req)))
            assert out["tables"] == case["tables"], case["sql"]
            if section != "tables":
                assert out["count"] == case["count"], case["sql"]
                assert out["tree"] == case["want"], (case["sql"], case["want_sql"])
            checked += 1
    assert checked > 300


def test_the_sdks_hooks_through_the_pipeline(harness_wasm: Path, db: h.Database) -> None:
    pipeline = Pipeline()
    pipeline.install(
        PluginSpec(name="sdk-hooks", wasm=harness_wasm.read_bytes(), origin=str(harness_wasm))
    )
    db.execute("CREATE TABLE orders(id INTEGER, tenant_id TEXT, total REAL)")
    db.execute("INSERT INTO orders VALUES (1, 'acme', 10.0), (2, 'globex', 20.0)")
    s = session(db)
    s.variables["tenant"] = "acme"
    # pre-parse counts (count_in_window), post-parse filters, post-execution
    # replaces the first column.
    assert run(pipeline, s, "SELECT id, total FROM orders ORDER BY id") == [("2 columns", 10.0)]
    assert s.variables["rate.seen"] == "1" and "rate.seen" in s.protected
    # Only i64::MAX, read exactly, makes the pre-execution hook fail; a
    # second parameter comes back in the rejection in its JSON form.
    with pytest.raises(PluginError, match="pre-execution failed: user-error: no"):
        run(pipeline, s, "SELECT ?", 2**63 - 1)
    with pytest.raises(PluginRejected, match=r'\{"real":-2\.5e-7\}') as rejected:
        run(pipeline, s, "SELECT ?, ?", 2**63 - 2, -2.5e-7)
    assert rejected.value.sqlstate == "22023"
    with pytest.raises(PluginRejected, match=r"4 statements \(SELECT 4\)") as err:
        run(pipeline, s, "SELECT 4")
    assert err.value.sqlstate == "53400"


def test_the_sdks_verdict_checks_and_value_forms(harness_wasm: Path, db: h.Database) -> None:
    pipeline = Pipeline()
    pipeline.install(
        PluginSpec(
            name="sdk-hooks",
            wasm=harness_wasm.read_bytes(),
            origin=str(harness_wasm),
            hooks=frozenset({"post-execution"}),
        )
    )
    s = session(db)
    with pytest.raises(
        PluginError, match="user-error: post-execution: replaced row 0 has 1 values"
    ):
        run(pipeline, s, "SELECT 1 AS wide, 2")
    row = (2**63 - 1, -(2**63), 0.1, math.inf, 'é😀\u2028"', b"\x00\xff", None)
    marks = ", ".join("?" * len(row))
    assert run(pipeline, s, f"SELECT 'x' AS same, {marks}", *row) == [("x", *row)]
