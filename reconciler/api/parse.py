"""JSON answers of the key pair APIs -> ``RemoteKeyPair`` records, after the shape check.

Every function here takes an answer that ``shapes.check`` has passed, so each field it reads
is of its documented type or absent (None). ``answer`` runs that check on an ``HttpResult``;
the adapters call it for every answer, so a body without the documented shape is an
``AnswerShapeError`` naming the request and the field, never "nothing there" and never a
``KeyError`` deep in the engine.

May import: the standard library, ``reconciler.model``, ``reconciler.errors``,
``reconciler.keys``, ``reconciler.api.shapes``, ``reconciler.api.client``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reconciler import keys
from reconciler.api import shapes
from reconciler.api.client import HttpResult
from reconciler.errors import AnswerShapeError, KeyFormatError
from reconciler.model import RemoteKeyPair, Secret


def answer(result: HttpResult, shape: shapes.Node, *, operation: str) -> Mapping[str, object]:
    """The body of ``result``, checked against ``shape`` (an empty body is ``{}`` when the
    shape reads nothing)."""
    if result.body_problem is not None:
        raise shapes.shape_error(request=result.request, operation=operation, path="",
                                 problem=result.body_problem, request_id=result.request_id,
                                 status=result.status)
    shapes.check(result.data, shape, request=result.request, operation=operation,
                 request_id=result.request_id, status=result.status)
    return result.data if isinstance(result.data, Mapping) else {}


def fail(result: HttpResult, *, operation: str, path: str, problem: str) -> AnswerShapeError:
    """The error for an answer of the right shape that still cannot be right (a list that
    cannot be complete, a name twice)."""
    return shapes.shape_error(request=result.request, operation=operation, path=path,
                              problem=problem, request_id=result.request_id,
                              status=result.status)


def _member(data: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def remote_keypair(data: Mapping[str, object]) -> RemoteKeyPair:
    """One checked ``keypair`` object: ``shapes.KEYPAIR`` holds its ``name`` and
    ``public_key`` to strings, its other fields to their type or null (or absent), so each is
    read as it is (a list page holds a thousand)."""
    get: Callable[[str], Any] = data.get
    public_key = get("public_key") or ""
    flag = get("is_key_protection")
    return RemoteKeyPair(
        name=get("name") or "",
        public_key=public_key,
        fingerprint=_fingerprint(get("fingerprint"), public_key),
        type=get("type") or "ssh",
        user_id=get("user_id"),
        scope=get("scope"),
        description=get("description"),
        key_protection=flag if isinstance(flag, bool) else None,
        frozen_state=_frozen(get("frozen_state")),
    )


UNREADABLE_FROZEN_STATE = -1  # present but neither a number nor digits: never "not frozen"


def _frozen(value: object) -> int | None:
    """kps ``frozen_state``: a number (detail) or digits (list); None when absent."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        return int(value)
    return UNREADABLE_FROZEN_STATE


def keypair_of(data: Mapping[str, object]) -> RemoteKeyPair:
    """The ``keypair`` member of a checked ``{"keypair": {...}}``."""
    return remote_keypair(_member(data, "keypair"))


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


def listed_keypairs(data: Mapping[str, object]) -> list[RemoteKeyPair]:
    """The items of a checked ``{"keypairs": [{"keypair": {...}}, ...]}``."""
    items = data.get("keypairs")
    if not isinstance(items, list):
        return []
    return [keypair_of(item) for item in items if isinstance(item, Mapping)]


def private_key_of(data: Mapping[str, object]) -> Secret | None:
    """The ``keypair.private_key`` of a checked answer; None when absent or empty."""
    value = _member(data, "keypair").get("private_key")
    return Secret(value) if isinstance(value, str) and value.strip() else None


def next_marker(data: Mapping[str, object]) -> str | None:
    """``page_info.next_marker`` when present and non-empty."""
    marker = _member(data, "page_info").get("next_marker")
    return marker if isinstance(marker, str) and marker else None


def has_next_link(data: Mapping[str, object]) -> bool:
    """Nova ``keypairs_links`` with ``rel: next``: the answer is one page, not the list."""
    links = data.get("keypairs_links")
    return isinstance(links, list) and any(
        isinstance(link, Mapping) and link.get("rel") == "next" for link in links)
