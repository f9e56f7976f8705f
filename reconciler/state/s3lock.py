"""The remote state lock: an object ``KEY.lock`` created only if absent (``If-None-Match: *``).

It holds the same lock info as the local lock (id, operation, who, created, version, path) and
is removed on release. Unlike a local ``flock``, nothing removes it when its process dies:
``reconciler force-unlock ID`` does, and only if the id matches.

Where the store ignores conditional writes, the lock is taken by read-then-write-then-read-back
(a narrow window remains in which two writers could both believe they hold it); the store says
so once when it finds out.

May import: ``reconciler.errors``, ``reconciler.state.*``, the stdlib.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import datetime

from reconciler.errors import StateError, StateLockError
from reconciler.state.lockinfo import (
    check_lock_id,
    encode_lock_info,
    lock_message,
    new_lock_info,
    parse_lock_info,
)
from reconciler.state.s3io import ConditionFailed, Objects

_FIRST_POLL = 0.1
_LONGEST_POLL = 0.5


class S3Lock:
    """Acquire, release and force-unlock ``KEY.lock``. Not re-entrant."""

    def __init__(
        self,
        objects: Objects,
        *,
        key: str,
        url: str,
        who: str,
        clock: Callable[[], datetime],
        conditional: Callable[[], bool],
        notice: Callable[[str], None],
    ) -> None:
        self._objects = objects
        self.key = f"{key}.lock"
        self._url = url
        self._who = who
        self._clock = clock
        self._conditional = conditional
        self._notice = notice
        self._held: dict[str, str] | None = None

    def acquire(self, *, operation: str, timeout: float) -> dict[str, str]:
        if self._held is not None:
            raise StateLockError(f"{self._url} is already locked by this command.")
        deadline = time.monotonic() + max(0.0, timeout)
        delay = _FIRST_POLL
        while True:
            info = new_lock_info(operation=operation, who=self._who, path=self._url,
                                 clock=self._clock)
            if self._try_create(info):
                self._held = info
                return dict(info)
            current = self._objects.get(self.key)
            if current is None:
                continue  # released between our attempt and the read: try again at once
            held = parse_lock_info(current[0])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StateLockError(lock_message(held), lock_info=held)
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _LONGEST_POLL)

    def _try_create(self, info: dict[str, str]) -> bool:
        body = encode_lock_info(info)
        if self._conditional():
            try:
                self._objects.put(self.key, body, if_none_match=True)
            except ConditionFailed:
                return False
            return True
        if self._objects.head(self.key) is not None:
            return False
        self._objects.put(self.key, body)
        time.sleep(_FIRST_POLL)  # let a racing writer's PUT land before reading back
        current = self._objects.get(self.key)
        return current is not None and parse_lock_info(current[0]).get("id") == info["id"]

    def release(self) -> None:
        info, self._held = self._held, None
        if info is None:
            return
        try:
            current = self._objects.get(self.key)
            if current is not None and parse_lock_info(current[0]).get("id") == info["id"]:
                # else force-unlocked, perhaps re-taken: keep. Conditional, so that a lock
                # taken between the read and the delete survives.
                with contextlib.suppress(ConditionFailed):
                    self._objects.delete(self.key, if_match=self._etag(current[1]))
        except StateError as exc:
            self._notice(
                f"Warning: could not release the state lock {self._url}.lock ({exc}). Remove it "
                f"with `reconciler force-unlock {info['id']}` once nothing else uses the state."
            )

    def force_unlock(self, lock_id: str) -> None:
        current = self._objects.get(self.key)
        if current is None:
            raise StateLockError(f"{self._url} is not locked; nothing to unlock.")
        check_lock_id(parse_lock_info(current[0]), lock_id, where=self._url)
        try:
            self._objects.delete(self.key, if_match=self._etag(current[1]))
        except ConditionFailed:
            raise StateLockError(f"the lock on {self._url} changed while it was being removed "
                                 "(taken again); look at it again before unlocking") from None

    def _etag(self, etag: str) -> str | None:
        """The condition for a delete, where the store honours conditions."""
        return etag if self._conditional() else None
