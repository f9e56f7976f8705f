"""Ed25519 key pairs made ahead in a second process, so that a large apply's key generation
runs on another core, beside its requests, instead of between them.

The child (``python -m reconciler.keyforge COUNT``) writes COUNT records to its stdout, each
the public line (no comment), a newline, the OpenSSH private key file, and a NUL. The parent
takes them as they come. When none is ready, or the child is gone or wrote something else, it
generates the key itself: the forge never makes an apply wait, and what a key pair gets is
the same either way (``keys.generate_keypair``'s layout, comment and all). Private keys cross
only that anonymous pipe, between this process and its own child; what is left when the apply
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
_PUBLIC_PREFIX = "ssh-ed25519 "
_PEM_PREFIX = "-----BEGIN OPENSSH PRIVATE KEY-----\n"
_PEM_SUFFIX = "-----END OPENSSH PRIVATE KEY-----\n"
_PASSED_ENV = frozenset({"PATH", "SYSTEMROOT", "PYTHONHOME", "LANG", "LC_ALL", "TMPDIR"})


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
        self.forged = 0  # keys taken from the child (the rest were made here)
        # Only what a Python needs to start and find this package: none of the run's
        # credentials or settings.
        env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(Path(keys.__file__).resolve().parent.parent),
                        os.environ.get("PYTHONPATH", "")) if p)
        try:
            self._proc = subprocess.Popen(
                list(command or (sys.executable, "-m", "reconciler.keyforge", str(count))),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=env, close_fds=True)
        except (OSError, ValueError):
            return  # no second process: every key is made here
        assert self._proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,),
                                        name="keyforge", daemon=True)
        self._reader.start()

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
        except (OSError, ValueError):
            return
        finally:
            pipe.close()

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
                self.forged += 1
                if comment:
                    public = f"{public} {comment}"
                return keys.GeneratedKey(algorithm=algorithm, public_key=public,
                                         private_key=Secret(pem))
        return keys.generate_keypair(algorithm, comment=comment)

    def close(self) -> None:
        """Stop the child and drop the keys it made that nobody took."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait()
        if self._reader is not None:
            self._reader.join()
        self._ready.clear()


def _parse(record: bytes) -> tuple[str, str] | None:
    try:
        text = record.decode("ascii")
    except UnicodeDecodeError:
        return None
    public, _, pem = text.partition("\n")
    if not (public.startswith(_PUBLIC_PREFIX) and " " not in public[len(_PUBLIC_PREFIX):]
            and pem.startswith(_PEM_PREFIX) and pem.endswith(_PEM_SUFFIX)):
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
