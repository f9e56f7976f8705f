"""`reconciler validate [PATH...]`: check manifests offline (schema and cross-file rules).

Exit 0 with a one-line summary on stdout, or 1 with every diagnostic on stderr.
The API in use (for per-API rules) is ``--api`` > ``RECONCILER_API`` > ``provider.api`` > v2.1.

May import: ``reconciler.env``, ``reconciler.errors``, ``reconciler.manifest``,
``reconciler.model``.
"""

from __future__ import annotations

import argparse

from reconciler.env import Env, ExitCode
from reconciler.errors import Diagnostic, DiagnosticsError, UsageError
from reconciler.model import Api


def _api_override(args: argparse.Namespace, env: Env) -> Api | None:
    value = getattr(args, "api", None) or env.environ.get("RECONCILER_API") or None
    if value is None:
        return None
    try:
        return Api(value)
    except ValueError:
        raise UsageError(
            f"RECONCILER_API={value[:20]!r} is not an API flavour; use v2, v2.1 or kps"
        ) from None


def report_diagnostics(env: Env, diagnostics: tuple[Diagnostic, ...]) -> None:
    """Every diagnostic, then the count, on stderr."""
    for diag in diagnostics:
        env.err(str(diag))
    count = len(diagnostics)
    env.err(f"Error: {count} problem{'s' if count != 1 else ''} found.")


def run(args: argparse.Namespace, env: Env) -> int:
    from reconciler.manifest import load_manifests

    paths = [env.resolve(p) for p in getattr(args, "paths", [])]
    api = _api_override(args, env)
    try:
        manifest = load_manifests(paths, cwd=env.cwd, api=api)
    except DiagnosticsError as exc:
        report_diagnostics(env, exc.diagnostics)
        return ExitCode.ERROR
    n, m = len(manifest.keypairs), len(manifest.files)
    env.out(f"Success! {n} key pair{'s' if n != 1 else ''} in {m} file{'s' if m != 1 else ''} "
            f"{'are' if n != 1 else 'is'} valid.")
    return ExitCode.OK
