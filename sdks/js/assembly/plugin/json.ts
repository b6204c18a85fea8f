// A small, strict JSON reader and writer for plugins (AssemblyScript has no
// JSON of its own). It reads exactly RFC 8259 JSON, plus the NaN, Infinity
// and -Infinity that Python's json module writes for non-finite reals (the
// engine's requests carry them for SQLite's infinities), and nothing else:
// no comments, no trailing commas, no duplicate object keys, no control
// characters in strings. It never recurses, so a deeply nested document
// costs heap, not stack, and is refused past `maxDepth` with an error.
//
// Objects keep their members in order (as Python's dicts and the engine's
// AST do); numbers keep their text, so an integer beyond 2^53 survives
// exactly and `asI64()` reads it from its digits.

/** Nesting refused beyond this depth by default (serde_json's is 128). */
export const MAX_DEPTH: i32 = 512;

export enum JsonKind {
  Null = 0,
  Bool = 1,
  Number = 2,
  String = 3,
  Array = 4,
  Object = 5,
}

// Objects with this many members or more get a hash index for lookups.
const INDEXED = 16;
// What scalars hold as items and keys: an allocation is dear under
// AssemblyScript's incremental collector (about a thousand instructions),
// so only arrays and objects get arrays of their own.
const NO_ITEMS: JsonValue[] = [];
const NO_KEYS: string[] = [];

/** One JSON value. Arrays and objects are mutable; keys keep their order. */
export class JsonValue {
  kind: JsonKind = JsonKind.Null;
  /** Bool: the value. */
  flag: bool = false;
  /** String: the value; Number: its text as written ("1.50", "-7", "Infinity"). */
  text: string = "";
  /** Array: the elements; Object: the member values, in the order of `keys`.
   * Read-only: change arrays and objects with push(), set() and remove(). */
  items: JsonValue[] = NO_ITEMS;
  /** Object: the member names (read-only, as `items`). */
  keys: string[] = NO_KEYS;
  private index: Map<string, i32> | null = null;

  static null(): JsonValue {
    return new JsonValue();
  }
  static bool(b: bool): JsonValue {
    const v = new JsonValue();
    v.kind = JsonKind.Bool;
    v.flag = b;
    return v;
  }
  static string(s: string): JsonValue {
    const v = new JsonValue();
    v.kind = JsonKind.String;
    v.text = s;
    return v;
  }
  static integer(n: i64): JsonValue {
    return JsonValue.number(n.toString());
  }
  static real(x: f64): JsonValue {
    return JsonValue.number(formatReal(x));
  }
  /** A number from its text, which must be a JSON number (or NaN, ±Infinity). */
  static number(text: string): JsonValue {
    const v = new JsonValue();
    v.kind = JsonKind.Number;
    v.text = text;
    return v;
  }
  static array(items: JsonValue[] | null = null): JsonValue {
    const v = new JsonValue();
    v.kind = JsonKind.Array;
    v.items = items !== null ? items : new Array<JsonValue>();
    return v;
  }
  static object(): JsonValue {
    const v = new JsonValue();
    v.kind = JsonKind.Object;
    v.items = new Array<JsonValue>();
    v.keys = new Array<string>();
    return v;
  }

  get isNull(): bool {
    return this.kind == JsonKind.Null;
  }
  get isBool(): bool {
    return this.kind == JsonKind.Bool;
  }
  get isNumber(): bool {
    return this.kind == JsonKind.Number;
  }
  get isString(): bool {
    return this.kind == JsonKind.String;
  }
  get isArray(): bool {
    return this.kind == JsonKind.Array;
  }
  get isObject(): bool {
    return this.kind == JsonKind.Object;
  }

  /** Elements of an array, members of an object, 0 otherwise. */
  get length(): i32 {
    return this.kind == JsonKind.Array || this.kind == JsonKind.Object ? this.items.length : 0;
  }

  /** Element `i` of an array (or the value of member `i` of an object). */
  at(i: i32): JsonValue {
    return this.items[i];
  }

  /** A string's text ("" for anything else). */
  asString(): string {
    return this.kind == JsonKind.String ? this.text : "";
  }

  asBool(): bool {
    return this.kind == JsonKind.Bool && this.flag;
  }

