"""KPS binding tasks: bind a key pair to ECS servers, unbind it, and follow each task.

``associate`` (one server), ``batch_associate`` (up to 10 running servers without a key
pair, one key pair) and ``disassociate`` submit asynchronous tasks. The answer says per
server whether the task was accepted (``Submission.accepted``, its ``task_id``) or refused
(``error_code``, ``error_msg``: a private image, a stopped server where a running one is
needed, a wrong private key…). ``wait`` then follows one task (``GET /v3/{project_id}/
tasks/{task_id}``, ``task_status`` READY_/RUNNING_/SUCCESS_/FAILED_ x RESET, REPLACE,
UNBIND) with bounded backoff until it ends; for a failed task it reads the reason from
``GET …/failed-tasks`` (``task_error_code``, ``task_error_msg``), removes that entry
(``DELETE …/failed-tasks/{task_id}``), and returns the outcome; a task still running at the
deadline is an ``OutcomeUnknownError`` (it may yet finish).

Rebinding a running server that has a key pair needs that key pair's private key: it is
passed as a ``Secret``, revealed only into the request body (which the ``--debug`` log
shows with ``auth`` redacted, ``api.httplog``), and never kept or echoed. A submission is
not resent after its answer was lost (it may have been accepted): ``OutcomeUnknownError``
says what to read to find out.

May import: the standard library, ``reconciler.model``, ``reconciler.errors``,
``reconciler.api.{client,dewcall,errormap,bindshapes,httplog,protocol,shapes}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from reconciler.api import bindshapes
from reconciler.api.client import HttpClient, Kind
from reconciler.api.dewcall import DewHttp
from reconciler.api.errormap import clean_server_text
from reconciler.api.httplog import ECHO_WITHHELD, Echo
from reconciler.api.protocol import ApiSettings
from reconciler.api.shapes import Node
from reconciler.errors import OutcomeUnknownError, UsageError
from reconciler.model import Secret

MAX_BATCH = 10
TASK_PAGE = 1000
MAX_TASK_PAGES = 100
# as the policy-based (1.1) and the identity-policy (5.0) references name them
ACTIONS = ("kps:domainKeypairs:bind, kps:domainKeypairs:unbind, kps:domainKeypairs:gettask, "
           "kps:domainKeypairs:getfailtask and kps:domainKeypairs:deletefailtask (in an "
           "identity policy: kps:SSHKeyPair:bind, kps:SSHKeyPair:unbind, kps::getTask, "
           "kps::getFailedTask and kps::deleteFailedTask)")
_HINTS = {
    "KPS.0002": "Create the key pair first (or check its name, the region and the project).",
    "KPS.0109": (f"A batch binds one key pair to at most {MAX_BATCH} distinct servers: split "
                 "it, or bind the others alone."),
}


@dataclass(frozen=True, slots=True)
class Polling:
    """Bounded backoff: wait ``first``, then ``factor`` times longer up to ``cap``, for at
    most ``timeout`` seconds in all."""

    first: float = 0.5
    factor: float = 2.0
    cap: float = 10.0
    timeout: float = 600.0

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay
            delay = min(self.cap, delay * self.factor)



@dataclass(frozen=True, slots=True)
class Submission:
    """One server's answer to a submission: accepted (a task to follow) or refused."""

    server_id: str
    accepted: bool
    task_id: str | None = None
    error_code: str | None = None
    error_msg: str | None = None  # the cloud's words, cleaned (one line, no key material)


@dataclass(frozen=True, slots=True)
class TaskState:
    task_id: str
    server_id: str | None
    phase: str  # READY | RUNNING | SUCCESS | FAILED
    operation: str  # RESET | REPLACE | UNBIND

    @property
    def finished(self) -> bool:
        return self.phase in ("SUCCESS", "FAILED")


