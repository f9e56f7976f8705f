"""The admin path's KMS and CSMS part: ``/_emulator/projects/{project_id}/kms|csms/…``.

What a test or a demo sets up without signing: KMS keys (create one, with aliases; disable,
enable, schedule and cancel its deletion) and a look at the secrets (names, states, versions
and stages; never a value, never a key's secret). Unsigned, loopback only, like the rest of
``/_emulator/``.

==========================================================  ===================================
``GET  …/kms/keys``                                         every key (``key_details`` shape)
``POST …/kms/keys`` ``{key_alias, description?, aliases?}``  a new enabled key (201)
``POST …/kms/keys/{key_id}/disable|enable|cancel-deletion``  the key afterwards
``POST …/kms/keys/{key_id}/schedule-deletion``               ``{pending_days?}`` (7 by default)
``POST …/kms/aliases`` ``{alias, key_id}``                   the alias (201)
``GET  …/csms/secrets``                                     names, states, versions, stages
==========================================================  ===================================

May import: ``reconciler.emulator.{dew,kms,kmsapi,csms,handlers,jsonbody}``, the standard
library.
"""

from __future__ import annotations

from typing import Any

from reconciler.emulator.csms import StoredSecret
from reconciler.emulator.dew import Dew
from reconciler.emulator.handlers import Reply
from reconciler.emulator.jsonbody import BodyError, admin_object
from reconciler.emulator.kms import MIN_PENDING_DAYS, KmsProblem
from reconciler.emulator.kmsapi import Where, alias_entity, key_details

KEY_FIELDS = ("key_alias", "description", "aliases")
ALIAS_FIELDS = ("alias", "key_id")
DELETION_FIELDS = ("pending_days",)


def _secret_summary(s: StoredSecret) -> dict[str, Any]:
    return {"name": s.name, "state": s.state, "kms_key_id": s.kms_key_id,
            "versions": [{"id": v.id, "stages": s.stages_of(v.id)} for v in s.versions]}


def handle_dew_admin(dew: Dew, method: str, project_id: str, rest: list[str], body: bytes,
                     *, where: Where) -> Reply:
    """One admin call under ``/_emulator/projects/{project_id}/``; ``rest`` starts with
    ``kms`` or ``csms``."""
    ring = dew.keys(project_id)
    try:
        if rest == ["kms", "keys"] and method == "GET":
            return Reply(200, {"keys": [key_details(k, where) for k in ring.all()]})
        if rest == ["kms", "keys"] and method == "POST":
            doc = admin_object(body, KEY_FIELDS)
            key = ring.create(key_alias=doc.get("key_alias"),
                              description=doc.get("description") or "")
            aliases = doc.get("aliases") or []
            if not isinstance(aliases, list):
                raise BodyError("aliases must be a list of alias names")
            for alias in aliases:
                ring.add_alias(alias, key.key_id)
            details = key_details(key, where)
            return Reply(201, {**details, "aliases": ring.aliases_of(key.key_id)})
        if rest == ["kms", "aliases"] and method == "POST":
            doc = admin_object(body, ALIAS_FIELDS)
            entry = ring.add_alias(doc.get("alias"), doc.get("key_id"))
            return Reply(201, alias_entity(entry, where))
        if len(rest) == 4 and rest[:2] == ["kms", "keys"] and method == "POST":
            return _key_action(dew, project_id, rest[2], rest[3], body, where=where)
        if rest == ["csms", "secrets"] and method == "GET":
            secrets = dew.vault(project_id).all()
            return Reply(200, {"secrets": [_secret_summary(s) for s in secrets]})
    except KmsProblem as exc:
        return Reply(exc.status, {"error": exc.message, "code": exc.code})
    except BodyError as exc:
        return Reply(400, {"error": str(exc)})
    return Reply(404, {"error": f"no admin operation {method} /_emulator/projects/"
                                f"{project_id}/{'/'.join(rest)}"})


def _key_action(dew: Dew, project_id: str, key_id: str, action: str, body: bytes, *,
                where: Where) -> Reply:
    ring = dew.keys(project_id)
    if action == "disable":
        key = ring.disable(key_id)
    elif action == "enable":
        key = ring.enable(key_id)
    elif action == "cancel-deletion":
        key = ring.cancel_deletion(key_id)
    elif action == "schedule-deletion":
        doc = admin_object(body, DELETION_FIELDS)
        key = ring.schedule_deletion(key_id, doc.get("pending_days", MIN_PENDING_DAYS))
    else:
        return Reply(404, {"error": f"no key action {action}: use disable, enable, "
                                    "schedule-deletion or cancel-deletion"})
    return Reply(200, key_details(key, where))
