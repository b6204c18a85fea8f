"""PostgreSQL's SQL dialect in SQLite's, for what clients send.

Clients and their drivers write PostgreSQL: ``'x'::text``, ``version()``,
``pg_catalog.current_schema()``, ``OPERATOR(pg_catalog.~)``, ``E'...'``,
``json_build_object``. A statement is translated with sqlglot only when a
scan that skips quotes and comments finds one of those marks, because
SQLite's own SQL is PostgreSQL's for most statements and sqlglot costs
milliseconds per statement where SQLite's prepare costs microseconds; a
translation is cached by its text. What cannot be parsed as PostgreSQL is
left as it was, so SQLite reports its own error about the text the client
sent. The functions a translation may call that SQLite lacks (``version()``,
``current_schema()``, ``regexp``, ...) are registered on every client
connection by ``functions``.
"""

from __future__ import annotations

import enum
import functools
import re

import sqlglot
import sqlglot.errors
from sqlglot import exp

from .. import ddl
from .dialect import OPAQUE
from .errors import WireError

# Statements that are SQL (not the engine's DDL, SET or a transaction
# statement) and may be written in PostgreSQL's dialect.
_TRANSLATED_VERBS = {"SELECT", "WITH", "VALUES", "INSERT", "UPDATE", "DELETE", "TABLE"}

# Words that only PostgreSQL's SQL has (or that mean something else to
# SQLite), upper case.
_MARK_WORDS = {
    "ANY",
    "ARRAY",
    "GENERATE_SERIES",
    "UNNEST",
    "ARRAY_AGG",
    "CURRENT_DATABASE",
    "CURRENT_SCHEMA",
    "CURRENT_SCHEMAS",
    "CURRENT_SETTING",
    "CURRENT_USER",
    "GEN_RANDOM_UUID",
    "ILIKE",
    "INFORMATION_SCHEMA",
    "JSONB_BUILD_OBJECT",
    "JSON_BUILD_OBJECT",
    "NOW",
    "ONLY",
    "OPERATOR",
    "PG_CATALOG",
    "PUBLIC",
    "SESSION_USER",
    "SIMILAR",
    "STRING_AGG",
    "VERSION",
}
_MARK_SCAN = re.compile(
    OPAQUE
    + r"""
  | (?P<cast>::)
  | (?P<regex>!?~)
  | (?P<estring>\b[Ee]')
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<placeholder>\?[0-9]+)
""",
    re.VERBOSE | re.DOTALL,
)
_PLACEHOLDER = re.compile(r"\?([0-9]+)")


def needs_translation(sql: str) -> bool:
    """Whether ``sql`` is SQL that uses something only PostgreSQL's dialect has
    (remembered for short texts: clients send the same ones again and again)."""
    return _needs_cached(sql) if len(sql) <= 4096 else _needs_translation(sql)


@functools.lru_cache(maxsize=2048)
def _needs_cached(sql: str) -> bool:
    return _needs_translation(sql)


def _needs_translation(sql: str) -> bool:
    words = ddl.keywords(sql, 1)
    if not words or words[0] not in _TRANSLATED_VERBS:
        return False
    for m in _MARK_SCAN.finditer(sql):
        kind = m.lastgroup
        if kind in ("cast", "regex", "estring"):
            return True
        if kind == "word" and m.group().upper() in _MARK_WORDS:
            return True
    return False


# --- statements SQLite spells as several, or not at all ---------------------------

