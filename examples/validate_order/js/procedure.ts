// validate_order in TypeScript: several queries, a boolean answer (examples/README.md).
import { queryOne, type bool, type f64, type i64 } from "heliosdb";

const CREDIT_LIMITS: Record<string, number> = { gold: 5000, silver: 2000, bronze: 1000 };

export function validateOrder(customerId: i64, orderTotal: f64): bool {
  const customer = queryOne("SELECT tier FROM customers WHERE id = ?", customerId);
  if (customer === null || orderTotal <= 0) return false;
  const history = queryOne(
    "SELECT count(*) AS n, coalesce(sum(total), 0.0) AS spent FROM orders WHERE customer_id = ?",
    customerId,
  );
  const spent = Number(history?.spent ?? 0);
  return spent + orderTotal <= (CREDIT_LIMITS[String(customer.tier)] ?? 500);
}
