// Query-hook plugins in AssemblyScript (docs/plugins.md): typed hooks over
// the JSON requests and verdicts that Basic-ABI plugin modules exchange with
// the engine, helpers over the statement AST, SHA-256 and the host's
// rate-limit counter.
//
// A Basic-ABI plugin exports each hook as a procedure (request JSON)
// RETURNS JSON named pre_parse, post_parse, pre_execution or post_execution
// (`heliosdb-wasm build` names the export after the function, in
// snake_case). Each export is one line that hands the request to the SDK
// with the typed hook:
//
//   import { Json } from "heliosdb";
//   import { Context, Verdict, allow, handlePreParse, reject } from "heliosdb/plugin";
//
//   export function pre_parse(request: Uint8Array): Json {
//     return handlePreParse(request, authenticate);
//   }
//
//   function authenticate(ctx: Context, sql: string): Verdict {
//     const token = ctx.connectionParam("authorization");
//     if (token === null) return reject("28000", "authentication required");
//     return allow().setSession("auth.role", "analyst");
//   }
//
// The request arrives as its bytes (to the engine a BLOB and a JSON argument
// are the same pointer and length), so the SDK checks that they are UTF-8
// before anything reads them. The handle functions decode the request,
// call the hook, check that its verdict is one the stage allows and encode
// it. A hook fails the statement with raise(code, message) (SQLSTATE 38000
// for the client); a request that does not decode fails with
// invalid-argument, a verdict its stage does not allow with PLUGIN_VERDICT.

import { Json, Kind, Value, raise } from "../index";
import {
  JsonValue,
  JsonWriter,
  Scanner,
  Utf16Builder,
  decodeUtf8,
  formatReal,
  invalidUtf8,
  lastJsonError,
  parseJson,
  quote,
  utf8,
} from "./json";
import { lastAstError, parseAst } from "./ast";

export * from "./json";
export * from "./ast";
export * from "./sha256";

/** The user-error code of a config that does not decode. */
export const CODE_CONFIG = "PLUGIN_CONFIG";
/** The user-error code of a verdict its stage does not allow. */
export const CODE_VERDICT = "PLUGIN_VERDICT";

// --- the context -------------------------------------------------------------------

/** A (name, value) pair: a connection parameter or a session variable. */
export class Pair {
  constructor(
    public name: string,
    public value: string,
  ) {}
}

/** What every hook learns about the statement and its session (WIT
 * plugin-types.context, docs/plugins.md §2). */
export class Context {
  /** Unique per statement in the server process; also in the logs. */
  queryId: u64 = 0;
  /** The startup parameters user, database and application_name. */
  user: string = "";
  database: string = "";
  applicationName: string = "";
  /** The export whose request this context came with (for error messages). */
  hook: string = "hook";
  private parsedConfig: JsonValue | null = null;

  // The members below are read from the request when first used (a session
  // holds some thirty variables, and a hook rarely needs them all): their
  // offsets in the request's text, -1 when absent.
  private src: string = "";
  private connectionAt: i32 = -1;
  private sessionAt: i32 = -1;
  private tablesAt: i32 = -1;
  private configAt: i32 = -1;
  private configEnd: i32 = -1;
  private connectionList: Pair[] | null = null;
  private sessionList: Pair[] | null = null;
  private tableList: string[] | null = null;
  private configText: string | null = null;

  /** Every startup parameter, including options and any a client adds (jwt, tenant, ...). */
  get connectionParams(): Pair[] {
    let v = this.connectionList;
    if (v === null) this.connectionList = v = this.scanner(this.connectionAt, "connection").pairs();
    return v;
  }
  set connectionParams(v: Pair[]) {
    this.connectionList = v;
  }

  /** The session variables (SET, or set by plugins). */
  get sessionVars(): Pair[] {
    let v = this.sessionList;
    if (v === null) this.sessionList = v = this.scanner(this.sessionAt, "session").pairs();
    return v;
  }
  set sessionVars(v: Pair[]) {
    this.sessionList = v;
  }

