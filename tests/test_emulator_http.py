"""The emulator over real HTTP, with real signatures from a small signer written here.

This signer is a third, independent implementation of the reference's §4 (the client and the
emulator have their own); requests carry exactly what it signs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import NameOID

from reconciler import keys
from reconciler.emulator import Emulator
from reconciler.model import Secret

RFC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea rfc"
RFC_FP = "cf:07:be:9d:68:ae:65:54:6d:a0:93:c3:6f:bd:0d:82"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"


def _q(text: str) -> str:
    return quote(text, safe="~")


def sign_headers(
    method: str,
    url: str,
    *,
    ak: str,
    sk: str,
    body: bytes,
    headers: dict[str, str],
) -> dict[str, str]:
    parts = urlsplit(url)
    out = {"Host": parts.netloc, **headers}
    lower = {k.lower(): v for k, v in out.items()}
    names = sorted(lower)
    path = "/".join(_q(seg) for seg in unquote(parts.path).split("/"))
    path = path if path.endswith("/") else path + "/"
    pairs = sorted(
        (unquote(k), unquote(v))
        for k, _, v in (p.partition("=") for p in parts.query.split("&") if p)
    )
    canonical = "\n".join(
        [
            method,
            path,
            "&".join(f"{_q(k)}={_q(v)}" for k, v in pairs),
            "".join(f"{n}:{lower[n].strip()}\n" for n in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = f"SDK-HMAC-SHA256\n{lower['x-sdk-date']}\n{digest}"
    signature = hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (
        f"SDK-HMAC-SHA256 Access={ak}, SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return out


class Client:
    """Signed JSON requests to one emulator; knobs to sign wrongly on purpose."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.session = requests.Session()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        sk: str | None = None,
        ak: str | None = None,
        project_header: str | None = None,
        date: datetime | None = None,
        extra: dict[str, str] | None = None,
        send_body: bytes | None = None,
        raw: bytes | None = None,
    ) -> requests.Response:
        url = self.emu.endpoint + path.replace("{p}", self.emu.project_id)
        data = json.dumps(body).encode() if body is not None else (raw or b"")
        headers = {
            "Content-Type": "application/json;charset=utf-8" if body is not None else
            "application/json",
            "X-Project-Id": project_header or self.emu.project_id,
            "X-Sdk-Date": (date or datetime.now(UTC)).strftime(DATE_FORMAT),
            **(extra or {}),
        }
        signed = sign_headers(
            method, url, ak=ak or self.emu.ak, sk=sk or self.emu.sk, body=data, headers=headers
        )
        return self.session.request(
            method, url, data=send_body if send_body is not None else data, headers=signed,
            timeout=10,
        )


@pytest.fixture()
def client(emulator: Emulator) -> Client:
    return Client(emulator)


BASES = {"v2": "/v2/{p}/os-keypairs", "v2.1": "/v2.1/{p}/os-keypairs", "kps": "/v3/{p}/keypairs"}


def _create(client: Client, api: str, name: str, **fields: Any) -> requests.Response:
    return client.call("POST", BASES[api], {"keypair": {"name": name, **fields}})


def _names(client: Client, api: str) -> list[str]:
    resp = client.call("GET", BASES[api])
    assert resp.status_code == 200, resp.text
    return [item["keypair"]["name"] for item in resp.json()["keypairs"]]


def _rsa_pair() -> tuple[str, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    return public + " me@host", pem


def _ed_pair() -> tuple[str, str]:
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    return public, pem


def _certificate() -> tuple[str, bytes]:
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "emulator-test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, None)
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), cert.public_bytes(
        serialization.Encoding.DER
    )


# -- create / import / get / list / delete, per flavour ----------------------------------


@pytest.mark.parametrize("api", ["v2", "v2.1", "kps"])
def test_generated_pair_returns_its_private_key_once(client: Client, api: str) -> None:
    resp = _create(client, api, "gen-1")
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Request-Id"]
    kp = resp.json()["keypair"]
    assert kp["name"] == "gen-1" and kp["user_id"] == client.emu.user_id
    assert kp["public_key"].endswith(" Generated-by-Nova")
    assert kp["fingerprint"] == keys.fingerprints(kp["public_key"])[0]
    assert keys.same_key(keys.public_key_of(Secret(kp["private_key"])), kp["public_key"])
    for path in (BASES[api], BASES[api] + "/gen-1"):
        again = client.call("GET", path)
        assert again.status_code == 200
        assert "private_key" not in again.text and "PRIVATE KEY" not in again.text


@pytest.mark.parametrize("api", ["v2", "v2.1", "kps"])
def test_import_returns_no_private_key_and_the_cloud_fingerprint(client: Client, api: str) -> None:
    resp = _create(client, api, "alice", public_key=RFC_KEY)
    assert resp.status_code == 200, resp.text
    kp = resp.json()["keypair"]
    assert kp["fingerprint"] == RFC_FP and kp["public_key"] == RFC_KEY
    assert "private_key" not in kp
    assert client.emu.counters()["import"] == 1 and client.emu.counters()["create"] == 0


def test_rsa_import_fingerprint_matches_ssh_keygen_md5(client: Client) -> None:
    public, _ = _rsa_pair()
    resp = _create(client, "v2.1", "rsa", public_key=public)
    assert resp.json()["keypair"]["fingerprint"] == keys.fingerprints(public)[0]


def test_nova_detail_and_delete_status(client: Client) -> None:
    _create(client, "v2.1", "n1", public_key=RFC_KEY)
    detail = client.call("GET", BASES["v2.1"] + "/n1").json()["keypair"]
    assert detail["name"] == "n1" and detail["fingerprint"] == RFC_FP
    assert isinstance(detail["id"], int) and detail["deleted"] is False
    assert detail["deleted_at"] is None and detail["updated_at"] is None
    assert detail["created_at"] and detail["type"] == "ssh"
    assert client.call("DELETE", BASES["v2.1"] + "/n1").status_code == 204
    _create(client, "v2", "n2", public_key=RFC_KEY)
    assert client.call("DELETE", BASES["v2"] + "/n2").status_code == 202
    assert client.emu.keypair_count() == 0


def test_kps_detail_update_and_delete(client: Client) -> None:
    _create(client, "kps", "k1", public_key=RFC_KEY, scope="domain")
    resp = client.call("PUT", BASES["kps"] + "/k1", {"keypair": {"description": "prod web"}})
    assert resp.status_code == 200 and resp.content == b""
    d = client.call("GET", BASES["kps"] + "/k1").json()["keypair"]
    assert d["description"] == "prod web" and d["scope"] == "domain"
    assert d["is_key_protection"] is False and d["frozen_state"] == 0 and d["delete_time"] == 0
    assert d["create_time"] > 10**11 and d["update_time"] >= d["create_time"]
    item = client.call("GET", BASES["kps"]).json()["keypairs"][0]["keypair"]
    assert item["frozen_state"] == "0" and "description" not in item
    assert client.call("DELETE", BASES["kps"] + "/k1").status_code == 204
    assert client.call("GET", BASES["kps"] + "/k1").status_code == 404


def test_x509_import_on_v2_uses_sha1_of_der(client: Client) -> None:
    pem, der = _certificate()
    resp = _create(client, "v2", "cert", type="x509", public_key=pem)
    assert resp.status_code == 200, resp.text
    expected = ":".join(f"{b:02x}" for b in hashlib.sha1(der).digest())
    assert resp.json()["keypair"]["fingerprint"] == expected
    assert client.call("GET", BASES["v2"] + "/cert").json()["keypair"]["type"] == "x509"


def test_one_store_behind_three_apis(client: Client) -> None:
    _create(client, "v2.1", "from-v21", public_key=RFC_KEY)
    _create(client, "kps", "from-kps")
    _create(client, "v2", "from-v2", public_key=_ed_pair()[0])
    expected = ["from-kps", "from-v2", "from-v21"]
    for api in BASES:
        assert _names(client, api) == expected
    assert client.call("GET", BASES["kps"] + "/from-v21").json()["keypair"]["fingerprint"] == RFC_FP
    assert client.call("DELETE", BASES["v2"] + "/from-kps").status_code == 202
    assert client.call("GET", BASES["kps"] + "/from-kps").status_code == 404
    assert _names(client, "v2.1") == ["from-v2", "from-v21"]


