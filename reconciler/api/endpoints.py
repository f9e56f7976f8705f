"""Default endpoints by region, and the check that keeps credentials off plain HTTP.

May import: the standard library, ``reconciler.model``, ``reconciler.errors``.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from reconciler.errors import UsageError
from reconciler.model import Api

_REGION = re.compile(r"^[a-z]{2,}(?:-[a-z0-9]+)+$")

_HOSTS = {
    Api.V2: "ecs",
    Api.V21: "ecs",
    Api.KPS: "kms",  # the Key Pair Service is served from the DEW/KMS host, not kps.<region>
}


def default_endpoint(api: Api, region: str) -> str:
    """``https://ecs.{region}.myhuaweicloud.com`` (v2, v2.1) or ``https://kms.{region}…`` (kps)."""
    if not _REGION.match(region):
        raise UsageError(
            f"region {region!r} does not look like a Huawei Cloud region id (e.g. cn-north-4); "
            "check --region or the provider block"
        )
    return f"https://{_HOSTS[Api(api)]}.{region}.myhuaweicloud.com"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalise_endpoint(endpoint: str) -> str:
    """``scheme://host[:port][/prefix]`` without a trailing slash; https unless loopback.

    An endpoint without a scheme gets ``https://`` (as the official SDK does). Plain
    ``http://`` would send signed requests (and private keys) in the clear, so it is refused
    unless the host is a loopback address, where the local emulator runs.
    """
    text = endpoint.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme not in ("http", "https") or not host or parts.query or parts.fragment:
        raise UsageError(
            f"endpoint {endpoint!r} is not a valid https:// URL; check --endpoint, "
            "RECONCILER_ENDPOINT or the provider block"
        )
    if scheme == "http" and not is_loopback(host):
        raise UsageError(
            f"refusing plain http:// for endpoint host {host!r}: use https:// "
            "(http:// is accepted only for loopback hosts: 127.0.0.0/8, ::1, localhost)"
        )
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"
