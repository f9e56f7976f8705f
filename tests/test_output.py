"""`reconciler output`: public facts always, the private key only when asked, files 0600."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from test_state_commands import assert_no_secret, run, state
from test_state_support import snapshot

__all__ = ["state"]  # the fixture, shared


def test_output_shows_public_facts_without_the_private_key(tmp_path: Path, state: str) -> None:
    result = run(tmp_path, "output", "deploy")
    assert result.code == 0
    lines = dict(line.split(":", 1) for line in result.out.splitlines())
    assert lines["public_key"].strip().startswith("ssh-ed25519 ")
    assert lines["fingerprint_md5"].strip().count(":") == 15
    assert lines["fingerprint_sha256"].strip().startswith("SHA256:")
    assert lines["source"].strip() == "generate" and lines["status"].strip() == "ready"
    assert "(sensitive value)" in lines["private_key"]
    assert_no_secret(result, state)


def test_output_json_is_machine_readable_and_secret_free(tmp_path: Path, state: str) -> None:
    result = run(tmp_path, "output", "deploy", "--json")
    doc = json.loads(result.out)
    assert doc["private_key_in_state"] is True and "private_key" not in doc
    assert doc["fingerprint_sha256"].startswith("SHA256:")
    assert_no_secret(result, state)
    with_key = json.loads(run(tmp_path, "output", "deploy", "--json", "--private-key").out)
    assert with_key["private_key"] == state


def test_private_key_to_stdout_only_when_asked(tmp_path: Path, state: str) -> None:
    result = run(tmp_path, "output", "deploy", "--private-key")
    assert result.code == 0 and result.out == state and result.err == ""


def test_private_key_to_a_new_0600_file_never_overwritten_without_force(
    tmp_path: Path, state: str
) -> None:
    target = tmp_path / "id_deploy"
    previous = os.umask(0o000)  # the mode must not depend on the umask
    try:
        result = run(tmp_path, "output", "deploy", "--private-key", "--out", "id_deploy")
    finally:
        os.umask(previous)
    assert result.code == 0 and target.read_text() == state
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert_no_secret(result, state)
    target.write_text("precious")
    target.chmod(0o644)
    refused = run(tmp_path, "output", "deploy", "--private-key", "--out", "id_deploy")
    assert refused.code == 1 and "--force" in refused.err and "id_deploy" in refused.err
    assert target.read_text() == "precious"
    forced = run(tmp_path, "output", "deploy", "--private-key", "--out", "id_deploy", "--force")
    assert forced.code == 0 and target.read_text() == state
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_out_refuses_to_follow_a_symlink(tmp_path: Path, state: str) -> None:
    (tmp_path / "elsewhere").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    result = run(tmp_path, "output", "deploy", "--private-key", "--out", "link")
    assert result.code == 1 and (tmp_path / "elsewhere").read_text() == "x"


def test_without_private_key_out_writes_the_public_key(tmp_path: Path, state: str) -> None:
    result = run(tmp_path, "output", "deploy", "--out", "deploy.pub")
    assert result.code == 0
    assert (tmp_path / "deploy.pub").read_text().startswith("ssh-ed25519 ")
    assert_no_secret(result, state)


def test_key_pairs_without_a_private_key_say_why(tmp_path: Path, state: str) -> None:
    cases = {"alice": "stays with its owner", "vault": "use the cloud's export",
             "lost": "never arrived"}
    for name, why in cases.items():
        result = run(tmp_path, "output", name, "--private-key", "--out", f"{name}.key")
        assert result.code == 1 and why in result.err and f"keypair.{name}" in result.err
        assert not (tmp_path / f"{name}.key").exists()


def test_wrong_key_shows_no_secret_and_changes_nothing(tmp_path: Path, state: str) -> None:
    before = snapshot(tmp_path)
    result = run(tmp_path, "output", "deploy", "--private-key",
                 environ={"RECONCILER_PASSPHRASE": "guess"})
    assert result.code == 1 and "key id" in result.err and result.out == ""
    assert "guess" not in result.err
    no_key = run(tmp_path, "output", "deploy", "--private-key", environ={"HOME": str(tmp_path)})
    assert no_key.code == 1 and "RECONCILER_KEY_FILE" in no_key.err
    assert not (tmp_path / ".config").exists()  # no useless new key was made
    assert snapshot(tmp_path) == before


def test_unknown_name(tmp_path: Path, state: str) -> None:
    result = run(tmp_path, "output", "nope")
    assert result.code == 1 and "'nope'" in result.err
