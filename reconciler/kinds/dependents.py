"""Dependents: the servers that use a key pair the plan deletes or replaces.

Before any ``-`` or ``-/+`` of a key pair, its change names the servers whose ``key_name``
is that key pair (read from the target's server list). Deleting a key pair that servers
still use is refused unless the same plan unbinds or rebinds each of them, or
``--allow-bound-delete`` is given, which the plan's warnings then say. A replacement of a
bound key pair is a rotation without a gap (``kinds.generations``): its servers are rebound
before the old generation is deleted. A replacement that cannot be one (servers use it that
no manifest binds to it) keeps the name, and those servers keep accepting the old public key
until they are rebound: the plan warns of that.

May import: ``reconciler.kinds.base``, ``reconciler.changes``, ``reconciler.model``,
``reconciler.address``, ``reconciler.kinds.generations``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from reconciler.address import KEYPAIR
from reconciler.changes import Action, Change
from reconciler.kinds.base import Context
from reconciler.kinds.generations import cloud_name_of, named, released, rotation_of, users


def review_dependents(changes: Sequence[Change], ctx: Context, *,
                      binding_kind: str) -> list[Change]:
    moving = released(changes, binding_kind)
    out: list[Change] = []
    for change in changes:
        snapshot = ctx.snapshots.get(change.address.target)
        if change.address.kind != KEYPAIR or snapshot is None or snapshot.servers is None \
                or change.action not in (Action.DELETE, Action.REPLACE):
            out.append(change)
            continue
        cloud = (change.prior.cloud_name if change.prior is not None
                 else cloud_name_of(change))
        holding = users(snapshot, cloud)
        if not holding:
            out.append(change)
            continue
        target = change.address.target
        out.append(replace(change, notes=(*change.notes,
                                          f"used by {len(holding)} server(s): {named(holding)}")))
        if rotation_of(change) is not None:
            continue  # its servers are rebound first; the old generation waits (deposed)
        if change.action is Action.REPLACE:
            ctx.warnings.append(
                f"{change.address} is replaced while {len(holding)} server(s) use it: "
                f"{named(holding)}. They keep accepting the old public key until they are "
                "rebound (a replacement rebinds them without a gap only when the key pair "
                "lists them under servers:)")
            continue
        left = [s for s in holding if (target, cloud, s.id) not in moving]
        if not left:
            continue
        if ctx.options.allow_bound_delete:
            ctx.warnings.append(
                f"{change.address} is deleted while {len(left)} server(s) still use it "
                f"(--allow-bound-delete): {named(left)}. They keep accepting its public key, "
                "which no longer exists in KPS, and cannot be rebound with it")
            continue
        ctx.problem(f"{change.address} is to be deleted, but {len(left)} server(s) still use "
                    f"it: {named(left)}",
                    "unbind or rebind them in the same plan (list them under another key "
                    "pair's servers:, or keep the key pair until they no longer use it); or "
                    "give --allow-bound-delete to delete it anyway", change.desired)
    return out