_NAME_LIST = (
    r'(?P<names>(?:"(?:[^"]|"")+"|[A-Za-z_][\w$.]*)(?:\s*,\s*(?:"(?:[^"]|"")+"|[A-Za-z_][\w$.]*))*)'
)
_DROP = re.compile(
    rf"\s*DROP\s+(?P<kind>TABLE|VIEW|INDEX)\s+(?P<if>IF\s+EXISTS\s+)?{_NAME_LIST}"
    r"\s*(?:CASCADE|RESTRICT)?\s*;?\s*",
    re.IGNORECASE | re.DOTALL,
)
_TRUNCATE = re.compile(
    rf"\s*TRUNCATE\s+(?:TABLE\s+)?(?:ONLY\s+)?{_NAME_LIST}"
    r"(?:\s+(?:RESTART|CONTINUE)\s+IDENTITY)?\s*(?:CASCADE|RESTRICT)?\s*;?\s*",
    re.IGNORECASE | re.DOTALL,
)
_STORAGE = re.compile(r"\)\s*WITH\s*\([^()]*\)\s*(?:TABLESPACE\s+\w+\s*)?;?\s*$", re.IGNORECASE)
_ADD_PRIMARY_KEY = re.compile(
    r"\s*ALTER\s+TABLE\s+(?:ONLY\s+)?(?P<table>\"(?:[^\"]|\"\")+\"|[A-Za-z_][\w$.]*)\s+ADD\s+"
    r"(?:CONSTRAINT\s+(?P<name>\"(?:[^\"]|\"\")+\"|\w+)\s+)?(?P<kind>PRIMARY\s+KEY|UNIQUE)"
    r"\s*\((?P<columns>[^)]*)\)\s*;?\s*",
    re.IGNORECASE | re.DOTALL,
)
_ADD_FOREIGN_KEY = re.compile(
    r"\s*ALTER\s+TABLE\s+.*\bADD\s+(?:CONSTRAINT\s+\S+\s+)?FOREIGN\s+KEY\b",
    re.IGNORECASE | re.DOTALL,
)
_VACUUM = re.compile(
    r"\s*VACUUM\b(?P<options>(?:\s*\([^)]*\))?(?:\s+(?:FULL|FREEZE|VERBOSE|ANALYZE))*)"
    rf"\s*(?:{_NAME_LIST})?\s*;?\s*",
    re.IGNORECASE | re.DOTALL,
)


def _names(text: str) -> list[str]:
    return [n.strip() for n in re.findall(r'"(?:[^"]|"")+"|[^,\s]+', text)]


def _bare(name: str) -> str:
    """public.t as SQLite's table t (main is the only schema)."""
    for schema in ("public.", "main."):
        if name.lower().startswith(schema):
            return name[len(schema) :]
    return name


def expand(sql: str) -> list[str] | None:
    """PostgreSQL's DDL that SQLite spells as several statements or
    differently: ``DROP TABLE a, b``, ``TRUNCATE a, b``, ``CREATE TABLE ...
    WITH (fillfactor=...)``, ``ALTER TABLE t ADD PRIMARY KEY (c)`` (a unique
    index: SQLite cannot add a key to a table), ``VACUUM [ANALYZE] t``
    (``ANALYZE t``, or nothing: SQLite's VACUUM rebuilds the whole file).
    None: ``sql`` is not one of them. Raises WireError for what SQLite
    cannot do at all."""
    words = ddl.keywords(sql, 3)
    verb = words[0] if words else ""
    if verb == "DROP" and (m := _DROP.fullmatch(sql)):
        names = _names(m.group("names"))
        if len(names) < 2:
            return None
        exists = "IF EXISTS " if m.group("if") else ""
        return [f"DROP {m.group('kind').upper()} {exists}{_bare(n)}" for n in names]
    if verb == "TRUNCATE":
        m = _TRUNCATE.fullmatch(sql)
        if m is None:
            raise WireError(
                "42601", "syntax error in TRUNCATE: expected TRUNCATE [TABLE] name, ..."
            )
        return [f"DELETE FROM {_bare(n)}" for n in _names(m.group("names"))]
    if verb == "CREATE" and "TABLE" in words and _STORAGE.search(sql):
        return [_STORAGE.sub(")", sql)]
    if verb == "ALTER" and (m := _ADD_PRIMARY_KEY.fullmatch(sql)):
        table = _bare(m.group("table"))
        plain = table.strip('"')
        kind = "pkey" if m.group("kind").upper().startswith("PRIMARY") else "key"
        name = m.group("name") or f'"{plain}_{kind}"'
        return [f"CREATE UNIQUE INDEX {name} ON {table} ({m.group('columns')})"]
    if verb == "ALTER" and _ADD_FOREIGN_KEY.match(sql):
        raise WireError(
            "0A000",
            "ALTER TABLE ... ADD FOREIGN KEY is not supported: SQLite declares foreign keys"
            " in CREATE TABLE",
        )
    if verb == "VACUUM" and (m := _VACUUM.fullmatch(sql)):
        if "ANALYZE" not in m.group("options").upper():
            return []
        names = _names(m.group("names") or "")
        return [f"ANALYZE {_bare(n)}" for n in names] or ["ANALYZE"]
    return None


