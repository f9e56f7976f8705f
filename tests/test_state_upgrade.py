"""State format 1 -> 3: a real file written by release 0.1.0 is read, then upgraded in place by
`reconciler state upgrade`, and by nothing else.

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
from test_state_support import as_format_1, at

from reconciler.emulator.server import Emulator
from reconciler.state.codec import checksum
from reconciler.state.local import LocalStateStore
from reconciler.state.protocol import Integrity

K1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKwIjAMYc6uhQM4LzeXgHN/O/kezk2t2iqOT16iKzSCu"
K2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAl3qnSrPmacQJUWaClGKLzgQLRg89u91AQzFOBo2SLP"

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
    return {a.name: hashlib.sha256(store.unseal(a.name, kp.private_key).reveal().encode())
            .hexdigest()
            for a, kp in sorted(state.keypairs.items()) if kp.private_key is not None}


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


REFUSAL = ("is in state format 1 (written by reconciler 0.1.0), which has no integrity check, "
           "so this reconciler never writes it as it is: nothing was changed. Upgrade it once: "
           "check that it holds what you expect (`reconciler state list`, `reconciler plan`), "
           "then run `reconciler state upgrade` with the state key")


def test_commands_that_write_a_release_file_refuse_and_name_state_upgrade(cli: Cli) -> None:
    """Nothing in a format 1 file tells a real 0.1.0 file from a downgraded format 2 one, so
    no write upgrades it on the way: each refuses, naming the file, before anything is sent."""
    original = cli.state.read_bytes()
    name = next(iter(json.loads(original)["keypairs"]))
    pushed = cli.root / "pushed.json"
    pushed.write_bytes(original)
    requests = cli.emulator.counters()["total"]
    for argv in (("apply", "--auto-approve", str(cli.manifests)),
                 ("apply", "--refresh-only", "--auto-approve", str(cli.manifests)),
                 ("destroy", "--auto-approve", str(cli.manifests)),
                 ("import", name, str(cli.manifests)),
                 ("state", "rm", name),
                 ("state", "push", "--force", str(pushed))):
        result = cli(*argv)
        assert result.code == 1, (argv, result.text)
        assert REFUSAL in result.err and "Traceback" not in result.text, (argv, result.err)
        assert (str(cli.state) in result.err) or (str(pushed) in result.err), result.err
        assert cli.state.read_bytes() == original
        assert not cli.state.with_name(cli.state.name + ".backup").exists()
    assert cli.emulator.counters()["total"] == requests  # not even a refresh


def test_reading_a_release_file_works_and_says_how_to_upgrade(cli: Cli) -> None:
    original = cli.state.read_bytes()
    name = next(n for n, e in json.loads(original)["keypairs"].items() if e["private_key"])
    for argv in (("state", "list"), ("state", "show", name), ("output", name),
                 ("output", name, "--private-key")):
        result = cli(*argv)
        assert result.code == 0, (argv, result.text)
        assert "is in format 1, which has no integrity check" in result.err, argv
        assert "run `reconciler state upgrade` with the state key" in result.err, argv
    pulled = cli("state", "pull")
    assert pulled.code == 0 and pulled.out.encode() == original, pulled.text
    assert cli.state.read_bytes() == original


def test_state_upgrade_rewrites_the_release_file_in_place(cli: Cli) -> None:
    original = cli.state.read_bytes()
    expected = json.loads((RELEASE / "private-key-sha256.json").read_text())
    assert _private_key_digests(cli.state, cli.environ) == expected  # the new code reads v1
    writes = cli.writes()  # the seeding imports
    result = cli("state", "upgrade")
    assert result.code == 0, result.text
    assert f"Upgraded {cli.state} to state format 3" in result.out
    assert f"{cli.state}.backup keeps the format 1 version" in result.out
    assert cli.writes() == writes  # nothing sent to the cloud
    upgraded = cli.state.read_bytes()
    doc = json.loads(upgraded)
    old = json.loads(original)
    assert doc["format_version"] == 3 and doc["mac"].startswith("hmac-sha256:")
    assert list(doc["targets"]) == ["default"]  # no connection known yet: no run wrote it
    assert (doc["lineage"], doc["key"]) == (old["lineage"], old["key"])

    def without_envelopes(keypairs: dict[str, dict[str, object]]) -> dict[str, object]:
        return {n: {**e, "private_key": bool(e["private_key"])} for n, e in keypairs.items()}

    assert without_envelopes(doc["keypairs"]) == without_envelopes(
        {at(n): e for n, e in old["keypairs"].items()})  # each entry at its address
    # every private key sealed again, bound to its address, so no downgrade can pass
    sealed = [e["private_key"] for e in doc["keypairs"].values() if e["private_key"]]
    assert sealed and all(envelope.startswith("v3:") for envelope in sealed)
    assert all(e["private_key"].startswith("v1:")
               for e in old["keypairs"].values() if e["private_key"])
    assert doc["serial"] == old["serial"]  # a format change only: saved plans stay fresh
    backup = cli.state.with_name(cli.state.name + ".backup")
    assert backup.read_bytes() == original  # the format 1 file is kept
    assert _private_key_digests(cli.state, cli.environ) == expected
    store = LocalStateStore(cli.state, environ=cli.environ)
    store.load()
    assert store.integrity is Integrity.VERIFIED
    again = cli("apply", "--auto-approve", str(cli.manifests))
    assert again.code == 0 and "No changes." in again.out, again.text
    assert "unverified" not in again.err and "format 1" not in again.err
    assert cli.writes() == writes and cli.state.read_bytes() == upgraded
    twice = cli("state", "upgrade")
    assert twice.code == 0 and "already in state format 3: nothing to upgrade" in twice.out


def test_state_upgrade_needs_the_state_key(cli: Cli) -> None:
    before = cli.state.read_bytes()
    del cli.environ["RECONCILER_KEY_FILE"]
    cli.environ["HOME"] = str(cli.root / "nohome")
    result = cli("state", "upgrade")
    assert result.code == 1 and "Traceback" not in result.text, result.text
    assert "RECONCILER_PASSPHRASE" in result.err
    assert cli.state.read_bytes() == before


def test_a_format_2_state_rewritten_as_format_1_without_envelopes_is_refused(
        emulator: Emulator, tmp_path: Path) -> None:
    """A format 3 state whose entries hold no private key has no envelope to give a
    downgrade away: turned into format 1, edited (an entry dropped, a fingerprint swapped),
    its plain checksum recomputed, it is still never written (and so never authenticated)
    by anything but `state upgrade`."""
    cli = Cli(emulator, tmp_path)
    cli.write(f"keypairs:\n  - name: one\n    public_key: \"{K1}\"\n"
              f"  - name: two\n    public_key: \"{K2}\"\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    doc = json.loads(cli.state.read_text())
    assert doc["format_version"] == 3 and "mac" in doc
    as_format_1(doc)
    doc["keypairs"]["one"]["fingerprint_sha256"] = "SHA256:" + "A" * 43
    doc["keypairs"]["one"]["fingerprint_md5"] = ":".join(["00"] * 16)
    del doc["keypairs"]["two"]
    doc["checksum"] = checksum(doc)
    cli.state.write_text(json.dumps(doc))
    before = cli.state.read_bytes()
    writes = cli.writes()
    for argv in (("state", "rm", "one"), ("apply", "--auto-approve", str(cli.manifests))):
        result = cli(*argv)
        assert result.code == 1, (argv, result.text)
        assert REFUSAL in result.err, result.err
        assert cli.state.read_bytes() == before and cli.writes() == writes


def test_a_release_file_with_the_wrong_key_is_not_upgraded(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    other.write_text("33" * 32 + "\n")
    other.chmod(0o600)
    cli.environ["RECONCILER_KEY_FILE"] = str(other)
    before = cli.state.read_bytes()
    for argv in (("state", "upgrade"), ("apply", "--auto-approve", str(cli.manifests))):
        result = cli(*argv)
        assert result.code == 1 and "wrong state encryption key" in result.err, result.text
        assert "Traceback" not in result.text
        assert cli.state.read_bytes() == before
    assert not cli.state.with_name(cli.state.name + ".backup").exists()


def test_a_downgraded_upgraded_file_is_refused(cli: Cli) -> None:
    """Someone who can write the state turns an upgraded (format 3) file back into format 1,
    as 0.1.0 wrote it, to edit it freely: the envelopes give it away."""
    assert cli("state", "upgrade").code == 0
    doc = json.loads(cli.state.read_text())
    as_format_1(doc)
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
