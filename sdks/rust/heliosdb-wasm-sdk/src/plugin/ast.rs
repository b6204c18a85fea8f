//! The JSON AST of docs/plugins.md §4 as a `serde_json::Value`: every node is
//! an object whose `"node"` member names its kind (`select`, `table`,
//! `column`, ...) and whose other members are its arguments.
//!
//! [`tables`] and [`add_predicate`] are the two helpers every plugin SDK
//! has, with the same meaning; the rest are small tools to read and build
//! nodes.

use serde_json::{Map, Value};

/// A node's kind (`"select"`, `"table"`, ...); `None` for anything that is
/// not a node.
pub fn kind(node: &Value) -> Option<&str> {
    node.get("node")?.as_str()
}

/// Every node of the tree, breadth first in argument order: the order the
/// engine's own traversal (sqlglot's `walk`) uses.
pub fn nodes(ast: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut queue = std::collections::VecDeque::new();
    if kind(ast).is_some() {
        queue.push_back(ast);
    }
    while let Some(node) = queue.pop_front() {
        out.push(node);
        if let Value::Object(members) = node {
            for (name, value) in members {
                if name == "node" {
                    continue;
                }
                match value {
                    Value::Object(_) if kind(value).is_some() => queue.push_back(value),
                    Value::Array(items) => queue.extend(items.iter().filter(|v| kind(v).is_some())),
                    _ => {}
                }
            }
        }
    }
    out
}

