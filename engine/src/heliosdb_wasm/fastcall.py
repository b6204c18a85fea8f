"""Calling a Basic-ABI export on wasmtime-py without its per-call overhead.

``wasmtime.Func.__call__`` re-reads the function's type, converts each value
through ``wasmtime_val_t`` and allocates its buffers on every call (~30 µs
here). An export never changes type, so ``RawCall`` resolves it once and
calls ``wasmtime_func_call_unchecked`` with one preallocated
``wasmtime_val_raw_t`` buffer; fuel and the epoch deadline are re-armed
before every call exactly as on ``Func.__call__``'s path.

This is what is left of the wasmtime-py call routes while the runtime
moves into the Rust core (issue 13): abi_basic.BasicInstance calls the
exports of modules that import WASI (Go) through it, and singlestore/abi.py
those of SingleStore's canonical ABI. Every other Basic-ABI module runs in
the core (abi_basic.CoreInstance, engine/core/src/basic.rs), host functions
included.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import wasmtime
from wasmtime import _bindings as ffi

from .values import SqlType

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


FastCall = RawCall


def make_call(
    store: wasmtime.Store,
    func: wasmtime.Func,
    params: Sequence[SqlType],
    returns: SqlType | None,
    fuel: int,
    deadline_ticks: int,
) -> FastCall:
    """The caller of ``func`` on ``store`` with these SQL-typed values."""
    return RawCall(store, func, params, returns, fuel, deadline_ticks)
