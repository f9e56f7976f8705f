"""The GitOps example, the action and the GitLab component: CI files are valid YAML, every
`reconciler` command line in them parses with the real CLI parser, the jobs hold only the
secrets they need, the pre-commit hook works, and the example manifests validate."""

from __future__ import annotations

import io
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.cli import main
from reconciler.env import Env
from reconciler.gitops.github import PLAN_MARKER as github_marker
from reconciler.gitops.gitlab import MARKER as gitlab_marker
from reconciler.parser import build_parser
from reconciler.render.markdown import MARKER

ROOT = Path(__file__).parent.parent
GITOPS = ROOT / "examples" / "gitops"
GITHUB = GITOPS / ".github" / "workflows" / "reconciler.yml"
DRIFT = GITOPS / ".github" / "workflows" / "drift.yml"
DEPLOY = GITOPS / ".github" / "workflows" / "deploy.yml"
ACTION = ROOT / "action.yml"
GITLAB = GITOPS / ".gitlab-ci.yml"
COMPONENT = ROOT / "templates" / "reconciler.yml"
HOOKS = ROOT / ".pre-commit-hooks.yaml"

SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", "{", "}", "!"}
KEYWORDS = {"if", "then", "else", "elif", "do", "while", "until", "time", "exec"}
REDIRECT = re.compile(r"^[<>&]+$")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def github_scripts() -> list[str]:
    steps = [s for wf in (GITHUB, DRIFT) for job in load(wf)["jobs"].values()
             for s in job["steps"]]
    return [s["run"] for s in [*steps, *load(ACTION)["runs"]["steps"]] if "run" in s]


def component() -> tuple[dict[str, Any], dict[str, Any]]:
    spec, jobs = yaml.safe_load_all(COMPONENT.read_text(encoding="utf-8"))
    return spec, jobs


def gitlab_scripts() -> list[str]:
    out: list[str] = []
    for job in component()[1].values():
        for key in ("before_script", "script", "after_script"):
            out.extend(job.get(key, []))
    return out


def _command_tokens(line: str) -> list[list[str]]:
    """Every simple command of one shell line whose program is `reconciler`, as argv."""
    line = re.sub(r"(?<=\s)\d+(?=[<>])", " ", line)  # `2> file`: the fd is not an argument
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    found: list[list[str]] = []
    i, at_start = 0, True
    while i < len(tokens):
        tok = tokens[i]
        if tok in SEPARATORS or (at_start and (tok in KEYWORDS or re.match(r"^\w+=", tok))):
            at_start = True
            i += 1
            continue
        if at_start and tok == "reconciler":
            argv: list[str] = []
            i += 1
            while i < len(tokens) and tokens[i] not in SEPARATORS:
                if REDIRECT.match(tokens[i]):
                    i += 2  # the redirection and its target
                    continue
                argv.append("VALUE" if "$" in tokens[i] else tokens[i])
                i += 1
            found.append(argv)
            continue
        at_start = False
        i += 1
    return found


def reconciler_commands(scripts: list[str]) -> list[list[str]]:
    commands: list[list[str]] = []
    for script in scripts:
        for line in script.replace("\\\n", " ").splitlines():
            commands.extend(_command_tokens(line))
    return commands


def test_extractor_handles_continuations_redirections_and_pipes() -> None:
    script = ("code=0\nreconciler plan a/ --format markdown \\\n  --out p.json > p.md 2> e "
              "|| code=$?\nif [ -f x ]; then reconciler apply p.json; fi\n"
              "echo 'reconciler is not run here' | tee reconciler\n"
              "pip install 'keypair-reconciler[s3]' && FOO=1 reconciler validate k/ | cat\n")
    assert reconciler_commands([script]) == [
        ["plan", "a/", "--format", "markdown", "--out", "p.json"],
        ["apply", "p.json"],
        ["validate", "k/"],
    ]


@pytest.mark.parametrize("path", [GITHUB, DRIFT, ACTION, GITLAB, HOOKS,
                                  GITOPS / ".pre-commit-config.yaml"], ids=lambda p: p.name)
