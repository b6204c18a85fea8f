"""Where plugins come from: modules inline in a manifest (wasm_base64), every
manifest of a plugins directory, and a Kubernetes ConfigMap mounted as one
(its keys symlinks into ``..data``, swapped atomically) - read, refused with
the reason, and followed by hot reload."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

import heliosdb_wasm as h
from conftest import PipelineSession, allow, reject, run_sql, scripted, serve, stop
from heliosdb_wasm.errors import PluginError
from heliosdb_wasm.plugins.manifest import INLINE_ORIGIN, read_manifest, read_manifests
from heliosdb_wasm.plugins.pipeline import Pipeline
from heliosdb_wasm.plugins.reload import manifest_paths


@pytest.fixture
def session() -> Iterator[PipelineSession]:
    with h.Database.open(":memory:") as db:
        yield PipelineSession(db)


def b64_of(**session: str) -> str:
    return base64.b64encode(scripted({"pre-parse": allow(**session)})).decode()


def variables(pipeline: Pipeline, session: PipelineSession) -> dict[str, str]:
    session.variables.clear()
    pipeline.run(session, "SELECT 1", [], run_sql)  # type: ignore[arg-type]
    return dict(session.variables)


# --- wasm_base64 ---------------------------------------------------------------------


def test_a_module_inline_as_base64_loads_and_has_no_file_to_watch(
    tmp_path: Path, session: PipelineSession
) -> None:
    manifest = tmp_path / "plugins.toml"
    # Wrapped over lines, as a long body in a multi-line string would be.
    body = b64_of(v="inline")
    wrapped = "\n".join(body[i : i + 60] for i in range(0, len(body), 60))
    manifest.write_text(f'[[plugin]]\nname = "gate"\nwasm_base64 = """\n{wrapped}\n"""\n')
    _, (spec,) = read_manifest(manifest)
    assert spec.origin == f"{INLINE_ORIGIN}{manifest}"
    pipeline = Pipeline()
    pipeline.watch(manifest)
    try:
        assert variables(pipeline, session) == {"v": "inline"}
        assert pipeline.plugins()[0]["origin"] == f"{INLINE_ORIGIN}{manifest}"
        assert not pipeline.reload_if_changed()
    finally:
        pipeline.close()


def test_a_candidate_may_be_inline_too(tmp_path: Path) -> None:
    (tmp_path / "stable.wasm").write_bytes(scripted({"pre-parse": allow(v="stable")}))
    manifest = tmp_path / "plugins.toml"
    manifest.write_text(
        '[[plugin]]\nname = "gate"\nfile = "stable.wasm"\n'
        f'candidate = {{ wasm_base64 = "{b64_of(v="candidate")}", percent = 25 }}\n'
    )
    _, (spec,) = read_manifest(manifest)
    assert spec.candidate == scripted({"pre-parse": allow(v="candidate")})
    assert spec.candidate_percent == 25 and spec.candidate_origin == f"{INLINE_ORIGIN}{manifest}"


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        ('wasm_base64 = "not base64!"', r"plugin #1 \(gate\): wasm_base64 is not valid base64"),
        (
            f'wasm_base64 = "{base64.b64encode(b"hello, world").decode()}"',
            r"plugin #1 \(gate\): wasm_base64 is not a WebAssembly module",
        ),
        ("wasm_base64 = 7", "wasm_base64 must be a string"),
        ('file = "a.wasm"\nwasm_base64 = "AGFzbQ=="', "file or wasm_base64, not both"),
        ("priority = 1", "file is required"),
        (
            'file = "a.wasm"\ncandidate = { wasm_base64 = "%%%", percent = 5 }',
            r"\(gate\) candidate: wasm_base64 is not valid base64",
        ),
    ],
)
def test_bad_inline_modules_are_refused_naming_the_plugin_and_the_file(
    tmp_path: Path, plugin: str, message: str
) -> None:
    (tmp_path / "a.wasm").write_bytes(scripted({"pre-parse": allow()}))
    manifest = tmp_path / "plugins.toml"
    manifest.write_text(f'[[plugin]]\nname = "gate"\n{plugin}\n')
    with pytest.raises(h.InvalidArgument, match=message) as err:
        read_manifest(manifest)
    assert str(manifest) in err.value.message


# --- a plugins directory ------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_directory_is_its_toml_files_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "m.wasm").write_bytes(scripted({"pre-parse": allow()}))
    write(tmp_path / "20-second.toml", '[[plugin]]\nname = "second"\nfile = "m.wasm"\n')
    write(tmp_path / "10-first.toml", '[[plugin]]\nname = "first"\nfile = "m.wasm"\n')
    write(tmp_path / "README.md", "not a manifest")
    write(tmp_path / ".hidden.toml", "not = [valid")
    (tmp_path / "sub.toml").mkdir()
    paths = manifest_paths(None, tmp_path)
    assert [p.name for p in paths] == ["10-first.toml", "20-second.toml"]
    settings, specs = read_manifests(paths)
    assert settings is None
    assert [s.name for s in specs] == ["first", "second"]
    assert specs[0].origin == str(tmp_path / "m.wasm")


def test_a_name_in_two_files_is_refused_naming_both(tmp_path: Path) -> None:
    (tmp_path / "m.wasm").write_bytes(scripted({"pre-parse": allow()}))
    one = write(tmp_path / "a.toml", '[[plugin]]\nname = "gate"\nfile = "m.wasm"\n')
    two = write(tmp_path / "b.toml", '[[plugin]]\nname = "gate"\nfile = "m.wasm"\n')
    with pytest.raises(h.InvalidArgument) as err:
        read_manifests(manifest_paths(None, tmp_path))
    assert str(one) in err.value.message and str(two) in err.value.message
    assert err.value.procedure == "gate"


def test_pipeline_settings_come_from_at_most_one_file(tmp_path: Path) -> None:
    one = write(tmp_path / "a.toml", "[pipeline]\nmin_calls = 3\n")
    settings, _ = read_manifests(manifest_paths(None, tmp_path))
    assert settings is not None and settings.min_calls == 3
    two = write(tmp_path / "b.toml", "[pipeline]\nmin_calls = 4\n")
    with pytest.raises(h.InvalidArgument, match=r"\[pipeline\]") as err:
        read_manifests(manifest_paths(None, tmp_path))
    assert str(one) in err.value.message and str(two) in err.value.message


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(h.InvalidArgument, match="cannot read the plugins directory"):
        Pipeline().watch(plugins_dir=tmp_path / "nowhere")


def test_the_directory_is_watched_for_added_changed_and_removed_files(
    tmp_path: Path, session: PipelineSession
) -> None:
    plugins = tmp_path / "plugins.d"
    plugins.mkdir()
    write(plugins / "00-settings.toml", "[pipeline]\nreload_interval = 60\nsettle_time = 0.05\n")
    pipeline = Pipeline()
    pipeline.watch(plugins_dir=plugins)
    try:
        assert pipeline.plugins() == [] and pipeline.settings.settle_time == 0.05
        write(plugins / "a.toml", f'[[plugin]]\nname = "a"\nwasm_base64 = "{b64_of(a="1")}"\n')
        assert pipeline.reload_if_changed()
        assert variables(pipeline, session) == {"a": "1"}
        write(plugins / "b.toml", f'[[plugin]]\nname = "b"\nwasm_base64 = "{b64_of(b="1")}"\n')
        assert pipeline.reload_if_changed()
        assert variables(pipeline, session) == {"a": "1", "b": "1"}
        write(plugins / "b.toml", f'[[plugin]]\nname = "b"\nwasm_base64 = "{b64_of(b="2")}"\n')
        assert pipeline.reload_if_changed()
        assert variables(pipeline, session) == {"a": "1", "b": "2"}
        # A file that clashes with another changes nothing, all or nothing.
        write(plugins / "c.toml", f'[[plugin]]\nname = "a"\nwasm_base64 = "{b64_of(c="1")}"\n')
        assert not pipeline.reload_if_changed()
        assert variables(pipeline, session) == {"a": "1", "b": "2"}
        (plugins / "c.toml").unlink()
        (plugins / "a.toml").unlink()
        assert pipeline.reload_if_changed()
        assert variables(pipeline, session) == {"b": "2"}
        assert not pipeline.reload_if_changed()
    finally:
        pipeline.close()


def test_a_manifest_and_a_directory_together(tmp_path: Path, session: PipelineSession) -> None:
    manifest = write(
        tmp_path / "plugins.toml",
        f'[[plugin]]\nname = "main"\npriority = 1\nwasm_base64 = "{b64_of(m="1")}"\n',
    )
    plugins = tmp_path / "more"
    plugins.mkdir()
    write(plugins / "x.toml", f'[[plugin]]\nname = "extra"\nwasm_base64 = "{b64_of(x="1")}"\n')
    pipeline = Pipeline()
    pipeline.watch(manifest, plugins_dir=plugins)
    try:
        assert [p["name"] for p in pipeline.plugins()] == ["main", "extra"]
        assert variables(pipeline, session) == {"m": "1", "x": "1"}
    finally:
        pipeline.close()


# --- a ConfigMap volume ------------------------------------------------------------------


class ConfigMapVolume:
    """A directory laid out as the kubelet's atomic writer lays a ConfigMap
    volume: each version in ``..<timestamp>/``, ``..data`` a symlink to the
    current one, each key a symlink ``key -> ..data/key``. An update writes
    the new version's directory, points ``..data_tmp`` at it, renames that
    over ``..data`` (the atomic step), fixes the key links and removes the
    old directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.generation = 0
        self.current: Path | None = None

    def update(self, files: dict[str, bytes], same_stamp_as_before: bool = False) -> None:
        self.generation += 1
        new = self.root / f"..2025_01_01_00_00_{self.generation:02d}.000000001"
        new.mkdir()
        for name, data in files.items():
            (new / name).write_bytes(data)
            if same_stamp_as_before and self.current and (self.current / name).exists():
                old = (self.current / name).stat()
                os.utime(new / name, ns=(old.st_atime_ns, old.st_mtime_ns))
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(new.name)
        os.replace(tmp, self.root / "..data")
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        for link in self.root.iterdir():
            if link.is_symlink() and link.name != "..data" and link.name not in files:
                link.unlink()
        if self.current is not None:
            for f in self.current.iterdir():
                f.unlink()
            self.current.rmdir()
        self.current = new


