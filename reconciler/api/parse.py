"""JSON answers of the key pair APIs -> ``RemoteKeyPair`` records, leniently.

Fields the API does not send become None; ``frozen_state`` may be a string or an int;
``is_key_protection`` may be missing. A body without the expected shape is an ``ApiError``
naming the operation, never a ``KeyError`` deep in the engine.

May import: the standard library, ``reconciler.model``, ``reconciler.errors``,
``reconciler.keys``.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler import keys
from reconciler.errors import ApiError, KeyFormatError
from reconciler.model import RemoteKeyPair, Secret


def _text(data: Mapping[str, object], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _flag(data: Mapping[str, object], key: str) -> bool | None:
    value = data.get(key)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def mapping(data: object, *, operation: str, what: str = "answer") -> Mapping[str, object]:
    if not isinstance(data, Mapping):
        raise ApiError(
            f"{operation} failed: the {what} was not the JSON object the API documents; "
            "check that the endpoint and --api match",
            operation=operation,
        )
    return data


def keypair_body(data: object, *, operation: str) -> Mapping[str, object]:
    """The ``keypair`` member of ``{"keypair": {...}}``."""
    return mapping(mapping(data, operation=operation).get("keypair"), operation=operation)


def remote_keypair(data: Mapping[str, object], *, operation: str) -> RemoteKeyPair:
    name = _text(data, "name")
    if not name:
        raise ApiError(f"{operation} failed: a key pair came back without a name",
                       operation=operation)
    public_key = _text(data, "public_key") or ""
    return RemoteKeyPair(
        name=name,
        public_key=public_key,
        fingerprint=_fingerprint(_text(data, "fingerprint"), public_key),
        type=_text(data, "type") or "ssh",
        user_id=_text(data, "user_id"),
        scope=_text(data, "scope"),
        description=_text(data, "description"),
        key_protection=_flag(data, "is_key_protection"),
    )


def _fingerprint(reported: str | None, public_key: str) -> str:
    """The MD5 colon-hex form the plan compares: lower case, no ``MD5:`` prefix; computed
    from the public key when the answer has none (an upper-case or prefixed fingerprint
    must not look like a changed key, which would replace it)."""
    text = (reported or "").strip().lower().removeprefix("md5:")
    if text:
        return text
    try:
        return keys.md5_fingerprint(public_key) if public_key.startswith(("ssh-", "ecdsa-")) \
            else ""
    except KeyFormatError:
        return ""


def listed_keypairs(data: object, *, operation: str) -> list[RemoteKeyPair]:
    """``{"keypairs": [{"keypair": {...}}, ...]}`` (bare items are accepted too)."""
    items = mapping(data, operation=operation).get("keypairs")
    if items is None:
        return []
    if not isinstance(items, list):
        raise ApiError(f"{operation} failed: 'keypairs' was not a list", operation=operation)
    out = []
    for item in items:
        entry = mapping(item, operation=operation, what="list entry")
        inner = entry.get("keypair", entry)
        out.append(remote_keypair(mapping(inner, operation=operation), operation=operation))
    return out


def private_key_of(data: Mapping[str, object]) -> Secret | None:
    value = data.get("private_key")
    return Secret(value) if isinstance(value, str) and value else None


def next_marker(data: object) -> str | None:
    """``page_info.next_marker`` when present and non-empty."""
    if not isinstance(data, Mapping):
        return None
    info = data.get("page_info")
    if not isinstance(info, Mapping):
        return None
    marker = info.get("next_marker")
    return str(marker) if marker not in (None, "") else None
