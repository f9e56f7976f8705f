"""The emulator's projects over real HTTP: separate key pairs per project through every API,
unreachable projects, the ``--data`` file with several projects (and the single-store file of
earlier releases), and IAM's agency ``assume_role`` with credentials limited to the agency's
projects. Requests are signed by the independent signer of ``test_emulator_http``.
"""

from __future__ import annotations

import json
import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from test_emulator_http import DATE_FORMAT, RFC_FP, RFC_KEY, sign_headers

from reconciler.emulator import Emulator

OTHER_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGl7Oo2hqx0rV6aJm1wYb6WyzY8xQbLz0yq7CKa0"
             "u0Nm other")
BASES = {"v2": "/v2/{p}/os-keypairs", "v2.1": "/v2.1/{p}/os-keypairs", "kps": "/v3/{p}/keypairs"}
SOUTH = "0b1e5outh0000000000000000000000a"
FOREIGN = "f0re1gn00000000000000000000000b"
FOREIGN_DOMAIN = "d0ma1n0f0ther0acc0unt00000000000"
SECURITY_TOKENS = "/v3.0/OS-CREDENTIAL/securitytokens"


def call(emu: Emulator, method: str, path: str, body: Any = None, *, project: str | None = None,
         ak: str | None = None, sk: str | None = None,
         token: str | None = None) -> requests.Response:
    """One signed request; ``{p}`` in ``path`` is ``project`` (default: the default one)."""
    pid = project or emu.project_id
    url = emu.endpoint + path.replace("{p}", pid)
    data = json.dumps(body).encode() if body is not None else b""
    headers = {"Content-Type": "application/json;charset=utf-8", "X-Project-Id": pid,
               "X-Sdk-Date": datetime.now(UTC).strftime(DATE_FORMAT)}
    if token is not None:
        headers["X-Security-Token"] = token
    signed = sign_headers(method, url, ak=ak or emu.ak, sk=sk or emu.sk, body=data,
                          headers=headers)
    return requests.request(method, url, data=data, headers=signed, timeout=10)


def admin(emu: Emulator, method: str, what: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{emu.endpoint}/_emulator/{what}", json=body, timeout=10)


def names(emu: Emulator, api: str, project: str | None = None) -> list[str]:
    resp = call(emu, "GET", BASES[api], project=project)
    assert resp.status_code == 200, resp.text
    return [item["keypair"]["name"] for item in resp.json()["keypairs"]]


def create(emu: Emulator, api: str, name: str, key: str, project: str | None = None) -> None:
    resp = call(emu, "POST", BASES[api], {"keypair": {"name": name, "public_key": key}},
                project=project)
    assert resp.status_code == 200, resp.text


def fingerprint(emu: Emulator, api: str, name: str, project: str | None = None) -> str:
    resp = call(emu, "GET", BASES[api] + f"/{name}", project=project)
    assert resp.status_code == 200, resp.text
    value: str = resp.json()["keypair"]["fingerprint"]
    return value


@pytest.fixture()
def south(emulator: Emulator) -> str:
    answer = admin(emulator, "POST", "projects", {"project_id": SOUTH, "region": "cn-south-1"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["region"] == "cn-south-1" and answer.json()["keypairs"] == 0
    return SOUTH


# -- key pairs per project ---------------------------------------------------------------


@pytest.mark.parametrize("api", ["v2", "v2.1", "kps"])
def test_two_projects_keep_separate_key_pairs(emulator: Emulator, south: str, api: str) -> None:
    create(emulator, api, "shared", RFC_KEY)
    create(emulator, api, "shared", OTHER_KEY, project=south)  # no conflict: another store
    create(emulator, api, "only-south", RFC_KEY, project=south)
    for flavour in BASES:  # every API reads the store of the project in its path
        assert names(emulator, flavour) == ["shared"]
        assert names(emulator, flavour, south) == ["only-south", "shared"]
    assert fingerprint(emulator, api, "shared") == RFC_FP
    assert fingerprint(emulator, api, "shared", south) != RFC_FP
    missing = call(emulator, "GET", BASES[api] + "/only-south")
    assert missing.status_code == 404
    gone = call(emulator, "DELETE", BASES[api] + "/shared", project=south)
    assert gone.status_code in (202, 204), gone.text
    assert names(emulator, api) == ["shared"] and names(emulator, api, south) == ["only-south"]
    assert emulator.keypair_count() == 1 and emulator.keypair_count(south) == 1


def test_counters_per_project_add_up_to_the_totals(emulator: Emulator, south: str) -> None:
    create(emulator, "kps", "a", RFC_KEY)
    create(emulator, "kps", "b", RFC_KEY, project=south)
    names(emulator, "kps", south)
    call(emulator, "GET", BASES["kps"], sk="wrong-secret", project=south)
    mine, theirs = emulator.counters(), emulator.counters(south)
    assert (theirs["import"], theirs["list"], theirs["rejected_auth"], theirs["total"]) == (
        1, 1, 1, 3)
    default = emulator.counters(emulator.project_id)
    assert (default["import"], default["total"]) == (1, 1)
    assert mine["total"] == 4 and mine["import"] == 2 and mine["rejected_auth"] == 1
    listed = {p["project_id"]: p for p in admin(emulator, "GET", "projects").json()["projects"]}
    assert listed[south]["counters"] == theirs and listed[south]["keypairs"] == 1
    assert listed[emulator.project_id]["default"] is True
    emulator.reset()
    assert emulator.projects.get(south) is None  # added after construction: gone on reset
    assert emulator.counters()["total"] == 0


def test_an_unknown_project_is_refused_as_a_mismatched_one(emulator: Emulator,
                                                          south: str) -> None:
    unknown = call(emulator, "GET", BASES["v2.1"], project="0" * 32)
    assert unknown.status_code == 403 and unknown.json()["errorCode"] == "APIGW.0302"
    url = emulator.endpoint + BASES["kps"].replace("{p}", south)
    headers = {"X-Project-Id": emulator.project_id,  # the header names the other project
               "X-Sdk-Date": datetime.now(UTC).strftime(DATE_FORMAT)}
    signed = sign_headers("GET", url, ak=emulator.ak, sk=emulator.sk, body=b"",
                          headers=headers)
    mismatch = requests.get(url, headers=signed, timeout=10)
    assert mismatch.status_code == 403 and mismatch.json()["errorCode"] == "APIGW.0302"


def test_the_constructor_serves_more_projects(tmp_path: Path) -> None:
    with Emulator(keygen="ed25519", projects={SOUTH: "cn-south-1"}) as emu:
        create(emu, "v2.1", "k", RFC_KEY, project=SOUTH)
        assert names(emu, "v2.1") == [] and names(emu, "kps", SOUTH) == ["k"]
        emu.reset()  # the constructor's projects stay
        assert emu.project_summary(SOUTH)["region"] == "cn-south-1"
        assert names(emu, "kps", SOUTH) == []
    with pytest.raises(ValueError, match="region"):
        Emulator(projects={SOUTH: "Not A Region"})


# -- unreachable projects ----------------------------------------------------------------


def test_an_unreachable_project_fails_while_another_works(emulator: Emulator,
                                                          south: str) -> None:
    create(emulator, "kps", "web", RFC_KEY, project=south)
    cut = admin(emulator, "POST", f"projects/{south}/unreachable", {})
    assert cut.status_code == 200 and cut.json()["reachable"] is False
    with pytest.raises(requests.ConnectionError):
        call(emulator, "GET", BASES["kps"], project=south)
    create(emulator, "v2.1", "web", RFC_KEY)  # the default project still works
    assert names(emulator, "kps") == ["web"]
    status = admin(emulator, "POST", f"projects/{south}/unreachable", {"status": 503})
    assert status.json()["unreachable_status"] == 503
    refused = call(emulator, "POST", BASES["v2.1"], {"keypair": {"name": "x"}}, project=south)
    assert refused.status_code == 503 and refused.json()["errorCode"] == "APIGW.0202"
    assert south in refused.json()["errorMsg"] and "Retry-After" not in refused.headers
    assert emulator.counters(south)["unreachable"] == 2
    soon = admin(emulator, "POST", f"projects/{south}/unreachable",
                 {"status": 503, "retry_after": 1.5})
    assert soon.status_code == 200
    again = call(emulator, "GET", BASES["kps"], project=south)
    assert again.status_code == 503 and again.headers["Retry-After"] == "1.5"
    assert emulator.counters(south)["import"] == 1  # the refused create was never carried out
    back = admin(emulator, "DELETE", f"projects/{south}/unreachable")
    assert back.status_code == 200 and back.json()["reachable"] is True
    assert names(emulator, "v2", south) == ["web"]


def test_the_outage_admin_call_checks_what_it_is_given(emulator: Emulator, south: str) -> None:
    for body in ({"status": 200}, {"status": "503"}, {"drop": True}, {"retry_after": 0},
                 {"status": 503, "retry_after": -1}, {"status": 503, "retry_after": "0"},
                 {"status": 503, "retry_after": True}):
        bad = admin(emulator, "POST", f"projects/{south}/unreachable", body)
        assert bad.status_code == 400, body
    missing = admin(emulator, "POST", "projects/nope/unreachable", {})
    assert missing.status_code == 404 and "POST /_emulator/projects" in missing.json()["error"]
    assert admin(emulator, "POST", "projects", {"project_id": "a/b"}).status_code == 400
    emulator.set_unreachable(south, status=502)
    emulator.reset()
    assert emulator.projects.get(south) is None


# -- the data file -----------------------------------------------------------------------


def test_the_data_file_keeps_every_project(tmp_path: Path) -> None:
    data = tmp_path / "emulator.json"
    with Emulator(keygen="ed25519", data=str(data), projects={SOUTH: "cn-south-1"}) as emu:
        default = emu.project_id
        emu.add_project(FOREIGN, region="ap-southeast-1", domain_id=FOREIGN_DOMAIN)
        create(emu, "v2.1", "north-key", RFC_KEY)
        create(emu, "kps", "south-key", OTHER_KEY, project=SOUTH)
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o600
    doc = json.loads(data.read_text())
    assert doc["format_version"] == 2 and doc["default_project"] == default
    with Emulator(keygen="ed25519", data=str(data), project_id=default) as again:
        assert names(again, "kps") == ["north-key"]
        assert names(again, "v2", SOUTH) == ["south-key"]  # not passed again: from the file
        assert again.project_summary(SOUTH)["region"] == "cn-south-1"
        assert again.project_summary(FOREIGN)["domain_id"] == FOREIGN_DOMAIN
        create(again, "kps", "second", RFC_KEY, project=SOUTH)
        assert fingerprint(again, "kps", "north-key") == RFC_FP


def test_a_data_file_of_the_earlier_single_store_shape_loads(tmp_path: Path) -> None:
    data = tmp_path / "old.json"
    record = {"name": "legacy", "public_key": RFC_KEY, "fingerprint": RFC_FP, "type": "ssh",
              "user_id": "u1", "id": 7, "created_ms": 1, "updated_ms": 1, "scope": "user",
              "description": "from before", "key_protection": False, "encryption": {},
              "private_key": None}
    data.write_text(json.dumps({"format_version": 1, "next_id": 8, "keypairs": [record]}))
    with Emulator(keygen="ed25519", data=str(data), project_id="p-anything") as emu:
        assert names(emu, "v2.1") == ["legacy"]  # in the default project, whatever its id
        detail = call(emu, "GET", BASES["kps"] + "/legacy").json()["keypair"]
        assert detail["description"] == "from before"
        created = call(emu, "POST", BASES["kps"], {"keypair": {"name": "new"}})
        assert created.status_code == 200, created.text
        record_new = emu.store.get("new")
        assert record_new is not None and record_new.id == 8  # next_id carried over
    doc = json.loads(data.read_text())
    assert doc["format_version"] == 2
    assert [k["name"] for k in doc["projects"][0]["keypairs"]] == ["legacy", "new"]


def test_a_data_file_of_no_known_format_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "odd.json"
    data.write_text(json.dumps({"format_version": 3, "projects": []}))
    with pytest.raises(ValueError, match="format 1 or 2"):
        Emulator(data=str(data))


# -- agencies and assume_role ------------------------------------------------------------


@pytest.fixture()
def agency(emulator: Emulator) -> dict[str, Any]:
    emulator.add_project(FOREIGN, region="ap-southeast-1", domain_id=FOREIGN_DOMAIN)
    answer = admin(emulator, "POST", "iam/agencies",
                   {"name": "keys-ops", "domain_id": FOREIGN_DOMAIN, "domain_name": "acme-prod",
                    "projects": [FOREIGN]})
    assert answer.status_code == 201, answer.text
    doc: dict[str, Any] = answer.json()
    return doc


def assume(emu: Emulator, role: dict[str, Any], *, ak: str | None = None,
           sk: str | None = None, token: str | None = None,
           signed: bool = True) -> requests.Response:
    body = {"auth": {"identity": {"methods": ["assume_role"], "assume_role": role}}}
    url = emu.endpoint + SECURITY_TOKENS
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json;charset=utf-8",
               "X-Sdk-Date": datetime.now(UTC).strftime(DATE_FORMAT)}
    if token is not None:
        headers["X-Security-Token"] = token
    if signed:
        headers = sign_headers("POST", url, ak=ak or emu.ak, sk=sk or emu.sk, body=data,
                               headers=headers)
    return requests.post(url, data=data, headers=headers, timeout=10)


def test_assume_role_grants_credentials_for_the_agencys_projects(
        emulator: Emulator, agency: dict[str, Any]) -> None:
    before = time.time()
    answer = assume(emulator, {"agency_name": "keys-ops", "domain_name": "acme-prod"})
    assert answer.status_code == 201, answer.text
    credential = answer.json()["credential"]
    assert set(credential) == {"access", "secret", "securitytoken", "expires_at"}
    expires = datetime.strptime(credential["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    lifetime = expires.replace(tzinfo=UTC).timestamp() - before
    assert 895 <= lifetime <= 905  # the default: 15 minutes
    temp = {"ak": credential["access"], "sk": credential["secret"],
            "token": credential["securitytoken"]}
    created = call(emulator, "POST", BASES["kps"], {"keypair": {"name": "ops", "public_key":
                                                                RFC_KEY}},
                   project=FOREIGN, **temp)
    assert created.status_code == 200, created.text
    listed = call(emulator, "GET", BASES["v2.1"], project=FOREIGN, **temp)
    assert [k["keypair"]["name"] for k in listed.json()["keypairs"]] == ["ops"]
    assert emulator.keypair_count() == 0 and emulator.keypair_count(FOREIGN) == 1
    assert emulator.iam.counts["assume_role"] == 1
    assert credential["secret"] not in json.dumps(admin(emulator, "GET", "iam").json())


@pytest.mark.parametrize("api", ["v2.1", "kps"])
def test_agency_credentials_are_refused_on_other_projects(
        emulator: Emulator, agency: dict[str, Any], south: str, api: str) -> None:
    credential = assume(emulator, {"agency_name": "keys-ops", "domain_id": FOREIGN_DOMAIN,
                                   "duration_seconds": 3600}).json()["credential"]
    temp = {"ak": credential["access"], "sk": credential["secret"],
            "token": credential["securitytoken"]}
    for other in (emulator.project_id, south):
        refused = call(emulator, "GET", BASES[api], project=other, **temp)
        assert refused.status_code == 403, refused.text
        body = refused.json()
        if api == "kps":  # the API's own shape, not the gateway's
            assert body["error_code"] == "KPS.0403" and FOREIGN in body["error_msg"]
        else:
            assert body["forbidden"]["code"] == 403 and other in body["forbidden"]["message"]
    own = call(emulator, "GET", BASES[api], project=FOREIGN)  # the emulator's own AK/SK
    assert own.status_code == 403 and FOREIGN_DOMAIN in own.text
    assert emulator.counters(FOREIGN)["rejected_auth"] == 1


def test_assume_role_duration_is_fifteen_minutes_to_a_day(emulator: Emulator,
                                                          agency: dict[str, Any]) -> None:
    role = {"agency_name": "keys-ops", "domain_id": FOREIGN_DOMAIN}
    for good in (900, 86400):
        assert assume(emulator, {**role, "duration_seconds": good}).status_code == 201
    for bad in (899, 86401, "3600", 0, True):
        refused = assume(emulator, {**role, "duration_seconds": bad})
        assert refused.status_code == 400, bad
        error = refused.json()["error"]
        assert error["code"] == 400 and error["error_code"] == "IAM.0007"
        assert "900 to 86400" in error["message"]


def test_assume_role_of_an_unknown_agency_or_account_is_refused(
        emulator: Emulator, agency: dict[str, Any]) -> None:
    for role in ({"agency_name": "nope", "domain_id": FOREIGN_DOMAIN},
                 {"agency_name": "keys-ops", "domain_name": "another-account"},
                 {"agency_name": "keys-ops", "domain_id": FOREIGN_DOMAIN,
                  "domain_name": "another-account"}):
        refused = assume(emulator, role)
        assert refused.status_code == 404, role
        assert refused.json()["error"]["error_code"] == "IAM.0004"
    no_account = assume(emulator, {"agency_name": "keys-ops"})
    assert no_account.status_code == 400 and "domain_id or domain_name" in no_account.text
    unsigned = assume(emulator, {"agency_name": "keys-ops", "domain_id": FOREIGN_DOMAIN},
                      signed=False)
    assert unsigned.status_code == 401 and unsigned.json()["error"]["error_code"] == "IAM.0005"
    forged = assume(emulator, {"agency_name": "keys-ops", "domain_id": FOREIGN_DOMAIN},
                    sk="not-the-secret")
    assert forged.status_code == 401 and "not-the-secret" not in forged.text
    assert "assume_role" not in emulator.iam.counts


def test_agency_credentials_expire(emulator: Emulator, agency: dict[str, Any]) -> None:
    credential = assume(emulator, {"agency_name": "keys-ops", "domain_id": FOREIGN_DOMAIN,
                                   "duration_seconds": 900}).json()["credential"]
    temp = {"ak": credential["access"], "sk": credential["secret"],
            "token": credential["securitytoken"]}
    assert call(emulator, "GET", BASES["kps"], project=FOREIGN, **temp).status_code == 200
    admin(emulator, "POST", "iam/settings", {"clock_offset_seconds": 901})
    expired = call(emulator, "GET", BASES["kps"], project=FOREIGN, **temp)
    assert expired.status_code == 401 and expired.json()["errorCode"] == "APIGW.0301"
    assert "expired" in expired.json()["errorMsg"]
    again = assume(emulator, {"agency_name": "keys-ops", "domain_id": FOREIGN_DOMAIN},
                   **temp)  # expired credentials cannot assume either
    assert again.status_code == 401 and "expired" in again.text
    fresh = assume(emulator, {"agency_name": "keys-ops", "domain_id": FOREIGN_DOMAIN})
    assert fresh.status_code == 201  # the caller's own AK/SK still can


def test_temporary_credentials_can_assume_the_agency(emulator: Emulator,
                                                     agency: dict[str, Any]) -> None:
    first = assume(emulator, {"agency_name": "keys-ops", "domain_id": FOREIGN_DOMAIN})
    credential = first.json()["credential"]
    chained = assume(emulator, {"agency_name": "keys-ops", "domain_name": "acme-prod"},
                     ak=credential["access"], sk=credential["secret"],
                     token=credential["securitytoken"])
    assert chained.status_code == 201, chained.text
    no_token = assume(emulator, {"agency_name": "keys-ops", "domain_name": "acme-prod"},
                      ak=credential["access"], sk=credential["secret"])
    assert no_token.status_code == 401


def test_agency_registration_checks_its_fields(emulator: Emulator) -> None:
    base = {"name": "ops", "domain_name": "acme", "projects": [emulator.project_id]}
    assert admin(emulator, "POST", "iam/agencies", base).status_code == 201
    for bad in ({**base, "projects": []}, {**base, "projects": ["not-served"]},
                {"name": "ops", "projects": [emulator.project_id]}, {**base, "extra": 1}):
        refused = admin(emulator, "POST", "iam/agencies", bad)
        assert refused.status_code == 400, bad
    assert "add it first" in admin(emulator, "POST", "iam/agencies",
                                   {**base, "projects": ["not-served"]}).json()["error"]
    emulator.reset()
    assert emulator.iam.summary()["agencies"] == []
