"""Saved plans: the JSON plan document read back, checked, and made again for ``apply PLANFILE``.

A saved plan is a contract, not a script. Apply never carries out the file's list of changes:
it takes what the file pins (the embedded configuration, whose digest must match; the state,
whose lineage and serial must be the plan's; the cloud, refreshed now, whose fingerprints must
be those the plan assumed), makes the plan again with the pure ``make_plan`` and the plan's
own options and clock, and refuses, changing nothing, unless the result is exactly the plan the
file shows. What apply then carries out is the plan made again, identical by construction.

Versions: 2 embeds every desired key pair, ``--replace`` and the clock. 1 (release 0.1.0)
embedded only the changed key pairs and a digest of another shape; its unchanged key pairs are
taken as state records them, its ``--replace`` names from the action reasons, and its clock is
the apply's.

The format itself (the document ``plan --out`` writes, which ``plan --format json`` also
shows) is built by ``reconciler.planformat``, which belongs to this module; renderers import
it, never the reverse.

May import: ``reconciler.plan``, ``reconciler.model``, ``reconciler.errors``,
``reconciler.configuration``, ``reconciler.address``, ``reconciler.planformat``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.address import DEFAULT_TARGET, is_target_name, keypair_address
from reconciler.configuration import (
    SAVED_PLAN_LOCATION,
    configuration_digest,
    desired_from_dict,
    legacy_digest,
)
from reconciler.errors import DiagnosticsError, PlanFileError, StaleStateError
from reconciler.model import (
    Api,
    DesiredKeyPair,
    KeySource,
    Manifest,
    ProviderConfig,
    RemoteSnapshot,
    S3Location,
    SourceLocation,
    State,
    TargetConfig,
)
from reconciler.plan import REASON_BY_REQUEST, Mode, Plan, PlanOptions, make_plan
from reconciler.planformat import PLAN_KIND, PLAN_VERSION, plan_document

MAX_PLAN_BYTES = 256 * 1024 * 1024
READABLE_VERSIONS = (1, PLAN_VERSION)
CLOCK_SKEW = timedelta(minutes=5)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_AGAIN = "make a new one with `reconciler plan --out FILE`"
_PROVIDER_FIELDS = ("api", "endpoint", "region", "project_id", "target")


@dataclass(frozen=True, slots=True)
class SavedPlan:
    """A saved plan, parsed and checked for shape; what it pins, typed."""

    path: Path
    version: int
    lineage: str
    serial: int
    manifest_digest: str
    # Version 2: every desired key pair. Version 1: only those it changed.
    configuration: tuple[DesiredKeyPair, ...]
    options: PlanOptions
    planned_at: datetime | None  # None for version 1
    provider: ProviderConfig
    backend: S3Location | None
    assumed: Mapping[str, str | None]  # name -> the fingerprint the plan saw in the cloud
    document: Mapping[str, object]  # the raw document, compared with the plan made again
    # name -> whether the cloud kept its private key, for custody the plan changes or saw drift
    custody: Mapping[str, bool] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when the digest covers the embedded configuration (version 2)."""
        return self.version >= 2

    def digest_of(self, manifest: Manifest) -> str:
        """The digest the given manifests would have in this plan's version."""
        return manifest.digest if self.complete else legacy_digest(manifest.keypairs)


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
            raise PlanFileError(f"{path}: too large to be a saved plan")
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PlanFileError(f"{path}: not a readable saved plan ({type(exc).__name__}); "
                            f"{_AGAIN}") from None
    if not isinstance(doc, dict) or doc.get("kind") != PLAN_KIND:
        raise PlanFileError(f"{path}: not a reconciler saved plan")
    version = doc.get("plan_version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise PlanFileError(f"{path}: saved plan version {version!r} is not supported "
                            f"(this reconciler reads {', '.join(map(str, READABLE_VERSIONS))}); "
                            "plan again")
    return doc


