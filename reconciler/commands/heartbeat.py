"""Terraform's heartbeat for logs without a terminal: ``keypair.x: Still creating... [10s
elapsed]`` every ``interval`` seconds for each change still running, so that a CI log shows an
apply is alive between ``Creating...`` and ``Creation complete``.

One thread for the whole apply (not one per change: applying thousands of key pairs must not
start thousands of threads). It is scheduled on the monotonic clock; the elapsed time shown
comes from the injected ``Env`` clock, so tests get the lines without waiting ten seconds.

May import: the standard library.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

STILL = {"create": "Still creating...", "delete": "Still destroying...",
         "update": "Still modifying...", "import": "Still importing...",
         "forget": "Still removing from state..."}


def go_duration(seconds: float) -> str:
    """Whole seconds as Terraform (Go) prints them: 10s, 1m5s, 1h0m3s."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


@dataclass
class _Running:
    due: float  # monotonic time of the next line
    started: datetime  # by the injected clock, for the elapsed time shown
    phase: str


class Heartbeat:
    """Calls ``say`` with a "Still ..." line for every change running past each interval."""

    def __init__(self, *, interval: float, clock: Callable[[], datetime],
                 say: Callable[[str], None],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock, self._say, self._monotonic = clock, say, monotonic
        self._running: dict[str, _Running] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        # While the thread waits: until when (monotonic; None: until woken). Not waiting:
        # False (it looks at every change before it waits again).
        self._asleep_until: float | bool | None = False

    def start(self, address: str, phase: str) -> None:
        self.start_all([address], phase)

    def start_all(self, addresses: Iterable[str], phase: str) -> None:
        with self._cond:
            due = self._monotonic() + self.interval
            started = self._clock()
            for address in addresses:
                self._running[address] = _Running(due, started, phase)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="heartbeat",
                                                daemon=True)
                self._thread.start()
            # woken only when it would sleep past this change's first line: an apply of
            # thousands of changes would wake it for each one otherwise
            until = self._asleep_until
            if until is None or (until is not False and due < until):
                self._cond.notify()

    def stop(self, address: str) -> None:
        self.stop_all([address])

    def stop_all(self, addresses: Iterable[str]) -> None:
        with self._cond:
            for address in addresses:
                self._running.pop(address, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                lines = self._due_lines()
                while not lines and not self._closed:
                    wait = self._wait_time()
                    self._asleep_until = None if wait is None else self._monotonic() + wait
                    self._cond.wait(wait)
                    self._asleep_until = False
                    lines = self._due_lines()
                if self._closed:
                    return
            for line in lines:  # outside the lock: saying takes the printer's own lock
                self._say(line)

    def _wait_time(self) -> float | None:
        if not self._running:
            return None
        return max(0.0, min(r.due for r in self._running.values()) - self._monotonic())

    def _due_lines(self) -> list[str]:
        now, lines = self._monotonic(), []
        for address, run in sorted(self._running.items()):
            if run.due <= now:
                while run.due <= now:  # one line per tick, even after a stall
                    run.due += self.interval
                elapsed = (self._clock() - run.started).total_seconds()
                lines.append(f"{address}: {STILL[run.phase]} [{go_duration(elapsed)} elapsed]")
        return lines
