"""Durable writes of small private files: whole, 0600, fsynced, and their directory entries.

The state file, its backup and the state key file are written through these, and so is what
``reconciler output --out`` writes: a crash leaves either no file or the whole one.

May import: the stdlib.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


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
    """Create ``path`` (it must not exist) 0600 holding ``data``, fsynced."""
    write_fd(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), data)


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, 0600: a new file beside it (a random name,
    created exclusively, so no link is followed), fsynced, then renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    write_fd(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_dir(directory: Path) -> None:
    """Make a file's creation, rename or removal in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
