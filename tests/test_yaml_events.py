"""The event path of the YAML reader builds what the composer's path builds, or gives up.

``yamlsafe._plain_documents`` builds values and positions straight from libyaml's events for
plain texts; everything else goes to ``_composed_documents``. For any text, the event path
either gives up (``None``) or gives exactly the composer's documents; and the reader as a whole
gives the composer's documents and diagnostics.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import yamlsafe

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not yaml.__with_libyaml__, reason="the event path needs libyaml")


def _shape(docs: list[yamlsafe.YamlDocument]) -> list[tuple[object, ...]]:
    return [(d.value, dict(d.positions), dict(d.key_positions), d.file, d.index) for d in docs]


def _same_as_composer(text: str) -> bool:
    """Assert the event path's answer matches the composer's; True when it did not give up."""
    composed, problems = yamlsafe._composed_documents(text, "m.yaml")
    plain = yamlsafe._plain_documents(text, "m.yaml")
    if plain is not None:
        assert not problems, (text, problems)
        assert _shape(plain) == _shape(composed), text
    docs, diagnostics = yamlsafe.parse_yaml_documents(text, display="m.yaml")
    assert _shape(docs) == _shape(composed)
    assert diagnostics == problems
    return plain is not None


_KEYS = st.sampled_from(["name", "generate", "~", "null", "1", "0x1F", "true", "no", "<<",
                         "a b", "é", "", "on", "-", "?x", "2020-01-01"])
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
    st.text(max_size=12), _KEYS,
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_VALUES, min_size=1, max_size=3), st.sampled_from([None, True, False]),
       st.sampled_from([None, '"', "'"]), st.integers(2, 6))
def test_dumped_values_read_the_same_both_ways(values: list[object], flow: bool | None,
                                                style: str | None, indent: int) -> None:
    text = yaml.safe_dump_all(values, default_flow_style=flow, default_style=style,
                              indent=indent, allow_unicode=True, sort_keys=False)
    _same_as_composer(text)


_YAMLISH = st.text(alphabet=st.sampled_from(list("ab1:-{}[],&*!#'\"\n |>?<~. \t%@`e")),
                   max_size=60)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_YAMLISH)
def test_arbitrary_texts_read_the_same_both_ways(text: str) -> None:
    _same_as_composer(text)


def test_every_manifest_in_the_repository_reads_the_same_both_ways() -> None:
    files = sorted({*ROOT.glob("examples/**/*.yaml"), *ROOT.glob("tests/**/*.yaml"),
                    *ROOT.glob("tests/**/*.yml")})
    assert len(files) > 50
    plain = 0
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        plain += _same_as_composer(text)
    assert plain > 20  # the event path is the one most manifests take


@pytest.mark.parametrize("text", [
    "a: &x 1\nb: *x\n",                      # anchor and alias
    "a: !!str 1\n",                          # a tag
    "a: !custom x\n",
    "base: &b {x: 1}\nc:\n  <<: *b\n",       # a merge key
    "<<: {x: 1}\ny: 2\n",                    # a merge key without an alias
    "a: 1\na: 2\n",                          # a duplicate key
    "? [1, 2]\n: x\n",                       # a non-scalar key
    "a: [1, 2\n",                            # a syntax error
    "[" * 40 + "]" * 40 + "\n",              # nesting at the limit
])
def test_what_the_event_path_leaves_to_the_composer(text: str) -> None:
    assert yamlsafe._plain_documents(text, "m.yaml") is None
    _same_as_composer(text)


def test_a_plain_manifest_takes_the_event_path_with_its_positions() -> None:
    text = ("apiVersion: reconciler/v1\nkind: KeyPairs\nkeypairs:\n"
            "  - {name: a, generate: ed25519}\n  - name: 'b'\n    rotate_after: 90d\n"
            "---\n~\n---\nx: [1, 2.5, true, null, '3']\n")
    docs = yamlsafe._plain_documents(text, "m.yaml")
    assert docs is not None
    assert [d.index for d in docs] == [0, 2]  # the empty second document is skipped
    first = docs[0]
    assert first.value == {"apiVersion": "reconciler/v1", "kind": "KeyPairs", "keypairs": [
        {"name": "a", "generate": "ed25519"}, {"name": "b", "rotate_after": "90d"}]}
    assert first.positions[("keypairs", 1, "rotate_after")] == (6, 19)
    assert first.key_positions[("keypairs", 1, "rotate_after")] == (6, 5)
    assert first.positions[("keypairs", 0)] == (4, 5)
    assert docs[1].value == {"x": [1, 2.5, True, None, "3"]}
    _same_as_composer(text)


def _nested(n: int, block: str) -> str:
    return "".join("  " * i + block + "\n" for i in range(n)) + "  " * n + "v\n"


# Texts a hostile or careless author writes: line ends, BOMs, odd characters, directives,
# odd keys, numbers YAML 1.1 reads its own way, and nesting either side of the limit.
@pytest.mark.parametrize("text", [
    "\ufeffa: 1\n", "a: 1\n---\n\ufeffb: 2\n", "a: \ufeffx\n",
    "a: 1\r\nb:\r\n  - x\r\n  - y\r\n", "a: 1\rb: 2\r", "a: 1\r\n\rb: 2\n",
    "a: 1\x85b: 2\n", "a: 1\u2028b: 2\n", "a: 1\u2029b: 2\n", "a: x\x85 y\nb: 'p\u2028q'\n",
    "a:\t1\nb: x\ty\n", "a:\n\t- 1\n", "-\t1\n", "a: \x01\n", "a: \x7f\n", "a: \x9f\n",
    "a: \ufffe\n", "😀😀: 1\nb: 😀😀😀 x\nc: [😀, d]\n",
    "a: \"\\x41\\u263a\\U0001F600\\N\\_\\L\\P\"\n", "a: \"\\ud800\"\n",
    "%YAML 1.1\n---\na: 1\n", "%YAML 1.2\n---\na: 1\n",
    "%TAG !e! tag:example.com,2000:\n---\na: 1\n",
    "%TAG !! tag:example.com,2000:\n---\na: !!str 1\n", "a: ! 1\n", "! {a: 1}\n",
    "? a\n: 1\n", "? a\n", "? a\n? b\n", ": x\n", "a: 1\n: x\n", "~: x\n", "null: x\n~: y\n",
    "{: x}\n", "{a, b: }\n", "a: b: c\n",
    "a: " + "x" * 200_000 + "\n", "x" * 1100 + ": 1\n", "? " + "x" * 1100 + "\n: 1\n",
    "# only\n# comments\n", "", "   \n", "\ufeff", "...\n", "---\n---\n...\n---\na: 1\n...\n",
    "a: 1\n---\n---\nb: 2\n", "a: 1\n--- # c\n...\n--- b\n", "--- x\n--- 1\n--- ''\n--- ~\n",
    "a: 1\n...\na: 1\n",
    "a: [0o17, 017, 1_000, .inf, -.inf, 0x_1, 0b101, 1:20, 190:20:30, 1e3, 1.0e+3, +1, -0, "
    "0x1F, 9223372036854775808, -9223372036854775808, 1__0]\n",
    "a: [2020-01-01, 2020-02-30, 2001-12-14t21:59:43.10-05:00, 2001-12-14 21:59:43.10 -5]\n",
    "'<<': {x: 1}\n", "\"<<\": {x: 1}\n", "a: <<\n", "<<: {a: 1}\na: 2\n",
    "1: a\ntrue: b\nyes: c\non: d\n", "1: a\n'1': b\n", "'1': a\n1: b\n", "{1: a, \"1\": b}\n",
    "~: a\nnull: b\n", "1.0: a\n1: b\n", "99999999999999999999: x\n", "a: =\n=: b\n", "- =\n",
    "a: |\n  x\n  y\nb: >-\n  p\n  q\n", "a: |+\n  x\n\n", "a: \"x\n  y\"\n",
    "a: !!binary aGk=\n", "- !!omap [a: 1]\n", "a: b#c\nd: e #f\n",
    *("[" * n + "x" + "]" * n + "\n" for n in (30, 31, 32, 33)),
    *("{a: " * n + "1" + "}" * n + "\n" for n in (30, 31, 32, 33)),
    *(_nested(n, "k:") for n in (30, 31, 32, 33)),
    *(_nested(n, "-") for n in (30, 31, 32, 33)),
])
def test_hostile_texts_read_the_same_both_ways(text: str) -> None:
    _same_as_composer(text)


def test_keys_that_are_one_string_are_one_key_both_ways() -> None:
    for text in ("1: a\n'1': b\n", "'1': a\n1: b\n", "{1: a, \"1\": b}\n"):
        docs, problems = yamlsafe.parse_yaml_documents(text, display="m.yaml")
        assert docs == [] and [p.summary for p in problems] == [
            "invalid YAML: duplicate key '1'"], text
    docs, problems = yamlsafe.parse_yaml_documents("~: a\nnull: b\n1.0: c\n1: d\n",
                                                   display="m.yaml")
    assert not problems and docs[0].value == {"~": "a", "null": "b", "1.0": "c", "1": "d"}
