"""aggregate_sales in Python: a table-valued procedure (examples/README.md)."""

from dataclasses import dataclass

from heliosdb_procedures import procedure, query


@dataclass
class SalesRow:
    region: str
    orders: int
    revenue: float


@procedure
def aggregate_sales(from_date: str, to_date: str) -> list[SalesRow]:
    rows = query(
        "SELECT region, count(*) AS orders, sum(amount) AS revenue FROM sales"
        " WHERE sold_at >= ? AND sold_at < ? GROUP BY region ORDER BY region",
        from_date,
        to_date,
    )
    return [SalesRow(r["region"], r["orders"], r["revenue"]) for r in rows]
