"""The local Huawei key pair API emulator: a threaded HTTP/1.1 server over many projects.

Every API request (``/v2``, ``/v2.1``, ``/v3``) is, in order: delayed by the configured
latency, failed if its project is made unreachable (a dropped connection or a chosen status),
checked for a valid ``SDK-HMAC-SHA256`` signature and matching project ids of a served
project (gateway errors 401/403 otherwise) that the credentials may use (403 in the API's
shape otherwise: an agency's credentials reach its projects only, the emulator's own keys its
own account's), routed, counted by operation (in total and for the project), subjected to
the injected faults, and carried out on that project's key pairs. KMS (``/v1.0/{project_id}/kms/…``)
and CSMS (``/v1/{project_id}/secrets…``) are served the same way, on that project's keys and
secrets (``reconciler.emulator.dew``). ECS's server list (``/v1/{project_id}/cloudservers/detail``)
and KPS's binding tasks (``/v3/{project_id}/keypairs/associate``, ``tasks/…``,
``running-tasks``, ``failed-tasks``…) are served on that project's servers and tasks
(``reconciler.emulator.compute``). Every answer carries
``X-Request-Id`` and ``Content-Length``; connections are kept alive.

IAM's and STS's federated login (``/v3.0/OS-AUTH/id-token/tokens``,
``/v3.0/OS-CREDENTIAL/securitytokens``, ``/v5/agencies/assume-with-oidc``), IAM's agency
``assume_role`` and ``GET /v3/auth/domains`` (signed: this module verifies the signer first
and passes its account in) are served on the same port
by ``reconciler.emulator.iam``; the temporary credentials it grants sign key pair requests
until they expire.

The admin path ``/_emulator/…`` (``reconciler.emulator.admin``) needs no signature and is
served to loopback clients only. It never shows private keys, tokens or temporary secrets.

May import: ``reconciler.emulator.*``, the standard library.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote

from reconciler.emulator import views
from reconciler.emulator.admin import handle_admin
from reconciler.emulator.compute import OPERATIONS as COMPUTE_OPERATIONS
from reconciler.emulator.compute import WRITE_OPERATIONS as COMPUTE_WRITE_OPERATIONS
from reconciler.emulator.compute import Compute, ComputeCall
from reconciler.emulator.compute import serves as compute_serves
from reconciler.emulator.compute import service_of as compute_service_of
from reconciler.emulator.compute import status_error as compute_status_error
from reconciler.emulator.datafile import DataFile
from reconciler.emulator.dew import OPERATIONS as DEW_OPERATIONS
from reconciler.emulator.dew import WRITE_OPERATIONS as DEW_WRITE_OPERATIONS
from reconciler.emulator.dew import Dew, DewCall, serves, service_of, status_error
from reconciler.emulator.dew import project_of as dew_project_of
from reconciler.emulator.ecsapi import Where as EcsWhere
from reconciler.emulator.faults import (
    DEFAULT_STATUSES,
    Counters,
    Fault,
    FaultConfig,
    Faults,
    make_config,
)
from reconciler.emulator.handlers import (
    ApiCall,
    ApiProblem,
    Backend,
    Reply,
    api_of,
    parse_body,
    project_of,
    refine_operation,
    route,
    split_path,
)
from reconciler.emulator.iam import GET_PATHS as IAM_GET_PATHS
from reconciler.emulator.iam import PATHS as IAM_PATHS
from reconciler.emulator.iam import Iam, IamProblem, problem_reply
from reconciler.emulator.jsonbody import parse_json_body
from reconciler.emulator.keywork import KEYGEN_ALGORITHMS
from reconciler.emulator.kmsapi import Where
from reconciler.emulator.projects import DEFAULT_REGION, Outage, Project, Projects
from reconciler.emulator.signing import SignatureError, SignedRequest, verify
from reconciler.emulator.store import Store

MAX_BODY_BYTES = 1 << 20
ADMIN_PREFIX = "/_emulator/"
OPERATIONS = (
    "list",
    "get",
    "create",
    "import",
    "delete",
    "update",
    "export",
    "import_private_key",
    "clear_private_key",
    "batch_import",
)
COUNTER_NAMES = (*OPERATIONS, "total", "rejected_auth", "faults_injected", "internal_errors",
                 "unreachable")
PROJECT_COUNTER_NAMES = (*OPERATIONS, "total", "rejected_auth", "faults_injected",
                         "unreachable")


class _Close(Exception):
    """Close the connection without answering (a dropped or lost response)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    emulator: Emulator


    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up are normal (retries, timeouts); other errors are counted."""
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            self.emulator.counters_.add("internal_errors")


class _Server6(_Server):
    address_family = socket.AF_INET6


class Emulator:
    """The emulator; usable as a context manager. See the module docstring."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ak: str | None = None,
        sk: str | None = None,
        project_id: str | None = None,
        latency_ms: float = 0.0,
        fault_rate: float = 0.0,
        seed: int | None = None,
        data: str | None = None,
        keygen: str = "rsa-2048",
        region: str = DEFAULT_REGION,
        projects: Mapping[str, str] | None = None,
    ) -> None:
        """``project_id`` (in ``region``) is the default project; ``projects`` maps the ids
        of more projects of the same account to their regions."""
        if keygen not in KEYGEN_ALGORITHMS:
            raise ValueError(f"keygen must be one of {', '.join(KEYGEN_ALGORITHMS)}")
        self.host = host
        self.port = port
        self.ak = ak or secrets.token_hex(16)
        self.sk = sk or secrets.token_hex(16)
        self.project_id = project_id or secrets.token_hex(16)
        self.user_id = secrets.token_hex(16)
        self._initial = FaultConfig.mixed(latency_ms=latency_ms, fault_rate=fault_rate)
        make_config(latency_ms=latency_ms, error_rate=self._initial.error_rate)  # validates
        self.faults = Faults(self._initial, seed=seed)
        self.counters_ = Counters()  # the totals: the bench and the tests read these
        self.datafile = DataFile(data) if data else None
        self.projects = Projects(default_id=self.project_id, region=region,
                                 on_change=self.datafile.changed if self.datafile else None)
        for pid, where in (projects or {}).items():
            self.projects.add(pid, region=where)
        if self.datafile is not None:
            self.datafile.load(self.projects)
            self.datafile.start(self.projects)
        self.projects.seal()
        self.backend = Backend(projects=self.projects, user_id=self.user_id, keygen=keygen)
        self.dew = Dew()  # every project's KMS keys and CSMS secrets
        self.compute = Compute(seed=seed)  # every project's ECS servers and binding tasks
        self.domain_id = secrets.token_hex(16)
        self.iam = Iam(domain_id=self.domain_id)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self._busy = 0  # requests being handled now
        self._handled = 0  # requests that have started, ever
        self._idle = threading.Condition()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            return
        cls = _Server6 if ":" in self.host else _Server
        server = cls((self.host, self.port), _Handler)
        server.emulator = self
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="emulator"
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            with self._conn_lock:
                open_connections = list(self._connections)
            for conn in open_connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
        if self.datafile is not None:
            self.datafile.close()

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    # -- controls ------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The default project's key pairs."""
        return self.projects.default.store

    def reset(self) -> None:
        """Every store empty, counters zero, faults and latency back to the constructor's,
        outages ended, projects and agencies added since construction forgotten."""
        self.projects.reset()
        self.counters_.clear()
        self.faults.configure(self._initial)
        self.iam.reset()
        self.dew.reset()
        self.compute.reset()

    def counters(self, project_id: str | None = None) -> dict[str, int]:
        """The totals over every project, or one project's counts."""
        if project_id is None:
            counts = dict.fromkeys(COUNTER_NAMES, 0)
            counts.update(self.counters_.snapshot())
            return counts
        counts = dict.fromkeys(PROJECT_COUNTER_NAMES, 0)
        counts.update(self._project(project_id).counters.snapshot())
        return counts

    # -- projects ------------------------------------------------------------------------

    def _project(self, project_id: str | None) -> Project:
        project = self.projects.get(project_id or self.project_id)
        if project is None:
            raise KeyError(f"the emulator serves no project {project_id}; add_project first")
        return project

    def add_project(self, project_id: Any, *, region: Any = DEFAULT_REGION,
                    domain_id: Any = None) -> None:
        """Serve one more project (``domain_id``: another account's, reached by agency only)."""
        if domain_id is not None and (not isinstance(domain_id, str) or not domain_id):
            raise ValueError("domain_id must be a non-empty string (or absent)")
        if domain_id == self.domain_id:
            domain_id = None
        self.projects.add(project_id, region=region, domain_id=domain_id)

    def set_unreachable(self, project_id: str, *, status: int | None = None,
                        retry_after: float | None = None) -> None:
        """Fail every request for this project: a dropped connection, or ``status`` (with
        ``Retry-After: retry_after`` when given)."""
        if status is not None and (isinstance(status, bool) or not isinstance(status, int)
                                   or not 400 <= status <= 599):
            raise ValueError("status must be an HTTP error status from 400 to 599 (or absent "
                             "to drop the connection)")
        if retry_after is not None and (
                status is None or isinstance(retry_after, bool)
                or not isinstance(retry_after, int | float) or not 0 <= retry_after <= 3600):
            raise ValueError("retry_after must be a number of seconds from 0 to 3600, given "
                             "with a status")
        self.projects.set_outage(self._project(project_id).id, Outage(status, retry_after))

    def set_reachable(self, project_id: str) -> None:
        self.projects.set_outage(self._project(project_id).id, None)

    def project_summary(self, project_id: str) -> dict[str, Any]:
        project = self._project(project_id)
        outage = project.outage
        return {"project_id": project.id, "region": project.region,
                "domain_id": project.domain_id or self.domain_id,
                "default": project.id == self.project_id,
                "keypairs": project.store.count(),
                "reachable": outage is None,
                "unreachable_status": None if outage is None else outage.status,
                "counters": self.counters(project.id)}

    def project_summaries(self) -> list[dict[str, Any]]:
        return [self.project_summary(p.id) for p in self.projects.all()]

    def set_faults(
        self,
        *,
        latency_ms: float | None = None,
        error_rate: float = 0.0,
        statuses: Sequence[int] = DEFAULT_STATUSES,
        retry_after: float = 0.0,
        drop_rate: float = 0.0,
        lost_response_rate: float = 0.0,
        operations: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> None:
        """Replace the fault configuration (``latency_ms=None`` keeps the current latency)."""
        if operations is not None:
            unknown = (set(operations) - set(OPERATIONS) - set(DEW_OPERATIONS)
                       - set(COMPUTE_OPERATIONS))
            if unknown:
                raise ValueError(f"unknown operations: {', '.join(sorted(unknown))}")
        config = make_config(
            latency_ms=self.faults.config.latency_ms if latency_ms is None else latency_ms,
            error_rate=error_rate,
            statuses=statuses,
            retry_after=retry_after,
            drop_rate=drop_rate,
            lost_response_rate=lost_response_rate,
            operations=operations,
        )
        self.faults.configure(config, seed=seed)

    def freeze(self, name: str, frozen_state: int = 1, *, project_id: str | None = None) -> None:
        """Set a key pair's kps ``frozen_state`` (0 thaws it): the cloud freezes key pairs
        (a violation, a police order, no real-name check) and lists them all the same."""
        if isinstance(frozen_state, bool) or not isinstance(frozen_state, int) \
                or not 0 <= frozen_state <= 10:
            raise ValueError("frozen_state must be a whole number from 0 to 10")
        self._project(project_id).store.update(name, frozen_state=frozen_state)

    def keypair_count(self, project_id: str | None = None) -> int:
        return self._project(project_id).store.count()

    def keypair_summaries(self, project_id: str | None = None) -> list[dict[str, Any]]:
        """Names, fingerprints and custody flags (never key material), in name order."""
        return [
            {
                "name": r.name,
                "fingerprint": r.fingerprint,
                "type": r.type,
                "key_protection": r.key_protection,
            }
            for r in self._project(project_id).store.all()
        ]

    def settle(self, timeout: float = 30.0, *, quiet: float = 0.2) -> bool:
        """Wait until no request has been handled for ``quiet`` seconds (those of a killed
        client may still be sleeping out their latency, and then take effect; one already
        received but not yet parsed starts within that time unless its thread is starved);
        False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not self._idle.wait_for(lambda: self._busy == 0, left):
                    return False
                handled = self._handled
                self._idle.wait(min(quiet, max(0.0, deadline - time.monotonic())))
                if self._busy == 0 and self._handled == handled:
                    return True

    def _handling(self, delta: int) -> None:
        with self._idle:
            self._busy += delta
            self._handled += delta > 0
            if self._busy == 0:
                self._idle.notify_all()

    # -- connection bookkeeping (so stop() can close idle keep-alive connections) --------

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conn_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def access_refusal(self, access_key: str, project: Project | None) -> str | None:
        """Why these credentials may not use ``project`` (None: they may)."""
        if project is None:
            return None
        scope = self.iam.projects_of(access_key)
        if scope is not None:
            if project.id in scope:
                return None
            return (f"Policy doesn't allow this request: the agency's temporary credentials "
                    f"may use projects {', '.join(sorted(scope))} only, not {project.id}")
        if project.domain_id is not None:
            return (f"Policy doesn't allow this request: project {project.id} belongs to "
                    f"account {project.domain_id}; use that account's agency")
        return None

    def secret_for(self, access_key: str) -> str | None:
        return self.sk if access_key == self.ak else self.iam.secret_for(access_key)

    def account_of(self, access_key: str) -> str | None:
        """The account an access key acts in: the emulator's own for its AK, an agency's for
        that agency's temporary AK."""
        return self.domain_id if access_key == self.ak else self.iam.account_of(access_key)

    def register_identity_provider(self, **fields: Any) -> dict[str, Any]:
        """Register an identity provider (fields as ``POST /_emulator/iam/providers``)."""
        provider = self.iam.register(fields)
        return {"id": provider.id, "provider_urn": provider.provider_urn,
                "agencies": list(provider.agencies)}

    def register_agency(self, **fields: Any) -> dict[str, Any]:
        """Register an agency (fields as ``POST /_emulator/iam/agencies``): its ``name``, the
        ``domain_id`` and/or ``domain_name`` of the account that owns it, and the
        ``projects`` (served here) its temporary credentials may use."""
        projects = fields.get("projects")
        if isinstance(projects, list):
            unknown = [p for p in projects if not isinstance(p, str) or self.projects.get(p)
                       is None]
            if unknown:
                raise ValueError(f"the emulator serves no project {unknown[0]!r}; add it "
                                 "first (add_project or POST /_emulator/projects)")
        agency = self.iam.register_agency(fields)
        return {"name": agency.name, "domain_id": agency.domain_id,
                "domain_name": agency.domain_name, "projects": list(agency.projects)}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "reconciler-emulator"
    timeout = 120  # idle keep-alive connections close after this
    server: _Server
    request_id = ""

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.emulator._track(self.connection, add=True)

    def finish(self) -> None:
        self.server.emulator._track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the emulator is a library; requests are counted, not logged."""

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    # -- plumbing ------------------------------------------------------------------------

    def _send(self, reply: Reply) -> None:
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        try:
            phrase = HTTPStatus(reply.status).phrase
        except ValueError:
            phrase = ""
        lines = [f"HTTP/1.1 {reply.status} {phrase}"]
        headers = {"X-Request-Id": self.request_id, **reply.headers}
        if reply.body is not None:
            headers["Content-Type"] = "application/json;charset=UTF-8"
        headers["Content-Length"] = str(len(payload))
        if self.close_connection:
            headers["Connection"] = "close"
        lines += [f"{k}: {v}" for k, v in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + (b"" if self.command == "HEAD" else payload))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise ApiProblem(411, "chunked request bodies are not supported; send Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.close_connection = True
            raise ApiProblem(400, "invalid Content-Length") from None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiProblem(413, "the request body is too large")
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        emu = self.server.emulator
        emu._handling(+1)
        try:
            self._dispatch_counted(emu)
        finally:
            emu._handling(-1)

    def _dispatch_counted(self, emu: Emulator) -> None:
        self.request_id = uuid.uuid4().hex
        raw_path, _, raw_query = self.path.partition("?")
        try:
            body = self._read_body()
        except ApiProblem as exc:
            api = api_of(split_path(raw_path))
            self._send(Reply(exc.status, views.error_body(api, exc.status, exc.message)))
            return
        try:
            if raw_path.startswith(ADMIN_PREFIX):
                reply = self._admin(raw_path[len(ADMIN_PREFIX) :], body)
            elif raw_path in IAM_PATHS:
                reply = self._iam(emu, raw_path=raw_path, raw_query=raw_query, body=body)
            else:
                reply = self._api(emu, raw_path=raw_path, raw_query=raw_query, body=body)
        except _Close:
            self.close_connection = True
            return
        except Exception:  # a defect here must not look like a network fault to the client
            emu.counters_.add("internal_errors")
            api = api_of(split_path(raw_path))
            reply = Reply(500, views.error_body(api, 500, "internal error in the emulator"))
        self._send(reply)

    # -- IAM and STS ---------------------------------------------------------------------

    def _iam(self, emu: Emulator, *, raw_path: str, raw_query: str, body: bytes) -> Reply:
        wanted = "GET" if raw_path in IAM_GET_PATHS else "POST"
        if self.command != wanted:
            return Reply(405, {"error_code": "IAM.0405", "error_msg": f"use {wanted}"})
        try:
            parsed = parse_json_body(body) if body.strip() else None
        except ValueError:
            return Reply(400, {"error_code": "IAM.0001", "error_msg": "the body is not JSON"})
        headers = {k.lower(): v for k, v in self.headers.items()}
        caller: str | None = None
        if emu.iam.needs_caller(raw_path, parsed):
            try:
                caller = self._signer(emu, raw_path=raw_path, raw_query=raw_query, body=body)
            except SignatureError as exc:
                problem = IamProblem(401, "IAM.0005", f"the request is not signed by a "
                                     f"valid AK/SK: {exc}")
                return problem_reply(raw_path, problem)
        account = None if caller is None else emu.account_of(caller)
        return emu.iam.handle(raw_path, headers=headers, body=parsed, caller=caller,
                              account=account)

    def _signer(self, emu: Emulator, *, raw_path: str, raw_query: str, body: bytes) -> str:
        """The access key that validly signed this request; ``SignatureError`` why not."""
        signed = SignedRequest(
            method=self.command,
            raw_path=raw_path,
            raw_query=raw_query,
            headers=tuple(self.headers.items()),
            body=body,
        )
        access_key = verify(signed, secret_for=emu.secret_for)
        refused = emu.iam.refusal(access_key, self.headers.get("X-Security-Token"))
        if refused is not None:
            raise SignatureError(refused)
        return access_key

    # -- the API -------------------------------------------------------------------------

    def _api(self, emu: Emulator, *, raw_path: str, raw_query: str, body: bytes) -> Reply:
        request_id = self.request_id
        segments = split_path(raw_path)
        project = emu.projects.get(_project_id(segments))

        def count(name: str) -> None:
            emu.counters_.add(name)
            if project is not None:
                project.counters.add(name)

        count("total")
        config = emu.faults.config
        if config.latency_ms > 0:
            time.sleep(config.latency_ms / 1000.0)
        outage = project.outage if project is not None else None
        if project is not None and outage is not None:
            count("unreachable")
            if outage.status is None:
                raise _Close()
            message = (f"The backend is unavailable (project {project.id} in "
                       f"{project.region} is unreachable)")
            after = ({} if outage.retry_after is None
                     else {"Retry-After": f"{outage.retry_after:g}"})
            return Reply(outage.status, views.gateway_error("APIGW.0202", message, request_id),
                         after)
        denied = self._authenticate(emu, project, raw_path=raw_path, raw_query=raw_query,
                                    body=body)
        if denied is not None:
            count("rejected_auth")
            return denied
        if compute_serves(self.command, segments):
            return self._compute(emu, segments, raw_query=raw_query, body=body, count=count)
        if serves(segments):
            return self._dew(emu, segments, raw_query=raw_query, body=body, count=count)
        api = api_of(segments)
        try:
            call = route(self.command, segments)
            if call is None:
                return Reply(
                    404,
                    views.gateway_error(
                        "APIGW.0101", "The API does not exist or has not been published", request_id
                    ),
                )
            parsed = parse_body(body)
            call = refine_operation(call, parsed)
            count(call.operation)
            return self._carry_out(emu, call, parsed, raw_query=raw_query, count=count)
        except ApiProblem as exc:
            return Reply(exc.status, views.error_body(api, exc.status, exc.message, exc.code))

    def _faulted(self, emu: Emulator, operation: str, service: str, *, write: bool | None,
                 count: Callable[[str], None], handle: Callable[[], Reply]) -> Reply:
        """``handle()`` under the fault injected for ``operation``, if any: a dropped
        connection, an error in ``service``'s shape, or an answer lost after the work is done
        (``write``: whether the operation changes something; None: the injector decides)."""
        fault = emu.faults.decide(operation, write=write)
        if fault is not None:
            count("faults_injected")
            if fault.kind == "drop":
                raise _Close()
            if fault.kind == "error":
                return _fault_reply(service, fault, self.request_id)
        reply = handle()
        if fault is not None and fault.kind == "lost" and 200 <= reply.status < 300:
            raise _Close()
        return reply

    def _carry_out(self, emu: Emulator, call: ApiCall, parsed: Any, *, raw_query: str,
                   count: Callable[[str], None]) -> Reply:
        headers = {k.lower(): v for k, v in self.headers.items()}
        return self._faulted(
            emu, call.operation, call.api, write=None, count=count,
            handle=lambda: emu.backend.handle(call, body=parsed, query=_query_dict(raw_query),
                                              headers=headers))

    def _dew(self, emu: Emulator, segments: list[str], *, raw_query: str, body: bytes,
             count: Callable[[str], None]) -> Reply:
        routed = emu.dew.route(self.command, segments, request_id=self.request_id)
        if not isinstance(routed, DewCall):
            return routed
        call = routed
        count(call.operation)
        project = emu.projects.get(call.project_id)
        assert project is not None  # the gateway checks refused any other
        where = Where(domain_id=project.domain_id or emu.domain_id, region=project.region)
        return self._faulted(
            emu, call.operation, call.service, count=count,
            write=call.operation in DEW_WRITE_OPERATIONS,
            handle=lambda: emu.dew.handle(call, body=body, query=_query_dict(raw_query),
                                          where=where))

    def _compute(self, emu: Emulator, segments: list[str], *, raw_query: str, body: bytes,
                 count: Callable[[str], None]) -> Reply:
        routed = emu.compute.route(self.command, segments, request_id=self.request_id)
        if not isinstance(routed, ComputeCall):
            return routed
        call = routed
        count(call.operation)
        project = emu.projects.get(call.project_id)
        assert project is not None  # the gateway checks refused any other
        where = EcsWhere(project_id=project.id, region=project.region, user_id=emu.user_id)
        return self._faulted(
            emu, call.operation, call.service, count=count,
            write=call.operation in COMPUTE_WRITE_OPERATIONS,
            handle=lambda: emu.compute.handle(call, body=body, query=_query_dict(raw_query),
                                              where=where, store=project.store))

    def _authenticate(
        self, emu: Emulator, project: Project | None, *, raw_path: str, raw_query: str,
        body: bytes
    ) -> Reply | None:
        request_id = self.request_id
        try:
            access_key = self._signer(emu, raw_path=raw_path, raw_query=raw_query, body=body)
        except SignatureError as exc:
            message = f"Incorrect IAM authentication information: {exc}"
            return Reply(401, views.gateway_error("APIGW.0301", message, request_id))
        header_project = self.headers.get("X-Project-Id")
        path_project = _project_id(split_path(raw_path))
        if header_project is None:
            message = "Incorrect IAM authentication information: the X-Project-Id header is missing"
            return Reply(401, views.gateway_error("APIGW.0301", message, request_id))
        if path_project is not None and (header_project.strip() != path_project
                                         or project is None):
            message = "The IAM user has no permission on this project (project id mismatch)"
            return Reply(403, views.gateway_error("APIGW.0302", message, request_id))
        refused = emu.access_refusal(access_key, project)
        if refused is not None:
            segments = split_path(raw_path)
            if compute_serves(self.command, segments):
                return compute_status_error(compute_service_of(segments), 403, refused)
            if serves(segments):
                return status_error(service_of(segments), 403, refused)
            return Reply(403, views.error_body(api_of(segments), 403, refused))
        return None

    # -- the admin path ------------------------------------------------------------------

    def _admin(self, what: str, body: bytes) -> Reply:
        if not _is_loopback(self.client_address[0]):
            return Reply(403, {"error": "the admin path is served to loopback clients only"})
        return handle_admin(self.server.emulator, self.command, what, body)


def _project_id(segments: list[str]) -> str | None:
    """The project of a key pair, KMS or CSMS path."""
    return project_of(segments) or dew_project_of(segments)


def _fault_reply(api: str, fault: Fault, request_id: str) -> Reply:
    if fault.status == 429:
        after = fault.retry_after
        value = str(int(after)) if float(after).is_integer() else f"{after:g}"
        body = views.gateway_error(
            "APIGW.0308", "The throttling threshold has been reached", request_id
        )
        return Reply(429, body, {"Retry-After": value})
    if fault.status in (502, 504):
        body = views.gateway_error("APIGW.0202", "The backend is unavailable", request_id)
        return Reply(fault.status, body)
    if api in ("kms", "csms"):
        return status_error(api, fault.status, "injected fault: try again")
    if api == "ecs":
        return compute_status_error(api, fault.status, "injected fault: try again")
    return Reply(fault.status, views.error_body(api, fault.status, "injected fault: try again"))


def _query_dict(raw_query: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in raw_query.split("&"):
        if part:
            key, _, value = part.partition("=")
            out.setdefault(unquote(key), unquote(value))
    return out


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback
