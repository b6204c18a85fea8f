"""Writes plugin-ast-cases.json, the fixtures of the Go and Rust plugin SDKs'
AST helpers (sdks/go/plugin/ast_test.go, sdks/rust/heliosdb-wasm-sdk/src/
plugin/ast/tests.rs), with the engine's own parser, so the helpers are tested
on exactly the trees plugins get.

    python3 sdks/plugin-ast-cases.py

(needs the engine installed: pip install -e engine). Every case is a
statement (sql), the engine's tree of it (ast) and the engine's sqlast.tables
of it (tables), which Tables/tables() must reproduce, order included. The
file has one case a line, in three sections:

* tables: statements for tables() only (TABLES below).
* add_predicate: the hand-written cases (ADD_PREDICATE below): the
  arguments, the SQL the rewritten statement must parse back into (want_sql),
  that tree (want) and the count; some have a name, by which the Rust tests
  find them. Each is checked against the Python SDK's add_predicate
  (sdks/python/heliosdb_procedures/plugin.py, the reference implementation).
* reference: that add_predicate run over the statements of its tests
  (tests/plugins/test_auth_rate_limit_python.py) and REFERENCE_EXTRA below,
  each case the arguments, the tree Python turned the input into (want), the
  engine's rendering of it (want_sql) and the count Python returned.

The Go AddPredicate and the Rust add_predicate must give the very same tree
and count. tests/plugins/test_pii_masking_go.py checks that the stored trees
are still what the engine parses, and that the trees Go produces render to
the expected SQL.
"""

# Tables of SQL read best one statement per line.
# ruff: noqa: E501

from __future__ import annotations

import ast as pyast
import copy
import json
import sys
from pathlib import Path
from typing import Any

from heliosdb_wasm import sqlast

