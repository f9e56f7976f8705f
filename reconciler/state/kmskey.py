"""A state key from Huawei Cloud KMS: a data key per state file, kept wrapped in the state.

``new_data_key`` asks KMS for a fresh 256-bit data key under a customer master key
(``create-datakey``) and keeps only its wrapped form in the state's key block (``KmsWrap``:
the key's id and the cipher text, hex; neither is secret). ``open_data_key`` unwraps it
(``decrypt-datakey``); a fresh one is unwrapped once before it is used, so a state is
never sealed under a key its key block cannot open. The state's lineage is bound in as the
additional authenticated data (``"reconciler state " + lineage``), so a wrapped key copied
into another state does not open there. The clear data key is what ``crypto.StateKey`` seals
with and, through HKDF, what authenticates the state: the integrity key follows the provider.

KMS itself is reached through ``DataKeys``, which the commands supply (``reconciler.commands.
statekey``, over ``reconciler.api.kms``): the state layer never imports an API client, and a
command that never unseals (``plan``) never asks KMS anything.

May import: ``reconciler.model``, ``reconciler.errors``, the stdlib.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Protocol

from reconciler.errors import StateKeyError
from reconciler.model import Secret

KEY_BYTES = 32
AAD_LABEL = "reconciler state "
KEY_ID = re.compile(r"[0-9a-z]{8}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{12}")
_HEX_MAX = 8192
_HEX = re.compile(rf"[0-9a-fA-F]{{2,{_HEX_MAX}}}")


@dataclass(frozen=True, slots=True)
class KmsWrap:
    """The wrapped data key as the state's key block keeps it: ``{"key_id", "cipher_text"}``."""

    key_id: str  # the KMS key's UUID (an alias is resolved before it is recorded)
    cipher_text: str  # hex, as KMS answers it

    def as_dict(self) -> dict[str, str]:
        return {"key_id": self.key_id, "cipher_text": self.cipher_text}

    @classmethod
    def from_dict(cls, obj: object, *, where: str) -> KmsWrap:
        """``ValueError`` naming the field for anything but a key id and a hex cipher text."""
        if not isinstance(obj, dict) or set(obj) != {"key_id", "cipher_text"}:
            raise ValueError(f"{where}: must be {{key_id, cipher_text}}")
        key_id, cipher_text = obj["key_id"], obj["cipher_text"]
        if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id):
            raise ValueError(f"{where}.key_id: must be a KMS key id (a UUID)")
        if not isinstance(cipher_text, str) or not _HEX.fullmatch(cipher_text) \
                or len(cipher_text) % 2:
            raise ValueError(f"{where}.cipher_text: must be hex")
        return cls(key_id=key_id, cipher_text=cipher_text)


class DataKeys(Protocol):
    """KMS as the state needs it. Each method raises ``StateKeyError`` saying what failed
    (KMS unreachable, the key disabled, permission denied), never with key material."""

    @property
    def where(self) -> str:
        """Which KMS, for messages: the target and endpoint."""
        ...

    def key_id(self, key: str) -> str:
        """The UUID of ``key`` (a UUID, or ``alias/NAME`` looked up in KMS)."""
        ...

    def create(self, key_id: str, *, aad: str) -> tuple[Secret, str]:
        """A fresh 256-bit data key under ``key_id``: (its hex, as a ``Secret``; its cipher
        text, hex)."""
        ...

    def decrypt(self, key_id: str, cipher_text: str, *, aad: str) -> Secret:
        """The data key (hex) ``cipher_text`` wraps under ``key_id`` and ``aad``."""
        ...


def aad(lineage: str) -> str:
    """The additional authenticated data of a state's data key: its lineage."""
    return AAD_LABEL + lineage


def new_data_key(service: DataKeys, key_id: str, *, lineage: str) -> tuple[bytes, KmsWrap]:
    """A fresh data key under ``key_id``, in clear and wrapped. Before it seals anything, its
    cipher text must fit a state's key block and KMS must unwrap it back to the same key: a
    state sealed under a key that its own key block cannot open would lose every private
    key in it."""
    plain, cipher_text = service.create(key_id, aad=aad(lineage))
    raw = _key_bytes(plain, key_id=key_id)
    try:
        wrap = KmsWrap.from_dict({"key_id": key_id, "cipher_text": cipher_text}, where="key")
    except ValueError:
        raise StateKeyError(f"KMS answered a data key under {key_id} whose cipher text a state "
                            f"file cannot hold (more than {_HEX_MAX} hex digits); nothing was "
                            "decrypted or written.") from None
    if not hmac.compare_digest(open_data_key(service, wrap, lineage=lineage), raw):
        raise StateKeyError(f"KMS unwrapped the new data key under {key_id} to another key "
                            "than the one it made; nothing was decrypted or written. Run the "
                            "command again; if it persists, something between here and KMS "
                            "is changing its answers.")
    return raw, wrap


def open_data_key(service: DataKeys, wrap: KmsWrap, *, lineage: str) -> bytes:
    """The clear data key of ``wrap``, unwrapped by KMS for this lineage."""
    plain = service.decrypt(wrap.key_id, wrap.cipher_text, aad=aad(lineage))
    return _key_bytes(plain, key_id=wrap.key_id)


def _key_bytes(plain: Secret, *, key_id: str) -> bytes:
    try:
        raw = bytes.fromhex(plain.reveal())
    except ValueError:
        raw = b""
    if len(raw) != KEY_BYTES:
        raise StateKeyError(f"KMS answered a data key under {key_id} that is not 256 bits; "
                            "nothing was decrypted or written. Run the command again.")
    return raw
