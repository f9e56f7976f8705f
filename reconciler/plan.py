"""The plan: what apply will do, computed from desired, recorded and actual key pairs.

``make_plan`` is pure: no I/O, no clock (``now`` is passed in), no randomness. Every row of
the plan table in DESIGN §4 is decided here, and nowhere else; apply never re-diffs.

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.attributes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from reconciler.attributes import (
    desired_attributes,
    field_differences,
    recorded_attributes,
    remote_attributes,
    replacing_fields,
)
from reconciler.errors import Diagnostic, DiagnosticsError
from reconciler.model import (
    Api,
    DesiredKeyPair,
    EntryStatus,
    KeySource,
    Manifest,
    RemoteKeyPair,
    RemoteSnapshot,
    State,
    StateKeyPair,
)


class Action(StrEnum):
    """What apply does to one key pair. Glyphs belong to the text renderer."""

    CREATE = "create"
    IMPORT = "import"  # adopt into state; no API write
    UPDATE = "update"  # in place (kps description)
    REPLACE = "replace"  # delete, then create
    DELETE = "delete"
    NOOP = "no-op"


class Mode(StrEnum):
    NORMAL = "normal"
    DESTROY = "destroy"
    REFRESH_ONLY = "refresh-only"


# Terraform's action_reason values, for tools that read the JSON plan.
REASON_CANNOT_UPDATE = "replace_because_cannot_update"
REASON_TAINTED = "replace_because_tainted"
REASON_BY_REQUEST = "replace_by_request"
REASON_ROTATION = "replace_by_triggers"
REASON_NO_CONFIG = "delete_because_no_resource_config"


@dataclass(frozen=True, slots=True)
class PlanOptions:
    mode: Mode = Mode.NORMAL
    targets: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Drift:
    """A key pair that changed in the cloud behind reconciler's back."""

    name: str
    kind: str  # "deleted" | "changed"
    before: Mapping[str, Any]
    after: Mapping[str, Any] | None


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

    @property
    def address(self) -> str:
        return f"keypair.{self.name}"


@dataclass(frozen=True, slots=True)
class Plan:
    """A value: the changes (sorted by name, no-ops included), drift, and what it was made from."""

    changes: tuple[Change, ...]
    api: Api
    lineage: str
    serial: int
    manifest_digest: str
    mode: Mode = Mode.NORMAL
    drift: tuple[Drift, ...] = ()
    forget: tuple[str, ...] = ()  # gone from the cloud and not desired: dropped from state only
    targets: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def actionable(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action is not Action.NOOP)

    def counts(self) -> dict[str, int]:
        """Terraform's tally: a replacement counts as one add and one destroy."""
        out = {"import": 0, "add": 0, "change": 0, "destroy": 0}
        for c in self.changes:
            if c.action is Action.IMPORT:
                out["import"] += 1
            elif c.action is Action.CREATE:
                out["add"] += 1
            elif c.action is Action.UPDATE:
                out["change"] += 1
            elif c.action is Action.REPLACE:
                out["add"] += 1
                out["destroy"] += 1
            elif c.action is Action.DELETE:
                out["destroy"] += 1
        return out

    @property
    def has_changes(self) -> bool:
        """True when applying would change the cloud or the state."""
        if self.mode is Mode.REFRESH_ONLY:
            return bool(self.drift)
        return bool(self.actionable) or bool(self.forget)


def _check_names(options: PlanOptions, known: set[str]) -> list[Diagnostic]:
    out = []
    for flag, names in (("--target", options.targets), ("--replace", options.replace)):
        for name in names:
            if name not in known:
                out.append(Diagnostic(
                    summary=f"{flag} {name}: no key pair of that name in the manifests or state",
                    detail="check the spelling; `reconciler state list` shows managed key pairs",
                ))
    return out


def _age_seconds(created: str, now: datetime) -> float | None:
    try:
        then = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (now - then).total_seconds()


def _cheap_normal(public_key: str) -> str:
    return " ".join(public_key.split()[:2])


