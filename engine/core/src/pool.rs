//! Pre-linked instances of one module version, reused between calls.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use wasmtime::{Engine, Func, Instance, InstancePre, Module, ModuleExport, Store};

use crate::engine::Runtime;
use crate::error::CallError;
use crate::limiter::Limiter;
use crate::limits::Limits;

/// The export a reactor module runs once after instantiation.
const REACTOR_INITIALIZER: &str = "_initialize";

/// Identifies pools, so an instance is never released into the wrong one.
static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(0);

/// The data of every store a pool creates: the host's state and the limiter.
pub struct StoreData<T> {
    /// What host functions see (`caller.data().host`).
    pub host: T,
    limiter: Limiter,
}

impl<T> StoreData<T> {
    /// A store's data: `host` and a limiter enforcing `limits`.
    pub fn new(host: T, limits: &Limits) -> Self {
        Self {
            host,
            limiter: Limiter::new(limits),
        }
    }

    /// The store's limiter, with the growth it refused during the current call.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    pub(crate) fn limiter_mut(&mut self) -> &mut Limiter {
        &mut self.limiter
    }
}

/// An instance with its own store, taken from an [`InstancePool`] for calls on
/// one thread and handed back with [`InstancePool::release`].
///
/// Dropping it instead of releasing it is safe: the pool makes a new one.
pub struct PooledInstance<T: 'static> {
    // Boxed, so that the pool's hot slot can hold an idle instance as one
    // pointer and hand it over with an atomic swap instead of a lock.
    s: Box<Slot<T>>,
}

struct Slot<T: 'static> {
    store: Store<StoreData<T>>,
    instance: Instance,
    module: Module,
    // Functions resolved by `typed::Export`, by the export's position in the
    // module: a warm call skips `Instance::get_module_export`.
    funcs: Vec<Option<Func>>,
    pool_id: u64,
    fuel: u64,
    deadline_ticks: u64,
    timeout: Duration,
    poisoned: bool,
}

impl<T> PooledInstance<T> {
    /// The export `name`, if it is a function.
    pub fn get_func(&mut self, name: &str) -> Option<Func> {
        self.s.instance.get_func(&mut self.s.store, name)
    }

    /// The instance, to look its exports up by index
    /// ([`Instance::get_module_export`]) instead of by name.
    pub fn instance(&self) -> Instance {
        self.s.instance
    }

    /// The function export at position `slot` of `module`'s exports, found by
    /// `index` the first time and remembered for the life of the instance.
    /// `None` if this is not an instance of `module` or that export is not a
    /// function.
    pub(crate) fn func_at(
        &mut self,
        module: &Module,
        slot: usize,
        index: &ModuleExport,
    ) -> Option<Func> {
        if !Module::same(&self.s.module, module) {
            return None;
        }
        if let Some(Some(func)) = self.s.funcs.get(slot) {
            return Some(*func);
        }
        let slot_state = &mut *self.s;
        let func = slot_state
            .instance
            .get_module_export(&mut slot_state.store, index)?
            .into_func()?;
        if self.s.funcs.len() <= slot {
            self.s.funcs.resize(slot + 1, None);
        }
        self.s.funcs[slot] = Some(func);
        Some(func)
    }

    /// The store, to inspect functions and memory between calls.
    pub fn store(&self) -> &Store<StoreData<T>> {
        &self.s.store
    }

    pub fn store_mut(&mut self) -> &mut Store<StoreData<T>> {
        &mut self.s.store
    }

