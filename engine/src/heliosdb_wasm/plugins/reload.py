"""Hot reload: the plugin sources (plugins.toml, the manifests of a plugins
directory, the files they name, the plugins created with SQL) watched from a
background thread, and applied to the pipeline only in a state that held
still while it was read."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from ..database import Database
from ..errors import ProcedureError
from .manifest import (
    PipelineSettings,
    PluginSpec,
    directory_manifests,
    manifest_files,
    origin_file,
    read_manifests,
)

log = logging.getLogger("heliosdb_wasm.plugins")

Sources = tuple[PipelineSettings, list[PluginSpec]]


def manifest_paths(manifest: Path | None, plugins_dir: Path | None) -> list[Path]:
    """The manifests to read, in order: ``manifest``, then the directory's."""
    paths = [manifest] if manifest is not None else []
    if plugins_dir is not None:
        paths += directory_manifests(plugins_dir)
    return paths


def read_sources(
    manifest: Path | None,
    plugins_dir: Path | None,
    database: Database | None,
    fallback: PipelineSettings,
) -> Sources:
    """What the pipeline should be: the manifests' plugins, then those created
    with SQL (a SQL plugin named like a manifest's is left out, and logged);
    the [pipeline] table of the manifest that has one, else ``fallback``."""
    settings, specs = read_manifests(manifest_paths(manifest, plugins_dir))
    if database is not None:
        names = {s.name for s in specs}
        for spec, _ in database.plugin_specs():
            if spec.name in names:
                log.error(
                    "a plugin created with SQL has the name of one in a manifest;"
                    " the manifest's is used",
                    extra={"plugin": spec.name, "event": "name-clash"},
                )
                continue
            specs.append(spec)
    return settings or fallback, specs


def _stamp(path: str) -> object:
    """What changes when a file does. Through a symlink (a ConfigMap key,
    whose ``..data`` target is swapped atomically) the new file is another
    inode at another real path, even where its size and modification time
    (whose clock ticks in milliseconds) are those of the old one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev, os.path.realpath(path))


class Watcher:
    """Keeps a pipeline in step with ``manifest``, the manifests of
    ``plugins_dir`` and ``database``.

    ``apply`` makes the pipeline what the sources say (all or nothing),
    ``settings`` is the pipeline's current [pipeline] table and ``loaded``
    the files of the versions it serves (watched too, so a plugin file
    replaced in place reloads)."""

    def __init__(
        self,
        manifest: Path | None,
        database: Path | None,
        *,
        plugins_dir: Path | None = None,
        apply: Callable[[Sources], None],
        settings: Callable[[], PipelineSettings],
        loaded: Callable[[], list[str]],
        fallback: PipelineSettings,
    ) -> None:
        self._manifest = manifest
        self._plugins_dir = plugins_dir
        self._apply = apply
        self._settings = settings
        self._loaded = loaded
        self._fallback = fallback
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._database = Database.open(database) if database is not None else None
        self._seen: dict[str, object] = {}

    def start(self) -> None:
        """Loads the sources now (failing loudly), then watches them."""
        self._apply(self._read())
        self._seen = self._stamps()
        self._thread = threading.Thread(target=self._loop, name="heliosdb-plugins", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._database is not None:
            self._database.close()
            self._database = None

    def _read(self) -> Sources:
        return read_sources(self._manifest, self._plugins_dir, self._database, self._fallback)

    def _stamps(self) -> dict[str, object]:
        stamps: dict[str, object] = {}
        try:
            manifests = manifest_paths(self._manifest, self._plugins_dir)
        except ProcedureError:
            manifests = [self._manifest] if self._manifest is not None else []
            stamps[f"dir:{self._plugins_dir}"] = None  # unreadable, for now
        paths = []
        for manifest in manifests:
            paths.append(str(manifest))
            # The files the manifest names, loaded or not: a reload that failed
            # on a half-copied plugin file is retried once the file changes.
            paths.extend(manifest_files(manifest))
        paths.extend(p for p in map(origin_file, self._loaded()) if p is not None)
        for p in paths:
            stamps[p] = _stamp(p)
        if self._database is not None:
            stamps["sql:"] = self._database.registry.plugins_stamp()
        return stamps

    def _loop(self) -> None:
        while not self._stop.wait(self._settings().reload_interval):
            try:
                self.reload_if_changed()
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive a bad check
                # e.g. the database busy or gone for a moment: the next check retries.
                log.error(
                    "plugin reload check failed; the running plugins stay",
                    extra={"event": "reload-failed", "error": f"{type(exc).__name__}: {exc}"},
                )

    def reload_if_changed(self) -> bool:
        """Re-reads the sources if the manifest, a plugin file or the
        database's plugins changed; sources that fail to load are logged and
        the running plugins stay. Only a state of the files that holds still
        for ``settle_time``, and while it is read, is applied."""
        stamps = self._stamps()
        if stamps == self._seen:
            return False
        while True:
            if self._stop.wait(self._settings().settle_time):
                return False
            settled = self._stamps()
            if settled == stamps:
                break
            stamps = settled
        try:
            sources = self._read()
        except ProcedureError as exc:
            self._seen = stamps
            log.error(
                "plugin manifest unreadable; the running plugins stay",
                extra={"plugin": exc.procedure, "event": "reload-failed", "error": str(exc)},
            )
            return False
        if self._stamps() != stamps:
            return False  # written to while being read: the next check reads it again
        self._seen = stamps
        try:
            self._apply(sources)
        except ProcedureError as exc:
            log.error(
                "plugin reload failed; the running plugins stay",
                extra={"plugin": exc.procedure, "event": "reload-failed", "error": str(exc)},
            )
            return False
        self._seen = self._stamps()
        return True
