//! Native runtime core of `HeliosDB` WASM procedures.
//!
//! This crate will become the `heliosdb_wasm._core` extension module. It owns
//! the wasmtime side of a procedure call and nothing above it:
//!
//! - [`abi`]: the Basic ABI's host import table, the one the engine links;
//! - [`basic`]: a Basic-ABI call, its per-call state and the host functions;
//! - [`encoding`]: the Basic ABI's parameter and row encodings;
//! - [`limits`]: the per-call resource limits, mirroring Python's `policy.Limits`;
//! - [`logs`]: a database's procedure log, written without Python;
//! - [`engine`]: one [`Runtime`] per process, the wasmtime `Engine` and the epoch ticker;
//! - [`limiter`]: a `ResourceLimiter` that remembers which limit refused a growth;
//! - [`error`]: the typed error of a call, with the guest's backtrace;
//! - [`policy`]: the capability authorizer of a procedure's statements;
//! - [`pool`]: pre-linked instances of one module version, reused between calls;
//! - [`mod@call`]: calling a numeric export through a pool;
//! - [`component`]: components: the host interfaces from `wit/`, WASI 0.2, dynamic exports;
//! - [`cache`]: compiled modules on disk, keyed by hash and engine settings;
//! - [`canonical`]: SingleStore's Canonical-ABI types and their SQL and JSON values;
//! - `gate` (feature `sqlite`): one connection's authorizer and the bounds of guest statements;
//! - `statement` (feature `sqlite`): a procedure's SQL statement on the caller's connection;
//! - [`typed`]: a numeric export resolved and type-checked once, then called cheaply;
//! - [`wasi`]: deny-by-default WASI preview 1 and the guest's stdout/stderr as log lines.

pub mod abi;
pub mod basic;
pub mod cache;
pub mod call;
pub mod canonical;
pub mod component;
pub mod encoding;
pub mod engine;
pub mod error;
#[cfg(feature = "sqlite")]
pub mod gate;
pub mod limiter;
pub mod limits;
pub mod logs;
pub mod policy;
pub mod pool;
#[cfg(feature = "sqlite")]
pub mod statement;
pub mod typed;
pub mod wasi;

pub use cache::{CacheError, ModuleCache, Stats};
pub use call::call;
pub use engine::{Allocation, PoolingConfig, Runtime, RuntimeConfig};
pub use error::{CallError, Frame, Limit};
pub use limiter::{Limiter, Refusal};
pub use limits::Limits;
pub use pool::{InstancePool, PooledInstance, StoreData};
pub use typed::{Export, NumType};

#[cfg(test)]
mod testutil;

#[cfg(feature = "python")]
mod python;