    /// Runs one call into the guest with a full budget.
    ///
    /// Fuel is refilled, the deadline restarted and the limiter's last refusal
    /// forgotten before `f` runs. If `f` fails, the error is classified (see
    /// [`CallError`]) and the instance is poisoned: its state after a trap or
    /// an interrupted call is unknown, so it is never reused.
    ///
    /// # Errors
    ///
    /// [`CallError::LimitExceeded`] or [`CallError::Trap`] for what `f` returned.
    pub fn run<R>(
        &mut self,
        f: impl FnOnce(&mut Store<StoreData<T>>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.arm();
        self.run_armed(f)
    }

    /// Refills fuel, restarts the deadline and forgets the limiter's last
    /// refusal: the budget of one call, which may be several guest calls
    /// ([`run_armed`](Self::run_armed)).
    pub fn arm(&mut self) {
        arm(&mut self.s.store, self.s.fuel, self.s.deadline_ticks);
    }

    /// As [`run`](Self::run), on what is left of the budget of the last
    /// [`arm`](Self::arm).
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub fn run_armed<R>(
        &mut self,
        f: impl FnOnce(&mut Store<StoreData<T>>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        f(&mut self.s.store).map_err(|err| {
            self.s.poisoned = true;
            CallError::from_wasmtime(&err, self.s.store.data_mut().limiter.take_refusal())
        })
    }

    /// The time each call may take (the pool's `Limits::timeout`).
    pub fn timeout(&self) -> Duration {
        self.s.timeout
    }

    /// The fuel each call starts with.
    pub fn fuel(&self) -> u64 {
        self.s.fuel
    }

    /// Marks the instance as not to be reused.
    pub fn poison(&mut self) {
        self.s.poisoned = true;
    }

    /// Whether [`InstancePool::release`] will drop this instance.
    pub fn is_poisoned(&self) -> bool {
        self.s.poisoned
    }
}

/// A pool's instances as its callers take and return them, whatever kind
/// of instance it holds (core modules', components', a caller's pinned
/// ones).
pub trait Instances {
    type Instance;
    /// An idle instance, or a new one.
    ///
    /// # Errors
    ///
    /// A new instance could not be made (its start or `_initialize` failed).
    fn acquire(&self) -> Result<Self::Instance, CallError>;
    /// Back to the pool, if it is sound and the pool has room.
    fn release(&self, instance: Self::Instance);
    /// Instances waiting for reuse.
    fn idle_count(&self) -> usize;

    /// Makes instances until `n` are idle (at most the pool's size), so the
    /// calls that come need to make none.
    ///
    /// # Errors
    ///
    /// An instance could not be made; those made until then stay.
    fn prewarm(&self, n: usize) -> Result<(), CallError> {
        if n <= self.idle_count() {
            return Ok(());
        }
        let mut held = Vec::with_capacity(n);
        let mut outcome = Ok(());
        while held.len() < n {
            match self.acquire() {
                Ok(instance) => held.push(instance),
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        for instance in held {
            self.release(instance);
        }
        outcome
    }
}

impl<T: Send + 'static> Instances for InstancePool<T> {
    type Instance = PooledInstance<T>;

    fn acquire(&self) -> Result<PooledInstance<T>, CallError> {
        Self::acquire(self)
    }

    fn release(&self, instance: PooledInstance<T>) {
        Self::release(self, instance);
    }

    fn idle_count(&self) -> usize {
        Self::idle_count(self)
    }
}

/// Instances of one module version, instantiated from an [`InstancePre`] and
/// kept idle between calls, at most [`Limits::pool_size`] of them.
///
/// The pool is shared between threads; each instance is used by one thread
/// at a time, between [`acquire`](Self::acquire) and [`release`](Self::release).
pub struct InstancePool<T: 'static> {
    // Keeps the epoch ticker running for as long as this pool's deadlines.
    _runtime: Runtime,
    pre: InstancePre<StoreData<T>>,
    new_host: Box<dyn Fn() -> Result<T, CallError> + Send + Sync>,
    limits: Limits,
    deadline_ticks: u64,
    id: u64,
    // The instance released last, taken first: a call that finds it needs
    // no lock (an SQL scan calls one procedure row after row). Owns the
    // `Slot` it points to, or is null.
    hot: AtomicPtr<Slot<T>>,
    // The other idle instances, at most `pool_size - 1`.
    idle: Mutex<Vec<PooledInstance<T>>>,
    instantiated: AtomicUsize,
}

impl<T: Send + 'static> InstancePool<T> {
    /// A pool of `pre`'s module under `limits`; `new_host` makes the host
    /// state of each new store (its error is that instantiation's).
    ///
    /// A pooling runtime's slots cap every memory and table of its instances;
    /// a procedure allowed more than they hold would be cut short without a
    /// `LimitExceeded`, so such a pool is not created.
    ///
    /// # Errors
    ///
    /// [`CallError::LimitExceeded`] for the first limit (`memory`,
    /// `max_memories`, `max_tables`, `max_table_elements`) that exceeds
    /// [`PoolingConfig`](crate::engine::PoolingConfig), with both sizes in the
    /// message.
    ///
    /// # Panics
    ///
    /// If `pre` was not linked with `runtime`'s engine.
    pub fn new(
        runtime: &Runtime,
        pre: InstancePre<StoreData<T>>,
        limits: Limits,
        new_host: impl Fn() -> Result<T, CallError> + Send + Sync + 'static,
    ) -> Result<Self, CallError> {
        assert!(
            Engine::same(pre.module().engine(), runtime.engine()),
            "the InstancePre belongs to another engine"
        );
        if let Some((limit, message)) = runtime.pooling().and_then(|p| p.refusal(&limits)) {
            return Err(CallError::LimitExceeded { limit, message });
        }
        Ok(Self {
            _runtime: runtime.clone(),
            pre,
            new_host: Box::new(new_host),
            deadline_ticks: runtime.deadline_ticks(limits.timeout),
            limits,
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            hot: AtomicPtr::new(ptr::null_mut()),
            idle: Mutex::new(Vec::new()),
            instantiated: AtomicUsize::new(0),
        })
    }

    /// An idle instance, or a new one in a fresh store.
    ///
    /// # Errors
    ///
    /// A new instance runs its start function under the pool's limits, so
    /// instantiation fails with the same errors as a call: a limit exceeded
    /// (memory, table elements, counts, fuel, timeout) or a trap.
    pub fn acquire(&self) -> Result<PooledInstance<T>, CallError> {
        let hot = self.hot.swap(ptr::null_mut(), Ordering::Acquire);
        if !hot.is_null() {
            // SAFETY: a non-null `hot` owns a `Slot` that `release` leaked
            // there; the swap made this call its only owner.
            return Ok(PooledInstance {
                s: unsafe { Box::from_raw(hot) },
            });
        }
        if let Some(instance) = self.lock_idle().pop() {
            return Ok(instance);
        }
        self.instantiate()
    }

    /// Hands `instance` back: kept for reuse unless it is poisoned, belongs to
    /// another pool or [`Limits::pool_size`] instances are idle already.
    pub fn release(&self, instance: PooledInstance<T>) {
        if instance.s.poisoned || instance.s.pool_id != self.id {
            return;
        }
        let raw = Box::into_raw(instance.s);
        let instance = match self.hot.compare_exchange(
            ptr::null_mut(),
            raw,
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            // SAFETY: the exchange failed, so `raw` was not published: it
            // is still this call's own box.
            Err(_) => PooledInstance {
                s: unsafe { Box::from_raw(raw) },
            },
        };
        let surplus = {
            let mut idle = self.lock_idle();
            if idle.len() + 1 < self.limits.pool_size {
                idle.push(instance);
                None
            } else {
                Some(instance)
            }
        };
        // Dropping a store frees its memory: not while holding the lock.
        drop(surplus);
    }

    /// Instances waiting for reuse.
    pub fn idle_count(&self) -> usize {
        let hot = usize::from(!self.hot.load(Ordering::Acquire).is_null());
        self.lock_idle().len() + hot
    }

    /// Instances created since the pool was built.
    pub fn instantiated_count(&self) -> usize {
        self.instantiated.load(Ordering::Relaxed)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The module this pool instantiates, to prepare exports
    /// ([`Export`](crate::typed::Export)) its instances can call.
    pub fn module(&self) -> &Module {
        self.pre.module()
    }

    fn instantiate(&self) -> Result<PooledInstance<T>, CallError> {
        let data = StoreData {
            host: (self.new_host)()?,
            limiter: Limiter::new(&self.limits),
        };
        let mut store = Store::new(self.pre.module().engine(), data);
        store.limiter(|data| &mut data.limiter);
        arm(&mut store, self.limits.fuel, self.deadline_ticks);
        let fail = |store: &mut Store<StoreData<T>>, err: wasmtime::Error| {
            CallError::from_wasmtime(&err, store.data_mut().limiter.take_refusal())
        };
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|err| fail(&mut store, err))?;
        // A WASI reactor (Go's c-shared build, wit-bindgen's older output)
        // runs its initializer once, before any export, under the same
        // budget as the start function.
        if let Ok(initialize) = instance.get_typed_func::<(), ()>(&mut store, REACTOR_INITIALIZER) {
            initialize
                .call(&mut store, ())
                .map_err(|err| fail(&mut store, err))?;
        }
        self.instantiated.fetch_add(1, Ordering::Relaxed);
        Ok(PooledInstance {
            s: Box::new(Slot {
                store,
                instance,
                module: self.pre.module().clone(),
                funcs: Vec::new(),
                pool_id: self.id,
                fuel: self.limits.fuel,
                deadline_ticks: self.deadline_ticks,
                timeout: self.limits.timeout,
                poisoned: false,
            }),
        })
    }

    fn lock_idle(&self) -> MutexGuard<'_, Vec<PooledInstance<T>>> {
        // A panic while holding the lock cannot leave the list half-changed.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: 'static> Drop for InstancePool<T> {
    fn drop(&mut self) {
        let hot = *self.hot.get_mut();
        if !hot.is_null() {
            // SAFETY: a non-null `hot` owns the `Slot` it points to, and
            // `&mut self` means no call can take it concurrently.
            drop(unsafe { Box::from_raw(hot) });
        }
    }
}

pub(crate) fn arm<T>(store: &mut Store<StoreData<T>>, fuel: u64, deadline_ticks: u64) {
    store
        .set_fuel(fuel)
        .expect("the runtime's engine consumes fuel");
    store.set_epoch_deadline(deadline_ticks);
    store.data_mut().limiter.take_refusal();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Allocation, PoolingConfig, RuntimeConfig};
    use crate::testutil::{pool, runtime};
    use std::time::{Duration, Instant};

