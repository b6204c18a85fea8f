// The conformance world (tests/conformance/conformance.wit) in TypeScript.
import {
  HostError,
  ProcedureError,
  digest,
  execute,
  hex,
  hmac,
  httpFetch,
  json,
  log,
  now,
  queryOne,
  transaction,
  type Json,
  type bool,
  type f32,
  type f64,
  type i32,
  type i64,
} from "heliosdb";

export interface Numbered {
  i: i64;
  label: string;
  half: f64;
}

export function echoI64(x: i64): i64 {
  return x;
}

export function echoI32(x: i32): i32 {
  return x;
}

export function echoF64(x: f64): f64 {
  return x;
}

export function echoF32(x: f32): f32 {
  return x;
}

export function echoBool(x: bool): bool {
  return x;
}

export function echoText(x: string): string {
  return x;
}

export function echoBlob(x: Uint8Array): Uint8Array {
  return x;
}

export function echoNullable(x: i64 | null): i64 | null {
  return x;
}

export function textChars(x: string): i64 {
  return [...x].length; // code points, not UTF-16 units
}

export function blobSum(x: Uint8Array): i64 {
  return x.reduce((sum, b) => sum + b, 0);
}

export function numberedRows(n: i64): Numbered[] {
  return Array.from({ length: n }, (_, k) => ({ i: k + 1, label: `row ${k + 1}`, half: (k + 1) / 2 }));
}

export function makeJson(name: string, n: i64): Json {
  return json({ name, n, tags: ["a", "b"] });
}

function count(sql: string, arg: i64 | string): i64 {
  return Number(queryOne(sql, arg)?.n ?? 0);
}

export function countLabel(label: string): i64 {
  return count("SELECT count(*) AS n FROM conf_items WHERE label = ?", label);
}

export function queryErrorCase(): string {
  try {
    queryOne("SELEKT 1");
  } catch (err) {
    if (err instanceof HostError) return err.code;
    throw err;
  }
  return "no error";
}

export function queryErrorRaise(): i64 {
  queryOne("SELEKT 1");
  return 0;
}

export function raiseUserError(code: string, message: string): i64 {
  throw new ProcedureError(code, message);
}

function insert(id: i64): void {
  execute("INSERT INTO conf_items(id, label) VALUES (?, 'tx')", id);
}

const countId = (id: i64): i64 => count("SELECT count(*) AS n FROM conf_items WHERE id = ?", id);

export function txCommit(id: i64): i64 {
  transaction(() => insert(id));
  return countId(id);
}

class Rollback extends Error {}

export function txRollback(id: i64): i64 {
  try {
    transaction(() => {
      insert(id);
      throw new Rollback();
    });
  } catch (err) {
    if (!(err instanceof Rollback)) throw err;
  }
  return countId(id);
}

export function insertThenTrap(id: i64): i64 {
  insert(id);
  throw new Error("trapping on purpose after an insert");
}

export function logLevels(): i64 {
  log.trace("t");
  log.debug("d");
  log.info("i");
  log.warn("w");
  log.error("e");
  return 5;
}

export function nowMicros(): i64 {
  return now();
}

export function trap(): i64 {
  throw new Error("trapping on purpose");
}

export function spin(): i64 {
  let n = 0;
  for (;;) n++;
}

export function allocateMib(mib: i64): i64 {
  // One MiB at a time, each touched, all kept.
  const blocks: Uint8Array[] = [];
  for (let k = 0; k < mib; k++) blocks.push(new Uint8Array(1 << 20).fill(1));
  return blocks.length;
}

export function readSecret(): i64 {
  return Number(queryOne("SELECT x FROM conf_secret")?.x ?? 0);
}

export function sha256Hex(x: Uint8Array): string {
  return hex(digest("sha256", x));
}

export function hmacSha256Hex(key: Uint8Array, data: Uint8Array): string {
  return hex(hmac("sha256", key, data));
}

export function fetchText(url: string): string {
  const answer = httpFetch(url);
  return `${answer.status} ${answer.text()}`;
}