# -- pagination ---------------------------------------------------------------------------


def test_kps_pages_follow_next_marker(client: Client) -> None:
    for i in range(5):
        _create(client, "kps", f"key-{i}", public_key=RFC_KEY)
    seen: list[str] = []
    marker: str | None = None
    pages = 0
    while True:
        query = "?limit=2" + (f"&marker={marker}" if marker else "")
        doc = client.call("GET", BASES["kps"] + query).json()
        pages += 1
        seen += [item["keypair"]["name"] for item in doc["keypairs"]]
        assert doc["page_info"]["current_count"] == len(doc["keypairs"])
        assert doc["page_info"]["previous_marker"] is None
        marker = doc["page_info"]["next_marker"]
        if marker is None:
            break
        assert marker == seen[-1]
    assert pages == 3 and seen == [f"key-{i}" for i in range(5)]


def test_kps_limit_default_and_bounds(client: Client) -> None:
    emu = client.emu
    from reconciler.emulator.store import Record

    for i in range(1200):  # straight into the store: this test is about paging, not creating
        emu.store.add(
            lambda ident, i=i: Record(
                name=f"bulk-{i:05d}", public_key=RFC_KEY, fingerprint=RFC_FP, type="ssh",
                user_id=emu.user_id, id=ident, created_ms=1, updated_ms=1,
            )
        )
    assert len(client.call("GET", BASES["kps"]).json()["keypairs"]) == 50
    first = client.call("GET", BASES["kps"] + "?limit=1000").json()
    assert len(first["keypairs"]) == 1000 and first["page_info"]["next_marker"] == "bulk-00999"
    rest = client.call("GET", BASES["kps"] + "?limit=1000&marker=bulk-00999").json()
    assert len(rest["keypairs"]) == 200 and rest["page_info"]["next_marker"] is None
    for bad in ("0", "1001", "x"):
        resp = client.call("GET", BASES["kps"] + f"?limit={bad}")
        assert resp.status_code == 400 and resp.json()["error_code"].startswith("KPS.")
    assert len(_names(client, "v2.1")) == 1200  # no microversion: the full list, one request


def test_nova_pagination_only_with_microversion_2_35(client: Client) -> None:
    for i in range(5):
        _create(client, "v2.1", f"kp{i}", public_key=RFC_KEY)
    plain = client.call("GET", BASES["v2.1"] + "?limit=2")
    assert len(plain.json()["keypairs"]) == 5
    for header in ({"OpenStack-API-Version": "compute 2.35"},
                   {"X-OpenStack-Nova-API-Version": "2.35"}):
        paged = client.call("GET", BASES["v2.1"] + "?limit=2&marker=kp1", extra=header).json()
        assert [k["keypair"]["name"] for k in paged["keypairs"]] == ["kp2", "kp3"]
        assert "marker=kp3" in paged["keypairs_links"][0]["href"]
    old = client.call("GET", BASES["v2.1"] + "?limit=2", extra={"OpenStack-API-Version":
                                                                 "compute 2.34"})
    assert len(old.json()["keypairs"]) == 5
    v2 = client.call("GET", BASES["v2"] + "?limit=2", extra={"OpenStack-API-Version":
                                                             "compute 2.35"})
    assert len(v2.json()["keypairs"]) == 5  # v2 has no microversions


# -- custody (key_protection) -------------------------------------------------------------


def test_kps_custody_of_a_generated_key_can_be_exported(client: Client) -> None:
    protection = {"encryption": {"type": "default"}}
    created = _create(client, "v2.1", "vault", key_protection=protection).json()["keypair"]
    export = client.call("POST", BASES["kps"] + "/private-key/export",
                         {"keypair": {"name": "vault"}})
    assert export.status_code == 200
    assert export.json()["keypair"] == {"name": "vault", "private_key": created["private_key"]}
    item = client.call("GET", BASES["kps"]).json()["keypairs"][0]["keypair"]
    assert item["is_key_protection"] is True
    clear = client.call("DELETE", BASES["kps"] + "/vault/private-key")
    assert clear.status_code == 204
    again = client.call("POST", BASES["kps"] + "/private-key/export",
                        {"keypair": {"name": "vault"}})
    assert again.status_code == 400 and again.json()["error_code"] == "KPS.0004"


