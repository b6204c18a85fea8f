// The seed's procedure in AssemblyScript: the customer's loyalty tier decides the discount.
import { Value, log, query, raise } from "heliosdb";

function rate(tier: string): f64 {
  if (tier == "gold") return 0.2;
  if (tier == "silver") return 0.1;
  if (tier == "bronze") return 0.05;
  return 0;
}

export function calculateDiscount(customerId: i64, orderTotal: f64): f64 {
  const customer = query("SELECT tier FROM customers WHERE id = ?", [Value.int(customerId)]);
  if (customer.length == 0) {
    raise("CUSTOMER_NOT_FOUND", "no customer with id " + customerId.toString());
  }
  const tier = customer.getString(0, "tier");
  const discount = orderTotal * rate(tier);
  log.info("customer " + customerId.toString() + " tier " + tier + ": discount " + discount.toString());
  return discount;
}
