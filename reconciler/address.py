"""Addresses: which managed object a change, a state entry or a remote record is about.

An ``Address`` is a value (target, kind, name), comparable and hashable; every map of the
plan, the remote snapshot and the in-memory state is keyed by it, and ``str(address)`` is the
one place an address is formatted. Terraform's syntax: ``keypair.web`` while a run has one
target, ``keypair.web["prod-cn-north-4"]`` when it has several. Whether the target is shown is
decided once per run (``Addressing``) and carried by every address the run makes, so that a
renderer, a hook or an error message never needs to know how many targets there are.

User input (``--target``, ``--replace``, ``state show NAME`` ...) is parsed by
``parse_address`` into an ``AddressQuery``; a bare name or an address without a target selects
that key pair in every target (Terraform's ``-target`` meaning), and ``resolve_one`` insists
that a NAME argument names exactly one address.

May import: the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

KEYPAIR = "keypair"
KINDS = (KEYPAIR,)
# The target of a manifest without a ``targets:`` block (its ``provider`` block, or none).
DEFAULT_TARGET = "default"
TARGET_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"

_TARGET_RE = re.compile(TARGET_PATTERN)
_QUERY_RE = re.compile(
    r'^(?:(?P<kind>[a-z][a-z0-9_]*)\.)?(?P<name>[A-Za-z0-9_-]{1,64})'
    r'(?:\["(?P<target>[^"\\]*)"\])?$'
)


@dataclass(frozen=True, slots=True)
class Address:
    """One managed object: ``kind`` named ``name`` in ``target``.

    ``qualified`` says whether ``str()`` shows the target; it is how the run chose to show
    addresses, not part of the value (it takes no part in equality, order or hashing).
    Addresses sort as their text does: by kind, name, then target.
    """

    target: str
    kind: str
    name: str
    qualified: bool = field(default=False, compare=False)
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Addresses key every map of a plan: hashed once, not once per lookup.
        object.__setattr__(self, "_hash", hash((self.target, self.kind, self.name)))

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: Address) -> bool:
        return ORDER(self) < ORDER(other)

    def __str__(self) -> str:
        return self.display(qualified=self.qualified)

    def display(self, *, qualified: bool) -> str:
        """Terraform's syntax, with or without the target."""
        base = f"{self.kind}.{self.name}"
        return f'{base}["{self.target}"]' if qualified else base

    @property
    def label(self) -> str:
        """The name while a run has one target, the address when it has several: how the
        JSON plan's ``forget`` and ``lifecycle`` lists name entries."""
        return str(self) if self.qualified else self.name

    def field(self, path: str) -> str:
        """A field of this object, as diagnostics name it: ``keypair.web.description``."""
        return f"{self}.{path}"


@dataclass(frozen=True, slots=True)
class Addressing:
    """How one run makes addresses: the same for every address, decided by its targets."""

    targets: tuple[str, ...] = (DEFAULT_TARGET,)

    @property
    def qualified(self) -> bool:
        return len(self.targets) > 1

    def keypair(self, name: str, target: str = DEFAULT_TARGET) -> Address:
        return _keypair(target, name, len(self.targets) > 1)


@lru_cache(maxsize=1 << 16)
def _keypair(target: str, name: str, qualified: bool) -> Address:
    """One value per address: a plan makes each three times (desired, recorded, remote), and a
    frozen dataclass is slow to build at 10,000 key pairs."""
    return Address(target, KEYPAIR, name, qualified=qualified)


SINGLE = Addressing()


def ORDER(address: Address) -> str:
    """The sort key of an address: kind, name, then target, as one string.

    ``sorted(addresses, key=ORDER)`` then compares strings in C, where ``__lt__`` would run
    Python per comparison, and tuples compare element by element (it matters at 20,000
    addresses). The NUL separator sorts before every character a kind, name or target may
    hold (none holds a NUL: each is checked against its pattern, and a cloud's names
    exclude control characters), so this is the order of (kind, name, target)."""
    return f"{address.kind}\x00{address.name}\x00{address.target}"


def keypair_address(name: str, target: str = DEFAULT_TARGET) -> Address:
    """The address of key pair ``name`` in a run of one target."""
    return SINGLE.keypair(name, target)


@dataclass(frozen=True, slots=True)
class AddressQuery:
    """What the user typed, parsed: ``target`` None selects every target."""

    kind: str
    name: str
    target: str | None = None

    def matches(self, address: Address) -> bool:
        return (address.kind == self.kind and address.name == self.name
                and (self.target is None or address.target == self.target))

    def __str__(self) -> str:
        base = f"{self.kind}.{self.name}"
        return base if self.target is None else f'{base}["{self.target}"]'


class AddressSyntaxError(ValueError):
    """Text that is not an address; the message says what one looks like."""


def parse_address(text: str) -> AddressQuery:
    """``web``, ``keypair.web`` or ``keypair.web["prod"]``; raises ``AddressSyntaxError``."""
    m = _QUERY_RE.match(text.strip())
    if m is None or (m["kind"] is not None and m["kind"] not in KINDS) \
            or (m["target"] is not None and not _TARGET_RE.match(m["target"])):
        raise AddressSyntaxError(
            f"{text[:80]!r} is not a key pair address: give a name (web), an address "
            '(keypair.web), or an address in one target (keypair.web["prod-cn-north-4"])')
    return AddressQuery(kind=m["kind"] or KEYPAIR, name=m["name"], target=m["target"])


def select(query: AddressQuery, addresses: Iterable[Address]) -> list[Address]:
    """Every address the query names, in address order."""
    return sorted(a for a in addresses if query.matches(a))


class AmbiguousAddressError(ValueError):
    """A NAME argument names no address, or more than one."""


def resolve_one(text: str, addresses: Iterable[Address]) -> Address | None:
    """The one address ``text`` names among ``addresses``; None when it names none.

    Raises ``AddressSyntaxError`` for text that is no address, ``AmbiguousAddressError`` when
    a bare name is managed in several targets (the message lists them)."""
    found = select(parse_address(text), addresses)
    if len(found) > 1:
        shown = ", ".join(a.display(qualified=True) for a in found)
        raise AmbiguousAddressError(
            f"{text[:80]!r} names {len(found)} key pairs ({shown}); give one of them")
    return found[0] if found else None


def is_target_name(text: str) -> bool:
    return bool(_TARGET_RE.match(text))
