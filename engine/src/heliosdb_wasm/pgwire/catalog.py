"""``pg_catalog`` and ``information_schema`` for clients, built from SQLite's
schema and the registry's procedures.

psql's backslash commands, SQLAlchemy's reflection and drivers' type
introspection read PostgreSQL's catalog. Here each relation is a read-only
eponymous virtual table on the client's connection (``pg_class``,
``information_schema_tables``; ``translate`` drops the ``pg_catalog.``
qualifier and renames ``information_schema.x``), whose rows come from a
snapshot of the schema taken when SQLite's schema, the database's data or
this connection's changes have moved since the last one. Nothing is stored
and nothing can be written: a client cannot make the catalog lie.

Object ids are stable while an object exists: a table's, view's or index's is
derived from its kind and name (16384 and up, as PostgreSQL's user objects),
so the oid psql reads in one query names the same table in the next. The
engine's own tables are not shown. Types are the ones the endpoint sends
(``describe``): a column declared DATE is text here as on the wire.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import apsw

from ..database import Database
from ..roles import Role
from ..values import Signature, SqlType, SqlValue
from .codec import OID_TEXT, array_text, declared_oid
from .errors import WireError
from .functions import array_to_string
from .session import WireSession

PG_CATALOG, PUBLIC, INFORMATION_SCHEMA = 11, 2200, 13000
OWNER = 10  # the session's user, who owns every object
HEAP, BTREE = 2, 403
WASM_LANGUAGE = 16000
_FIRST_USER_OID = 16384

# oid, name, length, category, array oid (0: none), element oid (arrays)
_TYPES: list[tuple[int, str, int, str, int, int]] = [
    (16, "bool", 1, "B", 1000, 0),
    (17, "bytea", -1, "U", 1001, 0),
    (18, "char", 1, "Z", 1002, 0),
    (19, "name", 64, "S", 1003, 0),
    (20, "int8", 8, "N", 1016, 0),
    (21, "int2", 2, "N", 1005, 0),
    (23, "int4", 4, "N", 1007, 0),
    (25, "text", -1, "S", 1009, 0),
    (26, "oid", 4, "N", 1028, 0),
    (114, "json", -1, "U", 199, 0),
    (700, "float4", 4, "N", 1021, 0),
    (701, "float8", 8, "N", 1022, 0),
    (705, "unknown", -2, "X", 0, 0),
    (1042, "bpchar", -1, "S", 1014, 0),
    (1043, "varchar", -1, "S", 1015, 0),
    (1082, "date", 4, "D", 1182, 0),
    (1083, "time", 8, "D", 1183, 0),
    (1114, "timestamp", 8, "D", 1115, 0),
    (1184, "timestamptz", 8, "D", 1185, 0),
    (1186, "interval", 16, "T", 1187, 0),
    (1700, "numeric", -1, "N", 1231, 0),
    (2249, "record", -1, "P", 2287, 0),
    (2278, "void", 4, "P", 0, 0),
    (2950, "uuid", 16, "U", 2951, 0),
    (3802, "jsonb", -1, "U", 3807, 0),
]
_TYPES += [
    (array, f"_{name}", -1, "A", 0, oid) for oid, name, _, _, array, _ in list(_TYPES) if array
]
_TYPE_NAMES = {t[0]: t[1] for t in _TYPES}
# What format_type() says (PostgreSQL's SQL names).
_SQL_NAMES = {
    16: "boolean",
    20: "bigint",
    21: "smallint",
    23: "integer",
    701: "double precision",
    700: "real",
    1043: "character varying",
    1042: "character",
    1114: "timestamp without time zone",
    1184: "timestamp with time zone",
    1083: "time without time zone",
}
_PROCEDURE_TYPES = {
    SqlType.BIGINT: 20,
    SqlType.INTEGER: 20,
    SqlType.DOUBLE: 701,
    SqlType.REAL: 701,
    SqlType.BOOLEAN: 16,
    SqlType.TEXT: 25,
    SqlType.BLOB: 17,
    SqlType.JSON: 25,
}


def column_type(declared: str | None) -> int:
    """A table column's type oid: the rule ``describe`` and the wire follow."""
    return declared_oid(declared) or OID_TEXT


def format_type(oid: int | None) -> str | None:
    if oid is None:
        return None
    if oid in _SQL_NAMES:
        return _SQL_NAMES[oid]
    name = _TYPE_NAMES.get(oid)
    if name is None:
        return "???"
    return f"{_TYPE_NAMES[-oid]}[]" if -oid in _TYPE_NAMES else name


def _oid(kind: str, name: str) -> int:
    return _FIRST_USER_OID + zlib.crc32(f"{kind}:{name.lower()}".encode()) % 2_000_000_000


