"""The KMS state key on both stores (a local file, and S3 on moto's server): a move from a key
file to KMS (``fallback``) and ``rekey`` with a journal pending, through the store API, with
the emulator's KMS over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_emulator_kms import make_key, settings
from test_state_s3_support import new_bucket
from test_state_support import entry, key_env

from reconciler.commands.statekey import KmsDataKeys
from reconciler.emulator.server import Emulator
from reconciler.model import Secret, StateEncryption
from reconciler.state.local import LocalStateStore
from reconciler.state.protocol import StateStore

Make = Callable[[dict[str, str], StateEncryption | None], StateStore]


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path,
            emulator: Emulator) -> Iterator[tuple[Make, Callable[[], dict[str, Any]]]]:
    def keys() -> KmsDataKeys:
        return KmsDataKeys(settings(emulator), target="default")

    if request.param == "local":
        path = tmp_path / "s.json"

        def make(environ: dict[str, str], choice: StateEncryption | None) -> StateStore:
            return LocalStateStore(path, environ=environ, encryption=choice, data_keys=keys)

        yield make, lambda: dict(json.loads(path.read_text()))
    else:
        bucket = new_bucket()

        def make(environ: dict[str, str], choice: StateEncryption | None) -> StateStore:
            return bucket.store(environ, key="team/s.json", encryption=choice, data_keys=keys)

        def document() -> dict[str, Any]:
            data = bucket.snapshot()
            (raw,) = [v for k, v in data.items() if k.endswith("s.json")]
            return dict(json.loads(raw))

        yield make, document


def test_a_key_file_state_moves_to_kms_then_rekeys_with_a_journal_pending(
        backend: tuple[Make, Callable[[], dict[str, Any]]], emulator: Emulator,
        tmp_path: Path) -> None:
    make, document = backend
    environ = key_env(tmp_path)
    first = make(environ, None)
    with first.lock(operation="apply", timeout=5):
        first.load()
        for name in ("a", "b"):
            first.record(entry(name, first.seal(name, Secret(f"secret-{name}"))))
        first.commit()
    key = make_key(emulator, "state")
    moving = make(environ, StateEncryption(provider="kms", kms_key=key, mode="fallback"))
    with moving.lock(operation="apply", timeout=5):
        moving.load()
        moved = moving.prepare_key()
        assert moved is not None and moved[1].kms is not None and moved[1].kms.key_id == key
    after_move = document()
    assert after_move["format_version"] == 4 and after_move["serial"] == 1
    # KMS alone from now on, enforced; a change left in the journal, then a rekey
    kms_only = {"HOME": environ["HOME"]}
    enforced = StateEncryption(provider="kms", kms_key=key)
    store = make(kms_only, enforced)
    with store.lock(operation="apply", timeout=5):
        store.load()
        store.record(entry("c", store.seal("c", Secret("secret-c"))))
    again = make(kms_only, enforced)
    with again.lock(operation="state rekey", timeout=5):
        again.load()
        state, old, new = again.rekey()
    assert old.kms is not None and new.kms is not None and old.kms != new.kms
    assert sorted(state.names()) == ["a", "b", "c"] and state.serial == 2  # the journal's +1
    final = document()
    assert final["serial"] == 2 and final["key"]["kms"] == new.kms.as_dict()
    reader = make(kms_only, enforced)
    for name in ("a", "b", "c"):
        loaded = reader.load()
        sealed = loaded.entry(name).private_key
        assert sealed is not None and reader.unseal(name, sealed).reveal() == f"secret-{name}"
        assert sealed.envelope != after_move["keypairs"].get(f'keypair.{name}["default"]', {}
                                                            ).get("private_key")