    /// A runtime with a pooling allocator of a few slots sized for the
    /// default limits: small enough for tests running side by side.
    fn pooling_runtime() -> Runtime {
        let config = RuntimeConfig {
            allocation: Allocation::Pooling(PoolingConfig::for_limits(&Limits::default(), 16)),
            ..RuntimeConfig::default()
        };
        Runtime::new(&config).unwrap()
    }

    /// Both runtimes, for tests that must hold for each allocation strategy.
    fn runtimes() -> [Runtime; 2] {
        [runtime(), pooling_runtime()]
    }

    const COUNTER: &str = r#"(module
        (global $n (mut i32) (i32.const 0))
        (func (export "next") (result i32)
            (global.set $n (i32.add (global.get $n) (i32.const 1)))
            (global.get $n))
        (func (export "boom") unreachable))"#;

    fn next(instance: &mut PooledInstance<()>) -> i32 {
        let next = instance.get_func("next").unwrap();
        let next = next.typed::<(), i32>(instance.store_mut()).unwrap();
        instance.run(|store| next.call(store, ())).unwrap()
    }

    #[test]
    fn released_instance_is_reused() {
        let runtime = runtime();
        let pool = pool(&runtime, COUNTER, Limits::default());
        let mut instance = pool.acquire().unwrap();
        assert_eq!(next(&mut instance), 1);
        pool.release(instance);
        let mut instance = pool.acquire().unwrap();
        assert_eq!(next(&mut instance), 2);
        assert_eq!(pool.instantiated_count(), 1);
    }

    #[test]
    fn poisoned_instance_is_not_reused() {
        let runtime = runtime();
        let pool = pool(&runtime, COUNTER, Limits::default());
        let mut instance = pool.acquire().unwrap();
        assert_eq!(next(&mut instance), 1);
        let boom = instance.get_func("boom").unwrap();
        let err = instance
            .run(|store| boom.call(store, &[], &mut []))
            .unwrap_err();
        assert_eq!(err.code(), "trap");
        assert!(instance.is_poisoned());
        pool.release(instance);
        assert_eq!(pool.idle_count(), 0);
        let mut instance = pool.acquire().unwrap();
        assert_eq!(next(&mut instance), 1, "a fresh instance");
        assert_eq!(pool.instantiated_count(), 2);
    }

    #[test]
    fn threads_share_a_pool_without_sharing_an_instance() {
        // The hot slot and the idle list together: no instance is ever in
        // two threads' hands at once, every call works, and the pool never
        // holds more than pool_size idle.
        let runtime = runtime();
        let limits = Limits {
            pool_size: 3,
            ..Limits::default()
        };
        let pool = pool(&runtime, COUNTER, limits);
        let in_use = std::sync::Mutex::new(std::collections::HashSet::new());
        std::thread::scope(|scope| {
            for _ in 0..6 {
                scope.spawn(|| {
                    for _ in 0..2000 {
                        let mut instance = pool.acquire().unwrap();
                        let id = std::ptr::from_ref(&*instance.s) as usize;
                        assert!(in_use.lock().unwrap().insert(id), "handed out twice");
                        assert!(next(&mut instance) >= 1);
                        in_use.lock().unwrap().remove(&id);
                        pool.release(instance);
                    }
                });
            }
        });
        assert!(pool.idle_count() <= 3);
        assert!(in_use.into_inner().unwrap().is_empty());
    }

    #[test]
    fn pool_keeps_at_most_pool_size_idle() {
        let runtime = runtime();
        let limits = Limits {
            pool_size: 2,
            ..Limits::default()
        };
        let pool = pool(&runtime, COUNTER, limits);
        let taken: Vec<_> = (0..5).map(|_| pool.acquire().unwrap()).collect();
        assert_eq!(pool.instantiated_count(), 5);
        for instance in taken {
            pool.release(instance);
            assert!(pool.idle_count() <= 2);
        }
        assert_eq!(pool.idle_count(), 2);
    }

    #[test]
    fn instance_of_another_pool_is_not_kept() {
        let runtime = runtime();
        let first = pool(&runtime, COUNTER, Limits::default());
        let second = pool(&runtime, COUNTER, Limits::default());
        second.release(first.acquire().unwrap());
        assert_eq!(second.idle_count(), 0);
    }

    #[test]
    fn instantiation_past_a_count_limit_is_that_limit() {
        for runtime in runtimes() {
            let limits = Limits {
                max_memories: 1,
                ..Limits::default()
            };
            let memories = pool(&runtime, "(module (memory 1) (memory 1))", limits);
            let err = memories.acquire().err().unwrap();
            let CallError::LimitExceeded { limit, message } = &err else {
                panic!("{err:?}");
            };
            assert_eq!(*limit, crate::Limit::Memories);
            assert!(message.contains("memory count too high"), "{message}");

            let limits = Limits {
                max_tables: 1,
                ..Limits::default()
            };
            let tables = pool(
                &runtime,
                "(module (table 1 funcref) (table 1 funcref))",
                limits,
            );
            let err = tables.acquire().err().unwrap();
            assert!(
                matches!(
                    err,
                    CallError::LimitExceeded {
                        limit: crate::Limit::Tables,
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn instantiation_past_the_memory_limit_is_the_memory_limit() {
        for runtime in runtimes() {
            let limits = Limits {
                memory_bytes: 64 * 1024,
                ..Limits::default()
            };
            let pool = pool(&runtime, "(module (memory 2))", limits);
            let err = pool.acquire().err().unwrap();
            assert!(
                matches!(
                    err,
                    CallError::LimitExceeded {
                        limit: crate::Limit::Memory,
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }

    const GROW: &str = r#"(module
        (memory 1)
        (table 1 funcref)
        (func $checked (param i32) (result i32)
            (if (i32.eq (local.get 0) (i32.const -1)) (then unreachable))
            (local.get 0))
        (func (export "grow") (param i32) (result i32)
            (call $checked (memory.grow (local.get 0))))
        (func (export "grow_table") (param i32) (result i32)
            (call $checked (table.grow (ref.null func) (local.get 0)))))"#;

    /// Calls `name(arg)` and returns its result or the limit that stopped it.
    fn grow(instance: &mut PooledInstance<()>, name: &str, arg: i32) -> Result<i32, crate::Limit> {
        let func = instance.get_func(name).unwrap();
        let func = func.typed::<i32, i32>(instance.store_mut()).unwrap();
        match instance.run(|store| func.call(store, arg)) {
            Ok(result) => Ok(result),
            Err(CallError::LimitExceeded { limit, .. }) => Err(limit),
            Err(err) => panic!("{err:?}"),
        }
    }

    #[test]
    fn growth_stops_exactly_at_the_limits() {
        for runtime in runtimes() {
            let limits = Limits {
                memory_bytes: 4 * 64 * 1024,
                max_table_elements: 10,
                ..Limits::default()
            };
            let pool = pool(&runtime, GROW, limits);
            let mut instance = pool.acquire().unwrap();
            assert_eq!(grow(&mut instance, "grow", 3), Ok(1), "up to the limit");
            assert_eq!(grow(&mut instance, "grow", 1), Err(crate::Limit::Memory));

            let mut instance = pool.acquire().unwrap();
            assert_eq!(grow(&mut instance, "grow_table", 9), Ok(1));
            assert_eq!(
                grow(&mut instance, "grow_table", 1),
                Err(crate::Limit::TableElements)
            );
        }
    }

    #[test]
    fn limits_larger_than_the_pooled_slots_are_refused() {
        let runtime = pooling_runtime();
        let module = wasmtime::Module::new(runtime.engine(), GROW).unwrap();
        let linker = wasmtime::Linker::<StoreData<()>>::new(runtime.engine());
        let slots = Limits::default();
        for (limits, expected) in [
            (
                Limits {
                    memory_bytes: slots.memory_bytes + 64 * 1024,
                    ..Limits::default()
                },
                crate::Limit::Memory,
            ),
            (
                Limits {
                    max_memories: slots.max_memories + 1,
                    ..Limits::default()
                },
                crate::Limit::Memories,
            ),
            (
                Limits {
                    max_tables: slots.max_tables + 1,
                    ..Limits::default()
                },
                crate::Limit::Tables,
            ),
            (
                Limits {
                    max_table_elements: slots.max_table_elements + 1,
                    ..Limits::default()
                },
                crate::Limit::TableElements,
            ),
        ] {
            let pre = linker.instantiate_pre(&module).unwrap();
            let err = InstancePool::new(&runtime, pre, limits, || Ok(()))
                .err()
                .unwrap();
            let CallError::LimitExceeded { limit, message } = &err else {
                panic!("{err:?}");
            };
            assert_eq!(*limit, expected);
            assert!(message.starts_with(expected.as_str()), "{message}");
        }
        let pre = linker.instantiate_pre(&module).unwrap();
        assert!(InstancePool::new(&runtime, pre, slots, || Ok(())).is_ok());
    }

    #[test]
    fn a_pooling_runtime_reuses_its_slots() {
        let runtime = pooling_runtime();
        let pool = pool(&runtime, COUNTER, Limits::default());
        for _ in 0..40 {
            let mut instance = pool.acquire().unwrap();
            assert_eq!(next(&mut instance), 1, "a fresh instance each time");
        }
        assert_eq!(pool.instantiated_count(), 40, "more than the 16 slots");
    }

    /// Cost of a new instance (acquire on an empty pool, then drop), on demand
    /// and pooled: `cargo test --release -- --ignored --nocapture new_instance`.
    #[test]
    #[ignore = "benchmark"]
    fn new_instance_us() {
        const ROUNDS: u32 = 2_000;
        // A small guest's shape: 17 pages (Rust's 1 MiB stack and data), a
        // data segment and a table of functions.
        const GUEST: &str = r#"(module
            (memory 17)
            (data (i32.const 1048576) "hello, procedures")
            (table 4 funcref)
            (elem (i32.const 0) $a $a $a $a)
            (func $a (export "a") (result i32) (i32.load (i32.const 1048576))))"#;
        let config = RuntimeConfig {
            allocation: Allocation::Pooling(PoolingConfig::for_limits(&Limits::default(), 1000)),
            ..RuntimeConfig::default()
        };
        for (name, runtime) in [
            ("on demand", runtime()),
            ("pooling", Runtime::new(&config).unwrap()),
        ] {
            let pool = pool(&runtime, GUEST, Limits::default());
            drop(pool.acquire().unwrap());
            let (mut acquire, mut dropped) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..ROUNDS {
                let started = Instant::now();
                let instance = std::hint::black_box(pool.acquire().unwrap());
                let acquired = Instant::now();
                drop(instance);
                dropped += acquired.elapsed();
                acquire += acquired - started;
            }
            println!(
                "new instance, {name}: {:.2} us acquire, {:.2} us drop",
                acquire.as_secs_f64() * 1e6 / f64::from(ROUNDS),
                dropped.as_secs_f64() * 1e6 / f64::from(ROUNDS),
            );
        }
    }
}
