"""The remote state store: one object in OBS or any S3-compatible store, its journal, its lock.

Objects beside ``KEY`` in the bucket:

- ``KEY``                       the document (``codec``, the same bytes as a local state file);
- ``KEY.backup``                the previous document (a server-side copy made before each write);
- ``KEY.journal/BASE/SEQ-ID.jsonl``  one small immutable object per ``record``/``forget``,
                                holding journal lines in the local journal's format;
- ``KEY.lock``                  the lock (``s3lock``);
- ``KEY.rejected/WHEN-ID/...``  journal objects of a commit refused as stale (kept, never read).

Why nothing is lost:

- ``record`` returns only after its journal object's PUT succeeded. S3 PUTs are atomic, so an
  object is whole or absent; there is no torn line to cut. ``record(durable=False)`` (an
  entry the next plan re-adopts by itself, never a new private key) is kept in memory until
  the commit: one PUT fewer per generated key pair.
- Journal objects are named by the ``base`` serial they were written on and a sequence number.
  Load replays those whose base is the document's serial, in sequence order; it skips older
  ones (folded in by a commit that died before deleting them) and refuses newer ones.
- Commit copies ``KEY`` to ``KEY.backup``, writes the folded document with ``If-Match`` on the
  ETag read at load (``If-None-Match: *`` when creating it), and only then deletes the journal
  objects. A write that loses the race is ``StaleStateError``: nothing is overwritten, and this
  command's journal objects move to ``KEY.rejected/`` so the next commit cannot delete them.

A store that ignores conditional writes is detected by one probe request (a PUT conditional on
an ETag no object has); the store then says so and compares the ETag with a HEAD just before
writing, under the lock.

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.state.*``, the stdlib.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from reconciler.address import keypair_address
from reconciler.errors import StaleStateError, StateCorruptError, StateError
from reconciler.model import S3Location, State, StateEncryption, StateKeyPair
from reconciler.state.base import JournaledStore, no_notice
from reconciler.state.codec import (
    JournalRecord,
    StateDocument,
    decode_document,
    decode_journal,
)
from reconciler.state.crypto import KeyBlock
from reconciler.state.kmskey import DataKeys
from reconciler.state.lockinfo import who
from reconciler.state.s3io import ConditionFailed, Objects, make_client
from reconciler.state.s3lock import S3Lock

_JOURNAL_NAME = re.compile(r"(\d{10})/(\d{10})-[0-9a-f]{12}\.jsonl")


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class _JournalObject:
    base: int
    seq: int
    key: str


class _Raced(Exception):
    """The document changed while load read the journal: read again."""


class S3StateStore(JournaledStore):
    """``StateStore`` (plus export/push) over an S3-compatible bucket. Thread-safe."""

    _backup_kind = "object"

    def __init__(
        self,
        location: S3Location,
        *,
        environ: Mapping[str, str],
        notice: Callable[[str], None] = no_notice,
        clock: Callable[[], datetime] | None = None,
        insecure: bool = False,
        conditional_writes: bool | None = None,
        verify: bool = True,
        encryption: StateEncryption | None = None,
        data_keys: Callable[[], DataKeys] | None = None,
    ) -> None:
        super().__init__(environ=environ, notice=notice, verify=verify, encryption=encryption,
                         data_keys=data_keys)
        self.location = location
        self.description = location.url
        self.object_key = location.key
        self.backup_key = f"{location.key}.backup"
        self.journal_prefix = f"{location.key}.journal/"
        self._objects = Objects(make_client(location, environ=environ, insecure=insecure),
                                bucket=location.bucket)
        self._notice = notice
        self._conditional_writes = conditional_writes  # None: probe on first write
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = S3Lock(self._objects, key=location.key, url=location.url,
                            who=who(environ), clock=self._clock,
                            conditional=self._conditional, notice=notice)
        self._probe_mutex = threading.Lock()
        self._etag: str | None = None  # of the document as loaded; None: there is none
        self._next_seq = 1
        self._folded: list[str] = []  # journal objects replayed, or written, on this base
        self._written: list[str] = []  # journal objects this store wrote on this base
        self._stale: list[str] = []  # journal objects of older bases (already folded in)

    # --- reading -----------------------------------------------------------------------------

    def load(self) -> State:
        with self._mutex:
            self._loaded = False
            previous_key = self._key
            for attempt in range(4):
                try:
                    self._load_once(previous_key)
                    break
                except _Raced:
                    if attempt == 3:
                        raise StateError(
                            f"{self.description} kept changing while it was read (another "
                            "command is committing); run the command again."
                        ) from None
            self._loaded = True
            return self._snapshot()

    def _load_once(self, previous_key: KeyBlock | None) -> None:
        got = self._objects.get(self.object_key)
        disk = decode_document(got[0], source=self.description) if got else None
        etag = got[1] if got else None
        if got is None and self._objects.head(self.backup_key) is not None:
            raise StateCorruptError(
                f"{self.description} is missing but {self.description}.backup exists. Restore it "
                f"(copy {self.backup_key} to {self.object_key} in the bucket), or remove the "
                "backup to start a new, empty state."
            )
        journal = self._list_journal()
        if journal and self._objects.head(self.object_key) != etag:
            raise _Raced()
        serial = disk.state.serial if disk else 0
        newer = [j for j in journal if j.base > serial]
        if newer:
            raise StateCorruptError(
                f"{self.description}.journal/ holds changes written on top of serial "
                f"{newer[0].base}, but {self.description} is at serial {serial}: the state was "
                "replaced by an older one. Nothing was changed. Restore the newer state, or move "
                f"the objects under {self.journal_prefix} aside (they may hold private keys)."
            )
        current = [j for j in journal if j.base == serial]
        bodies = self._objects.get_many([j.key for j in current])
        records: list[tuple[str, JournalRecord]] = []
        chains: list[tuple[str, str, list[JournalRecord]]] = []
        for obj, body in zip(current, bodies, strict=True):
            if body is None:
                raise _Raced()  # deleted by a commit since the listing
            where = f"s3://{self.location.bucket}/{obj.key}"
            decoded = decode_journal(body[0], source=where)[0]
            chains.append((where, self._seed(obj.key), decoded))
            records.extend((where, r) for r in decoded)
        read = disk
        if disk is None:
            lineage = records[0][1].lineage if records else self._fresh_lineage
            disk = StateDocument(State(lineage=lineage, serial=0))
        self._reset(disk)
        self._authenticate(read, chains)
        self._etag = etag
        self._check_folded([j for j in journal if j.base < serial])
        self._replay(records)
        if self._key is None and previous_key is not None:
            self._key = previous_key  # sealed with, not yet recorded
        self._folded = [j.key for j in current]
        self._stale = [j.key for j in journal if j.base < serial]
        self._next_seq = max((j.seq for j in current), default=0) + 1

    def _reset(self, disk: StateDocument) -> None:
        super()._reset(disk)
        self._written = []

    def _seed(self, key: str) -> str:
        """What an object's first line chains on: its name under the journal prefix, so an
        object renamed (reordered, moved to another serial) fails its check."""
        return key[len(self.journal_prefix):]

    def _check_folded(self, stale: list[_JournalObject]) -> None:
        """Objects from an older serial are removed by the next commit: only if the state
        holds their changes (a commit died before removing them), never otherwise (a writer
        that went on after a force-unlock, a state put back by hand)."""
        if not stale:
            return
        records: list[tuple[str, JournalRecord]] = []
        foreign: set[str] = set()  # another lineage: never part of this state's document
        for obj, body in zip(stale, self._objects.get_many([j.key for j in stale]), strict=True):
            if body is not None:
                where = f"s3://{self.location.bucket}/{obj.key}"
                for rec in decode_journal(body[0], source=where)[0]:
                    if rec.lineage == self._lineage:
                        records.append((where, rec))
                    elif rec.op != "key":
                        foreign.add(rec.name or "?")
        lost = sorted(foreign | set(self._not_folded(records)))
        if lost:
            raise StateCorruptError(
                f"{self.journal_prefix} holds changes from serial {stale[0].base} that "
                f"{self.description} (serial {self._serial}) does not, for "
                f"{', '.join(lost[:5])}: they were written after another run committed. "
                "Nothing was changed. Copy those objects aside and keep them (they may hold "
                "private keys), then remove them and look at what they hold before applying "
                "again."
            )

    def _list_journal(self) -> list[_JournalObject]:
        found = []
        for key in self._objects.keys(self.journal_prefix):
            match = _JOURNAL_NAME.fullmatch(key[len(self.journal_prefix):])
            if match is None:
                continue  # not ours (a note left by hand, a console folder marker)
            found.append(_JournalObject(int(match[1]), int(match[2]), key))
        return sorted(found)

    def _replays(self, rec: JournalRecord, *, where: str) -> bool:
        if rec.lineage != self._lineage:
            raise StateCorruptError(
                f"{where} belongs to another state (lineage {rec.lineage}; "
                f"{self.description} has lineage {self._lineage}). Nothing was changed. If "
                f"the state was replaced on purpose, move the objects under "
                f"{self.journal_prefix} aside (they may hold private keys: keep them)."
            )
        if rec.base != self._serial:
            raise StateCorruptError(
                f"{where} names serial {rec.base} but lies under serial {self._serial}'s "
                "journal; it was moved by hand. Nothing was changed."
            )
        return True

    def _journal_aside(self) -> str:
        return "move it aside"

    # --- the journal -------------------------------------------------------------------------

    def _append(self, *, op: str, name: str, target: str, entry: StateKeyPair | None,
                durable: bool = True) -> None:
        at = keypair_address(name, target)
        with self._mutex:
            if op == "forget" and at not in self._entries:
                return
            keep = self._keeps_private_key(entry)
            if not durable and entry is not None and (entry.private_key is None or keep):
                # Folded in by the commit; a crash before it loses only what the next plan
                # repairs (the caller's promise). A new private key is always written now.
                self._entries[at] = entry
                return
            key = (f"{self.journal_prefix}{self._serial:010d}/{self._next_seq:010d}-"
                   f"{uuid.uuid4().hex[:12]}.jsonl")
            self._next_seq += 1
            # Until a commit stores the key block, every object carries it: objects are
            # written concurrently, and any one of them may be the only one that lands.
            body, _ = self._journal_lines(op=op, name=name, target=target, entry=entry,
                                          with_key=self._key != self._disk.key,
                                          previous=self._seed(key))
        self._objects.put(key, body)  # durable when this returns; outside the mutex: parallel
        with self._mutex:
            self._folded.append(key)
            self._written.append(key)
            self._change(at, entry)

    # --- commit ------------------------------------------------------------------------------

    def commit(self) -> State:
        if self._needs_write():
            self._prepare_write()
        with self._mutex:
            self._fold()
            done, self._folded, self._written, self._stale = (
                self._folded + self._stale, [], [], [])
            self._next_seq = 1
        self._remove(done)
        return self._snapshot()

    def _write_document(self, data: bytes) -> None:
        """Replace the document if it is still the one loaded; ``StaleStateError`` if not."""
        try:
            if self._conditional():
                if self._etag is not None:
                    self._objects.copy(self.object_key, self.backup_key, if_match=self._etag)
                    etag = self._objects.put(self.object_key, data, if_match=self._etag)
                else:
                    etag = self._objects.put(self.object_key, data, if_none_match=True)
            else:
                if self._objects.head(self.object_key) != self._etag:
                    raise ConditionFailed(self.object_key)
                if self._etag is not None:
                    self._objects.copy(self.object_key, self.backup_key)
                etag = self._objects.put(self.object_key, data)
        except ConditionFailed:
            raise StaleStateError(self._stale_message()) from None
        self._etag = etag

    def _stale_message(self) -> str:
        kept = self._quarantine(self._written)
        where = (f" This command's changes (sealed private keys included) are kept under "
                 f"s3://{self.location.bucket}/{kept}; look there before deleting anything."
                 if kept else
                 f" This command's changes (sealed private keys included) are still under "
                 f"s3://{self.location.bucket}/{self.journal_prefix}: copy them aside before "
                 "the next apply.")
        return (
            f"{self.description} changed since this command read it at serial {self._serial}: "
            "another writer committed in between (after a force-unlock, or without the lock). "
            f"Nothing was overwritten.{where} Run the command again: it starts from the newer "
            "state."
        )

    def push(self, data: bytes, *, source: str, force: bool = False) -> State:
        """As for any store; then journal objects older than the pushed document (written by
        a run that did not hold the lock) are set aside, never deleted, never replayed."""
        state = super().push(data, source=source, force=force)
        stray = [j.key for j in self._list_journal() if j.base < state.serial]
        kept = self._quarantine(stray)
        if kept:
            self._notice(f"reconciler: {len(stray)} journal objects older than the pushed state "
                         f"were set aside under s3://{self.location.bucket}/{kept}; they may "
                         "hold private keys.")
        return state

    def _quarantine(self, keys: list[str]) -> str | None:
        """Move ``keys`` under ``KEY.rejected/``; the prefix, or None if they could not be."""
        if not keys:
            return None
        stamp = self._clock().strftime("%Y%m%dT%H%M%SZ")
        prefix = f"{self.object_key}.rejected/{stamp}-{uuid.uuid4().hex[:8]}/"
        try:
            for key in keys:
                self._objects.copy(key, prefix + key[len(self.journal_prefix):])
            self._objects.delete_many(keys)
        except (StateError, ConditionFailed):
            return None
        self._folded = [k for k in self._folded if k not in set(keys)]
        self._written = []
        return prefix

    def _remove(self, keys: list[str]) -> None:
        try:
            self._objects.delete_many(keys)
        except StateError as exc:
            self._notice(f"Warning: could not remove folded journal objects ({exc}); they are "
                         "skipped on load and removed by the next commit.")

    def _conditional(self) -> bool:
        with self._probe_mutex:
            if self._conditional_writes is None:
                probe = f"{self.object_key}.probe"
                self._conditional_writes = self._objects.supports_conditional_writes(probe)
                if not self._conditional_writes:
                    self._notice(
                        f"Warning: the object store of {self.description} ignores conditional "
                        "writes (If-None-Match, If-Match). reconciler falls back to "
                        "read-compare-write: two writers can no longer be excluded with "
                        "certainty, so make sure only one pipeline applies at a time."
                    )
            return self._conditional_writes

    def _has_document(self) -> bool:
        return self._etag is not None
