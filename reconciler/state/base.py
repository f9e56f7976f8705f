"""What the local and the remote state store share: the state as a store holds it in memory.

A store loads a document and replays its journal on top (``_replay``); ``record``/``forget``
change the entries and write journal lines (``_append``, per store); ``commit`` folds them
into a new document with the next serial. ``JournaledStore`` keeps the entries, the key block
and the document as last read or written, and does everything that does not depend on where
the bytes go: journal record semantics, sealing with the state key, the journal lines of one
change, export, and the checks of a push.

Integrity (see ``codec``): ``_authenticate`` checks a loaded document and its journal with
the state key, when the store was opened with ``verify=True`` (every command that writes or
reveals a secret; the key is then required) or a key is available anyway; without one the
state is read ``UNVERIFIED``. Every write and every ``unseal`` needs a state that was
verified (``unseal`` also takes a format 1 one whose key matched) and the key. A format 1
state is never written as it is nor upgraded by a write (nothing in it tells a real 0.1.0
file from a downgraded one): ``upgrade`` (``reconciler state upgrade``) rewrites it as
format 3, once, at the same serial; every other write refuses (``StateFormatError``).

A format 2 state is authenticated, so its MAC proves it is what this reconciler's previous
format wrote: the first write migrates it (``_prepare_write`` runs ``upgrade`` first)
before anything else is written: one new document, written as every commit is (a complete
file renamed over the old one), every secret sealed again bound to its address, the serial
kept unless its journal held changes, the backup keeping the format 2 document. Until that
rename the format 2 document and its journal are untouched, so a crash loses nothing. Every
commit seals any older envelope again, so a format 3 document holds only ``v3`` ones.

The run's connection to each target (``connect``) is recorded in the next document written;
on its own it is not a change (no write, no serial).

A store supplies: ``load``, ``commit``, ``_append`` (how a change becomes durable),
``_replays`` (which journal records apply), ``_write_document`` (how a document replaces the
last one atomically), ``_has_document``, its lock (``_lock``), and two words for its messages;
``_exclusive`` and ``_reset`` where it needs more than the mutex and the fields here.

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.state.*``, the stdlib.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from reconciler.address import DEFAULT_TARGET, Address, is_target_name, keypair_address
from reconciler.errors import (
    StateCorruptError,
    StateError,
    StateFormatError,
    StateKeyError,
    StateTamperedError,
)
from reconciler.model import (
    NAME_PATTERN,
    SealedSecret,
    Secret,
    State,
    StateEncryption,
    StateKeyPair,
    TargetConnection,
)
from reconciler.state.codec import (
    FORMAT_VERSION,
    JournalRecord,
    StateDocument,
    decode_document,
    encode_document,
    encode_journal_line,
    full_address,
    verify_document,
    verify_journal,
)
from reconciler.state.crypto import (
    ENVELOPE_VERSION,
    KEY_FILE_ENV,
    PASSPHRASE_ENV,
    KeyBlock,
    KeySource,
    StateKey,
    envelope_version,
)
from reconciler.state.kmskey import DataKeys
from reconciler.state.protocol import Integrity

_NAME_RE = re.compile(NAME_PATTERN)


def no_notice(message: str) -> None:
    del message


UPGRADE_COMMAND = "reconciler state upgrade"


def format_1_refusal(description: str, *, doing: str = "write it") -> StateFormatError:
    """Why a format 1 state is not written, and the one-time step that fixes it."""
    return StateFormatError(
        f"cannot {doing}: {description} is in state format 1 (written by reconciler 0.1.0), "
        "which has no integrity check, so this reconciler never writes it as it is: nothing "
        "was changed. Upgrade it once: check that it holds what you expect (`reconciler state "
        "list`, `reconciler plan`), then run `reconciler state upgrade` with the state key "
        f"({PASSPHRASE_ENV} or {KEY_FILE_ENV}). The upgrade keeps the format 1 file as the "
        "backup and the serial as it is, so saved plans stay valid."
    )


def check_push(new: State, current: State, *, source: str, target: str) -> None:
    """``StateError`` unless ``new`` may replace ``current``: same lineage, a higher serial."""
    if new.lineage != current.lineage:
        raise StateError(
            f"cannot push {source}: its lineage {new.lineage} differs from {target}'s "
            f"({current.lineage}), so it is another state. Use --force to replace it anyway "
            f"(the current state is kept as {target}.backup)."
        )
    if new.serial <= current.serial:
        raise StateError(
            f"cannot push {source}: its serial {new.serial} is not newer than {target}'s "
            f"({current.serial}). Use --force to replace it anyway."
        )


class Lock(Protocol):
    """A store's lock: the local ``flock`` file or the remote lock object."""

    def acquire(self, *, operation: str, timeout: float) -> dict[str, str]: ...

    def release(self) -> None: ...

    def force_unlock(self, lock_id: str) -> None: ...


