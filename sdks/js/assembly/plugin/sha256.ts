// SHA-256 (FIPS 180-4) in AssemblyScript, so that a plugin can hash without
// the `crypto` capability the host's heliosdb_digest needs. Checked against
// the FIPS test vectors and against hashlib on random inputs
// (tests/plugins/test_auth_token_assemblyscript.py).

import { Utf16Builder, wellFormed } from "./json";

const K: StaticArray<u32> = [
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/** An incremental SHA-256: update() any number of times, then digest() once
 * (reset() starts over). */
export class Sha256 {
  private h: StaticArray<u32> = new StaticArray<u32>(8);
  private w: StaticArray<u32> = new StaticArray<u32>(64);
  private block: StaticArray<u8> = new StaticArray<u8>(64);
  private filled: i32 = 0;
  private total: u64 = 0; // bytes

  constructor() {
    this.reset();
  }

  reset(): Sha256 {
    const h = this.h;
    h[0] = 0x6a09e667;
    h[1] = 0xbb67ae85;
    h[2] = 0x3c6ef372;
    h[3] = 0xa54ff53a;
    h[4] = 0x510e527f;
    h[5] = 0x9b05688c;
    h[6] = 0x1f83d9ab;
    h[7] = 0x5be0cd19;
    this.filled = 0;
    this.total = 0;
    return this;
  }

  update(data: Uint8Array): Sha256 {
    this.updateRaw(data.dataStart, data.length);
    return this;
  }

  /** The UTF-8 bytes of `text` (a lone surrogate as U+FFFD, never WTF-8). */
  updateText(text: string): Sha256 {
    const bytes = String.UTF8.encode(wellFormed(text));
    this.updateRaw(changetype<usize>(bytes), bytes.byteLength);
    return this;
  }

  updateRaw(ptr: usize, len: i32): void {
    this.total += <u64>len;
    const block = changetype<usize>(this.block);
    let i = 0;
    if (this.filled > 0) {
      const n = min(64 - this.filled, len);
      memory.copy(block + <usize>this.filled, ptr, <usize>n);
      this.filled += n;
      i = n;
      if (this.filled < 64) return;
      this.compress(block);
      this.filled = 0;
    }
    for (; i + 64 <= len; i += 64) this.compress(ptr + <usize>i);
    if (i < len) {
      memory.copy(block, ptr + <usize>i, <usize>(len - i));
      this.filled = len - i;
    }
  }

  /** The digest (32 bytes). */
  digest(): Uint8Array {
    const out = new Uint8Array(32);
    this.digestInto(out.dataStart);
    return out;
  }

  // Pads in the block buffer and writes the 32 bytes of the digest at `out`.
  private digestInto(out: usize): void {
    const block = changetype<usize>(this.block);
    const bits = this.total << 3;
    let f = this.filled;
    store<u8>(block + <usize>f, 0x80);
    f++;
    if (f > 56) {
      memory.fill(block + <usize>f, 0, <usize>(64 - f));
      this.compress(block);
      f = 0;
    }
    memory.fill(block + <usize>f, 0, <usize>(56 - f));
    store<u64>(block + 56, bswap<u64>(bits));
    this.compress(block);
    for (let i = 0; i < 8; i++) store<u32>(out + <usize>(4 * i), bswap<u32>(this.h[i]));
  }

  /** The digest in lowercase hex. */
  hexDigest(): string {
    const raw = changetype<usize>(SCRATCH);
    this.digestInto(raw);
    const out = new Utf16Builder(64);
    for (let i = 0; i < 32; i++) {
      const b = <i32>load<u8>(raw + <usize>i);
      out.push(DIGITS.charCodeAt(b >> 4));
      out.push(DIGITS.charCodeAt(b & 15));
    }
    return out.finish();
  }

  private compress(p: usize): void {
    const w = this.w;
    for (let t = 0; t < 16; t++) {
      w[t] = bswap<u32>(load<u32>(p + <usize>(4 * t)));
    }
    for (let t = 16; t < 64; t++) {
      const x = w[t - 15];
      const y = w[t - 2];
      const s0 = rotr<u32>(x, 7) ^ rotr<u32>(x, 18) ^ (x >>> 3);
      const s1 = rotr<u32>(y, 17) ^ rotr<u32>(y, 19) ^ (y >>> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    const h = this.h;
    let a = h[0];
    let b = h[1];
    let c = h[2];
    let d = h[3];
    let e = h[4];
    let f = h[5];
    let g = h[6];
    let hh = h[7];
    for (let t = 0; t < 64; t++) {
      const S1 = rotr<u32>(e, 6) ^ rotr<u32>(e, 11) ^ rotr<u32>(e, 25);
      const ch = (e & f) ^ (~e & g);
      const t1 = hh + S1 + ch + K[t] + w[t];
      const S0 = rotr<u32>(a, 2) ^ rotr<u32>(a, 13) ^ rotr<u32>(a, 22);
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = S0 + maj;
      hh = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
  }
}

// Digests read as hex go through here, and sha256Hex reuses one hasher: an
// allocation costs as much as compressing a block.
const SCRATCH = new StaticArray<u8>(32);
const HASHER = new Sha256();

/** The SHA-256 digest of `data` (32 bytes). */
export function sha256(data: Uint8Array): Uint8Array {
  return new Sha256().update(data).digest();
}

/** Lowercase hex of the SHA-256 of `text`'s UTF-8 bytes. */
export function sha256Hex(text: string): string {
  return HASHER.reset().updateText(text).hexDigest();
}

const DIGITS = "0123456789abcdef";

/** Lowercase hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  const out = new Utf16Builder(bytes.length * 2);
  for (let i = 0; i < bytes.length; i++) {
    out.push(DIGITS.charCodeAt(bytes[i] >> 4));
    out.push(DIGITS.charCodeAt(bytes[i] & 15));
  }
  return out.finish();
}

/** Whether two byte strings are equal, in time that depends only on their
 * lengths (for comparing secrets and MACs). */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): bool {
  if (a.length != b.length) return false;
  let diff: u32 = 0;
  for (let i = 0; i < a.length; i++) diff |= <u32>(a[i] ^ b[i]);
  return diff == 0;
}
