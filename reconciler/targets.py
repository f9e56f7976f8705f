"""Targets: where each declared key pair lives, and the addresses a run is keyed by.

A manifest set without a ``targets`` block has one implicit target, ``default`` (its
``provider`` block, if any). A key pair declared once is fanned out to every target it lists
(default: all of them); the result is keyed by ``Address``. State (format 3) records each
entry's target, for now always ``default`` (one target per state): its entries belong to the
run's only target.

May import: ``reconciler.model``, ``reconciler.address``.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.address import DEFAULT_TARGET, Address, Addressing
from reconciler.model import (
    DesiredKeyPair,
    Manifest,
    RemoteKeyPair,
    RemoteSnapshot,
    State,
    StateKeyPair,
)


def target_names(manifest: Manifest) -> tuple[str, ...]:
    """The run's targets, in manifest order; ``("default",)`` without a targets block."""
    return tuple(t.name for t in manifest.targets) or (DEFAULT_TARGET,)


def addressing(manifest: Manifest) -> Addressing:
    return Addressing(targets=target_names(manifest))


def desired_by_address(manifest: Manifest) -> dict[Address, DesiredKeyPair]:
    """Every declared key pair in each of its targets."""
    run = addressing(manifest)
    out: dict[Address, DesiredKeyPair] = {}
    for kp in manifest.keypairs:
        for target in kp.targets or run.targets:
            out[run.keypair(kp.name, target)] = kp
    return out


def recorded_by_address(state: State, run: Addressing) -> dict[Address, StateKeyPair]:
    """State's entries by address. State keeps one target for now: every entry is in the
    run's first (for a run that may use it: its only) target."""
    target = run.targets[0]
    return {run.keypair(name, target): entry for name, entry in state.keypairs.items()}


def remote_by_address(remote: Mapping[str, RemoteSnapshot],
                      run: Addressing) -> dict[Address, RemoteKeyPair]:
    """Every target's key pairs, by address."""
    return {run.keypair(name, target): kp
            for target, snapshot in remote.items() for name, kp in snapshot.keypairs.items()}
