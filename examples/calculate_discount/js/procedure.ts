// The seed's procedure in TypeScript: the customer's loyalty tier decides the discount.
import { ProcedureError, log, queryOne, type f64, type i64 } from "heliosdb";

const RATES: Record<string, number> = { gold: 0.2, silver: 0.1, bronze: 0.05 };

export function calculateDiscount(customerId: i64, orderTotal: f64): f64 {
  const customer = queryOne("SELECT tier FROM customers WHERE id = ?", customerId);
  if (customer === null) {
    throw new ProcedureError("CUSTOMER_NOT_FOUND", `no customer with id ${customerId}`);
  }
  const tier = String(customer.tier);
  const discount = orderTotal * (RATES[tier] ?? 0);
  log.info(`customer ${customerId} tier ${tier}: discount ${discount}`);
  return discount;
}
