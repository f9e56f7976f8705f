"""KPS's server binding operations over one project's servers, tasks and key pairs.

``POST /v3/{project_id}/keypairs/associate``, ``…/batch-associate`` and ``…/disassociate``
accept asynchronous tasks (202, ``{task_id, server_id, status, error_code, error_msg}``; a
batch answers ``{"tasks": [...]}``, one entry per server). ``status`` says whether the task
was accepted (``SUCCESS``) or refused (``FAILED``, with why, and no task); how a task ends
is read from ``GET /v3/{project_id}/tasks/{task_id}`` (``{server_id, task_id,
task_status}``), ``GET …/running-tasks`` and ``GET …/failed-tasks`` (``{total, tasks}``,
``limit`` 1 to 1000, 1000 by default, ``offset`` an index), and a failed task is forgotten
with ``DELETE …/failed-tasks/{task_id}`` (or all of them, ``DELETE …/failed-tasks``).

What the cloud refuses, per server (``FAILED`` at submission): an unknown server
(``KPS.0101``), a private image (``KPS.0102``), a server with a task still pending
(``KPS.0103``), a stopped server where a running one is needed (a replace authorised by a
private key, any batch: ``KPS.0104``), a running server with a key pair without its current
private key (``KPS.0105``), a private key that is not the other half of the public key the
server accepts now (``KPS.0106``, checked with ``cryptography``), an unbind of a server
with no key pair (``KPS.0107``), a batch server that has one already (``KPS.0108``). Per
request (400): a body not of the SDK's shape (``KPS.0001``), an unknown key pair (404,
``KPS.0002``), more than 10 servers, several key pairs or one server twice in a batch
(``KPS.0109``); an unknown task is 404 ``KPS.0100``. A running server is rebound over SSH
(``REPLACE``, on ``server.port``, 22 by default; ``UNBIND`` on 22): a closed port fails the
task when it runs. A stopped server is rebound offline (``RESET``, ``UNBIND``).

Operation names (also the counter names): ``kps_associate``, ``kps_batch_associate``,
``kps_disassociate``, ``kps_show_task``, ``kps_list_running_tasks``,
``kps_list_failed_tasks``, ``kps_delete_failed_task``, ``kps_delete_all_failed_tasks``.

May import: ``reconciler.emulator.{fleet,bindtasks,store,keywork}``, the standard library.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.emulator.bindtasks import REPLACE, RESET, UNBIND, Task, TaskBook
from reconciler.emulator.fleet import DEFAULT_SSH_PORT, PRIVATE_IMAGE, Fleet, Server
from reconciler.emulator.keywork import KeyProblem, check_private_matches
from reconciler.emulator.store import Record, Store

MAX_BATCH = 10
MAX_TASK_PAGE = 1000
ASSOCIATE, BATCH, DISASSOCIATE = "kps_associate", "kps_batch_associate", "kps_disassociate"
SHOW, RUNNING, FAILED = "kps_show_task", "kps_list_running_tasks", "kps_list_failed_tasks"
DELETE_FAILED, DELETE_ALL_FAILED = "kps_delete_failed_task", "kps_delete_all_failed_tasks"
OPERATIONS = (ASSOCIATE, BATCH, DISASSOCIATE, SHOW, RUNNING, FAILED, DELETE_FAILED,
              DELETE_ALL_FAILED)
WRITE_OPERATIONS = frozenset({ASSOCIATE, BATCH, DISASSOCIATE, DELETE_FAILED,
                              DELETE_ALL_FAILED})
_SUBMISSIONS = {"associate": ASSOCIATE, "batch-associate": BATCH,
                "disassociate": DISASSOCIATE}


class KpsProblem(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        super().__init__(message)


class _Refused(Exception):
    """One server's task is refused at submission (answered ``status: FAILED``)."""

    def __init__(self, code: str, message: str) -> None:
        self.code, self.message = code, message
        super().__init__(message)


def route(method: str, rest: list[str]) -> tuple[str, str | None] | None:
    """(operation, task id) of ``/v3/{project_id}/<rest>``; None when it is not a binding
    path (``GET keypairs/associate`` is the key pair named "associate"); a 405
    ``KpsProblem`` for a binding path and another method."""
    if len(rest) == 2 and rest[0] == "keypairs" and rest[1] in _SUBMISSIONS:
        return (_SUBMISSIONS[rest[1]], None) if method == "POST" else None
    ops: dict[str, str]
    arg: str | None = None
    if len(rest) == 2 and rest[0] == "tasks":
        ops, arg = {"GET": SHOW}, rest[1]
    elif rest == ["running-tasks"]:
        ops = {"GET": RUNNING}
    elif rest == ["failed-tasks"]:
        ops = {"GET": FAILED, "DELETE": DELETE_ALL_FAILED}
    elif len(rest) == 2 and rest[0] == "failed-tasks":
        ops, arg = {"DELETE": DELETE_FAILED}, rest[1]
    else:
        return None
    if method not in ops:
        raise KpsProblem(405, "KPS.0405", f"method {method} is not allowed here")
    return ops[method], arg


