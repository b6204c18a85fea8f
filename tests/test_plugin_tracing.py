"""OpenTelemetry spans of the pipeline (heliosdb_wasm.plugins.tracing): a
span per statement, a child per hook call and one for the execution,
parented to the client's W3C traceparent, never holding parameter values
(or the statement's text unless asked); and the OTLP export of `serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import heliosdb_wasm as h
from conftest import PipelineSession, allow, reject, run_sql, serve, spec, stop
from heliosdb_wasm.errors import PluginError, PluginRejected
from heliosdb_wasm.pgwire import Server, execute_statement
from heliosdb_wasm.plugins.pipeline import Pipeline
from heliosdb_wasm.plugins.tracing import Tracing, traces_url

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def pipeline(exporter: InMemorySpanExporter) -> Pipeline:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Pipeline(tracing=Tracing(provider.get_tracer("tests")))


@pytest.fixture
def session() -> Iterator[PipelineSession]:
    with h.Database.open(":memory:") as db:
        db.execute(
            "CREATE TABLE orders(id INTEGER PRIMARY KEY, ssn TEXT);"
            "INSERT INTO orders VALUES (1, '123-45-6789'), (2, '987-65-4321');"
        )
        yield PipelineSession(db, params={"user": "alice", "database": "shop"})


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    named = {s.name: s for s in spans}
    assert len(named) == len(spans), [s.name for s in spans]
    return named


def children_of(parent: ReadableSpan, spans: tuple[ReadableSpan, ...]) -> list[str]:
    """The names of ``parent``'s children in the order they started."""
    ours = [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]
    assert all(s.context.trace_id == parent.context.trace_id for s in ours)
    return [s.name for s in sorted(ours, key=lambda s: s.start_time or 0)]


def test_a_statement_has_a_span_with_a_child_per_hook_and_one_for_its_execution(
    pipeline: Pipeline, exporter: InMemorySpanExporter, session: PipelineSession
) -> None:
    pipeline.install(spec("gate", {"pre-parse": allow(), "post-execution": allow()}, priority=1))
    pipeline.install(spec("audit", {"pre-execution": allow()}, priority=2))
    pipeline.run(session, "SELECT id FROM orders", [], run_sql)  # type: ignore[arg-type]
    spans = exporter.get_finished_spans()
    named = by_name(spans)
    statement = named["heliosdb.statement"]
    assert statement.parent is None and statement.kind == SpanKind.SERVER
    assert children_of(statement, spans) == [
        "heliosdb.plugin.pre-parse",
        "heliosdb.plugin.pre-execution",
        "heliosdb.execute",
        "heliosdb.plugin.post-execution",
    ]
    attrs = dict(statement.attributes or {})
    assert attrs["db.system"] == attrs["db.system.name"] == "sqlite"
    assert attrs["db.operation.name"] == "SELECT" and attrs["db.namespace"] == "shop"
    assert attrs["heliosdb.outcome"] == "ok" and isinstance(attrs["heliosdb.query_id"], int)
    assert attrs["heliosdb.command_tag"] == "SELECT 2"
    assert statement.status.status_code == StatusCode.UNSET
    hook = dict(named["heliosdb.plugin.pre-execution"].attributes or {})
    gate = next(p for p in pipeline.plugins() if p["name"] == "audit")
    assert hook == {
        "heliosdb.plugin.name": "audit",
        "heliosdb.plugin.version": gate["version"],
        "heliosdb.plugin.sha256": gate["sha256"],
        "heliosdb.plugin.stage": "pre-execution",
        "heliosdb.plugin.verdict": "allow",
    }
    execute = named["heliosdb.execute"]
    assert dict(execute.attributes or {}) == {"db.response.returned_rows": 2}
    # The execution span times the statement alone: inside the hooks' span.
    assert statement.start_time is not None and statement.end_time is not None
    assert execute.start_time is not None and execute.end_time is not None
    assert statement.start_time <= execute.start_time <= execute.end_time <= statement.end_time


def test_a_rejection_marks_the_hook_and_the_statement_and_nothing_executes(
    pipeline: Pipeline, exporter: InMemorySpanExporter, session: PipelineSession
) -> None:
    pipeline.install(spec("gate", {"pre-parse": reject("42501", "not for alice: 123-45-6789")}))
    with pytest.raises(PluginRejected):
        pipeline.run(session, "DELETE FROM orders", [], run_sql)  # type: ignore[arg-type]
    named = by_name(exporter.get_finished_spans())
    assert set(named) == {"heliosdb.statement", "heliosdb.plugin.pre-parse"}
    hook = named["heliosdb.plugin.pre-parse"]
    assert hook.status.status_code == StatusCode.ERROR
    assert hook.attributes is not None and hook.attributes["heliosdb.plugin.verdict"] == "reject"
    assert hook.attributes["db.response.status_code"] == "42501"
    statement = named["heliosdb.statement"]
    assert statement.attributes is not None
    assert statement.attributes["heliosdb.outcome"] == "rejected"
    assert statement.attributes["db.operation.name"] == "DELETE"
    assert statement.status.status_code == StatusCode.ERROR
    # The plugin's message may quote data: it is not in any span.
    assert "123-45-6789" not in dump(exporter.get_finished_spans())


