"""The run's choice of state key provider, and its way to KMS.

``choose_encryption`` reads the choice field by field: the flag, else the variable, else the
manifests' ``encryption`` block::

    --encryption PROVIDER      RECONCILER_ENCRYPTION       encryption.provider
    --encryption-mode MODE     RECONCILER_ENCRYPTION_MODE  encryption.mode (default enforced)
    --kms-key-id KEY           RECONCILER_KMS_KEY_ID       encryption.kms.key_id
    --kms-target TARGET        RECONCILER_KMS_TARGET       encryption.kms.target

No provider anywhere: ``None``, today's rules (``state.crypto``). ``kms_access`` is how the
state reaches KMS: built only when a KMS key is first needed (a command that never unseals,
``plan``, never builds it), with the settings of the KMS target (``kms.target``, else the
run's only or first target): its project, region and credentials, and its KMS endpoint
(``--endpoint``/``RECONCILER_ENDPOINT`` for every service, else the target's
``endpoints.kms``, else the key pair endpoint when that is KMS's host (kps), else
``https://kms.{region}.myhuaweicloud.com``). A KMS failure becomes a ``StateKeyError`` naming
the target and endpoint, saying nothing was decrypted or written.

May import: everything but ``reconciler.cli``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from typing import TypeVar

from reconciler.address import DEFAULT_TARGET
from reconciler.api.protocol import ApiSettings
from reconciler.capabilities import capabilities
from reconciler.env import Env
from reconciler.errors import ReconcilerError, StateKeyError, UsageError
from reconciler.model import (
    STATE_KEY_MODES,
    STATE_KEY_PROVIDERS,
    Manifest,
    Secret,
    StateEncryption,
    TargetConfig,
)
from reconciler.proxies import choose_proxy
from reconciler.state.kmskey import KEY_ID, DataKeys
from reconciler.urls import parse_endpoint

ENCRYPTION_ENV = "RECONCILER_ENCRYPTION"
MODE_ENV = "RECONCILER_ENCRYPTION_MODE"
KMS_KEY_ENV = "RECONCILER_KMS_KEY_ID"
KMS_TARGET_ENV = "RECONCILER_KMS_TARGET"
_T = TypeVar("_T")


def choose_encryption(args: argparse.Namespace, env: Env,
                      manifest: Manifest | None) -> StateEncryption | None:
    """The run's ``StateEncryption``, or None when nothing chooses a provider."""
    block = manifest.encryption if manifest is not None else None

    def pick(flag: str, var: str, from_block: str | None) -> tuple[str | None, str]:
        given = getattr(args, flag, None)
        if given:
            return str(given), "--" + flag.replace("_", "-")
        from_env = env.environ.get(var, "").strip()
        if from_env:
            return from_env, var
        if from_block is not None and block is not None:
            return from_block, block.origin or "the encryption block"
        return None, ""

    provider, origin = pick("encryption", ENCRYPTION_ENV, block.provider if block else None)
    mode, mode_origin = pick("encryption_mode", MODE_ENV, block.mode if block else None)
    kms_key, key_origin = pick("kms_key_id", KMS_KEY_ENV, block.kms_key if block else None)
    target, target_origin = pick("kms_target", KMS_TARGET_ENV,
                                 block.kms_target if block else None)
    if provider is None:
        given = mode_origin or key_origin or target_origin
        if given:  # else ignored: the state sealed otherwise than its operator meant
            raise UsageError(f"{given} is given, but no state key provider is chosen: add "
                             f"--encryption kms (or {ENCRYPTION_ENV}, or provider in the "
                             "encryption block), or drop it")
        return None
    if provider != "kms" and (kms_key or target):
        raise UsageError(f"{key_origin or target_origin} names the KMS of the state key, but "
                         f"{origin} chooses the provider {provider[:40]!r}: use --encryption "
                         "kms, or drop it")
    _one_of(provider, STATE_KEY_PROVIDERS, origin)
    _one_of(mode or "enforced", STATE_KEY_MODES, mode_origin)
    if kms_key is not None and not (KEY_ID.fullmatch(kms_key) or kms_key.startswith("alias/")):
        raise UsageError(f"{key_origin}: {kms_key[:60]!r} is neither a KMS key id (a UUID) nor "
                         "an alias (alias/NAME)")
    if provider == "kms" and not kms_key:
        raise UsageError(f"{origin} chooses the state key provider kms but names no KMS key: "
                         "give kms.key_id in the encryption block, --kms-key-id or "
                         f"{KMS_KEY_ENV} (the key's UUID, or alias/NAME)")
    return StateEncryption(provider=provider, kms_key=kms_key if provider == "kms" else None,
                           kms_target=target, mode=mode or "enforced",
                           declared_at=block.declared_at if block else None, origin=origin)


