"""`reconciler state ...` and `force-unlock` through cli.main, with real files."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest
from test_state_support import at, entry, key_env, snapshot

from reconciler.cli import main
from reconciler.env import Env
from reconciler.keys import fingerprints, generate_keypair
from reconciler.model import Encryption, EntryStatus, KeyProtection, KeySource
from reconciler.state.local import LocalStateStore


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


def run(tmp_path: Path, *argv: str, environ: dict[str, str] | None = None) -> Run:
    out, err = io.StringIO(), io.StringIO()
    env = Env(stdin=io.StringIO(), stdout=out, stderr=err,
              environ=key_env(tmp_path) if environ is None else environ, cwd=tmp_path)
    code = main(list(argv), env)
    return Run(code, out.getvalue(), err.getvalue())


def private_lines(pem: str) -> list[str]:
    """The base64 body lines of a private key: none may ever appear in output."""
    return [line for line in pem.splitlines() if line and "PRIVATE KEY" not in line]


@pytest.fixture()
def state(tmp_path: Path) -> str:
    """A state in tmp_path/reconciler.state.json; returns the held private key (PEM)."""
    generated = generate_keypair("ed25519")
    md5, sha = fingerprints(generated.public_key)
    store = LocalStateStore(tmp_path / "reconciler.state.json", environ=key_env(tmp_path))
    store.load()
    store.record(entry("deploy", store.seal("deploy", generated.private_key),
                       public_key=generated.public_key, fingerprint_md5=md5,
                       fingerprint_sha256=sha))
    store.record(entry("alice", source=KeySource.IMPORT, algorithm=None))
    store.record(entry("vault", source=KeySource.CLOUD, algorithm=None,
                       key_protection=KeyProtection(Encryption("kms", kms_key_name="ops"))))
    store.record(entry("lost", source=KeySource.CLOUD, algorithm=None,
                       status=EntryStatus.TAINTED))
    store.commit()
    return generated.private_key.reveal()


def assert_no_secret(result: Run, pem: str) -> None:
    for line in private_lines(pem):
        assert line not in result.out and line not in result.err


def test_state_list_is_sorted_names(tmp_path: Path, state: str) -> None:
    result = run(tmp_path, "state", "list")
    assert result.code == 0 and result.out == "alice\ndeploy\nlost\nvault\n"


def test_no_state_is_an_error_naming_where_it_looked_and_writes_nothing(
        tmp_path: Path) -> None:
    for argv in (["state", "list"], ["state", "pull"], ["state", "show", "x"],
                 ["output", "x"]):
        result = run(tmp_path, *argv, "--state", "none.json")
        assert (result.code, result.out) == (1, ""), argv
        assert f"no state found: {tmp_path / 'none.json'} does not exist (chosen with " \
            "--state)" in result.err, result.err
    default = run(tmp_path, "state", "pull")
    assert default.code == 1 and default.out == ""
    assert f"{tmp_path / 'reconciler.state.json'} does not exist (the default local state" \
        in default.err and "no backend block in the manifests of the working directory" \
        in default.err
    assert [p.name for p in tmp_path.iterdir()] == ["state.key"]


def test_state_show_has_every_field_and_no_secret(tmp_path: Path, state: str) -> None:
    result = run(tmp_path, "state", "show", "deploy")
    assert result.code == 0
    assert result.out.startswith('# keypair.deploy:\nresource "keypair" "deploy" {\n')
    for field in ("api", "source", "algorithm", "public_key", "fingerprint_md5",
                  "fingerprint_sha256", "type", "user_id", "scope", "description",
                  "key_protection", "created", "spec_digest", "status", "prevent_destroy"):
        assert f"    {field} " in result.out
    assert "private_key        = (sensitive value)  # held in state, encrypted" in result.out
    assert_no_secret(result, state)
    vault = run(tmp_path, "state", "show", "vault").out
    assert '"kms_key_name": "ops"' in vault and "the cloud keeps it" in vault


def test_state_show_of_an_unknown_name_says_what_to_do(tmp_path: Path, state: str) -> None:
    result = run(tmp_path, "state", "show", "nope")
    assert result.code == 1 and "'nope'" in result.err and "state list" in result.err


def test_state_rm_forgets_locally_and_says_so(tmp_path: Path, state: str) -> None:
    result = run(tmp_path, "state", "rm", "deploy")
    assert result.code == 0
    assert "Removed keypair.deploy" in result.out
    assert "never touches it" in result.err and "held the private key" in result.err
    assert_no_secret(result, state)
    assert run(tmp_path, "state", "list").out == "alice\nlost\nvault\n"
    doc = json.loads((tmp_path / "reconciler.state.json").read_text())
    assert doc["serial"] == 2 and at("deploy") not in doc["keypairs"]
    assert at("deploy") in json.loads((tmp_path / "reconciler.state.json.backup").read_text())[
        "keypairs"]
    before = snapshot(tmp_path)
    again = run(tmp_path, "state", "rm", "deploy")
    assert again.code == 1 and "'deploy'" in again.err
    assert snapshot(tmp_path) == before


def test_state_rm_waits_for_or_fails_on_the_lock(tmp_path: Path, state: str) -> None:
    store = LocalStateStore(tmp_path / "reconciler.state.json", environ={})
    before = snapshot(tmp_path)
    with store.lock(operation="apply", timeout=0) as info:
        result = run(tmp_path, "state", "rm", "alice", "--lock-timeout", "100ms")
        assert result.code == 1
        assert "Error: Error acquiring the state lock" in result.err and info["id"] in result.err
    assert snapshot(tmp_path) == before
    bad = run(tmp_path, "state", "rm", "alice", "--lock-timeout", "soon")
    assert bad.code == 1 and "--lock-timeout: 'soon' is not a duration" in bad.err


def test_state_pull_prints_the_document_with_sealed_secrets(tmp_path: Path, state: str) -> None:
    result = run(tmp_path, "state", "pull")
    assert result.code == 0
    assert result.out == (tmp_path / "reconciler.state.json").read_text()
    assert json.loads(result.out)["keypairs"][at("deploy")]["private_key"].startswith("v3:")
    assert_no_secret(result, state)


def test_state_push_refuses_older_or_foreign_unless_forced(tmp_path: Path, state: str) -> None:
    old = tmp_path / "old.json"
    old.write_text(run(tmp_path, "state", "pull").out)
    assert run(tmp_path, "state", "rm", "lost").code == 0
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text(old.read_text()[:-20])
    before = snapshot(tmp_path)
    refused = run(tmp_path, "state", "push", "old.json")
    assert refused.code == 1 and "serial 1 is not newer" in refused.err
    assert run(tmp_path, "state", "push", "corrupt.json").code == 1
    assert snapshot(tmp_path) == before
    forced = run(tmp_path, "state", "push", "old.json", "--force")
    assert forced.code == 0 and "Pushed" in forced.out
    # numbered above the state it replaced, so that it is not taken for a rollback
    assert "old.json (serial 1) is written as serial 3" in forced.err
    assert json.loads((tmp_path / "reconciler.state.json").read_text())["serial"] == 3
    listed = run(tmp_path, "state", "list")
    assert "lost" in listed.out and "Warning" not in listed.err
    assert run(tmp_path, "state", "rm", "lost").code == 0


def test_force_unlock_removes_only_the_matching_lock(tmp_path: Path, state: str) -> None:
    lock = tmp_path / "reconciler.state.json.lock"
    lock.write_text(json.dumps({"id": "1234-abcd", "operation": "apply"}))
    wrong = run(tmp_path, "force-unlock", "9999")
    assert wrong.code == 1 and "1234-abcd" in wrong.err and lock.exists()
    right = run(tmp_path, "force-unlock", "1234-abcd")
    assert right.code == 0 and "successfully unlocked" in right.out and not lock.exists()
    assert run(tmp_path, "force-unlock", "1234-abcd").code == 1


@pytest.mark.parametrize("damage", ["truncate", "edit", "newer"])
def test_corrupt_state_is_refused_by_every_command_and_left_alone(
    tmp_path: Path, state: str, damage: str
) -> None:
    path = tmp_path / "reconciler.state.json"
    text = path.read_text()
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "edit":
        path.write_text(text.replace('keypair.alice[', 'keypair.alicf['))
    else:
        assert '"format_version":3,' in text
        path.write_text(text.replace('"format_version":3,', '"format_version":9,'))
    before = snapshot(tmp_path)
    for argv in (["state", "list"], ["state", "show", "deploy"], ["state", "rm", "alice"],
                 ["state", "pull"], ["output", "deploy"], ["output", "deploy", "--private-key"]):
        result = run(tmp_path, *argv)
        assert result.code == 1, argv
        assert ("backup" in result.err or "upgrade reconciler" in result.err), result.err
        assert_no_secret(result, state)
    assert snapshot(tmp_path) == before


def test_files_holding_secrets_are_0600(tmp_path: Path, state: str) -> None:
    run(tmp_path, "state", "rm", "alice")
    for name in ("reconciler.state.json", "reconciler.state.json.backup"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
