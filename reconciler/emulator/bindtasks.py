"""KPS binding tasks in the emulator: asynchronous, with a duration and a failure rate.

A task binds a key pair to a server (``RESET`` a stopped server's key, ``REPLACE`` a running
one's over SSH) or unbinds it (``UNBIND``). Its life is a function of time since it was
accepted: ``READY_<OP>`` for the first fifth of ``task_seconds``, ``RUNNING_<OP>`` until
``task_seconds`` have passed, then ``SUCCESS_<OP>`` or ``FAILED_<OP>``. Whether it fails by
chance (``failure_rate``) is drawn when it is accepted, from the binder's seeded random
source, so a seed gives the same outcomes for the same requests; whether the SSH port is
reachable is looked at when it runs out, as the cloud finds out only then.

Nothing runs in the background: every read of servers or tasks first ``settle``s the tasks
whose time is up, in the order they finished, each effect stamped with the moment it took
effect (so a server's key timeline is what a background worker would have written). A
failed task is listed by ``failed-tasks`` until it is deleted; any task can still be read
by id until ``reset``.

May import: ``reconciler.emulator.fleet``, the standard library.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

from reconciler.emulator.fleet import Fleet

RESET, REPLACE, UNBIND = "RESET", "REPLACE", "UNBIND"
READY_SHARE = 0.2  # of task_seconds, before a task starts running

# Why a task fails (the emulator's own codes; the cloud's are undocumented).
SSH_UNREACHABLE = "KPS.0201"
SERVER_GONE = "KPS.0202"
CHANCE_FAILURE = "KPS.0203"


@dataclass(slots=True)
class Task:
    id: str
    server_id: str
    server_name: str
    keypair_name: str | None  # the key pair bound, or (UNBIND) the one being removed
    operation: str  # RESET | REPLACE | UNBIND
    accepted_at: float  # seconds since the epoch
    starts_at: float
    done_at: float
    public_key: str | None = None  # what the server accepts once it succeeds
    fingerprint: str | None = None
    ssh_port: int | None = None  # the port KPS connects to; None: done offline (stopped)
    disable_password: bool | None = None
    by_chance: bool = False  # drawn at acceptance: fails with CHANCE_FAILURE
    outcome: str | None = None  # None while pending, then "SUCCESS" or "FAILED"
    error_code: str | None = None
    error_msg: str | None = None

    def status(self, now: float) -> str:
        if self.outcome is not None:
            return f"{self.outcome}_{self.operation}"
        if now < self.starts_at:
            return f"READY_{self.operation}"
        return f"RUNNING_{self.operation}"

    def pending(self) -> bool:
        return self.outcome is None


class TaskBook:
    """One project's tasks; the caller (``compute.Compute``) serialises every call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[str, Task] = {}
        self._failed: dict[str, Task] = {}  # listed by failed-tasks until deleted

    def submit(self, *, server_id: str, server_name: str, keypair_name: str | None,
               operation: str, now: float, seconds: float, by_chance: bool,
               public_key: str | None = None, fingerprint: str | None = None,
               ssh_port: int | None = None, disable_password: bool | None = None) -> Task:
        task = Task(id=str(uuid.uuid4()), server_id=server_id, server_name=server_name,
                    keypair_name=keypair_name, operation=operation, accepted_at=now,
                    starts_at=now + seconds * READY_SHARE, done_at=now + seconds,
                    public_key=public_key, fingerprint=fingerprint, ssh_port=ssh_port,
                    disable_password=disable_password, by_chance=by_chance)
        with self._lock:
            self._tasks[task.id] = task
        return task

    def settle(self, now: float, fleet: Fleet) -> None:
        """Finish every task whose time is up, in the order they finished."""
        with self._lock:
            due = sorted((t for t in self._tasks.values() if t.pending() and t.done_at <= now),
                         key=lambda t: (t.done_at, t.id))
            for task in due:
                self._finish(task, fleet)

    def _finish(self, task: Task, fleet: Fleet) -> None:
        server = fleet.get(task.server_id)
        at_ms = int(task.done_at * 1000)
        if server is None:
            self._fail(task, SERVER_GONE, "the server was deleted before the task ran")
        elif task.ssh_port is not None and (not server.ssh_port_open
                                            or server.ssh_port != task.ssh_port):
            self._fail(task, SSH_UNREACHABLE,
                       f"could not connect to the server's SSH port {task.ssh_port}: open it "
                       "in the server's security group (or give the port sshd listens on)")
        elif task.by_chance:
            self._fail(task, CHANCE_FAILURE, "the server did not take the key: try again")
        else:
            login = None if task.disable_password is None else not task.disable_password
            if task.operation == UNBIND:
                fleet.accept(task.server_id, at_ms=at_ms, cause=UNBIND, key_name=None,
                             public_key=None, fingerprint=None, password_login=True)
            else:
                fleet.accept(task.server_id, at_ms=at_ms, cause=task.operation,
                             key_name=task.keypair_name, public_key=task.public_key,
                             fingerprint=task.fingerprint, password_login=login)
            task.outcome = "SUCCESS"

    def _fail(self, task: Task, code: str, message: str) -> None:
        task.outcome, task.error_code, task.error_msg = "FAILED", code, message
        self._failed[task.id] = task

    def get(self, task_id: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    def busy(self, server_id: str) -> bool:
        """Whether a task for this server is still pending (after ``settle``)."""
        with self._lock:
            return any(t.pending() and t.server_id == server_id for t in self._tasks.values())

    def running(self) -> list[Task]:
        """Pending tasks, oldest first."""
        with self._lock:
            return sorted((t for t in self._tasks.values() if t.pending()),
                          key=lambda t: (t.accepted_at, t.id))

    def failed(self) -> list[Task]:
        """Failed tasks not yet deleted, in the order they failed."""
        with self._lock:
            return list(self._failed.values())

    def delete_failed(self, task_id: str) -> bool:
        with self._lock:
            return self._failed.pop(task_id, None) is not None

    def delete_all_failed(self) -> None:
        with self._lock:
            self._failed.clear()
