"""The Canonical ABI: components targeting world heliosdb:procedures/procedure.

Signatures come from the component's own export types (docs/abi.md section 8),
and the host interface is linked from closures over the CallContext of the
call in progress, exactly as for core modules.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import wasmtime.component as wc

from . import component_values as cv
from .errors import (
    AbiError,
    ProcedureError,
    UserError,
    from_wit_case,
    wit_case,
)
from .hostapi import LOG_LEVELS, CallContext, is_fatal, timed_host_function
from .policy import Capabilities, Limits
from .runtime import Runtime, Source, arm, translate_trap
from .values import Column, Signature, SqlType, SqlValue, convert_result, fits
from .wasi import (
    SEEDED_RANDOM,
    GuestOutput,
    guest_output,
    is_wasip2_interface,
    track,
    wasi_config,
)

WIT_PACKAGE = "heliosdb:procedures"
WIT_VERSION = "0.1.0"
HOST_INTERFACE = f"{WIT_PACKAGE}/host@{WIT_VERSION}"
TYPES_INTERFACE = f"{WIT_PACKAGE}/types@{WIT_VERSION}"
PLUGIN_TYPES_INTERFACE = f"{WIT_PACKAGE}/plugin-types@{WIT_VERSION}"
PLUGIN_HOST_INTERFACE = f"{WIT_PACKAGE}/plugin-host@{WIT_VERSION}"
_ALLOWED_IMPORTS = {HOST_INTERFACE, TYPES_INTERFACE, PLUGIN_TYPES_INTERFACE, PLUGIN_HOST_INTERFACE}

_SCALARS: list[tuple[type, SqlType]] = [
    (wc.S64, SqlType.BIGINT),
    (wc.U32, SqlType.BIGINT),
    (wc.U64, SqlType.BIGINT),
    (wc.S32, SqlType.INTEGER),
    (wc.S16, SqlType.INTEGER),
    (wc.S8, SqlType.INTEGER),
    (wc.U16, SqlType.INTEGER),
    (wc.U8, SqlType.INTEGER),
    (wc.F64, SqlType.DOUBLE),
    (wc.F32, SqlType.REAL),
    (wc.Bool, SqlType.BOOLEAN),
    (wc.String, SqlType.TEXT),
]


def sql_name(wit_name: str) -> str:
    return wit_name.replace("-", "_")


def _classes(ty: wc.ValType | None) -> set[type]:
    found: set[type] = set()
    if ty is None:
        found.add(object)
    else:
        ty.add_classes(found)
    return found


def _result_is_tagged(ty: wc.ResultType) -> bool:
    # wasmtime-py represents result<T, E> as a bare T or E when their Python
    # classes cannot be confused, and as Variant('ok'|'err', ...) otherwise.
    return bool(_classes(ty.ok) & _classes(ty.err))


def _scalar(ty: wc.ValType, where: str) -> SqlType:
    for cls, sql in _SCALARS:
        if isinstance(ty, cls):
            return sql
    if isinstance(ty, wc.ListType) and isinstance(ty.element, wc.U8):
        return SqlType.BLOB
    raise AbiError(f"{where}: WIT type {type(ty).__name__} has no SQL equivalent")


class _Shape:
    """How one export's values cross: the derived signature plus the WIT types."""

    def __init__(self, name: str, fty: wc.FuncType) -> None:
        self.name = name
        params: list[Column] = []
        nullable: set[int] = set()
        # Each SQL argument's conversion to wasmtime-py's form, chosen once.
        self.param_converters: list[Callable[[SqlValue], Any]] = []
        for i, (pname, pty) in enumerate(fty.params):
            self.param_converters.append(_param_converter(pty))
            inner = pty
            if isinstance(pty, wc.OptionType):
                nullable.add(i)
                inner = pty.payload
            params.append(Column(sql_name(pname), _scalar(inner, f"{name}({pname})")))
        result = fty.result
        self.split = result_splitter(result) if isinstance(result, wc.ResultType) else None
        self.fallible = isinstance(result, wc.ResultType)
        inner_result = result.ok if isinstance(result, wc.ResultType) else result
        returns: SqlType | None = None
        table: tuple[Column, ...] | None = None
        self.record_fields: list[str] | None = None
        if isinstance(inner_result, wc.OptionType):
            inner_result = inner_result.payload
        if isinstance(inner_result, wc.ListType) and isinstance(
            inner_result.element, wc.RecordType
        ):
            fields = inner_result.element.fields
            self.record_fields = [f for f, _ in fields]
            table = tuple(
                Column(sql_name(f), _scalar(_unwrap_option(t), f"{name} column {f}"))
                for f, t in fields
            )
        elif inner_result is not None:
            returns = _scalar(inner_result, f"{name} result")
        self.signature = Signature(
            params=tuple(params),
            returns=returns,
            table=table,
            called_on_null_input=bool(nullable),
            nullable_params=frozenset(nullable),
        )


