"""``reconciler apply PLANFILE``, for a plan of several targets (saved-plan version 3).

The options and the configuration are checked first, as for one target
(``reconciler.commands.saved``). Then every target the plan pins is reached with the
connection the plan recorded for it (its API, endpoint, region and project, and where its
custody calls go when not there) and this run's
credentials for it (the manifests' ``credentials`` block when the manifests are given, else
the run's provider chain): a target whose connection this run names differently, field by
field and credential source included, is refused, naming the target and the field, before
anything is sent. One line per target says where it is, printed before anything is sent;
then where state is read and written.

Once state is loaded, the targets only state holds (removed from the manifests) must be
those the plan deleted from, at the connection it recorded. Every target is read again, all
before anything changes, and each must be as readable as when the plan was made: one the
plan read that cannot be read now, or one it could not read that can be now, refuses the
whole plan (its key pairs are not in it: plan again). A target that still cannot be read is
left out of the plan made again, as of the reviewed one; the others are applied, and the run
ends with an error naming it.

May import: everything but ``reconciler.cli``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping

from reconciler.address import DEFAULT_TARGET
from reconciler.api.protocol import ApiSettings
from reconciler.commands.apply import carry_out, record_refresh
from reconciler.commands.common import Session, provider_flags, run_settings, session
from reconciler.commands.plan import saved_adoptions
from reconciler.commands.reach import connection_of, custody_elsewhere
from reconciler.commands.saved import pinned_backend, state_line
from reconciler.env import Env
from reconciler.errors import PlanFileError
from reconciler.model import Api, Manifest, ProviderConfig, TargetConfig, TargetConnection
from reconciler.plan import Mode
from reconciler.planfile import PinnedTarget, SavedPlan, rederive
from reconciler.redact import scrub
from reconciler.refresh import refresh_each
from reconciler.settings import PROJECT_VARS, REGION_VARS, ProviderFlags, resolve_api_settings
from reconciler.sinkread import with_sinks
from reconciler.textsafe import printable
from reconciler.urls import parse_endpoint

_FIELDS = (("api", "API"), ("endpoint", "endpoint"), ("project_id", "project"),
           ("region", "region"), ("credentials", "credential source"))
_AGAIN = "Nothing was sent. Apply it where it was made, or make a new plan"


def differences(pinned: TargetConnection, run: TargetConnection) -> list[str]:
    """How this run's connection to a target differs from the plan's, field by field."""
    return [f"{label} {printable(str(getattr(run, name)))!r} (the plan: "
            f"{printable(str(getattr(pinned, name)))!r})"
            for name, label in _FIELDS if getattr(run, name) != getattr(pinned, name)]


def _pin_differences(pin: PinnedTarget, settings: ApiSettings) -> list[str]:
    """``differences``, and where the custody calls (the private key itself) would go."""
    differ = differences(pin.connection, connection_of(settings))
    custody = custody_elsewhere(settings)
    if custody != pin.custody_endpoint:
        planned = pin.custody_endpoint or pin.connection.endpoint
        differ.append(f"custody endpoint {printable(str(custody or settings.endpoint))!r} "
                      f"(the plan: {printable(str(planned))!r})")
    return differ


def _refuse(target: str, differ: list[str], hint: str = "") -> PlanFileError:
    return PlanFileError(f"target {target}: this saved plan was made for another connection "
                         f"than the one this run's flags, environment or manifests give: "
                         f"{'; '.join(differ)}. {_AGAIN}{hint}")


def _declared_settings(args: argparse.Namespace, env: Env, saved: SavedPlan,
                       manifest: Manifest | None) -> dict[str, ApiSettings]:
    """Each declared target's settings for this run: from the manifests when given (their
    credentials blocks included), else from the plan's connection with the run's provider
    chain; refused where they differ from the plan's connection."""
    declared = [t for t in saved.pinned if t.role == "declared"]
    names = [t.name for t in declared]
    if manifest is not None:
        given = [t.name for t in manifest.targets] or [DEFAULT_TARGET]
        if given != names:
            raise PlanFileError(
                f"the manifests given declare the targets {', '.join(given)}; the saved plan "
                f"{saved.path} was made for {', '.join(names)}. Nothing was sent; plan again "
                "from these manifests (`reconciler plan --out FILE PATH…`) and apply that plan")
        settings = run_settings(args, env, manifest)
    else:
        settings = {t.name: _from_plan(args, env, t, several=len(declared) > 1)
                    for t in declared}
    for pin in declared:
        differ = _pin_differences(pin, settings[pin.name])
        if differ:
            hint = ("; to reach it with the credentials block of its manifests, give them: "
                    f"`reconciler apply {saved.path} PATH…`" if manifest is None else "")
            raise _refuse(pin.name, differ, hint)
    return settings


