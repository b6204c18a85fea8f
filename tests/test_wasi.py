"""Deny-by-default WASI: what language runtimes need (stdio, clocks, random)
works; environment, arguments and files do not exist."""

from __future__ import annotations

import pytest
import wasmtime

import heliosdb_wasm as h
from conftest import Register, b64
from heliosdb_wasm.wasi import GuestOutput


def test_reactor_initializer_runs_before_calls(db: h.Database, register: Register) -> None:
    register("initialized", "() RETURNS BIGINT", "wasi_guest")
    assert db.execute("SELECT initialized()").scalar() == 1


def test_stdout_and_stderr_become_log_lines(db: h.Database, register: Register) -> None:
    register("print", "() RETURNS BIGINT", "wasi_guest")
    db.execute("SELECT print()")
    lines = [(r.level, r.message) for r in db.logs("print")]
    assert lines == [
        ("info", "hello from stdout"),
        ("warn", "oops on stderr"),
        # Output without a final newline is flushed when the call ends.
        ("info", "second line, no newline"),
    ]


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


class Sink:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def log(self, level: str, message: str) -> None:
        self.lines.append((level, message))


def test_guest_output_buffers_lines_and_caps_their_length() -> None:
    out = GuestOutput()
    out.writer("info")(b"before the call\n")  # e.g. from _initialize
    sink = Sink()
    out.begin(sink)
    write = out.writer("info")
    write(b"par")
    write(b"tial\r\nnext")
    write(b"x" * 20000)
    out.end()
    assert sink.lines[0] == ("info", "before the call")
    assert sink.lines[1] == ("info", "partial")
    assert all(len(m) <= 8192 for _, m in sink.lines)
    assert "".join(m for _, m in sink.lines[2:]) == "next" + "x" * 20000
