"""The Basic ABI: core wasm modules, specified in docs/abi.md sections 1-7.

A BasicModule validates a compiled module once (imports, marker, version);
``check`` matches one export against a SQL signature; a BasicInstance is one
instantiation with its own store, whose host imports are closures over the
CallContext of the call in progress.
"""

from __future__ import annotations

import array
import ctypes
import json
import random
import struct
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import wasmtime
from wasmtime import _bindings as ffi
from wasmtime import _func as wasmtime_func
from wasmtime._func import maybe_raise_last_exn

from . import _core
from . import values as v
from .errors import (
    WIT_ERROR_CASES,
    AbiError,
    ProcedureError,
    ProcedureTrap,
    ResourceLimitExceeded,
    UserError,
    from_wit_case,
)
from .fastcall import FastCall, make_call
from .hostapi import LOG_LEVELS, CallContext, is_fatal, timed_host_function
from .policy import Capabilities, Limits
from .runtime import (
    Runtime,
    Source,
    arm,
    core_error,
    deadline_ticks,
    limit_error,
    source_bytes,
    translate_trap,
)
from .values import Signature, SqlType, SqlValue
from .wasi import (
    SEEDED_RANDOM,
    WASI_EFAULT,
    WASIP1_FUNCTIONS,
    WASIP1_MODULE,
    GuestOutput,
    guest_output,
    track,
    wasi_config,
)

ABI_VERSION = 1
T = TypeVar("T")
HOST_MODULE = _core.BASIC_HOST_MODULE

_I32, _I64 = "i32", "i64"
# name -> (params, results): the only imports a module may have (docs/abi.md §4).
# wasm value types as the fast caller's SQL types (it only uses their widths).
_WASM_AS_SQL = {
    "i32": SqlType.INTEGER,
    "i64": SqlType.BIGINT,
    "f32": SqlType.REAL,
    "f64": SqlType.DOUBLE,
}
# The batch ABI (docs/abi.md §9): `<export>__batch(count, args_ptr, out_ptr)`,
# columns of little-endian values of each parameter's wasm width.
BATCH_SUFFIX = "__batch"
_BATCH_CODE = {
    SqlType.BIGINT: "q",
    SqlType.INTEGER: "i",
    SqlType.BOOLEAN: "i",
    SqlType.DOUBLE: "d",
    SqlType.REAL: "f",
}

# --- pre-linked host functions (InstancePre) -------------------------------------
#
# A module's imports are resolved once into a wasmtime InstancePre, so each
# new instance is only a store plus instantiation. The host functions are
# then not bound to a store: they find their BasicInstance by the calling
# store's context. They are "unchecked" functions: wasmtime.Func would convert
# every argument and result through Val objects (~10 µs per host call here);
# these read and write the raw value slots by their known widths (~1 µs).

_INSTANCES: dict[int, weakref.ReferenceType[BasicInstance]] = {}
_LINKED: list[tuple[str, tuple[str, ...], str | None]] = []


def _caller_instance(caller: Any) -> BasicInstance:
    address = ctypes.cast(ffi.wasmtime_caller_context(caller), ctypes.c_void_p).value or 0
    instance = _INSTANCES[address]()
    if instance is None:
        raise AbiError("a host function was called for an instance that is gone")
    return instance


@ffi.wasmtime_func_unchecked_callback_t  # type: ignore[untyped-decorator]
def _linked_trampoline(env: int, caller: Any, vals: Any, _n: int) -> int:
    try:
        name, params, result = _LINKED[env or 0]  # a void* env: None for 0
        impl = _caller_instance(caller).host_impl(name)
        out = impl(*[getattr(vals[i], field) for i, field in enumerate(params)])
        if result is not None:
            setattr(vals[0], result, out)
        return 0
    except BaseException as exc:  # noqa: BLE001 - re-raised after the call
        wasmtime_func.LAST_EXCEPTION = exc
        message = b"heliosdb host function failed"
        trap = ffi.wasmtime_trap_new(message, len(message))
        return ctypes.cast(trap, ctypes.c_void_p).value or 0


@ffi.wasmtime_func_unchecked_callback_t  # type: ignore[untyped-decorator]
def _seeded_random_trampoline(_env: int, caller: Any, vals: Any, _n: int) -> int:
    """random_get without the `random` capability (see BasicInstance)."""
    try:
        ptr, length = vals[0].i32 & 0xFFFFFFFF, vals[1].i32 & 0xFFFFFFFF
        instance = _caller_instance(caller)
        found = ffi.wasmtime_extern_t()
        name = b"memory"
        ok = ffi.wasmtime_caller_export_get(caller, name, len(name), ctypes.byref(found))
        if not ok or found.kind != _EXTERN_MEMORY:
            vals[0].i32 = WASI_EFAULT
            return 0
        ctx = ffi.wasmtime_caller_context(caller)
        memory = ctypes.byref(found.of.memory)
        size = int(_memory_size(ctx, memory))
        if ptr + length > size:
            vals[0].i32 = WASI_EFAULT
            return 0
        base = ctypes.cast(_memory_data(ctx, memory), ctypes.c_void_p).value or 0
        ctypes.memmove(base + ptr, instance.rng.randbytes(length), length)
        vals[0].i32 = 0
        return 0
    except BaseException as exc:  # noqa: BLE001 - re-raised after the call
        wasmtime_func.LAST_EXCEPTION = exc
        message = b"heliosdb random_get failed"
        return ctypes.cast(ffi.wasmtime_trap_new(message, len(message)), ctypes.c_void_p).value or 0