def _quoted(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


# --- the snapshot ---------------------------------------------------------------------


@dataclass
class _Column:
    name: str
    declared: str
    notnull: bool
    default: str | None
    pk: int
    generated: bool


@dataclass
class _Index:
    oid: int
    name: str
    table: str
    unique: bool
    primary: bool
    columns: list[int]  # attnums; 0 for an expression
    partial: bool
    sql: str | None


@dataclass
class _Relation:
    oid: int
    name: str
    kind: str  # r, v, i
    columns: list[_Column] = field(default_factory=list)
    sql: str | None = None


@dataclass
class _Constraint:
    oid: int
    name: str
    kind: str  # p, f, u
    table: int
    index: int
    columns: list[int]
    references: int = 0
    referenced: list[int] = field(default_factory=list)
    definition: str = ""


@dataclass
class _Procedure:
    oid: int
    name: str
    signature: Signature
    export: str


@dataclass
class Snapshot:
    relations: list[_Relation]
    indexes: list[_Index]
    constraints: list[_Constraint]
    procedures: list[_Procedure]
    roles: list[Role] = field(default_factory=list)
    by_oid: dict[int, _Relation] = field(init=False)
    by_name: dict[str, _Relation] = field(init=False)

    def __post_init__(self) -> None:
        self.by_oid = {r.oid: r for r in self.relations}
        self.by_name = {r.name.lower(): r for r in self.relations}


def _engine_table(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith(("_heliosdb", "sqlite_")) and not lowered.startswith(
        "sqlite_autoindex"
    )


def take_snapshot(db: Database) -> Snapshot:
    """The schema as it stands (the engine's own statements: the registry is read)."""
    conn = db.conn
    with db.session.internal():
        objects = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_schema"
            " WHERE type IN ('table', 'view') ORDER BY name"
        ).fetchall()
        relations = [
            _table(conn, str(name), str(kind), str(sql) if sql is not None else None)
            for kind, name, _table_name, sql in objects
            if not _engine_table(str(name))
        ]
        indexes: list[_Index] = []
        constraints: list[_Constraint] = []
        tables = {r.name.lower(): r for r in relations}
        for relation in list(relations):
            if relation.kind == "r":
                _keys(conn, relation, tables, relations, indexes, constraints)
        procedures = [
            _Procedure(_oid("proc", p.name), p.name, p.signature, p.export) for p in db.procedures()
        ]
        roles = db.roles()
    return Snapshot(relations, indexes, constraints, procedures, roles)


def _table(conn: apsw.Connection, name: str, kind: str, sql: str | None) -> _Relation:
    relation = _Relation(_oid(kind, name), name, "r" if kind == "table" else "v", sql=sql)
    for column, declared, notnull, default, pk, hidden in conn.execute(
        'SELECT name, type, "notnull", dflt_value, pk, hidden FROM pragma_table_xinfo(?)',
        (name,),
    ):
        if hidden == 1:  # a virtual table's hidden column
            continue
        # An INTEGER PRIMARY KEY is the rowid, which is never NULL.
        rowid = bool(pk) and str(declared or "").upper() == "INTEGER"
        relation.columns.append(
            _Column(
                str(column), str(declared or ""), bool(notnull) or rowid, default, int(pk),
                hidden > 1,
            )
        )  # fmt: skip
    return relation


def _keys(
    conn: apsw.Connection,
    relation: _Relation,
    tables: dict[str, _Relation],
    relations: list[_Relation],
    indexes: list[_Index],
    constraints: list[_Constraint],
) -> None:
    """A table's indexes (each one a relation too), primary key, unique
    constraints and foreign keys."""
    attnum = {c.name.lower(): i for i, c in enumerate(relation.columns, 1)}
    primary = [attnum[c.name.lower()] for c in sorted(relation.columns, key=lambda c: c.pk) if c.pk]
    has_primary_index = False
    listed = conn.execute(
        'SELECT name, "unique", origin, partial FROM pragma_index_list(?) ORDER BY name',
        (relation.name,),
    ).fetchall()
    for name, unique, origin, partial in listed:
        cols = [
            attnum.get(str(col).lower(), 0) if cid >= 0 else 0
            for cid, col, key in conn.execute(
                "SELECT cid, name, key FROM pragma_index_xinfo(?) ORDER BY seqno", (name,)
            )
            if key
        ]
        sql = conn.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (name,)).fetchone()
        index = _Index(
            _oid("index", str(name)),
            str(name),
            relation.name,
            bool(unique),
            origin == "pk",
            cols,
            bool(partial),
            sql[0] if sql else None,
        )
        has_primary_index |= index.primary
        indexes.append(index)
        relations.append(_Relation(index.oid, index.name, "i"))
        if origin in ("pk", "u"):
            constraints.append(
                _constraint(relation, "p" if origin == "pk" else "u", index.oid, cols)
            )
    if primary and not has_primary_index:
        # INTEGER PRIMARY KEY is the rowid: SQLite has no index for it, PostgreSQL would.
        name = f"{relation.name}_pkey"
        index = _Index(_oid("index", name), name, relation.name, True, True, primary, False, None)
        indexes.append(index)
        relations.append(_Relation(index.oid, name, "i"))
        constraints.append(_constraint(relation, "p", index.oid, primary))
    keys: dict[int, list[tuple[str, str | None, str]]] = {}
    for fk_id, table, column, to in conn.execute(
        'SELECT id, "table", "from", "to" FROM pragma_foreign_key_list(?) ORDER BY id, seq',
        (relation.name,),
    ):
        keys.setdefault(int(fk_id), []).append((str(column), to, str(table)))
    for fk_id, pairs in keys.items():
        target = pairs[0][2]
        other = tables.get(target.lower())
        other_attnum = {c.name.lower(): i for i, c in enumerate(other.columns, 1)} if other else {}
        if other is not None and not any(to for _, to, _ in pairs):
            referenced = [other_attnum[c.name.lower()] for c in other.columns if c.pk]
        else:
            referenced = [other_attnum.get((to or "").lower(), 0) for _, to, _ in pairs]
        to_columns = f"({', '.join(_quoted(t) for _, t, _ in pairs if t)})" if pairs[0][1] else ""
        constraints.append(
            _Constraint(
                _oid("constraint", f"{relation.name}:f:{fk_id}"),
                f"{relation.name}_{'_'.join(c for c, _, _ in pairs)}_fkey",
                "f",
                relation.oid,
                0,
                [attnum.get(c.lower(), 0) for c, _, _ in pairs],
                other.oid if other else 0,
                referenced,
                f"FOREIGN KEY ({', '.join(_quoted(c) for c, _, _ in pairs)}) REFERENCES "
                f"{_quoted(target)}{to_columns}",
            )
        )


