# The Rust extension module (engine/core/src/python): its Python surface,
# for mypy and for readers. Kept beside the crate's #[pymethods]; a test
# (tests/test_core_binding.py) checks every name here exists in the module.
from collections.abc import Callable, Sequence
from typing import Any, Literal

Kind = Literal["i64", "i32", "f64", "f32", "bool"]
# a parameter as Scalar and Numeric.hosted take it: a number, or a buffer
Param = Literal["i64", "i32", "f64", "f32", "bool", "text", "blob", "json"]
WASMTIME_VERSION: str
BASIC_HOST_MODULE: str
# name -> (param types, result types), as wasm type names (engine/core/src/abi.rs)
BASIC_HOST_IMPORTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]
# the WIT error cases by status code - 1 (engine/core/src/basic.rs)
BASIC_STATUS_CASES: list[str]
WASIP2_PREFIXES: list[str]

class CoreError(Exception):
    """args: (code, message)."""

class Runtime:
    def __init__(self, max_wasm_stack: int) -> None: ...
    def cache_stats(self) -> tuple[int, int, int, int]: ...
    @property
    def cache_dir(self) -> str | None: ...

class Module:
    def __init__(
        self, runtime: Runtime, sha256: str, source: bytes | Callable[[], bytes]
    ) -> None: ...
    @staticmethod
    def cached(runtime: Runtime, sha256: str) -> Module | None: ...
    @property
    def imports(self) -> list[tuple[str, str]]: ...
    # (module, name, params, results); None, None for an import that is not a function
    @property
    def import_types(self) -> list[tuple[str, str, list[str] | None, list[str] | None]]: ...
    @property
    def export_names(self) -> list[str]: ...
    @property
    def export_kinds(self) -> list[tuple[str, str]]: ...
    @property
    def functions(self) -> list[tuple[str, list[str], list[str]]]: ...

# (time, procedure, version, level, message), as telemetry.LogRecord
LogLine = tuple[float, str, int, str, str]

class LogSink:
    def __init__(
        self,
        memory_lines: int,
        memory_bytes: int,
        retention_lines: int,
        retention_bytes: int,
        message_bytes: int,
        line_bytes: int,
        marker: str,
    ) -> None: ...
    def push(
        self, time: float, procedure: str, version: int, level_name: str, message: str
    ) -> None: ...
    def log_line(
        self,
        procedure: str,
        version: int,
        max_log_bytes: int,
        level_name: str,
        message: str,
        logged: int,
    ) -> tuple[int, bool] | None: ...
    def memory(self) -> list[LogLine]: ...
    def pending(self) -> tuple[list[LogLine], int]: ...
    def flushed(self, upto: int) -> None: ...
    @property
    def pending_count(self) -> int: ...
    def take_echo(self, levels: list[str]) -> list[LogLine]: ...

class Tally:
    def __init__(self, base_seconds: float, per_octave: float, buckets: int) -> None: ...
    def count(self, seconds: float) -> None: ...
    # (calls, seconds, {bucket: calls}, fuel, max_memory)
    def drain(self) -> tuple[int, float, dict[int, int], int, int | None]: ...
    @property
    def attached(self) -> bool: ...

# fault(code, message, limit, frames, seconds, row) -> the exception to raise
Fault = Callable[[str, str, str | None, list[str], float, int | None], BaseException]

