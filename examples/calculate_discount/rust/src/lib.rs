//! The seed's procedure: the customer's loyalty tier decides the discount.

use heliosdb_wasm_sdk::{Error, heliosdb_procedure, log, query};

#[heliosdb_procedure]
fn calculate_discount(customer_id: i64, order_total: f64) -> Result<f64, Error> {
    let rows = query("SELECT tier FROM customers WHERE id = ?", &[customer_id.into()])?;
    let customer = rows.first().ok_or_else(|| {
        Error::user("CUSTOMER_NOT_FOUND", format!("no customer with id {customer_id}"))
    })?;
    let tier: String = customer.get("tier")?;
    let rate = match tier.as_str() {
        "gold" => 0.20,
        "silver" => 0.10,
        "bronze" => 0.05,
        _ => 0.0,
    };
    let discount = order_total * rate;
    log::info(&format!("customer {customer_id} tier {tier}: discount {discount}"));
    Ok(discount)
}
