"""``reconciler demo``: the one-command tour against the built-in emulator.

Starts the emulator in-process on a free port, plans and applies the bundled ``examples/``
into a temporary directory, writes one private key out and checks its fingerprint against
the cloud's, shows that a second plan has no changes, and leaves nothing behind.

``--example multi-target`` tours ``examples/multi-target/`` instead: the emulator serves its
three projects (two regions of our account, and a partner's account with the agency it
delegates to us), and the tour plans, applies, lists state and plans again.

``--example bindings`` tours ``examples/bindings/`` (``commands.demo_bindings``): one key
pair bound to three servers the emulator runs, rotated, then unbound.
"""

from __future__ import annotations

import argparse
import importlib
import os
import tempfile
from dataclasses import replace
from importlib.resources import as_file, files
from pathlib import Path

from reconciler import keys
from reconciler.env import Env, ExitCode
from reconciler.model import Secret
from reconciler.parser import COMMANDS, build_parser

CLEARED = ("RECONCILER_STATE", "RECONCILER_ENDPOINT", "RECONCILER_API", "RECONCILER_PASSPHRASE",
           "HUAWEICLOUD_SDK_SECURITY_TOKEN", "HW_SECURITY_TOKEN", "HUAWEICLOUD_SDK_PROJECT_ID",
           "HW_PROJECT_ID", "HW_REGION_NAME", "HW_ACCESS_KEY", "HW_SECRET_KEY")


def step(env: Env, number: int, text: str, *, total: int = 4) -> None:
    env.out()
    env.out(f"━━ {number}/{total}  {text}")
    env.out()


def call(argv: list[str], env: Env) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"reconciler.commands.{COMMANDS[args.command]}")
    return int(module.run(args, env))


def _tour(env: Env, examples: Path, tmp: Path) -> int:
    from reconciler.emulator.server import Emulator

    key_file = tmp / "state.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(32))
    with Emulator(host="127.0.0.1", port=0) as emu:
        environ = {k: v for k, v in env.environ.items() if k not in CLEARED}
        environ.update(HUAWEICLOUD_SDK_AK=emu.ak, HUAWEICLOUD_SDK_SK=emu.sk,
                       RECONCILER_KEY_FILE=str(key_file))
        denv = replace(env, environ=environ, cwd=tmp)
        common = ["--state", str(tmp / "reconciler.state.json"), "--endpoint", emu.endpoint,
                  "--project-id", emu.project_id]
        env.out(f"Emulator listening on {emu.endpoint} (project {emu.project_id}); "
                f"state in {tmp}.")
        step(env, 1, f"reconciler plan {examples}")
        if call(["plan", str(examples), *common], denv) != 0:
            return ExitCode.ERROR
        step(env, 2, f"reconciler apply --auto-approve {examples}")
        if call(["apply", "--auto-approve", str(examples), *common], denv) != 0:
            return ExitCode.ERROR
        name = "web-deploy"
        step(env, 3, f"reconciler output {name}, then reconciler output {name} --private-key "
                     f"--out {name}.key")
        if call(["output", name, *common], denv) != 0:
            return ExitCode.ERROR
        if call(["output", name, "--private-key", "--out", str(tmp / f"{name}.key"),
                  *common], denv) != 0:
            return ExitCode.ERROR
        private = Secret((tmp / f"{name}.key").read_text(encoding="utf-8"))
        md5, sha256 = keys.fingerprints(keys.public_key_of(private))
        env.out(f"The private key's own fingerprint is {sha256} (MD5 {md5}):")
        env.out("it is the key pair the cloud holds.")
        step(env, 4, f"reconciler plan --detailed-exitcode {examples}   (again)")
        code = call(["plan", "--detailed-exitcode", str(examples), *common], denv)
    env.out()
    env.out("The demo's state, keys and emulator lived in a temporary directory, now removed.")
    return ExitCode.OK if code == 0 else ExitCode.ERROR


# The projects and the agency of examples/multi-target/keys.yaml.
NORTH, SOUTH, PARTNER = ("0123456789abcdef0123456789abcdef", "1123456789abcdef0123456789abcdef",
                         "2123456789abcdef0123456789abcdef")
PARTNER_DOMAIN = "9a7e5e9d0c0000000000000000000001"


def _tour_targets(env: Env, example: Path, tmp: Path) -> int:
    from reconciler.emulator.server import Emulator

    key_file = tmp / "state.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(32))
    with Emulator(host="127.0.0.1", port=0, project_id=NORTH, region="cn-north-4",
                  projects={SOUTH: "cn-south-1"}, keygen="ed25519") as emu:
        emu.add_project(PARTNER, region="cn-north-4", domain_id=PARTNER_DOMAIN)
        emu.register_agency(name="reconciler-deploy", domain_id=PARTNER_DOMAIN,
                            domain_name="partner-corp", projects=[PARTNER])
        environ = {k: v for k, v in env.environ.items() if k not in CLEARED}
        environ.update(HUAWEICLOUD_SDK_AK=emu.ak, HUAWEICLOUD_SDK_SK=emu.sk,
                       RECONCILER_KEY_FILE=str(key_file))
        denv = replace(env, environ=environ, cwd=tmp)
        common = ["--state", str(tmp / "reconciler.state.json"), "--endpoint", emu.endpoint]
        env.out(f"Emulator listening on {emu.endpoint}: projects {NORTH} (cn-north-4) and "
                f"{SOUTH} (cn-south-1) of our account, and {PARTNER} of the partner's, "
                "reached through its agency reconciler-deploy; state in {tmp}.".replace(
                    "{tmp}", str(tmp)))
        step(env, 1, f"reconciler plan {example}")
        if call(["plan", str(example), *common], denv) != 0:
            return ExitCode.ERROR
        step(env, 2, f"reconciler apply --auto-approve {example}")
        if call(["apply", "--auto-approve", str(example), *common], denv) != 0:
            return ExitCode.ERROR
        step(env, 3, "reconciler state list")
        if call(["state", "list", *common[:2]], denv) != 0:
            return ExitCode.ERROR
        step(env, 4, f"reconciler plan --detailed-exitcode {example}   (again)")
        code = call(["plan", "--detailed-exitcode", str(example), *common], denv)
    env.out()
    env.out("The demo's state, keys and emulator lived in a temporary directory, now removed.")
    return ExitCode.OK if code == 0 else ExitCode.ERROR


def run(args: argparse.Namespace, env: Env) -> int:
    with as_file(files("reconciler") / "examples") as examples, \
            tempfile.TemporaryDirectory(prefix="reconciler-demo-") as tmp:
        example = getattr(args, "example", "default")
        if example == "multi-target":
            return _tour_targets(env, Path(examples) / "multi-target", Path(tmp))
        if example == "bindings":
            from reconciler.commands.demo_bindings import tour

            return tour(env, Path(examples) / "bindings", Path(tmp))
        return _tour(env, Path(examples), Path(tmp))
