"""The ``http-fetch`` host function: HTTP(S) to granted hosts only.

A procedure holding ``network:<host>`` may send requests to that host (any
port, http or https) and to no other: the check is made on the parsed URL
before connecting, and again on every redirect, which is followed by hand.
Environment proxies are ignored (a proxy would be a different host), the
connection is bounded by the call's remaining wall-clock time and the body by
``max_fetch_bytes``.
"""

from __future__ import annotations

import http.client
import re
import ssl
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import CapabilityDenied, InvalidArgument, ResourceLimitExceeded

MAX_REDIRECTS = 5
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field names


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def fetch(
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    allowed: Callable[[str], bool],
    timeout: float,
    max_bytes: int,
) -> Response:
    """Send one request; ``allowed(host)`` says whether a host is granted."""
    method = method.upper()
    if method not in _METHODS:
        raise InvalidArgument(f"http-fetch: unsupported method {method!r}")
    for name, value in headers:
        if not _TOKEN.match(name) or any(c in value for c in "\r\n\0"):
            raise InvalidArgument(f"http-fetch: header {name!r} is malformed")
    if timeout <= 0:
        raise ResourceLimitExceeded(
            "http-fetch: the call's wall-clock limit is used up", limit="timeout"
        )
    for _ in range(MAX_REDIRECTS + 1):
        parts = _check(url, allowed)
        response, location = _send(parts, method, headers, body, timeout, max_bytes)
        if location is None:
            return response
        url = urllib.parse.urljoin(url, location)
        if response.status in (301, 302, 303):
            method, body = ("GET" if method != "HEAD" else "HEAD"), b""
    raise InvalidArgument(f"http-fetch: more than {MAX_REDIRECTS} redirects")


def _check(url: str, allowed: Callable[[str], bool]) -> urllib.parse.SplitResult:
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise InvalidArgument(f"http-fetch: malformed URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidArgument(f"http-fetch: only http and https URLs, not {url!r}")
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument("http-fetch: credentials in the URL are refused; use a header")
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidArgument(f"http-fetch: no host in {url!r}")
    if not allowed(host):
        raise CapabilityDenied(f"missing capability network:{host}")
    return parts


def _send(
    parts: urllib.parse.SplitResult,
    method: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    timeout: float,
    max_bytes: int,
) -> tuple[Response, str | None]:
    host = parts.hostname or ""
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            host, parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        # Header values go out as UTF-8 octets (http.client would force Latin-1).
        encoded = {name: value.encode("utf-8") for name, value in headers}
        conn.request(method, target, body=body or None, headers=encoded)
        raw = conn.getresponse()
        data = raw.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ResourceLimitExceeded(
                f"http-fetch: the response body is over max_fetch_bytes ({max_bytes})",
                limit="max_fetch_bytes",
            )
        response = Response(raw.status, [(k, v) for k, v in raw.getheaders()], data)
    except TimeoutError:
        raise ResourceLimitExceeded(
            f"http-fetch {host}: no answer within the call's remaining {timeout:.1f} s",
            limit="timeout",
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise InvalidArgument(f"http-fetch {host}: {exc}") from None
    finally:
        conn.close()
    location = raw.getheader("Location") if 300 <= raw.status < 400 else None
    return response, location
