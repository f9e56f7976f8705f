"""Custody of a private key changed in place, end to end: the CLI against the emulator.

Adding ``key_protection`` to a key pair whose private key reconciler holds imports it
(``POST …/private-key/import``), removing it clears the cloud's copy (``DELETE
…/{name}/private-key``), a new KMS key imports it again; v2.1 sends the same KPS calls. A key
pair whose private key reconciler does not hold is still replaced. Custody changed in the
console shows as drift (kps). An apply killed between the call and the state write (the same
cloud and state as a change made outside) converges on the next apply, with the private key
kept. The break-glass export writes a key the cloud keeps, 0600, and never prints it.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from reconciler.emulator.server import Emulator
from reconciler.keys import generate_keypair, public_key_of, same_key
from reconciler.model import Encryption, KeyProtection, Secret
from tests.clihelp import Cli

DEFAULT = "    key_protection: {encryption: {type: default}}\n"
KMS = "    key_protection: {encryption: {type: kms, kms_key_name: %s}}\n"
NO_CHANGES = "No changes. Your infrastructure matches the configuration."


def _apply(cli: Cli) -> str:
    done = cli("apply", "--auto-approve", str(cli.manifests))
    assert done.code == 0, done.text
    return done.text


def _converged(cli: Cli) -> None:
    again = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert again.code == 0 and NO_CHANGES in again.out, again.text


def _state_key(cli: Cli, name: str) -> str:
    shown = cli("output", name, "--private-key")
    assert shown.code == 0, shown.text
    return shown.out


@pytest.mark.parametrize("api", ["kps", "v2.1"])
def test_custody_added_changed_and_removed_in_place(emulator: Emulator, tmp_path: Path,
                                                    api: str) -> None:
    cli = Cli(emulator, tmp_path, api=api)
    cli.write("keypairs:\n  - name: vault\n    generate: ed25519\n")
    _apply(cli)
    held = _state_key(cli, "vault")
    fingerprint = emulator.store.get("vault").fingerprint

    cli.write("keypairs:\n  - name: vault\n    generate: ed25519\n" + DEFAULT)
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert "# keypair.vault will be updated in-place" in plan.out
    assert '~ key_protection = null -> {"encryption": {"type": "default"}}' in plan.out
    assert "forces replacement" not in plan.out
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.out
    before = emulator.counters()
    assert "Apply complete! Resources: 0 added, 1 changed, 0 destroyed." in _apply(cli)
    after = emulator.counters()
    assert after["import_private_key"] - before["import_private_key"] == 1
    assert after["delete"] == before["delete"] and after["create"] == before["create"]
    record = emulator.store.get("vault")
    assert record.fingerprint == fingerprint  # the same key pair, not a new one
    assert record.key_protection and record.encryption == {"type": "default"}
    assert record.private_key is not None and same_key(
        public_key_of(Secret(record.private_key)), record.public_key)
    _converged(cli)

    cli.write("keypairs:\n  - name: vault\n    generate: ed25519\n" + KMS % "ops-kms")
    plan = cli("plan", str(cli.manifests))
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.out, plan.text
    assert "again, with the declared encryption" in plan.out
    _apply(cli)
    assert emulator.store.get("vault").encryption == {"type": "kms", "kms_key_name": "ops-kms"}
    _converged(cli)

    cli.write("keypairs:\n  - name: vault\n    generate: ed25519\n")
    plan = cli("plan", str(cli.manifests))
    assert '~ key_protection = {"encryption": {"kms_key_name": "ops-kms", "type": "kms"}} ' \
           '-> null' in plan.out, plan.text
    before = emulator.counters()
    _apply(cli)
    assert emulator.counters()["clear_private_key"] - before["clear_private_key"] == 1
    record = emulator.store.get("vault")
    assert record.fingerprint == fingerprint
    assert not record.key_protection and record.private_key is None
    assert _state_key(cli, "vault") == held  # state keeps the private key
    _converged(cli)


def test_custody_from_private_key_file_in_place(emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    pair = generate_keypair("ed25519", comment="owner")
    key_file = cli.manifests / "owner.key"
    key_file.write_text(pair.private_key.reveal())
    key_file.chmod(0o600)
    body = f'keypairs:\n  - name: owner\n    public_key: "{pair.public_key}"\n'
    cli.write(body)
    _apply(cli)
    cli.write(body + "    key_protection:\n      encryption: {type: default}\n"
                     "      private_key_file: owner.key\n")
    plan = cli("plan", str(cli.manifests))
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.out, plan.text
    assert "from key_protection.private_key_file" in plan.out
    _apply(cli)
    assert emulator.store.get("owner").private_key == pair.private_key.reveal()
    _converged(cli)


def test_custody_is_replaced_when_reconciler_does_not_hold_the_key(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    pair = generate_keypair("ed25519")
    body = f'keypairs:\n  - name: alice\n    public_key: "{pair.public_key}"\n'
    cli.write(body)
    _apply(cli)
    cli.write(body + DEFAULT)
    plan = cli("plan", str(cli.manifests))
    assert "# keypair.alice must be replaced" in plan.out, plan.text
    assert "reconciler does not hold its private key" in plan.out
    assert "key_protection = null -> " in plan.out and "# forces replacement" in plan.out
    assert emulator.counters()["import_private_key"] == 0


def test_custody_changed_in_the_console_shows_as_drift_and_is_restored(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write("keypairs:\n  - name: vault\n" + DEFAULT)
    _apply(cli)
    held = _state_key(cli, "vault")
    cli.client().clear_private_key("vault")  # in the console
    plan = cli("plan", "--format", "json", str(cli.manifests))
    doc = json.loads(plan.out)
    (drift,) = doc["resource_drift"]
    assert drift["change"]["after"]["key_protection"] is None
    (change,) = [c for c in doc["resource_changes"] if c["name"] == "vault"]
    assert change["change"]["actions"] == ["update"]
    refresh = cli("plan", "--refresh-only", str(cli.manifests))
    assert "has changed" in refresh.out and "key_protection" in refresh.out, refresh.text
    _apply(cli)
    assert emulator.store.get("vault").private_key == held
    _converged(cli)


def test_refresh_only_records_custody_cleared_and_keeps_the_private_key(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write("keypairs:\n  - name: vault\n" + DEFAULT)
    _apply(cli)
    held = _state_key(cli, "vault")
    cli.client().clear_private_key("vault")
    done = cli("apply", "--refresh-only", "--auto-approve", str(cli.manifests))
    assert done.code == 0, done.text
    assert "state now records no custody" in done.text
    assert _state_key(cli, "vault") == held  # not forgotten: only custody moved
    again = cli("plan", "--refresh-only", "--detailed-exitcode", str(cli.manifests))
    assert again.code == 0, again.text
    plan = cli("plan", str(cli.manifests))  # the manifest still asks for custody
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.out, plan.text
    assert "from state) to the cloud's custody" in plan.out


def test_an_apply_killed_after_the_call_converges(emulator: Emulator, tmp_path: Path) -> None:
    """kill -9 between the cloud's answer and the state write leaves the cloud changed and
    state as before: the next plan makes the call again, and the private key stays."""
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write("keypairs:\n  - name: vault\n    generate: rsa-2048\n")
    _apply(cli)
    held = _state_key(cli, "vault")
    cli.client().import_private_key(  # what the killed apply had sent
        "vault", key_protection=KeyProtection(encryption=Encryption(type="default")),
        private_key=Secret(held))
    cli.write("keypairs:\n  - name: vault\n    generate: rsa-2048\n" + DEFAULT)
    plan = cli("plan", str(cli.manifests))
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.out, plan.text
    _apply(cli)
    _converged(cli)
    # and the other way: cleared, state not yet written
    cli.client().clear_private_key("vault")
    cli.write("keypairs:\n  - name: vault\n    generate: rsa-2048\n")
    plan = cli("plan", str(cli.manifests))
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.out, plan.text
    _apply(cli)
    _converged(cli)
    assert _state_key(cli, "vault") == held


def test_custody_import_leaks_no_private_key(emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="v2.1")
    cli.write("keypairs:\n  - name: vault\n    generate: rsa-2048\n")
    _apply(cli)
    held = _state_key(cli, "vault")
    cli.write("keypairs:\n  - name: vault\n    generate: rsa-2048\n" + DEFAULT)
    printed = [cli("--debug", "plan", str(cli.manifests)),
               cli("--debug", "apply", "--auto-approve", str(cli.manifests))]
    cli.write("keypairs:\n  - name: vault\n    generate: rsa-2048\n")
    printed.append(cli("--debug", "apply", "--auto-approve", str(cli.manifests)))
    assert all(r.code == 0 for r in printed), [r.text for r in printed]
    assert "private-key/import" in printed[1].err  # the debug log shows the call
    body = "".join(ln for ln in held.splitlines() if "-----" not in ln)
    public = emulator.store.get("vault").public_key  # an OpenSSH private key embeds it
    for chunk in (body[i:i + 24] for i in range(0, len(body) - 24, 24)):
        if chunk in public:
            continue
        leaks = [r.text[max(0, r.text.find(chunk) - 300):r.text.find(chunk) + 100]
                 for r in printed if chunk in r.text]
        assert not leaks, leaks


@pytest.mark.parametrize("api", ["kps", "v2.1"])
def test_break_glass_export_of_a_key_the_cloud_keeps(emulator: Emulator, tmp_path: Path,
                                                     api: str) -> None:
    cli = Cli(emulator, tmp_path, api=api)
    made = cli.client("kps").create_keypair(
        name="legacy", key_protection=KeyProtection(encryption=Encryption(type="default")))
    assert made.private_key is not None
    cli.write("keypairs:\n  - name: other\n")
    _apply(cli)
    out = tmp_path / "legacy.key"
    done = cli("output", "legacy", str(cli.manifests), "--private-key", "--from-cloud",
               "--out", str(out))
    assert done.code == 0, done.text
    assert out.read_text().strip() == made.private_key.reveal().strip()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    body = "".join(ln for ln in made.private_key.reveal().splitlines() if "-----" not in ln)
    assert body[40:80] not in done.text
    again = cli("output", "legacy", str(cli.manifests), "--private-key", "--from-cloud",
                "--out", str(out))
    assert again.code == 1 and "--force" in again.err
    held = cli("output", "other", str(cli.manifests), "--private-key", "--from-cloud")
    assert held.code == 1 and "state holds the private key" in held.err
    alone = cli("output", "legacy", str(cli.manifests), "--from-cloud")
    assert alone.code == 1 and "--private-key" in alone.err
    cli.client("kps").import_keypair(name="plain", public_key=generate_keypair("ed25519")
                                     .public_key)
    exports = emulator.counters()["export"]
    none = cli("output", "plain", str(cli.manifests), "--private-key", "--from-cloud")
    assert none.code == 1 and "Traceback" not in none.text, none.text
    if api == "kps":  # its read says the cloud keeps none: nothing is asked of it
        assert "the cloud keeps no private key for it" in none.err, none.err
        assert emulator.counters()["export"] == exports


def test_a_saved_custody_plan_applies_and_a_stale_one_is_refused(emulator: Emulator,
                                                                 tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write("keypairs:\n  - name: vault\n    generate: ed25519\n")
    _apply(cli)
    cli.write("keypairs:\n  - name: vault\n    generate: ed25519\n" + DEFAULT)
    saved = cli("plan", "--out", "custody.plan", str(cli.manifests))
    assert saved.code == 0, saved.text
    done = cli("apply", "custody.plan", str(cli.manifests))
    assert done.code == 0 and "1 changed" in done.out, done.text
    assert emulator.store.get("vault").key_protection
    _converged(cli)
    cli.write("keypairs:\n  - name: vault\n    generate: ed25519\n")
    stale = cli("plan", "--out", "clear.plan", str(cli.manifests))
    assert stale.code == 0, stale.text
    cli.client().clear_private_key("vault")  # in the console, after the plan was made
    refused = cli("apply", "clear.plan", str(cli.manifests))
    assert refused.code == 1 and "changed in the cloud since" in refused.text, refused.text
    assert "vault" in refused.text and not emulator.store.get("vault").key_protection
