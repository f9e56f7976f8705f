"""Transport security (DESIGN section 9): TLS certificates are verified unless --insecure is
given, and credentials are never sent over plain http:// to a host that is not loopback.

The emulator is served over TLS with a self-signed certificate made here with
``cryptography``: each accepted connection is wrapped before the handler sees it.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from reconciler.emulator.server import Emulator
from tests.clihelp import Cli, Result
from tests.reliability_support import assert_clean

BODY = "keypairs:\n  - name: web\n  - name: ci\n    generate: ed25519\n"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture()
def tls_emulator(tmp_path: Path) -> Iterator[Emulator]:
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    emu = Emulator(host="127.0.0.1", port=0, keygen="ed25519")
    emu.start()
    server = emu._server
    assert server is not None
    plain_accept = server.get_request

    def accept_tls() -> tuple[ssl.SSLSocket, object]:
        conn, address = plain_accept()
        # a client that refuses the certificate makes this raise OSError: the server skips it
        return context.wrap_socket(conn, server_side=True), address

    server.get_request = accept_tls  # type: ignore[method-assign]
    try:
        yield emu
    finally:
        emu.stop()


def _run(cli: Cli, *argv: str, endpoint: str) -> Result:
    result = cli(*argv, "--state", str(cli.state), "--endpoint", endpoint, "--project-id",
                 cli.emulator.project_id, globals_=False)
    assert_clean(result.text)
    return result


def test_self_signed_certificate_is_refused(tls_emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(tls_emulator, tmp_path / "run")
    cli.write(BODY)
    https = f"https://127.0.0.1:{tls_emulator.port}"
    for argv in (("plan", str(cli.manifests)), ("apply", "--auto-approve", str(cli.manifests))):
        r = _run(cli, *argv, endpoint=https)
        assert r.code == 1, r.text
        assert f"TLS verification failed for {https}" in r.err, r.err
        assert "--insecure" in r.err
    assert tls_emulator.counters()["total"] == 0  # no request got through
    assert tls_emulator.keypair_count() == 0
    assert not cli.state.exists()


def test_insecure_gets_past_the_tls_check(tls_emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(tls_emulator, tmp_path / "run")
    cli.write(BODY)
    https = f"https://127.0.0.1:{tls_emulator.port}"
    m = str(cli.manifests)
    applied = _run(cli, "--insecure", "apply", "--auto-approve", m, endpoint=https)
    assert applied.code == 0, applied.text
    assert "Apply complete! Resources: 2 added" in applied.out
    assert applied.err == ("Credentials: environment (HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK).\n"
                           f"Warning: --insecure: the TLS certificate of {https} is not "
                           "verified.\n")
    again = _run(cli, "plan", "--insecure", "--detailed-exitcode", m, endpoint=https)
    assert again.code == 0 and "No changes." in again.out, again.text
    assert tls_emulator.keypair_count() == 2


def test_a_private_ca_bundle_is_trusted_without_insecure(tls_emulator: Emulator,
                                                         tmp_path: Path) -> None:
    """REQUESTS_CA_BUNDLE names the CA (here, the self-signed certificate itself): verified."""
    cli = Cli(tls_emulator, tmp_path / "run",
              extra_env={"REQUESTS_CA_BUNDLE": str(tmp_path / "cert.pem")})
    cli.write(BODY)
    https = f"https://127.0.0.1:{tls_emulator.port}"
    applied = _run(cli, "apply", "--auto-approve", str(cli.manifests), endpoint=https)
    assert applied.code == 0, applied.text
    assert "Warning" not in applied.err
    assert tls_emulator.keypair_count() == 2


@pytest.mark.parametrize("endpoint", [
    "http://ecs.cn-north-4.myhuaweicloud.com",
    "http://192.0.2.10:8080",
    "http://localhost.example.com",
    "http://[2001:db8::1]",
])
@pytest.mark.parametrize("how", ["flag", "environment", "manifest"])
def test_plain_http_to_a_remote_host_is_refused(emulator: Emulator, tmp_path: Path,
                                                endpoint: str, how: str) -> None:
    cli = Cli(emulator, tmp_path)
    if how == "manifest":
        cli.write(f"provider: {{endpoint: '{endpoint}'}}\n" + BODY)
    else:
        cli.write(BODY)
    argv = ["plan", str(cli.manifests), "--state", str(cli.state),
            "--project-id", emulator.project_id]
    if how == "flag":
        argv += ["--endpoint", endpoint]
    elif how == "environment":
        cli.environ["RECONCILER_ENDPOINT"] = endpoint
    started = time.monotonic()
    r = cli(*argv, globals_=False)
    assert_clean(r.text)
    assert r.code == 1, r.text
    assert "refusing plain http://" in r.err and "use https://" in r.err, r.err
    assert time.monotonic() - started < 5  # refused before any connection was tried
    assert emulator.keypair_count() == 0 and not cli.state.exists()


def test_plain_http_to_loopback_is_accepted(emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path)
    cli.write(BODY)
    endpoint = f"http://localhost:{emulator.port}"
    r = cli("plan", str(cli.manifests), "--state", str(cli.state), "--endpoint", endpoint,
            "--project-id", emulator.project_id, globals_=False)
    assert r.code == 0 and "Plan: 2 to add" in r.out, r.text