  /** Whether this is a number written as an integer (no fraction or exponent). */
  isInteger(): bool {
    if (this.kind != JsonKind.Number) return false;
    const s = this.text;
    const start = s.length > 0 && s.charCodeAt(0) == 0x2d ? 1 : 0;
    if (start == s.length) return false;
    for (let i = start; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x30 || c > 0x39) return false;
    }
    return true;
  }

  /** Whether the number is an integer within i64 (read from its digits). */
  fitsI64(): bool {
    if (!this.isInteger()) return false;
    return parseI64(this.text) != null;
  }

  /** The integer, exactly; 0 unless fitsI64(). */
  asI64(): i64 {
    const n = this.isInteger() ? parseI64(this.text) : null;
    return n === null ? 0 : n.value;
  }

  /** Whether the number is a non-negative integer within u64. */
  fitsU64(): bool {
    if (!this.isInteger()) return false;
    return parseU64(this.text) != null;
  }

  /** The non-negative integer, exactly; 0 unless fitsU64(). */
  asU64(): u64 {
    const n = this.isInteger() ? parseU64(this.text) : null;
    return n === null ? 0 : n.value;
  }

  /** The number as the nearest double (correctly rounded); 0 for non-numbers. */
  asF64(): f64 {
    return this.kind == JsonKind.Number ? parseReal(this.text) : 0;
  }

  /** The value of member `key` of an object, or null (not a JSON null: absent). */
  get(key: string): JsonValue | null {
    if (this.kind != JsonKind.Object) return null;
    const i = this.find(key);
    return i < 0 ? null : this.items[i];
  }

  has(key: string): bool {
    return this.kind == JsonKind.Object && this.find(key) >= 0;
  }

  /** Sets member `key` of an object (replacing it in place, else appending). */
  set(key: string, value: JsonValue): JsonValue {
    assert(this.kind == JsonKind.Object, "JsonValue.set on a non-object");
    if (this.keys === NO_KEYS) this.keys = new Array<string>(); // made with new JsonValue()
    if (this.items === NO_ITEMS) this.items = new Array<JsonValue>();
    const i = this.find(key);
    if (i >= 0) {
      this.items[i] = value;
    } else {
      this.keys.push(key);
      this.items.push(value);
      const index = this.index;
      if (index !== null) index.set(key, this.keys.length - 1);
      else if (this.keys.length >= INDEXED) this.reindex();
    }
    return this;
  }

  /** Removes member `key`; whether it was there. */
  remove(key: string): bool {
    if (this.kind != JsonKind.Object) return false;
    const i = this.find(key);
    if (i < 0) return false;
    this.keys.splice(i, 1);
    this.items.splice(i, 1);
    if (this.index !== null) this.reindex();
    return true;
  }

  /** Appends an element to an array. */
  push(value: JsonValue): JsonValue {
    assert(this.kind == JsonKind.Array, "JsonValue.push on a non-array");
    if (this.items === NO_ITEMS) this.items = new Array<JsonValue>();
    this.items.push(value);
    return this;
  }

  /** The first member name of an object not in `allowed`, or null: for configs
   * that must refuse a misspelt option rather than fall back to its default. */
  unknownMember(allowed: string[]): string | null {
    for (let i = 0; i < this.keys.length; i++) {
      if (!allowed.includes(this.keys[i])) return this.keys[i];
    }
    return null;
  }

  /** The value as JSON text (compact; non-ASCII text as is, lone surrogates as U+FFFD). */
  toJson(): string {
    const w = new JsonWriter();
    w.json(this);
    return w.finish();
  }

  private find(key: string): i32 {
    const index = this.index;
    if (index !== null) return index.has(key) ? index.get(key) : -1;
    const keys = this.keys;
    for (let i = 0; i < keys.length; i++) if (keys[i] == key) return i;
    return -1;
  }

  private reindex(): void {
    const index = new Map<string, i32>();
    for (let i = 0; i < this.keys.length; i++) index.set(this.keys[i], i);
    this.index = index;
  }
}

// --- reading -----------------------------------------------------------------------

let lastError = "";

/** Why the last parseJson returned null ("" after a success). */
export function lastJsonError(): string {
  return lastError;
}

/**
 * Parses `text` as one JSON value; null if it is not JSON (or nests deeper
 * than `maxDepth`), and lastJsonError() says why and where.
 */
export function parseJson(text: string, maxDepth: i32 = MAX_DEPTH): JsonValue | null {
  const s = new Scanner(text, maxDepth);
  const v = s.tree();
  s.end();
  lastError = s.error;
  return s.ok ? v : null;
}

// @ts-ignore: decorator
@inline
function unit(base: usize, i: i32): i32 {
  return <i32>load<u16>(base + (<usize>i << 1));
}

// The characters that may follow a backslash, but u.
function isEscape(c: i32): bool {
  // " \ / b f n r t
  return (
    c == 0x22 || c == 0x5c || c == 0x2f || c == 0x62 || c == 0x66 || c == 0x6e || c == 0x72 || c == 0x74
  );
}

// A level of the scanner's stack: the closing bracket, negated until the
// level's first member or element has been asked for.
const OBJECT_CLOSE = 0x7d;
const ARRAY_CLOSE = 0x5d;

/**
 * A pull reader over JSON text, for reading a document straight into typed
 * values without building a tree. (The SDK reads the engine's requests this
 * way: an allocation costs about a thousand instructions under
 * AssemblyScript's incremental collector, a tree node several.)
 *
 *   s.beginObject();
 *   while (s.more()) {
 *     s.key();
 *     if (s.keyIs("sql")) sql = s.string();
 *     else s.skip();
 *   }
 *   s.end();
 *
 * The first error stops it: `error` says what and where, every read after
 * returns a default and every more() is false. Nesting beyond `maxDepth` is
 * an error; nothing recurses.
 */
export class Scanner {
  s: string;
  pos: i32 = 0;
  error: string = "";
  maxDepth: i32;
  private levels: i32[] = [];
  // The last key read by key(): its span in `s`, or its text when escaped.
  private keyStart: i32 = 0;
  private keyEnd: i32 = 0;
  private keyText: string | null = null;
  // The span of the last number read.
  private numberStart: i32 = 0;

  // The text's code units, read with unit() where a bound is checked
  // already: String#charCodeAt costs several times as much.
  private base: usize;
  private n: i32;

  constructor(s: string, maxDepth: i32 = MAX_DEPTH) {
    this.s = s;
    this.maxDepth = maxDepth;
    this.base = changetype<usize>(s);
    this.n = s.length;
  }

  get ok(): bool {
    return this.error.length == 0;
  }

  /** Open arrays and objects. */
  get depth(): i32 {
    return this.levels.length;
  }

  /** Records the first error and stops the scanner. */
  fail(message: string): void {
    if (this.error.length == 0) this.error = message + " (at offset " + this.pos.toString() + ")";
    this.pos = this.n;
  }

  private ws(): void {
    let pos = this.pos;
    const n = this.n;
    const base = this.base;
    while (pos < n) {
      const c = unit(base, pos);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      pos++;
    }
    this.pos = pos;
  }

  /** The next character after white space, -1 at the end. */
  peek(): i32 {
    this.ws();
    return this.pos < this.n ? unit(this.base, this.pos) : -1;
  }

  /** Consumes `word` if it comes next. */
  literal(word: string): bool {
    this.ws();
    if (this.s.startsWith(word, this.pos)) {
      this.pos += word.length;
      return true;
    }
    return false;
  }

  /** Consumes a `null` if one comes next. */
  null(): bool {
    return this.peek() == 0x6e && this.literal("null");
  }

  /** Checks that nothing but white space follows. */
  end(): void {
    if (this.ok && this.peek() != -1) this.fail("unexpected data after the JSON value");
  }

  /** Enters an object (an error unless one comes next); then more() before each member. */
  beginObject(): bool {
    return this.begin(0x7b, OBJECT_CLOSE, "an object");
  }