def test_export_without_custody_is_refused(client: Client) -> None:
    _create(client, "kps", "plain")
    resp = client.call("POST", BASES["kps"] + "/private-key/export", {"keypair": {"name": "plain"}})
    assert resp.status_code == 400 and resp.json()["error_code"] == "KPS.0004"
    missing = client.call("POST", BASES["kps"] + "/private-key/export",
                          {"keypair": {"name": "nope"}})
    assert missing.status_code == 404 and missing.json()["error_code"] == "KPS.0002"


def test_import_with_private_key_in_custody_checks_it_matches(client: Client) -> None:
    public, private = _rsa_pair()
    other_private = _ed_pair()[1]
    prot = {"private_key": other_private, "encryption": {"type": "kms", "kms_key_name": "k"}}
    bad = _create(client, "v2.1", "mine", public_key=public, key_protection=prot)
    assert bad.status_code == 400 and "badRequest" in bad.json()
    assert "PRIVATE KEY" not in bad.text
    prot["private_key"] = private
    ok = _create(client, "v2.1", "mine", public_key=public, key_protection=prot)
    assert ok.status_code == 200 and "private_key" not in ok.json()["keypair"]
    export = client.call("POST", BASES["kps"] + "/private-key/export",
                         {"keypair": {"name": "mine"}})
    assert export.json()["keypair"]["private_key"] == private


def test_kps_private_key_import_into_existing_pair(client: Client) -> None:
    public, private = _ed_pair()
    _create(client, "kps", "later", public_key=public)
    body = {"keypair": {"name": "later", "key_protection": {
        "private_key": _ed_pair()[1], "encryption": {"type": "default"}}}}
    wrong = client.call("POST", BASES["kps"] + "/private-key/import", body)
    assert wrong.status_code == 400 and wrong.json()["error_code"] == "KPS.0005"
    body["keypair"]["key_protection"]["private_key"] = private
    ok = client.call("POST", BASES["kps"] + "/private-key/import", body)
    assert ok.status_code == 200 and "PRIVATE KEY" not in ok.text
    assert ok.json()["keypair"]["key_protection"] == {"encryption": {"type": "default"}}
    export = client.call("POST", BASES["kps"] + "/private-key/export",
                         {"keypair": {"name": "later"}})
    assert export.json()["keypair"]["private_key"] == private


def test_v2_rejects_key_protection(client: Client) -> None:
    resp = _create(client, "v2", "x", key_protection={"encryption": {"type": "default"}})
    assert resp.status_code == 400 and resp.json()["badRequest"]["code"] == 400
    assert client.emu.keypair_count() == 0


# -- error shapes -------------------------------------------------------------------------


def _assert_shape(api: str, resp: requests.Response, status: int) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers.get("X-Request-Id")
    doc = resp.json()
    if api == "kps":
        assert doc["error_code"].startswith("KPS.") and doc["error_msg"]
    else:
        (inner,) = doc.values()
        assert inner["code"] == status and inner["message"]


@pytest.mark.parametrize("api", ["v2", "v2.1", "kps"])
def test_error_shapes(client: Client, api: str) -> None:
    nova_key = {400: "badRequest", 404: "itemNotFound", 409: "conflictingRequest"}
    cases = [
        (_create(client, api, "bad name!"), 400),
        (_create(client, api, "x" * 65), 400),
        (_create(client, api, "k", public_key="ssh-ed25519 not-base64"), 400),
        (_create(client, api, "k", public_key=RFC_KEY + " " + "c" * 1000), 400),
        (_create(client, api, "k", public_key=_ed_pair()[1]), 400),
        (_create(client, api, "k", type="pgp"), 400),
        (client.call("POST", BASES[api], raw=b"{not json"), 400),
        (client.call("POST", BASES[api], {"nokeypair": {}}), 400),
        (client.call("GET", BASES[api] + "/missing"), 404),
        (client.call("DELETE", BASES[api] + "/missing"), 404),
    ]
    assert _create(client, api, "dup", public_key=RFC_KEY).status_code == 200
    cases.append((_create(client, api, "dup"), 409))
    for resp, status in cases:
        _assert_shape(api, resp, status)
        if api != "kps":
            assert nova_key[status] in resp.json()
    assert "PRIVATE KEY" not in cases[4][0].text
    assert client.emu.keypair_count() == 1


