"""kill -9 at random moments of the format 2 -> 3 migration of a state holding 200 private keys
(150 in the document, 50 in the journal of an interrupted apply): after every kill the state
loads, holds all 200 entries, and every private key opens; the next run finishes the migration.

The state is ``tests/data/state-format-2-200`` (written by the last format 2 release; see its
PROVENANCE.txt). As in ``test_state_crash``, one ``python -c`` process forks a migrating child
per trial, and the test kills it with SIGKILL after a random delay.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from reconciler.state.crypto import envelope_version
from reconciler.state.local import LocalStateStore

TRIALS = 40
DATA = Path(__file__).parent / "data" / "state-format-2-200"

MIGRATOR = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from reconciler.model import Secret
from reconciler.state.local import LocalStateStore

def out(text):
    os.write(1, (text + "\n").encode())

def work(path, key_file, how):
    store = LocalStateStore(Path(path), environ={"RECONCILER_KEY_FILE": key_file})
    with store.lock(operation="apply", timeout=10):
        store.load()
        out("ready")
        if how == "upgrade":
            store.upgrade()  # reconciler state upgrade
        else:  # the first write of an apply migrates it
            sealed = store.seal("extra", Secret("secret-extra"))
            out("migrated")
            from test_state_support import entry
            store.record(entry("extra", sealed))
            store.commit()
        out("done")

for line in sys.stdin:
    path, key_file, how = line.split()
    pid = os.fork()
    if pid == 0:
        try:
            work(path, key_file, how)
        finally:
            os._exit(1)
    out(f"pid {pid}")
    os.waitpid(pid, 0)
    out("dead")
"""


def _fresh(root: Path) -> tuple[Path, Path]:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for name in ("s.json", "s.json.journal", "state.key"):
        shutil.copy(DATA / name, root / name)
        (root / name).chmod(0o600)
    return root / "s.json", root / "state.key"


def _trial(proc: subprocess.Popen[str], *, path: Path, key_file: Path, how: str,
           delay: float) -> list[str]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{path} {key_file} {how}\n")
    proc.stdin.flush()
    lines: list[str] = []
    pid = 0
    while not pid or "ready" not in lines:
        line = proc.stdout.readline().strip()
        assert line, "the migrating process died"
        if line.startswith("pid "):
            pid = int(line.split()[1])
        else:
            lines.append(line)
    time.sleep(delay)
    with contextlib.suppress(ProcessLookupError):  # it finished first: a trial all the same
        os.kill(pid, signal.SIGKILL)
    while (line := proc.stdout.readline().strip()) != "dead":
        assert line, "the migrating process died"
        lines.append(line)
    return lines


def _check(path: Path, key_file: Path, *, extra: bool) -> int:
    """Every private key opens; returns the document's format as found."""
    found = json.loads(path.read_text())["format_version"]
    store = LocalStateStore(path, environ={"RECONCILER_KEY_FILE": str(key_file)})
    state = store.load()
    names = {f"k{i}" for i in range(200)}
    assert names <= set(state.names()), sorted(names - set(state.names()))[:5]
    for name in sorted(names | ({"extra"} if extra else set())):
        sealed = state.entry(name).private_key
        assert sealed is not None
        assert store.unseal(name, sealed).reveal() == "secret-" + name
    return int(found)


def _migration_seconds(tmp_path: Path) -> float:
    path, key_file = _fresh(tmp_path / "timing")
    store = LocalStateStore(path, environ={"RECONCILER_KEY_FILE": str(key_file)})
    store.load()
    start = time.monotonic()
    store.upgrade()
    return time.monotonic() - start


def test_kill_9_during_the_migration_loses_no_private_key(tmp_path: Path) -> None:
    window = _migration_seconds(tmp_path)
    rng = random.Random(20261202)
    proc = subprocess.Popen(
        [sys.executable, "-c", MIGRATOR, str(Path(__file__).parent)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    interrupted = {2: 0, 3: 0}
    try:
        for trial in range(TRIALS):
            path, key_file = _fresh(tmp_path / f"t{trial}")
            how = rng.choice(["upgrade", "write"])
            lines = _trial(proc, path=path, key_file=key_file, how=how,
                           delay=rng.uniform(0.0, window * 1.5))
            finished = "done" in lines
            extra = how == "write" and finished
            found = _check(path, key_file, extra=extra)
            if not finished:
                interrupted[found] += 1
            # the next run migrates what is left and still loses nothing
            again = LocalStateStore(path, environ={"RECONCILER_KEY_FILE": str(key_file)})
            again.load()
            with again.lock(operation="state upgrade", timeout=10):
                again.upgrade()
                again.commit()  # a journal left by a kill after the rename is folded in
            assert _check(path, key_file, extra=extra) == 3
            doc = json.loads(path.read_text())
            assert all(envelope_version(_sealed(e)) == 3 for e in doc["keypairs"].values())
            assert not (path.parent / "s.json.journal").exists()
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()
    print(f"\n{TRIALS} kills; migration window {window * 1000:.0f} ms; interrupted with the "
          f"state still in format 2: {interrupted[2]}, already in format 3: {interrupted[3]}")
    assert interrupted[2] >= 3, "no kill landed before the migration's rename"


def _sealed(entry: dict[str, object]) -> object:
    from reconciler.model import SealedSecret

    value = entry["private_key"]
    assert isinstance(value, str)
    return SealedSecret(value)
