"""Calling one procedure version: argument checks, instance pool, call context.

A Runner owns the loaded module of one version and a small pool of idle
instances. An instance goes back to the pool only if the guest returned
normally; one that trapped or hit a limit may hold corrupt state and is
dropped.
"""

from __future__ import annotations

import array
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

from . import _core, native
from .abi_basic import (
    BATCH_SUFFIX,
    BasicModule,
    CoreInstance,
    batch_buffers,
    decode_returned,
    raised_error,
    returned_value,
)
from .abi_component import ComponentModule, guest_error, sql_name
from .errors import (
    AbiError,
    InvalidArgument,
    ProcedureError,
    ProcedureTrap,
    ResourceLimitExceeded,
    SqlError,
    UserError,
)
from .hostapi import CallContext, Session, busy_error, log_limit
from .policy import Capabilities, Limits
from .registry import ProcedureVersion
from .runtime import Runtime, core_error, host_bug
from .telemetry import CallStats, Metrics
from .values import Signature, SqlType, SqlValue, coerce, convert_result

if TYPE_CHECKING:
    from .singlestore import SingleStoreModule

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
# Rows per guest call of a batch entry point.
BATCH_CHUNK = 4096


class Verified(Protocol):
    """The instance registration made to check a module: the first call's
    (``Runner.adopt``)."""

    def release(self) -> None:
        """Drops the instance's store now."""
        ...


class LoadedModule(Protocol):
    abi: str

    def verify(self, limits: Limits, caps: Capabilities) -> Verified | None:
        """Checks the module can run; the instance it made, if any, is usable."""
        ...

    def check(self, export: str, signature: Signature | None) -> Signature: ...


class NumericModule(Protocol):
    """A module whose numeric exports the Rust core can call (``pure``: it
    imports nothing)."""

    pure: bool

    def core_export(self, export: str) -> tuple[_core.Module, str]:
        """The module compiled by the core, and the wasm name of ``export``."""
        ...


def load(runtime: Runtime, sha256: str, wasm: bytes) -> LoadedModule:
    """Compile and validate a binary with the ABI its header announces."""
    if len(wasm) < 8 or wasm[:4] != b"\0asm":
        raise AbiError("not a WebAssembly binary (no \\0asm header)")
    layer = wasm[4:8]
    if layer == b"\x01\x00\x00\x00":
        return BasicModule(runtime, sha256, wasm)
    if layer[2:4] == b"\x01\x00":
        return ComponentModule(runtime, sha256, wasm)
    raise AbiError(f"unsupported WebAssembly version/layer {layer.hex()}")


def load_stored(
    runtime: Runtime, sha256: str, abi: str, read: Callable[[], bytes], wit: str | None = None
) -> LoadedModule:
    """Load a registered module; ``read`` fetches its bytes only when the
    compiled-code cache has nothing for it (an 18 MB blob costs ~35 ms)."""
    if abi == "basic":
        return BasicModule(runtime, sha256, read)
    if abi == "component":
        return ComponentModule(runtime, sha256, read)
    if abi == "singlestore":
        return load_singlestore(runtime, sha256, read, wit)
    raise AbiError(f"the registry names an unknown ABI {abi!r}")


def load_singlestore(
    runtime: Runtime, sha256: str, wasm: bytes | Callable[[], bytes], wit: str | None
) -> LoadedModule:
    """A SingleStore canonical-ABI core module (wit-bindgen 0.2) with its WIT."""
    from .singlestore import SingleStoreModule

    if wit is None:
        raise AbiError("a SingleStore canonical-ABI function needs its WIT")
    module: LoadedModule = SingleStoreModule(runtime, sha256, wasm, wit)
    return module