def configmap_manifest(variable: str, value: str, module: str = "gate.wasm") -> bytes:
    return (
        "[pipeline]\nreload_interval = 0.05\nsettle_time = 0.05\n"
        f'[[plugin]]\nname = "gate"\nfile = "{module}"\n'
        f'[plugin.config]\n{variable} = "{value}"\n'
    ).encode()


def test_a_configmap_swap_reloads_once_even_where_size_and_mtime_match(
    tmp_path: Path, session: PipelineSession
) -> None:
    volume = ConfigMapVolume(tmp_path / "config")
    gate = scripted({"pre-parse": allow(v="1")})
    volume.update({"plugins.toml": configmap_manifest("k", "aaaa"), "gate.wasm": gate})
    pipeline = Pipeline()
    pipeline.watch(plugins_dir=volume.root)
    try:
        (row,) = pipeline.plugins()
        assert row["origin"] == str(volume.root / "gate.wasm")  # the key, not ..<timestamp>
        assert not pipeline.reload_if_changed()
        # The same size and the same modification time: only the inode and
        # the real path behind the key's symlink tell the versions apart.
        volume.update(
            {"plugins.toml": configmap_manifest("k", "bbbb"), "gate.wasm": gate},
            same_stamp_as_before=True,
        )
        assert pipeline.reload_if_changed()
        (after,) = pipeline.plugins()
        assert after["version"] == row["version"] + 1  # the config changed, not the module
        assert not pipeline.reload_if_changed()
        # A new module under the same key.
        volume.update(
            {
                "plugins.toml": configmap_manifest("k", "bbbb"),
                "gate.wasm": scripted({"pre-parse": allow(v="2")}),
            }
        )
        assert pipeline.reload_if_changed()
        assert variables(pipeline, session) == {"v": "2"}
        assert not pipeline.reload_if_changed()
    finally:
        pipeline.close()


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the watcher did not apply the update"
        time.sleep(0.02)


