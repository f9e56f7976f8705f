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
the apply's (a version 2 plan's provider block may name ``custody_endpoint``, where its
custody calls go when the run named a place its endpoint does not give). 3 is a plan of
several targets: every target's connection (``PinnedTarget``, with
where its custody calls go when that is not its endpoint),
the targets each key pair lists, ``--in``, ``--forget-target``, the targets it could not read
(made again without them: nothing is planned there), and what it assumed of the cloud by
address; it is made again from every target's snapshot at once.

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

from reconciler.address import (
    DEFAULT_TARGET,
    AddressSyntaxError,
    is_target_name,
    keypair_address,
    parse_address,
)
from reconciler.configuration import (
    SAVED_PLAN_LOCATION,
    configuration_digest,
    desired_from_dict,
    import_from_dict,
    legacy_digest,
)
from reconciler.errors import DiagnosticsError, PlanFileError, StaleStateError
from reconciler.model import (
    Api,
    DesiredKeyPair,
    ImportRequest,
    KeySource,
    Manifest,
    ProviderConfig,
    RemoteKeyPair,
    RemoteSnapshot,
    S3Location,
    SourceLocation,
    State,
    TargetConfig,
    TargetConnection,
)
from reconciler.plan import REASON_BY_REQUEST, Mode, Plan, PlanOptions, make_plan
from reconciler.planformat import (
    PLAN_KIND,
    PLAN_VERSION,
    ROLES,
    TARGETS_PLAN_VERSION,
    plan_document,
)

MAX_PLAN_BYTES = 256 * 1024 * 1024
READABLE_VERSIONS = (1, PLAN_VERSION, TARGETS_PLAN_VERSION)
CLOCK_SKEW = timedelta(minutes=5)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_AGAIN = "make a new one with `reconciler plan --out FILE`"
_PROVIDER_FIELDS = ("api", "endpoint", "region", "project_id", "target", "custody_endpoint")
_CONNECTION_FIELDS = ("target", "role", "api", "endpoint", "region", "project_id",
                      "credentials")


@dataclass(frozen=True, slots=True)
class PinnedTarget:
    """One target of a saved plan of several: where the plan reached it (``role``
    ``declared``: a target of the manifests; ``removed``: one only state held, reached by its
    recorded connection), and whether it could be read (``unreachable``: why not)."""

    name: str
    role: str
    connection: TargetConnection
    unreachable: str | None = None
    custody_endpoint: str | None = None  # where its custody calls go, when not its endpoint


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
    imports: tuple[ImportRequest, ...]  # the import: lists it was made with
    options: PlanOptions
    planned_at: datetime | None  # None for version 1
    provider: ProviderConfig
    backend: S3Location | None
    assumed: Mapping[str, str | None]  # name -> the fingerprint the plan saw in the cloud
    document: Mapping[str, object]  # the raw document, compared with the plan made again
    # Version 3 (several targets): each target, --in and --forget-target.
    pinned: tuple[PinnedTarget, ...] = ()
    within: tuple[str, ...] = ()
    forget_targets: tuple[str, ...] = ()
    # Version 2: where its custody calls go, when the run that made it named another place
    # than its endpoint gives (a target's endpoints.kms); None: derived from the endpoint.
    custody_endpoint: str | None = None

    @property
    def several(self) -> bool:
        """True for a plan of several targets (version 3)."""
        return self.version >= TARGETS_PLAN_VERSION

    @property
    def declared(self) -> tuple[str, ...]:
        """The targets the manifests declared, in their order (version 3)."""
        return tuple(t.name for t in self.pinned if t.role == "declared")
    # label -> whether the cloud kept its private key, for custody the plan changes or saw
    # drift (a name with one target, an address with several)
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
    digest = configuration_digest(saved.configuration, saved.declared, saved.imports)
    if saved.complete and digest != saved.manifest_digest:
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
    raw_imports = rec.get("imports", [])
    if not isinstance(raw_imports, list):
        raise ValueError("imports")
    imports = tuple(import_from_dict(item) for item in raw_imports)
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
    several = version >= TARGETS_PLAN_VERSION
    pinned = _pinned(rec["connections"], rec.get("unreachable_targets", [])) if several else ()
    within, forget = ((_names(rec["in"]), _names(rec["forget_targets"])) if several
                      else ((), ()))
    known = {t.name for t in pinned}
    if several and not (set(within) <= known and not set(forget) & known):
        raise ValueError("--in names a target the plan has no connection for")
    custody = rec.get("custody", {})
    if not isinstance(custody, dict) or not all(isinstance(v, bool) for v in custody.values()):
        raise ValueError("custody")
    return SavedPlan(
        path=path, version=version, lineage=lineage, serial=serial, manifest_digest=digest,
        configuration=desired, imports=imports, options=options, planned_at=planned_at,
        provider=ProviderConfig() if several else _provider(rec["provider"]),
        backend=_backend(rec.get("backend")), assumed=dict(assumed), document=doc,
        pinned=pinned, within=within, forget_targets=forget, custody=dict(custody),
        custody_endpoint=None if several else _custody_endpoint(rec["provider"]),
    )


