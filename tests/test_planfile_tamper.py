"""A saved plan does exactly what it showed, or nothing: edited copies of a real plan.

A real plan is made against the emulator with a state that holds managed key pairs (one with
``prevent_destroy``, one whose private key is in state) while the cloud also holds a key pair
reconciler never managed. Mutated copies of it are then applied. Every refused mutation must
exit 1 with a message and no traceback, leave the state file byte-for-byte as it was and the
cloud's key pairs as they were, and never connect to the recording listener some mutations
point the plan at. Mutations that change nothing that matters apply the original plan.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.configuration import configuration_digest, desired_from_dict, spec_digest
from reconciler.emulator.server import Emulator
from reconciler.keys import generate_keypair, md5_fingerprint, normalise
from reconciler.model import Encryption, KeyProtection, KeySource
from tests.clihelp import Cli

K1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKwIjAMYc6uhQM4LzeXgHN/O/kezk2t2iqOT16iKzSCu"
K2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAl3qnSrPmacQJUWaClGKLzgQLRg89u91AQzFOBo2SLP"
Doc = dict[str, Any]


class Listener:
    """A TCP listener on 127.0.0.1 that records every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture()
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


class World:
    """The cloud, the state and the plans of one test."""

    def __init__(self, cli: Cli) -> None:
        self.cli = cli
        emu = cli.emulator
        self.custody = generate_keypair("ed25519", comment="vault")
        self.other = generate_keypair("ed25519", comment="other")
        for name, key in (("vault.key", self.custody), ("other.key", self.other)):
            path = cli.root / name
            path.write_text(key.private_key.reveal())
            path.chmod(0o600)
        self.provider = (f"provider:\n  endpoint: {emu.endpoint}\n"
                         f"  project_id: {emu.project_id}\n  api: v2.1\n")
        cli.client().import_keypair(name="stranger", public_key=K2)  # never managed
        self.base = ("keypairs:\n  - name: keep\n    generate: ed25519\n"
                     f"  - name: guard\n    public_key: \"{K1}\"\n    prevent_destroy: true\n")
        cli.write(self.provider + self.base)
        assert self.run("apply", "--auto-approve", str(cli.manifests)).code == 0
        none = self.run("plan", "--out", str(cli.root / "none.json"), str(cli.manifests))
        assert "No changes." in none.out, none.text
        self.none_manifests = cli.root / "none-manifests"  # what none.json was made from
        self.none_manifests.mkdir()
        (self.none_manifests / "keys.yaml").write_text((cli.manifests / "keys.yaml").read_text())
        cli.write(self.provider + self.base + "  - name: web\n  - name: vault\n"
                  f"    public_key: \"{self.custody.public_key}\"\n    key_protection:\n"
                  "      encryption: {type: default}\n      private_key_file: ../vault.key\n")
        plan = self.run("plan", "--out", str(cli.root / "plan.json"), str(cli.manifests))
        assert plan.code == 0 and "Plan: 2 to add, 0 to change, 0 to destroy." in plan.out
        self.state = cli.state.read_bytes()
        self.backup = cli.state.with_name(cli.state.name + ".backup")
        assert not self.backup.exists()  # one apply so far: nothing to back up
        self.cloud = self.listing()

    def run(self, *argv: str) -> Any:
        """The CLI with only --state: where to go comes from the manifests or the plan."""
        return self.cli(*argv, globals_=False, extra=["--state", str(self.cli.state)])

    def listing(self) -> dict[str, str]:
        snapshot = self.cli.client().list_keypairs()
        return {name: kp.fingerprint for name, kp in snapshot.keypairs.items()}

    def doc(self, name: str = "plan.json") -> Doc:
        loaded: Doc = json.loads((self.cli.root / name).read_text())
        return loaded

    def write(self, doc: Doc) -> str:
        (self.cli.root / "t.json").write_text(json.dumps(doc, indent=2))
        return "t.json"

    def apply_with_manifests(self, doc: Doc, manifests: Path | None = None) -> Any:
        return self.run("apply", self.write(doc), str(manifests or self.cli.manifests))

    def apply_with_flags(self, doc: Doc) -> Any:
        return self.cli("apply", self.write(doc))

    def assert_untouched(self, result: Any, listener: Listener | None = None) -> None:
        assert result.code == 1, result.text
        assert "internal error" not in result.text and "Traceback" not in result.text
        # Once the plan is read, a line says which credentials the run uses; then the error.
        rest = result.err.removeprefix(
            "Credentials: environment (HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK).\n")
        assert rest.startswith("Error: "), result.err
        assert self.cli.state.read_bytes() == self.state
        assert self.listing() == self.cloud
        if listener is not None:
            assert listener.connections == 0


