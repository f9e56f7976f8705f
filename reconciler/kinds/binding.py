"""The binding kind: a key pair bound to an ECS server, declared by the key pair's
``servers:`` and kept so.

One address per bound server, ``binding.KEYPAIR.SERVER_ID`` (``binding.web.6f1c…`` while a
run has one target, ``binding.web.6f1c…["prod"]`` when it has several). The kind decides one
group per key pair and target (``binding.KEYPAIR``: what the manifest declares there, what
state records, and the target's server list, ``RemoteSnapshot.servers``), and each of its
changes carries its own address:

| server now (``key_name``) | declared, not recorded | declared, recorded | recorded only |
|---|---|---|---|
| the key pair              | ``IMPORT`` (adopted)   | no change          | ``DELETE`` (unbind) |
| none                      | ``CREATE`` (bind)      | drift, ``CREATE``  | drift, state only |
| another key pair          | ``UPDATE`` (rebind)    | drift, ``UPDATE``  | drift, state only |
| gone from the list        | a problem              | a problem          | drift, state only |

A server no manifest names is never touched. Names are resolved to ids here by an exact
compare (ECS's ``name`` filter is fuzzy); a name no server has, or several have, is a
problem at its line. A rebind or unbind of a running server that holds a key pair needs that
key pair's private key (apply takes it from state); when state holds none the plan refuses
it, saying how (stop the server for a reset, or have reconciler hold the key). What the cloud
will refuse anyway (a private image) is a plan warning. Before a key pair is deleted or
replaced the plan names the servers that use it (``kinds.dependents``).

May import: ``reconciler.kinds.base``, ``reconciler.kinds.binding_apply``,
``reconciler.kinds.dependents``, ``reconciler.changes``, ``reconciler.model``,
``reconciler.address``, ``reconciler.api.protocol``, ``reconciler.state.protocol``,
``reconciler.kinds.generations``.

A key pair rotated without a gap (``kinds.generations``) is at generation N, ``NAME-gN`` in
the cloud: its servers are compared with that name, a server still on the previous
(deposed) generation is rebound to the current one, and in the plan that starts a rotation
every server bound to the old generation is rebound to the new one (with the old private key
as ``auth``). ``key_name`` is always the cloud's name; ``held_by`` (and ``held_by_deposed``)
say which managed key pair a server holds when that name is not the key pair's own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from reconciler.address import KEYPAIR, Address, Addressing
from reconciler.api.protocol import KeyPairApi
from reconciler.changes import Action, Change, Drift, DriftKind, Hooks, Mode, Plan
from reconciler.kinds.base import Context, Decided, KindDefaults
from reconciler.kinds.binding_apply import BindingApplier
from reconciler.kinds.dependents import review_dependents
from reconciler.kinds.generations import DEPOSED, rotation_of
from reconciler.model import (
    DesiredKeyPair,
    Manifest,
    RemoteServer,
    RemoteSnapshot,
    ServerRef,
    State,
    StateKeyPair,
)
from reconciler.state.protocol import StateStore

BINDING = "binding"


@dataclass(frozen=True, slots=True)
class Declared:
    """What one key pair's ``servers:`` asks for in one target."""

    keypair: DesiredKeyPair
    refs: tuple[ServerRef, ...]


def has_bindings(manifest: Manifest, state: State) -> bool:
    """Whether a plan needs the server lists: the manifests bind servers, or state records
    bindings."""
    return any(kp.servers for kp in manifest.keypairs) or any(
        e.servers or e.deposed is not None for e in state.keypairs.values())


def removes_keypairs(plan: Plan) -> bool:
    """Whether a plan deletes or replaces a key pair (its dependents must be named)."""
    return any(c.action in (Action.DELETE, Action.REPLACE) and c.address.kind == KEYPAIR
               for c in plan.changes)


def keypair_of(addr: Address) -> Address:
    """The key pair a binding (or a group of bindings) is of."""
    return Address(addr.target, KEYPAIR, addr.name.split(".", 1)[0], qualified=addr.qualified)


def binding_address(group: Address, server_id: str) -> Address:
    return Address(group.target, BINDING, f"{group.name}.{server_id}", qualified=group.qualified)


def _attrs(keypair: str, server: RemoteServer | None, server_id: str,
           key_name: str | None) -> dict[str, Any]:
    return {"key_pair": keypair, "server_id": server_id,
            "server": server.name if server is not None else None,
            "status": server.status if server is not None else None, "key_name": key_name}