def _constraint(relation: _Relation, kind: str, index: int, cols: list[int]) -> _Constraint:
    names = [relation.columns[c - 1].name for c in cols if c]
    suffix = "pkey" if kind == "p" else "_".join(names) + "_key"
    word = "PRIMARY KEY" if kind == "p" else "UNIQUE"
    return _Constraint(
        _oid("constraint", f"{relation.name}:{kind}:{index}"),
        f"{relation.name}_{suffix}",
        kind,
        relation.oid,
        index,
        cols,
        definition=f"{word} ({', '.join(_quoted(n) for n in names)})",
    )


# --- the relations ----------------------------------------------------------------------

Row = tuple[SqlValue, ...]
Rows = Iterator[Row] | Sequence[Row]


def _vector(values: Sequence[int]) -> str:
    """int2vector and oidvector text: space-separated."""
    return " ".join(str(v) for v in values)


def schema_stamp(conn: apsw.Connection) -> tuple[int, int, int]:
    """What changes when the schema or the registry may have: SQLite's schema
    version, the data version (another connection committed) and this
    connection's own changes. Reading it starts a read transaction."""
    return (
        int(conn.pragma("schema_version")),
        int(conn.pragma("data_version")),
        int(conn.total_changes()),
    )


class _Context:
    """What the relations answer from: the connection's session and snapshot."""

    def __init__(self, db: Database, session: WireSession) -> None:
        self.db = db
        self.session = session
        self._snapshot: Snapshot | None = None
        self._stamp: tuple[int, int, int] | None = None

    @property
    def user(self) -> str:
        return self.session.params.get("user", "")

    @property
    def database(self) -> str:
        return self.session.params.get("database", self.user)

    def roles(self) -> list[tuple[int, str, Role | None]]:
        """(oid, name, role) of every role, the session's user first with
        OWNER's oid (under trust it may have no role row: None)."""
        stored = {r.name: r for r in self.snapshot().roles}
        user = self.user
        rows: list[tuple[int, str, Role | None]] = [(OWNER, user, stored.pop(user, None))]
        rows += [(_oid("role", name), name, role) for name, role in stored.items()]
        return rows

    def snapshot(self) -> Snapshot:
        """The schema, taken again when it (or any data: procedures are rows) changed."""
        stamp = schema_stamp(self.db.conn)
        if self._snapshot is None or stamp != self._stamp:
            self._snapshot, self._stamp = take_snapshot(self.db), stamp
        return self._snapshot


def _namespace(_c: _Context) -> Rows:
    return [
        (PG_CATALOG, "pg_catalog", OWNER, None),
        (PUBLIC, "public", OWNER, None),
        (INFORMATION_SCHEMA, "information_schema", OWNER, None),
    ]


def _class(c: _Context) -> Iterator[Row]:
    snapshot = c.snapshot()
    indexed = {i.table.lower() for i in snapshot.indexes}
    for r in snapshot.relations:
        am = {"r": HEAP, "i": BTREE}.get(r.kind, 0)
        yield (
            r.oid, r.name, PUBLIC, 0, 0, OWNER, am, r.oid, 0, 0, -1.0, 0, 0,
            int(r.name.lower() in indexed), 0, "p", r.kind, len(r.columns), 0, 0, 0, 0, 0, 0,
            1, "d", 0, 0, 0, 1, None, None, None,
        )  # fmt: skip


_CLASS_COLUMNS = (
    "oid INTEGER, relname TEXT, relnamespace INTEGER, reltype INTEGER, reloftype INTEGER,"
    " relowner INTEGER, relam INTEGER, relfilenode INTEGER, reltablespace INTEGER,"
    " relpages INTEGER, reltuples REAL, relallvisible INTEGER, reltoastrelid INTEGER,"
    " relhasindex BOOLEAN, relisshared BOOLEAN, relpersistence TEXT, relkind TEXT,"
    " relnatts INTEGER, relchecks INTEGER, relhasrules BOOLEAN, relhastriggers BOOLEAN,"
    " relhassubclass BOOLEAN, relrowsecurity BOOLEAN, relforcerowsecurity BOOLEAN,"
    " relispopulated BOOLEAN, relreplident TEXT, relispartition BOOLEAN, relrewrite INTEGER,"
    " relfrozenxid INTEGER, relminmxid INTEGER, relacl TEXT, reloptions TEXT, relpartbound TEXT"
)
_LENGTHS = {t[0]: t[2] for t in _TYPES}


