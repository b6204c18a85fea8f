//! The process's wasmtime engine and the epoch ticker behind wall-clock deadlines.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, WasmBacktraceDetails,
};

use crate::limits::Limits;

/// Settings of the [`Runtime`], fixed for the life of the process.
///
/// Unlike [`Limits`](crate::Limits), these are engine-wide: compiled code
/// depends on them, so they cannot differ per procedure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Wasm stack a call may use before it fails with the `stack` limit.
    pub max_wasm_stack: usize,
    /// Period of the epoch ticker: the resolution of every deadline.
    ///
    /// 1 ms keeps a deadline within about a millisecond of the timeout. The
    /// tick only costs the ticker thread a wake-up (about 1 000 a second,
    /// a fraction of a percent of one core): guests read the epoch at
    /// function entries and loop headers whatever the period, so a shorter
    /// tick does not slow them down. Python's ticker uses 5 ms because each
    /// of its ticks takes the GIL.
    pub epoch_tick: Duration,
    /// How instances get their memories and tables; on demand by default.
    pub allocation: Allocation,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_wasm_stack: 512 * 1024,
            epoch_tick: Duration::from_millis(1),
            allocation: Allocation::OnDemand,
        }
    }
}

/// Where the memories and tables of new instances come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// `mmap` per instance when it is created, `munmap` when its store drops.
    /// Nothing is reserved up front, so this is the default; a new instance
    /// costs a few system calls more than a pooled one.
    OnDemand,
    /// wasmtime's pooling allocator: slots for every instance, memory and
    /// table reserved when the runtime starts and reused afterwards.
    Pooling(PoolingConfig),
}

/// The slots of the pooling allocator: how many, and how large.
///
/// The sizes are engine-wide ceilings; every procedure's [`Limits`] must fit
/// under them, and a pool whose limits do not is refused when it is created
/// ([`InstancePool::new`](crate::InstancePool::new)), never silently
/// capped. Build it with [`PoolingConfig::for_limits`] from the largest limits
/// any procedure may have.
///
/// Each memory slot reserves wasmtime's default 4 GiB of address space plus
/// guard pages (so compiled code needs no bounds checks) but only commits what
/// the guest uses: `total_memories` of 1 000 reserve about 4 TiB of the
/// 128 TiB a Linux x86-64 process may address, and no RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolingConfig {
    /// Core instances alive at the same time, across all pools (a component
    /// counts each of its core instances). Creating one more fails until an
    /// instance is dropped.
    pub total_instances: u32,
    /// Linear memories alive at the same time, across all instances.
    pub total_memories: u32,
    /// Tables alive at the same time, across all instances.
    pub total_tables: u32,
    /// Largest linear memory, in bytes: at least every procedure's
    /// [`Limits::memory_bytes`].
    pub max_memory_bytes: usize,
    /// Memories one module may define: at least every [`Limits::max_memories`].
    pub max_memories_per_instance: u32,
    /// Tables one module may define: at least every [`Limits::max_tables`].
    pub max_tables_per_instance: u32,
    /// Elements one table may hold: at least every [`Limits::max_table_elements`].
    pub max_table_elements: usize,
    /// Bytes of each memory and table slot reset with `memset` and kept
    /// resident when an instance is dropped, instead of being handed back to
    /// the kernel with `madvise`: the next instance in that slot takes no page
    /// faults for them. Costs that much RAM per idle slot.
    pub keep_resident_bytes: usize,
}

impl PoolingConfig {
    /// Slots for `total_instances` instances of one memory and one table each,
    /// each slot as large as `limits` allow.
    pub fn for_limits(limits: &Limits, total_instances: u32) -> Self {
        Self {
            total_instances,
            total_memories: total_instances,
            total_tables: total_instances,
            max_memory_bytes: limits.memory_bytes,
            max_memories_per_instance: u32::try_from(limits.max_memories).unwrap_or(u32::MAX),
            max_tables_per_instance: u32::try_from(limits.max_tables).unwrap_or(u32::MAX),
            max_table_elements: limits.max_table_elements,
            // One wasm page. Measured (new_instance_us): 1 MiB made dropping
            // a pooled instance 7.9 us (a memset of the whole MiB) against
            // 1.3-1.4 us for 0 or 64 KiB, for no faster acquire.
            keep_resident_bytes: 64 * 1024,
        }
    }

    /// The first of `limits` that does not fit in these slots, with a message
    /// naming both values.
    pub(crate) fn refusal(&self, limits: &Limits) -> Option<(crate::Limit, String)> {
        use crate::Limit;
        let too_large = |name: &str, wanted: usize, slot: usize| {
            format!(
                "{name} of {wanted} exceeds the runtime's pooled slots of {slot}; \
                 raise it in PoolingConfig"
            )
        };
        let checks = [
            (Limit::Memory, limits.memory_bytes, self.max_memory_bytes),
            (
                Limit::Memories,
                limits.max_memories,
                self.max_memories_per_instance as usize,
            ),
            (
                Limit::Tables,
                limits.max_tables,
                self.max_tables_per_instance as usize,
            ),
            (
                Limit::TableElements,
                limits.max_table_elements,
                self.max_table_elements,
            ),
        ];
        checks
            .into_iter()
            .find(|(_, wanted, slot)| wanted > slot)
            .map(|(limit, wanted, slot)| (limit, too_large(limit.as_str(), wanted, slot)))
    }

