//! A table-valued procedure: one row per region.

use heliosdb_wasm_sdk::{Error, Row, heliosdb_procedure, query};

#[derive(Row)]
struct SalesRow {
    region: String,
    orders: i64,
    revenue: f64,
}

#[heliosdb_procedure]
fn aggregate_sales(from_date: String, to_date: String) -> Result<Vec<SalesRow>, Error> {
    let rows = query(
        "SELECT region, count(*) AS orders, sum(amount) AS revenue FROM sales \
         WHERE sold_at >= ? AND sold_at < ? GROUP BY region ORDER BY region",
        &[from_date.into(), to_date.into()],
    )?;
    rows.iter()
        .map(|r| Ok(SalesRow { region: r.get("region")?, orders: r.get("orders")?, revenue: r.get("revenue")? }))
        .collect()
}