@pytest.fixture()
def world(emulator: Emulator, tmp_path: Path) -> World:
    return World(Cli(emulator, tmp_path))


def _change(doc: Doc, name: str) -> Doc:
    found: Doc = next(rc for rc in doc["resource_changes"] if rc["name"] == name)
    return found


def _delete(doc: Doc, name: str) -> None:
    rc = _change(doc, name)
    rc["change"]["actions"], rc["change"]["after"] = ["delete"], None
    doc["summary"]["destroy"] += 1


def _redigest(doc: Doc) -> None:
    """Make the embedded configuration consistent again, as a careful forger would."""
    records = doc["reconciler"]["configuration"]
    for name, raw in records.items():
        raw["spec_digest"] = _spec(raw)
        records[name] = raw
    doc["manifest_digest"] = configuration_digest(
        desired_from_dict(n, r) for n, r in records.items())


def _spec(raw: Doc) -> str:
    kp = raw["key_protection"]
    protection = KeyProtection(Encryption(**kp["encryption"]), kp["private_key_file"]) \
        if kp else None
    return spec_digest(source=KeySource(raw["source"]), algorithm=raw["algorithm"],
                       public_key=normalise(raw["public_key"]) if raw["public_key"] else None,
                       type=raw["type"], user_id=raw["user_id"], scope=raw["scope"],
                       key_protection=protection)


# -- the "No changes" plan edited into deletions --------------------------------------------

def _none_deletes_stranger(doc: Doc) -> None:
    rc = copy.deepcopy(_change(doc, "keep"))
    rc.update(address="keypair.stranger", name="stranger")
    rc["change"].update(actions=["delete"], after=None)
    doc["resource_changes"].append(rc)
    doc["reconciler"]["remote"]["stranger"] = md5_fingerprint(K2)  # as the cloud has it


NONE_MUTATIONS: dict[str, Callable[[Doc], None]] = {
    "no-op to delete (prevent_destroy)": lambda d: _delete(d, "guard"),
    "no-op to delete (private key in state)": lambda d: _delete(d, "keep"),
    "a delete of an unmanaged key pair added": _none_deletes_stranger,
    "a managed key pair forgotten": lambda d: d["reconciler"]["forget"].append("keep"),
    "a managed key pair dropped from the configuration": lambda d: (
        d["reconciler"]["configuration"].pop("keep"), _redigest(d)),
    "a change dropped": lambda d: d["resource_changes"].pop(0),
    "--replace added": lambda d: d["reconciler"]["replace"].append("keep"),
    "targets narrowed": lambda d: d["reconciler"]["targets"].append("guard"),
    "summary edited": lambda d: d["summary"].update(destroy=1),
    "prior_state serial edited": lambda d: d["prior_state"].update(serial=d["prior_state"]
                                                                   ["serial"] + 1),
    "prior_state lineage edited": lambda d: d["prior_state"].update(lineage="0" * 36),
    "mode edited to destroy": lambda d: d["reconciler"].update(mode="destroy"),
    "planned in the future": lambda d: d["reconciler"].update(
        planned_at="2999-01-01T00:00:00+00:00"),
}


@pytest.mark.parametrize("mutation", NONE_MUTATIONS, ids=str)
def test_an_edited_no_changes_plan_changes_nothing(world: World, mutation: str) -> None:
    doc = world.doc("none.json")
    NONE_MUTATIONS[mutation](doc)
    world.assert_untouched(world.apply_with_manifests(doc, world.none_manifests))
    world.assert_untouched(world.apply_with_flags(doc))


OPTION_MUTATIONS: dict[str, tuple[Callable[[Doc], None], tuple[str, ...]]] = {
    "--replace added": (NONE_MUTATIONS["--replace added"], ("--replace", "keep")),
    "targets narrowed": (NONE_MUTATIONS["targets narrowed"], ("--target", "guard")),
    "mode edited to destroy": (NONE_MUTATIONS["mode edited to destroy"], ("--destroy",)),
}


