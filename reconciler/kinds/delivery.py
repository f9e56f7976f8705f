"""The delivery kind: a key pair's private key delivered to one sink (a CSMS secret, an age
file), planned as its own address, ``delivery.KEYPAIR["csms:SECRET"]`` or
``delivery.KEYPAIR["age_file:PATH"]`` (with the target after it when a run has several:
``delivery.web["csms:web-ssh"]["prod"]``). The address's target is where the sink lives: a
CSMS secret's target (by default the key pair's), the key pair's for an age file.

State records each delivery on its key pair's entry (``DeliveryRecord``: the CSMS version or
the file's digest, the key's fingerprint, the time), never the key. Refresh reads what each
sink holds now (``SinkReading``: the ``SYSCURRENT`` version id, never its value; the file's
digest), so that a plan needs no secret: a sink is in sync while it holds what reconciler
recorded delivering there, and its key pair still holds the key delivered. Otherwise:

| what | plan |
|---|---|
| declared, never delivered | create |
| the secret deleted, the file gone | drift (deleted), create: delivered again |
| another current version, another file | drift (changed), update: delivered again |
| the key pair's key changed (created, replaced, rotated) | update: the new key delivered |
| an age file's recipients changed | update |
| no longer declared (or destroy) | delete: the secret's deletion scheduled, the file removed |

A new key goes to CSMS as a new version (``SYSCURRENT``); the one before stays as
``SYSPREVIOUS``, so a consumer reading the previous stage keeps working until the old key pair
is gone. Deliveries run after their key pair (``depends_on``): the key is durable in state
first, and a failed delivery leaves the key pair recorded; the next plan plans it again.

May import: ``reconciler.kinds.base``, ``reconciler.kinds.delivery_apply``,
``reconciler.changes``, ``reconciler.model``, ``reconciler.address``, ``reconciler.targets``,
``reconciler.api.protocol``, ``reconciler.state.protocol``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from reconciler.address import KEYPAIR, Address, Addressing
from reconciler.api.protocol import KeyPairApi
from reconciler.changes import (
    REASON_NO_CONFIG,
    Action,
    Change,
    Drift,
    DriftKind,
    Hooks,
    Mode,
    Plan,
)
from reconciler.kinds.base import Context, Decided, KindDefaults
from reconciler.kinds.delivery_apply import (
    DeliveryApplier,
    check_deliveries,
    delivery_name,
    keypair_of,
)
from reconciler.model import (
    AGE_FILE_SINK,
    CSMS_SINK,
    DeliveryRecord,
    DeliverySink,
    DesiredKeyPair,
    Manifest,
    RemoteSnapshot,
    SinkReading,
    StateKeyPair,
)
from reconciler.state.protocol import StateStore
from reconciler.targets import desired_by_address

DELIVERY = "delivery"


@dataclass(frozen=True, slots=True)
class Wanted:
    """A declared delivery: the key pair (its address), the sink, the key pair's record."""

    keypair: Address
    sink: DeliverySink
    desired: DesiredKeyPair


@dataclass(frozen=True, slots=True)
class Held:
    """A recorded delivery: on the entry of key pair ``keypair``."""

    keypair: Address
    entry: StateKeyPair
    record: DeliveryRecord


def wanted(manifest: Manifest, run: Addressing) -> dict[Address, Wanted]:
    """Every declared delivery by address (each key pair's sinks, in each of its targets)."""
    out: dict[Address, Wanted] = {}
    if not any(kp.deliver for kp in manifest.keypairs):
        return out  # most manifests: no address of every key pair made for nothing
    for kp_addr, d in desired_by_address(manifest, run).items():
        for sink in d.deliver:
            where = sink.target or kp_addr.target if sink.kind == CSMS_SINK else kp_addr.target
            addr = Address(where, DELIVERY, delivery_name(d.name, sink.id),
                           qualified=run.qualified)
            out[addr] = Wanted(kp_addr, sink, d)
    return out


def held(entries: Mapping[Address, StateKeyPair]) -> dict[Address, Held]:
    """Every recorded delivery by address."""
    out: dict[Address, Held] = {}
    for kp_addr, entry in entries.items():
        if kp_addr.kind != KEYPAIR:
            continue
        for record in entry.deliveries:
            addr = Address(record.target, DELIVERY, delivery_name(entry.name, record.sink),
                           qualified=kp_addr.qualified)
            out[addr] = Held(kp_addr, entry, record)
    return out


def _sink_attributes(sink: DeliverySink) -> dict[str, Any]:
    if sink.kind == CSMS_SINK:
        return {"sink": CSMS_SINK, "secret": sink.key, "kms_key_id": sink.kms_key_id}
    return {"sink": AGE_FILE_SINK, "path": sink.key, "recipients": list(sink.recipients)}


def _record_attributes(record: DeliveryRecord) -> dict[str, Any]:
    kind, _, key = record.sink.partition(":")
    out: dict[str, Any] = {"sink": kind}
    if kind == CSMS_SINK:
        out.update(secret=key, version_id=record.version_id)
        if record.kms_key_id:
            out["kms_key_id"] = record.kms_key_id
    else:
        out.update(path=key, recipients=list(record.recipients), digest=record.digest)
    return {**out, "fingerprint": record.fingerprint, "delivered": record.delivered}


