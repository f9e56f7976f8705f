"""A state changed by someone without the key is refused by everything that writes or reveals.

The attacker can write the state file (a shared directory, a bucket, a repository) and knows
the format: they change a readable field, or drop an entry, and recompute the unkeyed
checksum. The MAC (format 2) catches it: apply, output --private-key, state rm and a plan
with the key refuse with exit 1 and leave every file byte for byte as it was; a plan without
the key still works and says it read the state unverified.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clihelp import Cli
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_state_support import at, snapshot

from reconciler.emulator.server import Emulator
from reconciler.state.codec import canonical, checksum

ALICE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN5d6JI55UqImGecHAd2pPjOcLfW0CN4bXuPVapOIu9U alice@lap"
MANIFEST = f"""keypairs:
  - name: deploy
    generate: ed25519
  - name: web
  - name: alice
    public_key: "{ALICE}"
"""
OTHER_PUBLIC = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJmN9aXz0l3bGb1gH0BvK4bR3vWcCwH1x8z0Yc1"
                "oqz7r mallory@box")
NAMES = ("deploy", "web", "alice")
Edit = Callable[[dict[str, Any]], None]


@pytest.fixture()
def applied(emulator: Emulator, tmp_path: Path) -> Cli:
    cli = Cli(emulator, tmp_path)
    cli.write(MANIFEST)
    result = cli("apply", "--auto-approve", str(cli.manifests))
    assert result.code == 0, result.text
    return cli


def _set(name: str, field: str, value: object) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        doc["keypairs"][at(name)][field] = value
    return edit


def _drop(name: str) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        del doc["keypairs"][at(name)]
    return edit


def _top(field: str, value: object) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        doc[field] = value
    return edit


names = st.sampled_from(NAMES)
edits = st.one_of(
    st.builds(lambda n, v: _set(n, "fingerprint_sha256", "SHA256:" + v), names,
              st.text("ABCDEFabcdef0123456789+/", min_size=43, max_size=43)),
    st.builds(lambda n, v: _set(n, "fingerprint_md5", v), names,
              st.from_regex(r"([0-9a-f]{2}:){15}[0-9a-f]{2}", fullmatch=True)),
    st.builds(_drop, names),
    st.builds(lambda d: _top("serial", 1 + d), st.integers(1, 10**6)),
    st.builds(lambda u: _top("lineage", str(u)), st.uuids()),
    st.builds(lambda n, s: _set(n, "status", s), names, st.sampled_from(["tainted", "pending"])),
    st.builds(lambda n: _set(n, "public_key", OTHER_PUBLIC), names),
    st.builds(lambda n: _set(n, "prevent_destroy", True), names),
    st.builds(lambda n: _set(n, "private_key", None), st.sampled_from(["deploy", "web"])),
)


def _tamper(path: Path, edit: Edit) -> bytes:
    """Apply ``edit`` as an attacker would: recompute the checksum, keep the old MAC."""
    doc = json.loads(path.read_text())
    edit(doc)
    doc["checksum"] = checksum(doc)
    data = (json.dumps(doc, indent=2) + "\n").encode()
    path.write_bytes(data)
    return data


def _drop_key(cli: Cli) -> None:
    """The environment of a pull-request plan: cloud credentials, no state key."""
    del cli.environ["RECONCILER_KEY_FILE"]
    cli.environ["HOME"] = str(cli.root / "no-home")


def _refusals(cli: Cli) -> None:
    before = snapshot(cli.root)
    for argv in (["apply", "--auto-approve", str(cli.manifests)],
                 ["output", "deploy", "--private-key"],
                 ["state", "rm", "alice"],
                 ["plan", str(cli.manifests)]):
        result = cli(*argv)
        assert result.code == 1, (argv, result.text)
        assert "failed its integrity check" in result.err, (argv, result.err)
        assert "backup" in result.err and "Traceback" not in result.text
        assert "PRIVATE KEY" not in result.text
        assert snapshot(cli.root) == before, argv


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edit=edits)
def test_any_edit_with_the_checksum_recomputed_is_refused(applied: Cli, edit: Edit) -> None:
    good = applied.state.read_bytes()
    try:
        assume(_tamper(applied.state, edit) != good)
        _refusals(applied)
        with_key = dict(applied.environ)
        _drop_key(applied)
        try:
            before = snapshot(applied.root)
            plan = applied("plan", str(applied.manifests))
            assert "was read unverified" in plan.err, plan.text
            assert plan.code == 0 or "not managed" in plan.err, plan.text  # an entry dropped
            assert snapshot(applied.root) == before
        finally:
            applied.environ.clear()
            applied.environ.update(with_key)
    finally:
        applied.state.write_bytes(good)


def test_an_untouched_state_is_not_refused(applied: Cli) -> None:
    plan = applied("plan", "--detailed-exitcode", str(applied.manifests))
    assert plan.code == 0 and "unverified" not in plan.err, plan.text
    assert applied("output", "deploy", "--private-key").code == 0


def test_a_mac_copied_from_another_serial_does_not_fit(applied: Cli) -> None:
    old = json.loads(applied.state.read_text())
    assert applied("state", "rm", "alice").code == 0  # serial 2, with its own MAC
    new = json.loads(applied.state.read_text())
    old["serial"], old["mac"] = new["serial"], new["mac"]  # old content, a fresh serial
    old["checksum"] = checksum(old)
    applied.state.write_text(json.dumps(old, indent=2))
    _refusals(applied)


def test_a_forged_journal_line_is_refused(applied: Cli) -> None:
    journal = applied.state.with_name(applied.state.name + ".journal")
    doc = json.loads(applied.state.read_text())
    line = {"v": 2, "lineage": doc["lineage"], "base": doc["serial"], "op": "forget",
            "name": "deploy", "mac": "0" * 64}
    journal.write_text(json.dumps(line) + "\n")
    _refusals(applied)


def test_a_downgrade_to_format_1_without_a_mac_is_still_refused_for_format_2_journals(
        applied: Cli) -> None:
    # Format 1 journal lines (unkeyed sums) are read only on top of a format 1 state.
    journal = applied.state.with_name(applied.state.name + ".journal")
    doc = json.loads(applied.state.read_text())
    body = {"v": 1, "lineage": doc["lineage"], "base": doc["serial"], "op": "forget",
            "name": "deploy"}
    body["sum"] = hashlib.sha256(canonical(body)).hexdigest()
    journal.write_bytes(canonical(body) + b"\n")
    before = snapshot(applied.root)
    result = applied("apply", "--auto-approve", str(applied.manifests))
    assert result.code == 1 and "format 1 journal lines" in result.err, result.text
    assert snapshot(applied.root) == before


def test_plan_without_the_key_says_unverified_in_every_format(applied: Cli) -> None:
    _drop_key(applied)
    text = applied("plan", str(applied.manifests))
    assert text.code == 0 and "was read unverified" in text.err
    as_json = applied("plan", "--format", "json", str(applied.manifests))
    assert as_json.code == 0
    assert json.loads(as_json.out)["reconciler"]["state_verified"] is False
    markdown = applied("plan", "--format", "markdown", str(applied.manifests))
    assert markdown.code == 0 and "read unverified" in markdown.out
    listed = applied("state", "list")
    assert listed.code == 0 and "deploy" in listed.out and "read unverified" in listed.err
    shown = applied("output", "deploy")
    assert shown.code == 0 and "read unverified" in shown.err
    secret = applied("output", "deploy", "--private-key")
    assert secret.code == 1 and "PRIVATE KEY" not in secret.text
    assert not (applied.root / "no-home").exists()  # reading made no key


def test_plan_with_the_key_says_verified_in_json(applied: Cli) -> None:
    as_json = applied("plan", "--format", "json", str(applied.manifests))
    assert json.loads(as_json.out)["reconciler"]["state_verified"] is True
    markdown = applied("plan", "--format", "markdown", str(applied.manifests))
    assert "unverified" not in markdown.out


# -- a rollback to an older authenticated copy ------------------------------------------------

def _two_serials(emulator: Emulator, tmp_path: Path) -> tuple[Cli, Path]:
    """A state at serial 2 whose backup (serial 1) lacks a2, a key pair only serial 2 holds
    the generated private key of."""
    cli = Cli(emulator, tmp_path)
    cli.write("keypairs:\n  - name: a1\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.write("keypairs:\n  - name: a1\n  - name: a2\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    backup = cli.state.with_name(cli.state.name + ".backup")
    assert json.loads(backup.read_text())["serial"] < json.loads(cli.state.read_text())["serial"]
    return cli, backup


def test_a_state_rolled_back_to_its_backup_is_refused(emulator: Emulator,
                                                      tmp_path: Path) -> None:
    """The backup (serial 1) copied over the state (serial 2) is a valid, authenticated file;
    read as the truth, a2's private key would be gone without a word."""
    cli, backup = _two_serials(emulator, tmp_path)
    cli.state.write_bytes(backup.read_bytes())
    before, writes = snapshot(tmp_path), cli.writes()
    said = (f"{cli.state} is at serial 1 but its backup {backup} is at serial 1 of the same "
            "state")
    listed = cli("state", "list")  # a read says so, and reads
    assert listed.code == 0 and listed.out.split() == ["a1"], listed.text
    assert f"Warning: {said}" in listed.err
    for argv in (("apply", "--auto-approve", str(cli.manifests)), ("state", "rm", "a1"),
                 ("output", "a1", "--private-key")):
        result = cli(*argv)
        assert result.code == 1, (argv, result.text)
        assert said in result.err and f"move {backup} aside" in result.err, result.err
        assert "Traceback" not in result.text
        assert snapshot(tmp_path) == before and cli.writes() == writes
    # restored on purpose: with the backup moved aside it is the state again (and the plan
    # shows what the rollback lost: a2 is in the cloud, unmanaged)
    backup.rename(tmp_path / "kept.backup")
    again = cli("state", "rm", "a1")
    assert again.code == 0 and "rollback" not in again.err, again.text


def test_an_older_copy_is_refused_while_the_backup_is_newer(emulator: Emulator,
                                                            tmp_path: Path) -> None:
    cli, backup = _two_serials(emulator, tmp_path)
    first = cli.state.read_bytes()  # serial 2
    cli.write("keypairs:\n  - name: a1\n  - name: a2\n  - name: a3\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    older = json.loads(backup.read_text())["serial"]
    cli.state.write_bytes(first)  # an old copy from somewhere
    result = cli("state", "rm", "a1")
    assert result.code == 1 and f"its backup {backup} is at serial {older}" in result.err


def test_the_crash_window_of_a_commit_is_not_a_rollback(emulator: Emulator,
                                                        tmp_path: Path) -> None:
    """A commit links the state as its backup before it replaces the state: killed between
    the two, both names are the same file. That is no rollback."""
    cli, backup = _two_serials(emulator, tmp_path)
    backup.unlink()
    backup.hardlink_to(cli.state)
    result = cli("apply", "--auto-approve", str(cli.manifests))
    assert result.code == 0 and "No changes." in result.out, result.text
