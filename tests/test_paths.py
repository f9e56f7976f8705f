"""Paths are the user's: a symlinked state path, planted links, odd --state kinds, full disks
and file arguments that are not what they should be.

Everything runs the real CLI (in-process, or as a child process where a resource limit or
another user id is needed) against the emulator over HTTP.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import keys
from reconciler.cli import main
from reconciler.emulator.server import Emulator
from reconciler.env import Env
from reconciler.model import EntryStatus
from reconciler.state.local import LocalStateStore
from tests.clihelp import Cli
from tests.reliability_support import (
    assert_clean,
    assert_private_keys_match_cloud,
    cli_argv,
    subprocess_env,
)

VICTIM = b"precious bytes that are not reconciler's\n"


def body(count: int, *, start: int = 0) -> str:
    """``count`` key pairs; odd ones generated here, even ones by the cloud."""
    lines = ["keypairs:"]
    for i in range(start, start + count):
        lines.append(f"  - name: k{i:02d}")
        if i % 2:
            lines.append("    generate: ed25519")
    return "\n".join(lines) + "\n"


@pytest.fixture()
def cli(emulator: Emulator, tmp_path: Path) -> Cli:
    return Cli(emulator, tmp_path)


def apply(cli: Cli, *extra: str) -> tuple[int, str]:
    r = cli("apply", str(cli.manifests), "--auto-approve", *extra)
    assert_clean(r.text)
    return r.code, r.text


@contextlib.contextmanager
def no_hang(seconds: int = 20) -> Iterator[None]:
    """Fail (instead of hanging the suite) if the body blocks, e.g. opening a FIFO."""
    def fail(signum: int, frame: object) -> None:
        raise AssertionError(f"blocked for {seconds}s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- a symlinked state path ---------------------------------------------------------------

@pytest.mark.parametrize("hold_via", ["link", "real"])
def test_a_symlinked_state_path_keeps_one_lock_journal_and_backup(cli: Cli, hold_via: str) -> None:
    real_dir = cli.root / "real"
    real_dir.mkdir()
    real = real_dir / "prod.json"
    link = cli.root / "link.json"
    link.symlink_to(real)
    cli.state_options = ("--state", str(link))
    cli.write(body(2))
    code, text = apply(cli)
    assert code == 0, text
    cli.write(body(3))
    code, text = apply(cli)
    assert code == 0, text
    assert link.is_symlink() and os.readlink(link) == str(real), "the link was replaced"
    assert real.is_file()
    assert (real_dir / "prod.json.backup").is_file()  # beside the real file, not the link
    assert not (cli.root / "link.json.backup").exists()
    assert not (cli.root / "link.json.lock").exists()

    # A run through one name waits for the lock taken through the other.
    held = LocalStateStore(link if hold_via == "link" else real, environ=cli.environ)
    other = real if hold_via == "link" else link
    cli.state_options = ("--state", str(other))
    with held.lock(operation="apply", timeout=0):
        r = cli("plan", str(cli.manifests), "--lock-timeout", "0s")
    assert r.code == 1, r.text
    assert "Error acquiring the state lock" in r.err
    assert str(real) in r.err  # the lock names the real file, whichever name was given
    assert_clean(r.text)


def test_a_link_to_a_state_file_not_yet_made_creates_it_at_the_target(cli: Cli) -> None:
    (cli.root / "real").mkdir()
    link = cli.root / "s.json"
    link.symlink_to(cli.root / "real" / "s.json")
    cli.write(body(1))
    cli.state_options = ("--state", str(link))
    code, text = apply(cli)
    assert code == 0, text
    assert link.is_symlink() and (cli.root / "real" / "s.json").is_file()


# --- planted links and odd files beside the state ------------------------------------------

@pytest.mark.parametrize("suffix", ["lock", "journal", "backup"])
@pytest.mark.parametrize("plant", ["symlink", "hardlink", "fifo"])
def test_a_planted_file_beside_the_state_is_refused_and_never_written(
        cli: Cli, suffix: str, plant: str) -> None:
    cli.write(body(2))
    assert apply(cli)[0] == 0
    before = cli.state.read_bytes()
    victim = cli.root / "victim.txt"
    victim.write_bytes(VICTIM)
    planted = cli.state.with_name(f"{cli.state.name}.{suffix}")
    if plant == "symlink":
        planted.symlink_to(victim)
    elif plant == "hardlink":
        os.link(victim, planted)
    else:
        os.mkfifo(planted)
    cli.write(body(4))
    with no_hang():
        code, text = apply(cli)
    assert victim.read_bytes() == VICTIM
    if plant == "hardlink" and suffix == "backup":
        # The backup is replaced by a rename, never written: the other link keeps its bytes.
        assert code == 0, text
        return
    assert code == 1, text
    assert str(planted) in text, text
    assert cli.state.read_bytes() == before or suffix == "backup"
    if plant != "hardlink" or suffix == "journal":
        # Removing what was planted lets the next run finish what this one recorded.
        planted.unlink()
        assert apply(cli)[0] == 0
        assert victim.read_bytes() == VICTIM
        r = cli("plan", str(cli.manifests))
        assert "No changes." in r.out, r.text


def test_a_link_planted_under_a_temporary_name_is_removed_not_followed(cli: Cli) -> None:
    cli.write(body(1))
    assert apply(cli)[0] == 0
    victim = cli.root / "victim.txt"
    victim.write_bytes(VICTIM)
    planted = cli.root / f".{cli.state.name}.0123456789ab.tmp"
    planted.symlink_to(victim)
    cli.write(body(2))
    assert apply(cli)[0] == 0
    assert victim.read_bytes() == VICTIM
    assert not planted.is_symlink()


@pytest.mark.parametrize("command", ["output", "plan"])
@pytest.mark.parametrize("force", [False, True])
def test_out_files_are_never_written_through_a_link(cli: Cli, command: str,
                                                    force: bool) -> None:
    cli.write(body(2))
    assert apply(cli)[0] == 0
    victim = cli.root / "victim.txt"
    victim.write_bytes(VICTIM)
    out = cli.root / "out.txt"
    out.symlink_to(victim)
    argv = (["output", "k01", "--private-key", "--out", str(out)] if command == "output"
            else ["plan", str(cli.manifests), "--out", str(out)])
    if force and command == "output":
        argv.append("--force")
    r = cli(*argv)
    assert r.code == 1, r.text
    assert str(out) in r.err and "symbolic link" in r.err, r.err
    assert "PRIVATE KEY" not in r.text
    assert_clean(r.text)
    assert victim.read_bytes() == VICTIM and out.is_symlink()


# --- --state that is not a state file ------------------------------------------------------

def _odd_states(root: Path) -> dict[str, tuple[Path, str]]:
    (root / "adir").mkdir()
    os.mkfifo(root / "fifo")
    (root / "plain").write_text("x")
    return {
        "root": (Path("/"), "is a directory"),
        "directory": (root / "adir", "is a directory"),
        "fifo": (root / "fifo", "is a FIFO"),
        "socket": (root / "sock", "is a socket"),
        "device": (Path("/dev/null"), "is a character device"),
        "missing directory": (root / "nope" / "state.json", "does not exist"),
        "under a file": (root / "plain" / "state.json", "plain"),
    }


@pytest.mark.parametrize("kind", ["root", "directory", "fifo", "socket", "device",
                                  "missing directory", "under a file"])
@pytest.mark.parametrize("command", ["plan", "apply", "state"])
def test_a_state_path_that_is_not_a_state_file_is_refused(cli: Cli, kind: str,
                                                          command: str) -> None:
    cli.write(body(1))
    area = cli.root / "area"
    area.mkdir()
    path, words = _odd_states(area)[kind]
    with contextlib.ExitStack() as stack:
        if kind == "socket":
            sock = stack.enter_context(socket.socket(socket.AF_UNIX))
            sock.bind(str(path))
        before = tree(area)
        argv = {"plan": ["plan", str(cli.manifests)],
                "apply": ["apply", str(cli.manifests), "--auto-approve"],
                "state": ["state", "list"]}[command]
        with no_hang():
            r = cli(*argv, globals_=False, extra=[
                "--state", str(path), "--endpoint", cli.emulator.endpoint,
                "--project-id", cli.emulator.project_id])
        assert tree(area) == before, "something was created"
    assert r.code == 1, r.text
    assert str(path) in r.err and words in r.err, r.err
    assert_clean(r.text)
    assert cli.writes() == 0


def test_an_unreadable_state_file_is_a_clear_error(cli: Cli) -> None:
    """As root, permissions do not stop reads: the CLI runs in a forked child that gave up
    root (uid nobody) before reading a root-owned 0600 state file."""
    cli.write(body(1))
    assert apply(cli)[0] == 0
    shared = Path(tempfile.mkdtemp(prefix="reconciler-unreadable-"))
    try:
        os.chmod(shared, 0o777)
        state = shared / "state.json"
        shutil.copyfile(cli.state, state)
        os.chmod(state, 0o600)
        manifests = shared / "manifests"
        shutil.copytree(cli.manifests, manifests)
        os.chmod(manifests, 0o755)
        before = state.read_bytes()
        code, err = _run_as_nobody(cli, ["plan", str(manifests), "--state", str(state),
                                         "--endpoint", cli.emulator.endpoint,
                                         "--project-id", cli.emulator.project_id])
        assert code == 1, err
        assert str(state) in err and "ermission denied" in err, err
        assert "check the permissions" in err, err
        assert_clean(err)
        assert state.read_bytes() == before
        assert not (shared / "state.json.lock").exists()
    finally:
        shutil.rmtree(shared)


def _run_as_nobody(cli: Cli, argv: list[str]) -> tuple[int, str]:
    if os.geteuid() != 0:  # not root: a plain chmod 000 already makes the file unreadable
        for p in Path(argv[argv.index("--state") + 1]).parent.glob("state.json"):
            os.chmod(p, 0)
        err = io.StringIO()
        env = Env(stdin=io.StringIO(), stdout=io.StringIO(), stderr=err,
                  environ=dict(cli.environ), cwd=cli.root)
        return main(argv, env), err.getvalue()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 70
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            err = io.StringIO()
            env = Env(stdin=io.StringIO(), stdout=io.StringIO(), stderr=err,
                      environ={**cli.environ, "HOME": "/nonexistent"}, cwd=Path("/"))
            status = int(main(argv, env))
            os.write(write, err.getvalue().encode())
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        err_text = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err_text


# --- a full disk, a quota, the file size limit ---------------------------------------------

def _limited(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _check_after_failure(cli: Cli, *, before: bytes, before_serial: int) -> None:
    """The state is the old one or a valid newer one; every private key it holds opens and
    is the half of its public key; no temporary or lock file is left behind."""
    now = cli.state.read_bytes()
    store = LocalStateStore(cli.state, environ=cli.environ)
    state = store.load()
    assert now == before or state.serial > before_serial
    for entry in state.keypairs.values():
        if entry.private_key is not None and entry.status is not EntryStatus.PENDING:
            public = keys.public_key_of(store.unseal(entry.name, entry.private_key))
            assert keys.same_key(public, entry.public_key), entry.name
    leftovers = [p.name for p in cli.root.iterdir()
                 if p.name.endswith(".tmp") or p.name.endswith(".lock")]
    assert not leftovers, leftovers


LIMITS = (64, 300, 1500, 3500, 5000, 7000, 8500, 1 << 30)


def test_the_file_size_limit_at_every_write_leaves_the_state_whole(
        emulator: Emulator, tmp_path: Path) -> None:
    """A sweep of ``ulimit -f`` sizes, so that the failing write lands in the lock file, the
    journal, the temporary state file, or nowhere; the apply runs as a child process."""
    failed_in: set[str] = set()
    for limit in LIMITS:
        emulator.reset()
        cli = Cli(emulator, tmp_path / f"limit-{limit}")
        cli.write(body(6))
        assert apply(cli)[0] == 0
        before = cli.state.read_bytes()
        serial = LocalStateStore(cli.state, environ=cli.environ).load().serial
        cli.write(body(9))
        run = subprocess.run(
            [*cli_argv(cli, "apply", str(cli.manifests), "--auto-approve")],
            env=subprocess_env(cli), capture_output=True, text=True, timeout=120,
            preexec_fn=lambda limit=limit: _limited(limit))  # type: ignore[misc]
        text = run.stdout + run.stderr
        assert_clean(text)
        assert "PRIVATE KEY" not in text
        assert run.returncode in (0, 1), text
        if run.returncode == 1:
            named = [n for n in ("journal", "tmp", "lock", "backup")
                     if f"{cli.state.name}." in text and f".{n}" in text]
            assert named, f"limit {limit}: no file named\n{text}"
            assert "file size limit" in text, text
            failed_in.update(named)
        _check_after_failure(cli, before=before, before_serial=serial)
        # What was acknowledged is kept: a run without the limit converges.
        code, text = apply(cli)
        assert code == 0, text
        assert "No changes." in cli("plan", str(cli.manifests)).out
        assert_private_keys_match_cloud(cli, [f"k{i:02d}" for i in range(9)])
    assert {"lock", "journal", "tmp"} <= failed_in, failed_in


def test_output_out_under_the_file_size_limit_leaves_no_partial_key(cli: Cli) -> None:
    cli.write(body(2))
    assert apply(cli)[0] == 0
    out = cli.root / "k01.key"
    run = subprocess.run(
        cli_argv(cli, "output", "k01", "--private-key", "--out", str(out)),
        env=subprocess_env(cli), capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: _limited(100))
    assert run.returncode == 1, run.stdout + run.stderr
    assert str(out) in run.stderr and "file size limit" in run.stderr, run.stderr
    assert "PRIVATE KEY" not in run.stdout + run.stderr
    assert not out.exists(), "a partial private key file was left"


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, nearly full (root may mount one here; elsewhere it is skipped)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or 'not root'}); "
                    "the file size limit test covers failed writes instead")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path, *, leave: int) -> None:
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    (directory / "filler").write_bytes(b"\0" * max(0, free - leave))


def test_a_full_disk_leaves_the_state_whole_and_says_so(emulator: Emulator,
                                                       small_disk: Path) -> None:
    cli = Cli(emulator, small_disk)
    cli.write(body(4))
    assert apply(cli)[0] == 0
    before = cli.state.read_bytes()
    serial = LocalStateStore(cli.state, environ=cli.environ).load().serial
    _fill(small_disk, leave=4096)
    cli.write(body(14))
    code, text = apply(cli)
    assert code == 1, text
    assert "No space left on device" in text and f"free space on the file system holding " \
        f"{small_disk}" in text, text
    assert str(cli.state) in text
    _check_after_failure(cli, before=before, before_serial=serial)
    (small_disk / "filler").unlink()
    _fill(small_disk, leave=0)
    out = small_disk / "k01.key"
    r = cli("output", "k01", "--private-key", "--out", str(out))
    assert r.code == 1, r.text
    assert str(out) in r.err and "No space left on device" in r.err, r.err
    assert "PRIVATE KEY" not in r.text
    assert not out.exists(), "a partial private key file was left"
    (small_disk / "filler").unlink()
    code, text = apply(cli)
    assert code == 0, text
    assert "No changes." in cli("plan", str(cli.manifests)).out


# --- file arguments that are not what they should be ---------------------------------------

PRIVATE = keys.generate_keypair("ed25519").private_key.reveal()
SECRET = "s3cr3t-VALUE-never-to-be-shown-0123456789"


def _corpus(root: Path) -> dict[str, tuple[str, bytes]]:
    """name -> (the path written in the manifest, the content that must never be shown)."""
    files = {
        "text": b"hello operator " + SECRET.encode() + b"\n",
        "private key": PRIVATE.encode(),
        "binary": bytes(range(256)) * 8 + SECRET.encode(),
        "latin-1": ("caf\xe9 " + SECRET).encode("latin-1"),
        "huge": b"ssh-ed25519 " + SECRET.encode() * 4000,
    }
    out = {}
    for name, data in files.items():
        path = root / name.replace(" ", "-")
        path.write_bytes(data)
        out[name] = (f"../{root.name}/{path.name}", data)  # relative to the manifest
    os.mkfifo(root / "fifo")
    out["fifo"] = (f"../{root.name}/fifo", b"")
    out["directory"] = (f"../{root.name}", b"")
    out["/dev/zero"] = ("/dev/zero", b"")
    out["/proc/self/environ"] = ("/proc/self/environ", SECRET.encode())
    return out


def _never_shown(text: str, content: bytes) -> None:
    shown = text.encode("utf-8", "surrogateescape")
    for i in range(0, max(0, len(content) - 12)):
        window = content[i:i + 12]
        if window.strip() and window not in (b"ssh-ed25519 ",):
            assert window not in shown, f"content shown: {window!r}\n{text}"
    assert SECRET not in text


@pytest.mark.parametrize("case", ["text", "private key", "binary", "latin-1", "huge", "fifo",
                                  "directory", "/dev/zero", "/proc/self/environ"])
@pytest.mark.parametrize("field", ["public_key_file", "private_key_file"])
def test_a_file_argument_that_is_not_a_key_is_refused_without_its_content(
        cli: Cli, case: str, field: str) -> None:
    files = cli.root / "files"
    files.mkdir()
    path, content = _corpus(files)[case]
    public = keys.generate_keypair("ed25519").public_key
    if field == "public_key_file":
        item = f"  - name: odd-file\n    public_key_file: {path}\n"
    else:
        item = (f"  - name: odd-file\n    public_key: {public}\n    key_protection:\n"
                f"      encryption: {{type: default}}\n      private_key_file: {path}\n")
    if case == "private key" and field == "private_key_file":
        item = item.replace(public, keys.generate_keypair("ed25519").public_key)
    cli.write("keypairs:\n" + item)
    # A child process, so that /proc/self/environ holds the secret-looking variable.
    env = {**subprocess_env(cli), "RECONCILER_TEST_TOKEN": SECRET}
    with no_hang(60):
        run = subprocess.run([sys.executable, "-m", "reconciler", "validate",
                              str(cli.manifests)], env=env, capture_output=True,
                             text=True, timeout=50, errors="surrogateescape")
    text = run.stdout + run.stderr
    assert run.returncode == 1, text
    assert path in text and "odd-file" in text, text
    assert_clean(text)
    _never_shown(text, content)
