"""Table procedures as SQL tables: an eponymous virtual table per procedure,
``SELECT * FROM split_str('a,b', ',')`` or joined per row of another table
(``FROM t, split_str(t.csv, ',')``).

The procedure's parameters are the table's hidden columns. Every one of them
is needed: a plan that leaves one out is priced so that SQLite only picks it
when no plan can supply it, and a call without it is then an
``InvalidArgument`` naming the procedure (apsw.ext's generic module prices
every plan alike, so a join could scan the function with no arguments).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import apsw

from .errors import InvalidArgument
from .values import Signature, SqlValue, to_sqlite

# What a plan costs with every argument supplied, and without one: SQLite
# takes the cheapest, so a complete plan always wins where one exists.
_COST = 1_000.0
_INCOMPLETE_COST = 1e300
_ROWS = 1_000


class TableModule:
    """The apsw module of one table procedure: ``call(args)`` runs it (the
    Runner of its current version) and gives its rows."""

    def __init__(
        self, name: str, signature: Signature, call: Callable[[list[SqlValue]], Any]
    ) -> None:
        assert signature.table is not None
        self.name = name
        self.signature = signature
        self.call = call
        self.width = len(signature.table)
        columns = [f'"{c.name}" {c.type.value}' for c in signature.table]
        hidden = [f'"{c.name}" {c.type.value} HIDDEN' for c in signature.params]
        self.schema = f"CREATE TABLE x({', '.join(columns + hidden)})"

    def bind(self, conn: apsw.Connection) -> None:
        # apsw's VTModule protocol lists every optional method (ShadowName,
        # the writing ones, transactions) as required: this module has the
        # ones a read-only eponymous table needs.
        module = cast("apsw.VTModule", self)
        conn.create_module(
            self.name, module, use_bestindex_object=True, eponymous=True, eponymous_only=True
        )

    def Connect(
        self, connection: apsw.Connection, modulename: str, databasename: str, tablename: str
    ) -> tuple[str, _Table]:
        return self.schema, _Table(self)

    Create = Connect


class _Table:
    def __init__(self, module: TableModule) -> None:
        self.module = module

    def BestIndexObject(self, o: apsw.IndexInfo) -> bool:
        width = self.module.width
        nparams = len(self.module.signature.params)
        found: list[int | None] = [None] * nparams
        for c in range(o.nConstraint):
            column = o.get_aConstraint_iColumn(c)
            if (
                column >= width
                and o.get_aConstraint_usable(c)
                and o.get_aConstraint_op(c) == apsw.SQLITE_INDEX_CONSTRAINT_EQ
                and found[column - width] is None
            ):
                found[column - width] = c
        # The arguments come to Filter in parameter order, those supplied;
        # idxNum says which they are.
        mask = argv = 0
        for i, constraint in enumerate(found):
            if constraint is not None:
                mask |= 1 << i
                argv += 1
                o.set_aConstraintUsage_argvIndex(constraint, argv)
                o.set_aConstraintUsage_omit(constraint, True)
        o.idxNum = mask
        complete = all(c is not None for c in found)
        o.estimatedCost = _COST if complete else _INCOMPLETE_COST
        o.estimatedRows = _ROWS
        return True

    def Open(self) -> _Cursor:
        return _Cursor(self.module)

    def Disconnect(self) -> None:
        pass

    Destroy = Disconnect


class _Cursor:
    def __init__(self, module: TableModule) -> None:
        self.module = module
        self.rows: Sequence[Sequence[Any]] = []
        self.args: list[SqlValue] = []
        self.at = 0

    def Filter(self, idx_num: int, idx_str: str | None, args: tuple[SqlValue, ...]) -> None:
        module = self.module
        params = module.signature.params
        if idx_num != (1 << len(params)) - 1:
            missing = [p.name for i, p in enumerate(params) if not idx_num & (1 << i)]
            raise InvalidArgument(
                f"{module.name} takes {len(params)} argument(s) "
                f"{module.signature.render()}: {', '.join(missing)} not given"
            )
        self.args = list(args)
        self.rows = module.call(self.args)
        self.at = 0

    def Eof(self) -> bool:
        return self.at >= len(self.rows)

    def Rowid(self) -> int:
        return self.at

    def Column(self, number: int) -> SqlValue:
        if number == -1:
            return self.at
        width = self.module.width
        if number < width:
            return to_sqlite(self.rows[self.at][number])
        return self.args[number - width]

    def Next(self) -> None:
        self.at += 1

    def Close(self) -> None:
        self.rows = []