def to_sqlite(sql: str) -> str:
    """``sql`` in SQLite's dialect (itself when it needs no translation)."""
    return _translate(sql) if needs_translation(sql) else sql


@functools.lru_cache(maxsize=1024)
def _translate(sql: str) -> str:
    # SQLite's ?n placeholders (what the wire's $n became) are PostgreSQL's
    # $n to sqlglot, outside quotes and comments.
    text = _MARK_SCAN.sub(_dollar_placeholder, sql)
    try:
        tree = sqlglot.parse_one(text, read="postgres")
        if isinstance(tree, exp.Select):
            tree.set("expressions", [_named(e) for e in tree.expressions])
        return _rewrite(tree).sql(dialect="sqlite", unsupported_level=sqlglot.ErrorLevel.RAISE)
    except (sqlglot.errors.SqlglotError, RecursionError, ValueError):
        # Not PostgreSQL sqlglot knows: SQLite says what is wrong with it.
        return sql


def _named(projection: exp.Expr) -> exp.Expr:
    """A result column under the name PostgreSQL gives it (SQLite would name
    it by its translated text)."""
    if isinstance(projection, exp.Alias | exp.Column | exp.Star):
        return projection
    return exp.alias_(projection, _pg_name(projection), quoted=True)


_CAST_NAMES = {
    exp.DataType.Type.INT: "int4",
    exp.DataType.Type.BIGINT: "int8",
    exp.DataType.Type.SMALLINT: "int2",
    exp.DataType.Type.BOOLEAN: "bool",
    exp.DataType.Type.DOUBLE: "float8",
    exp.DataType.Type.FLOAT: "float4",
    exp.DataType.Type.DECIMAL: "numeric",
    exp.DataType.Type.CHAR: "bpchar",
    exp.DataType.Type.VARBINARY: "bytea",
}
_FUNCTION_NAMES: dict[type[exp.Expr], str] = {
    exp.CurrentVersion: "version",
    exp.CurrentSchema: "current_schema",
    exp.CurrentUser: "current_user",
    exp.SessionUser: "session_user",
    exp.CurrentTimestamp: "now",
    exp.Uuid: "gen_random_uuid",
    exp.Explode: "unnest",
}


def _pg_name(node: exp.Expr) -> str:
    """PostgreSQL's name for an unnamed result column (FigureColname)."""
    if isinstance(node, exp.Paren):
        return _pg_name(node.this)
    if isinstance(node, exp.Dot):
        return _pg_name(node.expression)
    if isinstance(node, exp.Cast):
        to = _catalog_type(node.to)
        if isinstance(to, exp.ObjectIdentifier):
            return to.name.lower()
        if isinstance(to, exp.DataType):
            kind = to.this
            return _CAST_NAMES.get(
                kind, kind.value.lower() if isinstance(kind, enum.Enum) else "?column?"
            )
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.Func):
        return _FUNCTION_NAMES.get(type(node)) or node.sql_name().lower()
    return "?column?"


