"""`reconciler state list|show|rm|mv|pull|push|upgrade|rekey`: inspect or change state; never
touches the cloud's key pairs (a state sealed with a KMS data key asks KMS for it, only).

No output here ever holds private key material: a held key shows as ``(sensitive value)``
and ``pull`` prints the document with its secrets still sealed, ASCII only (every other
character as its JSON escape: the same value, which ``push`` reads back identically).

``pull`` and ``push`` migrate state between backends: ``state pull`` prints the document of
the configured backend (local or s3, journal folded in); ``state push FILE`` replaces the
configured backend's state with FILE. A local state file with a journal beside it (an
interrupted run) is pushed with its journal folded in.

``upgrade`` is the one way a format 1 state (reconciler 0.1.0, no integrity check) becomes
format 3: every other write refuses it, because nothing in a format 1 file tells a real old one
from an authenticated state stripped of its MAC. Run once, by someone who checked the file. It
also migrates a format 2 state now (the first write would otherwise do it).

``rekey`` seals every private key again under a fresh state key now (a new KMS data key, a
passphrase with a new salt), the state's integrity key with it; lineage, serial and entries
stay as they are.

May import: everything but ``reconciler.cli``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from reconciler.address import (
    KEYPAIR,
    Address,
    AddressSyntaxError,
    AmbiguousAddressError,
    is_target_name,
    parse_address,
    resolve_one,
)
from reconciler.commands.common import (
    integrity_notice,
    lock_timeout,
    open_existing_state,
    open_state,
    refuse_without_lock,
)
from reconciler.env import Env, ExitCode
from reconciler.errors import StateError, UsageError
from reconciler.fsutil import explain, read_regular
from reconciler.model import SENSITIVE, EntryStatus, KeySource, State, StateKeyPair
from reconciler.state.codec import FORMAT_VERSION, ascii_document, entry_to_dict
from reconciler.state.protocol import StateStore
from reconciler.targets import state_addressing


def run(args: argparse.Namespace, env: Env) -> int:
    sub = args.state_command
    if sub in ("rm", "mv", "push", "upgrade", "rekey"):
        refuse_without_lock(args, operation=f"state {sub}")
    if sub == "push":  # may create the state: the first push to a new backend
        return _push(args, env, open_state(args, env, discover=True))
    # Reading commands work without the key (unverified, and say so); writing ones need it.
    store = open_existing_state(args, env, verify=sub in ("rm", "mv", "upgrade", "rekey"))
    if sub == "list":
        state = store.load()
        run = state_addressing(state)
        names = sorted(run.keypair(a.name, a.target).label for a in state.keypairs)
        _say_unverified(env, store)
        for name in names:
            env.out(name)
        return ExitCode.OK
    if sub == "show":
        state = store.load()
        entry = find_entry(state, args.name, store=store)
        _say_unverified(env, store)
        env.out(render_entry(entry, state_addressing(state).keypair(entry.name, entry.target)))
        return ExitCode.OK
    if sub == "rm":
        return _rm(args, env, store)
    if sub == "mv":
        return _mv(args, env, store)
    if sub == "upgrade":
        return _upgrade(args, env, store)
    if sub == "rekey":
        return _rekey(args, env, store)
    if sub == "pull":
        # ASCII only: no raw control or bidi text reaches the terminal
        data = ascii_document(store.export(), source=store.description)
        _say_unverified(env, store)
        env.stdout.write(data.decode("ascii"))
        return ExitCode.OK
    raise UsageError(f"unknown state subcommand {sub!r}")


def _say_unverified(env: Env, store: StateStore) -> None:
    notice = integrity_notice(store)
    if notice:
        env.err(notice)


def find_entry(state: State, name: str, *, store: StateStore) -> StateKeyPair:
    """The entry ``name`` (a bare name or an address) names; one, or a ``StateError``."""
    run = state_addressing(state)
    by_address = {run.keypair(a.name, a.target): entry for a, entry in state.keypairs.items()}
    try:
        found = resolve_one(name, by_address)
    except (AddressSyntaxError, AmbiguousAddressError) as exc:
        raise StateError(f"{exc}; `reconciler state list` shows what the state "
                         f"{store.description} holds.") from None
    if found is None:
        raise StateError(
            f"no key pair named {name!r} in the state {store.description}; "
            "`reconciler state list` shows what it holds."
        )
    return by_address[found]


def private_key_note(entry: StateKeyPair) -> str:
    """Whether state holds the private key, and if not, why and where it is."""
    if entry.private_key is not None:
        return "held in state, encrypted"
    if entry.source is KeySource.IMPORT:
        return "not in state: imported, the private key stays with its owner"
    if entry.key_protection is not None:
        return "not in state: the cloud keeps it (key_protection); use the cloud's export"
    if entry.status is EntryStatus.TAINTED:
        return ("not in state: the cloud generated it and it never arrived; the next plan "
                "replaces this key pair")
    if entry.status is EntryStatus.PENDING:
        return ("not in state: an apply was interrupted while the cloud created it; the next "
                "plan creates or replaces this key pair")
    return "not in state: adopted from the cloud without its private key"


def render_entry(entry: StateKeyPair, address: Address) -> str:
    """All readable fields, Terraform's `state show` shape; the private key only as a marker."""
    fields = entry_to_dict(entry)
    del fields["private_key"]  # shown below as a marker, never as its envelope
    if entry.generation:
        fields["cloud_name"] = entry.cloud_name
    if entry.deposed is not None:  # a rotation under way: its key as a marker too
        fields["deposed"] = {**fields["deposed"], "private_key": (
            "(sensitive value)" if entry.deposed.private_key is not None else None)}
    width = max(len(k) for k in (*fields, "private_key"))
    lines = [f"# {address}:", f'resource "{address.kind}" "{entry.name}" {{']
    for key, value in fields.items():
        lines.append(f"    {key:<{width}} = {json.dumps(value)}")
    held = SENSITIVE if entry.private_key is not None else "null"
    lines.append(f"    {'private_key':<{width}} = {held}  # {private_key_note(entry)}")
    lines.append("}")
    return "\n".join(lines)


