"""Where to reach the cloud: API flavour, endpoint, project and credentials.

Precedence is flag > environment > manifest ``provider`` block (or the run's target) > default.
Settings are per target: ``resolve_target_settings`` gives each target of a manifest set its
own; ``--endpoint URL`` (or ``RECONCILER_ENDPOINT``) alone puts every target's services at that
URL, as the emulator serves them all on one port. Secrets never come
from a manifest: a provider block's run uses the provider chain of
``reconciler.credentials.chain`` (OIDC, the SDK's and the Terraform provider's variables, the
SDK's profile file); a target uses its ``credentials`` block (``reconciler.credentials.target``:
a named profile, an agency assumed with the base credentials), the chain without one. An
agency is assumed at the IAM endpoint of ``--endpoint``/``RECONCILER_ENDPOINT``, else the
target's ``endpoints.iam``, else ``HUAWEICLOUD_SDK_IAM_ENDPOINT``, else the SDK's default. The
endpoint is parsed by ``reconciler.urls`` (the error names where it came from) and the proxy
for it chosen from the same environment.

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.urls``,
``reconciler.proxies``, ``reconciler.api.protocol``, ``reconciler.api.endpoints``,
``reconciler.credentials``, ``reconciler.address``, ``reconciler.capabilities``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, replace

from reconciler.address import DEFAULT_TARGET
from reconciler.api.endpoints import custody_endpoint, default_endpoint
from reconciler.api.protocol import ApiSettings, CredentialProvider
from reconciler.capabilities import DEFAULT_API, capabilities
from reconciler.credentials.chain import iam_endpoint, resolve
from reconciler.credentials.target import target_credentials
from reconciler.errors import UsageError
from reconciler.model import Api, Manifest, ProviderConfig, TargetConfig
from reconciler.proxies import choose_proxy
from reconciler.urls import Endpoint, parse_endpoint

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


def effective_api(flags: ProviderFlags, environ: Mapping[str, str],
                  provider: ProviderConfig | None) -> Api:
    raw = flags.api or environ.get("RECONCILER_API") or (provider.api if provider else None)
    try:
        return Api(raw) if raw else DEFAULT_API
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
    flags: ProviderFlags, environ: Mapping[str, str], provider: ProviderConfig | None, *,
    credentials: CredentialProvider | None = None,
) -> ApiSettings:
    """Everything needed to call the API, or a ``UsageError`` saying what is missing.

    ``credentials``: a target's own provider; without it, the environment's chain."""
    api = effective_api(flags, environ, provider)
    region = flags.region or _first(environ, REGION_VARS) or (provider.region if provider else None)
    project_id = (flags.project_id or _first(environ, PROJECT_VARS)
                  or (provider.project_id if provider else None))
    endpoint = _endpoint(flags, environ, provider, api=api, region=region)
    resolution = None
    if not project_id and credentials is None:  # a profile file's project_id comes last
        with contextlib.suppress(UsageError):
            resolution = resolve(environ)
        project_id = resolution.project_id if resolution else None
    if not project_id:
        raise UsageError("no project id: give --project-id, set HUAWEICLOUD_SDK_PROJECT_ID "
                         "(or HW_PROJECT_ID), or set provider.project_id in a manifest")
    if credentials is None:
        credentials = (resolution or resolve(environ)).provider
    ca_bundle = _first(environ, CA_BUNDLE_VARS)
    # --endpoint alone means every service at that URL: custody calls (KPS's) too.
    everything_at = flags.endpoint or environ.get("RECONCILER_ENDPOINT")
    return ApiSettings(api=api, endpoint=endpoint.url, project_id=project_id,
                       credentials=credentials, region=region,
                       verify_tls=not flags.insecure, ca_bundle=ca_bundle,
                       proxy=choose_proxy(endpoint, environ),
                       custody_endpoint=endpoint.url if everything_at else None)


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


def target_provider(target: TargetConfig, flags: ProviderFlags,
                    environ: Mapping[str, str]) -> ProviderConfig:
    """The provider block a target stands for: its region, project, API, and the endpoint of
    the service that API is served by (``kms`` for kps, ``ecs`` otherwise).

    A provider block carries no credentials, so a target with a ``credentials`` block is
    refused here rather than reached with the environment's: its settings come from
    ``target_settings`` (or ``resolve_target_settings``) only."""
    if target.credentials is not None:
        where = f" at {target.location}" if target.location else ""
        raise UsageError(f"target {target.name!r}{where} has a credentials block, which this "
                         "command does not use yet (it would reach the target with the "
                         "environment's credentials instead). Remove `credentials:` to use "
                         "the environment's credentials")
    return target_block(target, flags, environ)


def target_block(target: TargetConfig, flags: ProviderFlags,
                 environ: Mapping[str, str]) -> ProviderConfig:
    """What one entry of a ``targets`` block names, as a provider block does."""
    api = effective_api(flags, environ, ProviderConfig(api=target.api))
    return ProviderConfig(region=target.region, project_id=target.project_id, api=target.api,
                          endpoint=target.endpoints.get(capabilities(api).service),
                          location=target.location)


def target_iam_endpoint(target: TargetConfig, flags: ProviderFlags,
                        environ: Mapping[str, str]) -> str:
    """Where ``target``'s agency is assumed: ``--endpoint`` or ``RECONCILER_ENDPOINT`` (every
    service of every target), else its ``endpoints.iam``, else the run's IAM endpoint."""
    if flags.endpoint:
        return parse_endpoint(flags.endpoint, what="--endpoint").url
    if environ.get("RECONCILER_ENDPOINT"):
        return parse_endpoint(environ["RECONCILER_ENDPOINT"], what="RECONCILER_ENDPOINT").url
    given = target.endpoints.get("iam")
    if given:
        where = f" in {target.location}" if target.location else ""
        return parse_endpoint(given, what=f"endpoints.iam of target {target.name!r}{where}").url
    return iam_endpoint(environ)