def _one_of(value: str, allowed: tuple[str, ...], origin: str) -> None:
    if value not in allowed:
        raise UsageError(f"{origin}: unknown value {value[:40]!r}; use one of "
                         f"{', '.join(allowed)}")


def kms_access(args: argparse.Namespace, env: Env, manifest: Manifest | None,
               choice: StateEncryption | None,
               settings: Mapping[str, ApiSettings] | None = None) -> Callable[[], DataKeys]:
    """How the state reaches KMS, built when first called. ``settings``: each target's, as
    the run resolved them (else resolved here, from the manifests, flags and environment)."""

    def make() -> DataKeys:
        from reconciler.commands.common import api_settings, provider_flags, run_settings

        known = dict(settings) if settings is not None else (
            run_settings(args, env, manifest) if manifest is not None
            else {DEFAULT_TARGET: api_settings(args, env, None)})
        wanted = choice.kms_target if choice is not None else None
        name = wanted or next(iter(known))
        if name not in known:
            raise UsageError(
                f"the KMS target {name!r} ({choice.origin if choice else ''}) is not a target "
                f"of this run ({', '.join(known)}): name one of them in kms.target, "
                f"--kms-target or {KMS_TARGET_ENV}")
        declared = next((t for t in manifest.targets if t.name == name), None) \
            if manifest is not None else None
        flags = provider_flags(args)
        given = flags.endpoint or env.environ.get("RECONCILER_ENDPOINT")
        return KmsDataKeys(kms_settings(known[name], declared, every_service=bool(given),
                                        environ=env.environ), target=name)

    return make


def kms_settings(settings: ApiSettings, target: TargetConfig | None, *, every_service: bool,
                 environ: Mapping[str, str]) -> ApiSettings:
    """``settings`` (a target's key pair API) pointed at that target's KMS."""
    if every_service:
        return settings  # --endpoint / RECONCILER_ENDPOINT: every service is there
    given = target.endpoints.get("kms") if target is not None else None
    if given:
        where = f" in {target.location}" if target is not None and target.location else ""
        name = target.name if target is not None else DEFAULT_TARGET
        endpoint = parse_endpoint(given, what=f"endpoints.kms of target {name!r}{where}")
    elif capabilities(settings.api).service == "kms":
        return settings
    elif settings.region:
        endpoint = parse_endpoint(f"https://kms.{settings.region}.myhuaweicloud.com",
                                  what=f"the KMS endpoint for {settings.region}")
    else:
        raise UsageError("no KMS endpoint for the state key: give the target's region, its "
                         "endpoints.kms, or --endpoint")
    return dataclasses.replace(settings, endpoint=endpoint.url,
                               proxy=choose_proxy(endpoint, environ))


class KmsDataKeys:
    """``state.kmskey.DataKeys`` over ``reconciler.api.kms.KmsClient``."""

    def __init__(self, settings: ApiSettings, *, target: str) -> None:
        from reconciler.api.kms import KmsClient

        self._client = KmsClient(settings)
        self._where = f"KMS of target {target!r} at {settings.endpoint}"

    @property
    def where(self) -> str:
        return self._where

    def key_id(self, key: str) -> str:
        return self._call(f"find the KMS key {key}", lambda: self._client.resolve_key(key))

    def create(self, key_id: str, *, aad: str) -> tuple[Secret, str]:
        made = self._call(f"make the state's data key under KMS key {key_id}",
                          lambda: self._client.create_datakey(key_id, aad=aad))
        return made.plaintext, made.cipher_text

    def decrypt(self, key_id: str, cipher_text: str, *, aad: str) -> Secret:
        return self._call(f"unwrap the state's data key under KMS key {key_id}",
                          lambda: self._client.decrypt_datakey(key_id, cipher_text, aad=aad))

    def _call(self, doing: str, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except ReconcilerError as exc:
            raise StateKeyError(f"cannot {doing} ({self._where}): {exc} Nothing was decrypted "
                                "or written.") from None
