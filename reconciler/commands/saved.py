"""``reconciler apply PLANFILE [PATH…]``: apply a saved plan exactly as it was shown, or nothing.

First the options of this command (``--destroy``, ``--refresh-only``, ``--target``,
``--replace``) must be exactly those the plan was made with: another genuine plan swapped in
for the reviewed one cannot widen what runs. Before anything is sent (to the cloud or to a
state backend), this prints three lines: whether the configuration was verified against the
manifests given (the first line says so when none were, and gives the plan's mode and
options), the endpoint, project, region and API the plan targets, and where its state is read and
written. An endpoint, project, region
or API that this run's own flags, environment or manifests name differently is refused, and so
is a place for its custody calls (the private key itself, on import) other than the plan's
(``custody_endpoint``, recorded when the plan's run named one, e.g. a target's
``endpoints.kms``; else derived from the endpoint). What
is then carried out is the plan made again by ``reconciler.planfile.rederive``. A plan of
several targets (version 3) must also be applied with the ``--in`` and ``--forget-target`` it
was made with, and is carried out by ``reconciler.commands.saved_targets`` once its options
and configuration are checked here.

May import: everything but ``reconciler.cli``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from reconciler.address import DEFAULT_TARGET
from reconciler.api.endpoints import custody_endpoint
from reconciler.commands.apply import carry_out, record_refresh
from reconciler.commands.common import Session, api_settings, load, provider_flags, session
from reconciler.commands.plan import saved_adoptions
from reconciler.env import Env
from reconciler.errors import PlanFileError, UsageError
from reconciler.model import Api, Manifest, ProviderConfig, S3Location
from reconciler.plan import Mode, PlanOptions
from reconciler.planfile import SavedPlan, read_saved_plan, rederive, saved_target
from reconciler.refresh import refresh
from reconciler.settings import own_custody_endpoint, own_target, target_block
from reconciler.sinkread import with_sinks
from reconciler.textsafe import printable
from reconciler.urls import parse_endpoint


def _option_words(saved: SavedPlan) -> list[str]:
    """The plan's options as the command-line flags that give them."""
    options = saved.options
    words = [f"--{options.mode.value}"] if options.mode is not Mode.NORMAL else []
    words += [f"--in {name}" for name in sorted(saved.within)]
    words += [f"--forget-target {name}" for name in sorted(saved.forget_targets)]
    words += [f"--target {name}" for name in sorted(set(options.targets))]
    words += [f"--replace {name}" for name in sorted(set(options.replace))]
    return words


def _options_line(saved: SavedPlan) -> str:
    """The plan's mode and options, for the first line: "mode destroy, targets keep"."""
    options = saved.options
    text = f"mode {options.mode.value}"
    if saved.within:
        text += f", in {', '.join(sorted(saved.within))}"
    if saved.forget_targets:
        text += f", forget-target {', '.join(sorted(saved.forget_targets))}"
    if options.targets:
        text += f", targets {', '.join(sorted(set(options.targets)))}"
    if options.replace:
        text += f", replace {', '.join(sorted(set(options.replace)))}"
    return text


def _verify_options(args: argparse.Namespace, saved: SavedPlan, shown: str,
                    manifests: Sequence[str]) -> None:
    """The apply command must repeat the options the plan was made with, exactly.

    The artifact is replaceable by another genuine plan of the same configuration and state
    (a ``--destroy`` one, say); the apply command line is not: it is part of what was
    reviewed. Checked before anything is read or sent."""
    planned = saved.options
    mode = (Mode.DESTROY if args.destroy else Mode.REFRESH_ONLY if args.refresh_only
            else Mode.NORMAL)
    if args.destroy and args.refresh_only:
        raise UsageError("--destroy and --refresh-only cannot be combined; give the options "
                         f"the saved plan {shown} was made with")
    given = PlanOptions(mode=mode, targets=tuple(args.target or ()),
                        replace=tuple(args.replace or ()))
    differ = []
    if given.mode is not planned.mode:
        differ.append(f"mode: the plan is {planned.mode.value}, this command asks for "
                      f"{given.mode.value}")
    pairs = [("--target", given.targets, planned.targets),
             ("--replace", given.replace, planned.replace)]
    if saved.several:  # a plan of one target never recorded them
        pairs[:0] = [("--in", tuple(args.within or ()), saved.within),
                     ("--forget-target", tuple(args.forget_target or ()), saved.forget_targets)]
    for flag, mine, theirs in pairs:
        if set(mine) != set(theirs):
            differ.append(f"{flag}: the plan has {', '.join(sorted(set(theirs))) or 'none'}, "
                          f"this command gives {', '.join(sorted(set(mine))) or 'none'}")
    if not differ:
        return
    wanted = " ".join(["reconciler apply", *_option_words(saved), shown, *manifests])
    if not manifests:
        wanted += " PATH…"
    raise PlanFileError(
        f"the saved plan {shown} was made with other options than this apply command gives "
        f"({'; '.join(differ)}). Nothing was sent. A saved plan made with --destroy, "
        "--refresh-only, --target, --replace, --in or --forget-target is applied only by a "
        "command that repeats them, so that the command reviewed with it decides what may "
        "run. If this plan is "
        f"the one that was reviewed, run `{wanted}`; otherwise plan again "
        "(`reconciler plan --out FILE PATH…`)")


