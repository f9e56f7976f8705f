"""Shared frozen records: what a manifest asks for, what the cloud has, what state holds.

These are the values that flow between the stages (load -> refresh -> plan -> apply).
Raw JSON and YAML never cross a module boundary; these records do.

May import: the standard library, ``reconciler.address``.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NoReturn

from reconciler.address import Address, keypair_address

SENSITIVE = "(sensitive value)"


class Secret:
    """A secret string (a private key, usually) that never shows itself by accident.

    ``str()``, ``repr()`` and f-strings give ``(sensitive value)``; ``reveal()`` is the one,
    explicit way to the value. It cannot be pickled or hashed, and compares in constant time.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        return self._value

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return SENSITIVE

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return SENSITIVE

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __len__(self) -> int:
        return len(self._value)


class Api(StrEnum):
    """The three key pair API flavours; all see the same key pairs."""

    V2 = "v2"
    V21 = "v2.1"
    KPS = "kps"


class KeySource(StrEnum):
    """Where a key pair's material comes from."""

    CLOUD = "cloud"  # the cloud generates the pair; the private key comes back once
    GENERATE = "generate"  # generated here; only the public half is sent
    IMPORT = "import"  # a public key given in the manifest; the private key stays with its owner


GENERATE_ALGORITHMS: tuple[str, ...] = (
    "ed25519",
    "rsa-2048",
    "rsa-3072",
    "rsa-4096",
    "ecdsa-p256",
    "ecdsa-p384",
    "ecdsa-p521",
)

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """A place in a manifest file; lines and columns count from 1."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Encryption:
    """How the cloud encrypts a private key it keeps (``key_protection.encryption``)."""

    type: str  # "default" | "kms"
    kms_key_name: str | None = None
    kms_key_id: str | None = None

    def as_dict(self) -> dict[str, str]:
        out = {"type": self.type}
        if self.kms_key_name is not None:
            out["kms_key_name"] = self.kms_key_name
        if self.kms_key_id is not None:
            out["kms_key_id"] = self.kms_key_id
        return out


@dataclass(frozen=True, slots=True)
class KeyProtection:
    """The cloud keeps the private key too (v2.1 and kps only).

    ``private_key_file`` (absolute path) hands an existing private key to the cloud's custody
    on import; it is read at apply time and never stored in a plan.
    """

    encryption: Encryption
    private_key_file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The comparable form: custody and encryption; never key material."""
        return {"encryption": self.encryption.as_dict()}


@dataclass(frozen=True, slots=True)
class ServerRef:
    """One entry of a key pair's ``servers:`` list: an ECS server id, or a server name the
    plan resolves to an id (an exact compare against the target's server list)."""

    ref: str
    location: SourceLocation = field(compare=False)


@dataclass(frozen=True, slots=True)
class DesiredKeyPair:
    """One key pair as a manifest asks for it, normalised.

    For ``KeySource.IMPORT`` the loader has already read ``public_key_file``: ``public_key``
    holds the key text, and ``public_key_file`` only says where it came from.
    """

    name: str
    source: KeySource
    location: SourceLocation
    spec_digest: str  # sha256 over the normalised spec; recorded in state
    algorithm: str | None = None  # for GENERATE: one of GENERATE_ALGORITHMS
    public_key: str | None = None  # for IMPORT: OpenSSH line or PEM certificate
    public_key_file: str | None = None
    type: str = "ssh"  # "ssh" | "x509"
    user_id: str | None = None
    description: str | None = None  # kps only
    scope: str | None = None  # kps only: "user" | "domain"
    key_protection: KeyProtection | None = None
    prevent_destroy: bool = False
    rotate_after_seconds: int | None = None
    # The target names it belongs to, as the manifest lists them; () means every target.
    targets: tuple[str, ...] = ()
    # The servers it is bound to, per target: (target, servers) in manifest order; () for a
    # key pair without ``servers:`` (the binding kind plans nothing for it).
    servers: tuple[tuple[str, tuple[ServerRef, ...]], ...] = ()
    # Where its private key is delivered after apply (``deliver:``); () for none.
    deliver: tuple[DeliverySink, ...] = ()


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """The manifest's ``provider`` block; every field optional (flags and environment win)."""

    region: str | None = None
    project_id: str | None = None
    api: Api | None = None
    endpoint: str | None = None
    location: SourceLocation | None = None


