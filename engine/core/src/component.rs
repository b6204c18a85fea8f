//! Components (docs/abi.md §8): the host interface `heliosdb:procedures/host`
//! (and the plugins' `plugin-host`) generated from `wit/` by `bindgen!` and
//! served by the same [`Host`] as the Basic ABI's host functions; WASI 0.2
//! from `wasmtime-wasi`, deny by default ([`WasiSpec`]); exports called with
//! dynamic values, whose shapes are the component's own types.
//!
//! The host functions reach the database through the Basic ABI's encodings
//! (a `list<value>` becomes the parameter list a core module would pass,
//! rows come back encoded and are decoded into `rows`), so both ABIs share
//! one statement path, one authorizer and one set of limits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smallvec::SmallVec;
use wasmtime::component::{Component, Func, HasSelf, Instance, InstancePre, Linker, Val};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use crate::basic::{Failure, Fault, Host, Tx, STATUS_CASES};
use crate::encoding::{decode_http_response, encode_http_request, Param, RowSink};
use crate::engine::Runtime;
use crate::error::CallError;
use crate::limits::Limits;
use crate::pool::{arm, StoreData};
use crate::wasi::{Output, WasiSpec};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "plugin-imports",
        imports: { default: trappable },
    });
}

use bindings::heliosdb::procedures::{host, plugin_host, types};

/// The interfaces a component may import besides WASI 0.2.
pub const HOST_INTERFACES: [&str; 4] = [
    "heliosdb:procedures/host@0.1.0",
    "heliosdb:procedures/types@0.1.0",
    "heliosdb:procedures/plugin-host@0.1.0",
    "heliosdb:procedures/plugin-types@0.1.0",
];

/// The WASI 0.2 packages a component may import. Filesystem and sockets are
/// listed because CPython's runtime imports them unconditionally; with no
/// preopens and wasmtime's default deny-all socket policy they reach nothing.
pub const WASIP2_PREFIXES: [&str; 6] = [
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:io/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// The state of a component's store: the current call's host, WASI and
/// what the call left.
pub struct ComponentState<H: Host> {
    host: Option<H>,
    wasi: WasiCtx,
    table: ResourceTable,
    output: Output,
    fault: Option<Fault<H::Error>>,
    host_time: Duration,
}

impl<H: Host + Send + 'static> WasiView for StoreData<ComponentState<H>>
where
    H::Error: Send,
{
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.host.wasi,
            table: &mut self.host.table,
        }
    }
}

/// Why a host function ended the call: kept as the call's fault, the guest
/// unwinds with a trap.
fn fatal<H: Host, T>(state: &mut ComponentState<H>, fault: Fault<H::Error>) -> wasmtime::Result<T> {
    state.fault.get_or_insert(fault);
    Err(wasmtime::Error::msg("heliosdb host function failed"))
}

impl<H: Host> ComponentState<H> {
    /// The call's host (with the guest's output logged first, so its lines
    /// and its `log` calls stay in order), or the fault of a host call
    /// made while instantiating.
    fn host(&mut self) -> wasmtime::Result<&mut H> {
        let Self {
            host,
            output,
            fault,
            ..
        } = self;
        let Some(host) = host.as_mut() else {
            let message = "host functions cannot be called while instantiating";
            fault.get_or_insert(Fault::Abi(message.into()));
            return Err(wasmtime::Error::msg(message));
        };
        for (level, line) in output.take() {
            if let Err(err) = host.log(level, &line) {
                fault.get_or_insert(Fault::Host(err));
                return Err(wasmtime::Error::msg("heliosdb host function failed"));
            }
        }
        Ok(host)
    }

    /// When a host function started, if the call is [`Host::timed`].
    fn timer(&self) -> Option<Instant> {
        self.host.as_ref().is_some_and(H::timed).then(Instant::now)
    }

    fn add_host_time(&mut self, started: Option<Instant>) {
        if let Some(started) = started {
            self.host_time += started.elapsed();
        }
    }

