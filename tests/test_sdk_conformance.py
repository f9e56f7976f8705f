"""The official SDK's KPS and ECS clients against the emulator, unchanged: every key pair
endpoint the emulator serves, driven by the client its users already have.

KPS v3: create (cloud-generated, imported, with custody), list (limit, marker), detail,
update description, export, import and clear of the private key (the list's
``is_key_protection`` following them, reconciler's own import and clear seen by the SDK),
batch import (successes, refusals by name, the limit of 10, custody flags in the list),
delete, and a 404 as the SDK's own exception. ECS (Nova v2.1): create (generated and
imported), list (plain and the 2.35 microversion's limit/marker), show, delete. Each answer
is also checked against what reconciler's own client reads, so both clients see one cloud.

Needs huaweicloudsdkcore, huaweicloudsdkkps and huaweicloudsdkecs 3.1.219 (the test extra);
skipped, saying so, where they are not installed.
"""

from __future__ import annotations

import pytest

from reconciler.api.flavours import make_api
from reconciler.api.protocol import ApiSettings, Credentials
from reconciler.emulator.server import Emulator
from reconciler.keys import generate_keypair, public_key_of
from reconciler.model import Api, Encryption, KeyProtection, Secret

MISSING = ("the SDK conformance tests need huaweicloudsdkcore, huaweicloudsdkkps and "
           "huaweicloudsdkecs 3.1.219 (the test extra installs them)")
kps = pytest.importorskip("huaweicloudsdkkps.v3", reason=MISSING)
ecs = pytest.importorskip("huaweicloudsdkecs.v2", reason=MISSING)
core_credentials = pytest.importorskip("huaweicloudsdkcore.auth.credentials", reason=MISSING)
core_exceptions = pytest.importorskip("huaweicloudsdkcore.exceptions.exceptions", reason=MISSING)
# The SDK marks its Nova methods deprecated (in favour of KPS); they are what v2.1 users call.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Method 'nova_.*' of EcsClient is deprecated:DeprecationWarning")


def _credentials(emulator: Emulator) -> object:
    return core_credentials.BasicCredentials(emulator.ak, emulator.sk, emulator.project_id)


def _kps(emulator: Emulator) -> object:
    return (kps.KpsClient.new_builder().with_credentials(_credentials(emulator))
            .with_endpoints([emulator.endpoint]).build())


def _ecs(emulator: Emulator) -> object:
    return (ecs.EcsClient.new_builder().with_credentials(_credentials(emulator))
            .with_endpoints([emulator.endpoint]).build())


def _ours(emulator: Emulator, api: str) -> object:
    return make_api(ApiSettings(api=Api(api), endpoint=emulator.endpoint,
                                project_id=emulator.project_id,
                                credentials=Credentials(ak=emulator.ak, sk=Secret(emulator.sk))))


def _create(client: object, **action: object) -> object:
    body = kps.CreateKeypairRequestBody(keypair=kps.CreateKeypairAction(**action))
    return client.create_keypair(kps.CreateKeypairRequest(body=body))  # type: ignore[attr-defined]


