"""``reconciler plan``: refresh, diff, and show (or save) what apply would do."""

from __future__ import annotations

import argparse
import json
from typing import Any

from reconciler.address import DEFAULT_TARGET
from reconciler.api.endpoints import custody_endpoint
from reconciler.api.protocol import ApiSettings
from reconciler.commands.common import Session, api_name, session, write_private_file
from reconciler.env import Env, ExitCode
from reconciler.errors import ReconcilerError, TargetRefreshError, UsageError
from reconciler.fsutil import explain
from reconciler.kinds.binding import has_bindings, removes_keypairs
from reconciler.model import RemoteSnapshot
from reconciler.plan import Mode, Plan, PlanOptions, make_plan
from reconciler.planfile import SavedPlan
from reconciler.redact import scrub
from reconciler.refresh import describe_adoptions, listed, refresh_each, with_servers
from reconciler.sinkread import with_sinks
from reconciler.state.reserved import state_file_clash
from reconciler.targets import adoptable


def plan_options(args: argparse.Namespace, mode: Mode) -> PlanOptions:
    return PlanOptions(mode=mode, targets=tuple(getattr(args, "target", []) or ()),
                       replace=tuple(getattr(args, "replace", []) or ()),
                       allow_bound_delete=bool(getattr(args, "allow_bound_delete", False)))


def compute(args: argparse.Namespace, env: Env, sess: Session, mode: Mode) -> Plan:
    return compute_with_remote(args, env, sess, mode)[0]


def compute_with_remote(args: argparse.Namespace, env: Env, sess: Session,
                        mode: Mode) -> tuple[Plan, dict[str, RemoteSnapshot]]:
    """The plan, and the snapshot of each target it was made from (a refresh-only apply
    records them in state), with the key pairs it may adopt read in detail
    (``describe_adoptions``). With several targets, a target that cannot be read is left out
    of the plan and named in ``plan.unreachable``; with one, its error stops the run."""
    if not sess.several:
        target, api = next(iter(sess.apis.items()))
        remote = {target: listed(target, api, sess.early)}
        unreachable: dict[str, str] = {}
    else:
        remote, errors = refresh_each(sess.apis, early=sess.early)
        unreachable = {n: scrub(why) for n, why in
                       {**sess.reach.failed, **{n: str(e) for n, e in errors.items()}}.items()}
        if not remote and errors:
            first = next(iter(errors))
            raise TargetRefreshError(first, errors[first])
    if mode is Mode.NORMAL:
        remote = describe_adoptions(sess.apis, remote,
                                    adoptable(sess.manifest, sess.state, sess.reach.moves))

    remote = with_sinks(remote, manifest=sess.manifest, state=sess.state, apis=sess.apis,
                        moves=sess.reach.moves, store=sess.store)

    def planned(remote: dict[str, RemoteSnapshot]) -> Plan:
        return make_plan(sess.manifest, sess.state, remote, options=plan_options(args, mode),
                         now=env.clock(), moves=sess.reach.moves, unreachable=unreachable,
                         within=sess.reach.within, forget_targets=sess.reach.forget)

    # The servers are read only when the plan has bindings, or a key pair to delete or
    # replace whose dependents it names: an in-sync plan without bindings sends its lists only.
    bound = has_bindings(sess.manifest, sess.state)
    if bound:
        remote = read_servers(sess, remote)
    plan = planned(remote)
    if not bound and removes_keypairs(plan):
        remote = read_servers(sess, remote)
        plan = planned(remote)
    return plan, remote


def read_servers(sess: Session, remote: dict[str, RemoteSnapshot]) -> dict[str, RemoteSnapshot]:
    """Each snapshot with its target's ECS server list."""
    clients = sess.binding_clients()
    return with_servers(remote, {n: clients[n].list_servers for n in remote})


def refreshed_line(sess: Session, plan: Plan) -> str:
    if not sess.several:
        return (f"Refreshed {len(sess.state.keypairs)} managed key pairs through "
                f"{api_name(sess.settings.api)} at {sess.settings.endpoint}.")
    shown = "; ".join(
        f"{name} ({api_name(s.api)} at {s.endpoint})" for name, s in sess.reach.settings.items()
        if name in sess.apis and name not in dict(plan.unreachable))
    unread = {t for t, _ in plan.unreachable}
    read = [t for t in sess.apis if t not in unread]
    count = sum(1 for a in sess.state.keypairs
                if sess.reach.moves.get(a.target, a.target) in read)
    return (f"Refreshed {count} managed key pairs in {len(read)} "
            f"target{'s' if len(read) != 1 else ''}: {shown}.")


def unreachable_errors(plan: Plan, env: Env) -> None:
    """One error per target the plan could not read: its key pairs are not in the plan."""
    from reconciler.redact import scrub

    for target, why in plan.unreachable:
        env.err(scrub(f"Error: target {target} could not be read, so its key pairs are not "
                      f"in this plan: {why}"))


