"""detect_fraud in Python: queries, then a JSON verdict (examples/README.md)."""

from heliosdb_procedures import Json, procedure, query_one


@procedure
def detect_fraud(customer_id: int, amount: float) -> Json:
    flags: list[str] = []
    score = 0
    known = query_one("SELECT count(*) AS n FROM customers WHERE id = ?", customer_id)
    if not known or known["n"] == 0:
        flags.append("unknown_customer")
        score += 60
    history = query_one(
        "SELECT count(*) AS n, coalesce(avg(total), 0.0) AS average"
        " FROM orders WHERE customer_id = ?",
        customer_id,
    )
    if history is None or history["n"] == 0:
        flags.append("first_order")
        score += 10
    elif amount > 3 * history["average"]:
        flags.append("amount_over_3x_average")
        score += 30
    if amount >= 5000:
        flags.append("large_amount")
        score += 20
    return {"customer_id": customer_id, "score": score, "flags": flags, "fraud": score >= 50}
