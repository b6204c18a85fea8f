"""The core's on-disk compiled-code cache, for components (core modules:
engine/core/src/cache.rs's tests): reused across runtimes, damage detected
and rebuilt, off when asked, and a reopened database calls from it."""

from __future__ import annotations

from pathlib import Path

import pytest

import heliosdb_wasm as h
from conftest import b64, make_component, wasm_of
from heliosdb_wasm import _core
from heliosdb_wasm.registry import Registry, sha256_hex
from heliosdb_wasm.runtime import Runtime

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
    """Component bytes that count how often they are read."""

    def __init__(self, wasm: bytes) -> None:
        self.wasm = wasm
        self.reads = 0

    def __call__(self) -> bytes:
        self.reads += 1
        return self.wasm


def load(digest: str, source: Source | bytes) -> _core.Component:
    return _core.Component(Runtime().core, digest, source)


def _entry(cache: Path) -> Path:
    (entry,) = cache.glob("component-*")
    return entry


def test_second_runtime_maps_the_cached_code_without_reading_the_component(
    cache: Path, component: bytes
) -> None:
    digest = sha256_hex(component)
    first = Source(component)
    load(digest, first)
    _entry(cache)
    again = Source(component)
    loaded = load(digest, again)
    assert (first.reads, again.reads) == (1, 0)
    assert "add" in {name for _, name, _, _ in loaded.exports}


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
        pytest.param(lambda p: p.write_bytes(b"\x7fELF" + b"\0" * 4096), id="foreign"),
    ],
)
def test_damaged_entries_are_detected_and_rebuilt(
    cache: Path, component: bytes, damage: object
) -> None:
    digest = sha256_hex(component)
    load(digest, component)
    entry = _entry(cache)
    pristine = entry.read_bytes()
    damage(entry)  # type: ignore[operator]
    source = Source(component)
    loaded = load(digest, source)
    assert source.reads == 1  # recompiled from the component's bytes
    assert "add" in {name for _, name, _, _ in loaded.exports}
    assert _entry(cache).read_bytes() == pristine


def test_cache_off_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, component: bytes
) -> None:
    monkeypatch.setenv("HELIOSDB_WASM_CACHE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    runtime = Runtime()
    assert runtime.core.cache_dir is None
    _core.Component(runtime.core, sha256_hex(component), component)
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
