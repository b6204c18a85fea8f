"""Writes fixtures.json for the AST helpers' unit tests (tests.rs).

Run from anywhere with the engine installed: python3 make_fixtures.py

Each case is SQL in and the SQL add_predicate must produce, both parsed by
the engine's own sqlast, so the Rust tests compare trees the engine really
produces rather than hand-written JSON; `tables` is the engine's
sqlast.tables of the input, which the Rust tables() must reproduce exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

from heliosdb_wasm import sqlast

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
        " WHERE (orders.tenant_id = 'acme') AND o2.tenant_id = 'acme'",
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
        "right_join_goes_into_on_as_specified",
        "SELECT * FROM shared s RIGHT JOIN orders o ON o.id = s.id",
        T,
        "SELECT * FROM shared s RIGHT JOIN orders o ON (o.id = s.id) AND o.tenant_id = 'acme'",
        1,
    ),
    (
        "parenthesised_join_not_covered",
        "SELECT * FROM (orders JOIN shared ON orders.id = shared.id)",
        T,
        None,
        0,
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


def tree(sql: str) -> object:
    return json.loads(sqlast.dumps(sqlast.parse(sql)[0]))


def main() -> None:
    cases = []
    for name, sql, (table, column, value), expected, count in CASES:
        cases.append(
            {
                "name": name,
                "sql": sql,
                "ast": tree(sql),
                "tables": sqlast.tables(sqlast.parse(sql)[0]),
                "table": table,
                "column": column,
                "value": value,
                "expected": tree(expected or sql),
                "count": count,
            }
        )
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
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