def test_unknown_path_and_method(client: Client) -> None:
    resp = client.call("GET", "/v3/{p}/nothing-here")
    assert resp.status_code == 404 and resp.json()["errorCode"] == "APIGW.0101"
    resp = client.call("PATCH", BASES["kps"] + "/x")
    assert resp.status_code == 405 and resp.json()["error_code"].startswith("KPS.")


# -- authentication -----------------------------------------------------------------------


def _gateway(resp: requests.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json()["errorCode"] == code and resp.headers["X-Request-Id"]


def test_bad_signatures_are_rejected_and_counted(client: Client) -> None:
    body = {"keypair": {"name": "never"}}
    _gateway(client.call("GET", BASES["kps"], sk="wrong"), 401, "APIGW.0301")
    _gateway(client.call("GET", BASES["kps"], ak="unknown"), 401, "APIGW.0301")
    altered = json.dumps({"keypair": {"name": "other"}}).encode()
    _gateway(client.call("POST", BASES["kps"], body, send_body=altered), 401, "APIGW.0301")
    stale = datetime.now(UTC) - timedelta(minutes=16)
    _gateway(client.call("GET", BASES["v2.1"], date=stale), 401, "APIGW.0301")
    future = datetime.now(UTC) + timedelta(minutes=16)
    _gateway(client.call("GET", BASES["v2.1"], date=future), 401, "APIGW.0301")
    unsigned = requests.get(client.emu.endpoint + BASES["v2"].replace("{p}", "x"), timeout=5)
    _gateway(unsigned, 401, "APIGW.0301")
    assert client.emu.counters()["rejected_auth"] == 6
    assert client.emu.keypair_count() == 0
    assert client.emu.counters()["create"] == 0


def test_other_project_is_forbidden(client: Client) -> None:
    other = "f" * 32
    _gateway(client.call("GET", f"/v3/{other}/keypairs"), 403, "APIGW.0302")
    _gateway(client.call("GET", f"/v3/{other}/keypairs", project_header=other), 403, "APIGW.0302")
    _gateway(client.call("GET", BASES["kps"], project_header=other), 403, "APIGW.0302")
    assert client.call("GET", BASES["kps"]).status_code == 200


def test_security_token_is_accepted_when_signed(client: Client) -> None:
    resp = client.call("GET", BASES["kps"], extra={"X-Security-Token": "temporary"})
    assert resp.status_code == 200


# -- faults ---------------------------------------------------------------------------------


def test_error_faults_answer_without_acting(client: Client) -> None:
    emu = client.emu
    emu.set_faults(error_rate=1.0, statuses=[503])
    resp = _create(client, "kps", "never", public_key=RFC_KEY)
    _assert_shape("kps", resp, 503)
    resp = _create(client, "v2.1", "never", public_key=RFC_KEY)
    _assert_shape("v2.1", resp, 503)
    emu.set_faults(error_rate=1.0, statuses=[429], retry_after=2)
    resp = client.call("GET", BASES["kps"])
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "2"
    assert resp.json()["errorCode"] == "APIGW.0308"
    assert emu.keypair_count() == 0
    assert emu.counters()["faults_injected"] == 3


def test_dropped_connection_does_not_act(client: Client) -> None:
    client.emu.set_faults(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        _create(client, "v2.1", "dropped", public_key=RFC_KEY)
    client.emu.set_faults()
    assert client.emu.keypair_count() == 0
    assert client.call("GET", BASES["kps"]).status_code == 200  # a fresh connection works


def test_lost_response_acts_then_closes(client: Client) -> None:
    client.emu.set_faults(lost_response_rate=1.0, operations=["create", "import"])
    assert client.call("GET", BASES["v2.1"]).status_code == 200  # reads are not faulted
    with pytest.raises(requests.ConnectionError):
        _create(client, "v2.1", "lost", public_key=RFC_KEY)
    with pytest.raises(requests.ConnectionError):
        _create(client, "kps", "lost-generated")
    detail = client.call("GET", BASES["kps"] + "/lost")
    assert detail.status_code == 200 and detail.json()["keypair"]["fingerprint"] == RFC_FP
    assert client.call("GET", BASES["kps"] + "/lost-generated").status_code == 200
    assert client.emu.counters()["faults_injected"] == 2


def test_faults_are_reproducible_with_a_seed(client: Client) -> None:
    def run() -> list[int]:
        client.emu.set_faults(error_rate=0.5, statuses=[500, 502], seed=1234)
        return [client.call("GET", BASES["kps"]).status_code for _ in range(30)]

    first = run()
    assert first == run()
    assert {200, 500, 502} >= set(first) and 200 in first and len(set(first)) > 1


def test_latency_and_reset(client: Client) -> None:
    import time

    emu = client.emu
    emu.set_faults(latency_ms=80)
    start = time.monotonic()
    assert client.call("GET", BASES["kps"]).status_code == 200
    assert time.monotonic() - start >= 0.08
    emu.set_faults(error_rate=1.0)
    assert emu.faults.config.latency_ms == 80  # latency_ms=None keeps it
    emu.reset()
    assert emu.faults.config.latency_ms == 0 and emu.faults.config.error_rate == 0
    assert emu.counters()["total"] == 0


def test_set_faults_validates(emulator: Emulator) -> None:
    for bad in ({"error_rate": 1.5}, {"statuses": [200]}, {"operations": ["nope"]},
                {"latency_ms": -1}):
        with pytest.raises(ValueError):
            emulator.set_faults(**bad)  # type: ignore[arg-type]


# -- counters and the admin path ----------------------------------------------------------


def test_counters_are_exact_under_concurrency(client: Client) -> None:
    from concurrent.futures import ThreadPoolExecutor

    _create(client, "kps", "c1", public_key=RFC_KEY)

    def work(_: int) -> int:
        own = Client(client.emu)
        return sum(own.call("GET", BASES["kps"] + "/c1").status_code == 200 for _ in range(25))

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(work, range(8))) == 200
    counts = client.emu.counters()
    assert counts["get"] == 200 and counts["import"] == 1 and counts["total"] == 201


def test_admin_path(client: Client) -> None:
    emu = client.emu
    base = emu.endpoint + "/_emulator"
    _create(client, "v2.1", "vault", key_protection={"encryption": {"type": "default"}})
    listing = requests.get(base + "/keypairs", timeout=5)
    assert listing.status_code == 200 and listing.headers["X-Request-Id"]
    (entry,) = listing.json()["keypairs"]
    assert entry["name"] == "vault" and entry["key_protection"] is True and entry["fingerprint"]
    assert "PRIVATE" not in listing.text
    assert requests.get(base + "/counters", timeout=5).json() == emu.counters()
    faults = requests.post(base + "/faults", json={"error_rate": 1, "statuses": [500]}, timeout=5)
    assert faults.status_code == 200 and faults.json()["error_rate"] == 1
    assert client.call("GET", BASES["kps"]).status_code == 500
    bad = requests.post(base + "/faults", json={"error_rat": 1}, timeout=5)
    assert bad.status_code == 400
    assert requests.post(base + "/reset", timeout=5).status_code == 200
    assert emu.keypair_count() == 0 and emu.counters()["total"] == 0
    assert client.call("GET", BASES["kps"]).status_code == 200
    assert requests.get(base + "/nothing", timeout=5).status_code == 404


def test_admin_path_is_for_loopback_clients_only() -> None:
    from reconciler.emulator.server import _is_loopback

    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("::ffff:127.0.0.1")
    assert not _is_loopback("10.1.2.3") and not _is_loopback("192.168.0.1")


# -- persistence, the command, independence from the SDK ----------------------------------


def test_data_file_round_trip(tmp_path: Any) -> None:
    import os
    import stat

    data = tmp_path / "emulator.json"
    with Emulator(data=str(data), keygen="ed25519") as first:
        client = Client(first)
        protection = {"encryption": {"type": "default"}}
        created = _create(client, "v2.1", "kept", key_protection=protection)
        _create(client, "kps", "plain", public_key=RFC_KEY)
        client.call("PUT", BASES["kps"] + "/plain", {"keypair": {"description": "d"}})
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o600
    assert not [p for p in os.listdir(tmp_path) if p != "emulator.json"]  # no temp files left
    with Emulator(data=str(data), keygen="ed25519") as second:
        client = Client(second)
        assert _names(client, "kps") == ["kept", "plain"]
        export = client.call("POST", BASES["kps"] + "/private-key/export",
                             {"keypair": {"name": "kept"}})
        assert export.json()["keypair"]["private_key"] == created.json()["keypair"]["private_key"]
        assert client.call("GET", BASES["kps"] + "/plain").json()["keypair"]["description"] == "d"
        _create(client, "kps", "third", public_key=RFC_KEY)
        ids = {client.call("GET", BASES["v2.1"] + f"/{n}").json()["keypair"]["id"]
               for n in ("kept", "plain", "third")}
        assert len(ids) == 3
    data.write_text('{"format_version": 99, "keypairs": []}')
    with pytest.raises(ValueError, match="format"):
        Emulator(data=str(data))


def test_command_prints_exports_and_serves_until_interrupted() -> None:
    import io

    from reconciler.commands import emulator as command
    from reconciler.env import Env
    from reconciler.parser import build_parser

    args = build_parser().parse_args(
        ["--project-id", "0123456789abcdef0123456789abcdef", "emulator", "--port", "0",
         "--keygen", "ed25519", "--ak", "MYAK", "--sk", "MYSK", "--latency-ms", "1"]
    )
    out, err = io.StringIO(), io.StringIO()
    seen: list[int] = []

    def wait() -> None:
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in out.getvalue().splitlines() if line.startswith("export ")
        )
        assert exports["HUAWEICLOUD_SDK_AK"] == "MYAK" and exports["HUAWEICLOUD_SDK_SK"] == "MYSK"
        emu = Emulator(ak="MYAK", sk="MYSK", project_id=exports["HUAWEICLOUD_SDK_PROJECT_ID"])
        emu.port = int(exports["RECONCILER_ENDPOINT"].rsplit(":", 1)[1])  # address the server
        seen.append(Client(emu).call("GET", BASES["kps"]).status_code)
        raise KeyboardInterrupt

    code = command.run(args, Env(stdout=out, stderr=err), wait=wait)
    assert code == 0 and seen == [200]
    assert "export RECONCILER_ENDPOINT=http://127.0.0.1:" in out.getvalue()
    bad = build_parser().parse_args(["emulator", "--fault-rate", "2"])
    assert command.run(bad, Env(stdout=out, stderr=err)) == 1


