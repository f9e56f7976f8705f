"""One target's binding clients: its ECS server list and its KPS binding tasks, reached from
the target's key pair settings.

ECS is served at ``ecs.{region}`` and KPS at ``kms.{region}``: each client's endpoint is the
target's endpoint with its service's label swapped in (the custody endpoint for KPS, which
v2 and v2.1 reach through too); an endpoint of any other form (a gateway, the emulator, or
``--endpoint``, which puts every service at one URL) serves every service and is used as it
is.

May import: the standard library, ``reconciler.model``, ``reconciler.api.{ecs_servers,
kps_tasks,endpoints,protocol}``.
"""

from __future__ import annotations

import dataclasses

from reconciler.api.ecs_servers import EcsServer, EcsServersClient
from reconciler.api.endpoints import custody_endpoint, service_endpoint
from reconciler.api.kps_tasks import KpsTasksClient, Polling
from reconciler.api.protocol import ApiSettings
from reconciler.model import Api, RemoteServer


def kps_settings(settings: ApiSettings) -> ApiSettings:
    where = custody_endpoint(settings.endpoint, Api(settings.api), settings.custody_endpoint)
    return dataclasses.replace(settings, api=Api.KPS, endpoint=where, custody_endpoint=None)


def ecs_settings(settings: ApiSettings) -> ApiSettings:
    everything_at = settings.custody_endpoint == settings.endpoint
    where = settings.endpoint if everything_at else service_endpoint(settings.endpoint, "ecs")
    return dataclasses.replace(settings, endpoint=where, custody_endpoint=None)


def remote_server(server: EcsServer) -> RemoteServer:
    return RemoteServer(id=server.id, name=server.name, status=server.status,
                        key_name=server.key_name, image_type=server.image_type)


class BindingClients:
    """A target's ECS servers and KPS binding tasks; safe to share by threads."""

    def __init__(self, settings: ApiSettings, *, polling: Polling | None = None) -> None:
        self.ecs = EcsServersClient(ecs_settings(settings))
        self.kps = KpsTasksClient(kps_settings(settings), polling=polling)

    def list_servers(self) -> tuple[RemoteServer, ...]:
        """Every server of the project (one listing, every page)."""
        return tuple(remote_server(s) for s in self.ecs.list_servers())

    def close(self) -> None:
        self.ecs.close()
        self.kps.close()
