"""One project's CSMS secrets: versions, stages, deletion and restore.

A secret is known by its name (``[a-zA-Z0-9_-]{1,64}``, the SDK model's rule). Each value
is kept in a version (``v1``, ``v2``, …) sealed under the secret's KMS key (``KeyRing.wrap``,
the secret's name and version id bound in), so a disabled key or one scheduled for deletion
makes its secrets unreadable, as on the cloud. A value is ``secret_string`` (at most 32 KiB
of UTF-8) or ``secret_binary`` (Base64 of at most 32 KiB), never both.

Stages name versions. A new version takes the stages asked for (``SYSCURRENT`` when none
are); when ``SYSCURRENT`` moves to it, the version that had it becomes ``SYSPREVIOUS``. A
stage is on one version at a time.

A scheduled deletion puts the secret in ``PENDING_DELETE`` (its values unreadable, no new
versions) until it is restored; an immediate deletion forgets it at once.

May import: ``reconciler.emulator.kms``, ``reconciler.emulator.problem``, the standard library.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import uuid
from dataclasses import dataclass, field

from reconciler.emulator.kms import KeyRing, KmsProblem, now_ms
from reconciler.emulator.problem import ServiceProblem

NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
STAGE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_VALUE_BYTES = 32 * 1024
MAX_DESCRIPTION_BYTES = 2048
MAX_STAGES = 12
MIN_RECOVERY_DAYS, MAX_RECOVERY_DAYS, DEFAULT_RECOVERY_DAYS = 7, 30, 30
CURRENT, PREVIOUS = "SYSCURRENT", "SYSPREVIOUS"
ENABLED, PENDING_DELETE = "ENABLED", "PENDING_DELETE"


class CsmsProblem(ServiceProblem):
    """An error answer in CSMS's shape: HTTP status, ``CSMS.xxxx`` code, message."""


@dataclass(frozen=True, slots=True)
class Value:
    """A secret value as sent: which field (``secret_string`` / ``secret_binary``), its text."""

    kind: str
    text: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Version:
    id: str
    created_ms: int
    kms_key_id: str
    kind: str  # which field holds the value: secret_string or secret_binary
    sealed: bytes = field(repr=False)
    expire_time: int | None = None


@dataclass(slots=True)
class StoredSecret:
    id: str
    name: str
    kms_key_id: str
    description: str
    secret_type: str
    created_ms: int
    updated_ms: int
    state: str = ENABLED
    scheduled_delete_ms: int | None = None
    versions: list[Version] = field(default_factory=list)
    stages: dict[str, tuple[str, int]] = field(default_factory=dict)  # stage -> (version, ms)

    def stages_of(self, version_id: str) -> list[str]:
        return sorted(s for s, (v, _) in self.stages.items() if v == version_id)

    def version(self, version_id: str) -> Version | None:
        if version_id == "latest" and self.versions:
            return self.versions[-1]
        return next((v for v in self.versions if v.id == version_id), None)


def check_name(name: object) -> str:
    if not isinstance(name, str) or NAME_RE.fullmatch(name) is None:
        raise CsmsProblem(400, "CSMS.0002", "The value of parameter name is invalid: use 1 "
                          "to 64 letters, digits, '_' or '-'")
    return name


