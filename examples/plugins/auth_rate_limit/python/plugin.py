"""Authentication and rate limiting for the PostgreSQL-wire endpoint.

Every statement must come from a connection that presented an HS256 JWT,
as the startup parameter ``jwt`` or as ``-c jwt=...`` in ``options``
(``psql "host=... options='-c jwt=eyJ...'"``). The token's ``sub`` becomes
the session variable ``auth.user``, its role and tenant claims ``auth.role``
and ``tenant`` (empty when the token has no such claim), which the plugins
after this one (tenant isolation, masking) rely on and the client cannot
``SET``. Each user may run at most ``rate_limit.queries`` statements per
``rate_limit.window_ms``.

Config (the manifest's ``[plugin.config]``)::

    {"secret": "...", "issuer": "...", "audience": "...",
     "role_claim": "role", "tenant_claim": "tenant", "leeway_seconds": 0,
     "rate_limit": {"queries": 100, "window_ms": 1000}}

``secret`` is required; ``issuer`` and ``audience`` are checked when given;
without ``rate_limit`` there is no limit. HMAC-SHA256 comes from Python's own
``hmac``, so the plugin needs no capabilities.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from typing import Any

from heliosdb_procedures import ProcedureError, now
from heliosdb_procedures.plugin import Context, Verdict, allow, count_in_window, pre_parse, reject

INVALID_AUTHORIZATION = "28000"
LIMIT_EXCEEDED = "53400"
# Far beyond any sane HS256 token; refusing early bounds the work per statement.
MAX_TOKEN_CHARS = 8192
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


class InvalidToken(Exception):
    """Why a token was refused; the message never contains the token."""


@pre_parse
def authenticate(ctx: Context, sql: str) -> Verdict:
    config = _settings(ctx.config())
    token = find_token(ctx)
    if token is None:
        return reject(
            INVALID_AUTHORIZATION,
            "authentication required: connect with a JWT in the startup parameter jwt "
            "(or options='-c jwt=<token>')",
        )
    try:
        claims = verify(token, config, now_us=now())
    except InvalidToken as exc:
        return reject(INVALID_AUTHORIZATION, f"invalid token: {exc}")
    user = claims["sub"]
    limit = config.get("rate_limit")
    if limit is not None:
        queries, window_ms = limit["queries"], limit["window_ms"]
        if count_in_window(f"user:{user}", window_ms) > queries:
            return reject(
                LIMIT_EXCEEDED, f"rate limit exceeded: {queries} queries per {window_ms} ms"
            )
    # The endpoint turns every startup parameter and `-c` option into a session
    # variable, so a client could bring its own `tenant` or `auth.role`. All
    # three are always set (empty when the token lacks the claim): that
    # overwrites whatever the client sent and protects them from its SET.
    verdict = allow().set_session("auth.user", user)
    for variable, claim in ("auth.role", "role_claim"), ("tenant", "tenant_claim"):
        verdict.set_session(variable, claims.get(config[claim], ""))
    return verdict


# -- finding the token --------------------------------------------------------------


def find_token(ctx: Context) -> str | None:
    """The ``jwt`` startup parameter, else ``-c jwt=...`` inside ``options``."""
    token = ctx.connection("jwt")
    if not token:
        token = option_settings(ctx.connection("options") or "").get("jwt")
    if not token:
        return None
    token = token.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    return token or None


def option_settings(options: str) -> dict[str, str]:
    """The ``-c name=value`` (and ``--name=value``) settings of a PostgreSQL
    ``options`` string: words separated by spaces, a backslash escaping the
    next character, as the server splits it."""
    words: list[str] = []
    word: list[str] = []
    started = False
    chars = iter(options)
    for ch in chars:
        if ch == "\\":
            word.append(next(chars, ""))
            started = True
        elif ch.isspace():
            if started:
                words.append("".join(word))
            word, started = [], False
        else:
            word.append(ch)
            started = True
    if started:
        words.append("".join(word))
    settings: dict[str, str] = {}
    pending = False
    for w in words:
        if pending:
            setting, pending = w, False
        elif w == "-c":
            pending = True
            continue
        elif w.startswith("-c"):
            setting = w[2:]
        elif w.startswith("--"):
            setting = w[2:]
            name, eq, value = setting.partition("=")
            setting = name.replace("-", "_") + eq + value
        else:
            continue
        name, eq, value = setting.partition("=")
        if eq:
            settings[name] = value
    return settings


# -- verifying it --------------------------------------------------------------------


def _b64url(segment: str) -> bytes:
    if not _SEGMENT.fullmatch(segment):
        raise InvalidToken("malformed token")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed token") from None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise InvalidToken(f"malformed token {what}") from None
    if not isinstance(value, dict):
        raise InvalidToken(f"malformed token {what}")
    return value


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"claim {name} is not a number")
    return float(value)


def verify(token: str, config: dict[str, Any], now_us: int) -> dict[str, Any]:
    """The claims of an HS256 token signed with ``config["secret"]`` that is
    valid at ``now_us``; InvalidToken says what is wrong."""
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken("token too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("malformed token (expected header.payload.signature)")
    header_b64, payload_b64, signature_b64 = parts
    header = _json_object(_b64url(header_b64), "header")
    # The algorithm is pinned, never taken from the token: "none" or an
    # asymmetric alg verified with the shared secret are classic forgeries.
    if header.get("alg") != "HS256":
        raise InvalidToken("unsupported signing algorithm (only HS256 is accepted)")
    if "crit" in header:
        raise InvalidToken("unsupported critical header extensions")
    signature = _b64url(signature_b64) if signature_b64 else b""
    expected = hmac.digest(
        config["secret"].encode("utf-8"), f"{header_b64}.{payload_b64}".encode("ascii"), "sha256"
    )
    if not hmac.compare_digest(expected, signature):
        raise InvalidToken("bad signature")
    claims = _json_object(_b64url(payload_b64), "payload")

    now_s = now_us / 1_000_000
    leeway = config["leeway_seconds"]
    expires = _number(claims, "exp")
    if expires is not None and now_s >= expires + leeway:
        raise InvalidToken("token expired")
    not_before = _number(claims, "nbf")
    if not_before is not None and now_s + leeway < not_before:
        raise InvalidToken("token not yet valid")
    issuer = config.get("issuer")
    if issuer is not None and claims.get("iss") != issuer:
        raise InvalidToken("wrong issuer")
    audience = config.get("audience")
    if audience is not None:
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if audience not in audiences:
            raise InvalidToken("wrong audience")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("the token has no subject (sub)")
    for name in (config["role_claim"], config["tenant_claim"]):
        value = claims.get(name)
        if value is None:
            claims.pop(name, None)
        elif isinstance(value, str):
            pass
        elif isinstance(value, int) and not isinstance(value, bool):
            claims[name] = str(value)
        else:
            raise InvalidToken(f"claim {name} is not a string")
    return claims


# -- configuration -----------------------------------------------------------------


def _settings(raw: dict[str, Any]) -> dict[str, Any]:
    """The config with defaults; a broken one fails every statement (never
    lets one through unauthenticated)."""

    def bad(why: str) -> ProcedureError:
        return ProcedureError("invalid-config", f"auth_rate_limit: {why}")

    secret = raw.get("secret")
    if not isinstance(secret, str) or not secret:
        raise bad("config.secret (the HS256 key) is missing")
    config = dict(raw)
    config.setdefault("role_claim", "role")
    config.setdefault("tenant_claim", "tenant")
    config.setdefault("leeway_seconds", 0)
    for key in ("issuer", "audience", "role_claim", "tenant_claim"):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise bad(f"config.{key} must be a string")
    leeway = config["leeway_seconds"]
    if isinstance(leeway, bool) or not isinstance(leeway, int | float) or leeway < 0:
        raise bad("config.leeway_seconds must be a non-negative number")
    limit = config.get("rate_limit")
    if limit is not None:
        if not isinstance(limit, dict):
            raise bad("config.rate_limit must be a table {queries, window_ms}")
        for key, least in (("queries", 0), ("window_ms", 1)):
            value = limit.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise bad(f"config.rate_limit.{key} must be an integer >= {least}")
    return config
