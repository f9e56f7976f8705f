"""Ed25519 key pairs made ahead in a second process, so that a large apply's key generation
runs on another core, beside its requests, instead of between them.

The child (``python -P -m reconciler.keyforge COUNT``: nothing from the working directory)
writes COUNT records to its stdout, each the public line (no comment), a newline, the OpenSSH
private key file, and a NUL. The parent takes them as they come, once both halves check out
as one key. When none is ready, or the child is gone or wrote something else, it generates
the key itself: the forge never makes an apply wait, and what a key pair gets is the same
either way (``keys.generate_keypair``'s layout, comment and all). Private keys cross only
that anonymous pipe, between this process and its own child; what is left when the apply
ends is dropped, and the child is stopped.

May import: ``reconciler.keys``, ``reconciler.model``, ``reconciler.changes``.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from reconciler import keys
from reconciler.changes import Action, Change
from reconciler.model import KeySource, Secret

# Below this many Ed25519 keys to generate, a second process costs more than it saves.
FORGE_FROM = 256
_ALGORITHM = "ed25519"
_BATCH = 64  # records a write: the first keys are ready within a few milliseconds
_CLOSE_WAIT = 5.0  # seconds for the reader to see the pipe end after the child is stopped
_PASSED_ENV = frozenset({"PATH", "SYSTEMROOT", "PYTHONHOME", "LANG", "LC_ALL", "TMPDIR",
                         "PYTHONDONTWRITEBYTECODE"})


def keys_to_generate(changes: Iterable[Change]) -> int:
    """How many Ed25519 keys ``changes`` may generate here (creates and replacements of key
    pairs declared ``generate: ed25519``; a resumed create that reuses its stored key counts
    too: a key made ahead and not taken is only dropped)."""
    return sum(1 for c in changes
               if c.action in (Action.CREATE, Action.REPLACE) and c.desired is not None
               and c.desired.source is KeySource.GENERATE and c.desired.algorithm == _ALGORITHM)


class KeyForge:
    """``generate_keypair`` with Ed25519 keys taken from a child process while it has any."""

    def __init__(self, count: int, *, command: Sequence[str] | None = None) -> None:
        """Start the child making ``count`` keys (``command``: another child, for tests)."""
        self._ready: collections.deque[tuple[str, str]] = collections.deque()
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._received = 0  # records the reader took in (it alone counts them)
        self._dropped = 0
        # Only what a Python needs to start and find this package: none of the run's
        # credentials or settings. ``-P``: nothing from the working directory, which may be a
        # checkout of someone else's manifests.
        env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(Path(keys.__file__).resolve().parent.parent),
                        os.environ.get("PYTHONPATH", "")) if p)
        flags = ["-P", *(["-B"] if sys.flags.dont_write_bytecode else [])]
        argv = list(command) if command is not None else \
            [sys.executable, *flags, "-m", "reconciler.keyforge", str(count)]
        if not argv or not argv[0]:
            return  # no interpreter to start: every key is made here
        try:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, env=env, close_fds=True)
            assert self._proc.stdout is not None
            self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,),
                                            name="keyforge", daemon=True)
            self._reader.start()
        except (OSError, ValueError, RuntimeError):
            self.close()  # no second process: every key is made here

    def _read(self, pipe: BinaryIO) -> None:
        rest = b""
        fd = pipe.fileno()
        try:
            while True:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return
                records = (rest + chunk).split(b"\0")
                rest = records.pop()
                for record in records:
                    parsed = _parse(record)
                    if parsed is None:
                        return  # not what the child writes: make the rest here
                    self._ready.append(parsed)
                    self._received += 1
        except (OSError, ValueError):
            return
        finally:
            pipe.close()

    @property
    def forged(self) -> int:
        """Keys taken from the child (the rest were made here)."""
        return self._received - len(self._ready) - self._dropped

    @property
    def available(self) -> int:
        """Keys made ahead and not taken yet."""
        return len(self._ready)

    def __call__(self, algorithm: str, *, comment: str = "") -> keys.GeneratedKey:
        if algorithm == _ALGORITHM:
            try:
                public, pem = self._ready.popleft()
            except IndexError:
                pass
            else:
                if comment:
                    public = f"{public} {comment}"
                return keys.GeneratedKey(algorithm=algorithm, public_key=public,
                                         private_key=Secret(pem))
        return keys.generate_keypair(algorithm, comment=comment)

    def close(self) -> None:
        """Stop the child and drop the keys it made that nobody took."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if self._reader is not None:
            # the pipe ends when the child does, unless something it started still holds it
            self._reader.join(timeout=_CLOSE_WAIT)
        self._dropped += len(self._ready)
        self._ready.clear()


def _parse(record: bytes) -> tuple[str, str] | None:
    """(public line, private key file) of one record, or ``None`` for anything but the two
    halves of one Ed25519 key laid out as ``keys.ed25519_openssh`` writes them."""
    try:
        text = record.decode("ascii")
    except UnicodeDecodeError:
        return None
    public, _, pem = text.partition("\n")
    if not keys.ed25519_openssh_pair(pem, public):
        return None
    return public, pem


def serve(count: int, out: BinaryIO) -> None:
    """The child: ``count`` records to ``out``; stops quietly when the parent has gone."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    batch: list[str] = []
    try:
        for made in range(1, count + 1):
            pem, public = keys.ed25519_openssh(ed25519.Ed25519PrivateKey.generate())
            batch.append(f"{public}\n{pem}\0")
            if len(batch) == _BATCH or made == count:
                out.write("".join(batch).encode("ascii"))
                out.flush()
                batch.clear()
    except (BrokenPipeError, OSError):
        return


def main(argv: list[str]) -> int:
    try:
        count = int(argv[0])
    except (IndexError, ValueError):
        return 2
    serve(max(0, count), sys.stdout.buffer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
