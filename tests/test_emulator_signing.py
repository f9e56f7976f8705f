"""The emulator's signature verifier against the reference vectors computed by the official SDK."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from reconciler.emulator.signing import (
    SignatureError,
    SignedRequest,
    canonical_query,
    canonical_request,
    canonical_uri,
    parse_authorization,
    verify,
)

# A verbatim copy of reference/signing-vectors.json (computed with the official SDK's signer).
VECTORS_FILE = Path(__file__).parent / "data" / "signing-vectors.json"


def _load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
    return data


DOC = _load()
VECTORS = DOC["signer_vectors"]
NOW = datetime(2026, 11, 22, 10, 10, 10, tzinfo=UTC)


def _secret(ak: str) -> str | None:
    return "SKTEST" if ak == "AKTEST" else None


def _request(vector: dict[str, Any], **changes: Any) -> SignedRequest:
    url = urlsplit(vector["url"])
    body = vector["inputs"]["body"]
    fields: dict[str, Any] = {
        "method": vector["inputs"]["method"],
        "raw_path": url.path,
        "raw_query": url.query,
        "headers": tuple(vector["headers_as_sent"].items()),
        "body": (body or "").encode(),
    }
    fields.update(changes)
    return SignedRequest(**fields)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_every_reference_vector_verifies(vector: dict[str, Any]) -> None:
    assert verify(_request(vector), secret_for=_secret, now=NOW) == "AKTEST"


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_canonical_request_matches_the_sdk(vector: dict[str, Any]) -> None:
    auth = parse_authorization(vector["headers_as_sent"]["Authorization"])
    assert canonical_request(_request(vector), auth.signed_headers) == vector["canonical_request"]


def _flip(text: str, index: int) -> str:
    ch = text[index]
    return text[:index] + ("b" if ch == "a" else "a") + text[index + 1 :]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_one_changed_byte_is_rejected(vector: dict[str, Any]) -> None:
    req = _request(vector)
    tampered = [
        _request(vector, raw_path=_flip(req.raw_path, len(req.raw_path) - 1)),
        _request(vector, method="PATCH"),
        _request(vector, body=req.body + b" "),
    ]
    if req.raw_query:
        tampered.append(_request(vector, raw_query=req.raw_query + "x"))
    headers = dict(req.headers)
    headers["X-Project-Id"] = _flip(headers["X-Project-Id"], 0)
    tampered.append(_request(vector, headers=tuple(headers.items())))
    headers = dict(req.headers)
    headers["Authorization"] = _flip(headers["Authorization"], len(headers["Authorization"]) - 1)
    tampered.append(_request(vector, headers=tuple(headers.items())))
    for bad in tampered:
        with pytest.raises(SignatureError):
            verify(bad, secret_for=_secret, now=NOW)


def test_wrong_secret_unknown_key_and_clock_skew_are_rejected() -> None:
    vector = VECTORS[0]
    with pytest.raises(SignatureError, match="does not match"):
        verify(_request(vector), secret_for=lambda ak: "OTHER", now=NOW)
    with pytest.raises(SignatureError, match="unknown"):
        verify(_request(vector), secret_for=lambda ak: None, now=NOW)
    with pytest.raises(SignatureError, match="15 minutes"):
        verify(_request(vector), secret_for=_secret, now=NOW + timedelta(minutes=16))
    assert verify(_request(vector), secret_for=_secret, now=NOW - timedelta(minutes=14))


def test_missing_date_or_authorization_or_signed_header_is_rejected() -> None:
    vector = VECTORS[0]
    base = dict(_request(vector).headers)
    for drop, message in (
        ("X-Sdk-Date", "X-Sdk-Date"),
        ("Authorization", "not signed"),
        ("Host", "missing"),
    ):
        headers = {k: v for k, v in base.items() if k != drop}
        with pytest.raises(SignatureError, match=message):
            verify(_request(vector, headers=tuple(headers.items())), secret_for=_secret, now=NOW)


def test_unsigned_headers_may_change_freely() -> None:
    vector = next(v for v in VECTORS if v["name"] == "underscore_header_not_signed")
    headers = dict(_request(vector).headers)
    headers["X_Custom_Header"] = "changed"
    headers["User-Agent"] = "anything"
    headers["X-Trim"] = "   padded value  "  # surrounding whitespace is not signed
    assert verify(_request(vector, headers=tuple(headers.items())), secret_for=_secret, now=NOW)


def test_canonical_pieces() -> None:
    assert canonical_uri("/v3/p/keypairs") == "/v3/p/keypairs/"
    assert canonical_uri("/v3/p/keypairs/") == "/v3/p/keypairs/"
    assert canonical_uri("/v3/p/keypairs/my%20key%2B%C3%BC") == "/v3/p/keypairs/my%20key%2B%C3%BC/"
    assert canonical_query("") == ""
    assert canonical_query("b=2&a=%C3%BC&a=A&c") == "a=A&a=%C3%BC&b=2&c="
