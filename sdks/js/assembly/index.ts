// HeliosDB procedures in AssemblyScript: the guest side of the Basic ABI
// (docs/abi.md) without pointers. Procedures are the exported functions of a
// project's assembly/index.ts, typed with AssemblyScript's own numbers
// (i64, i32, f64, f32, bool), string, Uint8Array, Json and table rows;
// `heliosdb-wasm build` generates the ABI wrappers around them.
//
//   import { query, Value, log, raise } from "heliosdb";
//
//   export function calculateDiscount(customerId: i64, orderTotal: f64): f64 {
//     const rows = query("SELECT tier FROM customers WHERE id = ?", [Value.int(customerId)]);
//     if (rows.length == 0) raise("CUSTOMER_NOT_FOUND", "no customer with id " + customerId.toString());
//     ...
//   }

// --- host imports (module "heliosdb", docs/abi.md §4) -------------------------

@external("heliosdb", "heliosdb_query")
declare function _query(sql: usize, sqlLen: usize, params: usize, paramsLen: usize, out: usize): i32;
@external("heliosdb", "heliosdb_execute")
declare function _execute(sql: usize, sqlLen: usize, params: usize, paramsLen: usize, out: usize): i32;
@external("heliosdb", "heliosdb_get_param")
declare function _get_param(index: i32, out: usize): i32;
@external("heliosdb", "heliosdb_return")
declare function _return(tag: i32, ptr: usize, len: usize): void;
@external("heliosdb", "heliosdb_log")
declare function _log(level: i32, ptr: usize, len: usize): void;
@external("heliosdb", "heliosdb_begin_tx")
declare function _begin_tx(): i32;
@external("heliosdb", "heliosdb_commit_tx")
declare function _commit_tx(): i32;
@external("heliosdb", "heliosdb_rollback_tx")
declare function _rollback_tx(): i32;
@external("heliosdb", "heliosdb_now")
declare function _now(): i64;
@external("heliosdb", "heliosdb_error")
declare function _error(code: usize, codeLen: usize, message: usize, messageLen: usize): void;
@external("heliosdb", "heliosdb_last_error")
declare function _last_error(out: usize): i32;
@external("heliosdb", "heliosdb_http_fetch")
declare function _http_fetch(req: usize, reqLen: usize, out: usize): i32;
@external("heliosdb", "heliosdb_digest")
declare function _digest(alg: usize, algLen: usize, data: usize, dataLen: usize, out: usize): i32;
@external("heliosdb", "heliosdb_hmac")
declare function _hmac(
  alg: usize,
  algLen: usize,
  key: usize,
  keyLen: usize,
  data: usize,
  dataLen: usize,
  out: usize,
): i32;

// --- guest exports the host needs -----------------------------------------------

export function heliosdb_abi_version(): i32 {
  return 1;
}

// Raw blocks outside the garbage collector: the host writes into them and the
// SDK frees them as soon as it has read them.
export function heliosdb_alloc(size: usize, align: usize): usize {
  return heap.alloc(size);
}

export function heliosdb_free(ptr: usize, size: usize, align: usize): void {
  heap.free(ptr);
}

// --- types -------------------------------------------------------------------------

/** JSON text: a JSON result must parse as JSON. */
export type Json = string;

/** A nullable number (AssemblyScript has no `i64 | null`): `Nullable<i64> | null`. */
export class Nullable<T> {
  constructor(public value: T) {}
}

export enum Kind {
  Null = 0,
  Integer = 1,
  Real = 2,
  Text = 3,
  Blob = 4,
  Boolean = 5,
}

/** One SQL value: a query parameter or a cell of a query's rows. */
export class Value {
  kind: Kind = Kind.Null;
  int: i64 = 0;
  real: f64 = 0;
  text: string = "";
  blob: Uint8Array = new Uint8Array(0);

  static null(): Value {
    return new Value();
  }
  static int(v: i64): Value {
    const out = new Value();
    out.kind = Kind.Integer;
    out.int = v;
    return out;
  }
  static real(v: f64): Value {
    const out = new Value();
    out.kind = Kind.Real;
    out.real = v;
    return out;
  }
  static text(v: string): Value {
    const out = new Value();
    out.kind = Kind.Text;
    out.text = v;
    return out;
  }
  static blob(v: Uint8Array): Value {
    const out = new Value();
    out.kind = Kind.Blob;
    out.blob = v;
    return out;
  }
  static bool(v: bool): Value {
    const out = new Value();
    out.kind = Kind.Boolean;
    out.int = v ? 1 : 0;
    return out;
  }

