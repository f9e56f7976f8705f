"""Keys: fingerprints and generated pairs agree with ssh-keygen; sizes and private keys refused."""

from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.errors import KeyFormatError
from reconciler.keys import (
    check_public_key,
    fingerprints,
    generate_keypair,
    looks_like_private_key,
    normalise,
    parse_public_key,
    public_key_of,
    same_key,
)
from reconciler.model import GENERATE_ALGORITHMS, Secret

SSH_KEYGEN = shutil.which("ssh-keygen")
needs_ssh_keygen = pytest.mark.skipif(SSH_KEYGEN is None, reason="ssh-keygen is not installed")

RFC8032_TEST1 = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea rfc8032-test1"
)


def _keygen(*args: str) -> str:
    assert SSH_KEYGEN is not None
    done = subprocess.run([SSH_KEYGEN, *args], capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture(scope="module")
def generated() -> dict[str, tuple[str, Secret]]:
    out = {}
    for algorithm in GENERATE_ALGORITHMS:
        key = generate_keypair(algorithm, comment=f"test-{algorithm}")
        out[algorithm] = (key.public_key, key.private_key)
    return out


def test_rfc8032_vector_fingerprints() -> None:
    md5, sha256 = fingerprints(RFC8032_TEST1)
    assert md5 == "cf:07:be:9d:68:ae:65:54:6d:a0:93:c3:6f:bd:0d:82"
    assert sha256 == "SHA256:bbXpuKG6zhzdmnxq256TlqzFBzRl2f6OOg722cYNbU8"


@needs_ssh_keygen
@pytest.mark.parametrize("algorithm", GENERATE_ALGORITHMS)
def test_generated_key_agrees_with_ssh_keygen(
    algorithm: str, generated: dict[str, tuple[str, Secret]], tmp_path: Path
) -> None:
    public, private = generated[algorithm]
    check_public_key(public)  # every generated key is one the cloud accepts
    priv_file = tmp_path / "id"
    fd = os.open(priv_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(private.reveal())
    pub_file = tmp_path / "id.pub"
    pub_file.write_text(public + "\n")

    derived = _keygen("-y", "-f", str(priv_file)).strip()
    assert same_key(derived, public)
    assert public_key_of(private).split()[:2] == public.split()[:2]

    md5, sha256 = fingerprints(public)
    md5_line = _keygen("-l", "-E", "md5", "-f", str(pub_file)).split()
    sha_line = _keygen("-l", "-E", "sha256", "-f", str(pub_file)).split()
    assert md5_line[1] == "MD5:" + md5
    assert sha_line[1] == sha256
    assert int(md5_line[0]) == parse_public_key(public).bits


@needs_ssh_keygen
def test_rfc8032_vector_agrees_with_ssh_keygen(tmp_path: Path) -> None:
    pub_file = tmp_path / "k.pub"
    pub_file.write_text(RFC8032_TEST1 + "\n")
    line = _keygen("-l", "-E", "md5", "-f", str(pub_file)).split()
    assert line[1] == "MD5:" + fingerprints(RFC8032_TEST1)[0]


def _fake_rsa(bits: int) -> str:
    """An OpenSSH ssh-rsa line with a modulus of exactly ``bits`` bits (no key generation)."""

    def mpint(value: int) -> bytes:
        raw = value.to_bytes((value.bit_length() + 8) // 8, "big")
        return struct.pack(">I", len(raw)) + raw

    n = (1 << (bits - 1)) | int.from_bytes(os.urandom(bits // 8), "big") >> 1 | 1
    blob = struct.pack(">I", 7) + b"ssh-rsa" + mpint(65537) + mpint(n)
    return "ssh-rsa " + base64.b64encode(blob).decode() + " test"


@pytest.mark.parametrize("bits", [1024, 8192])
def test_rsa_outside_2048_to_4096_is_refused(bits: int) -> None:
    with pytest.raises(KeyFormatError, match=f"RSA key of {bits} bits"):
        check_public_key(_fake_rsa(bits))


@pytest.mark.parametrize("bits", [2048, 4096])
def test_rsa_within_limits_is_accepted(bits: int) -> None:
    assert check_public_key(_fake_rsa(bits)).bits == bits


def test_public_key_over_1024_bytes_is_refused() -> None:
    long_comment = RFC8032_TEST1 + " " + "x" * 1000
    with pytest.raises(KeyFormatError, match="at most 1024"):
        check_public_key(long_comment)


@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa-p256", "rsa-2048"])
def test_private_key_in_place_of_public_is_refused_without_echo(
    algorithm: str, generated: dict[str, tuple[str, Secret]]
) -> None:
    private = generated[algorithm][1].reveal()
    assert looks_like_private_key(private)
    with pytest.raises(KeyFormatError) as info:
        check_public_key(private)
    message = str(info.value)
    assert "private key" in message
    for line in private.splitlines()[1:-1]:
        assert line not in message
        assert line[:16] not in message


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ssh-ed25519",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "ssh-ed25519 not-base64!!",
        "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINdamAGCsQq31Uv+08lkBzoO4XLz2q",
        RFC8032_TEST1 + "\n" + RFC8032_TEST1,
    ],
)
def test_invalid_public_keys_are_refused(text: str) -> None:
    with pytest.raises(KeyFormatError):
        check_public_key(text)


def test_normalise_drops_comment_and_spacing() -> None:
    assert normalise("  " + RFC8032_TEST1 + "  \n") == " ".join(RFC8032_TEST1.split()[:2])
    assert same_key(RFC8032_TEST1, RFC8032_TEST1.rsplit(" ", 1)[0] + " someone-else")


def test_x509_certificate_from_examples_parses() -> None:
    pem = (Path(__file__).parent.parent / "examples" / "v2" / "legacy-cert.pem").read_text()
    key = check_public_key(pem, key_type="x509")
    assert key.key_type == "x509"
    assert len(fingerprints(pem, key_type="x509")[0].split(":")) == 20  # SHA-1, as Nova
    with pytest.raises(KeyFormatError):
        check_public_key(RFC8032_TEST1, key_type="x509")


def test_ed25519_file_holds_the_library_s_bytes_but_for_its_check_word() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from reconciler.keys import ed25519_openssh

    def body(pem: str) -> bytes:
        lines = pem.splitlines()
        assert lines[0] == "-----BEGIN OPENSSH PRIVATE KEY-----"
        assert lines[-1] == "-----END OPENSSH PRIVATE KEY-----" and pem.endswith("-----\n")
        return base64.b64decode("".join(lines[1:-1]))

    for _ in range(20):
        key = ed25519.Ed25519PrivateKey.generate()
        ours, public = ed25519_openssh(key)
        theirs = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                   serialization.NoEncryption()).decode()
        widths = [len(line) for line in ours.splitlines()[1:-1]]
        assert set(widths[:-1]) == {70} and 0 < widths[-1] <= 70  # as ssh-keygen writes it
        a, b = body(ours), body(theirs)
        at = len(a) - 136  # the two check words open the private section, 136 bytes from the end
        assert a[at:at + 4] == a[at + 4:at + 8]
        assert a[:at] + a[at + 8:] == b[:at] + b[at + 8:]
        loaded = serialization.load_ssh_private_key(ours.encode(), password=None)
        assert isinstance(loaded, ed25519.Ed25519PrivateKey)
        assert loaded.private_bytes_raw() == key.private_bytes_raw()
        assert public == key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


_ONE = generate_keypair("ed25519").public_key
_TWO = generate_keypair("ecdsa-p256").public_key


def _spelled(draw: st.DrawFn) -> str:
    """A public line as a cloud or a person might write it: one of two keys, the type or
    blob sometimes altered, with any spacing and comment."""
    kind, blob = draw(st.sampled_from([_ONE, _TWO])).split()[:2]
    kind = draw(st.sampled_from([kind, "ssh-rsa", "ssh-ed25519", ""]))
    blob = draw(st.sampled_from([blob, blob[:-4] + "AAAA", blob + "=", "not-base64"]))
    gap = draw(st.sampled_from([" ", "  ", "\t", " \n "]))
    comment = draw(st.sampled_from(["", " me@host", "  two words", "\t#"]))
    return draw(st.sampled_from(["", " "])) + kind + gap + blob + comment


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_same_key_is_what_normalise_says(data: st.DataObject) -> None:
    a, b = data.draw(st.composite(_spelled)()), data.draw(st.composite(_spelled)())
    assert same_key(a, b) == (normalise(a) == normalise(b)), (a, b)
