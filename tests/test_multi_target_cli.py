"""Several targets through the real CLI and the emulator over HTTP: one declaration fanned out
to two projects (through two APIs), a target that cannot be reached while the other is applied,
a target removed from the manifests (its key pairs deleted through the recorded connection),
``--forget-target``, a renamed target (entries move in state, sealed again), and ``--in``."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from reconciler.emulator.server import Emulator
from tests.clihelp import Cli

SOUTH = "0b1e5outh0000000000000000000000a"


def _manifest(emulator: Emulator, *, north: str = "north", south: bool = True,
              extra: str = "") -> str:
    body = ("targets:\n"
            f"  - {{name: {north}, region: cn-north-4, project_id: {emulator.project_id}, "
            "api: kps}\n")
    if south:
        body += f"  - {{name: south, region: cn-south-1, project_id: {SOUTH}, api: v2.1}}\n"
    return body + "keypairs:\n  - {name: web, generate: ed25519}\n  - {name: ci}\n" + extra


def _cli(emulator: Emulator, tmp_path: Path) -> Cli:
    emulator.add_project(SOUTH, region="cn-south-1")
    return Cli(emulator, tmp_path)


def _run(cli: Cli, *argv: str) -> tuple[int, str]:
    r = cli(*argv, globals_=False,
            extra=["--state", str(cli.state), "--endpoint", cli.emulator.endpoint])
    return r.code, r.text


def _names(emulator: Emulator, project: str) -> list[str]:
    found = emulator.projects.get(project)
    assert found is not None
    return sorted(k.name for k in found.store.all())


def _state(cli: Cli) -> dict[str, object]:
    doc: dict[str, object] = json.loads(cli.state.read_text())
    return doc


def test_one_declaration_fans_out_to_two_targets_and_converges(emulator: Emulator,
                                                              tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    cli.write(_manifest(emulator))
    code, text = _run(cli, "plan", str(cli.manifests))
    assert code == 0, text
    for address in ('keypair.web["north"]', 'keypair.web["south"]', 'keypair.ci["north"]',
                    'keypair.ci["south"]'):
        assert f"# {address} will be created" in text, text
    assert "Plan: 4 to add, 0 to change, 0 to destroy." in text
    assert "in 2 targets: north (KPS v3 at" in text and "south (ECS os-keypairs v2.1 at" in text
    code, text = _run(cli, "apply", "--auto-approve", str(cli.manifests))
    assert code == 0, text
    assert 'keypair.web["south"]: Creation complete' in text
    assert _names(emulator, emulator.project_id) == ["ci", "web"]
    assert _names(emulator, SOUTH) == ["ci", "web"]
    doc = _state(cli)
    assert sorted(doc["keypairs"]) == [  # type: ignore[arg-type]
        'keypair.ci["north"]', 'keypair.ci["south"]', 'keypair.web["north"]',
        'keypair.web["south"]']
    targets = doc["targets"]
    assert isinstance(targets, dict)
    assert targets["south"]["project_id"] == SOUTH and targets["south"]["api"] == "v2.1"
    assert targets["north"]["api"] == "kps" and emulator.sk not in cli.state.read_text()
    code, text = _run(cli, "plan", "--detailed-exitcode", str(cli.manifests))
    assert code == 0, text
    assert "No changes." in text
    # state commands and output take addresses; a bare name in two targets is ambiguous
    r = cli("state", "list", globals_=False, extra=["--state", str(cli.state)])
    assert r.out.split() == ['keypair.ci["north"]', 'keypair.ci["south"]',
                             'keypair.web["north"]', 'keypair.web["south"]'], r.text
    r = cli("output", "web", globals_=False, extra=["--state", str(cli.state)])
    assert r.code == 1 and 'keypair.web["north"], keypair.web["south"]' in r.text, r.text
    r = cli("output", 'keypair.web["south"]', "--private-key", globals_=False,
            extra=["--state", str(cli.state)])
    assert r.code == 0 and "PRIVATE KEY" in r.out, r.text


def test_an_unreachable_target_is_reported_and_the_other_is_applied(emulator: Emulator,
                                                                    tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    cli.write(_manifest(emulator))
    cut = requests.post(f"{emulator.endpoint}/_emulator/projects/{SOUTH}/unreachable",
                        json={"status": 503}, timeout=10)
    assert cut.status_code == 200, cut.text
    code, text = _run(cli, "plan", "--out", str(tmp_path / "p.json"), str(cli.manifests))
    assert code == 1, text  # saved, and incomplete: tests/test_multi_target_saved.py
    assert "Error: target south could not be read" in text, text
    assert "Note: the saved plan leaves out target(s) south" in text
    code, text = _run(cli, "apply", "--auto-approve", str(cli.manifests))
    assert code == 1, text
    assert 'keypair.web["north"]: Creation complete' in text
    assert "target north: complete: 2 added" in text, text
    assert "target south: not reached; nothing was done there" in text
    assert "Traceback" not in text and emulator.sk not in text
    assert _names(emulator, emulator.project_id) == ["ci", "web"]
    assert sorted(_state(cli)["keypairs"]) == [  # type: ignore[arg-type]
        'keypair.ci["north"]', 'keypair.web["north"]']
    back = requests.delete(f"{emulator.endpoint}/_emulator/projects/{SOUTH}/unreachable",
                           timeout=10)
    assert back.status_code == 200, back.text
    code, text = _run(cli, "apply", "--auto-approve", str(cli.manifests))
    assert code == 0 and "2 added" in text, text
    code, text = _run(cli, "plan", "--detailed-exitcode", str(cli.manifests))
    assert code == 0, text


def test_a_removed_target_has_its_key_pairs_deleted_through_the_recorded_connection(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    cli.write(_manifest(emulator))
    assert _run(cli, "apply", "--auto-approve", str(cli.manifests))[0] == 0
    cli.write(_manifest(emulator, south=False))
    code, text = _run(cli, "plan", str(cli.manifests))
    assert code == 0, text
    assert '# keypair.web["south"] will be destroyed' in text, text
    assert "Plan: 0 to add, 0 to change, 2 to destroy." in text
    code, text = _run(cli, "apply", "--auto-approve", str(cli.manifests))
    assert code == 0, text
    assert _names(emulator, SOUTH) == [] and _names(emulator, emulator.project_id) == ["ci",
                                                                                        "web"]
    code, text = _run(cli, "plan", "--detailed-exitcode", str(cli.manifests))
    assert code == 0 and "No changes." in text and "south" not in text, text


def test_forget_target_drops_its_entries_without_touching_the_cloud(emulator: Emulator,
                                                                    tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    cli.write(_manifest(emulator))
    assert _run(cli, "apply", "--auto-approve", str(cli.manifests))[0] == 0
    code, text = _run(cli, "plan", "--forget-target", "south", str(cli.manifests))
    assert code == 1 and "the manifests declare that target" in text, text
    cli.write(_manifest(emulator, south=False))
    code, text = _run(cli, "plan", "--forget-target", "nowhere", str(cli.manifests))
    assert code == 1 and "--forget-target nowhere: no target of that name" in text, text
    before = emulator.counters()
    code, text = _run(cli, "apply", "--auto-approve", "--forget-target", "south",
                      str(cli.manifests))
    assert code == 0, text
    assert "2 forgotten" in text, text
    assert _names(emulator, SOUTH) == ["ci", "web"]  # still in the cloud, unmanaged
    assert sorted(_state(cli)["keypairs"]) == [  # type: ignore[arg-type]
        "keypair.ci[\"north\"]", "keypair.web[\"north\"]"]
    assert not any("delete" in op for op in emulator.counters()
                   if emulator.counters()[op] != before.get(op))


def test_a_renamed_target_moves_its_entries_and_nothing_in_the_cloud(emulator: Emulator,
                                                                    tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    cli.write(_manifest(emulator))
    assert _run(cli, "apply", "--auto-approve", str(cli.manifests))[0] == 0
    cli.write(_manifest(emulator, north="prod-north"))
    code, text = _run(cli, "plan", "--detailed-exitcode", str(cli.manifests))
    assert code == 0, text  # state-only work is no change
    assert '# keypair.web["north"] has moved to keypair.web["prod-north"]' in text, text
    code, text = _run(cli, "apply", "--auto-approve", str(cli.manifests))
    assert code == 0, text
    assert sorted(_state(cli)["keypairs"]) == [  # type: ignore[arg-type]
        'keypair.ci["prod-north"]', 'keypair.ci["south"]', 'keypair.web["prod-north"]',
        'keypair.web["south"]']
    r = cli("output", 'keypair.web["prod-north"]', "--private-key", globals_=False,
            extra=["--state", str(cli.state)])
    assert r.code == 0 and "PRIVATE KEY" in r.out, r.text  # sealed again to the new address
    assert _names(emulator, emulator.project_id) == ["ci", "web"]
    code, text = _run(cli, "plan", "--detailed-exitcode", str(cli.manifests))
    assert code == 0 and "has moved" not in text, text


def test_in_restricts_the_run_to_whole_targets(emulator: Emulator, tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    cli.write(_manifest(emulator))
    code, text = _run(cli, "apply", "--auto-approve", "--in", "south", str(cli.manifests))
    assert code == 0, text
    assert _names(emulator, SOUTH) == ["ci", "web"] and _names(emulator, emulator.project_id) \
        == []
    code, text = _run(cli, "plan", "--in", "elsewhere", str(cli.manifests))
    assert code == 1 and "--in elsewhere: no target of that name" in text, text
    code, text = _run(cli, "plan", "--in", "north", "--out", str(tmp_path / "p.json"),
                      str(cli.manifests))
    assert code == 0, text
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["plan_version"] == 3 and doc["reconciler"]["in"] == ["north"]


def test_state_mv_moves_an_entry_between_targets_sealed_again(emulator: Emulator,
                                                              tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    cli.write(_manifest(emulator))
    assert _run(cli, "apply", "--auto-approve", str(cli.manifests))[0] == 0
    state = ["--state", str(cli.state)]
    r = cli("state", "mv", 'keypair.web["north"]', 'keypair.other["south"]', globals_=False,
            extra=state)
    assert r.code == 1 and "between targets only" in r.text, r.text
    r = cli("state", "mv", 'keypair.web["north"]', 'keypair.web["south"]', globals_=False,
            extra=state)
    assert r.code == 1 and "is in state already" in r.text, r.text
    r = cli("state", "rm", 'keypair.web["south"]', globals_=False, extra=state)
    assert r.code == 0, r.text
    r = cli("state", "mv", 'keypair.web["north"]', 'keypair.web["south"]', globals_=False,
            extra=state)
    assert r.code == 0 and 'Move keypair.web["north"] to keypair.web["south"]' in r.out, r.text
    r = cli("output", 'keypair.web["south"]', "--private-key", globals_=False, extra=state)
    assert r.code == 0 and "PRIVATE KEY" in r.out, r.text  # sealed to the new address
    r = cli("output", 'keypair.web["north"]', globals_=False, extra=state)
    assert r.code == 1, r.text


def test_a_move_interrupted_after_its_new_entry_is_finished_by_the_next_apply(
        emulator: Emulator, tmp_path: Path) -> None:
    import dataclasses

    from reconciler.state.local import LocalStateStore

    cli = _cli(emulator, tmp_path)
    cli.write(_manifest(emulator))
    assert _run(cli, "apply", "--auto-approve", str(cli.manifests))[0] == 0
    # what a kill -9 between the two steps of a move leaves: the entry under both targets
    store = LocalStateStore(cli.state, environ=cli.environ)
    state = store.load()
    with store.lock(operation="test", timeout=5):
        for address, entry in state.keypairs.items():
            if address.target == "north":
                assert entry.private_key is not None or entry.name == "ci"
                sealed = entry.private_key and store.seal(
                    entry.name, store.unseal(entry.name, entry.private_key, target="north"),
                    target="prod-north")
                store.record(dataclasses.replace(entry, target="prod-north",
                                                 private_key=sealed))
        store.commit()
    cli.write(_manifest(emulator, north="prod-north"))
    code, text = _run(cli, "apply", "--auto-approve", str(cli.manifests))
    assert code == 0, text
    assert "has moved to" in text and "stale" not in text, text
    assert sorted(_state(cli)["keypairs"]) == [  # type: ignore[arg-type]
        'keypair.ci["prod-north"]', 'keypair.ci["south"]', 'keypair.web["prod-north"]',
        'keypair.web["south"]']
    r = cli("output", 'keypair.web["prod-north"]', "--private-key", globals_=False,
            extra=["--state", str(cli.state)])
    assert r.code == 0 and "PRIVATE KEY" in r.out, r.text


def test_a_state_of_a_provider_run_becomes_its_named_target_and_nothing_is_deleted(
        emulator: Emulator, tmp_path: Path) -> None:
    # recorded without a region (--endpoint and --project-id only), then a targets block
    # names the same project with a region: the same target, renamed, never a removed one
    cli = _cli(emulator, tmp_path)
    cli.write("keypairs:\n  - {name: web, generate: ed25519}\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.write(f"targets:\n  - {{name: north, region: cn-north-4, project_id: "
              f"{emulator.project_id}, api: v2.1}}\nkeypairs:\n  - {{name: web, "
              "generate: ed25519}\n")
    code, text = _run(cli, "import", "web", str(cli.manifests))
    assert code == 1 and "already managed" in text, text
    code, text = _run(cli, "apply", "--auto-approve", str(cli.manifests))
    assert code == 0, text
    assert "has moved to" in text and "Destruction" not in text, text
    assert _names(emulator, emulator.project_id) == ["web"]
    r = cli("output", "web", "--private-key", globals_=False, extra=["--state", str(cli.state)])
    assert r.code == 0 and "PRIVATE KEY" in r.out, r.text


def test_two_declared_targets_of_one_project_are_refused(emulator: Emulator,
                                                         tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    p = emulator.project_id
    cli.write(f"targets:\n  - {{name: a, region: cn-north-4, project_id: {p}, api: kps}}\n"
              f"  - {{name: b, region: cn-north-4, project_id: {p}, api: kps}}\n"
              "keypairs:\n  - {name: web}\n")
    before = emulator.counters()
    code, text = _run(cli, "plan", str(cli.manifests))
    assert code == 1 and "targets 'a' (at " in text and "are the same project" in text, text
    assert emulator.counters() == before and not cli.state.exists()


def test_a_plan_saved_with_one_named_target_applies(emulator: Emulator,
                                                    tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    cli.write(_manifest(emulator, south=False))
    plan = tmp_path / "plan.json"
    code, text = _run(cli, "plan", "--out", str(plan), str(cli.manifests))
    assert code == 0, text
    doc = json.loads(plan.read_text())  # one target: the format of one provider block
    assert doc["plan_version"] == 2 and "connections" not in doc["reconciler"]
    assert doc["reconciler"]["provider"]["target"] == "north"
    code, text = _run(cli, "apply", str(plan), str(cli.manifests))
    assert code == 0, text
    assert "Apply complete! Resources: 2 added" in text
    assert sorted(_state(cli)["keypairs"]) == [  # type: ignore[arg-type]
        'keypair.ci["north"]', 'keypair.web["north"]']
    code, text = _run(cli, "plan", "--detailed-exitcode", str(cli.manifests))
    assert code == 0, text


def test_an_unrecorded_target_beside_several_declared_ones_points_to_state_mv(
        emulator: Emulator, tmp_path: Path) -> None:
    import shutil

    cli = _cli(emulator, tmp_path)
    data = Path(__file__).parent / "data" / "state-format-2"
    shutil.copy(data / "reconciler.state.json", cli.state)
    cli.environ["RECONCILER_KEY_FILE"] = str(data / "state.key")
    cli.write(_manifest(emulator))
    for extra in ((), ("--in", "north")):
        code, text = _run(cli, "plan", *extra, str(cli.manifests))
        assert code == 1, text
        assert "does not record where that target is" in text and "state mv" in text, text
