"""What an adoption may take from a declaration, and what it must take from the cloud.

An adoption (an ``import:`` entry, a declared public key the cloud already holds,
``reconciler import NAME``, ``import --all`` of a key pair declared already) records a key pair
that exists in the cloud. State must then say what the cloud has, never a declared value the
cloud does not have, or every later plan would say "No changes" while the cloud differs:

- ``scope`` cannot change in place: one the cloud reports other than declared refuses the
  adoption (``refusals``);
- custody (``key_protection``) the cloud reports other than declared refuses it too, unless
  reconciler holds the private key to change it in place: a declared
  ``key_protection.private_key_file`` (custody to add), or a private key state will hold
  (``holds_private_key``: ``import NAME --export-private-keys``; custody to clear);
- ``recorded_scope`` and ``recorded_protection`` are what state records on adoption: the
  cloud's (a key pair adopted with another key than declared is recorded so, and replaced).

No answer of any API says how a kept private key is encrypted, so the encryption is taken from
the declaration (``{type: default}`` when the cloud keeps a key the manifest does not declare,
as ``import --all`` writes it); where the API does not report custody (Nova v2.1) or scope
(v2, v2.1), the declaration is taken as it is.

May import: ``reconciler.model``, ``reconciler.capabilities``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from reconciler.capabilities import capabilities
from reconciler.model import Api, DesiredKeyPair, Encryption, KeyProtection, RemoteKeyPair

# A key pair made without a scope is the user's.
DEFAULT_SCOPE = "user"
# The custody state records for a private key the cloud keeps and the manifest does not
# declare: held, its encryption not reported (as ``import --all`` declares it).
UNDECLARED_CUSTODY = KeyProtection(encryption=Encryption(type="default"))


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a key pair cannot be adopted under its declaration: the field, and what to do."""

    field: str
    summary: str
    detail: str


def _scope(value: str | None) -> str:
    return value or DEFAULT_SCOPE


def refusals(d: DesiredKeyPair, remote: RemoteKeyPair, *, api: Api, shown: str, how: str,
             holds_private_key: bool = False) -> tuple[Refusal, ...]:
    """What refuses adopting ``remote`` under ``d`` through ``api`` (empty: it may be adopted).
    ``shown``: the key pair as messages name it; ``how``: the command that adopts it with its
    private key copied into state (``reconciler import NAME --export-private-keys``)."""
    out: list[Refusal] = []
    if remote.scope is not None and _scope(d.scope) != _scope(remote.scope):
        out.append(Refusal(
            "scope",
            f"{shown} declares scope {_scope(d.scope)!r}, but the cloud holds it with scope "
            f"{remote.scope!r}; a scope cannot change in place, so it is not adopted",
            f"declare what the cloud has (`scope: {remote.scope}`) to adopt it as it is; to "
            "have the declared scope, rename it in the manifest (apply then creates a new key "
            "pair) or delete the cloud's key pair first"))
    if remote.key_protection is None or not capabilities(api).custody:
        return tuple(out)
    if d.key_protection is not None and not remote.key_protection and \
            not d.key_protection.private_key_file:
        declared = json.dumps(d.key_protection.as_dict(), sort_keys=True)
        out.append(Refusal(
            "key_protection",
            f"{shown} declares key_protection {declared}, but the cloud keeps no copy of its "
            "private key (key_protection: null), and reconciler does not hold the private key "
            "to hand it over",
            "declare what the cloud has (remove key_protection) to adopt it as it is; or take "
            "the key into custody first: give key_protection.private_key_file (the private "
            "key's file), and apply adopts it and hands the key to the cloud's custody in "
            "place"))
    if d.key_protection is None and remote.key_protection and not holds_private_key:
        first = (f"or take the key into custody first: `{how}` copies the cloud's private key "
                 "into state, after which the plan clears the cloud's copy in place")
        out.append(Refusal(
            "key_protection",
            f"{shown} declares no key_protection, but the cloud keeps a copy of its private "
            "key (key_protection: {\"encryption\": ...}), and reconciler does not hold the "
            "private key, so that copy (maybe the only one) cannot be cleared in place",
            "declare what the cloud has (`key_protection: {encryption: {type: default}}`; the "
            f"cloud does not say how it is encrypted: check it) to adopt it as it is; {first}"))
    return tuple(out)


def recorded_scope(d: DesiredKeyPair, remote: RemoteKeyPair) -> str | None:
    """The scope state records on adopting ``remote`` under ``d``: the declared one when it is
    the cloud's (or the cloud does not say), else the cloud's."""
    if remote.scope is None or _scope(d.scope) == _scope(remote.scope):
        return d.scope
    return remote.scope


def recorded_protection(d: DesiredKeyPair, remote: RemoteKeyPair) -> KeyProtection | None:
    """The custody state records on adopting ``remote`` under ``d`` (before any change in
    place): the cloud's, with the declared encryption (no answer carries it)."""
    if remote.key_protection is None:
        return d.key_protection  # not reported (v2.1): as declared
    if not remote.key_protection:
        return None
    return d.key_protection if d.key_protection is not None else UNDECLARED_CUSTODY


def custody_to_add(d: DesiredKeyPair, remote: RemoteKeyPair) -> bool:
    """Whether adopting ``remote`` under ``d`` hands its private key to the cloud's custody
    in place (declared with its ``private_key_file``; the cloud keeps none)."""
    return d.key_protection is not None and remote.key_protection is False


def in_place(d: DesiredKeyPair, remote: RemoteKeyPair, *, api: Api) -> dict[str, object]:
    """The fields an adoption of ``remote`` under ``d`` updates in place after recording it,
    with their declared values: the kps description, custody handed over. Call only when
    ``refusals`` is empty (and without ``holds_private_key``)."""
    out: dict[str, object] = {}
    if custody_to_add(d, remote) and capabilities(api).custody:
        assert d.key_protection is not None
        out["key_protection"] = d.key_protection.as_dict()
    if capabilities(api).descriptions and (d.description or None) != (remote.description or None):
        out["description"] = d.description
    return out
