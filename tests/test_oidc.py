"""Short-lived credentials: both OIDC logins of the official SDK against the emulator's IAM
and STS, through the real CLI; refusals, expiry and refresh mid-apply, the order of
precedence, the profile file, and no token or secret in any output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import Cli
from hostile_server import Hostile, Servers, redirect, servers, trickle
from oidc_support import (
    AUDIENCE,
    ISSUER,
    Issuer,
    iam_environ,
    iam_settings,
    register,
    sts_environ,
    write_token,
)

from reconciler.api.flavours import make_api
from reconciler.api.protocol import ApiSettings, Credentials
from reconciler.credentials.chain import resolve, resolve_provider
from reconciler.credentials.exchange import (
    AgencyRequest,
    AssumeRole,
    Caller,
    read_token,
    via_assume_role,
    via_identity_provider,
    via_sts,
)
from reconciler.emulator.server import Emulator
from reconciler.errors import ApiError, CredentialError, UsageError
from reconciler.model import Api, Secret

KEYS = "keypairs:\n" + "".join(f"  - name: ci-{i}\n" for i in range(3))
ISSUER_KEY = Issuer.new()


def _cli(emulator: Emulator, root: Path, environ: dict[str, str]) -> Cli:
    cli = Cli(emulator, root)
    for name in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK"):
        cli.environ.pop(name)
    cli.environ.update(environ)
    cli.write(KEYS)
    return cli


def _secrets_absent(text: str, *values: str) -> None:
    for value in values:
        assert value not in text
    assert not re.search(r"eyJ[\w-]+\.[\w-]+\.[\w-]+", text), "a JWT was printed"


def _temporary_secrets(emulator: Emulator) -> list[str]:
    keys = emulator.iam._keys.values()
    return [k.secret for k in keys] + [k.security_token for k in keys]


# -- both paths, end to end --------------------------------------------------------------------

def test_iam_identity_provider_plan_and_apply(emulator: Emulator, tmp_path: Path) -> None:
    register(emulator, ISSUER_KEY)
    token = ISSUER_KEY.token()
    write_token(tmp_path / "id-token", token)
    cli = _cli(emulator, tmp_path / "run", iam_environ(emulator, tmp_path / "id-token"))
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert plan.err.splitlines()[0] == (
        f"Credentials: OIDC via IAM identity provider github at {emulator.endpoint}.")
    applied = cli("apply", "--auto-approve", "--debug", str(cli.manifests))
    assert applied.code == 0, applied.text
    assert "Apply complete! Resources: 3 added" in applied.out
    assert emulator.keypair_count() == 3
    assert emulator.iam.counts["id_token"] >= 1 and emulator.iam.counts["security_token"] >= 1
    _secrets_absent(plan.text + applied.text, token, *_temporary_secrets(emulator))


def test_sts_agency_plan_and_apply(emulator: Emulator, tmp_path: Path) -> None:
    registered = register(emulator, ISSUER_KEY)
    token = ISSUER_KEY.token()
    write_token(tmp_path / "id-token", token)
    cli = _cli(emulator, tmp_path / "run", sts_environ(emulator, registered, tmp_path / "id-token"))
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert plan.err.splitlines()[0] == (f"Credentials: OIDC via STS agency "
                                        f"{registered['agencies'][0]} at {emulator.endpoint}.")
    applied = cli("apply", "--auto-approve", "--debug", str(cli.manifests))
    assert applied.code == 0, applied.text
    assert emulator.keypair_count() == 3 and emulator.iam.counts["assume_with_oidc"] >= 1
    again = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert again.code == 0 and "No changes." in again.out, again.text
    _secrets_absent(plan.text + applied.text + again.text, token, *_temporary_secrets(emulator))


# -- refusals ----------------------------------------------------------------------------------

REFUSALS: dict[str, tuple[dict[str, Any], str]] = {
    "wrong signature": ({"signed_by_another_key": True}, "signature does not verify"),
    "wrong audience": ({"aud": "someone-else"}, "audience (aud)"),
    "wrong issuer": ({"iss": "https://evil.example"}, "issuer (iss)"),
    "expired": ({"lifetime": -30}, "has expired (exp)"),
    "not yet valid": ({"nbf": int(time.time()) + 3600}, "not valid yet"),
    "another repository": ({"repository": "mallory/keys"}, "claim 'repository'"),
    "another branch": ({"ref": "refs/heads/feature"}, "claim 'ref'"),
}


def _refused_token(case: dict[str, Any]) -> str:
    claims = dict(case)
    issuer = Issuer.new() if claims.pop("signed_by_another_key", False) else ISSUER_KEY
    return issuer.token(**claims)


@pytest.mark.parametrize("path", ["iam", "sts"])
@pytest.mark.parametrize("name", list(REFUSALS))
def test_a_refused_id_token_is_a_clear_error(emulator: Emulator, tmp_path: Path, name: str,
                                             path: str) -> None:
    registered = register(emulator, ISSUER_KEY)
    case, reason = REFUSALS[name]
    token = _refused_token(case)
    write_token(tmp_path / "id-token", token)
    environ = (iam_environ(emulator, tmp_path / "id-token") if path == "iam"
               else sts_environ(emulator, registered, tmp_path / "id-token"))
    cli = _cli(emulator, tmp_path / "run", environ)
    result = cli("apply", "--auto-approve", "--debug", str(cli.manifests))
    assert result.code == 1, result.text
    assert "Traceback" not in result.text and "internal error" not in result.text
    error = result.err.split("Error: ", 1)[1]
    who = ("OIDC via IAM identity provider github" if path == "iam"
           else f"OIDC via STS agency {registered['agencies'][0]}")
    assert error.startswith(who), error
    assert reason in error and "identity provider github" in error and "Check " in error
    assert emulator.keypair_count() == 0 and not (cli.root / "reconciler.state.json").exists()
    _secrets_absent(result.text, token)


def test_an_unknown_identity_provider_and_a_missing_token_file(emulator: Emulator,
                                                               tmp_path: Path) -> None:
    register(emulator, ISSUER_KEY)
    write_token(tmp_path / "id-token", ISSUER_KEY.token())
    cli = _cli(emulator, tmp_path / "run",
               iam_environ(emulator, tmp_path / "id-token", idp_id="gitlab"))
    result = cli("plan", str(cli.manifests))
    assert result.code == 1 and "identity provider gitlab" in result.err
    assert "X-Idp-Id" in result.err and "HUAWEICLOUD_SDK_IDP_ID" in result.err
    cli.environ["HUAWEICLOUD_SDK_ID_TOKEN_FILE"] = str(tmp_path / "nowhere")
    cli.environ["HUAWEICLOUD_SDK_IDP_ID"] = "github"
    result = cli("plan", str(cli.manifests))
    assert result.code == 1 and "cannot read the ID token file" in result.err
    assert "id-token: write" in result.err and "Traceback" not in result.text


# -- expiry and refresh ------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["iam", "sts"])
def test_credentials_expire_mid_apply_and_are_refreshed(emulator: Emulator, tmp_path: Path,
                                                        path: str) -> None:
    """Credentials live 1.5 s and each ID token 2 s while the apply takes longer: the
    provider fetches new credentials before the old expire, re-reading the token file that
    the "runner" keeps rewriting; a stale token would be refused."""
    registered = register(emulator, ISSUER_KEY)
    iam_settings(emulator, credential_lifetime_seconds=1.5)
    emulator.set_faults(latency_ms=200)
    token_file = tmp_path / "id-token"
    write_token(token_file, ISSUER_KEY.token(lifetime=2))
    stop = threading.Event()

    def runner() -> None:
        while not stop.wait(0.25):
            write_token(token_file, ISSUER_KEY.token(lifetime=2))

    environ = (iam_environ(emulator, token_file) if path == "iam"
               else sts_environ(emulator, registered, token_file))
    cli = _cli(emulator, tmp_path / "run", environ)
    cli.write("keypairs:\n" + "".join(f"  - name: ci-{i}\n" for i in range(30)))
    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        result = cli("apply", "--auto-approve", "--parallelism", "2", str(cli.manifests))
        took = time.monotonic() - started
    finally:
        stop.set()
        thread.join()
    assert result.code == 0, result.text
    assert emulator.keypair_count() == 30
    exchanges = emulator.iam.counts.get("security_token", 0) + emulator.iam.counts.get(
        "assume_with_oidc", 0)
    assert took > 3 and exchanges >= 3, (took, emulator.iam.summary())
    assert emulator.counters()["rejected_auth"] == 0


def test_expired_temporary_credentials_are_rejected(emulator: Emulator, tmp_path: Path) -> None:
    register(emulator, ISSUER_KEY)
    write_token(tmp_path / "id-token", ISSUER_KEY.token())
    provider = resolve_provider(iam_environ(emulator, tmp_path / "id-token"))
    held = provider.current()
    assert held.security_token is not None

    def client(credentials: Credentials) -> Any:
        return make_api(ApiSettings(api=Api.V21, endpoint=emulator.endpoint,
                                    project_id=emulator.project_id, credentials=credentials,
                                    max_retries=0))

    assert not client(held).list_keypairs().keypairs
    without_token = Credentials(ak=held.ak, sk=held.sk)
    with pytest.raises(ApiError) as missing:
        client(without_token).list_keypairs()
    assert missing.value.status == 401
    iam_settings(emulator, clock_offset_seconds=7 * 3600)  # past the 6 hours IAM granted
    with pytest.raises(ApiError) as expired:
        client(held).list_keypairs()
    assert expired.value.status == 401 and "expired" in str(expired.value)
    assert held.sk.reveal() not in str(expired.value)
    assert held.security_token.reveal() not in str(expired.value)


# -- precedence and the profile file -----------------------------------------------------------

def test_the_order_of_precedence_is_the_sdks(tmp_path: Path) -> None:
    """STS with OIDC > the SDK's environment (IdP, then AK/SK) > HW_* > profile file."""
    profile = tmp_path / "credentials"
    profile.write_text("[basic]\nak = profile-ak-0001\nsk = profile-sk-0001\nproject_id = p1\n")
    write_token(tmp_path / "tok", ISSUER_KEY.token())
    environ = {
        "HUAWEICLOUD_OIDC_PROVIDER_URN": "iam::d:identity-provider:github",
        "HUAWEICLOUD_OIDC_AGENCY_URN": "iam::d:agency:ci",
        "HUAWEICLOUD_OIDC_TOKEN_FILE": str(tmp_path / "tok"),
        "HUAWEICLOUD_SDK_IDP_ID": "github", "HUAWEICLOUD_SDK_ID_TOKEN_FILE": str(tmp_path / "tok"),
        "HUAWEICLOUD_SDK_AK": "sdk-ak-0001", "HUAWEICLOUD_SDK_SK": "sdk-sk-0001",
        "HW_ACCESS_KEY": "tf-ak-0001", "HW_SECRET_KEY": "tf-sk-0001",
        "HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(profile),
    }
    order = []
    for drop in (("HUAWEICLOUD_OIDC_PROVIDER_URN", "HUAWEICLOUD_OIDC_AGENCY_URN"),
                 ("HUAWEICLOUD_SDK_IDP_ID", "HUAWEICLOUD_SDK_ID_TOKEN_FILE"),
                 ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK"),
                 ("HW_ACCESS_KEY", "HW_SECRET_KEY"),
                 ("HUAWEICLOUD_SDK_CREDENTIALS_FILE",)):
        order.append(resolve_provider(environ).source)
        for name in drop:
            del environ[name]
    assert order == [
        "OIDC via STS agency iam::d:agency:ci at https://sts.cn-north-4.myhuaweicloud.com",
        "OIDC via IAM identity provider github at https://iam.myhuaweicloud.com",
        "environment (HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK)",
        "environment (HW_ACCESS_KEY / HW_SECRET_KEY)",
        f"profile file {profile} [basic]",
    ]
    with pytest.raises(UsageError, match="no credentials: set HUAWEICLOUD_SDK_AK"):
        resolve_provider(environ)