  get isNull(): bool {
    return this.kind == Kind.Null;
  }
  /** The value as an integer (a REAL is truncated, NULL is 0). */
  asInt(): i64 {
    return this.kind == Kind.Real ? <i64>this.real : this.int;
  }
  /** The value as a double (NULL is 0). */
  asReal(): f64 {
    return this.kind == Kind.Integer || this.kind == Kind.Boolean ? <f64>this.int : this.real;
  }
  asBool(): bool {
    return this.asInt() != 0;
  }
  /** Text as is; numbers formatted; NULL as "". */
  asString(): string {
    if (this.kind == Kind.Text) return this.text;
    if (this.kind == Kind.Integer) return this.int.toString();
    if (this.kind == Kind.Real) return this.real.toString();
    if (this.kind == Kind.Boolean) return this.int ? "true" : "false";
    return "";
  }
}

/** A query's result: column names and rows of values. */
export class Rows {
  constructor(
    public columns: string[],
    public values: Value[][],
  ) {}

  get length(): i32 {
    return this.values.length;
  }

  /** The cell of `row` in the column called `column`; aborts if there is none. */
  get(row: i32, column: string): Value {
    const index = this.columns.indexOf(column);
    if (index < 0) abort("no column " + column + " in the query's result");
    return this.values[row][index];
  }
  getInt(row: i32, column: string): i64 {
    return this.get(row, column).asInt();
  }
  getReal(row: i32, column: string): f64 {
    return this.get(row, column).asReal();
  }
  getString(row: i32, column: string): string {
    return this.get(row, column).asString();
  }
  getBool(row: i32, column: string): bool {
    return this.get(row, column).asBool();
  }
  isNull(row: i32, column: string): bool {
    return this.get(row, column).isNull;
  }
}

/** A failed host call: the WIT error case (e.g. "sql-error") and its message. */
export class HostError {
  constructor(
    public code: string,
    public message: string,
  ) {}
}

/** `s` as a JSON string literal, quotes included: for building JSON results. */
export function jsonQuote(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x22) out += '\\"';
    else if (c == 0x5c) out += "\\\\";
    else if (c < 0x20) out += "\\u" + c.toString(16).padStart(4, "0");
    else out += String.fromCharCode(c);
  }
  return out + '"';
}

// --- the host API ----------------------------------------------------------------

// The out area host calls write a (ptr, len) pair or an i64 into.
const OUT: usize = heap.alloc(8);
const CASES: string[] = [
  "",
  "access-denied",
  "sql-error",
  "constraint",
  "limit-exceeded",
  "invalid-argument",
  "user-error",
];
let lastFailure: HostError | null = null;

/** Runs a read statement with `?` parameters bound (never spliced into the SQL). */
export function query(sql: string, params: Value[] = []): Rows {
  const rows = tryQuery(sql, params);
  if (rows === null) passOn();
  return rows!;
}

/** Like query, but a failure returns null and lastError() tells why. */
export function tryQuery(sql: string, params: Value[] = []): Rows | null {
  const text = String.UTF8.encode(sql);
  const encoded = encodeParams(params);
  const status = _query(
    changetype<usize>(text),
    text.byteLength,
    changetype<usize>(encoded),
    encoded.byteLength,
    OUT,
  );
  if (status != 0) {
    failed(status);
    return null;
  }
  const ptr = load<u32>(OUT);
  const len = load<u32>(OUT, 4);
  const rows = decodeRows(<usize>ptr);
  if (len) heap.free(<usize>ptr);
  return rows;
}

/** Runs a write statement and returns the number of rows it changed. */
export function execute(sql: string, params: Value[] = []): i64 {
  const changed = tryExecute(sql, params);
  if (changed < 0) passOn();
  return changed;
}

/** Like execute, but a failure returns -1 and lastError() tells why. */
export function tryExecute(sql: string, params: Value[] = []): i64 {
  const text = String.UTF8.encode(sql);
  const encoded = encodeParams(params);
  const status = _execute(
    changetype<usize>(text),
    text.byteLength,
    changetype<usize>(encoded),
    encoded.byteLength,
    OUT,
  );
  if (status != 0) {
    failed(status);
    return -1;
  }
  return load<i64>(OUT);
}

