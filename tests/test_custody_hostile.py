"""Custody changed in place, against a hostile or careless cloud: an error answer that echoes
the private key sent, a key pair re-keyed in the console, the break-glass export.

The CLI runs against the emulator, through ``tests.mutating_proxy`` where an answer must be
one the emulator never gives (an error quoting the request body).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from reconciler.emulator.server import Emulator
from reconciler.keys import public_key_of, same_key
from reconciler.model import Encryption, KeyProtection, Secret
from tests.clihelp import Cli
from tests.mutating_proxy import Answer, Rule, mutating_proxy
from tests.reliability_support import assert_clean, cli_argv, subprocess_env

KEPT = KeyProtection(encryption=Encryption(type="default"))

DEFAULT = "    key_protection: {encryption: {type: default}}\n"
GENERATED = "keypairs:\n  - name: vault\n    generate: rsa-2048\n"


def _apply(cli: Cli, *extra: str) -> str:
    done = cli("apply", "--auto-approve", str(cli.manifests), *extra)
    assert done.code == 0, done.text
    return done.text


def _chunks_shown(secret: str, public_key: str, text: str) -> list[str]:
    """The 24-character pieces of ``secret``'s body found in ``text`` (an OpenSSH private
    key embeds its public key: those pieces are not secret)."""
    body = "".join(ln for ln in secret.splitlines() if "-----" not in ln)
    pieces = (body[i:i + 24] for i in range(0, len(body) - 24, 24))
    return [p for p in pieces if p in text and p not in public_key]


def _echo(kind: str):  # type: ignore[no-untyped-def]
    """An error answer quoting the request it was sent, the way careless services do."""
    def answer(_path: str, body: bytes) -> Answer:
        text = body.decode()
        if kind == "json fragment":  # a window of the body, its armour cut away
            return 400, json.dumps({"error_code": "KPS.0001",
                                    "error_msg": f"bad value near {text[140:420]}"}).encode()
        if kind == "plain fragment":  # not JSON at all
            return 400, body[140:700]
        if kind == "key body":  # the key's base64 lines, without the armour
            sent = json.loads(text)["keypair"]["key_protection"]["private_key"]
            inner = "".join(ln for ln in sent.splitlines() if "-----" not in ln)
            return 400, json.dumps({"error_code": "KPS.0005",
                                    "error_msg": f"invalid private key {inner}"}).encode()
        return 500, json.dumps({"error_code": "KPS.0001",  # retried, then given up
                                "error_msg": f"busy with {text[140:420]}"}).encode()
    return answer


@pytest.mark.parametrize("kind", ["json fragment", "plain fragment", "key body", "retried"])
def test_an_error_echoing_the_private_key_sent_shows_none_of_it(
        emulator: Emulator, tmp_path: Path, kind: str) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write(GENERATED)
    _apply(cli)
    held = cli("output", "vault", "--private-key").out
    cli.write(GENERATED + DEFAULT)
    rule = Rule("POST", r"private-key/import", answer_body=_echo(kind))
    with mutating_proxy(emulator.endpoint, [rule]) as proxy:
        failed = cli("--debug", "apply", "--auto-approve", str(cli.manifests),
                     extra=["--endpoint", proxy.endpoint])
    assert failed.code == 1 and rule.hits >= 1, failed.text
    assert "import the private key of vault failed" in failed.err, failed.text
    shown = _chunks_shown(held, emulator.store.get("vault").public_key, failed.text)
    assert not shown, [ln for ln in failed.text.splitlines() if any(p in ln for p in shown)]
    assert "withheld" in failed.err
    assert not emulator.store.get("vault").key_protection


def _rekey_in_console(cli: Cli) -> str:
    """Someone deletes the key pair and makes one of the same name, its private key kept by
    the cloud only: that private key, which no one else holds."""
    console = cli.client("kps")
    console.delete_keypair("vault")
    made = console.create_keypair(name="vault", key_protection=KEPT)
    assert made.private_key is not None
    return made.private_key.reveal()


def test_a_key_pair_rekeyed_in_the_console_keeps_the_clouds_only_copy_within_reach(
        emulator: Emulator, tmp_path: Path) -> None:
    """Re-keyed in the console, the cloud keeping the new private key: the replacement the
    plan makes deletes that copy, so the plan says so and how to keep it, and the break-glass
    export is not refused because state holds the old key pair's private key."""
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write(GENERATED + DEFAULT)
    _apply(cli)
    only_copy = _rekey_in_console(cli)
    cli.write(GENERATED)  # custody no longer wanted
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert "# keypair.vault must be replaced" in plan.out, plan.text
    assert "the cloud keeps the private key of the key pair it holds now" in plan.out
    assert "reconciler output vault --private-key --from-cloud --out FILE" in plan.out
    out = tmp_path / "vault.key"
    saved = cli("output", "vault", str(cli.manifests), "--private-key", "--from-cloud",
                "--out", str(out))
    assert saved.code == 0, saved.text
    assert "another key" in saved.err, saved.text  # says state's is not this one
    assert out.read_text().strip() == only_copy.strip()
    shown = cli("output", "vault", str(cli.manifests), "--private-key", "--from-cloud")
    assert shown.code == 0 and shown.out.strip() == only_copy.strip(), shown.text
    assert emulator.store.get("vault").private_key == only_copy  # nothing was changed


