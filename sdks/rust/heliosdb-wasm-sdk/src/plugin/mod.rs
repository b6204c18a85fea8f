//! Query-hook plugins (docs/plugins.md): code that sits in the query path of
//! the PostgreSQL-wire endpoint and allows, rejects or rewrites statements.
//!
//! ```ignore
//! use heliosdb_wasm_sdk::plugin::{Context, Verdict, ast, serde_json::Value};
//! use heliosdb_wasm_sdk::{Error, heliosdb_plugin};
//!
//! #[heliosdb_plugin(post_parse)]
//! fn post_parse(ctx: &Context, ast: &mut Value) -> Result<Verdict, Error> {
//!     let Some(tenant) = ctx.session("tenant") else {
//!         return Ok(Verdict::reject("42501", "no tenant"));
//!     };
//!     if ast::add_predicate(ast, "orders", "tenant_id", tenant) == 0 {
//!         return Ok(Verdict::allow());
//!     }
//!     Ok(Verdict::rewrite(ast))
//! }
//! ```
//!
//! A Basic-ABI module exports each hook as a procedure `(request JSON)
//! RETURNS JSON` named `pre_parse`, `post_parse`, `pre_execution` or
//! `post_execution` (docs/plugins.md §3). `#[heliosdb_plugin(hook)]` generates
//! that export through `#[heliosdb_procedure]`; [`hooks`] holds the functions
//! it calls, for crates that prefer to write the procedure themselves.

pub mod ast;
mod wire;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::types::{Error, Json, Value};

pub use serde_json;

/// What every hook is told about the statement (WIT `plugin-types.context`).
///
/// Missing members of the request default to empty, so a hook sees "no
/// tenant" rather than failing when the host leaves one out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Context {
    query_id: u64,
    user: String,
    database: String,
    application_name: String,
    connection: Vec<(String, String)>,
    session: Vec<(String, String)>,
    tables: Vec<String>,
    config: String,
}

impl Context {
    /// An empty context; with the `with_*` methods, for testing hooks on the
    /// host (`cargo test`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Unique per statement in the server process; also in the logs.
    pub fn query_id(&self) -> u64 {
        self.query_id
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn application_name(&self) -> &str {
        &self.application_name
    }

    /// The session variable `name` (set by `SET` or by a plugin).
    ///
    /// Names are compared exactly: a case-insensitive match would let a
    /// client's `SET TENANT` shadow a `tenant` that an authentication plugin
    /// set (and so protected). When the host lists a name twice, the later
    /// value wins.
    pub fn session(&self, name: &str) -> Option<&str> {
        lookup(&self.session, name)
    }

    /// The connection's startup parameter `name` (`user`, `options`, or any
    /// the client added), compared exactly.
    pub fn connection(&self, name: &str) -> Option<&str> {
        lookup(&self.connection, name)
    }

    /// Every session variable, as (name, value) pairs.
    pub fn session_vars(&self) -> &[(String, String)] {
        &self.session
    }

    /// Every startup parameter, as (name, value) pairs.
    pub fn connection_params(&self) -> &[(String, String)] {
        &self.connection
    }

    /// The tables the statement references, lower case, without CTE names
    /// (empty at pre-parse). Leaving CTE names out also hides a real table
    /// that a CTE of the same name shadows elsewhere in the statement: for
    /// access control, look at the AST itself.
    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    /// The plugin's `config` table from its manifest, as JSON text.
    pub fn config_text(&self) -> &str {
        &self.config
    }

    /// The plugin's `config`, deserialized: `ctx.config::<MyConfig>()?`. An
    /// empty config is `{}`. A config that does not fit `T` is the user
    /// error `PLUGIN_CONFIG`, which fails the statement. Give `T`
    /// `#[serde(deny_unknown_fields)]` so that a misspelt option fails too
    /// instead of silently keeping its default.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let text = if self.config.trim().is_empty() { "{}" } else { &self.config };
        serde_json::from_str(text).map_err(|e| Error::user("PLUGIN_CONFIG", format!("plugin config: {e}")))
    }

    pub fn with_query_id(mut self, query_id: u64) -> Self {
        self.query_id = query_id;
        self
    }

    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    pub fn with_session(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.session.push((name.into(), value.into()));
        self
    }

    pub fn with_connection(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.connection.push((name.into(), value.into()));
        self
    }

    pub fn with_tables<S: Into<String>>(mut self, tables: impl IntoIterator<Item = S>) -> Self {
        self.tables = tables.into_iter().map(Into::into).collect();
        self
    }

    pub fn with_config(mut self, config: impl Into<String>) -> Self {
        self.config = config.into();
        self
    }
}

fn lookup<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Why a statement fails: the SQLSTATE the client gets and a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub sqlstate: String,
    pub message: String,
}

/// What a hook decides (WIT `plugin-types.action`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Let the statement (or its rows) through unchanged.
    Allow,
    /// Fail the statement.
    Reject(Rejection),
    /// pre-parse: the replacement SQL; post-parse: the modified AST as JSON.
    Rewrite(String),
    /// post-execution: the rows to return instead, with the same columns.
    ReplaceRows(Vec<Vec<Value>>),
}

/// A hook's answer (WIT `plugin-types.verdict`):
/// `Verdict::allow().set_session("tenant.checked", "1")`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub action: Action,
    /// Session variables to set; the host protects them from the client's
    /// `SET` and `RESET`.
    #[serde(rename = "set-session", default, skip_serializing_if = "Vec::is_empty")]
    pub set_session: Vec<(String, String)>,
}

impl Verdict {
    pub fn allow() -> Self {
        Self::of(Action::Allow)
    }

    /// Fails the statement with `sqlstate` (`42501` insufficient privilege,
    /// `28000` invalid authorization, `53400` configuration limit exceeded,
    /// ...).
    pub fn reject(sqlstate: impl Into<String>, message: impl Into<String>) -> Self {
        Self::of(Action::Reject(Rejection { sqlstate: sqlstate.into(), message: message.into() }))
    }

    /// pre-parse: new SQL text (`&str`, `String`); post-parse: the modified
    /// AST (`&Value`, `&mut Value` or `Value`, serialized here).
    pub fn rewrite(replacement: impl IntoRewrite) -> Self {
        Self::of(Action::Rewrite(replacement.into_rewrite()))
    }

    /// post-execution: return these rows instead (same columns).
    pub fn replace_rows(rows: Vec<Vec<Value>>) -> Self {
        Self::of(Action::ReplaceRows(rows))
    }

    /// Also sets the session variable `name` to `value`.
    pub fn set_session(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_session.push((name.into(), value.into()));
        self
    }

    fn of(action: Action) -> Self {
        Verdict { action, set_session: Vec::new() }
    }
}

/// What [`Verdict::rewrite`] accepts: SQL text, or an AST to serialize.
pub trait IntoRewrite {
    fn into_rewrite(self) -> String;
}

impl IntoRewrite for String {
    fn into_rewrite(self) -> String {
        self
    }
}

impl IntoRewrite for &str {
    fn into_rewrite(self) -> String {
        self.to_owned()
    }
}

impl IntoRewrite for &String {
    fn into_rewrite(self) -> String {
        self.clone()
    }
}

impl IntoRewrite for serde_json::Value {
    fn into_rewrite(self) -> String {
        self.to_string()
    }
}

impl IntoRewrite for &serde_json::Value {
    fn into_rewrite(self) -> String {
        self.to_string()
    }
}

impl IntoRewrite for &mut serde_json::Value {
    fn into_rewrite(self) -> String {
        self.to_string()
    }
}

/// What a hook may return: a `Verdict`, or `Result<Verdict, Error>` (an
/// `Err` fails the statement with SQLSTATE 38000).
pub trait HookResult {
    fn into_verdict(self) -> Result<Verdict, Error>;
}

