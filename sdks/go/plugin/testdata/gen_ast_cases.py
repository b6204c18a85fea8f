"""Writes ast_cases.json, the AST fixtures of ast_test.go, with the engine's
own parser, so the Go helpers are tested on exactly the trees plugins get.

    python3 sdks/go/plugin/testdata/gen_ast_cases.py

(needs the engine installed: pip install -e engine). Each add_predicate case
gives the statement, the arguments and the SQL the rewritten statement must
parse back into; the generator stores both trees. tests/plugins/
test_pii_masking_go.py checks that the stored trees are still what the engine
parses, and that the trees Go produces render to the expected SQL.

It also writes add_predicate_cases.json: the Python SDK's add_predicate
(sdks/python/heliosdb_procedures/plugin.py, the reference implementation) run
over the statements of its tests (tests/plugins/test_auth_rate_limit_python.py)
and REFERENCE_EXTRA below, each case the input tree, the arguments, the tree
Python turned it into and the count Python returned; AddPredicate must give
the very same tree and count. The hand-written cases above are checked against
Python's add_predicate too.
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

ROOT = Path(__file__).resolve().parents[4]
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


# Statements of the reference cases beyond the Python tests': (sql, table,
# column, value). sdks/rust/heliosdb-wasm-sdk/src/plugin/ast/make_fixtures.py
# has the same list.
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


def reference_case(sql: str, table: str, column: str, value: str | int) -> dict[str, Any]:
    """One add_predicate call by the Python SDK: its input, result and count."""
    ast = tree(sql)
    want = copy.deepcopy(ast)
    count = add_predicate(want, table, column, value)
    # The engine accepts the result node by node.
    rendered = sqlast.render(sqlast.loads(json.dumps(want)))
    return {
        "sql": sql,
        "table": table,
        "column": column,
        "value": value,
        "count": count,
        "want_sql": rendered,
        "ast": ast,
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


def tree(sql: str) -> Any:
    return json.loads(sqlast.dumps(sqlast.parse(sql)[0]))


def checked(case: dict[str, Any]) -> dict[str, Any]:
    """A hand-written case, which must be what the Python SDK does."""
    case = {"column": "tenant_id", **case, "ast": tree(case["sql"]), "want": tree(case["want_sql"])}
    got = copy.deepcopy(case["ast"])
    count = add_predicate(got, case["table"], case["column"], case["value"])
    assert (count, got) == (case["count"], case["want"]), (
        f"Python's add_predicate differs: {case['sql']}"
    )
    return case


def main() -> None:
    cases = {
        "tables": [
            {"sql": sql, "ast": tree(sql), "tables": sqlast.tables(sqlast.parse(sql)[0])}
            for sql in TABLES
        ],
        "add_predicate": [checked(case) for case in ADD_PREDICATE],
    }
    out = Path(__file__).with_name("ast_cases.json")
    out.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
    reference = reference_cases()
    out = Path(__file__).with_name("add_predicate_cases.json")
    lines = ",\n".join(json.dumps(c, separators=(",", ":"), ensure_ascii=False) for c in reference)
    out.write_text(f"[\n{lines}\n]\n")  # one case per line
    print(
        f"{len(cases['add_predicate'])} hand-written and {len(reference)} reference add_predicate cases"
    )


if __name__ == "__main__":
    main()
