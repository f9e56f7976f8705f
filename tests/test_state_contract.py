"""The state store contract, run against every backend: local file and S3 (moto's server).

What plan, apply and the state commands rely on, whatever holds the state: an empty start,
journaled records visible before commit, commit folding them in with a backup, replay after
a crash, sealing, the lock with Terraform's message, force-unlock, export and push.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_state_s3_support import new_bucket
from test_state_support import as_format_1, at, entry, key_env, remac

from reconciler.errors import (
    StateCorruptError,
    StateError,
    StateFormatError,
    StateKeyError,
    StateLockError,
    StateTamperedError,
)
from reconciler.model import EntryStatus, Secret
from reconciler.state.codec import checksum
from reconciler.state.local import LocalStateStore
from reconciler.state.protocol import Integrity, StateStore


@dataclass
class Target:
    """One backend's state location: fresh stores on it, and its raw contents."""

    kind: str
    make: Callable[[dict[str, str], bool], StateStore]
    contents: Callable[[], dict[str, bytes]]
    environ: dict[str, str]
    write: Callable[[str, bytes], None]  # a raw object or file, by its name in contents()

    def store(self, environ: dict[str, str] | None = None, *, verify: bool = True) -> StateStore:
        return self.make(self.environ if environ is None else environ, verify)

    def document(self) -> dict[str, Any]:
        (data,) = [v for k, v in self.contents().items() if k.endswith("s.json")]
        return dict(json.loads(data))

    def backup(self) -> dict[str, Any]:
        (data,) = [v for k, v in self.contents().items() if k.endswith("s.json.backup")]
        return dict(json.loads(data))


