"""`reconciler output NAME [--private-key [--from-cloud]] [--out FILE] [--force] [--json]`.

Shows a key pair's public key, fingerprints, source and status. The private key is shown only
with ``--private-key``: to FILE (created 0600 with O_EXCL; ``--force`` replaces it atomically)
or to stdout. Without ``--private-key``, ``--out`` writes the public key line. With
``--from-cloud``, the private key the cloud keeps (``reconciler.commands.output_cloud``).

May import: everything but ``reconciler.cli``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reconciler import keys
from reconciler.address import Address
from reconciler.commands.common import integrity_notice, open_existing_state
from reconciler.commands.state import find_entry, private_key_note
from reconciler.env import Env, ExitCode
from reconciler.errors import KeyFormatError, StateError, UsageError
from reconciler.fsutil import explain
from reconciler.model import SENSITIVE, Secret, StateKeyPair
from reconciler.state.files import replace_file, write_new_file
from reconciler.targets import state_addressing


def run(args: argparse.Namespace, env: Env) -> int:
    if getattr(args, "from_cloud", False):
        from reconciler.commands import output_cloud

        return output_cloud.run(args, env)
    # Revealing a private key needs a verified state (and so the key); the rest does not.
    store = open_existing_state(args, env, verify=bool(args.private_key))
    state = store.load()
    entry = find_entry(state, args.name, store=store)
    address = state_addressing(state).keypair(entry.name, entry.target)
    notice = integrity_notice(store)
    if notice:  # with --private-key only a format 1 state: its envelopes are authenticated
        env.err(notice)
    secret: Secret | None = None
    if args.private_key:
        if entry.private_key is None:
            raise StateError(f"{address} has no private key: "
                             f"{private_key_note(entry)}.")
        secret = store.unseal(entry.name, entry.private_key, target=entry.target)
        _check_pair(entry, secret, address)
    if args.out:
        path = env.resolve(args.out)
        text = secret.reveal() if secret is not None else entry.public_key
        write_file(path, text if text.endswith("\n") else text + "\n", force=bool(args.force))
        what = "private key" if secret is not None else "public key"
        env.err(f"Wrote the {what} of {address} to {path} (mode 0600).")
        secret = None  # written to the file, not to stdout
    if args.json:
        env.out(json.dumps(_summary(entry, secret), indent=2))
    elif secret is not None:
        env.stdout.write(secret.reveal() if secret.reveal().endswith("\n")
                         else secret.reveal() + "\n")
    elif not args.out:
        env.out(_text(entry))
    return ExitCode.OK


def _check_pair(entry: StateKeyPair, secret: Secret, address: Address) -> None:
    """Never hand out a private key that is not the recorded public key's half (a state file
    edited by hand, or an old ciphertext put back, would otherwise pass)."""
    if entry.type == "x509" or not entry.public_key:
        return
    try:
        matches = keys.same_key(keys.public_key_of(secret), entry.public_key)
    except KeyFormatError:
        matches = False
    if not matches:
        raise StateError(f"the private key stored for {address} is not "
                         "the half of its recorded public key; the state was altered. Restore "
                         "it from its .backup file, or replace the key pair (`reconciler apply "
                         f"--replace {address}`)")


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
    """Create ``path`` 0600 with O_EXCL; with ``force`` replace it atomically instead.

    Never through a symbolic link; a write that fails (a full disk, a quota) leaves no file
    behind (or, with ``force``, the old one as it was)."""
    data = text.encode()
    try:
        if force:
            replace_file(path, data)
        else:
            write_new_file(path, data)
    except FileExistsError:
        raise UsageError(f"{path} exists; not overwriting it. Use --force to replace it.") \
            from None
    except OSError as exc:
        raise UsageError(f"{explain(exc, path)}. Nothing was written to {path}.") from None
