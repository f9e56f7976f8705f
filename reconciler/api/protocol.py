"""The one small protocol the engine uses to talk to any of the three API flavours.

The differences between ``v2``, ``v2.1`` and ``kps`` (paths, bodies, status codes, error
shapes, pagination) live in the adapters behind it, nowhere else; what a flavour can do
(descriptions, scope, custody, pagination) each adapter tells as ``capabilities``
(``reconciler.capabilities``), so callers never compare flavours.

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.proxies``,
``reconciler.capabilities``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from reconciler.capabilities import Capabilities
from reconciler.model import (
    Api,
    CreatedKeyPair,
    KeyProtection,
    RemoteKeyPair,
    RemoteSnapshot,
    Secret,
)
from reconciler.proxies import ProxyChoice


@dataclass(frozen=True, slots=True)
class Credentials:
    """AK/SK (and a security token for temporary credentials); never printed."""

    ak: str
    sk: Secret
    security_token: Secret | None = None

    def __repr__(self) -> str:
        return "Credentials(ak=(sensitive value), sk=(sensitive value))"

    def secrets(self) -> tuple[Secret, ...]:
        """What must never appear in a message: the SK and the token."""
        return (self.sk,) if self.security_token is None else (self.sk, self.security_token)

    # A fixed pair is its own provider (tests, bench and one-off clients pass one directly).
    @property
    def source(self) -> str:
        return "given credentials"

    def current(self) -> Credentials:
        return self


class CredentialProvider(Protocol):
    """Where the credentials of a client come from; asked before every signature.

    ``current()`` returns credentials valid for the next request (refreshing temporary ones
    before they expire); ``source`` says where they come from, never with a secret, e.g.
    "environment (HUAWEICLOUD_SDK_AK)". Implementations live in ``reconciler.credentials``.
    """

    @property
    def source(self) -> str: ...

    def current(self) -> Credentials: ...


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Everything needed to reach one API flavour in one project."""

    api: Api
    endpoint: str  # Endpoint.url: scheme://host[:port][/prefix], no trailing slash
    project_id: str
    credentials: CredentialProvider  # asked afresh for every signature
    region: str | None = None
    verify_tls: bool = True
    ca_bundle: str | None = None  # a CA bundle file to verify against (REQUESTS_CA_BUNDLE)
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_retries: int = 6
    total_timeout: float = 300.0  # upper bound on one call, retries included
    pool_size: int = 32
    max_answer_bytes: int = 64 * 1024 * 1024  # a larger answer is an error, never read whole
    proxy: ProxyChoice | None = None  # None: connect directly (the environment is not read)
    # Where custody calls go when another service takes them (v2.1: KPS's, ``endpoints.kms`` of
    # a target); None: derived from ``endpoint`` (``api.endpoints.custody_endpoint``).
    custody_endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """One public key to import, as ``KeyPairApi.import_keypair`` takes it."""

    name: str
    public_key: str
    type: str = "ssh"
    user_id: str | None = None
    scope: str | None = None
    key_protection: KeyProtection | None = None
    private_key: Secret | None = field(default=None, repr=False)  # custody only


@dataclass(frozen=True, slots=True)
class BatchImported:
    """What one batch import answered, by name: every name asked is in exactly one of
    ``imported`` (the key pair as the cloud made it), ``refused`` (the cloud's reason, safe
    to print) or ``unanswered`` (the answer did not mention it: it may or may not exist)."""

    imported: Mapping[str, RemoteKeyPair]
    refused: Mapping[str, str]
    unanswered: tuple[str, ...] = ()


class KeyPairApi(Protocol):
    """What the engine needs of a key pair API.

    Every method raises ``ApiError`` on an error answer. ``create_keypair`` and
    ``import_keypair`` raise ``OutcomeUnknownError`` when the request was sent and its answer
    lost: the caller re-reads with ``get_keypair`` to learn what happened.
    """

    api: Api

    @property
    def capabilities(self) -> Capabilities:
        """What this flavour can do: ask this, never compare ``api``."""
        ...

    def list_keypairs(self) -> RemoteSnapshot:
        """Every key pair visible in the project, following pagination to the end."""
        ...

    def get_keypair(self, name: str) -> RemoteKeyPair | None:
        """One key pair, or None when it does not exist."""
        ...

    def create_keypair(
        self,
        *,
        name: str,
        type: str = "ssh",
        user_id: str | None = None,
        scope: str | None = None,
        key_protection: KeyProtection | None = None,
    ) -> CreatedKeyPair:
        """The cloud generates the pair; its private key comes back once (in the result)."""
        ...

    def import_keypair(
        self,
        *,
        name: str,
        public_key: str,
        type: str = "ssh",
        user_id: str | None = None,
        scope: str | None = None,
        key_protection: KeyProtection | None = None,
        private_key: Secret | None = None,
    ) -> RemoteKeyPair:
        """Import a public key; with ``key_protection`` and ``private_key``, the cloud keeps it."""
        ...

    def import_keypairs(self, requests: Sequence[ImportRequest]) -> BatchImported:
        """Import up to ``capabilities.batch_import`` public keys in one request, each made or
        refused on its own. ``OutcomeUnknownError`` when the answer was lost or cannot be
        read (the caller re-reads by list); ``ApiError`` when the whole request was refused
        for certain. A flavour without batch import raises ``UsageError``."""
        ...

    def delete_keypair(self, name: str) -> bool:
        """Delete; False when it was already gone (404 is not an error here)."""
        ...

    def update_description(self, name: str, description: str) -> None:
        """kps only; other flavours raise ``UsageError``."""
        ...

    def export_private_key(self, name: str) -> Secret | None:
        """The private key the cloud keeps (v2.1 and kps, through KPS); None when the key
        pair does not exist or the flavour cannot export."""
        ...

    def import_private_key(self, name: str, *, key_protection: KeyProtection,
                           private_key: Secret, user_id: str | None = None) -> None:
        """Hand ``private_key`` (the half of the key pair's public key) to the cloud's
        custody, encrypted as ``key_protection`` says; the same call changes the encryption
        of a private key the cloud keeps already. Safe to send twice. v2 raises
        ``UsageError``."""
        ...

    def clear_private_key(self, name: str) -> None:
        """Delete the cloud's copy of the private key (the key pair stays). Safe to send
        twice. v2 raises ``UsageError``."""
        ...

    def close(self) -> None: ...
