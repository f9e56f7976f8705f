"""The host a user sees is the host that gets the credentials: listeners that record connections.

TCP listeners on 127.0.0.1 and 127.0.0.2 (port 0) record every connection and the bytes sent
to them; every ``connect()`` and name lookup the CLI makes in this process is recorded too.
The real CLI runs with crafted ``--endpoint`` / ``--backend-endpoint`` values that two parsers
would read as two different hosts: each must be a clear error, and no byte may reach any host.
A recording proxy shows that ``HTTPS_PROXY`` works (over CONNECT to the TLS emulator), is
named by ``--debug`` without its password, and that ``NO_PROXY`` and loopback bypass it.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from reconciler.emulator.server import Emulator
from tests.clihelp import Cli, Result
from tests.reliability_support import assert_clean

BODY = "keypairs:\n  - name: web\n    generate: ed25519\n"
PROXIED_HOST = "api.proxied.test"  # resolvable only through the recorder below
PROXY_THREAD = "recording-proxy"


@dataclass
class Listener:
    """Accepts connections, records what arrives, answers 418 so a client gives up at once."""

    host: str
    sock: socket.socket = field(init=False)
    received: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind((self.host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"listener-{self.host}",
                                        daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data and len(data) < 65536:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    conn.sendall(b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
                except OSError:
                    pass
                self.received.append(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@dataclass
class Recorder:
    """Every connect() and name lookup made in this process (but the test proxy's own)."""

    connects: list[tuple[str, int]] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)


