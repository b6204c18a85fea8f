-- The seed's data: customers with loyalty tiers, their orders, and sales.
-- Shared by the demo (examples/demo.sql) and the example tests.
CREATE TABLE customers(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    tier TEXT NOT NULL CHECK (tier IN ('gold', 'silver', 'bronze', 'none'))
);
INSERT INTO customers(id, name, tier) VALUES
    (12345, 'Ada Lovelace', 'gold'),
    (23456, 'Alan Turing', 'silver'),
    (34567, 'Grace Hopper', 'bronze'),
    (45678, 'Edsger Dijkstra', 'none');

CREATE TABLE orders(
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    total REAL NOT NULL
);
INSERT INTO orders(id, customer_id, total) VALUES
    (1, 12345, 599.99),
    (2, 23456, 120.00),
    (3, 34567, 80.00),
    (4, 45678, 42.00),
    (5, 12345, 10.00);

CREATE TABLE sales(
    id INTEGER PRIMARY KEY,
    region TEXT NOT NULL,
    amount REAL NOT NULL,
    sold_at TEXT NOT NULL
);
INSERT INTO sales(region, amount, sold_at) VALUES
    ('emea', 100.0, '2024-01-03'),
    ('emea', 250.5, '2024-01-17'),
    ('amer', 75.0, '2024-01-09'),
    ('apac', 60.0, '2024-01-30'),
    ('amer', 999.0, '2024-02-02'),
    ('apac', 10.0, '2023-12-31');
