"""Choose and open the state backend from flags, environment and manifest.

Precedence: ``--backend`` / ``--state`` flags > ``RECONCILER_STATE`` > the manifest's
``backend`` block > ``reconciler.state.json`` in the working directory. Only the local backend
exists in this build; ``choose_backend`` is the one seam where a remote one plugs in.

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.env``,
``reconciler.state.*``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reconciler.env import Env
from reconciler.errors import UsageError
from reconciler.model import BackendConfig
from reconciler.state.local import LocalStateStore
from reconciler.state.protocol import StateStore

STATE_ENV = "RECONCILER_STATE"
DEFAULT_STATE = "reconciler.state.json"


@dataclass(frozen=True, slots=True)
class LocalBackend:
    path: Path


@dataclass(frozen=True, slots=True)
class S3Backend:
    bucket: str
    key: str
    endpoint: str | None = None
    region: str | None = None


Backend = LocalBackend | S3Backend


def choose_backend(
    *,
    state_path: str | None,
    backend: str | None,
    backend_endpoint: str | None,
    manifest_backend: BackendConfig | None,
    env: Env,
) -> Backend:
    """Where the state lives; ``UsageError`` for contradictory or malformed choices."""
    if backend is not None and state_path is not None:
        raise UsageError("give either --state or --backend, not both.")
    if backend is not None:
        return _parse_s3_url(backend, endpoint=backend_endpoint)
    if state_path is not None:
        return LocalBackend(env.resolve(state_path))
    from_env = env.environ.get(STATE_ENV)
    if from_env:
        return LocalBackend(env.resolve(from_env))
    if manifest_backend is not None:
        if manifest_backend.kind != "s3":
            raise UsageError(f"unknown state backend {manifest_backend.kind!r}; use s3.")
        return S3Backend(
            bucket=manifest_backend.bucket,
            key=manifest_backend.key,
            endpoint=backend_endpoint or manifest_backend.endpoint,
            region=manifest_backend.region,
        )
    return LocalBackend(env.resolve(DEFAULT_STATE))


def _parse_s3_url(url: str, *, endpoint: str | None) -> S3Backend:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket or not key:
        raise UsageError(f"--backend {url!r}: use s3://BUCKET/KEY.")
    return S3Backend(bucket=bucket, key=key, endpoint=endpoint)


def open_store(
    *,
    state_path: str | None,
    backend: str | None,
    backend_endpoint: str | None,
    manifest_backend: BackendConfig | None,
    env: Env,
    notice: Callable[[str], None],
) -> StateStore:
    """The configured state store, not yet loaded or locked."""
    chosen = choose_backend(
        state_path=state_path,
        backend=backend,
        backend_endpoint=backend_endpoint,
        manifest_backend=manifest_backend,
        env=env,
    )
    if isinstance(chosen, S3Backend):
        raise UsageError(
            "the s3 state backend is not available in this build; use a local state file "
            "(--state PATH)."
        )
    return LocalStateStore(chosen.path, environ=env.environ, notice=notice, clock=env.clock)
