"""What ``heliosdb-wasm plugin list | test | deploy | replay`` do
(docs/plugins.md §9), without a server: the command line only parses
options and prints what these return.

- ``list_plugins``: every plugin of a manifest, a plugins directory and a
  database, loaded as the server would load them.
- ``resolve``: a plugin named on the command line: a ``.wasm`` file, or the
  name of one in a manifest, a plugins directory or a database.
- ``run_statements``: statements through one plugin and the default executor
  on a database, with every hook's verdict (a developer's loop).
- ``deploy``: CREATE PLUGIN (or ALTER PLUGIN ... CANDIDATE) on a database,
  as one statement through its plugin DDL.
- ``replay``: captured statements (capture.py) through two versions of a
  plugin, and where their verdicts differ.
"""

from __future__ import annotations

import base64
import json
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import apsw

from .. import sqlast
from ..database import Database, check_name
from ..ddl import read_file, split_statements
from ..errors import InvalidArgument, PluginRejected, ProcedureError
from ..pgwire import WireError, WireSession, execute_statement, sqlstate_for
from ..pgwire.session import initial_variables
from ..policy import MAX_MODULE_BYTES
from ..registry import sha256_hex
from ..values import SqlValue
from .capture import Captured
from .manifest import HOOKS, SQL_ORIGIN, PipelineSettings, PluginSpec
from .pipeline import HookCall, Pipeline
from .reload import read_sources

# --- where plugins are found -------------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    """Where the command line looks for plugins (each optional)."""

    manifest: Path | None = None
    plugins_dir: Path | None = None
    db: Path | None = None

    def specs(self) -> tuple[list[PluginSpec], dict[str, int]]:
        """The plugins, as the server would serve them, and the registry
        version of each one created with SQL."""
        with self.database() as db:
            _, specs = read_sources(self.manifest, self.plugins_dir, db, PipelineSettings())
            versions = {spec.name: v for spec, v in db.plugin_specs()} if db is not None else {}
        return specs, versions

    @contextmanager
    def database(self) -> Iterator[Database | None]:
        if self.db is None:
            yield None
            return
        with open_existing(self.db) as db:
            yield db


@contextmanager
def open_existing(path: Path) -> Iterator[Database]:
    """A database file that must exist already (Database.open would make an empty one)."""
    if not path.is_file():
        raise InvalidArgument(f"no database file {path}")
    with Database.open(path) as db:
        yield db


@dataclass(frozen=True)
class PluginInfo:
    """One row of ``plugin list``."""

    name: str
    source: str  # "manifest" or "sql"
    origin: str
    version: int | None  # the registry's, for a plugin created with SQL
    sha256: str
    hooks: list[str]
    priority: int
    enabled: bool
    candidate_sha256: str | None
    candidate_percent: int


def list_plugins(sources: Sources) -> list[PluginInfo]:
    """Every plugin, in the order statements meet them. Each is loaded (its
    hooks are those its module exports unless configured), so a plugin the
    server could not load is an error here too."""
    specs, versions = sources.specs()
    pipeline = Pipeline()
    pipeline.configure(specs)
    by_name = {s.name: s for s in specs}
    rows = []
    for row in pipeline.plugins():
        spec = by_name[row["name"]]
        sql = spec.name in versions and spec.origin.startswith(SQL_ORIGIN)
        rows.append(
            PluginInfo(
                name=spec.name,
                source="sql" if sql else "manifest",
                origin=spec.origin,
                version=versions[spec.name] if sql else None,
                sha256=spec.sha256,
                hooks=list(row["hooks"]),
                priority=spec.priority,
                enabled=spec.enabled,
                candidate_sha256=sha256_hex(spec.candidate) if spec.candidate else None,
                candidate_percent=spec.candidate_percent if spec.candidate else 0,
            )
        )
    pipeline.close()
    return rows