@pytest.mark.parametrize("mutation", OPTION_MUTATIONS, ids=str)
def test_an_edited_option_is_refused_even_when_the_command_repeats_it(
        world: World, mutation: str) -> None:
    """The options the apply command repeats pass the option check; the plan made again with
    them still differs from what the file shows."""
    edit, flags = OPTION_MUTATIONS[mutation]
    doc = world.doc("none.json")
    edit(doc)
    refused = world.run("apply", *flags, world.write(doc), str(world.none_manifests))
    world.assert_untouched(refused)
    assert "does not match what it pins" in refused.err


def test_a_destroy_plan_swapped_for_the_reviewed_no_changes_plan_is_refused(
        world: World) -> None:
    """The reviewer saw none.json ("No changes"). A genuine plan made with --destroy from the
    same manifests and state has the same manifest digest, lineage and serial: swapped in for
    the artifact, the reviewed command (no options) refuses it before anything is sent."""
    made = world.run("plan", "--destroy", "--target", "keep", "--out",
                     str(world.cli.root / "swapped.json"), str(world.none_manifests))
    assert made.code == 0, made.text
    assert world.doc("swapped.json")["manifest_digest"] == world.doc("none.json")[
        "manifest_digest"]
    for argv in (("swapped.json", str(world.none_manifests)), ("swapped.json",),
                 ("--destroy", "swapped.json"), ("--target", "keep", "swapped.json")):
        requests = world.cli.emulator.counters()["total"]
        result = world.run("apply", *argv)
        assert world.cli.emulator.counters()["total"] == requests  # not even a refresh
        world.assert_untouched(result)
        assert not result.out, result.text  # no "Configuration verified"
        assert "other options than this apply command gives" in result.err
        assert "`reconciler apply --destroy --target keep swapped.json" in result.err
    assert "keep" in world.listing()
    # the reviewed command repeats the options: then, and only then, it runs
    done = world.run("apply", "--destroy", "--target", "keep", "swapped.json",
                     str(world.none_manifests))
    assert done.code == 0, done.text
    assert done.out.splitlines()[0].endswith("; mode destroy, targets keep.")
    assert "keep" not in world.listing() and "guard" in world.listing()


def test_a_plain_plan_is_refused_by_an_apply_that_gives_options(world: World) -> None:
    for flags in (("--destroy",), ("--refresh-only",), ("--target", "keep"),
                  ("--replace", "keep")):
        result = world.run("apply", *flags, "none.json", str(world.none_manifests))
        world.assert_untouched(result)
        assert "other options than this apply command gives" in result.err
        assert "`reconciler apply none.json " in result.err


def test_the_no_changes_plan_applies_with_its_manifests(world: World) -> None:
    done = world.run("apply", "none.json", str(world.none_manifests))
    assert done.code == 0, done.text
    assert world.listing() == world.cloud


# -- the plan with changes, edited -----------------------------------------------------------

def _swap_public_key(doc: Doc, *, redigest: bool, show: bool = False) -> None:
    raw = doc["reconciler"]["configuration"]["vault"]
    raw["public_key"] = K2
    raw["key_protection"] = None
    if redigest:
        _redigest(doc)
    if show:  # the shown change agrees too: only the manifests can tell
        after = _change(doc, "vault")["change"]["after"]
        after.update(public_key=K2, fingerprint="c8:76:05:b5:92:b6:e8:75:98:08:88:41:7d:76:88:bc",
                     key_protection=None)


def _point_at(doc: Doc, endpoint: str) -> None:
    doc["reconciler"]["provider"]["endpoint"] = endpoint