class JournaledStore:
    """The in-memory half of a ``StateStore``. ``_mutex`` guards the fields below it."""

    description: str
    _lock: Lock
    _backup_kind = "file"  # in messages: "restore the state from its .backup file"

    def __init__(self, *, environ: Mapping[str, str], notice: Callable[[str], None],
                 verify: bool = True, encryption: StateEncryption | None = None,
                 data_keys: Callable[[], DataKeys] | None = None) -> None:
        self._keys = KeySource(environ=environ, notice=notice, choice=encryption,
                               data_keys=data_keys)
        self._say = notice
        self._verify = verify  # the key is required, and a valid MAC
        self._upgrading = False  # only ``upgrade`` writes a format 1 or 2 state (as format 3)
        self._rekeying = False  # ``rekey`` is sealing everything again under a new key
        # held by a migration (re-entered by its own commit): other writers wait for it
        self._migrate_mutex = threading.RLock()
        self._integrity = Integrity.VERIFIED
        self._state_key: StateKey | None = None  # the resolved key of ``_key``, once needed
        self._mutex = threading.Lock()
        self._key_mutex = threading.Lock()
        self._fresh_lineage = str(uuid.uuid4())
        self._loaded = False
        self._lineage = self._fresh_lineage
        self._serial = 0
        self._entries: dict[Address, StateKeyPair] = {}
        self._key: KeyBlock | None = None
        self._targets: dict[str, TargetConnection] = {}  # as the document records them
        self._run_targets: dict[str, TargetConnection] = {}  # as this run reaches them
        self._disk = StateDocument(State(lineage=self._lineage, serial=0))

    # --- what each store supplies ------------------------------------------------------------

    def load(self) -> State:
        raise NotImplementedError

    def commit(self) -> State:
        raise NotImplementedError

    def _append(self, *, op: str, name: str, target: str, entry: StateKeyPair | None,
                durable: bool = True) -> None:
        raise NotImplementedError

    def _replays(self, rec: JournalRecord, *, where: str) -> bool:
        """Whether ``rec`` applies on top of the document; raise if it can never apply."""
        raise NotImplementedError

    def _journal_aside(self) -> str:
        """What to do with a journal that cannot be replayed: "move ... aside"."""
        raise NotImplementedError

    def _write_document(self, data: bytes) -> None:
        """Replace the document with ``data`` atomically (under ``_exclusive``)."""
        raise NotImplementedError

    def _has_document(self) -> bool:
        raise NotImplementedError

    def _exclusive(self) -> contextlib.AbstractContextManager[object]:
        """What load, commit and push hold: ``_mutex``, and whatever else a store needs."""
        return self._mutex

    # --- reading -----------------------------------------------------------------------------

    @property
    def integrity(self) -> Integrity:
        return self._integrity

    @property
    def format_version(self) -> int:
        """The format of the state document as last read (this release's for none)."""
        self._ensure_loaded()
        return self._disk.format_version

    def connect(self, target: str, connection: TargetConnection) -> None:
        """How this run reaches ``target``: recorded with the next document written."""
        if not is_target_name(target):
            raise StateError(f"cannot record target {target!r}: not a valid target name.")
        with self._mutex:
            self._run_targets[target] = connection

    def _authenticate(self, disk: StateDocument | None,
                      journals: Iterable[tuple[str, str, list[JournalRecord]]]) -> str:
        """Check ``disk`` and its journals (source, seed, records) with the state key; set
        ``_integrity`` (and ``_state_key``). Returns the last journal's chain tag."""
        journals = list(journals)
        self._state_key = None
        legacy = disk is not None and disk.format_version < 2
        lines = [(src, r) for src, _, recs in journals for r in recs]
        old = next((src for src, r in lines if r.version < 2), None)
        if old is not None and not legacy:
            raise StateTamperedError(
                f"{old} holds format 1 journal lines (no MAC) " + (
                    f"on top of the format 2 state {self.description}: they were not written "
                    "by this reconciler. Nothing was changed. Move them aside and keep them "
                    "(they may hold private keys)." if disk is not None else
                    "left by reconciler 0.1.0 before it first wrote the state: finish that "
                    "apply with reconciler 0.1.0, or move them aside and keep them (they may "
                    "hold private keys). Nothing was changed."))
        self._refuse_downgrade(disk, lines)
        newer = next((src for src, r in lines if r.version >= 3), None)
        if newer is not None and disk is not None and disk.format_version < 3:
            raise StateCorruptError(
                f"{newer} holds format 3 journal lines on top of the format "
                f"{disk.format_version} state {self.description}, which no reconciler writes "
                "(the state is migrated before any line is written): the state file was "
                "replaced by an older one. Nothing was changed. Restore the newer state, or "
                "move the journal aside and keep it (it may hold private keys).")
        block = disk.key if disk is not None else None
        block = block or next((r.key for _, r in lines if r.op == "key"), None)
        chain = journals[-1][2][-1].tag if journals and journals[-1][2] else ""
        if block is None:
            if lines:
                raise StateTamperedError(
                    f"{lines[0][0]} holds changes but no key block to check them with: "
                    f"{self.description} is missing or was replaced by another file (restore "
                    "it, e.g. from its .backup), or the journal was not written by reconciler. "
                    "Nothing was changed. Move the journal aside and keep it (it may hold "
                    "private keys).")
            self._integrity = Integrity.FORMAT_1 if legacy else Integrity.VERIFIED
            return chain
        if not (self._verify or self._keys.available(block)):
            self._integrity = Integrity.UNVERIFIED
            return chain
        # StateKeyError: no key, another one, or (a KMS data key) KMS refused or unreachable
        key = self._keys.resolve(block, lineage=self._lineage)
        if disk is not None:
            verify_document(disk, key=key, source=self.description)
        for source, seed, records in journals:
            verify_journal(records, key=key, seed=seed, source=source)
        self._state_key = key
        self._integrity = Integrity.FORMAT_1 if legacy else Integrity.VERIFIED
        return chain

    def _refuse_downgrade(self, disk: StateDocument | None,
                          lines: list[tuple[str, JournalRecord]]) -> None:
        """A document (or journal line) holding an envelope sealed by a newer format than its
        own was made from a newer state by rewriting it in an older format (for format 1: by
        removing its MAC): refused, as any tampering is."""
        # (no envelope is newer than the newest format: a document in it holds none)
        entries = [(disk.format_version, e) for e in disk.state.keypairs.values()] \
            if disk is not None and disk.format_version < ENVELOPE_VERSION else []
        entries += [(r.version, r.entry) for _, r in lines if r.entry is not None]
        for version, entry in entries:
            if version >= ENVELOPE_VERSION:
                continue
            sealed = entry.private_key
            by = envelope_version(sealed) if sealed is not None else 0
            if by <= version:
                continue
            how = ("(no MAC), but the private key of {name!r} was sealed by format {by}: the "
                   "file was made from an authenticated state by removing its MAC" if version < 2
                   else "but the private key of {name!r} was sealed by format {by}: it was "
                   "rewritten in an older format than the one that sealed it")
            raise StateTamperedError(
                f"{self.description} says it is state format {version} "
                + how.format(name=entry.name, by=by)
                + ". Nothing was changed. Find out who wrote it, then restore it from its "
                "backup or from version control.")

    def _require_trusted(self, doing: str) -> None:
        """``StateKeyError`` unless the state was verified (or is format 1 with its key)."""
        if self._integrity is Integrity.UNVERIFIED:
            raise StateKeyError(
                f"cannot {doing}: {self.description} was read without the state key, so its "
                f"integrity is unchecked. Set {PASSPHRASE_ENV} or {KEY_FILE_ENV} (the key it "
                "was written with) and run the command again."
            )

    def require_current_format(self, *, doing: str = "write it") -> None:
        """``StateFormatError`` if the state as loaded is format 1 (see ``upgrade``); a
        format 2 one is migrated by the first write."""
        self._ensure_loaded()
        if self._disk.format_version < 2 and not self._upgrading:
            raise format_1_refusal(self.description, doing=doing)

    def _prepare_write(self, *, migrate: bool = True) -> StateKey:
        """The key a write is authenticated with (resolved before ``_mutex`` is taken:
        ``_key_mutex`` comes first); a state without a key block gets one here. A format 2
        state is migrated first (``migrate``), so every write lands on format 3."""
        self._ensure_loaded()
        self.require_current_format(doing="write the state")
        self._require_trusted("write the state")
        if migrate and self._disk.format_version < FORMAT_VERSION:
            with self._migrate_mutex:
                if self._disk.format_version < FORMAT_VERSION and not self._upgrading:
                    self.upgrade()
        if migrate and not (self._upgrading or self._rekeying) \
                and self._keys.needs_rekey(self._key):
            with self._migrate_mutex:
                if not (self._upgrading or self._rekeying) and self._keys.needs_rekey(self._key):
                    self.rekey()  # fallback: sealed by another provider, written by the chosen
        with self._key_mutex:
            key = self._state_key or self._keys.resolve(self._key, lineage=self._lineage)
            with self._mutex:
                if self._key is None:
                    self._key = key.block
                if self._key == key.block:
                    self._state_key = key
        return key

    def _reset(self, disk: StateDocument) -> None:
        self._disk = disk
        self._lineage, self._serial = disk.state.lineage, disk.state.serial
        self._entries = dict(disk.state.keypairs)
        self._targets = dict(disk.state.targets)
        self._key = disk.key

    def _replay(self, records: Iterable[tuple[str, JournalRecord]]) -> None:
        for where, rec in records:
            if self._replays(rec, where=where):
                self._apply(rec, where=where)

    def _apply(self, rec: JournalRecord, *, where: str) -> None:
        if rec.op == "key":
            if self._key is not None and self._key != rec.key:
                raise StateCorruptError(f"{where} names another state key; move it aside.")
            self._key = rec.key
        elif rec.op == "record" and rec.entry is not None:
            entry = rec.entry
            if rec.keep_private_key:
                prior = self._entries.get(address_of(entry))
                if prior is None or prior.private_key is None:
                    raise StateCorruptError(
                        f"{where} keeps a private key that {entry.name!r} does not have; "
                        f"{self._journal_aside()} (keep a copy) or restore the state."
                    )
                entry = dataclasses.replace(entry, private_key=prior.private_key)
            self._entries[address_of(entry)] = entry
        elif rec.op == "forget" and rec.name is not None:
            self._entries.pop(keypair_address(rec.name, rec.target), None)

    def _not_folded(self, records: list[tuple[str, JournalRecord]]) -> list[str]:
        """Of journal records from an older serial, which a commit is believed to have folded
        in: the key pairs whose change the state does not hold (normally none). A change it
        lacks would be lost if the records were skipped and removed."""
        if not records:
            return []  # nothing to fold: the document is as it is
        entries, key = dict(self._entries), self._key
        missing: set[str] = set()
        try:
            for where, rec in records:
                try:
                    self._apply(rec, where=where)
                except StateCorruptError:
                    missing.add(rec.name or "?")
            missing |= {a.name for a in set(entries) | set(self._entries)
                        if not self._folded_as(a, entries.get(a), self._entries.get(a))}
        finally:
            self._entries, self._key = entries, key
        return sorted(missing)

    def _folded_as(self, at: Address, held: StateKeyPair | None,
                   logged: StateKeyPair | None) -> bool:
        """Whether the document's entry ``held`` is the journal's ``logged`` folded in: the
        same, or (a migration that died before removing the journal) the same with its
        private key sealed again in a newer envelope: the same secret, when the key is here
        to say so (a reader without it writes nothing, so it loses nothing either)."""
        if held == logged:
            return True
        if held is None or logged is None or held.private_key is None \
                or logged.private_key is None:
            return False
        if dataclasses.replace(held, private_key=None) != dataclasses.replace(
                logged, private_key=None):
            return False
        if envelope_version(held.private_key) <= envelope_version(logged.private_key):
            return False
        key = self._state_key
        if key is None:
            return True
        try:
            return key.unseal(lineage=self._lineage, name=at.name,
                              address=full_address(at.name, held.target),
                              sealed=held.private_key
                              ) == key.unseal(lineage=self._lineage, name=at.name,
                                              address=full_address(at.name, logged.target),
                                              sealed=logged.private_key)
        except StateCorruptError:
            return False

    def _snapshot(self) -> State:
        return State(lineage=self._lineage, serial=self._serial, keypairs=dict(self._entries),
                     verified=self._integrity is Integrity.VERIFIED,
                     targets=self._targets_now())

    def _targets_now(self) -> dict[str, TargetConnection]:
        """Every target an entry lives in or the run reaches, with the run's connection if it
        has one, else the recorded one (under _mutex, or where nothing else writes)."""
        names = {e.target for e in self._entries.values()} | set(self._run_targets)
        return {t: self._run_targets.get(t) or self._targets.get(t) or TargetConnection()
                for t in sorted(names)}

    def _target_of(self, name: str) -> str:
        """The target of the one entry named ``name`` (``default`` if none or several)."""
        found = [a.target for a in self._entries if a.name == name]
        return found[0] if len(found) == 1 else DEFAULT_TARGET

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.load()

    # --- secrets -----------------------------------------------------------------------------

    def seal(self, name: str, secret: Secret, *, target: str = DEFAULT_TARGET) -> SealedSecret:
        key = self._prepare_write()
        with self._mutex:
            lineage = self._lineage
        return key.seal(lineage=lineage, address=full_address(name, target), secret=secret)

    def unseal(self, name: str, sealed: SealedSecret, *, target: str | None = None) -> Secret:
        self._ensure_loaded()
        self._require_trusted(f"reveal the private key of {name!r}")
        if self._key is None:
            raise StateCorruptError(
                f"{self.description} holds a private key for {name!r} but no key block saying "
                f"which key sealed it; restore the state from its .backup {self._backup_kind}."
            )
        with self._key_mutex:
            key = self._keys.resolve(self._key, lineage=self._lineage)
        with self._mutex:
            target = target or self._target_of(name)
        return key.unseal(lineage=self._lineage, name=name,
                          address=full_address(name, target), sealed=sealed)

    # --- changes -----------------------------------------------------------------------------

    def held(self, name: str, *, target: str = DEFAULT_TARGET) -> StateKeyPair | None:
        self._ensure_loaded()
        with self._mutex:
            return self._entries.get(keypair_address(name, target))

    def record(self, entry: StateKeyPair, *, durable: bool = True) -> None:
        _check_entry(entry)
        self._prepare_write()
        self._append(op="record", name=entry.name, target=entry.target, entry=entry,
                     durable=durable)

    def record_all(self, entries: Sequence[StateKeyPair], *, durable: bool = True) -> None:
        """Each ``record``ed (one ``_prepare_write`` for all); a store whose lines can share
        one sync overrides ``_append_all``."""
        for entry in entries:
            _check_entry(entry)
        if entries:
            self._prepare_write()
            self._append_all(entries, durable=durable)

    def _append_all(self, entries: Sequence[StateKeyPair], *, durable: bool) -> None:
        for entry in entries:
            self._append(op="record", name=entry.name, target=entry.target, entry=entry,
                         durable=durable)

    def current(self, name: str, *, target: str = DEFAULT_TARGET) -> StateKeyPair | None:
        self._ensure_loaded()
        with self._mutex:
            return self._entries.get(keypair_address(name, target))

    def forget(self, name: str, *, target: str = DEFAULT_TARGET) -> None:
        self._prepare_write()
        self._append(op="forget", name=name, target=target, entry=None)

    def _keeps_private_key(self, entry: StateKeyPair | None) -> bool:
        """Whether ``entry`` holds the sealed private key its name already has (under _mutex)."""
        if entry is None or entry.private_key is None:
            return False
        prior = self._entries.get(address_of(entry))
        return prior is not None and prior.private_key == entry.private_key

    def _journal_lines(self, *, op: str, name: str, target: str, entry: StateKeyPair | None,
                       with_key: bool, previous: str) -> tuple[bytes, str]:
        """The journal line of one change (under _mutex, after ``_prepare_write``), chained on
        ``previous``; the key block's line first if ``with_key``. Returns the last MAC."""
        key = self._state_key
        if key is None or self._key != key.block:
            raise StateError("internal error: a journal line without the state key")
        line = b""
        if with_key:
            line, previous = encode_journal_line(lineage=self._lineage, base=self._serial,
                                                 op="key", key=self._key, mac_key=key,
                                                 previous=previous)
        more, tag = encode_journal_line(lineage=self._lineage, base=self._serial, op=op,
                                        name=name, target=target, entry=entry, mac_key=key,
                                        previous=previous,
                                        keep_private_key=self._keeps_private_key(entry))
        return line + more, tag

    def _change(self, at: Address, entry: StateKeyPair | None) -> None:
        if entry is not None:
            self._entries[at] = entry
        else:
            self._entries.pop(at, None)

    # --- commit, export and push -------------------------------------------------------------

    def _pending(self) -> StateDocument | None:
        """The document a commit writes now (under _mutex); ``None`` if nothing changed."""
        upgrade = self._upgrading and self._disk.format_version < FORMAT_VERSION
        # a key block added by the upgrade is part of the format (0.1.0 wrote none without a
        # private key), not a change of the state
        changed = self._entries != self._disk.state.keypairs or (
            self._key != self._disk.key and not (upgrade and self._disk.key is None))
        # a rekey seals the same entries under another key (its changes are committed first)
        rekey = self._rekeying and self._key != self._disk.key
        if not (changed or upgrade):
            return None
        # an upgrade or a rekey alone keeps the serial: the same state, in another format or
        # under another key
        bump = changed and not rekey
        state = State(lineage=self._lineage, serial=self._serial + 1 if bump else self._serial,
                      keypairs=dict(self._entries), targets=self._targets_now())
        return StateDocument(state, self._key)

    def exists(self) -> bool:
        """Whether there is a state here: a document, or the journal of an interrupted first
        run. Loads the state if need be; writes nothing."""
        self._ensure_loaded()
        with self._mutex:
            return self._has_document() or self._pending() is not None

    def _needs_write(self) -> bool:
        self._ensure_loaded()
        with self._mutex:
            return self._pending() is not None

    def _fold(self) -> None:
        """Write the pending document, if anything changed (under ``_exclusive``, after
        ``_prepare_write``)."""
        doc = self._pending()
        if doc is None:
            return
        key = self._state_key
        if key is None or doc.key != key.block:
            raise StateError("internal error: a state document without the state key")
        # every older envelope sealed again, bound to its address (see crypto)
        self._entries = _current_envelopes(self._entries, key=key, lineage=self._lineage)
        doc = StateDocument(dataclasses.replace(doc.state, keypairs=dict(self._entries)),
                            doc.key)
        self._write_document(encode_document(doc, key=key))
        self._disk, self._serial = doc, doc.state.serial
        self._targets = dict(doc.state.targets)

    def upgrade(self) -> tuple[State, str] | None:
        """Rewrite a format 1 or 2 state as format 3 (hold the lock around this): every
        private key unsealed with the state key and sealed again bound to its address, the
        document authenticated, the serial kept unless a journal adds changes; the backup
        keeps the older document. Returns the state and the key id; ``None`` if already
        format 3."""
        self._ensure_loaded()
        with self._migrate_mutex:
            if self._disk.format_version >= FORMAT_VERSION:
                return None
            self._upgrading = True
            try:
                key = self._prepare_write()
                with self._key_mutex:
                    # the key the block names, or StateKeyError
                    self._keys.resolve(self._key, lineage=self._lineage)
                return self.commit(), key.id
            finally:
                self._upgrading = False

    def rekey(self) -> tuple[State, KeyBlock, KeyBlock]:
        """Seal every private key again under a fresh key (hold the lock around this): of the
        chosen provider, else of the one that sealed the state (a new KMS data key, a new
        salt for a passphrase; a key file's key stays what the file holds, every value gets a
        new nonce). Pending journal changes are committed first, under the old key; then one
        new document, written as every commit is (a complete file renamed over the old one;
        the backup keeps the previous one), at the same serial: the same state under another
        key (a key file's rekey, under the same key, takes the next serial, so that its backup
        is not taken for a rollback). Returns the state and the old and new key blocks."""
        self._ensure_loaded()
        with self._migrate_mutex:
            self._rekeying = True
            try:
                old = self._prepare_write()  # a format 2 state is migrated first
                self.commit()  # what the journal holds, folded in under the old key
                with self._key_mutex:
                    new = self._keys.fresh(self._key, lineage=self._lineage)
                with self._mutex:
                    before = self._key
                    assert before is not None
                    self._entries = {at: _resealed(e, old=old, new=new, lineage=self._lineage)
                                     for at, e in self._entries.items()}
                    self._key, self._state_key = new.block, new
                return self.commit(), before, new.block
            finally:
                self._rekeying = False

    def prepare_key(self) -> tuple[KeyBlock, KeyBlock] | None:
        """With a provider chosen: make sure this run can write before anything is asked of
        the cloud (a new state's KMS data key is made now; KMS failing stops the run here,
        with nothing written), and move a state sealed by another provider (``fallback``)
        to the chosen one now, as ``rekey`` does. Returns the old and new key blocks when it
        moved; nothing chosen: does nothing."""
        if self._keys.choice is None:
            return None
        self._ensure_loaded()
        before = self._disk.key
        self._prepare_write()
        after = self._key
        return (before, after) if before is not None and after is not None \
            and before != after else None

    @property
    def key_provider(self) -> str | None:
        """Who holds the state's key (``kms``, ``passphrase``, ``key_file``); None without a
        key block."""
        self._ensure_loaded()
        return self._key.provider if self._key is not None else None

    def export(self) -> bytes:
        """The document a commit would write now (secrets stay sealed): the bytes as read if
        nothing changed, else a document authenticated with the key."""
        if not self._needs_write() and self._disk.raw:
            return self._disk.raw
        key = self._prepare_write(migrate=False)  # writes nothing, so migrates nothing
        with self._mutex:
            doc = self._pending() or StateDocument(self._snapshot(), self._key)
            entries = _current_envelopes(doc.state.keypairs, key=key, lineage=self._lineage)
            doc = StateDocument(dataclasses.replace(doc.state, keypairs=entries), doc.key)
            return encode_document(doc, key=key)

    def push(self, data: bytes, *, source: str, force: bool = False) -> State:
        """Replace the state with the document ``data`` (hold the lock around this).

        Refuses another lineage, or a serial not above the current one, unless ``force``.
        Pending journal changes are committed first, so the backup holds them.
        """
        doc = decode_document(data, source=source)
        if doc.format_version < 2:
            raise format_1_refusal(source, doing=f"push {source}")
        current = self.commit()
        state = doc.state
        if self._has_document():
            self.require_current_format(doing=f"replace it with {source}")
            if not force:
                check_push(doc.state, current, source=source, target=self.description)
            elif state.lineage == current.lineage and state.serial <= current.serial:
                # forced back to an older serial: numbered above the state it replaces, so that
                # it is not taken for a rollback to its own backup (see ``local``)
                state = dataclasses.replace(state, serial=current.serial + 1)
                self._say(f"reconciler: {source} (serial {doc.state.serial}) is written as "
                          f"serial {state.serial}, above the state it replaces; saved plans "
                          "made from either are stale.")
        with self._key_mutex:
            # a key that cannot open it: refuse before writing
            key = self._keys.resolve(doc.key, lineage=doc.state.lineage)
        verify_document(doc, key=key, source=source)
        self._refuse_downgrade(doc, [])
        # a format 2 document is written as format 3: its secrets bound to their addresses
        state = dataclasses.replace(state, keypairs=_current_envelopes(
            state.keypairs, key=key, lineage=state.lineage))
        doc = StateDocument(state, key.block)
        with self._exclusive():
            self._write_document(encode_document(doc, key=key))
            self._reset(doc)
            self._state_key, self._integrity = key, Integrity.VERIFIED
            return self._snapshot()

    # --- the lock ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, *, operation: str, timeout: float) -> Iterator[dict[str, str]]:
        info = self._lock.acquire(operation=operation, timeout=timeout)
        try:
            yield info
        finally:
            self._lock.release()

    def force_unlock(self, lock_id: str) -> None:
        self._lock.force_unlock(lock_id)


