"""A plan's lists start once the state is locked and run while the state is read.

Through the real CLI and the emulator over HTTP: each list is sent once (the plan takes the
list it started, never lists again), ``--in`` lists only the targets it names (and nothing
before it is refused, when it names a target not declared), a state that cannot be read
still ends the run with its own error, at once (a list still waiting on a silent endpoint is
not waited for), an interrupt during a list ends the process at once, and two declared
targets of one project are refused before any request.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from reconciler.api.flavours import make_api
from reconciler.api.protocol import Api, ApiSettings, Credentials, KeyPairApi
from reconciler.emulator.server import Emulator
from reconciler.model import Secret
from reconciler.refresh import EarlyLists, listed
from tests.clihelp import Cli
from tests.hostile_server import Hostile
from tests.reliability_support import cli_argv, subprocess_env

SOUTH = "0e1a7e5outh000000000000000000000"


def _cli(emulator: Emulator, tmp_path: Path, *, same_project: bool = False) -> Cli:
    emulator.add_project(SOUTH, region="cn-south-1")
    south, region = (emulator.project_id, "cn-north-4") if same_project else (SOUTH, "cn-south-1")
    cli = Cli(emulator, tmp_path)
    cli.write("targets:\n"
              f"  - {{name: north, region: cn-north-4, project_id: {emulator.project_id}, "
              "api: kps}\n"
              f"  - {{name: south, region: {region}, project_id: {south}, api: v2.1}}\n"
              "keypairs:\n  - {name: web, generate: ed25519}\n")
    return cli


def _run(cli: Cli, *argv: str) -> tuple[int, str]:
    r = cli(*argv, globals_=False,
            extra=["--state", str(cli.state), "--endpoint", cli.emulator.endpoint])
    return r.code, r.text


def _lists(emulator: Emulator, project: str) -> int:
    return emulator.counters(project)["list"]


def _settled() -> None:
    """Wait for the list threads of runs before (in this process) to end: a run that ends on
    an error does not wait for them, and a request they send late would count against the
    next test's emulator."""
    for thread in threading.enumerate():
        if thread.name.startswith("refresh-"):
            thread.join(timeout=30)