class Numeric:
    def __init__(
        self,
        module: Module,
        export: str,
        params: Sequence[Kind],
        result: Kind | None,
        limits: dict[str, Any],
        tally: Tally,
        fault: Fault,
    ) -> None: ...
    @staticmethod
    def hosted(
        # a BasicPool and its export's name, or a ComponentPool and
        # (interface or None, name)
        pool: BasicPool | ComponentPool,
        export: str | tuple[str | None, str],
        params: Sequence[Param],
        result: Kind | None,
        limits: dict[str, Any],
        tally: Tally,
        fault: Fault,
        hooks: Any,  # invoke.HostedHooks
        gate: Gate,
        grants: Grants,
        is_procedure: Callable[[str], bool],
        writes: bool,
        lifts: bool,
        log: tuple[LogSink, str, int],  # the database's log, the procedure's name and version
        table: Sequence[str | None] | None = None,  # native.table_columns
    ) -> Numeric: ...
    @staticmethod
    def canonical(
        # a Module that imports nothing, or a BasicPool of one importing WASI only
        module: Module | BasicPool,
        function: tuple[Any, ...],  # singlestore.wit.WitFunction.core
        params: Sequence[Param],
        result: Kind | None,
        limits: dict[str, Any],
        tally: Tally,
        fault: Fault,
        hooks: Any,  # invoke.HostedHooks
        convert: bool = False,
        # where a WASI guest granted stdout logs its lines (as hosted's log)
        log: tuple[LogSink, str, int] | None = None,
    ) -> Numeric: ...
    def call(self, args: Sequence[Any]) -> Any: ...
    # A SingleStore function's: an instance of its module held for several
    # calls of the module's functions (an aggregate group's).
    def hold(self) -> Held: ...
    def call_held(self, held: Held, args: Sequence[Any]) -> Any: ...
    def release_held(self, held: Held) -> None: ...
    def call_values(self, args: Sequence[Any]) -> Any:
        """A component's hosted export called with plain Python values of
        its own types (records as dicts, variants as (case, payload))."""
    def profiled(
        self, args: Sequence[Any]
    ) -> tuple[Any, tuple[float, float, float, int | None, int | None] | None]:
        """call, and (instantiate, wasm, host seconds, fuel, memory) if the
        call recorded where its time went."""
    def batch(self, columns: Sequence[Sequence[Any]]) -> list[Any]: ...
    def prewarm(self, n: int) -> None:
        """Instances made until n are idle (at most the pool's size)."""
    def call_guest_batch(self, name: str, rows: int, data: bytes, out_size: int) -> bytes:
        """Rows through a hosted Basic-ABI export's batch entry point
        (docs/abi.md §9): the argument columns laid out, the result bytes."""
    @property
    def idle_instances(self) -> int: ...
    @property
    def instantiated(self) -> int: ...

class GuestFault(Exception):
    """args: (code, message, limit, frames), as runtime.core_error takes them."""

# status(exc) -> the status code a host error gives the guest, or None: it ends the call
HostStatus = Callable[[BaseException], int | None]

class BasicPool:
    # wasi: for a module importing WASI preview 1, what it is granted (see
    # wasi.wasi_grants); None: nothing.
    def __init__(
        self,
        module: Module,
        limits: dict[str, Any],
        status: HostStatus,
        wasi: dict[str, Any] | None = None,
    ) -> None: ...
    def instance(self) -> BasicInstance: ...

# A component's WIT type as a descriptor: ("s64",), ("list", T), ("option", T),
# ("result", T | None, E | None), ("record", ((name, T), ...)), ("tuple", (T, ...)),
# ("variant", ((name, T | None), ...)), ("enum", names), ("flags", names).
WitType = tuple[Any, ...]

class Component:
    def __init__(self, runtime: Runtime, sha256: str, source: Any) -> None: ...
    @property
    def imports(self) -> list[str]: ...
    # (interface or None, name, [(param, type)], result type or None)
    @property
    def exports(
        self,
    ) -> list[tuple[str | None, str, list[tuple[str, WitType]], WitType | None]]: ...

class ComponentPool:
    def __init__(
        self,
        component: Component,
        limits: dict[str, Any],
        status: HostStatus,
        wasi: dict[str, Any] | None = None,
    ) -> None: ...

class Held:
    """An instance held by Numeric.hold (dropped once a call poisoned it)."""
    @property
    def poisoned(self) -> bool: ...

def canonical_argument(ty: tuple[Any, ...], value: Any, what: str) -> Any:
    """value as an argument of WIT type ty (WitType.core) takes it, back as
    the SQL value it stands for; ValueError carries the message."""

def lower_and_lift(
    component: Component, interface: str | None, name: str, args: Sequence[Any]
) -> list[Any]: ...