    /// A fallible host operation's WIT result, timed; a fatal failure ends
    /// the call.
    fn fallible<T>(
        &mut self,
        op: impl FnOnce(&mut H) -> Result<T, Failure<H::Error>>,
    ) -> wasmtime::Result<Result<T, types::Error>> {
        let started = self.timer();
        let outcome = op(self.host()?);
        self.add_host_time(started);
        match outcome {
            Ok(value) => Ok(Ok(value)),
            Err(Failure::Status { status, message }) => Ok(Err(wit_error(status, message))),
            Err(Failure::Fatal(err)) => fatal(self, Fault::Host(err)),
        }
    }
}

/// The WIT error case of a Basic-ABI status code.
fn wit_error(status: i32, message: String) -> types::Error {
    let case = usize::try_from(status - 1)
        .ok()
        .and_then(|i| STATUS_CASES.get(i))
        .copied()
        .unwrap_or("sql-error");
    match case {
        "access-denied" => types::Error::AccessDenied(message),
        "constraint" => types::Error::Constraint(message),
        "limit-exceeded" => types::Error::LimitExceeded(message),
        "invalid-argument" => types::Error::InvalidArgument(message),
        "user-error" => types::Error::UserError(types::UserError {
            code: "user-error".into(),
            message,
        }),
        _ => types::Error::SqlError(message),
    }
}

/// A statement's WIT parameters as the host takes them (borrowed).
fn params(values: &[types::Value]) -> SmallVec<[Param<'_>; 4]> {
    values
        .iter()
        .map(|v| match v {
            types::Value::Null => Param::Null,
            types::Value::Integer(x) => Param::Integer(*x),
            types::Value::Real(x) => Param::Real(*x),
            types::Value::Text(s) => Param::Text(s),
            types::Value::Blob(b) => Param::Blob(b),
            types::Value::Boolean(b) => Param::Boolean(*b),
        })
        .collect()
}

/// A statement's rows made WIT `rows` as they come: no encoding between
/// SQLite and the guest's values.
struct WitRows {
    rows: types::Rows,
    row: Vec<types::Value>,
}

impl WitRows {
    fn new() -> Self {
        Self {
            rows: types::Rows {
                columns: Vec::new(),
                values: Vec::new(),
            },
            row: Vec::new(),
        }
    }

    fn cell(&mut self, value: types::Value) {
        self.row.push(value);
    }
}

impl RowSink for WitRows {
    fn columns(&mut self, names: &mut dyn ExactSizeIterator<Item = &[u8]>) {
        self.rows.columns = names
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        self.rows.values.clear();
        self.row.clear();
    }
    fn null(&mut self) {
        self.cell(types::Value::Null);
    }
    fn integer(&mut self, x: i64) {
        self.cell(types::Value::Integer(x));
    }
    fn real(&mut self, x: f64) {
        self.cell(types::Value::Real(x));
    }
    // A WIT string is UTF-8; text SQLite holds that is not (a blob cast to
    // text) reaches the guest with U+FFFD where it breaks.
    fn text(&mut self, utf8: &[u8]) {
        self.cell(types::Value::Text(
            String::from_utf8_lossy(utf8).into_owned(),
        ));
    }
    fn blob(&mut self, bytes: &[u8]) {
        self.cell(types::Value::Blob(bytes.to_vec()));
    }
    fn end_row(&mut self) {
        let width = self.rows.columns.len();
        let row = std::mem::replace(&mut self.row, Vec::with_capacity(width));
        self.rows.values.push(row);
    }
}

/// A buffer the host itself encoded that does not decode is the host's bug.
fn host_bug<H: Host, T>(state: &mut ComponentState<H>, what: &str) -> wasmtime::Result<T> {
    fatal(
        state,
        Fault::Abi(format!("the host encoded malformed {what}")),
    )
}

impl<H: Host> types::Host for ComponentState<H> {}

impl<H: Host> host::Host for ComponentState<H> {
    fn query(
        &mut self,
        sql: String,
        values: Vec<types::Value>,
    ) -> wasmtime::Result<Result<types::Rows, types::Error>> {
        let params = params(&values);
        let mut rows = WitRows::new();
        Ok(self
            .fallible(|host| host.query(&sql, &params, &mut rows))?
            .map(|()| rows.rows))
    }

