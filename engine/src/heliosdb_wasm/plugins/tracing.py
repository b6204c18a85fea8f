"""OpenTelemetry spans of the pipeline (docs/plugins.md §8): one per
statement (``heliosdb.statement``), a child per hook call
(``heliosdb.plugin.<stage>``) and one for the statement's own execution
without the plugins (``heliosdb.execute``).

Imported only when tracing is configured (``serve --otlp-endpoint`` or the
standard ``OTEL_EXPORTER_OTLP_ENDPOINT``): the pipeline holds no tracing
object otherwise, and its only cost is one ``is None`` test per statement.
opentelemetry-api and -sdk come with the ``otel`` extra.

A span never holds parameter values, and the statement's text (which may
hold literals: names, card numbers) only where ``statement_text`` asks for
it. A client joins the spans to its own trace with a W3C ``traceparent``:
a startup parameter, ``options=-c traceparent=...``, ``SET traceparent``,
or a sqlcommenter comment in the statement (``/*traceparent='...'*/``),
which wins over the session's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..ddl import keywords
from ..errors import PluginRejected, ProcedureError
from ..pgwire.dialect import command_tag
from ..pgwire.errors import sqlstate_for

if TYPE_CHECKING:
    from ..database import Result
    from ..pgwire import WireSession
    from .verdicts import Verdict

# The database semantic conventions' names (semconv 1.3x, stable for
# database spans); db.system is its older name, kept for backends that read it.
DB_SYSTEM = "sqlite"
_PROPAGATOR = TraceContextTextMapPropagator()
# sqlcommenter: key='value' pairs in a comment, values URL-encoded.
_COMMENT_TRACEPARENT = re.compile(r"traceparent\s*=\s*'([0-9a-fA-F%-]{55,60})'")
_COMMENT_TRACESTATE = re.compile(r"tracestate\s*=\s*'([^']{1,512})'")


class Tracing:
    """Makes the spans of each statement with ``tracer``."""

    def __init__(self, tracer: trace.Tracer, *, statement_text: bool = False) -> None:
        self.tracer = tracer
        self.statement_text = statement_text

    def statement(self, session: WireSession, sql: str, query_id: int) -> StatementTrace | None:
        """The spans of a statement starting now; None when the sampler left
        it out (OTEL_TRACES_SAMPLER), so that its hooks cost nothing more."""
        statement = StatementTrace(self, session, sql, query_id)
        return statement if statement.span.is_recording() else None


def parent_context(variables: Mapping[str, str], sql: str) -> Context | None:
    """The client's trace context: the statement's sqlcommenter comment, else
    the session's ``traceparent`` (and ``tracestate``); None when there is
    none or it is malformed (the statement then starts a trace of its own)."""
    carrier: dict[str, str] = {}
    if "traceparent" in sql:
        found = _COMMENT_TRACEPARENT.search(sql)
        if found is not None:
            carrier["traceparent"] = unquote(found.group(1))
            state = _COMMENT_TRACESTATE.search(sql)
            if state is not None:
                carrier["tracestate"] = unquote(state.group(1))
    if not carrier:
        value = variables.get("traceparent")
        if not value:
            return None
        carrier["traceparent"] = value
        state_value = variables.get("tracestate")
        if state_value:
            carrier["tracestate"] = state_value
    context = _PROPAGATOR.extract(carrier)
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


class StatementTrace:
    """The spans of one statement: its own, started now, and its children."""

    def __init__(self, tracing: Tracing, session: WireSession, sql: str, query_id: int) -> None:
        self._tracer = tracing.tracer
        words = keywords(sql, 1)
        attributes: dict[str, str | int] = {
            "db.system": DB_SYSTEM,
            "db.system.name": DB_SYSTEM,
            "db.operation.name": words[0] if words else "",
            "db.namespace": session.params.get("database", ""),
            "heliosdb.query_id": query_id,
            "heliosdb.connection_id": session.process_id,
        }
        if tracing.statement_text:
            attributes["db.query.text"] = sql
        self.span = self._tracer.start_span(
            "heliosdb.statement",
            context=parent_context(session.variables, sql),
            kind=SpanKind.SERVER,
            attributes=attributes,
        )
        self._context = trace.set_span_in_context(self.span)

    def hook(self, stage: str, plugin: str, version: int, sha256: str) -> HookSpan:
        """A hook call's span, started now."""
        return HookSpan(
            self._tracer.start_span(
                f"heliosdb.plugin.{stage}",
                context=self._context,
                attributes={
                    "heliosdb.plugin.name": plugin,
                    "heliosdb.plugin.version": version,
                    "heliosdb.plugin.sha256": sha256,
                    "heliosdb.plugin.stage": stage,
                },
            )
        )

    def execute(self, sql: str) -> ExecuteSpan:
        """The span of the execution of ``sql`` (the statement as the plugins
        left it), started now."""
        span = self._tracer.start_span("heliosdb.execute", context=self._context)
        return ExecuteSpan(span, self.span, sql)

    def finish(self, outcome: str, error: BaseException | None) -> None:
        """Ends the statement's span: ``outcome`` is ok, rejected or error."""
        self.span.set_attribute("heliosdb.outcome", outcome)
        if error is not None:
            _failed(self.span, error)
        self.span.end()


