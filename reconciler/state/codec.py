"""The state document and journal formats: State <-> bytes, checked, authenticated, migrated.

The document is readable JSON (secrets are the only opaque values)::

    {"format_version": 3, "lineage": UUID, "serial": N,
     "key": {"id", "kdf", "salt"},
     "targets": {TARGET: {region, project_id, api, endpoint, credentials}},
     "keypairs": {ADDRESS: {api, source, algorithm, type, public_key, fingerprint_md5,
                            fingerprint_sha256, user_id, scope, description, key_protection,
                            prevent_destroy, created, spec_digest, status, private_key}},
     "checksum": "sha256:HEX", "mac": "hmac-sha256:HEX"}

``ADDRESS`` is the full address, target included (``keypair.web["default"]``), so every
entry says where it lives and adding a second target renames nothing; every target an entry
names has its connection under ``targets`` (how the run that wrote it reached it: never a
secret; ``credentials`` names a credential source; a field is null when not known yet).
Format 2 keyed entries by bare name and had no ``targets``; its secrets were bound to the
name. A state of this release holds one target (``StateCorruptError`` for a name in two).

Format 4 is format 3 sealed with a KMS data key: its key block also holds ``"kms": {"key_id",
"cipher_text"}`` (the wrapped data key, see ``kmskey``), and only it does. It is a format of
its own so that a release that cannot reach KMS says "upgrade reconciler" instead of taking
the file for a damaged one; a state sealed with a passphrase or a key file is still written as
format 3, which the previous release reads.

Both are computed over the same bytes, the canonical JSON (sorted keys, no spaces, ASCII) of
everything but ``checksum`` and ``mac`` (lineage and serial included):

- ``checksum`` (SHA-256) is kept so that a truncated or damaged file is told apart from a
  tampered one, and caught by readers that have no key (``plan`` in a pull request);
- ``mac`` (HMAC-SHA256 under a key derived from the state key, see ``crypto``, over
  ``"reconciler state\\x00" + body``) is what makes the state trustworthy: anyone can
  recompute a checksum, nobody without the key a MAC. ``verify_document`` checks it.

The file holds that canonical JSON itself, ``checksum`` and ``mac`` appended as its last
members, with a newline before each entry (one entry a line) and before the members after
them (``encode_document``): the newlines removed and the two members cut, its bytes are the
ones summed, so a reader checks them without encoding a 20 MB document again. Earlier
releases wrote the same value indented (``indent=2``); every layout is read, by encoding the
value again when its bytes are not the summed ones, and every release reads this one.

So every document since format 2 has a key block: the key is needed for every write (made on
the first write as for sealing; see ``crypto``), and only for writing or for a verified read.
Secrets also carry their own authentication (AES-GCM). Loading never repairs: anything wrong
is a ``StateCorruptError`` (``StateTamperedError`` for a MAC that does not match) saying what
to do. Older versions go through ``MIGRATIONS`` (one-step functions, applied in memory; the
file is rewritten only by the next commit, which also seals every secret again bound to its
address: see ``base``). Format 1 (release 0.1.0) had the checksum and no MAC: it is read,
never trusted as verified, and upgraded only by ``state upgrade``. Format 2 is authenticated:
its MAC is checked as read, and the next write migrates it.

``keep_private_key`` says "the same sealed private key as this entry has at this point": apply
records a generated key pair twice (pending, then ready), and the second line need not carry
the envelope again. Replay starts from the same base serial, so the reference always resolves.

A journal line is one canonical JSON object plus ``mac``, chained: the MAC of a line covers
the MAC of the line before it (or a seed naming the journal, for its first line), so a line
cannot be forged, changed, dropped from the middle, reordered or moved to another journal::

    {"v":3,"lineage":L,"base":SERIAL,"op":"record","address":A,"entry":{...},"mac":HEX}
    {"v":3,...,"op":"record","address":A,"entry":{...,"private_key":null},
     "keep_private_key":true,...}
    {"v":3,"lineage":L,"base":SERIAL,"op":"forget","address":A,"mac":HEX}
    {"v":3,"lineage":L,"base":SERIAL,"op":"key","key":{...},"mac":HEX}

``mac`` = HMAC(key, "reconciler journal\\x00" + previous + "\\x00" + canonical line).
A line that was never acknowledged (torn by a crash mid-append) is cut as before; an intact
line whose MAC fails is ``StateTamperedError``. Format 2 lines (``"v":2``, ``"name":N``: the
key pair in the default target) are read as before; format 1 lines (``"v":1`` with an
unkeyed ``sum``) only on top of a format 1 document.

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.address``,
``reconciler.state.crypto``, ``reconciler.state.kmskey``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from reconciler.address import DEFAULT_TARGET, KEYPAIR, Address, parse_address
from reconciler.errors import StateCorruptError, StateTamperedError
from reconciler.model import (
    MAX_GENERATION,
    NAME_PATTERN,
    Api,
    DeliveryRecord,
    Deposed,
    Encryption,
    EntryStatus,
    KeyProtection,
    KeySource,
    SealedSecret,
    State,
    StateKeyPair,
    TargetConnection,
    generation_name,
)
from reconciler.state.crypto import KeyBlock, StateKey
from reconciler.state.kmskey import KmsWrap

FORMAT_VERSION = 3
KMS_FORMAT_VERSION = 4  # format 3 with a KMS data key in its key block
JOURNAL_VERSION = 3
MAC_PREFIX = "hmac-sha256:"
_DOC_LABEL = b"reconciler state\x00"
_LINE_LABEL = b"reconciler journal\x00"
Migration = Callable[[dict[str, Any]], dict[str, Any]]


def _v1_to_v2(obj: dict[str, Any]) -> dict[str, Any]:
    """Format 1 has the same fields and no MAC; the MAC is added by the next write (it needs
    the key, which a migration does not have)."""
    return obj


def _v2_to_v3(obj: dict[str, Any]) -> dict[str, Any]:
    """Format 2 keyed entries by name, all in the one target the run had: they become the
    addresses of that target, ``default``, whose connection is not known yet (the next run
    that writes records its own). Secrets are sealed again by the next write (it needs the
    key)."""
    if "targets" in obj:
        raise ValueError("format 2 has no targets field")
    keypairs = obj.get("keypairs")
    if isinstance(keypairs, dict):
        obj["keypairs"] = {full_address(n, DEFAULT_TARGET): e for n, e in keypairs.items()}
        obj["targets"] = {DEFAULT_TARGET: connection_to_dict(TargetConnection())} \
            if keypairs else {}
    return obj


# from-version -> function returning the document at from-version + 1.
MIGRATIONS: Mapping[int, Migration] = {1: _v1_to_v2, 2: _v2_to_v3}

_E = TypeVar("_E", Api, KeySource, EntryStatus)
_NAME_RE = re.compile(NAME_PATTERN)
# A full address exactly as ``full_address`` writes it, name and target within their
# patterns: ``parse_address`` reads every such text to the same (name, target), and is asked
# only about other texts (which it may refuse, or read otherwise).
_FULL_ADDRESS = re.compile(r'keypair\.([A-Za-z0-9_-]{1,64})\["([a-z0-9][a-z0-9-]{0,62})"\]')
# Enum members by value: a dict lookup, where ``Enum(value)`` runs Python per entry.
_APIS: Mapping[str, Api] = {m.value: m for m in Api}
_SOURCES: Mapping[str, KeySource] = {m.value: m for m in KeySource}
_STATUSES: Mapping[str, EntryStatus] = {m.value: m for m in EntryStatus}
_REQUIRED_STR = ("public_key", "fingerprint_md5", "fingerprint_sha256", "created",
                 "spec_digest")
_OPTIONAL_STR = ("private_key", "algorithm", "type", "user_id", "scope", "description")
_DOC_FIELDS = ("format_version", "lineage", "serial", "key", "targets", "keypairs", "checksum",
               "mac")
_CONNECTION_FIELDS = ("region", "project_id", "api", "endpoint", "credentials")
_ENTRY_FIELDS = frozenset((
    "api", "source", "algorithm", "type", "public_key", "fingerprint_md5", "fingerprint_sha256",
    "user_id", "scope", "description", "key_protection", "prevent_destroy", "created",
    "spec_digest", "status", "private_key", "servers", "deliveries", "generation", "deposed",
))
_DEPOSED_FIELDS = ("cloud_name", "public_key", "fingerprint_md5", "fingerprint_sha256",
                   "private_key")


@dataclass(frozen=True, slots=True)
class StateDocument:
    """A decoded state file: the state, and which key sealed its secrets (if any).

    ``format_version`` is the version as read (before migration); ``mac`` and ``signed`` (the
    bytes it covers) are what ``verify_document`` checks, and ``raw`` the bytes as read. A
    document made in memory has none of them.
    """

    state: State
    key: KeyBlock | None = None
    format_version: int = FORMAT_VERSION
    mac: str | None = field(default=None, compare=False)
    signed: bytes = field(default=b"", repr=False, compare=False)
    raw: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One journal line: a change made on top of state ``lineage`` at serial ``base``."""

    lineage: str
    base: int
    op: str  # "record" | "forget" | "key"
    name: str | None = None
    target: str = DEFAULT_TARGET
    entry: StateKeyPair | None = None
    key: KeyBlock | None = None
    keep_private_key: bool = False  # entry.private_key is the one the entry already has
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    version: int = JOURNAL_VERSION
    tag: str = field(default="", compare=False)  # v2, v3: its MAC; v1: its sum (chained on)
    signed: bytes = field(default=b"", repr=False, compare=False)  # the canonical line body


def canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _body(doc: Mapping[str, Any]) -> bytes:
    return canonical({k: v for k, v in doc.items() if k not in ("checksum", "mac")})


def checksum(doc: Mapping[str, Any]) -> str:
    """The unkeyed checksum of a document (over everything but ``checksum`` and ``mac``)."""
    return _sha256(_body(doc))


def _sha256(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def document_mac(body: bytes, key: StateKey) -> str:
    return MAC_PREFIX + key.mac(_DOC_LABEL + body)


# --- addresses and targets ------------------------------------------------------------------


@functools.lru_cache(maxsize=1 << 16)  # every entry's, at each commit and seal
def full_address(name: str, target: str) -> str:
    """The address text an entry is keyed and its secret bound by: ``keypair.web["prod"]``."""
    return Address(target, KEYPAIR, name).display(qualified=True)


def parse_full_address(text: str, *, where: str) -> tuple[str, str]:
    """(name, target) of a full key pair address; ``ValueError`` for anything else."""
    strict = _FULL_ADDRESS.fullmatch(text)
    if strict is not None:  # what every writer writes; anything else takes the long way
        return strict[1], strict[2]
    try:
        query = parse_address(text)
    except ValueError:
        query = None
    if query is None or query.target is None or full_address(query.name, query.target) != text:
        raise ValueError(f"{where}: {text[:80]!r} is not a key pair address with its target "
                         '(keypair.NAME["TARGET"])')
    return query.name, query.target


def connection_to_dict(conn: TargetConnection) -> dict[str, str | None]:
    return {"region": conn.region, "project_id": conn.project_id, "api": conn.api,
            "endpoint": conn.endpoint, "credentials": conn.credentials}


def connection_from_dict(obj: object, *, where: str) -> TargetConnection:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: a target's connection must be an object")
    unknown = sorted(set(obj) - set(_CONNECTION_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}")
    values = {f: _opt_str(obj, f, where=where) for f in _CONNECTION_FIELDS}
    return TargetConnection(**values)


# --- entries ---------------------------------------------------------------------------------


def entry_to_dict(entry: StateKeyPair) -> dict[str, Any]:
    kp = entry.key_protection
    protection: dict[str, Any] | None = None
    if kp is not None:
        protection = {"encryption": kp.encryption.as_dict()}
        if kp.private_key_file is not None:
            protection["private_key_file"] = kp.private_key_file
    out: dict[str, Any] = {
        "api": entry.api.value,
        "source": entry.source.value,
        "algorithm": entry.algorithm,
        "type": entry.type,
        "public_key": entry.public_key,
        "fingerprint_md5": entry.fingerprint_md5,
        "fingerprint_sha256": entry.fingerprint_sha256,
        "user_id": entry.user_id,
        "scope": entry.scope,
        "description": entry.description,
        "key_protection": protection,
        "prevent_destroy": entry.prevent_destroy,
        "created": entry.created,
        "spec_digest": entry.spec_digest,
        "status": entry.status.value,
        "private_key": entry.private_key.envelope if entry.private_key else None,
        # only when there are some: an entry without deliveries is written as it always was
        **({"deliveries": [delivery_to_dict(d) for d in entry.deliveries]}
           if entry.deliveries else {}),
    }
    if entry.servers:  # written only when bound: an entry without bindings is as before
        out["servers"] = list(entry.servers)
    if entry.generation:  # written only once rotated so: other entries are as before
        out["generation"] = entry.generation
    if entry.deposed is not None:
        out["deposed"] = _deposed_to_dict(entry.deposed)
    return out


def _deposed_to_dict(d: Deposed) -> dict[str, Any]:
    return {"cloud_name": d.cloud_name, "public_key": d.public_key,
            "fingerprint_md5": d.fingerprint_md5, "fingerprint_sha256": d.fingerprint_sha256,
            "private_key": d.private_key.envelope if d.private_key else None}


def _generation_names(name: str) -> frozenset[str]:
    """Every name in the cloud a generation of key pair ``name`` may have."""
    return frozenset(generation_name(name, n) for n in range(MAX_GENERATION + 1))


def _generation(value: object, *, where: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_GENERATION:
        raise ValueError(f"{where}: must be a whole number from 0 to {MAX_GENERATION}")
    return value


def _deposed(value: object, name: str, generation: int, *, where: str) -> Deposed | None:
    """The previous generation of a key pair rotated without a gap (absent: none): its name
    in the cloud is exactly ``name`` or ``name-gN`` (N from 1 to 99, no leading zero), never
    the current generation's, so that its delete can reach no other key pair."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{where}: must be an object")
    unknown = sorted(set(value) - set(_DEPOSED_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}")
    cloud = _str(value, "cloud_name", where=where)
    if not _NAME_RE.fullmatch(cloud) or cloud not in _generation_names(name):
        raise ValueError(f"{where}.cloud_name: {cloud[:80]!r} is not a generation of {name!r}")
    if cloud == generation_name(name, generation):
        raise ValueError(f"{where}.cloud_name: {cloud[:80]!r} is the current generation of "
                         f"{name!r}, not a previous one")
    private_key = _opt_str(value, "private_key", where=where)
    return Deposed(cloud_name=cloud, public_key=_str(value, "public_key", where=where),
                   fingerprint_md5=_str(value, "fingerprint_md5", where=where),
                   fingerprint_sha256=_str(value, "fingerprint_sha256", where=where),
                   private_key=SealedSecret(private_key) if private_key is not None else None)


def entry_from_dict(name: str, obj: object, *, where: str,
                    target: str = DEFAULT_TARGET) -> StateKeyPair:
    """Typed entry from JSON; ``ValueError`` with the field at fault (the caller wraps it)."""
    entry = _sound_entry(name, obj, target)
    if entry is not None:
        return entry
    return _checked_entry(name, obj, where=where, target=target)


def _sound_entry(name: str, obj: object, target: str) -> StateKeyPair | None:
    """The entry when every field passes every check of ``_checked_entry``; None when one
    does not (``_checked_entry`` then says which). The same checks, made without building a
    message or a frame per field: a state holds tens of thousands of entries."""
    if type(obj) is not dict or not obj.keys() <= _ENTRY_FIELDS \
            or not _NAME_RE.fullmatch(name) or "servers" in obj or "deliveries" in obj \
            or "generation" in obj or "deposed" in obj:
        return None  # an entry with bindings, deliveries or generations (few): field by field
    get = obj.get
    for key in _REQUIRED_STR:
        if type(get(key)) is not str:
            return None
    for key in _OPTIONAL_STR:
        value = get(key)
        if value is not None and type(value) is not str:
            return None
    prevent = get("prevent_destroy", False)
    api, source, status = get("api"), get("source"), get("status")
    if type(prevent) is not bool or type(api) is not str or type(source) is not str \
            or (status is not None and type(status) is not str):
        return None
    api, source = _APIS.get(api), _SOURCES.get(source)
    status = EntryStatus.READY if status is None else _STATUSES.get(status)
    if api is None or source is None or status is None:
        return None
    protection = get("key_protection")
    if protection is not None:
        try:
            protection = _protection(protection, where="")
        except ValueError:
            return None
    private_key = get("private_key")
    entry = _new_entry(StateKeyPair)
    for set_slot, value in zip(_ENTRY_SLOTS, (
            name, api, source, obj["public_key"], obj["fingerprint_md5"],
            obj["fingerprint_sha256"], obj["created"], obj["spec_digest"], get("algorithm"),
            get("type") or "ssh", get("user_id"), get("scope"), get("description"), protection,
            SealedSecret(private_key) if private_key is not None else None, status, prevent,
            target, (), (), 0, None), strict=True):
        set_slot(entry, value)
    return entry


# ``_sound_entry`` sets an entry's slots itself, in this order: the dataclass ``__init__``
# (keywords, one frozen ``object.__setattr__`` a field) takes twice as long, and a state
# holds tens of thousands of entries. Every field is here (checked as this module loads), so
# an entry built so is one ``StateKeyPair(...)`` would build.
_ENTRY_ORDER = ("name", "api", "source", "public_key", "fingerprint_md5", "fingerprint_sha256",
                "created", "spec_digest", "algorithm", "type", "user_id", "scope",
                "description", "key_protection", "private_key", "status", "prevent_destroy",
                "target", "servers", "deliveries", "generation", "deposed")
if sorted(_ENTRY_ORDER) != sorted(f.name for f in fields(StateKeyPair)):
    raise ImportError("codec._ENTRY_ORDER must name every field of StateKeyPair")
_ENTRY_SLOTS = tuple(getattr(StateKeyPair, n).__set__ for n in _ENTRY_ORDER)
_new_entry = object.__new__


def _checked_entry(name: str, obj: object, *, where: str, target: str) -> StateKeyPair:
    """``entry_from_dict`` field by field, each problem said with its field."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"{where}: invalid key pair name {name!r}")
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: an entry must be an object")
    unknown = sorted(set(obj) - _ENTRY_FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}")
    private_key = _opt_str(obj, "private_key", where=where)
    prevent = obj.get("prevent_destroy", False)
    if not isinstance(prevent, bool):
        raise ValueError(f"{where}.prevent_destroy: must be true or false")
    generation = _generation(obj.get("generation", 0), where=f"{where}.generation")
    return StateKeyPair(
        name=name,
        api=_enum(Api, obj, "api", where=where),
        source=_enum(KeySource, obj, "source", where=where),
        public_key=_str(obj, "public_key", where=where),
        fingerprint_md5=_str(obj, "fingerprint_md5", where=where),
        fingerprint_sha256=_str(obj, "fingerprint_sha256", where=where),
        created=_str(obj, "created", where=where),
        spec_digest=_str(obj, "spec_digest", where=where),
        algorithm=_opt_str(obj, "algorithm", where=where),
        type=_opt_str(obj, "type", where=where) or "ssh",
        user_id=_opt_str(obj, "user_id", where=where),
        scope=_opt_str(obj, "scope", where=where),
        description=_opt_str(obj, "description", where=where),
        key_protection=_protection(obj.get("key_protection"), where=f"{where}.key_protection"),
        private_key=SealedSecret(private_key) if private_key is not None else None,
        status=_enum(EntryStatus, obj, "status", where=where, default=EntryStatus.READY),
        prevent_destroy=prevent,
        target=target,
        servers=_servers(obj.get("servers", []), where=f"{where}.servers"),
        deliveries=deliveries_from(obj.get("deliveries", []), where=f"{where}.deliveries"),
        generation=generation,
        deposed=_deposed(obj.get("deposed"), name, generation, where=f"{where}.deposed"),
    )


def _servers(value: object, *, where: str) -> tuple[str, ...]:
    """The ECS server ids an entry is bound to (absent in entries without bindings)."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) \
            or len(set(value)) != len(value):
        raise ValueError(f"{where}: must be a list of distinct server ids")
    return tuple(sorted(value))


_DELIVERY_FIELDS = ("sink", "target", "fingerprint", "delivered", "version_id", "digest",
                    "path", "recipients", "kms_key_id")


def delivery_to_dict(record: DeliveryRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"sink": record.sink, "target": record.target,
                           "fingerprint": record.fingerprint, "delivered": record.delivered}
    for key in ("version_id", "digest", "path", "kms_key_id"):
        if getattr(record, key) is not None:
            out[key] = getattr(record, key)
    if record.recipients:
        out["recipients"] = list(record.recipients)
    return out


def deliveries_from(raw: object, *, where: str) -> tuple[DeliveryRecord, ...]:
    """The delivery records of an entry; ``ValueError`` naming the field at fault."""
    if not isinstance(raw, list):
        raise ValueError(f"{where}: must be a list")
    out = []
    for index, obj in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(obj, dict):
            raise ValueError(f"{at}: must be an object")
        unknown = sorted(set(obj) - set(_DELIVERY_FIELDS))
        if unknown:
            raise ValueError(f"{at}: unknown field {unknown[0]!r}")
        recipients = obj.get("recipients", [])
        if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
            raise ValueError(f"{at}.recipients: must be a list of strings")
        out.append(DeliveryRecord(
            sink=_str(obj, "sink", where=at), target=_str(obj, "target", where=at),
            fingerprint=_str(obj, "fingerprint", where=at),
            delivered=_str(obj, "delivered", where=at),
            version_id=_opt_str(obj, "version_id", where=at),
            digest=_opt_str(obj, "digest", where=at), path=_opt_str(obj, "path", where=at),
            recipients=tuple(recipients), kms_key_id=_opt_str(obj, "kms_key_id", where=at)))
    return tuple(out)


def _str(obj: Mapping[str, Any], key: str, *, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{where}.{key}: must be a string")
    return value


def _opt_str(obj: Mapping[str, Any], key: str, *, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{where}.{key}: must be a string or null")
    return value


def _enum(
    cls: type[_E], obj: Mapping[str, Any], key: str, *, where: str, default: _E | None = None
) -> _E:
    value = obj.get(key)
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{where}.{key}: must be a string")
    try:
        return cls(value)
    except ValueError:
        raise ValueError(f"{where}.{key}: unknown value {value!r}") from None


def _protection(obj: object, *, where: str) -> KeyProtection | None:
    if obj is None:
        return None
    if not isinstance(obj, dict) or set(obj) - {"encryption", "private_key_file"}:
        raise ValueError(f"{where}: must be {{encryption, private_key_file?}} or null")
    enc = obj.get("encryption")
    if not isinstance(enc, dict) or set(enc) - {"type", "kms_key_name", "kms_key_id"}:
        raise ValueError(f"{where}.encryption: must be {{type, kms_key_name?, kms_key_id?}}")
    encryption = Encryption(
        type=_str(enc, "type", where=f"{where}.encryption"),
        kms_key_name=_opt_str(enc, "kms_key_name", where=f"{where}.encryption"),
        kms_key_id=_opt_str(enc, "kms_key_id", where=f"{where}.encryption"),
    )
    return KeyProtection(
        encryption=encryption,
        private_key_file=_opt_str(obj, "private_key_file", where=where),
    )


def key_block_from(obj: object, *, where: str) -> KeyBlock | None:
    if obj is None:
        return None
    if not isinstance(obj, dict) or set(obj) - {"id", "kdf", "salt", "kms"}:
        raise ValueError(f"{where}: must be {{id, kdf, salt, kms?}} or null")
    kid, kdf, salt = obj.get("id"), obj.get("kdf"), obj.get("salt")
    if not isinstance(kid, str) or not re.fullmatch(r"[0-9a-f]{16}", kid):
        raise ValueError(f"{where}.id: must be 16 hex digits")
    if kdf is not None and not (isinstance(kdf, dict) and kdf.get("name") == "scrypt"):
        raise ValueError(f"{where}.kdf: must be null or a scrypt parameter object")
    if salt is not None and not isinstance(salt, str):
        raise ValueError(f"{where}.salt: must be a string or null")
    kms = KmsWrap.from_dict(obj["kms"], where=f"{where}.kms") if "kms" in obj else None
    if kms is not None and (kdf is not None or salt is not None):
        raise ValueError(f"{where}: a KMS data key has no kdf and no salt")
    return KeyBlock(id=kid, kdf=kdf, salt=salt, kms=kms)


# --- documents -------------------------------------------------------------------------------


def document_to_dict(doc: StateDocument, *, key: StateKey) -> dict[str, Any]:
    """The format 3 document, authenticated with ``key`` (which must be the key of its block:
    a document is written only by someone who holds its key). Every envelope must be a
    current one (bound to its address: the store seals older ones again first)."""
    out = _unsigned_document(doc, key=key)
    body = _body(out)
    out["checksum"] = _sha256(body)
    out["mac"] = document_mac(body, key)
    return out


def _unsigned_document(doc: StateDocument, *, key: StateKey) -> dict[str, Any]:
    """``document_to_dict`` without ``checksum`` and ``mac``."""
    if doc.key is None or doc.key.id != key.id:
        raise ValueError("a state document is authenticated with the key of its own key block")
    state = doc.state
    entries = {full_address(e.name, e.target): e for e in state.keypairs.values()}
    targets = dict(state.targets)
    for e in state.keypairs.values():
        targets.setdefault(e.target, TargetConnection())
    return {
        "format_version": KMS_FORMAT_VERSION if doc.key.kms is not None else FORMAT_VERSION,
        "lineage": state.lineage,
        "serial": state.serial,
        "key": doc.key.as_dict(),
        "targets": {t: connection_to_dict(targets[t]) for t in sorted(targets)},
        "keypairs": {a: entry_to_dict(entries[a]) for a in sorted(entries)},
    }


def encode_document(doc: StateDocument, *, key: StateKey) -> bytes:
    """The document as stored: its canonical JSON (the bytes the checksum and MAC cover)
    with ``checksum`` and ``mac`` appended as its last members, and a newline before each
    entry and before each top-level member after the entries, ending in a newline. ASCII
    only: a description holding a terminal control or a bidi override is stored as its
    ``\\u`` escape, so the file is safe to ``cat`` and ``state pull``.

    Canonical JSON holds no newline byte (``json`` escapes every control character in a
    string), so removing the newlines gives back exactly the signed bytes: a reader checks
    the checksum and MAC over them without encoding the document again (``_stored_body``).
    Any JSON reader reads the file as before: the newlines are whitespace between tokens."""
    out = _unsigned_document(doc, key=key)
    body = _body(out)
    return (_with_newlines(body)[:-1] + b',\n"checksum":' + canonical(_sha256(body))
            + b',"mac":' + canonical(document_mac(body, key)) + b"}\n")


def _with_newlines(body: bytes) -> bytes:
    """``body`` (canonical JSON) with a newline after the comma or brace before each entry
    and before ``lineage`` and ``targets``: one entry a line.

    Each newline goes after a ``,`` or ``{`` that is followed by ``"`` and a letter. Such a
    byte is never inside a string: a ``"`` there would end the string (canonical JSON escapes
    every other quote), and in canonical JSON a string is followed by ``:``, ``,``, ``]`` or
    ``}``, never by a letter. So every newline is whitespace between two tokens."""
    return (body.replace(b',"keypair.', b',\n"keypair.')
            .replace(b'{"keypair.', b'{\n"keypair.')
            .replace(b'},"lineage":', b'},\n"lineage":')
            .replace(b',"targets":{', b',\n"targets":{'))


# The last members of a document as ``encode_document`` stores it (its newlines removed).
_STORED_SUMS = re.compile(
    rb',"checksum":"(sha256:[0-9a-f]{64})","mac":"(hmac-sha256:[0-9a-f]{64})"}\Z')


def _stored_body(data: bytes, obj: Mapping[str, Any]) -> bytes | None:
    """The bytes that a document stored by ``encode_document`` says its checksum and MAC
    cover: ``data`` without its newlines and its two last members; ``None`` for any other
    layout (files of earlier releases, or edited), which the caller encodes again instead.

    When ``data`` parsed as a JSON object without duplicate keys (the caller did that), the
    object these bytes hold is that object without ``checksum`` and ``mac``: its newlines are
    whitespace between tokens (a newline inside a string is not JSON), and the two members
    cut are its last ones at the top level (no other place in an object's text can be
    followed by them and one last ``}``). So what the checksum and MAC are checked over is
    what is read."""
    flat = data.replace(b"\n", b"")
    sums = _STORED_SUMS.search(flat, max(0, len(flat) - 256))
    if sums is None or obj.get("checksum") != sums[1].decode() \
            or obj.get("mac") != sums[2].decode():
        return None
    return flat[:sums.start()] + b"}"


def ascii_document(data: bytes, *, source: str) -> bytes:
    """``data`` (a state document as read) with every non-ASCII character escaped: the same
    JSON value, so it decodes to the same state, checksum and MAC. Files written before
    ``encode_document`` wrote ASCII hold such characters raw; ASCII input is returned as is."""
    if data.isascii():
        return data
    obj = _parse_object(data, source=source)
    return (json.dumps(obj, indent=2, ensure_ascii=True) + "\n").encode()


def verify_document(doc: StateDocument, *, key: StateKey, source: str) -> None:
    """``StateTamperedError`` unless a format 2 or 3 document's MAC is that of its bytes under
    ``key`` (the key its block names: the caller resolved it, so a wrong key was already
    refused by its id)."""
    if doc.format_version < 2:
        return  # format 1 has no MAC; the caller reports it as read unverified
    expected = document_mac(doc.signed, key)
    if doc.mac is None or not hmac.compare_digest(expected, doc.mac):
        raise StateTamperedError(
            f"{source} failed its integrity check: its contents do not match the MAC that "
            f"reconciler wrote with them under the state key ({key.id}), so they were changed "
            "by something that does not hold the key. Nothing was changed. Find out who wrote "
            f"it, then restore it from {source}.backup (the previous version) or from version "
            "control."
        )


def decode_document(
    data: bytes, *, source: str, migrations: Mapping[int, Migration] = MIGRATIONS
) -> StateDocument:
    """Parse, check and migrate a state document; ``StateCorruptError`` for anything wrong."""
    obj = _parse_object(data, source=source)
    version = obj.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _corrupt(source, "it has no integer format_version")
    if version > KMS_FORMAT_VERSION:
        raise StateCorruptError(
            f"{source} has format_version {version}, newer than this reconciler reads "
            f"(up to {KMS_FORMAT_VERSION}): upgrade reconciler. The file was not changed."
        )
    stored = _stored_body(data, obj)
    if stored is not None and obj.get("checksum") == _sha256(stored):
        body = stored
    else:
        # any other layout, or bytes that are not the ones summed: the canonical form of
        # what was read, as every release computes it
        body = _body(obj)
        if obj.get("checksum") != _sha256(body):
            raise _corrupt(
                source,
                "its checksum does not match its contents: it was truncated or edited by hand",
            )
    mac = obj.get("mac")
    if version >= 2 and (not isinstance(mac, str) or not mac.startswith(MAC_PREFIX)
                         or obj.get("key") is None):
        raise _corrupt(source, f"it has no integrity MAC or no key block, which format "
                               f"{version} requires: it was edited by hand")
    if version < 2 and "mac" in obj:
        raise _corrupt(source, f"format_version {version} has no mac field")
    obj = _migrate(obj, version=version, source=source, migrations=migrations)
    try:
        doc = _document_from(obj)
    except ValueError as exc:
        raise _corrupt(source, str(exc)) from None
    if (version == KMS_FORMAT_VERSION) != (doc.key is not None and doc.key.kms is not None):
        raise _corrupt(source, f"format_version {version} " + (
            "is sealed with a KMS data key, but its key block names none"
            if version == KMS_FORMAT_VERSION else "holds a KMS data key, which only format 4 "
            "has"))
    return StateDocument(doc.state, doc.key, format_version=version,
                         mac=mac if isinstance(mac, str) else None, signed=body, raw=data)


def _parse_object(data: bytes, *, source: str) -> dict[str, Any]:
    try:
        obj = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise _corrupt(source, "it is not UTF-8 text") from None
    except ValueError as exc:
        raise _corrupt(source, f"it is not valid JSON, perhaps truncated ({exc})") from None
    if not isinstance(obj, dict):
        raise _corrupt(source, "it is not a JSON object")
    return obj


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):  # a key given twice: name the first one repeated
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return out


def _migrate(
    obj: dict[str, Any], *, version: int, source: str, migrations: Mapping[int, Migration]
) -> dict[str, Any]:
    while version < FORMAT_VERSION:
        step = migrations.get(version)
        if step is None:
            raise StateCorruptError(
                f"{source} has format_version {version}, which this reconciler cannot read or "
                "migrate; use the reconciler release that wrote it. The file was not changed."
            )
        try:
            obj = step(dict(obj))
        except ValueError as exc:
            raise _corrupt(source, str(exc)) from None
        version += 1
        obj["format_version"] = version
    return obj


def _document_from(obj: Mapping[str, Any]) -> StateDocument:
    unknown = sorted(set(obj) - set(_DOC_FIELDS))
    if unknown:
        raise ValueError(f"unknown top-level field {unknown[0]!r}")
    lineage, serial, keypairs = obj.get("lineage"), obj.get("serial"), obj.get("keypairs")
    if not isinstance(lineage, str) or not lineage:
        raise ValueError("lineage: must be a non-empty string")
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
        raise ValueError("serial: must be a non-negative integer")
    if not isinstance(keypairs, dict):
        raise ValueError("keypairs: must be an object")
    raw_targets = obj.get("targets")
    if not isinstance(raw_targets, dict):
        raise ValueError("targets: must be an object")
    targets = {t: connection_from_dict(c, where=f"targets.{t}") for t, c in raw_targets.items()}
    entries: dict[Address, StateKeyPair] = {}
    for address, value in keypairs.items():
        strict = _FULL_ADDRESS.fullmatch(address)
        if strict is not None:
            name, target = strict[1], strict[2]
        else:
            name, target = parse_full_address(address, where=f"keypairs.{address}")
        if target not in targets:
            raise ValueError(f"keypairs.{address}: its target {target!r} is not under targets")
        entry = _sound_entry(name, value, target)
        if entry is None:
            entry = _checked_entry(name, value, where=f"keypairs.{address}", target=target)
        entries[Address(target, KEYPAIR, name)] = entry
    state = State(lineage=lineage, serial=serial, keypairs=entries,
                  format_version=FORMAT_VERSION, targets=targets)
    return StateDocument(state=state, key=key_block_from(obj.get("key"), where="key"))


def _corrupt(source: str, what: str) -> StateCorruptError:
    return StateCorruptError(
        f"{source} is not a valid state file: {what}. It was not changed. Restore it from "
        f"{source}.backup (the previous version) or from version control; if its secrets will "
        "not decrypt, check RECONCILER_PASSPHRASE or RECONCILER_KEY_FILE."
    )


# --- journal ---------------------------------------------------------------------------------


def encode_journal_line(
    *, lineage: str, base: int, op: str, mac_key: StateKey, previous: str,
    name: str | None = None, target: str = DEFAULT_TARGET, entry: StateKeyPair | None = None,
    key: KeyBlock | None = None, keep_private_key: bool = False,
) -> tuple[bytes, str]:
    """One newline-terminated journal line, and its MAC (the ``previous`` of the next line).
    Serialises only the one entry it carries; ``name`` in ``target`` is its address."""
    obj: dict[str, Any] = {"v": JOURNAL_VERSION, "lineage": lineage, "base": base, "op": op}
    if name is not None:
        obj["address"] = full_address(name, target)
    if entry is not None:
        obj["entry"] = entry_to_dict(entry)
        if keep_private_key:
            obj["entry"]["private_key"] = None
            obj["keep_private_key"] = True
    if key is not None:
        obj["key"] = key.as_dict()
    body = canonical(obj)
    tag = line_mac(body, key=mac_key, previous=previous)
    # the MAC appended as the last member: readers take it out and sign the rest again
    # canonically (``_journal_record``), so where it sits is not part of the format
    return body[:-1] + b',"mac":"' + tag.encode("ascii") + b'"}\n', tag


def line_mac(body: bytes, *, key: StateKey, previous: str) -> str:
    return key.mac(_LINE_LABEL + previous.encode("ascii", "replace") + b"\x00" + body)


def decode_journal(data: bytes, *, source: str) -> tuple[list[JournalRecord], int]:
    """Records, and the length of the intact prefix (``verify_journal`` checks the MACs).

    A last line without its newline is a torn append (a crash mid-write) and is ignored;
    any other bad line is ``StateCorruptError``.
    """
    end = data.rfind(b"\n") + 1
    records = []
    for number, line in enumerate(data[:end].splitlines(), start=1):
        try:
            records.append(_journal_record(line))
        except ValueError as exc:
            raise StateCorruptError(
                f"{source} line {number} is damaged ({exc}). The state file itself was not "
                f"changed. Moving {source} aside loads the state without the changes it holds, "
                "which may include private keys: keep a copy."
            ) from None
    return records, end


def verify_journal(records: list[JournalRecord], *, key: StateKey, seed: str,
                   source: str) -> str:
    """``StateTamperedError`` unless every keyed line's MAC chains from ``seed``; returns
    the last line's tag (what the next appended line chains on)."""
    previous = seed
    for number, rec in enumerate(records, start=1):
        if rec.version >= 2 and not hmac.compare_digest(
                line_mac(rec.signed, key=key, previous=previous), rec.tag):
            raise StateTamperedError(
                f"{source} line {number} failed its integrity check: it was not written by "
                f"reconciler with the state key ({key.id}) in this place (forged, changed, "
                "reordered, or lines before it removed). Nothing was changed. Move "
                f"{source} aside and keep it (it may hold private keys), find out who wrote "
                "it, and restore the state from its backup if it was changed too."
            )
        previous = rec.tag
    return previous