/// Calls `visit` on every node, parents before their arguments. Arguments
/// are visited as they are after `visit` has changed their parent, so nodes
/// that `visit` adds are visited too.
pub fn walk_mut(ast: &mut Value, visit: &mut dyn FnMut(&mut Value)) {
    if kind(ast).is_some() {
        visit(ast);
    }
    match ast {
        Value::Object(members) => {
            for (name, value) in members.iter_mut() {
                if name != "node" {
                    walk_mut(value, visit);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                walk_mut(item, visit);
            }
        }
        _ => {}
    }
}

/// The name a node carries, as the engine reads it: the text of an
/// `identifier`, `var` or `literal`, or of the one its `this` holds.
pub fn name(node: &Value) -> Option<&str> {
    match node.get("this")? {
        Value::String(text) if matches!(kind(node), Some("identifier" | "var" | "literal")) => Some(text),
        Value::String(_) => None,
        inner => match kind(inner)? {
            "identifier" | "var" | "literal" => inner.get("this")?.as_str(),
            _ => None,
        },
    }
}

/// The name of a `table` node as written (`None` for a table-valued
/// function such as `pragma_table_info('t')`).
pub fn table_name(table: &Value) -> Option<&str> {
    if kind(table) != Some("table") {
        return None;
    }
    name(table).filter(|n| !n.is_empty())
}

/// The alias a `table` or `subquery` node is given (`FROM orders AS o`).
pub fn alias(node: &Value) -> Option<&str> {
    name(node.get("alias")?)
}

/// **tables(ast)**: the names of every `table` node, lower case, in first
/// occurrence order, without the names a `cte` defines (what the context's
/// `tables` holds).
///
/// CTE names are left out everywhere in the statement, so a real table
/// that some CTE shadows elsewhere is left out too: do not base access
/// decisions on this list alone.
pub fn tables(ast: &Value) -> Vec<String> {
    let all = nodes(ast);
    let ctes: Vec<String> = all
        .iter()
        .filter(|n| kind(n) == Some("cte"))
        .filter_map(|cte| alias(cte).or_else(|| name(cte)))
        .map(str::to_lowercase)
        .collect();
    let mut out: Vec<String> = Vec::new();
    for table in all.iter().filter(|n| kind(n) == Some("table")) {
        let Some(name) = table_name(table) else { continue };
        let name = name.to_lowercase();
        if !ctes.contains(&name) && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// A value for [`add_predicate`]: a string or an integer literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Literal {
    Text(String),
    Integer(i64),
}

impl From<&str> for Literal {
    fn from(v: &str) -> Self {
        Literal::Text(v.to_owned())
    }
}

impl From<String> for Literal {
    fn from(v: String) -> Self {
        Literal::Text(v)
    }
}

impl From<&String> for Literal {
    fn from(v: &String) -> Self {
        Literal::Text(v.clone())
    }
}

impl From<i64> for Literal {
    fn from(v: i64) -> Self {
        Literal::Integer(v)
    }
}

impl From<i32> for Literal {
    fn from(v: i32) -> Self {
        Literal::Integer(v.into())
    }
}

/// **add_predicate(ast, table, column, value)**: for every `select`,
/// `update` and `delete` node anywhere in the tree (subqueries, CTEs, both
/// sides of a `union` included), and for every reference to `table`
/// (case-insensitive) in that node's own `from_`, `joins` or target (`this`
/// of `update`/`delete`), adds `<qualifier>.<column> = <value>`, the
/// qualifier being the reference's alias, else the table name. The
/// predicate is AND-ed into the node's `where` (created when absent) for the
/// `from_` table, the update/delete target and joins without `on`, and into
/// the join's `on` for a joined table with one, so a `LEFT JOIN` keeps its
/// meaning. Existing conditions are wrapped in a `paren` so `OR`s keep their
/// scope. Changes `ast` in place, exactly as the Python SDK's
/// `add_predicate` (the reference implementation) does, and returns how
/// many predicates it added.
///
/// Join groups count as the statement's own: the joins sqlglot hangs on the
/// `from_` table of `UPDATE ... FROM a JOIN b`, and parenthesised joins
/// (`FROM (a JOIN b ON ...)`, `JOIN (b JOIN c ON ...) ON ...`, nested ones,
/// groups starting with a derived table, `VALUES` or a table function),
/// which the tree holds as a `subquery` around a table or group carrying
/// `joins`. A group's first item takes the condition of the group's own
/// place (the `where`, or the `on` of the join that brings the group in).
/// Parentheses around one table give it their alias (SQLite: `(orders) AS
/// o` is orders named `o`; the outermost alias when nested). The preserved
/// side of a `RIGHT` or `FULL` join is filtered in that place too, never in
/// the join's `on`, which cannot remove its rows.
///
/// Also covered: `x IN orders` (SQLite's bare-table `IN`), rewritten as
/// `x IN (SELECT * FROM orders WHERE ...)`, and the row an `INSERT ... ON
/// CONFLICT DO UPDATE` would change (the predicate goes into the upsert's
/// `where`). Rows an `INSERT` adds are not filtered: check those separately.
pub fn add_predicate(ast: &mut Value, table: &str, column: &str, value: impl Into<Literal>) -> usize {
    let mut adder = Adder { table: table.to_lowercase(), column, value: value.into(), added: 0 };
    // `x IN orders` first: the statement pass below filters the select it
    // becomes.
    each_object(ast, &mut |node| {
        if kind(node) == Some("in") {
            adder.in_table(node);
        }
    });
    each_object(ast, &mut |node| match kind(node) {
        Some("select" | "update" | "delete") => adder.statement(node),
        Some("insert") => adder.upsert(node),
        _ => {}
    });
    adder.added
}

/// Calls `visit` on every object of the tree (the objects among an object's
/// members and directly in its arrays, as the Python SDK's walk reaches
/// them), parents before their members, which are read after `visit` has
/// changed their parent.
fn each_object(value: &mut Value, visit: &mut dyn FnMut(&mut Value)) {
    if !value.is_object() {
        return;
    }
    visit(value);
    let Value::Object(members) = value else { return };
    for (name, member) in members.iter_mut() {
        if name == "node" {
            continue;
        }
        match member {
            Value::Object(_) => each_object(member, visit),
            Value::Array(items) => {
                for item in items.iter_mut() {
                    each_object(item, visit);
                }
            }
            _ => {}
        }
    }
}

/// The text of a name node as the engine's `name` reads it: an
/// `identifier`'s, a `var`'s or a `literal`'s; "" for anything else (the
/// function of a table-valued function).
fn text(node: Option<&Value>) -> &str {
    match node {
        Some(n) if matches!(kind(n), Some("identifier" | "var" | "literal")) => {
            n.get("this").and_then(Value::as_str).unwrap_or("")
        }
        _ => "",
    }
}

/// Whether a member is there and not null.
fn present(node: &Value, name: &str) -> bool {
    node.get(name).is_some_and(|v| !v.is_null())
}

/// Whether a member counts as true in Python: present, and not null,
/// false, zero or empty.
fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_none_or(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(items)) => !items.is_empty(),
        Some(Value::Object(members)) => !members.is_empty(),
    }
}

/// The identifier of a table's, subquery's or CTE's alias.
fn alias_identifier(node: &Value) -> Option<&Value> {
    let alias = node.get("alias")?;
    if kind(alias) == Some("identifier") {
        return Some(alias);
    }
    let this = alias.get("this")?;
    (!text(Some(this)).is_empty()).then_some(this)
}

