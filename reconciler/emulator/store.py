"""The emulator's one key pair store, shared by the v2, v2.1 and kps APIs.

A dict of records plus a sorted list of names (``bisect``), guarded by one lock, so that a
page of a 10,000-entry list costs O(log N + page). Optionally persisted to a JSON file:
loaded at start, saved atomically (temp file, fsync, rename, mode 0600: custody private keys
live in it) by a background writer at most every ``SAVE_INTERVAL`` seconds after a change,
and once more on ``close``.

May import: the standard library only.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
SAVE_INTERVAL = 0.05


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

    def __init__(self, *, path: str | None = None) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, Record] = {}
        self._names: list[str] = []
        self._next_id = 1
        self._path = Path(path) if path else None
        self._dirty = threading.Event()
        self._closing = threading.Event()
        self._saver: threading.Thread | None = None
        if self._path is not None:
            self._load(self._path)
            self._saver = threading.Thread(target=self._save_loop, name="emulator-store-saver")
            self._saver.daemon = True
            self._saver.start()

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

    # -- persistence ---------------------------------------------------------------------

    def _changed(self) -> None:
        if self._path is not None:
            self._dirty.set()

    def _snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "format_version": FORMAT_VERSION,
                "next_id": self._next_id,
                "keypairs": [asdict(self._records[n]) for n in self._names],
            }

    def _load(self, path: Path) -> None:
        if not path.exists():
            return
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("format_version") != FORMAT_VERSION:
                raise ValueError("not of the expected format")
            records = [Record(**item) for item in doc["keypairs"]]
            next_id = int(doc.get("next_id", len(records) + 1))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path} is not an emulator data file of format {FORMAT_VERSION} "
                             f"({type(exc).__name__}); move it aside or give another --data "
                             "file") from None
        for record in records:
            self._records[record.name] = record
        self._names = sorted(self._records)
        self._next_id = next_id

    def save(self) -> None:
        """Write the store now (atomically, 0600); a no-op without a data file."""
        if self._path is None:
            return
        self._dirty.clear()
        data = json.dumps(self._snapshot(), separators=(",", ":")).encode()
        directory = self._path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self._path.name}.", dir=directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _save_loop(self) -> None:
        while not self._closing.is_set():
            if self._dirty.wait(timeout=0.5):
                time.sleep(SAVE_INTERVAL)
                self.save()

    def close(self) -> None:
        """Stop the background writer and save what is pending."""
        self._closing.set()
        if self._saver is not None:
            self._dirty.set()
            self._saver.join(timeout=5)
            self._saver = None
            self.save()
