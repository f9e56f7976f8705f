"""Load and validate manifests: YAML files -> one ``Manifest``, or every problem at once.

``load_manifests(paths, cwd=...)`` reads files and directories (``*.yaml``/``*.yml`` directly
inside, in name order), checks each document against the JSON Schema and the rules a schema
cannot express (unique names across files, one provider, one backend and one encryption
block, per-API restrictions, readable and valid public keys, no private key where a public one
belongs), and builds frozen ``DesiredKeyPair`` records. It never calls an API. Problems are
raised together as one ``DiagnosticsError``, sorted by file, line and column.

Key files the manifest names (``public_key_file``, ``key_protection.private_key_file``) are
read by ``reconciler.fsutil``'s policy: regular files only (no FIFO, device or ``/proc``
pseudo-file), at most 64 KiB read, and a problem never shows a byte of their content.

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.fsutil``,
``reconciler.keys``, ``reconciler.yamlsafe``, ``reconciler.manifest_schema``,
``reconciler.configuration``, ``reconciler.capabilities``, ``reconciler.address``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter
from pathlib import Path

from reconciler import keys
from reconciler.address import (
    DEFAULT_TARGET,
    KEYPAIR,
    AddressSyntaxError,
    is_target_name,
    keypair_address,
    parse_address,
)
from reconciler.capabilities import DEFAULT_API, apis_with, capabilities
from reconciler.configuration import configuration_digest, spec_digest
from reconciler.errors import Diagnostic, DiagnosticsError, KeyFormatError
from reconciler.fsutil import MAX_KEY_FILE_BYTES, read_key_text
from reconciler.keys import check_public_key, looks_like_private_key
from reconciler.manifest_deliver import clashes, sinks_of
from reconciler.manifest_schema import format_path, schema_diagnostics, show
from reconciler.model import (
    AGENCY_DURATION_SECONDS,
    DEFAULT_AGENCY_DURATION_SECONDS,
    ROTATING_NAME_MAX,
    AgencyConfig,
    Api,
    CredentialsConfig,
    DeliverySink,
    DesiredKeyPair,
    Encryption,
    ImportRequest,
    KeyProtection,
    KeySource,
    Manifest,
    ProviderConfig,
    S3Location,
    ServerRef,
    SourceLocation,
    StateEncryption,
    TargetConfig,
)
from reconciler.yamlsafe import NodePath, YamlDocument, read_yaml_documents

__all__ = [
    "DEFAULT_API",
    "check_api_restrictions",
    "load_manifests",
    "parse_duration",
    "spec_digest",
]

API_VERSION = "reconciler/v1"
KIND = "KeyPairs"
_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}
_AGENCY_DURATION = re.compile(r"([0-9]{1,5}[hms])+")
_DURATION_PART = re.compile(r"([0-9]{1,5})([hms])")


def parse_duration(text: str) -> int:
    """``90d`` -> seconds. Units: h (hours), d (days), w (weeks). Raises ValueError."""
    if len(text) < 2 or text[-1] not in _UNITS or not text[:-1].isdigit() or text[0] == "0":
        raise ValueError(f"not a duration: {text[:20]!r}")
    return int(text[:-1]) * _UNITS[text[-1]]


def _api_problems(*, api: Api, key_protection: bool, description: bool,
                  scope: bool) -> list[tuple[str, str, str]]:
    """(field, summary, detail) for each field the api in use does not support."""
    out = []
    caps = capabilities(api)
    if key_protection and not caps.custody:
        out.append(("key_protection", f"key_protection is not supported by api {api}",
                    f"remove it, or use api {apis_with(lambda c: c.custody)} "
                    "(provider.api or --api)"))
    for name, present, ability in (("description", description, "descriptions"),
                                   ("scope", scope, "scope")):
        if present and not getattr(caps, ability):
            able = apis_with(attrgetter(ability))
            out.append((name, f"{name} is supported only by api {able} (the api in use is "
                        f"{api})", f"remove it, or use api {able} (provider.api or --api)"))
    return out


def check_api_restrictions(manifest: Manifest, api: Api | str) -> list[Diagnostic]:
    """What the manifest asks for that ``api`` cannot do (for a ``--api`` given later)."""
    api = Api(api)
    out = []
    for kp in manifest.keypairs:
        problems = _api_problems(api=api, key_protection=kp.key_protection is not None,
                                 description=kp.description is not None,
                                 scope=kp.scope is not None)
        for fld, summary, detail in problems:
            out.append(Diagnostic(summary, kp.location, path=keypair_address(kp.name).field(fld),
                                  detail=detail))
    return out


def _display(path: Path, cwd: Path) -> str:
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


def listed_in_directory(path: Path) -> bool:
    """Whether a directory given as a PATH lists the file at ``path`` as a manifest: the rule
    of ``_collect_files``, for a command that writes one (``import --all``)."""
    return path.suffix in (".yaml", ".yml") and not path.name.startswith(".")


def _collect_files(
    paths: Sequence[str | Path], cwd: Path, *, allow_empty: bool
) -> tuple[list[Path], list[Diagnostic]]:
    files: list[Path] = []
    diags: list[Diagnostic] = []
    for raw in paths or [cwd]:
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else cwd / path
        if path.is_dir():
            try:
                found = sorted(
                    p for p in path.iterdir() if listed_in_directory(p) and p.is_file()
                )
            except OSError as exc:
                diags.append(Diagnostic(
                    f"cannot list {_display(path, cwd)}: {exc.strerror or type(exc).__name__}"))
                continue
            if not found and not allow_empty:
                diags.append(Diagnostic(
                    f"no manifest files (*.yaml, *.yml) in {_display(path, cwd) or '.'}",
                    detail="give a directory holding manifests, or manifest files"))
            files.extend(found)
        elif not path.exists() and not path.is_symlink():
            # No file, so no line and column: name the path as it was given, and where from.
            diags.append(Diagnostic(
                f"{_display(path, cwd)}: no such file or directory",
                detail=f"give a manifest file or a directory of manifests; relative paths "
                       f"start at {cwd}"))
        else:
            files.append(path)
    unique: dict[str, Path] = {}
    for f in files:
        unique.setdefault(os.path.realpath(f), f)
    return list(unique.values()), diags


@dataclass
class _Loader:
    """Collects documents and diagnostics across every file of one load."""

    cwd: Path
    api: Api | None
    diags: list[Diagnostic] = field(default_factory=list)
    docs: list[YamlDocument] = field(default_factory=list)
    provider: tuple[YamlDocument, dict[str, object]] | None = None
    backend: tuple[YamlDocument, dict[str, object]] | None = None
    encryption: tuple[YamlDocument, dict[str, object]] | None = None
    targets: tuple[YamlDocument, list[object]] | None = None
    target_configs: dict[str, TargetConfig] = field(default_factory=dict)
    names: dict[str, SourceLocation] = field(default_factory=dict)
    keypairs: list[DesiredKeyPair] = field(default_factory=list)
    imports: list[ImportRequest] = field(default_factory=list)

    def add(self, doc: YamlDocument, path: NodePath, summary: str, *, key: bool = False,
            detail: str = "") -> None:
        self.diags.append(Diagnostic(summary, doc.location(path, key=key),
                                     path=format_path(path), detail=detail))

    def read(self, path: Path) -> None:
        display = _display(path, self.cwd)
        docs, diags = read_yaml_documents(path, display=display)
        self.diags.extend(diags)
        if not docs and not diags:
            self.diags.append(Diagnostic(
                "the file holds no YAML document", SourceLocation(display, 1, 1),
                detail=f"a manifest starts with apiVersion: {API_VERSION} and kind: {KIND}; "
                       "remove empty files from manifest directories"))
        for doc in docs:
            if self._is_manifest(doc):
                self.diags.extend(schema_diagnostics(doc))
                self.docs.append(doc)
                self._blocks(doc)

    def _is_manifest(self, doc: YamlDocument) -> bool:
        value = doc.value if isinstance(doc.value, dict) else {}
        if value.get("apiVersion") == API_VERSION and value.get("kind") == KIND:
            return True
        version = value.get("apiVersion")
        if isinstance(version, str) and version.startswith("reconciler/") \
                and version != API_VERSION:
            self.add(doc, ("apiVersion",), f"unsupported apiVersion {show(version)}",
                     detail=f"this version of reconciler reads apiVersion: {API_VERSION}")
        elif version == API_VERSION:
            self.add(doc, ("kind",), f"kind must be {KIND}, got {show(value.get('kind'))}",
                     detail=f"use kind: {KIND}")
        else:
            self.add(doc, (), "not a reconciler manifest",
                     detail=f"a manifest starts with apiVersion: {API_VERSION} and kind: {KIND};"
                            " keep other YAML files out of manifest directories")
        return False

    def _blocks(self, doc: YamlDocument) -> None:
        assert isinstance(doc.value, dict)
        for name in ("provider", "backend", "encryption"):
            block = doc.value.get(name)
            if not isinstance(block, dict):
                continue
            first = getattr(self, name)
            if first is not None:
                where = first[0].location((name,), key=True)
                self.add(doc, (name,), f"a second {name} block (the first is at {where})",
                         key=True, detail=f"keep exactly one {name} block across all files")
            else:
                setattr(self, name, (doc, block))
        block = doc.value.get("targets")
        if isinstance(block, list):
            if self.targets is not None:
                where = self.targets[0].location(("targets",), key=True)
                self.add(doc, ("targets",), f"a second targets block (the first is at {where})",
                         key=True, detail="list every target in one targets block")
            else:
                self.targets = (doc, block)

    def check_targets(self) -> None:
        """The targets block: names unique, and never together with a provider block."""
        if self.targets is None:
            return
        doc, items = self.targets
        if self.provider is not None:
            where = self.provider[0].location(("provider",), key=True)
            self.add(doc, ("targets",), f"a targets block and a provider block (at {where})",
                     key=True, detail="use one of them: move the provider block's region, "
                     "project_id, api and endpoint into an entry of targets, or drop targets")
        for index, item in enumerate(items):
            target = _target(self, doc, index, item)
            if target is None:
                continue
            first = self.target_configs.get(target.name)
            if first is not None:
                self.add(doc, ("targets", index, "name"), f"target {show(target.name)} is "
                         f"already declared at {first.location}",
                         detail="target names must be unique")
                continue
            self.target_configs[target.name] = target

    def target_api(self, name: str) -> Api:
        """The API a target is reached through (a flag or the environment wins)."""
        if self.api is not None:
            return self.api
        target = self.target_configs.get(name)
        return target.api if target is not None and target.api is not None else DEFAULT_API

    def effective_api(self) -> Api:
        if self.api is not None:
            return self.api
        if self.provider is not None:
            value = self.provider[1].get("api")
            if isinstance(value, str) and value in {a.value for a in Api}:
                return Api(value)
        return DEFAULT_API

    def check_keypairs(self) -> None:
        api = self.effective_api()
        for doc in self.docs:
            items = doc.value.get("keypairs") if isinstance(doc.value, dict) else None
            if not isinstance(items, list):
                continue
            for index, item in enumerate(items):
                if isinstance(item, dict):
                    kp = _KeyPairCheck(self, doc, ("keypairs", index), item, api).run()
                    if kp is not None:
                        self.keypairs.append(kp)

    def check_imports(self) -> None:
        """Every ``import:`` entry names a declared key pair (in the target it names), once.
        Whether it exists in the cloud is the plan's to say."""
        declared = {kp.name: kp for kp in self.keypairs}
        seen: dict[tuple[str, str | None], SourceLocation] = {}
        for doc in self.docs:
            items = doc.value.get("import") if isinstance(doc.value, dict) else None
            if not isinstance(items, list):
                continue
            for index, item in enumerate(items):
                to = item.get("to") if isinstance(item, dict) else None
                if isinstance(to, str):
                    self._import_entry(doc, ("import", index, "to"), to, declared, seen)

    def _import_entry(self, doc: YamlDocument, path: NodePath, to: str,
                      declared: dict[str, DesiredKeyPair],
                      seen: dict[tuple[str, str | None], SourceLocation]) -> None:
        try:
            query = parse_address(to)
        except AddressSyntaxError:
            return  # the schema's pattern says so, with the forms an address takes
        if query.kind != KEYPAIR:
            return
        here = doc.location(path)
        clash = seen.get((query.name, query.target)) or seen.get((query.name, None)) or (
            next((at for (n, _), at in seen.items() if n == query.name), None)
            if query.target is None else None)
        if clash is not None:
            self.add(doc, path, f"{query} is already listed for import at {clash}",
                     detail="list each key pair to import once")
            return
        seen[(query.name, query.target)] = here
        kp = declared.get(query.name)
        if kp is None and query.name in self.names:
            return  # declared, with errors of its own (reported at the declaration)
        if kp is None:
            self.add(doc, path, f"{query} is not declared in keypairs",
                     detail=f"an import adopts a declared key pair: declare {show(query.name)} "
                            "under keypairs (with the public key the cloud holds, to keep it "
                            "as it is), or drop this entry; `reconciler import --all "
                            "--generate-config-out FILE` writes the declarations of every key "
                            "pair the cloud holds")
            return
        if query.target is not None:
            targets = kp.targets or tuple(self.target_configs)
            if query.target not in targets:
                where = (f"targets: {', '.join(targets)}" if targets else "no targets block")
                self.add(doc, path, f"key pair {show(query.name)} is not declared in target "
                         f"{show(query.target)} ({where})",
                         detail=f"add the target to its targets list (at {kp.location}), or "
                                "name one of its targets here")
                return
        self.imports.append(ImportRequest(to=str(query), location=here))


