"""Component values to and from wasmtime's C representation, planned once per type.

wasmtime-py converts component values by walking its type objects, and every
property of those (a record's fields, a variant's cases, a list's element)
asks the C API again, allocating new type objects each time: for the host
API's result types that is ~85 % of a component call. Here a *codec* is built
once per WIT type - plain Python closures holding what the walk would
re-derive - and calls guest exports and host functions with it. The Python
forms are exactly wasmtime-py's (Record, Variant, untagged variants whose
cases have distinct Python classes, bytes for list<u8>, ...), so values cross
either path alike; functions with types this module does not plan (resources,
futures, streams, maps) keep wasmtime-py's own conversion.

Ownership follows wasmtime-py: arguments lowered for a guest call are deleted
after it, a guest's result is deleted once lifted, a host function's result
is handed to wasmtime, and a host function's arguments belong to wasmtime
(lifting only reads them).
"""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Callable, Sequence
from ctypes import byref
from typing import Any

import wasmtime.component as wc
from wasmtime import WasmtimeError
from wasmtime import _ffi as ffi
from wasmtime.component._enter import catch_exceptions, maybe_raise_last_exn

Val = ffi.wasmtime_component_val_t
Lower = Callable[[Any, Any, Any], None]  # (store, python value, destination val_t)
Lift = Callable[[Any], Any]  # (val_t) -> python value

_VAL_SIZE = ctypes.sizeof(Val)
_PAYLOAD = Val.of.offset


class Unplanned(Exception):
    """A type this module leaves to wasmtime-py."""


class Codec:
    """How one WIT type is lowered and lifted, and which Python classes stand
    for it (wasmtime-py's `add_classes`, which decides untagged variants)."""

    __slots__ = ("classes", "lift", "lower", "owns", "u8")

    def __init__(
        self,
        classes: frozenset[type],
        lower: Lower,
        lift: Lift,
        *,
        u8: bool = False,
        owns: bool = True,
    ) -> None:
        self.classes = classes
        self.lower = lower
        self.lift = lift
        self.u8 = u8  # list<u8> lowers and lifts as bytes
        self.owns = owns  # its C value holds memory to delete


def codec(ty: wc.ValType) -> Codec:
    """The codec of ``ty``; Unplanned for types left to wasmtime-py."""
    maker = _MAKERS.get(type(ty))
    if maker is None:
        raise Unplanned(type(ty).__name__)
    return maker(ty)


# --- scalars ----------------------------------------------------------------------


def _scalar(kind: Any, field: str, py: type, check: Callable[[Any], bool]) -> Callable[..., Codec]:
    code = kind.value

    def make(_ty: wc.ValType) -> Codec:
        def lower(store: Any, val: Any, dst: Any) -> None:
            if not check(val):
                raise TypeError(f"expected {py.__name__} for {field}")
            dst.kind = code
            setattr(dst.of, field, val)

        def lift(c: Any) -> Any:
            return py(getattr(c.of, field))

        return Codec(frozenset({py}), lower, lift, u8=field == "u8", owns=False)

    return make


def _is_int(v: Any) -> bool:
    return isinstance(v, int)


def _text(kind: Any, field: str) -> Callable[[wc.ValType], Codec]:
    """string and enum: a UTF-8 name vector in ``field`` of the union."""
    code = kind.value

    def make(_ty: wc.ValType) -> Codec:
        def lower(store: Any, val: Any, dst: Any) -> None:
            if not isinstance(val, str):
                raise TypeError(f"expected str for {field}")
            setattr(dst.of, field, ffi.str_to_capi(val))
            dst.kind = code

        def lift(c: Any) -> Any:
            return ffi.to_str(getattr(c.of, field))

        return Codec(frozenset({str}), lower, lift)

    return make


def _char(_ty: wc.ValType) -> Codec:
    code = ffi.WASMTIME_COMPONENT_CHAR.value

    def lower(store: Any, val: Any, dst: Any) -> None:
        if not isinstance(val, str) or len(val) != 1:
            raise TypeError("expected single-character string for Char type")
        dst.kind = code
        dst.of.character = ord(val)

    def lift(c: Any) -> Any:
        return chr(c.of.character)

    return Codec(frozenset({str}), lower, lift, owns=False)


