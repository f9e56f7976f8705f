"""The plan: what apply will do, computed from desired, recorded and actual key pairs.

``make_plan`` is pure: no I/O, no clock (``now`` is passed in), no randomness. Every row of
the plan table in DESIGN §4 is decided here, and nowhere else; apply never re-diffs.

Every decision is per ``Address``: each desired key pair fanned out to its targets, each state
entry, each key pair of each target's snapshot. ``--target`` and ``--replace`` take addresses
(a bare name selects that key pair in every target, as Terraform's ``-target`` does).

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.attributes``,
``reconciler.duration``, ``reconciler.address``, ``reconciler.targets``,
``reconciler.capabilities``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from reconciler.address import (
    ORDER,
    Address,
    AddressSyntaxError,
    keypair_address,
    parse_address,
    select,
)
from reconciler.attributes import (
    desired_attributes,
    field_differences,
    import_fingerprint,
    recorded_attributes,
    remote_attributes,
    replacing_fields,
)
from reconciler.capabilities import capabilities
from reconciler.duration import describe_duration
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
from reconciler.targets import (
    addressing,
    desired_by_address,
    recorded_by_address,
    remote_by_address,
)


class Action(StrEnum):
    """What apply does to one key pair. Glyphs belong to the text renderer."""

    CREATE = "create"
    IMPORT = "import"  # adopt into state; no API write
    UPDATE = "update"  # in place (kps description)
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
    CHANGED = "changed"


# Terraform's action_reason values, for tools that read the JSON plan.
REASON_CANNOT_UPDATE = "replace_because_cannot_update"
REASON_TAINTED = "replace_because_tainted"
REASON_BY_REQUEST = "replace_by_request"
REASON_ROTATION = "replace_by_triggers"
REASON_NO_CONFIG = "delete_because_no_resource_config"
REASON_GONE = "forget_because_deleted_outside"
REASON_REKEYED = "forget_because_changed_outside"


def tally(actions: Iterable[Action]) -> dict[str, int]:
    """Terraform's counts: a replacement is one add and one destroy."""
    out = {"import": 0, "add": 0, "change": 0, "destroy": 0, "forget": 0}
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
    return out


@dataclass(frozen=True, slots=True)
class PlanOptions:
    mode: Mode = Mode.NORMAL
    targets: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()


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

    @property
    def address(self) -> Address:
        return self.at if self.at is not None else keypair_address(self.name)


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
    forget: tuple[str, ...] = ()
    lifecycle: tuple[tuple[str, bool], ...] = ()  # (name, prevent_destroy) to record
    targets: tuple[str, ...] = field(default_factory=tuple)
    # What the plan was made from, so that a saved plan can be made again and compared:
    # every desired key pair (not only the changed ones), --replace, and the clock.
    configuration: tuple[DesiredKeyPair, ...] = ()
    replace: tuple[str, ...] = ()
    planned_at: str = ""  # ISO 8601, the ``now`` rotate_after was measured against
    state_verified: bool = True  # False: made from a state read without checking its MAC

    @property
    def actionable(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action is not Action.NOOP)

    def counts(self) -> dict[str, int]:
        return tally(c.action for c in self.changes)

    @property
    def has_changes(self) -> bool:
        """True when applying would change the cloud (or, refresh-only, record drift)."""
        if self.mode is Mode.REFRESH_ONLY:
            return bool(self.drift)
        return bool(self.actionable)

    @property
    def state_only(self) -> bool:
        """True when apply has state to update although nothing changes in the cloud."""
        return bool(self.forget or self.lifecycle)


@dataclass
class _Context:
    """What every decision needs besides the key pair itself."""

    options: PlanOptions
    now: datetime
    api: Api
    problems: list[Diagnostic]
    here: Address = field(default_factory=lambda: keypair_address(""))  # being decided
    replacing: frozenset[Address] = frozenset()

    def problem(self, summary: str, detail: str, d: DesiredKeyPair | None = None) -> None:
        self.problems.append(Diagnostic(summary=summary, detail=detail,
                                        location=d.location if d else None))


def _selected(flag: str, given: Iterable[str], known: Iterable[Address],
              out: list[Diagnostic]) -> set[Address]:
    """The addresses ``--target``/``--replace`` name; a problem for each that names none."""
    addresses = sorted(set(known), key=ORDER)
    chosen: set[Address] = set()
    for text in given:
        try:
            found = select(parse_address(text), addresses)
        except AddressSyntaxError as exc:
            out.append(Diagnostic(summary=f"{flag}: {exc}",
                                  detail="`reconciler state list` shows managed key pairs"))
            continue
        if not found:
            out.append(Diagnostic(
                summary=f"{flag} {text}: no key pair of that name in the manifests or state",
                detail="check the spelling; `reconciler state list` shows managed key pairs",
            ))
        chosen.update(found)
    return chosen


