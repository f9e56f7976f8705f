"""Nothing a full run prints or writes holds a private key, the SK or the token in clear;
every file holding a secret is 0600."""

from __future__ import annotations

import base64
import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from reconciler.api.kms import KmsClient
from reconciler.emulator.server import Emulator
from reconciler.state.kmskey import aad
from tests.clihelp import Cli
from tests.test_emulator_kms import make_key, settings

TOKEN = "session-token-3f9a1c77e2"
MANIFEST = """keypairs:
  - name: web
  - name: ci
    generate: ed25519
  - name: vault
    generate: rsa-2048
    key_protection: {encryption: {type: default}}
"""


def _chunks(private_pem: str, public_key: str) -> set[str]:
    """Distinctive pieces of a private key's body: any of them in output is a leak.

    An OpenSSH private key embeds its public key; pieces found in the public key are public.
    """
    body = "".join(line for line in private_pem.splitlines() if "-----" not in line)
    pieces = {body[i:i + 24] for i in range(0, max(0, len(body) - 24), 24)}
    return {p for p in pieces if p not in public_key}


def test_full_run_leaks_no_secret(emulator: Emulator, tmp_path: Path) -> None:
    _full_run(emulator, tmp_path, header="")


def test_full_run_with_the_state_key_from_kms_leaks_no_secret(emulator: Emulator,
                                                              tmp_path: Path) -> None:
    """The same run with the state sealed by a KMS data key (and rekeyed once): neither the
    data key nor anything it seals appears anywhere."""
    key = make_key(emulator, "state")
    _full_run(emulator, tmp_path, kms_key=key,
              header=f"encryption: {{provider: kms, kms: {{key_id: {key}}}}}\n")


def _data_keys(emulator: Emulator, state: Path) -> set[str]:
    """The clear data keys of the state and its backup (a test may ask KMS; reconciler never
    shows them), hex and base64."""
    client = KmsClient(settings(emulator))
    found = set()
    for path in (state, state.with_name(state.name + ".backup")):
        doc = json.loads(path.read_text())
        wrap = doc["key"]["kms"]
        plain = client.decrypt_datakey(wrap["key_id"], wrap["cipher_text"],
                                       aad=aad(doc["lineage"]))
        raw = bytes.fromhex(plain.reveal())
        found |= {raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode()}
    client.close()
    return found


