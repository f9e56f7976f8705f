"""State records bindings in each key pair's entry: written only when there are some (an
entry without bindings is byte for byte as before), read back sorted, refused when malformed;
a real local store records them through its journal and reads them back after a commit."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from test_state_support import entry

from reconciler.state.codec import entry_from_dict, entry_to_dict
from reconciler.state.local import LocalStateStore


def test_an_entry_without_bindings_is_written_as_before() -> None:
    assert "servers" not in entry_to_dict(entry("a"))


def test_bindings_round_trip_sorted() -> None:
    bound = dataclasses.replace(entry("a"), servers=("s-2", "s-1"))
    written = entry_to_dict(bound)
    assert written["servers"] == ["s-2", "s-1"]
    assert entry_from_dict("a", written, where="keypairs.a").servers == ("s-1", "s-2")


@pytest.mark.parametrize("bad", ["s-1", [1], ["s-1", "s-1"], [""]])
def test_malformed_bindings_are_refused(bad: object) -> None:
    written = {**entry_to_dict(entry("a")), "servers": bad}
    with pytest.raises(ValueError, match="servers: must be a list of distinct server ids"):
        entry_from_dict("a", written, where="keypairs.a")


def test_a_local_store_records_and_reads_bindings(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32))
    environ = {"RECONCILER_KEY_FILE": str(key)}
    path = tmp_path / "state.json"
    store = LocalStateStore(path, environ=environ, notice=lambda _: None)
    store.load()
    store.record(entry("a"))
    current = store.current("a")
    assert current is not None and current.servers == ()
    store.record(dataclasses.replace(current, servers=("s-1",)))
    now = store.current("a")
    assert now is not None and now.servers == ("s-1",)
    store.commit()
    doc = json.loads(path.read_text())
    assert doc["keypairs"]['keypair.a["default"]']["servers"] == ["s-1"]
    again = LocalStateStore(path, environ=environ, notice=lambda _: None).load()
    assert again.entry("a").servers == ("s-1",)
