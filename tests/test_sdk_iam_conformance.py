"""The official SDK against the emulator's IAM and STS: its IAM client's
``create_token_with_id_token``, ``create_temporary_access_key_by_token`` and
``create_temporary_access_key_by_agency`` (whose credentials then sign a KPS call in the
agency's project; without a domain id, its ``GlobalCredentials`` learn it from
``GET /v3/auth/domains`` first, and send it as ``X-Domain-Id``), its STS client's
``assume_agency_with_oidc``, and its core's own federated credentials (IdP + token file,
and STS with OIDC) signing a KPS call with the temporary AK/SK and security token.

Needs huaweicloudsdkcore, huaweicloudsdkiam, huaweicloudsdksts and huaweicloudsdkkps
(3.1.219); skipped, saying so, where they are not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from oidc_support import ISSUER_KEY_FACTORY, register, write_token

from reconciler.emulator.server import Emulator

MISSING = "the SDK conformance tests need huaweicloudsdkcore, huaweicloudsdkiam, " \
          "huaweicloudsdksts and huaweicloudsdkkps 3.1.219 (pip install them)"
iam = pytest.importorskip("huaweicloudsdkiam.v3", reason=MISSING)
sts = pytest.importorskip("huaweicloudsdksts.v1", reason=MISSING)
kps = pytest.importorskip("huaweicloudsdkkps.v3", reason=MISSING)
core_credentials = pytest.importorskip("huaweicloudsdkcore.auth.credentials", reason=MISSING)
core_provider = pytest.importorskip("huaweicloudsdkcore.auth.provider", reason=MISSING)

ISSUER_KEY = ISSUER_KEY_FACTORY()


def _iam_client(emulator: Emulator) -> object:
    credentials = core_credentials.GlobalCredentials("unused-ak", "unused-sk",
                                                     emulator.domain_id)
    return (iam.IamClient.new_builder().with_credentials(credentials)
            .with_endpoints([emulator.endpoint]).build())


def test_the_iam_client_logs_in_with_an_id_token(emulator: Emulator) -> None:
    register(emulator, ISSUER_KEY)
    client = _iam_client(emulator)
    request = iam.CreateTokenWithIdTokenRequest(
        x_idp_id="github", body=iam.GetIdTokenRequestBody(
            auth=iam.GetIdTokenAuthParams(id_token=iam.GetIdTokenIdTokenBody(
                id=ISSUER_KEY.token()))))
    answer = client.create_token_with_id_token(request)
    assert answer.x_subject_token and answer.token.expires_at
    body = iam.CreateTemporaryAccessKeyByTokenRequestBody(auth=iam.TokenAuth(
        identity=iam.TokenAuthIdentity(methods=["token"], token=iam.IdentityToken(
            id=answer.x_subject_token, duration_seconds=900))))
    got = client.create_temporary_access_key_by_token(
        iam.CreateTemporaryAccessKeyByTokenRequest(body=body))
    credential = got.credential
    assert credential.access and credential.secret and credential.securitytoken
    assert credential.expires_at.endswith("Z")


def test_the_iam_client_sees_a_refused_token(emulator: Emulator) -> None:
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

    register(emulator, ISSUER_KEY)
    request = iam.CreateTokenWithIdTokenRequest(
        x_idp_id="github", body=iam.GetIdTokenRequestBody(
            auth=iam.GetIdTokenAuthParams(id_token=iam.GetIdTokenIdTokenBody(
                id=ISSUER_KEY.token(aud="another-client")))))
    with pytest.raises(ClientRequestException) as refused:
        _iam_client(emulator).create_token_with_id_token(request)
    assert refused.value.status_code == 401


def test_the_sts_client_assumes_an_agency(emulator: Emulator) -> None:
    registered = register(emulator, ISSUER_KEY)
    credentials = core_credentials.BasicCredentials("unused-ak", "unused-sk",
                                                    emulator.project_id)
    client = (sts.StsClient.new_builder().with_credentials(credentials)
              .with_endpoints([emulator.endpoint]).build())
    body = sts.AssumeAgencyWithOIDCReqBody(
        provider_urn=registered["provider_urn"], agency_urn=registered["agencies"][0],
        agency_session_name="sdk-session", id_token=ISSUER_KEY.token(), duration_seconds=900)
    answer = client.assume_agency_with_oidc(sts.AssumeAgencyWithOIDCRequest(body=body))
    assert answer.credentials.access_key_id and answer.credentials.security_token
    assert answer.provider == registered["provider_urn"]


def _list_keypairs(emulator: Emulator, credentials: object) -> int:
    client = (kps.KpsClient.new_builder().with_credentials(credentials)
              .with_endpoints([emulator.endpoint]).build())
    return len(client.list_keypairs(kps.ListKeypairsRequest()).keypairs or [])


def test_the_sdks_own_idp_credentials_sign_a_key_pair_call(emulator: Emulator,
                                                           tmp_path: Path) -> None:
    register(emulator, ISSUER_KEY)
    write_token(tmp_path / "id-token", ISSUER_KEY.token())
    credentials = (core_credentials.BasicCredentials(project_id=emulator.project_id)
                   .with_idp_id("github").with_id_token_file(str(tmp_path / "id-token"))
                   .with_iam_endpoint(emulator.endpoint))
    assert _list_keypairs(emulator, credentials) == 0
    assert emulator.iam.counts["security_token"] == 1


def test_the_sdks_own_oidc_sts_credentials_sign_a_key_pair_call(
        emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    registered = register(emulator, ISSUER_KEY)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", emulator.project_id)
    provider = core_provider.OidcStsCredentialProvider(
        "basic", provider_urn=registered["provider_urn"], agency_urn=registered["agencies"][0],
        id_token=ISSUER_KEY.token(), sts_endpoint=emulator.endpoint)
    assert _list_keypairs(emulator, provider.get_credentials()) == 0
    assert emulator.iam.counts["assume_with_oidc"] == 1


def test_the_iam_client_assumes_an_agency_and_its_credentials_sign_kps(
        emulator: Emulator) -> None:
    foreign, foreign_domain = "f0re1gn0pr0ject00000000000000001", "d0ma1n0f0ther0000000000000001"
    emulator.add_project(foreign, region="ap-southeast-1", domain_id=foreign_domain)
    emulator.register_agency(name="keys-ops", domain_id=foreign_domain, domain_name="acme-prod",
                             projects=[foreign])
    credentials = core_credentials.GlobalCredentials(emulator.ak, emulator.sk,
                                                     emulator.domain_id)
    client = (iam.IamClient.new_builder().with_credentials(credentials)
              .with_endpoints([emulator.endpoint]).build())
    body = iam.CreateTemporaryAccessKeyByAgencyRequestBody(auth=iam.AgencyAuth(
        identity=iam.AgencyAuthIdentity(methods=["assume_role"], assume_role=iam.IdentityAssumerole(
            agency_name="keys-ops", domain_name="acme-prod", duration_seconds=3600,
            session_user=iam.AssumeroleSessionuser(name="ci")))))
    answer = client.create_temporary_access_key_by_agency(
        iam.CreateTemporaryAccessKeyByAgencyRequest(body=body))
    credential = answer.credential
    assert credential.access and credential.secret and credential.securitytoken
    assert credential.expires_at.endswith("Z") and emulator.iam.counts["assume_role"] == 1
    temporary = (core_credentials.BasicCredentials(credential.access, credential.secret, foreign)
                 .with_security_token(credential.securitytoken))
    assert _list_keypairs(emulator, temporary) == 0
    assert emulator.counters(foreign)["list"] == 1


def test_the_iam_client_sees_an_out_of_range_agency_duration(emulator: Emulator) -> None:
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

    emulator.register_agency(name="keys-ops", domain_name="acme-prod",
                             projects=[emulator.project_id])
    credentials = core_credentials.GlobalCredentials(emulator.ak, emulator.sk,
                                                     emulator.domain_id)
    client = (iam.IamClient.new_builder().with_credentials(credentials)
              .with_endpoints([emulator.endpoint]).build())
    body = iam.CreateTemporaryAccessKeyByAgencyRequestBody(auth=iam.AgencyAuth(
        identity=iam.AgencyAuthIdentity(methods=["assume_role"], assume_role=iam.IdentityAssumerole(
            agency_name="keys-ops", domain_name="acme-prod", duration_seconds=86401))))
    with pytest.raises(ClientRequestException) as refused:
        client.create_temporary_access_key_by_agency(
            iam.CreateTemporaryAccessKeyByAgencyRequest(body=body))
    assert refused.value.status_code == 400 and "900 to 86400" in refused.value.error_msg


def test_the_sdk_learns_its_account_from_iam_and_sends_it_with_assume_role(
        emulator: Emulator) -> None:
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

    emulator.register_agency(name="keys-ops", domain_name="acme-prod",
                             projects=[emulator.project_id])
    body = iam.CreateTemporaryAccessKeyByAgencyRequestBody(auth=iam.AgencyAuth(
        identity=iam.AgencyAuthIdentity(methods=["assume_role"], assume_role=iam.IdentityAssumerole(
            agency_name="keys-ops", domain_name="acme-prod", duration_seconds=900))))
    request = iam.CreateTemporaryAccessKeyByAgencyRequest(body=body)
    # no domain_id: for a region, GlobalCredentials ask GET /v3/auth/domains, as reconciler
    # does, at the IAM endpoint they are given
    from huaweicloudsdkcore.region.region import Region

    unknown = (core_credentials.GlobalCredentials(emulator.ak, emulator.sk)
               .with_iam_endpoint(emulator.endpoint))
    client = (iam.IamClient.new_builder().with_credentials(unknown)
              .with_region(Region("cn-north-4", emulator.endpoint)).build())
    assert client.create_temporary_access_key_by_agency(request).credential.access
    assert emulator.iam.counts == {"auth_domains": 1, "assume_role": 1}
    wrong = core_credentials.GlobalCredentials(emulator.ak, emulator.sk, "not-this-account")
    client = (iam.IamClient.new_builder().with_credentials(wrong)
              .with_endpoints([emulator.endpoint]).build())
    with pytest.raises(ClientRequestException) as refused:
        client.create_temporary_access_key_by_agency(request)
    assert refused.value.status_code == 401 and "X-Domain-Id" in refused.value.error_msg
