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
/// of `update`/`delete`; also the joins sqlglot hangs on the `from_` table
/// in `UPDATE ... FROM a JOIN b`), adds `<qualifier>.<column> = <value>`, the
/// qualifier being the reference's alias, else the table name. The
/// predicate is AND-ed into the node's `where` (created when absent) for the
/// `from_` table, the update/delete target and joins without `on`, and into
/// the join's `on` for a joined table with one, so a `LEFT JOIN` keeps its
/// meaning. Existing conditions are wrapped in a `paren` so `OR`s keep their
/// scope. Returns how many predicates it added.
///
/// Mind what an `on` predicate does not do: the preserved side of a `RIGHT`
/// or `FULL` join keeps rows that match no `on`, so a table joined that way
/// is not filtered. References the rules above do not cover (a parenthesised
/// join `FROM (a JOIN b ON ...)`, an `INSERT` target) get no predicate;
/// compare the count with the references you expect.
pub fn add_predicate(ast: &mut Value, table: &str, column: &str, value: impl Into<Literal>) -> usize {
    let table = table.to_lowercase();
    let value = value.into();
    let mut added = 0;
    walk_mut(ast, &mut |node| {
        if matches!(kind(node), Some("select" | "update" | "delete")) {
            added += filter_statement(node, &table, column, &value);
        }
    });
    added
}

/// Where a predicate for one reference goes.
enum Target {
    Where,
    /// The `on` of the statement's own join `i`.
    JoinOn(usize),
    /// The `on` of join `i` of the `from_` table: sqlglot hangs the joins of
    /// `UPDATE ... FROM a JOIN b` on the table `a`.
    FromJoinOn(usize),
}

fn filter_statement(statement: &mut Value, table: &str, column: &str, value: &Literal) -> usize {
    let is_dml = matches!(kind(statement), Some("update" | "delete"));
    let mut found: Vec<(Target, Value)> = Vec::new();
    let mut consider = |reference: Option<&Value>, target: Target| {
        if let Some(reference) = reference
            && table_name(reference).is_some_and(|n| n.to_lowercase() == table)
        {
            found.push((target, qualifier(reference)));
        }
    };
    let has_on = |join: &Value| join.get("on").is_some_and(|on| !on.is_null());
    if is_dml {
        consider(statement.get("this"), Target::Where);
    }
    let source = statement.get("from_").and_then(|f| f.get("this")).filter(|t| kind(t) == Some("table"));
    consider(source, Target::Where);
    if let Some(Value::Array(joins)) = source.and_then(|t| t.get("joins")) {
        for (i, join) in joins.iter().enumerate() {
            consider(join.get("this"), if has_on(join) { Target::FromJoinOn(i) } else { Target::Where });
        }
    }
    if let Some(Value::Array(joins)) = statement.get("joins") {
        for (i, join) in joins.iter().enumerate() {
            consider(join.get("this"), if has_on(join) { Target::JoinOn(i) } else { Target::Where });
        }
    }
    let count = found.len();
    for (target, qualifier) in found {
        let predicate = eq(column_ref(Some(qualifier), column), literal(value));
        let on = match target {
            Target::Where => {
                and_into_where(statement, predicate);
                continue;
            }
            Target::JoinOn(i) => &mut statement["joins"][i]["on"],
            Target::FromJoinOn(i) => &mut statement["from_"]["this"]["joins"][i]["on"],
        };
        *on = and(paren(on.take()), predicate);
    }
    count
}

/// The identifier that names a reference in its statement: its alias, else
/// the table's own identifier (as written, quoting included).
fn qualifier(reference: &Value) -> Value {
    let alias = reference.get("alias").and_then(|a| a.get("this")).filter(|i| kind(i) == Some("identifier"));
    match alias {
        Some(ident) => ident.clone(),
        None => match reference.get("this") {
            Some(ident) if kind(ident) == Some("identifier") => ident.clone(),
            _ => identifier(table_name(reference).unwrap_or_default()),
        },
    }
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
