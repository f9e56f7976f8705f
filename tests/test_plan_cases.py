"""Table-driven plan cases: tests/cases/<name>/{manifest.yaml,state.json,remote.json,expected.json}.

One case per row of the plan table (DESIGN §4), for each API where it differs. The manifest is
loaded by the real loader; state and remote are built from the small JSON files; make_plan is
pure, so each case is a function call. On failure both sides are dumped.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler import keys
from reconciler.address import keypair_address
from reconciler.errors import DiagnosticsError
from reconciler.manifest import load_manifests
from reconciler.model import (
    Api,
    DeliveryRecord,
    Deposed,
    Encryption,
    EntryStatus,
    KeyProtection,
    KeySource,
    RemoteKeyPair,
    RemoteServer,
    RemoteSnapshot,
    SealedSecret,
    SinkReading,
    State,
    StateKeyPair,
    TargetConnection,
)
from reconciler.plan import Change, Drift, Mode, Plan, PlanOptions, make_plan
from reconciler.render.text import summary_line

CASES = Path(__file__).parent / "cases"
NAMES = sorted(p.name for p in CASES.iterdir() if p.is_dir())


def _entries(raw: dict[str, Any], digests: dict[str, str]) -> dict[str, StateKeyPair]:
    entries = {}
    for name, e in raw.items():
        md5, sha = keys.fingerprints(e["public_key"])
        entries[name] = StateKeyPair(
            name=name, api=Api(e.get("api", "v2.1")), source=KeySource(e["source"]),
            public_key=e["public_key"], fingerprint_md5=md5, fingerprint_sha256=sha,
            created=e["created"],
            spec_digest=digests.get(name, "") if e["spec_digest"] == "auto" else e["spec_digest"],
            algorithm=e.get("algorithm"), scope=e.get("scope"), description=e.get("description"),
            private_key=SealedSecret("x") if e.get("private_key") else None,
            status=EntryStatus(e.get("status", "ready")),
            prevent_destroy=bool(e.get("prevent_destroy")),
            key_protection=_protection(e.get("key_protection")),
            servers=tuple(sorted(e.get("servers", ()))),
            deliveries=tuple(_delivery(d, sha) for d in e.get("deliveries", ())),
            generation=e.get("generation", 0), deposed=_deposed(e.get("deposed")),
        )
    return entries


def _deposed(raw: dict[str, Any] | None) -> Deposed | None:
    if raw is None:
        return None
    md5, sha = keys.fingerprints(raw["public_key"])
    return Deposed(cloud_name=raw["cloud_name"], public_key=raw["public_key"],
                   fingerprint_md5=md5, fingerprint_sha256=sha,
                   private_key=SealedSecret("y") if raw.get("private_key") else None)


def _delivery(raw: dict[str, Any], sha: str) -> DeliveryRecord:
    """A recorded delivery: ``fingerprint`` "auto" is the entry's own key."""
    fingerprint = sha if raw.get("fingerprint", "auto") == "auto" else raw["fingerprint"]
    return DeliveryRecord(sink=raw["sink"], target=raw.get("target", "default"),
                          fingerprint=fingerprint, delivered=raw["delivered"],
                          version_id=raw.get("version_id"), digest=raw.get("digest"),
                          path=raw.get("path"), recipients=tuple(raw.get("recipients", ())))


def _protection(raw: dict[str, Any] | None) -> KeyProtection | None:
    """A state entry's ``key_protection``: ``{"encryption": {"type": ..., ...}}``."""
    return KeyProtection(encryption=Encryption(**raw["encryption"])) if raw else None


def _state(raw: dict[str, Any], digests: dict[str, str]) -> State:
    """The state of a case: ``keypairs`` (the default target), or ``targets`` of them."""
    by_target = raw.get("targets") or {"default": raw["keypairs"]}
    return State(lineage=raw["lineage"], serial=raw["serial"],
                 keypairs={keypair_address(name, target): replace(entry, target=target)
                           for target, entries in by_target.items()
                           for name, entry in _entries(entries, digests).items()},
                 targets={target: TargetConnection(**(raw.get("connections") or {})
                                                   .get(target, {}))
                          for target in by_target})