def _rm(args: argparse.Namespace, env: Env, store: StateStore) -> int:
    with store.lock(operation="state rm", timeout=lock_timeout(args)):
        before = store.load()
        entry = find_entry(before, args.name, store=store)
        address = state_addressing(before).keypair(entry.name, entry.target)
        if entry.deposed is not None:
            raise UsageError(
                f"state rm: {address} is being rotated: its previous generation "
                f"{entry.deposed.cloud_name!r} is still in the cloud, and state holds the only "
                "private key of it, which servers may still accept; run `reconciler apply` "
                "to finish the rotation, then remove it")
        store.forget(entry.name, target=entry.target)
        state = store.commit()
    env.out(f"Removed {address}")
    env.out("Successfully removed 1 resource instance(s).")
    env.err(
        f"{address} is no longer managed (state serial {state.serial}); the key pair "
        "itself still exists in the cloud: `state rm` never touches it."
    )
    if entry.private_key is not None:
        env.err(
            f"Warning: state held the private key of {address}; it is gone from state. "
            f"{store.description}.backup keeps the previous version until the next change."
        )
    return ExitCode.OK


def _mv(args: argparse.Namespace, env: Env, store: StateStore) -> int:
    """Move one entry to another address: another name, another target, or both (a target
    renamed by hand, a key pair adopted under the wrong name). Its private key is sealed
    again, bound to the new address; the cloud is not asked anything."""
    try:
        query = parse_address(args.destination)
    except AddressSyntaxError as exc:
        raise UsageError(f"state mv: the destination {exc}") from None
    with store.lock(operation="state mv", timeout=lock_timeout(args)):
        before = store.load()
        entry = find_entry(before, args.source, store=store)
        run = state_addressing(before)
        source = run.keypair(entry.name, entry.target)
        if query.name != entry.name or query.target is None:
            raise UsageError(
                f"state mv: a key pair's name is its name in the cloud, so state mv moves it "
                f"between targets only: give the destination as "
                f"'{Address('TARGET', KEYPAIR, entry.name).display(qualified=True)}' (the "
                "target state should record it in)")
        target = query.target
        if not is_target_name(target):
            raise UsageError(f"state mv: {target!r} is not a target name")
        shown = Address(target, source.kind, query.name, qualified=True)
        if before.by_name(query.name, target) is not None:
            raise StateError(f"state mv: {shown} is in state already; nothing was changed. "
                             "Remove it first with `reconciler state rm` if it is stale")
        if (query.name, target) == (entry.name, entry.target):
            raise UsageError(f"state mv: {source} is already at that address")
        if entry.deposed is not None:
            raise UsageError(f"state mv: {source} is being rotated (its previous generation "
                             f"{entry.deposed.cloud_name!r} is still in the cloud); run "
                             "`reconciler apply` to finish the rotation, then move it")
        sealed = entry.private_key
        if sealed is not None:
            sealed = store.seal(entry.name, store.unseal(entry.name, sealed,
                                                         target=entry.target), target=target)
        store.record(dataclasses.replace(entry, target=target, private_key=sealed))
        store.forget(entry.name, target=entry.target)
        state = store.commit()
    env.out(f"Move {source.display(qualified=True)} to {shown}")
    env.out("Successfully moved 1 object(s).")
    env.err(f"State serial {state.serial}. The cloud was not changed; the next plan reads it "
            f"from target {target!r}.")
    return ExitCode.OK


