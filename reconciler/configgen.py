"""Generated configuration: the manifest ``import --all --generate-config-out FILE`` writes.

``render_manifest(declarations)`` is pure and stable: the same declarations give the same
bytes (sorted by name, no clock, no host), so a re-run over an unchanged estate writes the
same file and a review sees only what is new. The file names the schema by its ``$id`` (it
can be moved anywhere), holds one document of key pairs (no provider, targets or backend
block: those are the manifests' it is written beside), and every string is a YAML
double-quoted scalar with everything that is not printable escaped, so that no value (a
description from the cloud) can break a line or the document.

May import: ``reconciler.onboarding``, ``reconciler.manifest_schema``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from reconciler.manifest_schema import SCHEMA_ID
from reconciler.onboarding import Declaration

HEADER = (
    f"# yaml-language-server: $schema={SCHEMA_ID}\n"
    "# Written by `reconciler import --all`: key pairs that existed in the cloud and that no\n"
    "# manifest declared, as the cloud holds them (their public keys, so that nothing is\n"
    "# replaced). Review, keep it beside the manifests it was made with, and commit it.\n"
    "apiVersion: reconciler/v1\n"
    "kind: KeyPairs\n"
)
CUSTODY_NOTE = ("# the cloud holds the private key; the API does not say how it is encrypted:"
                " check the type")
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# Words YAML (1.1, as PyYAML reads it, or 1.2) takes for something other than a string.
_NOT_STRINGS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def quote(text: str) -> str:
    """``text`` as a YAML double-quoted scalar: quotes and backslashes escaped, and every
    character that is not printable (line and paragraph separators, NEL, controls) written
    as an escape, which YAML reads back as that very character."""
    out = ['"']
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def word(text: str) -> str:
    """A name, id or keyword: plain when YAML reads it back as that string, else quoted."""
    if _PLAIN.fullmatch(text) and text.lower() not in _NOT_STRINGS:
        return text
    return quote(text)


def _entry(d: Declaration) -> list[str]:
    lines = [f"  - name: {word(d.name)}", f"    public_key: {quote(d.public_key)}"]
    if d.type != "ssh":
        lines.append(f"    type: {word(d.type)}")
    for key, value in (("user_id", d.user_id), ("scope", d.scope)):
        if value is not None:
            lines.append(f"    {key}: {word(value)}")
    if d.description is not None:
        lines.append(f"    description: {quote(d.description)}")
    if d.custody:
        lines += [f"    key_protection:  {CUSTODY_NOTE}",
                  "      encryption: {type: default}"]
    if d.targets:
        lines.append(f"    targets: [{', '.join(word(t) for t in d.targets)}]")
    return lines


def render_manifest(declarations: Iterable[Declaration]) -> str:
    """The whole file: the header, then every declaration, sorted by name."""
    body = [HEADER.rstrip("\n"), "keypairs:"]
    for d in sorted(declarations, key=lambda x: x.name):
        body += _entry(d)
    return "\n".join(body) + "\n"
