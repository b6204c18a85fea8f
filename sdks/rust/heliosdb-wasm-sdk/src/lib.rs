//! Write HeliosDB stored procedures in Rust.
//!
//! ```ignore
//! use heliosdb_wasm_sdk::{heliosdb_procedure, log, query, Error};
//!
//! #[heliosdb_procedure]
//! fn calculate_discount(customer_id: i64, order_total: f64) -> Result<f64, Error> {
//!     let rows = query("SELECT tier FROM customers WHERE id = ?", &[customer_id.into()])?;
//!     let tier: String = rows.first()
//!         .ok_or_else(|| Error::user("CUSTOMER_NOT_FOUND", format!("no customer with id {customer_id}")))?
//!         .get("tier")?;
//!     ...
//! }
//! ```
//!
//! The same source builds as a Basic-ABI core module (default) or, with the
//! `component` feature, as a Canonical-ABI component whose host imports come
//! from the repository's `wit/` through wit-bindgen. `heliosdb-wasm build`
//! does both. The host API has the same names and meaning in every SDK.

// Components only: in a Basic-ABI module the report would add a host import
// to procedures that otherwise have none; there the engine judges by the
// memory size at the trap instead.
#[cfg(feature = "component")]
mod oom;
mod types;

#[cfg(not(feature = "component"))]
mod basic;
#[cfg(not(feature = "component"))]
use basic as backend;

#[cfg(feature = "component")]
mod component;
#[cfg(feature = "component")]
use component as backend;

#[doc(hidden)]
pub mod __private;

/// Query-hook plugins (feature `plugin`): see the module's documentation.
#[cfg(feature = "plugin")]
pub mod plugin;

pub use heliosdb_wasm_macros::{Row, heliosdb_procedure};
#[cfg(feature = "plugin")]
pub use heliosdb_wasm_macros::heliosdb_plugin;
pub use types::{Error, FromValue, Json, Row, RowRef, Rows, Value};

/// Runs a read statement with `?` parameters and returns every row.
pub fn query(sql: &str, params: &[Value]) -> Result<Rows, Error> {
    backend::query(sql, params)
}

/// Runs a write statement with `?` parameters; the number of rows changed.
pub fn execute(sql: &str, params: &[Value]) -> Result<u64, Error> {
    backend::execute(sql, params)
}

/// Opens a nested transaction (a savepoint); close it with [`commit_tx`] or
/// [`rollback_tx`] before returning.
pub fn begin_tx() -> Result<(), Error> {
    backend::begin_tx()
}

pub fn commit_tx() -> Result<(), Error> {
    backend::commit_tx()
}

pub fn rollback_tx() -> Result<(), Error> {
    backend::rollback_tx()
}

/// Runs `body` in a nested transaction: committed when it returns `Ok`,
/// rolled back when it returns `Err`.
pub fn transaction<T>(body: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    begin_tx()?;
    match body() {
        Ok(value) => {
            commit_tx()?;
            Ok(value)
        }
        Err(err) => {
            rollback_tx()?;
            Err(err)
        }
    }
}

/// The host's wall clock, microseconds since the Unix epoch.
pub fn now() -> i64 {
    backend::now()
}

/// The procedure log: `log::info("...")`, or `log::info(&format!(...))`.
pub mod log {
    use super::backend;

    pub fn trace(message: &str) {
        backend::log(0, message)
    }
    pub fn debug(message: &str) {
        backend::log(1, message)
    }
    pub fn info(message: &str) {
        backend::log(2, message)
    }
    pub fn warn(message: &str) {
        backend::log(3, message)
    }
    pub fn error(message: &str) {
        backend::log(4, message)
    }
}

/// Outgoing HTTP(S): needs the capability `network:<host>` for the URL's
/// host (any port; redirects only to granted hosts).
pub mod http {
    use super::{Error, backend};

    /// An HTTP request; `headers` are (name, value) pairs.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct Request {
        pub method: String,
        pub url: String,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    /// The answer; a 4xx or 5xx status is a response, not an error.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct Response {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Response {
        /// The first header called `name` (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }

        /// The body as text (invalid UTF-8 replaced).
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }

    /// Sends `req`. A host without the grant is `Error::AccessDenied`; a bad
    /// URL or a refused connection is `Error::InvalidArgument`.
    pub fn fetch(req: &Request) -> Result<Response, Error> {
        backend::http_fetch(req)
    }

    /// `GET url` with no headers and no body.
    pub fn get(url: &str) -> Result<Response, Error> {
        fetch(&Request { method: "GET".into(), url: url.into(), ..Request::default() })
    }
}

/// Host hashing: needs the `crypto` capability. `algorithm` is a hashlib
/// name with `-` for `_` (`sha256`, `sha512`, `sha3-256`, `blake2b`, `md5`,
/// ...); an unknown one is `Error::InvalidArgument`.
pub mod crypto {
    use super::{Error, backend};

    /// The digest of `data`.
    pub fn digest(algorithm: &str, data: &[u8]) -> Result<Vec<u8>, Error> {
        backend::digest(algorithm, data)
    }

    /// The HMAC of `data` under `key`.
    pub fn hmac(algorithm: &str, key: &[u8], data: &[u8]) -> Result<Vec<u8>, Error> {
        backend::hmac(algorithm, key, data)
    }
}

/// Expands to one of its two token groups depending on this crate's
/// `component` feature; used by the macros so that user crates need no cfg.
#[cfg(not(feature = "component"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __select_abi {
    (basic: { $($basic:tt)* } component: { $($component:tt)* }) => { $($basic)* };
}

#[cfg(feature = "component")]
#[doc(hidden)]
#[macro_export]
macro_rules! __select_abi {
    (basic: { $($basic:tt)* } component: { $($component:tt)* }) => { $($component)* };
}
