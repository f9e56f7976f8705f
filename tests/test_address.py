"""Addresses: one value, one formatter, Terraform's syntax; parsing and selecting user input."""

from __future__ import annotations

import pytest

from reconciler.address import (
    DEFAULT_TARGET,
    Address,
    Addressing,
    AddressSyntaxError,
    AmbiguousAddressError,
    keypair_address,
    parse_address,
    resolve_one,
    select,
)

TWO = Addressing(targets=("prod-cn-north-4", "prod-ap-southeast-1"))


def test_one_target_shows_the_bare_address_and_several_show_the_target() -> None:
    assert str(keypair_address("web")) == "keypair.web"
    assert f"{keypair_address('web')}" == "keypair.web"
    assert str(TWO.keypair("web", "prod-cn-north-4")) == 'keypair.web["prod-cn-north-4"]'
    assert keypair_address("web").target == DEFAULT_TARGET


def test_how_an_address_is_shown_is_not_part_of_its_value() -> None:
    single, multi = keypair_address("web"), Address(DEFAULT_TARGET, "keypair", "web",
                                                    qualified=True)
    assert single == multi and hash(single) == hash(multi)
    assert str(single) != str(multi)
    assert {single: 1}[multi] == 1


def test_addresses_sort_as_their_text_does() -> None:
    a = [TWO.keypair("web", "prod-cn-north-4"), TWO.keypair("api", "prod-cn-north-4"),
         TWO.keypair("web", "prod-ap-southeast-1")]
    assert [str(x) for x in sorted(a)] == [
        'keypair.api["prod-cn-north-4"]', 'keypair.web["prod-ap-southeast-1"]',
        'keypair.web["prod-cn-north-4"]']


@pytest.mark.parametrize(("text", "name", "target"), [
    ("web", "web", None), ("keypair.web", "web", None),
    ('keypair.web["prod-cn-north-4"]', "web", "prod-cn-north-4"),
    ('web["t1"]', "web", "t1"), ("  ci_key-2  ", "ci_key-2", None),
])
def test_user_input_parses_to_a_query(text: str, name: str, target: str | None) -> None:
    query = parse_address(text)
    assert (query.kind, query.name, query.target) == ("keypair", name, target)


@pytest.mark.parametrize("text", [
    "", "keypair.", "server.web", 'keypair.web["Prod"]', 'keypair.web["a"', "keypair.web[0]",
    "a.b.c", "web space", 'keypair.web[""]', "x" * 65,
])
def test_what_is_not_an_address_is_refused_saying_what_one_looks_like(text: str) -> None:
    with pytest.raises(AddressSyntaxError, match=r'keypair\.web\["prod-cn-north-4"\]'):
        parse_address(text)


def test_a_bare_name_selects_the_key_pair_in_every_target() -> None:
    known = [TWO.keypair("web", t) for t in TWO.targets] + [TWO.keypair("api", TWO.targets[0])]
    assert select(parse_address("web"), known) == sorted(known[:2])
    assert select(parse_address("keypair.web"), known) == sorted(known[:2])
    assert select(parse_address('keypair.web["prod-ap-southeast-1"]'), known) == [known[1]]
    assert select(parse_address("nope"), known) == []


def test_a_name_argument_must_name_one_address() -> None:
    known = [TWO.keypair("web", t) for t in TWO.targets] + [TWO.keypair("api", TWO.targets[0])]
    assert resolve_one("api", known) == known[2]
    assert resolve_one("nope", known) is None
    assert resolve_one('keypair.web["prod-cn-north-4"]', known) == known[0]
    with pytest.raises(AmbiguousAddressError) as exc:
        resolve_one("web", known)
    assert 'keypair.web["prod-ap-southeast-1"]' in str(exc.value)
    assert 'keypair.web["prod-cn-north-4"]' in str(exc.value)


def test_no_formatted_address_strings_outside_the_address_module() -> None:
    """Every address is formatted by Address.__str__; nothing else spells "keypair.NAME"."""
    import re
    from pathlib import Path

    package = Path(__file__).parent.parent / "reconciler"
    pattern = re.compile(r'f"[^"]*keypair\.\{|f\'[^\']*keypair\.\{')
    found = [f"{p.relative_to(package)}:{n}" for p in package.rglob("*.py")
             if p.name != "address.py"
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []


def test_the_sort_key_orders_as_kind_name_target_do() -> None:
    from itertools import product

    from reconciler.address import ORDER

    parts = ["a", "ab", "a-b", "a_b", "a0", "A", "b", "-", "_", "9"]
    addresses = [Address(t, "keypair", n) for n, t in product(parts, [p.lower() for p in parts])]
    addresses += [Address("t", "keypair_x", "a"), Address("t", "key", "zz")]
    assert sorted(addresses, key=ORDER) == sorted(
        addresses, key=lambda a: (a.kind, a.name, a.target))
