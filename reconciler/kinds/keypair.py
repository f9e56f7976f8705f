"""The key pair kind: its planning rules (every row of DESIGN §4's plan table) and how its
changes are carried out (``reconciler.kinds.keypair_apply``).

May import: ``reconciler.kinds.base``, ``reconciler.kinds.keypair_apply``,
``reconciler.changes``, ``reconciler.model``, ``reconciler.address``, ``reconciler.errors``,
``reconciler.attributes``, ``reconciler.duration``, ``reconciler.targets``, ``reconciler.keys``,
``reconciler.api.protocol``, ``reconciler.state.protocol``, ``reconciler.capabilities``,
``reconciler.kinds.keypair_custody``, ``reconciler.adoption``, ``reconciler.kinds.generations``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from reconciler import adoption, keys
from reconciler.address import KEYPAIR, Address, Addressing
from reconciler.api.protocol import KeyPairApi
from reconciler.attributes import (
    desired_attributes,
    import_fingerprint,
    recorded_attributes,
    remote_attributes,
    replacing_fields,
)
from reconciler.capabilities import capabilities
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
    Hooks,
    Mode,
    Plan,
)
from reconciler.duration import describe_duration
from reconciler.kinds import keypair_custody as custody
from reconciler.kinds.base import Context, Decided, KindDefaults
from reconciler.kinds.generations import generation_taken, next_generation
from reconciler.kinds.keypair_apply import (
    KeyPairApplier,
    check_before_acting,
    check_state_key,
    sha256_of,
)
from reconciler.model import (
    DesiredKeyPair,
    EntryStatus,
    KeySource,
    Manifest,
    RemoteKeyPair,
    RemoteSnapshot,
    SourceLocation,
    StateKeyPair,
    generation_name,
)
from reconciler.state.protocol import StateStore
from reconciler.targets import desired_by_address, remote_by_address


def _age_seconds(created: str, now: datetime) -> float | None:
    try:
        then = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (now - then).total_seconds()


def _drift_for(prior: StateKeyPair, remote: RemoteKeyPair | None) -> Drift | None:
    if prior.status is EntryStatus.PENDING:
        return None  # never confirmed in the cloud: not drift, an interrupted apply
    if remote is None:
        return Drift(prior.name, DriftKind.DELETED, recorded_attributes(prior), None)
    if remote.fingerprint != prior.fingerprint_md5:
        return Drift(prior.name, DriftKind.CHANGED, recorded_attributes(prior),
                     remote_attributes(remote))
    if custody.drifted(prior, remote):
        return Drift(prior.name, DriftKind.CUSTODY, recorded_attributes(prior),
                     {**remote_attributes(remote),
                      "key_protection": custody.actual(prior, remote)})
    return None


def _new(d: DesiredKeyPair, remote: RemoteKeyPair | None, ctx: Context) -> Change:
    """Desired, not in state."""
    other = ctx.holder(ctx.here.target, d.name)
    if other is not None:  # NAME-gN of a key pair rotated without a gap: never a key of its own
        ctx.problem(*generation_taken(d.name, other, ctx.here), d)
        return Change(d.name, Action.NOOP, desired=d, remote=remote)
    after = desired_attributes(d)
    unknown = _unknown(after)
    listed = ctx.importing.get(ctx.here)
    if listed is not None:
        return _listed_import(d, remote, ctx, listed=listed)
    if remote is None:
        return Change(d.name, Action.CREATE, after=after, after_unknown=unknown, desired=d)
    if d.source is KeySource.IMPORT and import_fingerprint(d) == remote.fingerprint:
        return _adoption(d, remote, ctx, ("already in the cloud with the same public key",))
    ctx.problem(*_unmanaged_advice(d), d)
    return Change(d.name, Action.NOOP, desired=d, remote=remote)


def _listed_import(d: DesiredKeyPair, remote: RemoteKeyPair | None, ctx: Context, *,
                   listed: SourceLocation) -> Change:
    """Desired, not in state, and named by an ``import:`` list: adopted as the cloud holds
    it (no write to the cloud), as ``reconciler import`` adopts it. Never a create: an entry
    for a key pair the cloud does not hold is a mistake the plan reports."""
    if remote is None:
        where = f" in target {ctx.here.target}" if ctx.here.qualified else ""
        ctx.problem(f"{ctx.here} is listed for import, but the cloud holds no key pair "
                    f"{d.name!r}{where}",
                    "check the name" + (" and the target (an address such as "
                                        f"{ctx.here.display(qualified=True)} names one)"
                                        if where else "")
                    + "; to have apply create it instead, drop the import entry", at=listed)
        return Change(d.name, Action.NOOP, desired=d)
    if d.source is KeySource.IMPORT and import_fingerprint(d) != remote.fingerprint:
        ctx.problem(f"{ctx.here} is listed for import at {listed}, but the cloud holds a "
                    "different public key than the manifest declares",
                    "an import adopts the key pair the manifest describes: put the cloud's "
                    "public key in the manifest (`reconciler import --all --dry-run "
                    "--generate-config-out FILE` writes it), or drop the import entry and "
                    "rename the key pair", d)
        return Change(d.name, Action.NOOP, desired=d, remote=remote)
    notes = [f"listed for import at {listed}"]
    if d.source is not KeySource.IMPORT:
        notes.append("its private key is not in state: reconciler adopts the key pair as the "
                     "cloud holds it")
    return _adoption(d, remote, ctx, tuple(notes), listed=listed)


def _adoption(d: DesiredKeyPair, remote: RemoteKeyPair, ctx: Context, notes: tuple[str, ...],
              *, listed: SourceLocation | None = None) -> Change:
    """An unmanaged key pair the cloud holds, adopted under its declaration: refused (a
    problem at the declaration) where the cloud's scope or custody differs and cannot be
    changed in place; an import with an update in place (``importing``) where apply will
    write its description or hand its private key over; a plain import otherwise."""
    refused = adoption.refusals(d, remote, api=ctx.api, shown=str(ctx.here),
                                how=f"reconciler import {ctx.here.label} --export-private-keys")
    for r in refused:
        via = f" (listed for import at {listed})" if listed is not None else ""
        ctx.problem(r.summary + via, r.detail, d)
    if refused:
        return Change(d.name, Action.NOOP, desired=d, remote=remote)
    updates = adoption.in_place(d, remote, api=ctx.api)
    if not updates:
        return Change(d.name, Action.IMPORT, before=remote_attributes(remote),
                      after=desired_attributes(d), notes=notes, desired=d, remote=remote)
    # before: the key pair as apply first records it (the cloud's); after: once updated.
    cloud = remote_attributes(remote)
    after = {**desired_attributes(d), "public_key": cloud["public_key"],
             "fingerprint": cloud["fingerprint"], "private_key": None}
    kept = adoption.recorded_protection(d, remote)
    before = {**after, "description": remote.description or None,
              "key_protection": kept.as_dict() if kept is not None else None}
    if "key_protection" in updates:
        notes += ("apply hands its private key (from key_protection.private_key_file) to the "
                  "cloud's custody",)
    return Change(d.name, Action.UPDATE, before=before, after=after, notes=notes, desired=d,
                  remote=remote, importing=True)


def _unmanaged_advice(d: DesiredKeyPair) -> tuple[str, str]:
    """A key pair of that name exists, unmanaged, with another (or an unknowable) key: the
    ways out, each of which works as written."""
    elsewhere = ("or delete it in the cloud yourself (console or API) if nothing uses it, and "
                 "plan again: apply then creates it")
    if d.source is KeySource.IMPORT:
        return (f"key pair {d.name!r} already exists in the cloud and is not managed by "
                "reconciler; the cloud holds a different public key than the manifest declares",
                f"choose one: rename it in the manifest (the cloud's key pair is left alone); or "
                f"adopt it with `reconciler import {d.name}`, after which the plan replaces it "
                "with the declared key (delete, then import: whatever uses the cloud's key "
                f"loses it); {elsewhere}")
    return (f"key pair {d.name!r} already exists in the cloud and is not managed by "
            "reconciler",
            f"choose one: adopt it as it is with `reconciler import {d.name}` (its private key "
            f"stays out of state; `reconciler apply --replace {d.name}` afterwards makes a new "
            f"one that state holds); or rename it in the manifest; {elsewhere}")


def _pending(d: DesiredKeyPair, prior: StateKeyPair, remote: RemoteKeyPair | None,
             ctx: Context) -> Change:
    """Desired, and recorded by an apply that was interrupted before the cloud confirmed it."""
    after = desired_attributes(d)
    if (remote is None and prior.source is KeySource.GENERATE and prior.public_key
            and prior.private_key is not None and prior.spec_digest == d.spec_digest):
        # apply resumes with the key generated and stored before: its public half is known
        recorded = recorded_attributes(prior)
        after = {**after, "public_key": recorded["public_key"],
                 "fingerprint": recorded["fingerprint"]}
    common: dict[str, Any] = {"after": after, "after_unknown": _unknown(after), "desired": d,
                              "prior": prior, "remote": remote}
    if remote is None:
        kept = "" if prior.source is KeySource.CLOUD else " with the key already in state"
        return Change(d.name, Action.CREATE, notes=(f"resuming an interrupted apply{kept}",),
                      **common)
    before = recorded_attributes(prior)
    if prior.source is KeySource.CLOUD:  # its create was sent; the answer never arrived
        return Change(d.name, Action.REPLACE, before=before, reason=REASON_TAINTED,
                      notes=("an interrupted apply: the cloud created it but its private key "
                             "never arrived",), **common)
    if remote.fingerprint == prior.fingerprint_md5:
        return Change(d.name, Action.IMPORT, before=before, after=after, desired=d, prior=prior,
                      remote=remote, notes=("completing an interrupted apply",))
    ctx.problem(f"key pair {d.name!r} exists in the cloud with a key reconciler did not upload",
                f"run `reconciler state rm {d.name}` and then `reconciler import {d.name}`, or "
                "delete it in the cloud", d)
    return Change(d.name, Action.NOOP, desired=d, prior=prior, remote=remote)


def _replacement(d: DesiredKeyPair, prior: StateKeyPair, remote: RemoteKeyPair,
                 ctx: Context, work: custody.CustodyWork
                 ) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    """Why a managed key pair must be replaced: (reason, forcing fields, notes), or None.

    A change of custody alone (``work``) is made in place when reconciler holds the private
    key (``keypair_custody``); otherwise it forces the replacement, saying why."""
    if remote.fingerprint != prior.fingerprint_md5:
        return REASON_CANNOT_UPDATE, ("public_key",), ("its key was changed outside reconciler",)
    if prior.status is EntryStatus.TAINTED:
        return REASON_TAINTED, (), ("tainted: the cloud generated it but its private key never "
                                    "arrived",)
    if ctx.here in ctx.replacing:
        return REASON_BY_REQUEST, (), ("requested with --replace",)
    forcing = () if d.spec_digest == prior.spec_digest else replacing_fields(d, prior)
    if not forcing or forcing == ("key_protection",):
        if work.step is not None and work.blocked is not None:
            return REASON_CANNOT_UPDATE, ("key_protection",), work.blocked
        forcing = ()
    if forcing:
        return REASON_CANNOT_UPDATE, forcing, ()
    if d.rotate_after_seconds is not None and prior.deposed is None:
        # (while a rotation is under way its new generation is the rotation that was due: it
        # is finished first, and the next one is counted from that generation's creation)
        age = _age_seconds(prior.created, ctx.now)
        if age is not None and age >= d.rotate_after_seconds:
            return REASON_ROTATION, (), (f"rotation due: created {describe_duration(age)} "
                                         "ago, rotate_after is "
                                         f"{describe_duration(d.rotate_after_seconds)}",)
    return None


def _managed(d: DesiredKeyPair, prior: StateKeyPair, remote: RemoteKeyPair | None,
             ctx: Context) -> Change:
    """Desired, and recorded as in the cloud."""
    before = recorded_attributes(prior)
    if remote is None:
        after = desired_attributes(d)
        return Change(d.name, Action.CREATE, before=before, after=after,
                      after_unknown=_unknown(after), desired=d, prior=prior,
                      notes=("deleted outside reconciler; it will be created again",))
    work = _custody(d, prior, remote, ctx)
    why = _replacement(d, prior, remote, ctx, work)
    if why is not None:
        after = desired_attributes(d)
        reason, forcing, notes = why
        if prior.generation:
            after["cloud_name"] = prior.cloud_name
        if prior.deposed is not None and reason != REASON_TAINTED:
            ctx.problem(f"{ctx.here} is to be replaced while its rotation is under way (its "
                        f"previous generation {prior.deposed.cloud_name!r} is still in the "
                        "cloud)",
                        "run `reconciler apply` without --replace (and without the change "
                        "that forces the replacement) to finish the rotation first", d)
        rotated = _rotation(d, prior, ctx)
        if rotated is not None:
            before = {**before, "cloud_name": prior.cloud_name}
            after = {**after, "cloud_name": rotated[0], "generation": rotated[1]}
            notes += (f"rotated without a gap: {rotated[0]!r} is created first, every server "
                      f"bound to {prior.cloud_name!r} is rebound to it, and {prior.cloud_name!r}"
                      " is deleted only once none holds it",)
        if d.prevent_destroy:
            ctx.problem(f"{ctx.here} has prevent_destroy set, but the plan calls for it to "
                        f"be replaced ({'; '.join(notes) or 'changed: ' + ', '.join(forcing)})",
                        "to replace it, first set `prevent_destroy: false`; otherwise undo the "
                        "change that forces the replacement", d)
        if not any("--from-cloud" in n for n in notes):
            notes += _cloud_copy(prior, remote, ctx, what="the replacement")
        return Change(d.name, Action.REPLACE, before=before, after=after,
                      after_unknown=_unknown(after), replace_paths=forcing, reason=reason,
                      notes=notes, desired=d, prior=prior, remote=remote)
    changed: dict[str, Any] = {}
    said: tuple[str, ...] = ()
    if work.step is not None:  # not blocked: that would have replaced it
        before = {**before, "key_protection": work.before}
        changed["key_protection"] = work.after
        said = (work.note,)
    # Descriptions exist only in kps; after a switch of API they are not compared.
    if capabilities(ctx.api).descriptions and \
            (d.description or None) != (prior.description or None):
        changed["description"] = d.description
    if changed:
        return Change(d.name, Action.UPDATE, before=before, after={**before, **changed},
                      notes=said, desired=d, prior=prior, remote=remote)
    return Change(d.name, Action.NOOP, before=before, after=before, desired=d, prior=prior,
                  remote=remote, at=ctx.here)  # made at its address: plan keeps it as is


def _rotation(d: DesiredKeyPair, prior: StateKeyPair, ctx: Context
              ) -> tuple[str, int] | None:
    """The new generation's name and number when a replacement of this key pair is a
    rotation without a gap: it is bound (its manifest lists servers in this target, or state
    records bindings), the servers were read, and no rotation is under way."""
    target = ctx.here.target
    declared = any(t == target and refs for t, refs in d.servers)
    snapshot = ctx.snapshots.get(target)
    if not (declared or prior.servers) or snapshot is None or snapshot.servers is None \
            or prior.deposed is not None or prior.status is not EntryStatus.READY:
        return None
    listed = snapshot.keypairs

    def taken(name: str) -> bool:
        """In the cloud, declared, or a name a managed key pair has or had here."""
        at = Address(target, KEYPAIR, name)
        return name in listed or at in ctx.declared or at in ctx.entries \
            or ctx.holder(target, name) is not None

    n = next_generation(prior, taken)
    if n is None:
        return None
    return generation_name(prior.name, n), n


def _cloud_copy(prior: StateKeyPair, remote: RemoteKeyPair, ctx: Context, *,
                what: str) -> tuple[str, ...]:
    """The cloud keeps a private key state does not hold (adopted without it, or re-keyed
    outside reconciler): the notes saying that ``what`` deletes it, and how to keep it."""
    if not remote.key_protection:
        return ()
    rekeyed = remote.fingerprint != prior.fingerprint_md5
    if prior.private_key is not None and not rekeyed:
        return ()
    whose = ("the private key of the key pair it holds now" if prior.private_key is not None
             else "its private key")
    return (f"the cloud keeps {whose}, which state does not hold: {what} deletes it",
            f"to keep it, first: reconciler output {ctx.here.label} --private-key "
            "--from-cloud --out FILE")


def _custody(d: DesiredKeyPair, prior: StateKeyPair, remote: RemoteKeyPair | None,
             ctx: Context) -> custody.CustodyWork:
    if custody.none_anywhere(d, prior, remote):
        return custody.NO_WORK  # most key pairs: no label made for a message never shown
    return custody.custody_work(d, prior, remote, api=ctx.api, shown=ctx.here.label)


def _unknown(after: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(k for k in ("public_key", "fingerprint", "private_key") if k not in after)


def _undesired(prior: StateKeyPair, remote: RemoteKeyPair | None, *, protected: bool,
               mode: Mode, ctx: Context) -> Change | None:
    """In state, not desired (or destroying): delete it, or only forget it if already gone."""
    if remote is None:
        return None
    if protected:
        ctx.problem(f"{ctx.here} has prevent_destroy set, but the plan calls for it "
                    "to be destroyed",
                    "to delete it, first set `prevent_destroy: false` in its manifest and "
                    "apply; or keep it in the manifests")
    reason = REASON_NO_CONFIG if mode is Mode.NORMAL else None
    return Change(prior.name, Action.DELETE, before=recorded_attributes(prior), reason=reason,
                  notes=_cloud_copy(prior, remote, ctx, what="the delete"), prior=prior,
                  remote=remote)


def _forgotten(prior: StateKeyPair) -> Change:
    """Gone from the cloud, and state holds its private key: dropping the entry loses the key,
    so it is a change of its own, never quiet state-only work."""
    return Change(prior.name, Action.FORGET, before=recorded_attributes(prior),
                  reason=REASON_GONE, prior=prior,
                  notes=("gone from the cloud; state holds its private key, which apply "
                         "forgets",
                         f"to keep it, first: reconciler output {prior.name} --private-key "
                         "--out FILE"))


def _rekeyed(prior: StateKeyPair) -> Change:
    """Refresh-only, re-keyed in the cloud, and state holds the old private key: recording the
    cloud's key drops it (servers may still trust it), so that too is a counted change."""
    return Change(prior.name, Action.FORGET, before=recorded_attributes(prior),
                  reason=REASON_REKEYED, prior=prior,
                  notes=("changed outside reconciler; state will record the cloud's public "
                         "key and forget the private key it holds",
                         f"to keep it, first: reconciler output {prior.name} --private-key "
                         "--out FILE"))


