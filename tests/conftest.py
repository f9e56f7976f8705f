"""Shared fixtures: one emulator per session on 127.0.0.1 (port 0), reset between tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

# Under CI the property tests draw their examples from a fixed seed (Hypothesis's
# ``derandomize``), so one run is the same as the next; developers' runs explore new examples
# each time, and what they find becomes an explicit test.
if os.environ.get("CI"):
    settings.register_profile("ci", derandomize=True)
    settings.load_profile("ci")

from reconciler.credentials.target import forget_shared
from reconciler.emulator.server import Emulator


@pytest.fixture(scope="session")
def emulator_session() -> Iterator[Emulator]:
    emu = Emulator(host="127.0.0.1", port=0, keygen="ed25519")
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture()
def emulator(emulator_session: Emulator) -> Iterator[Emulator]:
    # a reset forgets the temporary credentials the emulator granted, so the agency
    # providers kept for this process (which hold them) are forgotten with it
    emulator_session.reset()
    forget_shared()
    yield emulator_session
    emulator_session.reset()
    forget_shared()
