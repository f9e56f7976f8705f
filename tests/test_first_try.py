"""What a new user trips on, through the real CLI against the emulator: commands run from the
repository root (``-C``/``--chdir``, the manifests' path for ``state`` and ``output``), no state
found, ``--lock=false`` for plan only, ``apply --refresh-only``, x509 without a certificate,
and messages that lead somewhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_state_s3_support import CREDENTIALS, Bucket, new_bucket

from reconciler.emulator.server import Emulator
from tests.clihelp import Cli

K1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKwIjAMYc6uhQM4LzeXgHN/O/kezk2t2iqOT16iKzSCu"
KEYS = "keypairs:\n  - name: web\n  - name: ci\n    generate: ed25519\n"


@pytest.fixture()
def cli(emulator: Emulator, tmp_path: Path) -> Cli:
    return Cli(emulator, tmp_path)


def at_root(cli: Cli) -> Cli:
    """The same CLI without --state: where the state is comes from the directory alone."""
    cli.state_options = ("--lock-timeout", "0s")
    return cli


# --- commands that work from the repository root ------------------------------------------


def test_chdir_runs_the_command_from_that_directory(cli: Cli) -> None:
    at_root(cli).write(KEYS)
    for spelling in (["-C", "manifests"], ["--chdir", "manifests"], ["-chdir=manifests"]):
        planned = cli(*spelling, "plan")
        assert planned.code == 0, planned.text
        assert "Plan: 2 to add, 0 to change, 0 to destroy." in planned.out, spelling
    applied = cli("apply", "--auto-approve", "-C", "manifests")  # after the command, too
    assert applied.code == 0, applied.text
    assert (cli.manifests / "reconciler.state.json").exists()  # the default state, in DIR
    assert not (cli.root / "reconciler.state.json").exists()
    assert cli("-C", "manifests", "state", "list").out.split() == ["ci", "web"]
    missing = cli("-C", "nowhere", "plan")
    assert missing.code == 1 and "--chdir nowhere" in missing.err
    assert str(cli.root / "nowhere") in missing.err and "Traceback" not in missing.err


def test_state_and_output_read_the_backend_of_the_manifests_path(
        emulator: Emulator, tmp_path: Path) -> None:
    bucket: Bucket = new_bucket()
    cli = Cli(emulator, tmp_path, extra_env={**CREDENTIALS,
                                             "RECONCILER_BACKEND_ENDPOINT": bucket.endpoint},
              state_options=("--lock-timeout", "0s"))
    cli.write(f"backend:\n  s3: {{bucket: {bucket.name}, key: k/prod.json}}\n" + KEYS)
    assert cli("apply", "--auto-approve", "manifests").code == 0
    # From the repository root, given the manifests' path, as plan is given it.
    listed = cli("state", "list", "manifests")
    assert (listed.code, listed.out) == (0, "ci\nweb\n"), listed.text
    shown = cli("output", "ci", "manifests", "--private-key")
    assert shown.code == 0 and "PRIVATE KEY-----" in shown.out, shown.text
    # The options may come before the PATH as well (argparse alone would refuse the PATH).
    before = cli("output", "ci", "--private-key", "manifests")
    assert (before.code, before.out) == (0, shown.out), before.text
    stray = cli("output", "ci", "--private-key", "manifests", "--no-such-option")
    assert stray.code == 1 and "unrecognized arguments: manifests --no-such-option" in stray.err
    pulled = cli("state", "pull", "manifests")
    assert json.loads(pulled.out)["serial"] == 1
    assert cli("-C", "manifests", "state", "show", "web").code == 0
    assert not (tmp_path / "reconciler.state.json").exists()
    # Without the path, from the root: no state there, and the error says where it looked.
    here = cli("state", "list")
    assert here.code == 1 and here.out == ""
    assert f"no state found: {tmp_path / 'reconciler.state.json'} does not exist" in here.err
    assert "no backend block in the manifests of the working directory" in here.err
    assert "reconciler state list DIR" in here.err


def test_no_state_is_an_error_and_pull_invents_none(cli: Cli) -> None:
    at_root(cli).write(KEYS)
    for argv in (("state", "list"), ("state", "pull"), ("output", "web"),
                 ("state", "list", "manifests"), ("output", "web", "manifests")):
        result = cli(*argv)
        assert (result.code, result.out) == (1, ""), (argv, result.text)
        assert "no state found:" in result.err and "does not exist" in result.err, result.err
        assert "Run `reconciler apply` first" in result.err
    assert sorted(p.name for p in cli.root.iterdir()) == ["manifests", "state.key"]
    # A state that exists and is empty is no error: after a destroy, list prints nothing.
    assert cli("apply", "--auto-approve", "manifests").code == 0
    assert cli("destroy", "--auto-approve", "manifests").code == 0
    emptied = cli("state", "list")
    assert (emptied.code, emptied.out) == (0, ""), emptied.text


# --- --lock=false: plan only ------------------------------------------------------------


def test_plan_runs_without_the_lock_and_writers_refuse_it(cli: Cli) -> None:
    cli.write(KEYS)
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    from reconciler.state.local import LocalStateStore

    holder = LocalStateStore(cli.state, environ=cli.environ)
    before = cli.state.read_bytes()
    with holder.lock(operation="apply", timeout=0):
        locked = cli("plan", str(cli.manifests))
        assert locked.code == 1 and "Error acquiring the state lock" in locked.err
        for spelling in (["--lock=false"], ["--lock", "false"], ["-lock=false"]):
            planned = cli("plan", "--detailed-exitcode", str(cli.manifests), *spelling)
            assert planned.code == 0, planned.text
            assert "No changes." in planned.out
        for argv in (("apply", "--auto-approve", str(cli.manifests)),
                     ("destroy", "--auto-approve", str(cli.manifests)),
                     ("import", "web", str(cli.manifests)), ("state", "rm", "web"),
                     ("state", "push", str(cli.state))):
            refused = cli(*argv, "--lock=false")
            assert refused.code == 1, argv
            assert "--lock=false is for plan only" in refused.err, refused.err
            assert "two writers" in refused.err
    assert cli.state.read_bytes() == before
    assert cli.writes() == 2  # the first apply's creates; nothing since
    bad = cli("plan", "--lock=maybe", str(cli.manifests))
    assert bad.code == 1 and "'maybe' is not true or false" in bad.err


# --- apply --refresh-only ------------------------------------------------------------------


def test_apply_refresh_only_records_drift_and_leaves_the_cloud_alone(cli: Cli) -> None:
    cli.write(KEYS)
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.client().delete_keypair("ci")
    writes = cli.writes()
    asked = cli("apply", "--refresh-only", str(cli.manifests))
    assert asked.code == 1 and "--auto-approve" in asked.err  # it asks, as apply does
    applied = cli("apply", "--refresh-only", "--auto-approve", str(cli.manifests))
    assert applied.code == 0, applied.text
    assert "# keypair.ci has been deleted" in applied.out
    assert "keypair.ci: deleted outside reconciler; dropped from state" in applied.out
    # ci held its generated private key: the summary counts it as the plan did
    assert "Apply complete! Resources: 0 added, 0 changed, 0 destroyed, 1 forgotten." in (
        applied.out), applied.out
    assert cli.writes() == writes and cli.client().get_keypair("ci") is None
    assert cli("state", "list").out.split() == ["web"]
    again = cli("apply", "--refresh-only", "--auto-approve", str(cli.manifests))
    assert again.code == 0 and "No changes." in again.out, again.text


def test_refresh_only_apply_counts_the_private_keys_it_forgets(cli: Cli) -> None:
    """The plan says "1 to forget"; the apply that drops that private key from state says so
    in its summary too, as a normal apply does; a drifted entry without one is not counted."""
    cli.write(f"keypairs:\n  - name: gen-1\n  - name: imported\n    public_key: {K1}\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.client().delete_keypair("gen-1")
    cli.client().delete_keypair("imported")
    plan = cli("plan", "--refresh-only", str(cli.manifests))
    assert "Plan: 0 to add, 0 to change, 0 to destroy, 1 to forget." in plan.out, plan.out
    applied = cli("apply", "--refresh-only", "--auto-approve", str(cli.manifests))
    assert applied.code == 0, applied.text
    assert "Apply complete! Resources: 0 added, 0 changed, 0 destroyed, 1 forgotten." in (
        applied.out), applied.out[-400:]


# --- manifests -----------------------------------------------------------------------------


def test_x509_without_a_certificate_is_refused_at_validate_with_the_fix(cli: Cli) -> None:
    cli.write("keypairs:\n  - name: legacy\n    type: x509\n")
    for argv in (("validate", str(cli.manifests)), ("plan", str(cli.manifests))):
        result = cli(*argv)
        assert result.code == 1, result.text
        assert "keys.yaml:5:5: error: keypairs[0].type: a type x509 key pair needs its " \
               "certificate: the cloud generates ssh key pairs only" in result.err, result.err
        assert "public_key_file" in result.err
    assert cli.emulator.counters().get("list", 0) == 0  # refused before any API call


def test_x509_certificates_are_accepted_by_every_api_schema_included(
        emulator: Emulator, tmp_path: Path) -> None:
    from test_apply_edges import _certificate

    schema = json.loads(Cli(emulator, tmp_path)("schema", globals_=False).out)
    described = schema["$defs"]["keypair"]["properties"]["type"]["description"]
    assert "kps" in described and "v2 and v2.1)" not in described
    for api in ("v2", "v2.1", "kps"):
        name = "legacy-" + api.replace(".", "")
        cli = Cli(emulator, tmp_path / api, api=api)
        (cli.manifests / "cert.pem").write_text(_certificate(name))
        cli.write(f"keypairs:\n  - name: {name}\n    type: x509\n"
                  "    public_key_file: cert.pem\n")
        applied = cli("apply", "--auto-approve", str(cli.manifests))
        assert applied.code == 0, applied.text
        remote = cli.client().get_keypair(name)
        assert remote is not None and remote.type == "x509"
        again = cli("plan", "--detailed-exitcode", str(cli.manifests))
        assert again.code == 0, again.text


def test_a_missing_manifest_path_has_no_line_and_column(cli: Cli) -> None:
    result = cli("validate", "keypairs/")
    assert result.code == 1
    assert result.err.startswith("error: keypairs: no such file or directory\n"), result.err
    assert ":1:1" not in result.err and f"relative paths start at {cli.root}" in result.err


# --- advice that leads somewhere -----------------------------------------------------------

THEIRS = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKwIjAMYc6uhQM4LzeXgHN/O/kezk2t2iqOT16iKzSCu"


def test_exists_with_another_key_each_advice_works_as_written(cli: Cli) -> None:
    from reconciler.keys import generate_keypair

    ours = generate_keypair("ed25519").public_key
    cli.client().import_keypair(name="web", public_key=THEIRS)
    cli.write(f"keypairs:\n  - name: web\n    public_key: {ours}\n")
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 1
    assert "the cloud holds a different public key than the manifest declares" in plan.err
    for way in ("rename it in the manifest", "`reconciler import web`",
                "delete it in the cloud yourself"):
        assert way in plan.err, plan.err
    # Adopting, as advised, works; the next plan replaces it with the declared key.
    adopted = cli("import", "web", str(cli.manifests))
    assert adopted.code == 0, adopted.text
    assert "The next plan replaces it with the declared key" in adopted.err
    replaced = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert replaced.code == 2, replaced.text
    assert "# keypair.web must be replaced" in replaced.out
    assert "# forces replacement" in replaced.out
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    remote = cli.client().get_keypair("web")
    assert remote is not None and remote.public_key.split()[1] == ours.split()[1]
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


def test_exists_unknowable_adopt_then_replace_gives_a_key_state_holds(cli: Cli) -> None:
    cli.client().create_keypair(name="web")  # someone else's, generated by the cloud
    cli.write("keypairs:\n  - name: web\n")
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 1 and "`reconciler apply --replace web` afterwards" in plan.err
    assert cli("import", "web", str(cli.manifests)).code == 0
    no_key = cli("output", "web", "--private-key")
    assert no_key.code == 1 and "adopted from the cloud without its private key" in no_key.err
    assert cli("apply", "--auto-approve", "--replace", "web", str(cli.manifests)).code == 0
    held = cli("output", "web", "--private-key")
    assert held.code == 0 and "PRIVATE KEY-----" in held.out, held.text


def test_plain_http_500s_are_reported_as_answers_not_as_lost_answers(cli: Cli) -> None:
    cli.write(f"keypairs:\n  - name: alice\n    public_key: {THEIRS}\n  - name: web\n")
    cli.emulator.set_faults(error_rate=1.0, statuses=[500], operations=["import", "create"])
    failed = cli("apply", "--auto-approve", str(cli.manifests))
    cli.emulator.set_faults()
    assert failed.code == 1
    for name in ("alice", "web"):
        line = next(x for x in failed.err.splitlines() if x.startswith(f"Error: keypair.{name}"))
        assert "the cloud answered HTTP 500" in line, line
        assert "request id:" in line and "The service is failing" in line, line
        assert "lost" not in line, line
    assert cli.client().get_keypair("alice") is None  # nothing blindly duplicated
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0


@pytest.mark.parametrize(("ak_var", "sk_var"), [("HW_ACCESS_KEY", "HW_SECRET_KEY"),
                                                ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK")])
def test_a_wrong_sk_names_the_variables_that_were_used(
        emulator: Emulator, tmp_path: Path, ak_var: str, sk_var: str) -> None:
    cli = Cli(emulator, tmp_path)
    for name in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK"):
        del cli.environ[name]
    cli.environ.update({ak_var: emulator.ak, sk_var: "wrong-secret-key-0123456789"})
    cli.write(KEYS)
    result = cli("plan", str(cli.manifests))
    assert result.code == 1 and "Authentication failed" in result.err, result.text
    assert f"check the credentials (environment ({ak_var} / {sk_var})) and the time" \
        in result.err, result.err
    other = "HUAWEICLOUD_SDK" if ak_var.startswith("HW_") else "HW_"
    assert other not in result.err and "wrong-secret-key" not in result.err


def test_a_resumed_key_shows_the_public_half_it_will_upload(cli: Cli) -> None:
    cli.write("keypairs:\n  - name: ci\n    generate: ed25519\n")
    cli.emulator.set_faults(error_rate=1.0, statuses=[500], operations=["import"])
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 1
    cli.emulator.set_faults()
    held = json.loads(cli.state.read_text() if cli.state.exists() else
                      cli("state", "pull").out)["keypairs"]['keypair.ci["default"]']
    assert held["status"] == "pending" and held["public_key"].startswith("ssh-ed25519 ")
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert "resuming an interrupted apply with the key already in state" in plan.out
    body = plan.out.split("# keypair.ci will be created", 1)[1]
    assert "(known after apply)" not in body, body
    assert f'fingerprint = "{held["fingerprint_md5"]}"' in body, body
    assert "private_key = (sensitive value)" in body
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    remote = cli.client().get_keypair("ci")
    assert remote is not None and remote.fingerprint == held["fingerprint_md5"]


def test_without_a_terminal_a_long_apply_prints_still_creating(cli: Cli) -> None:
    import re
    import time
    from datetime import UTC, datetime, timedelta

    origin, real = datetime.now(UTC), time.monotonic()

    def fast() -> datetime:  # forty clock seconds to the real one: no ten-second wait
        return origin + timedelta(seconds=(time.monotonic() - real) * 40)

    cli.env_options = {"clock": fast, "heartbeat": 0.25}
    cli.write("keypairs:\n  - name: web\n")
    assert cli("plan", str(cli.manifests)).code == 0
    cli.emulator.set_faults(latency_ms=1200, operations=["create"])
    applied = cli("apply", "--auto-approve", str(cli.manifests))
    cli.emulator.set_faults(latency_ms=0)
    assert applied.code == 0, applied.text
    lines = applied.out.splitlines()
    start, end = lines.index("keypair.web: Creating..."), next(
        i for i, x in enumerate(lines) if x.startswith("keypair.web: Creation complete"))
    beats = lines[start + 1:end]
    assert beats, applied.out
    assert all(re.fullmatch(r"keypair\.web: Still creating\.\.\. \[\d+s elapsed\]", b)
               for b in beats), beats
    shown = [int(re.findall(r"\[(\d+)s", b)[0]) for b in beats]
    assert shown == sorted(shown) and shown[0] >= 8, shown  # ~10 clock seconds apart
    quiet = Cli(cli.emulator, cli.root / "quiet")
    quiet.write("keypairs:\n  - name: ci\n")
    assert "Still creating" not in quiet("apply", "--auto-approve", str(quiet.manifests)).out


def test_rotate_after_in_hours_explains_itself_in_hours(cli: Cli) -> None:
    from datetime import UTC, datetime, timedelta

    cli.write("keypairs:\n  - name: ci\n    generate: ed25519\n    rotate_after: 2h\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    later = datetime.now(UTC) + timedelta(hours=3, minutes=5)
    cli.env_options = {"clock": lambda: later}
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert "# keypair.ci must be replaced" in plan.out
    assert "(rotation due: created 3 hours 5 minutes ago, rotate_after is 2 hours)" \
        in plan.out, plan.out
    assert "0 days" not in plan.out