def _rewrite(tree: exp.Expr) -> exp.Expr:
    """Every node through _sqlite_node, children before their parent (so a
    node that replaces another is built of translated parts)."""
    for node in reversed(list(tree.dfs())):
        new = _sqlite_node(node)
        if new is not node:
            if node is tree:
                tree = new
            else:
                node.replace(new)
    return tree


def _dollar_placeholder(m: re.Match[str]) -> str:
    text = m.group()
    return "$" + text[1:] if m.lastgroup == "placeholder" else text


_COMPARISONS: dict[str, type[exp.Expr]] = {
    "=": exp.EQ,
    "<>": exp.NEQ,
    "!=": exp.NEQ,
    "<": exp.LT,
    "<=": exp.LTE,
    ">": exp.GT,
    ">=": exp.GTE,
    "||": exp.DPipe,
}
# Casts to PostgreSQL's object-identifier types, as the functions that
# resolve a name to its oid in the catalog.
_OID_CASTS = {"REGCLASS": "pg_regclass", "REGTYPE": "pg_regtype", "REGPROC": "pg_regproc"}
_RENAMED_FUNCTIONS = {
    "JSON_BUILD_OBJECT": "json_object",
    "JSONB_BUILD_OBJECT": "json_object",
    "CURRENT_DATABASE": "current_database",
    "CURRENT_SCHEMAS": "current_schemas",
    "CURRENT_SETTING": "current_setting",
}


# sqlglot's nodes for functions SQLite lacks, called by their PostgreSQL names
# (registered by functions.py).
_NAMED_FUNCTIONS = (
    exp.CurrentVersion,
    exp.CurrentSchema,
    exp.CurrentUser,
    exp.SessionUser,
    exp.Uuid,
)


def _function(name: str, *args: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this=name, expressions=list(args))


def _sqlite_node(node: exp.Expr) -> exp.Expr:
    """One node of a PostgreSQL tree as SQLite can run it."""
    if isinstance(node, exp.Parameter) and isinstance(node.this, exp.Literal):
        return exp.var(f"?{node.this.this}")
    if isinstance(node, exp.Dot) and _is_pg_catalog(node.this):
        # pg_catalog.version(): the functions are SQLite's own, unqualified.
        function: exp.Expr = node.expression
        return function
    if isinstance(node, exp.Collate) and _default_collation(node.expression):
        collated: exp.Expr = node.this
        return collated
    if isinstance(node, exp.Operator):
        return _operator(node)
    if isinstance(node, exp.Cast):
        to = _catalog_type(node.to)
        if to.is_type(exp.DataType.Type.ARRAY):
            array: exp.Expr = node.this  # arrays are their text form
            return array
        if isinstance(to, exp.ObjectIdentifier):
            name = to.name.upper()
            if name in _OID_CASTS:
                return _function(_OID_CASTS[name], node.this)
            return exp.cast(node.this, exp.DataType.build("BIGINT"))  # oid, regnamespace, ...
        if to.is_type(exp.DataType.Type.BOOLEAN):
            # SQLite would make 'true' 0: PostgreSQL's spellings of a boolean.
            return _function("pg_bool", node.this)
    if isinstance(node, exp.Table) and isinstance(node.this, exp.ExplodingGenerateSeries):
        series = node.this
        args = [series.args["start"], series.args["end"]]
        if series.args.get("step") is not None:
            args.append(series.args["step"])
        return _set_returning(node.alias or "generate_series", None, "generate_series", args)
    if isinstance(node, exp.Unnest) and len(node.expressions) == 1:
        alias = node.args.get("alias")
        name = alias.name if alias is not None and alias.name else "unnest"
        columns = alias.columns if alias is not None else []
        array = _function("pg_array_json", node.expressions[0])
        return _set_returning(name, columns[0].name if columns else None, "json_each", [array])
    if isinstance(node, exp.Select):
        return _lateral(node)
    if isinstance(node, exp.Bracket) and len(node.expressions) == 1:
        return _function("pg_array_get", node.this, node.expressions[0])
    if isinstance(node, exp.Table):
        return _table(node)
    if isinstance(node, exp.Column) and isinstance(node.args.get("db"), exp.Identifier):
        # pg_catalog.pg_class.relname: the relation's own name (or alias) is enough.
        schema = node.args["db"].name.lower()
        if schema in ("pg_catalog", "information_schema"):
            node.set("db", None)
        elif schema == "public":
            node.set("db", exp.to_identifier("main"))
        return node
    if isinstance(node, exp.ByteString):
        # E'...': sqlglot has already read the escapes.
        return exp.Literal.string(node.this)
    if isinstance(node, exp.RegexpILike):
        return _regexp(node.this, node.expression, insensitive=True)
    if isinstance(node, _NAMED_FUNCTIONS):
        return _function(_FUNCTION_NAMES[type(node)])
    if isinstance(node, exp.Anonymous) and isinstance(node.this, str):
        renamed = _RENAMED_FUNCTIONS.get(node.this.upper())
        if renamed is not None:
            node.set("this", renamed)
        return node
    if isinstance(node, exp.Array):
        return _array(node)
    if isinstance(node, exp.ArrayAgg):
        return _function("pg_array_agg", node.this)
    if isinstance(node, exp.EQ) and isinstance(node.expression, exp.Any):
        values = node.expression.this
        if isinstance(values, exp.Paren):
            values = values.this
        if isinstance(values, exp.Anonymous) and values.name == "pg_array":
            return exp.In(this=node.this, expressions=list(values.expressions))
        # = ANY(an array: a column, a parameter): its elements, as JSON.
        elements = exp.select("value").from_(
            exp.Anonymous(this="json_each", expressions=[_function("pg_array_json", values)])
        )
        return exp.In(this=node.this, query=exp.Subquery(this=elements))
    return node