  /** Enters an array; then more() before each element. */
  beginArray(): bool {
    return this.begin(0x5b, ARRAY_CLOSE, "an array");
  }

  private begin(open: i32, close: i32, what: string): bool {
    if (this.peek() != open) {
      this.fail("expected " + what);
      return false;
    }
    if (this.levels.length >= this.maxDepth) {
      this.fail("nested deeper than " + this.maxDepth.toString() + " levels");
      return false;
    }
    this.pos++;
    this.levels.push(-close);
    return true;
  }

  /** Whether the innermost open object or array has another member or
   * element; consumes the comma before it, or the closing bracket. */
  more(): bool {
    if (!this.ok || this.levels.length == 0) return false;
    const top = this.levels.length - 1;
    const level = this.levels[top];
    const close = level < 0 ? -level : level;
    const c = this.peek();
    if (c == close) {
      this.pos++;
      this.levels.pop();
      return false;
    }
    if (level < 0) {
      this.levels[top] = close;
      return true;
    }
    if (c != 0x2c) {
      this.fail(close == OBJECT_CLOSE ? "expected , or } in an object" : "expected , or ] in an array");
      return false;
    }
    this.pos++;
    return true;
  }

  /** Reads an object member's key and its colon; compare it with keyIs(). */
  key(): void {
    if (this.peek() != 0x22) {
      this.fail("expected a string key");
      return;
    }
    const s = this.s;
    const start = this.pos + 1;
    let i = start;
    while (i < this.n) {
      const c = unit(this.base, i);
      if (c == 0x22 || c == 0x5c || c < 0x20) break;
      i++;
    }
    if (i < this.n && unit(this.base, i) == 0x22) {
      this.keyStart = start;
      this.keyEnd = i;
      this.keyText = null;
      this.pos = i + 1;
    } else {
      this.keyText = this.string();
    }
    if (this.peek() != 0x3a) this.fail("expected : after a key");
    else this.pos++;
  }

  private skipKey(): void {
    if (this.peek() != 0x22) {
      this.fail("expected a string key");
      return;
    }
    this.skipString();
    if (this.peek() != 0x3a) this.fail("expected : after a key");
    else this.pos++;
  }

  /** Whether the key key() read is `name` (compared in place: no allocation). */
  keyIs(name: string): bool {
    const text = this.keyText;
    if (text !== null) return text == name;
    const n = this.keyEnd - this.keyStart;
    if (n != name.length) return false;
    const at = changetype<usize>(this.s) + (<usize>this.keyStart << 1);
    return memory.compare(at, changetype<usize>(name), <usize>n << 1) == 0;
  }

  /** The key key() read, as a string. */
  keyString(): string {
    const text = this.keyText;
    return text !== null ? text : this.s.substring(this.keyStart, this.keyEnd);
  }

  /** Whether the next value is the string `text`, consumed if so (compared
   * in place; a string with escapes never matches). */
  stringIs(text: string): bool {
    if (this.peek() != 0x22) return false;
    const end = this.pos + 1 + text.length;
    if (end >= this.n || unit(this.base, end) != 0x22) return false;
    const at = changetype<usize>(this.s) + (<usize>(this.pos + 1) << 1);
    if (memory.compare(at, changetype<usize>(text), <usize>text.length << 1) != 0) return false;
    this.pos = end + 1;
    return true;
  }

  /** A string value ("" and an error for anything else). */
  string(): string {
    if (this.peek() != 0x22) {
      this.fail("expected a string");
      return "";
    }
    const s = this.s;
    this.pos++;
    const start = this.pos;
    // The common case: no escapes, a slice of the input.
    let pos = start;
    const n = this.n;
    const base = this.base;
    while (pos < n) {
      const c = unit(base, pos);
      if (c == 0x22) {
        this.pos = pos + 1;
        return s.substring(start, pos);
      }
      if (c == 0x5c || c < 0x20) break;
      pos++;
    }
    this.pos = pos;
    if (pos < n && unit(base, pos) < 0x20) {
      this.fail("a control character in a string");
      return "";
    }
    if (this.pos >= this.n) {
      this.fail("an unterminated string");
      return "";
    }
    const b = new Utf16Builder(this.pos - start + 16);
    b.slice(s, start, this.pos);
    while (this.pos < this.n) {
      const c = unit(this.base, this.pos);
      if (c == 0x22) {
        this.pos++;
        return b.finish();
      }
      if (c < 0x20) {
        this.fail("a control character in a string");
        return "";
      }
      if (c != 0x5c) {
        b.push(c);
        this.pos++;
        continue;
      }
      this.pos++;
      if (this.pos >= this.n) break;
      const e = unit(this.base, this.pos);
      this.pos++;
      if (e == 0x22 || e == 0x5c || e == 0x2f) b.push(e);
      else if (e == 0x62) b.push(0x08);
      else if (e == 0x66) b.push(0x0c);
      else if (e == 0x6e) b.push(0x0a);
      else if (e == 0x72) b.push(0x0d);
      else if (e == 0x74) b.push(0x09);
      else if (e == 0x75) {
        const u = this.hex4();
        if (u < 0) return "";
        if (u >= 0xd800 && u < 0xdc00 && s.startsWith("\\u", this.pos)) {
          const save = this.pos;
          this.pos += 2;
          const low = this.hex4();
          if (low < 0) return "";
          if (low >= 0xdc00 && low < 0xe000) {
            b.push(u);
            b.push(low);
            continue;
          }
          this.pos = save; // not a pair: the second escape stands alone
        }
        // A lone surrogate is not text: U+FFFD, as Go's encoding/json reads it.
        b.push(u >= 0xd800 && u < 0xe000 ? 0xfffd : u);
      } else {
        this.pos--;
        this.fail("an invalid escape in a string");
        return "";
      }
    }
    this.fail("an unterminated string");
    return "";
  }

