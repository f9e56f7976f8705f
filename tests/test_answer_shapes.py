"""Property tests over answer shapes: any JSON value put at any path of a valid answer (or a
key taken away) gives either the typed result a plain reading of the documented shape gives,
or ``AnswerShapeError``; never another exception, and never an error showing a private key.

The reference reader below is written from reference/keypair-api.md, independently of
``reconciler.api.shapes``; the two must agree on every answer.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.api import parse
from reconciler.api.client import HttpResult
from reconciler.api.shapes import CREATED, KPS_LIST, NOVA_LIST, SHOW, Node
from reconciler.errors import AnswerShapeError

K1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKwIjAMYc6uhQM4LzeXgHN/O/kezk2t2iqOT16iKzSCu"
PRIVATE = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA-secret-body\n"
ITEM = {"name": "web", "type": "ssh", "scope": "user", "public_key": K1,
        "fingerprint": "MD5:AA:BB", "is_key_protection": False, "frozen_state": "0",
        "user_id": "u1", "description": "prod"}
VALID: dict[str, Any] = {
    "kps-list": {"keypairs": [{"keypair": dict(ITEM)}, {"keypair": {**ITEM, "name": "ci"}}],
                 "page_info": {"next_marker": None, "previous_marker": None,
                               "current_count": 2}},
    "nova-list": {"keypairs": [{"keypair": {"name": "web", "public_key": K1,
                                            "fingerprint": "aa:bb", "type": "ssh"}}]},
    "show": {"keypair": {**ITEM, "id": 7, "deleted": False, "create_time": 1}},
    "created": {"keypair": {"name": "web", "type": "ssh", "public_key": K1,
                            "fingerprint": "aa:bb", "user_id": "u1", "private_key": PRIVATE}},
}
SHAPES: dict[str, Node] = {"kps-list": KPS_LIST, "nova-list": NOVA_LIST, "show": SHOW,
                           "created": CREATED}


class Invalid(Exception):
    pass


_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,255}")


def _opt(obj: dict[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    if value is not None and (not isinstance(value, kind) or
                              (kind is not bool and isinstance(value, bool))):
        raise Invalid(key)
    return value


def _obj(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid("object")
    return value


def ref_keypair(value: Any) -> tuple[Any, ...]:
    kp = _obj(value)
    name, public_key = kp.get("name"), kp.get("public_key")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise Invalid("name")
    if not isinstance(public_key, str) or not public_key.strip():
        raise Invalid("public_key")
    fingerprint = _opt(kp, "fingerprint", str)
    return (name, public_key, _opt(kp, "type", str) or "ssh", _opt(kp, "user_id", str),
            _opt(kp, "scope", str), _opt(kp, "description", str),
            _opt(kp, "is_key_protection", bool),
            (fingerprint or "").strip().lower().removeprefix("md5:") or _computed(public_key))


def _computed(public_key: str) -> str | None:
    """No fingerprint reported: the MD5 of an OpenSSH key, or none."""
    from reconciler import keys
    from reconciler.errors import KeyFormatError

    try:
        return keys.md5_fingerprint(public_key) or None
    except KeyFormatError:
        return None


def ref_wrapped(value: Any) -> tuple[Any, ...]:
    obj = _obj(value)
    if "keypair" not in obj:
        raise Invalid("keypair")
    return ref_keypair(obj["keypair"])


def ref_read(kind: str, doc: Any) -> Any:
    """What the documented shape says ``doc`` holds, or ``Invalid``."""
    top = _obj(doc)
    if kind in ("show", "created"):
        result = ref_wrapped(top)
        if kind == "created":
            private = _opt(top["keypair"], "private_key", str)
            return result, private if private and private.strip() else None
        return result
    items = top.get("keypairs")
    if not isinstance(items, list):
        raise Invalid("keypairs")
    listed = [ref_wrapped(item) for item in items]
    if kind == "kps-list":
        info = _obj(top.get("page_info"))
        return listed, _opt(info, "next_marker", str) or None
    links = top.get("keypairs_links")
    if links is not None:
        if not isinstance(links, list):
            raise Invalid("links")
        for link in links:
            _opt(_obj(link), "href", str)
            _opt(_obj(link), "rel", str)
    return listed


def _typed(kp: Any) -> tuple[Any, ...]:
    return (kp.name, kp.public_key, kp.type, kp.user_id, kp.scope, kp.description,
            kp.key_protection, kp.fingerprint or None)


def read(kind: str, doc: Any) -> Any:
    """What the API layer makes of ``doc`` (``AnswerShapeError`` when it does not)."""
    result = HttpResult(status=200, data=doc, request_id="rid", attempts=1,
                        resent_after_loss=False, request="GET /test")
    body = parse.answer(result, SHAPES[kind], operation="test")
    if kind == "show":
        return _typed(parse.keypair_of(body))
    if kind == "created":
        private = parse.private_key_of(body)
        return _typed(parse.keypair_of(body)), private.reveal() if private else None
    listed = [_typed(kp) for kp in parse.listed_keypairs(body)]
    return (listed, parse.next_marker(body)) if kind == "kps-list" else listed


def _paths(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*here, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*here, index))
    return out


def _put(doc: Any, path: tuple[Any, ...], value: Any, *, delete: bool) -> Any:
    if not path:
        return value
    node = doc
    for step in path[:-1]:
        node = node[step]
    if delete and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.sampled_from(["", " ", "ssh", "web", "x" * 300, "a\x1b[31mb", PRIVATE]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["keypair", "name", "public_key", "keypairs", "x"]),
                      inner, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, Any, tuple[Any, ...]]:
    kind = draw(st.sampled_from(sorted(VALID)))
    doc = copy.deepcopy(VALID[kind])
    paths = _paths(doc)
    count = draw(st.integers(1, 2))
    touched: tuple[Any, ...] = ()
    for _ in range(count):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        doc = _put(doc, path, draw(JSON), delete=draw(st.booleans()))
        touched = path
    return kind, doc, touched


def test_the_valid_answers_read_as_documented() -> None:
    for kind, doc in VALID.items():
        assert read(kind, copy.deepcopy(doc)) == ref_read(kind, copy.deepcopy(doc))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_any_rewrite_gives_the_documented_reading_or_the_one_error(
        case: tuple[str, Any, tuple[Any, ...]]) -> None:
    kind, doc, _ = case
    try:
        expected = ref_read(kind, copy.deepcopy(doc))
    except Invalid:
        expected = Invalid
    try:
        got = read(kind, doc)
    except AnswerShapeError as exc:
        text = str(exc)
        assert expected is Invalid, f"refused a documented answer: {text}\n{doc!r}"
        assert "secret-body" not in text  # a private key is never echoed
        assert "\x1b" not in text and "\n" not in text
        assert "GET /test" in text and "request id rid" in text
        return
    assert expected is not Invalid, f"accepted an undocumented answer: {doc!r} -> {got!r}"
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(VALID)), st.binary(max_size=40))
def test_a_body_that_is_not_json_is_the_one_error(kind: str, raw: bytes) -> None:
    from reconciler.api.client import _json_of

    data, problem = _json_of(raw, "text/html")
    result = HttpResult(status=200, data=data, request_id=None, attempts=1,
                        resent_after_loss=False, request="GET /test", body_problem=problem)
    try:
        parse.answer(result, SHAPES[kind], operation="test")
    except AnswerShapeError:
        return
    ref_read(kind, data)  # accepted: it must be a documented answer


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_the_compiled_check_passes_exactly_what_the_walk_passes(
        case: tuple[str, Any, tuple[Any, ...]]) -> None:
    from reconciler.api import shapes

    kind, doc, _ = case
    try:
        shapes._walk(doc, SHAPES[kind], "")
        walked = True
    except shapes._Mismatch:
        walked = False
    assert shapes._fits(SHAPES[kind])(doc) is walked


def test_the_compiled_check_passes_exactly_what_the_walk_passes_for_every_one_field_edit(
        ) -> None:
    from reconciler.api import shapes

    pool: list[Any] = [None, "", " ", "x", "a\x01b", "x" * 300, 1, 1.5, True, [], {}, [{}],
                       {"keypair": {}}]
    for kind, valid in VALID.items():
        for path in _paths(copy.deepcopy(valid)):
            for value, delete in [(v, False) for v in pool] + [(None, True)]:
                doc = _put(copy.deepcopy(valid), path, copy.deepcopy(value), delete=delete)
                try:
                    shapes._walk(doc, SHAPES[kind], "")
                    walked = True
                except shapes._Mismatch:
                    walked = False
                assert shapes._fits(SHAPES[kind])(doc) is walked, (kind, path, value, delete)
