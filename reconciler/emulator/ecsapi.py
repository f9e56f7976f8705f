"""ECS's ``GET /v1/{project_id}/cloudservers/detail`` over one project's ``Fleet``.

The answer is ``{"count": N, "servers": [ServerDetail…]}`` as the official SDK's
``ListServersDetailsResponse`` reads it: ``count`` is the number of servers matching the
filters (all pages), ``servers`` one page of them, newest first. ``limit`` is the page size
(1 to 1000, 25 by default); ``offset`` is a page number (1 is the first page, and so is 0).
Filters: ``name`` (a substring), ``status`` (``ACTIVE``, ``SHUTOFF``), ``server_id`` (ids,
comma-separated; with it the other filters are ignored, as ECS does). Other query
parameters of the SDK are accepted and ignored. Each server carries ``key_name`` (null when
none is bound) and its image as ECS shows it: ``image.id`` and the ``metadata`` keys
``metering.image_id``, ``metering.imagetype`` (``gold`` public, ``private``) and
``image_name``.

Operation name (also the counter name): ``ecs_list_servers_details``. Errors are
``EcsProblem`` and render as ECS's ``{"error": {"code": "Ecs.xxxx", "message": …}}``.

May import: ``reconciler.emulator.fleet``, the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.emulator.fleet import PRIVATE_IMAGE, RUNNING, Fleet, Server

LIST = "ecs_list_servers_details"
OPERATIONS = (LIST,)
DEFAULT_LIMIT = 25
MAX_LIMIT = 1000


class EcsProblem(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Where:
    """What a server detail names besides the server: its project, region and user."""

    project_id: str
    region: str
    user_id: str


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def route(method: str, rest: list[str]) -> str | None:
    """The operation of ``/v1/{project_id}/<rest>``; None when it is not ECS's."""
    if rest != ["cloudservers", "detail"]:
        return None
    if method != "GET":
        raise EcsProblem(405, "Ecs.0405", f"method {method} is not allowed here; use GET")
    return LIST


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def server_detail(s: Server, where: Where) -> dict[str, Any]:
    """One server as ECS details it (a realistic subset of ``ServerDetail``)."""
    running = s.status == RUNNING
    private = s.image_type == PRIVATE_IMAGE
    image_name = "private-image" if private else "Ubuntu 22.04 server 64bit"
    return {
        "id": s.id,
        "name": s.name,
        "status": s.status,
        "created": _iso(s.created_ms),
        "updated": _iso(s.updated_ms),
        "key_name": s.key_name,
        "image": {"id": s.image_id},
        "flavor": {"id": "s6.small.1", "name": "s6.small.1", "disk": "0", "vcpus": "1",
                   "ram": "1024"},
        "addresses": {},
        "security_groups": [{"name": "default", "id": "default"}],
        "tenant_id": where.project_id,
        "user_id": where.user_id,
        "hostId": "",
        "host_status": "UP",
        "progress": 0,
        "locked": False,
        "tags": [],
        "description": "",
        "config_drive": "",
        "accessIPv4": "",
        "accessIPv6": "",
        "enterprise_project_id": "0",
        "metadata": {
            "charging_mode": "0",
            "image_name": image_name,
            "metering.image_id": s.image_id,
            "metering.imagetype": s.image_type,
            "os_type": "Linux",
            "os_bit": "64",
        },
        "OS-EXT-AZ:availability_zone": f"{where.region}a",
        "OS-EXT-STS:vm_state": "active" if running else "stopped",
        "OS-EXT-STS:power_state": 1 if running else 4,
        "OS-EXT-STS:task_state": None,
        "OS-DCF:diskConfig": "MANUAL",
        "OS-SRV-USG:launched_at": _iso(s.created_ms).replace("Z", ".000000"),
        "OS-SRV-USG:terminated_at": "",
        "OS-EXT-SRV-ATTR:hostname": s.name,
        "os-extended-volumes:volumes_attached": [],
    }


def _whole(value: str | None, *, what: str, low: int, high: int | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or int(value) < low or (
            high is not None and int(value) > high):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise EcsProblem(400, "Ecs.0005", f"{what} must be a whole number {bound}")
    return int(value)


def list_servers(fleet: Fleet, query: Mapping[str, str], where: Where) -> dict[str, Any]:
    limit = _whole(query.get("limit"), what="limit", low=1, high=MAX_LIMIT) or DEFAULT_LIMIT
    page = _whole(query.get("offset"), what="offset", low=0, high=None) or 1
    servers = fleet.all()
    wanted = query.get("server_id")
    if wanted:
        ids = {i.strip() for i in wanted.split(",") if i.strip()}
        servers = [s for s in servers if s.id in ids]
    else:
        name, status = query.get("name"), query.get("status")
        if name:
            servers = [s for s in servers if name in s.name]
        if status:
            servers = [s for s in servers if s.status == status.upper()]
    start = (page - 1) * limit
    chosen = servers[start:start + limit]
    return {"count": len(servers), "servers": [server_detail(s, where) for s in chosen]}
