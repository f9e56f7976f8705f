"""Delivery of private keys to where they are used, through the real CLI against the emulator:
a key delivered to CSMS reads back as the same private key through the official SDK; an
age file decrypts with the ``age`` tool to the same key; drift of a sink is planned and
repaired; a new key is a new version with the old one as SYSPREVIOUS; a sink that fails leaves
the key pair recorded and the delivery pending until the next apply."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from reconciler.api.csms import CsmsClient
from reconciler.emulator.server import Emulator
from reconciler.model import Secret, SinkReading
from tests.clihelp import Cli
from tests.test_emulator_kms import make_key, settings

csms_sdk = pytest.importorskip("huaweicloudsdkcsms.v1", reason="the test extra's SDK")
core_credentials = pytest.importorskip("huaweicloudsdkcore.auth.credentials")
needs_age = pytest.mark.skipif(shutil.which("age") is None or shutil.which("age-keygen") is None,
                               reason="the age tool (Debian package age; .ci/run installs it)")


def _sdk(emulator: Emulator) -> object:
    creds = core_credentials.BasicCredentials(emulator.ak, emulator.sk, emulator.project_id)
    return (csms_sdk.CsmsClient.new_builder().with_credentials(creds)
            .with_endpoints([emulator.endpoint]).build())


def _sdk_value(emulator: Emulator, secret: str, stage: str = "SYSCURRENT") -> str:
    client = _sdk(emulator)
    at = client.show_secret_stage(csms_sdk.ShowSecretStageRequest(  # type: ignore[attr-defined]
        secret_name=secret, stage_name=stage))
    version = client.show_secret_version(  # type: ignore[attr-defined]
        csms_sdk.ShowSecretVersionRequest(secret_name=secret, version_id=at.stage.version_id))
    return str(version.version.secret_string)


def _identity(root: Path) -> tuple[Path, str]:
    path = root / "identity.txt"
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    public = next(line.split(": ", 1)[1] for line in path.read_text().splitlines()
                  if line.startswith("# public key:"))
    return path, public


def _private(cli: Cli, name: str = "web") -> str:
    result = cli("output", name, "--private-key")
    assert result.code == 0, result.text
    assert "PRIVATE KEY-----" in result.out
    return result.out


def _manifest(sinks: str) -> str:
    return f"keypairs:\n  - name: web\n    generate: ed25519\n    deliver:\n{sinks}"


def _deliveries(cli: Cli) -> list[dict[str, object]]:
    doc = json.loads(cli.state.read_text())
    entry = next(iter(doc["keypairs"].values()))
    return list(entry.get("deliveries", []))


def test_csms_delivery_reads_back_through_the_sdk_and_rotation_keeps_the_previous(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write(_manifest("      - csms: {secret: web-ssh}\n"))
    m = str(cli.manifests)
    planned = cli("plan", m)
    assert planned.code == 0, planned.text
    assert 'delivery.web["csms:web-ssh"] will be created' in planned.out
    assert "Plan: 2 to add" in planned.out
    applied = cli("apply", "--auto-approve", m)
    assert applied.code == 0, applied.text
    first = _private(cli)
    assert _sdk_value(emulator, "web-ssh") == first
    records = _deliveries(cli)
    assert [r["sink"] for r in records] == ["csms:web-ssh"]
    assert records[0]["version_id"] == "v1" and str(records[0]["fingerprint"]).startswith(
        "SHA256:")
    assert first not in cli.state.read_text()  # the state records the delivery, not the key
    again = cli("plan", "--detailed-exitcode", m)
    assert again.code == 0, again.text
    assert "No changes" in again.out

    # a new key pair: a new version; the old key stays as SYSPREVIOUS
    rotated = cli("apply", "--auto-approve", "--replace", "web", m)
    assert rotated.code == 0, rotated.text
    assert 'delivery.web["csms:web-ssh"] will be updated in-place' in rotated.out
    assert "its key pair gets a new key" in rotated.out
    second = _private(cli)
    assert second != first
    assert _sdk_value(emulator, "web-ssh") == second
    assert _sdk_value(emulator, "web-ssh", "SYSPREVIOUS") == first
    assert [r["version_id"] for r in _deliveries(cli)] == ["v2"]
    assert cli("plan", "--detailed-exitcode", m).code == 0


def test_csms_drift_is_planned_and_repaired(emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="v2.1")
    cli.write(_manifest("      - csms: {secret: web-ssh}\n"))
    m = str(cli.manifests)
    assert cli("apply", "--auto-approve", m).code == 0
    key = _private(cli)
    ours = CsmsClient(settings(emulator))
    try:
        ours.put_version("web-ssh", Secret("not the key"))
        drifted = cli("plan", "--detailed-exitcode", m)
        assert drifted.code == 2, drifted.text
        assert 'delivery.web["csms:web-ssh"] has changed' in drifted.out
        assert 'version_id = "v1" -> "v2"' in drifted.out
        assert "no longer holds what reconciler delivered" in drifted.out
        assert cli("apply", "--auto-approve", m).code == 0
        assert _sdk_value(emulator, "web-ssh") == key
        assert cli("plan", "--detailed-exitcode", m).code == 0

        assert ours.delete_secret("web-ssh")
        gone = cli("plan", "--detailed-exitcode", m)
        assert gone.code == 2, gone.text
        assert 'delivery.web["csms:web-ssh"] has been deleted' in gone.out
        assert "deleted outside reconciler" in gone.out
        assert cli("apply", "--auto-approve", m).code == 0
        assert _sdk_value(emulator, "web-ssh") == key
    finally:
        ours.close()
    assert cli("plan", "--detailed-exitcode", m).code == 0


def test_target_of_a_key_pair_takes_its_deliveries_along(emulator: Emulator,
                                                         tmp_path: Path) -> None:
    """``--replace web --target web``: the new key is delivered in the same apply, so the
    secret never lags behind the key pair (Terraform's -target would leave it for later)."""
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write(_manifest("      - csms: {secret: web-ssh}\n")
              + "  - name: other\n    generate: ed25519\n"
              + "    deliver:\n      - csms: {secret: other-ssh}\n")
    m = str(cli.manifests)
    assert cli("apply", "--auto-approve", m).code == 0
    other = _sdk_value(emulator, "other-ssh")
    planned = cli("plan", "--replace", "web", "--target", "web", m)
    assert planned.code == 0, planned.text
    assert 'delivery.web["csms:web-ssh"] will be updated in-place' in planned.out
    assert "delivery.other" not in planned.out and "keypair.other" not in planned.out
    assert "Plan: 1 to add, 1 to change, 1 to destroy." in planned.out
    applied = cli("apply", "--auto-approve", "--replace", "web", "--target", "web", m)
    assert applied.code == 0, applied.text
    assert _sdk_value(emulator, "web-ssh") == _private(cli)
    assert _sdk_value(emulator, "other-ssh") == other
    assert cli("plan", "--detailed-exitcode", m).code == 0


def _sdk_sealed_by(emulator: Emulator, secret: str, version_id: str) -> str:
    version = _sdk(emulator).show_secret_version(  # type: ignore[attr-defined]
        csms_sdk.ShowSecretVersionRequest(secret_name=secret, version_id=version_id))
    return str(version.version.version_metadata.kms_key_id)


def test_a_changed_kms_key_is_planned_and_the_key_sealed_again_under_it(
        emulator: Emulator, tmp_path: Path) -> None:
    first, second = make_key(emulator, "csms-first"), make_key(emulator, "csms-second")
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write(_manifest(f"      - csms: {{secret: web-ssh, kms_key_id: {first}}}\n"))
    m = str(cli.manifests)
    assert cli("apply", "--auto-approve", m).code == 0
    key = _private(cli)
    assert _sdk_sealed_by(emulator, "web-ssh", "v1") == first
    assert _deliveries(cli)[0]["kms_key_id"] == first

    cli.write(_manifest(f"      - csms: {{secret: web-ssh, kms_key_id: {second}}}\n"))
    planned = cli("plan", "--detailed-exitcode", m)
    assert planned.code == 2, planned.text
    assert 'delivery.web["csms:web-ssh"] will be updated in-place' in planned.out
    assert f"its KMS key changed ({first} -> {second})" in planned.out
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in planned.out
    applied = cli("apply", "--auto-approve", m)
    assert applied.code == 0, applied.text
    assert _sdk_value(emulator, "web-ssh") == key  # the same key, a new version under it
    assert _sdk_sealed_by(emulator, "web-ssh", "v2") == second
    assert _sdk_sealed_by(emulator, "web-ssh", "v1") == first  # the one before stays
    records = _deliveries(cli)
    assert (records[0]["version_id"], records[0]["kms_key_id"]) == ("v2", second)
    assert cli("plan", "--detailed-exitcode", m).code == 0

    cli.write(_manifest("      - csms: {secret: web-ssh}\n"))  # back to csms/default
    back = cli("plan", "--detailed-exitcode", m)
    assert back.code == 2 and f"({second} -> csms/default)" in back.out, back.text
    assert cli("apply", "--auto-approve", m).code == 0
    assert _sdk_sealed_by(emulator, "web-ssh", "v3") not in (first, second)
    assert "kms_key_id" not in _deliveries(cli)[0]
    assert cli("plan", "--detailed-exitcode", m).code == 0


@needs_age
def test_age_file_decrypts_with_age_and_drift_is_repaired(emulator: Emulator,
                                                          tmp_path: Path) -> None:
    identity, recipient = _identity(tmp_path)
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write(_manifest(f"      - age_file: {{path: keys/web.age, recipients: [{recipient}]}}\n"))
    m = str(cli.manifests)
    assert cli("apply", "--auto-approve", m).code == 0
    written = cli.manifests / "keys" / "web.age"  # relative to the manifest's directory
    assert stat.S_IMODE(written.stat().st_mode) == 0o644
    opened = subprocess.run(["age", "-d", "-i", str(identity), str(written)],
                            capture_output=True, text=True, check=True)
    assert opened.stdout == _private(cli)
    assert cli("plan", "--detailed-exitcode", m).code == 0

    written.unlink()
    gone = cli("plan", "--detailed-exitcode", m)
    assert gone.code == 2 and 'delivery.web["age_file:keys/web.age"] has been deleted' \
        in gone.out, gone.text
    assert cli("apply", "--auto-approve", m).code == 0
    written.unlink()  # another age file in its place (a non-age file is never replaced)
    subprocess.run(["age", "-r", recipient, "-o", str(written)], input=b"someone else's file",
                   check=True, capture_output=True)
    changed = cli("plan", "--detailed-exitcode", m)
    assert changed.code == 2 and "has changed" in changed.out, changed.text
    assert cli("apply", "--auto-approve", m).code == 0
    opened = subprocess.run(["age", "-d", "-i", str(identity), str(written)],
                            capture_output=True, text=True, check=True)
    assert opened.stdout == _private(cli)

    # never through a symbolic link: refused, the link and its target left alone
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("untouched")
    written.unlink()
    os.symlink(elsewhere, written)
    linked = cli("apply", "--auto-approve", m)
    assert linked.code == 1, linked.text
    # the plan fails on it before apply changes anything
    assert f'delivery.web["age_file:keys/web.age"] cannot be delivered: {written} is a ' \
        "symbolic link" in linked.err and "nothing was changed" in linked.err, linked.err
    assert elsewhere.read_text() == "untouched" and written.is_symlink()
    written.unlink()
    written.mkdir()  # a directory, a FIFO: the same
    for odd in ("directory", "FIFO"):
        planned = cli("plan", m)
        assert planned.code == 1 and f"is not a regular file (a {odd})" in planned.err, \
            planned.text
        written.rmdir() if odd == "directory" else written.unlink()
        if odd == "directory":
            os.mkfifo(written)
    assert cli("apply", "--auto-approve", m).code == 0


@needs_age
def test_a_failed_sink_keeps_the_key_pair_and_the_next_apply_delivers(
        emulator: Emulator, tmp_path: Path) -> None:
    _, recipient = _identity(tmp_path)
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write(_manifest("      - csms: {secret: web-ssh}\n"
                        f"      - age_file: {{path: keys/web.age, recipients: [{recipient}]}}\n"))
    m = str(cli.manifests)
    # CSMS refuses to create the secret (for certain: a 403), once the plan has read it
    emulator.set_faults(error_rate=1.0, statuses=(403,), operations=["csms_create_secret"])
    failed = cli("apply", "--auto-approve", m)
    assert failed.code == 1, failed.text
    assert "the delivery is pending and the next apply delivers it again" in failed.err
    key = _private(cli)  # the key pair is recorded
    assert (cli.manifests / "keys" / "web.age").exists()  # the other sink was delivered
    assert [r["sink"] for r in _deliveries(cli)] == ["age_file:keys/web.age"]
    emulator.set_faults()
    pending = cli("plan", "--detailed-exitcode", m)
    assert pending.code == 2
    assert 'delivery.web["csms:web-ssh"] will be created' in pending.out, pending.out
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in pending.out
    assert cli("apply", "--auto-approve", m).code == 0
    assert _sdk_value(emulator, "web-ssh") == key
    assert sorted(str(r["sink"]) for r in _deliveries(cli)) == [
        "age_file:keys/web.age", "csms:web-ssh"]

    # a sink dropped from the manifest: the secret's deletion is scheduled, the file removed
    cli.write("keypairs:\n  - name: web\n    generate: ed25519\n")
    dropped = cli("apply", "--auto-approve", m)
    assert dropped.code == 0, dropped.text
    assert "Resources: 0 added, 0 changed, 2 destroyed." in dropped.out
    assert not (cli.manifests / "keys" / "web.age").exists()
    ours = CsmsClient(settings(emulator))
    try:
        info = ours.get_secret("web-ssh")
        assert info is not None and info.state == "PENDING_DELETE"
    finally:
        ours.close()
    assert _deliveries(cli) == []  # the entry is written as one without deliveries


def test_an_age_file_reading_says_why_apply_would_refuse_it(tmp_path: Path) -> None:
    """Whatever ``agefile.write`` would refuse, ``agefile.read`` says so first (the plan fails
    on it); an age file of any size, or an empty file, may be replaced."""
    from reconciler import agefile

    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    refusal = agefile.read(str(blocker / "web.age")).refusal
    assert refusal is not None and "cannot be read (Not a directory)" in refusal
    long_name = agefile.read(str(tmp_path / ("x" * 300))).refusal
    assert long_name is not None and "File name too long" in long_name
    big = tmp_path / "big"
    big.write_bytes(b"not an age file\n" + b"x" * (agefile.MAX_READ + 10))
    assert agefile.read(str(big)).refusal is not None
    big.write_bytes(b"age-encryption.org/v1\n" + b"x" * (agefile.MAX_READ + 10))
    assert agefile.read(str(big)).refusal is None
    armored = tmp_path / "armored"
    armored.write_bytes(b"-----BEGIN AGE ENCRYPTED FILE-----\r\nYWdl\r\n")
    assert agefile.read(str(armored)).refusal is None
    (tmp_path / "empty").write_bytes(b"")
    assert agefile.read(str(tmp_path / "empty")).refusal is None
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    dangling = agefile.read(str(tmp_path / "dangling")).refusal
    assert dangling is not None and "symbolic link" in dangling
    assert agefile.read(str(tmp_path / "absent")) == SinkReading(exists=False)


def test_manifest_errors_name_the_sink(emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write("keypairs:\n"
              "  - name: alice\n"
              "    public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKwIjAMYc6uhQM4LzeXgHN/O/kez"
              "k2t2iqOT16iKzSCu\n"
              "    deliver:\n      - csms: {secret: alice}\n"
              "  - name: web\n    generate: ed25519\n    deliver:\n"
              "      - csms: {secret: shared}\n"
              "      - age_file: {path: k.age, recipients: "
              "[age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq]}\n"
              "  - name: ci\n    generate: ed25519\n    deliver:\n"
              "      - csms: {secret: shared}\n"
              "  - name: db\n    generate: ed25519\n    deliver:\n"
              "      - csms: {secret: shared}\n")
    result = cli("plan", str(cli.manifests))
    assert result.code == 1
    assert "Traceback" not in result.text
    assert 'key pair "alice": deliver needs a private key that reconciler holds' in result.err
    assert "is not a valid age recipient" in result.err
    assert '"csms:shared" is delivered already by key pair "ci"' in result.err


@needs_age
def test_an_age_file_never_replaces_a_file_that_is_not_an_age_file(emulator: Emulator,
                                                                   tmp_path: Path) -> None:
    """A path that names the state's key file, the state itself or a manifest (by mistake,
    or through ``..``) is refused: replacing it would lose every private key in state."""
    _, recipient = _identity(tmp_path)
    cli = Cli(emulator, tmp_path, api="kps")
    key_file = tmp_path / "state.key"
    m = str(cli.manifests)
    cli.write(_manifest(f"      - age_file: {{path: keys.yaml, recipients: [{recipient}]}}\n"))
    named = cli("validate", m)  # a manifest's name is refused before anything runs
    assert named.code == 1 and '"keys.yaml" is named as a manifest' in named.err, named.text
    cli.write(_manifest(f"      - age_file: {{path: ../state.key, recipients: [{recipient}]}}\n"))
    before = {key_file: key_file.read_bytes(), cli.manifests / "keys.yaml":
              (cli.manifests / "keys.yaml").read_bytes()}
    result = cli("apply", "--auto-approve", m)
    assert result.code == 1, result.text
    # the plan fails on it, before the key pair is made
    assert result.err.count("is not an age file") == 1 and "nothing was changed" in \
        result.err, result.err
    assert "Traceback" not in result.text
    assert all(path.read_bytes() == data for path, data in before.items())
    assert emulator.keypair_count() == 0
    cli.write("keypairs:\n  - name: web\n    generate: ed25519\n")
    assert cli("apply", "--auto-approve", m).code == 0
    assert "PRIVATE KEY-----" in _private(cli)  # the key file still opens the state
    state = cli.state.read_bytes()
    cli.write(_manifest("      - age_file: {path: ../reconciler.state.json, "
                        f"recipients: [{recipient}]}}\n"))
    again = cli("apply", "--auto-approve", m)
    assert again.code == 1 and "is where the state" in again.err, again.text
    assert json.loads(cli.state.read_bytes())["lineage"] == json.loads(state)["lineage"]
    assert "PRIVATE KEY-----" in _private(cli)


@needs_age
@pytest.mark.parametrize("name", ["reconciler.state.json", "reconciler.state.json.backup",
                                  "reconciler.state.json.journal"])
def test_a_first_apply_never_delivers_over_the_state_it_is_about_to_write(
        emulator: Emulator, tmp_path: Path, name: str) -> None:
    """On a first apply the state does not exist yet, so no "not an age file" check can catch
    it: the state's own names are refused as such, and the state stays a state."""
    _, recipient = _identity(tmp_path)
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write(_manifest(f"      - age_file: {{path: ../{name}, recipients: [{recipient}]}}\n"))
    result = cli("apply", "--auto-approve", str(cli.manifests))
    assert result.code == 1, result.text
    # the plan fails on it: nothing is made, nothing written
    assert "is where the state" in result.err and "never delivered there" in result.err
    assert "nothing was changed" in result.err and emulator.keypair_count() == 0
    assert not cli.state.exists()
    cli.write("keypairs:\n  - name: web\n    generate: ed25519\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    # and so on every later plan, where the journal and the backup come and go
    cli.write(_manifest(f"      - age_file: {{path: ../{name}, recipients: [{recipient}]}}\n"))
    again = cli("plan", str(cli.manifests))
    assert again.code == 1 and "is where the state" in again.err, again.text
    assert "PRIVATE KEY-----" in _private(cli)  # the state loads and holds the key
    assert cli.state.read_bytes().startswith(b"{")


def test_an_age_secret_key_given_as_a_recipient_is_never_shown(emulator: Emulator,
                                                               tmp_path: Path) -> None:
    secret = "AGE-SECRET-KEY-1A3E6KYSNJK9KYAUWZ6NR4QJ5NKZ3WQJG4RZG5NYQ2L5V7L0RZ3TQ2MYUW8"
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write(_manifest(f"      - age_file: {{path: k.age, recipients: [{secret}]}}\n"))
    result = cli("validate", str(cli.manifests))
    assert result.code == 1 and "this is an age secret key" in result.err, result.text
    assert secret[15:25] not in result.text


def test_two_spellings_of_one_age_file_through_a_link_are_one_file(emulator: Emulator,
                                                                   tmp_path: Path) -> None:
    import pyrage

    recipient = str(pyrage.x25519.Identity.generate().to_public())
    cli = Cli(emulator, tmp_path, api="kps")
    (cli.manifests / "keys").mkdir(parents=True, exist_ok=True)
    (cli.manifests / "k2").symlink_to("keys")
    cli.write("keypairs:\n" + "".join(
        f"  - name: {n}\n    generate: ed25519\n    deliver:\n"
        f"      - age_file: {{path: {d}/x.age, recipients: [{recipient}]}}\n"
        for n, d in (("alias-a", "keys"), ("alias-b", "k2"))))
    result = cli("validate", str(cli.manifests))
    assert result.code == 1 and "is delivered already by key pair" in result.err, result.text


def test_a_csms_secret_that_reconciler_did_not_create_is_not_taken_over(
        emulator: Emulator, tmp_path: Path) -> None:
    """A sink naming a secret that exists already with another value (a typo, a name in use)
    neither gets a new current version nor, once the sink is dropped, its deletion
    scheduled: its consumers keep their value."""
    ours = CsmsClient(settings(emulator))
    try:
        ours.create_secret("db-password", Secret("the database password"))
        cli = Cli(emulator, tmp_path, api="kps")
        cli.write(_manifest("      - csms: {secret: db-password}\n"))
        m = str(cli.manifests)
        result = cli("apply", "--auto-approve", m)
        assert result.code == 1, result.text
        assert "CSMS secret db-password exists already" in result.err, result.err
        assert "the database password" not in result.text and "Traceback" not in result.text
        current = ours.current("db-password")
        assert current is not None and current.value.reveal() == "the database password"
        assert [v.version_id for v in ours.list_versions("db-password")] == ["v1"]
        assert _deliveries(cli) == [] and "PRIVATE KEY-----" in _private(cli)
        cli.write("keypairs:\n  - name: web\n    generate: ed25519\n")
        dropped = cli("apply", "--auto-approve", m)
        assert dropped.code == 0, dropped.text
        info = ours.get_secret("db-password")
        assert info is not None and info.state == "ENABLED"
    finally:
        ours.close()


def test_an_age_file_write_removes_what_a_killed_writer_left(tmp_path: Path) -> None:
    """kill -9 between the temporary's creation and its rename leaves ``.NAME.PID.RAND.tmp``;
    the next write removes it (its process is gone) so it is not committed beside the file,
    and leaves a live writer's temporary and every other file alone."""
    import sys

    from reconciler import agefile

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / f".deploy.age.{dead.pid}.0badf00d.tmp"
    live = tmp_path / f".deploy.age.{os.getpid()}.0123abcd.tmp"
    other = tmp_path / f".other.age.{dead.pid}.0badf00d.tmp"
    for path in (left, live, other):
        path.write_bytes(b"age-encryption.org/v1\n")
    agefile.write(str(tmp_path / "deploy.age"), b"age-encryption.org/v1\nnew\n", shown="sink")
    assert (tmp_path / "deploy.age").read_bytes() == b"age-encryption.org/v1\nnew\n"
    assert not left.exists() and live.exists() and other.exists()


def test_a_key_pair_held_without_its_private_key_is_a_plan_error_not_a_failed_delivery(
        emulator: Emulator, tmp_path: Path) -> None:
    import pyrage

    from reconciler.model import Encryption, KeyProtection

    recipient = str(pyrage.x25519.Identity.generate().to_public())
    cli = Cli(emulator, tmp_path, api="kps")
    cli.client().create_keypair(
        name="web", key_protection=KeyProtection(encryption=Encryption(type="default")))
    kept = "    key_protection: {encryption: {type: default}}\n"
    cli.write("keypairs:\n  - name: web\n" + kept)
    assert cli("import", "web", str(cli.manifests)).code == 0  # the key stays in the cloud
    cli.write("keypairs:\n  - name: web\n" + kept + "    deliver:\n"
              f"      - age_file: {{path: web.age, recipients: [{recipient}]}}\n")
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 1, plan.text
    assert "cannot be delivered: state holds keypair.web without its private key" in plan.err
    assert "--export-private-keys" in plan.err and not (cli.manifests / "web.age").exists()


def test_an_age_file_path_with_a_control_character_is_refused_by_validate(
        emulator: Emulator, tmp_path: Path) -> None:
    import pyrage

    recipient = str(pyrage.x25519.Identity.generate().to_public())
    cli = Cli(emulator, tmp_path, api="kps")
    forged = "k\\nApply complete! Resources: 1 added.\\n.age"
    cli.write(_manifest(f'      - age_file: {{path: "{forged}", recipients: [{recipient}]}}\n'))
    result = cli("validate", str(cli.manifests))
    assert result.code == 1 and "holds a control character" in result.err, result.text
    assert "\nApply complete!" not in result.text