/** The error of the last failed try* call, or null. */
export function lastError(): HostError | null {
  return lastFailure;
}

export function begin(): void {
  check(_begin_tx());
}
export function commit(): void {
  check(_commit_tx());
}
export function rollback(): void {
  check(_rollback_tx());
}

/** Wall-clock time in microseconds since the Unix epoch. */
export function now(): i64 {
  return _now();
}

export namespace log {
  export function trace(message: string): void {
    write(0, message);
  }
  export function debug(message: string): void {
    write(1, message);
  }
  export function info(message: string): void {
    write(2, message);
  }
  export function warn(message: string): void {
    write(3, message);
  }
  export function error(message: string): void {
    write(4, message);
  }
  function write(level: i32, message: string): void {
    const text = String.UTF8.encode(message);
    _log(level, changetype<usize>(text), text.byteLength);
  }
}

/**
 * Fails the procedure with the user error (code, message): the SQL call
 * raises `user-error` and everything the call wrote is rolled back.
 * AssemblyScript has no exceptions, so this never returns.
 */
export function raise(code: string, message: string): void {
  const c = String.UTF8.encode(code);
  const m = String.UTF8.encode(message);
  _error(changetype<usize>(c), c.byteLength, changetype<usize>(m), m.byteLength);
  unreachable(); // the engine reports the recorded error, not the trap
}

// A host error nobody handled fails the call with the same error case.
function passOn(): void {
  const err = lastFailure!;
  raise(err.code, err.message);
}

function check(status: i32): void {
  if (status != 0) {
    failed(status);
    passOn();
  }
}

function failed(status: i32): void {
  const code = _last_error(OUT);
  let message = "";
  if (code != 0) {
    const ptr = <usize>load<u32>(OUT);
    const len = <usize>load<u32>(OUT, 4);
    message = String.UTF8.decodeUnsafe(ptr, len);
    if (len) heap.free(ptr);
  }
  lastFailure = new HostError(status > 0 && status < CASES.length ? CASES[status] : "sql-error", message);
}

// --- network and crypto (capabilities network:<host> and crypto) ------------------------

export class Header {
  constructor(
    public name: string,
    public value: string,
  ) {}
}

/** An HTTP answer; 4xx and 5xx are answers too, not errors. */
export class HttpResponse {
  constructor(
    public status: i32,
    public headers: Header[],
    public body: Uint8Array,
  ) {}

  /** The body as UTF-8 text. */
  text(): string {
    return String.UTF8.decodeUnsafe(this.body.dataStart, <usize>this.body.length);
  }
}

/** Sends an HTTP(S) request to a host the procedure holds `network:<host>` for. */
export function httpFetch(
  url: string,
  method: string = "GET",
  headers: Header[] = [],
  body: Uint8Array = new Uint8Array(0),
): HttpResponse {
  const answer = tryHttpFetch(url, method, headers, body);
  if (answer === null) passOn();
  return answer!;
}

/** Like httpFetch, but a failure returns null and lastError() tells why. */
export function tryHttpFetch(
  url: string,
  method: string = "GET",
  headers: Header[] = [],
  body: Uint8Array = new Uint8Array(0),
): HttpResponse | null {
  const w = new Writer();
  w.string(method);
  w.string(url);
  w.u32(<u32>headers.length);
  for (let i = 0; i < headers.length; i++) {
    w.string(headers[i].name);
    w.string(headers[i].value);
  }
  w.bytes(body.dataStart, body.length);
  const status = _http_fetch(changetype<usize>(w.buf), w.len, OUT);
  if (status != 0) {
    failed(status);
    return null;
  }
  const start = <usize>load<u32>(OUT);
  const len = load<u32>(OUT, 4);
  let ptr = start;
  const code = <i32>load<u32>(ptr);
  const n = <i32>load<u32>(ptr, 4);
  ptr += 8;
  const got = new Array<Header>();
  for (let i = 0; i < n; i++) {
    const name = readString(ptr);
    ptr += 4 + <usize>load<u32>(ptr);
    const value = readString(ptr);
    ptr += 4 + <usize>load<u32>(ptr);
    got.push(new Header(name, value));
  }
  const size = <i32>load<u32>(ptr);
  const data = new Uint8Array(size);
  memory.copy(data.dataStart, ptr + 4, size);
  if (len) heap.free(start);
  return new HttpResponse(code, got, data);
}

