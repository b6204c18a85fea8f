//! A prepared call of one numeric export: resolved and type-checked once,
//! then called without a name lookup, a type check against the module or an
//! allocation.

use std::fmt;

use wasmtime::{ExternType, Module, ModuleExport, Val, ValRaw, ValType};

use crate::error::CallError;
use crate::pool::{InstancePool, PooledInstance};

/// Parameters and results up to this many are passed in a buffer on the
/// stack; a longer signature still works but allocates one per call.
const INLINE_VALUES: usize = 16;

/// A numeric wasm value type, the only ones a prepared [`Export`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumType {
    I32,
    I64,
    F32,
    F64,
}

impl NumType {
    /// `ty` as a numeric type, if it is one.
    pub fn of(ty: &ValType) -> Option<Self> {
        match ty {
            ValType::I32 => Some(Self::I32),
            ValType::I64 => Some(Self::I64),
            ValType::F32 => Some(Self::F32),
            ValType::F64 => Some(Self::F64),
            _ => None,
        }
    }

    /// The type of `val`, if it is numeric.
    pub fn of_val(val: &Val) -> Option<Self> {
        match val {
            Val::I32(_) => Some(Self::I32),
            Val::I64(_) => Some(Self::I64),
            Val::F32(_) => Some(Self::F32),
            Val::F64(_) => Some(Self::F64),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::I32 => "i32",
            Self::I64 => "i64",
            Self::F32 => "f32",
            Self::F64 => "f64",
        }
    }
}

impl fmt::Display for NumType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One numeric export of a module, checked against the signature its caller
/// expects, ready to be called on any instance of that module.
///
/// Build it once per export (per module version) and share it between
/// threads; the first call on an instance looks the function up by index and
/// the instance remembers it, so later calls find it in a `Vec`; values are
/// passed in a stack buffer.
#[derive(Clone)]
pub struct Export {
    name: Box<str>,
    module: Module,
    // The export's position in `module.exports()`: where a `PooledInstance`
    // caches the resolved function.
    slot: usize,
    index: ModuleExport,
    params: Box<[NumType]>,
    results: Box<[NumType]>,
}

