"""Writes ast_cases.json, the AST fixtures of ast_test.go, with the engine's
own parser, so the Go helpers are tested on exactly the trees plugins get.

    python3 sdks/go/plugin/testdata/gen_ast_cases.py

(needs the engine installed: pip install -e engine). Each add_predicate case
gives the statement, the arguments and the SQL the rewritten statement must
parse back into; the generator stores both trees. tests/plugins/
test_pii_masking_go.py checks that the stored trees are still what the engine
parses, and that the trees Go produces render to the expected SQL.
"""

# Tables of SQL read best one statement per line.
# ruff: noqa: E501

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from heliosdb_wasm import sqlast

TABLES = [
    "SELECT a FROM t AS x WHERE b = 1",
    "SELECT * FROM orders o LEFT JOIN customers c ON c.id = o.cid, items WHERE a = 1 OR b = 2",
    "WITH r AS (SELECT * FROM orders) SELECT * FROM r UNION SELECT * FROM customers",
    "WITH r AS (SELECT * FROM orders) SELECT * FROM r JOIN c ON 1 WHERE x IN (SELECT y FROM z) GROUP BY 1 HAVING 1 ORDER BY 1 LIMIT 1",
    "SELECT (SELECT count(*) FROM orders) AS n FROM customers",
    "SELECT * FROM (SELECT * FROM orders) AS s JOIN Customers USING (id)",
    'SELECT * FROM main.Orders, "Items" AS i',
    "UPDATE orders SET total = (SELECT 1 FROM q) FROM other WHERE id = 2",
    "DELETE FROM orders WHERE id IN (SELECT id FROM x)",
    "INSERT INTO t(a) SELECT a FROM u",
    "INSERT INTO t VALUES (1)",
    "SELECT * FROM json_each('[]')",
    "SELECT 1",
    "SELECT * FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.x = a.x) ORDER BY (SELECT max(y) FROM c)",
    "SELECT * FROM a UNION ALL SELECT * FROM b EXCEPT SELECT * FROM c",
    "WITH a AS (SELECT * FROM b), c AS (SELECT * FROM a) SELECT * FROM c JOIN d ON d.id = c.id",
    "SELECT * FROM a JOIN (b JOIN c ON b.id = c.id) ON a.id = b.id",
    "SELECT * FROM (a JOIN b ON a.id = b.id)",
    "UPDATE t SET x = 1 FROM a JOIN b ON a.id = b.id WHERE t.id = a.id",
    "SELECT * FROM 'Orders', [Items], `Lines`",
]

