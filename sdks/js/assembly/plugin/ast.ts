// The statement AST of docs/plugins.md §4 over JsonValue: tables() and
// addPredicate(), the two helpers every plugin SDK has, ported from the
// Python SDK's (the reference implementation) and checked against the same
// cases (sdks/plugin-ast-cases.json).

import { Kind, Value, raise } from "../index";
import { JsonValue, MAX_DEPTH, lastJsonError, parseJson } from "./json";

const KIND = "node";

/** A node's kind ("select", "table", ...), "" if `node` is not a node. */
export function kind(node: JsonValue | null): string {
  if (node === null || !node.isObject) return "";
  const k = node.get(KIND);
  return k !== null && k.isString ? k.text : "";
}

/** Parses a post-parse AST; null (lastAstError() says why) unless it is a node object. */
export function parseAst(text: string, maxDepth: i32 = MAX_DEPTH): JsonValue | null {
  const ast = parseJson(text, maxDepth);
  if (ast === null) {
    astError = "the AST is not JSON: " + lastJsonError();
    return null;
  }
  if (kind(ast) == "") {
    astError = 'the AST is not a node object (an object with a "node" member)';
    return null;
  }
  astError = "";
  return ast;
}

let astError = "";

export function lastAstError(): string {
  return astError;
}

/** Every object of the tree, breadth first: the engine's order, each node's
 * members in the order the AST lists them. */
export function walk(ast: JsonValue): JsonValue[] {
  const queue: JsonValue[] = [ast];
  for (let i = 0; i < queue.length; i++) {
    const node = queue[i];
    for (let m = 0; m < node.keys.length; m++) {
      if (node.keys[m] == KIND) continue;
      const v = node.items[m];
      if (v.isObject) queue.push(v);
      else if (v.isArray) {
        for (let j = 0; j < v.items.length; j++) if (v.items[j].isObject) queue.push(v.items[j]);
      }
    }
  }
  return queue;
}

// A name node's text, as sqlglot's `name` reads it: "" for anything that is
// not an identifier, variable or literal (a table function).
function text(node: JsonValue | null): string {
  const k = kind(node);
  if (k != "identifier" && k != "var" && k != "literal") return "";
  const t = node!.get("this");
  return t !== null && t.isString ? t.text : "";
}

function member(node: JsonValue | null, name: string): JsonValue | null {
  return node !== null && node.isObject ? node.get(name) : null;
}

// Present and not JSON null (Python's `is not None`).
function present(node: JsonValue | null, name: string): bool {
  const v = member(node, name);
  return v !== null && !v.isNull;
}

// Python's truthiness of a member value.
function truthy(v: JsonValue | null): bool {
  if (v === null || v.isNull) return false;
  if (v.isBool) return v.flag;
  if (v.isString) return v.text.length > 0;
  if (v.isArray || v.isObject) return v.items.length > 0;
  if (v.isNumber) return v.asF64() != 0;
  return true;
}

/** The name of a table node ("" for a table-valued function). */
export function tableName(table: JsonValue): string {
  return text(member(table, "this"));
}

/** The names of every `table` node, lower case, in first-occurrence order,
 * without the names CTEs define (as the context's `tables`). */
export function tables(ast: JsonValue): string[] {
  const nodes = walk(ast);
  const ctes = new Set<string>();
  for (let i = 0; i < nodes.length; i++) {
    const alias = member(nodes[i], "alias");
    if (kind(nodes[i]) == "cte" && kind(alias) == "tablealias") {
      ctes.add(text(member(alias, "this")).toLowerCase());
    }
  }
  const seen = new Set<string>();
  const out = new Array<string>();
  for (let i = 0; i < nodes.length; i++) {
    if (kind(nodes[i]) != "table") continue;
    const name = tableName(nodes[i]).toLowerCase();
    if (name.length > 0 && !ctes.has(name) && !seen.has(name)) {
      seen.add(name);
      out.push(name);
    }
  }
  return out;
}

/** A node of `kind`: add members with set(). */
export function node(k: string): JsonValue {
  return JsonValue.object().set(KIND, JsonValue.string(k));
}

function isPlainName(name: string): bool {
  if (name.length == 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const letter = c == 0x5f || (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a);
    if (!letter && (i == 0 || c < 0x30 || c > 0x39)) return false;
  }
  return true;
}

