"""The state encryption key and per-value AES-256-GCM sealing of private keys.

Where the key comes from, in order:

1. ``RECONCILER_PASSPHRASE``: scrypt (n=2**15, r=8, p=1; about 70 ms) with a random salt kept
   in the state's ``key`` block;
2. ``RECONCILER_KEY_FILE``: 32 raw bytes or 64 hex characters;
3. otherwise ``$HOME/.config/reconciler/key`` (HOME read from the injected environment),
   created 0600 in a 0700 directory the first time a secret must be sealed into a state
   that has no key yet, with a one-line notice;
4. a KMS data key (``kmskey``), when the run's encryption choice (``StateEncryption``: the
   manifests' ``encryption`` block, ``--encryption``, ``RECONCILER_ENCRYPTION``) says
   ``kms``, or the state's own key block names one and nothing else was chosen.

A state records ``{"id", "kdf", "salt"}`` (``KeyBlock``), plus ``"kms": {"key_id",
"cipher_text"}`` for a KMS data key, so that a wrong key is caught by its id before anything
is decrypted or written.

With a provider chosen, ``enforced`` (the default) opens only a state sealed by that provider
(and, for KMS, that key); ``fallback`` opens a state sealed by another one with that one (its
passphrase, key file or KMS key must be at hand) and ``needs_rekey`` says the next write moves
it: ``fresh`` makes the key it moves to (a new data key, or a passphrase with a new salt).
Nothing chosen keeps the rules above, and a KMS block opens with its own KMS key.

The key id is the first 16 hex digits of HMAC-SHA256(key, "reconciler key id"): it names a key
without revealing it.

An envelope is ``"v3:" + base64(nonce || ciphertext || tag)``; the associated data is
``"reconciler state v3\\x00" + lineage + "\\x00" + address``, where ``address`` is the entry's
full address (``keypair.web["default"]``, target included), so a ciphertext moved to another
entry, another target or another state fails. Older envelopes still open with their own
associated data: ``"v2:"`` (format 2) with ``"reconciler state v2\\x00" + lineage + "\\x00" +
name``, and ``"v1:"`` (format 1, 0.1.0) with no label at all. Migrating a state to format 3
seals every one of them again as ``v3`` (``reseal``). The label is what makes a downgrade
visible: a newer envelope cannot be turned into an older one without the key, so a "format
1" document holding a v2 or v3 envelope, or a "format 2" document holding a v3 one, was made
from a newer state by someone rewriting it (``envelope_version`` tells them apart).

The passphrase may hold spaces and any letter but no control character (``credcheck``): a
trailing newline would otherwise silently become part of the key.

The state's integrity MAC (format 2, see ``codec``) uses a second key, derived from the state
key with HKDF-SHA256 (info ``"reconciler state integrity v2"``): the AES key never keys an
HMAC, and the MAC key never encrypts. It is derived once per key (scrypt runs once), so a MAC
per journal line costs one HMAC.

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.credcheck``,
``reconciler.fsutil``, ``reconciler.state.files``, ``reconciler.state.kmskey``,
``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from reconciler.credcheck import passphrase as checked_passphrase
from reconciler.errors import StateCorruptError, StateKeyError, StateTamperedError, UsageError
from reconciler.fsutil import explain, read_regular, remove_quietly
from reconciler.model import SealedSecret, Secret, StateEncryption
from reconciler.state.files import fsync_dir, write_new_file
from reconciler.state.kmskey import DataKeys, KmsWrap, new_data_key, open_data_key

PASSPHRASE_ENV = "RECONCILER_PASSPHRASE"
KEY_FILE_ENV = "RECONCILER_KEY_FILE"
DEFAULT_KEY_FILE = (".config", "reconciler", "key")  # under $HOME
KEY_BYTES = 32
NONCE_BYTES = 12
ENVELOPE_PREFIX = "v3:"  # format 3: bound to the entry's address
V2_ENVELOPE_PREFIX = "v2:"  # format 2: bound to the entry's name
LEGACY_ENVELOPE_PREFIX = "v1:"  # format 1 (0.1.0): no label in the associated data
ENVELOPE_VERSION = 3
SCRYPT_PARAMS: dict[str, int] = {"n": 2**15, "r": 8, "p": 1}
# Bounds on KDF parameters read from a state file, so an edited file cannot make us spin or
# exhaust memory: each bounded alone, and scrypt's memory (128·n·r bytes per lane, p lanes)
# bounded in all.
_SCRYPT_LIMITS = {"n": 2**20, "r": 32, "p": 16}
_SCRYPT_MAX_BYTES = 256 * 1024 * 1024
_KEY_ID_LABEL = b"reconciler key id"
_MAC_INFO = b"reconciler state integrity v2"
_AAD_LABELS = {3: b"reconciler state v3\x00", 2: b"reconciler state v2\x00", 1: b""}
_PREFIXES = {3: ENVELOPE_PREFIX, 2: V2_ENVELOPE_PREFIX, 1: LEGACY_ENVELOPE_PREFIX}
PROVIDER_WORDS = {"passphrase": f"a passphrase ({PASSPHRASE_ENV})",
                  "key_file": f"a key file ({KEY_FILE_ENV} or ~/.config/reconciler/key)",
                  "kms": "a KMS data key"}


@dataclass(frozen=True, slots=True)
class KeyBlock:
    """The state's ``key`` block: which key sealed its secrets, and how to derive it.

    ``kdf`` is ``None`` for a key file, else the scrypt parameters (``name``, ``n``, ``r``,
    ``p``); ``salt`` is base64, present with a KDF. ``kms``: the wrapped data key, for a KMS
    one. Holds no secret.
    """

    id: str
    kdf: Mapping[str, Any] | None = None
    salt: str | None = None
    kms: KmsWrap | None = None

    @property
    def provider(self) -> str:
        """``kms``, ``passphrase`` or ``key_file``: who holds the key."""
        return "kms" if self.kms is not None else "passphrase" if self.kdf else "key_file"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kdf": dict(self.kdf) if self.kdf else None,
                               "salt": self.salt}
        if self.kms is not None:
            out["kms"] = self.kms.as_dict()
        return out

    def describe(self) -> str:
        if self.kms is not None:
            return f"key id {self.id}, a data key under KMS key {self.kms.key_id}"
        how = "a passphrase (RECONCILER_PASSPHRASE)" if self.kdf else "a key file"
        return f"key id {self.id}, from {how}"


@dataclass(frozen=True, slots=True)
class StateKey:
    """A 32-byte AES key and its public id. ``repr`` never shows the key."""

    block: KeyBlock
    _key: bytes = field(repr=False)
    _mac_key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                       info=_MAC_INFO).derive(self._key)
        object.__setattr__(self, "_mac_key", derived)

    @property
    def id(self) -> str:
        return self.block.id

    def mac(self, data: bytes) -> str:
        """HMAC-SHA256 of ``data`` under the integrity key, as hex."""
        return hmac.new(self._mac_key, data, hashlib.sha256).hexdigest()

    def mac_matches(self, data: bytes, tag: object) -> bool:
        return isinstance(tag, str) and hmac.compare_digest(self.mac(data), tag)

    def seal(self, *, lineage: str, address: str, secret: Secret) -> SealedSecret:
        """A current envelope of ``secret`` bound to ``lineage`` and the full ``address``."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        blob = AESGCM(self._key).encrypt(nonce, secret.reveal().encode(),
                                         _aad(ENVELOPE_VERSION, lineage, address))
        return SealedSecret(ENVELOPE_PREFIX + base64.b64encode(nonce + blob).decode("ascii"))

    def reseal(self, *, lineage: str, name: str, address: str,
               sealed: SealedSecret) -> SealedSecret:
        """``sealed`` as a current envelope (unchanged if it is one already)."""
        if envelope_version(sealed) == ENVELOPE_VERSION:
            return sealed
        secret = self.unseal(lineage=lineage, name=name, address=address, sealed=sealed)
        return self.seal(lineage=lineage, address=address, secret=secret)

    def unseal(self, *, lineage: str, name: str, address: str,
               sealed: SealedSecret) -> Secret:
        """Decrypt (a v3 envelope against ``address``, older ones against ``name``);
        ``StateCorruptError`` if the envelope was altered, swapped or moved."""
        version = envelope_version(sealed)
        raw = _envelope_bytes(sealed, name=name)
        bound = address if version == ENVELOPE_VERSION else name
        try:
            plain = AESGCM(self._key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                              _aad(version, lineage, bound))
        except InvalidTag:
            raise StateCorruptError(
                f"the private key of {name!r} does not decrypt with the state's key "
                f"({self.id}): its ciphertext was altered, or moved here from another entry, "
                "another target or another state file. Nothing was changed; restore the state "
                "from its .backup file or from version control."
            ) from None
        return Secret(plain.decode())