  /** Tables the statement references, lower case, without CTE names; empty at pre-parse. */
  get tables(): string[] {
    let v = this.tableList;
    if (v === null) this.tableList = v = this.scanner(this.tablesAt, "tables").strings();
    return v;
  }
  set tables(v: string[]) {
    this.tableList = v;
  }

  /** The plugin's config table from its manifest, as JSON text; config() decodes it. */
  get configJson(): string {
    let v = this.configText;
    if (v === null) {
      const r = this.scanner(this.configAt, "config");
      this.configText = v = r.text();
    }
    return v;
  }
  set configJson(v: string) {
    this.configText = v;
    this.parsedConfig = null;
  }

  /** Where the request's member `name` is (Request.context records them). */
  locate(src: string, name: i32, at: i32, end: i32): void {
    this.src = src;
    if (name == 0) this.connectionAt = at;
    else if (name == 1) this.sessionAt = at;
    else if (name == 2) this.tablesAt = at;
    else {
      this.configAt = at;
      this.configEnd = end;
    }
  }

  // Whether the config's JSON string in this request is, byte for byte, the
  // one config() parsed last (no decoding, no allocation).
  private sameConfig(): bool {
    const raw = lastConfigRaw;
    if (raw === null || this.configAt < 0 || this.configText !== null) return false;
    const n = this.configEnd - this.configAt;
    if (n != raw.length) return false;
    const at = changetype<usize>(this.src) + (<usize>this.configAt << 1);
    return memory.compare(at, changetype<usize>(raw), <usize>n << 1) == 0;
  }

  private scanner(at: i32, what: string): Members {
    const s = new Scanner(this.src);
    if (at < 0) s.pos = this.src.length; // absent: read as empty
    else s.pos = at;
    return new Members(s, "the " + this.hook + " request does not decode: ctx." + what);
  }

  /**
   * The session variable `name`, or null. Names match exactly: a
   * case-insensitive match could pick up a variable the client SET under
   * another spelling of a name a plugin set and protects. The last pair wins
   * if a name occurs twice.
   */
  session(name: string): string | null {
    return lookup(this.sessionVars, name);
  }

  /** The startup parameter `name` ("user", "tenant", ...), matched exactly
   * like session(); the name the other SDKs use. */
  connection(name: string): string | null {
    return lookup(this.connectionParams, name);
  }

  /** connection(name), under the name the design documents use. */
  connectionParam(name: string): string | null {
    return lookup(this.connectionParams, name);
  }

  /**
   * The settings `-c name=value` (and `--name=value`) of the startup
   * parameter `options`, split as the server splits them (words separated
   * by white space, a backslash escaping the next character), in order.
   * This is how libpq clients pass parameters of their own:
   * `options='-c authorization=Bearer\ abc'`.
   */
  options(): Pair[] {
    const text = this.connection("options");
    return text === null ? [] : optionSettings(text);
  }

  /** The value of option `name` (matched exactly, the last wins), or null. */
  option(name: string): string | null {
    return lookup(this.options(), name);
  }

  /**
   * The plugin's config, a JSON object (an empty config is {}). A config that
   * is not a JSON object fails the statement with the user error
   * PLUGIN_CONFIG. Check its members with JsonValue.unknownMember(), so that
   * a misspelt option fails too instead of silently keeping its default.
   *
   * An instance serves many statements, nearly always with the same config:
   * while it stays the same, config() returns the very JsonValue it parsed
   * before (treat it as read-only), so a plugin can keep what it derives
   * from it, keyed on that object (`config === seen`).
   */
  config(): JsonValue {
    const cached = this.parsedConfig;
    if (cached !== null) return cached;
    if (this.sameConfig()) {
      const last = lastConfig!;
      this.parsedConfig = last;
      return last;
    }
    const text = this.configJson.trim();
    const config = text.length == 0 ? JsonValue.object() : parseJson(text);
    if (config === null) {
      raise(CODE_CONFIG, "plugin config: " + lastJsonError());
      return JsonValue.object();
    }
    if (!config.isObject) {
      raise(CODE_CONFIG, "plugin config: not a JSON object");
    }
    this.parsedConfig = config;
    if (this.configAt >= 0 && this.configEnd > this.configAt) {
      lastConfigRaw = this.src.substring(this.configAt, this.configEnd);
      lastConfig = config;
    }
    return config;
  }
}