OUT = Path(__file__).with_name("plugin-ast-cases.json")
ROOT = Path(__file__).resolve().parents[1]
PYTHON_TESTS = ROOT / "tests" / "plugins" / "test_auth_rate_limit_python.py"
# The Python SDK is a guest package, not installed on the host.
sys.path.insert(0, str(ROOT / "sdks" / "python"))
from heliosdb_procedures.plugin import add_predicate  # noqa: E402

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
    "SELECT * FROM b JOIN a ON a.x = b.x WHERE b.y IN (SELECT y FROM c)"
    " AND EXISTS (SELECT 1 FROM b)",
    "WITH x AS (SELECT * FROM Orders) SELECT * FROM x, INVOICES",
    "SELECT * FROM orders WHERE id IN (WITH orders AS (SELECT 1 AS id) SELECT id FROM orders)",
    "SELECT * FROM pragma_table_info('orders')",
    "INSERT INTO main.t (a) SELECT a FROM s UNION ALL SELECT a FROM u",
    "SELECT * FROM t INDEXED BY idx",
    "DROP TABLE orders",
    "CREATE INDEX i ON orders (tenant_id)",
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
    {
        "name": "plain",
        "sql": "SELECT * FROM orders",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM orders WHERE orders.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "name": "alias_and_or",
        "sql": "SELECT * FROM orders AS o WHERE o.id = 1 OR o.id = 2",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM orders AS o WHERE (o.id = 1 OR o.id = 2) AND o.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "name": "quoted_case_schema",
        "sql": 'SELECT * FROM main."Orders"',
        "table": "orders",
        "value": "acme",
        "want_sql": 'SELECT * FROM main."Orders" WHERE "Orders".tenant_id = \'acme\'',
        "count": 1,
    },
    {
        "name": "left_join_on",
        "sql": "SELECT * FROM shared s LEFT JOIN orders o ON o.id = s.order_id",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM shared s LEFT JOIN orders o ON (o.id = s.order_id) AND o.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "name": "comma_join",
        "sql": "SELECT * FROM shared s, orders WHERE s.k = 1",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM shared s, orders WHERE (s.k = 1) AND orders.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "name": "join_using",
        "sql": "SELECT * FROM shared JOIN orders USING (id)",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM shared JOIN orders USING (id) WHERE orders.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "name": "self_join",
        "sql": "SELECT * FROM orders a JOIN orders b ON a.id = b.parent WHERE a.x = 1",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM orders a JOIN orders b ON (a.id = b.parent) AND b.tenant_id = 'acme' WHERE (a.x = 1) AND a.tenant_id = 'acme'",
        "count": 2,
    },
    {
        "name": "from_and_comma_join_both_into_where",
        "sql": "SELECT * FROM orders, orders AS o2",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM orders, orders AS o2 WHERE orders.tenant_id = 'acme' AND o2.tenant_id = 'acme'",
        "count": 2,
    },
    {
        "name": "subqueries",
        "sql": "SELECT (SELECT count(*) FROM orders) FROM shared WHERE id IN (SELECT id FROM orders) AND EXISTS (SELECT 1 FROM orders o WHERE o.id = shared.id)",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT (SELECT count(*) FROM orders WHERE orders.tenant_id = 'acme') FROM shared WHERE id IN (SELECT id FROM orders WHERE orders.tenant_id = 'acme') AND EXISTS (SELECT 1 FROM orders o WHERE (o.id = shared.id) AND o.tenant_id = 'acme')",
        "count": 3,
    },
    {
        "name": "from_subquery",
        "sql": "SELECT * FROM (SELECT * FROM orders) AS sub",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM (SELECT * FROM orders WHERE orders.tenant_id = 'acme') AS sub",
        "count": 1,
    },
    {
        "name": "cte_and_union",
        "sql": "WITH t AS (SELECT * FROM orders) SELECT * FROM t UNION SELECT * FROM orders",
        "table": "orders",
        "value": "acme",
        "want_sql": "WITH t AS (SELECT * FROM orders WHERE orders.tenant_id = 'acme') SELECT * FROM t UNION SELECT * FROM orders WHERE orders.tenant_id = 'acme'",
        "count": 2,
    },
    {
        "name": "cte_shadowing_the_table",
        "sql": "WITH orders AS (SELECT * FROM invoices) SELECT * FROM orders",
        "table": "orders",
        "value": "acme",
        "want_sql": "WITH orders AS (SELECT * FROM invoices) SELECT * FROM orders WHERE orders.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "name": "except",
        "sql": "SELECT id FROM orders EXCEPT SELECT id FROM orders WHERE total > 5",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT id FROM orders WHERE orders.tenant_id = 'acme' EXCEPT SELECT id FROM orders WHERE (total > 5) AND orders.tenant_id = 'acme'",
        "count": 2,
    },
    {
        "name": "joined_subquery",
        "sql": "SELECT * FROM shared LEFT JOIN (SELECT * FROM orders) AS o ON o.id = shared.id",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM shared LEFT JOIN (SELECT * FROM orders WHERE orders.tenant_id = 'acme') AS o ON o.id = shared.id",
        "count": 1,
    },
    {
        "name": "update",
        "sql": "UPDATE orders SET total = 0 WHERE id = 1 OR id = 2",
        "table": "orders",
        "value": "acme",
        "want_sql": "UPDATE orders SET total = 0 WHERE (id = 1 OR id = 2) AND orders.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "name": "update_aliased_without_where",
        "sql": "UPDATE orders AS o SET total = 0",
        "table": "orders",
        "value": "acme",
        "want_sql": "UPDATE orders AS o SET total = 0 WHERE o.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "name": "update_from",
        "sql": "UPDATE shared SET total = orders.total FROM orders WHERE orders.id = shared.id",
        "table": "orders",
        "value": "acme",
        "want_sql": "UPDATE shared SET total = orders.total FROM orders WHERE (orders.id = shared.id) AND orders.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "name": "update_from_join",
        "sql": "UPDATE shared SET x = 1 FROM invoices i JOIN orders o ON o.id = i.order_id LEFT JOIN orders o2 ON o2.id = 0, orders",
        "table": "orders",
        "value": "acme",
        "want_sql": "UPDATE shared SET x = 1 FROM invoices i JOIN orders o ON (o.id = i.order_id) AND o.tenant_id = 'acme' LEFT JOIN orders o2 ON (o2.id = 0) AND o2.tenant_id = 'acme', orders WHERE orders.tenant_id = 'acme'",
        "count": 3,
    },
    {
        "name": "delete_subquery",
        "sql": "DELETE FROM shared WHERE id IN (SELECT id FROM orders) OR id = 0",
        "table": "orders",
        "value": "acme",
        "want_sql": "DELETE FROM shared WHERE id IN (SELECT id FROM orders WHERE orders.tenant_id = 'acme') OR id = 0",
        "count": 1,
    },
    {
        "name": "insert_target_untouched",
        "sql": "INSERT INTO orders (id) VALUES (1)",
        "table": "orders",
        "value": "acme",
        "want_sql": "INSERT INTO orders (id) VALUES (1)",
        "count": 0,
    },
    {
        "name": "insert_select",
        "sql": "INSERT INTO shared SELECT * FROM orders",
        "table": "orders",
        "value": "acme",
        "want_sql": "INSERT INTO shared SELECT * FROM orders WHERE orders.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "name": "integer_value",
        "sql": "SELECT * FROM Orders",
        "table": "orders",
        "column": "tenant_no",
        "value": 42,
        "want_sql": "SELECT * FROM Orders WHERE Orders.tenant_no = 42",
        "count": 1,
    },
    {
        "name": "negative_integer_value",
        "sql": "DELETE FROM orders AS o WHERE o.x = 1",
        "table": "orders",
        "column": "tenant_no",
        "value": -9223372036854775808,
        "want_sql": "DELETE FROM orders AS o WHERE (o.x = 1) AND o.tenant_no = -9223372036854775808",
        "count": 1,
    },
    {
        "name": "quoted_column_and_escaped_string",
        "sql": "SELECT * FROM orders",
        "table": "ORDERS",
        "column": "tenant id",
        "value": "o'brien",
        "want_sql": "SELECT * FROM orders WHERE orders.\"tenant id\" = 'o''brien'",
        "count": 1,
    },
    {
        "name": "no_reference",
        "sql": "SELECT * FROM shared WHERE x IN (SELECT 1)",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM shared WHERE x IN (SELECT 1)",
        "count": 0,
    },
    # The preserved side keeps rows its ON rejects: filtered in WHERE.
    {
        "name": "right_join_filters_in_where",
        "sql": "SELECT * FROM shared s RIGHT JOIN orders o ON o.id = s.id",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM shared s RIGHT JOIN orders o ON o.id = s.id WHERE o.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "name": "parenthesised_join",
        "sql": "SELECT * FROM (orders JOIN shared ON orders.id = shared.id)",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM (orders JOIN shared ON orders.id = shared.id) WHERE orders.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "name": "parenthesised_join_joined",
        "sql": "SELECT * FROM shared LEFT JOIN (invoices JOIN orders ON orders.id = invoices.oid) ON 1",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM shared LEFT JOIN (invoices JOIN orders ON (orders.id = invoices.oid) AND orders.tenant_id = 'acme') ON 1",
        "count": 1,
    },
    {
        "name": "parenthesised_table_alias",
        "sql": "SELECT * FROM ((orders) AS o JOIN shared ON 1)",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM ((orders) AS o JOIN shared ON 1) WHERE o.tenant_id = 'acme'",
        "count": 1,
    },
    {
        "name": "bare_table_in",
        "sql": "SELECT * FROM shared WHERE id IN main.orders",
        "table": "orders",
        "value": "acme",
        "want_sql": "SELECT * FROM shared WHERE id IN (SELECT * FROM main.orders WHERE orders.tenant_id = 'acme')",
        "count": 1,
    },
    {
        "name": "upsert",
        "sql": "INSERT INTO orders (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET v = 2",
        "table": "orders",
        "value": "acme",
        "want_sql": "INSERT INTO orders (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET v = 2 WHERE orders.tenant_id = 'acme'",
        "count": 1,
    },
]


