"""Query-hook plugins (docs/plugins.md): specs from plugins.toml and CREATE
PLUGIN (manifest), what hooks answer (verdicts), one loaded build of a
plugin (version), the pipeline every statement runs through with A/B routing
and automatic rollback (pipeline), hot reload (reload), and metrics and logs
(metrics).

Nothing is imported here: the database needs only ``manifest`` and
``version`` (to store and check CREATE PLUGIN), and the pipeline needs the
database, so importing the pipeline from here would make a cycle.
"""
