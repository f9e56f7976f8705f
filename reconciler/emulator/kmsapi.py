"""KMS's ``/v1.0/{project_id}/kms/…`` operations over one project's ``KeyRing``.

Operation names (also the counter names): ``kms_create_key``, ``kms_enable_key``,
``kms_disable_key``, ``kms_schedule_key_deletion``, ``kms_cancel_key_deletion``,
``kms_describe_key``, ``kms_create_alias``, ``kms_list_aliases``, ``kms_create_datakey``,
``kms_decrypt_datakey``. Bodies and answers are those of the official SDK's models
(``huaweicloudsdkkms.v2``); ``docs/kms-csms.md`` lists them. Errors are ``KmsProblem``.

May import: ``reconciler.emulator.kms``, the standard library.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.emulator.kms import (
    Alias,
    KeyRing,
    KmsKey,
    KmsProblem,
    check_aad,
    check_key_id,
    int_text,
)

KEY_SPECS = {"AES_256": 256, "AES_128": 128}
MAX_DATAKEY_BITS = 8192
MAX_ALIAS_PAGE = 100
DEFAULT_ALIAS_PAGE = 50

# (method, path after /kms/) -> operation
ROUTES: dict[tuple[str, str], str] = {
    ("POST", "create-key"): "kms_create_key",
    ("POST", "enable-key"): "kms_enable_key",
    ("POST", "disable-key"): "kms_disable_key",
    ("POST", "schedule-key-deletion"): "kms_schedule_key_deletion",
    ("POST", "cancel-key-deletion"): "kms_cancel_key_deletion",
    ("POST", "describe-key"): "kms_describe_key",
    ("POST", "aliases"): "kms_create_alias",
    ("GET", "aliases"): "kms_list_aliases",
    ("POST", "create-datakey"): "kms_create_datakey",
    ("POST", "decrypt-datakey"): "kms_decrypt_datakey",
}
OPERATIONS = tuple(sorted(set(ROUTES.values())))
WRITE_OPERATIONS = frozenset({"kms_create_key", "kms_enable_key", "kms_disable_key",
                              "kms_schedule_key_deletion", "kms_cancel_key_deletion",
                              "kms_create_alias"})


@dataclass(frozen=True, slots=True)
class Where:
    """What answers name besides the key ring: the account and region of the project."""

    domain_id: str
    region: str


def route(method: str, rest: list[str]) -> str | None:
    """The operation of ``/v1.0/{project_id}/kms/<rest>``; None for an unknown path; a 405
    ``KmsProblem`` for a known path and another method."""
    if len(rest) != 1:
        return None
    operation = ROUTES.get((method, rest[0]))
    if operation is None and any(path == rest[0] for _, path in ROUTES):
        raise KmsProblem(405, "KMS.0201", f"method {method} is not allowed here")
    return operation


def key_details(key: KmsKey, where: Where) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "domain_id": where.domain_id,
        "key_alias": key.key_alias,
        "realm": where.region,
        "key_spec": "AES_256",
        "key_usage": "ENCRYPT_DECRYPT",
        "key_description": key.description,
        "creation_date": str(key.created_ms),
        "scheduled_deletion_date": ("" if key.scheduled_deletion_ms is None
                                    else str(key.scheduled_deletion_ms)),
        "key_state": key.state,
        "default_key_flag": "1" if key.default else "0",
        "key_type": "1",
        "expiration_time": "",
        "origin": "kms",
        "key_rotation_enabled": "false",
        "sys_enterprise_project_id": "0",
    }


def alias_entity(alias: Alias, where: Where) -> dict[str, Any]:
    return {
        "domain_id": where.domain_id,
        "key_id": alias.key_id,
        "alias": alias.alias,
        "alias_urn": f"kms:{where.region}:{where.domain_id}:alias:{alias.alias}",
        "create_time": str(alias.created_ms),
        "update_time": str(alias.created_ms),
    }


def _body(body: Any) -> Mapping[str, Any]:
    if body is None:
        raise KmsProblem(400, "KMS.0204", "Parameters missing in the request message: the "
                         "body is empty")
    if not isinstance(body, dict):
        raise KmsProblem(400, "KMS.0202", "Invalid JSON format of the request message: the "
                         "body must be a JSON object")
    return body


def _datakey_bits(body: Mapping[str, Any]) -> int:
    length = body.get("datakey_length")
    if length not in (None, ""):
        bits = int_text(length, what="datakey_length", low=8, high=MAX_DATAKEY_BITS)
        if bits % 8:
            raise KmsProblem(400, "KMS.0202", "datakey_length must be a multiple of 8")
        return bits
    spec = body.get("key_spec")
    if spec in (None, ""):
        return 256
    if spec not in KEY_SPECS:
        raise KmsProblem(400, "KMS.0202", f"key_spec must be one of "
                         f"{', '.join(sorted(KEY_SPECS))} here")
    return KEY_SPECS[spec]


def _hex(value: Any, *, what: str) -> bytes:
    if not isinstance(value, str) or not value or len(value) % 2:
        raise KmsProblem(400, "KMS.0202", f"{what} must be a non-empty hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise KmsProblem(400, "KMS.0202", f"{what} must be a non-empty hex string") from None


class KmsApi:
    """The KMS operations over one project's key ring."""

    def __init__(self, keys: KeyRing, where: Where) -> None:
        self.keys = keys
        self.where = where

    def handle(self, operation: str, *, body: Any, query: Mapping[str, str]) -> dict[str, Any]:
        if operation == "kms_list_aliases":
            return self._list_aliases(query)
        act: Callable[[Mapping[str, Any]], dict[str, Any]] = getattr(
            self, "_" + operation.removeprefix("kms_"))
        return act(_body(body))

    def _create_key(self, body: Mapping[str, Any]) -> dict[str, Any]:
        spec = body.get("key_spec") or "AES_256"
        usage = body.get("key_usage") or "ENCRYPT_DECRYPT"
        if spec != "AES_256" or usage != "ENCRYPT_DECRYPT":
            raise KmsProblem(400, "KMS.0202", "the emulator makes AES_256 ENCRYPT_DECRYPT "
                             "keys only")
        key = self.keys.create(key_alias=body.get("key_alias"),
                               description=body.get("key_description") or "")
        return {"key_info": {"key_id": key.key_id, "domain_id": self.where.domain_id,
                             "region_id": self.where.region}}

    def _enable_key(self, body: Mapping[str, Any]) -> dict[str, Any]:
        key = self.keys.enable(body.get("key_id"))
        return {"key_info": {"key_id": key.key_id, "key_state": key.state}}

    def _disable_key(self, body: Mapping[str, Any]) -> dict[str, Any]:
        key = self.keys.disable(body.get("key_id"))
        return {"key_info": {"key_id": key.key_id, "key_state": key.state}}

    def _schedule_key_deletion(self, body: Mapping[str, Any]) -> dict[str, Any]:
        key = self.keys.schedule_deletion(body.get("key_id"), body.get("pending_days"))
        return {"key_id": key.key_id, "key_state": key.state}

    def _cancel_key_deletion(self, body: Mapping[str, Any]) -> dict[str, Any]:
        key = self.keys.cancel_deletion(body.get("key_id"))
        return {"key_id": key.key_id, "key_state": key.state}

    def _describe_key(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {"key_info": key_details(self.keys.get(body.get("key_id")), self.where)}

    def _create_alias(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return alias_entity(self.keys.add_alias(body.get("alias"), body.get("key_id")),
                            self.where)

    def _list_aliases(self, query: Mapping[str, str]) -> dict[str, Any]:
        key_id = query.get("key_id") or None
        if key_id is not None:
            self.keys.get(check_key_id(key_id))
        limit_text = query.get("limit") or str(DEFAULT_ALIAS_PAGE)
        limit = int_text(limit_text, what="limit", low=1, high=MAX_ALIAS_PAGE)
        marker = query.get("marker") or None
        items = self.keys.aliases(key_id)
        if marker is not None:
            items = [a for a in items if a.alias > marker]
        page, more = items[:limit], len(items) > limit
        return {"aliases": [alias_entity(a, self.where) for a in page],
                "page_info": {"next_marker": page[-1].alias if more else "",
                              "current_count": len(page)}}

    def _create_datakey(self, body: Mapping[str, Any]) -> dict[str, Any]:
        bits = _datakey_bits(body)
        plain = secrets.token_bytes(bits // 8)
        key, blob = self.keys.wrap(body.get("key_id"), plain,
                                   body.get("additional_authenticated_data"))
        return {"key_id": key.key_id, "plain_text": plain.hex(), "cipher_text": blob.hex()}

    def _decrypt_datakey(self, body: Mapping[str, Any]) -> dict[str, Any]:
        check_aad(body.get("additional_authenticated_data"))
        blob = _hex(body.get("cipher_text"), what="cipher_text")
        plain = self.keys.unwrap(body.get("key_id"), blob,
                                 body.get("additional_authenticated_data"))
        length = body.get("datakey_cipher_length")
        if length not in (None, "") and int_text(
                length, what="datakey_cipher_length", low=1, high=1024) != len(plain):
            raise KmsProblem(400, "KMS.0202", "datakey_cipher_length is not the byte length "
                             "of the data key")
        return {"data_key": plain.hex(), "datakey_length": str(len(plain)),
                "datakey_dgst": hashlib.sha256(plain).hexdigest()}