    fn execute(
        &mut self,
        sql: String,
        values: Vec<types::Value>,
    ) -> wasmtime::Result<Result<u64, types::Error>> {
        let params = params(&values);
        Ok(self
            .fallible(|host| host.execute(&sql, &params))?
            .map(|n| u64::try_from(n).unwrap_or(0)))
    }

    fn log(&mut self, level: host::LogLevel, message: String) -> wasmtime::Result<()> {
        let level = match level {
            host::LogLevel::Trace => "trace",
            host::LogLevel::Debug => "debug",
            host::LogLevel::Info => "info",
            host::LogLevel::Warn => "warn",
            host::LogLevel::Error => "error",
        };
        let started = self.timer();
        let logged = self.host()?.log(level, &message);
        self.add_host_time(started);
        match logged {
            Ok(()) => Ok(()),
            Err(err) => fatal(self, Fault::Host(err)),
        }
    }

    fn begin_tx(&mut self) -> wasmtime::Result<Result<(), types::Error>> {
        self.fallible(|host| host.transaction(Tx::Begin))
    }

    fn commit_tx(&mut self) -> wasmtime::Result<Result<(), types::Error>> {
        self.fallible(|host| host.transaction(Tx::Commit))
    }

    fn rollback_tx(&mut self) -> wasmtime::Result<Result<(), types::Error>> {
        self.fallible(|host| host.transaction(Tx::Rollback))
    }

    fn now(&mut self) -> wasmtime::Result<i64> {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
    }

    fn http_fetch(
        &mut self,
        request: host::HttpRequest,
    ) -> wasmtime::Result<Result<host::HttpResponse, types::Error>> {
        let encoded = encode_http_request(
            &request.method,
            &request.url,
            &request.headers,
            &request.body,
        );
        let response = match self.fallible(|host| host.http_fetch(&encoded))? {
            Ok(response) => response,
            Err(err) => return Ok(Err(err)),
        };
        let Ok((status, headers, body)) = decode_http_response(&response) else {
            return host_bug(self, "an HTTP response");
        };
        Ok(Ok(host::HttpResponse {
            status: u16::try_from(status).unwrap_or(u16::MAX),
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
            body: body.to_vec(),
        }))
    }

    fn digest(
        &mut self,
        algorithm: String,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, types::Error>> {
        self.fallible(|host| host.digest(&algorithm, &data))
    }

    fn hmac(
        &mut self,
        algorithm: String,
        key: Vec<u8>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, types::Error>> {
        self.fallible(|host| host.hmac(&algorithm, &key, &data))
    }
}

impl<H: Host> plugin_host::Host for ComponentState<H> {
    fn count_in_window(&mut self, key: String, window_ms: u64) -> wasmtime::Result<u64> {
        let window = i64::try_from(window_ms).unwrap_or(i64::MAX);
        match self.host()?.count_in_window(&key, window) {
            Ok(n) => Ok(u64::try_from(n).unwrap_or(0)),
            Err(err) => fatal(self, Fault::Host(err)),
        }
    }
}

type Data<H> = StoreData<ComponentState<H>>;

/// A component linked once (host interfaces and WASI 0.2), whose instances
/// each get a store of their own under one version's limits and grants.
pub struct ComponentPre<H: Host + Send + 'static> {
    runtime: Runtime,
    pre: InstancePre<Data<H>>,
    limits: Limits,
    deadline_ticks: u64,
    wasi: WasiSpec,
}

/// An export resolved once: its interface, name, function and result count.
type Resolved = (Option<Box<str>>, Box<str>, Func, usize);

/// One instance with its own store.
pub struct ComponentInstance<H: Host + Send + 'static> {
    store: Store<Data<H>>,
    instance: Instance,
    fuel: u64,
    deadline_ticks: u64,
    // Exports called before: a call skips the lookup.
    funcs: Vec<Resolved>,
    poisoned: bool,
}

/// What one call left besides its results.
#[derive(Debug, Default)]
pub struct Outcome {
    pub wasm: Duration,
    pub host: Duration,
    pub fuel_used: u64,
    pub out_of_memory: bool,
}

