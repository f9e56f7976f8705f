"""Carrying out key pair changes through one target's API, making every outcome durable
first.

Every private key is in the state store before anything depends on it: a key generated here is
recorded (encrypted) before its public half is uploaded; a key the cloud generated is recorded
as soon as it arrives. A create whose answer was lost is re-read rather than blindly retried.
Custody changed in place is recorded once the cloud confirmed it; the cloud's copy is cleared
only while state holds a private key checked to be the half of the recorded public key, and
of the public key the cloud holds, read again right before the clear.

Where the API imports several public keys in one request (``capabilities.batch_import``: KPS,
10), the creates of key pairs whose public key is known here (generated here, or given) go in
groups (``units``): every generated private key of a group is durable (one fsync for the
group) before the group is sent; each key pair of the answer is recorded or reported on its
own; a lost answer is re-read by one list, and only the names still absent are sent again.
Key pairs the cloud generates, and replacements, are created one at a time.

A rotation without a gap (``kinds.generations``) creates the new generation under its own
name first, recording the old one as the entry's ``deposed`` generation (with its private key,
which the rebinds need); the old one is deleted later, by the ``deposed`` kind. A change of
a key pair at generation N talks to the cloud's ``NAME-gN`` through ``GenerationApi``.

May import: ``reconciler.changes``, ``reconciler.model``, ``reconciler.errors``,
``reconciler.keys``, ``reconciler.address``, ``reconciler.api.protocol``,
``reconciler.state.protocol``, ``reconciler.adoption``, ``reconciler.kinds.generations``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from reconciler import keys
from reconciler.address import DEFAULT_TARGET, KEYPAIR, Address, keypair_address
from reconciler.adoption import recorded_protection
from reconciler.api.protocol import ImportRequest, KeyPairApi
from reconciler.changes import Action, Change, Hooks, Outcome, Plan
from reconciler.errors import (
    ApiError,
    ApplyError,
    KeyFormatError,
    OutcomeUnknownError,
    ReconcilerError,
)
from reconciler.kinds.generations import (
    GenerationApi,
    cloud_name_of,
    kept_for_deposed,
    rotation_of,
)
from reconciler.model import (
    Deposed,
    DesiredKeyPair,
    EntryStatus,
    KeySource,
    RemoteKeyPair,
    SealedSecret,
    Secret,
    StateKeyPair,
)
from reconciler.state.protocol import StateStore

LOST_RESPONSE_ATTEMPTS = 8  # a lost answer is re-read, then resent; 8 rides out heavy fault rates


class _TaintedError(ApplyError):
    """The cloud generated the pair, but its private key never arrived."""


class _AmbiguousError(ApplyError):
    """A write may or may not have taken effect: what state holds for it must stay."""


_DIFFERENT_KEY = ("the cloud holds a different key under this name (created by someone else "
                  "meanwhile); nothing was recorded for it")


@dataclass(frozen=True)
class _Import:
    """One create of a key pair whose public key is known here, ready to send."""

    change: Change
    d: DesiredKeyPair
    public_key: str
    sealed: SealedSecret | None  # generated here: the private key, sealed for state
    secret: Secret | None  # custody: the private key handed to the cloud
    pending: StateKeyPair | None  # recorded (durable) before it is sent

    def request(self) -> ImportRequest:
        d = self.d
        return ImportRequest(name=d.name, public_key=self.public_key, type=d.type,
                             user_id=d.user_id, scope=d.scope, key_protection=d.key_protection,
                             private_key=self.secret)

    def ours(self, remote: RemoteKeyPair) -> bool:
        return keys.same_key(remote.public_key, self.public_key, key_type=self.d.type)


@dataclass
class KeyPairApplier:
    """Carries out the changes of one target through that target's API."""

    api: KeyPairApi
    store: StateStore
    hooks: Hooks
    now: Callable[[], datetime]
    generate: Callable[..., keys.GeneratedKey]
    target: str = DEFAULT_TARGET
    # The generation this applier's entries are recorded as (``GenerationApi`` then names
    # it in the cloud), and the previous one while a rotation is under way.
    generation: int = 0
    deposed: Deposed | None = None
    servers: tuple[str, ...] = ()  # a rotation keeps the bindings it moves

    # -- state entries ---------------------------------------------------------------
    def _entry(self, d: DesiredKeyPair, remote: RemoteKeyPair, *,
               sealed: SealedSecret | None, status: EntryStatus = EntryStatus.READY,
               description: str | None = None) -> StateKeyPair:
        public = remote.public_key
        return StateKeyPair(
            name=d.name, api=self.api.api, source=d.source, public_key=public.strip(),
            fingerprint_md5=remote.fingerprint, fingerprint_sha256=sha256_of(public, d.type),
            created=self.now().strftime("%Y-%m-%dT%H:%M:%SZ"), spec_digest=d.spec_digest,
            algorithm=d.algorithm, type=d.type, user_id=d.user_id, scope=d.scope,
            description=description, key_protection=d.key_protection, private_key=sealed,
            status=status, prevent_destroy=d.prevent_destroy, target=self.target,
            generation=self.generation, deposed=self.deposed, servers=self._servers(d.name),
        )

    def _servers(self, name: str) -> tuple[str, ...]:
        """The bindings an entry of a rotation keeps: those state records now (a binding this
        apply dropped or made meanwhile counts), not those of the plan's prior entry."""
        if self.deposed is None:
            return self.servers
        current = self.store.current(name, target=self.target)
        return current.servers if current is not None else self.servers

    # -- API calls that survive lost answers ----------------------------------------------
    def _reread(self, name: str) -> RemoteKeyPair | None:
        """After a lost answer: did the write take effect?"""
        try:
            return self.api.get_keypair(name)
        except ReconcilerError as exc:
            raise _AmbiguousError(f"its answer was lost and reading it back failed: {exc}") \
                from None

    def _import(self, d: DesiredKeyPair, public_key: str,
                private_key: Secret | None) -> RemoteKeyPair:
        ours = keys.normalise(public_key, key_type=d.type)
        lost: OutcomeUnknownError | None = None
        for _ in range(LOST_RESPONSE_ATTEMPTS):
            try:
                made = self.api.import_keypair(
                    name=d.name, public_key=public_key, type=d.type, user_id=d.user_id,
                    scope=d.scope, key_protection=d.key_protection, private_key=private_key)
            except OutcomeUnknownError as exc:
                lost = exc
            except ApiError as exc:
                if not exc.conflict:
                    if lost:
                        raise _AmbiguousError(str(exc)) from None
                    raise
            else:
                if keys.same_key(made.public_key, public_key, key_type=d.type):
                    return made
                held = self._not_as_sent(d.name, lambda found: keys.same_key(
                    found.public_key, public_key, key_type=d.type))
                if isinstance(held, ReconcilerError):
                    raise held
                return held
            found = self._reread(d.name)
            if found is None:
                continue  # the lost request never took effect: send it again
            if keys.normalise(found.public_key, key_type=d.type) == ours:
                return found  # ours: an earlier attempt took effect
            raise ApplyError(_DIFFERENT_KEY)
        raise _AmbiguousError(_no_effect("import", lost))

    def _pending_cloud_entry(self, d: DesiredKeyPair) -> StateKeyPair:
        """Recorded before a cloud create is sent: if the process dies before the answer
        arrives, the next plan knows the name is ours and replaces what the cloud made."""
        return StateKeyPair(
            name=d.name, api=self.api.api, source=d.source, public_key="", fingerprint_md5="",
            fingerprint_sha256="", created=self.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            spec_digest=d.spec_digest, algorithm=d.algorithm, type=d.type, user_id=d.user_id,
            scope=d.scope, description=None, key_protection=d.key_protection, private_key=None,
            status=EntryStatus.PENDING, prevent_destroy=d.prevent_destroy, target=self.target,
            generation=self.generation, deposed=self.deposed, servers=self._servers(d.name),
        )

    def _create_in_cloud(self, d: DesiredKeyPair) -> tuple[RemoteKeyPair, Secret | None]:
        self.store.record(self._pending_cloud_entry(d))
        lost: OutcomeUnknownError | None = None
        for _ in range(LOST_RESPONSE_ATTEMPTS):
            try:
                created = self.api.create_keypair(
                    name=d.name, type=d.type, user_id=d.user_id, scope=d.scope,
                    key_protection=d.key_protection)
                return created.remote, created.private_key
            except OutcomeUnknownError as exc:
                lost = exc
            except ApiError as exc:
                if lost:
                    raise _AmbiguousError(str(exc)) from None
                raise
            found = self._reread(d.name)
            if found is None:
                continue
            # It exists, so our create took effect, and its private key is lost in transit.
            self.store.record(self._entry(d, found, sealed=None, status=EntryStatus.TAINTED))
            raise _TaintedError("the cloud created it but its answer, with the private key, "
                                "was lost; recorded as tainted, the next apply replaces it")
        raise _AmbiguousError(_no_effect("create", lost))

    # -- one change ---------------------------------------------------------------------
    def _read_custody_key(self, d: DesiredKeyPair) -> Secret | None:
        """The private key handed to the cloud's custody: the bytes sent are the bytes
        checked to be the half of the declared public key."""
        if d.key_protection is None or d.key_protection.private_key_file is None:
            return None
        return read_custody_key(d)

    def _key_to_import(self, d: DesiredKeyPair, prior: StateKeyPair | None
                       ) -> tuple[str, SealedSecret, Secret | None, StateKeyPair | None]:
        """The public key to import for ``d`` (generated here), its sealed private key, the
        private key for custody, and the pending entry to record before sending (None when
        resuming with the key a pending entry already holds)."""
        assert d.algorithm is not None
        if (prior is not None and prior.status is EntryStatus.PENDING
                and prior.private_key is not None and prior.spec_digest == d.spec_digest):
            public, sealed = prior.public_key, prior.private_key  # resume with the stored key
            secret = (self.store.unseal(d.name, sealed, target=self.target)
                      if d.key_protection else None)
            return public, sealed, secret, None
        generated = self.generate(d.algorithm, comment=d.name)
        public = generated.public_key
        sealed = self.store.seal(d.name, generated.private_key, target=self.target)
        secret = generated.private_key if d.key_protection else None
        pending = RemoteKeyPair(name=d.name, public_key=public,
                                fingerprint=keys.md5_fingerprint(public), type=d.type)
        return public, sealed, secret, self._entry(d, pending, sealed=sealed,
                                                   status=EntryStatus.PENDING)

    def _generate(self, d: DesiredKeyPair, prior: StateKeyPair | None) -> StateKeyPair:
        public, sealed, secret, pending = self._key_to_import(d, prior)
        if pending is not None:
            self.store.record(pending)
        remote = self._import(d, public, secret)
        entry = self._entry(d, remote, sealed=sealed)
        # The private key is durable already (the pending entry); if this line is lost, the
        # next plan finds the key pair with our public key and adopts it.
        self.store.record(entry, durable=False)
        return entry

    def _create(self, d: DesiredKeyPair, prior: StateKeyPair | None) -> None:
        try:
            entry = self._make(d, prior)
        except (_AmbiguousError, _TaintedError):
            raise  # what state holds (pending, tainted) is what the next plan must see
        except (ApiError, ApplyError, KeyFormatError):
            # Refused for certain (a name taken meanwhile, a bad request): nothing happened in
            # the cloud, so state goes back to what it was. (A StateError is not one of these:
            # the cloud may have acted, and the pending entry must stay.)
            self._undo(d, prior)
            raise
        self._describe(d, entry)

    def _undo(self, d: DesiredKeyPair, prior: StateKeyPair | None) -> None:
        """State as it was before a create the cloud refused for certain."""
        if prior is not None:  # with the bindings state records now
            self.store.record(replace(prior, servers=self._servers(d.name)))
        else:
            self.store.forget(d.name, target=self.target)

    def _make(self, d: DesiredKeyPair, prior: StateKeyPair | None) -> StateKeyPair:
        if d.source is KeySource.CLOUD:
            remote, private = self._create_in_cloud(d)
            missing = _missing_private_key(private, remote)
            if missing is not None:
                # Made in the cloud, but what it sent cannot be used: never "ready".
                self.store.record(self._entry(d, remote, sealed=None,
                                              status=EntryStatus.TAINTED))
                raise _TaintedError(f"the cloud created it but {missing}; recorded as tainted, "
                                    "the next apply replaces it")
            assert private is not None
            entry = self._entry(d, remote, sealed=self.store.seal(d.name, private,
                                                                  target=self.target))
            self.store.record(entry)
            return entry
        if d.source is KeySource.GENERATE:
            return self._generate(d, prior)
        assert d.public_key is not None
        remote = self._import(d, d.public_key, self._read_custody_key(d))
        entry = self._entry(d, remote, sealed=None)
        self.store.record(entry, durable=False)  # no secret; a lost line is re-adopted
        return entry

    def _describe(self, d: DesiredKeyPair, entry: StateKeyPair) -> None:
        """kps cannot take a description on create: set it afterwards, then record it."""
        if d.description and self.api.capabilities.descriptions and \
                entry.description != d.description:
            self.api.update_description(d.name, d.description)
            self.store.record(replace(entry, description=d.description))

    def run(self, change: Change) -> Outcome:
        rotation = rotation_of(change)
        if rotation is not None:
            return self._rotate(change, *rotation)
        prior = change.prior
        if _plain(change):
            return self._run(change)
        return self._generation(change.name, cloud_name_of(change),
                                prior.generation if prior else 0,
                                prior.deposed if prior else None,
                                prior.servers if prior and prior.deposed else ())._run(change)

    def _generation(self, name: str, cloud: str, generation: int, deposed: Deposed | None,
                    servers: tuple[str, ...]) -> KeyPairApplier:
        """This applier for generation ``generation`` of key pair ``name``."""
        api = GenerationApi(self.api, name, cloud) if cloud != name else self.api
        return replace(self, api=api, generation=generation, deposed=deposed, servers=servers)

    def _rotate(self, change: Change, old: str, new: str) -> Outcome:
        """A rotation without a gap: the new generation is made under ``new``; the entry
        keeps the old one (``old`` in the cloud) as deposed until the servers are rebound."""
        start = time.monotonic()
        prior, d = change.prior, change.desired
        assert prior is not None and d is not None
        generation = int((change.after or {}).get("generation") or 0)
        deposed = Deposed(cloud_name=old, public_key=prior.public_key,
                          fingerprint_md5=prior.fingerprint_md5,
                          fingerprint_sha256=prior.fingerprint_sha256,
                          private_key=prior.private_key)
        view = self._generation(change.name, new, generation, deposed, prior.servers)
        try:
            self.hooks.pre_apply(change, "create")
            view._create(d, prior)  # refused for certain: state is the prior entry again
        except ReconcilerError as exc:
            return Outcome(change.name, change.action, False, time.monotonic() - start,
                           f"the new generation {new!r} was not made (the key pair {old!r} "
                           f"and its servers are unchanged): {exc}", at=change.at)
        return Outcome(change.name, change.action, True, time.monotonic() - start,
                       at=change.at, rotated=True)

    def _run(self, change: Change) -> Outcome:
        start = time.monotonic()
        destroyed = False
        try:
            if change.action in (Action.DELETE, Action.REPLACE):
                self.hooks.pre_apply(change, "delete")
                if change.action is Action.DELETE:
                    kept_for_deposed(self.store.current(change.name, target=self.target))
                self.api.delete_keypair(change.name)
                destroyed = True
                if change.action is Action.DELETE:
                    self.store.forget(change.name, target=self.target)
            if change.action in (Action.CREATE, Action.REPLACE):
                self.hooks.pre_apply(change, "create")
                assert change.desired is not None
                self._create(change.desired,
                             change.prior if change.action is Action.CREATE else None)
            elif change.action is Action.IMPORT:
                self.hooks.pre_apply(change, "import")
                self._adopt(change)
            elif change.action is Action.UPDATE:
                adopted = None
                if change.importing:  # recorded as the cloud holds it, then updated
                    self.hooks.pre_apply(change, "import")
                    adopted = self._adopt(change)
                self.hooks.pre_apply(change, "update")
                self._update(change, adopted)
        except ReconcilerError as exc:
            error = str(exc)
            if change.action is Action.REPLACE and destroyed:
                error = f"the old key pair was deleted, but its replacement failed: {error}"
            return Outcome(change.name, change.action, False, time.monotonic() - start, error,
                           destroyed=destroyed, at=change.at, importing=change.importing)
        return Outcome(change.name, change.action, True, time.monotonic() - start,
                       at=change.at, importing=change.importing)

    # -- creates in groups (batch import) ------------------------------------------------
    def units(self, changes: Sequence[Change]) -> list[tuple[Change, ...]]:
        size = self.api.capabilities.batch_import
        grouped = [c for c in changes if size > 1 and _batchable(c)]
        units: list[tuple[Change, ...]] = [(c,) for c in changes
                                           if not (size > 1 and _batchable(c))]
        units += [tuple(grouped[i:i + size]) for i in range(0, len(grouped), max(1, size))]
        return units

    def run_unit(self, unit: tuple[Change, ...]) -> list[Outcome]:
        if len(unit) == 1:
            return [self.run(unit[0])]
        return self._run_group(unit)

    def _prepare(self, change: Change) -> _Import:
        d = change.desired
        assert d is not None
        if d.source is KeySource.GENERATE:
            public, sealed, secret, pending = self._key_to_import(d, change.prior)
            return _Import(change, d, public, sealed, secret, pending)
        assert d.public_key is not None
        return _Import(change, d, d.public_key, None, self._read_custody_key(d), None)

    def _run_group(self, unit: tuple[Change, ...]) -> list[Outcome]:
        """Create ``unit``'s key pairs in one batch import: their pending entries durable
        first (one sync), then one request; each outcome on its own."""
        start = time.monotonic()
        errors: dict[Address, str] = {}
        ready: list[_Import] = []
        self.hooks.pre_apply_all(unit, "create")
        for change in unit:
            try:
                ready.append(self._prepare(change))
            except ReconcilerError as exc:  # nothing of it was recorded or sent
                errors[change.address] = str(exc)
        try:
            self.store.record_all([i.pending for i in ready if i.pending is not None])
        except ReconcilerError as exc:  # nothing was sent; what was recorded is resumed later
            errors.update(dict.fromkeys((i.change.address for i in ready), str(exc)))
            ready = []
        answers = self._import_group(ready) if ready else {}
        made: list[tuple[_Import, StateKeyPair]] = []
        for item in ready:
            answer = answers[item.d.name]
            if isinstance(answer, RemoteKeyPair):
                made.append((item, self._entry(item.d, answer, sealed=item.sealed)))
                continue
            try:
                if not isinstance(answer, _AmbiguousError):
                    self._undo(item.d, item.change.prior)
            except ReconcilerError as exc:
                answer = exc
            errors[item.change.address] = str(answer)
        try:
            # As for one create: each private key was durable before the request (its pending
            # entry); a lost ready line is repaired by the next plan, which adopts the pair.
            self.store.record_all([entry for _, entry in made], durable=False)
        except ReconcilerError as exc:
            errors.update(dict.fromkeys((i.change.address for i, _ in made), str(exc)))
            made = []
        for item, entry in made:
            try:
                self._describe(item.d, entry)
            except ReconcilerError as exc:
                errors[item.change.address] = str(exc)
        elapsed = time.monotonic() - start
        return [Outcome(c.name, c.action, c.address not in errors, elapsed,
                        errors.get(c.address), at=c.at) for c in unit]

    def _import_group(self, group: list[_Import]
                      ) -> dict[str, RemoteKeyPair | ReconcilerError]:
        """Send ``group`` until every name is made or refused: after a lost answer, one list
        says which took effect (ours: done; another key: refused), and only the names still
        absent are sent again, never one that exists."""
        waiting = {item.d.name: item for item in group}
        done: dict[str, RemoteKeyPair | ReconcilerError] = {}
        lost: OutcomeUnknownError | None = None
        for _ in range(LOST_RESPONSE_ATTEMPTS):
            try:
                answer = self.api.import_keypairs([i.request() for i in waiting.values()])
            except OutcomeUnknownError as exc:
                lost = exc
            except ApiError as exc:  # the whole request refused for certain
                refused = _AmbiguousError(str(exc)) if lost else exc
                done.update(dict.fromkeys(waiting, refused))
                return done
            else:
                for name, remote in answer.imported.items():
                    item = waiting.pop(name)
                    done[name] = remote if item.ours(remote) else \
                        self._not_as_sent(name, item.ours)
                for name, reason in answer.refused.items():
                    done[name] = self._refused(waiting.pop(name), reason)
                if not waiting:
                    return done
                lost = OutcomeUnknownError(
                    "the batch import's answer did not mention "
                    f"{', '.join(sorted(waiting))}")
            try:
                listed = self.api.list_keypairs().keypairs
            except ReconcilerError as exc:
                unknown = _AmbiguousError(f"its answer was lost and reading the key pairs "
                                          f"back failed: {exc}")
                done.update(dict.fromkeys(waiting, unknown))
                return done
            for name in [n for n in waiting if n in listed]:
                item = waiting.pop(name)
                done[name] = listed[name] if item.ours(listed[name]) else \
                    ApplyError(_DIFFERENT_KEY)
            if not waiting:
                return done
        done.update(dict.fromkeys(waiting, _AmbiguousError(_no_effect("batch import", lost))))
        return done

    def _not_as_sent(self, name: str, ours: Callable[[RemoteKeyPair], bool]
                     ) -> RemoteKeyPair | ReconcilerError:
        """An import answered as made, but with another public key than the one sent (a
        name already taken answered as if made, or an answer changed on its way): what the
        cloud holds is read back, and only our key is taken as ours."""
        try:
            found = self.api.get_keypair(name)
        except ReconcilerError as exc:
            return _AmbiguousError(f"the cloud answered the import with another public key "
                                   f"than the one sent, and reading it back failed: {exc}")
        if found is not None and ours(found):
            return found
        if found is not None:
            return ApplyError(f"the cloud answered the import with another public key than the "
                              f"one sent: {_DIFFERENT_KEY}")
        return ApplyError("the cloud answered the import with another public key than the one "
                          "sent, and reading it back finds no key pair of that name; nothing was "
                          "recorded for it. Run apply again")

    def _refused(self, item: _Import, reason: str) -> RemoteKeyPair | ReconcilerError:
        """A name the cloud refused in a batch: the key pair may still be ours (an earlier
        attempt whose answer was lost, an interrupted run), so it is read back."""
        try:
            found = self._reread(item.d.name)
        except _AmbiguousError as exc:
            return exc
        if found is not None and item.ours(found):
            return found
        if found is not None:
            return ApplyError(f"the cloud refused it in a batch import ({reason}): "
                              f"{_DIFFERENT_KEY}")
        return ApplyError(f"the cloud refused it in a batch import: {reason}. Nothing was "
                          "recorded for it; fix the cause and run apply again")

    def _adopt(self, change: Change) -> StateKeyPair:
        """Record a key pair the cloud holds as it holds it: what the plan read of it (its
        description included), nothing written to the cloud."""
        d, remote, prior = change.desired, change.remote, change.prior
        assert d is not None and remote is not None
        if prior is not None:  # completing an interrupted apply of ours
            return self._complete(d, remote, prior)
        entry = replace(self._entry(d, remote, sealed=None,
                                    description=remote.description or None),
                        key_protection=recorded_protection(d, remote))
        self.store.record(entry)
        return entry

    def _complete(self, d: DesiredKeyPair, remote: RemoteKeyPair,
                  prior: StateKeyPair) -> StateKeyPair:
        """An interrupted create that took effect: recorded ready, then described as its
        create would have been (kps takes no description on create)."""
        description = prior.description
        if description is None and d.description and self.api.capabilities.descriptions:
            # A list carries no description: read it, rather than write the one it may have.
            shown = self.api.get_keypair(d.name)
            description = shown.description if shown is not None else None
        entry = self._entry(d, remote, sealed=prior.private_key, description=description)
        self.store.record(entry)
        self._describe(d, entry)
        return entry

    def _update(self, change: Change, prior: StateKeyPair | None = None) -> None:
        """In place: custody first (each step recorded once the cloud confirmed it, so an
        interrupted apply leaves state at the last confirmed value and the next plan makes
        the call again), then the description. ``prior``: the entry just adopted (an import
        with an update), else the change's."""
        d, prior = change.desired, prior or change.prior
        assert d is not None and prior is not None
        before, after = change.before or {}, change.after or {}
        entry = prior
        if "key_protection" in after and after["key_protection"] != before.get("key_protection"):
            entry = self._custody(d, prior, clear=after["key_protection"] is None)
        if after.get("description") != before.get("description"):
            self.api.update_description(d.name, d.description or "")
            entry = replace(entry, description=d.description)
        self.store.record(replace(entry, prevent_destroy=d.prevent_destroy))

    def _custody(self, d: DesiredKeyPair, prior: StateKeyPair, *, clear: bool) -> StateKeyPair:
        """Hand the private key to the cloud's custody (or its new encryption), or clear the
        cloud's copy; then record it. State's private key is checked to be the half of the
        recorded public key before either: a clear never leaves only an unusable copy."""
        address = keypair_address(d.name, self.target)
        held = self._held_key(prior, address)
        if clear:
            if held is None:
                raise ApplyError(f"refusing to clear the cloud's copy of the private key of "
                                 f"{address}: state does not hold it. Nothing was changed; "
                                 "make a new plan")
            self._check_still_ours(prior, held, address)
            self.api.clear_private_key(d.name)  # a clear already done counts as done
            entry = replace(prior, key_protection=None, spec_digest=d.spec_digest)
        else:
            assert d.key_protection is not None
            secret = read_custody_key(d) if d.key_protection.private_key_file else held
            if secret is None:
                raise ApplyError(f"{address}: reconciler does not hold its private key, so it "
                                 "cannot hand it to the cloud's custody. Nothing was changed; "
                                 "make a new plan")
            self.api.import_private_key(d.name, key_protection=d.key_protection,
                                        private_key=secret, user_id=d.user_id)
            entry = replace(prior, key_protection=d.key_protection, spec_digest=d.spec_digest)
        self.store.record(entry)
        return entry

    def _held_key(self, prior: StateKeyPair, address: Address) -> Secret | None:
        if prior.private_key is None:
            return None
        secret = self.store.unseal(prior.name, prior.private_key, target=self.target)
        try:
            ours = prior.type == "x509" or keys.same_key(keys.public_key_of(secret),
                                                         prior.public_key)
        except KeyFormatError:
            ours = False
        if not ours:
            raise ApplyError(f"the private key state holds for {address} is not the half of "
                             "its recorded public key (the state was altered); nothing was "
                             "sent. Restore the state from its .backup file")
        return secret

    def _check_still_ours(self, prior: StateKeyPair, held: Secret, address: Address) -> None:
        """Read the key pair again right before its cloud copy is cleared: re-keyed in the
        console since the refresh, the copy there is another key's, maybe its only one."""
        now = self.api.get_keypair(prior.name)
        if now is None:
            raise ApplyError(f"{address} was deleted in the cloud since the plan was made; "
                             "nothing was cleared. Make a new plan")
        try:
            ours = (now.fingerprint == prior.fingerprint_md5 and (
                prior.type == "x509" or keys.same_key(keys.public_key_of(held),
                                                      now.public_key)))
        except KeyFormatError:
            ours = False
        if not ours:
            raise ApplyError(f"{address} was changed in the cloud since the plan was made (its "
                             f"fingerprint is {now.fingerprint}, state records "
                             f"{prior.fingerprint_md5}): the private key the cloud keeps is "
                             "not the one state holds, and it was not cleared. Nothing was "
                             "changed; make a new plan")


def _batchable(change: Change) -> bool:
    """A create whose public key is known here (generated here, or given): a batch import
    can carry it. A replacement deletes first, one at a time; the cloud generates alone."""
    d = change.desired
    return change.action is Action.CREATE and d is not None and d.source is not KeySource.CLOUD \
        and _plain(change)


def _plain(change: Change) -> bool:
    """A change of a key pair the cloud calls by its own name, with no rotation under way:
    no ``GenerationApi`` and no generation fields to carry."""
    return cloud_name_of(change) == change.name and (
        change.prior is None or change.prior.deposed is None)


def _missing_private_key(private: Secret | None, remote: RemoteKeyPair) -> str | None:
    """Why the private key of a pair the cloud generated is not usable, or None."""
    if private is None:
        return "its answer carried no private key"
    try:
        ours = keys.public_key_of(private)
    except KeyFormatError:
        return "the private key in its answer does not load"
    if not keys.same_key(ours, remote.public_key):
        return "the private key in its answer does not match its public key"
    return None


def sha256_of(public_key: str, key_type: str) -> str:
    """The SHA256 fingerprint for state; empty (never an error) when the cloud's key is odd,
    so that a private key that arrived with it is still recorded."""
    try:
        if key_type == "x509":
            return keys.parse_certificate(public_key).fingerprint_sha256
        return keys.sha256_fingerprint(public_key)
    except KeyFormatError:
        return ""


def read_custody_key(d: DesiredKeyPair) -> Secret:
    """Read and check ``d``'s ``key_protection.private_key_file`` as the manifest loader did;
    an ``ApplyError`` naming the file and the key pair (never its content) otherwise."""
    assert d.key_protection is not None and d.key_protection.private_key_file is not None
    path = d.key_protection.private_key_file
    try:
        return keys.read_custody_key(path, public_key=d.public_key)
    except KeyFormatError as exc:
        raise ApplyError(f"{keypair_address(d.name)}: key_protection.private_key_file {path} "
                         f"{exc}; nothing of it was sent. Restore the file, or fix the manifest "
                         "and plan again") from None


def check_before_acting(plan: Plan, held: Mapping[Address, StateKeyPair]) -> None:
    """What must hold before the first request: every key pair deleted is one state holds
    (never someone else's), and every private key handed to custody is readable and the half
    of its public key. Raises ``ApplyError``; nothing has been changed then."""
    for change in plan.actionable:
        if change.address.kind != KEYPAIR:
            continue  # another kind's change: that kind checks it
        if change.action in (Action.DELETE, Action.REPLACE) and change.address not in held:
            raise ApplyError(f"refusing to delete {change.address}: state does not hold it, "
                             "so reconciler does not manage it. Nothing was changed; make a new "
                             "plan")
        d = change.desired
        if (change.action in (Action.CREATE, Action.REPLACE, Action.UPDATE) and d is not None
                and d.key_protection is not None and d.key_protection.private_key_file):
            read_custody_key(d)


def check_state_key(plan: Plan, store: StateStore) -> None:
    """Resolve the state key before the cloud acts: with a wrong key, a key pair the cloud
    generates would be made and its private key could not be stored."""
    for change in plan.actionable:
        if change.address.kind != KEYPAIR:
            continue
        d = change.desired
        if (change.action in (Action.CREATE, Action.REPLACE) and d is not None
                and d.source is not KeySource.IMPORT) or _unseals(change):
            store.seal(change.name, Secret("state key check"), target=change.address.target)
            return


def _unseals(change: Change) -> bool:
    """An in-place custody change that reads the private key state holds."""
    before, after = change.before or {}, change.after or {}
    return (change.action is Action.UPDATE and change.prior is not None
            and change.prior.private_key is not None
            and after.get("key_protection") != before.get("key_protection"))


def _no_effect(what: str, last: OutcomeUnknownError | None) -> str:
    """Why a create or import gave up, every attempt re-read and found without effect: the
    cloud answered with an error each time (a failing service), or no answer arrived."""
    if last is not None and last.answered:
        return (f"the cloud answered {last.answered} to each of {LOST_RESPONSE_ATTEMPTS} "
                f"attempts of the {what}, and reading the key pair back showed none took "
                "effect; nothing was recorded for it. The service is failing: run apply again "
                "later" + (f" (last request id: {last.request_id})" if last.request_id else ""))
    return (f"the {what}'s answer was lost {LOST_RESPONSE_ATTEMPTS} times and it does not "
            "exist; run apply again")


