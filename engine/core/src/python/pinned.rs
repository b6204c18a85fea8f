//! Instances a caller holds for several guest calls: a group of an
//! aggregate (`aggregate.rs`), the allocations, export and frees of one
//! Canonical-ABI call (`canonical.rs`). Of a module that imports nothing,
//! or WASI only (a `BasicPool`'s instances, WASI linked there, with no host
//! behind the calls).

use std::collections::VecDeque;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use wasmtime::{Memory, ValRaw};

use super::basic::{BasicPool, Pool as BasicInstances, PyHost};
use super::numeric::{import_free, limits_from, pure_pool};
use super::runtime::PyModule_;
use crate::basic::{self, BasicState};
use crate::error::CallError;
use crate::pool::{InstancePool, PooledInstance};
use crate::typed::Export;

/// Where pinned instances come from.
pub enum Pool {
    Pure(InstancePool<()>),
    Wasi(Arc<BasicInstances>),
}

/// An instance of a [`Pool`], held for several calls.
pub enum Pinned {
    Pure(PooledInstance<()>),
    Wasi(PooledInstance<BasicState<PyHost>>),
}

impl Pool {
    /// The instances of `module`: a `_core.Module` that imports nothing (a
    /// pool made here under `limits`), or a `_core.BasicPool` of a module
    /// that imports WASI only.
    ///
    /// # Errors
    ///
    /// Neither; a module with imports; limits no pool can hold.
    pub fn from_py(module: &Bound<'_, PyAny>, limits: &Bound<'_, PyDict>) -> PyResult<Self> {
        if let Ok(basic) = module.cast::<BasicPool>() {
            return Ok(Self::Wasi(basic.get().pool.clone()));
        }
        let module = module.cast::<PyModule_>()?.get();
        Ok(Self::Pure(pure_pool(
            import_free(module)?,
            limits_from(limits)?,
        )?))
    }

    pub fn acquire(&self) -> Result<Pinned, CallError> {
        Ok(match self {
            Self::Pure(pool) => Pinned::Pure(pool.acquire()?),
            Self::Wasi(pool) => Pinned::Wasi(pool.acquire()?),
        })
    }

    pub fn release(&self, instance: Pinned) {
        match (self, instance) {
            (Self::Pure(pool), Pinned::Pure(instance)) => pool.release(instance),
            (Self::Wasi(pool), Pinned::Wasi(instance)) => pool.release(instance),
            _ => {} // not this pool's: dropped
        }
    }

    pub fn module(&self) -> &wasmtime::Module {
        match self {
            Self::Pure(pool) => pool.module(),
            Self::Wasi(pool) => pool.module(),
        }
    }

    pub fn idle_count(&self) -> usize {
        match self {
            Self::Pure(pool) => pool.idle_count(),
            Self::Wasi(pool) => pool.idle_count(),
        }
    }

    pub fn instantiated_count(&self) -> usize {
        match self {
            Self::Pure(pool) => pool.instantiated_count(),
            Self::Wasi(pool) => pool.instantiated_count(),
        }
    }
}

impl crate::pool::Instances for Pool {
    type Instance = Pinned;

    fn acquire(&self) -> Result<Pinned, CallError> {
        Self::acquire(self)
    }

    fn release(&self, instance: Pinned) {
        Self::release(self, instance);
    }

    fn idle_count(&self) -> usize {
        Self::idle_count(self)
    }
}

impl Pinned {
    /// One call of `export` with its own budget (fuel and deadline armed).
    pub fn call(&mut self, export: &Export, slots: &mut [ValRaw]) -> Result<(), CallError> {
        self.begin();
        self.arm();
        let outcome = self.call_armed(export, slots);
        let out_of_memory = self.end();
        outcome.map_err(|e| basic::out_of_memory_trap(e, out_of_memory))
    }

    /// Opens a run of calls (a WASI guest's deadline and output, see
    /// [`basic::begin_wasi`]); [`end`](Self::end) closes it.
    pub fn begin(&mut self) {
        if let Self::Wasi(instance) = self {
            basic::begin_wasi(instance);
        }
    }

    /// Closes a run: whether the guest reported an allocation failure.
    pub fn end(&mut self) -> bool {
        match self {
            Self::Pure(_) => false,
            Self::Wasi(instance) => basic::end_wasi(instance),
        }
    }

    /// [`end`](Self::end), and the lines the guest wrote during the run.
    pub fn finish(&mut self) -> (VecDeque<(&'static str, String)>, bool) {
        match self {
            Self::Pure(_) => (VecDeque::new(), false),
            Self::Wasi(instance) => basic::finish_wasi(instance),
        }
    }

    /// Refills fuel and restarts the deadline: the budget of the calls
    /// made with [`call_armed`](Self::call_armed) until the next.
    pub fn arm(&mut self) {
        match self {
            Self::Pure(instance) => instance.arm(),
            Self::Wasi(instance) => instance.arm(),
        }
    }

    /// One call of `export` on what is left of the last [`arm`](Self::arm).
    pub fn call_armed(&mut self, export: &Export, slots: &mut [ValRaw]) -> Result<(), CallError> {
        match self {
            Self::Pure(instance) => export.call_raw_armed(instance, slots),
            Self::Wasi(instance) => export.call_raw_armed(instance, slots),
        }
    }

    /// The exported memory, if there is one (looked up by name: once per
    /// call, not per access).
    pub fn memory(&mut self) -> Option<Memory> {
        fn memory<T>(instance: &mut PooledInstance<T>) -> Option<Memory> {
            let handle = instance.instance();
            handle.get_memory(instance.store_mut(), "memory")
        }
        match self {
            Self::Pure(instance) => memory(instance),
            Self::Wasi(instance) => memory(instance),
        }
    }

    /// `memory`'s size now (a guest call may grow it).
    pub fn memory_size(&self, memory: Memory) -> usize {
        match self {
            Self::Pure(instance) => memory.data_size(instance.store()),
            Self::Wasi(instance) => memory.data_size(instance.store()),
        }
    }

    /// `len` bytes at `ptr` of `memory`, if they are inside it.
    pub fn read(&self, memory: Memory, ptr: usize, len: usize) -> Option<Vec<u8>> {
        let data = match self {
            Self::Pure(instance) => memory.data(instance.store()),
            Self::Wasi(instance) => memory.data(instance.store()),
        };
        data.get(ptr..ptr.checked_add(len)?).map(<[u8]>::to_vec)
    }

    /// Writes `data` at `ptr` of `memory`; false if it does not fit.
    pub fn write(&mut self, memory: Memory, ptr: usize, data: &[u8]) -> bool {
        match self {
            Self::Pure(instance) => memory.write(instance.store_mut(), ptr, data).is_ok(),
            Self::Wasi(instance) => memory.write(instance.store_mut(), ptr, data).is_ok(),
        }
    }

    /// The instance of a `BasicPool` (a module with imports), whose calls a
    /// host may serve.
    pub fn basic_mut(&mut self) -> Option<&mut PooledInstance<BasicState<PyHost>>> {
        match self {
            Self::Pure(_) => None,
            Self::Wasi(instance) => Some(instance),
        }
    }

    /// Marks the instance as not to be reused.
    pub fn poison(&mut self) {
        match self {
            Self::Pure(instance) => instance.poison(),
            Self::Wasi(instance) => instance.poison(),
        }
    }

    pub fn is_poisoned(&self) -> bool {
        match self {
            Self::Pure(instance) => instance.is_poisoned(),
            Self::Wasi(instance) => instance.is_poisoned(),
        }
    }
}
