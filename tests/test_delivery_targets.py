"""Delivery with several targets, through the CLI and the emulator: one key pair declared in two
targets (two projects), each with its own CSMS sink in its own target; each secret holds its
target's key (read back through the official SDK), and drift in one target is planned and
repaired there alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.api.csms import CsmsClient
from reconciler.emulator.server import Emulator
from reconciler.model import Secret
from tests.clihelp import Cli
from tests.test_emulator_kms import settings

csms_sdk = pytest.importorskip("huaweicloudsdkcsms.v1", reason="the test extra's SDK")
core_credentials = pytest.importorskip("huaweicloudsdkcore.auth.credentials")

SOUTH = "0b1e5outh0000000000000000000000b"


def _sdk_current(emulator: Emulator, project: str, secret: str) -> str:
    creds = core_credentials.BasicCredentials(emulator.ak, emulator.sk, project)
    client = (csms_sdk.CsmsClient.new_builder().with_credentials(creds)
              .with_endpoints([emulator.endpoint]).build())
    at = client.show_secret_stage(csms_sdk.ShowSecretStageRequest(  # type: ignore[attr-defined]
        secret_name=secret, stage_name="SYSCURRENT"))
    version = client.show_secret_version(  # type: ignore[attr-defined]
        csms_sdk.ShowSecretVersionRequest(secret_name=secret, version_id=at.stage.version_id))
    return str(version.version.secret_string)


def _manifest(emulator: Emulator) -> str:
    return ("targets:\n"
            f"  - {{name: north, region: cn-north-4, project_id: {emulator.project_id}, "
            "api: kps}\n"
            f"  - {{name: south, region: cn-south-1, project_id: {SOUTH}, api: kps}}\n"
            "keypairs:\n"
            "  - name: web\n    generate: ed25519\n"
            "    deliver:\n      - csms: {secret: web-ssh}\n")


def test_each_target_gets_its_own_key_and_drift_is_repaired_where_it_is(
        emulator: Emulator, tmp_path: Path) -> None:
    emulator.add_project(SOUTH, region="cn-south-1")
    cli = Cli(emulator, tmp_path)
    cli.write(_manifest(emulator))

    def run(*argv: str) -> tuple[int, str, str]:
        r = cli(*argv, globals_=False,
                extra=["--state", str(cli.state), "--endpoint", emulator.endpoint])
        return r.code, r.out, r.text

    code, out, text = run("plan", str(cli.manifests))
    assert code == 0, text
    for target in ("north", "south"):
        assert f'# delivery.web["csms:web-ssh"]["{target}"] will be created' in out, out
    assert "Plan: 4 to add, 0 to change, 0 to destroy." in out
    code, out, text = run("apply", "--auto-approve", str(cli.manifests))
    assert code == 0, text
    keys = {}
    for target, project in (("north", emulator.project_id), ("south", SOUTH)):
        shown = cli("output", f'web["{target}"]', "--private-key", globals_=False,
                    extra=["--state", str(cli.state)])
        assert shown.code == 0 and "PRIVATE KEY-----" in shown.out, shown.text
        keys[target] = shown.out
        assert _sdk_current(emulator, project, "web-ssh") == shown.out
    assert keys["north"] != keys["south"]  # a key pair per target, each its own key
    doc = json.loads(cli.state.read_text())
    targets = {a: [d["target"] for d in e.get("deliveries", [])]
               for a, e in doc["keypairs"].items()}
    assert targets == {'keypair.web["north"]': ["north"], 'keypair.web["south"]': ["south"]}
    code, out, text = run("plan", "--detailed-exitcode", str(cli.manifests))
    assert code == 0, text

    south = CsmsClient(settings(emulator, project=SOUTH))
    try:
        south.put_version("web-ssh", Secret("someone else's value"))
    finally:
        south.close()
    code, out, text = run("plan", "--detailed-exitcode", str(cli.manifests))
    assert code == 2, text
    assert '# delivery.web["csms:web-ssh"]["south"] has changed' in out, out
    assert '# delivery.web["csms:web-ssh"]["north"]' not in out  # in sync: not shown
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in out
    code, out, text = run("apply", "--auto-approve", str(cli.manifests))
    assert code == 0, text
    assert _sdk_current(emulator, SOUTH, "web-ssh") == keys["south"]
    assert _sdk_current(emulator, emulator.project_id, "web-ssh") == keys["north"]
    code, out, text = run("plan", "--detailed-exitcode", str(cli.manifests))
    assert code == 0, text
