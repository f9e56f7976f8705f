"""kill -9 at random moments: every record() that returned survives, in any crash window.

A small ``python -c`` process imports the store once and forks one writer per trial (so a
trial costs milliseconds, not an interpreter start). The writer records key pairs one by one,
printing each name after ``record()`` returns, and commits every few records; the test kills
it with SIGKILL after a random delay, then loads the state and checks every printed name is
there and its private key decrypts.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from reconciler.state.local import LocalStateStore

TRIALS = 60

WRITER = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from reconciler.model import Secret
from reconciler.state.local import LocalStateStore
from test_state_support import entry

def out(text):
    os.write(1, (text + "\n").encode())

def work(path, key_file, prefix, every):
    store = LocalStateStore(Path(path), environ={"RECONCILER_KEY_FILE": key_file})
    with store.lock(operation="apply", timeout=10):
        store.load()
        out("ready")
        i = 0
        while True:
            name = f"{prefix}-{i}"
            store.record(entry(name, store.seal(name, Secret("secret-" + name))))
            out(name)
            i += 1
            if i % every == 0:
                out("commit")
                store.commit()
                out("committed")

for line in sys.stdin:
    path, key_file, prefix, every = line.split()
    pid = os.fork()
    if pid == 0:
        try:
            work(path, key_file, prefix, int(every))
        finally:
            os._exit(1)
    out(f"pid {pid}")
    os.waitpid(pid, 0)
    out("dead")
"""


def _trial(proc: subprocess.Popen[str], *, path: Path, key_file: Path, prefix: str,
           every: int, delay: float) -> list[str]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{path} {key_file} {prefix} {every}\n")
    proc.stdin.flush()
    lines: list[str] = []
    pid = 0
    while not pid or "ready" not in lines:
        line = proc.stdout.readline().strip()
        assert line, "the writer process died"
        if line.startswith("pid "):
            pid = int(line.split()[1])
        else:
            lines.append(line)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    while (line := proc.stdout.readline().strip()) != "dead":
        assert line, "the writer process died"
        lines.append(line)
    return lines


def test_kill_9_at_random_moments_loses_no_acknowledged_record(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("33" * 32)
    path = tmp_path / "s.json"
    rng = random.Random(20261123)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(Path(__file__).parent)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    acknowledged: list[str] = []
    killed_in_commit = 0
    try:
        for trial in range(TRIALS):
            lines = _trial(proc, path=path, key_file=key_file, prefix=f"t{trial}",
                           every=rng.choice([1, 2, 5]), delay=rng.uniform(0.0, 0.03))
            acknowledged += [x for x in lines if x.startswith("t")]
            killed_in_commit += lines[-1] == "commit"
            _check(path, key_file, acknowledged, fresh=[x for x in lines if x.startswith("t")])
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()
    print(f"\n{TRIALS} kills, {len(acknowledged)} acknowledged records, "
          f"{killed_in_commit} kills inside a commit")
    assert len(acknowledged) > TRIALS  # the writers got somewhere
    assert killed_in_commit >= 3, "no kill landed inside a commit"
    store = LocalStateStore(path, environ={"RECONCILER_KEY_FILE": str(key_file)})
    store.load()
    store.commit()
    _check(path, key_file, acknowledged, fresh=acknowledged)
    assert not (tmp_path / "s.json.journal").exists()


def _check(path: Path, key_file: Path, acknowledged: list[str], *, fresh: list[str]) -> None:
    store = LocalStateStore(path, environ={"RECONCILER_KEY_FILE": str(key_file)})
    state = store.load()
    missing = sorted(set(acknowledged) - set(state.names()))
    assert not missing, f"acknowledged records lost: {missing[:5]}"
    for name in fresh:
        sealed = state.entry(name).private_key
        assert sealed is not None
        assert store.unseal(name, sealed).reveal() == "secret-" + name
