"""Key material work for the emulator: check imported keys, generate pairs, match custody keys.

Fingerprints are computed as the cloud does (MD5 colon-hex of the key blob; SHA-1 of the DER
for x509), through ``reconciler.keys``.

May import: ``reconciler.keys``, ``reconciler.errors``, ``reconciler.model``, ``cryptography``,
the standard library.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from reconciler import keys
from reconciler.errors import KeyFormatError
from reconciler.model import Secret

KEYGEN_ALGORITHMS = ("rsa-2048", "ed25519")
GENERATED_COMMENT = "Generated-by-Nova"


class KeyProblem(ValueError):
    """An imported key or certificate the cloud would refuse; the message holds no key material."""


def fingerprint_of(public_key: str, *, key_type: str) -> str:
    """The fingerprint of an importable key, or ``KeyProblem``."""
    try:
        return keys.check_public_key(public_key, key_type=key_type).fingerprint_md5
    except KeyFormatError as exc:
        raise KeyProblem(str(exc)) from None


def generate(algorithm: str) -> tuple[str, str]:
    """(public OpenSSH line with the Nova comment, private key text) for a generated pair.

    RSA keys come as ``BEGIN RSA PRIVATE KEY`` PEM, as Nova returns them; ed25519 as OpenSSH.
    """
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
        fmt = serialization.PrivateFormat.OpenSSH
    elif algorithm == "rsa-2048":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    else:
        raise ValueError(f"keygen must be one of {', '.join(KEYGEN_ALGORITHMS)}")
    pem = private.private_bytes(
        serialization.Encoding.PEM, fmt, serialization.NoEncryption()
    ).decode()
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    return f"{public} {GENERATED_COMMENT}", pem


def check_private_matches(private_key: str, *, public_key: str, key_type: str) -> None:
    """``KeyProblem`` unless ``private_key`` loads and is the private half of ``public_key``."""
    if key_type != "ssh":
        raise KeyProblem("only ssh key pairs can have their private key kept")
    try:
        derived = keys.public_key_of(Secret(private_key))
    except KeyFormatError as exc:
        raise KeyProblem(str(exc)) from None
    if not keys.same_key(derived, public_key):
        raise KeyProblem("the private key does not belong to this key pair's public key")
