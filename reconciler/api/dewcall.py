"""One KMS or CSMS call: the key pair client's transport, this service's errors.

``DewHttp`` sends through ``HttpClient`` (signing, retries of 429/5xx and lost answers,
deadlines, answer size, redirects refused), checks every success answer against its shape
(``dewshapes``), and turns a 4xx into an ``ApiError`` that speaks of KMS keys and secrets
rather than key pairs: the code's own advice when the caller gave one (``KMS.0209``: enable
the key), else the status's. A create whose outcome is unknown becomes an
``OutcomeUnknownError`` saying what to re-read. The server's text is cleaned as for key
pairs (``errormap.clean_server_text``: short, one line, no SK or token, no key material).

May import: the standard library, ``reconciler.errors``, ``reconciler.api.client``,
``reconciler.api.errormap``, ``reconciler.api.parse``, ``reconciler.api.protocol``,
``reconciler.api.shapes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler.api import shapes
from reconciler.api.client import HttpClient, HttpResult, Kind
from reconciler.api.errormap import clean_server_text
from reconciler.api.parse import answer
from reconciler.api.protocol import ApiSettings
from reconciler.errors import ApiError, OutcomeUnknownError

# Answered here, with this service's advice; 429 and 5xx stay with HttpClient (retried).
ANSWERED = frozenset(range(400, 500)) - {429}


def _status_hint(status: int, *, actions: str) -> str:
    if status == 401:
        return ("Authentication failed: the AK/SK is wrong or this machine's clock is off; "
                "check the credentials and the time synchronisation (NTP).")
    if status == 403:
        return (f"Permission denied: check the project id and that the IAM policy allows "
                f"{actions}.")
    if status == 404:
        return "Not found: check the name or id, the region and the project."
    if status == 409:
        return "It already exists: choose another name, or use the existing one."
    return "The request was refused as invalid."


class DewHttp:
    """Calls to one service (``KMS`` or ``CSMS``) of one project; safe to share by threads."""

    def __init__(self, settings: ApiSettings, *, service: str, actions: str,
                 http: HttpClient | None = None) -> None:
        self.settings = settings
        self.project_id = settings.project_id
        self.service = service
        self.actions = actions  # the IAM actions a 403 names
        self.http = http or HttpClient(settings)

    def close(self) -> None:
        self.http.close()

    def call(
        self,
        *,
        method: str,
        path: str,
        operation: str,
        shape: shapes.Node,
        kind: Kind = Kind.SAFE,
        body: Mapping[str, object] | None = None,
        query: Sequence[tuple[str, str]] = (),
        hints: Mapping[str, str] | None = None,
        missing: bool = False,
        settled: str | None = None,
        reread: str = "",
    ) -> Mapping[str, object] | None:
        """The checked answer; None for a 404 when ``missing`` (absent is an answer), and
        for an error of code ``settled`` (the state asked for is there already). ``hints``
        maps error codes to advice; ``reread`` says what to read again when a create's
        outcome is unknown."""
        try:
            result = self.http.request(method=method, path=path, operation=operation,
                                       kind=kind, body=body, query=query, accept=ANSWERED)
        except OutcomeUnknownError as exc:
            raise self._unknown(exc, operation=operation, reread=reread) from None
        if result.status >= 400:
            if (missing and result.status == 404) or (
                    settled is not None and result.error_code == settled):
                return None
            raise self.error(result, operation=operation, hints=hints or {})
        return answer(result, shape, operation=operation)

    def error(self, result: HttpResult, *, operation: str,
              hints: Mapping[str, str]) -> ApiError:
        status = result.status
        code = result.error_code or str(status)
        secrets = self.settings.credentials.current().secrets()
        detail = f"HTTP {status}"
        if code != str(status):
            detail += f" {clean_server_text(code, secrets=secrets)}"
        server = clean_server_text(result.error_message or "", secrets=secrets)
        if server:
            detail += f": {server}"
        hint = hints.get(code) or _status_hint(status, actions=self.actions)
        rid = (f" (request id: {clean_server_text(result.request_id)})"
               if result.request_id else "")
        return ApiError(f"{operation} failed: {self.service} answered {detail}. {hint}{rid}",
                        status=status, code=code, request_id=result.request_id,
                        operation=operation)

    @staticmethod
    def _unknown(exc: OutcomeUnknownError, *, operation: str,
                 reread: str) -> OutcomeUnknownError:
        what = (f"the service answered {exc.answered}" if exc.answered
                else "the answer was lost or cut off")
        rid = f" (request id: {clean_server_text(exc.request_id)})" if exc.request_id else ""
        return OutcomeUnknownError(
            f"{operation}: {what}; the request may or may not have taken effect, so it was "
            f"not resent. {reread or 'Read it again to find out.'}{rid}",
            answered=exc.answered, status=exc.status, code=exc.code,
            request_id=exc.request_id, operation=operation)