ADD_PREDICATE: list[dict[str, Any]] = [
    {
        "sql": "SELECT a FROM t AS x WHERE b = 1",
        "table": "t",
        "value": "acme",
        "want_sql": "SELECT a FROM t AS x WHERE (b = 1) AND x.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "sql": "SELECT * FROM orders",
        "table": "orders",
        "value": 42,
        "want_sql": "SELECT * FROM orders WHERE orders.tenant_id = 42",
        "count": 1,
    },
    {
        "sql": "SELECT * FROM orders",
        "table": "orders",
        "value": -7,
        "want_sql": "SELECT * FROM orders WHERE orders.tenant_id = -7",
        "count": 1,
    },
    {
        "sql": "SELECT * FROM orders",
        "table": "orders",
        "value": 9007199254740993,
        "want_sql": "SELECT * FROM orders WHERE orders.tenant_id = 9007199254740993",
        "count": 1,
    },
    {
        "sql": "SELECT * FROM orders o LEFT JOIN customers c ON c.id = o.cid, items WHERE a = 1 OR b = 2",
        "table": "CUSTOMERS",
        "value": "acme",
        "want_sql": "SELECT * FROM orders AS o LEFT JOIN customers AS c ON (c.id = o.cid) AND c.tenant_id = 'acme', items WHERE a = 1 OR b = 2",
        "count": 1,
    },
    {
        "sql": "SELECT * FROM orders o LEFT JOIN customers c ON c.id = o.cid, items WHERE a = 1 OR b = 2",
        "table": "items",
        "value": "acme",
        "want_sql": "SELECT * FROM orders AS o LEFT JOIN customers AS c ON c.id = o.cid, items WHERE (a = 1 OR b = 2) AND items.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "sql": "SELECT * FROM orders JOIN orders AS o2 ON o2.id = orders.parent, orders AS o3",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM orders JOIN orders AS o2 ON (o2.id = orders.parent) AND o2.tenant_id = 'acme', orders AS o3 WHERE orders.tenant_id = 'acme' AND o3.tenant_id = 'acme'",
        "count": 3,
    },
    {
        "sql": "WITH r AS (SELECT * FROM orders) SELECT * FROM r UNION SELECT * FROM orders WHERE x = 1",
        "table": "orders",
        "value": "acme",
        "want_sql": "WITH r AS (SELECT * FROM orders WHERE orders.tenant_id = 'acme') SELECT * FROM r UNION SELECT * FROM orders WHERE (x = 1) AND orders.tenant_id = 'acme'",
        "count": 2,
    },
    {
        "sql": "SELECT * FROM (SELECT * FROM orders) AS s WHERE s.id IN (SELECT id FROM orders WHERE total > 5)",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM (SELECT * FROM orders WHERE orders.tenant_id = 'acme') AS s WHERE s.id IN (SELECT id FROM orders WHERE (total > 5) AND orders.tenant_id = 'acme')",
        "count": 2,
    },
    {
        "sql": "SELECT (SELECT count(*) FROM orders) AS n FROM customers",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT (SELECT count(*) FROM orders WHERE orders.tenant_id = 'acme') AS n FROM customers",
        "count": 1,
    },
    {
        "sql": "UPDATE orders SET total = 0 WHERE id = 2",
        "table": "orders",
        "value": "acme",
        "want_sql": "UPDATE orders SET total = 0 WHERE (id = 2) AND orders.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "sql": "UPDATE orders SET total = t.total FROM totals AS t WHERE t.id = orders.id",
        "table": "totals",
        "value": "acme",
        "want_sql": "UPDATE orders SET total = t.total FROM totals AS t WHERE (t.id = orders.id) AND t.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "sql": "DELETE FROM orders",
        "table": "orders",
        "value": "acme",
        "want_sql": "DELETE FROM orders WHERE orders.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "sql": "DELETE FROM orders WHERE id IN (SELECT order_id FROM orders WHERE total = 0)",
        "table": "orders",
        "value": "acme",
        "want_sql": "DELETE FROM orders WHERE (id IN (SELECT order_id FROM orders WHERE (total = 0) AND orders.tenant_id = 'acme')) AND orders.tenant_id = 'acme'",
        "count": 2,
    },
    {
        "sql": "INSERT INTO archive SELECT * FROM orders",
        "table": "orders",
        "value": "acme",
        "want_sql": "INSERT INTO archive SELECT * FROM orders WHERE orders.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "sql": 'SELECT * FROM "Orders" AS "O"',
        "table": "orders",
        "value": "acme",
        "want_sql": 'SELECT * FROM "Orders" AS "O" WHERE "O".tenant_id = \'acme\'',
        "count": 1,
    },
    {
        "sql": "SELECT * FROM main.orders",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM main.orders WHERE orders.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "sql": "SELECT * FROM customers JOIN orders USING (id)",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM customers JOIN orders USING (id) WHERE orders.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "sql": "SELECT * FROM orders",
        "table": "orders",
        "column": "tenant id",
        "value": "o'brien ✓",
        "want_sql": "SELECT * FROM orders WHERE orders.\"tenant id\" = 'o''brien ✓'",
        "count": 1,
    },
    # Join groups: parenthesised joins, and the joins of UPDATE ... FROM.
    {
        "sql": "SELECT * FROM (orders JOIN items ON items.order_id = orders.id)",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM (orders JOIN items ON items.order_id = orders.id) WHERE orders.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "sql": "SELECT * FROM (orders JOIN items ON items.order_id = orders.id)",
        "table": "items",
        "value": "acme",
        "want_sql": "SELECT * FROM (orders JOIN items ON (items.order_id = orders.id) AND items.tenant_id = 'acme')",
        "count": 1,
    },
    {
        "sql": "SELECT * FROM customers AS c LEFT JOIN (orders JOIN items ON items.order_id = orders.id) ON orders.customer_id = c.id",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM customers AS c LEFT JOIN (orders JOIN items ON items.order_id = orders.id) ON (orders.customer_id = c.id) AND orders.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "sql": "SELECT * FROM customers AS c CROSS JOIN (orders JOIN items USING (id))",
        "table": "items",
        "value": "acme",
        "want_sql": "SELECT * FROM customers AS c CROSS JOIN (orders JOIN items USING (id)) WHERE items.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "sql": "UPDATE totals SET n = 0 FROM orders JOIN items ON items.order_id = orders.id WHERE totals.id = orders.id",
        "table": "items",
        "value": "acme",
        "want_sql": "UPDATE totals SET n = 0 FROM orders JOIN items ON (items.order_id = orders.id) AND items.tenant_id = 'acme' WHERE totals.id = orders.id",
        "count": 1,
    },
    {
        "sql": "UPDATE totals SET n = 0 FROM orders JOIN items ON items.order_id = orders.id WHERE totals.id = orders.id",
        "table": "orders",
        "value": "acme",
        "want_sql": "UPDATE totals SET n = 0 FROM orders JOIN items ON items.order_id = orders.id WHERE (totals.id = orders.id) AND orders.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "sql": "SELECT * FROM 'orders'",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM 'orders' WHERE \"orders\".tenant_id = 'acme'",
        "count": 1,
    },
    {
        "sql": "SELECT * FROM customers WHERE id = ?",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM customers WHERE id = ?",
        "count": 0,
    },
]


def tree(sql: str) -> Any:
    return json.loads(sqlast.dumps(sqlast.parse(sql)[0]))


def main() -> None:
    cases = {
        "tables": [
            {"sql": sql, "ast": tree(sql), "tables": sqlast.tables(sqlast.parse(sql)[0])}
            for sql in TABLES
        ],
        "add_predicate": [
            {
                "column": "tenant_id",
                **case,
                "ast": tree(case["sql"]),
                "want": tree(case["want_sql"]),
            }
            for case in ADD_PREDICATE
        ],
    }
    out = Path(__file__).with_name("ast_cases.json")
    out.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
