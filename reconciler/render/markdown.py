"""The plan as a pull-request comment: summary first, a warning for destroy and replace,
a table, and the text plan in a collapsed ``<details>``; never more than 65,000 characters
(GitHub's limit is 65,536), saying what it cut.

May import: ``reconciler.plan``, ``reconciler.render.text``.
"""

from __future__ import annotations

from reconciler.plan import Action, Change, Plan
from reconciler.render.text import KNOWN_AFTER, render_change, render_text, summary_line

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


def render_markdown(plan: Plan, *, limit: int = MAX_CHARS) -> str:
    """The comment, at most ``limit`` characters."""
    head = [MARKER, "### reconciler plan", "", f"**{summary_line(plan)}**", ""]
    head += _warning(plan)
    changes = plan.actionable
    table = ["| action | key pair | key source | fingerprint |", "|---|---|---|---|"]
    rows = [_row(c) for c in changes]
    details_open = ["<details><summary>Show the full plan</summary>", "", "```diff"]
    details_close = ["```", "", "</details>", ""]
    text = render_text(plan, colour=False).rstrip("\n")

    def assemble(n_rows: int, plan_text: str, note: str) -> str:
        parts = list(head)
        if changes:
            parts += table + rows[:n_rows]
            if n_rows < len(rows):
                parts.append(f"| … | {len(rows) - n_rows} more key pairs not shown | | |")
            parts.append("")
        parts += [*details_open, plan_text, *details_close]
        if note:
            parts.append(note)
        return "\n".join(parts) + "\n"

    full = assemble(len(rows), text, "")
    if len(full) <= limit:
        return full
    # Too long: keep the table whole if possible, cut the text plan at a change boundary.
    note = ("> [!NOTE]\n> This plan is too large for one comment; it was cut. "
            "The complete plan is in the JSON plan (`reconciler plan --format json`).")
    blocks = [line for c in changes for line in [*render_change(c), ""]]
    budget = limit - len(assemble(len(rows), "", note)) - 200
    kept: list[str] = []
    used = 0
    for line in blocks:
        if used + len(line) + 1 > budget:
            break
        kept.append(line)
        used += len(line) + 1
    cut_note = f"# … the rest of the plan is cut ({len(changes)} changes in all)"
    cut_text = "\n".join([*kept, cut_note, summary_line(plan)])
    out = assemble(len(rows), cut_text, note)
    n_rows = len(rows)
    while len(out) > limit and n_rows > 0:
        n_rows = max(0, n_rows - max(1, (len(out) - limit) // 60 + 1))
        out = assemble(n_rows, f"# plan text cut: {len(changes)} changes\n{summary_line(plan)}",
                       note)
    return out
