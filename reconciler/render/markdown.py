"""The plan as a pull-request comment: summary first, a warning for destroy and replace,
a table, and the text plan in a collapsed ``<details>``; never more than 65,000 characters
(GitHub's limit is 65,536), saying what it cut.

May import: ``reconciler.plan``, ``reconciler.render.text``.
"""

from __future__ import annotations

from reconciler.plan import Action, Change, Plan
from reconciler.render.text import KNOWN_AFTER, render_text, summary_line

MAX_CHARS = 65_000
MARKER = "<!-- reconciler-plan -->"  # lets CI find and update its own comment

_ACTION_CELL = {
    Action.CREATE: "`+` create",
    Action.IMPORT: "`<=` import",
    Action.UPDATE: "`~` update",
    Action.REPLACE: "`-/+` **replace**",
    Action.DELETE: "`-` **destroy**",
}


def _source(change: Change) -> str:
    if change.desired is not None:
        if change.desired.algorithm:
            return f"generate ({change.desired.algorithm})"
        return change.desired.source.value
    if change.prior is not None:
        return change.prior.source.value
    return ""


def _fingerprint(change: Change) -> str:
    if change.action in (Action.CREATE, Action.REPLACE) and "fingerprint" in change.after_unknown:
        return KNOWN_AFTER
    attrs = change.after if change.action is not Action.DELETE else change.before
    value = (attrs or {}).get("fingerprint")
    return f"`{value}`" if value else ""


def _row(change: Change) -> str:
    return (f"| {_ACTION_CELL[change.action]} | `{change.name}` | {_source(change)} | "
            f"{_fingerprint(change)} |")


def _warning(plan: Plan) -> list[str]:
    destroyed = [c.name for c in plan.actionable if c.action is Action.DELETE]
    replaced = [c.name for c in plan.actionable if c.action is Action.REPLACE]
    if not destroyed and not replaced:
        return []
    lines = ["> [!WARNING]"]
    if destroyed:
        lines.append(f"> **{len(destroyed)} key pair(s) will be destroyed:** "
                     + ", ".join(f"`{n}`" for n in destroyed[:50])
                     + (f" and {len(destroyed) - 50} more" if len(destroyed) > 50 else ""))
    if replaced:
        if destroyed:
            lines.append(">")
        lines.append(f"> **{len(replaced)} key pair(s) will be replaced** (deleted, then created "
                     "with a new key; servers using the old key lose access): "
                     + ", ".join(f"`{n}`" for n in replaced[:50])
                     + (f" and {len(replaced) - 50} more" if len(replaced) > 50 else ""))
    lines.append("")
    return lines


def _fit(lines: list[str], budget: int, *, boundary: str | None = None) -> list[str]:
    """The longest prefix of ``lines`` within ``budget`` characters (newlines counted), cut
    just before a line starting with ``boundary`` when one is given."""
    used, end, last_boundary = 0, 0, 0
    for i, line in enumerate(lines):
        if boundary is not None and line.startswith(boundary):
            last_boundary = i
        if used + len(line) + 1 > budget:
            return lines[:last_boundary if boundary is not None else i]
        used += len(line) + 1
        end = i + 1
    return lines[:end]


def _unverified(plan: Plan) -> list[str]:
    if plan.state_verified:
        return []
    return ["> [!NOTE]", "> The state was read unverified (no state key was available, or it "
            "is in format 1): its integrity was not checked. `apply` checks it.", ""]


def render_markdown(plan: Plan, *, limit: int = MAX_CHARS) -> str:
    """The comment, at most ``limit`` characters: when the plan is too large, the table keeps
    as many rows as fit in half of what remains and the text plan the rest, cut between two
    key pairs; a note says what was cut."""
    head = [MARKER, "### reconciler plan", "", f"**{summary_line(plan)}**", "", *_warning(plan),
            *_unverified(plan)]
    changes = plan.actionable
    table = ["| action | key pair | key source | fingerprint |", "|---|---|---|---|"]
    rows = [_row(c) for c in changes]
    text = render_text(plan, colour=False).rstrip("\n").split("\n")

    def assemble(kept_rows: list[str], plan_text: list[str], note: str) -> str:
        parts = list(head)
        if changes:
            parts += table + kept_rows
            if len(kept_rows) < len(rows):
                parts.append(f"| … | {len(rows) - len(kept_rows)} more key pairs not shown | | |")
            parts.append("")
        parts += ["<details><summary>Show the full plan</summary>", "", "```diff", *plan_text,
                  "```", "", "</details>", ""]
        if note:
            parts.append(note)
        return "\n".join(parts) + "\n"

    full = assemble(rows, text, "")
    if len(full) <= limit:
        return full
    note = ("> [!NOTE]\n> This plan is too large for one comment, so it was cut here. "
            "The complete plan is in the JSON plan (`reconciler plan --format json`).")
    tail = [f"# … cut: {len(changes)} changes in all", summary_line(plan)]
    room = limit - len(assemble([], tail, note)) - 200  # the "more not shown" row, slack
    kept_rows = _fit(rows, room // 2)
    room -= sum(len(r) + 1 for r in kept_rows)
    kept_text = _fit(text, room, boundary="  # keypair.")
    return assemble(kept_rows, [*kept_text, *tail], note)
