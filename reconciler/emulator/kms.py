"""One project's KMS keys (customer master keys), their aliases, and the data-key crypto.

A ``KmsKey`` is known by its UUID (``key_id``); it has a name (``key_alias``, as KMS calls a
key's name), a state (KMS's codes: ``"2"`` enabled, ``"3"`` disabled, ``"4"`` scheduled for
deletion) and a 256-bit secret that never leaves this module. ``wrap`` makes a data key's
``cipher_text``: AES-256-GCM under the key's secret, with the key id and the caller's
``additional_authenticated_data`` bound in as associated data, so the cipher text opens
under that key and that AAD only. ``unwrap`` refuses anything else with ``KmsProblem``.

``cipher_text`` layout (hex on the wire): version byte ``0x01`` | key id (16 bytes) | nonce
(12 bytes) | AES-GCM cipher text with its 16-byte tag.

Aliases (``alias/…``) name a key too; a key may have several, an alias one key.

May import: ``reconciler.emulator.problem``, ``cryptography``, the standard library.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field, replace

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reconciler.emulator.problem import ServiceProblem

KEY_ID_RE = re.compile(r"[0-9a-z]{8}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{12}")
KEY_ALIAS_RE = re.compile(r"[A-Za-z0-9:/_-]{1,255}")
ALIAS_RE = re.compile(r"alias/[A-Za-z0-9:/_-]{1,249}")
ENABLED, DISABLED, PENDING_DELETION = "2", "3", "4"
MIN_PENDING_DAYS, MAX_PENDING_DAYS = 7, 1096
MAX_AAD_BYTES = 128
DEFAULT_KEY_ALIAS = "csms/default"
_VERSION = b"\x01"
_HEADER = 1 + 16 + 12


class KmsProblem(ServiceProblem):
    """An error answer in KMS's shape: HTTP status, ``KMS.xxxx`` code, message."""


@dataclass(frozen=True, slots=True)
class KmsKey:
    key_id: str
    key_alias: str
    created_ms: int
    secret: bytes = field(repr=False)
    description: str = ""
    state: str = ENABLED
    scheduled_deletion_ms: int | None = None
    default: bool = False


@dataclass(frozen=True, slots=True)
class Alias:
    alias: str
    key_id: str
    created_ms: int


def now_ms() -> int:
    return int(time.time() * 1000)


def check_key_id(key_id: object) -> str:
    """A well-formed key id, or the 400 KMS gives for one that is not."""
    if not isinstance(key_id, str) or KEY_ID_RE.fullmatch(key_id) is None:
        raise KmsProblem(400, "KMS.0205", "Invalid key ID: key_id must be the key's UUID "
                         "(36 characters, lower case)")
    return key_id