class Runner:
    """Calls one procedure version."""

    def __init__(
        self,
        version: ProcedureVersion,
        module: LoadedModule,
        limits: Limits,
        session: Session,
    ) -> None:
        self.version = version
        self.module = module
        self.limits = limits
        self.session = session
        self.signature = version.signature
        # A SingleStore aggregate's role functions (role_numeric), by export.
        self._roles: dict[str, _core.Numeric] = {}
        self._lock = threading.Lock()
        sig = self.signature
        # Every Basic-ABI module and component runs whole in the core: numbers
        # in and out of a module that imports nothing with no bracket at all
        # (a Pure Numeric), anything else hosted (hosted.rs: host functions,
        # WASI, savepoints), with no Python per call.
        numeric = sig.table is None and native.eligible([c.type for c in sig.params], sig.returns)
        pure = numeric and getattr(module, "pure", False)
        self._hosted = (
            not pure and native.hostable(sig) and isinstance(module, ComponentModule | BasicModule)
        )
        # A SingleStore function the numeric path cannot take: the core's
        # Canonical ABI (canonical.rs), of any WIT types.
        self._canonical = not pure and _singlestore(module) is not None
        self._fast = pure or self._hosted or self._canonical
        self._numeric: _core.Numeric | None = None
        self._metrics = session.telemetry.metrics(version.name, version.version)
        # A call may change the database: it writes, or it may call another
        # procedure, which may (Database.call runs it in a savepoint).
        caps = version.capabilities
        self.may_write = caps.can_write() or bool(caps.targets("call"))
        self._batchable: bool | None = None
        # The core's run of this aggregate: None until asked, False if it
        # has none.
        self._aggregate: _core.Aggregate | Literal[False] | None = None

    def call(self, args: Sequence[SqlValue]) -> Any:
        return self._call_fast(args)

    def call_batch(self, columns: Sequence[Sequence[SqlValue]]) -> list[Any]:
        """One call per row, ``columns[i][row]`` the i-th argument; the results.

        Numeric procedures of import-free modules run the whole batch in the
        Rust core (no Python per row, the GIL released) when every value is
        an int or float its parameter takes and none is NULL; anything else
        goes row by row through ``call``, with the same results and errors.
        """
        v = self.version
        params = self.signature.params
        if len(columns) != len(params):
            raise InvalidArgument(
                f"{v.name} takes {len(params)} argument(s) {self.signature.render()}, "
                f"got {len(columns)} column(s)"
            ).located(v.name, v.version)
        counts = {len(c) for c in columns}
        if len(counts) > 1:
            raise InvalidArgument("the columns differ in length").located(v.name, v.version)
        # A guest's own batch entry point beats calling it row by row.
        guest_batch = self._guest_batch() and self._exact_python_columns(columns)
        if self._fast and columns and not guest_batch:
            try:
                return self._batch_native(columns)
            except (TypeError, ValueError, OverflowError):
                # The core converts every value before running any row: a
                # value it cannot take (NULL, text, out of range) means
                # nothing ran, and the row-by-row path says why.
                pass
        if columns and guest_batch:
            return self._batch_guest(columns)
        return [self.call(row) for row in zip(*columns, strict=True)]

    def _guest_batch(self) -> bool:
        """Whether the export has a batch entry point (docs/abi.md §9) the
        batch should take. Not an import-free module's: the core runs its
        rows one by one with no bracket faster than the columns are laid out
        for the guest here (a Rust SDK's compound_interest: 37 M values/s
        row by row, 24.5 M through its own batch entry point)."""
        if self._batchable is None:
            sig = self.signature
            module = self.module
            self._batchable = (
                self._hosted
                and isinstance(module, BasicModule)
                and sig.returns is not None
                and native.eligible([c.type for c in sig.params], sig.returns)
                and module.batch_entry(self.version.export) is not None
            )
        return self._batchable

    def _batch_guest(self, columns: Sequence[Sequence[SqlValue]]) -> list[Any]:
        """Chunks of rows, each one guest call in the core with a call's
        bracket (hosted.rs): the procedure's limits (fuel, time) apply to
        each chunk as to one call, and its rows count as calls."""
        numeric = self.numeric()
        name = self.version.export + BATCH_SUFFIX
        results: list[Any] = []
        for start in range(0, len(columns[0]), BATCH_CHUNK):
            chunk = [col[start : start + BATCH_CHUNK] for col in columns]
            data, code, out_size = batch_buffers(self.signature, chunk)
            out = array.array(code)
            out.frombytes(numeric.call_guest_batch(name, len(chunk[0]), data, out_size))
            results.extend(out.tolist())
        if self.signature.returns is SqlType.BOOLEAN:
            return [bool(x) for x in results]
        return results

    def _exact_python_columns(self, columns: Sequence[Sequence[SqlValue]]) -> bool:
        wanted = {
            SqlType.BIGINT: int,
            SqlType.INTEGER: int,
            SqlType.DOUBLE: float,
            SqlType.REAL: float,
            SqlType.BOOLEAN: bool,
        }
        for column, param in zip(columns, self.signature.params, strict=True):
            kind = wanted[param.type]
            # Checked at C speed: one type set per column, no Python per value.
            if set(map(type, column)) - {kind}:
                return False
            if kind is int:
                lo, hi = (
                    (-(2**31), 2**31 - 1) if param.type is SqlType.INTEGER else (_I64_MIN, _I64_MAX)
                )
                if column and (min(column) < lo or max(column) > hi):  # type: ignore[type-var, operator]
                    return False
        return True

    def _batch_native(self, columns: Sequence[Sequence[SqlValue]]) -> list[Any]:
        numeric = self.numeric()
        results: list[Any] = numeric.batch(columns)  # fault() counted a failure
        if self.signature.is_table:
            return [self._nothing() if r is None else r for r in results]
        return results

    def _nothing(self) -> list[Any] | None:
        """What a call that gave nothing returns (a NULL argument of RETURNS
        NULL ON NULL INPUT, a component's option<list<record>> none): no
        rows for a table procedure, NULL for a scalar one."""
        return [] if self.signature.is_table else None

    def _fast_arguments(self, args: Sequence[SqlValue]) -> list[SqlValue] | None:
        """``_arguments`` for numbers only, with the common case inlined."""
        params = self.signature.params
        if len(args) != len(params):
            sig = self.signature
            raise InvalidArgument(
                f"{self.version.name} takes {len(params)} argument(s) "
                f"{sig.render()}, got {len(args)}"
            )
        values: list[SqlValue] = []
        for value, col in zip(args, params, strict=True):
            t = col.type
            exact = (
                type(value) is int and t is SqlType.BIGINT and _I64_MIN <= value <= _I64_MAX
            ) or (type(value) is float and t is SqlType.DOUBLE)
            if exact:
                values.append(value)
            elif value is None:
                if not self.signature.called_on_null_input:
                    return None  # RETURNS NULL ON NULL INPUT
                if self._hosted or self._canonical:
                    # The guest may ask heliosdb_get_param (or see its
                    # option<T>): it is told the argument is NULL.
                    values.append(None)
                else:
                    values.append(0.0 if t in (SqlType.DOUBLE, SqlType.REAL) else 0)
            else:
                values.append(coerce(value, t, f"argument {col.name}"))
        return values

    def _call_fast(self, args: Sequence[SqlValue]) -> Any:
        # Every statement here runs once per row of Database.call: keep it lean.
        try:
            values = self._fast_arguments(args)
            numeric = self._numeric or self.numeric()
        except ProcedureError as exc:
            self._metrics.count(0.0, exc.code)
            self.session.telemetry.pending_calls += 1
            raise exc.located(self.version.name, self.version.version) from None
        if values is None:
            return self._nothing()
        if self.session.telemetry.listeners:
            result = self._call_listened(numeric, values)
        else:
            # The core counts a success in its tally; fault() counts a failure.
            result = numeric.call(values)
        return self._nothing() if result is None else result

    def _call_listened(self, numeric: _core.Numeric, values: list[SqlValue]) -> Any:
        """A call someone listens to (`procedure profile`): the core says
        where its time went, and each listener gets the call's CallStats."""
        v = self.version
        wall, started = time.time(), time.perf_counter()
        try:
            result, profile = numeric.profiled(values)
        except ProcedureError as exc:
            elapsed = time.perf_counter() - started
            failed = CallStats(v.name, v.version, wall, elapsed, 0, 0, 0, 0, None, None, exc.code)
            self._tell(failed)
            raise
        total = time.perf_counter() - started
        # An import-free module records no profile: all its time is the guest's.
        instantiate, wasm, host, fuel, memory = profile or (0.0, total, 0.0, None, None)
        self._tell(
            CallStats(
                procedure=v.name,
                version=v.version,
                started=wall,
                total=total,
                instantiate=instantiate,
                marshal=max(0.0, total - instantiate - wasm),
                guest=max(0.0, wasm - host),
                host=host,
                fuel_used=fuel,
                memory_bytes=memory,
                error=None,
            )
        )
        return result

    def _tell(self, stats: CallStats) -> None:
        for listener in self.session.telemetry.listeners:
            listener(stats)

    def numeric(self) -> _core.Numeric:
        """This version's numeric export in the Rust core, made on first use.

        Its failures come back through ``fault``, which closes over what it
        needs and not over the Runner: the core holds it for the Numeric's
        life, and a cycle through Rust is one Python's collector cannot see.
        """
        numeric = self._numeric
        if numeric is not None:
            return numeric
        with self._lock:
            if self._numeric is None:
                v = self.version
                params, result = native.kinds(self.signature)
                tally = native.new_tally()
                fault = fault_hook(self.session, self._metrics, self.limits, v)
                try:
                    if self._canonical:
                        self._numeric = self._canonical_numeric(tally, fault)
                    elif self._hosted:
                        export: str | tuple[str | None, str] = v.export
                        hosting = self.module
                        if isinstance(hosting, ComponentModule):
                            iface, wit_name, _ = hosting.functions[sql_name(v.export)]
                            export = (iface, wit_name)
                        assert isinstance(hosting, BasicModule | ComponentModule)
                        self._numeric = self._hosted_numeric(
                            hosting.core_pool(self.limits, v.capabilities),
                            export,
                            self.signature,
                            tally,
                            fault,
                        )
                    else:
                        module: NumericModule = self.module  # type: ignore[assignment]
                        core_module, export = module.core_export(v.export)
                        self._numeric = _core.Numeric(
                            core_module,
                            export,
                            params,
                            result,
                            self.limits.to_json(),
                            tally,
                            fault,
                        )
                except _core.CoreError as exc:
                    code, message = exc.args
                    raise core_error(code, message, None, [], self.limits) from None
                self.session.telemetry.collectors.append(
                    native.collector(tally, self.session.telemetry, v.name, v.version)
                )
            return self._numeric

    def _hosted_numeric(
        self,
        pool: _core.BasicPool | _core.ComponentPool,
        export: str | tuple[str | None, str],
        sig: Signature,
        tally: _core.Tally,
        fault: _core.Fault,
    ) -> _core.Numeric:
        """``export`` of ``pool`` (a Basic-ABI module's by name, a
        component's by interface and name) of signature ``sig`` as the
        core runs it whole, host functions served (hosted.rs), under this
        version's limits, grants and hooks."""
        v = self.version
        _, result = native.kinds(sig)
        return _core.Numeric.hosted(
            pool,
            export,
            native.params_of(sig),
            result,
            self.limits.to_json(),
            tally,
            fault,
            HostedHooks(self.session, self._metrics, self.limits, v),
            self.session.gate,
            v.capabilities.core_grants,
            self.session.is_procedure,
            v.capabilities.can_write(),
            # A text, blob or JSON result, or rows: HostedHooks.lift / convert.
            result is None and (sig.returns is not None or sig.is_table),
            (self.session.telemetry.logs, v.name, v.version),
            native.table_columns(sig),
        )

    def _canonical_numeric(
        self,
        tally: _core.Tally,
        fault: _core.Fault,
        export: str | None = None,
        sig: Signature | None = None,
    ) -> _core.Numeric:
        """This version's SingleStore function (or ``export`` of signature
        ``sig``, an aggregate's role) as the core runs it
        (canonical.rs), on the module's pool under this version's limits
        (one pool for every function of the module: its instances are
        the module's); a WASI guest granted ``stdout`` logs its lines."""
        singlestore = _singlestore(self.module)
        assert singlestore is not None
        v = self.version
        export = export or v.export
        sig = sig or self.signature
        basic = singlestore.basic
        logs = basic.uses_wasi and v.capabilities.allows("stdout")
        return _core.Numeric.canonical(
            basic.core_pool(self.limits, v.capabilities),
            singlestore.function(export).core,
            native.params_of(sig),
            native.kinds(sig)[1],
            self.limits.to_json(),
            tally,
            fault,
            HostedHooks(self.session, self._metrics, self.limits, v),
            singlestore.converts(export, sig),
            (self.session.telemetry.logs, v.name, v.version) if logs else None,
        )

    def numeric_target(self) -> _core.Numeric | None:
        """What a ``Scalar`` bound into SQLite calls: this version's
        ``Numeric``, or None if it has no numeric path (every row then goes
        through ``call``)."""
        if not self._fast:
            return None
        try:
            return self.numeric()
        except ProcedureError as exc:
            self._metrics.count(0.0, exc.code)
            self.session.telemetry.pending_calls += 1
            raise exc.located(self.version.name, self.version.version) from None

    def aggregate(self, roles: dict[str, tuple[str, Signature]]) -> Aggregate:
        """One group of an aggregate (SingleStore's CREATE AGGREGATE) that
        Python drives, each role call in the core (canonical.rs) on the
        instance the group holds."""
        return Aggregate(self, roles, self.aggregate_row(roles))

    def aggregate_row(
        self, roles: dict[str, tuple[str, Signature]]
    ) -> Callable[[Sequence[SqlValue]], list[SqlValue] | None]:
        """A row of the aggregate's arguments as ITERATE takes them after
        its state, or None to skip the row; a value it cannot take is the
        typed error, located and counted as a failed call.

        A Basic-ABI aggregate skips a row with a NULL argument (PostgreSQL
        does so for a strict transition function; SQL's own aggregates
        ignore NULLs); SingleStore's passes NULL where its WIT has an
        option and refuses it elsewhere."""
        v = self.version
        singlestore = _singlestore(self.module)
        if singlestore is not None:
            convert = singlestore.aggregate_row(roles["iterate"][0])
        else:
            params = self.signature.params

            def convert(args: Sequence[SqlValue]) -> list[SqlValue] | None:
                if len(args) != len(params):
                    raise InvalidArgument(
                        f"{v.name} takes {len(params)} argument(s), got {len(args)}"
                    )
                if any(a is None for a in args):
                    return None
                return [
                    coerce(a, c.type, f"argument {c.name}")
                    for a, c in zip(args, params, strict=True)
                ]

        metrics, telemetry = self._metrics, self.session.telemetry

        def row(args: Sequence[SqlValue]) -> list[SqlValue] | None:
            try:
                return convert(args)
            except ProcedureError as exc:
                metrics.count(0.0, exc.code)
                telemetry.pending_calls += 1
                raise exc.located(v.name, v.version) from None

        return row

    def aggregate_target(self, roles: dict[str, tuple[str, Signature]]) -> _core.Aggregate | None:
        """The aggregate as the core runs it (engine/core/src/python/
        aggregate.rs: a group's rows with no Python), made on first use; or
        None: a role's types are more than numbers it passes as they are,
        and every group goes through ``aggregate``. A module that imports host
        functions, or WASI with ``stdout`` granted (its output is log
        lines), has each role call in a hosted call's bracket."""
        with self._lock:
            if self._aggregate is not None:
                return self._aggregate or None
            module = self.module
            v = self.version
            singlestore = _singlestore(module)
            basic = singlestore.basic if singlestore is not None else module
            fits = isinstance(basic, BasicModule)
            if singlestore is not None:
                fits = fits and singlestore.core_aggregate({r: e for r, (e, _) in roles.items()})
            else:
                fits = fits and all(
                    native.eligible([c.type for c in sig.params], sig.returns)
                    for _, sig in roles.values()
                )
            terminate = roles["terminate"][1].returns
            if not fits or terminate is None or terminate not in native.KIND:
                self._aggregate = False
                return None
            assert isinstance(basic, BasicModule)
            # The exports' names in the core module (SingleStore's are its WIT's).
            names = {
                role: singlestore.function(e).name if singlestore is not None else e
                for role, (e, _) in roles.items()
            }
            hosted = bool(basic.imports) or (basic.uses_wasi and v.capabilities.allows("stdout"))
            instances: _core.Module | _core.BasicPool = (
                basic.core_pool(self.limits, v.capabilities)
                if basic.uses_wasi or hosted
                else basic.core_export(roles["iterate"][0])[0]
            )
            row = Signature(roles["iterate"][1].params[1:], None)
            params, _ = native.kinds(row)
            tally = native.new_tally()
            fault = fault_hook(self.session, self._metrics, self.limits, v)
            try:
                host = None
                if hosted:
                    assert isinstance(instances, _core.BasicPool)
                    host = self._hosted_numeric(instances, names["iterate"], row, tally, fault)
                self._aggregate = _core.Aggregate(
                    instances,
                    (
                        names["initialize"],
                        names["iterate"],
                        names["terminate"],
                        names.get("destroy"),
                    ),
                    params,
                    native.KIND[terminate],
                    self.limits.to_json(),
                    tally,
                    fault,
                    self.aggregate_row(roles),
                    host,
                    singlestore.aggregate_ranges(roles["iterate"][0])
                    if singlestore is not None
                    else None,
                )
            except _core.CoreError as exc:
                code, message = exc.args
                raise core_error(code, message, None, [], self.limits).located(
                    v.name, v.version
                ) from None
            self.session.telemetry.collectors.append(
                native.collector(tally, self.session.telemetry, v.name, v.version)
            )
            return self._aggregate

    def adopt(self, instance: Verified) -> None:
        """An instance registration made and verified, for the first call:
        the core's pool takes a Basic-ABI (or SingleStore) one."""
        if isinstance(instance, CoreInstance):
            instance.recycle()
        else:
            instance.release()

    def role_numeric(self, export: str, sig: Signature) -> _core.Numeric:
        """An aggregate role's function (SingleStore's ``export`` of
        signature ``sig``) as the core runs it, made on first use; its calls
        count as this version's."""
        with self._lock:
            numeric = self._roles.get(export)
            if numeric is None:
                v = self.version
                tally = native.new_tally()
                fault = fault_hook(self.session, self._metrics, self.limits, v)
                try:
                    numeric = self._canonical_numeric(tally, fault, export, sig)
                except _core.CoreError as exc:
                    code, message = exc.args
                    raise core_error(code, message, None, [], self.limits).located(
                        v.name, v.version
                    ) from None
                self._roles[export] = numeric
                self.session.telemetry.collectors.append(
                    native.collector(tally, self.session.telemetry, v.name, v.version)
                )
            return numeric

    def idle_instances(self) -> int:
        """Instances waiting for reuse in the core's pool."""
        numeric = self._numeric
        return numeric.idle_instances if numeric is not None else 0