  // Steps over a string (checked as string() checks it) without building it.
  private skipString(): void {
    this.pos++;
    while (this.pos < this.n) {
      // A run without escapes, with a local index.
      let pos = this.pos;
      const n = this.n;
      const base = this.base;
      let c = 0;
      while (pos < n) {
        c = unit(base, pos);
        if (c == 0x22 || c == 0x5c || c < 0x20) break;
        pos++;
      }
      this.pos = pos;
      if (pos >= n) break;
      if (c == 0x22) {
        this.pos++;
        return;
      }
      if (c < 0x20) {
        this.fail("a control character in a string");
        return;
      }
      this.pos++;
      if (this.pos >= this.n) break;
      const e = unit(this.base, this.pos);
      this.pos++;
      if (e == 0x75) {
        if (this.hex4() < 0) return;
      } else if (!isEscape(e)) {
        this.pos--;
        this.fail("an invalid escape in a string");
        return;
      }
    }
    this.fail("an unterminated string");
  }

  private hex4(): i32 {
    const s = this.s;
    if (this.pos + 4 > this.n) {
      this.fail("a short \\u escape");
      return -1;
    }
    let u = 0;
    for (let i = 0; i < 4; i++) {
      const c = unit(this.base, this.pos + i);
      let d = -1;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x61 + 10;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x41 + 10;
      if (d < 0) {
        this.fail("an invalid \\u escape");
        return -1;
      }
      u = (u << 4) | d;
    }
    this.pos += 4;
    return u;
  }

  private digits(): i32 {
    const s = this.s;
    const start = this.pos;
    while (this.pos < this.n) {
      const c = unit(this.base, this.pos);
      if (c < 0x30 || c > 0x39) break;
      this.pos++;
    }
    return this.pos - start;
  }

  // A number checked against the grammar, from numberStart to pos; NaN,
  // Infinity and -Infinity too. False (and an error) if none comes next.
  private numberSpan(): bool {
    const s = this.s;
    const c = this.peek();
    this.numberStart = this.pos;
    if (c == 0x4e && this.literal("NaN")) return true;
    if (c == 0x49 && this.literal("Infinity")) return true;
    if (c == 0x2d && this.literal("-Infinity")) return true;
    if (c == 0x2d) this.pos++;
    const intStart = this.pos;
    const n = this.digits();
    if (n == 0 || (n > 1 && unit(this.base, intStart) == 0x30)) {
      this.fail(c == 0x2d || (c >= 0x30 && c <= 0x39) ? "malformed number" : "expected a number");
      return false;
    }
    if (this.pos < this.n && unit(this.base, this.pos) == 0x2e) {
      this.pos++;
      if (this.digits() == 0) {
        this.fail("expected digits after the decimal point");
        return false;
      }
    }
    if (this.pos < this.n && (unit(this.base, this.pos) | 0x20) == 0x65) {
      this.pos++;
      if (this.pos < this.n) {
        const sign = unit(this.base, this.pos);
        if (sign == 0x2b || sign == 0x2d) this.pos++;
      }
      if (this.digits() == 0) {
        this.fail("expected digits in the exponent");
        return false;
      }
    }
    return true;
  }

  /** A number's text as written ("" and an error for anything else). */
  number(): string {
    return this.numberSpan() ? this.s.substring(this.numberStart, this.pos) : "";
  }

  /** An integer within i64, read from its digits without allocating; 0 and
   * an error for anything else (a fraction, an exponent, too many digits). */
  int64(): i64 {
    if (!this.numberSpan()) return 0;
    const s = this.s;
    let i = this.numberStart;
    const neg = unit(this.base, i) == 0x2d;
    if (neg) i++;
    let n: u64 = 0;
    for (; i < this.pos; i++) {
      const d = unit(this.base, i) - 0x30;
      if (d < 0 || d > 9 || n > (0xffffffffffffffff - <u64>d) / 10) {
        this.fail("not a whole number within i64");
        return 0;
      }
      n = n * 10 + <u64>d;
    }
    if (neg ? n > 0x8000000000000000 : n > 0x7fffffffffffffff) {
      this.fail("not a whole number within i64");
      return 0;
    }
    return neg ? <i64>(0 - n) : <i64>n;
  }

  /** A non-negative integer within u64 (0 and an error otherwise). */
  uint64(): u64 {
    if (!this.numberSpan()) return 0;
    const n = parseU64(this.s.substring(this.numberStart, this.pos));
    if (n === null) {
      this.fail("not a whole number within u64");
      return 0;
    }
    return n.value;
  }

  /** A number as the nearest double (correctly rounded); NaN and
   * ±Infinity as Python's json module writes them. */
  real(): f64 {
    if (!this.numberSpan()) return 0;
    return parseRealSpan(this.s, this.numberStart, this.pos);
  }

  /** true or false (false and an error for anything else). */
  bool(): bool {
    if (this.literal("true")) return true;
    if (!this.literal("false")) this.fail("expected true or false");
    return false;
  }

  /** Skips one value, whatever its nesting (within maxDepth), without recursion. */
  skip(): void {
    const base = this.levels.length;
    while (this.ok) {
      const c = this.peek();
      if (c == 0x7b || c == 0x5b) {
        if (c == 0x7b ? this.beginObject() : this.beginArray()) {
          if (this.more()) {
            if (c == 0x7b) this.skipKey();
            continue; // its first value
          }
        }
      } else if (c == 0x22) {
        this.skipString();
      } else if (c == 0x74 || c == 0x66) {
        this.bool();
      } else if (c == 0x6e) {
        if (!this.null()) this.fail("expected a JSON value");
      } else if (!this.numberSpan()) {
        return;
      }
      // A value ended: close the containers that end with it.
      let next = false;
      while (this.levels.length > base && this.ok) {
        const object = abs(this.levels[this.levels.length - 1]) == OBJECT_CLOSE;
        if (this.more()) {
          if (object) this.skipKey();
          next = true;
          break;
        }
      }
      if (!next) return;
    }
  }

