//! Helpers shared by the unit tests.

use wasmtime::{Engine, Instance, Linker, Module, Store};

use crate::engine::{Runtime, RuntimeConfig};
use crate::limiter::Limiter;
use crate::limits::Limits;
use crate::pool::{InstancePool, StoreData};

/// A plain engine: no fuel, no epochs.
pub fn engine() -> Engine {
    Engine::default()
}

/// Instantiates `wat` in a store whose data is a [`Limiter`] for `limits`.
pub fn instantiate_with_limiter(
    engine: &Engine,
    wat: &str,
    limits: &Limits,
) -> (Store<Limiter>, Instance) {
    let module = Module::new(engine, wat).unwrap();
    let mut store = Store::new(engine, Limiter::new(limits));
    store.limiter(|limiter| limiter);
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    (store, instance)
}

pub fn runtime() -> Runtime {
    Runtime::new(&RuntimeConfig::default()).unwrap()
}

/// A pool of `wat` with no host imports.
pub fn pool(runtime: &Runtime, wat: &str, limits: Limits) -> InstancePool<()> {
    let module = Module::new(runtime.engine(), wat).unwrap();
    let linker = Linker::<StoreData<()>>::new(runtime.engine());
    let pre = linker.instantiate_pre(&module).unwrap();
    InstancePool::new(runtime, pre, limits, || ()).expect("limits fit the runtime")
}
