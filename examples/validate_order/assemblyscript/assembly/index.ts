// validate_order in AssemblyScript: several queries, a boolean answer (examples/README.md).
import { Value, query } from "heliosdb";

function creditLimit(tier: string): f64 {
  if (tier == "gold") return 5000;
  if (tier == "silver") return 2000;
  if (tier == "bronze") return 1000;
  return 500;
}

export function validateOrder(customerId: i64, orderTotal: f64): bool {
  const customer = query("SELECT tier FROM customers WHERE id = ?", [Value.int(customerId)]);
  if (customer.length == 0 || orderTotal <= 0) return false;
  const history = query(
    "SELECT count(*) AS n, coalesce(sum(total), 0.0) AS spent FROM orders WHERE customer_id = ?",
    [Value.int(customerId)],
  );
  const spent = history.length > 0 ? history.getReal(0, "spent") : 0.0;
  return spent + orderTotal <= creditLimit(customer.getString(0, "tier"));
}
