//! Pure arithmetic: a procedure with no host imports at all.

use heliosdb_wasm_sdk::heliosdb_procedure;

#[heliosdb_procedure]
fn compound_interest(principal: f64, rate: f64, years: i32) -> f64 {
    // powi by repeated multiplication: no libm import in the module.
    let mut amount = principal;
    for _ in 0..years.max(0) {
        amount *= 1.0 + rate;
    }
    amount
}
