"""AK/SK request signing, ``SDK-HMAC-SHA256`` (and the derived ``V11-HMAC-SHA256``).

A pure ``sign()`` that reproduces every vector in ``reference/signing-vectors.json``, and
``SdkHmacSigner``, a ``requests`` auth hook that signs each prepared request afresh (a new
``X-Sdk-Date`` from an injectable clock on every call, so every retry is re-signed).

Only headers the signer knows about are signed: the ones it sets (Host, X-Sdk-Date,
X-Project-Id, X-Security-Token) and those the caller chose (Content-Type, ``X-*`` and
``OpenStack-*``). Headers the HTTP library adds on its own (Accept, Accept-Encoding,
Connection, Content-Length, User-Agent) are left out, as the reference allows.

May import: the standard library, ``requests``, ``reconciler.model``, ``reconciler.api.protocol``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TypedDict
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

import requests
from requests.auth import AuthBase

from reconciler.api.protocol import CredentialProvider, Credentials
from reconciler.model import Secret

ALGORITHM = "SDK-HMAC-SHA256"
V11_ALGORITHM = "V11-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()

QueryValue = str | int | bool | Sequence[str]
QueryPairs = Sequence[tuple[str, QueryValue]]


class Signed(TypedDict):
    """Everything ``sign`` computed; ``headers`` and ``url`` are what goes on the wire."""

    canonical_request: str
    string_to_sign: str
    signature: str
    signed_headers: list[str]
    authorization: str
    headers: dict[str, str]
    url: str


def _quote(text: str) -> str:
    return quote(text, safe="~")


def canonical_uri(path: str) -> str:
    """Decode, split on ``/``, re-encode each segment (RFC 3986), end with ``/``."""
    segments = [_quote(seg) for seg in unquote(path).split("/")]
    uri = "/".join(segments)
    return uri if uri.endswith("/") else uri + "/"


def _query_text(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def canonical_query(params: QueryPairs) -> str:
    """Pairs sorted by raw key then raw value, each side encoded with ``quote(safe='~')``."""
    flat: list[tuple[str, str]] = []
    for key, value in params:
        if isinstance(value, str | int | bool):
            flat.append((key, _query_text(value)))
        else:
            flat.extend((key, _query_text(v)) for v in sorted(value))
    return "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(flat))


def _merge_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Trim values; names differing only in case collapse to the last one given."""
    merged: dict[str, tuple[str, str]] = {}
    for name, value in pairs:
        merged[name.lower()] = (name, value.strip())
    return {name: value for name, value in merged.values()}


def _hashed_payload(headers: Mapping[str, str], body: bytes | None) -> str:
    for name, value in headers.items():
        if name.lower() == "x-sdk-content-sha256":
            return value
    return hashlib.sha256(body).hexdigest() if body else EMPTY_BODY_SHA256


def _canonical_request(
    *, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes | None
) -> tuple[str, list[str]]:
    lowered = {name.lower(): value for name, value in headers.items()}
    signed = sorted(name for name in lowered if "_" not in name)
    block = "".join(f"{name}:{lowered[name]}\n" for name in signed)
    parts = [
        method.upper(),
        canonical_uri(path),
        query,
        block,
        ";".join(signed),
        _hashed_payload(headers, body),
    ]
    return "\n".join(parts), signed


def _hmac_hex(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def derive_v11_key(*, ak: str, sk: str, info: str) -> bytes:
    """HKDF-SHA256 (salt AK, IKM SK, one block), as the hex string used as the HMAC key."""
    prk = hmac.new(ak.encode("utf-8"), sk.encode("utf-8"), hashlib.sha256).digest()
    okm = hmac.new(prk, info.encode("utf-8") + b"\x01", hashlib.sha256).hexdigest()
    return okm.encode("utf-8")


def sign(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | str | None,
    ak: str,
    sk: str,
    date: datetime | str,
    query: QueryPairs | None = None,
    v11_scope: tuple[str, str] | None = None,
) -> Signed:
    """Sign one request as reference section 4 says; pure (the date is given).

    ``url`` is ``scheme://host[:port]/path`` with path parameters already encoded; its own
    query (if ``query`` is None) is read as raw pairs. ``v11_scope=(region, service)``
    selects the derived ``V11-HMAC-SHA256`` algorithm.
    """
    parts = urlsplit(url)
    if query is None:
        query = parse_qsl(parts.query, keep_blank_values=True)
    stamp = date if isinstance(date, str) else date.astimezone(UTC).strftime(DATE_FORMAT)
    payload = body.encode("utf-8") if isinstance(body, str) else body
    given = [(k, v) for k, v in headers.items() if k.lower() not in ("x-sdk-date", "host")]
    host = next((v for k, v in headers.items() if k.lower() == "host"), parts.netloc)
    merged = _merge_headers([*given, ("X-Sdk-Date", stamp), ("Host", host)])
    query_text = canonical_query(query)
    canonical, signed = _canonical_request(
        method=method, path=parts.path, query=query_text, headers=merged, body=payload
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    if v11_scope is None:
        string_to_sign = f"{ALGORITHM}\n{stamp}\n{digest}"
        signature = _hmac_hex(sk.encode("utf-8"), string_to_sign)
        credential = f"{ALGORITHM} Access={ak}"
    else:
        info = f"{stamp[:8]}/{v11_scope[0]}/{v11_scope[1]}"
        string_to_sign = f"{V11_ALGORITHM}\n{stamp}\n{info}\n{digest}"
        signature = _hmac_hex(derive_v11_key(ak=ak, sk=sk, info=info), string_to_sign)
        credential = f"{V11_ALGORITHM} Credential={ak}/{info}"
    authorization = (
        f"{credential}, SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    merged["Authorization"] = authorization
    wire_url = urlunsplit((parts.scheme, parts.netloc, parts.path, query_text, ""))
    return Signed(
        canonical_request=canonical,
        string_to_sign=string_to_sign,
        signature=signature,
        signed_headers=signed,
        authorization=authorization,
        headers=merged,
        url=wire_url,
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _is_signable(name: str) -> bool:
    lowered = name.lower()
    return lowered == "content-type" or lowered.startswith(("x-", "openstack-"))


class SdkHmacSigner(AuthBase):
    """Signs every prepared request with AK/SK; the date, and the credentials (from the
    provider, which refreshes temporary ones), are taken afresh on each call."""

    def __init__(
        self,
        *,
        credentials: CredentialProvider,
        project_id: str,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._provider = credentials
        self._project_id = project_id
        self._clock = clock
        self._last: Credentials | None = None

    def secrets(self) -> tuple[Secret, ...]:
        """The secrets of the credentials last signed with (for scrubbing messages)."""
        last = self._last
        return () if last is None else last.secrets()

    def __repr__(self) -> str:
        return "SdkHmacSigner((sensitive value))"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        chosen = {k: v for k, v in r.headers.items() if _is_signable(k)}
        for name in chosen:
            del r.headers[name]
        chosen["X-Project-Id"] = self._project_id
        credentials = self._provider.current()
        self._last = credentials
        token = credentials.security_token
        if token is not None:
            chosen["X-Security-Token"] = token.reveal()
        body = r.body.encode("utf-8") if isinstance(r.body, str) else r.body
        if body is not None and not isinstance(body, bytes):
            raise TypeError("only in-memory request bodies can be signed")
        signed = sign(
            str(r.method),
            str(r.url),
            headers=chosen,
            body=body,
            ak=credentials.ak,
            sk=credentials.sk.reveal(),
            date=self._clock(),
        )
        r.headers.update(signed["headers"])
        r.url = signed["url"]
        return r
