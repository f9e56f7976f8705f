"""The human plan, close to Terraform's, because people and tools (Atlantis) read it.

Pure: a ``Plan`` in, a string out. Colour only when asked (the CLI asks on a terminal and
never with ``NO_COLOR``). Public keys are shown abbreviated; fingerprints in full. Every
value, name and note is passed through ``textsafe.printable`` before it is placed, so text
from the cloud, a manifest or the state cannot drive the terminal; the colour codes are the
only escape sequences in the output.

May import: ``reconciler.plan``, ``reconciler.model``, ``reconciler.attributes``,
``reconciler.textsafe``, ``reconciler.address``.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping
from typing import Any

from reconciler.model import SENSITIVE
from reconciler.plan import (
    REASON_NO_CONFIG,
    REASON_REKEYED,
    Action,
    Change,
    Drift,
    DriftKind,
    Mode,
    Plan,
    field_changes,
)
from reconciler.textsafe import printable

KNOWN_AFTER = "(known after apply)"
ATTRIBUTE_ORDER = ("name", "cloud_name", "source", "algorithm", "type", "public_key",
                   "fingerprint",
                   "user_id", "scope", "description", "key_protection", "private_key")
# A delivery's attributes (``kinds/delivery``): whose key, which sink, what was delivered.
DELIVERY_ORDER = ("key_pair", "key_pair_target", "sink", "secret", "kms_key_id", "path",
                  "recipients", "version_id", "digest", "fingerprint", "delivered")
# Other kinds' attributes, in the order shown (a key pair's are ATTRIBUTE_ORDER).
KIND_ATTRIBUTES = {"binding": ("key_pair", "server", "server_id", "status", "key_name"),
                   "delivery": DELIVERY_ORDER,
                   "deposed": ("key_pair", "name", "public_key", "fingerprint")}
RULE = "─" * 77

_HEADERS = {
    Action.CREATE: "will be created",
    Action.IMPORT: "will be imported",
    Action.UPDATE: "will be updated in-place",
    Action.REPLACE: "must be replaced",
    Action.DELETE: "will be destroyed",
    Action.FORGET: "will be removed from state, with its private key",
}
_GLYPHS = {Action.CREATE: "  +", Action.UPDATE: "  ~", Action.REPLACE: "-/+",
           Action.DELETE: "  -", Action.IMPORT: "   ", Action.FORGET: "  ."}
_COLOURS = {"+": "32", "-": "31", "~": "33", "-/+": "35", "+/-": "35", "#": "1"}


def _header(change: Change) -> str:
    if change.reason == REASON_REKEYED:  # the entry stays, with the cloud's new key
        return "will forget its private key"
    return _HEADERS[change.action]


class _Painter:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=77, break_on_hyphens=False)


# Text that JSON quotes as it is: nothing to escape, nothing for ``printable`` to change.
_PLAIN = re.compile(r"[A-Za-z0-9 ._:/+=@,()\[\]-]*")


def _value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, list):  # a delivery's recipients
        return printable(json.dumps(value, ensure_ascii=False))
    text = str(value)
    if _PLAIN.fullmatch(text):  # what json.dumps makes of it, and printable keeps
        return f'"{text}"'
    # json.dumps escapes C0 controls; DEL, C1 and bidi overrides pass, so: printable.
    return printable(json.dumps(text, ensure_ascii=False))


def _short_key(value: Any) -> Any:
    """Abbreviate a public key: type, the start and the end of its base64."""
    if not isinstance(value, str):
        return value
    parts = value.split()
    if len(parts) >= 2 and len(parts[1]) > 40:
        return f"{parts[0]} ...{parts[1][-24:]}"  # the start is the same for every key of a type
    return value


def _shown(key: str, value: Any) -> str:
    return _value(_short_key(value) if key == "public_key" else value)


def _width(keys: list[str]) -> int:
    return max((len(k) for k in keys), default=0)


def _order(change: Change) -> tuple[str, ...]:
    return KIND_ATTRIBUTES.get(change.address.kind, ATTRIBUTE_ORDER)


def _create_body(change: Change) -> list[tuple[str, str]]:
    after = change.after or {}
    lines: list[tuple[str, str]] = []
    for key in _order(change):
        if key == "private_key":
            if "private_key" in change.after_unknown:
                lines.append(("+", f"{key} = {SENSITIVE}"))
            continue
        if key in change.after_unknown:
            lines.append(("+", f"{key} = {KNOWN_AFTER}"))
        elif after.get(key) is not None:
            lines.append(("+", f"{key} = {_shown(key, after[key])}"))
    return lines


def _delete_body(change: Change) -> list[tuple[str, str]]:
    before = change.before or {}
    lines: list[tuple[str, str]] = []
    for key in _order(change):
        if key == "private_key":
            if change.prior is not None and change.prior.private_key is not None:
                lines.append(("-", f"{key} = {SENSITIVE} -> null"))
            continue
        if before.get(key) is not None:
            lines.append(("-", f"{key} = {_shown(key, before[key])} -> null"))
    return lines


def _update_body(change: Change) -> list[tuple[str, str]]:
    before = change.before or {}
    after = change.after or {}
    diffs = field_changes(change)
    delivery = change.address.kind == "delivery"
    lines: list[tuple[str, str]] = [] if delivery else [(" ", f"name = {_value(change.name)}")]
    hidden = 0
    for key in _order(change):
        if key == "name":
            continue
        if delivery and key in ("key_pair", "sink") and before.get(key) is not None:
            lines.append((" ", f"{key} = {_shown(key, before[key])}"))
            continue
        forces = "  # forces replacement" if key in change.replace_paths else ""
        if key == "private_key":
            if "private_key" in change.after_unknown:
                was = SENSITIVE if change.prior and change.prior.private_key else "null"
                lines.append(("~", f"{key} = {was} -> {SENSITIVE}"))
            continue
        if key in change.after_unknown:
            old = before.get(key)
            lines.append(("~", f"{key} = {_shown(key, old)} -> {KNOWN_AFTER}{forces}"))
        elif key in diffs:
            old, new = diffs[key]
            lines.append(("~", f"{key} = {_shown(key, old)} -> {_shown(key, new)}{forces}"))
        elif before.get(key) is not None or after.get(key) is not None:
            hidden += 1
    if hidden:
        lines.append((" ", f"# ({hidden} unchanged attributes hidden)"))
    return lines


def _import_body(change: Change) -> list[tuple[str, str]]:
    after = change.after or {}
    lines = [(" ", f"name = {_value(change.name)}")]
    for key in ("source", "public_key", "fingerprint"):
        if after.get(key) is not None:
            lines.append((" ", f"{key} = {_shown(key, after[key])}"))
    return lines


def _align(lines: list[tuple[str, str]]) -> list[tuple[str, str]]:
    keys = [text.split(" = ", 1)[0] for _, text in lines if " = " in text]
    width = _width(keys)
    out = []
    for sign, text in lines:
        if " = " in text and not text.startswith("#"):
            key, rest = text.split(" = ", 1)
            text = f"{key.ljust(width)} = {rest}"
        out.append((sign, text))
    return out


def _block(header: str, glyph: str, lines: list[tuple[str, str]], name: str,
           paint: _Painter, *, kind: str = "keypair") -> list[str]:
    out = [paint(f"  # {printable(header)}", "1")]
    shown = printable(name) if kind == "keypair" else printable(json.dumps(name)[1:-1])
    out.append(f"{paint(glyph, _COLOURS.get(glyph.strip(), '0')) if glyph.strip() else glyph}"
               f" resource \"{kind}\" \"{shown}\" {{")
    for sign, text in _align(lines):
        mark = paint(sign, _COLOURS[sign]) if sign in _COLOURS else sign
        out.append(f"      {mark} {text}")
    out.append("    }")
    return out


def render_change(change: Change, *, paint: _Painter | None = None) -> list[str]:
    paint = paint or _Painter(False)
    header = f"{change.address} {_header(change)}"
    lines: list[str] = []
    if change.action is Action.CREATE:
        body = _create_body(change)
    elif change.action in (Action.DELETE, Action.FORGET):
        body = _delete_body(change)
    elif change.action is Action.IMPORT:
        body = _import_body(change)
    else:
        body = _update_body(change)
    glyph = "+/-" if change.rotating else _GLYPHS[change.action]  # Terraform's order
    lines.extend(_block(header, glyph, body, change.name, paint,
                        kind=change.address.kind))
    insert_at = 1
    if change.importing:  # Terraform 1.5+: "# (imported from "id")" under the header
        lines.insert(insert_at, f"  # (imported from {_value(change.name)})")
        insert_at += 1
    if change.action is Action.DELETE and change.reason == REASON_NO_CONFIG:
        lines.insert(insert_at,
                     f"  # (because {printable(str(change.address))} is not in the manifests)")
        insert_at += 1
    for note in change.notes:
        lines.insert(insert_at, f"  # ({printable(note)})")
        insert_at += 1
    return lines


def _render_drift(drift: tuple[Drift, ...], paint: _Painter) -> list[str]:
    out = [
        paint("Note: Objects have changed outside of reconciler", "1"),
        "",
        "reconciler detected the following changes made outside of reconciler since the last",
        '"reconciler apply" which may have affected this plan:',
        "",
    ]
    for d in drift:
        if d.address.kind == "delivery":
            out.extend(_delivery_drift(d, paint))
        elif d.address.kind in KIND_ATTRIBUTES:
            after = d.after or {}
            lines = [(" ", f"name = {_value(d.name)}")] + [
                ("~", f"{k} = {_value(d.before.get(k))} -> {_value(after.get(k))}")
                for k in KIND_ATTRIBUTES[d.address.kind] if d.before.get(k) != after.get(k)]
            gone = "has been deleted" if d.kind is DriftKind.DELETED else "has changed"
            out.extend(_block(f"{d.address} {gone}", "  ~", lines, d.name, paint,
                              kind=d.address.kind))
        elif d.kind is DriftKind.DELETED:
            lines = [("-", f"{k} = {_shown(k, d.before[k])} -> null")
                     for k in ("name", "public_key", "fingerprint") if d.before.get(k)]
            out.extend(_block(f"{d.address} has been deleted", "  -", lines, d.name, paint))
        else:
            after = d.after or {}
            lines = [(" ", f"name = {_value(d.name)}")]
            shown = ("key_protection",) if d.kind is DriftKind.CUSTODY else ("public_key",
                                                                             "fingerprint")
            for k in shown:
                if d.before.get(k) != after.get(k):
                    lines.append(("~", f"{k} = {_shown(k, d.before.get(k))} -> "
                                       f"{_shown(k, after.get(k))}"))
            out.extend(_block(f"{d.address} has changed", "  ~", lines, d.name, paint))
        out.append("")
    return out


def _delivery_drift(d: Drift, paint: _Painter) -> list[str]:
    keep = [("key_pair", " "), ("sink", " "), ("secret", " "), ("path", " ")]
    lines = [(" ", f"{k} = {_value(d.before[k])}") for k, _ in keep if d.before.get(k)]
    if d.kind is DriftKind.DELETED:
        return _block(f"{d.address} has been deleted", "  -", lines, d.name, paint,
                      kind="delivery")
    after = d.after or {}
    for k in ("version_id", "digest"):
        if d.before.get(k) != after.get(k):
            lines.append(("~", f"{k} = {_value(d.before.get(k))} -> {_value(after.get(k))}"))
    return _block(f"{d.address} has changed", "  ~", lines, d.name, paint, kind="delivery")


def summary_line(plan: Plan) -> str:
    """Byte-compatible with Terraform's summary line."""
    if plan.mode is Mode.REFRESH_ONLY:
        if plan.drift:
            return f"Plan: 0 to add, 0 to change, 0 to destroy{_forgets(plan)}."
        return "No changes. Your infrastructure still matches the configuration."
    if not plan.actionable:
        return "No changes. Your infrastructure matches the configuration."
    c = plan.counts()
    head = f"{c['import']} to import, " if c["import"] else ""
    return (f"Plan: {head}{c['add']} to add, {c['change']} to change, {c['destroy']} to "
            f"destroy{_forgets(plan)}.")