# Statements of the reference cases beyond the Python tests': (sql, table,
# column, value).
REFERENCE_EXTRA: list[tuple[str, str, str, str | int]] = [
    ('SELECT * FROM "Order Items" AS oi', "order items", "tenant id", 42),
    ('SELECT * FROM "Order Items"', "Order Items", "t", "it's"),
    ("SELECT * FROM t", "t", "n", -7),
    ("SELECT * FROM orders", "orders", "tenant_id", 0),
    ("SELECT * FROM orders", "orders", "tenant_id", -9223372036854775808),
    ("SELECT * FROM orders", "orders", "tenant_id", 9223372036854775807),
    ("SELECT * FROM orders", "ORDERS", "Tenant-Id", "o'brien \u2713"),
    ('SELECT * FROM (orders) AS "O x"', "orders", "tenant_id", "acme"),
    ('SELECT * FROM ((orders) AS "o") AS p', "orders", "tenant_id", "acme"),
    ("SELECT * FROM (orders AS o)", "orders", "tenant_id", "acme"),
    ("SELECT * FROM (orders AS o) AS p", "orders", "tenant_id", "acme"),
    ("SELECT * FROM ((orders))", "ORDERS", "tenant_id", 5),
    ('SELECT * FROM (("Orders" AS x) JOIN y ON 1)', "orders", "tenant_id", "acme"),
    ("SELECT * FROM x WHERE id IN temp.main.orders", "orders", "tenant_id", "acme"),
    ('SELECT * FROM x WHERE id IN "Orders"', "orders", "tenant_id", "acme"),
    ("SELECT * FROM x WHERE id IN orders AND id IN (orders)", "orders", "tenant_id", "acme"),
    ("SELECT 1 IN orders, (1, 2) IN main.orders FROM orders", "orders", "tenant_id", 3),
    (
        "SELECT * FROM orders WHERE EXISTS (SELECT 1 FROM orders AS x WHERE x.id IN orders)",
        "orders",
        "tenant_id",
        "acme",
    ),
    ("UPDATE orders SET v = 1 WHERE id IN orders RETURNING *", "orders", "tenant_id", "acme"),
    ("DELETE FROM orders AS o WHERE o.id = 1", "orders", "tenant_id", "acme"),
    ("DELETE FROM main.Orders WHERE id = 1 RETURNING *", "orders", "tenant_id", "acme"),
    ("SELECT * FROM main.orders AS mo WHERE 1", "orders", "tenant_id", "acme"),
    ("SELECT * FROM a NATURAL JOIN orders", "orders", "tenant_id", "acme"),
    ("SELECT * FROM a LEFT JOIN orders USING (id)", "orders", "tenant_id", "acme"),
    (
        "SELECT * FROM x LEFT OUTER JOIN orders ON 1 RIGHT JOIN orders AS o2 ON 1 FULL JOIN orders AS o3 USING (id)",
        "orders",
        "tenant_id",
        "acme",
    ),
    (
        "SELECT * FROM x LEFT JOIN orders ON 1 RIGHT JOIN orders AS o2 ON 1 FULL JOIN orders AS o3 ON 1 WHERE x.a = 1 OR x.b = 2",
        "orders",
        "tenant_id",
        "acme",
    ),
    ("SELECT * FROM a RIGHT JOIN (orders JOIN b ON 1) ON 1", "orders", "tenant_id", "acme"),
    ("SELECT * FROM a RIGHT JOIN (b JOIN orders ON 1) ON 1", "orders", "tenant_id", "acme"),
    ("SELECT * FROM a JOIN (b FULL JOIN orders ON 1) ON 1", "orders", "tenant_id", "acme"),
    (
        "SELECT * FROM a LEFT JOIN (b CROSS JOIN orders) ON a.id = b.id",
        "orders",
        "tenant_id",
        "acme",
    ),
    (
        "SELECT * FROM orders INDEXED BY i JOIN orders NOT INDEXED ON 1",
        "orders",
        "tenant_id",
        "acme",
    ),
    ("SELECT * FROM (VALUES (1)) AS v CROSS JOIN orders", "orders", "tenant_id", "acme"),
    (
        "SELECT * FROM ((VALUES (1)) AS v JOIN orders ON 1 JOIN orders AS o2 ON 2)",
        "orders",
        "tenant_id",
        "acme",
    ),
    (
        "SELECT * FROM generate_series(1, 3) AS g LEFT JOIN orders ON orders.id = g.value",
        "orders",
        "tenant_id",
        "acme",
    ),
    (
        "SELECT * FROM orders o1 JOIN orders o2 ON 1 JOIN orders o3 ON 1, orders o4 WHERE o1.a = 1",
        "orders",
        "tenant_id",
        "acme",
    ),
    (
        "SELECT * FROM orders, (SELECT * FROM orders) AS s, json_each(orders.x)",
        "orders",
        "tenant_id",
        "acme",
    ),
    ("WITH orders AS (SELECT * FROM orders) SELECT * FROM orders", "orders", "tenant_id", "acme"),
    (
        "UPDATE t SET a = 1 FROM x RIGHT JOIN orders ON x.id = orders.id",
        "orders",
        "tenant_id",
        "acme",
    ),
    (
        "UPDATE orders AS o SET v = 1 FROM (items JOIN orders ON items.oid = orders.id) WHERE o.id = items.oid",
        "orders",
        "tenant_id",
        "acme",
    ),
    (
        "UPDATE t SET a = 1 FROM ((orders) AS o JOIN x ON 1) AS g WHERE t.id = o.id",
        "orders",
        "tenant_id",
        "acme",
    ),
    (
        "INSERT INTO orders (id, tenant_id, cid, total) VALUES (3, 'a', 1, 99) ON CONFLICT (id) DO UPDATE SET total = excluded.total RETURNING *",
        "orders",
        "tenant_id",
        "a",
    ),
    (
        "INSERT INTO main.orders VALUES (1) ON CONFLICT DO UPDATE SET v = 1",
        "orders",
        "tenant_id",
        "acme",
    ),
    (
        "INSERT OR IGNORE INTO Orders (id) VALUES (1) ON CONFLICT DO UPDATE SET v = 1",
        "orders",
        "tenant_id",
        "acme",
    ),
    (
        "INSERT INTO other (id) VALUES (1) ON CONFLICT DO UPDATE SET v = (SELECT max(v) FROM orders)",
        "orders",
        "tenant_id",
        "acme",
    ),
    (
        "WITH c AS (SELECT 1) INSERT INTO orders (id) SELECT 1 FROM c WHERE 1 ON CONFLICT (id) DO UPDATE SET v = (SELECT max(v) FROM orders) WHERE v IN orders",
        "orders",
        "tenant_id",
        "acme",
    ),
    (
        "INSERT INTO orders (id) VALUES (1) ON CONFLICT (id) DO NOTHING",
        "orders",
        "tenant_id",
        "acme",
    ),
    ("INSERT INTO orders (id) VALUES (1)", "orders", "tenant_id", "acme"),
    ("SELECT * FROM customers WHERE id = ?", "orders", "tenant_id", "acme"),
]