  /** The next value as a tree. */
  tree(): JsonValue | null {
    const stack = new Array<JsonValue>();
    const pendingKeys = new Array<string>();
    let value: JsonValue | null = null;
    while (true) {
      const c = this.peek();
      if (c == 0x7b || c == 0x5b) {
        if (stack.length >= this.maxDepth) {
          this.fail("nested deeper than " + this.maxDepth.toString() + " levels");
          return null;
        }
        this.pos++;
        const object = c == 0x7b;
        const container = object ? JsonValue.object() : JsonValue.array();
        if (this.peek() == (object ? OBJECT_CLOSE : ARRAY_CLOSE)) {
          this.pos++;
          value = container;
        } else {
          stack.push(container);
          if (object) {
            this.key();
            if (!this.ok) return null;
            pendingKeys.push(this.keyString());
          } else {
            pendingKeys.push("");
          }
          continue;
        }
      } else {
        value = this.scalar(c);
        if (value === null) return null;
      }
      // A value is complete: add it to its container, closing those that end.
      while (true) {
        if (stack.length == 0) return value;
        const top = stack[stack.length - 1];
        if (top.isObject) {
          const key = pendingKeys[pendingKeys.length - 1];
          if (top.has(key)) {
            this.fail("duplicate key " + quote(key));
            return null;
          }
          top.set(key, value);
        } else {
          top.items.push(value);
        }
        const d = this.peek();
        if (d == 0x2c) {
          this.pos++;
          if (top.isObject) {
            this.key();
            if (!this.ok) return null;
            pendingKeys[pendingKeys.length - 1] = this.keyString();
          }
          break; // the next value
        }
        if (d == (top.isObject ? OBJECT_CLOSE : ARRAY_CLOSE)) {
          this.pos++;
          stack.pop();
          pendingKeys.pop();
          value = top;
          continue;
        }
        this.fail(top.isObject ? "expected , or } in an object" : "expected , or ] in an array");
        return null;
      }
    }
    return null; // not reached
  }

  private scalar(c: i32): JsonValue | null {
    if (c == 0x22) {
      const s = this.string();
      return this.ok ? JsonValue.string(s) : null;
    }
    if (c == 0x74 && this.literal("true")) return JsonValue.bool(true);
    if (c == 0x66 && this.literal("false")) return JsonValue.bool(false);
    if (c == 0x6e && this.literal("null")) return JsonValue.null();
    if (c == 0x2d || (c >= 0x30 && c <= 0x39) || c == 0x4e || c == 0x49) {
      const n = this.number();
      return this.ok ? JsonValue.number(n) : null;
    }
    this.fail(c == -1 ? "unexpected end of the JSON text" : "expected a JSON value");
    return null;
  }
}

// --- writing -----------------------------------------------------------------------

/** A growable UTF-16 buffer that becomes a string. */
export class Utf16Builder {
  buf: ArrayBuffer;
  len: i32 = 0; // in code units

  constructor(capacity: i32 = 64) {
    this.buf = new ArrayBuffer(max(capacity, 16) << 1);
  }

  private reserve(n: i32): usize {
    const need = (this.len + n) << 1;
    if (need > this.buf.byteLength) {
      let size = this.buf.byteLength << 1;
      while (size < need) size <<= 1;
      const grown = new ArrayBuffer(size);
      memory.copy(changetype<usize>(grown), changetype<usize>(this.buf), <usize>(this.len << 1));
      this.buf = grown;
    }
    const at = changetype<usize>(this.buf) + (<usize>this.len << 1);
    this.len += n;
    return at;
  }

  push(c: i32): void {
    store<u16>(this.reserve(1), <u16>c);
  }

  /** Appends s[start, end). */
  slice(s: string, start: i32, end: i32): void {
    const n = end - start;
    if (n <= 0) return;
    memory.copy(this.reserve(n), changetype<usize>(s) + (<usize>start << 1), <usize>(n << 1));
  }

  append(s: string): void {
    this.slice(s, 0, s.length);
  }

  finish(): string {
    return String.UTF16.decodeUnsafe(changetype<usize>(this.buf), <usize>(this.len << 1));
  }
}

const HEX = "0123456789abcdef";

/** Writes JSON text piece by piece; finish() returns it. */
export class JsonWriter {
  out: Utf16Builder;

  constructor(capacity: i32 = 64) {
    this.out = new Utf16Builder(capacity);
  }

  /** Text that is already JSON (punctuation, a number's text). */
  raw(s: string): JsonWriter {
    this.out.append(s);
    return this;
  }

  /** `s` as a JSON string: quotes, control characters and U+2028/9 escaped,
   * lone surrogates (which are not text, and not UTF-8) as U+FFFD. */
  string(s: string): JsonWriter {
    const out = this.out;
    out.push(0x22);
    let run = 0;
    const n = s.length;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x20 && c != 0x22 && c != 0x5c && c < 0xd800 && c != 0x2028 && c != 0x2029) continue;
      if (c >= 0xd800 && c < 0xdc00 && i + 1 < n) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d < 0xe000) {
          i++; // a valid pair: copied with the run
          continue;
        }
      }
      if (c >= 0xe000) continue;
      out.slice(s, run, i);
      run = i + 1;
      if (c == 0x22) out.append('\\"');
      else if (c == 0x5c) out.append("\\\\");
      else if (c == 0x0a) out.append("\\n");
      else if (c == 0x0d) out.append("\\r");
      else if (c == 0x09) out.append("\\t");
      else if (c >= 0xd800 && c < 0xe000) out.append("\\ufffd");
      else {
        out.append("\\u");
        out.push(HEX.charCodeAt((c >> 12) & 15));
        out.push(HEX.charCodeAt((c >> 8) & 15));
        out.push(HEX.charCodeAt((c >> 4) & 15));
        out.push(HEX.charCodeAt(c & 15));
      }
    }
    out.slice(s, run, n);
    out.push(0x22);
    return this;
  }

  /** A JSON value tree, without recursion. */
  json(root: JsonValue): JsonWriter {
    const values = new Array<JsonValue>();
    const next = new Array<i32>();
    values.push(root);
    next.push(-1);
    while (values.length > 0) {
      const top = values.length - 1;
      const v = values[top];
      if (v.kind == JsonKind.Array || v.kind == JsonKind.Object) {
        const object = v.kind == JsonKind.Object;
        let i = next[top];
        if (i < 0) {
          this.out.push(object ? 0x7b : 0x5b);
          i = 0;
        }
        if (i < v.items.length) {
          if (i > 0) this.out.push(0x2c);
          if (object) {
            this.string(v.keys[i]);
            this.out.push(0x3a);
          }
          next[top] = i + 1;
          const child = v.items[i];
          if (child.kind == JsonKind.Array || child.kind == JsonKind.Object) {
            values.push(child);
            next.push(-1);
          } else {
            this.scalar(child);
          }
        } else {
          this.out.push(object ? 0x7d : 0x5d);
          values.pop();
          next.pop();
        }
      } else {
        this.scalar(v);
        values.pop();
        next.pop();
      }
    }
    return this;
  }

  private scalar(v: JsonValue): void {
    if (v.kind == JsonKind.String) this.string(v.text);
    else if (v.kind == JsonKind.Number) this.out.append(v.text);
    else if (v.kind == JsonKind.Bool) this.out.append(v.flag ? "true" : "false");
    else this.out.append("null");
  }

  finish(): string {
    return this.out.finish();
  }
}