def _drift_for(prior: StateKeyPair, remote: RemoteKeyPair | None) -> Drift | None:
    if prior.status is EntryStatus.PENDING:
        return None  # never confirmed in the cloud: not drift, an interrupted apply
    if remote is None:
        return Drift(prior.name, "deleted", recorded_attributes(prior), None)
    if remote.fingerprint != prior.fingerprint_md5:
        return Drift(prior.name, "changed", recorded_attributes(prior), remote_attributes(remote))
    return None


def _plan_desired(
    d: DesiredKeyPair,
    prior: StateKeyPair | None,
    remote: RemoteKeyPair | None,
    *,
    options: PlanOptions,
    now: datetime,
    problems: list[Diagnostic],
) -> Change:
    after = desired_attributes(d)
    unknown = tuple(k for k in ("public_key", "fingerprint", "private_key") if k not in after)
    if prior is None:
        if remote is None:
            return Change(d.name, Action.CREATE, None, after, unknown, desired=d)
        if d.source is KeySource.IMPORT and d.public_key is not None and (
            _cheap_normal(d.public_key) == _cheap_normal(remote.public_key)
        ):
            return Change(d.name, Action.IMPORT, remote_attributes(remote), after, (),
                          notes=("already in the cloud with the same public key",),
                          desired=d, remote=remote)
        problems.append(Diagnostic(
            summary=f"key pair {d.name!r} already exists in the cloud and is not managed "
                    "by reconciler",
            location=d.location,
            detail=f"run `reconciler import {d.name}` to adopt it into state, or rename it "
                   "in the manifest",
        ))
        return Change(d.name, Action.NOOP, desired=d, remote=remote)
    before = recorded_attributes(prior)
    if prior.status is EntryStatus.PENDING:
        if remote is None:
            return Change(d.name, Action.CREATE, None, after, unknown, desired=d, prior=prior,
                          notes=("resuming an interrupted apply" + (
                              "" if prior.source is KeySource.CLOUD
                              else " with the key already in state"),))
        if prior.source is KeySource.CLOUD:  # its create was sent; the answer never arrived
            return Change(d.name, Action.REPLACE, before, after, unknown, reason=REASON_TAINTED,
                          notes=("an interrupted apply: the cloud created it but its private "
                                 "key never arrived",),
                          desired=d, prior=prior, remote=remote)
        if remote.fingerprint == prior.fingerprint_md5:
            return Change(d.name, Action.IMPORT, before, after, (), desired=d, prior=prior,
                          remote=remote, notes=("completing an interrupted apply",))
        problems.append(Diagnostic(
            summary=f"key pair {d.name!r} exists in the cloud with a key reconciler did not "
                    "upload",
            location=d.location,
            detail=f"run `reconciler state rm {d.name}` and then `reconciler import {d.name}`, "
                   "or delete it in the cloud",
        ))
        return Change(d.name, Action.NOOP, desired=d, prior=prior, remote=remote)
    if remote is None:
        return Change(d.name, Action.CREATE, before, after, unknown, desired=d, prior=prior,
                      notes=("deleted outside reconciler; it will be created again",))
    if remote.fingerprint != prior.fingerprint_md5:
        return Change(d.name, Action.REPLACE, before, after, unknown,
                      replace_paths=("public_key",), reason=REASON_CANNOT_UPDATE,
                      notes=("its key was changed outside reconciler",),
                      desired=d, prior=prior, remote=remote)
    if prior.status is EntryStatus.TAINTED:
        return Change(d.name, Action.REPLACE, before, after, unknown, reason=REASON_TAINTED,
                      notes=("tainted: the cloud generated it but its private key never arrived",),
                      desired=d, prior=prior, remote=remote)
    if d.name in options.replace:
        return Change(d.name, Action.REPLACE, before, after, unknown, reason=REASON_BY_REQUEST,
                      notes=("requested with --replace",), desired=d, prior=prior, remote=remote)
    forcing = () if d.spec_digest == prior.spec_digest else replacing_fields(d, prior)
    if forcing:
        return Change(d.name, Action.REPLACE, before, after, unknown, replace_paths=forcing,
                      reason=REASON_CANNOT_UPDATE, desired=d, prior=prior, remote=remote)
    if d.rotate_after_seconds is not None:
        age = _age_seconds(prior.created, now)
        if age is not None and age >= d.rotate_after_seconds:
            days = int(age // 86400)
            return Change(d.name, Action.REPLACE, before, after, unknown, reason=REASON_ROTATION,
                          notes=(f"rotation due: created {days} days ago, rotate_after is "
                                 f"{d.rotate_after_seconds // 86400} days",),
                          desired=d, prior=prior, remote=remote)
    if (d.description or None) != (prior.description or None):
        merged = dict(before)
        merged["description"] = d.description
        return Change(d.name, Action.UPDATE, before, merged, (), desired=d, prior=prior,
                      remote=remote)
    return Change(d.name, Action.NOOP, before, before, (), desired=d, prior=prior, remote=remote)


def _plan_undesired(
    prior: StateKeyPair, remote: RemoteKeyPair | None, *, reason: str, problems: list[Diagnostic]
) -> Change | None:
    if remote is None:
        return None  # already gone from the cloud: only forgotten from state
    if prior.prevent_destroy:
        problems.append(Diagnostic(
            summary=f"keypair.{prior.name} has prevent_destroy set, but the plan calls for it "
                    "to be destroyed",
            detail="to delete it, first set `prevent_destroy: false` and apply; or keep it in "
                   "the manifest",
        ))
    return Change(prior.name, Action.DELETE, recorded_attributes(prior), None, (),
                  reason=reason, prior=prior, remote=remote)


def make_plan(
    manifest: Manifest,
    state: State,
    remote: RemoteSnapshot,
    *,
    options: PlanOptions,
    now: datetime,
) -> Plan:
    """Compare desired, recorded and actual key pairs and decide every change.

    Raises ``DiagnosticsError`` (all problems at once) for key pairs that exist but are not
    managed, for ``prevent_destroy`` violations, and for unknown ``--target``/``--replace``.
    """
    desired = manifest.by_name()
    recorded = state.keypairs
    actual = remote.keypairs
    problems = _check_names(options, set(desired) | set(recorded))
    for name in options.replace:
        if name in desired and name not in recorded:
            problems.append(Diagnostic(summary=f"--replace {name}: it is not in state yet, "
                                               "so there is nothing to replace"))
    targets = set(options.targets)
    changes: list[Change] = []
    drift: list[Drift] = []
    forget: list[str] = []
    for name in sorted(set(desired) | set(recorded)):
        if targets and name not in targets:
            continue
        prior = recorded.get(name)
        now_remote = actual.get(name)
        if prior is not None:
            dr = _drift_for(prior, now_remote)
            if dr is not None:
                drift.append(dr)
        if options.mode is Mode.REFRESH_ONLY:
            continue
        d = desired.get(name)
        if options.mode is Mode.DESTROY:
            d = None
        if d is not None:
            change = _plan_desired(d, prior, now_remote, options=options, now=now,
                                   problems=problems)
            if change.action is Action.REPLACE and d.prevent_destroy:
                why = "; ".join(change.notes) or "changed: " + ", ".join(change.replace_paths)
                problems.append(Diagnostic(
                    summary=f"keypair.{name} has prevent_destroy set, but the plan calls for it "
                            f"to be replaced ({why})",
                    location=d.location,
                    detail="to replace it, first set `prevent_destroy: false`; otherwise undo "
                           "the change that forces the replacement",
                ))
            changes.append(change)
        elif prior is not None:
            gone = _plan_undesired(prior, now_remote, reason=REASON_NO_CONFIG,
                                   problems=problems)
            if gone is None:
                forget.append(name)
            else:
                changes.append(gone)
    if problems:
        raise DiagnosticsError(problems)
    return Plan(
        changes=tuple(changes),
        api=remote.api,
        lineage=state.lineage,
        serial=state.serial,
        manifest_digest=manifest.digest,
        mode=options.mode,
        drift=tuple(drift),
        forget=tuple(forget),
        targets=tuple(sorted(targets)),
    )


def field_changes(change: Change) -> dict[str, tuple[Any, Any]]:
    """Per-field differences between before and after (deepdiff), for renderers."""
    return field_differences(change.before, change.after)


def changes_by_action(plan: Plan, actions: Sequence[Action]) -> tuple[Change, ...]:
    return tuple(c for c in plan.changes if c.action in actions)
