"""Loading good manifests: examples, records, digests, schema, and the schema command."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.env import Env
from reconciler.errors import DiagnosticsError
from reconciler.keys import normalise
from reconciler.manifest import check_api_restrictions, load_manifests, parse_duration, spec_digest
from reconciler.manifest_schema import SCHEMA_ID, load_schema
from reconciler.model import Api, KeySource
from reconciler.yamlsafe import parse_yaml_documents

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
EXAMPLE_DIRS = [EXAMPLES, EXAMPLES / "v2", EXAMPLES / "kps"]
HEADER = "apiVersion: reconciler/v1\nkind: KeyPairs\n"
RFC8032 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea"


def run(cwd: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Env(stdin=io.StringIO(), stdout=out, stderr=err, environ={}, cwd=cwd)
    return main(list(argv), env), out.getvalue(), err.getvalue()


@pytest.mark.parametrize("directory", EXAMPLE_DIRS, ids=lambda p: p.name)
def test_examples_validate(directory: Path) -> None:
    code, out, err = run(ROOT, "validate", str(directory.relative_to(ROOT)))
    assert (code, err) == (0, "")
    assert out.startswith("Success! ") and out.endswith(" are valid.\n")


def test_main_example_content() -> None:
    manifest = load_manifests(["examples"], cwd=ROOT)
    assert manifest.files == ("examples/people.yaml", "examples/platform.yaml",
                              "examples/provider.yaml")
    assert manifest.provider is not None and manifest.provider.api is Api.V21
    assert manifest.provider.region == "cn-north-4"
    kps = manifest.by_name()
    assert 6 <= len(kps) <= 8
    assert kps["web-deploy"].source is KeySource.CLOUD
    assert kps["ci-runner"].source is KeySource.GENERATE and kps["ci-runner"].algorithm == "ed25519"
    vault = kps["vault"]
    assert vault.prevent_destroy and vault.rotate_after_seconds is None
    assert kps["bastion"].rotate_after_seconds == 12 * 7 * 86400
    assert vault.key_protection is not None and vault.key_protection.encryption.type == "kms"
    alice = kps["alice"]
    assert alice.source is KeySource.IMPORT and alice.public_key_file == "keys/alice.pub"
    assert alice.public_key == (EXAMPLES / "keys" / "alice.pub").read_text().strip()
    assert alice.location.file == "examples/people.yaml" and alice.location.line == 6


def test_every_example_manifest_names_the_schema() -> None:
    """By a path relative to the file, or by the schema's stable $id (for copied repos)."""
    schema_id = load_schema()["$id"]
    manifests = [p for p in sorted(EXAMPLES.rglob("*.y*ml"))
                 if "apiVersion: reconciler/v1" in p.read_text()]
    assert len(manifests) >= 5
    for path in manifests:
        first = path.read_text().splitlines()[0]
        depth = len(path.relative_to(EXAMPLES).parts) - 1
        relative = f"{'../' * (depth + 1)}schemas/manifest.schema.json"
        assert first in (f"# yaml-language-server: $schema={relative}",
                         f"# yaml-language-server: $schema={schema_id}"), path


def test_example_keys_are_public_halves_only() -> None:
    for path in (EXAMPLES / "keys").iterdir():
        assert "PRIVATE" not in path.read_text()


def test_schema_is_valid_2020_12_and_every_example_document_validates() -> None:
    from jsonschema import Draft202012Validator

    schema = load_schema()
    assert schema["$id"] == SCHEMA_ID
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    count = 0
    for path in sorted(EXAMPLES.rglob("*.y*ml")):
        if "apiVersion: reconciler/v1" not in path.read_text():
            continue  # CI workflows and hook configurations live beside the manifests
        docs, diags = parse_yaml_documents(path.read_text(), display=str(path))
        assert not diags
        for doc in docs:
            errors = list(validator.iter_errors(doc.value))
            assert not errors, (path, errors)
            count += 1
    assert count >= 5


def test_schema_documents_every_property() -> None:
    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                target = sub
                if "$ref" in sub:
                    target = load_schema()["$defs"][sub["$ref"].rsplit("/", 1)[1]]
                assert "title" in target and "description" in target, f"{where}.{name}"
            if "properties" in node:
                assert node.get("additionalProperties") is False, where
            for key, sub in node.items():
                if key not in ("if", "then", "not"):  # conditions, not declarations
                    walk(sub, f"{where}.{key}")

    walk(load_schema(), "$")


def test_schema_command_prints_the_schema() -> None:
    code, out, _ = run(ROOT, "schema")
    assert code == 0
    assert json.loads(out) == json.loads((ROOT / "schemas" / "manifest.schema.json").read_text())


