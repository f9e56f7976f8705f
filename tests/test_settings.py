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


def test_where_v21_sends_custody_calls() -> None:
    """KPS's endpoint: derived from the ECS one (None here), a target's endpoints.kms, or
    --endpoint's URL, which puts every service there."""
    from reconciler.model import TargetConfig
    from reconciler.settings import target_settings

    env = {**BASE, "HUAWEICLOUD_SDK_AK": "a", "HUAWEICLOUD_SDK_SK": "s"}
    s = resolve_api_settings(ProviderFlags(api="v2.1"), env, None)
    assert s.custody_endpoint is None  # api.endpoints.custody_endpoint swaps ecs. for kms.
    s = resolve_api_settings(ProviderFlags(api="v2.1", endpoint="https://gw.example"), env, None)
    assert s.custody_endpoint == "https://gw.example"
    target = TargetConfig(name="prod", region="cn-north-4", project_id="p" * 32, api=Api.V21,
                          endpoints={"ecs": "https://ecs.internal.example",
                                     "kms": "https://kms.internal.example"})
    s = target_settings(target, ProviderFlags(), env)
    assert (s.endpoint, s.custody_endpoint) == ("https://ecs.internal.example",
                                                "https://kms.internal.example")
