"""What each key pair API flavour can do, decided here and nowhere else.

Code that must know whether a flavour takes a description, a scope or ``key_protection``, how
it lists, how many public keys one request imports, which service serves it or what it is
called asks ``capabilities(api)`` (the adapters expose the same value as
``KeyPairApi.capabilities``) instead of comparing the ``Api`` value itself: the architecture
test holds that only the adapters, the emulator and this module name a flavour. Pure values:
manifests, the planner and apply all use it.

May import: ``reconciler.model``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reconciler.model import Api

# The flavour of a run that names none (--api, RECONCILER_API, provider.api, a target's api).
DEFAULT_API = Api.V21


@dataclass(frozen=True, slots=True)
class Capabilities:
    """One flavour's abilities."""

    api: Api
    title: str  # for people: "ECS os-keypairs v2.1"
    service: str  # the service whose endpoint serves it: "ecs" or "kms" (SERVICES)
    descriptions: bool  # a description can be set and updated in place
    scope: bool  # a key pair is of a user or of the whole domain
    custody: bool  # key_protection: the cloud keeps the private key too
    export: bool  # the private key the cloud keeps can be read back
    # The service whose endpoint takes custody calls (import, export and clear of the private
    # key the cloud keeps): KPS's, for v2.1 too, which has no such calls of its own.
    custody_service: str | None
    paginated: bool  # the list comes in pages, by marker; else in one answer
    batch_import: int = 0  # the most public keys one request imports; 0: one at a time


_BY_API = {
    Api.V2: Capabilities(api=Api.V2, title="ECS os-keypairs v2", service="ecs",
                         descriptions=False, scope=False, custody=False, export=False,
                         custody_service=None, paginated=False),
    Api.V21: Capabilities(api=Api.V21, title="ECS os-keypairs v2.1", service="ecs",
                          descriptions=False, scope=False, custody=True, export=True,
                          custody_service="kms", paginated=False),
    # The Key Pair Service is served from the DEW/KMS host, not kps.<region>.
    Api.KPS: Capabilities(api=Api.KPS, title="KPS v3", service="kms", descriptions=True,
                          scope=True, custody=True, export=True, custody_service="kms",
                          paginated=True, batch_import=10),
}


def capabilities(api: Api | str) -> Capabilities:
    """What ``api`` can do; ``ValueError`` for a name that is no flavour."""
    return _BY_API[Api(api)]


def apis_with(ability: Callable[[Capabilities], bool]) -> str:
    """The flavours that have ``ability``, for a message: "v2.1 or kps"."""
    return " or ".join(api.value for api, caps in _BY_API.items() if ability(caps))