def _set_returning(alias: str, column: str | None, function: str, args: list[exp.Expr]) -> exp.Expr:
    """A set-returning function in FROM, ``generate_series(1, 3) s``: its one
    column is named after the alias, as in PostgreSQL, so ``s`` is a value."""
    rows = exp.select(exp.alias_(exp.column("value"), column or alias, quoted=True)).from_(
        exp.Anonymous(this=function, expressions=args)
    )
    return exp.alias_(exp.Subquery(this=rows), alias, table=True, quoted=True)


def _srf_array(node: exp.Expr) -> exp.Expr | None:
    """The array of a set-returning function in a select list (unnest(a),
    generate_subscripts(a, 1)), or None if ``node`` is none."""
    if isinstance(node, exp.Explode):
        array: exp.Expr = node.this
        return array
    if isinstance(node, exp.Anonymous) and node.name.lower() == "generate_subscripts":
        return node.expressions[0] if node.expressions else None
    return None


def _lateral(select: exp.Select) -> exp.Select:
    """unnest(a) and generate_subscripts(a, 1) in a select list: one row per
    element of a, as a correlated json_each joined to the query's tables;
    several arrays are zipped by position, as PostgreSQL does for arrays of
    one length."""
    found = [(i, e) for i, e in enumerate(select.expressions) if _srf_array(e.unalias())]
    if not found:
        return select
    aliases: dict[str, str] = {}  # the array's SQL -> its json_each's alias
    joins: list[exp.Expr] = []
    for i, projection in found:
        inner = projection.unalias()
        array = _srf_array(inner)
        assert array is not None
        key = array.sql()
        if key not in aliases:
            alias = f"heliosdb_elements_{len(aliases) + 1}"
            aliases[key] = alias
            each = exp.Table(
                this=exp.Anonymous(
                    this="json_each", expressions=[_function("pg_array_json", array.copy())]
                ),
                alias=exp.TableAlias(this=exp.to_identifier(alias)),
            )
            if joins or select.args.get("from_") is not None:
                first = next(iter(aliases.values()))
                on = (
                    None
                    if alias == first
                    else exp.column("key", alias).eq(exp.column("key", first))
                )
                joins.append(exp.Join(this=each, on=on))
            else:
                select.set("from_", exp.From(this=each))
        alias = aliases[key]
        if isinstance(inner, exp.Explode):
            value: exp.Expr = exp.column("value", alias)
        else:
            value = exp.Add(this=exp.column("key", alias), expression=exp.Literal.number(1))
        if isinstance(projection, exp.Alias):
            projection.set("this", value)
        else:
            name = "unnest" if isinstance(inner, exp.Explode) else "generate_subscripts"
            select.expressions[i] = exp.alias_(value, name, quoted=True)
    for join in joins:
        select.append("joins", join)
    return select