def test_each_target_is_listed_once_and_in_lists_only_what_it_names(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    code, text = _run(cli, "apply", "--auto-approve", str(cli.manifests))
    assert code == 0, text
    before = _lists(emulator, emulator.project_id), _lists(emulator, SOUTH)
    code, text = _run(cli, "plan", "--detailed-exitcode", str(cli.manifests))
    assert code == 0 and "No changes." in text, text
    assert (_lists(emulator, emulator.project_id), _lists(emulator, SOUTH)) == (
        before[0] + 1, before[1] + 1)
    code, text = _run(cli, "plan", "--detailed-exitcode", "--in", "north", str(cli.manifests))
    assert code == 0, text
    assert (_lists(emulator, emulator.project_id), _lists(emulator, SOUTH)) == (
        before[0] + 2, before[1] + 1)


def test_an_unknown_in_name_is_refused_before_any_list(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    code, text = _run(cli, "apply", "--auto-approve", str(cli.manifests))
    assert code == 0, text
    _settled()
    before = emulator.counters()["total"]
    code, text = _run(cli, "plan", "--in", "north", "--in", "bogus", str(cli.manifests))
    assert code == 1 and "bogus" in text and "Traceback" not in text, text
    assert emulator.counters()["total"] == before  # north's list was not started either


def test_a_state_that_cannot_be_read_ends_the_plan_with_its_own_error(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    code, text = _run(cli, "apply", "--auto-approve", str(cli.manifests))
    assert code == 0, text
    cli.state.write_text(cli.state.read_text()[:-40])  # truncated
    emulator.set_faults(latency_ms=300)  # the lists are still running when the read fails
    started = time.monotonic()
    code, text = _run(cli, "plan", str(cli.manifests))
    emulator.set_faults(latency_ms=0)
    assert code == 1, text
    assert "is not a valid state file" in text and "Traceback" not in text
    assert time.monotonic() - started < 30
    _settled()


def test_two_targets_of_one_project_are_refused_before_any_request(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path, same_project=True)
    _settled()
    before = emulator.counters()["total"]
    code, text = _run(cli, "plan", str(cli.manifests))
    assert code == 1, text
    assert "are the same project" in text
    assert emulator.counters()["total"] == before


def test_a_list_started_early_is_taken_once_and_only_through_its_own_api(
        emulator: Emulator) -> None:
    settings = ApiSettings(api=Api.KPS, endpoint=emulator.endpoint,
                           project_id=emulator.project_id,
                           credentials=Credentials(emulator.ak, Secret(emulator.sk)),
                           region="cn-north-4")
    api, other = make_api(settings), make_api(settings)
    before = _lists(emulator, emulator.project_id)
    early = EarlyLists({"north": api})
    try:
        assert early.take("north", other) is None  # another API: the run lists afresh
        snapshot = listed("north", api, early)
        assert _lists(emulator, emulator.project_id) == before + 1  # the early list only
        assert snapshot.keypairs == listed("north", api, None).keypairs
        assert _lists(emulator, emulator.project_id) == before + 2
        assert early.take("north", api) is None  # taken once
        assert early.adopt("north") is api and early.adopted == {"north"}
    finally:
        early.close()
        early.close()  # closing twice is harmless
        api.close()
        other.close()


HOLD = 12.0  # how long the silent endpoint holds each request before it refuses it


def _held(conn: socket.socket) -> None:
    """An endpoint that says nothing for ``HOLD`` seconds, then refuses the request."""
    time.sleep(HOLD)
    body = b'{"error_code": "APIGW.0101", "error_msg": "no such API"}'
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)


def _until_sent(silent: Hostile) -> None:
    """Wait (at most ``HOLD / 2``) until the silent endpoint holds a request."""
    deadline = time.monotonic() + HOLD / 2
    while not silent.requests and time.monotonic() < deadline:
        time.sleep(0.01)


def _one_target(emulator: Emulator, tmp_path: Path) -> Cli:
    cli = Cli(emulator, tmp_path)
    cli.write("keypairs:\n  - {name: web, generate: ed25519}\n")
    r = cli("apply", "--auto-approve", str(cli.manifests))
    assert r.code == 0, r.text
    return cli


def test_a_state_error_is_not_held_up_by_a_list_still_waiting_on_a_silent_endpoint(
        emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = _one_target(emulator, tmp_path)
    cli.state.write_text(cli.state.read_text()[:-40])  # truncated
    silent = Hostile(_held)
    started_lists = EarlyLists.__init__

    def once_sent(self: EarlyLists, apis: Mapping[str, KeyPairApi], **options: int) -> None:
        """The lists start, and the state is read only once the silent endpoint holds the
        request: on a slow machine the read could otherwise fail before the list is sent."""
        started_lists(self, apis, **options)
        _until_sent(silent)

    monkeypatch.setattr(EarlyLists, "__init__", once_sent)
    try:
        started = time.monotonic()
        r = cli("plan", str(cli.manifests), globals_=False,
                extra=["--state", str(cli.state), "--endpoint", silent.endpoint,
                       "--project-id", emulator.project_id, "--api", "v2.1"])
        took = time.monotonic() - started
    finally:
        silent.close()
    assert r.code == 1 and "is not a valid state file" in r.text, r.text
    assert silent.requests  # the list had been sent
    assert took < HOLD / 2, took


def test_an_interrupt_during_the_early_list_ends_the_process_at_once(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = _one_target(emulator, tmp_path)
    silent = Hostile(_held)
    argv = [silent.endpoint if a == emulator.endpoint else a
            for a in cli_argv(cli, "plan", str(cli.manifests))]
    proc = subprocess.Popen(argv, env=subprocess_env(cli), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _until_sent(silent)
        assert silent.requests, "the list was never sent"
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, err = proc.communicate(timeout=HOLD * 3)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        silent.close()
    assert proc.returncode == 1 and "Interrupted" in err, err
    assert "Traceback" not in err
    assert took < HOLD / 2, took