def test_configmap_updates_are_applied_once_each_by_the_watching_thread(
    tmp_path: Path, session: PipelineSession
) -> None:
    volume = ConfigMapVolume(tmp_path / "config")
    gate = scripted({"pre-parse": allow(v="1")})
    volume.update({"plugins.toml": configmap_manifest("k", "0"), "gate.wasm": gate})
    pipeline = Pipeline()
    pipeline.watch(plugins_dir=volume.root)

    def versions() -> dict[str, int]:
        return {p["name"]: p["version"] for p in pipeline.plugins()}

    try:
        first = versions()["gate"]
        for n in range(1, 4):
            volume.update({"plugins.toml": configmap_manifest("k", str(n)), "gate.wasm": gate})
            wait_for(lambda: versions()["gate"] > first + n - 1)  # noqa: B023 - waited for here
            time.sleep(0.3)  # several checks more: none of them loads it again
            assert versions() == {"gate": first + n}
        # A key added (a second manifest), then removed: the first plugin stays as it is.
        more = f'[[plugin]]\nname = "more"\nwasm_base64 = "{b64_of(m="1")}"\n'.encode()
        volume.update(
            {"plugins.toml": configmap_manifest("k", "3"), "gate.wasm": gate, "more.toml": more}
        )
        wait_for(lambda: "more" in versions())
        time.sleep(0.3)
        assert versions() == {"gate": first + 3, "more": first + 4}
        volume.update({"plugins.toml": configmap_manifest("k", "3"), "gate.wasm": gate})
        wait_for(lambda: "more" not in versions())
        assert versions() == {"gate": first + 3}
        assert variables(pipeline, session) == {"v": "1"}
    finally:
        pipeline.close()


