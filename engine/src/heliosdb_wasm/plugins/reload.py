"""Hot reload: the plugin sources (plugins.toml, the files it names, the
plugins created with SQL) watched from a background thread, and applied to
the pipeline only in a state that held still while it was read."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from ..database import Database
from ..errors import ProcedureError
from .manifest import PipelineSettings, PluginSpec, manifest_files, read_manifest

log = logging.getLogger("heliosdb_wasm.plugins")

Sources = tuple[PipelineSettings, list[PluginSpec]]


class Watcher:
    """Keeps a pipeline in step with ``manifest`` and ``database``.

    ``apply`` makes the pipeline what the sources say (all or nothing),
    ``settings`` is the pipeline's current [pipeline] table and ``loaded``
    the files of the versions it serves (watched too, so a plugin file
    replaced in place reloads)."""

    def __init__(
        self,
        manifest: Path | None,
        database: Path | None,
        *,
        apply: Callable[[Sources], None],
        settings: Callable[[], PipelineSettings],
        loaded: Callable[[], list[str]],
        fallback: PipelineSettings,
    ) -> None:
        self._manifest = manifest
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
        settings = self._fallback
        specs: list[PluginSpec] = []
        if self._manifest is not None:
            settings, specs = read_manifest(self._manifest)
        if self._database is not None:
            names = {s.name for s in specs}
            for spec, _ in self._database.plugin_specs():
                if spec.name in names:
                    log.error(
                        "a plugin created with SQL has the name of one in the manifest;"
                        " the manifest's is used",
                        extra={"plugin": spec.name, "event": "name-clash"},
                    )
                    continue
                specs.append(spec)
        return settings, specs

    def _stamps(self) -> dict[str, object]:
        paths = []
        if self._manifest is not None:
            paths.append(str(self._manifest))
            # The files the manifest names, loaded or not: a reload that failed
            # on a half-copied plugin file is retried once the file changes.
            paths.extend(manifest_files(self._manifest))
        paths.extend(self._loaded())
        stamps: dict[str, object] = {}
        for p in paths:
            if p.startswith("sql:"):
                continue
            try:
                st = Path(p).stat()
                stamps[p] = (st.st_mtime_ns, st.st_size)
            except OSError:
                stamps[p] = None
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