def resolve(
    source: str,
    sources: Sources,
    *,
    config: Mapping[str, Any] | None = None,
    like: PluginSpec | None = None,
) -> PluginSpec:
    """The plugin ``source`` names: a ``.wasm`` file (with ``like``'s
    settings when given, else the defaults) or a plugin of ``sources``.
    ``config`` replaces the plugin's config."""
    path = Path(source)
    if source.endswith(".wasm") or path.is_file():
        try:
            wasm = read_file(path, MAX_MODULE_BYTES)
        except OSError as exc:
            raise InvalidArgument(f"cannot read the plugin {source}: {exc.strerror}") from None
        if wasm[:4] != b"\0asm":
            raise InvalidArgument(f"{source} is not a WebAssembly module (no \\0asm header)")
        if like is not None:
            spec = replace(like, wasm=wasm, origin=str(path), candidate=None, candidate_percent=0)
        else:
            spec = PluginSpec(name=_name_of(path), wasm=wasm, origin=str(path))
    else:
        if sources == Sources():
            raise InvalidArgument(
                f"no plugin file {source}; to name a plugin, give --manifest, --plugins-dir or --db"
            )
        specs, _ = sources.specs()
        found = next((s for s in specs if s.name == source), None)
        if found is None:
            known = ", ".join(sorted(s.name for s in specs)) or "none"
            raise InvalidArgument(f"no plugin named {source!r} (there are: {known})")
        spec = replace(found, candidate=None, candidate_percent=0, enabled=True)
    if config is not None:
        spec = replace(spec, config=dict(config))
    return spec


def _name_of(path: Path) -> str:
    name = re.sub(r"[^a-z0-9_-]", "_", path.name.split(".")[0].lower())
    return name or "plugin"


def parse_config(text: str | None) -> dict[str, Any] | None:
    """``--config``: a JSON object, or None when not given."""
    if text is None:
        return None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"--config is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("--config must be a JSON object")
    return doc


def parse_pairs(pairs: Sequence[str], what: str) -> dict[str, str]:
    """``name=value`` options (``--param user=alice``)."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidArgument(f"{what} must be name=value, got {pair!r}")
        out[name] = value
    return out


def statements_of(sql: Sequence[str], sql_file: Path | None) -> list[str]:
    """``--sql`` statements, then those of ``--sql-file``, one each."""
    texts = list(sql)
    if sql_file is not None:
        try:
            texts.append(sql_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidArgument(f"cannot read {sql_file}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"{sql_file}: not UTF-8 text: {exc}") from None
    statements = [s for text in texts for s in split_statements(text) if s.strip().strip(";")]
    if not statements:
        raise InvalidArgument("no statement to run: give --sql or --sql-file")
    return statements


# --- running statements through a plugin ------------------------------------------------------


@dataclass
class StatementRun:
    """One statement through a plugin: each hook's verdict and the outcome."""

    sql: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    outcome: str = "ok"  # ok, rejected, error
    sqlstate: str | None = None
    message: str | None = None
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    changes: int = 0

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"sql": self.sql, "hooks": self.calls, "outcome": self.outcome}
        if self.outcome == "ok":
            doc.update(columns=self.columns, rows=self.rows, changes=self.changes)
        else:
            doc.update(sqlstate=self.sqlstate, message=self.message)
        return doc

    def comparable(self) -> dict[str, Any]:
        """What two versions of a plugin must agree on: the verdicts and the
        outcome (with the rows the client would get)."""
        doc = self.to_json()
        doc.pop("sql")
        return doc


def call_summary(call: HookCall) -> dict[str, Any]:
    """A hook call in JSON: its stage, its verdict and the verdict's payload."""
    doc: dict[str, Any] = {"stage": call.stage, "plugin": call.plugin}
    if call.error is not None:
        doc.update(action="error", message=call.error.message)
        return doc
    verdict = call.verdict
    assert verdict is not None
    doc["action"] = verdict.action
    if verdict.action == "reject":
        doc["sqlstate"], doc["message"] = verdict.payload
    elif verdict.action == "rewrite" and call.stage == "pre-parse":
        doc["sql"] = verdict.payload
    elif verdict.action == "rewrite":
        try:
            doc["sql"] = sqlast.render(sqlast.loads(verdict.payload))
        except sqlast.AstError:
            doc["ast"] = verdict.payload  # refused by the pipeline; shown as it came
    elif verdict.action == "replace-rows":
        doc["rows"] = [[_cell(v) for v in row] for row in verdict.payload]
    if verdict.set_session:
        doc["set-session"] = dict(verdict.set_session)
    return doc


def _cell(value: SqlValue) -> Any:
    """A value as JSON can carry it (blobs as hex)."""
    return value.hex() if isinstance(value, bytes) else value


