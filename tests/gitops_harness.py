"""A small executor of the GitOps workflows, for tests: it reads the example workflows and
``action.yml`` and runs their ``run:`` steps with bash, as GitHub Actions would for one event.

What it does for real: job and step ``if:`` conditions and ``${{ }}`` interpolation (a small
evaluator of the expressions the workflows use; anything else is an error, so the workflows
stay simple enough for it to be honest), ``env`` at workflow, job and step level,
``GITHUB_OUTPUT``/``GITHUB_ENV``/``GITHUB_STEP_SUMMARY`` files, ``steps.ID.outputs``, the
local action (``uses: OWNER/REPO@REF`` or ``./``) expanded into its composite
steps with its inputs and defaults, and secrets scoped as GitHub scopes them: repository
secrets everywhere, an environment's secrets only in a job naming that environment, and such
a job refused off the branch the environment allows.

What it stands in for: ``actions/checkout`` copies the commit's tree into a fresh workspace,
``actions/upload-artifact``/``download-artifact`` copy files to and from a per-run store,
``actions/setup-python`` does nothing (the test's Python is used), and ``pip install`` of the
action's checkout is checked (that it names the action's directory with the ``s3`` extra) and
skipped: the installed command is the working tree's ``reconciler``. The GitHub REST API is
``FakeGitHub``, a server on 127.0.0.1 the scripts reach through ``GITHUB_API_URL``. ``paths:``
filters of ``on:`` are not evaluated (every event runs the workflow).

Credentials: AK/SK from the repository's secrets. For OIDC, set ``Repository.variables``
``HUAWEICLOUD_SDK_IDP_ID``/``RECONCILER_OIDC_AUDIENCE`` and ``FakeGitHub.id_token``: the job
then gets ``ACTIONS_ID_TOKEN_REQUEST_URL``/``_TOKEN`` pointing at the stand-in, and the action
writes the token to ``HUAWEICLOUD_SDK_ID_TOKEN_FILE``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

ROOT = Path(__file__).parent.parent
ACTION = ROOT / "action.yml"
OWN_ACTION = re.compile(r"^(OWNER/REPO@[\w.-]+|\./?)$")
REPO = "example-org/keypairs"
TOKEN = "ghs_harness_job_token"
ID_TOKEN_REQUEST = "harness-id-token-request"

# --- expressions ---------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+)|(?P<op>==|!=|&&|\|\||[!().,])"
                    r"|(?P<name>[A-Za-z_][\w-]*))")


class ExpressionError(Exception):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ExpressionError(f"cannot read {text[pos:]!r} in {text!r}")
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _truthy(value: Any) -> bool:
    return value not in (None, "", 0, False)


class _Parser:
    """Recursive descent over GitHub's expression grammar, the part the workflows use."""

    def __init__(self, text: str, context: Mapping[str, Any],
                 status: Callable[[str], bool]) -> None:
        self.toks, self.i, self.text = _tokens(text), 0, text
        self.ctx, self.status = context, status

    def peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def take(self, want: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks) or (want is not None and self.toks[self.i][1] != want):
            raise ExpressionError(f"expected {want!r} in {self.text!r}")
        self.i += 1
        return self.toks[self.i - 1]

    def parse(self) -> Any:
        value = self.or_()
        if self.i != len(self.toks):
            raise ExpressionError(f"trailing {self.peek()!r} in {self.text!r}")
        return value

    def or_(self) -> Any:
        value = self.and_()
        while self.peek() == "||":
            self.take()
            other = self.and_()
            value = value if _truthy(value) else other
        return value

    def and_(self) -> Any:
        value = self.unary()
        while self.peek() == "&&":
            self.take()
            other = self.unary()
            value = other if _truthy(value) else value
        return value

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not _truthy(self.unary())
        left = self.primary()
        if self.peek() in ("==", "!="):
            op = self.take()[1]
            right = self.primary()
            same = _norm(left) == _norm(right)
            return same if op == "==" else not same
        return left

    def primary(self) -> Any:
        kind, text = self.take()
        if text == "(":
            value = self.or_()
            self.take(")")
            return value
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return int(text)
        if kind != "name":
            raise ExpressionError(f"unexpected {text!r} in {self.text!r}")
        if text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        if self.peek() == "(":
            if text not in ("always", "success", "failure", "cancelled"):
                raise ExpressionError(f"function {text}() is not supported")
            self.take("(")
            self.take(")")
            return self.status(text)
        if text not in self.ctx:
            raise ExpressionError(f"unknown context {text!r} in {self.text!r}")
        value: Any = self.ctx[text]
        while self.peek() == ".":
            self.take(".")
            name = self.take()[1]
            value = value.get(name) if isinstance(value, Mapping) else None
        return value


