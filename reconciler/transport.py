"""What both HTTP clients (the key pair API, the IAM/STS exchanges) use under requests: a
deadline for one attempt, the wait for headers and the body included, and a session that
never follows a redirect.

requests' timeouts bound each socket read, not an answer: a server (or a proxy between)
trickling one byte every few tenths of a second never trips them and holds a call for as
long as it likes. A ``Watch`` armed for an attempt shuts the attempt's socket down when its
time is up; the blocked read returns at once, and the caller, seeing ``expired``, reports the
timeout rather than whatever the broken read looked like (a lost connection, a short body).

The socket is known through the connection classes of ``WatchedAdapter``: each connection
hands its socket to the watch of the attempt running in this thread (a context variable)
just before it waits for the answer's headers, so pooled, reused and proxied connections are
all covered. Without a watch (``Watch`` not entered) the adapter behaves as requests' own.

``read_within`` reads a streamed body up to a size limit while a watch runs.

``Session`` is requests' session with redirects taken out altogether: with
``allow_redirects=False`` requests still parses a 3xx's ``Location`` (to offer the next
request), and a malformed one (``http://[bad``) escapes as a bare ``ValueError``. Here a
3xx comes back as the answer it is, for the caller to refuse.

May import: the standard library, ``requests``, ``urllib3``; nothing of reconciler.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager

_CURRENT: ContextVar[Watch | None] = ContextVar("reconciler_deadline_watch", default=None)


class OutOfTimeError(Exception):
    """The attempt's deadline passed before its answer was read (the caller names it)."""


class TooLargeError(Exception):
    """The answer is larger than the limit given to ``read_within`` (the caller names it)."""


class Watch:
    """Shuts down the socket of the attempt it watches once ``seconds`` have passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sock: object = None

    def attach(self, sock: object) -> None:
        """The socket the attempt now waits on (a connection calls this)."""
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _shut(self._sock)

    @contextmanager
    def running(self) -> Iterator[Watch]:
        """Arm the watch for the attempt made inside the block, in this thread."""
        token = _CURRENT.set(self)
        _WATCHDOG.arm(self, time.monotonic() + max(0.0, self.seconds))
        try:
            yield self
        finally:
            _WATCHDOG.disarm(self)
            with self._lock:
                self._sock = None  # a late expiry must not touch a connection back in the pool
            _CURRENT.reset(token)


class _Watchdog:
    """One thread for every watch of the process: it sleeps until the nearest deadline and
    expires what is due. (A timer thread per attempt cost about a millisecond of CPU per
    request: at 1,000 key pairs, more than the requests themselves.)"""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[int, tuple[float, Watch]] = {}
        self._thread: threading.Thread | None = None

    def arm(self, watch: Watch, deadline: float) -> None:
        with self._cond:
            earliest = min((d for d, _ in self._due.values()), default=None)
            self._due[id(watch)] = (deadline, watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
                self._thread.start()
            if earliest is None or deadline < earliest:
                self._cond.notify()  # the thread sleeps past this deadline: wake it

    def disarm(self, watch: Watch) -> None:
        with self._cond:
            self._due.pop(id(watch), None)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                expired = [w for d, w in self._due.values() if d <= now]
                for w in expired:
                    self._due.pop(id(w), None)
                if not expired:
                    nearest = min((d for d, _ in self._due.values()), default=None)
                    self._cond.wait(None if nearest is None else max(0.0, nearest - now))
                    continue
            for w in expired:  # outside the lock: a watch takes its own
                w._expire()


_WATCHDOG = _Watchdog()


def _shut(sock: object) -> None:
    """Shut ``sock`` down for both directions; a read blocked on it returns at once."""
    raw = getattr(sock, "socket", sock)  # urllib3's TLS-in-TLS transport wraps a socket
    if not isinstance(raw, socket.socket):
        return
    with suppress(OSError):  # already closed: nothing left to wait on
        socket.socket.shutdown(raw, socket.SHUT_RDWR)  # the plain call, also under TLS


def _attach_current(sock: object) -> None:
    watch = _CURRENT.get()
    if watch is not None and sock is not None:
        watch.attach(sock)


class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self) -> Any:
        _attach_current(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> Any:
        _attach_current(self.sock)
        return super().getresponse()


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class Session(requests.Session):
    """A session that never follows, nor prepares to follow, a redirect."""

    def resolve_redirects(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return iter(())


class WatchedAdapter(HTTPAdapter):
    """requests' adapter whose connections report their socket to the running ``Watch``."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, ProxyManager):  # a SOCKS manager keeps its own pools
            manager.pool_classes_by_scheme = _POOLS
        return manager


def read_within(response: requests.Response, *, limit: int, watch: Watch) -> bytes:
    """The whole streamed body; ``TooLargeError`` past ``limit`` bytes, ``OutOfTimeError``
    once ``watch`` has expired (also when the cut-off read looked like the body's end)."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        response.close()
        raise TooLargeError
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=65536):
            size += len(chunk)
            if watch.expired:
                break
            if size > limit:
                response.close()
                raise TooLargeError
            chunks.append(chunk)
    except requests.RequestException:
        if not watch.expired:
            raise
    if watch.expired:
        response.close()
        raise OutOfTimeError
    return b"".join(chunks)

