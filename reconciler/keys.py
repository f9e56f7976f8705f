"""Parse, fingerprint and generate SSH key pairs (and x509 certificates) with ``cryptography``.

Fingerprints match ``ssh-keygen -l -E md5`` (without its ``MD5:`` prefix, as the cloud shows
them) and ``ssh-keygen -l -E sha256``. Errors never echo key material.

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.fsutil``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.errors import KeyFormatError
from reconciler.model import GENERATE_ALGORITHMS, Secret

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ed25519

MAX_PUBLIC_KEY_BYTES = 1024
RSA_MIN_BITS = 2048
RSA_MAX_BITS = 4096

SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
)

_PRIVATE_MARKERS = re.compile(
    r"-----BEGIN (?:OPENSSH |RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY-----"
    r"|PuTTY-User-Key-File-"
    r"|AGE-SECRET-KEY-"  # an age identity (what age-keygen writes beside its public key)
    r"|^b3BlbnNzaC1rZXktdjE",  # base64 of "openssh-key-v1", the body of a pasted private key
    re.MULTILINE,
)

# What an SSH key type's name looks like (ssh-dss, sk-ssh-ed25519@openssh.com, ...).
_KEY_TYPE_NAME = re.compile(r"(?:ssh|ecdsa|sk|x509v3|rsa|pgp)-[a-z0-9@.-]{1,48}")


def looks_like_private_key(text: str) -> bool:
    """True when ``text`` holds private key material (PEM, OpenSSH or PuTTY)."""
    return bool(_PRIVATE_MARKERS.search(text.strip()))


def _colon_hex(digest: bytes) -> str:
    return digest.hex(":")


def _sha256_fp(blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A parsed public key: its type, raw blob and optional comment.

    For x509, ``key_type`` is ``x509`` and ``blob`` is the DER certificate.
    """

    key_type: str
    blob: bytes
    comment: str = ""
    bits: int = 0

    @property
    def openssh(self) -> str:
        """The normalised form, ``type base64`` without comment: what comparisons use."""
        if self.key_type == "x509":
            return "x509 " + base64.b64encode(self.blob).decode()
        return f"{self.key_type} {base64.b64encode(self.blob).decode()}"

    @property
    def fingerprint_md5(self) -> str:
        """MD5 colon-hex, as the cloud reports it; SHA-1 colon-hex for x509 (as Nova does)."""
        if self.key_type == "x509":
            return _colon_hex(hashlib.sha1(self.blob, usedforsecurity=False).digest())
        return _colon_hex(hashlib.md5(self.blob, usedforsecurity=False).digest())

    @property
    def fingerprint_sha256(self) -> str:
        return _sha256_fp(self.blob)


def _read_string(blob: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(blob):
        raise KeyFormatError("the key data is truncated")
    (length,) = struct.unpack(">I", blob[offset : offset + 4])
    end = offset + 4 + length
    if end > len(blob):
        raise KeyFormatError("the key data is truncated")
    return blob[offset + 4 : end], end


def parse_public_key(text: str) -> PublicKey:
    """Parse one OpenSSH public key line (``type base64 [comment]``) and check it.

    Accepts ssh-ed25519, ecdsa-sha2-nistp256/384/521 and ssh-rsa of 2048 to 4096 bits.
    """
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    if looks_like_private_key(text):
        raise KeyFormatError(
            "this is a private key, not a public key; never put a private key in a manifest "
            "(give its public half, e.g. from `ssh-keygen -y -f KEYFILE`)"
        )
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) != 1:
        raise KeyFormatError("expected exactly one line: `TYPE BASE64 [COMMENT]`")
    parts = lines[0].split(None, 2)
    if len(parts) < 2:
        raise KeyFormatError(
            "expected `TYPE BASE64 [COMMENT]`, e.g. `ssh-ed25519 AAAAC3Nz... me@host`"
        )
    key_type, data = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) > 2 else ""
    if key_type not in SSH_KEY_TYPES:
        # Only a word that is a key type's name is shown: anything else may be a secret
        # pasted (or a file read) by mistake, and is never echoed.
        shown = (f"unsupported key type {key_type!r}" if _KEY_TYPE_NAME.fullmatch(key_type)
                 else "the first word is not a key type")
        raise KeyFormatError(f"{shown}; use one of {', '.join(SSH_KEY_TYPES)}")
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("the key data is not valid base64") from None
    inner, _ = _read_string(blob, 0)
    if inner != key_type.encode():
        raise KeyFormatError(f"the key data is not a {key_type} key (it encodes another type)")
    try:
        loaded = load_ssh_public_key(f"{key_type} {data}".encode())
    except (ValueError, TypeError):
        raise KeyFormatError(f"the {key_type} key data is invalid") from None
    bits = 0
    if isinstance(loaded, rsa.RSAPublicKey):
        bits = loaded.key_size
        if not RSA_MIN_BITS <= bits <= RSA_MAX_BITS:
            raise KeyFormatError(
                f"RSA key of {bits} bits; the cloud accepts {RSA_MIN_BITS} to {RSA_MAX_BITS} bits"
            )
    elif hasattr(loaded, "key_size"):
        bits = int(loaded.key_size)
    else:
        bits = 256
    return PublicKey(key_type=key_type, blob=blob, comment=comment, bits=bits)


