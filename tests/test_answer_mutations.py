"""Answers rewritten between client and emulator: the real CLI either stops with a clear error
naming the request, or gives the correct result; a read it does not understand never changes
the state or its backup, and a create whose answer lost its private key is tainted, not ready.

The proxy (tests/mutating_proxy.py) forwards requests unchanged, so signatures verify, and
rewrites the chosen answer: keys dropped or null, wrong types, truncation, HTML, an empty
body, a body larger than the client reads, repeated or endless KPS markers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.emulator.server import Emulator
from tests.clihelp import Cli, Result
from tests.mutating_proxy import (
    Chunked,
    Mutate,
    Rule,
    json_mutation,
    mutating_proxy,
    replace_body,
    set_at,
    split_first_page,
    truncate,
)

K1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKwIjAMYc6uhQM4LzeXgHN/O/kezk2t2iqOT16iKzSCu"
TOO_LARGE = 64 * 1024 * 1024 + 1
MANAGED = "keypairs:\n  - name: web\n  - name: ci\n    generate: ed25519\n  - name: db\n"
NOVA_LIST = r"^/v2\.1/[^/]+/os-keypairs$"
KPS_PAGE_1 = r"^/v3/[^/]+/keypairs\?limit=\d+$"
KPS_PAGE_2 = r"^/v3/[^/]+/keypairs\?limit=\d+&marker="

# Mutations of any list answer: (name, how) -> the command must fail on them.
BROKEN_LIST: dict[str, Mutate] = {
    "keypairs-missing": set_at("keypairs"),
    "keypairs-null": set_at("keypairs", None),
    "keypairs-object": set_at("keypairs", {}),
    "keypairs-string": set_at("keypairs", "none"),
    "keypairs-number": set_at("keypairs", 0),
    "item-list": set_at("keypairs[0]", []),
    "item-without-keypair": set_at("keypairs[0].keypair"),
    "keypair-string": set_at("keypairs[0].keypair", "web"),
    "name-number": set_at("keypairs[0].keypair.name", 7),
    "name-empty": set_at("keypairs[0].keypair.name", ""),
    "name-control": set_at("keypairs[0].keypair.name", "we\x1b[31mb"),
    "public-key-null": set_at("keypairs[0].keypair.public_key", None),
    "public-key-missing": set_at("keypairs[0].keypair.public_key"),
    "fingerprint-number": set_at("keypairs[0].keypair.fingerprint", 5),
    "type-list": set_at("keypairs[0].keypair.type", ["ssh"]),
    "duplicate-name": json_mutation(lambda d: {**d, "keypairs": d["keypairs"] * 2}),
    "truncated": truncate,
    "html": replace_body(b"<html><body>502 Bad Gateway</body></html>"),
    "empty-200": replace_body(b""),
    "json-null": replace_body(b"null"),
    "json-list": replace_body(b"[]"),
}
KPS_ONLY: dict[str, Mutate] = {
    "page-info-missing": set_at("page_info"),
    "page-info-null": set_at("page_info", None),
    "next-marker-number": set_at("page_info.next_marker", 3),
    "protection-string": set_at("keypairs[0].keypair.is_key_protection", "false"),
}
# Mutations that do not change what the answer says: the result must be the correct one.
HARMLESS: dict[str, Mutate] = {
    "unknown-key": json_mutation(lambda d: {**d, "gateway_trace": {"id": [1, 2]}}),
    "unread-field-odd": set_at("keypairs[0].keypair.frozen_state", {"weird": None}),
}


@pytest.fixture()
def cli(emulator: Emulator, tmp_path: Path) -> Cli:
    return Cli(emulator, tmp_path)


def _managed(cli: Cli, api: str) -> tuple[bytes, bytes]:
    """State with private keys in it (cloud-generated and generated here), applied twice so
    that a backup exists; returns the bytes of state and backup."""
    cli.api = api
    cli.write("keypairs:\n  - name: web\n  - name: ci\n    generate: ed25519\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.write(MANAGED)
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    return cli.state.read_bytes(), _backup(cli).read_bytes()


def _backup(cli: Cli) -> Path:
    return cli.state.with_name(cli.state.name + ".backup")


def _through(cli: Cli, endpoint: str, *argv: str) -> Result:
    return cli(*argv, str(cli.manifests), extra=["--endpoint", endpoint])


def _assert_refused(result: Result, cli: Cli, *, request: str, what: str) -> None:
    assert result.code == 1, result.text
    assert "Traceback" not in result.text and "internal error" not in result.text
    assert what in result.err and request in result.err, result.err
    assert "\x1b" not in result.err  # control characters from an answer are escaped
    assert cli.emulator.sk not in result.text


def _run_all(cli: Cli, rules: list[Rule], *, request: str, what: str,
             before: tuple[bytes, bytes]) -> None:
    with mutating_proxy(cli.emulator.endpoint, rules) as proxy:
        for argv in (("plan",), ("plan", "--refresh-only", "--detailed-exitcode"),
                     ("apply", "--auto-approve")):
            result = _through(cli, proxy.endpoint, *argv)
            _assert_refused(result, cli, request=request, what=what)
            assert (cli.state.read_bytes(), _backup(cli).read_bytes()) == before, argv
    assert all(rule.hits for rule in rules)
    assert cli.writes() == 3  # only the setup's creates: nothing was written to the cloud


@pytest.mark.parametrize("name", sorted(BROKEN_LIST))
def test_a_broken_nova_list_is_an_error_and_state_is_untouched(cli: Cli, name: str) -> None:
    before = _managed(cli, "v2.1")
    _run_all(cli, [Rule("GET", NOVA_LIST, mutate=BROKEN_LIST[name])], before=before,
             request="GET /v2.1/", what="list key pairs failed")


@pytest.mark.parametrize("name", sorted({**BROKEN_LIST, **KPS_ONLY}))
def test_a_broken_kps_first_page_is_an_error(cli: Cli, name: str) -> None:
    before = _managed(cli, "kps")
    mutate = {**BROKEN_LIST, **KPS_ONLY}[name]
    _run_all(cli, [Rule("GET", KPS_PAGE_1, mutate=mutate)], before=before,
             request="GET /v3/", what="list key pairs failed")


@pytest.mark.parametrize("name", ["keypairs-null", "keypairs-missing", "name-number",
                                  "truncated", "empty-200", "page-info-missing"])
def test_a_broken_kps_second_page_is_an_error(cli: Cli, name: str) -> None:
    before = _managed(cli, "kps")
    mutate = {**BROKEN_LIST, **KPS_ONLY}[name]
    _run_all(cli, [Rule("GET", KPS_PAGE_1, mutate=split_first_page(1)),
                   Rule("GET", KPS_PAGE_2, mutate=mutate)], before=before,
             request="&marker=ci", what="list key pairs failed")


def test_a_repeated_kps_marker_is_an_error(cli: Cli) -> None:
    before = _managed(cli, "kps")
    repeat = set_at("page_info.next_marker", "ci")  # the marker page 1 gave
    _run_all(cli, [Rule("GET", KPS_PAGE_1, mutate=split_first_page(1)),
                   Rule("GET", KPS_PAGE_2, mutate=repeat)], before=before,
             request="&marker=ci", what="same marker came back twice")


def test_an_endless_chain_of_kps_markers_is_cut_short(cli: Cli) -> None:
    before = _managed(cli, "kps")
    counter = iter(range(10**6))

    def endless(_path: str) -> tuple[int, bytes]:
        n = next(counter)
        page = {"keypairs": [{"keypair": {"name": f"fake{n:06d}", "public_key": K1}}],
                "page_info": {"next_marker": f"fake{n:06d}"}}
        return 200, json.dumps(page).encode()

    pages = Rule("GET", KPS_PAGE_2, respond=endless)
    _run_all(cli, [Rule("GET", KPS_PAGE_1, mutate=split_first_page(2)), pages],
             before=before, request="GET /v3/", what="pages have brought only")
    assert pages.hits <= 3 * 6  # a handful of pages per command, not thousands


@pytest.mark.parametrize("api,path", [("v2.1", NOVA_LIST), ("kps", KPS_PAGE_1)])
@pytest.mark.parametrize("how", ["content-length", "chunked"])
def test_an_answer_larger_than_the_client_reads_is_an_error(
        cli: Cli, api: str, path: str, how: str) -> None:
    before = _managed(cli, api)
    body: Callable[[str], Any] = (
        (lambda _p: Chunked(TOO_LARGE)) if how == "chunked"
        else (lambda _p: (200, b" " * TOO_LARGE)))
    with mutating_proxy(cli.emulator.endpoint, [Rule("GET", path, respond=body)]) as proxy:
        result = _through(cli, proxy.endpoint, "plan")
    _assert_refused(result, cli, request="the answer to GET /", what="larger than 64 MiB")
    assert (cli.state.read_bytes(), _backup(cli).read_bytes()) == before


@pytest.mark.parametrize("api,path", [("v2.1", NOVA_LIST), ("kps", KPS_PAGE_1)])
@pytest.mark.parametrize("name", sorted(HARMLESS))
def test_a_harmless_rewrite_gives_the_correct_result(
        cli: Cli, api: str, path: str, name: str) -> None:
    before = _managed(cli, api)
    with mutating_proxy(cli.emulator.endpoint, [Rule("GET", path, mutate=HARMLESS[name])]) \
            as proxy:
        result = _through(cli, proxy.endpoint, "plan", "--detailed-exitcode")
        applied = _through(cli, proxy.endpoint, "apply", "--auto-approve")
    assert result.code == 0 and "No changes." in result.out, result.text
    assert applied.code == 0, applied.text
    assert (cli.state.read_bytes(), _backup(cli).read_bytes()) == before


def test_a_legitimately_split_kps_list_is_read_whole(cli: Cli) -> None:
    before = _managed(cli, "kps")
    with mutating_proxy(cli.emulator.endpoint,
                        [Rule("GET", KPS_PAGE_1, mutate=split_first_page(1))]) as proxy:
        result = _through(cli, proxy.endpoint, "plan", "--detailed-exitcode")
        assert any("&marker=ci" in s for s in proxy.seen)
    assert result.code == 0 and "No changes." in result.out, result.text
    assert (cli.state.read_bytes(), _backup(cli).read_bytes()) == before


@pytest.mark.parametrize("api", ["v2.1", "kps"])
@pytest.mark.parametrize("name", ["keypair-null", "public-key-number", "html", "empty-200",
                                  "other-name"])
def test_a_broken_show_answer_stops_import_and_state_is_untouched(
        cli: Cli, api: str, name: str) -> None:
    before = _managed(cli, api)
    cli.client(api).import_keypair(name="outside", public_key=K1)
    mutate = {"keypair-null": set_at("keypair", None),
              "public-key-number": set_at("keypair.public_key", 1),
              "html": replace_body(b"<html>hi</html>"), "empty-200": replace_body(b""),
              "other-name": set_at("keypair.name", "web")}[name]
    cli.write(MANAGED + f"  - name: outside\n    public_key: {K1}\n")
    path = r"/os-keypairs/outside$" if api == "v2.1" else r"/keypairs/outside$"
    with mutating_proxy(cli.emulator.endpoint, [Rule("GET", path, mutate=mutate)]) as proxy:
        result = cli("import", "outside", str(cli.manifests),
                     extra=["--endpoint", proxy.endpoint])
    _assert_refused(result, cli, request="GET /", what="read key pair outside failed")
    assert (cli.state.read_bytes(), _backup(cli).read_bytes()) == before


CREATE_PATH = {"v2.1": r"^/v2\.1/[^/]+/os-keypairs$", "kps": r"^/v3/[^/]+/keypairs$"}


def _entries(cli: Cli) -> dict[str, Any]:
    """State's entries by name (the state has one target)."""
    keypairs: dict[str, Any] = json.loads(cli.state.read_text())["keypairs"]
    return {address.split(".", 1)[1].split("[", 1)[0]: e for address, e in keypairs.items()}


