"""The documented shape of every success answer, and the one check that holds answers to it.

Each operation's answer is a small declarative description (``Obj``, ``Arr``, ``Str``,
``Bool``, ``Anything``) taken from ``reference/keypair-api.md``: which keys are required,
which may be null, what type each holds, and the key pair name rule. ``check`` walks an
answer against its shape and raises ``AnswerShapeError`` naming the request and the JSON path
of the first bad field (``keypairs[3].keypair.fingerprint: expected a string, got null``).
Only fields reconciler reads are constrained; others (``id``, times) pass untouched, as do
keys the API may add later. ``frozen_state`` (a string in the kps list, a number in its
detail) is read by onboarding only, leniently (``parse``): a refresh never fails on it.

Messages never echo a value of a field marked ``sensitive`` (private keys), and escape control
characters in anything they do echo.

May import: the standard library, ``reconciler.errors``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from reconciler.errors import AnswerShapeError

# Any name a cloud may hold (unmanaged ones too): not empty, at most 255 characters
# (the widest documented bound), no control characters.
NAME = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
_ECHO_LIMIT = 60


@dataclass(frozen=True, slots=True)
class Str:
    pattern: re.Pattern[str] | None = None
    sensitive: bool = False  # never echoed
    nonempty: bool = False
    rule: str = "key pair name"  # what the pattern is, for the message


@dataclass(frozen=True, slots=True)
class Bool:
    pass


@dataclass(frozen=True, slots=True)
class Anything:
    """A field reconciler does not read: any JSON value."""


@dataclass(frozen=True, slots=True)
class Arr:
    item: Node


@dataclass(frozen=True, slots=True)
class Key:
    node: Node
    required: bool = True
    nullable: bool = False  # null means the same as absent


@dataclass(frozen=True, slots=True)
class Obj:
    keys: Mapping[str, Key] = field(default_factory=dict)


Node = Str | Bool | Anything | Arr | Obj


def _optional(node: Node) -> Key:
    return Key(node, required=False, nullable=True)


# -- the shapes, per operation (reference sections 2.2, 3.2-3.7) -------------------------------

_KEYPAIR_FIELDS: dict[str, Key] = {
    "name": Key(Str(pattern=NAME)),
    "public_key": Key(Str(nonempty=True)),
    "fingerprint": _optional(Str()),
    "type": _optional(Str()),
    "user_id": _optional(Str()),
    "scope": _optional(Str()),
    "description": _optional(Str()),
    "is_key_protection": _optional(Bool()),
    "frozen_state": _optional(Anything()),
}
KEYPAIR = Obj(_KEYPAIR_FIELDS)

NOVA_LIST = Obj({
    "keypairs": Key(Arr(Obj({"keypair": Key(KEYPAIR)}))),
    # Nova pages only from microversion 2.35, which is never asked for; a "next" link here
    # means the list is not whole (checked by the adapter).
    "keypairs_links": _optional(Arr(Obj({"href": _optional(Str()), "rel": _optional(Str())}))),
})
KPS_LIST = Obj({
    "keypairs": Key(Arr(Obj({"keypair": Key(KEYPAIR)}))),
    "page_info": Key(Obj({"next_marker": _optional(Str()),
                          "current_count": _optional(Anything())})),
})
SHOW = Obj({"keypair": Key(KEYPAIR)})
CREATED = Obj({"keypair": Key(Obj({
    **_KEYPAIR_FIELDS,
    # Only for a pair the cloud generated; its absence there is decided by apply (tainted).
    "private_key": _optional(Str(sensitive=True)),
}))})
IMPORTED = Obj({"keypair": Key(Obj({
    **_KEYPAIR_FIELDS,
    "private_key": _optional(Anything()),  # never read for an import; never echoed
}))})
# Batch import (reference 3.8): each success as a single import answers it; each refusal by
# name and reason. Either list may be absent (the SDK's models make both optional); that
# every name asked is accounted for is the adapter's check.
BATCH_IMPORTED = Obj({
    "succeeded_keypairs": _optional(Arr(IMPORTED)),
    "failed_keypairs": _optional(Arr(Obj({
        "keypair_name": Key(Str(pattern=NAME)),
        "failed_reason": _optional(Str()),
    }))),
})
EXPORTED = Obj({"keypair": Key(Obj({
    "name": _optional(Str(pattern=NAME)),
    "private_key": Key(Str(sensitive=True, nonempty=True)),
}))})
PRIVATE_KEY_IMPORTED = Obj({"keypair": _optional(Obj({
    "name": _optional(Str(pattern=NAME)),
    "user_id": _optional(Str()),
    "key_protection": _optional(Anything()),  # an echo; may hold the key sent, never read
}))})
NO_BODY = Obj()  # delete, update: nothing is read; an empty body or any JSON object


# -- the check ------------------------------------------------------------------------------

def describe(value: object) -> str:
    """The JSON type of ``value``, as people say it ("null", "a string", "a list")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def escape(text: str, limit: int = _ECHO_LIMIT) -> str:
    """``text`` safe for a terminal: control characters escaped, cut to ``limit``."""
    cut = text[:limit]
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in cut)
    return out + ("..." if len(text) > limit else "")