def _check_replace(chosen: set[Address], desired: Mapping[Address, object],
                   recorded: Mapping[Address, object], options: PlanOptions,
                   out: list[Diagnostic]) -> None:
    for text in options.replace:
        try:
            query = parse_address(text)
        except AddressSyntaxError:
            continue  # said already
        found = [a for a in chosen if query.matches(a)]
        if found and all(a in desired and a not in recorded for a in found):
            out.append(Diagnostic(summary=f"--replace {text}: it is not in state yet, so there "
                                          "is nothing to replace",
                                  detail="drop --replace; the plan creates it"))


def _age_seconds(created: str, now: datetime) -> float | None:
    try:
        then = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (now - then).total_seconds()


def _drift_for(prior: StateKeyPair, remote: RemoteKeyPair | None) -> Drift | None:
    if prior.status is EntryStatus.PENDING:
        return None  # never confirmed in the cloud: not drift, an interrupted apply
    if remote is None:
        return Drift(prior.name, DriftKind.DELETED, recorded_attributes(prior), None)
    if remote.fingerprint != prior.fingerprint_md5:
        return Drift(prior.name, DriftKind.CHANGED, recorded_attributes(prior),
                     remote_attributes(remote))
    return None


def _new(d: DesiredKeyPair, remote: RemoteKeyPair | None, ctx: _Context) -> Change:
    """Desired, not in state."""
    after = desired_attributes(d)
    unknown = _unknown(after)
    if remote is None:
        return Change(d.name, Action.CREATE, after=after, after_unknown=unknown, desired=d)
    if d.source is KeySource.IMPORT and import_fingerprint(d) == remote.fingerprint:
        return Change(d.name, Action.IMPORT, before=remote_attributes(remote), after=after,
                      notes=("already in the cloud with the same public key",),
                      desired=d, remote=remote)
    ctx.problem(*_unmanaged_advice(d), d)
    return Change(d.name, Action.NOOP, desired=d, remote=remote)


def _unmanaged_advice(d: DesiredKeyPair) -> tuple[str, str]:
    """A key pair of that name exists, unmanaged, with another (or an unknowable) key: the
    ways out, each of which works as written."""
    elsewhere = ("or delete it in the cloud yourself (console or API) if nothing uses it, and "
                 "plan again: apply then creates it")
    if d.source is KeySource.IMPORT:
        return (f"key pair {d.name!r} already exists in the cloud and is not managed by "
                "reconciler; the cloud holds a different public key than the manifest declares",
                f"choose one: rename it in the manifest (the cloud's key pair is left alone); or "
                f"adopt it with `reconciler import {d.name}`, after which the plan replaces it "
                "with the declared key (delete, then import: whatever uses the cloud's key "
                f"loses it); {elsewhere}")
    return (f"key pair {d.name!r} already exists in the cloud and is not managed by "
            "reconciler",
            f"choose one: adopt it as it is with `reconciler import {d.name}` (its private key "
            f"stays out of state; `reconciler apply --replace {d.name}` afterwards makes a new "
            f"one that state holds); or rename it in the manifest; {elsewhere}")


def _pending(d: DesiredKeyPair, prior: StateKeyPair, remote: RemoteKeyPair | None,
             ctx: _Context) -> Change:
    """Desired, and recorded by an apply that was interrupted before the cloud confirmed it."""
    after = desired_attributes(d)
    if (remote is None and prior.source is KeySource.GENERATE and prior.public_key
            and prior.private_key is not None and prior.spec_digest == d.spec_digest):
        # apply resumes with the key generated and stored before: its public half is known
        recorded = recorded_attributes(prior)
        after = {**after, "public_key": recorded["public_key"],
                 "fingerprint": recorded["fingerprint"]}
    common: dict[str, Any] = {"after": after, "after_unknown": _unknown(after), "desired": d,
                              "prior": prior, "remote": remote}
    if remote is None:
        kept = "" if prior.source is KeySource.CLOUD else " with the key already in state"
        return Change(d.name, Action.CREATE, notes=(f"resuming an interrupted apply{kept}",),
                      **common)
    before = recorded_attributes(prior)
    if prior.source is KeySource.CLOUD:  # its create was sent; the answer never arrived
        return Change(d.name, Action.REPLACE, before=before, reason=REASON_TAINTED,
                      notes=("an interrupted apply: the cloud created it but its private key "
                             "never arrived",), **common)
    if remote.fingerprint == prior.fingerprint_md5:
        return Change(d.name, Action.IMPORT, before=before, after=after, desired=d, prior=prior,
                      remote=remote, notes=("completing an interrupted apply",))
    ctx.problem(f"key pair {d.name!r} exists in the cloud with a key reconciler did not upload",
                f"run `reconciler state rm {d.name}` and then `reconciler import {d.name}`, or "
                "delete it in the cloud", d)
    return Change(d.name, Action.NOOP, desired=d, prior=prior, remote=remote)