def test_kps_create_list_detail_update_delete(emulator: Emulator) -> None:
    client = _kps(emulator)
    made = _create(client, name="sdk-generated")
    assert made.keypair.private_key.startswith("-----BEGIN")
    assert public_key_of(Secret(made.keypair.private_key)).split()[:2] == \
        made.keypair.public_key.split()[:2]
    pair = generate_keypair("ed25519")
    imported = _create(client, name="sdk-imported", public_key=pair.public_key, scope="user")
    assert imported.keypair.private_key in (None, "")
    assert imported.keypair.fingerprint
    for i in range(3):
        _create(client, name=f"sdk-page-{i}", public_key=generate_keypair("ed25519").public_key)
    seen, marker = [], None
    for _ in range(10):  # bounded: 5 key pairs, 2 a page
        page = client.list_keypairs(kps.ListKeypairsRequest(limit="2", marker=marker))
        seen += [k.keypair.name for k in page.keypairs]
        marker = page.page_info.next_marker if page.page_info else None
        if not marker:
            break
    assert sorted(seen) == sorted(["sdk-generated", "sdk-imported",
                                   "sdk-page-0", "sdk-page-1", "sdk-page-2"])
    detail = client.list_keypair_detail(kps.ListKeypairDetailRequest(keypair_name="sdk-imported"))
    assert detail.keypair.name == "sdk-imported" and detail.keypair.scope == "user"
    client.update_keypair_description(kps.UpdateKeypairDescriptionRequest(
        keypair_name="sdk-imported", body=kps.UpdateKeypairDescriptionRequestBody(
            keypair=kps.UpdateKeypairDescriptionReq(description="set by the SDK"))))
    again = client.list_keypair_detail(kps.ListKeypairDetailRequest(keypair_name="sdk-imported"))
    assert again.keypair.description == "set by the SDK"
    ours = _ours(emulator, "kps").list_keypairs().keypairs  # type: ignore[attr-defined]
    assert set(ours) == set(seen)
    assert ours["sdk-imported"].fingerprint == imported.keypair.fingerprint
    client.delete_keypair(kps.DeleteKeypairRequest(keypair_name="sdk-imported"))
    with pytest.raises(core_exceptions.ClientRequestException) as gone:
        client.list_keypair_detail(kps.ListKeypairDetailRequest(keypair_name="sdk-imported"))
    assert gone.value.status_code == 404


def test_kps_custody_export_import_and_clear(emulator: Emulator) -> None:
    client = _kps(emulator)
    made = _create(client, name="sdk-custody", key_protection=kps.KeyProtection(
        encryption=kps.Encryption(type="default")))
    private = made.keypair.private_key
    exported = client.export_private_key(kps.ExportPrivateKeyRequest(
        body=kps.ExportPrivateKeyRequestBody(
            keypair=kps.ExportPrivateKeyKeypairBean(name="sdk-custody"))))
    assert exported.keypair.private_key == private
    client.clear_private_key(kps.ClearPrivateKeyRequest(keypair_name="sdk-custody"))
    with pytest.raises(core_exceptions.ClientRequestException):
        client.export_private_key(kps.ExportPrivateKeyRequest(
            body=kps.ExportPrivateKeyRequestBody(
                keypair=kps.ExportPrivateKeyKeypairBean(name="sdk-custody"))))
    client.import_private_key(kps.ImportPrivateKeyRequest(body=kps.ImportPrivateKeyRequestBody(
        keypair=kps.ImportPrivateKeyKeypairBean(name="sdk-custody",
                                                key_protection=kps.ImportPrivateKeyProtection(
                                                    private_key=private,
                                                    encryption=kps.Encryption(type="default"))))))
    back = client.export_private_key(kps.ExportPrivateKeyRequest(
        body=kps.ExportPrivateKeyRequestBody(
            keypair=kps.ExportPrivateKeyKeypairBean(name="sdk-custody"))))
    assert back.keypair.private_key == private


def _custody_flags(client: object) -> dict[str, bool]:
    listed = client.list_keypairs(kps.ListKeypairsRequest(limit="10"))  # type: ignore[attr-defined]
    return {k.keypair.name: k.keypair.is_key_protection for k in listed.keypairs}


