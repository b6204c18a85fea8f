"""The Basic ABI: core wasm modules, specified in docs/abi.md sections 1-7.

A BasicModule validates a module the Rust core compiled (imports, marker,
version); ``check`` matches one export against a SQL signature; a
CoreInstance is one instance in the core, where the guest call, its host
functions and WASI run (engine/core/src/basic.rs, wasi.rs), serving what
they ask of the database from the CallContext of the call in progress.
"""

from __future__ import annotations

import array
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from . import _core
from . import values as v
from .errors import (
    WIT_ERROR_CASES,
    AbiError,
    ProcedureError,
    UserError,
    from_wit_case,
)
from .hostapi import is_fatal
from .policy import Capabilities, Limits
from .runtime import (
    Runtime,
    Source,
    core_error,
    source_bytes,
)
from .values import Signature, SqlType
from .wasi import (
    WASIP1_FUNCTIONS,
    WASIP1_MODULE,
    wasi_grants,
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


def _render(params: Sequence[str], results: Sequence[str]) -> str:
    return f"({', '.join(params)}) -> ({', '.join(results)})"


def pooled(pools: dict[str, T], limits: Limits, grants: Any, make: Callable[[], T]) -> T:
    """The core's pool for ``limits`` and WASI ``grants`` from ``pools``,
    made by ``make`` on first use (a pool links the module once)."""
    key = json.dumps([limits.to_json(), grants], sort_keys=True)
    pool = pools.get(key)
    if pool is None:
        try:
            pool = make()
        except _core.CoreError as exc:
            code, message = exc.args
            raise core_error(code, message, None, [], limits) from None
        pool = pools.setdefault(key, pool)
    return pool


def core_module(runtime: Runtime, sha256: str, wasm: Source) -> _core.Module:
    """The module compiled by the core: from its cache of compiled code
    (the bytes are read only on a miss), or now."""
    core = _core.Module.cached(runtime.core, sha256)
    if core is not None:
        return core
    try:
        # A registry blob may come as a memoryview.
        return _core.Module(runtime.core, sha256, bytes(source_bytes(wasm)))
    except _core.CoreError as exc:
        raise AbiError(f"the runtime core refused the module: {exc.args[1]}") from None


class BasicModule:
    """A validated core module."""

    abi = "basic"

    def __init__(self, runtime: Runtime, sha256: str, wasm: Source) -> None:
        self.runtime = runtime
        self.sha256 = sha256
        self.imports: list[str] = []
        self.uses_wasi = False
        # Compiled by the core, which runs it.
        core = self._core = core_module(runtime, sha256, wasm)
        imports = core.import_types
        exported = core.functions
        names = set(core.export_names)
        for module_name, name, params, results in imports:
            if module_name == WASIP1_MODULE and name in WASIP1_FUNCTIONS:
                # Linked to deny-by-default WASI (engine/core/src/wasi.rs);
                # wasmtime checks the function types when it links.
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
        # The whole call runs in the core, host functions and WASI included
        # (CoreInstance).
        self._pools: dict[str, _core.BasicPool] = {}
        if self.imports and not self.is_heliosdb:
            raise AbiError(
                "the module imports heliosdb host functions but does not export "
                "heliosdb_abi_version"
            )

    def core_export(self, export: str) -> tuple[_core.Module, str]:
        """The module compiled by the Rust core (its own compiled-code cache,
        so the registry's bytes are read only on a miss), for the numeric
        path of a ``pure`` module."""
        if not self.pure:
            raise AbiError("a module that imports host functions has no numeric path")
        return self._core, export

    def verify(self, limits: Limits, caps: Capabilities) -> CoreInstance:
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
        version = instance.abi_version()
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

    def instantiate(self, limits: Limits, caps: Capabilities) -> CoreInstance:
        """A new instance, in the core."""
        return CoreInstance(self, limits, caps)

    def core_pool(self, limits: Limits, caps: Capabilities) -> _core.BasicPool:
        """The core's pool of this module under ``limits`` (host functions
        linked once) and, for a WASI guest, what ``caps`` grant of WASI;
        made on first use."""
        grants = wasi_grants(caps, limits) if self.uses_wasi else None
        return pooled(
            self._pools,
            limits,
            grants,
            lambda: _core.BasicPool(self._core, limits.to_json(), host_status, grants),
        )


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


def returned_value(sig: Signature, result: Any, returned: bool, value: Any) -> Any:
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
    """One instance of a core module, run by the Rust core
    (engine/core/src/basic.rs): the guest call, guest memory, the buffers it
    is given and the host functions' ABI all happen there; the call's
    ``CallContext`` does what they ask of the database."""

    def __init__(self, module: BasicModule, limits: Limits, caps: Capabilities) -> None:
        self.module = module
        self.limits = limits
        self.poisoned = False
        try:
            self.core = module.core_pool(limits, caps).instance()
        except _core.GuestFault as exc:
            raise _guest_fault(exc, limits) from None

    def abi_version(self) -> int:
        try:
            result, _, _ = self.core.call(None, "heliosdb_abi_version", b"", [])
        except _core.GuestFault as exc:
            self.poisoned = True
            raise _guest_fault(exc, self.limits) from None
        return int(result)

    def release(self) -> None:
        self.core.release()

    def recycle(self) -> None:
        """Back to the core's pool, for the calls it runs whole."""
        self.core.recycle()
