"""Refresh: read what exists in the cloud with one (paginated) list, not a GET per key pair.

May import: ``reconciler.model``, ``reconciler.api.protocol``.
"""

from __future__ import annotations

from reconciler.api.protocol import KeyPairApi
from reconciler.model import RemoteSnapshot


def refresh(api: KeyPairApi) -> RemoteSnapshot:
    """Every key pair in the project, keyed by name (kps: ⌈N/1000⌉ requests; Nova: one)."""
    return api.list_keypairs()
