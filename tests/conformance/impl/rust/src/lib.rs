//! The conformance world (tests/conformance/conformance.wit) in Rust.

use heliosdb_wasm_sdk::{
    Error, Json, Row, begin_tx, crypto, execute, heliosdb_procedure, http, log, now,
    query, rollback_tx, transaction,
};

#[derive(Row)]
struct Numbered {
    i: i64,
    label: String,
    half: f64,
}

#[heliosdb_procedure]
fn echo_i64(x: i64) -> Result<i64, Error> {
    Ok(x)
}

#[heliosdb_procedure]
fn echo_i32(x: i32) -> Result<i32, Error> {
    Ok(x)
}

#[heliosdb_procedure]
fn echo_f64(x: f64) -> Result<f64, Error> {
    Ok(x)
}

#[heliosdb_procedure]
fn echo_f32(x: f32) -> Result<f32, Error> {
    Ok(x)
}

#[heliosdb_procedure]
fn echo_bool(x: bool) -> Result<bool, Error> {
    Ok(x)
}

#[heliosdb_procedure]
fn echo_text(x: String) -> Result<String, Error> {
    Ok(x)
}

#[heliosdb_procedure]
fn echo_blob(x: Vec<u8>) -> Result<Vec<u8>, Error> {
    Ok(x)
}

#[heliosdb_procedure]
fn echo_nullable(x: Option<i64>) -> Result<Option<i64>, Error> {
    Ok(x)
}

#[heliosdb_procedure]
fn text_chars(x: String) -> Result<i64, Error> {
    Ok(x.chars().count() as i64)
}

#[heliosdb_procedure]
fn blob_sum(x: Vec<u8>) -> Result<i64, Error> {
    Ok(x.iter().map(|b| *b as i64).sum())
}

#[heliosdb_procedure]
fn numbered_rows(n: i64) -> Result<Vec<Numbered>, Error> {
    Ok((1..=n).map(|i| Numbered { i, label: format!("row {i}"), half: i as f64 / 2.0 }).collect())
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[heliosdb_procedure]
fn make_json(name: String, n: i64) -> Result<Json, Error> {
    Ok(Json(format!("{{\"name\":{},\"n\":{n},\"tags\":[\"a\",\"b\"]}}", json_string(&name))))
}

#[heliosdb_procedure]
fn count_label(label: String) -> Result<i64, Error> {
    let rows = query("SELECT count(*) AS n FROM conf_items WHERE label = ?", &[label.into()])?;
    rows.first().map_or(Ok(0), |r| r.get("n"))
}

#[heliosdb_procedure]
fn query_error_case() -> Result<String, Error> {
    match query("SELEKT 1", &[]) {
        Ok(_) => Ok("no error".into()),
        Err(err) => Ok(err.case().into()),
    }
}

#[heliosdb_procedure]
fn query_error_raise() -> Result<i64, Error> {
    query("SELEKT 1", &[])?;
    Ok(0)
}

#[heliosdb_procedure]
fn raise_user_error(code: String, message: String) -> Result<i64, Error> {
    Err(Error::user(code, message))
}

fn insert(id: i64) -> Result<(), Error> {
    execute("INSERT INTO conf_items(id, label) VALUES (?, 'tx')", &[id.into()])?;
    Ok(())
}

fn count(id: i64) -> Result<i64, Error> {
    let rows = query("SELECT count(*) AS n FROM conf_items WHERE id = ?", &[id.into()])?;
    rows.first().map_or(Ok(0), |r| r.get("n"))
}

#[heliosdb_procedure]
fn tx_commit(id: i64) -> Result<i64, Error> {
    transaction(|| insert(id))?;
    count(id)
}

#[heliosdb_procedure]
fn tx_rollback(id: i64) -> Result<i64, Error> {
    begin_tx()?;
    insert(id)?;
    rollback_tx()?;
    count(id)
}

#[heliosdb_procedure]
fn insert_then_trap(id: i64) -> Result<i64, Error> {
    insert(id)?;
    panic!("trapping on purpose after an insert");
}

#[heliosdb_procedure]
fn log_levels() -> Result<i64, Error> {
    log::trace("t");
    log::debug("d");
    log::info("i");
    log::warn("w");
    log::error("e");
    Ok(5)
}

#[heliosdb_procedure]
fn now_micros() -> Result<i64, Error> {
    Ok(now())
}

#[heliosdb_procedure]
fn trap() -> Result<i64, Error> {
    panic!("trapping on purpose");
}

#[heliosdb_procedure]
fn spin() -> Result<i64, Error> {
    let mut n: i64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

#[heliosdb_procedure]
fn allocate_mib(mib: i64) -> Result<i64, Error> {
    // One MiB at a time, every page touched, all kept.
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for _ in 0..mib {
        let mut block = vec![0u8; 1 << 20];
        for page in (0..block.len()).step_by(4096) {
            block[page] = 1;
        }
        blocks.push(std::hint::black_box(block));
    }
    Ok(blocks.len() as i64)
}

#[heliosdb_procedure]
fn read_secret() -> Result<i64, Error> {
    let rows = query("SELECT x FROM conf_secret", &[])?;
    rows.first().map_or(Ok(0), |r| r.get("x"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[heliosdb_procedure]
fn sha256_hex(x: Vec<u8>) -> Result<String, Error> {
    Ok(hex(&crypto::digest("sha256", &x)?))
}

#[heliosdb_procedure]
fn hmac_sha256_hex(key: Vec<u8>, data: Vec<u8>) -> Result<String, Error> {
    Ok(hex(&crypto::hmac("sha256", &key, &data)?))
}

#[heliosdb_procedure]
fn fetch_text(url: String) -> Result<String, Error> {
    let response = http::get(&url)?;
    Ok(format!("{} {}", response.status, response.text()))
}