impl HookResult for Verdict {
    fn into_verdict(self) -> Result<Verdict, Error> {
        Ok(self)
    }
}

impl HookResult for Result<Verdict, Error> {
    fn into_verdict(self) -> Result<Verdict, Error> {
        self
    }
}

impl Action {
    /// The WIT case name: `allow`, `reject`, `rewrite`, `replace-rows`.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Reject(_) => "reject",
            Action::Rewrite(_) => "rewrite",
            Action::ReplaceRows(_) => "replace-rows",
        }
    }
}

/// `?` on serde_json calls in a hook: an `invalid-argument` error.
impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::InvalidArgument(err.to_string())
    }
}

/// Adds one to the counter `key` (private to the plugin) in the current
/// fixed window of `window_ms` milliseconds and returns its new value: the
/// building block of rate limits (WIT `plugin-host.count-in-window`).
/// Basic-ABI plugins only; a module that never calls it does not import it.
pub fn count_in_window(key: &str, window_ms: u64) -> u64 {
    crate::backend::count_in_window(key, window_ms)
}

/// The Basic-ABI hook procedures: each parses its request (docs/plugins.md
/// §3), calls `hook`, and returns the verdict as JSON. A malformed request
/// or a verdict that cannot be serialized is an `invalid-argument` error.
///
/// ```ignore
/// #[heliosdb_procedure]
/// fn post_parse(request: Json) -> Result<Json, Error> {
///     hooks::post_parse(request, |ctx, ast| my_rules(ctx, ast))
/// }
/// ```
pub mod hooks {
    use super::*;

    #[derive(Deserialize)]
    struct PreParse {
        #[serde(default)]
        ctx: Context,
        sql: String,
    }

    #[derive(Deserialize)]
    struct PostParse {
        #[serde(default)]
        ctx: Context,
        ast: String,
    }

    #[derive(Deserialize)]
    struct PreExecution {
        #[serde(default)]
        ctx: Context,
        sql: String,
        #[serde(default)]
        params: Vec<Value>,
    }

    #[derive(Deserialize)]
    struct PostExecution {
        #[serde(default)]
        ctx: Context,
        #[serde(default)]
        columns: Vec<String>,
        #[serde(default)]
        rows: Vec<Vec<Value>>,
    }

    fn request<T: DeserializeOwned>(hook: &str, request: &Json) -> Result<T, Error> {
        serde_json::from_str(&wire::quote_non_finite(&request.0))
            .map_err(|e| Error::InvalidArgument(format!("{hook}: malformed request: {e}")))
    }

    /// Serializes the verdict after checking that its action is one the
    /// stage allows: the engine would refuse it anyway, but only with its
    /// own message.
    fn answer(hook: &str, allowed: &[&str], verdict: impl HookResult) -> Result<Json, Error> {
        let verdict = verdict.into_verdict()?;
        let action = verdict.action.name();
        if !allowed.contains(&action) {
            return Err(Error::user(
                "PLUGIN_VERDICT",
                format!("{hook} cannot answer {action} (it may answer {})", allowed.join(", ")),
            ));
        }
        Ok(Json(wire::unquote_non_finite(serde_json::to_string(&verdict)?)))
    }

    /// `{"ctx", "sql"}`: the raw SQL text.
    pub fn pre_parse<R: HookResult>(
        request: Json,
        hook: impl FnOnce(&Context, &mut String) -> R,
    ) -> Result<Json, Error> {
        let mut req: PreParse = self::request("pre_parse", &request)?;
        answer("pre_parse", &["allow", "reject", "rewrite"], hook(&req.ctx, &mut req.sql))
    }

    /// `{"ctx", "ast"}`: the statement's AST (a JSON text) as a
    /// `serde_json::Value`.
    pub fn post_parse<R: HookResult>(
        request: Json,
        hook: impl FnOnce(&Context, &mut serde_json::Value) -> R,
    ) -> Result<Json, Error> {
        let req: PostParse = self::request("post_parse", &request)?;
        let mut ast: serde_json::Value = serde_json::from_str(&req.ast)
            .map_err(|e| Error::InvalidArgument(format!("post_parse: the AST is not JSON: {e}")))?;
        answer("post_parse", &["allow", "reject", "rewrite"], hook(&req.ctx, &mut ast))
    }

