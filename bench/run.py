"""``python -m bench.run``: measure the figures of DESIGN §8 and print them against targets.

Starts the emulator in this process (127.0.0.1, port 0, ``keygen=ed25519``, injected latency,
default 20 ms per request), runs the reconciler CLI as child processes and measures each one
alone (wall, CPU, peak RSS via ``os.wait4``; bytes written to the state directory via
``bench.launch``; API requests from the emulator's counters). Prints the table and the
scaling rows, and writes both as JSON (default ``bench/results/latest.json``).

``--quick`` is a smoke run (N up to 1,000, one repetition, well under a minute).
``--only P2b`` measures the kps batch-import apply at N = 10,000 beside P2's way (one create a
request, v2.1) at the same N; ``--only P7`` the plan of 20 targets at once; ``--only P8`` the
apply binding 100 servers to one key pair (``bench.p8``).

May import: the standard library, ``reconciler``, ``bench.*``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.figures import Figure, render_scaling, render_table
from bench.harness import ROOT, Bench, Run, Sample, check
from bench.p7 import p7
from bench.p8 import p8

PARALLELISM = 10
P2_N = 1000
P2B_N = 10000
BATCH = 10  # KPS batch import: key pairs a request
P6_SIZES = (1000, 10000)
KPS_PAGE = 1000


class Context:
    def __init__(self, bench: Bench, *, reps: int, latency_ms: float) -> None:
        self.bench = bench
        self.reps = reps
        self.latency = latency_ms / 1000.0
        self.figures: list[Figure] = []
        self.scaling: list[dict[str, Any]] = []
        self.baseline: dict[str, float] = {}

    def log(self, text: str) -> None:
        sys.stderr.write(f"[bench] {text}\n")
        sys.stderr.flush()

    def repeat(self, times: int, fn: Any) -> Sample:
        return Sample(tuple(fn() for _ in range(times)))


# -- P4 and the interpreter's own cost ----------------------------------------------------------

def interpreter_baseline(ctx: Context) -> None:
    sample = ctx.repeat(max(3, ctx.reps), lambda: check(
        ctx.bench.spawn([sys.executable, "-c", "pass"])))
    # the fastest start seen: the interpreter alone, what any Python command pays at least
    ctx.baseline = {"wall": min(r.wall for r in sample.runs),
                    "rss_mb": min(r.rss_mb for r in sample.runs)}


PROBE = "s = 0\nfor i in range(3_000_000):\n    s += i\n"


def cpu_probe(ctx: Context) -> float:
    """The CPU seconds of a fixed pure-Python loop (fastest of 3): this machine's speed at the
    time, taken at the start and the end of a run. A shared machine's speed drifts, within a
    run and from day to day; figures of two runs compare only when their probes are alike."""
    return min(check(ctx.bench.spawn([sys.executable, "-c", PROBE])).cpu for _ in range(3))


def p4(ctx: Context) -> None:
    b = ctx.bench
    ctx.log("P4: --version and validate of 1,000 key pairs")
    version = ctx.repeat(max(3, ctx.reps), lambda: check(
        b.spawn([sys.executable, "-m", "reconciler", "--version"])))
    ctx.figures.append(Figure(
        "P4a", "`reconciler --version`", version.median("wall"), "s", ctx.baseline["wall"],
        "≤ 0.3 s", version.median("wall") <= 0.3,
        {"cpu": version.median("cpu"), "rss_mb": version.median("rss_mb")}))
    manifests = b.write_manifest("validate", 1000)
    val = ctx.repeat(max(3, ctx.reps), lambda: check(
        b.spawn([sys.executable, "-m", "reconciler", "validate", str(manifests)])))
    ctx.figures.append(Figure(
        "P4b", "`validate` of 1,000 key pairs", val.median("wall"), "s", ctx.baseline["wall"],
        "≤ 1 s", val.median("wall") <= 1.0,
        {"cpu": val.median("cpu"), "rss_mb": val.median("rss_mb")}))


# -- applies and plans at each N --------------------------------------------------------------

def fresh_apply(ctx: Context, n: int, *, api: str = "v2.1") -> tuple[Run, int]:
    """An empty cloud and state, then ``apply`` creating ``n`` key pairs (generate: ed25519)."""
    b = ctx.bench
    b.reset_cloud()
    b.set_latency(ctx.latency * 1000)
    state_dir = b.state_dir(f"n{n}" if api == "v2.1" else f"n{n}-{api}")
    shutil.rmtree(state_dir)
    state_dir.mkdir()
    manifests = b.write_manifest(f"n{n}", n)
    run = check(b.cli("apply", "--auto-approve", "--parallelism", str(PARALLELISM),
                      str(manifests), state_dir=state_dir, api=api))
    if b.emulator.keypair_count() != n:
        raise RuntimeError(f"apply of {n} left {b.emulator.keypair_count()} in the cloud")
    size = (state_dir / "reconciler.state.json").stat().st_size
    return run, size


def plan(ctx: Context, n: int, api: str) -> Run:
    b = ctx.bench
    run = check(b.cli("plan", "--detailed-exitcode", str(b.work / f"manifests-n{n}"),
                      state_dir=b.state_dir(f"n{n}"), api=api))
    if "No changes." not in run.stdout:
        raise RuntimeError(f"plan of {n} in sync shows changes:\n{run.stdout[-2000:]}")
    return run


def scaling_row(command: str, n: int, sample: Sample) -> dict[str, Any]:
    return {"command": command, "n": n, **sample.summary(), "runs": len(sample.runs)}


def stage(ctx: Context, n: int, *, big: int) -> None:
    reps = ctx.reps if n == P2_N else 1
    ctx.log(f"apply of {n:,} key pairs ({reps}x)")
    applies = [fresh_apply(ctx, n) for _ in range(reps)]
    apply_sample = Sample(tuple(r for r, _ in applies))
    state_size = applies[-1][1]
    ctx.scaling.append(scaling_row("apply", n, apply_sample) | {"state_size": state_size})
    ctx.log(f"plan of {n:,} key pairs in sync ({ctx.reps}x)")
    plans = ctx.repeat(ctx.reps, lambda: plan(ctx, n, "v2.1"))
    ctx.scaling.append(scaling_row("plan", n, plans) | {"state_size": state_size})
    if n == P2_N:
        p2(ctx, apply_sample, n)
    if n in P6_SIZES:
        p6(ctx, n)
    if n == big:
        p1_p3_p5(ctx, n, plans=plans, apply_run=applies[-1][0], state_size=state_size)
        p2b(ctx, n, apply_sample)  # last: it leaves the cloud as kps made it


def p2b(ctx: Context, n: int, one_by_one: Sample) -> None:
    """Apply creating ``n`` key pairs through kps batch import (10 a request), beside
    ``one_by_one`` (P2's way, one create a request, measured in the same run at this N)."""
    ctx.log(f"P2b: apply creating {n:,} key pairs through kps batch import ({ctx.reps}x)")
    sample = Sample(tuple(fresh_apply(ctx, n, api="kps")[0] for _ in range(ctx.reps)))
    batches = math.ceil(n / BATCH)
    pages = max(r.requests.get("list", 0) for r in sample.runs)
    requests = max(r.total_requests for r in sample.runs)
    floor = batches * ctx.latency / PARALLELISM + pages * ctx.latency
    wall, cpu = sample.median("wall"), sample.median("cpu")
    old_wall, old_cpu = one_by_one.median("wall"), one_by_one.median("cpu")
    old_floor = n * ctx.latency / PARALLELISM + ctx.latency
    ctx.figures.append(Figure(
        "P2b", f"apply creating {n:,} key pairs (generate: ed25519) through kps batch import, "
        f"parallelism {PARALLELISM}; {requests} requests (≤ {batches} + {pages} pages); "
        f"CPU {cpu / n * 1000:.3f} ms a key pair; one create a request (P2's way, v2.1): "
        f"{old_wall:.2f} s, {old_wall / wall:.1f}x the wall, CPU "
        f"{old_cpu / n * 1000:.3f} ms a key pair",
        wall, "s", floor, "≤ 1.5 x floor, requests ≤ ⌈N/10⌉ + pages",
        wall <= 1.5 * floor and requests <= batches + pages,
        {"cpu": cpu, "cpu_per_keypair_ms": cpu / n * 1000, "rss_mb": sample.median("rss_mb"),
         "requests": requests, "batches": batches, "pages": pages,
         "walls": [r.wall for r in sample.runs], "cpus": [r.cpu for r in sample.runs],
         "one_by_one": {"wall": old_wall, "cpu": old_cpu, "floor": old_floor,
                        "cpu_per_keypair_ms": old_cpu / n * 1000,
                        "requests": one_by_one.first.total_requests},
         "wall_ratio": old_wall / wall, "cpu_ratio": old_cpu / cpu}))


def p2b_only(ctx: Context, n: int) -> None:
    ctx.log(f"P2's way at {n:,} (one create a request), for P2b's ratio")
    p2b(ctx, n, Sample((fresh_apply(ctx, n)[0],)))


def p2(ctx: Context, sample: Sample, n: int) -> None:
    floor = n * ctx.latency / PARALLELISM + ctx.latency
    wall = sample.median("wall")
    ctx.figures.append(Figure(
        "P2", f"apply creating {n:,} key pairs (generate: ed25519), parallelism "
        f"{PARALLELISM}", wall, "s", floor, "≤ 1.5 x floor", wall <= 1.5 * floor,
        {"cpu": sample.median("cpu"), "rss_mb": sample.median("rss_mb"),
         "requests": sample.first.total_requests,
         "walls": [r.wall for r in sample.runs]}))


def p1_p3_p5(ctx: Context, n: int, *, plans: Sample, apply_run: Run, state_size: int) -> None:
    ctx.log(f"plan of {n:,} key pairs in sync through kps ({ctx.reps}x)")
    kps = ctx.repeat(ctx.reps, lambda: plan(ctx, n, "kps"))
    for label, sample, pages in (("v2.1", plans, 1), ("kps", kps, math.ceil(n / KPS_PAGE))):
        requests = max(r.total_requests for r in sample.runs)
        floor = requests * ctx.latency
        wall = sample.median("wall")
        ctx.figures.append(Figure(
            f"P1 {label}", f"plan, {n:,} key pairs in sync ({label}), "
            f"{ctx.latency * 1000:g} ms/request; {requests} requests (≤ {pages} needed)",
            wall, "s", floor, "≤ floor + 1.5 s, requests ≤ pages",
            wall <= floor + 1.5 and requests <= pages,
            {"requests": requests, "pages_needed": pages, "over_floor": wall - floor,
             "cpu": sample.median("cpu"), "rss_mb": sample.median("rss_mb")}))
    ratio = apply_run.written / state_size
    ctx.figures.append(Figure(
        "P3", f"apply of {n:,} key pairs: bytes written to the state directory",
        apply_run.written, "B", state_size, "≤ 3 x final state", ratio <= 3.0,
        {"files": apply_run.written_files, "final_state_size": state_size}))
    rss = max(plans.median("rss_mb"), kps.median("rss_mb"))
    ctx.figures.append(Figure(
        "P5", f"plan of {n:,} key pairs: peak RSS (v2.1 and kps, the larger)", rss, "MB",
        ctx.baseline["rss_mb"], "≤ 150 MB", rss <= 150.0,
        {"v2.1": plans.median("rss_mb"), "kps": kps.median("rss_mb")}))


def p6(ctx: Context, n: int) -> None:
    b = ctx.bench
    for api in ("v2.1", "kps"):
        ctx.log(f"P6: refresh of {n:,} key pairs ({api}): list vs a GET each")
        b.environ |= {"BENCH_ENDPOINT": b.emulator.endpoint,
                      "BENCH_PROJECT_ID": b.emulator.project_id, "BENCH_API": api}
        run = check(b.spawn([sys.executable, "-m", "bench.refresh_probe", str(n),
                             str(PARALLELISM)]))
        doc = json.loads(run.stdout)
        listed, got = doc["list"], doc["get"]
        if listed["found"] != n or got["found"] != n:
            raise RuntimeError(f"refresh probe found {listed['found']}/{got['found']} of {n}")
        ratio = got["requests"] / listed["requests"]
        pages = 1 if api != "kps" else math.ceil(n / KPS_PAGE)
        ctx.figures.append(Figure(
            f"P6 {api} N={n:,}",
            f"refresh of {n:,} managed key pairs ({api}): one list, {listed['wall']:.3f} s; "
            f"per-key GET ({PARALLELISM} at a time): {got['requests']:.0f} req, "
            f"{got['wall']:.3f} s; GET/list: {ratio:.0f}x requests, "
            f"{got['wall'] / listed['wall']:.0f}x wall",
            listed["requests"], "req", float(pages), "report the ratio", None,
            {"list": listed, "get": got, "request_ratio": ratio,
             "wall_ratio": got["wall"] / listed["wall"], "parallelism": PARALLELISM}))


# -- the whole run ----------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    return {"nproc": os.cpu_count(), "python": platform.python_version(),
            "machine": platform.machine(), "system": platform.system(),
            "release": platform.release()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: N ≤ 1,000, one repetition")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "latest.json",
                   help="where to write the results (default: bench/results/latest.json)")
    p.add_argument("--latency-ms", type=float, default=20.0,
                   help="injected latency per API request (default 20)")
    p.add_argument("--reps", type=int, default=None,
                   help="repetitions for medians (default 3; 1 with --quick)")
    p.add_argument("--sizes", type=str, default=None,
                   help="comma-separated N for the scaling rows (default 100,1000,10000)")
    p.add_argument("--keep", action="store_true", help="keep the working directory")
    p.add_argument("--only", choices=("P2b", "P7", "P8"), default=None,
                   help="measure only this figure (P2b: kps batch import beside P2's way at "
                   "N = 10,000; P7: many targets at once; P8: 100 servers bound to one key "
                   "pair)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else (
        (100, 1000) if args.quick else (100, 1000, 10000))
    reps = args.reps or (1 if args.quick else 3)
    work = Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    started = time.time()
    bench = Bench(work, latency_ms=args.latency_ms)
    ctx = Context(bench, reps=reps, latency_ms=args.latency_ms)
    probes: list[float] = []
    try:
        probes.append(cpu_probe(ctx))
        interpreter_baseline(ctx)
        if args.only is None:
            p4(ctx)
            for n in sorted(sizes):
                stage(ctx, n, big=max(sizes))
        if args.only == "P2b":
            p2b_only(ctx, max(sizes) if args.sizes else P2B_N)
        elif args.only == "P8":
            p8(ctx)
        elif args.quick:
            p7(ctx, targets=4, per=250)
        else:
            p7(ctx)
        if args.only is None:
            p8(ctx)
        probes.append(cpu_probe(ctx))
    finally:
        bench.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    order = {"P1": 0, "P2": 1, "P3": 2, "P4": 3, "P5": 4, "P6": 5, "P7": 6, "P8": 7}
    ctx.figures.sort(key=lambda f: order.get(f.id[:2], 9))
    doc = {
        "command": "python -m bench.run " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(), "latency_ms": args.latency_ms, "reps": reps,
        "sizes": list(sizes), "interpreter": ctx.baseline,
        "cpu_probe_s": {"start": probes[0], "end": probes[-1]},
        "duration_s": time.time() - started,
        "figures": [f.as_dict() for f in ctx.figures], "scaling": ctx.scaling,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    m = doc["machine"]
    sys.stdout.write(
        f"reconciler benchmarks: {m['nproc']} CPUs, Python {m['python']}, {m['machine']}; "
        f"emulator latency {args.latency_ms:g} ms/request; medians of {reps}\n"
        f"CPU probe (a 3,000,000-step Python loop, fastest of 3): {probes[0]:.3f} s at the "
        f"start, {probes[-1]:.3f} s at the end\n\n")
    sys.stdout.write(render_table(ctx.figures) + "\n" + render_scaling(ctx.scaling) + "\n")
    sys.stdout.write(f"Written to {args.json} in {doc['duration_s']:.0f} s.\n")
    sys.stdout.flush()
    missed = [f.id for f in ctx.figures if f.met is False]
    if missed:
        sys.stdout.write(f"Missed: {', '.join(missed)}\n")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