class Runner:
    """One plugin in a pipeline of its own, in front of the default executor
    on ``db``: what the server does for a statement, without a server."""

    def __init__(self, spec: PluginSpec, db: Database) -> None:
        self.db = db
        self.pipeline = Pipeline()
        self.pipeline.install(spec)
        self._sessions: dict[int, WireSession] = {}

    def session(self, connection: int, parameters: Mapping[str, str]) -> WireSession:
        found = self._sessions.get(connection)
        if found is None:
            params = dict(parameters)
            found = WireSession(params, initial_variables(params), self.db, connection)
            self._sessions[connection] = found
        return found

    def run(self, session: WireSession, sql: str, params: Sequence[SqlValue] = ()) -> StatementRun:
        calls: list[HookCall] = []
        run = StatementRun(sql)
        try:
            result = self.pipeline.run(session, sql, params, execute_statement, calls)
        except PluginRejected as exc:
            run.outcome, run.sqlstate, run.message = "rejected", exc.sqlstate, exc.message
        except (ProcedureError, WireError, apsw.Error) as exc:
            run.outcome, run.sqlstate = "error", sqlstate_for(exc)
            run.message = exc.message if isinstance(exc, ProcedureError | WireError) else str(exc)
        else:
            run.columns = list(result.columns)
            run.rows = [[_cell(v) for v in row] for row in result.rows]
            run.changes = result.changes
        run.calls = [call_summary(c) for c in calls]
        return run

    def close(self) -> None:
        self.pipeline.close()


def run_statements(
    spec: PluginSpec, statements: Sequence[str], parameters: Mapping[str, str], db: Database
) -> list[StatementRun]:
    """``statements`` one after the other on one session (``parameters`` its
    startup parameters: ``user``, ``tenant``, ...) through ``spec`` alone."""
    runner = Runner(spec, db)
    try:
        session = runner.session(1, {"user": "", "database": "", **parameters})
        return [runner.run(session, sql) for sql in statements]
    finally:
        runner.close()


# --- deploying ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployed:
    name: str
    version: int
    sha256: str
    candidate_percent: int | None  # set when deployed as the A/B candidate


def deploy(
    db_path: Path,
    name: str,
    wasm_path: Path,
    *,
    priority: int | None = None,
    hooks: Sequence[str] | None = None,
    capabilities: Sequence[str] | None = None,
    config: Mapping[str, Any] | None = None,
    limits: Mapping[str, str] | None = None,
    enabled: bool | None = None,
    candidate_percent: int | None = None,
) -> Deployed:
    """``wasm_path`` as the plugin ``name`` of the database: CREATE [OR
    REPLACE] PLUGIN, the settings not given kept from the plugin it
    replaces; or, with ``candidate_percent``, ALTER PLUGIN ... CANDIDATE,
    which keeps every setting. Either is one statement through the
    database's plugin DDL, which loads and checks the module first."""
    # The name goes into the statement's text: only a name the registry
    # takes (no quote, no space) gets that far.
    check_name(name, "plugin")
    try:
        wasm = read_file(wasm_path, MAX_MODULE_BYTES)
    except OSError as exc:
        raise InvalidArgument(f"cannot read {wasm_path}: {exc.strerror}") from None
    body = f"$wasm${base64.b64encode(wasm).decode()}$wasm$"
    with open_existing(db_path) as db:
        existing = {s.name: s for s, _ in db.plugin_specs()}.get(name)
        if candidate_percent is not None:
            given = [
                flag
                for flag, value in (
                    ("--priority", priority),
                    ("--hooks", hooks),
                    ("--capabilities", capabilities),
                    ("--config", config),
                    ("--limit", limits),
                    ("--enabled/--disabled", enabled),
                )
                if value is not None
            ]
            if given:
                raise InvalidArgument(
                    f"a candidate has its plugin's settings: {', '.join(given)} cannot be"
                    " given with --candidate-percent"
                )
            db.execute(f"ALTER PLUGIN {name} CANDIDATE PERCENT {candidate_percent} AS {body}")
        else:
            db.execute(
                _create_statement(
                    name, body, existing, priority, hooks, capabilities, config, limits, enabled
                )
            )
        for spec, version in db.plugin_specs():
            if spec.name == name:
                return Deployed(name, version, sha256_hex(wasm), candidate_percent)
    raise AssertionError("the plugin just deployed is not in the registry")  # pragma: no cover


