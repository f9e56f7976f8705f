"""``reconciler import --all --generate-config-out FILE``: onboard an existing estate.

Reads every key pair of each target (one paginated list), then one detail GET per key pair it
may adopt (the list lacks description and user id: a one-time cost, reported), sorts them
(``reconciler.onboarding``), writes the declarations of those no manifest declares to FILE
(``reconciler.configgen``; checked by loading it with the manifests before it is written),
adopts them into state, and reports what it adopted, skipped and left to a person.
``--dry-run`` writes FILE and the report, and no state.

FILE is never overwritten (as Terraform's ``-generate-config-out``): when there is something
new to declare and FILE exists, nothing is done. A re-run over the manifests FILE joined finds
what it declared managed (skipped) and writes only what is new, to a new FILE; with nothing
new it writes no file.

Order: every read first (lists, details, exports), then FILE, then state, so that a failure
leaves no state entry undeclared (which the next plan would delete); a state write that fails
after FILE is written is mended by running it again (FILE's key pairs are then declared as the
cloud holds them, and adopted).

May import: everything but ``reconciler.cli``.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reconciler import keys
from reconciler.address import Address
from reconciler.api.protocol import KeyPairApi
from reconciler.commands.common import Session, api_name, provider_flags, session
from reconciler.configgen import render_manifest
from reconciler.env import Env, ExitCode
from reconciler.errors import DiagnosticsError, UsageError
from reconciler.fsutil import SAFE_FLAGS, explain, lstat_or_none, refuse_odd_target, remove_quietly
from reconciler.manifest import listed_in_directory, load_manifests
from reconciler.model import DesiredKeyPair, Manifest, RemoteKeyPair, SealedSecret, Secret
from reconciler.onboarding import Onboarding, Survey, adopted_entry, settle, survey
from reconciler.redact import scrub
from reconciler.refresh import refresh_each
from reconciler.settings import effective_api
from reconciler.state.protocol import StateStore
from reconciler.state.reserved import state_file_clash
from reconciler.targets import addressing, desired_by_address, recorded_by_address

DETAIL_PARALLELISM = 10


def _paths(args: argparse.Namespace) -> list[str]:
    return [args.name, *args.paths] if args.name else list(args.paths)


def _load(args: argparse.Namespace, env: Env, extra: list[Path] | None = None) -> Manifest:
    """The manifests (an empty directory is fine: an estate may have none yet), and
    ``extra`` files with them."""
    override = args.api or env.environ.get("RECONCILER_API")
    if override:
        effective_api(provider_flags(args), env.environ, None)  # a clear error if unknown
    return load_manifests([*(env.resolve(p) for p in _paths(args)), *(extra or [])],
                          cwd=env.cwd, api=override, allow_empty=True)


def run_all(args: argparse.Namespace, env: Env) -> int:
    out = env.resolve(args.generate_config_out)
    manifest = _load(args, env)
    with session(args, env, operation="import", manifest=manifest) as sess:
        apis = {t: a for t, a in sess.apis.items() if t in sess.reach.declared}
        snapshots, errors = refresh_each(apis)
        failed = {**sess.reach.failed, **{t: str(e) for t, e in errors.items()}}
        run = addressing(manifest, sess.state, sess.reach.moves)
        found = survey(manifest, run, snapshots=snapshots,
                       recorded=recorded_by_address(sess.state, run, sess.reach.moves),
                       declared=desired_by_address(manifest, run),
                       export=bool(args.export_private_keys))
        details = _describe(found, apis)
        onboarding = settle(found, details=details,
                            capabilities={t: a.capabilities for t, a in apis.items()},
                            targeted=bool(manifest.targets), order=tuple(apis))
        if onboarding.declarations:
            _check_target(out)
            _refuse_state_names(out, sess.store, args.generate_config_out, env)
        if onboarding.declarations and lstat_or_none(out) is not None:
            raise UsageError(
                f"{args.generate_config_out} exists, and {len(onboarding.declarations)} key "
                "pair(s) are new: reconciler never overwrites it. Nothing was done. Give a "
                "new file name for what is new (beside the manifests), or remove the file if "
                "it is a leftover")
        generated = _generated(args, env, out, onboarding)
        declared = {**{a: generated[a.name] for a in onboarding.adopted
                       if a not in onboarding.declared}, **onboarding.declared}
        sealed = {} if args.dry_run else _exports(args, sess, onboarding, apis)
        if onboarding.declarations:
            _write(out, render_manifest(onboarding.declarations), args.generate_config_out)
        if not args.dry_run and onboarding.adopted:
            _adopt(sess, env, onboarding, declared, sealed)
        _report(env, sess=sess, onboarding=onboarding, found=found, failed=failed,
                snapshots_requests=sum(s.requests for s in snapshots.values()),
                details=len(details), sealed=sealed, args=args)
    if onboarding.declarations and not _read_with(out, args, env):
        env.err(f"Warning: {args.generate_config_out} is not where the manifests given are "
                "read from: move it beside them before the next plan, which would otherwise "
                "delete the key pairs it declares" + ("" if args.dry_run else
                                                      " (they are in state now)") + ".")
    return ExitCode.ERROR if failed else ExitCode.OK


def _read_with(out: Path, args: argparse.Namespace, env: Env) -> bool:
    """Whether the next plan over the same PATHs reads FILE: a directory among them holds it
    under a name the directory lists (``*.yaml``/``*.yml``, not hidden), or it is one of
    them; no PATH is the working directory."""
    given = [env.resolve(p) for p in _paths(args)] or [env.cwd]
    where = out.parent.resolve() / out.name
    return any(p.is_dir() and p.resolve() == where.parent and listed_in_directory(where)
               for p in given) or any(p.resolve() == where for p in given)


def _refuse_state_names(out: Path, store: StateStore, shown: str, env: Env) -> None:
    """FILE is never the state file, a file beside it that state writes, or the key file."""
    said = state_file_clash(out, store, environ=env.environ)
    if said is not None:
        raise UsageError(f"{shown} is {said}. Nothing was done. Give a name beside the "
                         "manifests for --generate-config-out")


def _check_target(out: Path) -> None:
    """FILE may be missing or a regular file (refused later, as existing): never a link, a
    directory or a FIFO, named as such."""
    try:
        refuse_odd_target(out)
    except OSError as exc:
        raise UsageError(f"{explain(exc, out, doing='write')}. Nothing was done") from None


def _beside(out: Path, suffix: str, text: str) -> Path:
    """A new hidden file beside FILE holding ``text``: a name of its own, created exclusively
    and never through a link (a name planted there is never written through)."""
    for _ in range(8):
        path = out.with_name(f".{out.name}.{os.getpid()}-{secrets.token_hex(4)}.{suffix}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | SAFE_FLAGS, 0o666)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
        except BaseException:
            remove_quietly(path)
            raise
        return path
    raise FileExistsError(f"no free name beside {out}")


def _describe(found: Survey, apis: Mapping[str, KeyPairApi]
              ) -> dict[Address, RemoteKeyPair | None]:
    """One detail GET per key pair that may be adopted, on a small pool."""
    wanted = found.to_describe
    if not wanted:
        return {}
    with ThreadPoolExecutor(max_workers=min(DETAIL_PARALLELISM, len(wanted)),
                            thread_name_prefix="detail") as pool:
        futures = {a: pool.submit(apis[a.target].get_keypair, a.name) for a in wanted}
        return {a: f.result() for a, f in futures.items()}


def _generated(args: argparse.Namespace, env: Env, out: Path,
               onboarding: Onboarding) -> dict[str, DesiredKeyPair]:
    """The declarations as the manifest loader reads them from the file about to be written
    (loaded with the manifests, in a hidden file beside FILE that a directory never lists):
    what validates is what is written, and state records what the next plan reads."""
    if not onboarding.declarations:
        return {}
    text = render_manifest(onboarding.declarations)
    probe: Path | None = None
    try:
        probe = _beside(out, "check.yaml", text)
        loaded = _load(args, env, [probe]).by_name()
    except DiagnosticsError as exc:
        raise UsageError("the generated declarations do not load with the manifests, so "
                         f"nothing was written (please report this):\n{exc}") from None
    except OSError as exc:
        raise UsageError(f"{explain(exc, out, doing='write')}. Nothing was "
                         "written; choose another place for --generate-config-out") from None
    finally:
        if probe is not None:
            remove_quietly(probe)
    for d in onboarding.declarations:
        got = loaded.get(d.name)
        if got is None or got.public_key != d.public_key or got.description != d.description:
            raise UsageError(f"the generated declaration of {d.name!r} does not read back as "
                             "written, so nothing was written (please report this)")
    return {d.name: loaded[d.name] for d in onboarding.declarations}


def _exports(args: argparse.Namespace, sess: Session, onboarding: Onboarding,
             apis: Mapping[str, KeyPairApi]) -> dict[Address, SealedSecret]:
    """The private keys the cloud holds, copied into state only when asked."""
    out: dict[Address, SealedSecret] = {}
    if not args.export_private_keys:
        return out
    for addr, remote in onboarding.adopted.items():
        api = apis[addr.target]
        if remote.key_protection and api.capabilities.export:
            secret = api.export_private_key(addr.name)
            if secret is not None:
                _check_export(secret, remote, addr)
                out[addr] = sess.store.seal(addr.name, secret, target=addr.target)
    return out


def _check_export(secret: Secret, remote: RemoteKeyPair, addr: Address) -> None:
    """Never seal into state a private key that is not the half of the public key read."""
    if not keys.is_half_of(secret, remote.public_key, key_type=remote.type):
        raise UsageError(f"{addr}: the private key the cloud exported is not the half of its "
                         "public key, so nothing was written or adopted. Run the import "
                         "again; if it persists, adopt the key pairs without "
                         "--export-private-keys (the cloud keeps its copy) and report it")


def _write(out: Path, text: str, shown: str) -> None:
    """FILE, created exclusively (never over a file that appeared meanwhile), whole or not at
    all: written beside it, then linked into place."""
    part: Path | None = None
    try:
        part = _beside(out, "part", text)
        os.link(part, out)
    except FileExistsError:
        raise UsageError(f"{shown} appeared while the estate was being read; nothing was "
                         "written. Run it again with a new file name") from None
    except OSError as exc:
        raise UsageError(f"{explain(exc, out, doing='write')}. Nothing was written") from None
    finally:
        if part is not None:
            remove_quietly(part)


def _adopt(sess: Session, env: Env, onboarding: Onboarding,
           declared: Mapping[Address, DesiredKeyPair],
           sealed: Mapping[Address, SealedSecret]) -> None:
    created = env.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
    for addr, remote in onboarding.adopted.items():
        secret = sealed.get(addr)
        # An entry without a secret whose line is lost is adopted again by the next run (its
        # declaration says what the cloud holds); a private key is made durable at once.
        sess.store.record(adopted_entry(declared[addr], remote,
                                        api=sess.reach.settings[addr.target].api,
                                        target=addr.target, created=created, sealed=secret),
                          durable=secret is not None)
    sess.store.commit()


def _report(env: Env, *, sess: Session, onboarding: Onboarding, found: Survey,
            failed: Mapping[str, str], snapshots_requests: int, details: int,
            sealed: Mapping[Address, SealedSecret], args: argparse.Namespace) -> None:
    read = [t for t in sess.apis if t in sess.reach.declared and t not in failed]
    shown = "; ".join(f"{t} ({api_name(sess.reach.settings[t].api)} at "
                      f"{sess.reach.settings[t].endpoint})" for t in read)
    env.out(f"Read {len(found.listed)} key pairs in {len(read)} target"
            f"{'s' if len(read) != 1 else ''}" + (f": {shown}." if read else "."))
    env.out(f"Requests: {snapshots_requests} to list, and {details} detail reads (one per key "
            "pair that may be adopted: the list lacks description and user id; a one-time "
            "cost).")
    for target, why in failed.items():
        env.err(scrub(f"Error: target {target} could not be read, so none of its key pairs "
                      f"were adopted: {why}"))
    env.out()
    verb = "To adopt" if args.dry_run else "Adopted"
    for addr in onboarding.adopted:
        env.out(f"{addr}: {'will be imported' if args.dry_run else 'Import complete'}")
    generated = len(onboarding.adopted) - len(onboarding.declared)
    if onboarding.declarations:
        env.out()
        env.out(f"Wrote {args.generate_config_out}: {len(onboarding.declarations)} "
                f"declaration{'s' if len(onboarding.declarations) != 1 else ''} of "
                f"{generated} key pair{'s' if generated != 1 else ''}.")
    env.out()
    env.out(f"{verb}: {len(onboarding.adopted)} ({generated} declared in "
            f"{args.generate_config_out if onboarding.declarations else 'no new file'}, "
            f"{len(onboarding.declared)} declared already).")
    env.out(f"Skipped (already managed): {len(onboarding.skipped)}.")
    env.out(f"Needs a decision: {len(onboarding.decisions)}.")
    for d in onboarding.decisions:
        env.out(f"  {d.address}: {d.why}.")
        env.out(f"    {d.what[:1].upper()}{d.what[1:]}.")
    custody = [a for a, r in onboarding.adopted.items() if r.key_protection and a not in sealed]
    env.out(f"Private keys only the cloud holds: {len(custody)}"
            + (" (not copied into state; --export-private-keys copies them)." if custody
               and not args.export_private_keys else "."))
    for addr in custody:
        env.out(f"  {addr}")
    if sealed:
        env.out(f"Private keys exported into state (--export-private-keys): {len(sealed)}.")
    env.out()
    if args.dry_run:
        env.out("Dry run: state was not changed. `reconciler plan` over the manifests with the "
                "file shows the key pairs to import; `reconciler import --all` (or apply) "
                "adopts them.")
    elif not onboarding.adopted:
        env.out("Nothing new to adopt." if not onboarding.decisions and not failed else
                "Nothing adopted.")
    else:
        env.out("The key pairs are now in state and will henceforth be managed by reconciler; "
                "`reconciler plan` over the manifests with the file says No changes.")
