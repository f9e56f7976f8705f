"""Every operation of every adapter, over real HTTP against the emulator."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from reconciler.api.client import Backoff, HttpClient
from reconciler.api.flavours import KpsApi, NovaV2Api, NovaV21Api, make_api
from reconciler.api.protocol import ApiSettings, Credentials, KeyPairApi
from reconciler.capabilities import capabilities
from reconciler.emulator.server import Emulator
from reconciler.errors import ApiError, UsageError
from reconciler.keys import fingerprints, generate_keypair
from reconciler.model import Api, Encryption, KeyProtection, Secret

ALL_APIS = [Api.V2, Api.V21, Api.KPS]
PROTECTING_APIS = [Api.V21, Api.KPS]
DEFAULT_PROTECTION = KeyProtection(encryption=Encryption(type="default"))

MakeApi = Callable[..., KeyPairApi]


def settings_for(emu: Emulator, api: Api) -> ApiSettings:
    return ApiSettings(
        api=api,
        endpoint=emu.endpoint,
        project_id=emu.project_id,
        credentials=Credentials(ak=emu.ak, sk=Secret(emu.sk)),
        pool_size=4,
    )


@pytest.fixture()
def make(emulator: Emulator) -> Iterator[MakeApi]:
    made: list[KeyPairApi] = []

    def factory(api: Api, *, page_size: int = 1000) -> KeyPairApi:
        settings = settings_for(emulator, api)
        http = HttpClient(settings, sleep=lambda _s: None, backoff=Backoff(base=0.001))
        adapter = make_api(settings, http=http, page_size=page_size)
        made.append(adapter)
        return adapter

    yield factory
    for adapter in made:
        adapter.close()


def test_make_api_picks_the_flavour(make: MakeApi) -> None:
    assert isinstance(make(Api.V2), NovaV2Api)
    assert isinstance(make(Api.V21), NovaV21Api)
    assert isinstance(make(Api.KPS), KpsApi)
    assert [make(a).api for a in ALL_APIS] == ALL_APIS


@pytest.mark.parametrize("api", ALL_APIS)
def test_each_adapter_does_what_its_capabilities_say(make: MakeApi, api: Api) -> None:
    client = make(api, page_size=1)
    caps = client.capabilities
    assert caps == capabilities(api) and caps.api is api
    key = generate_keypair("ed25519")
    if caps.custody:
        client.import_keypair(name="held", public_key=key.public_key,
                              key_protection=DEFAULT_PROTECTION, private_key=key.private_key)
    else:
        with pytest.raises(UsageError, match="key_protection"):
            client.import_keypair(name="held", public_key=key.public_key,
                                  key_protection=DEFAULT_PROTECTION, private_key=key.private_key)
        client.import_keypair(name="held", public_key=key.public_key)
    client.import_keypair(name="other", public_key=_public())
    assert client.list_keypairs().requests == (2 if caps.paginated else 1)
    assert (client.export_private_key("held") == key.private_key) is caps.export
    if caps.descriptions:
        client.update_description("held", "prod web tier")
        got = client.get_keypair("held")
        assert got is not None and got.description == "prod web tier"
    else:
        with pytest.raises(UsageError, match="descriptions"):
            client.update_description("held", "prod web tier")
    if not caps.scope:
        with pytest.raises(UsageError, match="scope"):
            client.create_keypair(name="team", scope="domain")
    else:
        assert client.create_keypair(name="team", scope="domain").remote.scope == "domain"


@pytest.mark.parametrize("api", ALL_APIS)
def test_create_get_list_delete(make: MakeApi, emulator: Emulator, api: Api) -> None:
    client = make(api)
    created = client.create_keypair(name="web-deploy")
    assert created.remote.name == "web-deploy"
    assert created.private_key is not None
    assert "PRIVATE KEY" in created.private_key.reveal()
    assert created.remote.fingerprint == fingerprints(created.remote.public_key)[0]

    got = client.get_keypair("web-deploy")
    assert got is not None
    assert got.fingerprint == created.remote.fingerprint
    assert got.public_key.split()[:2] == created.remote.public_key.split()[:2]

    snapshot = client.list_keypairs()
    assert set(snapshot.keypairs) == {"web-deploy"}
    assert snapshot.api is api
    assert snapshot.requests == 1

    assert client.delete_keypair("web-deploy") is True
    assert client.get_keypair("web-deploy") is None
    assert client.delete_keypair("web-deploy") is False
    assert client.list_keypairs().keypairs == {}
    assert emulator.counters()["create"] == 1


@pytest.mark.parametrize("api", ALL_APIS)
def test_import_public_key(make: MakeApi, api: Api) -> None:
    client = make(api)
    key = generate_keypair("ed25519", comment="alice@laptop")
    remote = client.import_keypair(name="alice", public_key=key.public_key)
    assert remote.name == "alice"
    assert remote.fingerprint == fingerprints(key.public_key)[0]
    assert remote.type == "ssh"
    listed = client.list_keypairs().keypairs["alice"]
    assert listed.fingerprint == remote.fingerprint


@pytest.mark.parametrize("api", ALL_APIS)
def test_the_three_apis_see_the_same_pairs(make: MakeApi, api: Api) -> None:
    key = generate_keypair("ed25519")
    make(Api.KPS).import_keypair(name="shared", public_key=key.public_key)
    got = make(api).get_keypair("shared")
    assert got is not None and got.fingerprint == fingerprints(key.public_key)[0]


def _public() -> str:
    return generate_keypair("ed25519").public_key


def _certificate() -> str:
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "legacy")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(private, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize("api", ALL_APIS)
def test_import_x509(make: MakeApi, api: Api) -> None:
    client = make(api)
    remote = client.import_keypair(name="legacy", public_key=_certificate(), type="x509")
    assert remote.type == "x509"
    got = client.get_keypair("legacy")
    assert got is not None and got.type == "x509"


def test_v2_refuses_key_protection_without_a_request(make: MakeApi) -> None:
    client = make(Api.V2)
    with pytest.raises(UsageError, match="key_protection"):
        client.create_keypair(name="vault", key_protection=DEFAULT_PROTECTION)
    key = generate_keypair("ed25519")
    with pytest.raises(UsageError, match=r"v2\.1 or kps"):
        client.import_keypair(
            name="vault", public_key=key.public_key, key_protection=DEFAULT_PROTECTION,
            private_key=key.private_key,
        )
    assert client.requests_sent == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("api", [Api.V2, Api.V21])
def test_nova_refuses_kps_only_features(make: MakeApi, api: Api) -> None:
    client = make(api)
    with pytest.raises(UsageError, match="kps"):
        client.create_keypair(name="x", scope="domain")
    with pytest.raises(UsageError, match="kps"):
        client.update_description("x", "text")
    assert client.requests_sent == 0  # type: ignore[attr-defined]
    # custody calls are KPS's: v2.1 sends them there (absent: None), v2 has none
    assert client.export_private_key("x") is None
    assert client.requests_sent == (1 if client.capabilities.export else 0)  # type: ignore[attr-defined]


def test_v2_refuses_custody_calls_without_a_request(make: MakeApi) -> None:
    client = make(Api.V2)
    key = generate_keypair("ed25519")
    with pytest.raises(UsageError, match=r"v2\.1 or kps"):
        client.import_private_key("x", key_protection=DEFAULT_PROTECTION,
                                  private_key=key.private_key)
    with pytest.raises(UsageError, match=r"v2\.1 or kps"):
        client.clear_private_key("x")
    assert client.requests_sent == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("api", PROTECTING_APIS)
def test_private_key_import_and_clear_through_kps(make: MakeApi, emulator: Emulator,
                                                  api: Api) -> None:
    client = make(api)
    key = generate_keypair("ed25519")
    client.import_keypair(name="later", public_key=key.public_key)
    kms = KeyProtection(encryption=Encryption(type="kms", kms_key_name="ops-kms"))
    before = emulator.counters()
    client.import_private_key("later", key_protection=kms, private_key=key.private_key)
    client.import_private_key("later", key_protection=kms, private_key=key.private_key)  # twice
    record = emulator.store.get("later")
    assert record.key_protection and record.encryption == {"type": "kms",
                                                          "kms_key_name": "ops-kms"}
    assert client.export_private_key("later") == key.private_key
    client.clear_private_key("later")
    client.clear_private_key("later")  # twice: still done
    assert not emulator.store.get("later").key_protection
    after = emulator.counters()
    assert after["import_private_key"] - before["import_private_key"] == 2
    assert after["clear_private_key"] - before["clear_private_key"] == 2
    other = generate_keypair("ed25519")
    with pytest.raises(ApiError):  # not the half of its public key: the cloud refuses
        client.import_private_key("later", key_protection=kms, private_key=other.private_key)


def test_custody_endpoint_of_v21_is_the_kps_host() -> None:
    from reconciler.api.endpoints import custody_endpoint

    ecs = "https://ecs.cn-north-4.myhuaweicloud.com"
    assert custody_endpoint(ecs, Api.V21) == "https://kms.cn-north-4.myhuaweicloud.com"
    assert custody_endpoint(ecs, Api.V21, "https://kms.example") == "https://kms.example"
    assert custody_endpoint("http://127.0.0.1:8080", Api.V21) == "http://127.0.0.1:8080"
    kms = "https://kms.cn-north-4.myhuaweicloud.com"
    assert custody_endpoint(kms, Api.KPS) == kms


def test_service_endpoint_swaps_only_a_cloud_hosts_service_label() -> None:
    from reconciler.api.endpoints import service_endpoint

    ecs, kms = ("https://ecs.cn-north-4.myhuaweicloud.com",
                "https://kms.cn-north-4.myhuaweicloud.com")
    assert service_endpoint(ecs, "kms") == kms and service_endpoint(kms, "ecs") == ecs
    assert service_endpoint(kms, "kms") == kms
    for other in ("http://127.0.0.1:8080", "https://gateway.example/ecs.x", "ecs.no-scheme"):
        assert service_endpoint(other, "kms") == other  # one URL serves every service


@pytest.mark.parametrize("api", PROTECTING_APIS)
def test_key_protection_on_create_and_import(
    make: MakeApi, emulator: Emulator, api: Api
) -> None:
    client = make(api)
    kms = KeyProtection(encryption=Encryption(type="kms", kms_key_name="ops-kms"))
    created = client.create_keypair(name="vault", key_protection=kms)
    assert created.remote.key_protection is True
    key = generate_keypair("ecdsa-p256")
    client.import_keypair(
        name="held", public_key=key.public_key, key_protection=DEFAULT_PROTECTION,
        private_key=key.private_key,
    )
    custody = {s["name"]: s["key_protection"] for s in emulator.keypair_summaries()}
    assert custody == {"vault": True, "held": True}


def test_kps_export_update_and_scope(make: MakeApi) -> None:
    client = make(Api.KPS)
    key = generate_keypair("ed25519")
    client.import_keypair(
        name="held", public_key=key.public_key, key_protection=DEFAULT_PROTECTION,
        private_key=key.private_key, scope="domain",
    )
    exported = client.export_private_key("held")
    assert exported == key.private_key
    assert client.export_private_key("missing") is None

    client.import_keypair(name="plain", public_key=generate_keypair("ed25519").public_key)
    with pytest.raises(ApiError) as info:
        client.export_private_key("plain")  # the cloud keeps no private key for it
    assert info.value.status == 400

    client.update_description("held", "prod web tier")
    got = client.get_keypair("held")
    assert got is not None
    assert got.description == "prod web tier"
    assert got.scope == "domain"
    assert got.key_protection is True
    listed = client.list_keypairs().keypairs["held"]
    assert listed.description is None  # list entries carry no description
    assert listed.key_protection is True

    with pytest.raises(ApiError) as missing:
        client.update_description("missing", "x")
    assert missing.value.status == 404


def test_kps_create_reports_what_was_asked(make: MakeApi) -> None:
    created = make(Api.KPS).create_keypair(name="team", scope="domain", user_id="u-1")
    assert created.remote.scope == "domain"
    assert created.remote.user_id == "u-1"
    assert created.remote.key_protection is False


@pytest.mark.parametrize(
    ("count", "page", "pages"), [(7, 3, 3), (6, 3, 2), (7, 1000, 1), (0, 5, 1)]
)
def test_kps_pagination(
    make: MakeApi, emulator: Emulator, count: int, page: int, pages: int
) -> None:
    client = make(Api.KPS, page_size=page)
    for i in range(count):
        client.import_keypair(name=f"key-{i:02d}", public_key=_public())
    before = emulator.counters()["list"]
    snapshot = client.list_keypairs()
    assert sorted(snapshot.keypairs) == [f"key-{i:02d}" for i in range(count)]
    assert snapshot.requests == pages
    assert emulator.counters()["list"] - before == pages


@pytest.mark.parametrize("api", [Api.V2, Api.V21])
def test_nova_lists_in_one_request(make: MakeApi, emulator: Emulator, api: Api) -> None:
    client = make(api)
    for i in range(12):
        client.import_keypair(name=f"key-{i:02d}", public_key=_public())
    snapshot = client.list_keypairs()
    assert len(snapshot.keypairs) == 12
    assert snapshot.requests == 1


def test_kps_page_size_is_bounded(emulator: Emulator) -> None:
    http = HttpClient(settings_for(emulator, Api.KPS))
    try:
        with pytest.raises(ValueError, match="page_size"):
            KpsApi(http, project_id=emulator.project_id, page_size=1001)
    finally:
        http.close()


def test_one_client_shared_by_threads(make: MakeApi, emulator: Emulator) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client = make(Api.KPS, page_size=50)
    keys = [_public() for _ in range(120)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        names = list(
            pool.map(lambda i: client.import_keypair(name=f"t{i:03d}", public_key=keys[i]).name,
                     range(120))
        )
    assert sorted(names) == [f"t{i:03d}" for i in range(120)]
    snapshot = client.list_keypairs()
    assert len(snapshot.keypairs) == 120 and snapshot.requests == 3
    assert client.requests_sent == 123  # type: ignore[attr-defined]
    assert emulator.counters()["import"] == 120