def _flags(_ty: wc.ValType) -> Codec:
    code = ffi.WASMTIME_COMPONENT_FLAGS.value

    def lower(store: Any, val: Any, dst: Any) -> None:
        if not isinstance(val, set) or not all(isinstance(s, str) for s in val):
            raise TypeError("expected set of strings for Flags type")
        raw = ffi.wasmtime_component_valflags_t()
        ffi.wasmtime_component_valflags_new_uninit(raw, len(val))
        for i, s in enumerate(val):
            raw.data[i] = ffi.str_to_capi(s)
        dst.of.flags = raw
        dst.kind = code

    def lift(c: Any) -> Any:
        flags = c.of.flags
        return {ffi.to_str(flags.data[i]) for i in range(flags.size)}

    return Codec(frozenset({set}), lower, lift)


# --- sequences ----------------------------------------------------------------------


_VECTORS = {
    "list": (
        ffi.wasmtime_component_vallist_t,
        ffi.wasmtime_component_vallist_new_uninit,
        ffi.wasmtime_component_vallist_delete,
    ),
    "tuple": (
        ffi.wasmtime_component_valtuple_t,
        ffi.wasmtime_component_valtuple_new_uninit,
        ffi.wasmtime_component_valtuple_delete,
    ),
}


def _vector(kind: str, items: Sequence[Any], lower: Callable[[Any, Any], None]) -> Any:
    """A vallist or valtuple of ``items`` lowered one by one. If one fails,
    the unfilled slots become plain bools and the vector is deleted."""
    make, new_uninit, delete = _VECTORS[kind]
    raw = make()
    new_uninit(raw, len(items))
    i = 0
    try:
        for i, item in enumerate(items):
            lower(item, raw.data[i])
    except BaseException:
        for j in range(i, len(items)):
            slot = raw.data[j]
            slot.kind = 0
            slot.of.boolean = False
        delete(byref(raw))
        raise
    return raw


def _list(ty: wc.ListType) -> Codec:
    element = codec(ty.element)
    code = ffi.WASMTIME_COMPONENT_LIST.value
    if element.u8:
        # bytes: every element written (and read) with one strided slice
        # instead of one ctypes field access per byte.
        u8 = bytes([ffi.WASMTIME_COMPONENT_U8.value])

        def lower_bytes(store: Any, val: Any, dst: Any) -> None:
            if not isinstance(val, bytes):
                raise TypeError("expected bytes value")
            n = len(val)
            raw = ffi.wasmtime_component_vallist_t()
            ffi.wasmtime_component_vallist_new_uninit(raw, n)
            if n:
                image = bytearray(n * _VAL_SIZE)
                image[0::_VAL_SIZE] = u8 * n
                image[_PAYLOAD::_VAL_SIZE] = val
                size = len(image)
                ctypes.memmove(raw.data, (ctypes.c_char * size).from_buffer(image), size)
            dst.of.list = raw
            dst.kind = code

        def lift_bytes(c: Any) -> Any:
            lst = c.of.list
            if not lst.size:
                return b""
            return ctypes.string_at(lst.data, lst.size * _VAL_SIZE)[_PAYLOAD::_VAL_SIZE]

        return Codec(frozenset({bytes}), lower_bytes, lift_bytes)

    el_lower, el_lift = element.lower, element.lift

    def lower(store: Any, val: Any, dst: Any) -> None:
        if not isinstance(val, list):
            raise TypeError("expected list value")
        dst.of.list = _vector("list", val, lambda v, slot: el_lower(store, v, slot))
        dst.kind = code

    def lift(c: Any) -> Any:
        lst = c.of.list
        data = lst.data
        return [el_lift(data[i]) for i in range(lst.size)]

    return Codec(frozenset({list}), lower, lift)