def _create_statement(
    name: str,
    body: str,
    existing: PluginSpec | None,
    priority: int | None,
    hooks: Sequence[str] | None,
    capabilities: Sequence[str] | None,
    config: Mapping[str, Any] | None,
    limits: Mapping[str, str] | None,
    enabled: bool | None,
) -> str:
    if existing is not None:
        priority = existing.priority if priority is None else priority
        enabled = existing.enabled if enabled is None else enabled
        if hooks is None and existing.hooks is not None:
            hooks = sorted(existing.hooks)
        if capabilities is None:
            capabilities = sorted(existing.capabilities.grants)
        config = existing.config if config is None else config
        if limits is None:
            limits = {k: str(v) for k, v in existing.limits.items()}
    for hook in hooks or ():
        if hook not in HOOKS:
            raise InvalidArgument(
                f"--hooks: unknown hook {hook!r} (the hooks are {', '.join(HOOKS)})"
            )
    clauses = [f"CREATE OR REPLACE PLUGIN {name}"]
    if priority is not None:
        clauses.append(f"PRIORITY {priority}")
    if enabled is False:
        clauses.append("DISABLED")
    if hooks:
        clauses.append(f"HOOKS ({_strings(hooks)})")
    if capabilities:
        clauses.append(f"CAPABILITIES ({_strings(capabilities)})")
    if limits:
        for key, value in limits.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or not re.fullmatch(
                r"[0-9]+(\.[0-9]+)?", value
            ):
                raise InvalidArgument(f"--limit must be name=number, got {key}={value}")
        clauses.append("LIMITS (" + ", ".join(f"{k} = {v}" for k, v in limits.items()) + ")")
    if config:
        clauses.append(f"CONFIG {_string(json.dumps(dict(config)))}")
    clauses.append(f"AS {body}")
    return " ".join(clauses)


def _string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _strings(items: Sequence[str]) -> str:
    return ", ".join(_string(i) for i in items)


# --- replaying a capture ---------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """A captured statement on which two versions disagree."""

    record: Captured
    a: StatementRun
    b: StatementRun

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.record.line,
            "connection": self.record.connection,
            "sql": self.record.sql,
            "a": self.a.comparable(),
            "b": self.b.comparable(),
        }


@dataclass(frozen=True)
class Replay:
    statements: int
    differences: list[Difference]

    def to_json(self) -> dict[str, Any]:
        return {
            "statements": self.statements,
            "differ": len(self.differences),
            "differences": [d.to_json() for d in self.differences],
        }


def replay(
    records: Sequence[Captured], a: PluginSpec, b: PluginSpec, db: Path | None = None
) -> Replay:
    """``records`` through ``a`` and through ``b``, each on a database of its
    own (a copy of ``db``, else an empty one in memory), in capture order.
    Before each statement its session has the variables captured with it
    (those earlier plugins set included), so each version sees what the
    plugin saw in production."""
    differences = []
    with ExitStack() as stack:
        runners = [Runner(spec, stack.enter_context(_scratch(db))) for spec in (a, b)]
        for runner in runners:
            stack.callback(runner.close)
        for record in records:
            runs = []
            for runner in runners:
                session = runner.session(record.connection, record.parameters)
                session.variables = dict(record.session)
                session.protected = set()
                runs.append(runner.run(session, record.sql, record.params or ()))
            if runs[0].comparable() != runs[1].comparable():
                differences.append(Difference(record, runs[0], runs[1]))
    return Replay(len(records), differences)


@contextmanager
def _scratch(db: Path | None) -> Iterator[Database]:
    """A database to replay on: a snapshot of ``db`` (VACUUM INTO copies a
    consistent one, its WAL included), or an empty one."""
    if db is None:
        with Database.open(":memory:") as scratch:
            yield scratch
        return
    with tempfile.TemporaryDirectory(prefix="heliosdb-replay-") as tmp:
        copy = Path(tmp) / "replay.db"
        with open_existing(db) as source:
            source.conn.execute("VACUUM INTO ?", (str(copy),))
        with Database.open(copy) as scratch:
            yield scratch