def _singlestore(module: LoadedModule) -> SingleStoreModule | None:
    """``module`` if it is a SingleStore Canonical-ABI module. Its package
    is imported only then: importing it takes ~13 ms, more than a cold
    start's whole budget."""
    if getattr(module, "abi", None) != "singlestore":
        return None
    from .singlestore import SingleStoreModule

    assert isinstance(module, SingleStoreModule)
    return module


def log_trap(session: Session, error: ProcedureError) -> None:
    """A trap with a backtrace goes into the procedure's log too, where
    `heliosdb-wasm logs` shows it after the fact."""
    if isinstance(error, ProcedureTrap) and error.backtrace and error.procedure is not None:
        session.telemetry.logs.push(
            time.time(),
            error.procedure,
            error.version or 0,
            "error",
            f"trap: {error.message}\n{error.stack()}",
        )


def fault_hook(
    session: Session, metrics: Metrics, limits: Limits, version: ProcedureVersion
) -> _core.Fault:
    """The hook a ``Numeric`` calls when a call fails: the typed error,
    located and counted in the version's metrics (``row``: the rows of a
    batch done before it)."""
    name, number = version.name, version.version

    def fault(
        code: str,
        message: str,
        limit: str | None,
        frames: list[str],
        seconds: float,
        row: int | None,
    ) -> BaseException:
        error = core_error(code, message, limit, frames, limits).located(name, number)
        metrics.count(seconds, error.code)
        session.telemetry.pending_calls += 1
        if row is not None:
            error.row = row  # type: ignore[attr-defined]
        log_trap(session, error)
        return error

    return fault


