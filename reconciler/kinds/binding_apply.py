"""Carrying out binding changes in one target, through KPS's binding tasks.

Binds of running servers that hold no key pair, for the same key pair, go ten to a
``batch-associate``; every other bind or rebind is one ``associate``, an unbind one
``disassociate``. A running server that holds a key pair is changed with that key pair's
private key as ``auth``, unsealed from state just before the request and never shown. Each
accepted task is followed to its end (``KpsTasksClient.wait``); a refusal or a failed task
is the change's error, with the cloud's code and reason. A task an interrupted apply left
running (kill -9) is found in ``running-tasks`` and followed, not submitted again. State
records a binding (the server id in its key pair's entry) once its task succeeded.

A server is bound to the key pair's name in the cloud (``key_name``: ``NAME-gN`` for a
generation), and only once state records that key pair ready under that name: a bind after a
create that failed (or whose private key never arrived) is refused, so that no server is
moved to a key nobody holds. A server holding a deposed generation is changed with that
generation's private key.

May import: ``reconciler.changes``, ``reconciler.model``, ``reconciler.errors``,
``reconciler.api.kps_tasks``, ``reconciler.state.protocol``, ``reconciler.textsafe``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from reconciler.api.kps_tasks import MAX_BATCH, ListedTask, Submission
from reconciler.changes import Action, Change, Hooks, Outcome
from reconciler.errors import ReconcilerError
from reconciler.model import EntryStatus, Secret
from reconciler.state.protocol import StateStore
from reconciler.textsafe import printable

_PHASE = {Action.CREATE: "create", Action.UPDATE: "update", Action.DELETE: "delete",
          Action.IMPORT: "import"}


def _attr(change: Change, key: str) -> Any:
    return (change.after or change.before or {}).get(key)


def _batchable(change: Change) -> bool:
    return (change.action is Action.CREATE and _attr(change, "status") == "ACTIVE"
            and (change.before or {}).get("key_name") is None)


class BindingApplier:
    """One target's binding changes; ``clients`` is its ``api.bindings.BindingClients``."""

    def __init__(self, *, clients: Any, store: StateStore, hooks: Hooks, target: str) -> None:
        self.clients = clients
        self.store = store
        self.hooks = hooks
        self.target = target
        self._lock = threading.Lock()  # one read-modify-record of an entry at a time
        self._running: dict[str, ListedTask] | None = None

    # -- units -------------------------------------------------------------------------

    def units(self, changes: Sequence[Change]) -> list[tuple[Change, ...]]:
        batches: dict[str, list[Change]] = {}
        out: list[tuple[Change, ...]] = []
        for change in changes:
            if _batchable(change):
                batches.setdefault(str(_attr(change, "key_name")), []).append(change)
            else:
                out.append((change,))
        for group in batches.values():
            out += [tuple(group[i:i + MAX_BATCH]) for i in range(0, len(group), MAX_BATCH)]
        return out

    def run(self, change: Change) -> Outcome:
        return self.run_unit((change,))[0]

    def run_unit(self, unit: tuple[Change, ...]) -> list[Outcome]:
        start = time.monotonic()
        for change in unit:
            self.hooks.pre_apply(change, _PHASE[change.action])
        try:
            results = self._carry_out(unit)
        except ReconcilerError as exc:
            results = [str(exc)] * len(unit)
        out = []
        for change, error in zip(unit, results, strict=True):
            if error is None:
                try:
                    self._record(change)
                except ReconcilerError as exc:
                    error = f"bound in the cloud, but state could not record it: {exc}"
            out.append(Outcome(change.name, change.action, error is None,
                               time.monotonic() - start, error, at=change.at))
        return out

    # -- the cloud ---------------------------------------------------------------------

    def _carry_out(self, unit: tuple[Change, ...]) -> list[str | None]:
        """One error (None: done) per change of ``unit``."""
        first = unit[0]
        if first.action is Action.IMPORT or self._state_only(first):
            return [None] * len(unit)
        if self.clients is None:
            return ["internal error: no binding clients for this target"] * len(unit)
        kps = self.clients.kps
        keypair = str(_attr(first, "key_name"))  # the name in the cloud
        if first.action is not Action.DELETE:
            missing = self._not_ready(first, keypair)
            if missing is not None:
                return [missing] * len(unit)
        pending = self._pending()
        # a task running on a server with another key pair is someone else's: never followed
        # as this apply's, nor raced with a submission of ours
        theirs = {sid: t for sid, t in pending.items() if first.action is not Action.DELETE
                  and t.keypair_name is not None and t.keypair_name != keypair}
        fresh = [c for c in unit if str(_attr(c, "server_id")) not in pending]
        submitted: dict[str, Submission] = {}
        if len(unit) > 1:
            if fresh:
                ids = [str(_attr(c, "server_id")) for c in fresh]
                submitted = {s.server_id: s for s in kps.batch_associate(keypair, ids)}
        elif fresh:
            sid = str(_attr(first, "server_id"))
            submitted[sid] = self._submit(first, keypair, sid)
        out: list[str | None] = []
        for change in unit:
            sid = str(_attr(change, "server_id"))
            if sid in theirs:
                out.append(f"not bound: a KPS task is running on the server with key pair "
                           f"{printable(theirs[sid].keypair_name or '')[:80]!r}, not this "
                           "apply's; nothing was submitted. The next apply sees where it "
                           "left the server")
                continue
            out.append(self._follow(change, pending[sid] if sid in pending else submitted[sid]))
        return out

    def _not_ready(self, change: Change, cloud_name: str) -> str | None:
        """Why servers must not be bound to ``cloud_name`` now (None: they may)."""
        name = str(_attr(change, "key_pair"))
        entry = self.store.current(name, target=self.target)
        if entry is not None and entry.status is EntryStatus.READY \
                and entry.cloud_name == cloud_name:
            return None
        return (f"not bound: key pair {name!r} is not in place as {cloud_name!r} (its create "
                "or rotation did not complete); the server keeps the key it has")

    def _submit(self, change: Change, keypair: str, sid: str) -> Submission:
        kps = self.clients.kps
        before = change.before or {}
        holder = before.get("key_name")
        auth = self._private_key(str(before.get("held_by") or holder), str(holder)) \
            if holder and _attr(change, "status") == "ACTIVE" else None
        if change.action is Action.DELETE:
            return kps.disassociate(sid, private_key=auth)  # type: ignore[no-any-return]
        return kps.associate(keypair, sid, private_key=auth)  # type: ignore[no-any-return]

    def _follow(self, change: Change, submitted: Submission | ListedTask) -> str | None:
        server = f"server {_attr(change, 'server')!r} ({_attr(change, 'server_id')})"
        if isinstance(submitted, Submission) and not submitted.accepted:
            code = f"{submitted.error_code}: " if submitted.error_code else ""
            why = submitted.error_msg or "no reason given"
            return f"KPS refused the task for {server}: {code}{why}"
        task_id = submitted.task_id
        assert task_id is not None
        outcome = self.clients.kps.wait(task_id)
        if outcome.succeeded:
            return None
        code = f"{outcome.error_code}: " if outcome.error_code else ""
        return (f"KPS task {task_id} for {server} failed: {code}"
                f"{outcome.error_msg or 'the cloud gave no reason'}")

    def _pending(self) -> dict[str, ListedTask]:
        """The tasks still running in the project, by server (read once): an interrupted
        apply's task is followed, never submitted twice."""
        with self._lock:
            if self._running is None:
                listed = self.clients.kps.running_tasks()
                self._running = {t.server_id: t for t in listed if t.server_id}
            return self._running

    def _private_key(self, name: str, cloud_name: str) -> Secret | None:
        """The private key of ``cloud_name``, which the entry of key pair ``name`` holds as
        its current generation or, once a rotation made a new one, as the deposed one (read
        now: a rotation may have begun since the plan)."""
        entry = self.store.current(name, target=self.target)
        sealed = entry.private_key_of(cloud_name) if entry is not None else None
        if sealed is None:
            return None  # the plan refused this; the cloud refuses it too (KPS.0105)
        return self.store.unseal(name, sealed, target=self.target)

    # -- state -------------------------------------------------------------------------

    @staticmethod
    def _state_only(change: Change) -> bool:
        """An unbind of a binding the server no longer has: only state changes."""
        before = change.before or {}
        holder = before.get("held_by") or before.get("key_name")  # a generation: held_by
        return change.action is Action.DELETE and (
            holder != _attr(change, "key_pair") or bool(before.get("rebound")))

    def _record(self, change: Change) -> None:
        keypair = str(_attr(change, "key_pair"))
        sid = str(_attr(change, "server_id"))
        with self._lock:
            entry = self.store.current(keypair, target=self.target)
            if entry is None:
                return  # the key pair is not in state: nothing to record the binding in
            servers = set(entry.servers)
            if change.action is Action.DELETE:
                servers.discard(sid)
            else:
                servers.add(sid)
            if servers != set(entry.servers):
                self.store.record(replace(entry, servers=tuple(sorted(servers))))