def verify_configuration(args: argparse.Namespace, env: Env, saved: SavedPlan,
                          paths: Sequence[str], shown: str) -> Manifest | None:
    """The manifests given, when their digest is the plan's; None (said on the first line)
    when none were given."""
    options = _options_line(saved)
    if not paths:
        env.out(f"Note: the configuration comes from the saved plan {shown}, unverified. "
                f"The plan: {options}. To check it against the manifests it was made from, run "
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
    env.out(f"Configuration verified: the manifests match the saved plan (digest {digest}); "
            f"{options}.")
    return manifest


def _pinned_provider(args: argparse.Namespace, env: Env, saved: SavedPlan,
                     manifest: Manifest | None) -> ProviderConfig:
    """A saved plan applies where it was made: this run may not name anywhere else."""
    planned = saved.provider
    if not planned.endpoint or not planned.project_id or planned.api is None:
        raise PlanFileError(f"{saved.path}: the saved plan does not say which endpoint, project "
                            "and API it was made for; it is damaged or was edited. Make a new "
                            "one with `reconciler plan --out FILE`")
    api = planned.api
    # parsed like every URL, so what is compared (and shown) is what would be connected to
    planned = dataclasses.replace(planned, endpoint=parse_endpoint(
        planned.endpoint, what="the saved plan's provider endpoint").url)
    named = manifest.provider if manifest else None
    if manifest is not None and named is None and len(manifest.targets) == 1:
        # a targets block of one: its region, project, api and endpoints.ecs are compared too
        named = target_block(manifest.targets[0], provider_flags(args), env.environ)
    own = own_target(provider_flags(args), env.environ, named, default_api=api)
    differ = [f"{what} {mine!r} (the plan: {theirs!r})" for what, mine, theirs in (
        ("API", own.api, planned.api), ("endpoint", own.endpoint, planned.endpoint),
        ("project", own.project_id, planned.project_id), ("region", own.region, planned.region),
    ) if mine is not None and theirs is not None and mine != theirs]
    if differ:
        raise PlanFileError("this saved plan was made for another cloud than the one this run's "
                            f"flags, environment or manifests name: {'; '.join(differ)}. Nothing "
                            "was sent. Apply it where it was made, or make a new plan")
    return planned


def _pinned_custody(args: argparse.Namespace, env: Env, saved: SavedPlan,
                    manifest: Manifest | None, *, api: Api, endpoint: str) -> str | None:
    """Where the plan's custody calls (the private key itself, on import) go, when it
    recorded a place (``custody_endpoint``); refused, nothing sent, when this run's flags,
    environment or manifests would send them elsewhere (the digest does not cover
    endpoints: a target's ``endpoints.kms`` edited after the review)."""
    recorded = saved.custody_endpoint
    url = (parse_endpoint(recorded, what="the saved plan's provider custody_endpoint").url
           if recorded else None)
    flags = provider_flags(args)
    if manifest is None and not flags.endpoint and not env.environ.get("RECONCILER_ENDPOINT"):
        return url  # the run names none: the plan's, as printed
    target = manifest.targets[0] if manifest is not None and len(manifest.targets) == 1 \
        else None
    mine, said = own_custody_endpoint(flags, env.environ, target, api=api, endpoint=endpoint)
    theirs = custody_endpoint(endpoint, api, url)
    if mine == theirs:
        return url
    shown = ("provider.custody_endpoint" if url else
             "no custody_endpoint: derived from its endpoint")
    raise PlanFileError(
        f"this saved plan sends its custody calls (the private key itself, on import) to "
        f"{printable(theirs)!r} ({shown}); this run's flags, environment or manifests send "
        f"them to {printable(mine)!r} ({printable(said)}). Nothing was sent. Apply it where "
        "it was made (the manifests, --endpoint and RECONCILER_ENDPOINT it was made with), or "
        "make a new plan")


def pinned_backend(saved: SavedPlan, manifest: Manifest | None) -> S3Location | None:
    if manifest is None:
        return saved.backend

    def where(b: S3Location | None) -> tuple[str, str, str | None] | None:
        return (b.bucket, b.key, b.endpoint) if b else None

    if where(manifest.backend) != where(saved.backend):
        raise PlanFileError("the manifests given keep state in another backend than the saved "
                            f"plan {saved.path} was made with ({where(manifest.backend)} against "
                            f"{where(saved.backend)}). Nothing was changed; plan again")
    return saved.backend


def state_line(args: argparse.Namespace, env: Env, backend: S3Location | None,
                saved: SavedPlan) -> str:
    """Where this apply will read and write state (and send the state credentials), said
    before anything is sent: the endpoint is parsed as it will be connected to."""
    from reconciler.state.factory import LocalBackend, choose_backend

    where = choose_backend(state_path=args.state, backend=args.backend,
                           backend_endpoint=args.backend_endpoint, manifest_backend=backend,
                           env=env)
    if isinstance(where, LocalBackend):
        return f"the local file {where.path}"
    text = f"{where.url} at {where.endpoint or 'the AWS default endpoint'}"
    if backend is saved.backend and backend is not None and (
            where.bucket, where.key) == (backend.bucket, backend.key):
        text += " (as the saved plan says)"
    return text


def _same_target(saved: SavedPlan, sess: Session, target: str, shown: str,
                 manifest: Manifest | None) -> None:
    """A plan of one target records its key pairs under the target its manifests name (the
    default one without a targets block): an edited target would move every entry of state
    to it. Applied without its manifests, a saved plan never moves state to another target."""
    named: str | None = None  # without the manifests, state says where the entries are
    if manifest is not None:
        named = manifest.targets[0].name if manifest.targets else DEFAULT_TARGET
    held = {a.target for a in sess.state.keypairs} - {target}
    if (named is not None and named != target) or (named is None and held):
        where = (f"its manifests name {named!r}" if named is not None else
                 f"state holds them under {', '.join(sorted(map(repr, held)))}")
        raise PlanFileError(
            f"the saved plan {shown} records its key pairs under target {target!r}, but "
            f"{where}: the plan was edited, or made for another state. Nothing was changed; "
            "plan again (`reconciler plan --out FILE PATH…`)")


def apply_saved(args: argparse.Namespace, env: Env, path: Path, *,
                manifests: Sequence[str]) -> int:
    shown = args.paths[0] if args.paths else str(path)
    saved = read_saved_plan(path)
    _verify_options(args, saved, shown, manifests)
    manifest = verify_configuration(args, env, saved, manifests, shown)
    if saved.several:
        from reconciler.commands.saved_targets import apply_saved_targets

        return apply_saved_targets(args, env, saved, manifest)
    provider = _pinned_provider(args, env, saved, manifest)
    settings = api_settings(args, env, provider)
    custody = _pinned_custody(args, env, saved, manifest, api=settings.api,
                              endpoint=settings.endpoint)
    if custody is not None and settings.custody_endpoint is None:
        settings = dataclasses.replace(settings, custody_endpoint=custody)
    env.out(f"Saved plan targets {settings.endpoint} (project {settings.project_id}, region "
            f"{settings.region or 'not set'}, api {Api(settings.api).value}"
            + (f"; custody calls at {printable(custody)}" if custody else "") + ").")
    backend = pinned_backend(saved, manifest)
    env.out(f"Saved plan state: {state_line(args, env, backend, saved)}.")
    encryption = manifest.encryption if manifest is not None else None
    with session(args, env, operation="apply",
                 manifest=Manifest(keypairs=(), backend=backend, encryption=encryption),
                 settings={saved_target(saved): settings}) as sess:
        target = next(iter(sess.apis))
        _same_target(saved, sess, target, shown, manifest)
        remote = saved_adoptions(saved, sess, {target: refresh(sess.api)})[target]
        remote = with_sinks({target: remote},
                            manifest=Manifest(keypairs=saved.configuration), state=sess.state,
                            apis=sess.apis, moves=sess.reach.moves, store=sess.store)[target]
        plan = rederive(saved, state=sess.state, remote=remote, now=env.clock(),
                        moves=sess.reach.moves)
        if plan.mode is Mode.REFRESH_ONLY:
            return record_refresh(plan, env, sess, remote)
        return carry_out(plan, args, env, sess, destroy=plan.mode is Mode.DESTROY)
