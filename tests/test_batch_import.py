"""KPS batch import: the emulator's endpoint, the client's reading of its answers, and apply
creating key pairs ten at a time through it (real HTTP to the emulator, real keys).

A partial answer records the successes and reports each refusal by name (exit 1); a lost or
unreadable answer is re-read by one list and only names still absent are sent again, so
nothing is made twice; the private keys generated here are in state before their group is
sent.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import pytest

from reconciler import keys
from reconciler.api.protocol import ImportRequest
from reconciler.emulator.handlers import ApiCall, Backend, Reply
from reconciler.emulator.server import Emulator
from reconciler.errors import OutcomeUnknownError
from reconciler.model import Encryption, KeyProtection, Secret
from tests.clihelp import Cli
from tests.mutating_proxy import Rule, mutating_proxy
from tests.reliability_support import assert_clean, assert_private_keys_match_cloud, tallied

NO_CHANGES = "No changes. Your infrastructure matches the configuration."
BATCH = r"^/v3/[^/]+/keypairs/batch-import$"


def _generated(count: int, *, imported: dict[str, str] | None = None) -> str:
    lines = ["keypairs:"]
    lines += [f"  - {{name: g{i:03d}, generate: ed25519}}" for i in range(count)]
    for name, public in (imported or {}).items():
        lines += [f"  - name: {name}", f"    public_key: {public}"]
    return "\n".join(lines) + "\n"


@pytest.fixture()
def cli(emulator: Emulator, tmp_path: Path) -> Cli:
    return Cli(emulator, tmp_path, api="kps")


def _state_public_keys(cli: Cli) -> dict[str, str]:
    doc = json.loads(cli.state.read_text())
    return {address.rsplit("keypair.", 1)[-1].split("[")[0]: entry["public_key"]
            for address, entry in doc["keypairs"].items()}


# -- the emulator and the client -----------------------------------------------------------

def test_each_entry_is_made_or_refused_by_name(cli: Cli) -> None:
    api = cli.client()
    taken = keys.generate_keypair("ed25519").public_key
    api.import_keypair(name="taken", public_key=taken)
    good = [keys.generate_keypair("ed25519") for _ in range(2)]
    custody = keys.generate_keypair("ed25519")
    answer = api.import_keypairs([
        ImportRequest(name="good-0", public_key=good[0].public_key),
        ImportRequest(name="bad-key", public_key="ssh-ed25519 AAAAnotakey"),
        ImportRequest(name="taken", public_key=good[1].public_key),
        ImportRequest(name="good-1", public_key=good[1].public_key, scope="domain"),
        ImportRequest(name="kept", public_key=custody.public_key,
                      key_protection=KeyProtection(Encryption("default")),
                      private_key=custody.private_key),
    ])
    assert sorted(answer.imported) == ["good-0", "good-1", "kept"]
    assert answer.unanswered == ()
    assert set(answer.refused) == {"bad-key", "taken"}
    assert "invalid key" in answer.refused["bad-key"]
    assert "already exists" in answer.refused["taken"]
    assert keys.same_key(answer.imported["good-1"].public_key, good[1].public_key)
    assert answer.imported["good-1"].scope == "domain"
    listed = api.list_keypairs().keypairs
    assert sorted(listed) == ["good-0", "good-1", "kept", "taken"]
    assert listed["kept"].key_protection is True and listed["good-0"].key_protection is False
    assert keys.same_key(listed["taken"].public_key, taken)  # never overwritten
    exported = api.export_private_key("kept")
    assert exported is not None and exported.reveal() == custody.private_key.reveal()
    counters = cli.emulator.counters()
    assert counters["batch_import"] == 1 and counters["import"] == 1


def test_the_client_refuses_more_than_ten_or_a_name_twice(cli: Cli) -> None:
    api = cli.client()
    public = keys.generate_keypair("ed25519").public_key
    with pytest.raises(ValueError, match="1 to 10"):
        api.import_keypairs([ImportRequest(name=f"k{i}", public_key=public) for i in range(11)])
    with pytest.raises(ValueError, match="1 to 10"):
        api.import_keypairs([ImportRequest(name="k", public_key=public)] * 2)
    assert cli.emulator.counters().get("batch_import", 0) == 0


def test_a_key_pair_named_batch_import_is_still_a_key_pair(cli: Cli) -> None:
    api = cli.client()
    public = keys.generate_keypair("ed25519").public_key
    api.import_keypair(name="batch-import", public_key=public)
    shown = api.get_keypair("batch-import")
    assert shown is not None and keys.same_key(shown.public_key, public)
    assert api.delete_keypair("batch-import")


def test_an_answer_naming_a_key_pair_not_asked_for_is_an_unknown_outcome(cli: Cli) -> None:
    def foreign(status: int, body: bytes) -> tuple[int, bytes]:
        doc = json.loads(body)
        doc["succeeded_keypairs"][0]["keypair"]["name"] = "someone-else"
        return status, json.dumps(doc).encode()

    rule = Rule("POST", BATCH, mutate=foreign)
    with mutating_proxy(cli.emulator.endpoint, [rule]) as proxy:
        api = cli.client()
        api.http.endpoint = proxy.endpoint  # type: ignore[attr-defined]
        pairs = [keys.generate_keypair("ed25519") for _ in range(2)]
        with pytest.raises(OutcomeUnknownError, match="not asked for") as lost:
            api.import_keypairs([ImportRequest(name=f"k{i}", public_key=p.public_key)
                                 for i, p in enumerate(pairs)])
    assert "re-read the key pairs" in str(lost.value)
    assert rule.hits == 1
    assert sorted(cli.client().list_keypairs().keypairs) == ["k0", "k1"]  # it did act


# -- apply ---------------------------------------------------------------------------------

def test_apply_creates_ten_at_a_time_and_keeps_every_private_key(cli: Cli) -> None:
    given = {f"i{i}": keys.generate_keypair("ed25519").public_key for i in range(3)}
    cli.write(_generated(22, imported=given) + "  - name: cloud-made\n")
    with tallied(cli.emulator) as tally:
        applied = cli("apply", "--auto-approve", "--parallelism", "3", str(cli.manifests))
    assert applied.code == 0, applied.text
    counters = cli.emulator.counters()
    assert counters["batch_import"] == math.ceil(25 / 10)  # 22 generated and 3 given
    assert counters["import"] == 0 and counters["create"] == 1  # the cloud's own: alone
    names = [f"g{i:03d}" for i in range(22)]
    for name in [*names, *given, "cloud-made"]:
        assert f"keypair.{name}: Creation complete after" in applied.out
    assert set(tally.made().values()) == {1}
    assert_private_keys_match_cloud(cli, [*names, "cloud-made"])
    again = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert again.code == 0 and NO_CHANGES in again.out, again.text


class _Meanwhile(Backend):
    """The emulator's backend; before the first batch import, someone else imports keys of
    their own under ``names`` (a race no plan could see)."""

    def __init__(self, inner: Backend, names: list[str]) -> None:
        super().__init__(projects=inner.projects, user_id=inner.user_id, keygen=inner.keygen)
        self.names = names
        self._lock = threading.Lock()  # batches arrive on several threads: race only once

    def handle(self, call: ApiCall, *, body: Any, query: Any, headers: Any) -> Reply:
        if call.operation == "batch_import":
            with self._lock:
                names, self.names = self.names, []
                for name in names:
                    theirs = keys.generate_keypair("ed25519").public_key
                    super().handle(ApiCall("kps", "import", call.project_id),
                                   body={"keypair": {"name": name, "public_key": theirs}},
                                   query={}, headers={})
        return super().handle(call, body=body, query=query, headers=headers)


def _apply_through(cli: Cli, backend: Backend) -> Any:
    """One apply with the emulator's cloud side replaced by ``backend``, then put back."""
    inner = cli.emulator.backend
    cli.emulator.backend = backend
    try:
        return cli("apply", "--auto-approve", str(cli.manifests))
    finally:
        cli.emulator.backend = inner


