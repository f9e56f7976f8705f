"""What the cloud-facing commands share: loading manifests, opening state and the API,
debug logging, and the progress hooks that print apply's lines.

May import: everything but ``reconciler.cli``.
"""

from __future__ import annotations

import argparse
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.address import DEFAULT_TARGET
from reconciler.api.protocol import ApiSettings, KeyPairApi
from reconciler.apply import Outcome
from reconciler.capabilities import capabilities
from reconciler.commands.reach import Reach, check_distinct, connection_of
from reconciler.env import Env
from reconciler.errors import StateError, UsageError
from reconciler.model import (
    Api,
    Manifest,
    ProviderConfig,
    S3Location,
    State,
)
from reconciler.plan import Action, Change
from reconciler.settings import (
    ProviderFlags,
    effective_api,
    resolve_api_settings,
    with_custody_endpoint,
)
from reconciler.state.protocol import StateStore

if TYPE_CHECKING:
    from reconciler.api.bindings import BindingClients
    from reconciler.refresh import EarlyLists


def provider_flags(args: argparse.Namespace) -> ProviderFlags:
    return ProviderFlags(api=args.api, endpoint=args.endpoint, region=args.region,
                         project_id=args.project_id, insecure=bool(args.insecure))


def load(args: argparse.Namespace, env: Env, paths: Sequence[str] | None = None) -> Manifest:
    """The manifests named on the command line, or ``paths`` (default: the working
    directory)."""
    from reconciler.manifest import load_manifests

    given = getattr(args, "paths", []) if paths is None else paths
    paths_ = [env.resolve(p) for p in given]
    override = args.api or env.environ.get("RECONCILER_API")
    if override:
        effective_api(provider_flags(args), env.environ, None)  # a clear error if unknown
    # The loader checks per-API rules against this API (else the provider block's).
    return load_manifests(paths_, cwd=env.cwd, api=override)


def api_settings(args: argparse.Namespace, env: Env,
                 provider: ProviderConfig | None) -> ApiSettings:
    return resolve_api_settings(provider_flags(args), env.environ, provider)


def run_provider(args: argparse.Namespace, env: Env,
                 manifest: Manifest) -> ProviderConfig | None:
    """The provider block of a run of one target without a credentials block: the provider
    block, or the only entry of targets (``None`` when the run has several targets, or its
    one target has its own credentials: those are reached by ``run_settings``)."""
    from reconciler.settings import target_provider

    if len(manifest.targets) > 1:
        return None
    if manifest.targets:
        if manifest.targets[0].credentials is not None:
            return None
        return target_provider(manifest.targets[0], provider_flags(args), env.environ)
    return manifest.provider


def run_settings(args: argparse.Namespace, env: Env,
                 manifest: Manifest) -> dict[str, ApiSettings]:
    """Each declared target's settings, by name, in manifest order."""
    from reconciler.commands.reach import declared_settings

    if not manifest.targets:
        return {DEFAULT_TARGET: api_settings(args, env, manifest.provider)}
    if len(manifest.targets) == 1 and manifest.targets[0].credentials is None:
        only = manifest.targets[0]  # its custody calls go to its endpoints.kms, when given
        return {only.name: with_custody_endpoint(
            api_settings(args, env, run_provider(args, env, manifest)), only)}
    return declared_settings(provider_flags(args), env.environ, manifest)


def open_api(settings: ApiSettings) -> KeyPairApi:
    from reconciler.api.flavours import make_api

    return make_api(settings)


