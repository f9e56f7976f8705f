"""One order of precedence, the official SDK's (``CredentialProviderChain``, 3.1.219):

1. STS with OIDC: ``HUAWEICLOUD_OIDC_PROVIDER_URN`` and ``HUAWEICLOUD_OIDC_AGENCY_URN``, with
   ``HUAWEICLOUD_OIDC_ID_TOKEN`` or ``HUAWEICLOUD_OIDC_TOKEN_FILE`` (the inline token wins),
   ``HUAWEICLOUD_OIDC_SESSION_NAME`` (``oidc-sts-session``),
   ``HUAWEICLOUD_OIDC_DURATION_SECONDS`` (3600), ``HUAWEICLOUD_OIDC_POLICY``,
   ``HUAWEICLOUD_OIDC_POLICY_IDS``; STS at ``HUAWEICLOUD_SDK_STS_ENDPOINT``
   (``https://sts.cn-north-4.myhuaweicloud.com``).
2. The SDK's environment: ``HUAWEICLOUD_SDK_IDP_ID`` with ``HUAWEICLOUD_SDK_ID_TOKEN_FILE``
   (IAM identity provider, at ``HUAWEICLOUD_SDK_IAM_ENDPOINT``, else
   ``https://iam.myhuaweicloud.com``), else ``HUAWEICLOUD_SDK_AK``/``_SK``
   (``_SECURITY_TOKEN``).
3. The Terraform provider's ``HW_ACCESS_KEY``/``HW_SECRET_KEY`` (``HW_SECURITY_TOKEN``): not
   the SDK's, so after all of its environment.
4. The SDK's profile file (``reconciler.credentials.profile``): ``idp_id`` with
   ``id_token_file``, else ``ak``/``sk``.

The SDK's metadata and pod identity providers are not supported. Where the SDK falls
through silently on a half-given source (only one of an AK/SK pair, an IdP id without a
token file, a provider URN without an agency URN), this is an error naming what is
missing: a run must not use other credentials than the ones its operator set up.

Federated providers are kept per process, by the variables that define them, so the API
client and the S3 state backend share one set of temporary credentials.

May import: the standard library, ``reconciler.model``, ``reconciler.errors``,
``reconciler.credcheck``, ``reconciler.api.protocol``, ``reconciler.urls``,
``reconciler.proxies``, ``reconciler.credentials.*`` (``exchange`` lazily: it needs ``requests``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from reconciler.api.protocol import CredentialProvider
from reconciler.credentials.profile import FILE_VAR, Profile, load_profile
from reconciler.credentials.static import (
    SDK_FAMILY,
    TERRAFORM_FAMILY,
    StaticProvider,
    checked,
    family_provider,
    value_of,
)
from reconciler.credentials.temporary import RefreshingProvider, Temporary
from reconciler.errors import UsageError
from reconciler.proxies import choose_proxy
from reconciler.urls import parse_endpoint

PROVIDER_URN = "HUAWEICLOUD_OIDC_PROVIDER_URN"
AGENCY_URN = "HUAWEICLOUD_OIDC_AGENCY_URN"
OIDC_ID_TOKEN = "HUAWEICLOUD_OIDC_ID_TOKEN"
OIDC_TOKEN_FILE = "HUAWEICLOUD_OIDC_TOKEN_FILE"
SESSION_NAME = "HUAWEICLOUD_OIDC_SESSION_NAME"
DURATION = "HUAWEICLOUD_OIDC_DURATION_SECONDS"
POLICY = "HUAWEICLOUD_OIDC_POLICY"
POLICY_IDS = "HUAWEICLOUD_OIDC_POLICY_IDS"
STS_ENDPOINT = "HUAWEICLOUD_SDK_STS_ENDPOINT"
IDP_ID = "HUAWEICLOUD_SDK_IDP_ID"
ID_TOKEN_FILE = "HUAWEICLOUD_SDK_ID_TOKEN_FILE"
IAM_ENDPOINT = "HUAWEICLOUD_SDK_IAM_ENDPOINT"
DEFAULT_STS = "https://sts.cn-north-4.myhuaweicloud.com"
DEFAULT_IAM = "https://iam.myhuaweicloud.com"
DEFAULT_SESSION_NAME = "oidc-sts-session"
DEFAULT_DURATION = 3600
CA_BUNDLE_VARS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
NO_CREDENTIALS = (
    "no credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK (or HW_ACCESS_KEY and "
    "HW_SECRET_KEY) in the environment, give a profile file (HUAWEICLOUD_SDK_CREDENTIALS_FILE "
    "or ~/.huaweicloud/credentials [basic]), or log in with OIDC (HUAWEICLOUD_SDK_IDP_ID and "
    "HUAWEICLOUD_SDK_ID_TOKEN_FILE, or HUAWEICLOUD_OIDC_PROVIDER_URN and "
    "HUAWEICLOUD_OIDC_AGENCY_URN); see the README's Credentials section")
_KEY_VARS = (PROVIDER_URN, AGENCY_URN, OIDC_ID_TOKEN, OIDC_TOKEN_FILE, SESSION_NAME, DURATION,
             POLICY, POLICY_IDS, STS_ENDPOINT, IDP_ID, ID_TOKEN_FILE, IAM_ENDPOINT, FILE_VAR,
             "HOME", *CA_BUNDLE_VARS)


@dataclass(frozen=True, slots=True)
class Resolution:
    """The provider chosen, and a project id its source gave (a profile's ``project_id``)."""

    provider: CredentialProvider
    project_id: str | None = None


_memo_lock = threading.Lock()
_memo: dict[tuple[str, ...], RefreshingProvider] = {}


def _endpoint(value: str, *, origin: str) -> str:
    """The IAM or STS endpoint, parsed by the one parser every URL goes through (``urls``):
    https, or http only to loopback, since an ID token must not travel in the clear."""
    return parse_endpoint(value, what=origin).url


def proxies_for(environ: Mapping[str, str], url: str) -> dict[str, str]:
    """The proxy the environment names for ``url`` (never read by requests itself)."""
    return choose_proxy(parse_endpoint(url, what="the endpoint"), environ).proxies()


def tls_verify(environ: Mapping[str, str]) -> bool | str:
    for name in CA_BUNDLE_VARS:
        if value_of(environ, name):
            return environ[name].strip()
    return True


def iam_endpoint(environ: Mapping[str, str]) -> str:
    """The run's IAM endpoint: ``HUAWEICLOUD_SDK_IAM_ENDPOINT``, else the SDK's default."""
    return _endpoint(value_of(environ, IAM_ENDPOINT) or DEFAULT_IAM, origin=IAM_ENDPOINT)


def _memoised(key: tuple[str, ...], make: Callable[[], RefreshingProvider]) -> RefreshingProvider:
    with _memo_lock:
        found = _memo.get(key)
        if found is None:
            found = _memo[key] = make()
        return found


def _sts(environ: Mapping[str, str]) -> RefreshingProvider | None:
    provider_urn, agency_urn = value_of(environ, PROVIDER_URN), value_of(environ, AGENCY_URN)
    if not provider_urn and not agency_urn:
        return None
    for name, value in ((PROVIDER_URN, provider_urn), (AGENCY_URN, agency_urn)):
        if not value:
            raise UsageError(f"{name} is not set but the other HUAWEICLOUD_OIDC_* URN is; set "
                             f"both {PROVIDER_URN} and {AGENCY_URN} for STS with OIDC")
    inline, token_file = value_of(environ, OIDC_ID_TOKEN), value_of(environ, OIDC_TOKEN_FILE)
    if not inline and not token_file:
        raise UsageError(f"STS with OIDC needs the CI job's ID token: set {OIDC_TOKEN_FILE} "
                         f"(a file the job writes) or {OIDC_ID_TOKEN}")
    raw_duration = value_of(environ, DURATION) or str(DEFAULT_DURATION)
    try:
        duration = int(raw_duration)
        if duration <= 0:
            raise ValueError(duration)
    except ValueError:
        raise UsageError(f"{DURATION}={raw_duration[:20]!r} is not a positive number of "
                         "seconds; STS grants 900 to 43200") from None
    sts = _endpoint(value_of(environ, STS_ENDPOINT) or DEFAULT_STS, origin=STS_ENDPOINT)
    ids = tuple(p.strip() for p in value_of(environ, POLICY_IDS).split(",") if p.strip())

    def make() -> RefreshingProvider:
        from reconciler.credentials import exchange

        request = exchange.AgencyRequest(
            provider_urn=provider_urn.strip(), agency_urn=agency_urn.strip(),
            session_name=value_of(environ, SESSION_NAME).strip() or DEFAULT_SESSION_NAME,
            duration_seconds=duration, policy=value_of(environ, POLICY) or None,
            policy_ids=ids)
        caller = exchange.Caller(
            source=f"OIDC via STS agency {request.agency_urn}", verify=tls_verify(environ),
            proxies=proxies_for(environ, sts),
            hint=(f"that {PROVIDER_URN} names the identity provider, that {AGENCY_URN} names "
                  "an agency that trusts it, that the provider's issuer and client ID match "
                  "the token's iss and aud, that the agency's conditions admit this "
                  "repository and branch, and that the token is fresh"))

        def fetch() -> Temporary:
            token = (exchange.inline_token(inline.strip(), origin=OIDC_ID_TOKEN, caller=caller)
                     if inline else
                     exchange.read_token(token_file.strip(), origin=OIDC_TOKEN_FILE,
                                         caller=caller))
            return exchange.via_sts(sts_endpoint=sts, request=request, id_token=token,
                                    caller=caller)

        return RefreshingProvider(source=f"{caller.source} at {sts}", fetch=fetch)

    return _memoised(("sts", *(environ.get(n, "") for n in _KEY_VARS)), make)


def _identity_provider(environ: Mapping[str, str], *, idp_id: str, token_file: str,
                       iam: str, origin: str) -> RefreshingProvider:
    def make() -> RefreshingProvider:
        from reconciler.credentials import exchange

        caller = exchange.Caller(
            source=f"OIDC via IAM identity provider {idp_id}", verify=tls_verify(environ),
            proxies=proxies_for(environ, iam),
            hint=(f"that {IDP_ID} names an identity provider of the account, that its issuer "
                  "and client ID match the token's iss and aud, that its mapping rule admits "
                  "this repository and branch, and that the token file holds a fresh token"))

        def fetch() -> Temporary:
            token = exchange.read_token(token_file, origin=origin, caller=caller)
            return exchange.via_identity_provider(iam_endpoint=iam, idp_id=idp_id,
                                                  id_token=token, caller=caller)

        return RefreshingProvider(source=f"{caller.source} at {iam}", fetch=fetch)

    return _memoised(("iam", idp_id, token_file, iam,
                      *(environ.get(n, "") for n in _KEY_VARS)), make)


def _environment_idp(environ: Mapping[str, str]) -> RefreshingProvider | None:
    idp_id, token_file = value_of(environ, IDP_ID), value_of(environ, ID_TOKEN_FILE)
    if not idp_id and not token_file:
        return None
    if not idp_id or not token_file:
        given, missing = (IDP_ID, ID_TOKEN_FILE) if idp_id else (ID_TOKEN_FILE, IDP_ID)
        raise UsageError(f"{given} is set but {missing} is not; set both for OIDC via an IAM "
                         "identity provider")
    iam = iam_endpoint(environ)
    return _identity_provider(environ, idp_id=idp_id.strip(), token_file=token_file.strip(),
                              iam=iam, origin=ID_TOKEN_FILE)


def profile_provider(environ: Mapping[str, str], profile: Profile) -> CredentialProvider:
    idp_id, token_file = profile.get("idp_id"), profile.get("id_token_file")
    if idp_id and token_file:
        iam = _endpoint(profile.get("iam_endpoint") or value_of(environ, IAM_ENDPOINT)
                        or DEFAULT_IAM, origin=f"iam_endpoint of {profile.where}")
        return _identity_provider(environ, idp_id=idp_id, token_file=token_file, iam=iam,
                                  origin=f"id_token_file of {profile.where}")
    ak, sk = profile.get("ak"), profile.get("sk")
    if ak and sk:
        token = profile.get("security_token")
        credentials = checked(ak=(f"ak of {profile.where}", ak),
                              sk=(f"sk of {profile.where}", sk),
                              token=(f"security_token of {profile.where}", token) if token
                              else None)
        return StaticProvider(credentials, profile.where)
    raise UsageError(f"{profile.where} has neither ak and sk nor idp_id and id_token_file; "
                     f"add them, or unset {FILE_VAR}")


def resolve(environ: Mapping[str, str]) -> Resolution:
    """The first source of the chain that is set up, or a ``UsageError`` saying how to."""
    provider: CredentialProvider | None = (
        _sts(environ) or _environment_idp(environ) or family_provider(environ, SDK_FAMILY)
        or family_provider(environ, TERRAFORM_FAMILY))
    if provider is not None:
        return Resolution(provider)
    profile = load_profile(environ)
    if profile is None:
        raise UsageError(NO_CREDENTIALS)
    return Resolution(profile_provider(environ, profile), profile.get("project_id") or None)


def resolve_provider(environ: Mapping[str, str]) -> CredentialProvider:
    return resolve(environ).provider


def federated_provider(environ: Mapping[str, str]) -> RefreshingProvider | None:
    """The OIDC provider the environment sets up, if that is what the chain chooses (for
    the S3 state backend, which otherwise keeps its own variables)."""
    try:
        provider = resolve(environ).provider
    except UsageError:
        return None
    return provider if isinstance(provider, RefreshingProvider) else None
