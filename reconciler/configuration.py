"""The desired configuration as canonical records, and the digests that pin it.

A saved plan embeds every desired key pair (public material and paths, never a private key)
and a digest over them. ``apply PLANFILE`` rebuilds the key pairs from those records, checking
each one as strictly as the manifest loader does, and recomputes the digest; with manifests
given, it compares the digest of the manifests with the plan's.

The digest is sha256 over the canonical JSON (sorted keys, no spaces) of the records sorted by
name, without ``location`` (where a manifest sits on disk is not configuration) and without
``spec_digest`` (derived from the rest, and recomputed here). When the manifests declare
several targets, where each key pair lives is configuration too: its records carry their
``targets`` and the digest covers them and the declared target names, in order (with one
target or none, the records and the digest are as they always were). The ``import:`` list,
when there is one, is configuration too: its addresses, sorted, join the rows (a configuration
without one keeps the digest it always had).

May import: ``reconciler.model``, ``reconciler.keys``, ``reconciler.errors``,
``reconciler.address``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from reconciler import keys
from reconciler.address import is_target_name, parse_address
from reconciler.errors import KeyFormatError
from reconciler.model import (
    AGE_FILE_SINK,
    CSMS_SINK,
    GENERATE_ALGORITHMS,
    DeliverySink,
    DesiredKeyPair,
    Encryption,
    ImportRequest,
    KeyProtection,
    KeySource,
    SourceLocation,
)

SAVED_PLAN_LOCATION = "<saved plan>"


def spec_digest(
    *, source: KeySource, algorithm: str | None, public_key: str | None, type: str,
    user_id: str | None, scope: str | None, key_protection: KeyProtection | None,
) -> str:
    """sha256 hex over the canonical JSON of what cannot change in place (``public_key``
    normalised: ``type base64``)."""
    return _digest(source, algorithm, public_key, type, user_id, scope,
                   key_protection.encryption if key_protection else None)


@lru_cache(maxsize=1024)
def _digest(source: KeySource, algorithm: str | None, public_key: str | None, type: str,
            user_id: str | None, scope: str | None, encryption: Encryption | None) -> str:
    """``spec_digest``, once per distinct spec: most key pairs of a large manifest share one
    (``generate: ed25519``, nothing else), and each costs a JSON encoding and a hash."""
    spec = {
        "source": str(source),
        "algorithm": algorithm,
        "public_key": public_key,
        "type": type,
        "user_id": user_id,
        "scope": scope,
        "key_protection": encryption.as_dict() if encryption is not None else None,
    }
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def desired_to_dict(d: DesiredKeyPair, *, placement: bool = False) -> dict[str, Any]:
    """A desired key pair in full (public material and paths only), for saved plans;
    ``placement``: with the targets it lists (a plan of several targets)."""
    kp = None
    if d.key_protection is not None:
        kp = {"encryption": d.key_protection.encryption.as_dict(),
              "private_key_file": d.key_protection.private_key_file}
    return {
        "name": d.name, "source": d.source.value, "spec_digest": d.spec_digest,
        "location": [d.location.file, d.location.line, d.location.column],
        "algorithm": d.algorithm, "public_key": d.public_key,
        "public_key_file": d.public_key_file, "type": d.type, "user_id": d.user_id,
        "description": d.description, "scope": d.scope, "key_protection": kp,
        "prevent_destroy": d.prevent_destroy, "rotate_after_seconds": d.rotate_after_seconds,
        **({"targets": list(d.targets)} if placement else {}),
        # only when there are some: a configuration without deliver: keeps its digest
        **({"deliver": [sink_to_dict(s) for s in d.deliver]} if d.deliver else {}),
    }


def sink_to_dict(sink: DeliverySink) -> dict[str, Any]:
    """One ``deliver:`` entry, for saved plans (paths and public keys only)."""
    loc = sink.location
    body: dict[str, Any] = ({"secret": sink.key, "kms_key_id": sink.kms_key_id,
                             "target": sink.target} if sink.kind == CSMS_SINK else
                            {"path": sink.key, "resolved": sink.path,
                             "recipients": list(sink.recipients)})
    return {sink.kind: body, "location": [loc.file, loc.line, loc.column]}


def sink_from_dict(raw: object) -> DeliverySink:
    """A ``deliver:`` entry from its saved-plan record; ``ValueError`` when malformed."""
    if not isinstance(raw, dict) or set(raw) - {CSMS_SINK, AGE_FILE_SINK, "location"}:
        raise ValueError("not a delivery record")
    location = _location(raw.get("location"))
    csms, age = raw.get(CSMS_SINK), raw.get(AGE_FILE_SINK)
    if isinstance(csms, dict) and age is None:
        target = _text(csms, "target")
        if target is not None and not is_target_name(target):
            raise ValueError("a delivery's target is not a target name")
        return DeliverySink(kind=CSMS_SINK, key=str(_text(csms, "secret", required=True)),
                            location=location, kms_key_id=_text(csms, "kms_key_id"),
                            target=target)
    if isinstance(age, dict) and csms is None:
        recipients = age.get("recipients")
        if not isinstance(recipients, list) or not recipients or \
                not all(isinstance(r, str) and r.startswith("age1") for r in recipients):
            raise ValueError("a delivery's recipients are not age recipients")
        return DeliverySink(kind=AGE_FILE_SINK, key=str(_text(age, "path", required=True)),
                            location=location, path=_text(age, "resolved", required=True),
                            recipients=tuple(recipients))
    raise ValueError("a delivery record is neither csms nor age_file")


def configuration_digest(keypairs: Iterable[DesiredKeyPair],
                         targets: Sequence[str] = (),
                         imports: Iterable[ImportRequest] = ()) -> str:
    """The digest of a whole configuration (see the module docstring); ``targets``: the
    declared targets, in order, when there are several (then where each key pair lives is
    covered too); ``imports``: the import: lists."""
    rows: list[object] = []
    for d in sorted(keypairs, key=lambda k: k.name):
        row = desired_to_dict(d, placement=len(targets) > 1)
        del row["location"], row["spec_digest"]
        rows.append(row)
    addresses = sorted(i.to for i in imports)
    if addresses:
        rows.append({"import": addresses})
    shape: object = (rows if len(targets) <= 1
                     else {"targets": list(targets), "keypairs": rows})
    canonical = json.dumps(shape, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def import_to_dict(request: ImportRequest) -> dict[str, Any]:
    """An ``import:`` entry, for saved plans."""
    loc = request.location
    return {"to": request.to, "location": [loc.file, loc.line, loc.column]}


def import_from_dict(raw: object) -> ImportRequest:
    """An ``import:`` entry from its saved-plan record; ``ValueError`` when malformed."""
    if not isinstance(raw, dict) or not isinstance(raw.get("to"), str):
        raise ValueError("not an import record")
    if str(parse_address(raw["to"])) != raw["to"]:  # AddressSyntaxError is a ValueError
        raise ValueError("an import record of another form than the loader writes")
    return ImportRequest(to=raw["to"], location=_location(raw.get("location")))


def legacy_digest(keypairs: Iterable[DesiredKeyPair]) -> str:
    """The manifest digest as release 0.1.0 computed it (its saved plans carry this one)."""
    rows = sorted(
        [kp.name, kp.spec_digest, kp.description, kp.prevent_destroy, kp.rotate_after_seconds]
        for kp in keypairs
    )
    canonical = json.dumps(rows, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _text(raw: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value


def _protection(raw: object) -> KeyProtection | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("encryption"), dict):
        raise ValueError("key_protection is not an object with an encryption")
    enc = raw["encryption"]
    if set(enc) - {"type", "kms_key_name", "kms_key_id"}:
        raise ValueError("key_protection.encryption has unknown fields")
    encryption = Encryption(type=str(_text(enc, "type", required=True)),
                            kms_key_name=_text(enc, "kms_key_name"),
                            kms_key_id=_text(enc, "kms_key_id"))
    return KeyProtection(encryption=encryption,
                         private_key_file=_text(raw, "private_key_file"))


def _public_key(raw: Mapping[str, Any], source: KeySource, key_type: str) -> str | None:
    """The embedded public key, checked as the loader checks it; its normalised form."""
    public_key = _text(raw, "public_key")
    if (public_key is None) != (source is not KeySource.IMPORT):
        raise ValueError("public_key does not fit the key source")
    if public_key is None:
        return None
    if keys.looks_like_private_key(public_key):
        raise ValueError("public_key holds a private key")
    try:
        return keys.check_public_key(public_key, key_type=key_type).openssh
    except KeyFormatError:
        raise ValueError("public_key is not a valid public key") from None


def desired_from_dict(name: str, raw: object) -> DesiredKeyPair:
    """A desired key pair from its saved-plan record; ``ValueError`` (never naming key
    material) when the record is malformed or inconsistent."""
    if not isinstance(raw, dict) or raw.get("name") != name:
        raise ValueError("not a key pair record of this name")
    source = KeySource(str(_text(raw, "source", required=True)))
    key_type = _text(raw, "type") or "ssh"
    if key_type not in ("ssh", "x509"):
        raise ValueError("type is not ssh or x509")
    algorithm = _text(raw, "algorithm")
    if (algorithm is not None) != (source is KeySource.GENERATE) or \
            (algorithm is not None and algorithm not in GENERATE_ALGORITHMS):
        raise ValueError("algorithm does not fit the key source")
    normalised = _public_key(raw, source, key_type)
    protection = _protection(raw.get("key_protection"))
    if protection is not None and protection.private_key_file is not None \
            and source is not KeySource.IMPORT:
        raise ValueError("private_key_file without a public key")
    rotate = raw.get("rotate_after_seconds")
    if rotate is not None and (not isinstance(rotate, int) or isinstance(rotate, bool)
                               or rotate <= 0):
        raise ValueError("rotate_after_seconds is not a positive integer")
    prevent = raw.get("prevent_destroy", False)
    if not isinstance(prevent, bool):
        raise ValueError("prevent_destroy is not a boolean")
    user_id, scope = _text(raw, "user_id"), _text(raw, "scope")
    digest = spec_digest(source=source, algorithm=algorithm, public_key=normalised,
                         type=key_type, user_id=user_id, scope=scope, key_protection=protection)
    if raw.get("spec_digest") != digest:
        raise ValueError("spec_digest does not match the record")
    return DesiredKeyPair(
        name=name, source=source, location=_location(raw.get("location")),
        spec_digest=digest, algorithm=algorithm, public_key=_text(raw, "public_key"),
        public_key_file=_text(raw, "public_key_file"), type=key_type, user_id=user_id,
        description=_text(raw, "description"), scope=scope, key_protection=protection,
        prevent_destroy=prevent, rotate_after_seconds=rotate,
        targets=_targets(raw.get("targets", [])),
        deliver=tuple(sink_from_dict(s) for s in _list(raw.get("deliver", []))),
    )


def _list(raw: object) -> list[object]:
    if not isinstance(raw, list):
        raise ValueError("deliver is not a list")
    return raw


def _targets(raw: object) -> tuple[str, ...]:
    """The targets a key pair lists (a plan of several targets records them)."""
    if not isinstance(raw, list) or not all(
            isinstance(t, str) and is_target_name(t) for t in raw) or len(set(raw)) != len(raw):
        raise ValueError("targets is not a list of distinct target names")
    return tuple(raw)


def _location(raw: object) -> SourceLocation:
    if (isinstance(raw, list) and len(raw) == 3 and isinstance(raw[0], str)
            and all(isinstance(n, int) and not isinstance(n, bool) for n in raw[1:])):
        return SourceLocation(raw[0], raw[1], raw[2])
    return SourceLocation(SAVED_PLAN_LOCATION, 0, 0)