def _replacement(d: DesiredKeyPair, prior: StateKeyPair, remote: RemoteKeyPair,
                 ctx: _Context) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    """Why a managed key pair must be replaced: (reason, forcing fields, notes), or None."""
    if remote.fingerprint != prior.fingerprint_md5:
        return REASON_CANNOT_UPDATE, ("public_key",), ("its key was changed outside reconciler",)
    if prior.status is EntryStatus.TAINTED:
        return REASON_TAINTED, (), ("tainted: the cloud generated it but its private key never "
                                    "arrived",)
    if ctx.here in ctx.replacing:
        return REASON_BY_REQUEST, (), ("requested with --replace",)
    forcing = () if d.spec_digest == prior.spec_digest else replacing_fields(d, prior)
    if forcing:
        return REASON_CANNOT_UPDATE, forcing, ()
    if d.rotate_after_seconds is not None:
        age = _age_seconds(prior.created, ctx.now)
        if age is not None and age >= d.rotate_after_seconds:
            return REASON_ROTATION, (), (f"rotation due: created {describe_duration(age)} "
                                         "ago, rotate_after is "
                                         f"{describe_duration(d.rotate_after_seconds)}",)
    return None


def _managed(d: DesiredKeyPair, prior: StateKeyPair, remote: RemoteKeyPair | None,
             ctx: _Context) -> Change:
    """Desired, and recorded as in the cloud."""
    before = recorded_attributes(prior)
    after = desired_attributes(d)
    if remote is None:
        return Change(d.name, Action.CREATE, before=before, after=after,
                      after_unknown=_unknown(after), desired=d, prior=prior,
                      notes=("deleted outside reconciler; it will be created again",))
    why = _replacement(d, prior, remote, ctx)
    if why is not None:
        reason, forcing, notes = why
        if d.prevent_destroy:
            ctx.problem(f"{ctx.here} has prevent_destroy set, but the plan calls for it to "
                        f"be replaced ({'; '.join(notes) or 'changed: ' + ', '.join(forcing)})",
                        "to replace it, first set `prevent_destroy: false`; otherwise undo the "
                        "change that forces the replacement", d)
        return Change(d.name, Action.REPLACE, before=before, after=after,
                      after_unknown=_unknown(after), replace_paths=forcing, reason=reason,
                      notes=notes, desired=d, prior=prior, remote=remote)
    # Descriptions exist only in kps; after a switch of API they are not compared.
    if capabilities(ctx.api).descriptions and \
            (d.description or None) != (prior.description or None):
        return Change(d.name, Action.UPDATE, before=before,
                      after={**before, "description": d.description},
                      desired=d, prior=prior, remote=remote)
    return Change(d.name, Action.NOOP, before=before, after=before, desired=d, prior=prior,
                  remote=remote)