def open_state(args: argparse.Namespace, env: Env,
               backend: S3Location | None = None, *, discover: bool = False,
               verify: bool = True, manifest: Manifest | None = None,
               settings: dict[str, ApiSettings] | None = None) -> StateStore:
    """The state store. ``discover``: for commands that take no manifests to plan (state,
    output, force-unlock), the ``backend`` and ``encryption`` blocks of the manifests given as
    PATH (default: the working directory) count, as Terraform reads its backend from the
    working directory. ``verify=False`` only for commands that neither write state nor reveal
    a secret (they may read it unverified). ``manifest`` and ``settings``: the run's, for the
    state key provider and the KMS target (``statekey``)."""
    from reconciler.commands.statekey import choose_encryption, kms_access
    from reconciler.state.factory import open_store

    if discover and manifest is None:
        manifest = _discovered_manifest(args, env)
        if backend is None and manifest is not None and not _explicit_state(args, env):
            backend = manifest.backend
    choice = choose_encryption(args, env, manifest)
    return open_store(state_path=args.state, backend=args.backend,
                      backend_endpoint=args.backend_endpoint, manifest_backend=backend,
                      env=env, notice=env.err, insecure=bool(getattr(args, "insecure", False)),
                      verify=verify, encryption=choice,
                      data_keys=kms_access(args, env, manifest, choice, settings))


def integrity_notice(store: StateStore) -> str | None:
    """The one line a read-only command prints when the state was read unverified."""
    from reconciler.state.protocol import Integrity

    if store.integrity is Integrity.UNVERIFIED and store.key_provider == "kms":
        return (f"Note: the state {store.description} is sealed with a KMS data key, which "
                "this command does not unwrap (it reveals no secret, so it needs no KMS "
                "access): it was read unverified, checked by its checksum only. apply checks "
                "it.")
    if store.integrity is Integrity.UNVERIFIED:
        return (f"Note: the state {store.description} was read unverified: no state key is "
                "available (RECONCILER_PASSPHRASE, RECONCILER_KEY_FILE or "
                "~/.config/reconciler/key), so its integrity was not checked. apply checks it.")
    if store.integrity is Integrity.FORMAT_1:
        return (f"Note: the state {store.description} is in format 1, which has no integrity "
                "check: it was read unverified. Commands that write it refuse until it is "
                "upgraded, once: check it, then run `reconciler state upgrade` with the state "
                "key.")
    return None


def open_existing_state(args: argparse.Namespace, env: Env, *,
                        verify: bool = True) -> StateStore:
    """The discovered state store, which must hold a state: a command that only reads state
    reports where it looked rather than an empty (invented) state."""
    store = open_state(args, env, discover=True, verify=verify)
    if not store.exists():
        raise StateError(
            f"no state found: {store.description} does not exist ({_chosen(args, env)}). Run "
            "`reconciler apply` first, or point at the state with --state PATH, --backend "
            "s3://BUCKET/KEY, or the manifests whose backend block names it (`reconciler state "
            "list DIR`, or `reconciler -C DIR ...`).")
    return store


def _chosen(args: argparse.Namespace, env: Env) -> str:
    """How the state's place was chosen, for the "no state found" message."""
    if args.state or args.backend:
        return "chosen with --state" if args.state else "chosen with --backend"
    for name in ("RECONCILER_STATE", "RECONCILER_BACKEND"):
        if env.environ.get(name):
            return f"chosen with {name}"
    given = getattr(args, "paths", None) or []
    where = ", ".join(given) if given else f"the working directory {env.cwd}"
    if _discovered_backend(args, env) is not None:
        return f"named by the backend block of the manifests in {where}"
    return (f"the default local state: no --state, --backend, RECONCILER_STATE or "
            f"RECONCILER_BACKEND, and no backend block in the manifests of {where}")


def _explicit_state(args: argparse.Namespace, env: Env) -> bool:
    return bool(args.state or args.backend or env.environ.get("RECONCILER_STATE")
                or env.environ.get("RECONCILER_BACKEND"))


def _discovered_backend(args: argparse.Namespace, env: Env) -> S3Location | None:
    if _explicit_state(args, env):
        return None  # chosen explicitly
    manifest = _discovered_manifest(args, env, blocks="backend")
    return manifest.backend if manifest is not None else None


