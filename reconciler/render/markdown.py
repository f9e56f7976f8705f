"""The plan as a pull-request comment: summary first, a warning for destroy and replace,
a table, and the text plan in a collapsed ``<details>``; never more than 65,000 characters
(GitHub's limit is 65,536), saying what it cut.

Text that is not ours (names, fingerprints from the cloud) goes into cells through
``textsafe.markdown_code``/``markdown_text``, and the plan's code block is fenced with more
backticks than the plan holds in a row, so nothing in it can end a cell, open HTML or close
the block.

May import: ``reconciler.plan``, ``reconciler.render.text``, ``reconciler.textsafe``.
"""

from __future__ import annotations

import re

from reconciler.plan import Action, Change, Plan
from reconciler.render.text import KNOWN_AFTER, render_text, summary_line
from reconciler.textsafe import code_fence, markdown_code, markdown_text

MAX_CHARS = 65_000
MARKER = "<!-- reconciler-plan -->"  # lets CI find and update its own comment

_ACTION_CELL = {
    Action.CREATE: "`+` create",
    Action.IMPORT: "`<=` import",
    Action.UPDATE: "`~` update",
    Action.REPLACE: "`-/+` **replace**",
    Action.DELETE: "`-` **destroy**",
    Action.FORGET: "`.` **forget** (private key)",
}


def _source(change: Change) -> str:
    if change.desired is not None:
        if change.desired.algorithm:
            return markdown_text(f"generate ({change.desired.algorithm})")
        return markdown_text(change.desired.source.value)
    if change.prior is not None:
        return markdown_text(change.prior.source.value)
    return ""


def _fingerprint(change: Change) -> str:
    if change.action in (Action.CREATE, Action.REPLACE) and "fingerprint" in change.after_unknown:
        return KNOWN_AFTER
    attrs = change.before if change.action in (Action.DELETE, Action.FORGET) else change.after
    value = (attrs or {}).get("fingerprint")
    return markdown_code(str(value)) if value else ""


def _who(change: Change) -> str:
    """The key pair's name; its whole address when the run has several targets (and for a
    previous generation, whose name is its key pair's)."""
    return str(change.address) if change.address.qualified or change.address.kind == "deposed" \
        else change.name


def _action_cell(change: Change) -> str:
    if change.importing:  # adopted, then updated in place
        return f"{_ACTION_CELL[Action.IMPORT]}, {_ACTION_CELL[change.action]}"
    if change.rotating:
        return "`+/-` **replace** (new generation first)"
    return _ACTION_CELL[change.action]


def _row(change: Change) -> str:
    return (f"| {_action_cell(change)} | {markdown_code(_who(change))} | "
            f"{_source(change)} | {_fingerprint(change)} |")


def _warnings(plan: Plan, budget: int) -> list[str]:
    """The plan's warnings as quote lines, as many as fit in ``budget`` characters, then a line
    saying how many more the text plan (and ``reconciler plan``) shows."""
    lines: list[str] = []
    used = 0
    for i, warning in enumerate(plan.warnings):
        line = f"> {markdown_text(warning)}"
        if used + len(line) + 4 > budget:
            rest = len(plan.warnings) - i
            lines += [f"> … and {rest} more warning(s), not shown here: `reconciler plan` "
                      "prints them all.", ">"]
            break
        lines += [line, ">"]
        used += len(line) + 4
    return lines


def _warning(plan: Plan, *, budget: int) -> list[str]:
    destroyed = [_who(c) for c in plan.actionable if c.action is Action.DELETE
                 and c.address.kind != "deposed"]
    replaced = [_who(c) for c in plan.actionable if c.action is Action.REPLACE
                and not c.rotating]
    rotated = [_who(c) for c in plan.actionable if c.rotating]
    forgotten = [_who(c) for c in plan.actionable if c.action is Action.FORGET]
    if not destroyed and not replaced and not forgotten and not plan.warnings \
            and not rotated:
        return []
    lines = ["> [!WARNING]", *_warnings(plan, budget)]
    if forgotten:
        lines.append(f"> **{len(forgotten)} key pair(s) gone from the cloud will be removed "
                     "from state with their private keys:** "
                     + ", ".join(f"`{n}`" for n in forgotten[:50])
                     + (f" and {len(forgotten) - 50} more" if len(forgotten) > 50 else ""))
        if destroyed or replaced:
            lines.append(">")
    if destroyed:
        lines.append(f"> **{len(destroyed)} key pair(s) will be destroyed:** "
                     + ", ".join(markdown_code(n) for n in destroyed[:50])
                     + (f" and {len(destroyed) - 50} more" if len(destroyed) > 50 else ""))
    if replaced:
        if destroyed:
            lines.append(">")
        lines.append(f"> **{len(replaced)} key pair(s) will be replaced** (deleted, then created "
                     "with a new key; servers using the old key lose access): "
                     + ", ".join(markdown_code(n) for n in replaced[:50])
                     + (f" and {len(replaced) - 50} more" if len(replaced) > 50 else ""))
    if rotated:
        if destroyed or replaced:
            lines.append(">")
        lines.append(f"> **{len(rotated)} key pair(s) will be rotated without a gap** (the new "
                     "generation is created first, each bound server is rebound to it, and "
                     "the old one is deleted only once no server holds it): "
                     + ", ".join(markdown_code(n) for n in rotated[:50])
                     + (f" and {len(rotated) - 50} more" if len(rotated) > 50 else ""))
    if lines[-1] == ">":
        lines.pop()
    lines.append("")
    return lines


_SIGNED = re.compile(r"^( +)(-/\+|\+/-|[-+~])( .*)?$")


def diff_lines(text: list[str]) -> list[str]:
    """The text plan with each line's action sign moved to column 0, where GitHub's and
    GitLab's ``diff`` highlighting looks for it (``+`` green, ``-`` and ``-/+`` red; ``~``
    is not coloured by either, but stays in the same column); the indentation is kept."""
    out = []
    for line in text:
        m = _SIGNED.match(line)
        out.append(f"{m.group(2)}{m.group(1)}{m.group(3) or ''}" if m else line)
    return out


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
    # the warnings take at most a quarter of the comment; the table and the text plan the rest
    head = [MARKER, "### reconciler plan", "", f"**{summary_line(plan)}**", "",
            *_warning(plan, budget=limit // 4), *_unverified(plan)]
    changes = plan.actionable
    table = ["| action | key pair | key source | fingerprint |", "|---|---|---|---|"]
    rows = [_row(c) for c in changes]
    text = diff_lines(render_text(plan, colour=False).rstrip("\n").split("\n"))

    fence = code_fence("\n".join(text))

    def assemble(kept_rows: list[str], plan_text: list[str], note: str) -> str:
        parts = list(head)
        if changes:
            parts += table + kept_rows
            if len(kept_rows) < len(rows):
                parts.append(f"| … | {len(rows) - len(kept_rows)} more key pairs not shown | | |")
            parts.append("")
        parts += ["<details><summary>Show the full plan</summary>", "", f"{fence}diff",
                  *plan_text, fence, "", "</details>", ""]
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