def _attribute(c: _Context) -> Iterator[Row]:
    for r in c.snapshot().relations:
        for num, col in enumerate(r.columns, 1):
            oid = column_type(col.declared)
            length = _LENGTHS.get(oid, -1)
            yield (
                r.oid, col.name, oid, -1, length, num, 0, -1, -1, int(length > 0), "d",
                "x" if length < 0 else "p", "", int(col.notnull), int(col.default is not None),
                0, "", "s" if col.generated else "", 0, 1, 0, 100 if oid == OID_TEXT else 0,
                None, None, None, None,
            )  # fmt: skip


_ATTRIBUTE_COLUMNS = (
    "attrelid INTEGER, attname TEXT, atttypid INTEGER, attstattarget INTEGER, attlen INTEGER,"
    " attnum INTEGER, attndims INTEGER, attcacheoff INTEGER, atttypmod INTEGER,"
    " attbyval BOOLEAN, attalign TEXT, attstorage TEXT, attcompression TEXT,"
    " attnotnull BOOLEAN, atthasdef BOOLEAN, atthasmissing BOOLEAN, attidentity TEXT,"
    " attgenerated TEXT, attisdropped BOOLEAN, attislocal BOOLEAN, attinhcount INTEGER,"
    " attcollation INTEGER, attacl TEXT, attoptions TEXT, attfdwoptions TEXT,"
    " attmissingval TEXT"
)


def _attrdef(c: _Context) -> Iterator[Row]:
    for r in c.snapshot().relations:
        for num, col in enumerate(r.columns, 1):
            if col.default is not None:
                yield (_oid("default", f"{r.name}:{num}"), r.oid, num, col.default)


def _index(c: _Context) -> Iterator[Row]:
    snapshot = c.snapshot()
    for i in snapshot.indexes:
        n = len(i.columns)
        zeros = _vector([0] * n)
        yield (
            i.oid, snapshot.by_name[i.table.lower()].oid, n, n, int(i.unique), 0, int(i.primary),
            0, 1, 0, 1, 0, 1, 1, 0, _vector(i.columns), zeros, zeros, zeros, None,
            "true" if i.partial else None,
        )  # fmt: skip


_INDEX_COLUMNS = (
    "indexrelid INTEGER, indrelid INTEGER, indnatts INTEGER, indnkeyatts INTEGER,"
    " indisunique BOOLEAN, indnullsnotdistinct BOOLEAN, indisprimary BOOLEAN,"
    " indisexclusion BOOLEAN, indimmediate BOOLEAN,"
    " indisclustered BOOLEAN, indisvalid BOOLEAN, indcheckxmin BOOLEAN, indisready BOOLEAN,"
    " indislive BOOLEAN, indisreplident BOOLEAN, indkey TEXT, indcollation TEXT,"
    " indclass TEXT, indoption TEXT, indexprs TEXT, indpred TEXT"
)


def _constraints(c: _Context) -> Iterator[Row]:
    for k in c.snapshot().constraints:
        referenced = array_text(k.referenced) if k.kind == "f" else None
        yield (
            k.oid, k.name, PUBLIC, k.kind, 0, 0, 1, k.table, 0, k.index, 0, k.references,
            "a", "a", "s", 1, 0, 1, array_text(k.columns), referenced, None, None, None, None,
            None, None,
        )  # fmt: skip


_CONSTRAINT_COLUMNS = (
    "oid INTEGER, conname TEXT, connamespace INTEGER, contype TEXT, condeferrable BOOLEAN,"
    " condeferred BOOLEAN, convalidated BOOLEAN, conrelid INTEGER, contypid INTEGER,"
    " conindid INTEGER, conparentid INTEGER, confrelid INTEGER, confupdtype TEXT,"
    " confdeltype TEXT, confmatchtype TEXT, conislocal BOOLEAN, coninhcount INTEGER,"
    " connoinherit BOOLEAN, conkey TEXT, confkey TEXT, conpfeqop TEXT, conppeqop TEXT,"
    " conffeqop TEXT, confdelsetcols TEXT, conexclop TEXT, conbin TEXT"
)


def _type(_c: _Context) -> Iterator[Row]:
    for oid, name, length, category, array, element in _TYPES:
        align = "d" if length == 8 else "i"
        storage = "p" if length > 0 else "x"
        yield (
            oid, name, PG_CATALOG, OWNER, length, int(0 < length <= 8), "b", category, 0, 1,
            ",", 0, None, element, array, f"{name}in", f"{name}out", f"{name}recv",
            f"{name}send", None, None, None, align, storage, 0, 0, -1, 0,
            100 if category == "S" else 0, None, None, None,
        )  # fmt: skip


_TYPE_COLUMNS = (
    "oid INTEGER, typname TEXT, typnamespace INTEGER, typowner INTEGER, typlen INTEGER,"
    " typbyval BOOLEAN, typtype TEXT, typcategory TEXT, typispreferred BOOLEAN,"
    " typisdefined BOOLEAN, typdelim TEXT, typrelid INTEGER, typsubscript TEXT,"
    " typelem INTEGER, typarray INTEGER, typinput TEXT, typoutput TEXT, typreceive TEXT,"
    " typsend TEXT, typmodin TEXT, typmodout TEXT, typanalyze TEXT, typalign TEXT,"
    " typstorage TEXT, typnotnull BOOLEAN, typbasetype INTEGER, typtypmod INTEGER,"
    " typndims INTEGER, typcollation INTEGER, typdefaultbin TEXT, typdefault TEXT,"
    " typacl TEXT"
)