def _names(raw: object) -> tuple[str, ...]:
    names = _strings(raw)
    if not all(is_target_name(n) for n in names) or len(set(names)) != len(names):
        raise ValueError("not a list of distinct target names")
    return names


def _pinned(raw: object, unreachable: object) -> tuple[PinnedTarget, ...]:
    """The connections of a plan of several targets: each complete, named once."""
    if not isinstance(raw, list) or not raw or not isinstance(unreachable, list):
        raise ValueError("connections")
    why: dict[str, str] = {}
    for item in unreachable:
        if not isinstance(item, dict) or set(item) != {"target", "error"} \
                or not isinstance(item["error"], str) or item["target"] in why:
            raise ValueError("unreachable_targets")
        why[str(item["target"])] = item["error"]
    out: list[PinnedTarget] = []
    for item in raw:
        if not isinstance(item, dict) or set(item) - {"custody_endpoint"} != set(
                _CONNECTION_FIELDS):
            raise ValueError("a connection")
        custody = _optional_text(item, "custody_endpoint")
        if "custody_endpoint" in item and not custody:
            raise ValueError("a connection's custody endpoint")
        name, role = item["target"], item["role"]
        if not isinstance(name, str) or not is_target_name(name) or role not in ROLES \
                or any(t.name == name for t in out):
            raise ValueError("a connection's target")
        c = TargetConnection(**{k: _optional_text(item, k) for k in
                                ("region", "project_id", "api", "endpoint", "credentials")})
        if not (c.project_id and c.endpoint and c.api):
            raise ValueError("a connection without project, endpoint or API")
        Api(c.api)
        out.append(PinnedTarget(name=name, role=str(role), connection=c,
                                unreachable=why.pop(name, None), custody_endpoint=custody))
    if why or not any(t.role == "declared" for t in out):
        raise ValueError("unreachable_targets")
    return tuple(out)


def _provider(raw: object) -> ProviderConfig:
    if not isinstance(raw, dict) or set(raw) - set(_PROVIDER_FIELDS):
        raise ValueError("provider")
    api = _optional_text(raw, "api")
    return ProviderConfig(region=_optional_text(raw, "region"),
                          project_id=_optional_text(raw, "project_id"),
                          api=Api(api) if api else None,
                          endpoint=_optional_text(raw, "endpoint"))


def _custody_endpoint(raw: Mapping[str, object]) -> str | None:
    """The provider block's ``custody_endpoint``: absent, or a URL (checked where used)."""
    custody = _optional_text(raw, "custody_endpoint")
    if "custody_endpoint" in raw and not custody:
        raise ValueError("the provider's custody endpoint")
    return custody


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


def check_fresh(saved: SavedPlan, state: State,
                remote: RemoteSnapshot | Mapping[str, RemoteSnapshot]) -> None:
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
    for label, fingerprint in sorted(saved.assumed.items()):
        now = _remote_now(saved, label, remote)
        if now is _UNREAD:
            continue  # --forget-target: the plan read nothing there, and apply reads nothing
        if now is _UNKNOWN or (now.fingerprint if isinstance(now, RemoteKeyPair)
                               else None) != fingerprint:
            moved.append(label)
    for label, kept in sorted(saved.custody.items()):
        now = _remote_now(saved, label, remote)
        if now is _UNREAD or label in moved:
            continue
        if now is _UNKNOWN or (isinstance(now, RemoteKeyPair) and now.key_protection is not None
                               and now.key_protection != kept):
            moved.append(label)
    if moved:
        raise StaleStateError(
            "Saved plan is stale: these key pairs changed in the cloud since the plan was made: "
            f"{', '.join(moved)}. Nothing was changed; run `reconciler plan --out FILE` again."
        )


_UNKNOWN, _UNREAD = object(), object()


def _remote_now(saved: SavedPlan, label: str,
                remote: RemoteSnapshot | Mapping[str, RemoteSnapshot]) -> object:
    """What the cloud holds now under ``label`` (a name with one target, an address with
    several): the ``RemoteKeyPair``, None when absent; ``_UNKNOWN`` when no snapshot has it,
    ``_UNREAD`` for a target forgotten with --forget-target."""
    if isinstance(remote, RemoteSnapshot):
        if saved.several:
            return _UNKNOWN
        return remote.keypairs.get(label)
    try:
        query = parse_address(label)
    except AddressSyntaxError:
        return _UNKNOWN
    snapshot = remote.get(query.target) if query.target is not None else None
    if snapshot is None and query.target in saved.forget_targets:
        return _UNREAD
    if snapshot is None:
        return _UNKNOWN  # a target the plan could not read, or not in it: edited
    return snapshot.keypairs.get(query.name)


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


