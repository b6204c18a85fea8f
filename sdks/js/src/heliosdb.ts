/**
 * HeliosDB procedures in JavaScript and TypeScript (QuickJS components).
 *
 * A procedure is an exported function of the project's `procedure.ts` (or
 * `procedure.js`); its parameter and result types, written with the aliases
 * below, become the component's WIT signature at build time. This module is
 * the guest side of the host API `heliosdb:procedures/host` (wit/host.wit),
 * whose TypeScript declarations in ../types are generated from the WIT.
 *
 *   import { queryOne, log, ProcedureError, type i64, type f64 } from "heliosdb";
 *
 *   export function calculateDiscount(customerId: i64, orderTotal: f64): f64 {
 *     const customer = queryOne("SELECT tier FROM customers WHERE id = ?", customerId);
 *     if (customer === null) throw new ProcedureError("CUSTOMER_NOT_FOUND", `no customer ${customerId}`);
 *     ...
 *   }
 */
import * as host from "heliosdb:procedures/host@0.1.0";
import type { Value } from "heliosdb:procedures/types@0.1.0";

// SQL types of parameters and results. QuickJS represents every WIT number,
// 64-bit integers included, as a JS number: BIGINT values beyond 2^53 lose
// precision (use the AssemblyScript SDK where that matters).
/** BIGINT (WIT s64). */
export type i64 = number;
/** INTEGER (WIT s32). */
export type i32 = number;
/** DOUBLE (WIT f64). */
export type f64 = number;
/** REAL (WIT f32). */
export type f32 = number;
/** BOOLEAN. */
export type bool = boolean;
/** JSON text: return `json(value)` or a string that parses as JSON. */
export type Json = string & { readonly __json?: never };
/** BLOB. */
export type Blob = Uint8Array;

/** A value bound to a `?` parameter or read from a row. */
export type SqlValue = null | number | string | boolean | Uint8Array | Real;
/** A query row: column name to value. */
export type Row = { [column: string]: SqlValue };

/** A number bound as REAL even when it is integral (`real(2)` is 2.0, not 2). */
export class Real {
  constructor(readonly value: number) {}
}
export function real(value: number): Real {
  return new Real(value);
}

/** The code of a failed host call: the case names of WIT's `error` variant. */
export type HostErrorCode =
  | "access-denied"
  | "sql-error"
  | "constraint"
  | "limit-exceeded"
  | "invalid-argument"
  | "user-error";

/**
 * A host call failed (the statement was refused, a capability is missing,
 * ...). Left uncaught, it fails the procedure with the same error case.
 */
export class HostError extends Error {
  constructor(
    readonly code: HostErrorCode,
    message: string,
    /** For `user-error` (raised by a nested procedure): that procedure's code. */
    readonly userCode?: string,
  ) {
    super(message);
    this.name = "HostError";
  }
}

/** Thrown by a procedure: the SQL call fails with `user-error` and this code. */
export class ProcedureError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ProcedureError";
  }
}

function lower(value: SqlValue, index: number): Value {
  if (value === null || value === undefined) return { tag: "null" };
  if (value instanceof Real) return { tag: "real", val: value.value };
  switch (typeof value) {
    case "number":
      // Integral numbers bind as INTEGER, like SQLite's own JS drivers.
      return Number.isSafeInteger(value)
        ? { tag: "integer", val: value }
        : { tag: "real", val: value };
    case "string":
      return { tag: "text", val: value };
    case "boolean":
      return { tag: "boolean", val: value };
    case "bigint":
      if (value < BigInt(Number.MIN_SAFE_INTEGER) || value > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new RangeError(`parameter ${index + 1}: ${value} is beyond 2^53`);
      }
      return { tag: "integer", val: Number(value) };
  }
  if (value instanceof Uint8Array) return { tag: "blob", val: value };
  throw new TypeError(`parameter ${index + 1}: cannot bind a ${typeof value}`);
}

function lift(value: Value): SqlValue {
  return value.tag === "null" ? null : (value.val as SqlValue);
}

/** Runs a host call, turning the WIT error it throws into a HostError. */
function hostCall<T>(call: () => T): T {
  try {
    return call();
  } catch (err) {
    const payload = (err as { payload?: { tag: HostErrorCode; val: unknown } }).payload;
    if (payload === undefined) throw err;
    if (payload.tag === "user-error") {
      const { code, message } = payload.val as { code: string; message: string };
      throw new HostError("user-error", message, code);
    }
    throw new HostError(payload.tag, String(payload.val));
  }
}

/** The rows of a query as column names plus arrays of values. */
export interface Rows {
  columns: string[];
  values: SqlValue[][];
}

/** Runs a read statement; `?` parameters are bound, never spliced into the SQL. */
export function queryRows(sql: string, ...params: SqlValue[]): Rows {
  const rows = hostCall(() => host.query(sql, params.map(lower)));
  return { columns: rows.columns, values: rows.values.map((row) => row.map(lift)) };
}

/** Runs a read statement and returns its rows as objects keyed by column. */
export function query(sql: string, ...params: SqlValue[]): Row[] {
  const { columns, values } = queryRows(sql, ...params);
  return values.map((row) => {
    const out: Row = {};
    columns.forEach((column, i) => (out[column] = row[i]));
    return out;
  });
}