@pytest.fixture(params=["local", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    environ = key_env(tmp_path)
    if request.param == "local":
        directory = tmp_path / "state"
        directory.mkdir()

        def contents() -> dict[str, bytes]:
            return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}

        def write(name: str, data: bytes) -> None:
            (directory / name).write_bytes(data)

        yield Target("local", lambda env, verify: LocalStateStore(
            directory / "s.json", environ=env, verify=verify), contents, environ, write)
    else:
        bucket = new_bucket()
        yield Target("s3", lambda env, verify: bucket.store(env, key="team/s.json",
                                                            verify=verify),
                     bucket.snapshot, environ, bucket.write)


def test_missing_state_is_empty_and_nothing_is_written(target: Target) -> None:
    store = target.store()
    state = store.load()
    assert state.serial == 0 and not state.keypairs and len(state.lineage) == 36
    assert store.commit().serial == 0
    assert target.contents() == {}


def test_records_are_visible_before_commit_and_commit_folds_them_in(target: Target) -> None:
    store = target.store()
    lineage = store.load().lineage
    store.record(entry("a", store.seal("a", Secret("k1"))))
    assert not any(k.endswith("s.json") for k in target.contents())  # journaled only
    assert target.store().load().names() == ["a"]  # another reader sees it
    state = store.commit()
    assert (state.serial, state.lineage) == (1, lineage)
    assert [k for k in target.contents() if "journal" in k] == []
    store.record(entry("b"))
    store.forget("a")
    assert store.commit().serial == 2
    assert target.backup()["serial"] == 1 and list(target.backup()["keypairs"]) == [at("a")]
    assert target.document()["serial"] == 2
    reloaded = target.store()
    state = reloaded.load()
    assert state.names() == ["b"] and state.serial == 2


def test_commit_without_changes_keeps_the_serial(target: Target) -> None:
    store = target.store()
    store.load()
    store.record(entry("a"))
    store.commit()
    store.record(entry("a"))  # the same entry again
    assert store.commit().serial == 1
    store.forget("missing")
    assert store.commit().serial == 1


def test_crash_before_any_commit_keeps_lineage_key_and_secrets(target: Target) -> None:
    env = {"RECONCILER_PASSPHRASE": "pw"}
    store = target.store(env)
    lineage = store.load().lineage
    store.record(entry("a", store.seal("a", Secret("secret-a"))))
    del store  # the process dies here: no document, only the journal
    again = target.store(env)
    state = again.load()
    assert state.lineage == lineage
    sealed = state.entry("a").private_key
    assert sealed is not None and again.unseal("a", sealed).reveal() == "secret-a"
    again.record(entry("b"))
    assert again.commit().serial == 1
    final = target.store(env)
    state = final.load()
    sealed = state.entry("a").private_key
    assert sorted(state.names()) == ["a", "b"]
    assert sealed is not None and final.unseal("a", sealed).reveal() == "secret-a"


def test_pending_then_ready_keeps_the_sealed_key_through_replay(target: Target) -> None:
    store = target.store()
    store.load()
    pending = entry("a", store.seal("a", Secret("secret-a")), status=EntryStatus.PENDING)
    store.record(pending)
    store.record(dataclasses.replace(pending, status=EntryStatus.READY))
    replayed = target.store()  # as after a crash: no commit happened
    kp = replayed.load().entry("a")
    assert kp.status is EntryStatus.READY and kp.private_key == pending.private_key
    assert replayed.unseal("a", kp.private_key).reveal() == "secret-a"
    replayed.commit()
    kp = target.store().load().entry("a")
    assert kp.status is EntryStatus.READY and kp.private_key == pending.private_key


def test_wrong_key_is_caught_before_anything_is_written(target: Target, tmp_path: Path) -> None:
    store = target.store()
    store.load()
    store.record(entry("a", store.seal("a", Secret("k"))))
    store.commit()
    other_key = tmp_path / "other.key"
    other_key.write_text("22" * 32)
    before = target.contents()
    for verify in (True, False):  # a key that is given is checked, by readers too
        wrong = target.store({"RECONCILER_KEY_FILE": str(other_key)}, verify=verify)
        with pytest.raises(StateKeyError, match="wrong state encryption key"):
            wrong.load()
        with pytest.raises(StateKeyError, match="wrong state encryption key"):
            wrong.seal("b", Secret("k"))
    assert target.contents() == before


def test_invalid_name_is_refused_before_writing(target: Target) -> None:
    store = target.store()
    store.load()
    with pytest.raises(StateError, match="not a valid key pair name"):
        store.record(entry("bad name"))
    assert target.contents() == {}


def test_concurrent_records_from_threads_all_survive(target: Target) -> None:
    store = target.store()
    store.load()

    def work(start: int) -> None:
        for i in range(start, start + 8):
            store.record(entry(f"k{i}", store.seal(f"k{i}", Secret(f"s{i}"))))

    threads = [threading.Thread(target=work, args=(n * 8,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(target.store().load().keypairs) == 48
    store.commit()
    fresh = target.store()
    state = fresh.load()
    assert len(state.keypairs) == 48
    sealed = state.entry("k47").private_key
    assert sealed is not None and fresh.unseal("k47", sealed).reveal() == "s47"


def test_tampered_document_is_refused_and_left_alone(target: Target) -> None:
    store = target.store()
    store.load()
    store.record(entry("a"))
    store.commit()
    doc = target.document()
    doc["serial"] = 7  # a hand edit without fixing the checksum
    other = target.store()
    _overwrite_document(target, json.dumps(doc).encode())
    before = target.contents()
    with pytest.raises(StateCorruptError, match="checksum does not match"):
        other.load()
    assert target.contents() == before


def _overwrite_document(target: Target, data: bytes) -> None:
    # Both backends expose their raw location through the store they make.
    store = target.store()
    if isinstance(store, LocalStateStore):
        store.path.write_bytes(data)
    else:
        from reconciler.state.s3 import S3StateStore

        assert isinstance(store, S3StateStore)
        store._objects.put(store.object_key, data)


def test_push_checks_lineage_and_serial_and_export_writes_nothing(target: Target) -> None:
    store = target.store()
    store.load()
    store.record(entry("a"))
    store.commit()
    old = store.export()
    copy = target.store()
    copy.load()
    copy.record(entry("b"))
    before = target.contents()
    newer = copy.export()  # what the copy's next commit writes: serial 2, same lineage
    assert target.contents() == before  # export folds the journal in without writing
    assert json.loads(newer)["serial"] == 2
    doc = json.loads(newer)  # the same entries in another state
    doc["lineage"] = "00000000-0000-4000-8000-000000000000"
    doc["checksum"] = checksum(doc)
    remac(doc, target.environ)  # another state, written with the same key
    other_lineage = json.dumps(doc).encode()

    copy.forget("b")  # the copy's journal object must not leak into the pushed state
    assert store.push(newer, source="newer.json").serial == 2
    assert sorted(target.store().load().names()) == ["a", "b"]
    assert target.backup()["serial"] == 1
    before = target.contents()
    with pytest.raises(StateError, match=r"serial 1 is not newer than .*--force"):
        store.push(old, source="old.json")
    with pytest.raises(StateError, match=r"lineage .* differs"):
        store.push(other_lineage, source="f.json")
    with pytest.raises(StateCorruptError, match="checksum"):
        store.push(newer.replace(b'keypair.b[', b'keypair.c['), source="bad.json")
    assert target.contents() == before
    assert sorted(store.push(other_lineage, source="f.json", force=True).names()) == ["a", "b"]
    assert target.store().load().lineage == doc["lineage"]


def test_second_holder_gets_terraform_like_lock_info_then_force_unlock(target: Target) -> None:
    first, second = target.store({"USER": "alice"}), target.store({"USER": "bob"})
    with first.lock(operation="apply", timeout=0) as info:
        started = time.monotonic()
        with pytest.raises(StateLockError) as err, second.lock(operation="plan", timeout=0.3):
            pass
        assert time.monotonic() - started >= 0.3
        message = str(err.value)
        assert message.startswith("Error acquiring the state lock\n\nLock Info:\n")
        assert f"  ID:        {info['id']}\n" in message
        assert "  Operation: apply\n" in message and "  Who:       alice@" in message
        assert f"`reconciler force-unlock {info['id']}`" in message
        assert err.value.lock_info["id"] == info["id"]
        assert info["path"] in message and info["path"].endswith("s.json")
        with pytest.raises(StateLockError, match=f"does not match .*{info['id']}"):
            second.force_unlock("not-the-id")
        with pytest.raises(StateLockError), second.lock(operation="plan", timeout=0):
            pass
    with second.lock(operation="plan", timeout=0) as again:
        assert again["who"].startswith("bob@") and again["id"] != info["id"]
    with pytest.raises(StateLockError, match="not locked"):
        second.force_unlock(info["id"])


def test_waiting_for_the_lock(target: Target) -> None:
    first, second = target.store(), target.store()
    held = threading.Event()

    def hold() -> None:
        with first.lock(operation="apply", timeout=0):
            held.set()
            time.sleep(0.4)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    started = time.monotonic()
    with second.lock(operation="apply", timeout=10) as info:
        waited = time.monotonic() - started
        assert info["operation"] == "apply"
    thread.join()
    assert 0.2 < waited < 5
    with (pytest.raises(StateLockError, match="already locked by this command"),
          second.lock(operation="a", timeout=0), second.lock(operation="b", timeout=0)):
        pass


def _document_name(target: Target) -> str:
    (name,) = [k for k in target.contents() if k.endswith("s.json")]
    return name


def test_a_document_edited_with_its_checksum_recomputed_is_refused(target: Target) -> None:
    store = target.store()
    store.load()
    store.record(entry("a", store.seal("a", Secret("k"))))
    store.record(entry("b"))
    store.commit()
    doc = target.document()
    del doc["keypairs"][at("b")]
    doc["keypairs"][at("a")]["fingerprint_sha256"] = "SHA256:" + "A" * 43
    doc["checksum"] = checksum(doc)  # what anyone who can write the state can do
    target.write(_document_name(target), json.dumps(doc, indent=2).encode())
    before = target.contents()
    for verify in (True, False):  # with the key, readers check it too
        with pytest.raises(StateTamperedError, match=r"s\.json failed its integrity check"):
            target.store(verify=verify).load()
    # Without a key a reader still reads it, unverified; it can neither write nor reveal.
    keyless = target.store({"HOME": "/nonexistent"}, verify=False)
    state = keyless.load()
    assert keyless.integrity is Integrity.UNVERIFIED and not state.verified
    assert sorted(state.names()) == ["a"]
    sealed = state.entry("a").private_key
    assert sealed is not None
    with pytest.raises(StateKeyError, match="read without the state key"):
        keyless.unseal("a", sealed)
    with pytest.raises(StateKeyError, match="read without the state key"):
        keyless.record(entry("c"))
    with pytest.raises(StateKeyError, match=r"RECONCILER_PASSPHRASE|no key was given"):
        target.store({"HOME": "/nonexistent"}).load()  # a writer needs the key
    assert target.contents() == before


def test_a_verified_state_says_so(target: Target) -> None:
    store = target.store()
    store.load()
    store.record(entry("a"))
    store.commit()
    again = target.store(verify=False)  # a reader with the key verifies
    assert again.load().verified and again.integrity is Integrity.VERIFIED


def test_a_forged_journal_change_is_refused(target: Target) -> None:
    store = target.store()
    store.load()
    store.record(entry("a", store.seal("a", Secret("k"))))
    store.commit()
    store.record(entry("b"))  # a journal now exists, on top of serial 1
    journal = {k: v for k, v in target.contents().items() if "journal" in k}
    (name, body) = next(iter(journal.items()))
    line = json.loads(body.splitlines()[-1])
    forged = {**line, "op": "forget", "address": at("a")}
    forged.pop("entry", None)
    if target.kind == "local":
        target.write(name, body + json.dumps(forged).encode() + b"\n")
    else:  # another object, next in sequence, under the same serial
        target.write(name.rsplit("/", 1)[0] + "/0000000099-0123456789ab.jsonl",
                     json.dumps(forged).encode() + b"\n")
    before = target.contents()
    with pytest.raises(StateTamperedError, match="failed its integrity check"):
        target.store().load()
    assert target.contents() == before


def test_a_format_1_document_is_written_only_by_upgrade(target: Target) -> None:
    """Nothing in a format 1 document tells a real 0.1.0 file from a newer one stripped of its
    MAC, so no write upgrades it implicitly: only ``upgrade``, at the same serial."""
    store = target.store()
    store.load()
    store.record(entry("a"))
    store.record(entry("b"))
    store.commit()
    doc = target.document()
    as_format_1(doc)
    doc["checksum"] = checksum(doc)
    target.write(_document_name(target), json.dumps(doc, indent=2).encode())
    pushed = target.store().export()  # format 1, nothing pending: the bytes as they are
    assert json.loads(pushed)["format_version"] == 1
    before = target.contents()
    old = target.store()
    assert sorted(old.load().names()) == ["a", "b"] and old.integrity is Integrity.FORMAT_1
    refusal = r"is in state format 1 \(written by reconciler 0\.1\.0\).*`reconciler state upgrade`"
    for write in (lambda: old.record(entry("c")), lambda: old.forget("a"),
                  lambda: old.seal("c", Secret("k")),
                  lambda: old.push(pushed, source="old.json", force=True)):
        with pytest.raises(StateFormatError, match=refusal):
            write()
    assert old.commit().serial == 1  # nothing changed: nothing written, not even the format
    assert target.contents() == before
    upgrading = target.store()
    upgrading.load()
    with upgrading.lock(operation="state upgrade", timeout=0):
        done = upgrading.upgrade()
    assert done is not None and done[0].serial == 1  # a format change only
    assert target.document()["format_version"] == 3 and target.document()["serial"] == 1
    assert target.backup()["format_version"] == 1  # the file as it was
    fresh = target.store()
    assert sorted(fresh.load().names()) == ["a", "b"]
    assert fresh.integrity is Integrity.VERIFIED
    assert fresh.upgrade() is None
    fresh.record(entry("c"))
    assert fresh.commit().serial == 2


def test_a_format_2_document_is_migrated_by_the_first_write(target: Target,
                                                           tmp_path: Path) -> None:
    """The document of the last format 2 release (150 sealed keys, tests/data/
    state-format-2-200): read verified, migrated by the first write in one step (every secret
    sealed again bound to its address, the serial kept), the backup keeping the format 2
    document; then the write itself lands on top."""
    data = Path(__file__).parent / "data" / "state-format-2-200"
    key = tmp_path / "format-2.key"
    key.write_bytes((data / "state.key").read_bytes())
    key.chmod(0o600)
    environ = {**target.environ, "RECONCILER_KEY_FILE": str(key)}
    original = (data / "s.json").read_bytes()
    target.write("s.json" if target.kind == "local" else "team/s.json", original)
    store = target.store(environ)
    assert len(store.load().keypairs) == 150 and store.integrity is Integrity.VERIFIED
    assert store.format_version == 2
    store.record(entry("new", store.seal("new", Secret("secret-new"))))  # migrates first
    assert target.document()["format_version"] == 3 and target.document()["serial"] == 1
    backup = [v for k, v in target.contents().items() if k.endswith("s.json.backup")]
    assert backup == [original]
    assert store.commit().serial == 2
    fresh = target.store(environ)
    state = fresh.load()
    assert sorted(state.names()) == sorted([f"k{i}" for i in range(150)] + ["new"])
    for address, kp in state.keypairs.items():
        name = address.name
        assert kp.private_key is not None and kp.private_key.envelope.startswith("v3:")
        assert fresh.unseal(name, kp.private_key).reveal() == f"secret-{name}"
