-- The demo: `nox -s demo` builds the examples into build/examples/<language>/
-- and runs
--   heliosdb-wasm sql --echo -f examples/seed.sql -f examples/demo.sql
-- from the repository root (file:// paths are relative to it).

-- The seed's procedure written in Rust, as a Basic-ABI core module...
CREATE PROCEDURE calculate_discount(customer_id BIGINT, order_total DOUBLE)
    RETURNS DOUBLE
    LANGUAGE wasm
    CAPABILITIES ('read:customers')
    AS $wasm$file://build/examples/rust/calculate_discount.basic.wasm$wasm$;

-- ...the same Rust source built as a Canonical-ABI component: its signature
-- comes from the component's WIT types...
CREATE PROCEDURE calculate_discount_component
    LANGUAGE wasm
    CAPABILITIES ('read:customers')
    USING EXPORT 'calculate-discount'
    AS $wasm$file://build/examples/rust/calculate_discount.component.wasm$wasm$;

-- ...and the same procedure in Python and in Go.
CREATE PROCEDURE calculate_discount_py
    LANGUAGE wasm
    CAPABILITIES ('read:customers')
    USING EXPORT 'calculate-discount'
    AS $wasm$file://build/examples/python/calculate_discount.component.wasm$wasm$;

CREATE PROCEDURE calculate_discount_go(customer_id BIGINT, order_total DOUBLE)
    RETURNS DOUBLE LANGUAGE wasm
    CAPABILITIES ('read:customers')
    USING EXPORT 'calculate_discount'
    AS $wasm$file://build/examples/go/calculate_discount.basic.wasm$wasm$;

-- ...and in TypeScript twice: compiled with QuickJS into a component, and
-- written in AssemblyScript as a Basic-ABI core module.
CREATE PROCEDURE calculate_discount_js
    LANGUAGE wasm
    CAPABILITIES ('read:customers')
    USING EXPORT 'calculate-discount'
    AS $wasm$file://build/examples/js/calculate_discount.component.wasm$wasm$;

CREATE PROCEDURE calculate_discount_as(customer_id BIGINT, order_total DOUBLE)
    RETURNS DOUBLE LANGUAGE wasm
    CAPABILITIES ('read:customers')
    USING EXPORT 'calculate_discount'
    AS $wasm$file://build/examples/assemblyscript/calculate_discount.basic.wasm$wasm$;

CREATE PROCEDURE compound_interest(principal DOUBLE, rate DOUBLE, years INTEGER)
    RETURNS DOUBLE LANGUAGE wasm
    AS $wasm$file://build/examples/rust/compound_interest.basic.wasm$wasm$;

CREATE PROCEDURE validate_order(customer_id BIGINT, order_total DOUBLE)
    RETURNS BOOLEAN LANGUAGE wasm
    CAPABILITIES ('read:customers', 'read:orders')
    AS $wasm$file://build/examples/python/validate_order.component.wasm$wasm$;

CREATE PROCEDURE detect_fraud(customer_id BIGINT, amount DOUBLE)
    RETURNS JSON LANGUAGE wasm
    CAPABILITIES ('read:customers', 'read:orders')
    AS $wasm$file://build/examples/go/detect_fraud.basic.wasm$wasm$;

CREATE PROCEDURE aggregate_sales(from_date TEXT, to_date TEXT)
    RETURNS TABLE(region TEXT, orders BIGINT, revenue DOUBLE)
    LANGUAGE wasm
    CAPABILITIES ('read:sales')
    AS $wasm$file://build/examples/js/aggregate_sales.component.wasm$wasm$;

SELECT calculate_discount(12345, 599.99) AS rust_basic,
       calculate_discount_component(12345, 599.99) AS rust_component,
       calculate_discount_py(12345, 599.99) AS python_component,
       calculate_discount_go(12345, 599.99) AS go_basic,
       calculate_discount_js(12345, 599.99) AS js_component,
       calculate_discount_as(12345, 599.99) AS assemblyscript_basic;

CALL compound_interest(1000.0, 0.05, 10);

-- One query orchestrating procedures written in three languages:
-- the discount in Rust, the validation in Python, the fraud score in Go.
SELECT o.id, c.name, c.tier, o.total,
       calculate_discount(o.customer_id, o.total) AS discount,
       validate_order(o.customer_id, o.total) AS valid,
       json_extract(detect_fraud(o.customer_id, o.total * 4), '$.score') AS fraud_score
FROM orders o JOIN customers c ON c.id = o.customer_id
ORDER BY o.id;

CALL detect_fraud(42, 10.0);

-- A table-valued procedure written in TypeScript.
SELECT * FROM aggregate_sales('2024-01-01', '2024-02-01');

-- Versions: v2 of calculate_discount is the Rust component build; roll back to v1.
ALTER PROCEDURE calculate_discount VERSION 2
    AS $wasm$file://build/examples/rust/calculate_discount.component.wasm$wasm$;
SELECT v.version, v.abi, v.version = p.active_version AS active
FROM _heliosdb_versions v JOIN _heliosdb_procedures p USING (name)
WHERE name = 'calculate_discount';
ALTER PROCEDURE calculate_discount USE VERSION 1;
SELECT calculate_discount(23456, 120.0) AS silver_discount;