def test_ci_files_are_valid_yaml(path: Path) -> None:
    assert isinstance(load(path), dict | list)


@pytest.mark.parametrize(("scripts", "expected"), [
    # apply: the reviewed change set, and work on state alone (a plan that exits 0)
    (github_scripts, {"validate": 1, "plan": 4, "apply": 2}),
    (gitlab_scripts, {"validate": 1, "plan": 4, "apply": 2}),
], ids=["github", "gitlab"])
def test_every_reconciler_command_parses(scripts: Any, expected: dict[str, int]) -> None:
    commands = reconciler_commands(scripts())
    counts = {name: sum(1 for c in commands if c[0] == name) for name in expected}
    assert counts == expected, commands
    parser = build_parser()
    for argv in commands:
        if argv == ["--version"]:  # the install step's check: argparse exits 0 on it
            continue
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # pragma: no cover - the assertion message is the point
            raise AssertionError(f"reconciler {' '.join(argv)} does not parse") from exc
        if args.command == "plan":  # the manifests are the action's `path` input
            assert args.detailed_exitcode and args.out and args.paths == ["VALUE"], argv
            assert args.lock_timeout != "0s", argv
        if args.command == "apply":  # a saved plan with its manifests, never unreviewed
            assert len(args.paths) == 2 and args.paths[1] == "VALUE", argv
            assert args.paths[0] in ("VALUE", "plan.json") and not args.auto_approve, argv


def test_plan_exit_code_two_is_success_and_one_is_failure() -> None:
    for script in github_scripts() + gitlab_scripts():
        if any(c[0] == "plan" for c in reconciler_commands([script])):
            assert re.search(r"\|\| (code|drift|pending)=\$\?", script), script
    joined = "\n".join(gitlab_scripts())
    assert 'test "$code" -ne 1' in joined
    assert any('test "$code" -ne 1' in s or '"$code" -eq 1' in s for s in github_scripts())


def _on(wf: dict[str, Any]) -> Any:
    return wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as true


def test_github_workflow_shape() -> None:
    wf = load(GITHUB)
    assert {"pull_request", "push", "workflow_dispatch"} <= set(_on(wf))
    assert wf["permissions"] == {}
    plan, apply = wf["jobs"]["plan"], wf["jobs"]["apply"]
    assert plan["permissions"] == {"contents": "read", "pull-requests": "write",
                                   "id-token": "write"}
    assert apply["environment"] == "production" and "environment" not in plan
    assert all(v == "read" for k, v in apply["permissions"].items() if k != "id-token")
    assert apply["concurrency"]["cancel-in-progress"] is False
    assert plan["concurrency"]["cancel-in-progress"] is False
    for job, command in ((plan, "plan"), (apply, "apply")):
        action = next(s for s in job["steps"] if s.get("uses", "").startswith("OWNER/REPO@"))
        assert action["with"]["command"] == command
    drift = load(DRIFT)
    assert "schedule" in _on(drift)
    assert drift["jobs"]["drift"]["permissions"]["issues"] == "write"


def test_the_deploy_job_reads_one_secret_with_its_own_credentials() -> None:
    """The consumer: its own environment and credentials (never reconciler's, never the
    passphrase), read-only, and the one secret its IAM policy names is the one delivered."""
    wf = load(DEPLOY)
    assert wf["permissions"] == {}
    job = wf["jobs"]["deploy"]
    assert job["permissions"] == {"contents": "read"} and job["environment"] == "deploy"
    text = yaml.safe_dump(job)
    assert "secrets.DEPLOY_KEY_READER_AK" in text and "secrets.DEPLOY_KEY_READER_SK" in text
    for theirs in ("secrets.HUAWEICLOUD_SDK", "PASSPHRASE", "AWS_", "id-token"):
        assert theirs not in text, theirs
    policy = json.loads((GITOPS / "iam" / "deploy-key-reader.json").read_text())
    (csms_statement,) = [s for s in policy["Statement"]
                         if any(a.startswith("csms:") for a in s["Action"])]
    assert all(a.startswith("csms:secret:get") for a in csms_statement["Action"])
    (resource,) = csms_statement["Resource"]
    secret = resource.rsplit(":", 1)[1]
    team = load(GITOPS / "keypairs" / "team.yaml")
    delivered = [sink["csms"]["secret"] for kp in team["keypairs"]
                 for sink in kp.get("deliver", []) if "csms" in sink]
    assert delivered == [secret] and f"read-key.py {secret} " in text