_EXTERN_MEMORY = 3  # wasmtime_extern_kind_t: func, global, table, memory


def _define(
    linker: wasmtime.Linker,
    module: str,
    name: str,
    ty: wasmtime.FuncType,
    callback: Any,
    env: int,
) -> None:
    m, n = module.encode(), name.encode()
    error = ffi.wasmtime_linker_define_func_unchecked(
        linker.ptr(), m, len(m), n, len(n), ty.ptr(), callback, env, _no_finalize
    )
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # type: ignore[untyped-decorator]
def _no_finalize(_env: int) -> None:
    pass


_memory_data = ffi._wasmtime_memory_data
_memory_size = ffi._wasmtime_memory_data_size
# The host functions a core module may import, with their wasm types: the
# core's table (engine/core/src/abi.rs), defined once and checked against
# wit/ by tests/test_host_api_wit.py.
HOST_IMPORTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = _core.BASIC_HOST_IMPORTS
_STATUS = {case: i + 1 for i, case in enumerate(WIT_ERROR_CASES)}
_RESULT_WASM = {
    SqlType.BIGINT: "i64",
    SqlType.INTEGER: "i32",
    SqlType.DOUBLE: "f64",
    SqlType.REAL: "f32",
    SqlType.BOOLEAN: "i32",
}
_OUT = struct.Struct("<II")
_I64_BYTES = struct.Struct("<q")
_F64_BYTES = struct.Struct("<d")


def _types(items: Sequence[wasmtime.ValType]) -> tuple[str, ...]:
    return tuple(str(t) for t in items)


def _render(params: Sequence[str], results: Sequence[str]) -> str:
    return f"({', '.join(params)}) -> ({', '.join(results)})"


