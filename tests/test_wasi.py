"""Deny-by-default WASI: what language runtimes need (stdio, clocks, random)
works; environment, arguments and files do not exist."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import wasmtime

import heliosdb_wasm as h
from conftest import Register, b64, wasm_of


def test_reactor_initializer_runs_before_calls(db: h.Database, register: Register) -> None:
    register("initialized", "() RETURNS BIGINT", "wasi_guest")
    assert db.execute("SELECT initialized()").scalar() == 1


def test_stdout_and_stderr_become_log_lines(db: h.Database, register: Register) -> None:
    register("print", "() RETURNS BIGINT", "wasi_guest", caps=("stdout",))
    db.execute("SELECT print()")
    lines = [(r.level, r.message) for r in db.logs("print")]
    assert lines == [
        ("info", "hello from stdout"),
        ("warn", "oops on stderr"),
        # Output without a final newline is flushed when the call ends.
        ("info", "second line, no newline"),
    ]


def test_without_the_stdout_capability_output_is_dropped(
    db: h.Database, register: Register
) -> None:
    register("print", "() RETURNS BIGINT", "wasi_guest")
    assert db.execute("SELECT print()").scalar() == 0
    assert db.logs("print") == []


def test_output_and_log_calls_keep_their_order(db: h.Database, register: Register) -> None:
    register("interleaved", "() RETURNS BIGINT", "wasi_guest", caps=("stdout",))
    db.execute("SELECT interleaved()")
    assert [r.message for r in db.logs("interleaved")] == ["first", "second", "third"]


def test_a_sleep_returns_its_clock_event(db: h.Database, register: Register) -> None:
    register("sleep_ms", "(ms BIGINT) RETURNS BIGINT", "wasi_guest")
    started = time.monotonic()
    assert db.execute("SELECT sleep_ms(20)").scalar() == 71
    assert time.monotonic() - started >= 0.02


def test_a_sleep_cannot_outlast_the_timeout(db: h.Database, register: Register) -> None:
    """wasmtime would sleep on the calling thread, where no epoch reaches:
    the engine's poll_oneoff cuts the wait at the call's deadline."""
    register(
        "sleep_ms",
        "(ms BIGINT) RETURNS BIGINT",
        "wasi_guest",
        extra="WITH (timeout_seconds = 0.3)",
    )
    started = time.monotonic()
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT sleep_ms(60000)")
    assert err.value.limit == "timeout"
    assert time.monotonic() - started < 5
    # A fresh instance sleeps as short as it asks.
    assert db.execute("SELECT sleep_ms(1)").scalar() == 71


def test_output_counts_against_the_log_limit(db: h.Database, register: Register) -> None:
    register(
        "print",
        "() RETURNS BIGINT",
        "wasi_guest",
        caps=("stdout",),
        extra="WITH (max_log_bytes = 20)",
    )
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT print()")
    assert err.value.limit == "max_log_bytes" and "20" in str(err.value)


def test_env_grants_exactly_the_named_variables(
    db: h.Database, register: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELIOSDB_GRANTED", "yes")
    monkeypatch.setenv("HELIOSDB_SECRET", "no")
    register(
        "env_and_args",
        "() RETURNS BIGINT",
        "wasi_guest",
        caps=("env:HELIOSDB_GRANTED", "env:HELIOSDB_NOT_SET"),
    )
    assert db.execute("SELECT env_and_args()").scalar() == 1


def test_filesystem_grants_one_folder_read_only_or_read_write(
    db: h.Database, register: Register, tmp_path: Path
) -> None:
    (tmp_path / "hello.txt").write_text("hi there")
    register("read_hello", "() RETURNS BIGINT", "wasi_guest", caps=(f"filesystem:{tmp_path}",))
    register("write_hello", "() RETURNS BIGINT", "wasi_guest", caps=(f"filesystem:{tmp_path}",))
    assert db.execute("SELECT read_hello()").scalar() == len("hi there")
    assert db.execute("SELECT write_hello()").scalar() < 0  # read-only: refused
    assert (tmp_path / "hello.txt").read_text() == "hi there"
    db.execute(
        "CREATE OR REPLACE PROCEDURE write_hello() RETURNS BIGINT LANGUAGE wasm"
        f" CAPABILITIES ('filesystem:{tmp_path}:rw')"
        f" AS $wasm${b64(wasm_of('wasi_guest'))}$wasm$"
    )
    assert db.execute("SELECT write_hello()").scalar() == 0
    assert (tmp_path / "hello.txt").read_text() == "written by wasm"


def test_a_missing_folder_is_refused_at_registration(
    db: h.Database, register: Register, tmp_path: Path
) -> None:
    with pytest.raises(h.InvalidArgument, match="no such folder"):
        register(
            "read_hello",
            "() RETURNS BIGINT",
            "wasi_guest",
            caps=(f"filesystem:{tmp_path / 'absent'}",),
        )
    assert db.procedures() == []


def test_without_random_the_stream_is_fixed(db: h.Database, register: Register) -> None:
    register("fixed", "() RETURNS BIGINT", "wasi_guest", export="random_u64")
    register("real", "() RETURNS BIGINT", "wasi_guest", export="random_u64", caps=("random",))
    first = db.execute("SELECT fixed()").scalar()
    # A fresh database (fresh instances) gets the same "random" bytes again...
    with h.Database.open(":memory:") as other:
        other.execute(
            "CREATE PROCEDURE fixed() RETURNS BIGINT LANGUAGE wasm USING EXPORT 'random_u64'"
            f" AS $wasm${b64(wasm_of('wasi_guest'))}$wasm$"
        )
        assert other.execute("SELECT fixed()").scalar() == first
    # ...while the OS's randomness does not repeat.
    assert len({db.execute("SELECT real()").scalar() for _ in range(3)}) == 3


def test_no_environment_arguments_or_files(db: h.Database, register: Register) -> None:
    register("env_and_args", "() RETURNS BIGINT", "wasi_guest")
    register("preopen_errno", "() RETURNS BIGINT", "wasi_guest")
    register("open_errno", "() RETURNS BIGINT", "wasi_guest")
    register("random_and_clock", "() RETURNS BIGINT", "wasi_guest")
    assert db.execute("SELECT env_and_args()").scalar() == 0
    assert db.execute("SELECT preopen_errno()").scalar() == 8  # EBADF
    assert db.execute("SELECT open_errno()").scalar() == 8
    assert db.execute("SELECT random_and_clock()").scalar() == 0


def test_unknown_wasi_functions_are_refused(db: h.Database) -> None:
    wasm = wasmtime.wat2wasm(
        '(module (import "wasi_snapshot_preview1" "fd_teleport" (func))'
        ' (func (export "f") (result i64) i64.const 1))'
    )
    with pytest.raises(h.AbiError) as err:
        db.execute(f"CREATE PROCEDURE f() RETURNS BIGINT LANGUAGE wasm AS $wasm${b64(wasm)}$wasm$")
    assert "wasi_snapshot_preview1.fd_teleport" in str(err.value)


def test_mistyped_wasi_imports_are_refused_at_registration(db: h.Database) -> None:
    wasm = wasmtime.wat2wasm(
        '(module (import "wasi_snapshot_preview1" "fd_write" (func (param i64)))'
        ' (func (export "f") (result i64) i64.const 1))'
    )
    with pytest.raises(h.AbiError) as err:
        db.execute(f"CREATE PROCEDURE f() RETURNS BIGINT LANGUAGE wasm AS $wasm${b64(wasm)}$wasm$")
    assert "fd_write" in str(err.value)
    assert db.procedures() == []
