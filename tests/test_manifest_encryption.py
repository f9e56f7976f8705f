"""The manifests' ``encryption`` block: parsed beside ``backend``, checked, never a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import DiagnosticsError
from reconciler.manifest import load_manifests
from reconciler.model import StateEncryption

HEADER = "apiVersion: reconciler/v1\nkind: KeyPairs\n"
KEY = "0d0466b0-6d4a-4a3d-9a58-8b6c1d1b7c55"
TARGETS = """targets:
  - name: prod
    region: cn-north-4
    project_id: p1
  - name: dr
    region: cn-south-1
    project_id: p2
"""


def _load(tmp_path: Path, body: str, name: str = "a.yaml") -> StateEncryption | None:
    (tmp_path / name).write_text(HEADER + body)
    return load_manifests([tmp_path], cwd=tmp_path).encryption


def _problems(tmp_path: Path, body: str) -> list[str]:
    with pytest.raises(DiagnosticsError) as info:
        _load(tmp_path, body)
    return [f"{d.path}: {d.summary} | {d.detail}" for d in info.value.diagnostics]


def test_the_block_is_read_with_its_defaults(tmp_path: Path) -> None:
    got = _load(tmp_path, f"encryption:\n  provider: kms\n  kms:\n    key_id: {KEY}\n"
                          + TARGETS + "keypairs: []\n")
    assert got == StateEncryption(provider="kms", kms_key=KEY, mode="enforced")
    assert got is not None and "a.yaml:4" in got.origin
    assert _load(tmp_path, "encryption: {provider: passphrase, mode: fallback}\n") == \
        StateEncryption(provider="passphrase", mode="fallback")


def test_an_alias_and_a_declared_target(tmp_path: Path) -> None:
    got = _load(tmp_path, "encryption:\n  provider: kms\n  kms: {key_id: alias/state, "
                          "target: dr}\n" + TARGETS)
    assert got is not None and got.kms_key == "alias/state" and got.kms_target == "dr"


@pytest.mark.parametrize(("body", "said"), [
    ("encryption: {provider: kms}\n", "provider kms needs a kms block"),
    (f"encryption: {{provider: passphrase, kms: {{key_id: {KEY}}}}}\n",
     "a kms block with provider \"passphrase\""),
    ("encryption: {provider: kms, kms: {key_id: not-a-key}}\n", "kms.key_id"),
    ("encryption: {provider: vault}\n", "provider"),
    ("encryption: {provider: kms, kms: {key_id: " + KEY + ", target: qa}}\n" + TARGETS,
     'target "qa" is not declared'),
])
def test_mistakes_are_named(tmp_path: Path, body: str, said: str) -> None:
    problems = _problems(tmp_path, body)
    assert any(said in p for p in problems), problems


def test_a_secret_in_the_block_is_refused_without_echoing_it(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "encryption: {provider: passphrase, passphrase: hunter22}\n")
    assert any("RECONCILER_PASSPHRASE" in p for p in problems), problems
    assert not any("hunter22" in p for p in problems)


def test_one_encryption_block_across_files(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(HEADER + "encryption: {provider: key_file}\n")
    problems = _problems(tmp_path, "encryption: {provider: passphrase}\n")
    assert any("a second encryption block" in p for p in problems), problems