def test_a_partial_answer_records_the_successes_and_reports_each_refusal_by_name(
        cli: Cli) -> None:
    cli.write(_generated(15))
    raced = ["g003", "g011"]
    applied = _apply_through(cli, _Meanwhile(cli.emulator.backend, list(raced)))
    assert_clean(applied.text)
    assert applied.code == 1, applied.text
    errors = [ln for ln in applied.err.splitlines() if ln.startswith("Error: keypair.")]
    assert sorted(ln.split(":")[1].strip() for ln in errors) == \
        [f"keypair.{n}" for n in raced], applied.err
    for name in raced:
        line = next(ln for ln in errors if f"keypair.{name}:" in ln)
        assert "refused it in a batch import" in line and "already exists" in line, line
        assert "different key" in line
    made = [f"g{i:03d}" for i in range(15) if f"g{i:03d}" not in raced]
    listed = cli("state", "list")
    assert listed.out.split() == made  # the successes are recorded, the refused are not
    assert_private_keys_match_cloud(cli, made)
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 1 and all(f"reconciler import {n}" in plan.err for n in raced), plan.text


def test_lost_batch_answers_are_read_back_by_list_never_sent_twice(cli: Cli) -> None:
    cli.write(_generated(25))
    cli.emulator.set_faults(lost_response_rate=1.0, operations=["batch_import"], seed=3)
    with tallied(cli.emulator) as tally:
        applied = cli("apply", "--auto-approve", "--parallelism", "2", str(cli.manifests))
    counters = cli.emulator.counters()
    cli.emulator.set_faults()
    assert applied.code == 0, applied.text
    assert counters["batch_import"] == 3 and counters["faults_injected"] == 3
    assert counters["list"] == 1 + 3  # the refresh, then one list per lost answer
    names = [f"g{i:03d}" for i in range(25)]
    assert sorted(tally.made()) == names and set(tally.made().values()) == {1}
    assert_private_keys_match_cloud(cli, names)


