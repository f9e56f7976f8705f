"""State encryption: where the key comes from, key ids, and every tampering refused."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
from test_state_support import PRIVATE_MARK, at, entry, key_env, rewrite, snapshot

from reconciler.errors import StateCorruptError, StateKeyError, UsageError
from reconciler.model import Secret
from reconciler.state.crypto import KeySource, key_id
from reconciler.state.local import LocalStateStore


def _store(path: Path, environ: dict[str, str]) -> LocalStateStore:
    return LocalStateStore(path, environ=environ)


def _make_state(path: Path, environ: dict[str, str], names: tuple[str, ...] = ("a", "b")) -> None:
    store = _store(path, environ)
    with store.lock(operation="apply", timeout=0):
        store.load()
        for name in names:
            store.record(entry(name, store.seal(name, Secret(f"{PRIVATE_MARK}-{name}"))))
        store.commit()


def _unseal(path: Path, environ: dict[str, str], name: str) -> Secret:
    store = _store(path, environ)
    kp = store.load().entry(name)
    assert kp.private_key is not None
    return store.unseal(name, kp.private_key)


def test_key_id_is_a_keyed_hash_prefix() -> None:
    assert key_id(b"\x11" * 32) == key_id(b"\x11" * 32) != key_id(b"\x12" * 32)
    assert len(key_id(b"\x11" * 32)) == 16


def test_passphrase_round_trip_and_kdf_is_fast(tmp_path: Path) -> None:
    env = {"RECONCILER_PASSPHRASE": "correct horse", "HOME": str(tmp_path)}
    path = tmp_path / "s.json"
    started = time.perf_counter()
    _make_state(path, env)
    assert time.perf_counter() - started < 0.5
    doc = json.loads(path.read_text())
    assert doc["key"]["kdf"]["name"] == "scrypt" and doc["key"]["salt"]
    assert "correct horse" not in path.read_text()
    assert _unseal(path, env, "a").reveal() == f"{PRIVATE_MARK}-a"
    assert not (tmp_path / ".config").exists()  # a passphrase needs no key file


def test_wrong_passphrase_names_both_key_ids_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    _make_state(path, {"RECONCILER_PASSPHRASE": "right"})
    before = snapshot(tmp_path)
    store = _store(path, {"RECONCILER_PASSPHRASE": "wrong"})
    state_id = json.loads(path.read_text())["key"]["id"]
    with pytest.raises(StateKeyError) as err, store.lock(operation="apply", timeout=0):
        store.load()
        store.seal("c", Secret("x"))
    message = str(err.value)
    assert state_id in message and "RECONCILER_PASSPHRASE" in message
    assert "wrong" not in message.replace("wrong state encryption key", "")
    with pytest.raises(StateKeyError, match=state_id):
        _unseal(path, {"RECONCILER_PASSPHRASE": "wrong"}, "a")
    assert snapshot(tmp_path) == before


def test_key_file_raw_and_hex_are_the_same_key(tmp_path: Path) -> None:
    raw, hexed = tmp_path / "raw.key", tmp_path / "hex.key"
    raw.write_bytes(b"\xab" * 32)
    hexed.write_text("AB" * 32 + "\n")
    path = tmp_path / "s.json"
    _make_state(path, {"RECONCILER_KEY_FILE": str(raw)})
    assert _unseal(path, {"RECONCILER_KEY_FILE": str(hexed)}, "b").reveal().endswith("-b")
    assert json.loads(path.read_text())["key"] == {"id": key_id(b"\xab" * 32), "kdf": None,
                                                   "salt": None}


@pytest.mark.parametrize("content", [b"short", b"z" * 64, b"\x00" * 33])
def test_bad_key_file_is_refused(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.key"
    bad.write_bytes(content)
    keys = KeySource(environ={"RECONCILER_KEY_FILE": str(bad)}, notice=print)
    with pytest.raises(StateKeyError, match="32 raw bytes or 64 hex"):
        keys.resolve(None)


def test_missing_key_file_and_both_sources_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StateKeyError, match="cannot read"):
        KeySource(environ={"RECONCILER_KEY_FILE": str(tmp_path / "nope")},
                  notice=print).resolve(None)
    both = {"RECONCILER_KEY_FILE": "k", "RECONCILER_PASSPHRASE": "p"}
    with pytest.raises(UsageError, match="only one"):
        KeySource(environ=both, notice=print).resolve(None)


def test_default_key_file_is_created_0600_on_first_need_only(tmp_path: Path) -> None:
    notices: list[str] = []
    env = {"HOME": str(tmp_path / "home")}
    path = tmp_path / "s.json"
    store = LocalStateStore(path, environ=env, notice=notices.append)
    key_path = tmp_path / "home" / ".config" / "reconciler" / "key"
    with store.lock(operation="plan", timeout=0):
        store.load()  # reading needs no key: none is made
    assert not key_path.exists() and notices == []
    with store.lock(operation="apply", timeout=0):
        # Every write is authenticated with the key (format 2), secrets or not: the first
        # write makes it, once.
        store.record(entry("nosecret"))
        store.commit()
    assert key_path.exists() and len(notices) == 1
    with store.lock(operation="apply", timeout=0):
        store.record(entry("a", store.seal("a", Secret("k"))))
        store.seal("b", Secret("k"))
        store.commit()
    assert key_path.exists() and len(notices) == 1
    assert str(key_path) in notices[0] and "back it up" in notices[0]
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    assert _unseal(path, env, "a").reveal() == "k"


def test_missing_default_key_for_a_sealed_state_is_not_recreated(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    _make_state(path, key_env(tmp_path))
    env = {"HOME": str(tmp_path / "elsewhere")}
    with pytest.raises(StateKeyError, match="no key was given"):
        _unseal(path, env, "a")
    assert not (tmp_path / "elsewhere").exists()
    with pytest.raises(StateKeyError, match="no default key file"):
        KeySource(environ={}, notice=print).resolve(None)


def test_passphrase_on_a_key_file_state_says_which_to_use(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    _make_state(path, key_env(tmp_path))
    with pytest.raises(StateKeyError, match=r"sealed with a key file.*RECONCILER_KEY_FILE"):
        _unseal(path, {"RECONCILER_PASSPHRASE": "p"}, "a")


def _refused_unchanged(tmp_path: Path, path: Path, name: str, match: str) -> None:
    before = snapshot(tmp_path)
    with pytest.raises(StateCorruptError, match=match):
        _unseal(path, key_env(tmp_path), name)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("position", [3, 10, 20, 40, -30, -1])
def test_a_flipped_byte_in_a_ciphertext_is_refused(tmp_path: Path, position: int) -> None:
    path = tmp_path / "s.json"
    _make_state(path, key_env(tmp_path))

    def flip(doc: dict) -> None:  # type: ignore[type-arg]
        env = doc["keypairs"][at("a")]["private_key"]
        body = bytearray(env.encode())
        index = position % len(body) if position >= 0 else len(body) + position - 2
        index = max(index, 3)
        body[index] = ord("A") if body[index] != ord("A") else ord("B")
        doc["keypairs"][at("a")]["private_key"] = body.decode()

    rewrite(path, flip)  # the MAC refuses it first...
    _refused_unchanged(tmp_path, path, "a", "failed its integrity check")
    rewrite(path, lambda doc: None, key_holder=key_env(tmp_path))  # ...then AES-GCM
    _refused_unchanged(tmp_path, path, "a", "private key of 'a'|envelope of 'a'")


def test_ciphertexts_swapped_between_entries_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    _make_state(path, key_env(tmp_path))

    def swap(doc: dict) -> None:  # type: ignore[type-arg]
        kps = doc["keypairs"]
        a, b = kps[at("a")], kps[at("b")]
        a["private_key"], b["private_key"] = b["private_key"], a["private_key"]

    rewrite(path, swap, key_holder=key_env(tmp_path))  # behind the MAC: AES-GCM's binding
    _refused_unchanged(tmp_path, path, "a", "moved here from another entry")
    _refused_unchanged(tmp_path, path, "b", "moved here from another entry")


def test_ciphertext_moved_to_another_state_file_is_refused(tmp_path: Path) -> None:
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    _make_state(one, key_env(tmp_path))
    _make_state(two, key_env(tmp_path))  # same key, another lineage
    stolen = json.loads(one.read_text())["keypairs"][at("a")]["private_key"]

    def plant(doc: dict) -> None:  # type: ignore[type-arg]
        doc["keypairs"][at("a")]["private_key"] = stolen

    rewrite(two, plant, key_holder=key_env(tmp_path))  # behind the MAC: AES-GCM's binding
    _refused_unchanged(tmp_path, two, "a", "another state file")


def test_hand_edit_of_a_ciphertext_without_checksum_fails_on_load(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    _make_state(path, key_env(tmp_path))
    rewrite(path, lambda d: d["keypairs"][at("a")].update(private_key="v1:AAAA"),
            fix_checksum=False)
    before = snapshot(tmp_path)
    with pytest.raises(StateCorruptError, match="checksum"):
        _store(path, key_env(tmp_path)).load()
    assert snapshot(tmp_path) == before


def test_edited_key_block_is_refused_before_decrypting(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    _make_state(path, key_env(tmp_path))
    rewrite(path, lambda d: d["key"].update(id="0" * 16))
    before = snapshot(tmp_path)
    with pytest.raises(StateKeyError, match="0000000000000000"):
        _unseal(path, key_env(tmp_path), "a")
    assert snapshot(tmp_path) == before


def test_hostile_kdf_parameters_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    env = {"RECONCILER_PASSPHRASE": "p"}
    _make_state(path, env)
    rewrite(path, lambda d: d["key"]["kdf"].update(n=2**30))
    with pytest.raises(StateCorruptError, match="scrypt parameter n"):
        _unseal(path, env, "a")


def test_sealed_values_never_show_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    _make_state(path, key_env(tmp_path))
    for name in path.parent.iterdir():
        if name.is_file():
            assert PRIVATE_MARK.encode() not in name.read_bytes()
    store = _store(path, key_env(tmp_path))
    kp = store.load().entry("a")
    assert "v1:" not in repr(kp.private_key) and PRIVATE_MARK not in repr(kp)


def test_a_key_file_others_can_read_is_used_with_a_warning(tmp_path: Path) -> None:
    from reconciler.state.crypto import KeySource

    key_file = tmp_path / "k"
    key_file.write_text("22" * 32)
    key_file.chmod(0o644)
    notices: list[str] = []
    KeySource(environ={"RECONCILER_KEY_FILE": str(key_file)}, notice=notices.append).resolve(None)
    assert len(notices) == 1 and "chmod 600" in notices[0] and "22" * 4 not in notices[0]
    key_file.chmod(0o600)
    notices.clear()
    KeySource(environ={"RECONCILER_KEY_FILE": str(key_file)}, notice=notices.append).resolve(None)
    assert notices == []


def test_scrypt_parameters_from_a_file_are_bounded_in_memory() -> None:
    from reconciler.state.crypto import scrypt_key

    with pytest.raises(StateCorruptError, match="256 MiB"):
        scrypt_key("x", salt=b"s" * 16, params={"n": 2**20, "r": 32, "p": 16})