def _resolve(refs: Sequence[ServerRef], servers: Sequence[RemoteServer], ctx: Context,
             group: Address) -> dict[str, ServerRef]:
    """The declared servers by id; a problem at its line for a ref no server (or several
    servers) answer to."""
    by_id = {s.id: s for s in servers}
    by_name: dict[str, list[RemoteServer]] = {}
    for s in servers:
        by_name.setdefault(s.name, []).append(s)
    where = f" in target {group.target}" if group.qualified else ""
    out: dict[str, ServerRef] = {}
    for ref in refs:
        if ref.ref in by_id:
            out.setdefault(ref.ref, ref)
            continue
        named = by_name.get(ref.ref, [])
        if len(named) == 1:
            out.setdefault(named[0].id, ref)
        elif not named:
            ctx.problem(f"key pair {group.name!r} is to be bound to server {ref.ref!r}, but no "
                        f"server{where} has that id or name ({len(servers)} servers listed)",
                        "check the spelling (names are compared exactly), the target, and "
                        "that the server exists; or drop it from servers", at=ref.location)
        else:
            ids = ", ".join(sorted(s.id for s in named))
            ctx.problem(f"server name {ref.ref!r}{where} is ambiguous: {len(named)} servers "
                        f"have it ({ids})",
                        "give the id of the one to bind instead of its name", at=ref.location)
    return out


def _held(ctx: Context, target: str, key_name: str | None) -> dict[str, Any]:
    """What a binding's ``before`` says of the managed key pair a server holds, when the
    cloud's name for it is not its own (a generation), or it is a deposed generation."""
    if key_name is None:
        return {}
    found = ctx.holder(target, key_name)
    if found is None or (found[0].name == key_name and not found[1]):
        return {}
    entry, deposed = found
    return {"held_by": entry.name, **({"held_by_deposed": True} if deposed else {})}


def _auth_problem(server: RemoteServer, holder: str, doing: str, ctx: Context,
                  group: Address, at: ServerRef | None) -> None:
    """A running server holds ``holder``: KPS needs its private key to change it. Reported
    when state holds none."""
    found = ctx.holder(group.target, holder)
    entry = found[0] if found is not None else None
    if entry is not None and entry.private_key_of(holder) is not None:
        return
    why = ("state holds no private key of it (its public key was imported)" if entry is not None
           else "it is not managed by reconciler")
    ctx.problem(f"cannot {doing} server {server.name!r} ({server.id}): it is running with key "
                f"pair {holder!r}, and KPS needs that key pair's private key to change it; "
                f"{why}",
                "stop the server and plan again (a stopped server is reset, which needs no "
                f"key); or give the key to reconciler: manage {holder!r} so that state holds "
                "its private key (generate it, or let the cloud create it) and bind it first",
                at=at.location if at is not None else None)


def _warn_image(server: RemoteServer, ctx: Context, addr: Address) -> None:
    if not server.public_image:
        ctx.warnings.append(f"{addr}: server {server.name!r} runs a private image "
                            f"({server.image_type}); KPS binds key pairs to servers of public "
                            "images only and will refuse this (KPS.0102)")