def named_custody(settings: ApiSettings) -> str | None:
    """Where this run sends custody calls (the private key itself, on import), when it named
    that and it is not where ``settings.endpoint`` alone would send them; None otherwise (so
    a plan of one target without ``endpoints.kms`` is saved byte for byte as before)."""
    where = custody_endpoint(settings.endpoint, settings.api, settings.custody_endpoint)
    return where if where != custody_endpoint(settings.endpoint, settings.api) else None


def saved_document(plan: Plan, sess: Session) -> dict[str, Any]:
    """The JSON plan plus where it applies (no credentials), for ``apply PLANFILE``: one
    provider block, or with several targets every target's connection."""
    from reconciler.commands.reach import connection_of, custody_elsewhere
    from reconciler.planformat import saved_plan_document, saved_targets_document

    if plan.several:
        return saved_targets_document(plan, backend=sess.manifest.backend, connections=[
            (name, "declared" if name in sess.reach.declared else "removed", connection_of(s),
             custody_elsewhere(s))
            for name, s in sess.reach.every.items()])
    s = sess.settings
    doc = saved_plan_document(plan, api=s.api, endpoint=s.endpoint, region=s.region,
                              project_id=s.project_id, backend=sess.manifest.backend,
                              custody=named_custody(s))
    target = next(iter(sess.reach.settings))
    if target != DEFAULT_TARGET:  # the name its key pairs are recorded under
        doc["reconciler"]["provider"]["target"] = target
    return doc


def show(plan: Plan, args: argparse.Namespace, env: Env, fmt: str) -> None:
    if fmt == "json":
        from reconciler.render.json import render_json

        env.stdout.write(render_json(plan))
    elif fmt == "markdown":
        from reconciler.render.markdown import render_markdown

        env.stdout.write(render_markdown(plan))
    else:
        from reconciler.render.text import render_text

        env.stdout.write(render_text(plan, colour=env.colour(args.no_color)))


def run(args: argparse.Namespace, env: Env) -> int:
    mode = Mode.DESTROY if args.destroy else Mode.REFRESH_ONLY if args.refresh_only else Mode.NORMAL
    with session(args, env, operation="plan") as sess:
        plan = compute(args, env, sess, mode)
        if args.format == "text":
            env.out(refreshed_line(sess, plan))
            env.out()
        show(plan, args, env, args.format)
        unreachable_errors(plan, env)
        if args.out and (has_bindings(sess.manifest, sess.state) or plan.warnings
                         or getattr(args, "allow_bound_delete", False)):
            raise UsageError("plan --out: a saved plan does not carry server bindings, a "
                             "rotation under way or --allow-bound-delete yet, so this plan was "
                             "not saved; run "
                             "`reconciler apply` (it shows the plan and asks) instead")
        if args.out:
            path = env.resolve(args.out)
            clash = state_file_clash(path, sess.store, environ=env.environ)
            if clash is not None:
                raise UsageError(f"plan --out: {args.out} is {clash}; the plan was not saved "
                                 "and nothing was changed. Save it under another name")
            try:
                write_private_file(path, json.dumps(saved_document(plan, sess), indent=2) + "\n")
            except OSError as exc:
                said = explain(exc, path, doing="write the plan to")
                raise UsageError(f"{said}. The plan was not saved; nothing else was "
                                 "changed.") from None
            if args.format == "text":
                env.out()
                env.out(f"Saved the plan to: {args.out}")
                env.out()
                env.out("To perform exactly these actions, run the following command to apply:")
                env.out(f"    reconciler apply {args.out}")
            if plan.unreachable:
                left = ", ".join(t for t, _ in plan.unreachable)
                env.err(f"Note: the saved plan leaves out target(s) {left}, which could not be "
                        "read: applying it changes nothing there and ends with an error saying "
                        "so. Plan again when they can be read, or with --in TARGET for the "
                        "others.")
    if plan.unreachable:
        return ExitCode.ERROR
    if args.detailed_exitcode and plan.has_changes:
        return ExitCode.CHANGES
    return ExitCode.OK


def saved_adoptions(saved: SavedPlan, sess: Session,
                    remote: dict[str, RemoteSnapshot]) -> dict[str, RemoteSnapshot]:
    """A saved plan's snapshots with what it may adopt read in detail, as ``plan`` read them
    (a file that cannot give its manifests is left to ``rederive`` to refuse)."""
    from reconciler.planfile import pinned_manifest

    if saved.options.mode is not Mode.NORMAL:
        return remote
    try:
        manifest = pinned_manifest(saved, sess.state)
    except (ReconcilerError, KeyError, IndexError, ValueError, TypeError, AttributeError):
        return remote
    return describe_adoptions(sess.apis, remote,
                              adoptable(manifest, sess.state, sess.reach.moves))
