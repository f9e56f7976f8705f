"""What the local and the remote state store share: the state as a store holds it in memory.

A store loads a document and replays its journal on top (``_replay``); ``record``/``forget``
change the entries and write journal lines (``_append``, per store); ``commit`` folds them
into a new document with the next serial. ``JournaledStore`` keeps the entries, the key block
and the document as last read or written, and does everything that does not depend on where
the bytes go: journal record semantics, sealing with the state key, the journal lines of one
change, export, and the checks of a push.

A store supplies: ``load``, ``commit``, ``_append`` (how a change becomes durable),
``_replays`` (which journal records apply), ``_write_document`` (how a document replaces the
last one atomically), ``_has_document``, its lock (``_lock``), and two words for its messages;
``_exclusive`` and ``_reset`` where it needs more than the mutex and the fields here.

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.state.*``, the stdlib.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

from reconciler.errors import StateCorruptError, StateError
from reconciler.model import NAME_PATTERN, SealedSecret, Secret, State, StateKeyPair
from reconciler.state.codec import (
    JournalRecord,
    StateDocument,
    decode_document,
    encode_document,
    encode_journal_line,
)
from reconciler.state.crypto import KeyBlock, KeySource

_NAME_RE = re.compile(NAME_PATTERN)


def no_notice(message: str) -> None:
    del message


def check_push(new: State, current: State, *, source: str, target: str) -> None:
    """``StateError`` unless ``new`` may replace ``current``: same lineage, a higher serial."""
    if new.lineage != current.lineage:
        raise StateError(
            f"cannot push {source}: its lineage {new.lineage} differs from {target}'s "
            f"({current.lineage}), so it is another state. Use --force to replace it anyway "
            f"(the current state is kept as {target}.backup)."
        )
    if new.serial <= current.serial:
        raise StateError(
            f"cannot push {source}: its serial {new.serial} is not newer than {target}'s "
            f"({current.serial}). Use --force to replace it anyway."
        )


class Lock(Protocol):
    """A store's lock: the local ``flock`` file or the remote lock object."""

    def acquire(self, *, operation: str, timeout: float) -> dict[str, str]: ...

    def release(self) -> None: ...

    def force_unlock(self, lock_id: str) -> None: ...


