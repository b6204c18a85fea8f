"""Client authentication at startup: ``trust``, or SCRAM-SHA-256 (RFC 5802,
RFC 7677) over PostgreSQL's SASL messages, with ``tls-server-end-point``
channel binding (SCRAM-SHA-256-PLUS, RFC 5929) on a TLS connection.

The exchange, as PostgreSQL runs it::

    server  AuthenticationSASL (R 10): the mechanisms
    client  SASLInitialResponse ('p'): mechanism, client-first-message
    server  AuthenticationSASLContinue (R 11): server-first-message
    client  SASLResponse ('p'): client-final-message
    server  AuthenticationSASLFinal (R 12): server-final-message, then AuthenticationOk

The role is the startup packet's ``user``; the user name inside the SCRAM
messages is ignored, as PostgreSQL ignores it. A role that does not exist,
has no password or may not log in goes through the same exchange against a
made-up verifier (roles.mock_salt) and fails at its end with the same
message as a wrong password: nobody learns from the server which roles exist.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from ..errors import RoleError
from ..roles import ITERATIONS, MECHANISM, Role, Verifier, mock_salt
from .protocol import Body, Terminate

AuthMode = Literal["scram", "trust"]
AUTH_MODES: tuple[AuthMode, ...] = ("scram", "trust")
MECHANISM_PLUS = MECHANISM + "-PLUS"
CHANNEL_BINDING = "tls-server-end-point"
# PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH: a longer SASL message is refused
# before it is read.
MAX_SASL_BYTES = 65535
_NONCE_BYTES = 18  # what PostgreSQL's server nonce has

AUTH_OK, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = 0, 10, 11, 12


class Wire(Protocol):
    """What the exchange needs of the connection."""

    def send_auth(self, code: int, payload: bytes = b"") -> None:
        """Send an Authentication message (R) and flush it."""

    def read_sasl(self) -> Body:
        """The body of the client's next SASL message ('p'), by the startup deadline."""


def failed(user: str) -> Terminate:
    """The one answer to every failed authentication (28P01)."""
    return Terminate("28P01", f'password authentication failed for user "{user}"')


def _violation(message: str) -> Terminate:
    return Terminate("08P01", message)


@dataclass(frozen=True)
class Credentials:
    """What the server checks a client's proof against, real or made up."""

    verifier: Verifier
    real: bool

    @classmethod
    def of(cls, role: Role | None, user: str, mock_secret: bytes) -> Credentials:
        if role is not None and role.login and role.verifier is not None:
            with contextlib.suppress(RoleError):  # a damaged row lets nobody in
                return cls(Verifier.parse(role.verifier), True)
        # Random keys: no proof matches them, and nothing about them repeats.
        fake = Verifier(
            ITERATIONS,
            mock_salt(mock_secret, user),
            secrets.token_bytes(32),
            secrets.token_bytes(32),
        )
        return cls(fake, False)


def scram(
    wire: Wire,
    user: str,
    credentials: Callable[[], Credentials],
    binding: bytes | None,
) -> None:
    """Authenticate ``user`` with SCRAM-SHA-256; returns once the client has
    proved it knows the password (AuthenticationSASLFinal sent), else raises
    Terminate (28P01 for a wrong proof, 08P01 for a malformed exchange).
    ``binding``: the connection's tls-server-end-point data (TLS only), which
    also offers SCRAM-SHA-256-PLUS."""
    mechanisms = [MECHANISM_PLUS, MECHANISM] if binding is not None else [MECHANISM]
    wire.send_auth(AUTH_SASL, b"".join(m.encode() + b"\0" for m in mechanisms) + b"\0")
    body = wire.read_sasl()
    mechanism = body.cstring()
    length = body.int32()
    if mechanism not in mechanisms:
        raise _violation("client selected an invalid SASL authentication mechanism")
    if length < 0:
        raise _violation("malformed SCRAM message: the initial response is missing")
    initial = body.take(length)
    body.end()
    exchange = _Exchange(mechanism == MECHANISM_PLUS, binding)
    exchange.client_first(_text(initial))
    found = credentials()
    wire.send_auth(AUTH_SASL_CONTINUE, exchange.server_first(found.verifier).encode())
    text = _text(wire.read_sasl().data)
    if not exchange.client_final(text, found.verifier) or not found.real:
        raise failed(user)
    wire.send_auth(AUTH_SASL_FINAL, exchange.server_final(found.verifier).encode())