def _returns(sig: Signature) -> int:
    if sig.is_table:
        return 2249  # record
    return _PROCEDURE_TYPES[sig.returns] if sig.returns else 2278  # void


def _proc(c: _Context) -> Iterator[Row]:
    for p in c.snapshot().procedures:
        sig = p.signature
        args = [_PROCEDURE_TYPES[a.type] for a in sig.params]
        names = array_text([a.name for a in sig.params])
        yield (
            p.oid, p.name, PUBLIC, OWNER, WASM_LANGUAGE, 1.0, 1000.0 if sig.is_table else 0.0,
            0, None, "f", 0, 0, int(not sig.called_on_null_input), int(sig.is_table), "v", "u",
            len(args), 0, _returns(sig), _vector(args), None, None, names, None, None,
            p.export, None, None, None, None,
        )  # fmt: skip


_PROC_COLUMNS = (
    "oid INTEGER, proname TEXT, pronamespace INTEGER, proowner INTEGER, prolang INTEGER,"
    " procost REAL, prorows REAL, provariadic INTEGER, prosupport TEXT, prokind TEXT,"
    " prosecdef BOOLEAN, proleakproof BOOLEAN, proisstrict BOOLEAN, proretset BOOLEAN,"
    " provolatile TEXT, proparallel TEXT, pronargs INTEGER, pronargdefaults INTEGER,"
    " prorettype INTEGER, proargtypes TEXT, proallargtypes TEXT, proargmodes TEXT,"
    " proargnames TEXT, proargdefaults TEXT, protrftypes TEXT, prosrc TEXT, probin TEXT,"
    " prosqlbody TEXT, proconfig TEXT, proacl TEXT"
)
_ROLE_COLUMNS = (
    "oid INTEGER, rolname TEXT, rolsuper BOOLEAN, rolinherit BOOLEAN, rolcreaterole BOOLEAN,"
    " rolcreatedb BOOLEAN, rolcanlogin BOOLEAN, rolreplication BOOLEAN, rolconnlimit INTEGER,"
    " rolpassword TEXT, rolvaliduntil TEXT, rolbypassrls BOOLEAN, rolconfig TEXT"
)
_DATABASE_COLUMNS = (
    "oid INTEGER, datname TEXT, datdba INTEGER, encoding INTEGER, datlocprovider TEXT,"
    " datistemplate BOOLEAN, datallowconn BOOLEAN, datconnlimit INTEGER,"
    " datfrozenxid INTEGER, datminmxid INTEGER, dattablespace INTEGER, datcollate TEXT,"
    " datctype TEXT, daticulocale TEXT, datcollversion TEXT, datacl TEXT"
)


def _roles(c: _Context) -> Rows:
    # Verifiers are never shown, not even to the role itself (PostgreSQL
    # shows them in pg_authid to superusers, and there are none here).
    return [
        (oid, name, 0, 1, 0, 0, int(role.login if role else True), 0, -1,
         "********" if role is None or role.has_password else None, None, 0, None)
        for oid, name, role in c.roles()
    ]  # fmt: skip


def _users(c: _Context) -> Rows:
    return [
        (name, oid, 0, 0, 0, 0, "********" if role is None or role.has_password else None,
         None, None)
        for oid, name, role in c.roles()
        if role is None or role.login
    ]  # fmt: skip


def _database(c: _Context) -> Rows:
    return [
        (_FIRST_USER_OID - 1, c.database, OWNER, 6, "c", 0, 1, -1, 0, 1, 1663, "C", "C",
         None, None, None)
    ]  # fmt: skip


def _settings(c: _Context) -> Iterator[Row]:
    for name, value in sorted(c.session.variables.items()):
        yield (name, value, None, "Ungrouped", None, None, "user", "string", "default")


def _information_tables(c: _Context) -> Iterator[Row]:
    for r in c.snapshot().relations:
        if r.kind in ("r", "v"):
            kind = "BASE TABLE" if r.kind == "r" else "VIEW"
            insertable = "YES" if r.kind == "r" else "NO"
            yield (c.database, "public", r.name, kind, None, None, None, None, None, insertable,
                   "NO", None)  # fmt: skip


def _information_columns(c: _Context) -> Iterator[Row]:
    for r in c.snapshot().relations:
        for num, col in enumerate(r.columns, 1):
            oid = column_type(col.declared)
            yield (
                c.database, "public", r.name, col.name, num, col.default,
                "NO" if col.notnull else "YES", format_type(oid), _TYPE_NAMES[oid],
                "YES" if r.kind == "r" else "NO",
            )  # fmt: skip


def _fixed(*rows: Row) -> Callable[[_Context], Rows]:
    return lambda _c: rows


def _empty(columns: str) -> tuple[str, Callable[[_Context], Rows]]:
    """A relation PostgreSQL has and this database has nothing in."""
    return columns, _fixed()