def parse_certificate(text: str) -> PublicKey:
    """Parse a PEM x509 certificate (for ``type: x509``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    if looks_like_private_key(text):
        raise KeyFormatError(
            "this is a private key, not a certificate; never put a private key in a manifest"
        )
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise KeyFormatError("expected a PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        cert = x509.load_pem_x509_certificate(text.strip().encode())
    except ValueError:
        raise KeyFormatError("the certificate is not valid PEM x509") from None
    der = cert.public_bytes(Encoding.DER)
    key = cert.public_key()
    bits = int(getattr(key, "key_size", 0))
    return PublicKey(key_type="x509", blob=der, bits=bits)


def parse_any(text: str, *, key_type: str = "ssh") -> PublicKey:
    """Parse a public key of the given key pair ``type`` (``ssh`` or ``x509``)."""
    if key_type == "x509":
        return parse_certificate(text)
    return parse_public_key(text)


def check_public_key(text: str, *, key_type: str = "ssh") -> PublicKey:
    """Parse and check the size limit the cloud imposes (1024 bytes)."""
    size = len(text.strip().encode())
    key = parse_any(text, key_type=key_type)
    if key_type != "x509" and size > MAX_PUBLIC_KEY_BYTES:
        raise KeyFormatError(
            f"public key is {size} bytes; the cloud accepts at most {MAX_PUBLIC_KEY_BYTES} "
            "(shorten the comment, or use an ed25519 or ECDSA key)"
        )
    return key


def normalise(text: str, *, key_type: str = "ssh") -> str:
    """``type base64`` without the comment, for comparing keys; the input if it does not parse."""
    try:
        return parse_any(text, key_type=key_type).openssh
    except KeyFormatError:
        return " ".join(text.split()[:2])


def same_key(a: str, b: str, *, key_type: str = "ssh") -> bool:
    """True when two public keys are the same key material (comments and spacing ignored)."""
    if a.strip() == b.strip():
        return True  # the same text (an answer echoing the key sent): ``normalise`` agrees
    return normalise(a, key_type=key_type) == normalise(b, key_type=key_type)


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    """A key pair generated here: the OpenSSH public line, and the private key (OpenSSH PEM)."""

    algorithm: str
    public_key: str
    private_key: Secret


def generate_keypair(algorithm: str, *, comment: str = "") -> GeneratedKey:
    """Generate a key pair for one of ``GENERATE_ALGORITHMS``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

    private: PrivateKeyTypes
    if algorithm == "ed25519":
        pem, public = ed25519_openssh(ed25519.Ed25519PrivateKey.generate())
        if comment:
            public = f"{public} {comment}"
        return GeneratedKey(algorithm=algorithm, public_key=public, private_key=Secret(pem))
    if algorithm.startswith("rsa-") and algorithm in GENERATE_ALGORITHMS:
        private = rsa.generate_private_key(public_exponent=65537, key_size=int(algorithm[4:]))
    elif algorithm in ("ecdsa-p256", "ecdsa-p384", "ecdsa-p521"):
        curves: dict[str, ec.EllipticCurve] = {
            "ecdsa-p256": ec.SECP256R1(), "ecdsa-p384": ec.SECP384R1(), "ecdsa-p521": ec.SECP521R1()
        }
        private = ec.generate_private_key(curves[algorithm])
    else:
        raise KeyFormatError(
            f"unknown algorithm {algorithm!r}; use one of {', '.join(GENERATE_ALGORITHMS)}"
        )
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    if comment:
        public = f"{public} {comment}"
    return GeneratedKey(algorithm=algorithm, public_key=public, private_key=Secret(pem))


def _ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


_ED25519 = _ssh_string(b"ssh-ed25519")
_NO_CIPHER = b"openssh-key-v1\0" + _ssh_string(b"none") * 2 + _ssh_string(b"") + b"\0\0\0\1"


def ed25519_openssh(private: ed25519.Ed25519PrivateKey) -> tuple[str, str]:
    """(the unencrypted OpenSSH private key file, the public line) of an Ed25519 key.

    The layout of OpenSSH's PROTOCOL.key: the bytes ``private_bytes(PEM, OpenSSH,
    NoEncryption())`` encodes (a random check word, no comment, padding 1 to 5), in the
    70-column base64 ssh-keygen writes (cryptography's own width differs between releases).
    Made here because that serialiser, in Python, costs more than the key itself.
    """
    seed = private.private_bytes_raw()
    point = private.public_key().public_bytes_raw()
    blob = _ED25519 + _ssh_string(point)
    check = os.urandom(4)
    secrets = check + check + blob + _ssh_string(seed + point) + _ssh_string(b"")
    secrets += bytes(range(1, 1 + 8 - len(secrets) % 8))
    body = base64.b64encode(_NO_CIPHER + _ssh_string(blob) + _ssh_string(secrets)).decode()
    lines = "".join(body[at:at + 70] + "\n" for at in range(0, len(body), 70))
    pem = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{lines}-----END OPENSSH PRIVATE KEY-----\n"
    return pem, "ssh-ed25519 " + base64.b64encode(blob).decode()


