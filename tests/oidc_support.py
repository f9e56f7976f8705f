"""Identity tokens for the OIDC tests (no tests here): an RSA key, its JWKS, RS256 JWTs
minted with ``cryptography``, and the emulator's admin call that registers the provider."""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from reconciler.emulator.server import Emulator

ISSUER = "https://token.actions.githubusercontent.com"
AUDIENCE = "reconciler-ci"
REPOSITORY = "acme/keys"
REF = "refs/heads/main"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass
class Issuer:
    """A CI's token issuer: one RSA key, published as a JWKS."""

    key: rsa.RSAPrivateKey
    kid: str = "ci-key-1"

    @classmethod
    def new(cls, kid: str = "ci-key-1") -> Issuer:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid)

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "kid": self.kid, "alg": "RS256", "use": "sig",
                          "n": _int(numbers.n), "e": _int(numbers.e)}]}

    def token(self, *, lifetime: float = 300, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": f"repo:{REPOSITORY}:ref:{REF}",
                "repository": REPOSITORY, "ref": REF, "iat": now, "nbf": now,
                "exp": now + lifetime, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"


def register(emulator: Emulator, issuer: Issuer, *, idp_id: str = "github",
             conditions: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Register the identity provider through the emulator's admin path, as a harness would."""
    body = {"id": idp_id, "issuer": ISSUER, "client_id": AUDIENCE, "jwks": issuer.jwks(),
            "conditions": conditions if conditions is not None
            else {"repository": [REPOSITORY], "ref": [REF]}}
    answer = requests.post(f"{emulator.endpoint}/_emulator/iam/providers", json=body, timeout=10)
    assert answer.status_code == 201, answer.text
    doc: dict[str, Any] = answer.json()
    return doc


def iam_settings(emulator: Emulator, **fields: Any) -> dict[str, Any]:
    answer = requests.post(f"{emulator.endpoint}/_emulator/iam/settings", json=fields,
                           timeout=10)
    assert answer.status_code == 200, answer.text
    doc: dict[str, Any] = answer.json()
    return doc


def write_token(path: Path, token: str) -> None:
    """Replace the token file at once, as a CI runner does (a reader never sees half)."""
    temp = path.with_suffix(".tmp")
    temp.write_text(token + "\n")
    os.replace(temp, path)


def iam_environ(emulator: Emulator, token_file: Path, idp_id: str = "github") -> dict[str, str]:
    return {"HUAWEICLOUD_SDK_IDP_ID": idp_id, "HUAWEICLOUD_SDK_ID_TOKEN_FILE": str(token_file),
            "HUAWEICLOUD_SDK_IAM_ENDPOINT": emulator.endpoint}


def sts_environ(emulator: Emulator, registered: dict[str, Any],
                token_file: Path) -> dict[str, str]:
    return {"HUAWEICLOUD_OIDC_PROVIDER_URN": registered["provider_urn"],
            "HUAWEICLOUD_OIDC_AGENCY_URN": registered["agencies"][0],
            "HUAWEICLOUD_OIDC_TOKEN_FILE": str(token_file),
            "HUAWEICLOUD_OIDC_SESSION_NAME": "ci-run-42",
            "HUAWEICLOUD_SDK_STS_ENDPOINT": emulator.endpoint}


ISSUER_KEY_FACTORY = Issuer.new