SERVICES = ("ecs", "kms", "iam", "sts", "obs")


AGENCY_DURATION_SECONDS = (900, 86400)  # what IAM grants: 15 minutes to 24 hours
DEFAULT_AGENCY_DURATION_SECONDS = 3600  # more than the 40-minute refresh margin


@dataclass(frozen=True, slots=True)
class AgencyConfig:
    """An IAM agency a target's credentials assume: its name and the account that owns it
    (exactly one of ``domain_id`` and ``domain_name``), and how long each grant lasts."""

    name: str
    domain_id: str | None = None
    domain_name: str | None = None
    duration_seconds: int = DEFAULT_AGENCY_DURATION_SECONDS

    @property
    def account(self) -> str:
        """The owning account as the manifest names it (its name, or its id)."""
        return self.domain_name or self.domain_id or ""


@dataclass(frozen=True, slots=True)
class CredentialsConfig:
    """A target's ``credentials`` block: where its credentials come from, never a secret.

    ``profile`` names a section of the SDK's profile file used instead of the environment's
    provider chain; ``agency``, when set, is assumed with those base credentials."""

    profile: str | None = None
    agency: AgencyConfig | None = None
    location: SourceLocation | None = None


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """One entry of the manifest's ``targets`` block: where some key pairs live.

    ``credentials`` says where its credentials come from (None: the environment's provider
    chain, as for a provider block); ``endpoints`` maps a service of ``SERVICES`` to its URL
    where the manifest overrides the region's default.
    """

    name: str
    region: str
    project_id: str
    api: Api | None = None
    endpoints: Mapping[str, str] = field(default_factory=dict)
    credentials: CredentialsConfig | None = None
    location: SourceLocation | None = None


@dataclass(frozen=True, slots=True)
class S3Location:
    """Where state lives in an S3-compatible store (OBS, MinIO, AWS), and how to reach it.

    The one value for the manifest's ``backend`` block, ``--backend`` / ``RECONCILER_BACKEND``
    (``s3://BUCKET/KEY``, parsed by ``from_url``), a saved plan's backend and the S3 store.
    ``endpoint`` is ``Endpoint.url`` once chosen (None: boto3's default, AWS). ``declared_at``
    is where a manifest declared it, for diagnostics; it takes no part in equality.
    """

    bucket: str
    key: str
    endpoint: str | None = None
    region: str | None = None
    declared_at: SourceLocation | None = field(default=None, compare=False)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @classmethod
    def from_url(cls, url: str, *, endpoint: str | None = None) -> S3Location | None:
        """``s3://BUCKET/KEY`` as a location; None when ``url`` is not of that form."""
        bucket, _, key = url.removeprefix("s3://").partition("/")
        if not url.startswith("s3://") or not bucket or not key or key.endswith("/"):
            return None
        return cls(bucket=bucket, key=key, endpoint=endpoint)


STATE_KEY_PROVIDERS = ("passphrase", "key_file", "kms")
STATE_KEY_MODES = ("fallback", "enforced")