@dataclass
class _KeyPairCheck:
    """The rules beyond the schema for one key pair; builds its record when it is sound."""

    loader: _Loader
    doc: YamlDocument
    path: NodePath
    item: dict[str, object]
    api: Api
    ok: bool = True
    normalised: str | None = None  # the public key as `type base64`, once checked

    def add(self, sub: str, summary: str, *, key: bool = False, detail: str = "") -> None:
        self.ok = False
        self.loader.add(self.doc, (*self.path, sub), summary, key=key, detail=detail)

    def run(self) -> DesiredKeyPair | None:
        name = self._name()
        public_key = self._public_key()
        self._check_description()
        protection = self._key_protection()
        self._check_rotation()
        targets = self._targets()
        self._check_apis(targets)
        servers = self._servers(targets)
        deliver = self._deliver(public_key)
        if not self.ok or name is None:
            return None  # the load fails anyway; records are built only for sound items
        record = self._record(name, public_key, protection, targets)
        if servers or deliver:  # most key pairs have neither: no copy of the record for them
            record = replace(record, servers=servers, deliver=deliver)
        return record

    def _servers(self, targets: tuple[str, ...]) -> tuple[tuple[str, tuple[ServerRef, ...]], ...]:
        """``servers:``: a list for a key pair in one target, a map from each of its targets
        to a list when it is in several (the schema has checked each list's entries)."""
        given = self.item.get("servers")
        if given is None:
            return ()
        placed = targets or tuple(self.loader.target_configs) or (DEFAULT_TARGET,)

        def refs(items: object, path: NodePath) -> tuple[ServerRef, ...]:
            if not isinstance(items, list):
                return ()
            return tuple(ServerRef(ref=v, location=self.doc.location((*path, i)))
                         for i, v in enumerate(items) if isinstance(v, str))

        if isinstance(given, list):
            if len(placed) > 1:
                self.add("servers", f"servers is a list, but {self._whose()[:-2] or 'the key pair'}"
                         f" is in {len(placed)} targets ({', '.join(placed)})", key=True,
                         detail="give a map from each target to its servers, e.g. "
                                f"`servers: {{{placed[0]}: [web-1]}}`")
                return ()
            return ((placed[0], refs(given, (*self.path, "servers"))),)
        if not isinstance(given, dict):
            return ()
        out = []
        for target, items in given.items():
            if target not in placed:
                self.ok = False
                self.loader.add(self.doc, (*self.path, "servers", target),
                                f"servers names target {show(target)}, which "
                                f"{self._whose()[:-2] or 'the key pair'} is not in",
                                key=True, detail=(
                                    f"its targets: {', '.join(placed)}; bind servers only in a "
                                    "target the key pair is in" if self.loader.targets is not None
                                    else "without a targets block, give servers as a list"))
                continue
            out.append((str(target), refs(items, (*self.path, "servers", target))))
        return tuple(out)

    def _deliver(self, public_key: str | None) -> tuple[DeliverySink, ...]:
        if "deliver" not in self.item:
            return ()

        def report(sub: NodePath, summary: str, detail: str) -> None:
            self.ok = False
            self.loader.add(self.doc, (*self.path, *sub), f"{self._whose()}{summary}",
                            detail=detail)

        source = KeySource.IMPORT if public_key is not None or any(
            k in self.item for k in ("public_key", "public_key_file")) else None
        return sinks_of(self.item, doc=self.doc, path=self.path,
                        base=(self.loader.cwd / self.doc.file).parent, source=source,
                        declared=self.loader.target_configs if self.loader.targets is not None
                        else None, report=report)

    def _targets(self) -> tuple[str, ...]:
        """The key pair's own list of targets, each declared in the targets block."""
        listed = self.item.get("targets")
        if not isinstance(listed, list):
            return ()
        declared = self.loader.target_configs
        if self.loader.targets is None:
            self.add("targets", "the key pair lists targets, but no targets block declares "
                     "any", key=True, detail="declare them in a targets block (name, region, "
                     "project_id), or drop this list: the key pair then lives where the "
                     "provider block says")
            return ()
        names = tuple(t for t in listed if isinstance(t, str))
        for index, target in enumerate(names):
            if target not in declared and is_target_name(target):
                known = ", ".join(sorted(declared)) or "none"
                self.ok = False
                self.loader.add(self.doc, (*self.path, "targets", index),
                                f"no target named {show(target)} in the targets block",
                                detail=f"declared targets: {known}; check the spelling")
        return names

    def _check_apis(self, targets: tuple[str, ...]) -> None:
        """What the key pair asks for that the API of one of its targets cannot do."""
        if self.loader.targets is None:
            apis: dict[Api, str] = {self.api: ""}
        else:
            apis = {}
            for target in targets or tuple(self.loader.target_configs):
                apis.setdefault(self.loader.target_api(target), target)
        seen: set[str] = set()
        for api, target in apis.items():
            for fld, summary, detail in _api_problems(
                api=api, key_protection="key_protection" in self.item,
                description="description" in self.item, scope="scope" in self.item,
            ):
                if fld in seen:
                    continue
                seen.add(fld)
                where = f" in target {show(target)}" if target else ""
                self.add(fld, summary + where, key=True, detail=detail)

    def _check_rotation(self) -> None:
        """rotate_after replaces the key pair with a new key; some key pairs cannot have one.
        A key pair that rotates or is bound to servers is rotated without a gap, under the
        name NAME-gN: its name leaves room for the suffix."""
        name = self._str("name")
        rotating = [k for k in ("rotate_after", "servers") if k in self.item]
        if rotating and name is not None and len(name) > ROTATING_NAME_MAX:
            self.add("name", f"key pair {name[:80]!r} is {len(name)} characters long; one "
                     f"with {rotating[0]} may have at most {ROTATING_NAME_MAX}", detail=(
                         "a bound key pair is rotated without a gap under a new name, "
                         f"{name[:20]}...-gN, and a key pair name is at most 64 characters: "
                         f"shorten the name (the key pair is then created again under it)"))
        if "rotate_after" not in self.item:
            return
        if self.item.get("prevent_destroy") is True:
            self.add("rotate_after", "rotate_after replaces the key pair, which prevent_destroy "
                     "forbids", key=True,
                     detail="keep one of them: rotate with `reconciler apply --replace NAME` "
                            "when you decide to, or drop prevent_destroy")
        if "public_key" in self.item or "public_key_file" in self.item:
            self.add("rotate_after", "rotate_after cannot rotate an imported public key "
                     "(reconciler does not hold its private key)", key=True,
                     detail="its owner makes a new key and changes public_key; drop rotate_after")

    def _check_description(self) -> None:
        """A description is shown in plans and the console: never a private key."""
        text = self._str("description")
        if text is not None and looks_like_private_key(text):
            self.add("description", "the description holds a private key (not shown)",
                     detail=f"{self._whose()}never put a private key in a manifest; remove "
                            "it, and rotate the key if it was committed")

    def _str(self, key: str) -> str | None:
        value = self.item.get(key)
        return value if isinstance(value, str) else None

    def _name(self) -> str | None:
        name = self._str("name")
        if name is None:
            return None
        first = self.loader.names.get(name)
        here = self.doc.location((*self.path, "name"))
        if first is not None:
            self.add("name", f"{show(name)} is already declared at {first}",
                     detail="key pair names must be unique across all manifest files")
            return None
        self.loader.names[name] = here
        return name

    def _public_key(self) -> str | None:
        key_type = self._str("type") or "ssh"
        inline = self._str("public_key")
        if inline is not None:
            return self._check_key(inline, "public_key", "", key_type)
        file_name = self._str("public_key_file")
        if file_name is None:
            return None
        text = self._read_key_file(file_name)
        if text is None:
            return None
        return self._check_key(text, "public_key_file", f"the file {show(file_name)} ", key_type)

    def _read_key_file(self, written: str) -> str | None:
        text = read_key_text(self._resolve(written), limit=MAX_KEY_FILE_BYTES)
        if isinstance(text, str):
            return text
        self.add("public_key_file", f"{show(written)} {text}",
                 detail=f"{self._whose()}the path is relative to the manifest file, "
                        f"{self.doc.file}; its content is not shown")
        return None

    def _whose(self) -> str:
        name = self._str("name")
        return f"key pair {show(name)}: " if name else ""

    def _check_key(self, text: str, fld: str, what: str, key_type: str) -> str | None:
        kind = "certificate" if key_type == "x509" else "public key"
        if looks_like_private_key(text):
            held = f"{what}holds" if what else "this is"
            self.add(fld, f"{held} a private key, not a {kind} (not shown)",
                     detail=f"{self._whose()}never put a private key in a manifest; give its "
                            "public half (ssh-keygen -y -f KEYFILE), and rotate the key if it "
                            "was committed")
            return None
        try:
            self.normalised = check_public_key(text, key_type=key_type).openssh
        except KeyFormatError as exc:
            self.add(fld, f"{what + 'is ' if what else ''}not a valid {kind}: {exc}",
                     detail=f"{self._whose()}its content is not shown" if what else "")
            return None
        return text.strip()

    def _resolve(self, written: str) -> Path:
        path = Path(written).expanduser()
        if path.is_absolute():
            return path
        return (self.loader.cwd / self.doc.file).parent / path

    def _key_protection(self) -> KeyProtection | None:
        block = self.item.get("key_protection")
        if not isinstance(block, dict):
            return None
        enc = block.get("encryption")
        private_file = block.get("private_key_file")
        resolved: str | None = None
        if isinstance(private_file, str):
            resolved = self._check_private_key_file(private_file)
        if not isinstance(enc, dict) or not isinstance(enc.get("type"), str):
            return None
        encryption = Encryption(
            type=str(enc["type"]),
            kms_key_name=enc.get("kms_key_name") if isinstance(enc.get("kms_key_name"), str)
            else None,
            kms_key_id=enc.get("kms_key_id") if isinstance(enc.get("kms_key_id"), str) else None,
        )
        return KeyProtection(encryption=encryption, private_key_file=resolved)

    def _check_private_key_file(self, written: str) -> str | None:
        sub = "key_protection"
        if not any(k in self.item for k in ("public_key", "public_key_file")):
            self.loader.add(self.doc, (*self.path, sub, "private_key_file"),
                            "private_key_file needs public_key or public_key_file",
                            key=True, detail="it hands an existing key pair's private half to "
                            "the cloud; give that pair's public half too")
            self.ok = False
            return None
        path = self._resolve(written)
        # (a NUL is checked here too: with a bad public key the file is not read, but resolved)
        problem = ("is not a valid file name (it holds a NUL character)" if "\x00" in written
                   else self._private_key_problem(path))
        if problem:
            self.loader.add(self.doc, (*self.path, sub, "private_key_file"),
                            f"{show(written)} {problem}",
                            detail=f"{self._whose()}the path is relative to {self.doc.file}; "
                                   "its content is not shown")
            self.ok = False
            return None
        return str(path.resolve())

    def _private_key_problem(self, path: Path) -> str:
        """What is wrong with a private key file handed to the cloud ("" if nothing); checked
        here so that apply never fails on it half-way (apply checks it again before sending
        it). Its content is never shown."""
        if self.normalised is None:
            return ""  # the public key is wrong, and says so; nothing to compare with
        try:
            keys.read_custody_key(str(path), public_key=self.normalised)
        except KeyFormatError as exc:
            return str(exc)
        return ""

    def _record(self, name: str, public_key: str | None,
                protection: KeyProtection | None, targets: tuple[str, ...]) -> DesiredKeyPair:
        item = self.item
        key_type = self._str("type") or "ssh"
        if "generate" in item:
            source, algorithm = KeySource.GENERATE, self._str("generate")
        elif public_key is not None:
            source, algorithm = KeySource.IMPORT, None
        else:
            source, algorithm = KeySource.CLOUD, None
        try:
            rotate = parse_duration(self._str("rotate_after") or "")
        except ValueError:
            rotate = None
        digest = spec_digest(source=source, algorithm=algorithm, public_key=self.normalised,
                             type=key_type, user_id=self._str("user_id"),
                             scope=self._str("scope"), key_protection=protection)
        return DesiredKeyPair(
            name=name, source=source, location=self.doc.location(self.path),
            spec_digest=digest, algorithm=algorithm, public_key=public_key,
            public_key_file=self._str("public_key_file"), type=key_type,
            user_id=self._str("user_id"), description=self._str("description"),
            scope=self._str("scope"), key_protection=protection,
            prevent_destroy=item.get("prevent_destroy") is True,
            rotate_after_seconds=rotate, targets=targets,
        )