def _where(keypair: Address, at: Address) -> dict[str, Any]:
    """Whose key: the key pair's name, and its target when the sink is in another one."""
    out: dict[str, Any] = {"key_pair": keypair.name}
    if keypair.target != at.target:
        out["key_pair_target"] = keypair.target
    return out


def _before(h: Held, at: Address) -> dict[str, Any]:
    return {**_where(h.keypair, at), **_record_attributes(h.record)}


def _after(w: Wanted, at: Address) -> dict[str, Any]:
    return {**_where(w.keypair, at), **_sink_attributes(w.sink)}


_DELIVERED_UNKNOWN = ("version_id", "fingerprint", "delivered")
_FILE_UNKNOWN = ("digest", "fingerprint", "delivered")


def _unknown(sink: DeliverySink) -> tuple[str, ...]:
    return _DELIVERED_UNKNOWN if sink.kind == CSMS_SINK else _FILE_UNKNOWN


def _drift(addr: Address, h: Held, now: SinkReading | None) -> Drift | None:
    """What the sink holds against what was delivered there; None while in sync (or not
    read: its target was not reached)."""
    if now is None:
        return None
    before = _before(h, addr)
    if not now.exists:
        return Drift(addr.name, DriftKind.DELETED, before, None)
    record = h.record
    if record.sink.startswith(f"{CSMS_SINK}:"):
        if now.version_id != record.version_id:
            return Drift(addr.name, DriftKind.CHANGED, before,
                         {**before, "version_id": now.version_id})
    elif now.digest != record.digest:
        return Drift(addr.name, DriftKind.CHANGED, before, {**before, "digest": now.digest})
    return None


def _csms_words(sink: DeliverySink) -> tuple[str, str]:
    if sink.kind == CSMS_SINK:
        return "the secret", "a new version"
    return "the file", "the file again"


def _decide(addr: Address, w: Wanted | None, h: Held | None, now: SinkReading | None,
            ctx: Context) -> Decided:
    out = Decided()
    drift = _drift(addr, h, now) if h is not None else None
    if drift is not None:
        out.drift.append(drift)
    mode = ctx.options.mode
    if mode is Mode.REFRESH_ONLY:
        return out
    if w is not None and mode is Mode.NORMAL:
        change = _wanted(addr, w, h, drift)
        if change.action is not Action.NOOP and now is not None and now.refusal is not None:
            # apply would refuse to write there, after making the key pair: fail the plan now
            ctx.problem(f"{addr} cannot be delivered: {w.sink.path} {now.refusal}",
                        "then plan again; apply changes nothing until the plan passes",
                        w.desired, at=w.sink.location)
        out.changes.append(change)
    elif h is not None:
        gone = now is not None and not now.exists
        notes = ("already gone from the sink; apply drops the record",) if gone else (
            ("apply schedules the secret's deletion (recoverable for 7 days)",)
            if h.record.sink.startswith(f"{CSMS_SINK}:") else
            ("apply removes the file if it is the one reconciler wrote",))
        out.changes.append(Change(addr.name, Action.DELETE, before=_before(h, addr),
                                  reason=REASON_NO_CONFIG if mode is Mode.NORMAL else None,
                                  notes=notes, prior=h.entry))
    return out


def _wanted(addr: Address, w: Wanted, h: Held | None, drift: Drift | None) -> Change:
    """Declared: deliver it, deliver it again, or nothing."""
    sink = w.sink
    if h is None:
        return Change(addr.name, Action.CREATE, after=_after(w, addr),
                      after_unknown=_unknown(sink), desired=w.desired,
                      notes=("apply delivers the key pair's private key after the key pair",))
    before = _before(h, addr)
    after = _after(w, addr)
    thing, again = _csms_words(sink)
    common: dict[str, Any] = {"before": before, "desired": w.desired, "prior": h.entry}
    if drift is not None and drift.kind is DriftKind.DELETED:
        return Change(addr.name, Action.CREATE, after=after, after_unknown=_unknown(sink),
                      notes=(f"{thing} was deleted outside reconciler; apply delivers the key "
                             "again",), **common)
    why: list[str] = []
    if drift is not None:
        why.append(f"{thing} no longer holds what reconciler delivered; apply delivers the key "
                   f"again as {again}")
    if h.entry.fingerprint_sha256 != h.record.fingerprint:
        why.append(f"the key pair's key changed since it was delivered; apply delivers the new "
                   f"key as {again}")
    if sink.kind == CSMS_SINK and sink.kms_key_id != h.record.kms_key_id:
        why.append(f"its KMS key changed ({h.record.kms_key_id or 'csms/default'} -> "
                   f"{sink.kms_key_id or 'csms/default'}); apply seals the secret's versions "
                   "from now on under it and delivers the key again as a new version (those "
                   "before stay under the key that sealed them)")
    if sink.kind == AGE_FILE_SINK and tuple(h.record.recipients) != sink.recipients:
        why.append("its recipients changed; apply encrypts the key to them again")
    if why:
        return Change(addr.name, Action.UPDATE, after=after, after_unknown=_unknown(sink),
                      notes=tuple(why), **common)
    return Change(addr.name, Action.NOOP, after=before, **common)


