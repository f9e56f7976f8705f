"""Bad input through the real CLI (DESIGN section 9): each gives a clear error, exit 1, no
traceback, no API write, and leaves the state and its neighbours byte-for-byte unchanged.

A valid state is made first by a real apply. Then ``plan`` and ``apply --auto-approve`` run
with one bad input each: the manifests of ``tests/manifests/bad/`` (whose diagnostics
``test_manifest_bad`` pins; here they run against a live state), the further ones in
``tests/bad_inputs/manifests/``, the ones that must not be committed (a private key, a 50 MB
file, random bytes; written at test time), and damaged state files and wrong keys.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.emulator.server import Emulator
from reconciler.keys import generate_keypair
from reconciler.state.codec import checksum
from tests.clihelp import HEADER, Cli, Result
from tests.reliability_support import assert_clean
from tests.test_manifest_bad import EXPECTED as KNOWN_BAD
from tests.test_manifest_bad import matches

HERE = Path(__file__).parent
KNOWN = HERE / "manifests" / "bad"
CORPUS = HERE / "bad_inputs" / "manifests"
GOOD = """keypairs:
  - name: web
  - name: ci
    generate: ed25519
  - name: alice
    public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKwIjAMYc6uhQM4LzeXgHN/O/kezk2t2iqOT16iKzSCu"
"""

# corpus case -> what stderr must say (one piece per problem)
CORPUS_EXPECTED: dict[str, list[str]] = {
    "credentials": [
        'ak: unknown key "ak"', 'sk: unknown key "sk"',
        'provider.security_token: unknown key', 'backend.s3.access_key: unknown key',
        'backend.s3.secret_key: unknown key', 'keypairs[0].HUAWEICLOUD_SDK_SK: unknown key',
        "credentials never belong in a manifest",
    ],
    "duplicate_keys": ["a.yaml:5:5: error: invalid YAML: duplicate key 'name'"],
    "invalid_keys_more": [
        "keypairs[0].public_key: not a valid public key: the ssh-ed25519 key data is invalid",
        "keypairs[1].public_key: not a valid public key: the key data is not a ssh-rsa key",
        "keypairs[2].public_key: not a valid public key: the key data is not a "
        "ecdsa-sha2-nistp384 key",
        "keypairs[3].public_key: not a valid public key: expected `TYPE BASE64 [COMMENT]`",
        "keypairs[4].public_key: not a valid public key: expected exactly one line",
        "keypairs[5].public_key: not a valid public key: expected exactly one line",
        'keypairs[6].public_key_file: the file "rsa8192.pub" is not a valid public key: '
        "RSA key of 8192 bits",
        "keypairs[7].public_key: not a valid certificate",
    ],
    "key_files": [
        'keypairs[0].public_key_file: "/dev/zero" is not a regular file',
        'keypairs[1].public_key_file: "/dev/urandom" is not a regular file',
        'keypairs[2].public_key_file: "." is not a regular file',
        "keypairs[3].public_key_file: the file \"../../../../../../../../etc/hostname\" is not a "
        "valid public key",
    ],
    "merge_bomb": ["a.yaml:3:12: error: aliases expand to more than 10,000 nodes"],
    "names": [
        'keypairs[0].name: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa..." is not a valid name',
        'keypairs[1].name: "../../etc/passwd" is not a valid name',
        'keypairs[2].name: "" is not a valid name',
        'keypairs[3].name: "wéb" is not a valid name',
        'keypairs[4].name: "web\\u0000" is not a valid name',
    ],
    "tab_indent": ["a.yaml:4:", "error: invalid YAML: "],  # the parser's own words are its own
    "unsafe_tags": ["a.yaml:4:11: error: invalid YAML: unsupported tag "
                    "'tag:yaml.org,2002:python/object/apply:os.getpid'"],
    "utf16": ["a.yaml:1:4: error: this is a binary file, not YAML"],
    "wrong_types_everywhere": [
        "a.yaml:4:3: error: keypairs: expected a list, got a mapping",
        "b.yaml:3:11: error: provider: expected a mapping, got a list",
        "b.yaml:5:11: error: keypairs[0].name: expected a string, got nothing (null)",
        "b.yaml:7:15: error: keypairs[1].generate: a list is not supported",
        "b.yaml:8:22: error: keypairs[1].prevent_destroy: expected true or false, got a number",
        "b.yaml:9:11: error: keypairs[1].type: true is not supported",
        "b.yaml:11:17: error: keypairs[2].public_key: expected a string, got a number",
        "b.yaml:13:21: error: keypairs[3].key_protection: expected a mapping, got a string",
        "b.yaml:14:19: error: keypairs[3].rotate_after: expected a string, got a list",
        "c.yaml:1:1: error: not a reconciler manifest",
        "d.yaml:1:1: error: not a reconciler manifest",
        "e.yaml:1:1: error: not a reconciler manifest",
    ],
}
SECRETS_IN_CORPUS = ("HPUAZXCVBNMASDFGHJKL", "cR3dS3cr3t", "tOk3nV4lu3", "HPUAQAZWSXEDCRFVTGBY",
                     "bUck3tS3cr3t", "k3yp41rS3cr3t")


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file beside the state (state, backup, journal, lock, key), by name."""
    return {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}