def _discovered_manifest(args: argparse.Namespace, env: Env, *,
                         blocks: str = "backend|encryption") -> Manifest | None:
    """The manifests named as PATH (checked as plan checks them), else those of the working
    directory when one declares one of ``blocks`` (with the state chosen explicitly, only
    ``encryption`` counts); None without any."""
    explicit = _explicit_state(args, env)
    if getattr(args, "paths", None):
        return load(args, env)
    wanted = "encryption" if explicit else blocks
    try:
        files = [p for p in env.cwd.iterdir()
                 if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()]
        declares = any(re.search(rf"^(?:{wanted}):", p.read_text(errors="replace")[:1 << 20],
                                 re.M) for p in files)
    except OSError:
        return None
    return load(args, env) if declares else None


def refuse_without_lock(args: argparse.Namespace, *, operation: str) -> None:
    """``--lock=false`` is for plan only (a read): a writer without the lock risks two
    writers at once, each overwriting what the other recorded, private keys included."""
    if getattr(args, "lock", True) is False:
        raise UsageError(
            f"--lock=false is for plan only; {operation} writes state, and writing without the "
            "lock risks two writers at once, one losing what the other recorded (private keys "
            "included). Run it without --lock=false; --lock-timeout 5m waits for the lock "
            "instead.")


def state_lock(store: StateStore, args: argparse.Namespace, *,
               operation: str) -> AbstractContextManager[object]:
    """The state lock for ``operation``, or, for a plan with ``--lock=false``, none."""
    if operation != "plan":
        refuse_without_lock(args, operation=operation)
    elif getattr(args, "lock", True) is False:
        return nullcontext()
    return store.lock(operation=operation, timeout=lock_timeout(args))


def lock_timeout(args: argparse.Namespace) -> float:
    from reconciler.duration import parse_duration

    return parse_duration(args.lock_timeout)


class SafeFormatter(logging.Formatter):
    """Every log line scrubbed of known secrets and with its control characters escaped,
    the traceback of a logged exception included."""

    def format(self, record: logging.LogRecord) -> str:
        from reconciler.redact import scrub
        from reconciler.textsafe import printable

        return printable(scrub(super().format(record)), multiline=True)


