"""Generations: how a key pair bound to servers is rotated without a gap.

A key pair's name is unique in the cloud, so its replacement cannot be made under the same
name while the old one still exists. A rotation of a bound key pair therefore makes the new
key pair as generation N (``NAME-gN`` in the cloud, ``model.generation_name``), rebinds each
bound server to it with the old private key as ``auth``, and deletes the old generation (the
``deposed`` kind) only once no server holds it. Manifests, ``output`` and delivery keep using
the logical name; state records which generation is current.

This module holds what the key pair, binding and deposed kinds share: which change is such a
rotation, which generation comes next, and the API of one generation (the key pair API with
the logical name translated to the generation's name in the cloud).

May import: ``reconciler.changes``, ``reconciler.model``, ``reconciler.api.protocol``,
``reconciler.capabilities``, ``reconciler.errors``, ``reconciler.address``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from reconciler.address import KEYPAIR, Address
from reconciler.api.protocol import BatchImported, ImportRequest, KeyPairApi
from reconciler.capabilities import Capabilities
from reconciler.changes import Action, Change
from reconciler.errors import ApplyError
from reconciler.model import (
    MAX_GENERATION,
    ROTATING_NAME_MAX,
    CreatedKeyPair,
    KeyProtection,
    RemoteKeyPair,
    RemoteSnapshot,
    Secret,
    StateKeyPair,
    generation_name,
)

DEPOSED = "deposed"  # the address kind of a previous generation being retired


def cloud_name_of(change: Change) -> str:
    """What the cloud calls the key pair a change makes or keeps (its new generation in a
    rotation)."""
    after = change.after or {}
    name = after.get("cloud_name")
    if isinstance(name, str):
        return name
    before = change.before or {}
    name = before.get("cloud_name")
    if isinstance(name, str):
        return name
    return change.prior.cloud_name if change.prior is not None else change.name


def rotation_of(change: Change) -> tuple[str, str] | None:
    """(old name in the cloud, new one) when ``change`` replaces a key pair by a new
    generation without a gap; None for every other change."""
    if not change.rotating:
        return None
    return str((change.before or {})["cloud_name"]), str((change.after or {})["cloud_name"])


def next_generation(prior: StateKeyPair, taken: Callable[[str], bool]) -> int | None:
    """The generation a rotation makes: the one after the current (1 after 99), skipping
    names ``taken`` says are in use; None when the name is too long to carry a suffix."""
    if len(prior.name) > ROTATING_NAME_MAX:
        return None
    n = prior.generation
    for _ in range(MAX_GENERATION):
        n = n % MAX_GENERATION + 1
        if not taken(generation_name(prior.name, n)):
            return n
    return None


def cloud_names(entries: Mapping[Address, StateKeyPair]
                ) -> dict[tuple[str, str], tuple[StateKeyPair, bool]]:
    """Every name in the cloud that a managed key pair holds, by (target, name): its current
    generation's (False), and its previous one's while a rotation is under way (True)."""
    out: dict[tuple[str, str], tuple[StateKeyPair, bool]] = {}
    for at, e in entries.items():
        if e.deposed is not None:
            out.setdefault((at.target, e.deposed.cloud_name), (e, True))
    for at, e in entries.items():
        out[(at.target, e.cloud_name)] = (e, False)
    return out


def generation_taken(name: str, found: tuple[StateKeyPair, bool], here: Address
                     ) -> tuple[str, str]:
    """A key pair declared (or imported) under a name that is, in the cloud, a generation of
    another managed key pair: (summary, detail) of the refusal."""
    entry, deposed = found
    owner = Address(here.target, KEYPAIR, entry.name, qualified=here.qualified)
    which = "the previous generation" if deposed else f"generation {entry.generation}"
    return (f"key pair {name!r} is {which} of {owner} in the cloud (rotated without a gap), "
            "not a key pair of its own",
            f"choose another name for it; {name!r} belongs to {owner} and goes with its "
            "rotations")


def users(snapshot: RemoteSnapshot | None, cloud_name: str) -> list[Any]:
    """The servers of a snapshot that hold ``cloud_name`` (none when not read)."""
    if snapshot is None or snapshot.servers is None:
        return []
    return [s for s in snapshot.servers if s.key_name == cloud_name]


SHOWN = 20  # servers named in a message; the rest are counted


def named(servers: Sequence[Any]) -> str:
    """``web-1 (id), web-2 (id) and 3 more``."""
    shown = ", ".join(f"{s.name} ({s.id})" for s in servers[:SHOWN])
    more = len(servers) - SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def released(changes: Sequence[Change], binding_kind: str) -> set[tuple[str, str, str]]:
    """(target, name in the cloud, server id) of every binding this plan unbinds or rebinds
    away from the key pair the server holds."""
    out = set()
    for c in changes:
        before = c.before or {}
        if c.address.kind == binding_kind and c.action in (Action.DELETE, Action.UPDATE) \
                and isinstance(before.get("key_name"), str):
            out.add((c.address.target, str(before["key_name"]), str(before["server_id"])))
    return out


def kept_for_deposed(entry: StateKeyPair | None) -> None:
    """Raise ``ApplyError`` when ``entry`` still records a previous generation: its delete
    (the ``deposed`` change, run before) did not happen because servers hold it, and the
    entry, with that generation's private key, must stay in state until they no longer do."""
    if entry is None or entry.deposed is None:
        return
    raise ApplyError(f"kept: its previous generation {entry.deposed.cloud_name!r} is still in "
                     "the cloud and servers hold it, so the key pair stays in state with its "
                     "private keys; the next apply unbinds them, deletes the old generation and "
                     "then this key pair")


