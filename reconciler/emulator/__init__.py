"""The local Huawei key pair API emulator (v2, v2.1 Nova os-keypairs and kps v3, many projects).

``Emulator`` (in ``server``) is what the test suite, ``reconciler demo`` and the benchmarks
run against; ``reconciler emulator`` serves it from the command line.

May import: ``reconciler.model``, ``reconciler.keys``, ``reconciler.errors``,
``cryptography``, the standard library. Nothing here imports ``reconciler.api``: the
emulator and the client share only the signing algorithm's test vectors.
"""

from __future__ import annotations

from reconciler.emulator.server import Emulator

__all__ = ["Emulator"]