// The config the instance parsed last: its JSON string as the request held
// it, and the object.
let lastConfigRaw: string | null = null;
let lastConfig: JsonValue | null = null;

function lookup(pairs: Pair[], name: string): string | null {
  let found: string | null = null;
  for (let i = 0; i < pairs.length; i++) if (pairs[i].name == name) found = pairs[i].value;
  return found;
}

// White space as Python's str.isspace() has it, which the server splits on.
function isSpace(c: i32): bool {
  if (c < 0x80) return c == 0x20 || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
  return (
    c == 0x85 ||
    c == 0xa0 ||
    c == 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c == 0x2028 ||
    c == 0x2029 ||
    c == 0x202f ||
    c == 0x205f ||
    c == 0x3000
  );
}

/** The `-c name=value` and `--name=value` settings of a PostgreSQL `options`
 * string (the server's own splitting: pgwire/session.py). */
export function optionSettings(text: string): Pair[] {
  // Words are slices of the text; only a word with a backslash is rebuilt.
  const words = new Array<string>();
  const n = text.length;
  let i = 0;
  while (i < n) {
    while (i < n && isSpace(text.charCodeAt(i))) i++;
    if (i >= n) break;
    const start = i;
    let escaped = false;
    while (i < n && !isSpace(text.charCodeAt(i))) {
      if (text.charCodeAt(i) == 0x5c) {
        escaped = true;
        i++; // the escaped character, a space included
      }
      i++;
    }
    if (i > n) i = n;
    if (!escaped) {
      words.push(text.substring(start, i));
      continue;
    }
    const b = new Utf16Builder(i - start);
    for (let j = start; j < i; j++) {
      const c = text.charCodeAt(j);
      if (c == 0x5c) {
        if (j + 1 < i) b.push(text.charCodeAt(++j));
      } else {
        b.push(c);
      }
    }
    words.push(b.finish());
  }
  const out = new Array<Pair>();
  let pending = false;
  for (let k = 0; k < words.length; k++) {
    const w = words[k];
    if (pending || w.startsWith("--")) {
      const setting = w.startsWith("--") ? w.substring(2) : w;
      const eq = setting.indexOf("=");
      if (eq >= 0) {
        out.push(new Pair(setting.substring(0, eq).replaceAll("-", "_"), setting.substring(eq + 1)));
      }
      pending = false;
    } else if (w == "-c") {
      pending = true;
    } else if (w.startsWith("-c")) {
      const eq = w.indexOf("=");
      if (eq >= 0) out.push(new Pair(w.substring(2, eq), w.substring(eq + 1)));
    }
  }
  return out;
}

// --- verdicts ----------------------------------------------------------------------

/** A case of the WIT action variant. */
export enum ActionKind {
  Allow = 0,
  Reject = 1,
  Rewrite = 2,
  ReplaceRows = 3,
}

const ACTION_NAMES: string[] = ["allow", "reject", "rewrite", "replace-rows"];

/** A hook's answer (WIT plugin-types.verdict). */
export class Verdict {
  action: ActionKind = ActionKind.Allow;
  /** Reject: the SQLSTATE and message the statement fails with. */
  sqlstate: string = "";
  message: string = "";
  /** Rewrite: SQL text (pre-parse) or the AST as JSON (post-parse). */
  text: string = "";
  /** ReplaceRows: the rows to return instead, with the result's columns. */
  rows: Value[][] = [];
  /** Session variables to set, in order. */
  session: Pair[] = [];

  /** The case's WIT name: allow, reject, rewrite, replace-rows. */
  get actionName(): string {
    return ACTION_NAMES[<i32>this.action];
  }

