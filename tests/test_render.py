"""Golden output for the human plan and its summary line; the JSON plan's shape; the Markdown
comment's cap. Set UPDATE_GOLDEN=1 to rewrite the golden files after a deliberate change."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.model import Api, DesiredKeyPair, KeySource, SourceLocation
from reconciler.plan import Action, Change, Plan
from reconciler.render.json import plan_document, render_json
from reconciler.render.markdown import MAX_CHARS, render_markdown
from reconciler.render.text import render_text, summary_line
from tests.test_plan_cases import CASES, _run

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_CASES = ["create_import", "replace_public_key_changed", "update_description_kps",
                "drift_key_changed_outside", "delete_not_desired", "in_sync_noop",
                "adopt_same_key", "refresh_only", "rotation_due",
                "custody_added_in_place", "custody_removed_in_place", "custody_kms_key_changed",
                "custody_added_not_held_replaces", "custody_drift_added_outside",
                "custody_drift_cleared_outside", "import_with_description_update",
                "binding_bind", "binding_unbind", "binding_rebind", "binding_drift",
                "binding_delete_used_allowed",
                "delivery_create", "delivery_drift_repaired", "delivery_rotation_new_version"]


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_text_plan_golden(name: str) -> None:
    plan, error, _ = _run(CASES / name)
    assert plan is not None, error
    text = render_text(plan)
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"golden mismatch for {name}:\n{text}"


@pytest.mark.parametrize("name", ["create_import", "replace_public_key_changed",
                                  "update_description_kps", "delete_not_desired",
                                  "custody_added_in_place", "import_with_description_update",
                                  "binding_delete_used_allowed"])
def test_markdown_plan_golden(name: str) -> None:
    """The comment's ```diff block has each sign at column 0, so GitHub and GitLab colour it."""
    plan, error, _ = _run(CASES / name)
    assert plan is not None, error
    md = render_markdown(plan)
    golden = GOLDEN / f"{name}.md"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(md)
    assert md == golden.read_text(), f"golden mismatch for {name}:\n{md}"
    block = md.split("```diff\n", 1)[1].split("\n```", 1)[0].splitlines()
    signed = [ln for ln in block if ln.lstrip().startswith(("+ ", "- ", "~ ", "-/+ "))]
    assert signed and all(ln[0] in "+-~" for ln in signed), signed


def test_colour_only_when_asked() -> None:
    plan, _, _ = _run(CASES / "create_import")
    assert plan is not None
    assert "\x1b[" not in render_text(plan)
    assert "\x1b[" in render_text(plan, colour=True)


def _many(n: int) -> Plan:
    changes = []
    for i in range(n):
        name = f"key-{i:05d}"
        d = DesiredKeyPair(name=name, source=KeySource.GENERATE, algorithm="ed25519",
                           location=SourceLocation("m.yaml", i + 1, 5), spec_digest="x")
        action = Action.DELETE if i % 10 == 0 else Action.CREATE
        changes.append(Change(
            name=name, action=action,
            before={"name": name, "fingerprint": "aa:bb"} if action is Action.DELETE else None,
            after=None if action is Action.DELETE else {"name": name, "source": "generate"},
            after_unknown=() if action is Action.DELETE else ("public_key", "fingerprint",
                                                              "private_key"),
            desired=None if action is Action.DELETE else d))
    return Plan(changes=tuple(changes), api=Api.KPS, lineage="l", serial=1, manifest_digest="d")


def test_markdown_for_5000_changes_fits_a_comment_and_says_what_it_cut() -> None:
    plan = _many(5000)
    md = render_markdown(plan)
    assert len(md) <= MAX_CHARS
    assert md.splitlines()[3] == f"**{summary_line(plan)}**"
    assert "> [!WARNING]" in md and "500 key pair(s) will be destroyed" in md
    assert "too large for one comment" in md
    assert md.count("\n| `") > 300  # as many table rows as fit, not a token few
    assert md.count("  # keypair.") > 50  # and the text plan, cut between two key pairs
    assert "more key pairs not shown" in md


def test_markdown_with_hundreds_of_warnings_still_fits_a_comment() -> None:
    import dataclasses

    plan = dataclasses.replace(_many(50), warnings=tuple(
        f"keypair.kp-{i:04d}: server 'web-{i}' runs a private image; " + "x" * 250
        for i in range(400)))
    md = render_markdown(plan)
    assert len(md) <= MAX_CHARS
    assert "keypair.kp-0000: server" in md and "more warning(s), not shown here" in md
    assert md.count("\n| `") > 10  # the table still has its room


def test_markdown_small_plan_is_whole() -> None:
    plan = _many(3)
    md = render_markdown(plan)
    assert "too large" not in md
    assert "<details>" in md and "```diff" in md
    assert md.count("| `+` create |") == 2


def test_json_plan_shape() -> None:
    plan, _, _ = _run(CASES / "replace_public_key_changed")
    assert plan is not None
    doc = json.loads(render_json(plan))
    assert doc["format_version"] == "1.2"
    assert doc["prior_state"] == {"lineage": plan.lineage, "serial": plan.serial}
    rc = doc["resource_changes"][0]
    assert rc["address"] == "keypair.alice" and rc["type"] == "keypair"
    assert rc["change"]["actions"] == ["delete", "create"]
    assert rc["change"]["replace_paths"] == [["public_key"]]
    assert rc["action_reason"] == "replace_because_cannot_update"
    assert plan_document(plan)["manifest_digest"] == plan.manifest_digest


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
       | st.text(alphabet="abc-_. :/+=@,()[]\"\\\x00\x1b\x7f\u202e\u00e9", max_size=20))
def test_a_shown_value_is_its_json_made_printable(text: str) -> None:
    from reconciler.render.text import _value
    from reconciler.textsafe import printable

    assert _value(text) == printable(json.dumps(text, ensure_ascii=False))


def test_what_shows_as_nothing_and_lone_surrogates_are_escaped() -> None:
    from reconciler.textsafe import markdown_text, printable

    odd = "a\u200bb\u2060c\ufeffd\xade\U000e0041f\ud800g"
    assert printable(odd) == "a\\u200bb\\u2060c\\ufeffd\\xade\\U000e0041f\\ud800g"
    assert printable(odd).encode("ascii")  # nothing invisible or unencodable is left
    assert "\u200b" not in markdown_text(odd) and "\ud800" not in markdown_text(odd)
