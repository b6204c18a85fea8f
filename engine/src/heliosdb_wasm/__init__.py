"""HeliosDB WASM: WebAssembly stored procedures for an embedded SQL database.

import heliosdb_wasm

with heliosdb_wasm.open("shop.db") as db:
    db.execute("CREATE PROCEDURE ... LANGUAGE wasm AS $wasm$file://p.wasm$wasm$")
    print(db.execute("SELECT calculate_discount(12345, 599.99)").scalar())
"""

import logging

from .database import Database, Result, open  # noqa: A004 - heliosdb_wasm.open(path)
from .errors import (
    AbiError,
    ArchiveError,
    CapabilityDenied,
    ConstraintViolation,
    DatabaseBusy,
    DdlError,
    InvalidArgument,
    ProcedureError,
    ProcedureTrap,
    RegistryError,
    ResourceLimitExceeded,
    RoleError,
    SqlError,
    UserError,
)
from .policy import Capabilities, Limits
from .registry import ProcedureVersion
from .roles import Role
from .telemetry import LogRecord
from .values import Column, Signature, SqlType

__all__ = [
    "AbiError",
    "ArchiveError",
    "Capabilities",
    "CapabilityDenied",
    "Column",
    "ConstraintViolation",
    "Database",
    "DatabaseBusy",
    "DdlError",
    "InvalidArgument",
    "Limits",
    "LogRecord",
    "ProcedureError",
    "ProcedureTrap",
    "ProcedureVersion",
    "RegistryError",
    "ResourceLimitExceeded",
    "Result",
    "Role",
    "RoleError",
    "Signature",
    "SqlError",
    "SqlType",
    "UserError",
    "open",
]
__version__ = "0.1.0"

# Procedure log lines also go to the "heliosdb_wasm.procedure" logger; as a
# library we leave their display to the application's logging configuration.
logging.getLogger("heliosdb_wasm").addHandler(logging.NullHandler())