def test_only_the_keys_pr_job_may_write_and_it_holds_no_secret() -> None:
    """The job that proposes the age files apply wrote is the only one with contents: write;
    it names no secret (no cloud credential, no passphrase) and runs after apply."""
    for path in (GITHUB, DRIFT, DEPLOY):
        for name, job in load(path)["jobs"].items():
            writes = job.get("permissions", {}).get("contents") == "write"
            assert writes == (path == GITHUB and name == "keys-pr"), (path.name, name)
    job = load(GITHUB)["jobs"]["keys-pr"]
    assert job["needs"] == "apply" and "environment" not in job
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert "secrets." not in yaml.safe_dump(job)
    uses = [s["uses"].split("@")[0] for s in job["steps"]]
    assert uses == ["actions/checkout", "actions/download-artifact",
                    "peter-evans/create-pull-request"]


def test_action_shape() -> None:
    action = load(ACTION)
    assert action["runs"]["using"] == "composite"
    assert {"command", "path", "version", "backend", "github-token"} <= set(action["inputs"])
    steps = action["runs"]["steps"]
    install = next(s for s in steps if "pip install" in s.get("run", ""))
    assert install["env"]["ACTION_PATH"] == "${{ github.action_path }}"
    assert '"${ACTION_PATH}[s3]"' in install["run"]
    uses = [s["uses"].split("@")[0] for s in steps if "uses" in s]
    assert uses == ["actions/setup-python", "actions/upload-artifact",
                    "actions/download-artifact"]
    runs = "\n".join(s.get("run", "") for s in steps)
    for call in ("github comment", "github drift-issue", "github reviewed-run",
                 "changeset compare", "GITHUB_STEP_SUMMARY"):
        assert call in runs, call
    # the comment is found by the marker the Markdown plan starts with
    assert MARKER in runs and github_marker == gitlab_marker == MARKER


