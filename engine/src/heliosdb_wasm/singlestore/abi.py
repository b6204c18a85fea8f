"""A wit-bindgen 0.2 core module with its WIT: the export checks at load, the
SQL signatures its functions have, and what the core needs to call them.

Every call runs in the core (engine/core/src/python/canonical.rs: the SQL
values made WIT values, flattening, the return area, canonical_abi_realloc
and canonical_abi_free, strict lifting), with the types and layout this
package's ``wit`` hands it (``WitType.core``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .. import _core
from ..abi_basic import BasicModule, CoreInstance, core_module
from ..errors import AbiError, InvalidArgument
from ..policy import Capabilities, Limits
from ..runtime import Runtime, Source
from ..values import Column, Signature, SqlType, SqlValue, fits
from ..wasi import WASIP1_FUNCTIONS, WASIP1_MODULE
from .values import (
    _ambiguous_option,
    _compatible,
    _has_buffers,
    _same_types,
    _table_record,
    _unwrap_result,
    sql_type,
)
from .wit import (
    _INT_RANGES,
    ABI,
    FREE,
    REALLOC,
    UNIT,
    OptionType,
    Prim,
    WitFunction,
    WitType,
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
# value range-checked there, one out of range left to ``aggregate_row``, whose
# error it is (an i32 in wasm, as s32).
_SMALL_INTS = frozenset({"u8", "s8", "u16", "s16"})


def _small_int(ty: WitType) -> bool:
    return isinstance(ty, Prim) and ty.kind in _SMALL_INTS


# A state the core passes from role to role as the raw core value it is: no
# range check or conversion of the Canonical ABI could change or refuse it.
_OPAQUE_STATES = frozenset({"s32", "s64", "u32", "u64", "float32", "float64"})
_CORE_ROLES = ("initialize", "iterate", "terminate", "destroy")


# =============================================================================
# The module
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
        params = [
            (t.core, f"argument {sql_name(name)}") for name, t in self.function(iterate).params[1:]
        ]

        def row(args: Sequence[SqlValue]) -> list[Any] | None:
            if len(args) != len(params):
                raise InvalidArgument(f"{iterate} takes {len(params)} argument(s), got {len(args)}")
            try:
                return [
                    _core.canonical_argument(ty, value, what)
                    for (ty, what), value in zip(params, args, strict=True)
                ]
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from None

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

    def converts(self, export: str, signature: Signature) -> bool:
        """Whether the results of ``export`` declared ``signature`` are to be
        converted to it: TEXT declared where the WIT says JSON, or the other
        way round (``check``)."""
        derived = self.signature(export)
        return not (
            signature.returns is derived.returns and _same_types(signature.table, derived.table)
        )

    def verify(self, limits: Limits, caps: Capabilities) -> CoreInstance:
        """Instantiate once under ``limits``: a start function or ``_initialize``
        that traps or loops is refused before anything is stored. The
        instance serves the first call (``Runner.adopt``)."""
        return self.basic.verify(limits, caps)

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
