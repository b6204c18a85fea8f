// aggregate_sales in TypeScript: a table-valued procedure (examples/README.md).
import { query, type f64, type i64 } from "heliosdb";

export interface SalesRow {
  region: string;
  orders: i64;
  revenue: f64;
}

export function aggregateSales(fromDate: string, toDate: string): SalesRow[] {
  const rows = query(
    "SELECT region, count(*) AS orders, sum(amount) AS revenue FROM sales" +
      " WHERE sold_at >= ? AND sold_at < ? GROUP BY region ORDER BY region",
    fromDate,
    toDate,
  );
  return rows.map((r) => ({
    region: String(r.region),
    orders: Number(r.orders),
    revenue: Number(r.revenue),
  }));
}