def _unknown(after: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(k for k in ("public_key", "fingerprint", "private_key") if k not in after)


def _undesired(prior: StateKeyPair, remote: RemoteKeyPair | None, *, protected: bool,
               mode: Mode, ctx: _Context) -> Change | None:
    """In state, not desired (or destroying): delete it, or only forget it if already gone."""
    if remote is None:
        return None
    if protected:
        ctx.problem(f"{ctx.here} has prevent_destroy set, but the plan calls for it "
                    "to be destroyed",
                    "to delete it, first set `prevent_destroy: false` in its manifest and "
                    "apply; or keep it in the manifests")
    reason = REASON_NO_CONFIG if mode is Mode.NORMAL else None
    return Change(prior.name, Action.DELETE, before=recorded_attributes(prior), reason=reason,
                  prior=prior, remote=remote)


def _forgotten(prior: StateKeyPair) -> Change:
    """Gone from the cloud, and state holds its private key: dropping the entry loses the key,
    so it is a change of its own, never quiet state-only work."""
    return Change(prior.name, Action.FORGET, before=recorded_attributes(prior),
                  reason=REASON_GONE, prior=prior,
                  notes=("gone from the cloud; state holds its private key, which apply "
                         "forgets",
                         f"to keep it, first: reconciler output {prior.name} --private-key "
                         "--out FILE"))


def _rekeyed(prior: StateKeyPair) -> Change:
    """Refresh-only, re-keyed in the cloud, and state holds the old private key: recording the
    cloud's key drops it (servers may still trust it), so that too is a counted change."""
    return Change(prior.name, Action.FORGET, before=recorded_attributes(prior),
                  reason=REASON_REKEYED, prior=prior,
                  notes=("changed outside reconciler; state will record the cloud's public "
                         "key and forget the private key it holds",
                         f"to keep it, first: reconciler output {prior.name} --private-key "
                         "--out FILE"))


def make_plan(
    manifest: Manifest,
    state: State,
    remote: RemoteSnapshot | Mapping[str, RemoteSnapshot],
    *,
    options: PlanOptions,
    now: datetime,
    recorded: Mapping[Address, StateKeyPair] | None = None,
) -> Plan:
    """Compare desired, recorded and actual key pairs and decide every change, per address.

    ``remote`` is the one snapshot of a single-target run, or every target's by target name.
    ``recorded`` is state's entries by address when state records targets; by default every
    entry of ``state`` is in the run's first target (format 2 records none).

    Raises ``DiagnosticsError`` (all problems at once) for key pairs that exist but are not
    managed, for ``prevent_destroy`` violations, and for unknown ``--target``/``--replace``.
    """
    run = addressing(manifest)
    snapshots = {run.targets[0]: remote} if isinstance(remote, RemoteSnapshot) else dict(remote)
    desired = desired_by_address(manifest)
    recorded = recorded if recorded is not None else recorded_by_address(state, run)
    actual = remote_by_address(snapshots, run)
    problems: list[Diagnostic] = []
    targets = _selected("--target", options.targets, (*desired, *recorded), problems)
    replacing = _selected("--replace", options.replace, (*desired, *recorded), problems)
    _check_replace(replacing, desired, recorded, options, problems)
    first = next(iter(snapshots.values()))
    ctx = _Context(options=options, now=now, api=first.api, problems=problems,
                   replacing=frozenset(replacing))
    changes: list[Change] = []
    drift: list[Drift] = []
    forget: list[str] = []
    lifecycle: list[tuple[str, bool]] = []
    for addr in sorted(set(desired) | set(recorded), key=ORDER):
        if targets and addr not in targets:
            continue
        ctx.here = addr
        snapshot = snapshots.get(addr.target)
        ctx.api = snapshot.api if snapshot is not None else first.api
        decided = _decide(addr, desired.get(addr), recorded.get(addr), actual.get(addr), ctx)
        changes.extend(replace(c, at=addr) for c in decided.changes)
        drift.extend(replace(d, at=addr) for d in decided.drift)
        forget.extend(decided.forget)
        lifecycle.extend(decided.lifecycle)
    if ctx.problems:
        raise DiagnosticsError(ctx.problems)
    return Plan(
        changes=tuple(changes), api=first.api, lineage=state.lineage, serial=state.serial,
        manifest_digest=manifest.digest, mode=options.mode, drift=tuple(drift),
        forget=tuple(forget), lifecycle=tuple(lifecycle),
        targets=tuple(sorted(set(options.targets))),
        configuration=manifest.keypairs, replace=tuple(sorted(set(options.replace))),
        planned_at=now.isoformat(),
        state_verified=state.verified,
    )


@dataclass
class _Decided:
    """What one address contributes to the plan."""

    changes: list[Change] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    forget: list[str] = field(default_factory=list)
    lifecycle: list[tuple[str, bool]] = field(default_factory=list)


def _decide(addr: Address, d: DesiredKeyPair | None, prior: StateKeyPair | None,
            now_remote: RemoteKeyPair | None, ctx: _Context) -> _Decided:
    """Every row of the plan table for one address."""
    out = _Decided()
    mode = ctx.options.mode
    dr = _drift_for(prior, now_remote) if prior is not None else None
    if dr is not None:
        out.drift.append(dr)
    if mode is Mode.REFRESH_ONLY:
        if prior is not None and prior.private_key is not None and dr is not None:
            # apply_refresh drops the entry, or records the cloud's key without the old one
            out.changes.append(_forgotten(prior) if dr.kind is DriftKind.DELETED
                               else _rekeyed(prior))
        return out
    if d is not None and mode is Mode.NORMAL:
        if prior is None:
            out.changes.append(_new(d, now_remote, ctx))
        elif prior.status is EntryStatus.PENDING:
            out.changes.append(_pending(d, prior, now_remote, ctx))
        else:
            change = _managed(d, prior, now_remote, ctx)
            out.changes.append(change)
            if change.action is Action.NOOP and d.prevent_destroy != prior.prevent_destroy:
                out.lifecycle.append((addr.name, d.prevent_destroy))
    elif prior is not None:
        protected = prior.prevent_destroy or (d is not None and d.prevent_destroy)
        gone = _undesired(prior, now_remote, protected=protected, mode=mode, ctx=ctx)
        if gone is not None:
            out.changes.append(gone)
        elif prior.private_key is not None:
            out.changes.append(_forgotten(prior))
        else:
            out.forget.append(addr.name)
    return out


def field_changes(change: Change) -> dict[str, tuple[Any, Any]]:
    """Per-field differences between before and after (deepdiff), for renderers."""
    return field_differences(change.before, change.after)