def key_id(key: bytes) -> str:
    """First 16 hex digits of HMAC-SHA256(key, "reconciler key id")."""
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def envelope_version(sealed: SealedSecret) -> int:
    """Which format sealed it: 3 (bound to the address), 2 (to the name), 1 (0.1.0, no
    label); 0 for something that is no envelope (``unseal`` says so)."""
    return next((v for v, prefix in _PREFIXES.items() if sealed.envelope.startswith(prefix)), 0)


def is_legacy_envelope(sealed: SealedSecret) -> bool:
    """A format 1 (0.1.0) envelope, sealed without the format label."""
    return envelope_version(sealed) == 1


def _aad(version: int, lineage: str, bound: str) -> bytes:
    return _AAD_LABELS[version] + lineage.encode() + b"\x00" + bound.encode()


def _envelope_bytes(sealed: SealedSecret, *, name: str) -> bytes:
    text = sealed.envelope
    bad = StateCorruptError(
        f"the private key envelope of {name!r} is malformed (it must start with "
        f"{ENVELOPE_PREFIX!r}); restore the state from its .backup file."
    )
    if not envelope_version(sealed):
        raise bad
    try:
        raw = base64.b64decode(text[len(ENVELOPE_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise bad from None
    if len(raw) < NONCE_BYTES + 16:
        raise bad
    return raw


def scrypt_key(passphrase: str, *, salt: bytes, params: Mapping[str, Any]) -> bytes:
    """Derive 32 bytes with scrypt; ``params`` as stored in a ``KeyBlock.kdf``."""
    n, r, p = (params.get(k) for k in ("n", "r", "p"))
    for label, value in (("n", n), ("r", r), ("p", p)):
        if not isinstance(value, int) or isinstance(value, bool) or not (
            1 <= value <= _SCRYPT_LIMITS[label]
        ):
            raise StateCorruptError(
                f"the state's key block has an invalid scrypt parameter {label}; restore the "
                "state from its .backup file."
            )
    assert isinstance(n, int) and isinstance(r, int) and isinstance(p, int)
    if n & (n - 1) or n < 2 or 128 * n * r * p > _SCRYPT_MAX_BYTES:
        raise StateCorruptError("the state's key block has invalid scrypt parameters (n must be "
                                "a power of two, and 128·n·r·p at most 256 MiB); restore the "
                                "state from its .backup file.")
    return Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(passphrase.encode())


def read_key_file(path: Path) -> bytes:
    """32 raw bytes, or 64 hex characters (surrounding whitespace allowed)."""
    try:
        data = read_regular(path, limit=4096)  # a FIFO or a device is refused, not read
    except OSError as exc:
        raise StateKeyError(
            f"{explain(exc, path, doing='read the state key file')}. Check {KEY_FILE_ENV} "
            "or restore the key file from your backup."
        ) from None
    if len(data) == KEY_BYTES:
        return data
    text = data.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    raise StateKeyError(
        f"the state key file {path} must hold 32 raw bytes or 64 hex characters "
        f"(it holds {len(data)} bytes). Point {KEY_FILE_ENV} at the right file."
    )


def default_key_path(environ: Mapping[str, str]) -> Path | None:
    home = environ.get("HOME")
    return Path(home).joinpath(*DEFAULT_KEY_FILE) if home else None


def create_key_file(path: Path) -> bytes:
    """Create a new random key at ``path`` (0600, directory 0700); if it appeared meanwhile,
    read that one. Written to a temporary file and hard-linked into place, so nobody ever
    reads a half-written key."""
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_new_file(tmp, (key.hex() + "\n").encode())  # removed again if not whole
        try:
            os.link(tmp, path)  # never through a link: an existing name (or link) fails
        except FileExistsError:
            return read_key_file(path)
        finally:
            remove_quietly(tmp)
        fsync_dir(path.parent)
    except OSError as exc:
        raise StateKeyError(f"{explain(exc, path, doing='create the state key file')}. "
                            "Nothing was written.") from None
    return key


class KeySource:
    """Finds the state key, lazily and at most once per block.

    ``resolve(block)`` checks the key against a state's block (``StateKeyError`` naming both
    ids on a mismatch, or the provider an ``enforced`` choice refuses); ``resolve(None)``
    makes the key for a state that has none yet. ``choice``: the run's ``StateEncryption``
    (None or no provider: the environment's passphrase or key file, as before);
    ``data_keys``: how to reach KMS, called only when a KMS key is needed.
    """

    def __init__(self, *, environ: Mapping[str, str], notice: Callable[[str], None],
                 choice: StateEncryption | None = None,
                 data_keys: Callable[[], DataKeys] | None = None) -> None:
        self._environ = environ
        self._notice = notice
        self._choice = choice if choice is not None and choice.provider else None
        self._data_keys = data_keys
        self._service: DataKeys | None = None
        self._kms_key_id: str | None = None  # the chosen KMS key, resolved
        self._cache: dict[object, StateKey] = {}
        self._fresh: dict[object, StateKey] = {}  # (block, lineage) -> the key it moves to

    @property
    def choice(self) -> StateEncryption | None:
        return self._choice

    def available(self, block: KeyBlock | None = None) -> bool:
        """Whether a key was given: a passphrase, a key file, or the default key file exists.
        Without one a state can be read (unverified), never written. A KMS data key is never
        "available" to a read that need not unseal: such a read (``plan``) never asks KMS."""
        if block is not None and block.kms is not None:
            return False
        if self._environ.get(PASSPHRASE_ENV) is not None or self._environ.get(KEY_FILE_ENV):
            return True
        path = default_key_path(self._environ)
        return path is not None and path.exists()

    def resolve(self, block: KeyBlock | None, *, lineage: str = "") -> StateKey:
        cache_key = ("new", lineage) if block is None else _hashable(block)
        if cache_key not in self._cache:
            if block is not None:
                self._check_policy(block)
            key = self._derive(block, lineage)
            if block is not None and key.id != block.id:
                raise self._mismatch(block, key)
            self._cache[cache_key] = key
            self._cache[_hashable(key.block)] = key
        return self._cache[cache_key]

    def needs_rekey(self, block: KeyBlock | None) -> bool:
        """Whether a state sealed under ``block`` is written under another key: a chosen
        provider (or KMS key) other than the one that sealed it (``fallback``)."""
        choice = self._choice
        if choice is None or block is None:
            return False
        if block.provider != choice.provider:
            return True
        return choice.provider == "kms" and block.kms is not None \
            and block.kms.key_id != self._chosen_kms_key()

    def fresh(self, block: KeyBlock | None, *, lineage: str) -> StateKey:
        """The new key a state sealed under ``block`` moves to (``state rekey``, or a
        ``fallback`` write): of the chosen provider (none chosen: of ``block``'s own), a new
        data key or a new salt; a key file's key stays what the file holds. Made once per
        block and lineage."""
        cache_key = (_hashable(block), lineage)
        if cache_key not in self._fresh:
            provider = self._choice.provider if self._choice is not None else (
                block.provider if block is not None else None)
            if provider == "kms":
                kms_key = self._chosen_kms_key() if self._choice is not None else (
                    block.kms.key_id if block is not None and block.kms else None)
                assert kms_key is not None
                key = self._new_kms_key(kms_key, lineage)
            elif provider == "passphrase":
                key = self._from_passphrase(self._passphrase(None), None)
            elif provider == "key_file":
                key = self._from_key_file(None)
            else:
                key = self._legacy(None)
            self._fresh[cache_key] = key
            self._cache[_hashable(key.block)] = key
        return self._fresh[cache_key]

    def _derive(self, block: KeyBlock | None, lineage: str) -> StateKey:
        if self._choice is None:
            if block is not None and block.kms is not None:
                return self._open_kms(block, lineage)
            return self._legacy(block)
        provider = self._choice.provider if block is None else block.provider
        if provider == "kms":
            if block is None:
                return self._new_kms_key(self._chosen_kms_key(), lineage)
            return self._open_kms(block, lineage)
        if provider == "passphrase":
            return self._from_passphrase(self._passphrase(block), block)
        return self._from_key_file(block)

    def _check_policy(self, block: KeyBlock) -> None:
        """``enforced``: the state must be sealed by the chosen provider (and KMS key)."""
        choice = self._choice
        if choice is None or choice.mode != "enforced":
            return
        assert choice.provider is not None
        origin = choice.origin or "the encryption choice"
        move = ("To move it, run one apply with encryption mode fallback (--encryption-mode "
                "fallback, or mode: fallback in the encryption block) and the key it is sealed "
                "with at hand; then go back to enforced. Nothing was decrypted or written.")
        if block.provider != choice.provider:
            raise StateKeyError(
                f"the state's secrets are sealed with {block.describe()}, but {origin} "
                f"enforces {PROVIDER_WORDS[choice.provider]}: the state is not read with "
                f"another provider. {move}")
        if block.kms is not None and block.kms.key_id != self._chosen_kms_key():
            raise StateKeyError(
                f"the state's secrets are sealed with {block.describe()}, but {origin} "
                f"enforces KMS key {self._chosen_kms_key()}. {move}")

    # --- KMS ---------------------------------------------------------------------------------

    def _kms(self) -> DataKeys:
        if self._service is None:
            if self._data_keys is None:
                raise StateKeyError(
                    "this state's key is a KMS data key, and this command has no way to reach "
                    "KMS; run it through the reconciler command line, with the target's "
                    "credentials. Nothing was decrypted or written.")
            self._service = self._data_keys()
        return self._service

    def _chosen_kms_key(self) -> str:
        choice = self._choice
        assert choice is not None
        if self._kms_key_id is None:
            if not choice.kms_key:
                raise UsageError(
                    f"{choice.origin or 'the encryption choice'} chooses provider kms but no "
                    "KMS key: give kms.key_id in the encryption block, --kms-key-id or "
                    "RECONCILER_KMS_KEY_ID (the key's UUID, or alias/NAME).")
            self._kms_key_id = self._kms().key_id(choice.kms_key)
        return self._kms_key_id

    def _new_kms_key(self, kms_key: str, lineage: str) -> StateKey:
        raw, wrap = new_data_key(self._kms(), kms_key, lineage=lineage)
        return StateKey(KeyBlock(id=key_id(raw), kms=wrap), raw)

    def _open_kms(self, block: KeyBlock, lineage: str) -> StateKey:
        assert block.kms is not None
        raw = open_data_key(self._kms(), block.kms, lineage=lineage)
        if key_id(raw) != block.id:
            raise StateTamperedError(
                f"the data key KMS unwrapped from the state's key block is not the key its id "
                f"names ({block.id}): either the key block was altered, or KMS (or something "
                "between reconciler and KMS) answered another key. Nothing was decrypted or "
                "written. Check the KMS endpoint the run uses (--endpoint, the target's "
                "endpoints) first; if it is the right one, restore the state from its backup or "
                "from version control.")
        return StateKey(block, raw)

    # --- a passphrase, a key file ------------------------------------------------------------

    def _legacy(self, block: KeyBlock | None) -> StateKey:
        """Nothing chosen: the passphrase or the key file the environment gives."""
        passphrase = self._environ.get(PASSPHRASE_ENV)
        key_file = self._environ.get(KEY_FILE_ENV)
        if passphrase is not None and key_file:
            raise UsageError(f"set only one of {PASSPHRASE_ENV} and {KEY_FILE_ENV}, not both.")
        if passphrase is not None:
            return self._from_passphrase(checked_passphrase(PASSPHRASE_ENV, passphrase), block)
        if key_file:
            self._warn_if_exposed(Path(key_file))
            return _raw_key(read_key_file(Path(key_file)))
        return self._from_default_file(block)

    def _passphrase(self, block: KeyBlock | None) -> str:
        passphrase = self._environ.get(PASSPHRASE_ENV)
        if passphrase is None:
            what = (f"this state's secrets are sealed with {block.describe()}"
                    if block is not None else "the state key provider chosen is passphrase")
            raise StateKeyError(f"{what}: set {PASSPHRASE_ENV} to the passphrase. Nothing was "
                                "decrypted or written.")
        return checked_passphrase(PASSPHRASE_ENV, passphrase)

    def _from_key_file(self, block: KeyBlock | None) -> StateKey:
        key_file = self._environ.get(KEY_FILE_ENV)
        if key_file:
            self._warn_if_exposed(Path(key_file))
            return _raw_key(read_key_file(Path(key_file)))
        return self._from_default_file(block)

    def _warn_if_exposed(self, path: Path) -> None:
        try:
            mode = path.stat().st_mode & 0o777
        except OSError:
            return  # read_key_file says what is wrong
        if mode & 0o077:
            self._notice(f"reconciler: warning: the state key file {path} can be read by others "
                         f"(mode {mode:o}); `chmod 600 {path}`, and treat the key as exposed if "
                         "others could reach it.")

    def _from_passphrase(self, passphrase: str, block: KeyBlock | None) -> StateKey:
        if not passphrase:
            raise StateKeyError(f"{PASSPHRASE_ENV} is set but empty; set the passphrase.")
        if block is not None and not block.kdf:
            raise StateKeyError(
                f"this state's secrets are sealed with a key file ({block.describe()}), not a "
                f"passphrase: unset {PASSPHRASE_ENV} and set {KEY_FILE_ENV} to that key file."
            )
        if block is None:
            salt = secrets.token_bytes(16)
            params: Mapping[str, Any] = {"name": "scrypt", **SCRYPT_PARAMS}
        else:
            assert block.kdf is not None
            salt, params = _salt_of(block), block.kdf
        key = scrypt_key(passphrase, salt=salt, params=params)
        salt_b64 = base64.b64encode(salt).decode("ascii")
        return StateKey(KeyBlock(id=key_id(key), kdf=dict(params), salt=salt_b64), key)

    def _from_default_file(self, block: KeyBlock | None) -> StateKey:
        path = default_key_path(self._environ)
        if path is None:
            raise StateKeyError(
                f"no state encryption key: set {PASSPHRASE_ENV} or {KEY_FILE_ENV} "
                "(HOME is not set, so there is no default key file)."
            )
        if path.exists():
            self._warn_if_exposed(path)
            return _raw_key(read_key_file(path))
        if block is not None:
            # A new key could never open secrets sealed with another one: do not create it.
            raise StateKeyError(
                f"this state's secrets are sealed with {block.describe()}, and no key was "
                f"given: set {PASSPHRASE_ENV} or {KEY_FILE_ENV}, or restore the key file {path}."
            )
        key = create_key_file(path)
        self._notice(
            f"reconciler: created a new state encryption key {path} (key id {key_id(key)}); "
            "back it up: without it the private keys in state cannot be read."
        )
        return _raw_key(key)

    def _mismatch(self, block: KeyBlock, key: StateKey) -> StateKeyError:
        if block.kdf and PASSPHRASE_ENV not in self._environ:
            hint = (f"{PASSPHRASE_ENV} is not set (the key tried was "
                    f"{self._environ.get(KEY_FILE_ENV) or 'the default key file'}); set it to "
                    "the passphrase this state was sealed with")
        elif block.kdf:
            hint = f"check {PASSPHRASE_ENV}: it is not the passphrase this state was sealed with"
        else:
            hint = (f"set {KEY_FILE_ENV} to the key file this state was sealed with (or put it "
                    "at ~/.config/reconciler/key)")
        return StateKeyError(
            f"wrong state encryption key: the state's secrets are sealed with {block.describe()}"
            f", but the key given has key id {key.id}; {hint}. Nothing was decrypted or written."
        )


def _raw_key(key: bytes) -> StateKey:
    return StateKey(KeyBlock(id=key_id(key)), key)


def _salt_of(block: KeyBlock) -> bytes:
    try:
        salt = base64.b64decode(block.salt or "", validate=True)
    except (binascii.Error, ValueError):
        salt = b""
    if len(salt) < 8:
        raise StateCorruptError(
            "the state's key block has no valid salt; restore the state from its .backup file."
        )
    return salt


def _hashable(block: KeyBlock | None) -> object:
    if block is None:
        return None
    kdf = tuple(sorted(block.kdf.items())) if block.kdf else None
    return (block.id, kdf, block.salt, block.kms)
