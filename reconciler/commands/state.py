"""`reconciler state` (not built yet)."""

from __future__ import annotations

import argparse

from reconciler.env import Env, ExitCode


def run(args: argparse.Namespace, env: Env) -> int:
    env.err("Error: `reconciler state` is not built yet.")
    return ExitCode.ERROR
