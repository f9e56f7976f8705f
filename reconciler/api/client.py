"""The HTTP client under the adapters: pooled session, signing, retries, error mapping.

Every attempt is a new signed request (a fresh ``X-Sdk-Date``). Reads and idempotent writes
(GET, PUT, DELETE, the private-key export) are retried on 429, 500, 502, 503, 504 and
connection problems, with exponential backoff and full jitter, honouring ``Retry-After``,
within ``ApiSettings.max_retries`` and ``total_timeout``. A create is different: retrying
one whose request may have reached the cloud could make a duplicate or lose a private key,
so it is retried only when the cloud surely did not act (429, 503, or a connection that
never opened); after a 500/502/504 or a lost answer it raises ``OutcomeUnknownError`` and
the caller re-reads (DESIGN section 6).

Each attempt runs under a ``reconciler.transport.Watch`` set to the call's time left, so an
answer trickled byte by byte (which never trips the per-read timeout) is cut off at
``total_timeout``: an ``OutcomeUnknownError`` for a create, an ``ApiError`` naming the
request otherwise. Only a 2xx is success; a 3xx is never followed and never success (an
``AnswerShapeError`` naming the status and the ``Location`` host; for a create an
``OutcomeUnknownError``).

An answer is read up to ``ApiSettings.max_answer_bytes`` and no further: a larger one is an
``AnswerShapeError`` (an ``OutcomeUnknownError`` for a create, which the cloud may have done).
A success body that is not JSON is handed on as ``HttpResult.body_problem`` for the adapter's
shape check to name, never silently read as "no body".

It connects to ``Endpoint.url`` as ``reconciler.urls`` parsed it, never to the text given, and
through the proxy ``ApiSettings.proxy`` names (requests' own reading of ``os.environ`` is
off: the injected environment decided).

Debug logging: the proxy in use, never its password (``reconciler.proxy``); method, path,
status, duration, request id, attempt and retry reason (``reconciler.http``); the headers sent
and received by name, with every authenticating value redacted, and the bodies with every
secret field redacted (``api.httplog``); an answer quoting a secret the request carried (a
private key sent to custody) is logged by its size, and its error message withheld.

May import: the standard library, ``requests``, ``urllib3``, ``reconciler.model``,
``reconciler.errors``, ``reconciler.urls``, ``reconciler.api.protocol``,
``reconciler.api.signer``, ``reconciler.api.errormap``, ``reconciler.api.httplog``,
``reconciler.api.shapes``, ``reconciler.transport``.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, InsecureRequestWarning, MaxRetryError

from reconciler.api.errormap import (
    ErrorContext,
    api_error,
    parse_error_body,
    retry_after_seconds,
    transport_error,
)
from reconciler.api.httplog import ECHO_WITHHELD, Echo, describe_body, describe_headers
from reconciler.api.protocol import ApiSettings
from reconciler.api.shapes import escape
from reconciler.api.signer import SdkHmacSigner, canonical_query
from reconciler.errors import AnswerShapeError, ApiError, OutcomeUnknownError
from reconciler.transport import (
    OutOfTimeError,
    Session,
    TooLargeError,
    Watch,
    WatchedAdapter,
    read_within,
)
from reconciler.urls import parse_endpoint, redirect_note

log = logging.getLogger("reconciler.http")
proxy_log = logging.getLogger("reconciler.proxy")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CREATE_RETRY_STATUSES = frozenset({429, 503})  # the cloud did not act on the request
JSON = "application/json"
JSON_BODY = "application/json;charset=utf-8"


class Kind(Enum):
    """How safe a request is to send twice."""

    SAFE = "safe"  # reads and idempotent writes: retry anything retryable
    CREATE = "create"  # may act once: never resend what may have been acted on


_NO_ECHO = Echo()


@dataclass(frozen=True, slots=True)
class HttpResult:
    """A successful (or accepted) answer, with the JSON body parsed (None when empty)."""

    status: int
    data: object
    request_id: str | None
    attempts: int
    resent_after_loss: bool  # an earlier attempt may have reached the cloud
    error_code: str | None = None  # for an accepted error status: as the SDK would parse it
    error_message: str | None = None
    request: str = ""  # "GET /v3/{project}/keypairs?limit=1000": what errors name
    body_problem: str | None = None  # a non-empty body that is not JSON: what it was instead
    echo: Echo = _NO_ECHO  # the secrets the request sent: text of the answer never quotes them


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: sleep ``random() * min(cap, base * 2**n)``."""

    base: float = 0.2
    cap: float = 20.0

    def delay(self, retry: int, rand: float) -> float:
        return rand * min(self.cap, self.base * (2.0**retry))


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _nothing_sent(exc: requests.RequestException) -> bool:
    """True when the connection never opened, so the cloud cannot have seen the request."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.SSLError | requests.exceptions.ProxyError):
        return False
    reason: object = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, ConnectTimeoutError)  # includes NewConnectionError


class HttpClient:
    """One pooled, signing, retrying HTTP client per API endpoint; safe to share by threads."""

    def __init__(
        self,
        settings: ApiSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], datetime] = _utcnow,
        backoff: Backoff | None = None,
    ) -> None:
        self.endpoint = parse_endpoint(settings.endpoint, what="the API endpoint").url
        self.settings = settings
        self._sleep = sleep
        self._rand = rand
        self._monotonic = monotonic
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._lock = threading.Lock()
        self._sent = 0
        self._auth = SdkHmacSigner(
            credentials=settings.credentials, project_id=settings.project_id, clock=clock
        )
        choice = settings.proxy
        if choice is not None and choice.endpoint.url != self.endpoint:
            choice = None  # decided for another endpoint: never send this one's traffic there
        self._proxies = choice.proxies() if choice is not None else {}
        proxy_log.debug("API %s", choice.describe() if choice is not None
                  else f"{self.endpoint}: no proxy (none configured for this client)")
        # A private CA (REQUESTS_CA_BUNDLE): the bundle, unless --insecure turned checks off.
        self._verify: bool | str = (settings.ca_bundle or True) if settings.verify_tls else False
        self._session = self._make_session(settings)  # holds the adapter and its pools
        # Sent through the adapter directly: the session's merging of settings, its cookie
        # jar and its hooks were about a seventh of a request's CPU, and none is wanted here
        # (no cookie is kept: every request is signed on its own).
        self._adapter = self._session.get_adapter(self.endpoint)
        self._headers = dict(self._session.headers)

    @staticmethod
    def _make_session(settings: ApiSettings) -> requests.Session:
        session = Session()
        session.trust_env = False  # proxies, CA bundle and netrc come from settings alone
        size = max(1, settings.pool_size)
        adapter = WatchedAdapter(pool_connections=2, pool_maxsize=size, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        if not settings.verify_tls:
            # --insecure was asked for: the command says so once; urllib3 would warn on every
            # request (and a process running with warnings as errors would fail).
            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
        session.headers["User-Agent"] = "reconciler"
        session.headers["Accept"] = JSON
        return session

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far (every attempt counts)."""
        with self._lock:
            return self._sent

    def close(self) -> None:
        self._session.close()

    def error_for(self, result: HttpResult, *, operation: str) -> ApiError:
        """The ``ApiError`` for an error status that ``request`` was told to accept."""
        context = ErrorContext(
            operation=operation, retries=result.attempts - 1, endpoint=self.endpoint,
            secrets=self._auth.secrets(),
            credential_source=self.settings.credentials.source,
        )
        return api_error(
            status=result.status, code=result.error_code, message=result.error_message or "",
            request_id=result.request_id, context=context,
        )

    def request(
        self,
        *,
        method: str,
        path: str,
        operation: str,
        kind: Kind = Kind.SAFE,
        query: Sequence[tuple[str, str]] = (),
        body: Mapping[str, object] | Sequence[object] | None = None,
        headers: Mapping[str, str] | None = None,
        accept: frozenset[int] = frozenset(),
    ) -> HttpResult:
        """Send with retries; statuses in ``accept`` are returned rather than raised.
        ``body`` is sent as JSON: an object, or an array (KPS batch import)."""
        payload = None
        all_headers = {"Content-Type": JSON, **(headers or {})}
        if body is not None:
            payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
            all_headers["Content-Type"] = JSON_BODY
        url = self.endpoint + path
        if query:
            url += "?" + canonical_query(query)
        call = _Call(
            client=self, method=method, url=url, path=path, operation=operation, kind=kind,
            headers=all_headers, body=payload, accept=accept,
            request=f"{method} {url.removeprefix(self.endpoint)}",
        )
        return call.run()

    # -- used by _Call ---------------------------------------------------------------------

    def _send_once(
        self, *, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
        timeout: tuple[float, float],
    ) -> requests.Response:
        prepared = requests.PreparedRequest()
        prepared.prepare_method(method)
        prepared.prepare_url(url, None)
        prepared.prepare_headers({**self._headers, **headers})
        prepared.prepare_body(body, None)
        prepared.prepare_auth(self._auth)  # signs afresh: a new X-Sdk-Date
        if log.isEnabledFor(logging.DEBUG):
            sent = prepared.body if isinstance(prepared.body, bytes) else None
            log.debug("%s %s sends headers {%s} body %s", method, urlsplit(url).path,
                      describe_headers(prepared.headers.items()), describe_body(sent))
        with self._lock:
            self._sent += 1
        # Streamed, so that the body is read by _read_body within max_answer_bytes.
        return self._adapter.send(
            prepared, stream=True, timeout=timeout, verify=self._verify, cert=None,
            proxies=self._proxies,
        )


