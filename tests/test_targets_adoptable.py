"""``targets.adoptable``: the names a plan may adopt, by target (declared there, not in
state), as the addresses of the desired and recorded key pairs say."""

from __future__ import annotations

from pathlib import Path

from test_state_support import entry

from reconciler.address import Address
from reconciler.manifest import load_manifests
from reconciler.model import Manifest, State
from reconciler.targets import addressing, adoptable, desired_by_address, recorded_by_address

MANIFEST = """\
apiVersion: reconciler/v1
kind: KeyPairs
targets:
  - {name: east, region: cn-north-4, project_id: 0123456789abcdef0123456789abcdef}
  - {name: west, region: cn-east-3, project_id: fedcba9876543210fedcba9876543210}
keypairs:
  - {name: a, generate: ed25519}
  - {name: b, generate: ed25519, targets: [west]}
  - {name: c, generate: ed25519, targets: [east, west]}
  - {name: d, generate: ed25519}
"""


def _by_addresses(manifest: Manifest, state: State,
                  moves: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """The definition: desired addresses that state does not hold."""
    run = addressing(manifest, state, moves)
    held = recorded_by_address(state, run, moves)
    out: dict[str, list[str]] = {}
    for addr in desired_by_address(manifest, run):
        if addr not in held:
            out.setdefault(addr.target, []).append(addr.name)
    return {t: tuple(n) for t, n in out.items()}


def test_adoptable_is_what_the_addresses_say(tmp_path: Path) -> None:
    (tmp_path / "k.yaml").write_text(MANIFEST)
    manifest = load_manifests([tmp_path], cwd=tmp_path)
    cases = [
        ({}, {}),
        ({("east", "a"), ("west", "c")}, {}),
        ({("old", "a"), ("old", "d"), ("west", "b")}, {"old": "east"}),  # a renamed target
        ({("old", "a"), ("east", "zz")}, {}),  # a target only state holds
    ]
    for held, moves in cases:
        state = State(lineage="l", serial=1, keypairs={
            Address(t, "keypair", n): entry(n, target=t) for t, n in sorted(held)})
        assert adoptable(manifest, state, moves) == _by_addresses(manifest, state, moves), \
            (held, moves)
    everything = adoptable(manifest, State(lineage="l", serial=1), {})
    assert everything == {"east": ("a", "c", "d"), "west": ("a", "b", "c", "d")}
