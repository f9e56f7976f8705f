"""The two federated logins of the official SDK: an ID token in, temporary AK/SK out.

IAM identity provider (``FederalAccessor``): ``POST /v3.0/OS-AUTH/id-token/tokens`` with
``X-Idp-Id`` and ``{"auth": {"id_token": {"id": TOKEN}}}`` answers an unscoped token in
``X-Subject-Token``; ``POST /v3.0/OS-CREDENTIAL/securitytokens`` with the ``token`` method
turns it into ``credential{access, secret, securitytoken, expires_at}`` (6 hours, as the
SDK asks). STS (``OidcStsAccessor``): ``POST /v5/agencies/assume-with-oidc`` with
``provider_urn``, ``agency_urn``, ``agency_session_name``, ``id_token`` and
``duration_seconds`` answers ``credentials{access_key_id, secret_access_key,
security_token, expiration}``. Neither request is signed: the ID token is the proof.

IAM agency (``CreateTemporaryAccessKeyByAgency``): ``POST /v3.0/OS-CREDENTIAL/securitytokens``
with the ``assume_role`` method (``agency_name``, ``domain_name`` or ``domain_id``,
``duration_seconds``) answers the same ``credential`` shape. It is signed (``SDK-HMAC-SHA256``)
with the base AK/SK, their security token when they are temporary, and ``X-Domain-Id``: the
caller's account id, which AK/SK calls of a global service such as IAM carry; when
``HUAWEICLOUD_SDK_DOMAIN_ID`` does not give it, it is asked of IAM once, as the SDK's
``GlobalCredentials`` do (``GET /v3/auth/domains``, signed the same way).

The token file is read afresh for every exchange (CI runners rotate it). Tokens, the
subject token and the temporary secrets are registered for scrubbing as soon as they are
read; no message carries one. A refusal names the source, the URL, the cloud's own error
code and message, and what to check. Each exchange (a POST and its retries) ends within
``Caller.deadline`` seconds, a trickled answer included; its answer is read up to
``MAX_ANSWER_BYTES``; a 3xx is refused (naming its ``Location`` host), never followed.

May import: the standard library, ``requests``, ``reconciler.model``, ``reconciler.errors``,
``reconciler.redact``, ``reconciler.textsafe``, ``reconciler.fsutil``, ``reconciler.transport``,
``reconciler.urls``,
``reconciler.api.protocol``, ``reconciler.api.signer``, ``reconciler.credentials.temporary``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

from reconciler.api.protocol import Credentials
from reconciler.api.signer import sign
from reconciler.credentials.temporary import Temporary
from reconciler.errors import CredentialError
from reconciler.fsutil import UnsafeFileError, read_regular
from reconciler.model import Secret
from reconciler.redact import register, scrub
from reconciler.textsafe import printable
from reconciler.transport import (
    OutOfTimeError,
    Session,
    TooLargeError,
    Watch,
    WatchedAdapter,
    read_within,
)
from reconciler.urls import redirect_note

ID_TOKEN_PATH = "/v3.0/OS-AUTH/id-token/tokens"
SECURITY_TOKENS_PATH = "/v3.0/OS-CREDENTIAL/securitytokens"
AUTH_DOMAINS_PATH = "/v3/auth/domains"
DOMAIN_ID_VAR = "HUAWEICLOUD_SDK_DOMAIN_ID"
ASSUME_WITH_OIDC_PATH = "/v5/agencies/assume-with-oidc"
IAM_DURATION_SECONDS = 6 * 60 * 60  # FederalAccessor._DEFAULT_DURATION_SECONDS
MAX_TOKEN_BYTES = 64 * 1024
MAX_ANSWER_BYTES = 1 << 20
TIMEOUT = (10.0, 30.0)
ATTEMPTS = 3
EXCHANGE_DEADLINE = 60.0  # an answer trickled byte by byte never trips TIMEOUT's read part
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
_log = logging.getLogger("reconciler.credentials")


@dataclass(frozen=True, slots=True)
class Caller:
    """How exchanges reach IAM or STS: the source (for messages), TLS and the hints."""

    source: str
    verify: bool | str = True
    proxies: dict[str, str] = field(default_factory=dict)  # chosen from the injected environment
    hint: str = ""
    sleep: Callable[[float], None] = time.sleep
    deadline: float = EXCHANGE_DEADLINE  # seconds for one exchange, every attempt included


def read_token(path: str, *, origin: str, caller: Caller) -> str:
    """The ID token in ``path`` (whitespace around it dropped), read now: a regular file of at
    most ``MAX_TOKEN_BYTES``, opened without blocking, so a FIFO, a device (``/dev/zero``) or
    a directory at that name is refused at once rather than waited on or read without end."""
    shown = printable(path)
    try:
        raw = read_regular(Path(path), limit=MAX_TOKEN_BYTES)
    except UnsafeFileError as exc:
        raise CredentialError(f"{caller.source}: refusing to read the ID token file {shown} "
                              f"({origin}): it {exc.problem}; it must be a regular file "
                              "holding one JWT, as the CI job writes it") from None
    except OSError as exc:
        raise CredentialError(f"{caller.source}: cannot read the ID token file {shown} "
                              f"({origin}): {exc.strerror or type(exc).__name__}; check that "
                              "the CI job wrote it (GitHub: permissions: id-token: write; "
                              "GitLab: id_tokens:)") from None
    return inline_token(raw.decode("utf-8", "replace").strip(),
                        origin=f"the ID token file {shown} ({origin})", caller=caller)


def inline_token(token: str, *, origin: str, caller: Caller) -> str:
    """``token`` if it looks like one JWT (three dot-separated parts, header-safe)."""
    if not token:
        raise CredentialError(f"{caller.source}: {origin} is empty; it must hold the CI job's "
                              "ID token (a JWT)")
    if _HEADER_SAFE.fullmatch(token) is None or token.count(".") != 2:
        raise CredentialError(f"{caller.source}: {origin} does not hold one JWT "
                              "(header.payload.signature); the value is not shown")
    register(token)
    return token


@dataclass(frozen=True, slots=True)
class _Answer:
    """An exchange's answer, its body read whole (within ``MAX_ANSWER_BYTES``)."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


