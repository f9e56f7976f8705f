"""Targets: where each declared key pair lives, and the addresses a run is keyed by.

A manifest set without a ``targets`` block has one implicit target, ``default`` (its
``provider`` block, if any). A key pair declared once is fanned out to every target it lists
(default: all of them); the result is keyed by ``Address``. State (format 3) records each
entry's target and how that target was reached (``TargetConnection``).

A run's targets are the declared ones and those only state still holds key pairs in (a
target removed from the manifests: its key pairs are planned for deletion, reached by the
recorded connection). A target is known by what it is: a recorded target whose region and
project are a declared target's is that target renamed (``moves``), and its entries move to
the new name; nothing moves in the cloud.

May import: ``reconciler.model``, ``reconciler.address``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from reconciler.address import DEFAULT_TARGET, Address, Addressing
from reconciler.model import (
    DesiredKeyPair,
    Manifest,
    RemoteKeyPair,
    RemoteSnapshot,
    State,
    StateKeyPair,
    TargetConnection,
)


def target_names(manifest: Manifest) -> tuple[str, ...]:
    """The declared targets, in manifest order; ``("default",)`` without a targets block."""
    return tuple(t.name for t in manifest.targets) or (DEFAULT_TARGET,)


def addressing(manifest: Manifest, state: State | None = None,
               moves: Mapping[str, str] | None = None) -> Addressing:
    """How the run shows addresses: with the target when more than one is in play (declared,
    or holding entries in ``state`` that do not move to a declared one)."""
    declared = target_names(manifest)
    held = recorded_targets(state, moves) if state is not None else ()
    return Addressing(targets=declared + tuple(t for t in held if t not in declared))


def recorded_targets(state: State, moves: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The targets state holds entries in (after ``moves``), sorted."""
    moves = moves or {}
    return tuple(sorted({moves.get(a.target, a.target) for a in state.keypairs}))


def placements(manifest: Manifest) -> Iterator[tuple[str, DesiredKeyPair]]:
    """(target, key pair) for every declared key pair in each of its targets (its own list,
    or every declared target)."""
    declared = target_names(manifest)
    for kp in manifest.keypairs:
        for target in kp.targets or declared:
            yield target, kp


def desired_by_address(manifest: Manifest, run: Addressing | None = None
                       ) -> dict[Address, DesiredKeyPair]:
    """Every declared key pair in each of its targets."""
    run = run or addressing(manifest)
    return {run.keypair(kp.name, target): kp for target, kp in placements(manifest)}


def recorded_by_address(state: State, run: Addressing,
                        moves: Mapping[str, str] | None = None) -> dict[Address, StateKeyPair]:
    """State's entries by address in this run (an entry of a renamed target under its new
    name)."""
    moves = moves or {}
    return {run.keypair(a.name, moves.get(a.target, a.target)): entry
            for a, entry in state.keypairs.items()}


def adoptable(manifest: Manifest, state: State,
              moves: Mapping[str, str] | None = None) -> dict[str, tuple[str, ...]]:
    """The names, by target, that a plan may adopt: declared there and not in state."""
    moves = moves or {}
    # (target, name) pairs, as the addresses of ``desired_by_address`` and
    # ``recorded_by_address`` would be: without making an address of every key pair twice
    held = {(moves.get(a.target, a.target), a.name) for a in state.keypairs}
    seen: set[tuple[str, str]] = set()
    out: dict[str, list[str]] = {}
    for target, kp in placements(manifest):
        pair = (target, kp.name)
        if pair not in held and pair not in seen:
            seen.add(pair)
            out.setdefault(target, []).append(kp.name)
    return {target: tuple(names) for target, names in out.items()}


def remote_by_address(remote: Mapping[str, RemoteSnapshot],
                      run: Addressing) -> dict[Address, RemoteKeyPair]:
    """Every target's key pairs, by address."""
    return {run.keypair(name, target): kp
            for target, snapshot in remote.items() for name, kp in snapshot.keypairs.items()}


def same_target(a: TargetConnection, b: TargetConnection) -> bool:
    """Whether two connections reach one target: the same project (a project lives in one
    region, so its id names it; regions, where both are known, must agree too)."""
    if not a.project_id or a.project_id != b.project_id:
        return False
    return not (a.region and b.region and a.region != b.region)


def renamed_targets(state: State, declared: Mapping[str, TargetConnection],
                    keep: Iterable[str] = ()) -> dict[str, str]:
    """Recorded targets that are a declared target under another name: old name → new.

    ``declared`` is each declared target's connection as this run reaches it; ``keep``
    names recorded targets never to move (``--forget-target``)."""
    keep = set(keep)
    out: dict[str, str] = {}
    for target in recorded_targets(state):
        if target in declared or target in keep:
            continue
        recorded = state.targets.get(target) or TargetConnection()
        found = [name for name, c in declared.items() if same_target(recorded, c)]
        if found:
            out[target] = found[0]  # declared targets are distinct (``reach`` checks)
    return out


def state_addressing(state: State) -> Addressing:
    """How commands that read only state show its addresses: with the target when state
    holds entries in more than one."""
    return Addressing(targets=recorded_targets(state) or (DEFAULT_TARGET,))
