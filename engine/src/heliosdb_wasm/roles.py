"""Database roles: their names, and SCRAM-SHA-256 password verifiers in
PostgreSQL's text format.

A role is a name, a verifier (or none) and whether it may log in; the rows
live in the engine's table ``_heliosdb_roles`` (registry.py) and the API on
``Database`` (create_role, set_role_password, ...). A password is never
stored: only its verifier, ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:
<ServerKey>`` (base64), which is what PostgreSQL keeps in pg_authid and what
psql's ``\\password`` sends. From a verifier the server can check a client's
proof (pgwire/auth.py) but cannot compute one: a stolen file does not let
anyone log in without guessing the password, each guess costing
``iterations`` rounds of PBKDF2.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass, field

from .errors import RoleError

# PostgreSQL's own defaults (scram_iterations, SCRAM_DEFAULT_SALT_LEN), so a
# verifier made here and one made by psql or libpq look alike.
ITERATIONS = 4096
SALT_BYTES = 16
_KEY_BYTES = 32  # SHA-256
# Role names are PostgreSQL's identifiers: at most NAMEDATALEN - 1 bytes.
MAX_NAME_BYTES = 63
# What one password may be: long enough for any passphrase, short enough that
# hashing it costs nothing the caller did not mean.
MAX_PASSWORD_CHARS = 1024
MECHANISM = "SCRAM-SHA-256"
# PostgreSQL refuses these names for roles (they mean something in GRANT and
# in the role functions), and the pg_ prefix is its own.
_RESERVED = frozenset({"public", "none", "current_user", "session_user", "current_role"})
_VERIFIER = re.compile(
    r"SCRAM-SHA-256\$(?P<iterations>[0-9]{1,9}):(?P<salt>[A-Za-z0-9+/=]+)"
    r"\$(?P<stored>[A-Za-z0-9+/=]+):(?P<server>[A-Za-z0-9+/=]+)\Z"
)
_MD5 = re.compile(r"md5[0-9a-f]{32}\Z")


@dataclass(frozen=True)
class Role:
    """One role. ``verifier`` is None for a role without a password, which
    cannot authenticate with SCRAM; it is left out of the repr (it is not the
    password, but it is what a dictionary attack starts from)."""

    name: str
    login: bool
    created_at: float
    updated_at: float
    verifier: str | None = field(default=None, repr=False)

    @property
    def has_password(self) -> bool:
        return self.verifier is not None


@dataclass(frozen=True)
class Verifier:
    """A parsed SCRAM-SHA-256 verifier."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> Verifier:
        """A verifier from PostgreSQL's text form; RoleError ``invalid-password`` if malformed."""
        m = _VERIFIER.match(text)
        if m is None:
            raise _malformed()
        try:
            salt = base64.b64decode(m["salt"], validate=True)
            stored = base64.b64decode(m["stored"], validate=True)
            server = base64.b64decode(m["server"], validate=True)
        except (binascii.Error, ValueError):
            raise _malformed() from None
        iterations = int(m["iterations"])
        if not salt or iterations < 1 or len(stored) != _KEY_BYTES or len(server) != _KEY_BYTES:
            raise _malformed()
        return cls(iterations, salt, stored, server)

    def text(self) -> str:
        b64 = base64.b64encode
        return (
            f"{MECHANISM}${self.iterations}:{b64(self.salt).decode()}"
            f"${b64(self.stored_key).decode()}:{b64(self.server_key).decode()}"
        )


def _malformed() -> RoleError:
    # The text itself is never quoted: it may be a password typed in the wrong place.
    return RoleError(
        "malformed SCRAM-SHA-256 verifier: expected "
        "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (base64)",
        code="invalid-password",
    )