def test_a_read_during_a_swap_is_not_applied(tmp_path: Path, session: PipelineSession) -> None:
    # Two manifests are read one after the other: a swap while they are read
    # could mix the old first file with the new second one.
    volume = ConfigMapVolume(tmp_path / "config")

    def files(version: str) -> dict[str, bytes]:
        return {
            "a.toml": f'[[plugin]]\nname = "a"\nwasm_base64 = "{b64_of(a=version)}"\n'.encode(),
            "b.toml": f'[[plugin]]\nname = "b"\nwasm_base64 = "{b64_of(b=version)}"\n'.encode(),
        }

    volume.update(files("1"))
    pipeline = Pipeline()
    pipeline.watch(plugins_dir=volume.root)
    watcher = pipeline._watcher
    assert watcher is not None
    read = watcher._read
    swapped = threading.Event()

    def torn() -> object:
        if not swapped.is_set():
            swapped.set()
            volume.update(files("2"))  # lands while this read runs
        return read()

    watcher._read = torn  # type: ignore[method-assign]
    try:
        volume.update(files("1b"))
        assert not pipeline.reload_if_changed()  # read while written to: not applied
        assert variables(pipeline, session) == {"a": "1", "b": "1"}
        assert pipeline.reload_if_changed()
        assert variables(pipeline, session) == {"a": "2", "b": "2"}
    finally:
        pipeline.close()


# --- candidates across reloads --------------------------------------------------------------


def test_a_changed_candidate_module_reloads_and_a_removed_one_goes(
    tmp_path: Path, session: PipelineSession
) -> None:
    (tmp_path / "stable.wasm").write_bytes(scripted({"pre-parse": allow(v="stable")}))
    manifest = tmp_path / "plugins.toml"

    def with_candidate(value: str | None) -> None:
        text = '[pipeline]\nsettle_time = 0\n[[plugin]]\nname = "gate"\nfile = "stable.wasm"\n'
        if value is not None:
            text += f'candidate = {{ wasm_base64 = "{b64_of(v=value)}", percent = 100 }}\n'
        manifest.write_text(text)

    with_candidate("c1")
    pipeline = Pipeline()
    pipeline.watch(manifest)
    try:
        assert variables(pipeline, session) == {"v": "c1"}
        with_candidate("c2")
        assert pipeline.reload_if_changed()
        assert variables(pipeline, session) == {"v": "c2"}
        with_candidate(None)
        assert pipeline.reload_if_changed()
        assert variables(pipeline, session) == {"v": "stable"}
        assert pipeline.plugins()[0]["candidate"] is None
    finally:
        pipeline.close()