def _forgets(plan: Plan) -> str:
    """Terraform's ", N to forget" part, only when non-zero."""
    n = plan.counts()["forget"]
    return f", {n} to forget" if n else ""


def _legend(plan: Plan) -> list[str]:
    present = {c.action for c in plan.actionable if not c.rotating}
    rotating = any(c.rotating for c in plan.actionable)
    if present <= {Action.IMPORT}:
        return ["reconciler will adopt key pairs that already exist in the cloud into state."]
    out = ["reconciler used the manifests to generate the following execution plan. Resource",
           "actions are indicated with the following symbols:"]
    for action, text in ((Action.CREATE, "  + create"), (Action.UPDATE, "  ~ update in-place"),
                         (Action.DELETE, "  - destroy"),
                         (Action.FORGET, "  . forget (remove from state, no change in the cloud)"),
                         (Action.REPLACE, "-/+ destroy and then create replacement")):
        if action in present:
            out.append(text)
    if rotating:
        out.append("+/- create replacement and then destroy")
    return out


def render_text(plan: Plan, *, colour: bool = False) -> str:
    """The whole human plan, ending with the summary line."""
    paint = _Painter(colour)
    out: list[str] = []
    if plan.drift:
        out.extend(_render_drift(plan.drift, paint))
        if plan.mode is Mode.REFRESH_ONLY:
            out.append(_wrap("This is a refresh-only plan, so reconciler will not take any "
                             "actions to undo these. If you were expecting these changes then "
                             "you can apply this plan to record the updated values in the state "
                             "without changing any remote objects."))
        else:
            out.append(_wrap("Unless you have made equivalent changes to your manifests, the "
                             "following plan may include actions to undo or respond to these "
                             "changes."))
        out.extend(["", RULE, ""])
    if plan.forget:
        names = printable(", ".join(a.label for a in plan.forget))
        out.append(_wrap(f"Gone from the cloud and from the manifests, so apply drops them from "
                         f"state (their previous state stays in the backup): {names}"))
        out.append("")
    for address, protect in plan.lifecycle:
        out.append(f"{printable(str(address))}: apply records prevent_destroy = "
                   f"{'true' if protect else 'false'} in state (no change in the cloud).")
    if plan.lifecycle:
        out.append("")
    for old, new in plan.moved:
        out.append(f"# {printable(str(old))} has moved to {printable(str(new))}")
    if plan.moved:
        out.append(_wrap("They are in a declared target under another name (the same "
                         "project; or a state written before targets were recorded, whose one "
                         "target is the manifests' only one), so apply records them under that "
                         "name: nothing changes in the cloud."))
        out.append("")
    if plan.actionable:
        out.extend(_legend(plan))
        out.append("")
        out.append("reconciler will perform the following actions:")
        out.append("")
        for change in plan.actionable:
            out.extend(render_change(change, paint=paint))
            out.append("")
    for warning in plan.warnings:
        out.append(paint("Warning:", "1") + " " + _wrap(printable(warning)))
        out.append("")
    summary = summary_line(plan)
    out.append(paint(summary, "1") if plan.actionable else summary)
    if plan.unreachable and not plan.actionable:
        out.append("")
        out.append(_wrap(f"{len(plan.unreachable)} target(s) could not be read (see the errors "
                         "below), so their key pairs are not in this plan: there may be "
                         "changes there."))
    elif not plan.actionable and plan.mode is not Mode.REFRESH_ONLY:
        out.append("")
        out.append(_wrap("reconciler has compared your real infrastructure against your "
                         "manifests and found no differences, so no changes are needed."))
    return "\n".join(out) + "\n"