def test_the_official_sdk_is_not_required() -> None:
    import ast
    import subprocess
    import sys
    from pathlib import Path

    import reconciler.emulator

    package = Path(reconciler.emulator.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("huaweicloudsdk", "reconciler.api")), (path, name)
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith(('huaweicloudsdk', 'reconciler.api')):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from reconciler.emulator import Emulator\n"
        "with Emulator(keygen='ed25519') as emu:\n"
        "    print(emu.endpoint)\n"
    )
    root = str(package.parent.parent)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=root, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("http://127.0.0.1:")


def test_unsigned_security_token_is_rejected(emulator: Emulator) -> None:
    client = Client(emulator)
    url = emulator.endpoint + BASES["kps"].replace("{p}", emulator.project_id)
    headers = sign_headers(
        "GET", url, ak=emulator.ak, sk=emulator.sk, body=b"",
        headers={"X-Project-Id": emulator.project_id,
                 "X-Sdk-Date": datetime.now(UTC).strftime(DATE_FORMAT)},
    )
    headers["X-Security-Token"] = "added-after-signing"
    _gateway(client.session.get(url, headers=headers, timeout=5), 401, "APIGW.0301")


def test_custody_private_key_without_public_key_is_refused(client: Client) -> None:
    prot = {"private_key": _ed_pair()[1], "encryption": {"type": "default"}}
    resp = _create(client, "kps", "half", key_protection=prot)
    _assert_shape("kps", resp, 400)
    assert "PRIVATE KEY" not in resp.text and client.emu.keypair_count() == 0