def _remote_of(raw: dict[str, Any]) -> RemoteSnapshot | dict[str, RemoteSnapshot]:
    """One snapshot, or one per target ("targets": {t: {"api": ..., "keypairs": [...]}}); a
    target given as {"unreachable": "why"} could not be read."""
    if "targets" in raw:
        return {target: _remote(snapshot) for target, snapshot in raw["targets"].items()
                if "unreachable" not in snapshot}
    return _remote(raw)


def _unreachable(raw: dict[str, Any]) -> dict[str, str]:
    return {target: snapshot["unreachable"]
            for target, snapshot in raw.get("targets", {}).items() if "unreachable" in snapshot}


def _remote(raw: dict[str, Any]) -> RemoteSnapshot:
    pairs = {}
    for r in raw["keypairs"]:
        pairs[r["name"]] = RemoteKeyPair(name=r["name"], public_key=r["public_key"],
                                         fingerprint=keys.fingerprints(r["public_key"])[0],
                                         description=r.get("description"),
                                         scope=r.get("scope"),
                                         key_protection=r.get("is_key_protection"))
    servers = tuple(RemoteServer(**s) for s in raw["servers"]) if "servers" in raw else None
    sinks = {name: SinkReading(exists=r["exists"], version_id=r.get("version_id"),
                               digest=r.get("digest"))
             for name, r in raw.get("sinks", {}).items()}
    return RemoteSnapshot(keypairs=pairs, api=Api(raw["api"]), servers=servers, sinks=sinks)


def _run(case: Path) -> tuple[Plan | None, str | None, dict[str, Any]]:
    expected = json.loads((case / "expected.json").read_text())
    manifest = load_manifests([case / "manifest.yaml"], cwd=case)
    digests = {kp.name: kp.spec_digest for kp in manifest.keypairs}
    raw_state = json.loads((case / "state.json").read_text())
    state = _state(raw_state, digests)
    raw_remote = json.loads((case / "remote.json").read_text())
    remote = _remote_of(raw_remote)
    opts = expected.get("options", {})
    options = PlanOptions(mode=Mode(opts.get("mode", "normal")),
                          targets=tuple(opts.get("targets", ())),
                          replace=tuple(opts.get("replace", ())),
                          allow_bound_delete=bool(opts.get("allow_bound_delete")))
    now = datetime.fromisoformat(expected.get("now", "2026-11-23T00:00:00+00:00")
                                 .replace("Z", "+00:00")).astimezone(UTC)
    try:
        return make_plan(manifest, state, remote, options=options, now=now,
                         moves=opts.get("moves"), unreachable=_unreachable(raw_remote),
                         within=opts.get("in", ()),
                         forget_targets=opts.get("forget_targets", ())), None, expected
    except DiagnosticsError as exc:
        return None, str(exc), expected


def _key(item: Change | Drift) -> str:
    """A case's key for a change: the name with one target, the address with several (and
    for a deposed generation, whose name is its key pair's)."""
    return str(item.address) if item.address.qualified or item.address.kind == "deposed" \
        else item.name


@pytest.mark.parametrize("name", NAMES)
def test_plan_case(name: str) -> None:
    plan, error, expected = _run(CASES / name)
    if "error" in expected:
        assert plan is None, f"expected an error, got a plan: {plan}"
        assert error is not None and expected["error"] in error, error
        return
    assert plan is not None, f"unexpected error: {error}"
    got = {
        "changes": {_key(c): c.action.value for c in plan.changes},
        "drift": {_key(d): d.kind for d in plan.drift},
        "forget": [a.label for a in plan.forget],
        "moved": [[str(old), str(new)] for old, new in plan.moved],
        "unreachable": [target for target, _ in plan.unreachable],
        "replace_paths": {_key(c): sorted(c.replace_paths) for c in plan.changes
                          if c.replace_paths},
        "reason": {_key(c): c.reason for c in plan.changes if c.reason},
        "summary": summary_line(plan),
        "warnings": len(plan.warnings),
        "cloud_names": {_key(c): (c.after or {})["cloud_name"] for c in plan.changes
                        if c.rotating},
    }
    want = {k: expected[k] for k in got if k in expected}
    assert {k: got[k] for k in want} == want, (
        f"case {name}\n--- expected\n{json.dumps(want, indent=2)}\n"
        f"--- got\n{json.dumps(got, indent=2)}")


def test_every_case_has_expectations() -> None:
    assert len(NAMES) >= 25
    for name in NAMES:
        expected = json.loads((CASES / name / "expected.json").read_text())
        assert "error" in expected or "changes" in expected, name
