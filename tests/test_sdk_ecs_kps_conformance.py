"""The official SDK's ECS and KPS clients against the emulator, unchanged: the server list and
every KPS binding task endpoint the emulator serves.

ECS v2: ``list_servers_details`` (``limit``, ``offset`` as a page number, ``count``,
``key_name``, the image type in ``metadata``). KPS v3: ``associate_keypair``,
``batch_associate_keypair``, ``disassociate_keypair``, ``list_keypair_task``,
``list_running_task``, ``list_failed_task``, ``delete_failed_task``,
``delete_all_failed_task``, and the refusals as the SDK's own exceptions. Tasks the SDK
submits are followed by reconciler's own client, so both see one cloud.

Needs huaweicloudsdkcore, huaweicloudsdkecs and huaweicloudsdkkps 3.1.219 (the test extra);
skipped, saying so, where they are not installed.
"""

from __future__ import annotations

import time

import pytest

from reconciler.api.ecs_servers import EcsServersClient
from reconciler.api.kps_tasks import KpsTasksClient, Polling
from reconciler.emulator.server import Emulator
from tests.test_ecs_binding import binding, import_key, server, timeline
from tests.test_emulator_kms import settings

MISSING = ("the SDK conformance tests need huaweicloudsdkcore, huaweicloudsdkecs and "
           "huaweicloudsdkkps 3.1.219 (the test extra installs them)")
kps = pytest.importorskip("huaweicloudsdkkps.v3", reason=MISSING)
ecs = pytest.importorskip("huaweicloudsdkecs.v2", reason=MISSING)
core_credentials = pytest.importorskip("huaweicloudsdkcore.auth.credentials", reason=MISSING)
core_exceptions = pytest.importorskip("huaweicloudsdkcore.exceptions.exceptions", reason=MISSING)
Refused = core_exceptions.ClientRequestException


def _credentials(emulator: Emulator) -> object:
    return core_credentials.BasicCredentials(emulator.ak, emulator.sk, emulator.project_id)


def _kps(emulator: Emulator) -> object:
    return (kps.KpsClient.new_builder().with_credentials(_credentials(emulator))
            .with_endpoints([emulator.endpoint]).build())


def _ecs(emulator: Emulator) -> object:
    return (ecs.EcsClient.new_builder().with_credentials(_credentials(emulator))
            .with_endpoints([emulator.endpoint]).build())


def _associate(client: object, keypair: str, server_id: str, private_key: str | None = None,
               **fields: object) -> object:
    auth = None if private_key is None else kps.Auth(type="keypair", key=private_key)
    body = kps.AssociateKeypairRequestBody(
        keypair_name=keypair, server=kps.EcsServerInfo(id=server_id, auth=auth, **fields))
    return client.associate_keypair(  # type: ignore[attr-defined]
        kps.AssociateKeypairRequest(body=body))


def _status(client: object, task_id: str) -> str:
    shown = client.list_keypair_task(  # type: ignore[attr-defined]
        kps.ListKeypairTaskRequest(task_id=task_id))
    assert shown.task_id == task_id
    return str(shown.task_status)


def _until_done(client: object, task_id: str) -> str:
    for _ in range(500):
        status = _status(client, task_id)
        if status.startswith(("SUCCESS_", "FAILED_")):
            return status
        time.sleep(0.01)
    raise AssertionError(f"task {task_id} did not finish")


