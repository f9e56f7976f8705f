"""The import directions of the house style, held by walking the package with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "reconciler"

# the emulator's HTTP side, which its data layers must not import
_EMULATOR_UPPER = ("reconciler.emulator.server", "reconciler.emulator.handlers",
                   "reconciler.emulator.admin", "reconciler.emulator.iam",
                   "reconciler.emulator.views", "reconciler.model", "reconciler.keys",
                   "reconciler.errors")

# module (or package prefix) -> prefixes it must never import
FORBIDDEN = {
    "reconciler.plan": ("reconciler.api", "reconciler.state", "reconciler.render",
                        "reconciler.commands", "reconciler.emulator"),
    "reconciler.attributes": ("reconciler.api", "reconciler.state", "reconciler.commands"),
    "reconciler.render": ("reconciler.api", "reconciler.state", "reconciler.commands",
                          "reconciler.emulator"),
    "reconciler.api": ("reconciler.plan", "reconciler.apply", "reconciler.render",
                       "reconciler.state", "reconciler.commands", "reconciler.emulator"),
    "reconciler.emulator": ("reconciler.api", "reconciler.plan", "reconciler.apply",
                            "reconciler.state", "reconciler.commands"),
    "reconciler.state": ("reconciler.api", "reconciler.plan", "reconciler.apply",
                         "reconciler.render", "reconciler.emulator"),
    "reconciler.apply": ("reconciler.commands", "reconciler.render", "reconciler.emulator"),
    # The data model knows only addresses (which import nothing of the package).
    "reconciler.model": ("reconciler.",),
    # The values plan, apply and the kinds exchange: model and addresses only.
    "reconciler.changes": ("reconciler.api", "reconciler.state", "reconciler.plan",
                           "reconciler.apply", "reconciler.render", "reconciler.commands",
                           "reconciler.emulator", "reconciler.kinds", "reconciler.settings"),
    # A kind decides and carries out its own changes: it never reaches up to plan, apply,
    # the renderers or the commands.
    "reconciler.kinds": ("reconciler.plan", "reconciler.apply", "reconciler.render",
                         "reconciler.commands", "reconciler.emulator", "reconciler.settings",
                         "reconciler.manifest"),
    # What an adoption takes from the cloud is one rule for the plan, import NAME and
    # import --all: pure, over the data model and the APIs' abilities.
    "reconciler.adoption": ("reconciler.api", "reconciler.state", "reconciler.plan",
                            "reconciler.apply", "reconciler.render", "reconciler.commands",
                            "reconciler.emulator", "reconciler.kinds", "reconciler.settings",
                            "reconciler.manifest", "reconciler.onboarding",
                            "reconciler.attributes", "reconciler.changes"),
    # Addresses are values everything uses: they import nothing of the package.
    "reconciler.address": ("reconciler.",),
    # Fanning key pairs out to targets is pure: records in, addresses out.
    "reconciler.targets": ("reconciler.api", "reconciler.state", "reconciler.plan",
                           "reconciler.apply", "reconciler.render", "reconciler.commands",
                           "reconciler.emulator", "reconciler.settings", "reconciler.manifest"),
    "reconciler.configuration": ("reconciler.api", "reconciler.state", "reconciler.plan",
                                 "reconciler.apply", "reconciler.render", "reconciler.commands",
                                 "reconciler.emulator", "reconciler.manifest"),
    # planfile owns the saved-plan format (planformat builds the document): renderers show
    # it, so neither imports a renderer.
    "reconciler.planfile": ("reconciler.api", "reconciler.state", "reconciler.apply",
                            "reconciler.render", "reconciler.commands", "reconciler.emulator"),
    "reconciler.planformat": ("reconciler.api", "reconciler.state", "reconciler.apply",
                              "reconciler.render", "reconciler.commands", "reconciler.emulator",
                              "reconciler.planfile", "reconciler.settings"),
    # What keeps the terminal and the log safe is imported by everything, so imports nothing.
    "reconciler.textsafe": ("reconciler.",),
    "reconciler.redact": ("reconciler.api", "reconciler.state", "reconciler.plan",
                          "reconciler.apply", "reconciler.render", "reconciler.commands",
                          "reconciler.emulator", "reconciler.errors", "reconciler.settings"),
    "reconciler.credcheck": ("reconciler.api", "reconciler.state", "reconciler.plan",
                             "reconciler.apply", "reconciler.render", "reconciler.commands",
                             "reconciler.emulator", "reconciler.settings"),
    "reconciler.emulator.jsonbody": ("reconciler.",),
    "reconciler.emulator.problem": ("reconciler.",),
    # The emulator's data layers: a project's store and an agency record know nothing of the
    # rest; the project registry and the data file sit under the HTTP side, never above it.
    "reconciler.emulator.store": ("reconciler.",),
    "reconciler.emulator.agency": ("reconciler.",),
    "reconciler.emulator.projects": (*_EMULATOR_UPPER, "reconciler.emulator.datafile"),
    "reconciler.emulator.datafile": _EMULATOR_UPPER,
    # KMS and CSMS in the emulator: the key ring is cryptography and the stdlib; the vault
    # knows the key ring only; each service's operations know their data layer, never the
    # HTTP side.
    "reconciler.emulator.kms": ("reconciler.",),
    "reconciler.emulator.csms": (*_EMULATOR_UPPER, "reconciler.emulator.dew",
                                 "reconciler.emulator.kmsapi", "reconciler.emulator.csmsapi",
                                 "reconciler.emulator.store", "reconciler.emulator.projects"),
    "reconciler.emulator.kmsapi": (*_EMULATOR_UPPER, "reconciler.emulator.dew",
                                   "reconciler.emulator.csms"),
    "reconciler.emulator.csmsapi": (*_EMULATOR_UPPER, "reconciler.emulator.dew"),
    # The path policy is used by manifests, state and commands alike: the stdlib only.
    "reconciler.fsutil": ("reconciler.",),
    # the URL parser and the proxy choice sit under api, state and settings: they know none
    "reconciler.urls": ("reconciler.api", "reconciler.state", "reconciler.settings",
                        "reconciler.proxies", "reconciler.commands", "reconciler.emulator",
                        "reconciler.plan", "reconciler.apply", "reconciler.render"),
    "reconciler.proxies": ("reconciler.api", "reconciler.state", "reconciler.settings",
                           "reconciler.commands", "reconciler.emulator", "reconciler.plan",
                           "reconciler.apply", "reconciler.render"),
    # The HTTP plumbing under the API client and the IAM/STS exchanges: requests and urllib3.
    "reconciler.transport": ("reconciler.",),
    # The apply heartbeat is a timer and a printer's callback, nothing of the engine.
    "reconciler.commands.heartbeat": ("reconciler.",),
    "reconciler.duration": ("reconciler.api", "reconciler.state", "reconciler.plan",
                            "reconciler.apply", "reconciler.render", "reconciler.commands",
                            "reconciler.emulator"),
    # CI programs (python -m reconciler.gitops.X): standard library only, nothing of the engine
    "reconciler.gitops": ("reconciler.",),
    # Onboarding sorts what the cloud lists, and writes declarations: values in, values out.
    "reconciler.onboarding": ("reconciler.api", "reconciler.state", "reconciler.plan",
                              "reconciler.apply", "reconciler.render", "reconciler.commands",
                              "reconciler.emulator", "reconciler.settings",
                              "reconciler.manifest"),
    "reconciler.configgen": ("reconciler.api", "reconciler.state", "reconciler.plan",
                             "reconciler.apply", "reconciler.render", "reconciler.commands",
                             "reconciler.emulator", "reconciler.settings"),
    # Credential providers know the environment, IAM and STS; nothing of plans or state.
    "reconciler.credentials": ("reconciler.plan", "reconciler.apply", "reconciler.render",
                               "reconciler.state", "reconciler.commands", "reconciler.emulator",
                               "reconciler.settings", "reconciler.manifest"),
}

# module -> the only modules of the package it may import
ONLY = {
    # What a flavour can do is a pure table over model.Api: manifests, plan and apply use it.
    "reconciler.capabilities": ("reconciler.model",),
    # ECS servers and KPS binding tasks in the emulator: the servers know nothing; the tasks
    # know the servers; each service's operations know their data layers, never the HTTP side.
    "reconciler.emulator.fleet": (),
    "reconciler.emulator.bindtasks": ("reconciler.emulator.fleet",),
    "reconciler.emulator.ecsapi": ("reconciler.emulator.fleet",),
    "reconciler.emulator.kpsbind": ("reconciler.emulator.fleet", "reconciler.emulator.bindtasks",
                                    "reconciler.emulator.keywork", "reconciler.emulator.store"),
    "reconciler.emulator.compute": ("reconciler.emulator.fleet", "reconciler.emulator.bindtasks",
                                    "reconciler.emulator.ecsapi", "reconciler.emulator.kpsbind",
                                    "reconciler.emulator.store", "reconciler.emulator.handlers",
                                    "reconciler.emulator.jsonbody"),
    "reconciler.emulator.computeadmin": ("reconciler.emulator.compute",
                                         "reconciler.emulator.fleet",
                                         "reconciler.emulator.store",
                                         "reconciler.emulator.handlers",
                                         "reconciler.emulator.jsonbody"),
}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        if "examples" in path.parts or "schemas" in path.parts:
            continue
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


def _imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


# exceptions to a prefix of FORBIDDEN: module -> what it may import all the same
ALLOWED = {"reconciler.model": ("reconciler.address",),
           # the key ring's errors share the emulated services' error type, which is stdlib
           "reconciler.emulator.kms": ("reconciler.emulator.problem",)}


def test_import_directions() -> None:
    modules = _modules()
    assert "reconciler.plan" in modules and "reconciler.emulator.server" in modules
    problems = []
    for name, tree in modules.items():
        imported = _imports(tree)
        if "reconciler.cli" in imported and name != "reconciler.__main__":
            problems.append(f"{name} imports reconciler.cli")
        for owner, banned in FORBIDDEN.items():
            if name == owner or name.startswith(owner + "."):
                problems += [f"{name} imports {i}" for i in imported
                             if any(i.startswith(b) for b in banned)
                             and not any(i == a or i.startswith(a + ".")
                                         for a in ALLOWED.get(name, ()))]
        allowed = ONLY.get(name)
        if allowed is not None:
            problems += [f"{name} imports {i}" for i in imported if i.startswith("reconciler.")
                         and not any(i == a or i.startswith(a + ".") for a in allowed)]
    assert not problems, "\n".join(sorted(problems))


# Plan and apply know kinds only through the kind protocol and its registry.
KIND_SPECIFIC_MODULES = ("reconciler.kinds.keypair", "reconciler.keys", "reconciler.duration")
KIND_SPECIFIC_NAMES = ("DesiredKeyPair", "RemoteKeyPair", "KeySource", "EntryStatus",
                       "KeyPairApplier", "KeyPairKind")


def test_plan_and_apply_know_kinds_only_through_the_protocol() -> None:
    modules = _modules()
    problems = []
    for name in ("reconciler.plan", "reconciler.apply"):
        tree = modules[name]
        imported = _imports(tree)
        problems += [f"{name} imports {i}" for i in imported
                     if any(i == m or i.startswith(m + ".") or i.startswith(m + "_")
                            for m in KIND_SPECIFIC_MODULES)]
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
            n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        problems += [f"{name} uses {n}" for n in KIND_SPECIFIC_NAMES
                     if n in used or any(i.endswith("." + n) for i in imported)]
        assert "reconciler.kinds.REGISTRY" in imported, f"{name} does not use the registry"
    assert not problems, "\n".join(problems)


# Only these name an API flavour (``Api.KPS``, ``api == "kps"``): everything else asks
# ``reconciler.capabilities`` what the flavour can do.
FLAVOUR_OWNERS = ("reconciler.api", "reconciler.emulator", "reconciler.capabilities")
_FLAVOURS = {"V2": "v2", "V21": "v2.1", "KPS": "kps"}


def _flavour_tests(tree: ast.Module) -> list[int]:
    """Lines that name a flavour: ``Api.X``, or a comparison with a flavour's string."""
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "Api" and node.attr in _FLAVOURS):
            lines.append(node.lineno)
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for o in operands:
                values = o.elts if isinstance(o, ast.Tuple | ast.List | ast.Set) else [o]
                if any(isinstance(v, ast.Constant) and v.value in _FLAVOURS.values()
                       for v in values):
                    lines.append(node.lineno)
    return sorted(set(lines))


def test_flavours_are_named_only_by_the_adapters_and_capabilities() -> None:
    modules = _modules()
    assert _flavour_tests(modules["reconciler.api.flavours"])  # the check sees them
    problems = [f"{name}:{line} names an API flavour; ask reconciler.capabilities instead"
                for name, tree in sorted(modules.items())
                if not name.startswith(FLAVOUR_OWNERS)
                for line in _flavour_tests(tree)]
    assert not problems, "\n".join(problems)


def test_the_engine_never_prints() -> None:
    for name, tree in _modules().items():
        if name.startswith(("reconciler.commands", "reconciler.cli", "reconciler.gitops")):
            continue
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Name) and n.func.id == "print"]
        assert not calls, f"{name} calls print()"


def test_every_module_starts_with_a_docstring() -> None:
    missing = [name for name, tree in _modules().items() if not ast.get_docstring(tree)]
    assert not missing, missing