def _target(loader: _Loader, doc: YamlDocument, index: int,
            item: object) -> TargetConfig | None:
    """One entry of the targets block, when the schema found it sound."""
    if not isinstance(item, dict):
        return None

    def text(block: dict[str, object], key: str) -> str | None:
        value = block.get(key)
        return value if isinstance(value, str) else None

    name, region, project = text(item, "name"), text(item, "region"), text(item, "project_id")
    if name is None or region is None or project is None or not is_target_name(name):
        return None
    api = text(item, "api")
    raw_endpoints = item.get("endpoints")
    endpoints = {k: v for k, v in raw_endpoints.items()
                 if isinstance(k, str) and isinstance(v, str)} \
        if isinstance(raw_endpoints, dict) else {}
    return TargetConfig(name=name, region=region, project_id=project,
                        api=Api(api) if api in {a.value for a in Api} else None,
                        endpoints=endpoints,
                        credentials=_credentials(loader, doc, ("targets", index, "credentials"),
                                                 item.get("credentials")),
                        location=doc.location(("targets", index)))


def _agency_seconds(text: str) -> int | None:
    """``1h``, ``90m``, ``2h30m``, ``900s`` -> seconds (None: not of that form)."""
    if _AGENCY_DURATION.fullmatch(text) is None:
        return None
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in _DURATION_PART.findall(text))


