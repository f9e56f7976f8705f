"""Apply: carry out a plan's changes, concurrently, making every outcome durable first.

``apply_plan`` never re-diffs: it does what the plan says. Every private key is in the state
store before anything depends on it: a key generated here is recorded (encrypted) before its
public half is uploaded; a key the cloud generated is recorded as soon as it arrives. A create
whose answer was lost is re-read rather than blindly retried. Partial progress is a result:
the state reached is returned even when some changes failed.

The engine never prints; progress goes through ``Hooks``.

May import: ``reconciler.plan``, ``reconciler.model``, ``reconciler.errors``, ``reconciler.keys``,
``reconciler.api.protocol``, ``reconciler.state.protocol``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Protocol

from reconciler import keys
from reconciler.api.protocol import KeyPairApi
from reconciler.errors import ApiError, ApplyError, OutcomeUnknownError, ReconcilerError
from reconciler.model import (
    Api,
    DesiredKeyPair,
    EntryStatus,
    KeySource,
    RemoteKeyPair,
    RemoteSnapshot,
    SealedSecret,
    Secret,
    State,
    StateKeyPair,
)
from reconciler.plan import Action, Change, Mode, Plan
from reconciler.state.protocol import StateStore

LOST_RESPONSE_ATTEMPTS = 8  # a lost answer is re-read, then resent; 8 rides out heavy fault rates


class Hooks(Protocol):
    """Progress reporting; called from worker threads."""

    def pre_apply(self, change: Change, phase: str) -> None:
        """``phase`` is the action under way: create, delete, update, import."""
        ...

    def post_apply(self, change: Change, outcome: Outcome) -> None: ...

    def warn(self, message: str) -> None: ...


class NullHooks:
    def pre_apply(self, change: Change, phase: str) -> None:
        pass

    def post_apply(self, change: Change, outcome: Outcome) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    action: Action
    ok: bool
    elapsed: float
    error: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ApplyResult:
    outcomes: tuple[Outcome, ...]
    state: State

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if not o.ok)

    def counts(self) -> dict[str, int]:
        out = {"import": 0, "add": 0, "change": 0, "destroy": 0}
        for o in self.outcomes:
            if not o.ok:
                continue
            if o.action is Action.IMPORT:
                out["import"] += 1
            elif o.action is Action.CREATE:
                out["add"] += 1
            elif o.action is Action.UPDATE:
                out["change"] += 1
            elif o.action is Action.REPLACE:
                out["add"] += 1
                out["destroy"] += 1
            elif o.action is Action.DELETE:
                out["destroy"] += 1
        return out


class _TaintedError(ApplyError):
    """The cloud generated the pair, but its private key never arrived."""


@dataclass
class _Applier:
    api: KeyPairApi
    store: StateStore
    hooks: Hooks
    now: Callable[[], datetime]
    generate: Callable[..., keys.GeneratedKey]

    # -- state entries ---------------------------------------------------------------
    def _entry(self, d: DesiredKeyPair, remote: RemoteKeyPair, *,
               sealed: SealedSecret | None, status: EntryStatus = EntryStatus.READY,
               description: str | None = None) -> StateKeyPair:
        public = remote.public_key
        sha256 = (keys.parse_certificate(public).fingerprint_sha256 if d.type == "x509"
                  else keys.sha256_fingerprint(public))
        return StateKeyPair(
            name=d.name, api=self.api.api, source=d.source, public_key=public.strip(),
            fingerprint_md5=remote.fingerprint, fingerprint_sha256=sha256,
            created=self.now().strftime("%Y-%m-%dT%H:%M:%SZ"), spec_digest=d.spec_digest,
            algorithm=d.algorithm, type=d.type, user_id=d.user_id, scope=d.scope,
            description=description, key_protection=d.key_protection, private_key=sealed,
            status=status, prevent_destroy=d.prevent_destroy,
        )

    # -- API calls that survive lost answers ----------------------------------------------
    def _import(self, d: DesiredKeyPair, public_key: str,
                private_key: Secret | None) -> RemoteKeyPair:
        ours = keys.normalise(public_key, key_type=d.type)
        for _ in range(LOST_RESPONSE_ATTEMPTS):
            try:
                return self.api.import_keypair(
                    name=d.name, public_key=public_key, type=d.type, user_id=d.user_id,
                    scope=d.scope, key_protection=d.key_protection, private_key=private_key)
            except OutcomeUnknownError:
                found = self.api.get_keypair(d.name)
            except ApiError as exc:
                if not exc.conflict:
                    raise
                found = self.api.get_keypair(d.name)
                if found is None or keys.normalise(found.public_key, key_type=d.type) != ours:
                    raise
            if found is None:
                continue  # the lost request never took effect: send it again
            if keys.normalise(found.public_key, key_type=d.type) == ours:
                return found
            raise ApplyError(f"keypair.{d.name}: the cloud now holds a different key under this "
                             "name (created by someone else meanwhile); nothing was recorded")
        raise ApplyError(f"keypair.{d.name}: the import's answer was lost "
                         f"{LOST_RESPONSE_ATTEMPTS} times; run apply again")

    def _pending_cloud_entry(self, d: DesiredKeyPair) -> StateKeyPair:
        """Recorded before a cloud create is sent: if the process dies before the answer
        arrives, the next plan knows the name is ours and replaces what the cloud made."""
        return StateKeyPair(
            name=d.name, api=self.api.api, source=d.source, public_key="", fingerprint_md5="",
            fingerprint_sha256="", created=self.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            spec_digest=d.spec_digest, algorithm=d.algorithm, type=d.type, user_id=d.user_id,
            scope=d.scope, description=None, key_protection=d.key_protection, private_key=None,
            status=EntryStatus.PENDING, prevent_destroy=d.prevent_destroy,
        )

    def _create_in_cloud(self, d: DesiredKeyPair) -> tuple[RemoteKeyPair, Secret | None]:
        self.store.record(self._pending_cloud_entry(d))
        for _ in range(LOST_RESPONSE_ATTEMPTS):
            try:
                created = self.api.create_keypair(
                    name=d.name, type=d.type, user_id=d.user_id, scope=d.scope,
                    key_protection=d.key_protection)
                return created.remote, created.private_key
            except OutcomeUnknownError:
                found = self.api.get_keypair(d.name)
            if found is None:
                continue
            # It exists, so our create took effect, and its private key is lost in transit.
            self.store.record(self._entry(d, found, sealed=None, status=EntryStatus.TAINTED))
            raise _TaintedError(
                f"keypair.{d.name}: the cloud created it but its answer, with the private key, "
                "was lost; recorded as tainted, the next apply replaces it")
        raise ApplyError(f"keypair.{d.name}: the create's answer was lost "
                         f"{LOST_RESPONSE_ATTEMPTS} times and it does not exist; run apply again")

    # -- one change ---------------------------------------------------------------------
    def _read_custody_key(self, d: DesiredKeyPair) -> Secret | None:
        if d.key_protection is None or d.key_protection.private_key_file is None:
            return None
        path = Path(d.key_protection.private_key_file)
        try:
            return Secret(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ApplyError(f"keypair.{d.name}: cannot read key_protection.private_key_file "
                             f"{path}: {type(exc).__name__}") from None

    def _generate(self, d: DesiredKeyPair, prior: StateKeyPair | None) -> StateKeyPair:
        assert d.algorithm is not None
        if (prior is not None and prior.status is EntryStatus.PENDING
                and prior.private_key is not None and prior.spec_digest == d.spec_digest):
            public, sealed = prior.public_key, prior.private_key  # resume with the stored key
            secret = self.store.unseal(d.name, sealed) if d.key_protection else None
        else:
            generated = self.generate(d.algorithm, comment=d.name)
            public = generated.public_key
            sealed = self.store.seal(d.name, generated.private_key)
            secret = generated.private_key if d.key_protection else None
            pending = RemoteKeyPair(name=d.name, public_key=public,
                                    fingerprint=keys.md5_fingerprint(public), type=d.type)
            self.store.record(self._entry(d, pending, sealed=sealed, status=EntryStatus.PENDING))
        remote = self._import(d, public, secret)
        entry = self._entry(d, remote, sealed=sealed)
        # The private key is durable already (the pending entry); if this line is lost, the
        # next plan finds the key pair with our public key and adopts it.
        self.store.record(entry, durable=False)
        return entry

    def _create(self, change: Change) -> None:
        d = change.desired
        assert d is not None
        if d.source is KeySource.CLOUD:
            remote, private = self._create_in_cloud(d)
            sealed = self.store.seal(d.name, private) if private is not None else None
            entry = self._entry(d, remote, sealed=sealed)
            self.store.record(entry)
        elif d.source is KeySource.GENERATE:
            entry = self._generate(d, change.prior)
        else:
            assert d.public_key is not None
            remote = self._import(d, d.public_key, self._read_custody_key(d))
            entry = self._entry(d, remote, sealed=None)
            self.store.record(entry, durable=False)  # no secret; a lost line is re-adopted
        self._describe(d, entry)

    def _describe(self, d: DesiredKeyPair, entry: StateKeyPair) -> None:
        """kps cannot take a description on create: set it afterwards, then record it."""
        if d.description and self.api.api is Api.KPS and entry.description != d.description:
            self.api.update_description(d.name, d.description)
            self.store.record(replace(entry, description=d.description))

    def _delete(self, name: str) -> None:
        self.api.delete_keypair(name)
        self.store.forget(name)

    def run(self, change: Change) -> Outcome:
        start = time.monotonic()
        notes: tuple[str, ...] = ()
        try:
            if change.action is Action.DELETE:
                self.hooks.pre_apply(change, "delete")
                self._delete(change.name)
            elif change.action is Action.REPLACE:
                self.hooks.pre_apply(change, "delete")
                self.api.delete_keypair(change.name)
                self.hooks.pre_apply(change, "create")
                self._create(replace(change, prior=None))
            elif change.action is Action.CREATE:
                self.hooks.pre_apply(change, "create")
                self._create(change)
            elif change.action is Action.IMPORT:
                self.hooks.pre_apply(change, "import")
                self._adopt(change)
            elif change.action is Action.UPDATE:
                self.hooks.pre_apply(change, "update")
                self._update(change)
        except ReconcilerError as exc:
            return Outcome(change.name, change.action, False, time.monotonic() - start, str(exc))
        return Outcome(change.name, change.action, True, time.monotonic() - start, notes=notes)

    def _adopt(self, change: Change) -> None:
        d, remote, prior = change.desired, change.remote, change.prior
        assert d is not None and remote is not None
        sealed = prior.private_key if prior is not None else None
        entry = self._entry(d, remote, sealed=sealed,
                            description=prior.description if prior else remote.description)
        self.store.record(entry)
        self._describe(d, entry)

    def _update(self, change: Change) -> None:
        d, prior = change.desired, change.prior
        assert d is not None and prior is not None
        self.api.update_description(d.name, d.description or "")
        self.store.record(replace(prior, description=d.description,
                                  prevent_destroy=d.prevent_destroy))


def _check_state_key(plan: Plan, store: StateStore) -> None:
    """Resolve the state key before the cloud acts: with a wrong key, a key pair the cloud
    generates would be made and its private key could not be stored."""
    for change in plan.actionable:
        d = change.desired
        if (change.action in (Action.CREATE, Action.REPLACE) and d is not None
                and d.source is not KeySource.IMPORT):
            store.seal(change.name, Secret("state key check"))
            return


def apply_plan(
    plan: Plan,
    *,
    api: KeyPairApi,
    store: StateStore,
    hooks: Hooks | None = None,
    parallelism: int = 10,
    now: Callable[[], datetime],
    generate: Callable[..., keys.GeneratedKey] = keys.generate_keypair,
) -> ApplyResult:
    """Carry out ``plan`` and return the state reached, even when some changes failed.

    The caller holds the state lock and has loaded the store.
    """
    hooks = hooks or NullHooks()
    applier = _Applier(api=api, store=store, hooks=hooks, now=now, generate=generate)
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    _check_state_key(plan, store)
    try:
        for name in plan.forget:
            store.forget(name)
        with ThreadPoolExecutor(max_workers=max(1, parallelism),
                                thread_name_prefix="apply") as pool:
            futures: dict[Future[Outcome], Change] = {
                pool.submit(applier.run, change): change for change in plan.actionable
            }
            try:
                for future in as_completed(futures):
                    outcome = future.result()
                    with lock:
                        outcomes.append(outcome)
                    hooks.post_apply(futures[future], outcome)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        state = store.commit()
    outcomes.sort(key=lambda o: o.name)
    return ApplyResult(outcomes=tuple(outcomes), state=state)


def apply_refresh(plan: Plan, *, store: StateStore, remote: RemoteSnapshot) -> list[str]:
    """Apply a refresh-only plan: record in state what changed in the cloud. Returns notes."""
    if plan.mode is not Mode.REFRESH_ONLY:
        raise ApplyError("not a refresh-only plan")
    notes = []
    state = store.load()
    try:
        for d in plan.drift:
            prior = state.keypairs.get(d.name)
            if prior is None:
                continue
            now_remote = remote.keypairs.get(d.name)
            if now_remote is None:
                store.forget(d.name)
                notes.append(f"keypair.{d.name}: deleted outside reconciler; dropped from state")
            else:
                sha = keys.sha256_fingerprint(now_remote.public_key) if prior.type != "x509" else ""
                store.record(replace(prior, public_key=now_remote.public_key.strip(),
                                     fingerprint_md5=now_remote.fingerprint,
                                     fingerprint_sha256=sha, private_key=None))
                notes.append(f"keypair.{d.name}: changed outside reconciler; state now records "
                             "the cloud's key (the previous private key is kept in the backup)")
    finally:
        store.commit()
    return notes