@pytest.mark.parametrize("api", ["v2.1", "kps"])
@pytest.mark.parametrize("name", ["private-key-missing", "private-key-null",
                                  "private-key-empty", "private-key-garbage",
                                  "private-key-number", "html", "empty-200", "truncated"])
def test_a_create_answer_without_its_private_key_is_tainted_never_ready(
        cli: Cli, api: str, name: str) -> None:
    _managed(cli, api)
    kept = {k: v for k, v in _entries(cli).items()}
    mutate = {"private-key-missing": set_at("keypair.private_key"),
              "private-key-null": set_at("keypair.private_key", None),
              "private-key-empty": set_at("keypair.private_key", ""),
              "private-key-garbage": set_at("keypair.private_key", "-----BEGIN junk"),
              "private-key-number": set_at("keypair.private_key", 42),
              "html": replace_body(b"<html>ok</html>"), "empty-200": replace_body(b""),
              "truncated": truncate}[name]
    cli.write(MANAGED + "  - name: fresh\n")
    with mutating_proxy(cli.emulator.endpoint,
                        [Rule("POST", CREATE_PATH[api], mutate=mutate)]) as proxy:
        result = _through(cli, proxy.endpoint, "apply", "--auto-approve")
    assert result.code == 1, result.text
    assert "Error: keypair.fresh: the cloud created it but" in result.err, result.err
    assert "tainted" in result.err and "Traceback" not in result.text
    entries = _entries(cli)
    assert entries["fresh"]["status"] == "tainted"
    assert not entries["fresh"].get("private_key")
    assert {k: v for k, v in entries.items() if k != "fresh"} == kept
    plan = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert plan.code == 2 and "keypair.fresh must be replaced" in plan.out, plan.text
    assert "private key never arrived" in plan.out
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    assert _entries(cli)["fresh"]["status"] == "ready" and _entries(cli)["fresh"]["private_key"]


@pytest.mark.parametrize("api", ["v2.1", "kps"])
@pytest.mark.parametrize("name", ["public-key-missing", "html", "keypair-number"])
def test_an_import_whose_answer_is_broken_is_confirmed_by_reading_it_back(
        cli: Cli, api: str, name: str) -> None:
    _managed(cli, api)
    kept = _entries(cli)
    mutate = {"public-key-missing": set_at("keypair.public_key"),
              "html": replace_body(b"<html>ok</html>"),
              "keypair-number": set_at("keypair", 9)}[name]
    cli.write(MANAGED + f"  - name: alice\n    public_key: {K1}\n")
    with mutating_proxy(cli.emulator.endpoint,
                        [Rule("POST", CREATE_PATH[api], mutate=mutate)]) as proxy:
        result = _through(cli, proxy.endpoint, "apply", "--auto-approve")
    assert result.code == 0, result.text  # the re-read found our public key: it is done
    entries = _entries(cli)
    assert entries["alice"]["status"] == "ready"
    assert {k: v for k, v in entries.items() if k != "alice"} == kept
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0
