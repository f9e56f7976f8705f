"""ECS servers and KPS binding tasks: reconciler's clients against the emulator over signed HTTP.

Servers are made through the admin path (as a test or a demo would); key pairs are real
ed25519 pairs imported through KPS, and a replace is authorised by the real private key of
the key pair the server holds, which the emulator checks with ``cryptography``. Tasks run
asynchronously (``/_emulator/binding``: ``task_seconds``, ``failure_rate``); every server's
accepted-keys timeline is read back to show it never went without a managed key.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from reconciler.api.ecs_servers import EcsServersClient, by_key_name
from reconciler.api.flavours import make_api
from reconciler.api.kps_tasks import KpsTasksClient, Polling
from reconciler.emulator.bindtasks import READY_SHARE, TaskBook
from reconciler.emulator.fleet import Fleet
from reconciler.emulator.server import Emulator
from reconciler.errors import ApiError, OutcomeUnknownError, UsageError
from reconciler.model import Secret
from tests.mutating_proxy import Rule, mutating_proxy
from tests.test_emulator_kms import admin, settings

FAST = Polling(first=0.02, factor=2.0, cap=0.1, timeout=10.0)


def key_pair() -> tuple[Secret, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return Secret(private), public


def import_key(emulator: Emulator, name: str) -> Secret:
    private, public = key_pair()
    api = make_api(settings(emulator))
    try:
        api.import_keypair(name=name, public_key=public)
    finally:
        api.close()
    return private


def server(emulator: Emulator, name: str, **fields: Any) -> str:
    made = admin(emulator, "POST", f"projects/{emulator.project_id}/servers",
                 {"name": name, **fields})
    return str(made["id"])


def timeline(emulator: Emulator, server_id: str) -> list[dict[str, Any]]:
    doc = admin(emulator, "GET", f"projects/{emulator.project_id}/servers/{server_id}/keys")
    return list(doc["timeline"])


def binding(emulator: Emulator, **fields: Any) -> Any:
    return admin(emulator, "POST", "binding", fields)


@pytest.fixture()
def ecs(emulator: Emulator) -> Iterator[EcsServersClient]:
    client = EcsServersClient(settings(emulator))
    yield client
    client.close()


@pytest.fixture()
def kps(emulator: Emulator) -> Iterator[KpsTasksClient]:
    client = KpsTasksClient(settings(emulator), polling=FAST)
    yield client
    client.close()


# -- ECS listing --------------------------------------------------------------------------


def test_every_page_is_read_and_key_names_are_per_server(emulator: Emulator,
                                                         ecs: EcsServersClient) -> None:
    import_key(emulator, "deploy")
    fleet = emulator.compute.fleet(emulator.project_id)
    record = emulator.store.get("deploy")
    assert record is not None
    for i in range(1003):  # two pages of 1000 (made in process: the listing is over HTTP)
        bound = i % 2 == 0
        fleet.add(name=f"s{i}", status="ACTIVE", image_type="gold", ssh_port_open=True,
                  ssh_port=22, at_ms=i, key_name="deploy" if bound else None,
                  public_key=record.public_key if bound else None)
    servers = ecs.list_servers()
    assert len(servers) == 1003 and len({s.id for s in servers}) == 1003
    assert emulator.counters()["ecs_list_servers_details"] == 2
    assert [s.name for s in servers[:2]] == ["s1002", "s1001"]  # newest first
    grouped = by_key_name(servers)
    assert set(grouped) == {"deploy"} and len(grouped["deploy"]) == 502
    assert all(s.running and s.public_image for s in servers)


def test_an_empty_project_lists_no_servers_and_images_are_told_apart(
        emulator: Emulator, ecs: EcsServersClient) -> None:
    assert ecs.list_servers() == ()
    server(emulator, "pub")
    server(emulator, "priv", image="private", status="stopped")
    by_name = {s.name: s for s in ecs.list_servers()}
    assert by_name["pub"].public_image and by_name["pub"].running
    assert not by_name["priv"].public_image and by_name["priv"].status == "SHUTOFF"
    assert by_name["priv"].key_name is None


def test_a_list_that_changes_while_it_is_read_is_read_again_then_refused(
        emulator: Emulator) -> None:
    server(emulator, "one")

    def grow(status: int, body: bytes) -> tuple[int, bytes]:
        doc = json.loads(body)
        doc["count"] = 1001  # one more server than the page holds: a second page is needed
        doc["servers"] = doc["servers"] * 1000
        return status, json.dumps(doc).encode()

    with mutating_proxy(emulator.endpoint,
                        [Rule("GET", r"/cloudservers/detail", mutate=grow)]) as proxy:
        client = EcsServersClient(settings(emulator, endpoint=proxy.endpoint))
        try:
            with pytest.raises(ApiError) as refused:
                client.list_servers()
        finally:
            client.close()
    assert "changed while it was read, 2 times" in str(refused.value)
    assert "Run the command again" in str(refused.value)


def test_a_listing_is_retried_through_injected_errors(emulator: Emulator,
                                                      ecs: EcsServersClient) -> None:
    server(emulator, "one")
    emulator.set_faults(error_rate=0.5, statuses=[503], operations=["ecs_list_servers_details"],
                        seed=3)
    for _ in range(5):
        assert [s.name for s in ecs.list_servers()] == ["one"]
    assert emulator.counters()["faults_injected"] > 0


# -- binding tasks ------------------------------------------------------------------------


def test_a_running_server_is_rebound_with_its_current_private_key_and_never_goes_keyless(
        emulator: Emulator, ecs: EcsServersClient, kps: KpsTasksClient) -> None:
    old = import_key(emulator, "old")
    new = import_key(emulator, "new")
    sid = server(emulator, "web", key_name="old")
    wrong = kps.associate("new", sid, private_key=new)
    assert not wrong.accepted and wrong.error_code == "KPS.0106" and wrong.task_id is None
    missing = kps.associate("new", sid)
    assert not missing.accepted and missing.error_code == "KPS.0105"
    assert "current private key" in (missing.error_msg or "")
    accepted = kps.associate("new", sid, private_key=old)
    assert accepted.accepted and accepted.task_id
    busy = kps.associate("new", sid, private_key=old)
    assert not busy.accepted and busy.error_code == "KPS.0103"
    outcome = kps.wait(accepted.task_id)
    assert outcome.succeeded and outcome.operation == "REPLACE" and outcome.server_id == sid
    (listed,) = ecs.list_servers()
    assert listed.key_name == "new"
    events = timeline(emulator, sid)
    assert [e["key_name"] for e in events] == ["old", "new"]
    assert [e["cause"] for e in events] == ["created", "REPLACE"]
    assert all(e["public_key"] for e in events)  # never a moment without a managed key
    assert events[0]["at_ms"] <= events[1]["at_ms"]
    text = json.dumps(admin(emulator, "GET", f"projects/{emulator.project_id}/servers"))
    for secret in (old, new):
        assert secret.reveal() not in text + json.dumps(events)


def test_a_stopped_server_is_reset_without_a_key_and_refuses_a_replace(
        emulator: Emulator, kps: KpsTasksClient) -> None:
    old = import_key(emulator, "old")
    import_key(emulator, "new")
    sid = server(emulator, "db", key_name="old", status="stopped", ssh_port_open=False)
    refused = kps.associate("new", sid, private_key=old)
    assert not refused.accepted and refused.error_code == "KPS.0104"
    assert "stopped" in (refused.error_msg or "")
    accepted = kps.associate("new", sid)
    assert accepted.accepted and accepted.task_id
    outcome = kps.wait(accepted.task_id)
    assert outcome.succeeded and outcome.operation == "RESET"  # offline: the port is not used
    assert [e["key_name"] for e in timeline(emulator, sid)] == ["old", "new"]


def test_a_private_image_an_unknown_server_and_an_unknown_key_pair_are_refused(
        emulator: Emulator, kps: KpsTasksClient) -> None:
    import_key(emulator, "k")
    private = server(emulator, "custom", image="private")
    assert kps.associate("k", private).error_code == "KPS.0102"
    assert kps.associate("k", "0b5e3c36-0000-4000-8000-000000000000").error_code == "KPS.0101"
    with pytest.raises(ApiError) as unknown:
        kps.associate("nope", private)
    assert unknown.value.status == 404 and unknown.value.code == "KPS.0002"
    assert "Create the key pair first" in str(unknown.value)
    assert timeline(emulator, private)[-1]["cause"] == "created"


def test_a_batch_binds_running_servers_without_a_key_pair(
        emulator: Emulator, ecs: EcsServersClient, kps: KpsTasksClient) -> None:
    import_key(emulator, "fleet")
    import_key(emulator, "other")
    ids = [server(emulator, f"n{i}") for i in range(9)]
    keyed = server(emulator, "keyed", key_name="other")
    answers = kps.batch_associate("fleet", [*ids, keyed])
    assert [a.server_id for a in answers] == [*ids, keyed]
    assert all(a.accepted for a in answers[:9])
    assert answers[9].error_code == "KPS.0108"
    for a in answers[:9]:
        assert a.task_id and kps.wait(a.task_id).succeeded
    grouped = by_key_name(ecs.list_servers())
    assert {s.id for s in grouped["fleet"]} == set(ids)
    with pytest.raises(UsageError):
        kps.batch_associate("fleet", [f"id-{i}" for i in range(11)])
    with pytest.raises(UsageError):
        kps.batch_associate("fleet", [ids[0], ids[0]])
    assert emulator.counters()["kps_batch_associate"] == 1  # the refused ones were not sent


def test_a_closed_ssh_port_fails_the_task_and_its_reason_is_read_and_removed(
        emulator: Emulator, kps: KpsTasksClient) -> None:
    old = import_key(emulator, "old")
    import_key(emulator, "new")
    sid = server(emulator, "web", key_name="old", ssh_port_open=False)
    accepted = kps.associate("new", sid, private_key=old)
    assert accepted.accepted and accepted.task_id  # found out only when the task runs
    outcome = kps.wait(accepted.task_id)
    assert not outcome.succeeded and outcome.operation == "REPLACE"
    assert outcome.error_code == "KPS.0201" and "SSH port 22" in (outcome.error_msg or "")
    assert kps.failed_tasks() == ()  # removed once its reason was read
    assert emulator.counters()["kps_delete_failed_task"] == 1
    events = timeline(emulator, sid)
    assert [e["key_name"] for e in events] == ["old"]  # still the old key, never none


def test_a_task_that_fails_by_chance_is_reported_and_can_be_submitted_again(
        emulator: Emulator, kps: KpsTasksClient) -> None:
    import_key(emulator, "k")
    sid = server(emulator, "web")
    binding(emulator, failure_rate=1.0, seed=1)
    first = kps.associate("k", sid)
    assert first.task_id
    failed = kps.wait(first.task_id)
    assert not failed.succeeded and failed.error_code == "KPS.0203"
    binding(emulator, failure_rate=0.0)
    again = kps.associate("k", sid)
    assert again.task_id and kps.wait(again.task_id).succeeded


def test_unbinding_restores_password_login_and_is_the_only_keyless_moment(
        emulator: Emulator, ecs: EcsServersClient, kps: KpsTasksClient) -> None:
    private = import_key(emulator, "k")
    sid = server(emulator, "web", key_name="k")
    needs_key = kps.disassociate(sid)
    assert needs_key.error_code == "KPS.0105"
    accepted = kps.disassociate(sid, private_key=private)
    assert accepted.task_id
    outcome = kps.wait(accepted.task_id)
    assert outcome.succeeded and outcome.operation == "UNBIND"
    assert ecs.list_servers()[0].key_name is None
    events = timeline(emulator, sid)
    assert [(e["cause"], e["public_key"] is None) for e in events] == [
        ("created", False), ("UNBIND", True)]
    summary = admin(emulator, "GET", f"projects/{emulator.project_id}/servers/{sid}")
    assert summary["password_login"] is True
    assert kps.disassociate(sid).error_code == "KPS.0107"


def test_task_statuses_advance_in_order(emulator: Emulator, kps: KpsTasksClient) -> None:
    import_key(emulator, "k")
    sid = server(emulator, "web")
    binding(emulator, task_seconds=0.6)
    accepted = kps.associate("k", sid)
    assert accepted.task_id
    seen = []
    running = kps.running_tasks()
    assert [t.task_id for t in running] == [accepted.task_id]
    assert running[0].keypair_name == "k" and running[0].server_name == "web"
    while True:
        state = kps.task(accepted.task_id)
        assert state is not None
        if not seen or seen[-1] != state.phase:
            seen.append(state.phase)
        if state.finished:
            break
        time.sleep(0.02)
    order = ["READY", "RUNNING", "SUCCESS"]
    assert seen[-1] == "SUCCESS" and seen == sorted(seen, key=order.index)
    assert kps.running_tasks() == ()
    assert kps.task("0b5e3c36-0000-4000-8000-000000000000") is None


def test_the_phases_are_a_function_of_time() -> None:
    fleet, book = Fleet(), TaskBook()
    s = fleet.add(name="a", status="ACTIVE", image_type="gold", ssh_port_open=True,
                  ssh_port=22, at_ms=0)
    task = book.submit(server_id=s.id, server_name="a", keypair_name="k", operation="RESET",
                       now=100.0, seconds=10.0, by_chance=False, public_key="ssh-ed25519 AAAA")
    assert task.status(100.0) == "READY_RESET"
    assert task.status(100.0 + 10 * READY_SHARE) == "RUNNING_RESET"
    book.settle(109.9, fleet)
    assert task.status(109.9) == "RUNNING_RESET" and book.busy(s.id)
    book.settle(110.0, fleet)
    assert task.status(110.0) == "SUCCESS_RESET" and not book.busy(s.id)
    assert [e.at_ms for e in (fleet.timeline(s.id) or [])] == [0, 110_000]


def test_a_task_that_does_not_finish_in_time_is_an_unknown_outcome(
        emulator: Emulator) -> None:
    import_key(emulator, "k")
    sid = server(emulator, "web")
    binding(emulator, task_seconds=60)
    client = KpsTasksClient(settings(emulator), polling=Polling(first=0.02, cap=0.05,
                                                                timeout=0.3))
    try:
        accepted = client.associate("k", sid)
        assert accepted.task_id
        with pytest.raises(OutcomeUnknownError) as late:
            client.wait(accepted.task_id)
    finally:
        client.close()
    assert "may still finish" in str(late.value) and "running tasks" in str(late.value)


def test_a_lost_submission_answer_is_not_resent_and_holds_no_key(
        emulator: Emulator, kps: KpsTasksClient) -> None:
    old = import_key(emulator, "old")
    import_key(emulator, "new")
    sid = server(emulator, "web", key_name="old")
    binding(emulator, task_seconds=30)
    emulator.set_faults(lost_response_rate=1.0, operations=["kps_associate"])
    with pytest.raises(OutcomeUnknownError) as lost:
        kps.associate("new", sid, private_key=old)
    assert old.reveal() not in str(lost.value) and "running tasks" in str(lost.value)
    assert emulator.counters()["kps_associate"] == 1
    emulator.set_faults()
    assert [t.server_id for t in kps.running_tasks()] == [sid]  # it was accepted


def test_the_debug_log_never_shows_the_private_key(emulator: Emulator, kps: KpsTasksClient,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    old = import_key(emulator, "old")
    import_key(emulator, "new")
    sid = server(emulator, "web", key_name="old")
    with caplog.at_level(logging.DEBUG, logger="reconciler.http"):
        accepted = kps.associate("new", sid, private_key=old)
    assert accepted.accepted
    sent = [r.getMessage() for r in caplog.records if "sends headers" in r.getMessage()]
    assert sent and '"auth":"(sensitive value)"' in sent[-1]
    body = old.reveal().splitlines()[1]
    assert body not in caplog.text and "BEGIN OPENSSH" not in caplog.text


def test_the_new_paths_refuse_unsigned_requests(emulator: Emulator) -> None:
    import urllib.error
    import urllib.request

    for method, path in (("GET", "v1/{p}/cloudservers/detail"), ("GET", "v3/{p}/running-tasks"),
                         ("POST", "v3/{p}/keypairs/associate")):
        url = f"{emulator.endpoint}/{path.format(p=emulator.project_id)}"
        request = urllib.request.Request(url, data=b"{}" if method == "POST" else None,
                                         method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
        assert json.loads(refused.value.read())["errorCode"] == "APIGW.0301"
    assert emulator.counters()["rejected_auth"] == 3
    assert emulator.counters().get("kps_associate", 0) == 0
