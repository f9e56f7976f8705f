"""Keys made ahead in a second process (``keyforge``): what a key pair gets from it is what
``generate_keypair`` makes (checked with ssh-keygen), a child that is gone or writes anything
else only means the keys are made here, and the child never outlives its use."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import reconciler.apply
from reconciler import keyforge, keys
from reconciler.emulator.server import Emulator
from reconciler.keyforge import KeyForge
from tests.clihelp import Cli
from tests.reliability_support import (
    assert_private_keys_match_cloud,
    cli_argv,
    subprocess_env,
)

SSH_KEYGEN = shutil.which("ssh-keygen")


def _filled(forge: KeyForge, count: int) -> None:
    deadline = time.monotonic() + 30
    while forge.available < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert forge.available == count


def _keygen(*args: str) -> str:
    assert SSH_KEYGEN is not None
    return subprocess.run([SSH_KEYGEN, *args], check=True, capture_output=True,
                          text=True).stdout


def test_forged_keys_are_what_generate_keypair_makes(tmp_path: Path) -> None:
    forge = KeyForge(5)
    try:
        _filled(forge, 5)
        made = [forge("ed25519", comment=f"kp-{i}") for i in range(5)]
        assert forge.forged == 5 and forge.available == 0
        here = forge("ed25519", comment="kp-5")  # none left: made here, the same way
    finally:
        forge.close()
    assert forge.forged == 5
    assert len({k.public_key for k in [*made, here]}) == 6
    for i, key in enumerate([*made, here]):
        assert key.algorithm == "ed25519"
        assert key.public_key.startswith("ssh-ed25519 ") and key.public_key.endswith(f" kp-{i}")
        keys.check_public_key(key.public_key)
        assert keys.same_key(keys.public_key_of(key.private_key), key.public_key)
        if SSH_KEYGEN is None:
            continue
        private = tmp_path / f"id{i}"
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key.private_key.reveal())
        assert keys.same_key(_keygen("-y", "-f", str(private)).strip(), key.public_key)
        public = tmp_path / f"id{i}.pub"
        public.write_text(key.public_key + "\n")
        md5 = _keygen("-l", "-E", "md5", "-f", str(public)).split()[1]
        assert md5 == "MD5:" + keys.md5_fingerprint(key.public_key)


def test_other_algorithms_are_made_here() -> None:
    forge = KeyForge(3)
    try:
        _filled(forge, 3)
        key = forge("ecdsa-p256", comment="c")
        assert forge.forged == 0 and forge.available == 3
    finally:
        forge.close()
    assert key.public_key.startswith("ecdsa-sha2-nistp256 ") and key.public_key.endswith(" c")


def _assert_only_made_here(command: list[str]) -> None:
    """A forge whose child is ``command`` takes nothing from it: the key is made here."""
    forge = KeyForge(1, command=command)
    try:
        assert forge._proc is not None and forge._reader is not None
        forge._proc.wait(timeout=30)
        forge._reader.join(timeout=30)  # it has read all there was
        assert forge.available == 0
        key = forge("ed25519", comment="x")
    finally:
        forge.close()
    assert forge.forged == 0
    assert keys.same_key(keys.public_key_of(key.private_key), key.public_key)


@pytest.mark.parametrize("written", [
    b"garbage\0",
    b"ssh-ed25519 AAAA extra\n-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"
    b"-----END OPENSSH PRIVATE KEY-----\n\0",
    "ssh-ed25519 \u00e9\n\0".encode(),
    b"",
])
def test_a_child_that_writes_anything_else_only_means_keys_made_here(written: bytes) -> None:
    script = f"import sys; sys.stdout.buffer.write({written!r})"
    _assert_only_made_here([sys.executable, "-c", script])


def test_a_child_that_cannot_start_only_means_keys_made_here(tmp_path: Path) -> None:
    forge = KeyForge(1, command=[str(tmp_path / "missing")])
    try:
        key = forge("ed25519")
    finally:
        forge.close()
    assert forge.forged == 0 and key.public_key.startswith("ssh-ed25519 ")


def test_close_stops_a_child_still_making_keys() -> None:
    forge = KeyForge(10**7)
    _filled_some = time.monotonic() + 30
    while forge.available == 0 and time.monotonic() < _filled_some:
        time.sleep(0.01)
    started = time.monotonic()
    forge.close()
    assert time.monotonic() - started < 5
    assert forge._proc is not None and forge._proc.returncode is not None
    assert forge.available == 0  # what nobody took is dropped


def test_the_child_stops_when_nobody_reads_it() -> None:
    child = subprocess.Popen([sys.executable, "-m", "reconciler.keyforge", str(10**7)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert child.stdout is not None
    child.stdout.read(4096)
    child.stdout.close()  # as when the apply was killed
    assert child.wait(timeout=30) == 0


def test_the_child_refuses_a_count_it_cannot_read() -> None:
    assert keyforge.main([]) == 2 and keyforge.main(["many"]) == 2


def test_a_large_apply_takes_its_keys_from_the_forge(emulator: Emulator, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    count = keyforge.FORGE_FROM + 44
    made_here: list[str] = []
    generate = keys.generate_keypair

    def counted(algorithm: str, *, comment: str = "") -> keys.GeneratedKey:
        made_here.append(comment)
        return generate(algorithm, comment=comment)

    class Started(KeyForge):
        """The apply's forge, once its first keys are ready: on a loaded machine the apply
        could otherwise make all of them before the child has started."""

        def __init__(self, count: int) -> None:
            super().__init__(count)
            deadline = time.monotonic() + 30
            while self.available == 0 and time.monotonic() < deadline:
                time.sleep(0.01)

    monkeypatch.setattr(keys, "generate_keypair", counted)
    monkeypatch.setattr(reconciler.apply, "KeyForge", Started)
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write("keypairs:\n" + "".join(f"  - {{name: f{i:03d}, generate: ed25519}}\n"
                                      for i in range(count)))
    applied = cli("apply", "--auto-approve", str(cli.manifests))
    assert applied.code == 0, applied.text
    assert len(made_here) < count  # most came from the second process
    names = [f"f{i:03d}" for i in range(count)]
    assert_private_keys_match_cloud(cli, names[:: max(1, count // 25)])
    listed = cli.client().list_keypairs().keypairs
    assert len({listed[n].public_key.split()[1] for n in names}) == count
    again = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert again.code == 0, again.text


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_the_child_holds_no_credential_and_no_file_of_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "sk-that-must-stay-here")
    monkeypatch.setenv("RECONCILER_PASSPHRASE", "passphrase-that-must-stay-here")
    held = tmp_path / "journal"
    with held.open("w") as fh:
        forge = KeyForge(10**7)
        try:
            assert forge._proc is not None
            pid = forge._proc.pid
            deadline = time.monotonic() + 30
            while forge.available == 0 and time.monotonic() < deadline:
                time.sleep(0.01)  # started and making keys: no file opens or closes now
            assert forge.available > 0
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            opened = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        finally:
            forge.close()
        assert not fh.closed
    assert b"must-stay-here" not in environ and b"HUAWEICLOUD" not in environ
    assert str(held) not in opened


def _script_writing(records: str) -> list[str]:
    """A child that writes the records ``records`` (Python source of a str) evaluates to."""
    code = ("import sys; from reconciler import keys; "
            "from cryptography.hazmat.primitives.asymmetric import ed25519; "
            "gen = lambda: keys.ed25519_openssh(ed25519.Ed25519PrivateKey.generate()); "
            f"sys.stdout.buffer.write(({records}).encode())")
    return [sys.executable, "-c", code]


@pytest.mark.parametrize("records", [
    # the public line of one key, the private key file of another
    "(lambda a, b: a[1] + '\\n' + b[0] + '\\0')(gen(), gen())",
    # a public line that is not base64
    "'ssh-ed25519 !!notbase64!!\\n' + gen()[0] + '\\0'",
    # a private key file whose base64 was cut short
    "(lambda k: k[1] + '\\n' + k[0][:200] + '\\n-----END OPENSSH PRIVATE KEY-----\\n\\0')(gen())",
])
def test_halves_that_are_not_one_key_are_never_taken(records: str) -> None:
    _assert_only_made_here(_script_writing(records))


def test_the_pair_check_takes_every_key_made_here_and_no_altered_one() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    for _ in range(200):
        pem, public = keys.ed25519_openssh(ed25519.Ed25519PrivateKey.generate())
        assert keys.ed25519_openssh_pair(pem, public)
        other_pem, other_public = keys.ed25519_openssh(ed25519.Ed25519PrivateKey.generate())
        assert not keys.ed25519_openssh_pair(pem, other_public)
        assert not keys.ed25519_openssh_pair(other_pem, public)
        assert not keys.ed25519_openssh_pair(pem, public + " comment")
        assert not keys.ed25519_openssh_pair(pem.replace("\n", "\r\n"), public)


def test_the_child_runs_nothing_from_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    planted = tmp_path / "reconciler"
    planted.mkdir()
    (planted / "__init__.py").write_text("")
    marker = tmp_path / "ran"
    (planted / "keyforge.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    forge = KeyForge(3)
    try:
        _filled(forge, 3)
        made = {forge("ed25519").public_key for _ in range(3)}
    finally:
        forge.close()
    assert not marker.exists() and forge.forged == 3 and len(made) == 3


def test_close_does_not_wait_on_a_pipe_someone_else_holds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyforge, "_CLOSE_WAIT", 0.5)
    forge = KeyForge(1, command=["sh", "-c", "sleep 5; true"])  # sleep keeps the pipe
    started = time.monotonic()
    forge.close()
    assert time.monotonic() - started < 4


def _forges_of(count: int) -> list[int]:
    """The pids of key forge children making ``count`` keys."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if b"reconciler.keyforge" in argv and str(count).encode() in argv and state != "Z":
                pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_kill_9_of_an_apply_taking_forged_keys_loses_none_and_stops_the_child(
        emulator: Emulator, tmp_path: Path) -> None:
    count = keyforge.FORGE_FROM + 57  # a count no other test's forge makes
    names = [f"z{i:03d}" for i in range(count)]
    for trial in range(3):
        emulator.reset()
        emulator.set_faults(latency_ms=40)
        cli = Cli(emulator, tmp_path / f"t{trial}", api="kps")
        cli.write("keypairs:\n" + "".join(f"  - {{name: {n}, generate: ed25519}}\n"
                                          for n in names))
        proc = subprocess.Popen(
            cli_argv(cli, "apply", "--auto-approve", "--parallelism", "4", str(cli.manifests)),
            env=subprocess_env(cli), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        assert proc.stdout is not None
        try:
            line = proc.stdout.readline()
            while "Creation complete" not in line and line:
                line = proc.stdout.readline()
            time.sleep(0.05 * trial)
            assert proc.poll() is None, "the apply ended before the kill"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            proc.stdout.close()
        assert emulator.settle()  # what the killed apply sent has taken effect
        emulator.set_faults(latency_ms=0)
        deadline = time.monotonic() + 10
        while _forges_of(count) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _forges_of(count), "the child outlived its apply"
        cloud = set(cli.client().list_keypairs().keypairs)
        assert 0 < len(cloud) < count, len(cloud)  # the kill landed inside the apply
        listed = cli("state", "list")
        assert listed.code == 0, listed.text
        assert cloud <= set(listed.out.split())
        assert_private_keys_match_cloud(cli, sorted(cloud)[:: max(1, len(cloud) // 10)])
        applied = cli("apply", "--auto-approve", str(cli.manifests))
        assert applied.code == 0, applied.text
        assert sorted(cli.client().list_keypairs().keypairs) == names
        assert_private_keys_match_cloud(cli, names[::25])
        again = cli("plan", "--detailed-exitcode", str(cli.manifests))
        assert again.code == 0, again.text