def _decide(group: Address, declared: Declared | None, prior: StateKeyPair | None,
            ctx: Context) -> Decided:
    out = Decided()
    snapshot = ctx.snapshots.get(group.target)
    servers = snapshot.servers if snapshot is not None else None
    if servers is None:
        ctx.problem(f"the servers of target {group.target} were not read, so the bindings of "
                    f"key pair {group.name!r} cannot be planned",
                    "plan again; a saved plan does not carry bindings: run `reconciler apply` "
                    "without a plan file")
        return out
    name = group.name
    entry = prior if prior is not None else ctx.entries.get(keypair_of(group))
    cloud = entry.cloud_name if entry is not None else name  # a generation: NAME-gN
    old = entry.deposed.cloud_name if entry is not None and entry.deposed else None
    by_id = {s.id: s for s in servers}
    mode = ctx.options.mode
    wanted = _resolve(declared.refs, servers, ctx, group) if declared is not None \
        and mode is Mode.NORMAL else {}
    recorded = set(prior.servers) if prior is not None else set()
    for sid in sorted(set(wanted) | recorded):
        addr = binding_address(group, sid)
        server = by_id.get(sid)
        now = server.key_name if server is not None else None
        before = {**_attrs(name, server, sid, now), **_held(ctx, group.target, now)}
        if sid in recorded and now != cloud and (old is None or now != old):
            out.drift.append(Drift(addr.name, DriftKind.DELETED if server is None
                                   else DriftKind.CHANGED,
                                   _attrs(name, server, sid, cloud),
                                   None if server is None else before, at=addr))
        if mode is Mode.REFRESH_ONLY:
            continue
        if sid not in wanted:
            if now is not None and now in (cloud, old) and server is not None:
                if server.running:
                    _auth_problem(server, now, "unbind", ctx, group, None)
                out.changes.append(Change(addr.name, Action.DELETE, before=before,
                                          after=None, at=addr, prior=prior,
                                          notes=(f"unbind: server {server.name!r} is no longer "
                                                 f"listed for key pair {name!r}",)))
            else:
                gone = ("is gone" if server is None else
                        "no longer holds it" if now is None else f"holds {now!r} now")
                out.changes.append(Change(addr.name, Action.DELETE, before=before, after=None,
                                          at=addr, prior=prior,
                                          notes=(f"the server {gone}: apply only drops the "
                                                 "binding from state",)))
            continue
        assert server is not None  # resolved against the list
        after = _attrs(name, server, sid, cloud)
        if now == cloud:
            if sid not in recorded:
                out.changes.append(Change(addr.name, Action.IMPORT, before=before,
                                          after=after, at=addr, prior=prior,
                                          notes=("already bound in the cloud: state records "
                                                 "it",)))
            else:
                out.changes.append(Change(addr.name, Action.NOOP, before=before, after=after,
                                          at=addr, prior=prior))
            continue
        _warn_image(server, ctx, addr)
        if now is None:
            how = "running: KPS replaces its key over SSH" if server.running \
                else "stopped: KPS resets it"
            out.changes.append(Change(addr.name, Action.CREATE, after=after, at=addr,
                                      prior=prior, before=None,
                                      notes=(f"bind key pair {name!r} to server "
                                             f"{server.name!r} ({how})",)))
            continue
        if server.running:
            _auth_problem(server, now, "rebind", ctx, group, wanted[sid])
        how = (f"running: authorised by the private key of {now!r} from state"
               if server.running else "stopped: KPS resets it, no key needed")
        out.changes.append(Change(addr.name, Action.UPDATE, before=before, after=after,
                                  at=addr, prior=prior,
                                  notes=(f"rebind server {server.name!r} from {now!r} to "
                                         f"{cloud!r} ({how})",)))
    return out


def _rotated(changes: Sequence[Change], ctx: Context) -> list[Change]:
    """In a plan that rotates a key pair without a gap, every server bound to its current
    generation is rebound to the new one, authorised by the old private key (deposed by
    then); binds and rebinds of other servers go to the new generation too."""
    rotations = {c.address: (c, r) for c in changes if c.address.kind == KEYPAIR
                 and (r := rotation_of(c)) is not None}
    if not rotations:
        return list(changes)
    leaving = {(a.target, r[0]): a.name for a, (_, r) in rotations.items()}
    out = []
    for c in changes:
        found = rotations.get(keypair_of(c.address)) if c.address.kind == BINDING else None
        if c.address.kind == BINDING and c.action is Action.UPDATE:
            c = _leaves_rotated(c, leaving)
        if found is None or c.action not in (Action.NOOP, Action.IMPORT, Action.CREATE,
                                             Action.UPDATE):
            out.append(c)
            continue
        keypair, (old, new) = found
        before = dict(c.before) if c.before else None
        after = {**(c.after or {}), "key_name": new}
        if before is None or before.get("key_name") != old:
            out.append(replace(c, after=after, notes=tuple(
                n.replace(repr(old), repr(new)) for n in c.notes)))
            continue
        running = after.get("status") == "ACTIVE"
        prior = keypair.prior
        if running and (prior is None or prior.private_key is None):
            ctx.problem(f"cannot rotate {keypair.address} without a gap: server "
                        f"{after.get('server')!r} ({after.get('server_id')}) is running with "
                        f"it, and KPS needs its private key to rebind it; state holds none "
                        "(its public key was imported)",
                        "stop the server and plan again (a stopped server is reset, which "
                        "needs no key); or unbind it first", keypair.desired)
        before.update({"held_by": keypair.name, "held_by_deposed": True})
        how = (f"running: authorised by the private key of {old!r} from state" if running
               else "stopped: KPS resets it")
        out.append(replace(c, action=Action.UPDATE, before=before, after=after,
                           notes=(f"rotation: rebind server {after.get('server')!r} from "
                                  f"{old!r} to {new!r} ({how})",)))
    return out


