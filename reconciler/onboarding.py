"""Onboarding an existing estate: which key pairs of each target ``import --all`` adopts, which
it skips, and which need a person's decision. Pure: snapshots, details and state in, values out.

Two stages, with the detail reads between them (the command makes those, one GET per key pair
that needs one: the list lacks description and user id):

- ``survey``: every key pair each target lists, by address. Managed ones (in state) are
  skipped; a name no manifest may carry, a frozen key pair (kps ``frozen_state`` not 0), or a
  name declared in the manifests in a way that does not match what the cloud holds (another
  public key, or a scope or custody the cloud has otherwise) need a decision; a declared
  one that matches is adopted with its declaration; the rest are to be described (read in
  detail) and declared.
- ``settle``: the described key pairs become declarations, one per name. A name unmanaged in
  several targets with the same key and the same attributes is one declaration listing its
  targets; a name whose key or attributes differ between targets cannot be one declaration,
  and needs a decision (none of them is adopted).

What a declaration carries: the public key as the cloud lists it (so that nothing will be
replaced), its type, owner (user id), and, where the target's API has them, scope (``domain``
only: ``user`` is what a key pair made without one has), description and whether the cloud
holds the private key (``key_protection``; the API does not say how the key is encrypted, so
the declaration says ``default`` and the file says to check).

May import: ``reconciler.model``, ``reconciler.address``, ``reconciler.keys``,
``reconciler.capabilities``, ``reconciler.attributes``, ``reconciler.errors``,
``reconciler.adoption``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler import keys
from reconciler.address import Address, Addressing
from reconciler.adoption import recorded_protection, recorded_scope, refusals
from reconciler.attributes import import_fingerprint
from reconciler.capabilities import Capabilities
from reconciler.errors import KeyFormatError
from reconciler.model import (
    NAME_PATTERN,
    Api,
    DesiredKeyPair,
    EntryStatus,
    KeySource,
    Manifest,
    RemoteKeyPair,
    RemoteSnapshot,
    SealedSecret,
    StateKeyPair,
)

_NAME = re.compile(NAME_PATTERN)
_USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # the manifest schema's user_id pattern
MAX_DESCRIPTION = 255  # the manifest schema's bound
TYPES = ("ssh", "x509")  # the manifest schema's enums
SCOPES = ("user", "domain")
# A key pair made without a scope is the user's: a declaration says only the other one, so
# that a key pair shared with a target whose API has no scope is still one declaration.
DEFAULT_SCOPE = "user"


@dataclass(frozen=True, slots=True)
class Decision:
    """A key pair ``import --all`` leaves alone: why, and what a person can do."""

    address: Address
    why: str
    what: str


@dataclass(frozen=True, slots=True)
class Survey:
    """Every listed key pair of the targets read, sorted into what happens to it."""

    skipped: tuple[Address, ...]  # already managed
    decisions: tuple[Decision, ...]
    declared: Mapping[Address, DesiredKeyPair]  # declared as the cloud holds it: adopt
    undeclared: Mapping[Address, RemoteKeyPair]  # to describe, then declare
    listed: Mapping[Address, RemoteKeyPair]  # every listed key pair, by address

    @property
    def to_describe(self) -> tuple[Address, ...]:
        """The key pairs whose detail is read: every one that may be adopted."""
        return tuple(sorted((*self.declared, *self.undeclared)))


@dataclass(frozen=True, slots=True)
class Declaration:
    """One key pair to declare, as the cloud holds it in each of its ``targets``."""

    name: str
    public_key: str
    type: str = "ssh"
    user_id: str | None = None
    scope: str | None = None
    description: str | None = None
    custody: bool = False  # the cloud holds the private key: key_protection
    targets: tuple[str, ...] = ()  # () for a manifest set without a targets block

    def attributes(self) -> tuple[object, ...]:
        """What must agree between targets for one declaration to describe them all."""
        return (keys.normalise(self.public_key, key_type=self.type), self.type, self.user_id,
                self.scope, self.description, self.custody)


@dataclass(frozen=True, slots=True)
class Onboarding:
    """What ``import --all`` does: the declarations to write, every address it adopts (with
    what the cloud holds there), what it skips and what it leaves to a person."""

    declarations: tuple[Declaration, ...]
    adopted: Mapping[Address, RemoteKeyPair]  # declared here, or already declared
    declared: Mapping[Address, DesiredKeyPair]  # of ``adopted``, those declared already
    skipped: tuple[Address, ...]
    decisions: tuple[Decision, ...]


def survey(manifest: Manifest, run: Addressing, *, snapshots: Mapping[str, RemoteSnapshot],
           recorded: Mapping[Address, StateKeyPair],
           declared: Mapping[Address, DesiredKeyPair], export: bool = False) -> Survey:
    """Sort every key pair the targets list (``snapshots``, by target). ``declared`` is the
    manifests' key pairs by address (``targets.desired_by_address``); ``recorded``, state's
    entries by address in this run. A declared key pair whose scope or custody the cloud has
    otherwise needs a decision (``reconciler.adoption``); ``export``: private keys the cloud
    keeps are copied into state (``--export-private-keys``), so its custody may differ."""
    skipped: list[Address] = []
    decisions: list[Decision] = []
    adopt: dict[Address, DesiredKeyPair] = {}
    undeclared: dict[Address, RemoteKeyPair] = {}
    listed: dict[Address, RemoteKeyPair] = {}
    by_name = manifest.by_name()
    # the generations of key pairs rotated without a gap (NAME-gN, and the previous one while
    # a rotation is under way) are managed under their key pair's address
    generations = {(e.target, n): a for a, e in recorded.items()
                   for n in (e.cloud_name, e.deposed.cloud_name if e.deposed else None)
                   if n is not None and n != a.name}
    for target, snapshot in snapshots.items():
        for name, remote in sorted(snapshot.keypairs.items()):
            addr = run.keypair(name, target)
            if (target, name) in generations and addr not in recorded:
                skipped.append(generations[(target, name)])
                continue
            listed[addr] = remote
            if addr in recorded:
                skipped.append(addr)
                continue
            why = _refused(name, remote)
            if why is not None:
                decisions.append(Decision(addr, *why))
            elif name in by_name:
                d = declared.get(addr)
                if d is not None and _matches(d, remote):
                    refused = refusals(d, remote, api=snapshot.api,
                                       shown=f"{addr} (declared at {d.location})",
                                       holds_private_key=export,
                                       how="reconciler import --all --export-private-keys")
                    if refused:
                        decisions.append(Decision(addr, "; ".join(r.summary for r in refused),
                                                  "; ".join(r.detail for r in refused)))
                    else:
                        adopt[addr] = d
                else:
                    decisions.append(_declared_otherwise(addr, by_name[name], d is None))
            else:
                undeclared[addr] = remote
    return Survey(skipped=tuple(sorted(skipped)), decisions=tuple(decisions), declared=adopt,
                  undeclared=undeclared, listed=listed)


def _refused(name: str, remote: RemoteKeyPair) -> tuple[str, str] | None:
    """Why a key pair cannot be adopted as it is, whatever the manifests say."""
    if not _NAME.match(name):
        return ("its name is not one a manifest can declare (1-64 letters, digits, _ or -)",
                "rename it in the cloud (console or API) if reconciler is to manage it")
    if remote.frozen_state not in (None, 0):
        shown = "unreadable" if remote.frozen_state is not None and remote.frozen_state < 0 \
            else str(remote.frozen_state)
        return (f"the cloud has frozen it (frozen_state {shown})",
                "find out why (a violation, an order, a missing real-name check) and have it "
                "unfrozen; `reconciler import --all` adopts it then")
    return None


def _matches(d: DesiredKeyPair, remote: RemoteKeyPair) -> bool:
    """A declaration that says what the cloud holds: its public key (only a declared public
    key can be compared; the cloud's own or a key generated here cannot)."""
    return d.source is KeySource.IMPORT and import_fingerprint(d) == remote.fingerprint


def _declared_otherwise(addr: Address, d: DesiredKeyPair, elsewhere: bool) -> Decision:
    if elsewhere:
        return Decision(addr, f"the manifests declare {d.name!r} (at {d.location}) for other "
                              "targets only",
                        f"add {addr.target} to its targets to adopt it there, or leave it "
                        "unmanaged")
    if d.source is KeySource.IMPORT:
        return Decision(addr, f"declared at {d.location} with another public key than the "
                              "cloud holds",
                        "put the cloud's public key in the manifest to adopt it as it is, or "
                        f"`reconciler import {addr.display(qualified=addr.qualified)}` (the "
                        "next plan then replaces it with the declared key)")
    return Decision(addr, f"declared at {d.location} without a public key, so it cannot be "
                          "compared with what the cloud holds",
                    f"adopt it as it is with `reconciler import "
                    f"{addr.display(qualified=addr.qualified)}` or an import: entry, or "
                    "declare the cloud's public key")


def settle(found: Survey, *, details: Mapping[Address, RemoteKeyPair | None],
           capabilities: Mapping[str, Capabilities], targeted: bool,
           order: Sequence[str]) -> Onboarding:
    """The declarations and adoptions, from the survey and each key pair's detail (None: gone
    since it was listed). ``targeted``: the manifests have a targets block (each declaration
    then lists its targets, in ``order``, the manifests' order of targets)."""
    decisions = list(found.decisions)
    adopted: dict[Address, RemoteKeyPair] = {}
    declared: dict[Address, DesiredKeyPair] = {}
    for addr, d in found.declared.items():
        shown = _described(found.listed[addr], details.get(addr))
        if shown is None:
            decisions.append(_gone(addr, details.get(addr)))
        else:
            adopted[addr], declared[addr] = shown, d
    groups: dict[str, list[tuple[Address, RemoteKeyPair, Declaration]]] = {}
    for addr in sorted(found.undeclared):
        shown = _described(found.undeclared[addr], details.get(addr))
        if shown is None:
            decisions.append(_gone(addr, details.get(addr)))
            continue
        if shown.frozen_state not in (None, 0):  # the detail may say more than the list
            why = _refused(addr.name, shown)
            assert why is not None
            decisions.append(Decision(addr, *why))
            continue
        made = _declaration(addr, shown, capabilities[addr.target])
        if isinstance(made, Decision):
            decisions.append(made)
        else:
            groups.setdefault(addr.name, []).append((addr, shown, made))
    declarations: list[Declaration] = []
    rank = {t: i for i, t in enumerate(order)}
    for name in sorted(groups):
        members = sorted(groups[name], key=lambda m: rank.get(m[0].target, len(rank)))
        first = members[0][2]
        differing = _differences(first, [m[2] for m in members[1:]])
        if differing:
            where = ", ".join(m[0].target for m in members)
            decisions.extend(Decision(
                m[0], f"{name!r} is unmanaged in targets {where} with different {differing}: "
                      "one declaration cannot describe them all",
                "rename it in all but one target (in the cloud), or declare it yourself for "
                "one target (targets: [...]) and leave the others unmanaged") for m in members)
            continue
        targets = tuple(m[0].target for m in members) if targeted else ()
        declarations.append(Declaration(
            name=first.name, public_key=first.public_key, type=first.type,
            user_id=first.user_id, scope=first.scope, description=first.description,
            custody=first.custody, targets=targets))
        for addr, shown, _ in members:
            adopted[addr] = shown
    return Onboarding(declarations=tuple(declarations), adopted=dict(sorted(adopted.items())),
                      declared=declared, skipped=found.skipped,
                      decisions=tuple(sorted(decisions, key=lambda x: x.address)))


def _gone(addr: Address, detail: RemoteKeyPair | None) -> Decision:
    if detail is not None:  # there, with another key than the list showed
        return Decision(addr, "its public key changed in the cloud while it was being read",
                        "nothing adopted; run `reconciler import --all` again once it is "
                        "settled")
    return Decision(addr, "it was deleted in the cloud while it was being read",
                    "nothing to adopt; run `reconciler import --all` again if it comes back")


def _described(listed: RemoteKeyPair, detail: RemoteKeyPair | None) -> RemoteKeyPair | None:
    """The list entry with what only the detail says (description, user id); None when the
    detail found it gone, or found another key under the name (it changed meanwhile)."""
    if detail is None or detail.fingerprint != listed.fingerprint:
        return None
    return RemoteKeyPair(
        name=listed.name, public_key=listed.public_key, fingerprint=listed.fingerprint,
        type=listed.type, user_id=detail.user_id or listed.user_id,
        scope=listed.scope or detail.scope, description=detail.description,
        key_protection=listed.key_protection if listed.key_protection is not None
        else detail.key_protection,
        frozen_state=detail.frozen_state if detail.frozen_state is not None
        else listed.frozen_state)


def _declaration(addr: Address, remote: RemoteKeyPair,
                 caps: Capabilities) -> Declaration | Decision:
    """What the manifest says of one key pair; a decision when a manifest cannot say it
    (checked here one by one, so that one odd answer never stops the others' onboarding)."""
    for what, value in (("public key", remote.public_key), ("description", remote.description),
                        ("type", remote.type), ("scope", remote.scope)):
        if value is not None and not _is_text(value):
            return Decision(addr, f"its {what} is not text (it holds a lone UTF-16 surrogate, "
                                  "which no file can carry)",
                            f"fix its {what} in the cloud, or leave it unmanaged")
    if remote.type not in TYPES:
        return Decision(addr, f"its type {_shown(remote.type)} is not one a manifest can "
                              f"declare ({', '.join(TYPES)})",
                        "leave it unmanaged (a newer API may have made it), or report it")
    if caps.scope and remote.scope is not None and remote.scope not in SCOPES:
        return Decision(addr, f"its scope {_shown(remote.scope)} is not one a manifest can "
                              f"declare ({', '.join(SCOPES)})",
                        "leave it unmanaged (a newer API may have made it), or report it")
    try:
        keys.check_public_key(remote.public_key, key_type=remote.type)
    except KeyFormatError as exc:
        return Decision(addr, f"its public key is not one a manifest accepts ({exc})",
                        "leave it unmanaged, or replace it in the cloud with a key reconciler "
                        "accepts")
    description = (remote.description or None) if caps.descriptions else None
    if description is not None and keys.looks_like_private_key(description):
        return Decision(addr, "its description holds a private key (not shown), which is "
                              "never written to a manifest",
                        "remove it from the description in the cloud (and rotate that key), "
                        "then run `reconciler import --all` again")
    if description is not None and len(description) > MAX_DESCRIPTION:
        return Decision(addr, f"its description is {len(description)} characters long; a "
                              f"manifest takes at most {MAX_DESCRIPTION}",
                        "shorten it in the cloud, then run `reconciler import --all` again")
    user_id = remote.user_id if remote.user_id and _USER_ID.match(remote.user_id) else None
    return Declaration(
        name=remote.name, public_key=remote.public_key.strip(), type=remote.type,
        user_id=user_id, scope=remote.scope if caps.scope and remote.scope != DEFAULT_SCOPE
        else None, description=description,
        custody=bool(remote.key_protection) and caps.custody)


def _is_text(value: str) -> bool:
    """Whether ``value`` can be written as UTF-8 (a JSON answer may hold a lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(value: str) -> str:
    """A value from the cloud in a message: quoted, every unprintable character escaped."""
    out = []
    for ch in value[:40]:
        out.append('\\"' if ch == '"' else ch if ch.isprintable() else ascii(ch)[1:-1])
    return '"' + "".join(out) + '"'


def _differences(first: Declaration, others: list[Declaration]) -> str:
    """Which attributes differ between the targets' declarations of one name ("" if none)."""
    labels = ("public keys", "types", "owners (user_id)", "scopes", "descriptions",
              "custody of the private key")
    differ = {labels[i] for other in others
              for i, (a, b) in enumerate(zip(first.attributes(), other.attributes(), strict=True))
              if a != b}
    return " and ".join(label for label in labels if label in differ)


def adopted_entry(d: DesiredKeyPair, remote: RemoteKeyPair, *, api: Api, target: str,
                  created: str, sealed: SealedSecret | None = None,
                  applied: bool = True) -> StateKeyPair:
    """The state entry of a key pair adopted as the cloud holds it, under declaration ``d``
    (its scope and custody the cloud's: ``reconciler.adoption``).
    ``applied=False`` records it as not what the manifest asks for (no spec digest), so that
    the next plan replaces it; ``sealed``: its private key, exported on request only."""
    return StateKeyPair(
        name=d.name, api=api, source=d.source, public_key=remote.public_key.strip(),
        fingerprint_md5=remote.fingerprint,
        fingerprint_sha256=_sha256(remote.public_key, remote.type), created=created,
        spec_digest=d.spec_digest if applied else "", algorithm=d.algorithm, type=d.type,
        user_id=d.user_id, scope=recorded_scope(d, remote),
        description=remote.description or None,
        key_protection=recorded_protection(d, remote), private_key=sealed,
        status=EntryStatus.READY,
        prevent_destroy=d.prevent_destroy, target=target)


def _sha256(public_key: str, key_type: str) -> str:
    try:
        if key_type == "x509":
            return keys.parse_certificate(public_key).fingerprint_sha256
        return keys.sha256_fingerprint(public_key)
    except KeyFormatError:
        return ""