@dataclass(frozen=True, slots=True)
class Context:
    """One request's view of the project: settled tasks, its servers and key pairs."""

    fleet: Fleet
    book: TaskBook
    store: Store
    now: float  # seconds since the epoch
    task_seconds: float
    chance: Callable[[], bool]  # draws whether a new task fails by chance


def _bad(message: str) -> KpsProblem:
    return KpsProblem(400, "KPS.0001", message)


def _text(doc: Mapping[str, Any], key: str, *, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"{where}{key} must be a non-empty string")
    return value


@dataclass(frozen=True, slots=True)
class _Target:
    server_id: str
    auth_type: str | None
    auth_key: str | None  # a private key or a password: checked, never kept
    disable_password: bool | None
    port: int


def _target(server: Any, *, where: str, unbind: bool) -> _Target:
    if not isinstance(server, dict):
        raise _bad(f"{where}server must be an object with the server's id")
    server_id = _text(server, "id", where=f"{where}server.")
    auth = server.get("auth")
    auth_type = auth_key = None
    if auth is not None:
        if not isinstance(auth, dict) or auth.get("type") not in ("password", "keypair"):
            raise _bad(f"{where}server.auth.type must be 'password' or 'keypair'")
        auth_type = auth["type"]
        auth_key = _text(auth, "key", where=f"{where}server.auth.")
    disable = server.get("disable_password")
    if disable is not None and (unbind or not isinstance(disable, bool)):
        raise _bad(f"{where}server.disable_password must be true or false")
    port = server.get("port", DEFAULT_SSH_PORT)
    if unbind and "port" in server:
        raise _bad(f"{where}server.port is not a field of a disassociate request")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _bad(f"{where}server.port must be a port number from 1 to 65535")
    return _Target(server_id, auth_type, auth_key, disable, port)


def _keypair(store: Store, name: str) -> Record:
    record = store.get(name)
    if record is None:
        raise KpsProblem(404, "KPS.0002", f"key pair '{name}' could not be found")
    if record.type != "ssh":
        raise _bad(f"key pair '{name}' is an x509 certificate: only ssh key pairs bind")
    return record