class _Mismatch(Exception):
    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _walk(value: object, node: Node, path: str) -> None:
    if isinstance(node, Anything):
        return
    if isinstance(node, Obj):
        if not isinstance(value, Mapping):
            raise _Mismatch(path, f"expected an object, got {describe(value)}")
        for key, spec in node.keys.items():
            child = _join(path, key)
            if key not in value:
                if spec.required:
                    raise _Mismatch(child, f"missing (expected {_want(spec.node)})")
                continue
            if value[key] is None:
                if spec.nullable:
                    continue
                raise _Mismatch(child, f"expected {_want(spec.node)}, got null")
            _walk(value[key], spec.node, child)
        return
    if isinstance(node, Arr):
        if not isinstance(value, list):
            raise _Mismatch(path, f"expected a list, got {describe(value)}")
        for index, item in enumerate(value):
            _walk(item, node.item, f"{path}[{index}]")
        return
    if isinstance(node, Bool):
        if not isinstance(value, bool):
            raise _Mismatch(path, f"expected a boolean, got {describe(value)}")
        return
    _string(value, node, path)


def _string(value: object, node: Str, path: str) -> None:
    if not isinstance(value, str):
        raise _Mismatch(path, f"expected a string, got {describe(value)}")
    if node.nonempty and not value.strip():
        raise _Mismatch(path, f"expected a non-empty string, got {describe(value)}")
    if node.pattern is not None and not node.pattern.fullmatch(value):
        shown = "a string" if node.sensitive else repr(escape(value))
        raise _Mismatch(path, f"{shown} is not a valid {node.rule}")


# -- the same check, compiled: a verdict without a path ---------------------------------------
#
# ``_walk`` builds the JSON path of every value it passes, to name the first bad one; a list
# page holds a thousand key pairs of eight fields each. ``_fits`` makes the same tests (the
# same operations, in the same order, on the same values) and says only whether they all
# pass; when one does not, ``check`` walks the answer again with ``_walk``, which names it.

_Fits = Callable[[object], bool]
_ANY, _PLAIN_STR, _CALL = 0, 1, 2
_compiled: dict[int, tuple[Node, _Fits]] = {}


def _fits(node: Node) -> _Fits:
    """The compiled test of ``node`` (made once per node)."""
    held = _compiled.get(id(node))
    if held is not None and held[0] is node:
        return held[1]
    test = _compile(node)
    _compiled[id(node)] = (node, test)
    return test


def _compile(node: Node) -> _Fits:
    if isinstance(node, Anything):
        return lambda value: True
    if isinstance(node, Bool):
        return lambda value: isinstance(value, bool)
    if isinstance(node, Str):
        return _compile_str(node)
    if isinstance(node, Arr):
        item = _fits(node.item)
        return lambda value: isinstance(value, list) and all(map(item, value))
    fields = tuple((key, spec.required, spec.nullable, *_field_test(spec.node))
                   for key, spec in node.keys.items())

    def obj(value: object) -> bool:
        if not isinstance(value, Mapping):
            return False
        for key, required, nullable, how, test in fields:
            if key not in value:
                if required:
                    return False
                continue
            child = value[key]
            if child is None:
                if nullable:
                    continue
                return False
            if how == _PLAIN_STR:
                if not isinstance(child, str):
                    return False
            elif how == _CALL and not test(child):
                return False
        return True

    return obj


def _field_test(node: Node) -> tuple[int, _Fits]:
    """How ``obj`` tests a member: not at all (``Anything``), inline (a string with no
    further rule), or by calling the compiled test."""
    if isinstance(node, Anything):
        return _ANY, _fits(node)
    if isinstance(node, Str) and node.pattern is None and not node.nonempty:
        return _PLAIN_STR, _fits(node)
    return _CALL, _fits(node)


def _compile_str(node: Str) -> _Fits:
    pattern, nonempty = node.pattern, node.nonempty

    def string(value: object) -> bool:
        if not isinstance(value, str):
            return False
        if nonempty and not value.strip():
            return False
        return pattern is None or pattern.fullmatch(value) is not None

    return string


def _want(node: Node) -> str:
    return {Str: "a string", Bool: "a boolean", Arr: "a list", Obj: "an object"}.get(
        type(node), "a value")


def shape_error(*, request: str, operation: str, path: str, problem: str,
                request_id: str | None, status: int | None) -> AnswerShapeError:
    """The one error for an answer reconciler does not understand, and what to do about it."""
    where = f"{path}: " if path else ""
    rid = f" (request id {escape(request_id)})" if request_id else ""
    return AnswerShapeError(
        f"{operation} failed: the answer to {escape(request, 200)}{rid} is not what the API "
        f"documents: {where}{problem}. Nothing was decided or written from it. Run the "
        "command again; if it persists, a proxy or gateway between here and the cloud is "
        "changing answers: report it with the request id.",
        path=path, request=request, request_id=request_id, status=status,
        operation=operation,
    )


def check(answer: object, shape: Node, *, request: str, operation: str,
          request_id: str | None = None, status: int | None = None) -> None:
    """Raise ``AnswerShapeError`` unless ``answer`` has ``shape``."""
    if answer is None and isinstance(shape, Obj):
        if not shape.keys:
            return  # an empty body where nothing is read
        raise shape_error(request=request, operation=operation, path="",
                          problem="expected a JSON object, got an empty body",
                          request_id=request_id, status=status)
    if _fits(shape)(answer):
        return
    try:
        _walk(answer, shape, "")
    except _Mismatch as bad:
        raise shape_error(request=request, operation=operation, path=bad.path,
                          problem=bad.problem, request_id=request_id, status=status) from None
