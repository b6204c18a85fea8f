"""The Canonical ABI: components targeting world heliosdb:procedures/procedure.

Signatures come from the component's own export types (docs/abi.md section 8).
The component runs in the Rust core (engine/core/src/component.rs): its host
interface generated from wit/, WASI 0.2, the call and its values, each call
run whole on the hosted path (engine/core/src/python/hosted.rs), exactly as
for core modules.

Values cross as plain Python values (engine/core/src/python/component.rs):
a record is a dict by WIT field name, a variant ``(case, payload)``, a result
``("ok", v)`` or ``("err", e)``, ``list<u8>`` bytes. Types cross as
descriptors: ``("s64",)``, ``("list", T)``, ``("option", T)``,
``("result", T | None, E | None)``, ``("record", ((name, T), ...))``, ...
"""

from __future__ import annotations

from typing import Any

from . import _core
from .abi_basic import host_status, pooled
from .errors import (
    WIT_ERROR_CASES,
    AbiError,
    ProcedureError,
    UserError,
    from_wit_case,
)
from .policy import Capabilities, Limits
from .runtime import Runtime, Source, source_bytes
from .values import Column, Signature, SqlType, SqlValue, fits
from .wasi import is_wasip2_interface, wasi_grants

WIT_PACKAGE = "heliosdb:procedures"
WIT_VERSION = "0.1.0"
HOST_INTERFACE = f"{WIT_PACKAGE}/host@{WIT_VERSION}"
TYPES_INTERFACE = f"{WIT_PACKAGE}/types@{WIT_VERSION}"
PLUGIN_TYPES_INTERFACE = f"{WIT_PACKAGE}/plugin-types@{WIT_VERSION}"
PLUGIN_HOST_INTERFACE = f"{WIT_PACKAGE}/plugin-host@{WIT_VERSION}"
_ALLOWED_IMPORTS = {HOST_INTERFACE, TYPES_INTERFACE, PLUGIN_TYPES_INTERFACE, PLUGIN_HOST_INTERFACE}

# A WIT type as the core describes it (see the module docstring).
WitType = tuple[Any, ...]
FuncType = tuple[list[tuple[str, WitType]], WitType | None]

_SCALARS: dict[str, SqlType] = {
    "s64": SqlType.BIGINT,
    "u32": SqlType.BIGINT,
    "u64": SqlType.BIGINT,
    "s32": SqlType.INTEGER,
    "s16": SqlType.INTEGER,
    "s8": SqlType.INTEGER,
    "u16": SqlType.INTEGER,
    "u8": SqlType.INTEGER,
    "f64": SqlType.DOUBLE,
    "f32": SqlType.REAL,
    "bool": SqlType.BOOLEAN,
    "string": SqlType.TEXT,
}
_BYTES: WitType = ("list", ("u8",))


def sql_name(wit_name: str) -> str:
    return wit_name.replace("-", "_")


def render(ty: WitType | None) -> str:
    """A type as WIT spells it."""
    if ty is None:
        return "_"
    kind = ty[0]
    if kind in ("list", "option"):
        return f"{kind}<{render(ty[1])}>"
    if kind == "result":
        return f"result<{render(ty[1])}, {render(ty[2])}>"
    if kind == "tuple":
        return f"tuple<{', '.join(render(t) for t in ty[1])}>"
    return str(kind)


def _scalar(ty: WitType, where: str) -> SqlType:
    found = _SCALARS.get(ty[0])
    if found is not None:
        return found
    if ty == _BYTES:
        return SqlType.BLOB
    raise AbiError(f"{where}: WIT type {render(ty)} has no SQL equivalent")


def _unwrap_option(ty: WitType) -> WitType:
    return ty[1] if ty[0] == "option" else ty


class _Shape:
    """How one export's values cross: the derived signature plus the WIT types."""

    def __init__(self, name: str, fty: FuncType) -> None:
        self.name = name
        params: list[Column] = []
        nullable: set[int] = set()
        wit_params, result = fty
        for i, (pname, pty) in enumerate(wit_params):
            inner = pty
            if pty[0] == "option":
                nullable.add(i)
                inner = pty[1]
            params.append(Column(sql_name(pname), _scalar(inner, f"{name}({pname})")))
        inner_result = result[1] if result is not None and result[0] == "result" else result
        returns: SqlType | None = None
        table: tuple[Column, ...] | None = None
        if inner_result is not None and inner_result[0] == "option":
            inner_result = inner_result[1]
        rows = inner_result[1] if inner_result is not None and inner_result[0] == "list" else None
        if rows is not None and rows[0] == "record":
            fields = rows[1]
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


