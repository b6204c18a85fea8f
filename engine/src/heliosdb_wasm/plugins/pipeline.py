"""Query-hook plugins: loading, the pipeline every statement runs through,
hot reload with automatic rollback, A/B routing and metrics (docs/plugins.md).

A Pipeline holds one ``_Slot`` per plugin name. A statement takes an
immutable snapshot of the slots when it starts and calls the versions it
chose then, so replacing a plugin (a new file, a new manifest, ``CREATE
PLUGIN``) swaps one reference: statements in flight finish on the version
they started with and new statements see the new one. Plugins are loaded
with the procedure machinery (invoke.load): same ABIs, capabilities, limits
and compiled-code cache; each version keeps its own pool of instances,
shared by every connection.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import sqlast
from ..errors import (
    InvalidArgument,
    PluginError,
    PluginRejected,
    ProcedureError,
)
from ..registry import sha256_hex
from ..runtime import Runtime, default_runtime
from ..values import SqlValue

if TYPE_CHECKING:
    from ..database import Result
    from ..pgwire import Executor, WireSession
    from .capture import Capture
    from .tracing import StatementTrace, Tracing
from .manifest import PipelineSettings, PluginSpec
from .metrics import Metrics
from .reload import Sources, Watcher
from .verdicts import Verdict, value_to_json
from .version import Counters, PluginVersion

log = logging.getLogger("heliosdb_wasm.plugins")


@dataclass(frozen=True)
class HookCall:
    """One hook call of a statement and what it answered (or how it failed)."""

    stage: str
    plugin: str
    version: int
    verdict: Verdict | None
    error: PluginError | None


@dataclass
class _Slot:
    """A plugin name's live state: what serves now, what served before, the A/B candidate."""

    spec: PluginSpec
    current: PluginVersion
    previous: PluginVersion | None = None
    candidate: PluginVersion | None = None
    on_probation: set[int] = field(default_factory=set)
    # The module of a candidate dropped on probation: it stays dropped until
    # the spec names another, whatever else reloads.
    dropped: str | None = None

    def choose(self, session_key: int) -> PluginVersion:
        # Stable per session: a session sees one version for its lifetime.
        bucket = zlib.crc32(f"{self.spec.name}:{session_key}".encode()) % 100
        if self.candidate is not None and bucket < self.spec.candidate_percent:
            return self.candidate
        return self.current


