"""A key pair's ``deliver:`` list: the rules beyond the schema, and the sinks it builds.

Each entry is one sink: ``csms: {secret, kms_key_id, target}`` or ``age_file: {path,
recipients}``. A key pair delivers only a private key reconciler holds (generated here, or by
the cloud): an imported public key has none. A csms ``target`` must be declared; an age file's
path is relative to the manifest file, and each recipient must be a valid age public key
(checked with pyrage, imported only when a manifest has an age file). Across key pairs, two
deliveries may not write the same secret in one target, or the same file.

May import: ``reconciler.model``, ``reconciler.manifest_schema``, ``reconciler.yamlsafe``,
``reconciler.address``, ``reconciler.keys``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from reconciler.address import DEFAULT_TARGET
from reconciler.keys import looks_like_private_key
from reconciler.manifest_schema import show
from reconciler.model import (
    AGE_FILE_SINK,
    CSMS_SINK,
    DeliverySink,
    DesiredKeyPair,
    KeySource,
    SourceLocation,
)
from reconciler.yamlsafe import NodePath, YamlDocument

# (path under the key pair, summary, detail): one problem of a deliver: list
Report = Callable[[NodePath, str, str], None]


def sinks_of(item: Mapping[str, object], *, doc: YamlDocument, path: NodePath,
             base: Path, source: KeySource | None, declared: Mapping[str, object] | None,
             report: Report) -> tuple[DeliverySink, ...]:
    """The sinks of one key pair item (``declared``: the targets block's names, or None
    without one); every problem through ``report``."""
    listed = item.get("deliver")
    if not isinstance(listed, list):
        return ()
    if source is KeySource.IMPORT:
        report(("deliver",), "deliver needs a private key that reconciler holds, and an "
               "imported public key has none here",
               "deliver the private key where it is kept now, or let reconciler generate the "
               "key pair (generate: ed25519) and drop public_key")
        return ()
    out: list[DeliverySink] = []
    for index, entry in enumerate(listed):
        at: NodePath = ("deliver", index)
        if not isinstance(entry, dict) or len(entry) != 1:
            continue  # the schema said so
        here = doc.location((*path, *at))
        csms, age = entry.get(CSMS_SINK), entry.get(AGE_FILE_SINK)
        if isinstance(csms, dict):
            sink = _csms(csms, here, at, declared, report)
        elif isinstance(age, dict):
            sink = _age_file(age, here, at, base, report)
        else:
            continue
        if sink is None:
            continue
        if any(s.id == sink.id and s.target == sink.target for s in out):
            report(at, f"{show(sink.id)} is listed twice", "list each sink once")
            continue
        out.append(sink)
    return tuple(out)


def _csms(block: Mapping[str, object], here: SourceLocation, at: NodePath,
          declared: Mapping[str, object] | None, report: Report) -> DeliverySink | None:
    secret, key, target = (block.get(k) for k in ("secret", "kms_key_id", "target"))
    if not isinstance(secret, str):
        return None
    if isinstance(target, str):
        if declared is None:
            report((*at, CSMS_SINK, "target"), "the sink names a target, but no targets block "
                   "declares any", "drop target: the secret is then in the key pair's project")
            return None
        if target not in declared:
            known = ", ".join(sorted(declared)) or "none"
            report((*at, CSMS_SINK, "target"), f"no target named {show(target)} in the "
                   "targets block", f"declared targets: {known}; check the spelling")
            return None
    return DeliverySink(kind=CSMS_SINK, key=secret, location=here,
                        kms_key_id=key if isinstance(key, str) and key else None,
                        target=target if isinstance(target, str) else None)


def _age_file(block: Mapping[str, object], here: SourceLocation, at: NodePath, base: Path,
              report: Report) -> DeliverySink | None:
    written, recipients = block.get("path"), block.get("recipients")
    if not isinstance(written, str) or not isinstance(recipients, list):
        return None
    if any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in written):
        report((*at, AGE_FILE_SINK, "path"), f"{show(written)} is not a file name reconciler "
               "writes (it holds a control character: a NUL, a newline, an escape)",
               "give a path relative to the manifest file, of printable characters")
        return None
    given = tuple(r for r in recipients if isinstance(r, str))
    ok = True
    for index, recipient in enumerate(given):
        if looks_like_private_key(recipient):
            ok = False
            report((*at, AGE_FILE_SINK, "recipients", index), "this is an age secret key (an "
                   "identity, not shown), not a recipient", "give its public key (`age-keygen "
                   "-y KEYFILE` prints it: age1...), and make a new identity if this one was "
                   "committed")
        elif not valid_recipient(recipient):
            ok = False
            report((*at, AGE_FILE_SINK, "recipients", index), f"{show(recipient)} is not a "
                   "valid age recipient", "give the public key age-keygen printed (age1...)")
    if not ok:
        return None
    if written.strip().lower().endswith((".yaml", ".yml")):
        report((*at, AGE_FILE_SINK, "path"), f"{show(written)} is named as a manifest: a plan "
               "over its directory would read the age file as one and fail",
               "name it *.age (the usual name), or any name that is not *.yaml or *.yml")
        return None
    path = Path(written).expanduser()
    resolved = path if path.is_absolute() else base / path
    return DeliverySink(kind=AGE_FILE_SINK, key=written, location=here,
                        path=str(Path(os.path.abspath(resolved))), recipients=given)


def valid_recipient(text: str) -> bool:
    """An age X25519 recipient whose checksum holds (pyrage, imported here only)."""
    import pyrage

    try:
        pyrage.x25519.Recipient.from_str(text)
    except Exception:  # pyrage raises its own RecipientError, or ValueError
        return False
    return True


def sink_target(sink: DeliverySink, keypair_target: str) -> str:
    """Where a sink lives: its own target (csms), else its key pair's."""
    return sink.target or keypair_target


def clashes(keypairs: Iterable[DesiredKeyPair], targets: Iterable[str]
            ) -> list[tuple[SourceLocation, str, str]]:
    """Deliveries that would write one secret (in one target) or one file twice: (where,
    summary, detail) each, for the second and later."""
    every = tuple(targets) or (DEFAULT_TARGET,)
    seen: dict[tuple[str, str], tuple[str, SourceLocation]] = {}
    out: list[tuple[SourceLocation, str, str]] = []
    for kp in keypairs:
        for target in kp.targets or every:
            for sink in kp.deliver:
                # a file by where a write lands: two spellings through a link are one file
                where = ("", os.path.realpath(sink.path or "")) if sink.kind == AGE_FILE_SINK \
                    else (sink_target(sink, target), sink.id)
                first = seen.get(where)
                if first is None:
                    seen[where] = (kp.name, sink.location)
                    continue
                if first == (kp.name, sink.location):
                    if sink.kind == AGE_FILE_SINK:
                        out.append((sink.location, f"key pair {show(kp.name)} lives in several "
                                    f"targets, and each would write {show(sink.key)}",
                                    "give it one target, or one key pair per target with "
                                    "its own file"))
                    else:
                        out.append((sink.location, f"key pair {show(kp.name)} lives in several "
                                    f"targets, and each would write CSMS secret "
                                    f"{show(sink.key)} in target {show(where[0])}",
                                    "drop the sink's target (each target's CSMS then holds "
                                    "its own secret), or give the key pair one target"))
                    break
                out.append((sink.location, f"{show(sink.id)} is delivered already by key pair "
                            f"{show(first[0])} (at {first[1]})",
                            "each sink receives one key pair's private key: choose another "
                            "secret name or path"))
    return out

