"""An error answer of an emulated service, in that service's own shape: HTTP status, its code
(``KMS.xxxx``, ``CSMS.xxxx``), message. Each service has its subclass, so a handler catches
only its own.

May import: the standard library only.
"""

from __future__ import annotations


class ServiceProblem(Exception):
    """HTTP ``status``, the service's ``code``, ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(message)
