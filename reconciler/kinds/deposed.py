"""The deposed kind: the previous generation of a key pair rotated without a gap.

One address per rotation under way, ``deposed.KEYPAIR``: made by the plan that rotates a
bound key pair (``kinds.generations``), recorded in the key pair's entry from the moment the
new generation is created, and gone once the old generation is deleted. Its one change is
that delete, after every rebind away from it (the bindings' ``precedes``); the plan refuses
it while a server that no manifest rebinds still holds the old generation, unless
``--allow-bound-delete`` is given. Apply deletes it only once the new generation is ready
in state and the server list, read again right before, shows no server on it: a rebind that
failed leaves both generations in place, and the next apply finishes the rotation.

May import: ``reconciler.kinds.base``, ``reconciler.kinds.generations``,
``reconciler.changes``, ``reconciler.model``, ``reconciler.address``, ``reconciler.errors``,
``reconciler.api.protocol``, ``reconciler.state.protocol``, ``reconciler.textsafe``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from reconciler.address import KEYPAIR, Address, Addressing
from reconciler.api.protocol import KeyPairApi
from reconciler.changes import Action, Change, Hooks, Mode, Outcome
from reconciler.errors import ReconcilerError
from reconciler.kinds.base import Context, Decided, KindDefaults, OneByOne
from reconciler.kinds.generations import DEPOSED, named, released, rotation_of, users
from reconciler.model import Deposed, EntryStatus, Manifest, RemoteSnapshot, StateKeyPair
from reconciler.state.protocol import StateStore
from reconciler.textsafe import printable

BINDING = "binding"


def _attrs(name: str, old: Deposed) -> dict[str, Any]:
    return {"key_pair": name, "name": old.cloud_name, "public_key": old.public_key,
            "fingerprint": old.fingerprint_md5}


def _decide(addr: Address, prior: StateKeyPair, ctx: Context) -> Decided:
    out = Decided()
    old = prior.deposed
    if old is None or ctx.options.mode is Mode.REFRESH_ONLY:
        return out
    snapshot = ctx.snapshots.get(addr.target)
    keypair = Address(addr.target, KEYPAIR, addr.name, qualified=addr.qualified)
    if snapshot is not None and old.cloud_name not in snapshot.keypairs:
        out.changes.append(Change(addr.name, Action.DELETE, before=_attrs(prior.name, old),
                                  at=addr, prior=prior,
                                  notes=(f"the previous generation of {keypair} is gone from "
                                         "the cloud: apply drops it from state",)))
        return out
    out.changes.append(Change(addr.name, Action.DELETE, before=_attrs(prior.name, old),
                              at=addr, prior=prior,
                              notes=(f"the previous generation of {keypair} "
                                     f"({old.cloud_name!r}), left by a rotation that did not "
                                     "finish: deleted once no server holds it",)))
    return out


def _started(changes: Sequence[Change]) -> list[Change]:
    """The deposed changes of the rotations this plan starts."""
    out = []
    for c in changes:
        r = rotation_of(c) if c.address.kind == KEYPAIR else None
        if r is None or c.prior is None:
            continue
        prior = c.prior
        old = Deposed(cloud_name=r[0], public_key=prior.public_key,
                      fingerprint_md5=prior.fingerprint_md5,
                      fingerprint_sha256=prior.fingerprint_sha256)
        at = Address(c.address.target, DEPOSED, c.name, qualified=c.address.qualified)
        out.append(Change(c.name, Action.DELETE, before=_attrs(c.name, old), at=at,
                          prior=prior,
                          notes=(f"the previous generation of {c.address} ({r[0]!r}): "
                                 f"deleted once every server is rebound to {r[1]!r}",)))
    return out


def _review(changes: Sequence[Change], ctx: Context) -> list[Change]:
    out = [*changes, *_started(changes)]
    deleted = {c.address for c in out if c.address.kind == KEYPAIR
               and c.action in (Action.DELETE, Action.FORGET)}
    moving = released(out, BINDING)  # (target, name in the cloud, server id)
    for i, c in enumerate(out):
        if c.address.kind != DEPOSED or c.action is not Action.DELETE:
            continue
        if Address(c.address.target, KEYPAIR, c.name) in deleted:
            # the key pair goes too: its old generation first, while the entry (and the
            # private key the unbinds need) is still there
            c = out[i] = replace(c, before={**(c.before or {}), "keypair_deleted": True})
        old = str((c.before or {}).get("name"))
        target = c.address.target
        left = [s for s in users(ctx.snapshots.get(target), old)
                if (target, old, s.id) not in moving]
        if not left:
            continue
        keypair = Address(target, KEYPAIR, c.name, qualified=c.address.qualified)
        if ctx.options.allow_bound_delete:
            ctx.warnings.append(
                f"{c.address}: the previous generation of {keypair} ({old!r}) is deleted "
                f"while {len(left)} server(s) that no manifest binds to it still hold it "
                f"(--allow-bound-delete): {named(left)}. They keep accepting its public "
                "key, whose private key state then no longer holds")
            # the servers named in the warning, and only they, may still hold it then
            out[i] = replace(c, before={**(c.before or {}),
                                        "bound_delete_allowed": sorted(s.id for s in left)})
            continue
        ctx.problem(f"{keypair} cannot finish its rotation: {len(left)} server(s) still hold "
                    f"its previous generation {old!r} and no manifest rebinds them: "
                    f"{named(left)}",
                    f"list them under {keypair}'s servers: (they are rebound to the new "
                    "generation), or give --allow-bound-delete to delete the old generation "
                    "anyway", c.desired)
    return out


class DeposedApplier(OneByOne):
    """Deletes previous generations in one target, once nothing holds them."""

    def __init__(self, *, api: KeyPairApi, store: StateStore, hooks: Hooks, target: str,
                 clients: Any) -> None:
        self.api = api
        self.store = store
        self.hooks = hooks
        self.target = target
        self.clients = clients

    def run(self, change: Change) -> Outcome:
        start = time.monotonic()
        self.hooks.pre_apply(change, "delete")
        try:
            error = self._retire(change)
        except ReconcilerError as exc:
            error = str(exc)
        return Outcome(change.name, change.action, error is None, time.monotonic() - start,
                       error, at=change.at)

    def _retire(self, change: Change) -> str | None:
        old = str((change.before or {}).get("name"))
        entry = self.store.current(change.name, target=self.target)
        going = bool((change.before or {}).get("keypair_deleted"))
        if entry is not None and not going and (entry.status is not EntryStatus.READY
                                                or entry.cloud_name == old):
            return (f"kept: the new generation of key pair {change.name!r} is not in place, "
                    f"so {old!r} stays; the next apply finishes the rotation")
        allowed = (change.before or {}).get("bound_delete_allowed")
        # the servers the plan warned of (--allow-bound-delete); a list of ids (a plan saved
        # before this rule held ``true``: honoured as no server, so nothing is deleted unseen)
        spared = {str(i) for i in allowed} if isinstance(allowed, list) else set()
        holding = [s for s in self._holding(old) if s.id not in spared]
        if holding:
            return (f"kept: {len(holding)} server(s) still hold {old!r} "
                    f"({named(holding)}), so it stays with its private key; the next "
                    "apply moves them off it (rebinds or unbinds them as the manifests say) "
                    "and then deletes it")
        binding = self._binding(old)
        if binding:
            return (f"kept: KPS is binding {old!r} to {len(binding)} server(s) right now "
                    f"({', '.join(binding[:5])}), so it stays with its private key; the next "
                    "apply sees where those tasks left the servers")
        self.api.delete_keypair(old)  # already gone counts as done
        if entry is not None and entry.deposed is not None \
                and entry.deposed.cloud_name == old:
            self.store.record(replace(entry, deposed=None))
        return None

    def _holding(self, old: str) -> list[Any]:
        """The servers that hold ``old`` now, read again right before the delete."""
        if self.clients is None:
            return []
        return [s for s in self.clients.list_servers() if s.key_name == old]

    def _binding(self, old: str) -> list[str]:
        """The servers a running KPS task is binding ``old`` to (someone else's, or one of
        ours that the plan did not wait for), read right before the delete."""
        if self.clients is None:
            return []
        return [printable(f"{t.server_name or '?'} ({t.server_id or t.task_id})"[:120])
                for t in self.clients.kps.running_tasks() if t.keypair_name == old]


class DeposedKind(KindDefaults):
    """Previous generations of key pairs being rotated: recorded in their entries."""

    name = DEPOSED
    section = "keypairs"  # made by rotations of key pairs
    schema_definition = "keypair"

    def desired(self, manifest: Manifest, run: Addressing) -> Mapping[Address, Any]:
        return {}

    def recorded(self, entries: Mapping[Address, StateKeyPair]
                 ) -> Mapping[Address, StateKeyPair]:
        return {Address(a.target, DEPOSED, a.name, qualified=a.qualified): e
                for a, e in entries.items() if a.kind == KEYPAIR and e.deposed is not None}

    def remote(self, snapshots: Mapping[str, RemoteSnapshot],
               run: Addressing) -> Mapping[Address, Any]:
        return {}

    def decide(self, addr: Address, desired: Any, recorded: Any, remote: Any,
               ctx: Context) -> Decided:
        return _decide(addr, recorded, ctx) if recorded is not None else Decided()

    def forget_target(self, recorded: Any, addr: Address) -> Change:
        # the key pair's entry, its deposed generation included, leaves with its FORGET
        return Change(addr.name, Action.NOOP, at=addr)

    def depends_on(self, change: Change) -> tuple[Address, ...]:
        if (change.before or {}).get("keypair_deleted"):
            return ()
        return (Address(change.address.target, KEYPAIR, change.name),)

    def owner(self, addr: Address, desired: Any, recorded: Any) -> Address | None:
        return Address(addr.target, KEYPAIR, addr.name, qualified=addr.qualified)

    def precedes(self, change: Change) -> tuple[Address, ...]:
        if (change.before or {}).get("keypair_deleted"):
            return (Address(change.address.target, KEYPAIR, change.name),)
        return ()

    def review(self, changes: Sequence[Change], ctx: Context) -> list[Change]:
        return _review(changes, ctx)

    def applier(self, *, api: KeyPairApi, store: StateStore, hooks: Hooks,
                now: Callable[[], datetime], generate: Callable[..., Any] | None,
                target: str, bindings: Any = None) -> DeposedApplier:
        return DeposedApplier(api=api, store=store, hooks=hooks, target=target,
                              clients=bindings)



KIND = DeposedKind()
