"""``kill -9`` of a real ``reconciler apply`` process at random moments (DESIGN section 9).

The emulator runs in the test process (127.0.0.1, port 0, 5 ms per request, 40 through kps) so
that kills land mid-apply; the apply is ``python -m reconciler apply --auto-approve`` in a
child process. After each kill: the state loads; every key generated here whose public half
reached the cloud has its private key in state; the next apply converges to "No changes."
Through v2.1 (one create a request) and kps (the key pairs generated here ten at a time through
batch import, whose pending entries are fsynced together before the request).
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.emulator.server import Emulator
from tests.clihelp import Cli
from tests.reliability_support import (
    assert_clean,
    assert_private_keys_match_cloud,
    cli_argv,
    keypairs_body,
    soak,
    subprocess_env,
    tallied,
)

COUNT = 20
TRIALS = 24
NO_CHANGES = "No changes. Your infrastructure matches the configuration."
# Once the apply is under way, how long after it the kill lands: after the refresh line
# (v2.1, twenty creates), or after the first ``Creating...`` line (kps: the ten generated
# here go in one batch import, so the creates are few; each request is slower there, so that
# the apply lasts long enough, on a quiet machine or a loaded one, for kills to land in it).
AFTER_START = {"v2.1": (0.0, 0.08), "kps": (0.0, 0.15)}
START_LINE = {"v2.1": "", "kps": "Creating..."}
LATENCY_MS = {"v2.1": 5, "kps": 40}


@dataclass
class Landing:
    """Where a kill landed: how many key pairs the cloud held, and the state, at that moment."""

    in_cloud: int
    finished: bool


def _kill_apply(cli: Cli, *, delay: float, after: str | None) -> Landing:
    """Kill the apply ``delay`` seconds after its start, or, with ``after``, after the refresh
    line and then the first line containing ``after``."""
    proc = subprocess.Popen(
        cli_argv(cli, "apply", "--auto-approve", "--parallelism", "4", str(cli.manifests)),
        env=subprocess_env(cli), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    try:
        if after is not None:
            line = proc.stdout.readline()  # the refresh is done: the apply is about to start
            while after not in line and line:
                line = proc.stdout.readline()
        time.sleep(delay)
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.stdout.close()
    return Landing(in_cloud=cli.emulator.keypair_count(), finished=finished)


def _check_after_kill(cli: Cli, names: list[str]) -> None:
    listed = cli("state", "list")
    killed_before_any_write = listed.code == 1 and "no state found" in listed.err
    assert listed.code == 0 or killed_before_any_write, listed.text
    in_state = set(listed.out.split())
    for name in sorted(in_state):  # whatever an interrupted apply left, it can be shown
        shown = cli("state", "show", name)
        assert_clean(shown.text)
        assert shown.code == 0, shown.text
        if 'status             = "pending"' in shown.out and '"cloud"' in shown.out:
            assert "an apply was interrupted while the cloud created it" in shown.out
    cloud = set(cli.client().list_keypairs().keypairs)
    generated_here = [n for n in names if int(n[-3:]) % 2 == 1]
    reached = [n for n in generated_here if n in cloud]
    assert set(reached) <= in_state, f"generated here, in the cloud, not in state: {reached}"
    assert_private_keys_match_cloud(cli, reached)


def _converge(cli: Cli, names: list[str]) -> None:
    m = str(cli.manifests)
    applied = cli("apply", "--auto-approve", m)
    assert_clean(applied.text)
    assert applied.code == 0, applied.text
    plan = cli("plan", "--detailed-exitcode", m)
    assert plan.code == 0 and NO_CHANGES in plan.out, plan.text
    assert sorted(cli.client().list_keypairs().keypairs) == names
    assert_private_keys_match_cloud(cli, names)  # cloud-generated ones too: none is lost


def _trials(emulator: Emulator, tmp_path: Path, *, trials: int, seed: int,
            api: str = "v2.1") -> list[Landing]:
    rng = random.Random(seed)
    names = [f"k{i:03d}" for i in range(COUNT)]
    landings = []
    for trial in range(trials):
        emulator.reset()
        emulator.set_faults(latency_ms=LATENCY_MS[api])
        cli = Cli(emulator, tmp_path / f"t{trial}", api=api)
        cli.write(keypairs_body(COUNT))
        with tallied(emulator) as tally:
            # half the kills anywhere in the process's life, half once the apply is under way
            after_first = trial % 2 == 1
            delay = rng.uniform(*AFTER_START[api]) if after_first else rng.uniform(0.0, 0.3)
            landings.append(_kill_apply(cli, delay=delay,
                                        after=START_LINE[api] if after_first else None))
            # what the killed apply sent takes effect now, not in the middle of the next one
            assert emulator.settle()
            emulator.set_faults(latency_ms=0)  # the latency is for the kill to land in an apply
            _check_after_kill(cli, names)
            _converge(cli, names)
        if api == "kps":
            assert tally.statuses[("import", 200)] == 0, "a generated key went one by one"
        made = tally.made()
        for name in names:  # never made twice without the first being deleted
            assert made[name] == 1 + tally.done[("delete", name)], (trial, name)
    return landings


@pytest.mark.parametrize("api", ["v2.1", "kps"])
def test_kill_9_during_apply_loses_no_key_and_the_next_apply_converges(
        emulator: Emulator, tmp_path: Path, api: str) -> None:
    landings = _trials(emulator, tmp_path, trials=TRIALS, seed=20261123, api=api)
    mid_apply = [x for x in landings if 0 < x.in_cloud < COUNT and not x.finished]
    print(f"\n{len(landings)} kills, {len(mid_apply)} mid-apply, "
          f"{sum(x.finished for x in landings)} after it finished")
    assert len(mid_apply) >= 4, landings  # the kills did land inside applies


@soak
def test_soak_kill_9_many_trials(emulator: Emulator, tmp_path: Path) -> None:
    for api in ("v2.1", "kps"):
        _trials(emulator, tmp_path / api, trials=200, seed=1, api=api)
