"""Writes fixtures.json for the AST helpers' unit tests (tests.rs).

Run from anywhere with the engine installed: python3 make_fixtures.py

Each case is SQL in and the SQL add_predicate must produce, both parsed by
the engine's own sqlast, so the Rust tests compare trees the engine really
produces rather than hand-written JSON; `tables` is the engine's
sqlast.tables of the input, which the Rust tables() must reproduce exactly.

The expected trees are also what the Python SDK's add_predicate
(sdks/python/heliosdb_procedures/plugin.py, the reference implementation)
makes of the input: the hand-written cases are checked against it, and the
reference cases after them are its results, with its counts, over the
statements of its tests (tests/plugins/test_auth_rate_limit_python.py) and
REFERENCE_EXTRA below. The Rust add_predicate must give the very same trees
and counts.
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

ROOT = Path(__file__).resolve().parents[6]
PYTHON_TESTS = ROOT / "tests" / "plugins" / "test_auth_rate_limit_python.py"
# The Python SDK is a guest package, not installed on the host.
sys.path.insert(0, str(ROOT / "sdks" / "python"))
from heliosdb_procedures.plugin import add_predicate  # noqa: E402

# (name, sql, (table, column, value), expected sql or None for "unchanged", count)
T = ("orders", "tenant_id", "acme")
CASES = [
    ("plain", "SELECT * FROM orders", T, "SELECT * FROM orders WHERE orders.tenant_id = 'acme'", 1),
    (
        "alias_and_or",
        "SELECT * FROM orders AS o WHERE o.id = 1 OR o.id = 2",
        T,
        "SELECT * FROM orders AS o WHERE (o.id = 1 OR o.id = 2) AND o.tenant_id = 'acme'",
        1,
    ),
    (
        "quoted_case_schema",
        'SELECT * FROM main."Orders"',
        T,
        'SELECT * FROM main."Orders" WHERE "Orders".tenant_id = \'acme\'',
        1,
    ),
    (
        "left_join_on",
        "SELECT * FROM shared s LEFT JOIN orders o ON o.id = s.order_id",
        T,
        "SELECT * FROM shared s LEFT JOIN orders o ON (o.id = s.order_id) AND o.tenant_id = 'acme'",
        1,
    ),
    (
        "comma_join",
        "SELECT * FROM shared s, orders WHERE s.k = 1",
        T,
        "SELECT * FROM shared s, orders WHERE (s.k = 1) AND orders.tenant_id = 'acme'",
        1,
    ),
    (
        "join_using",
        "SELECT * FROM shared JOIN orders USING (id)",
        T,
        "SELECT * FROM shared JOIN orders USING (id) WHERE orders.tenant_id = 'acme'",
        1,
    ),
    (
        "self_join",
        "SELECT * FROM orders a JOIN orders b ON a.id = b.parent WHERE a.x = 1",
        T,
        "SELECT * FROM orders a JOIN orders b ON (a.id = b.parent) AND b.tenant_id = 'acme'"
        " WHERE (a.x = 1) AND a.tenant_id = 'acme'",
        2,
    ),
    (
        "from_and_comma_join_both_into_where",
        "SELECT * FROM orders, orders AS o2",
        T,
        "SELECT * FROM orders, orders AS o2"
        " WHERE orders.tenant_id = 'acme' AND o2.tenant_id = 'acme'",
        2,
    ),
    (
        "subqueries",
        "SELECT (SELECT count(*) FROM orders) FROM shared WHERE id IN (SELECT id FROM orders)"
        " AND EXISTS (SELECT 1 FROM orders o WHERE o.id = shared.id)",
        T,
        "SELECT (SELECT count(*) FROM orders WHERE orders.tenant_id = 'acme') FROM shared"
        " WHERE id IN (SELECT id FROM orders WHERE orders.tenant_id = 'acme')"
        " AND EXISTS (SELECT 1 FROM orders o WHERE (o.id = shared.id) AND o.tenant_id = 'acme')",
        3,
    ),
    (
        "from_subquery",
        "SELECT * FROM (SELECT * FROM orders) AS sub",
        T,
        "SELECT * FROM (SELECT * FROM orders WHERE orders.tenant_id = 'acme') AS sub",
        1,
    ),
    (
        "cte_and_union",
        "WITH t AS (SELECT * FROM orders) SELECT * FROM t UNION SELECT * FROM orders",
        T,
        "WITH t AS (SELECT * FROM orders WHERE orders.tenant_id = 'acme') SELECT * FROM t"
        " UNION SELECT * FROM orders WHERE orders.tenant_id = 'acme'",
        2,
    ),
    (
        "cte_shadowing_the_table",
        "WITH orders AS (SELECT * FROM invoices) SELECT * FROM orders",
        T,
        "WITH orders AS (SELECT * FROM invoices) SELECT * FROM orders"
        " WHERE orders.tenant_id = 'acme'",
        1,
    ),
    (
        "except",
        "SELECT id FROM orders EXCEPT SELECT id FROM orders WHERE total > 5",
        T,
        "SELECT id FROM orders WHERE orders.tenant_id = 'acme'"
        " EXCEPT SELECT id FROM orders WHERE (total > 5) AND orders.tenant_id = 'acme'",
        2,
    ),
    (
        "joined_subquery",
        "SELECT * FROM shared LEFT JOIN (SELECT * FROM orders) AS o ON o.id = shared.id",
        T,
        "SELECT * FROM shared LEFT JOIN (SELECT * FROM orders WHERE orders.tenant_id = 'acme')"
        " AS o ON o.id = shared.id",
        1,
    ),
    (
        "update",
        "UPDATE orders SET total = 0 WHERE id = 1 OR id = 2",
        T,
        "UPDATE orders SET total = 0 WHERE (id = 1 OR id = 2) AND orders.tenant_id = 'acme'",
        1,
    ),
    (
        "update_aliased_without_where",
        "UPDATE orders AS o SET total = 0",
        T,
        "UPDATE orders AS o SET total = 0 WHERE o.tenant_id = 'acme'",
        1,
    ),
    (
        "update_from",
        "UPDATE shared SET total = orders.total FROM orders WHERE orders.id = shared.id",
        T,
        "UPDATE shared SET total = orders.total FROM orders"
        " WHERE (orders.id = shared.id) AND orders.tenant_id = 'acme'",
        1,
    ),
    (
        "update_from_join",
        "UPDATE shared SET x = 1 FROM invoices i JOIN orders o ON o.id = i.order_id"
        " LEFT JOIN orders o2 ON o2.id = 0, orders",
        T,
        "UPDATE shared SET x = 1 FROM invoices i JOIN orders o ON (o.id = i.order_id)"
        " AND o.tenant_id = 'acme' LEFT JOIN orders o2 ON (o2.id = 0) AND o2.tenant_id = 'acme',"
        " orders WHERE orders.tenant_id = 'acme'",
        3,
    ),
    ("delete", "DELETE FROM orders", T, "DELETE FROM orders WHERE orders.tenant_id = 'acme'", 1),
    (
        "delete_subquery",
        "DELETE FROM shared WHERE id IN (SELECT id FROM orders) OR id = 0",
        T,
        "DELETE FROM shared WHERE id IN (SELECT id FROM orders WHERE orders.tenant_id = 'acme')"
        " OR id = 0",
        1,
    ),
    ("insert_target_untouched", "INSERT INTO orders (id) VALUES (1)", T, None, 0),
    (
        "insert_select",
        "INSERT INTO shared SELECT * FROM orders",
        T,
        "INSERT INTO shared SELECT * FROM orders WHERE orders.tenant_id = 'acme'",
        1,
    ),
    (
        "integer_value",
        "SELECT * FROM Orders",
        ("orders", "tenant_no", 42),
        "SELECT * FROM Orders WHERE Orders.tenant_no = 42",
        1,
    ),
    (
        "negative_integer_value",
        "DELETE FROM orders AS o WHERE o.x = 1",
        ("orders", "tenant_no", -9223372036854775808),
        "DELETE FROM orders AS o WHERE (o.x = 1) AND o.tenant_no = -9223372036854775808",
        1,
    ),
    (
        "quoted_column_and_escaped_string",
        "SELECT * FROM orders",
        ("ORDERS", "tenant id", "o'brien"),
        "SELECT * FROM orders WHERE orders.\"tenant id\" = 'o''brien'",
        1,
    ),
    ("no_reference", "SELECT * FROM shared WHERE x IN (SELECT 1)", T, None, 0),
    (
        # The preserved side keeps rows its ON rejects: filtered in WHERE.
        "right_join_filters_in_where",
        "SELECT * FROM shared s RIGHT JOIN orders o ON o.id = s.id",
        T,
        "SELECT * FROM shared s RIGHT JOIN orders o ON o.id = s.id WHERE o.tenant_id = 'acme'",
        1,
    ),
    (
        "parenthesised_join",
        "SELECT * FROM (orders JOIN shared ON orders.id = shared.id)",
        T,
        "SELECT * FROM (orders JOIN shared ON orders.id = shared.id) WHERE orders.tenant_id = 'acme'",
        1,
    ),
    (
        "parenthesised_join_joined",
        "SELECT * FROM shared LEFT JOIN (invoices JOIN orders ON orders.id = invoices.oid) ON 1",
        T,
        "SELECT * FROM shared LEFT JOIN (invoices JOIN orders ON (orders.id = invoices.oid)"
        " AND orders.tenant_id = 'acme') ON 1",
        1,
    ),
    (
        "parenthesised_table_alias",
        "SELECT * FROM ((orders) AS o JOIN shared ON 1)",
        T,
        "SELECT * FROM ((orders) AS o JOIN shared ON 1) WHERE o.tenant_id = 'acme'",
        1,
    ),
    (
        "bare_table_in",
        "SELECT * FROM shared WHERE id IN main.orders",
        T,
        "SELECT * FROM shared WHERE id IN (SELECT * FROM main.orders WHERE orders.tenant_id = 'acme')",
        1,
    ),
    (
        "upsert",
        "INSERT INTO orders (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET v = 2",
        T,
        "INSERT INTO orders (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET v = 2"
        " WHERE orders.tenant_id = 'acme'",
        1,
    ),
]

# tables() only: the engine's own answers, order included.
TABLES_ONLY = [
    "SELECT * FROM b JOIN a ON a.x = b.x WHERE b.y IN (SELECT y FROM c)"
    " AND EXISTS (SELECT 1 FROM b)",
    "WITH x AS (SELECT * FROM Orders) SELECT * FROM x, INVOICES",
    "SELECT * FROM orders WHERE id IN (WITH orders AS (SELECT 1 AS id) SELECT id FROM orders)",
    "SELECT * FROM pragma_table_info('orders')",
    "INSERT INTO main.t (a) SELECT a FROM s UNION ALL SELECT a FROM u",
    "SELECT * FROM t INDEXED BY idx",
    "DROP TABLE orders",
    "CREATE INDEX i ON orders (tenant_id)",
    "SELECT 1",
]


# Statements of the reference cases beyond the Python tests': (sql, table,
# column, value). sdks/go/plugin/testdata/gen_ast_cases.py has the same list.
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
# case each (the tests filter on each in turn).
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


def python_add_predicate(ast: Any, table: str, column: str, value: str | int) -> tuple[Any, int]:
    """What the Python SDK makes of ``ast``; the engine must accept it."""
    result = copy.deepcopy(ast)
    count = add_predicate(result, table, column, value)
    sqlast.loads(json.dumps(result))  # checked node by node
    return result, count


def tree(sql: str) -> object:
    return json.loads(sqlast.dumps(sqlast.parse(sql)[0]))


def main() -> None:
    cases = []
    for name, sql, (table, column, value), expected, count in CASES:
        ast = tree(sql)
        want = tree(expected or sql)
        assert python_add_predicate(ast, table, column, value) == (want, count), (
            f"{name}: Python's add_predicate differs"
        )
        cases.append(
            {
                "name": name,
                "sql": sql,
                "ast": ast,
                "tables": sqlast.tables(sqlast.parse(sql)[0]),
                "table": table,
                "column": column,
                "value": value,
                "expected": want,
                "count": count,
            }
        )
    hand_written = len(cases)
    seen: set[str] = set()
    for sql, table, column, value in reference_calls():
        key = json.dumps([sql, table, column, value])
        if key in seen:
            continue
        seen.add(key)
        ast = tree(sql)
        want, count = python_add_predicate(ast, table, column, value)
        # Multi-table statements: the tables they reference, and orders
        # always (a count of 0 is an answer too).
        if not (count or table == "orders" or (sql, table, column, value) in REFERENCE_EXTRA):
            continue
        cases.append(
            {
                "name": f"reference: {sql} [{table}]",
                "sql": sql,
                "ast": ast,
                "tables": sqlast.tables(sqlast.parse(sql)[0]),
                "table": table,
                "column": column,
                "value": value,
                "expected": want,
                "count": count,
            }
        )
    reference = len(cases) - hand_written
    for sql in TABLES_ONLY:
        cases.append(
            {
                "name": sql,
                "sql": sql,
                "ast": tree(sql),
                "tables": sqlast.tables(sqlast.parse(sql)[0]),
            }
        )
    out = Path(__file__).with_name("fixtures.json")
    lines = ",\n".join(json.dumps(c, separators=(",", ":")) for c in cases)
    out.write_text(f"[\n{lines}\n]\n")  # one case per line
    print(
        f"wrote {len(cases)} cases to {out}: {hand_written} hand-written and {reference}"
        f" reference add_predicate cases, {len(TABLES_ONLY)} tables() only"
    )


if __name__ == "__main__":
    main()