/// The identifier naming `table` in its statement: `alias` (the alias of
/// parentheses around the table alone, which SQLite gives the table:
/// `(orders) AS o`), else the table's own alias, else its name as written.
fn qualifier(table: &Value, alias: Option<&Value>) -> Value {
    let ident = alias
        .or_else(|| alias_identifier(table))
        .or_else(|| table.get("this").filter(|t| kind(t) == Some("identifier")));
    match ident {
        Some(ident) => node(
            "identifier",
            [
                ("this", Value::String(text(Some(ident)).to_owned())),
                ("quoted", Value::Bool(ident.get("quoted") == Some(&Value::Bool(true)))),
            ],
        ),
        None => identifier(text(table.get("this"))),
    }
}

/// One add_predicate run: where each reference's predicate goes.
struct Adder<'a> {
    /// Lower case.
    table: String,
    column: &'a str,
    value: Literal,
    added: usize,
}

impl Adder<'_> {
    fn names_table(&self, table: &Value) -> bool {
        text(table.get("this")).to_lowercase() == self.table
    }

    /// A fresh predicate for `table`, named `alias` when parentheses
    /// around it give it one.
    fn predicate(&mut self, table: &Value, alias: Option<&Value>) -> Value {
        self.added += 1;
        eq(column_ref(Some(qualifier(table, alias)), self.column), literal(&self.value))
    }

    /// One item of a FROM (a table, a parenthesised group, a derived table,
    /// VALUES, a table function): its predicate, and those of joined items
    /// without a join `on` of their own to take them, go to `place` (the
    /// `where`, or the `on` of the join that brings the item in).
    fn source(&mut self, item: &mut Value, alias: Option<Value>, place: &mut Vec<Value>) {
        match kind(item) {
            Some("table") if self.names_table(item) => {
                let predicate = self.predicate(item, alias.as_ref());
                place.push(predicate);
            }
            Some("subquery") => {
                // Parentheses around a table or a group: (orders), (a JOIN
                // b ON ...), ((a JOIN b ON ...) JOIN c ON ...). Around a
                // query they are a derived table, a statement of its own
                // that the walk reaches.
                let own = alias_identifier(item).cloned();
                if let Some(inner) = item.get_mut("this")
                    && matches!(kind(inner), Some("table" | "subquery"))
                {
                    let alias = if truthy(inner.get("joins")) {
                        None // names the group, not its tables
                    } else {
                        alias.or(own)
                    };
                    self.source(inner, alias, place);
                }
            }
            _ => {}
        }
        if let Some(joins) = item.get_mut("joins") {
            self.joins(joins, place);
        }
    }

    /// A joins array: a joined item's predicate goes into its join's `on`,
    /// so an outer join keeps its meaning; `place` (the `where`, or the
    /// place of the enclosing group) takes it when the join has no `on`
    /// (CROSS, USING, NATURAL) or keeps the joined item's rows whatever the
    /// `on` says (RIGHT, FULL).
    fn joins(&mut self, joins: &mut Value, place: &mut Vec<Value>) {
        let Value::Array(joins) = joins else { return };
        for join in joins.iter_mut().filter(|j| kind(j) == Some("join")) {
            let side = join.get("side").and_then(Value::as_str).map(str::to_uppercase);
            let preserved = matches!(side.as_deref(), Some("RIGHT" | "FULL"));
            let into_on = join.get("on").is_some_and(Value::is_object) && !preserved;
            let mut found = Vec::new();
            if let Some(item) = join.get_mut("this") {
                self.source(item, None, &mut found);
            }
            if into_on {
                for predicate in found {
                    let on = &mut join["on"];
                    *on = and(paren(on.take()), predicate);
                }
            } else {
                place.extend(found);
            }
        }
    }

    /// A select, update or delete: its target, FROM and joins.
    fn statement(&mut self, statement: &mut Value) {
        let mut conditions = Vec::new();
        if matches!(kind(statement), Some("update" | "delete"))
            && let Some(target) = statement.get_mut("this")
        {
            self.source(target, None, &mut conditions);
        }
        if let Some(from) = statement.get_mut("from_").filter(|f| kind(f) == Some("from"))
            && let Some(item) = from.get_mut("this")
        {
            self.source(item, None, &mut conditions);
        }
        if let Some(joins) = statement.get_mut("joins") {
            self.joins(joins, &mut conditions);
        }
        and_into(statement, "where", conditions);
    }

    /// `INSERT ... ON CONFLICT DO UPDATE` changes (and `RETURNING` shows)
    /// the row already there, whoever's it is: its `where` must hold for
    /// that row.
    fn upsert(&mut self, insert: &mut Value) {
        let Some(conflict) = insert.get("conflict") else { return };
        if kind(conflict) != Some("onconflict") || text(conflict.get("action")).to_uppercase() != "DO UPDATE" {
            return;
        }
        let mut target = insert.get("this");
        if target.is_some_and(|t| kind(t) == Some("schema")) {
            target = target.and_then(|t| t.get("this"));
        }
        let Some(target) = target.filter(|t| kind(t) == Some("table") && self.names_table(t)) else { return };
        let predicate = self.predicate(target, None);
        and_into(&mut insert["conflict"], "where", vec![predicate]);
    }

    /// `x IN orders` is `x IN (SELECT * FROM orders)`, written so that the
    /// statement pass filters it.
    fn in_table(&self, expr: &mut Value) {
        let Some(field) = expr.get("field") else { return };
        if kind(field) != Some("column") || text(field.get("this")).to_lowercase() != self.table {
            return;
        }
        if present(field, "db") || present(field, "catalog") {
            return; // not a table name SQLite accepts after IN
        }
        let Some(members) = expr.as_object_mut() else { return };
        let Some(mut field) = members.shift_remove("field") else { return };
        let mut table = node("table", [("this", field["this"].take())]);
        if present(&field, "table") {
            table["db"] = field["table"].take(); // IN main.orders
        }
        let select = node(
            "select",
            [("expressions", Value::Array(vec![node("star", [])])), ("from_", node("from", [("this", table)]))],
        );
        members.insert("query".into(), node("subquery", [("this", select)]));
    }
}

