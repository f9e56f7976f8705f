"""Table-driven plan cases: tests/cases/<name>/{manifest.yaml,state.json,remote.json,expected.json}.

One case per row of the plan table (DESIGN §4), for each API where it differs. The manifest is
loaded by the real loader; state and remote are built from the small JSON files; make_plan is
pure, so each case is a function call. On failure both sides are dumped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler import keys
from reconciler.errors import DiagnosticsError
from reconciler.manifest import load_manifests
from reconciler.model import (
    Api,
    EntryStatus,
    KeySource,
    RemoteKeyPair,
    RemoteSnapshot,
    SealedSecret,
    State,
    StateKeyPair,
)
from reconciler.plan import Mode, Plan, PlanOptions, make_plan
from reconciler.render.text import summary_line

CASES = Path(__file__).parent / "cases"
NAMES = sorted(p.name for p in CASES.iterdir() if p.is_dir())


def _state(raw: dict[str, Any], digests: dict[str, str]) -> State:
    entries = {}
    for name, e in raw["keypairs"].items():
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
        )
    return State(lineage=raw["lineage"], serial=raw["serial"], keypairs=entries)


def _remote(raw: dict[str, Any]) -> RemoteSnapshot:
    pairs = {}
    for r in raw["keypairs"]:
        pairs[r["name"]] = RemoteKeyPair(name=r["name"], public_key=r["public_key"],
                                         fingerprint=keys.fingerprints(r["public_key"])[0],
                                         description=r.get("description"))
    return RemoteSnapshot(keypairs=pairs, api=Api(raw["api"]))


def _run(case: Path) -> tuple[Plan | None, str | None, dict[str, Any]]:
    expected = json.loads((case / "expected.json").read_text())
    manifest = load_manifests([case / "manifest.yaml"], cwd=case)
    digests = {kp.name: kp.spec_digest for kp in manifest.keypairs}
    state = _state(json.loads((case / "state.json").read_text()), digests)
    remote = _remote(json.loads((case / "remote.json").read_text()))
    opts = expected.get("options", {})
    options = PlanOptions(mode=Mode(opts.get("mode", "normal")),
                          targets=tuple(opts.get("targets", ())),
                          replace=tuple(opts.get("replace", ())))
    now = datetime.fromisoformat(expected.get("now", "2026-11-23T00:00:00+00:00")
                                 .replace("Z", "+00:00")).astimezone(UTC)
    try:
        return make_plan(manifest, state, remote, options=options, now=now), None, expected
    except DiagnosticsError as exc:
        return None, str(exc), expected


@pytest.mark.parametrize("name", NAMES)
def test_plan_case(name: str) -> None:
    plan, error, expected = _run(CASES / name)
    if "error" in expected:
        assert plan is None, f"expected an error, got a plan: {plan}"
        assert error is not None and expected["error"] in error, error
        return
    assert plan is not None, f"unexpected error: {error}"
    got = {
        "changes": {c.name: c.action.value for c in plan.changes},
        "drift": {d.name: d.kind for d in plan.drift},
        "forget": list(plan.forget),
        "replace_paths": {c.name: sorted(c.replace_paths) for c in plan.changes
                          if c.replace_paths},
        "reason": {c.name: c.reason for c in plan.changes if c.reason},
        "summary": summary_line(plan),
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