class HostedHooks:
    """What a ``Numeric.hosted`` (a call the core runs whole, host functions
    included: engine/core/src/python/hosted.rs) asks of Python, only when it
    needs it: a ``CallContext`` for the host functions that live in Python
    (fetch, digest, hmac, count-in-window) and to type a failed statement,
    the value the guest gave heliosdb_return or a component's value, and
    every failure as the typed error — located, counted in the version's
    metrics and logged as every failed call is.

    It holds what it needs and not the Runner: the core holds it for the
    Numeric's life, and a cycle through Rust is one Python's collector
    cannot see."""

    def __init__(
        self, session: Session, metrics: Metrics, limits: Limits, version: ProcedureVersion
    ) -> None:
        self._session = session
        self._metrics = metrics
        self._limits = limits
        self._version = version

    def context(self, seconds_left: float) -> CallContext:
        """The call's context, made when a host function living in Python
        first runs, ``seconds_left`` before the call's deadline."""
        v = self._version
        ctx = CallContext(self._session, v.name, v.version, v.capabilities, self._limits)
        ctx.deadline = time.monotonic() + seconds_left
        return ctx

    def log_limit(self) -> ResourceLimitExceeded:
        """A call the core runs whole logged more than max_log_bytes (its
        lines go into the log in the core: engine/core/src/python/logs.rs)."""
        return log_limit(self._limits)

    def lift(self, tag: int | None, payload: bytes) -> Any:
        """What the guest gave heliosdb_return (``tag`` None: it gave nothing,
        an AbiError for a result that is not a number), converted to the
        declared type and held to max_result_bytes (``held``)."""
        sig = self._version.signature
        if tag is None:
            return returned_value(sig, None, False, None)
        return held(returned_value(sig, None, True, decode_returned(tag, payload)), self._limits)

    def convert(self, value: Any) -> Any:
        """A component's result that is not a number, converted to the
        declared type and held to max_result_bytes (``held``).
        A table procedure's list of records is its rows: the core lifts a
        record as a dict in its fields' order, the table's columns."""
        sig = self._version.signature
        if sig.table is not None and isinstance(value, list):
            value = ([c.name for c in sig.table], [tuple(rec.values()) for rec in value])
        return held(convert_result(sig, value), self._limits)

    def raised(self, code: str, message: str, seconds: float) -> ProcedureError:
        return self._counted(raised_error(code, message), seconds)

    def component_error(self, payload: Any, seconds: float) -> ProcedureError:
        """The err payload of a component's result<T, E>."""
        return self._counted(guest_error(payload), seconds)

    def host_fault(self, exc: BaseException, seconds: float) -> ProcedureError:
        if not isinstance(exc, ProcedureError):  # a bug in a host function: a trap, as before
            exc = host_bug(exc)
        return self._counted(exc, seconds)

    def invalid(self, message: str, seconds: float) -> ProcedureError:
        return self._counted(InvalidArgument(message), seconds)

    def canonical_error(self, kind: str, message: str, seconds: float) -> ProcedureError:
        """A SingleStore call's own failure in the core (canonical.rs),
        worded as singlestore/abi.py words it: ``memory`` (the guest's
        allocator refused a buffer), ``result`` (``message`` is the
        function's name: more than max_result_bytes returned), else an ABI
        error."""
        error: ProcedureError
        if kind == "memory":
            error = ResourceLimitExceeded(message, limit="memory")
        elif kind == "held":
            error = ResourceLimitExceeded(
                f"the result is {message} bytes, over max_result_bytes "
                f"({self._limits.max_result_bytes})",
                limit="max_result_bytes",
            )
        elif kind == "log":
            error = log_limit(self._limits)
        elif kind == "result":
            error = ResourceLimitExceeded(
                f"{message} returned more than max_result_bytes of data",
                limit="max_result_bytes",
            )
        else:
            error = AbiError(message)
        return self._counted(error, seconds)

    def user_error(self, code: str, message: str, seconds: float) -> ProcedureError:
        """A SingleStore function's ``err`` result (singlestore.values
        names the case as the code)."""
        return self._counted(UserError(code, message), seconds)

    def canonical_result(self, value: Any) -> Any:
        """A SingleStore function's SQL value (rows as ``(columns, rows)``)
        converted to the declared types, which are not the WIT's."""
        return held(convert_result(self._version.signature, value), self._limits)

    def not_utf8(self, name: str, data: bytes, seconds: float) -> ProcedureError:
        """A string a SingleStore function returned that is not UTF-8, with
        the reason Python's decoder gives (as singlestore/abi.py's)."""
        try:
            data.decode("utf-8")
            reason = "unknown"
        except UnicodeDecodeError as exc:
            reason = exc.reason
        return self._counted(
            AbiError(f"{name}: a returned string is not valid UTF-8 ({reason})"), seconds
        )

    @staticmethod
    def host_error(busy: bool, message: str) -> ProcedureError:
        """A savepoint of the call or of its transaction SQLite refused."""
        return busy_error(message) if busy else SqlError(message)

    def too_many_arg_bytes(self, size: int) -> ProcedureError:
        """As Runner._arguments refuses them (before any call: not counted)."""
        v = self._version
        return ResourceLimitExceeded(
            f"the arguments are {size} bytes, over max_arg_bytes ({self._limits.max_arg_bytes})",
            limit="max_arg_bytes",
        ).located(v.name, v.version)

    def too_deep(self) -> ProcedureError:
        depth = self._limits.max_call_depth
        error = ResourceLimitExceeded(
            f"procedure calls nested more than {depth} deep", limit="call-depth"
        )
        return self._counted(error, 0.0)

    def _counted(self, error: ProcedureError, seconds: float) -> ProcedureError:
        v = self._version
        own = error.procedure is None  # a nested procedure logged its own
        error = error.located(v.name, v.version)
        self._metrics.count(seconds, error.code)
        self._session.telemetry.pending_calls += 1
        if own:
            log_trap(self._session, error)
        return error


