"""Custody of a key pair's private key, changed in place: what the plan decides of it.

The cloud keeps a key pair's private key when ``key_protection`` says so. Adding custody,
clearing it or changing its encryption needs no new key pair when reconciler holds the private
key (state holds it: generated here or by the cloud; or the manifest gives it as
``key_protection.private_key_file``): apply imports it (``import``), or clears the cloud's copy
(``clear``). Clearing is allowed only when state holds the private key, so that the cloud's
copy is never the last one lost. Otherwise the key pair is replaced, and the plan says why.

What the cloud holds is known from its list (kps: ``is_key_protection``); no answer carries
the encryption, so that is compared with state only, as is custody where the list says
nothing (v2.1).

May import: ``reconciler.model``, ``reconciler.capabilities``, ``reconciler.address``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.address import keypair_address
from reconciler.capabilities import apis_with, capabilities
from reconciler.model import Api, DesiredKeyPair, RemoteKeyPair, StateKeyPair

IMPORT = "import"
CLEAR = "clear"
# The custody the cloud reports when state records none: held, its encryption not reported.
UNREPORTED = {"encryption": None}


@dataclass(frozen=True, slots=True)
class CustodyWork:
    """What a managed key pair's custody needs: ``step`` is ``IMPORT``, ``CLEAR`` or None;
    ``blocked`` says why it cannot be done in place (the plan replaces it then); ``before``
    is the custody as known now (the cloud's flag, state's encryption), ``after`` the one
    wanted."""

    step: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    blocked: tuple[str, ...] | None = None  # notes: why not in place
    note: str = ""


def wanted(d: DesiredKeyPair) -> dict[str, Any] | None:
    return d.key_protection.as_dict() if d.key_protection else None


def recorded(prior: StateKeyPair) -> dict[str, Any] | None:
    return prior.key_protection.as_dict() if prior.key_protection else None


def actual(prior: StateKeyPair, remote: RemoteKeyPair | None) -> dict[str, Any] | None:
    """The custody the cloud has: its flag when its answer carries one (kps lists do), with
    the encryption state records; state's alone otherwise."""
    have = recorded(prior)
    if remote is None or remote.key_protection is None:
        return have
    if not remote.key_protection:
        return None
    return have if have is not None else dict(UNREPORTED)


def drifted(prior: StateKeyPair, remote: RemoteKeyPair) -> bool:
    """The cloud reports custody other than state records (added or cleared outside)."""
    return remote.key_protection is not None and \
        remote.key_protection != (prior.key_protection is not None)


# No custody wanted, recorded or reported: nothing to do (what ``custody_work`` says then).
NO_WORK = CustodyWork(None, None, None)


def none_anywhere(d: DesiredKeyPair, prior: StateKeyPair, remote: RemoteKeyPair | None) -> bool:
    """Whether neither the manifest nor state asks for custody and the cloud reports none."""
    return d.key_protection is None and prior.key_protection is None and (
        remote is None or not remote.key_protection)


def custody_work(d: DesiredKeyPair, prior: StateKeyPair, remote: RemoteKeyPair | None, *,
                 api: Api, shown: str | None = None) -> CustodyWork:
    """The custody work of a managed key pair in the cloud through ``api``.

    Work is due when the manifest differs from state or from what the cloud reports: after an
    apply interrupted between the call and the state write, the call is made again (both
    are safe to repeat)."""
    if none_anywhere(d, prior, remote):
        return NO_WORK
    want, have = wanted(d), actual(prior, remote)
    if want == recorded(prior) and want == have:
        return CustodyWork(None, have, want)
    step = IMPORT if want is not None else CLEAR
    # What differs from the manifest: the cloud, or (the cloud as wanted, state not yet: an
    # interrupted apply) state; the call is made again either way.
    before = have if have != want else recorded(prior)
    blocked = _blocked(step, d, prior, api, shown or str(keypair_address(d.name)))
    if blocked is not None:
        return CustodyWork(step, before, want, blocked=blocked)
    return CustodyWork(step, before, want, note=_note(step, d, before))


def _blocked(step: str, d: DesiredKeyPair, prior: StateKeyPair, api: Api,
             shown: str) -> tuple[str, ...] | None:
    if not capabilities(api).custody:
        return (f"api {api} cannot change custody of a private key in place; "
                f"{apis_with(lambda c: c.custody)} can",)
    if step == IMPORT and prior.private_key is None and not (
            d.key_protection is not None and d.key_protection.private_key_file):
        return ("reconciler does not hold its private key (not in state, no "
                "key_protection.private_key_file): custody cannot be added in place",)
    if step == CLEAR and prior.private_key is None:
        return ("state does not hold its private key, so the cloud's copy (maybe the only "
                "one) is not cleared in place: the replacement deletes it",
                f"to keep it, first: reconciler output {shown} --private-key --from-cloud "
                "--out FILE")
    return None


def _note(step: str, d: DesiredKeyPair, have: dict[str, Any] | None) -> str:
    if step == CLEAR:
        if have == UNREPORTED:
            return ("the cloud keeps a copy of its private key that the manifests do not "
                    "declare; apply clears it (state keeps the private key)")
        return "apply clears the cloud's copy of its private key; state keeps it"
    source = ("key_protection.private_key_file" if d.key_protection is not None
              and d.key_protection.private_key_file else "state")
    if have is None:
        return f"apply hands its private key (from {source}) to the cloud's custody"
    return f"apply imports its private key (from {source}) again, with the declared encryption"