/** The host's digest of `data` (sha256, sha3-256, blake2b, ...); needs `crypto`. */
export function digest(algorithm: string, data: Uint8Array): Uint8Array {
  const alg = String.UTF8.encode(algorithm);
  return owned(_digest(changetype<usize>(alg), alg.byteLength, data.dataStart, data.length, OUT));
}

/** HMAC of `data` under `key` with `algorithm`; needs `crypto`. */
export function hmac(algorithm: string, key: Uint8Array, data: Uint8Array): Uint8Array {
  const alg = String.UTF8.encode(algorithm);
  const status = _hmac(
    changetype<usize>(alg),
    alg.byteLength,
    key.dataStart,
    key.length,
    data.dataStart,
    data.length,
    OUT,
  );
  return owned(status);
}

/** Lowercase hex of bytes (digests, MACs). */
export function hex(bytes: Uint8Array): string {
  const digits = "0123456789abcdef";
  let out = "";
  for (let i = 0; i < bytes.length; i++) {
    out += digits.charAt(bytes[i] >> 4) + digits.charAt(bytes[i] & 15);
  }
  return out;
}

// The owned buffer a successful host call left at OUT, copied out and freed.
function owned(status: i32): Uint8Array {
  check(status);
  const ptr = <usize>load<u32>(OUT);
  const len = <i32>load<u32>(OUT, 4);
  const out = new Uint8Array(len);
  memory.copy(out.dataStart, ptr, len);
  if (len) heap.free(ptr);
  return out;
}

// --- encodings (docs/abi.md §5, §6) ---------------------------------------------------

/** A growable byte buffer. */
class Writer {
  buf: ArrayBuffer = new ArrayBuffer(64);
  len: i32 = 0;

  reserve(n: i32): usize {
    if (this.len + n > this.buf.byteLength) {
      let size = this.buf.byteLength * 2;
      while (size < this.len + n) size *= 2;
      const grown = new ArrayBuffer(size);
      memory.copy(changetype<usize>(grown), changetype<usize>(this.buf), this.len);
      this.buf = grown;
    }
    const at = changetype<usize>(this.buf) + this.len;
    this.len += n;
    return at;
  }
  u8(v: u8): void {
    store<u8>(this.reserve(1), v);
  }
  u32(v: u32): void {
    store<u32>(this.reserve(4), v);
  }
  i64(v: i64): void {
    store<i64>(this.reserve(8), v);
  }
  f64(v: f64): void {
    store<f64>(this.reserve(8), v);
  }
  bytes(ptr: usize, n: i32): void {
    this.u32(<u32>n);
    memory.copy(this.reserve(n), ptr, n);
  }
  string(s: string): void {
    const text = String.UTF8.encode(s);
    this.bytes(changetype<usize>(text), text.byteLength);
  }
  value(v: Value): void {
    this.u8(<u8>v.kind);
    switch (v.kind) {
      case Kind.Integer:
        this.i64(v.int);
        break;
      case Kind.Real:
        this.f64(v.real);
        break;
      case Kind.Text:
        this.string(v.text);
        break;
      case Kind.Blob:
        this.bytes(v.blob.dataStart, v.blob.length);
        break;
      case Kind.Boolean:
        this.u8(<u8>v.int);
        break;
    }
  }
  finish(): ArrayBuffer {
    return this.buf.slice(0, this.len);
  }
}

function encodeParams(params: Value[]): ArrayBuffer {
  if (params.length == 0) return new ArrayBuffer(0);
  const w = new Writer();
  w.u32(<u32>params.length);
  for (let i = 0; i < params.length; i++) w.value(params[i]);
  return w.finish();
}

function readString(ptr: usize): string {
  return String.UTF8.decodeUnsafe(ptr + 4, <usize>load<u32>(ptr));
}

