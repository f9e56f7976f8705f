"""The KMS client: data keys under a customer master key, and what is needed to find the key.

``KmsClient`` speaks ``/v1.0/{project_id}/kms/…`` on the key pair API's signed host (KMS and
KPS are one endpoint, ``kms.{region}.myhuaweicloud.com``). A key is named by its UUID; an
``alias/…`` name is resolved through the aliases list (``resolve_key``). ``create_datakey``
answers a fresh 256-bit data key in clear (a ``Secret``, never printed) and wrapped
(``cipher_text``, safe to store); ``decrypt_datakey`` unwraps it under the same key and the
same ``additional_authenticated_data``, and checks the answer against its own SHA-256 digest.
Neither is a create in the retry sense: they change nothing, so they are resent like reads.

May import: the standard library, ``reconciler.model``, ``reconciler.errors``,
``reconciler.api.{client,dewcall,dewshapes,protocol}``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.api import dewshapes
from reconciler.api.client import HttpClient
from reconciler.api.dewcall import DewHttp
from reconciler.api.protocol import ApiSettings
from reconciler.errors import AnswerShapeError, UsageError
from reconciler.model import Secret

DATAKEY_BITS = 256
MAX_AAD_BYTES = 128
MAX_ALIAS_PAGES = 1000
ALIAS_PAGE = 50
STATES = {"1": "pending activation", "2": "enabled", "3": "disabled",
          "4": "scheduled for deletion", "5": "pending import"}
# as the policy-based (1.1) and the identity-policy (5.0) references name them
ACTIONS = ("kms:dek:create, kms:dek:decrypt, kms:cmk:get and, for an alias, kms:alias:list "
           "(in an identity policy: kms:cmk:createDataKey, kms:cmk:decryptDataKey, "
           "kms:cmk:get and kms:alias:list)")


@dataclass(frozen=True, slots=True)
class DataKey:
    """A data key: in clear (hex, a ``Secret``) and wrapped under ``key_id`` (hex)."""

    key_id: str
    plaintext: Secret
    cipher_text: str

    def reveal_bytes(self) -> bytes:
        """The key's bytes: the one explicit way to them."""
        return bytes.fromhex(self.plaintext.reveal())


@dataclass(frozen=True, slots=True)
class KmsKeyInfo:
    key_id: str
    name: str  # KMS's key_alias
    state: str  # KMS's code: "2" enabled, "3" disabled, "4" scheduled for deletion

    @property
    def usable(self) -> bool:
        return self.state == "2"

    @property
    def state_text(self) -> str:
        return STATES.get(self.state, f"state {self.state}")


def _hints(key_id: str) -> dict[str, str]:
    return {
        "KMS.0205": f"{key_id!r} is not a KMS key id: give the key's UUID, or an alias/… name",
        "KMS.0207": (f"The KMS key {key_id} does not exist in this project: check the key "
                     "id, the region and the project id."),
        "KMS.0209": (f"The KMS key {key_id} is disabled: enable it (KMS console, or "
                     "enable-key), or configure another key."),
        "KMS.0210": (f"The KMS key {key_id} is scheduled for deletion: cancel the deletion "
                     "(KMS console, or cancel-key-deletion) and enable it, or configure "
                     "another key."),
        "KMS.0303": (f"The cipher text does not open under the KMS key {key_id} with this "
                     "additional authenticated data: it was made under another key or for "
                     "another context, or it was altered."),
    }


def _aad(aad: str) -> str:
    if len(aad.encode("utf-8")) > MAX_AAD_BYTES:
        raise UsageError(f"the additional authenticated data for KMS is longer than "
                         f"{MAX_AAD_BYTES} bytes; use a shorter context string")
    return aad


def _bad(result_request: str, operation: str, path: str, problem: str) -> AnswerShapeError:
    return AnswerShapeError(
        f"{operation} failed: the answer to {result_request} does not add up: {path}: "
        f"{problem}. Nothing was kept from it. Run the command again; if it persists, a "
        "proxy or gateway between here and the cloud is changing answers.",
        path=path, request=result_request, operation=operation)


