// detect_fraud in TypeScript: queries, then a JSON verdict (examples/README.md).
import { json, queryOne, type f64, type i64, type Json } from "heliosdb";

export function detectFraud(customerId: i64, amount: f64): Json {
  const flags: string[] = [];
  let score = 0;
  const known = queryOne("SELECT count(*) AS n FROM customers WHERE id = ?", customerId);
  if (known === null || known.n === 0) {
    flags.push("unknown_customer");
    score += 60;
  }
  const history = queryOne(
    "SELECT count(*) AS n, coalesce(avg(total), 0.0) AS average FROM orders WHERE customer_id = ?",
    customerId,
  );
  if (history === null || history.n === 0) {
    flags.push("first_order");
    score += 10;
  } else if (amount > 3 * Number(history.average)) {
    flags.push("amount_over_3x_average");
    score += 30;
  }
  if (amount >= 5000) {
    flags.push("large_amount");
    score += 20;
  }
  return json({ customer_id: customerId, score, flags, fraud: score >= 50 });
}