/** An identifier node, quoted unless it is a plain name. */
export function identifier(name: string): JsonValue {
  return node("identifier")
    .set("this", JsonValue.string(name))
    .set("quoted", JsonValue.bool(!isPlainName(name)));
}

function literalOf(value: Value): JsonValue {
  if (value.kind == Kind.Text) {
    return node("literal")
      .set("this", JsonValue.string(value.text))
      .set("is_string", JsonValue.bool(true));
  }
  const n = value.int;
  // |i64 min| is not an i64: its digits from the unsigned magnitude.
  const digits = n < 0 ? (<u64>0 - <u64>n).toString() : n.toString();
  const lit = node("literal")
    .set("this", JsonValue.string(digits))
    .set("is_string", JsonValue.bool(false));
  return n < 0 ? node("neg").set("this", lit) : lit;
}

function and(left: JsonValue, right: JsonValue): JsonValue {
  return node("and").set("this", left).set("expression", right);
}

function paren(inner: JsonValue): JsonValue {
  return node("paren").set("this", inner);
}

// The identifier of a table's, subquery's or CTE's alias, or null.
function aliasIdentifier(n: JsonValue): JsonValue | null {
  const alias = member(n, "alias");
  if (kind(alias) == "identifier") return alias;
  if (alias !== null && alias.isObject && text(alias.get("this")).length > 0) return alias.get("this");
  return null;
}

// The identifier naming `table` in its statement: `alias` (of parentheses
// around the table alone, which SQLite gives the table: `(orders) AS o`),
// else the table's own alias, else its name as written.
function qualifier(table: JsonValue, alias: JsonValue | null): JsonValue {
  let id = alias !== null ? alias : aliasIdentifier(table);
  if (id === null && kind(member(table, "this")) == "identifier") id = table.get("this");
  if (id === null) return identifier(tableName(table));
  const quoted = member(id, "quoted");
  return node("identifier")
    .set("this", JsonValue.string(text(id)))
    .set("quoted", JsonValue.bool(quoted !== null && quoted.asBool()));
}

// Where a predicate goes: a statement's list of conditions (AND-ed into its
// where at the end), or a join's `on`.
class Target {
  conditions: JsonValue[] | null = null;
  join: JsonValue | null = null;

  add(predicate: JsonValue): void {
    const join = this.join;
    if (join !== null) join.set("on", and(paren(join.get("on")!), predicate));
    else this.conditions!.push(predicate);
  }
}

class Adder {
  table: string;
  column: string;
  value: Value;
  added: i32 = 0;

  constructor(table: string, column: string, value: Value) {
    this.table = table.toLowerCase();
    this.column = column;
    this.value = value;
  }

  // Fresh nodes for every predicate: a later edit of one shows up nowhere else.
  predicate(table: JsonValue, alias: JsonValue | null): JsonValue {
    const column = node("column")
      .set("this", identifier(this.column))
      .set("table", qualifier(table, alias));
    this.added++;
    return node("eq").set("this", column).set("expression", literalOf(this.value));
  }

  // One item of a FROM (a table, a parenthesised group, a derived table,
  // VALUES, a table function) whose predicate goes to `target`, and the
  // joins hung on it, which belong to the same place.
  source(n: JsonValue | null, target: Target, alias: JsonValue | null): void {
    const k = kind(n);
    if (k == "table") {
      if (tableName(n!).toLowerCase() == this.table) target.add(this.predicate(n!, alias));
    } else if (k == "subquery") {
      // Parentheses around a table or a group: (orders), (a JOIN b ON ...),
      // ((a JOIN b ON ...) JOIN c ON ...). Around a query they are a derived
      // table, a statement of its own that the walk reaches.
      const inner = n!.get("this");
      const ik = kind(inner);
      if (ik == "table" || ik == "subquery") {
        if (truthy(member(inner, "joins"))) alias = null; // names the group, not its tables
        else if (alias === null) alias = aliasIdentifier(n!);
        this.source(inner, target, alias);
      }
    }
    this.joins(member(n, "joins"), target);
  }

  // A joins array: a joined item's predicate goes into its join's `on`, so
  // an outer join keeps its meaning; `outer` (the WHERE, or the place of the
  // enclosing group) takes it when the join has no `on` (CROSS, USING,
  // NATURAL) or keeps the joined item's rows whatever the `on` says (RIGHT,
  // FULL).
  joins(joins: JsonValue | null, outer: Target): void {
    if (joins === null || !joins.isArray) return;
    for (let i = 0; i < joins.items.length; i++) {
      const join = joins.items[i];
      if (kind(join) != "join") continue;
      let target = outer;
      const side = join.get("side");
      const upper = side !== null && side.isString ? side.text.toUpperCase() : "";
      const preserved = upper == "RIGHT" || upper == "FULL";
      const on = join.get("on");
      if (on !== null && on.isObject && !preserved) {
        target = new Target();
        target.join = join;
      }
      this.source(join.get("this"), target, null);
    }
  }