def test_the_server_list_pages_by_page_number(emulator: Emulator) -> None:
    import_key(emulator, "deploy")
    ids = [server(emulator, f"web-{i}", key_name="deploy" if i % 2 else None)
           for i in range(5)]
    server(emulator, "image", image="private", status="stopped")
    client = _ecs(emulator)
    first = client.list_servers_details(  # type: ignore[attr-defined]
        ecs.ListServersDetailsRequest(limit=2, offset=1))
    zero = client.list_servers_details(  # type: ignore[attr-defined]
        ecs.ListServersDetailsRequest(limit=2, offset=0))
    assert first.count == 6 and len(first.servers) == 2
    assert [s.id for s in zero.servers] == [s.id for s in first.servers]
    pages = [client.list_servers_details(  # type: ignore[attr-defined]
        ecs.ListServersDetailsRequest(limit=2, offset=page)) for page in (1, 2, 3, 4)]
    listed = [s for page in pages for s in page.servers]
    assert len(listed) == 6 and len({s.id for s in listed}) == 6 and not pages[3].servers
    by_name = {s.name: s for s in listed}
    assert by_name["image"].status == "SHUTOFF" and by_name["web-0"].status == "ACTIVE"
    assert by_name["image"].metadata["metering.imagetype"] == "private"
    assert by_name["web-0"].metadata["metering.imagetype"] == "gold"
    assert by_name["web-1"].key_name == "deploy" and by_name["web-0"].key_name is None
    assert by_name["web-0"].tenant_id == emulator.project_id
    assert by_name["web-0"].image.id == by_name["web-0"].metadata["metering.image_id"]
    assert by_name["web-0"].os_ext_st_svm_state == "active"
    everything = client.list_servers_details(  # type: ignore[attr-defined]
        ecs.ListServersDetailsRequest())
    assert everything.count == 6 and len(everything.servers) == 6  # 25 by default
    named = client.list_servers_details(  # type: ignore[attr-defined]
        ecs.ListServersDetailsRequest(name="web-", status="ACTIVE"))
    assert named.count == 5
    chosen = client.list_servers_details(  # type: ignore[attr-defined]
        ecs.ListServersDetailsRequest(server_id=f"{ids[0]},{ids[1]}"))
    assert {s.id for s in chosen.servers} == {ids[0], ids[1]}
    with pytest.raises(Refused) as bad:
        client.list_servers_details(  # type: ignore[attr-defined]
            ecs.ListServersDetailsRequest(limit=1001))
    assert (bad.value.status_code, bad.value.error_code) == (400, "Ecs.0005")
    ours = EcsServersClient(settings(emulator))
    try:
        assert {s.id for s in ours.list_servers()} == {s.id for s in listed}
    finally:
        ours.close()


def test_associate_replace_and_the_task_endpoints(emulator: Emulator) -> None:
    old = import_key(emulator, "old")
    new = import_key(emulator, "new")
    sid = server(emulator, "web", key_name="old")
    client = _kps(emulator)
    refused = _associate(client, "new", sid, new.reveal())
    assert (refused.status, refused.error_code, refused.task_id) == ("FAILED", "KPS.0106", None)
    binding(emulator, task_seconds=0.4)
    made = _associate(client, "new", sid, old.reveal(), disable_password=True, port=22)
    assert made.status == "SUCCESS" and made.server_id == sid and made.task_id
    assert _status(client, made.task_id) in ("READY_REPLACE", "RUNNING_REPLACE")
    running = client.list_running_task(kps.ListRunningTaskRequest(limit=10, offset=0))
    assert running.total == 1
    (task,) = running.tasks
    assert (task.task_id, task.server_id, task.server_name, task.keypair_name) == (
        made.task_id, sid, "web", "new")
    assert task.operate_type in ("READY_REPLACE", "RUNNING_REPLACE") and task.task_time.isdigit()
    assert _until_done(client, made.task_id) == "SUCCESS_REPLACE"
    assert client.list_running_task(kps.ListRunningTaskRequest()).total == 0
    assert [e["key_name"] for e in timeline(emulator, sid)] == ["old", "new"]
    with pytest.raises(Refused) as unknown:
        _status(client, "0b5e3c36-0000-4000-8000-000000000000")
    assert (unknown.value.status_code, unknown.value.error_code) == (404, "KPS.0100")
    with pytest.raises(Refused) as no_pair:
        _associate(client, "absent", sid)
    assert (no_pair.value.status_code, no_pair.value.error_code) == (404, "KPS.0002")


