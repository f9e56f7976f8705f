"""The values plan and apply exchange with the kinds: actions, changes, drift, the plan, and
each change's outcome. No rules live here: what a change of a kind means is the kind's.

May import: ``reconciler.model``, ``reconciler.address``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from reconciler.address import Address, keypair_address
from reconciler.model import (
    Api,
    DesiredKeyPair,
    ImportRequest,
    RemoteKeyPair,
    State,
    StateKeyPair,
)


class Action(StrEnum):
    """What apply does to one key pair. Glyphs belong to the text renderer."""

    CREATE = "create"
    IMPORT = "import"  # adopt into state; no API write
    UPDATE = "update"  # in place (kps description, custody); with ``importing``: adopt first
    REPLACE = "replace"  # delete, then create
    DELETE = "delete"
    FORGET = "forget"  # drop from state, no API call: counted, because a private key goes
    NOOP = "no-op"


class Mode(StrEnum):
    NORMAL = "normal"
    DESTROY = "destroy"
    REFRESH_ONLY = "refresh-only"


class DriftKind(StrEnum):
    DELETED = "deleted"
    CHANGED = "changed"  # another key under the name
    CUSTODY = "custody"  # the same key; the cloud's custody of its private key added or cleared


# Terraform's action_reason values, for tools that read the JSON plan.
REASON_CANNOT_UPDATE = "replace_because_cannot_update"
REASON_TAINTED = "replace_because_tainted"
REASON_BY_REQUEST = "replace_by_request"
REASON_ROTATION = "replace_by_triggers"
REASON_NO_CONFIG = "delete_because_no_resource_config"
REASON_GONE = "forget_because_deleted_outside"
REASON_REKEYED = "forget_because_changed_outside"
REASON_TARGET_FORGOTTEN = "forget_because_target_forgotten"


def tally(actions: Iterable[Action], *, imported: int = 0, rotated: int = 0) -> dict[str, int]:
    """Terraform's counts: a replacement is one add and one destroy; an adoption updated in
    place (``Change.importing``, counted in ``imported``) is one import and one change. A
    rotation without a gap (counted in ``rotated``) is one add: its destroy is the deposed
    generation's own change, counted when it is planned and when it is done."""
    out = {"import": imported, "add": 0, "change": 0, "destroy": 0, "forget": 0}
    for action in actions:
        if action is Action.IMPORT:
            out["import"] += 1
        elif action is Action.UPDATE:
            out["change"] += 1
        elif action is Action.FORGET:
            out["forget"] += 1
        if action in (Action.CREATE, Action.REPLACE):
            out["add"] += 1
        if action in (Action.DELETE, Action.REPLACE):
            out["destroy"] += 1
    out["destroy"] -= rotated
    return out


@dataclass(frozen=True, slots=True)
class PlanOptions:
    mode: Mode = Mode.NORMAL
    targets: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()
    # --allow-bound-delete: delete a key pair that servers still use (the plan warns).
    allow_bound_delete: bool = False


@dataclass(frozen=True, slots=True)
class Drift:
    """A key pair that changed in the cloud behind reconciler's back."""

    name: str
    kind: DriftKind
    before: Mapping[str, Any]
    after: Mapping[str, Any] | None
    at: Address | None = None  # None: the key pair of that name in the run's only target

    @property
    def address(self) -> Address:
        return self.at if self.at is not None else keypair_address(self.name)


@dataclass(frozen=True, slots=True)
class Change:
    """One key pair's planned change. ``reason`` is for people; apply never branches on it."""

    name: str
    action: Action
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    after_unknown: tuple[str, ...] = ()
    replace_paths: tuple[str, ...] = ()
    reason: str | None = None
    notes: tuple[str, ...] = ()
    desired: DesiredKeyPair | None = None
    prior: StateKeyPair | None = None
    remote: RemoteKeyPair | None = None
    at: Address | None = None  # None: the key pair of that name in the run's only target
    # An UPDATE of a key pair adopted by this change (Terraform's import with an in-place
    # update): apply records it as the cloud holds it (``before``), then makes the update.
    importing: bool = False

    @property
    def address(self) -> Address:
        return self.at if self.at is not None else keypair_address(self.name)

    @property
    def rotating(self) -> bool:
        """A replacement by a new generation, the old one kept until its servers moved
        (``kinds.generations``): created before anything is destroyed."""
        if self.action is not Action.REPLACE:
            return False
        old = (self.before or {}).get("cloud_name")
        new = (self.after or {}).get("cloud_name")
        return isinstance(old, str) and isinstance(new, str) and old != new


