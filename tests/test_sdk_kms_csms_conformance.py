"""The official SDK's KMS and CSMS clients against the emulator, unchanged: every KMS and
CSMS endpoint the emulator serves, driven by the clients their users already have.

KMS v2: create-key, describe-key, enable-key, disable-key, schedule-key-deletion,
cancel-key-deletion, aliases (create, list), create-datakey, decrypt-datakey, and the
refusals (another AAD, another key, a disabled key) as the SDK's own exceptions. CSMS v1:
secrets (create, show, list), versions (create, list, show), stages (show, update),
scheduled deletion and restore, immediate deletion, and the name and 32 KiB rules. Data
made by one client is read by reconciler's own, so both see one cloud.

Needs huaweicloudsdkcore, huaweicloudsdkkms and huaweicloudsdkcsms 3.1.219 (the test extra);
skipped, saying so, where they are not installed.
"""

from __future__ import annotations

import pytest

from reconciler.api.csms import CsmsClient
from reconciler.api.kms import KmsClient
from reconciler.emulator.server import Emulator
from reconciler.model import Secret
from tests.test_emulator_kms import settings

MISSING = ("the SDK conformance tests need huaweicloudsdkcore, huaweicloudsdkkms and "
           "huaweicloudsdkcsms 3.1.219 (the test extra installs them)")
kms = pytest.importorskip("huaweicloudsdkkms.v2", reason=MISSING)
csms = pytest.importorskip("huaweicloudsdkcsms.v1", reason=MISSING)
core_credentials = pytest.importorskip("huaweicloudsdkcore.auth.credentials", reason=MISSING)
core_exceptions = pytest.importorskip("huaweicloudsdkcore.exceptions.exceptions", reason=MISSING)
Refused = core_exceptions.ClientRequestException


def _credentials(emulator: Emulator) -> object:
    return core_credentials.BasicCredentials(emulator.ak, emulator.sk, emulator.project_id)


def _kms(emulator: Emulator) -> object:
    return (kms.KmsClient.new_builder().with_credentials(_credentials(emulator))
            .with_endpoints([emulator.endpoint]).build())


def _csms(emulator: Emulator) -> object:
    return (csms.CsmsClient.new_builder().with_credentials(_credentials(emulator))
            .with_endpoints([emulator.endpoint]).build())


def _operate(key_id: str) -> object:
    return kms.OperateKeyRequestBody(key_id=key_id)


def _datakey(client: object, key_id: str, aad: str) -> object:
    return client.create_datakey(kms.CreateDatakeyRequest(  # type: ignore[attr-defined]
        body=kms.CreateDatakeyRequestBody(key_id=key_id, datakey_length="256",
                                          additional_authenticated_data=aad)))


def _decrypt(client: object, key_id: str, cipher_text: str, aad: str) -> object:
    return client.decrypt_datakey(kms.DecryptDatakeyRequest(  # type: ignore[attr-defined]
        body=kms.DecryptDatakeyRequestBody(key_id=key_id, cipher_text=cipher_text,
                                           datakey_cipher_length="32",
                                           additional_authenticated_data=aad)))


def test_kms_keys_and_aliases(emulator: Emulator) -> None:
    client = _kms(emulator)
    made = client.create_key(kms.CreateKeyRequest(body=kms.CreateKeyRequestBody(
        key_alias="sdk-key", key_description="made by the SDK")))
    key_id = made.key_info.key_id
    assert made.key_info.domain_id == emulator.domain_id
    detail = client.list_key_detail(kms.ListKeyDetailRequest(body=_operate(key_id)))
    assert (detail.key_info.key_alias, detail.key_info.key_state) == ("sdk-key", "2")
    assert detail.key_info.key_description == "made by the SDK"
    off = client.disable_key(kms.DisableKeyRequest(body=_operate(key_id)))
    assert off.key_info.key_state == "3"
    on = client.enable_key(kms.EnableKeyRequest(body=_operate(key_id)))
    assert on.key_info.key_state == "2"
    alias = client.create_alias(kms.CreateAliasRequest(body=kms.CreateAliasRequestBody(
        key_id=key_id, alias="alias/sdk")))
    assert alias.alias == "alias/sdk" and alias.alias_urn.endswith(":alias:alias/sdk")
    listed = client.list_aliases(kms.ListAliasesRequest(key_id=key_id, limit="10"))
    (page,) = listed.body
    assert [(a.alias, a.key_id) for a in page.aliases] == [("alias/sdk", key_id)]
    assert page.page_info.current_count == 1
    ours = KmsClient(settings(emulator))
    try:
        assert ours.resolve_key("alias/sdk") == key_id
    finally:
        ours.close()
    scheduled = client.delete_key(kms.DeleteKeyRequest(body=kms.ScheduleKeyDeletionRequestBody(
        key_id=key_id, pending_days="7")))
    assert scheduled.key_state == "4"
    with pytest.raises(Refused) as refused:
        _datakey(client, key_id, "a")
    assert (refused.value.status_code, refused.value.error_code) == (400, "KMS.0210")
    cancelled = client.cancel_key_deletion(kms.CancelKeyDeletionRequest(body=_operate(key_id)))
    assert cancelled.key_state == "3"
    with pytest.raises(Refused) as bad:
        client.delete_key(kms.DeleteKeyRequest(body=kms.ScheduleKeyDeletionRequestBody(
            key_id=key_id, pending_days="3")))
    assert bad.value.error_code == "KMS.0202"
    with pytest.raises(Refused) as unknown:
        client.list_key_detail(kms.ListKeyDetailRequest(
            body=_operate("0d0466b0-e727-4d9c-b35d-f84bb474a37f")))
    assert unknown.value.status_code == 404


