"""Files encrypted with age: what an ``age_file`` sink writes and how refresh reads it back.

The private key is encrypted to the sink's recipients with pyrage (the standard age format,
binary: ``age -d -i IDENTITY FILE`` opens it), imported only when a file is written, so that
commands that deliver nothing never load it. The file is written atomically (a temporary file
beside it, fsynced, renamed over it, the directory fsynced) with mode 0644: it is encrypted,
and made to be committed. A path that is a symbolic link, or anything but a regular file, is
refused, never followed or replaced; so is an existing file that is not an age file (a
state, a key file, a manifest named by mistake): replacing it could lose every private key.

Reconciler cannot decrypt the file (it holds no identity), so what it compares is the file's
SHA-256 digest, recorded when it was written: a file missing, or with another digest, has
drifted.

May import: the standard library, ``reconciler.model``, ``reconciler.errors``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

from reconciler.errors import ApplyError
from reconciler.model import Secret, SinkReading

FILE_MODE = 0o644
MAX_READ = 1 << 20  # an age file of a private key is a few KiB
_AGE_BINARY = b"age-encryption.org/"  # the first line of every age file: its version
_AGE_ARMOR = b"-----BEGIN AGE ENCRYPTED FILE-----"


def encrypt(secret: Secret, recipients: Sequence[str]) -> bytes:
    """The age file of ``secret`` for ``recipients``."""
    import pyrage

    parsed = [pyrage.x25519.Recipient.from_str(r) for r in recipients]
    return bytes(pyrage.encrypt(secret.reveal().encode(), parsed))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read(path: str) -> SinkReading:
    """What the file holds now: gone, or its digest (none for a link or an odd file, which
    is never one reconciler wrote), and why ``write`` would refuse to replace it, if it would
    (the plan fails on that before apply changes anything)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return SinkReading(exists=False)
    except OSError as exc:  # a file where a directory should be, a loop, a name too long
        return SinkReading(exists=True, refusal=_unreadable(exc))
    odd = _odd(st)
    if odd is not None:
        return SinkReading(exists=True, refusal=odd)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return SinkReading(exists=True, refusal=_unreadable(exc))
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_READ + 1)
    refusal = None if not data or _starts_as_age(data) else _NOT_AGE
    if len(data) > MAX_READ:  # never one reconciler wrote (a few KiB): no digest
        return SinkReading(exists=True, refusal=refusal)
    return SinkReading(exists=True, digest=digest(data), refusal=refusal)


def _unreadable(exc: OSError) -> str:
    return (f"cannot be read ({exc.strerror or exc}), so reconciler cannot tell that it is an "
            "age file; make it readable, or point path elsewhere")


_NOT_AGE = ("is not an age file (a state, key or manifest file, say); reconciler replaces only "
            "age files. Point path at another file, or move this one away")


def _odd(st: os.stat_result) -> str | None:
    """Why a path of this kind is never written: a link, or no regular file."""
    if stat.S_ISLNK(st.st_mode):
        return ("is a symbolic link; reconciler never writes through one. Remove the link (or "
                "point path at the file itself)")
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else \
            "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket or device"
        return f"is not a regular file ({kind}); move it away"
    return None


def write(path: str, data: bytes, *, shown: str) -> None:
    """Replace ``path`` with ``data`` atomically, mode 0644; ``ApplyError`` naming ``shown``
    (the sink) when the path is a link or no regular file, or cannot be written."""
    target = Path(path)
    _refuse_odd(target, shown)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ApplyError(f"{shown}: cannot create the directory {parent}: "
                         f"{exc.strerror or exc}") from None
    _sweep(parent, target.name)
    temp = parent / f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        _refuse_odd(target, shown)  # a link put there meanwhile is not replaced either
        os.replace(temp, target)
    except OSError as exc:
        _remove(temp)
        raise ApplyError(f"{shown}: cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        _remove(temp)
        raise
    _sync_directory(parent)


def remove(path: str, *, expected: str | None) -> bool:
    """Remove the file if it is still the one written (its digest ``expected``); False when it
    is gone or is another file, which is left alone."""
    now = read(path)
    if not now.exists or now.digest is None or now.digest != expected:
        return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    _sync_directory(Path(path).parent)
    return True


def _refuse_odd(target: Path, shown: str) -> None:
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ApplyError(f"{shown}: cannot read {target}: {exc.strerror or exc}") from None
    odd = _odd(st)
    if odd is not None:
        raise ApplyError(f"{shown}: {target} {odd}, and apply again")
    if st.st_size:
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise ApplyError(f"{shown}: {target} {_unreadable(exc)}, and apply again") from None
        with os.fdopen(fd, "rb") as handle:
            if not _starts_as_age(handle.read(len(_AGE_ARMOR))):
                raise ApplyError(f"{shown}: {target} {_NOT_AGE}, and apply again")


def _starts_as_age(data: bytes) -> bool:
    start = data[:len(_AGE_ARMOR)]
    return start.startswith(_AGE_BINARY) or start == _AGE_ARMOR


def _sweep(parent: Path, name: str) -> None:
    """Remove the temporaries of ``name`` that a killed writer left (its process is gone), so
    that none is committed beside the file; a live writer's, and anything else, stay."""
    left = re.compile(rf"\.{re.escape(name)}\.([0-9]+)\.[0-9a-f]{{8}}\.tmp")
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for entry in names:
        m = left.fullmatch(entry)
        if m is None or _alive(int(m.group(1))):
            continue
        path = parent / entry
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or no such pid number: leave it
    return True


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _sync_directory(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