class BasicModule:
    """A validated core module."""

    abi = "basic"

    def __init__(self, runtime: Runtime, sha256: str, wasm: Source) -> None:
        self.runtime = runtime
        self.sha256 = sha256
        self._source: Source | None = wasm
        self._core: _core.Module | None = None
        self._wasmtime: wasmtime.Module | None = None
        self.imports: list[str] = []
        self.uses_wasi = False
        self._pre: dict[bool, tuple[wasmtime.Linker, wasmtime.InstancePre]] = {}
        # Each module is compiled by the one engine that runs it, and read
        # (imports, exports) from whichever has it compiled already: the
        # core for what runs there (so wasmtime-py stays off a core
        # procedure's cold start), wasmtime-py for WASI guests. Only a module
        # neither has is read from its bytes, whose import section says
        # which engine compiles it. A module the core cannot compile is
        # wasmtime-py's to judge.
        refused = ""
        core = _core.Module.cached(runtime.core, sha256)
        if core is None and runtime.cached_module(sha256) is None:
            # Read once, for whichever engine compiles it (a registry blob
            # may come as a memoryview: bytes for the import scan).
            wasm = bytes(source_bytes(wasm))
            self._source = wasm
            try:
                wasi = WASIP1_MODULE in _core.import_modules(wasm)
            except _core.CoreError:
                wasi = True  # unreadable: wasmtime-py says what is wrong
            if not wasi:
                try:
                    core = _core.Module(runtime.core, sha256, wasm)
                except _core.CoreError as exc:
                    refused = exc.args[1]
        if core is not None:
            self._core = core
            imports = core.import_types
            exported = core.functions
            names = set(core.export_names)
        else:
            module = self.module  # AbiError if wasmtime-py cannot compile it either
            imports = [
                (
                    i.module,
                    i.name or "",
                    list(_types(i.type.params)) if isinstance(i.type, wasmtime.FuncType) else None,
                    list(_types(i.type.results)) if isinstance(i.type, wasmtime.FuncType) else None,
                )
                for i in module.imports
            ]
            pairs = [(e.name, e.type) for e in module.exports]
            exported = [
                (name, list(_types(ty.params)), list(_types(ty.results)))
                for name, ty in pairs
                if isinstance(ty, wasmtime.FuncType)
            ]
            names = {name for name, _ in pairs}
        for module_name, name, params, results in imports:
            if module_name == WASIP1_MODULE and name in WASIP1_FUNCTIONS:
                # Linked to deny-by-default WASI (see wasi.py); wasmtime checks
                # the function types when it instantiates.
                self.uses_wasi = True
                continue
            if module_name != HOST_MODULE:
                raise AbiError(
                    f"import {module_name}.{name} is not allowed: a core module "
                    f"may only import the {HOST_MODULE!r} host functions and "
                    f"{WASIP1_MODULE} (WASI preview 1)"
                )
            expected = HOST_IMPORTS.get(name)
            if expected is None:
                known = ", ".join(HOST_IMPORTS)
                raise AbiError(f"unknown host import {HOST_MODULE}.{name} (known: {known})")
            if params is None or results is None:
                raise AbiError(
                    f"host import {name} has type of a non-function import, "
                    f"expected {_render(*expected)}"
                )
            if (tuple(params), tuple(results)) != expected:
                raise AbiError(
                    f"host import {name} has type {_render(params, results)}, "
                    f"expected {_render(*expected)}"
                )
            self.imports.append(name)
        self.exports: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
            name: (tuple(params), tuple(results)) for name, params, results in exported
        }
        self.export_names = names
        self.is_heliosdb = "heliosdb_abi_version" in self.exports
        # No imports at all: the guest cannot reach the database or WASI,
        # which lets numeric exports take the core's numeric path (native.py).
        self.pure = not self.imports and not self.uses_wasi
        # Without WASI the whole call runs in the core, host functions
        # included (CoreInstance); WASI guests (Go) still run on wasmtime-py.
        self._pools: dict[str, _core.BasicPool] = {}
        if not self.uses_wasi and self._core is None:
            # Read from wasmtime-py's cache, or refused by the core: it can
            # only run in the core, which compiles it now (or says why not).
            if refused:
                raise AbiError(f"the runtime core refused the module: {refused}")
            self._core_module()
        self.in_core = not self.uses_wasi
        if self.imports and not self.is_heliosdb:
            raise AbiError(
                "the module imports heliosdb host functions but does not export "
                "heliosdb_abi_version"
            )

    @property
    def module(self) -> wasmtime.Module:
        """The module on wasmtime-py (WASI guests, SingleStore's raw calls),
        loaded on first use."""
        if self._wasmtime is None:
            if self._source is None:
                raise AbiError("the module's bytes are gone")
            self._wasmtime = self.runtime.module(self.sha256, self._source)
        return self._wasmtime

    def core_export(self, export: str) -> tuple[_core.Module, str]:
        """The module compiled by the Rust core (its own compiled-code cache,
        so the registry's bytes are read only on a miss), for the numeric
        path of a ``pure`` module."""
        if not self.pure:
            raise AbiError("a module that imports host functions has no numeric path")
        return self._core_module(), export

    def _core_module(self) -> _core.Module:
        if self._core is None:
            if self._source is None:
                raise AbiError("a module that imports WASI does not run in the core")
            try:
                self._core = _core.Module(self.runtime.core, self.sha256, self._source)
            except _core.CoreError as exc:
                raise AbiError(f"the runtime core refused the module: {exc.args[1]}") from None
        return self._core

    def verify(self, limits: Limits, caps: Capabilities) -> CoreInstance | BasicInstance:
        """Instantiate once under ``limits`` and check the declared ABI version.

        Instantiating at registration refuses a module that could never run
        (a start function that loops or traps, an initial memory above the
        limit) before it is stored.
        """
        # A core module is compiled by the core now, at registration, so
        # that its cache serves the first call of a later process as well.
        instance = self.instantiate(limits, caps)
        if not self.is_heliosdb:
            return instance
        params, results = self.exports["heliosdb_abi_version"]
        if params or results != (_I32,):
            raise AbiError("heliosdb_abi_version must have type () -> (i32)")
        if isinstance(instance, CoreInstance):
            version = instance.abi_version()
        else:
            func = instance.exports["heliosdb_abi_version"]
            assert isinstance(func, wasmtime.Func)
            try:
                version = func(instance.store)
            except Exception as exc:  # noqa: BLE001 - any guest failure is typed below
                raise translate_trap(exc, limits, None) from None
        if version != ABI_VERSION:
            raise AbiError(
                f"module declares Basic ABI version {version}; this engine "
                f"supports version {ABI_VERSION}"
            )
        return instance

    def check(self, export: str, signature: Signature | None) -> Signature:
        """Verify that ``export`` implements ``signature``; return it."""
        if signature is None:
            raise AbiError(
                "a core module carries no SQL types: declare the parameters and "
                "RETURNS in CREATE PROCEDURE"
            )
        ty = self.exports.get(export)
        if ty is None:
            funcs = ", ".join(sorted(n for n in self.exports if not n.startswith("heliosdb_")))
            raise AbiError(f"the module exports no function {export!r} (it has: {funcs or 'none'})")
        want_params = tuple(w for c in signature.params for w in c.type.wasm)
        want_results: tuple[str, ...] = ()
        if signature.returns is not None and signature.returns in _RESULT_WASM:
            want_results = (_RESULT_WASM[signature.returns],)
        actual = ty
        if actual != (want_params, want_results):
            raise AbiError(
                f"export {export} has type {_render(*actual)}, but the SQL signature "
                f"{signature.render()} needs {_render(want_params, want_results)}"
            )
        uses_buffers = any(not c.type.is_numeric for c in signature.params)
        returns_buffer = signature.is_table or (
            signature.returns is not None and not signature.returns.is_numeric
        )
        if (uses_buffers or returns_buffer) and not self.is_heliosdb:
            raise AbiError(
                "text, blob, JSON and table values need a HeliosDB module "
                "(export heliosdb_abi_version, heliosdb_alloc and memory)"
            )
        if uses_buffers:
            self._require("heliosdb_alloc", "memory")
        if returns_buffer and "heliosdb_return" not in self.imports:
            raise AbiError(
                f"{signature.render()} is returned through heliosdb_return, "
                "which the module does not import"
            )
        return signature

    def batch_entry(self, export: str) -> str | None:
        """The batch entry point of ``export`` (docs/abi.md §9), if the
        module has one and the allocator and memory it needs."""
        name = export + BATCH_SUFFIX
        ty = self.exports.get(name)
        if ty is None or "heliosdb_alloc" not in self.exports or "memory" not in self.export_names:
            return None
        if ty != ((_I32, _I32, _I32), (_I32,)):
            raise AbiError(f"{name} must have type (i32, i32, i32) -> (i32)")
        return name

    def _require(self, *names: str) -> None:
        missing = [n for n in names if n not in self.export_names]
        if missing:
            raise AbiError(f"the module must export {', '.join(missing)}")

    def instantiate(self, limits: Limits, caps: Capabilities) -> CoreInstance | BasicInstance:
        """A new instance: in the core unless the module imports WASI."""
        if self.in_core:
            return CoreInstance(self, limits)
        return BasicInstance(self, limits, caps)

    def wasmtime_instance(self, limits: Limits, caps: Capabilities) -> BasicInstance:
        """An instance on wasmtime-py, for SingleStore's canonical ABI,
        whose raw calls have not moved into the core yet."""
        return BasicInstance(self, limits, caps)

    def core_pool(self, limits: Limits) -> _core.BasicPool:
        """The core's pool of this module under ``limits`` (host functions
        linked once), made on first use."""
        key = json.dumps(limits.to_json(), sort_keys=True)
        pool = self._pools.get(key)
        if pool is None:
            try:
                pool = _core.BasicPool(self._core_module(), limits.to_json(), host_status)
            except _core.CoreError as exc:
                code, message = exc.args
                raise core_error(code, message, None, [], limits) from None
            pool = self._pools.setdefault(key, pool)
        return pool

    def prelinked(self, seeded_random: bool) -> wasmtime.InstancePre:
        """The module with its imports resolved, made once (per random policy)."""
        found = self._pre.get(seeded_random)
        if found is None:
            linker = wasmtime.Linker(self.runtime.engine)
            if self.uses_wasi:
                linker.define_wasi()
                if seeded_random:
                    linker.allow_shadowing = True
                    i32 = wasmtime.ValType.i32()
                    _define(
                        linker,
                        WASIP1_MODULE,
                        "random_get",
                        wasmtime.FuncType([i32, i32], [i32]),
                        _seeded_random_trampoline,
                        0,
                    )
            for name in self.imports:
                params, results = HOST_IMPORTS[name]
                ty = wasmtime.FuncType(
                    [_VALTYPE[p]() for p in params], [_VALTYPE[r]() for r in results]
                )
                _LINKED.append((name, params, results[0] if results else None))
                _define(linker, HOST_MODULE, name, ty, _linked_trampoline, len(_LINKED) - 1)
            try:
                pre = linker.instantiate_pre(self.module)
            except wasmtime.WasmtimeError as exc:
                if "incompatible import type" in str(exc):
                    raise AbiError(f"WASI import with the wrong type: {exc}") from None
                raise
            found = self._pre[seeded_random] = (linker, pre)
        return found[1]