function decodeRows(ptr: usize): Rows {
  const ncols = <i32>load<u32>(ptr);
  ptr += 4;
  const columns = new Array<string>(ncols);
  for (let c = 0; c < ncols; c++) {
    columns[c] = readString(ptr);
    ptr += 4 + <usize>load<u32>(ptr);
  }
  const nrows = <i32>load<u32>(ptr);
  ptr += 4;
  const values = new Array<Value[]>(nrows);
  for (let r = 0; r < nrows; r++) {
    const row = new Array<Value>(ncols);
    for (let c = 0; c < ncols; c++) {
      const v = new Value();
      v.kind = <Kind>load<u8>(ptr);
      ptr += 1;
      if (v.kind == Kind.Integer) {
        v.int = load<i64>(ptr);
        ptr += 8;
      } else if (v.kind == Kind.Real) {
        v.real = load<f64>(ptr);
        ptr += 8;
      } else if (v.kind == Kind.Text) {
        v.text = readString(ptr);
        ptr += 4 + <usize>load<u32>(ptr);
      } else if (v.kind == Kind.Blob) {
        const n = <i32>load<u32>(ptr);
        v.blob = new Uint8Array(n);
        memory.copy(v.blob.dataStart, ptr + 4, n);
        ptr += 4 + <usize>n;
      } else if (v.kind == Kind.Boolean) {
        v.int = load<u8>(ptr);
        ptr += 1;
      }
      row[c] = v;
    }
    values[r] = row;
  }
  return new Rows(columns, values);
}

// --- used by the generated wrappers (heliosdb-wasm build) ----------------------------

/** A text argument: the host's buffer, decoded and freed. */
export function __takeText(ptr: usize, len: usize): string {
  const s = String.UTF8.decodeUnsafe(ptr, len);
  if (len) heap.free(ptr);
  return s;
}

/** A blob argument: copied out of the host's buffer, which is freed. */
export function __takeBlob(ptr: usize, len: usize): Uint8Array {
  const out = new Uint8Array(<i32>len);
  memory.copy(out.dataStart, ptr, len);
  if (len) heap.free(ptr);
  return out;
}

/** Whether argument `index` is SQL NULL (CALLED ON NULL INPUT procedures). */
export function __argIsNull(index: i32): bool {
  const tag = _get_param(index, OUT);
  if (tag == Kind.Text || tag == Kind.Blob) {
    const ptr = <usize>load<u32>(OUT);
    if (load<u32>(OUT, 4)) heap.free(ptr);
  }
  return tag == Kind.Null;
}

export function __returnNull(): void {
  _return(Kind.Null, 0, 0);
}

export function __returnText(s: string): void {
  const text = String.UTF8.encode(s);
  _return(Kind.Text, changetype<usize>(text), text.byteLength);
}

export function __returnBlob(b: Uint8Array): void {
  _return(Kind.Blob, b.dataStart, b.length);
}

/** Builds a TABLE result row by row, cell by cell in column order. */
export class __RowsWriter {
  w: Writer = new Writer();
  countAt: i32 = 0;
  rows: u32 = 0;

  constructor(columns: string[]) {
    this.w.u32(<u32>columns.length);
    for (let i = 0; i < columns.length; i++) this.w.string(columns[i]);
    this.countAt = this.w.len;
    this.w.u32(0);
  }
  row(): void {
    this.rows++;
  }
  int(v: i64): void {
    this.w.value(Value.int(v));
  }
  real(v: f64): void {
    this.w.value(Value.real(v));
  }
  bool(v: bool): void {
    this.w.value(Value.bool(v));
  }
  text(v: string | null): void {
    this.w.value(v === null ? Value.null() : Value.text(v));
  }
  blob(v: Uint8Array | null): void {
    this.w.value(v === null ? Value.null() : Value.blob(v));
  }
  finish(): void {
    store<u32>(changetype<usize>(this.w.buf) + this.countAt, this.rows);
    _return(6, changetype<usize>(this.w.buf), this.w.len);
  }
}

/** The module's abort (`--use abort=`): logs why, then traps. */
export function __abort(
  message: string | null = null,
  file: string | null = null,
  line: u32 = 0,
  column: u32 = 0,
): void {
  let text = "abort: " + (message !== null ? message : "");
  if (file !== null) text += " at " + file + ":" + line.toString() + ":" + column.toString();
  log.error(text);
  unreachable();
}

/** Math.random's seed (`--use seed=`): there is no WASI here. */
export function __seed(): f64 {
  return <f64>_now();
}
