"""The JSON AST form of docs/plugins.md §4 (sqlast.py)."""

from __future__ import annotations

import json

import pytest

from heliosdb_wasm import sqlast

STATEMENTS = [
    "SELECT o.id, (SELECT COUNT(*) FROM items AS i WHERE i.order_id = o.id) AS n FROM orders AS o"
    " JOIN customers AS c ON c.id = o.cid WHERE o.total > ?1",
    "WITH x AS (SELECT * FROM orders) SELECT * FROM x LEFT JOIN t ON t.a = x.a",
    "UPDATE orders SET total = total + 1 WHERE id = ?1",
    "DELETE FROM orders WHERE id IN (SELECT id FROM old)",
    "INSERT INTO orders (id, tenant_id) VALUES (1, 'a'), (2, 'b')",
    "SELECT * FROM a UNION ALL SELECT * FROM b",
    "SELECT 'it''s ?', x'00ff', -1.5e3, NULL, TRUE FROM t GROUP BY 1 ORDER BY 1 DESC LIMIT 3",
    "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT NOT NULL)",
    "SELECT CAST(a AS REAL), COUNT(*) OVER (PARTITION BY a ORDER BY b) FROM t",
]


@pytest.mark.parametrize("sql", STATEMENTS)
def test_json_form_round_trips(sql: str) -> None:
    (tree,) = sqlast.parse(sql)
    text = sqlast.dumps(tree)
    assert json.loads(text)["node"] in {"select", "update", "delete", "insert", "union", "create"}
    assert sqlast.render(sqlast.loads(text)) == sqlast.render(tree)


def test_placeholders_keep_their_numbers() -> None:
    (tree,) = sqlast.parse("SELECT * FROM t WHERE a = $2 AND b = ? AND c = '?' -- ?")
    assert sqlast.render(tree) == "SELECT * FROM t WHERE a = ?2 AND b = ?3 AND c = '?' /* ? */"
    doc = json.loads(sqlast.dumps(tree))
    assert doc["where"]["this"]["this"]["this"]["expression"] == {
        "node": "placeholder",
        "this": "p2",
    }


def test_tables_leave_out_cte_names() -> None:
    (tree,) = sqlast.parse(
        "WITH orders AS (SELECT * FROM invoices) SELECT * FROM orders JOIN Customers ON 1"
    )
    assert sqlast.tables(tree) == ["customers", "invoices"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("[1]", "expected a node object"),
        ('{"node": "nonsense"}', "unknown node kind 'nonsense'"),
        ('{"node": "select", "colour": 1}', "no argument 'colour'"),
        ('{"node": "select", "expressions": [{"node": "froth"}]}', r"ast.expressions\[0\]"),
        ('{"node": "datatype", "this": "QUANTUM"}', "unknown data type"),
        ("{", "not JSON"),
    ],
)
def test_bad_trees_name_the_bad_node(doc: str, message: str) -> None:
    with pytest.raises(sqlast.AstError, match=message) as err:
        sqlast.loads(doc)
    assert err.value.sqlstate == "42601"


def test_unparsable_sql_is_a_syntax_error() -> None:
    with pytest.raises(sqlast.AstError, match="cannot parse"):
        sqlast.parse("SELEKT 1 FROM")
