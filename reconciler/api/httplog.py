"""What the ``--debug`` HTTP log may say about a request or an answer.

Headers are shown by name, with the value of everything that authenticates (Authorization,
X-Security-Token, X-Auth-Token, X-Subject-Token, Cookie, Set-Cookie, and any name that
speaks of a token, secret, password, credential, signature or key) replaced by
``(sensitive value)``. JSON bodies are shown with the value of every field that could hold
a secret (``private_key`` first of all; a KMS data key, a CSMS secret value, a KPS
binding task's ``auth``) replaced the same way, and cut to a readable length; other bodies
by their size only. Control characters are left for the log's own formatter to escape
(``commands.common.debug_logging``).

May import: the standard library, ``reconciler.model``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from reconciler.model import SENSITIVE

MAX_BODY_CHARS = 600
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-security-token",
                             "x-auth-token", "x-subject-token", "cookie", "set-cookie"})
_SECRET_WORDS = re.compile(r"token|secret|passw|credential|signature|auth|private|key|cookie",
                           re.I)
_PUBLIC_HEADERS = frozenset({"content-type", "accept", "x-sdk-date", "x-project-id", "host",
                             "content-length", "x-request-id", "user-agent", "connection",
                             "accept-encoding", "retry-after", "date", "openstack-api-version",
                             "x-openstack-nova-api-version", "x-sdk-content-sha256"})
# KMS answers a data key in clear as ``plain_text`` (create-datakey) and ``data_key``
# (decrypt-datakey); CSMS a value as ``secret_string`` / ``secret_binary``; a KPS binding
# task is authorised by ``server.auth`` (``{type, key}``: a private key or a password).
_SECRET_FIELDS = re.compile(r"private|secret|passw|token|credential|^sk$|^ak$|plain_?text|"
                            r"^data_?key$|^auth$", re.I)


def secret_header(name: str) -> bool:
    lower = name.lower()
    if lower in _PUBLIC_HEADERS:
        return False
    return lower in _SECRET_HEADERS or _SECRET_WORDS.search(lower) is not None


def describe_headers(headers: Iterable[tuple[str, str]]) -> str:
    """``Name: value`` pairs, secrets redacted, in the order given."""
    return ", ".join(f"{name}: {SENSITIVE if secret_header(name) else value}"
                     for name, value in headers)


def _redacted(data: object) -> object:
    if isinstance(data, dict):
        return {k: SENSITIVE if isinstance(k, str) and _SECRET_FIELDS.search(k)
                and v not in (None, "") else _redacted(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_redacted(v) for v in data]
    return data


def describe_body(body: bytes | None) -> str:
    """The body for the log: redacted JSON, cut short; or its size."""
    if not body:
        return "(no body)"
    try:
        data: object = json.loads(body)
    except (ValueError, RecursionError):
        return f"({len(body)} bytes, not JSON)"
    text = json.dumps(_redacted(data), ensure_ascii=True, separators=(",", ":"))
    if len(text) > MAX_BODY_CHARS:
        text = text[:MAX_BODY_CHARS] + f"... ({len(body)} bytes)"
    return text
