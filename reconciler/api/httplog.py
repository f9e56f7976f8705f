"""What the ``--debug`` HTTP log may say about a request or an answer.

Headers are shown by name, with the value of everything that authenticates (Authorization,
X-Security-Token, X-Auth-Token, X-Subject-Token, Cookie, Set-Cookie, and any name that
speaks of a token, secret, password, credential, signature or key) replaced by
``(sensitive value)``. JSON bodies are shown with the value of every field that could hold
a secret (``private_key`` first of all; a KMS data key, a CSMS secret value, a KPS
binding task's ``auth``) replaced the same way, and cut to a readable length; other bodies
by their size only. Control characters are left for the log's own formatter to escape
(``commands.common.debug_logging``).

An answer may quote the request it was sent (an error saying "bad value near ..."), and so
a secret the request carried, cut anywhere, its armour gone: ``Echo`` holds the secret values
a request body sends, and finds any 16-character piece of one in an answer's text. Such an
answer is logged by its size only, and its error message is withheld (``api.client``).

May import: the standard library, ``reconciler.model``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

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


ECHO_PIECE = 16  # a run this long of a secret's characters, quoted, is a leak
_RUNS = re.compile(rf"[A-Za-z0-9+/=_-]{{{ECHO_PIECE},}}")
ECHO_WITHHELD = ("(the message was withheld: it quoted secret material the request "
                 "carried)")


@dataclass(frozen=True, slots=True)
class Echo:
    """The secret values one request sends, as pieces to look for in its answer."""

    pieces: frozenset[str] = frozenset()
    whole: tuple[str, ...] = ()  # values too short to cut into pieces, looked for whole

    def __bool__(self) -> bool:
        return bool(self.pieces or self.whole)

    @classmethod
    def of_body(cls, body: bytes | None) -> Echo:
        """The secret fields' values in a JSON request body (none for another body)."""
        if not body:
            return cls()
        try:
            data: object = json.loads(body)
        except (ValueError, RecursionError):
            return cls()
        values: list[str] = []
        _secret_values(data, values)
        pieces = {run[i:i + ECHO_PIECE] for v in values for run in _RUNS.findall(v)
                  for i in range(len(run) - ECHO_PIECE + 1)}
        whole = tuple(v.strip() for v in values
                      if not _RUNS.search(v) and len(v.strip()) >= 6)
        return cls(frozenset(pieces), whole)

    def found_in(self, text: str | None) -> bool:
        """True when ``text`` quotes a piece of a secret sent (or a short one whole)."""
        if not text or not self:
            return False
        if any(w in text for w in self.whole):
            return True
        return any(run[i:i + ECHO_PIECE] in self.pieces for run in _RUNS.findall(text)
                   for i in range(len(run) - ECHO_PIECE + 1))


def _secret_values(data: object, out: list[str], *, under_secret: bool = False) -> None:
    """The strings of secret fields, and every string beneath one (``auth: {key: ...}``)
    but its ``type`` (``keypair``, ``password``: what kind of secret, not the secret)."""
    if isinstance(data, str):
        if under_secret:
            out.append(data)
    elif isinstance(data, dict):
        for k, v in data.items():
            if under_secret and k == "type":
                continue
            _secret_values(v, out, under_secret=under_secret or (
                isinstance(k, str) and _SECRET_FIELDS.search(k) is not None))
    elif isinstance(data, list):
        for v in data:
            _secret_values(v, out, under_secret=under_secret)


def _redacted(data: object) -> object:
    if isinstance(data, dict):
        return {k: SENSITIVE if isinstance(k, str) and _SECRET_FIELDS.search(k)
                and v not in (None, "") else _redacted(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_redacted(v) for v in data]
    return data


def describe_body(body: bytes | None, *, echo: Echo | None = None) -> str:
    """The body for the log: redacted JSON, cut short; or its size (also when it quotes a
    secret of ``echo``, the request's)."""
    if not body:
        return "(no body)"
    if echo and echo.found_in(body.decode("utf-8", errors="replace")):
        return f"({len(body)} bytes, withheld: it quotes secret material the request carried)"
    try:
        data: object = json.loads(body)
    except (ValueError, RecursionError):
        return f"({len(body)} bytes, not JSON)"
    text = json.dumps(_redacted(data), ensure_ascii=True, separators=(",", ":"))
    if len(text) > MAX_BODY_CHARS:
        text = text[:MAX_BODY_CHARS] + f"... ({len(body)} bytes)"
    return text
