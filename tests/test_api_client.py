"""The HTTP client over real HTTP: error mapping, retries, lost answers, secrets, logging."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hostile_server import EMPTY_LIST, Servers, redirect, servers, trickle

from reconciler.api.client import Backoff, HttpClient
from reconciler.api.endpoints import default_endpoint
from reconciler.api.errormap import parse_error_body, retry_after_seconds
from reconciler.api.flavours import make_api
from reconciler.api.protocol import ApiSettings, Credentials, KeyPairApi
from reconciler.emulator.server import Emulator
from reconciler.errors import AnswerShapeError, ApiError, OutcomeUnknownError, UsageError
from reconciler.keys import generate_keypair
from reconciler.model import Api, Encryption, KeyProtection, Secret
from reconciler.urls import parse_endpoint

HTTP_LOG = "reconciler.http"


@dataclass
class FakeTime:
    """Sleep that only records, and a monotonic clock that sleeping advances."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


@dataclass
class Harness:
    emulator: Emulator
    time: FakeTime = field(default_factory=FakeTime)
    opened: list[KeyPairApi] = field(default_factory=list)

    def settings(self, api: Api = Api.KPS, **changes: object) -> ApiSettings:
        base = ApiSettings(
            api=api,
            endpoint=self.emulator.endpoint,
            project_id=self.emulator.project_id,
            credentials=Credentials(ak=self.emulator.ak, sk=Secret(self.emulator.sk)),
            pool_size=4,
        )
        return replace(base, **changes)  # type: ignore[arg-type]

    def api(self, api: Api = Api.KPS, *, clock: Callable[[], datetime] | None = None,
            **changes: object) -> KeyPairApi:
        settings = self.settings(api, **changes)
        extra = {"clock": clock} if clock is not None else {}
        http = HttpClient(
            settings, sleep=self.time.sleep, monotonic=self.time.monotonic,
            backoff=Backoff(base=0.01, cap=0.5), **extra,  # type: ignore[arg-type]
        )
        adapter = make_api(settings, http=http)
        self.opened.append(adapter)
        return adapter


@pytest.fixture()
def h(emulator: Emulator) -> Iterator[Harness]:
    harness = Harness(emulator)
    yield harness
    for adapter in harness.opened:
        adapter.close()


def _public() -> str:
    return generate_keypair("ed25519").public_key


# -- error mapping ---------------------------------------------------------------------


def test_400_invalid_request(h: Harness) -> None:
    with pytest.raises(ApiError) as info:
        h.api().import_keypair(name="bad", public_key="ssh-ed25519 not-base64!")
    err = info.value
    assert err.status == 400
    assert err.code and err.code.startswith("KPS.")
    assert err.request_id
    assert str(err).endswith(f"(request id: {err.request_id})")
    assert "import key pair bad failed: HTTP 400" in str(err)


def test_401_wrong_sk_says_what_to_check(h: Harness) -> None:
    wrong = "wrong-secret-key-0123456789"
    client = h.api(credentials=Credentials(ak=h.emulator.ak, sk=Secret(wrong)))
    with pytest.raises(ApiError) as info:
        client.list_keypairs()
    text = str(info.value)
    assert info.value.status == 401
    assert info.value.code == "APIGW.0301"
    # the advice names where the credentials came from (here: handed to the client directly;
    # through the CLI, the variables: tests/test_first_try.py)
    assert "check the credentials (given credentials)" in text and "clock" in text
    assert wrong not in text and h.emulator.sk not in text
    assert text.endswith(f"(request id: {info.value.request_id})")
    assert client.requests_sent == 1  # type: ignore[attr-defined]  # not retried