def _credentials(loader: _Loader, doc: YamlDocument, path: NodePath,
                 block: object) -> CredentialsConfig | None:
    """A target's credentials block: what the schema cannot say (one account field, the
    duration IAM grants, not empty). Its fields are names, never secrets (the schema refuses
    every other key)."""
    if not isinstance(block, dict):
        return None  # absent, or a diagnostic of the schema's
    if not block:
        loader.add(doc, path, "the credentials block is empty", key=True,
                   detail="give profile and/or agency, or remove credentials to use the "
                          "environment's credentials")
        return None
    profile = block.get("profile")
    raw = block.get("agency")
    agency: AgencyConfig | None = None
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        agency = _agency(loader, doc, (*path, "agency"), raw)
    return CredentialsConfig(profile=profile if isinstance(profile, str) else None,
                             agency=agency, location=doc.location(path))


def _agency(loader: _Loader, doc: YamlDocument, path: NodePath,
            raw: dict[object, object]) -> AgencyConfig | None:
    ids = [k for k in ("domain_name", "domain_id") if isinstance(raw.get(k), str)]
    if len(ids) != 1:
        loader.add(doc, (*path, ids[1]) if ids else path,
                   "give exactly one of domain_name and domain_id" + (
                       " (found both)" if ids else " (the account that owns the agency)"),
                   key=bool(ids),
                   detail="name the account that owns the agency by its name (domain_name) or "
                          "by its id (domain_id)")
        return None
    seconds = DEFAULT_AGENCY_DURATION_SECONDS
    duration = raw.get("duration")
    if isinstance(duration, str):
        parsed = _agency_seconds(duration)
        if parsed is None:
            return None  # the schema's pattern said so
        low, high = AGENCY_DURATION_SECONDS
        if not low <= parsed <= high:
            loader.add(doc, (*path, "duration"), f"duration {show(duration)} is "
                       f"{parsed} seconds; IAM grants agency credentials for 15m to 24h",
                       detail="use 15m to 24h, e.g. 1h; credentials are renewed before they "
                              "expire, so a short duration only means more renewals")
            return None
        seconds = parsed
    name = raw["name"]
    assert isinstance(name, str)
    domain_name, domain_id = raw.get("domain_name"), raw.get("domain_id")
    return AgencyConfig(name=name,
                        domain_name=domain_name if isinstance(domain_name, str) else None,
                        domain_id=domain_id if isinstance(domain_id, str) else None,
                        duration_seconds=seconds)