def check_name(name: object) -> str:
    """``name`` if it can be a role's name, else RoleError (``invalid-name``,
    ``name-too-long``, ``reserved-name``)."""
    if not isinstance(name, str):
        raise RoleError(f"a role name is a string, not {type(name).__name__}", code="invalid-name")
    if not name:
        raise RoleError("a role name may not be empty", code="invalid-name")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        raise RoleError(
            f"role name {name!r} contains a control character (NUL, newline, ...)",
            code="invalid-name",
        )
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        shown = name[:20] + "…"
        raise RoleError(
            f"role name {shown!r} is {size} bytes long; the limit is {MAX_NAME_BYTES}",
            code="name-too-long",
        )
    if name.lower() in _RESERVED or name.lower().startswith("pg_"):
        raise RoleError(f'role name "{name}" is reserved', code="reserved-name")
    return name


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """SCRAM's SaltedPassword: PBKDF2-HMAC-SHA-256 of the SASLprep'd password."""
    return hashlib.pbkdf2_hmac("sha256", prepared(password), salt, iterations)


def make_verifier(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """The verifier of a plain password, with a fresh random salt."""
    check_password(password)
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    salted = salted_password(password, salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    return Verifier(iterations, salt, hashlib.sha256(client_key).digest(), server_key).text()


def check_password(password: object) -> str:
    if not isinstance(password, str):
        raise RoleError(
            f"a password is a string, not {type(password).__name__}", code="invalid-password"
        )
    if not password:
        raise RoleError(
            "an empty password is not a password (use None for a role without one)",
            code="invalid-password",
        )
    if len(password) > MAX_PASSWORD_CHARS:
        raise RoleError(
            f"a password may be at most {MAX_PASSWORD_CHARS} characters", code="invalid-password"
        )
    if "\x00" in password:
        raise RoleError("a password may not contain a NUL character", code="invalid-password")
    return password


def verifier_for(secret: str) -> str:
    """What to store for ``secret``, as PostgreSQL decides it: a well-formed
    SCRAM-SHA-256 verifier is kept as it is (psql's ``\\password`` and
    libpq's PQencryptPasswordConn hash on the client), anything else is a
    plain password and hashed here. An MD5 hash, or text that starts like a
    verifier but is not one, is refused rather than taken for a password."""
    if isinstance(secret, str) and secret.startswith(MECHANISM + "$"):
        return Verifier.parse(secret).text()
    if isinstance(secret, str) and _MD5.match(secret):
        raise RoleError(
            "MD5 password hashes are not supported: this server authenticates with "
            "SCRAM-SHA-256 only (send the password itself, or a SCRAM-SHA-256 verifier)",
            code="md5-password",
        )
    return make_verifier(check_password(secret))


def mock_salt(secret: bytes, name: str) -> bytes:
    """The salt a role that does not exist (or may not log in) is given, so
    that the exchange looks like a real one (PostgreSQL's scram_mock_salt):
    stable for a name and a database, as a real salt is."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass") + secret).digest()[:SALT_BYTES]


# --- SASLprep (RFC 4013), as PostgreSQL's pg_saslprep applies it ----------------------


def prepared(password: str) -> bytes:
    """The bytes SCRAM hashes for ``password``: ASCII as it is; other text
    SASLprep'd, or as it is where SASLprep refuses it — what PostgreSQL and
    libpq do, so a password hashes the same here, in psql and in the server."""
    if password.isascii():
        return password.encode()
    result = _saslprep(password)
    return (result if result is not None else password).encode("utf-8", "surrogatepass")


_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21,
    stringprep.in_table_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
    stringprep.in_table_a1,  # unassigned code points: prohibited in stored strings
)


def _saslprep(text: str) -> str | None:
    """RFC 4013's SASLprep of ``text``, or None if it prohibits it."""
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    out = unicodedata.normalize("NFKC", mapped)
    if not out or any(check(ch) for ch in out for check in _PROHIBITED):
        return None
    if any(stringprep.in_table_d1(ch) for ch in out):
        # Bidirectional text: no left-to-right character, and right-to-left
        # at both ends (RFC 3454 section 6).
        if any(stringprep.in_table_d2(ch) for ch in out):
            return None
        if not (stringprep.in_table_d1(out[0]) and stringprep.in_table_d1(out[-1])):
            return None
    return out