@pytest.fixture()
def cli(emulator: Emulator, tmp_path: Path) -> Cli:
    """A valid state made by a real apply, in sync with the emulated cloud."""
    c = Cli(emulator, tmp_path)
    c.write(GOOD)
    applied = c("apply", "--auto-approve", str(c.manifests))
    assert applied.code == 0, applied.text
    return c


def refused(cli: Cli, *paths: str, api: str | None = None,
            mutate: Callable[[Cli], None] | None = None,
            commands: tuple[tuple[str, ...], ...] = (("plan",), ("apply", "--auto-approve")),
            ) -> list[Result]:
    """Run plan and apply with the bad input; both must refuse and change nothing."""
    if api is not None:
        cli.api = api
    if mutate is not None:
        mutate(cli)
    before = snapshot(cli.root)
    writes = cli.writes()
    results = [cli(*command, *paths) for command in commands]
    for r in results:
        assert_clean(r.text)
        assert r.code == 1, r.text
        assert r.err.strip(), "no error message"
        assert "PRIVATE KEY" not in r.text
    assert snapshot(cli.root) == before
    assert cli.writes() == writes
    return results


@pytest.mark.parametrize("case", sorted(KNOWN_BAD))
def test_known_bad_manifests_against_a_live_state(cli: Cli, case: str) -> None:
    api = "v2" if case == "key_protection_v2" else None
    for r in refused(cli, str(KNOWN / case), api=api):
        shown = r.err.replace(f"{KNOWN / case}{os.sep}", "")  # as if run inside the case
        for want in KNOWN_BAD[case]:
            assert any(matches(line, want) for line in shown.splitlines()), r.err


def test_corpus_is_all_expected() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(CORPUS_EXPECTED)


@pytest.mark.parametrize("case", sorted(CORPUS_EXPECTED))
def test_corpus_manifests_against_a_live_state(cli: Cli, case: str) -> None:
    for r in refused(cli, str(CORPUS / case)):
        for want in CORPUS_EXPECTED[case]:
            assert want in r.err, r.err
        for secret in SECRETS_IN_CORPUS:
            assert secret not in r.text


@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa-p256", "rsa-2048"])
def test_private_key_where_a_public_key_belongs(cli: Cli, algorithm: str) -> None:
    private = generate_keypair(algorithm).private_key.reveal()
    as_json = json.dumps(private)  # a YAML double-quoted string
    cli.write(GOOD + f"  - name: pasted\n    public_key: {as_json}\n", name="more.yaml")
    for r in refused(cli, str(cli.manifests)):
        assert "this is a private key, not a public key (not shown)" in r.err
        for line in private.splitlines()[1:-1]:
            assert line[:16] not in r.text


def test_fifty_megabyte_manifest(cli: Cli) -> None:
    big = cli.manifests / "big.yaml"
    chunk = b"  - name: filler\n" * 4096
    with big.open("wb") as fh:
        fh.write(HEADER.encode() + b"keypairs:\n")
        while fh.tell() < 50 * 1024 * 1024:
            fh.write(chunk)
    for r in refused(cli, str(cli.manifests)):
        assert "big.yaml:1:1: error: file is 52,4" in r.err
        assert "manifests are limited to 1,048,576 bytes" in r.err


@pytest.mark.parametrize("seed", range(3))
def test_random_binary_junk(cli: Cli, seed: int) -> None:
    junk = random.Random(seed).randbytes(4096)
    (cli.manifests / "junk.yaml").write_bytes(junk)
    for r in refused(cli, str(cli.manifests)):
        assert "junk.yaml" in r.err and ("binary" in r.err or "UTF-8" in r.err), r.err


# -- damaged state and wrong keys ------------------------------------------------------------

def _rewrite(cli: Cli, change: Callable[[dict[str, object]], None]) -> None:
    """Edit the state document and give it a correct checksum, as a careful forger would."""
    doc = json.loads(cli.state.read_bytes())
    change(doc)
    doc["checksum"] = checksum(doc)
    cli.state.write_text(json.dumps(doc, indent=2))


