"""P8: apply binding 100 running servers that hold no key pair to one key pair.

The set-up, without latency: the key pair made by an apply of a manifest without
``servers:``, then 100 running servers made in the emulator (public image, SSH port open,
no key pair). The measured apply, at the run's latency, declares the same key pair with
``servers:`` naming the 100: it lists the key pairs, the servers and the running tasks,
sends the binds ten to a ``batch-associate`` (parallelism 10) and follows each task to its
end. Each task takes ``TASK_SECONDS`` in the emulator.

The floor is the requests' latency on the way: the ⌈N/10⌉ batch submissions, 10 in flight;
the listings (key pair pages, server pages, running tasks) one after another; the task's own
duration; and at least one read of each task once it has ended, 10 in flight. Client CPU and
start-up are not in it.

May import: the standard library, ``reconciler``, ``bench.*``.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from bench.figures import Figure
from bench.harness import HEADER, Run, Sample, check
from reconciler.emulator.fleet import PUBLIC_IMAGE, RUNNING

PARALLELISM = 10
BATCH = 10  # KPS batch-associate: servers a request
TASK_SECONDS = 0.2  # the emulator's default
KEYPAIR = "fleet-key"
POLL_BOUND = 2  # task reads a task at most, for tasks of up to 0.5 s (see below)


def _manifest(d: Path, servers: list[str] | None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    listed = "" if servers is None else f", servers: [{', '.join(servers)}]"
    (d / "keypairs.yaml").write_text(
        f"{HEADER}keypairs:\n  - {{name: {KEYPAIR}, generate: ed25519{listed}}}\n",
        encoding="utf-8")
    return d


def _one(ctx: Any, n: int) -> Run:
    """A fresh cloud, the key pair and ``n`` servers made; then the measured apply."""
    b = ctx.bench
    b.reset_cloud()
    b.set_latency(0)
    b.emulator.compute.configure(task_seconds=TASK_SECONDS)
    state_dir = b.state_dir("p8")
    shutil.rmtree(state_dir)
    state_dir.mkdir()
    check(b.cli("apply", "--auto-approve", str(_manifest(b.work / "manifests-p8-keypair",
                                                           None)),
                state_dir=state_dir, api="kps"))
    fleet = b.emulator.compute.fleet(b.emulator.project_id)
    names = [f"srv-{i:03d}" for i in range(n)]
    for name in names:
        fleet.add(name=name, status=RUNNING, image_type=PUBLIC_IMAGE, ssh_port_open=True,
                  ssh_port=22, at_ms=int(b.emulator.compute.now() * 1000))
    manifests = _manifest(b.work / "manifests-p8", names)
    b.set_latency(ctx.latency * 1000)
    run = check(b.cli("apply", "--auto-approve", "--parallelism", str(PARALLELISM),
                      str(manifests), state_dir=state_dir, api="kps"))
    bound = [s for s in fleet.all() if s.key_name == KEYPAIR]
    if len(bound) != n:
        raise RuntimeError(f"P8 apply bound {len(bound)} of {n} servers:\n{run.stdout[-2000:]}")
    return run


def p8(ctx: Any, *, n: int = 100) -> None:
    ctx.log(f"P8: apply binding {n} running servers to one key pair ({ctx.reps}x)")
    sample = Sample(tuple(_one(ctx, n) for _ in range(ctx.reps)))

    def most(op: str) -> int:
        return max(r.requests.get(op, 0) for r in sample.runs)

    batches, singles = most("kps_batch_associate"), most("kps_associate")
    polls = most("kps_show_task")
    pages = {"key pairs": most("list"), "servers": most("ecs_list_servers_details"),
             "running tasks": most("kps_list_running_tasks")}
    listings = sum(pages.values())
    needed = math.ceil(n / BATCH)
    lat = ctx.latency
    floor = (needed * lat / PARALLELISM + listings * lat + TASK_SECONDS
             + n * lat / PARALLELISM)
    wall = sample.median("wall")
    requests = most("total")
    met = (batches + singles <= needed and polls <= POLL_BOUND * n
           and wall <= floor + 1.5)
    ctx.figures.append(Figure(
        "P8", f"apply binding {n} running servers without a key pair to one key pair, "
        f"{lat * 1000:g} ms/request, tasks of {TASK_SECONDS:g} s, parallelism "
        f"{PARALLELISM}; {batches} batch-associate + {singles} associate (≤ {needed}), "
        f"{polls} task reads, {listings} listings, {requests} requests",
        wall, "s", floor,
        f"associate requests ≤ {needed}, task reads ≤ {POLL_BOUND} a task, "
        "wall ≤ floor + 1.5 s", met,
        {"batch_associate": batches, "associate": singles, "needed": needed,
         "task_reads": polls, "task_reads_per_task": polls / n, "listings": pages,
         "requests": requests, "task_seconds": TASK_SECONDS, "over_floor": wall - floor,
         "cpu": sample.median("cpu"), "rss_mb": sample.median("rss_mb"),
         "walls": [r.wall for r in sample.runs], "cpus": [r.cpu for r in sample.runs]}))
    ctx.bench.reset_cloud()
