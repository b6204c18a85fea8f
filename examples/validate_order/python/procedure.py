"""validate_order in Python: several queries, a boolean answer (examples/README.md)."""

from heliosdb_procedures import procedure, query_one

CREDIT_LIMITS = {"gold": 5000.0, "silver": 2000.0, "bronze": 1000.0}


@procedure
def validate_order(customer_id: int, order_total: float) -> bool:
    customer = query_one("SELECT tier FROM customers WHERE id = ?", customer_id)
    if customer is None or order_total <= 0:
        return False
    history = query_one(
        "SELECT count(*) AS n, coalesce(sum(total), 0.0) AS spent FROM orders WHERE customer_id = ?",
        customer_id,
    )
    spent = history["spent"] if history else 0.0
    return spent + order_total <= CREDIT_LIMITS.get(customer["tier"], 500.0)