@contextmanager
def debug_logging(args: argparse.Namespace, env: Env) -> Iterator[None]:
    """``--debug``: the HTTP log (secrets redacted, then scrubbed) on stderr for the command."""
    if not getattr(args, "debug", False):
        yield
        return
    handler = logging.StreamHandler(env.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
    logger = logging.getLogger("reconciler")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


@dataclass
class LineHooks:
    """Apply progress as Terraform prints it: one line per step, safe across threads.

    On a terminal (``live``) a status line under them shows how far the apply is; without one
    (a CI log), Terraform's ``Still creating... [10s elapsed]`` lines show it is alive.
    ``close`` stops the heartbeat.
    """

    env: Env
    colour: bool = False
    live: bool = False
    total: int = 0

    def __post_init__(self) -> None:
        from reconciler.commands.heartbeat import Heartbeat

        self._lock = threading.Lock()
        self._done = 0
        self._running = 0
        self._beat = None if self.live else Heartbeat(interval=self.env.heartbeat,
                                                      clock=self.env.clock, say=self._say)

    def close(self) -> None:
        if self._beat is not None:
            self._beat.close()

    def _say(self, text: str) -> None:
        self._say_all([text])

    def _say_all(self, texts: Sequence[str]) -> None:
        with self._lock:
            if self.live:
                self.env.stdout.write("\r\x1b[K")
            self.env.out_all(texts)
            if self.live and self._done < self.total:
                self.env.stdout.write(f"  {self._done}/{self.total} done, "
                                      f"{self._running} in progress...")
            self.env.stdout.flush()

    def pre_apply(self, change: Change, phase: str) -> None:
        self.pre_apply_all([change], phase)

    def pre_apply_all(self, changes: Sequence[Change], phase: str) -> None:
        verb = {"create": "Creating...", "delete": "Destroying...", "update": "Modifying...",
                "import": "Importing...", "forget": "Removing from state..."}[phase]
        # a replacement, and an import with an update, are one change of two steps
        starting = sum(0 if (phase == "create" and c.action is Action.REPLACE) or (
            phase == "update" and c.importing) else 1 for c in changes)
        with self._lock:
            self._running += starting  # a replacement is one change
        labels = [str(c.address) for c in changes]
        self._say_all([f"{label}: {verb}" for label in labels])
        if self._beat is not None:
            self._beat.start_all(labels, phase)

    def post_apply(self, change: Change, outcome: Outcome) -> None:
        self.post_apply_all([(change, outcome)])

    def post_apply_all(self, done: Sequence[tuple[Change, Outcome]]) -> None:
        labels = [str(change.address) for change, _ in done]
        if self._beat is not None:
            self._beat.stop_all(labels)
        with self._lock:
            self._done += len(done)
            self._running -= len(done)
        self._say_all([_finished(label, outcome)
                       for label, (_, outcome) in zip(labels, done, strict=True)])


def _finished(label: str, outcome: Outcome) -> str:
    if not outcome.ok:
        return f"{label}: failed after {outcome.elapsed:.1f}s"
    done = {Action.CREATE: "Creation complete", Action.REPLACE: "Creation complete",
            Action.DELETE: "Destruction complete", Action.UPDATE: "Modifications complete",
            Action.IMPORT: "Import complete",
            Action.FORGET: "Removed from state"}[outcome.action]
    return f"{label}: {done} after {outcome.elapsed:.1f}s"


def api_name(api: Api) -> str:
    return capabilities(api).title


def announce_credentials(settings: ApiSettings, env: Env) -> None:
    """Say on stderr which credential source the run uses (never a secret), then get the
    credentials, so that a refused ID token stops the run before state is locked."""
    from reconciler.textsafe import printable

    env.err(f"Credentials: {printable(settings.credentials.source)}.")
    settings.credentials.current()


@dataclass
class Session:
    """One command's hold on the cloud and the (locked, loaded) state: every target it
    reaches, each with its API, and those it cannot reach (``reach.failed``)."""

    manifest: Manifest
    store: StateStore
    state: State
    reach: Reach
    apis: dict[str, KeyPairApi]
    # Each target's ECS and KPS binding clients, opened when a plan first needs them.
    bindings: dict[str, BindingClients] = field(default_factory=dict)
    # The lists a plan's session started while it read the state (``refresh.listed``).
    early: EarlyLists | None = None

    def binding_clients(self) -> dict[str, BindingClients]:
        """The binding clients of every target with an API (opened once, closed with the
        session)."""
        from reconciler.api.bindings import BindingClients

        for name in self.apis:
            if name not in self.bindings:
                self.bindings[name] = BindingClients(self.reach.settings[name])
        return self.bindings

    @property
    def settings(self) -> ApiSettings:
        """The settings of the run's first target (its only one, for most runs)."""
        return next(iter(self.reach.settings.values()))

    @property
    def api(self) -> KeyPairApi:
        return next(iter(self.apis.values()))

    @property
    def several(self) -> bool:
        """Whether the run has more than one target (addresses then show the target)."""
        return len(self.reach.declared) > 1 or bool(self.reach.removed or self.reach.forget)


@contextmanager
def session(args: argparse.Namespace, env: Env, *, operation: str,
            manifest: Manifest | None = None,
            provider: ProviderConfig | None = None,
            target: str = DEFAULT_TARGET,
            settings: dict[str, ApiSettings] | None = None) -> Iterator[Session]:
    """Load manifests, resolve each target's settings, lock and load state, and open each
    target's API. With one target, its credentials failing stops the run (before state is
    locked); with several, a target whose credentials fail is reported in ``reach.failed``
    and the others go on.

    ``settings`` (a saved plan of several targets): each declared target's settings, as the
    plan pins them."""
    from reconciler.commands.reach import announce, credential_failures, reach

    if operation != "plan":
        refuse_without_lock(args, operation=operation)  # before anything else is looked at
    manifest = manifest if manifest is not None else load(args, env)
    declared = (settings if settings is not None
                else {target: api_settings(args, env, provider)} if provider is not None
                else run_settings(args, env, manifest))
    failed: dict[str, str] = {}
    with debug_logging(args, env):
        if len(declared) == 1:
            announce_credentials(next(iter(declared.values())), env)
        else:
            announce(Reach(settings=declared, declared=tuple(declared)), env)
            failed = credential_failures(declared)
            if len(failed) == len(declared):
                raise UsageError(f"no target could be reached: {'; '.join(failed.values())}")
    with debug_logging(args, env):  # opening the store logs the state backend's proxy
        store = open_state(args, env, manifest.backend, verify=operation != "plan",
                           manifest=manifest, settings=declared)
    with debug_logging(args, env), state_lock(store, args, operation=operation), \
            _early_lists(args, manifest, declared, failed, plan=operation == "plan") as early:
        state = store.load()
        reached = reach(args, env, provider_flags(args), manifest, declared, state)
        for name in reached.removed:
            failed.update(credential_failures({name: reached.settings[name]}))
        reached.failed = {n: why for n, why in failed.items() if n in reached.settings}
        for name, chosen in declared.items():
            if name not in reached.failed:
                store.connect(name, connection_of(chosen))
        notice = integrity_notice(store)
        if notice and operation == "plan":
            env.err(notice)
        if operation != "plan":  # before the cloud is asked anything: never half an apply
            store.require_current_format(doing=operation)
            moved = store.prepare_key()  # KMS failing stops the run here, nothing written
            if moved is not None:
                state = store.load()
                env.err(f"State {store.description} moved to {moved[1].describe()} (it was "
                        f"sealed with {moved[0].describe()}): every private key sealed again, "
                        f"serial {state.serial} kept; {store.description}.backup keeps the "
                        "previous version.")
        apis = {name: (early.adopt(name) if declared.get(name) is s else None) or open_api(s)
                for name, s in reached.settings.items() if name not in reached.failed}
        for s in reached.settings.values():
            if not s.verify_tls and s.endpoint.startswith("https://"):
                env.err(f"Warning: --insecure: the TLS certificate of {s.endpoint} is not "
                        "verified.")
                break
        held = Session(manifest=manifest, store=store, state=state, reach=reached, apis=apis,
                       early=early)
        ended = False
        try:
            yield held
            ended = True
        finally:
            # before the APIs: a list still running uses its API; after an error or an
            # interrupt, a list still running is not waited for (``EarlyLists.close``)
            early.close(wait=ended)
            for api in apis.values():
                api.close()
            for clients in held.bindings.values():
                clients.close()


@contextmanager
def _early_lists(args: argparse.Namespace, manifest: Manifest,
                 declared: dict[str, ApiSettings], failed: dict[str, str], *,
                 plan: bool) -> Iterator[EarlyLists]:
    """A plan's lists of its declared targets (those ``--in`` keeps, whose credentials
    resolved), started once the state is locked: they run while the state is read and
    checked. The APIs the session does not take are closed here.

    None starts early when ``--in`` names a target the manifests do not declare: that name
    is known (or refused) only once the state is read, and nothing is asked of the cloud
    for a run that may yet be refused."""
    from reconciler.refresh import EarlyLists

    within = set(getattr(args, "within", []) or ())
    starting: dict[str, KeyPairApi] = {}
    if plan and within <= set(declared):
        check_distinct(manifest, declared)  # refused before any request, as it always was
        starting = {name: open_api(s) for name, s in declared.items()
                    if name not in failed and (not within or name in within)}
    early = EarlyLists(starting)
    ended = False
    try:
        yield early
        ended = True
    finally:
        early.close(wait=ended)  # an error (the state's, say) is not held up by a slow list
        for name, api in early.apis.items():
            if name not in early.adopted:
                api.close()


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` atomically to ``path`` with mode 0600."""
    from reconciler.state.files import replace_file

    replace_file(path, text.encode("utf-8"))
