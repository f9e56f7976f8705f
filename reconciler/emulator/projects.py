"""The projects the emulator serves: each with a region, an owning account, its own key pairs,
its own counters, and an optional outage.

A ``Project`` is known by its id (the ``{project_id}`` of every key pair API path). The
default project is the emulator's ``project_id``; more are added by the constructor, the
admin path or ``Emulator.add_project``. ``domain_id`` None means the emulator's own account
(its permanent AK/SK reach the project); another account's projects are reached only through
an agency's temporary credentials.

May import: ``reconciler.emulator.{store,faults}``, the standard library.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler.emulator.faults import Counters
from reconciler.emulator.store import Store

PROJECT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
REGION_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
DEFAULT_REGION = "cn-north-4"


@dataclass(frozen=True, slots=True)
class Outage:
    """How an unreachable project's requests fail: ``status`` None drops the connection;
    ``retry_after`` (seconds) adds that ``Retry-After`` header to a status answer."""

    status: int | None = None
    retry_after: float | None = None


@dataclass(slots=True)
class Project:
    id: str
    region: str
    store: Store
    domain_id: str | None = None  # None: the emulator's own account
    counters: Counters = field(default_factory=Counters)
    outage: Outage | None = None


def check_project(project_id: object, region: object) -> tuple[str, str]:
    """A valid (project id, region) pair, or ``ValueError`` saying which is wrong."""
    if not isinstance(project_id, str) or PROJECT_ID_RE.fullmatch(project_id) is None:
        raise ValueError("project_id must be 1 to 64 letters, digits, '_' or '-'")
    if not isinstance(region, str) or REGION_RE.fullmatch(region) is None:
        raise ValueError("region must be a region name such as cn-north-4 (lower case, "
                         "digits and '-')")
    return project_id, region


class Projects:
    """Thread-safe registry of projects; the default one can never be removed."""

    def __init__(self, *, default_id: str, region: str,
                 on_change: Callable[[], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._on_change = on_change
        self.default_id = default_id
        self._projects: dict[str, Project] = {}
        self._initial: set[str] = set()
        self.add(default_id, region=region)

    def add(self, project_id: str, *, region: str, domain_id: str | None = None) -> Project:
        """Add a project (or change the region and account of a known one, keeping its keys)."""
        check_project(project_id, region)
        with self._lock:
            known = self._projects.get(project_id)
            if known is not None:
                known.region, known.domain_id = region, domain_id
                project = known
            else:
                project = Project(project_id, region, Store(on_change=self._on_change),
                                  domain_id)
                self._projects[project_id] = project
        if self._on_change is not None:
            self._on_change()
        return project

    def seal(self) -> None:
        """Remember the projects present now: ``reset`` keeps these and drops later ones."""
        with self._lock:
            self._initial = set(self._projects)

    def get(self, project_id: str | None) -> Project | None:
        if project_id is None:
            return None
        with self._lock:
            return self._projects.get(project_id)

    @property
    def default(self) -> Project:
        with self._lock:
            return self._projects[self.default_id]

    def all(self) -> list[Project]:
        """Every project, the default first, then by id."""
        with self._lock:
            rest = sorted(pid for pid in self._projects if pid != self.default_id)
            return [self._projects[pid] for pid in (self.default_id, *rest)]

    def set_outage(self, project_id: str, outage: Outage | None) -> Project:
        with self._lock:
            project = self._projects.get(project_id)
            if project is None:
                raise KeyError(project_id)
            project.outage = outage
            return project

    def reset(self) -> None:
        """Empty every store, zero every counter, end every outage, forget added projects."""
        with self._lock:
            for pid in set(self._projects) - self._initial - {self.default_id}:
                del self._projects[pid]
            projects = list(self._projects.values())
        for project in projects:
            project.store.clear()
            project.counters.clear()
            project.outage = None
