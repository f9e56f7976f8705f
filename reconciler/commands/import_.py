"""``reconciler import NAME``: adopt a key pair that already exists in the cloud into state.

The key pair must be declared in a manifest (so reconciler knows what it should be). Adoption
never moves a private key out of the cloud's custody on its own: a private key the cloud keeps
is copied into state only with ``--export-private-keys`` (and an API that can export it, kps),
the one rule ``import --all`` (``reconciler.commands.onboard``) follows too.
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
from reconciler.adoption import refusals
from reconciler.commands.common import session
from reconciler.env import Env, ExitCode
from reconciler.errors import Diagnostic, DiagnosticsError, UsageError
from reconciler.kinds.generations import cloud_names, generation_taken
from reconciler.model import Api, DesiredKeyPair, KeySource, Manifest, RemoteKeyPair
from reconciler.targets import desired_by_address


def declared_address(text: str, manifest: Manifest) -> Address:
    """The one declared key pair ``text`` (a name or an address) names, or a ``UsageError``."""
    declared = desired_by_address(manifest)
    try:
        found = resolve_one(text, declared)
    except (AddressSyntaxError, AmbiguousAddressError) as exc:
        raise UsageError(str(exc)) from None
    if found is None:
        raise UsageError(f"{parse_address(text)} is not declared in the manifests; add it to a "
                         "manifest first, so that reconciler knows what it should be")
    return found


def check_arguments(args: argparse.Namespace) -> None:
    """NAME, or --all with --generate-config-out; the onboarding flags only with --all."""
    if args.all:
        if not args.generate_config_out:
            raise UsageError("import --all needs --generate-config-out FILE: the key pairs it "
                             "adopts must be declared, or the next plan would delete them")
        return
    if args.name is None:
        raise UsageError("give the NAME of the key pair to adopt, or --all with "
                         "--generate-config-out FILE to adopt every key pair no manifest "
                         "declares")
    for flag, given in (("--generate-config-out", args.generate_config_out),
                        ("--dry-run", args.dry_run)):
        if given:
            raise UsageError(f"{flag} goes with --all (import NAME adopts one declared key "
                             "pair)")


def run(args: argparse.Namespace, env: Env) -> int:
    check_arguments(args)
    if args.all:
        from reconciler.commands.onboard import run_all

        return run_all(args, env)
    return _run_one(args, env)


def _run_one(args: argparse.Namespace, env: Env) -> int:
    from reconciler.onboarding import adopted_entry

    with session(args, env, operation="import") as sess:
        address = declared_address(args.name, sess.manifest)
        name, target = address.name, address.target
        desired = sess.manifest.by_name()[name]
        if target in sess.reach.failed:
            raise UsageError(f"{address}: target {target} cannot be reached: "
                             f"{sess.reach.failed[target]}")
        api, settings = sess.apis[target], sess.reach.settings[target]
        if address in sess.state.keypairs or (
                target in sess.reach.moves.values()
                and any(a.name == name and sess.reach.moves.get(a.target) == target
                        for a in sess.state.keypairs)):
            raise UsageError(f"{address} is already managed; to adopt it again, first "
                             f"`reconciler state rm {address.label}`")
        other = cloud_names(sess.state.keypairs).get((target, name))
        if other is not None:
            summary, detail = generation_taken(name, other, address)
            raise UsageError(f"{address}: {summary}; {detail}")
        env.out(f"{address}: Importing from ID \"{name}\"...")
        remote = api.get_keypair(name)
        if remote is None:
            raise UsageError(f"{address}: no key pair of that name exists in the "
                             "cloud; `reconciler apply` creates it")
        # Terraform imports what is there; the next plan shows how it differs. A declared key
        # that differs is recorded as not applied (no spec digest), so that plan replaces it.
        other_key = desired.source is KeySource.IMPORT and bool(desired.public_key) and \
            not keys.same_key(desired.public_key or "", remote.public_key, key_type=desired.type)
        custody = bool(remote.key_protection)
        asked = bool(args.export_private_keys)
        if not other_key:  # another key is replaced by the next plan, scope and custody too
            _refuse(desired, remote, api=settings.api, shown=str(address), label=address.label,
                    holds=asked and api.capabilities.export)
        private = api.export_private_key(name) if custody and asked else None
        if private is not None and not keys.is_half_of(private, remote.public_key,
                                                       key_type=remote.type):
            raise UsageError(f"{address}: the private key the cloud exported is not the half "
                             "of its public key, so nothing was recorded. Run the import "
                             "again; if it persists, import it without --export-private-keys "
                             "(the cloud keeps its copy) and report it")
        sealed = (sess.store.seal(name, private, target=target) if private is not None
                  else None)
        if not other_key and sealed is None:
            _refuse(desired, remote, api=settings.api, shown=str(address), label=address.label,
                    holds=False)
        sess.store.record(adopted_entry(
            desired, remote, api=settings.api, target=target,
            created=env.clock().strftime("%Y-%m-%dT%H:%M:%SZ"), sealed=sealed,
            applied=not other_key))
        sess.store.commit()
    env.out(f"{address}: Import prepared!")
    env.out("  " + _custody_line(address.label, custody=custody, exported=sealed is not None,
                                 asked=bool(args.export_private_keys),
                                 can_export=api.capabilities.export))
    env.out()
    env.out("Import successful!")
    env.out()
    env.out("The key pair is now in state and will henceforth be managed by reconciler.")
    if other_key:
        env.err(f"Warning: {address}: the cloud holds a different public key than the "
                "manifest declares; state records the cloud's. The next plan replaces it with the "
                "declared key (delete, then import): review it before applying, or put the "
                "cloud's public key in the manifest to keep it.")
    if remote.frozen_state not in (None, 0):  # import --all leaves it for a decision
        env.err(f"Warning: {address}: the cloud has frozen this key pair (frozen_state "
                f"{'unreadable' if (remote.frozen_state or 0) < 0 else remote.frozen_state}); "
                "it is adopted as asked, but the cloud may refuse changes to it until it is "
                "unfrozen: find out why (a violation, an order, a missing real-name check).")
    return ExitCode.OK


def _refuse(desired: DesiredKeyPair, remote: RemoteKeyPair, *, api: Api, shown: str,
            label: str, holds: bool) -> None:
    """Stop, nothing recorded, when the cloud's scope or custody is not what the manifest
    declares and cannot be made so in place (``reconciler.adoption``): at the declaration."""
    refused = refusals(desired, remote, api=api, shown=shown, holds_private_key=holds,
                       how=f"reconciler import {label} --export-private-keys")
    if refused:
        raise DiagnosticsError([Diagnostic(summary=r.summary, detail=r.detail + "; nothing "
                                           "was recorded", location=desired.location)
                                for r in refused])


def _custody_line(label: str, *, custody: bool, exported: bool, asked: bool,
                  can_export: bool) -> str:
    """What became of the private key: one rule for ``import NAME`` and ``import --all``."""
    if exported:
        return ("The private key was exported from the cloud's custody, as "
                "--export-private-keys asked, and is in state (it stays in the cloud too).")
    if custody and asked and not can_export:
        return ("The private key is held only by the cloud, and this API cannot export it; "
                "state does not hold it.")
    if custody:
        return ("The private key is held only by the cloud (key_protection); it was not copied "
                "into state. To copy it: `reconciler state rm "
                f"{label}`, then `reconciler import {label} --export-private-keys`.")
    return ("The private key is not in state (the cloud does not give it out); keep it where "
            "it is.")
