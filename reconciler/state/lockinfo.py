"""What a state lock says about its holder, and the error shown to whoever waits for it.

Both locks (the local ``flock`` file and the remote lock object) hold the same JSON: ``id``,
``operation``, ``who`` (user@host), ``created`` (UTC, ISO 8601), ``version`` and ``path``.
``force-unlock`` removes a lock only when given its ``id``.

May import: ``reconciler``, ``reconciler.errors``, the stdlib.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from reconciler import __version__
from reconciler.errors import StateLockError


def who(environ: Mapping[str, str]) -> str:
    """``user@host`` of this process; the user from the injected environment if it says."""
    return f"{_user(environ)}@{socket.gethostname()}"


def new_lock_info(*, operation: str, who: str, path: str,
                  clock: Callable[[], datetime]) -> dict[str, str]:
    """The info of a lock about to be taken, with a fresh id."""
    return {
        "id": str(uuid.uuid4()),
        "operation": operation,
        "who": who,
        "created": clock().astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "version": __version__,
        "path": path,
    }


def encode_lock_info(info: Mapping[str, str]) -> bytes:
    return json.dumps(info, indent=2).encode() + b"\n"


def parse_lock_info(data: bytes) -> dict[str, str]:
    """The info in a lock's bytes; ``{}`` for anything unreadable (a lock half written)."""
    try:
        obj = json.loads(data)
    except ValueError:
        return {}
    if not isinstance(obj, dict):
        return {}
    return {str(k): str(v) for k, v in obj.items()}


def check_lock_id(info: Mapping[str, str], lock_id: str, *, where: str) -> None:
    """``StateLockError`` unless the lock on ``where`` has the id ``force-unlock`` was given."""
    if info.get("id") != lock_id:
        raise StateLockError(
            f"lock ID {lock_id!r} does not match the lock on {where} (its ID is "
            f"{info.get('id', 'unknown')!r}); nothing was removed. Use the ID shown in the "
            "lock error.",
            lock_info=dict(info),
        )


def lock_message(info: Mapping[str, str]) -> str:
    def get(key: str) -> str:
        return info.get(key) or "(unknown)"

    return (
        "Error acquiring the state lock\n\nLock Info:\n"
        f"  ID:        {get('id')}\n  Path:      {get('path')}\n"
        f"  Operation: {get('operation')}\n  Who:       {get('who')}\n"
        f"  Version:   {get('version')}\n  Created:   {get('created')}\n\n"
        "reconciler acquires a state lock to protect the state from being written by multiple "
        "users at the same time. Please resolve the issue above and try again. If the lock is "
        f"stale (its process is gone), remove it with `reconciler force-unlock {get('id')}`."
    )


def _user(environ: Mapping[str, str]) -> str:
    name = environ.get("USER") or environ.get("LOGNAME")
    if name:
        return name
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
