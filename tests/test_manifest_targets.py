"""The targets block: loaded into records, fanned out by address, and every mistake in it a
diagnostic at its file, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.address import DEFAULT_TARGET, Addressing
from reconciler.errors import DiagnosticsError
from reconciler.manifest import load_manifests
from reconciler.model import Api, Manifest
from reconciler.targets import desired_by_address, target_names

HEAD = "apiVersion: reconciler/v1\nkind: KeyPairs\n"
TARGETS = """targets:
  - name: prod-cn-north-4
    region: cn-north-4
    project_id: p1
    api: kps
    endpoints: {kms: "https://kms.example.test"}
  - name: prod-ap-southeast-1
    region: ap-southeast-1
    project_id: p2
"""


def _load(tmp_path: Path, *bodies: str) -> Manifest:
    for i, body in enumerate(bodies):
        (tmp_path / f"{i}.yaml").write_text(HEAD + body)
    return load_manifests([tmp_path], cwd=tmp_path)


def _problems(tmp_path: Path, *bodies: str) -> list[str]:
    with pytest.raises(DiagnosticsError) as exc:
        _load(tmp_path, *bodies)
    return [str(d) for d in exc.value.diagnostics]


def test_targets_load_and_key_pairs_fan_out_to_theirs(tmp_path: Path) -> None:
    manifest = _load(tmp_path, TARGETS + "keypairs:\n  - {name: everywhere}\n"
                     "  - {name: north, targets: [prod-cn-north-4]}\n")
    assert target_names(manifest) == ("prod-cn-north-4", "prod-ap-southeast-1")
    north = manifest.targets[0]
    assert (north.region, north.project_id, north.api) == ("cn-north-4", "p1", Api.KPS)
    assert dict(north.endpoints) == {"kms": "https://kms.example.test"}
    assert str(north.location).endswith("0.yaml:4:5")
    shown = sorted(str(a) for a in desired_by_address(manifest))
    assert shown == ['keypair.everywhere["prod-ap-southeast-1"]',
                     'keypair.everywhere["prod-cn-north-4"]',
                     'keypair.north["prod-cn-north-4"]']


def test_without_a_targets_block_there_is_one_implicit_target(tmp_path: Path) -> None:
    manifest = _load(tmp_path, "provider: {region: cn-north-4}\nkeypairs:\n  - {name: web}\n")
    assert target_names(manifest) == (DEFAULT_TARGET,)
    assert [str(a) for a in desired_by_address(manifest)] == ["keypair.web"]
    assert not Addressing(target_names(manifest)).qualified


def test_provider_and_targets_together_are_refused_naming_both(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "provider: {region: cn-north-4}\n", TARGETS)
    assert len(problems) == 1
    assert problems[0].startswith("1.yaml:3:1: error: targets: a targets block and a provider "
                                  "block (at 0.yaml:3:1)"), problems


def test_target_names_are_unique_and_well_formed(tmp_path: Path) -> None:
    problems = _problems(tmp_path, TARGETS + "  - {name: prod-cn-north-4, region: r, "
                         "project_id: p}\n  - {name: Bad_Name, region: r, project_id: p}\n")
    assert any(p.startswith('0.yaml:12:12: error: targets[2].name: target "prod-cn-north-4" '
                            "is already declared at 0.yaml:4:5") for p in problems), problems
    assert any(p.startswith("0.yaml:13:12: error: targets[3].name: \"Bad_Name\" is not a valid "
                            "target name") for p in problems), problems


def test_a_second_targets_block_is_refused(tmp_path: Path) -> None:
    problems = _problems(tmp_path, TARGETS, TARGETS)
    assert problems == [p for p in problems if "a second targets block (the first is at "
                        "0.yaml:3:1)" in p] and problems


def test_a_key_pair_names_only_declared_targets(tmp_path: Path) -> None:
    problems = _problems(tmp_path, TARGETS + "keypairs:\n  - {name: web, targets: "
                         "[prod-cn-north-4, prod-eu-west-0]}\n")
    assert len(problems) == 1
    assert problems[0].startswith("0.yaml:13:44: error: keypairs[0].targets[1]: no target "
                                  'named "prod-eu-west-0"'), problems
    assert "declared targets: prod-ap-southeast-1, prod-cn-north-4" in problems[0]


def test_key_pair_targets_need_a_targets_block(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "keypairs:\n  - {name: web, targets: [prod]}\n")
    assert len(problems) == 1 and "no targets block declares any" in problems[0], problems


def test_per_api_rules_apply_in_each_target_of_the_key_pair(tmp_path: Path) -> None:
    # description is kps only: fine in the kps target, refused where the v2.1 target has it
    _load(tmp_path, TARGETS + "keypairs:\n  - {name: a, description: d, "
          "targets: [prod-cn-north-4]}\n")
    other = tmp_path / "other"
    other.mkdir()
    problems = _problems(other, TARGETS + "keypairs:\n  - {name: b, description: d}\n")
    assert len(problems) == 1
    assert 'description is supported only by api kps (the api in use is v2.1) in target ' \
           '"prod-ap-southeast-1"' in problems[0], problems


def test_a_credential_value_in_a_target_is_refused_without_echoing_it(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "targets:\n  - {name: t, region: r, project_id: p, "
                         "sk: SUPERSECRETVALUE}\n")
    assert any('unknown key "sk"' in p and "credentials never belong in a manifest" in p
               for p in problems), problems
    assert not any("SUPERSECRETVALUE" in p for p in problems)