class BindApi:
    """The binding operations in one request's ``Context``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def handle(self, operation: str, arg: str | None, *, body: Any,
               query: Mapping[str, str]) -> tuple[int, Any]:
        """(status, answer); ``KpsProblem`` for an error answer."""
        if operation == ASSOCIATE:
            return 202, self._associate(body)
        if operation == BATCH:
            return 202, self._batch(body)
        if operation == DISASSOCIATE:
            return 202, self._disassociate(body)
        if operation == SHOW:
            task = self.ctx.book.get(arg or "")
            if task is None:
                raise KpsProblem(404, "KPS.0100", f"task {arg} could not be found")
            return 200, {"server_id": task.server_id, "task_id": task.id,
                         "task_status": task.status(self.ctx.now)}
        if operation == RUNNING:
            return 200, self._page(self.ctx.book.running(), query, failed=False)
        if operation == FAILED:
            return 200, self._page(self.ctx.book.failed(), query, failed=True)
        if operation == DELETE_FAILED:
            if not self.ctx.book.delete_failed(arg or ""):
                raise KpsProblem(404, "KPS.0100", f"no failed task {arg}")
            return 200, None
        self.ctx.book.delete_all_failed()
        return 200, None

    # -- submissions -------------------------------------------------------------------

    def _associate(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _bad("the body must be {\"keypair_name\": ..., \"server\": {...}}")
        record = _keypair(self.ctx.store, _text(body, "keypair_name", where=""))
        target = _target(body.get("server"), where="", unbind=False)
        return self._submit(target, record, batch=False)

    def _batch(self, body: Any) -> dict[str, Any]:
        items = body.get("batch_keypairs") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise _bad("the body must be {\"batch_keypairs\": [{\"keypair_name\": ..., "
                       "\"server\": {...}}, ...]}")
        if len(items) > MAX_BATCH:
            raise KpsProblem(400, "KPS.0109", f"at most {MAX_BATCH} servers can be bound "
                             f"in one batch, not {len(items)}")
        names, targets = set(), []
        for i, item in enumerate(items):
            where = f"batch_keypairs[{i}]."
            if not isinstance(item, dict):
                raise _bad(f"{where[:-1]} must be an object")
            names.add(_text(item, "keypair_name", where=where))
            targets.append(_target(item.get("server"), where=where, unbind=False))
        if len(names) > 1:
            raise KpsProblem(400, "KPS.0109", "a batch binds one key pair: every entry must "
                             "name the same keypair_name")
        if len({t.server_id for t in targets}) < len(targets):
            raise KpsProblem(400, "KPS.0109", "a batch names each server once")
        record = _keypair(self.ctx.store, names.pop())
        return {"tasks": [self._submit(t, record, batch=True) for t in targets]}

    def _disassociate(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _bad("the body must be {\"server\": {\"id\": ..., \"auth\": {...}}}")
        target = _target(body.get("server"), where="", unbind=True)
        return self._submit(target, None, batch=False)

    def _submit(self, target: _Target, record: Record | None, *,
                batch: bool) -> dict[str, Any]:
        try:
            server = self._server(target.server_id)
            operation = self._check(server, target, record, batch=batch)
        except _Refused as refused:
            return {"server_id": target.server_id, "status": "FAILED",
                    "error_code": refused.code, "error_msg": refused.message}
        task = self._accept(server, target, record, operation)
        return {"task_id": task.id, "server_id": server.id, "status": "SUCCESS"}

    def _server(self, server_id: str) -> Server:
        server = self.ctx.fleet.get(server_id)
        if server is None:
            raise _Refused("KPS.0101", f"server {server_id} could not be found")
        if server.image_type == PRIVATE_IMAGE:
            raise _Refused("KPS.0102", f"server {server_id} runs a private image: key "
                           "pairs are bound to servers of public images only")
        if self.ctx.book.busy(server_id):
            raise _Refused("KPS.0103", f"server {server_id} has a key pair task still "
                           "running: wait for it to finish")
        return server

    @staticmethod
    def _check(server: Server, target: _Target, record: Record | None, *,
               batch: bool) -> str:
        """The task's operation, or ``_Refused``."""
        sid = server.id
        if record is None and server.key_name is None:
            raise _Refused("KPS.0107", f"server {sid} has no key pair to unbind")
        if batch and not server.running:
            raise _Refused("KPS.0104", f"server {sid} is stopped: a batch binds running "
                           "servers only; start it, or bind it alone (reset)")
        if batch and server.public_key is not None:
            raise _Refused("KPS.0108", f"server {sid} has a key pair already: a batch binds "
                           "servers without one; bind it alone with its private key")
        if not server.running:
            if target.auth_type == "keypair":
                raise _Refused("KPS.0104", f"server {sid} is stopped: a replace with its "
                               "private key needs it running; leave auth out to reset it")
            return UNBIND if record is None else RESET
        if server.public_key is not None:
            if target.auth_type != "keypair" or target.auth_key is None:
                raise _Refused("KPS.0105", f"server {sid} is running with a key pair: give "
                               "its current private key (auth type keypair), or stop it")
            try:
                check_private_matches(target.auth_key, public_key=server.public_key,
                                      key_type="ssh")
            except KeyProblem:
                raise _Refused("KPS.0106", f"the private key given is not the one of the "
                               f"key pair server {sid} accepts now") from None
        elif target.auth_type == "keypair":
            raise _Refused("KPS.0106", f"server {sid} has no key pair: there is no private "
                           "key to give; leave auth out or give its password")
        return UNBIND if record is None else REPLACE

    def _accept(self, server: Server, target: _Target, record: Record | None,
                operation: str) -> Task:
        ctx = self.ctx
        ssh_port = None
        if server.running:
            ssh_port = DEFAULT_SSH_PORT if operation == UNBIND else target.port
        return ctx.book.submit(
            server_id=server.id, server_name=server.name,
            keypair_name=server.key_name if record is None else record.name,
            operation=operation, now=ctx.now, seconds=ctx.task_seconds,
            by_chance=ctx.chance(),
            public_key=None if record is None else record.public_key,
            fingerprint=None if record is None else record.fingerprint,
            ssh_port=ssh_port, disable_password=target.disable_password)

    # -- lists -------------------------------------------------------------------------

    def _page(self, tasks: list[Task], query: Mapping[str, str], *,
              failed: bool) -> dict[str, Any]:
        limit = _whole(query.get("limit"), what="limit", low=1, high=MAX_TASK_PAGE)
        offset = _whole(query.get("offset"), what="offset", low=0, high=None) or 0
        chosen = tasks[offset:offset + (limit or MAX_TASK_PAGE)]
        return {"total": len(tasks), "tasks": [self._item(t, failed=failed) for t in chosen]}

    def _item(self, task: Task, *, failed: bool) -> dict[str, Any]:
        item: dict[str, Any] = {
            "task_id": task.id,
            "operate_type": task.status(self.ctx.now),
            "task_time": str(int(task.accepted_at * 1000)),
            "server_name": task.server_name,
            "server_id": task.server_id,
            "keypair_name": task.keypair_name,
        }
        if failed:
            item["task_error_code"] = task.error_code
            item["task_error_msg"] = task.error_msg
        return item


def _whole(value: str | None, *, what: str, low: int, high: int | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or int(value) < low or (
            high is not None and int(value) > high):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise _bad(f"{what} must be a whole number {bound}")
    return int(value)
