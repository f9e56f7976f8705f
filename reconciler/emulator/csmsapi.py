"""CSMS's ``/v1/{project_id}/secrets…`` operations over one project's ``Vault``.

Operation names (also the counter names): ``csms_create_secret``, ``csms_list_secrets``,
``csms_show_secret``, ``csms_delete_secret``, ``csms_create_version``,
``csms_list_versions``, ``csms_show_version``, ``csms_show_stage``, ``csms_update_stage``,
``csms_schedule_deletion``, ``csms_restore``. Bodies and answers are those of the official
SDK's models (``huaweicloudsdkcsms.v1``); ``docs/kms-csms.md`` lists them. Errors are
``CsmsProblem``. Only ``csms_show_version`` answers a secret value.

May import: ``reconciler.emulator.{csms,kms}``, the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.emulator.csms import (
    CsmsProblem,
    StoredSecret,
    Vault,
    Version,
    check_name,
    recovery_days,
)
from reconciler.emulator.kms import KmsProblem, int_text

MAX_PAGE = 200
DEFAULT_PAGE = 50
_TASKS = {"create": "csms_schedule_deletion", "cancel": "csms_restore"}
OPERATIONS = ("csms_create_secret", "csms_list_secrets", "csms_show_secret",
              "csms_update_secret", "csms_delete_secret", "csms_create_version",
              "csms_list_versions", "csms_show_version", "csms_show_stage", "csms_update_stage",
              "csms_schedule_deletion", "csms_restore")
WRITE_OPERATIONS = frozenset({"csms_create_secret", "csms_update_secret", "csms_delete_secret",
                              "csms_create_version", "csms_update_stage",
                              "csms_schedule_deletion", "csms_restore"})


def route(method: str, rest: list[str]) -> tuple[str, tuple[str, ...]] | None:
    """(operation, path arguments) of ``/v1/{project_id}/<rest>``; None for an unknown
    path; a 405 ``CsmsProblem`` for a known path and another method."""
    if not rest or rest[0] != "secrets":
        return None
    args = tuple(rest[1:])
    ops: dict[str, str]
    if not args:
        ops = {"POST": "csms_create_secret", "GET": "csms_list_secrets"}
    elif len(args) == 1:
        ops = {"GET": "csms_show_secret", "PUT": "csms_update_secret",
               "DELETE": "csms_delete_secret"}
    elif len(args) == 2 and args[1] == "versions":
        ops = {"POST": "csms_create_version", "GET": "csms_list_versions"}
    elif len(args) == 3 and args[1] == "versions":
        ops = {"GET": "csms_show_version"}
    elif len(args) == 3 and args[1] == "stages":
        ops = {"GET": "csms_show_stage", "PUT": "csms_update_stage"}
    elif len(args) == 3 and args[1] == "scheduled-deleted-tasks" and args[2] in _TASKS:
        ops = {"POST": _TASKS[args[2]]}
    else:
        return None
    if method not in ops:
        raise CsmsProblem(405, "CSMS.0003", f"method {method} is not allowed here")
    return ops[method], args


def secret_view(s: StoredSecret) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "state": s.state,
        "kms_key_id": s.kms_key_id,
        "description": s.description,
        "create_time": s.created_ms,
        "update_time": s.updated_ms,
        "scheduled_delete_time": s.scheduled_delete_ms,
        "secret_type": s.secret_type,
        "auto_rotation": False,
        "enterprise_project_id": "0",
    }


def version_metadata(s: StoredSecret, v: Version) -> dict[str, Any]:
    return {
        "id": v.id,
        "create_time": v.created_ms,
        "expire_time": v.expire_time,
        "kms_key_id": v.kms_key_id,
        "secret_name": s.name,
        "version_stages": s.stages_of(v.id),
    }


def _object(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise CsmsProblem(400, "CSMS.0004", "The requested body format is wrong: the body "
                          "must be a JSON object")
    return body


def _page(query: Mapping[str, str]) -> tuple[int, str | None]:
    try:
        limit = int_text(query.get("limit") or str(DEFAULT_PAGE), what="limit", low=1,
                         high=MAX_PAGE)
    except KmsProblem as exc:
        raise CsmsProblem(400, "CSMS.0002", exc.message) from None
    return limit, query.get("marker") or None


def _page_info(names: list[str], more: bool, marker: str | None) -> dict[str, Any]:
    return {"next_marker": names[-1] if more and names else None,
            "previous_marker": marker, "current_count": len(names)}


class CsmsApi:
    """The CSMS operations over one project's vault: (status, body) per call."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def handle(self, operation: str, args: tuple[str, ...], *, body: Any,
               query: Mapping[str, str]) -> tuple[int, dict[str, Any] | None]:
        doc = _object(body)
        name = check_name(args[0]) if args else ""
        if operation == "csms_create_secret":
            return 200, {"secret": secret_view(self.vault.create(doc))}
        if operation == "csms_list_secrets":
            return 200, self._list_secrets(query)
        if operation == "csms_show_secret":
            return 200, {"secret": secret_view(self.vault.get(name))}
        if operation == "csms_update_secret":
            return 200, {"secret": secret_view(self.vault.update(name, doc))}
        if operation == "csms_delete_secret":
            self.vault.delete(name)
            return 204, None
        if operation == "csms_create_version":
            secret, version = self.vault.add_version(name, doc)
            return 200, {"version_metadata": version_metadata(secret, version)}
        if operation == "csms_list_versions":
            return 200, self._list_versions(name, query)
        if operation == "csms_show_version":
            secret, version, value = self.vault.read(name, args[2])
            return 200, {"version": {"version_metadata": version_metadata(secret, version),
                                     version.kind: value}}
        if operation in ("csms_show_stage", "csms_update_stage"):
            return 200, self._stage(operation, name, args[2], doc)
        if operation == "csms_schedule_deletion":
            days = recovery_days(doc.get("recovery_window_in_days"))
            return 200, {"secret": secret_view(self.vault.schedule_deletion(name, days))}
        return 200, {"secret": secret_view(self.vault.restore(name))}

    def _stage(self, operation: str, name: str, stage: str,
               doc: Mapping[str, Any]) -> dict[str, Any]:
        if operation == "csms_update_stage":
            version_id = doc.get("version_id")
            if not isinstance(version_id, str) or not version_id:
                raise CsmsProblem(400, "CSMS.0002", "version_id must be a version id")
            self.vault.move_stage(name, stage, version_id)
        secret, version_id, updated = self.vault.stage(name, stage)
        return {"stage": {"name": stage, "update_time": updated, "secret_name": secret.name,
                          "version_id": version_id}}

    def _list_secrets(self, query: Mapping[str, str]) -> dict[str, Any]:
        limit, marker = _page(query)
        items = [s for s in self.vault.all() if marker is None or s.name > marker]
        page = items[:limit]
        return {"secrets": [secret_view(s) for s in page],
                "page_info": _page_info([s.name for s in page], len(items) > limit, marker)}

    def _list_versions(self, name: str, query: Mapping[str, str]) -> dict[str, Any]:
        limit, marker = _page(query)
        secret = self.vault.get(name)
        versions = list(secret.versions)
        if marker is not None:
            ids = [v.id for v in versions]
            if marker not in ids:
                raise CsmsProblem(400, "CSMS.0002", f"marker {marker} is not a version of "
                                  f"{name}")
            versions = versions[ids.index(marker) + 1:]
        page = versions[:limit]
        return {"version_metadatas": [version_metadata(secret, v) for v in page],
                "page_info": _page_info([v.id for v in page], len(versions) > limit, marker)}
