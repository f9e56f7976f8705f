"""`reconciler output NAME [--private-key] [--out FILE] [--force] [--json]`.

Shows a key pair's public key, fingerprints, source and status. The private key is shown only
with ``--private-key``: to FILE (created 0600 with O_EXCL; ``--force`` replaces it atomically)
or to stdout. Without ``--private-key``, ``--out`` writes the public key line.

May import: everything but ``reconciler.cli``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
from pathlib import Path

from reconciler.commands.common import open_state
from reconciler.commands.state import find_entry, private_key_note
from reconciler.env import Env, ExitCode
from reconciler.errors import StateError, UsageError
from reconciler.model import SENSITIVE, Secret, StateKeyPair
from reconciler.state.files import write_fd


def run(args: argparse.Namespace, env: Env) -> int:
    store = open_state(args, env)
    entry = find_entry(store.load(), args.name, store=store)
    secret: Secret | None = None
    if args.private_key:
        if entry.private_key is None:
            raise StateError(f"keypair.{entry.name} has no private key: {private_key_note(entry)}.")
        secret = store.unseal(entry.name, entry.private_key)
    if args.out:
        path = env.resolve(args.out)
        text = secret.reveal() if secret is not None else entry.public_key
        write_file(path, text if text.endswith("\n") else text + "\n", force=bool(args.force))
        what = "private key" if secret is not None else "public key"
        env.err(f"Wrote the {what} of keypair.{entry.name} to {path} (mode 0600).")
        secret = None  # written to the file, not to stdout
    if args.json:
        env.out(json.dumps(_summary(entry, secret), indent=2))
    elif secret is not None:
        env.stdout.write(secret.reveal() if secret.reveal().endswith("\n")
                         else secret.reveal() + "\n")
    elif not args.out:
        env.out(_text(entry))
    return ExitCode.OK


def _summary(entry: StateKeyPair, secret: Secret | None) -> dict[str, object]:
    out: dict[str, object] = {
        "name": entry.name,
        "source": entry.source.value,
        "status": entry.status.value,
        "type": entry.type,
        "public_key": entry.public_key,
        "fingerprint_md5": entry.fingerprint_md5,
        "fingerprint_sha256": entry.fingerprint_sha256,
        "private_key_in_state": entry.private_key is not None,
        "private_key_note": private_key_note(entry),
    }
    if secret is not None:
        out["private_key"] = secret.reveal()
    return out


def _text(entry: StateKeyPair) -> str:
    held = (f"{SENSITIVE} (use --private-key to show it)" if entry.private_key is not None
            else private_key_note(entry))
    rows = (
        ("name", entry.name),
        ("source", entry.source.value),
        ("status", entry.status.value),
        ("public_key", entry.public_key),
        ("fingerprint_md5", entry.fingerprint_md5),
        ("fingerprint_sha256", entry.fingerprint_sha256),
        ("private_key", held),
    )
    return "\n".join(f"{k + ':':<20}{v}" for k, v in rows)


def write_file(path: Path, text: str, *, force: bool) -> None:
    """Create ``path`` 0600 with O_EXCL; with ``force`` replace it atomically instead."""
    data = text.encode()
    if not force:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            raise UsageError(f"{path} exists; not overwriting it. Use --force to replace it.") \
                from None
        except OSError as exc:
            raise UsageError(f"cannot create {path}: {exc.strerror}") from None
        write_fd(fd, data)
        return
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        write_fd(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
