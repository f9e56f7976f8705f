"""Apply: carry out a plan's changes, concurrently, in dependency waves.

``apply_plan`` never re-diffs: it does what the plan says. It knows kinds only through the
kind protocol (``reconciler.kinds``): each kind checks the plan before anything is sent
(``preflight``), says what each change depends on (a wave runs once the waves before it are
done), and carries out its changes through the API of the change's target, in the units its
applier groups a wave's changes into (one task on the pool each; a kps batch import of up to
ten creates is one unit). Partial progress is a result: the state reached is returned even
when some changes failed.

The engine never prints; progress goes through ``Hooks``.

May import: ``reconciler.changes``, ``reconciler.kinds``, ``reconciler.model``,
``reconciler.errors``, ``reconciler.address``, ``reconciler.api.protocol``,
``reconciler.state.protocol``, ``reconciler.keyforge``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import replace
from datetime import datetime
from typing import Any

from reconciler.address import DEFAULT_TARGET, ORDER, Address
from reconciler.api.protocol import KeyPairApi
from reconciler.changes import (
    REASON_TARGET_FORGOTTEN,
    Action,
    ApplyResult,
    Change,
    Hooks,
    NullHooks,
    Outcome,
    Plan,
)
from reconciler.errors import ApplyError, ReconcilerError
from reconciler.keyforge import FORGE_FROM, KeyForge, keys_to_generate
from reconciler.kinds import REGISTRY
from reconciler.kinds.base import Applier
from reconciler.kinds.generations import kept_for_deposed
from reconciler.model import RemoteSnapshot, SealedSecret, State, StateKeyPair
from reconciler.state.protocol import StateStore

__all__ = ["ApplyResult", "Hooks", "NullHooks", "Outcome", "apply_plan", "apply_refresh"]


def apply_plan(
    plan: Plan,
    *,
    api: KeyPairApi | Mapping[str, KeyPairApi],
    store: StateStore,
    hooks: Hooks | None = None,
    parallelism: int = 10,
    now: Callable[[], datetime],
    generate: Callable[..., Any] | None = None,
    state: State | None = None,
    bindings: Mapping[str, Any] | None = None,
) -> ApplyResult:
    """Carry out ``plan`` and return the state reached, even when some changes failed.

    ``api`` is the run's one API, or each target's by target name: every change goes through
    the API of its address's target, all of them on one pool of ``parallelism`` workers;
    ``bindings``: each target's ECS and KPS binding clients, for plans that bind servers.
    The caller holds the state lock and has loaded the store (``state``: what it loaded;
    loaded again when not given). Raises ``ApplyError`` before any change when the plan
    deletes a key pair state does not hold or a custody private key does not check out.
    """
    held = dict((state if state is not None else store.load()).keypairs)
    for old, new in plan.moved:
        if old in held:
            held[new] = held[old]
    for kind in REGISTRY.values():
        kind.preflight(plan, held, store)
    hooks = hooks or NullHooks()
    apis = _apis_by_target(plan, api)

    # Many Ed25519 keys to make: made ahead on another core (``keyforge``), unless the
    # caller chose how keys are made.
    count = keys_to_generate(plan.actionable) if generate is None else 0
    forge = KeyForge(count) if count >= FORGE_FROM else None
    try:
        return _carry_out(plan, apis, store=store, hooks=hooks, parallelism=parallelism,
                          now=now, generate=forge or generate, held=held, bindings=bindings)
    finally:
        if forge is not None:
            forge.close()


def _carry_out(plan: Plan, apis: Mapping[str, KeyPairApi], *, store: StateStore,
               hooks: Hooks, parallelism: int, now: Callable[[], datetime],
               generate: Callable[..., Any] | None, held: Mapping[Address, StateKeyPair],
               bindings: Mapping[str, Any] | None) -> ApplyResult:
    def _forget(change: Change) -> Outcome:
        """A change of state only: no API (its target may be one this run does not reach)."""
        start = time.monotonic()
        hooks.pre_apply(change, "forget")
        try:
            if change.reason != REASON_TARGET_FORGOTTEN:  # --forget-target: all of it goes
                kept_for_deposed(store.current(change.name, target=change.address.target))
            store.forget(change.name, target=change.address.target)
        except ReconcilerError as exc:
            return Outcome(change.name, change.action, False, time.monotonic() - start,
                           str(exc), at=change.at)
        return Outcome(change.name, change.action, True, time.monotonic() - start,
                       at=change.at)

    appliers: dict[tuple[str, str], Applier] = {
        (kind.name, target): kind.applier(api=a, store=store, hooks=hooks, now=now,
                                          generate=generate, target=target,
                                          bindings=(bindings or {}).get(target))
        for kind in REGISTRY.values() for target, a in apis.items()}
    outcomes: list[Outcome] = []
    priors = {c.address: c.prior for c in plan.changes if c.prior is not None}
    try:
        for old, new in plan.moved:
            _move(store, held, old, new)
        for address in plan.forget:
            store.forget(address.name, target=address.target)
        for address, protect in plan.lifecycle:
            prior = priors.get(address)
            if prior is not None:
                REGISTRY[address.kind].record_lifecycle(store, prior, protect)
        with ThreadPoolExecutor(max_workers=max(1, parallelism),
                                thread_name_prefix="apply") as pool:
            for wave in waves(plan.actionable):
                futures: dict[Future[list[Outcome]], tuple[Change, ...]] = {}
                for runner, unit in _units(wave, appliers, forget=_forget):
                    futures[pool.submit(runner, unit)] = unit
                try:
                    for future in as_completed(futures):
                        done = list(zip(futures[future], future.result(), strict=True))
                        outcomes += [outcome for _, outcome in done]
                        hooks.post_apply_all(done)
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        state = store.commit()
    outcomes.sort(key=lambda o: ORDER(o.address))
    return ApplyResult(outcomes=tuple(outcomes), state=state)


_Runner = Callable[[tuple[Change, ...]], list[Outcome]]


def _units(wave: list[Change], appliers: Mapping[tuple[str, str], Applier], *,
           forget: Callable[[Change], Outcome]) -> list[tuple[_Runner, tuple[Change, ...]]]:
    """The tasks of one wave, in its order (a unit where its first change is): each applier
    groups its own changes (of its kind and target) into units; a change of state only is a
    unit of its own."""
    position = {id(change): i for i, change in enumerate(wave)}
    by_applier: dict[tuple[str, str], list[Change]] = {}
    tasks: list[tuple[_Runner, tuple[Change, ...]]] = []
    for change in wave:
        if change.action is Action.FORGET:
            tasks.append((lambda unit: [forget(c) for c in unit], (change,)))
        else:
            by_applier.setdefault((change.address.kind, change.address.target),
                                  []).append(change)
    for key, changes in by_applier.items():
        applier = appliers[key]
        tasks += [(applier.run_unit, unit) for unit in applier.units(changes)]
    tasks.sort(key=lambda task: position[id(task[1][0])])
    return tasks


def _apis_by_target(plan: Plan, api: KeyPairApi | Mapping[str, KeyPairApi]
                    ) -> dict[str, KeyPairApi]:
    """Each target's API; one API serves every target of the plan when only one is given."""
    targets = {c.address.target for c in plan.actionable if c.action is not Action.FORGET}
    if isinstance(api, Mapping):
        missing = sorted(targets - set(api))
        if missing:
            raise ApplyError(f"internal error: no API for target {missing[0]!r}")
        return dict(api)
    return {target: api for target in targets or {DEFAULT_TARGET}}


