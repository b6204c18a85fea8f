"""The exception hierarchy: every failure the engine reports is a ProcedureError.

Each error carries a machine-readable ``code`` (stable, documented, asserted on by
tests) plus the procedure name and version when one is involved. The codes of
the first six subclasses are the case names of the WIT ``error`` variant, so an
error crosses the guest boundary in either direction without losing its kind.
"""

from __future__ import annotations

from typing import ClassVar

from . import _core


class ProcedureError(Exception):
    """Root of every error raised by heliosdb_wasm."""

    code: str = "procedure-error"

    def __init__(
        self,
        message: str,
        *,
        procedure: str | None = None,
        version: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.procedure = procedure
        self.version = version
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        where = ""
        if self.procedure is not None:
            where = f"{self.procedure}"
            if self.version is not None:
                where += f" v{self.version}"
            where = f" [{where}]"
        return f"{self.code}{where}: {self.message}"

    def located(self, procedure: str, version: int | None) -> ProcedureError:
        """Fill in the procedure identity if the raiser did not know it."""
        if self.procedure is None:
            self.procedure = procedure
            self.version = version
        return self


class CapabilityDenied(ProcedureError):
    """The procedure lacks the capability the operation needs."""

    code = "access-denied"


class SqlError(ProcedureError):
    """SQLite rejected a statement run by or for a procedure."""

    code = "sql-error"


class DatabaseBusy(SqlError):
    """Another connection (a thread, a process) held a lock past the busy
    timeout. Nothing of the statement or call that got it was committed, and
    the connection is left outside any transaction it opened: retry it."""

    code = "busy"
    retryable = True


class ConstraintViolation(ProcedureError):
    """A UNIQUE, NOT NULL, CHECK or FOREIGN KEY constraint failed."""

    code = "constraint"


class ResourceLimitExceeded(ProcedureError):
    """A limit (memory, fuel, timeout, stack, call depth, ...) was exceeded."""

    code = "limit-exceeded"

    def __init__(self, message: str, *, limit: str, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.limit = limit


class InvalidArgument(ProcedureError):
    """An argument had the wrong type or shape."""

    code = "invalid-argument"


class UserError(ProcedureError):
    """Raised by the guest itself, with the guest's own code."""

    code = "user-error"

    def __init__(self, user_code: str, message: str, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.user_code = user_code

    def __str__(self) -> str:
        return f"{super().__str__()} ({self.user_code})"


class ProcedureTrap(ProcedureError):
    """The guest trapped (unreachable, out-of-bounds access, ...).

    ``backtrace``: the guest's frames, innermost first, as
    ``module!function @ offset (file:line)`` where the module's name section
    or DWARF says so (empty when the runtime has none)."""

    code = "trap"

    def __init__(self, message: str, *, backtrace: tuple[str, ...] = (), **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.backtrace = backtrace

    def stack(self) -> str:
        """The backtrace as lines (``  at module!function @ offset``), or ""."""
        return "\n".join(f"  at {frame}" for frame in self.backtrace)


class AbiError(ProcedureError):
    """A module or component breaks the ABI contract (docs/abi.md)."""

    code = "abi-error"


class RegistryError(ProcedureError):
    """A registry operation named something that does not exist, or exists already.

    Codes: ``not-found``, ``already-exists``, ``no-such-version``.
    """

    code = "registry-error"


class ArchiveError(ProcedureError):
    """An extension archive is malformed, unsafe, tampered with or unsigned."""

    code = "invalid-archive"


class DdlError(ProcedureError):
    """A procedure DDL statement could not be parsed or is inconsistent."""

    code = "syntax-error"


# The WIT error variant, in declaration order: status code = index + 1 in the
# Basic ABI (docs/abi.md, section 4). Defined once, in the core, which hands
# the statuses to guests; tests/test_host_api_wit.py checks it against wit/.
WIT_ERROR_CASES: tuple[str, ...] = tuple(_core.BASIC_STATUS_CASES)


def wit_case(error: ProcedureError) -> str:
    """The WIT error case a host-side error is reported to a guest as."""
    if error.code in WIT_ERROR_CASES:
        return error.code
    # Traps and ABI faults of a nested procedure surface to the caller as a
    # failed statement: the caller cannot do anything more specific with them.
    return "sql-error"


def from_wit_case(case: str, message: str, user_code: str | None = None) -> ProcedureError:
    """The engine error for a WIT error case raised by a guest."""
    if case == "user-error":
        return UserError(user_code or "", message)
    if case == "limit-exceeded":
        return ResourceLimitExceeded(message, limit="guest")
    cls: type[ProcedureError] = {
        "access-denied": CapabilityDenied,
        "sql-error": SqlError,
        "constraint": ConstraintViolation,
        "invalid-argument": InvalidArgument,
    }.get(case, ProcedureError)
    return cls(message)


class PluginRejected(ProcedureError):
    """A query-hook plugin refused the statement; ``sqlstate`` is the plugin's."""

    code = "rejected"

    def __init__(self, message: str, *, sqlstate: str, plugin: str, version: int) -> None:
        super().__init__(message, procedure=plugin, version=version)
        self.sqlstate = sqlstate


class PluginError(ProcedureError):
    """A query-hook plugin failed (trap, limit, error, or an answer its stage
    does not allow): the statement fails rather than pass unchecked."""

    code = "plugin-error"
    sqlstate = "38000"  # external routine exception


class RoleError(ProcedureError):
    """A database role (roles.py) cannot be created, changed or found.

    Codes: ``invalid-name``, ``name-too-long``, ``reserved-name``,
    ``not-found``, ``already-exists``, ``invalid-password`` (empty, too
    long, or a malformed SCRAM-SHA-256 verifier), ``md5-password`` (MD5
    hashes are not accepted). ``sqlstate`` is PostgreSQL's for each.
    """

    code = "role-error"
    _SQLSTATES: ClassVar[dict[str, str]] = {
        "invalid-name": "42602",
        "name-too-long": "42622",
        "reserved-name": "42939",
        "not-found": "42704",
        "already-exists": "42710",
        "invalid-password": "22023",
        "md5-password": "0A000",
    }

    @property
    def sqlstate(self) -> str:
        return self._SQLSTATES.get(self.code, "42000")
