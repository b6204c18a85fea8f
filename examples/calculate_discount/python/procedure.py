"""The seed's procedure in Python: the customer's loyalty tier decides the discount."""

from heliosdb_procedures import ProcedureError, log, procedure, query_one

RATES = {"gold": 0.20, "silver": 0.10, "bronze": 0.05}


@procedure
def calculate_discount(customer_id: int, order_total: float) -> float:
    customer = query_one("SELECT tier FROM customers WHERE id = ?", customer_id)
    if customer is None:
        raise ProcedureError("CUSTOMER_NOT_FOUND", f"no customer with id {customer_id}")
    tier = customer["tier"]
    discount = order_total * RATES.get(tier, 0.0)
    log.info(f"customer {customer_id} tier {tier}: discount {discount}")
    return discount