@dataclass(frozen=True, slots=True)
class Plan:
    """A value: the changes (sorted by name, no-ops included), drift, and what it was made from.

    ``forget`` and ``lifecycle`` change state only, as Terraform's refresh does: entries gone
    from the cloud and the manifests are dropped; a changed ``prevent_destroy`` is recorded.
    Neither counts as a change. An entry holding a private key is never in ``forget``: what a
    refresh read must not lose a private key quietly, so dropping it is a ``FORGET`` change,
    shown, counted and approved like any other.
    """

    changes: tuple[Change, ...]
    api: Api
    lineage: str
    serial: int
    manifest_digest: str
    mode: Mode = Mode.NORMAL
    drift: tuple[Drift, ...] = ()
    forget: tuple[Address, ...] = ()
    lifecycle: tuple[tuple[Address, bool], ...] = ()  # (address, prevent_destroy) to record
    targets: tuple[str, ...] = field(default_factory=tuple)
    # Entries of a target renamed in the manifests: (recorded address, address now). State
    # only, like ``lifecycle``: nothing moves in the cloud.
    moved: tuple[tuple[Address, Address], ...] = ()
    # Targets this plan could not read (target, why): their key pairs are not in it.
    unreachable: tuple[tuple[str, str], ...] = ()
    # --in: the whole targets the run was restricted to (empty: every target).
    within: tuple[str, ...] = ()
    forget_targets: tuple[str, ...] = ()
    # What the plan was made from, so that a saved plan can be made again and compared:
    # every desired key pair (not only the changed ones), --replace, and the clock.
    configuration: tuple[DesiredKeyPair, ...] = ()
    imports: tuple[ImportRequest, ...] = ()  # the manifests' import: lists
    replace: tuple[str, ...] = ()
    planned_at: str = ""  # ISO 8601, the ``now`` rotate_after was measured against
    state_verified: bool = True  # False: made from a state read without checking its MAC
    # Every target in play (declared, then those only state holds); several: addresses show
    # the target, and a saved plan records each target's connection.
    run_targets: tuple[str, ...] = ()
    # What the plan warns of before apply (what the cloud will refuse, servers that lose a
    # key pair): shown in the text plan and the Markdown comment.
    warnings: tuple[str, ...] = ()

    @property
    def actionable(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action is not Action.NOOP)

    def counts(self) -> dict[str, int]:
        return tally((c.action for c in self.changes),
                     imported=sum(1 for c in self.changes if c.importing),
                     rotated=sum(1 for c in self.changes if c.rotating))

    @property
    def has_changes(self) -> bool:
        """True when applying would change the cloud (or, refresh-only, record drift)."""
        if self.mode is Mode.REFRESH_ONLY:
            return bool(self.drift)
        return bool(self.actionable)

    @property
    def several(self) -> bool:
        """Whether the plan is of more than one target (its addresses show the target)."""
        return len(self.run_targets) > 1

    @property
    def state_only(self) -> bool:
        """True when apply has state to update although nothing changes in the cloud."""
        return bool(self.forget or self.lifecycle or self.moved)


class Hooks(Protocol):
    """Progress reporting; called from worker threads."""

    def pre_apply(self, change: Change, phase: str) -> None:
        """``phase`` is the step under way: create, delete, update, import."""
        ...

    def post_apply(self, change: Change, outcome: Outcome) -> None: ...

    def pre_apply_all(self, changes: Sequence[Change], phase: str) -> None:
        """``pre_apply`` of each of ``changes``, which start together (one batch)."""
        for change in changes:
            self.pre_apply(change, phase)

    def post_apply_all(self, done: Sequence[tuple[Change, Outcome]]) -> None:
        """``post_apply`` of each change and its outcome, which ended together."""
        for change, outcome in done:
            self.post_apply(change, outcome)


class NullHooks:
    def pre_apply(self, change: Change, phase: str) -> None:
        pass

    def post_apply(self, change: Change, outcome: Outcome) -> None:
        pass

    def pre_apply_all(self, changes: Sequence[Change], phase: str) -> None:
        pass

    def post_apply_all(self, done: Sequence[tuple[Change, Outcome]]) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    action: Action
    ok: bool
    elapsed: float
    error: str | None = None
    destroyed: bool = False  # a failed replacement whose old key pair was deleted
    at: Address | None = None  # None: the key pair of that name in the run's only target
    importing: bool = False  # an UPDATE that adopted the key pair first (Change.importing)
    rotated: bool = False  # a rotation without a gap: the new generation made, the old kept

    @property
    def address(self) -> Address:
        return self.at if self.at is not None else keypair_address(self.name)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    outcomes: tuple[Outcome, ...]
    state: State

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if not o.ok)

    def counts(self) -> dict[str, int]:
        """What was done: completed changes, and the deletions of failed replacements."""
        done = tally((o.action for o in self.outcomes if o.ok),
                     imported=sum(1 for o in self.outcomes if o.ok and o.importing),
                     rotated=sum(1 for o in self.outcomes if o.ok and o.rotated))
        done["destroy"] += sum(1 for o in self.outcomes if not o.ok and o.destroyed)
        return done


