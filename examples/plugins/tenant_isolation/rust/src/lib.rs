//! Tenant isolation: a `post-parse` hook that confines every statement on a
//! multi-tenant table to the session's tenant (README.md).
//!
//! The rule is fail-closed throughout: a statement is rewritten only when
//! every reference to a multi-tenant table got its predicate, and anything
//! the plugin cannot prove safe is rejected with SQLSTATE 42501 rather than
//! let through.

use heliosdb_wasm_sdk::plugin::serde_json::Value;
use heliosdb_wasm_sdk::plugin::{Context, Verdict, ast};
use heliosdb_wasm_sdk::{Error, heliosdb_plugin};
use serde::Deserialize;

/// insufficient_privilege
const DENIED: &str = "42501";

// A misspelt key must not silently fall back to a default (and so to a
// weaker rule): the config fails, and with it every statement.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The multi-tenant tables.
    tables: Vec<String>,
    /// The column that holds a row's tenant in each of them.
    #[serde(default = "default_column")]
    column: String,
    /// The session variable (else connection parameter) naming the tenant.
    #[serde(default = "default_variable")]
    variable: String,
}

fn default_column() -> String {
    "tenant_id".into()
}

fn default_variable() -> String {
    "tenant".into()
}

#[heliosdb_plugin(post_parse)]
fn post_parse(ctx: &Context, ast: &mut Value) -> Result<Verdict, Error> {
    let config: Config = ctx.config()?;
    let rules = Rules::new(&config);
    Ok(match rules.apply(ctx, ast) {
        Ok(true) => Verdict::rewrite(ast),
        Ok(false) => Verdict::allow(),
        Err(message) => Verdict::reject(DENIED, message),
    })
}

struct Rules<'a> {
    /// Lower case, without duplicates: add_predicate runs once per name, and
    /// a name listed twice would count its references twice.
    tables: Vec<String>,
    column: &'a str,
    variable: &'a str,
}

/// Why a statement is refused; becomes the rejection's message.
type Refusal = String;

impl<'a> Rules<'a> {
    fn new(config: &'a Config) -> Self {
        let mut tables: Vec<String> = Vec::new();
        for t in &config.tables {
            let t = t.to_lowercase();
            if !tables.contains(&t) {
                tables.push(t);
            }
        }
        Rules { tables, column: &config.column, variable: &config.variable }
    }

    fn guarded(&self, table: &Value) -> bool {
        ast::table_name(table).is_some_and(|n| self.names_table(n))
    }

    fn names_table(&self, name: &str) -> bool {
        self.tables.contains(&name.to_lowercase())
    }

    fn is_tenant_column(&self, name: Option<&str>) -> bool {
        name.is_some_and(|n| n.eq_ignore_ascii_case(self.column))
    }