def _norm(value: Any) -> Any:
    if value is None:
        return ""  # GitHub compares null and '' as equal (both coerce to 0)
    return value.lower() if isinstance(value, str) else value


def evaluate(text: str, context: Mapping[str, Any],
             status: Callable[[str], bool] = lambda f: f != "failure") -> Any:
    return _Parser(text, context, status).parse()


def _string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def interpolate(text: str, context: Mapping[str, Any]) -> str:
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: _string(evaluate(m.group(1), context)), text)


def condition(text: Any, context: Mapping[str, Any], *, failed: bool) -> bool:
    if text is None:
        return not failed
    expr = str(text).strip()
    if expr.startswith("${{") and expr.endswith("}}"):
        expr = expr[3:-2]
    used: set[str] = set()

    def status(name: str) -> bool:
        used.add(name)
        return {"always": True, "success": not failed, "failure": failed,
                "cancelled": False}[name]

    value = _truthy(evaluate(expr, context, status))
    return value if used else value and not failed  # implicit success() as GitHub does


# --- the GitHub REST API stand-in ----------------------------------------------------------


@dataclass
class FakeGitHub:
    """Comments, issues, the pulls of a commit and the workflow runs: what the action calls."""

    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    issues: list[dict[str, Any]] = field(default_factory=list)
    pulls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # merge sha -> PRs
    runs: list[dict[str, Any]] = field(default_factory=list)
    id_token: str | None = None
    opened: list[dict[str, Any]] = field(default_factory=list)  # by create-pull-request
    calls: list[str] = field(default_factory=list)
    url: str = ""
    _next: int = 100

    def _id(self) -> int:
        self._next += 1
        return self._next

    def handle(self, method: str, path: str, query: dict[str, list[str]],
               body: Any) -> tuple[int, Any]:
        self.calls.append(f"{method} {path}")
        parts = path.removeprefix(f"/repos/{REPO}").strip("/").split("/")
        q = {k: v[0] for k, v in query.items()}
        match method, parts:
            case "GET", ["issues", number, "comments"]:
                return 200, self._page(self.comments.get(int(number), []), q)
            case "POST", ["issues", number, "comments"]:
                comment = {"id": self._id(), "body": body["body"], "user": {"type": "Bot"}}
                self.comments.setdefault(int(number), []).append(comment)
                return 201, comment
            case "PATCH", ["issues", "comments", cid]:
                comment = next(c for cs in self.comments.values() for c in cs
                               if str(c["id"]) == cid)
                comment["body"] = body["body"]
                return 200, comment
            case "GET", ["issues"]:
                found = [i for i in self.issues if i["state"] == q.get("state", "open")
                         and (not q.get("labels") or q["labels"] in i["labels"])]
                return 200, self._page(found, q)
            case "POST", ["issues"]:
                issue = {"number": len(self.issues) + 1, "state": "open", **body,
                         "user": {"type": "Bot"}}  # the job token writes as a bot
                self.issues.append(issue)
                return 201, issue
            case "PATCH", ["issues", number]:
                issue = self.issues[int(number) - 1]
                issue.update(body)
                return 200, issue
            case "GET", ["commits", sha, "pulls"]:
                return 200, self.pulls.get(sha, [])
            case "GET", ["actions", "runs"]:
                return 200, self._runs(self.runs, q)
            case "GET", ["actions", "workflows", file, "runs"]:
                return 200, self._runs([r for r in self.runs if r["path"].rpartition("/")[2]
                                        == file], q)
        return 404, {"message": "Not Found"}

    @staticmethod
    def _runs(runs: list[dict[str, Any]], q: Mapping[str, str]) -> dict[str, Any]:
        """Newest first, filtered as GitHub filters ``event``, ``head_sha`` and ``status``."""
        found = [r for r in runs if r["event"] == q.get("event")
                 and r["head_sha"] == q.get("head_sha") and r["conclusion"] == q.get("status")]
        return {"total_count": len(found), "workflow_runs": found[::-1]}

    @staticmethod
    def _page(items: list[dict[str, Any]], q: Mapping[str, str]) -> list[dict[str, Any]]:
        size, page = int(q.get("per_page", 30)), int(q.get("page", 1))
        return items[(page - 1) * size:page * size]


