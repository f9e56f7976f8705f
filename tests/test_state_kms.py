"""The state key from Huawei Cloud KMS, end to end: the real CLI against the emulator's KMS
(real signatures, real AES-GCM data keys), the state file read as JSON.

A passphrase (or a format 2 key file) state moves to KMS in one apply with ``mode:
fallback``; ``state rekey`` changes every ciphertext and nothing else; ``enforced`` refuses a
state sealed otherwise; KMS refusing or unreachable stops the run with nothing written; plan
never asks KMS anything.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from clihelp import Cli
from test_emulator_kms import key_action, make_key, settings

from reconciler.api.kms import KmsClient
from reconciler.emulator.server import Emulator
from reconciler.state.codec import checksum
from reconciler.state.kmskey import aad

PASSPHRASE = "correct horse battery staple"
KEYS = """keypairs:
  - name: web
    generate: ed25519
  - name: ci
    generate: ed25519
  - name: deploy
    public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKwIjAMYc6uhQM4LzeXgHN/O/kezk2t2iqOT16iKzSCu
"""
FORMAT_2 = Path(__file__).parent / "data" / "state-format-2"


def encryption(key: str, *, mode: str = "enforced") -> str:
    return f"encryption:\n  provider: kms\n  mode: {mode}\n  kms:\n    key_id: {key}\n"


def passphrase_cli(emulator: Emulator, root: Path) -> Cli:
    cli = Cli(emulator, root, extra_env={"RECONCILER_PASSPHRASE": PASSPHRASE})
    del cli.environ["RECONCILER_KEY_FILE"]
    return cli


def doc(cli: Cli) -> dict[str, Any]:
    return dict(json.loads(cli.state.read_text()))


def private_keys(cli: Cli, *names: str) -> dict[str, str]:
    out = {}
    for name in names:
        result = cli("output", name, str(cli.manifests), "--private-key")
        assert result.code == 0, result.text
        out[name] = hashlib.sha256(result.out.encode()).hexdigest()
    return out


def sealed(document: dict[str, Any]) -> dict[str, str]:
    return {a: e["private_key"] for a, e in document["keypairs"].items() if e["private_key"]}


def without_secrets(document: dict[str, Any]) -> dict[str, Any]:
    """Everything of a document but its key block, sealed values and authentication."""
    out = {k: v for k, v in document.items() if k not in ("key", "checksum", "mac")}
    out["keypairs"] = {a: {k: v for k, v in e.items() if k != "private_key"}
                       for a, e in document["keypairs"].items()}
    return out


@pytest.fixture()
def kms_state(emulator: Emulator, tmp_path: Path) -> tuple[Cli, str]:
    """A state sealed with a KMS data key from the start (nothing else given)."""
    key = make_key(emulator, "state")
    cli = Cli(emulator, tmp_path)
    del cli.environ["RECONCILER_KEY_FILE"]
    cli.write(encryption(key) + KEYS)
    result = cli("apply", "--auto-approve", str(cli.manifests))
    assert result.code == 0, result.text
    return cli, key


def test_a_new_state_is_sealed_with_a_fresh_kms_data_key(kms_state: tuple[Cli, str],
                                                         emulator: Emulator) -> None:
    cli, key = kms_state
    document = doc(cli)
    assert document["format_version"] == 4
    block = document["key"]
    assert block["kdf"] is None and block["salt"] is None
    assert block["kms"]["key_id"] == key and len(block["kms"]["cipher_text"]) > 64
    assert len(sealed(document)) == 2
    assert emulator.counters()["kms_create_datakey"] == 1
    # the wrapped key opens under its KMS key with the state's lineage only
    client = KmsClient(settings(emulator))
    plain = client.decrypt_datakey(key, block["kms"]["cipher_text"],
                                   aad=aad(document["lineage"]))
    assert len(bytes.fromhex(plain.reveal())) == 32
    client.close()
    assert not (cli.root / ".config" / "reconciler" / "key").exists()  # no key file made


def test_plan_needs_no_kms_access_and_says_it_read_unverified(
        kms_state: tuple[Cli, str], emulator: Emulator) -> None:
    cli, _ = kms_state
    before = emulator.counters()
    result = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert result.code == 0 and "No changes." in result.out, result.text
    assert "KMS data key" in result.err and "unverified" in result.err
    after = emulator.counters()
    for counter in ("kms_decrypt_datakey", "kms_create_datakey"):
        assert after.get(counter, 0) == before.get(counter, 0), counter


def test_a_passphrase_state_moves_to_kms_in_one_apply(emulator: Emulator,
                                                      tmp_path: Path) -> None:
    cli = passphrase_cli(emulator, tmp_path)
    cli.write(KEYS)
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    before = doc(cli)
    assert before["format_version"] == 3 and before["key"]["kdf"]["name"] == "scrypt"
    keys_before = private_keys(cli, "web", "ci")
    key = make_key(emulator, "state", aliases=("alias/reconciler-state",))
    cli.write(encryption("alias/reconciler-state", mode="fallback") + KEYS)
    result = cli("apply", "--auto-approve", str(cli.manifests))
    assert result.code == 0, result.text
    assert "No changes." in result.out and "moved to key id" in result.err, result.text
    after = doc(cli)
    assert after["format_version"] == 4 and after["key"]["kms"]["key_id"] == key
    assert after["serial"] == before["serial"] and after["lineage"] == before["lineage"]
    assert without_secrets(after) == {**without_secrets(before), "format_version": 4}
    assert set(sealed(after)) == set(sealed(before))
    assert all(sealed(after)[a] != sealed(before)[a] for a in sealed(before))
    backup = json.loads(cli.state.with_name(cli.state.name + ".backup").read_text())
    assert backup["key"] == before["key"]  # the backup keeps the passphrase-sealed file
    # from now on KMS alone opens it: no passphrase, the mode enforced
    del cli.environ["RECONCILER_PASSPHRASE"]
    cli.write(encryption(key) + KEYS)
    assert private_keys(cli, "web", "ci") == keys_before
    again = cli("apply", "--auto-approve", str(cli.manifests))
    assert again.code == 0 and "moved" not in again.err, again.text
    assert doc(cli) == after  # nothing to write: still the same file


def test_a_format_2_key_file_state_moves_to_kms_in_one_apply(emulator: Emulator,
                                                             tmp_path: Path) -> None:
    shutil.copy(FORMAT_2 / "state.key", tmp_path / "state.key")
    (tmp_path / "state.key").chmod(0o600)
    shutil.copy(FORMAT_2 / "reconciler.state.json", tmp_path / "reconciler.state.json")
    cli = Cli(emulator, tmp_path)
    client = cli.client()
    for name, kp in json.loads((FORMAT_2 / "reconciler.state.json").read_text())[
            "keypairs"].items():
        client.import_keypair(name=name, public_key=kp["public_key"], type=kp["type"])
    client.close()
    key = make_key(emulator, "state")
    manifest = (FORMAT_2 / "manifest.yaml").read_text()
    (cli.manifests / "keys.yaml").write_text(
        manifest.replace("keypairs:", encryption(key, mode="fallback") + "keypairs:", 1))
    result = cli("apply", "--auto-approve", str(cli.manifests))
    assert result.code == 0, result.text
    document = doc(cli)
    assert document["format_version"] == 4 and document["key"]["kms"]["key_id"] == key
    assert document["serial"] == 1  # the state as format 2 had it: migrated, then rekeyed
    expected = json.loads((FORMAT_2 / "private-key-sha256.json").read_text())
    del cli.environ["RECONCILER_KEY_FILE"]  # KMS alone opens it now
    for name, digest in expected.items():
        out = cli("output", name, str(cli.manifests), "--private-key")
        assert out.code == 0, out.text
        assert hashlib.sha256(out.out.rstrip("\n").encode()).hexdigest() == digest or \
            hashlib.sha256(out.out.encode()).hexdigest() == digest


def test_state_rekey_changes_every_ciphertext_and_nothing_else(
        kms_state: tuple[Cli, str], emulator: Emulator) -> None:
    cli, key = kms_state
    before_bytes = cli.state.read_bytes()
    before = json.loads(before_bytes)
    keys_before = private_keys(cli, "web", "ci")
    made = emulator.counters()["kms_create_datakey"]
    result = cli("state", "rekey", str(cli.manifests))
    assert result.code == 0, result.text
    assert "2 private key(s) sealed again" in result.out and "unchanged" in result.out
    after = doc(cli)
    assert emulator.counters()["kms_create_datakey"] == made + 1  # a fresh data key
    assert without_secrets(after) == without_secrets(before)  # lineage, serial, entries
    assert after["key"]["kms"]["key_id"] == key
    assert after["key"]["kms"]["cipher_text"] != before["key"]["kms"]["cipher_text"]
    assert after["key"]["id"] != before["key"]["id"] and after["mac"] != before["mac"]
    assert set(sealed(after)) == set(sealed(before))
    assert all(sealed(after)[a] != sealed(before)[a] for a in sealed(before))
    backup = cli.state.with_name(cli.state.name + ".backup")
    assert backup.read_bytes() == before_bytes  # the backup keeps the previous file
    assert private_keys(cli, "web", "ci") == keys_before
    plan = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert plan.code == 0, plan.text  # no rollback seen in the backup at the same serial
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0


def test_state_rekey_of_a_passphrase_state_takes_a_new_salt(emulator: Emulator,
                                                            tmp_path: Path) -> None:
    cli = passphrase_cli(emulator, tmp_path)
    cli.write(KEYS)
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    before = doc(cli)
    result = cli("state", "rekey")
    assert result.code == 0, result.text
    after = doc(cli)
    assert after["key"]["salt"] != before["key"]["salt"]
    assert after["key"]["id"] != before["key"]["id"]
    assert without_secrets(after) == without_secrets(before)
    assert all(sealed(after)[a] != sealed(before)[a] for a in sealed(before))


def test_enforced_kms_refuses_a_passphrase_sealed_state(emulator: Emulator,
                                                        tmp_path: Path) -> None:
    cli = passphrase_cli(emulator, tmp_path)
    cli.write(KEYS)
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    original = cli.state.read_bytes()
    key = make_key(emulator, "state")
    cli.write(encryption(key) + KEYS + "  - name: more\n    generate: ed25519\n")
    writes = cli.writes()
    for argv in (("apply", "--auto-approve", str(cli.manifests)),
                 ("output", "web", str(cli.manifests), "--private-key"),
                 ("state", "rekey", str(cli.manifests))):
        result = cli(*argv)
        assert result.code == 1, result.text
        assert "sealed with key id" in result.err and "enforces a KMS data key" in result.err
        assert "mode fallback" in result.err and "Traceback" not in result.text
        assert PASSPHRASE not in result.text
    assert cli.state.read_bytes() == original and cli.writes() == writes
    assert emulator.counters().get("kms_create_datakey", 0) == 0
    # the same with flags instead of a block: --encryption kms --kms-key-id
    cli.write(KEYS)
    result = cli("apply", "--auto-approve", "--encryption", "kms", "--kms-key-id", key,
                 str(cli.manifests))
    assert result.code == 1 and "--encryption enforces" in result.err, result.text
    assert cli.state.read_bytes() == original


def test_enforced_kms_refuses_a_state_sealed_under_another_kms_key(
        kms_state: tuple[Cli, str], emulator: Emulator) -> None:
    cli, _ = kms_state
    other = make_key(emulator, "other")
    original = cli.state.read_bytes()
    result = cli("apply", "--auto-approve", "--kms-key-id", other, str(cli.manifests))
    assert result.code == 1 and f"enforces KMS key {other}" in result.err, result.text
    assert cli.state.read_bytes() == original
    moved = cli("apply", "--auto-approve", "--kms-key-id", other, "--encryption-mode",
                "fallback", str(cli.manifests))
    assert moved.code == 0, moved.text
    assert doc(cli)["key"]["kms"]["key_id"] == other


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_kms_unreachable_is_a_clear_error_with_nothing_written(emulator: Emulator,
                                                               tmp_path: Path) -> None:
    key = make_key(emulator, "state")
    cli = Cli(emulator, tmp_path)
    del cli.environ["RECONCILER_KEY_FILE"]
    dead = f"http://127.0.0.1:{_closed_port()}"
    cli.write(encryption(key) + f"""targets:
  - name: prod
    region: cn-north-4
    project_id: {emulator.project_id}
    endpoints: {{ecs: "{emulator.endpoint}", kms: "{dead}"}}
