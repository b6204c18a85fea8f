"""The pipeline's Prometheus metrics, the HTTP endpoint serving them, and
the JSON log lines."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

_BUCKETS = (25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 0.1, 1.0)


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(_BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(_BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.sum += seconds
        self.count += 1


class Metrics:
    """Counters and latency histograms, rendered in Prometheus' text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, int, str, str], int] = {}
        self._latency: dict[tuple[str, int, str], _Histogram] = {}
        self._queries: dict[str, int] = {}
        self._query_latency = _Histogram()
        self._events: dict[tuple[str, str], int] = {}

    def hook(self, plugin: str, version: int, stage: str, outcome: str, seconds: float) -> None:
        with self._lock:
            key = (plugin, version, stage, outcome)
            self._calls[key] = self._calls.get(key, 0) + 1
            hist = self._latency.setdefault((plugin, version, stage), _Histogram())
            hist.observe(seconds)

    def query(self, outcome: str, seconds: float) -> None:
        with self._lock:
            self._queries[outcome] = self._queries.get(outcome, 0) + 1
            self._query_latency.observe(seconds)

    def event(self, plugin: str, kind: str) -> None:
        with self._lock:
            self._events[(plugin, kind)] = self._events.get((plugin, kind), 0) + 1

    def calls(self, plugin: str, stage: str | None = None) -> int:
        with self._lock:
            return sum(
                n for (p, _, s, _), n in self._calls.items() if p == plugin and stage in (None, s)
            )

    def render(self) -> str:
        out: list[str] = []
        with self._lock:
            out += [
                "# HELP heliosdb_plugin_calls_total Hook calls by plugin, version, stage, outcome.",
                "# TYPE heliosdb_plugin_calls_total counter",
            ]
            for (p, v, s, o), n in sorted(self._calls.items()):
                out.append(
                    f'heliosdb_plugin_calls_total{{plugin="{p}",version="{v}",stage="{s}",'
                    f'outcome="{o}"}} {n}'
                )
            out += [
                "# HELP heliosdb_plugin_duration_seconds Hook latency.",
                "# TYPE heliosdb_plugin_duration_seconds histogram",
            ]
            for (p, v, s), h in sorted(self._latency.items()):
                labels = f'plugin="{p}",version="{v}",stage="{s}"'
                out += _histogram_lines("heliosdb_plugin_duration_seconds", labels, h)
            out += [
                "# HELP heliosdb_queries_total Statements through the endpoint by outcome.",
                "# TYPE heliosdb_queries_total counter",
            ]
            for o, n in sorted(self._queries.items()):
                out.append(f'heliosdb_queries_total{{outcome="{o}"}} {n}')
            out += [
                "# HELP heliosdb_query_duration_seconds Statement latency including plugins.",
                "# TYPE heliosdb_query_duration_seconds histogram",
            ]
            out += _histogram_lines("heliosdb_query_duration_seconds", "", self._query_latency)
            out += [
                "# HELP heliosdb_plugin_events_total Reloads, rollbacks and load failures.",
                "# TYPE heliosdb_plugin_events_total counter",
            ]
            for (p, k), n in sorted(self._events.items()):
                out.append(f'heliosdb_plugin_events_total{{plugin="{p}",event="{k}"}} {n}')
        return "\n".join(out) + "\n"


def _histogram_lines(name: str, labels: str, h: _Histogram) -> list[str]:
    sep = "," if labels else ""
    lines = []
    running = 0
    for bound, n in zip(_BUCKETS, h.counts, strict=False):
        running += n
        lines.append(f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {running}')
    lines.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {h.count}')
    lines.append(f"{name}_sum{{{labels}}} {h.sum:.9f}" if labels else f"{name}_sum {h.sum:.9f}")
    lines.append(f"{name}_count{{{labels}}} {h.count}" if labels else f"{name}_count {h.count}")
    return lines


class MetricsServer:
    """``GET /metrics`` in Prometheus' text format, from a background thread."""

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 9187) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                body = metrics.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # scrapes every few seconds would drown the server's log

        self._http = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="heliosdb-metrics", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._http.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, with the plugin fields the pipeline logs
    (plugin, version, query_id, stage, event, error) when present."""

    FIELDS = ("plugin", "version", "query_id", "stage", "event", "error")

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                doc[name] = value
        return json.dumps(doc)
