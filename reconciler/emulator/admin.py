"""The emulator's admin path ``/_emulator/…``: no signature, loopback clients only.

Counters (in total and per project), reset, faults, key pair names and fingerprints, the
projects (add one, make one unreachable and reachable again), identity providers, agencies
and the IAM clock; a project's KMS keys and CSMS secrets (``dewadmin``); a project's ECS
servers and the binding task settings (``computeadmin``). Nothing here shows private keys,
tokens, temporary secrets, secret values or KMS key material.

May import: ``reconciler.emulator.{handlers,jsonbody,projects,dewadmin,computeadmin,kmsapi}``,
the standard library; the ``Emulator`` type for checking only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reconciler.emulator.computeadmin import handle_binding_admin, handle_compute_admin
from reconciler.emulator.dewadmin import handle_dew_admin
from reconciler.emulator.handlers import Reply
from reconciler.emulator.jsonbody import parse_json_body
from reconciler.emulator.kmsapi import Where
from reconciler.emulator.projects import DEFAULT_REGION

if TYPE_CHECKING:
    from reconciler.emulator.server import Emulator

FAULT_FIELDS = (
    "latency_ms",
    "error_rate",
    "statuses",
    "retry_after",
    "drop_rate",
    "lost_response_rate",
    "operations",
    "seed",
)
PROJECT_FIELDS = ("project_id", "region", "domain_id")
OUTAGE_FIELDS = ("status", "retry_after")


def handle_admin(emu: Emulator, method: str, what: str, body: bytes) -> Reply:
    """One admin call; ``what`` is the path after ``/_emulator/``."""
    path = what.strip("/")
    key = (method, path)
    if key == ("GET", "counters"):
        return Reply(200, emu.counters())
    if key == ("GET", "keypairs"):
        return Reply(200, {"keypairs": emu.keypair_summaries()})
    if key == ("GET", "info"):
        info = {"endpoint": emu.endpoint, "project_id": emu.project_id, "user_id": emu.user_id,
                "region": emu.projects.default.region, "domain_id": emu.domain_id}
        return Reply(200, info)
    if key == ("POST", "reset"):
        emu.reset()
        return Reply(200, {"reset": True})
    if key == ("POST", "faults"):
        return _with_object(body, lambda doc: _faults(emu, doc))
    if key == ("GET", "iam"):
        return Reply(200, emu.iam.summary())
    if key == ("POST", "iam/providers"):
        return _with_object(body, lambda doc: Reply(201, emu.register_identity_provider(**doc)))
    if key == ("POST", "iam/settings"):
        return _with_object(body, lambda doc: Reply(200, emu.iam.configure(doc)))
    if key == ("POST", "iam/agencies"):
        return _with_object(body, lambda doc: Reply(201, emu.register_agency(**doc)))
    if path == "binding":
        return handle_binding_admin(emu.compute, method, body)
    if path == "projects" or path.startswith("projects/"):
        return _projects(emu, method, path.split("/")[1:], body)
    return Reply(404, {"error": f"no admin operation {method} /_emulator/{what}"})


def _with_object(body: bytes, act: Callable[[dict[str, Any]], Reply]) -> Reply:
    try:
        doc = parse_json_body(body) if body.strip() else {}
        if not isinstance(doc, dict):
            raise ValueError("the body must be a JSON object")
        return act(doc)
    except (ValueError, TypeError) as exc:
        return Reply(400, {"error": str(exc)})


def _unknown(doc: dict[str, Any], fields: tuple[str, ...]) -> None:
    unknown = set(doc) - set(fields)
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")


def _faults(emu: Emulator, doc: dict[str, Any]) -> Reply:
    _unknown(doc, FAULT_FIELDS)
    emu.set_faults(**doc)
    cfg = emu.faults.config
    return Reply(
        200,
        {
            "latency_ms": cfg.latency_ms,
            "error_rate": cfg.error_rate,
            "statuses": list(cfg.statuses),
            "retry_after": cfg.retry_after,
            "drop_rate": cfg.drop_rate,
            "lost_response_rate": cfg.lost_response_rate,
            "operations": sorted(cfg.operations) if cfg.operations is not None else None,
        },
    )


def _projects(emu: Emulator, method: str, rest: list[str], body: bytes) -> Reply:
    if not rest and method == "GET":
        return Reply(200, {"projects": emu.project_summaries()})
    if not rest and method == "POST":
        def add(doc: dict[str, Any]) -> Reply:
            _unknown(doc, PROJECT_FIELDS)
            emu.add_project(doc.get("project_id"), region=doc.get("region", DEFAULT_REGION),
                            domain_id=doc.get("domain_id"))
            return Reply(201, emu.project_summary(str(doc["project_id"])))
        return _with_object(body, add)
    if not rest or emu.projects.get(rest[0]) is None:
        return Reply(404, {"error": "no such project: add it with POST /_emulator/projects"})
    pid = rest[0]
    if rest[1:] == [] and method == "GET":
        return Reply(200, emu.project_summary(pid))
    if rest[1:] == ["keypairs"] and method == "GET":
        return Reply(200, {"keypairs": emu.keypair_summaries(pid)})
    if rest[1:] == ["unreachable"] and method == "POST":
        def cut(doc: dict[str, Any]) -> Reply:
            _unknown(doc, OUTAGE_FIELDS)
            emu.set_unreachable(pid, status=doc.get("status"), retry_after=doc.get("retry_after"))
            return Reply(200, emu.project_summary(pid))
        return _with_object(body, cut)
    if rest[1:2] == ["servers"]:
        project = emu.projects.get(pid)
        assert project is not None
        return handle_compute_admin(emu.compute, method, pid, rest[1:], body,
                                    store=project.store)
    if rest[1:2] in (["kms"], ["csms"]):
        project = emu.projects.get(pid)
        assert project is not None
        where = Where(domain_id=project.domain_id or emu.domain_id, region=project.region)
        return handle_dew_admin(emu.dew, method, pid, rest[1:], body, where=where)
    if rest[1:] == ["unreachable"] and method == "DELETE":
        emu.set_reachable(pid)
        return Reply(200, emu.project_summary(pid))
    return Reply(404, {"error": f"no admin operation {method} /_emulator/projects/"
                                f"{'/'.join(rest)}"})