def test_multi_document_files_and_empty_documents(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(
        "---\n" + HEADER + "keypairs: [{name: one}]\n---\n---\n# nothing\n---\n"
        + HEADER + "keypairs:\n  - name: two\n    generate: rsa-2048\n"
    )
    manifest = load_manifests([], cwd=tmp_path)
    assert [kp.name for kp in manifest.keypairs] == ["one", "two"]
    assert manifest.keypairs[1].location.line == 12


def test_spec_digest_ignores_comment_but_not_key(tmp_path: Path) -> None:
    def load(public: str, extra: str = "") -> tuple[str, str]:
        (tmp_path / "a.yaml").write_text(
            HEADER + f'keypairs:\n  - name: k\n    public_key: "{public}"\n{extra}')
        m = load_manifests(["a.yaml"], cwd=tmp_path)
        return m.keypairs[0].spec_digest, m.digest

    base = load(RFC8032 + " a@b")
    assert load(RFC8032 + " someone-else")[0] == base[0]
    assert load(RFC8032 + " a@b", "    prevent_destroy: true\n") == (base[0], load(
        RFC8032 + " a@b", "    prevent_destroy: true\n")[1])
    assert load(RFC8032 + " a@b", "    prevent_destroy: true\n")[1] != base[1]
    assert load(RFC8032 + " a@b", "    user_id: u1\n")[0] != base[0]
    expected = spec_digest(source=KeySource.IMPORT, algorithm=None, public_key=normalise(RFC8032),
                           type="ssh", user_id=None, scope=None, key_protection=None)
    assert base[0] == expected


def test_check_api_restrictions_for_a_later_api() -> None:
    manifest = load_manifests(["examples/kps"], cwd=ROOT)
    assert check_api_restrictions(manifest, "kps") == []
    problems = check_api_restrictions(manifest, Api.V2)
    summaries = sorted(d.summary for d in problems)
    assert summaries == [
        "description is supported only by api kps (the api in use is v2)",
        "description is supported only by api kps (the api in use is v2)",
        "key_protection is not supported by api v2",
        "scope is supported only by api kps (the api in use is v2)",
    ]
    assert all(d.location is not None and d.location.file == "examples/kps/keypairs.yaml"
               for d in problems)


@pytest.mark.parametrize(("text", "seconds"), [("12h", 43200), ("90d", 7776000), ("4w", 2419200)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0d", "d", "1m", "1.5d", "-1d", "1 d"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_private_key_file_is_checked_against_the_public_key_and_never_kept(
        tmp_path: Path) -> None:
    from reconciler.keys import generate_keypair

    pair, other = generate_keypair("ed25519"), generate_keypair("ed25519")
    (tmp_path / "secret").write_text(pair.private_key.reveal())

    def manifest(public_key: str) -> None:
        (tmp_path / "a.yaml").write_text(
            HEADER + "provider: {api: kps}\nkeypairs:\n  - name: k\n"
            f'    public_key: "{public_key}"\n'
            "    key_protection:\n      encryption: {type: default}\n"
            "      private_key_file: secret\n")

    manifest(pair.public_key)
    kp = load_manifests([], cwd=tmp_path).keypairs[0]
    assert kp.key_protection is not None
    assert kp.key_protection.private_key_file == str((tmp_path / "secret").resolve())
    assert "PRIVATE" not in repr(kp)  # the path is kept, never the key
    manifest(other.public_key)
    with pytest.raises(DiagnosticsError, match="is not the private half of this key pair"):
        load_manifests([], cwd=tmp_path)
    (tmp_path / "secret").write_text("not a key at all, and never shown")
    with pytest.raises(DiagnosticsError, match="not a readable, unencrypted") as info:
        load_manifests([], cwd=tmp_path)
    assert "never shown" not in str(info.value)


def test_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        HEADER + "keypairs:\n  - &base {name: a, generate: ed25519, rotate_after: 4w}\n"
        "  - <<: *base\n    name: b\n"
    )
    kps = load_manifests([], cwd=tmp_path).by_name()
    assert kps["b"].algorithm == "ed25519" and kps["b"].rotate_after_seconds == 4 * 604800


def test_same_file_twice_is_read_once() -> None:
    manifest = load_manifests(["examples", "examples/people.yaml"], cwd=ROOT)
    assert len(manifest.files) == 3


def test_errors_are_sorted_by_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(HEADER + "keypairs: [{name: 'x y'}]\n")
    (tmp_path / "a.yaml").write_text(HEADER + "keypairs: [{name: ok}, {name: 'p q'}, {nme: r}]\n")
    with pytest.raises(DiagnosticsError) as info:
        load_manifests([], cwd=tmp_path)
    where = [(d.location.file, d.location.line, d.location.column)
             for d in info.value.diagnostics if d.location]
    assert where == sorted(where) and len(where) == 4


def test_version_does_not_import_heavy_modules() -> None:
    import subprocess
    import sys

    code = (
        "import io, sys\n"
        "from reconciler.cli import main\n"
        "from reconciler.env import Env\n"
        "main(['--version'], Env(stdout=io.StringIO(), stderr=io.StringIO()))\n"
        "print(sorted(m for m in ('yaml', 'jsonschema', 'cryptography') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