CHANGE_MUTATIONS: dict[str, Callable[[Doc], None]] = {
    "create to delete": lambda d: _delete(d, "web"),
    "no-op to delete": lambda d: _delete(d, "guard"),
    "a create dropped": lambda d: d["resource_changes"].remove(_change(d, "web")),
    "public key swapped, digest stale": lambda d: _swap_public_key(d, redigest=False),
    "public key swapped, digest fixed": lambda d: _swap_public_key(d, redigest=True),
    "remote fingerprint pin removed": lambda d: d["reconciler"]["remote"].pop("web"),
    "remove resource_changes": lambda d: d.pop("resource_changes"),
    "remove manifest_digest": lambda d: d.pop("manifest_digest"),
    "remove prior_state": lambda d: d.pop("prior_state"),
    "remove the configuration": lambda d: d["reconciler"].pop("configuration"),
    "remove the provider": lambda d: d["reconciler"].pop("provider"),
    "remove planned_at": lambda d: d["reconciler"].pop("planned_at"),
    "serial as a string": lambda d: d["prior_state"].update(serial=str(d["prior_state"]
                                                                      ["serial"])),
    "configuration as a list": lambda d: d["reconciler"].update(configuration=[]),
    "actions as a string": lambda d: _change(d, "web")["change"].update(actions="create"),
    "plan_version bumped": lambda d: d.update(plan_version=99),
    "prevent_destroy as a string": lambda d: d["reconciler"]["configuration"]["guard"].update(
        prevent_destroy="yes"),
    "a private key where the public key goes": lambda d: d["reconciler"]["configuration"][
        "vault"].update(public_key="-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n"),
}


@pytest.mark.parametrize("mutation", CHANGE_MUTATIONS, ids=str)
def test_an_edited_plan_changes_nothing(world: World, listener: Listener, mutation: str) -> None:
    doc = world.doc()
    CHANGE_MUTATIONS[mutation](doc)
    world.assert_untouched(world.apply_with_manifests(doc), listener)
    world.assert_untouched(world.apply_with_flags(doc), listener)


def test_a_consistent_forgery_is_caught_by_the_manifests(world: World) -> None:
    doc = world.doc()
    _swap_public_key(doc, redigest=True, show=True)
    refused = world.apply_with_manifests(doc)
    world.assert_untouched(refused)
    assert "are not the configuration the saved plan t.json was made from" in refused.err
    assert doc["manifest_digest"] in refused.err
    # Without the manifests nothing can tell it from a real plan: the first line says so.
    # It applies (what a saved plan alone guarantees is consistency, not provenance).
    unverified = world.apply_with_flags(doc)
    assert unverified.out.splitlines()[0].startswith(
        "Note: the configuration comes from the saved plan t.json, unverified.")
    assert unverified.code == 0, unverified.text


def test_the_endpoint_is_printed_first_and_another_one_is_refused(
        world: World, listener: Listener) -> None:
    doc = world.doc()
    _point_at(doc, listener.endpoint)
    for result in (world.apply_with_manifests(doc), world.apply_with_flags(doc)):
        world.assert_untouched(result, listener)
        assert "made for another cloud" in result.err and listener.endpoint in result.err
    # Endpoint and private key file both edited: the manifests name the real endpoint.
    doc["reconciler"]["configuration"]["vault"]["key_protection"]["private_key_file"] = str(
        world.cli.root / "other.key")
    _redigest(doc)
    world.assert_untouched(world.apply_with_manifests(doc), listener)
    ok = world.apply_with_manifests(world.doc())
    assert ok.code == 0, ok.text
    lines = ok.out.splitlines()
    assert lines[0].startswith("Configuration verified: the manifests match the saved plan")
    emu = world.cli.emulator
    assert lines[1] == (f"Saved plan targets {emu.endpoint} (project {emu.project_id}, "
                        "region not set, api v2.1).")


CUSTODY_MUTATIONS: dict[str, object] = {
    "custody endpoint pointed at the listener": "LISTENER",
    "custody endpoint empty": "",
    "custody endpoint a number": 8080,
    "custody endpoint not a URL": "kms.example.test:443/path?x",
    "custody endpoint with userinfo": "http://user:pw@127.0.0.1:1",
}


@pytest.mark.parametrize("mutation", CUSTODY_MUTATIONS, ids=str)
def test_an_edited_custody_endpoint_is_refused(world: World, listener: Listener,
                                               mutation: str) -> None:
    """The plan's custody calls carry the private key (vault's import): a custody_endpoint
    added to the provider block is checked like its endpoint, against the manifests (which
    name none: derived from the endpoint) or the flags (--endpoint: every service there)."""
    doc = world.doc()
    value = CUSTODY_MUTATIONS[mutation]
    doc["reconciler"]["provider"]["custody_endpoint"] = (
        listener.endpoint if value == "LISTENER" else value)
    for result in (world.apply_with_manifests(doc), world.apply_with_flags(doc)):
        world.assert_untouched(result, listener)
        assert "custody" in result.err, result.err
        assert "pw" not in result.err


