"""Calling a wit-bindgen 0.2 core module as its host bindings did:
flattening, the return area, canonical_abi_realloc/free, strict lifting."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .. import _core
from ..abi_basic import BasicModule, CoreInstance, core_module
from ..errors import (
    AbiError,
    InvalidArgument,
    ProcedureError,
    ResourceLimitExceeded,
)
from ..hostapi import CallContext
from ..policy import Capabilities, Limits
from ..runtime import Runtime, Source
from ..values import Column, Signature, SqlType, SqlValue, convert_result, fits
from ..wasi import WASIP1_FUNCTIONS, WASIP1_MODULE
from .values import (
    _ambiguous_option,
    _compatible,
    _from_sql,
    _guest_error,
    _has_buffers,
    _is_bytes,
    _plain,
    _same_types,
    _table_record,
    _to_sql,
    _unwrap_result,
    sql_type,
)
from .wit import (
    _INT_RANGES,
    _TAG_CODE,
    ABI,
    FREE,
    REALLOC,
    UNIT,
    Case,
    EnumType,
    ExpectedType,
    FlagsType,
    ListType,
    OptionType,
    Prim,
    RecordType,
    TupleType,
    WitFunction,
    WitType,
    _Cases,
    parse_wit,
    sql_name,
)

# Types the Basic ABI's numeric path (native.py) passes exactly as this ABI
# does: same core type, same range checks, no conversion.
_FAST_PARAMS = frozenset({"s32", "s64", "float32", "float64", "bool"})
_FAST_RESULTS = frozenset({"s32", "s64", "float32", "float64", "unit"})


def _fast_safe(fn: WitFunction) -> bool:
    return (
        _numbers([t for _, t in fn.params])
        and isinstance(fn.result, Prim)
        and fn.result.kind in _FAST_RESULTS
    )


def _numbers(types: Sequence[WitType]) -> bool:
    """Whether every type is a number the Basic ABI's numeric path passes
    exactly as this ABI does."""
    return all(isinstance(t, Prim) and t.kind in _FAST_PARAMS for t in types)


# Small integers an aggregate's ITERATE may take in the core too: each row's
# value range-checked there, one out of range left to ``_from_sql``, whose
# error it is (an i32 in wasm, as s32).
_SMALL_INTS = frozenset({"u8", "s8", "u16", "s16"})


def _small_int(ty: WitType) -> bool:
    return isinstance(ty, Prim) and ty.kind in _SMALL_INTS

# A state the core passes from role to role as the raw core value it is: no
# range check or conversion of the general path could change or refuse it.
_OPAQUE_STATES = frozenset({"s32", "s64", "u32", "u64", "float32", "float64"})
_CORE_ROLES = ("initialize", "iterate", "terminate", "destroy")


# The core's names of the WIT types canonical.rs takes (native.KIND's).
_CORE_KINDS = {"s32": "i32", "s64": "i64", "float32": "f32", "float64": "f64", "bool": "bool"}


def _core_kind(ty: WitType, numbers: frozenset[str]) -> str | None:
    if isinstance(ty, Prim) and ty.kind in numbers and ty.kind in _CORE_KINDS:
        return _CORE_KINDS[ty.kind]
    if isinstance(ty, Prim) and ty.kind == "string":
        return "text"
    if _is_bytes(ty):
        return "blob"
    return None


# =============================================================================
# The module and its instances
# =============================================================================


def _render(params: Sequence[str], results: Sequence[str]) -> str:
    return f"({', '.join(params)}) -> ({', '.join(results)})"


_REALLOC_TYPE = (("i32",) * 4, ("i32",))
_FREE_TYPE = (("i32",) * 3, ())


class SingleStoreModule:
    """A core module from wit-bindgen 0.2 with its WIT file, validated once.

    The WASI preview 1 linking, the store and ``_initialize`` are the Basic
    ABI's (``BasicModule``/``CoreInstance``): this class adds the WIT, the
    export checks and the Canonical ABI calling convention.
    """

    abi = ABI

    def __init__(self, runtime: Runtime, sha256: str, wasm: Source, wit: str | None) -> None:
        if wit is None:
            raise AbiError(
                "a SingleStore Canonical-ABI module needs its WIT file (numeric modules "
                "without one are Basic-ABI modules)"
            )
        self.runtime = runtime
        self.wit = parse_wit(wit)
        compiled = core_module(runtime, sha256, wasm)
        for module, name in compiled.imports:
            if module != WASIP1_MODULE or name not in WASIP1_FUNCTIONS:
                raise AbiError(
                    f"import {module}.{name} is not allowed: a SingleStore module "
                    f"may only import {WASIP1_MODULE} (WASI preview 1) functions"
                )
        # The same compiled module: it links WASI and instantiates in the core.
        self.basic = BasicModule(runtime, sha256, wasm)
        kinds = dict(compiled.export_kinds)
        funcs = {name: (tuple(p), tuple(r)) for name, p, r in compiled.functions}
        self.functions: dict[str, WitFunction] = {}
        self.missing: list[str] = []
        for fn in self.wit.functions.values():
            kind = kinds.get(fn.name)
            if kind is None:
                self.missing.append(fn.name)
                continue
            if kind != "func":
                raise AbiError(f"export {fn.name} is a {kind}, not a function")
            actual = funcs[fn.name]
            if actual != (fn.core_params, fn.core_results):
                raise AbiError(
                    f"export {fn.name} has type {_render(*actual)}, but the WIT "
                    f"`{fn.render()}` needs {_render(fn.core_params, fn.core_results)}"
                )
            self.functions[fn.sql_name] = fn
        if not self.functions:
            declared = ", ".join(self.wit.functions) or "none"
            raise AbiError(f"the module exports none of the WIT's functions (declared: {declared})")
        self._require(kinds, funcs)
        # Numbers in and out of a module that imports nothing: the Basic ABI's
        # fast path calls such exports exactly as this ABI would.
        self.pure = self.basic.pure and all(_fast_safe(f) for f in self.functions.values())

        self._signatures: dict[str, Signature] = {}

    def core_export(self, export: str) -> tuple[_core.Module, str]:
        """The Basic ABI's numeric path (invoke.NumericModule) for a function
        whose types it passes exactly as this ABI does (``_fast_safe``)."""
        core, _ = self.basic.core_export(export)
        return core, self.function(export).name

    def core_function(self, export: str) -> tuple[list[str], str | None] | None:
        """How the core runs the function whole (engine/core/src/python/
        canonical.rs), if it can: its parameters as the core takes them
        (number kinds, ``text`` for a string, ``blob`` for a list<u8>) and
        its result (a kind, ``text``, ``blob``, or None for unit). None for
        any other type, which this module's lowering and lifting keep, and
        for what is no function of the module (an aggregate's roles are
        checked by ``core_aggregate``)."""
        fn = self.functions.get(sql_name(export))
        if fn is None or fn.indirect_params:
            return None
        params: list[str] = []
        for _, ty in fn.params:
            kind = _core_kind(ty, _FAST_PARAMS)
            if kind is None:
                return None
            params.append(kind)
        result = fn.result
        if isinstance(result, Prim) and result.kind == "unit":
            return (params, None) if not fn.retptr else None
        kind = _core_kind(result, _FAST_RESULTS)
        # A number comes back flat; a string or list<u8> in the return area.
        if kind is None or fn.retptr != (kind in ("text", "blob")):
            return None
        return params, kind

    def core_aggregate(self, roles: dict[str, str]) -> bool:
        """Whether the core can run an aggregate of these roles (role ->
        export) itself (engine/core/src/python/aggregate.rs): numbers in and
        out exactly as the Basic ABI's numeric path passes them, and a state
        it can pass on untouched. (The module imports WASI at most: load
        refused anything else.)"""
        for role, export in roles.items():
            if role not in _CORE_ROLES:
                continue  # MERGE: SQLite never merges groups
            fn = self.function(export)
            params = [t for _, t in fn.params]
            if role == "initialize":
                params, states = [], [fn.result]
            else:
                states, params = params[:1], params[1:]
                if role == "iterate":
                    states.append(fn.result)
            if any(not isinstance(t, Prim) or t.kind not in _OPAQUE_STATES for t in states):
                return False
            # Only ITERATE's arguments are range-checked per row.
            if role == "iterate":
                params = [t for t in params if not _small_int(t)]
            if not _numbers(params):
                return False
            result = fn.result
            if role == "terminate" and not (
                isinstance(result, Prim) and result.kind in _FAST_RESULTS - {"unit"}
            ):
                return False
        return True

    def aggregate_ranges(self, iterate: str) -> list[tuple[int, int] | None]:
        """The range of each of ITERATE's arguments after its state that the
        core checks per row (a small integer's), or None."""
        return [
            _INT_RANGES[t.kind] if isinstance(t, Prim) and _small_int(t) else None
            for _, t in self.function(iterate).params[1:]
        ]

    def aggregate_row(self, iterate: str) -> Callable[[Sequence[SqlValue]], list[Any] | None]:
        """One row of an aggregate's arguments as ITERATE (``iterate``)
        takes them after its state: the WIT's values, or the typed error
        naming the argument (a NULL only where the WIT has an option)."""
        params = self.function(iterate).params[1:]

        def row(args: Sequence[SqlValue]) -> list[Any] | None:
            if len(args) != len(params):
                raise InvalidArgument(f"{iterate} takes {len(params)} argument(s), got {len(args)}")
            return [
                _from_sql(ty, value, f"argument {sql_name(name)}")
                for (name, ty), value in zip(params, args, strict=True)
            ]

        return row

    def _require(
        self, kinds: dict[str, str], funcs: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]
    ) -> None:
        """The memory and allocator exports the functions' types need, each
        with the type wit-bindgen gave it (checked whenever present)."""
        for name, signature in ((REALLOC, _REALLOC_TYPE), (FREE, _FREE_TYPE)):
            kind = kinds.get(name)
            if kind is None:
                continue
            actual = funcs.get(name)
            if actual != signature:
                shown = _render(*actual) if actual else f"a {kind}"
                raise AbiError(f"export {name} has type {shown}, expected {_render(*signature)}")
        if kinds.get("memory", "memory") != "memory":
            raise AbiError("export memory must be a 32-bit linear memory")
        for fn in self.functions.values():
            params = fn.indirect_params or any(_has_buffers(t) for _, t in fn.params)
            results = _has_buffers(fn.result)
            for name, needed in (
                ("memory", params or results or fn.retptr),
                (REALLOC, params),
                (FREE, results),
            ):
                if needed and name not in kinds:
                    raise AbiError(
                        f"the module must export {name}: `{fn.render()}` passes values "
                        "through linear memory"
                    )

    def function(self, export: str) -> WitFunction:
        """The function SQL calls ``export`` (WIT or SQL spelling)."""
        fn = self.functions.get(sql_name(export))
        if fn is None:
            if any(sql_name(m) == sql_name(export) for m in self.missing):
                raise AbiError(f"the WIT declares {export!r}, but the module does not export it")
            have = ", ".join(sorted(f.name for f in self.functions.values()))
            raise AbiError(f"the module exports no function {export!r} (it has: {have})")
        return fn

    def signature(self, export: str) -> Signature:
        """The SQL signature derived from the function's WIT types."""
        fn = self.function(export)
        found = self._signatures.get(fn.name)
        if found is None:
            found = self._signatures[fn.name] = _derive(fn)
        return found

    def verify(self, limits: Limits, caps: Capabilities) -> SingleStoreInstance:
        """Instantiate once under ``limits``: a start function or ``_initialize``
        that traps or loops is refused before anything is stored."""
        return SingleStoreInstance(self, limits, caps)

    def check(self, export: str, signature: Signature | None) -> Signature:
        derived = self.signature(export)
        if signature is None:
            return derived
        mismatch = not fits(signature, derived, _compatible)
        fn = self.function(export)
        if mismatch:
            raise AbiError(
                f"the WIT function `{fn.render()}` has the SQL signature {derived.render()}, "
                f"which does not match the declared {signature.render()}"
            )
        if signature.called_on_null_input and not derived.called_on_null_input:
            raise AbiError(
                f"CALLED ON NULL INPUT: no parameter of `{fn.render()}` can be NULL "
                "(declare the ones that can as option<T> in the WIT)"
            )
        return Signature(
            params=signature.params,
            returns=signature.returns,
            table=signature.table,
            called_on_null_input=derived.called_on_null_input,
            nullable_params=derived.nullable_params,
        )

    def instantiate(self, limits: Limits, caps: Capabilities) -> SingleStoreInstance:
        return SingleStoreInstance(self, limits, caps)