def test_kms_data_keys_and_their_refusals(emulator: Emulator) -> None:
    client = _kms(emulator)

    def key(name: str) -> str:
        return str(client.create_key(kms.CreateKeyRequest(body=kms.CreateKeyRequestBody(
            key_alias=name))).key_info.key_id)

    key_id, other = key("one"), key("two")
    made = _datakey(client, key_id, "state:prod")
    assert made.key_id == key_id and len(made.plain_text) == 64
    opened = _decrypt(client, key_id, made.cipher_text, "state:prod")
    assert opened.data_key == made.plain_text and opened.datakey_length == "32"
    ours = KmsClient(settings(emulator))  # a data key the SDK made opens with ours
    try:
        assert ours.decrypt_datakey(key_id, made.cipher_text, aad="state:prod") == \
            Secret(made.plain_text)
        mine = ours.create_datakey(key_id, aad="ctx")
    finally:
        ours.close()
    assert _decrypt(client, key_id, mine.cipher_text, "ctx").data_key == mine.plaintext.reveal()
    for key_used, aad in ((key_id, "state:dev"), (other, "state:prod")):
        with pytest.raises(Refused) as refused:
            _decrypt(client, key_used, made.cipher_text, aad)
        assert (refused.value.status_code, refused.value.error_code) == (400, "KMS.0303")
    client.disable_key(kms.DisableKeyRequest(body=_operate(key_id)))
    with pytest.raises(Refused) as disabled:
        _datakey(client, key_id, "a")
    assert disabled.value.error_code == "KMS.0209"
    with pytest.raises(Refused) as malformed:
        _datakey(client, "not-a-uuid", "a")
    assert malformed.value.error_code == "KMS.0205"


def _secret(client: object, name: str, value: str, **more: object) -> object:
    return client.create_secret(csms.CreateSecretRequest(  # type: ignore[attr-defined]
        body=csms.CreateSecretRequestBody(name=name, secret_string=value, **more)))


def test_csms_secrets_versions_and_stages(emulator: Emulator) -> None:
    client = _csms(emulator)
    made = _secret(client, "sdk-secret", "first", description="by the SDK")
    assert made.secret.name == "sdk-secret" and made.secret.state == "ENABLED"
    shown = client.show_secret(csms.ShowSecretRequest(secret_name="sdk-secret"))
    assert shown.secret.kms_key_id == made.secret.kms_key_id
    added = client.create_secret_version(csms.CreateSecretVersionRequest(
        secret_name="sdk-secret", body=csms.CreateSecretVersionRequestBody(
            secret_string="second")))
    assert added.version_metadata.id == "v2"
    assert added.version_metadata.version_stages == ["SYSCURRENT"]
    stage = client.show_secret_stage(csms.ShowSecretStageRequest(
        secret_name="sdk-secret", stage_name="SYSCURRENT"))
    assert stage.stage.version_id == "v2"
    version = client.show_secret_version(csms.ShowSecretVersionRequest(
        secret_name="sdk-secret", version_id=stage.stage.version_id))
    assert version.version.secret_string == "second"
    previous = client.show_secret_stage(csms.ShowSecretStageRequest(
        secret_name="sdk-secret", stage_name="SYSPREVIOUS"))
    assert previous.stage.version_id == "v1"
    listed = client.list_secret_versions(csms.ListSecretVersionsRequest(
        secret_name="sdk-secret", limit=1))
    assert [v.id for v in listed.version_metadatas] == ["v1"]
    rest = client.list_secret_versions(csms.ListSecretVersionsRequest(
        secret_name="sdk-secret", marker=listed.page_info.next_marker))
    assert [v.id for v in rest.version_metadatas] == ["v2"]
    back = client.update_secret_stage(csms.UpdateSecretStageRequest(
        secret_name="sdk-secret", stage_name="SYSCURRENT",
        body=csms.UpdateSecretStageRequestBody(version_id="v1")))
    assert back.stage.version_id == "v1"
    ours = CsmsClient(settings(emulator))
    try:
        current = ours.current("sdk-secret")
        assert current is not None and current.value == Secret("first")
        ours.put_version("sdk-secret", Secret("third"))
    finally:
        ours.close()
    latest = client.show_secret_version(csms.ShowSecretVersionRequest(
        secret_name="sdk-secret", version_id="latest"))
    assert latest.version.secret_string == "third"
    assert latest.version.version_metadata.version_stages == ["SYSCURRENT"]
    names = client.list_secrets(csms.ListSecretsRequest())
    assert [s.name for s in names.secrets] == ["sdk-secret"]


