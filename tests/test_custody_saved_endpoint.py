"""A saved plan of one target sends its custody calls where the reviewed plan said.

A single named v2.1 target whose ``endpoints.kms`` is a recording proxy in front of the
emulator (``tests.mutating_proxy``, forwarding every request unchanged): the private-key
import must go through the proxy, both for ``apply PATH`` and for ``apply PLANFILE``; a
plan, manifests or flags that would send it elsewhere (a recording listener) are refused
with nothing sent to anyone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.emulator.server import Emulator
from tests.clihelp import Cli, Result
from tests.mutating_proxy import Proxy, Rule, mutating_proxy
from tests.test_planfile_tamper import Listener

GENERATED = "keypairs:\n  - name: web\n    generate: ed25519\n"
CUSTODY = GENERATED + "    key_protection: {encryption: {type: default}}\n"


@pytest.fixture()
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture()
def imports() -> Rule:
    """Counts the private-key imports that reach the proxy (and passes them on)."""
    return Rule("POST", r"/keypairs/private-key/import", mutate=lambda status, body: (
        status, body))


@pytest.fixture()
def proxy(emulator: Emulator, imports: Rule) -> Iterator[Proxy]:
    with mutating_proxy(emulator.endpoint, [imports]) as running:
        yield running


def _target(emulator: Emulator, kms: str | None) -> str:
    endpoints = f"ecs: '{emulator.endpoint}'" + (f", kms: '{kms}'" if kms else "")
    return ("targets:\n"
            f"  - {{name: solo, region: cn-north-4, project_id: {emulator.project_id}, "
            f"api: v2.1, endpoints: {{{endpoints}}}}}\n")


class World:
    """One target, its key pair created without custody, and a plan that adds custody."""

    def __init__(self, cli: Cli, proxy: Proxy) -> None:
        self.cli, self.proxy = cli, proxy
        cli.write(_target(cli.emulator, proxy.endpoint) + GENERATED)
        assert self.run("apply", "--auto-approve", str(cli.manifests)).code == 0
        cli.write(_target(cli.emulator, proxy.endpoint) + CUSTODY)
        made = self.run("plan", "--out", "c.json", str(cli.manifests))
        assert made.code == 0 and "0 to add, 1 to change" in made.out, made.text
        self.state = cli.state.read_bytes()
        self.requests = cli.emulator.counters()["total"]

    def run(self, *argv: str, extra: tuple[str, ...] = ()) -> Result:
        """The CLI with only --state: where to go comes from the manifests or the plan."""
        return self.cli(*argv, globals_=False, extra=["--state", str(self.cli.state), *extra])

    def doc(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.cli.root / "c.json").read_text())
        return loaded

    def write(self, doc: dict[str, Any]) -> str:
        (self.cli.root / "t.json").write_text(json.dumps(doc, indent=2))
        return "t.json"

    def assert_refused(self, result: Result, imports: Rule, listener: Listener) -> None:
        assert result.code == 1, result.text
        assert "Traceback" not in result.text and "internal error" not in result.text
        assert "Nothing was sent" in result.err, result.err
        assert "Credentials:" not in result.err  # refused before any credential is used
        assert imports.hits == 0 and listener.connections == 0
        assert self.cli.emulator.counters()["total"] == self.requests  # not even a refresh
        assert self.cli.state.read_bytes() == self.state
        assert not self.cli.emulator.store.get("web").key_protection


@pytest.fixture()
def world(emulator: Emulator, tmp_path: Path, proxy: Proxy) -> World:
    return World(Cli(emulator, tmp_path), proxy)


def test_a_single_targets_endpoints_kms_takes_its_custody_calls(
        emulator: Emulator, tmp_path: Path, proxy: Proxy, imports: Rule) -> None:
    cli = Cli(emulator, tmp_path)
    cli.write(_target(emulator, proxy.endpoint) + GENERATED)
    run = ("--state", str(cli.state))
    assert cli("apply", "--auto-approve", str(cli.manifests), globals_=False,
               extra=list(run)).code == 0
    cli.write(_target(emulator, proxy.endpoint) + CUSTODY)
    done = cli("apply", "--auto-approve", str(cli.manifests), globals_=False, extra=list(run))
    assert done.code == 0, done.text
    assert imports.hits == 1, proxy.seen
    assert emulator.store.get("web").key_protection


def test_the_saved_plan_records_the_custody_endpoint_and_applies_there(
        world: World, imports: Rule) -> None:
    provider = world.doc()["reconciler"]["provider"]
    assert provider["custody_endpoint"] == world.proxy.endpoint
    assert provider["endpoint"] == world.cli.emulator.endpoint
    done = world.run("apply", "c.json")  # nothing names a custody endpoint: the plan's
    assert done.code == 0, done.text
    emu = world.cli.emulator
    assert done.out.splitlines()[1] == (
        f"Saved plan targets {emu.endpoint} (project {emu.project_id}, region cn-north-4, "
        f"api v2.1; custody calls at {world.proxy.endpoint}).")
    assert imports.hits == 1, world.proxy.seen
    assert emu.store.get("web").key_protection


def test_the_saved_plan_applies_with_its_manifests(world: World, imports: Rule) -> None:
    done = world.run("apply", "c.json", str(world.cli.manifests))
    assert done.code == 0, done.text
    assert f"; custody calls at {world.proxy.endpoint})." in done.out
    assert imports.hits == 1


def test_a_plan_without_endpoints_kms_records_none(emulator: Emulator, tmp_path: Path) -> None:
    """Byte for byte the plan it was: no custody_endpoint, the targets line as before."""
    cli = Cli(emulator, tmp_path)
    for body in (GENERATED, CUSTODY):
        cli.write(_target(emulator, None) + body)
        made = cli("plan", "--out", "p.json", str(cli.manifests), globals_=False,
                   extra=["--state", str(cli.state)])
        assert made.code == 0, made.text
        if body is GENERATED:
            assert cli("apply", "p.json", globals_=False,
                       extra=["--state", str(cli.state)]).code == 0
    provider = json.loads((tmp_path / "p.json").read_text())["reconciler"]["provider"]
    assert list(provider) == ["api", "endpoint", "region", "project_id", "target"]
    done = cli("apply", "p.json", str(cli.manifests), globals_=False,
               extra=["--state", str(cli.state)])
    assert done.code == 0, done.text
    assert "custody calls at" not in done.out
    assert done.out.splitlines()[1].endswith(", region cn-north-4, api v2.1).")


def test_manifests_edited_to_another_custody_host_are_refused(
        world: World, imports: Rule, listener: Listener) -> None:
    """The digest does not cover endpoints: endpoints.kms edited after the review."""
    world.cli.write(_target(world.cli.emulator, listener.endpoint) + CUSTODY)
    refused = world.run("apply", "c.json", str(world.cli.manifests))
    world.assert_refused(refused, imports, listener)
    assert (f"to '{world.proxy.endpoint}' (provider.custody_endpoint); this run's flags, "
            f"environment or manifests send them to '{listener.endpoint}' (endpoints.kms of "
            "target 'solo' in ") in refused.err, refused.err
    world.cli.write(_target(world.cli.emulator, None) + CUSTODY)  # endpoints.kms dropped
    refused = world.run("apply", "c.json", str(world.cli.manifests))
    world.assert_refused(refused, imports, listener)
    assert "target 'solo' names no endpoints.kms" in refused.err, refused.err


def test_endpoint_alone_puts_custody_there_and_is_refused(
        world: World, imports: Rule, listener: Listener) -> None:
    """--endpoint alone means every service at that URL: not where the plan sends the key."""
    for paths in ((), (str(world.cli.manifests),)):
        refused = world.run("apply", "c.json", *paths,
                            extra=("--endpoint", world.cli.emulator.endpoint))
        world.assert_refused(refused, imports, listener)
        assert f"send them to '{world.cli.emulator.endpoint}' (--endpoint)" in refused.err
    world.cli.environ["RECONCILER_ENDPOINT"] = world.cli.emulator.endpoint
    refused = world.run("apply", "c.json", str(world.cli.manifests))
    world.assert_refused(refused, imports, listener)
    assert "(RECONCILER_ENDPOINT)" in refused.err, refused.err


@pytest.mark.parametrize("edit", ["another host", "removed"])
def test_a_plan_edited_to_another_custody_host_is_refused(
        world: World, imports: Rule, listener: Listener, edit: str) -> None:
    doc = world.doc()
    provider = doc["reconciler"]["provider"]
    if edit == "another host":
        provider["custody_endpoint"] = listener.endpoint
    else:  # as a plan made before custody endpoints were recorded
        del provider["custody_endpoint"]
    shown = world.write(doc)
    refused = world.run("apply", shown, str(world.cli.manifests))
    world.assert_refused(refused, imports, listener)
    assert "custody_endpoint" in refused.err, refused.err
    if edit == "another host":
        refused = world.cli("apply", shown)  # with the flags: --endpoint, every service there
        world.assert_refused(refused, imports, listener)


def test_manifests_edited_to_another_ecs_host_are_refused(
        world: World, imports: Rule, listener: Listener) -> None:
    """A targets block of one target is compared with the plan as a provider block is: its
    endpoints.ecs edited after the review (the digest does not cover endpoints) is refused."""
    body = (_target(world.cli.emulator, world.proxy.endpoint)
            .replace(f"ecs: '{world.cli.emulator.endpoint}'", f"ecs: '{listener.endpoint}'"))
    world.cli.write(body + CUSTODY)
    refused = world.run("apply", "c.json", str(world.cli.manifests))
    assert refused.code == 1, refused.text
    assert "another cloud" in refused.err and listener.endpoint in refused.err, refused.err
    assert "Nothing was sent" in refused.err
    assert imports.hits == 0 and listener.connections == 0
    assert world.cli.emulator.counters()["total"] == world.requests
    assert world.cli.state.read_bytes() == world.state