def _full_run(emulator: Emulator, tmp_path: Path, *, header: str,
              kms_key: str | None = None) -> None:
    cli = Cli(emulator, tmp_path, api="kps",
              extra_env={"HUAWEICLOUD_SDK_SECURITY_TOKEN": TOKEN})
    if kms_key is not None:
        del cli.environ["RECONCILER_KEY_FILE"]
    cli.write(header + MANIFEST)
    m = str(cli.manifests)
    printed = [
        cli("--debug", "plan", "--out", "plan.json", m),
        cli("--debug", "apply", "--auto-approve", m),
        cli("plan", "--format", "json", m),
        cli("plan", "--format", "markdown", m),
        cli("--debug", "plan", "--out", "plan2.json", m),
        cli("state", "list"),
        cli("state", "show", "web"),
        cli("state", "show", "vault"),
        cli("state", "pull"),
        cli("output", "web"),
        cli("output", "ci", "--json"),
        *([cli("--debug", "state", "rekey", m)] if kms_key is not None else []),
    ]
    assert all(r.code == 0 for r in printed), [r.text for r in printed if r.code]
    # the first data key (now in the backup) and the one state rekey made
    data_keys = _data_keys(emulator, cli.state) if kms_key is not None else set()
    assert kms_key is None or len(data_keys) == 6
    assert kms_key is None or "kms/create-datakey" in printed[1].err  # logged, redacted
    assert "Retry" in printed[1].err or "GET" in printed[1].err  # the debug log is there
    private = {name: cli("output", name, "--private-key") for name in ("web", "ci", "vault")}
    secrets = {emulator.sk, TOKEN}
    for name, result in private.items():
        assert result.code == 0, result.text
        assert "PRIVATE KEY-----" in result.out, name  # asked for: shown
        public = cli.client().get_keypair(name)
        assert public is not None
        secrets |= _chunks(result.out, public.public_key)
    cli.write(header + MANIFEST.replace("  - name: web\n", ""))
    assert cli("--debug", "apply", "--auto-approve", m).code == 0  # a delete, with backup
    secrets |= data_keys
    if kms_key is not None:
        secrets |= _data_keys(emulator, cli.state)
        assert json.loads(cli.state.read_text())["format_version"] == 4
    haystacks = {f"output {i}": r.text for i, r in enumerate(printed)}
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "state.key":
            haystacks[str(path)] = path.read_text(errors="replace")
    for where, text in haystacks.items():
        assert "PRIVATE KEY-----" not in text, where
        for secret in secrets:
            assert secret not in text, f"a secret appears in {where}"
        # The debug log names these headers, with the value always redacted.
        assert not re.search(r"(?i)(Authorization|X-Security-Token): (?!\(sensitive value\))",
                             text), where
        assert "SDK-HMAC-SHA256 Access" not in text, where
    for path in [cli.state, cli.state.with_name(cli.state.name + ".backup"),
                 tmp_path / "plan.json", *([tmp_path / "state.key"] if kms_key is None else [])]:
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_full_run_with_sinks_leaks_no_secret(emulator: Emulator, tmp_path: Path) -> None:
    """Deliveries to CSMS and to an age file, with the debug log (every request to CSMS in it):
    the private keys are in the sinks, nowhere else."""
    if shutil.which("age-keygen") is None:
        pytest.skip("the age tool (Debian package age; .ci/run installs it)")
    identity = tmp_path / "identity.txt"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = next(line.split(": ", 1)[1] for line in identity.read_text().splitlines()
                     if line.startswith("# public key:"))
    cli = Cli(emulator, tmp_path, api="kps",
              extra_env={"HUAWEICLOUD_SDK_SECURITY_TOKEN": TOKEN})
    manifest = ("keypairs:\n  - name: ci\n    generate: ed25519\n    deliver:\n"
                "      - csms: {secret: ci-key}\n"
                f"      - age_file: {{path: keys/ci.age, recipients: [{recipient}]}}\n"
                "  - name: web\n    deliver:\n      - csms: {secret: web-key}\n")
    cli.write(manifest)
    m = str(cli.manifests)
    printed = [
        cli("--debug", "plan", "--out", "plan.json", m),
        cli("--debug", "apply", "--auto-approve", m),
        cli("--debug", "plan", "--format", "json", m),
        cli("--debug", "apply", "--auto-approve", "--replace", "ci", m),
        cli("plan", "--format", "markdown", m),
        cli("state", "show", "ci"),
        cli("state", "pull"),
    ]
    assert all(r.code == 0 for r in printed), [r.text for r in printed if r.code]
    assert "/secrets" in printed[1].err  # the debug log shows the requests to CSMS
    secrets = {emulator.sk, TOKEN}
    for name in ("ci", "web"):
        result = cli("output", name, "--private-key")
        assert result.code == 0 and "PRIVATE KEY-----" in result.out, result.text
        public = cli.client().get_keypair(name)
        assert public is not None
        secrets |= _chunks(result.out, public.public_key)
    haystacks = {f"output {i}": r.text for i, r in enumerate(printed)}
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name not in ("state.key", "identity.txt"):
            haystacks[str(path)] = path.read_text(errors="replace")
    assert any(where.endswith("ci.age") for where in haystacks)
    for where, text in haystacks.items():
        assert "PRIVATE KEY-----" not in text, where
        for secret in secrets:
            assert secret not in text, f"a secret appears in {where}"
        assert "SDK-HMAC-SHA256 Access" not in text, where