def _move(store: StateStore, held: Mapping[Address, StateKeyPair], old: Address,
          new: Address) -> None:
    """Move one entry of a renamed target to its new address: its private key is sealed
    again, bound to the new address; the entry is recorded there before it is forgotten at
    the old one, so that an interruption leaves it under one address or both, never none."""
    entry = held.get(old)
    if entry is None:
        return
    def again(sealed: SealedSecret | None) -> SealedSecret | None:
        if sealed is None:
            return None
        return store.seal(new.name, store.unseal(old.name, sealed, target=old.target),
                          target=new.target)

    deposed = entry.deposed  # a rotation under way: the previous generation's key too
    if deposed is not None:
        deposed = replace(deposed, private_key=again(deposed.private_key))
    store.record(replace(entry, target=new.target, private_key=again(entry.private_key),
                         deposed=deposed))
    store.forget(old.name, target=old.target)


def waves(changes: tuple[Change, ...]) -> list[list[Change]]:
    """The changes in dependency order: each wave holds the changes whose dependencies (as
    their kind says) are in earlier waves. A dependency outside the plan is already met; a
    cycle is an internal error, never a silent reorder."""
    planned = {c.address: c for c in changes}
    level: dict[Address, int] = {}
    waiting: dict[Address, list[Address]] = {}  # what must wait for whom (``precedes``)
    for change in changes:
        for later in REGISTRY[change.address.kind].precedes(change):
            if later in planned and later != change.address:
                waiting.setdefault(later, []).append(change.address)

    def depth(change: Change, seen: frozenset[Address]) -> int:
        if change.address in level:
            return level[change.address]
        if change.address in seen:
            raise ApplyError(f"internal error: {change.address} depends on itself")
        before = [planned[a] for a in (*REGISTRY[change.address.kind].depends_on(change),
                                       *waiting.get(change.address, ())) if a in planned]
        found = 1 + max((depth(b, seen | {change.address}) for b in before), default=-1)
        level[change.address] = found
        return found

    out: list[list[Change]] = []
    for change in changes:
        n = depth(change, frozenset())
        while len(out) <= n:
            out.append([])
        out[n].append(change)
    return out


def apply_refresh(plan: Plan, *, store: StateStore,
                  remote: RemoteSnapshot | Mapping[str, RemoteSnapshot]) -> list[str]:
    """Apply a refresh-only plan: record in state what changed in the cloud. Returns notes.

    ``remote`` is the snapshot the plan was made from, or each target's by target name."""
    from reconciler.changes import Mode

    if plan.mode is not Mode.REFRESH_ONLY:
        raise ApplyError("not a refresh-only plan")
    notes = []
    state = store.load()
    try:
        for d in plan.drift:
            at = d.address
            prior = state.by_name(at.name, at.target)
            snapshot = remote if isinstance(remote, RemoteSnapshot) else remote.get(at.target)
            if prior is None or snapshot is None:
                continue
            note = REGISTRY[at.kind].record_drift(store, d, prior, snapshot)
            if note:
                notes.append(note)
    finally:
        store.commit()
    return notes