/** `s` as a JSON string literal, quotes included. */
export function quote(s: string): string {
  return new JsonWriter(s.length + 8).string(s).finish();
}

// --- numbers -----------------------------------------------------------------------

/** A parsed integer (AssemblyScript has no i64 | null). */
export class I64 {
  constructor(public value: i64) {}
}

export class U64 {
  constructor(public value: u64) {}
}

/** An integer's digits (optional "-"), exactly, or null beyond i64 or malformed. */
export function parseI64(s: string): I64 | null {
  const neg = s.length > 0 && s.charCodeAt(0) == 0x2d;
  const digits = neg ? s.substring(1) : s;
  const magnitude = parseU64(digits);
  if (magnitude === null) return null;
  const m = magnitude.value;
  if (neg) {
    if (m > 0x8000000000000000) return null;
    return new I64(<i64>(0 - m));
  }
  if (m > 0x7fffffffffffffff) return null;
  return new I64(<i64>m);
}

/** Decimal digits, exactly, or null beyond u64, empty or not digits. */
export function parseU64(s: string): U64 | null {
  if (s.length == 0 || s.length > 20) return null;
  let n: u64 = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return null;
    const d = <u64>(c - 0x30);
    if (n > (0xffffffffffffffff - d) / 10) return null;
    n = n * 10 + d;
  }
  return new U64(n);
}

/**
 * A double as JSON that reads back as the same double and as a real:
 * "2.0", not "2" (which a reader takes for an integer); "-0.0" keeps its
 * sign; non-finite values as Python's json module writes them (Infinity,
 * -Infinity, NaN), since JSON has no spelling for them and SQLite does
 * have infinities.
 */
export function formatReal(x: f64): string {
  if (isNaN(x)) return "NaN";
  if (!isFinite(x)) return x > 0 ? "Infinity" : "-Infinity";
  if (x == 0) return 1 / x < 0 ? "-0.0" : "0.0";
  const s = x.toString(); // round-trips (Grisu), but may be a digit longer than the shortest
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x2e || c == 0x65) return s;
  }
  return s + ".0";
}

const POW10: StaticArray<f64> = [
  1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
  1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/**
 * The double nearest to the JSON number `s` (or NaN, ±Infinity), correctly
 * rounded: exact arithmetic when the digits and the power of ten are exact
 * doubles (Clinger's fast path), else Go strconv's decimal algorithm.
 * (AssemblyScript's own parseFloat is off by far for some inputs.)
 */
export function parseReal(s: string): f64 {
  return parseRealSpan(s, 0, s.length);
}

/** parseReal of s[start, end), without allocating on the fast path (NaN for
 * text that is not a number). */
export function parseRealSpan(s: string, start: i32, end: i32): f64 {
  const n = end - start;
  if (n == 3 && s.startsWith("NaN", start)) return NaN;
  if (n == 8 && s.startsWith("Infinity", start)) return Infinity;
  if (n == 9 && s.startsWith("-Infinity", start)) return -Infinity;
  // Clinger's fast path: at most 15 significant digits and a power of ten
  // within 10^±22, both exact doubles, so one operation rounds once.
  let i = start;
  const neg = i < end && s.charCodeAt(i) == 0x2d;
  if (neg || (i < end && s.charCodeAt(i) == 0x2b)) i++;
  let m: u64 = 0;
  let nd = 0; // significant digits
  let dp = 0; // digits before the point, leading zeros left out
  let sawDot = false;
  let sawDigits = false;
  for (; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x2e && !sawDot) {
      sawDot = true;
      continue;
    }
    if (c < 0x30 || c > 0x39) break;
    sawDigits = true;
    if (c == 0x30 && nd == 0) {
      if (sawDot) dp--;
      continue;
    }
    if (!sawDot) dp++;
    if (nd < 19) m = m * 10 + <u64>(c - 0x30);
    nd++;
  }
  if (!sawDigits) return NaN;
  let e = 0;
  if (i < end && (s.charCodeAt(i) | 0x20) == 0x65) {
    i++;
    let esign = 1;
    if (i < end && (s.charCodeAt(i) == 0x2b || s.charCodeAt(i) == 0x2d)) {
      if (s.charCodeAt(i) == 0x2d) esign = -1;
      i++;
    }
    if (i >= end) return NaN;
    for (; i < end; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x30 || c > 0x39) return NaN;
      if (e < 10000) e = e * 10 + (c - 0x30);
    }
    e *= esign;
  }
  if (i != end) return NaN;
  let x: f64;
  const exp10 = dp + e - nd;
  if (nd == 0) {
    x = 0;
  } else if (nd <= 15 && exp10 >= -22 && exp10 <= 22) {
    const f = <f64>m;
    x = exp10 >= 0 ? f * POW10[exp10] : f / POW10[-exp10];
  } else {
    const d = DECIMAL;
    d.reset();
    d.read(s, start, end);
    x = reinterpret<f64>(d.floatBits());
  }
  return neg ? -x : x;
}

