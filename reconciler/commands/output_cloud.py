"""`reconciler output NAME --private-key --from-cloud [--out FILE] [PATH…]`: break-glass.

Exports the private key the cloud keeps (``POST …/keypairs/private-key/export``; v2.1 through
the KPS endpoints) for a key pair reconciler never held: adopted without its private key, or
not managed at all. The target is found as other commands find it, from the manifests in
PATH (or the working directory) and, for a managed key pair, from state. The key is checked
to be the half of the cloud's public key, then written as ``output --private-key`` writes
it: to FILE created 0600 (``--force`` replaces it), or to stdout; never to a log or a
message. State is read only (no lock, nothing written): where state holds the private key
of the key pair the cloud holds (the same fingerprint), the plain ``output --private-key`` is
the way, and this refuses; a key pair re-keyed outside reconciler is exported (state's key is
another key's).

May import: everything but ``reconciler.cli``.
"""

from __future__ import annotations

import argparse

from reconciler import keys
from reconciler.address import (
    Address,
    AddressSyntaxError,
    AmbiguousAddressError,
    parse_address,
    resolve_one,
)
from reconciler.capabilities import apis_with, capabilities
from reconciler.commands.common import (
    announce_credentials,
    debug_logging,
    load,
    open_api,
    open_state,
    run_settings,
)
from reconciler.env import Env, ExitCode
from reconciler.errors import UsageError
from reconciler.model import Manifest, Secret, State
from reconciler.targets import addressing, desired_by_address


def run(args: argparse.Namespace, env: Env) -> int:
    from reconciler.commands.output import write_file

    if not args.private_key:
        raise UsageError("--from-cloud exports the private key the cloud keeps: give "
                         "--private-key too")
    if args.json:
        raise UsageError("--from-cloud writes the private key only; drop --json")
    manifest = load(args, env)
    declared = run_settings(args, env, manifest)
    store = open_state(args, env, manifest.backend, verify=False)
    state = store.load() if store.exists() else None
    address = _address(args.name, manifest_addresses=_known(manifest, state),
                       targets=tuple(declared))
    entry = state.by_name(address.name, address.target) if state is not None else None
    settings = declared[address.target]
    if not capabilities(settings.api).export:
        raise UsageError(f"{address}: api {settings.api} cannot export a private key; use "
                         f"--api {apis_with(lambda c: c.export)} (they see the same key pairs)")
    # the fingerprint of the key pair whose private key state holds
    held = entry.fingerprint_md5 if entry is not None and entry.private_key is not None else None
    with debug_logging(args, env):
        announce_credentials(settings, env)
        api = open_api(settings)
        try:
            cloud = entry.cloud_name if entry is not None else address.name  # NAME-gN
            remote = api.get_keypair(cloud)
            if remote is None:
                raise UsageError(f"{address}: no key pair of that name exists in the cloud")
            if held is not None and remote.fingerprint == held:
                raise UsageError(f"state holds the private key of {address}: `reconciler "
                                 f"output {address.label} --private-key` reads it without "
                                 "exporting it from the cloud")
            if remote.key_protection is False:  # None: this API did not say
                raise UsageError(f"{address}: the cloud keeps no private key for it (its key "
                                 "protection is off), so there is none to export; only who "
                                 "made the key pair holds it")
            secret = api.export_private_key(cloud)
        finally:
            api.close()
    if secret is None:
        raise UsageError(f"{address}: the cloud gave out no private key for it")
    _check(secret, remote.public_key, remote.type, address)
    text = secret.reveal() if secret.reveal().endswith("\n") else secret.reveal() + "\n"
    if args.out:
        path = env.resolve(args.out)
        write_file(path, text, force=bool(args.force))
        env.err(f"Wrote the private key of {address}, exported from the cloud's custody, to "
                f"{path} (mode 0600). State was not changed.")
    else:
        env.stdout.write(text)
    if held is not None:
        env.err(f"State holds the private key of another key for {address}: the key pair was "
                "re-keyed outside reconciler since state recorded it.")
    return ExitCode.OK


def _known(manifest: Manifest, state: State | None) -> list[Address]:
    run = addressing(manifest, state)
    known = list(desired_by_address(manifest, run))
    if state is not None:
        known += [run.keypair(a.name, a.target) for a in state.keypairs
                  if run.keypair(a.name, a.target) not in known]
    return known


def _address(text: str, *, manifest_addresses: list[Address],
             targets: tuple[str, ...]) -> Address:
    """The one address NAME names among the declared and recorded key pairs of the declared
    targets; a key pair neither declares nor records, in a run of one target, is there."""
    in_reach = [a for a in manifest_addresses if a.target in targets]
    try:
        found = resolve_one(text, in_reach)
        if found is not None:
            return found
        if len(targets) == 1:
            query = parse_address(text)
            if query.target in (None, targets[0]):
                return Address(targets[0], query.kind, query.name)
    except (AddressSyntaxError, AmbiguousAddressError) as exc:
        raise UsageError(str(exc)) from None
    raise UsageError(f"{text[:80]!r} is not declared in the manifests or recorded in state for "
                     "a declared target; name it as keypair.NAME[\"TARGET\"] with the "
                     "manifests of that target")


def _check(secret: Secret, public_key: str, key_type: str, address: Address) -> None:
    """Never write a key that is not the half of the cloud's public key."""
    if not keys.is_half_of(secret, public_key, key_type=key_type):
        raise UsageError(f"{address}: the private key the cloud exported is not the half of "
                         "its public key; nothing was written")