/// Why a call failed: a trap or a limit, or what a host function ended it with.
pub type Failed<E> = crate::basic::CallFailure<E>;

/// A call's results or why it failed, what it left, and the host back.
pub type Called<H> = (
    Result<Vec<Val>, Failed<<H as Host>::Error>>,
    Outcome,
    Option<H>,
);

impl<H: Host + Send + 'static> ComponentPre<H>
where
    H::Error: Send,
{
    /// `component` linked under `limits`, its instances' WASI as `wasi`
    /// grants.
    ///
    /// # Errors
    ///
    /// An import the engine does not provide (wasmtime names it), or limits
    /// a pooling runtime cannot hold.
    pub fn new(
        runtime: &Runtime,
        component: &Component,
        limits: Limits,
        wasi: WasiSpec,
    ) -> Result<Self, CallError> {
        if let Some((limit, message)) = runtime.pooling().and_then(|p| p.refusal(&limits)) {
            return Err(CallError::LimitExceeded { limit, message });
        }
        let mut linker: Linker<Data<H>> = Linker::new(runtime.engine());
        let abi = |e: wasmtime::Error| CallError::abi(format!("{e:#}"));
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(abi)?;
        bindings::PluginImports::add_to_linker::<_, HasSelf<ComponentState<H>>>(
            &mut linker,
            |data| &mut data.host,
        )
        .map_err(abi)?;
        // Types only: the plugins' hooks take its records, nothing to call.
        linker.instance(HOST_INTERFACES[3]).map_err(abi)?;
        let pre = linker.instantiate_pre(component).map_err(abi)?;
        Ok(Self {
            runtime: runtime.clone(),
            deadline_ticks: runtime.deadline_ticks(limits.timeout),
            pre,
            limits,
            wasi,
        })
    }

    /// A new instance: its start runs under the limits.
    ///
    /// # Errors
    ///
    /// A granted folder that cannot be opened, a limit or a trap while
    /// instantiating.
    pub fn instantiate(&self) -> Result<ComponentInstance<H>, CallError> {
        let (wasi, output) = self.wasi.build_p2().map_err(CallError::abi)?;
        let state = ComponentState {
            host: None,
            wasi,
            table: ResourceTable::new(),
            output,
            fault: None,
            host_time: Duration::ZERO,
        };
        let engine: &Engine = self.runtime.engine();
        let mut store = Store::new(engine, StoreData::new(state, &self.limits));
        store.limiter(|data| data.limiter_mut());
        arm(&mut store, self.limits.fuel, self.deadline_ticks);
        let instance = self.pre.instantiate(&mut store).map_err(|err| {
            CallError::from_wasmtime(&err, store.data_mut().limiter_mut().take_refusal())
        })?;
        Ok(ComponentInstance {
            store,
            instance,
            fuel: self.limits.fuel,
            deadline_ticks: self.deadline_ticks,
            funcs: Vec::new(),
            poisoned: false,
        })
    }
}

/// Idle instances of one [`ComponentPre`], reused between calls the core
/// runs whole; at most the limits' `pool_size` are kept.
pub struct ComponentPool<H: Host + Send + 'static> {
    pre: ComponentPre<H>,
    idle: Mutex<Vec<ComponentInstance<H>>>,
    instantiated: AtomicUsize,
}

impl<H: Host + Send + 'static> crate::pool::Instances for ComponentPool<H>
where
    H::Error: Send,
{
    type Instance = ComponentInstance<H>;

    fn acquire(&self) -> Result<ComponentInstance<H>, CallError> {
        Self::acquire(self)
    }

    fn release(&self, instance: ComponentInstance<H>) {
        Self::release(self, instance);
    }

    fn idle_count(&self) -> usize {
        Self::idle_count(self)
    }
}