def rederive(saved: SavedPlan, *, state: State,
             remote: RemoteSnapshot | Mapping[str, RemoteSnapshot], now: datetime,
             moves: Mapping[str, str] | None = None) -> Plan:
    """Make the plan again from what ``saved`` pins, and return it when it is exactly the
    plan the file shows. ``remote``: the one target's snapshot, or (a plan of several) every
    target's the plan read, by name. Raises ``StaleStateError`` (state or cloud moved) or
    ``PlanFileError`` (the file shows something its inputs do not give)."""
    check_fresh(saved, state, remote)
    if saved.planned_at is not None and saved.planned_at > now + CLOCK_SKEW:
        raise PlanFileError(f"{saved.path}: the saved plan says it was made at "
                            f"{saved.planned_at.isoformat()}, which is in the future; it was "
                            f"edited. Nothing was changed; {_AGAIN}")
    try:
        manifest = pinned_manifest(saved, state)
        if saved.several:
            plan = _several_again(saved, manifest, state, remote, now, moves)
        else:
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


def pinned_manifest(saved: SavedPlan, state: State) -> Manifest:
    """The manifests a saved plan was made from, as it embeds them: its configuration, its
    import lists and its declared targets. Raises ``PlanFileError`` (or ``KeyError``,
    ``ValueError`` and the like: a damaged file) when they cannot be read back."""
    configuration = (saved.configuration if saved.complete
                     else _legacy_configuration(saved, state))
    if saved.several:
        targets = tuple(TargetConfig(name=t.name, region=t.connection.region or "",
                                     project_id=t.connection.project_id or "")
                        for t in saved.pinned if t.role == "declared")
    else:
        target = saved_target(saved)
        targets = () if target == DEFAULT_TARGET else (TargetConfig(
            name=target, region=saved.provider.region or "",
            project_id=saved.provider.project_id or ""),)
    return Manifest(keypairs=configuration, digest=saved.manifest_digest, targets=targets,
                    imports=saved.imports)


def _several_again(saved: SavedPlan, manifest: Manifest, state: State,
                   remote: RemoteSnapshot | Mapping[str, RemoteSnapshot], now: datetime,
                   moves: Mapping[str, str] | None) -> Plan:
    """A plan of several targets, made again: its declared targets, the snapshot of each it
    read, and none for those it could not read (nothing is planned there, as then)."""
    if isinstance(remote, RemoteSnapshot):
        raise TypeError("a plan of several targets is made from each target's snapshot")
    unreachable = {t.name: t.unreachable for t in saved.pinned if t.unreachable is not None}
    return make_plan(manifest, state, remote, options=saved.options,
                     now=saved.planned_at or now, moves=moves, unreachable=unreachable,
                     within=saved.within, forget_targets=saved.forget_targets)


def _by_name(items: object, key: str = "name") -> list[tuple[str, object]]:
    if not isinstance(items, list):
        return [("?", items)]
    return [(str(i.get(key)) if isinstance(i, dict) else f"#{n}", i)
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


def _differing(what: str, shown: object, again: object, *,
               several: bool = False) -> str | None:
    """Where two lists of changes keyed by name (by address, with several targets) first
    differ, for a person to read."""
    if shown == again:
        return None
    key = "address" if several else "name"
    file_items, derived = _by_name(shown, key), dict(_by_name(again, key))

    def shown_as(name: str) -> str:
        return name if several else str(keypair_address(name))

    seen = set()
    for name, item in file_items:
        if name in seen:
            return f"{shown_as(name)} is listed twice in {what}"
        seen.add(name)
        if name not in derived:
            return (f"{what} lists {shown_as(name)} ({_actions(item)}), which the plan made "
                    "again does not change")
        if item != derived[name]:
            shown_actions, again_actions = _actions(item), _actions(derived[name])
            if shown_actions != again_actions:
                return (f"{shown_as(name)}: the file shows {shown_actions}, the plan "
                        f"made again gives {again_actions}")
            return (f"{shown_as(name)}: {_field(item, derived[name])} differs from the "
                    "plan made again")
    for name in derived:
        if name not in seen:
            return (f"{shown_as(name)} ({_actions(derived[name])}) is missing from the "
                    f"file's {what}")
    return f"the order of {what} differs"


def _first_difference(saved: SavedPlan, plan: Plan) -> str | None:
    """The first way the file differs from ``plan`` (made again), or None."""
    doc = saved.document
    again = json.loads(json.dumps(plan_document(plan)))
    for key in ("resource_changes", "resource_drift"):
        found = _differing(key, doc.get(key), again[key], several=saved.several)
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
        ["replace"] if saved.complete else []) + (
        ["moved", "unreachable_targets", "in", "forget_targets"] if saved.several else [])
    for key in keys:
        if rec.get(key) != again["reconciler"].get(key):
            return f"its reconciler.{key} differs from the plan made again"
    if saved.several and doc.get("plan_version") != again["plan_version"]:
        return "its plan_version is not that of a plan of several targets"
    return None