def _tuple(ty: wc.TupleType) -> Codec:
    elements = [codec(t) for t in ty.elements]
    lowers = [e.lower for e in elements]
    lifts = [e.lift for e in elements]
    n = len(elements)
    code = ffi.WASMTIME_COMPONENT_TUPLE.value

    def lower(store: Any, val: Any, dst: Any) -> None:
        if not isinstance(val, tuple):
            raise TypeError("expected tuple type")
        if len(val) != n:
            raise TypeError("tuple length mismatch")
        pairs = list(zip(lowers, val, strict=True))
        dst.of.tuple = _vector("tuple", pairs, lambda p, slot: p[0](store, p[1], slot))
        dst.kind = code

    def lift(c: Any) -> Any:
        data = c.of.tuple.data
        return tuple(f(data[i]) for i, f in enumerate(lifts))

    return Codec(frozenset({tuple}), lower, lift)


def _record(ty: wc.RecordType) -> Codec:
    fields = [(name, codec(t)) for name, t in ty.fields]
    code = ffi.WASMTIME_COMPONENT_RECORD.value

    def lower(store: Any, val: Any, dst: Any) -> None:
        raw = ffi.wasmtime_component_valrecord_t()
        ffi.wasmtime_component_valrecord_new_uninit(raw, len(fields))
        i = 0
        try:
            for i, (name, field) in enumerate(fields):
                entry = raw.data[i]
                entry.name = ffi.str_to_capi(name)
                field.lower(store, getattr(val, name), entry.val)
        except BaseException:
            # Entries from the failed one on: valid, empty, for the delete.
            for j in range(i, len(fields)):
                entry = raw.data[j]
                if j > i:
                    entry.name = ffi.str_to_capi("")
                entry.val.kind = 0
                entry.val.of.boolean = False
            ffi.wasmtime_component_valrecord_delete(byref(raw))
            raise
        dst.of.record = raw
        dst.kind = code

    plan = [(name, field.lift) for name, field in fields]

    def lift(c: Any) -> Any:
        data = c.of.record.data
        record = wc.Record()
        for i, (name, f) in enumerate(plan):
            setattr(record, name, f(data[i].val))
        return record

    return Codec(frozenset({wc.Record}), lower, lift)


# --- variants -------------------------------------------------------------------------


def _variant_like(cases: list[tuple[str, Codec | None]]) -> tuple[bool, frozenset[type]]:
    """Whether wasmtime-py represents the type as tagged Variants (two cases
    share a Python class), and the Python classes that stand for it."""
    seen: set[type] = set()
    for _, c in cases:
        case = {object} if c is None else set(c.classes)
        if case & seen:
            return True, frozenset({wc.Variant})
        seen |= case
    return False, frozenset(seen)


def _choose(
    cases: list[tuple[str, Codec | None]], tagged: bool
) -> Callable[[Any], tuple[int, Any]]:
    """Python value -> (case index, payload), as wasmtime-py's _lower picks."""
    if tagged:
        index = {name: i for i, (name, _) in enumerate(cases)}

        def pick_tagged(val: Any) -> tuple[int, Any]:
            if not isinstance(val, wc.Variant):
                raise TypeError("expected Variant type")
            i = index.get(val.tag)
            if i is None:
                raise ValueError("value not valid for this variant")
            return i, val.payload

        return pick_tagged
    tests = [(i, None if c is None else tuple(c.classes)) for i, (_, c) in enumerate(cases)]

    def pick(val: Any) -> tuple[int, Any]:
        for i, classes in tests:
            if classes is None:
                if val is None:
                    return i, None
            elif isinstance(val, classes):
                return i, val
        raise ValueError("value not valid for this variant")

    return pick


def _boxed(store: Any, c: Codec | None, payload: Any) -> Any:
    if c is None:
        return None
    raw = Val()
    c.lower(store, payload, raw)
    return ffi.wasmtime_component_val_new(byref(raw))


def _payload(c: Codec | None, ptr: Any, tag: str, tagged: bool) -> Any:
    value = None if c is None else c.lift(ptr.contents)
    return wc.Variant(tag, value) if tagged else value