def _compatible(declared: SqlType, derived: SqlType) -> bool:
    return declared == derived or (declared is SqlType.JSON and derived is SqlType.TEXT)


def core_component(runtime: Runtime, sha256: str, wasm: Source) -> _core.Component:
    """The component compiled by the core, from its cache (the bytes are
    read only on a miss) or now."""
    try:
        return _core.Component(runtime.core, sha256, lambda: bytes(source_bytes(wasm)))
    except _core.CoreError as exc:
        raise AbiError(f"the runtime core refused the component: {exc.args[1]}") from None


class ComponentModule:
    """A validated component and the shapes of its exported functions."""

    abi = "component"

    def __init__(self, runtime: Runtime, sha256: str, wasm: Source) -> None:
        self.runtime = runtime
        self.sha256 = sha256
        self.component = core_component(runtime, sha256, wasm)
        self.uses_wasi = False
        for name in self.component.imports:
            if is_wasip2_interface(name):
                # Deny-by-default WASI (engine/core/src/wasi.rs), for
                # language runtimes.
                self.uses_wasi = True
            elif name not in _ALLOWED_IMPORTS:
                raise AbiError(
                    f"the component imports {name!r}; procedures may only import "
                    f"{HOST_INTERFACE} and the WASI 0.2 cli, clocks, io, random, "
                    "filesystem and sockets interfaces"
                )
        # export name (as SQL calls it) -> (interface or None, WIT name, type)
        self.functions: dict[str, tuple[str | None, str, FuncType]] = {}
        for iface, name, params, result in self.component.exports:
            entry = (iface, name, (params, result))
            if iface is None:
                self.functions[sql_name(name)] = entry
            else:
                self.functions.setdefault(sql_name(name), entry)
        if not self.functions:
            raise AbiError("the component exports no functions")
        self._shapes: dict[str, _Shape] = {}
        self._pools: dict[str, _core.ComponentPool] = {}

    def shape(self, export: str) -> _Shape:
        key = sql_name(export)
        if key not in self._shapes:
            found = self.functions.get(key)
            if found is None:
                have = ", ".join(sorted(self.functions))
                raise AbiError(f"the component exports no function {export!r} (it has: {have})")
            self._shapes[key] = _Shape(found[1], found[2])
        return self._shapes[key]

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

    def core_pool(self, limits: Limits, caps: Capabilities) -> _core.ComponentPool:
        """The core's pool of this component under ``limits`` and what
        ``caps`` grant of WASI (linked once), made on first use."""
        grants = wasi_grants(caps, limits) if self.uses_wasi else None
        return pooled(
            self._pools,
            limits,
            grants,
            lambda: _core.ComponentPool(self.component, limits.to_json(), host_status, grants),
        )


def guest_error(payload: Any) -> ProcedureError:
    """The engine error for the err payload of a result: the WIT ``error``
    variant's case, or a user error carrying any other error type."""
    if isinstance(payload, tuple) and len(payload) == 2 and isinstance(payload[0], str):
        case, value = payload
        if case == "user-error" and isinstance(value, dict):
            return UserError(str(value.get("code", "")), str(value.get("message", "")))
        if case in WIT_ERROR_CASES:
            return from_wit_case(case, str(value))
        return ProcedureError(str(value), code=case)
    return UserError("error", str(payload))


# The WIT `value` variant of the host API, as the core passes it.
_VALUE_CASES: list[tuple[type, str]] = [
    (bool, "boolean"),
    (int, "integer"),
    (float, "real"),
    (str, "text"),
    (bytes, "blob"),
]


def value_variant(v: SqlValue) -> tuple[str, Any]:
    """A SQL value as the WIT ``value`` variant."""
    if v is None:
        return ("null", None)
    for cls, case in _VALUE_CASES:
        if isinstance(v, cls):
            return (case, v)
    return ("blob", bytes(v))  # type: ignore[arg-type]


def sql_of_value(v: tuple[str, Any]) -> SqlValue:
    """The WIT ``value`` variant as a SQL value."""
    return v[1]  # type: ignore[no-any-return]
