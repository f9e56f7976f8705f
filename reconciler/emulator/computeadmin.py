"""The admin path's ECS part: servers, their key timelines, and the binding task settings.

What a test or a demo sets up without signing. Unsigned, loopback only, like the rest of
``/_emulator/``. Nothing here shows a private key: servers hold public keys only.

=================================================================  ===========================
``GET  /_emulator/binding``                                        the task settings
``POST /_emulator/binding`` ``{task_seconds?, failure_rate?, seed?}``  changed settings
``GET  …/projects/{pid}/servers``                                  every server (summaries)
``POST …/projects/{pid}/servers``                                  a new server (201), below
``GET  …/projects/{pid}/servers/{id}``                             one server
``POST …/projects/{pid}/servers/{id}`` ``{status?, ssh_port_open?}``  started, stopped, port
``DELETE …/projects/{pid}/servers/{id}``                           gone (its tasks then fail)
``GET  …/projects/{pid}/servers/{id}/keys``                        the accepted-keys timeline
=================================================================  ===========================

A new server: ``{"name", "status": "running"|"stopped", "image": "public"|"private",
"ssh_port_open": bool (true), "ssh_port": int (22), "key_name": str (optional: a key pair
of the project, whose public key the server then accepts)}``.

May import: ``reconciler.emulator.{compute,fleet,store,handlers,jsonbody}``, the standard
library.
"""

from __future__ import annotations

from typing import Any

from reconciler.emulator.compute import Compute
from reconciler.emulator.fleet import (
    PRIVATE_IMAGE,
    PUBLIC_IMAGE,
    RUNNING,
    STOPPED,
    FleetProblem,
    KeyEvent,
    Server,
)
from reconciler.emulator.handlers import Reply
from reconciler.emulator.jsonbody import BodyError, admin_object
from reconciler.emulator.store import Store

SERVER_FIELDS = ("name", "status", "image", "ssh_port_open", "ssh_port", "key_name")
CHANGE_FIELDS = ("status", "ssh_port_open")
BINDING_FIELDS = ("task_seconds", "failure_rate", "seed")
_STATUSES = {"running": RUNNING, "stopped": STOPPED}
_IMAGES = {"public": PUBLIC_IMAGE, "private": PRIVATE_IMAGE}


def server_summary(s: Server) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "status": "running" if s.running else "stopped",
            "image": "private" if s.image_type == PRIVATE_IMAGE else "public",
            "ssh_port_open": s.ssh_port_open, "ssh_port": s.ssh_port,
            "key_name": s.key_name, "fingerprint": s.fingerprint,
            "password_login": s.password_login}


def _event(e: KeyEvent) -> dict[str, Any]:
    return {"at_ms": e.at_ms, "key_name": e.key_name, "public_key": e.public_key,
            "fingerprint": e.fingerprint, "cause": e.cause}


def binding_settings(compute: Compute) -> dict[str, Any]:
    s = compute.settings
    return {"task_seconds": s.task_seconds, "failure_rate": s.failure_rate}


def handle_binding_admin(compute: Compute, method: str, body: bytes) -> Reply:
    """``/_emulator/binding``."""
    if method == "GET":
        return Reply(200, binding_settings(compute))
    if method != "POST":
        return Reply(405, {"error": "use GET or POST"})
    try:
        doc = admin_object(body, BINDING_FIELDS)
        seed = doc.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be a whole number")
        compute.configure(task_seconds=doc.get("task_seconds"),
                          failure_rate=doc.get("failure_rate"), seed=seed)
    except ValueError as exc:  # BodyError is one
        return Reply(400, {"error": str(exc)})
    return Reply(200, binding_settings(compute))


def _choice(doc: dict[str, Any], key: str, table: dict[str, str], default: str) -> str:
    value = doc.get(key, default)
    if value not in table:
        raise FleetProblem(f"{key} must be one of {', '.join(table)}")
    return table[value]


def _flag(doc: dict[str, Any], key: str, default: bool | None) -> bool | None:
    value = doc.get(key, default)
    if value is not None and not isinstance(value, bool):
        raise FleetProblem(f"{key} must be true or false")
    return value


def _create(compute: Compute, project_id: str, body: bytes, store: Store) -> Reply:
    doc = admin_object(body, SERVER_FIELDS)
    name = doc.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        raise FleetProblem("name must be a string of 1 to 64 characters")
    port = doc.get("ssh_port", 22)
    if isinstance(port, bool) or not isinstance(port, int):
        raise FleetProblem("ssh_port must be a port number from 1 to 65535")
    key_name = doc.get("key_name")
    public_key = fingerprint = None
    if key_name is not None:
        record = store.get(key_name) if isinstance(key_name, str) else None
        if record is None:
            raise FleetProblem(f"key_name: the project has no key pair {key_name!r}; "
                               "create it first")
        public_key, fingerprint = record.public_key, record.fingerprint
    server = compute.fleet(project_id).add(
        name=name, status=_choice(doc, "status", _STATUSES, "running"),
        image_type=_choice(doc, "image", _IMAGES, "public"),
        ssh_port_open=bool(_flag(doc, "ssh_port_open", True)), ssh_port=port,
        at_ms=int(compute.now() * 1000), key_name=key_name, public_key=public_key,
        fingerprint=fingerprint)
    return Reply(201, server_summary(server))


def handle_compute_admin(compute: Compute, method: str, project_id: str, rest: list[str],
                         body: bytes, *, store: Store) -> Reply:
    """One admin call under ``/_emulator/projects/{project_id}/``; ``rest`` starts with
    ``servers``."""
    try:
        fleet = compute.fleet(project_id)
        if rest == ["servers"] and method == "GET":
            return Reply(200, {"servers": [server_summary(s) for s in fleet.all()]})
        if rest == ["servers"] and method == "POST":
            return _create(compute, project_id, body, store)
        server = fleet.get(rest[1]) if len(rest) in (2, 3) else None
        if server is None:
            return Reply(404, {"error": f"no server {'/'.join(rest[1:2])} in project "
                                        f"{project_id}: make one with POST …/servers"})
        if len(rest) == 2 and method == "GET":
            return Reply(200, server_summary(server))
        if len(rest) == 2 and method == "POST":
            doc = admin_object(body, CHANGE_FIELDS)
            status = _choice(doc, "status", _STATUSES, "running" if server.running
                             else "stopped")
            changed = fleet.change(server.id, at_ms=int(compute.now() * 1000),
                                   status=status,
                                   ssh_port_open=_flag(doc, "ssh_port_open", None))
            return Reply(200, server_summary(changed))
        if len(rest) == 2 and method == "DELETE":
            fleet.remove(server.id)
            return Reply(200, {"deleted": server.id})
        if rest[2:] == ["keys"] and method == "GET":
            events = fleet.timeline(server.id) or []
            return Reply(200, {"server_id": server.id, "timeline": [_event(e) for e in events]})
    except (FleetProblem, BodyError) as exc:
        return Reply(400, {"error": str(exc)})
    return Reply(404, {"error": f"no admin operation {method} /_emulator/projects/"
                                f"{project_id}/{'/'.join(rest)}"})