impl Export {
    /// The export `name` of `module`, which must be a function taking
    /// `params` and returning `results`.
    ///
    /// # Errors
    ///
    /// [`CallError::Abi`] if there is no such export, it is not a function,
    /// uses a non-numeric type or its signature is not the expected one.
    pub fn new(
        module: &Module,
        name: &str,
        params: &[NumType],
        results: &[NumType],
    ) -> Result<Self, CallError> {
        let Some(ExternType::Func(ty)) = module.get_export(name) else {
            return Err(CallError::abi(format!("no exported function `{name}`")));
        };
        let actual = |types: &mut dyn ExactSizeIterator<Item = ValType>| {
            types
                .map(|ty| {
                    NumType::of(&ty).ok_or_else(|| {
                        CallError::abi(format!(
                            "`{name}` uses {ty}: only i32, i64, f32 and f64 are numeric"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let actual_params = actual(&mut ty.params())?;
        let actual_results = actual(&mut ty.results())?;
        if actual_params != params || actual_results != results {
            return Err(CallError::abi(format!(
                "`{name}` is {}, expected {}",
                signature(&actual_params, &actual_results),
                signature(params, results)
            )));
        }
        let index = module
            .get_export_index(name)
            .expect("the module has the export it just typed");
        let slot = module
            .exports()
            .position(|export| export.name() == name)
            .expect("the module has the export it just typed");
        Ok(Self {
            name: name.into(),
            module: module.clone(),
            slot,
            index,
            params: params.into(),
            results: results.into(),
        })
    }

    /// The export's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn params(&self) -> &[NumType] {
        &self.params
    }

    pub fn results(&self) -> &[NumType] {
        &self.results
    }

    /// Calls the export on an instance of `pool`, writing its results into
    /// `results`, and hands the instance back as [`call`](crate::call) does:
    /// poisoned after a trap or an exceeded limit, reused otherwise.
    ///
    /// # Errors
    ///
    /// What [`InstancePool::acquire`] and [`call_on`](Self::call_on) return.
    pub fn call<T: Send + 'static>(
        &self,
        pool: &InstancePool<T>,
        args: &[Val],
        results: &mut [Val],
    ) -> Result<(), CallError> {
        let mut instance = pool.acquire()?;
        let outcome = self.call_on(&mut instance, args, results);
        pool.release(instance);
        outcome
    }

    /// Calls the export on `instance` through [`PooledInstance::run`], so with
    /// a full budget and poisoning it if the guest fails.
    ///
    /// # Errors
    ///
    /// [`CallError::Abi`], before the guest runs and without poisoning, if
    /// `args` or `results` do not fit the signature or `instance` is not of
    /// this export's module; otherwise what [`PooledInstance::run`] returns.
    pub fn call_on<T>(
        &self,
        instance: &mut PooledInstance<T>,
        args: &[Val],
        results: &mut [Val],
    ) -> Result<(), CallError> {
        self.check(args, results)?;
        let len = self.slots();
        let mut inline = [ValRaw::i32(0); INLINE_VALUES];
        let mut spilled = Vec::new();
        let raw: &mut [ValRaw] = if len <= INLINE_VALUES {
            &mut inline[..len]
        } else {
            spilled.resize(len, ValRaw::i32(0));
            &mut spilled
        };
        for (slot, arg) in raw.iter_mut().zip(args) {
            *slot = to_raw(arg);
        }
        self.call_raw(instance, raw)?;
        for ((out, ty), raw) in results.iter_mut().zip(&self.results).zip(&*raw) {
            *out = from_raw(*ty, raw);
        }
        Ok(())
    }

    /// Slots a raw buffer for [`call_raw`](Self::call_raw) needs: one per
    /// parameter, and at least one per result.
    pub fn slots(&self) -> usize {
        self.params.len().max(self.results.len())
    }

    /// Calls the export with its arguments already in `raw`, one slot per
    /// parameter in order, and leaves its results there: the binding fills
    /// the slots straight from SQLite or Python values, with no [`Val`] in
    /// between. Budget and poisoning as in [`call_on`](Self::call_on).
    ///
    /// Every type is numeric, so any bits in a slot are a valid value of
    /// its type: a slot filled as `i64` for an `i32` parameter is read as
    /// its low half, never as something unsafe.
    ///
    /// # Errors
    ///
    /// [`CallError::Abi`], before the guest runs and without poisoning, if
    /// `raw` is shorter than [`slots`](Self::slots) or `instance` is not of
    /// this export's module; otherwise what [`PooledInstance::run`] returns.
    pub fn call_raw<T>(
        &self,
        instance: &mut PooledInstance<T>,
        raw: &mut [ValRaw],
    ) -> Result<(), CallError> {
        self.checked_call(instance, raw, true)
    }

    fn checked_call<T>(
        &self,
        instance: &mut PooledInstance<T>,
        raw: &mut [ValRaw],
        arm: bool,
    ) -> Result<(), CallError> {
        if raw.len() < self.slots() {
            return Err(CallError::abi(format!(
                "`{}` needs {} value slots, got {}",
                self.name,
                self.slots(),
                raw.len()
            )));
        }
        let func = instance
            .func_at(&self.module, self.slot, &self.index)
            .ok_or_else(|| {
                CallError::abi(format!(
                    "the instance is not of the module `{}` was prepared for",
                    self.name
                ))
            })?;
        if arm {
            instance.arm();
        }
        instance.run_armed(|store| {
            // SAFETY: `func` is the export of `self.index` in this instance's
            // module (`func_at` checked the module) and `Export::new`
            // checked that export's type is `params -> results`, all numeric,
            // so every bit pattern in a slot is a valid argument; `raw` has
            // a slot per parameter and room for every result. The engine is
            // synchronous.
            unsafe { func.call_unchecked(store, std::ptr::from_mut(raw)) }
        })
    }

    /// [`call_raw`](Self::call_raw) on what is left of the instance's last
    /// [`arm`](PooledInstance::arm): one budget for several calls (an
    /// allocation, the export and the frees of one Canonical-ABI call).
    ///
    /// # Errors
    ///
    /// As [`call_raw`](Self::call_raw).
    pub fn call_raw_armed<T>(
        &self,
        instance: &mut PooledInstance<T>,
        raw: &mut [ValRaw],
    ) -> Result<(), CallError> {
        self.checked_call(instance, raw, false)
    }

    fn check(&self, args: &[Val], results: &[Val]) -> Result<(), CallError> {
        let name = &self.name;
        if args.len() != self.params.len() {
            return Err(CallError::abi(format!(
                "`{name}` takes {} arguments, got {}",
                self.params.len(),
                args.len()
            )));
        }
        if results.len() != self.results.len() {
            return Err(CallError::abi(format!(
                "`{name}` returns {} results, room for {}",
                self.results.len(),
                results.len()
            )));
        }
        for (index, (param, arg)) in self.params.iter().zip(args).enumerate() {
            if NumType::of_val(arg) != Some(*param) {
                return Err(CallError::abi(format!(
                    "argument {index} of `{name}` must be {param}, got {arg:?}"
                )));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `ModuleExport` has no `Debug`; the name says which export it is.
        f.debug_struct("Export")
            .field("name", &self.name)
            .field("params", &self.params)
            .field("results", &self.results)
            .finish_non_exhaustive()
    }
}

fn signature(params: &[NumType], results: &[NumType]) -> String {
    let list = |types: &[NumType]| {
        types
            .iter()
            .map(|ty| ty.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(params), list(results))
}

/// `val`, already checked to be numeric, in the raw representation.
fn to_raw(val: &Val) -> ValRaw {
    match *val {
        Val::I64(v) => ValRaw::i64(v),
        Val::F32(bits) => ValRaw::f32(bits),
        Val::F64(bits) => ValRaw::f64(bits),
        Val::I32(v) => ValRaw::i32(v),
        _ => unreachable!("Export::check lets only numeric values through"),
    }
}

fn from_raw(ty: NumType, raw: &ValRaw) -> Val {
    match ty {
        NumType::I32 => Val::I32(raw.get_i32()),
        NumType::I64 => Val::I64(raw.get_i64()),
        NumType::F32 => Val::F32(raw.get_f32()),
        NumType::F64 => Val::F64(raw.get_f64()),
    }
}

#[cfg(test)]
mod tests {
    use super::NumType::{F32, F64, I32, I64};
    use super::*;
    use crate::error::Limit;
    use crate::limits::Limits;
    use crate::pool::StoreData;
    use crate::testutil::{runtime, GUEST};
    use crate::Runtime;
    use std::time::{Duration, Instant};
    use wasmtime::Linker;

    fn setup(runtime: &Runtime, wat: &str, limits: Limits) -> (Module, InstancePool<()>) {
        let module = Module::new(runtime.engine(), wat).unwrap();
        let linker = Linker::<StoreData<()>>::new(runtime.engine());
        let pre = linker.instantiate_pre(&module).unwrap();
        let pool =
            InstancePool::new(runtime, pre, limits, || Ok(())).expect("limits fit the runtime");
        (module, pool)
    }

    fn limit_of(result: Result<(), CallError>) -> Limit {
        match result {
            Err(CallError::LimitExceeded { limit, .. }) => limit,
            other => panic!("expected a limit, got {other:?}"),
        }
    }

    #[test]
    fn each_numeric_type_and_a_mix_returns_results() {
        let runtime = runtime();
        let (module, pool) = setup(&runtime, GUEST, Limits::default());
        let export = |name, params: &[NumType], results: &[NumType]| {
            Export::new(&module, name, params, results).unwrap()
        };

        let mut out = [Val::I32(0)];
        export("add32", &[I32, I32], &[I32])
            .call(&pool, &[Val::I32(i32::MAX), Val::I32(2)], &mut out)
            .unwrap();
        assert_eq!(out[0].unwrap_i32(), i32::MIN + 1, "wraps");

        export("add", &[I64, I64], &[I64])
            .call(&pool, &[Val::I64(40), Val::I64(1 << 40)], &mut out)
            .unwrap();
        assert_eq!(out[0].unwrap_i64(), 40 + (1 << 40));

        let args = [Val::F32(1.5f32.to_bits()), Val::F32((-4.0f32).to_bits())];
        export("mulf32", &[F32, F32], &[F32])
            .call(&pool, &args, &mut out)
            .unwrap();
        assert_eq!(out[0].unwrap_f32(), -6.0);

        let args = [Val::F64(1.0f64.to_bits()), Val::F64(3.0f64.to_bits())];
        export("divf64", &[F64, F64], &[F64])
            .call(&pool, &args, &mut out)
            .unwrap();
        assert_eq!(out[0].unwrap_f64(), 1.0 / 3.0);

        let mut four = [Val::I32(0), Val::I32(0), Val::I32(0), Val::I32(0)];
        let args = [
            Val::I32(-7),
            Val::F32(1.5f32.to_bits()),
            Val::F64(0.25f64.to_bits()),
            Val::I64(i64::MIN),
        ];
        export("mix", &[I32, F32, F64, I64], &[F64, I32, I64, F32])
            .call(&pool, &args, &mut four)
            .unwrap();
        assert_eq!(four[0].unwrap_f64(), 1.75);
        assert_eq!(four[1].unwrap_i32(), -7);
        assert_eq!(four[2].unwrap_i64(), i64::MIN);
        assert_eq!(four[3].unwrap_f32(), 1.5);

        export("nothing", &[], &[])
            .call(&pool, &[], &mut [])
            .unwrap();
        assert_eq!(pool.instantiated_count(), 1);
    }

    #[test]
    fn a_signature_longer_than_the_stack_buffer_still_works() {
        let runtime = runtime();
        let (module, pool) = setup(&runtime, GUEST, Limits::default());
        let wide = Export::new(&module, "wide", &[I32; 18], &[I32]).unwrap();
        let args: Vec<Val> = (0..18).map(Val::I32).collect();
        let mut out = [Val::I32(0)];
        wide.call(&pool, &args, &mut out).unwrap();
        assert_eq!(out[0].unwrap_i32(), 17);
    }

    #[test]
    fn exports_that_do_not_fit_are_refused_when_prepared() {
        let runtime = runtime();
        let (module, _pool) = setup(&runtime, GUEST, Limits::default());
        for (name, params, results) in [
            ("missing", &[][..], &[][..]),
            ("mem", &[], &[]),
            ("simd", &[], &[]),
            ("add", &[I64], &[I64]),
            ("add", &[I64, I32], &[I64]),
            ("add", &[I64, I64], &[]),
            ("add", &[I64, I64], &[I32]),
        ] {
            let err = Export::new(&module, name, params, results).unwrap_err();
            assert_eq!(err.code(), "abi-error", "{name}: {err}");
        }
        let err = Export::new(&module, "add", &[I64, I32], &[I64]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ABI error: `add` is (i64, i64) -> (i64), expected (i64, i32) -> (i64)"
        );
    }

    #[test]
    fn calls_that_do_not_fit_are_abi_errors_and_do_not_poison() {
        let runtime = runtime();
        let (module, pool) = setup(&runtime, GUEST, Limits::default());
        let add = Export::new(&module, "add", &[I64, I64], &[I64]).unwrap();
        for (args, room) in [
            (&[Val::I64(1)][..], 1),
            (&[Val::I64(1), Val::I64(2), Val::I64(3)], 1),
            (&[Val::I64(1), Val::I32(2)], 1),
            (&[Val::F64(1), Val::I64(2)], 1),
            (&[Val::I64(1), Val::I64(2)], 0),
            (&[Val::I64(1), Val::I64(2)], 2),
        ] {
            let mut results = vec![Val::I64(0); room];
            let err = add.call(&pool, args, &mut results).unwrap_err();
            assert_eq!(err.code(), "abi-error", "{args:?}: {err}");
        }
        let mut one = [Val::I64(0)];

        // An instance of another module with the same export.
        let (_, other) = setup(&runtime, GUEST, Limits::default());
        let mut instance = other.acquire().unwrap();
        let err = add
            .call_on(&mut instance, &[Val::I64(1), Val::I64(2)], &mut one)
            .unwrap_err();
        assert_eq!(err.code(), "abi-error", "{err}");
        assert!(!instance.is_poisoned());

        add.call(&pool, &[Val::I64(1), Val::I64(2)], &mut one)
            .unwrap();
        assert_eq!(one[0].unwrap_i64(), 3);
        assert_eq!(pool.instantiated_count(), 1, "ABI errors do not poison");
    }

    #[test]
    fn runaway_loop_ends_with_fuel_and_poisons() {
        let runtime = runtime();
        let limits = Limits {
            fuel: 1_000_000,
            ..Limits::default()
        };
        let (module, pool) = setup(&runtime, GUEST, limits);
        let spin = Export::new(&module, "spin", &[], &[]).unwrap();
        assert_eq!(limit_of(spin.call(&pool, &[], &mut [])), Limit::Fuel);
        assert_eq!(pool.idle_count(), 0, "the instance is poisoned");
    }

    #[test]
    fn runaway_loop_ends_with_timeout() {
        let runtime = runtime();
        let limits = Limits {
            fuel: u64::MAX,
            timeout: Duration::from_millis(50),
            ..Limits::default()
        };
        let (module, pool) = setup(&runtime, GUEST, limits);
        let spin = Export::new(&module, "spin", &[], &[]).unwrap();
        pool.release(pool.acquire().unwrap());
        let started = Instant::now();
        assert_eq!(limit_of(spin.call(&pool, &[], &mut [])), Limit::Timeout);
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(100), "{elapsed:?}");
        assert_eq!(pool.idle_count(), 0, "the instance is poisoned");
    }

    #[test]
    fn each_call_gets_the_full_budget() {
        let runtime = runtime();
        let limits = Limits {
            fuel: 1_000,
            ..Limits::default()
        };
        let (module, pool) = setup(&runtime, GUEST, limits);
        let add = Export::new(&module, "add", &[I64, I64], &[I64]).unwrap();
        let mut one = [Val::I64(0)];
        for _ in 0..100 {
            add.call(&pool, &[Val::I64(1), Val::I64(2)], &mut one)
                .unwrap();
        }
        assert_eq!(pool.instantiated_count(), 1);
    }

    #[test]
    fn traps_are_classified_and_poison() {
        let runtime = runtime();
        let limits = Limits {
            memory_bytes: 4 * 64 * 1024,
            ..Limits::default()
        };
        let (module, pool) = setup(&runtime, GUEST, limits);

        let validate = Export::new(&module, "validate", &[I32], &[]).unwrap();
        let mut instance = pool.acquire().unwrap();
        let err = validate
            .call_on(&mut instance, &[Val::I32(0)], &mut [])
            .unwrap_err();
        let CallError::Trap { backtrace, .. } = err else {
            panic!("not a trap: {err:?}");
        };
        let names: Vec<_> = backtrace.iter().map(|f| f.function.as_deref()).collect();
        assert_eq!(names, [Some("check"), Some("validate")]);
        assert!(instance.is_poisoned());
        pool.release(instance);
        assert_eq!(pool.idle_count(), 0);

        let recurse = Export::new(&module, "recurse", &[I32], &[I32]).unwrap();
        let mut one = [Val::I32(0)];
        assert_eq!(
            limit_of(recurse.call(&pool, &[Val::I32(0)], &mut one)),
            Limit::Stack
        );

        let alloc = Export::new(&module, "alloc", &[I32], &[]).unwrap();
        alloc.call(&pool, &[Val::I32(3)], &mut []).unwrap();
        assert_eq!(
            limit_of(alloc.call(&pool, &[Val::I32(1)], &mut [])),
            Limit::Memory
        );
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(pool.instantiated_count(), 3);
    }

    #[test]
    fn two_threads_share_one_export_and_pool() {
        let runtime = runtime();
        let (module, pool) = setup(&runtime, GUEST, Limits::default());
        let add = Export::new(&module, "add", &[I64, I64], &[I64]).unwrap();
        std::thread::scope(|scope| {
            for t in 0..2i64 {
                let (pool, add) = (&pool, &add);
                scope.spawn(move || {
                    let mut sum = [Val::I64(0)];
                    for i in 0..2_000i64 {
                        add.call(pool, &[Val::I64(t * 1_000_000), Val::I64(i)], &mut sum)
                            .unwrap();
                        assert_eq!(sum[0].unwrap_i64(), t * 1_000_000 + i);
                    }
                });
            }
        });
        assert!(pool.instantiated_count() <= 2);
        assert!(pool.idle_count() <= 2);
    }

    /// Warm call cost of a prepared export, through the pool and on one held
    /// instance: `cargo test --release -- --ignored --nocapture warm_call`.
    #[test]
    #[ignore = "benchmark"]
    fn warm_call_prepared_ns() {
        const CALLS: u32 = 200_000;
        let runtime = runtime();
        let (module, pool) = setup(&runtime, GUEST, Limits::default());
        let add = Export::new(&module, "add", &[I64, I64], &[I64]).unwrap();
        let args = [Val::I64(1), Val::I64(2)];
        let mut sum = [Val::I64(0)];
        add.call(&pool, &args, &mut sum).unwrap();
        let started = Instant::now();
        for _ in 0..CALLS {
            add.call(&pool, std::hint::black_box(&args), &mut sum)
                .unwrap();
            std::hint::black_box(&sum);
        }
        let through_pool = started.elapsed() / CALLS;

        let mut instance = pool.acquire().unwrap();
        let started = Instant::now();
        for _ in 0..CALLS {
            add.call_on(&mut instance, std::hint::black_box(&args), &mut sum)
                .unwrap();
            std::hint::black_box(&sum);
        }
        let on_instance = started.elapsed() / CALLS;

        // The floor: wasmtime's TypedFunc on the same store, budget set once.
        let typed = instance.get_func("add").unwrap();
        let typed = typed
            .typed::<(i64, i64), i64>(instance.store_mut())
            .unwrap();
        let store = instance.store_mut();
        store.set_fuel(u64::MAX).unwrap();
        let started = Instant::now();
        for _ in 0..CALLS {
            std::hint::black_box(
                typed
                    .call(&mut *store, std::hint::black_box((1, 2)))
                    .unwrap(),
            );
        }
        let raw = started.elapsed() / CALLS;
        println!(
            "warm prepared call: {} ns through the pool, {} ns on a held instance, \
             {} ns raw TypedFunc::call",
            through_pool.as_nanos(),
            on_instance.as_nanos(),
            raw.as_nanos()
        );
    }
}
