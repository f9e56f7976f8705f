"""``reconciler demo --example bindings``: a key pair bound to three servers, rotated, unbound.

The emulator makes three running servers that hold no key pair (its in-process admin side,
as a test would); the tour plans and applies ``examples/bindings/`` (one key pair bound to
the three by name: one ``batch-associate``), rotates the key pair with ``--replace`` and
shows what each server accepts before and after, unbinds them by editing the manifest copy
in its temporary directory, applies, and shows that a last plan has no changes.

What a server accepts comes from the emulator's record of each server's accepted keys over
time (its key timeline), not from reconciler: the tour shows what the servers saw. The
rotation step reports what happened as it happened. A rotation that rebinds bound servers
before the old key pair goes (``NAME-gN`` generations) is not built yet: ``--replace`` today
makes a new key pair of the same name, and the servers keep accepting the old public key,
which the tour says, server by server; it then applies what is left (state lost the
bindings with the replaced entry: the next plan adopts them again) and takes the way out
for servers that accept a key state no longer holds: stopped (through the emulator), KPS
unbinds them offline, with no private key. Once rotation rebinds the servers, that way out
is not taken and the tour unbinds running servers. Nothing here ever prints a private key.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from reconciler import keys
from reconciler.address import keypair_address
from reconciler.commands.demo import CLEARED, call, step
from reconciler.emulator.fleet import PUBLIC_IMAGE, RUNNING, STOPPED, KeyEvent
from reconciler.emulator.server import Emulator
from reconciler.env import Env, ExitCode

PROJECT = "0123456789abcdef0123456789abcdef"  # examples/bindings/servers.yaml's
KEYPAIR = "web-fleet"
ADDRESS = str(keypair_address(KEYPAIR))
SERVERS = ("web-1", "web-2", "web-3")
MANIFEST = "servers.yaml"
STEPS = 5
TASK_SECONDS = 0.2  # how long the emulator's KPS takes over each binding task


@dataclass(frozen=True, slots=True)
class Made:
    name: str
    id: str


def _sha256(public_key: str | None) -> str:
    return "no key" if public_key is None else keys.fingerprints(public_key)[1]


def _event(e: KeyEvent) -> str:
    what = "no key" if e.public_key is None else f"{e.key_name} {_sha256(e.public_key)}"
    return f"{'made' if e.cause == 'created' else e.cause} → {what}"


def _timeline(emu: Emulator, server: Made) -> list[KeyEvent]:
    return emu.compute.fleet(emu.project_id).timeline(server.id) or []


def _accepted(env: Env, emu: Emulator, servers: list[Made], heading: str, *,
              history: bool = True) -> None:
    env.out(heading)
    for s in servers:
        events = _timeline(emu, s)
        now = events[-1] if events else None
        holds = ("no key (password login)" if now is None or now.public_key is None
                 else f"{now.key_name} {_sha256(now.public_key)}")
        server = emu.compute.fleet(emu.project_id).get(s.id)
        if server is not None and not server.running:
            holds += ", stopped"
        env.out(f"  {s.name} ({s.id}): {holds}")
        if history:
            env.out(f"      timeline: {';  '.join(_event(e) for e in events)}")


def _accepts(emu: Emulator, server: Made) -> str | None:
    """The public key the server accepts now (None: none)."""
    events = _timeline(emu, server)
    return events[-1].public_key if events else None


def _cloud_keys(emu: Emulator) -> dict[str, str]:
    """The public keys of the project's key pairs now, by public key: the key pair's name."""
    return {r.public_key: r.name for r in emu.store.all()}


def _rotation_report(env: Env, emu: Emulator, servers: list[Made],
                     before: dict[str, str | None], since_ms: int) -> list[Made]:
    """Says, server by server, whether it moved to a key the cloud holds with no moment
    without the old or the new one; the servers left on a key no key pair holds."""
    cloud = _cloud_keys(emu)
    good = 0
    locked = []
    for s in servers:
        events = _timeline(emu, s)
        during = [e for e in events if e.at_ms >= since_ms]
        now = events[-1].public_key if events else None
        old = before[s.id]
        holes = [e for e in during if e.public_key is None]
        if holes:
            env.out(f"  {s.name}: GAP: accepted no key from {holes[0].at_ms} ms "
                    f"({holes[0].cause})")
        elif now is not None and now != old and now in cloud:
            good += 1
            env.out(f"  {s.name}: no gap: {_sha256(old)} until it accepted "
                    f"{cloud[now]} {_sha256(now)}")
        elif now == old and now not in cloud:
            locked.append(s)
            env.out(f"  {s.name}: GAP: still accepts only the replaced public key "
                    f"{_sha256(old)}, which no key pair of the cloud holds any more; its "
                    "private key is gone from state with it")
        else:
            env.out(f"  {s.name}: accepts {_sha256(now)} "
                    f"({cloud.get(now or '', 'no key pair of the cloud')})")
    if good == len(servers):
        env.out("Rotated with no gap: every server accepts the new key pair, and none was "
                "ever without the old or the new key.")
    else:
        env.out(f"Rotation left {len(servers) - good} of {len(servers)} server(s) without "
                "the new key: rotation that rebinds bound servers before the old key pair "
                "is deleted (NAME-gN generations) is not built yet.")
    return locked


def _stop(env: Env, emu: Emulator, servers: list[Made]) -> None:
    """The way out for servers that accept a key state no longer holds: stopped, KPS unbinds
    (or resets) them offline, with no private key."""
    fleet = emu.compute.fleet(emu.project_id)
    for s in servers:
        fleet.change(s.id, at_ms=int(emu.compute.now() * 1000), status=STOPPED)
    env.out()
    names = [s.name for s in servers]
    who = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    env.out(f"State no longer holds the private key that {who} accept, so KPS would refuse "
            "to unbind them while they run (KPS.0106: the private key given is not the one "
            "the server accepts). The "
            "way out: stop them (done here through the emulator's admin side); KPS unbinds "
            "a stopped server offline, without a private key.")


def _make_servers(emu: Emulator) -> list[Made]:
    fleet = emu.compute.fleet(emu.project_id)
    made = []
    for name in SERVERS:
        s = fleet.add(name=name, status=RUNNING, image_type=PUBLIC_IMAGE, ssh_port_open=True,
                      ssh_port=22, at_ms=int(emu.compute.now() * 1000))
        made.append(Made(s.name, s.id))
    return made


def _unbind(manifest: Path) -> None:
    """The manifest copy without its ``servers:`` line: every server is unbound."""
    lines = manifest.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.lstrip().startswith("servers:")]
    if len(kept) != len(lines) - 1:
        raise RuntimeError(f"{manifest} has no single `servers:` line to remove")
    manifest.write_text("".join(kept), encoding="utf-8")


def _kps_requests(emu: Emulator, before: dict[str, int]) -> str:
    now = emu.counters()
    seen = {op: now.get(op, 0) - before.get(op, 0) for op in (
        "kps_batch_associate", "kps_associate", "kps_disassociate", "kps_show_task")}
    return (f"KPS requests: {seen['kps_batch_associate']} batch-associate, "
            f"{seen['kps_associate']} associate, {seen['kps_disassociate']} disassociate, "
            f"{seen['kps_show_task']} task reads.")


def step_note(env: Env, text: str) -> None:
    env.out()
    env.out(f"── {text}")
    env.out()


def tour(env: Env, example: Path, tmp: Path) -> int:
    manifests = tmp / "manifests"
    shutil.copytree(example, manifests)
    key_file = tmp / "state.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(32))
    with Emulator(host="127.0.0.1", port=0, project_id=PROJECT, keygen="ed25519") as emu:
        emu.compute.configure(task_seconds=TASK_SECONDS)
        environ = {k: v for k, v in env.environ.items() if k not in CLEARED}
        environ.update(HUAWEICLOUD_SDK_AK=emu.ak, HUAWEICLOUD_SDK_SK=emu.sk,
                       RECONCILER_KEY_FILE=str(key_file))
        denv = replace(env, environ=environ, cwd=tmp)
        common = ["--state", str(tmp / "reconciler.state.json"), "--endpoint", emu.endpoint]
        servers = _make_servers(emu)
        env.out(f"Emulator listening on {emu.endpoint} (project {PROJECT}); state and the "
                f"manifest copy in {tmp}.")
        env.out(f"It runs {len(servers)} servers that hold no key pair: "
                f"{', '.join(f'{s.name} ({s.id})' for s in servers)}; each KPS binding "
                f"task takes {TASK_SECONDS:g} s.")

        step(env, 1, f"reconciler plan {manifests}", total=STEPS)
        if call(["plan", str(manifests), *common], denv) != 0:
            return ExitCode.ERROR

        step(env, 2, f"reconciler apply --auto-approve {manifests}   (bind)", total=STEPS)
        counted = emu.counters()
        if call(["apply", "--auto-approve", str(manifests), *common], denv) != 0:
            return ExitCode.ERROR
        env.out()
        env.out(_kps_requests(emu, counted))
        _accepted(env, emu, servers, "What each server accepts now (the emulator's key "
                                     "timeline of each):")

        step(env, 3, f"reconciler apply --auto-approve --replace {ADDRESS} "
                     f"{manifests}   (rotate)", total=STEPS)
        _accepted(env, emu, servers, "What each server accepts before the rotation:",
                  history=False)
        env.out()
        held = {s.id: _accepts(emu, s) for s in servers}
        since_ms = int(emu.compute.now() * 1000)
        counted = emu.counters()
        rotated = call(["apply", "--auto-approve", "--replace", ADDRESS,
                        str(manifests), *common], denv)
        env.out()
        env.out(_kps_requests(emu, counted))
        _accepted(env, emu, servers, "What each server accepts after the rotation:")
        env.out()
        if rotated != 0:
            env.out(f"The rotation failed (exit {rotated}); what each server accepts is "
                    "above.")
        locked = _rotation_report(env, emu, servers, held, since_ms)
        step_note(env, f"reconciler apply --auto-approve {manifests}   (anything left "
                       "after the rotation)")
        if call(["apply", "--auto-approve", str(manifests), *common], denv) != 0:
            return ExitCode.ERROR
        if locked:
            _stop(env, emu, locked)

        step(env, 4, f"unbind: `servers:` removed from {manifests / MANIFEST}; "
                     f"reconciler apply --auto-approve {manifests}", total=STEPS)
        _unbind(manifests / MANIFEST)
        counted = emu.counters()
        unbound = call(["apply", "--auto-approve", str(manifests), *common], denv)
        env.out()
        env.out(_kps_requests(emu, counted))
        _accepted(env, emu, servers, "What each server accepts after the unbind:")
        if unbound != 0:
            return ExitCode.ERROR

        step(env, 5, f"reconciler plan --detailed-exitcode {manifests}   (again)",
             total=STEPS)
        code = call(["plan", "--detailed-exitcode", str(manifests), *common], denv)
    env.out()
    env.out("The demo's state, manifest copy, keys and emulator lived in a temporary "
            "directory, now removed.")
    return ExitCode.OK if code == 0 else ExitCode.ERROR
