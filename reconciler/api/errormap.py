"""Turn error answers into one ``ApiError`` whose message says what happened and what to check.

Error bodies are read as the official SDK reads them (reference section 6): the first of
``error_code``/``error_msg``, ``errorCode``/``errorMsg``, ``code``/``message``, looking into
nested objects (Nova's ``{"itemNotFound": {...}}``, KMS's ``{"error": {...}}``); a body
that is not JSON is kept as (truncated) text. The server's text is shortened, and withheld
if it looks like key material; the SK and token are scrubbed from it, and its control
characters escaped (``textsafe.printable``: a hostile or broken server's ``ESC ] ... BEL``
stays visible text). Messages end with ``(request id: ...)`` when the cloud gave one.

May import: the standard library, ``requests``, ``reconciler.errors``, ``reconciler.model``,
``reconciler.textsafe``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests

from reconciler.errors import ApiError, OutcomeUnknownError
from reconciler.model import SENSITIVE, Secret
from reconciler.textsafe import printable

MAX_SERVER_TEXT = 300
_PAIRS = (("error_code", "error_msg"), ("errorCode", "errorMsg"), ("code", "message"))
_KEY_MATERIAL = re.compile(r"PRIVATE KEY|PuTTY-User-Key|b3BlbnNzaC1rZXktdjE")


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """What the message needs to know about the call; ``secret`` is only scrubbed, never shown."""

    operation: str
    retries: int
    endpoint: str
    secrets: tuple[Secret, ...] = field(default=(), repr=False)  # SK, token: scrubbed
    credential_source: str = "environment (HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK)"  # names only


def _find_pair(data: object, depth: int = 0) -> tuple[object, object] | None:
    if not isinstance(data, dict) or depth > 5:
        return None
    for code_key, msg_key in _PAIRS:
        if code_key in data and msg_key in data:
            return data[code_key], data[msg_key]
    for value in data.values():
        found = _find_pair(value, depth + 1)
        if found is not None:
            return found
    return None


def parse_error_body(text: str, status: int) -> tuple[str, str]:
    """``(code, message)`` as the SDK would find them; code falls back to the status."""
    try:
        data: object = json.loads(text) if text.strip() else None
    except ValueError:
        return str(status), text
    found = _find_pair(data)
    if found is None:
        return str(status), text if not isinstance(data, dict | list) else ""
    code, message = found
    code_text = str(code) if code not in (None, "") else str(status)
    return code_text, "" if message is None else str(message)


def clean_server_text(text: str, *, secrets: tuple[Secret, ...] = ()) -> str:
    """One line, short, no key material, no SK or token, no control character."""
    if _KEY_MATERIAL.search(text):
        return "(the message was withheld: it contained key material)"
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret.reveal(), SENSITIVE)
    line = printable(" ".join(text.split()))
    if len(line) > MAX_SERVER_TEXT:
        line = line[: MAX_SERVER_TEXT - 3] + "..."
    return line


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date; None if unusable."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _times(n: int) -> str:
    return f"{n} {'retry' if n == 1 else 'retries'}"


def _hint(status: int, retries: int, source: str) -> str:
    if status == 400:
        return "The request was rejected as invalid; check the key pair's name and public key."
    if status == 401:
        return (
            "Authentication failed: the AK/SK is wrong or this machine's clock is off; check "
            f"the credentials ({source}) and the time synchronisation (NTP)."
        )
    if status == 403:
        return (
            "Permission denied: check the project id (--project-id, HUAWEICLOUD_SDK_PROJECT_ID) "
            "and that the IAM policy allows the key pair actions: kps:domainKeypairs:* (in an "
            "identity policy, kps:SSHKeyPair:*) for KPS, ecs:serverKeypairs:* for the ECS "
            "os-keypairs APIs."
        )
    if status == 404:
        return "Not found: check the name, the api flavour (--api) and the endpoint."
    if status == 409:
        return (
            "A key pair with this name already exists; adopt it with `reconciler import NAME` "
            "or choose another name."
        )
    if status == 429:
        return (
            f"Rate limited: still throttled after {_times(retries)}; lower --parallelism "
            "or try again later."
        )
    if status >= 500:
        return f"The service failed after {_times(retries)}; try again later."
    return ""


def api_error(
    *,
    status: int | None,
    code: str | None,
    message: str,
    request_id: str | None,
    context: ErrorContext,
    outcome_unknown: bool = False,
) -> ApiError:
    """The one error for an error answer; ``outcome_unknown`` for an ambiguous create."""
    server = clean_server_text(message, secrets=context.secrets)
    detail = f"HTTP {status}"
    if code and code != str(status):
        detail += f" {clean_server_text(code, secrets=context.secrets)}"
    if server:
        detail += f": {server}"
    suffix = f" (request id: {clean_server_text(request_id)})" if request_id else ""
    if outcome_unknown:
        text = (
            f"{context.operation}: the service answered {detail}; the request may or may not "
            "have taken effect, so it is not resent. Re-read the key pair to find out."
        )
        return OutcomeUnknownError(
            text + suffix, answered=detail, status=status, code=code,
            request_id=request_id, operation=context.operation,
        )
    hint = _hint(status or 0, context.retries, context.credential_source)
    text = f"{context.operation} failed: {detail}." + (f" {hint}" if hint else "")
    return ApiError(
        text + suffix, status=status, code=code, request_id=request_id,
        operation=context.operation,
    )


def transport_error(
    exc: requests.RequestException, *, context: ErrorContext, attempts: int
) -> ApiError:
    """No usable answer at all: TLS, connection, timeout."""
    kind = type(exc).__name__
    if isinstance(exc, requests.exceptions.SSLError):
        text = (
            f"{context.operation} failed: TLS verification failed for {context.endpoint} "
            f"({kind}); check the endpoint and its certificate (--insecure only for a test "
            "endpoint you trust)."
        )
    else:
        text = (
            f"{context.operation} failed: could not get an answer from {context.endpoint} "
            f"({kind}) after {attempts} attempt{'s' if attempts != 1 else ''}; check the "
            "endpoint, the network and any proxy settings."
        )
    return ApiError(text, operation=context.operation)
