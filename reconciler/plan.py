"""The plan: what apply will do, computed from desired, recorded and actual objects.

``make_plan`` is pure: no I/O, no clock (``now`` is passed in), no randomness. It knows kinds
only through the kind protocol (``reconciler.kinds``): every address's change is decided by its
kind; apply never re-diffs.

Every decision is per ``Address``: each desired object fanned out to its targets, each state
entry, each object of each target's snapshot. ``--target`` and ``--replace`` take addresses
(a bare name selects that key pair in every target, as Terraform's ``-target`` does).

May import: ``reconciler.changes``, ``reconciler.kinds``, ``reconciler.model``,
``reconciler.errors``, ``reconciler.attributes``, ``reconciler.address``,
``reconciler.targets``, ``reconciler.capabilities``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from reconciler.address import (
    KEYPAIR,
    ORDER,
    Address,
    AddressSyntaxError,
    parse_address,
    select,
)
from reconciler.attributes import field_differences
from reconciler.capabilities import DEFAULT_API
from reconciler.changes import (
    REASON_BY_REQUEST,
    REASON_CANNOT_UPDATE,
    REASON_GONE,
    REASON_NO_CONFIG,
    REASON_REKEYED,
    REASON_ROTATION,
    REASON_TAINTED,
    REASON_TARGET_FORGOTTEN,
    Action,
    Change,
    Drift,
    DriftKind,
    Mode,
    Plan,
    PlanOptions,
    tally,
)
from reconciler.errors import Diagnostic, DiagnosticsError
from reconciler.kinds import REGISTRY
from reconciler.kinds.base import Context
from reconciler.model import (
    ImportRequest,
    Manifest,
    RemoteSnapshot,
    SourceLocation,
    State,
    StateKeyPair,
)
from reconciler.targets import addressing, recorded_by_address

__all__ = [
    "REASON_BY_REQUEST", "REASON_CANNOT_UPDATE", "REASON_GONE", "REASON_NO_CONFIG",
    "REASON_REKEYED", "REASON_ROTATION", "REASON_TAINTED", "REASON_TARGET_FORGOTTEN",
    "Action", "Change", "Drift", "DriftKind", "Mode", "Plan", "PlanOptions", "field_changes",
    "make_plan", "tally",
]


def _selected(flag: str, given: Iterable[str], known: Iterable[Address],
              out: list[Diagnostic]) -> set[Address]:
    """The addresses ``--target``/``--replace`` name; a problem for each that names none."""
    if not given:
        return set()
    addresses = sorted(set(known), key=ORDER)
    chosen: set[Address] = set()
    for text in given:
        try:
            found = select(parse_address(text), addresses)
        except AddressSyntaxError as exc:
            out.append(Diagnostic(summary=f"{flag}: {exc}",
                                  detail="`reconciler state list` shows managed key pairs"))
            continue
        if not found:
            out.append(Diagnostic(
                summary=f"{flag} {text}: no key pair of that name in the manifests or state",
                detail="check the spelling; `reconciler state list` shows managed key pairs",
            ))
        chosen.update(found)
    return chosen


def _check_replace(chosen: set[Address], desired: Mapping[Address, object],
                   recorded: Mapping[Address, object], options: PlanOptions,
                   out: list[Diagnostic]) -> None:
    for text in options.replace:
        try:
            query = parse_address(text)
        except AddressSyntaxError:
            continue  # said already
        found = [a for a in chosen if query.matches(a)]
        if found and all(a in desired and a not in recorded for a in found):
            out.append(Diagnostic(summary=f"--replace {text}: it is not in state yet, so there "
                                          "is nothing to replace",
                                  detail="drop --replace; the plan creates it"))


def _importing(requests: Iterable[ImportRequest], desired: Iterable[Address],
               out: list[Diagnostic]) -> dict[Address, SourceLocation]:
    """The addresses the ``import:`` lists name, with where each is listed; a problem for an
    entry that names no declared object (the loader says so first, with its reason)."""
    addresses = sorted(set(desired), key=ORDER)
    found: dict[Address, SourceLocation] = {}
    for request in requests:
        try:
            chosen = select(parse_address(request.to), addresses)
        except AddressSyntaxError as exc:
            out.append(Diagnostic(summary=f"import: {exc}", location=request.location))
            continue
        if not chosen:
            out.append(Diagnostic(summary=f"import: {request.to} is not declared",
                                  location=request.location,
                                  detail="declare it under keypairs, or drop the entry"))
        for addr in chosen:
            found.setdefault(addr, request.location)
    return found


def make_plan(
    manifest: Manifest,
    state: State,
    remote: RemoteSnapshot | Mapping[str, RemoteSnapshot],
    *,
    options: PlanOptions,
    now: datetime,
    recorded: Mapping[Address, StateKeyPair] | None = None,
    moves: Mapping[str, str] | None = None,
    unreachable: Mapping[str, str] | None = None,
    within: Iterable[str] = (),
    forget_targets: Iterable[str] = (),
) -> Plan:
    """Compare desired, recorded and actual key pairs and decide every change, per address.

    ``remote`` is the one snapshot of a single-target run, or every target's by target name.
    ``recorded`` is state's entries by address (default: from ``state``, an entry of a
    target renamed in ``moves`` under its new name). ``unreachable`` names targets that could
    not be read (and why): nothing is decided for their key pairs. ``within`` (``--in``)
    restricts the plan to whole targets; ``forget_targets`` (``--forget-target``) are
    targets whose entries are dropped from state without a request to the cloud.

    Raises ``DiagnosticsError`` (all problems at once) for key pairs that exist but are not
    managed, for ``prevent_destroy`` violations, and for unknown ``--target``/``--replace``.
    """
    moves = dict(moves or {})
    unreachable = dict(unreachable or {})
    within_set, forgotten = set(within), set(forget_targets)
    run = addressing(manifest, state, moves)
    snapshots = {run.targets[0]: remote} if isinstance(remote, RemoteSnapshot) else dict(remote)
    entries = recorded if recorded is not None else recorded_by_address(state, run, moves)
    desired: dict[Address, Any] = {}
    recorded_: dict[Address, Any] = {}
    actual: dict[Address, Any] = {}
    for kind in REGISTRY.values():
        desired.update(kind.desired(manifest, run))
        recorded_.update(kind.recorded(entries))
        actual.update(kind.remote(snapshots, run))
    recorded = recorded_
    problems: list[Diagnostic] = []
    known = (*desired, *recorded) if options.targets or options.replace else ()
    targets = _selected("--target", options.targets, known, problems)
    replacing = _selected("--replace", options.replace, known, problems)
    _check_replace(replacing, desired, recorded, options, problems)
    importing = _importing(manifest.imports, desired, problems)
    first = next(iter(snapshots.values()), None)
    default_api = first.api if first is not None else DEFAULT_API
    ctx = Context(options=options, now=now, api=default_api, problems=problems,
                  replacing=frozenset(replacing), importing=importing, snapshots=snapshots,
                  entries=entries,
                  declared=frozenset(a for a in desired if a.kind == KEYPAIR))
    changes: list[Change] = []
    drift: list[Drift] = []
    forget: list[Address] = []
    lifecycle: list[tuple[Address, bool]] = []
    apis = {t: s.api for t, s in snapshots.items()}
    skipped = set(unreachable)
    if within_set:
        skipped |= {a.target for a in (*desired, *recorded)} - within_set
    for addr in sorted(desired.keys() | recorded.keys(), key=ORDER):
        if addr.target in skipped or (targets and addr not in targets and REGISTRY[
                addr.kind].owner(addr, desired.get(addr), recorded.get(addr)) not in targets):
            continue  # --target of a key pair selects its bindings and deliveries too
        ctx.here = addr
        prior = recorded.get(addr)
        if addr.target in forgotten:
            if prior is not None:
                changes.append(REGISTRY[addr.kind].forget_target(prior, addr))
            continue
        ctx.api = apis.get(addr.target, default_api)
        decided = REGISTRY[addr.kind].decide(addr, desired.get(addr), prior, actual.get(addr),
                                             ctx)
        # a kind may make its changes at their address already (no copy of each no-op)
        changes.extend(c if c.at is not None else replace(c, at=addr) for c in decided.changes)
        if decided.drift:
            drift.extend(d if d.at is not None else replace(d, at=addr) for d in decided.drift)
        forget.extend(decided.forget)
        lifecycle.extend(decided.lifecycle)
    for kind in REGISTRY.values():
        changes = kind.review(changes, ctx)
    if ctx.problems:
        raise DiagnosticsError(ctx.problems)
    for kind in REGISTRY.values():
        changes = kind.follow(changes)
    moved = tuple(sorted(((Address(a.target, a.kind, a.name, qualified=True),
                           run.keypair(a.name, moves[a.target]))
                          for a in state.keypairs if a.target in moves
                          and (not within_set or moves[a.target] in within_set)),
                         key=lambda pair: ORDER(pair[1])))
    return Plan(
        changes=tuple(changes), api=default_api, lineage=state.lineage, serial=state.serial,
        manifest_digest=manifest.digest, mode=options.mode, drift=tuple(drift),
        forget=tuple(forget), lifecycle=tuple(lifecycle),
        targets=tuple(sorted(set(options.targets))),
        configuration=manifest.keypairs, imports=manifest.imports,
        replace=tuple(sorted(set(options.replace))),
        planned_at=now.isoformat(),
        state_verified=state.verified,
        moved=moved, unreachable=tuple(sorted(unreachable.items())),
        within=tuple(sorted(within_set)), forget_targets=tuple(sorted(forgotten)),
        run_targets=run.targets, warnings=tuple(ctx.warnings),
    )


def field_changes(change: Change) -> dict[str, tuple[Any, Any]]:
    """Per-field differences between before and after (deepdiff), for renderers."""
    return field_differences(change.before, change.after)
