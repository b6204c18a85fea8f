"""TLS for the endpoint: the operator's certificate and key, loaded once
when the server starts (so a bad file fails then, not at the first client),
and what SCRAM's channel binding needs of them.

A client asks for TLS with an SSLRequest; the server answers 'S' and the
connection's every later byte goes through TLS 1.2 or later. ``required``
refuses clients that do not ask (PostgreSQL's ``hostssl``).
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ..errors import InvalidArgument

TlsMode = Literal["prefer", "require"]
TLS_MODES: tuple[TlsMode, ...] = ("prefer", "require")
# RFC 5929 section 4.1: certificates signed with MD5 or SHA-1 bind with SHA-256.
_WEAK_HASHES = {"md5", "sha1"}


@dataclass(frozen=True)
class TlsConfig:
    """A server's TLS: its context, whether plaintext clients are refused,
    and the certificate's ``tls-server-end-point`` hash (None when its
    signature names no hash, as Ed25519's: then no SCRAM-SHA-256-PLUS)."""

    context: ssl.SSLContext = field(repr=False)
    required: bool = False
    binding: bytes | None = field(default=None, repr=False)
    cert_file: str = ""

    @classmethod
    def load(
        cls, cert_file: str | Path, key_file: str | Path, *, required: bool = False
    ) -> TlsConfig:
        """Read the certificate (PEM; a chain after it is sent along) and
        its private key; InvalidArgument if either cannot be read or they do
        not belong together."""
        cert_path, key_path = Path(cert_file), Path(key_file)
        for what, path in (("certificate", cert_path), ("key", key_path)):
            try:
                with path.open("rb"):
                    pass
            except OSError as exc:
                raise InvalidArgument(
                    f"cannot read the TLS {what} file {path}: {exc.strerror or exc}"
                ) from None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            # An encrypted key would make OpenSSL ask for its passphrase on
            # the terminal, hanging a server started by a service manager.
            context.load_cert_chain(cert_path, key_path, password=_no_passphrase)
        except ssl.SSLError as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            if reason == "KEY_VALUES_MISMATCH":
                raise InvalidArgument(
                    f"the TLS key {key_path} does not belong to the certificate {cert_path}"
                ) from None
            raise InvalidArgument(
                f"cannot load the TLS certificate {cert_path} and key {key_path}: {reason}"
                " (both must be PEM files, the key unencrypted)"
            ) from None
        except OSError as exc:
            raise InvalidArgument(f"cannot load the TLS certificate or key: {exc}") from None
        return cls(context, required, _end_point_hash(cert_path.read_bytes()), str(cert_path))


def _no_passphrase() -> bytes:
    raise InvalidArgument(
        "the TLS key is encrypted: give the server an unencrypted key file, readable only "
        "by the user it runs as"
    )


def _end_point_hash(pem: bytes) -> bytes | None:
    """tls-server-end-point channel-binding data: the hash of the server's
    certificate (RFC 5929), by its signature's hash algorithm."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None
    return _hash_of(cert)


def end_point_hash(der: bytes) -> bytes | None:
    """The same of a certificate in DER (a peer's, as ssl gives it)."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    return _hash_of(cert)


def _hash_of(cert: x509.Certificate) -> bytes | None:
    algorithm = cert.signature_hash_algorithm
    if algorithm is None:
        return None
    name = algorithm.name if algorithm.name not in _WEAK_HASHES else "sha256"
    if not isinstance(algorithm, hashes.HashAlgorithm) or name not in hashlib.algorithms_available:
        return None
    return hashlib.new(name, cert.public_bytes(serialization.Encoding.DER)).digest()
