"""Durable writes of small private files: whole, 0600, fsynced, and their directory entries.

The state file, its backup and the state key file are written through these, and so is what
``reconciler output --out`` writes: a crash leaves either no file or the whole one, and so
does a failed write (a full disk, a quota, ``EIO``, the file size limit): the temporary or
new file is removed and the ``OSError`` goes to the caller, which names the file. Names are
opened by ``reconciler.fsutil``'s policy: never through a link, created exclusively, 0600.

May import: ``reconciler.fsutil``, the stdlib.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from reconciler.fsutil import open_private, refuse_odd_target, remove_quietly


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` (``os.write`` may write less than it was given)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_fd(fd: int, data: bytes) -> None:
    """Make ``fd`` 0600, write all of ``data``, fsync it, and close it (also on failure)."""
    try:
        os.fchmod(fd, 0o600)
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) 0600 holding ``data``, fsynced; on failure the
    file is removed again."""
    fd = open_private(path, os.O_WRONLY, new=True)
    try:
        write_fd(fd, data)
    except BaseException:
        remove_quietly(path)
        raise


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, 0600: a new file beside it (a random name,
    created exclusively, so no link is followed), fsynced, then renamed over ``path``.

    A symbolic link, a directory or another odd file at ``path`` is refused, not replaced.
    """
    refuse_odd_target(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    write_new_file(tmp, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise


def fsync_dir(directory: Path) -> None:
    """Make a file's creation, rename or removal in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
