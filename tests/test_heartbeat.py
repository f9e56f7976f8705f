"""The apply heartbeat: a "Still ..." line for each change running past each interval, from
one thread that is woken only when a new change is due before it would wake anyway."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from reconciler.commands.heartbeat import Heartbeat


class _Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _beat(clock: _Clock, *, interval: float = 10.0) -> tuple[Heartbeat, list[str],
                                                                threading.Event]:
    said: list[str] = []
    event = threading.Event()

    def say(line: str) -> None:
        said.append(line)
        event.set()

    beat = Heartbeat(interval=interval, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
                     say=say, monotonic=clock)
    return beat, said, event


def _wait_for(said: list[str], count: int) -> None:
    deadline = time.monotonic() + 5
    while len(said) < count and time.monotonic() < deadline:
        time.sleep(0.005)


def _wait_asleep(beat: Heartbeat) -> None:
    deadline = time.monotonic() + 5
    while beat._asleep_until is False and time.monotonic() < deadline:
        time.sleep(0.005)


def test_a_change_started_while_the_thread_sleeps_gets_its_lines() -> None:
    clock = _Clock()
    beat, said, _ = _beat(clock)
    try:
        beat.start("keypair.a", "create")  # due at 110
        _wait_asleep(beat)
        clock.now = 105.0
        beat.start("keypair.b", "create")  # due at 115: later, so the thread sleeps on
        clock.now = 111.0
        with beat._cond:
            beat._cond.notify()  # what the end of a real wait does
        _wait_for(said, 1)
        assert [s.split(":")[0] for s in said] == ["keypair.a"]
        _wait_asleep(beat)
        clock.now = 116.0
        with beat._cond:
            beat._cond.notify()
        _wait_for(said, 2)
        assert [s.split(":")[0] for s in said] == ["keypair.a", "keypair.b"]
    finally:
        beat.close()


def test_a_change_due_before_the_thread_would_wake_wakes_it() -> None:
    clock = _Clock()
    beat, said, event = _beat(clock, interval=0.05)
    try:
        beat.start("keypair.a", "update")
        beat.stop("keypair.a")  # nothing running: the thread sleeps until woken
        _wait_asleep(beat)
        while beat._asleep_until is not None:  # past a's due, it sleeps without a deadline
            clock.now += 0.1
            with beat._cond:
                beat._cond.notify()
            time.sleep(0.01)
        beat.start("keypair.b", "create")  # must wake it: nothing else will
        clock.now += 1.0
        assert event.wait(5), "the heartbeat never woke for keypair.b"
        assert said and said[0].startswith("keypair.b: Still creating...")
    finally:
        beat.close()
