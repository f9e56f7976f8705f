"""Server-side verification of Huawei ``SDK-HMAC-SHA256`` (and ``V11-HMAC-SHA256``) signatures.

The canonical request is rebuilt from what arrived on the wire: the method, the raw path,
the raw query string, the signed headers' values and the exact body bytes. This is a separate
implementation from the client's signer on purpose; both are checked against the reference
vectors, and two implementations that agree are worth more than one shared.

May import: the standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
DERIVED_ALGORITHM = "V11-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_SKEW_SECONDS = 15 * 60


class SignatureError(Exception):
    """The request is not (correctly) signed; the message says why, never with the SK."""


@dataclass(frozen=True, slots=True)
class Authorization:
    """The parsed ``Authorization`` header."""

    algorithm: str
    access_key: str
    signed_headers: tuple[str, ...]
    signature: str
    scope: str = ""  # V11 only: "YYYYMMDD/region/service"


def _quote(text: str) -> str:
    return quote(text, safe="~")


def canonical_uri(raw_path: str) -> str:
    """Decode, split on ``/``, re-encode each segment, always end with ``/``."""
    segments = unquote(raw_path).split("/")
    uri = "/".join(_quote(seg) for seg in segments)
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(raw_query: str) -> str:
    """Pairs sorted by raw (decoded) key then value, each re-encoded, joined with ``&``."""
    pairs: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((unquote(key), unquote(value)))
    pairs.sort()
    return "&".join(f"{_quote(k)}={_quote(v)}" for k, v in pairs)


def parse_authorization(header: str) -> Authorization:
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm not in (ALGORITHM, DERIVED_ALGORITHM):
        raise SignatureError(f"unsupported signing algorithm {algorithm[:32]!r}")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            fields[key] = value.strip()
    signed = fields.get("SignedHeaders", "")
    signature = fields.get("Signature", "")
    if not signed or not signature:
        raise SignatureError("the Authorization header lacks SignedHeaders or Signature")
    headers = tuple(signed.split(";"))
    if algorithm == ALGORITHM:
        access = fields.get("Access", "")
        if not access:
            raise SignatureError("the Authorization header lacks Access")
        return Authorization(algorithm, access, headers, signature)
    access, _, scope = fields.get("Credential", "").partition("/")
    if not access or not scope:
        raise SignatureError("the Authorization header lacks Credential")
    return Authorization(algorithm, access, headers, signature, scope)


def _header_lookup(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-cased names; a repeated name keeps its last value (as the SDK's map does)."""
    return {name.lower(): value for name, value in headers}


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A request as it arrived; the verifier needs nothing else."""

    method: str
    raw_path: str
    raw_query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def canonical_request(request: SignedRequest, signed_headers: Iterable[str]) -> str:
    lookup = _header_lookup(request.headers)
    names = list(signed_headers)
    block = ""
    for name in names:
        if name not in lookup:
            raise SignatureError(f"signed header {name[:64]!r} is missing from the request")
        block += f"{name}:{lookup[name].strip()}\n"
    payload = lookup.get("x-sdk-content-sha256") or hashlib.sha256(request.body).hexdigest()
    return "\n".join(
        (
            request.method.upper(),
            canonical_uri(request.raw_path),
            canonical_query(request.raw_query),
            block,
            ";".join(names),
            payload,
        )
    )


def _derived_key(*, ak: str, sk: str, scope: str) -> bytes:
    prk = hmac.new(ak.encode(), sk.encode(), hashlib.sha256).digest()
    okm = hmac.new(prk, scope.encode() + b"\x01", hashlib.sha256).digest()
    return okm.hex().encode()


def _check_date(value: str | None, now: datetime) -> str:
    if not value:
        raise SignatureError("the X-Sdk-Date header is missing")
    try:
        when = datetime.strptime(value.strip(), DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError("the X-Sdk-Date header is not YYYYMMDDTHHMMSSZ") from None
    if abs((now - when).total_seconds()) > MAX_SKEW_SECONDS:
        raise SignatureError("the request time differs from the server time by over 15 minutes")
    return value.strip()


def verify(
    request: SignedRequest,
    *,
    secret_for: Callable[[str], str | None],
    now: datetime | None = None,
) -> str:
    """Check the request's signature; return the access key, or raise ``SignatureError``.

    ``secret_for(ak)`` returns the secret key of a known access key, else None.
    """
    lookup = _header_lookup(request.headers)
    header = lookup.get("authorization")
    if not header:
        raise SignatureError("the request is not signed (no Authorization header)")
    auth = parse_authorization(header)
    if "x-security-token" in lookup and "x-security-token" not in auth.signed_headers:
        raise SignatureError("X-Security-Token is present but not signed")
    date = _check_date(lookup.get("x-sdk-date"), now or datetime.now(UTC))
    sk = secret_for(auth.access_key)
    if sk is None:
        raise SignatureError("the access key is unknown")
    canonical = canonical_request(request, auth.signed_headers)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    if auth.algorithm == ALGORITHM:
        key = sk.encode()
        to_sign = f"{ALGORITHM}\n{date}\n{digest}"
    else:
        key = _derived_key(ak=auth.access_key, sk=sk, scope=auth.scope)
        to_sign = f"{DERIVED_ALGORITHM}\n{date}\n{auth.scope}\n{digest}"
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), auth.signature.lower().encode()):
        raise SignatureError("the signature does not match")
    return auth.access_key