def value_of(body: dict[str, object]) -> Value:
    """The one value of a create body, checked (exactly one field, at most 32 KiB)."""
    given = [f for f in ("secret_string", "secret_binary") if body.get(f) is not None]
    if len(given) != 1:
        raise CsmsProblem(400, "CSMS.0002", "exactly one of secret_string and secret_binary "
                          "must be set")
    name = given[0]
    text = body[name]
    if not isinstance(text, str):
        raise CsmsProblem(400, "CSMS.0002", f"{name} must be a string")
    if name == "secret_string":
        size = len(text.encode("utf-8"))
    else:
        try:
            size = len(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise CsmsProblem(400, "CSMS.0002", "secret_binary must be Base64") from None
    if size > MAX_VALUE_BYTES:
        raise CsmsProblem(400, "CSMS.0002", f"the secret value is {size} bytes; at most "
                          f"{MAX_VALUE_BYTES} (32 KiB) are allowed")
    return Value(name, text)


def _stages(raw: object) -> list[str]:
    if raw is None:
        return [CURRENT]
    if (not isinstance(raw, list) or not 1 <= len(raw) <= MAX_STAGES
            or not all(isinstance(s, str) and STAGE_RE.fullmatch(s) for s in raw)):
        raise CsmsProblem(400, "CSMS.0002", f"version_stages must list 1 to {MAX_STAGES} "
                          "stage names of 1 to 64 letters, digits, '.', '_' or '-'")
    return list(dict.fromkeys(raw))


def recovery_days(raw: object) -> int:
    if raw is None:
        return DEFAULT_RECOVERY_DAYS
    if (isinstance(raw, bool) or not isinstance(raw, int)
            or not MIN_RECOVERY_DAYS <= raw <= MAX_RECOVERY_DAYS):
        raise CsmsProblem(400, "CSMS.0002", f"recovery_window_in_days must be an integer "
                          f"from {MIN_RECOVERY_DAYS} to {MAX_RECOVERY_DAYS}")
    return raw


def _kms_refusal(exc: KmsProblem, kms_key_id: str) -> CsmsProblem:
    if exc.status == 404:
        return CsmsProblem(400, "CSMS.0002", f"The value of parameter kms_key_id is invalid: "
                           f"{exc.message}")
    return CsmsProblem(400, "CSMS.0012", f"the KMS key {kms_key_id} cannot be used: "
                       f"{exc.message}")


class Vault:
    """A project's secrets, sealed under its ``KeyRing``; thread-safe."""

    def __init__(self, keys: KeyRing) -> None:
        self._keys = keys
        self._lock = threading.RLock()
        self._secrets: dict[str, StoredSecret] = {}

    def _seal(self, secret: StoredSecret, version_id: str, value: Value) -> Version:
        aad = f"{secret.name}/{version_id}"
        try:
            key, blob = self._keys.wrap(secret.kms_key_id, value.text.encode("utf-8"), aad)
        except KmsProblem as exc:
            raise _kms_refusal(exc, secret.kms_key_id) from None
        return Version(id=version_id, created_ms=now_ms(), kms_key_id=key.key_id,
                       kind=value.kind, sealed=blob)

    def _require(self, name: str) -> StoredSecret:
        secret = self._secrets.get(check_name(name))
        if secret is None:
            raise CsmsProblem(404, "CSMS.0005", f"The secret {name} does not exist")
        return secret

    def _usable(self, name: str) -> StoredSecret:
        secret = self._require(name)
        if secret.state == PENDING_DELETE:
            raise CsmsProblem(400, "CSMS.0103", f"The secret {name} is in the scheduled "
                              "deletion state; restore it first")
        return secret

    def create(self, body: dict[str, object]) -> StoredSecret:
        name = check_name(body.get("name"))
        value = value_of(body)
        description = body.get("description") or ""
        if (not isinstance(description, str)
                or len(description.encode("utf-8")) > MAX_DESCRIPTION_BYTES):
            raise CsmsProblem(400, "CSMS.0002", f"description must be a string of at most "
                              f"{MAX_DESCRIPTION_BYTES} bytes")
        secret_type = body.get("secret_type") or "COMMON"
        if secret_type != "COMMON":
            raise CsmsProblem(400, "CSMS.0002", "secret_type: the emulator serves COMMON "
                              "secrets only")
        raw_key = body.get("kms_key_id")
        try:
            key = (self._keys.default_key() if raw_key in (None, "")
                   else self._keys.get(raw_key))
        except KmsProblem as exc:
            raise _kms_refusal(exc, str(raw_key)) from None
        stamp = now_ms()
        with self._lock:
            if name in self._secrets:
                raise CsmsProblem(409, "CSMS.0009", f"The secret {name} already exists")
            secret = StoredSecret(id=str(uuid.uuid4()), name=name, kms_key_id=key.key_id,
                                  description=description, secret_type=secret_type,
                                  created_ms=stamp, updated_ms=stamp)
            version = self._seal(secret, "v1", value)
            secret.versions.append(version)
            secret.stages[CURRENT] = (version.id, stamp)
            self._secrets[name] = secret
            return secret

    def update(self, name: str, body: dict[str, object]) -> StoredSecret:
        """``PUT …/secrets/{name}``: its KMS key (for the versions made from now on; those
        before stay under the key that sealed them) and its description."""
        unknown = sorted(set(body) - {"kms_key_id", "description"})
        if unknown:
            raise CsmsProblem(400, "CSMS.0002", f"the emulator updates kms_key_id and "
                              f"description only, not {', '.join(unknown)}")
        raw_key = body.get("kms_key_id")
        key = None
        if raw_key is not None:
            try:
                key = self._keys.get(raw_key) if raw_key != "" else self._keys.default_key()
            except KmsProblem as exc:
                raise _kms_refusal(exc, str(raw_key)) from None
        description = body.get("description")
        if description is not None and (
                not isinstance(description, str)
                or len(description.encode("utf-8")) > MAX_DESCRIPTION_BYTES):
            raise CsmsProblem(400, "CSMS.0002", f"description must be a string of at most "
                              f"{MAX_DESCRIPTION_BYTES} bytes")
        with self._lock:
            secret = self._usable(name)
            if key is not None:
                secret.kms_key_id = key.key_id
            if description is not None:
                secret.description = description
            secret.updated_ms = now_ms()
            return secret

    def add_version(self, name: str, body: dict[str, object]) -> tuple[StoredSecret, Version]:
        value = value_of(body)
        stages = _stages(body.get("version_stages"))
        expire = body.get("expire_time")
        if expire is not None and (isinstance(expire, bool) or not isinstance(expire, int)):
            raise CsmsProblem(400, "CSMS.0002", "expire_time must be an integer timestamp")
        with self._lock:
            secret = self._usable(name)
            version_id = f"v{len(secret.versions) + 1}"
            version = self._seal(secret, version_id, value)
            if expire is not None:
                version = Version(version.id, version.created_ms, version.kms_key_id,
                                  version.kind, version.sealed, expire)
            stamp = version.created_ms
            held = secret.stages.get(CURRENT)
            if CURRENT in stages and held is not None:
                secret.stages[PREVIOUS] = (held[0], stamp)
            for stage in stages:
                secret.stages[stage] = (version.id, stamp)
            secret.versions.append(version)
            secret.updated_ms = stamp
            return secret, version

    def stage(self, name: str, stage: str) -> tuple[StoredSecret, str, int]:
        with self._lock:
            secret = self._require(name)
            held = secret.stages.get(stage)
            if held is None:
                raise CsmsProblem(404, "CSMS.0005", f"The secret {name} has no version in "
                                  f"stage {stage}")
            return secret, held[0], held[1]

    def move_stage(self, name: str, stage: str, version_id: str) -> None:
        """Put ``stage`` on a version (``SYSCURRENT`` leaves ``SYSPREVIOUS`` behind)."""
        if STAGE_RE.fullmatch(stage) is None:
            raise CsmsProblem(400, "CSMS.0002", "a stage name is 1 to 64 letters, digits, "
                              "'.', '_' or '-'")
        with self._lock:
            secret = self._usable(name)
            version = secret.version(version_id)
            if version is None:
                raise CsmsProblem(404, "CSMS.0005", f"The secret {name} has no version "
                                  f"{version_id}")
            stamp = now_ms()
            held = secret.stages.get(stage)
            if stage == CURRENT and held is not None and held[0] != version.id:
                secret.stages[PREVIOUS] = (held[0], stamp)
            secret.stages[stage] = (version.id, stamp)
            secret.updated_ms = stamp

    def read(self, name: str, version_id: str) -> tuple[StoredSecret, Version, str]:
        """The version and its value, opened under the secret's KMS key."""
        with self._lock:
            secret = self._usable(name)
            version = secret.version(version_id)
            if version is None:
                raise CsmsProblem(404, "CSMS.0005", f"The secret {name} has no version "
                                  f"{version_id}")
        try:
            plain = self._keys.unwrap(version.kms_key_id, version.sealed,
                                      f"{secret.name}/{version.id}")
        except KmsProblem as exc:
            raise _kms_refusal(exc, version.kms_key_id) from None
        return secret, version, plain.decode("utf-8")

    def get(self, name: str) -> StoredSecret:
        with self._lock:
            return self._require(name)

    def all(self) -> list[StoredSecret]:
        with self._lock:
            return sorted(self._secrets.values(), key=lambda s: s.name)

    def delete(self, name: str) -> None:
        with self._lock:
            self._require(name)
            del self._secrets[name]

    def schedule_deletion(self, name: str, days: int) -> StoredSecret:
        with self._lock:
            secret = self._require(name)
            if secret.state == PENDING_DELETE:
                raise CsmsProblem(400, "CSMS.0107", f"The secret {name} is already in the "
                                  "scheduled deletion state")
            secret.state = PENDING_DELETE
            secret.scheduled_delete_ms = now_ms() + days * 86_400_000
            return secret

    def restore(self, name: str) -> StoredSecret:
        with self._lock:
            secret = self._require(name)
            if secret.state != PENDING_DELETE:
                raise CsmsProblem(400, "CSMS.0108", f"The secret {name} is not in the "
                                  "scheduled deletion state")
            secret.state = ENABLED
            secret.scheduled_delete_ms = None
            return secret

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()
