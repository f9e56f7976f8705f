"""CSMS secrets: reconciler's ``CsmsClient`` against the emulator over real HTTP, signed.

Versions and stages (a new version is SYSCURRENT, the one before SYSPREVIOUS), the current
value read by stage, the name and size rules, the secret's KMS key (a disabled key makes
it unreadable), immediate and scheduled deletion, restore, and secrets kept out of logs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from reconciler.api.csms import CsmsClient
from reconciler.emulator.server import Emulator
from reconciler.errors import ApiError, OutcomeUnknownError, UsageError
from reconciler.model import Secret
from tests.test_emulator_kms import admin, key_action, make_key, settings

VALUE = Secret("db-password-7c1e9a")


@pytest.fixture()
def csms(emulator: Emulator) -> Iterator[CsmsClient]:
    client = CsmsClient(settings(emulator))
    yield client
    client.close()


def test_versions_move_the_stages_and_current_reads_by_stage(emulator: Emulator,
                                                             csms: CsmsClient) -> None:
    made = csms.create_secret("db", VALUE, description="the database password")
    assert made.name == "db" and made.state == "ENABLED" and made.kms_key_id
    first = csms.current("db")
    assert first is not None and first.version_id == "v1" and first.value == VALUE
    second = csms.put_version("db", Secret("rotated-1"))
    assert second.version_id == "v2" and second.stages == ("SYSCURRENT",)
    third = csms.put_version("db", Secret("rotated-2"))
    assert {v.version_id: v.stages for v in csms.list_versions("db")} == {
        "v1": (), "v2": ("SYSPREVIOUS",), "v3": ("SYSCURRENT",)}
    now = csms.current("db")
    assert now is not None and now.version_id == third.version_id
    assert now.value == Secret("rotated-2")
    assert csms.stage("db", "SYSPREVIOUS") == "v2"
    old = csms.get_version("db", "v1")
    assert old is not None and old.value == VALUE
    assert csms.get_version("db", "v9") is None
    assert repr(now).count("(sensitive value)") == 1 and "rotated" not in repr(now)
    assert emulator.counters()["csms_show_stage"] == 3  # current twice, SYSPREVIOUS once


def test_versions_are_listed_across_pages(emulator: Emulator, csms: CsmsClient) -> None:
    csms.create_secret("many", VALUE)
    for i in range(54):
        csms.put_version("many", Secret(f"value-{i}"))
    listed = csms.list_versions("many")
    assert [v.version_id for v in listed] == [f"v{i}" for i in range(1, 56)]
    assert emulator.counters()["csms_list_versions"] == 2


def test_name_and_size_rules(emulator: Emulator, csms: CsmsClient) -> None:
    for bad in ("", "a" * 65, "has space", "dot.ted", "slash/ed"):
        with pytest.raises(UsageError, match="not a valid CSMS secret name"):
            csms.create_secret(bad, VALUE)
    csms.create_secret("a" * 64, Secret("x" * 32 * 1024))  # exactly 32 KiB
    with pytest.raises(UsageError, match="32769 bytes; CSMS keeps at most 32768"):
        csms.create_secret("big", Secret("x" * (32 * 1024 + 1)))
    with pytest.raises(UsageError, match="32 KiB"):
        csms.put_version("a" * 64, Secret("é" * (16 * 1024 + 1)))  # 2 bytes each
    assert emulator.counters()["csms_create_secret"] == 1  # the refused ones were never sent


def test_a_second_secret_of_one_name_is_refused(emulator: Emulator, csms: CsmsClient) -> None:
    csms.create_secret("db", VALUE)
    with pytest.raises(ApiError) as refused:
        csms.create_secret("db", Secret("other"))
    assert refused.value.status == 409 and "add a version to it" in str(refused.value)
    current = csms.current("db")
    assert current is not None and current.value == VALUE


def test_the_secret_is_sealed_under_its_kms_key(emulator: Emulator, csms: CsmsClient) -> None:
    key_id = make_key(emulator, "secrets")
    made = csms.create_secret("db", VALUE, kms_key_id=key_id)
    assert made.kms_key_id == key_id
    key_action(emulator, key_id, "disable")
    with pytest.raises(ApiError) as refused:
        csms.current("db")
    assert refused.value.code == "CSMS.0012" and "enable it" in str(refused.value)
    with pytest.raises(ApiError):
        csms.put_version("db", Secret("new"))
    key_action(emulator, key_id, "enable")
    current = csms.current("db")
    assert current is not None and current.value == VALUE
    with pytest.raises(ApiError) as unknown:
        csms.create_secret("other", VALUE, kms_key_id="0d0466b0-e727-4d9c-b35d-f84bb474a37f")
    assert unknown.value.status == 400 and "kms_key_id" in str(unknown.value)


def test_without_a_key_csms_default_is_made(emulator: Emulator, csms: CsmsClient) -> None:
    made = csms.create_secret("db", VALUE)
    keys = admin(emulator, "GET", f"projects/{emulator.project_id}/kms/keys")["keys"]
    assert [(k["key_alias"], k["default_key_flag"]) for k in keys] == [("csms/default", "1")]
    assert made.kms_key_id == keys[0]["key_id"]


def test_immediate_deletion(emulator: Emulator, csms: CsmsClient) -> None:
    csms.create_secret("db", VALUE)
    assert csms.delete_secret("db") is True
    assert csms.get_secret("db") is None and csms.current("db") is None
    assert csms.delete_secret("db") is False
    csms.create_secret("db", Secret("again"))  # the name is free again
    current = csms.current("db")
    assert current is not None and current.version_id == "v1"


def test_scheduled_deletion_and_restore(emulator: Emulator, csms: CsmsClient) -> None:
    csms.create_secret("db", VALUE)
    pending = csms.schedule_deletion("db", days=7)
    assert pending.state == "PENDING_DELETE" and pending.scheduled_delete_time
    with pytest.raises(ApiError) as refused:
        csms.current("db")
    assert refused.value.code == "CSMS.0103" and "restore it" in str(refused.value)
    with pytest.raises(ApiError):
        csms.put_version("db", Secret("new"))
    assert csms.schedule_deletion("db").state == "PENDING_DELETE"  # already: the state asked
    with pytest.raises(UsageError, match="7 to 30 days"):
        csms.schedule_deletion("db", days=31)
    restored = csms.restore("db")
    assert restored.state == "ENABLED" and restored.scheduled_delete_time is None
    assert csms.restore("db").state == "ENABLED"
    current = csms.current("db")
    assert current is not None and current.value == VALUE
    with pytest.raises(ApiError) as missing:
        csms.restore("never-made")
    assert missing.value.status == 404 and "never-made" in str(missing.value)


def test_a_create_whose_answer_is_lost_is_not_resent(emulator: Emulator,
                                                     csms: CsmsClient) -> None:
    emulator.set_faults(lost_response_rate=1.0, operations=["csms_create_secret"])
    with pytest.raises(OutcomeUnknownError) as lost:
        csms.create_secret("db", VALUE)
    assert "Read the CSMS secret db to find out" in str(lost.value)
    assert "key pair" not in str(lost.value)
    assert emulator.counters()["csms_create_secret"] == 1
    emulator.set_faults()
    assert csms.get_secret("db") is not None  # it was made: re-reading tells


def test_values_stay_out_of_the_admin_path_and_the_debug_log(
        emulator: Emulator, csms: CsmsClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="reconciler.http"):
        csms.create_secret("db", VALUE)
        csms.put_version("db", Secret("second-value-31f"))
        assert csms.current("db") is not None
    summary = admin(emulator, "GET", f"projects/{emulator.project_id}/csms/secrets")
    assert summary["secrets"][0]["versions"] == [{"id": "v1", "stages": ["SYSPREVIOUS"]},
                                                 {"id": "v2", "stages": ["SYSCURRENT"]}]
    keys = admin(emulator, "GET", f"projects/{emulator.project_id}/kms/keys")
    for text in (caplog.text, json.dumps(summary), json.dumps(keys)):
        assert VALUE.reveal() not in text and "second-value-31f" not in text
    assert "secret_string" in caplog.text and "(sensitive value)" in caplog.text


def test_a_key_already_named_csms_default_is_the_default(emulator: Emulator,
                                                        csms: CsmsClient) -> None:
    key_id = make_key(emulator, "csms/default")
    assert csms.create_secret("db", VALUE).kms_key_id == key_id