def _derive(fn: WitFunction) -> Signature:
    where = f"`{fn.render()}`"
    for _, ty in [*fn.params, ("", fn.result)]:
        bad = _ambiguous_option(ty)
        if bad is not None:
            raise AbiError(
                f"{where}: {bad.render()} has no SQL or JSON form (its none and some(none) "
                "would both be NULL)"
            )
    params: list[Column] = []
    nullable: set[int] = set()
    for i, (name, ty) in enumerate(fn.params):
        if ty is UNIT:
            raise AbiError(f"{where}: parameter {name} has no value (unit)")
        if isinstance(ty, OptionType):
            nullable.add(i)
        params.append(Column(sql_name(name), sql_type(ty)))
    inner = _unwrap_result(fn.result)
    record = _table_record(inner)
    returns: SqlType | None = None
    table: tuple[Column, ...] | None = None
    if record is not None:
        table = tuple(Column(sql_name(f), sql_type(t)) for f, t in record.fields)
    elif inner is not UNIT:
        returns = sql_type(inner)
    return Signature(
        params=tuple(params),
        returns=returns,
        table=table,
        called_on_null_input=bool(nullable),
        nullable_params=frozenset(nullable),
    )


class SingleStoreInstance:
    """One instance: the Basic ABI's CoreInstance (store, WASI, ``_initialize``
    run once) called through the Canonical ABI, as runs of raw calls."""

    def __init__(self, module: SingleStoreModule, limits: Limits, caps: Capabilities) -> None:
        self.module = module
        self.limits = limits
        self.poisoned = False
        self.core: CoreInstance = module.basic.instantiate(limits, caps)
        self._raw = self.core.core
        names = module.basic.export_names
        # Both were type-checked at load when present (SingleStoreModule._require).
        self._has_realloc = REALLOC in names
        self._has_free = FREE in names
        self._has_memory = "memory" in names

    # -- the Basic ABI's fast path, for `pure` modules ---------------------------

    def memory_size(self) -> int | None:
        return self.core.memory_size()

    def release(self) -> None:
        """Drop the store now."""
        self.core.release()

    # -- calling ---------------------------------------------------------------

    def call(self, ctx: CallContext, export: str, sig: Signature, args: Sequence[SqlValue]) -> Any:
        fn = self.module.function(export)
        if len(args) != len(fn.params):
            raise InvalidArgument(f"{fn.name} takes {len(fn.params)} argument(s), got {len(args)}")
        # Every argument is checked before the guest is touched: a bad one
        # leaves the instance as it was.
        values = [
            _from_sql(ty, value, f"argument {sql_name(name)}")
            for (name, ty), value in zip(fn.params, args, strict=True)
        ]
        result = self._invoke(ctx, fn, values)
        # The guest's buffers are all freed by now: an err result or a value
        # SQL cannot hold fails this call but leaves the instance usable.
        value = self._result_to_sql(fn, result)
        derived = self.module.signature(fn.name)
        if sig.returns is derived.returns and _same_types(sig.table, derived.table):
            # Already of the declared types: convert_result would only copy.
            return list(value[1]) if sig.table is not None else value
        return convert_result(sig, value)

    def _invoke(self, ctx: CallContext, fn: WitFunction, values: list[Any]) -> Any:
        """One procedure call: a run of raw calls in the core (allocations,
        the export, frees) on one budget, the guest's output logged when
        it closes."""
        raw = self._raw
        raw.open(ctx)
        started = time.perf_counter()
        try:
            result = self._call(fn.name, *self._lower_params(fn, values))
            lifter = _Lifter(self, fn)
            value = lifter.result(result)
            for ptr, size, align in lifter.owned:
                self._free(ptr, size, align)
        except Exception as exc:  # every failure is typed below, after the run closes
            self._close(ctx, started, failed=True)
            self.poisoned = True
            if isinstance(exc, ProcedureError):
                raise
            raise self._failure(ctx, exc) from None
        self._close(ctx, started, failed=False)
        return value

    def _close(self, ctx: CallContext, started: float, failed: bool) -> None:
        """Close the run: its measurements on the context, and the failure
        of its output (the log limit), unless the call failed already."""
        ctx.wasm_seconds = time.perf_counter() - started
        try:
            self._raw.close()
        except ProcedureError:
            self.poisoned = True
            if not failed:
                raise
        finally:
            _, _, ctx.fuel_used, ctx.memory_bytes = self._raw.stats

    def _call(self, name: str, *args: int | float) -> Any:
        """A raw call within the open run: its result, if any."""
        results = self._raw.raw(name, args)
        return results[0] if results else None

    def _failure(self, ctx: CallContext, exc: Exception) -> ProcedureError:
        # The core instance's own rules: output flushed, out-of-memory told
        # apart from other traps, a recorded error winning over its trap.
        self.poisoned = True
        return self.core._failure(ctx, exc)

    def _result_to_sql(self, fn: WitFunction, value: Any) -> Any:
        ty = fn.result
        if isinstance(ty, ExpectedType):
            assert isinstance(value, Case)
            if value.index == 1:
                raise _guest_error(ty.err, value.value)
            ty, value = ty.ok, value.value
        record = _table_record(ty.payload if isinstance(ty, OptionType) else ty)
        if record is not None:
            columns = [sql_name(f) for f, _ in record.fields]
            if all(_plain(t) for _, t in record.fields):
                return (columns, value or [])  # the lifted tuples are the rows
            rows = [
                tuple(
                    _to_sql(t, x, f"{fn.name} column {sql_name(f)}")
                    for (f, t), x in zip(record.fields, row, strict=True)
                )
                for row in value or []
            ]
            return (columns, rows)
        return _to_sql(ty, value, f"{fn.name} result")

    # -- guest memory ----------------------------------------------------------

    def memory_bytes(self) -> int:
        """Linear memory's size now (a guest call may grow it)."""
        if not self._has_memory:
            raise AbiError("the module exports no memory")
        return self._raw.memory_size()

    def read(self, ptr: int, length: int) -> bytes:
        return self._raw.read(ptr, length)

    def _alloc(self, align: int, size: int, what: str) -> int:
        """canonical_abi_realloc(0, 0, align, size), called for every buffer
        (even an empty one, as wit-bindgen's hosts did): the guest pointer."""
        if not self._has_realloc:
            raise AbiError(f"the module must export {REALLOC}")
        ptr = int(self._call(REALLOC, 0, 0, align, size)) & 0xFFFFFFFF
        if size and ptr == 0:
            raise ResourceLimitExceeded(
                f"{REALLOC} returned 0 for {what} ({size} bytes): the guest is out of memory",
                limit="memory",
            )
        memory = self.memory_bytes()
        if ptr + size > memory:
            raise AbiError(
                f"{REALLOC} returned {ptr:#x} for {what} ({size} bytes), outside linear "
                f"memory ({memory} bytes)"
            )
        return ptr

    def _write(self, ptr: int, data: bytes | bytearray, what: str) -> None:
        """Fill a buffer ``_alloc`` returned earlier (other allocations since
        may have moved memory). Checked again: with the variant quirk the
        data may run past the allocation, as the generated stores did."""
        if data:
            size = self.memory_bytes()
            if ptr + len(data) > size:
                raise AbiError(
                    f"{what}: {len(data)} bytes at {ptr:#x} are outside linear memory "
                    f"({size} bytes)"
                )
            self._raw.write(ptr, bytes(data))

    def _free(self, ptr: int, size: int, align: int) -> None:
        if not self._has_free:
            raise AbiError(f"the module must export {FREE}")
        self._call(FREE, ptr, size, align)

    # -- lowering (host -> guest) --------------------------------------------------

    def _lower_params(self, fn: WitFunction, values: list[Any]) -> list[int | float]:
        if fn.indirect_params:
            # More than 16 flat values: one tuple in guest memory, allocated
            # first and handed to the guest, which frees it.
            layout = fn.params_tuple
            ptr = self._alloc(layout.align, layout.size, f"the parameters of {fn.name}")
            buf = bytearray(layout.extent)
            for (_, ty), value, offset in zip(fn.params, values, layout.offsets, strict=True):
                self._store_value(ty, value, buf, offset)
            used = _used_extent(layout, tuple(values))
            self._write(ptr, buf[:used], f"the parameters of {fn.name}")
            return [ptr]
        flat: list[int | float] = []
        for (_, ty), value in zip(fn.params, values, strict=True):
            self._lower_flat(ty, value, flat)
        return flat

    def _lower_bytes(self, data: bytes, align: int, what: str) -> tuple[int, int]:
        ptr = self._alloc(align, len(data), what)
        self._write(ptr, data, what)
        return ptr, len(data)

    def _lower_list(self, ty: ListType, value: Any) -> tuple[int, int]:
        elem = ty.element
        if _is_bytes(ty):
            return self._lower_bytes(bytes(value), 1, "a list<u8>")
        count = len(value)
        # The element array first, then what its elements point to (in order).
        ptr = self._alloc(elem.align, count * elem.size, f"a {ty.render()}")
        buf = bytearray(_span_of(elem, count))
        for i, item in enumerate(value):
            self._store_value(elem, item, buf, i * elem.size)
        if count:
            # Only what the stores covered: past the allocation (the variant
            # quirk) the generated code wrote the last element's payload and
            # nothing more.
            buf = buf[: (count - 1) * elem.size + _used_extent(elem, value[-1])]
        self._write(ptr, buf, f"a {ty.render()}")
        return ptr, count

    def _lower_flat(self, ty: WitType, value: Any, out: list[int | float]) -> None:
        if isinstance(ty, Prim):
            kind = ty.kind
            if kind == "unit":
                return
            if kind == "string":
                out.extend(self._lower_bytes(value.encode("utf-8"), 1, "a string"))
            elif kind == "char":
                out.append(ord(value))
            elif kind == "bool":
                out.append(1 if value else 0)
            else:
                out.append(value)
        elif isinstance(ty, ListType):
            out.extend(self._lower_list(ty, value))
        elif isinstance(ty, TupleType):
            for t, v in zip(ty.items, value, strict=True):
                self._lower_flat(t, v, out)
        elif isinstance(ty, RecordType):
            for (_, t), v in zip(ty.fields, value, strict=True):
                self._lower_flat(t, v, out)
        elif isinstance(ty, FlagsType):
            out.extend((value >> (32 * i)) & 0xFFFFFFFF for i in range(ty.words))
        elif isinstance(ty, EnumType):
            out.append(value)
        else:
            assert isinstance(ty, _Cases)
            index, payload = _case_of(ty, value)
            out.append(index)
            case_ty = ty.payloads[index]
            part: list[int | float] = []
            self._lower_flat(case_ty, payload, part)
            # Each slot of the case in the joined type (abi.rs `cast`), then
            # zeros for the slots this case does not use.
            for v, actual, joined in zip(part, case_ty.flat, ty.joined, strict=False):
                out.append(_widen(v, actual, joined))
            out.extend(0.0 if j in ("f32", "f64") else 0 for j in ty.joined[len(part) :])

    def _store_value(self, ty: WitType, value: Any, buf: bytearray, off: int) -> None:
        """Write ``value`` at ``off`` of ``buf`` (a guest buffer being built),
        allocating what it points to (write_to_memory in abi.rs)."""
        if isinstance(ty, Prim):
            kind = ty.kind
            if kind == "unit":
                return
            if kind == "string":
                ptr, n = self._lower_bytes(value.encode("utf-8"), 1, "a string")
                struct.pack_into("<II", buf, off, ptr, n)
            elif kind == "char":
                struct.pack_into("<I", buf, off, ord(value))
            elif kind == "bool":
                struct.pack_into("<B", buf, off, 1 if value else 0)
            else:
                struct.pack_into("<" + ty.code, buf, off, value)
        elif isinstance(ty, ListType):
            struct.pack_into("<II", buf, off, *self._lower_list(ty, value))
        elif isinstance(ty, TupleType):
            for t, v, o in zip(ty.items, value, ty.offsets, strict=True):
                self._store_value(t, v, buf, off + o)
        elif isinstance(ty, RecordType):
            for (_, t), v, o in zip(ty.fields, value, ty.offsets, strict=True):
                self._store_value(t, v, buf, off + o)
        elif isinstance(ty, FlagsType):
            if ty.words == 1:
                struct.pack_into("<" + ty.code, buf, off, value)
            else:
                for i in range(ty.words):
                    struct.pack_into("<I", buf, off + 4 * i, (value >> (32 * i)) & 0xFFFFFFFF)
        elif isinstance(ty, EnumType):
            struct.pack_into("<" + _TAG_CODE[ty.tag_size], buf, off, value)
        else:
            assert isinstance(ty, _Cases)
            index, payload = _case_of(ty, value)
            struct.pack_into("<" + _TAG_CODE[ty.tag_size], buf, off, index)
            self._store_value(ty.payloads[index], payload, buf, off + ty.payload_offset)


def _used_extent(ty: WitType, value: Any) -> int:
    """The bytes storing ``value`` touches from its start (at least its size)."""
    if ty.extent == ty.size:
        return ty.size
    if isinstance(ty, TupleType | RecordType):
        items = ty.items if isinstance(ty, TupleType) else tuple(t for _, t in ty.fields)
        ends = [o + _used_extent(t, v) for t, o, v in zip(items, ty.offsets, value, strict=True)]
        return max([ty.size, *ends])
    assert isinstance(ty, _Cases)
    index, payload = _case_of(ty, value)
    return max(ty.size, ty.payload_offset + _used_extent(ty.payloads[index], payload))


def _span_of(elem: WitType, count: int) -> int:
    """The bytes ``count`` elements touch: the last one may reach its extent."""
    return (count - 1) * elem.size + elem.extent if count else 0


def _case_of(ty: _Cases, value: Any) -> tuple[int, Any]:
    if isinstance(ty, OptionType):
        return (0, None) if value is None else (1, value)
    assert isinstance(value, Case)
    return value.index, value.value


_F32 = struct.Struct("<f")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_F64 = struct.Struct("<d")
_I64 = struct.Struct("<q")


def _widen(value: int | float, actual: str, joined: str) -> int | float:
    """A case's flat value in its joined slot (abi.rs `cast`, lowering)."""
    if actual == joined:
        return value
    if actual == "f32" and joined == "i32":
        return int(_I32.unpack(_F32.pack(value))[0])
    if actual == "f32" and joined == "i64":
        return int(_U32.unpack(_F32.pack(value))[0])
    if actual == "f64":  # to i64
        return int(_I64.unpack(_F64.pack(value))[0])
    return int(value)  # i32 to i64