def test_a_batch_never_answered_keeps_its_keys_and_the_next_apply_sends_them(
        cli: Cli) -> None:
    cli.write(_generated(12))
    cli.emulator.set_faults(drop_rate=1.0, operations=["batch_import"], seed=5)
    first = cli("apply", "--auto-approve", str(cli.manifests))
    cli.emulator.set_faults()
    assert_clean(first.text)
    assert first.code == 1
    assert first.err.count("answer was lost 8 times and it does not exist") == 12, first.err
    assert cli.emulator.keypair_count() == 0
    pending = _state_public_keys(cli)  # every generated key was kept before it was sent
    assert sorted(pending) == [f"g{i:03d}" for i in range(12)]
    second = cli("apply", "--auto-approve", str(cli.manifests))
    assert second.code == 0, second.text
    listed = cli.client().list_keypairs().keypairs
    for name, public in pending.items():  # the same keys, resumed, not new ones
        assert keys.same_key(listed[name].public_key, public)
    assert_private_keys_match_cloud(cli, sorted(pending))


def test_an_answer_that_leaves_a_name_out_is_read_back(cli: Cli) -> None:
    def forgetful(status: int, body: bytes) -> tuple[int, bytes]:
        doc = json.loads(body)
        doc["succeeded_keypairs"] = doc["succeeded_keypairs"][1:]
        return status, json.dumps(doc).encode()

    cli.write(_generated(4))
    rule = Rule("POST", BATCH, mutate=forgetful)
    with mutating_proxy(cli.emulator.endpoint, [rule]) as proxy, tallied(cli.emulator) as tally:
        applied = cli("apply", "--auto-approve", str(cli.manifests),
                      extra=["--endpoint", proxy.endpoint])
    assert applied.code == 0, applied.text
    assert rule.hits == 1 and cli.emulator.counters()["list"] == 2
    assert set(tally.made().values()) == {1} and len(tally.made()) == 4
    assert_private_keys_match_cloud(cli, [f"g{i:03d}" for i in range(4)])


def test_custody_creates_go_in_batches_with_their_private_keys(cli: Cli,
                                                               tmp_path: Path) -> None:
    pair = keys.generate_keypair("ed25519")
    key_file = tmp_path / "kept.key"
    key_file.write_text(pair.private_key.reveal())
    key_file.chmod(0o600)
    cli.write("keypairs:\n"
              "  - name: gen-kept\n    generate: ed25519\n"
              "    key_protection: {encryption: {type: default}}\n"
              "  - name: given-kept\n"
              f"    public_key: {pair.public_key}\n"
              "    key_protection:\n      encryption: {type: default}\n"
              f"      private_key_file: {key_file}\n")
    applied = cli("apply", "--auto-approve", str(cli.manifests))
    assert applied.code == 0, applied.text
    assert cli.emulator.counters()["batch_import"] == 1
    api = cli.client()
    listed = api.list_keypairs().keypairs
    assert listed["gen-kept"].key_protection and listed["given-kept"].key_protection
    kept = api.export_private_key("given-kept")
    assert kept is not None and kept.reveal() == pair.private_key.reveal()
    generated = api.export_private_key("gen-kept")
    assert generated is not None
    shown = cli("output", "gen-kept", "--private-key")
    assert shown.code == 0 and Secret(shown.out).reveal().strip() == \
        generated.reveal().strip()
    again = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert again.code == 0 and NO_CHANGES in again.out, again.text


# -- answers that say "made" for a key that is not ours, and reasons quoting secrets ---------

class _TakenAnsweredAsMade(Backend):
    """Someone imports their own key under ``name`` just before our batch, and the cloud
    answers our import of that name as made, showing the key pair it holds (theirs)."""

    def __init__(self, inner: Backend, name: str) -> None:
        super().__init__(projects=inner.projects, user_id=inner.user_id, keygen=inner.keygen)
        self.name: str | None = name
        self.theirs = keys.generate_keypair("ed25519").public_key

    def handle(self, call: ApiCall, *, body: Any, query: Any, headers: Any) -> Reply:
        if call.operation != "batch_import" or self.name is None:
            return super().handle(call, body=body, query=query, headers=headers)
        name, self.name = self.name, None
        super().handle(ApiCall("kps", "import", call.project_id),
                       body={"keypair": {"name": name, "public_key": self.theirs}},
                       query={}, headers={})
        reply = super().handle(call, body=body, query=query, headers=headers)
        doc = dict(reply.body)
        doc["failed_keypairs"] = [f for f in doc["failed_keypairs"] if f["keypair_name"] != name]
        theirs = {"name": name, "public_key": self.theirs, "type": "ssh", "scope": "user",
                  "fingerprint": keys.md5_fingerprint(self.theirs)}
        doc["succeeded_keypairs"] = [*doc["succeeded_keypairs"], {"keypair": theirs}]
        return Reply(200, doc)