@pytest.fixture()
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    seen = Recorder()
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        if not threading.current_thread().name.startswith(PROXY_THREAD):
            seen.connects.append((str(address[0]), int(address[1])))
        real_connect(self, address)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not threading.current_thread().name.startswith(PROXY_THREAD):
            seen.lookups.append(name)
        # an /etc/hosts entry of the test's own, for the name the TLS certificate carries
        return real_getaddrinfo("127.0.0.1" if name == PROXIED_HOST else host, port,
                                *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return seen


@pytest.fixture()
def listeners() -> Iterator[tuple[Listener, Listener]]:
    a, b = Listener("127.0.0.1"), Listener("127.0.0.2")
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _after_credentials(err: str) -> str:
    """stderr without its first line when that line names the credentials' source."""
    first, _, rest = err.partition("\n")
    return rest if first.startswith("Credentials: ") else err


def _plan(cli: Cli, *extra: str) -> Result:
    return cli("plan", str(cli.manifests), "--project-id", cli.emulator.project_id,
               *extra, globals_=False)


def _assert_nothing_reached(listeners: tuple[Listener, ...], recorder: Recorder) -> None:
    time.sleep(0.2)  # a late connection would have been accepted by now
    assert [listener.received for listener in listeners] == [[] for _ in listeners]
    assert recorder.connects == [], recorder.connects
    assert recorder.lookups == [], recorder.lookups


# Each: a URL two parsers read as two hosts (or a resolver expands), and what the error says.
API_TRICKS: list[tuple[Callable[[int, int], str], str]] = [
    (lambda a, b: f"http://127.0.0.1:{a}\\@127.0.0.2:{b}/", "backslash"),
    (lambda a, b: f"http://127.0.0.1:{a}\\.127.0.0.2:{b}", "backslash"),
    (lambda a, b: f"http://127.0.0.2:{b}#@127.0.0.1:{a}", "query or fragment"),
    (lambda a, b: f"http://127.0.0.2:{b}?@127.0.0.1:{a}", "query or fragment"),
    (lambda a, b: f"http://127.0.0.1:{a}@127.0.0.2:{b}", "before '@'"),
    (lambda a, b: f"http://user:secret@127.0.0.2:{b}", "before '@'"),
    (lambda a, b: f"http://127.0.0.1:{a} @127.0.0.2:{b}", "whitespace"),
    (lambda a, b: f"http://127.0.0.2:{b}\n", "whitespace"),
    (lambda a, b: f"http://127.0.0.1:{a}\x00.127.0.0.2:{b}", "control character"),
    (lambda a, b: f"http://127.0.0.1\u3002:{a}", "non-ASCII"),
    (lambda a, b: f"http://127.1:{a}", "IPv4"),
    (lambda a, b: f"http://2130706433:{a}", "IPv4"),
    (lambda a, b: f"http://0x7f.0.0.1:{a}", "does not start with a letter"),
    (lambda a, b: f"http://0177.0.0.1:{a}", "IPv4"),
    (lambda a, b: f"http://127.0.0.1:0{a}", "the port"),
    (lambda a, b: f"http://127.0.0.1:+{a}", "the port"),
    (lambda a, b: f"http://127.0.0.1:{a}:{b}", "more than one ':'"),
    (lambda a, b: f"http://[127.0.0.1]:{a}", "not an IPv6 address"),
    (lambda a, b: f"http://127.0.0.1%2e:{a}", "not a DNS name"),
    (lambda a, b: f"http://state.example:{a}", "refusing plain http://"),
]


@pytest.mark.parametrize(("trick", "reason"), API_TRICKS)
@pytest.mark.parametrize("how", ["flag", "environment", "manifest"])
def test_a_crafted_api_endpoint_is_refused_before_any_byte_is_sent(
    emulator: Emulator, tmp_path: Path, listeners: tuple[Listener, Listener],
    recorder: Recorder, trick: Callable[[int, int], str], reason: str, how: str,
) -> None:
    endpoint = trick(listeners[0].port, listeners[1].port)
    cli = Cli(emulator, tmp_path)
    extra = ["--state", str(cli.state)]
    if how == "manifest":
        cli.write(f"provider: {{endpoint: {json.dumps(endpoint)}}}\n" + BODY)
        source = "provider.endpoint in "
    else:
        cli.write(BODY)
        if how == "flag":
            extra += ["--endpoint", endpoint]
            source = "--endpoint: "
        else:
            cli.environ["RECONCILER_ENDPOINT"] = endpoint
            source = "RECONCILER_ENDPOINT: "
    r = _plan(cli, *extra)
    assert_clean(r.text)
    assert r.code == 1, r.text
    if how == "manifest" and reason == "whitespace":
        # the schema's pattern catches whitespace first: an error naming the file and line
        assert "keys.yaml:3:" in r.err and "provider.endpoint" in r.err, r.err
    else:
        assert r.err.startswith(f"Error: {source}"), r.err
        assert reason in r.err and "https://" in r.err, r.err
    assert "secret" not in r.text
    _assert_nothing_reached(listeners, recorder)
    assert emulator.keypair_count() == 0 and not cli.state.exists()


def test_the_listener_sees_a_plain_endpoint_so_the_checks_above_can_fail(
    emulator: Emulator, tmp_path: Path, listeners: tuple[Listener, Listener], recorder: Recorder,
) -> None:
    a, b = listeners
    cli = Cli(emulator, tmp_path)
    cli.write(BODY)
    r = _plan(cli, "--state", str(cli.state), "--endpoint", f"http://127.0.0.1:{a.port}/")
    assert r.code == 1 and "418" in r.err, r.text
    time.sleep(0.2)
    assert len(a.received) == 1 and a.received[0].startswith(b"GET /v2.1/"), a.received
    assert f"Host: 127.0.0.1:{a.port}".encode() in a.received[0]
    assert b.received == []
    assert recorder.connects == [("127.0.0.1", a.port)]


BACKEND_TRICKS: list[tuple[Callable[[int, int], str], str]] = [
    (lambda a, b: f"http://state.example:{a}", "refusing plain http://"),
    (lambda a, b: f"http://obs.cn-north-4.myhuaweicloud.com:{a}", "refusing plain http://"),
    (lambda a, b: f"http://127.0.0.1:{a}\\@state.example:{b}", "backslash"),
    (lambda a, b: f"https://127.0.0.1:{a}\\@127.0.0.2:{b}", "backslash"),
    (lambda a, b: f"http://127.0.0.1:{a}@127.0.0.2:{b}", "before '@'"),
    (lambda a, b: f"http://127.0.0.2:{b}#@127.0.0.1:{a}", "query or fragment"),
    (lambda a, b: f"http://127.1:{a}", "IPv4"),
    (lambda a, b: f"http://127.0.0.1:{a}/..", "the path"),
]


@pytest.mark.parametrize(("trick", "reason"), BACKEND_TRICKS)
@pytest.mark.parametrize("how", ["flag", "environment", "manifest"])
def test_a_crafted_backend_endpoint_is_refused_before_any_byte_is_sent(
    emulator: Emulator, tmp_path: Path, listeners: tuple[Listener, Listener],
    recorder: Recorder, trick: Callable[[int, int], str], reason: str, how: str,
) -> None:
    endpoint = trick(listeners[0].port, listeners[1].port)
    cli = Cli(emulator, tmp_path, extra_env={"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
                                             "AWS_SECRET_ACCESS_KEY": "not-a-real-secret",
                                             "AWS_SESSION_TOKEN": "session-token-value"})
    extra = ["--endpoint", emulator.endpoint]
    if how == "manifest":
        cli.write("backend:\n  s3: {bucket: team, key: k.json, "
                  f"endpoint: {json.dumps(endpoint)}}}\n" + BODY)
        source = "backend.s3.endpoint in "
    else:
        cli.write(BODY)
        extra += ["--backend", "s3://team/k.json"]
        if how == "flag":
            extra += ["--backend-endpoint", endpoint]
            source = "--backend-endpoint: "
        else:
            cli.environ["RECONCILER_BACKEND_ENDPOINT"] = endpoint
            source = "RECONCILER_BACKEND_ENDPOINT: "
    r = _plan(cli, *extra)
    assert_clean(r.text)
    assert r.code == 1, r.text
    # the first line names the credentials' source (never a secret); then the refusal
    assert _after_credentials(r.err).startswith(f"Error: {source}"), r.err
    assert reason in r.err, r.err
    assert "session-token-value" not in r.text and "not-a-real-secret" not in r.text
    _assert_nothing_reached(listeners, recorder)


def test_a_loopback_backend_endpoint_is_connected_to_as_parsed(
    emulator: Emulator, tmp_path: Path, listeners: tuple[Listener, Listener], recorder: Recorder,
) -> None:
    """The positive control for the backend: the listener named is the one reached."""
    pytest.importorskip("boto3", reason="the s3 backend needs boto3 (pip install -e '.[test]')")
    a, b = listeners
    cli = Cli(emulator, tmp_path, extra_env={"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
                                             "AWS_SECRET_ACCESS_KEY": "not-a-real-secret",
                                             "HTTPS_PROXY": f"http://127.0.0.2:{b.port}"})
    cli.write(BODY)
    r = _plan(cli, "--endpoint", emulator.endpoint, "--backend", "s3://team/k.json",
              "--backend-endpoint", f"HTTP://LOCALHOST:{a.port}/", "--debug")
    assert r.code == 1, r.text
    assert f"state backend http://localhost:{a.port}: no proxy (a loopback host" in r.err, r.err
    time.sleep(0.2)
    assert a.received and all(f"localhost:{a.port}".encode() in d for d in a.received)
    assert b.received == []
    assert {port for _, port in recorder.connects} == {a.port}, recorder.connects
    assert "not-a-real-secret" not in r.text


# -- proxies ----------------------------------------------------------------------------


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, PROXIED_HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(PROXIED_HOST), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class TlsEmulator:
    emulator: Emulator
    ca_bundle: Path


@pytest.fixture()
def tls_emulator(tmp_path: Path) -> Iterator[TlsEmulator]:
    cert, key = _certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    emu = Emulator(host="127.0.0.1", port=0, keygen="ed25519")
    emu.start()
    server = emu._server
    assert server is not None
    plain_accept = server.get_request

    def accept_tls() -> tuple[ssl.SSLSocket, object]:
        conn, address = plain_accept()
        return context.wrap_socket(conn, server_side=True), address

    server.get_request = accept_tls  # type: ignore[method-assign]
    try:
        yield TlsEmulator(emu, cert)
    finally:
        emu.stop()


@dataclass
class ConnectProxy:
    """An HTTP proxy that records each request head and tunnels CONNECT to one upstream port."""

    upstream: int
    heads: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=PROXY_THREAD, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True,
                             name=f"{PROXY_THREAD}-conn").start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            self.heads.append(head)
            if not head.startswith(b"CONNECT "):
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            with socket.create_connection(("127.0.0.1", self.upstream)) as up:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                pump = threading.Thread(target=_pipe, args=(up, conn), daemon=True,
                                        name=f"{PROXY_THREAD}-pump")
                pump.start()
                _pipe(conn, up)
                pump.join(timeout=5)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture()