  /**
   * Also sets the session variable `name` to `value`: later plugins of the
   * statement and later statements of the session see it, and the client
   * can no longer SET or RESET it. Returns the verdict, for chaining:
   * `allow().setSession("auth.role", role)`.
   */
  setSession(name: string, value: string): Verdict {
    this.session.push(new Pair(name, value));
    return this;
  }

  /** The verdict's JSON form (docs/plugins.md §3). */
  toJson(sizeHint: i32 = 64): string {
    const w = new JsonWriter(sizeHint);
    w.raw('{"action":');
    if (this.action == ActionKind.Allow) {
      w.raw('"allow"');
    } else if (this.action == ActionKind.Reject) {
      w.raw('{"reject":{"sqlstate":').string(this.sqlstate);
      w.raw(',"message":').string(this.message).raw("}}");
    } else if (this.action == ActionKind.Rewrite) {
      w.raw('{"rewrite":').string(this.text).raw("}");
    } else {
      w.raw('{"replace-rows":[');
      for (let i = 0; i < this.rows.length; i++) {
        if (i > 0) w.raw(",");
        w.raw("[");
        const row = this.rows[i];
        for (let j = 0; j < row.length; j++) {
          if (j > 0) w.raw(",");
          writeValue(w, row[j]);
        }
        w.raw("]");
      }
      w.raw("]}");
    }
    if (this.session.length > 0) {
      w.raw(',"set-session":[');
      for (let i = 0; i < this.session.length; i++) {
        if (i > 0) w.raw(",");
        w.raw("[").string(this.session[i].name).raw(",").string(this.session[i].value).raw("]");
      }
      w.raw("]");
    }
    w.raw("}");
    return w.finish();
  }
}

/** Lets the statement or its rows through unchanged. */
export function allow(): Verdict {
  return new Verdict();
}

/** Fails the statement: the client gets `sqlstate` ("42501" insufficient
 * privilege, "28000" invalid authorization, "53400" configuration limit
 * exceeded, ...) and `message`. */
export function reject(sqlstate: string, message: string): Verdict {
  const v = new Verdict();
  v.action = ActionKind.Reject;
  v.sqlstate = sqlstate;
  v.message = message;
  return v;
}

/** Replaces the statement: SQL text at pre-parse, the AST as JSON at
 * post-parse (see rewriteAst). */
export function rewrite(text: string): Verdict {
  const v = new Verdict();
  v.action = ActionKind.Rewrite;
  v.text = text;
  return v;
}

/** rewrite() with the AST encoded. */
export function rewriteAst(ast: JsonValue): Verdict {
  return rewrite(ast.toJson());
}

/** Returns `rows` instead of the statement's result (post-execution only);
 * every row has the result's columns. */
export function replaceRows(rows: Value[][]): Verdict {
  const v = new Verdict();
  v.action = ActionKind.ReplaceRows;
  v.rows = rows;
  return v;
}

// --- SQL values as JSON (WIT types.value) -----------------------------------------------

/** Writes the JSON form of an SQL value: "null", {"integer": n}, {"real": x},
 * {"text": s}, {"blob": [bytes]} or {"boolean": b}. */
export function writeValue(w: JsonWriter, v: Value): void {
  if (v.kind == Kind.Integer) {
    w.raw('{"integer":').raw(v.int.toString()).raw("}");
  } else if (v.kind == Kind.Real) {
    // SQLite has no NaN: the engine would store it as NULL anyway.
    if (isNaN(v.real)) w.raw('"null"');
    else w.raw('{"real":').raw(formatReal(v.real)).raw("}");
  } else if (v.kind == Kind.Text) {
    w.raw('{"text":').string(v.text).raw("}");
  } else if (v.kind == Kind.Blob) {
    w.raw('{"blob":[');
    for (let i = 0; i < v.blob.length; i++) {
      if (i > 0) w.raw(",");
      w.raw(v.blob[i].toString());
    }
    w.raw("]}");
  } else if (v.kind == Kind.Boolean) {
    w.raw('{"boolean":').raw(v.int != 0 ? "true" : "false").raw("}");
  } else {
    w.raw('"null"');
  }
}