def _unwrap_option(ty: wc.ValType) -> wc.ValType:
    return ty.payload if isinstance(ty, wc.OptionType) else ty


def _compatible(declared: SqlType, derived: SqlType) -> bool:
    return declared == derived or (declared is SqlType.JSON and derived is SqlType.TEXT)


class ComponentModule:
    """A validated component and the shapes of its exported functions."""

    abi = "component"

    def __init__(self, runtime: Runtime, sha256: str, wasm: Source) -> None:
        self.runtime = runtime
        self.component = runtime.component(sha256, wasm)
        engine = runtime.engine
        ctype = self.component.type
        self.uses_wasi = False
        self.wasi_imports: list[str] = []
        # (interface, function) -> codecs of the host functions it imports,
        # planned once for every instance's linker.
        self.host_codecs: dict[tuple[str, str], cv.Signature] = {}
        for name, imported in ctype.imports(engine).items():
            if name in (HOST_INTERFACE, PLUGIN_HOST_INTERFACE):
                iface = imported.ty
                assert isinstance(iface, wc.ComponentInstanceType)
                for fname, fextern in iface.exports(engine).items():
                    fty = fextern.ty
                    if isinstance(fty, wc.FuncType) and (sig := cv.signature(fty)) is not None:
                        self.host_codecs[(name, fname)] = sig
            if is_wasip2_interface(name):
                # Deny-by-default WASI (see wasi.py), for language runtimes.
                self.uses_wasi = True
                self.wasi_imports.append(name)
            elif name not in _ALLOWED_IMPORTS:
                raise AbiError(
                    f"the component imports {name!r}; procedures may only import "
                    f"{HOST_INTERFACE} and the WASI 0.2 cli, clocks, io, random, "
                    "filesystem and sockets interfaces"
                )
        # export name (as SQL calls it) -> (interface or None, WIT name, type)
        self.functions: dict[str, tuple[str | None, str, wc.FuncType]] = {}
        for name, extern in ctype.exports(engine).items():
            item = extern.ty
            if isinstance(item, wc.FuncType):
                self.functions[sql_name(name)] = (None, name, item)
            elif isinstance(item, wc.ComponentInstanceType):
                for fname, fextern in item.exports(engine).items():
                    fitem = fextern.ty
                    if isinstance(fitem, wc.FuncType):
                        self.functions.setdefault(sql_name(fname), (name, fname, fitem))
        if not self.functions:
            raise AbiError("the component exports no functions")
        self._shapes: dict[str, _Shape] = {}
        self._codecs: dict[str, cv.Signature | None] = {}
        self._splitters: dict[str, Callable[[Any], tuple[bool, Any]] | None] = {}

    def shape(self, export: str) -> _Shape:
        key = sql_name(export)
        if key not in self._shapes:
            found = self.functions.get(key)
            if found is None:
                have = ", ".join(sorted(self.functions))
                raise AbiError(f"the component exports no function {export!r} (it has: {have})")
            self._shapes[key] = _Shape(found[1], found[2])
        return self._shapes[key]

    def codecs(self, export: str) -> cv.Signature | None:
        """The planned codecs of an export (any export, not only SQL-shaped ones)."""
        key = sql_name(export)
        if key not in self._codecs:
            self._codecs[key] = cv.signature(self.functions[key][2])
        return self._codecs[key]

    def splitter(self, export: str) -> Callable[[Any], tuple[bool, Any]] | None:
        """result_splitter of an export's result, if it is a result<T, E>."""
        key = sql_name(export)
        if key not in self._splitters:
            result = self.functions[key][2].result
            split = result_splitter(result) if isinstance(result, wc.ResultType) else None
            self._splitters[key] = split
        return self._splitters[key]

    def verify(self, limits: Limits, caps: Capabilities) -> None:
        """Components declare their ABI through their types; nothing to run."""

    def check(self, export: str, signature: Signature | None) -> Signature:
        derived = self.shape(export).signature
        if signature is None:
            return derived
        mismatch = not fits(signature, derived, _compatible)
        if mismatch:
            raise AbiError(
                f"export {export} has the WIT signature {derived.render()}, which "
                f"does not match the declared {signature.render()}"
            )
        return Signature(
            params=signature.params,
            returns=signature.returns,
            table=signature.table,
            called_on_null_input=signature.called_on_null_input or derived.called_on_null_input,
            nullable_params=derived.nullable_params,
        )

    def instantiate(self, limits: Limits, caps: Capabilities) -> ComponentInstance:
        return ComponentInstance(self, limits, caps)


class _Current:
    """The CallContext of the call in progress, for the host functions.

    Host functions hold this, never the instance: the instance's store holds
    its host functions, and a host function holding the instance would be a
    cycle through wasmtime that Python cannot see, so no discarded instance
    (and none of its memory) would ever be freed.
    """

    __slots__ = ("ctx",)

    def __init__(self) -> None:
        self.ctx: CallContext | None = None

    def get(self) -> CallContext:
        if self.ctx is None:
            raise AbiError("host functions cannot be called while instantiating")
        return self.ctx


class ComponentInstance:
    """One instance of a component with its own store and linker."""

    def __init__(self, module: ComponentModule, limits: Limits, caps: Capabilities) -> None:
        self.module = module
        self.limits = limits
        self.caps = caps
        self.store = module.runtime.store(limits)
        self.current = _Current()
        self.poisoned = False
        self.output: GuestOutput | None = None
        linker = wc.Linker(module.runtime.engine)
        if module.uses_wasi:
            self.output = guest_output(caps)
            self.store.set_wasi(wasi_config(self.output, caps))
            track(self)
            linker.add_wasip2()
            if not caps.allows("random"):
                self._seed_randomness(linker)
        with linker.root() as root:
            with root.add_instance(TYPES_INTERFACE):
                pass
            with root.add_instance(HOST_INTERFACE) as host:
                for name, impl in _host_functions(self.current).items():
                    self._define(host, HOST_INTERFACE, name, impl)
            # The query-hook plugin world's imports (wit/plugin.wit); a
            # procedure that imports them gets an access-denied error from
            # count-in-window, as it runs outside the pipeline.
            with root.add_instance(PLUGIN_TYPES_INTERFACE):
                pass
            with root.add_instance(PLUGIN_HOST_INTERFACE) as plugin_host:
                current = self.current

                def count_in_window(store: Any, key: str, window_ms: int) -> int:
                    # A failure here cannot be returned (the WIT function is
                    # infallible), so it ends the call with its typed error.
                    return current.get().count_in_window(key, window_ms)

                self._define(plugin_host, PLUGIN_HOST_INTERFACE, "count-in-window", count_in_window)
        try:
            self.instance = linker.instantiate(self.store, module.component)
        except Exception as exc:  # noqa: BLE001 - start traps, limits
            raise translate_trap(exc, limits, None) from None
        self._funcs: dict[str, wc.Func | cv.GuestFunc] = {}

    def _define(
        self, instance: wc.LinkerInstance, iface: str, name: str, impl: Callable[..., Any]
    ) -> None:
        current = self.current
        timed = timed_host_function(impl, lambda: current.ctx)
        sig = self.module.host_codecs.get((iface, name))
        if sig is None:  # not imported (or a type left to wasmtime-py)
            instance.add_func(name, timed)
        else:
            cv.add_host_func(instance, name, timed, sig)

    def release(self) -> None:
        """Drop the store now (see wasi.py: stores with WASI are released at exit)."""
        self._funcs.clear()
        self.__dict__.pop("instance", None)
        self.__dict__.pop("store", None)

    def _func(self, export: str) -> wc.Func | cv.GuestFunc:
        func = self._funcs.get(export)
        if func is None:
            iface, wit_name, _ = self.module.functions[sql_name(export)]
            parent = self.instance.get_export_index(self.store, iface) if iface else None
            index = self.instance.get_export_index(self.store, wit_name, parent)
            found = self.instance.get_func(self.store, index) if index else None
            if found is None:
                raise AbiError(f"cannot find export {wit_name}")
            codecs = self.module.codecs(export)
            func = self._funcs[export] = found if codecs is None else cv.GuestFunc(found, codecs)
        return func

    def call(self, ctx: CallContext, export: str, sig: Signature, args: Sequence[SqlValue]) -> Any:
        shape = self.module.shape(export)
        lowered = [conv(a) for conv, a in zip(shape.param_converters, args, strict=True)]
        return convert_result(sig, self._lift(shape, self.call_lowered(ctx, export, lowered)))

    def call_lowered(self, ctx: CallContext, export: str, lowered: Sequence[Any]) -> Any:
        """Calls an export with arguments already in wasmtime-py's form and
        returns its raw result: the ABI plumbing (limits, output, typed
        failures) without the SQL signature, for callers with their own
        types (the plugin pipeline)."""
        func = self._func(export)
        self.ctx = ctx
        if self.output is not None:
            self.output.begin(ctx)
        arm(self.store, self.limits)
        try:
            started = time.perf_counter()
            try:
                result = func(self.store, *lowered)
                func.post_return(self.store)
            finally:
                ctx.wasm_seconds = time.perf_counter() - started
                ctx.fuel_used = self.limits.fuel - self.store.get_fuel()
        except ProcedureError:
            self.poisoned = True
            raise
        except Exception as exc:  # noqa: BLE001 - traps become typed errors
            self.poisoned = True
            if self.output is not None:
                self.output.end()  # flush: the runtime's last words tell an OOM
            oom = ctx.out_of_memory or (self.output is not None and self.output.out_of_memory)
            raise translate_trap(exc, self.limits, None, oom) from None
        finally:
            if self.output is not None:
                self.output.end()
            self.ctx = None
        if self.output is not None and (failure := self.output.take_error()) is not None:
            self.poisoned = True  # its output broke a limit (max_log_bytes)
            raise failure
        return result

    @property
    def ctx(self) -> CallContext | None:
        return self.current.ctx

    @ctx.setter
    def ctx(self, ctx: CallContext | None) -> None:
        self.current.ctx = ctx

    def _lift(self, shape: _Shape, result: Any) -> Any:
        if shape.split is not None:
            ok, payload = shape.split(result)
            if not ok:
                raise guest_error(payload)
            result = payload
        if shape.record_fields is not None:
            rows = [tuple(getattr(rec, f) for f in shape.record_fields) for rec in (result or [])]
            columns = [sql_name(f) for f in shape.record_fields]
            return (columns, rows)
        return result

    def _seed_randomness(self, linker: wc.Linker) -> None:
        """Without `random`, wasi:random gives a fixed stream (see abi_basic)."""
        rng = random.Random(SEEDED_RANDOM)
        functions: dict[str, dict[str, Callable[..., Any]]] = {
            "wasi:random/random@": {
                "get-random-bytes": lambda store, n: rng.randbytes(min(n, 1 << 20)),
                "get-random-u64": lambda store: rng.getrandbits(64),
            },
            "wasi:random/insecure@": {
                "get-insecure-random-bytes": lambda store, n: rng.randbytes(min(n, 1 << 20)),
                "get-insecure-random-u64": lambda store: rng.getrandbits(64),
            },
            "wasi:random/insecure-seed@": {
                "insecure-seed": lambda store: (rng.getrandbits(64), rng.getrandbits(64)),
            },
        }
        linker.allow_shadowing = True
        with linker.root() as root:
            for name in self.module.wasi_imports:
                for prefix, funcs in functions.items():
                    if name.startswith(prefix):
                        with root.add_instance(name) as inst:
                            for fname, impl in funcs.items():
                                inst.add_func(fname, impl)


# -- the host interface ------------------------------------------------------


def _host_functions(current: _Current) -> dict[str, Callable[..., Any]]:
    """The host interface, for the call ``current`` holds (see _Current)."""

    def fallible(op: Callable[..., Any]) -> Callable[..., Any]:
        def run(store: Any, *args: Any) -> Any:
            ctx = current.get()
            try:
                return op(ctx, *args)
            except AbiError:
                raise
            except ProcedureError as exc:
                if is_fatal(exc):
                    raise
                return _err(exc)

        return run

    def query(ctx: CallContext, sql: str, params: list[Any]) -> Any:
        columns, rows = ctx.query(sql, [_from_value(p) for p in params])
        record = wc.Record()
        record.columns = columns
        record.values = [list(row) for row in rows]
        return record

    def execute(ctx: CallContext, sql: str, params: list[Any]) -> int:
        return ctx.execute(sql, [_from_value(p) for p in params])

    def log(store: Any, level: Any, message: str) -> None:
        name = level if isinstance(level, str) else LOG_LEVELS[2]
        current.get().log(name, message)

    def http_fetch(ctx: CallContext, request: Any) -> Any:
        response = ctx.http_fetch(
            request.method,
            request.url,
            [tuple(h) for h in request.headers],
            bytes(request.body),
        )
        record = wc.Record()
        record.status = response.status
        record.headers = [tuple(h) for h in response.headers]
        record.body = response.body
        return record

    return {
        "query": fallible(query),
        "http-fetch": fallible(http_fetch),
        "digest": fallible(lambda ctx, alg, data: ctx.digest(alg, bytes(data))),
        "hmac": fallible(lambda ctx, alg, key, data: ctx.hmac(alg, bytes(key), bytes(data))),
        "execute": fallible(execute),
        "log": log,
        "begin-tx": fallible(lambda ctx: ctx.begin_tx()),
        "commit-tx": fallible(lambda ctx: ctx.commit_tx()),
        "rollback-tx": fallible(lambda ctx: ctx.rollback_tx()),
        "now": lambda store: CallContext.now(),
    }


# The host functions return result<T, error>, whose ok and err never share a
# Python class, so wasmtime-py takes a bare T for ok and the error Variant for
# err (see _result_is_tagged).
def _err(exc: ProcedureError) -> wc.Variant:
    case = wit_case(exc)
    if case == "user-error":
        record = wc.Record()
        record.code = getattr(exc, "user_code", exc.code)
        record.message = exc.message
        return wc.Variant(case, record)
    return wc.Variant(case, exc.message)


def result_splitter(ty: wc.ResultType) -> Callable[[Any], tuple[bool, Any]]:
    """wasmtime-py's form of a result<T, E> value -> (is ok, payload); the
    type is inspected once, here, not per value."""
    if _result_is_tagged(ty):

        def tagged(value: Any) -> tuple[bool, Any]:
            assert isinstance(value, wc.Variant)
            return value.tag == "ok", value.payload

        return tagged
    err_classes = tuple(_classes(ty.err))
    no_err = ty.err is None

    def untagged(value: Any) -> tuple[bool, Any]:
        is_err = isinstance(value, err_classes) and not (no_err and value is None)
        return not is_err, value

    return untagged


def guest_error(payload: Any) -> ProcedureError:
    if isinstance(payload, wc.Variant):
        if payload.tag == "user-error":
            return UserError(
                str(getattr(payload.payload, "code", "")),
                str(getattr(payload.payload, "message", "")),
            )
        return from_wit_case(payload.tag, str(payload.payload))
    return UserError("error", str(payload))


def _param_converter(ty: wc.ValType) -> Callable[[SqlValue], Any]:
    inner = _unwrap_option(ty)
    if isinstance(inner, (wc.F32, wc.F64)):
        return lambda v: None if v is None else float(v)
    if isinstance(inner, wc.Bool):
        return lambda v: None if v is None else bool(v)
    return lambda v: v


# The WIT `value` variant: wasmtime-py lifts and lowers it untagged (its cases'
# Python classes are distinct), so a value is simply None/int/float/str/bytes/bool.
def _from_value(v: Any) -> SqlValue:
    if isinstance(v, wc.Variant):
        return v.payload  # type: ignore[no-any-return]
    return v  # type: ignore[no-any-return]
