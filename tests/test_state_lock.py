"""The state lock: two processes, timeouts, stale locks, force-unlock."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from reconciler import __version__
from reconciler.errors import StateLockError
from reconciler.state.local import LocalStateStore

HOLDER = r"""
import sys
from pathlib import Path
from reconciler.state.local import LocalStateStore
store = LocalStateStore(Path(sys.argv[1]), environ={"USER": "alice"})
with store.lock(operation="apply", timeout=5) as info:
    print(info["id"], flush=True)
    sys.stdin.readline()
"""


@contextmanager
def holder(path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Another process holding the lock until its stdin gets a line (or it is killed)."""
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        lock_id = proc.stdout.readline().strip()
        assert lock_id
        try:
            yield proc, lock_id
        finally:
            if proc.poll() is None:
                proc.stdin.write("\n")
                proc.stdin.flush()
            proc.wait(timeout=10)


def _store(tmp_path: Path) -> LocalStateStore:
    return LocalStateStore(tmp_path / "s.json", environ={"USER": "bob"})


def test_second_process_fails_with_terraform_like_lock_info(tmp_path: Path) -> None:
    with holder(tmp_path / "s.json") as (_, lock_id):
        lock_file = tmp_path / "s.json.lock"
        assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600
        started = time.monotonic()
        with pytest.raises(StateLockError) as err, _store(tmp_path).lock(operation="plan",
                                                                        timeout=0.2):
            pass
        assert time.monotonic() - started >= 0.2
    message = str(err.value)
    assert message.startswith("Error acquiring the state lock\n\nLock Info:\n")
    assert f"  ID:        {lock_id}\n" in message
    assert f"  Path:      {tmp_path / 's.json'}\n" in message
    assert "  Operation: apply\n" in message and "  Who:       alice@" in message
    assert f"  Version:   {__version__}\n" in message and "  Created:   20" in message
    assert f"`reconciler force-unlock {lock_id}`" in message
    assert err.value.lock_info["id"] == lock_id
    assert not lock_file.exists()  # released: the info file is removed


def test_second_process_waits_for_the_lock(tmp_path: Path) -> None:
    with holder(tmp_path / "s.json") as (proc, _):
        assert proc.stdin is not None

        def release() -> None:
            time.sleep(0.3)
            proc.stdin.write("\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]

        threading.Thread(target=release).start()
        started = time.monotonic()
        with _store(tmp_path).lock(operation="apply", timeout=5) as info:
            waited = time.monotonic() - started
            assert info["operation"] == "apply" and info["who"].startswith("bob@")
        assert 0.25 < waited < 4


def test_lock_left_by_a_killed_process_is_acquired_normally(tmp_path: Path) -> None:
    with holder(tmp_path / "s.json") as (proc, lock_id):
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert lock_id in (tmp_path / "s.json.lock").read_text()  # left behind
        with _store(tmp_path).lock(operation="apply", timeout=0) as info:
            assert info["id"] != lock_id


def test_force_unlock_needs_the_matching_id_and_never_breaks_a_live_lock(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(StateLockError, match="not locked"):
        store.force_unlock("x")
    with holder(tmp_path / "s.json") as (proc, lock_id):
        os.kill(proc.pid, signal.SIGSTOP)  # a hung holder
        try:
            with pytest.raises(StateLockError, match=f"does not match .*{lock_id}"):
                store.force_unlock("not-the-id")
            # Its later journal writes would be lost if another run took over: refused.
            with pytest.raises(StateLockError, match="held by a running process"):
                store.force_unlock(lock_id)
            assert (tmp_path / "s.json.lock").exists()
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    # Its process gone, the lock went with it; the file it left is removed by force-unlock.
    assert (tmp_path / "s.json.lock").exists()
    store.force_unlock(lock_id)
    assert not (tmp_path / "s.json.lock").exists()
    with store.lock(operation="apply", timeout=0):
        pass


def test_in_process_stores_exclude_each_other_and_never_overlap(tmp_path: Path) -> None:
    inside = 0
    most = 0
    guard = threading.Lock()

    def worker() -> None:
        nonlocal inside, most
        store = _store(tmp_path)
        for _ in range(25):
            with store.lock(operation="apply", timeout=10):
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.0005)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1
    with pytest.raises(StateLockError, match="already locked by this command"):
        store = _store(tmp_path)
        with store.lock(operation="a", timeout=0), store.lock(operation="b", timeout=0):
            pass


def test_lock_file_unlinked_between_open_and_flock_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The previous holder releases (unlinks the file) just after we opened it: locking that
    # orphaned inode would let a third process lock a new file at the same path.
    store = _store(tmp_path)
    real_open = os.open
    raced = []

    def racing_open(path: object, flags: int, mode: int = 0o777) -> int:
        fd = real_open(path, flags, mode)  # type: ignore[arg-type]
        if str(path) == str(store.lock_path) and not raced:
            raced.append(True)
            os.unlink(store.lock_path)
        return fd

    monkeypatch.setattr(os, "open", racing_open)
    with store.lock(operation="apply", timeout=1):
        monkeypatch.setattr(os, "open", real_open)
        assert raced and store.lock_path.exists()
        with pytest.raises(StateLockError), _store(tmp_path).lock(operation="plan", timeout=0):
            pass
