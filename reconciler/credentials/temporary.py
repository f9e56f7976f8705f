"""Temporary credentials: cached with their expiry, refreshed before it, safe across threads.

The official SDK refreshes temporary credentials when less than 40 minutes of their life
remain (``Credentials._DEFAULT_EXPIRATION_THRESHOLD_SECONDS``). That threshold is kept, but
never more than two thirds of the life they were granted for, so that credentials granted
for less than an hour are not fetched again for every request: with the SDK's own
durations (1 h for STS, 6 h for IAM) the two rules agree. The fetch (which re-reads the
token file) runs under a lock: of the threads of an apply that need fresh credentials at
once, one fetches and the others wait for its result.

May import: the standard library, ``reconciler.api.protocol``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.api.protocol import Credentials

SDK_THRESHOLD_SECONDS = 40 * 60
MAX_SHARE_OF_LIFETIME = 2 / 3


@dataclass(frozen=True, slots=True)
class Temporary:
    """Credentials and the moment (epoch seconds) they stop being accepted."""

    credentials: Credentials
    expires_at: float


def refresh_margin(lifetime: float) -> float:
    """How long before expiry credentials of this lifetime are fetched again."""
    return min(SDK_THRESHOLD_SECONDS, max(0.0, lifetime) * MAX_SHARE_OF_LIFETIME)


class RefreshingProvider:
    """A provider over ``fetch`` (one token exchange), calling it only when needed."""

    def __init__(self, *, source: str, fetch: Callable[[], Temporary],
                 clock: Callable[[], float] = time.time) -> None:
        self._source = source
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._held: Temporary | None = None
        self._refresh_at = 0.0
        self.fetches = 0  # how many exchanges this provider made (for tests and the log)

    @property
    def source(self) -> str:
        return self._source

    def __repr__(self) -> str:
        return f"RefreshingProvider({self._source})"

    def current(self) -> Credentials:
        with self._lock:
            now = self._clock()
            if self._held is None or now >= self._refresh_at:
                held = self._fetch()
                self.fetches += 1
                self._held = held
                self._refresh_at = held.expires_at - refresh_margin(held.expires_at - now)
            return self._held.credentials

    def refresh_at(self) -> float:
        """When the credentials ``current()`` returns now will be replaced (for boto3, which
        is told this as their expiry so that it asks again in time)."""
        self.current()
        with self._lock:
            return self._refresh_at