class JournaledStore:
    """The in-memory half of a ``StateStore``. ``_mutex`` guards the fields below it."""

    description: str
    _lock: Lock
    _backup_kind = "file"  # in messages: "restore the state from its .backup file"

    def __init__(self, *, environ: Mapping[str, str], notice: Callable[[str], None]) -> None:
        self._keys = KeySource(environ=environ, notice=notice)
        self._mutex = threading.Lock()
        self._key_mutex = threading.Lock()
        self._fresh_lineage = str(uuid.uuid4())
        self._loaded = False
        self._lineage = self._fresh_lineage
        self._serial = 0
        self._entries: dict[str, StateKeyPair] = {}
        self._key: KeyBlock | None = None
        self._disk = StateDocument(State(lineage=self._lineage, serial=0))

    # --- what each store supplies ------------------------------------------------------------

    def load(self) -> State:
        raise NotImplementedError

    def commit(self) -> State:
        raise NotImplementedError

    def _append(self, *, op: str, name: str, entry: StateKeyPair | None,
                durable: bool = True) -> None:
        raise NotImplementedError

    def _replays(self, rec: JournalRecord, *, where: str) -> bool:
        """Whether ``rec`` applies on top of the document; raise if it can never apply."""
        raise NotImplementedError

    def _journal_aside(self) -> str:
        """What to do with a journal that cannot be replayed: "move ... aside"."""
        raise NotImplementedError

    def _write_document(self, data: bytes) -> None:
        """Replace the document with ``data`` atomically (under ``_exclusive``)."""
        raise NotImplementedError

    def _has_document(self) -> bool:
        raise NotImplementedError

    def _exclusive(self) -> contextlib.AbstractContextManager[object]:
        """What load, commit and push hold: ``_mutex``, and whatever else a store needs."""
        return self._mutex

    # --- reading -----------------------------------------------------------------------------

    def _reset(self, disk: StateDocument) -> None:
        self._disk = disk
        self._lineage, self._serial = disk.state.lineage, disk.state.serial
        self._entries = dict(disk.state.keypairs)
        self._key = disk.key

    def _replay(self, records: Iterable[tuple[str, JournalRecord]]) -> None:
        for where, rec in records:
            if self._replays(rec, where=where):
                self._apply(rec, where=where)

    def _apply(self, rec: JournalRecord, *, where: str) -> None:
        if rec.op == "key":
            if self._key is not None and self._key != rec.key:
                raise StateCorruptError(f"{where} names another state key; move it aside.")
            self._key = rec.key
        elif rec.op == "record" and rec.entry is not None:
            entry = rec.entry
            if rec.keep_private_key:
                prior = self._entries.get(entry.name)
                if prior is None or prior.private_key is None:
                    raise StateCorruptError(
                        f"{where} keeps a private key that {entry.name!r} does not have; "
                        f"{self._journal_aside()} (keep a copy) or restore the state."
                    )
                entry = dataclasses.replace(entry, private_key=prior.private_key)
            self._entries[entry.name] = entry
        elif rec.op == "forget" and rec.name is not None:
            self._entries.pop(rec.name, None)

    def _not_folded(self, records: list[tuple[str, JournalRecord]]) -> list[str]:
        """Of journal records from an older serial, which a commit is believed to have folded
        in: the key pairs whose change the state does not hold (normally none). A change it
        lacks would be lost if the records were skipped and removed."""
        entries, key = dict(self._entries), self._key
        missing: set[str] = set()
        try:
            for where, rec in records:
                try:
                    self._apply(rec, where=where)
                except StateCorruptError:
                    missing.add(rec.name or "?")
            missing |= {n for n in set(entries) | set(self._entries)
                        if entries.get(n) != self._entries.get(n)}
        finally:
            self._entries, self._key = entries, key
        return sorted(missing)

    def _snapshot(self) -> State:
        return State(lineage=self._lineage, serial=self._serial, keypairs=dict(self._entries))

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.load()

    # --- secrets -----------------------------------------------------------------------------

    def seal(self, name: str, secret: Secret) -> SealedSecret:
        self._ensure_loaded()
        with self._key_mutex:
            key = self._keys.resolve(self._key)
            with self._mutex:
                if self._key is None:
                    self._key = key.block
                lineage = self._lineage
        return key.seal(lineage=lineage, name=name, secret=secret)

    def unseal(self, name: str, sealed: SealedSecret) -> Secret:
        self._ensure_loaded()
        if self._key is None:
            raise StateCorruptError(
                f"{self.description} holds a private key for {name!r} but no key block saying "
                f"which key sealed it; restore the state from its .backup {self._backup_kind}."
            )
        with self._key_mutex:
            key = self._keys.resolve(self._key)
        return key.unseal(lineage=self._lineage, name=name, sealed=sealed)

    # --- changes -----------------------------------------------------------------------------

    def record(self, entry: StateKeyPair, *, durable: bool = True) -> None:
        if not _NAME_RE.fullmatch(entry.name):
            raise StateError(f"cannot record {entry.name!r}: not a valid key pair name.")
        self._ensure_loaded()
        self._append(op="record", name=entry.name, entry=entry, durable=durable)

    def forget(self, name: str) -> None:
        self._ensure_loaded()
        self._append(op="forget", name=name, entry=None)

    def _keeps_private_key(self, entry: StateKeyPair | None) -> bool:
        """Whether ``entry`` holds the sealed private key its name already has (under _mutex)."""
        if entry is None or entry.private_key is None:
            return False
        prior = self._entries.get(entry.name)
        return prior is not None and prior.private_key == entry.private_key

    def _journal_lines(self, *, op: str, name: str, entry: StateKeyPair | None,
                       with_key: bool) -> bytes:
        """The journal line of one change (under _mutex); the key block's line first if
        ``with_key`` and there is a key."""
        line = b""
        if with_key and self._key is not None:
            line = encode_journal_line(lineage=self._lineage, base=self._serial, op="key",
                                       key=self._key)
        return line + encode_journal_line(lineage=self._lineage, base=self._serial, op=op,
                                          name=name, entry=entry,
                                          keep_private_key=self._keeps_private_key(entry))

    def _change(self, name: str, entry: StateKeyPair | None) -> None:
        if entry is not None:
            self._entries[name] = entry
        else:
            self._entries.pop(name, None)

    # --- commit, export and push -------------------------------------------------------------

    def _pending(self) -> StateDocument | None:
        """The document a commit writes now (under _mutex); ``None`` if nothing changed."""
        if self._entries == self._disk.state.keypairs and self._key == self._disk.key:
            return None
        state = State(lineage=self._lineage, serial=self._serial + 1,
                      keypairs=dict(self._entries))
        return StateDocument(state, self._key)

    def _fold(self) -> None:
        """Write the pending document, if anything changed (under ``_exclusive``)."""
        doc = self._pending()
        if doc is not None:
            self._write_document(encode_document(doc))
            self._disk, self._serial = doc, doc.state.serial

    def exists(self) -> bool:
        """Whether there is a state here: a document, or the journal of an interrupted first
        run. Loads the state if need be; writes nothing."""
        self._ensure_loaded()
        with self._mutex:
            return self._has_document() or self._pending() is not None

    def export(self) -> bytes:
        """The document a commit would write now (secrets stay sealed)."""
        self._ensure_loaded()
        with self._mutex:
            return encode_document(self._pending() or StateDocument(self._snapshot(), self._key))

    def push(self, data: bytes, *, source: str, force: bool = False) -> State:
        """Replace the state with the document ``data`` (hold the lock around this).

        Refuses another lineage, or a serial not above the current one, unless ``force``.
        Pending journal changes are committed first, so the backup holds them.
        """
        doc = decode_document(data, source=source)
        current = self.commit()
        if self._has_document() and not force:
            check_push(doc.state, current, source=source, target=self.description)
        if doc.key is not None and any(e.private_key for e in doc.state.keypairs.values()):
            self._keys.resolve(doc.key)  # a key that cannot open it: refuse before writing
        with self._exclusive():
            self._write_document(encode_document(doc))
            self._reset(doc)
            return self._snapshot()

    # --- the lock ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, *, operation: str, timeout: float) -> Iterator[dict[str, str]]:
        info = self._lock.acquire(operation=operation, timeout=timeout)
        try:
            yield info
        finally:
            self._lock.release()

    def force_unlock(self, lock_id: str) -> None:
        self._lock.force_unlock(lock_id)
