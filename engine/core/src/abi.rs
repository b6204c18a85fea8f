//! The Basic ABI's host import table (docs/abi.md §4): the one definition
//! the engine links and checks modules against.
//!
//! It is the WIT host API (`wit/host.wit`, `wit/plugin.wit`) lowered by the
//! rule docs/abi.md states; `tests/test_host_api_wit.py` derives every
//! entry from the WIT with wasm-tools and compares it with this table (as
//! Python sees it, `_core.BASIC_HOST_IMPORTS`) and with the table in
//! docs/abi.md, so the three cannot drift apart.

use crate::typed::NumType::{self, I32, I64};

/// The import module of the host functions.
pub const HOST_MODULE: &str = "heliosdb";

/// One host function a core module may import from [`HOST_MODULE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostImport {
    pub name: &'static str,
    pub params: &'static [NumType],
    pub results: &'static [NumType],
}

const fn import(
    name: &'static str,
    params: &'static [NumType],
    results: &'static [NumType],
) -> HostImport {
    HostImport {
        name,
        params,
        results,
    }
}

/// Every host function, in docs/abi.md's order.
pub const HOST_IMPORTS: &[HostImport] = &[
    import("heliosdb_query", &[I32; 5], &[I32]),
    import("heliosdb_execute", &[I32; 5], &[I32]),
    import("heliosdb_get_param", &[I32; 2], &[I32]),
    import("heliosdb_return", &[I32; 3], &[]),
    import("heliosdb_log", &[I32; 3], &[]),
    import("heliosdb_begin_tx", &[], &[I32]),
    import("heliosdb_commit_tx", &[], &[I32]),
    import("heliosdb_rollback_tx", &[], &[I32]),
    import("heliosdb_now", &[], &[I64]),
    import("heliosdb_error", &[I32; 4], &[]),
    import("heliosdb_last_error", &[I32], &[I32]),
    import("heliosdb_http_fetch", &[I32; 3], &[I32]),
    import("heliosdb_digest", &[I32; 5], &[I32]),
    import("heliosdb_hmac", &[I32; 7], &[I32]),
    // plugin-host.count-in-window (docs/plugins.md §3), for query-hook plugins
    import("count_in_window", &[I32, I32, I64], &[I64]),
];

/// The host function `name`, if there is one.
pub fn host_import(name: &str) -> Option<&'static HostImport> {
    HOST_IMPORTS.iter().find(|i| i.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for (i, import) in HOST_IMPORTS.iter().enumerate() {
            assert_eq!(host_import(import.name), Some(import));
            assert!(HOST_IMPORTS[..i].iter().all(|o| o.name != import.name));
        }
        assert_eq!(host_import("heliosdb_nothing"), None);
    }

    #[test]
    fn fallible_calls_return_a_status() {
        // Every call that can fail returns an i32 status (docs/abi.md §4);
        // the ones that cannot return nothing or their value.
        for import in HOST_IMPORTS {
            let infallible = matches!(
                import.name,
                "heliosdb_return"
                    | "heliosdb_log"
                    | "heliosdb_error"
                    | "heliosdb_now"
                    | "count_in_window"
            );
            assert_eq!(import.results == [I32], !infallible, "{}", import.name);
        }
    }
}