@dataclass(frozen=True, slots=True)
class StateEncryption:
    """Which key seals the state: the manifests' ``encryption`` block, ``--encryption`` /
    ``RECONCILER_ENCRYPTION`` and their companions, field by field (``reconciler.state.keychoice``).

    ``provider`` is one of ``STATE_KEY_PROVIDERS`` (None: not chosen, today's rules: the
    passphrase or key file the environment gives, or what the state's key block says);
    ``kms_key`` a KMS key id or ``alias/NAME``; ``kms_target`` the target whose KMS holds it
    (None: the run's only or first target). ``mode``: ``fallback`` reads a state sealed by
    another provider with that one and writes it with this one; ``enforced`` reads and writes
    only with this one. Never a secret. ``declared_at`` takes no part in equality.
    """

    provider: str | None = None
    kms_key: str | None = None
    kms_target: str | None = None
    mode: str = "enforced"
    declared_at: SourceLocation | None = field(default=None, compare=False)
    origin: str = field(default="", compare=False)  # for messages: where it was chosen


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """One entry of a manifest's ``import:`` list: adopt the key pair at ``to`` (a name, or
    an address, as ``reconciler.address.parse_address`` reads it; the name is its id in the
    cloud) into state, with no write to the cloud. Terraform's ``import {to, id}`` block."""

    to: str  # normalised: ``keypair.NAME`` or ``keypair.NAME["TARGET"]``
    location: SourceLocation = field(compare=False)


@dataclass(frozen=True, slots=True)
class Manifest:
    """Every key pair the manifests ask for, in file order, names unique."""

    keypairs: tuple[DesiredKeyPair, ...]
    provider: ProviderConfig | None = None
    backend: S3Location | None = None
    encryption: StateEncryption | None = None  # the manifests' encryption block
    files: tuple[str, ...] = ()
    digest: str = ""  # reconciler.configuration.configuration_digest of the key pairs
    # The targets block; () when the manifests have none (one implicit target, from the
    # provider block if there is one). reconciler.targets fans key pairs out to them.
    targets: tuple[TargetConfig, ...] = ()
    # The ``import:`` lists of every document, in file order, each address once.
    imports: tuple[ImportRequest, ...] = ()

    def by_name(self) -> dict[str, DesiredKeyPair]:
        return {kp.name: kp for kp in self.keypairs}


@dataclass(frozen=True, slots=True)
class RemoteKeyPair:
    """A key pair as the cloud reports it, parsed at the API boundary.

    ``None`` means the API did not say (a list entry carries no description, Nova says
    nothing of key protection); the plan then relies on state for that field.
    """

    name: str
    public_key: str
    fingerprint: str  # as the cloud reports it: MD5 colon-hex (SHA-1 for x509)
    type: str = "ssh"
    user_id: str | None = None
    scope: str | None = None
    description: str | None = None
    key_protection: bool | None = None
    # kps: 0 normal; anything else frozen (by the provider, the police, a violation, a missing
    # real-name check): such a key pair needs a person's decision before it is adopted.
    frozen_state: int | None = None


@dataclass(frozen=True, slots=True)
class RemoteServer:
    """An ECS server as its list reports it: which key pair it holds (None: none)."""

    id: str
    name: str
    status: str  # ACTIVE (running), SHUTOFF (stopped), ...
    key_name: str | None = None
    image_type: str | None = None  # metering.imagetype: gold (public), private, ...

    @property
    def running(self) -> bool:
        return self.status == "ACTIVE"

    @property
    def public_image(self) -> bool:
        return self.image_type in (None, "gold")


@dataclass(frozen=True, slots=True)
class RemoteSnapshot:
    """What exists in the cloud, from one (paginated) list.

    ``servers`` is the target's ECS server list, read only when the plan needs it (it has
    bindings, or a key pair to delete or replace); None when it was not read."""

    keypairs: Mapping[str, RemoteKeyPair]
    api: Api
    requests: int = 0
    servers: tuple[RemoteServer, ...] | None = None
    # What each delivery sink of this target holds now, by the delivery's name (read after
    # the list, for the deliveries the manifests declare or state records).
    sinks: Mapping[str, SinkReading] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CreatedKeyPair:
    """The answer to a create or import: the pair, and the private key if the cloud made one."""

    remote: RemoteKeyPair
    private_key: Secret | None = None