def proxy(tls_emulator: TlsEmulator) -> Iterator[ConnectProxy]:
    p = ConnectProxy(upstream=tls_emulator.emulator.port)
    try:
        yield p
    finally:
        p.close()


def _proxied_cli(tls: TlsEmulator, root: Path, **environ: str) -> Cli:
    cli = Cli(tls.emulator, root, extra_env={"REQUESTS_CA_BUNDLE": str(tls.ca_bundle),
                                             **environ})
    cli.write(BODY)
    return cli


def test_https_proxy_carries_the_requests_and_debug_names_it_without_the_password(
    tls_emulator: TlsEmulator, proxy: ConnectProxy, tmp_path: Path, recorder: Recorder,
) -> None:
    port = tls_emulator.emulator.port
    cli = _proxied_cli(tls_emulator, tmp_path,
                       HTTPS_PROXY=f"http://ops:pr0xy-pa55@127.0.0.1:{proxy.port}")
    endpoint = f"https://{PROXIED_HOST}:{port}"
    r = _plan(cli, "--state", str(cli.state), "--endpoint", endpoint, "--debug")
    assert r.code == 0 and "Plan: 1 to add" in r.out, r.text
    line = (f"API {endpoint}: through the proxy http://127.0.0.1:{proxy.port} "
            "(from HTTPS_PROXY)")
    assert line in r.err, r.err
    assert "pr0xy-pa55" not in r.text and "ops:" not in r.text
    assert proxy.heads, "the proxy saw nothing"
    auth = base64.b64encode(b"ops:pr0xy-pa55")
    for head in proxy.heads:
        assert head.startswith(f"CONNECT {PROXIED_HOST}:{port} HTTP/1.".encode()), head
        assert b"Proxy-Authorization: Basic " + auth in head, head
    # the CLI connected to the proxy alone, and left the name to it
    assert {address for address in recorder.connects} == {("127.0.0.1", proxy.port)}
    assert PROXIED_HOST not in recorder.lookups


