"""End to end through the CLI against the emulator over HTTP, for v2, v2.1 and kps."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler import keys
from reconciler.emulator.server import Emulator
from tests.clihelp import Cli

APIS = ["v2", "v2.1", "kps"]
K1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKwIjAMYc6uhQM4LzeXgHN/O/kezk2t2iqOT16iKzSCu"
K2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAl3qnSrPmacQJUWaClGKLzgQLRg89u91AQzFOBo2SLP"

BASIC = f"""keypairs:
  - name: web
  - name: ci
    generate: ed25519
  - name: alice
    public_key: "{K1} alice@laptop"
"""


@pytest.fixture()
def cli(emulator: Emulator, tmp_path: Path, request: pytest.FixtureRequest) -> Cli:
    api = getattr(request, "param", "v2.1")
    return Cli(emulator, tmp_path, api=api)


@pytest.mark.parametrize("cli", APIS, indirect=True)
def test_lifecycle_converges_and_second_apply_writes_nothing(cli: Cli) -> None:
    cli.write(BASIC)
    first = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert first.code == 2, first.text
    assert "Plan: 3 to add, 0 to change, 0 to destroy." in first.out
    applied = cli("apply", "--auto-approve", str(cli.manifests))
    assert applied.code == 0, applied.text
    assert "Apply complete! Resources: 3 added, 0 changed, 0 destroyed." in applied.out
    assert "keypair.ci: Creation complete after" in applied.out
    again = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert again.code == 0, again.text
    assert "No changes. Your infrastructure matches the configuration." in again.out
    writes = cli.writes()
    second = cli("apply", "--auto-approve", str(cli.manifests))
    assert second.code == 0, second.text
    assert cli.writes() == writes
    assert {"web", "ci", "alice"} <= set(cli.client().list_keypairs().keypairs)


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen is not installed")
@pytest.mark.parametrize("name", ["web", "ci"])
def test_output_private_key_is_accepted_by_ssh_keygen(cli: Cli, name: str) -> None:
    cli.write(BASIC)
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    out = cli("output", name, "--private-key", "--out", str(cli.root / "k"))
    assert out.code == 0, out.text
    assert (cli.root / "k").stat().st_mode & 0o777 == 0o600
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(cli.root / "k")], check=True,
                             capture_output=True, text=True).stdout
    held = cli.client().get_keypair(name)
    assert held is not None
    assert keys.same_key(derived, held.public_key)


@pytest.mark.parametrize("cli", APIS, indirect=True)
def test_adopt_existing_same_key(cli: Cli) -> None:
    cli.client().import_keypair(name="alice", public_key=K1)
    cli.write(f'keypairs:\n  - name: alice\n    public_key: "{K1}"\n')
    plan = cli("plan", str(cli.manifests))
    assert "# keypair.alice will be imported" in plan.out
    assert "Plan: 1 to import, 0 to add, 0 to change, 0 to destroy." in plan.out
    applied = cli("apply", "--auto-approve", str(cli.manifests))
    assert "Apply complete! Resources: 1 imported, 0 added, 0 changed, 0 destroyed." in applied.out
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


def test_unmanaged_conflict_suggests_import(cli: Cli) -> None:
    cli.client().create_keypair(name="web")
    cli.write("keypairs:\n  - name: web\n")
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 1
    assert "reconciler import web" in plan.err
    imported = cli("import", "web", str(cli.manifests))
    assert imported.code == 0, imported.text
    assert "Import successful!" in imported.out
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


@pytest.mark.parametrize("cli", ["kps"], indirect=True)
def test_description_update_in_place_kps(cli: Cli) -> None:
    cli.write("keypairs:\n  - name: web\n    description: first\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    got = cli.client().get_keypair("web")
    assert got is not None and got.description == "first"
    cli.write("keypairs:\n  - name: web\n    description: second\n")
    plan = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert plan.code == 2
    assert "# keypair.web will be updated in-place" in plan.out
    assert '~ description = "first" -> "second"' in plan.out
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    got = cli.client().get_keypair("web")
    assert got is not None and got.description == "second"
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


@pytest.mark.parametrize("cli", APIS, indirect=True)
def test_drift_deleted_outside_is_created_again(cli: Cli) -> None:
    cli.write(BASIC)
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    assert cli.client().delete_keypair("ci")
    plan = cli("plan", str(cli.manifests))
    assert "# keypair.ci has been deleted" in plan.out
    assert "# keypair.ci will be created" in plan.out
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


@pytest.mark.parametrize("cli", APIS, indirect=True)
def test_drift_key_changed_outside_is_replaced(cli: Cli) -> None:
    cli.write(BASIC)
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    api = cli.client()
    api.delete_keypair("ci")
    api.import_keypair(name="ci", public_key=K2)
    plan = cli("plan", str(cli.manifests))
    assert "# keypair.ci has changed" in plan.out
    assert "# keypair.ci must be replaced" in plan.out
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    now = api.get_keypair("ci")
    assert now is not None and not keys.same_key(now.public_key, K2)
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


def test_replace_forced_by_field_and_delete(cli: Cli) -> None:
    cli.write(BASIC)
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.write(BASIC.replace("generate: ed25519", "generate: ecdsa-p256").replace(
        f'  - name: alice\n    public_key: "{K1} alice@laptop"\n', ""))
    plan = cli("plan", str(cli.manifests))
    assert "# keypair.ci must be replaced" in plan.out
    assert '~ algorithm   = "ed25519" -> "ecdsa-p256"  # forces replacement' in plan.out
    assert "# keypair.alice will be destroyed" in plan.out
    assert "Plan: 1 to add, 0 to change, 2 to destroy." in plan.out
    applied = cli("apply", "--auto-approve", str(cli.manifests))
    assert "Apply complete! Resources: 1 added, 0 changed, 2 destroyed." in applied.out
    assert cli.client().get_keypair("alice") is None
    ci = cli.client().get_keypair("ci")
    assert ci is not None and ci.public_key.startswith("ecdsa-sha2-nistp256")


def test_prevent_destroy_refuses_and_changes_nothing(cli: Cli) -> None:
    cli.write("keypairs:\n  - name: web\n    prevent_destroy: true\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    before = cli.state.read_bytes()
    cli.write("keypairs: []\n")
    result = cli("apply", "--auto-approve", str(cli.manifests))
    assert result.code == 1
    assert "prevent_destroy" in result.err
    assert cli.state.read_bytes() == before
    assert cli.client().get_keypair("web") is not None
    assert cli("destroy", "--auto-approve", str(cli.manifests)).code == 1


def test_saved_plan_applies_and_refuses_when_stale(cli: Cli) -> None:
    cli.write(BASIC)
    saved = cli("plan", "--out", "p.json", str(cli.manifests))
    assert saved.code == 0 and "reconciler apply p.json" in saved.out
    doc = json.loads((cli.root / "p.json").read_text())
    assert doc["format_version"] and doc["prior_state"]["serial"] == 0
    assert cli("apply", "p.json").code == 0
    # A plan saved now is stale once the state moves on.
    cli.write(BASIC + "  - name: extra\n")
    assert cli("plan", "--out", "p2.json", str(cli.manifests)).code == 0
    cli.write(BASIC + "  - name: other\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    state = cli.state.read_bytes()
    stale = cli("apply", "p2.json")
    assert stale.code == 1
    assert "Saved plan is stale" in stale.err
    assert cli.state.read_bytes() == state
    assert cli.client().get_keypair("extra") is None


def test_saved_plan_refused_when_cloud_changed(cli: Cli) -> None:
    cli.write(BASIC)
    assert cli("plan", "--out", "p.json", str(cli.manifests)).code == 0
    cli.client().import_keypair(name="web", public_key=K2)
    stale = cli("apply", "p.json")
    assert stale.code == 1
    assert "changed in the cloud since the plan was made: web" in stale.err


def test_detailed_exitcode_error_and_approval(cli: Cli) -> None:
    cli.write("keypairs:\n  - name: 'bad name'\n")
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 1
    cli.write("keypairs:\n  - name: web\n")
    no_tty = cli("apply", str(cli.manifests))
    assert no_tty.code == 1
    assert "--auto-approve" in no_tty.err
    assert cli.client().get_keypair("web") is None


def test_destroy_removes_everything_in_state(cli: Cli) -> None:
    cli.write(BASIC)
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    destroyed = cli("destroy", "--auto-approve", str(cli.manifests))
    assert destroyed.code == 0, destroyed.text
    assert "Destroy complete! Resources: 3 destroyed." in destroyed.out
    assert cli.client().list_keypairs().keypairs == {}
    assert cli("state", "list").out == ""


def test_target_and_replace_flags(cli: Cli) -> None:
    cli.write(BASIC)
    assert cli("apply", "--auto-approve", "--target", "ci", str(cli.manifests)).code == 0
    assert set(cli.client().list_keypairs().keypairs) == {"ci"}
    before = cli.client().get_keypair("ci")
    replaced = cli("apply", "--auto-approve", "--replace", "ci", "--target", "ci",
                   str(cli.manifests))
    assert replaced.code == 0, replaced.text
    after = cli.client().get_keypair("ci")
    assert before is not None and after is not None and before.fingerprint != after.fingerprint


def test_lost_create_response_taints_then_replaces(cli: Cli) -> None:
    cli.write("keypairs:\n  - name: web\n")
    cli.emulator.set_faults(lost_response_rate=1.0, operations=["create"])
    lost = cli("apply", "--auto-approve", str(cli.manifests))
    assert lost.code == 1
    assert "tainted" in lost.err
    assert cli.emulator.keypair_count() == 1  # no duplicate
    cli.emulator.set_faults()
    plan = cli("plan", str(cli.manifests))
    assert "# keypair.web must be replaced" in plan.out
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    assert cli("output", "web", "--private-key").code == 0
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


def test_lost_import_response_of_generated_key_is_recovered(cli: Cli) -> None:
    cli.write("keypairs:\n  - name: ci\n    generate: ed25519\n")
    cli.emulator.set_faults(lost_response_rate=1.0, operations=["import"], seed=1)
    applied = cli("apply", "--auto-approve", str(cli.manifests))
    assert applied.code == 0, applied.text
    cli.emulator.set_faults()
    assert cli.emulator.keypair_count() == 1
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0
