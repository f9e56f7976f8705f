"""Diagnostics, and the one exception tree of reconciler.

Expected problems (a bad manifest, a conflict in the plan) are ``Diagnostic`` values, collected
and shown together. Exceptions are for aborting a command::

    ReconcilerError                 every message says what happened and what to do next
    ├── UsageError                  bad flags, environment or credentials
    │   └── CredentialError         no temporary credentials (IAM or STS refused the ID token)
    ├── DiagnosticsError            carries one or more Diagnostics (manifest, plan)
    ├── KeyFormatError              a key that does not parse (never echoes key material)
    ├── StateError                  the state file or backend
    │   ├── StateCorruptError       corrupt, truncated, tampered, or a newer format
    │   │   └── StateTamperedError  fails its integrity MAC: written by someone without the key
    │   ├── StateKeyError           wrong passphrase or key file
    │   ├── StateLockError          the lock is held by someone else (carries the lock info)
    │   ├── StateFormatError        format 1 (0.1.0) state: `reconciler state upgrade` it first
    │   └── StaleStateError         a saved plan or a write raced with another writer
    ├── PlanFileError               a saved plan is damaged, edited, or not what it pins
    ├── ApiError                    the cloud answered with an error (status, code, request id)
    │   ├── AnswerShapeError        a success answer not of the documented shape (names the field)
    │   └── OutcomeUnknownError     a create was sent and its answer lost (or unusable)
    ├── TargetRefreshError          a target could not be refreshed (names it; nothing planned)
    └── ApplyError                  an apply failed part-way (what was done is in state)

``cli.main`` is the only place that catches broadly; it maps these to exit code 1.

May import: ``reconciler.model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from reconciler.model import SourceLocation


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem, where it is, and what to do about it."""

    summary: str
    location: SourceLocation | None = None
    path: str = ""  # the node inside the document, e.g. ``keypairs[3].name``
    detail: str = ""
    severity: Severity = Severity.ERROR

    def sort_key(self) -> tuple[str, int, int, str]:
        if self.location is None:
            return ("", 0, 0, self.summary)
        return (self.location.file, self.location.line, self.location.column, self.summary)

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        node = f"{self.path}: " if self.path else ""
        text = f"{where}{self.severity}: {node}{self.summary}"
        if self.detail:
            text += f"\n  {self.detail}"
        return text


class ReconcilerError(Exception):
    """Base of every error reconciler raises on purpose."""


class UsageError(ReconcilerError):
    """Bad flags, environment or credentials."""


class CredentialError(UsageError):
    """Temporary credentials could not be had: the token file is missing or empty, or IAM or
    STS refused the ID token. The message names the source and what to check, never a
    token or key."""


class DiagnosticsError(ReconcilerError):
    """One or more diagnostics; the message is all of them, sorted by file and line."""

    def __init__(self, diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> None:
        self.diagnostics = tuple(sorted(diagnostics, key=Diagnostic.sort_key))
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class KeyFormatError(ReconcilerError):
    """A key or certificate that does not parse. The message never contains key material."""


class StateError(ReconcilerError):
    """A problem with the state file or backend."""


class StateCorruptError(StateError):
    """The state is corrupt, truncated, tampered with, or of a newer format."""


class StateTamperedError(StateCorruptError):
    """The state or its journal fails its integrity check (the MAC under the state key)."""


class StateKeyError(StateError):
    """The state encryption key is wrong or missing."""


class StateLockError(StateError):
    """The state lock is held by someone else."""

    def __init__(self, message: str, *, lock_info: dict[str, str] | None = None) -> None:
        self.lock_info = lock_info or {}
        super().__init__(message)


class StateFormatError(StateError):
    """A format 1 state (no integrity check) that a command would write: it is upgraded only
    by ``reconciler state upgrade``, never implicitly."""


class StaleStateError(StateError):
    """A saved plan no longer matches the state, or a write raced with another writer."""


class PlanFileError(ReconcilerError):
    """A saved plan that is damaged, was edited, or does not match what it pins (its
    configuration, the state, the cloud, the manifests given). Nothing was changed."""


class ApiError(ReconcilerError):
    """The cloud answered with an error."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        operation: str = "",
    ) -> None:
        self.status = status
        self.code = code
        self.request_id = request_id
        self.operation = operation
        super().__init__(message)

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


class AnswerShapeError(ApiError):
    """A success answer whose body is not what the API documents for that request: not JSON,
    too large, a field missing or of the wrong type, a list that cannot be complete.

    Raised before the engine sees the answer, so nothing is decided or written from it.
    ``path`` is the JSON path of the bad field (``keypairs[3].keypair.fingerprint``).
    The message never echoes a value that may be secret.
    """

    def __init__(self, message: str, *, path: str = "", request: str = "",
                 request_id: str | None = None, status: int | None = None,
                 operation: str = "") -> None:
        self.path = path
        self.request = request
        super().__init__(message, status=status, request_id=request_id, operation=operation)


class OutcomeUnknownError(ApiError):
    """A create was sent but its answer was lost: it may or may not have happened.

    ``answered`` is what the cloud said when it did answer, with an error that leaves the
    outcome open (an HTTP 500: "HTTP 500 SYS.0500: internal error"); empty when no answer
    arrived at all. Messages tell the two apart: a failing service is not a lossy network.
    """

    def __init__(self, message: str, *, answered: str = "", status: int | None = None,
                 code: str | None = None, request_id: str | None = None,
                 operation: str = "") -> None:
        self.answered = answered
        super().__init__(message, status=status, code=code, request_id=request_id,
                         operation=operation)


class TargetRefreshError(ReconcilerError):
    """A target's key pairs could not be listed (credentials, network, the cloud's answer).
    The message names the target; a plan is made only when every target refreshed."""

    def __init__(self, target: str, cause: ReconcilerError) -> None:
        self.target = target
        self.cause = cause
        super().__init__(f"target {target!r} could not be refreshed: {cause}. Nothing was "
                         "planned; fix the target's connection or credentials and plan again")


class ApplyError(ReconcilerError):
    """An apply failed part-way; what succeeded is recorded in state."""