def test_no_proxy_bypasses_the_proxy(
    tls_emulator: TlsEmulator, proxy: ConnectProxy, tmp_path: Path, recorder: Recorder,
) -> None:
    port = tls_emulator.emulator.port
    cli = _proxied_cli(tls_emulator, tmp_path, HTTPS_PROXY=f"127.0.0.1:{proxy.port}",
                       NO_PROXY="localhost,.proxied.test")
    endpoint = f"https://{PROXIED_HOST}:{port}"
    r = _plan(cli, "--state", str(cli.state), "--endpoint", endpoint, "--debug")
    assert r.code == 0 and "Plan: 1 to add" in r.out, r.text
    assert f"API {endpoint}: no proxy (NO_PROXY has '.proxied.test')" in r.err, r.err
    time.sleep(0.2)
    assert proxy.heads == []
    assert recorder.connects and all(a == ("127.0.0.1", port) for a in recorder.connects)


def test_a_loopback_endpoint_never_goes_through_a_proxy(
    emulator: Emulator, tmp_path: Path, listeners: tuple[Listener, Listener], recorder: Recorder,
) -> None:
    a, _ = listeners
    where = f"http://127.0.0.1:{a.port}"
    cli = Cli(emulator, tmp_path, extra_env={"HTTPS_PROXY": where, "HTTP_PROXY": where,
                                             "ALL_PROXY": where, "https_proxy": where,
                                             "http_proxy": where})
    cli.write(BODY)
    r = _plan(cli, "--state", str(cli.state), "--endpoint", emulator.endpoint, "--debug")
    assert r.code == 0 and "Plan: 1 to add" in r.out, r.text
    assert f"API {emulator.endpoint}: no proxy (a loopback host" in r.err, r.err
    time.sleep(0.2)
    assert a.received == []
    assert recorder.connects and all(port == emulator.port for _, port in recorder.connects)


def test_a_malformed_proxy_variable_is_a_clear_error_before_any_connection(
    tls_emulator: TlsEmulator, tmp_path: Path, listeners: tuple[Listener, Listener],
    recorder: Recorder,
) -> None:
    a, b = listeners
    cli = _proxied_cli(tls_emulator, tmp_path,
                       HTTPS_PROXY=f"http://127.0.0.1:{a.port}\\@127.0.0.2:{b.port}")
    r = _plan(cli, "--state", str(cli.state), "--endpoint",
              f"https://{PROXIED_HOST}:{tls_emulator.emulator.port}")
    assert_clean(r.text)
    assert r.code == 1 and r.err.startswith("Error: HTTPS_PROXY: "), r.text
    assert "backslash" in r.err, r.err
    _assert_nothing_reached(listeners, recorder)


@pytest.mark.parametrize("field", ["provider", "backend"])
def test_a_crafted_endpoint_in_a_saved_plan_is_refused_before_any_byte_is_sent(
    emulator: Emulator, tmp_path: Path, listeners: tuple[Listener, Listener], recorder: Recorder,
    field: str,
) -> None:
    """Whoever can write the plan artifact cannot send the apply elsewhere either."""
    a, b = listeners
    cli = Cli(emulator, tmp_path)
    cli.write(BODY)
    saved = tmp_path / "saved.plan"
    made = _plan(cli, "--state", str(cli.state), "--endpoint", emulator.endpoint,
                 "--out", str(saved))
    assert made.code == 0, made.text
    doc = json.loads(saved.read_text())
    crafted = f"http://127.0.0.1:{a.port}\\@127.0.0.2:{b.port}/"
    if field == "provider":
        doc["reconciler"]["provider"]["endpoint"] = crafted
        source = "the saved plan's provider endpoint: "
    else:
        doc["reconciler"]["backend"] = {"bucket": "team", "key": "k.json", "endpoint": crafted,
                                        "region": None}
        source = "the saved plan's backend endpoint: "
    saved.write_text(json.dumps(doc))
    recorder.connects.clear()
    recorder.lookups.clear()
    # no --state: a saved plan's backend is used unless a flag or the environment says otherwise
    where = ["--state", str(cli.state)] if field == "provider" else []
    r = cli("apply", str(saved), *where, globals_=False)
    assert_clean(r.text)
    assert r.code == 1 and r.err.startswith(f"Error: {source}"), r.text
    assert "backslash" in r.err, r.err
    _assert_nothing_reached(listeners, recorder)
    assert emulator.keypair_count() == 0
