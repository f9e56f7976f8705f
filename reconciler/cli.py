"""Command line: argparse -> options, dispatch to ``reconciler.commands``, exit codes.

``main(argv, env) -> int`` is the only function that catches broadly: a ``ReconcilerError``
is a message and exit 1; anything else is "internal error, please report" (with the
traceback only under ``--debug``). Command modules are imported lazily so that
``reconciler --version`` stays fast.

Whatever an error path prints is scrubbed of every known secret (``reconciler.redact``) and
has its control characters escaped (``Env.err`` does that): an exception's text may quote the
cloud, a manifest or, by accident, a credential.

Nothing imports this module. May import: everything.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout

from reconciler.env import Env, ExitCode
from reconciler.parser import COMMANDS, build_parser, normalize_argv


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """``parser.parse_args``, except that PATHs may also follow the options: argparse fills a
    command's positionals from the first run of them, so ``output web --private-key DIR``
    would refuse ``DIR``; it joins the command's ``paths`` instead, in the order given."""
    args, extra = parser.parse_known_args(argv)
    if extra and (any(a.startswith("-") for a in extra) or not isinstance(
            getattr(args, "paths", None), list)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.paths = [*args.paths, *extra]
    return args


def main(argv: Sequence[str] | None = None, env: Env | None = None) -> int:
    env = env or Env()
    parser = build_parser()
    try:
        with redirect_stdout(env.stdout), redirect_stderr(env.stderr):
            args = parse(parser, normalize_argv(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse: --help and --version (0), usage errors
        # argparse says 2 for a usage error; here 2 means "a plan with changes", so: 1.
        return ExitCode.ERROR if exc.code else ExitCode.OK
    if not args.command:
        parser.print_help(env.stderr)
        return ExitCode.ERROR
    from reconciler.errors import DiagnosticsError, ReconcilerError
    from reconciler.redact import register_environment, scrub

    register_environment(env.environ)
    try:
        env = _chdir(args.chdir, env)
        module = importlib.import_module(f"reconciler.commands.{COMMANDS[args.command]}")
        return int(module.run(args, env))
    except DiagnosticsError as exc:
        env.err(scrub(str(exc)))  # each line names its file (or key pair) and severity
        count = len(exc.diagnostics)
        env.err(f"Error: {count} problem{'s' if count != 1 else ''} found; nothing was changed.")
        return ExitCode.ERROR
    except ReconcilerError as exc:
        env.err(scrub(f"Error: {exc}"))
        return ExitCode.ERROR
    except KeyboardInterrupt:
        env.err("Interrupted; state holds everything that completed.")
        return ExitCode.ERROR
    except Exception:
        import traceback

        env.err("internal error, please report it (run again with --debug for details)")
        if getattr(args, "debug", False):
            env.err(scrub(traceback.format_exc()))
        return ExitCode.ERROR


def _chdir(directory: str | None, env: Env) -> Env:
    """``--chdir DIR``: every relative path, the default state and manifests, from DIR."""
    if not directory:
        return env
    from dataclasses import replace

    from reconciler.errors import UsageError

    target = env.resolve(directory)
    if not target.is_dir():
        raise UsageError(f"--chdir {directory}: {target} is not a directory; give the directory "
                         "that holds the manifests (e.g. -C keypairs)")
    return replace(env, cwd=target.resolve())


# The cyclic garbage collector's first threshold for a command's process (Python's default
# is 700 allocations). A run builds tens of thousands of records that hold no cycles (state
# entries, addresses, answers, changes), and each collection walks the young ones again as
# they pile up: at 20,000 key pairs that was a tenth of a plan's CPU. Cycles (exceptions and
# their frames, mostly) are still collected, after 50,000 allocations instead of 700.
GC_THRESHOLD = (50_000, 10, 10)


def run() -> None:
    gc.set_threshold(*GC_THRESHOLD)
    sys.exit(main())