/** The JSON form of an SQL value. */
export function valueToJson(v: Value): string {
  const w = new JsonWriter();
  writeValue(w, v);
  return w.finish();
}

let valueError = "";

/** Why the last parseValue returned null. */
export function lastValueError(): string {
  return valueError;
}

/** An SQL value from its JSON text, or null (lastValueError() says why).
 * Integers are read from their digits, so every i64 survives exactly. */
export function parseValue(text: string): Value | null {
  const s = new Scanner(text);
  const v = readValue(s);
  s.end();
  valueError = s.error;
  return s.ok ? v : null;
}

// --- the hooks ---------------------------------------------------------------------------

/** pre-parse sees the raw SQL text: allow, reject or rewrite(sql). */
export type PreParseHook = (ctx: Context, sql: string) => Verdict;
/** post-parse sees the statement's AST: allow, reject or rewriteAst(ast). */
export type PostParseHook = (ctx: Context, ast: JsonValue) => Verdict;
/** pre-execution sees the final SQL text and its parameters: allow or reject. */
export type PreExecutionHook = (ctx: Context, sql: string, params: Value[]) => Verdict;
/** post-execution sees the result: allow (unchanged), reject or replaceRows. */
export type PostExecutionHook = (ctx: Context, columns: string[], rows: Value[][]) => Verdict;

/** Decodes a pre_parse request, calls `hook` and encodes its verdict: the body
 * of a pre_parse export. */
export function handlePreParse(request: Uint8Array, hook: PreParseHook): Json {
  const req = new Request(request, "pre_parse");
  req.read();
  const v = hook(req.ctx, req.need(req.sql, "sql"));
  return answer("pre-parse", v, request.length, ActionKind.Rewrite);
}

/** Decodes a post_parse request, parses its AST, calls `hook` and encodes its verdict. */
export function handlePostParse(request: Uint8Array, hook: PostParseHook): Json {
  const req = new Request(request, "post_parse");
  req.read();
  const ast = parseAst(req.need(req.ast, "ast"));
  if (ast === null) {
    raise("invalid-argument", "plugin: the post_parse request does not decode: " + lastAstError());
    return "";
  }
  return answer("post-parse", hook(req.ctx, ast), request.length, ActionKind.Rewrite);
}

/** Decodes a pre_execution request, calls `hook` and encodes its verdict. */
export function handlePreExecution(request: Uint8Array, hook: PreExecutionHook): Json {
  const req = new Request(request, "pre_execution");
  req.read();
  const v = hook(req.ctx, req.need(req.sql, "sql"), req.params);
  return answer("pre-execution", v, 0, ActionKind.Reject);
}

/** Decodes a post_execution request, calls `hook` and encodes its verdict.
 * Replaced rows must have the result's columns. */
export function handlePostExecution(request: Uint8Array, hook: PostExecutionHook): Json {
  const req = new Request(request, "post_execution");
  req.read();
  const columns = req.columns;
  const v = hook(req.ctx, columns, req.rows);
  if (v.action == ActionKind.ReplaceRows) {
    for (let i = 0; i < v.rows.length; i++) {
      if (v.rows[i].length != columns.length) {
        raise(
          CODE_VERDICT,
          "post-execution: replaced row " +
            i.toString() +
            " has " +
            v.rows[i].length.toString() +
            " values, the result has " +
            columns.length.toString() +
            " columns",
        );
      }
    }
  }
  return answer("post-execution", v, request.length, ActionKind.ReplaceRows);
}

