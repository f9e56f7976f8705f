"""Carrying out deliveries in one target: the private key from state to each sink, then the
record of what was delivered (never the key) on the key pair's entry.

A delivery runs after its key pair's change (``depends_on``), so the key it sends is the one
state holds now: it is read from the store's current entry, not from the plan. For CSMS, a
secret that does not exist is created (``kms_key_id`` when given); a secret scheduled for
deletion is restored; otherwise the key is added as a new version (``SYSCURRENT``; the one
before becomes ``SYSPREVIOUS``), unless the current version holds it already (an earlier
apply that was interrupted before recording it). A first delivery to a secret that exists
with another value and that reconciler did not create (its description) is refused: it is
someone else's. A write whose answer was lost is resolved by
reading the current version back. For an age file, the key is encrypted to the recipients and
the file replaced atomically. A delivery that fails is an outcome like any other: the key pair
stays recorded, and the next plan delivers again.

May import: ``reconciler.changes``, ``reconciler.model``, ``reconciler.errors``,
``reconciler.address``, ``reconciler.agefile``, ``reconciler.api.*``,
``reconciler.state.protocol``, ``reconciler.state.reserved``, ``reconciler.kinds.base``,
``reconciler.textsafe``.
"""

from __future__ import annotations

import contextlib
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from reconciler import agefile
from reconciler.address import KEYPAIR, Address
from reconciler.api.csms import CsmsClient
from reconciler.api.protocol import KeyPairApi
from reconciler.api.sinkhost import csms_for
from reconciler.changes import Action, Change, Hooks, Outcome, Plan
from reconciler.errors import ApplyError, OutcomeUnknownError, ReconcilerError
from reconciler.kinds.base import OneByOne
from reconciler.model import (
    AGE_FILE_SINK,
    CSMS_SINK,
    DeliveryRecord,
    DeliverySink,
    Secret,
    StateKeyPair,
)
from reconciler.state.protocol import StateStore
from reconciler.state.reserved import state_file_clash
from reconciler.textsafe import printable

DELETION_DAYS = 7  # a removed sink's secret stays recoverable this long
DESCRIPTION = "private key delivered by reconciler"  # the secrets reconciler creates
_PENDING = "the key pair is recorded in state; the delivery is pending and the next apply " \
           "delivers it again"
# Records of one entry are read, changed and written back under this lock: two deliveries of
# one key pair (to two sinks) may finish at once on two workers.
_RECORDING = threading.Lock()


def delivery_name(keypair: str, sink: str) -> str:
    """The name part of a delivery's address: ``web["csms:web-ssh"]``."""
    quoted = sink.replace("\\", "\\\\").replace('"', '\\"')
    return f'{keypair}["{quoted}"]'


def keypair_of(change: Change) -> Address:
    """The address of the key pair a delivery change delivers."""
    attrs = change.after or change.before or {}
    at = change.address
    target = attrs.get("key_pair_target") or at.target
    return Address(target, KEYPAIR, str(attrs["key_pair"]), qualified=at.qualified)


_keypair = keypair_of


def _sink(change: Change) -> DeliverySink:
    """The declared sink of a create or update (the change's key pair lists it)."""
    d = change.desired
    assert d is not None
    for sink in d.deliver:
        if delivery_name(d.name, sink.id) == change.name:
            return sink
    raise ApplyError(f"internal error: {change.address} is not declared by its key pair")


def _record(change: Change) -> DeliveryRecord | None:
    """What state recorded of the delivery being removed."""
    prior = change.prior
    if prior is None:
        return None
    for record in prior.deliveries:
        if delivery_name(prior.name, record.sink) == change.name \
                and record.target == change.address.target:
            return record
    return None


def check_deliveries(plan: Plan) -> None:
    """Before the first request: an age file can be written only with pyrage installed."""
    for change in plan.actionable:
        if change.address.kind == "delivery" and change.action is not Action.DELETE \
                and (change.after or {}).get("sink") == AGE_FILE_SINK:
            try:
                import pyrage  # noqa: F401
            except ImportError:
                raise ApplyError(f"{change.address} needs pyrage to write the age file, and it "
                                 "is not installed: pip install 'pyrage>=1.2.1'. Nothing was "
                                 "changed") from None
            return


