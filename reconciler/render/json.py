"""The JSON plan, shaped like Terraform's so that tools reading that format work.

The same document is what ``plan --out FILE`` saves and ``apply FILE`` reads back
(``reconciler.planfile``). It never holds a private key, not even encrypted.

May import: ``reconciler.plan``, ``reconciler.model``, ``reconciler.attributes``,
``reconciler.configuration``, ``reconciler.address``.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler import __version__
from reconciler.address import Address
from reconciler.configuration import desired_to_dict
from reconciler.plan import Action, Change, Drift, DriftKind, Plan

FORMAT_VERSION = "1.2"
PLAN_KIND = "reconciler-plan"
PLAN_VERSION = 2  # 2: the whole configuration, --replace and the clock; see planfile

_ACTIONS = {
    Action.CREATE: ["create"],
    Action.IMPORT: ["no-op"],
    Action.UPDATE: ["update"],
    Action.REPLACE: ["delete", "create"],
    Action.DELETE: ["delete"],
    Action.FORGET: ["forget"],
    Action.NOOP: ["no-op"],
}


def _sensitive(change: Change) -> tuple[dict[str, bool], dict[str, bool]]:
    before = {"private_key": True} if change.prior and change.prior.private_key else {}
    after = {"private_key": True} if "private_key" in change.after_unknown else {}
    return before, after


def _resource_change(change: Change) -> dict[str, Any]:
    before_sensitive, after_sensitive = _sensitive(change)
    body: dict[str, Any] = {
        "actions": _ACTIONS[change.action],
        "before": dict(change.before) if change.before is not None else None,
        "after": dict(change.after) if change.after is not None else None,
        "after_unknown": {k: True for k in change.after_unknown},
        "before_sensitive": before_sensitive,
        "after_sensitive": after_sensitive,
    }
    if change.replace_paths:
        body["replace_paths"] = [[p] for p in change.replace_paths]
    if change.action is Action.IMPORT:
        body["importing"] = {"id": change.name}
    out: dict[str, Any] = {
        "address": str(change.address),
        "mode": "managed",
        "type": change.address.kind,
        "name": change.name,
        **_index(change.address),
        "provider_name": "reconciler/huaweicloud",
        "change": body,
    }
    if change.reason:
        out["action_reason"] = change.reason
    return out


def _index(address: Address) -> dict[str, str]:
    """Terraform's instance key: the target, when addresses show it."""
    return {"index": address.target} if address.qualified else {}


def _drift(d: Drift) -> dict[str, Any]:
    return {
        "address": str(d.address),
        "mode": "managed",
        "type": d.address.kind,
        "name": d.name,
        **_index(d.address),
        "change": {
            "actions": ["delete"] if d.kind is DriftKind.DELETED else ["update"],
            "before": dict(d.before),
            "after": dict(d.after) if d.after is not None else None,
        },
    }


def plan_document(plan: Plan) -> dict[str, Any]:
    """The plan as a JSON-able document (Terraform JSON plan shape, plus reconciler's own)."""
    c = plan.counts()
    return {
        "format_version": FORMAT_VERSION,
        "kind": PLAN_KIND,
        "plan_version": PLAN_VERSION,
        "reconciler_version": __version__,
        "applyable": plan.has_changes,
        "errored": False,
        "prior_state": {"lineage": plan.lineage, "serial": plan.serial},
        "manifest_digest": plan.manifest_digest,
        "resource_drift": [_drift(d) for d in plan.drift],
        "resource_changes": [_resource_change(ch) for ch in plan.changes],
        "summary": {"import": c["import"], "add": c["add"], "change": c["change"],
                    "destroy": c["destroy"], "forget": c["forget"]},
        "reconciler": {
            "api": plan.api.value,
            "mode": plan.mode.value,
            # False: the state was read without the key, its integrity MAC unchecked.
            "state_verified": plan.state_verified,
            "targets": list(plan.targets),
            "forget": [a.label for a in plan.forget],
            "lifecycle": [[a.label, protect] for a, protect in plan.lifecycle],
            "replace": list(plan.replace),
            **({"moved": [[str(old), str(new)] for old, new in plan.moved]}
               if plan.moved else {}),
            **({"unreachable_targets": [{"target": t, "error": why}
                                        for t, why in plan.unreachable]}
               if plan.unreachable else {}),
            "planned_at": plan.planned_at,
            # Every desired key pair: apply makes the plan again from these and compares.
            "configuration": {d.name: desired_to_dict(d) for d in plan.configuration},
            # What the plan assumed of the cloud, so a saved plan can tell it is stale.
            "remote": {
                **{d.name: (d.after or {}).get("fingerprint") for d in plan.drift},
                **{ch.name: (ch.remote.fingerprint if ch.remote else None)
                   for ch in plan.changes if ch.action is not Action.NOOP},
            },
        },
    }


def render_json(plan: Plan) -> str:
    return json.dumps(plan_document(plan), indent=2, sort_keys=False) + "\n"
