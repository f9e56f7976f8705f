"""Emulator edges found in review: names with a trailing line break, negative Content-Length,
and a damaged data file."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from reconciler.emulator.server import Emulator
from reconciler.errors import ApiError
from tests.clihelp import Cli


def test_a_name_ending_in_a_line_break_is_refused(emulator: Emulator, tmp_path: Path) -> None:
    api = Cli(emulator, tmp_path).client("kps")
    with pytest.raises(ApiError) as info:
        api.create_keypair(name="abc\n")
    assert info.value.status == 400
    assert emulator.keypair_count() == 0


def test_negative_content_length_is_a_bad_request(emulator: Emulator) -> None:
    host, port = emulator.endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"POST /v3/x/keypairs HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
        head = conn.recv(4096).decode(errors="replace")
    assert head.startswith("HTTP/1.1 400")


def test_a_damaged_data_file_is_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    data.write_text('{"format_version": 1, "keypairs": [{"nope": 1}]}')
    with pytest.raises(ValueError, match="not an emulator data file"):
        Emulator(data=str(data))


def test_settle_waits_for_a_request_still_sleeping_out_its_latency(emulator: Emulator,
                                                                   tmp_path: Path) -> None:
    import threading
    import time

    from reconciler import keys

    cli = Cli(emulator, tmp_path, api="kps")
    client = cli.client()
    public = keys.generate_keypair("ed25519").public_key
    emulator.set_faults(latency_ms=300)
    sender = threading.Thread(target=lambda: client.import_keypair(name="late", public_key=public))
    sender.start()
    deadline = time.monotonic() + 10
    while emulator.counters().get("total", 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.005)  # the request is in: sleeping out its latency
    assert emulator.keypair_count() == 0
    started = time.monotonic()
    assert emulator.settle()
    assert time.monotonic() - started >= 0.2  # it waited for the import, then a quiet time
    assert emulator.keypair_count() == 1  # which had taken effect
    sender.join(10)
    emulator.set_faults(latency_ms=0)
    assert emulator.settle(timeout=5)  # nothing under way: quiet at once