const DEC_MAX: i32 = 800;
const MAX_SHIFT: u32 = 60;
const POWTAB: StaticArray<i32> = [1, 3, 6, 9, 13, 16, 19, 23, 26];

// A decimal number 0.d[0]d[1]... × 10^dp with up to DEC_MAX digits (values
// 0-9), shifted by powers of two until its binary exponent is known
// (Go's strconv/decimal.go). One serves every slow-path conversion.
class Decimal {
  d: Uint8Array = new Uint8Array(DEC_MAX);
  nd: i32 = 0;
  dp: i32 = 0;
  neg: bool = false;
  trunc: bool = false;

  reset(): void {
    this.nd = 0;
    this.dp = 0;
    this.neg = false;
    this.trunc = false;
  }

  // The digits of a number parseRealSpan has checked; the sign is its business.
  read(s: string, start: i32, end: i32): void {
    let i = start;
    const c0 = s.charCodeAt(i);
    if (c0 == 0x2d || c0 == 0x2b) i++;
    let sawDot = false;
    for (; i < end; i++) {
      const c = s.charCodeAt(i);
      if (c == 0x2e) {
        sawDot = true;
        this.dp = this.nd;
        continue;
      }
      if (c < 0x30 || c > 0x39) break;
      if (c == 0x30 && this.nd == 0) {
        this.dp--; // leading zeros
        continue;
      }
      if (this.nd < DEC_MAX) {
        this.d[this.nd++] = <u8>(c - 0x30);
      } else if (c != 0x30) {
        this.trunc = true;
      }
    }
    if (!sawDot) this.dp = this.nd;
    if (i < end) {
      i++; // e or E
      let esign = 1;
      if (s.charCodeAt(i) == 0x2b || s.charCodeAt(i) == 0x2d) {
        if (s.charCodeAt(i) == 0x2d) esign = -1;
        i++;
      }
      let e = 0;
      for (; i < end; i++) if (e < 10000) e = e * 10 + (s.charCodeAt(i) - 0x30);
      this.dp += e * esign;
    }
    if (this.nd == 0) this.dp = 0;
  }

  trim(): void {
    while (this.nd > 0 && this.d[this.nd - 1] == 0) this.nd--;
    if (this.nd == 0) this.dp = 0;
  }

  rightShift(k: u32): void {
    const d = this.d;
    let r = 0;
    let w = 0;
    let n: u64 = 0;
    for (; n >> k == 0; r++) {
      if (r >= this.nd) {
        if (n == 0) {
          this.nd = 0;
          return;
        }
        while (n >> k == 0) {
          n = n * 10;
          r++;
        }
        break;
      }
      n = n * 10 + <u64>d[r];
    }
    this.dp -= r - 1;
    const mask: u64 = (<u64>1 << k) - 1;
    for (; r < this.nd; r++) {
      const c = <u64>d[r];
      const dig = n >> k;
      n &= mask;
      d[w++] = <u8>dig;
      n = n * 10 + c;
    }
    while (n > 0) {
      const dig = n >> k;
      n &= mask;
      if (w < DEC_MAX) d[w++] = <u8>dig;
      else if (dig > 0) this.trunc = true;
      n = n * 10;
    }
    this.nd = w;
    this.trim();
  }

  leftShift(k: u32): void {
    const d = this.d;
    // At most floor(k·log10 2) + 1 new digits; one fewer when the leading
    // digits are small, which the move below corrects.
    const delta = <i32>((<u64>k * 30103) / 100000) + 1;
    const end = this.nd + delta;
    let w = end;
    let n: u64 = 0;
    for (let r = this.nd - 1; r >= 0; r--) {
      n += <u64>d[r] << k;
      const quo = n / 10;
      const rem = n - 10 * quo;
      w--;
      if (w < DEC_MAX) d[w] = <u8>rem;
      else if (rem != 0) this.trunc = true;
      n = quo;
    }
    while (n > 0) {
      const quo = n / 10;
      const rem = n - 10 * quo;
      w--;
      if (w < DEC_MAX) d[w] = <u8>rem;
      else if (rem != 0) this.trunc = true;
      n = quo;
    }
    const top = min(end, DEC_MAX);
    if (w > 0) d.copyWithin(0, w, top);
    this.dp += delta - w;
    this.nd = top - w;
    this.trim();
  }

  shift(k: i32): void {
    if (this.nd == 0) return;
    if (k > 0) {
      while (k > <i32>MAX_SHIFT) {
        this.leftShift(MAX_SHIFT);
        k -= <i32>MAX_SHIFT;
      }
      this.leftShift(<u32>k);
    } else if (k < 0) {
      while (k < -(<i32>MAX_SHIFT)) {
        this.rightShift(MAX_SHIFT);
        k += <i32>MAX_SHIFT;
      }
      this.rightShift(<u32>-k);
    }
  }

  shouldRoundUp(nd: i32): bool {
    if (nd < 0 || nd >= this.nd) return false;
    if (this.d[nd] == 5 && nd + 1 == this.nd) {
      if (this.trunc) return true; // above halfway
      return nd > 0 && this.d[nd - 1] % 2 != 0; // exactly halfway: to even
    }
    return this.d[nd] >= 5;
  }

  roundedInteger(): u64 {
    if (this.dp > 20) return 0xffffffffffffffff;
    let n: u64 = 0;
    let i = 0;
    for (; i < this.dp && i < this.nd; i++) n = n * 10 + <u64>this.d[i];
    for (; i < this.dp; i++) n *= 10;
    if (this.shouldRoundUp(this.dp)) n++;
    return n;
  }

