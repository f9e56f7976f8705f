"""Saved plans: the JSON plan document read back into a ``Plan`` for ``apply PLANFILE``.

A saved plan is applied only while it is still true: the state's lineage and serial must be
those it was made from, and every key pair it changes must look in the cloud as it did then.
Otherwise it is refused ("Saved plan is stale") and nothing is changed.

May import: ``reconciler.plan``, ``reconciler.model``, ``reconciler.errors``,
``reconciler.attributes``, ``reconciler.render.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reconciler.attributes import desired_attributes, recorded_attributes
from reconciler.errors import StaleStateError, UsageError
from reconciler.model import (
    Api,
    DesiredKeyPair,
    Encryption,
    KeyProtection,
    KeySource,
    RemoteSnapshot,
    SourceLocation,
    State,
)
from reconciler.plan import Action, Change, Drift, DriftKind, Mode, Plan
from reconciler.render.json import PLAN_KIND, PLAN_VERSION

MAX_PLAN_BYTES = 256 * 1024 * 1024


def is_plan_file(path: Path) -> bool:
    """True when ``path`` is a saved plan (a JSON file of our kind), not a manifest."""
    if not path.is_file() or path.suffix.lower() in (".yaml", ".yml"):
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return b'"kind": "reconciler-plan"' in head or b'"kind":"reconciler-plan"' in head


def read_plan_document(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_PLAN_BYTES:
            raise UsageError(f"{path}: too large to be a saved plan")
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a readable saved plan ({type(exc).__name__}); "
                         "make a new one with `reconciler plan --out FILE`") from None
    if not isinstance(doc, dict) or doc.get("kind") != PLAN_KIND:
        raise UsageError(f"{path}: not a reconciler saved plan")
    if doc.get("plan_version") != PLAN_VERSION:
        raise UsageError(f"{path}: saved plan version {doc.get('plan_version')!r} is not "
                         f"supported (expected {PLAN_VERSION}); plan again")
    return doc


def _desired(raw: dict[str, Any]) -> DesiredKeyPair:
    kp = raw.get("key_protection")
    protection = None
    if kp:
        protection = KeyProtection(encryption=Encryption(**kp["encryption"]),
                                   private_key_file=kp.get("private_key_file"))
    file, line, col = raw.get("location") or ["<saved plan>", 0, 0]
    return DesiredKeyPair(
        name=raw["name"], source=KeySource(raw["source"]),
        location=SourceLocation(str(file), int(line), int(col)),
        spec_digest=raw["spec_digest"], algorithm=raw.get("algorithm"),
        public_key=raw.get("public_key"), public_key_file=raw.get("public_key_file"),
        type=raw.get("type", "ssh"), user_id=raw.get("user_id"),
        description=raw.get("description"), scope=raw.get("scope"),
        key_protection=protection, prevent_destroy=bool(raw.get("prevent_destroy")),
        rotate_after_seconds=raw.get("rotate_after_seconds"),
    )


def _action(rc: dict[str, Any]) -> Action:
    actions = rc["change"]["actions"]
    if actions == ["no-op"]:
        return Action.IMPORT if rc["change"].get("importing") else Action.NOOP
    return {("create",): Action.CREATE, ("update",): Action.UPDATE,
            ("delete", "create"): Action.REPLACE, ("delete",): Action.DELETE,
            ("forget",): Action.FORGET}[tuple(actions)]


def check_fresh(doc: dict[str, Any], state: State, remote: RemoteSnapshot) -> None:
    """Refuse a saved plan that no longer matches state or cloud."""
    prior = doc.get("prior_state") or {}
    never_written = prior.get("serial") == 0 and state.serial == 0 and not state.keypairs
    if not never_written and (prior.get("lineage") != state.lineage
                              or prior.get("serial") != state.serial):
        raise StaleStateError(
            "Saved plan is stale: the state changed since this plan was made "
            f"(plan: lineage {prior.get('lineage')}, serial {prior.get('serial')}; "
            f"state: lineage {state.lineage}, serial {state.serial}). "
            "Nothing was changed; run `reconciler plan --out FILE` again."
        )
    try:
        assumed = dict(doc["reconciler"]["remote"])
    except (KeyError, TypeError, ValueError):
        raise UsageError("the saved plan is damaged; make a new one with "
                         "`reconciler plan --out FILE`") from None
    moved = []
    for name, fingerprint in sorted(assumed.items()):
        now = remote.keypairs.get(name)
        if (now.fingerprint if now else None) != fingerprint:
            moved.append(name)
    if moved:
        raise StaleStateError(
            "Saved plan is stale: these key pairs changed in the cloud since the plan was made: "
            f"{', '.join(moved)}. Nothing was changed; run `reconciler plan --out FILE` again."
        )


def load_plan(doc: dict[str, Any], *, state: State, remote: RemoteSnapshot) -> Plan:
    """Rebuild the plan from its document, against the (unchanged) state and cloud.

    Raises ``StaleStateError`` for a stale plan and ``UsageError`` for a damaged document.
    """
    check_fresh(doc, state, remote)
    try:
        return _rebuild(doc, state=state, remote=remote)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        raise UsageError("the saved plan is damaged or was not made by this version of "
                         "reconciler; make a new one with `reconciler plan --out FILE`") from None


def _rebuild(doc: dict[str, Any], *, state: State, remote: RemoteSnapshot) -> Plan:
    rec = doc["reconciler"]
    configuration = rec.get("configuration", {})
    lifecycle = tuple((str(n), bool(p)) for n, p in rec.get("lifecycle", []))
    recorded_only = {name for name, _ in lifecycle}  # no-ops whose state entry apply updates
    changes = []
    for rc in doc["resource_changes"]:
        action = _action(rc)
        if action is Action.NOOP and rc["name"] not in recorded_only:
            continue
        name = rc["name"]
        desired = _desired(configuration[name]) if name in configuration else None
        prior = state.keypairs.get(name)
        changes.append(Change(
            name=name, action=action,
            before=recorded_attributes(prior) if prior else rc["change"].get("before"),
            after=desired_attributes(desired) if desired else None,
            after_unknown=tuple(rc["change"].get("after_unknown", {})),
            replace_paths=tuple(p[0] for p in rc["change"].get("replace_paths", [])),
            reason=rc.get("action_reason"),
            desired=desired, prior=prior, remote=remote.keypairs.get(name),
        ))
    drift = tuple(
        Drift(name=d["name"],
              kind=DriftKind.DELETED if d["change"]["actions"] == ["delete"] else DriftKind.CHANGED,
              before=d["change"]["before"], after=d["change"]["after"])
        for d in doc.get("resource_drift", []))
    return Plan(
        changes=tuple(changes), api=Api(rec["api"]), lineage=state.lineage,
        serial=state.serial, manifest_digest=doc.get("manifest_digest", ""),
        mode=Mode(rec.get("mode", "normal")), drift=drift,
        forget=tuple(rec.get("forget", [])),
        lifecycle=lifecycle,
        targets=tuple(rec.get("targets", [])),
    )
