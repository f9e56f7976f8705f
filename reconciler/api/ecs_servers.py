"""The ECS server list: which key pair each server of a project is bound to.

``EcsServersClient.list_servers`` reads ``GET /v1/{project_id}/cloudservers/detail`` to the
end: ``limit`` 1000 (the most ECS gives), ``offset`` a page number from 1, each answer
``{"count": N, "servers": [...]}`` with ``count`` the number of servers in all pages. ECS
has no filter by key pair, so a refresh reads the whole list once per target and filters it
here (``by_key_name``). The list is whole only if it adds up: every page reports the same
``count``, no server is listed twice, and the servers read are ``count``; a list that
changed while it was read (a server made or deleted between two pages) is read once more,
then refused with what to do, never taken as it is (a server missing from it would look
unbound).

Requests go through the key pair ``HttpClient`` (signing, retries, deadlines) by way of
``dewcall.DewHttp``, which checks each answer against ``bindshapes.SERVERS`` and words errors
for ECS. The settings are those of ECS in that project (its endpoint is
``ecs.{region}.myhuaweicloud.com``, not KPS's).

May import: the standard library, ``reconciler.errors``, ``reconciler.api.{client,dewcall,
bindshapes,protocol}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reconciler.api import bindshapes
from reconciler.api.client import HttpClient
from reconciler.api.dewcall import DewHttp
from reconciler.api.protocol import ApiSettings
from reconciler.errors import AnswerShapeError, ApiError

PAGE = 1000
READS = 2  # a list that changed while it was read is read once more
# as the policy-based (1.1) and the identity-policy (5.0) references name it
ACTIONS = ("ecs:cloudServers:list (in an identity policy: "
           "ecs:cloudServers:listServersDetails)")
RUNNING = "ACTIVE"
PUBLIC_IMAGE = "gold"


@dataclass(frozen=True, slots=True)
class EcsServer:
    id: str
    name: str
    status: str  # ECS's: ACTIVE (running), SHUTOFF (stopped), BUILD, ERROR…
    key_name: str | None  # the key pair bound to it; None when none is
    image_type: str | None  # metadata ``metering.imagetype``: gold (public), private…

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def public_image(self) -> bool:
        """Key pairs bind to servers of public images only."""
        return self.image_type == PUBLIC_IMAGE


def by_key_name(servers: Iterable[EcsServer]) -> Mapping[str, tuple[EcsServer, ...]]:
    """The servers bound to each key pair (servers without one are left out)."""
    out: dict[str, list[EcsServer]] = {}
    for server in servers:
        if server.key_name:
            out.setdefault(server.key_name, []).append(server)
    return {name: tuple(found) for name, found in out.items()}


def _server(item: Mapping[str, object]) -> EcsServer:
    metadata = item.get("metadata")
    image_type = metadata.get("metering.imagetype") if isinstance(metadata, Mapping) else None
    key_name = item.get("key_name")
    return EcsServer(id=str(item["id"]), name=str(item["name"]), status=str(item["status"]),
                     key_name=key_name if isinstance(key_name, str) and key_name else None,
                     image_type=image_type if isinstance(image_type, str) else None)


class _Changed(Exception):
    """The list changed while it was read (internal: read it again)."""


class EcsServersClient:
    """ECS servers of one project; safe to share by threads."""

    def __init__(self, settings: ApiSettings, *, http: HttpClient | None = None) -> None:
        self._http = DewHttp(settings, service="ECS", actions=ACTIONS, http=http)
        self._path = f"/v1/{settings.project_id}/cloudservers/detail"

    def close(self) -> None:
        self._http.close()

    def list_servers(self) -> tuple[EcsServer, ...]:
        """Every server of the project, newest first as ECS lists them."""
        for _ in range(READS):
            try:
                return self._read()
            except _Changed:
                continue
        raise ApiError(
            f"list ECS servers failed: the server list of project {self._http.project_id} "
            f"changed while it was read, {READS} times (servers made or deleted meanwhile); "
            "nothing was decided from it. Run the command again when no servers are being "
            "made or deleted.", operation="list ECS servers")

    def _read(self) -> tuple[EcsServer, ...]:
        seen: dict[str, EcsServer] = {}
        expected: int | None = None
        page = 1
        while True:
            request = f"GET {self._path}?limit={PAGE}&offset={page}"
            data = self._http.call(method="GET", path=self._path, operation="list ECS servers",
                                   shape=bindshapes.SERVERS,
                                   query=[("limit", str(PAGE)), ("offset", str(page))])
            assert data is not None
            count = _count(data.get("count"), request)
            items = data["servers"]
            assert isinstance(items, list)  # checked by the shape
            if len(items) > PAGE:
                raise _bad(request, "servers", f"{len(items)} servers in a page of {PAGE}")
            if expected is not None and count != expected:
                raise _Changed()
            expected = count
            for item in items:
                server = _server(item)
                if server.id in seen:
                    raise _Changed()
                seen[server.id] = server
            if len(seen) > count:
                raise _Changed()
            if len(seen) == count:
                return tuple(seen.values())
            if len(items) < PAGE:  # the last page, and fewer servers than counted
                raise _Changed()
            page += 1


def _count(value: object, request: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(request, "count", "expected a whole number of servers")
    return value


def _bad(request: str, path: str, problem: str) -> AnswerShapeError:
    return AnswerShapeError(
        f"list ECS servers failed: the answer to {request} is not what the API documents: "
        f"{path}: {problem}. Nothing was decided from it. Run the command again; if it "
        "persists, a proxy or gateway between here and the cloud is changing answers.",
        path=path, request=request, operation="list ECS servers")
