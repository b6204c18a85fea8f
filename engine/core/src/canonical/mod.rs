//! SingleStore's Canonical ABI (wit-bindgen 0.2, 2022) as the core runs it:
//! the WIT types with the layout `singlestore/wit.py` computed for them
//! ([`types`]), and SQL and JSON values to and from WIT values ([`values`],
//! [`json`]), worded as `singlestore/values.py` words them. Calling the
//! module (buffers in guest memory, the export, the frees) is
//! `python/canonical.rs`.

pub mod json;
pub mod types;
pub mod values;

pub use types::{Case, Field, Flat, Form, Int, Shape, Ty, Val};
