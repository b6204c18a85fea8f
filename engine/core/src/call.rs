//! Calling a numeric export through a pool.

use wasmtime::{FuncType, Val, ValType};

use crate::error::CallError;
use crate::pool::{InstancePool, PooledInstance};

/// Calls `export` with `args` on an instance of `pool` and returns its results.
///
/// Parameters and results must be among `i32`, `i64`, `f32` and `f64`, and
/// `args` must match the parameters; otherwise the call fails with
/// [`CallError::Abi`] before the guest runs. A call that traps or exceeds a
/// limit poisons its instance; any other ends with the instance back in the pool.
///
/// # Errors
///
/// [`CallError::Abi`] if the call does not fit the export, otherwise what
/// [`InstancePool::acquire`] and [`PooledInstance::run`] return.
pub fn call<T: Send + 'static>(
    pool: &InstancePool<T>,
    export: &str,
    args: &[Val],
) -> Result<Vec<Val>, CallError> {
    let mut instance = pool.acquire()?;
    let outcome = call_on(&mut instance, export, args);
    // A poisoned instance is dropped here; one refused before the guest ran
    // (an ABI error) is as good as new.
    pool.release(instance);
    outcome
}

fn call_on<T>(
    instance: &mut PooledInstance<T>,
    export: &str,
    args: &[Val],
) -> Result<Vec<Val>, CallError> {
    let func = instance
        .get_func(export)
        .ok_or_else(|| CallError::abi(format!("no exported function `{export}`")))?;
    let ty = func.ty(instance.store_mut());
    check_signature(export, &ty, args)?;
    let mut results: Vec<Val> = ty.results().map(zero).collect();
    instance.run(|store| func.call(store, args, &mut results))?;
    Ok(results)
}

fn check_signature(export: &str, ty: &FuncType, args: &[Val]) -> Result<(), CallError> {
    if let Some(other) = ty.params().chain(ty.results()).find(|t| !is_numeric(t)) {
        return Err(CallError::abi(format!(
            "`{export}` uses {other}: only i32, i64, f32 and f64 are numeric"
        )));
    }
    if ty.params().len() != args.len() {
        return Err(CallError::abi(format!(
            "`{export}` takes {} arguments, got {}",
            ty.params().len(),
            args.len()
        )));
    }
    for (index, (param, arg)) in ty.params().zip(args).enumerate() {
        if !fits(&param, arg) {
            return Err(CallError::abi(format!(
                "argument {index} of `{export}` must be {param}, got {arg:?}"
            )));
        }
    }
    Ok(())
}

fn is_numeric(ty: &ValType) -> bool {
    matches!(
        ty,
        ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64
    )
}

/// Whether `val` is a value of type `ty`.
fn fits(ty: &ValType, val: &Val) -> bool {
    matches!(
        (ty, val),
        (ValType::I32, Val::I32(_))
            | (ValType::I64, Val::I64(_))
            | (ValType::F32, Val::F32(_))
            | (ValType::F64, Val::F64(_))
    )
}