def _target_forgotten(prior: StateKeyPair, at: Address) -> Change:
    """``--forget-target``: the entry leaves state; the cloud is not asked anything."""
    notes: tuple[str, ...] = ("its target is forgotten with --forget-target: it stays in the "
                              "cloud, unmanaged",)
    if prior.private_key is not None:
        notes += ("state holds its private key, which apply forgets; to keep it, first: "
                  f"reconciler output {at.display(qualified=True)} --private-key --out FILE",)
    return Change(prior.name, Action.FORGET, before=recorded_attributes(prior),
                  reason=REASON_TARGET_FORGOTTEN, prior=prior, at=at, notes=notes)


def _decide(addr: Address, d: DesiredKeyPair | None, prior: StateKeyPair | None,
            now_remote: RemoteKeyPair | None, ctx: Context) -> Decided:
    """Every row of the plan table for one address."""
    out = Decided()
    mode = ctx.options.mode
    dr = _drift_for(prior, now_remote) if prior is not None else None
    if dr is not None:
        out.drift.append(dr)
    if mode is Mode.REFRESH_ONLY:
        if prior is not None and dr is not None and dr.kind is DriftKind.DELETED \
                and _old_generation_left(prior, ctx):
            assert prior.deposed is not None
            ctx.warnings.append(
                f"{addr}: its new generation {prior.cloud_name!r} was deleted outside "
                f"reconciler while its rotation was under way; state keeps the entry, with "
                f"the private key of its previous generation {prior.deposed.cloud_name!r}, "
                "which is still in the cloud and which servers may hold: `reconciler apply` "
                "makes the new generation again and finishes the rotation")
            return out
        if prior is not None and prior.private_key is not None and dr is not None \
                and dr.kind is not DriftKind.CUSTODY:
            # apply_refresh drops the entry, or records the cloud's key without the old one
            out.changes.append(_forgotten(prior) if dr.kind is DriftKind.DELETED
                               else _rekeyed(prior))
        return out
    if d is not None and mode is Mode.NORMAL:
        if prior is None:
            out.changes.append(_new(d, now_remote, ctx))
        elif prior.status is EntryStatus.PENDING:
            out.changes.append(_pending(d, prior, now_remote, ctx))
        else:
            change = _managed(d, prior, now_remote, ctx)
            out.changes.append(change)
            if change.action is Action.NOOP and d.prevent_destroy != prior.prevent_destroy:
                out.lifecycle.append((addr, d.prevent_destroy))
    elif prior is not None:
        protected = prior.prevent_destroy or (d is not None and d.prevent_destroy)
        gone = _undesired(prior, now_remote, protected=protected, mode=mode, ctx=ctx)
        if gone is not None:
            out.changes.append(gone)
        elif prior.private_key is not None:
            out.changes.append(_forgotten(prior))
        else:
            out.forget.append(addr)
    return out