def ed25519_openssh_pair(pem: str, public: str) -> bool:
    """Whether ``pem`` is an unencrypted OpenSSH Ed25519 private key file, laid out as
    ``ed25519_openssh`` writes it, of the key of the public line ``public`` (no comment): the
    public blob in its header and in its private section, and the point after the seed, are
    that line's. A structural check (no curve arithmetic) of keys made by another process."""
    lines = pem.split("\n")
    if len(lines) < 3 or lines[0] != "-----BEGIN OPENSSH PRIVATE KEY-----" \
            or lines[-2:] != ["-----END OPENSSH PRIVATE KEY-----", ""]:
        return False
    kind, _, encoded = public.partition(" ")
    try:
        blob = base64.b64decode(encoded, validate=True)
        raw = base64.b64decode("".join(lines[1:-2]), validate=True)
    except (binascii.Error, ValueError):
        return False
    point = blob[len(_ED25519) + 4:]
    if kind != "ssh-ed25519" or len(point) != 32 or blob != _ED25519 + _ssh_string(point):
        return False
    head = _NO_CIPHER + _ssh_string(blob)
    if not raw.startswith(head) or len(raw) < len(head) + 4:
        return False
    size = int.from_bytes(raw[len(head):len(head) + 4], "big")
    secrets = raw[len(head) + 4:]
    if size != len(secrets) or size % 8 or secrets[:4] != secrets[4:8]:
        return False
    held = secrets[8:8 + len(blob) + 4 + 64]
    return held == blob + _ssh_string(held[len(blob) + 4:len(blob) + 36] + point)


def is_half_of(private_key: Secret, public_key: str, *, key_type: str = "ssh") -> bool:
    """Whether ``private_key`` is the private half of ``public_key`` (an x509 key pair's
    certificate is not checked here: True)."""
    if key_type == "x509":
        return True
    try:
        return same_key(public_key_of(private_key), public_key)
    except KeyFormatError:
        return False


def public_key_of(private_key: Secret) -> str:
    """The OpenSSH public line of a private key (OpenSSH or PEM, unencrypted)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    data = private_key.reveal().encode()
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            loaded = serialization.load_ssh_private_key(data, password=None)
        else:
            loaded = serialization.load_pem_private_key(data, password=None)  # type: ignore[assignment]
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFormatError(
            "the private key does not load (it must be unencrypted OpenSSH or PEM)"
        ) from None
    return loaded.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def _blob(public_key: str) -> bytes:
    parts = public_key.split()
    if len(parts) < 2:
        raise KeyFormatError("expected `TYPE BASE64 [COMMENT]`")
    try:
        return base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("the key data is not valid base64") from None


def md5_fingerprint(public_key: str) -> str:
    """MD5 colon-hex of an already validated OpenSSH line, without a full parse (fast path)."""
    return _colon_hex(hashlib.md5(_blob(public_key), usedforsecurity=False).digest())


def sha256_fingerprint(public_key: str) -> str:
    """``SHA256:…`` of an already validated OpenSSH line, without a full parse (fast path)."""
    return _sha256_fp(_blob(public_key))


def fingerprints(text: str, *, key_type: str = "ssh") -> tuple[str, str]:
    """(MD5 colon-hex, ``SHA256:…``) of a public key or certificate."""
    key = parse_any(text, key_type=key_type)
    return key.fingerprint_md5, key.fingerprint_sha256


def read_custody_key(path: str, *, public_key: str | None) -> Secret:
    """Read a private key file handed to the cloud's custody, checked before any use.

    The file must be a regular file of at most 64 KiB holding an unencrypted OpenSSH or PEM
    private key whose public half is ``public_key``. ``KeyFormatError`` says what is wrong,
    never what the file holds. The manifest loader and apply both call this, so the bytes
    apply sends are the bytes it checked.
    """
    from pathlib import Path

    from reconciler.fsutil import MAX_KEY_FILE_BYTES, read_key_text

    text = read_key_text(Path(path), limit=MAX_KEY_FILE_BYTES, what="private key")
    if not isinstance(text, str):
        raise KeyFormatError(str(text))
    try:
        private = Secret(text)
        public = public_key_of(private)
    except KeyFormatError:
        raise KeyFormatError("is not a readable, unencrypted OpenSSH or PEM private key") \
            from None
    if public_key is None or normalise(public) != normalise(public_key):
        raise KeyFormatError("is not the private half of this key pair's public key")
    return private
