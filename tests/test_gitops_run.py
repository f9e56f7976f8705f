"""The GitOps example, run: its workflows and the action execute (tests/gitops_harness.py) for
a pull request with two pushes, its merge, an unreviewed push to main, and scheduled drift
checks, against the emulator and a GitHub stand-in on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oidc_support import AUDIENCE, Issuer, register

from reconciler.api.flavours import make_api
from reconciler.api.protocol import ApiSettings, Credentials, KeyPairApi
from reconciler.emulator.server import Emulator
from reconciler.model import Api, Secret
from tests.gitops_harness import (
    REPO,
    ExpressionError,
    FakeGitHub,
    Repository,
    Runner,
    RunRecord,
    condition,
    evaluate,
    serve,
)

ROOT = Path(__file__).parent.parent
GITOPS = ROOT / "examples" / "gitops"
PASSPHRASE = "harness state passphrase, only for the apply job"
EXAMPLE = {"web-deploy", "ci-runner", "alice", "bastion"}


@pytest.fixture()
def github() -> Iterator[FakeGitHub]:
    yield from serve(FakeGitHub())


class World:
    """One repository, its runs, the cloud (emulator) and the state "bucket"."""

    def __init__(self, emulator: Emulator, github: FakeGitHub, tmp: Path) -> None:
        self.emulator, self.github = emulator, github
        tree = tmp / "example"
        shutil.copytree(GITOPS, tree)
        self.repo = Repository(
            root=tmp / "repo",
            secrets={"HUAWEICLOUD_SDK_AK": emulator.ak, "HUAWEICLOUD_SDK_SK": emulator.sk},
            environments={"production": {"RECONCILER_PASSPHRASE": PASSPHRASE},
                          # the key reader's own credentials (the emulator has one user)
                          "deploy": {"DEPLOY_KEY_READER_AK": emulator.ak,
                                     "DEPLOY_KEY_READER_SK": emulator.sk}},
            variables={"HUAWEICLOUD_SDK_PROJECT_ID": emulator.project_id,
                       "CSMS_ENDPOINT": emulator.endpoint})
        self.main = self.repo.commit({}, tree=tree)
        self.state = tmp / "bucket" / "keypairs.json"
        self.state.parent.mkdir()
        # What stands in for the cloud and the bucket on the runner: the emulator's endpoint
        # and project, and a state file shared by every run.
        machine = {"RECONCILER_ENDPOINT": emulator.endpoint,
                   "HUAWEICLOUD_SDK_PROJECT_ID": emulator.project_id,
                   "RECONCILER_STATE": str(self.state)}
        self.runner = Runner(repo=self.repo, github=github, machine=machine, workdir=tmp / "runs")

    def client(self) -> KeyPairApi:
        return make_api(ApiSettings(
            api=Api("v2.1"), endpoint=self.emulator.endpoint, project_id=self.emulator.project_id,
            credentials=Credentials(ak=self.emulator.ak, sk=Secret(self.emulator.sk))))

    def names(self) -> set[str]:
        return set(self.client().list_keypairs().keypairs)

    def pull_request(self, number: int, head: str, *, fork: bool = False) -> RunRecord:
        payload = {"pull_request": {
            "number": number, "head": {"sha": head, "repo": {
                "full_name": "someone/fork" if fork else REPO}}}}
        return self.runner.run("reconciler.yml", event="pull_request", sha=head,
                               ref=f"refs/pull/{number}/merge", payload=payload)

    def push_main(self, sha: str) -> RunRecord:
        self.main = sha
        return self.runner.run("reconciler.yml", event="push", sha=sha, ref="refs/heads/main",
                               payload={"after": sha})

    def merge(self, number: int, head: str) -> RunRecord:
        merge = self.repo.commit({}, tree=self.repo.commits[head])
        self.github.pulls[merge] = [{"number": number, "merged_at": "2025-01-01T00:00:00Z",
                                     "head": {"sha": head}}]
        return self.push_main(merge)

    def deploy(self, *, after: str = "success") -> RunRecord:
        """The consumer's workflow, after a reconciler run on main that ended ``after``."""
        return self.runner.run("deploy.yml", event="workflow_run", sha=self.main,
                               ref="refs/heads/main",
                               payload={"workflow_run": {"conclusion": after,
                                                         "name": "reconciler"}})

    def schedule(self) -> RunRecord:
        return self.runner.run("drift.yml", event="schedule", sha=self.main,
                               ref="refs/heads/main", payload={"schedule": "17 6 * * *"})


