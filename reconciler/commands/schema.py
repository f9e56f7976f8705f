"""`reconciler schema`: print the manifest JSON Schema (2020-12), as shipped in the package.

May import: ``reconciler.env``, ``reconciler.manifest_schema``.
"""

from __future__ import annotations

import argparse

from reconciler.env import Env, ExitCode


def run(args: argparse.Namespace, env: Env) -> int:
    from reconciler.manifest_schema import schema_text

    env.stdout.write(schema_text().rstrip("\n") + "\n")
    return ExitCode.OK
