"""Where a target's CSMS is reached: the host that serves KPS and KMS in its region.

The cloud serves CSMS at ``kms.{region}.myhuaweicloud.com``, beside KPS; a target reached
through the ECS host (``v2``, ``v2.1``) reaches CSMS at the same host with ``ecs`` swapped for
``kms``, or at its ``endpoints.kms`` when it gives one; any other host (a gateway, the
emulator) serves every service at one URL and is used as it is. The client shares the key pair
API's connection pool when the host is the same.

May import: the standard library, ``reconciler.model``, ``reconciler.errors``,
``reconciler.api.{client,csms,endpoints,protocol}``.
"""

from __future__ import annotations

import dataclasses

from reconciler.api.client import HttpClient
from reconciler.api.csms import CsmsClient
from reconciler.api.endpoints import service_endpoint
from reconciler.api.protocol import ApiSettings, KeyPairApi
from reconciler.errors import ApplyError
from reconciler.model import Api


def csms_settings(settings: ApiSettings) -> ApiSettings:
    """The settings of the CSMS of the project ``settings`` reach."""
    endpoint = settings.custody_endpoint or service_endpoint(settings.endpoint, "kms")
    return dataclasses.replace(settings, api=Api.KPS, endpoint=endpoint, custody_endpoint=None)


def csms_for(api: KeyPairApi) -> CsmsClient:
    """The CSMS client of the project ``api`` reaches (its settings, its credentials)."""
    http = getattr(api, "http", None)
    if not isinstance(http, HttpClient):
        raise ApplyError("internal error: this key pair API does not say how to reach CSMS")
    settings = csms_settings(http.settings)
    return CsmsClient(settings, http=http if settings.endpoint == http.settings.endpoint
                      else None)