def _text(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _violation("malformed SCRAM message: not UTF-8") from None
    if "\0" in text:
        raise _violation("malformed SCRAM message: a NUL character")
    return text


def _printable(value: str) -> bool:
    """A nonce's characters: printable ASCII except ',' (RFC 5802)."""
    return bool(value) and all(0x21 <= ord(c) <= 0x7E and c != "," for c in value)


def _check_extensions(attributes: list[str]) -> None:
    """Extensions are ignored, but must be attributes (``x=value``)."""
    for attribute in attributes:
        if len(attribute) < 2 or attribute[1] != "=" or not attribute[0].isalpha():
            raise _violation("malformed SCRAM message: an attribute is not of the form x=value")


class _Exchange:
    """One SCRAM conversation's state, message by message."""

    def __init__(self, plus: bool, binding: bytes | None) -> None:
        self.plus = plus
        self.binding = binding
        self.gs2_header = ""
        self.client_first_bare = ""
        self.client_nonce = ""
        self.nonce = ""
        self.server_first_message = ""
        self.auth_message = b""

    def client_first(self, text: str) -> None:
        """gs2-header client-first-message-bare (RFC 5802 section 7)."""
        flag, sep, rest = text.partition(",")
        if not sep:
            raise _violation("malformed SCRAM message: no GS2 header")
        if flag == "n" or flag == "y":
            if self.plus:
                raise _violation(
                    "malformed SCRAM message: SCRAM-SHA-256-PLUS was selected, but the "
                    "message does not include channel binding data"
                )
            if flag == "y" and self.binding is not None:
                # The client would have bound the channel if it had seen
                # PLUS offered: someone in between removed it (a downgrade).
                raise _violation(
                    "SCRAM channel binding negotiation error: the client supports channel "
                    "binding but thinks the server does not, and this server does"
                )
        elif flag.startswith("p="):
            if not self.plus:
                raise _violation(
                    "malformed SCRAM message: channel binding data without "
                    "SCRAM-SHA-256-PLUS selected"
                )
            if flag[2:] != CHANNEL_BINDING:
                raise _violation(f"unsupported SCRAM channel-binding type {flag[2:]!r}")
        else:
            raise _violation("malformed SCRAM message: unexpected channel-binding flag")
        authzid, sep, bare = rest.partition(",")
        if not sep:
            raise _violation("malformed SCRAM message: no GS2 header")
        if authzid:
            raise _violation("client uses authorization identity, but it is not supported")
        if bare.startswith("m="):
            raise _violation("client requires an unsupported SCRAM extension")
        attributes = bare.split(",")
        if len(attributes) < 2 or not attributes[0].startswith("n="):
            raise _violation("malformed SCRAM message: expected the user name attribute")
        if not attributes[1].startswith("r=") or not _printable(attributes[1][2:]):
            raise _violation("malformed SCRAM message: expected a printable nonce")
        _check_extensions(attributes[2:])
        self.gs2_header = f"{flag},{authzid},"
        self.client_first_bare = bare
        self.client_nonce = attributes[1][2:]

    def server_first(self, verifier: Verifier) -> str:
        server_nonce = base64.b64encode(secrets.token_bytes(_NONCE_BYTES)).decode()
        self.nonce = self.client_nonce + server_nonce
        salt = base64.b64encode(verifier.salt).decode()
        self.server_first_message = f"r={self.nonce},s={salt},i={verifier.iterations}"
        return self.server_first_message

    def client_final(self, text: str, verifier: Verifier) -> bool:
        """Whether the client-final-message proves the password; a malformed
        one is a protocol violation."""
        without_proof, sep, proof_text = text.rpartition(",p=")
        if not sep:
            raise _violation("malformed SCRAM message: the proof is missing")
        attributes = without_proof.split(",")
        if len(attributes) < 2 or not attributes[0].startswith("c="):
            raise _violation("malformed SCRAM message: expected the channel binding attribute")
        if not attributes[1].startswith("r="):
            raise _violation("malformed SCRAM message: expected the nonce attribute")
        _check_extensions(attributes[2:])
        try:
            cbind = base64.b64decode(attributes[0][2:], validate=True)
            proof = base64.b64decode(proof_text, validate=True)
        except (binascii.Error, ValueError):
            raise _violation("malformed SCRAM message: invalid base64") from None
        expected = self.gs2_header.encode()
        if self.plus:
            assert self.binding is not None
            expected += self.binding
        if not hmac.compare_digest(cbind, expected):
            raise _violation("SCRAM channel binding check failed")
        if attributes[1][2:] != self.nonce:
            raise _violation("SCRAM nonce mismatch")
        if len(proof) != len(verifier.stored_key):
            raise _violation("malformed SCRAM message: the proof has the wrong length")
        self.auth_message = ",".join(
            (self.client_first_bare, self.server_first_message, without_proof)
        ).encode()
        signature = hmac.digest(verifier.stored_key, self.auth_message, "sha256")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        return hmac.compare_digest(hashlib.sha256(client_key).digest(), verifier.stored_key)

    def server_final(self, verifier: Verifier) -> str:
        signature = hmac.digest(verifier.server_key, self.auth_message, "sha256")
        return "v=" + base64.b64encode(signature).decode()
