"""``reconciler plan``: refresh, diff, and show (or save) what apply would do."""

from __future__ import annotations

import argparse
import json
from typing import Any

from reconciler.commands.common import Session, api_name, session, write_private_file
from reconciler.env import Env, ExitCode
from reconciler.errors import UsageError
from reconciler.fsutil import explain
from reconciler.model import RemoteSnapshot
from reconciler.plan import Mode, Plan, PlanOptions, make_plan
from reconciler.refresh import refresh


def plan_options(args: argparse.Namespace, mode: Mode) -> PlanOptions:
    return PlanOptions(mode=mode, targets=tuple(getattr(args, "target", []) or ()),
                       replace=tuple(getattr(args, "replace", []) or ()))


def compute(args: argparse.Namespace, env: Env, sess: Session, mode: Mode) -> Plan:
    return compute_with_remote(args, env, sess, mode)[0]


def compute_with_remote(args: argparse.Namespace, env: Env, sess: Session,
                        mode: Mode) -> tuple[Plan, RemoteSnapshot]:
    """The plan, and the snapshot of the cloud it was made from (a refresh-only apply records
    that snapshot in state)."""
    remote = refresh(sess.api)
    return make_plan(sess.manifest, sess.state, remote, options=plan_options(args, mode),
                     now=env.clock()), remote


def refreshed_line(sess: Session, plan: Plan) -> str:
    return (f"Refreshed {len(sess.state.keypairs)} managed key pairs through "
            f"{api_name(sess.settings.api)} at {sess.settings.endpoint}.")


def saved_document(plan: Plan, sess: Session) -> dict[str, Any]:
    """The JSON plan plus where it applies (no credentials), for ``apply PLANFILE``."""
    from reconciler.planformat import saved_plan_document

    s = sess.settings
    return saved_plan_document(plan, api=s.api, endpoint=s.endpoint, region=s.region,
                               project_id=s.project_id, backend=sess.manifest.backend)


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
        if args.out:
            path = env.resolve(args.out)
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
    if args.detailed_exitcode and plan.has_changes:
        return ExitCode.CHANGES
    return ExitCode.OK