# The tables the Python tests' multi-table statements are filtered on, one
# case each (the tests filter on each in turn), and the value they use.
REFERENCE_TABLES = ("orders", "items", "flags", "customers")


def python_test_lists() -> dict[str, Any]:
    """The statement lists of the Python SDK's tests, read from the file
    (importing it would need its whole test environment)."""
    wanted = {
        "PREDICATES",
        "ISOLATED_QUERIES",
        "NARROWED_QUERIES",
        "ISOLATED_CHANGES",
        "TABLE_STATEMENTS",
    }
    found: dict[str, Any] = {}
    for node in pyast.parse(PYTHON_TESTS.read_text()).body:
        if isinstance(node, pyast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, pyast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, pyast.Name) and target.id in wanted:
            found[target.id] = pyast.literal_eval(value)
    missing = wanted - set(found)
    assert not missing, f"{PYTHON_TESTS} no longer defines {sorted(missing)}"
    return found


def reference_calls() -> list[tuple[str, str, str, str | int]]:
    lists = python_test_lists()
    calls: list[tuple[str, str, str, str | int]] = []
    for sql, _expected, _count in lists["PREDICATES"]:
        calls.append((sql, "orders", "tenant_id", "acme"))
    for name in ("ISOLATED_QUERIES", "NARROWED_QUERIES", "ISOLATED_CHANGES"):
        for sql in lists[name]:
            calls.extend((sql, table, "tenant_id", "a") for table in REFERENCE_TABLES)
    for sql in lists["TABLE_STATEMENTS"]:
        calls.extend((sql, table, "tenant_id", 7) for table in sqlast.tables(sqlast.parse(sql)[0]))
    calls.extend(REFERENCE_EXTRA)
    return calls