def test_401_when_the_clock_is_off(h: Harness) -> None:
    skewed = h.api(clock=lambda: datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(ApiError) as info:
        skewed.get_keypair("x")
    assert info.value.status == 401
    assert "time synchronisation" in str(info.value)


def test_403_other_project(h: Harness) -> None:
    with pytest.raises(ApiError) as info:
        h.api(project_id="f" * 32).list_keypairs()
    assert info.value.status == 403
    assert "project id" in str(info.value)
    assert "kps:SSHKeyPair:*" in str(info.value)


@pytest.mark.parametrize("api", [Api.V2, Api.V21, Api.KPS])
def test_409_name_exists(h: Harness, api: Api) -> None:
    client = h.api(api)
    client.import_keypair(name="dup", public_key=_public())
    with pytest.raises(ApiError) as info:
        client.create_keypair(name="dup")
    assert info.value.conflict
    assert not isinstance(info.value, OutcomeUnknownError)
    assert "already exists" in str(info.value)
    assert "reconciler import" in str(info.value)


def test_404_is_mapped(h: Harness) -> None:
    with pytest.raises(ApiError) as info:
        h.api(Api.KPS).update_description("nope", "x")
    assert info.value.not_found
    assert "HTTP 404" in str(info.value)


def test_429_retries_honour_retry_after_then_give_up(h: Harness) -> None:
    h.emulator.set_faults(error_rate=1.0, statuses=[429], retry_after=2)
    client = h.api(max_retries=3)
    with pytest.raises(ApiError) as info:
        client.list_keypairs()
    assert info.value.status == 429
    assert "after 3 retries" in str(info.value)
    assert "(request id: " in str(info.value)
    assert len(h.time.sleeps) == 3
    assert all(2.0 <= s <= 2.1 for s in h.time.sleeps)
    assert client.requests_sent == 4  # type: ignore[attr-defined]


def test_5xx_retried_then_reported(h: Harness) -> None:
    h.emulator.set_faults(error_rate=1.0, statuses=[500])
    client = h.api(max_retries=2)
    with pytest.raises(ApiError) as info:
        client.get_keypair("x")
    assert info.value.status == 500
    assert "service failed after 2 retries" in str(info.value)
    assert h.emulator.counters()["get"] == 3


def test_total_timeout_bounds_the_waiting(h: Harness) -> None:
    h.emulator.set_faults(error_rate=1.0, statuses=[429], retry_after=4)
    with pytest.raises(ApiError):
        h.api(max_retries=50, total_timeout=10.0).list_keypairs()
    assert sum(h.time.sleeps) <= 10.0
    assert len(h.time.sleeps) == 2


# -- answers no cloud sends: trickled, redirected -------------------------------------------


@pytest.fixture()
def hostile() -> Iterator[Servers]:
    yield from servers()


def _real_api(endpoint: str, **settings: float) -> KeyPairApi:
    """A client on the real clock (the deadline is wall time), against a loopback server."""
    return make_api(ApiSettings(api=Api.V21, endpoint=endpoint, project_id="p",
                                credentials=Credentials(ak="AK", sk=Secret("SECRETSK")),
                                **settings))  # type: ignore[arg-type]


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_a_trickled_answer_is_cut_off_at_the_total_timeout(hostile: Servers,
                                                           headers_too: bool) -> None:
    """A byte every 0.3 s never trips read_timeout=1; total_timeout=2 still ends the call
    (the drip would last about 16 s), and the error names the request and the limit."""
    server = hostile.start(trickle(EMPTY_LIST + b" " * 40, headers_too=headers_too))
    api = _real_api(server.endpoint, read_timeout=1.0, total_timeout=2.0)
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        api.list_keypairs()
    assert time.monotonic() - started < 4.5, "the answer was read long past total_timeout"
    assert not isinstance(info.value, OutcomeUnknownError)
    text = str(info.value)
    assert "total_timeout (2 s" in text and "GET /v2.1/p/os-keypairs" in text, text
    assert "SECRETSK" not in text
    api.close()


def test_a_trickled_answer_to_a_create_is_outcome_unknown(hostile: Servers) -> None:
    server = hostile.start(trickle(b'{"keypair": {}}' + b" " * 40))
    api = _real_api(server.endpoint, read_timeout=1.0, total_timeout=2.0, max_retries=3)
    started = time.monotonic()
    with pytest.raises(OutcomeUnknownError) as info:
        api.create_keypair(name="web")
    assert time.monotonic() - started < 4.5
    assert "total_timeout" in str(info.value)
    assert "re-read the key pair" in str(info.value).lower()
    assert len(server.requests) == 1, "a create whose answer was cut off was resent"
    api.close()


def test_a_redirected_delete_is_not_a_deletion(hostile: Servers) -> None:
    """A 307 with an empty body read as success would drop the entry (and its private key)
    from state while the key pair still exists. It is an error, and it is not followed."""
    elsewhere = hostile.start(lambda conn: None)
    server = hostile.start(redirect(elsewhere.endpoint))
    with pytest.raises(AnswerShapeError) as info:
        _real_api(server.endpoint).delete_keypair("web")
    assert not elsewhere.requests
    text = str(info.value)
    assert "HTTP 307" in text and "to host 127.0.0.1" in text, text
    assert info.value.status == 307


def test_a_redirected_list_is_not_an_empty_list(hostile: Servers) -> None:
    elsewhere = hostile.start(lambda conn: None)
    server = hostile.start(redirect(elsewhere.endpoint, EMPTY_LIST, status=b"302 Found"))
    with pytest.raises(AnswerShapeError, match="HTTP 302"):
        _real_api(server.endpoint).list_keypairs()
    assert not elsewhere.requests


def test_a_redirected_create_is_outcome_unknown(hostile: Servers) -> None:
    server = hostile.start(redirect("http://127.0.0.1:9", b'{"keypair": {"name": "web"}}'))
    with pytest.raises(OutcomeUnknownError, match=r"HTTP 307, a redirect to host 127\.0\.0\.1"):
        _real_api(server.endpoint, max_retries=3).create_keypair(name="web")
    assert len(server.requests) == 1


def test_a_redirect_names_its_host_escaped(hostile: Servers) -> None:
    server = hostile.start(redirect("http://\x1b[2Jev\xc2\x9bil.example"))
    with pytest.raises(AnswerShapeError) as info:
        _real_api(server.endpoint).get_keypair("web")
    text = str(info.value)
    assert "\x1b" not in text and "\x9b" not in text and "il.example" in text, text


# -- retries under faults --------------------------------------------------------------


def test_reads_survive_a_fault_storm(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    setup = h.api()
    for i in range(5):
        setup.import_keypair(name=f"k{i}", public_key=_public())
    h.emulator.set_faults(
        error_rate=0.2, statuses=[500, 502, 503, 504, 429], drop_rate=0.05, seed=7
    )
    client = h.api(max_retries=10)
    caplog.set_level(logging.DEBUG, logger=HTTP_LOG)
    for i in range(250):
        assert len(client.list_keypairs().keypairs) == 5
        assert client.get_keypair(f"k{i % 5}") is not None
    sent = client.requests_sent  # type: ignore[attr-defined]
    retries = [r for r in caplog.records if r.name == HTTP_LOG and "retrying" in r.message]
    assert sent > 500
    assert len(retries) == sent - 500 == len(h.time.sleeps)
    reasons = " ".join(r.message for r in retries)
    assert "HTTP 429" in reasons and "HTTP 50" in reasons and "answer lost" in reasons
    assert h.emulator.counters()["faults_injected"] == sent - 500


def test_every_attempt_is_signed_afresh(h: Harness) -> None:
    stamps: list[datetime] = []
    start = datetime.now(UTC)

    def clock() -> datetime:
        stamps.append(start + timedelta(seconds=len(stamps)))
        return stamps[-1]

    h.emulator.set_faults(error_rate=1.0, statuses=[503], seed=1)
    client = h.api(clock=clock, max_retries=3)
    with pytest.raises(ApiError):
        client.list_keypairs()
    h.emulator.set_faults()
    client.list_keypairs()
    assert len(stamps) == 5  # one signature per attempt, each with its own X-Sdk-Date
    assert len(set(stamps)) == 5


def test_lost_create_raises_outcome_unknown_and_the_pair_exists(h: Harness) -> None:
    h.emulator.set_faults(lost_response_rate=1.0, operations=["create", "import"])
    client = h.api(max_retries=5)
    with pytest.raises(OutcomeUnknownError) as info:
        client.create_keypair(name="lost")
    assert "Re-read" in str(info.value)
    with pytest.raises(OutcomeUnknownError):
        client.import_keypair(name="lost-import", public_key=_public())
    assert h.emulator.counters()["create"] == 1  # never resent
    h.emulator.set_faults()
    assert client.get_keypair("lost") is not None
    assert client.get_keypair("lost-import") is not None


def test_dropped_create_is_also_unknown_and_not_resent(h: Harness) -> None:
    h.emulator.set_faults(drop_rate=1.0, operations=["create"])
    client = h.api()
    with pytest.raises(OutcomeUnknownError):
        client.create_keypair(name="dropped")
    assert h.emulator.counters()["create"] == 1
    h.emulator.set_faults()
    assert client.get_keypair("dropped") is None


@pytest.mark.parametrize("status", [500, 502, 504])
def test_ambiguous_5xx_to_a_create_is_not_resent(h: Harness, status: int) -> None:
    h.emulator.set_faults(error_rate=1.0, statuses=[status], operations=["create"])
    with pytest.raises(OutcomeUnknownError) as info:
        h.api().create_keypair(name="amb")
    assert info.value.status == status
    assert h.emulator.counters()["create"] == 1
    assert h.time.sleeps == []


@pytest.mark.parametrize("status", [429, 503])
def test_create_is_retried_when_the_cloud_did_not_act(h: Harness, status: int) -> None:
    h.emulator.set_faults(error_rate=0.5, statuses=[status], operations=["create"], seed=3)
    client = h.api(max_retries=20)
    created = client.create_keypair(name="retried")
    assert created.private_key is not None
    assert h.emulator.counters()["create"] == client.requests_sent  # type: ignore[attr-defined]
    assert client.requests_sent > 1  # type: ignore[attr-defined]


def test_lost_delete_is_resent_and_reported_as_deleted(h: Harness) -> None:
    client = h.api()
    client.import_keypair(name="gone", public_key=_public())
    h.emulator.set_faults(lost_response_rate=1.0, operations=["delete"])
    assert client.delete_keypair("gone") is True
    assert h.emulator.counters()["delete"] == 2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_is_retried_even_for_creates(h: Harness) -> None:
    client = h.api(endpoint=f"http://127.0.0.1:{_closed_port()}", max_retries=3)
    with pytest.raises(ApiError) as info:
        client.create_keypair(name="never")
    assert not isinstance(info.value, OutcomeUnknownError)
    assert "could not get an answer" in str(info.value)
    assert len(h.time.sleeps) == 3


# -- secrets and logging ---------------------------------------------------------------


def test_no_secret_in_errors_or_debug_log(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = "security-token-value-42"
    creds = Credentials(ak=h.emulator.ak, sk=Secret(h.emulator.sk), security_token=Secret(token))
    client = h.api(credentials=creds)
    messages: list[str] = []
    created = client.create_keypair(name="cloud")
    assert created.private_key is not None
    key = generate_keypair("rsa-2048")
    protection = KeyProtection(encryption=Encryption(type="default"))
    client.import_keypair(
        name="held", public_key=key.public_key, key_protection=protection,
        private_key=key.private_key,
    )
    exported = client.export_private_key("held")
    h.emulator.set_faults(error_rate=1.0, statuses=[500, 429], lost_response_rate=0.0, seed=2)
    for call in (
        lambda: client.import_keypair(
            name="held2", public_key=key.public_key, key_protection=protection,
            private_key=key.private_key,
        ),
        lambda: client.list_keypairs(),
    ):
        with pytest.raises(ApiError) as info:
            call()
        messages.append(str(info.value))
    h.emulator.set_faults()
    wrong = h.api(credentials=Credentials(ak=h.emulator.ak, sk=Secret("x" * 32)))
    with pytest.raises(ApiError) as info:
        wrong.import_keypair(
            name="held3", public_key=key.public_key, key_protection=protection,
            private_key=key.private_key,
        )
    messages.append(str(info.value))
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert [r for r in caplog.records if r.name == HTTP_LOG]
    secrets = [
        h.emulator.sk, "x" * 32, token,
        key.private_key.reveal().splitlines()[1], created.private_key.reveal().splitlines()[1],
        "Signature=", "SDK-HMAC-SHA256 Access",
    ]
    assert "Authorization: (sensitive value)" in logged  # names shown, values redacted
    assert "X-Security-Token: (sensitive value)" in logged
    assert exported is not None
    for text in [*messages, logged, repr(creds)]:
        for secret in secrets:
            assert secret not in text


def test_debug_log_shows_method_path_status_and_request_id(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=HTTP_LOG)
    h.api().get_keypair("absent")
    (record,) = [r for r in caplog.records if r.name == HTTP_LOG and " -> " in r.getMessage()]
    text = record.getMessage()
    assert text.startswith(f"GET /v3/{h.emulator.project_id}/keypairs/absent -> 404 in ")
    assert "attempt 1" in text and "request id " in text and "request id -" not in text


# -- settings, endpoints, parsing ------------------------------------------------------


def test_plain_http_only_for_loopback(h: Harness) -> None:
    with pytest.raises(UsageError, match="loopback"):
        h.api(endpoint="http://ecs.cn-north-4.myhuaweicloud.com")
    def normalise(text: str) -> str:
        return parse_endpoint(text, what="test").url

    assert normalise("http://localhost:8080/") == "http://localhost:8080"
    assert normalise("http://[::1]:9") == "http://[::1]:9"
    assert normalise("http://127.1.2.3") == "http://127.1.2.3"
    assert normalise("kms.cn-north-4.myhuaweicloud.com") == (
        "https://kms.cn-north-4.myhuaweicloud.com"
    )
    with pytest.raises(UsageError):
        normalise("ftp://example.com")


def test_session_settings(h: Harness) -> None:
    settings = h.settings(pool_size=7, verify_tls=False)
    http = HttpClient(settings)
    try:
        adapter = http._session.get_adapter("https://example.com")
        assert adapter._pool_maxsize == 7  # type: ignore[attr-defined]
        assert http._adapter is adapter  # what every request is sent through
        assert http._verify is False
    finally:
        http.close()
    http = HttpClient(h.settings())
    try:
        assert http._verify is True
    finally:
        http.close()


def test_default_endpoints() -> None:
    assert default_endpoint(Api.V21, "cn-north-4") == "https://ecs.cn-north-4.myhuaweicloud.com"
    assert default_endpoint(Api.V2, "ap-southeast-1") == "https://ecs.ap-southeast-1.myhuaweicloud.com"
    assert default_endpoint(Api.KPS, "cn-north-4") == "https://kms.cn-north-4.myhuaweicloud.com"
    with pytest.raises(UsageError):
        default_endpoint(Api.KPS, "not a region")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"error_code": "KPS.x", "error_msg": "m"}', ("KPS.x", "m")),
        ('{"itemNotFound": {"message": "gone", "code": 404}}', ("404", "gone")),
        ('{"errorCode": "APIGW.0301", "errorMsg": "bad"}', ("APIGW.0301", "bad")),
        ('{"error": {"error_code": "KMS.1", "error_msg": "n"}}', ("KMS.1", "n")),
        ("plain text", ("403", "plain text")),
        ("", ("403", "")),
    ],
)
def test_error_bodies_parse_like_the_sdk(body: str, expected: tuple[str, str]) -> None:
    assert parse_error_body(body, 403) == expected


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("3", now=now) == 3.0
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:05 GMT", now=now) == 5.0
    assert retry_after_seconds("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert retry_after_seconds("soon", now=now) is None
    assert retry_after_seconds(None, now=now) is None
    assert retry_after_seconds("inf", now=now) is None
