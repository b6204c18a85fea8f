// detect_fraud in AssemblyScript: queries, then a JSON verdict (examples/README.md).
import { Json, Value, query } from "heliosdb";

export function detectFraud(customerId: i64, amount: f64): Json {
  const flags = new Array<string>();
  let score = 0;
  const id = [Value.int(customerId)];
  const known = query("SELECT count(*) AS n FROM customers WHERE id = ?", id);
  if (known.length == 0 || known.getInt(0, "n") == 0) {
    flags.push("unknown_customer");
    score += 60;
  }
  const history = query(
    "SELECT count(*) AS n, coalesce(avg(total), 0.0) AS average FROM orders WHERE customer_id = ?",
    id,
  );
  if (history.length == 0 || history.getInt(0, "n") == 0) {
    flags.push("first_order");
    score += 10;
  } else if (amount > 3 * history.getReal(0, "average")) {
    flags.push("amount_over_3x_average");
    score += 30;
  }
  if (amount >= 5000) {
    flags.push("large_amount");
    score += 20;
  }
  // The flags are fixed identifiers: no JSON escaping is needed.
  const quoted = flags.map<string>((f: string) => '"' + f + '"').join(",");
  return (
    '{"customer_id":' + customerId.toString() +
    ',"score":' + score.toString() +
    ',"flags":[' + quoted + "]" +
    ',"fraud":' + (score >= 50 ? "true" : "false") + "}"
  );
}