impl<H: Host + Send + 'static> ComponentPool<H>
where
    H::Error: Send,
{
    #[must_use]
    pub fn new(pre: ComponentPre<H>) -> Self {
        Self {
            pre,
            idle: Mutex::new(Vec::new()),
            instantiated: AtomicUsize::new(0),
        }
    }

    /// The linked component, to make instances kept elsewhere.
    pub fn pre(&self) -> &ComponentPre<H> {
        &self.pre
    }

    /// An idle instance, or a new one.
    ///
    /// # Errors
    ///
    /// As [`ComponentPre::instantiate`].
    pub fn acquire(&self) -> Result<ComponentInstance<H>, CallError> {
        if let Some(instance) = self.lock().pop() {
            return Ok(instance);
        }
        let instance = self.pre.instantiate()?;
        self.instantiated.fetch_add(1, Ordering::Relaxed);
        Ok(instance)
    }

    /// Hands `instance` back, unless it is poisoned or enough are idle.
    pub fn release(&self, instance: ComponentInstance<H>) {
        if instance.is_poisoned() {
            return;
        }
        let surplus = {
            let mut idle = self.lock();
            if idle.len() < self.pre.limits.pool_size {
                idle.push(instance);
                None
            } else {
                Some(instance)
            }
        };
        // Dropping a store frees its memory: not while holding the lock.
        drop(surplus);
    }

    pub fn idle_count(&self) -> usize {
        self.lock().len()
    }

    pub fn instantiated_count(&self) -> usize {
        self.instantiated.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ComponentInstance<H>>> {
        // A panic while holding the lock cannot leave the list half-changed.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<H: Host + Send + 'static> ComponentInstance<H> {
    /// The export `name` (in `interface`, if given) and its parameter count.
    fn func(&mut self, interface: Option<&str>, name: &str) -> Option<(Func, usize)> {
        if let Some((_, _, func, n)) = self
            .funcs
            .iter()
            .find(|f| *f.1 == *name && f.0.as_deref() == interface)
        {
            return Some((*func, *n));
        }
        let parent = match interface {
            Some(i) => Some(self.instance.get_export_index(&mut self.store, None, i)?),
            None => None,
        };
        let index = self
            .instance
            .get_export_index(&mut self.store, parent.as_ref(), name)?;
        let func = self.instance.get_func(&mut self.store, index)?;
        let n = func.ty(&self.store).results().len();
        self.funcs
            .push((interface.map(Into::into), name.into(), func, n));
        Some((func, n))
    }

    /// The parameter and result types of an export, for the embedder's
    /// conversions.
    pub fn func_type(
        &mut self,
        interface: Option<&str>,
        name: &str,
    ) -> Option<wasmtime::component::types::ComponentFunc> {
        let (func, _) = self.func(interface, name)?;
        Some(func.ty(&self.store))
    }

    /// One call of an export with `host` serving its host functions: its
    /// results, or why it failed (the instance is then poisoned). The host
    /// comes back in either case.
    pub fn call(
        &mut self,
        host: H,
        interface: Option<&str>,
        name: &str,
        params: &[Val],
    ) -> Called<H> {
        let Some((func, n)) = self.func(interface, name) else {
            let error = CallError::abi(format!("the component exports no function {name:?}"));
            return (Err(Failed::Call(error)), Outcome::default(), Some(host));
        };
        let timed = host.timed();
        {
            let state = &mut self.store.data_mut().host;
            state.host = Some(host);
            state.fault = None;
            state.host_time = Duration::ZERO;
            state.output.begin();
        }
        arm(&mut self.store, self.fuel, self.deadline_ticks);
        let mut results = vec![Val::Bool(false); n];
        let started = timed.then(Instant::now);
        let called = func.call(&mut self.store, params, &mut results);
        let wasm = started.map_or(Duration::ZERO, |s| s.elapsed());
        let refusal = self.store.data_mut().limiter_mut().take_refusal();
        let fuel_left = self.store.get_fuel().unwrap_or(0);
        let state = &mut self.store.data_mut().host;
        let (lines, out_of_memory) = state.output.finish();
        let mut host = state.host.take();
        // What the guest printed and has not been logged yet.
        let mut logged = Ok(());
        if let Some(h) = host.as_mut() {
            for (level, line) in lines {
                if let Err(err) = h.log(level, &line) {
                    logged = Err(err);
                    break;
                }
            }
        }
        let outcome = Outcome {
            wasm,
            host: state.host_time,
            fuel_used: self.fuel.saturating_sub(fuel_left),
            out_of_memory,
        };
        let fault = state.fault.take();
        let result = match (called, logged) {
            (Ok(()), Ok(())) => Ok(results),
            (Ok(()), Err(err)) => Err(Failed::Fault(Fault::Host(err))),
            (Err(err), _) => {
                let error = CallError::from_wasmtime(&err, refusal);
                Err(match fault {
                    // A limit the guest exhausted wins over the fault it caused.
                    Some(fault) if !matches!(error, CallError::LimitExceeded { .. }) => {
                        Failed::Fault(fault)
                    }
                    _ => Failed::Call(error),
                })
            }
        };
        if result.is_err() {
            self.poisoned = true;
        }
        (result, outcome, host)
    }

    /// Whether a call failed on this instance (it must not be used again).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Limit;
    use crate::testutil::{runtime, Mock};

    const COMPONENT: &str = r#"(component
        (core module $m
            (func (export "double") (param i64) (result i64)
                (i64.mul (local.get 0) (i64.const 2)))
            (func (export "spin") (result i64) (loop $l (br $l)) (i64.const 0)))
        (core instance $i (instantiate $m))
        (func (export "double") (param "x" s64) (result s64)
            (canon lift (core func $i "double")))
        (func (export "spin") (result s64) (canon lift (core func $i "spin")))
    )"#;

    fn instance(limits: Limits) -> ComponentInstance<Mock> {
        let runtime = runtime();
        let component = Component::new(runtime.engine(), COMPONENT).unwrap();
        let pre = ComponentPre::<Mock>::new(&runtime, &component, limits, WasiSpec::default());
        pre.unwrap().instantiate().unwrap()
    }

    #[test]
    fn an_export_is_called_with_dynamic_values() {
        let mut instance = instance(Limits::default());
        let (result, outcome, host) =
            instance.call(Mock::default(), None, "double", &[Val::S64(21)]);
        assert_eq!(result.unwrap(), [Val::S64(42)]);
        assert!(outcome.fuel_used > 0 && host.is_some());
        assert!(!instance.is_poisoned());
    }

    #[test]
    fn a_limit_is_exact_and_poisons_the_instance() {
        let limits = Limits {
            fuel: 10_000,
            ..Limits::default()
        };
        let mut instance = instance(limits);
        let (result, _, _) = instance.call(Mock::default(), None, "spin", &[]);
        assert!(matches!(
            result,
            Err(Failed::Call(CallError::LimitExceeded {
                limit: Limit::Fuel,
                ..
            }))
        ));
        assert!(instance.is_poisoned());
        let (missing, _, _) = instance.call(Mock::default(), None, "nope", &[]);
        assert!(matches!(missing, Err(Failed::Call(CallError::Abi { .. }))));
    }

    #[test]
    fn wit_errors_follow_the_status_codes() {
        assert!(matches!(
            wit_error(crate::basic::status_of("constraint"), "x".into()),
            types::Error::Constraint(m) if m == "x"
        ));
        assert!(matches!(
            wit_error(99, "y".into()),
            types::Error::SqlError(_)
        ));
    }

    #[test]
    fn rows_become_wit_values_as_they_come() {
        let mut rows = WitRows::new();
        rows.columns(&mut [&b"id"[..], &b"name"[..]].into_iter());
        rows.integer(1);
        rows.text(b"caf\xc3\xa9");
        rows.end_row();
        rows.null();
        rows.text(b"\xff");
        rows.end_row();
        let got = rows.rows;
        assert_eq!(got.columns, ["id", "name"]);
        assert_eq!(got.values.len(), 2);
        assert!(matches!(got.values[0][0], types::Value::Integer(1)));
        assert!(matches!(&got.values[0][1], types::Value::Text(t) if t == "café"));
        assert!(matches!(got.values[1][0], types::Value::Null));
        // Not UTF-8 in SQLite: U+FFFD in the guest's string, not a fault.
        assert!(matches!(&got.values[1][1], types::Value::Text(t) if t == "\u{fffd}"));
    }
}
