"""GitLab API calls for the reconciler pipeline: keep one plan note per merge request, and
fetch the plan that was reviewed on the merge request a default-branch commit came from.

Usage (``python -m reconciler.gitops.gitlab …``):
    note PLAN.md          create or update the merge request's plan note
    reviewed-plan OUT     write the reviewed plan.json to OUT, if there is one
    drift-issue BODY.md yes|no   open or update the one drift issue (yes), or close it (no)

Environment: CI_API_V4_URL, CI_PROJECT_ID (set by GitLab), CI_MERGE_REQUEST_IID (note),
CI_COMMIT_SHA (reviewed-plan), and RECONCILER_GITLAB_TOKEN: a project access token with the
``api`` scope (Reporter role is enough) — the job token cannot write notes.
The plan note and the drift issue are found by their marker and their author: the token's own
user (``GET /user``), never a person who typed the marker.
``reviewed-plan`` exits 0 without writing OUT when there is no reviewed plan (a direct push, or
a merge request whose last pipeline did not succeed); the pipeline then refuses to apply.
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

MARKER = "<!-- reconciler-plan -->"
PLAN_JOB = "reconciler-plan"  # the component's job whose artifact is the plan
DRIFT_MARKER = "<!-- reconciler-drift -->"
DRIFT_LABEL = "reconciler-drift"
DRIFT_TITLE = "reconciler: the key pairs drifted from their manifests"
TIMEOUT = 30
USER = "/user"  # the token's own user: the author of every note and issue we write
ROOT_PATHS = frozenset({USER})


class GitLab:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.base = environ["CI_API_V4_URL"].rstrip("/")
        self.project = urllib.parse.quote(environ["CI_PROJECT_ID"], safe="")
        self.token = environ["RECONCILER_GITLAB_TOKEN"]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        # /user is the API's own; every other path is the project's
        url = (f"{self.base}{path}" if path in ROOT_PATHS
               else f"{self.base}/projects/{self.project}{path}")
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("PRIVATE-TOKEN", self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            payload: bytes = resp.read()
            return payload

    def json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return json.loads(self.call(method, path, body) or b"null")

    def pages(self, path: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in range(1, 101):
            sep = "&" if "?" in path else "?"
            batch = self.json("GET", f"{path}{sep}per_page=100&page={page}")
            out.extend(batch)
            if len(batch) < 100:
                break
        return out


def token_user(api: GitLab) -> int | None:
    """The id of the token's user (a project access token is a bot user of its own)."""
    me = api.json("GET", USER)
    user_id = me.get("id") if isinstance(me, dict) else None
    return user_id if isinstance(user_id, int) else None


def _ours(item: Mapping[str, Any], me: int | None) -> bool:
    """Written with this token, never by a person: the marker is an HTML comment anyone can
    type into a note or an issue."""
    author = item.get("author")
    return me is not None and isinstance(author, dict) and author.get("id") == me


def upsert_note(api: GitLab, *, iid: str, body: str) -> str:
    """Update the merge request's plan note in place, or create it; returns what it did.
    Only a note the token's user wrote is ever rewritten."""
    if MARKER not in body:
        body = f"{MARKER}\n{body}"
    me = token_user(api)
    notes = api.pages(f"/merge_requests/{iid}/notes?sort=asc")
    mine = next((n for n in notes if MARKER in (n.get("body") or "") and not n.get("system")
                 and _ours(n, me)), None)
    if mine is not None:
        api.json("PUT", f"/merge_requests/{iid}/notes/{mine['id']}", {"body": body})
        return f"updated note {mine['id']}"
    created = api.json("POST", f"/merge_requests/{iid}/notes", {"body": body})
    return f"created note {created['id']}"


def reviewed_plan(api: GitLab, *, sha: str) -> tuple[bytes | None, str]:
    """The plan artifact of the last successful pipeline of the merge request of ``sha``."""
    mrs = api.json("GET", f"/repository/commits/{sha}/merge_requests")
    merged = [m for m in mrs if m.get("state") == "merged"]
    if not merged:
        return None, f"no merged merge request contains {sha}"
    iid = merged[0]["iid"]
    mr = api.json("GET", f"/merge_requests/{iid}")
    pipeline = mr.get("head_pipeline") or {}
    if pipeline.get("status") != "success":
        return None, f"!{iid}: its last pipeline did not succeed, so no plan was reviewed"
    jobs = api.pages(f"/pipelines/{pipeline['id']}/jobs?scope[]=success")
    job = next((j for j in jobs if j.get("name") == PLAN_JOB), None)
    if job is None:
        return None, f"!{iid}: pipeline {pipeline['id']} has no successful {PLAN_JOB} job"
    return api.call("GET", f"/jobs/{job['id']}/artifacts/plan.json"), (
        f"the plan reviewed on !{iid} (pipeline {pipeline['id']}, job {job['id']})")


def drift_issue(api: GitLab, *, body: str, drifted: bool) -> str:
    """Keep one open drift issue, found by its label, its marker and its author (the token's
    user); close it once in sync. A person's issue is never rewritten nor closed."""
    me = token_user(api)
    issues = api.pages(f"/issues?state=opened&labels={DRIFT_LABEL}")
    mine = next((i for i in issues if DRIFT_MARKER in (i.get("description") or "")
                 and _ours(i, me)), None)
    body = f"{DRIFT_MARKER}\n{body}"
    if drifted and mine is not None:
        api.json("PUT", f"/issues/{mine['iid']}", {"description": body})
        return f"updated issue #{mine['iid']}"
    if drifted:
        created = api.json("POST", "/issues", {"title": DRIFT_TITLE, "description": body,
                                                "labels": DRIFT_LABEL})
        return f"opened issue #{created['iid']}"
    if mine is not None:
        api.json("POST", f"/issues/{mine['iid']}/notes",
                 {"body": "The key pairs are back in sync with their manifests: closing."})
        api.json("PUT", f"/issues/{mine['iid']}", {"state_event": "close"})
        return f"closed issue #{mine['iid']}"
    return "in sync, no drift issue open"


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    try:
        api = GitLab(environ)
        match list(argv):
            case ["note", path]:
                iid = environ["CI_MERGE_REQUEST_IID"]
                print(upsert_note(api, iid=iid, body=Path(path).read_text(encoding="utf-8")))
            case ["reviewed-plan", out]:
                plan, what = reviewed_plan(api, sha=environ["CI_COMMIT_SHA"])
                print(f"Reviewed plan: {what}" if plan else f"No reviewed plan: {what}")
                if plan is not None:
                    Path(out).parent.mkdir(parents=True, exist_ok=True)
                    Path(out).write_bytes(plan)
            case ["drift-issue", path, ("yes" | "no") as drifted]:
                body = Path(path).read_text(encoding="utf-8")
                print(drift_issue(api, body=body, drifted=drifted == "yes"))
            case _:
                print(__doc__, file=sys.stderr)
                return 2
    except KeyError as exc:
        print(f"Error: {exc.args[0]} is not set", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"Error: GitLab API: {exc}", file=sys.stderr)  # never includes the token
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
