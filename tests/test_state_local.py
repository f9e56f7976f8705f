"""LocalStateStore: journal, commit, backup, replay after crashes, modes, bytes written."""

from __future__ import annotations

import dataclasses
import json
import shutil
import stat
import threading
from pathlib import Path

import pytest
from test_state_support import at, entry, key_env, snapshot

from reconciler.errors import StateCorruptError, StateError, StateKeyError
from reconciler.model import EntryStatus, Secret
from reconciler.state.local import LocalStateStore


def _store(tmp_path: Path) -> LocalStateStore:
    return LocalStateStore(tmp_path / "s.json", environ=key_env(tmp_path))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_missing_state_is_empty_and_nothing_is_written(tmp_path: Path) -> None:
    store = _store(tmp_path)
    state = store.load()
    assert state.serial == 0 and not state.keypairs and len(state.lineage) == 36
    assert store.commit().serial == 0
    assert not (tmp_path / "s.json").exists()


def test_record_is_journaled_then_commit_folds_it_in(tmp_path: Path) -> None:
    store = _store(tmp_path)
    lineage = store.load().lineage
    store.record(entry("a", store.seal("a", Secret("k1"))))
    journal = tmp_path / "s.json.journal"
    assert journal.exists() and not (tmp_path / "s.json").exists()
    assert _mode(journal) == 0o600
    # Another reader sees the journaled change before any commit.
    assert _store(tmp_path).load().names() == ["a"]
    state = store.commit()
    assert state.serial == 1 and state.lineage == lineage
    assert not journal.exists() and _mode(tmp_path / "s.json") == 0o600
    store.record(entry("b"))
    store.forget("a")
    assert store.commit().serial == 2
    assert _mode(tmp_path / "s.json.backup") == 0o600
    backup = json.loads((tmp_path / "s.json.backup").read_text())
    assert backup["serial"] == 1 and list(backup["keypairs"]) == [at("a")]
    reloaded = _store(tmp_path).load()
    assert reloaded.names() == ["b"] and reloaded.serial == 2