def _provider(loader: _Loader) -> ProviderConfig | None:
    if loader.provider is None:
        return None
    doc, block = loader.provider
    api = block.get("api")

    def text(key: str) -> str | None:
        value = block.get(key)
        return value if isinstance(value, str) else None

    return ProviderConfig(region=text("region"), project_id=text("project_id"),
                          api=Api(str(api)) if api is not None else None,
                          endpoint=text("endpoint"), location=doc.location(("provider",)))


def _backend(loader: _Loader) -> S3Location | None:
    if loader.backend is None:
        return None
    doc, block = loader.backend
    s3 = block.get("s3")
    assert isinstance(s3, dict)

    def text(key: str) -> str | None:
        value = s3.get(key)
        return value if isinstance(value, str) else None

    return S3Location(bucket=text("bucket") or "", key=text("key") or "",
                      endpoint=text("endpoint"), region=text("region"),
                      declared_at=doc.location(("backend",)))


def _encryption(loader: _Loader) -> StateEncryption | None:
    """The encryption block; a kms block exactly with provider kms, its target declared."""
    if loader.encryption is None:
        return None
    doc, block = loader.encryption
    provider, mode, kms = block.get("provider"), block.get("mode"), block.get("kms")
    kms = kms if isinstance(kms, dict) else None
    if provider == "kms" and kms is None:
        loader.add(doc, ("encryption", "provider"), "provider kms needs a kms block",
                   detail="name the KMS key: encryption: {provider: kms, kms: {key_id: UUID "
                          "or alias/NAME}}")
    elif provider != "kms" and kms is not None:
        loader.add(doc, ("encryption", "kms"), f"a kms block with provider {show(provider)}",
                   key=True, detail="the kms block is for provider kms: drop it, or set "
                                    "provider: kms")
    key_id = kms.get("key_id") if kms else None
    target = kms.get("target") if kms else None
    if isinstance(target, str) and loader.target_configs and \
            target not in loader.target_configs:
        loader.add(doc, ("encryption", "kms", "target"), f"target {show(target)} is not "
                   "declared", detail="name one of the targets block's targets: "
                   + ", ".join(loader.target_configs))
    return StateEncryption(provider=str(provider) if isinstance(provider, str) else None,
                           kms_key=key_id if isinstance(key_id, str) else None,
                           kms_target=target if isinstance(target, str) else None,
                           mode=str(mode) if isinstance(mode, str) else "enforced",
                           declared_at=doc.location(("encryption",)),
                           origin=f"the encryption block at {doc.location(('encryption',))}")


