"""The core's capability authorizer (engine/core/src/policy.rs), which
guards every statement a procedure runs, decides exactly as the rules of
docs/security.md say, written out here a second time in Python as the
oracle: the same answer and the same denied grant for generated statements
(sequences of authorizer actions) under generated grants."""

from __future__ import annotations

from collections.abc import Callable

import apsw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heliosdb_wasm import _core
from heliosdb_wasm.policy import REGISTRY_PREFIX, Capabilities

OK, DENY = int(apsw.SQLITE_OK), int(apsw.SQLITE_DENY)
A = apsw
WRITES = {A.SQLITE_INSERT, A.SQLITE_UPDATE, A.SQLITE_DELETE}
CREATES = {getattr(A, n) for n in dir(A) if n.startswith("SQLITE_CREATE_")}
DDL = CREATES | {getattr(A, n) for n in dir(A) if n.startswith("SQLITE_DROP_")}
DDL |= {A.SQLITE_ALTER_TABLE, A.SQLITE_REINDEX, A.SQLITE_ANALYZE}
TRIGGERS = {
    A.SQLITE_CREATE_TRIGGER,
    A.SQLITE_CREATE_TEMP_TRIGGER,
    A.SQLITE_DROP_TRIGGER,
    A.SQLITE_DROP_TEMP_TRIGGER,
}
INDEX_LIKE = {
    A.SQLITE_CREATE_INDEX,
    A.SQLITE_DROP_INDEX,
    A.SQLITE_CREATE_TEMP_INDEX,
    A.SQLITE_DROP_TEMP_INDEX,
} | TRIGGERS
ALWAYS = {
    A.SQLITE_ATTACH: "ATTACH",
    A.SQLITE_DETACH: "DETACH",
    A.SQLITE_PRAGMA: "PRAGMA",
    A.SQLITE_TRANSACTION: "transaction statements (use begin-tx/commit-tx)",
    A.SQLITE_SAVEPOINT: "SAVEPOINT (use begin-tx/commit-tx)",
}
SCHEMA = {"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"}


def oracle(
    caps: Capabilities, read_only: bool, is_procedure: Callable[[str], bool], denied: list[str]
) -> Callable[[int, str | None, str | None], int]:
    ddl_tables: set[str] = set()

    def deny(what: str) -> int:
        denied.append(what)
        return DENY

    def authorize(action: int, p1: str | None, p2: str | None) -> int:
        if action == A.SQLITE_READ:
            table = (p1 or "").lower()
            if table in ddl_tables or (ddl_tables and table in SCHEMA):
                return OK
            if p1 and not caps.allows("read", p1):
                return deny(f"read:{p1}")
        elif action in WRITES:
            table = (p1 or "").lower()
            if table in SCHEMA:
                return OK
            if read_only:
                return deny(
                    f"write:{p1} (the calling statement is itself writing, so this call is "
                    "read-only; call the procedure from SELECT or CALL)"
                )
            if table not in ddl_tables and p1 and not caps.allows("write", p1):
                return deny(f"write:{p1}")
        elif action in TRIGGERS and action in CREATES:
            return deny("CREATE TRIGGER (procedures may not create triggers)")
        elif action == A.SQLITE_REINDEX and ddl_tables:
            pass
        elif action in DDL:
            target = p2 if action in INDEX_LIKE or action == A.SQLITE_ALTER_TABLE else p1
            if read_only or not target or not caps.allows("ddl", target):
                return deny(f"ddl:{target}")
            ddl_tables.add(target.lower())
        elif action in ALWAYS:
            return deny(ALWAYS[action])
        elif action == A.SQLITE_FUNCTION:
            name = (p2 or "").lower()
            if name == "load_extension":
                return deny("load_extension")
            if is_procedure(name) and not caps.allows("call", name):
                return deny(f"call:{name}")
        return OK

    return authorize


NAMES = ["t", "T", "u", "sqlite_master", "sqlite_stat1", f"{REGISTRY_PREFIX}versions", "proc", ""]
names = st.one_of(st.none(), st.sampled_from(NAMES))
actions = st.tuples(st.integers(0, 34), names, names)
grants = st.lists(
    st.sampled_from(
        ["read:t", "read:*", "write:t", "write:*", "ddl:t", "ddl:u", "call:proc", "transaction"]
    ),
    max_size=4,
)


@settings(
    max_examples=600, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(grants, st.booleans(), st.lists(actions, min_size=1, max_size=8))
def test_the_core_decides_as_the_rules_say(
    granted: list[str], read_only: bool, statement: list[tuple[int, str | None, str | None]]
) -> None:
    caps = Capabilities.parse(granted)
    procs = {"proc"}
    denied: list[str] = []
    expected = oracle(caps, read_only, procs.__contains__, denied)
    core = _core.Authorizer(_core.Grants(sorted(caps.grants)), read_only, procs.__contains__)
    for action, p1, p2 in statement:
        assert core(action, p1, p2, "main", None) == expected(action, p1, p2), (action, p1, p2)
    assert core.denied == denied


def test_a_failing_procedure_check_denies() -> None:
    def broken(name: str) -> bool:
        raise RuntimeError("registry unavailable")

    core = _core.Authorizer(_core.Grants([]), False, broken)
    assert core(A.SQLITE_FUNCTION, None, "anything", "main", None) == DENY
    assert core.denied == ["call:anything"]