_RELATIONS: dict[str, tuple[str, Callable[[_Context], Rows]]] = {
    "pg_namespace": ("oid INTEGER, nspname TEXT, nspowner INTEGER, nspacl TEXT", _namespace),
    "pg_class": (_CLASS_COLUMNS, _class),
    "pg_attribute": (_ATTRIBUTE_COLUMNS, _attribute),
    "pg_attrdef": ("oid INTEGER, adrelid INTEGER, adnum INTEGER, adbin TEXT", _attrdef),
    "pg_index": (_INDEX_COLUMNS, _index),
    "pg_constraint": (_CONSTRAINT_COLUMNS, _constraints),
    "pg_type": (_TYPE_COLUMNS, _type),
    "pg_proc": (_PROC_COLUMNS, _proc),
    "pg_roles": (_ROLE_COLUMNS, _roles),
    "pg_authid": (_ROLE_COLUMNS, _roles),
    "pg_user": (
        "usename TEXT, usesysid INTEGER, usecreatedb BOOLEAN, usesuper BOOLEAN,"
        " userepl BOOLEAN, usebypassrls BOOLEAN, passwd TEXT, valuntil TEXT, useconfig TEXT",
        _users,
    ),
    "pg_database": (_DATABASE_COLUMNS, _database),
    "pg_am": (
        "oid INTEGER, amname TEXT, amhandler TEXT, amtype TEXT",
        _fixed((HEAP, "heap", "heap_tableam_handler", "t"), (BTREE, "btree", "bthandler", "i")),
    ),
    "pg_language": (
        "oid INTEGER, lanname TEXT, lanowner INTEGER, lanispl BOOLEAN, lanpltrusted BOOLEAN",
        _fixed(
            (12, "internal", OWNER, 0, 0),
            (14, "sql", OWNER, 0, 1),
            (WASM_LANGUAGE, "wasm", OWNER, 1, 1),
        ),
    ),
    "pg_collation": (
        "oid INTEGER, collname TEXT, collnamespace INTEGER, collowner INTEGER,"
        " collprovider TEXT, collencoding INTEGER, collcollate TEXT, collctype TEXT",
        _fixed((100, "default", PG_CATALOG, OWNER, "d", -1, None, None)),
    ),
    "pg_tablespace": (
        "oid INTEGER, spcname TEXT, spcowner INTEGER, spcacl TEXT, spcoptions TEXT",
        _fixed((1663, "pg_default", OWNER, None, None)),
    ),
    "pg_settings": (
        "name TEXT, setting TEXT, unit TEXT, category TEXT, short_desc TEXT, extra_desc TEXT,"
        " context TEXT, vartype TEXT, source TEXT",
        _settings,
    ),
    "pg_description": _empty(
        "objoid INTEGER, classoid INTEGER, objsubid INTEGER, description TEXT"
    ),
    "pg_inherits": _empty(
        "inhrelid INTEGER, inhparent INTEGER, inhseqno INTEGER, inhdetachpending BOOLEAN"
    ),
    "pg_auth_members": _empty(
        "roleid INTEGER, member INTEGER, grantor INTEGER, admin_option BOOLEAN"
    ),
    "pg_trigger": _empty(
        "oid INTEGER, tgrelid INTEGER, tgname TEXT, tgenabled TEXT, tgisinternal BOOLEAN,"
        " tgparentid INTEGER"
    ),
    "pg_policy": _empty(
        "oid INTEGER, polname TEXT, polrelid INTEGER, polcmd TEXT, polpermissive BOOLEAN,"
        " polroles TEXT, polqual TEXT, polwithcheck TEXT"
    ),
    "pg_statistic_ext": _empty(
        "oid INTEGER, stxrelid INTEGER, stxname TEXT, stxnamespace INTEGER, stxkeys TEXT,"
        " stxkind TEXT, stxstattarget INTEGER"
    ),
    "pg_publication": _empty("oid INTEGER, pubname TEXT, puballtables BOOLEAN"),
    "pg_publication_rel": _empty(
        "oid INTEGER, prpubid INTEGER, prrelid INTEGER, prqual TEXT, prattrs TEXT"
    ),
    "pg_publication_namespace": _empty("oid INTEGER, pnpubid INTEGER, pnnspid INTEGER"),
    "pg_opclass": _empty(
        "oid INTEGER, opcmethod INTEGER, opcname TEXT, opcnamespace INTEGER, opcowner INTEGER,"
        " opcfamily INTEGER, opcintype INTEGER, opcdefault BOOLEAN, opckeytype INTEGER"
    ),
    "pg_enum": _empty("oid INTEGER, enumtypid INTEGER, enumsortorder REAL, enumlabel TEXT"),
    "pg_sequence": _empty(
        "seqrelid INTEGER, seqtypid INTEGER, seqstart INTEGER, seqincrement INTEGER,"
        " seqmax INTEGER, seqmin INTEGER, seqcache INTEGER, seqcycle BOOLEAN"
    ),
    "pg_extension": _empty(
        "oid INTEGER, extname TEXT, extowner INTEGER, extnamespace INTEGER, extversion TEXT"
    ),
    "pg_foreign_table": _empty("ftrelid INTEGER, ftserver INTEGER"),
    "pg_partitioned_table": _empty("partrelid INTEGER, partstrat TEXT"),
    "pg_rewrite": _empty("oid INTEGER, rulename TEXT, ev_class INTEGER"),
    "information_schema_tables": (
        "table_catalog TEXT, table_schema TEXT, table_name TEXT, table_type TEXT,"
        " self_referencing_column_name TEXT, reference_generation TEXT,"
        " user_defined_type_catalog TEXT, user_defined_type_schema TEXT,"
        " user_defined_type_name TEXT, is_insertable_into TEXT, is_typed TEXT,"
        " commit_action TEXT",
        _information_tables,
    ),
    "information_schema_columns": (
        "table_catalog TEXT, table_schema TEXT, table_name TEXT, column_name TEXT,"
        " ordinal_position INTEGER, column_default TEXT, is_nullable TEXT, data_type TEXT,"
        " udt_name TEXT, is_updatable TEXT",
        _information_columns,
    ),
    "information_schema_schemata": (
        "catalog_name TEXT, schema_name TEXT, schema_owner TEXT",
        lambda c: [(c.database, n, c.user) for n in ("information_schema", "pg_catalog", "public")],
    ),
}
# PostgreSQL's own oids of the catalog relations clients name in casts
# (pg_description.classoid = 'pg_catalog.pg_class'::regclass).
_CATALOG_OIDS = {
    "pg_type": 1247,
    "pg_attribute": 1249,
    "pg_proc": 1255,
    "pg_class": 1259,
    "pg_database": 1262,
    "pg_authid": 1260,
    "pg_namespace": 2615,
    "pg_constraint": 2606,
    "pg_description": 2609,
    "pg_index": 2610,
    "pg_trigger": 2620,
}
RELATIONS = frozenset(_RELATIONS)
"""The catalog's relations by the names SQLite knows them by."""


