"""`reconciler force-unlock LOCK_ID`: remove a stale state lock, only if its id matches.

May import: everything but ``reconciler.cli``.
"""

from __future__ import annotations

import argparse

from reconciler.commands.common import open_state
from reconciler.env import Env, ExitCode


def run(args: argparse.Namespace, env: Env) -> int:
    store = open_state(args, env, discover=True)
    store.force_unlock(args.lock_id)
    env.out("reconciler state has been successfully unlocked!")
    env.out("")
    env.out("The state has been unlocked, and reconciler commands should now be able to")
    env.out("obtain a new lock on the state. If the process that held it is still running,")
    env.out("stop it: it may still write to the state.")
    return ExitCode.OK