def _leaves_rotated(change: Change, leaving: dict[tuple[str, str], str]) -> Change:
    """A server another key pair takes from one this plan rotates: it leaves the generation
    that becomes the deposed one, so its rebind comes before that generation's delete, not
    before the rotation (which would wait on it: two key pairs trading servers)."""
    before = change.before or {}
    owner = leaving.get((change.address.target, str(before.get("key_name"))))
    if owner is None or before.get("held_by"):
        return change
    return replace(change, before={**before, "held_by": owner, "held_by_deposed": True})


def _handed_over(changes: Sequence[Change]) -> list[Change]:
    """A server one key pair lets go of and another takes in the same plan is rebound (one
    task), not unbound first: the letting go only drops the binding from state."""
    taken = {(c.address.target, (c.after or {}).get("server_id")) for c in changes
             if c.address.kind == BINDING and c.action is Action.UPDATE}
    out = []
    for c in changes:
        before = c.before or {}
        if c.address.kind == BINDING and c.action is Action.DELETE \
                and (c.address.target, before.get("server_id")) in taken:
            c = replace(c, before={**before, "rebound": True},
                        notes=("rebound to another key pair in this plan: apply only drops "
                               "this binding from state",))
        out.append(c)
    return out


class BindingKind(KindDefaults):
    """Bindings: declared by key pairs' ``servers:``, read from each target's ECS list. A
    refresh-only apply records key pairs only: bindings follow at the next apply."""

    name = BINDING
    section = "keypairs"  # declared inside key pairs
    schema_definition = "keypair"

    def desired(self, manifest: Manifest, run: Addressing) -> Mapping[Address, Declared]:
        out: dict[Address, Declared] = {}
        for kp in manifest.keypairs:
            for target, refs in kp.servers:
                out[Address(target, BINDING, kp.name, qualified=run.qualified)] = \
                    Declared(kp, refs)
        return out

    def recorded(self, entries: Mapping[Address, StateKeyPair]
                 ) -> Mapping[Address, StateKeyPair]:
        return {Address(a.target, BINDING, a.name, qualified=a.qualified): e
                for a, e in entries.items() if a.kind == KEYPAIR and e.servers}

    def remote(self, snapshots: Mapping[str, RemoteSnapshot],
               run: Addressing) -> Mapping[Address, Any]:
        return {}  # the servers come with each target's snapshot (Context.snapshots)

    def decide(self, addr: Address, desired: Any, recorded: Any, remote: Any,
               ctx: Context) -> Decided:
        return _decide(addr, desired, recorded, ctx)

    def forget_target(self, recorded: Any, addr: Address) -> Change:
        # the key pair's entry, bindings included, leaves state with the key pair's FORGET
        return Change(addr.name, Action.NOOP, at=addr)

    def owner(self, addr: Address, desired: Any, recorded: Any) -> Address | None:
        return keypair_of(addr)

    def depends_on(self, change: Change) -> tuple[Address, ...]:
        if change.action in (Action.CREATE, Action.UPDATE, Action.IMPORT):
            return (keypair_of(change.address),)
        return ()

    def precedes(self, change: Change) -> tuple[Address, ...]:
        """An unbind before its key pair's delete; a rebind before the delete of the key
        pair the server leaves."""
        before = change.before or {}
        holder = before.get("key_name")
        if change.action not in (Action.DELETE, Action.UPDATE) or not isinstance(holder, str):
            return ()
        owner = str(before.get("held_by") or holder)
        if before.get("held_by_deposed"):  # the previous generation: deleted after this
            return (Address(change.address.target, DEPOSED, owner),)
        return (Address(change.address.target, KEYPAIR, owner),)

    def review(self, changes: Sequence[Change], ctx: Context) -> list[Change]:
        return review_dependents(_handed_over(_rotated(changes, ctx)), ctx,
                                 binding_kind=BINDING)

    def applier(self, *, api: KeyPairApi, store: StateStore, hooks: Hooks,
                now: Callable[[], datetime], generate: Callable[..., Any] | None,
                target: str, bindings: Any = None) -> BindingApplier:
        return BindingApplier(clients=bindings, store=store, hooks=hooks, target=target)



KIND = BindingKind()
