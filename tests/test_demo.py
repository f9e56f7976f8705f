"""``reconciler demo``: every tour runs end to end against their own emulator, converge, and
print no secret."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.env import Env


def _demo(tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Env(stdin=io.StringIO(), stdout=out, stderr=err,
              environ={"HOME": str(tmp_path), "NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
              cwd=tmp_path)
    code = main(["demo", *argv], env=env)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("example", ["default", "multi-target", "bindings"])
def test_the_demo_tours_converge(tmp_path: Path, example: str) -> None:
    code, out, err = _demo(tmp_path, "--example", example)
    assert code == 0, out + err
    assert "No changes. Your infrastructure matches the configuration." in out
    assert "PRIVATE KEY" not in out + err and "Traceback" not in out + err
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_the_multi_target_tour_reaches_three_targets_one_through_an_agency(
        tmp_path: Path) -> None:
    code, out, err = _demo(tmp_path, "--example", "multi-target")
    assert code == 0, out + err
    assert "Plan: 6 to add, 0 to change, 0 to destroy." in out
    assert 'keypair.partner-sync["partner"]: Creation complete' in out
    assert ("Credentials: agency reconciler-deploy in account partner-corp (assumed with "
            "environment") in err
    assert "in 3 targets: prod-cn-north-4 (KPS v3 at" in out


def _section(out: str, heading: str) -> dict[str, str]:
    """The servers listed under ``heading`` (name -> what it accepts)."""
    lines = out.split(heading, 1)[1].splitlines()[1:]
    found = {}
    for line in lines:
        m = re.match(r"^  (web-\d) \([0-9a-f-]{36}\): (.+)$", line)
        if m is None:
            if line.startswith("      timeline:"):
                continue
            break
        found[m.group(1)] = m.group(2)
    return found


def test_the_bindings_tour_binds_three_servers_in_one_batch_rotates_and_unbinds(
        tmp_path: Path) -> None:
    code, out, err = _demo(tmp_path, "--example", "bindings")
    assert code == 0, out + err
    assert "Plan: 4 to add, 0 to change, 0 to destroy." in out
    assert "KPS requests: 1 batch-associate, 0 associate, 0 disassociate" in out
    bound = _section(out, "What each server accepts now")
    assert set(bound) == {"web-1", "web-2", "web-3"}
    assert len(set(bound.values())) == 1 and next(iter(bound.values())).startswith(
        "web-fleet SHA256:")
    assert "made → no key;  REPLACE → web-fleet SHA256:" in out
    before = _section(out, "What each server accepts before the rotation:")
    after = _section(out, "What each server accepts after the rotation:")
    assert before == bound
    # --replace of a bound key pair rotates it without a gap: the new generation is made as
    # web-fleet-g1, each server is rebound to it, then the old key pair is deleted.
    assert "Plan: 1 to add, 3 to change, 1 to destroy." in out
    assert "+/- create replacement and then destroy" in out
    assert set(after) == {"web-1", "web-2", "web-3"}
    assert len(set(after.values())) == 1
    new = next(iter(after.values()))
    assert new.startswith("web-fleet-g1 SHA256:") and new.split()[1] not in {
        v.split()[1] for v in before.values()}
    for server in ("web-1", "web-2", "web-3"):
        assert f"{server}: no gap: " in out
    assert "Rotated with no gap: every server accepts the new key pair" in out
    assert "deposed.web-fleet: Destruction complete" in out
    assert "Resources: 1 added, 3 changed, 1 destroyed." in out
    assert "KPS requests: 0 batch-associate, 0 associate, 3 disassociate" in out
    assert _section(out, "What each server accepts after the unbind:") == dict.fromkeys(
        ("web-1", "web-2", "web-3"), "no key (password login)")
    final = out.split("━━ 5/5", 1)[1]
    assert "No changes. Your infrastructure matches the configuration." in final
    assert "PRIVATE KEY" not in out + err and "Traceback" not in out + err
