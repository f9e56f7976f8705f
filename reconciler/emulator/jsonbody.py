"""Request bodies as the emulator accepts them: strict JSON, or a reason why not.

A real API gateway refuses a malformed body with a 400 in the API's error shape; it does not
fall over. So the emulator reads a body as UTF-8 (no byte order mark, no UTF-16), as RFC 8259
JSON only (no ``NaN`` or ``Infinity``, no number too large for a float, no duplicate keys, no
lone surrogates) and at most ``MAX_DEPTH`` containers deep; anything else is a
``BodyError`` whose message says which rule the body broke. The size cap is the server's.

May import: the standard library only.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32  # a key pair body is 4 deep; the real gateway's limit is not documented


class BodyError(ValueError):
    """The body is not JSON the API accepts; the message says why (never echoes the body)."""


def _no_constants(name: str) -> Any:
    raise BodyError(f"the request body is not valid JSON ({name} is not a JSON number)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BodyError("the request body holds a number too large to represent")
    return value


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BodyError("the request body is ambiguous: an object has a key twice")
        out[key] = value
    return out


def _check(value: Any) -> None:
    """Depth and strings, without recursion (a deep value must not exhaust the stack)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise BodyError(f"the request body is nested more than {MAX_DEPTH} levels deep")
            children = list(item.items()) if isinstance(item, dict) else [(None, v) for v in item]
            for key, child in children:
                if key is not None:
                    _text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, str):
            _text(item)


def _text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BodyError("the request body holds a lone UTF-16 surrogate (\\ud800-\\udfff)") \
            from None


def parse_json_body(raw: bytes) -> Any:
    """The JSON value of ``raw``; None for an empty body; ``BodyError`` otherwise."""
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("the request body is not UTF-8") from None
    if text.startswith("\ufeff"):
        raise BodyError("the request body starts with a byte order mark; send plain UTF-8")
    try:
        value = json.loads(text, parse_constant=_no_constants, parse_float=_finite,
                           object_pairs_hook=_unique)
    except RecursionError:
        raise BodyError(f"the request body is nested more than {MAX_DEPTH} levels deep") \
            from None
    except BodyError:
        raise
    except ValueError:
        raise BodyError("the request body is not valid JSON") from None
    _check(value)
    return value


def admin_object(body: bytes, fields: tuple[str, ...]) -> dict[str, Any]:
    """An admin path's body: a JSON object of only these ``fields`` ({} when empty)."""
    doc = parse_json_body(body) if body.strip() else {}
    if not isinstance(doc, dict):
        raise BodyError("the body must be a JSON object")
    unknown = set(doc) - set(fields)
    if unknown:
        raise BodyError(f"unknown fields: {', '.join(sorted(unknown))}")
    return doc
