"""``reconciler destroy``: plan and apply the deletion of everything in state."""

from __future__ import annotations

import argparse

from reconciler.commands.apply import apply_fresh
from reconciler.env import Env
from reconciler.plan import Mode


def run(args: argparse.Namespace, env: Env) -> int:
    args.replace = []
    return apply_fresh(args, env, mode=Mode.DESTROY, operation="destroy")
