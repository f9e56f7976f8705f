"""One project's key pairs in the emulator, shared by the v2, v2.1 and kps APIs.

A dict of records plus a sorted list of names (``bisect``), guarded by one lock, so that a
page of a 10,000-entry list costs O(log N + page). Every project has its own ``Store``
(``reconciler.emulator.projects``); persistence to the ``--data`` file is
``reconciler.emulator.datafile``'s business, told of each change through ``on_change``.

May import: the standard library only.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Record:
    """One key pair. ``private_key`` is set only when the cloud keeps it (custody)."""

    name: str
    public_key: str
    fingerprint: str
    type: str
    user_id: str
    id: int
    created_ms: int
    updated_ms: int
    scope: str = "user"
    description: str = ""
    key_protection: bool = False
    encryption: dict[str, str] = field(default_factory=dict)
    private_key: str | None = None
    frozen_state: int = 0  # kps: 0 normal; set by tests (``Emulator.freeze``)


class StoreError(Exception):
    """A store-level conflict: ``kind`` is ``exists`` or ``missing``."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind}: {name}")


def now_ms() -> int:
    return int(time.time() * 1000)


class Store:
    """Thread-safe key pairs by name, in name order."""

    def __init__(self, *, on_change: Callable[[], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, Record] = {}
        self._names: list[str] = []
        self._next_id = 1
        self._on_change = on_change

    # -- reads ---------------------------------------------------------------------------

    def get(self, name: str) -> Record | None:
        with self._lock:
            return self._records.get(name)

    def count(self) -> int:
        with self._lock:
            return len(self._names)

    def all(self) -> list[Record]:
        with self._lock:
            return [self._records[n] for n in self._names]

    def page(self, *, marker: str | None, limit: int | None) -> tuple[list[Record], bool]:
        """Records after ``marker`` (by name), at most ``limit``; and whether more follow."""
        with self._lock:
            start = bisect.bisect_right(self._names, marker) if marker else 0
            end = len(self._names) if limit is None else min(start + limit, len(self._names))
            names = self._names[start:end]
            return [self._records[n] for n in names], end < len(self._names)

    # -- writes --------------------------------------------------------------------------

    def add(self, make: Callable[[int], Record]) -> Record:
        """Insert ``make(id)``; ``StoreError('exists')`` if the name is taken."""
        with self._lock:
            record = make(self._next_id)
            if record.name in self._records:
                raise StoreError("exists", record.name)
            self._next_id += 1
            self._records[record.name] = record
            bisect.insort(self._names, record.name)
        self._changed()
        return record

    def update(self, name: str, **changes: Any) -> Record:
        with self._lock:
            old = self._records.get(name)
            if old is None:
                raise StoreError("missing", name)
            new = replace(old, updated_ms=now_ms(), **changes)
            self._records[name] = new
        self._changed()
        return new

    def delete(self, name: str) -> Record:
        with self._lock:
            old = self._records.pop(name, None)
            if old is None:
                raise StoreError("missing", name)
            del self._names[bisect.bisect_left(self._names, name)]
        self._changed()
        return old

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._names.clear()
        self._changed()

    # -- persistence (the data file's view) ---------------------------------------------

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def snapshot(self) -> tuple[list[Record], int]:
        """The records in name order and the next id, read under the lock at once."""
        with self._lock:
            return [self._records[n] for n in self._names], self._next_id

    def restore(self, records: list[Record], *, next_id: int) -> None:
        """Replace the contents (a data file being loaded); no change is signalled."""
        with self._lock:
            self._records = {r.name: r for r in records}
            self._names = sorted(self._records)
            self._next_id = max(next_id, max((r.id for r in records), default=0) + 1)
