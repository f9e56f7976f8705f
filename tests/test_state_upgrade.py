"""State format 1 -> 2: a real file written by release 0.1.0 is read, then upgraded in place.

``tests/data/release-0.1.0/`` holds what 0.1.0 (commit 21c2c88) left after applying its
manifest against the emulator: the state file, the key file that sealed it, and the SHA-256
of each private key as 0.1.0 decrypted it (see PROVENANCE.txt there).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from clihelp import Cli

from reconciler.emulator.server import Emulator
from reconciler.state.codec import checksum
from reconciler.state.local import LocalStateStore
from reconciler.state.protocol import Integrity

RELEASE = Path(__file__).parent / "data" / "release-0.1.0"


@pytest.fixture()
def cli(emulator: Emulator, tmp_path: Path) -> Cli:
    shutil.copy(RELEASE / "state.key", tmp_path / "state.key")  # Cli uses this key file
    (tmp_path / "state.key").chmod(0o600)
    shutil.copy(RELEASE / "reconciler.state.json", tmp_path / "reconciler.state.json")
    cli = Cli(emulator, tmp_path)
    shutil.copy(RELEASE / "manifest.yaml", cli.manifests / "keys.yaml")
    # The cloud as 0.1.0 left it: the same key pairs, with the public keys in state.
    client = cli.client()
    for name, kp in json.loads((RELEASE / "reconciler.state.json").read_text())[
            "keypairs"].items():
        client.import_keypair(name=name, public_key=kp["public_key"], type=kp["type"])
    client.close()
    return cli


def _private_key_digests(path: Path, environ: dict[str, str]) -> dict[str, str]:
    store = LocalStateStore(path, environ=environ)
    state = store.load()
    return {name: hashlib.sha256(store.unseal(name, kp.private_key).reveal().encode()).hexdigest()
            for name, kp in sorted(state.keypairs.items()) if kp.private_key is not None}


def test_the_release_file_is_format_1(cli: Cli) -> None:
    doc = json.loads(cli.state.read_text())
    assert doc["format_version"] == 1 and "mac" not in doc
    store = LocalStateStore(cli.state, environ=cli.environ)
    store.load()
    assert store.integrity is Integrity.FORMAT_1


def test_plan_of_a_release_file_has_no_changes_and_says_it_is_unverified(cli: Cli) -> None:
    before = cli.state.read_bytes()
    result = cli("plan", str(cli.manifests))
    assert result.code == 0, result.text
    assert "No changes." in result.out
    assert "is in format 1, which has no integrity check" in result.err
    assert cli.state.read_bytes() == before  # plan never writes, nor upgrades


def test_apply_without_changes_upgrades_the_release_file_in_place(cli: Cli) -> None:
    original = cli.state.read_bytes()
    expected = json.loads((RELEASE / "private-key-sha256.json").read_text())
    assert _private_key_digests(cli.state, cli.environ) == expected  # the new code reads v1
    writes = cli.writes()  # the seeding imports
    result = cli("apply", "--auto-approve", str(cli.manifests))
    assert result.code == 0, result.text
    assert "No changes." in result.out and cli.writes() == writes  # nothing sent to the cloud
    assert "upgraded" in result.err and "state format 2" in result.err
    doc = json.loads(cli.state.read_text())
    old = json.loads(original)
    assert doc["format_version"] == 2 and doc["mac"].startswith("hmac-sha256:")
    assert (doc["lineage"], doc["key"]) == (old["lineage"], old["key"])

    def without_envelopes(keypairs: dict[str, dict[str, object]]) -> dict[str, object]:
        return {n: {**e, "private_key": bool(e["private_key"])} for n, e in keypairs.items()}

    assert without_envelopes(doc["keypairs"]) == without_envelopes(old["keypairs"])
    # every private key sealed again with the format label, so no downgrade can pass
    sealed = [e["private_key"] for e in doc["keypairs"].values() if e["private_key"]]
    assert sealed and all(envelope.startswith("v2:") for envelope in sealed)
    assert all(e["private_key"].startswith("v1:")
               for e in old["keypairs"].values() if e["private_key"])
    assert doc["serial"] == old["serial"] + 1
    backup = cli.state.with_name(cli.state.name + ".backup")
    assert backup.read_bytes() == original  # the format 1 file is kept
    assert _private_key_digests(cli.state, cli.environ) == expected
    store = LocalStateStore(cli.state, environ=cli.environ)
    store.load()
    assert store.integrity is Integrity.VERIFIED
    again = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert again.code == 0 and "No changes." in again.out, again.text
    assert "unverified" not in again.err and "format 1" not in again.err


def test_a_release_file_with_the_wrong_key_is_not_upgraded(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    other.write_text("33" * 32 + "\n")
    other.chmod(0o600)
    cli.environ["RECONCILER_KEY_FILE"] = str(other)
    before = cli.state.read_bytes()
    result = cli("apply", "--auto-approve", str(cli.manifests))
    assert result.code == 1 and "wrong state encryption key" in result.err
    assert "Traceback" not in result.text
    assert cli.state.read_bytes() == before
    assert not cli.state.with_name(cli.state.name + ".backup").exists()


def test_a_downgraded_upgraded_file_is_refused(cli: Cli) -> None:
    """Someone who can write the state turns an upgraded (format 2) file back into format 1,
    as 0.1.0 wrote it, to edit it freely: the envelopes give it away."""
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    doc = json.loads(cli.state.read_text())
    doc.pop("mac")
    doc["format_version"] = 1
    name = next(n for n, e in doc["keypairs"].items() if e["private_key"])
    doc["keypairs"][name]["fingerprint_sha256"] = "SHA256:" + "A" * 43
    doc["checksum"] = checksum(doc)
    cli.state.write_text(json.dumps(doc))
    before = cli.state.read_bytes()
    for argv in (("apply", "--auto-approve", str(cli.manifests)),
                 ("plan", str(cli.manifests)), ("output", name, "--private-key")):
        result = cli(*argv)
        assert result.code == 1, (argv, result.text)
        assert "removing its MAC" in result.err and "Traceback" not in result.text
        assert cli.state.read_bytes() == before
