"""What a prepared statement's result columns and parameters are, before it runs.

PostgreSQL's extended protocol describes a statement before it has run, and
drivers (asyncpg above all) then read every result and send every parameter
in the types described, in binary. SQLite knows a column's declared type when
the column is a table's, and nothing about expressions or parameters, so the
types here come from one rule that the execution then keeps
(``codec.coerce``):

- a column of a table has its declared type (SQLite's affinity rules);
- an expression has the type its parts give it: literals, casts, operators,
  aggregates, SQLite's and PostgreSQL's functions, and the declared return
  type of a registered procedure;
- a parameter has the type of what it is compared with, assigned to, cast
  to or passed as (a column, a procedure's argument, LIMIT and OFFSET);
- whatever none of that reaches is text, and its values are sent as text.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import apsw
import apsw.ext
import sqlglot
import sqlglot.errors
from sqlglot import exp

from ..database import Database
from ..values import Signature, SqlType
from .codec import (
    ARRAY_OF,
    FLOAT_OIDS,
    INT_OIDS,
    OID_BOOL,
    OID_BYTEA,
    OID_FLOAT8,
    OID_INT8,
    OID_NUMERIC,
    OID_TEXT,
    OID_TEXT_ARRAY,
    STRING_OIDS,
    declared_oid,
)
from .dialect import keywords, quoted
from .translate import to_sqlite

_SQL_TYPES = {
    SqlType.BIGINT: OID_INT8,
    SqlType.INTEGER: OID_INT8,
    SqlType.DOUBLE: OID_FLOAT8,
    SqlType.REAL: OID_FLOAT8,
    SqlType.BOOLEAN: OID_BOOL,
    SqlType.TEXT: OID_TEXT,
    SqlType.BLOB: OID_BYTEA,
    SqlType.JSON: OID_TEXT,
}
_TEXT_FUNCTIONS = {
    "char",
    "current_database",
    "current_schema",
    "current_setting",
    "current_user",
    "format",
    "gen_random_uuid",
    "group_concat",
    "hex",
    "json",
    "json_array",
    "json_group_array",
    "json_group_object",
    "json_object",
    "json_quote",
    "ltrim",
    "printf",
    "quote",
    "replace",
    "rtrim",
    "session_user",
    "soundex",
    "sqlite_version",
    "string_agg",
    "trim",
    "typeof",
    "version",
}
_INT_FUNCTIONS = {
    "changes",
    "instr",
    "last_insert_rowid",
    "pg_backend_pid",
    "pg_regclass",
    "pg_regproc",
    "pg_regtype",
    "random",
    "total_changes",
    "unicode",
}
_BOOL_FUNCTIONS = {"pg_bool", "regexp", "logical_and", "logical_or", "every"}
_ARRAY_FUNCTIONS = {"array_agg", "pg_array", "pg_array_agg", "array"}
_BOOLEAN_NODES = (
    exp.Predicate,
    exp.Connector,
    exp.Not,
    exp.Exists,
    exp.Boolean,
)
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)
_SAME_AS_ARGUMENT = (exp.Min, exp.Max, exp.Abs, exp.Sum)
_DESCRIBED_VERBS = {"SELECT", "WITH", "VALUES", "INSERT", "UPDATE", "DELETE", "TABLE"}


@dataclass(frozen=True)
class Description:
    columns: list[tuple[str, int]] | None
    """Name and type oid of each result column; None: the statement returns no rows."""
    params: dict[int, int]
    """Type oid of each parameter whose type could be told, by its number."""


def describe(db: Database, sql: str, given: Sequence[int] = ()) -> Description | None:
    """The columns and parameter types of ``sql`` (``?n`` placeholders)
    where the client gave the types ``given`` (0: none); None when it is not
    SQLite's (a CALL, the engine's DDL, SHOW)."""
    sqlite_sql = to_sqlite(sql)
    try:
        description = apsw.ext.query_info(db.conn, sqlite_sql).description
    except Exception:  # noqa: BLE001 - not plain SQLite: it cannot be described
        return None
    words = keywords(sql, 1)
    tree = _tree(sql) if words and words[0] in _DESCRIBED_VERBS else None
    types = _Types(db, tree, given)
    params = types.params() if tree is not None else {}
    if not description:
        return Description(None, params)
    projections = types.projections(len(description))
    columns = []
    for i, (name, decltype) in enumerate(description):
        oid = declared_oid(decltype)
        if oid is None and projections is not None:
            oid = types.of(projections[i])
        columns.append((name, oid or OID_TEXT))
    return Description(columns, params)


@functools.lru_cache(maxsize=512)
def _parsed(sql: str) -> exp.Expr | None:
    text = sql.replace("?", "$") if "?" in sql else sql
    try:
        return sqlglot.parse_one(text, read="postgres")
    except (sqlglot.errors.SqlglotError, RecursionError, ValueError):
        return None


def _tree(sql: str) -> exp.Expr | None:
    # Placeholders are ?n here, and sqlglot reads PostgreSQL's $n; a ? inside
    # a string literal only changes the literal, which no type depends on.
    # The cached tree is shared: _Types only reads it.
    return _parsed(sql)


class _Types:
    """Types of one statement's expressions (its tables' columns read once)."""

    def __init__(self, db: Database, tree: exp.Expr | None, given: Sequence[int]) -> None:
        self.db = db
        self.tree = tree
        self.given = given
        self._columns: dict[str, dict[str, str]] | None = None
        self._inferring: set[int] = set()  # parameters being typed ($1 = $2)
        self._derived: dict[str, dict[str, exp.Expr]] | None = None

    # -- columns of the statement's tables ---------------------------------------------

    def _table_columns(self) -> dict[str, dict[str, str]]:
        """Declared types by table alias (and name), then column, lower case."""
        if self._columns is None:
            self._columns = {}
            assert self.tree is not None
            for table in self.tree.find_all(exp.Table):
                declared = self._declared(table.name)
                if declared is None:
                    continue
                self._columns[table.name.lower()] = declared
                if table.alias:
                    self._columns[table.alias.lower()] = declared
        return self._columns

    def _declared(self, table: str) -> dict[str, str] | None:
        # Prepared, not run: a statement run inside the client's transaction
        # would start its read snapshot before its first write, which could
        # then no longer wait for another writer (SQLITE_BUSY_SNAPSHOT).
        try:
            sql = f"SELECT * FROM {quoted(table)}"
            description = apsw.ext.query_info(self.db.conn, sql).description
        except apsw.Error:
            return None
        return {str(name).lower(): str(decl or "") for name, decl in description or ()} or None

    def _column(self, column: exp.Column) -> int | None:
        tables = self._table_columns()
        name = column.name.lower()
        derived = self._derived_columns()
        if column.table and column.table.lower() in derived:
            # A column of a subquery or CTE: the type of its expression there.
            source = derived[column.table.lower()].get(name)
            if source is None or id(source) in self._inferring:
                return None
            self._inferring.add(id(source))
            try:
                return self.of(source)
            finally:
                self._inferring.discard(id(source))
        if column.table:
            decl = tables.get(column.table.lower(), {}).get(name)
        else:
            found = [t[name] for t in tables.values() if name in t]
            decl = found[0] if found else None
        return declared_oid(decl) if decl is not None else None

    def _derived_columns(self) -> dict[str, dict[str, exp.Expr]]:
        """The select lists of the statement's subqueries and CTEs, by their alias."""
        if self._derived is None:
            self._derived = {}
            assert self.tree is not None
            for node in self.tree.find_all(exp.Subquery, exp.CTE):
                query = node.this
                if node.alias and isinstance(query, exp.Select):
                    self._derived[node.alias.lower()] = {
                        e.alias_or_name.lower(): e for e in query.selects
                    }
        return self._derived

    # -- result columns ------------------------------------------------------------------

    def projections(self, count: int) -> Sequence[exp.Expr] | None:
        """The expressions of the statement's result, if there are ``count``."""
        tree = self.tree
        if tree is None:
            return None
        if isinstance(tree, exp.Insert | exp.Update | exp.Delete):
            returning = tree.args.get("returning")
            selected = list(returning.expressions) if returning is not None else []
        elif isinstance(tree, exp.Query):
            selected = list(tree.selects)
        else:
            return None
        if any(isinstance(e, exp.Star) or isinstance(e.unalias(), exp.Star) for e in selected):
            return None
        return selected if len(selected) == count else None

    def of(self, node: exp.Expr) -> int | None:
        """The type oid of an expression, or None if its parts do not tell."""
        node = node.unalias()
        if isinstance(node, exp.Paren):
            return self.of(node.this)
        if isinstance(node, exp.Literal):
            if node.is_string:
                return OID_TEXT
            return OID_INT8 if node.this.lstrip("-").isdigit() else OID_FLOAT8
        if isinstance(node, exp.Column):
            return self._column(node)
        if isinstance(node, exp.Parameter):
            number = _number(node)
            if number is not None and number <= len(self.given) and self.given[number - 1]:
                return family(self.given[number - 1])
            if id(node) in self._inferring:
                return None
            self._inferring.add(id(node))
            try:
                return self._param(node)
            finally:
                self._inferring.discard(id(node))
        if isinstance(node, exp.Cast):
            return cast_oid(node.to)
        if isinstance(node, _BOOLEAN_NODES):
            return OID_BOOL
        if isinstance(node, exp.DPipe):
            return OID_TEXT
        if isinstance(node, exp.Neg):
            return self.of(node.this)
        if isinstance(node, _ARITHMETIC):
            left, right = self.of(node.this), self.of(node.expression)
            if left == right == OID_INT8:
                return OID_INT8
            if {left, right} <= {OID_INT8, OID_FLOAT8}:
                return OID_FLOAT8
            return None
        if isinstance(node, exp.Count):
            return OID_INT8
        if isinstance(node, exp.Avg | exp.Round):
            return OID_FLOAT8
        if isinstance(node, exp.Length):
            return OID_INT8
        if isinstance(node, exp.Lower | exp.Upper | exp.Substring | exp.Trim | exp.GroupConcat):
            return OID_TEXT
        if isinstance(node, _SAME_AS_ARGUMENT):
            return self.of(node.this)
        if isinstance(node, exp.Coalesce):
            for arg in [node.this, *node.expressions]:
                oid = self.of(arg)
                if oid is not None:
                    return oid
            return None
        if isinstance(node, exp.Case):
            for branch in node.args.get("ifs") or []:
                oid = self.of(branch.args["true"])
                if oid is not None:
                    return oid
            default = node.args.get("default")
            return self.of(default) if default is not None else None
        inner = node.unnest() if isinstance(node, exp.Subquery) else node
        if isinstance(inner, exp.Select):
            selects = inner.selects
            return self.of(selects[0]) if len(selects) == 1 else None
        if isinstance(node, exp.Func):
            return self._function(node)
        return None

    def _function(self, node: exp.Func) -> int | None:
        name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
        if name in _TEXT_FUNCTIONS or isinstance(node, exp.CurrentVersion | exp.CurrentUser):
            return OID_TEXT
        if name in _INT_FUNCTIONS:
            return OID_INT8
        if name in _BOOL_FUNCTIONS:
            return OID_BOOL
        if name in _ARRAY_FUNCTIONS or isinstance(node, exp.Array | exp.ArrayAgg):
            return self._array(node)
        signature = self._procedure(name)
        if signature is not None and signature.returns is not None:
            return _SQL_TYPES[signature.returns]
        return None

    def _array(self, node: exp.Func) -> int:
        """An array's type by its elements' (array_agg(x), ARRAY[a, b])."""
        if isinstance(node, exp.ArrayAgg):
            parts = [node.this.this if isinstance(node.this, exp.Order) else node.this]
        else:
            parts = list(node.expressions)
        kinds = {self.of(p) for p in parts if p is not None}
        element = kinds.pop() if len(kinds) == 1 else None
        return ARRAY_OF.get(element, OID_TEXT_ARRAY) if element is not None else OID_TEXT_ARRAY

    def _procedure(self, name: str) -> Signature | None:
        return self.db.signature(name)

    # -- parameters ----------------------------------------------------------------------

    def params(self) -> dict[int, int]:
        """The type of each placeholder whose context tells it."""
        assert self.tree is not None
        found: dict[int, int] = {}
        for param in self.tree.find_all(exp.Parameter):
            number = _number(param)
            if number is None or number in found:
                continue
            oid = self.of(param)
            if oid is not None:
                found[number] = oid
        return found

    def _param(self, param: exp.Expr) -> int | None:
        parent = param.parent
        if isinstance(parent, exp.Paren | exp.Neg):
            return self._param(parent)
        if isinstance(parent, exp.Cast):
            return cast_oid(parent.to)
        if isinstance(parent, exp.Limit | exp.Offset | exp.Fetch):
            return OID_INT8
        if isinstance(parent, exp.DPipe | exp.Like | exp.ILike | exp.RegexpLike):
            return OID_TEXT
        if isinstance(parent, exp.Binary) and not isinstance(parent, exp.Connector):
            # a = $1, $1 < a + 1, SET a = $1: the other side's type.
            return self.of(parent.expression if param is parent.this else parent.this)
        if isinstance(parent, exp.In) and param is parent.this:
            values = [self.of(e) for e in parent.expressions]
            return next((v for v in values if v is not None), None)
        if isinstance(parent, exp.In):
            return self.of(parent.this)
        if isinstance(parent, exp.Between):
            return self.of(parent.this) if param is not parent.this else None
        if isinstance(parent, exp.Anonymous):
            return self._argument(parent, param)
        if isinstance(parent, exp.Tuple):
            return self._inserted(parent, param)
        return None

    def _argument(self, call: exp.Anonymous, param: exp.Expr) -> int | None:
        signature = self._procedure(call.name.lower())
        if signature is None:
            return None
        params = signature.params
        index = next(i for i, e in enumerate(call.expressions) if e is param)
        return _SQL_TYPES[params[index].type] if index < len(params) else None

    def _inserted(self, row: exp.Tuple, param: exp.Expr) -> int | None:
        """INSERT INTO t (a, b) VALUES ($1, $2): the types of a and b."""
        insert = row.find_ancestor(exp.Insert)
        if insert is None or not isinstance(row.parent, exp.Values):
            return None
        target = insert.this
        table = target.this if isinstance(target, exp.Schema) else target
        if not isinstance(table, exp.Table):
            return None
        declared = self._declared(table.name) or {}
        if isinstance(target, exp.Schema):
            names = [c.name.lower() for c in target.expressions]
        else:
            names = list(declared)
        index = next(i for i, e in enumerate(row.expressions) if e is param)
        if index >= len(names):
            return None
        return declared_oid(declared.get(names[index]))


