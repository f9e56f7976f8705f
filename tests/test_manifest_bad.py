"""Broken manifests: each gives exactly the expected diagnostics, at the right place, exit 1.

Each case is a directory under ``tests/manifests/bad/``; cases that must not be committed
(a private key, a huge file) are written at test time.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.env import Env
from reconciler.keys import generate_keypair

BAD = Path(__file__).parent / "manifests" / "bad"
HEADER = "apiVersion: reconciler/v1\nkind: KeyPairs\n"

# case -> the first line of every diagnostic, in order (a prefix of it, for long ones)
EXPECTED: dict[str, list[str]] = {
    "bad_name": [
        'a.yaml:5:11: error: keypairs[1].name: "web deploy" is not a valid name: '
        'use 1-64 letters, digits, "_" or "-"',
    ],
    "duplicate_names": [
        'b.yaml:5:11: error: keypairs[1].name: "web" is already declared at a.yaml:4:11',
    ],
    "two_providers": [
        "b.yaml:4:1: error: provider: a second provider block (the first is at a.yaml:3:1)",
    ],
    "two_backends": [
        "a.yaml:8:1: error: backend: a second backend block (the first is at a.yaml:3:1)",
        'a.yaml:9:7: error: backend.s3: missing required key "key"',
    ],
    "two_sources": [
        "a.yaml:6:5: error: keypairs[0].public_key: use at most one of generate, public_key "
        "and public_key_file (found generate and public_key)",
    ],
    "unknown_key": [
        'a.yaml:5:3: error: provider.ak: unknown key "ak"',
        'a.yaml:6:3: error: provider.sk: unknown key "sk"',
        'a.yaml:9:5: error: keypairs[0].descripton: unknown key "descripton"',
    ],
    "wrong_types": [
        "a.yaml:4:11: error: keypairs[0].name: expected a string, got a number",
        "a.yaml:5:22: error: keypairs[0].prevent_destroy: expected true or false, got a string",
        "a.yaml:6:19: error: keypairs[0].rotate_after: expected a string, got a number",
        "a.yaml:7:5: error: keypairs[1]: expected a mapping, got a string",
    ],
    "key_protection_v2": [
        "a.yaml:6:5: error: keypairs[0].key_protection: key_protection is not supported by api v2",
    ],
    "description_v21": [
        "a.yaml:5:5: error: keypairs[0].description: description is supported only by api kps "
        "(the api in use is v2.1)",
        "a.yaml:6:5: error: keypairs[0].scope: scope is supported only by api kps",
    ],
    "public_key_file_missing": [
        'a.yaml:5:22: error: keypairs[0].public_key_file: "keys/alice.pub" does not exist',
    ],
    "private_key_file_missing": [
        'a.yaml:9:25: error: keypairs[0].key_protection.private_key_file: "secrets/escrow" '
        "does not exist",
        "a.yaml:13:7: error: keypairs[1].key_protection.private_key_file: private_key_file "
        "needs public_key or public_key_file",
    ],
    "invalid_keys": [
        'a.yaml:5:22: error: keypairs[0].public_key_file: the file "rsa1024.pub" is not a valid '
        "public key: RSA key of 1024 bits; the cloud accepts 2048 to 4096 bits",
        "a.yaml:7:17: error: keypairs[1].public_key: not a valid public key: "
        "the key data is not valid base64",
        "a.yaml:9:17: error: keypairs[2].public_key: not a valid public key: "
        "public key is 1081 bytes; the cloud accepts at most 1024",
        "a.yaml:11:17: error: keypairs[3].public_key: not a valid public key: "
        "unsupported key type 'ssh-dss'",
    ],
    "malformed_yaml": [
        "a.yaml:6:{col}: error: invalid YAML: ",
    ],
    "alias_bomb": [
        "bomb.yaml:3:50: error: aliases expand to more than 10,000 nodes",
    ],
    "binary_junk": [
        "junk.yaml:3:1: error: this is a binary file, not YAML",
    ],
    "not_utf8": [
        "a.yaml:4:14: error: the file is not valid UTF-8",
    ],
    "non_manifest": [
        "docker-compose.yml:1:1: error: not a reconciler manifest",
    ],
    "wrong_version": [
        'a.yaml:1:13: error: apiVersion: unsupported apiVersion "reconciler/v2"',
        'a.yaml:5:7: error: kind: kind must be KeyPairs, got "KeyPair"',
    ],
    "bad_rotate_after": [
        'a.yaml:5:19: error: keypairs[0].rotate_after: "90 days" is not a valid duration',
        'a.yaml:7:19: error: keypairs[1].rotate_after: "0d" is not a valid duration',
        'a.yaml:9:19: error: keypairs[2].rotate_after: "3m" is not a valid duration',
        "a.yaml:13:5: error: keypairs[3].rotate_after: rotate_after replaces the key pair, "
        "which prevent_destroy forbids",
        "a.yaml:16:5: error: keypairs[4].rotate_after: rotate_after cannot rotate an imported "
        "public key",
    ],
    "line_breaks": [
        'a.yaml:4:11: error: provider.region: "cn-north-4" ends with a line break',
        'a.yaml:7:11: error: keypairs[0].name: "web" ends with a line break',
        'a.yaml:9:19: error: keypairs[0].rotate_after: "90d" ends with a line break',
    ],
    "schema_rules": [
        'a.yaml:4:5: error: keypairs[0]: missing required key "name"',
        'a.yaml:6:15: error: keypairs[1].generate: "ed448" is not supported; use one of ed25519,',
        "a.yaml:9:19: error: keypairs[2].key_protection.encryption: encryption type kms needs "
        "kms_key_name or kms_key_id",
        "a.yaml:12:5: error: keypairs[3].generate: a type x509 key pair cannot be generated here",
        "a.yaml:14:5: error: keypairs[4].description: description is supported only by api kps",
        "a.yaml:14:18: error: keypairs[4].description: is 256 characters long; at most 255",
    ],
}


def validate(cwd: Path, *argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Env(stdin=io.StringIO(), stdout=out, stderr=err, environ=environ or {}, cwd=cwd)
    code = main(["validate", *argv], env)
    return code, out.getvalue(), err.getvalue()


def first_lines(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    return [ln for ln in lines if not ln.startswith("  ") and not ln.startswith("Error: ")]


def matches(line: str, want: str) -> bool:
    """``line`` starts with ``want``, where ``{col}`` in ``want`` stands for a column number:
    where a parser's own error lands within a line is the parser's business, the line is ours."""
    pattern = r"\d+".join(re.escape(part) for part in want.split("{col}"))
    return re.match(pattern, line) is not None


def assert_diagnostics(code: int, out: str, err: str, expected: list[str]) -> None:
    assert code == 1
    assert out == ""
    assert "Traceback" not in err and "internal error" not in err
    got = first_lines(err)
    assert len(got) == len(expected), err
    for line, want in zip(got, expected, strict=True):
        assert matches(line, want), f"\n got: {line}\nwant: {want}"
    count = len(expected)
    assert err.rstrip().endswith(f"Error: {count} problem{'s' if count != 1 else ''} found.")


def test_every_case_directory_has_expectations() -> None:
    assert sorted(p.name for p in BAD.iterdir() if p.is_dir()) == sorted(EXPECTED)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_manifest(case: str) -> None:
    code, out, err = validate(BAD / case, ".")
    assert_diagnostics(code, out, err, EXPECTED[case])


def test_paths_are_shown_as_given_relative_to_cwd() -> None:
    code, _, err = validate(BAD.parent, "bad/bad_name")
    assert code == 1
    assert err.startswith("bad/bad_name/a.yaml:5:11: error: keypairs[1].name:")


def test_credentials_in_unknown_keys_are_not_echoed() -> None:
    _, _, err = validate(BAD / "unknown_key", ".")
    assert "HPUAXQWERTYUIOPASDFG" not in err
    assert "s3cr3t" not in err
    assert "HUAWEICLOUD_SDK_AK" in err  # says what to do instead


@pytest.mark.parametrize("algorithm", ["ed25519", "rsa-2048"])
def test_private_key_pasted_is_named_and_not_echoed(tmp_path: Path, algorithm: str) -> None:
    private = generate_keypair(algorithm).private_key.reveal()
    indented = "\n".join("      " + ln for ln in private.splitlines())
    (tmp_path / "id").write_text(private)
    (tmp_path / "a.yaml").write_text(
        HEADER + "keypairs:\n"
        "  - name: inline\n"
        "    public_key: |\n" + indented + "\n"
        "  - name: from-file\n"
        "    public_key_file: id\n"
    )
    code, out, err = validate(tmp_path, ".")
    file_line = 7 + len(private.splitlines())
    assert_diagnostics(code, out, err, [
        "a.yaml:5:17: error: keypairs[0].public_key: this is a private key, not a public key "
        "(not shown)",
        f'a.yaml:{file_line}:22: error: keypairs[1].public_key_file: the file "id" holds a '
        "private key, not a public key (not shown)",
    ])
    for line in private.splitlines()[1:-1]:
        assert line[:12] not in err


def test_too_large_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:
        fh.write(HEADER.encode())
        fh.truncate(50 * 1024 * 1024)  # sparse: 50 MB on paper, nothing on disk
    code, out, err = validate(tmp_path, "big.yaml")
    assert_diagnostics(code, out, err, [
        "big.yaml:1:1: error: file is 52,428,800 bytes; manifests are limited to 1,048,576 bytes",
    ])


def test_huge_public_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "huge.pub").write_bytes(b"ssh-ed25519 " + b"A" * 200_000)
    (tmp_path / "a.yaml").write_text(
        HEADER + "keypairs:\n  - name: x\n    public_key_file: huge.pub\n")
    code, out, err = validate(tmp_path)
    assert_diagnostics(code, out, err, [
        'a.yaml:5:22: error: keypairs[0].public_key_file: "huge.pub" is larger than 64 KiB',
    ])


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, out, err = validate(tmp_path, "nope.yaml", "empty")
    assert_diagnostics(code, out, err, [
        "error: no manifest files (*.yaml, *.yml) in empty",
        "error: nope.yaml: no such file or directory",
    ])


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    (tmp_path / "deep.yaml").write_text(HEADER + "x: " + "[" * 5000 + "]" * 5000 + "\n")
    code, out, err = validate(tmp_path)
    assert_diagnostics(code, out, err, ["deep.yaml:3:{col}: error: nested deeper than 32 levels"])


def test_api_flag_and_environment_override_the_provider(tmp_path: Path) -> None:
    case = BAD / "description_v21"
    assert validate(case, ".", "--api", "kps")[0] == 0
    assert validate(case, ".", environ={"RECONCILER_API": "kps"})[0] == 0
    code, _, err = validate(case, ".", "--api", "v2", environ={"RECONCILER_API": "kps"})
    assert code == 1 and "(the api in use is v2)" in err
    code, _, err = validate(BAD / "key_protection_v2", ".", "--api", "v2.1")
    assert code == 0, err
    code, _, err = validate(case, ".", environ={"RECONCILER_API": "v3"})
    assert code == 1 and "RECONCILER_API" in err


def test_unreadable_directory_entry_is_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()  # a directory named like a manifest is skipped by name
    (tmp_path / "a.yaml").write_text(HEADER)
    code, out, _ = validate(tmp_path)
    assert code == 0 and out == "Success! 0 key pairs in 1 file are valid.\n"
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.yaml")
        code, _, err = validate(tmp_path, "pipe.yaml")
        assert_diagnostics(code, "", err, ["pipe.yaml:1:1: error: pipe.yaml is not a regular file"])


def test_many_alike_key_pairs_still_report_each_problem(tmp_path: Path) -> None:
    items = [f"  - {{name: k{i}, generate: ed25519}}" for i in range(200)]
    items[50] = "  - {name: k50, generate: ed25519, sk: x}"
    items[120] = "  - {name: 'k 120', generate: ed25519}"
    items[150] = "  - {name: k150, generate: ed448}"
    (tmp_path / "a.yaml").write_text(HEADER + "keypairs:\n" + "\n".join(items) + "\n")
    code, out, err = validate(tmp_path)
    assert_diagnostics(code, out, err, [
        'a.yaml:54:36: error: keypairs[50].sk: unknown key "sk"',
        'a.yaml:124:12: error: keypairs[120].name: "k 120" is not a valid name',
        'a.yaml:154:28: error: keypairs[150].generate: "ed448" is not supported',
    ])


def test_a_file_name_holding_a_nul_is_a_diagnostic_not_a_traceback(tmp_path: Path) -> None:
    """No file can have a NUL in its name; YAML can spell one (found by the fuzzer)."""
    (tmp_path / "a.yaml").write_text(
        HEADER + 'keypairs:\n  - name: a\n    public_key_file: "x\\0y"\n'
        '  - name: b\n    public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKwIjAMYc6uhQM4LzeXgHN/O'
        '/kezk2t2iqOT16iKzSCu"\n    key_protection: {private_key_file: "\\0", '
        'encryption: {type: default}}\n')
    code, out, err = validate(tmp_path, "--api", "kps")
    assert_diagnostics(code, out, err, [
        'a.yaml:5:22: error: keypairs[0].public_key_file: "x\\u0000y" is not a valid file name',
        "a.yaml:8:40: error: keypairs[1].key_protection.private_key_file: \"\\u0000\" is not a "
        "valid file name",
    ])
    assert "NUL" in err


def test_a_nul_in_a_custody_file_name_beside_a_null_public_key_is_a_diagnostic(
        tmp_path: Path) -> None:
    """The fuzzer's case: `public_key: null` (so the key file is never read) and a custody
    file name holding a NUL, which resolving the path used to raise on."""
    (tmp_path / "a.yaml").write_text(
        HEADER + 'keypairs:\n  - public_key: null\n    key_protection: {private_key_file: "\\0"}\n')
    code, out, err = validate(tmp_path, "--api", "kps")
    assert code == 1 and out == "" and "Traceback" not in err and "internal error" not in err
    assert "is not a valid file name (it holds a NUL character)" in err, err
