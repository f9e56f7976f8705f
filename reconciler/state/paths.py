"""Where a local state's files are: the state path resolved once, and the names beside it.

A state path that is a symbolic link (or lies under one) is followed once, here, to the real
file; ``STATE.lock``, ``STATE.journal``, ``STATE.backup`` and the temporary files all live
beside that real file. So a run through the link and a run through the real path take the
same lock and write the same journal, and the link itself is never replaced by a regular
file. A link to a file that does not exist yet is followed too: the state is created there.

The path must name a regular file (or nothing yet) in a directory that exists: ``--state /``,
a directory, a FIFO, a socket or a device is refused before anything is created, and so is
a path whose directory is missing.

May import: ``reconciler.errors``, ``reconciler.fsutil``, the stdlib.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import StateError
from reconciler.fsutil import kind_of, lstat_or_none


@dataclass(frozen=True, slots=True)
class StatePaths:
    """The real state file and its companions (every one in the same directory)."""

    given: Path
    state: Path

    @property
    def directory(self) -> Path:
        return self.state.parent

    def beside(self, suffix: str) -> Path:
        return self.state.with_name(f"{self.state.name}.{suffix}")

    @property
    def lock(self) -> Path:
        return self.beside("lock")

    @property
    def journal(self) -> Path:
        return self.beside("journal")

    @property
    def backup(self) -> Path:
        return self.beside("backup")

    def owns(self, path: Path) -> bool:
        """Whether ``path`` (followed as a write would follow it) is the state file or a file
        beside it that the state writes: its lock, journal, backup or a temporary (each name
        starts with the state file's)."""
        where = Path(os.path.realpath(path))
        name = self.state.name
        return where.parent == self.state.parent and (
            where.name == name or where.name.startswith((f"{name}.", f".{name}.")))

    def temporary(self) -> Path:
        """A fresh temporary name beside the state (``temporary_pattern`` matches it)."""
        return self.directory / f".{self.state.name}.{secrets.token_hex(6)}.tmp"

    def temporary_pattern(self) -> re.Pattern[str]:
        return re.compile(rf"\.{re.escape(self.state.name)}\.[0-9a-f]{{12}}\.tmp")


def state_paths(given: Path) -> StatePaths:
    """Resolve ``given`` once and check what it names; ``StateError`` naming it otherwise."""
    given = Path(given)
    real = Path(os.path.realpath(given))
    shown = str(given) if real == given.absolute() else f"{given} (which is {real})"
    try:
        return _check(given, real, shown)
    except OSError as exc:
        raise StateError(f"cannot use the state path {shown}: {exc.strerror}; check the "
                         "permissions of its directories. Nothing was written.") from None


def _check(given: Path, real: Path, shown: str) -> StatePaths:
    st = lstat_or_none(real)
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise StateError(f"the state path {shown} is a symbolic link that does not resolve "
                         "(a loop?); give --state the path of the state file itself.")
    if st is not None and stat.S_ISDIR(st.st_mode):
        example = real / "reconciler.state.json"
        raise StateError(f"the state path {shown} is a directory; give --state a file, e.g. "
                         f"--state {example}. Nothing was written.")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise StateError(f"the state path {shown} is {kind_of(st.st_mode)}, not a state file; "
                         "give --state the path of a regular file. Nothing was written.")
    parent = lstat_or_none(real.parent)
    if parent is None or not stat.S_ISDIR(parent.st_mode):
        what = "does not exist" if parent is None else f"is {kind_of(parent.st_mode)}"
        raise StateError(f"the directory {real.parent} of the state file {shown} {what}; "
                         f"create it (`mkdir -p {real.parent}`) or give --state a path in an "
                         "existing directory. Nothing was written.")
    return StatePaths(given=given, state=real)
