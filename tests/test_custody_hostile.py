"""Custody changed in place, against a hostile or careless cloud: an error answer that echoes
the private key sent, a key pair re-keyed in the console, the break-glass export.

The CLI runs against the emulator, through ``tests.mutating_proxy`` where an answer must be
one the emulator never gives (an error quoting the request body).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.emulator.server import Emulator
from reconciler.keys import public_key_of, same_key
from reconciler.model import Encryption, KeyProtection, Secret
from tests.clihelp import Cli
from tests.mutating_proxy import Answer, Rule, mutating_proxy

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