class BasicInstance:
    # ctx: hostapi.CallContext (None: no host function may run); lowering:
    # one letter per parameter, q i64, i i32, d f64, f f32, s a buffer.
    # -> (wasm result, heliosdb_return's (tag, payload), heliosdb_error's (code, message))
    def call(
        self, ctx: Any, export: str, lowering: bytes, args: Sequence[Any]
    ) -> tuple[Any, tuple[int, bytes] | None, tuple[str, str] | None]: ...
    @property
    def poisoned(self) -> bool: ...
    def recycle(self) -> None:
        """Back to its pool (dropped if a call failed on it)."""
    def release(self) -> None: ...

class Scalar:
    def __init__(
        self,
        params: Sequence[Param],
        result: Kind | None,
        null_call: bool,
        acquire: Callable[[], Numeric | None],
        slow: Callable[..., Any],
    ) -> None: ...
    def bind(self, db: int, name: str) -> None: ...
    def release(self) -> None: ...

class Aggregate:
    """A numeric aggregate run by the core: of a module that imports nothing
    (a Module), or a BasicPool of one with imports; ``host`` (a
    Numeric.hosted of that pool) brackets each role call and serves its
    host functions, when there are any besides WASI (or WASI's output is
    granted)."""
    def __init__(
        self,
        module: Module | BasicPool,
        roles: tuple[str, str, str, str | None],
        params: Sequence[Kind],
        result: Kind,
        limits: dict[str, Any],
        tally: Tally,
        fault: Fault,
        coerce: Callable[[Sequence[Any]], list[Any] | None],
        host: Numeric | None = None,
        ranges: Sequence[tuple[int, int] | None] | None = None,
    ) -> None:
        """ranges: each argument's (lo, hi) the core checks per row (a
        small integer's; None: any value of its kind); a row out of range
        goes to coerce, whose error it is."""
    @property
    def idle_instances(self) -> int: ...
    @property
    def instantiated(self) -> int: ...

class AggregateFunction:
    """An aggregate registered straight into SQLite; ``group()`` makes a
    Python group (step(*args), final(), abandon(): invoke.Aggregate)."""
    def __init__(
        self, acquire: Callable[[], Aggregate | None], group: Callable[[], Any]
    ) -> None: ...
    def bind(self, db: int, name: str, nargs: int) -> None: ...
    def release(self) -> None: ...

class Grants:
    """A procedure's normalized grants (policy.Capabilities.grants)."""
    def __init__(self, grants: list[str]) -> None: ...

class Authorizer:
    """The capability authorizer of one statement of a procedure."""
    def __init__(
        self, grants: Grants, read_only: bool, is_procedure: Callable[[str], bool]
    ) -> None: ...
    def __call__(
        self, action: int, p1: str | None, p2: str | None, db: str | None, trigger: str | None
    ) -> int: ...
    @property
    def denied(self) -> list[str]: ...

# the modules a core module's imports name, read without compiling it
def registry_access(action: int, p1: str | None, p2: str | None) -> str | None: ...

class PolicyToken: ...

class Gate:
    def __init__(self, db: int, cache_statements: bool) -> None: ...
    @property
    def policy(self) -> PolicyToken | None: ...
    @policy.setter
    def policy(self, policy: PolicyToken | Authorizer | Callable[..., int] | None) -> None: ...
    @property
    def host_length(self) -> int | None: ...
    @property
    def depth(self) -> int: ...
    def clear_statements(self) -> None: ...
    @property
    def cached_statements(self) -> int: ...
    def enter_call(self, max_depth: int) -> bool: ...
    def exit_call(self) -> None: ...
    @property
    def calls(self) -> int: ...

def extension_entry_point() -> str: ...
def sqlite_ready() -> bool: ...

# The Basic ABI's encodings (docs/abi.md §5-§6, engine/core/src/encoding.rs).
def decode_params(data: bytes) -> list[Any]: ...
def encode_rows(columns: list[str], rows: Sequence[Sequence[Any]]) -> bytes: ...
