"""Rotation without a gap, attacked: what an unlucky operator (or a hostile one) does while a
rotation of a bound key pair is under way, through the real CLI and the emulator's servers.

Each test leaves a rotation half done (``failure_rate`` 1.0 on the binding tasks: the new
generation exists, the servers are still on the old one) or drives one into a corner, and
checks the promise: no bound server is ever left accepting only a key that state does not
hold, nothing of another key pair is touched, and a bad state is a clear error.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler import keys
from reconciler.emulator.server import Emulator
from reconciler.model import Deposed, StateKeyPair
from reconciler.state.local import LocalStateStore
from tests.clihelp import Cli
from tests.test_bindings_e2e import key_names, server
from tests.test_emulator_kms import admin
from tests.test_rotation_e2e import accepted, cloud_names, held_keys, manifest, timelines

NO_CHANGES = "No changes. Your infrastructure matches the configuration."


@pytest.fixture()
def cli(emulator: Emulator, tmp_path: Path) -> Cli:
    admin(emulator, "POST", "binding", {"task_seconds": 0.02, "failure_rate": 0.0})
    return Cli(emulator, tmp_path, api="kps")


def _failing(emulator: Emulator, failing: bool) -> None:
    admin(emulator, "POST", "binding", {"failure_rate": 1.0 if failing else 0.0})


def _bound(cli: Cli, emulator: Emulator, body: str | None = None,
           names: tuple[str, ...] = ("web-1", "web-2")) -> None:
    for name in names:
        server(emulator, name)
    cli.write(body or manifest(list(names)))
    done = cli("apply", "--auto-approve", str(cli.manifests))
    assert done.code == 0, done.text


def _half_rotated(cli: Cli, emulator: Emulator, body: str | None = None) -> None:
    """``web`` bound to web-1 and web-2, rotated to web-g1 with every rebind failed: both
    generations in the cloud and in state, both servers still on ``web``."""
    _bound(cli, emulator, body)
    _failing(emulator, True)
    failed = cli("apply", "--auto-approve", "--replace", "web", str(cli.manifests))
    assert failed.code == 1, failed.text
    _failing(emulator, False)
    assert key_names(emulator) == {"web-1": "web", "web-2": "web"}
    assert cloud_names(cli) == {"web", "web-g1"}
    assert len(held_keys(cli)) == 2


def _servers_on_held_keys(cli: Cli, emulator: Emulator) -> None:
    held = held_keys(cli)
    for name, events in timelines(emulator).items():
        now = accepted(events[-1])
        assert now is None or now in held, f"{name} accepts only a key state does not hold"


def _edit(cli: Cli, change: Any) -> None:
    """Record ``change(entry)`` for every entry, as a (buggy or hand-made) writer would."""
    store = LocalStateStore(cli.state, environ=cli.environ)
    with store.lock(operation="apply", timeout=5):
        state = store.load()
        for entry in list(state.keypairs.values()):
            store.record(change(entry))
        store.commit()


# -- the current generation deleted outside reconciler mid-rotation --------------------------


def test_refresh_only_keeps_the_previous_generation_when_the_new_one_is_deleted_outside(
        cli: Cli, emulator: Emulator) -> None:
    _half_rotated(cli, emulator)
    client = cli.client()
    try:
        client.delete_keypair("web-g1")
    finally:
        client.close()
    plan = cli("plan", "--refresh-only", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert "previous generation 'web'" in plan.out, plan.out
    applied = cli("apply", "--refresh-only", "--auto-approve", str(cli.manifests))
    assert applied.code == 0, applied.text
    # the servers are on 'web', and state still holds its private key
    _servers_on_held_keys(cli, emulator)
    entry = json.loads(cli.state.read_text())["keypairs"]['keypair.web["default"]']
    assert entry["deposed"]["cloud_name"] == "web"
    done = cli("apply", "--auto-approve", str(cli.manifests))  # made again, then rebound
    assert done.code == 0, done.text
    assert key_names(emulator) == {"web-1": "web-g1", "web-2": "web-g1"}
    assert cloud_names(cli) == {"web-g1"}
    _servers_on_held_keys(cli, emulator)
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


# -- removing or destroying the key pair mid-rotation -----------------------------------------


@pytest.mark.parametrize("how", ["removed", "destroy"])
def test_a_key_pair_removed_mid_rotation_keeps_its_old_generation_while_servers_hold_it(
        cli: Cli, emulator: Emulator, how: str) -> None:
    _half_rotated(cli, emulator)
    _failing(emulator, True)  # the unbinds fail too
    if how == "removed":
        cli.write("keypairs: []\n")
        gone = cli("apply", "--auto-approve", str(cli.manifests))
    else:
        gone = cli("destroy", "--auto-approve", str(cli.manifests))
    assert gone.code == 1, gone.text
    assert key_names(emulator) == {"web-1": "web", "web-2": "web"}
    _servers_on_held_keys(cli, emulator)  # the old private key is still in state
    assert "web" in cloud_names(cli)
    _failing(emulator, False)
    if how == "removed":
        done = cli("apply", "--auto-approve", str(cli.manifests))
    else:
        done = cli("destroy", "--auto-approve", str(cli.manifests))
    assert done.code == 0, done.text
    assert key_names(emulator) == {"web-1": None, "web-2": None}
    assert cloud_names(cli) == set()
    assert held_keys(cli) == set()


# -- names: the next generation, and names that are someone's generation --------------------


def test_a_rotation_skips_a_generation_name_the_same_plan_creates(cli: Cli,
                                                                  emulator: Emulator) -> None:
    body = manifest(["web-1", "web-2"])
    _bound(cli, emulator, body)
    cli.write(body + "  - name: web-g1\n    generate: ed25519\n")
    plan = cli("plan", "--replace", "web", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert '~ cloud_name  = "web" -> "web-g2"' in plan.out, plan.out
    done = cli("apply", "--auto-approve", "--replace", "web", str(cli.manifests))
    assert done.code == 0, done.text
    assert key_names(emulator) == {"web-1": "web-g2", "web-2": "web-g2"}
    assert cloud_names(cli) == {"web-g1", "web-g2"}
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


def test_a_key_pair_named_as_another_ones_generation_is_refused_not_adopted(
        cli: Cli, emulator: Emulator) -> None:
    body = manifest(["web-1", "web-2"])
    _bound(cli, emulator, body)
    assert cli("apply", "--auto-approve", "--replace", "web", str(cli.manifests)).code == 0
    cli.write(body + "  - name: web-g1\n")
    imported = cli("import", "web-g1", str(cli.manifests))
    assert imported.code == 1, imported.text
    assert "generation 1 of keypair.web" in imported.err, imported.err
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 1, plan.text
    assert "generation 1 of keypair.web" in plan.err, plan.err
    assert "reconciler import web-g1" not in plan.err
    listed = cli("state", "list")
    assert listed.out.split() == ["web"]


# -- two key pairs trading servers, both rotated ----------------------------------------------


TRADE = ("keypairs:\n  - name: web\n    generate: ed25519\n    servers: [{a}]\n"
         "  - name: api\n    generate: ed25519\n    servers: [{b}]\n")


@pytest.mark.parametrize("replaced", [("web", "api"), ("web",)])
def test_two_key_pairs_trading_servers_while_rotating(cli: Cli, emulator: Emulator,
                                                     replaced: tuple[str, ...]) -> None:
    server(emulator, "s1")
    server(emulator, "s2")
    cli.write(TRADE.format(a="s1", b="s2"))
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    ever = set(held_keys(cli))
    cli.write(TRADE.format(a="s2", b="s1"))
    flags = [f for name in replaced for f in ("--replace", name)]
    done = cli("apply", "--auto-approve", *flags, str(cli.manifests))
    assert done.code == 0, done.text
    ever |= held_keys(cli)
    want = {"s1": "api-g1" if "api" in replaced else "api",
            "s2": "web-g1" if "web" in replaced else "web"}
    assert key_names(emulator) == want
    _servers_on_held_keys(cli, emulator)
    for name, events in timelines(emulator).items():
        assert all(accepted(e) in ever for e in events[1:]), name
    final = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert final.code == 0, final.text


# -- rotate_after due while a rotation is under way -------------------------------------------


def test_rotate_after_due_during_an_unfinished_rotation_lets_it_finish(
        emulator: Emulator, tmp_path: Path) -> None:
    admin(emulator, "POST", "binding", {"task_seconds": 0.02, "failure_rate": 0.0})
    now = [datetime.now(UTC)]
    cli = Cli(emulator, tmp_path, api="kps", env_options={"clock": lambda: now[0]})
    for name in ("web-1", "web-2"):
        server(emulator, name)
    cli.write("keypairs:\n  - name: web\n    generate: ed25519\n    rotate_after: 30d\n"
              "    servers: [web-1, web-2]\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    now[0] += timedelta(days=31)
    _failing(emulator, True)
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 1  # due: rotation fails
    _failing(emulator, False)
    now[0] += timedelta(days=31)  # the new generation is due too, before its servers moved
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert "Plan: 0 to add, 2 to change, 1 to destroy." in plan.out, plan.out
    done = cli("apply", "--auto-approve", str(cli.manifests))
    assert done.code == 0, done.text
    assert key_names(emulator) == {"web-1": "web-g1", "web-2": "web-g1"}
    assert cloud_names(cli) == {"web-g1"}


# -- a hand-made state ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["web-gateway", "web-g0", "web-g007", "web-g100", "web-g1"])
def test_a_deposed_generation_that_is_not_one_is_a_clear_error(cli: Cli, emulator: Emulator,
                                                               bad: str) -> None:
    _bound(cli, emulator)
    client = cli.client()
    try:  # someone else's key pair, which a deposed delete must never reach
        made = keys.generate_keypair("ed25519", comment="x")
        client.import_keypair(name="web-gateway", public_key=made.public_key)
    finally:
        client.close()

    def deposed(entry: StateKeyPair) -> StateKeyPair:
        return replace(entry, generation=1 if bad == "web-g1" else 0, deposed=Deposed(
            cloud_name=bad, public_key=entry.public_key,
            fingerprint_md5=entry.fingerprint_md5,
            fingerprint_sha256=entry.fingerprint_sha256))

    _edit(cli, deposed)
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 1, plan.text
    assert "deposed.cloud_name" in plan.err and "Traceback" not in plan.text, plan.text
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 1
    assert "web-gateway" in cloud_names(cli)


# -- the last check before an old generation is deleted -------------------------------------

def _unheld(cli: Cli, emulator: Emulator) -> dict[str, str]:
    """Servers accepting a key whose private key state does not hold: name -> key pair."""
    held = held_keys(cli)
    out = {}
    for name, events in timelines(emulator).items():
        now = accepted(events[-1])
        if now is not None and now not in held:
            out[name] = events[-1]["key_name"]
    return out


def _with_server_holding(emulator: Emulator, name: str, keypair: str) -> None:
    fleet, _ = emulator.compute._of(emulator.project_id)
    record = emulator._project(None).store.get(keypair)
    fleet.add(name=name, status="ACTIVE", image_type="gold", ssh_port_open=True, ssh_port=22,
              at_ms=int(datetime.now(UTC).timestamp() * 1000), key_name=keypair,
              public_key=record.public_key, fingerprint=record.fingerprint)


def _bound_two(cli: Cli, emulator: Emulator) -> None:
    for name in ("web-1", "web-2"):
        server(emulator, name)
    cli.write(manifest(["web-1", "web-2"]))
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0


def test_allow_bound_delete_spares_only_the_servers_it_warned_of(cli: Cli,
                                                                 emulator: Emulator) -> None:
    """--allow-bound-delete names the servers no manifest binds; declared servers whose
    rebind failed still hold the old generation, so it is kept for them."""
    _bound_two(cli, emulator)
    _with_server_holding(emulator, "other-z", "web")
    _failing(emulator, True)
    applied = cli("apply", "--auto-approve", "--replace", "web", "--allow-bound-delete",
                  str(cli.manifests))
    _failing(emulator, False)
    assert applied.code == 1, applied.text
    assert "other-z" in applied.text and "(--allow-bound-delete)" in applied.text
    assert "kept: 2 server(s) still hold 'web'" in applied.text, applied.text
    assert "web" in cloud_names(cli)
    assert not {k: v for k, v in _unheld(cli, emulator).items() if k != "other-z"}
    again = cli("apply", "--auto-approve", "--allow-bound-delete", str(cli.manifests))
    assert again.code == 0, again.text
    assert key_names(emulator)["web-1"] == key_names(emulator)["web-2"] == "web-g1"
    assert "web" not in cloud_names(cli)


def test_a_plan_that_only_deletes_an_old_generation_reads_the_servers_again(
        cli: Cli, emulator: Emulator) -> None:
    _bound_two(cli, emulator)
    _failing(emulator, True)
    assert cli("apply", "--auto-approve", "--replace", "web", str(cli.manifests)).code == 1
    _failing(emulator, False)
    fleet, _ = emulator.compute._of(emulator.project_id)
    store = emulator._project(None).store
    new = store.get("web-g1")
    for s in fleet.all():  # someone finished the rebinds in the console
        fleet.accept(s.id, at_ms=int(datetime.now(UTC).timestamp() * 1000), cause="REPLACE",
                     key_name="web-g1", public_key=new.public_key, fingerprint=new.fingerprint)
    compute, lists = emulator.compute, []
    handle = compute.handle

    def late(call: Any, **kw: Any) -> Any:  # a server holding 'web' appears after the plan
        reply = handle(call, **kw)
        if call.service == "ecs":
            lists.append(call)
            if len(lists) == 1:
                _with_server_holding(emulator, "late-z", "web")
        return reply

    compute.handle = late  # type: ignore[method-assign]
    try:
        applied = cli("apply", "--auto-approve", str(cli.manifests))
    finally:
        compute.handle = handle  # type: ignore[method-assign]
    assert len(lists) >= 2, applied.text  # read again right before the delete
    assert applied.code == 1 and "kept: 1 server(s) still hold 'web' (late-z" in applied.text
    assert "web" in cloud_names(cli) and not _unheld(cli, emulator)


def test_an_old_generation_a_task_is_binding_right_now_is_kept(cli: Cli,
                                                               emulator: Emulator) -> None:
    from reconciler.emulator.bindtasks import REPLACE

    _bound_two(cli, emulator)
    other = server(emulator, "other-z")
    _, book = emulator.compute._of(emulator.project_id)
    web = emulator._project(None).store.get("web")
    book.submit(server_id=other, server_name="other-z", keypair_name="web", operation=REPLACE,
                now=emulator.compute.now(), seconds=3.0, by_chance=False,
                public_key=web.public_key, fingerprint=web.fingerprint, ssh_port=22)
    applied = cli("apply", "--auto-approve", "--replace", "web", str(cli.manifests))
    assert applied.code == 1, applied.text
    assert "kept: KPS is binding 'web' to 1 server(s) right now (other-z" in applied.text
    assert "web" in cloud_names(cli)


def test_a_rebind_refusal_quoting_the_old_private_key_shows_none_of_it(
        cli: Cli, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A running server's rebind sends its current private key (``auth``); a refusal that
    quotes it back is withheld, in the error and in the --debug log."""
    import reconciler.emulator.kpsbind as kb

    _bound_two(cli, emulator)
    sent: list[str] = []
    check = kb.BindApi._check

    def quoting(server: Any, target: Any, record: Any, *, batch: bool) -> Any:
        if target.auth_key:
            sent.append(target.auth_key)
            lines = target.auth_key.strip().splitlines()
            raise kb._Refused("KPS.0106", "rejected key \x1b[31m" + "".join(lines[2:4]))
        return check(server, target, record, batch=batch)

    monkeypatch.setattr(kb.BindApi, "_check", staticmethod(quoting))
    applied = cli("--debug", "apply", "--auto-approve", "--replace", "web", str(cli.manifests))
    assert applied.code == 1 and sent, applied.text
    assert "KPS.0106" in applied.err and "withheld" in applied.err, applied.err
    public = " ".join(r.public_key for r in emulator._project(None).store.all())
    for key in sent:  # an OpenSSH private key embeds its public key: those pieces are public
        body = "".join(key.strip().splitlines()[1:-1])
        shown = [body[i:i + 24] for i in range(0, len(body) - 24, 24)
                 if body[i:i + 24] in applied.text and body[i:i + 24] not in public]
        assert not shown, [ln for ln in applied.text.splitlines() if any(p in ln for p in shown)]
    assert "\x1b" not in applied.text


def test_someone_elses_task_on_a_declared_server_is_not_taken_for_ours(
        cli: Cli, emulator: Emulator) -> None:
    from reconciler.emulator.bindtasks import REPLACE

    _bound_two(cli, emulator)
    console = cli.client()
    console.create_keypair(name="other")
    fleet, book = emulator.compute._of(emulator.project_id)
    other = emulator._project(None).store.get("other")
    web1 = next(s for s in fleet.all() if s.name == "web-1")
    book.submit(server_id=web1.id, server_name="web-1", keypair_name="other",
                operation=REPLACE, now=emulator.compute.now(), seconds=1.0, by_chance=False,
                public_key=other.public_key, fingerprint=other.fingerprint, ssh_port=22)
    applied = cli("apply", "--auto-approve", "--replace", "web", str(cli.manifests))
    assert applied.code == 1, applied.text
    assert "a KPS task is running on the server with key pair 'other'" in applied.err
    assert "web" in cloud_names(cli)  # the old generation stays: web-1 was not moved off it
