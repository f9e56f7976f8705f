"""Helpers shared by the state tests (no tests here): entries, stores, raw document edits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reconciler.model import Api, KeySource, SealedSecret, StateKeyPair
from reconciler.state.codec import canonical as _canonical
from reconciler.state.codec import checksum, document_mac
from reconciler.state.crypto import KeySource as StateKeySource
from reconciler.state.local import LocalStateStore

PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN5d6JI55UqImGecHAd2pPjOcLfW0CN4bXuPVapOIu9U"
PRIVATE_MARK = "PRIVATE-KEY-MATERIAL"


def entry(name: str, sealed: SealedSecret | None = None, **kw: Any) -> StateKeyPair:
    fields: dict[str, Any] = {
        "name": name,
        "api": Api.V21,
        "source": KeySource.GENERATE,
        "public_key": PUBLIC,
        "fingerprint_md5": "85:26:f6:5a:28:2d:8d:0e:59:b7:02:66:23:29:a0:10",
        "fingerprint_sha256": "SHA256:k0XX6Dt1SzCeHi0bxD89xJSqx3SgSupSmHG8YybWDC0",
        "created": "2026-01-01T00:00:00Z",
        "spec_digest": "sha256:" + "0" * 64,
        "algorithm": "ed25519",
        "private_key": sealed,
    }
    fields.update(kw)
    return StateKeyPair(**fields)


def at(name: str, target: str = "default") -> str:
    """The key of key pair ``name``'s entry in a state document (format 3): its address."""
    return f'keypair.{name}["{target}"]'


def as_format_1(doc: dict[str, Any]) -> None:
    """Rewrite a current document's layout as format 1 had it (entries by bare name, no
    targets, no MAC); the caller recomputes the checksum."""
    doc.pop("mac", None)
    doc.pop("targets", None)
    doc["format_version"] = 1
    doc["keypairs"] = {k.split(".", 1)[1].split("[", 1)[0]: v for k, v in doc["keypairs"].items()}


def key_env(tmp_path: Path) -> dict[str, str]:
    """An environment with a key file (fast: no KDF) and HOME inside tmp_path."""
    key_file = tmp_path / "state.key"
    if not key_file.exists():
        key_file.write_text("11" * 32 + "\n")
        key_file.chmod(0o600)
    return {"RECONCILER_KEY_FILE": str(key_file), "HOME": str(tmp_path / "home")}


def store_at(path: Path, environ: dict[str, str]) -> LocalStateStore:
    return LocalStateStore(path, environ=environ)


def rewrite(path: Path, edit: Any, *, fix_checksum: bool = True,
            key_holder: dict[str, str] | None = None) -> None:
    """Edit the JSON document at path; recompute its checksum (what anyone can do), and with
    ``key_holder`` (an environment with the state key) its MAC too, to reach the checks
    behind the MAC (the AES-GCM binding of each secret)."""
    doc = json.loads(path.read_text())
    edit(doc)
    if fix_checksum:
        doc["checksum"] = checksum(doc)
    if key_holder is not None:
        remac(doc, key_holder)
    path.write_text(json.dumps(doc, indent=2))


def remac(doc: dict[str, Any], key_holder: dict[str, str]) -> None:
    """Recompute a document's MAC as someone holding the key (the environment's) would."""
    from reconciler.state.codec import key_block_from

    key = StateKeySource(environ=key_holder, notice=print).resolve(
        key_block_from(doc["key"], where="key"))
    body = _canonical({k: v for k, v in doc.items() if k not in ("checksum", "mac")})
    doc["mac"] = document_mac(body, key)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}