def _old_generation_left(prior: StateKeyPair, ctx: Context) -> bool:
    """A rotation is under way and its previous generation is still in the cloud: the entry
    holds the private key of a key pair that servers may hold, whatever became of the new
    one."""
    snapshot = ctx.snapshots.get(ctx.here.target)
    return prior.deposed is not None and snapshot is not None \
        and prior.deposed.cloud_name in snapshot.keypairs


def _record_custody(store: StateStore, prior: StateKeyPair, remote: RemoteKeyPair,
                    at: Address) -> str:
    """Refresh-only: custody cleared in the cloud is recorded; custody added there is not (no
    answer says how it is encrypted, and state records only what it knows)."""
    if remote.key_protection:
        return (f"{at}: the cloud keeps its private key now (added outside reconciler); state "
                "cannot record how it is encrypted: declare key_protection in the manifest "
                "and apply")
    store.record(replace(prior, key_protection=None))
    return f"{at}: the cloud no longer keeps its private key; state now records no custody"


class KeyPairKind(KindDefaults):
    """Key pairs: declared in ``keypairs:``, listed by each target's key pair API."""

    name = KEYPAIR
    section = "keypairs"
    schema_definition = "keypair"

    def desired(self, manifest: Manifest, run: Addressing) -> Mapping[Address, DesiredKeyPair]:
        return desired_by_address(manifest, run)

    def recorded(self, entries: Mapping[Address, StateKeyPair]
                 ) -> Mapping[Address, StateKeyPair]:
        return {a: e for a, e in entries.items() if a.kind == KEYPAIR}

    def remote(self, snapshots: Mapping[str, RemoteSnapshot],
               run: Addressing) -> Mapping[Address, RemoteKeyPair]:
        return remote_by_address(snapshots, run)

    def decide(self, addr: Address, desired: Any, recorded: Any, remote: Any,
               ctx: Context) -> Decided:
        if recorded is not None and recorded.generation:  # the cloud calls it NAME-gN
            snapshot = ctx.snapshots.get(addr.target)
            remote = snapshot.keypairs.get(recorded.cloud_name) if snapshot else None
        return _decide(addr, desired, recorded, remote, ctx)

    def forget_target(self, recorded: Any, addr: Address) -> Change:
        return _target_forgotten(recorded, addr)

    def preflight(self, plan: Plan, held: Mapping[Address, StateKeyPair],
                  store: StateStore) -> None:
        own = replace(plan, changes=tuple(c for c in plan.changes if c.address.kind == KEYPAIR))
        check_before_acting(own, held)
        check_state_key(own, store)

    def applier(self, *, api: KeyPairApi, store: StateStore, hooks: Hooks,
                now: Callable[[], datetime], generate: Callable[..., Any] | None,
                target: str, bindings: Any = None) -> KeyPairApplier:
        return KeyPairApplier(api=api, store=store, hooks=hooks, now=now,
                              generate=generate or keys.generate_keypair, target=target)

    def record_lifecycle(self, store: StateStore, prior: StateKeyPair, protect: bool) -> None:
        store.record(replace(prior, prevent_destroy=protect))

    def record_drift(self, store: StateStore, drift: Drift, prior: StateKeyPair,
                     remote: RemoteSnapshot) -> str | None:
        at = drift.address
        now_remote = remote.keypairs.get(prior.cloud_name)
        if drift.kind is DriftKind.CUSTODY and now_remote is not None:
            return _record_custody(store, prior, now_remote, at)
        if now_remote is None:
            if prior.deposed is not None and prior.deposed.cloud_name in remote.keypairs:
                return None  # kept: servers may hold the previous generation (the plan said)
            store.forget(at.name, target=at.target)
            return f"{at}: deleted outside reconciler; dropped from state"
        store.record(replace(
            prior, public_key=now_remote.public_key.strip(),
            fingerprint_md5=now_remote.fingerprint,
            fingerprint_sha256=sha256_of(now_remote.public_key, prior.type),
            private_key=None))
        return (f"{at}: changed outside reconciler; state now records the cloud's key (the "
                "previous private key is kept in the backup)")


KIND = KeyPairKind()
