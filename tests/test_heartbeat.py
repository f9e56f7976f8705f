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


def test_a_group_started_together_gets_a_line_each_until_each_stops() -> None:
    clock = _Clock()
    beat, said, _ = _beat(clock)
    try:
        beat.start_all(["keypair.a", "keypair.b", "keypair.c"], "create")
        _wait_asleep(beat)
        beat.stop_all(["keypair.b", "keypair.unknown"])  # an unknown name is nothing
        clock.now = 111.0
        with beat._cond:
            beat._cond.notify()
        _wait_for(said, 2)
        time.sleep(0.05)
        assert sorted(s.split(":")[0] for s in said) == ["keypair.a", "keypair.c"]
        assert all("Still creating..." in s for s in said)
    finally:
        beat.close()


def test_a_group_s_progress_lines_are_written_together_and_counted_once() -> None:
    import io

    from reconciler.changes import Action, Change, Outcome
    from reconciler.commands.common import LineHooks
    from reconciler.env import Env

    class Writes(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[str] = []

        def write(self, text: str) -> int:
            self.writes.append(text)
            return super().write(text)

    out = Writes()
    hooks = LineHooks(Env(stdout=out, stderr=io.StringIO()), live=True, total=3)
    group = [Change(name=n, action=Action.CREATE) for n in ("a", "b\x1b]0;x\x07")]
    replaced = Change(name="c", action=Action.REPLACE)
    try:
        hooks.pre_apply(replaced, "delete")
        hooks.pre_apply(replaced, "create")  # the second step of one change
        hooks.pre_apply_all(group, "create")
        assert hooks._running == 3 and hooks._done == 0
        assert out.writes[-3:] == ["\r\x1b[K",
                                   "keypair.a: Creating...\nkeypair.b\\x1b]0;x\\x07: Creating...\n",
                                   "  0/3 done, 3 in progress..."]
        hooks.post_apply_all([(c, Outcome(c.name, c.action, c.name == "a", 0.04, "no"))
                              for c in group])
        assert hooks._running == 1 and hooks._done == 2
        assert out.writes[-2] == ("keypair.a: Creation complete after 0.0s\n"
                                  "keypair.b\\x1b]0;x\\x07: failed after 0.0s\n")
        hooks.post_apply(replaced, Outcome("c", Action.REPLACE, True, 1.0))
        assert hooks._running == 0 and hooks._done == 3
        assert out.getvalue().endswith("keypair.c: Creation complete after 1.0s\n")
    finally:
        hooks.close()