def test_another_private_key_file_is_never_sent(world: World) -> None:
    doc = world.doc()
    doc["reconciler"]["configuration"]["vault"]["key_protection"]["private_key_file"] = str(
        world.cli.root / "other.key")
    _redigest(doc)
    refused = world.apply_with_flags(doc)  # no manifests to compare with: the key file check
    world.assert_untouched(refused)
    assert "keypair.vault: key_protection.private_key_file" in refused.err
    assert "is not the private half of this key pair's public key" in refused.err
    assert world.custody.private_key.reveal() not in refused.text
    assert world.other.private_key.reveal() not in refused.text


def test_the_custody_key_file_is_checked_again_at_apply(world: World) -> None:
    (world.cli.root / "vault.key").write_text(world.other.private_key.reveal())
    refused = world.run("apply", "plan.json")
    world.assert_untouched(refused)
    assert "is not the private half" in refused.err


@pytest.mark.parametrize("mutation", ["reformatted", "reconciler_version", "copied key file"])
def test_harmless_edits_apply_the_original_plan(world: World, mutation: str) -> None:
    doc = world.doc()
    if mutation == "reconciler_version":
        doc["reconciler_version"] = "9.9.9"
    elif mutation == "copied key file":  # the same private key at another path
        copy_path = world.cli.root / "vault-copy.key"
        copy_path.write_text((world.cli.root / "vault.key").read_text())
        doc["reconciler"]["configuration"]["vault"]["key_protection"]["private_key_file"] = str(
            copy_path)
        _redigest(doc)
    text = json.dumps(doc, sort_keys=mutation == "reformatted")
    (world.cli.root / "t.json").write_text(text)
    done = world.cli("apply", "t.json")
    assert done.code == 0, done.text
    assert "Apply complete! Resources: 2 added, 0 changed, 0 destroyed." in done.out
    assert set(world.listing()) == {*world.cloud, "web", "vault"}


# -- random edits --------------------------------------------------------------------------

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
                    | st.sampled_from(["delete", "create", "no-op", "guard", "stranger", "keep"]),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=4)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_edits_never_crash_nor_reach_beyond_the_plan(world: World,
                                                            data: st.DataObject) -> None:
    doc = world.doc()
    paths = [p for p in _paths(doc) if p]
    path = data.draw(st.sampled_from(paths))
    parent: Any = doc
    for step in path[:-1]:
        parent = parent[step]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(JSON)
    result = world.apply_with_flags(doc)
    assert result.code in (0, 1), result.text
    assert "internal error" not in result.text and "Traceback" not in result.text
    if result.code == 1:
        assert world.cli.state.read_bytes() == world.state
        assert world.listing() == world.cloud
        return
    # It applied: then it did what the original plan shows, nothing more.
    listing = world.listing()
    assert {k: v for k, v in listing.items() if k in world.cloud} == world.cloud
    assert set(listing) - set(world.cloud) <= {"web", "vault"}
    for name in set(listing) - set(world.cloud):  # undo, for the next example
        world.cli.client().delete_keypair(name)
    world.cli.state.write_bytes(world.state)
    # and no backup, or the restored state would be (rightly) refused as a rollback
    world.backup.unlink()


# -- the previous release's plans ---------------------------------------------------------

V010 = Path(__file__).parent / "data" / "plan-v0.1.0"


@pytest.fixture()
def old(emulator: Emulator, tmp_path: Path) -> Cli:
    for name in ("state.json", "state.key"):
        (tmp_path / ("reconciler.state.json" if name == "state.json" else name)).write_bytes(
            (V010 / name).read_bytes())
    (tmp_path / "reconciler.state.json").chmod(0o600)
    (tmp_path / "state.key").chmod(0o600)
    cli = Cli(emulator, tmp_path)
    (cli.manifests / "keys.yaml").write_text((V010 / "keys.yaml").read_text())
    text = (V010 / "plan.json").read_text().replace("http://EMULATOR", emulator.endpoint)
    (tmp_path / "plan.json").write_text(text.replace("PROJECT_ID", emulator.project_id))
    cli.client().import_keypair(name="alice", public_key=f"{K1} alice@laptop")
    cli.client().import_keypair(name="old", public_key=K2)
    return cli