def _check_entry(entry: StateKeyPair) -> None:
    if not _NAME_RE.fullmatch(entry.name):
        raise StateError(f"cannot record {entry.name!r}: not a valid key pair name.")
    if not is_target_name(entry.target):
        raise StateError(f"cannot record {entry.name!r}: {entry.target!r} is not a valid "
                         "target name.")


def address_of(entry: StateKeyPair) -> Address:
    """The address an entry is kept under."""
    return keypair_address(entry.name, entry.target)


def _resealed(entry: StateKeyPair, *, old: StateKey, new: StateKey,
              lineage: str) -> StateKeyPair:
    """``entry`` with its private key (if any) unsealed with ``old`` and sealed with ``new``."""
    address = full_address(entry.name, entry.target)

    def again(sealed: SealedSecret | None) -> SealedSecret | None:
        if sealed is None:
            return None
        secret = old.unseal(lineage=lineage, name=entry.name, address=address, sealed=sealed)
        return new.seal(lineage=lineage, address=address, secret=secret)

    deposed = entry.deposed  # a rotation under way: the previous generation's key too
    if deposed is not None and deposed.private_key is not None:
        entry = dataclasses.replace(entry, deposed=dataclasses.replace(
            deposed, private_key=again(deposed.private_key)))
    if entry.private_key is None:
        return entry
    return dataclasses.replace(entry, private_key=again(entry.private_key))


def _current_envelopes(entries: Mapping[Address, StateKeyPair], *, key: StateKey,
                       lineage: str) -> dict[Address, StateKeyPair]:
    """``entries`` with every private key in a current envelope, bound to its address (those
    that are already are kept as they are: nothing is decrypted for them)."""
    out: dict[Address, StateKeyPair] = {}
    for at, e in entries.items():
        sealed = e.private_key
        if sealed is not None and envelope_version(sealed) != ENVELOPE_VERSION:
            e = dataclasses.replace(e, private_key=key.reseal(
                lineage=lineage, name=at.name, address=full_address(at.name, e.target),
                sealed=sealed))
        old = e.deposed.private_key if e.deposed is not None else None
        if old is not None and envelope_version(old) != ENVELOPE_VERSION:
            assert e.deposed is not None
            e = dataclasses.replace(e, deposed=dataclasses.replace(e.deposed, private_key=(
                key.reseal(lineage=lineage, name=at.name,
                           address=full_address(at.name, e.target), sealed=old))))
        out[at] = e
    return out
