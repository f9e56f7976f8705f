"""The kinds of managed object, by address kind: the one registry plan and apply consult.

May import: ``reconciler.kinds.*``.
"""

from __future__ import annotations

from reconciler.kinds.base import Kind
from reconciler.kinds.binding import KIND as BINDING_KIND
from reconciler.kinds.delivery import KIND as DELIVERY_KIND
from reconciler.kinds.deposed import KIND as DEPOSED_KIND
from reconciler.kinds.keypair import KIND as KEYPAIR_KIND

# In this order: a kind's ``review`` sees what the kinds before it made of the plan (the
# deposed generations of the rotations the key pairs start, after the rebinds they need).
REGISTRY: dict[str, Kind] = {KEYPAIR_KIND.name: KEYPAIR_KIND, BINDING_KIND.name: BINDING_KIND,
                             DELIVERY_KIND.name: DELIVERY_KIND, DEPOSED_KIND.name: DEPOSED_KIND}


def kind_of(name: str) -> Kind:
    """The kind of addresses of kind ``name``."""
    return REGISTRY[name]
