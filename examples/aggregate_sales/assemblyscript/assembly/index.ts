// aggregate_sales in AssemblyScript: a table-valued procedure (examples/README.md).
import { Value, query } from "heliosdb";

export class SalesRow {
  region: string = "";
  orders: i64 = 0;
  revenue: f64 = 0;
}

export function aggregateSales(fromDate: string, toDate: string): SalesRow[] {
  const rows = query(
    "SELECT region, count(*) AS orders, sum(amount) AS revenue FROM sales" +
      " WHERE sold_at >= ? AND sold_at < ? GROUP BY region ORDER BY region",
    [Value.text(fromDate), Value.text(toDate)],
  );
  const out = new Array<SalesRow>();
  for (let i = 0; i < rows.length; i++) {
    const row = new SalesRow();
    row.region = rows.getString(i, "region");
    row.orders = rows.getInt(i, "orders");
    row.revenue = rows.getReal(i, "revenue");
    out.push(row);
  }
  return out;
}