def _number(param: exp.Expr) -> int | None:
    literal = param.this
    if isinstance(literal, exp.Literal) and literal.this.isdigit():
        return int(literal.this)
    return None


def family(oid: int) -> int | None:
    """The type a value of a parameter of type ``oid`` is sent back as."""
    if oid in INT_OIDS:
        return OID_INT8
    if oid in FLOAT_OIDS or oid == OID_NUMERIC:
        return OID_FLOAT8  # SQLite's numbers are 64-bit integers and doubles
    if oid in (OID_BOOL, OID_BYTEA):
        return oid
    if oid in STRING_OIDS:
        return OID_TEXT
    return None  # dates, uuids, ...: their text


def cast_oid(to: exp.Expr) -> int | None:
    """The oid of a cast's target type (dates and other types SQLite keeps as text: text)."""
    if isinstance(to, exp.ObjectIdentifier):
        # ::oid is a number; ::regclass and the like read a name (or a number).
        return OID_INT8 if to.name.upper() == "OID" else OID_TEXT
    if not isinstance(to, exp.DataType):
        return None
    if to.is_type(*exp.DataType.INTEGER_TYPES):
        return OID_INT8
    if to.is_type(*exp.DataType.REAL_TYPES):
        return OID_FLOAT8
    if to.is_type(exp.DataType.Type.BOOLEAN):
        return OID_BOOL
    if to.is_type(exp.DataType.Type.VARBINARY, exp.DataType.Type.BINARY, exp.DataType.Type.BLOB):
        return OID_BYTEA
    return OID_TEXT