def test_a_clear_never_reaches_a_key_pair_rekeyed_after_the_refresh(
        emulator: Emulator, tmp_path: Path) -> None:
    """Re-keyed in the console between the refresh and the clear: apply reads the key pair
    again before clearing, and clears nothing once it is not the key state holds."""
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write(GENERATED + DEFAULT)
    _apply(cli)
    held = cli("output", "vault", "--private-key").out
    cli.write(GENERATED)
    copies: list[str] = []

    def rekey_once(status: int, raw: bytes) -> Answer:
        if not copies:
            copies.append(_rekey_in_console(cli))
        return status, raw

    rule = Rule("GET", r"/keypairs\?", mutate=rekey_once)  # the refresh's list
    with mutating_proxy(emulator.endpoint, [rule]) as proxy:
        done = cli("apply", "--auto-approve", str(cli.manifests),
                   extra=["--endpoint", proxy.endpoint])
    assert copies, done.text
    assert done.code == 1, done.text
    assert "keypair.vault" in done.err and "changed in the cloud" in done.err, done.text
    record = emulator.store.get("vault")
    assert record.key_protection and record.private_key == copies[0]  # the only copy stays
    assert not same_key(public_key_of(Secret(held)), record.public_key)
    assert emulator.counters()["clear_private_key"] == 0