def _variant(ty: wc.VariantType) -> Codec:
    cases = [(name, None if t is None else codec(t)) for name, t in ty.cases]
    tagged, classes = _variant_like(cases)
    pick = _choose(cases, tagged)
    by_tag = {name: c for name, c in cases}
    code = ffi.WASMTIME_COMPONENT_VARIANT.value

    def lower(store: Any, val: Any, dst: Any) -> None:
        i, payload = pick(val)
        name, c = cases[i]
        boxed = _boxed(store, c, payload)
        dst.of.variant.discriminant = ffi.str_to_capi(name)
        dst.of.variant.val = boxed
        dst.kind = code

    def lift(c: Any) -> Any:
        tag = ffi.to_str(c.of.variant.discriminant)
        return _payload(by_tag[tag], c.of.variant.val, tag, tagged)

    return Codec(classes, lower, lift)


def _option(ty: wc.OptionType) -> Codec:
    some = codec(ty.payload)
    cases: list[tuple[str, Codec | None]] = [("none", None), ("some", some)]
    tagged, classes = _variant_like(cases)
    pick = _choose(cases, tagged)
    code = ffi.WASMTIME_COMPONENT_OPTION.value

    def lower(store: Any, val: Any, dst: Any) -> None:
        i, payload = pick(val)
        dst.of.option = _boxed(store, cases[i][1], payload)
        dst.kind = code

    def lift(c: Any) -> Any:
        ptr = c.of.option
        if not ptr:
            return wc.Variant("none") if tagged else None
        return _payload(some, ptr, "some", tagged)

    return Codec(classes, lower, lift)


def _result(ty: wc.ResultType) -> Codec:
    ok = None if ty.ok is None else codec(ty.ok)
    err = None if ty.err is None else codec(ty.err)
    cases = [("ok", ok), ("err", err)]
    tagged, classes = _variant_like(cases)
    pick = _choose(cases, tagged)
    code = ffi.WASMTIME_COMPONENT_RESULT.value

    def lower(store: Any, val: Any, dst: Any) -> None:
        i, payload = pick(val)
        dst.of.result.val = _boxed(store, cases[i][1], payload)
        dst.of.result.is_ok = i == 0
        dst.kind = code

    def lift(c: Any) -> Any:
        res = c.of.result
        tag, case = ("ok", ok) if res.is_ok else ("err", err)
        if case is None:
            return wc.Variant(tag) if tagged else None
        return _payload(case, res.val, tag, tagged)

    return Codec(classes, lower, lift)


_MAKERS: dict[type, Callable[[Any], Codec]] = {
    wc.Bool: _scalar(ffi.WASMTIME_COMPONENT_BOOL, "boolean", bool, lambda v: isinstance(v, bool)),
    wc.S8: _scalar(ffi.WASMTIME_COMPONENT_S8, "s8", int, _is_int),
    wc.U8: _scalar(ffi.WASMTIME_COMPONENT_U8, "u8", int, _is_int),
    wc.S16: _scalar(ffi.WASMTIME_COMPONENT_S16, "s16", int, _is_int),
    wc.U16: _scalar(ffi.WASMTIME_COMPONENT_U16, "u16", int, _is_int),
    wc.S32: _scalar(ffi.WASMTIME_COMPONENT_S32, "s32", int, _is_int),
    wc.U32: _scalar(ffi.WASMTIME_COMPONENT_U32, "u32", int, _is_int),
    wc.S64: _scalar(ffi.WASMTIME_COMPONENT_S64, "s64", int, _is_int),
    wc.U64: _scalar(ffi.WASMTIME_COMPONENT_U64, "u64", int, _is_int),
    wc.F32: _scalar(ffi.WASMTIME_COMPONENT_F32, "f32", float, lambda v: isinstance(v, float)),
    wc.F64: _scalar(ffi.WASMTIME_COMPONENT_F64, "f64", float, lambda v: isinstance(v, float)),
    wc.Char: _char,
    wc.String: _text(ffi.WASMTIME_COMPONENT_STRING, "string"),
    wc.EnumType: _text(ffi.WASMTIME_COMPONENT_ENUM, "enumeration"),
    wc.FlagsType: _flags,
    wc.ListType: _list,
    wc.TupleType: _tuple,
    wc.RecordType: _record,
    wc.VariantType: _variant,
    wc.OptionType: _option,
    wc.ResultType: _result,
}


# --- calls -----------------------------------------------------------------------------