/// A placeholder result of numeric type `ty`, overwritten by the call.
fn zero(ty: ValType) -> Val {
    match ty {
        ValType::I64 => Val::I64(0),
        ValType::F32 => Val::F32(0),
        ValType::F64 => Val::F64(0),
        _ => Val::I32(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Limit;
    use crate::limits::Limits;
    use crate::pool::StoreData;
    use crate::testutil::{pool, runtime, GUEST};
    use std::time::{Duration, Instant};
    use wasmtime::{Linker, Module};

    fn limit_of(result: Result<Vec<Val>, CallError>) -> Limit {
        match result {
            Err(CallError::LimitExceeded { limit, .. }) => limit,
            other => panic!("expected a limit, got {other:?}"),
        }
    }

    #[test]
    fn numeric_call_returns_results() {
        let runtime = runtime();
        let pool = pool(&runtime, GUEST, Limits::default());
        let sum = call(&pool, "add", &[Val::I64(40), Val::I64(2)]).unwrap();
        assert_eq!(sum[0].unwrap_i64(), 42);
        let mixed = call(
            &pool,
            "mix",
            &[
                Val::I32(7),
                Val::F32(1.5f32.to_bits()),
                Val::F64(0.25f64.to_bits()),
                Val::I64(9),
            ],
        )
        .unwrap();
        assert_eq!(mixed[0].unwrap_f64(), 1.75);
        assert_eq!(mixed[1].unwrap_i32(), 7);
        assert_eq!(mixed[2].unwrap_i64(), 9);
        assert_eq!(mixed[3].unwrap_f32(), 1.5);
        assert_eq!(pool.instantiated_count(), 1);
    }

    #[test]
    fn runaway_loop_ends_with_fuel() {
        let runtime = runtime();
        let limits = Limits {
            fuel: 1_000_000,
            ..Limits::default()
        };
        let pool = pool(&runtime, GUEST, limits);
        assert_eq!(limit_of(call(&pool, "spin", &[])), Limit::Fuel);
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
        let pool = pool(&runtime, GUEST, limits);
        // Instantiate first: the deadline is about the call, not compilation.
        pool.release(pool.acquire().unwrap());
        let started = Instant::now();
        assert_eq!(limit_of(call(&pool, "spin", &[])), Limit::Timeout);
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(100), "{elapsed:?}");
    }

    #[test]
    fn pool_keeps_deadlines_working_after_the_runtime_handle_is_gone() {
        let runtime = runtime();
        let limits = Limits {
            // Ends the loop in seconds if the deadline were lost.
            fuel: 5_000_000_000,
            timeout: Duration::from_millis(20),
            ..Limits::default()
        };
        let pool = pool(&runtime, GUEST, limits);
        drop(runtime);
        assert_eq!(limit_of(call(&pool, "spin", &[])), Limit::Timeout);
    }

    #[test]
    fn each_call_gets_the_full_budget() {
        let runtime = runtime();
        let limits = Limits {
            fuel: 1_000,
            ..Limits::default()
        };
        let pool = pool(&runtime, GUEST, limits);
        for _ in 0..100 {
            call(&pool, "add", &[Val::I64(1), Val::I64(2)]).unwrap();
        }
        assert_eq!(pool.instantiated_count(), 1);
    }

    #[test]
    fn trap_after_refused_grow_is_the_memory_limit() {
        let runtime = runtime();
        let limits = Limits {
            memory_bytes: 4 * 64 * 1024,
            ..Limits::default()
        };
        let pool = pool(&runtime, GUEST, limits);
        call(&pool, "alloc", &[Val::I32(3)]).unwrap();
        assert_eq!(
            limit_of(call(&pool, "alloc", &[Val::I32(1)])),
            Limit::Memory
        );
    }

    #[test]
    fn trap_after_refused_table_growth_is_the_table_limit() {
        let runtime = runtime();
        let limits = Limits {
            max_table_elements: 4,
            ..Limits::default()
        };
        let wat = r#"(module (table 1 funcref)
            (func (export "grow") (param i32)
                (if (i32.eq (table.grow (ref.null func) (local.get 0)) (i32.const -1))
                    (then unreachable))))"#;
        let pool = pool(&runtime, wat, limits);
        call(&pool, "grow", &[Val::I32(3)]).unwrap();
        let err = call(&pool, "grow", &[Val::I32(1)]).unwrap_err();
        let CallError::LimitExceeded { limit, message } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(*limit, Limit::TableElements);
        assert_eq!(
            message,
            "refused to grow a table to 5 elements \
             (wasm `unreachable` instruction executed)"
        );
    }

    #[test]
    fn refusal_is_not_blamed_on_a_later_call() {
        let runtime = runtime();
        let limits = Limits {
            memory_bytes: 64 * 1024,
            ..Limits::default()
        };
        let wat = r#"(module (memory 1)
            (func (export "try_grow") (result i32) (memory.grow (i32.const 1)))
            (func (export "boom") unreachable))"#;
        let pool = pool(&runtime, wat, limits);
        assert_eq!(call(&pool, "try_grow", &[]).unwrap()[0].unwrap_i32(), -1);
        let err = call(&pool, "boom", &[]).unwrap_err();
        assert!(matches!(err, CallError::Trap { .. }), "{err:?}");
    }

    #[test]
    fn host_error_is_a_trap_with_its_own_message() {
        let runtime = runtime();
        let mut linker = Linker::<StoreData<()>>::new(runtime.engine());
        linker
            .func_wrap("host", "fail", || -> wasmtime::Result<()> {
                wasmtime::bail!("no such table")
            })
            .unwrap();
        let wat = r#"(module (import "host" "fail" (func $fail))
            (func $run (export "run") (call $fail)))"#;
        let module = Module::new(runtime.engine(), wat).unwrap();
        let pre = linker.instantiate_pre(&module).unwrap();
        let pool = InstancePool::new(&runtime, pre, Limits::default(), || Ok(()))
            .expect("default limits fit");
        let err = call(&pool, "run", &[]).unwrap_err();
        let CallError::Trap { message, backtrace } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(message, "no such table");
        assert_eq!(backtrace[0].function.as_deref(), Some("run"));
    }

    #[test]
    fn deep_recursion_is_the_stack_limit() {
        let runtime = runtime();
        let pool = pool(&runtime, GUEST, Limits::default());
        assert_eq!(
            limit_of(call(&pool, "recurse", &[Val::I32(0)])),
            Limit::Stack
        );
    }

    #[test]
    fn trap_carries_the_wat_function_names() {
        let runtime = runtime();
        let pool = pool(&runtime, GUEST, Limits::default());
        let err = call(&pool, "validate", &[Val::I32(0)]).unwrap_err();
        let CallError::Trap { backtrace, .. } = err else {
            panic!("not a trap: {err:?}");
        };
        let names: Vec<_> = backtrace.iter().map(|f| f.function.as_deref()).collect();
        assert_eq!(names, [Some("check"), Some("validate")]);
        assert!(backtrace
            .iter()
            .all(|f| f.module.as_deref() == Some("guest")));
    }

    #[test]
    fn calls_that_do_not_fit_are_abi_errors() {
        let runtime = runtime();
        let pool = pool(&runtime, GUEST, Limits::default());
        for (export, args) in [
            ("missing", vec![]),
            ("add", vec![Val::I64(1)]),
            ("add", vec![Val::I64(1), Val::I32(2)]),
            ("simd", vec![Val::V128(0u128.into())]),
        ] {
            let err = call(&pool, export, &args).unwrap_err();
            assert_eq!(err.code(), "abi-error", "{export}: {err}");
        }
        assert_eq!(pool.instantiated_count(), 1, "ABI errors do not poison");
    }

    #[test]
    fn two_threads_share_one_pool() {
        let runtime = runtime();
        let pool = pool(&runtime, GUEST, Limits::default());
        std::thread::scope(|scope| {
            for t in 0..2i64 {
                let pool = &pool;
                scope.spawn(move || {
                    for i in 0..2_000i64 {
                        let sum = call(pool, "add", &[Val::I64(t * 1_000_000), Val::I64(i)]);
                        assert_eq!(sum.unwrap()[0].unwrap_i64(), t * 1_000_000 + i);
                    }
                });
            }
        });
        assert!(pool.instantiated_count() <= 2);
        assert!(pool.idle_count() <= 2);
    }

    /// Warm call cost, against wasmtime's own `Func::call` on one store as
    /// the baseline: `cargo test -- --ignored --nocapture warm_call`.
    #[test]
    #[ignore = "benchmark"]
    fn warm_call_ns() {
        const CALLS: u32 = 200_000;
        let runtime = runtime();
        let pool = pool(&runtime, GUEST, Limits::default());
        let args = [Val::I64(1), Val::I64(2)];
        call(&pool, "add", &args).unwrap();
        let started = Instant::now();
        for _ in 0..CALLS {
            std::hint::black_box(call(&pool, "add", std::hint::black_box(&args)).unwrap());
        }
        let through_pool = started.elapsed() / CALLS;

        let mut instance = pool.acquire().unwrap();
        let add = instance.get_func("add").unwrap();
        let store = instance.store_mut();
        store.set_fuel(u64::MAX).unwrap();
        let mut results = [Val::I64(0)];
        let started = Instant::now();
        for _ in 0..CALLS {
            add.call(&mut *store, std::hint::black_box(&args), &mut results)
                .unwrap();
        }
        let raw = started.elapsed() / CALLS;
        println!(
            "warm call: {} ns through the pool, {} ns raw Func::call",
            through_pool.as_nanos(),
            raw.as_nanos()
        );
    }
}
