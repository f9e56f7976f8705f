"""Key pairs bound to servers, end to end through the CLI against the emulator: three
servers bound (a batch for the running ones, a reset for the stopped one), planned again
with no changes, unbound; the refusals the plan makes before anything is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.emulator.server import Emulator
from tests.clihelp import Cli
from tests.test_emulator_kms import admin

K1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKwIjAMYc6uhQM4LzeXgHN/O/kezk2t2iqOT16iKzSCu"


@pytest.fixture()
def cli(emulator: Emulator, tmp_path: Path) -> Cli:
    admin(emulator, "POST", "binding", {"task_seconds": 0.05})
    return Cli(emulator, tmp_path, api="kps")


def server(emulator: Emulator, name: str, **fields: Any) -> str:
    made = admin(emulator, "POST", f"projects/{emulator.project_id}/servers",
                 {"name": name, **fields})
    return str(made["id"])


def key_names(emulator: Emulator) -> dict[str, str | None]:
    listed = admin(emulator, "GET", f"projects/{emulator.project_id}/servers")
    items = listed["servers"] if isinstance(listed, dict) else listed
    return {s["name"]: s["key_name"] for s in items}


def counted(emulator: Emulator, op: str) -> int:
    return int(emulator.counters().get(op, 0))


def manifest(servers: str) -> str:
    return f"keypairs:\n  - name: web\n    generate: ed25519\n    servers: {servers}\n"


def test_bind_three_servers_plan_again_then_unbind(cli: Cli, emulator: Emulator) -> None:
    server(emulator, "web-1")
    server(emulator, "web-2")
    stopped = server(emulator, "web-3", status="stopped")
    cli.write(manifest(f"[web-1, web-2, {stopped}]"))
    plan = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert plan.code == 2, plan.text
    assert "Plan: 4 to add, 0 to change, 0 to destroy." in plan.out
    assert f"# binding.web.{stopped} will be created" in plan.out
    assert 'resource "binding"' in plan.out and "(stopped: KPS resets it)" in plan.out
    applied = cli("apply", "--auto-approve", str(cli.manifests))
    assert applied.code == 0, applied.text
    assert "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." in applied.out
    assert key_names(emulator) == {"web-1": "web", "web-2": "web", "web-3": "web"}
    assert counted(emulator, "kps_batch_associate") == 1  # the two running servers
    assert counted(emulator, "kps_associate") == 1  # the stopped one, reset alone
    before = counted(emulator, "ecs_list_servers_details")
    again = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert again.code == 0, again.text
    assert "No changes." in again.out
    assert counted(emulator, "ecs_list_servers_details") == before + 1  # one listing
    cli.write(manifest("[web-1]"))
    unbind = cli("apply", "--auto-approve", str(cli.manifests))
    assert unbind.code == 0, unbind.text
    assert "0 added, 0 changed, 2 destroyed" in unbind.out
    assert "unbind: server 'web-2' is no longer listed for key pair 'web'" in unbind.out
    assert key_names(emulator) == {"web-1": "web", "web-2": None, "web-3": None}
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0
    assert "PRIVATE KEY" not in unbind.text + applied.text


def test_a_plan_without_bindings_lists_no_servers(cli: Cli, emulator: Emulator) -> None:
    server(emulator, "web-1")
    cli.write("keypairs:\n  - name: web\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0
    assert counted(emulator, "ecs_list_servers_details") == 0


def test_drift_then_rebind_and_refused_delete(cli: Cli, emulator: Emulator) -> None:
    server(emulator, "web-1")
    cli.write(manifest("[web-1]") + "  - name: db\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    # rebound outside reconciler: web-1 now holds db (stopped, so a reset needs no key)
    sid = next(iter(admin(emulator, "GET", f"projects/{emulator.project_id}/servers")
                    ["servers"]))["id"]
    admin(emulator, "POST", f"projects/{emulator.project_id}/servers/{sid}",
          {"status": "stopped"})
    from reconciler.api.kps_tasks import KpsTasksClient, Polling
    from tests.test_emulator_kms import settings
    kps = KpsTasksClient(settings(emulator), polling=Polling(first=0.02, cap=0.05, timeout=10))
    try:
        done = kps.wait(str(kps.associate("db", sid).task_id))
    finally:
        kps.close()
    assert done.succeeded
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert f"binding.web.{sid} has changed" in plan.out
    assert '"web" -> "db"' in plan.out
    assert f"# binding.web.{sid} will be updated in-place" in plan.out
    # deleting web while an unmanaged server still uses it is refused
    server(emulator, "other", key_name="web")
    cli.write("keypairs:\n  - name: db\n")
    refused = cli("plan", str(cli.manifests))
    assert refused.code == 1, refused.text
    assert "keypair.web is to be deleted, but 1 server(s) still use it: other (" in refused.err
    assert "--allow-bound-delete" in refused.err
    allowed = cli("plan", "--allow-bound-delete", str(cli.manifests))
    assert allowed.code == 0, allowed.text
    assert "Warning: keypair.web is deleted while 1 server(s) still use it" in allowed.out
    assert "used by 1 server(s): other (" in allowed.out
    md = cli("plan", "--allow-bound-delete", "--format", "markdown", str(cli.manifests))
    assert "> [!WARNING]" in md.out and "allow-bound-delete" in md.out


def test_rebind_refused_without_the_current_private_key(cli: Cli, emulator: Emulator) -> None:
    cli.client().import_keypair(name="theirs", public_key=K1)
    server(emulator, "app", key_name="theirs")
    cli.write(manifest("[app]"))
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 1, plan.text
    assert "cannot rebind server 'app'" in plan.err and "stop the server" in plan.err
    assert "keys.yaml:6:" in plan.err


def test_names_resolve_exactly(cli: Cli, emulator: Emulator) -> None:
    server(emulator, "dup")
    server(emulator, "dup")
    server(emulator, "web-10")
    cli.write(manifest("[dup, web-1]"))
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 1
    assert "server name 'dup' is ambiguous: 2 servers have it" in plan.err
    assert "no server has that id or name" in plan.err  # web-1 is not web-10
    assert "keys.yaml:6:" in plan.err


def test_a_task_left_running_is_followed_not_submitted_again(cli: Cli,
                                                            emulator: Emulator) -> None:
    """As after a kill -9 between the submission and its end: the next apply finds the task
    in running-tasks and follows it."""
    from reconciler.api.kps_tasks import KpsTasksClient
    from tests.test_emulator_kms import settings

    sid = server(emulator, "web-1")
    cli.write("keypairs:\n  - name: web\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    admin(emulator, "POST", "binding", {"task_seconds": 1.0})
    kps = KpsTasksClient(settings(emulator))
    try:
        assert kps.associate("web", sid).accepted
    finally:
        kps.close()
    cli.write(manifest("[web-1]").replace("    generate: ed25519\n", ""))
    applied = cli("apply", "--auto-approve", str(cli.manifests))
    assert applied.code == 0, applied.text
    assert counted(emulator, "kps_associate") == 1  # the first submission only
    assert counted(emulator, "kps_list_running_tasks") == 1
    assert key_names(emulator) == {"web-1": "web"}
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


def test_a_refused_bind_is_reported_by_address_with_the_cloud_reason(cli: Cli,
                                                                    emulator: Emulator) -> None:
    sid = server(emulator, "img", image="private")
    cli.write(manifest("[img]"))
    applied = cli("apply", "--auto-approve", str(cli.manifests))
    assert applied.code == 1, applied.text
    assert f"Error: binding.web.{sid}: KPS refused the task for server 'img'" in applied.err
    assert "KPS.0102: server" in applied.err and "runs a private" in applied.out
    assert "1 of 2 changes failed" in applied.err
