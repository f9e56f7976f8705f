"""Refresh: read what exists in the cloud with one (paginated) list, not a GET per key pair.

``refresh`` lists one target; ``refresh_each`` lists every target of a run at once, on a
bounded thread pool, and returns the snapshots of those it could list with the reason for
each it could not; ``refresh_targets`` fails as a whole instead, naming the first target (in
the run's order) that could not be listed. ``EarlyLists`` are lists a plan's session starts
while it reads the state, which those take instead of listing again. ``describe_adoptions``
reads in detail the few key pairs a plan may adopt (their kps description is not in the
list).

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.api.protocol``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

from reconciler.api.protocol import KeyPairApi
from reconciler.errors import ReconcilerError, TargetRefreshError
from reconciler.model import RemoteServer, RemoteSnapshot

MAX_PARALLEL_TARGETS = 8
DETAIL_PARALLELISM = 10


def refresh(api: KeyPairApi) -> RemoteSnapshot:
    """Every key pair in the project, keyed by name (kps: ⌈N/1000⌉ requests; Nova: one)."""
    return api.list_keypairs()


class EarlyLists:
    """Each target's list, started before the plan asks for it.

    A plan's session starts them once the state is locked, so that the lists' round trips
    overlap the reading of the state; the plan then takes each one (``take``) instead of
    listing again. ``close`` waits for what is running and drops what was not started; with
    ``wait=False`` (the run ends with an error or an interrupt) it does not wait: the lists
    run on daemon threads, so that a list still waiting on a slow or silent endpoint (for up
    to its API's ``total_timeout``) neither delays the run's own error nor keeps the process
    alive."""

    def __init__(self, apis: Mapping[str, KeyPairApi], *,
                 parallelism: int = MAX_PARALLEL_TARGETS) -> None:
        self.apis = dict(apis)
        self.adopted: set[str] = set()  # the targets whose API the session took
        self._started: dict[str, Future[RemoteSnapshot]] = {name: Future() for name in apis}
        self._futures = dict(self._started)
        self._queue = deque(self.apis.items())
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"refresh-{i}", daemon=True)
                         for i in range(min(max(1, parallelism), len(apis)))]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    return
                name, api = self._queue.popleft()
            future = self._started[name]
            if not future.set_running_or_notify_cancel():
                continue  # closed before this list began
            try:
                future.set_result(refresh(api))
            except BaseException as exc:  # the taker raises it, as refresh would have
                future.set_exception(exc)

    def adopt(self, name: str) -> KeyPairApi | None:
        """The API the list of ``name`` runs through, now the session's to close."""
        api = self.apis.get(name)
        if api is not None:
            self.adopted.add(name)
        return api

    def take(self, name: str, api: KeyPairApi) -> Future[RemoteSnapshot] | None:
        """The list started for ``name`` through ``api`` (once), or None."""
        if self.apis.get(name) is not api:
            return None
        return self._futures.pop(name, None)

    def close(self, *, wait: bool = True) -> None:
        """No more lists begin; with ``wait``, those running are waited for."""
        for future in self._started.values():
            future.cancel()  # only those not yet begun
        self._futures.clear()
        if wait:
            for thread in self._threads:
                thread.join()


def listed(name: str, api: KeyPairApi, early: EarlyLists | None) -> RemoteSnapshot:
    """``refresh(api)``, or the list ``early`` started for it."""
    started = early.take(name, api) if early is not None else None
    return started.result() if started is not None else refresh(api)


def refresh_each(apis: Mapping[str, KeyPairApi], *,
                 parallelism: int = MAX_PARALLEL_TARGETS, early: EarlyLists | None = None
                 ) -> tuple[dict[str, RemoteSnapshot], dict[str, ReconcilerError]]:
    """Every target's snapshot, by target name, listed concurrently (or taken from
    ``early``); and the error of each target whose list failed with an expected error (the
    others still finish)."""
    out: dict[str, RemoteSnapshot] = {}
    failed: dict[str, ReconcilerError] = {}
    if not apis:
        return out, failed
    workers = max(1, min(parallelism, len(apis)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="refresh") as pool:
        futures = {name: (early.take(name, api) if early is not None else None)
                   or pool.submit(refresh, api) for name, api in apis.items()}
        for name, future in futures.items():
            try:
                out[name] = future.result()
            except ReconcilerError as exc:
                failed[name] = exc
    return out, failed


def refresh_targets(apis: Mapping[str, KeyPairApi], *,
                    parallelism: int = MAX_PARALLEL_TARGETS) -> dict[str, RemoteSnapshot]:
    """Every target's snapshot, by target name, listed concurrently.

    Raises ``TargetRefreshError`` naming the target when one fails with an expected error
    (its cause is the API's or the credentials' error); other targets' lists still finish
    first, so no request is left running."""
    out, failed = refresh_each(apis, parallelism=parallelism)
    for name in apis:
        if name in failed:
            raise TargetRefreshError(name, failed[name])
    return out


def describe_adoptions(apis: Mapping[str, KeyPairApi], snapshots: Mapping[str, RemoteSnapshot],
                       wanted: Mapping[str, Iterable[str]]) -> dict[str, RemoteSnapshot]:
    """``snapshots`` with the description of each key pair ``wanted`` (names by target: those
    declared and not in state, which the plan may adopt) read in detail, one GET each, where
    the target lists it and its API has descriptions (kps, whose list carries none): the plan
    then shows an adoption's description as the cloud holds it, and apply writes it only when
    the plan showed that. A key pair gone or re-keyed since the list is left as listed."""
    reads = [(target, name) for target, names in wanted.items() for name in sorted(set(names))
             if target in snapshots and target in apis and name in snapshots[target].keypairs
             and apis[target].capabilities.descriptions]
    if not reads:
        return dict(snapshots)
    with ThreadPoolExecutor(max_workers=min(DETAIL_PARALLELISM, len(reads)),
                            thread_name_prefix="detail") as pool:
        futures = {(t, n): pool.submit(apis[t].get_keypair, n) for t, n in reads}
        details = {key: future.result() for key, future in futures.items()}
    out = dict(snapshots)
    for (target, name), detail in details.items():
        listed = out[target].keypairs[name]
        if detail is None or detail.fingerprint != listed.fingerprint:
            continue
        pairs = {**out[target].keypairs,
                 name: replace(listed, description=detail.description or None)}
        out[target] = replace(out[target], keypairs=pairs)
    return out


def with_servers(snapshots: Mapping[str, RemoteSnapshot],
                 listers: Mapping[str, Callable[[], tuple[RemoteServer, ...]]], *,
                 parallelism: int = MAX_PARALLEL_TARGETS) -> dict[str, RemoteSnapshot]:
    """Each snapshot with its target's ECS server list (one listing per target, read
    concurrently): read only when a plan has bindings, or a key pair to delete or replace
    whose dependents it must name. An error of a listing is raised as it is."""
    if not snapshots:
        return {}
    workers = max(1, min(parallelism, len(snapshots)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="servers") as pool:
        futures = {name: pool.submit(listers[name]) for name in snapshots}
        return {name: replace(snapshot, servers=futures[name].result())
                for name, snapshot in snapshots.items()}
