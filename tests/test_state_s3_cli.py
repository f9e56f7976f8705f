"""Remote state through the CLI: plan/apply/destroy with --backend, the manifest's backend
block, two applies at once, force-unlock, and migrating state with `state pull`/`state push`."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from test_state_s3_support import CREDENTIALS, Bucket, new_bucket
from test_state_support import at

from reconciler.emulator.server import Emulator
from tests.clihelp import Cli, Result

KEYS = """keypairs:
  - name: web
  - name: ci
    generate: ed25519
"""
KEY = "keypairs/prod.json"


def remote_cli(emulator: Emulator, root: Path, bucket: Bucket) -> Cli:
    return Cli(emulator, root, extra_env=dict(CREDENTIALS),
               state_options=("--backend", bucket.url(KEY), "--backend-endpoint",
                              bucket.endpoint))


@pytest.fixture()
def bucket() -> Bucket:
    return new_bucket()


def test_plan_apply_destroy_with_remote_state(
    emulator: Emulator, tmp_path: Path, bucket: Bucket
) -> None:
    cli = remote_cli(emulator, tmp_path, bucket)
    cli.write(KEYS)
    applied = cli("apply", "--auto-approve", str(cli.manifests))
    assert applied.code == 0, applied.text
    assert "Apply complete! Resources: 2 added, 0 changed, 0 destroyed." in applied.out
    assert bucket.listing() == [KEY]  # journal folded in, lock released
    assert not cli.state.exists()
    doc = json.loads(bucket.read(KEY))
    assert sorted(doc["keypairs"]) == [at("ci"), at("web")] and doc["serial"] == 1
    again = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert again.code == 0 and "No changes." in again.out, again.text
    assert cli("state", "list").out == "ci\nweb\n"
    shown = cli("output", "ci", "--private-key")
    assert shown.code == 0 and "PRIVATE KEY" in shown.out, shown.text
    destroyed = cli("destroy", "--auto-approve", str(cli.manifests))
    assert destroyed.code == 0, destroyed.text
    assert "2 destroyed" in destroyed.out
    assert json.loads(bucket.read(KEY))["keypairs"] == {}
    assert json.loads(bucket.read(f"{KEY}.backup"))["serial"] == 1


def test_backend_block_in_the_manifest(emulator: Emulator, tmp_path: Path,
                                       bucket: Bucket) -> None:
    cli = Cli(emulator, tmp_path, extra_env={**CREDENTIALS,
                                             "RECONCILER_BACKEND_ENDPOINT": bucket.endpoint},
              state_options=("--lock-timeout", "0s"))  # no --state: the block decides
    cli.write(f"backend:\n  s3: {{bucket: {bucket.name}, key: {KEY}}}\n" + KEYS)
    applied = cli("apply", "--auto-approve", str(cli.manifests))
    assert applied.code == 0, applied.text
    assert sorted(json.loads(bucket.read(KEY))["keypairs"]) == [at("ci"), at("web")]
    assert not (tmp_path / "reconciler.state.json").exists()
    # Commands that take no manifests read the block from the working directory's manifests.
    cli.root = cli.manifests
    listed = cli("state", "list")
    assert listed.code == 0 and listed.out.split() == ["ci", "web"], listed.text
    shown = cli("output", "ci", "--private-key")
    assert shown.code == 0 and "PRIVATE KEY-----" in shown.out, shown.text
    assert not (cli.manifests / "reconciler.state.json").exists()


def _apply(cli: Cli, results: list[Result], *options: str) -> None:
    results.append(cli("apply", "--auto-approve", str(cli.manifests), *options))


def test_two_applies_at_once_one_waits_nothing_lost(
    emulator: Emulator, tmp_path: Path, bucket: Bucket
) -> None:
    first = remote_cli(emulator, tmp_path / "one", bucket)
    second = remote_cli(emulator, tmp_path / "two", bucket)
    second.environ["RECONCILER_KEY_FILE"] = first.environ["RECONCILER_KEY_FILE"]
    for cli in (first, second):
        cli.write(KEYS + "  - name: extra\n    generate: ed25519\n")
    emulator.set_faults(latency_ms=30)  # the applies overlap: the second must wait
    results: list[Result] = []
    threads = [threading.Thread(target=_apply, args=(c, results, "--lock-timeout", "60s"))
               for c in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.code for r in results] == [0, 0], [r.text for r in results]
    state = json.loads(bucket.read(KEY))
    assert sorted(state["keypairs"]) == [at("ci"), at("extra"), at("web")]
    assert state["serial"] == 1  # the second apply found nothing left to do
    assert sorted(r.out.count("Creation complete") for r in results) == [0, 3]
    assert any("No changes." in r.out for r in results)
    assert first.writes() == 3  # each key pair created once
    assert bucket.listing() == [KEY]


def test_a_held_lock_fails_fast_then_force_unlock(
    emulator: Emulator, tmp_path: Path, bucket: Bucket
) -> None:
    cli = remote_cli(emulator, tmp_path, bucket)
    cli.write(KEYS)
    holder = bucket.store({"USER": "ci-runner"}, key=KEY)
    with holder.lock(operation="apply", timeout=0) as info:
        refused = cli("apply", "--auto-approve", str(cli.manifests))
    assert refused.code == 1
    assert "Error acquiring the state lock" in refused.err and info["id"] in refused.err
    # A lock left behind (its process was killed): only its id removes it.
    bucket.write(f"{KEY}.lock", json.dumps(info).encode())
    assert cli("plan", str(cli.manifests)).code == 1
    wrong = cli("force-unlock", "not-the-id")
    assert wrong.code == 1 and "does not match" in wrong.err
    unlocked = cli("force-unlock", info["id"])
    assert unlocked.code == 0 and "successfully unlocked" in unlocked.out
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0


def test_migrate_local_state_to_s3_and_back(
    emulator: Emulator, tmp_path: Path, bucket: Bucket
) -> None:
    local = Cli(emulator, tmp_path)
    local.write(KEYS)
    assert local("apply", "--auto-approve", str(local.manifests)).code == 0
    remote = remote_cli(emulator, tmp_path, bucket)
    pushed = remote("state", "push", str(local.state))
    assert pushed.code == 0 and "serial 1" in pushed.out, pushed.text
    assert bucket.read(KEY) == local.state.read_bytes()
    again = remote("plan", "--detailed-exitcode", str(remote.manifests))
    assert again.code == 0, again.text
    refused = remote("state", "push", str(local.state))  # not newer than the remote
    assert refused.code == 1 and "not newer" in refused.err
    # Changes made remotely come back with pull, and push to the local file.
    assert remote("state", "rm", "web").code == 0
    pulled = remote("state", "pull")
    assert json.loads(pulled.out)["serial"] == 2 and "PRIVATE KEY" not in pulled.out
    (tmp_path / "pulled.json").write_text(pulled.out)
    back = local("state", "push", str(tmp_path / "pulled.json"))
    assert back.code == 0, back.text
    assert local("state", "list").out == "ci\n"


def test_a_saved_plan_says_where_its_state_is_before_anything_is_sent(
        emulator: Emulator, tmp_path: Path, bucket: Bucket) -> None:
    cli = Cli(emulator, tmp_path, extra_env=dict(CREDENTIALS),
              state_options=("--lock-timeout", "0s"))  # no --state: the block decides
    cli.write(f"backend:\n  s3: {{bucket: {bucket.name}, key: {KEY}, "
              f"endpoint: '{bucket.endpoint}/'}}\n" + KEYS)
    for extra in ((), (str(cli.manifests),)):  # without, then with, the manifests
        planned = cli("plan", "--out", str(tmp_path / "p.json"), str(cli.manifests))
        assert planned.code == 0, planned.text
        applied = cli("apply", str(tmp_path / "p.json"), *extra)
        assert applied.code == 0, applied.text
        line = applied.out.splitlines()[2]
        assert line.startswith(f"Saved plan state: s3://{bucket.name}/{KEY} at "
                               f"{bucket.endpoint.rstrip('/')}"), applied.out
        assert line.endswith("(as the saved plan says).")
