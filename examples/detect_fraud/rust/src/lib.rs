//! Queries, then a JSON verdict.

use heliosdb_wasm_sdk::{Error, Json, heliosdb_procedure, query};

#[heliosdb_procedure]
fn detect_fraud(customer_id: i64, amount: f64) -> Result<Json, Error> {
    let mut flags: Vec<&str> = Vec::new();
    let mut score = 0;
    let known = query("SELECT count(*) AS n FROM customers WHERE id = ?", &[customer_id.into()])?;
    if known.first().map(|r| r.get::<i64>("n")).transpose()?.unwrap_or(0) == 0 {
        flags.push("unknown_customer");
        score += 60;
    }
    let history = query(
        "SELECT count(*) AS n, coalesce(avg(total), 0.0) AS average FROM orders WHERE customer_id = ?",
        &[customer_id.into()],
    )?;
    let (n, average) = match history.first() {
        Some(r) => (r.get::<i64>("n")?, r.get::<f64>("average")?),
        None => (0, 0.0),
    };
    if n == 0 {
        flags.push("first_order");
        score += 10;
    } else if amount > 3.0 * average {
        flags.push("amount_over_3x_average");
        score += 30;
    }
    if amount >= 5000.0 {
        flags.push("large_amount");
        score += 20;
    }
    // Flags are fixed ASCII words: no escaping needed.
    let flags: Vec<String> = flags.iter().map(|f| format!("\"{f}\"")).collect();
    Ok(Json(format!(
        "{{\"customer_id\":{customer_id},\"score\":{score},\"flags\":[{}],\"fraud\":{}}}",
        flags.join(","),
        score >= 50
    )))
}