    /// Ok(true): the AST was changed and must be returned; Ok(false): let
    /// the statement through as it is.
    fn apply(&self, ctx: &Context, tree: &mut Value) -> Result<bool, Refusal> {
        // Every `table` node counts, CTE references included: the context's
        // `tables` (and ast::tables) leave out names a CTE defines, which
        // would also hide a real table of that name elsewhere in the
        // statement. A CTE named like a multi-tenant table is filtered as
        // well, so it must expose the tenant column.
        let references = ast::nodes(tree).into_iter().filter(|n| self.guarded(n)).count();
        let kind = ast::kind(tree).unwrap_or("").to_owned();
        if !matches!(
            kind.as_str(),
            "select" | "union" | "intersect" | "except" | "insert" | "update" | "delete"
        ) {
            if references > 0 || self.mentioned(tree) {
                // The parser keeps statements it does not know as a
                // `command` whose text starts with the keyword.
                let keyword = match kind.as_str() {
                    "command" => tree.get("this").and_then(Value::as_str).unwrap_or("command"),
                    other => other,
                };
                return Err(format!(
                    "tenant isolation: only SELECT, INSERT, UPDATE and DELETE may touch the \
                     multi-tenant tables ({}), not {}",
                    self.tables.join(", "),
                    keyword.to_uppercase()
                ));
            }
            return Ok(false);
        }
        // `x IN orders` reads the table through a name the parser keeps as
        // a column: no `table` node to count, and nowhere for a predicate.
        let bare_in = ast::nodes(tree).into_iter().any(|n| {
            ast::kind(n) == Some("in")
                && n.get("field").and_then(ast::name).is_some_and(|t| self.names_table(t))
        });
        if bare_in {
            return Err("tenant isolation: write IN (SELECT ... FROM <table>), not IN <table>, \
                        for a multi-tenant table"
                .to_owned());
        }
        if references == 0 {
            return Ok(false);
        }
        let tenant = ctx
            .session(self.variable)
            .or_else(|| ctx.connection(self.variable))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                format!(
                    "tenant isolation: no tenant for this session (set the session variable \
                     {0:?} or connect with the parameter {0:?})",
                    self.variable
                )
            })?
            .to_owned();

        let mut expected = references;
        let mut changed = false;
        if kind == "insert" {
            let (target_guarded, upsert_filtered) = self.check_insert(tree, &tenant)?;
            expected -= usize::from(target_guarded);
            changed |= upsert_filtered;
        }
        for node in ast::nodes(tree) {
            match ast::kind(node) {
                Some("update") if node.get("this").is_some_and(|t| self.guarded(t)) => {
                    self.check_members(
                        node,
                        "UPDATE",
                        &[
                            "this",
                            "expressions",
                            "from_",
                            "joins",
                            "where",
                            "with_",
                            "returning",
                            "order",
                            "limit",
                        ],
                    )?;
                    self.check_assignments(node, "UPDATE")?;
                }
                Some("delete") if node.get("this").is_some_and(|t| self.guarded(t)) => {
                    self.check_members(
                        node,
                        "DELETE",
                        &["this", "where", "with_", "returning", "order", "limit"],
                    )?;
                }
                Some("join") if node.get("this").is_some_and(|t| self.guarded(t)) => {
                    // The predicate of a joined table goes into its ON, and
                    // the preserved side of a RIGHT or FULL join keeps rows
                    // that match no ON: they would be another tenant's.
                    let side = node.get("side").and_then(Value::as_str).unwrap_or("");
                    if side.eq_ignore_ascii_case("right") || side.eq_ignore_ascii_case("full") {
                        return Err(format!(
                            "tenant isolation: a multi-tenant table cannot be joined with {} JOIN \
                             (it would keep the other tenants' rows); use JOIN or LEFT JOIN",
                            side.to_uppercase()
                        ));
                    }
                }
                _ => {}
            }
        }

        let added: usize =
            self.tables.iter().map(|t| ast::add_predicate(tree, t, self.column, tenant.as_str())).sum();
        if added != expected {
            return Err(format!(
                "tenant isolation: a multi-tenant table is referenced where it cannot be filtered \
                 ({added} of {expected} references could be), such as inside a parenthesised join"
            ));
        }
        Ok(changed || added > 0)
    }

    /// INSERT into a multi-tenant table must give the session tenant, as a
    /// literal, in every row: (target is multi-tenant, upsert was filtered).
    fn check_insert(&self, insert: &mut Value, tenant: &str) -> Result<(bool, bool), Refusal> {
        let target = match insert.get("this") {
            Some(schema) if ast::kind(schema) == Some("schema") => schema.get("this"),
            other => other,
        };
        let Some(target) = target.filter(|t| self.guarded(t)) else { return Ok((false, false)) };
        let table = ast::table_name(target).unwrap_or_default().to_owned();
        let qualifier = ast::alias(target).unwrap_or(&table).to_owned();
        let column = self.column;
        if insert.get("default").and_then(Value::as_bool) == Some(true) {
            return Err(format!("tenant isolation: INSERT INTO {table} DEFAULT VALUES cannot set {column}"));
        }
        if let Some(alternative) = insert.get("alternative").and_then(Value::as_str) {
            // OR REPLACE deletes the conflicting row, whoever's it is.
            if !["IGNORE", "ABORT", "FAIL", "ROLLBACK"].iter().any(|a| alternative.eq_ignore_ascii_case(a)) {
                return Err(format!("tenant isolation: INSERT OR {alternative} INTO {table} is not allowed"));
            }
        }
        self.check_members(
            insert,
            "INSERT",
            &["this", "expression", "alternative", "conflict", "returning", "with_"],
        )?;

        let columns: Vec<&str> = match insert.get("this") {
            Some(schema) if ast::kind(schema) == Some("schema") => schema
                .get("expressions")
                .and_then(Value::as_array)
                .map(|cols| cols.iter().map(|c| ast::name(c).unwrap_or("")).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let positions: Vec<usize> = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| self.is_tenant_column(Some(c)))
            .map(|(i, _)| i)
            .collect();
        if positions.is_empty() {
            return Err(format!(
                "tenant isolation: INSERT INTO {table} must name the column {column} and give it {tenant:?}"
            ));
        }
        let source = insert.get("expression");
        let Some(rows) = source.filter(|s| ast::kind(s) == Some("values")).and_then(|v| v.get("expressions"))
        else {
            return Err(format!(
                "tenant isolation: INSERT INTO {table} must take its rows from VALUES (INSERT ... SELECT is not allowed)"
            ));
        };
        for row in rows.as_array().into_iter().flatten() {
            let items =
                row.get("expressions").and_then(Value::as_array).filter(|_| ast::kind(row) == Some("tuple"));
            let Some(items) = items.filter(|items| items.len() == columns.len()) else {
                return Err(format!(
                    "tenant isolation: INSERT INTO {table}: a VALUES row does not match the columns"
                ));
            };
            for &i in &positions {
                let value = &items[i];
                match ast::kind(value) {
                    Some("literal") if value.get("this").and_then(Value::as_str) == Some(tenant) => {}
                    Some("placeholder") => {
                        return Err(format!(
                            "tenant isolation: {column} must be written as the literal {tenant:?}: the plugin \
                             sees the statement before its parameters are bound"
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "tenant isolation: INSERT INTO {table}: every row must have {column} = {tenant:?}"
                        ));
                    }
                }
            }
        }

        let Some(conflict) = insert.get_mut("conflict").filter(|c| !c.is_null()) else {
            return Ok((true, false));
        };
        self.check_members(
            conflict,
            "ON CONFLICT",
            &["expressions", "action", "conflict_keys", "index_predicate", "where"],
        )?;
        let action = conflict.get("action").and_then(ast::name).unwrap_or("").to_uppercase();
        match action.as_str() {
            "DO NOTHING" => Ok((true, false)),
            "DO UPDATE" => {
                self.check_assignments(conflict, "ON CONFLICT DO UPDATE")?;
                // The conflicting row may be another tenant's: add_predicate
                // puts the tenant into the upsert's WHERE, so such a row is
                // left alone, as DO NOTHING would; that predicate counts for
                // the target reference.
                Ok((false, false))
            }
            other => Err(format!("tenant isolation: ON CONFLICT {other} on {table} is not allowed")),
        }
    }

    /// Assignments of an UPDATE (or upsert) must leave the tenant column alone.
    fn check_assignments(&self, node: &Value, what: &str) -> Result<(), Refusal> {
        for assignment in node.get("expressions").and_then(Value::as_array).into_iter().flatten() {
            let target = assignment.get("this").filter(|_| ast::kind(assignment) == Some("eq"));
            let columns: Vec<&Value> = match target {
                Some(t) if ast::kind(t) == Some("column") => vec![t],
                Some(t) if ast::kind(t) == Some("tuple") => t
                    .get("expressions")
                    .and_then(Value::as_array)
                    .map(|c| c.iter().collect())
                    .unwrap_or_default(),
                _ => return Err(format!("tenant isolation: {what}: unsupported assignment")),
            };
            for column in columns {
                if ast::kind(column) != Some("column") || self.is_tenant_column(ast::name(column)) {
                    return Err(format!("tenant isolation: {what} may not assign {}", self.column));
                }
            }
        }
        Ok(())
    }

    /// Refuses forms of a statement on a multi-tenant table that the rules
    /// do not know: any member outside `known` must be absent, null or false.
    fn check_members(&self, node: &Value, what: &str, known: &[&str]) -> Result<(), Refusal> {
        for (name, value) in node.as_object().into_iter().flatten() {
            if name == "node" || known.contains(&name.as_str()) {
                continue;
            }
            if !matches!(value, Value::Null | Value::Bool(false)) {
                return Err(format!(
                    "tenant isolation: {what} with {name} is not supported on multi-tenant tables"
                ));
            }
        }
        Ok(())
    }

    /// Whether any text in a statement names a multi-tenant table as a
    /// word: statements the parser keeps as raw text (`ALTER TABLE`,
    /// `CREATE TRIGGER`, `EXPLAIN`, `REPLACE INTO`) and PRAGMA arguments
    /// have no `table` nodes to count.
    fn mentioned(&self, tree: &Value) -> bool {
        fn texts<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
            match value {
                Value::String(s) => out.push(s),
                Value::Array(items) => items.iter().for_each(|v| texts(v, out)),
                Value::Object(members) => members.values().for_each(|v| texts(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        texts(tree, &mut all);
        all.iter().any(|text| self.tables.iter().any(|t| names_word(&text.to_lowercase(), t)))
    }
}

/// Whether `word` occurs in `text` between non-identifier characters.
fn names_word(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back().is_none_or(|c| !is_ident(c));
        let after = text[at + word.len()..].chars().next().is_none_or(|c| !is_ident(c));
        before && after
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use heliosdb_wasm_sdk::plugin::Action;
    use heliosdb_wasm_sdk::plugin::serde_json::json;

    fn ctx() -> Context {
        Context::new().with_config(r#"{"tables": ["orders"]}"#)
    }

    /// `SELECT * FROM orders`, as the engine's sqlast gives it.
    fn select_orders() -> Value {
        json!({"node": "select", "expressions": [{"node": "star"}],
               "from_": {"node": "from", "this": {"node": "table",
                   "this": {"node": "identifier", "this": "orders", "quoted": false}}}})
    }

    #[test]
    fn the_session_tenant_is_added() {
        let mut tree = select_orders();
        let verdict = post_parse(&ctx().with_session("tenant", "acme"), &mut tree).unwrap();
        let Action::Rewrite(text) = verdict.action else { panic!("{verdict:?}") };
        let rewritten: Value = heliosdb_wasm_sdk::plugin::serde_json::from_str(&text).unwrap();
        assert_eq!(
            rewritten["where"]["this"]["expression"],
            json!({"node": "literal", "this": "acme", "is_string": true})
        );
    }

    #[test]
    fn no_tenant_is_a_rejection() {
        let verdict = post_parse(&ctx(), &mut select_orders()).unwrap();
        assert!(matches!(verdict.action, Action::Reject(r) if r.sqlstate == "42501"));
    }

    #[test]
    fn words_are_found_only_whole() {
        assert!(names_word(" table orders add column x", "orders"));
        assert!(names_word("\"orders\"", "orders"));
        assert!(names_word("main.orders", "orders"));
        assert!(!names_word("preorders", "orders"));
        assert!(!names_word("orders_archive", "orders"));
        assert!(!names_word("orders$", "orders"));
        assert!(names_word("my orders", "my orders"));
    }
}
