"""The fast call path for numeric Basic-ABI exports.

``wasmtime.Func.__call__`` re-reads the function's type, converts each value
through ``wasmtime_val_t`` and allocates its buffers on every call (~30 µs
here). A procedure's export never changes type, so ``RawCall`` resolves it
once and calls ``wasmtime_func_call_unchecked`` with one preallocated
``wasmtime_val_raw_t`` buffer: arguments in, result out, nothing allocated per
call. Fuel and the epoch deadline are re-armed before every call exactly as
on the general path, so limits behave the same.

Only exports whose SQL signature is all numbers and whose module imports
nothing take this path (the guest cannot touch the database, so no call
context or savepoint is needed); everything else uses ``Func.__call__``.

``NativeCall`` does the same in C (the optional extension ``_native``, built
from _native.c when a C compiler is present): no ctypes and no Python per
value. ``make_call`` picks it when it is importable and the environment
variable ``HELIOSDB_WASM_NATIVE`` is not ``0``; ``RawCall`` is the fallback.
Both give the same results and raise the same wasmtime exceptions.

``make_scalar`` goes one step further for SQL: a ``_native.Scalar`` is the
function SQLite calls per row, doing what ``Runner._call_fast`` does (checks,
NULLs, one held instance, metrics) in C and handing everything unusual to
Python (see ``Runner.native_acquire`` and ``Runner.native_fault``). Its
successful calls are counted in a ``_native.Tally`` that ``Telemetry.collect``
folds into the version's metrics. Where the accelerator was compiled with
sqlite3ext.h, ``bind_sqlite`` registers the Scalar with SQLite itself, so a
row costs no apsw dispatch, no GIL and no Python objects at all (~0.1 µs
instead of ~0.21 on the bench machine).
"""

from __future__ import annotations

import ctypes
import importlib
import os
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import apsw
import wasmtime
from wasmtime import _bindings as ffi

from . import telemetry as _telemetry
from .values import Signature, SqlType

_native: ModuleType | None
try:
    _native = importlib.import_module("._native", __package__)  # untyped C module
except ImportError:  # built without a C compiler: RawCall only
    _native = None

# The raw C functions with their argument types already declared, called
# without wasmtime-py's Python wrappers.
_call_unchecked = ffi._wasmtime_func_call_unchecked
_set_fuel = ffi._wasmtime_context_set_fuel
_set_deadline = ffi._wasmtime_context_set_epoch_deadline

# SQL type -> the wasm_val_raw field it travels in.
_FIELD = {
    SqlType.BIGINT: "i64",
    SqlType.INTEGER: "i32",
    SqlType.BOOLEAN: "i32",
    SqlType.DOUBLE: "f64",
    SqlType.REAL: "f32",
}


def eligible(params: Sequence[SqlType], returns: SqlType | None) -> bool:
    return all(t in _FIELD for t in params) and (returns is None or returns in _FIELD)


class RawCall:
    """One export of one instance, callable with Python numbers."""

    def __init__(
        self,
        store: wasmtime.Store,
        func: wasmtime.Func,
        params: Sequence[SqlType],
        returns: SqlType | None,
        fuel: int,
        deadline_ticks: int,
    ) -> None:
        self._store = store  # keeps the context pointer valid
        self._ctx = store._context()
        self._func = ctypes.byref(func._func)
        self._buf = (ffi.wasmtime_val_raw_t * max(1, len(params), returns is not None))()
        # The buffer's slots as ctypes views, made once: indexing the array
        # would build a new view per argument per call.
        self._slots = [(self._buf[i], _FIELD[t]) for i, t in enumerate(params)]
        self._params = list(params)
        self._out = self._buf[0]
        self._len = len(self._buf)
        self._trap = ctypes.POINTER(ffi.wasm_trap_t)()
        self._trap_ref = ctypes.byref(self._trap)
        self._fuel = fuel
        self._ticks = deadline_ticks
        self._result = _FIELD[returns] if returns is not None else None
        self._bool = returns is SqlType.BOOLEAN

    def __call__(self, args: Sequence[Any]) -> Any:
        for (slot, field), value in zip(self._slots, args, strict=True):
            setattr(slot, field, value)
        ctx = self._ctx
        _set_fuel(ctx, self._fuel)
        _set_deadline(ctx, self._ticks)
        error = _call_unchecked(ctx, self._func, self._buf, self._len, self._trap_ref)
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        if self._trap:
            trap = wasmtime.Trap._from_ptr(self._trap)
            self._trap = ctypes.POINTER(ffi.wasm_trap_t)()
            self._trap_ref = ctypes.byref(self._trap)
            raise trap
        if self._result is None:
            return None
        value = getattr(self._out, self._result)
        return bool(value) if self._bool else value

    def batch(self, columns: Sequence[Sequence[Any]], rows: int | None = None) -> list[Any]:
        """One call per row, ``columns[i][row]`` the i-th argument.

        The values are SQL values and, unlike a single call's, do not wrap:
        they are checked before any row runs (see ``_sql_column``). A
        failure raises the wasmtime exception with ``row`` (its index) and
        ``results`` (the rows before it) set on it.
        """
        if len(columns) != len(self._slots):
            raise ValueError(f"expected {len(self._slots)} column(s), got {len(columns)}")
        count = _row_count(columns, rows)
        columns = [_sql_column(c, t) for c, t in zip(columns, self._params, strict=True)]
        results: list[Any] = []
        for row, values in enumerate(zip(*columns, strict=True) if columns else [()] * count):
            try:
                results.append(self(values))
            except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
                exc.row = row
                exc.results = results
                raise
        return results


