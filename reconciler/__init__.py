"""reconciler: a declarative reconciler for Huawei Cloud SSH key pairs.

Kept import-free on purpose: ``reconciler --version`` must start fast.
"""

__version__ = "0.3.0"
