"""The S3 state store's own behaviour: object layout, stale writes, replay after a crash, the
lock object across processes, stores without conditional writes, choosing and configuring it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_state_s3_support import CREDENTIALS, new_bucket
from test_state_support import entry, key_env

from reconciler.env import Env
from reconciler.errors import (
    StaleStateError,
    StateCorruptError,
    StateError,
    StateLockError,
    UsageError,
)
from reconciler.model import S3Location, Secret
from reconciler.state import s3io
from reconciler.state.factory import choose_backend, open_store
from reconciler.state.s3 import S3StateStore
from reconciler.state.s3io import addressing_style, resolve_region

KEY = "team/state.json"


def test_objects_beside_the_state(tmp_path: Path) -> None:
    bucket = new_bucket()
    store = bucket.store(key_env(tmp_path))
    store.load()
    store.record(entry("a", store.seal("a", Secret("plain-secret-value"))))
    store.record(entry("b"))
    journal = bucket.listing(f"{KEY}.journal/")
    assert [k.rsplit("/", 2)[1] for k in journal] == ["0000000000"] * 2
    assert [k.rsplit("/", 1)[1][:10] for k in journal] == ["0000000001", "0000000002"]
    first = bucket.read(journal[0]).splitlines()
    assert [json.loads(line)["op"] for line in first] == ["key", "record"]  # codec's lines
    assert b"plain-secret-value" not in bucket.read(journal[0])  # sealed
    store.commit()
    assert bucket.listing() == [KEY]
    store.record(entry("c"))
    assert store.commit().serial == 2
    assert bucket.listing() == [KEY, f"{KEY}.backup"]
    assert json.loads(bucket.read(f"{KEY}.backup"))["serial"] == 1
    with store.lock(operation="apply", timeout=0) as info:
        assert json.loads(bucket.read(f"{KEY}.lock")) == info
        assert set(info) == {"id", "operation", "who", "created", "version", "path"}
        assert info["path"] == f"s3://{bucket.name}/{KEY}"
    assert f"{KEY}.lock" not in bucket.listing()


def test_stale_commit_is_refused_and_its_changes_kept(tmp_path: Path) -> None:
    bucket = new_bucket()
    one, two = bucket.store(key_env(tmp_path)), bucket.store(key_env(tmp_path))
    one.load()
    two.load()
    one.record(entry("a"))
    two.record(entry("b", two.seal("b", Secret("only-in-two"))))
    assert one.commit().serial == 1
    with pytest.raises(StaleStateError, match=r"changed since this command read it at serial 0"
                       r".*Nothing was overwritten.*\.rejected/"):
        two.commit()
    state = bucket.store(key_env(tmp_path)).load()
    assert state.names() == ["a"] and state.serial == 1
    rejected = bucket.listing(f"{KEY}.rejected/")
    assert len(rejected) == 1 and b'keypair.b[' in bucket.read(rejected[0])
    assert bucket.listing(f"{KEY}.journal/") == []
    # The same on an existing document (If-Match on the ETag read at load):
    three, four = bucket.store(key_env(tmp_path)), bucket.store(key_env(tmp_path))
    three.load()
    four.load()
    three.record(entry("c"))
    four.record(entry("d"))
    three.commit()
    with pytest.raises(StaleStateError):
        four.commit()
    assert sorted(bucket.store(key_env(tmp_path)).load().names()) == ["a", "c"]


def test_journal_objects_a_commit_did_not_fold_are_never_skipped(tmp_path: Path) -> None:
    """A writer that went on after another committed (a force-unlock, no lock): its objects
    lie under an older serial. Skipping them and letting the next commit delete them would
    lose its private keys; the load refuses instead, and nothing is removed."""
    bucket = new_bucket()
    first = bucket.store(key_env(tmp_path))
    first.load()
    first.record(entry("x"))
    first.commit()
    one, two = bucket.store(key_env(tmp_path)), bucket.store(key_env(tmp_path))
    one.load()
    two.load()
    one.record(entry("a"))
    assert one.commit().serial == 2
    two.record(entry("b", two.seal("b", Secret("only-in-two"))))  # under serial 1
    with pytest.raises(StateCorruptError, match=r"holds changes from serial 1 .* for b"):
        bucket.store(key_env(tmp_path)).load()
    assert len(bucket.listing(f"{KEY}.journal/")) == 1


def test_a_store_without_conditional_writes_still_refuses_stale_commits(tmp_path: Path) -> None:
    bucket = new_bucket()
    one = bucket.store(key_env(tmp_path), conditional_writes=False)
    two = bucket.store(key_env(tmp_path), conditional_writes=False)
    one.load()
    two.load()
    one.record(entry("a"))
    two.record(entry("b"))
    one.commit()
    with pytest.raises(StaleStateError):
        two.commit()
    with one.lock(operation="apply", timeout=0), pytest.raises(StateLockError), \
            two.lock(operation="apply", timeout=0):
        pass


def test_the_probe_finds_conditional_writes_and_leaves_nothing(tmp_path: Path) -> None:
    notes: list[str] = []
    bucket = new_bucket()
    store = bucket.store(key_env(tmp_path), notice=notes.append)
    with store.lock(operation="apply", timeout=0):
        pass
    assert bucket.listing() == [] and notes == []


def test_commit_that_died_before_removing_its_journal_replays_idempotently(
    tmp_path: Path,
) -> None:
    bucket = new_bucket()
    store = bucket.store(key_env(tmp_path))
    store.load()
    store.record(entry("a"))
    store.commit()
    store.record(entry("b"))
    store.forget("a")
    leftovers = {k: bucket.read(k) for k in bucket.listing(f"{KEY}.journal/")}
    store.commit()
    for key, data in leftovers.items():  # as if the deletes never happened
        bucket.write(key, data)
    again = bucket.store(key_env(tmp_path))
    state = again.load()
    assert state.serial == 2 and state.names() == ["b"]
    again.record(entry("c"))
    assert again.commit().serial == 3
    assert sorted(bucket.store(key_env(tmp_path)).load().names()) == ["b", "c"]
    assert bucket.listing(f"{KEY}.journal/") == []  # the old leftovers went too


def test_journal_of_a_newer_serial_or_another_state_is_refused(tmp_path: Path) -> None:
    bucket = new_bucket()
    store = bucket.store(key_env(tmp_path))
    store.load()
    store.record(entry("a"))
    store.commit()
    store.record(entry("b"))
    (newer,) = bucket.listing(f"{KEY}.journal/")
    bucket.write(newer.replace("0000000001/", "0000000005/"), bucket.read(newer))
    before = bucket.snapshot()
    with pytest.raises(StateCorruptError, match=r"on top of serial 5.*replaced by an older"):
        bucket.store(key_env(tmp_path)).load()
    assert bucket.snapshot() == before
    bucket.delete(newer.replace("0000000001/", "0000000005/"))
    other = new_bucket().store(key_env(tmp_path))
    other.load()
    other.record(entry("z"))
    foreign = other._objects.keys(other.journal_prefix)[0]
    bucket.write(f"{KEY}.journal/0000000001/0000000009-000000000000.jsonl",
                 other._objects.get(foreign)[0])  # type: ignore[index]
    # Renamed into this journal, its MAC (chained on its name) no longer fits.
    with pytest.raises(StateCorruptError, match="failed its integrity check"):
        bucket.store(key_env(tmp_path)).load()


def test_missing_document_with_a_backup_is_refused(tmp_path: Path) -> None:
    bucket = new_bucket()
    store = bucket.store(key_env(tmp_path))
    store.load()
    for name in ("a", "b"):
        store.record(entry(name))
        store.commit()
    bucket.delete(KEY)
    with pytest.raises(StateCorruptError, match=r"missing but .*backup exists"):
        bucket.store(key_env(tmp_path)).load()


def test_an_object_larger_than_the_cap_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state object is read in chunks up to MAX_OBJECT_BYTES (1 GiB; 4 KiB here), never
    whole whatever its size: one byte over is a StateError naming the bucket and key."""
    bucket = new_bucket()
    store = bucket.store(key_env(tmp_path))
    store.load()
    store.record(entry("a"))
    store.commit()
    size = len(bucket.read(KEY))
    monkeypatch.setattr(s3io, "MAX_OBJECT_BYTES", size)
    assert "a" in bucket.store(key_env(tmp_path)).load().names()  # exactly the cap: read
    monkeypatch.setattr(s3io, "MAX_OBJECT_BYTES", size - 1)
    with pytest.raises(StateError) as info:
        bucket.store(key_env(tmp_path)).load()
    text = str(info.value)
    assert f"s3://{bucket.name}/{KEY}" in text and "larger than" in text, text
    monkeypatch.setattr(s3io, "MAX_OBJECT_BYTES", 4096)
    bucket.write(KEY, b"{" + b" " * (1 << 20) + b"}")
    with pytest.raises(StateError, match=r"larger than 0\.00390625 MiB"):
        bucket.store(key_env(tmp_path)).load()


