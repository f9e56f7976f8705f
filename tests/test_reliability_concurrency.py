"""Two ``reconciler apply`` processes at once on the same state (DESIGN section 9): one
proceeds; the other fails on the lock, or with ``--lock-timeout`` waits and then finds
nothing to do. Nothing is corrupted and nothing is created twice."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconciler.emulator.server import Emulator
from tests.clihelp import Cli
from tests.reliability_support import (
    assert_clean,
    assert_private_keys_match_cloud,
    cli_argv,
    keypairs_body,
    subprocess_env,
    tallied,
)

COUNT = 30
NO_CHANGES = "No changes. Your infrastructure matches the configuration."


def _two_applies(cli: Cli, *extra: str) -> list[subprocess.CompletedProcess[str]]:
    """The second starts once the first has printed its first line (it holds the lock and
    has ~2 s of creates ahead of it), so the two surely overlap."""
    argv = cli_argv(cli, "apply", "--auto-approve", "--parallelism", "2", *extra,
                    str(cli.manifests))

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(argv, env=subprocess_env(cli), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    first = start()
    assert first.stdout is not None
    head = first.stdout.readline()
    procs = [first, start()]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        out = (head + out) if proc is first else out
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    for result in done:
        assert_clean(result.stdout + result.stderr)
    return done


def _check_once(cli: Cli, made: dict[str, int]) -> None:
    names = [f"k{i:03d}" for i in range(COUNT)]
    assert sorted(made) == names and set(made.values()) == {1}, made
    assert cli.emulator.keypair_count() == COUNT
    listed = cli("state", "list")
    assert listed.code == 0 and listed.out.split() == names, listed.text
    plan = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert plan.code == 0 and NO_CHANGES in plan.out, plan.text
    assert_private_keys_match_cloud(cli, names)
    assert not cli.state.with_name(cli.state.name + ".lock").exists()


@pytest.fixture()
def cli(emulator: Emulator, tmp_path: Path) -> Cli:
    # 30 creates, 2 at a time: ~2.2 s of apply, longer than a loaded machine takes to start the
    # second process (at 30 ms the first could finish before the second was running)
    emulator.set_faults(latency_ms=150)
    c = Cli(emulator, tmp_path)
    c.write(keypairs_body(COUNT))
    return c


def test_second_apply_fails_on_the_lock(cli: Cli) -> None:
    with tallied(cli.emulator) as tally:
        results = _two_applies(cli)
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 1], [r.stdout + r.stderr for r in results]
    winner, loser = sorted(results, key=lambda r: r.returncode)
    assert f"Apply complete! Resources: {COUNT} added" in winner.stdout
    assert "Error acquiring the state lock" in loser.stderr
    assert "Operation: apply" in loser.stderr and "force-unlock" in loser.stderr
    assert "Creating..." not in loser.stdout
    _check_once(cli, tally.made())


def test_second_apply_waits_for_the_lock_then_finds_nothing_to_do(cli: Cli) -> None:
    with tallied(cli.emulator) as tally:
        results = _two_applies(cli, "--lock-timeout", "60s")
    assert [r.returncode for r in results] == [0, 0], [r.stdout + r.stderr for r in results]
    outs = sorted((r.stdout for r in results), key=lambda o: NO_CHANGES in o)
    assert f"Apply complete! Resources: {COUNT} added" in outs[0]
    assert NO_CHANGES in outs[1] and "Creating..." not in outs[1]
    _check_once(cli, tally.made())
