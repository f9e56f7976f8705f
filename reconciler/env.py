"""The process's surroundings, injected: streams, environment, clock, working directory.

Commands receive an ``Env`` instead of reaching for ``sys`` and ``os.environ``, so tests
capture output and get byte-stable results. ``ExitCode`` is decided here, in one place.

``out`` and ``err`` print lines of text for people: their control characters and bidi
overrides are escaped (``reconciler.textsafe``), line feeds and tabs kept. What must reach
the stream byte for byte (a rendered plan with its colours, a private key, a JSON document)
is written to ``stdout`` directly by the command that owns it.

May import: the standard library, ``reconciler.textsafe``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import TextIO

from reconciler.textsafe import printable


class ExitCode(IntEnum):
    OK = 0  # success; for --detailed-exitcode: no changes
    ERROR = 1
    CHANGES = 2  # plan --detailed-exitcode only: success, with changes


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Env:
    """Everything a command may touch of the outside world, besides files and the network."""

    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = field(default_factory=Path.cwd)
    clock: Callable[[], datetime] = _utcnow
    # Seconds between apply's "Still creating..." lines when stdout is no terminal.
    heartbeat: float = 10.0

    def stdin_is_tty(self) -> bool:
        return _isatty(self.stdin)

    def stdout_is_tty(self) -> bool:
        return _isatty(self.stdout)

    def colour(self, no_color_flag: bool = False) -> bool:
        """Colour only on a terminal, never with ``--no-color`` or ``NO_COLOR``."""
        if no_color_flag or "NO_COLOR" in self.environ:
            return False
        return self.stdout_is_tty() and self.environ.get("TERM") != "dumb"

    def out(self, text: str = "") -> None:
        self.stdout.write(printable(text, multiline=True) + "\n")

    def out_all(self, texts: Iterable[str]) -> None:
        """``out`` of each, in one write."""
        self.stdout.write("".join(printable(text, multiline=True) + "\n" for text in texts))

    def err(self, text: str = "") -> None:
        self.stderr.write(printable(text, multiline=True) + "\n")

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.cwd / p


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
