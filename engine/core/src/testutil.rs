//! Helpers shared by the unit tests.

use wasmtime::{Engine, Instance, Linker, Module, Store};

use crate::basic::{status_of, Failure, Host, Tx};
use crate::encoding::{encode_params, Param, RowSink, RowsWriter};
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

/// The numeric guest the call tests share: every numeric type, mixes, wide
/// and empty signatures, and the ways a call can fail (a loop, recursion, a
/// failed `memory.grow`, a named trap, a non-numeric parameter).
pub const GUEST: &str = r#"(module $guest
    (memory 1)
    (func (export "add32") (param i32 i32) (result i32)
        (i32.add (local.get 0) (local.get 1)))
    (func (export "add") (param i64 i64) (result i64)
        (i64.add (local.get 0) (local.get 1)))
    (func (export "mulf32") (param f32 f32) (result f32)
        (f32.mul (local.get 0) (local.get 1)))
    (func (export "divf64") (param f64 f64) (result f64)
        (f64.div (local.get 0) (local.get 1)))
    (func (export "mix") (param i32 f32 f64 i64) (result f64 i32 i64 f32)
        (f64.add (f64.promote_f32 (local.get 1)) (local.get 2))
        (local.get 0)
        (local.get 3)
        (local.get 1))
    (func (export "wide") (param i32 i32 i32 i32 i32 i32 i32 i32 i32
                                 i32 i32 i32 i32 i32 i32 i32 i32 i32)
                          (result i32)
        (i32.add (local.get 0) (local.get 17)))
    (func (export "nothing"))
    (func (export "spin") (loop $l (br $l)))
    (func $recurse (export "recurse") (param i32) (result i32)
        (i32.add (call $recurse (local.get 0)) (i32.const 1)))
    (func (export "alloc") (param i32)
        (if (i32.eq (memory.grow (local.get 0)) (i32.const -1))
            (then unreachable)))
    (func $check (param i32)
        (if (i32.eqz (local.get 0)) (then unreachable)))
    (func $validate (export "validate") (param i32)
        (call $check (local.get 0)))
    (func (export "simd") (param v128))
    (export "mem" (memory 0)))"#;

pub fn runtime() -> Runtime {
    Runtime::new(&RuntimeConfig::default()).unwrap()
}

/// A pool of `wat` with no host imports.
pub fn pool(runtime: &Runtime, wat: &str, limits: Limits) -> InstancePool<()> {
    let module = Module::new(runtime.engine(), wat).unwrap();
    let linker = Linker::<StoreData<()>>::new(runtime.engine());
    let pre = linker.instantiate_pre(&module).unwrap();
    InstancePool::new(runtime, pre, limits, || Ok(())).expect("limits fit the runtime")
}

/// A host that answers every query with `rows`, fails the SQL "bad"
/// with a status and "fatal" with an error that ends the call.
#[derive(Default)]
pub struct Mock {
    pub queries: Vec<(String, Vec<u8>)>,
    pub logs: Vec<(&'static str, String)>,
}

/// What the mock's queries return: one column `n`, one row holding 1.
fn write_rows(rows: &mut dyn RowSink) {
    rows.columns(&mut std::iter::once(&b"n"[..]));
    rows.integer(1);
    rows.end_row();
}

/// [`write_rows`] as the Basic ABI encodes it for the guest.
pub fn rows() -> Vec<u8> {
    let mut w = RowsWriter::new(std::iter::empty());
    write_rows(&mut w);
    w.finish()
}

impl Host for Mock {
    type Error = String;
    fn query(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        rows: &mut dyn RowSink,
    ) -> Result<(), Failure<String>> {
        self.queries.push((sql.to_owned(), encode_params(params)));
        match sql {
            "bad" => Err(Failure::Status {
                status: status_of("constraint"),
                message: "UNIQUE failed".into(),
            }),
            "fatal" => Err(Failure::Fatal("busy".into())),
            _ => {
                write_rows(rows);
                Ok(())
            }
        }
    }
    fn execute(&mut self, _: &str, _: &[Param<'_>]) -> Result<i64, Failure<String>> {
        Ok(7)
    }
    fn transaction(&mut self, _: Tx) -> Result<(), Failure<String>> {
        Ok(())
    }
    fn http_fetch(&mut self, _: &[u8]) -> Result<Vec<u8>, Failure<String>> {
        Err(Failure::Fatal("no network".into()))
    }
    fn digest(&mut self, _: &str, _: &[u8]) -> Result<Vec<u8>, Failure<String>> {
        Ok(vec![1, 2, 3])
    }
    fn hmac(&mut self, _: &str, _: &[u8], _: &[u8]) -> Result<Vec<u8>, Failure<String>> {
        Ok(vec![4])
    }
    fn log(&mut self, level: &'static str, message: &str) -> Result<(), String> {
        self.logs.push((level, message.to_owned()));
        Ok(())
    }
    fn count_in_window(&mut self, _: &str, _: i64) -> Result<i64, String> {
        Ok(1)
    }
}