def test_gitlab_component_shape() -> None:
    spec, jobs = component()
    assert set(spec["spec"]["inputs"]["command"]["options"]) == {"validate", "plan", "apply",
                                                                  "drift"}
    assert {"command", "path", "version", "backend"} <= set(spec["spec"]["inputs"])
    assert jobs[".reconciler-apply"]["resource_group"]
    assert "environment" in jobs[".reconciler-apply"]
    assert all("environment" not in jobs[f".reconciler-{c}"] for c in ("plan", "drift",
                                                                       "validate"))
    assert jobs[".reconciler-plan"]["artifacts"]["reports"]["terraform"] == "plan-summary.json"
    assert jobs[".reconciler-drift"]["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "schedule"'}]
    script = "\n".join(gitlab_scripts())
    assert "reconciler.gitops.gitlab note plan.md" in script
    assert "RECONCILER_PASSPHRASE reached the" in script
    ci = load(GITLAB)
    included = [i["inputs"]["command"] for i in ci["include"]]
    assert sorted(included) == ["apply", "drift", "plan", "validate"]
    assert all(i["component"].endswith("/reconciler") or "/reconciler@" in i["component"]
               for i in ci["include"])


@pytest.mark.parametrize("path", [GITHUB, DRIFT, DEPLOY, GITLAB], ids=lambda p: p.name)
def test_credentials_only_from_secrets(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for name in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "RECONCILER_PASSPHRASE"):
        for m in re.finditer(rf"^\s*{name}:\s*(.+)$", text, re.M):
            assert m.group(1).startswith(("${{ secrets.", "$")), m.group(0)
    assert "state.json" not in text or "never" in text  # state lives in the s3 backend


def test_only_the_apply_job_is_given_the_passphrase() -> None:
    for path in (GITHUB, DRIFT, DEPLOY):
        for name, job in load(path)["jobs"].items():
            text = yaml.safe_dump(job)
            if name == "apply":
                assert "secrets.RECONCILER_PASSPHRASE" in text and job["environment"]
            else:
                assert "PASSPHRASE" not in text, (path.name, name)


def run_cli(argv: list[str], cwd: Path = ROOT) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Env(stdin=io.StringIO(), stdout=out, stderr=err, environ={}, cwd=cwd)
    return main(argv, env), out.getvalue(), err.getvalue()


def hook() -> dict[str, Any]:
    hooks = load(HOOKS)
    assert isinstance(hooks, list)
    return next(h for h in hooks if h["id"] == "reconciler-validate")


def hook_argv(*files: Path) -> list[str]:
    h = hook()
    entry = shlex.split(h["entry"])
    assert entry[0] == "reconciler"
    return [*entry[1:], *h.get("args", []), *(str(f) for f in files)]


def test_hook_definition() -> None:
    h = hook()
    assert (h["language"], h["pass_filenames"]) == ("python", True)
    files = re.compile(h["files"])
    assert files.search("keypairs/a.yaml") and files.search("b.yml")
    assert not files.search("plan.json") and not files.search("a.yaml.bak")


BAD = """apiVersion: reconciler/v1
kind: KeyPairs
keypairs:
  - name: fine
  - name: "bad name!"
    colour: blue
"""


def test_hook_fails_on_a_bad_manifest_with_its_location(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    good = GITOPS / "keypairs" / "team.yaml"
    code, out, err = run_cli(hook_argv(good, bad))
    assert code == 1 and out == ""
    assert f"{bad}:5:11: error: keypairs[1].name" in err
    assert f"{bad}:6:5: error: keypairs[1].colour: unknown key" in err


def test_hook_passes_on_several_good_manifests() -> None:
    files = sorted((GITOPS / "keypairs").glob("*.yaml"))
    assert len(files) >= 2
    code, out, err = run_cli(hook_argv(*files))
    assert (code, err) == (0, "")
    assert out == f"Success! 4 key pairs in {len(files)} files are valid.\n"


def test_consumer_precommit_config_validates_the_directory() -> None:
    cfg = load(GITOPS / ".pre-commit-config.yaml")
    h = cfg["repos"][0]["hooks"][0]
    assert h["id"] == "reconciler-validate" and h["pass_filenames"] is False
    assert re.search(h["files"], "keypairs/team.yaml")
    assert not re.search(h["files"], ".github/workflows/reconciler.yml")
    code, _, err = run_cli([*hook_argv(), *h["args"]], cwd=GITOPS)
    assert (code, err) == (0, "")


def test_gitops_manifests_validate_offline() -> None:
    code, out, err = run_cli(["validate", "examples/gitops/keypairs/"])
    assert (code, err) == (0, "")
    assert out.startswith("Success! ")


def test_gitops_manifests_carry_the_schema_id_and_an_s3_backend() -> None:
    schema = json.loads((ROOT / "schemas" / "manifest.schema.json").read_text())
    backends = 0
    for path in sorted((GITOPS / "keypairs").glob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first == f"# yaml-language-server: $schema={schema['$id']}", path
        doc = load(path)
        if "backend" in doc:
            backends += 1
            s3 = doc["backend"]["s3"]
            assert s3["bucket"] and s3["key"] and s3["endpoint"].startswith("https://obs.")
    assert backends == 1


def test_gitignore_keeps_state_plans_and_keys_out() -> None:
    lines = (GITOPS / ".gitignore").read_text().splitlines()
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert all("#" not in p for p in patterns)  # gitignore has no trailing comments
    for needed in ("*.state.json*", "*.key", "plan.json", "tfplan", ".reconciler/"):
        assert needed in patterns
