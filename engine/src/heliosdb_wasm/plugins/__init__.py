"""Query-hook plugins (docs/plugins.md): specs from plugins.toml, a plugins
directory and CREATE PLUGIN (manifest), what hooks answer (verdicts), one
loaded build of a plugin (version), the pipeline every statement runs
through with A/B routing and automatic rollback (pipeline), hot reload
(reload), metrics and logs (metrics), OpenTelemetry spans (tracing, imported
only when tracing is configured), the statement capture (capture) and what
the ``heliosdb-wasm plugin`` commands do (tools).

Nothing is imported here: the database needs only ``manifest`` and
``version`` (to store and check CREATE PLUGIN), and the pipeline needs the
database, so importing the pipeline from here would make a cycle.
"""
