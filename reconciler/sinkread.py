"""Refresh of delivery sinks: what each declared or recorded sink holds now, added to its
target's snapshot (``RemoteSnapshot.sinks``) before the plan is made.

A CSMS secret is read by its ``SYSCURRENT`` stage: the version id only, never a value (the
plan needs no secret). An age file is read locally: whether it exists, and its digest. A run
without deliveries reads nothing and returns the snapshots as they were. A sink that cannot
be read fails the refresh of its target (as the key pair list does), naming the sink.

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.address``,
``reconciler.agefile``, ``reconciler.targets``, ``reconciler.kinds``, ``reconciler.api.*``,
``reconciler.state.reserved``, ``reconciler.state.protocol``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from reconciler import agefile
from reconciler.address import Address
from reconciler.api.csms import CsmsClient
from reconciler.api.protocol import KeyPairApi
from reconciler.api.sinkhost import csms_for
from reconciler.errors import ApiError
from reconciler.kinds.delivery import held, wanted
from reconciler.model import (
    AGE_FILE_SINK,
    CSMS_SINK,
    Manifest,
    RemoteSnapshot,
    SinkReading,
    State,
    StateKeyPair,
)
from reconciler.state.protocol import StateStore
from reconciler.state.reserved import state_file_clash
from reconciler.targets import addressing, recorded_by_address

PENDING_DELETE_CODE = "CSMS.0103"


def with_sinks(snapshots: Mapping[str, RemoteSnapshot], *, manifest: Manifest, state: State,
               apis: Mapping[str, KeyPairApi],
               moves: Mapping[str, str] | None = None,
               recorded: Mapping[Address, StateKeyPair] | None = None,
               store: StateStore | None = None) -> dict[str, RemoteSnapshot]:
    """``snapshots`` with what each sink of their targets holds now; an age file where
    ``store`` keeps the state (or a file beside it) carries a refusal, so the plan fails
    before apply makes the key pair."""
    run = addressing(manifest, state, dict(moves or {}))
    if recorded is not None:
        entries = recorded
    elif any(e.deliveries for e in state.keypairs.values()):
        entries = recorded_by_address(state, run, moves)
    else:
        entries = {}  # nothing delivered yet: no entry holds a delivery record
    sinks: dict[Address, tuple[str, str, str | None]] = {}  # addr -> (kind, key, path)
    for addr, h in held(entries).items():
        kind, _, key = h.record.sink.partition(":")
        sinks[addr] = (kind, key, h.record.path)
    for addr, w in wanted(manifest, run).items():
        sinks[addr] = (w.sink.kind, w.sink.key, w.sink.path)
    if not sinks:
        return dict(snapshots)
    readings: dict[str, dict[str, SinkReading]] = {}
    clients: dict[str, CsmsClient] = {}
    for addr in sorted(sinks):
        if addr.target not in snapshots:
            continue  # not read: its target was not reached
        kind, key, path = sinks[addr]
        if kind == CSMS_SINK:
            if addr.target not in apis:
                continue
            client = clients.get(addr.target)
            if client is None:
                client = clients[addr.target] = csms_for(apis[addr.target])
            reading = _csms(client, key)
        elif kind == AGE_FILE_SINK and path is not None:
            reading = agefile.read(path)
            clash = state_file_clash(Path(path), store, environ={}) if store else None
            if clash is not None:
                reading = dataclasses.replace(reading, refusal=(
                    f"is {clash}: a private key is never delivered there; give the sink "
                    "another path"))
        else:
            continue
        readings.setdefault(addr.target, {})[addr.name] = reading
    return {t: dataclasses.replace(s, sinks={**s.sinks, **readings.get(t, {})})
            for t, s in snapshots.items()}


def _csms(client: CsmsClient, name: str) -> SinkReading:
    """The secret's current version id; a secret scheduled for deletion counts as gone."""
    try:
        version = client.stage(name)
    except ApiError as exc:
        if exc.code == PENDING_DELETE_CODE:
            return SinkReading(exists=False)
        raise
    return SinkReading(exists=version is not None, version_id=version)
