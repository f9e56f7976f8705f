"""kill -9 at random moments of moving a state to a KMS data key (``fallback``) and of
``state rekey``: after every kill the state loads, holds all 200 entries and every private key
opens; the next run finishes the move.

The state is ``tests/data/state-format-2-200`` (150 private keys in a format 2 document sealed
with a key file, 50 in the journal of an interrupted apply): the move folds the journal in,
migrates the format, then seals everything again under a fresh KMS data key. As in
``test_state_format3_crash``, one ``python -c`` process forks a child per trial, which talks to
the emulator's KMS over real HTTP, and the test kills it with SIGKILL after a random delay.
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

from test_emulator_kms import make_key, settings
from test_state_support import entry

from reconciler.commands.statekey import KmsDataKeys
from reconciler.emulator.server import Emulator
from reconciler.model import StateEncryption
from reconciler.state.local import LocalStateStore

TRIALS = 24
DATA = Path(__file__).parent / "data" / "state-format-2-200"

MOVER = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from reconciler.api.protocol import ApiSettings, Credentials
from reconciler.commands.statekey import KmsDataKeys
from reconciler.model import Api, Secret, StateEncryption
from reconciler.state.local import LocalStateStore

endpoint, project, ak, sk = sys.argv[2:6]

def out(text):
    os.write(1, (text + "\n").encode())

def work(path, key_file, kms_key, how):
    kms = ApiSettings(api=Api("v2.1"), endpoint=endpoint, project_id=project,
                      credentials=Credentials(ak=ak, sk=Secret(sk)))
    store = LocalStateStore(
        Path(path), environ={"RECONCILER_KEY_FILE": key_file},
        encryption=StateEncryption(provider="kms", kms_key=kms_key, mode="fallback"),
        data_keys=lambda: KmsDataKeys(kms, target="default"))
    with store.lock(operation="apply", timeout=10):
        store.load()
        out("ready")
        if how == "rekey":
            store.rekey()  # reconciler state rekey
        else:  # an apply in fallback mode
            store.prepare_key()
        out("done")

for line in sys.stdin:
    path, key_file, kms_key, how = line.split()
    pid = os.fork()
    if pid == 0:
        try:
            work(path, key_file, kms_key, how)
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


def _store(path: Path, key_file: Path, emulator: Emulator, kms_key: str) -> LocalStateStore:
    return LocalStateStore(
        path, environ={"RECONCILER_KEY_FILE": str(key_file)},
        encryption=StateEncryption(provider="kms", kms_key=kms_key, mode="fallback"),
        data_keys=lambda: KmsDataKeys(settings(emulator), target="default"))


def _check(store: LocalStateStore, path: Path) -> int:
    """Every private key opens; returns the document's format as found."""
    found = json.loads(path.read_text())["format_version"]
    state = store.load()
    names = {f"k{i}" for i in range(200)}
    assert names <= set(state.names()), sorted(names - set(state.names()))[:5]
    for name in sorted(names):
        sealed = state.entry(name).private_key
        assert sealed is not None
        assert store.unseal(name, sealed).reveal() == "secret-" + name
    return int(found)


def _trial(proc: subprocess.Popen[str], line: str, delay: float) -> list[str]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    lines: list[str] = []
    pid = 0
    while not pid or "ready" not in lines:
        got = proc.stdout.readline().strip()
        assert got, "the moving process died"
        if got.startswith("pid "):
            pid = int(got.split()[1])
        else:
            lines.append(got)
    time.sleep(delay)
    with contextlib.suppress(ProcessLookupError):  # it finished first: a trial all the same
        os.kill(pid, signal.SIGKILL)
    while (got := proc.stdout.readline().strip()) != "dead":
        assert got, "the moving process died"
        lines.append(got)
    return lines


def test_kill_9_while_moving_to_kms_or_rekeying_loses_no_private_key(
        emulator: Emulator, tmp_path: Path) -> None:
    kms_key = make_key(emulator, "state")
    path, key_file = _fresh(tmp_path / "timing")
    store = _store(path, key_file, emulator, kms_key)
    store.load()
    start = time.monotonic()
    store.prepare_key()
    window = time.monotonic() - start
    assert json.loads(path.read_text())["format_version"] == 4
    rng = random.Random(20261203)
    proc = subprocess.Popen(
        [sys.executable, "-c", MOVER, str(Path(__file__).parent.parent), emulator.endpoint,
         emulator.project_id, emulator.ak, emulator.sk],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    interrupted = {2: 0, 3: 0, 4: 0}
    try:
        for trial in range(TRIALS):
            path, key_file = _fresh(tmp_path / f"t{trial}")
            how = rng.choice(["move", "rekey"])
            if how == "rekey":  # a KMS state to rekey, with a journal of 1 change on top
                first = _store(path, key_file, emulator, kms_key)
                first.load()
                first.prepare_key()
                first.record(entry("extra"))
                assert (path.parent / "s.json.journal").exists()
            lines = _trial(proc, f"{path} {key_file} {kms_key} {how}",
                           delay=rng.uniform(0.0, window * 1.5))
            found = _check(_store(path, key_file, emulator, kms_key), path)
            if "done" not in lines:
                interrupted[found] += 1
            again = _store(path, key_file, emulator, kms_key)  # the next run finishes it
            with again.lock(operation="apply", timeout=10):
                again.load()
                again.prepare_key()
                state = again.commit()  # a journal left by a kill before the rekey's fold
            assert (how == "rekey") == ("extra" in state.names())
            assert _check(_store(path, key_file, emulator, kms_key), path) == 4
            assert not (path.parent / "s.json.journal").exists()
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()
    print(f"\n{TRIALS} kills; move window {window * 1000:.0f} ms; interrupted in format 2: "
          f"{interrupted[2]}, 3: {interrupted[3]}, 4: {interrupted[4]}")
    assert interrupted[2] + interrupted[3] >= 2, "no kill landed before the move's rename"
