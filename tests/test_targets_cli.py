"""Targets through the real CLI and the emulator over HTTP: one target from a targets block
plans and applies like a provider block; one reached through an agency uses its credentials; and
refreshing several targets at once names the one that fails."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from reconciler.api.flavours import make_api
from reconciler.api.protocol import ApiSettings, Credentials
from reconciler.emulator.server import Emulator
from reconciler.errors import TargetRefreshError
from reconciler.model import Api, Secret
from reconciler.refresh import refresh_targets
from tests.clihelp import Cli


def _one_target(emulator: Emulator, api: str = "v2.1") -> str:
    return (f"targets:\n  - name: prod-cn-north-4\n    region: cn-north-4\n"
            f"    project_id: {emulator.project_id}\n    api: {api}\n"
            "keypairs:\n  - {name: web, generate: ed25519}\n")


def _run(cli: Cli, *argv: str) -> tuple[int, str]:
    r = cli(*argv, globals_=False,
            extra=["--state", str(cli.state), "--endpoint", cli.emulator.endpoint])
    return r.code, r.text


def test_one_target_block_plans_and_applies_like_a_provider_block(emulator: Emulator,
                                                                 tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path)
    cli.write(_one_target(emulator))
    code, text = _run(cli, "plan", str(cli.manifests))
    assert code == 0, text
    assert "keypair.web will be created" in text and '["' not in text
    code, text = _run(cli, "apply", "--auto-approve", str(cli.manifests))
    assert code == 0, text
    assert "keypair.web: Creation complete" in text
    assert [k.name for k in cli.client().list_keypairs().keypairs.values()] == ["web"]
    code, text = _run(cli, "plan", "--detailed-exitcode", str(cli.manifests))
    assert code == 0, text  # converged: no changes


def test_a_credential_source_name_is_refused_pointing_to_the_object_form(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path)
    cli.write(_one_target(emulator).replace("    api: v2.1\n",
                                            "    api: v2.1\n    credentials: ops-agency\n"))
    code, text = _run(cli, "plan", str(cli.manifests))
    assert code == 1, text
    assert "keys.yaml:8:18: error: targets[0].credentials: expected a mapping, got a " \
           "string" in text and "credentials: {profile: basic-NAME}" in text, text
    assert "agency: {name: AGENCY, domain_name: ACCOUNT}" in text


FOREIGN = "f0re1gn0pr0ject00000000000000001"
FOREIGN_DOMAIN = "d0ma1n0f0ther0000000000000001"


def test_a_target_reached_through_an_agency_is_planned_and_applied_with_its_credentials(
        emulator: Emulator, tmp_path: Path) -> None:
    emulator.add_project(FOREIGN, region="cn-north-4", domain_id=FOREIGN_DOMAIN)
    emulator.register_agency(name="keys-ops", domain_id=FOREIGN_DOMAIN,
                             domain_name="acme-prod", projects=[FOREIGN])
    cli = Cli(emulator, tmp_path)
    cli.write("targets:\n  - name: partner\n    region: cn-north-4\n"
              f"    project_id: {FOREIGN}\n    api: kps\n"
              "    credentials: {agency: {name: keys-ops, domain_name: acme-prod}}\n"
              "keypairs:\n  - {name: web, generate: ed25519}\n")
    code, text = _run(cli, "apply", "--auto-approve", str(cli.manifests))
    assert code == 0, text
    assert "Credentials: agency keys-ops in account acme-prod (assumed with environment" in text
    assert emulator.keypair_count(FOREIGN) == 1 and emulator.keypair_count() == 0
    assert emulator.iam.counts["assume_role"] == 1
    assert "agency keys-ops" in cli.state.read_text() and emulator.sk not in cli.state.read_text()
    code, text = _run(cli, "plan", "--detailed-exitcode", str(cli.manifests))
    assert code == 0, text


def _settings(emulator: Emulator, endpoint: str, api: Api = Api.V21) -> ApiSettings:
    return ApiSettings(api=api, endpoint=endpoint, project_id=emulator.project_id,
                       credentials=Credentials(ak=emulator.ak, sk=Secret(emulator.sk)),
                       max_retries=0, connect_timeout=2, total_timeout=5)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_targets_refresh_at_once_each_with_its_own_api(emulator: Emulator,
                                                       tmp_path: Path) -> None:
    Cli(emulator, tmp_path).client().create_keypair(name="web")
    apis = {"north": make_api(_settings(emulator, emulator.endpoint, Api.KPS)),
            "south": make_api(_settings(emulator, emulator.endpoint, Api.V2))}
    try:
        got = refresh_targets(apis)
    finally:
        for api in apis.values():
            api.close()
    assert list(got) == ["north", "south"]
    assert {t: (s.api, sorted(s.keypairs)) for t, s in got.items()} == {
        "north": (Api.KPS, ["web"]), "south": (Api.V2, ["web"])}


def test_a_target_that_cannot_be_reached_fails_the_refresh_naming_it(emulator: Emulator) -> None:
    apis = {"north": make_api(_settings(emulator, emulator.endpoint)),
            "unreachable": make_api(_settings(emulator, f"http://127.0.0.1:{_closed_port()}"))}
    try:
        with pytest.raises(TargetRefreshError) as exc:
            refresh_targets(apis)
    finally:
        for api in apis.values():
            api.close()
    assert exc.value.target == "unreachable"
    assert str(exc.value).startswith("target 'unreachable' could not be refreshed: ")
    assert emulator.sk not in str(exc.value)
