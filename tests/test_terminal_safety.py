"""Nothing printed can be used against the terminal or the log.

Hostile text reaches reconciler from manifests (descriptions, public key comments), from the
cloud (descriptions, fingerprints, error messages, request ids: a hostile or broken server)
and from the environment (credentials with a pasted newline). Every command that prints is
run against such text, in text, Markdown, JSON and ``--debug``, and its stdout and stderr
are searched for raw control bytes and bidi overrides; the escaped form must be visible.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import keys
from reconciler.cli import main
from reconciler.emulator.server import Emulator
from reconciler.env import Env
from reconciler.errors import UsageError
from reconciler.redact import scrub
from reconciler.settings import ProviderFlags, resolve_api_settings
from reconciler.state.codec import checksum
from reconciler.state.crypto import KeySource
from reconciler.textsafe import (
    code_fence,
    is_printable,
    markdown_code,
    markdown_text,
    printable,
)
from tests.clihelp import Cli, Result

# Raw bytes that must never reach a terminal: C0 but \t and \n, DEL, C1, and the bidi controls.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
                    "\u202a-\u202e\u2066-\u2069]")
OSC_TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J"
HYPERLINK = "\x1b]8;;http://evil.example/\x07click\x1b]8;;\x07"
HOSTILE = f"deploy {OSC_TITLE} {CLEAR} \u202eevil \x85 \x7f"
RFC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea"


def assert_terminal_safe(text: str, where: str) -> None:
    found = UNSAFE.search(text)
    assert found is None, f"{where}: raw {found.group()!r} at {found.start()}: " \
        f"{text[max(0, found.start() - 80):found.start() + 40]!r}"


def assert_safe(result: Result, where: str) -> None:
    assert_terminal_safe(result.out, f"{where} (stdout)")
    assert_terminal_safe(result.err, f"{where} (stderr)")


# -- the escaping function ---------------------------------------------------------------------


@given(st.text())
def test_printable_leaves_nothing_unsafe_and_is_idempotent(text: str) -> None:
    shown = printable(text)
    assert UNSAFE.search(shown) is None and "\n" not in shown and "\t" not in shown
    assert printable(shown) == shown
    kept = printable(text, multiline=True)
    assert UNSAFE.search(kept) is None
    assert kept.count("\n") == text.count("\n")


def test_printable_shows_what_it_escaped() -> None:
    assert printable(HOSTILE) == ("deploy \\x1b]0;pwned\\x07 \\x1b[2J \\u202eevil \\x85 \\x7f")
    assert printable("plain text, ünïcødé and 鍵") == "plain text, ünïcødé and 鍵"
    assert printable("a\r\nb") == "a\\x0d\\x0ab"
    assert printable("a\r\nb", multiline=True) == "a\\x0d\nb"


def test_markdown_cells_and_fences_cannot_be_broken_out_of() -> None:
    assert markdown_code("SHA256:ab+/c=") == "`SHA256:ab+/c=`"
    cell = markdown_code("x` | <img src=x onerror=alert(1)> | `y")
    assert "|" not in cell.replace("\\|", "") and "<" not in cell
    body = "a\n````\nb\n``````"
    fence = code_fence(body)
    assert len(fence) == 7 and fence not in body


def _outside_code_spans(md: str) -> str:
    """``md`` without its code spans (a run of N backticks to the next run of exactly N), and
    without what a backslash escapes: the text where Markdown would still act."""
    out, i = [], 0
    while i < len(md):
        if md[i] == "\\":
            i += 2
            continue
        if md[i] == "`":
            n = len(md[i:]) - len(md[i:].lstrip("`"))
            close = re.search(f"(?<!`){'`' * n}(?!`)", md[i + n:])
            if close is not None:
                i += n + close.end()
                continue
        out.append(md[i])
        i += 1
    return "".join(out)


LIVE = re.compile(r"@|://|(?<!\S)www\.", re.IGNORECASE)


def test_mentions_and_links_in_comment_text_are_inert() -> None:
    shown = markdown_text("server @org/security runs https://evil.example/x?a|b, mail "
                          "bob@example.com or www.evil.example")
    assert shown == ("server `@org/security` runs `https://evil.example/x?a\\|b,` mail "
                     "`bob@example.com` or `www.evil.example`")
    assert markdown_text("a `@x` b") == "a `` `@x` `` b"


@given(st.text(alphabet=st.sampled_from(list("@:/w.`| \\ab<&\x1b\u00a0"))) | st.text())
def test_no_mention_or_link_is_left_live(text: str) -> None:
    shown = markdown_text(text)
    assert LIVE.search(_outside_code_spans(shown)) is None, shown
    assert UNSAFE.search(shown) is None


# -- credentials from the environment ----------------------------------------------------------

CONTROL_CHARS = st.sampled_from(
    ["\n", "\r", "\r\n", "\t", "\x00", "\x1b", "\x07", "\x7f", "\x85", "\x9b", " ", "\u00a0",
     "\u2028", "\u202e", "é"])
HEX = st.text(alphabet="0123456789abcdef", min_size=12, max_size=24)
VARIABLES = ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_SECURITY_TOKEN",
             "HW_ACCESS_KEY", "HW_SECRET_KEY", "HW_SECURITY_TOKEN")


def _environ(variable: str, value: str) -> dict[str, str]:
    family = "HW_" if variable.startswith("HW_") else "HUAWEICLOUD_SDK_"
    names = {"HW_": ("HW_ACCESS_KEY", "HW_SECRET_KEY"),
             "HUAWEICLOUD_SDK_": ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK")}[family]
    return {names[0]: "A" * 20, names[1]: "s" * 40, variable: value}


@settings(max_examples=150, deadline=None)
@given(variable=st.sampled_from(VARIABLES), head=HEX, bad=CONTROL_CHARS, tail=HEX,
       where=st.sampled_from(["inside", "end", "start"]))
def test_a_credential_with_a_control_character_is_refused_without_showing_it(
    variable: str, head: str, bad: str, tail: str, where: str
) -> None:
    value = {"inside": head + bad + tail, "end": head + tail + bad, "start": bad + head + tail}
    value_text = value[where]
    flags = ProviderFlags(endpoint="http://127.0.0.1:1", project_id="p" * 32)
    with pytest.raises(UsageError) as info:
        resolve_api_settings(flags, _environ(variable, value_text), None)
    message = str(info.value)
    assert variable in message
    assert head not in message and tail not in message and "position" not in message
    assert is_printable(message)


@pytest.mark.parametrize("variable", ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                      "OBS_ACCESS_KEY_ID"])
def test_s3_backend_credentials_are_checked_too(variable: str) -> None:
    from reconciler.model import S3Location
    from reconciler.state.s3io import make_client

    prefix = variable.split("_")[0]
    environ = {f"{prefix}_ACCESS_KEY_ID": "AKIAEXAMPLEEXAMPLE",
               f"{prefix}_SECRET_ACCESS_KEY": "secretsecretsecret0123",
               variable: "token0123456789abcdef\n"}
    with pytest.raises(UsageError) as info:
        make_client(S3Location(bucket="b", key="k", endpoint="http://127.0.0.1:1"),
                    environ=environ)
    assert variable in str(info.value) and "0123456789abcdef" not in str(info.value)


@pytest.mark.parametrize("value", ["correct horse\n", "pass\x1bword", "tab\there"])
def test_a_passphrase_with_a_control_character_is_refused(value: str) -> None:
    source = KeySource(environ={"RECONCILER_PASSPHRASE": value}, notice=lambda _: None)
    with pytest.raises(UsageError) as info:
        source.resolve(None)
    assert "RECONCILER_PASSPHRASE" in str(info.value)
    assert value.strip() not in str(info.value)


def test_a_passphrase_may_hold_spaces_and_letters() -> None:
    source = KeySource(environ={"RECONCILER_PASSPHRASE": "ünïcødé correct horse"},
                       notice=lambda _: None)
    assert source.resolve(None).id


@pytest.mark.parametrize("variable", ["HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_SECURITY_TOKEN"])
def test_cli_refuses_a_pasted_newline_before_any_request_even_with_debug(
    emulator: Emulator, tmp_path: Path, variable: str
) -> None:
    token = "tok" + "e" * 40 + "n"
    cli = Cli(emulator, tmp_path, extra_env={"HUAWEICLOUD_SDK_SECURITY_TOKEN": token})
    cli.environ[variable] = cli.environ.get(variable, token) + "\n"
    cli.write("keypairs:\n  - name: web\n")
    result = cli("--debug", "plan", str(cli.manifests))
    assert result.code == 1
    assert f"Error: {variable} contains a line break" in result.err
    assert "Traceback" not in result.text and "internal error" not in result.text
    assert emulator.counters()["total"] == 0
    assert emulator.sk not in result.text and token not in result.text


# -- the internal-error path -------------------------------------------------------------------


def test_debug_traceback_of_an_internal_error_is_scrubbed_of_every_secret(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, passphrase = "securitytoken" + "Q" * 30, "my state passphrase 42"
    private = keys.generate_keypair("ed25519").private_key.reveal()
    cli = Cli(emulator, tmp_path, extra_env={"HUAWEICLOUD_SDK_SECURITY_TOKEN": token,
                                             "RECONCILER_PASSPHRASE": passphrase})
    del cli.environ["RECONCILER_KEY_FILE"]
    cli.write("keypairs:\n  - name: web\n")

    def broken_refresh(api: Any) -> Any:
        detail = {"sk": emulator.sk, "token": token, "key": private}
        raise RuntimeError(f"defect with {emulator.sk} / {token} / {passphrase} / {private!r} "
                           f"/ {detail} / {OSC_TITLE}")

    monkeypatch.setattr("reconciler.refresh.refresh", broken_refresh)
    result = cli("--debug", "plan", str(cli.manifests))
    assert result.code == 1
    assert "internal error, please report it" in result.err
    assert "Traceback" in result.err and "RuntimeError: defect with (sensitive value)" in result.err
    for secret in (emulator.sk, emulator.ak, token, passphrase, private.splitlines()[1]):
        assert secret not in result.text
    assert "PRIVATE KEY" not in result.text
    assert_safe(result, "internal error under --debug")
    assert "\\x1b]0;pwned\\x07" in result.err


def test_scrub_catches_private_key_blocks_even_escaped_in_a_repr() -> None:
    private = keys.generate_keypair("rsa-2048").private_key.reveal()
    for text in (private, repr(private), private[:200]):
        assert "PRIVATE KEY" not in scrub(f"before {text} after")


# -- text from the manifest and the cloud ------------------------------------------------------


@pytest.fixture()
def kps(emulator: Emulator, tmp_path: Path) -> Cli:
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write(
        "keypairs:\n"
        "  - name: web\n"
        '    description: "deploy \\e]0;pwned\\a \\e[2J \\u202eevil \\x85 \\x7f"\n'
        "  - name: alice\n"
        f'    public_key: "{RFC_KEY} evil\\e]0;x\\a\\u2066"\n'
        "  - name: bob\n"
    )
    return cli


def test_hostile_manifest_and_cloud_text_is_escaped_in_every_command(
    kps: Cli, emulator: Emulator
) -> None:
    m = str(kps.manifests)
    runs: dict[str, Result] = {"validate": kps("validate", m, globals_=False)}
    for fmt in ("text", "markdown"):
        runs[f"plan {fmt}"] = kps("--debug", "plan", m, "--format", fmt)
    runs["plan json"] = kps("plan", m, "--format", "json")
    # bob exists in the cloud with a hostile description; import adopts it into state.
    assert kps.client().create_keypair(name="bob").remote.name == "bob"
    emulator.store.update("bob", description=f"cloud {HYPERLINK} {CLEAR}")
    runs["import"] = kps("--debug", "import", "bob", m)
    assert runs["import"].code == 0, runs["import"].text
    runs["state show bob"] = kps("state", "show", "bob")  # before apply sets its description
    runs["output bob"] = kps("output", "bob")
    runs["apply"] = kps("--debug", "apply", "--auto-approve", m)
    assert runs["apply"].code == 0, runs["apply"].text
    # The cloud changes outside reconciler: a hostile fingerprint.
    emulator.store.update("alice", fingerprint=f"\x1b]0;fp\x07{CLEAR}|<b>`x`")
    for fmt in ("text", "markdown"):
        runs[f"drift plan {fmt}"] = kps("--debug", "plan", m, "--format", fmt)
    runs["drift plan json"] = kps("plan", m, "--format", "json")
    for name in ("web", "alice"):
        runs[f"output {name}"] = kps("output", name)
        runs[f"output {name} json"] = kps("output", name, "--json")
        runs[f"state show {name}"] = kps("state", "show", name)
    runs["state list"] = kps("state", "list")
    for where, result in runs.items():
        assert_safe(result, where)
    # The escaped form is visible (plan values are JSON-quoted, as Terraform shows them).
    assert "\\u001b]0;pwned\\u0007" in runs["plan text"].out
    assert "\\u202eevil \\x85 \\x7f" in runs["plan text"].out
    assert "\\u001b]8;;http://evil.example/\\u0007click" in runs["state show bob"].out
    assert "\\u001b]0;fp\\u0007" in runs["drift plan text"].out
    assert "\\x1b]0;x\\x07" in runs["output alice"].out
    # JSON keeps the real value, valid and exact.
    doc = json.loads(runs["plan json"].out)
    (web,) = [c for c in doc["resource_changes"] if c["name"] == "web"]
    assert web["change"]["after"]["description"] == HOSTILE
    assert json.loads(runs["output alice json"].out)["public_key"].endswith("\x1b]0;x\x07\u2066")


def test_state_pull_and_the_state_file_hold_no_raw_controls(kps: Cli) -> None:
    """A description with a C1 control and a bidi override is stored and pulled as its JSON
    escape: the same value (pull then push reads back identically), never the raw bytes."""
    m = str(kps.manifests)
    assert kps("apply", "--auto-approve", m).code == 0
    assert kps.state.read_bytes().isascii(), "the state file holds raw non-ASCII text"
    pulled = kps("state", "pull")
    assert pulled.code == 0, pulled.text
    assert_safe(pulled, "state pull")
    assert pulled.out.isascii() and "\\u202eevil \\u0085" in pulled.out
    doc = json.loads(pulled.out)
    assert doc["keypairs"]['keypair.web["default"]']["description"] == HOSTILE
    copy = kps.root / "pulled.json"
    copy.write_text(pulled.out)
    pushed = kps("state", "push", "--force", str(copy))  # the same serial: forced
    assert pushed.code == 0, pushed.text
    again = json.loads(kps("state", "pull").out)
    assert again["keypairs"] == doc["keypairs"] and again["lineage"] == doc["lineage"]
    assert kps("plan", "--detailed-exitcode", m).code == 0, "the pushed state is not the same"


def test_state_pull_escapes_a_state_written_with_raw_text(kps: Cli) -> None:
    """Files written before the state was ASCII-only hold the characters raw; they still
    verify (checksum and MAC are over the canonical form) and pull escapes them."""
    assert kps("apply", "--auto-approve", str(kps.manifests)).code == 0
    raw = json.dumps(json.loads(kps.state.read_text()), indent=2, ensure_ascii=False) + "\n"
    assert "\u202e" in raw and "\x85" in raw
    kps.state.write_text(raw)
    listed = kps("state", "list")
    assert listed.code == 0 and "unverified" not in listed.err.lower(), listed.text
    pulled = kps("state", "pull")
    assert pulled.code == 0, pulled.text
    assert_safe(pulled, "state pull")
    assert json.loads(pulled.out) == json.loads(raw)


def test_markdown_plan_cannot_be_broken_out_of_by_state_text(kps: Cli) -> None:
    m = str(kps.manifests)
    assert kps("apply", "--auto-approve", m).code == 0
    # Someone who can write the state puts Markdown and HTML in a fingerprint; alice is then
    # taken out of the manifests, so the plan's table shows the recorded fingerprint.
    doc = json.loads(kps.state.read_text())
    doc["keypairs"]['keypair.alice["default"]']["fingerprint_md5"] = "ab | <img src=x> ```` \u202e"
    doc["checksum"] = checksum(doc)  # a checksum guards against accidents, not attackers
    kps.state.write_text(json.dumps(doc))
    kps.write("keypairs:\n  - name: web\n  - name: bob\n")
    # A pull request's plan job holds no state key: it reads the state unverified, says so,
    # and must still render what it read harmlessly (with the key, the edit is refused).
    del kps.environ["RECONCILER_KEY_FILE"]
    result = kps("plan", m, "--format", "markdown")
    assert result.code == 0, result.text
    assert "unverified" in result.text
    assert_safe(result, "markdown plan")
    (row,) = [line for line in result.out.splitlines() if line.startswith("| `-`")]
    assert row.count("|") - row.count("\\|") == 5, row  # four cells, nothing more
    table = result.out.split("<details>")[0]
    assert "<img" not in table and "&lt;img" in table
    opening = next(line for line in result.out.splitlines() if line.endswith("diff"))
    fence = opening.removesuffix("diff")
    assert len(fence) >= 5 and result.out.count("\n" + fence + "\n") == 1


def test_validate_diagnostics_quote_manifest_values_escaped(kps: Cli) -> None:
    kps.write(
        "keypairs:\n"
        '  - name: "bad\\e[2Jname"\n'
        '    public_key: "ssh-ed25519 AAAA\\e]0;x\\a"\n'
        '    surprise\\e[31m: 1\n',
        name="bad.yaml")
    result = kps("validate", str(kps.manifests), globals_=False)
    assert result.code == 1
    assert_safe(result, "validate")
    assert "bad.yaml" in result.err


# -- a hostile server's error messages ---------------------------------------------------------


class _Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps({"error_code": f"KPS.{CLEAR}0001",
                           "error_msg": f"denied {HYPERLINK} {CLEAR} \u202egnp.exe"}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Request-Id", "rid\x1b[2J\x07")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def hostile_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("debug", [False, True])
def test_server_error_text_with_escape_sequences_is_shown_escaped(
    tmp_path: Path, hostile_server: str, debug: bool
) -> None:
    (tmp_path / "k.yaml").write_text("apiVersion: reconciler/v1\nkind: KeyPairs\n"
                                     "keypairs:\n  - name: web\n")
    out, err = io.StringIO(), io.StringIO()
    environ = {"HUAWEICLOUD_SDK_AK": "A" * 20, "HUAWEICLOUD_SDK_SK": "s" * 40,
               "HOME": str(tmp_path), "RECONCILER_KEY_FILE": str(tmp_path / "key")}
    argv = [*(["--debug"] if debug else []), "plan", str(tmp_path / "k.yaml"), "--endpoint",
            hostile_server, "--project-id", "p" * 32, "--api", "kps",
            "--state", str(tmp_path / "s.json")]
    code = main(argv, Env(stdin=io.StringIO(), stdout=out, stderr=err, environ=environ,
                          cwd=tmp_path))
    result = Result(code, out.getvalue(), err.getvalue())
    assert code == 1
    assert_safe(result, "plan against a hostile server")
    assert "\\x1b]8;;http://evil.example/\\x07click" in result.err
    assert "\\u202egnp.exe" in result.err and "HTTP 403" in result.err
    assert "s" * 40 not in result.text


# -- the emulator and malformed bodies ---------------------------------------------------------

MALFORMED = {
    "nested 5,000 deep": b'{"keypair":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "objects 5,000 deep": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "nested 40 deep": b'{"keypair":{"name":"n","x":' + b"[" * 40 + b"]" * 40 + b"}}",
    "invalid UTF-8": b'{"keypair":{"name":"\xff\xfe"}}',
    "UTF-16": '{"keypair":{"name":"u16"}}'.encode("utf-16"),
    "byte order mark": b'\xef\xbb\xbf{"keypair":{"name":"bom"}}',
    "huge integer": b'{"keypair":{"name":"a","x":' + b"9" * 5000 + b"}}",
    "huge float": b'{"keypair":{"name":"a","x":1e999999}}',
    "NaN": b'{"keypair":{"name":"a","x":NaN}}',
    "duplicate keys": b'{"keypair":{"name":"a"},"keypair":{"name":"b"}}',
    "lone surrogate": b'{"keypair":{"name":"q","public_key":"ssh-ed25519 \\ud800"}}',
    "a list": b"[1, 2]",
    "a string": b'"keypair"',
    "a number": b"5",
    "null": b"null",
    "not JSON": b"hello <xml/>",
    "truncated": b'{"keypair":{"name":"a"',
    "name not a string": b'{"keypair":{"name":["a"]}}',
    "key_protection not an object": b'{"keypair":{"name":"z","key_protection":"x"}}',
}


@pytest.mark.parametrize("what", sorted(MALFORMED))
@pytest.mark.parametrize("api", ["v2", "v2.1", "kps"])
def test_emulator_answers_a_malformed_body_with_a_4xx_in_the_api_shape(
    emulator: Emulator, capfd: pytest.CaptureFixture[str], api: str, what: str
) -> None:
    from tests.test_emulator_http import BASES, Client

    client = Client(emulator)
    for method, path in (("POST", BASES[api]), ("PUT", BASES[api] + "/x")):
        resp = client.call(method, path, raw=MALFORMED[what])
        assert 400 <= resp.status_code < 500, (method, resp.status_code, resp.text[:200])
        body = resp.json()
        if api == "kps":
            assert set(body) == {"error_code", "error_msg"}, body
            message = body["error_msg"]
        else:
            ((key, inner),) = body.items()
            assert key in ("badRequest", "overLimit"), key
            assert set(inner) == {"message", "code"} and inner["code"] == resp.status_code
            message = inner["message"]
        assert len(message) < 200  # says what is wrong, never echoes the body
    assert emulator.counters()["internal_errors"] == 0
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out


def test_emulator_refuses_a_body_over_the_cap_with_413(emulator: Emulator) -> None:
    from reconciler.emulator.server import MAX_BODY_BYTES
    from tests.test_emulator_http import BASES, Client

    big = json.dumps({"keypair": {"name": "big", "x": "a" * MAX_BODY_BYTES}}).encode()
    resp = Client(emulator).call("POST", BASES["kps"], raw=big)
    assert resp.status_code == 413 and set(resp.json()) == {"error_code", "error_msg"}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_emulator_never_answers_junk_with_a_500(emulator: Emulator, raw: bytes) -> None:
    from tests.test_emulator_http import BASES, Client

    resp = Client(emulator).call("POST", BASES["v2.1"], raw=b'{"keypair":' + raw + b"}")
    assert resp.status_code < 500, resp.text
    assert emulator.counters()["internal_errors"] == 0


def test_one_commands_secrets_do_not_blank_words_out_of_the_next_ones() -> None:
    """Commands run one after another in a process start over: a passphrase "wrong" of the
    first is not scrubbed from the messages of the second, which never had it."""
    from reconciler.redact import register_environment, scrub

    register_environment({"RECONCILER_PASSPHRASE": "wrong"})
    assert scrub("the wrong key") == "the (sensitive value) key"
    register_environment({})
    assert scrub("the wrong key") == "the wrong key"
