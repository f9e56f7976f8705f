"""Verify an OpenID Connect ID token (a JWS, RS256) against a JWKS, as IAM and STS do.

Checked: the compact form, ``alg`` RS256 (nothing else is accepted, ``none`` least of all),
the signature with the JWKS key named by ``kid`` (the only key when the token names none),
``iss``, ``aud`` (a string or a list), ``exp`` in the future, ``nbf`` and ``iat`` not in the
future (60 s of leeway). Every refusal says which check failed, never the token.

May import: the standard library, ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

LEEWAY_SECONDS = 60


class TokenError(Exception):
    """The ID token was refused; the message says which check failed."""


def _b64(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("the ID token is not base64url-encoded") from None


def _json(part: str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(_b64(part))
    except ValueError:
        raise TokenError(f"the ID token's {what} is not JSON") from None
    if not isinstance(doc, dict):
        raise TokenError(f"the ID token's {what} is not a JSON object")
    return doc


def _number(value: Any) -> int:
    return int(_b64(str(value)).hex() or "0", 16)


def _key(jwks: Mapping[str, Any], kid: str | None) -> rsa.RSAPublicKey:
    keys = [k for k in jwks.get("keys", []) if isinstance(k, dict) and k.get("kty") == "RSA"]
    if kid is not None:
        keys = [k for k in keys if k.get("kid") == kid]
    if len(keys) != 1:
        raise TokenError("no key of the identity provider's JWKS matches the ID token's kid")
    found = keys[0]
    return rsa.RSAPublicNumbers(_number(found.get("e")), _number(found.get("n"))).public_key()


def verify_id_token(token: str, *, jwks: Mapping[str, Any], issuer: str, audience: str,
                    now: float) -> dict[str, Any]:
    """The token's claims, once every check passed; else ``TokenError``."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("the ID token is not a JWT (header.payload.signature)")
    header, claims = _json(parts[0], "header"), _json(parts[1], "payload")
    if header.get("alg") != "RS256":
        raise TokenError("the ID token is not signed with RS256")
    kid = header.get("kid")
    key = _key(jwks, str(kid) if kid is not None else None)
    try:
        key.verify(_b64(parts[2]), f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(),
                   hashes.SHA256())
    except InvalidSignature:
        raise TokenError("the ID token's signature does not verify with the identity "
                         "provider's keys") from None
    if claims.get("iss") != issuer:
        raise TokenError("the ID token's issuer (iss) is not the identity provider's")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if audience not in audiences:
        raise TokenError("the ID token's audience (aud) is not the identity provider's "
                         "client ID")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp <= now:
        raise TokenError("the ID token has expired (exp)")
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is not None and (not isinstance(value, int | float)
                                  or value > now + LEEWAY_SECONDS):
            raise TokenError(f"the ID token is not valid yet ({name} is in the future)")
    return claims