_INT_RANGE = {SqlType.BIGINT: (-(2**63), 2**63 - 1), SqlType.INTEGER: (-(2**31), 2**31 - 1)}


def _sql_column(column: Sequence[Any], sql_type: SqlType) -> Sequence[Any]:
    """A batch column as _native's batch converts it (to_raw_sql): an integer
    outside the parameter's range is an OverflowError, anything but an int
    for an integer or boolean parameter a TypeError, a boolean the value's
    truth; floats convert as on a single call."""
    if sql_type in (SqlType.DOUBLE, SqlType.REAL):
        return column
    for value in column:
        if not isinstance(value, int):
            raise TypeError(f"a {sql_type.value} parameter takes int, not {type(value).__name__}")
    if sql_type is SqlType.BOOLEAN:
        return [bool(value) for value in column]
    low, high = _INT_RANGE[sql_type]
    if column and (min(column) < low or max(column) > high):
        raise OverflowError(f"a value out of range for a {sql_type.value} parameter")
    return column


def _row_count(columns: Sequence[Sequence[Any]], rows: int | None) -> int:
    counts = {len(c) for c in columns}
    if rows is not None:
        counts.add(rows)
    if len(counts) != 1:
        raise ValueError("the columns and rows disagree on the number of rows")
    return counts.pop()


# SQL type -> the _native value kind.
_KIND = {
    SqlType.BIGINT: 1,
    SqlType.INTEGER: 0,
    SqlType.BOOLEAN: 4,
    SqlType.DOUBLE: 3,
    SqlType.REAL: 2,
}


def _address(fn: Any) -> int:
    return ctypes.cast(fn, ctypes.c_void_p).value or 0


def fault_exception(error: int, trap: int) -> Exception:
    """The exception RawCall raises for the same failure (taking ownership)."""
    if error:
        return wasmtime.WasmtimeError._from_ptr(  # type: ignore[no-any-return]
            ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t))
        )
    return wasmtime.Trap._from_ptr(  # type: ignore[no-any-return]
        ctypes.cast(trap, ctypes.POINTER(ffi.wasm_trap_t))
    )


class NativeCall:
    """``RawCall`` in C: same interface, results and exceptions."""

    def __init__(
        self,
        store: wasmtime.Store,
        func: wasmtime.Func,
        params: Sequence[SqlType],
        returns: SqlType | None,
        fuel: int,
        deadline_ticks: int,
    ) -> None:
        if _native is None:
            raise RuntimeError("heliosdb_wasm._native is not built")
        self._fault: type[Exception] = _native.Fault
        self._caller = _native.Caller(
            _address(store._context()),
            ctypes.addressof(func._func),  # copied by the Caller
            _address(_call_unchecked),
            _address(_set_fuel),
            _address(_set_deadline),
            bytes(_KIND[t] for t in params),
            _KIND[returns] if returns is not None else -1,
            fuel,
            deadline_ticks,
            store,  # keeps the context pointer valid
        )
        self._call = self._caller.call

    @property
    def caller(self) -> Any:
        """The ``_native.Caller`` (what a ``_native.Scalar`` calls)."""
        return self._caller

    def __call__(self, args: Sequence[Any]) -> Any:
        try:
            return self._call(args)
        except self._fault as fault:
            error, trap = fault.args
        raise fault_exception(error, trap)

    def batch(self, columns: Sequence[Sequence[Any]], rows: int | None = None) -> list[Any]:
        """As ``RawCall.batch``, without Python per row or value."""
        try:
            return self._caller.batch(columns, rows)  # type: ignore[no-any-return]
        except self._fault as fault:
            error, trap = fault.args
            row, results = fault.row, fault.results  # type: ignore[attr-defined]
        exc = fault_exception(error, trap)
        exc.row = row  # type: ignore[attr-defined]
        exc.results = results  # type: ignore[attr-defined]
        raise exc


FastCall = RawCall | NativeCall


def native_available() -> bool:
    return _native is not None and os.environ.get("HELIOSDB_WASM_NATIVE", "1") != "0"


_sqlite_loaded: bool | None = None