// The verdict as JSON after checking that its stage allows its action (the
// engine would refuse it too, with less detail). Besides allow and reject,
// each stage allows at most one more action.
function answer(stage: string, v: Verdict, sizeHint: i32, extra: ActionKind): Json {
  if (v.action != ActionKind.Allow && v.action != ActionKind.Reject && v.action != extra) {
    let allowed = "allow, reject";
    if (extra != ActionKind.Reject) allowed += ", " + ACTION_NAMES[<i32>extra];
    const why = "a " + stage + " hook cannot answer " + v.actionName;
    raise(CODE_VERDICT, why + " (it may answer " + allowed + ")");
  }
  const hint = v.action == ActionKind.Rewrite || v.action == ActionKind.ReplaceRows ? sizeHint + 64 : 64;
  return v.toJson(hint);
}

// A context member or request member the SDK reads with a scanner: a
// failure is invalid-argument naming the member.
class Members {
  constructor(
    public s: Scanner,
    public what: string,
  ) {}

  private check(): void {
    if (!this.s.ok) raise("invalid-argument", "plugin: " + this.what + ": " + this.s.error);
  }

  // An absent member (the scanner at the end) reads as empty.
  private absent(): bool {
    return this.s.peek() == -1 || this.s.null();
  }

  /** A string; "" when absent. */
  text(): string {
    if (this.absent()) return "";
    const out = this.s.string();
    this.check();
    return out;
  }

  /** An array of strings; `check` = false leaves errors to the caller's scanner. */
  strings(check: bool = true): string[] {
    const s = this.s;
    const out = new Array<string>();
    if (this.absent() || !s.beginArray()) {
      if (check) this.check();
      return out;
    }
    while (s.more()) out.push(s.string());
    if (check) this.check();
    return out;
  }

  /** An array of (name, value) pairs. */
  pairs(): Pair[] {
    const s = this.s;
    const out = new Array<Pair>();
    if (this.absent() || !s.beginArray()) {
      this.check();
      return out;
    }
    while (s.more()) {
      if (!s.beginArray()) break;
      let name = "";
      let value = "";
      let n = 0;
      while (s.more()) {
        if (n == 0) name = s.string();
        else if (n == 1) value = s.string();
        else s.fail("a (name, value) pair has more than two members");
        n++;
      }
      if (n != 2) s.fail("a (name, value) pair needs two members");
      if (s.ok) out.push(new Pair(name, value));
    }
    this.check();
    return out;
  }
}

// One request, read straight into its typed members by the scanner (no
// tree): members a later engine adds are skipped, missing ones stay empty.
class Request {
  hook: string;
  s: Scanner;
  ctx: Context = new Context();
  sql: string | null = null;
  ast: string | null = null;
  params: Value[] = [];
  columns: string[] = [];
  rows: Value[][] = [];

  constructor(request: Uint8Array, hook: string) {
    this.hook = hook;
    const text = decodeUtf8(request.dataStart, request.length);
    if (text === null) {
      const bad = invalidUtf8(request.dataStart, request.length);
      const where = "byte " + bad.toString();
      raise("invalid-argument", "plugin: the " + hook + " request is not UTF-8 (" + where + ")");
    }
    this.s = new Scanner(text!);
    this.ctx.hook = hook;
  }

  read(): void {
    const s = this.s;
    s.beginObject();
    while (s.more()) {
      s.key();
      if (s.keyIs("ctx")) this.context();
      else if (s.keyIs("sql")) this.sql = s.null() ? null : s.string();
      else if (s.keyIs("ast")) this.ast = s.null() ? null : s.string();
      else if (s.keyIs("params")) this.params = this.values();
      else if (s.keyIs("columns")) this.columns = new Members(s, "columns").strings(false);
      else if (s.keyIs("rows")) this.rows = this.rowsOf();
      else s.skip();
    }
    s.end();
    this.check();
  }

  // Fails the hook if the scanner failed.
  check(): void {
    if (!this.s.ok) {
      const why = this.s.error;
      raise("invalid-argument", "plugin: the " + this.hook + " request does not decode: " + why);
    }
  }

  need(v: string | null, name: string): string {
    if (v === null) {
      raise("invalid-argument", "plugin: the " + this.hook + " request does not decode: no " + name);
      return "";
    }
    return v;
  }

