"""The on-disk compiled-code cache of components (wasmtime-py's engine; core
modules are the Rust core's, tested in engine/core/src/cache.rs): reused
across runtimes, damage detected and rebuilt."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

import heliosdb_wasm as h
from conftest import b64, make_component, wasm_of
from heliosdb_wasm.registry import Registry, sha256_hex
from heliosdb_wasm.runtime import DiskCache, Runtime

ADD = "(a BIGINT, b BIGINT) RETURNS BIGINT"


@pytest.fixture(scope="module")
def component(wasm_tools: str, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_component(wasm_tools, "component_math", "math", tmp_path_factory.mktemp("c"))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("HELIOSDB_WASM_CACHE", str(folder))
    return folder


class Source:
    """Module bytes that count how often they are read."""

    def __init__(self, wasm: bytes) -> None:
        self.wasm = wasm
        self.reads = 0

    def __call__(self) -> bytes:
        self.reads += 1
        return self.wasm


def _entry(cache: Path) -> tuple[Path, Path]:
    (cwasm,) = cache.glob("component-*.cwasm")
    return cwasm, cwasm.with_suffix(".sum")


def test_second_runtime_maps_the_cached_code_without_reading_the_component(
    cache: Path, component: bytes
) -> None:
    wasm = component
    digest = sha256_hex(wasm)
    first = Source(wasm)
    Runtime().component(digest, first)
    cwasm, summary = _entry(cache)
    size, crc = (int(x) for x in summary.read_text().split())
    assert (size, crc) == (cwasm.stat().st_size, zlib.crc32(cwasm.read_bytes()))
    again = Source(wasm)
    loaded = Runtime().component(digest, again)
    assert (first.reads, again.reads) == (1, 0)
    assert "add" in loaded.type.exports(Runtime().engine)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(
            lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), id="truncated"
        ),
        pytest.param(
            lambda p: p.write_bytes(bytes([p.read_bytes()[0] ^ 1]) + p.read_bytes()[1:]),
            id="bit-flip",
        ),
        pytest.param(lambda p: p.with_suffix(".sum").write_text("garbage"), id="bad-summary"),
        pytest.param(lambda p: p.with_suffix(".sum").unlink(), id="missing-summary"),
    ],
)
def test_damaged_entries_are_detected_and_rebuilt(
    cache: Path, component: bytes, damage: object
) -> None:
    wasm = component
    digest = sha256_hex(wasm)
    Runtime().component(digest, wasm)
    cwasm, summary = _entry(cache)
    pristine = cwasm.read_bytes()
    damage(cwasm)  # type: ignore[operator]
    source = Source(wasm)
    loaded = Runtime().component(digest, source)
    assert source.reads == 1  # recompiled from the component's bytes
    assert "add" in loaded.type.exports(Runtime().engine)
    assert cwasm.read_bytes() == pristine
    assert summary.read_text().split() == [str(len(pristine)), str(zlib.crc32(pristine))]


def test_an_entry_wasmtime_refuses_is_discarded_and_rebuilt(cache: Path, component: bytes) -> None:
    # Intact as far as the checksum goes, but not code this engine made: the
    # way a cache written by another wasmtime build or configuration looks.
    wasm = component
    digest = sha256_hex(wasm)
    Runtime().component(digest, wasm)
    cwasm, summary = _entry(cache)
    foreign = b"\x7fELF" + b"\0" * 4096
    cwasm.write_bytes(foreign)
    summary.write_text(f"{len(foreign)} {zlib.crc32(foreign)}\n")
    source = Source(wasm)
    Runtime().component(digest, source)
    assert source.reads == 1
    assert cwasm.read_bytes() != foreign


def test_cache_off_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, component: bytes
) -> None:
    monkeypatch.setenv("HELIOSDB_WASM_CACHE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    runtime = Runtime()
    assert runtime.disk_cache is None
    runtime.component(sha256_hex(component), component)
    assert list(tmp_path.iterdir()) == []


def test_reopened_database_calls_from_the_cache_without_reading_the_registry_blob(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.db"
    with h.Database.open(path, runtime=Runtime()) as db:
        db.execute(
            f"CREATE PROCEDURE calc{ADD} LANGUAGE wasm USING EXPORT 'add_i64'"
            f" AS $wasm${b64(wasm_of('numeric'))}$wasm$"
        )

    def unreadable(self: Registry, sha256: str) -> bytes:
        raise AssertionError("module bytes read although the compiled code is cached")

    monkeypatch.setattr(Registry, "module_bytes", unreadable)
    with h.Database.open(path, runtime=Runtime()) as db:
        assert db.execute("SELECT calc(40, 2)").rows == [(42,)]


def test_the_cache_stays_under_its_size_cap_dropping_least_recently_used(cache: Path) -> None:
    disk = DiskCache(cache, "fp", max_bytes=3500)
    cache.mkdir()
    for key in ("a", "b", "c"):
        disk.put("module", key, bytes(1000))
        os.utime(disk.path("module", key), (0, {"a": 10, "b": 20, "c": 30}[key]))
    assert sorted(p.name.split("-")[1] for p in cache.glob("*.cwasm")) == ["a", "b", "c"]
    # "a" is the oldest write but was used since: "b" is the one to go.
    assert disk.get("module", "a") is not None
    disk.put("module", "d", bytes(1000))
    assert sorted(p.name.split("-")[1] for p in cache.glob("*.cwasm")) == ["a", "c", "d"]
    assert not list(cache.glob("module-b-*"))