class EntryStatus(StrEnum):
    """Where a state entry stands.

    PENDING: the private key was generated here and stored, and the upload of its public half
    was not yet confirmed (an apply was interrupted). READY: in the cloud as recorded.
    TAINTED: in the cloud, but the cloud generated it and its private key never arrived; the
    next plan replaces it.
    """

    PENDING = "pending"
    READY = "ready"
    TAINTED = "tainted"


@dataclass(frozen=True, slots=True)
class SealedSecret:
    """A private key encrypted by the state store; opaque outside ``reconciler.state``."""

    envelope: str

    def __repr__(self) -> str:
        return "SealedSecret(...)"


# A key pair rotated without a gap is made under a new name first: ``NAME-gN`` (generation
# N, 1 to 99, then 1 again), so that the old one stays until every server is rebound. Names
# are at most 64 characters, so a key pair that may rotate so has a name of at most 60.
MAX_GENERATION = 99
ROTATING_NAME_MAX = 60


def generation_name(name: str, generation: int) -> str:
    """The name in the cloud of generation ``generation`` of key pair ``name``."""
    return name if generation == 0 else f"{name}-g{generation}"


@dataclass(frozen=True, slots=True)
class Deposed:
    """The previous generation of a key pair being rotated without a gap: kept in the cloud
    (and its private key in state) until every server it is bound to is rebound to the new
    generation; then deleted."""

    cloud_name: str
    public_key: str
    fingerprint_md5: str
    fingerprint_sha256: str
    private_key: SealedSecret | None = None  # sealed for the entry's address, as before


@dataclass(frozen=True, slots=True)
class StateKeyPair:
    """One managed key pair as recorded in state."""

    name: str
    api: Api
    source: KeySource
    public_key: str
    fingerprint_md5: str
    fingerprint_sha256: str
    created: str  # RFC 3339, UTC
    spec_digest: str
    algorithm: str | None = None
    type: str = "ssh"
    user_id: str | None = None
    scope: str | None = None
    description: str | None = None
    key_protection: KeyProtection | None = None
    private_key: SealedSecret | None = None
    status: EntryStatus = EntryStatus.READY
    prevent_destroy: bool = False  # recorded so that deleting it after it left the manifest fails
    # The target it lives in (``address.DEFAULT_TARGET`` for a run without a targets block);
    # with ``name``, its address, which its sealed private key is bound to.
    target: str = "default"
    # The ECS servers reconciler bound it to (ids, sorted): the binding kind's record.
    servers: tuple[str, ...] = ()
    # What was delivered of its private key, per sink (never the key itself).
    deliveries: tuple[DeliveryRecord, ...] = ()
    # Its generation (0: the cloud names it ``name``; N: ``name-gN``), and the previous one
    # while a rotation without a gap is under way.
    generation: int = 0
    deposed: Deposed | None = None

    @property
    def cloud_name(self) -> str:
        """What the cloud (and a server's ``key_name``) calls it."""
        return generation_name(self.name, self.generation)

    def private_key_of(self, cloud_name: str) -> SealedSecret | None:
        """The sealed private key of the generation the cloud calls ``cloud_name``: the
        current one, or the deposed one while a rotation is under way; None otherwise."""
        if cloud_name == self.cloud_name:
            return self.private_key
        if self.deposed is not None and self.deposed.cloud_name == cloud_name:
            return self.deposed.private_key
        return None


@dataclass(frozen=True, slots=True)
class TargetConnection:
    """How a run reached a target, as state records it (format 3): enough to find its key
    pairs again once the target has left the manifests. ``credentials`` names the credential
    source (``environment (HUAWEICLOUD_SDK_AK / ...)``, a profile, an agency), never a
    secret. ``None``: not known (recorded by the next run that writes the state)."""

    region: str | None = None
    project_id: str | None = None
    api: str | None = None
    endpoint: str | None = None
    credentials: str | None = None