def _to_i32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _narrow(value: int | float, joined: str, actual: str) -> int | float:
    """A joined slot's value as the case's own flat type (lifting)."""
    if actual == joined:
        return value
    if actual == "i32":  # from i64
        return _to_i32(int(value))
    if actual == "f32":  # from i32 or i64: the low 32 bits
        return float(_F32.unpack(_U32.pack(int(value) & 0xFFFFFFFF))[0])
    if actual == "f64":  # from i64
        return float(_F64.unpack(_I64.pack(int(value)))[0])
    return value


class _Lifter:
    """Reads one call's result out of guest memory and collects the buffers it
    owns, in the order wit-bindgen's host code freed them.

    Nothing runs in the guest while it reads, so linear memory cannot move;
    every pointer and length is checked against it, and the bytes read are
    capped at ``max_result_bytes`` (a hostile list of a million pointers to
    one big string must not make the host copy terabytes).
    """

    def __init__(self, instance: SingleStoreInstance, fn: WitFunction) -> None:
        self.fn = fn
        self.instance = instance
        self.size = instance.memory_bytes() if instance._has_memory else 0
        self.budget = instance.limits.max_result_bytes
        self.owned: list[tuple[int, int, int]] = []

    def error(self, message: str) -> AbiError:
        return AbiError(f"{self.fn.name}: {message}")

    def result(self, raw: Any) -> Any:
        fn = self.fn
        if fn.retptr:
            ptr = int(raw) & 0xFFFFFFFF
            data = self.read(ptr, fn.result.extent, "the return area")
            return self.load(fn.result, data, 0)
        values = iter(() if raw is None else (raw,))
        value = self.lift_flat(fn.result, values)
        return value

    def charge(self, amount: int) -> None:
        self.budget -= amount
        if self.budget < 0:
            raise ResourceLimitExceeded(
                f"{self.fn.name} returned more than max_result_bytes of data",
                limit="max_result_bytes",
            )

    def read(self, ptr: int, length: int, what: str) -> bytes:
        # As copy_slice did: even an empty buffer may not start past the end
        # (Rust's empty buffers point at their alignment, well inside).
        if ptr + length > self.size:
            raise self.error(
                f"{what} at {ptr:#x} of {length} bytes is outside linear memory ({self.size} bytes)"
            )
        self.charge(length)
        return self.instance.read(ptr, length)

    def string(self, ptr: int, length: int) -> str:
        data = self.read(ptr, length, "a returned string")
        self.owned.append((ptr, length, 1))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(f"a returned string is not valid UTF-8 ({exc.reason})") from None

    def list(self, ty: ListType, ptr: int, count: int) -> Any:
        elem = ty.element
        if elem.size == 0:
            # Zero-sized elements cost a byte each: a count of four billion
            # is refused rather than looped over.
            self.charge(count)
        data = self.read(ptr, _span_of(elem, count), f"a returned {ty.render()}")
        if _is_bytes(ty):
            value: Any = data
        elif isinstance(elem, Prim) and elem.code and elem.kind not in ("bool", "char"):
            value = list(struct.unpack(f"<{count}{elem.code}", data))
        else:
            value = [self.load(elem, data, i * elem.size) for i in range(count)]
        # The list after what its elements own (ListLift: elements, then free).
        self.owned.append((ptr, count * elem.size, elem.align))
        return value

    def check_prim(self, kind: str, value: int) -> Any:
        if kind == "bool":
            if value not in (0, 1):
                raise self.error(f"invalid bool {value} (must be 0 or 1)")
            return value == 1
        if kind == "char":
            if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                raise self.error(f"invalid char {value:#x}")
            return chr(value)
        lo, hi = _INT_RANGES[kind]
        if not lo <= value <= hi:
            raise self.error(f"{value} is out of range for {kind}")
        return value

    def case(self, ty: _Cases, index: int) -> int:
        if not 0 <= index < ty.count:
            raise self.error(f"invalid discriminant {index} for {ty.render()}")
        return index

    def flags(self, ty: FlagsType, bits: int) -> int:
        if bits >> len(ty.flags):
            raise self.error(f"flags {ty.name} has bits set beyond its {len(ty.flags)} flags")
        return bits

    def lift_flat(self, ty: WitType, values: Iterator[Any]) -> Any:
        """A value from flat core values (a function's direct result)."""
        if isinstance(ty, Prim):
            kind = ty.kind
            if kind == "unit":
                return None
            if kind == "string":
                ptr, n = next(values) & 0xFFFFFFFF, next(values) & 0xFFFFFFFF
                return self.string(ptr, n)
            raw = next(values)
            if kind in ("float32", "float64", "s32", "s64"):
                return raw
            if kind in ("u32", "u64", "char"):
                raw &= 0xFFFFFFFF if kind != "u64" else 0xFFFFFFFFFFFFFFFF
            # u8, s8, u16, s16 and bool: out of range is an error, as the
            # generated host code's try_from was.
            return self.check_prim(kind, raw)
        if isinstance(ty, ListType):
            ptr, n = next(values) & 0xFFFFFFFF, next(values) & 0xFFFFFFFF
            return self.list(ty, ptr, n)
        if isinstance(ty, TupleType):
            return tuple(self.lift_flat(t, values) for t in ty.items)
        if isinstance(ty, RecordType):
            return tuple(self.lift_flat(t, values) for _, t in ty.fields)
        if isinstance(ty, FlagsType):
            bits = 0
            for i in range(ty.words):
                bits |= (next(values) & 0xFFFFFFFF) << (32 * i)
            return self.flags(ty, bits)
        assert isinstance(ty, _Cases)
        index = self.case(ty, next(values) & 0xFFFFFFFF)
        slots = [next(values) for _ in ty.joined]
        if isinstance(ty, EnumType):
            return index
        payload_ty = ty.payloads[index]
        narrowed = iter(
            [_narrow(v, j, a) for v, j, a in zip(slots, ty.joined, payload_ty.flat, strict=False)]
        )
        payload = self.lift_flat(payload_ty, narrowed)
        return _make_case(ty, index, payload)

    def load(self, ty: WitType, data: bytes, off: int) -> Any:
        """A value stored at ``off`` of ``data`` (read_from_memory in abi.rs)."""
        if isinstance(ty, Prim):
            kind = ty.kind
            if kind == "unit":
                return None
            if kind == "string":
                ptr, n = struct.unpack_from("<II", data, off)
                return self.string(ptr, n)
            value = struct.unpack_from("<" + ty.code, data, off)[0]
            if kind in ("bool", "char"):
                return self.check_prim(kind, value)
            return value
        if isinstance(ty, ListType):
            ptr, n = struct.unpack_from("<II", data, off)
            return self.list(ty, ptr, n)
        if isinstance(ty, TupleType):
            return tuple(
                self.load(t, data, off + o) for t, o in zip(ty.items, ty.offsets, strict=True)
            )
        if isinstance(ty, RecordType):
            return tuple([self.load(t, data, off + o) for t, o in ty.layout])
        if isinstance(ty, FlagsType):
            if ty.words == 1:
                return self.flags(ty, struct.unpack_from("<" + ty.code, data, off)[0])
            words = struct.unpack_from(f"<{ty.words}I", data, off)
            return self.flags(ty, sum(w << (32 * i) for i, w in enumerate(words)))
        assert isinstance(ty, _Cases)
        index = self.case(ty, struct.unpack_from("<" + _TAG_CODE[ty.tag_size], data, off)[0])
        if isinstance(ty, EnumType):
            return index
        payload = self.load(ty.payloads[index], data, off + ty.payload_offset)
        return _make_case(ty, index, payload)


def _make_case(ty: _Cases, index: int, payload: Any) -> Any:
    if isinstance(ty, OptionType):
        return None if index == 0 else payload
    return Case(index, payload)
