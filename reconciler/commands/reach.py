"""How a run reaches each of its targets.

The declared targets are reached with their own settings (``settings.target_settings``);
a target that only state still holds key pairs in (removed from the manifests) is reached
by the connection state recorded for it, with the run's own credentials; a recorded target
whose region and project are a declared one's is that target renamed, and its entries move.
``--in TARGET`` restricts the run to whole targets; ``--forget-target TARGET`` drops a
removed target's entries from state without a request to the cloud.

A target whose credentials fail is reported, not fatal, when the run has other targets:
their key pairs are still planned and applied.

May import: everything but ``reconciler.cli``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.address import DEFAULT_TARGET, Address
from reconciler.api.endpoints import custody_endpoint
from reconciler.api.protocol import ApiSettings
from reconciler.env import Env
from reconciler.errors import ReconcilerError, UsageError
from reconciler.model import Api, Manifest, State, StateKeyPair, TargetConnection
from reconciler.settings import (
    PROJECT_VARS,
    REGION_VARS,
    ProviderFlags,
    resolve_api_settings,
    target_settings,
)
from reconciler.targets import recorded_targets, renamed_targets, same_target, target_names
from reconciler.textsafe import printable


@dataclass
class Reach:
    """Where each target of a run is, and which ones it cannot reach."""

    settings: dict[str, ApiSettings]  # every target the run sends requests to, in order
    declared: tuple[str, ...]
    failed: dict[str, str] = field(default_factory=dict)  # target → why it is not reached
    moves: dict[str, str] = field(default_factory=dict)  # recorded name → declared name
    removed: tuple[str, ...] = ()  # only in state, reached by their recorded connection
    forget: tuple[str, ...] = ()  # --forget-target
    within: tuple[str, ...] = ()  # --in
    # Every declared target's settings (--in does not narrow them), then each removed one's:
    # the connections a saved plan of several targets records.
    every: dict[str, ApiSettings] = field(default_factory=dict)


def several(manifest: Manifest) -> bool:
    return len(manifest.targets) > 1


def declared_settings(flags: ProviderFlags, environ: Mapping[str, str],
                      manifest: Manifest) -> dict[str, ApiSettings]:
    """Each declared target's settings. With several targets each has its own region and
    project: ``--region``/``--project-id`` and the environment's region and project do not
    apply (one value cannot be every target's)."""
    if several(manifest):
        if flags.region or flags.project_id:
            first = manifest.targets[0].location
            raise UsageError(
                f"--region and --project-id name one target, and the manifests declare "
                f"{len(manifest.targets)} (the targets block is at {first}), each with its own "
                "region and project_id. Drop the flag, or restrict the run with --in TARGET")
        environ = {k: v for k, v in environ.items() if k not in (*PROJECT_VARS, *REGION_VARS)}
    return {t.name: target_settings(t, flags, environ) for t in manifest.targets}


def connection_of(settings: ApiSettings) -> TargetConnection:
    """What state records of how this run reaches a target: never a secret (the endpoint
    holds no userinfo, ``urls`` refuses it; the credentials are named by their source)."""
    return TargetConnection(region=settings.region, project_id=settings.project_id,
                            api=settings.api.value, endpoint=settings.endpoint,
                            credentials=settings.credentials.source)


def custody_elsewhere(settings: ApiSettings) -> str | None:
    """Where this run sends a target's custody calls (the private key itself, on import)
    when that is not its endpoint (v2.1: KPS's endpoint); None when it is."""
    where = custody_endpoint(settings.endpoint, settings.api, settings.custody_endpoint)
    return where if where != settings.endpoint else None


def _check_names(flag: str, given: Sequence[str], known: Sequence[str]) -> None:
    for name in given:
        if name not in known:
            shown = ", ".join(known) or "none"
            raise UsageError(f"{flag} {printable(name)}: no target of that name in the "
                             f"manifests or the state (targets: {shown})")


def reach(args: argparse.Namespace, env: Env, flags: ProviderFlags, manifest: Manifest,
          declared: dict[str, ApiSettings], state: State) -> Reach:
    """The run's targets, once state is loaded: declared, renamed, removed, forgotten."""
    names = tuple(declared) or target_names(manifest)
    check_distinct(manifest, declared)
    within = tuple(dict.fromkeys(getattr(args, "within", []) or ()))
    forget = tuple(dict.fromkeys(getattr(args, "forget_target", []) or ()))
    moves = renamed_targets(state, {n: connection_of(s) for n, s in declared.items()},
                            keep=forget)
    if len(names) == 1:
        # A state written before targets were recorded holds the run's one target under
        # another name (``default``), its connection unknown: it is that target.
        for target in recorded_targets(state):
            known = state.targets.get(target) or TargetConnection()
            if target not in names and target not in forget and not known.project_id:
                moves[target] = names[0]
    held = recorded_targets(state, moves)
    _check_names("--in", within, (*names, *(t for t in held if t not in names)))
    for name in forget:
        if name in names:
            where = next((t.location for t in manifest.targets if t.name == name), None)
            raise UsageError(
                f"--forget-target {printable(name)}: the manifests declare that target"
                + (f" (at {where})" if where else "") + "; remove it from the manifests first "
                "(the plan then deletes its key pairs), or keep managing it")
    _check_names("--forget-target", forget, held)
    _check_moves(state, moves)
    leftover = [t for t in held if t not in names and t not in forget]
    recorded = {t: _recorded_settings(t, state, flags, env) for t in leftover}  # all checked
    removed = tuple(t for t in leftover if not within or t in within)
    settings = {n: s for n, s in declared.items() if not within or n in within}
    for target in removed:
        settings[target] = recorded[target]
    every = {**declared, **{t: recorded[t] for t in removed}}
    return Reach(settings=settings, declared=names, moves=moves, removed=removed,
                 forget=forget, within=within, every=every)


def check_distinct(manifest: Manifest, declared: Mapping[str, ApiSettings]) -> None:
    """Two declared targets must not be one project: each would manage the other's key pairs
    (a create in one is a name taken in the other)."""
    seen: dict[str, str] = {}
    for name, s in declared.items():
        other = next((o for o, c in seen.items()
                      if same_target(connection_of(s), TargetConnection(
                          project_id=c, region=declared[o].region))), None)
        if other is not None:
            where = {t.name: t.location for t in manifest.targets}
            raise UsageError(
                f"targets {other!r} (at {where.get(other)}) and {name!r} (at {where.get(name)}) "
                f"are the same project ({s.project_id}): one target can have one name only. "
                "Nothing was changed; remove one of them, and list both targets' key pairs "
                "under the other")
        seen[name] = s.project_id


def _check_moves(state: State, moves: Mapping[str, str]) -> None:
    """A renamed target's entries move to the new name: refused when an entry is there."""
    for address, entry in state.keypairs.items():
        new = moves.get(address.target)
        there = state.by_name(address.name, new) if new is not None else None
        if there is not None and _same_but_sealed(entry, there):
            continue  # a move that was interrupted after recording the new entry: finish it
        if new is not None and there is not None:
            raise UsageError(
                f"state holds key pair {address.name!r} in target {address.target!r} and in "
                f"target {new!r}, which are one target (the same region and project), so one "
                "of them is stale. Nothing was changed. Remove the stale one with "
                f"`reconciler state rm '{address.display(qualified=True)}'` after "
                "checking which one the cloud holds")


def _same_but_sealed(a: StateKeyPair, b: StateKeyPair) -> bool:
    """Whether two entries are one key pair recorded under two targets by a move (its
    private key sealed again for the new address, so the envelopes differ)."""
    return (dataclasses.replace(a, target="", private_key=None)
            == dataclasses.replace(b, target="", private_key=None)
            and (a.private_key is None) == (b.private_key is None))


def _recorded_settings(target: str, state: State, flags: ProviderFlags,
                       env: Env) -> ApiSettings:
    """How to reach a target only state holds key pairs in: as recorded (``--endpoint``
    still means every service at that URL), with the run's own credentials."""
    c = state.targets.get(target) or TargetConnection()
    count = sum(1 for a in state.keypairs if a.target == target)
    if not (c.project_id and c.api and (c.endpoint or c.region or flags.endpoint)):
        shown = next((a for a in state.keypairs if a.target == target), None)
        example = (f"`reconciler state mv '{shown.display(qualified=True)}' "
                   f"'{Address('TARGET', shown.kind, shown.name).display(qualified=True)}'`"
                   if shown is not None else "`reconciler state mv`")
        raise UsageError(
            f"state holds {count} key pair(s) in target {target!r}, which the manifests do "
            "not declare, and does not record where that target is (its project or API: the "
            "state was written before targets were recorded). Nothing was changed. Move each "
            f"into the declared target it lives in, e.g. {example}; or drop them from state "
            f"without touching the cloud with --forget-target {target} (state then forgets "
            "the private keys it holds)")
    try:
        api = Api(c.api)
    except ValueError:
        raise UsageError(f"state records API {printable(c.api)!r} for target {target!r}, "
                         "which this release does not know") from None
    environ = {k: v for k, v in env.environ.items() if k not in (*PROJECT_VARS, *REGION_VARS)}
    from reconciler.model import ProviderConfig

    provider = ProviderConfig(region=c.region, project_id=c.project_id, api=api,
                              endpoint=c.endpoint)
    chosen = ProviderFlags(api=None, endpoint=flags.endpoint, insecure=flags.insecure)
    return resolve_api_settings(chosen, environ, provider)


def credential_failures(settings: Mapping[str, ApiSettings]) -> dict[str, str]:
    """Ask each target's credentials once; the targets whose credentials fail, and why."""
    failed: dict[str, str] = {}
    for name, s in settings.items():
        try:
            s.credentials.current()
        except ReconcilerError as exc:
            failed[name] = str(exc)
    return failed


def announce(reach_: Reach, env: Env) -> None:
    """Say on stderr which credential source each target uses (never a secret)."""
    by_source: dict[str, list[str]] = {}
    for name, s in reach_.settings.items():
        by_source.setdefault(s.credentials.source, []).append(name)
    for source, names in by_source.items():
        if list(reach_.settings) == [DEFAULT_TARGET] or len(reach_.settings) == 1:
            env.err(f"Credentials: {printable(source)}.")
        else:
            which = "target" if len(names) == 1 else "targets"
            env.err(f"Credentials: {printable(source)} ({which} {', '.join(names)}).")
