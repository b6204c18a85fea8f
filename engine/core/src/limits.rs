//! Per-call resource limits.

use std::time::Duration;

const MIB: usize = 1024 * 1024;

/// The limits of one procedure call that the runtime enforces.
///
/// Field for field the runtime part of Python's `policy.Limits`, with the same
/// defaults; Python validates the values and hands them over as they are.
/// Limits enforced above the runtime (argument, result, log and query sizes,
/// call depth) stay in Python.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory the guest may grow to, in bytes.
    pub memory_bytes: usize,
    /// Wasm fuel per call: roughly one unit per instruction executed.
    pub fuel: u64,
    /// Wall-clock deadline per call, enforced by epoch interruption.
    pub timeout: Duration,
    /// Idle instances kept per procedure version for reuse.
    pub pool_size: usize,
    /// Elements one table may grow to.
    pub max_table_elements: usize,
    /// Tables one store may create.
    pub max_tables: usize,
    /// Instances one store may create (a component has several core instances).
    pub max_instances: usize,
    /// Linear memories one store may create.
    pub max_memories: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 16 * MIB,
            fuel: 2_000_000_000,
            timeout: Duration::from_secs(10),
            pool_size: 10,
            max_table_elements: 100_000,
            max_tables: 10,
            max_instances: 100,
            max_memories: 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_python_policy_limits() {
        let limits = Limits::default();
        assert_eq!(limits.memory_bytes, 16 * 1024 * 1024);
        assert_eq!(limits.fuel, 2_000_000_000);
        assert_eq!(limits.timeout, Duration::from_secs(10));
        assert_eq!(limits.pool_size, 10);
        assert_eq!(limits.max_table_elements, 100_000);
        assert_eq!(limits.max_tables, 10);
        assert_eq!(limits.max_instances, 100);
        assert_eq!(limits.max_memories, 4);
    }
}