class HookSpan:
    def __init__(self, span: Span) -> None:
        self.span = span

    def done(self, verdict: Verdict | None, error: ProcedureError | None) -> None:
        """Ends the span with the hook's verdict, or as failed with its error.
        A rejection is an error status too: the plugin stopped the statement
        (its message, the plugin's text, stays out: it may quote the data)."""
        span = self.span
        if error is not None:
            span.set_attribute("heliosdb.plugin.verdict", "error")
            span.set_attribute("error.type", error.code)
            span.set_status(Status(StatusCode.ERROR, error.message))
        elif verdict is not None:
            span.set_attribute("heliosdb.plugin.verdict", verdict.action)
            if verdict.action == "reject":
                sqlstate = verdict.payload[0]
                span.set_attribute("db.response.status_code", sqlstate)
                span.set_attribute("error.type", sqlstate)
                span.set_status(Status(StatusCode.ERROR, f"rejected with SQLSTATE {sqlstate}"))
        span.end()


class ExecuteSpan:
    def __init__(self, span: Span, statement: Span, sql: str) -> None:
        self.span = span
        self._statement = statement
        self._sql = sql

    def done(self, result: Result | None, error: BaseException | None) -> None:
        """Ends the span; the statement's gets the command tag the client gets."""
        if error is not None:
            _failed(self.span, error)
        elif result is not None:
            if result.columns:
                self.span.set_attribute("db.response.returned_rows", len(result.rows))
            self._statement.set_attribute("heliosdb.command_tag", command_tag(self._sql, result))
        self.span.end()


def _failed(span: Span, error: BaseException) -> None:
    sqlstate = sqlstate_for(error)
    span.set_attribute("db.response.status_code", sqlstate)
    span.set_attribute("error.type", sqlstate)
    # The engine's and SQLite's messages name tables and columns, not values;
    # a plugin's rejection message is the plugin's text, and stays out.
    description = None if isinstance(error, PluginRejected) else str(error)[:500]
    span.set_status(Status(StatusCode.ERROR, description))


# --- configuration ------------------------------------------------------------------------

SERVICE_NAME = "heliosdb-wasm"


def traces_url(endpoint: str | None) -> str:
    """Where spans go: ``--otlp-endpoint`` means what OTEL_EXPORTER_OTLP_ENDPOINT
    means, the collector's base URL, to which the traces path is added;
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is the whole URL."""
    if not endpoint:
        whole = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if whole:
            return whole
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318"
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else f"{base}/v1/traces"


def otlp_provider(endpoint: str | None) -> tuple[TracerProvider, str]:
    """A provider exporting to the OTLP/HTTP collector at ``endpoint`` (else
    the one the environment names) from a background thread, and the URL:
    spans queue (bounded: past 2048 waiting, the oldest go) and a slow
    or absent collector never holds up a statement."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME}
    )
    provider = TracerProvider(resource=resource)
    url = traces_url(endpoint)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    return provider, url


def tracing_of(provider: TracerProvider, *, statement_text: bool = False) -> Tracing:
    from .. import __version__

    return Tracing(
        provider.get_tracer("heliosdb_wasm.plugins", __version__),
        statement_text=statement_text,
    )
