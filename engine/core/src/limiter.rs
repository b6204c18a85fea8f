//! Enforcing memory and table limits, and remembering which one refused.

use wasmtime::ResourceLimiter;

use crate::limits::Limits;

/// A growth the [`Limiter`] refused.
///
/// Guests rarely trap at the refused `memory.grow` itself: the instruction
/// returns -1 and the guest's allocator aborts later (`unreachable`). Knowing
/// that a refusal happened during the call is what lets that later trap be
/// reported as the limit it really is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A linear memory was asked to grow to `desired` bytes.
    Memory { desired: usize },
    /// A table was asked to grow to `desired` elements.
    TableElements { desired: usize },
}

/// The [`ResourceLimiter`] of one store, built from a procedure's [`Limits`].
#[derive(Debug, Clone)]
pub struct Limiter {
    memory_bytes: usize,
    max_table_elements: usize,
    max_instances: usize,
    max_tables: usize,
    max_memories: usize,
    refusal: Option<Refusal>,
}

impl Limiter {
    /// A limiter enforcing `limits`, with no refusal recorded.
    pub fn new(limits: &Limits) -> Self {
        Self {
            memory_bytes: limits.memory_bytes,
            max_table_elements: limits.max_table_elements,
            max_instances: limits.max_instances,
            max_tables: limits.max_tables,
            max_memories: limits.max_memories,
            refusal: None,
        }
    }

    /// The first growth refused since the last [`take_refusal`](Self::take_refusal).
    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal
    }

    /// Returns and forgets the recorded refusal; done before every call so a
    /// refusal is only ever blamed on the call that caused it.
    pub fn take_refusal(&mut self) -> Option<Refusal> {
        self.refusal.take()
    }

    fn refuse(&mut self, refusal: Refusal) -> bool {
        // The first refusal is the cause; later ones are the guest retrying.
        self.refusal.get_or_insert(refusal);
        false
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Ok(self.refuse(Refusal::Memory { desired }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            return Ok(self.refuse(Refusal::TableElements { desired }));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.max_instances
    }

    fn tables(&self) -> usize {
        self.max_tables
    }

    fn memories(&self) -> usize {
        self.max_memories
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{engine, instantiate_with_limiter};

    const PAGE: usize = 64 * 1024;

    fn limits(memory_pages: usize, table_elements: usize) -> Limits {
        Limits {
            memory_bytes: memory_pages * PAGE,
            max_table_elements: table_elements,
            ..Limits::default()
        }
    }

    #[test]
    fn memory_grow_past_the_limit_returns_minus_one_and_is_recorded() {
        let wat = r#"(module (memory 1)
            (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))"#;
        let (mut store, instance) = instantiate_with_limiter(&engine(), wat, &limits(4, 10));
        let grow = instance
            .get_typed_func::<i32, i32>(&mut store, "grow")
            .unwrap();
        assert_eq!(grow.call(&mut store, 3).unwrap(), 1);
        assert_eq!(store.data().refusal(), None);
        assert_eq!(grow.call(&mut store, 1).unwrap(), -1);
        assert_eq!(
            store.data_mut().take_refusal(),
            Some(Refusal::Memory { desired: 5 * PAGE })
        );
        assert_eq!(store.data().refusal(), None);
    }

    #[test]
    fn table_grow_past_the_limit_is_recorded() {
        let wat = r#"(module (table 1 funcref)
            (func (export "grow") (param i32) (result i32)
                (table.grow (ref.null func) (local.get 0))))"#;
        let (mut store, instance) = instantiate_with_limiter(&engine(), wat, &limits(1, 8));
        let grow = instance
            .get_typed_func::<i32, i32>(&mut store, "grow")
            .unwrap();
        assert_eq!(grow.call(&mut store, 7).unwrap(), 1);
        assert_eq!(grow.call(&mut store, 1).unwrap(), -1);
        assert_eq!(
            store.data().refusal(),
            Some(Refusal::TableElements { desired: 9 })
        );
    }

    #[test]
    fn the_first_refusal_is_kept() {
        let wat = r#"(module (memory 1)
            (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))"#;
        let (mut store, instance) = instantiate_with_limiter(&engine(), wat, &limits(2, 10));
        let grow = instance
            .get_typed_func::<i32, i32>(&mut store, "grow")
            .unwrap();
        assert_eq!(grow.call(&mut store, 8).unwrap(), -1);
        assert_eq!(grow.call(&mut store, 4).unwrap(), -1);
        assert_eq!(
            store.data().refusal(),
            Some(Refusal::Memory { desired: 9 * PAGE })
        );
    }

    #[test]
    fn memory_count_is_limited() {
        let limits = Limits {
            max_memories: 1,
            ..Limits::default()
        };
        let engine = engine();
        let module = wasmtime::Module::new(&engine, "(module (memory 1) (memory 1))").unwrap();
        let mut store = wasmtime::Store::new(&engine, Limiter::new(&limits));
        store.limiter(|limiter| limiter);
        let err = wasmtime::Instance::new(&mut store, &module, &[]).unwrap_err();
        assert!(err.to_string().contains("memory count"), "{err}");
    }
}
