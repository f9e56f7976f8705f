"""``reconciler demo``: both tours run end to end against their own emulator, converge, and
print no secret."""

from __future__ import annotations

import io
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


@pytest.mark.parametrize("example", ["default", "multi-target"])
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