def _table(node: exp.Table) -> exp.Table:
    """public.t is SQLite's main.t; the catalog's relations are eponymous
    virtual tables (catalog.py): pg_catalog.pg_class is pg_class, and
    information_schema.tables is information_schema_tables."""
    db = node.args.get("db")
    schema = db.name.lower() if isinstance(db, exp.Identifier) else ""
    if schema == "public":
        node.set("db", exp.to_identifier("main"))
    elif schema == "pg_catalog":
        node.set("db", None)
    elif schema == "information_schema":
        name = node.name
        node.set("this", exp.to_identifier(f"information_schema_{name.lower()}"))
        node.set("db", None)
        if not node.alias:
            node.set("alias", exp.TableAlias(this=exp.to_identifier(name)))
    return node


def _catalog_type(to: exp.Expr) -> exp.Expr:
    """pg_catalog.regtype, pg_catalog.text: the type itself."""
    kind = to.args.get("kind") if isinstance(to, exp.DataType) else None
    if isinstance(kind, exp.Dot) and _is_pg_catalog(kind.this):
        name = kind.expression.name
        if name.lower() in ("regclass", "regtype", "regproc", "oid", "regnamespace", "regrole"):
            return exp.ObjectIdentifier(this=name.upper())
        return exp.DataType.build(name, dialect="postgres")
    return to


def _array(node: exp.Array) -> exp.Expr:
    """ARRAY[a, b] and ARRAY(SELECT x ...) in PostgreSQL's text form of an
    array, which clients read (functions.pg_array, pg_array_agg)."""
    items = list(node.expressions)
    if len(items) == 1 and isinstance(items[0], exp.Select) and len(items[0].selects) == 1:
        query = items[0]
        only = query.selects[0].unalias()
        query.set("expressions", [_function("pg_array_agg", only)])
        # ARRAY() of no rows is the empty array; array_agg of none is NULL.
        return _function("coalesce", exp.Subquery(this=query), exp.Literal.string("{}"))
    return _function("pg_array", *items)


def _is_pg_catalog(node: exp.Expr) -> bool:
    return isinstance(node, exp.Identifier) and node.name.lower() == "pg_catalog"


def _default_collation(node: exp.Expr) -> bool:
    return isinstance(node, exp.Column) and node.name.lower() in ("default", "c")


def _operator(node: exp.Operator) -> exp.Expr:
    """OPERATOR(pg_catalog.op): the operator itself."""
    op = str(node.args.get("operator", "")).rsplit(".", 1)[-1].strip()
    left, right = node.this, node.expression
    if op in ("~", "~*"):
        return _regexp(left, right, insensitive=op == "~*")
    if op in ("!~", "!~*"):
        return exp.not_(_regexp(left, right, insensitive=op == "!~*"))
    comparison = _COMPARISONS.get(op)
    if comparison is None:
        raise sqlglot.errors.UnsupportedError(f"operator {op}")
    return comparison(this=left, expression=right)


def _regexp(value: exp.Expr, pattern: exp.Expr, *, insensitive: bool) -> exp.Expr:
    if insensitive:
        # The inline flag of Python's re, which the regexp function uses.
        pattern = exp.Paren(this=exp.DPipe(this=exp.Literal.string("(?i)"), expression=pattern))
    return exp.RegexpLike(this=value, expression=pattern)