@dataclass
class DeliveryApplier(OneByOne):
    """Carries out the deliveries whose sinks are in one target."""

    api: KeyPairApi
    store: StateStore
    hooks: Hooks
    now: Callable[[], datetime]
    target: str
    _csms: CsmsClient | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def run(self, change: Change) -> Outcome:
        start = time.monotonic()
        try:
            if change.action is Action.DELETE:
                self.hooks.pre_apply(change, "delete")
                self._remove(change)
            else:
                self.hooks.pre_apply(change, "create" if change.action is Action.CREATE
                                     else "update")
                self._deliver(change)
        except ReconcilerError as exc:
            error = str(exc) if change.action is Action.DELETE else f"{exc}; {_PENDING}"
            return Outcome(change.name, change.action, False, time.monotonic() - start, error,
                           at=change.at)
        return Outcome(change.name, change.action, True, time.monotonic() - start,
                       at=change.at)

    # -- sinks ---------------------------------------------------------------------------
    def _client(self) -> CsmsClient:
        with self._lock:
            if self._csms is None:
                self._csms = csms_for(self.api)
            return self._csms

    def _key(self, change: Change) -> tuple[StateKeyPair, Secret]:
        """The key pair's entry as state holds it now, and its private key."""
        kp = _keypair(change)
        entry = self.store.held(kp.name, target=kp.target)
        if entry is None or entry.private_key is None:
            raise ApplyError(f"{change.address}: state holds no private key for key pair "
                             f"{kp.name!r}, so there is nothing to deliver (did its change "
                             "fail?)")
        return entry, self.store.unseal(entry.name, entry.private_key, target=kp.target)

    def _deliver(self, change: Change) -> None:
        sink = _sink(change)
        entry, secret = self._key(change)
        stamp = self.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        if sink.kind == CSMS_SINK:
            version = self._to_csms(sink, secret, first=change.action is Action.CREATE,
                                    held=_record(change))
            record = DeliveryRecord(sink=sink.id, target=self.target,
                                    fingerprint=entry.fingerprint_sha256, delivered=stamp,
                                    version_id=version, kms_key_id=sink.kms_key_id)
        else:
            assert sink.path is not None
            clash = state_file_clash(Path(sink.path), self.store, environ={})
            if clash is not None:  # the key file is refused by write: not an age file
                raise ApplyError(f"{printable(sink.path)} is {clash}: a private key is never "
                                 "delivered there. Nothing was written; give the sink another "
                                 "path")
            data = agefile.encrypt(secret, sink.recipients)
            agefile.write(sink.path, data, shown=str(change.address))
            record = DeliveryRecord(sink=sink.id, target=self.target,
                                    fingerprint=entry.fingerprint_sha256, delivered=stamp,
                                    digest=agefile.digest(data), path=sink.path,
                                    recipients=sink.recipients)
        self._keep(change, record)

    def _to_csms(self, sink: DeliverySink, secret: Secret, *, first: bool,
                 held: DeliveryRecord | None) -> str:
        """The version of secret ``sink.key`` that holds ``secret`` now, written if need be.
        ``first``: no delivery to it is recorded, so an existing secret that reconciler did
        not create (another value, another description) is someone else's, left alone.
        A KMS key other than the one recorded (``held``) is set on the secret first, and the
        key is written again as a new version, sealed under it."""
        csms, name = self._client(), sink.key
        info = csms.get_secret(name)
        if info is None:
            with contextlib.suppress(OutcomeUnknownError):  # read back below: did it act?
                csms.create_secret(name, secret, kms_key_id=sink.kms_key_id,
                                   description=DESCRIPTION)
            return self._current_is(csms, name, secret, wrote="create the secret")
        if info.state == "PENDING_DELETE":
            csms.restore(name)
        rekeyed = held is not None and sink.kms_key_id != held.kms_key_id
        if rekeyed and not (sink.kms_key_id and info.kms_key_id == sink.kms_key_id):
            info = csms.set_kms_key(name, sink.kms_key_id)
        current = csms.current(name)
        if current is not None and _same(current.value, secret) and not (
                rekeyed and current.kms_key_id != info.kms_key_id):
            return current.version_id  # delivered already (an interrupted apply)
        if first and info.state != "PENDING_DELETE" and info.description != DESCRIPTION:
            raise ApplyError(f"CSMS secret {name} exists already, holds another value and was "
                             "not created by reconciler: it is left alone, so that whoever "
                             "reads it keeps their value. Choose another secret name, or "
                             "delete that secret in CSMS if nothing uses it, and apply again")
        try:
            return csms.put_version(name, secret).version_id
        except OutcomeUnknownError:
            return self._current_is(csms, name, secret, wrote="add the version")

    @staticmethod
    def _current_is(csms: CsmsClient, name: str, secret: Secret, *, wrote: str) -> str:
        current = csms.current(name)
        if current is None or not _same(current.value, secret):
            raise ApplyError(f"the answer to the request to {wrote} of CSMS secret {name} was "
                             "lost, and its current version does not hold the key")
        return current.version_id

    def _remove(self, change: Change) -> None:
        record = _record(change)
        if record is not None:
            kind, _, key = record.sink.partition(":")
            if kind == CSMS_SINK:
                csms = self._client()
                info = csms.get_secret(key)
                if info is not None and info.state != "PENDING_DELETE":
                    csms.schedule_deletion(key, days=DELETION_DAYS)
            elif record.path is not None:
                agefile.remove(record.path, expected=record.digest)
        self._keep(change, None, drop=record)

    # -- state ---------------------------------------------------------------------------
    def _keep(self, change: Change, record: DeliveryRecord | None, *,
              drop: DeliveryRecord | None = None) -> None:
        """Record ``record`` on the key pair's entry as it is now (replacing the record of
        the same sink); ``drop``: remove that one. Nothing when the entry is gone."""
        kp = _keypair(change)
        sink = record.sink if record is not None else drop.sink if drop is not None else None
        with _RECORDING:
            entry = self.store.held(kp.name, target=kp.target)
            if entry is None or sink is None:
                return
            kept = tuple(r for r in entry.deliveries
                         if not (r.sink == sink and r.target == self.target))
            self.store.record(replace(entry, deliveries=kept + ((record,) if record else ())))


def _same(a: Secret, b: Secret) -> bool:
    return hmac.compare_digest(a.reveal().encode(), b.reveal().encode())
