"""ECS servers and KPS binding tasks on the emulator's signed host.

``Compute`` holds each project's ``Fleet`` (servers) and ``TaskBook`` (binding tasks), made
on first use and forgotten by ``reset`` (memory only, never in the ``--data`` file); the
binding settings (``task_seconds``, ``failure_rate``, the seed of the chance draws); and
the clock. It routes ``/v1/{project_id}/cloudservers/…`` (``ecsapi``) and the KPS binding
paths under ``/v3/{project_id}/`` (``kpsbind``: ``keypairs/associate``,
``keypairs/batch-associate``, ``keypairs/disassociate`` by POST, ``tasks/…``,
``running-tasks``, ``failed-tasks…``), settles the project's due tasks before every call,
and renders errors in each service's shape: ECS ``{"error": {"code", "message"}}``, KPS
``{"error_code", "error_msg"}``. Signatures, project checks, latency, outages and faults
are the server's business, as for the key pair APIs.

May import: ``reconciler.emulator.{fleet,bindtasks,ecsapi,kpsbind,store,handlers,jsonbody}``,
the standard library.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import reconciler.emulator.ecsapi as ecsapi
import reconciler.emulator.kpsbind as kpsbind
from reconciler.emulator.bindtasks import TaskBook
from reconciler.emulator.fleet import Fleet
from reconciler.emulator.handlers import Reply
from reconciler.emulator.jsonbody import BodyError, parse_json_body
from reconciler.emulator.store import Store

ECS_PREFIX, KPS_PREFIX = "v1", "v3"
OPERATIONS = (*ecsapi.OPERATIONS, *kpsbind.OPERATIONS)
WRITE_OPERATIONS = kpsbind.WRITE_OPERATIONS
DEFAULT_TASK_SECONDS = 0.2
MAX_TASK_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class ComputeCall:
    service: str  # "ecs" | "kps"
    operation: str
    project_id: str
    arg: str | None = None  # a task id


@dataclass(frozen=True, slots=True)
class BindSettings:
    task_seconds: float = DEFAULT_TASK_SECONDS
    failure_rate: float = 0.0


def status_error(service: str, status: int, message: str) -> Reply:
    """An error of ``status`` with the service's generic code (injected faults, refusals)."""
    if service == "ecs":
        return Reply(status, ecsapi.error_body(f"Ecs.{status:04d}", message))
    return Reply(status, {"error_code": f"KPS.{status:04d}", "error_msg": message})


def serves(method: str, segments: list[str]) -> bool:
    """Whether a request is ECS's or a KPS binding one."""
    if len(segments) >= 3 and segments[0] == ECS_PREFIX and segments[2] == "cloudservers":
        return True
    if len(segments) >= 3 and segments[0] == KPS_PREFIX:
        try:
            return kpsbind.route(method, segments[2:]) is not None
        except kpsbind.KpsProblem:
            return True
    return False


def service_of(segments: list[str]) -> str:
    return "ecs" if segments[:1] == [ECS_PREFIX] else "kps"


def check_settings(task_seconds: object, failure_rate: object) -> BindSettings:
    for name, value in (("task_seconds", task_seconds), ("failure_rate", failure_rate)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number")
    assert isinstance(task_seconds, int | float) and isinstance(failure_rate, int | float)
    if not 0 <= task_seconds <= MAX_TASK_SECONDS:
        raise ValueError(f"task_seconds must be from 0 to {MAX_TASK_SECONDS:g}")
    if not 0 <= failure_rate <= 1:
        raise ValueError("failure_rate must be between 0 and 1")
    return BindSettings(float(task_seconds), float(failure_rate))


class Compute:
    """Every project's servers and binding tasks; thread-safe (one lock per call)."""

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 seed: int | None = None) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._random = random.Random(seed)
        self._settings = BindSettings()
        self._projects: dict[str, tuple[Fleet, TaskBook]] = {}

    # -- state ---------------------------------------------------------------------------

    def _of(self, project_id: str) -> tuple[Fleet, TaskBook]:
        with self._lock:
            held = self._projects.get(project_id)
            if held is None:
                held = (Fleet(), TaskBook())
                self._projects[project_id] = held
            return held

    def now(self) -> float:
        return self._clock()

    def fleet(self, project_id: str) -> Fleet:
        """The project's servers, every task due by now settled."""
        with self._lock:
            fleet, book = self._of(project_id)
            book.settle(self._clock(), fleet)
            return fleet

    def book(self, project_id: str) -> TaskBook:
        with self._lock:
            fleet, book = self._of(project_id)
            book.settle(self._clock(), fleet)
            return book

    @property
    def settings(self) -> BindSettings:
        with self._lock:
            return self._settings

    def configure(self, *, task_seconds: object = None, failure_rate: object = None,
                  seed: int | None = None) -> BindSettings:
        """Change the binding settings (None keeps a setting); ``seed`` reseeds the draws."""
        with self._lock:
            current = self._settings
            self._settings = check_settings(
                current.task_seconds if task_seconds is None else task_seconds,
                current.failure_rate if failure_rate is None else failure_rate)
            if seed is not None:
                self._random.seed(seed)
            return self._settings

    def reset(self) -> None:
        with self._lock:
            self._projects.clear()
            self._settings = BindSettings()

    def _chance(self) -> bool:
        rate = self._settings.failure_rate
        return bool(rate) and self._random.random() < rate

    # -- requests ------------------------------------------------------------------------

    def route(self, method: str, segments: list[str], *,
              request_id: str) -> ComputeCall | Reply:
        """The call a request ``serves`` addresses, or the error answer (404, 405)."""
        service, pid, rest = service_of(segments), segments[1], segments[2:]
        try:
            if service == "ecs":
                operation = ecsapi.route(method, rest)
                if operation is not None:
                    return ComputeCall("ecs", operation, pid)
            else:
                found = kpsbind.route(method, rest)
                if found is not None:
                    return ComputeCall("kps", found[0], pid, found[1])
        except ecsapi.EcsProblem as exc:
            return Reply(exc.status, ecsapi.error_body(exc.code, exc.message))
        except kpsbind.KpsProblem as exc:
            return Reply(exc.status, {"error_code": exc.code, "error_msg": exc.message})
        return Reply(404, {"errorCode": "APIGW.0101", "request_id": request_id,
                           "errorMsg": "The API does not exist or has not been published"})

    def handle(self, call: ComputeCall, *, body: bytes, query: Mapping[str, str],
               where: ecsapi.Where, store: Store) -> Reply:
        with self._lock:
            fleet, book = self._of(call.project_id)
            now = self._clock()
            book.settle(now, fleet)
            if call.service == "ecs":
                try:
                    return Reply(200, ecsapi.list_servers(fleet, query, where))
                except ecsapi.EcsProblem as exc:
                    return Reply(exc.status, ecsapi.error_body(exc.code, exc.message))
            try:
                parsed = parse_json_body(body)
                ctx = kpsbind.Context(fleet=fleet, book=book, store=store, now=now,
                                      task_seconds=self._settings.task_seconds,
                                      chance=self._chance)
                status, doc = kpsbind.BindApi(ctx).handle(call.operation, call.arg,
                                                          body=parsed, query=query)
            except BodyError as exc:
                return Reply(400, {"error_code": "KPS.0001", "error_msg": str(exc)})
            except kpsbind.KpsProblem as exc:
                return Reply(exc.status, {"error_code": exc.code, "error_msg": exc.message})
            return Reply(status, doc)