def _signed(method: str, url: str, *, data: bytes, headers: dict[str, str],
            credentials: Credentials) -> dict[str, str]:
    """``headers`` with an ``SDK-HMAC-SHA256`` signature of ``credentials`` (signing
    Content-Type and the ``X-*`` headers, as the API client does), dated now."""
    signable = {k: v for k, v in headers.items()
                if k.lower() == "content-type" or k.lower().startswith("x-")}
    if credentials.security_token is not None:
        signable["X-Security-Token"] = credentials.security_token.reveal()
    signed = sign(method, url, headers=signable, body=data or None, ak=credentials.ak,
                  sk=credentials.sk.reveal(), date=datetime.now(UTC))
    rest = {k: v for k, v in headers.items() if k not in signable}
    return {**rest, **signed["headers"]}


def _post(url: str, *, body: dict[str, object] | None, headers: dict[str, str],
          caller: Caller, step: str, method: str = "POST",
          signer: Credentials | None = None) -> _Answer:
    """POST (or ``method``) with retries, all of it (every attempt, headers and body) within
    ``caller.deadline`` seconds; a 3xx is refused, never followed. With ``signer``, every
    attempt is signed afresh with those credentials."""
    data = b"" if body is None else json.dumps(body).encode()
    sent = {"User-Agent": "reconciler", "Accept": "application/json", **headers}
    if body is not None:
        sent["Content-Type"] = "application/json;charset=UTF-8"
    deadline = time.monotonic() + caller.deadline
    for attempt in range(1, ATTEMPTS + 1):
        started = time.monotonic()
        left = max(1.0, deadline - started)
        timeout = (min(TIMEOUT[0], left), min(TIMEOUT[1], left))
        wire = sent if signer is None else _signed(method, url, data=data, headers=sent,
                                                   credentials=signer)
        try:
            answer = _attempt(url, method=method, data=data, headers=wire, caller=caller,
                              timeout=timeout, seconds=left)
        except requests.RequestException as exc:
            _log.debug("%s %s (%s) attempt %d: %s", method, url, step, attempt,
                       type(exc).__name__)
            if attempt == ATTEMPTS or time.monotonic() + 0.5 * attempt > deadline:
                raise CredentialError(f"{caller.source}: cannot reach {url} ({step}): "
                                      f"{type(exc).__name__}; check the endpoint and the "
                                      "network") from None
            caller.sleep(0.5 * attempt)
            continue
        except OutOfTimeError:
            raise CredentialError(f"{caller.source}: no complete answer from {url} ({step}) "
                                  f"within {caller.deadline:g} s; the answer was cut off. "
                                  "Check the endpoint, the network and any proxy") from None
        except TooLargeError:
            raise CredentialError(f"{caller.source}: {url} ({step}) answered more than "
                                  f"{MAX_ANSWER_BYTES} bytes, more than any token answer; "
                                  "check that the endpoint is IAM's or STS's") from None
        _log.debug("%s %s (%s) attempt %d: %d in %.3fs", method, url, step, attempt,
                   answer.status_code, time.monotonic() - started)
        if 300 <= answer.status_code < 400:
            note = redirect_note(answer.status_code, answer.headers.get("Location"))
            raise CredentialError(f"{caller.source}: {url} ({step}) answered {note}; IAM and "
                                  "STS never redirect: check the endpoint and any proxy. No "
                                  "token is shown.")
        retry = answer.status_code in (429, 500, 502, 503, 504) and attempt < ATTEMPTS
        if retry and time.monotonic() + 0.5 * attempt <= deadline:
            caller.sleep(0.5 * attempt)
            continue
        return answer
    raise AssertionError("unreachable")


