"""The kind protocol: what each kind of managed object implements, so that plan and apply
know kinds only through it (``tests/test_architecture.py`` holds that).

A kind says which objects the manifests declare (by address), decides one address's change
from what is desired, recorded and remote, says what a change depends on (apply runs in waves:
a change after those it depends on), checks a plan before anything is sent, and carries out
its changes through a target's API.

May import: ``reconciler.changes``, ``reconciler.model``, ``reconciler.address``,
``reconciler.errors``, ``reconciler.api.protocol``, ``reconciler.state.protocol``,
``reconciler.kinds.generations``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from reconciler.address import Address, Addressing, keypair_address
from reconciler.api.protocol import KeyPairApi
from reconciler.changes import Change, Drift, Hooks, Outcome, Plan, PlanOptions
from reconciler.errors import Diagnostic
from reconciler.kinds.generations import cloud_names
from reconciler.model import (
    Api,
    DesiredKeyPair,
    Manifest,
    RemoteSnapshot,
    SourceLocation,
    StateKeyPair,
)
from reconciler.state.protocol import StateStore


@dataclass
class Context:
    """What every decision needs besides the key pair itself."""

    options: PlanOptions
    now: datetime
    api: Api
    problems: list[Diagnostic]
    here: Address = field(default_factory=lambda: keypair_address(""))  # being decided
    replacing: frozenset[Address] = frozenset()
    # The addresses the manifests' import: lists name, with where each is listed.
    importing: Mapping[Address, SourceLocation] = field(default_factory=dict)
    # Every target's snapshot, and state's entries by address: what a kind that looks
    # beyond its own objects (a binding: the servers, another key pair's entry) reads.
    snapshots: Mapping[str, RemoteSnapshot] = field(default_factory=dict)
    entries: Mapping[Address, StateKeyPair] = field(default_factory=dict)
    # What the plan warns of (``Plan.warnings``), in the order found.
    warnings: list[str] = field(default_factory=list)
    _cloud_names: dict[tuple[str, str], tuple[StateKeyPair, bool]] | None = field(
        default=None, repr=False)

    def holder(self, target: str, cloud_name: str) -> tuple[StateKeyPair, bool] | None:
        """The managed key pair of ``target`` that the cloud calls ``cloud_name``, and
        whether that is its previous (deposed) generation; None when none is. The index of
        ``entries`` is made once per plan, at the first question."""
        if self._cloud_names is None:
            self._cloud_names = cloud_names(self.entries)
        return self._cloud_names.get((target, cloud_name))
    # The key pairs the manifests declare, by address: names a new generation must not take.
    declared: frozenset[Address] = frozenset()

    def problem(self, summary: str, detail: str, d: DesiredKeyPair | None = None, *,
                at: SourceLocation | None = None) -> None:
        self.problems.append(Diagnostic(summary=summary, detail=detail,
                                        location=at or (d.location if d else None)))


@dataclass
class Decided:
    """What one address contributes to the plan."""

    changes: list[Change] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    forget: list[Address] = field(default_factory=list)
    lifecycle: list[tuple[Address, bool]] = field(default_factory=list)



class Applier(Protocol):
    """Carries out one kind's changes in one target.

    Apply hands it a wave's changes of its kind and target (``units``) and runs each unit it
    returns as one task on the pool (``run_unit``): a unit of one change is ``run``; a unit
    of several is done together where the API allows it (KPS batch import), each change
    still with its own outcome."""

    def run(self, change: Change) -> Outcome: ...

    def units(self, changes: Sequence[Change]) -> list[tuple[Change, ...]]:
        """``changes`` in the units they are carried out in, in order; every change once."""
        ...

    def run_unit(self, unit: tuple[Change, ...]) -> list[Outcome]:
        """One outcome per change of ``unit``, in its order; never raises for a change."""
        ...


class OneByOne:
    """An applier whose every change is a unit of its own (``Applier.units``)."""

    def run(self, change: Change) -> Outcome:
        raise NotImplementedError

    def units(self, changes: Sequence[Change]) -> list[tuple[Change, ...]]:
        return [(c,) for c in changes]

    def run_unit(self, unit: tuple[Change, ...]) -> list[Outcome]:
        return [self.run(c) for c in unit]


class KindDefaults:
    """What a kind does when it has nothing of its own to say (``Kind``'s methods of that
    name): its changes follow from no other kind's, depend on and precede nothing, need no
    review or preflight; it has no owner, lifecycle or refresh-only record of its own."""

    def follow(self, changes: Sequence[Change]) -> list[Change]:
        return list(changes)

    def depends_on(self, change: Change) -> tuple[Address, ...]:
        return ()

    def owner(self, addr: Address, desired: Any, recorded: Any) -> Address | None:
        return None

    def precedes(self, change: Change) -> tuple[Address, ...]:
        return ()

    def review(self, changes: Sequence[Change], ctx: Context) -> list[Change]:
        return list(changes)

    def preflight(self, plan: Plan, held: Mapping[Address, StateKeyPair],
                  store: StateStore) -> None:
        return None

    def record_lifecycle(self, store: StateStore, prior: StateKeyPair, protect: bool) -> None:
        return None

    def record_drift(self, store: StateStore, drift: Drift, prior: StateKeyPair,
                     remote: RemoteSnapshot) -> str | None:
        return None


class Kind(Protocol):
    """One kind of managed object (``KindDefaults`` gives the methods most kinds leave
    alone)."""

    name: str  # the address kind: ``keypair``
    section: str  # the manifests' list of this kind: ``keypairs``
    schema_definition: str  # its fragment of the manifest schema (under ``$defs``)

    def desired(self, manifest: Manifest, run: Addressing) -> Mapping[Address, Any]:
        """Every object the manifests declare, in each of its targets."""
        ...

    def recorded(self, entries: Mapping[Address, StateKeyPair]) -> Mapping[Address, Any]:
        """Of state's entries (by address in this run), those of this kind."""
        ...

    def remote(self, snapshots: Mapping[str, RemoteSnapshot],
               run: Addressing) -> Mapping[Address, Any]:
        """What each target holds of this kind, by address."""
        ...

    def decide(self, addr: Address, desired: Any, recorded: Any, remote: Any,
               ctx: Context) -> Decided:
        """Every row of this kind's plan table for one address."""
        ...

    def follow(self, changes: Sequence[Change]) -> list[Change]:
        """Every change of the plan, this kind's rewritten where they follow from another
        kind's (a delivery whose key pair gets a new key delivers it); others unchanged."""
        ...

    def forget_target(self, recorded: Any, addr: Address) -> Change:
        """``--forget-target``: the entry leaves state, the cloud is not asked."""
        ...

    def depends_on(self, change: Change) -> tuple[Address, ...]:
        """The addresses whose changes must be done before this one."""
        ...

    def owner(self, addr: Address, desired: Any, recorded: Any) -> Address | None:
        """The key pair this object belongs to (its bindings, its deliveries): ``--target``
        of that key pair selects the object too. None for a key pair."""
        ...

    def precedes(self, change: Change) -> tuple[Address, ...]:
        """The addresses whose changes must wait for this one (an unbind before the delete
        of its key pair)."""
        ...

    def review(self, changes: Sequence[Change], ctx: Context) -> list[Change]:
        """Once every address is decided: the plan's changes, as this kind amends them (a
        note, a problem, a warning about other kinds' changes)."""
        ...

    def preflight(self, plan: Plan, held: Mapping[Address, StateKeyPair],
                  store: StateStore) -> None:
        """What must hold before the first request; raises ``ApplyError`` otherwise."""
        ...

    def applier(self, *, api: KeyPairApi, store: StateStore, hooks: Hooks,
                now: Callable[[], datetime], generate: Callable[..., Any] | None,
                target: str, bindings: Any = None) -> Applier:
        """``generate``: how to make a key pair here (None: the kind's own way);
        ``bindings``: the target's ECS and KPS binding clients (None: not opened)."""
        ...

    def record_lifecycle(self, store: StateStore, prior: StateKeyPair, protect: bool) -> None:
        ...

    def record_drift(self, store: StateStore, drift: Drift, prior: StateKeyPair,
                     remote: RemoteSnapshot) -> str | None:
        """A refresh-only apply: state takes on what the cloud holds; the note to print."""
        ...