def test_a_failing_hook_and_a_failing_execution_are_errors_with_their_sqlstate(
    pipeline: Pipeline, exporter: InMemorySpanExporter, session: PipelineSession
) -> None:
    pipeline.install(spec("broken", {"pre-execution": "trap"}))
    with pytest.raises(PluginError):
        pipeline.run(session, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
    named = by_name(exporter.get_finished_spans())
    hook = named["heliosdb.plugin.pre-execution"]
    assert hook.status.status_code == StatusCode.ERROR and hook.attributes is not None
    assert hook.attributes["heliosdb.plugin.verdict"] == "error"
    assert hook.attributes["error.type"] == "plugin-error"
    statement = named["heliosdb.statement"]
    assert statement.attributes is not None
    assert statement.attributes["heliosdb.outcome"] == "error"
    assert statement.attributes["db.response.status_code"] == "38000"
    exporter.clear()
    pipeline.remove("broken")
    with pytest.raises(h.ProcedureError):
        pipeline.run(session, "SELECT * FROM nowhere", [], run_sql)  # type: ignore[arg-type]
    named = by_name(exporter.get_finished_spans())
    execute = named["heliosdb.execute"]
    assert execute.status.status_code == StatusCode.ERROR and execute.attributes is not None
    assert execute.attributes["db.response.status_code"] == "42P01"
    assert children_of(named["heliosdb.statement"], exporter.get_finished_spans()) == [
        "heliosdb.execute"
    ]


def test_the_clients_traceparent_parents_the_statement(
    pipeline: Pipeline, exporter: InMemorySpanExporter, session: PipelineSession
) -> None:
    pipeline.install(spec("gate", {"pre-parse": allow()}))
    session.variables["traceparent"] = TRACEPARENT
    pipeline.run(session, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
    spans = exporter.get_finished_spans()
    statement = by_name(spans)["heliosdb.statement"]
    assert statement.parent is not None and statement.parent.is_remote
    assert f"{statement.parent.span_id:016x}" == PARENT_ID
    assert all(f"{s.context.trace_id:032x}" == TRACE_ID for s in spans)
    # A sqlcommenter comment in the statement wins over the session's.
    exporter.clear()
    other = "0af7651916cd43dd8448eb211c80319c"
    commented = f"SELECT 1 /*traceparent='00-{other}-b7ad6b7169203331-01'*/"
    pipeline.run(session, commented, [], run_sql)  # type: ignore[arg-type]
    statement = by_name(exporter.get_finished_spans())["heliosdb.statement"]
    assert f"{statement.context.trace_id:032x}" == other


@pytest.mark.parametrize(
    "traceparent",
    ["", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "ff-" + "a" * 60],
)
def test_a_malformed_traceparent_starts_a_trace_of_its_own(
    pipeline: Pipeline, exporter: InMemorySpanExporter, session: PipelineSession, traceparent: str
) -> None:
    session.variables["traceparent"] = traceparent
    assert pipeline.run(session, "SELECT 1", [], run_sql).rows == [(1,)]  # type: ignore[arg-type]
    statement = by_name(exporter.get_finished_spans())["heliosdb.statement"]
    assert statement.parent is None


def dump(spans: tuple[ReadableSpan, ...]) -> str:
    """Everything a span carries, as text."""
    return "\n".join(s.to_json() for s in spans)


def test_spans_never_hold_parameter_values_nor_literals_unless_asked(
    exporter: InMemorySpanExporter, session: PipelineSession
) -> None:
    sql = "SELECT id FROM orders WHERE ssn = '123-45-6789' AND id = ?"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for statement_text in (False, True):
        exporter.clear()
        pipeline = Pipeline(
            tracing=Tracing(provider.get_tracer("t"), statement_text=statement_text)
        )
        pipeline.install(spec("gate", {"pre-execution": allow(), "post-execution": allow()}))
        pipeline.run(session, sql, ["secret-parameter"], run_sql)  # type: ignore[arg-type]
        text = dump(exporter.get_finished_spans())
        assert "heliosdb.plugin.post-execution" in text
        assert "secret-parameter" not in text
        assert ("123-45-6789" in text) is statement_text
        statement = by_name(exporter.get_finished_spans())["heliosdb.statement"]
        assert statement.attributes is not None
        assert statement.attributes.get("db.query.text") == (sql if statement_text else None)


def test_statements_without_plugins_are_traced_too(
    pipeline: Pipeline, exporter: InMemorySpanExporter, session: PipelineSession
) -> None:
    pipeline.run(session, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
    spans = exporter.get_finished_spans()
    assert children_of(by_name(spans)["heliosdb.statement"], spans) == ["heliosdb.execute"]


def test_without_tracing_opentelemetry_is_not_even_imported() -> None:
    code = (
        "import sys, heliosdb_wasm.plugins.pipeline as p, heliosdb_wasm.cli\n"
        "assert p.Pipeline().tracing is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_the_traces_url_is_the_base_url_and_the_traces_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"
    assert traces_url(None) == "http://localhost:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:1")
    assert traces_url(None) == "http://env:1/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://whole/path")
    assert traces_url(None) == "http://whole/path"
    assert traces_url("http://flag:2") == "http://flag:2/v1/traces"


# --- through the wire endpoint ------------------------------------------------------------


def test_a_psycopg_client_joins_its_trace_by_startup_option_and_by_set(
    tmp_path: Path, pipeline: Pipeline, exporter: InMemorySpanExporter
) -> None:
    pipeline.install(spec("gate", {"pre-parse": allow()}))
    with Server(
        tmp_path / "t.db", port=0, executor=pipeline.executor(execute_statement), auth="trust"
    ) as server:
        host, port = server.address
        options = f"-c traceparent={TRACEPARENT}"
        with psycopg.connect(
            host=host, port=port, user="u", dbname="t", options=options, autocommit=True
        ) as conn:
            conn.execute("SELECT 40 + 2").fetchone()
            exporter.clear()
            conn.execute("SELECT %s::int", [7]).fetchone()
            statement = by_name(exporter.get_finished_spans())["heliosdb.statement"]
            assert statement.parent is not None
            assert f"{statement.parent.span_id:016x}" == PARENT_ID
            other = f"00-{'1' * 32}-{'2' * 16}-01"
            conn.execute(f"SET traceparent = '{other}'")
            exporter.clear()
            conn.execute("SELECT 1").fetchone()
            statement = by_name(exporter.get_finished_spans())["heliosdb.statement"]
            assert statement.parent is not None and statement.parent.span_id == int("2" * 16, 16)
            assert "7" not in str(dict(statement.attributes or {}).get("db.query.text", ""))


class Collector:
    """An OTLP/HTTP collector on the loopback interface that keeps what it is sent."""

    def __init__(self) -> None:
        received: list[ExportTraceServiceRequest] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    received.append(request)
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}"

    def spans(self) -> list[Any]:
        return [
            span
            for request in self.received
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def test_serve_exports_spans_over_otlp_http(tmp_path: Path) -> None:
    collector = Collector()
    try:
        proc, port = serve(tmp_path, "--otlp-endpoint", collector.url)
        try:
            with psycopg.connect(
                host="127.0.0.1",
                port=port,
                user="u",
                dbname="s",
                options=f"-c traceparent={TRACEPARENT}",
            ) as conn:
                conn.execute("SELECT %s::text", ["the-secret"]).fetchone()
        finally:
            stop(proc)  # flushes what is queued
        spans = collector.spans()
        names = {s.name for s in spans}
        assert {"heliosdb.statement", "heliosdb.execute"} <= names
        statements = [s for s in spans if s.name == "heliosdb.statement"]
        assert all(s.trace_id.hex() == TRACE_ID for s in statements)
        assert all(s.parent_span_id.hex() == PARENT_ID for s in statements)
        ids = {s.span_id for s in statements}
        assert all(s.parent_span_id in ids for s in spans if s.name == "heliosdb.execute")
        resource = collector.received[0].resource_spans[0].resource
        service = {a.key: a.value.string_value for a in resource.attributes}["service.name"]
        assert service == "heliosdb-wasm"
        assert b"the-secret" not in b"".join(r.SerializeToString() for r in collector.received)
    finally:
        collector.close()


def test_serve_reads_the_standard_variable_and_an_absent_collector_costs_no_statement(
    tmp_path: Path,
) -> None:
    # Nothing listens there: statements go on, and stopping does not hang on it.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    proc, port = serve(tmp_path, env={"OTEL_EXPORTER_OTLP_ENDPOINT": dead})
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="u", dbname="s") as conn:
            started = time.perf_counter()
            for _ in range(20):
                conn.execute("SELECT 1").fetchone()
            assert time.perf_counter() - started < 5
    finally:
        began = time.perf_counter()
        stop(proc, seconds=40)
    assert time.perf_counter() - began < 35


def test_serve_refuses_statement_text_without_an_endpoint(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "heliosdb_wasm.cli",
            "serve",
            "--db",
            str(tmp_path / "x.db"),
            "--otel-statement-text",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
    )
    assert out.returncode == 2 and "--otel-statement-text needs --otlp-endpoint" in out.stderr
