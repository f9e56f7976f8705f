"""Default endpoints by region (checking an endpoint is ``reconciler.urls``'s job).

May import: the standard library, ``reconciler.model``, ``reconciler.errors``,
``reconciler.capabilities``.
"""

from __future__ import annotations

import re

from reconciler.capabilities import capabilities
from reconciler.errors import UsageError
from reconciler.model import Api

_REGION = re.compile(r"^[a-z]{2,}(?:-[a-z0-9]+)+$")


def default_endpoint(api: Api, region: str) -> str:
    """``https://ecs.{region}.myhuaweicloud.com`` (v2, v2.1) or ``https://kms.{region}…`` (kps)."""
    if not _REGION.match(region):
        raise UsageError(
            f"region {region!r} does not look like a Huawei Cloud region id (e.g. cn-north-4); "
            "check --region or the provider block"
        )
    return f"https://{capabilities(api).service}.{region}.myhuaweicloud.com"


def custody_endpoint(endpoint: str, api: Api, given: str | None = None) -> str:
    """Where ``api``'s custody calls (private key import, export, clear) go: ``given`` (a
    target's ``endpoints.kms``); the flavour's own endpoint when its service takes them; else
    (v2.1) the same host with its service's label swapped, as the cloud serves KPS at
    ``kms.{region}`` beside ``ecs.{region}``; any other host (a gateway, the emulator) serves
    every service at one URL, and is used as it is."""
    caps = capabilities(api)
    if given:
        return given
    if caps.custody_service is None or caps.custody_service == caps.service:
        return endpoint
    scheme, sep, rest = endpoint.partition("://")
    if sep and rest.startswith(f"{caps.service}."):
        return f"{scheme}://{caps.custody_service}.{rest[len(caps.service) + 1:]}"
    return endpoint


_SERVICE_LABELS = ("kms.", "ecs.")


def service_endpoint(endpoint: str, service: str) -> str:
    """``endpoint`` (a cloud host of KPS/KMS or ECS) with its service label made ``service``:
    the cloud serves KMS, KPS and CSMS at ``kms.{region}`` and ECS at ``ecs.{region}``. Any
    other host (a gateway, the emulator) serves every service at one URL: it is returned as
    it is."""
    scheme, sep, rest = endpoint.partition("://")
    for known in _SERVICE_LABELS:
        if sep and rest.startswith(known):
            return f"{scheme}://{service}.{rest[len(known):]}"
    return endpoint
