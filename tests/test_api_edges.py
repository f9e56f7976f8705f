"""Answers the emulator never gives, from a scripted server on 127.0.0.1 (real HTTP)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from reconciler.api.client import Backoff, HttpClient
from reconciler.api.flavours import KpsApi, NovaV21Api
from reconciler.api.protocol import ApiSettings, Credentials
from reconciler.errors import AnswerShapeError, ApiError, OutcomeUnknownError
from reconciler.model import Api, Secret

PID = "0123456789abcdef0123456789abcdef"
SK = "scripted-secret-key"


@dataclass
class Script:
    """Canned answers, served in order; every request seen is recorded."""

    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)

    def add(self, status: int, body: object = None, headers: dict[str, str] | None = None) -> None:
        if not isinstance(body, bytes):
            body = b"" if body is None else json.dumps(body).encode()
        raw = body
        self.answers.append((status, headers or {}, raw))


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            script.seen.append(
                {"method": self.command, "path": self.path, "headers": dict(self.headers),
                 "body": body}
            )
            status, headers, raw = script.answers.pop(0)
            self.send_response(status)
            for name, value in {"X-Request-Id": "rid-1", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_POST = do_PUT = do_DELETE = do_GET

    return Handler


@dataclass
class Served:
    script: Script
    endpoint: str
    sleeps: list[float]
    http: HttpClient


@pytest.fixture()
def served() -> Iterator[Served]:
    script = Script()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    settings = ApiSettings(
        api=Api.KPS, endpoint=endpoint, project_id=PID,
        credentials=Credentials(ak="AK", sk=Secret(SK)), max_retries=3,
    )
    sleeps: list[float] = []
    http = HttpClient(settings, sleep=sleeps.append, backoff=Backoff(base=0.01))
    try:
        yield Served(script, endpoint, sleeps, http)
    finally:
        http.close()
        server.shutdown()
        server.server_close()
        thread.join()


def _page(names: list[str], next_marker: str | None) -> dict[str, object]:
    items = [{"keypair": {"name": n, "public_key": "ssh-ed25519 AAAA", "fingerprint": "f",
                          "frozen_state": "0"}} for n in names]
    return {"keypairs": items, "page_info": {"next_marker": next_marker}}


def test_kps_400_not_found_means_absent(served: Served) -> None:
    api = KpsApi(served.http, project_id=PID)
    served.script.add(400, {"error_code": "KPS.XXX", "error_msg": "The keypair does not exist"})
    assert api.get_keypair("gone") is None
    served.script.add(400, {"error_code": "KPS.XXX", "error_msg": "invalid name"})
    with pytest.raises(ApiError) as info:
        api.get_keypair("bad")
    assert info.value.status == 400 and info.value.code == "KPS.XXX"
    assert str(info.value).endswith("(request id: rid-1)")
    # The same documented shape answers delete and export of a key pair that is gone.
    served.script.add(400, {"error_code": "KPS.XXX", "error_msg": "The keypair is not found"})
    assert api.delete_keypair("gone") is False
    served.script.add(400, {"error_code": "KPS.XXX", "error_msg": "The keypair does not exist"})
    assert api.export_private_key("gone") is None


def test_fingerprints_are_compared_in_one_form(served: Served) -> None:
    """An upper-case, prefixed or missing fingerprint must not look like a changed key."""
    from reconciler import keys

    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKwIjAMYc6uhQM4LzeXgHN/O/kezk2t2iqOT16iKzSCu"
    want = keys.md5_fingerprint(key)
    api = KpsApi(served.http, project_id=PID)
    for reported in (want.upper(), "MD5:" + want, None):
        detail = {"name": "x", "public_key": key}
        if reported is not None:
            detail["fingerprint"] = reported
        served.script.add(200, {"keypair": detail})
        got = api.get_keypair("x")
        assert got is not None and got.fingerprint == want, reported


def test_kps_pagination_refuses_a_repeated_marker_or_an_empty_page(served: Served) -> None:
    """A list that cannot be complete is an error, never a shorter list (it used to stop
    quietly, and the key pairs on later pages looked deleted)."""
    api = KpsApi(served.http, project_id=PID, page_size=2)
    served.script.add(200, _page(["a", "b"], "b"))
    served.script.add(200, _page(["c", "d"], "b"))  # a broken server repeating itself
    with pytest.raises(AnswerShapeError, match="same marker came back twice") as info:
        api.list_keypairs()
    assert info.value.path == "page_info.next_marker"
    assert f"GET /v3/{PID}/keypairs?limit=2&marker=b" in str(info.value)
    assert [s["path"] for s in served.script.seen] == [
        f"/v3/{PID}/keypairs?limit=2",
        f"/v3/{PID}/keypairs?limit=2&marker=b",
    ]
    served.script.add(200, _page(["a"], "a"))
    served.script.add(200, _page([], "zzz"))
    with pytest.raises(AnswerShapeError, match="no key pairs points to a further page"):
        api.list_keypairs()
    served.script.add(200, _page(["a", "b"], "b"))
    served.script.add(200, _page(["b", "c"], None))
    with pytest.raises(AnswerShapeError, match="'b' is listed twice"):
        api.list_keypairs()
    served.script.add(200, _page(["a", "b"], "b"))
    served.script.add(200, _page(["c"], None))
    assert sorted(api.list_keypairs().keypairs) == ["a", "b", "c"]


def test_kps_pagination_is_bounded_by_the_key_pairs_seen(served: Served) -> None:
    """An endless chain of fresh markers, each page bringing one new name where the cloud
    sent full pages before: stopped after a few pages, not after thousands."""
    api = KpsApi(served.http, project_id=PID, page_size=3)
    served.script.add(200, _page(["a", "b", "c"], "m0"))
    for i in range(1, 10):
        served.script.add(200, _page([f"n{i}"], f"m{i}"))
    with pytest.raises(AnswerShapeError, match="pages have brought only"):
        api.list_keypairs()
    assert len(served.script.seen) <= 5


def test_answers_are_held_to_their_documented_shape(served: Served) -> None:
    api = KpsApi(served.http, project_id=PID)
    detail = {"name": "x", "frozen_state": 3, "public_key": "ssh-ed25519 AAAA",
              "is_key_protection": True, "id": "not read"}
    served.script.add(200, {"keypair": detail})
    got = api.get_keypair("x")
    assert got is not None
    assert (got.public_key, got.type, got.key_protection) == ("ssh-ed25519 AAAA", "ssh", True)
    served.script.add(200, b"<html>not json</html>", {"Content-Type": "text/html"})
    with pytest.raises(AnswerShapeError, match=r"the body is not JSON \(21 bytes, text/html\)"):
        api.get_keypair("x")
    served.script.add(200, {"keypair": {"name": "x"}})
    with pytest.raises(AnswerShapeError, match=r"keypair\.public_key: missing"):
        api.get_keypair("x")
    served.script.add(200, {"keypair": {**detail, "is_key_protection": "true"}})
    with pytest.raises(AnswerShapeError, match=r"keypair\.is_key_protection: expected a boolean"):
        api.get_keypair("x")
    served.script.add(200, {"keypair": {**detail, "name": "y"}})
    with pytest.raises(AnswerShapeError, match="another key pair"):
        api.get_keypair("x")
    served.script.add(200, None)
    with pytest.raises(AnswerShapeError, match="got an empty body"):
        api.get_keypair("x")


def test_non_json_error_is_kept_short_and_without_key_material(served: Served) -> None:
    api = NovaV21Api(served.http, project_id=PID)
    served.script.add(403, b"Forbidden " + b"x" * 2000)
    with pytest.raises(ApiError) as info:
        api.list_keypairs()
    assert info.value.code == "403"
    assert len(str(info.value)) < 800
    served.script.add(400, {"badRequest": {"message": f"bad -----BEGIN PRIVATE KEY----- {SK}",
                                           "code": 400}})
    with pytest.raises(ApiError) as bad:
        api.import_keypair(name="k", public_key="ssh-ed25519 AAAA")
    assert "PRIVATE KEY" not in str(bad.value) and SK not in str(bad.value)
    assert "withheld" in str(bad.value)
    served.script.add(404, {"itemNotFound": {"message": f"no {SK}", "code": 404}})
    with pytest.raises(ApiError) as scrubbed:
        api.list_keypairs()
    assert SK not in str(scrubbed.value) and "(sensitive value)" in str(scrubbed.value)


def test_retry_after_as_an_http_date(served: Served) -> None:
    api = KpsApi(served.http, project_id=PID)
    when = datetime.now(UTC) + timedelta(seconds=30)
    served.script.add(503, {"error_code": "KPS.0503", "error_msg": "busy"},
                      {"Retry-After": format_datetime(when, usegmt=True)})
    served.script.add(200, _page([], None))
    assert api.list_keypairs().keypairs == {}
    (slept,) = served.sleeps
    assert 28 <= slept <= 31


def test_requests_carry_signed_json_headers(served: Served) -> None:
    api = NovaV21Api(served.http, project_id=PID)
    served.script.add(200, {"keypair": {"name": "k", "public_key": "ssh-ed25519 AAAA",
                                        "fingerprint": "f"}})
    api.import_keypair(name="k", public_key="ssh-ed25519 AAAA", type="x509")
    (seen,) = served.script.seen
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["content-type"] == "application/json;charset=utf-8"
    assert headers["openstack-api-version"] == "compute 2.2"
    assert headers["host"] == served.endpoint.removeprefix("http://")
    assert "openstack-api-version" in headers["authorization"]
    assert "x-project-id;x-sdk-date" in headers["authorization"]
    assert json.loads(seen["body"]) == {
        "keypair": {"name": "k", "type": "x509", "public_key": "ssh-ed25519 AAAA"}
    }


def test_an_unusable_answer_to_a_create_is_an_unknown_outcome(served: Served) -> None:
    api = KpsApi(served.http, project_id=PID)
    served.script.add(200, b"{truncated")
    with pytest.raises(OutcomeUnknownError, match="re-read"):
        api.create_keypair(name="k")
    assert len(served.script.seen) == 1


def test_server_text_never_repeats_the_sk_or_the_token() -> None:
    from reconciler.api.errormap import clean_server_text
    from reconciler.api.protocol import Credentials
    from reconciler.model import Secret

    creds = Credentials(ak="AK", sk=Secret("the-secret-key"), security_token=Secret("tok-12345"))
    text = clean_server_text("signature for the-secret-key with token tok-12345 is wrong",
                             secrets=creds.secrets())
    assert "the-secret-key" not in text and "tok-12345" not in text
    assert text.count("(sensitive value)") == 2
