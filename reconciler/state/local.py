"""The local state store: one file, its journal, its backup and its lock.

Files beside ``STATE`` (all 0600):

- ``STATE``          the document (``codec``), replaced atomically on commit;
- ``STATE.backup``   the previous document (a hard link to the old file: no bytes copied);
- ``STATE.journal``  changes since the last commit, one checksummed JSON line each, appended
                     and fsynced by ``record``/``forget`` before they return;
- ``STATE.lock``     who holds the lock (``fcntl.flock`` on it is the lock itself).

Why nothing is lost when the process dies at any point:

- ``record`` returns only after its line is fsynced. A crash mid-append leaves a last line
  without its newline; load ignores it (it was never acknowledged) and the next append cuts it.
- Every journal line carries the ``lineage`` and the ``base`` serial it was written on. Load
  replays lines whose base equals the state's serial and skips older ones: those were already
  folded in by a commit that died before removing the journal. Lines carry whole entries,
  so replaying is idempotent anyway.
- Commit writes the new document to a temporary file, fsyncs it, links the old file to
  ``STATE.backup``, renames the new one over ``STATE`` and fsyncs the directory; only then is
  the journal removed. ``STATE`` is never missing, and until the rename the old state plus the
  journal hold everything.

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.state.*``, the stdlib.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from reconciler.errors import StateCorruptError, StateError
from reconciler.model import NAME_PATTERN, SealedSecret, Secret, State, StateKeyPair
from reconciler.state.codec import (
    JournalRecord,
    StateDocument,
    decode_document,
    decode_journal,
    encode_document,
    encode_journal_line,
)
from reconciler.state.crypto import KeyBlock, KeySource
from reconciler.state.files import fsync_dir, write_new_file
from reconciler.state.flock import FileLock

_NAME_RE = re.compile(NAME_PATTERN)


def _no_notice(message: str) -> None:
    del message


class LocalStateStore:
    """``StateStore`` over a local file. Thread-safe; one instance per command."""

    def __init__(
        self,
        path: Path,
        *,
        environ: Mapping[str, str],
        notice: Callable[[str], None] = _no_notice,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        self.backup_path = self._beside("backup")
        self.journal_path = self._beside("journal")
        self.lock_path = self._beside("lock")
        self._clock = clock or (lambda: datetime.now(UTC))
        self._keys = KeySource(environ=environ, notice=notice)
        self._mutex = threading.Lock()  # in-memory state and journal writes
        self._sync_mutex = threading.Lock()  # fsync of the journal; taken before _mutex
        self._key_mutex = threading.Lock()
        self._fresh_lineage = str(uuid.uuid4())
        self._loaded = False
        self._lineage = self._fresh_lineage
        self._serial = 0
        self._entries: dict[str, StateKeyPair] = {}
        self._key: KeyBlock | None = None
        self._key_durable = False  # the key block is in the state file or the journal
        self._disk = StateDocument(State(lineage=self._lineage, serial=0))
        self._journal_fd: int | None = None
        self._journal_size = 0
        self._journal_gen = 0  # bumped whenever the journal is folded in or closed
        self._written = 0
        self._synced = 0
        self._lock = FileLock(self.lock_path, state_path=self.path, environ=environ,
                              clock=self._clock)

    def _beside(self, suffix: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{suffix}")

    # --- reading -----------------------------------------------------------------------------

    def load(self) -> State:
        with self._sync_mutex, self._mutex:
            self._close_journal(sync=True)
            self._loaded = False
            previous_key = self._key
            for attempt in range(3):
                identity = _identity(self.path)
                try:
                    self._load_once(previous_key)
                    break
                except StateCorruptError:
                    # A reader without the lock can race a commit (the state read before it,
                    # the journal after it): read again. A file that did not change is corrupt.
                    if attempt == 2 or _identity(self.path) == identity:
                        raise
            self._loaded = True
            return self._snapshot()

    def _load_once(self, previous_key: KeyBlock | None) -> None:
        disk = self._read_document()
        records: list[JournalRecord] = []
        try:
            journal = self.journal_path.read_bytes()
        except FileNotFoundError:
            journal = b""  # none, or a commit folded it in just now
        if journal:
            records, _ = decode_journal(journal, source=str(self.journal_path))
        if disk is None:
            lineage = records[0].lineage if records else self._fresh_lineage
            disk = StateDocument(State(lineage=lineage, serial=0))
        if self._lineage != disk.state.lineage:
            previous_key = None
        self._disk = disk
        self._lineage, self._serial = disk.state.lineage, disk.state.serial
        self._entries = dict(disk.state.keypairs)
        self._key, self._key_durable = disk.key, disk.key is not None
        self._replay(records)
        if self._key is None and previous_key is not None:
            self._key = previous_key  # sealed with, not yet recorded

    def _read_document(self) -> StateDocument | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            if self.backup_path.exists():
                raise StateCorruptError(
                    f"{self.path} is missing but {self.backup_path} exists. Restore it with "
                    f"`cp -p {self.backup_path} {self.path}`, or remove the backup to start a "
                    "new, empty state."
                ) from None
            return None
        except IsADirectoryError:
            raise StateError(f"{self.path} is a directory; give a file with --state.") from None
        return decode_document(data, source=str(self.path))

    def _replay(self, records: list[JournalRecord]) -> None:
        for number, rec in enumerate(records, start=1):
            where = f"{self.journal_path} line {number}"
            if rec.lineage != self._lineage:
                raise StateCorruptError(
                    f"{where} belongs to another state (lineage {rec.lineage}; {self.path} has "
                    f"lineage {self._lineage}). Nothing was changed. If {self.path} was "
                    f"replaced on purpose, move {self.journal_path} aside (it may hold "
                    "private keys: keep it)."
                )
            if rec.base < self._serial:
                continue  # already folded in by a commit that died before removing the journal
            if rec.base > self._serial:
                raise StateCorruptError(
                    f"{where} was written on top of serial {rec.base}, but {self.path} is at "
                    f"serial {self._serial}: the state file was replaced by an older one. "
                    f"Nothing was changed. Restore the newer state, or move {self.journal_path} "
                    "aside (it may hold private keys: keep it)."
                )
            self._apply(rec, where=where)

    def _apply(self, rec: JournalRecord, *, where: str) -> None:
        if rec.op == "key":
            if self._key is not None and self._key != rec.key:
                raise StateCorruptError(f"{where} names another state key; move it aside.")
            self._key, self._key_durable = rec.key, True
        elif rec.op == "record" and rec.entry is not None:
            entry = rec.entry
            if rec.keep_private_key:
                prior = self._entries.get(entry.name)
                if prior is None or prior.private_key is None:
                    raise StateCorruptError(
                        f"{where} keeps a private key that {entry.name!r} does not have; "
                        f"move {self.journal_path} aside (keep a copy) or restore the state."
                    )
                entry = dataclasses.replace(entry, private_key=prior.private_key)
            self._entries[entry.name] = entry
        elif rec.op == "forget" and rec.name is not None:
            self._entries.pop(rec.name, None)

    def _snapshot(self) -> State:
        return State(lineage=self._lineage, serial=self._serial, keypairs=dict(self._entries))

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.load()

    @property
    def key_block(self) -> KeyBlock | None:
        """Which key seals this state's secrets (no secret in it); ``None`` if none yet."""
        self._ensure_loaded()
        return self._key

    # --- secrets -----------------------------------------------------------------------------

    def seal(self, name: str, secret: Secret) -> SealedSecret:
        self._ensure_loaded()
        with self._key_mutex:
            key = self._keys.resolve(self._key)
            with self._mutex:
                if self._key is None:
                    self._key, self._key_durable = key.block, False
                lineage = self._lineage
        return key.seal(lineage=lineage, name=name, secret=secret)

    def unseal(self, name: str, sealed: SealedSecret) -> Secret:
        self._ensure_loaded()
        if self._key is None:
            raise StateCorruptError(
                f"{self.path} holds a private key for {name!r} but no key block saying which "
                "key sealed it; restore the state from its .backup file."
            )
        with self._key_mutex:
            key = self._keys.resolve(self._key)
        return key.unseal(lineage=self._lineage, name=name, sealed=sealed)

    # --- the journal -------------------------------------------------------------------------

    def record(self, entry: StateKeyPair, *, durable: bool = True) -> None:
        if not _NAME_RE.match(entry.name):
            raise StateError(f"cannot record {entry.name!r}: not a valid key pair name.")
        self._ensure_loaded()
        self._append(op="record", name=entry.name, entry=entry, durable=durable)

    def forget(self, name: str) -> None:
        self._ensure_loaded()
        self._append(op="forget", name=name, entry=None)

    def _append(self, *, op: str, name: str, entry: StateKeyPair | None,
                durable: bool = True) -> None:
        with self._mutex:
            if op == "forget" and name not in self._entries:
                return
            line = b""
            if self._key is not None and not self._key_durable:
                line = encode_journal_line(lineage=self._lineage, base=self._serial, op="key",
                                           key=self._key)
            prior = self._entries.get(name)
            keep = (entry is not None and entry.private_key is not None and prior is not None
                    and prior.private_key == entry.private_key)
            line += encode_journal_line(lineage=self._lineage, base=self._serial, op=op,
                                        name=name, entry=entry, keep_private_key=keep)
            self._write_journal(line)
            self._key_durable = True
            if entry is not None:
                self._entries[name] = entry
            else:
                del self._entries[name]
            self._written += 1
            ticket, generation = self._written, self._journal_gen
        if durable:
            self._sync_journal(ticket=ticket, generation=generation)

    def _write_journal(self, line: bytes) -> None:
        fd = self._open_journal()
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:
            os.ftruncate(fd, self._journal_size)  # never leave half a line before the next
            raise StateError(f"cannot write {self.journal_path}: {exc.strerror}") from None
        self._journal_size += len(line)

    def _sync_journal(self, *, ticket: int, generation: int) -> None:
        """Group commit: one fsync covers every line written before it."""
        with self._sync_mutex:
            with self._mutex:
                if generation != self._journal_gen or self._synced >= ticket:
                    return  # folded into the state file, or already synced by another thread
                fd, target = self._journal_fd, self._written
            assert fd is not None
            os.fsync(fd)
            self._synced = target

    def _open_journal(self) -> int:
        if self._journal_fd is not None:
            return self._journal_fd
        created = not self.journal_path.exists()
        fd = os.open(self.journal_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)
        size = os.fstat(fd).st_size
        intact = _intact_length(fd, size)
        if intact != size:
            os.ftruncate(fd, intact)  # a torn line from a crash mid-append; never acknowledged
            os.fsync(fd)
        if created:
            fsync_dir(self.path.parent)
        self._journal_fd, self._journal_size = fd, intact
        return fd

    def _close_journal(self, *, sync: bool = False) -> None:
        if self._journal_fd is not None:
            if sync and self._synced < self._written:
                os.fsync(self._journal_fd)
            os.close(self._journal_fd)
            self._journal_fd = None
        self._journal_gen += 1
        self._written = self._synced = 0

    # --- commit ------------------------------------------------------------------------------

    def commit(self) -> State:
        self._ensure_loaded()
        with self._sync_mutex, self._mutex:
            disk = self._disk.state
            if self._entries != disk.keypairs or self._key != self._disk.key:
                state = State(lineage=self._lineage, serial=self._serial + 1,
                              keypairs=dict(self._entries))
                self._write_document(encode_document(StateDocument(state, self._key)))
                self._disk = StateDocument(state, self._key)
                self._serial = state.serial
            self._key_durable = self._key is not None
            self._close_journal()
            if self.journal_path.exists():
                self.journal_path.unlink()  # only now: the state file above is durable
                fsync_dir(self.path.parent)
            return self._snapshot()

    def _write_document(self, data: bytes) -> None:
        directory = self.path.parent
        self._remove_stale_temporaries()
        tmp = directory / f".{self.path.name}.{secrets.token_hex(6)}.tmp"
        write_new_file(tmp, data)
        if self.path.exists():
            self._keep_backup()
        os.replace(tmp, self.path)
        fsync_dir(directory)

    def _keep_backup(self) -> None:
        tmp = self.path.parent / f".{self.path.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.link(self.path, tmp)
            os.chmod(tmp, 0o600)
        except OSError:  # no hard links here (some network file systems): copy instead
            write_new_file(tmp, self.path.read_bytes())
        os.replace(tmp, self.backup_path)

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of a commit that was killed; under the lock nobody else writes."""
        pattern = re.compile(rf"\.{re.escape(self.path.name)}\.[0-9a-f]{{12}}\.tmp")
        for candidate in self.path.parent.iterdir():
            if pattern.fullmatch(candidate.name):
                with contextlib.suppress(FileNotFoundError):
                    candidate.unlink()

    # --- export and push ---------------------------------------------------------------------

    def export(self) -> bytes:
        """The document a commit would write now (secrets stay sealed)."""
        self._ensure_loaded()
        with self._mutex:
            changed = self._entries != self._disk.state.keypairs or self._key != self._disk.key
            state = State(lineage=self._lineage, serial=self._serial + int(changed),
                          keypairs=dict(self._entries))
            return encode_document(StateDocument(state, self._key))

    def push(self, data: bytes, *, source: str, force: bool = False) -> State:
        """Replace the state with the document ``data`` (hold the lock around this).

        Refuses another lineage, or a serial not above the current one, unless ``force``.
        Pending journal changes are committed first, so ``STATE.backup`` holds them.
        """
        doc = decode_document(data, source=source)
        current = self.commit()
        exists = self.path.exists()
        if exists and not force:
            _check_push(doc.state, current, source=source, target=self.description)
        if doc.key is not None and any(e.private_key for e in doc.state.keypairs.values()):
            self._keys.resolve(doc.key)  # a key that cannot open it: refuse before writing
        with self._sync_mutex, self._mutex:
            self._write_document(encode_document(doc))
            self._disk = doc
            self._lineage, self._serial = doc.state.lineage, doc.state.serial
            self._entries = dict(doc.state.keypairs)
            self._key, self._key_durable = doc.key, doc.key is not None
            return self._snapshot()

    # --- the lock ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, *, operation: str, timeout: float) -> Iterator[dict[str, str]]:
        info = self._lock.acquire(operation=operation, timeout=timeout)
        try:
            yield dict(info)
        finally:
            self._lock.release()

    def force_unlock(self, lock_id: str) -> None:
        self._lock.force_unlock(lock_id)


def _check_push(new: State, current: State, *, source: str, target: str) -> None:
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


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _intact_length(fd: int, size: int) -> int:
    """Length of the journal up to and including its last newline."""
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        chunk = os.pread(fd, pos - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        pos = start
    return 0