def test_a_candidate_dropped_on_probation_stays_dropped_across_reloads(
    tmp_path: Path, session: PipelineSession
) -> None:
    (tmp_path / "stable.wasm").write_bytes(scripted({"pre-parse": allow(v="stable")}))
    (tmp_path / "bad.wasm").write_bytes(scripted({"pre-parse": "trap"}))
    manifest = tmp_path / "plugins.toml"

    def write_manifest(other: str) -> None:
        manifest.write_text(
            "[pipeline]\nsettle_time = 0\nmin_calls = 2\n"
            '[[plugin]]\nname = "gate"\nfile = "stable.wasm"\n'
            'candidate = { file = "bad.wasm", percent = 100 }\n'
            f'[[plugin]]\nname = "other"\nwasm_base64 = "{b64_of(o=other)}"\n'
        )

    write_manifest("1")
    pipeline = Pipeline()
    pipeline.watch(manifest)
    try:
        for _ in range(2):
            with pytest.raises(PluginError):
                variables(pipeline, session)
        assert variables(pipeline, session) == {"v": "stable", "o": "1"}
        write_manifest("2")  # another plugin changes; the manifest still names bad.wasm
        assert pipeline.reload_if_changed()
        assert variables(pipeline, session) == {"v": "stable", "o": "2"}
        assert pipeline.plugins()[0]["candidate"] is None
        # A new candidate module is tried again.
        (tmp_path / "bad.wasm").write_bytes(scripted({"pre-parse": allow(v="fixed")}))
        assert pipeline.reload_if_changed()
        assert variables(pipeline, session) == {"v": "fixed", "o": "2"}
    finally:
        pipeline.close()


# --- A/B candidates of plugins created with SQL -------------------------------------------


def test_a_sql_plugin_takes_a_candidate_which_can_be_shared_promoted_and_dropped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.db"
    with h.Database.open(path) as db:
        db.execute(
            f"CREATE PLUGIN gate PRIORITY 5 CONFIG '{{\"k\": 1}}' AS $wasm${b64_of(v='stable')}$wasm$"
        )
        db.execute(f"ALTER PLUGIN gate CANDIDATE PERCENT 100 AS $wasm${b64_of(v='cand')}$wasm$")
        shown = db.execute("SHOW PLUGINS")
        row = dict(zip(shown.columns, shown.rows[0], strict=True))
        assert row["version"] == 2 and row["priority"] == 5
        assert row["candidate_percent"] == 100 and len(str(row["candidate_sha256"])) == 64
        ((spec, _),) = db.plugin_specs()
        assert spec.config == {"k": 1} and spec.candidate_origin == "sql:gate#candidate"
    pipeline = Pipeline()
    pipeline.watch(database=path)
    try:
        with h.Database.open(path) as client:
            s = PipelineSession(client)
            assert variables(pipeline, s) == {"v": "cand"}
            client.execute("ALTER PLUGIN gate CANDIDATE PERCENT 0")
            assert pipeline.reload_if_changed()
            assert variables(pipeline, s) == {"v": "stable"}
            assert pipeline.plugins()[0]["candidate"] is not None  # loaded, serving none
            client.execute("ALTER PLUGIN gate PROMOTE CANDIDATE")
            assert pipeline.reload_if_changed()
            assert variables(pipeline, s) == {"v": "cand"}
            assert pipeline.plugins()[0]["candidate"] is None
            assert client.execute("SHOW PLUGINS").rows[0][-2:] == (None, None)
            client.execute(
                f"ALTER PLUGIN gate CANDIDATE PERCENT 100 AS $wasm${b64_of(v='c2')}$wasm$"
            )
            client.execute("ALTER PLUGIN gate DROP CANDIDATE")
            assert pipeline.reload_if_changed()
            assert variables(pipeline, s) == {"v": "cand"}
            # A new build of the plugin itself drops its candidate.
            client.execute(
                f"ALTER PLUGIN gate CANDIDATE PERCENT 100 AS $wasm${b64_of(v='c3')}$wasm$"
            )
            client.execute(f"CREATE OR REPLACE PLUGIN gate AS $wasm${b64_of(v='new')}$wasm$")
            assert pipeline.reload_if_changed()
            assert variables(pipeline, s) == {"v": "new"}
    finally:
        pipeline.close()


