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