class Pipeline:
    """The ordered plugins every statement runs through."""

    def __init__(
        self,
        runtime: Runtime | None = None,
        settings: PipelineSettings | None = None,
        tracing: Tracing | None = None,
        capture: Capture | None = None,
    ) -> None:
        self.runtime = runtime or default_runtime()
        self.settings = settings or PipelineSettings()
        # OpenTelemetry spans (tracing.py) and the statement capture
        # (capture.py), or None: no cost but a test each.
        self.tracing = tracing
        self.capture = capture
        self.metrics = Metrics()
        self._counters = Counters()
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._order: tuple[_Slot, ...] = ()
        self._versions = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._watcher: Watcher | None = None

    # -- configuration ------------------------------------------------------

    def install(self, spec: PluginSpec) -> None:
        """Adds a plugin, or replaces its version if the spec changed. Loading
        happens before anything is swapped: a spec that fails to load leaves
        the pipeline as it was."""
        with self._lock:
            slot = self._slots.get(spec.name)
        new = self._prepare(spec, slot)
        if new is not None:
            self._commit({spec.name: new}, keep=None)

    def configure(self, specs: Sequence[PluginSpec]) -> None:
        """Makes the pipeline exactly ``specs``: new ones added, changed ones
        reloaded, missing ones removed - all in one swap, after every spec has
        loaded, so a manifest with one bad plugin changes nothing."""
        with self._lock:
            slots = dict(self._slots)
        prepared = {}
        for spec in specs:
            new = self._prepare(spec, slots.get(spec.name))
            if new is not None:
                prepared[spec.name] = new
        self._commit(prepared, keep={s.name for s in specs})

    def _prepare(self, spec: PluginSpec, slot: _Slot | None) -> _Slot | None:
        """The slot that serves ``spec`` next, loaded but not live yet; None
        if ``slot`` already serves it."""
        if slot is not None and slot.spec.fingerprint == spec.fingerprint:
            if slot.spec == spec:
                return None
            # Priority, enabled or the A/B share changed: the same versions serve.
            new = _Slot(**{**slot.__dict__, "spec": spec, "on_probation": set(slot.on_probation)})
        else:
            new = _Slot(spec=spec, current=self._load(spec, spec.wasm, spec.origin))
            if slot is not None:
                new.previous = slot.current
                new.on_probation.add(new.current.version)
        wanted = sha256_hex(spec.candidate) if spec.candidate is not None else None
        if wanted is None:
            new.candidate = None
        elif wanted != new.dropped and (new.candidate is None or new.candidate.sha256 != wanted):
            assert spec.candidate is not None
            origin = spec.candidate_origin or "candidate"
            new.candidate = self._load(spec, spec.candidate, origin)
            new.on_probation.add(new.candidate.version)
        return new

    def _commit(self, prepared: dict[str, _Slot], keep: set[str] | None) -> None:
        """Swaps in ``prepared`` and, unless ``keep`` is None, drops every
        plugin not named in it - one change under the lock."""
        with self._lock:
            reloaded = [
                name
                for name, new in prepared.items()
                if name in self._slots and new.current is not self._slots[name].current
            ]
            self._slots.update(prepared)
            if keep is not None:
                for name in [n for n in self._slots if n not in keep]:
                    del self._slots[name]
            self._reorder()
        for name in reloaded:
            self.metrics.event(name, "reload")
            version = prepared[name].current.version
            extra = {"plugin": name, "version": version, "event": "reload"}
            log.info("plugin reloaded", extra=extra)

    def _load(self, spec: PluginSpec, wasm: bytes, origin: str) -> PluginVersion:
        try:
            return PluginVersion(
                spec, next(self._versions), wasm, origin, self.runtime, self._counters
            )
        except ProcedureError as exc:
            self.metrics.event(spec.name, "load-failed")
            raise exc.located(spec.name, None) from None

    def remove(self, name: str) -> None:
        with self._lock:
            if name not in self._slots:
                raise InvalidArgument(f"no plugin named {name!r}")
            del self._slots[name]
            self._reorder()

    def _reorder(self) -> None:
        self._order = tuple(
            sorted(self._slots.values(), key=lambda s: (s.spec.priority, s.spec.name))
        )

    def plugins(self) -> list[dict[str, Any]]:
        """What SHOW PLUGINS lists."""
        rows = []
        for slot in self._order:
            rows.append(
                {
                    "name": slot.spec.name,
                    "version": slot.current.version,
                    "priority": slot.spec.priority,
                    "enabled": slot.spec.enabled,
                    "hooks": sorted(slot.current.hooks),
                    "sha256": slot.current.sha256,
                    "previous": slot.previous.version if slot.previous else None,
                    "candidate": slot.candidate.version if slot.candidate else None,
                    "candidate_percent": slot.spec.candidate_percent if slot.candidate else 0,
                    "calls": self.metrics.calls(slot.spec.name),
                    "origin": slot.current.origin,
                }
            )
        return rows

    # -- hot reload ----------------------------------------------------------

    def watch(
        self,
        manifest: Path | None = None,
        database: Path | None = None,
        plugins_dir: Path | None = None,
    ) -> None:
        """Loads the plugins of ``manifest`` (plugins.toml), of every manifest
        in ``plugins_dir`` and of ``database`` (CREATE PLUGIN), then keeps the
        pipeline in step with them, and with the files the manifests name,
        from a background thread."""
        self._watcher = Watcher(
            manifest,
            database,
            plugins_dir=plugins_dir,
            apply=self._apply,
            settings=lambda: self.settings,
            loaded=self._loaded_files,
            fallback=self.settings,
        )
        self._watcher.start()

    def reload_if_changed(self) -> bool:
        """See Watcher.reload_if_changed; False when nothing is watched."""
        return self._watcher.reload_if_changed() if self._watcher is not None else False

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()

    def _apply(self, sources: Sources) -> None:
        settings, specs = sources
        self.configure(specs)
        self.settings = settings

    def _loaded_files(self) -> list[str]:
        files = []
        for slot in self._order:
            files.append(slot.spec.origin)
            if slot.spec.candidate_origin:
                files.append(slot.spec.candidate_origin)
        return files

    # -- probation and rollback ------------------------------------------------

    def _judge(self, slot_name: str, version: PluginVersion, failed: bool) -> None:
        with self._lock:
            slot = self._slots.get(slot_name)
            if slot is None or version.version not in slot.on_probation:
                return
            version.calls += 1
            version.failures += int(failed)
            s = self.settings
            rate = version.failures / version.calls
            if version.calls >= s.min_calls and rate > s.max_error_rate:
                slot.on_probation.discard(version.version)
                if slot.candidate is version:
                    new = _Slot(**{**slot.__dict__, "candidate": None, "dropped": version.sha256})
                    what = "candidate dropped"
                elif slot.current is version and slot.previous is not None:
                    new = _Slot(**{**slot.__dict__, "current": slot.previous, "previous": None})
                    what = "rolled back"
                else:
                    return
                self._slots[slot_name] = new
                self._reorder()
                self.metrics.event(slot_name, "rollback")
                log.warning(
                    f"plugin {what}: {version.failures} of {version.calls} calls failed",
                    extra={"plugin": slot_name, "version": version.version, "event": "rollback"},
                )
            elif version.calls >= s.probation_calls:
                slot.on_probation.discard(version.version)

    # -- running a statement ---------------------------------------------------

    def executor(self, inner: Executor) -> Executor:
        """``inner`` (pgwire.execute_statement) with every plugin around it."""

        def run(session: WireSession, sql: str, params: Sequence[SqlValue]) -> Result:
            return self.run(session, sql, params, inner)

        return run

    def run(
        self,
        session: WireSession,
        sql: str,
        params: Sequence[SqlValue],
        inner: Executor,
        calls: list[HookCall] | None = None,
    ) -> Result:
        """``sql`` through the plugins and ``inner``; every hook call is
        appended to ``calls`` when it is given (the plugin tools read them)."""
        trip = self.trip(session, calls=calls)
        trip.record(sql, params)
        with trip.timed(sql):
            if not trip.chosen:
                return trip.execute(inner, sql, params)
            sql = trip.parse(sql)
            trip.before_execution(sql, params)
            result = trip.execute(inner, sql, params)
            if result.columns and trip.wants("post-execution"):
                replaced = trip.after_execution(list(result.columns), result.rows)
                if replaced is not None:
                    result.rows = replaced
            return result

    def trip(
        self,
        session: WireSession,
        dialect: str = sqlast.DIALECT,
        whole_query: bool = False,
        calls: list[HookCall] | None = None,
    ) -> Trip:
        """A statement's way through the pipeline, one stage at a time (the
        proxy runs the parse stages at Parse and the others at Execute).
        ``whole_query``: the text may hold several statements (the proxy
        forwards a simple query whole), so a post-execution hook, which
        must see every row, needs it to hold exactly one."""
        return Trip(self, session, dialect, whole_query, calls)

    @staticmethod
    def _after(stage: str, verdict: Verdict, args: dict[str, Any]) -> dict[str, Any]:
        """The next plugin of a stage sees the previous one's rewrite."""
        if verdict.action == "rewrite":
            return {"sql": verdict.payload} if stage == "pre-parse" else {"ast": verdict.payload}
        if verdict.action == "replace-rows":
            return {"rows": [[value_to_json(v) for v in row] for row in verdict.payload]}
        return {}

    def _context(
        self, session: WireSession, version: PluginVersion, query_id: int, tables: list[str]
    ) -> dict[str, Any]:
        params = session.params
        return {
            "query-id": query_id,
            "user": params.get("user", ""),
            "database": params.get("database", ""),
            "application-name": params.get("application_name", ""),
            "connection": [[k, v] for k, v in params.items()],
            "session": [[k, v] for k, v in session.variables.items()],
            "tables": list(tables),
            "config": version.config_json,
        }