def test_kps_custody_in_the_list_and_reconcilers_calls_seen_by_the_sdk(
        emulator: Emulator) -> None:
    """The list's is_key_protection, as the SDK's model reads it, follows custody given and
    cleared by reconciler's own client (v2.1 too, through the KPS endpoints); a private key
    reconciler imported is the one the SDK exports."""
    client = _kps(emulator)
    pair = generate_keypair("ed25519")
    _create(client, name="sdk-plain", public_key=pair.public_key)
    assert _custody_flags(client) == {"sdk-plain": False}
    protection = KeyProtection(encryption=Encryption(type="kms", kms_key_name="ops-kms"))
    for api in ("kps", "v2.1"):
        ours = _ours(emulator, api)
        ours.import_private_key("sdk-plain", key_protection=protection,  # type: ignore[attr-defined]
                                private_key=pair.private_key)
        assert _custody_flags(client) == {"sdk-plain": True}
        assert ours.list_keypairs().keypairs["sdk-plain"].key_protection is (  # type: ignore[attr-defined]
            True if api == "kps" else None)  # Nova's list says nothing of custody
        exported = client.export_private_key(kps.ExportPrivateKeyRequest(
            body=kps.ExportPrivateKeyRequestBody(
                keypair=kps.ExportPrivateKeyKeypairBean(name="sdk-plain"))))
        assert exported.keypair.private_key == pair.private_key.reveal()
        assert ours.export_private_key("sdk-plain") == pair.private_key  # type: ignore[attr-defined]
        ours.clear_private_key("sdk-plain")  # type: ignore[attr-defined]
        assert _custody_flags(client) == {"sdk-plain": False}
    client.import_private_key(kps.ImportPrivateKeyRequest(body=kps.ImportPrivateKeyRequestBody(
        keypair=kps.ImportPrivateKeyKeypairBean(name="sdk-plain",
                                                key_protection=kps.ImportPrivateKeyProtection(
                                                    private_key=pair.private_key.reveal(),
                                                    encryption=kps.Encryption(type="default"))))))
    assert _ours(emulator, "kps").list_keypairs().keypairs[  # type: ignore[attr-defined]
        "sdk-plain"].key_protection is True


def test_kps_batch_import(emulator: Emulator) -> None:
    client = _kps(emulator)
    _create(client, name="sdk-taken", public_key=generate_keypair("ed25519").public_key)
    pairs = [generate_keypair("ed25519") for _ in range(3)]
    kept = generate_keypair("ed25519")

    def item(**action: object) -> object:
        return kps.CreateKeypairRequestBody(keypair=kps.CreateKeypairAction(**action))

    answer = client.batch_import_keypair(kps.BatchImportKeypairRequest(body=[
        item(name="sdk-batch-0", public_key=pairs[0].public_key, type="ssh"),
        item(name="sdk-batch-1", public_key=pairs[1].public_key, scope="domain"),
        item(name="sdk-taken", public_key=pairs[2].public_key),
        item(name="sdk-bad", public_key="ssh-ed25519 AAAAnotakey"),
        item(name="sdk-kept", public_key=kept.public_key, key_protection=kps.KeyProtection(
            private_key=kept.private_key.reveal(), encryption=kps.Encryption(type="default"))),
    ]))
    made = {k.keypair.name: k.keypair for k in answer.succeeded_keypairs}
    assert sorted(made) == ["sdk-batch-0", "sdk-batch-1", "sdk-kept"]
    assert made["sdk-batch-0"].fingerprint and made["sdk-batch-0"].private_key in (None, "")
    refused = {f.keypair_name: f.failed_reason for f in answer.failed_keypairs}
    assert sorted(refused) == ["sdk-bad", "sdk-taken"]
    assert "already exists" in refused["sdk-taken"] and "invalid key" in refused["sdk-bad"]
    page = client.list_keypairs(kps.ListKeypairsRequest(limit="10"))
    flags = {k.keypair.name: k.keypair.is_key_protection for k in page.keypairs}
    assert flags == {"sdk-taken": False, "sdk-batch-0": False, "sdk-batch-1": False,
                     "sdk-kept": True}
    exported = client.export_private_key(kps.ExportPrivateKeyRequest(
        body=kps.ExportPrivateKeyRequestBody(
            keypair=kps.ExportPrivateKeyKeypairBean(name="sdk-kept"))))
    assert exported.keypair.private_key == kept.private_key.reveal()
    ours = _ours(emulator, "kps").list_keypairs().keypairs  # type: ignore[attr-defined]
    assert ours["sdk-batch-1"].scope == "domain" and ours["sdk-kept"].key_protection is True
    eleven = [item(name=f"sdk-many-{i}", public_key=pairs[0].public_key) for i in range(11)]
    with pytest.raises(core_exceptions.ClientRequestException) as refused_all:
        client.batch_import_keypair(kps.BatchImportKeypairRequest(body=eleven))
    assert refused_all.value.status_code == 400 and "1 to 10" in refused_all.value.error_msg
    assert "sdk-many-0" not in _ours(emulator, "kps").list_keypairs().keypairs  # type: ignore[attr-defined]


