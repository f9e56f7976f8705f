"""KMS answers that no honest KMS sends, through a proxy in front of the emulator (real
signatures, real data keys): a fresh data key is only used once KMS has unwrapped its cipher
text back to it and the cipher text fits a state file, so a state is never sealed under a key
that its own key block cannot open; an unwrapped key of the wrong length, another key, or a
wrong digest is refused with nothing written; escapes in KMS errors are shown escaped."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from clihelp import Cli, Result
from mutating_proxy import Rule, json_mutation, mutating_proxy
from test_emulator_kms import make_key

from reconciler.emulator.server import Emulator

KEYS = "keypairs:\n  - name: web\n    generate: ed25519\n"


def _cli(emulator: Emulator, root: Path) -> Cli:
    cli = Cli(emulator, root)
    del cli.environ["RECONCILER_KEY_FILE"]
    cli.write(f"encryption:\n  provider: kms\n  kms:\n    key_id: {make_key(emulator, 's')}\n"
              + KEYS)
    return cli


def _run(cli: Cli, endpoint: str, *argv: str, tail: tuple[str, ...] = ()) -> Result:
    return cli(*argv, str(cli.manifests), *tail, "--state", str(cli.state), "--endpoint",
               endpoint, "--project-id", cli.emulator.project_id, "--api", "v2.1",
               globals_=False)


def _refused_with_nothing_written(cli: Cli, result: Result, *needles: str) -> None:
    assert result.code == 1, result.text
    assert "Traceback" not in result.text
    for needle in needles:
        assert needle in result.err, result.err
    assert not cli.state.exists()
    assert not cli.state.with_name(cli.state.name + ".journal").exists()
    assert cli.writes() == 0  # no key pair was made whose private key would be lost


def _altered(doc: dict[str, Any]) -> dict[str, Any]:
    text = doc["cipher_text"]
    return {**doc, "cipher_text": text[:-8] + ("0" * 8 if text[-8:] != "0" * 8 else "1" * 8)}


def test_a_cipher_text_that_does_not_unwrap_is_refused_before_anything_is_sealed(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    rule = Rule("POST", "create-datakey$", mutate=json_mutation(_altered))
    with mutating_proxy(emulator.endpoint, [rule]) as proxy:
        result = _run(cli, proxy.endpoint, "apply", "--auto-approve")
    assert rule.hits == 1
    _refused_with_nothing_written(cli, result, "unwrap the state's data key",
                                  "Nothing was decrypted or written")


def test_a_cipher_text_too_long_for_a_state_file_is_refused(emulator: Emulator,
                                                           tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    rule = Rule("POST", "create-datakey$", mutate=json_mutation(
        lambda doc: {**doc, "cipher_text": doc["cipher_text"] + "ab" * 5000}))
    with mutating_proxy(emulator.endpoint, [rule]) as proxy:
        result = _run(cli, proxy.endpoint, "apply", "--auto-approve")
    _refused_with_nothing_written(cli, result, "cipher text a state file cannot hold",
                                  "nothing was decrypted or written")


def test_unwrapped_keys_of_the_wrong_length_or_another_key_are_refused(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    assert _run(cli, emulator.endpoint, "apply", "--auto-approve").code == 0
    original = cli.state.read_bytes()

    def answering(key: bytes, **more: str) -> Rule:
        return Rule("POST", "decrypt-datakey$", mutate=json_mutation(lambda doc: {
            **doc, "data_key": key.hex(), "datakey_dgst": hashlib.sha256(key).hexdigest(),
            **more}))

    for rule, needle in ((answering(os.urandom(16), datakey_length="16"), "not 256 bits"),
                         (answering(os.urandom(32)), "is not the key its id names"),
                         (answering(os.urandom(32), datakey_length="33"),
                          "datakey_length: it is not data_key's length")):
        with mutating_proxy(emulator.endpoint, [rule]) as proxy:
            result = _run(cli, proxy.endpoint, "output", "web", tail=("--private-key",))
        assert result.code == 1 and rule.hits == 1, result.text
        assert needle in result.err and "PRIVATE KEY" not in result.out, result.err
        assert "Traceback" not in result.text
        assert cli.state.read_bytes() == original


def test_escapes_in_a_kms_error_are_shown_escaped(emulator: Emulator, tmp_path: Path) -> None:
    cli = _cli(emulator, tmp_path)
    assert _run(cli, emulator.endpoint, "apply", "--auto-approve").code == 0
    body = json.dumps({"error_code": "KMS.0303\x1b]0;owned\x07",
                       "error_msg": "bad \x1b[2J\u202e text"}).encode()
    rule = Rule("POST", "decrypt-datakey$", respond=lambda _path: (400, body))
    with mutating_proxy(emulator.endpoint, [rule]) as proxy:
        result = _run(cli, proxy.endpoint, "output", "web", tail=("--private-key",))
    assert result.code == 1, result.text
    assert "\x1b" not in result.text and "\u202e" not in result.text and "\x07" not in result.text
    assert "\\x1b[2J" in result.err