def follow(changes: Sequence[Change]) -> list[Change]:
    """A delivery in sync whose key pair gets a new key in this plan (created again,
    replaced, rotated) delivers that key: a new CSMS version, the file written again."""
    new_key = {c.address for c in changes
               if c.address.kind == KEYPAIR and c.action in (Action.CREATE, Action.REPLACE)}
    if not new_key:
        return list(changes)
    out = []
    for change in changes:
        if change.address.kind == DELIVERY and change.action is Action.NOOP \
                and keypair_of(change) in new_key:
            sink = (change.before or {}).get("sink")
            again = "a new version" if sink == CSMS_SINK else "the file again"
            change = replace(change, action=Action.UPDATE,
                             after={**(change.before or {})},
                             after_unknown=_DELIVERED_UNKNOWN if sink == CSMS_SINK
                             else _FILE_UNKNOWN,
                             notes=(f"its key pair gets a new key; apply delivers it as {again}"
                                    + ("; the one before stays as SYSPREVIOUS"
                                       if sink == CSMS_SINK else ""),))
        out.append(change)
    return out


class DeliveryKind(KindDefaults):
    """Deliveries: declared in a key pair's ``deliver:``, recorded on its state entry. They
    have no lifecycle of their own, and a refresh-only apply keeps their records: the next
    apply delivers again."""

    name = DELIVERY
    section = ""  # no list of its own: declared in each key pair's deliver:
    schema_definition = "sink"

    def desired(self, manifest: Manifest, run: Addressing) -> Mapping[Address, Wanted]:
        return wanted(manifest, run)

    def recorded(self, entries: Mapping[Address, StateKeyPair]) -> Mapping[Address, Held]:
        return held(entries)

    def remote(self, snapshots: Mapping[str, RemoteSnapshot],
               run: Addressing) -> Mapping[Address, SinkReading]:
        return {Address(target, DELIVERY, name, qualified=run.qualified): reading
                for target, snapshot in snapshots.items()
                for name, reading in snapshot.sinks.items()}

    def decide(self, addr: Address, desired: Any, recorded: Any, remote: Any,
               ctx: Context) -> Decided:
        return _decide(addr, desired, recorded, remote, ctx)

    def follow(self, changes: Sequence[Change]) -> list[Change]:
        return follow(changes)

    def review(self, changes: Sequence[Change], ctx: Context) -> list[Change]:
        """A delivery of a key pair that state holds without its private key (adopted from
        the cloud, the key left in the cloud's custody) and that this plan does not make
        again: nothing could be delivered, so the plan says what to do instead."""
        made = {c.address for c in changes if c.address.kind == KEYPAIR
                and c.action in (Action.CREATE, Action.REPLACE)}
        for change in changes:
            if change.address.kind != DELIVERY or change.action not in (Action.CREATE,
                                                                        Action.UPDATE):
                continue
            keypair = keypair_of(change)
            entry = ctx.entries.get(keypair)
            if keypair in made or entry is None or entry.private_key is not None:
                continue
            d = change.desired if isinstance(change.desired, DesiredKeyPair) else None
            ctx.problem(f"{change.address} cannot be delivered: state holds {keypair} without "
                        "its private key (it was adopted from the cloud)",
                        f"copy the private key into state (`reconciler import {keypair.name} "
                        "--export-private-keys` after `reconciler state rm "
                        f"{keypair.name}`, kps), or give it a new key (`reconciler apply "
                        f"--replace {keypair.name}`)", d)
        return list(changes)

    def forget_target(self, recorded: Any, addr: Address) -> Change:
        # the key pair's entry leaves state with its records; the sink is left as it is
        return Change(addr.name, Action.NOOP, before=_before(recorded, addr),
                      after=_before(recorded, addr), prior=recorded.entry, at=addr)

    def depends_on(self, change: Change) -> tuple[Address, ...]:
        return (keypair_of(change),)  # its key pair's change first, always

    def owner(self, addr: Address, desired: Any, recorded: Any) -> Address | None:
        held_or_wanted = desired if desired is not None else recorded
        return held_or_wanted.keypair if held_or_wanted is not None else None

    def preflight(self, plan: Plan, held: Mapping[Address, StateKeyPair],
                  store: StateStore) -> None:
        check_deliveries(plan)

    def applier(self, *, api: KeyPairApi, store: StateStore, hooks: Hooks,
                now: Callable[[], datetime], generate: Callable[..., Any] | None,
                target: str, bindings: Any = None) -> DeliveryApplier:
        return DeliveryApplier(api=api, store=store, hooks=hooks, now=now, target=target)



KIND = DeliveryKind()
