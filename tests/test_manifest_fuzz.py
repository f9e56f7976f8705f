"""Property tests: whatever the input, the loader returns a Manifest or raises DiagnosticsError."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.errors import DiagnosticsError
from reconciler.manifest import load_manifests
from reconciler.model import Manifest

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
TOKENS = [
    *"ab01:-[]{}&*!|>'\"%@`#,? \n\t~<.\\\x07\u00e9",
    "apiVersion: reconciler/v1\n", "kind: KeyPairs\n", "keypairs:\n", "  - name: ", "&a ", "*a",
    "<<: ", "public_key_file: ", "generate: ", "\ufeff", "---\n", "!!binary ", "!!set ",
    "2020-02-30", "!foo ", "\ud800", "1e999",
]
YAMLISH = st.lists(st.sampled_from(TOKENS), max_size=80).map("".join)
KEYS = st.sampled_from(["name", "generate", "public_key", "public_key_file", "type", "user_id",
                        "description", "scope", "key_protection", "encryption", "private_key_file",
                        "prevent_destroy", "rotate_after", "provider", "backend", "s3", "api",
                        "region", "kms_key_name", "ak", "keypairs", "apiVersion", "kind"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=30),
                    st.sampled_from(["ed25519", "ssh", "x509", "kms", "v2", "kps", "90d", "..",
                                     "/dev/zero", "/", "ssh-ed25519 AAAA", "-----BEGIN"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)), max_leaves=25)
DOCUMENTS = st.fixed_dictionaries(
    {"apiVersion": st.just("reconciler/v1"), "kind": st.just("KeyPairs")},
    optional={"keypairs": st.lists(st.dictionaries(KEYS, VALUES, max_size=6), max_size=4),
              "provider": VALUES, "backend": VALUES},
)


def load_bytes(data: bytes) -> Manifest | None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "m.yaml").write_bytes(data)
        try:
            return load_manifests([], cwd=Path(tmp))
        except DiagnosticsError as exc:
            assert exc.diagnostics
            return None


@SETTINGS
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data: bytes) -> None:
    load_bytes(data)


@SETTINGS
@given(YAMLISH)
def test_arbitrary_yamlish_text(text: str) -> None:
    load_bytes(text.encode("utf-8", "surrogatepass"))


@SETTINGS
@given(st.lists(DOCUMENTS, min_size=1, max_size=3))
def test_arbitrary_manifest_structures(documents: list[dict[str, object]]) -> None:
    data = yaml.safe_dump_all(documents, allow_unicode=True).encode()
    result = load_bytes(data)
    if result is not None:
        assert all(kp.name for kp in result.keypairs)
