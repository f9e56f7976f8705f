"""KMS data keys: reconciler's ``KmsClient`` against the emulator over real HTTP, signed.

Keys are set up through the admin path (as a test or a demo would); every data key is real
AES-GCM under the emulator's per-key secret, so a cipher text opens under its own key and
AAD only, and a disabled key or one scheduled for deletion refuses both directions.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.api.client import Backoff, HttpClient
from reconciler.api.kms import KmsClient
from reconciler.api.protocol import ApiSettings, Credentials
from reconciler.emulator.server import Emulator
from reconciler.errors import AnswerShapeError, ApiError, UsageError
from reconciler.model import Api, Secret
from tests.mutating_proxy import Rule, mutating_proxy


def admin(emulator: Emulator, method: str, path: str, body: object = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{emulator.endpoint}/_emulator/{path}", data=data,
                                     method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def make_key(emulator: Emulator, name: str, *, project: str | None = None,
             aliases: tuple[str, ...] = ()) -> str:
    pid = project or emulator.project_id
    made = admin(emulator, "POST", f"projects/{pid}/kms/keys",
                 {"key_alias": name, "aliases": list(aliases)})
    return str(made["key_id"])


def key_action(emulator: Emulator, key_id: str, action: str, body: object = None) -> Any:
    return admin(emulator, "POST", f"projects/{emulator.project_id}/kms/keys/{key_id}/{action}",
                 body if body is not None else {})


def settings(emulator: Emulator, *, endpoint: str | None = None,
             project: str | None = None) -> ApiSettings:
    return ApiSettings(api=Api.KPS, endpoint=endpoint or emulator.endpoint,
                       project_id=project or emulator.project_id,
                       credentials=Credentials(ak=emulator.ak, sk=Secret(emulator.sk)),
                       max_retries=4, total_timeout=30)


@pytest.fixture()
def kms(emulator: Emulator) -> Iterator[KmsClient]:
    client = KmsClient(settings(emulator))
    yield client
    client.close()


def test_a_data_key_round_trips_and_is_fresh_each_time(emulator: Emulator,
                                                       kms: KmsClient) -> None:
    key_id = make_key(emulator, "state")
    first = kms.create_datakey(key_id, aad="state:prod")
    second = kms.create_datakey(key_id, aad="state:prod")
    assert len(first.reveal_bytes()) == 32
    assert first.plaintext != second.plaintext and first.cipher_text != second.cipher_text
    assert repr(first.plaintext) == "(sensitive value)"
    assert first.plaintext.reveal() not in repr(first) + str(first)
    opened = kms.decrypt_datakey(key_id, first.cipher_text, aad="state:prod")
    assert opened == first.plaintext
    assert emulator.counters()["kms_create_datakey"] == 2
    assert emulator.counters()["kms_decrypt_datakey"] == 1


def test_another_aad_another_key_or_an_altered_cipher_text_is_refused(
        emulator: Emulator, kms: KmsClient) -> None:
    key_id = make_key(emulator, "state")
    other = make_key(emulator, "other")
    made = kms.create_datakey(key_id, aad="state:prod")
    flipped = made.cipher_text[:-2] + format(int(made.cipher_text[-2:], 16) ^ 1, "02x")
    for key, text, aad in ((key_id, made.cipher_text, "state:dev"),
                           (key_id, made.cipher_text, ""),
                           (other, made.cipher_text, "state:prod"),
                           (key_id, flipped, "state:prod")):
        with pytest.raises(ApiError) as refused:
            kms.decrypt_datakey(key, text, aad=aad)
        assert refused.value.status == 400 and refused.value.code == "KMS.0303"
        assert "additional authenticated data" in str(refused.value)
        assert made.plaintext.reveal() not in str(refused.value)


def test_a_disabled_key_refuses_both_ways_until_enabled(emulator: Emulator,
                                                       kms: KmsClient) -> None:
    key_id = make_key(emulator, "state")
    made = kms.create_datakey(key_id, aad="a")
    assert key_action(emulator, key_id, "disable")["key_state"] == "3"
    for attempt in (lambda: kms.create_datakey(key_id, aad="a"),
                    lambda: kms.decrypt_datakey(key_id, made.cipher_text, aad="a")):
        with pytest.raises(ApiError) as refused:
            attempt()
        assert refused.value.code == "KMS.0209"
        assert "is disabled: enable it" in str(refused.value)
    info = kms.describe_key(key_id)
    assert info is not None and info.state_text == "disabled" and not info.usable
    key_action(emulator, key_id, "enable")
    assert kms.decrypt_datakey(key_id, made.cipher_text, aad="a") == made.plaintext


def test_a_key_scheduled_for_deletion_is_refused_until_cancelled(emulator: Emulator,
                                                                kms: KmsClient) -> None:
    key_id = make_key(emulator, "state")
    made = kms.create_datakey(key_id, aad="a")
    scheduled = key_action(emulator, key_id, "schedule-deletion", {"pending_days": "7"})
    assert scheduled["key_state"] == "4" and scheduled["scheduled_deletion_date"]
    with pytest.raises(ApiError) as refused:
        kms.decrypt_datakey(key_id, made.cipher_text, aad="a")
    assert refused.value.code == "KMS.0210" and "cancel the deletion" in str(refused.value)
    assert key_action(emulator, key_id, "cancel-deletion")["key_state"] == "3"
    key_action(emulator, key_id, "enable")
    assert kms.decrypt_datakey(key_id, made.cipher_text, aad="a") == made.plaintext


def test_aliases_resolve_across_pages_and_unknown_names_say_what_to_do(
        emulator: Emulator, kms: KmsClient) -> None:
    key_id = make_key(emulator, "state", aliases=("alias/state",))
    for i in range(60):  # more than one page of 50
        admin(emulator, "POST", f"projects/{emulator.project_id}/kms/aliases",
              {"alias": f"alias/a{i:02d}", "key_id": make_key(emulator, f"k{i}")})
    assert kms.resolve_key("alias/state") == key_id  # on the second page ("alias/s" > "alias/a")
    assert kms.resolve_key(key_id) == key_id
    with pytest.raises(UsageError, match="alias/missing does not exist in project"):
        kms.resolve_key("alias/missing")
    with pytest.raises(UsageError, match="neither a KMS key id"):
        kms.resolve_key("state")
    info = kms.describe_key(key_id)
    assert info is not None and info.name == "state" and info.usable


def test_keys_belong_to_their_project(emulator: Emulator, kms: KmsClient) -> None:
    emulator.add_project("b" * 32, region="cn-north-4")
    elsewhere = make_key(emulator, "theirs", project="b" * 32)
    assert kms.describe_key(elsewhere) is None
    with pytest.raises(ApiError) as refused:
        kms.create_datakey(elsewhere, aad="a")
    assert refused.value.status == 404 and "does not exist in this project" in str(refused.value)
    theirs = KmsClient(settings(emulator, project="b" * 32))
    try:
        assert len(theirs.create_datakey(elsewhere, aad="a").reveal_bytes()) == 32
    finally:
        theirs.close()


def test_too_long_an_aad_is_refused_before_sending(emulator: Emulator, kms: KmsClient) -> None:
    key_id = make_key(emulator, "state")
    with pytest.raises(UsageError, match="longer than 128 bytes"):
        kms.create_datakey(key_id, aad="x" * 129)
    assert emulator.counters()["total"] == 0


def test_throttling_and_server_errors_are_retried(emulator: Emulator) -> None:
    key_id = make_key(emulator, "state")
    emulator.set_faults(error_rate=0.5, statuses=[429, 503], seed=7,
                        operations=["kms_create_datakey", "kms_decrypt_datakey"])
    ours = settings(emulator)
    http = HttpClient(ours, sleep=lambda _: None, backoff=Backoff(base=0.0))
    client = KmsClient(ours, http=http)
    try:
        for _ in range(5):
            made = client.create_datakey(key_id, aad="a")
            assert client.decrypt_datakey(key_id, made.cipher_text, aad="a") == made.plaintext
    finally:
        client.close()
    assert emulator.counters()["faults_injected"] > 0


def test_an_answer_whose_digest_does_not_match_is_refused(emulator: Emulator) -> None:
    key_id = make_key(emulator, "state")

    def tamper(status: int, body: bytes) -> tuple[int, bytes]:
        doc = json.loads(body)
        doc["data_key"] = "00" * 32
        return status, json.dumps(doc).encode()

    with mutating_proxy(emulator.endpoint,
                        [Rule("POST", r"/kms/decrypt-datakey", mutate=tamper)]) as proxy:
        client = KmsClient(settings(emulator, endpoint=proxy.endpoint))
        try:
            made = client.create_datakey(key_id, aad="a")
            with pytest.raises(AnswerShapeError) as bad:
                client.decrypt_datakey(key_id, made.cipher_text, aad="a")
        finally:
            client.close()
    assert bad.value.path == "datakey_dgst"
    assert made.plaintext.reveal() not in str(bad.value)


def test_the_debug_log_never_holds_a_data_key(emulator: Emulator, kms: KmsClient,
                                              caplog: pytest.LogCaptureFixture) -> None:
    key_id = make_key(emulator, "state")
    with caplog.at_level(logging.DEBUG, logger="reconciler.http"):
        made = kms.create_datakey(key_id, aad="a")
        kms.decrypt_datakey(key_id, made.cipher_text, aad="a")
    text = caplog.text
    assert "create-datakey" in text and "plain_text" in text and "data_key" in text
    assert made.plaintext.reveal() not in text
    assert made.plaintext.reveal().upper() not in text
    assert text.count("(sensitive value)") >= 2


def test_kms_and_csms_paths_need_a_valid_signature_and_project(emulator: Emulator) -> None:
    key_id = make_key(emulator, "state")
    body = json.dumps({"key_id": key_id}).encode()
    for path, headers in (
            (f"/v1.0/{emulator.project_id}/kms/create-datakey", {}),
            (f"/v1/{emulator.project_id}/secrets", {"X-Project-Id": emulator.project_id})):
        request = urllib.request.Request(f"{emulator.endpoint}{path}", data=body,
                                         method="POST", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
        assert json.load(refused.value)["errorCode"] == "APIGW.0301"
    emulator.add_project("c" * 32, region="cn-north-4")
    wrong = KmsClient(settings(emulator, project="c" * 32))
    try:
        with pytest.raises(ApiError) as elsewhere:
            wrong.create_datakey(key_id, aad="a")  # the key is in another project
    finally:
        wrong.close()
    assert elsewhere.value.status == 404
    assert emulator.counters().get("kms_create_datakey") == 1
    assert emulator.counters()["rejected_auth"] == 2