def _from_plan(args: argparse.Namespace, env: Env, pin: PinnedTarget, *,
               several: bool) -> ApiSettings:
    """A declared target reached as the plan recorded it, with the run's provider chain
    (with several, the environment's region and project do not apply, as in a plan)."""
    flags = provider_flags(args)
    environ: Mapping[str, str] = env.environ
    if several:
        environ = {k: v for k, v in environ.items() if k not in (*PROJECT_VARS, *REGION_VARS)}
    c = pin.connection
    provider = ProviderConfig(region=c.region, project_id=c.project_id,
                              api=Api(c.api) if c.api else None, endpoint=c.endpoint)
    chosen = ProviderFlags(api=flags.api, endpoint=flags.endpoint, region=flags.region,
                           project_id=flags.project_id, insecure=flags.insecure)
    settings = resolve_api_settings(chosen, environ, provider)
    if settings.custody_endpoint is None and pin.custody_endpoint is not None:
        where = parse_endpoint(pin.custody_endpoint,
                               what=f"the saved plan's custody endpoint of target {pin.name}")
        settings = dataclasses.replace(settings, custody_endpoint=where.url)
    return settings


def _line(pin: PinnedTarget) -> str:
    c = pin.connection
    text = (f"  {pin.name}: {c.endpoint} (project {c.project_id}, region "
            f"{c.region or 'not set'}, api {c.api}; credentials {c.credentials or 'not recorded'}"
            + (f"; custody calls at {pin.custody_endpoint}" if pin.custody_endpoint else "")
            + ")")
    if pin.role == "removed":
        text += "; removed from the manifests, reached as state recorded it"
    if pin.unreachable is not None:
        text += "; NOT IN THE PLAN: it could not be read when planned, nothing is done there"
    return printable(scrub(text))


def _check_removed(saved: SavedPlan, sess: Session) -> None:
    """The targets only state holds are those the plan reached, where it reached them."""
    pinned = {t.name: t for t in saved.pinned if t.role == "removed"}
    now = set(sess.reach.removed)
    if set(pinned) != now:
        raise PlanFileError(
            f"the saved plan {saved.path} reaches the targets removed from the manifests "
            f"{', '.join(sorted(pinned)) or 'none'}; the state gives "
            f"{', '.join(sorted(now)) or 'none'}: the file was edited. Nothing was sent; make "
            "a new one with `reconciler plan --out FILE`")
    for name, pin in pinned.items():
        differ = _pin_differences(pin, sess.reach.settings[name])
        if differ:
            raise _refuse(name, differ)


def _check_reachability(saved: SavedPlan, left_out: set[str], failed: Mapping[str, str],
                        remote: Mapping[str, object]) -> None:
    """Each target as readable now as when the plan was made, or nothing is changed."""
    for name, why in failed.items():
        if name not in left_out:
            raise PlanFileError(scrub(
                f"target {name} could not be read now ({why}); the saved plan {saved.path} "
                "was made from what it held, so it cannot be checked. Nothing was changed; "
                "apply it again once the target can be read, or plan again"))
    for name in sorted(left_out & set(remote)):
        raise PlanFileError(
            f"target {name} could not be read when the saved plan {saved.path} was made, so "
            "its key pairs are not in the plan; it can be read now. Nothing was changed; plan "
            "again (`reconciler plan --out FILE PATH…`) to include it")


def apply_saved_targets(args: argparse.Namespace, env: Env, saved: SavedPlan,
                        manifest: Manifest | None) -> int:
    settings = _declared_settings(args, env, saved, manifest)
    env.out(f"Saved plan reaches {len(saved.pinned)} targets:")
    for pin in saved.pinned:
        env.out(_line(pin))
    backend = pinned_backend(saved, manifest)
    env.out(f"Saved plan state: {state_line(args, env, backend, saved)}.")
    left_out = {t.name for t in saved.pinned if t.unreachable is not None}
    targets = tuple(TargetConfig(name=t.name, region=t.connection.region or "",
                                 project_id=t.connection.project_id or "")
                    for t in saved.pinned if t.role == "declared" and t.name != DEFAULT_TARGET)
    run = Manifest(keypairs=(), backend=backend, targets=targets)
    with session(args, env, operation="apply", manifest=run, settings=settings) as sess:
        _check_removed(saved, sess)
        remote, errors = refresh_each(sess.apis)
        failed = {**sess.reach.failed, **{n: str(e) for n, e in errors.items()}}
        _check_reachability(saved, left_out, failed, remote)
        remote = saved_adoptions(saved, sess, remote)
        remote = with_sinks(remote, manifest=dataclasses.replace(
            run, keypairs=saved.configuration), state=sess.state, apis=sess.apis,
            moves=sess.reach.moves, store=sess.store)
        plan = rederive(saved, state=sess.state, remote=remote, now=env.clock(),
                        moves=sess.reach.moves)
        if plan.mode is Mode.REFRESH_ONLY:
            return record_refresh(plan, env, sess, remote)
        return carry_out(plan, args, env, sess, destroy=plan.mode is Mode.DESTROY)
