"""The local state lock: ``fcntl.flock`` on ``STATE.lock``, which also holds the lock info.

The kernel releases a ``flock`` when its process dies, so a local lock is never stale; the
file is removed on release. Whoever locks a file that its previous holder unlinked just then
locks it again (``_same_file``), so two holders never believe they hold two different files.
The file is opened by ``reconciler.fsutil``'s policy: a link or odd file planted at its name
is an error, and nothing is written through it.

May import: ``reconciler.errors``, ``reconciler.fsutil``, ``reconciler.state.lockinfo``,
the stdlib.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from reconciler.errors import StateError, StateLockError
from reconciler.fsutil import UnsafeFileError, explain, open_private
from reconciler.state.lockinfo import (
    check_lock_id,
    encode_lock_info,
    lock_message,
    new_lock_info,
    parse_lock_info,
    who,
)

_POLL_SECONDS = 0.05


class FileLock:
    """Acquire, release and force-unlock the lock file of the state at ``state_path``."""

    def __init__(self, lock_path: Path, *, state_path: Path, environ: Mapping[str, str],
                 clock: Callable[[], datetime]) -> None:
        self.path = lock_path
        self._state_path = state_path
        self._environ = environ
        self._clock = clock
        self._fd: int | None = None

    def acquire(self, *, operation: str, timeout: float) -> dict[str, str]:
        if self._fd is not None:
            raise StateLockError(f"{self._state_path} is already locked by this command.")
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            try:
                fd = open_private(self.path, os.O_RDWR, create=True)
            except UnsafeFileError as exc:
                raise StateError(f"{explain(exc, self.path, doing='lock')}. Nothing was "
                                 "written.") from None
            except OSError as exc:
                raise StateError(f"cannot create the lock file {self.path}: {exc.strerror}; "
                                 "check that the state's directory exists and is "
                                 "writable. Nothing was written.") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held = _read_lock_info(fd)
                os.close(fd)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StateLockError(lock_message(held), lock_info=held) from None
                time.sleep(min(_POLL_SECONDS, remaining))
                continue
            if not _same_file(fd, self.path):
                os.close(fd)  # unlinked by its previous holder just as we locked it
                continue
            info = new_lock_info(operation=operation, who=who(self._environ),
                                 path=str(self._state_path), clock=self._clock)
            try:
                os.fchmod(fd, 0o600)
                os.ftruncate(fd, 0)
                _pwrite_all(fd, encode_lock_info(info))
                os.fsync(fd)
            except OSError as exc:
                self._fd = fd
                self.release()  # never leave an empty lock file behind
                raise StateError(f"{explain(exc, self.path)}. Nothing was written; the "
                                 "state is unchanged.") from None
            self._fd = fd
            return info

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                with contextlib.suppress(OSError):  # the kernel releases the lock anyway
                    self.path.unlink()
        finally:
            os.close(fd)

    def force_unlock(self, lock_id: str) -> None:
        """Remove a lock its process left behind; never one a running process holds (its
        later writes would land in a journal another run has folded and removed)."""
        try:
            fd = open_private(self.path, os.O_RDWR)
        except FileNotFoundError:
            raise StateLockError(f"{self._state_path} is not locked; nothing to unlock.") from None
        except OSError as exc:
            raise StateError(f"{explain(exc, self.path, doing='unlock')}. Nothing was "
                             "removed.") from None
        try:
            info = _read_lock_info(fd)
            check_lock_id(info, lock_id, where=str(self._state_path))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StateLockError(
                    f"the lock {lock_id} on {self._state_path} is held by a running process "
                    f"({info.get('who', 'unknown')}, {info.get('operation', 'unknown')}); stop "
                    "that process instead: its lock goes with it") from None
            if _same_file(fd, self.path):
                self.path.unlink()
        finally:
            os.close(fd)


def _pwrite_all(fd: int, data: bytes) -> None:
    """All of ``data`` from offset 0: a short write (a file size limit) is retried, so that
    it fails with its reason instead of leaving half the lock info."""
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], done)


def _read_lock_info(fd: int) -> dict[str, str]:
    try:
        return parse_lock_info(os.pread(fd, 65536, 0))
    except OSError:
        return {}


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)
