"""The saved-plan format: the JSON plan document, shaped like Terraform's JSON plan.

``reconciler.planfile`` owns this format: ``plan --out FILE`` writes this document (with where
it applies: ``saved_plan_document``), ``apply FILE`` reads it back and compares it with the
plan made again, and ``plan --format json`` shows the same document
(``reconciler.render.json``). Tools reading Terraform's format (``format_version``,
``resource_changes``, ``resource_drift``, ``prior_state``) read it; what is reconciler's own
is under ``reconciler`` (the configuration, the options, the clock, what the plan assumed of
the cloud). It never holds a private key, not even encrypted.

A plan of several targets (``Plan.several``) is version 3: its configuration records say
which targets each key pair lists, what it assumed of the cloud is keyed by address, it
records ``--in`` and ``--forget-target``, and saved (``saved_targets_document``) it holds
every target's connection (``connections``: name, role, API, endpoint, region, project and
the name of its credential source, never a secret) instead of one ``provider`` block. A plan
of one target is version 2, as it always was (its provider block names a
``custody_endpoint`` only when the run's was not the one derived from its endpoint).

May import: ``reconciler.plan``, ``reconciler.model``, ``reconciler.configuration``,
``reconciler.address``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler import __version__
from reconciler.address import Address
from reconciler.configuration import desired_to_dict, import_to_dict
from reconciler.model import Api, S3Location, TargetConnection
from reconciler.plan import Action, Change, Drift, DriftKind, Plan

FORMAT_VERSION = "1.2"
PLAN_KIND = "reconciler-plan"
PLAN_VERSION = 2  # 2: the whole configuration, --replace and the clock; see planfile
TARGETS_PLAN_VERSION = 3  # 3: a plan of several targets, each target's connection
ROLES = ("declared", "removed")  # a target of the manifests, or one only state holds

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
    if change.action is Action.IMPORT or change.importing:  # Terraform's import (1.5+)
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


def _custody_seen(plan: Plan) -> dict[str, bool]:
    """Whether the cloud kept the private key, as the plan saw it, of each key pair whose
    drift or in-place change is about custody (and whose list said): a saved plan is stale
    when that moved."""
    seen = {ch.address.label: ch.remote.key_protection for ch in plan.changes
            if ch.action is Action.UPDATE and ch.remote is not None
            and ch.remote.key_protection is not None
            and (ch.after or {}).get("key_protection") != (ch.before or {}).get("key_protection")}
    seen.update({d.address.label: (d.after or {}).get("key_protection") is not None
                 for d in plan.drift if d.kind is DriftKind.CUSTODY})
    return {name: bool(flag) for name, flag in seen.items()}


def plan_document(plan: Plan) -> dict[str, Any]:
    """The plan as a JSON-able document (Terraform JSON plan shape, plus reconciler's own)."""
    c = plan.counts()
    several = plan.several
    return {
        "format_version": FORMAT_VERSION,
        "kind": PLAN_KIND,
        "plan_version": TARGETS_PLAN_VERSION if several else PLAN_VERSION,
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
            **({"in": list(plan.within), "forget_targets": list(plan.forget_targets)}
               if several else {}),
            "planned_at": plan.planned_at,
            # Every desired key pair: apply makes the plan again from these and compares.
            "configuration": {d.name: desired_to_dict(d, placement=several)
                              for d in plan.configuration},
            # The import: lists (only when there are any), made again with the configuration.
            **({"imports": [import_to_dict(i) for i in plan.imports]} if plan.imports else {}),
            # What the plan assumed of the cloud, so a saved plan can tell it is stale (by
            # name with one target, by address with several).
            "remote": {
                **{d.address.label: (d.after or {}).get("fingerprint") for d in plan.drift},
                **{ch.address.label: (ch.remote.fingerprint if ch.remote else None)
                   for ch in plan.changes if ch.action is not Action.NOOP},
            },
            **({"custody": custody} if (custody := _custody_seen(plan)) else {}),
        },
    }


def backend_document(backend: S3Location | None) -> dict[str, Any] | None:
    """Where the state of a saved plan lives, as the file records it (None: a local file)."""
    if backend is None:
        return None
    return {"bucket": backend.bucket, "key": backend.key, "endpoint": backend.endpoint,
            "region": backend.region}


def saved_plan_document(plan: Plan, *, api: Api, endpoint: str, region: str | None,
                        project_id: str, backend: S3Location | None,
                        custody: str | None = None) -> dict[str, Any]:
    """The document ``plan --out FILE`` saves: the JSON plan, plus where it applies (the
    cloud and the state backend; never a credential); with ``custody_endpoint`` only when
    the run named where custody calls go and that is not where they would go from
    ``endpoint`` alone (a target's ``endpoints.kms``)."""
    doc = plan_document(plan)
    doc["reconciler"]["provider"] = {"api": api.value, "endpoint": endpoint, "region": region,
                                     "project_id": project_id,
                                     **({"custody_endpoint": custody} if custody else {})}
    doc["reconciler"]["backend"] = backend_document(backend)
    return doc


def connection_document(target: str, role: str, c: TargetConnection,
                        custody: str | None = None) -> dict[str, Any]:
    """One target's entry of a saved plan's ``connections`` (never a secret); with
    ``custody_endpoint`` when its custody calls go elsewhere than its endpoint (v2.1)."""
    return {"target": target, "role": role, "api": c.api, "endpoint": c.endpoint,
            "region": c.region, "project_id": c.project_id, "credentials": c.credentials,
            **({"custody_endpoint": custody} if custody is not None else {})}


def saved_targets_document(plan: Plan, *,
                           connections: Sequence[tuple[str, str, TargetConnection, str | None]],
                           backend: S3Location | None) -> dict[str, Any]:
    """The document ``plan --out FILE`` saves for a plan of several targets: the JSON plan,
    every target's connection (``(target, role, connection, custody endpoint)``, role one of
    ``ROLES``, in the run's order) and the state backend."""
    doc = plan_document(plan)
    doc["reconciler"]["connections"] = [connection_document(t, role, c, custody)
                                        for t, role, c, custody in connections]
    doc["reconciler"]["backend"] = backend_document(backend)
    return doc
