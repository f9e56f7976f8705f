"""Saved plans of several targets, through the real CLI and the emulator over HTTP: every
target's connection recorded (never a secret) and printed before anything is sent, an agency
target reached with its manifests' credentials block, removed, renamed and unreachable
targets, the options that must be repeated, and edited copies of a real plan refused with the
state and every project's key pairs left as they were."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.configuration import configuration_digest, desired_from_dict
from reconciler.emulator.server import Emulator
from tests.clihelp import Cli, Result
from tests.test_planfile_tamper import Listener

SOUTH = "0b1e5outh0000000000000000000000a"
PARTNER, PARTNER_DOMAIN = "9a47e5000000000000000000000000b1", "d0ma1n0fpartner000000000000001"
OTHER = "07e5000000000000000000000000000c"
Doc = dict[str, Any]
ENV_SOURCE = "environment (HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK)"
AGENCY_SOURCE = f"agency reconciler-deploy in account partner-corp (assumed with {ENV_SOURCE})"


@pytest.fixture()
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def _targets(emulator: Emulator, *, north: str = "north", south: bool = True,
             partner: bool = False) -> str:
    body = ("targets:\n"
            f"  - {{name: {north}, region: cn-north-4, project_id: {emulator.project_id}, "
            "api: kps}\n")
    if south:
        body += f"  - {{name: south, region: cn-south-1, project_id: {SOUTH}, api: v2.1}}\n"
    if partner:
        body += (f"  - name: partner\n    region: cn-north-4\n    project_id: {PARTNER}\n"
                 "    api: kps\n    credentials:\n      agency: {name: reconciler-deploy, "
                 "domain_name: partner-corp}\n")
    return body


def _cli(emulator: Emulator, tmp_path: Path) -> Cli:
    emulator.add_project(SOUTH, region="cn-south-1")
    emulator.add_project(PARTNER, region="cn-north-4", domain_id=PARTNER_DOMAIN)
    emulator.add_project(OTHER, region="cn-north-4")
    emulator.register_agency(name="reconciler-deploy", domain_id=PARTNER_DOMAIN,
                             domain_name="partner-corp", projects=[PARTNER])
    return Cli(emulator, tmp_path)


def _run(cli: Cli, *argv: str, endpoint: bool = True) -> Result:
    extra = ["--state", str(cli.state)] + (["--endpoint", cli.emulator.endpoint]
                                            if endpoint else [])
    return cli(*argv, globals_=False, extra=extra)


def _names(emulator: Emulator, project: str) -> list[str]:
    found = emulator.projects.get(project)
    assert found is not None
    return sorted(k.name for k in found.store.all())


def _delete(emulator: Emulator, project: str, name: str) -> None:
    """A key pair deleted outside reconciler."""
    found = emulator.projects.get(project)
    assert found is not None
    found.store.delete(name)


def _doc(path: Path) -> Doc:
    loaded: Doc = json.loads(path.read_text())
    return loaded


def _keys(cli: Cli) -> list[str]:
    return sorted(_doc(cli.state)["keypairs"])


def test_a_plan_of_several_targets_is_saved_with_every_connection_and_applies(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    cli.write(_targets(emulator, partner=True) + "keypairs:\n"
              "  - {name: web, generate: ed25519}\n"
              "  - {name: ci, generate: ed25519, targets: [north, south]}\n"
              "  - {name: sync, targets: [partner]}\n")
    plan = tmp_path / "p.json"
    made = _run(cli, "plan", "--out", str(plan), str(cli.manifests))
    assert made.code == 0, made.text
    assert "Plan: 6 to add, 0 to change, 0 to destroy." in made.out
    assert f"reconciler apply {plan}" in made.out
    doc, text = _doc(plan), plan.read_text()
    assert doc["plan_version"] == 3 and "provider" not in doc["reconciler"]
    assert doc["reconciler"]["connections"] == [
        {"target": "north", "role": "declared", "api": "kps", "endpoint": emulator.endpoint,
         "region": "cn-north-4", "project_id": emulator.project_id, "credentials": ENV_SOURCE},
        {"target": "south", "role": "declared", "api": "v2.1", "endpoint": emulator.endpoint,
         "region": "cn-south-1", "project_id": SOUTH, "credentials": ENV_SOURCE},
        {"target": "partner", "role": "declared", "api": "kps", "endpoint": emulator.endpoint,
         "region": "cn-north-4", "project_id": PARTNER, "credentials": AGENCY_SOURCE}]
    assert doc["reconciler"]["configuration"]["ci"]["targets"] == ["north", "south"]
    assert 'keypair.ci["south"]' in doc["reconciler"]["remote"]
    assert emulator.sk not in text and emulator.ak not in text and "PRIVATE" not in text
    done = _run(cli, "apply", str(plan), str(cli.manifests))
    assert done.code == 0, done.text
    lines = done.out.splitlines()
    assert lines[0].startswith("Configuration verified: the manifests match the saved plan")
    assert lines[1] == "Saved plan reaches 3 targets:"
    assert lines[2] == (f"  north: {emulator.endpoint} (project {emulator.project_id}, region "
                        f"cn-north-4, api kps; credentials {ENV_SOURCE})")
    assert lines[3].startswith(f"  south: {emulator.endpoint} (project {SOUTH}, region "
                               "cn-south-1, api v2.1;")
    assert lines[4].endswith(f"credentials {AGENCY_SOURCE})")
    assert lines[5] == f"Saved plan state: the local file {cli.state}."
    assert "Apply complete! Resources: 6 added, 0 changed, 0 destroyed." in done.out
    assert _names(emulator, emulator.project_id) == ["ci", "web"]
    assert _names(emulator, SOUTH) == ["ci", "web"] and _names(emulator, PARTNER) == [
        "sync", "web"]
    assert emulator.iam.counts["assume_role"] >= 1
    again = _run(cli, "plan", "--detailed-exitcode", str(cli.manifests))
    assert again.code == 0, again.text
    # applied once: the same file is stale now, and refused
    stale = _run(cli, "apply", str(plan), str(cli.manifests))
    assert stale.code == 1 and "Saved plan is stale" in stale.err, stale.text


def test_without_its_manifests_an_agency_target_is_refused_naming_it(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    cli.write(_targets(emulator, partner=True) + "keypairs:\n  - {name: web}\n")
    assert _run(cli, "plan", "--out", "p.json", str(cli.manifests)).code == 0
    before = emulator.counters()["total"]
    refused = _run(cli, "apply", "p.json")
    assert refused.code == 1, refused.text
    assert ("target partner: this saved plan was made for another connection" in refused.err
            and f"credential source '{ENV_SOURCE}' (the plan: '{AGENCY_SOURCE}')" in refused.err)
    assert "reconciler apply" in refused.err and "PATH…" in refused.err
    assert emulator.counters()["total"] == before and not cli.state.exists()
    assert "Traceback" not in refused.text
    # a plan of targets the run's own credentials reach applies with the flags alone
    cli.write(_targets(emulator) + "keypairs:\n  - {name: web}\n")
    assert _run(cli, "plan", "--out", "q.json", str(cli.manifests)).code == 0
    done = _run(cli, "apply", "q.json")
    assert done.code == 0, done.text
    assert done.out.startswith("Note: the configuration comes from the saved plan q.json, "
                               "unverified.")
    assert _names(emulator, SOUTH) == ["web"] and _names(emulator, emulator.project_id) == [
        "web"]


def test_a_removed_target_is_deleted_from_through_its_recorded_connection(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    cli.write(_targets(emulator) + "keypairs:\n  - {name: web}\n")
    assert _run(cli, "apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.write(_targets(emulator, south=False) + "keypairs:\n  - {name: web}\n")
    made = _run(cli, "plan", "--out", "p.json", str(cli.manifests))
    assert made.code == 0 and '# keypair.web["south"] will be destroyed' in made.out, made.text
    pinned = _doc(tmp_path / "p.json")["reconciler"]["connections"]
    assert [(c["target"], c["role"]) for c in pinned] == [("north", "declared"),
                                                          ("south", "removed")]
    done = _run(cli, "apply", "p.json", str(cli.manifests))
    assert done.code == 0, done.text
    assert "  south: " in done.out and "removed from the manifests" in done.out
    assert _names(emulator, SOUTH) == [] and _keys(cli) == ['keypair.web["north"]']


def test_a_renamed_target_moves_its_entries_through_a_saved_plan(emulator: Emulator,
                                                                tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    cli.write(_targets(emulator) + "keypairs:\n  - {name: web, generate: ed25519}\n")
    assert _run(cli, "apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.write(_targets(emulator, north="prod-north")
              + "keypairs:\n  - {name: web, generate: ed25519}\n")
    assert _run(cli, "plan", "--out", "p.json", str(cli.manifests)).code == 0
    assert _doc(tmp_path / "p.json")["reconciler"]["moved"] == [
        ['keypair.web["north"]', 'keypair.web["prod-north"]']]
    done = _run(cli, "apply", "p.json", str(cli.manifests))
    assert done.code == 0, done.text
    assert _keys(cli) == ['keypair.web["prod-north"]', 'keypair.web["south"]']
    r = cli("output", 'keypair.web["prod-north"]', "--private-key", globals_=False,
            extra=["--state", str(cli.state)])
    assert r.code == 0 and "PRIVATE KEY" in r.out, r.text


def test_in_and_forget_target_must_be_repeated_by_the_apply_command(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    cli.write(_targets(emulator) + "keypairs:\n  - {name: web}\n")
    assert _run(cli, "plan", "--in", "south", "--out", "p.json", str(cli.manifests)).code == 0
    before = emulator.counters()["total"]
    for argv in (("p.json", str(cli.manifests)), ("--in", "north", "p.json")):
        refused = _run(cli, "apply", *argv)
        assert refused.code == 1, refused.text
        assert "--in: the plan has south, this command gives" in refused.err, refused.err
        assert "`reconciler apply --in south p.json" in refused.err
    assert emulator.counters()["total"] == before and not cli.state.exists()
    done = _run(cli, "apply", "--in", "south", "p.json", str(cli.manifests))
    assert done.code == 0, done.text
    assert done.out.splitlines()[0].endswith("; mode normal, in south.")
    assert _names(emulator, SOUTH) == ["web"] and _names(emulator, emulator.project_id) == []
    cli.write(_targets(emulator, south=False) + "keypairs:\n  - {name: web}\n")
    made = _run(cli, "plan", "--forget-target", "south", "--out", "f.json", str(cli.manifests))
    assert made.code == 0, made.text
    refused = _run(cli, "apply", "f.json", str(cli.manifests))
    assert refused.code == 1 and "--forget-target: the plan has south" in refused.err
    done = _run(cli, "apply", "--forget-target", "south", "f.json", str(cli.manifests))
    assert done.code == 0 and "1 forgotten" in done.out, done.text
    assert _names(emulator, SOUTH) == ["web"] and _keys(cli) == ['keypair.web["north"]']


def _cut(emulator: Emulator, project: str) -> None:
    r = requests.post(f"{emulator.endpoint}/_emulator/projects/{project}/unreachable",
                      json={"status": 503, "retry_after": 0}, timeout=10)
    assert r.status_code == 200, r.text


def _restore(emulator: Emulator, project: str) -> None:
    r = requests.delete(f"{emulator.endpoint}/_emulator/projects/{project}/unreachable",
                        timeout=10)
    assert r.status_code == 200, r.text


def test_a_plan_saved_without_an_unreachable_target_applies_the_others_and_says_so(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    cli.write(_targets(emulator) + "keypairs:\n  - {name: web}\n")
    _cut(emulator, SOUTH)
    made = _run(cli, "plan", "--out", "p.json", str(cli.manifests))
    assert made.code == 1, made.text  # the plan is incomplete, and saved
    assert "Error: target south could not be read" in made.err
    assert "Note: the saved plan leaves out target(s) south" in made.err
    doc = _doc(tmp_path / "p.json")
    assert [u["target"] for u in doc["reconciler"]["unreachable_targets"]] == ["south"]
    done = _run(cli, "apply", "p.json", str(cli.manifests))
    assert done.code == 1, done.text
    assert "  south: " in done.out and "NOT IN THE PLAN" in done.out
    assert 'keypair.web["north"]: Creation complete' in done.out
    assert "target south: not reached; nothing was done there" in done.err
    assert "Apply incomplete: 1 target(s) could not be read" in done.err
    assert _names(emulator, emulator.project_id) == ["web"] and _keys(cli) == [
        'keypair.web["north"]']
    # the target can be read again: a plan that lacks it is refused, nothing changed
    state = cli.state.read_bytes()
    made = _run(cli, "plan", "--out", "q.json", str(cli.manifests))
    assert made.code == 1, made.text
    _restore(emulator, SOUTH)
    refused = _run(cli, "apply", "q.json", str(cli.manifests))
    assert refused.code == 1, refused.text
    assert ("target south could not be read when the saved plan" in refused.err
            and "q.json was made" in refused.err and "it can be read now" in refused.err)
    assert cli.state.read_bytes() == state and _names(emulator, SOUTH) == []
    # and the reverse: read when planned, unreadable now
    assert _run(cli, "plan", "--out", "r.json", str(cli.manifests)).code == 0
    _cut(emulator, SOUTH)
    refused = _run(cli, "apply", "r.json", str(cli.manifests))
    assert refused.code == 1 and "target south could not be read now" in refused.err
    assert cli.state.read_bytes() == state
    _restore(emulator, SOUTH)
    assert _run(cli, "apply", "r.json", str(cli.manifests)).code == 0
    assert _names(emulator, SOUTH) == ["web"]


# -- edited copies of a real plan of two targets ---------------------------------------------

class World:
    """Two targets holding ``web`` (applied), then a plan that creates ``ci`` in south only."""

    def __init__(self, cli: Cli, listener: Listener) -> None:
        self.cli, self.listener = cli, listener
        emu = cli.emulator
        cli.write(_targets(emu) + "keypairs:\n  - {name: web, generate: ed25519}\n")
        assert _run(cli, "apply", "--auto-approve", str(cli.manifests)).code == 0
        cli.write(_targets(emu) + "keypairs:\n  - {name: web, generate: ed25519}\n"
                  "  - {name: ci, targets: [south]}\n")
        made = _run(cli, "plan", "--out", str(cli.root / "plan.json"), str(cli.manifests))
        assert made.code == 0 and "Plan: 1 to add, 0 to change, 0 to destroy." in made.out
        self.state = cli.state.read_bytes()
        self.cloud = self.listing()

    def listing(self) -> dict[str, list[str]]:
        emu = self.cli.emulator
        return {p: _names(emu, p) for p in (emu.project_id, SOUTH, OTHER)}

    def doc(self) -> Doc:
        return _doc(self.cli.root / "plan.json")

    def write(self, doc: Doc) -> str:
        (self.cli.root / "t.json").write_text(json.dumps(doc, indent=2))
        return "t.json"

    def assert_untouched(self, result: Result) -> None:
        assert result.code == 1, result.text
        assert "Traceback" not in result.text and "internal error" not in result.text
        assert "Error: " in result.err, result.err
        assert self.cli.state.read_bytes() == self.state
        assert self.listing() == self.cloud
        assert self.listener.connections == 0


@pytest.fixture()
def world(emulator: Emulator, tmp_path: Path, listener: Listener) -> World:
    return World(_cli(emulator, tmp_path), listener)


def _connection(doc: Doc, target: str) -> Doc:
    found: Doc = next(c for c in doc["reconciler"]["connections"] if c["target"] == target)
    return found


def _change(doc: Doc, address: str) -> Doc:
    found: Doc = next(rc for rc in doc["resource_changes"] if rc["address"] == address)
    return found


def _redigest(doc: Doc) -> None:
    """The embedded configuration made consistent with its digest again."""
    records = doc["reconciler"]["configuration"]
    declared = [c["target"] for c in doc["reconciler"]["connections"]
                if c["role"] == "declared"]
    doc["manifest_digest"] = configuration_digest(
        (desired_from_dict(n, r) for n, r in records.items()), declared)


def _move_ci_to_north(doc: Doc, *, configuration: bool) -> None:
    rc = _change(doc, 'keypair.ci["south"]')
    rc.update(address='keypair.ci["north"]', index="north")
    remote = doc["reconciler"]["remote"]
    remote['keypair.ci["north"]'] = remote.pop('keypair.ci["south"]')
    doc["resource_changes"].sort(key=lambda r: (r["name"], r["index"]))
    if configuration:
        doc["reconciler"]["configuration"]["ci"]["targets"] = ["north"]
        _redigest(doc)


def _add_target(doc: Doc, role: str) -> None:
    extra = copy.deepcopy(_connection(doc, "north"))
    extra.update(target="west", role=role, project_id=OTHER)
    doc["reconciler"]["connections"].append(extra)


def _drop_south(doc: Doc) -> None:
    doc["reconciler"]["connections"].remove(_connection(doc, "south"))


def _south_unreachable(doc: Doc) -> None:
    doc["resource_changes"] = [rc for rc in doc["resource_changes"] if rc["index"] != "south"]
    doc["reconciler"]["remote"] = {}
    doc["summary"]["add"] = 0
    doc["applyable"] = False
    doc["reconciler"]["unreachable_targets"] = [{"target": "south", "error": "503"}]


def _swap_projects(doc: Doc) -> None:
    north, south = _connection(doc, "north"), _connection(doc, "south")
    north["project_id"], south["project_id"] = south["project_id"], north["project_id"]


MUTATIONS: dict[str, Callable[[Doc], None]] = {
    "north's project edited to another project": lambda d: _connection(d, "north").update(
        project_id=OTHER),
    "the two targets' projects swapped": lambda d: _swap_projects(d),
    "south's region edited": lambda d: _connection(d, "south").update(region="cn-east-3"),
    "south's API edited": lambda d: _connection(d, "south").update(api="kps"),
    "north's credential source edited": lambda d: _connection(d, "north").update(
        credentials=AGENCY_SOURCE),
    "a target dropped from the file": _drop_south,
    "a declared target added to the file": lambda d: _add_target(d, "declared"),
    "a removed target added to the file": lambda d: _add_target(d, "removed"),
    "south's role edited to removed": lambda d: _connection(d, "south").update(role="removed"),
    "a change moved to the other target": lambda d: _move_ci_to_north(d, configuration=False),
    "a change moved with its configuration, digest fixed": lambda d: _move_ci_to_north(
        d, configuration=True),
    "south said unreachable, its changes dropped": _south_unreachable,
    "--in added": lambda d: d["reconciler"].update({"in": ["north"]}),
    "plan_version edited to 2": lambda d: d.update(plan_version=2),
    "connections as a mapping": lambda d: d["reconciler"].update(connections={}),
    "a connection without its project": lambda d: _connection(d, "north").update(
        project_id=None),
    "the fingerprint pin moved between targets": lambda d: d["reconciler"].update(
        remote={'keypair.ci["north"]': None}),
}


@pytest.mark.parametrize("mutation", MUTATIONS, ids=str)
def test_an_edited_plan_of_several_targets_changes_nothing(world: World, mutation: str) -> None:
    doc = world.doc()
    MUTATIONS[mutation](doc)
    name = world.write(doc)
    world.assert_untouched(_run(world.cli, "apply", name, str(world.cli.manifests)))
    if mutation not in MANIFESTS_ONLY:
        world.assert_untouched(_run(world.cli, "apply", name))


# Edits only the manifests can tell, as with one target: a consistent forgery, and a region or
# an API that this run (its --endpoint naming every service) names nowhere else: the plan's is
# used, as printed first, and the plan made again is the same.
MANIFESTS_ONLY = ("a change moved with its configuration, digest fixed", "south's region edited",
                  "south's API edited")


def test_an_edited_connection_is_refused_naming_the_target_and_the_field(
        world: World) -> None:
    doc = world.doc()
    _connection(doc, "south")["endpoint"] = world.listener.endpoint
    name = world.write(doc)
    for result in (_run(world.cli, "apply", name, str(world.cli.manifests)),
                   _run(world.cli, "apply", name)):
        world.assert_untouched(result)
        assert "target south: this saved plan was made for another connection" in result.err
        assert f"endpoint '{world.cli.emulator.endpoint}' (the plan: " \
               f"'{world.listener.endpoint}')" in result.err
    doc = world.doc()
    _connection(doc, "north")["project_id"] = OTHER
    refused = _run(world.cli, "apply", world.write(doc), str(world.cli.manifests))
    world.assert_untouched(refused)
    assert "target north:" in refused.err and f"(the plan: '{OTHER}')" in refused.err
    assert "Saved plan reaches" not in refused.out  # refused before the lines are printed
    ok = _run(world.cli, "apply", "plan.json", str(world.cli.manifests))
    assert ok.code == 0, ok.text
    assert _names(world.cli.emulator, SOUTH) == ["ci", "web"]
    assert _names(world.cli.emulator, world.cli.emulator.project_id) == ["web"]


def _paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=5)
                    | st.sampled_from(["north", "south", "removed", "declared", "kps",
                                       'keypair.ci["north"]', SOUTH, OTHER]),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=4)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_edits_of_a_plan_of_several_targets_never_crash_nor_reach_beyond_it(
        world: World, data: st.DataObject) -> None:
    doc = world.doc()
    path = data.draw(st.sampled_from([p for p in _paths(doc) if p]))
    parent: Any = doc
    for step in path[:-1]:
        parent = parent[step]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(JSON)
    result = _run(world.cli, "apply", world.write(doc))
    assert result.code in (0, 1), result.text
    assert "internal error" not in result.text and "Traceback" not in result.text
    assert world.listener.connections == 0
    if result.code == 1:
        assert world.cli.state.read_bytes() == world.state
        assert world.listing() == world.cloud
        return
    # It applied: then it did what the original plan shows (ci in south), nothing more.
    emu = world.cli.emulator
    assert world.listing() == {**world.cloud, SOUTH: ["ci", "web"]}
    _delete(emu, SOUTH, "ci")  # undo, for the next example
    world.cli.state.write_bytes(world.state)
    world.cli.state.with_name(world.cli.state.name + ".backup").unlink()


def test_destroy_and_refresh_only_plans_of_several_targets(emulator: Emulator,
                                                           tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    cli.write(_targets(emulator) + "keypairs:\n  - {name: web}\n  - {name: ci}\n")
    assert _run(cli, "apply", "--auto-approve", str(cli.manifests)).code == 0
    _delete(emulator, SOUTH, "ci")  # drift in one target
    made = _run(cli, "plan", "--refresh-only", "--out", "r.json", str(cli.manifests))
    assert made.code == 0, made.text
    assert _run(cli, "apply", "r.json", str(cli.manifests)).code == 1
    done = _run(cli, "apply", "--refresh-only", "r.json", str(cli.manifests))
    assert done.code == 0, done.text
    assert _keys(cli) == ['keypair.ci["north"]', 'keypair.web["north"]',
                          'keypair.web["south"]']
    made = _run(cli, "plan", "--destroy", "--target", 'keypair.web["south"]', "--out",
                "d.json", str(cli.manifests))
    assert made.code == 0, made.text
    refused = _run(cli, "apply", "--destroy", "d.json", str(cli.manifests))
    assert refused.code == 1 and "--target: the plan has keypair.web[\"south\"]" in refused.err
    done = _run(cli, "apply", "--destroy", "--target", 'keypair.web["south"]', "d.json",
                str(cli.manifests))
    assert done.code == 0 and "Destroy complete! Resources: 1 destroyed." in done.out, done.text
    assert _names(emulator, SOUTH) == [] and _names(emulator, emulator.project_id) == [
        "ci", "web"]


def _custody_targets(emulator: Emulator, kms: str) -> str:
    """Two targets reached without --endpoint: south (v2.1) sends its custody calls to its
    own ``endpoints.kms``."""
    at = emulator.endpoint
    return ("targets:\n"
            f"  - {{name: north, region: cn-north-4, project_id: {emulator.project_id}, "
            f"api: kps, endpoints: {{kms: '{at}'}}}}\n"
            f"  - {{name: south, region: cn-south-1, project_id: {SOUTH}, api: v2.1, "
            f"endpoints: {{ecs: '{at}', kms: '{kms}'}}}}\n")


def test_the_custody_endpoint_a_saved_plan_sends_private_keys_to_is_pinned(
        emulator: Emulator, tmp_path: Path, listener: Listener) -> None:
    """A v2.1 target's custody calls (the private key itself, on import) go to its
    ``endpoints.kms``: the saved plan records where, prints it, and refuses an apply that
    would send them elsewhere (the digest does not cover endpoints)."""
    cli = _cli(emulator, tmp_path)
    kms = emulator.endpoint.replace("127.0.0.1", "localhost")  # the same emulator
    keys = "keypairs:\n  - {name: web, generate: ed25519, targets: [south]}\n"
    custody = ("keypairs:\n  - name: web\n    generate: ed25519\n    targets: [south]\n"
               "    key_protection: {encryption: {type: default}}\n")
    cli.write(_custody_targets(emulator, kms) + keys)
    assert _run(cli, "apply", "--auto-approve", str(cli.manifests), endpoint=False).code == 0
    cli.write(_custody_targets(emulator, kms) + custody)
    made = _run(cli, "plan", "--out", "c.json", str(cli.manifests), endpoint=False)
    assert made.code == 0 and "1 to change" in made.out, made.text
    doc = _doc(cli.root / "c.json")
    assert _connection(doc, "south")["custody_endpoint"] == kms
    assert "custody_endpoint" not in _connection(doc, "north")  # kps: at its endpoint
    state = cli.state.read_bytes()
    for elsewhere in (listener.endpoint, emulator.endpoint):  # edited after the review
        cli.write(_custody_targets(emulator, elsewhere) + custody)
        refused = _run(cli, "apply", "c.json", str(cli.manifests), endpoint=False)
        assert refused.code == 1, refused.text
        assert "target south: this saved plan was made for another connection" in refused.err
        assert f"custody endpoint '{elsewhere}' (the plan: '{kms}')" in refused.err, refused.err
        assert listener.connections == 0 and cli.state.read_bytes() == state
    cli.write(_custody_targets(emulator, kms) + custody)
    done = _run(cli, "apply", "c.json", str(cli.manifests), endpoint=False)
    assert done.code == 0, done.text
    assert f"; custody calls at {kms})" in done.out
    found = emulator.projects.get(SOUTH)
    assert found is not None and found.store.get("web").key_protection