def test_a_name_taken_meanwhile_answered_as_made_is_not_recorded_as_ours(cli: Cli) -> None:
    cli.write(_generated(3))
    raced = _TakenAnsweredAsMade(cli.emulator.backend, "g000")
    applied = _apply_through(cli, raced)
    assert_clean(applied.text)
    assert applied.code == 1, applied.text
    line = next(ln for ln in applied.err.splitlines() if ln.startswith("Error: keypair.g000:"))
    assert "another public key than the one sent" in line and "different key" in line, line
    assert cli("state", "list").out.split() == ["g001", "g002"]  # theirs is not in state
    assert_private_keys_match_cloud(cli, ["g001", "g002"])
    destroyed = cli("destroy", "--auto-approve", str(cli.manifests))
    assert destroyed.code == 0, destroyed.text
    kept = cli.client().get_keypair("g000")  # someone else's key pair is never deleted
    assert kept is not None and keys.same_key(kept.public_key, raced.theirs)


@pytest.mark.parametrize("path", [BATCH, r"^/v3/[^/]+/keypairs$"])
def test_an_answer_changed_on_its_way_is_read_back_not_believed(cli: Cli, path: str) -> None:
    """The cloud made our key pair, but the answer shows another public key: what the cloud
    holds is read back, and the key pair is recorded with our key, not replaced later."""
    other = keys.generate_keypair("ed25519").public_key

    def changed(status: int, body: bytes) -> tuple[int, bytes]:
        doc = json.loads(body)
        shown = doc["succeeded_keypairs"][0]["keypair"] if "succeeded_keypairs" in doc \
            else doc["keypair"]
        shown["public_key"], shown["fingerprint"] = other, keys.md5_fingerprint(other)
        return status, json.dumps(doc).encode()

    cli.write(_generated(3 if path == BATCH else 1))
    rule = Rule("POST", path, mutate=changed)
    with mutating_proxy(cli.emulator.endpoint, [rule]) as proxy, tallied(cli.emulator) as tally:
        applied = cli("apply", "--auto-approve", "--parallelism", "1", str(cli.manifests),
                      extra=["--endpoint", proxy.endpoint])
    assert applied.code == 0, applied.text
    assert rule.hits >= 1 and set(tally.made().values()) == {1}
    names = sorted(tally.made())
    assert_private_keys_match_cloud(cli, names)
    assert other not in cli.state.read_text()
    plan = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert plan.code == 0 and NO_CHANGES in plan.out, plan.text


def test_a_refusal_quoting_the_private_key_sent_for_custody_shows_none_of_it(
        cli: Cli) -> None:
    cli.write("keypairs:\n" + "".join(
        f"  - name: c{i}\n    generate: ed25519\n"
        "    key_protection: {encryption: {type: default}}\n" for i in range(2)))
    sent: dict[str, str] = {}

    def quoting(_path: str, body: bytes) -> tuple[int, bytes]:
        failed = []
        for item in json.loads(body):
            kp = item["keypair"]
            sent[kp["name"]] = kp["key_protection"]["private_key"]
            inner = "".join(ln for ln in sent[kp["name"]].splitlines() if "-----" not in ln)
            failed.append({"keypair_name": kp["name"],
                           "failed_reason": f"invalid private_key: {inner[130:400]}"})
        return 200, json.dumps({"succeeded_keypairs": [], "failed_keypairs": failed}).encode()

    rule = Rule("POST", BATCH, answer_body=quoting)
    with mutating_proxy(cli.emulator.endpoint, [rule]) as proxy:
        applied = cli("--debug", "apply", "--auto-approve", str(cli.manifests),
                      extra=["--endpoint", proxy.endpoint])
    assert applied.code == 1 and sorted(sent) == ["c0", "c1"], applied.text
    for name, secret in sent.items():
        line = next(ln for ln in applied.err.splitlines()
                    if ln.startswith(f"Error: keypair.{name}:"))
        assert "refused it in a batch import" in line and "withheld" in line, line
        body = "".join(ln for ln in secret.splitlines() if "-----" not in ln)
        public = keys.public_key_of(Secret(secret))
        shown = [body[i:i + 24] for i in range(0, len(body) - 24, 24)
                 if body[i:i + 24] in applied.text and body[i:i + 24] not in public]
        assert not shown, shown
    assert cli.emulator.keypair_count() == 0
