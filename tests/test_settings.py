"""Where reconciler reaches the cloud: precedence, and credentials from one family."""

from __future__ import annotations

import pytest

from reconciler.errors import UsageError
from reconciler.model import Api, ProviderConfig
from reconciler.settings import ProviderFlags, resolve_api_settings

BASE = {"HUAWEICLOUD_SDK_PROJECT_ID": "p" * 32, "HW_REGION_NAME": "cn-north-4"}


def test_credentials_never_mix_families() -> None:
    env = {**BASE, "HUAWEICLOUD_SDK_AK": "OLD_AK", "HW_ACCESS_KEY": "NEW_AK",
           "HW_SECRET_KEY": "NEW_SK"}
    with pytest.raises(UsageError, match="HUAWEICLOUD_SDK_AK is set but HUAWEICLOUD_SDK_SK"):
        resolve_api_settings(ProviderFlags(), env, None)
    env = {**BASE, "HW_ACCESS_KEY": "NEW_AK", "HW_SECRET_KEY": "NEW_SK", "HW_SECURITY_TOKEN": "t"}
    got = resolve_api_settings(ProviderFlags(), env, None).credentials.current()
    assert got.ak == "NEW_AK" and got.sk.reveal() == "NEW_SK"
    assert got.security_token is not None and got.security_token.reveal() == "t"
    assert "NEW_SK" not in repr(got)


def test_flag_beats_environment_beats_manifest() -> None:
    env = {**BASE, "HUAWEICLOUD_SDK_AK": "a", "HUAWEICLOUD_SDK_SK": "s", "RECONCILER_API": "kps"}
    manifest = ProviderConfig(region="cn-east-3", project_id="m" * 32, api=Api.V2)
    s = resolve_api_settings(ProviderFlags(), env, manifest)
    assert (s.api, s.region, s.project_id) == (Api.KPS, "cn-north-4", "p" * 32)
    assert s.endpoint == "https://kms.cn-north-4.myhuaweicloud.com"
    s = resolve_api_settings(ProviderFlags(api="v2.1", region="ap-southeast-1"), env, manifest)
    assert (s.api, s.endpoint) == (Api.V21, "https://ecs.ap-southeast-1.myhuaweicloud.com")
    s = resolve_api_settings(ProviderFlags(), {"HUAWEICLOUD_SDK_AK": "a",
                                               "HUAWEICLOUD_SDK_SK": "s"}, manifest)
    assert (s.api, s.region, s.project_id) == (Api.V2, "cn-east-3", "m" * 32)