@pytest.mark.parametrize(("environ", "message"), [
    ({"HUAWEICLOUD_SDK_IDP_ID": "github"},
     "HUAWEICLOUD_SDK_IDP_ID is set but HUAWEICLOUD_SDK_ID_TOKEN_FILE is not"),
    ({"HUAWEICLOUD_OIDC_PROVIDER_URN": "iam::d:identity-provider:x"},
     "HUAWEICLOUD_OIDC_AGENCY_URN is not set"),
    ({"HUAWEICLOUD_OIDC_PROVIDER_URN": "u", "HUAWEICLOUD_OIDC_AGENCY_URN": "a"},
     "HUAWEICLOUD_OIDC_TOKEN_FILE"),
    ({"HUAWEICLOUD_SDK_IDP_ID": "g", "HUAWEICLOUD_SDK_ID_TOKEN_FILE": "f",
      "HUAWEICLOUD_SDK_IAM_ENDPOINT": "http://iam.example.com"}, "refusing plain http://"),
])
def test_a_half_given_source_is_an_error_not_a_fallback(environ: dict[str, str],
                                                        message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        resolve_provider({**environ, "HUAWEICLOUD_SDK_AK": "AK", "HUAWEICLOUD_SDK_SK": "SK"})


def test_the_profile_file_signs_a_real_run(emulator: Emulator, tmp_path: Path) -> None:
    home = tmp_path / "run"
    (home / ".huaweicloud").mkdir(parents=True)
    (home / ".huaweicloud" / "credentials").write_text(
        f"[basic]\nak = {emulator.ak}\nsk = {emulator.sk}\nproject_id = {emulator.project_id}\n")
    cli = _cli(emulator, home, {})
    result = cli("apply", "--auto-approve", str(cli.manifests))
    assert result.code == 0, result.text
    assert result.err.splitlines()[0] == (
        f"Credentials: profile file {home / '.huaweicloud' / 'credentials'} [basic].")
    assert emulator.sk not in result.text and emulator.keypair_count() == 3
    assert resolve({"HOME": str(home)}).project_id == emulator.project_id


def test_a_profile_file_can_log_in_with_an_identity_provider(emulator: Emulator,
                                                             tmp_path: Path) -> None:
    register(emulator, ISSUER_KEY)
    write_token(tmp_path / "id-token", ISSUER_KEY.token())
    profile = tmp_path / "creds.ini"
    profile.write_text(f"[basic]\nak = UNUSED_AK\nsk = UNUSED_SK\nidp_id = github\n"
                       f"id_token_file = {tmp_path / 'id-token'}\n"
                       f"iam_endpoint = {emulator.endpoint}\n")
    cli = _cli(emulator, tmp_path / "run", {"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(profile)})
    result = cli("plan", str(cli.manifests))
    assert result.code == 0, result.text
    assert "OIDC via IAM identity provider github" in result.err.splitlines()[0]


def test_a_broken_profile_file_names_it(tmp_path: Path) -> None:
    profile = tmp_path / "creds.ini"
    profile.write_text("[default]\nak = A\nsk = B\n")
    with pytest.raises(UsageError, match=r"has no \[basic\] section"):
        resolve_provider({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(profile)})
    with pytest.raises(UsageError, match="cannot read the credentials file"):
        resolve_provider({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(tmp_path / "none")})
    assert ISSUER and AUDIENCE  # the support module's constants are what the IdP trusts


# -- the S3 state backend ----------------------------------------------------------------------

def test_the_s3_backend_signs_with_the_same_temporary_credentials(emulator: Emulator,
                                                                  tmp_path: Path) -> None:
    from test_state_s3_support import new_bucket

    from reconciler.model import S3Location
    from reconciler.state.s3io import make_client

    bucket = new_bucket()
    register(emulator, ISSUER_KEY)
    write_token(tmp_path / "id-token", ISSUER_KEY.token())
    environ = iam_environ(emulator, tmp_path / "id-token")
    api_credentials = resolve_provider(environ).current()
    client = make_client(S3Location(bucket=bucket.name, key="k", endpoint=bucket.endpoint),
                         environ=environ)
    seen: list[dict[str, str]] = []
    client.meta.events.register("before-send.s3", lambda request, **_: seen.append(
        {k.lower(): v.decode() if isinstance(v, bytes) else v
         for k, v in request.headers.items()}))
    client.put_object(Bucket=bucket.name, Key="k", Body=b"{}")
    assert seen, "no request was sent"
    headers = seen[-1]
    assert f"Credential={api_credentials.ak}/" in headers["authorization"]
    assert api_credentials.security_token is not None
    assert headers["x-amz-security-token"] == api_credentials.security_token.reveal()
    # One login serves the API and the bucket: no second exchange.
    assert emulator.iam.counts["security_token"] == 1


# -- the ID token file is a regular file, read to a bound --------------------------------------

ROOT = Path(__file__).parent.parent
TOKEN_VARIABLE = "HUAWEICLOUD_SDK_ID_TOKEN_FILE"


def _read_token(path: Path) -> str:
    return read_token(str(path), origin=TOKEN_VARIABLE,
                      caller=Caller(source="OIDC via IAM identity provider github"))


def test_an_id_token_file_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "id-token"
    os.mkfifo(fifo)
    outcome: list[BaseException | str] = []

    def read() -> None:
        try:
            outcome.append(_read_token(fifo))
        except BaseException as exc:  # recorded for the assertion
            outcome.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(3)
    blocked = thread.is_alive()
    if blocked:  # release the reader: open the FIFO for writing and close it
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
    assert not blocked, "reading a FIFO as the ID token file blocked (no writer: forever)"
    assert outcome and isinstance(outcome[0], CredentialError), outcome
    message = str(outcome[0])
    assert str(fifo) in message and TOKEN_VARIABLE in message and "FIFO" in message


def test_an_id_token_file_that_is_a_device_is_refused_within_bounded_memory(
        tmp_path: Path) -> None:
    """A token file linked to /dev/zero is refused, not read until memory runs out."""
    link = tmp_path / "id-token"
    link.symlink_to("/dev/zero")
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from reconciler.credentials.exchange import Caller, read_token\n"
            "from reconciler.errors import CredentialError\n"
            "try:\n"
            f"    read_token({str(link)!r}, origin='X', caller=Caller(source='s'))\n"
            "except CredentialError as exc:\n"
            "    print('refused:', exc); sys.exit(0)\n"
            "except MemoryError:\n"
            "    print('MemoryError'); sys.exit(3)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "character device" in done.stdout and str(link) in done.stdout


def test_an_oversized_or_odd_id_token_file_is_refused_without_its_content(
        tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_text("eyJsecret." * 10_000)
    with pytest.raises(CredentialError) as refused:
        _read_token(big)
    assert str(big) in str(refused.value) and TOKEN_VARIABLE in str(refused.value)
    assert "eyJsecret" not in str(refused.value) and "larger than" in str(refused.value)
    with pytest.raises(CredentialError, match="directory"):
        _read_token(tmp_path)
    with pytest.raises(CredentialError, match=r"cannot read the ID token file .*nowhere"):
        _read_token(tmp_path / "nowhere")


# -- answers IAM and STS never send: trickled, redirected ---------------------------------------

@pytest.fixture()
def hostile() -> Iterator[Servers]:
    yield from servers()


TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def _exchange(path: str, server: Hostile, caller: Caller) -> None:
    if path == "iam":
        via_identity_provider(iam_endpoint=server.endpoint, idp_id="github", id_token=TOKEN,
                              caller=caller)
    elif path == "agency":  # signed with the base credentials: TOKEN stands for their SK
        role = AssumeRole(agency_name="keys-ops", domain_name="acme-prod", domain_id=None,
                          duration_seconds=3600)
        base = Credentials(ak="BASEAK", sk=Secret(TOKEN), security_token=Secret(TOKEN[::-1]))
        via_assume_role(iam_endpoint=server.endpoint, role=role, base=base, domain_id="d1",
                        caller=caller)
    else:
        request = AgencyRequest(provider_urn="urn:p", agency_urn="urn:a", session_name="ci",
                                duration_seconds=900)
        via_sts(sts_endpoint=server.endpoint, request=request, id_token=TOKEN, caller=caller)


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
@pytest.mark.parametrize("path", ["iam", "sts", "agency"])
def test_a_trickled_exchange_is_cut_off_at_its_deadline(hostile: Servers, path: str,
                                                        headers_too: bool) -> None:
    """A byte every 0.3 s never trips the 30 s read timeout; the exchange's own deadline
    (2 s here, 60 s by default) ends it with an error naming the URL."""
    body = b'{"credential": {}}' + b" " * 40
    server = hostile.start(trickle(body, status=b"201 Created", headers_too=headers_too))
    started = time.monotonic()
    with pytest.raises(CredentialError) as info:
        _exchange(path, server, Caller(source="OIDC test", deadline=2.0))
    assert time.monotonic() - started < 4.5, "the answer was read long past the deadline"
    text = str(info.value)
    assert "within 2 s" in text and server.endpoint in text, text
    _secrets_absent(text, TOKEN, TOKEN[::-1])


@pytest.mark.parametrize("path", ["iam", "sts", "agency"])
def test_a_redirected_exchange_is_refused_not_followed(hostile: Servers, path: str) -> None:
    """A 307 (with a plausible subject token and credentials) is not the login: it names its
    status and where it pointed, and the token never goes there."""
    elsewhere = hostile.start(lambda conn: None)
    body = (b'{"credential": {"access": "AK", "secret": "SK", "securitytoken": "ST", '
            b'"expires_at": "2099-01-01T00:00:00Z"}}')
    server = hostile.start(redirect(elsewhere.endpoint, body, extra=b"X-Subject-Token: T\r\n"))
    with pytest.raises(CredentialError) as info:
        _exchange(path, server, Caller(source="OIDC test", sleep=lambda _: None))
    text = str(info.value)
    assert "HTTP 307, a redirect to host 127.0.0.1" in text, text
    assert not elsewhere.requests and len(server.requests) == 1
    _secrets_absent(text, TOKEN, TOKEN[::-1])
