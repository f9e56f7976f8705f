"""The local state store: one file, its journal, its backup and its lock.

Files beside ``STATE`` (all 0600):

- ``STATE``          the document (``codec``), replaced atomically on commit;
- ``STATE.backup``   the previous document (a hard link to the old file: no bytes copied);
- ``STATE.journal``  changes since the last commit, one JSON line each, authenticated and
                     chained (``codec``), appended and fsynced by ``record``/``forget`` before
                     they return;
- ``STATE.lock``     who holds the lock (``fcntl.flock`` on it is the lock itself).

``STATE`` is resolved once (``state.paths``): a symbolic link is followed to the real file
and all of these live beside it. Each is opened by ``reconciler.fsutil``'s policy (never
through a link, 0600, a regular file with one link): a link or odd file planted at one of
these names is an error, never written through.

A write that fails (a full disk, a quota, ``EIO``, the file size limit) is a ``StateError``
naming the file; the previous ``STATE`` is untouched (it is only ever replaced by a rename of
a complete, fsynced file) and whatever the journal acknowledged is still in it.

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

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.fsutil``,
``reconciler.state.*``, the stdlib.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from reconciler.address import keypair_address
from reconciler.errors import StateCorruptError, StateError, StateTamperedError
from reconciler.fsutil import (
    explain,
    lstat_or_none,
    open_private,
    read_regular,
    refuse_odd_target,
    remove_quietly,
)
from reconciler.model import State, StateEncryption, StateKeyPair
from reconciler.state.base import JournaledStore, no_notice
from reconciler.state.codec import (
    JournalRecord,
    StateDocument,
    decode_document,
    decode_journal,
)
from reconciler.state.crypto import KeyBlock
from reconciler.state.files import fsync_dir, write_all, write_new_file
from reconciler.state.flock import FileLock
from reconciler.state.kmskey import DataKeys
from reconciler.state.paths import state_paths

_NO_LIMIT = 1 << 40  # the state and its journal are ours: their size is not bounded here


class LocalStateStore(JournaledStore):
    """``StateStore`` over a local file. Thread-safe; one instance per command."""

    def __init__(
        self,
        path: Path,
        *,
        environ: Mapping[str, str],
        notice: Callable[[str], None] = no_notice,
        clock: Callable[[], datetime] | None = None,
        verify: bool = True,
        encryption: StateEncryption | None = None,
        data_keys: Callable[[], DataKeys] | None = None,
    ) -> None:
        super().__init__(environ=environ, notice=notice, verify=verify, encryption=encryption,
                         data_keys=data_keys)
        self.paths = state_paths(Path(path))
        self.path = self.paths.state
        self.description = str(self.path)
        self.backup_path = self.paths.backup
        self.journal_path = self.paths.journal
        self.lock_path = self.paths.lock
        self._clock = clock or (lambda: datetime.now(UTC))
        self._sync_mutex = threading.Lock()  # fsync of the journal; taken before _mutex
        self._journal_key: KeyBlock | None = None  # the key block in the state file or journal
        self._journal_fd: int | None = None
        self._journal_size = 0
        self._chain = ""  # the MAC of the journal's last line: what the next line chains on
        self._journal_gen = 0  # bumped whenever the journal is folded in or closed
        self._written = 0
        self._synced = 0
        self._lock = FileLock(self.lock_path, state_path=self.path, environ=environ,
                              clock=self._clock)

    @contextlib.contextmanager
    def _io(self, path: Path, *, doing: str = "write", outcome: str = "",
            missing_ok: bool = False) -> Iterator[None]:
        """``OSError`` on ``path`` -> a ``StateError`` naming it and saying what to do
        (``missing_ok``: a ``FileNotFoundError`` goes through, for the caller)."""
        try:
            yield
        except OSError as exc:
            if missing_ok and isinstance(exc, FileNotFoundError):
                raise
            said = outcome or (f"The previous state in {self.path} is intact; what this run "
                               f"recorded is in {self.journal_path}.")
            raise StateError(f"{explain(exc, path, doing=doing)}. {said}") from None

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._sync_mutex, self._mutex:
            yield

    def _reset(self, disk: StateDocument) -> None:
        super()._reset(disk)
        self._journal_key = disk.key

    # --- reading -----------------------------------------------------------------------------

    def load(self) -> State:
        with self._exclusive():
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
            with self._io(self.journal_path, doing="read", outcome="Nothing was changed.",
                          missing_ok=True):
                journal = read_regular(self.journal_path, limit=_NO_LIMIT, follow=False,
                                       growing=True)
        except FileNotFoundError:
            journal = b""  # none, or a commit folded it in just now
        if journal:
            records, _ = decode_journal(journal, source=str(self.journal_path))
        read = disk
        if disk is None:
            lineage = records[0].lineage if records else self._fresh_lineage
            disk = StateDocument(State(lineage=lineage, serial=0))
        if self._lineage != disk.state.lineage:
            previous_key = None
        self._reset(disk)
        self._chain = self._authenticate(read, [(str(self.journal_path), "", records)])
        if read is not None:
            self._check_rollback(read, committing=any(
                r.lineage == read.state.lineage and r.base == read.state.serial
                for r in records))
        numbered = [(f"{self.journal_path} line {n}", rec) for n, rec in enumerate(records, 1)]
        older = [(w, r) for w, r in numbered
                 if r.lineage == self._lineage and r.base < self._serial]
        lost = self._not_folded(older)  # against the document alone, before newer lines
        if lost:
            raise StateCorruptError(
                f"{self.journal_path} holds changes from serial {older[0][1].base} that "
                f"{self.path} (serial {self._serial}) does not, for {', '.join(lost[:5])}: the "
                "state file was replaced after they were written. Nothing was changed. Move "
                f"{self.journal_path} aside and keep it (it may hold private keys), then look "
                "at what it holds before applying again."
            )
        self._replay(numbered)
        self._journal_key = self._key
        if self._key is None and previous_key is not None:
            self._key = previous_key  # sealed with, not yet recorded

    def _read_document(self) -> StateDocument | None:
        try:
            with self._io(self.path, doing="read", outcome="Nothing was changed.",
                          missing_ok=True):
                data = read_regular(self.path, limit=_NO_LIMIT, follow=False,
                                    growing=True)
        except FileNotFoundError:
            if self.backup_path.exists():
                raise StateCorruptError(
                    f"{self.path} is missing but {self.backup_path} exists. Restore it with "
                    f"`cp -p {self.backup_path} {self.path}`, or remove the backup to start a "
                    "new, empty state."
                ) from None
            return None
        return decode_document(data, source=str(self.path))

    def _check_rollback(self, disk: StateDocument, *, committing: bool) -> None:
        """A state whose own backup is as new or newer (same lineage, serial at least its own)
        was replaced by that backup or by an older copy: refused for a write (``verify``),
        said for a read. Only what the backup shows is caught; see docs/security.md.

        Authenticated files only (format 2 and later): format 1 has no MAC to trust. The
        backup of a migration is the same state in an older format at the same serial, not a
        rollback, nor is that of a rekey (the same serial under another key); nor is the same
        inode (the crash window of a commit: the backup linked, the state not yet replaced),
        nor, where no link can be made, a copy of the same bytes while the journal holds the
        changes that commit was writing (``committing``: lines on this serial; a state
        replaced by its backup after the commit has none, the commit removed them)."""
        try:
            data = read_regular(self.backup_path, limit=_NO_LIMIT, follow=False, growing=True)
            backup = decode_document(data, source=str(self.backup_path))
            same = os.path.samefile(self.backup_path, self.path)
        except (OSError, StateError):
            return  # no backup, or one that cannot tell anything
        migrated = (backup.format_version < disk.format_version
                    and backup.state.serial == disk.state.serial)
        # a rekey seals the same state (same serial) under another key: not a rollback
        rekeyed = backup.key != disk.key and backup.state.serial == disk.state.serial
        if (disk.format_version < 2 or backup.format_version < 2 or migrated or rekeyed
                or backup.state.lineage != disk.state.lineage
                or backup.state.serial < disk.state.serial or same
                or (committing and backup.raw == disk.raw)):
            return
        if self._replaced_since(disk):
            # a commit between reading the state and its backup (a reader without the lock):
            # the backup is the state as read, replaced by a newer one; no rollback shown
            return
        message = (
            f"{self.path} is at serial {disk.state.serial} but its backup {self.backup_path} is "
            f"at serial {backup.state.serial} of the same state (lineage {disk.state.lineage}): "
            "the state file was replaced by its backup or by an older copy (a rollback), and "
            "what the newer serial held (private keys included) may be missing from it. Check "
            f"which file is current. If you restored {self.path} on purpose, move "
            f"{self.backup_path} aside (keep it: it may hold private keys) and run the command "
            "again.")
        if self._verify:
            raise StateTamperedError(f"{message} Nothing was changed.")
        self._say(f"Warning: {message}")

    def _replaced_since(self, disk: StateDocument) -> bool:
        try:
            now = read_regular(self.path, limit=_NO_LIMIT, follow=False, growing=True)
        except OSError:
            return True
        return now != disk.raw

    def _replays(self, rec: JournalRecord, *, where: str) -> bool:
        if rec.lineage != self._lineage:
            raise StateCorruptError(
                f"{where} belongs to another state (lineage {rec.lineage}; {self.path} has "
                f"lineage {self._lineage}). Nothing was changed. If {self.path} was "
                f"replaced on purpose, move {self.journal_path} aside (it may hold "
                "private keys: keep it)."
            )
        if rec.base < self._serial:
            return False  # folded in by a commit that died before removing the journal (checked)
        if rec.base > self._serial:
            raise StateCorruptError(
                f"{where} was written on top of serial {rec.base}, but {self.path} is at "
                f"serial {self._serial}: the state file was replaced by an older one. "
                f"Nothing was changed. Restore the newer state, or move {self.journal_path} "
                "aside (it may hold private keys: keep it)."
            )
        return True

    def _journal_aside(self) -> str:
        return f"move {self.journal_path} aside"

    # --- the journal -------------------------------------------------------------------------

    def _append(self, *, op: str, name: str, target: str, entry: StateKeyPair | None,
                durable: bool = True) -> None:
        at = keypair_address(name, target)
        with self._mutex:
            if op == "forget" and at not in self._entries:
                return
            lines, tag = self._journal_lines(op=op, name=name, target=target, entry=entry,
                                             with_key=self._key != self._journal_key,
                                             previous=self._chain)
            self._write_journal(lines)
            self._chain = tag
            self._journal_key = self._key
            self._change(at, entry)
            self._written += 1
            ticket, generation = self._written, self._journal_gen
        if durable:
            self._sync_journal(ticket=ticket, generation=generation)

    def _append_all(self, entries: Sequence[StateKeyPair], *, durable: bool) -> None:
        """Every line written in one write, then (``durable``) one fsync for all, the group
        commit of ``_append``: a kill -9 after it loses none; one before it may lose lines
        that nothing sent depended on yet. A write that fails records none of them."""
        addresses = [keypair_address(e.name, e.target) for e in entries]
        if len(set(addresses)) != len(addresses):  # a line depends on the one before it
            for i, entry in enumerate(entries, start=1):
                self._append(op="record", name=entry.name, target=entry.target, entry=entry,
                             durable=durable and i == len(entries))
            return
        with self._mutex:
            lines: list[bytes] = []
            previous = self._chain
            for entry in entries:
                line, previous = self._journal_lines(
                    op="record", name=entry.name, target=entry.target, entry=entry,
                    with_key=not lines and self._key != self._journal_key, previous=previous)
                lines.append(line)
            self._write_journal(b"".join(lines))
            self._chain = previous
            self._journal_key = self._key
            for at, entry in zip(addresses, entries, strict=True):
                self._change(at, entry)
            self._written += len(entries)
            ticket, generation = self._written, self._journal_gen
        if durable:
            self._sync_journal(ticket=ticket, generation=generation)

    def _write_journal(self, line: bytes) -> None:
        with self._io(self.journal_path):
            fd = self._open_journal()
        try:
            write_all(fd, line)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._journal_size)  # never leave half a line before the next
            raise StateError(
                f"{explain(exc, self.journal_path)}. This change was not recorded; the "
                f"previous state in {self.path} and the changes recorded before it are intact."
            ) from None
        self._journal_size += len(line)

    def _sync_journal(self, *, ticket: int, generation: int) -> None:
        """Group commit: one fsync covers every line written before it."""
        with self._sync_mutex:
            with self._mutex:
                if generation != self._journal_gen or self._synced >= ticket:
                    return  # folded into the state file, or already synced by another thread
                fd, target = self._journal_fd, self._written
            assert fd is not None
            with self._io(self.journal_path, doing="sync"):
                os.fsync(fd)
            self._synced = target

    def _open_journal(self) -> int:
        if self._journal_fd is not None:
            return self._journal_fd
        created = lstat_or_none(self.journal_path) is None
        fd = open_private(self.journal_path, os.O_RDWR | os.O_APPEND, create=True)
        try:
            os.fchmod(fd, 0o600)
            size = os.fstat(fd).st_size
            intact = _intact_length(fd, size)
            if intact != size:
                os.ftruncate(fd, intact)  # a torn line from a crash mid-append; never acked
                os.fsync(fd)
            if created:
                fsync_dir(self.path.parent)
        except BaseException:
            os.close(fd)
            raise
        self._journal_fd, self._journal_size = fd, intact
        return fd

    def _close_journal(self, *, sync: bool = False) -> None:
        if self._journal_fd is not None:
            fd, self._journal_fd = self._journal_fd, None
            try:
                if sync and self._synced < self._written:
                    with self._io(self.journal_path, doing="sync"):
                        os.fsync(fd)
            finally:
                os.close(fd)
        self._journal_gen += 1
        self._written = self._synced = 0

    # --- commit ------------------------------------------------------------------------------

    def commit(self) -> State:
        if self._needs_write():
            self._prepare_write()
        with self._exclusive():
            self._fold()
            self._journal_key = self._key
            self._close_journal()
            if lstat_or_none(self.journal_path) is not None:
                with self._io(self.journal_path, doing="remove",
                              outcome=f"{self.path} holds every change; remove "
                                      f"{self.journal_path} by hand."):
                    self.journal_path.unlink()  # only now: the state file above is durable
                    fsync_dir(self.path.parent)
            self._chain = ""
            return self._snapshot()

    def _write_document(self, data: bytes) -> None:
        directory = self.path.parent
        with self._io(directory, doing="clean up temporary files in"):
            self._remove_stale_temporaries()
        tmp = self.paths.temporary()
        with self._io(tmp):
            write_new_file(tmp, data)  # removed again if it cannot be written whole
        try:
            if lstat_or_none(self.path) is not None:
                self._keep_backup()
            with self._io(self.path, doing="replace"):
                os.replace(tmp, self.path)
        except BaseException:
            remove_quietly(tmp)
            raise
        with self._io(directory, doing="sync", outcome=f"{self.path} was replaced, but the "
                      "change may not survive a power cut; check the disk."):
            fsync_dir(directory)

    def _keep_backup(self) -> None:
        with self._io(self.backup_path):
            refuse_odd_target(self.backup_path)
        tmp = self.paths.temporary()
        try:
            try:
                os.link(self.path, tmp, follow_symlinks=False)
                os.chmod(tmp, 0o600)
            except OSError:  # no hard links here (some network file systems): copy instead
                remove_quietly(tmp)
                with self._io(tmp):
                    old = read_regular(self.path, limit=_NO_LIMIT, follow=False,
                                       growing=True)
                    write_new_file(tmp, old)
            with self._io(self.backup_path):
                os.replace(tmp, self.backup_path)
        except BaseException:
            remove_quietly(tmp)
            raise

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of a commit that was killed; under the lock nobody else writes.
        (A link planted under such a name is removed, never followed.)"""
        pattern = self.paths.temporary_pattern()
        for candidate in self.path.parent.iterdir():
            if pattern.fullmatch(candidate.name):
                with contextlib.suppress(FileNotFoundError):
                    candidate.unlink()

    def _has_document(self) -> bool:
        return lstat_or_none(self.path) is not None


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
