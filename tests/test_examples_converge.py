"""Every example converges: apply, then plan shows `No changes.`, and a second apply makes no
API write (counted by the emulator)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.emulator.server import Emulator
from tests.clihelp import Cli

EXAMPLES = Path(__file__).parent.parent / "examples"
DIRS = [EXAMPLES, EXAMPLES / "v2", EXAMPLES / "kps", EXAMPLES / "gitops" / "keypairs"]


@pytest.mark.parametrize("directory", DIRS, ids=lambda p: str(p.relative_to(EXAMPLES.parent)))
def test_example_converges(emulator: Emulator, tmp_path: Path, directory: Path) -> None:
    from reconciler.manifest import load_manifests

    manifest = load_manifests([directory], cwd=directory)
    api = manifest.provider.api.value if manifest.provider and manifest.provider.api else "v2.1"
    cli = Cli(emulator, tmp_path, api=api)
    applied = cli("apply", "--auto-approve", str(directory))
    assert applied.code == 0, applied.text
    assert "Apply complete!" in applied.out
    again = cli("plan", "--detailed-exitcode", str(directory))
    assert again.code == 0, again.text
    assert "No changes. Your infrastructure matches the configuration." in again.out
    writes = cli.writes()
    second = cli("apply", "--auto-approve", str(directory))
    assert second.code == 0, second.text
    assert cli.writes() == writes
