"""IAM and STS for federated login: identity providers, ID tokens in, temporary AK/SK out.

Served on the emulator's own port (``docs/iam.md`` has the shapes):

- ``POST /v3.0/OS-AUTH/id-token/tokens`` (``X-Idp-Id``): the ID token is verified against
  the identity provider's JWKS, issuer, client ID and mapping conditions; 201 with an
  unscoped token in ``X-Subject-Token``.
- ``POST /v3.0/OS-CREDENTIAL/securitytokens``, ``token`` method: that token (in the body,
  or ``X-Auth-Token``) becomes ``credential{access, secret, securitytoken, expires_at}``.
- The same path, ``assume_role`` method, signed with the caller's AK/SK (the server checks
  the signature and passes the caller in): a registered agency's temporary credentials, in
  the same ``credential`` shape, good for the agency's projects only. An ``X-Domain-Id``
  (which the SDK's ``GlobalCredentials`` send) must be the signer's own account.
- ``GET /v3/auth/domains``, signed: the signer's account (how the SDK learns its
  ``domain_id`` when not given one).
- ``POST /v5/agencies/assume-with-oidc``: the ID token, for an agency the provider may
  assume, becomes ``credentials{access_key_id, secret_access_key, security_token,
  expiration}``.

Temporary credentials sign key pair requests (with ``X-Security-Token``) until they expire;
then the gateway refuses them. A clock offset and a cap on credential lifetime (admin path)
let tests see expiry in seconds.

May import: the standard library, ``cryptography`` (through ``reconciler.emulator.jwt``),
``reconciler.emulator.handlers`` (``Reply``), ``reconciler.emulator.{views,agency}``.
"""

from __future__ import annotations

import re
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconciler.emulator.agency import Agency, read_agency, read_assume_role
from reconciler.emulator.handlers import Reply
from reconciler.emulator.jwt import TokenError, verify_id_token

ID_TOKEN_PATH = "/v3.0/OS-AUTH/id-token/tokens"
SECURITY_TOKENS_PATH = "/v3.0/OS-CREDENTIAL/securitytokens"
ASSUME_PATH = "/v5/agencies/assume-with-oidc"
AUTH_DOMAINS_PATH = "/v3/auth/domains"
PATHS = (ID_TOKEN_PATH, SECURITY_TOKENS_PATH, ASSUME_PATH, AUTH_DOMAINS_PATH)
GET_PATHS = (AUTH_DOMAINS_PATH,)
UNSCOPED_TOKEN_SECONDS = 24 * 3600
IAM_DURATION = (900, 86400)
STS_DURATION = (900, 43200)
EXPIRES_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")
_UPPER = string.ascii_uppercase + string.digits
PROVIDER_FIELDS = ("id", "issuer", "client_id", "jwks", "conditions", "provider_urn",
                   "agencies")


@dataclass(frozen=True, slots=True)
class IdentityProvider:
    """One registered identity provider (an IAM OIDC provider, or STS's view of it)."""

    id: str
    issuer: str
    client_id: str
    jwks: dict[str, Any]
    conditions: dict[str, tuple[str, ...]]  # claim -> any one of these values
    provider_urn: str
    agencies: tuple[str, ...]  # agency URNs that may be assumed with its tokens


@dataclass(frozen=True, slots=True)
class TemporaryKey:
    access: str
    secret: str
    security_token: str
    expires_at: float
    projects: frozenset[str] | None = None  # an agency's: only these; else any of its account
    domain_id: str | None = None  # the account they act in (an agency's); None: the emulator's


