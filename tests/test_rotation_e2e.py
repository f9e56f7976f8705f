"""Rotation without a gap, end to end through the CLI against the emulator's servers.

A bound key pair replaced (``--replace``, ``rotate_after``) is made again as ``NAME-gN``, its
servers rebound to it with the old private key, and the old key pair deleted only once no
server holds it. The emulator records, per server, every key it accepted and when; the
tests read those timelines and state's private keys (the current generation's and, while a
rotation is under way, the previous one's) and check that no server is ever left accepting
only a key that state does not hold.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler import keys
from reconciler.emulator.server import Emulator
from reconciler.model import Secret
from reconciler.state.local import LocalStateStore
from tests.clihelp import Cli
from tests.reliability_support import assert_clean, cli_argv, subprocess_env
from tests.test_bindings_e2e import key_names, server
from tests.test_emulator_kms import admin

NO_CHANGES = "No changes. Your infrastructure matches the configuration."


@pytest.fixture()
def cli(emulator: Emulator, tmp_path: Path) -> Cli:
    admin(emulator, "POST", "binding", {"task_seconds": 0.02, "failure_rate": 0.0})
    return Cli(emulator, tmp_path, api="kps")


def manifest(names: list[str], extra: str = "") -> str:
    return ("keypairs:\n  - name: web\n    generate: ed25519\n"
            f"    servers: [{', '.join(names)}]\n{extra}")


def timelines(emulator: Emulator) -> dict[str, list[dict[str, Any]]]:
    listed = admin(emulator, "GET", f"projects/{emulator.project_id}/servers")["servers"]
    out = {}
    for s in listed:
        got = admin(emulator, "GET", f"projects/{emulator.project_id}/servers/{s['id']}/keys")
        out[s["name"]] = got["timeline"]
    return out


def held_keys(cli: Cli) -> set[str]:
    """The SHA256 fingerprints of every private key state holds, deposed ones included."""
    store = LocalStateStore(cli.state, environ=cli.environ)
    if not store.exists():
        return set()
    state = store.load()
    out = set()
    for entry in state.keypairs.values():
        for sealed in (entry.private_key,
                       entry.deposed.private_key if entry.deposed is not None else None):
            if sealed is None:
                continue
            secret = store.unseal(entry.name, sealed, target=entry.target)
            out.add(keys.fingerprints(keys.public_key_of(secret))[1])
    return out


def accepted(event: dict[str, Any]) -> str | None:
    public = event.get("public_key")
    return keys.fingerprints(public)[1] if public else None


def cloud_names(cli: Cli) -> set[str]:
    client = cli.client()
    try:
        return set(client.list_keypairs().keypairs)
    finally:
        client.close()


def test_replace_of_a_bound_key_pair_rotates_it_without_a_gap(cli: Cli,
                                                              emulator: Emulator) -> None:
    for name in ("web-1", "web-2"):
        server(emulator, name)
    server(emulator, "web-3", status="stopped")
    cli.write(manifest(["web-1", "web-2", "web-3"]))
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    first = held_keys(cli)
    plan = cli("plan", "--replace", "web", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert "+/- create replacement and then destroy" in plan.out
    assert '~ cloud_name  = "web" -> "web-g1"' in plan.out
    assert "# deposed.web will be destroyed" in plan.out
    assert "rotation: rebind server 'web-1' from 'web' to 'web-g1' (running" in plan.out
    assert "rotation: rebind server 'web-3' from 'web' to 'web-g1' (stopped" in plan.out
    assert "Plan: 1 to add, 3 to change, 1 to destroy." in plan.out
    assert "Warning" not in plan.out
    rotated = cli("apply", "--auto-approve", "--replace", "web", str(cli.manifests))
    assert rotated.code == 0, rotated.text
    assert "Apply complete! Resources: 1 added, 3 changed, 1 destroyed." in rotated.out
    assert key_names(emulator) == dict.fromkeys(("web-1", "web-2", "web-3"), "web-g1")
    assert cloud_names(cli) == {"web-g1"}
    now = held_keys(cli)
    assert len(now) == 1 and now != first  # the old private key left with its key pair
    # output and the servers agree: the key state gives out is the one they accept
    shown = cli("output", "web", "--private-key")
    assert shown.code == 0, shown.text
    ours = keys.fingerprints(keys.public_key_of(Secret(shown.out)))[1]
    assert now == {ours}
    for name, events in timelines(emulator).items():
        keys_seen = [accepted(e) for e in events]
        assert keys_seen[0] is None  # made without a key
        assert keys_seen[1:] == [next(iter(first)), ours], name  # old, then new: no gap
    again = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert again.code == 0, again.text
    shown_state = cli("state", "show", "web")
    assert shown_state.code == 0 and "web-g1" in shown_state.out, shown_state.text
    # and again: generation 2, and web-g1 goes
    assert cli("apply", "--auto-approve", "--replace", "web", str(cli.manifests)).code == 0
    assert key_names(emulator) == dict.fromkeys(("web-1", "web-2", "web-3"), "web-g2")
    assert cloud_names(cli) == {"web-g2"}
    assert "PRIVATE KEY" not in rotated.text + plan.text


def test_a_failed_rebind_keeps_both_generations_and_the_next_apply_finishes(
        cli: Cli, emulator: Emulator) -> None:
    for name in ("web-1", "web-2", "web-3"):
        server(emulator, name)
    cli.write(manifest(["web-1", "web-2", "web-3"]))
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    old = held_keys(cli)
    admin(emulator, "POST", "binding", {"failure_rate": 1.0})
    failed = cli("apply", "--auto-approve", "--replace", "web", str(cli.manifests))
    assert failed.code == 1, failed.text
    assert "failed" in failed.text
    assert "kept: 3 server(s) still hold 'web'" in failed.text
    assert key_names(emulator) == dict.fromkeys(("web-1", "web-2", "web-3"), "web")
    assert cloud_names(cli) == {"web", "web-g1"}  # both kept
    held = held_keys(cli)
    assert old < held and len(held) == 2  # the old private key, and the new one
    admin(emulator, "POST", "binding", {"failure_rate": 0.0})
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert "Plan: 0 to add, 3 to change, 1 to destroy." in plan.out
    assert "left by a rotation that did not finish" in plan.out
    done = cli("apply", "--auto-approve", str(cli.manifests))
    assert done.code == 0, done.text
    assert key_names(emulator) == dict.fromkeys(("web-1", "web-2", "web-3"), "web-g1")
    assert cloud_names(cli) == {"web-g1"}
    assert len(held_keys(cli)) == 1
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


def test_a_server_no_manifest_rebinds_stops_the_rotation_before_anything_is_sent(
        cli: Cli, emulator: Emulator) -> None:
    server(emulator, "web-1")
    cli.write(manifest(["web-1"]))
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    server(emulator, "other", key_name="web")
    refused = cli("plan", "--replace", "web", str(cli.manifests))
    assert refused.code == 1, refused.text
    assert ("keypair.web cannot finish its rotation: 1 server(s) still hold its previous "
            "generation 'web' and no manifest rebinds them: other (") in refused.err
    allowed = cli("plan", "--replace", "web", "--allow-bound-delete", str(cli.manifests))
    assert allowed.code == 0, allowed.text
    assert "Warning: deposed.web: the previous generation of keypair.web" in allowed.out


def test_a_name_too_long_to_rotate_is_refused_at_validate(cli: Cli) -> None:
    long = "w" * 61
    cli.write(f"keypairs:\n  - name: {long}\n    servers: [web-1]\n")
    checked = cli("validate", str(cli.manifests))
    assert checked.code == 1, checked.text
    assert "is 61 characters long; one with servers may have at most 60" in checked.err
    assert "keys.yaml:4:" in checked.err  # the name's line


def _deposed_envelope(cli: Cli) -> str:
    (entry,) = json.loads(cli.state.read_text())["keypairs"].values()
    return str(entry["deposed"]["private_key"])


def test_a_rotation_under_way_survives_state_rekey_and_is_shown_without_its_envelope(
        emulator: Emulator, tmp_path: Path) -> None:
    admin(emulator, "POST", "binding", {"task_seconds": 0.02, "failure_rate": 0.0})
    cli = Cli(emulator, tmp_path, api="kps",
              extra_env={"RECONCILER_PASSPHRASE": "correct horse battery staple"})
    del cli.environ["RECONCILER_KEY_FILE"]  # a passphrase: rekey salts it anew
    body = manifest(["web-1", "web-2"])
    cli.write(body)
    for name in ("web-1", "web-2"):
        server(emulator, name)
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    admin(emulator, "POST", "binding", {"failure_rate": 1.0})
    assert cli("apply", "--auto-approve", "--replace", "web", str(cli.manifests)).code == 1
    before = _deposed_envelope(cli)
    held = held_keys(cli)
    assert len(held) == 2
    shown = cli("state", "show", "web")
    assert shown.code == 0, shown.text
    assert '"private_key": "(sensitive value)"' in shown.out and before not in shown.out
    rekeyed = cli("state", "rekey", str(cli.manifests))
    assert rekeyed.code == 0, rekeyed.text
    after = _deposed_envelope(cli)
    assert after != before  # sealed again under the new data key
    assert held_keys(cli) == held
    moved = cli("state", "mv", "web", 'keypair.web["other"]')
    assert moved.code == 1 and "is being rotated" in moved.err, moved.text
    removed = cli("state", "rm", "web")
    assert removed.code == 1 and "is being rotated" in removed.err, removed.text
    assert held_keys(cli) == held  # nothing was removed
    admin(emulator, "POST", "binding", {"failure_rate": 0.0})
    done = cli("apply", "--auto-approve", str(cli.manifests))  # the old key authorises
    assert done.code == 0, done.text
    assert key_names(emulator) == {"web-1": "web-g1", "web-2": "web-g1"}
    assert cloud_names(cli) == {"web-g1"}


# -- 30 bound servers rotated under faults and kill -9 --------------------------------------


def _run(cli: Cli, *argv: str, kill_after: float | None) -> int | None:
    """``reconciler apply`` as a child process, killed after ``kill_after`` seconds (None:
    to its end). Its exit status, or None when it was killed."""
    proc = subprocess.Popen(cli_argv(cli, "apply", "--auto-approve", *argv, "--parallelism",
                                     "6", str(cli.manifests)),
                            env=subprocess_env(cli), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        if kill_after is None:
            _, err = proc.communicate(timeout=120)
            assert_clean(err)
            return proc.returncode
        time.sleep(kill_after)
        if proc.poll() is not None:
            return proc.returncode
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        return None
    finally:
        if proc.stderr is not None:
            proc.stderr.close()


def _no_server_without_a_held_key(cli: Cli, emulator: Emulator, ever: set[str]) -> bool:
    """What every server accepts now is a key state holds (current or deposed). Whether a
    rotation is under way (state holds two keys, and servers are on both or on the old)."""
    held = held_keys(cli)
    ever |= held
    for name, events in timelines(emulator).items():
        now = accepted(events[-1])
        assert now in held, f"{name} accepts only {now}, which state does not hold"
    return len(held) > 1


def test_thirty_bound_servers_rotated_under_faults_and_kill_9_never_lose_a_managed_key(
        cli: Cli, emulator: Emulator) -> None:
    names = [f"web-{i:02d}" for i in range(30)]
    for name in names:
        server(emulator, name, status="stopped" if name.endswith("7") else "running")
    cli.write(manifest(names))
    assert _run(cli, kill_after=None) == 0
    ever: set[str] = set()
    _no_server_without_a_held_key(cli, emulator, ever)
    rng = random.Random(20261203)
    admin(emulator, "POST", "binding", {"task_seconds": 0.03, "failure_rate": 0.1,
                                        "seed": 17})
    emulator.set_faults(error_rate=0.06, drop_rate=0.02, lost_response_rate=0.02,
                        retry_after=0.01, latency_ms=5)
    rotations = midway = 0
    for _ in range(6):  # rotate, killed somewhere in the middle, then let it finish
        code = _run(cli, "--replace", "web", kill_after=rng.uniform(0.2, 2.5))
        rotations += 1
        midway += _no_server_without_a_held_key(cli, emulator, ever)
        for _attempt in range(8):  # the next applies finish the rotation, under faults
            code = _run(cli, kill_after=None if _attempt % 2 else rng.uniform(0.3, 1.5))
            _no_server_without_a_held_key(cli, emulator, ever)
            if code == 0:
                break
    # the kills (and the failed tasks) left rotations under way: the checks above saw both
    # generations in state with servers on the old one, not only finished rotations
    assert midway >= 2, midway
    emulator.set_faults()
    admin(emulator, "POST", "binding", {"failure_rate": 0.0})
    assert _run(cli, kill_after=None) == 0
    final = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert final.code == 0, final.text
    assert NO_CHANGES in final.out
    (current,) = held_keys(cli)
    cloud = cloud_names(cli)
    assert len(cloud) == 1 and next(iter(cloud)).startswith("web-g")
    for name, events in timelines(emulator).items():
        seen = [accepted(e) for e in events]
        assert seen[-1] == current, name
        # from its first bind on, every key it ever accepted was one state held
        assert all(k is not None and k in ever for k in seen[1:]), name
    assert rotations == 6
