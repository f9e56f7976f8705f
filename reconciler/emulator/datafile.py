"""The emulator's ``--data`` file: every project's key pairs, kept across restarts.

Loaded at start, saved atomically (temp file, fsync, rename, mode 0600: custody private keys
live in it) by a background writer at most every ``SAVE_INTERVAL`` seconds after a change,
and once more on ``close``.

Format 2 (written)::

    {"format_version": 2, "default_project": ID,
     "projects": [{"project_id", "region", "domain_id", "next_id", "keypairs": [...]}]}

Format 1 (read, the single-store file of earlier releases) is
``{"format_version": 1, "next_id", "keypairs": [...]}``: ``migrate_v1`` makes it format 2
with its key pairs in the default project. The default project's key pairs load into the
emulator's default project whatever its id is now (as format 1 always did), other projects
keep their ids.

May import: ``reconciler.emulator.{store,projects}``, the standard library.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from reconciler.emulator.projects import DEFAULT_REGION, Projects
from reconciler.emulator.store import Record

FORMAT_VERSION = 2
SAVE_INTERVAL = 0.05


def migrate_v1(doc: dict[str, Any], *, default_id: str) -> dict[str, Any]:
    """A format-1 document as format 2: one project, the default, in the default region."""
    keypairs = doc["keypairs"]
    if not isinstance(keypairs, list):
        raise TypeError("keypairs is not a list")
    project = {"project_id": default_id, "region": DEFAULT_REGION, "domain_id": None,
               "next_id": int(doc.get("next_id", len(keypairs) + 1)), "keypairs": keypairs}
    return {"format_version": 2, "default_project": default_id, "projects": [project]}


def _read(path: Path, *, default_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise TypeError("not a JSON object")
    if doc.get("format_version") == 1:
        doc = migrate_v1(doc, default_id=default_id)
    if doc.get("format_version") != FORMAT_VERSION or not isinstance(doc["projects"], list):
        raise ValueError("not of a known format")
    return doc


class DataFile:
    """One ``--data`` file and its background writer, for one ``Projects``."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._projects: Projects | None = None
        self._dirty = threading.Event()
        self._closing = threading.Event()
        self._saver: threading.Thread | None = None

    def changed(self) -> None:
        self._dirty.set()

    def load(self, projects: Projects) -> None:
        """Fill ``projects`` from the file (nothing when there is none yet)."""
        if not self.path.exists():
            return
        try:
            doc = _read(self.path, default_id=projects.default_id)
            entries = []
            for entry in doc["projects"]:
                records = [Record(**item) for item in entry["keypairs"]]
                entries.append((str(entry["project_id"]), str(entry["region"]),
                                entry.get("domain_id"), records, int(entry["next_id"])))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{self.path} is not an emulator data file of format 1 or "
                             f"{FORMAT_VERSION} ({type(exc).__name__}); move it aside or give "
                             "another --data file") from None
        old_default = doc.get("default_project")
        for pid, region, domain_id, records, next_id in entries:
            here = projects.default_id if pid == old_default else pid
            if here == projects.default_id and pid != old_default:
                raise ValueError(f"{self.path}: project {pid} is in the data file both as "
                                 "the default project and another one; start with another "
                                 "--project-id or move the file aside")
            if here == projects.default_id:
                project = projects.default
            else:
                project = projects.add(here, region=region,
                                       domain_id=str(domain_id) if domain_id else None)
            project.store.restore(records, next_id=next_id)

    def start(self, projects: Projects) -> None:
        """Begin saving ``projects`` after each change (loading and setting up are no change)."""
        self._projects = projects
        self._dirty.clear()
        self._saver = threading.Thread(target=self._save_loop, name="emulator-store-saver")
        self._saver.daemon = True
        self._saver.start()

    def _document(self, projects: Projects) -> dict[str, Any]:
        entries = []
        for project in projects.all():
            records, next_id = project.store.snapshot()
            entries.append({"project_id": project.id, "region": project.region,
                            "domain_id": project.domain_id, "next_id": next_id,
                            "keypairs": [asdict(r) for r in records]})
        return {"format_version": FORMAT_VERSION, "default_project": projects.default_id,
                "projects": entries}

    def save(self) -> None:
        """Write every project now (atomically, 0600)."""
        if self._projects is None:
            return
        self._dirty.clear()
        data = json.dumps(self._document(self._projects), separators=(",", ":")).encode()
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
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
