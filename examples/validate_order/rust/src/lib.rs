//! Several queries, a boolean answer.

use heliosdb_wasm_sdk::{Error, heliosdb_procedure, query};

#[heliosdb_procedure]
fn validate_order(customer_id: i64, order_total: f64) -> Result<bool, Error> {
    let customer = query("SELECT tier FROM customers WHERE id = ?", &[customer_id.into()])?;
    let Some(customer) = customer.first() else { return Ok(false) };
    if order_total <= 0.0 {
        return Ok(false);
    }
    let history = query(
        "SELECT count(*) AS n, coalesce(sum(total), 0.0) AS spent FROM orders WHERE customer_id = ?",
        &[customer_id.into()],
    )?;
    let spent: f64 = history.first().map(|r| r.get("spent")).transpose()?.unwrap_or(0.0);
    let limit = match customer.get::<String>("tier")?.as_str() {
        "gold" => 5000.0,
        "silver" => 2000.0,
        "bronze" => 1000.0,
        _ => 500.0,
    };
    Ok(spent + order_total <= limit)
}