/** The first row of a query, or null when there is none. */
export function queryOne(sql: string, ...params: SqlValue[]): Row | null {
  return query(sql, ...params)[0] ?? null;
}

/** Runs a write statement and returns the number of rows it changed. */
export function execute(sql: string, ...params: SqlValue[]): number {
  return Number(hostCall(() => host.execute(sql, params.map(lower))));
}

/** The procedure log (levels as in SQL's procedure log). */
export const log = {
  trace: (message: string): void => host.log("trace", message),
  debug: (message: string): void => host.log("debug", message),
  info: (message: string): void => host.log("info", message),
  warn: (message: string): void => host.log("warn", message),
  error: (message: string): void => host.log("error", message),
};

export function begin(): void {
  hostCall(() => host.beginTx());
}
export function commit(): void {
  hostCall(() => host.commitTx());
}
export function rollback(): void {
  hostCall(() => host.rollbackTx());
}

/**
 * Runs `body` inside a transaction (a savepoint of the caller's): committed
 * when it returns, rolled back when it throws (and the error rethrown).
 */
export function transaction<T>(body: () => T): T {
  begin();
  let result: T;
  try {
    result = body();
  } catch (err) {
    rollback();
    throw err;
  }
  commit();
  return result;
}

/** Wall-clock time in microseconds since the Unix epoch. */
export function now(): number {
  return Number(host.now());
}

// --- network and crypto (capabilities network:<host> and crypto) -------------

/** An HTTP answer; 4xx and 5xx are answers too, not errors. */
export interface HttpResponse {
  status: number;
  headers: [string, string][];
  body: Uint8Array;
  /** The body as UTF-8 text. */
  text(): string;
  /** The body parsed as JSON. */
  json(): unknown;
}

export interface HttpInit {
  method?: string;
  headers?: Record<string, string> | [string, string][];
  body?: Uint8Array | string;
}

function utf8(text: string): Uint8Array {
  const bytes = unescape(encodeURIComponent(text));
  return Uint8Array.from(bytes, (c) => c.charCodeAt(0));
}

function fromUtf8(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return decodeURIComponent(escape(binary));
}

/**
 * Sends an HTTP(S) request to a host the procedure holds `network:<host>`
 * for (synchronously: procedures are synchronous calls).
 */
export function httpFetch(url: string, init: HttpInit = {}): HttpResponse {
  const headers = Array.isArray(init.headers)
    ? init.headers
    : (Object.entries(init.headers ?? {}) as [string, string][]);
  const body = typeof init.body === "string" ? utf8(init.body) : (init.body ?? new Uint8Array(0));
  const answer = hostCall(() => host.httpFetch({ method: init.method ?? "GET", url, headers, body }));
  const data = Uint8Array.from(answer.body);
  return {
    status: answer.status,
    headers: answer.headers,
    body: data,
    text: () => fromUtf8(data),
    json: () => JSON.parse(fromUtf8(data)),
  };
}

/** The host's digest of `data` (sha256, sha3-256, blake2b, ...); needs `crypto`. */
export function digest(algorithm: string, data: Uint8Array | string): Uint8Array {
  const bytes = typeof data === "string" ? utf8(data) : data;
  return Uint8Array.from(hostCall(() => host.digest(algorithm, bytes)));
}

/** HMAC of `data` under `key` with `algorithm`; needs `crypto`. */
export function hmac(algorithm: string, key: Uint8Array, data: Uint8Array | string): Uint8Array {
  const bytes = typeof data === "string" ? utf8(data) : data;
  return Uint8Array.from(hostCall(() => host.hmac(algorithm, key, bytes)));
}

/** Lowercase hex of bytes (digests, MACs). */
export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A JSON result: `return json({ score, reasons })`. */
export function json(value: unknown): Json {
  return JSON.stringify(value) as Json;
}

// --- used by the generated entry module (heliosdb-wasm build) ----------------

/** What an export's result is converted with before it is returned. */
export type ResultKind = "value" | "json";

/**
 * Calls a procedure and maps what it throws onto the WIT `error` result.
 * Anything else thrown is a bug in the procedure: its stack goes to the log
 * and the call traps, as a panic would. QuickJS reports exhausted memory as
 * an "out of memory" InternalError, which the engine turns into
 * `limit-exceeded`.
 */
export function __invoke(body: () => unknown, kind: ResultKind): unknown {
  try {
    const result = body();
    if (kind === "json" && typeof result !== "string") return JSON.stringify(result);
    return result;
  } catch (err) {
    if (err instanceof ProcedureError) {
      throw { tag: "user-error", val: { code: err.code, message: err.message } };
    }
    if (err instanceof HostError) {
      if (err.code === "user-error") {
        throw { tag: "user-error", val: { code: err.userCode ?? "", message: err.message } };
      }
      throw { tag: err.code, val: err.message };
    }
    const stack = err instanceof Error ? `${err}\n${err.stack ?? ""}` : String(err);
    host.log("error", `uncaught ${stack}`.trimEnd());
    throw err;
  }
}