# --- virtual tables ---------------------------------------------------------------------


class _Module:
    """One catalog relation as an eponymous, read-only virtual table (apsw's protocol)."""

    def __init__(self, columns: str, rows: Callable[[], Rows]) -> None:
        self.columns = columns
        self.rows = rows

    def Create(self, *_args: object) -> tuple[str, _Table]:
        return f"CREATE TABLE x({self.columns})", _Table(self.rows)

    def Connect(self, *args: object) -> tuple[str, _Table]:
        return self.Create(*args)

    def ShadowName(self, _suffix: str) -> bool:
        return False


class _Table:
    def __init__(self, rows: Callable[[], Rows]) -> None:
        self.rows = rows

    def BestIndex(self, *_args: object) -> None:
        return None  # a scan: SQLite applies the WHERE clause

    def Open(self) -> _Cursor:
        return _Cursor(self.rows)

    def Disconnect(self) -> None:
        pass

    def Destroy(self) -> None:
        pass


class _Cursor:
    def __init__(self, rows: Callable[[], Rows]) -> None:
        self.source = rows
        self.rows: list[Row] = []
        self.at = 0

    def Filter(self, *_args: object) -> None:
        self.rows, self.at = list(self.source()), 0

    def Eof(self) -> bool:
        return self.at >= len(self.rows)

    def Rowid(self) -> int:
        return self.at

    def Column(self, number: int) -> SqlValue:
        return self.at if number == -1 else self.rows[self.at][number]

    def Next(self) -> None:
        self.at += 1

    def Close(self) -> None:
        self.rows = []


# --- functions over the catalog ---------------------------------------------------------