def target_settings(target: TargetConfig, flags: ProviderFlags,
                    environ: Mapping[str, str]) -> ApiSettings:
    """One target's settings, with its own credentials (``settings.credentials.source`` says
    where they come from, never a secret: what state records as the target's credential
    source). An agency is assumed at the first signature, not here."""
    credentials = target_credentials(
        target.name, target.credentials, environ,
        iam_endpoint=target_iam_endpoint(target, flags, environ))
    settings = resolve_api_settings(flags, environ, target_block(target, flags, environ),
                                    credentials=credentials)
    return with_custody_endpoint(settings, target)


def with_custody_endpoint(settings: ApiSettings, target: TargetConfig) -> ApiSettings:
    """A target's ``endpoints`` entry for the service that takes custody calls (``kms``, for
    v2.1 too), unless ``--endpoint`` put every service at one URL already."""
    service = capabilities(settings.api).custody_service
    given = target.endpoints.get(service) if service else None
    if settings.custody_endpoint is not None or not given:
        return settings
    where = f" in {target.location}" if target.location else ""
    url = parse_endpoint(given, what=f"endpoints.{service} of target {target.name!r}{where}").url
    return replace(settings, custody_endpoint=url)


def own_custody_endpoint(flags: ProviderFlags, environ: Mapping[str, str],
                         target: TargetConfig | None, *, api: Api,
                         endpoint: str) -> tuple[str, str]:
    """Where this run by itself sends custody calls to a target reached at ``endpoint``, and
    what says so: ``--endpoint`` or ``RECONCILER_ENDPOINT`` (every service at that URL), else
    the target's ``endpoints`` entry for the custody service, else the URL derived from
    ``endpoint`` (``reconciler.api.endpoints.custody_endpoint``)."""
    if flags.endpoint:
        return parse_endpoint(flags.endpoint, what="--endpoint").url, "--endpoint"
    if environ.get("RECONCILER_ENDPOINT"):
        return (parse_endpoint(environ["RECONCILER_ENDPOINT"], what="RECONCILER_ENDPOINT").url,
                "RECONCILER_ENDPOINT")
    service = capabilities(api).custody_service
    given = target.endpoints.get(service) if target is not None and service else None
    if target is not None and given:
        where = f" in {target.location}" if target.location else ""
        said = f"endpoints.{service} of target {target.name!r}{where}"
        return parse_endpoint(given, what=said).url, said
    said = (f"target {target.name!r} names no endpoints.{service}" if target is not None
            and service else "the manifests name no custody endpoint")
    return custody_endpoint(endpoint, api), f"derived from its endpoint: {said}"


def resolve_target_settings(flags: ProviderFlags, environ: Mapping[str, str],
                            manifest: Manifest) -> dict[str, ApiSettings]:
    """Each target's settings, by target name, in manifest order (without a targets block:
    the one implicit target, from the provider block and the environment's credentials)."""
    if not manifest.targets:
        return {DEFAULT_TARGET: resolve_api_settings(flags, environ, manifest.provider)}
    return {t.name: target_settings(t, flags, environ) for t in manifest.targets}
