"""``reconciler apply``: plan and ask, or apply a saved plan without asking."""

from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.apply import ApplyResult, apply_plan, apply_refresh
from reconciler.commands.common import LineHooks, Session, api_settings, session
from reconciler.commands.plan import compute, refreshed_line, show
from reconciler.env import Env, ExitCode
from reconciler.errors import UsageError
from reconciler.model import Api, BackendConfig, Manifest, ProviderConfig
from reconciler.plan import Mode, Plan
from reconciler.urls import parse_endpoint

APPROVE = """Do you want to perform these actions?
  reconciler will perform the actions described above.
  Only 'yes' will be accepted to approve.
"""
APPROVE_DESTROY = """Do you really want to destroy all managed key pairs?
  reconciler will destroy all your managed key pairs, as shown above.
  There is no undo. Only 'yes' will be accepted to confirm.
"""


def approved(env: Env, *, destroy: bool) -> bool:
    if not env.stdin_is_tty():
        raise UsageError(
            "apply needs approval and there is no terminal to ask on: review the plan and run "
            "again with --auto-approve, or save it with `reconciler plan --out FILE` and run "
            "`reconciler apply FILE`"
        )
    env.out(APPROVE_DESTROY if destroy else APPROVE)
    env.stdout.write("  Enter a value: ")
    env.stdout.flush()
    answer = env.stdin.readline().strip()
    env.out()
    return answer == "yes"


def summary(result: ApplyResult, *, destroy: bool) -> str:
    c = result.counts()
    if destroy:
        return f"Destroy complete! Resources: {c['destroy']} destroyed."
    head = f"{c['import']} imported, " if c["import"] else ""
    return (f"Apply complete! Resources: {head}{c['add']} added, {c['change']} changed, "
            f"{c['destroy']} destroyed.")


def report(result: ApplyResult, env: Env, *, destroy: bool = False) -> int:
    env.out()
    if not result.failed:
        env.out(summary(result, destroy=destroy))
        return ExitCode.OK
    for outcome in result.failed:
        env.err(f"Error: keypair.{outcome.name}: {outcome.error}")
    c = result.counts()
    done = len(result.outcomes) - len(result.failed)
    env.err()
    env.err(f"Apply failed: {len(result.failed)} of {len(result.outcomes)} changes failed; "
            f"{done} succeeded ({c['import']} imported, {c['add']} added, {c['change']} changed, "
            f"{c['destroy']} destroyed) and are recorded in state. Fix the errors above and "
            "run apply again; it picks up where this one stopped.")
    return ExitCode.ERROR


def carry_out(plan: Plan, args: argparse.Namespace, env: Env, sess: Session, *,
              destroy: bool = False) -> int:
    result = apply_plan(plan, api=sess.api, store=sess.store,
                        hooks=LineHooks(env, colour=env.colour(args.no_color),
                                        live=env.stdout_is_tty(), total=len(plan.actionable)),
                        parallelism=args.parallelism, now=env.clock)
    return report(result, env, destroy=destroy)


def apply_fresh(args: argparse.Namespace, env: Env, *, mode: Mode, operation: str) -> int:
    destroy = mode is Mode.DESTROY
    with session(args, env, operation=operation) as sess:
        plan = compute(args, env, sess, mode)
        env.out(refreshed_line(sess, plan))
        env.out()
        show(plan, args, env, "text")
        if not plan.has_changes and not plan.state_only:
            return ExitCode.OK
        if plan.has_changes and not args.auto_approve:
            env.out()
            if not approved(env, destroy=destroy):
                env.err("Apply cancelled.")
                return ExitCode.ERROR
        return carry_out(plan, args, env, sess, destroy=destroy)


def _pinned_provider(args: argparse.Namespace, env: Env,
                     provider: dict[str, str | None]) -> ProviderConfig:
    """A saved plan applies where it was made: flags or environment may not point elsewhere."""
    endpoint = provider.get("endpoint")
    if endpoint:  # parsed even when a flag overrides it, so the comparison is of Endpoint.url
        endpoint = parse_endpoint(endpoint, what="the saved plan's provider endpoint").url
    planned = ProviderConfig(region=provider.get("region"), project_id=provider.get("project_id"),
                             api=Api(str(provider["api"])) if provider.get("api") else None,
                             endpoint=endpoint)
    now = api_settings(args, env, planned)
    differ = [f"{what} {mine!r} (the plan: {theirs!r})" for what, mine, theirs in (
        ("API", now.api.value, provider.get("api")),
        ("endpoint", now.endpoint, endpoint),
        ("project", now.project_id, provider.get("project_id"))) if theirs and mine != theirs]
    if differ:
        raise UsageError("this saved plan was made for another cloud than the one the flags or "
                         f"environment name: {'; '.join(differ)}. Apply it without them, or "
                         "make a new plan")
    return planned


def apply_saved(args: argparse.Namespace, env: Env, path: Path) -> int:
    from reconciler.planfile import load_plan, read_plan_document
    from reconciler.refresh import refresh

    doc = read_plan_document(path)
    rec = doc.get("reconciler")
    if not isinstance(rec, dict) or not isinstance(rec.get("provider"), dict):
        raise UsageError(f"{path}: the saved plan is damaged; make a new one")
    provider = _pinned_provider(args, env, rec["provider"])
    b = rec.get("backend")
    backend = BackendConfig(kind="s3", bucket=b["bucket"], key=b["key"],
                            endpoint=b.get("endpoint"), region=b.get("region")) if b else None
    manifest = Manifest(keypairs=(), backend=backend)
    with session(args, env, operation="apply", manifest=manifest, provider=provider) as sess:
        remote = refresh(sess.api)
        plan = load_plan(doc, state=sess.state, remote=remote)
        if plan.mode is Mode.REFRESH_ONLY:
            for note in apply_refresh(plan, store=sess.store, remote=remote):
                env.out(note)
            env.out()
            env.out("Apply complete! Resources: 0 added, 0 changed, 0 destroyed.")
            return ExitCode.OK
        return carry_out(plan, args, env, sess, destroy=plan.mode is Mode.DESTROY)


def run(args: argparse.Namespace, env: Env) -> int:
    from reconciler.planfile import is_plan_file

    if len(args.paths) == 1 and is_plan_file(env.resolve(args.paths[0])):
        if args.target or args.replace:
            raise UsageError("--target and --replace cannot change a saved plan; plan again")
        return apply_saved(args, env, env.resolve(args.paths[0]))
    return apply_fresh(args, env, mode=Mode.NORMAL, operation="apply")
