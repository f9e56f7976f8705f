"""The local state store: one file, its journal, its backup and its lock.

Files beside ``STATE`` (all 0600):

- ``STATE``          the document (``codec``), replaced atomically on commit;
- ``STATE.backup``   the previous document (a hard link to the old file: no bytes copied);
- ``STATE.journal``  changes since the last commit, one JSON line each, authenticated and
                     chained (``codec``), appended and fsynced by ``record``/``forget`` before
                     they return;
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
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from reconciler.errors import StateCorruptError, StateError
from reconciler.model import State, StateKeyPair
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
    ) -> None:
        super().__init__(environ=environ, notice=notice, verify=verify)
        self.path = Path(path)
        self.description = str(self.path)
        self.backup_path = self._beside("backup")
        self.journal_path = self._beside("journal")
        self.lock_path = self._beside("lock")
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

    def _beside(self, suffix: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{suffix}")

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
            journal = self.journal_path.read_bytes()
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

    def _append(self, *, op: str, name: str, entry: StateKeyPair | None,
                durable: bool = True) -> None:
        with self._mutex:
            if op == "forget" and name not in self._entries:
                return
            lines, tag = self._journal_lines(op=op, name=name, entry=entry,
                                             with_key=self._key != self._journal_key,
                                             previous=self._chain)
            self._write_journal(lines)
            self._chain = tag
            self._journal_key = self._key
            self._change(name, entry)
            self._written += 1
            ticket, generation = self._written, self._journal_gen
        if durable:
            self._sync_journal(ticket=ticket, generation=generation)

    def _write_journal(self, line: bytes) -> None:
        fd = self._open_journal()
        try:
            write_all(fd, line)
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
        if self._needs_write():
            self._prepare_write()
        with self._exclusive():
            self._fold()
            self._journal_key = self._key
            self._close_journal()
            if self.journal_path.exists():
                self.journal_path.unlink()  # only now: the state file above is durable
                fsync_dir(self.path.parent)
            self._chain = ""
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

    def _has_document(self) -> bool:
        return self.path.exists()


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