def _team(*extra: str) -> dict[str, str]:
    body = (GITOPS / "keypairs" / "team.yaml").read_text()
    for name in extra:
        body += f"\n  - name: {name}\n    generate: ed25519\n"
    return {"keypairs/team.yaml": body}


def _plan_comment(github: FakeGitHub, number: int) -> list[dict[str, Any]]:
    return github.comments.get(number, [])


def _state_public_key(world: World, name: str) -> str:
    doc = json.loads(world.state.read_text())
    return str(doc["keypairs"][f'keypair.{name}["default"]']["public_key"])


def test_pull_request_merge_and_drift_end_to_end(emulator: Emulator, github: FakeGitHub,
                                                 tmp_path: Path) -> None:
    world = World(emulator, github, tmp_path)

    # A pull request: the plan is one comment, rewritten in place on the second push.
    first = world.repo.commit(_team("deploy-bot"), parent=world.main)
    run = world.pull_request(7, first)
    assert run.jobs == {"plan": "success", "apply": "skipped", "keys-pr": "skipped"}, \
        run.log()
    comments = _plan_comment(github, 7)
    assert len(comments) == 1 and "Plan: 7 to add" in comments[0]["body"]
    assert "<!-- reconciler-plan -->" in comments[0]["body"]
    assert "Plan: 7 to add" in run.summary
    second = world.repo.commit(_team("deploy-bot", "ops"), parent=first)
    run = world.pull_request(7, second)
    assert run.jobs["plan"] == "success", run.log()
    comments = _plan_comment(github, 7)
    assert len(comments) == 1, comments
    assert "Plan: 8 to add" in comments[0]["body"] and second[:7] in comments[0]["body"]
    assert world.names() == set(), "a plan changed the cloud"

    # The plan job never held the passphrase, and its plan worked without it.
    plan_steps = [s for s in run.steps if s.job == "plan"]
    assert plan_steps and all("RECONCILER_PASSPHRASE" not in s.env for s in plan_steps)
    assert all(PASSPHRASE not in v for s in plan_steps for v in s.env.values())

    # The merge applies exactly the reviewed change set.
    run = world.merge(7, second)
    assert run.jobs == {"plan": "skipped", "apply": "success", "keys-pr": "success"}, \
        run.log()
    assert "exactly the reviewed change set (8 changes" in run.log()
    assert world.names() == EXAMPLE | {"deploy-bot", "ops"}
    assert any("RECONCILER_PASSPHRASE" in s.env for s in run.steps if s.job == "apply")
    # The keys-pr job proposed the age file apply wrote; merging it puts the file in the
    # tree, where the next plans find it in sync (and that push applies nothing).
    (proposed,) = github.opened
    assert set(proposed["files"]) == {"keys/ci-runner.age"}
    keys_merge = world.repo.commit(dict(proposed["files"]), parent=world.main)
    run = world.push_main(keys_merge)
    assert run.jobs["apply"] == "success", run.log()
    assert "No changes." in run.log() and len(github.opened) == 1  # nothing new to propose
    second = keys_merge

    # An unreviewed change pushed to main is refused, and changes nothing.
    sneaky = world.repo.commit(_team("deploy-bot", "ops", "sneaky"), parent=world.main)
    run = world.push_main(sneaky)
    assert run.jobs["apply"] == "failure"
    assert "no reviewed plan was found" in run.log()
    assert "sneaky" not in world.names()

    # The drift check reports what was merged but not applied, in one issue.
    run = world.schedule()
    assert run.jobs == {"drift": "success"}, run.log()
    assert len(github.issues) == 1 and github.issues[0]["state"] == "open"
    body = github.issues[0]["body"]
    assert "reconciler-drift" in github.issues[0]["labels"]
    pending = body.split("## Merged but not applied")[1]
    assert "keypair.sneaky" in pending and "## Drift" in body

    # Reverting it applies nothing; a key pair deleted outside is drift, in the same issue.
    world.push_main(world.repo.commit({}, tree=world.repo.commits[second]))
    key = _state_public_key(world, "ci-runner")
    world.client().delete_keypair("ci-runner")
    run = world.schedule()
    assert run.jobs == {"drift": "success"}, run.log()
    assert len(github.issues) == 1 and github.issues[0]["state"] == "open"
    drift = github.issues[0]["body"].split("## Merged but not applied")[0]
    assert "ci-runner" in drift and "sneaky" not in github.issues[0]["body"]

    # Back in sync (the same public key imported again): the issue is closed.
    world.client().import_keypair(name="ci-runner", public_key=key)
    run = world.schedule()
    assert run.jobs == {"drift": "success"}, run.log()
    assert len(github.issues) == 1 and github.issues[0]["state"] == "closed"
    assert "back in sync" in github.comments[1][-1]["body"]

    # No secret in anything the runs left for people to read.
    for text in [json.dumps(github.issues), json.dumps(github.comments),
                 *(r.log() + r.summary for r in [run])]:
        assert PASSPHRASE not in text and emulator.sk not in text