    fn strategy(&self) -> InstanceAllocationStrategy {
        let mut pooling = PoolingAllocationConfig::new();
        pooling
            .total_core_instances(self.total_instances)
            .total_memories(self.total_memories)
            .total_tables(self.total_tables)
            .max_memory_size(self.max_memory_bytes)
            .max_memories_per_module(self.max_memories_per_instance)
            .max_tables_per_module(self.max_tables_per_instance)
            .table_elements(self.max_table_elements)
            .linear_memory_keep_resident(self.keep_resident_bytes)
            .table_keep_resident(self.keep_resident_bytes);
        // Memory protection keys (which would pack memories without guard
        // regions) stay off: wasmtime's default, and the crate does not build
        // the "memory-protection-keys" feature.
        InstanceAllocationStrategy::Pooling(pooling)
    }
}

/// One wasmtime [`Engine`] configured for procedures, and its epoch ticker.
///
/// Every module, store and pool of the process uses the same engine. The
/// runtime is a shared handle, like the engine: each [`InstancePool`] keeps
/// one, so no pool can outlive the ticker its deadlines count on. Dropping
/// the last handle stops the ticker and waits for its thread to end.
///
/// [`InstancePool`]: crate::InstancePool
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    epoch_tick: Duration,
    pooling: Option<PoolingConfig>,
    ticker: Option<Ticker>,
}

impl Runtime {
    /// Builds the engine (fuel and epoch interruption on) and starts the ticker.
    ///
    /// # Errors
    ///
    /// If `epoch_tick` is zero, wasmtime refuses the configuration (or cannot
    /// reserve the pooling allocator's slots) or the ticker thread cannot be
    /// spawned.
    pub fn new(config: &RuntimeConfig) -> wasmtime::Result<Self> {
        if config.epoch_tick.is_zero() {
            wasmtime::bail!("epoch_tick must be longer than zero");
        }
        let mut wasm = Config::new();
        wasm.consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_wasm_stack)
            // Traps carry a WasmBacktrace (wasmtime's default: innermost 20
            // frames, enough for a report and bounded for deep recursion).
            // Enable adds file and line from DWARF when a guest ships it, at
            // the cost of keeping that DWARF in memory; the name section
            // gives function names either way.
            .wasm_backtrace_details(WasmBacktraceDetails::Enable);
        let pooling = match &config.allocation {
            Allocation::OnDemand => None,
            Allocation::Pooling(pooling) => {
                wasm.allocation_strategy(pooling.strategy());
                Some(pooling.clone())
            }
        };
        let engine = Engine::new(&wasm)?;
        let ticker = Ticker::start(engine.clone(), config.epoch_tick)?;
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                epoch_tick: config.epoch_tick,
                pooling,
                ticker: Some(ticker),
            }),
        })
    }

    /// The engine that modules, linkers and stores of this runtime must use.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The pooling allocator's slots, if the runtime uses one.
    pub fn pooling(&self) -> Option<&PoolingConfig> {
        self.inner.pooling.as_ref()
    }

    /// Epoch deadline, in ticks from now, for a wall-clock budget.
    ///
    /// The current tick is already partly over when a call starts, so one
    /// tick is added: a call never ends before its timeout, and at most one
    /// tick (plus the ticker's scheduling delay) after it.
    pub fn deadline_ticks(&self, timeout: Duration) -> u64 {
        let tick = self.inner.epoch_tick.as_nanos();
        let ticks = timeout.as_nanos().div_ceil(tick) + 1;
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.stop();
        }
    }
}

/// The thread that advances the engine's epoch once per tick.
struct Ticker {
    // Dropping the sender wakes the thread at once: no tick to wait out.
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("heliosdb-wasm-epoch".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })?;
        Ok(Self { stop, thread })
    }

    fn stop(self) {
        drop(self.stop);
        // The thread only loops on the channel and cannot panic; if it ever
        // did, the runtime is being dropped and there is nothing to report to.
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use wasmtime::{Instance, Module, Store};

    #[test]
    fn deadline_covers_the_whole_timeout() {
        let runtime = Runtime::new(&RuntimeConfig::default()).unwrap();
        assert_eq!(runtime.deadline_ticks(Duration::from_millis(50)), 51);
        assert_eq!(runtime.deadline_ticks(Duration::from_micros(1500)), 3);
        assert_eq!(runtime.deadline_ticks(Duration::ZERO), 1);
    }

    #[test]
    fn zero_tick_is_refused() {
        let config = RuntimeConfig {
            epoch_tick: Duration::ZERO,
            ..RuntimeConfig::default()
        };
        assert!(Runtime::new(&config).is_err());
    }

    /// Runs a loop with `deadline_ticks` and enough fuel for ~50 ms.
    fn spin(engine: &Engine, deadline_ticks: u64) -> wasmtime::Trap {
        let wat = r#"(module (func (export "spin") (loop $l (br $l))))"#;
        let module = Module::new(engine, wat).unwrap();
        let mut store = Store::new(engine, ());
        store.set_fuel(50_000_000).unwrap();
        store.set_epoch_deadline(deadline_ticks);
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let spin = instance.get_typed_func::<(), ()>(&mut store, "spin");
        let err = spin.unwrap().call(&mut store, ()).unwrap_err();
        *err.downcast_ref::<wasmtime::Trap>().unwrap()
    }

    #[test]
    fn ticker_runs_until_the_last_handle_is_dropped() {
        let runtime = Runtime::new(&RuntimeConfig::default()).unwrap();
        let engine = runtime.engine().clone();
        let started = Instant::now();
        assert_eq!(spin(&engine, 3), wasmtime::Trap::Interrupt);
        assert!(started.elapsed() >= Duration::from_millis(2));

        let clone = runtime.clone();
        drop(runtime);
        assert_eq!(spin(&engine, 3), wasmtime::Trap::Interrupt, "still ticking");

        let started = Instant::now();
        drop(clone);
        let joined = started.elapsed();
        assert!(joined < Duration::from_millis(100), "joined in {joined:?}");
        assert_eq!(spin(&engine, 1), wasmtime::Trap::OutOfFuel, "no more ticks");
    }
}
