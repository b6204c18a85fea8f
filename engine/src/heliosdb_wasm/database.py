"""The embedded database: SQLite plus procedure DDL, with procedures bound into SQL.

``Database.execute`` splits a script into statements, handles procedure DDL
and CALL itself, and passes everything else to SQLite. Active procedures are
bound as SQL functions (scalar procedures) or eponymous virtual tables
(``RETURNS TABLE`` procedures, usable as ``SELECT * FROM proc(args)``).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import apsw

from . import _core, archive, ddl, native, policy, telemetry
from .errors import (
    AbiError,
    CapabilityDenied,
    DatabaseBusy,
    InvalidArgument,
    ProcedureError,
    RegistryError,
    ResourceLimitExceeded,
    RoleError,
    SqlError,
)
from .hostapi import Connection, Session, sql_error
from .invoke import (
    Aggregate,
    LoadedModule,
    Runner,
    Verified,
    load,
    load_singlestore,
    load_stored,
)
from .plugins.manifest import (
    SQL_ORIGIN,
    PluginSpec,
    spec_from_ddl,
    spec_from_json,
    spec_to_json,
)
from .plugins.version import check as check_plugin
from .policy import Capabilities, Limits
from .registry import Extension, ProcedureVersion, Registry, sha256_hex
from .roles import Role, verifier_for
from .roles import check_name as check_role_name
from .runtime import Runtime, default_runtime
from .singlestore.archive import SingleStoreArchive
from .tables import TableModule
from .telemetry import LogRecord
from .values import Column, Signature, SqlType, SqlValue, to_sqlite

_log = logging.getLogger("heliosdb_wasm")
BUSY_TIMEOUT_MS = 5000
# Procedure and plugin names: ASCII identifiers (SQLite folds only ASCII
# case, so "É" and "é" would be one function to it and two to the registry)
# no longer than PostgreSQL's NAMEDATALEN - 1.
MAX_NAME_LENGTH = 63
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_ENGINE_TABLE = re.compile(re.escape(policy.REGISTRY_PREFIX), re.IGNORECASE)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _serialized(
    method: Callable[Concatenate[Database, _P], _R],
) -> Callable[Concatenate[Database, _P], _R]:
    """One thread at a time on a Database (see Database._turn)."""

    @functools.wraps(method)
    def wrapper(self: Database, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        # Not a `with self._turn()`: a generator context manager costs more
        # than a numeric procedure's whole call (Database.call is one).
        me = self._take_turn()
        try:
            return method(self, *args, **kwargs)
        finally:
            self._end_turn(me)

    return wrapper


@dataclass
class Result:
    """The rows of the last statement executed (empty for writes)."""

    columns: list[str] = field(default_factory=list)
    rows: list[tuple[SqlValue, ...]] = field(default_factory=list)
    changes: int = 0
    # The columns' declared types (None for an expression), when SQLite ran
    # the statement: what the wire endpoint describes them as.
    decltypes: list[str | None] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[SqlValue, ...]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def scalar(self) -> SqlValue:
        """The first column of the first row (``None`` when there is none)."""
        return self.rows[0][0] if self.rows and self.rows[0] else None


class Database:
    """An embedded SQLite database with WebAssembly procedures.

    Use ``Database.open(path)`` (or ``heliosdb_wasm.open``), preferably as a
    context manager so the file is closed.

    A Database may be shared by threads: its operations take turns (SQLite
    runs one statement at a time on a connection anyway), and a transaction
    a thread opens with BEGIN belongs to that thread until it ends — other
    threads wait for it, up to the busy timeout, then get DatabaseBusy. For
    concurrent transactions open one Database per thread.
    """

    def __init__(
        self,
        conn: apsw.Connection,
        *,
        limits: Limits | None = None,
        runtime: Runtime | None = None,
        base_dir: Path | None = None,
        seal_key: bytes | None = None,
        busy_timeout: float = BUSY_TIMEOUT_MS / 1000,
    ) -> None:
        self.conn = conn
        self.limits = limits or Limits()
        self.runtime = runtime or default_runtime()
        self.base_dir = base_dir
        self.registry = Registry(conn, seal_key)
        self.session = Session(conn, self._is_procedure)
        self._bound: dict[str, tuple[str, int]] = {}  # lower name -> (kind, nargs)
        self._signatures: dict[str, Signature] = {}  # lower name -> as bound
        # Bound procedures that may change the database (see _may_write):
        # while there are none, a statement needs no savepoint of its own.
        self._writers: set[str] = set()
        self._runners: dict[str, Runner] = {}
        # serve_clients(): a remote client's connection (pgwire).
        self._client = False
        self._allow_ddl = False
        self._reserved: frozenset[str] = frozenset()
        # Scalars and aggregates SQLite calls in the core directly, by name.
        self._scalars: dict[str, _core.Scalar | _core.AggregateFunction] = {}
        self.busy_timeout = busy_timeout
        self._closed = False
        self._lock = threading.RLock()
        # The thread whose transaction (BEGIN ...) is open, if any: others
        # wait for it on _turn_over.
        self._tx_thread: int | None = None
        self._turn_over = threading.Condition(self._lock)
        # Procedures whose registry rows cannot be used, by lower name.
        self._damaged: dict[str, ProcedureError] = {}
        conn.execute("PRAGMA foreign_keys = ON")
        with self._atomic():
            self.registry.ensure_schema()
            self.conn.cursor().execute(telemetry.SCHEMA)
        for name in self.registry.names():
            # One bad row must not make the whole file unopenable.
            try:
                self._bind(self.registry.get(name))
            except (ProcedureError, apsw.Error) as exc:
                error = exc if isinstance(exc, ProcedureError) else sql_error(exc)
                _log.warning("procedure %s is not available: %s", name, error)
                self._damaged[name.lower()] = error

    @classmethod
    def open(
        cls,
        path: str | Path = ":memory:",
        *,
        limits: Limits | None = None,
        runtime: Runtime | None = None,
        wal: bool = True,
        seal_key: bytes | None = None,
        busy_timeout: float = BUSY_TIMEOUT_MS / 1000,
    ) -> Database:
        """Open (creating if needed) a database file, or ``":memory:"``.

        ``wal``: switch a file still in rollback-journal mode to WAL, so
        readers in other processes never make a commit wait (the mode is
        the file's, kept by every later opener). ``seal_key``: the key the
        registry's rows are sealed with (docs/security.md); without it they
        carry a plain SHA-256. ``busy_timeout``: seconds to wait for a lock
        another connection (or another thread's transaction) holds before
        failing with DatabaseBusy.
        """
        try:
            conn = Connection(str(path))
            # Other connections (processes, threads) may hold the write lock
            # for a moment: wait for it rather than fail at once.
            conn.set_busy_timeout(int(busy_timeout * 1000))
            if wal and str(path) != ":memory:" and str(path):
                _switch_to_wal(conn, path)
            return cls(
                conn, limits=limits, runtime=runtime, seal_key=seal_key, busy_timeout=busy_timeout
            )
        except apsw.BusyError as exc:
            raise DatabaseBusy(f"cannot open database {path}: {exc}; retry") from None
        except apsw.Error as exc:
            raise SqlError(f"cannot open database {path}: {exc}") from None

    def close(self) -> None:
        """Closes the file (a transaction left open is rolled back); closing
        twice is harmless, any other use afterwards an InvalidArgument."""
        with self._lock:
            if self._closed:
                return
            self._flush_telemetry(force=True)
            self._runners.clear()
            for key in list(self._scalars):
                self._retire(key)
            # SQLite does not close a connection whose statements are open.
            self.session.gate.clear_statements()
            self.conn.close()
            self._closed = True

    def _take_turn(self) -> int:
        """Waits until no other thread has a transaction open on the
        connection, and holds the Database's lock; the thread's id."""
        me = threading.get_ident()
        turn = self._turn_over
        turn.acquire()
        try:
            if self._closed:
                raise InvalidArgument("the database is closed")
            if self._tx_thread not in (None, me) and not turn.wait_for(
                lambda: self._tx_thread in (None, me) or self._abandoned(), self.busy_timeout
            ):
                raise DatabaseBusy(
                    "another thread has a transaction open on this Database; "
                    "use one Database per thread for concurrent transactions"
                )
        except BaseException:
            turn.release()
            raise
        return me

    def _end_turn(self, me: int) -> None:
        """Ends the turn ``_take_turn`` began: a transaction the thread
        left open keeps the connection its own until it ends."""
        try:
            try:
                open_tx = not self.conn.getautocommit()
            except apsw.Error:  # closed
                open_tx = False
            if open_tx:
                self._tx_thread = me
            elif self._tx_thread is not None:
                self._tx_thread = None
                self._turn_over.notify_all()
        finally:
            self._turn_over.release()

    def _abandoned(self) -> bool:
        """Whether the thread that owns the open transaction has ended
        without finishing it: nobody can ever commit it, so it is rolled
        back (with a warning) instead of blocking every other thread."""
        owner = self._tx_thread
        if owner is None or any(t.ident == owner for t in threading.enumerate()):
            return False
        _log.warning("a thread ended with a transaction open on %s: rolled back", self)
        if not self.conn.getautocommit():
            self.conn.cursor().execute("ROLLBACK")
        self._tx_thread = None
        return True

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        """A statement, call or DDL change: all of it or none of it. Outside
        a transaction of the user's it is one transaction, committed once;
        a commit that finds the file busy is rolled back, never left open."""
        outermost = self.conn.getautocommit()
        name = self.session.savepoint_name("stmt")
        cursor = self.conn.cursor()
        try:
            cursor.execute(f"SAVEPOINT {name}")
        except apsw.Error as exc:
            raise sql_error(exc) from None
        try:
            yield
        except BaseException:
            self._undo(name, outermost)
            raise
        try:
            cursor.execute(f"RELEASE {name}")
        except apsw.Error as exc:
            self._undo(name, outermost)
            raise sql_error(exc) from None

    def _undo(self, savepoint: str, outermost: bool) -> None:
        if self.conn.getautocommit():
            return  # SQLite already rolled the transaction back
        cursor = self.conn.cursor()
        if outermost:
            cursor.execute("ROLLBACK")
        else:
            cursor.execute(f"ROLLBACK TO {savepoint}")
            cursor.execute(f"RELEASE {savepoint}")

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- SQL ---------------------------------------------------------------------

    @_serialized
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """Run one statement or a script; return the rows of the last one."""
        statements = ddl.split_statements(sql)
        if params and len(statements) > 1:
            raise InvalidArgument("parameters can only be bound to a single statement")
        result = Result()
        try:
            for statement in statements:
                parsed = ddl.parse(statement, self.base_dir, self._client_loader())
                if parsed is None:
                    result = self._sqlite(statement, params)
                elif isinstance(parsed, ddl.PLUGIN_STATEMENTS):
                    result = self._plugin_statement(parsed)
                else:
                    result = self._procedure_statement(parsed, params)
        finally:
            self._flush_telemetry()
        return result

    def _sqlite(self, sql: str, params: Sequence[Any]) -> Result:
        columns: list[str] = []
        decltypes: list[str | None] = []

        def trace(cursor: apsw.Cursor, _sql: str, _bindings: object) -> bool:
            description = cursor.get_description()
            columns[:] = [d[0] for d in description]
            decltypes[:] = [d[1] for d in description]
            return True

        before = self.conn.total_changes()
        denied: list[str] = []
        self.session.policy = (
            policy.client_authorizer(denied, allow_ddl=self._allow_ddl, reserved=self._reserved)
            if self._client
            else policy.owner_authorizer(denied)
        )
        who = "clients" if self._client else "the SQL of Database.execute"
        try:
            bindings = tuple(to_sqlite(p, f"parameter {i}") for i, p in enumerate(params, 1))
            # SQLite makes a plain statement atomic itself; one that may call
            # a writing procedure is made so by its own savepoint.
            atomic = self._writers and _atomic_statement(sql)
            with self._atomic() if atomic else nullcontext():
                cursor = self.conn.cursor()
                cursor.exec_trace = trace
                # apsw's statement cache would hand back a statement the
                # engine prepared under no policy, unchecked: text that names
                # the engine's tables is always prepared (and authorized) anew.
                cached = _ENGINE_TABLE.search(sql) is None
                cursor.execute(sql, bindings, can_cache=cached)
                rows = [tuple(r) for r in cursor]
        except apsw.AuthError as exc:
            if denied:
                raise CapabilityDenied(f"{who} may not use {denied[0]}") from None
            raise SqlError(str(exc)) from None
        except apsw.Error as exc:
            error = sql_error(exc)
            if isinstance(error, DatabaseBusy) and _ends_transaction(sql):
                # SQLite keeps a transaction whose COMMIT found the file busy
                # open for a retry; the engine leaves no connection inside a
                # transaction nobody will finish (its writes would be lost at
                # close, after everything else said "ok").
                if not self.conn.getautocommit():
                    self.conn.cursor().execute("ROLLBACK")
                error.message += "; the transaction was rolled back: run it again"
            raise error from None
        finally:
            self.session.policy = None
        return Result(columns, rows, int(self.conn.total_changes() - before), decltypes)

    def _client_loader(self) -> ddl.BodyLoader | None:
        """How a client's DDL may name a module: inline only. A client never
        makes the server read one of its files (not even to be refused)."""
        if not self._client:
            return None

        def load(text: str) -> bytes:
            self._refuse_client_ddl("procedure DDL")
            if text.startswith("file://"):
                raise CapabilityDenied(
                    "clients may not name server files; send the module inline (base64)"
                )
            return ddl.load_body(text, Path("/nonexistent"))

        return load

    def serve_clients(
        self, *, allow_ddl: bool = False, reserved: frozenset[str] = frozenset()
    ) -> None:
        """Marks this as a remote client's connection (the wire endpoint): its
        SQL may not touch the engine's tables, ATTACH files or load
        extensions, and procedure, extension and plugin DDL is refused unless
        ``allow_ddl`` (a client that may create a procedure may read any
        table through it, whatever the query plugins check). Tables and
        views named in ``reserved`` (lower case) may not be created: the
        endpoint's catalog relations, which a table of the same name would
        hide."""
        self._client = True
        self._allow_ddl = allow_ddl
        self._reserved = reserved

    @_serialized
    def call(self, name: str, *args: Any) -> Any:
        """Call a procedure directly; table procedures return a list of tuples."""
        try:
            runner = self._callable(name)
            if not runner.may_write:
                return runner.call(args)
            with self._atomic():
                return runner.call(args)
        finally:
            self._flush_telemetry()

    @_serialized
    def call_batch(self, name: str, columns: Sequence[Sequence[Any]]) -> list[Any]:
        """Call a procedure once per row of ``columns`` (one sequence per
        parameter); the results in row order, all calls' writes committed
        together or none. Numeric procedures run the whole batch natively
        (see Runner.call_batch)."""
        try:
            runner = self._callable(name)
            with self._atomic() if runner.may_write else nullcontext():
                return runner.call_batch(columns)
        finally:
            self._flush_telemetry()

    def _callable(self, name: str) -> Runner:
        damaged = self._damaged.get(name.lower())
        if damaged is not None:
            raise damaged
        runner = self._runner(name)
        if _aggregate_doc(runner.version) is not None:
            raise InvalidArgument(
                f"{name} is an aggregate: use it in SQL, e.g. SELECT {name}(x) FROM t"
            ).located(runner.version.name, runner.version.version)
        return runner

    # -- telemetry ---------------------------------------------------------------

    def _flush_telemetry(self, force: bool = False) -> None:
        """Persist pending metrics and log lines, outside any user transaction."""
        t = self.session.telemetry
        if self.session.depth:
            return
        self.session.echo_logs()
        if not self.conn.getautocommit() or not (force or t.due()):
            return
        try:
            t.flush(self.conn)
        except apsw.Error as exc:  # a read-only or busy file: keep them for later
            _log.warning("could not persist procedure telemetry: %s", exc)

    @_serialized
    def metrics(self, name: str) -> dict[int, telemetry.Metrics]:
        """Call metrics of every version of ``name`` (persisted plus pending)."""
        self._flush_telemetry(force=True)
        t = self.session.telemetry
        t.collect()  # inside the caller's transaction nothing was flushed
        out: dict[int, telemetry.Metrics] = {}
        for v in self.registry.versions(name):
            found = telemetry.read_metrics(self.conn, v.name, v.version)
            pending = t.pending.get((v.name.lower(), v.version))
            if pending is not None and pending.calls:
                found = found or telemetry.Metrics()
                found.merge(pending)
            if found is not None:
                out[v.version] = found
        return out

    @_serialized
    def persisted_logs(
        self,
        procedure: str | None = None,
        since: float | None = None,
        levels: tuple[str, ...] | None = None,
        limit: int = 1000,
    ) -> list[LogRecord]:
        """The procedure log as stored in the database (every process's calls)."""
        self._flush_telemetry(force=True)
        return telemetry.read_logs(self.conn, procedure, since, levels, limit)

    @_serialized
    def procedures(self) -> list[ProcedureVersion]:
        """The active version of every procedure, by name (those whose
        registry rows are damaged are in ``damaged()`` instead)."""
        return [
            self.registry.get(n) for n in self.registry.names() if n.lower() not in self._damaged
        ]

    @_serialized
    def reseal(self) -> int:
        """Seals every registry row as it stands, with this Database's key
        (after the owner chose a new key, or repaired rows by hand), and
        binds the procedures that were refused. Returns the rows sealed."""
        with self._lock, self._atomic():
            count = self.registry.reseal()
        for name in list(self._damaged):
            del self._damaged[name]
            try:
                self._rebind(name)
            except (ProcedureError, apsw.Error) as exc:
                self._damaged[name] = exc if isinstance(exc, ProcedureError) else sql_error(exc)
        return count

    def damaged(self) -> dict[str, ProcedureError]:
        """Procedures that could not be bound when the file was opened, with why."""
        return dict(self._damaged)

    @_serialized
    def versions(self, name: str) -> list[ProcedureVersion]:
        return self.registry.versions(name)

    @_serialized
    def logs(self, procedure: str | None = None) -> list[LogRecord]:
        """Recent procedure log lines (newest last)."""
        return [
            r
            for r in self.session.logs
            if procedure is None or r.procedure.lower() == procedure.lower()
        ]

    # -- procedure DDL -----------------------------------------------------------

    def _refuse_client_ddl(self, what: str) -> None:
        if self._client and not self._allow_ddl:
            raise CapabilityDenied(
                f"{what} is not allowed from a client connection; use `heliosdb-wasm sql`"
                " on the database file, or start the server with --allow-ddl"
            )

    def _procedure_statement(self, stmt: ddl.Statement, params: Sequence[Any]) -> Result:
        if isinstance(stmt, ddl.Call):
            return self._call_statement(stmt, params)
        if isinstance(stmt, ddl.ShowExtensions):
            rows: list[tuple[SqlValue, ...]] = [
                (
                    e.name,
                    e.version,
                    ", ".join(f"{p} v{v}" for p, v in e.procedures),
                    e.signed_by,
                    e.installed_at,
                )
                for e in self.registry.extensions()
            ]
            return Result(["name", "version", "functions", "signed_by", "installed_at"], rows)
        self._refuse_client_ddl("procedure and extension DDL")
        if params:
            raise InvalidArgument("procedure DDL takes no bound parameters")
        with self._lock:
            if isinstance(stmt, ddl.CreateProcedure | ddl.CreateAggregate):
                self._commit([self._prepare_any(stmt)])
            elif isinstance(stmt, ddl.AlterVersion):
                self._alter_version(stmt)
            elif isinstance(stmt, ddl.UseVersion):
                with self._atomic():
                    self.registry.use_version(stmt.name, stmt.version)
                self._rebind(stmt.name)
            elif isinstance(stmt, ddl.CreateExtension):
                if self._client and (
                    stmt.data is None
                    or (stmt.key is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", stmt.key))
                ):
                    raise CapabilityDenied(
                        "clients may not name server files; send the archive inline"
                        " (BASE64) and the key as 64 hex digits"
                    )
                source = stmt.data if stmt.data is not None else stmt.path
                assert source is not None
                self.install_extension(source, stmt.key, stmt.name)
            elif isinstance(stmt, ddl.DropExtension):
                self.drop_extension(stmt.name, stmt.if_exists)
            elif isinstance(stmt, ddl.DropProcedure):
                if stmt.if_exists and not self.registry.exists(stmt.name):
                    return Result()
                with self._atomic():
                    self.registry.drop(stmt.name)
                self._unbind(stmt.name)
        return Result()

    # -- plugin DDL (the wire endpoint's query hooks, docs/plugins.md §5) ----------

    def _plugin_statement(self, stmt: ddl.Statement) -> Result:
        if isinstance(stmt, ddl.ShowPlugins):
            rows: list[tuple[SqlValue, ...]] = []
            for spec, version in self.plugin_specs():
                hooks = ",".join(sorted(spec.hooks)) if spec.hooks is not None else "*"
                caps = ",".join(sorted(spec.capabilities.grants))
                candidate = sha256_hex(spec.candidate) if spec.candidate is not None else None
                rows.append(
                    (
                        spec.name,
                        version,
                        spec.priority,
                        spec.enabled,
                        hooks,
                        caps,
                        spec.sha256,
                        candidate,
                        spec.candidate_percent if candidate else None,
                    )
                )
            columns = [
                "name",
                "version",
                "priority",
                "enabled",
                "hooks",
                "capabilities",
                "sha256",
                "candidate_sha256",
                "candidate_percent",
            ]
            return Result(columns, rows)
        self._refuse_client_ddl("plugin DDL")
        with self._lock:
            if isinstance(stmt, ddl.CreatePlugin):
                check_name(stmt.name, "plugin")
                if self.registry.plugin_row(stmt.name) is not None and not stmt.replace:
                    raise RegistryError(
                        f"plugin {stmt.name} already exists (use CREATE OR REPLACE PLUGIN)",
                        code="already-exists",
                        procedure=stmt.name,
                    )
                spec = spec_from_ddl(stmt)
                # Loaded now: a plugin that cannot run is refused here, not at
                # the server's next reload.
                check_plugin(spec, self.runtime)
                with self._atomic():
                    self.registry.put_plugin(spec.name, spec_to_json(spec), spec.wasm)
            elif isinstance(stmt, ddl.AlterPlugin):
                with self._atomic():
                    self._alter_plugin(stmt)
            elif isinstance(stmt, ddl.DropPlugin):
                if stmt.if_exists and self.registry.plugin_row(stmt.name) is None:
                    return Result()
                with self._atomic():
                    self.registry.drop_plugin(stmt.name)
        return Result()

    def _alter_plugin(self, stmt: ddl.AlterPlugin) -> None:
        """ENABLE, DISABLE, PRIORITY, or the A/B candidate (docs/plugins.md §5):
        a new candidate module is loaded first, with the plugin's settings."""
        version, doc, wasm, candidate = self.registry.plugin_whole(stmt.name)
        if stmt.enabled is not None:
            doc["enabled"] = stmt.enabled
        if stmt.priority is not None:
            doc["priority"] = stmt.priority
        if stmt.candidate == "drop":
            candidate = None
        elif stmt.candidate == "promote":
            if candidate is None:
                raise RegistryError(
                    f"plugin {stmt.name} has no candidate to promote",
                    code="not-found",
                    procedure=stmt.name,
                )
            wasm, candidate = candidate, None
        elif stmt.candidate_percent is not None:
            if stmt.candidate_wasm is not None:
                spec = spec_from_json(
                    stmt.name, doc, stmt.candidate_wasm, f"{SQL_ORIGIN}{stmt.name}"
                )
                check_plugin(spec, self.runtime)
                candidate = stmt.candidate_wasm
            elif candidate is None:
                raise RegistryError(
                    f"plugin {stmt.name} has no candidate: give its module"
                    " (ALTER PLUGIN ... CANDIDATE PERCENT n AS $wasm$...$wasm$)",
                    code="not-found",
                    procedure=stmt.name,
                )
            doc["candidate"] = {"percent": stmt.candidate_percent}
        self.registry.rewrite_plugin(stmt.name, version + 1, doc, wasm, candidate)

    # -- roles (who may log in to the wire endpoint; roles.py) ---------------------

    @_serialized
    def create_role(self, name: str, password: str | None = None, *, login: bool = True) -> Role:
        """Create a role. ``password`` is a plain password (hashed here into a
        SCRAM-SHA-256 verifier; the password itself is never stored) or a
        ready-made verifier; None leaves the role without one, so it cannot
        log in with SCRAM until it gets one. RoleError for a bad name or
        password (``invalid-name``, ``name-too-long``, ``reserved-name``,
        ``invalid-password``, ``md5-password``) or a name taken
        (``already-exists``)."""
        check_role_name(name)
        verifier = None if password is None else verifier_for(password)
        with self.session.internal(), self._atomic():
            if self.registry.role(name) is not None:
                raise RoleError(f'role "{name}" already exists', code="already-exists")
            self.registry.put_role(name, verifier, login, new=True)
            created = self.registry.role(name)
        assert created is not None
        return created

    @_serialized
    def set_role_password(self, name: str, password: str | None) -> Role:
        """Give a role a new password (or a verifier; None: no password)."""
        verifier = None if password is None else verifier_for(password)
        return self._alter_role(name, lambda role: (verifier, role.login))

    @_serialized
    def set_role_login(self, name: str, login: bool) -> Role:
        """Whether a role may log in (PostgreSQL's LOGIN / NOLOGIN)."""
        return self._alter_role(name, lambda role: (role.verifier, login))

    def _alter_role(self, name: str, change: Callable[[Role], tuple[str | None, bool]]) -> Role:
        with self.session.internal(), self._atomic():
            role = self._existing_role(name)
            verifier, login = change(role)
            self.registry.put_role(name, verifier, login, new=False)
            changed = self.registry.role(name)
        assert changed is not None
        return changed

    def _existing_role(self, name: str) -> Role:
        role = self.registry.role(name)
        if role is None:
            raise RoleError(f'role "{name}" does not exist', code="not-found")
        return role

    @_serialized
    def drop_role(self, name: str, *, if_exists: bool = False) -> bool:
        """Drop a role; whether there was one (RoleError ``not-found``
        unless ``if_exists``)."""
        with self.session.internal(), self._atomic():
            if self.registry.role(name) is None:
                if if_exists:
                    return False
                self._existing_role(name)
            self.registry.drop_role(name)
        return True

    @_serialized
    def role(self, name: str) -> Role | None:
        """The role ``name`` (case-sensitive), with its verifier."""
        with self.session.internal():
            return self.registry.role(name)

    @_serialized
    def roles(self) -> list[Role]:
        """Every role, by name; one whose row was changed outside the engine
        is left out (with a warning), as it cannot log in either."""
        found = []
        with self.session.internal():
            for name in self.registry.role_names():
                try:
                    role = self.registry.role(name)
                except RegistryError as exc:
                    _log.warning("role %s is not available: %s", name, exc)
                    continue
                if role is not None:
                    found.append(role)
        return found

    @_serialized
    def plugin_specs(self) -> list[tuple[PluginSpec, int]]:
        """The plugins created with SQL, with their versions."""
        with self.session.internal():
            return [
                (spec_from_json(name, spec, wasm, f"{SQL_ORIGIN}{name}", candidate), version)
                for name, version, spec, wasm, candidate in self.registry.plugin_rows()
            ]

    def _prepare_any(
        self, stmt: ddl.CreateProcedure | ddl.CreateAggregate
    ) -> _Prepared | _PreparedAggregate:
        if isinstance(stmt, ddl.CreateAggregate):
            return self._prepare_aggregate(stmt)
        return self._prepare(stmt)

    def _commit(
        self,
        prepared: Sequence[_Prepared | _PreparedAggregate],
        extension: dict[str, Any] | None = None,
    ) -> None:
        """Writes checked creations in one savepoint, with the extension row
        that owns them if any, then binds each: all of them or none."""
        with self._atomic():
            created = [
                (
                    p.stmt.name,
                    self._store_aggregate(p)
                    if isinstance(p, _PreparedAggregate)
                    else self._store(p),
                )
                for p in prepared
            ]
            if extension is not None:
                self.registry.add_extension(**extension, procedures=created)
        for p in prepared:
            self._rebind(p.stmt.name)
            self._seed(p.stmt.name, p.module, p.instance)

    def _prepare_aggregate(self, stmt: ddl.CreateAggregate) -> _PreparedAggregate:
        """SingleStore's CREATE AGGREGATE ... AS WASM: every role's export is
        checked against the aggregate's types before anything is written."""
        exists = self.registry.exists(stmt.name)
        if exists and not stmt.replace:
            raise RegistryError(
                f"aggregate {stmt.name} already exists (use CREATE OR REPLACE)",
                code="already-exists",
                procedure=stmt.name,
            )
        if not exists:
            self._check_new_name(stmt.name, "aggregate")
        limits = self.limits.with_overrides(**stmt.limit_overrides)
        module, digest, instance = self._load_new(
            stmt.wasm, limits, Capabilities(), stmt.abi, stmt.wit
        )
        doc = {
            "aggregate": stmt.roles,
            "state": stmt.state.value if stmt.state is not None else "HANDLE",
        }
        signature = Signature(
            tuple(Column(f"arg{i + 1}", t) for i, t in enumerate(stmt.params)), stmt.returns
        )
        _aggregate_roles(module, doc, signature)  # refuses a module that does not fit
        return _PreparedAggregate(stmt, doc, signature, digest, module, instance)

    def _store_aggregate(self, p: _PreparedAggregate) -> int:
        self.registry.store_module(p.stmt.wasm, "basic", p.digest)
        return self.registry.add_version(
            name=p.stmt.name,
            version=None,
            abi=p.module.abi,
            export=json.dumps(p.doc, sort_keys=True),
            signature=p.signature,
            capabilities=Capabilities(),
            limit_overrides=dict(p.stmt.limit_overrides),
            module_sha256=p.digest,
            wit=p.stmt.wit,
        )

    def _prepare(self, stmt: ddl.CreateProcedure) -> _Prepared:
        """Everything CREATE PROCEDURE checks, before anything is written."""
        exists = self.registry.exists(stmt.name)
        if exists and not stmt.replace:
            raise RegistryError(
                f"procedure {stmt.name} already exists (use CREATE OR REPLACE, or "
                "ALTER PROCEDURE ... VERSION n)",
                code="already-exists",
                procedure=stmt.name,
            )
        if not exists:
            self._check_new_name(stmt.name, "procedure")
        caps = Capabilities.parse(stmt.capabilities)
        limits = self.limits.with_overrides(**stmt.limit_overrides)
        export = stmt.export or stmt.name
        module, digest, instance = self._load_new(stmt.wasm, limits, caps, stmt.abi, stmt.wit)
        signature = module.check(export, stmt.signature)
        _check_table_names(signature)
        return _Prepared(stmt, module.abi, export, signature, caps, digest, module, instance)

    def _store(self, p: _Prepared) -> int:
        """Write a prepared CREATE PROCEDURE (inside the caller's savepoint)."""
        # A SingleStore module is a core module: the modules table knows
        # binaries by kind, the version by ABI.
        kind = "component" if p.abi == "component" else "basic"
        self.registry.store_module(p.stmt.wasm, kind, p.digest)
        return self.registry.add_version(
            name=p.stmt.name,
            version=None,
            abi=p.abi,
            export=p.export,
            signature=p.signature,
            capabilities=p.capabilities,
            limit_overrides=dict(p.stmt.limit_overrides),
            module_sha256=p.digest,
            wit=p.stmt.wit,
        )

    # -- extensions --------------------------------------------------------------

    @_serialized
    def install_extension(
        self,
        source: Path | bytes | archive.Archive,
        key: str | bytes | None = None,
        name: str | None = None,
    ) -> Extension:
        """Install an extension archive: all its procedures, or none of them.

        With ``key`` (a public key: 32 bytes, 64 hex digits or a .pub file)
        the archive must carry a valid signature by it; with ``name`` it must
        hold that extension (CREATE EXTENSION name). A procedure that
        exists already must belong to an earlier version of the same
        extension; it gets a new version, and the old one stays selectable.
        """
        arc = source if isinstance(source, archive.Archive) else archive.read_any(source)
        if isinstance(arc, SingleStoreArchive):
            if key is not None:
                raise archive.ArchiveError("SingleStore archives carry no signature to check")
            return self._install_singlestore(arc, name)
        public: bytes | None = None
        if key is not None:
            public = key if isinstance(key, bytes) else archive.load_public_key(key)
            arc.verify_signature(public)
        manifest = arc.manifest
        if name is not None and name.lower() != manifest.name:
            raise archive.ArchiveError(f"the archive holds extension {manifest.name}, not {name}")
        with self._lock:
            prepared = [self._prepare(stmt) for stmt in self._install_statements(arc)]
            self._commit(
                prepared,
                {
                    "name": manifest.name,
                    "version": manifest.version,
                    "manifest": arc.manifest_bytes.decode("utf-8"),
                    "archive_sha256": sha256_hex(arc.manifest_bytes),
                    "signed_by": public.hex() if public is not None else None,
                },
            )
        return self.registry.extension_versions(manifest.name, manifest.version)[0]

    def _install_singlestore(self, arc: SingleStoreArchive, name: str | None) -> Extension:
        """A SingleStore archive: its script's CREATE FUNCTION statements, all
        or none. Its version is the archive's hash (SingleStore archives have
        none), so installing the same archive twice is refused."""
        if name is not None and name.lower() != arc.name.lower():
            raise archive.ArchiveError(
                f"the archive holds extension {arc.name} ({arc.name}.sql), not {name}"
            )
        script = f"{arc.name}.sql"

        def member(body: str) -> bytes:
            path = body.removeprefix("file://").removeprefix("./")
            if path not in arc.members:
                raise archive.ArchiveError(f"{script}: LOCAL INFILE {path!r} is not in the archive")
            return arc.members[path]

        statements: list[ddl.CreateProcedure | ddl.CreateAggregate] = []
        for text in ddl.split_statements(arc.script):
            stmt = ddl.parse(text, loader=member)
            if not isinstance(stmt, ddl.CreateAggregate) and (
                not isinstance(stmt, ddl.CreateProcedure) or stmt.abi is None
            ):
                raise archive.ArchiveError(
                    f"{script} may only hold CREATE FUNCTION and CREATE AGGREGATE ... AS WASM"
                    f" statements, not {' '.join(text.split(None, 2)[:2])}"
                )
            owner = self.registry.owner_of(stmt.name)
            if self.registry.exists(stmt.name) and owner != arc.name:
                raise archive.ArchiveError(
                    f"function {stmt.name} already exists and does not belong to "
                    f"extension {arc.name}"
                )
            statements.append(stmt)
        if not statements:
            raise archive.ArchiveError(f"{script} creates no function")
        version = arc.sha256[:12]
        with self._lock:
            prepared = [self._prepare_any(replace(stmt, replace=True)) for stmt in statements]
            self._commit(
                prepared,
                {
                    "name": arc.name,
                    "version": version,
                    "manifest": arc.script,
                    "archive_sha256": arc.sha256,
                    "signed_by": None,
                },
            )
        return self.registry.extension_versions(arc.name, version)[0]

    def _install_statements(self, arc: archive.Archive) -> list[ddl.CreateProcedure]:
        """install.sql's statements, each checked against the (signed) manifest."""
        manifest = arc.manifest

        def member(body: str) -> bytes:
            path = body.removeprefix("file://")
            if not body.startswith("file://") or path not in arc.members:
                raise archive.ArchiveError(
                    f"{archive.INSTALL}: module {body[:80]!r} is not a file of the archive"
                )
            return arc.members[path]

        specs = {p.name.lower(): p for p in manifest.procedures}
        statements: list[ddl.CreateProcedure] = []
        for text in ddl.split_statements(arc.install_sql):
            stmt = ddl.parse(text, loader=member)
            if not isinstance(stmt, ddl.CreateProcedure):
                raise archive.ArchiveError(
                    f"{archive.INSTALL} may only hold CREATE PROCEDURE statements, not "
                    f"{text.split(None, 2)[:2]}"
                )
            spec = specs.pop(stmt.name.lower(), None)
            if spec is None:
                raise archive.ArchiveError(
                    f"{archive.INSTALL} creates {stmt.name}, which the manifest does not list"
                )
            if (
                stmt.wasm != arc.members[spec.file]
                or sorted(stmt.capabilities) != sorted(spec.capabilities)
                or (stmt.export or stmt.name) != (spec.export or spec.name)
                or stmt.limit_overrides != spec.limits
            ):
                raise archive.ArchiveError(
                    f"{archive.INSTALL}: {stmt.name} differs from the manifest "
                    "(file, capabilities, export or limits)"
                )
            owner = self.registry.owner_of(stmt.name)
            if self.registry.exists(stmt.name) and owner != manifest.name:
                raise archive.ArchiveError(
                    f"procedure {stmt.name} already exists and does not belong to "
                    f"extension {manifest.name}"
                )
            statements.append(
                ddl.CreateProcedure(
                    stmt.name,
                    stmt.signature,
                    stmt.wasm,
                    True,
                    stmt.capabilities,
                    stmt.limit_overrides,
                    stmt.export,
                )
            )
        if specs:
            raise archive.ArchiveError(
                f"{archive.INSTALL} does not create {', '.join(p.name for p in specs.values())}"
            )
        return statements

    @_serialized
    def drop_extension(self, name: str, if_exists: bool = False) -> list[str]:
        """Drop an extension and every procedure its versions installed."""
        with self._lock:
            if if_exists and not self.registry.extension_versions(name):
                return []
            with self._atomic():
                names = [n for n in self.registry.drop_extension(name) if self.registry.exists(n)]
                for n in names:
                    self.registry.drop(n)
            for n in names:
                self._unbind(n)
        return names

    @_serialized
    def extensions(self) -> list[Extension]:
        return self.registry.extensions()

    def _alter_version(self, stmt: ddl.AlterVersion) -> None:
        current = self.registry.get(stmt.name)
        limits = current.limits(self.limits)
        module, digest, instance = self._load_new(stmt.wasm, limits, current.capabilities)
        signature = module.check(current.export, current.signature)
        with self._atomic():
            self.registry.store_module(stmt.wasm, module.abi, digest)
            self.registry.add_version(
                name=current.name,
                version=stmt.version,
                abi=module.abi,
                export=current.export,
                signature=signature,
                capabilities=current.capabilities,
                limit_overrides=current.limit_overrides,
                module_sha256=digest,
            )
        self._rebind(stmt.name)
        self._seed(stmt.name, module, instance)

    def _seed(self, name: str, module: LoadedModule, instance: Verified | None) -> None:
        """The runner of a version just registered, from the module already
        loaded and the instance registration verified: the first call neither
        re-reads and re-hashes the module nor instantiates it."""
        version = self.registry.get(name)
        if module.abi != version.abi:
            return
        runner = Runner(version, module, version.limits(self.limits), self.session)
        if instance is not None:
            runner.adopt(instance)
        self._retire(name.lower())
        self._runners[name.lower()] = runner

    def _load_new(
        self,
        wasm: bytes,
        limits: Limits,
        caps: Capabilities,
        abi: str | None = None,
        wit: str | None = None,
    ) -> tuple[LoadedModule, str, Verified | None]:
        if len(wasm) > policy.MAX_MODULE_BYTES:
            raise ResourceLimitExceeded(
                f"the module is {len(wasm)} bytes, over the {policy.MAX_MODULE_BYTES} a "
                "procedure may have",
                limit="module_bytes",
            )
        for folder in caps.folders():
            if not Path(folder.path).is_dir():
                raise InvalidArgument(f"capability filesystem:{folder.path}: no such folder")
        digest = sha256_hex(wasm)
        if abi == "singlestore":
            module = load_singlestore(self.runtime, digest, wasm, wit)
        else:
            module = load(self.runtime, digest, wasm)
            if abi is not None and module.abi != abi:
                raise AbiError(f"ABI BASIC needs a core module, and this is a {module.abi}")
        instance = module.verify(limits, caps)
        return module, digest, instance

    def _call_statement(self, stmt: ddl.Call, params: Sequence[Any]) -> Result:
        version = self.registry.get(stmt.name)
        if version.signature.is_table:
            sql = f'SELECT * FROM "{version.name}"({stmt.args_sql})'
        else:
            sql = f'SELECT "{version.name}"({stmt.args_sql})'
        result = self._sqlite(sql, params)
        if version.signature.returns is None and not version.signature.is_table:
            return Result()
        if not version.signature.is_table:
            result.columns = [version.name]
        return result

    # -- binding into SQL --------------------------------------------------------

    def _check_new_name(self, name: str, kind: str) -> None:
        """A new procedure's name: valid, and not already SQL's — a table or
        view, or a function or table-valued function SQLite has built in
        (replacing ``length`` would change the owner's CHECKs and views)."""
        check_name(name, kind)
        cursor = self.conn.cursor()
        for (found,) in cursor.execute(
            "SELECT type FROM sqlite_schema WHERE name = ? COLLATE NOCASE", (name,)
        ):
            raise RegistryError(
                f"cannot name a {kind} {name}: a {found} of that name exists",
                code="already-exists",
                procedure=name,
            )
        if name.lower() in self._bound:
            return  # ours (a damaged row's leftover binding), replaced below
        builtin = cursor.execute(
            "SELECT 1 FROM pragma_function_list WHERE name = ? COLLATE NOCASE", (name,)
        ).fetchall()
        try:  # table-valued functions (json_each, pragma_*) exist on demand
            cursor.execute(f'SELECT 1 FROM "{name}" LIMIT 0').fetchall()
            builtin.append((1,))
        except apsw.SQLError:
            pass
        if builtin:
            raise RegistryError(
                f"cannot name a {kind} {name}: SQLite has a function or table of that name",
                code="already-exists",
                procedure=name,
            )

    def _is_procedure(self, name: str) -> bool:
        return name.lower() in self._bound

    def signature(self, name: str) -> Signature | None:
        """The SQL signature ``name`` is bound with on this connection (None:
        no such procedure), without a statement: describing a client's
        statement inside its transaction must not start a read snapshot."""
        return self._signatures.get(name.lower())

    def _runner(self, name: str) -> Runner:
        key = name.lower()
        runner = self._runners.get(key)
        if runner is None:
            with self._lock, self.session.internal():
                runner = self._runners.get(key)
                if runner is None:
                    version = self.registry.get(name)
                    sha = version.module_sha256
                    module = load_stored(
                        self.runtime,
                        sha,
                        version.abi,
                        lambda: self._module_bytes(sha),
                        version.wit,
                    )
                    limits = version.limits(self.limits)
                    # Re-derive the signature so a component's nullability
                    # survives a reopen exactly as at registration.
                    if _aggregate_doc(version) is None:
                        module.check(version.export, version.signature)
                    runner = Runner(version, module, limits, self.session)
                    self._retire(key)
                    self._runners[key] = runner
        return runner

    def _module_bytes(self, sha256: str) -> bytes:
        """A module's bytes from the registry, read as the engine: also when
        a compiled-code cache miss asks for them later, under a client's or a
        procedure's statement (the Rust core loads a module on first call)."""
        with self.session.internal():
            return self.registry.module_bytes(sha256)

    def _rebind(self, name: str) -> None:
        self._unbind(name)
        self._bind(self.registry.get(name))

    def _bind(self, version: ProcedureVersion) -> None:
        # Procedures' cached statements were authorized against the set of
        # procedures then (calling one needs call:): it changes here.
        self.session.gate.clear_statements()
        name = version.name
        sig = version.signature
        self._signatures[name.lower()] = sig
        if _may_write(version):
            self._writers.add(name.lower())
        aggregate = _aggregate_doc(version)
        if aggregate is not None:
            # Derived once, at the first group: a new version is a new binding.
            roles: dict[str, tuple[str, Signature]] | None = None

            def runner_roles() -> tuple[Runner, dict[str, tuple[str, Signature]]]:
                nonlocal roles
                runner = self._runner(name)
                if runner.version != version:
                    # SQLite expires statements when a function is
                    # replaced: only a statement running across the change.
                    raise InvalidArgument(
                        f"{name} changed to version {runner.version.version} while "
                        "this statement ran: run it again"
                    )
                if roles is None:
                    roles = _aggregate_roles(runner.module, aggregate, version.signature)
                return runner, roles

            if native.sqlite_direct():
                # SQLite calls the core per row (engine/core/src/python/
                # aggregate.rs); a group the core cannot run is a Python one.
                def acquire() -> _core.Aggregate | None:
                    runner, roles = runner_roles()
                    return runner.aggregate_target(roles)

                def python_group() -> Aggregate:
                    runner, roles = runner_roles()
                    return runner.aggregate(roles)

                function = _core.AggregateFunction(acquire, python_group)
                function.bind(self.conn.sqlite3_pointer(), name, len(sig.params))
                self._scalars[name.lower()] = function
            else:

                def group() -> tuple[Any, Callable[..., None], Callable[..., Any]]:
                    runner, roles = runner_roles()
                    agg = runner.aggregate(roles)
                    return (
                        None,
                        lambda _ctx, *args: agg.step(*args),
                        lambda _ctx: to_sqlite(agg.final()),
                    )

                self.conn.create_aggregate_function(name, group, len(sig.params))
            self._bound[name.lower()] = ("scalar", len(sig.params))
            return
        if sig.table is not None:
            # The Runner is looked up per call: it is replaced when the
            # version or its limits change.
            TableModule(name, sig, lambda args: self._runner(name).call(args)).bind(self.conn)
            self._expire_statements()
            self._bound[name.lower()] = ("table", len(sig.params))
        else:

            def scalar(*args: Any) -> Any:
                return to_sqlite(self._runner(name).call(args))

            # A numeric procedure: SQLite calls the Rust core directly
            # (native.make_scalar), which falls back on `scalar` for
            # anything unusual.
            core_scalar = self._native_scalar(version, scalar)
            if core_scalar is not None and native.sqlite_direct():
                core_scalar.bind(self.conn.sqlite3_pointer(), name)
                self._scalars[name.lower()] = core_scalar
            else:
                self.conn.create_scalar_function(name, scalar, len(sig.params), deterministic=False)
            self._bound[name.lower()] = ("scalar", len(sig.params))

    def _native_scalar(
        self, version: ProcedureVersion, slow: Callable[..., Any]
    ) -> _core.Scalar | None:
        """The SQL function of ``version`` that SQLite calls in the core, if
        it can have one (a Basic-ABI procedure or a component the core runs
        whole: numbers, text or blobs in).

        It finds the version's ``Numeric`` through its Runner on the first
        row and keeps it until it is released (``_retire``: the Runner
        changed). Bound to this version: called after a newer version was
        bound, it finds nothing and every row goes through ``slow`` (the
        current version).
        """
        if version.abi not in ("basic", "component", "singlestore"):
            return None

        def acquire() -> _core.Numeric | None:
            runner = self._runner(version.name)
            if runner.version != version:
                return None
            return runner.numeric_target()

        return native.make_scalar(version.signature, acquire, slow)

    def _retire(self, key: str) -> None:
        """Lets a Scalar bound straight to SQLite drop the Numeric it holds:
        its Runner is being replaced or removed (SQLite's calls run without
        the GIL, so the Scalar does not look at ``_runners`` itself)."""
        scalar = self._scalars.get(key)
        if scalar is not None:
            scalar.release()

    def _unbind(self, name: str) -> None:
        self.session.gate.clear_statements()  # as in _bind
        key = name.lower()
        self._retire(key)
        self._scalars.pop(key, None)
        self._runners.pop(key, None)
        self._writers.discard(key)
        self._signatures.pop(key, None)
        bound = self._bound.pop(key, None)
        if bound is None:
            return
        kind, nargs = bound
        if kind == "table":
            self.conn.create_module(name, None)
            self._expire_statements()
        else:
            self.conn.create_scalar_function(name, None, nargs)

    def _expire_statements(self) -> None:
        # apsw's statement cache keeps statements prepared against a replaced
        # virtual table module; a temp-schema change makes SQLite re-prepare them.
        self.conn.cursor().execute(
            "CREATE TEMP TABLE IF NOT EXISTS _heliosdb_expire(x); DROP TABLE _heliosdb_expire"
        )


def _switch_to_wal(conn: apsw.Connection, path: str | Path) -> None:
    """WAL for a file still in rollback-journal mode, when it can be had:
    a read-only file, one another process holds locked, or a file system
    without shared memory keeps its mode (the next opener switches it)."""
    try:
        mode = conn.execute("PRAGMA journal_mode").fetchall()[0][0]
        if str(mode).lower() == "delete":
            conn.execute("PRAGMA journal_mode = WAL")
    except apsw.Error as exc:
        _log.info("%s stays in its journal mode: %s", path, exc)


def _may_write(version: ProcedureVersion) -> bool:
    """Whether a call may change the database: it writes, or it may call
    another procedure, which may."""
    caps = version.capabilities
    return caps.can_write() or bool(caps.targets("call"))


def _check_table_names(sig: Signature) -> None:
    """A table procedure is an SQL table whose parameters are hidden columns:
    a parameter named as one of its columns is refused (PostgreSQL refuses
    the same name used twice in RETURNS TABLE's columns and the parameters)."""
    if sig.table is None:
        return
    columns = {c.name.lower() for c in sig.table}
    both = [p.name for p in sig.params if p.name.lower() in columns]
    if both:
        raise InvalidArgument(
            f"parameter {both[0]} is also a column of the table {sig.render()}: rename one"
        )


def _ends_transaction(sql: str) -> bool:
    return ddl.keywords(sql, 1) in (["COMMIT"], ["END"], ["RELEASE"])


def _atomic_statement(sql: str) -> bool:
    """Whether a statement runs inside its own savepoint (_atomic): all
    but those that control transactions themselves."""
    return not set(ddl.keywords(sql, 1)) & ddl.TRANSACTION_CONTROL


@dataclass(frozen=True)
class _Prepared:
    """A checked CREATE PROCEDURE, ready to be written."""

    stmt: ddl.CreateProcedure
    abi: str
    export: str
    signature: Signature
    capabilities: Capabilities
    digest: str
    module: LoadedModule
    instance: Verified | None  # the one registration verified, if any


def _aggregate_doc(version: ProcedureVersion) -> dict[str, Any] | None:
    """The roles and state of an aggregate version (its ``export`` holds
    them as JSON), or None for a function."""
    if not version.export.startswith("{"):
        return None
    doc = json.loads(version.export)
    return doc if isinstance(doc, dict) and "aggregate" in doc else None


def _aggregate_roles(
    module: LoadedModule, doc: dict[str, Any], signature: Signature
) -> dict[str, tuple[str, Signature]]:
    """Each role's export and signature, checked against the aggregate:
    INITIALIZE () -> state, ITERATE (state, args...) -> state, MERGE (state,
    state) -> state, TERMINATE (state) -> result, DESTROY (state)."""
    state_name = doc["state"]
    # A HANDLE is the guest's own pointer or index: any integer.
    state = SqlType.BIGINT if state_name == "HANDLE" else SqlType(state_name)
    params = [c.type for c in signature.params]
    shapes: dict[str, tuple[list[SqlType], SqlType | None]] = {
        "initialize": ([], state),
        "iterate": ([state, *params], state),
        "merge": ([state, state], state),
        "terminate": ([state], signature.returns),
        "destroy": ([state], None),
    }
    roles: dict[str, tuple[str, Signature]] = {}
    for role, export in doc["aggregate"].items():
        if role not in shapes:
            continue  # SERIALIZE and friends: SQLite never moves partial states
        want_params, want_result = shapes[role]
        if module.abi == "basic":
            sig = module.check(
                export,
                Signature(
                    tuple(Column(f"a{i}", t) for i, t in enumerate(want_params)), want_result
                ),
            )
        else:
            sig = module.check(export, None)
            got = [c.type for c in sig.params]
            integer = {SqlType.BIGINT, SqlType.INTEGER}
            fits = len(got) == len(want_params) and all(
                g == w
                or (state_name == "HANDLE" and i == 0 and g in integer)
                or (role == "merge" and state_name == "HANDLE" and g in integer)
                for i, (g, w) in enumerate(zip(got, want_params, strict=True))
            )
            if not fits:
                raise AbiError(
                    f"{role.upper()} WITH {export}: its WIT signature {sig.render()} does not "
                    f"take ({', '.join(t.value for t in want_params)})"
                )
        roles[role] = (export, sig)
    return roles


@dataclass(frozen=True)
class _PreparedAggregate:
    """A checked CREATE AGGREGATE, ready to be written."""

    stmt: ddl.CreateAggregate
    doc: dict[str, Any]
    signature: Signature
    digest: str
    module: LoadedModule
    instance: Verified | None


def check_name(name: str, kind: str) -> None:
    """Refuses a name the registry and SQLite could not both hold exactly."""
    shown = name if len(name) <= 80 else name[:80] + "..."
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(
            f"{kind} name {shown!r} is {len(name)} characters; the most is {MAX_NAME_LENGTH}"
        )
    if not _NAME.match(name):
        raise InvalidArgument(
            f"{kind} name {shown!r}: use ASCII letters, digits and _ (not starting with a digit)"
        )
    if name.lower().startswith((policy.REGISTRY_PREFIX, "sqlite_")):
        raise InvalidArgument(f"{kind} name {name!r}: the prefix is reserved")


def open(  # noqa: A001 - the module-level constructor reads best as heliosdb_wasm.open
    path: str | Path = ":memory:", *, limits: Limits | None = None
) -> Database:
    """Open a database; see ``Database.open``."""
    return Database.open(path, limits=limits)