HOLDER = r"""
import sys
from reconciler.model import S3Location
from reconciler.state.s3 import S3StateStore
store = S3StateStore(S3Location(sys.argv[1], sys.argv[2], sys.argv[3]),
                     environ={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b",
                              "USER": "alice"})
with store.lock(operation="apply", timeout=5) as info:
    print(info["id"], flush=True)
    sys.stdin.readline()
"""


def test_lock_left_by_a_killed_process_needs_force_unlock(tmp_path: Path) -> None:
    bucket = new_bucket()
    with subprocess.Popen([sys.executable, "-c", HOLDER, bucket.name, KEY, bucket.endpoint],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        lock_id = proc.stdout.readline().strip()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    store = bucket.store({"USER": "bob"})
    with pytest.raises(StateLockError) as err, store.lock(operation="apply", timeout=0):
        pass
    assert err.value.lock_info["id"] == lock_id and "Who:       alice@" in str(err.value)
    store.force_unlock(lock_id)
    with store.lock(operation="apply", timeout=0) as info:
        assert info["id"] != lock_id


def test_missing_bucket_and_credentials_are_clear_errors(tmp_path: Path) -> None:
    bucket = new_bucket()
    location = S3Location(bucket="no-such-bucket-here", key=KEY, endpoint=bucket.endpoint)
    with pytest.raises(StateError, match=r"NoSuchBucket.*create it first"):
        S3StateStore(location, environ=CREDENTIALS).load()
    obs = {"OBS_ACCESS_KEY_ID": "x", "OBS_SECRET_ACCESS_KEY": "y"}  # OBS's own names work too
    located = S3Location(bucket=bucket.name, key=KEY, endpoint=bucket.endpoint)
    assert S3StateStore(located, environ=obs).load().serial == 0


def test_missing_boto3_is_a_usage_error_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    env = Env(environ={}, cwd=tmp_path)
    with pytest.raises(UsageError, match=r"pip install 'keypair-reconciler\[s3\]'"):
        open_store(state_path=None, backend="s3://b/k.json", backend_endpoint=None,
                   manifest_backend=None, env=env, notice=print)


def test_backend_choice_flag_then_environment_then_manifest(tmp_path: Path) -> None:
    manifest = S3Location(bucket="m", key="m.json", endpoint="https://obs")

    def choose(environ: dict[str, str], **kw: object) -> object:
        args: dict[str, object] = {"state_path": None, "backend": None,
                                   "backend_endpoint": None, "manifest_backend": manifest}
        args.update(kw)
        return choose_backend(env=Env(environ=environ, cwd=tmp_path), **args)  # type: ignore[arg-type]

    env = {"RECONCILER_BACKEND": "s3://e/e.json", "RECONCILER_BACKEND_ENDPOINT": "https://env"}
    assert choose({}) == S3Location("m", "m.json", "https://obs")
    assert choose({"RECONCILER_BACKEND_ENDPOINT": "https://env"}) == S3Location(
        "m", "m.json", "https://env")
    assert choose(env) == S3Location("e", "e.json", "https://env")
    assert choose(env, backend="s3://f/f.json", backend_endpoint="https://flag") == S3Location(
        "f", "f.json", "https://flag")
    assert choose(env, state_path="local.json").path == tmp_path / "local.json"  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match="not both"):
        choose({**env, "RECONCILER_STATE": "x.json"})
    with pytest.raises(UsageError, match="RECONCILER_BACKEND 'gs://x/y'"):
        choose({"RECONCILER_BACKEND": "gs://x/y"})


def test_region_and_addressing() -> None:
    obs = S3Location("b", "k", "https://obs.cn-north-4.myhuaweicloud.com")
    minio = S3Location("b", "k", "http://127.0.0.1:9000")
    assert resolve_region(obs, {}) == "cn-north-4"
    assert resolve_region(minio, {}) == "us-east-1"
    assert resolve_region(minio, {"AWS_DEFAULT_REGION": "eu-west-1"}) == "eu-west-1"
    assert resolve_region(S3Location("b", "k", None, "ap-1"), {"AWS_REGION": "x"}) == "ap-1"
    assert addressing_style(minio, {}) == "path"
    assert addressing_style(obs, {}) == "virtual"
    assert addressing_style(S3Location("b", "k"), {}) == "virtual"
    assert addressing_style(obs, {"RECONCILER_BACKEND_ADDRESSING": "path"}) == "path"