def test_ecs_nova_create_list_show_delete(emulator: Emulator) -> None:
    client = _ecs(emulator)
    made = client.nova_create_keypair(ecs.NovaCreateKeypairRequest(
        body=ecs.NovaCreateKeypairRequestBody(keypair=ecs.NovaCreateKeypairOption(
            name="nova-generated"))))
    assert made.keypair.private_key.startswith("-----BEGIN")
    pair = generate_keypair("ed25519")
    client.nova_create_keypair(ecs.NovaCreateKeypairRequest(
        body=ecs.NovaCreateKeypairRequestBody(keypair=ecs.NovaCreateKeypairOption(
            name="nova-imported", public_key=pair.public_key))))
    listed = client.nova_list_keypairs(ecs.NovaListKeypairsRequest())
    assert sorted(k.keypair.name for k in listed.keypairs) == ["nova-generated", "nova-imported"]
    # the microversion header names its service, as Nova requires ("compute 2.35")
    first = client.nova_list_keypairs(ecs.NovaListKeypairsRequest(
        limit=1, open_stack_api_version="compute 2.35"))
    (one,) = first.keypairs
    rest = client.nova_list_keypairs(ecs.NovaListKeypairsRequest(
        limit=5, marker=one.keypair.name, open_stack_api_version="compute 2.35"))
    assert sorted([one.keypair.name] + [k.keypair.name for k in rest.keypairs]) == [
        "nova-generated", "nova-imported"]
    shown = client.nova_show_keypair(ecs.NovaShowKeypairRequest(keypair_name="nova-imported"))
    assert shown.keypair.public_key.split()[:2] == pair.public_key.split()[:2]
    ours = _ours(emulator, "v2.1").list_keypairs().keypairs  # type: ignore[attr-defined]
    assert set(ours) == {"nova-generated", "nova-imported"}
    client.nova_delete_keypair(ecs.NovaDeleteKeypairRequest(keypair_name="nova-generated"))
    with pytest.raises(core_exceptions.ClientRequestException) as gone:
        client.nova_show_keypair(ecs.NovaShowKeypairRequest(keypair_name="nova-generated"))
    assert gone.value.status_code == 404


def test_settle_waits_for_the_sdk_s_batch_import_still_under_way(emulator: Emulator) -> None:
    """Every request the emulator handles, the SDK's too, is counted by ``settle``: a batch
    import still sleeping out its latency is waited for, and has taken effect after it."""
    import threading
    import time

    client = _kps(emulator)
    pairs = [generate_keypair("ed25519") for _ in range(2)]
    body = [kps.CreateKeypairRequestBody(keypair=kps.CreateKeypairAction(
        name=f"sdk-late-{i}", public_key=p.public_key)) for i, p in enumerate(pairs)]
    emulator.set_faults(latency_ms=300)
    answers: list[object] = []
    sender = threading.Thread(target=lambda: answers.append(
        client.batch_import_keypair(kps.BatchImportKeypairRequest(body=body))))
    sender.start()
    deadline = time.monotonic() + 10
    while emulator.counters().get("total", 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    try:
        assert emulator.keypair_count() == 0  # in, and sleeping out its latency
        assert emulator.settle()
        assert emulator.keypair_count() == 2
    finally:
        sender.join(10)
        emulator.set_faults(latency_ms=0)
    assert sorted(k.keypair.name for k in answers[0].succeeded_keypairs) == [  # type: ignore[attr-defined]
        "sdk-late-0", "sdk-late-1"]
