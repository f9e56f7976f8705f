"""State format 3: entries keyed by address, each target's connection recorded, secrets bound
to the address; a format 2 state (a real file of the previous format, ``tests/data/
state-format-2``, see its PROVENANCE.txt) migrates on its first write, or by ``state
upgrade``, in one verified step, and the backup keeps the format 2 file."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from clihelp import Cli
from test_state_support import at, entry, key_env, remac

from reconciler.emulator.server import Emulator
from reconciler.errors import StateCorruptError, StateTamperedError
from reconciler.model import Secret
from reconciler.state.codec import checksum
from reconciler.state.local import LocalStateStore
from reconciler.state.protocol import Integrity

FORMAT_2 = Path(__file__).parent / "data" / "state-format-2"


@pytest.fixture()
def cli(emulator: Emulator, tmp_path: Path) -> Cli:
    shutil.copy(FORMAT_2 / "state.key", tmp_path / "state.key")
    (tmp_path / "state.key").chmod(0o600)
    shutil.copy(FORMAT_2 / "reconciler.state.json", tmp_path / "reconciler.state.json")
    cli = Cli(emulator, tmp_path)
    shutil.copy(FORMAT_2 / "manifest.yaml", cli.manifests / "keys.yaml")
    client = cli.client()  # the cloud as that apply left it
    for name, kp in json.loads((FORMAT_2 / "reconciler.state.json").read_text())[
            "keypairs"].items():
        client.import_keypair(name=name, public_key=kp["public_key"], type=kp["type"])
    client.close()
    return cli


def _digests(path: Path, environ: dict[str, str]) -> dict[str, str]:
    store = LocalStateStore(path, environ=environ)
    state = store.load()
    return {a.name: hashlib.sha256(store.unseal(a.name, kp.private_key).reveal().encode())
            .hexdigest()
            for a, kp in sorted(state.keypairs.items()) if kp.private_key is not None}


def _backup(cli: Cli) -> Path:
    return cli.state.with_name(cli.state.name + ".backup")


def test_a_format_2_file_is_read_verified_and_plan_writes_nothing(cli: Cli) -> None:
    original = cli.state.read_bytes()
    store = LocalStateStore(cli.state, environ=cli.environ)
    assert sorted(store.load().names()) == ["alice", "ci-runner", "deploy", "web"]
    assert store.integrity is Integrity.VERIFIED and store.format_version == 2
    expected = json.loads((FORMAT_2 / "private-key-sha256.json").read_text())
    assert _digests(cli.state, cli.environ) == expected  # v2 envelopes open against the name
    result = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert result.code == 0 and "No changes." in result.out, result.text
    assert "format" not in result.err  # nothing to say: it is authenticated
    assert cli.state.read_bytes() == original and not _backup(cli).exists()


def test_the_first_write_migrates_a_format_2_file_in_one_verified_step(cli: Cli) -> None:
    original = cli.state.read_bytes()
    old = json.loads(original)
    expected = json.loads((FORMAT_2 / "private-key-sha256.json").read_text())
    (cli.manifests / "keys.yaml").write_text((FORMAT_2 / "manifest.yaml").read_text()
                                             + "  - name: extra\n    generate: ed25519\n")
    result = cli("apply", "--auto-approve", str(cli.manifests))
    assert result.code == 0, result.text
    assert "Resources: 1 added, 0 changed, 0 destroyed." in result.out
    doc = json.loads(cli.state.read_text())
    assert doc["format_version"] == 3 and doc["lineage"] == old["lineage"]
    assert doc["serial"] == old["serial"] + 1  # the migration itself keeps it; the apply adds 1
    assert sorted(doc["keypairs"]) == sorted(at(n) for n in [*old["keypairs"], "extra"])
    assert all(e["private_key"].startswith("v3:")
               for e in doc["keypairs"].values() if e["private_key"])
    # the connection the run used, and no secret of it
    assert doc["targets"] == {"default": {
        "region": None, "project_id": cli.emulator.project_id, "api": "v2.1",
        "endpoint": cli.emulator.endpoint,
        "credentials": "environment (HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK)"}}
    text = cli.state.read_text()
    assert cli.emulator.ak not in text and cli.emulator.sk not in text
    # two commits: the migration's (its backup the format 2 file), then the apply's, whose
    # backup is the migrated state: the format 2 one's serial and entries, in format 3
    backup = json.loads(_backup(cli).read_text())
    assert backup["format_version"] == 3 and backup["serial"] == old["serial"]
    digests = _digests(cli.state, cli.environ)
    assert {n: d for n, d in digests.items() if n != "extra"} == expected
    again = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert again.code == 0, again.text


def test_state_upgrade_migrates_format_2_keeping_the_serial_and_the_backup(cli: Cli) -> None:
    original = cli.state.read_bytes()
    plan = cli("plan", "--out", str(cli.root / "plan.json"), str(cli.manifests))
    assert plan.code == 0, plan.text
    writes = cli.writes()
    result = cli("state", "upgrade")
    assert result.code == 0, result.text
    assert f"Upgraded {cli.state} to state format 3" in result.out
    assert f"{cli.state}.backup keeps the format 2 version" in result.out
    assert cli.writes() == writes
    upgraded = cli.state.read_bytes()
    doc = json.loads(upgraded)
    assert doc["format_version"] == 3 and doc["serial"] == json.loads(original)["serial"]
    assert _backup(cli).read_bytes() == original
    assert _digests(cli.state, cli.environ) == json.loads(
        (FORMAT_2 / "private-key-sha256.json").read_text())
    applied = cli("apply", str(cli.root / "plan.json"))  # a plan made on format 2
    assert applied.code == 0 and "Saved plan is stale" not in applied.text, applied.text
    assert cli.state.read_bytes() == upgraded
    twice = cli("state", "upgrade")
    assert twice.code == 0 and "already in state format 3" in twice.out


def test_a_saved_plan_made_on_format_2_applies_and_migrates(cli: Cli) -> None:
    (cli.manifests / "keys.yaml").write_text((FORMAT_2 / "manifest.yaml").read_text()
                                             + "  - name: extra\n")
    assert cli("plan", "--out", str(cli.root / "plan.json"), str(cli.manifests)).code == 0
    applied = cli("apply", str(cli.root / "plan.json"))
    assert applied.code == 0, applied.text
    assert "Resources: 1 added" in applied.out
    assert json.loads(cli.state.read_text())["format_version"] == 3


def _store(tmp_path: Path) -> LocalStateStore:
    return LocalStateStore(tmp_path / "s.json", environ=key_env(tmp_path))


def _state_with_a_secret(tmp_path: Path) -> Path:
    store = _store(tmp_path)
    store.load()
    store.record(entry("a", store.seal("a", Secret("secret-a"))))
    store.record(entry("b"))
    store.commit()
    return tmp_path / "s.json"


def _edit(path: Path, change: Any, environ: dict[str, str]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    doc["checksum"] = checksum(doc)
    remac(doc, environ)  # as someone holding the key: past the MAC, to the envelope's binding
    path.write_text(json.dumps(doc, indent=2))


def test_a_secret_moved_to_another_target_does_not_open(tmp_path: Path) -> None:
    """The envelope is bound to the full address: the same name in another target (say a
    state spliced from two) is another key pair, and its secret is refused there."""
    path = _state_with_a_secret(tmp_path)

    def move(doc: dict[str, Any]) -> None:
        doc["targets"]["prod"] = doc["targets"]["default"]
        doc["keypairs"][at("a", "prod")] = doc["keypairs"].pop(at("a"))

    _edit(path, move, key_env(tmp_path))
    store = _store(tmp_path)
    state = store.load()
    assert state.entry("a").target == "prod"
    sealed = state.entry("a").private_key
    assert sealed is not None
    with pytest.raises(StateCorruptError, match="another target"):
        store.unseal("a", sealed)


def test_an_entry_whose_target_has_no_connection_is_refused(tmp_path: Path) -> None:
    path = _state_with_a_secret(tmp_path)
    _edit(path, lambda d: d.update(targets={}), key_env(tmp_path))
    with pytest.raises(StateCorruptError, match="is not under targets"):
        _store(tmp_path).load()


def test_a_format_3_file_rewritten_as_format_2_is_refused(tmp_path: Path) -> None:
    """Downgrade: the layout of format 2 (entries by name, no targets), its MAC recomputed
    by someone holding the key; the v3 envelope gives it away, as v2 ones do in format 1."""
    path = _state_with_a_secret(tmp_path)

    def downgrade(doc: dict[str, Any]) -> None:
        doc.pop("targets")
        doc["format_version"] = 2
        doc["keypairs"] = {k.split(".")[1].split("[")[0]: v for k, v in doc["keypairs"].items()}

    _edit(path, downgrade, key_env(tmp_path))
    before = path.read_bytes()
    with pytest.raises(StateTamperedError, match=r"format 2 but the private key of 'a' was "
                                                 r"sealed by format 3"):
        _store(tmp_path).load()
    assert path.read_bytes() == before