  // The bits of the double nearest to the (positive) decimal.
  floatBits(): u64 {
    const MANT_BITS = 52;
    const EXP_BITS = 11;
    const BIAS = -1023;
    let exp = 0;
    let mant: u64 = 0;
    if (this.dp > 310) return <u64>0x7ff << MANT_BITS; // Infinity
    if (this.dp < -330) return 0;
    while (this.dp > 0) {
      const n = this.dp >= POWTAB.length ? 27 : POWTAB[this.dp];
      this.shift(-n);
      exp += n;
    }
    while (this.dp < 0 || (this.dp == 0 && this.d[0] < 5)) {
      const n = -this.dp >= POWTAB.length ? 27 : POWTAB[-this.dp];
      this.shift(n);
      exp -= n;
    }
    exp--; // [0.5, 1) → [1, 2)
    if (exp < BIAS + 1) {
      const n = BIAS + 1 - exp;
      this.shift(-n);
      exp += n;
    }
    if (exp - BIAS >= (1 << EXP_BITS) - 1) return <u64>0x7ff << MANT_BITS;
    this.shift(1 + MANT_BITS);
    mant = this.roundedInteger();
    if (mant == <u64>2 << MANT_BITS) {
      mant >>= 1;
      exp++;
      if (exp - BIAS >= (1 << EXP_BITS) - 1) return <u64>0x7ff << MANT_BITS;
    }
    if ((mant & (<u64>1 << MANT_BITS)) == 0) exp = BIAS; // subnormal
    const biased = <u64>((exp - BIAS) & ((1 << EXP_BITS) - 1));
    return (mant & ((<u64>1 << MANT_BITS) - 1)) | (biased << MANT_BITS);
  }
}

const DECIMAL = new Decimal();

// --- UTF-8 -----------------------------------------------------------------------

/**
 * The offset of the first byte of `data` that is not well-formed UTF-8
 * (overlong forms, surrogates and code points above U+10FFFF included), or
 * -1 when it all is. AssemblyScript's own decoder accepts anything.
 */
export function invalidUtf8(ptr: usize, len: i32): i32 {
  let i = 0;
  while (i < len) {
    const c = <u32>load<u8>(ptr + <usize>i);
    if (c < 0x80) {
      i++;
      continue;
    }
    let need = 0;
    let lo: u32 = 0x80;
    let hi: u32 = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c == 0xe0) {
      need = 2;
      lo = 0xa0;
    } else if (c == 0xed) {
      need = 2;
      hi = 0x9f;
    } else if (c >= 0xe1 && c <= 0xef) need = 2;
    else if (c == 0xf0) {
      need = 3;
      lo = 0x90;
    } else if (c == 0xf4) {
      need = 3;
      hi = 0x8f;
    } else if (c >= 0xf1 && c <= 0xf3) need = 3;
    else return i;
    if (i + need >= len) return i; // truncated
    const c1 = <u32>load<u8>(ptr + <usize>(i + 1));
    if (c1 < lo || c1 > hi) return i;
    for (let k = 2; k <= need; k++) {
      const ck = <u32>load<u8>(ptr + <usize>(i + k));
      if (ck < 0x80 || ck > 0xbf) return i;
    }
    i += need + 1;
  }
  return -1;
}

// The four low bytes of `v` as four 16-bit units.
// @ts-ignore: decorator
@inline
function widen(v: u64): u64 {
  return (v & 0xff) | ((v & 0xff00) << 8) | ((v & 0xff0000) << 16) | ((v & 0xff000000) << 24);
}

/**
 * `len` bytes at `ptr` decoded as UTF-8, or null unless they are all
 * well-formed UTF-8 (invalidUtf8 then tells where they are not). One pass,
 * ASCII eight bytes at a time.
 */
export function decodeUtf8(ptr: usize, len: i32): string | null {
  const out = __new(<usize>len << 1, idof<String>());
  let o = out;
  let i = 0;
  while (i < len) {
    if (i + 8 <= len && (load<u64>(ptr + <usize>i) & 0x8080808080808080) == 0) {
      // Widen eight ASCII bytes to eight UTF-16 units.
      const v = load<u64>(ptr + <usize>i);
      store<u64>(o, widen(v));
      store<u64>(o, widen(v >> 32), 8);
      o += 16;
      i += 8;
      continue;
    }
    const c = <u32>load<u8>(ptr + <usize>i);
    if (c < 0x80) {
      store<u16>(o, <u16>c);
      o += 2;
      i++;
      continue;
    }
    let need = 0;
    let lo: u32 = 0x80;
    let hi: u32 = 0xbf;
    let cp: u32 = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      need = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      cp = c & 0x0f;
      if (c == 0xe0) lo = 0xa0;
      else if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      cp = c & 0x07;
      if (c == 0xf0) lo = 0x90;
      else if (c == 0xf4) hi = 0x8f;
    } else {
      return null;
    }
    if (i + need >= len) return null;
    for (let k = 1; k <= need; k++) {
      const ck = <u32>load<u8>(ptr + <usize>(i + k));
      if (k == 1 ? ck < lo || ck > hi : ck < 0x80 || ck > 0xbf) return null;
      cp = (cp << 6) | (ck & 0x3f);
    }
    if (cp < 0x10000) {
      store<u16>(o, <u16>cp);
      o += 2;
    } else {
      cp -= 0x10000;
      store<u16>(o, <u16>(0xd800 | (cp >> 10)));
      store<u16>(o, <u16>(0xdc00 | (cp & 0x3ff)), 2);
      o += 4;
    }
    i += need + 1;
  }
  return changetype<string>(__renew(out, o - out));
}

/** `s` with every lone surrogate replaced by U+FFFD. */
export function wellFormed(s: string): string {
  const n = s.length;
  let b: Utf16Builder | null = null;
  let run = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c >= 0xe000) continue;
    if (c < 0xdc00 && i + 1 < n) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        i++;
        continue;
      }
    }
    if (b === null) b = new Utf16Builder(n);
    b.slice(s, run, i);
    b.push(0xfffd);
    run = i + 1;
  }
  if (b === null) return s;
  b.slice(s, run, n);
  return b.finish();
}

/** `s` as UTF-8, or null if it holds a lone surrogate (which UTF-8 cannot hold:
 * AssemblyScript's encoder would write WTF-8, which the host refuses). */
export function utf8(s: string): ArrayBuffer | null {
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c < 0xe000) {
      if (c >= 0xdc00 || i + 1 >= n) return null;
      const d = s.charCodeAt(i + 1);
      if (d < 0xdc00 || d >= 0xe000) return null;
      i++;
    }
  }
  return String.UTF8.encode(s);
}