class _Functions:
    """PostgreSQL's catalog functions, answering from one connection's snapshot."""

    def __init__(self, context: _Context) -> None:
        self.context = context

    def _snapshot(self) -> Snapshot:
        return self.context.snapshot()

    def regclass(self, name: SqlValue) -> int | None:
        if name is None or isinstance(name, int):
            return name
        text = str(name).strip()
        if text.isdigit():
            return int(text)
        catalog = text.lower().startswith("pg_catalog.")
        bare = text.removeprefix("public.").removeprefix("pg_catalog.")
        bare = bare[1:-1].replace('""', '"') if bare.startswith('"') else bare.lower()
        if bare in _CATALOG_OIDS or (catalog and bare in _RELATIONS):
            return _CATALOG_OIDS.get(bare) or _oid("catalog", bare)
        found = self._snapshot().by_name.get(bare.lower())
        if found is None:
            raise WireError("42P01", f'relation "{text[:64]}" does not exist')
        return found.oid

    def regtype(self, name: SqlValue) -> int | None:
        if name is None or isinstance(name, int):
            return name
        text = str(name).strip().lower().removeprefix("pg_catalog.")
        for oid, typname, *_ in _TYPES:
            if text in (typname, _SQL_NAMES.get(oid)):
                return oid
        raise WireError("42704", f'type "{str(name)[:64]}" does not exist')

    def to_regclass(self, name: SqlValue) -> int | None:
        try:
            return self.regclass(name)
        except WireError:
            return None

    def to_regtype(self, name: SqlValue) -> int | None:
        try:
            return self.regtype(name)
        except WireError:
            return None

    def regproc(self, name: SqlValue) -> int | None:
        return next((p.oid for p in self._snapshot().procedures if p.name == name), None)

    def _procedure(self, oid: SqlValue) -> _Procedure | None:
        return next((p for p in self._snapshot().procedures if p.oid == oid), None)

    def function_result(self, oid: SqlValue) -> str | None:
        p = self._procedure(oid)
        if p is None:
            return None
        sig = p.signature
        if sig.table is not None:
            columns = (f"{c.name} {format_type(_PROCEDURE_TYPES[c.type])}" for c in sig.table)
            return f"TABLE({', '.join(columns)})"
        return format_type(_returns(sig))

    def function_arguments(self, oid: SqlValue) -> str | None:
        p = self._procedure(oid)
        if p is None:
            return None
        params = p.signature.params
        return ", ".join(f"{a.name} {format_type(_PROCEDURE_TYPES[a.type])}" for a in params)

    def indexdef(self, oid: SqlValue, *_rest: SqlValue) -> str | None:
        snapshot = self._snapshot()
        index = next((i for i in snapshot.indexes if i.oid == oid), None)
        if index is None:
            return None
        table = snapshot.by_name[index.table.lower()]
        names = [_quoted(table.columns[c - 1].name) if c else "(expression)" for c in index.columns]
        unique = "UNIQUE " if index.unique else ""
        return (
            f"CREATE {unique}INDEX {_quoted(index.name)} ON public.{_quoted(table.name)}"
            f" USING btree ({', '.join(names)})"
        )

    def constraintdef(self, oid: SqlValue, *_rest: SqlValue) -> str | None:
        found = next((k for k in self._snapshot().constraints if k.oid == oid), None)
        return found.definition if found else None

    def viewdef(self, oid: SqlValue, *_rest: SqlValue) -> str | None:
        relation = self._snapshot().by_oid.get(oid) if isinstance(oid, int) else None
        if relation is None or relation.kind != "v" or relation.sql is None:
            return None
        # The view's SELECT: SQLite keeps the whole CREATE VIEW statement.
        found = re.search(r"\bAS\b(.*)", relation.sql, re.IGNORECASE | re.DOTALL)
        return found.group(1).strip() if found else relation.sql

    def table_is_visible(self, oid: SqlValue) -> int:
        return int(isinstance(oid, int) and oid in self._snapshot().by_oid)

    def userbyid(self, oid: SqlValue) -> str:
        names = {o: name for o, name, _role in self.context.roles()}
        found = names.get(oid) if isinstance(oid, int) else None
        return found if found is not None else f"unknown (OID={oid!s})"

    def format_type(self, oid: SqlValue, _typmod: SqlValue) -> str | None:
        return format_type(oid) if isinstance(oid, int) else None


def install(db: Database, session: WireSession) -> None:
    """The catalog's relations and functions on a client's connection."""
    context = _Context(db, session)
    conn = db.conn
    for name, (columns, rows) in _RELATIONS.items():
        module = _Module(columns, functools.partial(rows, context))
        # apsw's protocols name every optional method; a read-only table has
        # the ones SQLite calls on one.
        conn.create_module(
            name,
            cast("apsw.VTModule", module),
            eponymous=True,
            eponymous_only=True,
            read_only=True,
        )
    f = _Functions(context)

    def nothing(*_args: SqlValue) -> None:
        return None

    def yes(*_args: SqlValue) -> int:
        return 1

    def zero(*_args: SqlValue) -> int:
        return 0

    functions: dict[str, tuple[Callable[..., Any], int]] = {
        "pg_regclass": (f.regclass, 1),
        "pg_regtype": (f.regtype, 1),
        "pg_regproc": (f.regproc, 1),
        "to_regclass": (f.to_regclass, 1),
        "to_regtype": (f.to_regtype, 1),
        "pg_table_is_visible": (f.table_is_visible, 1),
        "pg_function_is_visible": (yes, 1),
        "pg_type_is_visible": (yes, 1),
        "pg_collation_is_visible": (yes, 1),
        "pg_get_userbyid": (f.userbyid, 1),
        "format_type": (f.format_type, 2),
        "pg_get_expr": (lambda expr, *_rest: expr, -1),
        "pg_get_indexdef": (f.indexdef, -1),
        "pg_get_constraintdef": (f.constraintdef, -1),
        "pg_get_function_result": (f.function_result, 1),
        "pg_get_function_arguments": (f.function_arguments, 1),
        "pg_get_function_identity_arguments": (f.function_arguments, 1),
        "pg_get_viewdef": (f.viewdef, -1),
        "pg_get_statisticsobjdef_columns": (nothing, 1),
        "pg_get_triggerdef": (nothing, -1),
        "pg_get_ruledef": (nothing, -1),
        "pg_get_partkeydef": (nothing, 1),
        "pg_get_serial_sequence": (nothing, 2),
        "pg_tablespace_location": (lambda _oid: "", 1),
        "obj_description": (nothing, -1),
        "col_description": (nothing, 2),
        "shobj_description": (nothing, 2),
        "array_to_string": (array_to_string, -1),
        "pg_relation_size": (zero, -1),
        "pg_total_relation_size": (zero, 1),
        # Privileges are the plugins' and the authorizer's, not the catalog's.
        "has_table_privilege": (yes, -1),
        "has_schema_privilege": (yes, -1),
        "has_database_privilege": (yes, -1),
    }
    for name, (function, nargs) in functions.items():
        conn.create_scalar_function(name, function, nargs)
