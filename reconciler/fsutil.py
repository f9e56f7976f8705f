"""The path policy: how reconciler opens every file it reads or writes for the user.

- Files reconciler writes (state temporaries, lock, journal, backup, key file, ``--out``
  targets) are opened with ``O_NOFOLLOW | O_CLOEXEC``, created exclusively when new, mode
  0600, and must be regular files with one link: a symbolic link, a hard link, a FIFO or a
  device planted at one of those names is refused (``UnsafeFileError``), never written
  through.
- Files the user names for reading (``public_key_file``, ``private_key_file``, manifests, the
  state key file) are opened without blocking (a FIFO never hangs), must be regular files,
  and are read to a bound: at most ``limit + 1`` bytes, so a huge file or ``/dev/zero`` costs
  nothing. A pseudo-file that reports size 0 but has content (``/proc/self/environ``) is
  refused as not a file on disk.
- ``explain`` turns an ``OSError`` into the words of a message: what failed and what to do.
  It never includes a file's content.

Callers wrap ``OSError`` (``UnsafeFileError`` is one) into the error of their own domain.

May import: the stdlib.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

SAFE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC
MAX_KEY_FILE_BYTES = 64 * 1024  # public_key_file, private_key_file: far above any real key
_LINK_PROBLEM = ("is a symbolic link; reconciler never writes through a link. Remove it, or "
                 "give the path it points to")


class UnsafeFileError(OSError):
    """A name that is not the plain private file reconciler expects there."""

    def __init__(self, path: Path | str, problem: str, *, code: int = errno.EINVAL) -> None:
        super().__init__(code, problem, str(path))
        self.problem = problem


def kind_of(mode: int) -> str:
    """``a directory``, ``a FIFO (named pipe)``… for messages."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link"),
             (stat.S_ISREG, "a regular file"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def lstat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _refuse_odd(path: Path, exc: OSError) -> None:
    """Turn an open's error at a name that holds a link, a FIFO or a device (``ELOOP`` from
    ``O_NOFOLLOW``, ``EEXIST`` from ``O_EXCL``, ``ENXIO`` from a FIFO) into a clear one."""
    if exc.errno not in (errno.ELOOP, errno.EEXIST, errno.EMLINK, errno.ENXIO, errno.EISDIR):
        return
    st = lstat_or_none(path)
    if st is None or stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeFileError(path, _LINK_PROBLEM, code=errno.ELOOP) from None
    raise UnsafeFileError(path, f"is {kind_of(st.st_mode)}, not a regular file; remove it "
                          "or choose another path") from None


def refuse_odd_target(path: Path) -> None:
    """``UnsafeFileError`` unless ``path`` is missing or a regular file: what a file about to
    be replaced by a rename may be (a rename never writes through a link, but a link there
    was put by someone meaning it to be followed)."""
    st = lstat_or_none(path)
    if st is None or stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeFileError(path, _LINK_PROBLEM, code=errno.ELOOP)
    raise UnsafeFileError(path, f"is {kind_of(st.st_mode)}, not a regular file; remove it "
                          "or choose another path")


def open_private(path: Path, flags: int, *, new: bool = False, create: bool = False,
                 single_link: bool = True) -> int:
    """Open a private file reconciler writes: never through a link, 0600, regular.

    ``new``: create it exclusively (``FileExistsError`` if the name is taken); ``create``:
    create it if missing. ``single_link``: refuse a file with another hard link.
    """
    flags |= SAFE_FLAGS | os.O_NONBLOCK
    if new:
        flags |= os.O_CREAT | os.O_EXCL
    elif create:
        flags |= os.O_CREAT
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        _refuse_odd(path, exc)
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(path, f"is {kind_of(st.st_mode)}, not a regular file; "
                                  "remove it or choose another path")
        if single_link and st.st_nlink > 1:
            raise UnsafeFileError(path, f"has {st.st_nlink} hard links, so writing it would "
                                  "change another file too; remove it (it is not "
                                  "reconciler's)")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path, *, limit: int, follow: bool = True,
                 growing: bool = False) -> bytes:
    """At most ``limit`` bytes of a regular file; ``UnsafeFileError`` for anything else
    (a FIFO, a device, a directory, a pseudo-file, more than ``limit`` bytes).

    ``follow``: a symbolic link the user made is followed (only for reading). ``growing``:
    the file may be appended to while it is read (a journal), so an empty file that gains
    content is not taken for a pseudo-file."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except ValueError:  # a NUL in the name: no file can have it
        raise UnsafeFileError(path, "is not a valid file name (it holds a NUL character)") \
            from None
    except OSError as exc:
        if not follow:
            _refuse_odd(path, exc)
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(path, f"is not a regular file (it is {kind_of(st.st_mode)})")
        if st.st_size > limit:
            raise UnsafeFileError(path, f"is larger than {_size(limit)} ({st.st_size:,} "
                                  "bytes)", code=errno.EFBIG)
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise UnsafeFileError(path, f"is larger than {_size(limit)}", code=errno.EFBIG)
    if size and st.st_size == 0 and not growing:
        raise UnsafeFileError(path, "is not a file on disk (it reports a size of 0 but has "
                              "content, as files under /proc and /sys do)")
    return b"".join(chunks)


def _size(limit: int) -> str:
    return f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit:,} bytes"


@dataclass(frozen=True, slots=True)
class FileProblem:
    """Why a file the user named could not be used: words that follow its name, never a
    byte of its content."""

    text: str

    def __str__(self) -> str:
        return self.text


def read_key_text(path: Path, *, limit: int, what: str = "public key") -> str | FileProblem:
    """The UTF-8 text of a small key file the user named, or what is wrong with it."""
    try:
        data = read_regular(path, limit=limit)
    except FileNotFoundError:
        return FileProblem("does not exist")
    except UnsafeFileError as exc:
        return FileProblem(f"{exc.problem}: not a {what}")
    except OSError as exc:
        return FileProblem(f"cannot be read ({exc.strerror or type(exc).__name__})")
    if b"\x00" in data:
        return FileProblem(f"is a binary file (it contains NUL bytes), not a {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return FileProblem(f"is not UTF-8 text: not a {what}")


_ADVICE = {
    errno.ENOSPC: "free space on the file system holding {dir} and run again",
    errno.EDQUOT: "your disk quota on the file system holding {dir} is used up; free some "
                  "space or raise the quota, and run again",
    errno.EFBIG: "the file would exceed the file size limit (`ulimit -f`) or the file "
                 "system's maximum; raise the limit and run again",
    errno.EIO: "the disk reported an I/O error; check the device (dmesg) before running again",
    errno.EROFS: "{dir} is on a read-only file system; use a writable location",
    errno.EACCES: "check the permissions of {path} and of {dir}",
    errno.EPERM: "check the permissions and attributes of {path} and of {dir}",
    errno.ENOENT: "check that {dir} exists",
    errno.ENOTDIR: "a component of {path} is not a directory; check the path",
}


def explain(exc: OSError, path: Path | str, *, doing: str = "write") -> str:
    """``cannot write PATH: REASON; WHAT TO DO`` for an ``OSError`` on ``path``."""
    path = Path(path)
    if isinstance(exc, UnsafeFileError):
        return f"refusing to {doing} {path}: it {exc.problem}"
    reason = exc.strerror or type(exc).__name__
    advice = _ADVICE.get(exc.errno or 0, "")
    text = f"cannot {doing} {path}: {reason}"
    if advice:
        text += "; " + advice.format(path=path, dir=path.parent)
    return text


def remove_quietly(path: Path) -> None:
    """Remove a temporary file of ours after a failure (a failure to remove it is not news)."""
    with contextlib.suppress(OSError):
        os.unlink(path)