def _journal_record(line: bytes) -> JournalRecord:
    obj = _parse_line(line)
    version = obj.get("v")
    if version == 1:
        tag = obj.pop("sum", None)
        signed = canonical(obj)
        if tag != hashlib.sha256(signed).hexdigest():
            raise ValueError("checksum mismatch")
    elif version in (2, JOURNAL_VERSION):
        tag = obj.pop("mac", None)
        if not isinstance(tag, str) or not re.fullmatch(r"[0-9a-f]{64}", tag):
            raise ValueError("no mac")
        signed = canonical(obj)
    else:
        raise ValueError(f"journal version {version!r}; upgrade reconciler")
    assert isinstance(tag, str)
    lineage, base, op = obj.get("lineage"), obj.get("base"), obj.get("op")
    if not isinstance(lineage, str) or not isinstance(base, int) or isinstance(base, bool):
        raise ValueError("lineage or base missing")
    common: dict[str, Any] = {"raw": obj, "version": version, "tag": tag, "signed": signed}
    if op == "key":
        return JournalRecord(lineage, base, op, key=key_block_from(obj.get("key"), where="key"),
                             **common)
    name, target = _line_address(obj, version=version)
    common["target"] = target
    if op == "forget":
        return JournalRecord(lineage, base, op, name=name, **common)
    if op == "record":
        entry = entry_from_dict(name, obj.get("entry"), where=f"entry {name}", target=target)
        keep = obj.get("keep_private_key", False)
        if not isinstance(keep, bool) or (keep and entry.private_key is not None):
            raise ValueError("bad keep_private_key")
        return JournalRecord(lineage, base, op, name=name, entry=entry, keep_private_key=keep,
                             **common)
    raise ValueError(f"unknown operation {op!r}")


def _line_address(obj: Mapping[str, Any], *, version: int) -> tuple[str, str]:
    """(name, target) a line is about: a v3 line names its address, older ones a bare name
    (the key pair in the one target a state then had)."""
    if version >= 3:
        address = obj.get("address")
        if not isinstance(address, str) or "name" in obj:
            raise ValueError("address missing")
        return parse_full_address(address, where="address")
    name = obj.get("name")
    if not isinstance(name, str) or "address" in obj:
        raise ValueError("name missing")
    return name, DEFAULT_TARGET


def _parse_line(line: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        raise ValueError("not JSON") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj
