"""`heliosdb-wasm plugin list | test | deploy | replay` (plugins/tools.py) and
the statement capture they replay (`serve --capture`, plugins/capture.py),
with scripted plugins (conftest.scripted) and the Rust example plugin."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

import heliosdb_wasm as h
from conftest import (
    BUILD,
    PipelineSession,
    allow,
    b64,
    installed,
    reject,
    run_sql,
    scripted,
    serve,
    stop,
)
from heliosdb_wasm.cli import main
from heliosdb_wasm.plugins.capture import REDACTED, Capture, read_capture, redacted
from heliosdb_wasm.plugins.pipeline import Pipeline

TENANT_CONFIG = '{"tables": ["orders"], "column": "tenant_id", "variable": "tenant"}'


def cli(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    with h.Database.open(path) as db:
        db.execute(
            "CREATE TABLE orders(id INTEGER PRIMARY KEY, tenant_id TEXT, ssn TEXT);"
            "INSERT INTO orders VALUES (1, 'acme', '123-45-6789'), (2, 'globex', '987-65-4321');"
        )
    return path


def wasm_file(tmp_path: Path, name: str, answers: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.wasm"
    path.write_bytes(scripted(answers))
    return path


def tenant_plugin() -> Path:
    return installed(
        BUILD / "plugins" / "rust" / "tenant_isolation.basic.wasm",
        "the Rust example plugin (nox -s build)",
    )


# --- plugin list ---------------------------------------------------------------------------


def test_list_shows_the_plugins_of_a_manifest_and_a_database_in_running_order(
    tmp_path: Path, shop: Path
) -> None:
    wasm_file(tmp_path, "gate", {"pre-parse": allow(), "post-execution": allow()})
    wasm_file(tmp_path, "cand", {"pre-parse": allow(v="2"), "post-execution": allow()})
    manifest = tmp_path / "plugins.toml"
    manifest.write_text(
        '[[plugin]]\nname = "gate"\nfile = "gate.wasm"\npriority = 20\n'
        'candidate = { file = "cand.wasm", percent = 25 }\n'
    )
    with h.Database.open(shop) as db:
        body = b64(scripted({"post-parse": allow()}))
        db.execute(f"CREATE PLUGIN audit PRIORITY 5 DISABLED AS $wasm${body}$wasm$")
        db.execute("ALTER PLUGIN audit PRIORITY 6")
    result = cli("plugin", "list", "--manifest", manifest, "--db", shop, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == ["audit", "gate"]
    audit, gate = rows
    assert (audit["source"], audit["version"], audit["priority"], audit["enabled"]) == (
        "sql",
        2,
        6,
        False,
    )
    assert audit["hooks"] == ["post-parse"] and audit["origin"] == "sql:audit"
    assert gate["source"] == "manifest" and gate["version"] is None
    assert gate["hooks"] == ["post-execution", "pre-parse"]
    assert gate["origin"] == str(tmp_path / "gate.wasm") and len(gate["sha256"]) == 64
    assert gate["candidate_percent"] == 25 and gate["candidate_sha256"] != gate["sha256"]
    table = cli("plugin", "list", "--manifest", manifest, "--db", shop)
    assert table.exit_code == 0
    assert "gate" in table.output and "(25%)" in table.output and "(2 rows)" in table.output


def test_list_errors_are_clear(tmp_path: Path) -> None:
    assert cli("plugin", "list").exit_code == 2
    result = cli("plugin", "list", "--db", tmp_path / "missing.db")
    assert result.exit_code == 1 and "no database file" in result.output
    assert not (tmp_path / "missing.db").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text("[[plugin]]\nname = 'x'\nfile = 'nowhere.wasm'\n")
    result = cli("plugin", "list", "--manifest", bad, "--json")
    assert result.exit_code == 1
    assert json.loads(result.output)["error"] == "invalid-argument"
    assert "nowhere.wasm" in json.loads(result.output)["message"]


# --- plugin test ---------------------------------------------------------------------------


def test_test_prints_each_hooks_verdict_and_fails_on_a_rejection(tmp_path: Path) -> None:
    masked = [[{"integer": 1}, {"text": "***"}]]
    gate = wasm_file(
        tmp_path,
        "gate",
        {
            "pre-parse": {"action": {"rewrite": "SELECT 1 AS id, 'x' AS ssn"}},
            "pre-execution": allow(checked="yes"),
            "post-execution": {"action": {"replace-rows": masked}},
        },
    )
    result = cli("plugin", "test", gate, "--sql", "SELECT anything", "--json")
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.output)
    assert [c["stage"] for c in run["hooks"]] == ["pre-parse", "pre-execution", "post-execution"]
    assert run["hooks"][0] == {
        "stage": "pre-parse",
        "plugin": "gate",
        "action": "rewrite",
        "sql": "SELECT 1 AS id, 'x' AS ssn",
    }
    assert run["hooks"][1]["set-session"] == {"checked": "yes"}
    assert run["hooks"][2]["rows"] == [[1, "***"]]
    assert (run["outcome"], run["columns"], run["rows"]) == ("ok", ["id", "ssn"], [[1, "***"]])
    text = cli("plugin", "test", gate, "--sql", "SELECT anything")
    assert "rewrite: SELECT 1 AS id" in text.output and 'replace-rows: [[1, "***"]]' in text.output
    no = wasm_file(tmp_path, "no", {"pre-parse": reject("42501", "not you")})
    result = cli("plugin", "test", no, "--sql", "SELECT 1")
    assert result.exit_code == 1
    assert "reject 42501: not you" in result.output
    assert "=> rejected 42501: not you" in result.output


def test_test_runs_a_sql_file_on_the_database_with_the_sessions_parameters(
    tmp_path: Path, shop: Path
) -> None:
    script = tmp_path / "s.sql"
    script.write_text("SELECT id FROM orders ORDER BY id;\nDELETE FROM orders WHERE id = 2;")
    result = cli(
        "plugin", "test", tenant_plugin(), "--config", TENANT_CONFIG, "--db", shop,
        "--sql-file", script, "--param", "user=alice", "--param", "tenant=acme", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    select, delete = json.loads(result.output)
    assert select["hooks"][0]["sql"] == (
        "SELECT id FROM orders WHERE orders.tenant_id = 'acme' ORDER BY id"
    )
    assert select["rows"] == [[1]]
    assert delete["changes"] == 0  # globex's row is not acme's to delete
    with h.Database.open(shop) as db:
        assert db.execute("SELECT count(*) FROM orders").scalar() == 2


def test_test_finds_a_plugin_by_name_and_config_replaces_its_own(
    tmp_path: Path, shop: Path
) -> None:
    manifest = tmp_path / "plugins.toml"
    manifest.write_text(
        f'[[plugin]]\nname = "tenant"\nfile = "{tenant_plugin()}"\n'
        '[plugin.config]\ntables = ["orders"]\ncolumn = "tenant_id"\nvariable = "tenant"\n'
    )
    args = ["plugin", "test", "tenant", "--manifest", manifest, "--db", shop, "--json"]
    result = cli(*args, "--sql", "SELECT count(*) FROM orders", "--param", "tenant=globex")
    assert json.loads(result.output)[0]["rows"] == [[1]]
    result = cli(
        *args,
        "--sql",
        "SELECT count(*) FROM orders",
        "--config",
        '{"tables": ["other"], "column": "tenant_id"}',
    )
    (run,) = json.loads(result.output)
    assert run["rows"] == [[2]] and run["hooks"][0]["action"] == "allow"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.wasm", "--sql", "SELECT 1"], "cannot read the plugin missing.wasm"),
        (["gate", "--sql", "SELECT 1"], "give --manifest, --plugins-dir or --db"),
        (["{gate}", "--sql", "SELECT 1", "--config", "[1]"], "--config must be a JSON object"),
        (["{gate}", "--sql", "SELECT 1", "--config", "{oops"], "--config is not JSON"),
        (["{gate}", "--sql", "SELECT 1", "--param", "user"], "--param must be name=value"),
        (["{gate}"], "no statement to run"),
        (["{notwasm}", "--sql", "SELECT 1"], "not a WebAssembly module"),
        (["nope", "--manifest", "{manifest}", "--sql", "SELECT 1"], "no plugin named 'nope'"),
    ],
)
def test_test_errors_are_clear(tmp_path: Path, args: list[str], message: str) -> None:
    gate = wasm_file(tmp_path, "gate", {"pre-parse": allow()})
    (tmp_path / "notwasm.wasm").write_text("hello")
    manifest = tmp_path / "plugins.toml"
    manifest.write_text('[[plugin]]\nname = "gate"\nfile = "gate.wasm"\n')
    subs = {
        "{gate}": str(gate),
        "{notwasm}": str(tmp_path / "notwasm.wasm"),
        "{manifest}": str(manifest),
    }
    result = cli("plugin", "test", *[subs.get(a, a) for a in args])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output


# --- plugin deploy ---------------------------------------------------------------------------


def test_deploy_creates_replaces_keeping_settings_and_deploys_a_candidate(
    tmp_path: Path, shop: Path
) -> None:
    one = wasm_file(tmp_path, "one", {"pre-parse": allow(v="one")})
    two = wasm_file(tmp_path, "two", {"pre-parse": allow(v="two")})
    result = cli(
        "plugin", "deploy", one, "--db", shop, "--name", "gate", "--priority", "7",
        "--hooks", "pre-parse", "--config", '{"k": "it\'s"}', "--limit", "timeout_seconds=0.5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.startswith("plugin gate v1: ")
    result = cli("plugin", "deploy", two, "--db", shop, "--name", "gate", "--json")
    assert json.loads(result.output)["version"] == 2
    with h.Database.open(shop) as db:
        ((spec, version),) = db.plugin_specs()
    assert version == 2 and spec.wasm == two.read_bytes()
    assert (spec.priority, spec.hooks, dict(spec.config)) == (
        7,
        frozenset({"pre-parse"}),
        {"k": "it's"},
    )
    assert dict(spec.limits) == {"timeout_seconds": 0.5}
    result = cli(
        "plugin", "deploy", one, "--db", shop, "--name", "gate", "--candidate-percent", "100"
    )
    assert result.exit_code == 0 and "candidate" in result.output and "100%" in result.output
    # A server on the database serves the candidate to its share of sessions.
    pipeline = Pipeline()
    pipeline.watch(database=shop)
    try:
        with h.Database.open(shop) as client:
            session = PipelineSession(client)
            pipeline.run(session, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
            assert session.variables == {"v": "one"}
    finally:
        pipeline.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "gate", "--candidate-percent", "5"], "no plugin named gate"),
        (["--name", "Bad-Name"], "plugin name"),
        (["--name", "gate", "--hooks", "pre-parse,later"], "unknown hook 'later'"),
        (["--name", "gate", "--hooks", "post-parse"], "does not export hook"),
        (["--name", "gate", "--limit", "timeout_seconds=soon"], "--limit must be name=number"),
        (["--name", "gate", "--config", "[]"], "--config must be a JSON object"),
    ],
)
def test_deploy_errors_are_clear_and_change_nothing(
    tmp_path: Path, shop: Path, args: list[str], message: str
) -> None:
    gate = wasm_file(tmp_path, "gate", {"pre-parse": allow()})
    result = cli("plugin", "deploy", gate, "--db", shop, *args)
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    with h.Database.open(shop) as db:
        assert db.plugin_specs() == []


def test_deploy_refuses_settings_for_a_candidate_and_a_missing_database(
    tmp_path: Path, shop: Path
) -> None:
    gate = wasm_file(tmp_path, "gate", {"pre-parse": allow()})
    assert cli("plugin", "deploy", gate, "--db", shop, "--name", "gate").exit_code == 0
    result = cli(
        "plugin", "deploy", gate, "--db", shop, "--name", "gate", "--candidate-percent", "5",
        "--priority", "1",
    )  # fmt: skip
    assert (
        result.exit_code == 1
        and "--priority cannot be given with --candidate-percent" in result.output
    )
    result = cli("plugin", "deploy", gate, "--db", tmp_path / "none.db", "--name", "gate")
    assert result.exit_code == 1 and "no database file" in result.output


# --- the capture ----------------------------------------------------------------------------


def capture_session(db: h.Database, **variables: str) -> PipelineSession:
    return PipelineSession(
        db,
        params={
            "user": "alice",
            "database": "shop",
            "password": "hunter2",
            "options": "-c app.jwt=eyJ -c tenant=acme",
        },
        variables={"tenant": "acme", "app.api_key": "k-123", **variables},
        process_id=9,
    )


def test_a_capture_is_json_lines_without_secrets_and_params_only_when_asked(
    tmp_path: Path,
) -> None:
    with h.Database.open(":memory:") as db:
        for with_params in (False, True):
            path = tmp_path / f"capture-{with_params}.jsonl"
            capture = Capture(path, capture_params=with_params)
            pipeline = Pipeline(capture=capture)
            pipeline.run(capture_session(db), "SELECT ?1 + 1", [41], run_sql)  # type: ignore[arg-type]
            capture.close()
            (line,) = path.read_text().splitlines()
            doc = json.loads(line)
            assert doc["sql"] == "SELECT ?1 + 1" and doc["connection"] == 9
            assert doc["parameters"]["user"] == "alice"
            assert doc["parameters"]["password"] == REDACTED
            assert doc["parameters"]["options"] == f"-c app.jwt={REDACTED} -c tenant=acme"
            assert doc["session"] == {"tenant": "acme", "app.api_key": REDACTED}
            assert doc["time"].endswith("Z")
            assert ("params" in doc) is with_params
            assert "hunter2" not in line and "k-123" not in line and "eyJ" not in line
            (record,) = read_capture(path)
            assert record.params == ((41,) if with_params else None)


def test_redaction_names() -> None:
    found = redacted(
        {"password": "x", "PGPASSWORD": "x", "auth.token": "x", "client_secret": "x",
         "api-key": "x", "tenant": "acme", "auth.role": "admin", "jwt": "x"}
    )  # fmt: skip
    assert {k for k, v in found.items() if v != REDACTED} == {"tenant", "auth.role"}


def test_a_capture_rotates_at_its_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    capture = Capture(path, max_bytes=4096)
    with h.Database.open(":memory:") as db:
        pipeline = Pipeline(capture=capture)
        session = capture_session(db)
        for i in range(60):
            pipeline.run(session, f"SELECT {i}", [], run_sql)  # type: ignore[arg-type]
    capture.close()
    assert capture.rotations >= 2 and capture.written == 60 and capture.dropped == 0
    for file in (path, Path(f"{path}.1")):
        assert 0 < file.stat().st_size <= 4096
    newest = [r.sql for r in read_capture(Path(f"{path}.1")) + read_capture(path)]
    assert newest[-1] == "SELECT 59" and newest == sorted(newest, key=lambda s: int(s.split()[1]))


def test_a_slow_disk_drops_records_instead_of_holding_up_statements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = Capture(tmp_path / "c.jsonl")
    release = threading.Event()
    append = capture._append

    def slow(line: str) -> None:
        release.wait(30)  # a disk that does not answer
        append(line)

    monkeypatch.setattr(capture, "_append", slow)
    with h.Database.open(":memory:") as db:
        session = capture_session(db)
        started = time.perf_counter()
        for _ in range(12_000):
            capture.record(session, "SELECT 1", [])  # type: ignore[arg-type]
        assert time.perf_counter() - started < 10
    assert capture.dropped >= 12_000 - 10_000 - 1  # the queue's, and one being written
    release.set()
    capture.close()
    assert capture.written + capture.dropped == 12_000


def test_a_capture_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(h.InvalidArgument, match="cannot write the capture file"):
        Capture(tmp_path / "no" / "such" / "dir.jsonl")
    with pytest.raises(h.InvalidArgument, match="at least 1024"):
        Capture(tmp_path / "c.jsonl", max_bytes=10)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json\n", r"c.jsonl:1: not JSON"),
        ('{"sql": "SELECT 1"}\n[1]\n', r"c.jsonl:2: a capture record is an object"),
        ('{"sql": "SELECT 1", "session": {"a": 1}}\n', "session must be an object of strings"),
        ('{"sql": "SELECT 1", "params": [{"date": 1}]}\n', "params: not a SQL value"),
        ('{"sql": "SELECT 1", "connection": "x"}\n', "connection must be an integer"),
    ],
)
def test_a_bad_capture_names_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(text)
    with pytest.raises(h.InvalidArgument, match=message):
        read_capture(path)


def test_serve_captures_what_clients_send(tmp_path: Path) -> None:
    path = tmp_path / "capture.jsonl"
    proc, port = serve(tmp_path, "--capture", str(path), "--capture-params")
    try:
        with psycopg.connect(
            host="127.0.0.1",
            port=port,
            user="alice",
            dbname="s",
            options="-c tenant=acme -c app.token=t0p",
        ) as conn:
            conn.execute("SELECT %s::int + 1", [41]).fetchone()
    finally:
        stop(proc)
    records = read_capture(path)
    mine = [r for r in records if "+ 1" in r.sql]
    assert len(mine) == 1 and mine[0].params == (41,)
    assert mine[0].parameters["user"] == "alice" and mine[0].session["tenant"] == "acme"
    assert mine[0].session["app.token"] == REDACTED and "t0p" not in path.read_text()


# --- plugin replay ---------------------------------------------------------------------------


@pytest.fixture
def captured(tmp_path: Path) -> Iterator[Path]:
    """Three statements of two connections, as serve --capture writes them."""
    path = tmp_path / "capture.jsonl"
    capture = Capture(path, capture_params=True)
    with h.Database.open(":memory:") as db:
        pipeline = Pipeline(capture=capture)
        a = capture_session(db)
        b = PipelineSession(
            db, params={"user": "bob"}, variables={"tenant": "globex"}, process_id=3
        )
        for session, sql, params in (
            (a, "SELECT id FROM orders ORDER BY id", []),
            (b, "SELECT ssn FROM orders WHERE id = ?", [2]),
            (a, "DELETE FROM orders WHERE id = 1", []),
        ):
            # No table here: the capture holds the statement all the same.
            with contextlib.suppress(h.ProcedureError):
                pipeline.run(session, sql, params, run_sql)  # type: ignore[arg-type]
    capture.close()
    yield path


def test_replay_of_a_version_against_itself_differs_nowhere(
    tmp_path: Path, captured: Path, shop: Path
) -> None:
    gate = wasm_file(tmp_path, "gate", {"pre-parse": allow(), "post-execution": allow()})
    result = cli("plugin", "replay", captured, "--plugin", gate, "--against", gate, "--db", shop)
    assert result.exit_code == 0, result.output
    assert "replayed 3 statement(s): 0 differ" in result.output
    with h.Database.open(shop) as db:  # each version ran on a copy
        assert db.execute("SELECT count(*) FROM orders").scalar() == 2


def test_replay_shows_where_verdicts_differ_and_exits_nonzero(
    tmp_path: Path, captured: Path, shop: Path
) -> None:
    old = wasm_file(tmp_path, "old", {"post-execution": allow()})
    new = wasm_file(
        tmp_path,
        "new",
        {"post-execution": {"action": {"replace-rows": [[{"text": "***"}]]}}},
    )
    result = cli(
        "plugin", "replay", captured, "--plugin", old, "--against", new, "--db", shop, "--json"
    )
    assert result.exit_code == 1, result.output
    doc = json.loads(result.output)
    assert (doc["statements"], doc["differ"]) == (3, 2)  # the two SELECTs; the DELETE has no rows
    first, second = doc["differences"]
    assert first["line"] == 1 and first["sql"] == "SELECT id FROM orders ORDER BY id"
    assert first["a"]["rows"] == [[1], [2]] and first["b"]["rows"] == [["***"]]
    assert first["b"]["hooks"] == [
        {"stage": "post-execution", "plugin": "old", "action": "replace-rows", "rows": [["***"]]}
    ]
    assert second["connection"] == 3 and second["a"]["rows"] == [["987-65-4321"]]
    text = cli("plugin", "replay", captured, "--plugin", old, "--against", new, "--db", shop)
    assert "line 2 (connection 3): SELECT ssn FROM orders WHERE id = ?" in text.output
    assert "B: post-execution replace-rows" in text.output


def test_replay_gives_each_statement_its_captured_session(
    tmp_path: Path, captured: Path, shop: Path
) -> None:
    # The tenant plugin reads the session's `tenant`: acme's statements see
    # acme's rows, globex's statement globex's, as captured.
    tenant = tenant_plugin()
    bare = wasm_file(tmp_path, "bare", {"post-parse": allow()})
    result = cli(
        "plugin", "replay", captured, "--plugin", tenant, "--against", bare, "--db", shop,
        "--config", TENANT_CONFIG, "--json",
    )  # fmt: skip
    doc = json.loads(result.output)
    assert result.exit_code == 1 and doc["differ"] == 3
    a = {d["line"]: d["a"] for d in doc["differences"]}
    b = {d["line"]: d["b"] for d in doc["differences"]}
    assert a[1]["rows"] == [[1]] and b[1]["rows"] == [[1], [2]]
    # Row 2 is globex's, and so is the session that asked for it: the same
    # rows, but not the same verdict.
    assert a[2]["rows"] == b[2]["rows"] == [["987-65-4321"]]
    assert a[2]["hooks"][0]["action"] == "rewrite" and b[2]["hooks"][0]["action"] == "allow"
    assert a[3]["changes"] == b[3]["changes"] == 1


def test_replay_errors_are_clear(tmp_path: Path, captured: Path) -> None:
    gate = wasm_file(tmp_path, "gate", {"pre-parse": allow()})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sql": "SELECT 1"}\nnope\n')
    result = cli("plugin", "replay", bad, "--plugin", gate, "--against", gate)
    assert result.exit_code == 1 and "bad.jsonl:2: not JSON" in result.output
    result = cli("plugin", "replay", captured, "--plugin", gate, "--against", "other")
    assert result.exit_code == 1 and "give --manifest, --plugins-dir or --db" in result.output
    result = cli("plugin", "replay", tmp_path / "none.jsonl", "--plugin", gate, "--against", gate)
    assert result.exit_code == 2
