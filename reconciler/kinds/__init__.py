"""The kinds of managed object, by address kind: the one registry plan and apply consult.

May import: ``reconciler.kinds.*``.
"""

from __future__ import annotations

from reconciler.kinds.base import Kind
from reconciler.kinds.binding import KIND as BINDING_KIND
from reconciler.kinds.delivery import KIND as DELIVERY_KIND
from reconciler.kinds.keypair import KIND as KEYPAIR_KIND

REGISTRY: dict[str, Kind] = {KEYPAIR_KIND.name: KEYPAIR_KIND, BINDING_KIND.name: BINDING_KIND,
                             DELIVERY_KIND.name: DELIVERY_KIND}


def kind_of(name: str) -> Kind:
    """The kind of addresses of kind ``name``."""
    return REGISTRY[name]
