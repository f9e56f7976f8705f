"""Edges of plan and apply found in review: refused creates, x509 adoption, saved plans bound
to their cloud, refresh-only saved plans, state-only changes, failed replacements, and clear
errors for bad flags and damaged plan files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from reconciler.emulator.server import Emulator
from tests.clihelp import Cli

K1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKwIjAMYc6uhQM4LzeXgHN/O/kezk2t2iqOT16iKzSCu"


@pytest.fixture()
def cli(emulator: Emulator, tmp_path: Path) -> Cli:
    return Cli(emulator, tmp_path)


def _certificate(cn: str) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_create_refused_because_the_name_was_taken_meanwhile_leaves_state_alone(
        cli: Cli) -> None:
    cli.write("keypairs:\n  - name: web\n")
    assert cli("plan", "--out", "p.json", str(cli.manifests)).code == 0
    cli.emulator.set_faults(error_rate=1.0, statuses=[409], operations=["create"])
    refused = cli("apply", "--auto-approve", str(cli.manifests))
    assert refused.code == 1
    assert "keypair.web" in refused.err
    cli.emulator.set_faults()
    assert cli("state", "list").out == ""  # no pending entry left to replace someone's pair
    cli.client().create_keypair(name="web")  # someone else's, with the same name
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 1 and "reconciler import web" in plan.err  # never "must be replaced"


def test_x509_with_another_certificate_is_not_adopted(cli: Cli) -> None:
    cli.api = "v2"
    ours, theirs = _certificate("ours"), _certificate("theirs")
    cli.client().import_keypair(name="cert", public_key=theirs, type="x509")
    (cli.manifests / "cert.pem").write_text(ours)
    cli.write("keypairs:\n  - name: cert\n    type: x509\n    public_key_file: cert.pem\n")
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 1, plan.text
    assert "already exists in the cloud and is not managed" in plan.err
    (cli.manifests / "cert.pem").write_text(theirs)
    adopted = cli("plan", str(cli.manifests))
    assert "# keypair.cert will be imported" in adopted.out


def test_saved_plan_refuses_another_endpoint(cli: Cli) -> None:
    cli.write("keypairs:\n  - name: web\n")
    assert cli("plan", "--out", "p.json", str(cli.manifests)).code == 0
    elsewhere = cli("apply", "p.json", globals_=False,
                    extra=["--state", str(cli.state), "--endpoint", "http://127.0.0.1:9"])
    assert elsewhere.code == 1
    assert "made for another cloud" in elsewhere.err
    pinned = cli("apply", "p.json", globals_=False, extra=["--state", str(cli.state)])
    assert pinned.code == 0, pinned.text  # where it was made, from the plan alone


def test_saved_refresh_only_plan_records_drift(cli: Cli) -> None:
    cli.write("keypairs:\n  - name: web\n  - name: ci\n    generate: ed25519\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.client().delete_keypair("ci")
    saved = cli("plan", "--refresh-only", "--out", "r.json", str(cli.manifests))
    assert "# keypair.ci has been deleted" in saved.out
    assert "1 to forget." in saved.out, saved.out
    refused = cli("apply", "r.json")  # the command must repeat the plan's --refresh-only
    assert refused.code == 1 and "--refresh-only" in refused.err, refused.text
    assert cli("state", "list").out.split() == ["ci", "web"]
    applied = cli("apply", "--refresh-only", "r.json")
    assert applied.code == 0, applied.text
    assert "unverified. The plan: mode refresh-only. To check" in applied.out.splitlines()[0]
    assert "Apply complete! Resources: 0 added, 0 changed, 0 destroyed, 1 forgotten." in (
        applied.out), applied.out[-400:]
    assert cli("state", "list").out.split() == ["web"]


def test_gone_and_undesired_without_a_private_key_is_dropped_as_state_only_work(
        cli: Cli) -> None:
    cli.write(f"keypairs:\n  - name: web\n  - name: old\n    public_key: {K1}\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.client().delete_keypair("old")
    cli.write("keypairs:\n  - name: web\n")
    plan = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert "apply drops them from state" in plan.out and "old" in plan.out
    assert cli("apply", str(cli.manifests)).code == 0  # no prompt needed: the cloud is untouched
    assert cli("state", "list").out.split() == ["web"]


def test_dropping_an_entry_with_a_private_key_is_a_counted_approved_change(cli: Cli) -> None:
    """What a refresh read never quietly loses a private key: forgetting one is shown,
    counted (exit 2), needs approval, and the backup keeps the state that held it."""
    cli.write("keypairs:\n  - name: web\n  - name: old\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.client().delete_keypair("old")
    cli.write("keypairs:\n  - name: web\n")
    plan = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert plan.code == 2, plan.text
    assert "keypair.old will be removed from state, with its private key" in plan.out
    assert "reconciler output old --private-key --out FILE" in plan.out
    assert "Plan: 0 to add, 0 to change, 0 to destroy, 1 to forget." in plan.out
    before = cli.state.read_bytes()
    refused = cli("apply", str(cli.manifests))  # no terminal to ask on
    assert refused.code == 1 and "needs approval" in refused.err
    assert cli.state.read_bytes() == before
    kept = cli("output", "old", "--private-key", "--out", "old.key")
    assert kept.code == 0, kept.text
    done = cli("apply", "--auto-approve", str(cli.manifests))
    assert done.code == 0, done.text
    assert "keypair.old: Removed from state" in done.out
    assert "0 destroyed, 1 forgotten." in done.out
    assert cli("state", "list").out.split() == ["web"]
    assert cli.state.with_name(cli.state.name + ".backup").read_bytes() == before
    # A plan and an apply that change nothing leave the state and its backup alone.
    backup = cli.state.with_name(cli.state.name + ".backup").read_bytes()
    after = cli.state.read_bytes()
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    assert cli("plan", "--refresh-only", str(cli.manifests)).code == 0
    assert cli.state.read_bytes() == after
    assert cli.state.with_name(cli.state.name + ".backup").read_bytes() == backup


def test_prevent_destroy_alone_is_recorded_and_destroy_honours_the_manifest(cli: Cli) -> None:
    cli.write("keypairs:\n  - name: web\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.write("keypairs:\n  - name: web\n    prevent_destroy: true\n")
    assert cli("destroy", "--auto-approve", str(cli.manifests)).code == 1  # manifest protects
    plan = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert plan.code == 0 and "prevent_destroy = true in state" in plan.out
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.write("keypairs: []\n")
    assert cli("plan", str(cli.manifests)).code == 1  # now recorded: removing it is refused
    cli.write("keypairs:\n  - name: web\n    prevent_destroy: false\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.write("keypairs: []\n")
    gone = cli("apply", "--auto-approve", str(cli.manifests))
    assert gone.code == 0, gone.text
    assert "1 destroyed" in gone.out


def test_switching_from_kps_drops_the_description_without_a_change(cli: Cli) -> None:
    cli.api = "kps"
    cli.write("keypairs:\n  - name: web\n    description: ops key\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.api = "v2.1"
    cli.write("keypairs:\n  - name: web\n")
    plan = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert plan.code == 0, plan.text


def test_failed_replacement_reports_its_deletion(cli: Cli) -> None:
    cli.write("keypairs:\n  - name: ci\n    generate: ed25519\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    cli.emulator.set_faults(error_rate=1.0, statuses=[400], operations=["import"])
    failed = cli("apply", "--auto-approve", "--replace", "ci", str(cli.manifests))
    cli.emulator.set_faults()
    assert failed.code == 1
    assert "the old key pair was deleted, but its replacement failed" in failed.err
    assert "0 added, 0 changed, 1 destroyed" in failed.err
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


@pytest.mark.parametrize("argv, message", [
    (["plan", "--out", "/nonexistent/dir/p.json"], "cannot write the plan"),
    (["apply", "--parallelism", "0"], "must be at least 1"),
])
def test_bad_flags_are_clear_errors(cli: Cli, argv: list[str], message: str) -> None:
    cli.write("keypairs:\n  - name: web\n")
    result = cli(*argv, str(cli.manifests))
    assert result.code == 1  # never 2, which --detailed-exitcode reserves for changes
    assert message in result.err
    assert "internal error" not in result.err


def test_damaged_saved_plan_is_a_clear_error(cli: Cli) -> None:
    cli.write("keypairs:\n  - name: web\n")
    assert cli("plan", "--out", "p.json", str(cli.manifests)).code == 0
    doc = json.loads((cli.root / "p.json").read_text())
    doc["resource_changes"][0]["change"]["actions"] = ["explode"]
    (cli.root / "p.json").write_text(json.dumps(doc))
    result = cli("apply", "p.json")
    assert result.code == 1
    # An action no plan can have is caught when the plan is made again and compared.
    assert "Saved plan does not match what it pins: keypair.web" in result.err
    assert "internal error" not in result.err


def test_plan_problems_are_listed_once_with_a_count(cli: Cli) -> None:
    cli.client().create_keypair(name="web")
    cli.write("keypairs:\n  - name: web\n")
    result = cli("plan", str(cli.manifests))
    assert "Error: error:" not in result.err
    assert result.err.rstrip().endswith("Error: 1 problem found; nothing was changed.")


def test_apply_destroy_is_destroy(cli: Cli) -> None:
    """`apply --destroy` (Terraform's `apply -destroy`), the spelling a saved destroy plan's
    apply repeats."""
    cli.write("keypairs:\n  - name: web\n  - name: ci\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    both = cli("apply", "--destroy", "--refresh-only", "--auto-approve", str(cli.manifests))
    assert both.code == 1 and "cannot be combined" in both.err
    done = cli("apply", "--destroy", "--target", "ci", "--auto-approve", str(cli.manifests))
    assert done.code == 0 and "Destroy complete! Resources: 1 destroyed." in done.out, done.text
    assert cli("state", "list").out.split() == ["web"]
    assert set(cli.client().list_keypairs().keypairs) == {"web"}