class KeyRing:
    """A project's keys and aliases; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, KmsKey] = {}
        self._aliases: dict[str, Alias] = {}

    # -- keys ----------------------------------------------------------------------------

    def create(self, *, key_alias: object, description: object = "") -> KmsKey:
        if not isinstance(key_alias, str) or KEY_ALIAS_RE.fullmatch(key_alias) is None:
            raise KmsProblem(400, "KMS.1101", "Invalid key_alias: use 1 to 255 letters, "
                             "digits, ':', '/', '_' or '-'")
        if not isinstance(description, str) or len(description) > 255:
            raise KmsProblem(400, "KMS.0202", "key_description must be a string of at most "
                             "255 characters")
        key = KmsKey(key_id=str(uuid.uuid4()), key_alias=key_alias, created_ms=now_ms(),
                     secret=secrets.token_bytes(32), description=description)
        with self._lock:
            if any(k.key_alias == key_alias for k in self._keys.values()):
                raise KmsProblem(400, "KMS.1104", f"a key named {key_alias} already exists")
            self._keys[key.key_id] = key
        return key

    def default_key(self) -> KmsKey:
        """The project's ``csms/default`` key, made on first use as CSMS does."""
        with self._lock:
            for key in self._keys.values():
                if key.default or key.key_alias == DEFAULT_KEY_ALIAS:
                    return key
            key = KmsKey(key_id=str(uuid.uuid4()), key_alias=DEFAULT_KEY_ALIAS,
                         created_ms=now_ms(), secret=secrets.token_bytes(32), default=True)
            self._keys[key.key_id] = key
            return key

    def get(self, key_id: object) -> KmsKey:
        """The key, or the KMS error for an ill-formed or unknown id."""
        ident = check_key_id(key_id)
        with self._lock:
            key = self._keys.get(ident)
        if key is None:
            raise KmsProblem(404, "KMS.0207", f"The key {ident} does not exist in this "
                             "project")
        return key

    def usable(self, key_id: object) -> KmsKey:
        """The key when it may be used for cryptography: enabled."""
        key = self.get(key_id)
        if key.state == DISABLED:
            raise KmsProblem(400, "KMS.0209", f"The key {key.key_id} has been disabled")
        if key.state == PENDING_DELETION:
            raise KmsProblem(400, "KMS.0210", f"The key {key.key_id} is in Scheduled "
                             "deletion state and cannot be used")
        return key

    def all(self) -> list[KmsKey]:
        with self._lock:
            return sorted(self._keys.values(), key=lambda k: (k.created_ms, k.key_id))

    def _replace(self, key: KmsKey, **changes: object) -> KmsKey:
        with self._lock:
            current = self._keys[key.key_id]
            changed = replace(current, **changes)  # type: ignore[arg-type]
            self._keys[key.key_id] = changed
            return changed

    def disable(self, key_id: object) -> KmsKey:
        key = self.get(key_id)
        if key.state == PENDING_DELETION:
            raise KmsProblem(400, "KMS.0210", f"The key {key.key_id} is in Scheduled "
                             "deletion state; cancel the deletion first")
        return self._replace(key, state=DISABLED)

    def enable(self, key_id: object) -> KmsKey:
        key = self.get(key_id)
        if key.state == PENDING_DELETION:
            raise KmsProblem(400, "KMS.0210", f"The key {key.key_id} is in Scheduled "
                             "deletion state; cancel the deletion first")
        return self._replace(key, state=ENABLED)

    def schedule_deletion(self, key_id: object, pending_days: object) -> KmsKey:
        key = self.get(key_id)
        days = int_text(pending_days, what="pending_days", low=MIN_PENDING_DAYS,
                         high=MAX_PENDING_DAYS)
        if key.default:
            raise KmsProblem(400, "KMS.0211", "Cannot perform this operation on Default "
                             "Master Keys")
        when = now_ms() + days * 86_400_000
        return self._replace(key, state=PENDING_DELETION, scheduled_deletion_ms=when)

    def cancel_deletion(self, key_id: object) -> KmsKey:
        key = self.get(key_id)
        if key.state != PENDING_DELETION:
            raise KmsProblem(400, "KMS.0212", f"The key {key.key_id} is not scheduled for "
                             "deletion")
        return self._replace(key, state=DISABLED, scheduled_deletion_ms=None)

    # -- aliases -------------------------------------------------------------------------

    def add_alias(self, alias: object, key_id: object) -> Alias:
        if not isinstance(alias, str) or ALIAS_RE.fullmatch(alias) is None:
            raise KmsProblem(400, "KMS.1101", "Invalid alias: it must start with 'alias/' "
                             "followed by 1 to 249 letters, digits, ':', '/', '_' or '-'")
        key = self.get(key_id)
        entry = Alias(alias=alias, key_id=key.key_id, created_ms=now_ms())
        with self._lock:
            if alias in self._aliases:
                raise KmsProblem(400, "KMS.1105", f"the alias {alias} already exists")
            self._aliases[alias] = entry
        return entry

    def aliases(self, key_id: str | None = None) -> list[Alias]:
        with self._lock:
            items = list(self._aliases.values())
        return sorted((a for a in items if key_id is None or a.key_id == key_id),
                      key=lambda a: a.alias)

    def aliases_of(self, key_id: str) -> list[str]:
        return [a.alias for a in self.aliases(key_id)]

    # -- data keys -----------------------------------------------------------------------

    def wrap(self, key_id: object, plaintext: bytes, aad: object) -> tuple[KmsKey, bytes]:
        key = self.usable(key_id)
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(key.secret).encrypt(nonce, plaintext, _associated(key, aad))
        return key, _VERSION + uuid.UUID(key.key_id).bytes + nonce + sealed

    def unwrap(self, key_id: object, blob: bytes, aad: object) -> bytes:
        key = self.usable(key_id)
        refused = KmsProblem(400, "KMS.0303", "The cipher text cannot be decrypted with this "
                             "key and additional_authenticated_data")
        if len(blob) < _HEADER + 16 or blob[:1] != _VERSION:
            raise refused
        if uuid.UUID(bytes=blob[1:17]) != uuid.UUID(key.key_id):
            raise refused
        try:
            return AESGCM(key.secret).decrypt(blob[17:_HEADER], blob[_HEADER:],
                                               _associated(key, aad))
        except InvalidTag:
            raise refused from None

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
            self._aliases.clear()


def check_aad(aad: object) -> bytes:
    if aad is None:
        return b""
    if not isinstance(aad, str):
        raise KmsProblem(400, "KMS.0202", "additional_authenticated_data must be a string")
    raw = aad.encode("utf-8")
    if len(raw) > MAX_AAD_BYTES:
        raise KmsProblem(400, "KMS.0202", f"additional_authenticated_data is longer than "
                         f"{MAX_AAD_BYTES} bytes")
    return raw


def _associated(key: KmsKey, aad: object) -> bytes:
    return key.key_id.encode() + b"\x00" + check_aad(aad)


def int_text(value: object, *, what: str, low: int, high: int) -> int:
    """KMS sends numbers as strings ("7"); an int is taken too."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not text.isdigit() or not low <= int(text) <= high:
        raise KmsProblem(400, "KMS.0202", f"{what} must be an integer from {low} to {high}")
    return int(text)
