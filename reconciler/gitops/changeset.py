"""The change set of a reconciler JSON plan, for CI: compare two plans, digest one, or
summarise one for GitLab's Terraform merge-request widget.

A plan's change set is what apply would do in the cloud: for every resource change that is not
a no-op, its address, its actions (``create``; ``delete,create`` for a replacement; ``import``
for an adoption) and the attributes it will set (``change.after``; values only known after
apply are absent from it, so it is stable between two plans of the same manifests); for a
change that deletes (a delete, a replacement), also what it deletes (``change.before``, and
what the cloud holds under that address now when it drifted: ``resource_drift``), so that a key
re-made in the console after the review is not deleted on the strength of the review of another
key. The human reason is left out.

A plan can also hold work on state alone (a changed ``prevent_destroy``; a key pair gone from
the cloud and the manifests, forgotten; an entry moved to its new address): nothing changes in
the cloud, so ``plan --detailed-exitcode`` exits 0, yet only an apply records it. ``state-only``
lists it, so that CI applies such a plan too: a ``prevent_destroy`` merged but never recorded
would not stop the key pair's removal from the manifests later.

Usage (``python -m reconciler.gitops.changeset …``):
    compare REVIEWED.json FRESH.json   exit 0 same change set, 1 different
    digest PLAN.json                   sha256 of the change set
    show PLAN.json                     one line per change
    state-only PLAN.json               one line per step apply records in state alone
    gitlab-report PLAN.json            {"create": N, "update": N, "delete": N}

Exit 2 for a missing or unreadable plan.
May import: the standard library.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Change = tuple[str, str, str]  # address, actions, canonical JSON of the planned attributes


class PlanError(Exception):
    """A plan file that cannot be read as a reconciler (or Terraform) JSON plan."""


def read_plan(path: str) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(f"{path}: not a readable JSON plan ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("resource_changes", []), list):
        raise PlanError(f"{path}: not a JSON plan (no resource_changes list)")
    return doc


def _actions(change: dict[str, Any]) -> str | None:
    actions = list(change.get("actions") or [])
    if actions == ["no-op"]:
        return "import" if change.get("importing") else None
    return ",".join(str(a) for a in actions)


def change_set(doc: dict[str, Any]) -> list[Change]:
    """The plan's changes, sorted by address; no-ops left out."""
    out: list[Change] = []
    drift = {str(d.get("address")): (d.get("change") or {}).get("after")
             for d in doc.get("resource_drift") or [] if isinstance(d, dict)}
    for rc in doc.get("resource_changes") or []:
        change = rc.get("change") or {}
        actions = _actions(change)
        if actions is None:
            continue
        planned: object = change.get("after")
        if "delete" in actions.split(","):
            planned = {"after": planned, "deletes": change.get("before"),
                       "cloud_now": drift.get(str(rc.get("address")))}
        after = json.dumps(planned, sort_keys=True, separators=(",", ":"))
        out.append((str(rc.get("address")), actions, after))
    return sorted(out)


def state_work(doc: dict[str, Any]) -> list[str]:
    """The steps apply of ``doc`` takes on state alone, one line each (empty: none)."""
    rec = doc.get("reconciler")
    if not isinstance(rec, dict):
        return []
    lines = [f"record prevent_destroy = {'true' if item[1] else 'false'}: {item[0]}"
             for item in _pairs(rec.get("lifecycle"))]
    lines += [f"forget (gone from the cloud and the manifests): {label}"
              for label in _list(rec.get("forget"))]
    lines += [f"move in state: {old} -> {new}" for old, new in _pairs(rec.get("moved"))]
    return lines


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _pairs(value: object) -> list[tuple[object, object]]:
    return [(item[0], item[1]) for item in _list(value)
            if isinstance(item, list) and len(item) == 2]


def digest(changes: list[Change]) -> str:
    text = "\n".join("\t".join(c) for c in changes)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def differences(reviewed: list[Change], fresh: list[Change]) -> list[str]:
    """Human lines saying how ``fresh`` differs from ``reviewed``; empty when the same."""
    old = {c[0]: c for c in reviewed}
    new = {c[0]: c for c in fresh}
    lines = []
    for address in sorted(old.keys() | new.keys()):
        a, b = old.get(address), new.get(address)
        if a == b:
            continue
        if a is None and b is not None:
            lines.append(f"  {address}: not in the reviewed plan; the new plan would {b[1]} it")
        elif b is None and a is not None:
            lines.append(f"  {address}: reviewed ({a[1]}) but no longer planned")
        elif a is not None and b is not None and a[1] != b[1]:
            lines.append(f"  {address}: reviewed as {a[1]}, now planned as {b[1]}")
        else:
            lines.append(f"  {address}: {a[1] if a else ''} with other attributes than reviewed")
    return lines


def gitlab_report(doc: dict[str, Any]) -> dict[str, int]:
    """Counts in the shape GitLab's ``artifacts:reports:terraform`` widget reads."""
    actions = [a for rc in doc.get("resource_changes") or []
               for a in (rc.get("change") or {}).get("actions") or []]
    return {k: actions.count(k) for k in ("create", "update", "delete")}


def _compare(reviewed_path: str, fresh_path: str) -> int:
    reviewed, fresh = change_set(read_plan(reviewed_path)), change_set(read_plan(fresh_path))
    diff = differences(reviewed, fresh)
    if not diff:
        print(f"The new plan carries out exactly the reviewed change set "
              f"({len(fresh)} changes, {digest(fresh)}).")
        return 0
    print("Refusing: the new plan differs from the reviewed one:", file=sys.stderr)
    for line in diff:
        print(line, file=sys.stderr)
    print("Nothing was changed. Review a new plan (open a pull request, or see README.md,"
          " 'When apply refuses') and apply that.", file=sys.stderr)
    return 1


def main(argv: Sequence[str]) -> int:
    try:
        match list(argv):
            case ["compare", reviewed, fresh]:
                return _compare(reviewed, fresh)
            case ["digest", path]:
                print(digest(change_set(read_plan(path))))
            case ["show", path]:
                for address, actions, _ in change_set(read_plan(path)):
                    print(f"{actions:<14} {address}")
            case ["state-only", path]:
                for line in state_work(read_plan(path)):
                    print(line)
            case ["gitlab-report", path]:
                print(json.dumps(gitlab_report(read_plan(path))))
            case _:
                print(__doc__, file=sys.stderr)
                return 2
    except PlanError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