def _newer(doc: dict[str, object]) -> None:
    """A format newer than any this release reads (format 4, KMS-sealed, is one it reads)."""
    from reconciler.state.codec import FORMAT_VERSION, KMS_FORMAT_VERSION

    doc["format_version"] = max(FORMAT_VERSION, KMS_FORMAT_VERSION) + 1


def _foreign_lineage(doc: dict[str, object]) -> None:
    doc["serial"] = "7"


STATE_DAMAGE: dict[str, tuple[Callable[[Cli], None], str]] = {
    "truncated": (lambda c: c.state.write_bytes(c.state.read_bytes()[:300]),
                  "not valid JSON"),
    "truncated_to_nothing": (lambda c: c.state.write_bytes(b""), "not a valid state file"),
    "garbage": (lambda c: c.state.write_bytes(random.Random(1).randbytes(2000)),
                "not a valid state file"),
    "json_array": (lambda c: c.state.write_bytes(b"[1, 2, 3]"), "not a valid state file"),
    "tampered": (lambda c: c.state.write_bytes(
        c.state.read_bytes().replace(b'keypair.alice[', b'keypair.alicf[', 1)),
        "checksum does not match"),
    "newer_format": (lambda c: _rewrite(c, _newer), "upgrade"),
    "wrong_type_with_checksum": (lambda c: _rewrite(c, _foreign_lineage), "serial"),
    "damaged_journal": (
        lambda c: c.state.with_name(c.state.name + ".journal").write_bytes(
            b'{"not": "a journal line"}\n' + b"\x00\x01garbage\n" + b"{}\n"),
        "journal"),
}


@pytest.mark.parametrize("damage", sorted(STATE_DAMAGE))
def test_damaged_state_is_refused_and_left_alone(cli: Cli, damage: str) -> None:
    mutate, says = STATE_DAMAGE[damage]
    cli.write(GOOD + "  - name: extra\n")  # an apply would have something to write
    for r in refused(cli, str(cli.manifests), mutate=mutate):
        assert says in r.err, r.err


def _other_key_file(cli: Cli, content: bytes) -> None:
    other = cli.root.parent / f"{cli.root.name}-other.key"
    other.write_bytes(content)
    cli.environ["RECONCILER_KEY_FILE"] = str(other)


@pytest.mark.parametrize(("case", "says"), [
    ("another_key_file", "wrong state encryption key"),
    ("short_key_file", "key file"),
    ("passphrase_for_a_key_file_state", "RECONCILER_KEY_FILE"),
])
def test_wrong_key_is_refused_and_nothing_is_written(cli: Cli, case: str, says: str) -> None:
    def mutate(c: Cli) -> None:
        if case == "another_key_file":
            _other_key_file(c, os.urandom(32))
        elif case == "short_key_file":
            _other_key_file(c, os.urandom(31))
        else:
            c.environ.pop("RECONCILER_KEY_FILE")
            c.environ["RECONCILER_PASSPHRASE"] = "correct horse battery staple"

    # A key that is given is checked by plan too (it verifies the state's MAC with it); it
    # writes nothing either. (Without any key, plan reads the state unverified.)
    cli.write(GOOD + "  - name: extra\n  - name: extra2\n    generate: ed25519\n")
    before = snapshot(cli.root)
    mutate(cli)
    planned = cli("plan", str(cli.manifests))
    assert_clean(planned.text)
    assert planned.code == 1 and says in planned.err, planned.text
    assert snapshot(cli.root) == before
    # Apply checks it before the cloud acts: a cloud-generated pair would lose its key.
    for r in refused(cli, str(cli.manifests), commands=(("apply", "--auto-approve"),)):
        assert says in r.err, r.err
        assert "Creating..." not in r.out


def test_wrong_passphrase_is_refused_and_nothing_is_written(emulator: Emulator,
                                                             tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path)
    cli.environ.pop("RECONCILER_KEY_FILE")
    cli.environ["RECONCILER_PASSPHRASE"] = "the right one"
    cli.write("keypairs:\n  - name: pp\n    generate: ed25519\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.write("keypairs:\n  - name: pp\n    generate: ed25519\n  - name: pp2\n")

    def wrong(c: Cli) -> None:
        c.environ["RECONCILER_PASSPHRASE"] = "the wrong one"

    for r in refused(cli, str(cli.manifests), mutate=wrong,
                     commands=(("apply", "--auto-approve"),)):
        assert "wrong state encryption key" in r.err and "RECONCILER_PASSPHRASE" in r.err, r.err
        assert "the wrong one" not in r.text and "the right one" not in r.text
    cli.environ["RECONCILER_PASSPHRASE"] = "the right one"
    assert cli("output", "pp", "--private-key").code == 0  # the state is still good
