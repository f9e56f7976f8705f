"""A target's own credentials: its base credentials, and an IAM agency assumed with them.

A target of a manifest's ``targets`` block says where its credentials come from in its
``credentials`` block (``model.CredentialsConfig``), never with a secret:

- nothing: the environment's provider chain (``reconciler.credentials.chain``), as a
  ``provider`` block's run uses;
- ``profile: basic-NAME``: that section of the SDK's profile file instead of the chain
  (``ak``/``sk``/``security_token``, or ``idp_id`` with ``id_token_file``);
- ``agency``: those base credentials assume an IAM agency of another account
  (``exchange.via_assume_role``); the agency's temporary credentials are fetched when first
  needed and refreshed before they expire (``temporary.RefreshingProvider``).

Agency providers are kept per process by what defines them (the base credentials, the IAM
endpoint, the agency, its account and duration), so targets that assume the same agency with
the same base credentials share one set of temporary credentials, and one refresh. Every
target's provider is a ``TargetProvider``: the credentials' errors name the target, and its
``source`` says where they come from, for the run's first line and for state, e.g. ``agency
keys-ops in account acme-prod (assumed with environment (HUAWEICLOUD_SDK_AK /
HUAWEICLOUD_SDK_SK))``.

May import: the standard library, ``reconciler.model``, ``reconciler.errors``,
``reconciler.api.protocol``, ``reconciler.credentials.*`` (``exchange`` lazily: it needs
``requests``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.api.protocol import CredentialProvider, Credentials
from reconciler.credentials.chain import (
    profile_provider,
    proxies_for,
    resolve,
    tls_verify,
)
from reconciler.credentials.profile import load_profile
from reconciler.credentials.static import StaticProvider, value_of
from reconciler.credentials.temporary import RefreshingProvider, Temporary
from reconciler.errors import CredentialError, UsageError
from reconciler.model import AgencyConfig, CredentialsConfig

DOMAIN_ID_VAR = "HUAWEICLOUD_SDK_DOMAIN_ID"
_DOMAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_KEY_SALT = secrets.token_bytes(32)  # base credentials are told apart by a keyed digest

_lock = threading.Lock()
_agencies: dict[tuple[object, ...], RefreshingProvider] = {}
_domains: dict[tuple[object, ...], str] = {}


@dataclass(frozen=True, slots=True)
class TargetProvider:
    """One target's credentials: ``inner``'s (perhaps shared with other targets), with its
    errors naming ``target``."""

    target: str
    inner: CredentialProvider

    @property
    def source(self) -> str:
        return self.inner.source

    def current(self) -> Credentials:
        try:
            return self.inner.current()
        except CredentialError as exc:
            raise CredentialError(f"target {self.target!r}: {exc}") from None

    def __repr__(self) -> str:
        return f"TargetProvider({self.target}: {self.source})"


def target_credentials(target: str, config: CredentialsConfig | None,
                       environ: Mapping[str, str], *, iam_endpoint: str) -> TargetProvider:
    """The provider of ``target``'s credentials, as its ``credentials`` block says.

    ``iam_endpoint`` (parsed) is where an agency is assumed: the caller chooses it (the
    target's ``endpoints.iam``, else the run's). A ``UsageError`` names the target and what
    to fix when the base credentials are not set up; an agency is not assumed here but at
    the first ``current()``, whose ``CredentialError`` names the target and the agency."""
    try:
        base = _base(config, environ)
        if config is None or config.agency is None:
            return TargetProvider(target, base)
        return TargetProvider(target, _agency(config.agency, base, environ,
                                              iam_endpoint=iam_endpoint))
    except CredentialError as exc:
        raise CredentialError(f"target {target!r}: {exc}") from None
    except UsageError as exc:
        raise UsageError(f"target {target!r}: {exc}") from None


def forget_shared() -> None:
    """Drop the agency providers and account ids kept for this process (tests: an emulator
    reset forgets the temporary credentials they hold)."""
    with _lock:
        _agencies.clear()
        _domains.clear()


def _base(config: CredentialsConfig | None,
          environ: Mapping[str, str]) -> CredentialProvider:
    if config is None or config.profile is None:
        return resolve(environ).provider
    profile = load_profile(environ, config.profile, origin="its credentials.profile")
    assert profile is not None  # a named section exists or the load raised
    return profile_provider(environ, profile)


def _base_key(base: CredentialProvider) -> tuple[object, ...]:
    """What tells base credentials apart, without keeping a secret in the clear: the
    chain's federated providers are themselves kept per process (so their identity); fixed
    credentials by their source and a keyed digest of their values."""
    if isinstance(base, StaticProvider):
        held = base.credentials
        token = held.security_token.reveal() if held.security_token is not None else ""
        digest = hmac.new(_KEY_SALT, "\0".join((held.ak, held.sk.reveal(), token)).encode(),
                          hashlib.sha256).hexdigest()
        return ("static", base.source, digest)
    return ("provider", id(base))


def _agency(agency: AgencyConfig, base: CredentialProvider, environ: Mapping[str, str], *,
            iam_endpoint: str) -> RefreshingProvider:
    from reconciler.credentials import exchange

    given_domain = value_of(environ, DOMAIN_ID_VAR).strip()
    if given_domain and _DOMAIN_ID.fullmatch(given_domain) is None:
        raise UsageError(f"{DOMAIN_ID_VAR} is not an account id (1-64 letters, digits, \"_\" "
                         "or \"-\"); set it to the account id of the base credentials, or "
                         "unset it to have IAM say")
    verify = tls_verify(environ)
    proxies = proxies_for(environ, iam_endpoint)
    base_key = _base_key(base)
    key = ("agency", base_key, iam_endpoint, agency.name, agency.domain_name,
           agency.domain_id, agency.duration_seconds, given_domain, verify,
           tuple(sorted(proxies.items())))
    role = exchange.AssumeRole(agency_name=agency.name, domain_name=agency.domain_name,
                               domain_id=agency.domain_id,
                               duration_seconds=agency.duration_seconds)
    source = f"agency {agency.name} in account {agency.account} (assumed with {base.source})"
    caller = exchange.Caller(
        source=source, verify=verify, proxies=proxies,
        hint=(f"that account {agency.account} has an agency named {agency.name} delegated to "
              f"the account of {base.source}, that their user may assume it (IAM's Agent "
              "Operator role), and the target's endpoints.iam"))

    def domain_of(credentials: Credentials) -> str:
        if given_domain:
            return given_domain
        with _lock:
            known = _domains.get((base_key, iam_endpoint))
        if known is None:
            known = exchange.caller_domain_id(iam_endpoint=iam_endpoint, base=credentials,
                                              caller=caller)
            with _lock:
                _domains[(base_key, iam_endpoint)] = known
        return known

    def fetch() -> Temporary:
        credentials = base.current()
        return exchange.via_assume_role(iam_endpoint=iam_endpoint, role=role, base=credentials,
                                        domain_id=domain_of(credentials), caller=caller)

    with _lock:
        found = _agencies.get(key)
        if found is None:
            found = _agencies[key] = RefreshingProvider(source=source, fetch=fetch)
        return found