class IamProblem(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Iam:
    """The identity providers, tokens and temporary credentials of one emulator."""

    domain_id: str
    clock_offset: float = 0.0
    max_lifetime: float | None = None  # caps every grant (tests of expiry)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    providers: dict[str, IdentityProvider] = field(default_factory=dict)
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    _keys: dict[str, TemporaryKey] = field(default_factory=dict)
    agencies: dict[tuple[str, str], Agency] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def now(self) -> float:
        return time.time() + self.clock_offset

    def reset(self) -> None:
        with self._lock:
            self.providers.clear()
            self._tokens.clear()
            self._keys.clear()
            self.agencies.clear()
            self.counts.clear()
            self.clock_offset, self.max_lifetime = 0.0, None

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    # -- admin --------------------------------------------------------------------------

    def register(self, doc: dict[str, Any]) -> IdentityProvider:
        unknown = set(doc) - set(PROVIDER_FIELDS)
        if unknown:
            raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
        for name in ("id", "issuer", "client_id"):
            if not isinstance(doc.get(name), str) or not doc[name]:
                raise ValueError(f"{name} must be a non-empty string")
        jwks = doc.get("jwks")
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise ValueError("jwks must be a JWKS object: {\"keys\": [...]}")
        raw = doc.get("conditions") or {}
        if not isinstance(raw, dict):
            raise ValueError("conditions must map a claim to the values it may have")
        conditions = {str(k): tuple(str(v) for v in (vs if isinstance(vs, list) else [vs]))
                      for k, vs in raw.items()}
        idp_id = doc["id"]
        urn = doc.get("provider_urn") or f"iam::{self.domain_id}:identity-provider:{idp_id}"
        agencies = doc.get("agencies") or [f"iam::{self.domain_id}:agency:{idp_id}-agency"]
        provider = IdentityProvider(id=idp_id, issuer=doc["issuer"], client_id=doc["client_id"],
                                    jwks=jwks, conditions=conditions, provider_urn=str(urn),
                                    agencies=tuple(str(a) for a in agencies))
        with self._lock:
            self.providers[idp_id] = provider
        return provider

    def register_agency(self, doc: dict[str, Any]) -> Agency:
        """Register (or replace) an agency, known by its name and owning account."""
        agency = read_agency(doc)
        with self._lock:
            self.agencies[(agency.domain_id, agency.name)] = agency
        return agency

    def configure(self, doc: dict[str, Any]) -> dict[str, Any]:
        unknown = set(doc) - {"clock_offset_seconds", "credential_lifetime_seconds"}
        if unknown:
            raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
        if "clock_offset_seconds" in doc:
            self.clock_offset = float(doc["clock_offset_seconds"])
        if "credential_lifetime_seconds" in doc:
            value = doc["credential_lifetime_seconds"]
            self.max_lifetime = None if value is None else float(value)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {"providers": sorted(self.providers), "counts": dict(self.counts),
                    "agencies": [{"name": a.name, "domain_id": a.domain_id,
                                  "domain_name": a.domain_name, "projects": list(a.projects)}
                                 for a in self.agencies.values()],
                    "clock_offset_seconds": self.clock_offset,
                    "credential_lifetime_seconds": self.max_lifetime,
                    "temporary_keys": len(self._keys)}

    # -- what the gateway asks ----------------------------------------------------------

    def secret_for(self, access: str) -> str | None:
        with self._lock:
            key = self._keys.get(access)
        return key.secret if key else None

    def refusal(self, access: str, security_token: str | None) -> str | None:
        """Why a request signed with this temporary AK is refused, None when it is not."""
        with self._lock:
            key = self._keys.get(access)
        if key is None:
            return None
        if not security_token or not secrets.compare_digest(security_token.strip(),
                                                            key.security_token):
            return "the security token is missing or does not belong to this access key"
        if self.now() >= key.expires_at:
            return "the security token has expired; get new temporary credentials"
        return None

    def projects_of(self, access: str) -> frozenset[str] | None:
        """The only projects this temporary AK may use (an agency's), None when not limited."""
        with self._lock:
            key = self._keys.get(access)
        return key.projects if key else None

    def account_of(self, access: str) -> str | None:
        """The account a temporary AK acts in (None: not a temporary AK of this emulator)."""
        with self._lock:
            key = self._keys.get(access)
        return None if key is None else key.domain_id or self.domain_id

    @staticmethod
    def needs_caller(path: str, body: Any) -> bool:
        """Whether this request must be signed: ``assume_role`` acts for the signer, and
        ``auth/domains`` names the signer's account."""
        if path == AUTH_DOMAINS_PATH:
            return True
        methods = _dig(body, "auth", "identity", "methods")
        return path == SECURITY_TOKENS_PATH and isinstance(methods, list) and (
            "assume_role" in methods)

    # -- the endpoints ------------------------------------------------------------------

    def handle(self, path: str, *, headers: dict[str, str], body: Any,
               caller: str | None = None, account: str | None = None) -> Reply:
        """Answer one IAM/STS call; ``caller`` is the verified signer's AK and ``account`` the
        account it acts in (``assume_role``, ``auth/domains``)."""
        try:
            if path == ID_TOKEN_PATH:
                return self._id_token(headers, body)
            if path == AUTH_DOMAINS_PATH:
                return self._auth_domains(account)
            if path == SECURITY_TOKENS_PATH and self.needs_caller(path, body):
                self._check_domain_header(headers, account)
                return self._assume_role(body, caller)
            if path == SECURITY_TOKENS_PATH:
                return self._security_tokens(headers, body)
            return self._assume(body)
        except IamProblem as exc:
            return problem_reply(path, exc)

    def _claims(self, provider: IdentityProvider, token: Any, code: str) -> dict[str, Any]:
        if not isinstance(token, str) or not token:
            raise IamProblem(400, code, "the request has no ID token")
        try:
            claims = verify_id_token(token, jwks=provider.jwks, issuer=provider.issuer,
                                     audience=provider.client_id, now=self.now())
        except TokenError as exc:
            raise IamProblem(401, code, f"identity provider {provider.id}: {exc}") from None
        for claim, allowed in provider.conditions.items():
            if str(claims.get(claim)) not in allowed:
                raise IamProblem(403, code, f"identity provider {provider.id}: the mapping "
                                 f"rule does not admit this token (claim {claim!r})")
        return claims

    def _id_token(self, headers: dict[str, str], body: Any) -> Reply:
        idp_id = headers.get("x-idp-id", "").strip()
        with self._lock:
            provider = self.providers.get(idp_id)
        if provider is None:
            raise IamProblem(404, "IAM.0004", "the identity provider in X-Idp-Id does not "
                             "exist")
        token = _dig(body, "auth", "id_token", "id")
        claims = self._claims(provider, token, "IAM.0011")
        subject = secrets.token_urlsafe(96)
        now = self.now()
        expires = now + UNSCOPED_TOKEN_SECONDS
        with self._lock:
            self._tokens[subject] = (provider.id, expires)
            self._count("id_token")
        answer = {"token": {
            "expires_at": _stamp(expires), "issued_at": _stamp(now), "methods": ["mapped"],
            "user": {"id": secrets.token_hex(16), "name": str(claims.get("sub", "")),
                     "domain": {"id": self.domain_id, "name": self.domain_id},
                     "OS-FEDERATION": {"identity_provider": {"id": provider.id},
                                       "protocol": {"id": "oidc"}, "groups": []}}}}
        return Reply(201, answer, {"X-Subject-Token": subject})

    def _security_tokens(self, headers: dict[str, str], body: Any) -> Reply:
        methods = _dig(body, "auth", "identity", "methods")
        if methods != ["token"]:
            raise IamProblem(400, "IAM.0007", "auth.identity.methods must be [\"token\"]")
        token = _dig(body, "auth", "identity", "token", "id") or headers.get("x-auth-token")
        duration = _dig(body, "auth", "identity", "token", "duration_seconds") or 900
        if not isinstance(duration, int) or not IAM_DURATION[0] <= duration <= IAM_DURATION[1]:
            raise IamProblem(400, "IAM.0007", "duration_seconds must be 900 to 86400")
        with self._lock:
            held = self._tokens.get(token) if isinstance(token, str) else None
        if held is None or held[1] <= self.now():
            raise IamProblem(401, "IAM.0005", "the token is invalid or has expired")
        key = self._grant(duration)
        with self._lock:
            self._count("security_token")
        return Reply(201, {"credential": {"access": key.access, "secret": key.secret,
                                          "securitytoken": key.security_token,
                                          "expires_at": _stamp(key.expires_at)}})

    def _auth_domains(self, account: str | None) -> Reply:
        if account is None:
            raise IamProblem(401, "IAM.0005", "the request must be signed with an AK/SK")
        with self._lock:
            self._count("auth_domains")
        return Reply(200, {"domains": [{"id": account, "name": account, "enabled": True,
                                        "description": "",
                                        "links": {"self": f"{AUTH_DOMAINS_PATH}/{account}"}}],
                           "links": {"self": AUTH_DOMAINS_PATH}})

    @staticmethod
    def _check_domain_header(headers: dict[str, str], account: str | None) -> None:
        """An ``X-Domain-Id`` must be the signer's account (absent is accepted)."""
        given = headers.get("x-domain-id")
        if given is not None and account is not None and given.strip() != account:
            raise IamProblem(401, "IAM.0005", "X-Domain-Id is not the account of the signing "
                             "credentials")

    def _assume_role(self, body: Any, caller: str | None) -> Reply:
        if caller is None:
            raise IamProblem(401, "IAM.0005", "assume_role must be signed with the caller's "
                             "AK/SK (or temporary credentials)")
        if _dig(body, "auth", "identity", "methods") != ["assume_role"]:
            raise IamProblem(400, "IAM.0007", "auth.identity.methods must be [\"assume_role\"]")
        try:
            role = read_assume_role(_dig(body, "auth", "identity"))
        except ValueError as exc:
            raise IamProblem(400, "IAM.0007", str(exc)) from None
        with self._lock:
            agency = next((a for a in self.agencies.values() if role.names(a)), None)
        if agency is None:
            account = role.domain_id or role.domain_name
            raise IamProblem(404, "IAM.0004", f"agency {role.agency_name!r} of account "
                             f"{account!r} does not exist")
        key = self._grant(role.duration_seconds, projects=frozenset(agency.projects),
                          domain_id=agency.domain_id)
        with self._lock:
            self._count("assume_role")
        return Reply(201, {"credential": {"access": key.access, "secret": key.secret,
                                          "securitytoken": key.security_token,
                                          "expires_at": _stamp(key.expires_at)}})

    def _assume(self, body: Any) -> Reply:
        if not isinstance(body, dict):
            raise IamProblem(400, "STS.0001", "the body must be a JSON object")
        urn, agency = body.get("provider_urn"), body.get("agency_urn")
        with self._lock:
            provider = next((p for p in self.providers.values() if p.provider_urn == urn), None)
        if provider is None:
            raise IamProblem(404, "STS.0404", "the identity provider in provider_urn does not "
                             "exist")
        if agency not in provider.agencies:
            raise IamProblem(403, "STS.0403", f"identity provider {provider.id} may not assume "
                             "the agency in agency_urn")
        session = body.get("agency_session_name")
        if not isinstance(session, str) or _SESSION_NAME.fullmatch(session) is None:
            raise IamProblem(400, "STS.0001", "agency_session_name must be 2 to 64 of "
                             "letters, digits and +=,.@-_")
        duration = body.get("duration_seconds", 3600)
        if not isinstance(duration, int) or not STS_DURATION[0] <= duration <= STS_DURATION[1]:
            raise IamProblem(400, "STS.0001", "duration_seconds must be 900 to 43200")
        claims = self._claims(provider, body.get("id_token"), "STS.0401")
        key = self._grant(duration)
        with self._lock:
            self._count("assume_with_oidc")
        subject = str(claims.get("sub", ""))
        return Reply(200, {
            "credentials": {"access_key_id": key.access, "secret_access_key": key.secret,
                            "security_token": key.security_token,
                            "expiration": _stamp(key.expires_at)},
            "assumed_agency": {"urn": f"{agency}/{session}",
                               "id": f"{secrets.token_hex(16)}:{session}"},
            "source_identity": subject, "audience": provider.client_id,
            "provider": provider.provider_urn, "subject_from_id_token": subject})

    def _grant(self, duration: int, *, projects: frozenset[str] | None = None,
               domain_id: str | None = None) -> TemporaryKey:
        lifetime = float(duration) if self.max_lifetime is None else min(duration,
                                                                         self.max_lifetime)
        key = TemporaryKey(access="".join(secrets.choice(_UPPER) for _ in range(20)),
                           secret=secrets.token_hex(20), security_token=secrets.token_urlsafe(
                               180), expires_at=self.now() + lifetime, projects=projects,
                           domain_id=domain_id)
        with self._lock:
            self._keys[key.access] = key
        return key


def problem_reply(path: str, exc: IamProblem) -> Reply:
    """An error in the shape of the service at ``path`` (STS's, else IAM's)."""
    if path == ASSUME_PATH:
        return Reply(exc.status, {"error_code": exc.code, "error_msg": exc.message})
    title = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
             404: "Not Found"}.get(exc.status, "Error")
    return Reply(exc.status, {"error": {"code": exc.status, "title": title,
                                        "message": exc.message, "error_code": exc.code}})


def _dig(doc: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(name)
    return doc


def _stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime(EXPIRES_FORMAT)