class Aggregate:
    """One aggregate group as SQLite drives it, for a SingleStore aggregate
    whose types the core's own groups (aggregate.rs) do not take: INITIALIZE
    on the first row, ITERATE per row, TERMINATE (then DESTROY, if the
    aggregate has one) at the end, each a call in the core (canonical.rs)
    on one instance the group holds, which a HANDLE state points into.
    SQLite never merges partial groups, so MERGE is only checked at
    registration."""

    def __init__(
        self,
        runner: Runner,
        roles: dict[str, tuple[str, Signature]],
        row: Callable[[Sequence[SqlValue]], list[SqlValue] | None],
    ) -> None:
        self.runner = runner
        self.roles = roles
        self.row = row
        self.held: _core.Held | None = None
        self.state: SqlValue = None

    def _numeric(self, role: str) -> _core.Numeric:
        return self.runner.role_numeric(*self.roles[role])

    def _call(self, role: str, args: Sequence[SqlValue]) -> Any:
        numeric = self._numeric(role)
        if self.held is None:
            self.held = numeric.hold()
        try:
            return numeric.call_held(self.held, args)
        except ProcedureError:
            if self.held.poisoned:
                self.held = None  # dropped: it may be corrupt
            raise

    def _start(self) -> None:
        if self.held is None:
            self.state = self._call("initialize", [])

    def step(self, *args: SqlValue) -> None:
        values = self.row(args)
        if values is None:
            return  # Runner.aggregate_row: a row skipped
        self._start()
        self.state = self._call("iterate", [self.state, *values])

    def _release(self) -> None:
        held, self.held = self.held, None
        if held is not None:
            self._numeric("initialize").release_held(held)

    def abandon(self) -> None:
        """After a failed row, or when SQLite cleans up a statement that
        failed: DESTROY, if the group started, and its instance back; a
        failure here is not reported (the statement's error is)."""
        if self.held is None or self.held.poisoned:
            self.held = None
            return
        if "destroy" in self.roles:
            try:
                self._call("destroy", [self.state])
            except ProcedureError:
                self.held = None
                return
        self._release()

    def final(self) -> Any:
        try:
            self._start()
            result = self._call("terminate", [self.state])
            if "destroy" in self.roles:
                self._call("destroy", [self.state])
            return result
        finally:
            self._release()


def held(value: Any, limits: Limits) -> Any:
    """``value``, a call's result, if it is within max_result_bytes."""
    size = _payload_bytes(value)
    if size > limits.max_result_bytes:
        raise ResourceLimitExceeded(
            f"the result is {size} bytes, over max_result_bytes ({limits.max_result_bytes})",
            limit="max_result_bytes",
        )
    return value


def _payload_bytes(value: Any) -> int:
    """Text and blob bytes in a value, a row or a table (numbers count 8)."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, list | tuple):
        return sum(_payload_bytes(v) for v in value)
    return 0 if value is None else 8
