"""The argparse parser: every command, flag and global option of the command line.

Global options are accepted before or after the command. Kept free of heavy imports so that
``reconciler --version`` stays fast. Used by ``cli`` and by ``demo`` (which runs commands
with parsed arguments of its own).

May import: the standard library, ``reconciler`` (for the version).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from reconciler import __version__

# command name -> module in reconciler.commands exposing run(args, env) -> int
COMMANDS: dict[str, str] = {
    "validate": "validate",
    "plan": "plan",
    "apply": "apply",
    "destroy": "destroy",
    "import": "import_",
    "state": "state",
    "output": "output",
    "force-unlock": "force_unlock",
    "schema": "schema",
    "emulator": "emulator",
    "demo": "demo",
}


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Global options, accepted before or after the command.

    On sub-parsers the defaults are SUPPRESS so a value given before the command survives.
    """

    def d(value: object) -> object:
        return value if top else argparse.SUPPRESS

    g = parser.add_argument_group("global options")
    g.add_argument("-C", "--chdir", metavar="DIR", default=d(None),
                   help="switch to DIR before doing anything else (Terraform's -chdir)")
    g.add_argument("--state", metavar="PATH", default=d(None),
                   help="state file (default reconciler.state.json; env RECONCILER_STATE)")
    g.add_argument("--backend", metavar="s3://BUCKET/KEY", default=d(None),
                   help="remote state in S3-compatible storage (OBS, MinIO, AWS)")
    g.add_argument("--backend-endpoint", metavar="URL", default=d(None),
                   help="endpoint of the remote state's object storage "
                        "(env RECONCILER_BACKEND_ENDPOINT); http:// only for loopback")
    g.add_argument("--encryption", choices=("passphrase", "key_file", "kms"), default=d(None),
                   help="state key provider (env RECONCILER_ENCRYPTION; else the manifests' "
                        "encryption block, else the passphrase or key file the environment "
                        "gives)")
    g.add_argument("--encryption-mode", choices=("fallback", "enforced"), default=d(None),
                   help="enforced (default): read and write state only with that provider; "
                        "fallback: read a state sealed by another, write with that one (env "
                        "RECONCILER_ENCRYPTION_MODE)")
    g.add_argument("--kms-key-id", metavar="KEY", default=d(None),
                   help="the KMS key of --encryption kms: its UUID or alias/NAME (env "
                        "RECONCILER_KMS_KEY_ID)")
    g.add_argument("--kms-target", metavar="TARGET", default=d(None),
                   help="the target whose KMS holds the state key (env RECONCILER_KMS_TARGET; "
                        "default: the only or first target)")
    g.add_argument("--endpoint", metavar="URL", default=d(None),
                   help="API endpoint (env RECONCILER_ENDPOINT); http:// only for loopback")
    g.add_argument("--region", default=d(None), help="region, e.g. cn-north-4 (env HW_REGION_NAME)")
    g.add_argument("--project-id", default=d(None),
                   help="project id (env HUAWEICLOUD_SDK_PROJECT_ID or HW_PROJECT_ID)")
    g.add_argument("--api", choices=("v2", "v2.1", "kps"), default=d(None),
                   help="API flavour (env RECONCILER_API; default v2.1)")
    g.add_argument("--lock-timeout", metavar="DURATION", default=d("0s"),
                   help="how long to wait for the state lock, e.g. 30s, 2m (default 0s)")
    g.add_argument("--lock", type=_boolean, metavar="{true,false}", default=d(True),
                   help="hold the state lock (default true); only plan may run with "
                        "--lock=false")
    g.add_argument("--insecure", action="store_true", default=d(False),
                   help="do not verify TLS certificates")
    g.add_argument("--no-color", action="store_true", default=d(False),
                   help="no colour in output (also NO_COLOR)")
    g.add_argument("--debug", action="store_true", default=d(False),
                   help="log HTTP requests (secrets redacted) and show tracebacks")


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