def test_batch_associate_and_its_limits(emulator: Emulator) -> None:
    import_key(emulator, "fleet")
    import_key(emulator, "other")
    ids = [server(emulator, f"n{i}") for i in range(3)]
    stopped = server(emulator, "stopped", status="stopped")
    client = _kps(emulator)

    def batch(entries: list[tuple[str, str]]) -> object:
        body = kps.BatchAssociateKeypairRequestBody(batch_keypairs=[
            kps.AssociateKeypairRequestBody(keypair_name=k, server=kps.EcsServerInfo(id=s))
            for k, s in entries])
        return client.batch_associate_keypair(  # type: ignore[attr-defined]
            kps.BatchAssociateKeypairRequest(body=body))

    answer = batch([("fleet", s) for s in [*ids, stopped]])
    statuses = {t.server_id: (t.status, t.error_code) for t in answer.tasks}
    assert statuses[stopped] == ("FAILED", "KPS.0104")
    assert all(statuses[s] == ("SUCCESS", None) for s in ids)
    for t in answer.tasks:
        if t.task_id:
            assert _until_done(client, t.task_id) == "SUCCESS_REPLACE"
    for entries in ([("fleet", f"id-{i}") for i in range(11)],
                    [("fleet", ids[0]), ("other", ids[1])],
                    [("fleet", stopped), ("fleet", stopped)]):
        with pytest.raises(Refused) as too_many:
            batch(entries)
        assert (too_many.value.status_code, too_many.value.error_code) == (400, "KPS.0109")


def test_disassociate_and_failed_tasks(emulator: Emulator) -> None:
    private = import_key(emulator, "k")
    closed = server(emulator, "closed", key_name="k", ssh_port_open=False)
    stopped = server(emulator, "stopped", key_name="k", status="stopped")
    client = _kps(emulator)

    def unbind(server_id: str, key: str | None = None) -> object:
        auth = None if key is None else kps.Auth(type="keypair", key=key)
        body = kps.DisassociateKeypairRequestBody(
            server=kps.DisassociateEcsServerInfo(id=server_id, auth=auth))
        return client.disassociate_keypair(  # type: ignore[attr-defined]
            kps.DisassociateKeypairRequest(body=body))

    offline = unbind(stopped)
    assert offline.status == "SUCCESS"
    assert _until_done(client, offline.task_id) == "SUCCESS_UNBIND"
    failing = [unbind(closed, private.reveal())]
    assert _until_done(client, failing[0].task_id) == "FAILED_UNBIND"
    binding(emulator, failure_rate=1.0)
    import_key(emulator, "again")
    failing.append(_associate(client, "again", stopped))
    assert _until_done(client, failing[1].task_id) == "FAILED_RESET"
    listed = client.list_failed_task(kps.ListFailedTaskRequest(limit=1, offset=1))
    assert listed.total == 2 and [t.task_id for t in listed.tasks] == [failing[1].task_id]
    (item,) = listed.tasks
    assert (item.operate_type, item.task_error_code, item.server_name) == (
        "FAILED_RESET", "KPS.0203", "stopped")
    client.delete_failed_task(kps.DeleteFailedTaskRequest(task_id=failing[0].task_id))
    left = client.list_failed_task(kps.ListFailedTaskRequest())
    assert [t.task_id for t in left.tasks] == [failing[1].task_id]
    with pytest.raises(Refused) as gone:
        client.delete_failed_task(kps.DeleteFailedTaskRequest(task_id=failing[0].task_id))
    assert gone.value.status_code == 404
    client.delete_all_failed_task(kps.DeleteAllFailedTaskRequest())
    assert client.list_failed_task(kps.ListFailedTaskRequest()).total == 0
    ours = KpsTasksClient(settings(emulator), polling=Polling(first=0.01, cap=0.05))
    try:
        assert ours.failed_tasks() == ()
        assert ours.task(offline.task_id) is not None  # tasks are still known by id
    finally:
        ours.close()