def statement(sql: str) -> dict[str, Any]:
    """A case's statement: its text, the engine's tables() and tree of it."""
    parsed = sqlast.parse(sql)[0]
    return {"sql": sql, "tables": sqlast.tables(parsed), "ast": json.loads(sqlast.dumps(parsed))}


def reference_case(sql: str, table: str, column: str, value: str | int) -> dict[str, Any]:
    """One add_predicate call by the Python SDK: its input, result and count."""
    case = statement(sql)
    want = copy.deepcopy(case["ast"])
    count = add_predicate(want, table, column, value)
    # The engine accepts the result node by node.
    rendered = sqlast.render(sqlast.loads(json.dumps(want)))
    return {
        "sql": sql,
        "tables": case["tables"],
        "table": table,
        "column": column,
        "value": value,
        "count": count,
        "want_sql": rendered,
        "ast": case["ast"],
        "want": want,
    }


def reference_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    seen: set[str] = set()
    for sql, table, column, value in reference_calls():
        key = json.dumps([sql, table, column, value])
        if key in seen:
            continue
        seen.add(key)
        case = reference_case(sql, table, column, value)
        # Multi-table statements: the tables they reference, and orders
        # always (a count of 0 is an answer too).
        if case["count"] or table == "orders" or (sql, table, column, value) in REFERENCE_EXTRA:
            cases.append(case)
    return cases


