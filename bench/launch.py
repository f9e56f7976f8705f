"""Run ``python -m reconciler ARGS`` while counting the bytes written to files in one directory.

Usage: ``python -m bench.launch DIR OUTFILE -- reconciler-args...``. Every ``os.write``,
``os.pwrite`` and ``os.writev`` is wrapped: when its file descriptor names a file inside DIR
(``/proc/self/fd/N``), the bytes the kernel accepted are added up per file. At exit the counts
go to OUTFILE as JSON. The state store writes only through these calls (journal, temporary
document, lock file), so this is every byte it puts in the directory; ``bench.run --strace``
cross-checks the figure at the system-call level.

May import: the standard library, ``reconciler``.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any


def _install(directory: str, outfile: str) -> None:
    root = os.path.realpath(directory) + os.sep
    counts: Counter[str] = Counter()
    calls: Counter[str] = Counter()

    def where(fd: int) -> str | None:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        return target if target.startswith(root) else None

    def wrap(original: Callable[..., int]) -> Callable[..., int]:
        def counted(fd: int, *args: Any) -> int:
            written = original(fd, *args)
            path = where(fd)
            if path is not None:
                name = os.path.basename(path).removesuffix(" (deleted)")
                counts[name] += written
                calls[name] += 1
            return written

        return counted

    os.write = wrap(os.write)
    os.pwrite = wrap(os.pwrite)
    os.writev = wrap(os.writev)

    def dump() -> None:
        doc = {"bytes": sum(counts.values()), "files": dict(counts), "calls": dict(calls)}
        with open(outfile, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)

    atexit.register(dump)


def main() -> None:
    directory, outfile, sep, *rest = sys.argv[1:]
    if sep != "--":
        raise SystemExit("usage: python -m bench.launch DIR OUTFILE -- reconciler-args...")
    _install(directory, outfile)
    sys.argv = ["reconciler", *rest]
    runpy.run_module("reconciler", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
