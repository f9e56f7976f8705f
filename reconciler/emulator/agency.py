"""IAM agencies in the emulator: what the admin path registers, and what ``assume_role`` asks.

An agency is known by its name and the account (domain) that owns it, the delegating one;
its temporary credentials reach the listed projects only. ``read_assume_role`` checks the
``assume_role`` identity of ``POST /v3.0/OS-CREDENTIAL/securitytokens`` as IAM does (the
SDK's ``IdentityAssumerole``: ``agency_name``, ``domain_id`` or ``domain_name``,
``duration_seconds`` 900 to 86400, default 900, ``session_user.name``).

May import: the standard library only.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

AGENCY_FIELDS = ("name", "domain_id", "domain_name", "projects")
ASSUME_ROLE_FIELDS = ("agency_name", "domain_id", "domain_name", "duration_seconds",
                      "session_user")
DURATION = (900, 86400)
DEFAULT_DURATION = 900
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,64}")


@dataclass(frozen=True, slots=True)
class Agency:
    name: str
    domain_id: str
    domain_name: str
    projects: tuple[str, ...]  # the projects its temporary credentials may use


@dataclass(frozen=True, slots=True)
class AssumeRole:
    agency_name: str
    domain_id: str | None
    domain_name: str | None
    duration_seconds: int

    def names(self, agency: Agency) -> bool:
        """Whether this request names ``agency`` (every account field given must match)."""
        return (agency.name == self.agency_name
                and self.domain_id in (None, agency.domain_id)
                and self.domain_name in (None, agency.domain_name))


def _text(doc: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or _NAME.fullmatch(value) is None:
        raise ValueError(f"{key} must be a string of 1 to 64 printable characters")
    return value


def read_agency(doc: dict[str, Any]) -> Agency:
    """The agency an admin call registers; ``ValueError`` naming the wrong field."""
    unknown = set(doc) - set(AGENCY_FIELDS)
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
    name = _text(doc, "name", required=True)
    domain_id = _text(doc, "domain_id", required=False)
    domain_name = _text(doc, "domain_name", required=False)
    if domain_id is None and domain_name is None:
        raise ValueError("give domain_id or domain_name (or both): the account that owns "
                         "the agency")
    projects = doc.get("projects")
    if (not isinstance(projects, list) or not projects
            or not all(isinstance(p, str) and p for p in projects)):
        raise ValueError("projects must be a non-empty list of project ids")
    domain_id = domain_id or secrets.token_hex(16)
    assert name is not None
    return Agency(name=name, domain_id=domain_id, domain_name=domain_name or domain_id,
                  projects=tuple(dict.fromkeys(projects)))


def read_assume_role(identity: Any) -> AssumeRole:
    """``auth.identity.assume_role`` checked; ``ValueError`` says what IAM would refuse."""
    role = identity.get("assume_role") if isinstance(identity, dict) else None
    if not isinstance(role, dict):
        raise ValueError("auth.identity.assume_role must be an object")
    unknown = set(role) - set(ASSUME_ROLE_FIELDS)
    if unknown:
        raise ValueError(f"unknown fields in assume_role: {', '.join(sorted(unknown))}")
    agency_name = _text(role, "agency_name", required=True)
    domain_id = _text(role, "domain_id", required=False)
    domain_name = _text(role, "domain_name", required=False)
    if domain_id is None and domain_name is None:
        raise ValueError("assume_role needs domain_id or domain_name")
    duration = role.get("duration_seconds")
    if duration is None:
        duration = DEFAULT_DURATION
    if (isinstance(duration, bool) or not isinstance(duration, int)
            or not DURATION[0] <= duration <= DURATION[1]):
        raise ValueError(f"duration_seconds must be an integer from {DURATION[0]} to "
                         f"{DURATION[1]} (15 minutes to 24 hours)")
    session = role.get("session_user")
    if session is not None and (not isinstance(session, dict)
                                or not isinstance(session.get("name"), str)):
        raise ValueError("session_user must be {\"name\": \"...\"}")
    assert agency_name is not None
    return AssumeRole(agency_name=agency_name, domain_id=domain_id, domain_name=domain_name,
                      duration_seconds=duration)
