"""The query-hook pipeline (heliosdb_wasm.plugins) with scripted Basic-ABI plugins.

Each test plugin is generated WAT whose hooks answer a fixed verdict (or
echo their request into a table of the test, or trap), so the pipeline's
ordering, rewrites, rejections, session variables, failures, hot reload,
rollback, A/B routing and metrics are tested without any guest toolchain.
The example plugins (tests/plugins/) test real guest logic end to end.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

import heliosdb_wasm as h
from conftest import PLUGIN_PRELUDE, allow, reject, run_sql, scripted, spec
from conftest import PipelineSession as Session
from heliosdb_wasm import sqlast
from heliosdb_wasm.errors import PluginError, PluginRejected
from heliosdb_wasm.plugins.manifest import PipelineSettings, PluginSpec, read_manifest
from heliosdb_wasm.plugins.pipeline import Pipeline


@pytest.fixture
def session() -> Iterator[Session]:
    with h.Database.open(":memory:") as db:
        db.execute(
            "CREATE TABLE orders(id INTEGER PRIMARY KEY, tenant_id TEXT, ssn TEXT);"
            "INSERT INTO orders VALUES (1, 'a', '123-45-6789'), (2, 'b', '987-65-4321');"
        )
        yield Session(db)


def test_no_plugins_runs_the_statement_unchanged(session: Session) -> None:
    result = Pipeline().run(session, "SELECT count(*) FROM orders", [], run_sql)  # type: ignore[arg-type]
    assert result.rows == [(2,)]


def test_rejection_carries_the_plugins_sqlstate_and_names_it(session: Session) -> None:
    pipeline = Pipeline()
    pipeline.install(spec("gate", {"pre-parse": reject("28000", "who are you?")}))
    with pytest.raises(PluginRejected) as err:
        pipeline.run(session, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
    assert (err.value.sqlstate, err.value.message, err.value.procedure) == (
        "28000",
        "who are you?",
        "gate",
    )


def test_priority_orders_plugins_and_rewrites_chain(session: Session) -> None:
    pipeline = Pipeline()
    where = sqlast.dumps(sqlast.parse("SELECT id FROM orders WHERE tenant_id = 'a'")[0])
    # "second" would reject the original text; it sees the first one's rewrite.
    pipeline.install(
        spec("second", {"post-parse": allow(seen="yes")}, priority=20),
    )
    pipeline.install(
        spec(
            "first",
            {
                "pre-parse": {"action": {"rewrite": "SELECT id FROM orders"}},
                "post-parse": {"action": {"rewrite": where}},
            },
            priority=10,
        )
    )
    result = pipeline.run(session, "SELECT nonsense", [], run_sql)  # type: ignore[arg-type]
    assert result.rows == [(1,)]
    assert session.variables == {"seen": "yes"}
    assert [p["name"] for p in pipeline.plugins()] == ["first", "second"]


def test_set_session_is_seen_by_later_plugins_and_protected(session: Session) -> None:
    pipeline = Pipeline()
    pipeline.install(spec("auth", {"pre-parse": allow(**{"auth.role": "analyst"})}))
    pipeline.run(session, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
    assert session.variables["auth.role"] == "analyst"
    assert "auth.role" in session.protected


def test_post_execution_replaces_rows(session: Session) -> None:
    masked = [[{"integer": 1}, {"text": "a"}, {"text": "***"}], [{"integer": 2}, "null", "null"]]
    pipeline = Pipeline()
    pipeline.install(spec("mask", {"post-execution": {"action": {"replace-rows": masked}}}))
    result = pipeline.run(session, "SELECT * FROM orders ORDER BY id", [], run_sql)  # type: ignore[arg-type]
    assert result.rows == [(1, "a", "***"), (2, None, None)]


@pytest.mark.parametrize(
    "answers",
    [
        pytest.param(
            {"pre-execution": {"action": {"rewrite": "SELECT 2"}}}, id="rewrite-at-pre-execution"
        ),
        pytest.param(
            {"post-execution": {"action": {"replace-rows": [[{"integer": 1}]]}}}, id="wrong-width"
        ),
        pytest.param({"pre-parse": {"action": "maybe"}}, id="unknown-action"),
        pytest.param({"pre-parse": {"verdict": "allow"}}, id="no-action"),
        pytest.param({"post-parse": {"action": {"rewrite": '{"node": "nonsense"}'}}}, id="bad-ast"),
        pytest.param(
            {"post-execution": {"action": {"replace-rows": [[{"date": 1}]]}}}, id="bad-value"
        ),
        pytest.param({"pre-parse": "trap"}, id="trap"),
    ],
)
def test_a_failing_plugin_fails_the_statement(session: Session, answers: dict[str, Any]) -> None:
    pipeline = Pipeline()
    pipeline.install(spec("broken", answers))
    writes_before = session.db.execute("SELECT count(*) FROM orders").rows
    with pytest.raises(PluginError) as err:
        pipeline.run(session, "SELECT * FROM orders", [], run_sql)  # type: ignore[arg-type]
    assert err.value.procedure == "broken" and err.value.sqlstate == "38000"
    assert session.db.execute("SELECT count(*) FROM orders").rows == writes_before


def test_unparsable_statement_is_refused_when_a_post_parse_plugin_runs(session: Session) -> None:
    pipeline = Pipeline()
    pipeline.install(spec("tenant", {"post-parse": allow()}))
    with pytest.raises(h.ProcedureError) as err:
        pipeline.run(session, "SELEKT 1", [], run_sql)  # type: ignore[arg-type]
    assert getattr(err.value, "sqlstate", None) == "42601"
    with pytest.raises(PluginRejected):
        pipeline.run(session, "SELECT 1; SELECT 2", [], run_sql)  # type: ignore[arg-type]


def test_hooks_the_module_lacks_are_refused_at_install() -> None:
    with pytest.raises(h.InvalidArgument, match="does not export hook"):
        Pipeline().install(spec("x", {"pre-parse": allow()}, hooks=frozenset({"post-parse"})))
    with pytest.raises(h.InvalidArgument, match="exports no hook"):
        Pipeline().install(spec("x", {}))


def test_disabled_plugins_do_not_run(session: Session) -> None:
    pipeline = Pipeline()
    pipeline.install(spec("gate", {"pre-parse": reject("28000", "no")}, enabled=False))
    assert pipeline.run(session, "SELECT 1", [], run_sql).rows == [(1,)]  # type: ignore[arg-type]


def test_a_reload_swaps_atomically_and_in_flight_statements_keep_their_version(
    session: Session,
) -> None:
    pipeline = Pipeline()
    pipeline.install(spec("gate", {"pre-parse": allow(v="1")}))
    seen: list[str] = []

    def slow(s: Any, sql: str, params: Any) -> h.Result:
        # The new version lands while this statement runs; its post-execution
        # must still be the old version's.
        pipeline.install(spec("gate", {"pre-parse": allow(v="2")}))
        seen.append(s.variables["v"])
        return run_sql(s, sql, params)

    pipeline.run(session, "SELECT 1", [], slow)  # type: ignore[arg-type]
    pipeline.run(session, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
    assert seen == ["1"] and session.variables["v"] == "2"
    assert pipeline.plugins()[0]["previous"] is not None


def test_reloads_do_not_pile_up_hook_calls_on_a_connection(session: Session) -> None:
    # Each version's hook is a call the core runs on this connection, with
    # its pool: a reloaded plugin's old versions let theirs go.
    pipeline = Pipeline()
    for v in range(6):
        pipeline.install(spec("gate", {"pre-parse": allow(v=str(v))}))
        pipeline.run(session, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
        assert session.variables["v"] == str(v)
    (versions,) = session.db.session.hosted.values()
    assert sorted(versions) == [5, 6]  # the current and the one before


def test_a_failing_new_version_is_rolled_back(session: Session) -> None:
    pipeline = Pipeline(settings=PipelineSettings(max_error_rate=0.2, min_calls=5))
    pipeline.install(spec("gate", {"pre-parse": allow(v="good")}))
    pipeline.install(spec("gate", {"pre-parse": "trap"}))
    failures = 0
    for _ in range(20):
        try:
            pipeline.run(session, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
        except PluginError:
            failures += 1
    assert failures == 5  # min_calls, then the old version serves again
    assert session.variables["v"] == "good"
    assert 'event="rollback"' in pipeline.metrics.render()


def test_ab_routes_a_stable_share_of_sessions_to_the_candidate(session: Session) -> None:
    pipeline = Pipeline()
    base = spec("gate", {"pre-parse": allow(v="stable")})
    cand = scripted({"pre-parse": allow(v="candidate")})
    pipeline.install(PluginSpec(**{**base.__dict__, "candidate": cand, "candidate_percent": 30}))
    seen: dict[int, str] = {}
    for pid in range(400):
        s = Session(session.db, process_id=pid)
        pipeline.run(s, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
        pipeline.run(s, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
        seen[pid] = s.variables["v"]
    share = sum(v == "candidate" for v in seen.values()) / len(seen)
    assert 0.2 < share < 0.4
    again = Session(session.db, process_id=7)
    pipeline.run(again, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
    assert again.variables["v"] == seen[7]


def test_metrics_render_prometheus_text(session: Session) -> None:
    pipeline = Pipeline()
    pipeline.install(spec("gate", {"pre-parse": allow(), "post-execution": allow()}))
    for _ in range(3):
        pipeline.run(session, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
    text = pipeline.metrics.render()
    assert (
        'heliosdb_plugin_calls_total{plugin="gate",version="1",stage="pre-parse",outcome="allow"} 3'
        in text
    )
    assert 'heliosdb_queries_total{outcome="ok"} 3' in text
    assert (
        'heliosdb_plugin_duration_seconds_bucket{plugin="gate",version="1",stage="pre-parse",le="+Inf"} 3'
        in text
    )


def test_manifest_reload_follows_the_file_and_keeps_plugins_on_a_bad_edit(
    tmp_path: Path, session: Session
) -> None:
    (tmp_path / "one.wasm").write_bytes(scripted({"pre-parse": allow(v="one")}))
    (tmp_path / "two.wasm").write_bytes(scripted({"pre-parse": allow(v="two")}))
    manifest = tmp_path / "plugins.toml"
    manifest.write_text(
        '[pipeline]\nreload_interval = 60\n[[plugin]]\nname = "gate"\nfile = "one.wasm"\n'
        '[plugin.config]\nk = "v"\n'
    )
    pipeline = Pipeline()
    pipeline.watch(manifest)
    try:
        pipeline.run(session, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
        assert session.variables["v"] == "one"
        manifest.write_text(manifest.read_text().replace("one.wasm", "two.wasm"))
        assert pipeline.reload_if_changed()
        pipeline.run(session, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
        assert session.variables["v"] == "two"
        manifest.write_text("[[plugin]]\nname = 'gate'\nfile = 'missing.wasm'\n")
        assert not pipeline.reload_if_changed()
        pipeline.run(session, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
        assert session.variables["v"] == "two"
    finally:
        pipeline.close()


def _two_plugin_manifest(tmp_path: Path, first: str, second: str, settle_time: float = 0.1) -> Path:
    manifest = tmp_path / "plugins.toml"
    manifest.write_text(
        f"[pipeline]\nreload_interval = 60\nsettle_time = {settle_time}\n"
        f'[[plugin]]\nname = "first"\nfile = "{first}"\n'
        f'[[plugin]]\nname = "second"\nfile = "{second}"\n'
    )
    return manifest


def test_a_manifest_caught_half_written_is_not_applied(tmp_path: Path, session: Session) -> None:
    # write_text and most editors truncate, then write: read in between, the
    # manifest is valid TOML with no plugins, and applying it would switch
    # every plugin off (tenant isolation among them) until the next check.
    (tmp_path / "one.wasm").write_bytes(scripted({"pre-parse": allow(v="one")}))
    (tmp_path / "two.wasm").write_bytes(scripted({"pre-parse": allow(w="two")}))
    # A settle time long enough that a busy machine cannot stall this thread
    # between the truncation and the write for as long.
    manifest = _two_plugin_manifest(tmp_path, "one.wasm", "two.wasm", settle_time=0.5)
    text = manifest.read_text()
    pipeline = Pipeline()
    pipeline.watch(manifest)
    try:
        for round_ in range(3):
            with manifest.open("r+") as f:
                f.truncate(0)
                f.flush()
                checker = threading.Thread(target=pipeline.reload_if_changed)
                checker.start()
                checker.join(timeout=0.05)  # it sees the empty file
                f.write(f"{text}# edit {round_}\n")
            checker.join()
            assert [p["name"] for p in pipeline.plugins()] == ["first", "second"]
            session.variables.clear()
            pipeline.run(session, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
            assert session.variables == {"v": "one", "w": "two"}
    finally:
        pipeline.close()


def test_a_reload_with_one_bad_plugin_changes_none(tmp_path: Path, session: Session) -> None:
    (tmp_path / "one.wasm").write_bytes(scripted({"pre-parse": allow(v="one")}))
    (tmp_path / "two.wasm").write_bytes(scripted({"pre-parse": allow(v="two")}))
    manifest = _two_plugin_manifest(tmp_path, "one.wasm", "one.wasm")
    pipeline = Pipeline()
    pipeline.watch(manifest)
    try:
        before = pipeline.plugins()
        # The first plugin gets a new build, the second a file that is not
        # WebAssembly (yet): neither changes, not even the first.
        (tmp_path / "late.wasm").write_bytes(b"\0asm partial")
        _two_plugin_manifest(tmp_path, "two.wasm", "late.wasm")
        assert not pipeline.reload_if_changed()
        assert pipeline.plugins() == before
        pipeline.run(session, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
        assert session.variables == {"v": "one"}
        # The file the manifest names is watched although it did not load:
        # once it is complete, the whole manifest applies.
        (tmp_path / "late.wasm").write_bytes(scripted({"pre-parse": allow(w="late")}))
        assert pipeline.reload_if_changed()
        session.variables.clear()
        pipeline.run(session, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
        assert session.variables == {"v": "two", "w": "late"}
    finally:
        pipeline.close()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[plugin]]\nname = 'x'\n", "file is required"),
        ("[[plugin]]\nname = 'X!'\nfile = 'a.wasm'\n", "name must be"),
        (
            "[[plugin]]\nname = 'x'\nfile = 'a.wasm'\nhooks = ['pre-parse', 'later']\n",
            "hooks must be",
        ),
        ("[[plugin]]\nname = 'x'\nfile = 'a.wasm'\ncolour = 1\n", "unknown key"),
        ("[[plugin]]\nname = 'x'\nfile = 'a.wasm'\ncapabilities = ['fly:away']\n", "x"),
        ("[[plugin]]\nname = 'x'\nfile = 'a.wasm'\nlimits = { speed = 1 }\n", "unknown limit"),
        (
            "[[plugin]]\nname = 'x'\nfile = 'a.wasm'\n[[plugin]]\nname = 'x'\nfile = 'a.wasm'\n",
            "twice",
        ),
        ("[pipeline]\nfast = true\n", "pipeline"),
        ("[pipeline]\nreload_interval = 'soon'\n", "reload_interval must be a number"),
        ("[pipeline]\nreload_interval = 0\n", "reload_interval must be at least"),
        ("[pipeline]\nsettle_time = -1\n", "settle_time must be between"),
        ("[pipeline]\nmax_error_rate = 1.5\n", "max_error_rate must be between"),
        ("[pipeline]\nmin_calls = 2.5\n", "min_calls must be an integer"),
        ("[pipeline]\nprobation_calls = true\n", "probation_calls must be an integer"),
        ("[[plugin]\n", "plugins.toml"),
    ],
)
def test_bad_manifests_are_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "a.wasm").write_bytes(scripted({"pre-parse": allow()}))
    manifest = tmp_path / "plugins.toml"
    manifest.write_text(text)
    with pytest.raises(h.InvalidArgument, match=message):
        read_manifest(manifest)


def test_a_manifest_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "plugins.toml"
    manifest.write_bytes(b"[[plugin]]\nname = '\xff'\n")
    with pytest.raises(h.InvalidArgument, match="invalid start byte"):
        read_manifest(manifest)


def test_concurrent_statements_share_the_pool_safely(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    with h.Database.open(path) as db:
        db.execute("CREATE TABLE t(x)")
    pipeline = Pipeline()
    pipeline.install(spec("gate", {"pre-parse": allow(), "post-execution": allow()}))
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with h.Database.open(path) as db:
                s = Session(db)
                for _ in range(50):
                    pipeline.run(s, "SELECT count(*) FROM t", [], run_sql)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert pipeline.metrics.calls("gate") == 400


COUNTER_WAT = """
(module
  (import "heliosdb" "heliosdb_return" (func $return (param i32 i32 i32)))
  (import "heliosdb" "count_in_window" (func $count (param i32 i32 i64) (result i64)))
  (memory (export "memory") 1)
  (func (export "heliosdb_abi_version") (result i32) (i32.const 1))
  (global $heap (mut i32) (i32.const 32768))
  (func (export "heliosdb_alloc") (param $size i32) (param $align i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $ptr))
  (func (export "heliosdb_free") (param i32 i32 i32) (global.set $heap (i32.const 32768)))
  (data (i32.const 16) "user:alice")
  (data (i32.const 64) "{\\"action\\":\\"allow\\"}")
  (data (i32.const 128) "{\\"action\\":{\\"reject\\":{\\"sqlstate\\":\\"53400\\",\\"message\\":\\"slow down\\"}}}")
  ;; allow the first three statements of a 60 s window, then reject
  (func (export "pre_parse") (param i32 i32)
    (if (i64.le_s (call $count (i32.const 16) (i32.const 10) (i64.const 60000)) (i64.const 3))
      (then (call $return (i32.const 3) (i32.const 64) (i32.const 18)))
      (else (call $return (i32.const 3) (i32.const 128) (i32.const 64))))))
