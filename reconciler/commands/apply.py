"""``reconciler apply``: plan and ask, or apply a saved plan without asking
(``reconciler.commands.saved``)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from reconciler.apply import ApplyResult, Outcome, apply_plan, apply_refresh
from reconciler.commands.common import LineHooks, Session, refuse_without_lock, session
from reconciler.commands.plan import (
    compute_with_remote,
    refreshed_line,
    show,
    unreachable_errors,
)
from reconciler.env import Env, ExitCode
from reconciler.errors import UsageError
from reconciler.model import RemoteSnapshot
from reconciler.plan import Mode, Plan, tally

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
    return summary_of(result.counts(), destroy=destroy)


def summary_of(c: Mapping[str, int], *, destroy: bool = False) -> str:
    """The one "Apply complete!" line, for normal, destroy and refresh-only applies alike."""
    if destroy:
        return f"Destroy complete! Resources: {c['destroy']} destroyed."
    head = f"{c['import']} imported, " if c["import"] else ""
    tail = f", {c['forget']} forgotten" if c["forget"] else ""
    return (f"Apply complete! Resources: {head}{c['add']} added, {c['change']} changed, "
            f"{c['destroy']} destroyed{tail}.")


def report(result: ApplyResult, env: Env, *, destroy: bool = False,
           plan: Plan | None = None) -> int:
    """The end of an apply: the summary line, or each failure and what was done, per target
    when the run had several (``plan.unreachable``: targets nothing was planned for)."""
    env.out()
    unreachable = plan.unreachable if plan is not None else ()
    if not result.failed and not unreachable:
        env.out(summary(result, destroy=destroy))
        return ExitCode.OK
    from reconciler.redact import scrub

    for outcome in result.failed:
        env.err(scrub(f"Error: {outcome.address}: {outcome.error}"))
    for target, why in unreachable:
        env.err(scrub(f"Error: target {target} could not be read, so nothing was planned or "
                      f"applied there: {why}"))
    c = result.counts()
    done = len(result.outcomes) - len(result.failed)
    env.err()
    if plan is not None and (unreachable or _targets_of(result) - {None}):
        for line in _per_target(result, plan):
            env.err(line)
    if not result.failed:
        env.err(f"Apply incomplete: {len(unreachable)} target(s) could not be read, so nothing "
                f"was planned or applied there; the {len(result.outcomes)} changes in the "
                "others succeeded and are recorded in state. Fix the errors above and run "
                "apply again.")
        return ExitCode.ERROR
    env.err(f"Apply failed: {len(result.failed)} of {len(result.outcomes)} changes failed; "
            f"{done} succeeded ({c['import']} imported, {c['add']} added, {c['change']} changed, "
            f"{c['destroy']} destroyed) and are recorded in state"
            + (f"; {len(unreachable)} target(s) could not be read" if unreachable else "")
            + ". Fix the errors above and run apply again; it picks up where this one stopped.")
    return ExitCode.ERROR


def _targets_of(result: ApplyResult) -> set[str | None]:
    return {o.at.target if o.at is not None and o.at.qualified else None
            for o in result.outcomes}


def _per_target(result: ApplyResult, plan: Plan) -> list[str]:
    """What each target of a run of several saw: done, failed, or not reached."""
    by_target: dict[str, list[Outcome]] = {}
    for outcome in result.outcomes:
        by_target.setdefault(outcome.address.target, []).append(outcome)
    lines = []
    for target in sorted(by_target):
        outcomes = by_target[target]
        failed = [o for o in outcomes if not o.ok]
        c = tally((o.action for o in outcomes if o.ok),
                  imported=sum(1 for o in outcomes if o.ok and o.importing),
                  rotated=sum(1 for o in outcomes if o.ok and o.rotated))
        done = (f"{c['import']} imported, " if c["import"] else "") + (
            f"{c['add']} added, {c['change']} changed, {c['destroy']} destroyed")
        state = f"{len(failed)} of {len(outcomes)} changes failed; " if failed else "complete: "
        lines.append(f"  target {target}: {state}{done}")
    for target, _ in plan.unreachable:
        lines.append(f"  target {target}: not reached; nothing was done there")
    return lines


def carry_out(plan: Plan, args: argparse.Namespace, env: Env, sess: Session, *,
              destroy: bool = False) -> int:
    hooks = LineHooks(env, colour=env.colour(args.no_color), live=env.stdout_is_tty(),
                      total=len(plan.actionable))
    try:
        # servers are read again before an old generation is deleted: clients for that too
        bound = any(c.address.kind in ("binding", "deposed") for c in plan.actionable)
        result = apply_plan(plan, api=sess.apis, store=sess.store, state=sess.state,
                            hooks=hooks, parallelism=args.parallelism, now=env.clock,
                            bindings=sess.binding_clients() if bound else None)
    finally:
        hooks.close()
    return report(result, env, destroy=destroy, plan=plan)


def apply_fresh(args: argparse.Namespace, env: Env, *, mode: Mode, operation: str) -> int:
    destroy = mode is Mode.DESTROY
    with session(args, env, operation=operation) as sess:
        plan, remote = compute_with_remote(args, env, sess, mode)
        env.out(refreshed_line(sess, plan))
        env.out()
        show(plan, args, env, "text")
        if not plan.has_changes and not plan.state_only:
            if plan.unreachable:
                unreachable_errors(plan, env)
                return ExitCode.ERROR
            return ExitCode.OK
        if plan.has_changes and not args.auto_approve:
            env.out()
            if not approved(env, destroy=destroy):
                env.err("Apply cancelled.")
                return ExitCode.ERROR
        if mode is Mode.REFRESH_ONLY:
            return record_refresh(plan, env, sess, remote)
        return carry_out(plan, args, env, sess, destroy=destroy)


def record_refresh(plan: Plan, env: Env, sess: Session,
                   remote: RemoteSnapshot | Mapping[str, RemoteSnapshot]) -> int:
    """A refresh-only apply: state takes on what the cloud holds; the cloud is not touched."""
    for note in apply_refresh(plan, store=sess.store, remote=remote):
        env.out(note)
    env.out()
    # apply_refresh carries out every change of a refresh-only plan (each a FORGET) or raises
    env.out(summary_of(plan.counts()))
    if plan.unreachable:
        unreachable_errors(plan, env)
        return ExitCode.ERROR
    return ExitCode.OK


def run(args: argparse.Namespace, env: Env) -> int:
    from reconciler.planfile import is_plan_file

    refuse_without_lock(args, operation="apply")
    if args.paths and is_plan_file(env.resolve(args.paths[0])):
        from reconciler.commands.saved import apply_saved

        return apply_saved(args, env, env.resolve(args.paths[0]), manifests=args.paths[1:])
    if args.destroy and args.refresh_only:
        raise UsageError("--destroy and --refresh-only cannot be combined; choose one")
    if args.destroy:
        return apply_fresh(args, env, mode=Mode.DESTROY, operation="destroy")
    mode = Mode.REFRESH_ONLY if args.refresh_only else Mode.NORMAL
    return apply_fresh(args, env, mode=mode, operation="apply")