def _attempt(url: str, *, method: str, data: bytes, headers: dict[str, str], caller: Caller,
             timeout: tuple[float, float], seconds: float) -> _Answer:
    with Watch(seconds).running() as watch, Session() as session:
        session.trust_env = False  # proxies come from the injected environment only
        adapter = WatchedAdapter(max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        try:
            answer = session.request(method, url, data=data or None, headers=headers,
                                     timeout=timeout, verify=caller.verify,
                                     allow_redirects=False, proxies=caller.proxies,
                                     stream=True)
        except requests.RequestException:
            if watch.expired:
                raise OutOfTimeError from None
            raise
        with answer:
            content = read_within(answer, limit=MAX_ANSWER_BYTES, watch=watch)
        return _Answer(answer.status_code, answer.headers, content)  # case-insensitive


def _refusal(answer: _Answer, *, url: str, caller: Caller, step: str) -> CredentialError:
    code, message = "", ""
    try:
        doc = json.loads(answer.content)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        error = doc.get("error")
        inner: dict[str, object] = error if isinstance(error, dict) else doc
        code = str(inner.get("error_code") or inner.get("code") or "")
        message = str(inner.get("error_msg") or inner.get("message") or "")
    said = printable(scrub(f"{code}: {message}" if code else message))[:300]
    what = f"{answer.status_code}{' ' + said if said else ''}"
    hint = f" Check {caller.hint}." if caller.hint else ""
    return CredentialError(f"{caller.source}: {step} was refused at {url} ({what}).{hint} "
                           "No token is shown.")


def _answer_json(answer: _Answer, *, url: str, caller: Caller) -> dict[str, object]:
    try:
        doc = json.loads(answer.content)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise CredentialError(f"{caller.source}: {url} answered {answer.status_code} without a "
                              "JSON object; check that the endpoint is IAM's or STS's")
    return doc


def _expiry(text: object, *, url: str, caller: Caller) -> float:
    try:
        when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise CredentialError(f"{caller.source}: {url} answered an expiry that is not a "
                              "date; check that the endpoint is IAM's or STS's") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _credential(doc: dict[str, object], *, url: str, caller: Caller) -> Temporary:
    """``credential`` (IAM) or ``credentials`` (STS), in either naming, as the SDK reads."""
    inner = doc.get("credential") or doc.get("credentials")
    got = inner if isinstance(inner, dict) else {}

    def field(*names: str) -> str:
        for name in names:
            value = got.get(name)
            if isinstance(value, str) and value:
                return value
        return ""

    ak = field("access", "accessKeyId", "access_key_id")
    sk = field("secret", "secretAccessKey", "secret_access_key")
    token = field("securitytoken", "securityToken", "security_token")
    expires = field("expires_at", "expiration")
    if not all(_HEADER_SAFE.fullmatch(v) for v in (ak, sk, token)) or not expires:
        raise CredentialError(f"{caller.source}: {url} answered no usable temporary "
                              "credentials (access, secret, security token and expiry)")
    for secret in (sk, token):
        register(secret)
    credentials = Credentials(ak=ak, sk=Secret(sk), security_token=Secret(token))
    return Temporary(credentials, _expiry(expires, url=url, caller=caller))


def via_identity_provider(*, iam_endpoint: str, idp_id: str, id_token: str,
                          caller: Caller) -> Temporary:
    """The SDK's IAM path: ID token -> unscoped token -> temporary AK/SK."""
    url = iam_endpoint + ID_TOKEN_PATH
    step = "exchanging the ID token for an IAM token"
    answer = _post(url, body={"auth": {"id_token": {"id": id_token}}},
                   headers={"X-Idp-Id": idp_id}, caller=caller, step=step)
    subject = answer.headers.get("X-Subject-Token", "")
    if answer.status_code not in (200, 201):
        raise _refusal(answer, url=url, caller=caller, step=step)
    if _HEADER_SAFE.fullmatch(subject) is None:
        raise CredentialError(f"{caller.source}: {url} answered without an X-Subject-Token; "
                              "check HUAWEICLOUD_SDK_IAM_ENDPOINT")
    register(subject)
    url = iam_endpoint + SECURITY_TOKENS_PATH
    step = "getting temporary credentials for the IAM token"
    body: dict[str, object] = {"auth": {"identity": {
        "methods": ["token"],
        "token": {"id": subject, "duration_seconds": IAM_DURATION_SECONDS}}}}
    answer = _post(url, body=body, headers={"X-Auth-Token": subject}, caller=caller, step=step)
    if answer.status_code not in (200, 201):
        raise _refusal(answer, url=url, caller=caller, step=step)
    return _credential(_answer_json(answer, url=url, caller=caller), url=url, caller=caller)


@dataclass(frozen=True, slots=True)
class AgencyRequest:
    """What ``assume-with-oidc`` is asked, but the token (read at each exchange)."""

    provider_urn: str
    agency_urn: str
    session_name: str
    duration_seconds: int
    policy: str | None = None
    policy_ids: tuple[str, ...] = ()


def via_sts(*, sts_endpoint: str, request: AgencyRequest, id_token: str,
            caller: Caller) -> Temporary:
    """The SDK's STS path: ID token -> temporary AK/SK of the agency."""
    url = sts_endpoint + ASSUME_WITH_OIDC_PATH
    body: dict[str, object] = {
        "provider_urn": request.provider_urn, "agency_urn": request.agency_urn,
        "agency_session_name": request.session_name, "id_token": id_token,
        "duration_seconds": request.duration_seconds}
    if request.policy:
        body["policy"] = request.policy
    if request.policy_ids:
        body["policy_ids"] = list(request.policy_ids)
    step = "assuming the agency with the ID token"
    answer = _post(url, body=body, headers={}, caller=caller, step=step)
    if answer.status_code not in (200, 201):
        raise _refusal(answer, url=url, caller=caller, step=step)
    return _credential(_answer_json(answer, url=url, caller=caller), url=url, caller=caller)


@dataclass(frozen=True, slots=True)
class AssumeRole:
    """What ``assume_role`` is asked: the agency, its account (by name or by id, exactly
    one) and how long the grant lasts."""

    agency_name: str
    domain_name: str | None
    domain_id: str | None
    duration_seconds: int


def caller_domain_id(*, iam_endpoint: str, base: Credentials, caller: Caller) -> str:
    """The account id of ``base``, as the SDK's ``GlobalCredentials`` learn it when not
    given: ``GET /v3/auth/domains`` signed with them, the first domain's id."""
    url = iam_endpoint + AUTH_DOMAINS_PATH
    step = "finding the account of the base credentials"
    answer = _post(url, body=None, headers={}, caller=caller, step=step, method="GET",
                   signer=base)
    if answer.status_code != 200:
        raise _refusal(answer, url=url, caller=caller, step=step)
    domains = _answer_json(answer, url=url, caller=caller).get("domains")
    first = domains[0] if isinstance(domains, list) and domains else None
    domain_id = first.get("id") if isinstance(first, dict) else None
    if not isinstance(domain_id, str) or _HEADER_SAFE.fullmatch(domain_id) is None:
        raise CredentialError(f"{caller.source}: {url} answered no account id; set "
                              f"{DOMAIN_ID_VAR} to the account id of the base credentials")
    return domain_id


def via_assume_role(*, iam_endpoint: str, role: AssumeRole, base: Credentials,
                    domain_id: str, caller: Caller) -> Temporary:
    """IAM's agency path (the SDK's ``CreateTemporaryAccessKeyByAgency``): signed with the
    base AK/SK (and their security token), with the caller's account in ``X-Domain-Id`` as
    AK/SK calls of a global service need; answers the agency's temporary AK/SK."""
    url = iam_endpoint + SECURITY_TOKENS_PATH
    assume: dict[str, object] = {"agency_name": role.agency_name,
                                 "duration_seconds": role.duration_seconds}
    if role.domain_name is not None:
        assume["domain_name"] = role.domain_name
    if role.domain_id is not None:
        assume["domain_id"] = role.domain_id
    body: dict[str, object] = {"auth": {"identity": {"methods": ["assume_role"],
                                                     "assume_role": assume}}}
    step = "assuming the agency"
    answer = _post(url, body=body, headers={"X-Domain-Id": domain_id}, caller=caller,
                   step=step, signer=base)
    if answer.status_code not in (200, 201):
        raise _refusal(answer, url=url, caller=caller, step=step)
    return _credential(_answer_json(answer, url=url, caller=caller), url=url, caller=caller)
