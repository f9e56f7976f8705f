"""Credentials per target: the ``credentials`` block of a target (a named profile of the SDK's
file, an IAM agency assumed with the base credentials), its diagnostics at file, line and
column, and the providers ``resolve_target_settings`` gives, against the emulator over HTTP
with real signatures: the agency's temporary credentials reach its projects only, are
shared by targets that define the same, are refreshed before they expire, and a refusal
names the target and the agency, never a secret."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from oidc_support import ISSUER_KEY_FACTORY, iam_environ, iam_settings, register, write_token

from reconciler.api.flavours import make_api
from reconciler.api.protocol import ApiSettings, CredentialProvider
from reconciler.credentials.target import TargetProvider, forget_shared
from reconciler.credentials.temporary import RefreshingProvider
from reconciler.emulator.server import Emulator
from reconciler.errors import (
    ApiError,
    CredentialError,
    DiagnosticsError,
    TargetRefreshError,
    UsageError,
)
from reconciler.manifest import load_manifests
from reconciler.model import AgencyConfig, CredentialsConfig, Manifest
from reconciler.refresh import refresh_targets
from reconciler.settings import ProviderFlags, resolve_target_settings

HEAD = "apiVersion: reconciler/v1\nkind: KeyPairs\n"
FOREIGN, OTHER = "f0re1gn0pr0ject00000000000000001", "f0re1gn0pr0ject00000000000000002"
FOREIGN_DOMAIN = "d0ma1n0f0ther0000000000000001"
ISSUER_KEY = ISSUER_KEY_FACTORY()


def _target(name: str, project: str, credentials: str = "") -> str:
    block = f"    credentials:\n{credentials}" if credentials else ""
    return f"  - name: {name}\n    region: ap-southeast-1\n    project_id: {project}\n{block}"


def _write(root: Path, body: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "keys.yaml").write_text(HEAD + body)
    return root


def _load(root: Path, body: str) -> Manifest:
    return load_manifests([_write(root, body)], cwd=root)


def _problems(root: Path, body: str) -> list[str]:
    with pytest.raises(DiagnosticsError) as exc:
        _load(root, body)
    return [str(d) for d in exc.value.diagnostics]


AGENCY = "      agency: {name: keys-ops, domain_name: acme-prod}\n"


# -- the block in manifests -----------------------------------------------------------------

def test_a_credentials_block_loads_with_its_defaults(tmp_path: Path) -> None:
    manifest = _load(tmp_path, "targets:\n"
                     + _target("partner", FOREIGN, "      profile: basic-partner\n"
                               "      agency:\n        name: keys ops\n"
                               f"        domain_id: {FOREIGN_DOMAIN}\n"
                               "        duration: 2h30m\n")
                     + _target("plain", OTHER, AGENCY) + _target("chain", "p3"))
    partner, plain, chain = (t.credentials for t in manifest.targets)
    assert partner == CredentialsConfig(
        profile="basic-partner", agency=AgencyConfig(name="keys ops", domain_id=FOREIGN_DOMAIN,
                                                     duration_seconds=9000),
        location=partner.location if partner else None)
    assert partner is not None and str(partner.location) == "keys.yaml:8:7"
    assert plain is not None and plain.profile is None and plain.agency == AgencyConfig(
        name="keys-ops", domain_name="acme-prod", duration_seconds=3600)  # the default: 1h
    assert chain is None


@pytest.mark.parametrize(("credentials", "expected"), [
    ("      agency: {name: a, domain_name: b, role: admin}\n",
     'keys.yaml:8:41: error: targets[0].credentials.agency.role: unknown key "role"\n'
     "  allowed here: name, domain_name, domain_id, duration"),
    ("      agency: {name: a, domain_name: b, domain_id: c}\n",
     "keys.yaml:8:41: error: targets[0].credentials.agency.domain_id: give exactly one of "
     "domain_name and domain_id (found both)"),
    ("      agency: {name: a}\n",
     "keys.yaml:8:15: error: targets[0].credentials.agency: give exactly one of domain_name "
     "and domain_id (the account that owns the agency)"),
    ("      agency: {name: a, domain_name: b, duration: 10m}\n",
     'keys.yaml:8:51: error: targets[0].credentials.agency.duration: duration "10m" is 600 '
     "seconds; IAM grants agency credentials for 15m to 24h"),
    ("      agency: {name: a, domain_name: b, duration: 24h1s}\n",
     'keys.yaml:8:51: error: targets[0].credentials.agency.duration: duration "24h1s" is '
     "86401 seconds; IAM grants agency credentials for 15m to 24h"),
    ("      agency: {name: a, domain_name: b, duration: 1d}\n",
     'keys.yaml:8:51: error: targets[0].credentials.agency.duration: "1d" is not a valid '
     "duration: use whole numbers with h, m or s"),
    ("      agency: {domain_name: b}\n",
     'keys.yaml:8:15: error: targets[0].credentials.agency: missing required key "name"'),
    ("      profile: partner\n",
     'keys.yaml:8:16: error: targets[0].credentials.profile: "partner" is not a profile '
     "name: the SDK's profile file names its sections basic or basic followed by"),
    ("      profile: |\n        basic-partner\n",
     'keys.yaml:8:16: error: targets[0].credentials.profile: "basic-partner" ends with a '
     "line break"),
    ("      {}\n",
     "keys.yaml:7:5: error: targets[0].credentials: the credentials block is empty\n"
     "  give profile and/or agency, or remove credentials"),
])
def test_every_mistake_in_the_block_is_a_diagnostic_at_its_place(tmp_path: Path,
                                                                 credentials: str,
                                                                 expected: str) -> None:
    problems = _problems(tmp_path, "targets:\n" + _target("partner", FOREIGN, credentials))
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_the_string_form_is_refused_naming_the_object_form(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "targets:\n  - {name: t, region: r, project_id: p, "
                         "credentials: ops-agency}\n")
    assert len(problems) == 1, problems
    assert problems[0].startswith("keys.yaml:4:54: error: targets[0].credentials: expected a "
                                  "mapping, got a string\n  give an object, never a secret: "
                                  "credentials: {profile: basic-NAME}"), problems


@pytest.mark.parametrize("credentials", [
    "      sk: SUPERSECRETVALUE\n",
    "      ak: AKVALUE1234\n      sk: SUPERSECRETVALUE\n",
    "      agency: {name: a, domain_name: b, secret_access_key: SUPERSECRETVALUE}\n",
    "      security_token: SUPERSECRETVALUE\n",
])
def test_a_secret_in_the_block_is_refused_without_echoing_it(tmp_path: Path,
                                                             credentials: str) -> None:
    problems = _problems(tmp_path, "targets:\n" + _target("partner", FOREIGN, credentials))
    assert problems and all("unknown key" in p and "credentials never belong in a manifest"
                            in p for p in problems), problems
    assert not any("SUPERSECRETVALUE" in p or "AKVALUE1234" in p for p in problems)


# -- the providers, against the emulator ----------------------------------------------------

@pytest.fixture()
def partner(emulator: Emulator) -> Emulator:
    """Two projects of another account, and its agency keys-ops that reaches the first."""
    emulator.add_project(FOREIGN, region="ap-southeast-1", domain_id=FOREIGN_DOMAIN)
    emulator.add_project(OTHER, region="ap-southeast-1", domain_id=FOREIGN_DOMAIN)
    emulator.register_agency(name="keys-ops", domain_id=FOREIGN_DOMAIN,
                             domain_name="acme-prod", projects=[FOREIGN])
    return emulator


def _environ(emulator: Emulator, **more: str) -> dict[str, str]:
    return {"HUAWEICLOUD_SDK_AK": emulator.ak, "HUAWEICLOUD_SDK_SK": emulator.sk, **more}


def _settings(emulator: Emulator, root: Path, targets: str,
              environ: dict[str, str] | None = None, *,
              flags: ProviderFlags | None = None) -> dict[str, ApiSettings]:
    manifest = _load(root, "targets:\n" + targets)
    return resolve_target_settings(flags or ProviderFlags(endpoint=emulator.endpoint),
                                   _environ(emulator) if environ is None else environ,
                                   manifest)


def _inner(provider: CredentialProvider) -> RefreshingProvider:
    assert isinstance(provider, TargetProvider)
    assert isinstance(provider.inner, RefreshingProvider)
    return provider.inner


def _listed(settings: ApiSettings) -> list[str]:
    api = make_api(replace(settings, max_retries=0))
    try:
        return sorted(api.list_keypairs().keypairs)
    finally:
        api.close()


def test_an_agency_reaches_its_project_and_no_other(partner: Emulator, tmp_path: Path) -> None:
    got = _settings(partner, tmp_path, _target("partner", FOREIGN, AGENCY))["partner"]
    assert got.credentials.source == ("agency keys-ops in account acme-prod (assumed with "
                                      "environment (HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK))")
    assert "assume_role" not in partner.iam.counts  # assumed at the first signature only
    api = make_api(got)
    try:
        api.create_keypair(name="ops")
    finally:
        api.close()
    assert partner.keypair_count(FOREIGN) == 1 and partner.keypair_count() == 0
    assert partner.iam.counts == {"auth_domains": 1, "assume_role": 1}
    for outside in (OTHER, partner.project_id):  # same account, and the caller's own
        with pytest.raises(ApiError) as refused:
            _listed(replace(got, project_id=outside))
        assert refused.value.status == 403 and "may use projects" in str(refused.value)
    assert partner.iam.counts["assume_role"] == 1  # the same temporary credentials


def test_targets_with_the_same_agency_share_one_set_of_credentials(partner: Emulator,
                                                                  tmp_path: Path) -> None:
    partner.register_agency(name="keys-ops", domain_id=FOREIGN_DOMAIN,
                            domain_name="acme-prod", projects=[FOREIGN, OTHER])
    by_id = f"      agency: {{name: keys-ops, domain_id: {FOREIGN_DOMAIN}}}\n"
    got = _settings(partner, tmp_path, _target("one", FOREIGN, AGENCY)
                    + _target("two", OTHER, AGENCY) + _target("three", OTHER, by_id))
    one, two, three = (got[n].credentials for n in ("one", "two", "three"))
    assert _inner(one) is _inner(two) and _inner(three) is not _inner(one)
    assert _listed(got["one"]) == [] and _listed(got["two"]) == []
    assert partner.iam.counts == {"auth_domains": 1, "assume_role": 1}
    assert _listed(got["three"]) == []  # another agency request: its own credentials
    assert partner.iam.counts == {"auth_domains": 1, "assume_role": 2}
    assert three.source.startswith(f"agency keys-ops in account {FOREIGN_DOMAIN} (assumed")


@pytest.mark.parametrize(("duration", "seconds"), [("", 3600), ("15m", 900), ("2h", 7200),
                                                   ("24h", 86400)])
def test_the_configured_duration_is_what_iam_grants(partner: Emulator, tmp_path: Path,
                                                    duration: str, seconds: int) -> None:
    extra = f", duration: {duration}" if duration else ""
    credentials = f"      agency: {{name: keys-ops, domain_name: acme-prod{extra}}}\n"
    got = _settings(partner, tmp_path, _target("partner", FOREIGN, credentials))["partner"]
    started = time.time()
    refresh_at = _inner(got.credentials).refresh_at()
    # renewed when 40 minutes remain, or after a third of a shorter life
    margin = min(2400, seconds * 2 / 3)
    assert abs(refresh_at - (started + seconds - margin)) < 5, refresh_at - started


def test_agency_credentials_are_refreshed_before_they_expire(partner: Emulator,
                                                            tmp_path: Path) -> None:
    iam_settings(partner, credential_lifetime_seconds=2)  # every grant lasts 2 s
    got = _settings(partner, tmp_path, _target("partner", FOREIGN, AGENCY))["partner"]
    first = got.credentials.current()
    started = time.monotonic()
    assert _listed(got) == [] and partner.iam.counts["assume_role"] == 1
    time.sleep(0.8)  # past a third of their life: renewed at the next signature
    assert _listed(got) == [] and partner.iam.counts["assume_role"] == 2
    assert got.credentials.current().ak != first.ak
    time.sleep(max(0.0, 2.2 - (time.monotonic() - started)))
    assert _listed(got) == []  # the first set has expired by now; the provider never uses it
    expired = make_api(replace(got, credentials=first, max_retries=0))
    try:
        with pytest.raises(ApiError) as refused:
            expired.list_keypairs()
    finally:
        expired.close()
    assert refused.value.status == 401 and "expired" in str(refused.value)
    assert partner.iam.counts["auth_domains"] == 1  # the account is asked once


def test_a_refused_agency_names_the_target_and_the_agency(partner: Emulator,
                                                         tmp_path: Path) -> None:
    wrong = "      agency: {name: keys-opz, domain_name: acme-prod}\n"
    got = _settings(partner, tmp_path, _target("partner", FOREIGN, wrong))
    with pytest.raises(CredentialError) as refused:
        got["partner"].credentials.current()
    text = str(refused.value)
    assert text.startswith("target 'partner': agency keys-opz in account acme-prod (assumed "
                           "with environment (HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK)): "
                           f"assuming the agency was refused at {partner.endpoint}"), text
    assert "404 IAM.0004" in text and "has an agency named keys-opz" in text, text
    assert partner.sk not in text
    api = make_api(replace(got["partner"], max_retries=0))
    try:
        with pytest.raises(TargetRefreshError) as failed:
            refresh_targets({"partner": api})
    finally:
        api.close()
    assert "target 'partner' could not be refreshed" in str(failed.value)
    assert "agency keys-opz" in str(failed.value) and partner.sk not in str(failed.value)
    assert partner.counters(FOREIGN)["total"] == 0  # nothing signed with the base credentials


def test_the_callers_account_is_sent_as_iam_requires(partner: Emulator,
                                                     tmp_path: Path) -> None:
    given = _environ(partner, HUAWEICLOUD_SDK_DOMAIN_ID=partner.domain_id)
    got = _settings(partner, tmp_path, _target("partner", FOREIGN, AGENCY), given)
    assert _listed(got["partner"]) == []
    assert partner.iam.counts == {"assume_role": 1}  # given: not asked of IAM
    forget_shared()
    wrong = _environ(partner, HUAWEICLOUD_SDK_DOMAIN_ID=FOREIGN_DOMAIN)
    got = _settings(partner, tmp_path, _target("partner", FOREIGN, AGENCY), wrong)
    with pytest.raises(CredentialError) as refused:
        got["partner"].credentials.current()
    assert "401 IAM.0005: X-Domain-Id is not the account of the signing credentials" in \
        str(refused.value)
    with pytest.raises(UsageError, match="HUAWEICLOUD_SDK_DOMAIN_ID is not an account id"):
        _settings(partner, tmp_path, _target("partner", FOREIGN, AGENCY),
                  _environ(partner, HUAWEICLOUD_SDK_DOMAIN_ID="not an id"))


def _profile_file(emulator: Emulator, root: Path) -> Path:
    path = root / "credentials"
    path.write_text(f"[basic]\nak = NOTTHEONE\nsk = NOTTHEONE\n\n"
                    f"[basic-partner]\nak = {emulator.ak}\nsk = {emulator.sk}\n")
    return path


def test_a_named_profile_gives_the_base_credentials(partner: Emulator,
                                                    tmp_path: Path) -> None:
    path = _profile_file(partner, tmp_path)
    environ = {"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(path)}  # and no AK/SK variables
    profile = "      profile: basic-partner\n"
    got = _settings(partner, tmp_path / "m", _target("home", partner.project_id, profile)
                    + _target("partner", FOREIGN, profile + AGENCY), environ)
    assert got["home"].credentials.source == f"profile file {path} [basic-partner]"
    assert got["partner"].credentials.source == (
        f"agency keys-ops in account acme-prod (assumed with profile file {path} "
        "[basic-partner])")
    assert _listed(got["home"]) == [] and _listed(got["partner"]) == []
    assert partner.iam.counts["assume_role"] == 1
    missing = "      profile: basic-nope\n"
    with pytest.raises(UsageError) as refused:
        _settings(partner, tmp_path / "m", _target("gone", FOREIGN, missing), environ)
    assert str(refused.value).startswith(f"target 'gone': the credentials file {path} has no "
                                         "[basic-nope] section (its credentials.profile)"), \
        refused.value
    with pytest.raises(UsageError) as refused:
        _settings(partner, tmp_path / "m", _target("gone", FOREIGN, missing),
                  {"HOME": str(tmp_path / "empty-home")})
    assert str(refused.value).startswith(
        "target 'gone': the profile [basic-nope] (its credentials.profile) needs "
        "the SDK's credentials file, and there is none at "), refused.value


def test_temporary_base_credentials_assume_with_their_security_token(
        partner: Emulator, tmp_path: Path) -> None:
    register(partner, ISSUER_KEY)
    write_token(tmp_path / "id-token", ISSUER_KEY.token())
    environ = iam_environ(partner, tmp_path / "id-token")
    got = _settings(partner, tmp_path / "m", _target("partner", FOREIGN, AGENCY), environ)
    assert got["partner"].credentials.source == (
        "agency keys-ops in account acme-prod (assumed with OIDC via IAM identity provider "
        f"github at {partner.endpoint})")
    assert _listed(got["partner"]) == []
    assert partner.iam.counts == {"id_token": 1, "security_token": 1, "auth_domains": 1,
                                  "assume_role": 1}


def test_the_targets_own_iam_endpoint_is_used_without_endpoint_flags(
        partner: Emulator, tmp_path: Path) -> None:
    endpoints = (f"    endpoints: {{ecs: \"{partner.endpoint}\", "
                 f"iam: \"{partner.endpoint}\"}}\n")
    got = _settings(partner, tmp_path, _target("partner", FOREIGN, AGENCY) + endpoints,
                    flags=ProviderFlags())
    assert _listed(got["partner"]) == [] and partner.iam.counts["assume_role"] == 1
    plain = endpoints.replace(f'iam: "{partner.endpoint}"', 'iam: "http://iam.example.test"')
    with pytest.raises(UsageError) as refused:
        _settings(partner, tmp_path, _target("partner", FOREIGN, AGENCY) + plain,
                  flags=ProviderFlags())
    assert "endpoints.iam of target 'partner' in keys.yaml:4:5" in str(refused.value)