def read_saved_plan(path: Path) -> SavedPlan:
    """Read and check a saved plan. ``PlanFileError`` when it is damaged or its embedded
    configuration does not match its digest."""
    doc = read_plan_document(path)
    try:
        saved = _parse(path, doc)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        raise PlanFileError(f"{path}: the saved plan is damaged or was edited; {_AGAIN}") \
            from None
    if saved.complete and configuration_digest(saved.configuration) != saved.manifest_digest:
        raise PlanFileError(
            f"{path}: the configuration embedded in the saved plan does not match its "
            f"manifest_digest {saved.manifest_digest}: the file was edited. Nothing was "
            f"changed; {_AGAIN}")
    return saved


def _strings(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ValueError("not a list of strings")
    return tuple(raw)


def _optional_text(raw: Mapping[str, object], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value


def _parse(path: Path, doc: dict[str, Any]) -> SavedPlan:
    version = int(doc["plan_version"])
    prior, rec = doc["prior_state"], doc["reconciler"]
    lineage, serial = prior["lineage"], prior["serial"]
    if not isinstance(lineage, str) or type(serial) is not int or serial < 0:
        raise ValueError("prior_state")
    digest = doc["manifest_digest"]
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise ValueError("manifest_digest")
    configuration = rec["configuration"]
    if not isinstance(configuration, dict):
        raise ValueError("configuration")
    desired = tuple(desired_from_dict(name, raw) for name, raw in sorted(configuration.items()))
    mode = Mode(rec.get("mode", "normal"))
    if version >= 2:
        replace = _strings(rec["replace"])
        planned_at: datetime | None = datetime.fromisoformat(rec["planned_at"])
        if planned_at is not None and planned_at.tzinfo is None:
            raise ValueError("planned_at has no time zone")
    else:
        replace = tuple(sorted(rc["name"] for rc in doc["resource_changes"]
                               if rc.get("action_reason") == REASON_BY_REQUEST))
        planned_at = None
    options = PlanOptions(mode=mode, targets=_strings(rec.get("targets", [])), replace=replace)
    assumed = rec["remote"]
    if not isinstance(assumed, dict) or not all(
            v is None or isinstance(v, str) for v in assumed.values()):
        raise ValueError("remote")
    custody = rec.get("custody", {})
    if not isinstance(custody, dict) or not all(isinstance(v, bool) for v in custody.values()):
        raise ValueError("custody")
    return SavedPlan(
        path=path, version=version, lineage=lineage, serial=serial, manifest_digest=digest,
        configuration=desired, options=options, planned_at=planned_at,
        provider=_provider(rec["provider"]), backend=_backend(rec.get("backend")),
        assumed=dict(assumed), document=doc, custody=dict(custody),
    )


def _provider(raw: object) -> ProviderConfig:
    if not isinstance(raw, dict) or set(raw) - set(_PROVIDER_FIELDS):
        raise ValueError("provider")
    api = _optional_text(raw, "api")
    return ProviderConfig(region=_optional_text(raw, "region"),
                          project_id=_optional_text(raw, "project_id"),
                          api=Api(api) if api else None,
                          endpoint=_optional_text(raw, "endpoint"))


def _backend(raw: object) -> S3Location | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError("backend")
    bucket, key = raw["bucket"], raw["key"]
    if not isinstance(bucket, str) or not isinstance(key, str):
        raise ValueError("backend")
    return S3Location(bucket=bucket, key=key, endpoint=_optional_text(raw, "endpoint"),
                      region=_optional_text(raw, "region"))


def check_fresh(saved: SavedPlan, state: State, remote: RemoteSnapshot) -> None:
    """Refuse a saved plan that no longer matches state or cloud."""
    never_written = saved.serial == 0 and state.serial == 0 and not state.keypairs
    if not never_written and (saved.lineage != state.lineage or saved.serial != state.serial):
        raise StaleStateError(
            "Saved plan is stale: the state changed since this plan was made "
            f"(plan: lineage {saved.lineage}, serial {saved.serial}; "
            f"state: lineage {state.lineage}, serial {state.serial}). "
            "Nothing was changed; run `reconciler plan --out FILE` again."
        )
    moved = []
    for name, fingerprint in sorted(saved.assumed.items()):
        now = remote.keypairs.get(name)
        if (now.fingerprint if now else None) != fingerprint:
            moved.append(name)
    for name, kept in sorted(saved.custody.items()):
        now = remote.keypairs.get(name)
        if now is not None and now.key_protection is not None and now.key_protection != kept \
                and name not in moved:
            moved.append(name)
    if moved:
        raise StaleStateError(
            "Saved plan is stale: these key pairs changed in the cloud since the plan was made: "
            f"{', '.join(moved)}. Nothing was changed; run `reconciler plan --out FILE` again."
        )


def _legacy_configuration(saved: SavedPlan, state: State) -> tuple[DesiredKeyPair, ...]:
    """Version 1 embedded only the changed key pairs: the unchanged ones it lists are taken
    as state records them (which is what "no-op" asserted)."""
    embedded = {d.name: d for d in saved.configuration}
    lifecycle = {str(n): bool(p) for n, p in _rec(saved).get("lifecycle", [])}
    for rc in saved.document["resource_changes"]:  # type: ignore[attr-defined]
        name = rc["name"]
        entry = state.by_name(name)
        if rc["change"]["actions"] != ["no-op"] or name in embedded or entry is None:
            continue
        embedded[name] = DesiredKeyPair(
            name=name, source=entry.source, location=SourceLocation(SAVED_PLAN_LOCATION, 0, 0),
            spec_digest=entry.spec_digest, algorithm=entry.algorithm,
            public_key=entry.public_key if entry.source is KeySource.IMPORT else None,
            type=entry.type, user_id=entry.user_id, description=entry.description,
            scope=entry.scope, key_protection=entry.key_protection,
            prevent_destroy=lifecycle.get(name, entry.prevent_destroy))
    return tuple(embedded[n] for n in sorted(embedded))


def _rec(saved: SavedPlan) -> Mapping[str, Any]:
    rec = saved.document["reconciler"]
    assert isinstance(rec, dict)  # checked by _parse
    return rec


def saved_target(saved: SavedPlan) -> str:
    """The target the saved plan's key pairs are recorded under (``default`` for a plan of
    a manifest without a targets block, and for every plan before targets were recorded)."""
    raw = saved.document["reconciler"].get("provider")  # type: ignore[attr-defined]
    target = raw.get("target", DEFAULT_TARGET) if isinstance(raw, dict) else DEFAULT_TARGET
    if not isinstance(target, str) or not is_target_name(target):
        raise PlanFileError(f"{saved.path}: the saved plan names no valid target; {_AGAIN}")
    return target


def rederive(saved: SavedPlan, *, state: State, remote: RemoteSnapshot, now: datetime,
             moves: Mapping[str, str] | None = None) -> Plan:
    """Make the plan again from what ``saved`` pins, and return it when it is exactly the
    plan the file shows. Raises ``StaleStateError`` (state or cloud moved) or
    ``PlanFileError`` (the file shows something its inputs do not give)."""
    check_fresh(saved, state, remote)
    if saved.planned_at is not None and saved.planned_at > now + CLOCK_SKEW:
        raise PlanFileError(f"{saved.path}: the saved plan says it was made at "
                            f"{saved.planned_at.isoformat()}, which is in the future; it was "
                            f"edited. Nothing was changed; {_AGAIN}")
    try:
        configuration = (saved.configuration if saved.complete
                         else _legacy_configuration(saved, state))
        target = saved_target(saved)
        targets = () if target == DEFAULT_TARGET else (TargetConfig(
            name=target, region=saved.provider.region or "",
            project_id=saved.provider.project_id or ""),)
        manifest = Manifest(keypairs=configuration, digest=saved.manifest_digest,
                            targets=targets)
        plan = make_plan(manifest, state, remote, options=saved.options,
                         now=saved.planned_at or now, moves=moves)
    except DiagnosticsError as exc:
        raise PlanFileError(
            f"Saved plan does not match what it pins: planned again from its configuration, "
            f"the state and the cloud, it fails:\n{exc}\nNothing was changed; {_AGAIN}") \
            from None
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        raise PlanFileError(f"{saved.path}: the saved plan is damaged or was edited; {_AGAIN}") \
            from None
    difference = _first_difference(saved, plan)
    if difference:
        raise PlanFileError(
            f"Saved plan does not match what it pins: {difference}. Planned again from the "
            f"configuration it embeds, the state (lineage {state.lineage}, serial "
            f"{state.serial}) and the cloud now, it would do something else: the file was "
            f"edited or damaged. Nothing was changed; {_AGAIN}")
    return plan


def _by_name(items: object) -> list[tuple[str, object]]:
    if not isinstance(items, list):
        return [("?", items)]
    return [(str(i.get("name")) if isinstance(i, dict) else f"#{n}", i)
            for n, i in enumerate(items)]


def _actions(item: object) -> object:
    try:
        return item["change"]["actions"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None


def _field(shown: object, again: object) -> str:
    """The first field of a change entry that differs, by its JSON path."""
    if isinstance(shown, dict) and isinstance(again, dict):
        for key in sorted(set(shown) | set(again)):
            if shown.get(key) != again.get(key):
                if key == "change":
                    inner = _field(shown.get(key), again.get(key))
                    return f"change.{inner}" if inner != "the entry" else "change"
                return str(key)
    return "the entry"


def _differing(what: str, shown: object, again: object) -> str | None:
    """Where two lists of changes keyed by name first differ, for a person to read."""
    if shown == again:
        return None
    file_items, derived = _by_name(shown), dict(_by_name(again))
    seen = set()
    for name, item in file_items:
        if name in seen:
            return f"{keypair_address(name)} is listed twice in {what}"
        seen.add(name)
        if name not in derived:
            return (f"{what} lists {keypair_address(name)} ({_actions(item)}), which the plan made "
                    "again does not change")
        if item != derived[name]:
            shown_actions, again_actions = _actions(item), _actions(derived[name])
            if shown_actions != again_actions:
                return (f"{keypair_address(name)}: the file shows {shown_actions}, the plan "
                        f"made again gives {again_actions}")
            return (f"{keypair_address(name)}: {_field(item, derived[name])} differs from the "
                    "plan made again")
    for name in derived:
        if name not in seen:
            return (f"{keypair_address(name)} ({_actions(derived[name])}) is missing from the "
                    f"file's {what}")
    return f"the order of {what} differs"


def _first_difference(saved: SavedPlan, plan: Plan) -> str | None:
    """The first way the file differs from ``plan`` (made again), or None."""
    doc = saved.document
    again = json.loads(json.dumps(plan_document(plan)))
    for key in ("resource_changes", "resource_drift"):
        found = _differing(key, doc.get(key), again[key])
        if found:
            return found
    summary = doc.get("summary")
    if isinstance(summary, dict) and "forget" not in summary and not again["summary"]["forget"]:
        del again["summary"]["forget"]  # plans of 0.1.0 had no forget count; none was zero
    for key in ("summary", "applyable", "errored"):
        if doc.get(key) != again[key]:
            return f"its {key} is {doc.get(key)!r}, the plan made again gives {again[key]!r}"
    rec = _rec(saved)
    keys = ["mode", "targets", "forget", "lifecycle", "remote"] + (
        ["replace"] if saved.complete else [])
    for key in keys:
        if rec.get(key) != again["reconciler"][key]:
            return f"its reconciler.{key} differs from the plan made again"
    return None