@pytest.mark.parametrize(
    ("statement", "error", "code"),
    [
        (
            "ALTER PLUGIN nope CANDIDATE PERCENT 5 AS $wasm${gate}$wasm$",
            h.RegistryError,
            "not-found",
        ),
        ("ALTER PLUGIN gate PROMOTE CANDIDATE", h.RegistryError, "not-found"),
        ("ALTER PLUGIN gate CANDIDATE PERCENT 5", h.RegistryError, "not-found"),
        (
            "ALTER PLUGIN gate CANDIDATE PERCENT 101 AS $wasm${gate}$wasm$",
            h.DdlError,
            "syntax-error",
        ),
        (
            "ALTER PLUGIN gate CANDIDATE PERCENT -1 AS $wasm${gate}$wasm$",
            h.DdlError,
            "syntax-error",
        ),
        ("ALTER PLUGIN gate CANDIDATE AS $wasm${gate}$wasm$", h.DdlError, "syntax-error"),
        (
            "ALTER PLUGIN gate CANDIDATE PERCENT 5 AS $wasm${other}$wasm$",
            h.InvalidArgument,
            "invalid-argument",
        ),
    ],
)
def test_bad_candidate_statements_are_refused_and_change_nothing(
    statement: str, error: type[h.ProcedureError], code: str
) -> None:
    gate = b64_of(v="stable")
    # A candidate must export the hooks the plugin is configured with.
    other = base64.b64encode(scripted({"post-parse": allow()})).decode()
    with h.Database.open(":memory:") as db:
        db.execute(f"CREATE PLUGIN gate HOOKS ('pre-parse') AS $wasm${gate}$wasm$")
        before = db.execute("SHOW PLUGINS").rows
        with pytest.raises(error) as err:
            db.execute(statement.replace("{gate}", gate).replace("{other}", other))
        assert err.value.code == code
        assert db.execute("SHOW PLUGINS").rows == before


def test_a_candidate_module_changed_outside_the_engine_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    with h.Database.open(path) as db:
        db.execute(f"CREATE PLUGIN gate AS $wasm${b64_of(v='stable')}$wasm$")
        db.execute(f"ALTER PLUGIN gate CANDIDATE PERCENT 10 AS $wasm${b64_of(v='cand')}$wasm$")
        evil = scripted({"pre-parse": allow(v="evil")})
        db.conn.execute("UPDATE _heliosdb_plugins SET candidate = ?", (evil,))
        with pytest.raises(h.RegistryError) as err:
            db.plugin_specs()
        assert err.value.code == "tampered"
        with pytest.raises(h.RegistryError):
            db.execute("ALTER PLUGIN gate CANDIDATE PERCENT 20")


def test_serve_reads_the_plugins_directory_from_the_environment(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    gate = base64.b64encode(scripted({"pre-parse": reject("42501", "closed")})).decode()
    write(
        plugins / "gate.toml",
        f'[pipeline]\nreload_interval = 0.05\n[[plugin]]\nname = "gate"\nwasm_base64 = "{gate}"\n',
    )
    proc, port = serve(tmp_path, env={"HELIOSDB_PLUGINS_DIR": str(plugins)})
    try:
        with (
            psycopg.connect(host="127.0.0.1", port=port, user="u", dbname="s") as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege, match="closed"),
        ):
            conn.execute("SELECT 1")
        (plugins / "gate.toml").unlink()  # watched: the plugin goes
        deadline = time.monotonic() + 10
        while True:
            with psycopg.connect(host="127.0.0.1", port=port, user="u", dbname="s") as conn:
                try:
                    assert conn.execute("SELECT 1").fetchone() == (1,)
                    break
                except psycopg.errors.InsufficientPrivilege:
                    assert time.monotonic() < deadline, "the removed manifest still serves"
            time.sleep(0.05)
    finally:
        stop(proc)


def test_serve_refuses_a_missing_plugins_directory(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "heliosdb_wasm.cli", "serve", "--db", str(tmp_path / "x.db"),
         "--port", "0", "--plugins-dir", str(tmp_path / "nowhere")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "cannot read the plugins directory" in out.stderr and "nowhere" in out.stderr
