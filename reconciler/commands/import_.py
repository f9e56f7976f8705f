"""``reconciler import NAME``: adopt a key pair that already exists in the cloud into state.

The key pair must be declared in a manifest (so reconciler knows what it should be). No
private key is recorded, unless the cloud keeps one and the API can export it (kps).
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
from reconciler.commands.common import session
from reconciler.env import Env, ExitCode
from reconciler.errors import UsageError
from reconciler.model import EntryStatus, KeySource, Manifest, StateKeyPair
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


def run(args: argparse.Namespace, env: Env) -> int:
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
        env.out(f"{address}: Importing from ID \"{name}\"...")
        remote = api.get_keypair(name)
        if remote is None:
            raise UsageError(f"{address}: no key pair of that name exists in the "
                             "cloud; `reconciler apply` creates it")
        # Terraform imports what is there; the next plan shows how it differs. A declared key
        # that differs is recorded as not applied (no spec digest), so that plan replaces it.
        other_key = desired.source is KeySource.IMPORT and bool(desired.public_key) and \
            not keys.same_key(desired.public_key or "", remote.public_key, key_type=desired.type)
        private = api.export_private_key(name) if remote.key_protection else None
        sealed = (sess.store.seal(name, private, target=target) if private is not None
                  else None)
        sha = (keys.parse_certificate(remote.public_key).fingerprint_sha256
               if remote.type == "x509" else keys.sha256_fingerprint(remote.public_key))
        sess.store.record(StateKeyPair(
            name=name, api=settings.api, source=desired.source,
            public_key=remote.public_key.strip(), fingerprint_md5=remote.fingerprint,
            fingerprint_sha256=sha, created=env.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
            spec_digest="" if other_key else desired.spec_digest,
            algorithm=desired.algorithm, type=desired.type,
            user_id=desired.user_id, scope=desired.scope, description=remote.description,
            key_protection=desired.key_protection, private_key=sealed,
            status=EntryStatus.READY, prevent_destroy=desired.prevent_destroy, target=target))
        sess.store.commit()
    env.out(f"{address}: Import prepared!")
    env.out("  The private key " + ("was exported from the cloud's custody and is in state."
                                    if sealed else "is not in state (the cloud does not give "
                                    "it out); keep it where it is."))
    env.out()
    env.out("Import successful!")
    env.out()
    env.out("The key pair is now in state and will henceforth be managed by reconciler.")
    if other_key:
        env.err(f"Warning: {address}: the cloud holds a different public key than the "
                "manifest declares; state records the cloud's. The next plan replaces it with the "
                "declared key (delete, then import): review it before applying, or put the "
                "cloud's public key in the manifest to keep it.")
    return ExitCode.OK
