"""The numeric call path in the Rust core (``heliosdb_wasm._core``).

A procedure whose SQL signature is all numbers, in a module that imports
nothing, needs no call context, savepoint or guest buffers: the core calls
its export from a pool of instances under the version's limits, with the
values in wasm's raw slots. ``Runner`` (invoke.py) owns one ``Numeric`` per
version; ``Database`` registers a ``Scalar`` for it straight into SQLite,
so an SQL row costs no apsw dispatch, no GIL and no Python object.

Failures come back through the ``fault`` hook the Runner gives its
``Numeric`` (``runtime.core_error`` makes the typed error); successful
calls are counted in a ``Tally`` that ``Telemetry.collect`` folds into the
version's metrics (``collector``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import apsw

from . import _core
from . import telemetry as _telemetry
from .values import Signature, SqlType

# SQL type -> how the core passes it (docs/abi.md §3).
KIND: dict[SqlType, _core.Kind] = {
    SqlType.BIGINT: "i64",
    SqlType.INTEGER: "i32",
    SqlType.BOOLEAN: "bool",
    SqlType.DOUBLE: "f64",
    SqlType.REAL: "f32",
}


def eligible(params: Sequence[SqlType], returns: SqlType | None) -> bool:
    """Whether values of these types can take the numeric path."""
    return all(t in KIND for t in params) and (returns is None or returns in KIND)


# Parameters the core hands the guest as buffers, when it serves the
# module's host functions. JSON is text the core checks (serde_json) and
# leaves to Python's coercion when it is not sure, so an invalid document is
# refused in Python's words (values.check_json).
BUFFER: dict[SqlType, _core.Param] = {
    SqlType.TEXT: "text",
    SqlType.BLOB: "blob",
    SqlType.JSON: "json",
}


def hostable(signature: Signature) -> bool:
    """Whether the core can run calls of this signature whole when the
    module's host functions are the core's: numbers, text, JSON or blobs in,
    and a number, a scalar value or rows out (text, blob and JSON results and
    a table procedure's rows come back through ``HostedHooks.lift``)."""
    return all(c.type in KIND or c.type in BUFFER for c in signature.params)


def table_columns(signature: Signature) -> list[str | None] | None:
    """A table procedure's columns as the core hands their values to Python
    unconverted when each is exactly of its column's type (hosted.rs
    ``exact_rows``; None: a column whose values Python converts), or None
    for a procedure that is not a table."""
    if signature.table is None:
        return None
    exact: dict[SqlType, str] = {
        SqlType.BIGINT: "i64",
        SqlType.INTEGER: "i32",
        SqlType.DOUBLE: "f64",
        SqlType.TEXT: "text",
        SqlType.BLOB: "blob",
    }
    return [exact.get(c.type) for c in signature.table]


def params_of(signature: Signature) -> list[_core.Param]:
    """The parameters as the core takes them: number kinds and buffers."""
    return [KIND.get(c.type) or BUFFER[c.type] for c in signature.params]


def kinds(signature: Signature) -> tuple[list[_core.Kind], _core.Kind | None]:
    """The parameters' kinds and the result's (None: no result, or one that
    is not a number)."""
    returns = signature.returns
    params = [KIND[c.type] for c in signature.params if c.type in KIND]
    return params, KIND.get(returns) if returns else None


def new_tally() -> _core.Tally:
    return _core.Tally(
        _telemetry._BASE_SECONDS, _telemetry._BUCKETS_PER_OCTAVE, _telemetry._NUM_BUCKETS
    )


def collector(
    tally: _core.Tally, telemetry: _telemetry.Telemetry, name: str, version: int
) -> Callable[[], bool]:
    """Folds ``tally`` into the version's metrics; False once it is done."""

    def collect() -> bool:
        # attached first: a Numeric freed after this read counted nothing
        # since the drain below, so nothing is lost.
        attached = tally.attached
        calls, seconds, histogram, fuel, max_memory = tally.drain()
        if calls:
            m = telemetry.metrics(name, version)
            m.calls += calls
            m.total_seconds += seconds
            for b, n in histogram.items():
                m.histogram[b] = m.histogram.get(b, 0) + n
            m.fuel += fuel
            if max_memory is not None:
                m.max_memory = max(m.max_memory or 0, max_memory)
            telemetry.pending_calls += calls
        return attached

    return collect


_sqlite_loaded: bool | None = None


def load_sqlite_api() -> bool:
    """Loads the core once as an extension of apsw's SQLite, on a private
    connection (so no user connection ever has extension loading on): the
    entry point keeps SQLite's routine table, through which the core runs
    procedures' statements and binds SQL functions. False where apsw's
    SQLite cannot load extensions."""
    global _sqlite_loaded
    if _sqlite_loaded is None:
        _sqlite_loaded = False
        if _core.__file__:
            try:
                conn = apsw.Connection(":memory:")
                try:
                    conn.enable_load_extension(True)
                    conn.load_extension(_core.__file__, _core.extension_entry_point())
                finally:
                    conn.close()
            except apsw.Error:
                pass
            _sqlite_loaded = _core.sqlite_ready()
    return _sqlite_loaded


def sqlite_direct() -> bool:
    """Whether SQLite can call the core itself (``Scalar.bind``).
    ``HELIOSDB_WASM_SQLITE_DIRECT=0`` keeps apsw's route for SQL functions."""
    if os.environ.get("HELIOSDB_WASM_SQLITE_DIRECT", "1") == "0":
        return False
    return load_sqlite_api()


def make_scalar(
    signature: Signature,
    acquire: Callable[[], _core.Numeric | None],
    slow: Callable[..., Any],
) -> _core.Scalar | None:
    """The SQL function SQLite calls for a procedure that takes numbers, or
    None when its signature cannot have one. ``acquire()`` gives the
    ``Numeric`` of the current version (None: every row goes to
    ``slow(*args)``, ``Runner.call``)."""
    if signature.table is not None or not hostable(signature):
        return None
    _, result = kinds(signature)
    return _core.Scalar(params_of(signature), result, signature.called_on_null_input, acquire, slow)
