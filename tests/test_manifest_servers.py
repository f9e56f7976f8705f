"""``servers:`` in a key pair: a list for one target, a map from target to list for several;
checked by the schema and the loader, each problem at its file and line. A key pair without
``servers:`` loads exactly as before (its spec digest does not depend on its servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import DiagnosticsError
from reconciler.manifest import load_manifests

HEAD = "apiVersion: reconciler/v1\nkind: KeyPairs\n"
TARGETS = ("targets:\n"
           "  - {name: a, region: cn-north-4, project_id: p1}\n"
           "  - {name: b, region: cn-north-4, project_id: p2}\n")


def load(tmp_path: Path, body: str):  # type: ignore[no-untyped-def]
    (tmp_path / "m.yaml").write_text(HEAD + body)
    return load_manifests([tmp_path / "m.yaml"], cwd=tmp_path)


def problems(tmp_path: Path, body: str) -> str:
    with pytest.raises(DiagnosticsError) as exc:
        load(tmp_path, body)
    return str(exc.value)


def test_a_list_binds_servers_in_the_only_target(tmp_path: Path) -> None:
    m = load(tmp_path, "keypairs:\n  - name: web\n    servers: [web-1, 3f2a-9c]\n")
    (kp,) = m.keypairs
    ((target, refs),) = kp.servers
    assert target == "default" and [r.ref for r in refs] == ["web-1", "3f2a-9c"]
    assert refs[1].location.line == 5 and refs[1].location.file == "m.yaml"


def test_servers_do_not_change_the_spec_digest(tmp_path: Path) -> None:
    bare = load(tmp_path, "keypairs:\n  - name: web\n").keypairs[0]
    bound = load(tmp_path, "keypairs:\n  - name: web\n    servers: [web-1]\n").keypairs[0]
    assert bare.servers == () and bare.spec_digest == bound.spec_digest
    assert bare.location == bound.location


def test_a_map_binds_per_target(tmp_path: Path) -> None:
    m = load(tmp_path, TARGETS + "keypairs:\n  - name: web\n    servers: {b: [x], a: [y, z]}\n")
    assert [(t, [r.ref for r in refs]) for t, refs in m.keypairs[0].servers] == [
        ("b", ["x"]), ("a", ["y", "z"])]


def test_a_list_with_several_targets_is_refused_at_its_line(tmp_path: Path) -> None:
    said = problems(tmp_path, TARGETS + "keypairs:\n  - name: web\n    servers: [web-1]\n")
    assert "m.yaml:8:" in said and "is in 2 targets (a, b)" in said
    assert "give a map from each target" in said


def test_a_list_for_a_key_pair_in_one_of_several_targets(tmp_path: Path) -> None:
    m = load(tmp_path, TARGETS + "keypairs:\n  - name: web\n    targets: [b]\n"
                                 "    servers: [web-1]\n")
    assert m.keypairs[0].servers[0][0] == "b"


def test_a_map_naming_another_target_is_refused(tmp_path: Path) -> None:
    said = problems(tmp_path, TARGETS + "keypairs:\n  - name: web\n    targets: [a]\n"
                                        "    servers: {b: [x]}\n")
    assert "m.yaml:9:" in said and 'servers names target "b"' in said and "its targets: a" in said


@pytest.mark.parametrize("value", ['[""]', "7", "[a, a]", "[]", '["bad\\tname"]', "{}"])
def test_malformed_servers_are_refused_with_the_forms_allowed(tmp_path: Path,
                                                              value: str) -> None:
    said = problems(tmp_path, f"keypairs:\n  - name: web\n    servers: {value}\n")
    assert "m.yaml:5:" in said and "servers must be a list of ECS server ids or names" in said