def _killed_when(cli: Cli, requests: int) -> None:
    """Run ``apply`` as a child process and ``kill -9`` it as its ``requests``-th request
    reaches the cloud: the emulator's latency holds that request, then carries it out, with
    the process that sent it gone before the answer (and the state write) could follow."""
    start = cli.emulator.counters()["total"]
    proc = subprocess.Popen(cli_argv(cli, "apply", "--auto-approve", str(cli.manifests)),
                            env=subprocess_env(cli), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while cli.emulator.counters()["total"] - start < requests:
            assert proc.poll() is None, "the apply ended before the call was sent"
            assert time.monotonic() < deadline
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def _settled(cli: Cli, name: str, operation: str, before: int) -> None:
    deadline = time.monotonic() + 10
    while cli.emulator.counters()[operation] == before:
        assert time.monotonic() < deadline, f"the {operation} never reached the cloud"
        time.sleep(0.01)
    time.sleep(0.05)  # counted just before it is carried out


def _converges_keeping(cli: Cli, held: str, *, kept: bool) -> None:
    plan = cli("plan", str(cli.manifests))
    assert_clean(plan.text)
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.out, plan.text
    _apply(cli)
    again = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert again.code == 0, again.text
    assert cli("output", "vault", "--private-key").out == held  # never lost
    record = cli.emulator.store.get("vault")
    assert bool(record.key_protection) is kept
    assert record.private_key == (held if kept else None)


@pytest.mark.parametrize("api", ["kps", "v2.1"])
def test_kill_9_between_the_custody_call_and_the_state_write_converges(
        emulator: Emulator, tmp_path: Path, api: str) -> None:
    cli = Cli(emulator, tmp_path, api=api)
    cli.write("keypairs:\n  - name: vault\n    generate: ed25519\n")
    _apply(cli)
    held = cli("output", "vault", "--private-key").out
    emulator.set_faults(latency_ms=400)
    # custody added: the list, then the import, killed while the cloud carries it out
    cli.write("keypairs:\n  - name: vault\n    generate: ed25519\n" + DEFAULT)
    before = emulator.counters()["import_private_key"]
    _killed_when(cli, 2)
    _settled(cli, "vault", "import_private_key", before)
    assert emulator.store.get("vault").key_protection  # done in the cloud ...
    shown = cli("state", "show", "vault")
    assert shown.code == 0 and "key_protection     = null" in shown.out, shown.text  # not yet
    emulator.set_faults(latency_ms=0)
    _converges_keeping(cli, held, kept=True)
    # custody removed: the list, the read before the clear, then the clear
    emulator.set_faults(latency_ms=400)
    cli.write("keypairs:\n  - name: vault\n    generate: ed25519\n")
    before = emulator.counters()["clear_private_key"]
    _killed_when(cli, 3)
    _settled(cli, "vault", "clear_private_key", before)
    assert not emulator.store.get("vault").key_protection
    shown = cli("state", "show", "vault")
    assert '"type": "default"' in shown.out, shown.text  # state still records custody
    emulator.set_faults(latency_ms=0)
    _converges_keeping(cli, held, kept=False)


@pytest.mark.parametrize("api", ["kps", "v2.1"])
def test_a_clear_refused_because_the_cloud_keeps_no_copy_is_the_clear_done(
        emulator: Emulator, tmp_path: Path, api: str) -> None:
    """After an apply killed between the clear and the state write, the clear is sent again;
    a cloud that answers it with an error because it keeps no copy any more has done it (v2.1
    too, whose own list and show say nothing of custody: KPS is asked)."""
    cli = Cli(emulator, tmp_path, api=api)
    cli.write(GENERATED + DEFAULT)
    _apply(cli)
    held = cli("output", "vault", "--private-key").out
    cli.client("kps").clear_private_key("vault")  # what the killed apply had done
    cli.write(GENERATED)
    refusal = json.dumps({"error_code": "KPS.0004",
                          "error_msg": "the private key of 'vault' is not kept"}).encode()
    rule = Rule("DELETE", r"/keypairs/vault/private-key",
                answer_body=lambda _path, _body: (400, refusal))
    with mutating_proxy(emulator.endpoint, [rule]) as proxy:
        done = cli("apply", "--auto-approve", str(cli.manifests),
                   extra=["--endpoint", proxy.endpoint])
    assert rule.hits == 1 and done.code == 0, done.text
    again = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert again.code == 0, again.text
    assert cli("output", "vault", "--private-key").out == held


@pytest.mark.parametrize("edit", ["pin removed", "pin renamed"])
def test_a_saved_plan_whose_custody_pin_was_edited_is_refused(
        emulator: Emulator, tmp_path: Path, edit: str) -> None:
    """The custody pin is part of what the plan made again must give: an edit that drops it
    (and with it the check that custody did not move in the console) is refused."""
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write(GENERATED + DEFAULT)
    _apply(cli)
    cli.write(GENERATED)
    made = cli("plan", "--out", "clear.plan", str(cli.manifests))
    assert made.code == 0, made.text
    doc = json.loads((tmp_path / "clear.plan").read_text())
    assert doc["reconciler"]["custody"] == {"vault": True}
    if edit == "pin removed":
        del doc["reconciler"]["custody"]
    else:
        doc["reconciler"]["custody"] = {"elsewhere": True}
    (tmp_path / "edited.plan").write_text(json.dumps(doc, indent=2))
    cli.client().clear_private_key("vault")  # custody moved in the console meanwhile
    state = cli.state.read_bytes()
    refused = cli("apply", "edited.plan", str(cli.manifests))
    assert refused.code == 1, refused.text
    assert "Nothing was changed" in refused.err, refused.text
    assert cli.state.read_bytes() == state