@dataclass(frozen=True, slots=True)
class ListedTask:
    """An entry of running-tasks or failed-tasks (``error_*`` for failed ones only)."""

    task_id: str
    operate_type: str | None
    server_id: str | None
    server_name: str | None
    keypair_name: str | None
    error_code: str | None = None
    error_msg: str | None = None


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    task_id: str
    server_id: str | None
    operation: str
    succeeded: bool
    error_code: str | None = None  # why it failed, from failed-tasks (None: not listed)
    error_msg: str | None = None
    polls: int = 0


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class KpsTasksClient:
    """KPS binding tasks in one project (the settings of KPS there); safe to share."""

    def __init__(self, settings: ApiSettings, *, http: HttpClient | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 polling: Polling | None = None) -> None:
        self._http = DewHttp(settings, service="KPS", actions=ACTIONS, http=http)
        self._base = f"/v3/{settings.project_id}"
        self._sleep = sleep
        self._monotonic = monotonic
        self.polling = polling or Polling()

    def close(self) -> None:
        self._http.close()

    def _clean(self, text: object) -> str | None:
        if not isinstance(text, str) or not text:
            return None
        secrets = self._http.settings.credentials.current().secrets()
        return clean_server_text(text, secrets=secrets)

    def _refusal(self, text: object, *, sent: Mapping[str, object]) -> str | None:
        """A refusal's message, withheld when it quotes a secret the request carried (the
        private key a rebind of a running server sends)."""
        if isinstance(text, str) and Echo.of_body(json.dumps(sent).encode()).found_in(text):
            return ECHO_WITHHELD
        return self._clean(text)

    def _submission(self, item: Mapping[str, object], server_id: str, *,
                    sent: Mapping[str, object]) -> Submission:
        accepted = item["status"] == "SUCCESS"
        task_id = _text(item.get("task_id"))
        if accepted and task_id is None:  # nothing to follow: refused, saying why
            return Submission(server_id=server_id, accepted=False,
                              error_msg="the cloud accepted the task but gave no task id")
        return Submission(server_id=_text(item.get("server_id")) or server_id,
                          accepted=accepted, task_id=task_id if accepted else None,
                          error_code=None if accepted else _text(item.get("error_code")),
                          error_msg=None if accepted else self._refusal(item.get("error_msg"),
                                                                        sent=sent))

    # -- submissions -------------------------------------------------------------------

    def associate(self, keypair_name: str, server_id: str, *,
                  private_key: Secret | None = None, disable_password: bool | None = None,
                  port: int | None = None) -> Submission:
        """Bind ``keypair_name`` to one server; a running server with a key pair needs its
        current ``private_key``."""
        body = {"keypair_name": keypair_name,
                "server": _server(server_id, private_key=private_key,
                                  disable_password=disable_password, port=port)}
        data = self._submit("associate", body,
                            operation=f"bind key pair {keypair_name} to server {server_id}")
        return self._submission(data, server_id, sent=body)

    def batch_associate(self, keypair_name: str, server_ids: Sequence[str], *,
                        disable_password: bool | None = None,
                        port: int | None = None) -> tuple[Submission, ...]:
        """Bind ``keypair_name`` to up to 10 running servers that have no key pair."""
        ids = list(server_ids)
        if not 1 <= len(ids) <= MAX_BATCH or len(set(ids)) != len(ids):
            raise UsageError(f"a batch binds one key pair to 1 to {MAX_BATCH} distinct "
                             f"servers, not {len(ids)} ({len(set(ids))} distinct): split it")
        body = {"batch_keypairs": [
            {"keypair_name": keypair_name,
             "server": _server(sid, private_key=None, disable_password=disable_password,
                               port=port)} for sid in ids]}
        operation = f"bind key pair {keypair_name} to {len(ids)} servers"
        data = self._submit("batch-associate", body, operation=operation,
                            shape=bindshapes.BATCH_SUBMITTED)
        items = data["tasks"]
        assert isinstance(items, list)  # checked by the shape
        answered = {str(i.get("server_id")): i for i in items if isinstance(i, Mapping)}
        out = []
        for sid in ids:
            item = answered.get(sid)
            out.append(Submission(server_id=sid, accepted=False,
                                  error_msg="the cloud's answer does not name this server")
                       if item is None else self._submission(item, sid, sent=body))
        return tuple(out)

    def disassociate(self, server_id: str, *, private_key: Secret | None = None) -> Submission:
        """Unbind the server's key pair (password login comes back); a running server needs
        its current ``private_key``."""
        body = {"server": _server(server_id, private_key=private_key)}
        data = self._submit("disassociate", body,
                            operation=f"unbind the key pair of server {server_id}")
        return self._submission(data, server_id, sent=body)

    def _submit(self, action: str, body: Mapping[str, object], *, operation: str,
                shape: Node = bindshapes.SUBMITTED) -> Mapping[str, object]:
        data = self._http.call(
            method="POST", path=f"{self._base}/keypairs/{action}", operation=operation,
            shape=shape, kind=Kind.CREATE, body=body, hints=_HINTS,
            reread="Read the running tasks (and the servers' key_name) to learn whether it "
                   "was accepted before submitting it again.")
        assert data is not None
        return data

    # -- tasks ---------------------------------------------------------------------------

    def task(self, task_id: str) -> TaskState | None:
        """The task's status now; None when KPS knows no such task."""
        data = self._http.call(method="GET", path=f"{self._base}/tasks/{task_id}",
                               operation=f"read KPS task {task_id}", shape=bindshapes.TASK,
                               missing=True)
        if data is None:
            return None
        phase, _, operation = str(data["task_status"]).partition("_")
        return TaskState(task_id=task_id, server_id=_text(data.get("server_id")),
                         phase=phase, operation=operation)

    def wait(self, task_id: str) -> TaskOutcome:
        """Follow a task to its end (bounded backoff, ``polling.timeout`` at most); a failed
        task's reason is read from failed-tasks and its entry removed."""
        deadline = self._monotonic() + self.polling.timeout
        polls = 0
        for delay in self.polling.delays():
            state = self.task(task_id)
            polls += 1
            if state is None:
                raise OutcomeUnknownError(
                    f"follow KPS task {task_id} failed: KPS no longer knows the task; read "
                    "the server's key_name to learn whether it took effect.",
                    operation=f"follow KPS task {task_id}")
            if state.finished:
                return self._outcome(state, polls=polls)
            left = deadline - self._monotonic()
            if left <= 0:
                break
            self._sleep(min(delay, left))
        raise OutcomeUnknownError(
            f"follow KPS task {task_id} failed: it had not finished after "
            f"{self.polling.timeout:g} s ({polls} reads); it may still finish. Read the "
            "running tasks and the server's key_name before submitting it again.",
            operation=f"follow KPS task {task_id}")

    def _outcome(self, state: TaskState, *, polls: int) -> TaskOutcome:
        if state.phase == "SUCCESS":
            return TaskOutcome(task_id=state.task_id, server_id=state.server_id,
                               operation=state.operation, succeeded=True, polls=polls)
        listed = next((t for t in self.failed_tasks() if t.task_id == state.task_id), None)
        if listed is not None:
            self.delete_failed_task(state.task_id)
        return TaskOutcome(task_id=state.task_id, server_id=state.server_id,
                           operation=state.operation, succeeded=False,
                           error_code=None if listed is None else listed.error_code,
                           error_msg=None if listed is None else listed.error_msg,
                           polls=polls)

    def running_tasks(self) -> tuple[ListedTask, ...]:
        return self._list("running-tasks", bindshapes.RUNNING_TASKS)

    def failed_tasks(self) -> tuple[ListedTask, ...]:
        return self._list("failed-tasks", bindshapes.FAILED_TASKS)

    def _list(self, what: str, shape: Node) -> tuple[ListedTask, ...]:
        out: list[ListedTask] = []
        for _ in range(MAX_TASK_PAGES):
            data = self._http.call(method="GET", path=f"{self._base}/{what}",
                                   operation=f"list KPS {what}", shape=shape,
                                   query=[("limit", str(TASK_PAGE)),
                                          ("offset", str(len(out)))])
            assert data is not None
            items = data["tasks"]
            assert isinstance(items, list)  # checked by the shape
            out += [self._listed(i) for i in items if isinstance(i, Mapping)]
            total = data.get("total")
            whole = isinstance(total, int) and not isinstance(total, bool) and len(out) >= total
            if whole or len(items) < TASK_PAGE:
                break
        return tuple(out)

    def _listed(self, item: Mapping[str, object]) -> ListedTask:
        return ListedTask(task_id=str(item["task_id"]),
                          operate_type=_text(item.get("operate_type")),
                          server_id=_text(item.get("server_id")),
                          server_name=self._clean(item.get("server_name")),
                          keypair_name=_text(item.get("keypair_name")),
                          error_code=self._clean(item.get("task_error_code")),
                          error_msg=self._clean(item.get("task_error_msg")))

    def delete_failed_task(self, task_id: str) -> bool:
        """Forget a failed task; False when it was gone already."""
        data = self._http.call(method="DELETE", path=f"{self._base}/failed-tasks/{task_id}",
                               operation=f"delete failed KPS task {task_id}",
                               shape=bindshapes.NO_BODY, missing=True)
        return data is not None


def _server(server_id: str, *, private_key: Secret | None,
            disable_password: bool | None = None, port: int | None = None) -> dict[str, object]:
    if not server_id or not bindshapes.SERVER_ID.fullmatch(server_id):
        raise UsageError(f"{server_id!r} is not an ECS server id; give the server's id")
    server: dict[str, object] = {"id": server_id}
    if private_key is not None:
        server["auth"] = {"type": "keypair", "key": private_key.reveal()}
    if disable_password is not None:
        server["disable_password"] = disable_password
    if port is not None:
        if isinstance(port, bool) or not 1 <= port <= 65535:
            raise UsageError(f"the SSH port must be from 1 to 65535, not {port}")
        server["port"] = port
    return server