  // A select, update or delete: its target, FROM and joins.
  statement(n: JsonValue): void {
    const target = new Target();
    const conditions = new Array<JsonValue>();
    target.conditions = conditions;
    const k = kind(n);
    if (k == "update" || k == "delete") this.source(n.get("this"), target, null);
    const from = n.get("from_");
    if (kind(from) == "from") this.source(from!.get("this"), target, null);
    this.joins(n.get("joins"), target);
    andInto(n, "where", conditions);
  }

  // INSERT ... ON CONFLICT DO UPDATE changes (and RETURNING shows) the row
  // already there, whoever's it is: its WHERE must hold for that row.
  upsert(n: JsonValue): void {
    const conflict = n.get("conflict");
    if (kind(conflict) != "onconflict") return;
    if (text(member(conflict, "action")).toUpperCase() != "DO UPDATE") return;
    let target = n.get("this");
    if (kind(target) == "schema") target = member(target, "this");
    if (kind(target) == "table" && tableName(target!).toLowerCase() == this.table) {
      andInto(conflict!, "where", [this.predicate(target!, null)]);
    }
  }

  // `x IN orders` is `x IN (SELECT * FROM orders)`, written so that the
  // statement pass filters it.
  inTable(n: JsonValue): void {
    const field = n.get("field");
    if (kind(field) != "column" || text(member(field, "this")).toLowerCase() != this.table) return;
    // main.orders.x is not a table name SQLite accepts after IN
    if (present(field, "db") || present(field, "catalog")) return;
    const table = node("table").set("this", field!.get("this")!);
    if (present(field, "table")) table.set("db", field!.get("table")!); // IN main.orders
    n.remove("field");
    const select = node("select")
      .set("expressions", JsonValue.array([node("star")]))
      .set("from_", node("from").set("this", table));
    n.set("query", node("subquery").set("this", select));
  }
}

// AND `conditions` into `n`'s `clause` (a where node, created if absent),
// the existing condition wrapped in a paren.
function andInto(n: JsonValue, clause: string, conditions: JsonValue[]): void {
  if (conditions.length == 0) return;
  let where = n.get(clause);
  let condition: JsonValue;
  let first = 0;
  if (kind(where) == "where" && present(where, "this")) {
    condition = paren(where!.get("this")!);
  } else {
    where = node("where");
    n.set(clause, where);
    condition = conditions[0];
    first = 1;
  }
  for (let i = first; i < conditions.length; i++) condition = and(condition, conditions[i]);
  where!.set("this", condition);
}

/**
 * Restricts every reference to `table` (case-insensitive) in every select,
 * update and delete of the tree with `<qualifier>.<column> = <value>`
 * (`value` a text or integer Value): AND-ed into the statement's where for
 * its from_ table, its update/delete target and joins without `on`; into the
 * join's `on` for a joined table (a LEFT JOIN keeps its meaning). Existing
 * conditions are wrapped in a paren. Changes `ast` in place and returns the
 * number of predicates added; docs/plugins.md §4 lists the shapes it
 * handles (parenthesised joins, RIGHT/FULL joins, `x IN orders`, upserts).
 * Rows an INSERT adds are not filtered: check those separately.
 */
export function addPredicate(ast: JsonValue, table: string, column: string, value: Value): i32 {
  if (value.kind != Kind.Text && value.kind != Kind.Integer) {
    raise("invalid-argument", "addPredicate compares with a text or integer Value");
  }
  const adder = new Adder(table, column, value);
  let nodes = walk(ast);
  for (let i = 0; i < nodes.length; i++) {
    // Before the pass below, which filters the select this makes.
    if (kind(nodes[i]) == "in") adder.inTable(nodes[i]);
  }
  nodes = walk(ast);
  for (let i = 0; i < nodes.length; i++) {
    const k = kind(nodes[i]);
    if (k == "select" || k == "update" || k == "delete") adder.statement(nodes[i]);
    else if (k == "insert") adder.upsert(nodes[i]);
  }
  return adder.added;
}