@dataclass(frozen=True, slots=True)
class State:
    """The whole state: lineage (set once), serial (bumped on every change), entries.

    ``keypairs`` is keyed by address (target, kind, name): the same name may be managed in
    several targets; ``targets`` is the connection of each target an entry lives in (or the
    run connected to).
    """

    lineage: str
    serial: int
    keypairs: Mapping[Address, StateKeyPair] = field(default_factory=dict)
    format_version: int = 3  # the format this release writes (codec.FORMAT_VERSION)
    # How each target was reached: a note for finding its key pairs again, not part of what
    # the state holds (not compared: a run from another endpoint changes no entry).
    targets: Mapping[str, TargetConnection] = field(default_factory=dict, compare=False)
    # False when it was read without checking its integrity MAC (no key, or format 1): a plan
    # made from it says so. Not part of its value.
    verified: bool = field(default=True, compare=False)

    def by_name(self, name: str, target: str | None = None) -> StateKeyPair | None:
        """The entry of key pair ``name`` in ``target``; without a target, the entry of that
        name if only one target holds one (None when none does, or several do)."""
        if target is not None:
            return self.keypairs.get(keypair_address(name, target))
        found = [e for a, e in self.keypairs.items() if a.name == name]
        return found[0] if len(found) == 1 else None

    def entry(self, name: str, target: str | None = None) -> StateKeyPair:
        """As ``by_name``, but a ``KeyError`` when there is no such one entry."""
        found = self.by_name(name, target)
        if found is None:
            raise KeyError(name)
        return found

    def names(self) -> list[str]:
        """The names of the entries, in the state's order (a name in two targets twice)."""
        return [a.name for a in self.keypairs]


# --- delivery of private keys to where they are used ----------------------------------------

CSMS_SINK, AGE_FILE_SINK = "csms", "age_file"


@dataclass(frozen=True, slots=True)
class DeliverySink:
    """One ``deliver:`` entry of a key pair: a CSMS secret, or a file encrypted with age.

    ``key`` is what names it within its kind: the secret's name, or the age file's path as the
    manifest writes it (``path`` is that path resolved against the manifest's directory)."""

    kind: str  # CSMS_SINK | AGE_FILE_SINK
    key: str
    location: SourceLocation = field(compare=False)
    kms_key_id: str | None = None  # csms: the KMS key the secret is encrypted under (None:
    #   csms/default; never empty)
    target: str | None = None  # csms: the target whose CSMS holds it (None: the key pair's)
    path: str | None = None  # age_file: absolute
    recipients: tuple[str, ...] = ()  # age_file: age1... recipients

    @property
    def id(self) -> str:
        """``csms:NAME`` or ``age_file:PATH``: the index of its delivery's address."""
        return f"{self.kind}:{self.key}"


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """What state records of one delivery: where, which key, when; never the secret."""

    sink: str  # DeliverySink.id
    target: str  # the target of the delivery's address (the sink's)
    fingerprint: str  # SHA256 fingerprint of the public half of the key delivered
    delivered: str  # RFC 3339, UTC
    version_id: str | None = None  # csms: the version that holds it
    digest: str | None = None  # age_file: sha256 of the file written
    path: str | None = None  # age_file: the file written (absolute)
    recipients: tuple[str, ...] = ()  # age_file: whom it was encrypted to
    kms_key_id: str | None = None  # csms: the key the manifest named (None: csms/default)


@dataclass(frozen=True, slots=True)
class SinkReading:
    """What a sink holds now: its current version (csms), or the file's digest (age_file);
    ``exists`` False when the secret or the file is gone."""

    exists: bool
    version_id: str | None = None
    digest: str | None = None
    # Why apply would not write there (age_file: a link, a directory, a file that is no age
    # file), so that the plan fails first: None when it may.
    refusal: str | None = None
