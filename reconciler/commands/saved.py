"""``reconciler apply PLANFILE [PATH…]``: apply a saved plan exactly as it was shown, or nothing.

Before anything is sent (to the cloud or to a state backend), this prints two lines: whether
the configuration was verified against the manifests given (the first line says so when none
were), and the endpoint, project, region and API the plan targets. An endpoint, project, region
or API that this run's own flags, environment or manifests name differently is refused. What
is then carried out is the plan made again by ``reconciler.planfile.rederive``.

May import: everything but ``reconciler.cli``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from reconciler.commands.apply import carry_out, record_refresh
from reconciler.commands.common import api_settings, load, provider_flags, session
from reconciler.env import Env
from reconciler.errors import PlanFileError
from reconciler.model import Api, BackendConfig, Manifest, ProviderConfig
from reconciler.plan import Mode
from reconciler.planfile import SavedPlan, read_saved_plan, rederive
from reconciler.refresh import refresh
from reconciler.settings import own_target


def _verify_configuration(args: argparse.Namespace, env: Env, saved: SavedPlan,
                          paths: Sequence[str], shown: str) -> Manifest | None:
    """The manifests given, when their digest is the plan's; None (said on the first line)
    when none were given."""
    if not paths:
        env.out(f"Note: the configuration comes from the saved plan {shown}, unverified. To "
                "check it against the manifests it was made from, run "
                f"`reconciler apply {shown} PATH…`.")
        return None
    manifest = load(args, env, paths)
    digest = saved.digest_of(manifest)
    if digest != saved.manifest_digest:
        raise PlanFileError(
            f"the manifests given ({', '.join(manifest.files) or 'none'}; digest {digest}) are "
            f"not the configuration the saved plan {shown} was made from (digest "
            f"{saved.manifest_digest}). Nothing was changed; plan again from these manifests "
            "(`reconciler plan --out FILE PATH…`) and apply that plan")
    env.out(f"Configuration verified: the manifests match the saved plan (digest {digest}).")
    return manifest


def _pinned_provider(args: argparse.Namespace, env: Env, saved: SavedPlan,
                     manifest: Manifest | None) -> ProviderConfig:
    """A saved plan applies where it was made: this run may not name anywhere else."""
    planned = saved.provider
    if not planned.endpoint or not planned.project_id or planned.api is None:
        raise PlanFileError(f"{saved.path}: the saved plan does not say which endpoint, project "
                            "and API it was made for; it is damaged or was edited. Make a new "
                            "one with `reconciler plan --out FILE`")
    own = own_target(provider_flags(args), env.environ,
                     manifest.provider if manifest else None, default_api=planned.api)
    differ = [f"{what} {mine!r} (the plan: {theirs!r})" for what, mine, theirs in (
        ("API", own.api, planned.api), ("endpoint", own.endpoint, planned.endpoint.rstrip("/")),
        ("project", own.project_id, planned.project_id), ("region", own.region, planned.region),
    ) if mine is not None and theirs is not None and mine != theirs]
    if differ:
        raise PlanFileError("this saved plan was made for another cloud than the one this run's "
                            f"flags, environment or manifests name: {'; '.join(differ)}. Nothing "
                            "was sent. Apply it where it was made, or make a new plan")
    return planned


def _pinned_backend(saved: SavedPlan, manifest: Manifest | None) -> BackendConfig | None:
    if manifest is None:
        return saved.backend

    def where(b: BackendConfig | None) -> tuple[str, str, str | None] | None:
        return (b.bucket, b.key, b.endpoint) if b else None

    if where(manifest.backend) != where(saved.backend):
        raise PlanFileError("the manifests given keep state in another backend than the saved "
                            f"plan {saved.path} was made with ({where(manifest.backend)} against "
                            f"{where(saved.backend)}). Nothing was changed; plan again")
    return saved.backend


def apply_saved(args: argparse.Namespace, env: Env, path: Path, *,
                manifests: Sequence[str]) -> int:
    shown = args.paths[0] if args.paths else str(path)
    saved = read_saved_plan(path)
    manifest = _verify_configuration(args, env, saved, manifests, shown)
    provider = _pinned_provider(args, env, saved, manifest)
    settings = api_settings(args, env, provider)
    env.out(f"Saved plan targets {settings.endpoint} (project {settings.project_id}, region "
            f"{settings.region or 'not set'}, api {Api(settings.api).value}).")
    backend = _pinned_backend(saved, manifest)
    with session(args, env, operation="apply", manifest=Manifest(keypairs=(), backend=backend),
                 provider=provider) as sess:
        remote = refresh(sess.api)
        plan = rederive(saved, state=sess.state, remote=remote, now=env.clock())
        if plan.mode is Mode.REFRESH_ONLY:
            return record_refresh(plan, env, sess, remote)
        return carry_out(plan, args, env, sess, destroy=plan.mode is Mode.DESTROY)