    /// `{"ctx", "sql", "params"}`: the final SQL and its parameter values.
    pub fn pre_execution<R: HookResult>(
        request: Json,
        hook: impl FnOnce(&Context, &mut String, &mut Vec<Value>) -> R,
    ) -> Result<Json, Error> {
        let mut req: PreExecution = self::request("pre_execution", &request)?;
        answer("pre_execution", &["allow", "reject"], hook(&req.ctx, &mut req.sql, &mut req.params))
    }

    /// `{"ctx", "columns", "rows"}`: the statement's result.
    pub fn post_execution<R: HookResult>(
        request: Json,
        hook: impl FnOnce(&Context, &mut Vec<String>, &mut Vec<Vec<Value>>) -> R,
    ) -> Result<Json, Error> {
        let mut req: PostExecution = self::request("post_execution", &request)?;
        let verdict = hook(&req.ctx, &mut req.columns, &mut req.rows).into_verdict()?;
        if let Action::ReplaceRows(rows) = &verdict.action
            && let Some(bad) = rows.iter().find(|r| r.len() != req.columns.len())
        {
            return Err(Error::user(
                "PLUGIN_VERDICT",
                format!("replace-rows gave a row of {} values for {} columns", bad.len(), req.columns.len()),
            ));
        }
        answer("post_execution", &["allow", "reject", "replace-rows"], verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verdict_json(v: &Verdict) -> serde_json::Value {
        serde_json::to_value(v).unwrap()
    }

    #[test]
    fn verdicts_have_the_wit_json_form() {
        assert_eq!(verdict_json(&Verdict::allow()), json!({"action": "allow"}));
        assert_eq!(
            verdict_json(&Verdict::reject("42501", "not your tenant")),
            json!({"action": {"reject": {"sqlstate": "42501", "message": "not your tenant"}}})
        );
        assert_eq!(
            verdict_json(&Verdict::rewrite(json!({"node": "select"})).set_session("tenant.checked", "1")),
            json!({"action": {"rewrite": "{\"node\":\"select\"}"}, "set-session": [["tenant.checked", "1"]]})
        );
        let rows = vec![vec![
            Value::Integer(i64::MAX),
            Value::Text("***".into()),
            Value::Null,
            Value::Real(0.1),
            Value::Blob(vec![0, 255]),
            Value::Boolean(true),
        ]];
        assert_eq!(
            verdict_json(&Verdict::replace_rows(rows)),
            json!({"action": {"replace-rows": [[
                {"integer": 9223372036854775807i64}, {"text": "***"}, "null",
                {"real": 0.1}, {"blob": [0, 255]}, {"boolean": true}
            ]]}})
        );
    }

    #[test]
    fn a_post_parse_request_reaches_the_hook_and_its_verdict_comes_back() {
        let request = json!({
            "ctx": {"query-id": 7, "user": "alice", "database": "shop", "application-name": "psql",
                    "connection": [["user", "alice"], ["tenant", "acme"]],
                    "session": [["tenant", "globex"], ["tenant", "initech"]],
                    "tables": ["orders"], "config": "{\"tables\": [\"orders\"]}"},
            "ast": "{\"node\": \"select\"}"
        });
        let out = hooks::post_parse(Json(request.to_string()), |ctx, ast| {
            assert_eq!(ctx.query_id(), 7);
            assert_eq!((ctx.user(), ctx.database(), ctx.application_name()), ("alice", "shop", "psql"));
            assert_eq!(ctx.connection("tenant"), Some("acme"));
            assert_eq!(ctx.session("tenant"), Some("initech"));
            assert_eq!(ctx.session("TENANT"), None);
            assert_eq!(ctx.tables(), ["orders"]);
            let config: serde_json::Value = ctx.config().unwrap();
            assert_eq!(config, json!({"tables": ["orders"]}));
            ast["where"] = json!(null);
            Verdict::rewrite(ast)
        })
        .unwrap();
        let verdict: Verdict = serde_json::from_str(&out.0).unwrap();
        assert_eq!(verdict.action, Action::Rewrite("{\"node\":\"select\",\"where\":null}".into()));
    }

    #[test]
    fn sql_values_cross_exactly() {
        // As the engine's json.dumps writes them: Infinity is a bare token.
        let request = r#"{"ctx": {}, "columns": ["a", "b", "c", "d", "e", "f", "g"],
            "rows": [[{"integer": -9223372036854775808}, {"real": 0.30000000000000004},
                      "null", {"text": "é"}, {"blob": [1, 2]}, {"boolean": false}, {"real": -Infinity}]]}"#;
        let out = hooks::post_execution(Json(request.into()), |_, columns, rows| {
            assert_eq!(columns.len(), 7);
            assert_eq!(rows[0][0], Value::Integer(i64::MIN));
            assert_eq!(rows[0][1], Value::Real(0.30000000000000004));
            assert_eq!(rows[0][2], Value::Null);
            assert_eq!(rows[0][6], Value::Real(f64::NEG_INFINITY));
            Verdict::replace_rows(rows.clone())
        })
        .unwrap();
        assert_eq!(
            out.0,
            r#"{"action":{"replace-rows":[[{"integer":-9223372036854775808},{"real":0.30000000000000004},"null",{"text":"é"},{"blob":[1,2]},{"boolean":false},{"real":-Infinity}]]}}"#
        );
    }

    #[test]
    fn a_verdict_its_stage_does_not_allow_is_an_error() {
        let request = Json(r#"{"sql": "SELECT 1", "params": [{"integer": 1}]}"#.into());
        let err = hooks::pre_execution(request, |_, _, params| Verdict::replace_rows(vec![params.clone()]))
            .unwrap_err();
        assert_eq!(
            err,
            Error::user(
                "PLUGIN_VERDICT",
                "pre_execution cannot answer replace-rows (it may answer allow, reject)"
            )
        );
        let request = Json(r#"{"columns": ["a", "b"], "rows": []}"#.into());
        let err = hooks::post_execution(request, |_, _, _| Verdict::replace_rows(vec![vec![Value::Null]]))
            .unwrap_err();
        assert_eq!(err, Error::user("PLUGIN_VERDICT", "replace-rows gave a row of 1 values for 2 columns"));
        let request = Json(r#"{"sql": "SELECT 1"}"#.into());
        let out = hooks::pre_parse(request, |_, sql| Verdict::rewrite(sql.replace('1', "2"))).unwrap();
        assert_eq!(out.0, r#"{"action":{"rewrite":"SELECT 2"}}"#);
    }

    #[test]
    fn bad_requests_and_configs_fail_the_hook() {
        let err = hooks::post_parse(Json("{\"ctx\": {}}".into()), |_, _| Verdict::allow()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("post_parse: malformed request")),
            "{err:?}"
        );
        let err =
            hooks::post_parse(Json("{\"ast\": \"{nope\"}".into()), |_, _| Verdict::allow()).unwrap_err();
        assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("not JSON")), "{err:?}");
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Config {
            tables: Vec<String>,
        }
        for config in ["{\"tables\": 5}", "{\"tables\": [], \"tabels\": []}", "[]"] {
            let err = Context::new().with_config(config).config::<Config>().unwrap_err();
            assert!(
                matches!(&err, Error::User { code, message } if code == "PLUGIN_CONFIG" && message.starts_with("plugin config")),
                "{err:?}"
            );
        }
        let failed = hooks::pre_parse(Json("{\"sql\": \"x\"}".into()), |_, _| -> Result<Verdict, Error> {
            Err(Error::user("NOPE", "no"))
        });
        assert_eq!(failed.unwrap_err(), Error::user("NOPE", "no"));
    }
}