class Signature:
    """The codecs of a function type's parameters and result."""

    def __init__(self, fty: wc.FuncType) -> None:
        self.params = [codec(t) for _, t in fty.params]
        result = fty.result
        self.result = None if result is None else codec(result)


def signature(fty: wc.FuncType) -> Signature | None:
    """The codecs of ``fty``, or None where wasmtime-py must convert."""
    try:
        return Signature(fty)
    except Unplanned:
        return None


class GuestFunc:
    """A component export called with planned codecs; called and
    post-returned like wasmtime.component.Func."""

    __slots__ = ("_arity", "_func", "_lift", "_lowers", "_owned", "_result_owns")

    def __init__(self, func: wc.Func, sig: Signature) -> None:
        self._func = func
        self._lowers = [c.lower for c in sig.params]
        self._lift = None if sig.result is None else sig.result.lift
        self._arity = len(sig.params)
        # Scalars hold no memory: only the others are deleted after a call.
        self._owned = [i for i, c in enumerate(sig.params) if c.owns]
        self._result_owns = sig.result is not None and sig.result.owns

    def __call__(self, store: Any, *params: Any) -> Any:
        n = self._arity
        if len(params) != n:
            raise TypeError(
                f"wrong number of parameters provided: given {len(params)}, expected {n}"
            )
        args = (Val * n)()
        lowered = 0
        try:
            for lower, value in zip(self._lowers, params, strict=True):
                lower(store, value, args[lowered])
                lowered += 1
            result = Val() if self._lift is not None else None
            error = ffi.wasmtime_component_func_call(
                byref(self._func._func),
                store._context(),
                args,
                n,
                None if result is None else byref(result),
                0 if result is None else 1,
            )
            if error:
                exc = WasmtimeError._from_ptr(error)
                maybe_raise_last_exn()
                raise exc
            if result is None or self._lift is None:
                return None
            try:
                return self._lift(result)
            finally:
                if self._result_owns:
                    ffi.wasmtime_component_val_delete(byref(result))
        finally:
            for i in self._owned:
                if i < lowered:
                    ffi.wasmtime_component_val_delete(byref(args[i]))

    def post_return(self, store: Any) -> None:
        self._func.post_return(store)


# Host functions by the key wasmtime hands back to the trampoline.
_HOST: dict[int, tuple[Callable[..., Any], list[Lift], Lower | None]] = {}
_KEYS = itertools.count(1)


@ffi.wasmtime_component_func_callback_t  # type: ignore[untyped-decorator]
def _trampoline(
    key: Any, context: Any, _ty: Any, args: Any, nargs: int, results: Any, nres: int
) -> Any:
    def run(store: Any) -> None:
        func, lifts, lower = _HOST[key or 0]
        if nargs != len(lifts) or nres != (lower is not None):
            raise TypeError("host function called with a different type than it was linked with")
        value = func(store, *[lift(args[i]) for i, lift in enumerate(lifts)])
        if lower is not None:
            lower(store, value, results[0])

    return catch_exceptions(context, run)


def _drop(key: Any, host: dict[int, Any] = _HOST) -> None:
    # Bound at definition: linkers finalised at interpreter exit outlive the
    # module's globals.
    host.pop(key or 0, None)


_finalize = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_drop)

# wasmtime calls _finalize when it drops a store's host functions, which can
# happen while the interpreter clears this module at exit; ctypes frees a
# callback's machine code with its Python object, so both callbacks are kept
# alive for the life of the process.
for _callback in (_trampoline, _finalize):
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(_callback))


def add_host_func(
    instance: wc.LinkerInstance, name: str, func: Callable[..., Any], sig: Signature
) -> None:
    """Defines ``name`` in ``instance`` like LinkerInstance.add_func, with
    ``sig``'s codecs (which must be the importing component's type)."""
    key = next(_KEYS)
    lower = None if sig.result is None else sig.result.lower
    _HOST[key] = (func, [c.lift for c in sig.params], lower)
    raw = name.encode()
    error = ffi.wasmtime_component_linker_instance_add_func(
        instance.ptr(), ctypes.create_string_buffer(raw), len(raw), _trampoline, key, _finalize
    )
    if error:
        _HOST.pop(key, None)
        raise WasmtimeError._from_ptr(error)