@pytest.mark.parametrize("with_manifests", [False, True], ids=["alone", "with-manifests"])
def test_a_plan_of_release_0_1_0_still_applies(old: Cli, with_manifests: bool) -> None:
    """Its state is format 1 too: applying refuses until `state upgrade`, which keeps the
    serial, so the plan made before the upgrade is not stale."""
    assert json.loads((old.root / "plan.json").read_text())["plan_version"] == 1
    assert json.loads(old.state.read_text())["format_version"] == 1
    extra = [str(old.manifests)] if with_manifests else []
    state, writes = old.state.read_bytes(), old.writes()
    refused = old("apply", "plan.json", *extra)
    assert refused.code == 1 and "`reconciler state upgrade`" in refused.err, refused.text
    assert old.state.read_bytes() == state and old.writes() == writes
    upgraded = old("state", "upgrade")
    assert upgraded.code == 0, upgraded.text
    assert json.loads(old.state.read_text())["serial"] == json.loads(state)["serial"]
    assert json.loads(old.state.read_text())["format_version"] == 3
    done = old("apply", "plan.json", *extra)
    assert done.code == 0, done.text
    assert "Apply complete! Resources: 2 added, 0 changed, 1 destroyed." in done.out
    assert old("state", "list").out.split() == ["alice", "ci", "web"]
    assert old.client().get_keypair("old") is None
    assert old("plan", "--detailed-exitcode", str(old.manifests)).code == 0


def test_an_edited_plan_of_release_0_1_0_changes_nothing(old: Cli) -> None:
    assert old("state", "upgrade").code == 0
    doc = json.loads((old.root / "plan.json").read_text())
    _delete(doc, "alice")
    (old.root / "plan.json").write_text(json.dumps(doc))
    state = old.state.read_bytes()
    refused = old("apply", "plan.json")
    assert refused.code == 1 and "does not match what it pins: keypair.alice" in refused.err
    assert old.state.read_bytes() == state
    assert old.client().get_keypair("old") is not None
    other = old.manifests / "keys.yaml"
    other.write_text(other.read_text() + "  - name: extra\n")
    assert "are not the configuration" in old("apply", "plan.json", str(old.manifests)).err


@pytest.mark.parametrize("name", ["reconciler.state.json", "reconciler.state.json.backup",
                                  "state.key"])
def test_a_plan_is_never_saved_over_the_state_or_its_key(emulator: Emulator, tmp_path: Path,
                                                         name: str) -> None:
    cli = Cli(emulator, tmp_path)
    cli.write("keypairs:\n  - name: web\n    generate: ed25519\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.write("keypairs:\n  - name: web\n    generate: ed25519\n  - name: db\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0  # a backup too
    cli.write("keypairs:\n  - name: web\n    generate: ed25519\n")
    target = tmp_path / name
    before = target.read_bytes()
    saved = cli("plan", "--out", str(target), str(cli.manifests))
    assert saved.code == 1, saved.text
    assert "the plan was not saved" in saved.err and "Traceback" not in saved.text
    assert target.read_bytes() == before
    assert "PRIVATE KEY" in cli("output", "web", "--private-key").out


def test_a_saved_plan_whose_target_was_edited_moves_nothing(emulator: Emulator,
                                                            tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path)
    cli.write("keypairs:\n  - name: keep\n    generate: ed25519\n  - name: web\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    saved = cli.root / "none.json"
    assert cli("plan", "--out", str(saved), str(cli.manifests)).code == 0
    doc = json.loads(saved.read_text())
    doc["reconciler"]["provider"]["target"] = "other"
    edited = cli.root / "edited.json"
    edited.write_text(json.dumps(doc))
    before = cli.state.read_bytes()
    for argv in ((str(edited), str(cli.manifests)), (str(edited),)):
        result = cli("apply", *argv)
        assert result.code == 1 and "records its key pairs under target 'other'" in result.err, \
            result.text
        assert cli.state.read_bytes() == before
