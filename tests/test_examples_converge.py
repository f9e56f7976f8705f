"""Every example converges: apply, then plan shows `No changes.`, and a second apply makes no
API write (counted by the emulator). ``examples/bindings/`` binds servers by name, so the
emulator runs them first (its admin path), as the console would have."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.emulator.server import Emulator
from tests.clihelp import Cli
from tests.test_emulator_kms import admin

EXAMPLES = Path(__file__).parent.parent / "examples"
DIRS = [EXAMPLES, EXAMPLES / "v2", EXAMPLES / "kps", EXAMPLES / "gitops" / "keypairs"]


@pytest.mark.parametrize("directory", DIRS, ids=lambda p: str(p.relative_to(EXAMPLES.parent)))
def test_example_converges(emulator: Emulator, tmp_path: Path, directory: Path) -> None:
    from reconciler.manifest import load_manifests

    # a copy: an example's age_file sinks write files beside its manifests
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    directory = tmp_path / "examples" / directory.relative_to(EXAMPLES)
    manifest = load_manifests([directory], cwd=directory)
    api = manifest.provider.api.value if manifest.provider and manifest.provider.api else "v2.1"
    cli = Cli(emulator, tmp_path, api=api)
    applied = cli("apply", "--auto-approve", str(directory))
    assert applied.code == 0, applied.text
    assert "Apply complete!" in applied.out
    _converged(cli, directory)


def _converged(cli: Cli, directory: Path) -> None:
    """A plan shows no changes, and a second apply writes nothing."""
    again = cli("plan", "--detailed-exitcode", str(directory))
    assert again.code == 0, again.text
    assert "No changes. Your infrastructure matches the configuration." in again.out
    writes = cli.writes()
    second = cli("apply", "--auto-approve", str(directory))
    assert second.code == 0, second.text
    assert cli.writes() == writes


def test_the_bindings_example_converges_once_its_servers_run(emulator: Emulator,
                                                             tmp_path: Path) -> None:
    directory = EXAMPLES / "bindings"
    admin(emulator, "POST", "binding", {"task_seconds": 0.05})
    for name in ("web-1", "web-2", "web-3"):
        admin(emulator, "POST", f"projects/{emulator.project_id}/servers", {"name": name})
    cli = Cli(emulator, tmp_path, api="kps")
    applied = cli("apply", "--auto-approve", str(directory))
    assert applied.code == 0, applied.text
    assert "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." in applied.out
    listed = admin(emulator, "GET", f"projects/{emulator.project_id}/servers")["servers"]
    assert {s["name"]: s["key_name"] for s in listed} == dict.fromkeys(
        ("web-1", "web-2", "web-3"), "web-fleet")
    _converged(cli, directory)
