"""The files a run must never write anything else to: the local state, the files beside it
(lock, journal, backup, temporaries) and the state key file.

A saved plan, a generated manifest or a delivered private key aimed at one of them would
replace the state (the private keys with it) or the key that opens it, so every command that
writes a file the user names asks here first.

May import: ``reconciler.state.paths``, ``reconciler.state.crypto``, ``reconciler.state.protocol``,
the stdlib.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from reconciler.state.crypto import KEY_FILE_ENV, default_key_path
from reconciler.state.paths import StatePaths
from reconciler.state.protocol import StateStore


def state_file_clash(path: Path, store: StateStore | None, *,
                     environ: Mapping[str, str]) -> str | None:
    """What of the state ``path`` names (followed as a write follows it), or ``None``."""
    paths = getattr(store, "paths", None)
    if isinstance(paths, StatePaths) and paths.owns(path):
        return f"where the state ({paths.state}) or a file beside it is written"
    where = os.path.realpath(path)
    for key in (environ.get(KEY_FILE_ENV), default_key_path(environ)):
        if key and where == os.path.realpath(key):
            return "the state key file"
    return None