/// ANDs `conditions` into `parent`'s `clause` (a `where`, created when
/// absent), the existing condition wrapped in a `paren`.
fn and_into(parent: &mut Value, clause: &str, conditions: Vec<Value>) {
    if conditions.is_empty() {
        return;
    }
    let Some(members) = parent.as_object_mut() else { return };
    let mut conditions = conditions.into_iter();
    let existing =
        members.get_mut(clause).filter(|w| kind(w) == Some("where") && w.get("this").is_some_and(|c| !c.is_null()));
    let (mut condition, place) = match existing {
        Some(place) => (paren(place["this"].take()), place),
        None => {
            let first = conditions.next().expect("not empty");
            members.insert(clause.into(), node("where", []));
            (first, members.get_mut(clause).expect("inserted"))
        }
    };
    for predicate in conditions {
        condition = and(condition, predicate);
    }
    place["this"] = condition;
}

/// ANDs `predicate` into `statement`'s `where`, creating it when absent.
pub fn and_into_where(statement: &mut Value, predicate: Value) {
    let Some(members) = statement.as_object_mut() else { return };
    match members.get_mut("where") {
        Some(clause) if clause.get("this").is_some_and(|c| !c.is_null()) => {
            let condition = &mut clause["this"];
            *condition = and(paren(condition.take()), predicate);
        }
        _ => {
            members.insert("where".into(), node("where", [("this", predicate)]));
        }
    }
}

/// A node of kind `kind` with these arguments.
pub fn node<'a>(kind: &str, args: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    let mut members = Map::new();
    members.insert("node".into(), Value::String(kind.into()));
    for (name, value) in args {
        members.insert(name.into(), value);
    }
    Value::Object(members)
}

/// An identifier, quoted when it is not a plain `[A-Za-z_][A-Za-z0-9_]*`.
pub fn identifier(name: &str) -> Value {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    node("identifier", [("this", Value::String(name.into())), ("quoted", Value::Bool(!plain))])
}

/// A column, optionally qualified by a table or alias identifier node.
pub fn column_ref(qualifier: Option<Value>, column: &str) -> Value {
    let mut col = node("column", [("this", identifier(column))]);
    if let Some(q) = qualifier {
        col["table"] = q;
    }
    col
}

/// A string (`is_string` true) or integer (`is_string` false) literal; a
/// negative integer is a `neg` of its digits, as the parser reads `-5`.
pub fn literal(value: &Literal) -> Value {
    let (text, is_string) = match value {
        Literal::Text(s) => (s.clone(), true),
        Literal::Integer(i) => (i.unsigned_abs().to_string(), false),
    };
    let literal = node("literal", [("this", Value::String(text)), ("is_string", Value::Bool(is_string))]);
    match value {
        Literal::Integer(i) if *i < 0 => node("neg", [("this", literal)]),
        _ => literal,
    }
}

pub fn eq(left: Value, right: Value) -> Value {
    node("eq", [("this", left), ("expression", right)])
}

pub fn and(left: Value, right: Value) -> Value {
    node("and", [("this", left), ("expression", right)])
}

pub fn paren(inner: Value) -> Value {
    node("paren", [("this", inner)])
}

#[cfg(test)]
mod tests;
