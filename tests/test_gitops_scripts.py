"""The GitOps example's CI scripts: the change-set check that guards apply-on-merge, on plans
made by the real CLI against the emulator, the GitLab note/reviewed-plan/drift-issue calls
against a small GitLab stand-in, and GitHub's reviewed run and drift issue against the
harness's GitHub stand-in, both over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from reconciler.emulator.server import Emulator
from reconciler.gitops import changeset
from reconciler.gitops import github as github_pr
from reconciler.gitops import gitlab as gitlab_mr
from reconciler.render.markdown import MARKER
from tests.clihelp import Cli
from tests.gitops_harness import REPO, FakeGitHub, serve
from tests.gitops_harness import TOKEN as GITHUB_TOKEN

K1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKwIjAMYc6uhQM4LzeXgHN/O/kezk2t2iqOT16iKzSCu"




@pytest.fixture()
def cli(emulator: Emulator, tmp_path: Path) -> Cli:
    return Cli(emulator, tmp_path)


def plan(cli: Cli, body: str, out: str) -> Path:
    cli.write(body)
    path = cli.root / out
    result = cli("plan", "--detailed-exitcode", "--out", str(path), str(cli.manifests))
    assert result.code in (0, 2), result.text
    return path


def compare(a: Path, b: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = changeset.main(["compare", str(a), str(b)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


ONE = "keypairs:\n  - name: web\n  - name: ci\n    generate: ed25519\n"


def test_same_manifests_give_the_same_change_set(cli: Cli,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    body = ONE + f'  - name: alice\n    public_key: "{K1}"\n'
    a, b = plan(cli, body, "a.json"), plan(cli, body, "b.json")
    assert a.read_text() != "" and json.loads(a.read_text())["resource_changes"]
    code, text = compare(a, b, capsys)
    assert code == 0, text
    assert "exactly the reviewed change set (3 changes" in text
    assert changeset.main(["digest", str(a)]) == 0
    digest_a = capsys.readouterr().out
    changeset.main(["digest", str(b)])
    assert capsys.readouterr().out == digest_a and digest_a.startswith("sha256:")


@pytest.mark.parametrize(("changed", "says"), [
    (ONE + "  - name: extra\n", "keypair.extra: not in the reviewed plan; the new plan would"),
    ("keypairs:\n  - name: web\n", "keypair.ci: reviewed (create) but no longer planned"),
    (ONE.replace("ed25519", "rsa-2048"), "keypair.ci: create with other attributes"),
], ids=["added", "dropped", "altered"])
def test_a_different_change_set_is_refused(cli: Cli, capsys: pytest.CaptureFixture[str],
                                           changed: str, says: str) -> None:
    reviewed = plan(cli, ONE, "reviewed.json")
    fresh = plan(cli, changed, "fresh.json")
    code, text = compare(reviewed, fresh, capsys)
    assert code == 1
    assert "Refusing: the new plan differs from the reviewed one" in text
    assert says in text


def test_serialised_merges_apply_their_own_reviewed_changes(
        cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    """Two pull requests reviewed against the same state: once the first is applied, the
    second's saved plan is stale, but a new plan of the merged tree is its reviewed change set
    (this is why the workflows plan again and compare rather than apply the PR's file)."""
    second_reviewed = plan(cli, "keypairs:\n  - name: second\n", "second.json")
    first = plan(cli, "keypairs:\n  - name: first\n", "first.json")
    assert cli("apply", str(first)).code == 0
    stale = cli("apply", str(second_reviewed))
    assert stale.code == 1 and "Saved plan is stale" in stale.err
    merged = plan(cli, "keypairs:\n  - name: first\n  - name: second\n", "merged.json")
    code, text = compare(second_reviewed, merged, capsys)
    assert code == 0, text
    applied = cli("apply", str(merged))
    assert applied.code == 0, applied.text
    assert {"first", "second"} <= set(cli.client().list_keypairs().keypairs)


def test_imports_and_replacements_count(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli.client().import_keypair(name="alice", public_key=K1)
    cli.write(ONE)
    first = cli("apply", "--auto-approve", str(cli.manifests))
    assert first.code == 0, first.text
    body = ONE + f'  - name: alice\n    public_key: "{K1}"\n'
    path = plan(cli, body, "import.json")
    assert changeset.main(["show", str(path)]) == 0
    assert capsys.readouterr().out == "import         keypair.alice\n"
    result = cli("plan", "--out", str(cli.root / "r.json"), "--replace", "web",
                 str(cli.manifests))
    assert result.code == 0, result.text
    assert changeset.main(["gitlab-report", str(cli.root / "r.json")]) == 0
    assert json.loads(capsys.readouterr().out) == {"create": 1, "update": 0, "delete": 1}


def test_state_only_lists_what_apply_records_in_state_alone(
        cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli.write(ONE)
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    same = plan(cli, ONE, "same.json")
    assert changeset.main(["state-only", str(same)]) == 0
    assert capsys.readouterr().out == ""
    protect = ONE.replace("  - name: ci\n", "  - name: ci\n    prevent_destroy: true\n")
    protected = plan(cli, protect, "protect.json")
    assert changeset.main(["state-only", str(protected)]) == 0
    assert capsys.readouterr().out == "record prevent_destroy = true: ci\n"
    assert changeset.main(["digest", str(protected)]) == 0
    assert capsys.readouterr().out == changeset.digest([]) + "\n"  # no change in the cloud


def test_unreadable_plan_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("not json")
    script, root = ["-m", "reconciler.gitops.changeset"], Path(__file__).parent.parent
    done = subprocess.run([sys.executable, *script, "compare", str(tmp_path / "x.json"),
                           str(tmp_path / "missing.json")], capture_output=True, text=True,
                          cwd=root, check=False)
    assert done.returncode == 2 and "not a readable JSON plan" in done.stderr
    usage = subprocess.run([sys.executable, *script], capture_output=True, text=True, cwd=root,
                           check=False)
    assert usage.returncode == 2 and "Usage (" in usage.stderr


# --- GitLab ------------------------------------------------------------------------------

TOKEN = "glpat-test-token"
BOT = {"id": 42, "username": "project_7_bot_reconciler", "bot": True}  # the token's user
PERSON = {"id": 3, "username": "mallory", "bot": False}


class FakeGitLab:
    """Just the endpoints the pipeline calls, with the behaviour that matters to it."""

    def __init__(self) -> None:
        self.notes: list[dict[str, Any]] = [{"id": 1, "body": "looks good", "system": False,
                                             "author": PERSON}]
        self.issues: list[dict[str, Any]] = []
        self.commit_mrs: dict[str, list[dict[str, Any]]] = {}
        self.mrs: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, list[dict[str, Any]]] = {}
        self.artifacts: dict[str, bytes] = {}
        self.calls: list[str] = []

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        self.calls.append(f"{method} {path}")
        if (method, path) == ("GET", "/api/v4/user"):
            return 200, BOT
        parts = path.removeprefix("/api/v4/projects/7").strip("/").split("/")
        match method, parts:
            case "GET", ["merge_requests", _, "notes"]:
                return 200, self.notes
            case "PUT", ["merge_requests", _, "notes", note_id]:
                note = next(n for n in self.notes if str(n["id"]) == note_id)
                note["body"] = body["body"]
                return 200, note
            case "POST", ["merge_requests", _, "notes"]:
                note = {"id": len(self.notes) + 1, "body": body["body"], "system": False,
                        "author": BOT}
                self.notes.append(note)
                return 201, note
            case "GET", ["issues"]:
                return 200, [i for i in self.issues if i["state"] == "opened"]
            case "POST", ["issues"]:
                issue = {"iid": len(self.issues) + 1, "state": "opened", "author": BOT,
                         "description": body["description"], "notes": []}
                self.issues.append(issue)
                return 201, issue
            case "PUT", ["issues", iid]:
                issue = self.issues[int(iid) - 1]
                if body.get("state_event") == "close":
                    issue["state"] = "closed"
                issue.update({k: v for k, v in body.items() if k == "description"})
                return 200, issue
            case "POST", ["issues", iid, "notes"]:
                self.issues[int(iid) - 1]["notes"].append(body["body"])
                return 201, {"id": 1}
            case "GET", ["repository", "commits", sha, "merge_requests"]:
                return 200, self.commit_mrs.get(sha, [])
            case "GET", ["merge_requests", iid]:
                return 200, self.mrs[iid]
            case "GET", ["pipelines", pid, "jobs"]:
                return 200, self.jobs.get(pid, [])
            case "GET", ["jobs", job_id, "artifacts", "plan.json"]:
                return 200, self.artifacts[job_id]
        return 404, {"message": "404 Not Found"}


@pytest.fixture()
def gitlab() -> Iterator[tuple[FakeGitLab, dict[str, str]]]:
    fake = FakeGitLab()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            if self.headers.get("PRIVATE-TOKEN") != TOKEN:
                self._send(401, {"message": "401 Unauthorized"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, payload = fake.handle(self.command, urlsplit(self.path).path, body)
            self._send(status, payload)

        def _send(self, status: int, payload: Any) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = _serve

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    environ = {"CI_API_V4_URL": f"http://127.0.0.1:{server.server_port}/api/v4",
               "CI_PROJECT_ID": "7", "CI_MERGE_REQUEST_IID": "12", "CI_COMMIT_SHA": "abc",
               "RECONCILER_GITLAB_TOKEN": TOKEN}
    try:
        yield fake, environ
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_note_is_created_once_then_updated_in_place(
        gitlab: tuple[FakeGitLab, dict[str, str]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake, environ = gitlab
    md = tmp_path / "plan.md"
    md.write_text(f"{MARKER}\n### reconciler plan\n\n**Plan: 1 to add**\n")
    assert gitlab_mr.main(["note", str(md)], environ) == 0
    md.write_text(f"{MARKER}\n### reconciler plan\n\n**No changes.**\n")
    assert gitlab_mr.main(["note", str(md)], environ) == 0
    assert capsys.readouterr().out == "created note 2\nupdated note 2\n"
    assert [n["body"] for n in fake.notes] == ["looks good", md.read_text()]


def test_a_persons_note_with_the_marker_is_never_rewritten(
        gitlab: tuple[FakeGitLab, dict[str, str]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A person's note that merely contains the marker (an invisible HTML comment anyone can
    type) is not the plan note: it is left alone, and a note of the token's user is made."""
    fake, environ = gitlab
    fake.notes = [{"id": 1, "body": f"LGTM {MARKER}", "system": False, "author": PERSON}]
    md = tmp_path / "plan.md"
    md.write_text(f"{MARKER}\n### reconciler plan\n")
    assert gitlab_mr.main(["note", str(md)], environ) == 0
    assert capsys.readouterr().out == "created note 2\n"
    assert fake.notes[0]["body"] == f"LGTM {MARKER}"
    assert "PUT /api/v4/projects/7/merge_requests/12/notes/1" not in fake.calls
    assert "GET /api/v4/user" in fake.calls


def test_the_drift_issue_is_never_a_persons_issue(
        gitlab: tuple[FakeGitLab, dict[str, str]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake, environ = gitlab
    human = {"iid": 1, "state": "opened", "author": PERSON, "notes": [],
             "description": f"{gitlab_mr.DRIFT_MARKER}\nmy words"}
    fake.issues.append(human)
    body = tmp_path / "drift.md"
    body.write_text("## Drift\n")
    assert gitlab_mr.main(["drift-issue", str(body), "no"], environ) == 0
    assert gitlab_mr.main(["drift-issue", str(body), "yes"], environ) == 0
    assert gitlab_mr.main(["drift-issue", str(body), "yes"], environ) == 0
    assert gitlab_mr.main(["drift-issue", str(body), "no"], environ) == 0
    assert capsys.readouterr().out.splitlines() == [
        "in sync, no drift issue open", "opened issue #2", "updated issue #2",
        "closed issue #2"]
    assert human["state"] == "opened" and human["description"].endswith("my words")
    assert not human["notes"] and fake.issues[1]["state"] == "closed"


def test_bad_token_fails_without_printing_it(gitlab: tuple[FakeGitLab, dict[str, str]],
                                            tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _, environ = gitlab
    (tmp_path / "plan.md").write_text("x")
    code = gitlab_mr.main(["note", str(tmp_path / "plan.md")],
                          {**environ, "RECONCILER_GITLAB_TOKEN": "wrong-secret"})
    captured = capsys.readouterr()
    assert code == 1 and "401" in captured.err
    assert "wrong-secret" not in captured.out + captured.err


def test_reviewed_plan_is_the_merged_mr_head_pipeline_artifact(
        gitlab: tuple[FakeGitLab, dict[str, str]], tmp_path: Path) -> None:
    fake, environ = gitlab
    fake.commit_mrs["abc"] = [{"iid": 12, "state": "merged"}]
    fake.mrs["12"] = {"iid": 12, "sha": "head", "head_pipeline": {"id": 99, "status": "success"}}
    fake.jobs["99"] = [{"id": 5, "name": "validate"}, {"id": 6, "name": "reconciler-plan"}]
    fake.artifacts["6"] = b'{"resource_changes": []}'
    out = tmp_path / "reviewed" / "plan.json"
    assert gitlab_mr.main(["reviewed-plan", str(out)], environ) == 0
    assert out.read_bytes() == b'{"resource_changes": []}'


@pytest.mark.parametrize("case", ["direct-push", "failed-pipeline", "no-plan-job"])
def test_no_reviewed_plan_writes_nothing(gitlab: tuple[FakeGitLab, dict[str, str]],
                                         tmp_path: Path, case: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    fake, environ = gitlab
    if case != "direct-push":
        fake.commit_mrs["abc"] = [{"iid": 12, "state": "merged"}]
        status = "failed" if case == "failed-pipeline" else "success"
        fake.mrs["12"] = {"iid": 12, "head_pipeline": {"id": 99, "status": status}}
        fake.jobs["99"] = [{"id": 5, "name": "validate"}]
    out = tmp_path / "reviewed" / "plan.json"
    assert gitlab_mr.main(["reviewed-plan", str(out)], environ) == 0
    assert not out.exists()
    assert capsys.readouterr().out.startswith("No reviewed plan: ")


# --- GitHub: the reviewed run and the drift issue ------------------------------------------

WORKFLOW = ".github/workflows/reconciler.yml"


@pytest.fixture()
def fake_github() -> Iterator[FakeGitHub]:
    yield from serve(FakeGitHub())


def _github_env(fake: FakeGitHub, sha: str = "") -> dict[str, str]:
    return {"GITHUB_API_URL": fake.url, "GITHUB_REPOSITORY": REPO, "GITHUB_TOKEN": GITHUB_TOKEN,
            "GITHUB_SHA": sha, "GITHUB_WORKFLOW": "reconciler",
            "GITHUB_WORKFLOW_REF": f"{REPO}/{WORKFLOW}@refs/heads/main"}


def _run(run_id: int, *, head: str, number: int, base: str = "main",
         path: str = WORKFLOW) -> dict[str, Any]:
    """A workflow run as GitHub's REST API lists it."""
    return {"id": run_id, "name": "reconciler", "event": "pull_request", "head_sha": head,
            "conclusion": "success", "path": path, "head_branch": "feature",
            "pull_requests": [{"number": number, "head": {"ref": "feature", "sha": head},
                               "base": {"ref": base}}]}


def _merged(fake: FakeGitHub, *, head: str, merge: str, number: int = 7) -> None:
    fake.pulls[merge] = [{"number": number, "merged_at": "2025-01-01T00:00:00Z",
                          "head": {"sha": head}, "base": {"ref": "main"}}]


def _reviewed(fake: FakeGitHub, environ: dict[str, str]) -> tuple[str, str]:
    return github_pr.reviewed_run(github_pr.GitHub(environ), environ)


def test_reviewed_run_is_a_run_of_the_merged_pull_request(fake_github: FakeGitHub) -> None:
    """Another pull request of the same head commit (e.g. into a branch whose workflow its
    author wrote) must not supply the "reviewed" plan of the one that was merged."""
    head, merge = "a" * 40, "b" * 40
    _merged(fake_github, head=head, merge=merge)
    # run 11: the merged PR #7's plan; run 12, newer: PR #8, same head, base `sandbox`.
    fake_github.runs = [_run(11, head=head, number=7),
                        _run(12, head=head, number=8, base="sandbox")]
    assert _reviewed(fake_github, _github_env(fake_github, merge))[0] == "11"
    assert f"GET /repos/{REPO}/actions/workflows/reconciler.yml/runs" in fake_github.calls


def test_reviewed_run_is_a_run_of_this_workflow_file(fake_github: FakeGitHub) -> None:
    """A workflow file that merely shares the name `reconciler` is not this workflow."""
    head, merge = "c" * 40, "d" * 40
    _merged(fake_github, head=head, merge=merge)
    fake_github.runs = [_run(21, head=head, number=7),
                        _run(22, head=head, number=7, path=".github/workflows/lookalike.yml")]
    assert _reviewed(fake_github, _github_env(fake_github, merge))[0] == "21"
    # the lookalike's run, even listed under this workflow's endpoint, is not taken
    fake_github.runs = [{**_run(22, head=head, number=7), "path": "other/reconciler.yml"}]
    assert _reviewed(fake_github, _github_env(fake_github, merge))[0] == ""


def test_no_reviewed_run_of_another_base_or_without_the_workflow_ref(
        fake_github: FakeGitHub) -> None:
    head, merge = "e" * 40, "f" * 40
    _merged(fake_github, head=head, merge=merge)
    # PR #7 was planned while it targeted `sandbox`, then retargeted at main and merged
    fake_github.runs = [_run(31, head=head, number=7, base="sandbox")]
    run_id, why = _reviewed(fake_github, _github_env(fake_github, merge))
    assert run_id == "" and f"no successful plan run of {WORKFLOW}" in why
    # a run of no pull request (pull_requests empty) is not one either
    fake_github.runs = [{**_run(32, head=head, number=7), "pull_requests": []}]
    assert _reviewed(fake_github, _github_env(fake_github, merge))[0] == ""
    fake_github.runs = [_run(33, head=head, number=7)]
    environ = {**_github_env(fake_github, merge), "GITHUB_WORKFLOW_REF": ""}
    run_id, why = _reviewed(fake_github, environ)
    assert run_id == "" and "GITHUB_WORKFLOW_REF" in why
    assert _reviewed(fake_github, _github_env(fake_github, merge))[0] == "33"


def test_drift_issue_is_never_a_persons_issue(fake_github: FakeGitHub) -> None:
    """A person's issue that carries the label and the marker (an HTML comment anyone can
    type) is neither rewritten nor closed: the drift issue is one the job's token opened."""
    human = {"number": 1, "state": "open", "labels": [github_pr.DRIFT_LABEL],
             "title": "please look", "user": {"login": "mallory", "type": "User"},
             "body": f"{github_pr.DRIFT_MARKER}\nmy words"}
    fake_github.issues.append(human)
    api = github_pr.GitHub(_github_env(fake_github))
    assert github_pr.drift_issue(api, body="drift", drifted=False) == (
        "in sync, no drift issue open")
    assert human["state"] == "open" and human["body"].endswith("my words")
    assert github_pr.drift_issue(api, body="drift", drifted=True) == "opened issue #2"
    assert human["body"].endswith("my words")
    assert github_pr.drift_issue(api, body="again", drifted=True) == "updated issue #2"
    assert github_pr.drift_issue(api, body="", drifted=False) == "closed issue #2"
    assert human["state"] == "open" and fake_github.issues[1]["state"] == "closed"


def test_a_key_re_made_in_the_console_after_the_review_is_another_change_set(
        cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    """Reviewed: delete x. Then x is deleted and made again with another key in the console:
    the fresh plan still deletes x, but not the key that was reviewed."""
    cli.write("keypairs:\n  - name: x\n  - name: other\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    reviewed = plan(cli, "keypairs:\n  - name: other\n", "reviewed.json")
    console = cli.client()
    console.delete_keypair("x")
    console.import_keypair(name="x", public_key=K1 + " prod-bastion")
    fresh = plan(cli, "keypairs:\n  - name: other\n", "fresh.json")
    code, said = compare(reviewed, fresh, capsys)
    assert code == 1 and "keypair.x: delete with other attributes than reviewed" in said, said
    again = plan(cli, "keypairs:\n  - name: other\n", "again.json")
    assert compare(fresh, again, capsys)[0] == 0  # the same cloud: the same change set