def test_csms_rules_deletion_and_restore(emulator: Emulator) -> None:
    client = _csms(emulator)
    for name in ("has space", "a" * 65, "dot.ted"):
        with pytest.raises(Refused) as bad:
            _secret(client, name, "x")
        assert (bad.value.status_code, bad.value.error_code) == (400, "CSMS.0002")
    _secret(client, "big", "x" * 32 * 1024)
    with pytest.raises(Refused) as too_big:
        _secret(client, "bigger", "x" * (32 * 1024 + 1))
    assert "32 KiB" in too_big.value.error_msg
    with pytest.raises(Refused) as twice:
        _secret(client, "big", "again")
    assert twice.value.status_code == 409
    pending = client.delete_secret_for_schedule(csms.DeleteSecretForScheduleRequest(
        secret_name="big", body=csms.DeleteSecretForScheduleRequestBody(
            recovery_window_in_days=7)))
    assert pending.secret.state == "PENDING_DELETE" and pending.secret.scheduled_delete_time
    with pytest.raises(Refused) as unreadable:
        client.show_secret_version(csms.ShowSecretVersionRequest(secret_name="big",
                                                                 version_id="v1"))
    assert unreadable.value.error_code == "CSMS.0103"
    restored = client.restore_secret(csms.RestoreSecretRequest(secret_name="big"))
    assert restored.secret.state == "ENABLED"
    client.delete_secret(csms.DeleteSecretRequest(secret_name="big"))
    with pytest.raises(Refused) as gone:
        client.show_secret(csms.ShowSecretRequest(secret_name="big"))
    assert (gone.value.status_code, gone.value.error_code) == (404, "CSMS.0005")


def test_csms_update_secret_moves_new_versions_to_another_kms_key(emulator: Emulator) -> None:
    keys = _kms(emulator)
    other = str(keys.create_key(kms.CreateKeyRequest(  # type: ignore[attr-defined]
        body=kms.CreateKeyRequestBody(key_alias="csms-other"))).key_info.key_id)
    client = _csms(emulator)
    made = _secret(client, "moving", "first")
    assert made.secret.kms_key_id != other
    updated = client.update_secret(csms.UpdateSecretRequest(  # type: ignore[attr-defined]
        secret_name="moving", body=csms.UpdateSecretRequestBody(kms_key_id=other)))
    assert updated.secret.kms_key_id == other
    added = client.create_secret_version(csms.CreateSecretVersionRequest(
        secret_name="moving", body=csms.CreateSecretVersionRequestBody(secret_string="second")))
    assert added.version_metadata.kms_key_id == other
    first = client.show_secret_version(csms.ShowSecretVersionRequest(
        secret_name="moving", version_id="v1"))
    assert first.version.secret_string == "first"  # still under the key that sealed it
    assert first.version.version_metadata.kms_key_id == made.secret.kms_key_id
    with pytest.raises(Refused) as unknown:
        client.update_secret(csms.UpdateSecretRequest(  # type: ignore[attr-defined]
            secret_name="moving", body=csms.UpdateSecretRequestBody(
                kms_key_id="00000000-0000-4000-8000-000000000000")))
    assert (unknown.value.status_code, unknown.value.error_code) == (400, "CSMS.0002")
    ours = CsmsClient(settings(emulator))
    try:
        back = ours.set_kms_key("moving", None)  # csms/default again
        assert back.kms_key_id == made.secret.kms_key_id
    finally:
        ours.close()
