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
from reconciler.kinds.generations import cloud_name_of, rotation_of
from reconciler.model import RemoteServer

SHOWN = 20  # servers named per key pair; the rest are counted


def _named(servers: Sequence[RemoteServer]) -> str:
    shown = ", ".join(f"{s.name} ({s.id})" for s in servers[:SHOWN])
    more = len(servers) - SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _released(changes: Sequence[Change], binding_kind: str) -> set[tuple[str, str, str]]:
    """(target, key pair, server id) of every binding this plan unbinds or rebinds away."""
    out = set()
    for c in changes:
        before = c.before or {}
        if c.address.kind == binding_kind and c.action in (Action.DELETE, Action.UPDATE) \
                and isinstance(before.get("key_name"), str):
            out.add((c.address.target, str(before["key_name"]), str(before["server_id"])))
    return out


def review_dependents(changes: Sequence[Change], ctx: Context, *,
                      binding_kind: str) -> list[Change]:
    released = _released(changes, binding_kind)
    out: list[Change] = []
    for change in changes:
        snapshot = ctx.snapshots.get(change.address.target)
        if change.address.kind != KEYPAIR or snapshot is None or snapshot.servers is None \
                or change.action not in (Action.DELETE, Action.REPLACE):
            out.append(change)
            continue
        cloud = (change.prior.cloud_name if change.prior is not None
                 else cloud_name_of(change))
        users = [s for s in snapshot.servers if s.key_name == cloud]
        if not users:
            out.append(change)
            continue
        target = change.address.target
        out.append(replace(change, notes=(*change.notes,
                                          f"used by {len(users)} server(s): {_named(users)}")))
        if rotation_of(change) is not None:
            continue  # its servers are rebound first; the old generation waits (deposed)
        if change.action is Action.REPLACE:
            ctx.warnings.append(
                f"{change.address} is replaced while {len(users)} server(s) use it: "
                f"{_named(users)}. They keep accepting the old public key until they are "
                "rebound (a replacement rebinds them without a gap only when the key pair "
                "lists them under servers:)")
            continue
        left = [s for s in users if (target, cloud, s.id) not in released]
        if not left:
            continue
        if ctx.options.allow_bound_delete:
            ctx.warnings.append(
                f"{change.address} is deleted while {len(left)} server(s) still use it "
                f"(--allow-bound-delete): {_named(left)}. They keep accepting its public key, "
                "which no longer exists in KPS, and cannot be rebound with it")
            continue
        ctx.problem(f"{change.address} is to be deleted, but {len(left)} server(s) still use "
                    f"it: {_named(left)}",
                    "unbind or rebind them in the same plan (list them under another key "
                    "pair's servers:, or keep the key pair until they no longer use it); or "
                    "give --allow-bound-delete to delete it anyway", change.desired)
    return out
