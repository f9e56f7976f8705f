"""The state store protocol: what plan, apply and the state commands need of any backend.

May import: ``reconciler.model``, ``reconciler.errors``; ``reconciler.state.crypto`` for
types only.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from reconciler.model import SealedSecret, Secret, State, StateKeyPair, TargetConnection

if TYPE_CHECKING:
    from reconciler.state.crypto import KeyBlock


class Integrity(StrEnum):
    """How far the state as last loaded can be trusted.

    ``VERIFIED``: its MAC (and every journal line's) checked under the state key, or there is
    no state yet. ``FORMAT_1``: a release 0.1.0 file (checksum only, no MAC) whose key id
    matches: read unverified, never written until ``reconciler state upgrade`` rewrites it.
    ``UNVERIFIED``: no key was available to check it: it can be read, never written, and no
    secret in it is revealed.
    """

    VERIFIED = "verified"
    FORMAT_1 = "format 1"
    UNVERIFIED = "unverified"


class StateStore(Protocol):
    """A state document with a lock, per-value encryption and an append-only journal.

    Thread-safe: apply records from several worker threads at once.
    """

    description: str  # for messages: the file path or s3://bucket/key

    @property
    def integrity(self) -> Integrity:
        """Whether the state as last loaded was verified (see ``Integrity``)."""
        ...

    def load(self) -> State:
        """Read the state (replaying any journal left by an interrupted run).

        A missing state is an empty one with a fresh lineage. Corrupt, truncated, tampered
        or newer-format state raises ``StateCorruptError`` (``StateTamperedError`` for a MAC
        that does not match) and changes nothing. A store opened with ``verify=True`` needs
        the key (``StateKeyError`` without it); otherwise it checks the MAC when a key is
        available and reads unverified when none is.
        """
        ...

    def lock(self, *, operation: str, timeout: float) -> AbstractContextManager[dict[str, str]]:
        """Hold the state lock for the block; ``StateLockError`` with the lock info if held."""
        ...

    @property
    def format_version(self) -> int:
        """The format of the state document as last read (the current one for none)."""
        ...

    def connect(self, target: str, connection: TargetConnection) -> None:
        """How this run reaches ``target`` (never a secret): recorded in the next document
        written; not a change on its own."""
        ...

    def seal(self, name: str, secret: Secret, *, target: str = "default") -> SealedSecret:
        """Encrypt a private key for key pair ``name`` in ``target`` (AES-256-GCM, its full
        address and the lineage bound in)."""
        ...

    def unseal(self, name: str, sealed: SealedSecret, *, target: str | None = None) -> Secret:
        """Decrypt (``target`` None: the entry's own); ``StateKeyError`` for a wrong key,
        ``StateCorruptError`` if tampered."""
        ...

    def held(self, name: str, *, target: str = "default") -> StateKeyPair | None:
        """The entry of key pair ``name`` in ``target`` as this run holds it now (what was
        recorded since the load included), or None; reads nothing."""
        ...

    def record(self, entry: StateKeyPair, *, durable: bool = True) -> None:
        """Add or replace an entry; durable (fsynced) when this returns.

        ``durable=False`` lets the write ride on the next fsync (or the commit) instead: for
        entries whose loss the next plan repairs on its own (it adopts a key pair it finds in
        the cloud with the public key it expects). Never for a private key seen only here.
        """
        ...

    def record_all(self, entries: Sequence[StateKeyPair], *, durable: bool = True) -> None:
        """``record`` each of ``entries``, in order; all durable when this returns (the local
        store writes their lines, then fsyncs once). ``durable=False`` as for ``record``.
        Raises at the first that cannot be recorded: those before it may be recorded."""
        ...

    def current(self, name: str, *, target: str = "default") -> StateKeyPair | None:
        """The entry as recorded so far (what was loaded, and every ``record`` since): what a
        change that depends on an earlier one of this apply builds on."""
        ...

    def forget(self, name: str, *, target: str = "default") -> None:
        """Remove an entry; durable when this returns."""
        ...

    def commit(self) -> State:
        """Fold recorded changes into the state document atomically (serial + 1 if any)."""
        ...

    def force_unlock(self, lock_id: str) -> None:
        """Remove the lock if its id is ``lock_id``; ``StateLockError`` otherwise."""
        ...

    def exists(self) -> bool:
        """Whether a state exists (a document, or a journal of an interrupted first run);
        loads it if need be and writes nothing. ``load`` of no state is an empty one: commands
        that only read state ask this first, so that they never report an invented state."""
        ...

    def require_current_format(self, *, doing: str = "write it") -> None:
        """``StateFormatError`` (saying to run ``reconciler state upgrade``) if the state is
        format 1: commands that write state ask this before anything is sent anywhere. (A
        format 2 state is migrated by the first write.)"""
        ...

    def upgrade(self) -> tuple[State, str] | None:
        """Rewrite a format 1 or 2 state as format 3 with the state key (the caller holds the
        lock), keeping its serial; the backup keeps the older document. Returns the state and
        the key id, or ``None`` when it is format 3 already."""
        ...

    def rekey(self) -> tuple[State, KeyBlock, KeyBlock]:
        """Seal every private key again under a fresh key of the chosen provider (the caller
        holds the lock), keeping the serial; pending changes are committed first. Returns the
        state and the old and new key blocks (``crypto.KeyBlock``)."""
        ...

    def prepare_key(self) -> tuple[KeyBlock, KeyBlock] | None:
        """With a state key provider chosen, make sure this run can write (a new state's KMS
        data key made now) and move a state sealed by another provider (``fallback``) to it
        now. Returns the old and new key blocks when it moved."""
        ...

    @property
    def key_provider(self) -> str | None:
        """Who holds the state's key: ``kms``, ``passphrase``, ``key_file``; None for none."""
        ...

    def export(self) -> bytes:
        """The document a commit would write now (journal folded in, secrets still sealed);
        writes nothing."""
        ...

    def push(self, data: bytes, *, source: str, force: bool = False) -> State:
        """Replace the state with the document ``data`` (the caller holds the lock).

        Refuses another lineage, or a serial not above the current one, unless ``force``;
        pending changes are committed first, so the backup holds them.
        """
        ...