def sqlite_direct() -> bool:
    """Whether SQLite can call a Scalar's C entry itself (``bind_sqlite``),
    with no apsw and no Python per row: the C accelerator, built with
    sqlite3ext.h, loaded once as an extension of apsw's SQLite (on a private
    connection, so no user connection ever has extension loading on).
    ``HELIOSDB_WASM_SQLITE_DIRECT=0`` keeps the apsw route."""
    global _sqlite_loaded
    if not native_available() or os.environ.get("HELIOSDB_WASM_SQLITE_DIRECT", "1") == "0":
        return False
    if _sqlite_loaded is None:
        assert _native is not None
        _sqlite_loaded = False
        if _native.sqlite_supported() and _native.__file__:
            try:
                conn = apsw.Connection(":memory:")
                try:
                    conn.enable_load_extension(True)
                    conn.load_extension(_native.__file__, "sqlite3_heliosdbwasm_init")
                finally:
                    conn.close()
                _sqlite_loaded = bool(_native.sqlite_ready())
            except apsw.Error:
                pass  # an SQLite built without extension loading: apsw's route
    return _sqlite_loaded


def bind_sqlite(conn: apsw.Connection, name: str, nargs: int, scalar: Callable[..., Any]) -> None:
    """Registers a Scalar from ``make_scalar`` as SQL function ``name`` on
    ``conn`` (requires ``sqlite_direct()``); apsw's create_scalar_function
    with None removes it again."""
    assert _native is not None
    _native.bind_sqlite(conn.sqlite3_pointer(), name, nargs, scalar)


def make_call(
    store: wasmtime.Store,
    func: wasmtime.Func,
    params: Sequence[SqlType],
    returns: SqlType | None,
    fuel: int,
    deadline_ticks: int,
) -> FastCall:
    """The fastest caller available: ``NativeCall`` if built (and not
    disabled with ``HELIOSDB_WASM_NATIVE=0``), else ``RawCall``."""
    cls = NativeCall if native_available() else RawCall
    return cls(store, func, params, returns, fuel, deadline_ticks)


Acquired = tuple[Any, Any, Any, Callable[[Any, int, int, float], Any]]
"""What a Scalar's ``acquire`` hook returns: (owner, instance, _native.Caller,
on_fault(instance, error_addr, trap_addr, seconds))."""


def make_scalar(
    name: str,
    version: int,
    abi: str,
    signature: Signature,
    acquire: Callable[[], Acquired | None],
    slow: Callable[..., Any],
    telemetry: _telemetry.Telemetry,
    owners: dict[str, Any] | None = None,
) -> Callable[..., Any] | None:
    """A ``_native.Scalar`` for SQLite to call directly, or ``None`` when the
    procedure cannot have one (not built, disabled, not numeric).

    ``acquire()`` gives the instance to hold with its owner (a Runner), its
    Caller and the fault hook, or ``None`` (the module imports something, or
    the version is stale): then every call goes to ``slow(*args)``, the
    Python path. With ``owners`` the instance is used only while
    ``owners[name.lower()]`` is its owner; otherwise the next call acquires
    again. Successful calls are counted in a Tally that
    ``telemetry.collect()`` folds into the metrics of (``name``, ``version``).
    """
    if (
        not native_available()
        or abi != "basic"
        or signature.table is not None
        or not eligible([c.type for c in signature.params], signature.returns)
    ):
        return None
    assert _native is not None
    tally = _native.Tally(
        _telemetry._BASE_SECONDS, _telemetry._BUCKETS_PER_OCTAVE, _telemetry._NUM_BUCKETS
    )
    collecting = False

    def acquire_and_collect() -> Acquired | None:
        nonlocal collecting
        got = acquire()
        if got is not None and not collecting:
            telemetry.collectors.append(_collector(tally, telemetry, name, version))
            collecting = True
        return got

    returns = signature.returns
    scalar: Callable[..., Any] = _native.Scalar(
        bytes(_KIND[c.type] for c in signature.params),
        _KIND[returns] if returns is not None else -1,
        signature.called_on_null_input,
        acquire_and_collect,
        slow,
        tally,
        owners,
        name.lower() if owners is not None else None,
    )
    return scalar


def _collector(
    tally: Any, telemetry: _telemetry.Telemetry, name: str, version: int
) -> Callable[[], bool]:
    """Folds the tally into the version's metrics; False once it is done."""

    def collect() -> bool:
        # attached first: a Scalar freed after this read still counted
        # nothing since the drain below, so nothing is lost.
        attached = bool(tally.attached)
        calls, seconds, histogram = tally.drain()
        if calls:
            m = telemetry.metrics(name, version)
            m.calls += calls
            m.total_seconds += seconds
            for b, n in histogram.items():
                m.histogram[b] = m.histogram.get(b, 0) + n
            telemetry.pending_calls += calls
        return attached

    return collect