def test_commit_without_changes_keeps_the_serial(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()
    store.record(entry("a"))
    store.commit()
    store.record(entry("a"))  # the same entry again
    assert store.commit().serial == 1


def test_crash_after_rename_before_journal_removal_replays_idempotently(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()
    store.record(entry("a"))
    store.commit()
    store.record(entry("b", status=EntryStatus.PENDING))
    store.forget("a")
    journal = (tmp_path / "s.json.journal").read_bytes()
    store.commit()
    (tmp_path / "s.json.journal").write_bytes(journal)  # as if the unlink never happened
    again = _store(tmp_path)
    state = again.load()
    assert state.serial == 2 and state.names() == ["b"]
    again.record(entry("c"))  # appended after the stale lines, on the new base
    assert _store(tmp_path).load().names() == ["b", "c"]
    assert again.commit().serial == 3
    assert _store(tmp_path).load().names() == ["b", "c"]


def test_torn_last_line_is_ignored_and_cut_by_the_next_append(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()
    store.record(entry("a"))
    journal = tmp_path / "s.json.journal"
    with journal.open("ab") as fh:
        fh.write(b'{"v":1,"lineage":"x","ba')  # a crash mid-append
    again = _store(tmp_path)
    assert again.load().names() == ["a"]
    again.record(entry("b"))
    # The key block's line (every line is authenticated: the first write needs the key), a, b.
    assert journal.read_bytes().count(b"\n") == 3 and journal.read_bytes().endswith(b"\n")
    assert _store(tmp_path).load().names() == ["a", "b"]


def test_damaged_journal_line_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()
    for name in ("a", "b", "c"):
        store.record(entry(name))
    journal = tmp_path / "s.json.journal"
    journal.write_bytes(journal.read_bytes().replace(b'keypair.b[', b'keypair.x[', 1))
    before = snapshot(tmp_path)
    # Line 1 is the key block's; line 3 (b) fails its MAC.
    with pytest.raises(StateCorruptError, match=r"line 3 failed its integrity check.*keep it"):
        _store(tmp_path).load()
    assert snapshot(tmp_path) == before


def test_journal_of_another_state_or_a_newer_serial_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()
    store.record(entry("a"))
    store.commit()
    other = tmp_path / "other"
    other.mkdir()
    foreign = LocalStateStore(other / "s.json", environ=key_env(tmp_path))
    foreign.load()
    foreign.record(entry("z"))
    shutil.copy(other / "s.json.journal", tmp_path / "s.json.journal")
    with pytest.raises(StateCorruptError, match="belongs to another state"):
        _store(tmp_path).load()
    # A journal written on serial 1, after the state file was rolled back to serial 0:
    (tmp_path / "s.json.journal").unlink()
    store.record(entry("b"))
    (tmp_path / "s.json").unlink()
    (tmp_path / "s.json.backup").unlink(missing_ok=True)
    before = snapshot(tmp_path)
    with pytest.raises(StateCorruptError, match=r"no key block to check them with.*missing"):
        _store(tmp_path).load()
    assert snapshot(tmp_path) == before


def test_first_run_crash_before_any_commit_keeps_lineage_and_key(tmp_path: Path) -> None:
    env = {"RECONCILER_PASSPHRASE": "pw"}
    store = LocalStateStore(tmp_path / "s.json", environ=env)
    lineage = store.load().lineage
    store.record(entry("a", store.seal("a", Secret("secret-a"))))
    # the process dies here: no state file, only the journal (with lineage, salt and key id)
    again = LocalStateStore(tmp_path / "s.json", environ=env)
    state = again.load()
    assert state.lineage == lineage
    sealed = state.entry("a").private_key
    assert sealed is not None and again.unseal("a", sealed).reveal() == "secret-a"
    again.commit()
    final = LocalStateStore(tmp_path / "s.json", environ=env)
    sealed = final.load().entry("a").private_key
    assert sealed is not None and final.unseal("a", sealed).reveal() == "secret-a"


def test_re_recording_the_same_sealed_key_does_not_repeat_it_in_the_journal(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path)
    store.load()
    pending = entry("a", store.seal("a", Secret("secret-a")), status=EntryStatus.PENDING)
    store.record(pending)
    store.record(dataclasses.replace(pending, status=EntryStatus.READY))
    assert pending.private_key is not None
    lines = (tmp_path / "s.json.journal").read_bytes().splitlines()
    assert [line.count(pending.private_key.envelope.encode()) for line in lines[-2:]] == [1, 0]
    replayed = _store(tmp_path)  # as after a crash: no commit happened
    kp = replayed.load().entry("a")
    assert kp.status is EntryStatus.READY and kp.private_key == pending.private_key
    assert replayed.unseal("a", kp.private_key).reveal() == "secret-a"
    replayed.commit()
    kp = _store(tmp_path).load().entry("a")
    assert kp.status is EntryStatus.READY and kp.private_key == pending.private_key


def test_missing_state_with_a_backup_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()
    for name in ("a", "b"):
        store.record(entry(name))
        store.commit()
    (tmp_path / "s.json").unlink()
    with pytest.raises(StateCorruptError, match=r"missing but .*backup exists.*cp -p"):
        _store(tmp_path).load()


def test_leftover_temporary_files_are_cleaned_by_the_next_commit(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()
    store.record(entry("a"))
    stale = tmp_path / ".s.json.0123456789ab.tmp"
    stale.write_text("half a state")
    store.commit()
    assert not stale.exists()


def test_wrong_key_is_caught_before_anything_is_written(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()
    store.record(entry("a", store.seal("a", Secret("k"))))
    store.commit()
    other_key = tmp_path / "other.key"
    other_key.write_text("22" * 32)
    before = snapshot(tmp_path)
    wrong = LocalStateStore(tmp_path / "s.json", environ={"RECONCILER_KEY_FILE": str(other_key)})
    with pytest.raises(StateKeyError, match="wrong state encryption key"):
        wrong.load()  # the key checks the state's MAC: caught on reading
    with pytest.raises(StateKeyError, match="wrong state encryption key"):
        wrong.seal("b", Secret("k"))
    assert snapshot(tmp_path) == before


def test_invalid_name_is_refused_before_writing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()
    with pytest.raises(StateError, match="not a valid key pair name"):
        store.record(entry("bad name"))
    assert not (tmp_path / "s.json.journal").exists()


def test_concurrent_records_from_threads_all_survive(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()

    def work(start: int) -> None:
        for i in range(start, start + 50):
            store.record(entry(f"k{i}", store.seal(f"k{i}", Secret(f"s{i}"))))

    threads = [threading.Thread(target=work, args=(n * 50,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(_store(tmp_path).load().keypairs) == 400
    store.commit()
    fresh = _store(tmp_path)
    state = fresh.load()
    assert len(state.keypairs) == 400
    sealed = state.entry("k399").private_key
    assert sealed is not None and fresh.unseal("k399", sealed).reveal() == "s399"


def _written_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/self/io")
@pytest.mark.parametrize(("pattern", "count"), [("once", 10_000), ("pending-then-ready", 3_000)])
def test_ten_thousand_key_pairs_write_at_most_three_times_the_final_size(
    tmp_path: Path, pattern: str, count: int
) -> None:
    # "pending-then-ready" is what apply does for a key generated here: the sealed key is on
    # disk before its public half is uploaded, then the entry is recorded again as ready.
    store = _store(tmp_path)
    store.load()
    pem = ("-----BEGIN OPENSSH PRIVATE KEY-----\n" + "x" * 340
           + "\n-----END OPENSSH PRIVATE KEY-----\n")
    entries = [entry(f"k{i:05d}", store.seal(f"k{i:05d}", Secret(pem)),
                     status=EntryStatus.PENDING) for i in range(count)]
    before = _written_bytes()
    for e in entries:
        store.record(e)
        if pattern != "once":
            store.record(dataclasses.replace(e, status=EntryStatus.READY))
    store.commit()
    written = _written_bytes() - before
    final = (tmp_path / "s.json").stat().st_size
    print(f"\n{count:,} key pairs ({pattern}): {written:,} bytes written, final state {final:,} "
          f"bytes, ratio {written / final:.2f}")
    assert written <= 3 * final


def test_push_checks_lineage_and_serial(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()
    store.record(entry("a"))
    store.commit()
    old = (tmp_path / "s.json").read_bytes()
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(tmp_path / "s.json", work / "s.json")
    copy = LocalStateStore(work / "s.json", environ=key_env(tmp_path))
    copy.load()
    copy.record(entry("b"))
    newer = copy.export()  # what the copy's next commit writes: serial 2, same lineage
    foreign = LocalStateStore(tmp_path / "f.json", environ=key_env(tmp_path))
    foreign.load()
    foreign.record(entry("z"))
    other_lineage = foreign.export()

    assert store.push(newer, source="newer.json").serial == 2
    assert sorted(_store(tmp_path).load().names()) == ["a", "b"]
    assert (tmp_path / "s.json.backup").read_bytes() == old
    before = snapshot(tmp_path)
    with pytest.raises(StateError, match=r"serial 1 is not newer than .*--force"):
        store.push(old, source="old.json")
    with pytest.raises(StateError, match=r"lineage .* differs"):
        store.push(other_lineage, source="f.json")
    with pytest.raises(StateCorruptError, match="checksum"):
        store.push(newer.replace(b'keypair.b[', b'keypair.c['), source="bad.json")
    assert snapshot(tmp_path) == before
    assert store.push(other_lineage, source="f.json", force=True).names() == ["z"]
    assert _store(tmp_path).load().names() == ["z"]


def test_pull_folds_in_the_journal_without_writing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()
    store.record(entry("a"))
    before = snapshot(tmp_path)
    doc = json.loads(_store(tmp_path).export())
    assert doc["serial"] == 1 and list(doc["keypairs"]) == [at("a")]
    assert snapshot(tmp_path) == before


def test_readers_without_the_lock_never_see_corruption_during_commits(tmp_path: Path) -> None:
    writer = _store(tmp_path)
    writer.load()
    errors: list[Exception] = []
    done = threading.Event()

    def read() -> None:
        reader = _store(tmp_path)
        while not done.is_set():
            try:
                reader.load()
            except Exception as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(90):
            writer.record(entry(f"k{i}"))
            if i % 3 == 2:
                writer.commit()
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert len(_store(tmp_path).load().keypairs) == 90


def test_older_journal_lines_the_state_lacks_are_refused_not_skipped(tmp_path: Path) -> None:
    """Lines from an older serial are skipped only when the state already holds them; lines
    it lacks (a state file put back, a writer that went on after losing its lock) would be
    lost by the next commit, so the load refuses and changes nothing."""
    store = _store(tmp_path)
    store.load()
    store.record(entry("a"))
    store.commit()
    store.record(entry("b"))
    stray = (tmp_path / "s.json.journal").read_bytes()  # base 1: record b
    store.commit()
    store.forget("b")
    store.commit()  # serial 3: no b
    (tmp_path / "s.json.journal").write_bytes(stray)
    before = snapshot(tmp_path)
    with pytest.raises(StateCorruptError, match=r"holds changes from serial 1 .* for b"):
        _store(tmp_path).load()
    assert snapshot(tmp_path) == before


def test_a_commit_cut_off_after_copying_its_backup_is_not_taken_for_a_rollback(
        tmp_path: Path) -> None:
    """Where no hard link can be made the commit copies the state to its backup before it
    replaces the state: cut off between the two, the backup holds the same bytes, and the
    journal the changes being committed. The next run finishes the commit; a state replaced
    by its backup after a commit (no journal left) is still refused as a rollback."""
    store = _store(tmp_path)
    store.load()
    store.record(entry("a", store.seal("a", Secret("k1"))))
    store.commit()
    store.record(entry("b", store.seal("b", Secret("k2"))))
    store.commit()  # serial 2, the backup at serial 1
    store.record(entry("c", store.seal("c", Secret("k3"))))  # journaled on serial 2
    state, backup = tmp_path / "s.json", tmp_path / "s.json.backup"
    backup.unlink()
    shutil.copyfile(state, backup)  # the commit's copy; then it was cut off
    resumed = _store(tmp_path)
    assert resumed.load().names() == ["a", "b", "c"]
    assert resumed.commit().serial == 3
    assert json.loads(backup.read_text())["serial"] == 2
    (tmp_path / "s.json.journal").unlink(missing_ok=True)
    shutil.copyfile(state, backup)  # the same bytes with no commit under way: a rollback
    with pytest.raises(StateError, match="rollback"):
        _store(tmp_path).load()