  values(): Value[] {
    const s = this.s;
    const out = new Array<Value>();
    if (s.null() || !s.beginArray()) return out;
    while (s.more()) out.push(readValue(s));
    return out;
  }

  rowsOf(): Value[][] {
    const s = this.s;
    const out = new Array<Value[]>();
    if (s.null() || !s.beginArray()) return out;
    while (s.more()) out.push(this.values());
    return out;
  }

  // Records where a context member starts and skips it (checking that it
  // is JSON): Context reads it when the hook first asks.
  later(member: i32): void {
    const s = this.s;
    s.peek();
    const at = s.pos;
    s.skip();
    this.ctx.locate(s.s, member, at, s.pos);
  }

  context(): void {
    const s = this.s;
    const c = this.ctx;
    if (s.null() || !s.beginObject()) return;
    while (s.more()) {
      s.key();
      if (s.keyIs("query-id")) c.queryId = s.uint64();
      else if (s.keyIs("user")) c.user = s.string();
      else if (s.keyIs("database")) c.database = s.string();
      else if (s.keyIs("application-name")) c.applicationName = s.string();
      else if (s.keyIs("connection")) this.later(0);
      else if (s.keyIs("session")) this.later(1);
      else if (s.keyIs("tables")) this.later(2);
      else if (s.keyIs("config")) this.later(3);
      else s.skip(); // a member a later engine adds
    }
  }
}

/** Reads one SQL value (WIT types.value) from the scanner; an error in the
 * scanner (and Null) if it is not one. Integers are read from their digits. */
export function readValue(s: Scanner): Value {
  if (s.peek() == 0x22) {
    if (!s.stringIs("null")) s.fail('SQL value: a case without payload must be "null"');
    return Value.null();
  }
  if (!s.beginObject()) return Value.null();
  if (!s.more()) {
    s.fail("SQL value: an empty object");
    return Value.null();
  }
  s.key();
  let v: Value;
  if (s.keyIs("integer")) v = Value.int(s.int64());
  else if (s.keyIs("text")) v = Value.text(s.string());
  else if (s.keyIs("real")) v = Value.real(s.real());
  else if (s.keyIs("boolean")) v = Value.bool(s.bool());
  else if (s.keyIs("blob")) {
    const bytes = new Array<u8>();
    if (s.beginArray()) {
      while (s.more()) {
        const b = s.int64();
        if (b < 0 || b > 255) s.fail("SQL value: blob: not a byte");
        bytes.push(<u8>b);
      }
    }
    const data = new Uint8Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) data[i] = bytes[i];
    v = Value.blob(data);
  } else {
    s.fail("SQL value: unknown case " + quote(s.keyString()));
    return Value.null();
  }
  if (s.more()) s.fail("SQL value: a case object holds exactly one member");
  return v;
}

// --- the host's counter (WIT plugin-host.count-in-window) ------------------------------

@external("heliosdb", "count_in_window")
declare function _count_in_window(key: usize, keyLen: usize, windowMs: i64): i64;

/**
 * Adds one to the counter `key` (private to the plugin) in the current fixed
 * window of `windowMs` milliseconds and returns its new value: the building
 * block of rate limits. Only a module that calls it imports
 * heliosdb.count_in_window (the optimizer drops unused imports), so plugins
 * that do not still load on engines without plugin support. A window below
 * 1 ms, or a key with a lone surrogate, fails the call with invalid-argument.
 */
export function countInWindow(key: string, windowMs: i64): i64 {
  if (windowMs <= 0) {
    raise("invalid-argument", "count_in_window: the window must be at least 1 ms");
  }
  const bytes = utf8(key);
  if (bytes === null) {
    // The host traps on text that is not UTF-8; an error is kinder.
    raise("invalid-argument", "count_in_window: the key is not valid UTF-8 (a lone surrogate)");
  }
  return _count_in_window(changetype<usize>(bytes), bytes!.byteLength, windowMs);
}