# The lowering of a parameter for the core (python/basic.rs): its wasm
# number type, or "s" for a text/blob buffer.
_LOWER = {
    SqlType.BIGINT: "q",
    SqlType.INTEGER: "i",
    SqlType.BOOLEAN: "i",
    SqlType.DOUBLE: "d",
    SqlType.REAL: "f",
}


def batch_buffers(sig: Signature, columns: Sequence[Sequence[Any]]) -> tuple[bytes, str, int]:
    """A batch's argument columns laid out as docs/abi.md §9 says, the
    result's array code and the result buffer's size."""
    data = b"".join(
        array.array(_BATCH_CODE[c.type], col).tobytes()
        for c, col in zip(sig.params, columns, strict=True)
    )
    assert sig.returns is not None
    code = _BATCH_CODE[sig.returns]
    return data, code, len(columns[0]) * array.array(code).itemsize


def host_status(exc: BaseException) -> int | None:
    """The status code a host function's error gives the guest, or None
    when it ends the call: an ABI error, a limit of this call or a busy
    file (hostapi.is_fatal), or anything that is not an engine error."""
    if isinstance(exc, AbiError) or not isinstance(exc, ProcedureError) or is_fatal(exc):
        return None
    return _STATUS.get(exc.code, _STATUS["sql-error"])


def _guest_fault(exc: Exception, limits: Limits) -> ProcedureError:
    """The typed error of a ``_core.GuestFault``."""
    code, message, limit, frames = exc.args
    return core_error(code, message, limit, frames, limits)


def raised_error(code: str, message: str) -> ProcedureError:
    """The error a guest raised with heliosdb_error. WIT error case names
    are reserved codes (docs/abi.md §4): they pass a host error on unchanged
    instead of wrapping it in a user error."""
    if code in _STATUS and code != "user-error":
        return from_wit_case(code, message)
    return UserError(code, message)


def returned_value(
    sig: Signature, result: Any, returned: bool, value: Any
) -> Any:
    """The procedure's result: what it gave heliosdb_return (``returned``,
    ``value`` decoded), else the export's own number."""
    if returned:
        pass
    elif sig.returns is None and not sig.is_table:
        return None
    elif sig.returns is not None and sig.returns in _RESULT_WASM:
        value = bool(result) if sig.returns is SqlType.BOOLEAN else result
    else:
        raise AbiError(
            f"procedure returned without calling heliosdb_return "
            f"(it must return {sig.render().split(' RETURNS ')[1]})"
        )
    return v.convert_result(sig, value)


def decode_returned(tag: int, payload: bytes) -> Any:
    """A heliosdb_return payload as a Python value (rows or a scalar)."""
    if tag == v.TAG_ROWS:
        return v.decode_rows(payload)
    return v.decode_scalar(tag, payload)


class CoreInstance:
    """One instance of a module that imports no WASI, run by the Rust core
    (engine/core/src/basic.rs): the guest call, guest memory, the buffers it
    is given and the host functions' ABI all happen there; the call's
    ``CallContext`` does what they ask of the database."""

    def __init__(self, module: BasicModule, limits: Limits) -> None:
        self.module = module
        self.limits = limits
        self.poisoned = False
        self._lowerings: dict[str, bytes] = {}
        try:
            self.core = module.core_pool(limits).instance()
        except _core.GuestFault as exc:
            raise _guest_fault(exc, limits) from None

    def abi_version(self) -> int:
        try:
            result, _, _ = self.core.call(None, "heliosdb_abi_version", b"", [])
        except _core.GuestFault as exc:
            self.poisoned = True
            raise _guest_fault(exc, self.limits) from None
        return int(result)

    def call(self, ctx: CallContext, export: str, sig: Signature, args: Sequence[SqlValue]) -> Any:
        lowering = self._lowerings.get(export)
        if lowering is None:
            lowering = "".join(_LOWER.get(c.type, "s") for c in sig.params).encode()
            self._lowerings[export] = lowering
        result, returned, raised = self._guarded(
            ctx, lambda: self.core.call(ctx, export, lowering, args)
        )
        if raised is not None:
            raise raised_error(*raised)
        try:
            if returned is None:
                return returned_value(sig, result, False, None)
            return returned_value(sig, result, True, decode_returned(*returned))
        except ProcedureError:
            self.poisoned = True
            raise

    def _guarded(self, ctx: CallContext, run: Callable[[], T]) -> T:
        """``run`` (a call into the core), its failure typed and its
        measurements (time in wasm and in host functions, fuel, memory)
        on the call context either way."""
        try:
            return run()
        except Exception as exc:  # noqa: BLE001 - every failure is typed here
            raise self._failure(ctx, exc) from None
        finally:
            ctx.wasm_seconds, ctx.host_seconds, ctx.fuel_used, ctx.memory_bytes = self.core.stats

    def _failure(self, ctx: CallContext, exc: Exception) -> ProcedureError:
        """The typed error of a failed call; the instance is not used again."""
        self.poisoned = True
        if isinstance(exc, _core.GuestFault):
            error = _guest_fault(exc, self.limits)
        elif isinstance(exc, ProcedureError):
            return exc  # the context's own error, which ends the call
        else:
            error = translate_trap(exc, self.limits, None)  # a host function's bug
        if isinstance(error, ProcedureTrap):
            if ctx.out_of_memory:  # the guest said so just before trapping
                return limit_error("memory", error.message, self.limits)
            raised = self.core.raised
            if raised is not None:
                # Recording an error and then trapping is how a language
                # without exceptions (AssemblyScript) throws.
                return raised_error(*raised)
        return error

    def batch_export(self, export: str) -> str | None:
        """The batch entry point of ``export`` (docs/abi.md §9), if it has one."""
        return self.module.batch_entry(export)

    def call_batch(
        self, ctx: CallContext, export: str, sig: Signature, columns: Sequence[Sequence[Any]]
    ) -> list[Any]:
        """Rows ``columns`` through ``<export>__batch``: one guest call for all
        of them, the columns laid out in guest memory (docs/abi.md §9)."""
        name = export + BATCH_SUFFIX
        count = len(columns[0])
        data, code, out_size = batch_buffers(sig, columns)
        out, raised = self._guarded(
            ctx, lambda: self.core.call_batch(ctx, name, count, data, out_size)
        )
        if raised is not None:  # a row failed with heliosdb_error
            self.poisoned = True
            raise raised_error(*raised)
        results = array.array(code)
        results.frombytes(out)
        values = results.tolist()
        return [bool(x) for x in values] if sig.returns is SqlType.BOOLEAN else values

    def memory_size(self) -> int | None:
        return self.core.stats[3]

    def release(self) -> None:
        self.core.release()


class BasicInstance:
    """One instance of a BasicModule, with its own store and host imports."""

    def __init__(self, module: BasicModule, limits: Limits, caps: Capabilities) -> None:
        self.module = module
        self.limits = limits
        self.caps = caps
        self.store = module.runtime.store(limits)
        self.ctx: CallContext | None = None
        self.poisoned = False
        self.output: GuestOutput | None = None
        self.rng = random.Random(SEEDED_RANDOM)
        self._raw: dict[str, FastCall] = {}
        self._callers: dict[str, FastCall] = {}
        self._alloc_call: FastCall | None = None
        self._ctx_ptr = self.store._context()
        self._host_impls: dict[str, Callable[..., Any]] = {}
        self._span_cache: tuple[int, int] | None = None
        try:
            self.instance = self._instantiate()
            self.exports = self.instance.exports(self.store)
            # A WASI reactor (Go's c-shared build, wit-bindgen's older
            # output) must run its initializer once before any export.
            initialize = self.exports.get("_initialize")
            if isinstance(initialize, wasmtime.Func):
                initialize(self.store)
        except ProcedureError:
            raise
        except Exception as exc:  # noqa: BLE001 - start function traps, limits
            raise translate_trap(exc, limits, None) from None
        memory = self.exports.get("memory")
        self.memory = memory if isinstance(memory, wasmtime.Memory) else None
        alloc = self.exports.get("heliosdb_alloc")
        self.alloc = alloc if isinstance(alloc, wasmtime.Func) else None

    def _instantiate(self) -> wasmtime.Instance:
        module = self.module
        if module.uses_wasi:
            self.output = guest_output(self.caps)
            self.store.set_wasi(wasi_config(self.output, self.caps))
            track(self)
        address = ctypes.cast(self._ctx_ptr, ctypes.c_void_p).value or 0
        _INSTANCES[address] = weakref.ref(self, lambda _ref: _forget(address, _ref))
        # Without `random` the guest's entropy is a fixed stream: its runtime
        # still starts (hash seeds), and its results repeat.
        pre = module.prelinked(module.uses_wasi and not self.caps.allows("random"))
        return pre.instantiate(self.store)

    def host_impl(self, name: str) -> Callable[..., Any]:
        """The host function ``name`` for this instance (timed, see hostapi)."""
        self._span_cache = None  # the guest ran since the last host call
        impl = self._host_impls.get(name)
        if impl is None:
            impl = self._host_impls[name] = timed_host_function(
                getattr(self, "_" + name), lambda: self.ctx
            )
        return impl

    def batch_export(self, export: str) -> str | None:
        """The batch entry point of ``export`` (docs/abi.md §9), if it has one."""
        return self.module.batch_entry(export)

    def call_batch(
        self, ctx: CallContext, export: str, sig: Signature, columns: Sequence[Sequence[Any]]
    ) -> list[Any]:
        """Rows ``columns`` through ``<export>__batch``: one guest call for all
        of them, the columns laid out in guest memory (docs/abi.md §9)."""
        name = export + BATCH_SUFFIX
        func = self.exports[name]
        assert isinstance(func, wasmtime.Func)
        count = len(columns[0])
        data, code, out_size = batch_buffers(sig, columns)
        self.ctx = ctx
        if self.output is not None:
            self.output.begin(ctx)
        arm(self.store, self.limits)
        try:
            args_ptr = self._alloc(len(data)) if data else 0
            out_ptr = self._alloc(out_size)
            if (data and not args_ptr) or not out_ptr:
                raise ResourceLimitExceeded(
                    f"heliosdb_alloc could not allocate a batch of {count} rows", limit="memory"
                )
            self._write(args_ptr, data, f"{name} arguments")
            done = self._call_export(name, func, [count, args_ptr, out_ptr])
            if ctx.raised is not None:  # a row failed with heliosdb_error
                raise ctx.raised
            if done != count:
                raise AbiError(f"{name} reported {done} of {count} rows done")
            results = array.array(code)
            results.frombytes(self._read(out_ptr, out_size, f"{name} results"))
        except ProcedureError:
            self.poisoned = True
            raise
        except Exception as exc:  # noqa: BLE001 - traps become typed errors
            raise self._failure(ctx, exc) from None  # a row threw, or a trap
        finally:
            if self.output is not None:
                self.output.end()
            self.ctx = None
        self._check_output()
        # The batch buffers go back to the guest's allocator (the one case
        # where the host frees: it allocated them for itself).
        free = self.exports.get("heliosdb_free")
        if isinstance(free, wasmtime.Func):
            for ptr, size in ((args_ptr, len(data)), (out_ptr, out_size)):
                if ptr:
                    free(self.store, ptr, size, 1)
        values = results.tolist()
        return [bool(x) for x in values] if sig.returns is SqlType.BOOLEAN else values

    def _call_export(self, export: str, func: wasmtime.Func, args: list[Any]) -> Any:
        """Call an export with its wasm-level arguments through the fast
        caller (fastcall.py): the export's type is resolved once, not on
        every call as ``Func.__call__`` does."""
        caller = self._callers.get(export)
        if caller is None:
            ty = func.type(self.store)
            kinds = [*_types(ty.params), *_types(ty.results)]
            if len(ty.results) > 1 or any(k not in _WASM_AS_SQL for k in kinds):
                self._span_cache = None
                return func(self.store, *args)
            caller = self._fast_caller(
                func,
                [_WASM_AS_SQL[k] for k in _types(ty.params)],
                _WASM_AS_SQL[_types(ty.results)[0]] if ty.results else None,
            )
            self._callers[export] = caller
        try:
            return caller(args)
        except (wasmtime.Trap, wasmtime.WasmtimeError):
            # A host function's own exception (a ProcedureError, say) reached
            # wasmtime-py's trampoline, which stored it and trapped; raise it.
            maybe_raise_last_exn()
            raise
        finally:
            self._span_cache = None  # the guest may have grown memory

    def _fast_caller(
        self, func: wasmtime.Func, params: list[SqlType], returns: SqlType | None
    ) -> FastCall:
        """A fast caller (fastcall.py) that arms this instance's limits."""
        return make_call(
            self.store,
            func,
            params,
            returns,
            self.limits.fuel,
            deadline_ticks(self.limits.timeout_seconds),
        )

    def memory_size(self) -> int | None:
        return self._memory_size()

    def release(self) -> None:
        """Drop the store now (see wasi.py: stores with WASI are released at exit)."""
        self.__dict__.pop("instance", None)
        self.__dict__.pop("exports", None)
        self.__dict__.pop("store", None)

    # -- calling ---------------------------------------------------------------

    def call(self, ctx: CallContext, export: str, sig: Signature, args: Sequence[SqlValue]) -> Any:
        func = self.exports[export]
        assert isinstance(func, wasmtime.Func)
        self.ctx = ctx
        if self.output is not None:
            self.output.begin(ctx)
        arm(self.store, self.limits)
        try:
            wasm_args: list[Any] = []
            for col, value in zip(sig.params, args, strict=True):
                wasm_args.extend(self._lower(col.type, value))
            started = time.perf_counter()
            try:
                result = self._call_export(export, func, wasm_args)
            finally:
                ctx.wasm_seconds = time.perf_counter() - started
                ctx.fuel_used = self.limits.fuel - self.store.get_fuel()
                ctx.memory_bytes = self._memory_size()
        except ProcedureError:
            self.poisoned = True
            raise
        except Exception as exc:  # noqa: BLE001 - traps become typed errors
            raise self._failure(ctx, exc) from None
        finally:
            if self.output is not None:
                self.output.end()
            self.ctx = None
        self._check_output()
        if ctx.raised is not None:
            raise ctx.raised
        return self._lift(ctx, sig, result)

    def _check_output(self) -> None:
        """Raise the failure of the call's stdout/stderr (max_log_bytes), so
        it fails this call and is not left for the next one."""
        if self.output is not None and (failure := self.output.take_error()) is not None:
            self.poisoned = True
            raise failure

    def _failure(self, ctx: CallContext, exc: Exception) -> ProcedureError:
        """The typed error for a call that failed in the guest; the instance
        is not used again."""
        self.poisoned = True
        if self.output is not None:
            self.output.end()  # flush: the runtime's last words tell an OOM
        oom = ctx.out_of_memory or (self.output is not None and self.output.out_of_memory)
        error = translate_trap(exc, self.limits, self._memory_size(), oom)
        # Recording an error and then trapping is how a language without
        # exceptions (AssemblyScript) throws: the error is the outcome.
        # An exhausted limit still wins: it is not the guest's choice.
        if ctx.raised is not None and isinstance(error, ProcedureTrap):
            return ctx.raised
        return error

    def _memory_size(self) -> int | None:
        return self.memory.data_len(self.store) if self.memory else None

    def _lower(self, ty: SqlType, value: SqlValue) -> tuple[Any, ...]:
        if ty.is_numeric:
            if value is None:  # CALLED ON NULL INPUT: see heliosdb_get_param
                return (0.0,) if ty in (SqlType.DOUBLE, SqlType.REAL) else (0,)
            if ty is SqlType.BOOLEAN:
                return (1 if value else 0,)
            return (value,)
        if value is None:
            return (0, 0)
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)  # type: ignore[arg-type]
        return self._give(data)

    def _lift(self, ctx: CallContext, sig: Signature, result: Any) -> Any:
        return returned_value(sig, result, ctx.returned, ctx.return_value)

    # -- guest memory ----------------------------------------------------------

    def _mem(self) -> wasmtime.Memory:
        if self.memory is None:
            raise AbiError("the module exports no memory, but a host call needs it")
        return self.memory

    def _span(self) -> tuple[int, int]:
        """Linear memory's current address and size. Kept only while the guest
        cannot run: every entry into a host function and every guest call
        from one (heliosdb_alloc, which may grow and move memory) forgets it."""
        span = self._span_cache
        if span is None:
            mem = self._mem()
            ref = ctypes.byref(mem._memory)
            ctx = self._ctx_ptr
            address = ctypes.cast(_memory_data(ctx, ref), ctypes.c_void_p).value or 0
            span = self._span_cache = (address, int(_memory_size(ctx, ref)))
        return span

    def _read(self, ptr: int, length: int, what: str) -> bytes:
        ptr &= 0xFFFFFFFF
        length &= 0xFFFFFFFF
        if length == 0:
            return b""
        address, size = self._span()
        if ptr + length > size:
            raise AbiError(
                f"{what}: buffer at {ptr:#x} of {length} bytes is outside "
                f"linear memory ({size} bytes)"
            )
        return ctypes.string_at(address + ptr, length)

    def _text(self, ptr: int, length: int, what: str) -> str:
        try:
            return self._read(ptr, length, what).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AbiError(f"{what}: invalid UTF-8 ({exc.reason})") from None

    def _write(self, ptr: int, data: bytes, what: str) -> None:
        ptr &= 0xFFFFFFFF
        address, size = self._span()
        if ptr + len(data) > size:
            raise AbiError(
                f"{what}: {len(data)} bytes at {ptr:#x} are outside linear memory ({size} bytes)"
            )
        ctypes.memmove(address + ptr, data, len(data))

    def _alloc(self, size: int) -> Any:
        """heliosdb_alloc(size, 1), called from inside a host function.

        The fast caller re-arms fuel and the deadline for a whole call; this
        is a call within the guest's call, so the guest's remaining fuel and
        deadline are put back, minus what the allocator used.
        """
        assert self.alloc is not None
        if self._alloc_call is None:
            self._alloc_call = self._fast_caller(
                self.alloc, [SqlType.INTEGER, SqlType.INTEGER], SqlType.INTEGER
            )
        left = self.store.get_fuel()
        self._span_cache = None  # the allocator may grow memory
        try:
            return self._alloc_call([size, 1])
        except (wasmtime.Trap, wasmtime.WasmtimeError):
            maybe_raise_last_exn()
            raise
        finally:
            used = self.limits.fuel - self.store.get_fuel()
            self.store.set_fuel(max(0, left - used))
            ctx = self.ctx
            remaining = (ctx.deadline - time.monotonic()) if ctx is not None else 0.0
            self.store.set_epoch_deadline(deadline_ticks(remaining))

    def _give(self, data: bytes) -> tuple[int, int]:
        """Copy ``data`` into a guest-owned buffer from heliosdb_alloc."""
        if not data:
            return (0, 0)
        if self.alloc is None:
            raise AbiError("the module must export heliosdb_alloc for this call")
        ptr = self._alloc(len(data))
        if not isinstance(ptr, int) or ptr == 0:
            raise ResourceLimitExceeded(
                f"heliosdb_alloc could not allocate {len(data)} bytes", limit="memory"
            )
        self._write(ptr, data, "heliosdb_alloc result")
        return (ptr & 0xFFFFFFFF, len(data))

    # -- host imports ----------------------------------------------------------

    def _context(self) -> CallContext:
        if self.ctx is None:
            # Only reachable from a start function: there is no call yet.
            raise AbiError("host functions cannot be called while instantiating")
        return self.ctx

    def _status(self, op: Callable[[], None]) -> int:
        """Run a fallible host operation; report failure as a status code."""
        ctx = self._context()
        try:
            op()
        except ProcedureError as exc:
            status = host_status(exc)  # the core's host functions decide the same way
            if status is None:
                raise
            ctx.last_error = exc
            return status
        return 0

    def _heliosdb_query(self, sql_ptr: int, sql_len: int, p_ptr: int, p_len: int, out: int) -> int:
        ctx = self._context()
        sql = self._text(sql_ptr, sql_len, "query SQL")
        # Decoded, run and encoded in the core (a malformed list is an
        # AbiError, which ends the call as before).
        params = self._read(p_ptr, p_len, "query parameters") if p_len else b""

        def op() -> None:
            ptr, length = self._give(ctx.query_encoded(sql, params))
            self._write(out, _OUT.pack(ptr, length), "query out area")

        return self._status(op)

    def _heliosdb_execute(
        self, sql_ptr: int, sql_len: int, p_ptr: int, p_len: int, out: int
    ) -> int:
        ctx = self._context()
        sql = self._text(sql_ptr, sql_len, "execute SQL")
        params = self._read(p_ptr, p_len, "execute parameters") if p_len else b""

        def op() -> None:
            changed = ctx.execute_encoded(sql, params)
            self._write(out, _I64_BYTES.pack(changed), "execute out area")

        return self._status(op)

    def _heliosdb_http_fetch(self, req_ptr: int, req_len: int, out: int) -> int:
        ctx = self._context()
        request = self._read(req_ptr, req_len, "request")

        def op() -> None:
            encoded = ctx.http_fetch_encoded(request)
            self._write(out, _OUT.pack(*self._give(encoded)), "http_fetch out area")

        return self._status(op)

    def _heliosdb_digest(self, a_ptr: int, a_len: int, d_ptr: int, d_len: int, out: int) -> int:
        ctx = self._context()
        algorithm = self._text(a_ptr, a_len, "digest algorithm")
        data = self._read(d_ptr, d_len, "digest data")

        def op() -> None:
            digest = ctx.digest(algorithm, data)
            self._write(out, _OUT.pack(*self._give(digest)), "digest out area")

        return self._status(op)

    def _heliosdb_hmac(
        self, a_ptr: int, a_len: int, k_ptr: int, k_len: int, d_ptr: int, d_len: int, out: int
    ) -> int:
        ctx = self._context()
        algorithm = self._text(a_ptr, a_len, "hmac algorithm")
        key = self._read(k_ptr, k_len, "hmac key")
        data = self._read(d_ptr, d_len, "hmac data")

        def op() -> None:
            mac = ctx.hmac(algorithm, key, data)
            self._write(out, _OUT.pack(*self._give(mac)), "hmac out area")

        return self._status(op)

    def _heliosdb_get_param(self, index: int, out: int) -> int:
        args = self._context().args
        if not 0 <= index < len(args):
            raise AbiError(f"heliosdb_get_param: no argument {index} (the call has {len(args)})")
        value = args[index]
        if value is None:
            return v.TAG_NULL
        if isinstance(value, bool):
            self._write(out, _I64_BYTES.pack(int(value)), "get_param out area")
            return v.TAG_BOOLEAN
        if isinstance(value, int):
            self._write(out, _I64_BYTES.pack(value), "get_param out area")
            return v.TAG_INTEGER
        if isinstance(value, float):
            self._write(out, _F64_BYTES.pack(value), "get_param out area")
            return v.TAG_REAL
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        ptr, length = self._give(data)
        self._write(out, _OUT.pack(ptr, length), "get_param out area")
        return v.TAG_TEXT if isinstance(value, str) else v.TAG_BLOB

    def _heliosdb_return(self, tag: int, ptr: int, length: int) -> None:
        ctx = self._context()
        payload = self._read(ptr, length, "heliosdb_return") if tag != v.TAG_NULL else b""
        ctx.return_value = decode_returned(tag, payload)
        ctx.returned = True

    def _heliosdb_log(self, level: int, ptr: int, length: int) -> None:
        ctx = self._context()
        name = LOG_LEVELS[level] if 0 <= level < len(LOG_LEVELS) else None
        if name is None:
            raise AbiError(f"heliosdb_log: unknown level {level} (0..4)")
        ctx.log(name, self._text(ptr, length, "log message"))

    def _heliosdb_begin_tx(self) -> int:
        return self._status(self._context().begin_tx)

    def _heliosdb_commit_tx(self) -> int:
        return self._status(self._context().commit_tx)

    def _heliosdb_rollback_tx(self) -> int:
        return self._status(self._context().rollback_tx)

    def _heliosdb_now(self) -> int:
        return CallContext.now()

    def _count_in_window(self, ptr: int, length: int, window_ms: int) -> int:
        # Infallible in the WIT: a bad window, or a call from a procedure,
        # ends the call with its typed error.
        ctx = self._context()
        return ctx.count_in_window(self._text(ptr, length, "counter key"), window_ms)

    def _heliosdb_error(self, c_ptr: int, c_len: int, m_ptr: int, m_len: int) -> None:
        ctx = self._context()
        code = self._text(c_ptr, c_len, "error code")
        message = self._text(m_ptr, m_len, "error message")
        ctx.raised = raised_error(code, message)

    def _heliosdb_last_error(self, out: int) -> int:
        err = self._context().last_error
        if err is None:
            return 0
        ptr, length = self._give(err.message.encode("utf-8"))
        self._write(out, _OUT.pack(ptr, length), "last_error out area")
        return _STATUS.get(err.code, _STATUS["sql-error"])


def _forget(address: int, ref: weakref.ReferenceType[BasicInstance]) -> None:
    if _INSTANCES.get(address) is ref:
        del _INSTANCES[address]


_VALTYPE = {_I32: wasmtime.ValType.i32, _I64: wasmtime.ValType.i64}
