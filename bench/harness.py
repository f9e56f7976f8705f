"""Running the reconciler CLI as a measured child process against an in-process emulator.

A ``Bench`` owns one emulator (in this process, on 127.0.0.1, port 0) and one working
directory. ``Bench.cli(...)`` starts ``python -m bench.launch`` (which runs
``python -m reconciler``), waits for it with ``os.wait4`` and returns a ``Run``: wall time,
CPU time (user + system of that child alone), peak RSS of that child, bytes written to the
state directory, and the emulator's request counters for the run.

May import: the standard library, ``reconciler`` (emulator, model), ``bench.*``.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.emulator.server import Emulator

ROOT = Path(__file__).resolve().parent.parent
HEADER = "apiVersion: reconciler/v1\nkind: KeyPairs\n"
_TMP_NAME = re.compile(r"^\.(.+)\.[0-9a-f]{12}\.tmp$")


@dataclass(frozen=True)
class Run:
    """One child process: what it cost, what it wrote, what it asked of the API."""

    argv: tuple[str, ...]
    code: int
    wall: float
    cpu: float
    rss_mb: float
    written: int
    written_files: dict[str, int]
    requests: dict[str, int]
    stdout: str
    stderr: str

    @property
    def total_requests(self) -> int:
        return self.requests.get("total", 0)


@dataclass(frozen=True)
class Sample:
    """The median over repeated runs of the same work (each figure separately)."""

    runs: tuple[Run, ...]

    def median(self, what: str) -> float:
        return float(statistics.median(getattr(r, what) for r in self.runs))

    @property
    def first(self) -> Run:
        return self.runs[0]

    def summary(self) -> dict[str, float]:
        return {k: self.median(k) for k in ("wall", "cpu", "rss_mb", "written")} | {
            "requests": float(statistics.median(r.total_requests for r in self.runs))}


@dataclass
class Bench:
    """An emulator and a working directory with a state file, a key file and manifests."""

    work: Path
    latency_ms: float = 20.0
    emulator: Emulator = field(init=False)

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.emulator = Emulator(host="127.0.0.1", port=0, keygen="ed25519")
        self.emulator.start()
        self.key_file = self.work / "state.key"
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
        self.environ = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.work),
            "HUAWEICLOUD_SDK_AK": self.emulator.ak,
            "HUAWEICLOUD_SDK_SK": self.emulator.sk,
            "RECONCILER_KEY_FILE": str(self.key_file),
            "NO_COLOR": "1",
            "PYTHONPATH": str(ROOT),
        }

    def close(self) -> None:
        self.emulator.stop()

    # -- fixtures --------------------------------------------------------------------------

    def state_dir(self, label: str) -> Path:
        d = self.work / f"state-{label}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def write_manifest(self, label: str, n: int, *, generate: str | None = "ed25519") -> Path:
        """``n`` key pairs named ``kp-00000``…, in one file of its own directory."""
        d = self.work / f"manifests-{label}"
        d.mkdir(parents=True, exist_ok=True)
        suffix = f", generate: {generate}" if generate else ""
        lines = [HEADER, "keypairs:\n"]
        lines += [f"  - {{name: kp-{i:05d}{suffix}}}\n" for i in range(n)]
        (d / "keypairs.yaml").write_text("".join(lines), encoding="utf-8")
        return d

    def reset_cloud(self) -> None:
        self.emulator.reset()

    def set_latency(self, ms: float) -> None:
        self.emulator.set_faults(latency_ms=ms)

    # -- running the CLI -------------------------------------------------------------------

    def cli(self, *args: str, state_dir: Path | None = None, api: str = "v2.1",
            cloud: bool = True) -> Run:
        """``python -m reconciler ARGS`` (through the write-counting launcher)."""
        extra: list[str] = []
        if state_dir is not None:
            extra += ["--state", str(state_dir / "reconciler.state.json")]
        if cloud:
            extra += ["--endpoint", self.emulator.endpoint, "--project-id",
                      self.emulator.project_id, "--api", api]
        watched = state_dir or self.work / "unwatched"
        watched.mkdir(parents=True, exist_ok=True)
        counts = self.work / "writes.json"
        counts.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "bench.launch", str(watched), str(counts), "--",
                *args, *extra]
        run = self.spawn(argv)
        if counts.exists():
            doc = json.loads(counts.read_text(encoding="utf-8"))
            files: dict[str, int] = {}
            for name, n in doc["files"].items():
                m = _TMP_NAME.match(name)
                key = f"{m.group(1)} (new document)" if m else name
                files[key] = files.get(key, 0) + int(n)
            run = _with_writes(run, int(doc["bytes"]), files)
        return run

    def spawn(self, argv: Sequence[str]) -> Run:
        """Start ``argv``, wait for it, and measure it alone (``os.wait4``)."""
        self.emulator.counters_.clear()
        out_path, err_path = self.work / "stdout.txt", self.work / "stderr.txt"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, env=self.environ, cwd=self.work)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        return Run(
            argv=tuple(argv), code=proc.returncode, wall=wall,
            cpu=usage.ru_utime + usage.ru_stime, rss_mb=usage.ru_maxrss / 1024.0,
            written=0, written_files={}, requests=self.emulator.counters(),
            stdout=out_path.read_text(encoding="utf-8", errors="replace"),
            stderr=err_path.read_text(encoding="utf-8", errors="replace"),
        )


def _with_writes(run: Run, total: int, files: dict[str, int]) -> Run:
    return Run(argv=run.argv, code=run.code, wall=run.wall, cpu=run.cpu, rss_mb=run.rss_mb,
               written=total, written_files=files, requests=run.requests, stdout=run.stdout,
               stderr=run.stderr)


def check(run: Run, *, codes: tuple[int, ...] = (0,)) -> Run:
    """Stop the benchmark when the CLI failed: a figure of a failed run means nothing."""
    if run.code not in codes:
        tail = (run.stdout[-1500:] + "\n" + run.stderr[-3000:]).strip()
        raise RuntimeError(f"{' '.join(run.argv[3:])} exited {run.code}:\n{tail}")
    return run