class KmsClient:
    """KMS in one project (the settings of the key pair API of that project)."""

    def __init__(self, settings: ApiSettings, *, http: HttpClient | None = None) -> None:
        """``http``: a client of these settings to share (or with a test's clock)."""
        self._http = DewHttp(settings, service="KMS", actions=ACTIONS, http=http)
        self._base = f"/v1.0/{settings.project_id}/kms"

    def close(self) -> None:
        self._http.close()

    def describe_key(self, key_id: str) -> KmsKeyInfo | None:
        """The key's name and state; None when the project has no such key."""
        data = self._http.call(method="POST", path=f"{self._base}/describe-key",
                               operation=f"describe KMS key {key_id}",
                               shape=dewshapes.KEY_DETAILS, body={"key_id": key_id},
                               hints=_hints(key_id), missing=True)
        if data is None:
            return None
        info = data["key_info"]
        assert isinstance(info, Mapping)
        return KmsKeyInfo(key_id=str(info["key_id"]), name=str(info.get("key_alias") or ""),
                          state=str(info["key_state"]))

    def resolve_key(self, key: str) -> str:
        """The key id of ``key``: a key id as it is, an ``alias/…`` through the aliases."""
        if dewshapes.KEY_ID.fullmatch(key):
            return key
        if not key.startswith("alias/"):
            raise UsageError(f"{key!r} is neither a KMS key id (a UUID) nor an alias "
                             "(alias/NAME); give one of them")
        marker = ""
        for _ in range(MAX_ALIAS_PAGES):
            query = [("limit", str(ALIAS_PAGE))] + ([("marker", marker)] if marker else [])
            data = self._http.call(method="GET", path=f"{self._base}/aliases",
                                   operation=f"resolve KMS alias {key}",
                                   shape=dewshapes.ALIASES, query=query)
            assert data is not None
            items = data["aliases"]
            assert isinstance(items, list)  # checked by the shape
            for item in items:
                if item["alias"] == key:
                    return str(item["key_id"])
            info = data.get("page_info")
            following = info.get("next_marker") if isinstance(info, Mapping) else None
            if not following or following == marker:
                break
            marker = str(following)
        raise UsageError(f"the KMS alias {key} does not exist in project "
                         f"{self._http.project_id}; create it, or give the key's id")

    def create_datakey(self, key_id: str, *, aad: str) -> DataKey:
        """A fresh 256-bit data key under ``key_id``, ``aad`` bound into its cipher text."""
        operation = f"create a data key under KMS key {key_id}"
        body = {"key_id": key_id, "datakey_length": str(DATAKEY_BITS),
                "additional_authenticated_data": _aad(aad)}
        data = self._http.call(method="POST", path=f"{self._base}/create-datakey",
                               operation=operation, shape=dewshapes.CREATED_DATAKEY,
                               body=body, hints=_hints(key_id))
        assert data is not None
        plain = str(data["plain_text"])
        request = f"POST {self._base}/create-datakey"
        if data["key_id"] != key_id:
            raise _bad(request, operation, "key_id", "the data key was made under another key")
        if len(plain) != DATAKEY_BITS // 4:
            raise _bad(request, operation, "plain_text",
                       f"expected a {DATAKEY_BITS}-bit key, got {len(plain) * 4} bits")
        return DataKey(key_id=key_id, plaintext=Secret(plain.lower()),
                       cipher_text=str(data["cipher_text"]))

    def decrypt_datakey(self, key_id: str, cipher_text: str, *, aad: str) -> Secret:
        """The data key (hex) that ``cipher_text`` wraps under ``key_id`` and ``aad``."""
        operation = f"decrypt a data key under KMS key {key_id}"
        body = {"key_id": key_id, "cipher_text": cipher_text,
                "datakey_cipher_length": str(DATAKEY_BITS // 8),
                "additional_authenticated_data": _aad(aad)}
        data = self._http.call(method="POST", path=f"{self._base}/decrypt-datakey",
                               operation=operation, shape=dewshapes.DECRYPTED_DATAKEY,
                               body=body, hints=_hints(key_id))
        assert data is not None
        plain = bytes.fromhex(str(data["data_key"]))
        request = f"POST {self._base}/decrypt-datakey"
        digest = hashlib.sha256(plain).hexdigest()
        if not hmac.compare_digest(digest, str(data["datakey_dgst"]).lower()):
            raise _bad(request, operation, "datakey_dgst", "it is not the SHA-256 of data_key")
        length = data.get("datakey_length")
        if length is not None and int(str(length)) != len(plain):
            raise _bad(request, operation, "datakey_length", "it is not data_key's length")
        return Secret(plain.hex())