"""


def test_count_in_window_is_shared_by_sessions_and_private_to_the_plugin(session: Session) -> None:
    wasm = bytes(wasmtime.wat2wasm(COUNTER_WAT))
    pipeline = Pipeline()
    pipeline.install(PluginSpec(name="limit", wasm=wasm, origin="<limit>"))
    other = Session(session.db, process_id=2)
    outcomes = []
    for s in (session, other, session, other, session):
        try:
            pipeline.run(s, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
            outcomes.append("ok")
        except PluginRejected as exc:
            outcomes.append(exc.sqlstate)
    assert outcomes == ["ok", "ok", "ok", "53400", "53400"]
    # A second plugin counting the same key starts from zero.
    pipeline.install(PluginSpec(name="limit2", wasm=wasm, origin="<limit2>", priority=1))
    pipeline.remove("limit")
    assert pipeline.run(session, "SELECT 1", [], run_sql).rows == [(1,)]  # type: ignore[arg-type]


def test_count_in_window_is_refused_to_procedures() -> None:
    wasm = bytes(wasmtime.wat2wasm(COUNTER_WAT))
    with h.Database.open(":memory:") as db:
        db.execute(
            "CREATE PROCEDURE pre_parse(request JSON) RETURNS JSON LANGUAGE wasm"
            f" AS $wasm${base64.b64encode(wasm).decode()}$wasm$"
        )
        with pytest.raises(h.ProcedureError) as err:
            db.execute("SELECT pre_parse('{}')")
        assert err.value.code == "access-denied"


def test_plugins_created_with_sql_are_stored_listed_and_followed_by_the_server(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.db"
    gate = base64.b64encode(scripted({"pre-parse": allow(v="sql")})).decode()
    with h.Database.open(path) as db:
        db.execute(
            "CREATE PLUGIN gate PRIORITY 5 HOOKS ('pre-parse') CONFIG '{\"k\": 1}'"
            f" AS $wasm${gate}$wasm$"
        )
        with pytest.raises(h.RegistryError) as err:
            db.execute(f"CREATE PLUGIN gate AS $wasm${gate}$wasm$")
        assert err.value.code == "already-exists"
        with pytest.raises(h.InvalidArgument, match="does not export hook"):
            db.execute(f"CREATE PLUGIN other HOOKS ('post-parse') AS $wasm${gate}$wasm$")
        with pytest.raises(h.InvalidArgument, match="CONFIG is not JSON"):
            db.execute(f"CREATE PLUGIN other CONFIG '{{' AS $wasm${gate}$wasm$")
        shown = db.execute("SHOW PLUGINS")
        assert shown.columns[:4] == ["name", "version", "priority", "enabled"]
        assert shown.rows[0][:5] == ("gate", 1, 5, True, "pre-parse")
    pipeline = Pipeline()
    pipeline.watch(database=path)
    try:
        with h.Database.open(path) as client:
            s = Session(client)
            pipeline.run(s, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
            assert s.variables == {"v": "sql"}
            client.execute("ALTER PLUGIN gate DISABLE")
            assert pipeline.reload_if_changed()
            s.variables.clear()
            pipeline.run(s, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
            assert s.variables == {}
            client.execute("DROP PLUGIN gate")
            assert pipeline.reload_if_changed()
            assert pipeline.plugins() == []
            client.execute("DROP PLUGIN IF EXISTS gate")
            with pytest.raises(h.RegistryError):
                client.execute("DROP PLUGIN gate")
    finally:
        pipeline.close()


def test_plugin_log_lines_are_json_with_the_plugin_fields() -> None:
    import logging

    from heliosdb_wasm.plugins.metrics import JsonLogFormatter

    record = logging.LogRecord(
        "heliosdb_wasm.plugins", logging.WARNING, __file__, 1, "plugin rolled back", None, None
    )
    record.plugin, record.version, record.query_id, record.event = "gate", 3, 41, "rollback"
    doc = json.loads(JsonLogFormatter().format(record))
    assert doc["level"] == "warning" and doc["message"] == "plugin rolled back"
    assert (doc["plugin"], doc["version"], doc["query_id"], doc["event"]) == (
        "gate",
        3,
        41,
        "rollback",
    )
    assert "stage" not in doc and doc["time"].endswith("Z")


def only_user(user: str) -> bytes:
    """A pre-parse hook that allows a statement only when the context's
    ``user`` is ``user`` (it looks for ``"user":"<user>"`` in its request,
    the context's field: the connection's pairs are written ``"user","x"``)."""
    needle = json.dumps({"user": user}, separators=(",", ":"))[1:-1].encode()
    yes = json.dumps(allow(seen=user)).encode()
    no = json.dumps(reject("28000", "not the expected user")).encode()

    def data(offset: int, raw: bytes) -> str:
        escaped = "".join(f"\\{b:02x}" for b in raw)
        return f'(data (i32.const {offset}) "{escaped}")'

    yes_at, no_at, needle_at = 64, 2048, 4096
    wat = f"""(module {PLUGIN_PRELUDE}
      {data(yes_at, yes)} {data(no_at, no)} {data(needle_at, needle)}
      (func (export "pre_parse") (param $p i32) (param $n i32)
        (local $i i32) (local $j i32)
        (block $done
          (loop $outer
            (br_if $done
              (i32.gt_u (i32.add (local.get $i) (i32.const {len(needle)})) (local.get $n)))
            (local.set $j (i32.const 0))
            (block $mismatch
              (loop $inner
                (if (i32.eq (local.get $j) (i32.const {len(needle)}))
                  (then
                    (call $return (i32.const 3) (i32.const {yes_at}) (i32.const {len(yes)}))
                    (return)))
                (br_if $mismatch
                  (i32.ne
                    (i32.load8_u
                      (i32.add (local.get $p) (i32.add (local.get $i) (local.get $j))))
                    (i32.load8_u (i32.add (i32.const {needle_at}) (local.get $j)))))
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (br $inner)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $outer)))
        (call $return (i32.const 3) (i32.const {no_at}) (i32.const {len(no)}))))"""
    return bytes(wasmtime.wat2wasm(wat))


def test_a_plugin_sees_the_role_scram_authenticated(tmp_path: Path) -> None:
    import psycopg

    from heliosdb_wasm.pgwire import Server, execute_statement

    path = tmp_path / "roles.db"
    with h.Database.open(path) as db:
        db.create_role("alice", "alice-password")
        db.create_role("bob", "bob-password")
    pipeline = Pipeline()
    pipeline.install(PluginSpec(name="gate", wasm=only_user("alice"), origin="<gate>"))
    try:
        with Server(path, port=0, executor=pipeline.executor(execute_statement)) as server:
            host, port = server.address
            args: dict[str, Any] = {"host": host, "port": port, "dbname": "roles"}
            with psycopg.connect(**args, user="alice", password="alice-password") as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
                assert conn.execute("SHOW seen").fetchone() == ("alice",)
            with (
                psycopg.connect(**args, user="bob", password="bob-password") as conn,
                pytest.raises(psycopg.errors.InvalidAuthorizationSpecification),
            ):
                conn.execute("SELECT 1")
            # Naming alice is not being alice: the plugin never runs for a
            # client that did not prove her password.
            with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
                psycopg.connect(**args, user="alice", password="bob-password")
    finally:
        pipeline.close()
