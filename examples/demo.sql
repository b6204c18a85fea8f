-- The demo: `nox -s demo` builds the examples into build/examples and runs
--   heliosdb-wasm sql --echo -f examples/seed.sql -f examples/demo.sql
-- from the repository root (file:// paths are relative to it).

-- The seed's procedure, written in Rust, as a Basic-ABI core module...
CREATE PROCEDURE calculate_discount(customer_id BIGINT, order_total DOUBLE)
    RETURNS DOUBLE
    LANGUAGE wasm
    CAPABILITIES ('read:customers')
    AS $wasm$file://build/examples/calculate_discount.basic.wasm$wasm$;

-- ...and the same source built as a Canonical-ABI component; its signature
-- comes from the component's WIT types.
CREATE PROCEDURE calculate_discount_component
    LANGUAGE wasm
    CAPABILITIES ('read:customers')
    USING EXPORT 'calculate-discount'
    AS $wasm$file://build/examples/calculate_discount.component.wasm$wasm$;

CREATE PROCEDURE compound_interest(principal DOUBLE, rate DOUBLE, years INTEGER)
    RETURNS DOUBLE LANGUAGE wasm
    AS $wasm$file://build/examples/compound_interest.basic.wasm$wasm$;

CREATE PROCEDURE aggregate_sales(from_date TEXT, to_date TEXT)
    RETURNS TABLE(region TEXT, orders BIGINT, revenue DOUBLE)
    LANGUAGE wasm
    CAPABILITIES ('read:sales')
    AS $wasm$file://build/examples/aggregate_sales.basic.wasm$wasm$;

SELECT calculate_discount(12345, 599.99) AS basic_abi,
       calculate_discount_component(12345, 599.99) AS component_abi;

SELECT o.id, c.name, c.tier, o.total,
       calculate_discount(o.customer_id, o.total) AS discount
FROM orders o JOIN customers c ON c.id = o.customer_id
ORDER BY o.id;

CALL compound_interest(1000.0, 0.05, 10);

SELECT * FROM aggregate_sales('2024-01-01', '2024-02-01');

-- Versions: v2 of calculate_discount is the component build; roll back to v1.
ALTER PROCEDURE calculate_discount VERSION 2
    AS $wasm$file://build/examples/calculate_discount.component.wasm$wasm$;
SELECT v.version, v.abi, v.version = p.active_version AS active
FROM _heliosdb_versions v JOIN _heliosdb_procedures p USING (name)
WHERE name = 'calculate_discount';
ALTER PROCEDURE calculate_discount USE VERSION 1;
SELECT calculate_discount(23456, 120.0) AS silver_discount;