needs_ssh_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None,
                                      reason="the deploy job runs ssh-keygen (openssh-client)")


@needs_ssh_keygen
def test_the_deploy_job_reads_one_key_from_csms_without_the_passphrase(
        emulator: Emulator, github: FakeGitHub, tmp_path: Path) -> None:
    """After the merge's apply delivered web-deploy's private key to CSMS, the consumer's
    workflow reads that one secret with its own credentials and uses it: the key it got is
    the key pair's (its public half is the one state records), the file was 0600, and the job
    never held the passphrase; no private key is in any log."""
    world = World(emulator, github, tmp_path)
    head = world.repo.commit({}, parent=world.main)
    assert world.pull_request(11, head).jobs["plan"] == "success"
    run = world.merge(11, head)
    assert run.jobs["apply"] == "success", run.log()
    assert 'delivery.web-deploy["csms:web-deploy-ssh-key"]: Creation complete' in run.log()

    skipped = world.deploy(after="failure")
    assert skipped.jobs == {"deploy": "skipped"}
    run = world.deploy()
    assert run.jobs == {"deploy": "success"}, run.log()
    log = run.log()
    assert "wrote the current version (v1) of web-deploy-ssh-key" in log
    public = tmp_path / "web-deploy.pub"
    public.write_text(_state_public_key(world, "web-deploy") + "\n")
    expected = subprocess.run(["ssh-keygen", "-lf", str(public)], capture_output=True,
                              text=True, check=True).stdout.split()[1]
    assert f"deploying with 256 {expected}" in log, log
    steps = [s for s in run.steps if s.job == "deploy"]
    assert steps and all("RECONCILER_PASSPHRASE" not in s.env for s in steps)
    assert all(PASSPHRASE not in v for s in steps for v in s.env.values())
    assert "PRIVATE KEY" not in log
    key_file = Path(steps[-1].env["RUNNER_TEMP"]) / "deploy.key"
    assert not key_file.exists()  # forgotten at the end of the job


EXAMPLE_RECIPIENT = "age1ljqjh7guegffr7zz9ehpjl8pf9ql2x0ul0xx3fscpwmslwg3r4rsse6wvk"


@needs_ssh_keygen
@pytest.mark.skipif(shutil.which("age") is None or shutil.which("age-keygen") is None,
                    reason="the age tool (Debian package age; .ci/run installs it)")
def test_the_keys_pr_job_proposes_the_age_file_and_holds_no_secret(
        emulator: Emulator, github: FakeGitHub, tmp_path: Path) -> None:
    """apply writes keys/ci-runner.age (deliver: age_file) and hands it on as an artifact;
    the keys-pr job, the only one with contents: write, proposes it as a pull request. It
    decrypts with the recipient's identity to ci-runner's private key."""
    identity = tmp_path / "identity.txt"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = next(line.split(": ", 1)[1] for line in identity.read_text().splitlines()
                     if line.startswith("# public key:"))
    world = World(emulator, github, tmp_path)
    team = (GITOPS / "keypairs" / "team.yaml").read_text()
    assert EXAMPLE_RECIPIENT in team
    head = world.repo.commit({"keypairs/team.yaml": team.replace(EXAMPLE_RECIPIENT, recipient)},
                             parent=world.main)
    assert world.pull_request(12, head).jobs["plan"] == "success"
    run = world.merge(12, head)
    assert run.jobs == {"plan": "skipped", "apply": "success", "keys-pr": "success"}, \
        run.log()
    (proposed,) = github.opened
    assert proposed["job"] == "keys-pr" and proposed["branch"] == "reconciler/delivered-keys"
    sealed = tmp_path / "ci-runner.age"
    sealed.write_bytes(proposed["files"]["keys/ci-runner.age"])
    opened = subprocess.run(["age", "-d", "-i", str(identity), str(sealed)],
                            capture_output=True, check=True).stdout
    key = tmp_path / "ci-runner.key"
    key.write_bytes(opened)
    key.chmod(0o600)
    public = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True,
                            text=True, check=True).stdout.split()[:2]
    assert public == _state_public_key(world, "ci-runner").split()[:2]
    assert opened.decode() not in run.log()  # (the job's secrets: test_gitops_ci)


def test_a_merge_of_another_change_set_is_refused(emulator: Emulator, github: FakeGitHub,
                                                  tmp_path: Path) -> None:
    world = World(emulator, github, tmp_path)
    head = world.repo.commit(_team(), parent=world.main)
    assert world.pull_request(3, head).jobs["plan"] == "success"
    # main moved on unreviewed: the merge's tree is not what the pull request planned
    other = world.repo.commit(_team("extra"), parent=head)
    merge = world.repo.commit({}, tree=world.repo.commits[other])
    github.pulls[merge] = [{"number": 3, "merged_at": "2025-01-01T00:00:00Z",
                            "head": {"sha": head}}]
    run = world.push_main(merge)
    assert run.jobs["apply"] == "failure"
    assert "keypair.extra: not in the reviewed plan" in run.log()
    assert world.names() == set()


def _state_entry(world: World, name: str) -> dict[str, Any]:
    doc = json.loads(world.state.read_text())
    return dict(doc["keypairs"][f'keypair.{name}["default"]'])


ALICE = "    public_key_file: ../keys/alice.pub   # relative to this file\n"


def test_a_merged_prevent_destroy_is_recorded_so_removing_the_pair_later_fails(
        emulator: Emulator, github: FakeGitHub, tmp_path: Path) -> None:
    world = World(emulator, github, tmp_path)
    first = world.repo.commit(_team(), parent=world.main)
    assert world.pull_request(1, first).jobs["plan"] == "success"
    assert world.merge(1, first).jobs["apply"] == "success"
    (proposed,) = github.opened  # the age file apply wrote, committed
    world.push_main(world.repo.commit(dict(proposed["files"]), parent=world.main))
    assert _state_entry(world, "alice").get("prevent_destroy") is not True

    # Protecting a pair changes nothing in the cloud (the plan exits 0), but the merge's
    # apply must still record it: the protection lives in state.
    (body,) = _team().values()
    assert ALICE in body
    protected = world.repo.commit(
        {"keypairs/team.yaml": body.replace(ALICE, ALICE + "    prevent_destroy: true\n")},
        parent=world.main)
    run = world.pull_request(2, protected)
    assert run.jobs["plan"] == "success", run.log()
    assert "prevent_destroy = true" in _plan_comment(github, 2)[0]["body"]
    run = world.merge(2, protected)
    assert run.jobs["apply"] == "success", run.log()
    assert "record prevent_destroy = true: alice" in run.log()
    assert _state_entry(world, "alice")["prevent_destroy"] is True

    # Removing it from the manifests now fails the plan, and its merge deletes nothing.
    start, end = body.index("  # A person's own key"), body.index("  # A long-lived key")
    removed = world.repo.commit({"keypairs/team.yaml": body[:start] + body[end:]},
                                parent=world.main)
    run = world.pull_request(3, removed)
    assert run.jobs["plan"] == "failure" and "prevent_destroy" in run.log(), run.log()
    run = world.merge(3, removed)
    assert run.jobs["apply"] == "failure"
    assert "alice" in world.names()

    # A merge that changes nothing applies nothing, and says so.
    again = world.repo.commit({}, tree=world.repo.commits[protected])
    run = world.push_main(again)
    assert run.jobs["apply"] == "success", run.log()
    assert "No changes to apply." in run.log()


def test_fork_pull_requests_get_no_plan(emulator: Emulator, github: FakeGitHub,
                                        tmp_path: Path) -> None:
    world = World(emulator, github, tmp_path)
    run = world.pull_request(9, world.repo.commit(_team("x"), parent=world.main), fork=True)
    assert run.jobs == {"plan": "skipped", "apply": "skipped", "keys-pr": "skipped"}
    assert github.comments == {} and run.steps == []


def test_a_plan_job_given_the_environment_off_main_is_refused(
        emulator: Emulator, github: FakeGitHub, tmp_path: Path) -> None:
    """The apply job's environment (and so the passphrase) is unreachable from a branch."""
    world = World(emulator, github, tmp_path)
    wf = (GITOPS / ".github" / "workflows" / "reconciler.yml").read_text()
    hostile = wf.replace("    runs-on: ubuntu-latest\n    permissions:\n      contents: read\n"
                         "      pull-requests: write",
                         "    runs-on: ubuntu-latest\n    environment: production\n"
                         "    permissions:\n      contents: read\n      pull-requests: write", 1)
    assert hostile != wf
    head = world.repo.commit({".github/workflows/reconciler.yml": hostile}, parent=world.main)
    run = world.pull_request(4, head)
    assert run.jobs["plan"] == "failure"
    assert all("RECONCILER_PASSPHRASE" not in s.env for s in run.steps)


def test_oidc_plans_with_the_jobs_identity_token_and_no_keys(emulator: Emulator,
                                                            github: FakeGitHub,
                                                            tmp_path: Path) -> None:
    """With the OIDC variables set and no AK/SK anywhere, the action fetches the job's
    identity token, hands it to reconciler as HUAWEICLOUD_SDK_ID_TOKEN_FILE, and the plan
    signs with temporary credentials from the emulator's IAM identity provider."""
    issuer = Issuer.new()
    register(emulator, issuer, idp_id="github-actions")
    world = World(emulator, github, tmp_path)
    world.repo.secrets.clear()
    world.repo.variables.update({"HUAWEICLOUD_SDK_IDP_ID": "github-actions",
                                 "RECONCILER_OIDC_AUDIENCE": AUDIENCE})
    world.runner.machine["HUAWEICLOUD_SDK_IAM_ENDPOINT"] = emulator.endpoint
    github.id_token = issuer.token()
    run = world.pull_request(5, world.repo.commit({}, parent=world.main))
    assert run.jobs["plan"] == "success", run.log()
    later = [s for s in run.steps if "HUAWEICLOUD_SDK_ID_TOKEN_FILE" in s.env]
    assert later, run.log()
    token_file = Path(later[-1].env["HUAWEICLOUD_SDK_ID_TOKEN_FILE"])
    assert token_file.read_text() == github.id_token
    assert token_file.stat().st_mode & 0o077 == 0
    assert not later[-1].env.get("HUAWEICLOUD_SDK_AK")
    assert "Credentials: OIDC via IAM identity provider github-actions" in run.log()
    assert github.id_token not in run.log()
    (comment,) = github.comments[5]
    assert "to add" in comment["body"]  # the plan itself ran, through temporary credentials
    # a token for another repository is refused by the mapping rule: the plan fails, and its
    # comment says so, naming the identity provider, never showing the token
    github.id_token = issuer.token(repository="someone/else")
    refused = world.pull_request(6, world.repo.commit({}, parent=world.main))
    assert refused.jobs["plan"] == "failure", refused.log()
    (failed,) = github.comments[6]
    assert "plan failed" in failed["body"] and "github-actions" in failed["body"]
    assert github.id_token not in failed["body"] + refused.log()


@pytest.mark.parametrize(("expr", "expected"), [
    ("github.event_name == 'push' && inputs.approve == ''", True),
    ("(github.event_name == 'pull_request' && x.y == 'a') || inputs.approve != ''", False),
    ("!(github.event_name == 'PUSH')", False),
    ("steps.plan.outputs.exitcode == '0' || steps.plan.outputs.exitcode == '2'", True),
])
def test_expression_evaluator(expr: str, expected: bool) -> None:
    ctx = {"github": {"event_name": "push"}, "inputs": {}, "x": {"y": "b"},
           "steps": {"plan": {"outputs": {"exitcode": "2"}}}}
    assert evaluate(expr, ctx) is expected


def test_conditions_skip_after_a_failure_unless_always() -> None:
    assert condition(None, {}, failed=True) is False
    assert condition("always()", {}, failed=True) is True
    assert condition("${{ 'a' == 'a' }}", {}, failed=True) is False
    with pytest.raises(ExpressionError, match="not supported"):
        evaluate("contains(github.ref, 'x')", {"github": {}})