def checked(case: dict[str, Any]) -> dict[str, Any]:
    """A hand-written case, which must be what the Python SDK does."""
    parsed = statement(case["sql"])
    case = {
        **({"name": case["name"]} if "name" in case else {}),
        "sql": case["sql"],
        "tables": parsed["tables"],
        "table": case["table"],
        "column": case.get("column", "tenant_id"),
        "value": case["value"],
        "count": case["count"],
        "want_sql": case["want_sql"],
        "ast": parsed["ast"],
        "want": statement(case["want_sql"])["ast"],
    }
    got = copy.deepcopy(case["ast"])
    count = add_predicate(got, case["table"], case["column"], case["value"])
    assert (count, got) == (case["count"], case["want"]), (
        f"Python's add_predicate differs: {case['sql']}"
    )
    return case


def main() -> None:
    sections = {
        "tables": [statement(sql) for sql in TABLES],
        "add_predicate": [checked(case) for case in ADD_PREDICATE],
        "reference": reference_cases(),
    }
    text = ",\n".join(
        f"{json.dumps(name)}: [\n"
        + ",\n".join(json.dumps(c, separators=(",", ":"), ensure_ascii=False) for c in cases)
        + "\n]"
        for name, cases in sections.items()
    )
    OUT.write_text(f"{{\n{text}\n}}\n")  # one case per line
    print(
        f"wrote {OUT}: {len(sections['tables'])} tables() only,"
        f" {len(sections['add_predicate'])} hand-written and"
        f" {len(sections['reference'])} reference add_predicate cases"
    )


if __name__ == "__main__":
    main()