class _TooLarge(Exception):
    """The answer is larger than ``max_answer_bytes`` (internal to this module)."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__()
        self.response = response


class _Call:
    """One logical call and its attempts."""

    def __init__(
        self, *, client: HttpClient, method: str, url: str, path: str, operation: str,
        kind: Kind, headers: Mapping[str, str], body: bytes | None, accept: frozenset[int],
        request: str,
    ) -> None:
        self.c = client
        self.request = request
        self.method = method
        self.url = url
        self.path = path
        self.operation = operation
        self.kind = kind
        self.headers = headers
        self.body = body
        self.accept = accept
        settings = client.settings
        self.max_attempts = max(1, settings.max_retries + 1)
        self.deadline = client._monotonic() + settings.total_timeout
        self.resent_after_loss = False
        self.echo = Echo.of_body(body)  # secrets sent, never to be quoted back

    def _context(self, retries: int) -> ErrorContext:
        return ErrorContext(
            operation=self.operation, retries=retries, endpoint=self.c.endpoint,
            secrets=self.c._auth.secrets(),
            credential_source=self.c.settings.credentials.source,
        )

    def run(self) -> HttpResult:
        attempt = 0
        while True:
            attempt += 1
            started = self.c._monotonic()
            remaining = max(1.0, self.deadline - started)
            timeout = (
                min(self.c.settings.connect_timeout, remaining),
                min(self.c.settings.read_timeout, remaining),
            )
            try:
                response, content = self._attempt(timeout=timeout, seconds=remaining)
            except requests.RequestException as exc:
                reason = self._on_transport_error(exc, attempt=attempt, started=started)
                self._wait(reason=reason, attempt=attempt, retry_after=None, error=exc)
                continue
            except _TooLarge as exc:
                raise self._too_large(exc.response, attempt=attempt, started=started) from None
            except OutOfTimeError:
                raise self._out_of_time(attempt=attempt, started=started) from None
            result = self._on_response(response, content, attempt=attempt, started=started)
            if result is not None:
                return result

    def _attempt(self, *, timeout: tuple[float, float],
                 seconds: float) -> tuple[requests.Response, bytes]:
        """One request and its whole answer, cut off after ``seconds`` (the call's time left:
        the per-read timeouts alone let an answer trickled byte by byte run on for ever)."""
        with Watch(seconds).running() as watch:
            try:
                response = self.c._send_once(
                    method=self.method, url=self.url, headers=self.headers, body=self.body,
                    timeout=timeout,
                )
            except requests.RequestException:
                if watch.expired:
                    raise OutOfTimeError from None
                raise
            try:
                content = read_within(response, limit=self.c.settings.max_answer_bytes,
                                      watch=watch)
            except TooLargeError:
                raise _TooLarge(response) from None
        return response, content

    def _log_attempt(self, *, attempt: int, started: float, outcome: str, rid: str | None) -> None:
        ms = (self.c._monotonic() - started) * 1000
        log.debug(
            "%s %s -> %s in %.0f ms (attempt %d, request id %s)",
            self.method, self.path, outcome, ms, attempt, rid or "-",
        )

    def _on_transport_error(
        self, exc: requests.RequestException, *, attempt: int, started: float
    ) -> str:
        kind = type(exc).__name__
        self._log_attempt(attempt=attempt, started=started, outcome=kind, rid=None)
        if isinstance(exc, requests.exceptions.SSLError | requests.exceptions.InvalidURL):
            raise transport_error(exc, context=self._context(attempt - 1), attempts=attempt)
        if not isinstance(exc, requests.ConnectionError | requests.Timeout) and not isinstance(
            exc, requests.exceptions.ChunkedEncodingError
        ):
            raise transport_error(exc, context=self._context(attempt - 1), attempts=attempt)
        if _nothing_sent(exc):
            return f"connection failed ({kind})"
        if self.kind is Kind.CREATE:
            raise OutcomeUnknownError(
                f"{self.operation}: the request was sent but the answer was lost ({kind}); "
                "it may or may not have taken effect, so it is not resent. Re-read the key "
                "pair to find out.",
                operation=self.operation,
            )
        self.resent_after_loss = True
        return f"answer lost ({kind})"

    def _too_large(self, response: requests.Response, *, attempt: int,
                   started: float) -> ApiError:
        rid = response.headers.get("X-Request-Id")
        status = response.status_code
        self._log_attempt(attempt=attempt, started=started, outcome=f"{status} (too large)",
                          rid=rid)
        mib = self.c.settings.max_answer_bytes / (1024 * 1024)
        text = (f"{self.operation} failed: the answer to {escape(self.request, 200)} (HTTP "
                f"{status}, request id {escape(rid or '-')}) is larger than {mib:g} MiB, more "
                "than any key pair answer can be; it was not read.")
        if self.kind is Kind.CREATE:
            return OutcomeUnknownError(
                f"{text} The cloud may have acted on it; re-read the key pair to find out.",
                status=status, request_id=rid, operation=self.operation)
        return AnswerShapeError(
            f"{text} Run the command again; if it persists, a proxy or gateway between here "
            "and the cloud is changing answers: report it with the request id.",
            request=self.request, request_id=rid, status=status, operation=self.operation)

    def _redirected(self, response: requests.Response, *, attempt: int) -> ApiError:
        """A 3xx is neither success nor followed: the answer is not the cloud's, and a
        redirected DELETE or list read as success would drop a key pair from state."""
        rid = response.headers.get("X-Request-Id")
        status = response.status_code
        note = redirect_note(status, response.headers.get("Location"))
        text = (f"{self.operation} failed: {escape(self.request, 200)} was answered with "
                f"{note}; the key pair API never redirects.")
        if self.kind is Kind.CREATE:
            return OutcomeUnknownError(
                f"{text} Something between here and the cloud may have acted on the request; "
                "re-read the key pair to find out, and check the endpoint and any proxy.",
                status=status, request_id=rid, operation=self.operation)
        return AnswerShapeError(
            f"{text} Check the endpoint ({self.c.endpoint}) and any proxy or gateway in "
            "between; nothing was changed on the strength of this answer.",
            request=self.request, request_id=rid, status=status, operation=self.operation)

    def _out_of_time(self, *, attempt: int, started: float) -> ApiError:
        self._log_attempt(attempt=attempt, started=started, outcome="deadline", rid=None)
        limit = self.c.settings.total_timeout
        text = (f"{self.operation} failed: no complete answer to {escape(self.request, 200)} "
                f"from {self.c.endpoint} within total_timeout ({limit:g} s, attempt "
                f"{attempt}); the answer was cut off")
        if self.kind is Kind.CREATE:
            return OutcomeUnknownError(
                f"{text}. It may or may not have taken effect, so it is not resent. Re-read "
                "the key pair to find out.", operation=self.operation)
        return ApiError(
            f"{text}. Run the command again; if it persists, check the network, any proxy, "
            "and the timeout settings.", operation=self.operation)

    def _on_response(
        self, response: requests.Response, content: bytes, *, attempt: int, started: float
    ) -> HttpResult | None:
        rid = response.headers.get("X-Request-Id")
        status = response.status_code
        self._log_attempt(attempt=attempt, started=started, outcome=str(status), rid=rid)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s answered headers {%s} body %s", self.method, self.path,
                      describe_headers(response.headers.items()),
                      describe_body(content, echo=self.echo))
        if 300 <= status < 400 and status not in self.accept:
            raise self._redirected(response, attempt=attempt)
        if status < 400:
            data, problem = _json_of(content, response.headers.get("Content-Type", ""))
            return HttpResult(
                status=status, data=data, request_id=rid,
                attempts=attempt, resent_after_loss=self.resent_after_loss,
                request=self.request, body_problem=problem, echo=self.echo,
            )
        code, message = parse_error_body(_text_of(content, response), status)
        if self.echo.found_in(code) or self.echo.found_in(message):
            code, message = str(status), ECHO_WITHHELD
        if status in self.accept:
            return HttpResult(
                status=status, data=None, request_id=rid, attempts=attempt,
                resent_after_loss=self.resent_after_loss, error_code=code, error_message=message,
                request=self.request,
            )
        retryable = CREATE_RETRY_STATUSES if self.kind is Kind.CREATE else RETRY_STATUSES
        context = self._context(attempt - 1)
        if status not in retryable:
            if self.kind is Kind.CREATE and status in RETRY_STATUSES:
                raise api_error(
                    status=status, code=code, message=message, request_id=rid,
                    context=context, outcome_unknown=True,
                )
            raise api_error(
                status=status, code=code, message=message, request_id=rid, context=context
            )
        header = response.headers.get("Retry-After")
        after = retry_after_seconds(header, now=self.c._clock()) if header else None
        failure = api_error(
            status=status, code=code, message=message, request_id=rid, context=context
        )
        self._wait(reason=f"HTTP {status}", attempt=attempt, retry_after=after, error=failure)
        return None

    def _wait(
        self, *, reason: str, attempt: int, retry_after: float | None, error: Exception
    ) -> None:
        """Sleep before the next attempt, or raise ``error`` when attempts or time run out."""
        if attempt >= self.max_attempts:
            raise self._final(error, attempts=attempt)
        delay = self.c._backoff.delay(attempt - 1, self.c._rand())
        if retry_after is not None:
            delay = retry_after + self.c._rand() * self.c._backoff.base
        if self.c._monotonic() + delay > self.deadline:
            raise self._final(error, attempts=attempt)
        log.debug(
            "retrying %s %s after %s: attempt %d of %d failed, waiting %.2f s",
            self.method, self.path, reason, attempt, self.max_attempts, delay,
        )
        self.c._sleep(delay)

    def _final(self, error: Exception, *, attempts: int) -> ApiError:
        if isinstance(error, ApiError):
            return error  # built with this attempt's retry count
        if isinstance(error, requests.RequestException):
            return transport_error(error, context=self._context(attempts - 1), attempts=attempts)
        text = f"{self.operation} failed: {type(error).__name__}"
        return ApiError(text, operation=self.operation)


def _text_of(content: bytes, response: requests.Response) -> str:
    return content.decode(response.encoding or "utf-8", errors="replace")


def _json_of(content: bytes, content_type: str) -> tuple[object, str | None]:
    """(the parsed body, None), (None, None) when empty, or (None, what it was instead)."""
    if not content.strip():
        return None, None
    try:
        data: object = json.loads(content)
    except (ValueError, RecursionError):
        kind = escape(content_type.split(";")[0].strip(), 40) or "no content type"
        return None, f"the body is not JSON ({len(content)} bytes, {kind})"
    return data, None
