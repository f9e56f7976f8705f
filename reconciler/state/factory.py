"""Choose and open the state backend from flags, environment and manifest.

Precedence: the ``--backend`` / ``--state`` flags > ``RECONCILER_BACKEND`` /
``RECONCILER_STATE`` > the manifest's ``backend`` block > ``reconciler.state.json`` in the
working directory. The remote store's endpoint: ``--backend-endpoint`` >
``RECONCILER_BACKEND_ENDPOINT`` > the backend block's ``endpoint``. Giving both kinds at the
same level (both flags, or both variables) is a usage error. The endpoint is parsed by
``reconciler.urls`` (https, or http for loopback only; the error names where it came from)
and carried on as ``Endpoint.url``. The s3 store, and boto3 with it, is imported only when
chosen.

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.env``,
``reconciler.urls``, ``reconciler.state.*``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from reconciler.env import Env
from reconciler.errors import UsageError
from reconciler.model import S3Location, StateEncryption
from reconciler.state.kmskey import DataKeys
from reconciler.state.local import LocalStateStore
from reconciler.state.protocol import StateStore
from reconciler.urls import parse_endpoint

STATE_ENV = "RECONCILER_STATE"
BACKEND_ENV = "RECONCILER_BACKEND"
BACKEND_ENDPOINT_ENV = "RECONCILER_BACKEND_ENDPOINT"
DEFAULT_STATE = "reconciler.state.json"


@dataclass(frozen=True, slots=True)
class LocalBackend:
    path: Path


Backend = LocalBackend | S3Location


def choose_backend(
    *,
    state_path: str | None,
    backend: str | None,
    backend_endpoint: str | None,
    manifest_backend: S3Location | None,
    env: Env,
) -> Backend:
    """Where the state lives; ``UsageError`` for contradictory or malformed choices."""
    if backend is not None and state_path is not None:
        raise UsageError("give either --state or --backend, not both.")
    if backend is not None:
        return _parse_s3_url(backend, endpoint=_given_endpoint(backend_endpoint, env),
                             origin="--backend")
    if state_path is not None:
        return LocalBackend(env.resolve(state_path))
    from_env, remote_env = env.environ.get(STATE_ENV), env.environ.get(BACKEND_ENV)
    if from_env and remote_env:
        raise UsageError(f"set either {STATE_ENV} or {BACKEND_ENV}, not both (or choose with "
                         "--state or --backend).")
    if remote_env:
        return _parse_s3_url(remote_env, endpoint=_given_endpoint(backend_endpoint, env),
                             origin=BACKEND_ENV)
    if from_env:
        return LocalBackend(env.resolve(from_env))
    if manifest_backend is not None:
        chosen = _given_endpoint(backend_endpoint, env)
        if chosen is None and manifest_backend.endpoint:
            where = (f"backend.s3.endpoint in {manifest_backend.declared_at}"
                     if manifest_backend.declared_at else "the saved plan's backend endpoint")
            chosen = parse_endpoint(manifest_backend.endpoint, what=where).url
        return replace(manifest_backend, endpoint=chosen)
    return LocalBackend(env.resolve(DEFAULT_STATE))


def _given_endpoint(flag: str | None, env: Env) -> str | None:
    """The flag's, else the variable's endpoint as ``Endpoint.url``; parsed only once an S3
    backend is chosen (a local state never reads it)."""
    if flag:
        return parse_endpoint(flag, what="--backend-endpoint").url
    from_env = env.environ.get(BACKEND_ENDPOINT_ENV)
    if from_env:
        return parse_endpoint(from_env, what=BACKEND_ENDPOINT_ENV).url
    return None


def _parse_s3_url(url: str, *, endpoint: str | None, origin: str) -> S3Location:
    location = S3Location.from_url(url, endpoint=endpoint)
    if location is None:
        raise UsageError(f"{origin} {url!r}: use s3://BUCKET/KEY, e.g. "
                         "s3://team-state/keypairs/prod.json.")
    return location


def open_store(
    *,
    state_path: str | None,
    backend: str | None,
    backend_endpoint: str | None,
    manifest_backend: S3Location | None,
    env: Env,
    notice: Callable[[str], None],
    insecure: bool = False,
    verify: bool = True,
    encryption: StateEncryption | None = None,
    data_keys: Callable[[], DataKeys] | None = None,
) -> StateStore:
    """The configured state store, not yet loaded or locked. ``verify``: loading requires the
    key and a valid MAC (every command that writes state or reveals a secret); else the MAC
    is checked when a key is available and the state read unverified when none is.
    ``encryption`` and ``data_keys``: the run's choice of state key provider and how to reach
    KMS (see ``crypto.KeySource``)."""
    chosen = choose_backend(
        state_path=state_path,
        backend=backend,
        backend_endpoint=backend_endpoint,
        manifest_backend=manifest_backend,
        env=env,
    )
    if isinstance(chosen, S3Location):
        from reconciler.state.s3 import S3StateStore

        return S3StateStore(chosen, environ=env.environ, notice=notice, clock=env.clock,
                            insecure=insecure, verify=verify, encryption=encryption,
                            data_keys=data_keys)
    return LocalStateStore(chosen.path, environ=env.environ, notice=notice, clock=env.clock,
                           verify=verify, encryption=encryption, data_keys=data_keys)