class GenerationApi:
    """A key pair API through which key pair ``name`` is the cloud's ``cloud_name``: the
    create, import, read and delete code of a key pair works unchanged for a generation."""

    def __init__(self, api: KeyPairApi, name: str, cloud_name: str) -> None:
        self._api = api
        self._name = name
        self._cloud = cloud_name
        self.api = api.api

    def _to(self, name: str) -> str:
        return self._cloud if name == self._name else name

    def _back(self, remote: RemoteKeyPair) -> RemoteKeyPair:
        return replace(remote, name=self._name) if remote.name == self._cloud else remote

    @property
    def capabilities(self) -> Capabilities:
        return self._api.capabilities

    def list_keypairs(self) -> RemoteSnapshot:
        return self._api.list_keypairs()

    def get_keypair(self, name: str) -> RemoteKeyPair | None:
        found = self._api.get_keypair(self._to(name))
        return self._back(found) if found is not None else None

    def create_keypair(self, *, name: str, type: str = "ssh", user_id: str | None = None,
                       scope: str | None = None, key_protection: KeyProtection | None = None,
                       ) -> CreatedKeyPair:
        created = self._api.create_keypair(name=self._to(name), type=type, user_id=user_id,
                                           scope=scope, key_protection=key_protection)
        return replace(created, remote=self._back(created.remote))

    def import_keypair(self, *, name: str, public_key: str, type: str = "ssh",
                       user_id: str | None = None, scope: str | None = None,
                       key_protection: KeyProtection | None = None,
                       private_key: Secret | None = None) -> RemoteKeyPair:
        return self._back(self._api.import_keypair(
            name=self._to(name), public_key=public_key, type=type, user_id=user_id,
            scope=scope, key_protection=key_protection, private_key=private_key))

    def import_keypairs(self, requests: Sequence[ImportRequest]) -> BatchImported:
        raise NotImplementedError("a generation is never created in a batch")

    def delete_keypair(self, name: str) -> bool:
        return self._api.delete_keypair(self._to(name))

    def update_description(self, name: str, description: str) -> None:
        self._api.update_description(self._to(name), description)

    def export_private_key(self, name: str) -> Secret | None:
        return self._api.export_private_key(self._to(name))

    def import_private_key(self, name: str, *, key_protection: KeyProtection,
                           private_key: Secret, user_id: str | None = None) -> None:
        self._api.import_private_key(self._to(name), key_protection=key_protection,
                                     private_key=private_key, user_id=user_id)

    def clear_private_key(self, name: str) -> None:
        self._api.clear_private_key(self._to(name))

    def close(self) -> None:
        self._api.close()
