"""The comparable attribute form of a key pair, and field-level differences (deepdiff).

Desired (manifest), recorded (state) and actual (cloud) key pairs become plain JSON-able
mappings with the same keys, so that plans compare and render them uniformly. Public keys are
compared by type and key material, never by comment or whitespace. No secret ever appears
here: a private key is represented only by the plan's sensitivity marks.

May import: ``reconciler.model``, ``reconciler.keys``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler import keys
from reconciler.model import DesiredKeyPair, KeySource, RemoteKeyPair, StateKeyPair

# Fields whose change cannot be made in place: the key pair is replaced (delete, then create).
REPLACING_FIELDS = ("source", "algorithm", "public_key", "type", "user_id", "scope",
                    "key_protection")


def _normal(public_key: str, key_type: str) -> str:
    if key_type == "x509":
        return keys.normalise(public_key, key_type="x509")
    return " ".join(public_key.split()[:2])


def import_fingerprint(d: DesiredKeyPair) -> str | None:
    """The fingerprint the cloud will report for an imported key (None if not an import)."""
    if d.public_key is None:
        return None
    try:
        if d.type == "x509":
            return keys.parse_certificate(d.public_key).fingerprint_md5
        return keys.md5_fingerprint(d.public_key)
    except Exception:  # validated at load time; a renderer must not fail on it
        return None


def desired_attributes(d: DesiredKeyPair) -> dict[str, Any]:
    """What the manifest asks for; keys absent here are known only after apply."""
    out: dict[str, Any] = {
        "name": d.name,
        "source": d.source.value,
        "algorithm": d.algorithm,
        "type": d.type,
        "user_id": d.user_id,
        "scope": d.scope,
        "description": d.description,
        "key_protection": d.key_protection.as_dict() if d.key_protection else None,
    }
    if d.source is KeySource.IMPORT and d.public_key is not None:
        out["public_key"] = _normal(d.public_key, d.type)
        out["fingerprint"] = import_fingerprint(d)
        out["private_key"] = None
    return out


def recorded_attributes(s: StateKeyPair) -> dict[str, Any]:
    """What state records; ``private_key`` is None here and marked sensitive by the plan.
    ``cloud_name`` only for a key pair rotated to a generation (the cloud calls it NAME-gN)."""
    out: dict[str, Any] = {
        "name": s.name,
        "source": s.source.value,
        "algorithm": s.algorithm,
        "type": s.type,
        "user_id": s.user_id,
        "scope": s.scope,
        "description": s.description,
        "key_protection": s.key_protection.as_dict() if s.key_protection else None,
        "public_key": _normal(s.public_key, s.type),
        "fingerprint": s.fingerprint_md5,
        "private_key": None,
    }
    if s.generation:
        out["cloud_name"] = s.cloud_name
    return out


def remote_attributes(r: RemoteKeyPair) -> dict[str, Any]:
    """What the cloud reports (fields it did not report are left out)."""
    out: dict[str, Any] = {
        "name": r.name,
        "type": r.type,
        "public_key": _normal(r.public_key, r.type),
        "fingerprint": r.fingerprint,
    }
    for key, value in (("user_id", r.user_id), ("scope", r.scope),
                       ("description", r.description)):
        if value is not None:
            out[key] = value
    return out


def _comparable(attrs: Mapping[str, Any], source: str) -> dict[str, Any]:
    out = {k: attrs.get(k) for k in REPLACING_FIELDS}
    if source != KeySource.IMPORT.value:
        out["public_key"] = None  # generated keys are compared by fingerprint, not here
    return out


def replacing_fields(d: DesiredKeyPair, prior: StateKeyPair) -> tuple[str, ...]:
    """The fields that differ between manifest and state and force a replacement."""
    want = _comparable(desired_attributes(d), d.source.value)
    have = _comparable(recorded_attributes(prior), d.source.value)
    if want == have:
        return ()
    return tuple(f for f in REPLACING_FIELDS if f in field_differences(have, want))


def field_differences(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> dict[str, tuple[Any, Any]]:
    """Top-level fields that differ, with (before, after) values.

    Scalars are compared directly; nested values (``key_protection``) with deepdiff, which
    tells a real difference from a reordering.
    """
    if not before or not after or before == after:
        return {}
    out: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            from deepdiff import DeepDiff

            if not DeepDiff(dict(old), dict(new), ignore_order=True):
                continue
        out[key] = (old, new)
    return out
