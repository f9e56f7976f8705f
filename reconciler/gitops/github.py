"""GitHub REST calls for the reconciler action: one plan comment per pull request, one drift
issue per repository, the run whose plan was reviewed, and the Actions OIDC token.

Usage (``python -m reconciler.gitops.github …``):
    comment PLAN.md [DIGEST]   create or update the pull request's plan comment
    drift-issue BODY.md yes|no open or update the drift issue (yes), or close it (no)
    reviewed-run               the id of the successful pull_request run of this workflow for
                               the head of the pull request merged as GITHUB_SHA
                               (``run-id=`` in GITHUB_OUTPUT; empty when there is none)
    id-token AUDIENCE FILE     write this job's OIDC token for AUDIENCE to FILE (0600)

Environment, all set by GitHub Actions: GITHUB_API_URL (GitHub Enterprise Server has its own),
GITHUB_REPOSITORY, GITHUB_EVENT_PATH, GITHUB_SHA, GITHUB_WORKFLOW_REF, GITHUB_SERVER_URL,
GITHUB_RUN_ID, GITHUB_OUTPUT; GITHUB_TOKEN (the job's token, passed in by the action);
ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN for ``id-token`` (``permissions: id-token: write``).
Comments and issues are found by a marker in their body and their author being a bot, never
by their text: a person's comment or issue is never rewritten, nor closed. Errors name the
call and the status, never a token. ``reviewed-run`` takes only runs of the workflow file
GITHUB_WORKFLOW_REF names, made for the merged pull request itself.
May import: the standard library.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PLAN_MARKER = "<!-- reconciler-plan -->"
DRIFT_MARKER = "<!-- reconciler-drift -->"
DRIFT_LABEL = "reconciler-drift"
DRIFT_TITLE = "reconciler: the key pairs drifted from their manifests"
MAX_BODY = 65000  # GitHub refuses comment and issue bodies over 65,536 characters
TIMEOUT = 30


class GitHubError(Exception):
    """A call that failed, named by method, path and status (never by its token)."""


class GitHub:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.base = environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
        self.repo = environ["GITHUB_REPOSITORY"]
        self.token = environ["GITHUB_TOKEN"]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = f"{self.base}/repos/{self.repo}{path}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/vnd.github+json")
        req.add_header("X-GitHub-Api-Version", "2022-11-28")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise GitHubError(f"{method} {path}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise GitHubError(f"{method} {url}: {exc}") from None

    def pages(self, path: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        sep = "&" if "?" in path else "?"
        for page in range(1, 101):
            batch = self.call("GET", f"{path}{sep}per_page=100&page={page}")
            out.extend(batch)
            if len(batch) < 100:
                break
        return out


def _event(environ: Mapping[str, str]) -> dict[str, Any]:
    path = environ.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    return doc if isinstance(doc, dict) else {}


def _fit(body: str) -> str:
    if len(body) <= MAX_BODY:
        return body
    return body[:MAX_BODY] + "\n\n… cut: the complete plan is in the run's artifact.\n"


def _by_bot(item: Mapping[str, Any]) -> bool:
    """Written by a bot (the job's token writes as ``github-actions[bot]``), never a person:
    the marker is an HTML comment anyone can type into a comment or an issue."""
    return (item.get("user") or {}).get("type") == "Bot"


def upsert_comment(api: GitHub, environ: Mapping[str, str], *, body: str, digest: str) -> str:
    """Rewrite the pull request's plan comment in place, or create it; returns what it did."""
    pr = _event(environ).get("pull_request") or {}
    number = pr.get("number")
    if number is None:
        raise GitHubError("this is not a pull_request event: there is no pull request to comment")
    if PLAN_MARKER not in body:
        body = f"{PLAN_MARKER}\n{body}"
    sha = str((pr.get("head") or {}).get("sha", ""))[:7]
    run = (f"{environ.get('GITHUB_SERVER_URL', 'https://github.com')}/{api.repo}"
           f"/actions/runs/{environ.get('GITHUB_RUN_ID', '')}")
    change_set = f" · change set `{digest}`" if digest else ""
    body = _fit(body) + (f"\n<sub>Plan of {sha} · [run log]({run}){change_set} · merging "
                         "applies this change set and nothing else</sub>\n")
    comments = api.pages(f"/issues/{number}/comments")
    mine = next((c for c in comments if PLAN_MARKER in (c.get("body") or "") and _by_bot(c)),
                None)
    if mine is not None:
        api.call("PATCH", f"/issues/comments/{mine['id']}", {"body": body})
        return f"updated comment {mine['id']} on #{number}"
    created = api.call("POST", f"/issues/{number}/comments", {"body": body})
    return f"created comment {created['id']} on #{number}"


def drift_issue(api: GitHub, *, body: str, drifted: bool) -> str:
    """Keep one open drift issue: open or update it while the estate differs, close it once
    it is back in sync. Found by its label and marker."""
    issues = api.pages(f"/issues?state=open&labels={DRIFT_LABEL}")
    mine = next((i for i in issues if DRIFT_MARKER in (i.get("body") or "")
                 and "pull_request" not in i and _by_bot(i)), None)
    body = f"{DRIFT_MARKER}\n{_fit(body)}"
    if drifted and mine is not None:
        api.call("PATCH", f"/issues/{mine['number']}", {"body": body})
        return f"updated issue #{mine['number']}"
    if drifted:
        created = api.call("POST", "/issues", {"title": DRIFT_TITLE, "body": body,
                                               "labels": [DRIFT_LABEL]})
        return f"opened issue #{created['number']}"
    if mine is not None:
        api.call("POST", f"/issues/{mine['number']}/comments",
                 {"body": "The key pairs are back in sync with their manifests: closing."})
        api.call("PATCH", f"/issues/{mine['number']}", {"state": "closed",
                                                         "state_reason": "completed"})
        return f"closed issue #{mine['number']}"
    return "in sync, no drift issue open"


def workflow_file(environ: Mapping[str, str]) -> str:
    """This workflow's file, ``.github/workflows/X.yml``, from GITHUB_WORKFLOW_REF
    (``owner/repo/.github/workflows/X.yml@refs/heads/main``); "" when it is not there."""
    ref = environ.get("GITHUB_WORKFLOW_REF", "").rpartition("@")[0]
    prefix = f"{environ.get('GITHUB_REPOSITORY', '')}/"
    return ref.removeprefix(prefix) if ref.startswith(f"{prefix}.github/workflows/") else ""


def _of_pull_request(run: Mapping[str, Any], *, number: int, base: str) -> bool:
    """The run was made for pull request ``number`` (into ``base``, when GitHub says)."""
    for pr in run.get("pull_requests") or []:
        if not isinstance(pr, dict) or pr.get("number") != number:
            continue
        into = (pr.get("base") or {}).get("ref")
        if not base or not into or into == base:
            return True
    return False


def reviewed_run(api: GitHub, environ: Mapping[str, str]) -> tuple[str, str]:
    """The run id whose artifact is the plan reviewed on the pull request merged as
    GITHUB_SHA, or "" and why there is none.

    Only a successful ``pull_request`` run of this very workflow file (GITHUB_WORKFLOW_REF)
    for the merged pull request's head, made for that pull request (its number, and its
    base the default branch when GitHub reports one), counts: another pull request of the
    same commit, or another workflow that shares this one's name, never supplies the plan."""
    sha = environ["GITHUB_SHA"]
    path = workflow_file(environ)
    if not path:
        return "", ("GITHUB_WORKFLOW_REF does not name this repository's workflow file, so "
                    "its runs cannot be told from another workflow's")
    pulls = api.call("GET", f"/commits/{sha}/pulls")
    merged = [p for p in pulls if p.get("merged_at")]
    if not merged:
        return "", f"no merged pull request contains {sha}"
    number, head = merged[0]["number"], merged[0]["head"]["sha"]
    base = str((_event(environ).get("repository") or {}).get("default_branch")
               or (merged[0].get("base") or {}).get("ref") or "")
    query = urllib.parse.urlencode({"event": "pull_request", "head_sha": head,
                                    "status": "success"})
    file = urllib.parse.quote(path.rpartition("/")[2], safe="")
    runs = api.call("GET", f"/actions/workflows/{file}/runs?{query}").get("workflow_runs") or []
    mine = [r for r in runs if str(r.get("path", "")).partition("@")[0] == path
            and r.get("event") == "pull_request" and r.get("head_sha") == head
            and r.get("conclusion") == "success"
            and _of_pull_request(r, number=number, base=base)]
    if not mine:
        return "", f"#{number}: no successful plan run of {path} for its head {head}"
    return str(mine[0]["id"]), f"the plan reviewed on #{number} (run {mine[0]['id']})"


def id_token(environ: Mapping[str, str], *, audience: str, out: Path) -> None:
    """This job's OIDC token for ``audience``, written 0600 to ``out``."""
    url = environ.get("ACTIONS_ID_TOKEN_REQUEST_URL")
    token = environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if not url or not token:
        raise GitHubError("no OIDC token here: give the job `permissions: id-token: write`")
    sep = "&" if "?" in url else "?"
    req = urllib.request.Request(f"{url}{sep}audience={urllib.parse.quote(audience)}")
    req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            value = json.loads(resp.read())["value"]
    except urllib.error.HTTPError as exc:
        raise GitHubError(f"the OIDC token request: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
        raise GitHubError(f"the OIDC token request failed ({type(exc).__name__})") from None
    # never through a link, and 0600 even when a file was already there (the mode given to
    # O_CREAT applies only to a new file)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(str(value))


def _output(environ: Mapping[str, str], name: str, value: str) -> None:
    path = environ.get("GITHUB_OUTPUT")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{name}={value}\n")


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    try:
        match list(argv):
            case ["comment", path, *rest] if len(rest) <= 1:
                body = Path(path).read_text(encoding="utf-8")
                print(upsert_comment(GitHub(environ), environ, body=body,
                                     digest=rest[0] if rest else ""))
            case ["drift-issue", path, ("yes" | "no") as drifted]:
                body = Path(path).read_text(encoding="utf-8")
                print(drift_issue(GitHub(environ), body=body, drifted=drifted == "yes"))
            case ["reviewed-run"]:
                run_id, what = reviewed_run(GitHub(environ), environ)
                print(f"Reviewed plan: {what}" if run_id else f"No reviewed plan: {what}")
                _output(environ, "run-id", run_id)
            case ["id-token", audience, out]:
                id_token(environ, audience=audience, out=Path(out))
                print(f"Wrote this job's OIDC token for {audience} to {out}")
            case _:
                print(__doc__, file=sys.stderr)
                return 2
    except KeyError as exc:
        print(f"Error: {exc.args[0]} is not set", file=sys.stderr)
        return 1
    except (GitHubError, OSError, ValueError) as exc:
        print(f"Error: GitHub API: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
