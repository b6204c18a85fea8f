"""Hostile input: modules and arguments built to break the host.

Every case must end in a typed error (a ProcedureError with the expected
code) while the host process lives on, the database stays intact (integrity
check, unchanged row counts, unchanged registry) and a well-behaved procedure
registered beforehand keeps answering correctly. docs/security.md lists what
each case proves.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import wasmtime

import heliosdb_wasm as h
from conftest import TEST_LIMITS, b64, registry_snapshot, wasm_of
from heliosdb_wasm import policy
from heliosdb_wasm.abi_basic import HOST_IMPORTS

TABLES = ("items", "secrets", "ledger")


@dataclass
class Fortress:
    """A database with data, a grant-less secret, and one healthy procedure."""

    db: h.Database

    def create(self, name: str, signature: str, wasm: bytes, clauses: str = "") -> None:
        self.db.execute(
            f"CREATE PROCEDURE {name}{signature} LANGUAGE wasm {clauses} AS $wasm${b64(wasm)}$wasm$"
        )

    def counts(self) -> dict[str, int]:
        return {t: int(self.db.execute(f"SELECT count(*) FROM {t}").scalar() or 0) for t in TABLES}

    def intact(self, counts: dict[str, int], registry: list[tuple[object, ...]]) -> None:
        assert self.db.execute("PRAGMA integrity_check").scalar() == "ok"
        assert self.counts() == counts
        assert registry_snapshot(self.db) == registry
        assert self.db.execute("SELECT healthy(40, 2)").scalar() == 42
        assert self.db.execute("SELECT sum(balance) FROM ledger").scalar() == 300


@pytest.fixture
def fortress() -> Iterator[Fortress]:
    with h.Database.open(":memory:", limits=TEST_LIMITS) as db:
        db.execute(
            "CREATE TABLE items(id INTEGER PRIMARY KEY, label TEXT);"
            "INSERT INTO items(id, label) VALUES (1, 'apple'), (2, 'pear');"
            "CREATE TABLE secrets(x TEXT); INSERT INTO secrets VALUES ('s3cr3t');"
            "CREATE TABLE ledger(id INTEGER PRIMARY KEY, balance INTEGER);"
            "INSERT INTO ledger VALUES (1, 100), (2, 200);"
            "CREATE VIEW v_secrets AS SELECT x FROM secrets;"
        )
        f = Fortress(db)
        f.create(
            "healthy",
            "(a BIGINT, b BIGINT) RETURNS BIGINT",
            wasm_of("numeric"),
            "USING EXPORT 'add_i64'",
        )
        yield f


def attack(
    f: Fortress, code: str, run: Callable[[], object], *, registers: bool = False
) -> h.ProcedureError:
    """Run ``run`` expecting a typed error ``code``; then check nothing broke.
    ``registers``: the attack registers a procedure first (the registry may grow
    by it); otherwise the registry must be unchanged."""
    counts, registry = f.counts(), registry_snapshot(f.db)
    with pytest.raises(h.ProcedureError) as err:
        run()
    assert err.value.code == code, err.value
    f.intact(counts, registry_snapshot(f.db) if registers else registry)
    return err.value


# --- runaway guests -----------------------------------------------------------------


def test_infinite_loop_in_the_export(fortress: Fortress) -> None:
    fortress.create("spin", "() RETURNS BIGINT", wasm_of("limits"))
    err = attack(
        fortress, "limit-exceeded", lambda: fortress.db.execute("SELECT spin()"), registers=True
    )
    assert isinstance(err, h.ResourceLimitExceeded) and err.limit == "fuel"
    fortress.create(
        "spin_forever",
        "() RETURNS BIGINT",
        wasm_of("limits"),
        "USING EXPORT 'spin' WITH (fuel = 100000000000, timeout_seconds = 0.5)",
    )
    err = attack(
        fortress,
        "limit-exceeded",
        lambda: fortress.db.execute("SELECT spin_forever()"),
        registers=True,
    )
    assert isinstance(err, h.ResourceLimitExceeded) and err.limit == "timeout"


def test_infinite_loop_in_a_start_function(fortress: Fortress) -> None:
    attack(
        fortress,
        "limit-exceeded",
        lambda: fortress.create("f", "() RETURNS BIGINT", wasm_of("start_loop")),
    )


def test_memory_bomb(fortress: Fortress) -> None:
    fortress.create(
        "bomb", "(pages INTEGER) RETURNS BIGINT", wasm_of("limits"), "USING EXPORT 'grow_and_use'"
    )
    err = attack(
        fortress,
        "limit-exceeded",
        lambda: fortress.db.execute("SELECT bomb(100000)"),
        registers=True,
    )
    assert isinstance(err, h.ResourceLimitExceeded) and err.limit == "memory"


def test_deep_recursion(fortress: Fortress) -> None:
    fortress.create("recurse", "(n BIGINT) RETURNS BIGINT", wasm_of("limits"))
    err = attack(
        fortress,
        "limit-exceeded",
        lambda: fortress.db.execute("SELECT recurse(1000000000)"),
        registers=True,
    )
    assert isinstance(err, h.ResourceLimitExceeded) and err.limit == "stack"


# --- the ABI boundary ---------------------------------------------------------------


def _abuse(name: str, args: list[int]) -> bytes:
    """A module calling host import ``name`` with ``args`` (i32s), nothing else."""
    params, results = HOST_IMPORTS[name]
    decl = " ".join(f"(param {p})" for p in params) + " ".join(f" (result {r})" for r in results)
    consts = " ".join(
        f"({p}.const {a})" for p, a in zip(params, args + [0] * len(params), strict=False)
    )
    drop = "drop" if results else ""
    return wasmtime.wat2wasm(f"""
      (module
        (import "heliosdb" "{name}" (func $h {decl}))
        (memory (export "memory") 1)
        (func (export "heliosdb_abi_version") (result i32) i32.const 1)
        (func (export "heliosdb_alloc") (param i32 i32) (result i32) i32.const 1024)
        (func (export "heliosdb_free") (param i32 i32 i32))
        (func (export "go") (result i64) {consts} call $h {drop} i64.const 0))""")


# (ptr, len) pairs that leave linear memory: past the end, and wrapping around 2^32.
_BAD_BUFFERS = [(65530, 100), (-16, 64)]


def _pointer_cases() -> list[tuple[str, list[int]]]:
    cases = []
    for name, (params, _) in HOST_IMPORTS.items():
        n = len(params)
        if n < 2 or name in ("heliosdb_get_param",):
            continue
        for ptr, length in _BAD_BUFFERS:
            # The first (ptr, len) pair of every import that takes one.
            args = [ptr, length] if name != "heliosdb_log" else [2, ptr, length]
            if name == "heliosdb_return":
                args = [3, ptr, length]
            cases.append((name, args + [0] * (n - len(args))))
    return cases


@pytest.mark.parametrize(("name", "args"), _pointer_cases(), ids=lambda x: str(x))
def test_out_of_bounds_and_overflowing_buffers_in_every_host_call(
    fortress: Fortress, name: str, args: list[int]
) -> None:
    fortress.create("go", "() RETURNS BIGINT", _abuse(name, args))
    attack(fortress, "abi-error", lambda: fortress.db.execute("SELECT go()"), registers=True)


def test_out_of_bounds_out_areas(fortress: Fortress) -> None:
    # A valid query whose result pointer lands outside memory.
    wasm = wasmtime.wat2wasm("""
      (module
        (import "heliosdb" "heliosdb_query" (func $q (param i32 i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 0) "SELECT 1")
        (func (export "heliosdb_abi_version") (result i32) i32.const 1)
        (func (export "heliosdb_alloc") (param i32 i32) (result i32) i32.const 1024)
        (func (export "heliosdb_free") (param i32 i32 i32))
        (func (export "go") (result i64)
          (drop (call $q (i32.const 0) (i32.const 8) (i32.const 0) (i32.const 0) (i32.const 65534)))
          i64.const 0))""")
    fortress.create("go", "() RETURNS BIGINT", wasm)
    attack(fortress, "abi-error", lambda: fortress.db.execute("SELECT go()"), registers=True)


def test_invalid_utf8(fortress: Fortress) -> None:
    wasm = wasmtime.wat2wasm("""
      (module
        (import "heliosdb" "heliosdb_log" (func $log (param i32 i32 i32)))
        (memory (export "memory") 1)
        (data (i32.const 0) "\\ff\\fe\\c3")
        (func (export "heliosdb_abi_version") (result i32) i32.const 1)
        (func (export "go") (result i64) (call $log (i32.const 2) (i32.const 0) (i32.const 3))
          i64.const 0))""")
    fortress.create("go", "() RETURNS BIGINT", wasm)
    err = attack(fortress, "abi-error", lambda: fortress.db.execute("SELECT go()"), registers=True)
    assert "UTF-8" in str(err)


@pytest.mark.parametrize("fixture", ["bad_alloc_garbage", "bad_alloc_trap"])
def test_a_guest_allocator_returning_garbage_or_trapping(fortress: Fortress, fixture: str) -> None:
    fortress.create("echo", "(s TEXT) RETURNS TEXT", wasm_of(fixture), "USING EXPORT 'echo_text'")
    err = attack(
        fortress,
        "abi-error" if fixture == "bad_alloc_garbage" else "trap",
        lambda: fortress.db.execute("SELECT echo('some text')"),
        registers=True,
    )
    assert err.procedure == "echo"


def test_huge_return_values(fortress: Fortress) -> None:
    fortress.create(
        "big_text",
        "(n BIGINT) RETURNS TEXT",
        wasm_of("capabilities"),
        "WITH (max_result_bytes = 65536)",
    )
    err = attack(
        fortress,
        "limit-exceeded",
        lambda: fortress.db.execute("SELECT big_text(100000)"),
        registers=True,
    )
    assert isinstance(err, h.ResourceLimitExceeded) and err.limit == "max_result_bytes"
    # Claiming 2 GiB of a 128 KiB memory is an ABI violation, not an allocation.
    attack(
        fortress,
        "abi-error",
        lambda: fortress.db.execute("SELECT big_text(2147483647)"),
        registers=True,
    )


@pytest.mark.parametrize(
    "fixture", ["bad_unknown_import", "bad_import_type", "bad_foreign_import", "bad_version"]
)
def test_unknown_or_mistyped_imports(fortress: Fortress, fixture: str) -> None:
    attack(
        fortress, "abi-error", lambda: fortress.create("f", "() RETURNS BIGINT", wasm_of(fixture))
    )


@pytest.mark.parametrize(
    ("what", "wasm"),
    [
        ("garbage", b"\x00asm\x01\x00\x00\x00\xff\xff\xff\xff garbage"),
        ("truncated", None),
        ("no header", b"#!/bin/sh\nrm -rf /\n"),
        ("empty", b""),
    ],
)
def test_malformed_and_truncated_binaries(
    fortress: Fortress, what: str, wasm: bytes | None
) -> None:
    data = wasm if wasm is not None else wasm_of("numeric")[:-7]
    err = attack(
        fortress,
        "abi-error" if data[:4] == b"\x00asm" else "syntax-error",
        lambda: fortress.db.execute(
            "CREATE PROCEDURE f() RETURNS BIGINT LANGUAGE wasm"
            f" AS $wasm${b64(data) if data else 'AA=='}$wasm$"
        ),
    )
    assert err.code in ("abi-error", "syntax-error")


def test_oversized_binaries(fortress: Fortress, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy, "MAX_MODULE_BYTES", 1000)
    padded = wasm_of("numeric") + b"\x00" * 2000  # (never parsed: refused by size)
    err = attack(
        fortress, "limit-exceeded", lambda: fortress.create("f", "() RETURNS BIGINT", padded)
    )
    assert isinstance(err, h.ResourceLimitExceeded) and err.limit == "module_bytes"


def _component(tmp_path: Path, wat: str) -> bytes:
    from shutil import which

    tool = which("wasm-tools")
    assert tool is not None, "wasm-tools is part of the engine's dev extra"
    (tmp_path / "c.wat").write_text(wat)
    subprocess.run(
        [tool, "parse", str(tmp_path / "c.wat"), "-o", str(tmp_path / "c.wasm")], check=True
    )
    return (tmp_path / "c.wasm").read_bytes()


@pytest.mark.parametrize(
    "wat",
    [
        # imports an interface the engine does not provide
        '(component (import "evil:backdoor/shell@1.0.0" (instance))'
        ' (core module $m (func (export "f") (result i64) i64.const 1))'
        " (core instance $i (instantiate $m))"
        ' (func (export "f") (result s64) (canon lift (core func $i "f"))))',
        # exports nothing callable
        "(component)",
        # a host API import under the right name with the wrong shape
        '(component (import "heliosdb:procedures/host@0.1.0" (instance'
        ' (export "now" (func (result string))))))',
    ],
    ids=["foreign import", "no exports", "host API of the wrong shape"],
)
def test_components_with_unexpected_worlds(fortress: Fortress, tmp_path: Path, wat: str) -> None:
    attack(
        fortress,
        "abi-error",
        lambda: fortress.db.execute(
            f"CREATE PROCEDURE f LANGUAGE wasm AS $wasm${b64(_component(tmp_path, wat))}$wasm$"
        ),
    )


# --- SQL through the host API -------------------------------------------------------


def test_sql_injection_through_parameters(fortress: Fortress) -> None:
    fortress.create(
        "count_label",
        "(label TEXT) RETURNS BIGINT",
        wasm_of("host"),
        "CAPABILITIES ('read:items') USING EXPORT 'query_param_text'",
    )
    counts, registry = fortress.counts(), registry_snapshot(fortress.db)
    for evil in ["x' OR '1'='1", "'; DROP TABLE items; --", "apple' --", "\x00apple"]:
        assert fortress.db.execute("SELECT count_label(?)", [evil]).scalar() == 0
    assert fortress.db.execute("SELECT count_label('apple')").scalar() == 1
    fortress.intact(counts, registry)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM secrets",
        "SELECT count(*) FROM v_secrets",  # a view over the secret
        "SELECT count(*) FROM items JOIN secrets",
        "SELECT count(*) FROM items WHERE label IN (SELECT x FROM secrets)",
        "WITH s AS (SELECT x FROM secrets) SELECT count(*) FROM s",
        "SELECT count(*) FROM sqlite_master",
        "SELECT count(*) FROM pragma_table_info('secrets')",
        "PRAGMA table_info(secrets)",
        "ATTACH DATABASE ':memory:' AS other",
        "SELECT load_extension('/tmp/evil.so')",
        "SELECT count(*) FROM _heliosdb_modules",
        "INSERT INTO items(label) VALUES ('smuggled') RETURNING id",
        "DELETE FROM ledger RETURNING id",
        "CREATE TABLE loot AS SELECT * FROM items",
        "BEGIN",
        "SAVEPOINT sneaky",
    ],
)
def test_tables_outside_the_grant_stay_out_of_reach(fortress: Fortress, sql: str) -> None:
    fortress.create(
        "run_sql",
        "(sql TEXT) RETURNS BIGINT",
        wasm_of("capabilities"),
        "CAPABILITIES ('read:items')",
    )
    counts, registry = fortress.counts(), registry_snapshot(fortress.db)
    access_denied = -1
    assert fortress.db.execute("SELECT run_sql(?)", [sql]).scalar() == access_denied
    fortress.intact(counts, registry)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM sqlite_master",
        "SELECT count(*) FROM sqlite_schema",
        "SELECT count(*) FROM _heliosdb_modules",
        "SELECT count(*) FROM _heliosdb_log",
        "PRAGMA writable_schema = 1",
    ],
)
def test_the_wildcard_covers_user_tables_only(fortress: Fortress, sql: str) -> None:
    fortress.create(
        "run_sql", "(sql TEXT) RETURNS BIGINT", wasm_of("capabilities"), "CAPABILITIES ('read:*')"
    )
    counts, registry = fortress.counts(), registry_snapshot(fortress.db)
    assert fortress.db.execute("SELECT run_sql('SELECT count(*) FROM secrets')").scalar() == 1
    assert fortress.db.execute("SELECT run_sql(?)", [sql]).scalar() == -1  # access-denied
    fortress.intact(counts, registry)


def test_a_trigger_cannot_launder_a_write(fortress: Fortress) -> None:
    # The procedure may write items; a trigger on items writes the ledger.
    fortress.db.execute(
        "CREATE TRIGGER skim AFTER INSERT ON items BEGIN"
        " UPDATE ledger SET balance = balance - 1 WHERE id = 1; END"
    )
    fortress.create(
        "run_sql",
        "(sql TEXT) RETURNS BIGINT",
        wasm_of("capabilities"),
        "CAPABILITIES ('write:items', 'read:items')",
    )
    counts, registry = fortress.counts(), registry_snapshot(fortress.db)
    sql = "INSERT INTO items(label) VALUES ('x') RETURNING id"
    assert fortress.db.execute("SELECT run_sql(?)", [sql]).scalar() == -1
    fortress.intact(counts, registry)


def test_reentrancy_loops_end_at_the_depth_limit(fortress: Fortress) -> None:
    fortress.create(
        "loop",
        "(sql TEXT) RETURNS BIGINT",
        wasm_of("capabilities"),
        "CAPABILITIES ('call:loop') USING EXPORT 'run_sql'",
    )
    counts, registry = fortress.counts(), registry_snapshot(fortress.db)
    # loop -> SELECT loop(...) -> loop -> ...: each level sees the one below fail.
    sql = "SELECT loop('SELECT loop(''SELECT loop(''''SELECT 1'''')'')')"
    assert fortress.db.execute("SELECT loop(?)", [sql]).scalar() == 1
    with h.Database.open(":memory:", limits=h.Limits(max_call_depth=2)) as shallow:
        shallow.execute(
            "CREATE PROCEDURE loop(sql TEXT) RETURNS BIGINT LANGUAGE wasm"
            " CAPABILITIES ('call:loop') USING EXPORT 'run_sql'"
            f" AS $wasm${b64(wasm_of('capabilities'))}$wasm$"
        )
        limit_exceeded = -4
        assert shallow.execute("SELECT loop(?)", [sql]).scalar() == limit_exceeded
    fortress.intact(counts, registry)


def test_commit_without_begin_and_a_trap_inside_a_transaction(fortress: Fortress) -> None:
    fortress.create(
        "commit_without_begin", "() RETURNS BIGINT", wasm_of("host"), "CAPABILITIES ('transaction')"
    )
    counts, registry = fortress.counts(), registry_snapshot(fortress.db)
    invalid_argument = 5
    assert fortress.db.execute("SELECT commit_without_begin()").scalar() == invalid_argument
    fortress.intact(counts, registry)
    fortress.db.execute("CREATE TABLE t_items(id INTEGER PRIMARY KEY, label TEXT)")
    fortress.create(
        "tx_left_open",
        "(id BIGINT) RETURNS BIGINT",
        wasm_of("host"),
        "CAPABILITIES ('transaction', 'write:items')",
    )
    fortress.create(
        "insert_then_trap",
        "(id BIGINT) RETURNS BIGINT",
        wasm_of("host"),
        "CAPABILITIES ('write:items')",
    )
    attack(
        fortress,
        "invalid-argument",
        lambda: fortress.db.execute("SELECT tx_left_open(77)"),
        registers=True,
    )
    fortress.db.execute("BEGIN")
    attack(
        fortress, "trap", lambda: fortress.db.execute("SELECT insert_then_trap(78)"), registers=True
    )
    fortress.db.execute("COMMIT")
    assert fortress.db.execute("SELECT count(*) FROM items WHERE id IN (77, 78)").scalar() == 0


def test_the_wasm_stack_is_a_runtime_setting() -> None:
    from heliosdb_wasm.runtime import Runtime

    depth = wasmtime.wat2wasm("""
      (module (func $r (export "depth") (param $n i64) (result i64)
        (if (result i64) (i64.eqz (local.get $n))
          (then (i64.const 0))
          (else (i64.add (call $r (i64.sub (local.get $n) (i64.const 1))) (i64.const 1))))))""")

    def recurse(runtime: Runtime | None, n: int) -> object:
        with h.Database.open(":memory:", runtime=runtime, limits=TEST_LIMITS) as db:
            db.execute(
                "CREATE PROCEDURE depth(n BIGINT) RETURNS BIGINT LANGUAGE wasm"
                f" AS $wasm${b64(depth)}$wasm$"
            )
            return db.execute("SELECT depth(?)", [n]).scalar()

    assert recurse(None, 2000) == 2000  # the default stack holds 2000 frames...
    with pytest.raises(h.ResourceLimitExceeded) as err:
        recurse(Runtime(max_wasm_stack=16 * 1024), 2000)  # ...a 16 KiB one does not
    assert err.value.limit == "stack"
