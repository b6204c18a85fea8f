// The conformance world (tests/conformance/conformance.wit) in AssemblyScript.
import {
  Json,
  Nullable,
  Value,
  begin,
  commit,
  digest,
  execute,
  hex,
  hmac,
  httpFetch,
  jsonQuote,
  lastError,
  log,
  now,
  query,
  raise,
  rollback,
  tryQuery,
} from "heliosdb";

export class Numbered {
  i: i64 = 0;
  label: string = "";
  half: f64 = 0;
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

export function echoNullable(x: Nullable<i64> | null): Nullable<i64> | null {
  return x;
}

export function textChars(x: string): i64 {
  // Code points: a surrogate pair is one character.
  let n: i64 = 0;
  for (let i = 0; i < x.length; i++) {
    const c = x.charCodeAt(i);
    if (c < 0xdc00 || c > 0xdfff) n++;
  }
  return n;
}

export function blobSum(x: Uint8Array): i64 {
  let sum: i64 = 0;
  for (let i = 0; i < x.length; i++) sum += x[i];
  return sum;
}

export function numberedRows(n: i64): Numbered[] {
  const out = new Array<Numbered>();
  for (let i: i64 = 1; i <= n; i++) {
    const row = new Numbered();
    row.i = i;
    row.label = "row " + i.toString();
    row.half = <f64>i / 2;
    out.push(row);
  }
  return out;
}

export function makeJson(name: string, n: i64): Json {
  return '{"name":' + jsonQuote(name) + ',"n":' + n.toString() + ',"tags":["a","b"]}';
}

function count(sql: string, arg: Value): i64 {
  const rows = query(sql, [arg]);
  return rows.length > 0 ? rows.getInt(0, "n") : 0;
}

export function countLabel(label: string): i64 {
  return count("SELECT count(*) AS n FROM conf_items WHERE label = ?", Value.text(label));
}

export function queryErrorCase(): string {
  if (tryQuery("SELEKT 1") !== null) return "no error";
  return lastError()!.code;
}

export function queryErrorRaise(): i64 {
  query("SELEKT 1");
  return 0;
}

export function raiseUserError(code: string, message: string): i64 {
  raise(code, message);
  return 0;
}

function insert(id: i64): void {
  execute("INSERT INTO conf_items(id, label) VALUES (?, 'tx')", [Value.int(id)]);
}

function countId(id: i64): i64 {
  return count("SELECT count(*) AS n FROM conf_items WHERE id = ?", Value.int(id));
}

export function txCommit(id: i64): i64 {
  begin();
  insert(id);
  commit();
  return countId(id);
}

export function txRollback(id: i64): i64 {
  begin();
  insert(id);
  rollback();
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

let spins: i64 = 0;

export function spin(): i64 {
  while (true) spins++; // a global, so the optimizer keeps the loop
}

export function allocateMib(mib: i64): i64 {
  // One MiB at a time, each touched, all kept.
  const blocks = new Array<Uint8Array>();
  for (let k: i64 = 0; k < mib; k++) {
    const block = new Uint8Array(1 << 20);
    block.fill(1);
    blocks.push(block);
  }
  return blocks.length;
}

export function readSecret(): i64 {
  const rows = query("SELECT x FROM conf_secret");
  return rows.length > 0 ? rows.getInt(0, "x") : 0;
}

export function sha256Hex(x: Uint8Array): string {
  return hex(digest("sha256", x));
}

export function hmacSha256Hex(key: Uint8Array, data: Uint8Array): string {
  return hex(hmac("sha256", key, data));
}

export function fetchText(url: string): string {
  const answer = httpFetch(url);
  return answer.status.toString() + " " + answer.text();
}