# Terraform's single-dash spellings, accepted as they are written in Terraform's docs.
_TERRAFORM_SPELLINGS = ("-chdir=", "-lock=", "-lock-timeout=")


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """``-chdir=DIR`` and ``-lock=false`` (Terraform's spelling) as ``--chdir=DIR``, ..."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            out.extend(argv[i:])
            break
        out.append("-" + arg if arg.startswith(_TERRAFORM_SPELLINGS) else arg)
    return out


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _targets(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", action="append", default=[], metavar="ADDRESS",
                   help="limit to this key pair: a name (in every target) or an address "
                        "(repeatable)")
    p.add_argument("--in", action="append", default=[], metavar="TARGET", dest="within",
                   help="limit to the key pairs of this target, as the manifests or state "
                        "name it (repeatable)")
    p.add_argument("--forget-target", action="append", default=[], metavar="TARGET",
                   help="drop from state the key pairs of this target, which the manifests no "
                        "longer declare, without a request to the cloud (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="Declarative reconciler for Huawei Cloud SSH key pairs.",
    )
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    _add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_global_options(p, top=False)
        return p

    p = cmd("validate", "check manifests offline: schema and cross-file rules")
    p.add_argument("paths", nargs="*", metavar="PATH")

    p = cmd("plan", "refresh, diff and show what apply would do")
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument("--out", metavar="FILE", help="save the plan for `reconciler apply FILE`")
    p.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    p.add_argument("--detailed-exitcode", action="store_true",
                   help="exit 0 for no changes, 2 for changes, 1 for errors")
    _targets(p)
    p.add_argument("--replace", action="append", default=[], metavar="ADDRESS",
                   help="plan to replace this key pair: its name or its address (repeatable)")
    p.add_argument("--allow-bound-delete", action="store_true",
                   help="delete key pairs that servers still use (the plan warns)")
    p.add_argument("--destroy", action="store_true", help="plan to destroy everything in state")
    p.add_argument("--refresh-only", action="store_true",
                   help="only show how the cloud drifted from state")

    p = cmd("apply", "carry out a plan: create, import, replace and delete key pairs")
    p.add_argument("paths", nargs="*", metavar="PLANFILE|PATH",
                   help="a saved plan, then the manifests it was made from (checked against "
                        "it); or manifests, to plan and ask")
    p.add_argument("--auto-approve", action="store_true", help="do not ask for approval")
    p.add_argument("--parallelism", type=_positive, default=10, metavar="N",
                   help="changes carried out at once (default 10)")
    _targets(p)
    p.add_argument("--replace", action="append", default=[], metavar="ADDRESS")
    p.add_argument("--allow-bound-delete", action="store_true",
                   help="delete key pairs that servers still use (the plan warns)")
    p.add_argument("--refresh-only", action="store_true",
                   help="record in state how the cloud drifted; change nothing in the cloud")
    p.add_argument("--destroy", action="store_true",
                   help="destroy everything in state (as `reconciler destroy`); with a saved "
                        "plan, repeat the options it was made with")

    p = cmd("destroy", "delete every key pair in state (respecting prevent_destroy)")
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument("--auto-approve", action="store_true")
    p.add_argument("--parallelism", type=_positive, default=10, metavar="N")
    _targets(p)

    p = cmd("import", "adopt key pairs that already exist in the cloud into state")
    p.add_argument("name", metavar="NAME", nargs="?",
                   help="the declared key pair to adopt (a name or an address); with --all, "
                        "the first PATH")
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument("--all", action="store_true",
                   help="adopt every key pair of each target that no manifest declares, "
                        "writing their declarations to --generate-config-out FILE")
    p.add_argument("--in", action="append", default=[], metavar="TARGET", dest="within",
                   help="only the key pairs of this target (repeatable)")
    p.add_argument("--generate-config-out", metavar="FILE",
                   help="with --all: write the declarations of the key pairs adopted to FILE "
                        "(never overwritten)")
    p.add_argument("--dry-run", action="store_true",
                   help="with --all: write FILE and the report, but no state")
    p.add_argument("--export-private-keys", action="store_true",
                   help="copy into state the private keys the cloud holds (kps); without it "
                        "they stay only in the cloud's custody")

    p = cmd("state", "inspect or change state")
    ssub = p.add_subparsers(dest="state_command", metavar="SUBCOMMAND", required=True)
    for name, text in (("list", "list managed key pairs"),
                       ("show", "show one key pair (never its private key)"),
                       ("rm", "forget a key pair; never touches the cloud"),
                       ("mv", "move a key pair to another target in state; never touches the "
                              "cloud"),
                       ("push", "upload a local state file to the configured backend"),
                       ("pull", "print the state document (secrets stay encrypted)"),
                       ("upgrade", "rewrite a format 1 state (reconciler 0.1.0) as format 2, "
                                   "once; needs the state key"),
                       ("rekey", "seal every private key again under a fresh state key (a new "
                                 "KMS data key, or a new passphrase salt); nothing else "
                                 "changes")):
        sp = ssub.add_parser(name, help=text, description=text)
        _add_global_options(sp, top=False)
        if name in ("show", "rm"):
            sp.add_argument("name", metavar="NAME")
        if name == "mv":
            sp.add_argument("source", metavar="SOURCE")
            sp.add_argument("destination", metavar="DESTINATION")
        if name == "push":
            sp.add_argument("file", metavar="FILE")
        sp.add_argument("paths", nargs="*", metavar="PATH",
                        help="the manifests whose backend block holds the state "
                             "(default: the working directory)")
        if name == "push":
            sp.add_argument("--force", action="store_true",
                            help="overwrite even a newer serial or another lineage")

    p = cmd("output", "show a key pair's public key and fingerprints")
    p.add_argument("name", metavar="NAME")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="the manifests whose backend block holds the state "
                        "(default: the working directory)")
    p.add_argument("--private-key", action="store_true",
                   help="the private key (to --out or stdout)")
    p.add_argument("--from-cloud", action="store_true",
                   help="with --private-key: export the private key the cloud keeps, for a "
                        "key pair whose private key state does not hold")
    p.add_argument("--out", metavar="FILE", help="write to FILE, created 0600")
    p.add_argument("--force", action="store_true", help="overwrite FILE")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = cmd("force-unlock", "remove a stale state lock")
    p.add_argument("lock_id", metavar="LOCK_ID")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="the manifests whose backend block holds the state")

    cmd("schema", "print the manifest JSON Schema")

    p = cmd("emulator",
            "run the local Huawei key pair API emulator (--project-id sets its project)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--ak", default=None, help="access key the emulator accepts (default: random)")
    p.add_argument("--sk", default=None, help="secret key the emulator accepts (default: random)")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--data", metavar="FILE", default=None, help="persist the store to FILE")
    p.add_argument("--keygen", choices=("rsa-2048", "ed25519"), default="rsa-2048",
                   help="algorithm for cloud-generated pairs (ed25519 is faster, for benchmarks)")

    p = cmd("demo", "a one-command tour against the built-in emulator")
    p.add_argument("--example", choices=("default", "multi-target", "bindings"),
                   default="default",
                   help="which bundled example to tour: the default one, three targets "
                        "(two regions and a partner account through an agency), or one key "
                        "pair bound to three servers, rotated and unbound")
    return parser