class Trip:
    """One statement's way through the pipeline: the versions it chose when
    it began (a session sees one version of each plugin), its query id, the
    tables it names. Each stage runs every chosen plugin that has that hook,
    in priority order, the next one seeing the previous one's rewrite; a
    reject raises PluginRejected, a failing hook PluginError."""

    def __init__(
        self,
        pipeline: Pipeline,
        session: WireSession,
        dialect: str,
        whole_query: bool,
        calls: list[HookCall] | None,
    ) -> None:
        self.pipeline = pipeline
        self.session = session
        self.dialect = dialect
        self.whole_query = whole_query
        self.calls = calls
        self.statement: StatementTrace | None = None
        order = pipeline._order  # the snapshot this statement runs with
        self.chosen = [
            (slot.spec.name, slot.choose(session.process_id)) for slot in order if slot.spec.enabled
        ]
        self.query_id = next(pipeline._query_ids)
        self.tables: list[str] = []

    def wants(self, *stages: str) -> bool:
        """Whether a chosen plugin has one of ``stages``."""
        return any(stage in version.hooks for _, version in self.chosen for stage in stages)

    @contextlib.contextmanager
    def timed(self, sql: str, count: bool = True) -> Iterator[None]:
        """Counts the statement in the pipeline's metrics by its outcome
        (unless ``count`` is False), in a span of its own when traced (the
        hooks' spans are its children)."""
        started = time.perf_counter()
        tracing = self.pipeline.tracing
        if tracing is not None:
            self.statement = tracing.statement(self.session, sql, self.query_id)
        outcome = "error"
        error: BaseException | None = None
        try:
            yield
            outcome = "ok"
        except PluginRejected as exc:
            outcome, error = "rejected", exc
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            if count:
                self.pipeline.metrics.query(outcome, time.perf_counter() - started)
            if self.statement is not None:
                self.statement.finish(outcome, error)

    def record(self, sql: str, params: Sequence[SqlValue]) -> None:
        """The statement in the capture file, when there is one (plugin replay)."""
        capture = self.pipeline.capture
        if capture is not None:
            capture.record(self.session, sql, params)

    def execute(self, inner: Executor, sql: str, params: Sequence[SqlValue]) -> Result:
        """The statement itself, in a span of its own when traced."""
        statement = self.statement
        if statement is None:
            return inner(self.session, sql, params)
        span = statement.execute(sql)
        try:
            result = inner(self.session, sql, params)
        except BaseException as exc:
            span.done(None, exc)
            raise
        span.done(result, None)
        return result

    def parse(self, sql: str) -> str:
        """pre-parse and post-parse: the statement as it will run."""
        for _, verdict in self._stage("pre-parse", sql=sql):
            if verdict.action == "rewrite":
                sql = verdict.payload
        if self.wants("post-parse"):
            ast, found = _parsed(sql, self.dialect)
            self.tables[:] = found
            rewritten: str | None = None
            for version, verdict in self._stage("post-parse", ast=ast):
                if verdict.action == "rewrite":
                    try:
                        # Rendered now, to blame this plugin for a bad tree.
                        _rendered(verdict.payload, self.dialect)
                    except sqlast.AstError as exc:
                        raise PluginError(
                            f"post-parse returned a bad AST: {exc.message}",
                            procedure=version.name,
                            version=version.version,
                        ) from None
                    rewritten = verdict.payload
            if rewritten is not None:
                sql, found = _rendered(rewritten, self.dialect)
                self.tables[:] = found
        elif self.whole_query and self.wants("post-execution"):
            # The rows must be the one statement's: a second statement's
            # would pass no hook.
            self.tables[:] = _parsed(sql, self.dialect)[1]
        elif self.wants("pre-execution", "post-execution"):
            # Unparsable: the context's tables stay empty; no stage here fails
            # closed on them.
            with contextlib.suppress(sqlast.AstError):
                self.tables[:] = _parsed(sql, self.dialect)[1]
        return sql

    def before_execution(self, sql: str, params: Sequence[SqlValue]) -> None:
        """pre-execution: may only allow or reject."""
        if not self.wants("pre-execution"):
            return  # the parameters' JSON would be made for no hook
        for _ in self._stage("pre-execution", sql=sql, params=[value_to_json(p) for p in params]):
            pass

    def after_execution(
        self, columns: list[str], rows: Sequence[Sequence[SqlValue]]
    ) -> list[tuple[SqlValue, ...]] | None:
        """post-execution: the rows that replace ``rows``, or None if no
        plugin replaced them."""
        replaced: list[tuple[SqlValue, ...]] | None = None
        width = len(columns)
        doc = [[value_to_json(v) for v in row] for row in rows]
        for version, verdict in self._stage("post-execution", columns=columns, rows=doc):
            if verdict.action == "replace-rows":
                bad = next((r for r in verdict.payload if len(r) != width), None)
                if bad is not None:
                    raise PluginError(
                        f"replace-rows gave a row of {len(bad)} values for {width} columns",
                        procedure=version.name,
                        version=version.version,
                    )
                replaced = [tuple(row) for row in verdict.payload]
        return replaced

    def _stage(self, name: str, **args: Any) -> Iterator[tuple[PluginVersion, Verdict]]:
        pipeline, session, query_id = self.pipeline, self.session, self.query_id
        statement, calls = self.statement, self.calls
        db_session = session.db.session
        for slot_name, version in self.chosen:
            if name not in version.hooks:
                continue
            ctx = pipeline._context(session, version, query_id, self.tables)
            span = (
                statement.hook(name, slot_name, version.version, version.sha256)
                if statement is not None
                else None
            )
            t = time.perf_counter()
            try:
                verdict = version.call(name, db_session, ctx, args)
            except PluginError as exc:
                pipeline.metrics.hook(
                    slot_name, version.version, name, "error", time.perf_counter() - t
                )
                if span is not None:
                    span.done(None, exc)
                if calls is not None:
                    calls.append(HookCall(name, slot_name, version.version, None, exc))
                pipeline._judge(slot_name, version, failed=True)
                log.error(
                    str(exc),
                    extra={
                        "plugin": slot_name,
                        "version": version.version,
                        "query_id": query_id,
                        "stage": name,
                        "event": "hook-failed",
                    },
                )
                raise
            outcome = "rejected" if verdict.action == "reject" else verdict.action
            pipeline.metrics.hook(
                slot_name, version.version, name, outcome, time.perf_counter() - t
            )
            if span is not None:
                span.done(verdict, None)
            if calls is not None:
                calls.append(HookCall(name, slot_name, version.version, verdict, None))
            pipeline._judge(slot_name, version, failed=False)
            for key, value in verdict.set_session:
                session.variables[key] = value
                session.protected.add(key)
            if verdict.action == "reject":
                sqlstate, message = verdict.payload
                log.info(
                    "statement rejected",
                    extra={
                        "plugin": slot_name,
                        "version": version.version,
                        "query_id": query_id,
                        "stage": name,
                        "event": "rejected",
                    },
                )
                raise PluginRejected(
                    message, sqlstate=sqlstate, plugin=slot_name, version=version.version
                )
            yield version, verdict
            args = {**args, **pipeline._after(name, verdict, args)}


# --- parsing, cached ---------------------------------------------------------------
# Applications send the same statements again and again (prepared statements,
# ORMs); parsing and rendering with sqlglot costs hundreds of microseconds, a
# dictionary lookup nothing. Cached as text, since sqlglot trees are mutable.


@functools.lru_cache(maxsize=2048)
def _parsed(sql: str, dialect: str) -> tuple[str, tuple[str, ...]]:
    """The JSON AST of the one statement in ``sql`` and its tables."""
    trees = sqlast.parse(sql, dialect) if sql.strip() else []
    if len(trees) != 1:
        raise PluginRejected(
            f"the query plugins need exactly one statement per query, got {len(trees)}",
            sqlstate="42601",
            plugin="pipeline",
            version=0,
        )
    return sqlast.dumps(trees[0]), tuple(sqlast.tables(trees[0]))


@functools.lru_cache(maxsize=2048)
def _rendered(ast: str, dialect: str) -> tuple[str, tuple[str, ...]]:
    """The SQL text of a (rewritten) JSON AST and its tables."""
    tree = sqlast.loads(ast)
    return sqlast.render(tree, dialect), tuple(sqlast.tables(tree))
