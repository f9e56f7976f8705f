"""`reconciler emulator`: serve the local Huawei key pair API until interrupted.

Prints the endpoint and the ``export`` lines for the emulator's own (made-up) credentials,
then serves until Ctrl-C, which stops it cleanly (exit 0).

May import: ``reconciler.emulator``, ``reconciler.env``, the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

from reconciler.emulator import Emulator
from reconciler.env import Env, ExitCode


def build(args: argparse.Namespace) -> Emulator:
    """An ``Emulator`` configured from the parsed ``emulator`` flags."""
    return Emulator(
        host=args.host,
        port=args.port,
        ak=args.ak,
        sk=args.sk,
        project_id=getattr(args, "project_id", None),
        latency_ms=args.latency_ms,
        fault_rate=args.fault_rate,
        seed=args.seed,
        data=args.data,
        keygen=args.keygen,
    )


def banner(emu: Emulator) -> list[str]:
    """The lines a user pastes into a shell to point reconciler (or the SDK) at ``emu``."""
    return [
        f"Huawei key pair API emulator listening on {emu.endpoint}",
        f"  v2.1: {emu.endpoint}/v2.1/{emu.project_id}/os-keypairs",
        f"  v2:   {emu.endpoint}/v2/{emu.project_id}/os-keypairs",
        f"  kps:  {emu.endpoint}/v3/{emu.project_id}/keypairs",
        f"  admin (loopback only): {emu.endpoint}/_emulator/counters",
        "",
        "# the emulator's own made-up credentials; paste these into your shell:",
        f"export RECONCILER_ENDPOINT={emu.endpoint}",
        f"export HUAWEICLOUD_SDK_AK={emu.ak}",
        f"export HUAWEICLOUD_SDK_SK={emu.sk}",
        f"export HUAWEICLOUD_SDK_PROJECT_ID={emu.project_id}",
        "",
        "Press Ctrl-C to stop.",
    ]


def _forever() -> None:
    while True:
        time.sleep(3600)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the emulator as Ctrl-C does (so ``--data`` is saved), in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(
    args: argparse.Namespace,
    env: Env,
    *,
    wait: Callable[[], None] | None = None,
) -> int:
    """Serve until Ctrl-C. ``wait`` (for tests) replaces waiting for the interrupt."""
    if args.latency_ms < 0:
        env.err("Error: --latency-ms must not be negative.")
        return ExitCode.ERROR
    if not 0 <= args.fault_rate <= 1:
        env.err("Error: --fault-rate must be between 0 and 1 (e.g. 0.2 for 20 %).")
        return ExitCode.ERROR
    try:
        emu = build(args)
        emu.start()
    except (OSError, ValueError) as exc:
        env.err(f"Error: cannot start the emulator: {exc}")
        return ExitCode.ERROR
    try:
        for line in banner(emu):
            env.out(line)
        env.stdout.flush()
        with _sigterm_interrupts():
            (wait or _forever)()
    except KeyboardInterrupt:
        env.err("Stopping the emulator.")
    finally:
        emu.stop()
    return ExitCode.OK