""" + KEYS)
    result = cli("apply", "--auto-approve", str(cli.manifests), "--state", str(cli.state),
                 globals_=False)
    assert result.code == 1, result.text
    assert f"KMS of target 'prod' at {dead}" in result.err, result.err
    assert "Nothing was decrypted or written" in result.err and "Traceback" not in result.text
    assert not cli.state.exists() and not cli.state.with_name(cli.state.name + ".journal").exists()
    assert cli.writes() == 0  # nothing was asked of the key pair API


def test_a_disabled_kms_key_stops_the_run_before_the_cloud(kms_state: tuple[Cli, str],
                                                           emulator: Emulator) -> None:
    cli, key = kms_state
    original = cli.state.read_bytes()
    key_action(emulator, key, "disable")
    cli.write(encryption(key) + KEYS + "  - name: more\n    generate: ed25519\n")
    writes = cli.writes()
    result = cli("apply", "--auto-approve", str(cli.manifests))
    assert result.code == 1, result.text
    assert "unwrap the state's data key" in result.err and "disabled" in result.err
    assert "Nothing was decrypted or written" in result.err
    assert cli.state.read_bytes() == original and cli.writes() == writes


def test_a_wrapped_key_copied_from_another_state_does_not_open(
        kms_state: tuple[Cli, str], emulator: Emulator, tmp_path: Path) -> None:
    cli, key = kms_state
    other = Cli(emulator, tmp_path / "other")
    del other.environ["RECONCILER_KEY_FILE"]
    other.write(encryption(key) + "keypairs:\n  - name: solo\n    generate: ed25519\n")
    assert other("apply", "--auto-approve", str(other.manifests)).code == 0
    document = doc(cli)
    foreign = doc(other)["key"]
    document["key"] = foreign  # another lineage's data key (and its id)
    document["checksum"] = checksum(document)  # what anyone can do; the MAC needs the key
    cli.state.write_text(json.dumps(document))
    result = cli("output", "web", str(cli.manifests), "--private-key")
    assert result.code == 1, result.text
    assert "KMS" in result.err and "Traceback" not in result.text


def _kms_document(tmp_path: Path, emulator: Emulator) -> dict[str, Any]:
    key = make_key(emulator, "state")
    cli = Cli(emulator, tmp_path)
    cli.write(encryption(key) + "keypairs:\n  - name: solo\n    generate: ed25519\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    return doc(cli)


def test_format_4_holds_a_kms_key_block_and_only_it_does(emulator: Emulator,
                                                          tmp_path: Path) -> None:
    from reconciler.errors import StateCorruptError
    from reconciler.state.codec import decode_document

    document = _kms_document(tmp_path, emulator)
    decoded = decode_document(json.dumps(document).encode(), source="s.json")
    assert decoded.format_version == 4 and decoded.key is not None
    assert decoded.key.kms is not None and decoded.key.provider == "kms"
    as_3 = {**document, "format_version": 3}
    as_3["checksum"] = checksum(as_3)
    with pytest.raises(StateCorruptError, match="holds a KMS data key, which only format 4"):
        decode_document(json.dumps(as_3).encode(), source="s.json")
    bare = {**document, "key": {k: v for k, v in document["key"].items() if k != "kms"}}
    bare["checksum"] = checksum(bare)
    with pytest.raises(StateCorruptError, match="its key block names none"):
        decode_document(json.dumps(bare).encode(), source="s.json")
    bad = json.loads(json.dumps(document))
    bad["key"]["kms"]["cipher_text"] = "not hex"
    bad["checksum"] = checksum(bad)
    with pytest.raises(StateCorruptError, match="cipher_text: must be hex"):
        decode_document(json.dumps(bad).encode(), source="s.json")


def test_state_rekey_of_a_key_file_state_says_the_key_stays(emulator: Emulator,
                                                            tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path)
    cli.write(KEYS)
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    before = doc(cli)
    result = cli("state", "rekey")
    assert result.code == 0 and "The key itself is the same" in result.out, result.text
    after = doc(cli)
    assert after["key"] == before["key"]
    # the same key: the serial moves on, so the backup is not taken for a rollback
    assert without_secrets(after) == {**without_secrets(before), "serial": before["serial"] + 1}
    assert all(sealed(after)[a] != sealed(before)[a] for a in sealed(before))
    upgrade = cli("state", "upgrade")
    assert upgrade.code == 0 and "already in state format 3" in upgrade.out, upgrade.text


def test_state_upgrade_of_a_kms_state_names_format_4(kms_state: tuple[Cli, str]) -> None:
    cli, _ = kms_state
    result = cli("state", "upgrade", str(cli.manifests))
    assert result.code == 0 and "already in state format 4" in result.out, result.text


def test_a_kms_key_mode_or_target_without_the_provider_kms_is_refused(
        emulator: Emulator, tmp_path: Path) -> None:
    """Given alone (no provider chosen) or with another provider, they would be ignored, and
    the state sealed with a passphrase by a run its operator believed used KMS."""
    key = make_key(emulator, "state")
    cli = passphrase_cli(emulator, tmp_path)
    cli.write(KEYS)
    for extra, env, said in (
            (["--kms-key-id", key], {}, "--kms-key-id"),
            ([], {"RECONCILER_KMS_KEY_ID": key}, "RECONCILER_KMS_KEY_ID"),
            (["--encryption-mode", "fallback"], {}, "--encryption-mode"),
            (["--kms-target", "default"], {}, "--kms-target"),
            (["--encryption", "passphrase", "--kms-key-id", key], {}, "--kms-key-id")):
        cli.environ.update(env)
        result = cli("apply", "--auto-approve", str(cli.manifests), extra=extra)
        for name in env:
            del cli.environ[name]
        assert result.code == 1, (extra, env, result.text)
        assert said in result.err and "--encryption" in result.err, result.err
        assert "Traceback" not in result.text
        assert not cli.state.exists() and cli.writes() == 0
