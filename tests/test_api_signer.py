"""The signer against every vector computed with the official SDK, plus properties."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.api.protocol import Credentials
from reconciler.api.signer import (
    EMPTY_BODY_SHA256,
    SdkHmacSigner,
    canonical_query,
    canonical_uri,
    sign,
)
from reconciler.model import Secret

# A verbatim copy of the reference's signing-vectors.json (computed with the official SDK).
VECTORS_FILE = Path(__file__).parent / "data" / "signing-vectors.json"


def _load_vectors() -> list[dict[str, Any]]:
    data = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
    vectors: list[dict[str, Any]] = data["signer_vectors"]
    return vectors


VECTORS = _load_vectors()


def _sign_vector(vector: dict[str, Any]) -> dict[str, Any]:
    inputs = vector["inputs"]
    headers = dict(inputs["headers_before_signing"])
    date = headers.pop("X-Sdk-Date")
    kwargs = inputs.get("sign_kwargs")
    scope = None
    if kwargs:
        scope = (kwargs["region_id"], kwargs["derived_auth_service_name"])
    result = sign(
        inputs["method"],
        f"https://{inputs['host']}{inputs['resource_path_as_sent']}",
        headers=headers,
        body=inputs["body"],
        ak=inputs["ak"],
        sk=inputs["sk"],
        date=date,
        query=[tuple(pair) for pair in inputs["query_params"]],
        v11_scope=scope,
    )
    return dict(result)


def test_every_vector_is_covered() -> None:
    assert len(VECTORS) == 10
    assert {v["name"] for v in VECTORS} >= {"derived_v11_hmac_sha256", "path_name_with_slash_quirk"}


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(vector: dict[str, Any]) -> None:
    got = _sign_vector(vector)
    assert got["canonical_request"] == vector["canonical_request"]
    assert got["string_to_sign"] == vector["string_to_sign"]
    assert got["signature"] == vector["signature"]
    assert got["signed_headers"] == vector["signed_headers"]
    assert got["authorization"] == vector["authorization"]
    assert got["url"] == vector["url"]
    assert got["headers"] == vector["headers_as_sent"]


def test_date_may_be_a_datetime() -> None:
    vector = VECTORS[0]
    inputs = vector["inputs"]
    headers = {k: v for k, v in inputs["headers_before_signing"].items() if k != "X-Sdk-Date"}
    got = sign(
        "GET",
        f"https://{inputs['host']}{inputs['resource_path_as_sent']}?marker=key-07&limit=50",
        headers=headers,
        body=None,
        ak="AKTEST",
        sk="SKTEST",
        date=datetime(2026, 11, 22, 10, 10, 10, tzinfo=UTC),
    )
    assert got["authorization"] == vector["authorization"]
    assert got["url"] == vector["url"]


def test_canonical_uri_and_query_helpers() -> None:
    assert canonical_uri("/v3/p/keypairs") == "/v3/p/keypairs/"
    assert canonical_uri("/v3/p/keypairs/") == "/v3/p/keypairs/"
    assert canonical_uri("/a/my%20key%2B%C3%BC") == "/a/my%20key%2B%C3%BC/"
    assert canonical_query([]) == ""
    assert canonical_query([("b", "1"), ("a", ["z", "y"]), ("c", False)]) == "a=y&a=z&b=1&c=false"


def _credentials(token: str | None = None) -> Credentials:
    return Credentials(
        ak="AKTEST", sk=Secret("SKTEST"), security_token=Secret(token) if token else None
    )


def test_auth_hook_signs_only_its_headers_and_rewrites_query() -> None:
    dates = iter([datetime(2026, 11, 22, 10, 10, s, tzinfo=UTC) for s in (10, 11)])
    signer = SdkHmacSigner(
        credentials=_credentials("TOKEN123"),
        project_id="0123456789abcdef0123456789abcdef",
        clock=lambda: next(dates),
    )
    session = requests.Session()
    request = requests.Request(
        "GET",
        "https://kms.cn-north-4.myhuaweicloud.com/v3/0123456789abcdef0123456789abcdef/keypairs"
        "?limit=50",
        headers={"Content-Type": "application/json"},
        auth=signer,
    )
    first = session.prepare_request(request)
    second = session.prepare_request(request)
    vector = next(v for v in VECTORS if v["name"] == "temporary_credentials_security_token")
    assert first.headers["Authorization"] == vector["authorization"]
    assert first.url == vector["url"]
    assert second.headers["X-Sdk-Date"] == "20261122T101011Z"
    assert second.headers["Authorization"] != first.headers["Authorization"]
    assert "user-agent" not in first.headers["Authorization"].lower()
    assert "SKTEST" not in repr(signer)
    session.close()


def test_auth_hook_hashes_the_exact_body() -> None:
    vector = next(v for v in VECTORS if v["name"] == "kps_create_keypair_post_json")
    signer = SdkHmacSigner(
        credentials=_credentials(),
        project_id="0123456789abcdef0123456789abcdef",
        clock=lambda: datetime(2026, 11, 22, 10, 10, 10, tzinfo=UTC),
    )
    request = requests.Request(
        "POST",
        vector["url"],
        headers={"Content-Type": "application/json;charset=UTF-8"},
        data=vector["inputs"]["body"].encode("utf-8"),
        auth=signer,
    )
    prepared = requests.Session().prepare_request(request)
    assert prepared.headers["Authorization"] == vector["authorization"]
    assert EMPTY_BODY_SHA256 not in vector["canonical_request"]


_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=10)


def _base_sign(
    *, method: str, path: str, query: list[tuple[str, str]], body: bytes, header: str
) -> str:
    return sign(
        method,
        f"https://example.test{path}",
        headers={"Content-Type": "application/json", "X-Extra": header},
        body=body,
        ak="AK",
        sk="SK",
        date="20260101T000000Z",
        query=query,
    )["signature"]


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    segs=st.lists(_token, min_size=1, max_size=4),
    query=st.lists(st.tuples(_token, _text), max_size=4),
    body=st.binary(max_size=40),
    header=_token,
    which=st.sampled_from(["method", "path", "query", "body", "header"]),
)
def test_signature_is_deterministic_and_sensitive(
    method: str,
    segs: list[str],
    query: list[tuple[str, str]],
    body: bytes,
    header: str,
    which: str,
) -> None:
    path = "/" + "/".join(segs)
    base = {"method": method, "path": path, "query": query, "body": body, "header": header}
    first = _base_sign(**base)  # type: ignore[arg-type]
    assert first == _base_sign(**base)  # type: ignore[arg-type]
    changed = dict(base)
    if which == "method":
        changed["method"] = {"GET": "POST", "POST": "PUT", "PUT": "DELETE", "DELETE": "GET"}[method]
    elif which == "path":
        changed["path"] = path + "x"
    elif which == "query":
        changed["query"] = [*query, ("zz-extra", "1")]
    elif which == "body":
        changed["body"] = body + b"!"
    else:
        changed["header"] = header + "x"
    assert _base_sign(**changed) != first  # type: ignore[arg-type]