def serve(fake: FakeGitHub) -> Iterator[FakeGitHub]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/oidc":
                if (self.headers.get("Authorization") != f"Bearer {ID_TOKEN_REQUEST}"
                        or fake.id_token is None):
                    self._send(403, {"message": "no id-token permission"})
                    return
                self._send(200, {"value": fake.id_token})
                return
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._send(401, {"message": "Bad credentials"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, payload = fake.handle(self.command, url.path, parse_qs(url.query), body)
            self._send(status, payload)

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- the repository and its runs -----------------------------------------------------------


@dataclass
class Repository:
    """Commits as whole trees (directories), the secrets and variables of a repository."""

    root: Path
    secrets: dict[str, str] = field(default_factory=dict)
    environments: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> secrets
    variables: dict[str, str] = field(default_factory=dict)
    default_branch: str = "main"
    commits: dict[str, Path] = field(default_factory=dict)

    def commit(self, files: Mapping[str, str | bytes | None], *, parent: str | None = None,
               tree: Path | None = None) -> str:
        sha = f"{len(self.commits) + 1:040x}"
        path = self.root / "commits" / sha
        base = tree or (self.commits[parent] if parent else None)
        if base is not None:
            shutil.copytree(base, path)
        else:
            path.mkdir(parents=True)
        for name, text in files.items():
            if text is None:
                (path / name).unlink()
            else:
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                if isinstance(text, bytes):
                    (path / name).write_bytes(text)
                else:
                    (path / name).write_text(text)
        self.commits[sha] = path
        return sha


@dataclass
class StepRecord:
    job: str
    name: str
    env: dict[str, str]
    code: int
    output: str


@dataclass
class RunRecord:
    id: int
    workflow: str
    event: str
    head_sha: str
    jobs: dict[str, str] = field(default_factory=dict)  # job -> success | failure | skipped
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)  # job -> its outputs
    steps: list[StepRecord] = field(default_factory=list)
    summary: str = ""

    @property
    def conclusion(self) -> str:
        return "failure" if "failure" in self.jobs.values() else "success"

    def log(self, job: str | None = None) -> str:
        return "".join(s.output for s in self.steps if job is None or s.job == job)


def _shims(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "reconciler").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m reconciler "$@"\n')
    (path / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    # pip install of the action's checkout: checked, not done (the tree is on PYTHONPATH)
    # and the consumer's CSMS client at the pinned version: the test extra installed it
    (path / "pip").write_text(
        '#!/bin/sh\nfor a in "$@"; do case "$a" in *"[s3]")\n'
        '  d="${a%\\[s3\\]}"; [ -f "$d/pyproject.toml" ] && [ -f "$d/action.yml" ] && exit 0\n'
        '  echo "pip: $d is not the action checkout" >&2; exit 1;;\n'
        f'  huaweicloudsdkcsms==3.1.219) exec "{sys.executable}" -c '
        '"import huaweicloudsdkcsms";; esac; done\n'
        'echo "pip: only the action checkout with [s3] may be installed, got: $*" >&2; exit 1\n')
    for shim in path.iterdir():
        shim.chmod(0o755)
    return path


class Runner:
    """Runs one workflow for one event, job by job, step by step."""

    def __init__(self, *, repo: Repository, github: FakeGitHub, machine: Mapping[str, str],
                 workdir: Path) -> None:
        self.repo, self.github, self.machine, self.workdir = repo, github, machine, workdir
        self.artifacts: dict[tuple[int, str], Path] = {}
        self.shims = _shims(workdir / "shims")
        self.action = yaml.safe_load(ACTION.read_text())

    def run(self, workflow: str, *, event: str, sha: str, ref: str,
            payload: dict[str, Any], inputs: Mapping[str, str] | None = None) -> RunRecord:
        wf_path = self.repo.commits[sha] / ".github" / "workflows" / workflow
        wf = yaml.safe_load(wf_path.read_text())
        on = wf.get("on", wf.get(True))
        assert event in on, f"{workflow} does not run on {event}"
        run = RunRecord(id=len(self.github.runs) + 1000, workflow=wf["name"], event=event,
                        head_sha=payload.get("pull_request", {}).get("head", {}).get("sha", sha))
        payload = {**payload, "repository": {"full_name": REPO,
                                             "default_branch": self.repo.default_branch}}
        github = {"event_name": event, "event": payload, "ref": ref, "sha": sha,
                  "ref_name": ref.removeprefix("refs/heads/"), "repository": REPO,
                  "token": TOKEN, "workflow": wf["name"], "run_id": str(run.id),
                  "workflow_ref": f"{REPO}/.github/workflows/{workflow}@{ref}"}
        for job_name, job in wf["jobs"].items():
            run.jobs[job_name] = self._job(run, wf, job_name, job, github=github, sha=sha,
                                           inputs=dict(inputs or {}))
        self.github.runs.append({"id": run.id, "name": run.workflow, "event": event,
                                 "head_sha": run.head_sha, "conclusion": run.conclusion,
                                 "path": f".github/workflows/{workflow}",
                                 "pull_requests": _run_pull_requests(payload)})
        return run

    def _job(self, run: RunRecord, wf: dict[str, Any], name: str, job: dict[str, Any], *,
             github: dict[str, Any], sha: str, inputs: dict[str, str]) -> str:
        secrets = dict(self.repo.secrets)
        needs = job.get("needs") or []
        needs = [needs] if isinstance(needs, str) else list(needs)
        ctx: dict[str, Any] = {"github": github, "secrets": secrets, "vars": self.repo.variables,
                               "inputs": inputs, "env": {}, "steps": {},
                               "needs": {n: {"result": run.jobs.get(n, "skipped"),
                                             "outputs": run.outputs.get(n, {})}
                                         for n in needs}}
        # a job runs only when every job it needs succeeded (unless its if says always())
        if any(run.jobs.get(n) != "success" for n in needs) \
                and "always()" not in str(job.get("if", "")):
            return "skipped"
        if not condition(job.get("if"), ctx, failed=False):
            return "skipped"
        environment = job.get("environment")
        if environment is not None:
            # deployment branches: the default branch only
            if github["ref"] != f"refs/heads/{self.repo.default_branch}":
                run.steps.append(StepRecord(name, "environment", {}, 1,
                                            f"{environment}: not allowed on {github['ref']}\n"))
                return "failure"
            secrets.update(self.repo.environments.get(environment, {}))
        work = self.workdir / f"run-{run.id}-{name}"
        workspace, temp = work / "workspace", work / "temp"
        temp.mkdir(parents=True)
        files = {k: work / k for k in ("output", "env", "summary", "event.json")}
        files["event.json"].write_text(json.dumps(github["event"]))
        files["summary"].touch()
        env = {**self.machine,
               "PATH": f"{self.shims}:{os.environ['PATH']}", "HOME": str(work),
               "PYTHONPATH": str(ROOT), "GITHUB_ACTIONS": "true", "CI": "true",
               "GITHUB_API_URL": self.github.url, "GITHUB_SERVER_URL": "https://github.com",
               "GITHUB_REPOSITORY": REPO, "GITHUB_SHA": sha, "GITHUB_REF": github["ref"],
               "GITHUB_EVENT_NAME": github["event_name"], "GITHUB_WORKFLOW": run.workflow,
               "GITHUB_WORKFLOW_REF": github["workflow_ref"],
               "GITHUB_RUN_ID": str(run.id), "GITHUB_EVENT_PATH": str(files["event.json"]),
               "GITHUB_WORKSPACE": str(workspace), "RUNNER_TEMP": str(temp),
               "GITHUB_STEP_SUMMARY": str(files["summary"])}
        if job.get("permissions", {}).get("id-token") == "write":
            env["ACTIONS_ID_TOKEN_REQUEST_URL"] = f"{self.github.url}/oidc?api-version=2.0"
            env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = ID_TOKEN_REQUEST
        scope = {**(wf.get("env") or {}), **(job.get("env") or {})}
        env.update({k: interpolate(str(v), ctx) for k, v in scope.items()})
        state = _JobState(run=run, job=name, workspace=workspace, files=files, sha=sha)
        for step in job["steps"]:
            self._step(state, step, ctx=ctx, env=env)
        run.outputs[name] = {k: interpolate(str(v), ctx)
                             for k, v in (job.get("outputs") or {}).items()}
        run.summary += files["summary"].read_text()
        return "failure" if state.failed else "success"

    def _step(self, st: _JobState, step: dict[str, Any], *, ctx: dict[str, Any],
              env: dict[str, str]) -> None:
        if not condition(step.get("if"), ctx, failed=st.failed):
            return
        step_env = {**env, **st.exported,
                    **{k: interpolate(str(v), ctx) for k, v in (step.get("env") or {}).items()}}
        uses = step.get("uses")
        with_ = {k: interpolate(str(v), ctx) for k, v in (step.get("with") or {}).items()}
        name = step.get("name") or uses or step.get("run", "").split("\n")[0]
        if uses is not None and OWN_ACTION.match(uses):
            outputs = self._action(st, with_, ctx=ctx, env=step_env)
        elif uses is not None:
            outputs = {}
            self._builtin(st, uses.split("@")[0], with_, name)
        else:
            outputs = self._bash(st, name, step["run"], ctx=ctx, env=step_env)
        if "id" in step:
            ctx["steps"][step["id"]] = {"outputs": outputs}

    def _action(self, st: _JobState, with_: Mapping[str, str], *, ctx: dict[str, Any],
                env: dict[str, str]) -> dict[str, str]:
        inputs: dict[str, str] = {}
        for key, spec in self.action["inputs"].items():
            if key in with_:
                inputs[key] = with_[key]
            elif spec.get("required"):
                raise AssertionError(f"action input {key} is required")
            else:
                inputs[key] = interpolate(str(spec.get("default", "")), ctx)
        unknown = set(with_) - set(inputs)
        assert not unknown, f"the action has no inputs {sorted(unknown)}"
        inner = {**ctx, "inputs": inputs, "steps": {},
                 "github": {**ctx["github"], "action_path": str(ROOT)}}
        for step in self.action["runs"]["steps"]:
            self._step(st, step, ctx=inner, env=env)
        return {k: interpolate(str(v["value"]), inner)
                for k, v in self.action.get("outputs", {}).items()}

    def _builtin(self, st: _JobState, uses: str, with_: Mapping[str, str], name: str) -> None:
        if uses == "actions/checkout":
            shutil.copytree(self.repo.commits[st.sha], st.workspace)
        elif uses == "actions/setup-python":
            pass
        elif uses == "actions/upload-artifact":
            store = self.workdir / "artifacts" / f"{st.run.id}-{with_['name']}"
            store.mkdir(parents=True)
            paths = [p.strip() for p in with_["path"].splitlines() if p.strip()]
            for p in paths:
                found = [f for f in sorted(st.workspace.glob(p)) if f.is_file()]
                for f in found:
                    shutil.copy(f, store / f.name)
                if not found and with_.get("if-no-files-found") == "error":
                    st.fail(name, f"upload-artifact: no file {p}\n")
            self.artifacts[(st.run.id, with_["name"])] = store
        elif uses == "actions/download-artifact":
            if "run-id" in with_:  # another run's: with a token that may read it
                assert with_.get("github-token") == TOKEN, "download-artifact needs a token"
            source = self.artifacts.get((int(with_.get("run-id") or st.run.id), with_["name"]))
            if source is None:
                st.fail(name, f"download-artifact: no artifact {with_['name']}\n")
                return
            shutil.copytree(source, st.workspace / with_["path"], dirs_exist_ok=True)
        elif uses == "peter-evans/create-pull-request":
            self._pull_request(st, with_)
        else:
            raise AssertionError(f"the harness does not know the action {uses}")

    def _pull_request(self, st: _JobState, with_: Mapping[str, str]) -> None:
        """What create-pull-request does: the files of ``add-paths`` that differ from the
        commit, committed to ``branch`` and proposed (nothing when none differ)."""
        base = self.repo.commits[st.sha]
        changed: dict[str, bytes] = {}
        for pattern in (p.strip() for p in with_["add-paths"].replace(",", "\n").splitlines()):
            for f in sorted(st.workspace.glob(pattern)) if pattern else []:
                rel = f.relative_to(st.workspace)
                before = base / rel
                if f.is_file() and (not before.is_file() or before.read_bytes() != f.read_bytes()):
                    changed[str(rel)] = f.read_bytes()
        if changed:
            self.github.opened.append({"branch": with_["branch"], "title": with_["title"],
                                       "files": changed, "job": st.job})

    def _bash(self, st: _JobState, name: str, script: str, *, ctx: dict[str, Any],
              env: dict[str, str]) -> dict[str, str]:
        script = interpolate(script, ctx)
        st.files["output"].write_text("")
        env = {**env, "GITHUB_OUTPUT": str(st.files["output"]),
               "GITHUB_ENV": str(st.files["env"])}
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                              cwd=st.workspace, env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        st.run.steps.append(StepRecord(st.job, name, env, done.returncode,
                                       f"--- {st.job}: {name}\n{done.stdout}{done.stderr}"))
        if done.returncode != 0:
            st.failed = True
        if st.files["env"].exists():
            st.exported.update(_key_values(st.files["env"].read_text()))
        return _key_values(st.files["output"].read_text())


def _run_pull_requests(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A run's ``pull_requests`` as GitHub lists them: the pull request of the event, into
    the default branch unless it says otherwise; none for a fork's (GitHub lists none)."""
    pr = payload.get("pull_request")
    if not pr or (pr.get("head", {}).get("repo") or {}).get("full_name", REPO) != REPO:
        return []
    base = (pr.get("base") or {}).get("ref") or payload["repository"]["default_branch"]
    return [{"number": pr["number"], "head": {"sha": pr["head"]["sha"]},
             "base": {"ref": base}}]


def _key_values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@dataclass
class _JobState:
    run: RunRecord
    job: str
    workspace: Path
    files: dict[str, Path]
    sha: str
    failed: bool = False
    exported: dict[str, str] = field(default_factory=dict)

    def fail(self, name: str, message: str) -> None:
        self.failed = True
        self.run.steps.append(StepRecord(self.job, name, {}, 1, message))
