"""P7: plan of 20 targets x 1,000 key pairs in sync, every target refreshed at once.

One declaration of the key pairs, fanned out to every target (half of them kps, half v2.1),
each target its own project of the emulator. The set-up apply runs without latency; the plans
are measured at the run's latency. The floor is the slowest single target's: its pages times
the latency (1,000 key pairs are one kps page, and one Nova list), because the targets are
listed concurrently; one after another would take their sum.

May import: the standard library, ``reconciler``, ``bench.*``.
"""

from __future__ import annotations

import math
import shutil
from typing import Any

from bench.figures import Figure
from bench.harness import HEADER, Sample, check

KPS_PAGE = 1000


def _project(i: int) -> str:
    return f"{i:04d}".rjust(32, "7")


def p7(ctx: Any, *, targets: int = 20, per: int = 1000) -> None:
    b = ctx.bench
    ctx.log(f"P7: plan of {targets} targets x {per:,} key pairs in sync ({ctx.reps}x)")
    b.reset_cloud()
    b.set_latency(0)
    apis = ["kps" if i % 2 == 0 else "v2.1" for i in range(targets)]
    for i in range(targets):
        b.emulator.add_project(_project(i), region="cn-north-4")
    d = b.work / "manifests-p7"
    d.mkdir(parents=True, exist_ok=True)
    lines = [HEADER, "targets:\n"]
    lines += [f"  - {{name: t{i:02d}, region: cn-north-4, project_id: {_project(i)}, "
              f"api: {apis[i]}}}\n" for i in range(targets)]
    lines += ["keypairs:\n"] + [f"  - {{name: kp-{i:05d}, generate: ed25519}}\n"
                                for i in range(per)]
    (d / "keypairs.yaml").write_text("".join(lines), encoding="utf-8")
    state_dir = b.state_dir("p7")
    shutil.rmtree(state_dir)
    state_dir.mkdir()
    endpoint = ["--endpoint", b.emulator.endpoint]
    check(b.cli("apply", "--auto-approve", "--parallelism", "32", str(d), *endpoint,
                state_dir=state_dir, cloud=False))
    counts = [b.emulator.keypair_count(_project(i)) for i in range(targets)]
    if counts != [per] * targets:
        raise RuntimeError(f"P7 set-up apply left {counts} key pairs per target")
    b.set_latency(ctx.latency * 1000)

    def plan() -> Any:
        run = check(b.cli("plan", "--detailed-exitcode", str(d), *endpoint,
                          state_dir=state_dir, cloud=False))
        if "No changes." not in run.stdout:
            raise RuntimeError(f"P7 plan in sync shows changes:\n{run.stdout[-2000:]}")
        return run

    sample = Sample(tuple(plan() for _ in range(ctx.reps)))
    pages = {api: (math.ceil(per / KPS_PAGE) if api == "kps" else 1) for api in set(apis)}
    needed = sum(pages[api] for api in apis)
    slowest = max(pages.values()) * ctx.latency
    requests = max(r.total_requests for r in sample.runs)
    wall = sample.median("wall")
    ctx.figures.append(Figure(
        "P7", f"plan of {targets} targets x {per:,} key pairs in sync "
        f"({apis.count('kps')} kps, {apis.count('v2.1')} v2.1), "
        f"{ctx.latency * 1000:g} ms/request; {requests} requests (= {needed} pages needed)",
        wall, "s", slowest, "≤ slowest target's floor + 1.5 s, requests = pages",
        wall <= slowest + 1.5 and requests == needed,
        {"requests": requests, "pages_needed": needed, "sequential_floor": needed * ctx.latency,
         "over_floor": wall - slowest, "cpu": sample.median("cpu"),
         "rss_mb": sample.median("rss_mb"), "walls": [r.wall for r in sample.runs]}))
    b.reset_cloud()
