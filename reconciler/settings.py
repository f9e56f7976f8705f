"""Where to reach the cloud: API flavour, endpoint, project and credentials.

Precedence is flag > environment > manifest ``provider`` block > default. Credentials come
only from the environment (the official SDK's names, then the Terraform provider's). The
endpoint is parsed by ``reconciler.urls`` (the error names where it came from) and the proxy
for it chosen from the same environment.

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.urls``,
``reconciler.proxies``, ``reconciler.api.protocol``, ``reconciler.api.endpoints``,
``reconciler.credcheck``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.api.endpoints import default_endpoint
from reconciler.api.protocol import ApiSettings, Credentials
from reconciler.credcheck import header_credential
from reconciler.errors import UsageError
from reconciler.model import Api, ProviderConfig, Secret
from reconciler.proxies import choose_proxy
from reconciler.urls import Endpoint, parse_endpoint

AK_VARS = ("HUAWEICLOUD_SDK_AK", "HW_ACCESS_KEY")
SK_VARS = ("HUAWEICLOUD_SDK_SK", "HW_SECRET_KEY")
TOKEN_VARS = ("HUAWEICLOUD_SDK_SECURITY_TOKEN", "HW_SECURITY_TOKEN")
PROJECT_VARS = ("HUAWEICLOUD_SDK_PROJECT_ID", "HW_PROJECT_ID")
REGION_VARS = ("HW_REGION_NAME",)
CA_BUNDLE_VARS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@dataclass(frozen=True, slots=True)
class ProviderFlags:
    """What the command line said (None: not given)."""

    api: str | None = None
    endpoint: str | None = None
    region: str | None = None
    project_id: str | None = None
    insecure: bool = False


def _first(environ: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def _set(environ: Mapping[str, str], name: str) -> str:
    """The variable's value, or "" when unset or blank (blank counts as unset)."""
    value = environ.get(name, "")
    return value if value.strip() else ""


def _credentials(environ: Mapping[str, str]) -> tuple[str, str, str | None]:
    """AK, SK and token from one family of variables (the SDK's, else Terraform's): never an
    AK of one family with the SK of the other. Each is checked (``credcheck``) before use."""
    for ak_var, sk_var, token_var in zip(AK_VARS, SK_VARS, TOKEN_VARS, strict=True):
        ak, sk = _set(environ, ak_var), _set(environ, sk_var)
        if ak and sk:
            token = _set(environ, token_var)
            return (header_credential(ak_var, ak), header_credential(sk_var, sk),
                    header_credential(token_var, token) if token else None)
        if ak or sk:
            missing = sk_var if ak else ak_var
            raise UsageError(f"{ak_var if ak else sk_var} is set but {missing} is not; set both "
                             "(credentials are never mixed across variable families)")
    raise UsageError("no credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK "
                     "(or HW_ACCESS_KEY and HW_SECRET_KEY) in the environment")


def _credential_source(environ: Mapping[str, str]) -> str:
    """The names of the variables ``_credentials`` took the AK/SK from, for advice."""
    for ak_var, sk_var in zip(AK_VARS, SK_VARS, strict=True):
        if _set(environ, ak_var) and _set(environ, sk_var):
            return f"{ak_var} / {sk_var}"
    return f"{AK_VARS[0]} / {SK_VARS[0]}"


def effective_api(flags: ProviderFlags, environ: Mapping[str, str],
                  provider: ProviderConfig | None) -> Api:
    raw = flags.api or environ.get("RECONCILER_API") or (provider.api if provider else None)
    try:
        return Api(raw) if raw else Api.V21
    except ValueError:
        raise UsageError(f"unknown API {raw!r}; use v2, v2.1 or kps (--api, RECONCILER_API or "
                         "provider.api)") from None


@dataclass(frozen=True, slots=True)
class Target:
    """Where a run points by its own flags, environment and manifests (None: they do not say).

    ``endpoint`` is the one given, else the default for ``region`` when that is known."""

    api: Api | None
    endpoint: str | None
    region: str | None
    project_id: str | None


def own_target(flags: ProviderFlags, environ: Mapping[str, str],
               provider: ProviderConfig | None, *, default_api: Api) -> Target:
    """What this run names by itself, without credentials and without defaults other than
    the endpoint of a known region (for ``default_api`` when nothing names the API)."""
    raw_api = flags.api or environ.get("RECONCILER_API") or (provider.api if provider else None)
    api = effective_api(flags, environ, provider) if raw_api else None
    region = flags.region or _first(environ, REGION_VARS) or (provider.region if provider else None)
    project_id = (flags.project_id or _first(environ, PROJECT_VARS)
                  or (provider.project_id if provider else None))
    named = (flags.endpoint or environ.get("RECONCILER_ENDPOINT")
             or (provider.endpoint if provider else None) or region)
    # parsed as the run would connect to it, so that it compares with a plan's parsed one
    endpoint = _endpoint(flags, environ, provider, api=api or default_api,
                         region=region).url if named else None
    return Target(api=api, endpoint=endpoint, region=region, project_id=project_id)


def resolve_api_settings(
    flags: ProviderFlags, environ: Mapping[str, str], provider: ProviderConfig | None
) -> ApiSettings:
    """Everything needed to call the API, or a ``UsageError`` saying what is missing."""
    api = effective_api(flags, environ, provider)
    region = flags.region or _first(environ, REGION_VARS) or (provider.region if provider else None)
    project_id = (flags.project_id or _first(environ, PROJECT_VARS)
                  or (provider.project_id if provider else None))
    endpoint = _endpoint(flags, environ, provider, api=api, region=region)
    if not project_id:
        raise UsageError("no project id: give --project-id, set HUAWEICLOUD_SDK_PROJECT_ID "
                         "(or HW_PROJECT_ID), or set provider.project_id in a manifest")
    ak, sk, token = _credentials(environ)
    credentials = Credentials(ak=ak, sk=Secret(sk),
                              security_token=Secret(token) if token else None,
                              source=_credential_source(environ))
    ca_bundle = _first(environ, CA_BUNDLE_VARS)
    return ApiSettings(api=api, endpoint=endpoint.url, project_id=project_id,
                       credentials=credentials, region=region, verify_tls=not flags.insecure,
                       ca_bundle=ca_bundle, proxy=choose_proxy(endpoint, environ))


def _endpoint(flags: ProviderFlags, environ: Mapping[str, str], provider: ProviderConfig | None,
              *, api: Api, region: str | None) -> Endpoint:
    """The endpoint from the first place that gives one, parsed; errors name that place."""
    if flags.endpoint:
        return parse_endpoint(flags.endpoint, what="--endpoint")
    if environ.get("RECONCILER_ENDPOINT"):
        return parse_endpoint(environ["RECONCILER_ENDPOINT"], what="RECONCILER_ENDPOINT")
    if provider is not None and provider.endpoint:
        where = (f"provider.endpoint in {provider.location}" if provider.location
                 else "the saved plan's provider endpoint")
        return parse_endpoint(provider.endpoint, what=where)
    if not region:
        raise UsageError("no region: give --region, set HW_REGION_NAME, or set "
                         "provider.region in a manifest (or give --endpoint)")
    return parse_endpoint(default_endpoint(api, region), what=f"the endpoint for {region}")