def _upgrade(args: argparse.Namespace, env: Env, store: StateStore) -> int:
    with store.lock(operation="state upgrade", timeout=lock_timeout(args)):
        old = store.format_version
        done = store.upgrade()
    if done is None:
        env.out(f"{store.description} is already in state format {old}: nothing to "
                "upgrade.")
        return ExitCode.OK
    state, key_id = done
    env.out(f"Upgraded {store.description} to state format {FORMAT_VERSION}: every private key "
            f"sealed again, bound to its address, and the document authenticated with the state "
            f"key ({key_id}). Lineage {state.lineage}, serial {state.serial} "
            f"({len(state.keypairs)} key pairs).")
    env.out(f"{store.description}.backup keeps the format {old} version. This is needed only "
            "once: from now on every write checks the state's integrity.")
    return ExitCode.OK


def _rekey(args: argparse.Namespace, env: Env, store: StateStore) -> int:
    """Every private key sealed again under a fresh key, now, even when nothing else changes
    (one atomic document, as every commit; the backup keeps the previous one)."""
    with store.lock(operation="state rekey", timeout=lock_timeout(args)):
        state, old, new = store.rekey()
    held = sum(1 for e in state.keypairs.values() if e.private_key is not None)
    if new.id == old.id:
        env.out(f"Rekeyed {store.description}: {held} private key(s) sealed again with new "
                f"nonces under the same key ({new.describe()}), serial {state.serial}. The key "
                "itself is the same (a key file is one fixed key); to change it, move the state "
                "to another provider with encryption mode fallback.")
    else:
        env.out(f"Rekeyed {store.description}: {held} private key(s) sealed again under "
                f"{new.describe()} (was {old.describe()}); the state is authenticated with it. "
                f"Lineage {state.lineage}, serial {state.serial} and every entry are unchanged.")
    env.out(f"{store.description}.backup keeps the previous version (sealed under the old key): "
            "remove it once the new one is known good if the old key is to be retired.")
    return ExitCode.OK


def _push(args: argparse.Namespace, env: Env, store: StateStore) -> int:
    path = env.resolve(args.file)
    data = _read_push_source(path, env)
    with store.lock(operation="state push", timeout=lock_timeout(args)):
        state = store.push(data, source=str(path), force=bool(args.force))
    env.out(f"Pushed {path} to {store.description} (lineage {state.lineage}, serial "
            f"{state.serial}, {len(state.keypairs)} key pairs); the previous state is kept as "
            f"{store.description}.backup.")
    return ExitCode.OK


def _read_push_source(path: Path, env: Env) -> bytes:
    """FILE's bytes; for a local state with a journal beside it, the state the journal makes."""
    try:
        data = read_regular(path, limit=1 << 30)  # a FIFO or a device is refused, not read
    except OSError as exc:
        raise UsageError(f"{explain(exc, path, doing='read')}. Nothing was changed.") from None
    if not path.with_name(f"{path.name}.journal").exists():
        return data
    from reconciler.state.local import LocalStateStore

    # Reading folds the journal in without writing anything (secrets stay sealed).
    return LocalStateStore(path, environ=env.environ, notice=env.err).export()