def load_manifests(
    paths: Sequence[str | Path], *, cwd: Path, api: Api | str | None = None,
    allow_empty: bool = False,
) -> Manifest:
    """Every key pair the manifests at ``paths`` ask for (no paths: ``cwd``).

    ``api`` is the API flavour in use when a flag or the environment chose it; by default the
    provider block's ``api``, else v2.1. Raises ``DiagnosticsError`` with every problem found.
    """
    loader = _Loader(cwd=cwd, api=Api(api) if api is not None else None)
    files, diags = _collect_files(paths, cwd, allow_empty=allow_empty)
    loader.diags.extend(diags)
    for path in files:
        loader.read(path)
    loader.check_targets()
    loader.check_keypairs()
    for where, summary, detail in clashes(loader.keypairs, loader.target_configs):
        loader.diags.append(Diagnostic(summary, where, detail=detail))
    loader.check_imports()
    encryption = _encryption(loader)
    if loader.diags:
        raise DiagnosticsError(loader.diags)
    keypairs, imports = tuple(loader.keypairs), tuple(loader.imports)
    targets = tuple(loader.target_configs.values())
    return Manifest(
        keypairs=keypairs, provider=_provider(loader), backend=_backend(loader),
        encryption=encryption,
        files=tuple(_display(f, cwd) for f in files),
        digest=configuration_digest(keypairs, tuple(t.name for t in targets), imports),
        targets=targets, imports=imports,
    )

