// API-key authentication for the PostgreSQL-wire endpoint: a pre-parse hook
// (README.md).
//
// Every statement must come from a connection that presented an API key as
// a bearer token: the startup parameter `authorization`, or the option
// `-c authorization=Bearer\ <key>` in `options` (libpq clients). The plugin
// never holds the keys themselves, only their SHA-256 hashes:
//
//   {"keys": {"<sha256 hex of the key>": {"role": "analyst", "tenant": "acme", "user": "ci"}}}
//
// A known key sets the session variables auth.user, auth.role and tenant
// (empty when the entry has none), which the plugins after this one rely on
// and the client cannot SET; anything else is refused with SQLSTATE 28000.
// SHA-256 comes from the SDK, so the plugin needs no capabilities.

import { Json, raise } from "heliosdb";
import {
  CODE_CONFIG,
  Context,
  JsonValue,
  Verdict,
  allow,
  handlePreParse,
  quote,
  reject,
  sha256Hex,
} from "heliosdb/plugin";

const INVALID_AUTHORIZATION = "28000";
// Far beyond any sane API key; refusing early bounds the work per statement.
const MAX_TOKEN_CHARS = 4096;
const PARAMETER = "authorization";

export function pre_parse(request: Uint8Array): Json {
  return handlePreParse(request, authenticate);
}

function authenticate(ctx: Context, sql: string): Verdict {
  const keys = settings(ctx);
  const presented = authorization(ctx);
  if (presented.length == 0) {
    return reject(
      INVALID_AUTHORIZATION,
      "authentication required: connect with the startup parameter authorization " +
        "(or options='-c authorization=Bearer\\ <key>')",
    );
  }
  if (presented.length > 1) {
    return reject(INVALID_AUTHORIZATION, "more than one authorization: the connection is ambiguous");
  }
  const token = bearer(presented[0]);
  if (token === null) return reject(INVALID_AUTHORIZATION, refusal);
  const key = keys.get(sha256Hex(token));
  if (key === null) return reject(INVALID_AUTHORIZATION, "invalid API key");
  // The endpoint turns every startup parameter and `-c` option into a session
  // variable, so a client could bring its own `tenant` or `auth.role`. All
  // three are always set (empty when the entry has none): that overwrites
  // whatever the client sent and protects them from its SET.
  return allow()
    .setSession("auth.user", key.user)
    .setSession("auth.role", key.role)
    .setSession("tenant", key.tenant);
}

// --- finding the token ------------------------------------------------------------

// The distinct values of `authorization` among the startup parameters and
// the `-c` options, its name in any case (HTTP's header is case-insensitive,
// PostgreSQL folds option names).
function authorization(ctx: Context): string[] {
  const found = new Array<string>();
  const params = ctx.connectionParams;
  for (let i = 0; i < params.length; i++) {
    if (asciiLower(params[i].name) == PARAMETER) add(found, params[i].value);
  }
  const options = ctx.options();
  for (let i = 0; i < options.length; i++) {
    if (asciiLower(options[i].name) == PARAMETER) add(found, options[i].value);
  }
  return found;
}

function add(found: string[], value: string): void {
  if (!found.includes(value)) found.push(value);
}

let refusal = "";

// The token of `Bearer <token>` (or of a bare token); null with `refusal`
// set when it is neither. The message never quotes the token.
function bearer(value: string): string | null {
  let token = value.trim();
  const space = firstSpace(token);
  if (space >= 0) {
    if (asciiLower(token.substring(0, space)) != "bearer") {
      refusal = "unsupported authorization scheme (only Bearer)";
      return null;
    }
    token = token.substring(space + 1).trim();
  }
  if (token.length == 0 || token.length > MAX_TOKEN_CHARS || !isB64Token(token)) {
    refusal = "malformed API key (expected Bearer <token>, RFC 6750 characters)";
    return null;
  }
  return token;
}

function firstSpace(s: string): i32 {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x20 || c == 0x09) return i;
  }
  return -1;
}

// RFC 6750's b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
function isB64Token(s: string): bool {
  let i = 0;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const alnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
    if (!alnum && c != 0x2d && c != 0x2e && c != 0x5f && c != 0x7e && c != 0x2b && c != 0x2f) break;
  }
  if (i == 0) return false;
  for (; i < s.length; i++) if (s.charCodeAt(i) != 0x3d) return false;
  return true;
}

function asciiLower(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return s.toLowerCase();
  }
  return s;
}

// --- configuration ----------------------------------------------------------------

class Key {
  constructor(
    public user: string,
    public role: string,
    public tenant: string,
  ) {}
}

class Keys {
  byHash: Map<string, Key> = new Map<string, Key>();

  get(hash: string): Key | null {
    return this.byHash.has(hash) ? this.byHash.get(hash) : null;
  }
}

// An instance serves many statements with the same config, for which
// ctx.config() returns the same object: the keys are read once.
let cachedConfig: JsonValue | null = null;
let cached: Keys | null = null;

// The config's keys; a broken config fails every statement (it never lets
// one through unauthenticated).
function settings(ctx: Context): Keys {
  const config = ctx.config();
  if (config === cachedConfig) return cached!;
  const keys = readKeys(config);
  cachedConfig = config;
  cached = keys;
  return keys;
}

function bad(why: string): void {
  raise(CODE_CONFIG, "auth_token: " + why);
}

function readKeys(config: JsonValue): Keys {
  const unknown = config.unknownMember(["keys"]);
  if (unknown !== null) bad("config has no option " + quote(unknown) + " (only keys)");
  const table = config.get("keys");
  if (table === null || !table.isObject) {
    bad('config.keys must be a table {"<sha256 hex of a key>": {role, tenant, user}}');
  }
  if (table!.length == 0) bad("config.keys is empty: every statement would be refused");
  const keys = new Keys();
  for (let i = 0; i < table!.keys.length; i++) {
    const hash = table!.keys[i].toLowerCase();
    const where = "config.keys." + table!.keys[i];
    if (hash.length != 64 || !isHex(hash)) bad(where + ": not a SHA-256 (64 hex digits)");
    if (keys.byHash.has(hash)) bad(where + ": listed twice");
    const entry = table!.items[i];
    if (!entry.isObject) bad(where + " must be a table {role, tenant, user}");
    const other = entry.unknownMember(["role", "tenant", "user"]);
    if (other !== null) bad(where + " has no option " + quote(other) + " (only role, tenant, user)");
    keys.byHash.set(
      hash,
      new Key(field(entry, "user", where), field(entry, "role", where), field(entry, "tenant", where)),
    );
  }
  return keys;
}

function field(entry: JsonValue, name: string, where: string): string {
  const v = entry.get(name);
  if (v === null) return "";
  if (!v.isString) bad(where + "." + name + " must be a string");
  return v.text;
}

function isHex(s: string): bool {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return false;
  }
  return true;
}
