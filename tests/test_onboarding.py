"""Onboarding an existing estate, through the real CLI and the emulator over HTTP:
``import --all --generate-config-out``, the custody rule shared with ``import NAME``, and the
``import:`` list of a manifest (planned as imports, applied with no write to the cloud)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import keys
from reconciler.api.flavours import make_api
from reconciler.api.protocol import ApiSettings, Credentials, KeyPairApi
from reconciler.configgen import quote, render_manifest, word
from reconciler.emulator.server import Emulator
from reconciler.model import Api, Encryption, KeyProtection, Secret
from reconciler.onboarding import Declaration
from tests.clihelp import HEADER, Cli, Result
from tests.mutating_proxy import Rule, json_mutation, mutating_proxy

SOUTH = "0b1e5outh0000000000000000000000b"
CUSTODY = KeyProtection(encryption=Encryption(type="default"))
WRITES = ("create", "import", "delete", "update", "export", "import_private_key",
          "clear_private_key")


def _targets(emulator: Emulator, *, south_api: str = "kps") -> str:
    return ("targets:\n"
            f"  - {{name: north, region: cn-north-4, project_id: {emulator.project_id}, "
            "api: kps}\n"
            f"  - {{name: south, region: cn-south-1, project_id: {SOUTH}, api: {south_api}}}\n")


def _two(emulator: Emulator, tmp_path: Path, *, south_api: str = "kps") -> Cli:
    emulator.add_project(SOUTH, region="cn-south-1")
    cli = Cli(emulator, tmp_path)
    cli.write(_targets(emulator, south_api=south_api), name="targets.yaml")
    return cli


def _run(cli: Cli, *argv: str) -> Result:
    return cli(*argv, globals_=False,
               extra=["--state", str(cli.state), "--endpoint", cli.emulator.endpoint])


def _client(emulator: Emulator, project: str, api: str = "kps") -> KeyPairApi:
    return make_api(ApiSettings(api=Api(api), endpoint=emulator.endpoint, project_id=project,
                                credentials=Credentials(ak=emulator.ak, sk=Secret(emulator.sk))))


def _writes(emulator: Emulator) -> int:
    c = emulator.counters()
    return sum(c.get(op, 0) for op in WRITES)


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


def _estate(emulator: Emulator) -> dict[str, int]:
    """500 key pairs made directly through the emulator's API, in two kps projects: cloud
    generated (some in custody), imported ed25519/ECDSA/RSA keys, x509 certificates, both
    scopes, descriptions, and 40 names present in both targets with the same key."""
    north, south = _client(emulator, emulator.project_id), _client(emulator, SOUTH)
    rsa = keys.generate_keypair("rsa-2048").public_key
    made = {"north": 0, "south": 0}
    for side, api in (("north", north), ("south", south)):
        for i in range(150):  # cloud generated; every fifth in custody, every third account-wide
            api.create_keypair(name=f"{side}-gen-{i:03d}", key_protection=CUSTODY if i % 5 == 0
                               else None, scope="domain" if i % 3 == 0 else None)
        for i in range(50):
            algorithm = "ecdsa-p256" if i % 10 == 0 else "ed25519"
            public = keys.generate_keypair(algorithm, comment=f"{side}{i}@host").public_key
            api.import_keypair(name=f"{side}-imp-{i:03d}", public_key=public)
            if i % 4 == 0:
                api.update_description(f"{side}-imp-{i:03d}", f"imported {i} \"quoted\" # x")
        api.import_keypair(name=f"{side}-rsa", public_key=rsa)
        for i in range(4):
            api.import_keypair(name=f"{side}-cert-{i}", public_key=_certificate(f"{side}{i}"),
                               type="x509")
        made[side] = 150 + 50 + 1 + 4
    for i in range(40):  # one key, the same name, in both targets
        public = keys.generate_keypair("ed25519", comment=f"shared{i}").public_key
        for api in (north, south):
            api.import_keypair(name=f"shared-{i:02d}", public_key=public, scope="domain")
        made["north"] += 1
        made["south"] += 1
    assert sum(made.values()) == 490
    for i in range(10):  # and ten more, only in the south
        south.create_keypair(name=f"south-extra-{i}")
    made["south"] += 10
    return made


def test_import_all_onboards_500_key_pairs_and_the_next_plan_has_no_changes(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = _two(emulator, tmp_path)
    made = _estate(emulator)
    assert sum(made.values()) == 500
    before = _writes(emulator)
    # a dry run, twice, outside the manifests: the same bytes, and no state
    for name in ("a.yaml", "b.yaml"):
        dry = _run(cli, "import", "--all", "--dry-run", "--generate-config-out",
                   str(tmp_path / name), str(cli.manifests))
        assert dry.code == 0, dry.text
        assert "Dry run: state was not changed." in dry.out
        assert "is not where the manifests given are read from" in dry.err
    assert (tmp_path / "a.yaml").read_bytes() == (tmp_path / "b.yaml").read_bytes()
    assert not cli.state.exists()
    out = cli.manifests / "imported.yaml"
    first = _run(cli, "import", "--all", "--generate-config-out", str(out), str(cli.manifests))
    assert first.code == 0, first.text
    assert out.read_bytes() == (tmp_path / "a.yaml").read_bytes()
    assert "Adopted: 500 (500 declared in" in first.out
    assert "Skipped (already managed): 0." in first.out
    assert "Needs a decision: 0." in first.out
    assert "Requests: 2 to list, and 500 detail reads" in first.out
    assert "Private keys only the cloud holds: 60 (not copied into state" in first.out
    assert _writes(emulator) == before  # nothing written to the cloud, nothing exported
    text = out.read_text()
    assert text.startswith("# yaml-language-server: $schema=https://reconciler.dev/schemas/")
    assert "PRIVATE KEY" not in text and emulator.sk not in first.text
    doc = yaml.safe_load(text)
    by_name = {kp["name"]: kp for kp in doc["keypairs"]}
    assert len(by_name) == 460  # the 40 shared names are one declaration each
    assert by_name["shared-07"]["targets"] == ["north", "south"]
    assert by_name["north-gen-000"]["key_protection"] == {"encryption": {"type": "default"}}
    assert by_name["north-gen-003"]["scope"] == "domain"
    assert "scope" not in by_name["north-gen-001"]  # user: what a key pair without one has
    assert by_name["south-imp-004"]["description"] == 'imported 4 "quoted" # x'
    assert by_name["north-cert-1"]["type"] == "x509"
    assert by_name["south-extra-3"]["targets"] == ["south"]
    assert _run(cli, "validate", str(cli.manifests)).code == 0
    state = json.loads(cli.state.read_text())
    assert len(state["keypairs"]) == 500
    plan = _run(cli, "plan", "--detailed-exitcode", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert "No changes. Your infrastructure matches the configuration." in plan.out
    # a second run adds only what is new: here nothing, so no file and no state write
    state_bytes = cli.state.read_bytes()
    again = _run(cli, "import", "--all", "--generate-config-out",
                 str(cli.manifests / "imported-2.yaml"), str(cli.manifests))
    assert again.code == 0, again.text
    assert "Skipped (already managed): 500." in again.out and "Nothing new to adopt." in again.out
    assert "and 0 detail reads" in again.out
    assert not (cli.manifests / "imported-2.yaml").exists()
    assert cli.state.read_bytes() == state_bytes
    assert _writes(emulator) == before
    # ... and when something is new, only that, into a new file
    _client(emulator, SOUTH).create_keypair(name="late")
    third = _run(cli, "import", "--all", "--generate-config-out",
                 str(cli.manifests / "imported-2.yaml"), str(cli.manifests))
    assert third.code == 0, third.text
    assert "Adopted: 1 (1 declared in" in third.out
    assert [kp["name"] for kp in yaml.safe_load(
        (cli.manifests / "imported-2.yaml").read_text())["keypairs"]] == ["late"]
    assert _run(cli, "plan", "--detailed-exitcode", str(cli.manifests)).code == 0


def test_frozen_key_pairs_and_names_clashing_across_targets_need_a_decision(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = _two(emulator, tmp_path)
    north, south = _client(emulator, emulator.project_id), _client(emulator, SOUTH)
    north.import_keypair(name="dup", public_key=keys.generate_keypair("ed25519").public_key)
    south.import_keypair(name="dup", public_key=keys.generate_keypair("ed25519").public_key)
    north.create_keypair(name="cold")
    emulator.freeze("cold", 4)
    north.create_keypair(name="fine")
    result = _run(cli, "import", "--all", "--generate-config-out",
                  str(cli.manifests / "imported.yaml"), str(cli.manifests))
    assert result.code == 0, result.text
    assert "Needs a decision: 3." in result.out
    assert 'keypair.cold["north"]: the cloud has frozen it (frozen_state 4)' in result.out
    assert ('keypair.dup["north"]: \'dup\' is unmanaged in targets north, south with '
            "different public keys") in result.out
    assert 'keypair.dup["south"]:' in result.out
    names = [kp["name"] for kp in
             yaml.safe_load((cli.manifests / "imported.yaml").read_text())["keypairs"]]
    assert names == ["fine"]
    assert sorted(json.loads(cli.state.read_text())["keypairs"]) == ['keypair.fine["north"]']
    assert _run(cli, "plan", "--detailed-exitcode", str(cli.manifests)).code == 0


def test_a_key_shared_by_a_kps_and_a_v21_target_is_one_declaration(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = _two(emulator, tmp_path, south_api="v2.1")
    north, south = _client(emulator, emulator.project_id), _client(emulator, SOUTH, "v2.1")
    public = keys.generate_keypair("ed25519", comment="ops").public_key
    north.import_keypair(name="ops", public_key=public)
    south.import_keypair(name="ops", public_key=public)
    north.import_keypair(name="said", public_key=public)
    north.update_description("said", "kps only")
    south.import_keypair(name="said", public_key=public)
    result = _run(cli, "import", "--all", "--generate-config-out",
                  str(cli.manifests / "imported.yaml"), str(cli.manifests))
    assert result.code == 0, result.text
    doc = yaml.safe_load((cli.manifests / "imported.yaml").read_text())
    assert [(kp["name"], kp["targets"]) for kp in doc["keypairs"]] == [
        ("ops", ["north", "south"])]
    assert "with different descriptions: one declaration cannot describe them all" in result.out
    assert _run(cli, "plan", "--detailed-exitcode", str(cli.manifests)).code == 0


def test_import_all_refuses_to_overwrite_the_file_and_changes_nothing(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write("keypairs: []\n")
    cli.client().create_keypair(name="web")
    existing = tmp_path / "taken.yaml"
    existing.write_text("# mine\n")
    before = emulator.counters()
    result = cli("import", "--all", "--generate-config-out", str(existing), str(cli.manifests))
    assert result.code == 1
    assert "reconciler never overwrites it. Nothing was done." in result.err
    assert existing.read_text() == "# mine\n" and not cli.state.exists()
    assert all(emulator.counters()[op] == before[op] for op in WRITES)
    assert "Traceback" not in result.text
    missing = cli("import", "--all", str(cli.manifests))
    assert missing.code == 1 and "needs --generate-config-out FILE" in missing.err


def test_a_dry_run_file_is_adopted_by_plan_and_apply_with_no_write_to_the_cloud(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write("keypairs: []\n")
    api = cli.client()
    api.create_keypair(name="web", scope="domain")
    api.update_description("web", "front end")
    api.create_keypair(name="vault", key_protection=CUSTODY)
    dry = cli("import", "--all", "--dry-run", "--generate-config-out",
              str(cli.manifests / "imported.yaml"), str(cli.manifests))
    assert dry.code == 0, dry.text
    assert not cli.state.exists()
    plan = cli("plan", str(cli.manifests))
    assert "# keypair.web will be imported" in plan.out, plan.text
    assert "Plan: 2 to import, 0 to add, 0 to change, 0 to destroy." in plan.out
    before = _writes(emulator)
    applied = cli("apply", "--auto-approve", str(cli.manifests))
    assert applied.code == 0, applied.text
    assert _writes(emulator) == before  # the description was read, not written again
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0
    shown = cli("output", "vault", "--private-key")
    assert shown.code == 1  # the cloud keeps it; adoption did not export it


def test_custody_one_rule_for_import_name_and_import_all(emulator: Emulator,
                                                         tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    api = cli.client()
    api.create_keypair(name="vault", key_protection=CUSTODY)
    cli.write("keypairs:\n  - name: vault\n    key_protection: {encryption: {type: default}}\n")
    one = cli("import", "vault", str(cli.manifests))
    assert one.code == 0, one.text
    assert "held only by the cloud (key_protection); it was not copied" in one.out
    assert emulator.counters()["export"] == 0
    assert cli("output", "vault", "--private-key").code == 1
    assert cli("state", "rm", "vault").code == 0
    asked = cli("import", "vault", str(cli.manifests), "--export-private-keys")
    assert asked.code == 0, asked.text
    assert emulator.counters()["export"] == 1
    assert "PRIVATE KEY" in cli("output", "vault", "--private-key").out
    # import --all: not exported unless asked, and listed
    api.create_keypair(name="safe", key_protection=CUSTODY)
    listed = cli("import", "--all", "--generate-config-out",
                 str(cli.manifests / "imported.yaml"), str(cli.manifests))
    assert listed.code == 0, listed.text
    assert "Private keys only the cloud holds: 1 (not copied" in listed.out
    assert "  keypair.safe" in listed.out and emulator.counters()["export"] == 1
    api.create_keypair(name="kept", key_protection=CUSTODY)
    exported = cli("import", "--all", "--export-private-keys", "--generate-config-out",
                   str(cli.manifests / "imported-2.yaml"), str(cli.manifests))
    assert exported.code == 0, exported.text
    assert "Private keys exported into state (--export-private-keys): 1." in exported.out
    assert "PRIVATE KEY" in cli("output", "kept", "--private-key").out
    assert "PRIVATE KEY" not in exported.text
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


def test_an_import_list_is_planned_as_imports_and_applied_with_no_write(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path)
    cli.client().create_keypair(name="web")
    cli.write("keypairs:\n  - name: web\n  - name: ci\n    generate: ed25519\n"
              "import:\n  - to: keypair.web\n")
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert "# keypair.web will be imported" in plan.out
    assert "listed for import at manifests/keys.yaml:8" in plan.out
    assert "Plan: 1 to import, 1 to add, 0 to change, 0 to destroy." in plan.out
    doc = json.loads(cli("plan", "--format", "json", str(cli.manifests)).out)
    web = next(rc for rc in doc["resource_changes"] if rc["name"] == "web")
    assert web["change"]["actions"] == ["no-op"] and web["change"]["importing"] == {"id": "web"}
    assert doc["reconciler"]["imports"] == [
        {"to": "keypair.web", "location": ["manifests/keys.yaml", 8, 9]}]
    md = cli("plan", "--format", "markdown", str(cli.manifests)).out
    assert "import" in md and "web" in md
    saved = tmp_path / "plan.json"
    assert cli("plan", "--out", str(saved), str(cli.manifests)).code == 0
    before = emulator.counters()
    applied = cli("apply", str(saved))
    assert applied.code == 0, applied.text
    assert "keypair.web: Import complete" in applied.out
    after = emulator.counters()
    assert after["create"] == before["create"] and after["import"] == before["import"] + 1
    assert after["delete"] == before["delete"] and after["update"] == before["update"]
    # (the one import is ci's generated public key; web was adopted with no request)
    again = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert again.code == 0, again.text  # the entry stays; a managed key pair is a no-op


def test_an_import_of_a_key_pair_the_cloud_lacks_is_a_plan_error_at_its_line(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path)
    cli.write("keypairs:\n  - name: ghost\n\nimport:\n  - to: ghost\n")
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 1
    assert ("manifests/keys.yaml:7:9: error: keypair.ghost is listed for import, but the "
            "cloud holds no key pair 'ghost'\n") in plan.err
    assert "Traceback" not in plan.text
    assert not cli.state.exists()


def test_import_entries_are_checked_offline(emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path)
    cli.write("keypairs:\n  - name: web\n  - name: db\nimport:\n  - to: keypair.nope\n"
              "  - to: web\n  - to: keypair.web\n  - {to: 'keypair.db[\"prod\"]'}\n"
              "  - to: bad.web\n  - {to: db, id: x}\n")
    result = cli("validate", str(cli.manifests), globals_=False)
    assert result.code == 1
    err = result.err
    assert "keys.yaml:7:9: error: import[0].to: keypair.nope is not declared in keypairs" in err
    assert "keys.yaml:9:9: error: import[2].to: keypair.web is already listed for import at " \
           "manifests/keys.yaml:8:9" in err
    assert 'import[3].to: key pair "db" is not declared in target "prod" (no targets ' in err
    assert 'import[4].to: "bad.web" is not a key pair address: give a name' in err
    assert err.count("bad.web") == 1
    assert 'import[5].id: unknown key "id"' in err


def test_generated_text_is_stable_and_reads_back_as_written() -> None:
    odd = 'line\u2028sep\x85nel "q" \\ \t tab\x07 \U0001f511 é'
    d = Declaration(name="web", public_key="ssh-ed25519 AAAA x", description=odd,
                    targets=("a", "b"), custody=True, user_id="u1", scope="domain")
    text = render_manifest([d, Declaration(name="alpha", public_key="ssh-ed25519 BBBB")])
    assert text == render_manifest([Declaration(name="alpha", public_key="ssh-ed25519 BBBB"),
                                    d])
    loaded = yaml.safe_load(text)
    assert [kp["name"] for kp in loaded["keypairs"]] == ["alpha", "web"]
    assert loaded["keypairs"][1]["description"] == odd
    assert yaml.safe_load(quote(odd)) == odd
    for given in ("web", "yes", "No", "null", "123", "1e3", "-x", "a:b", "ON", "_x", "x-1"):
        assert yaml.safe_load(f"k: {word(given)}") == {"k": given}, given
    assert text.splitlines()[0].startswith("# yaml-language-server: $schema=")
    assert HEADER.splitlines()[0] in text


def test_import_all_in_one_target_and_with_a_target_that_cannot_be_read(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = _two(emulator, tmp_path)
    _client(emulator, emulator.project_id).create_keypair(name="n1")
    _client(emulator, SOUTH).create_keypair(name="s1")
    only = _run(cli, "import", "--all", "--in", "south", "--generate-config-out",
                str(cli.manifests / "south.yaml"), str(cli.manifests))
    assert only.code == 0, only.text
    assert sorted(json.loads(cli.state.read_text())["keypairs"]) == ['keypair.s1["south"]']
    emulator.set_unreachable(SOUTH, status=503, retry_after=0)
    _client(emulator, emulator.project_id).create_keypair(name="n2")
    cut = _run(cli, "import", "--all", "--generate-config-out",
               str(cli.manifests / "north.yaml"), str(cli.manifests))
    assert cut.code == 1, cut.text
    assert "Error: target south could not be read, so none of its key pairs were adopted" \
        in cut.err
    assert sorted(json.loads(cli.state.read_text())["keypairs"]) == [
        'keypair.n1["north"]', 'keypair.n2["north"]', 'keypair.s1["south"]']
    emulator.set_reachable(SOUTH)
    assert _run(cli, "plan", "--detailed-exitcode", str(cli.manifests)).code == 0
    emulator.set_unreachable(emulator.project_id, status=503, retry_after=0)
    emulator.set_unreachable(SOUTH, status=503, retry_after=0)
    none = _run(cli, "import", "--all", "--generate-config-out",
                str(cli.manifests / "none.yaml"), str(cli.manifests))
    assert none.code == 1, none.text
    assert "Read 0 key pairs in 0 targets.\n" in none.out
    assert "Nothing adopted." in none.out and "Nothing new" not in none.out


def test_import_all_needs_no_manifest_of_key_pairs(emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")  # an empty directory; flags say where
    cli.client().create_keypair(name="web")
    result = cli("import", "--all", "--generate-config-out", str(cli.manifests / "all.yaml"),
                 str(cli.manifests))
    assert result.code == 0, result.text
    assert "keypair.web: Import complete" in result.out
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


def test_a_saved_plan_with_an_edited_import_list_is_refused(emulator: Emulator,
                                                            tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path)
    cli.client().create_keypair(name="web")
    cli.client().create_keypair(name="db")
    cli.write("keypairs:\n  - name: web\n  - name: db\nimport:\n  - to: web\n  - to: db\n")
    saved = tmp_path / "plan.json"
    assert cli("plan", "--out", str(saved), str(cli.manifests)).code == 0
    doc = json.loads(saved.read_text())
    doc["reconciler"]["imports"] = doc["reconciler"]["imports"][:1]
    saved.write_text(json.dumps(doc))
    refused = cli("apply", str(saved))
    assert refused.code == 1 and "the file was edited" in refused.err, refused.text
    assert not cli.state.exists()


def _put(emulator: Emulator, name: str, public_key: str | None = None, **fields: object) -> None:
    """A key pair as a hostile or newer cloud may hold it, put straight into the emulator's
    store (its API refuses what the cloud may still answer with): served over HTTP as is."""
    from reconciler.emulator.store import Record, now_ms

    public_key = public_key or keys.generate_keypair("ed25519").public_key
    made = dict(type="ssh", user_id="u1", scope="user", description="")
    made.update(fields)
    emulator.store.add(lambda i: Record(
        name=name, public_key=public_key, fingerprint=keys.md5_fingerprint(public_key), id=i,
        created_ms=now_ms(), updated_ms=now_ms(), **made))  # type: ignore[arg-type]


def test_answers_a_manifest_cannot_hold_need_a_decision_and_the_rest_is_adopted(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write("keypairs: []\n")
    odd = 'a: b # c &a *a !!python/object:os.system ["x"] {x: 1}\n\x00\x1b\u2028 é 🔑'
    _put(emulator, "fine", description=odd)
    _put(emulator, "yes", keys.generate_keypair("ed25519").public_key + " x: y #z &q !!str")
    _put(emulator, "x" * 64)
    _put(emulator, "upper-type", type="SSH")
    _put(emulator, "new-scope", scope="project")
    _put(emulator, "lone-desc", description="half \ud800 a pair")
    _put(emulator, "lone-key", keys.generate_keypair("ed25519").public_key + " c\udc80mment")
    for name in ("a: b", "#x", "&a", "!!python/object:os.system", " lead", "ünï", "y" * 65):
        _put(emulator, name)
    out = cli.manifests / "imported.yaml"
    result = cli("import", "--all", "--generate-config-out", str(out), str(cli.manifests))
    assert result.code == 0, result.text
    assert "Traceback" not in result.text and "internal error" not in result.text
    assert "Adopted: 3 (3 declared in" in result.out
    assert "Needs a decision: 11." in result.out
    assert "keypair.upper-type: its type \"SSH\" is not one a manifest can declare" in result.out
    assert "keypair.new-scope: its scope \"project\" is not one a manifest can declare" \
        in result.out
    assert "keypair.lone-desc: its description is not text" in result.out
    assert "keypair.lone-key: its public key is not text" in result.out
    doc = yaml.safe_load(out.read_text())
    by_name = {kp["name"]: kp for kp in doc["keypairs"]}
    assert sorted(by_name) == sorted(["fine", "yes", "x" * 64])
    assert by_name["fine"]["description"] == odd
    assert by_name["yes"]["public_key"].endswith(" x: y #z &q !!str")
    plan = cli("plan", "--detailed-exitcode", str(cli.manifests))
    assert plan.code == 0, plan.text


def test_a_key_changed_between_the_list_and_its_detail_is_not_called_deleted(
        emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.emulator import views

    cli = Cli(emulator, tmp_path, api="kps")
    cli.write("keypairs: []\n")
    cli.client().create_keypair(name="web")
    other = keys.generate_keypair("ed25519").public_key
    shown = views.kps_detail

    def changed(r: object) -> dict[str, object]:  # the detail GET sees a key of its own
        doc = shown(r)  # type: ignore[arg-type]
        doc["keypair"].update(public_key=other, fingerprint=keys.md5_fingerprint(other))
        return doc

    monkeypatch.setattr(views, "kps_detail", changed)
    result = cli("import", "--all", "--generate-config-out",
                 str(cli.manifests / "imported.yaml"), str(cli.manifests))
    assert result.code == 0, result.text
    assert "keypair.web: its public key changed in the cloud while it was being read" \
        in result.out
    assert "deleted" not in result.out and not (cli.manifests / "imported.yaml").exists()


def test_a_file_name_the_next_plan_skips_is_warned_about(emulator: Emulator,
                                                         tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write("keypairs: []\n")
    for i, name in enumerate((".hidden.yaml", "imported.txt", "imported.YAML")):
        cli.client().create_keypair(name=f"k{i}")
        result = cli("import", "--all", "--dry-run", "--generate-config-out",
                     str(cli.manifests / name), str(cli.manifests))
        assert result.code == 0, result.text
        assert "is not where the manifests given are read from" in result.err, name
        (cli.manifests / name).unlink()
    cli.client().create_keypair(name="seen")
    read = cli("import", "--all", "--dry-run", "--generate-config-out",
               str(cli.manifests / "imported.yml"), str(cli.manifests))
    assert read.code == 0 and "is not where" not in read.err, read.text


def test_the_file_is_never_written_through_a_link_planted_beside_it(
        emulator: Emulator, tmp_path: Path) -> None:
    import os

    cli = Cli(emulator, tmp_path, api="kps")
    cli.write("keypairs: []\n")
    cli.client().create_keypair(name="web")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = cli.manifests / "imported.yaml"
    for suffix in ("part", "check.yaml"):  # the names the run writes beside FILE
        os.symlink(victim, cli.manifests / f".{out.name}.{os.getpid()}.{suffix}")
    result = cli("import", "--all", "--generate-config-out", str(out), str(cli.manifests))
    assert result.code == 0, result.text
    assert victim.read_text() == "precious\n"
    assert not out.is_symlink() and "keypair" in out.read_text()
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0
    # FILE itself a dangling link: named as one, nothing written
    cli.client().create_keypair(name="db")
    dangling = cli.manifests / "more.yaml"
    os.symlink(tmp_path / "nowhere.yaml", dangling)
    state = cli.state.read_bytes()
    refused = cli("import", "--all", "--generate-config-out", str(dangling),
                  str(cli.manifests))
    assert refused.code == 1, refused.text
    assert "is a symbolic link" in refused.err and "appeared" not in refused.err
    assert not (tmp_path / "nowhere.yaml").exists() and cli.state.read_bytes() == state


def test_a_file_under_a_file_is_a_clear_error(emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    keys_yaml = cli.write("keypairs: []\n")
    cli.client().create_keypair(name="web")
    result = cli("import", "--all", "--generate-config-out", str(keys_yaml / "x.yaml"),
                 str(cli.manifests))
    assert result.code == 1
    assert "internal error" not in result.text and "Traceback" not in result.text
    assert "Not a directory" in result.err and "Nothing was written" in result.err
    assert not cli.state.exists()


def _deltas(emulator: Emulator, before: dict[str, int]) -> dict[str, int]:
    """The requests of each kind since ``before``, those that were sent only."""
    after = emulator.counters()
    return {op: after[op] - before.get(op, 0) for op in after
            if after[op] != before.get(op, 0) and op != "total"}


def test_an_import_with_another_description_shows_the_update_and_makes_only_it(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    api = cli.client()
    api.create_keypair(name="web")
    api.update_description("web", "cloud text")
    cli.write("keypairs:\n  - name: web\n    description: declared text\n"
              "import:\n  - to: keypair.web\n")
    before = emulator.counters()
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert "# keypair.web will be updated in-place\n  # (imported from \"web\")\n" in plan.out
    assert '~ description = "cloud text" -> "declared text"' in plan.out
    assert "Plan: 1 to import, 0 to add, 1 to change, 0 to destroy." in plan.out
    assert _deltas(emulator, before) == {"list": 1, "get": 1}  # the adoption read in detail
    doc = json.loads(cli("plan", "--format", "json", str(cli.manifests)).out)
    (web,) = doc["resource_changes"]
    assert web["change"]["actions"] == ["update"]
    assert web["change"]["importing"] == {"id": "web"}
    assert (web["change"]["before"]["description"], web["change"]["after"]["description"]) == \
        ("cloud text", "declared text")
    assert doc["summary"] == {"import": 1, "add": 0, "change": 1, "destroy": 0, "forget": 0}
    assert "`<=` import, `~` update" in cli("plan", "--format", "markdown",
                                            str(cli.manifests)).out
    saved = tmp_path / "plan.json"
    assert cli("plan", "--out", str(saved), str(cli.manifests)).code == 0
    before = emulator.counters()
    applied = cli("apply", str(saved))
    assert applied.code == 0, applied.text
    assert "keypair.web: Importing..." in applied.out and "Modifying..." in applied.out
    assert "Resources: 1 imported, 0 added, 1 changed, 0 destroyed." in applied.out
    # the plan made again (list, detail), and the one write the plan showed
    assert _deltas(emulator, before) == {"list": 1, "get": 1, "update": 1}
    assert emulator.store.get("web").description == "declared text"
    assert '"declared text"' in cli("state", "show", "web").out
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


def test_an_import_whose_description_is_the_clouds_writes_nothing(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    api = cli.client()
    api.create_keypair(name="web")
    api.update_description("web", "same text")
    api.create_keypair(name="db")
    api.update_description("db", "set in the console")
    cli.write("keypairs:\n  - name: web\n    description: same text\n  - name: db\n"
              "import:\n  - to: keypair.web\n  - to: keypair.db\n")
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert "# keypair.web will be imported" in plan.out
    # db declares no description: the cloud's is cleared, and the plan says so
    assert '~ description = "set in the console" -> null' in plan.out
    assert "Plan: 2 to import, 0 to add, 1 to change, 0 to destroy." in plan.out
    before = emulator.counters()
    applied = cli("apply", "--auto-approve", str(cli.manifests))
    assert applied.code == 0, applied.text
    assert _deltas(emulator, before) == {"list": 1, "get": 2, "update": 1}
    assert emulator.store.get("web").description == "same text"
    assert emulator.store.get("db").description == ""
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


def test_an_adoption_with_another_scope_is_refused_by_every_path(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    cli.client().create_keypair(name="web", scope="domain")
    cli.write("keypairs:\n  - name: web\n    public_key_file: web.pub\nimport:\n"
              "  - to: keypair.web\n")
    (cli.manifests / "web.pub").write_text(emulator.store.get("web").public_key + "\n")
    before = emulator.counters()
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 1
    assert ("manifests/keys.yaml:4:5: error: keypair.web declares scope 'user', but the cloud "
            "holds it with scope 'domain'; a scope cannot change in place") in plan.err
    assert "declare what the cloud has (`scope: domain`)" in plan.err
    assert "Traceback" not in plan.text
    one = cli("import", "web", str(cli.manifests))
    assert one.code == 1 and "scope 'domain'" in one.err and "nothing was recorded" in one.err
    assert "manifests/keys.yaml:4:5" in one.err
    every = cli("import", "--all", "--generate-config-out", str(tmp_path / "more.yaml"),
                str(cli.manifests))
    assert every.code == 0, every.text
    assert "declared at manifests/keys.yaml:4:5" in every.out and "scope" in every.out
    assert not (tmp_path / "more.yaml").exists()
    assert _writes(emulator) == sum(before.get(op, 0) for op in WRITES)
    assert "web" not in cli("state", "list").out
    # declaring what the cloud has adopts it, and state says so
    cli.write("keypairs:\n  - name: web\n    public_key_file: web.pub\n    scope: domain\n"
              "import:\n  - to: keypair.web\n")
    assert cli("apply", "--auto-approve", str(cli.manifests)).code == 0
    assert '"domain"' in cli("state", "show", "web").out
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


def test_an_adoption_with_other_custody_is_refused_unless_reconciler_holds_the_key(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    api = cli.client()
    pair = keys.generate_keypair("ed25519")
    api.import_keypair(name="plain", public_key=pair.public_key)
    api.create_keypair(name="kept", key_protection=CUSTODY)
    (cli.manifests / "plain.pub").write_text(pair.public_key + "\n")
    cli.write("keypairs:\n  - name: plain\n    public_key_file: plain.pub\n"
              "    key_protection: {encryption: {type: default}}\n  - name: kept\n"
              "import:\n  - to: plain\n  - to: kept\n")
    before = emulator.counters()
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 1
    assert ("manifests/keys.yaml:4:5: error: keypair.plain declares key_protection "
            '{"encryption": {"type": "default"}}, but the cloud keeps no copy of its private '
            "key") in plan.err
    assert ("manifests/keys.yaml:7:5: error: keypair.kept declares no key_protection, but "
            "the cloud keeps a copy of its private key") in plan.err
    assert "reconciler import kept --export-private-keys" in plan.err
    refused = cli("import", "kept", str(cli.manifests))
    assert refused.code == 1 and "nothing was recorded" in refused.err, refused.text
    assert _writes(emulator) == sum(before.get(op, 0) for op in WRITES)
    # with the private key in state, the cloud's copy is cleared in place by the next plan
    taken = cli("import", "kept", str(cli.manifests), "--export-private-keys")
    assert taken.code == 0, taken.text
    # with the private key's file, the adoption hands it to the cloud's custody in place
    (cli.manifests / "plain.key").write_text(pair.private_key.reveal())
    cli.write("keypairs:\n  - name: plain\n    public_key_file: plain.pub\n"
              "    key_protection:\n      encryption: {type: default}\n"
              "      private_key_file: plain.key\n  - name: kept\n"
              "import:\n  - to: plain\n  - to: kept\n")
    plan = cli("plan", str(cli.manifests))
    assert plan.code == 0, plan.text
    assert "# keypair.plain will be updated in-place\n  # (imported from \"plain\")" in plan.out
    assert "~ key_protection" in plan.out
    assert "# keypair.kept will be updated in-place" in plan.out
    assert "Plan: 1 to import, 0 to add, 2 to change, 0 to destroy." in plan.out
    before = emulator.counters()
    applied = cli("apply", "--auto-approve", str(cli.manifests))
    assert applied.code == 0, applied.text
    # the list, plain's detail read, kept's read just before its clear (the cloud must still
    # hold the key state holds), and the two custody calls the plan showed
    assert _deltas(emulator, before) == {"list": 1, "get": 2, "import_private_key": 1,
                                         "clear_private_key": 1}
    assert emulator.store.get("plain").key_protection
    assert not emulator.store.get("kept").key_protection
    assert cli("plan", "--detailed-exitcode", str(cli.manifests)).code == 0


def _swapped_export(other: Secret):  # type: ignore[no-untyped-def]
    """The export answer with another key's private half in it (a broken or hostile answer)."""
    def change(doc: dict[str, Any]) -> dict[str, Any]:
        doc["keypair"]["private_key"] = other.reveal()
        return doc
    return json_mutation(change)


def test_an_exported_private_key_that_is_not_the_half_of_the_key_pair_is_never_kept(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    cli.client().create_keypair(name="vault", key_protection=CUSTODY)
    cli.write("keypairs: []\n")
    rule = Rule("POST", r"private-key/export", mutate=_swapped_export(
        keys.generate_keypair("ed25519").private_key))
    out = cli.manifests / "imported.yaml"
    with mutating_proxy(emulator.endpoint, [rule]) as proxy:
        every = cli("import", "--all", "--export-private-keys", "--generate-config-out",
                    str(out), str(cli.manifests), extra=["--endpoint", proxy.endpoint])
        cli.write("keypairs:\n  - name: vault\n    key_protection: {encryption: {type: default}}\n")
        one = cli("import", "vault", "--export-private-keys", str(cli.manifests),
                  extra=["--endpoint", proxy.endpoint])
    assert rule.hits == 2
    for result in (every, one):
        assert result.code == 1, result.text
        assert "keypair.vault: the private key the cloud exported is not the half of its " \
            "public key" in result.err, result.err
        assert "Traceback" not in result.text and "PRIVATE KEY" not in result.text
    assert not out.exists() and not cli.state.exists()  # nothing written, nothing adopted
    kept = cli("import", "vault", "--export-private-keys", str(cli.manifests))
    assert kept.code == 0, kept.text  # the true answer is taken
    assert keys.is_half_of(Secret(cli("output", "vault", "--private-key").out),
                           emulator.store.get("vault").public_key)


def test_a_description_holding_a_private_key_is_never_written_to_a_manifest(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write("keypairs: []\n")
    pasted = keys.generate_keypair("ecdsa-p256").private_key.reveal()
    _put(emulator, "pasted", description=pasted.strip())
    _put(emulator, "plain", description="a fine description")
    out = cli.manifests / "imported.yaml"
    result = cli("import", "--all", "--generate-config-out", str(out), str(cli.manifests))
    assert result.code == 0, result.text
    assert "keypair.pasted: its description holds a private key (not shown)" in result.out
    assert "Adopted: 1" in result.out and "Needs a decision: 1." in result.out
    body = "".join(ln for ln in pasted.splitlines() if "-----" not in ln)
    assert "PRIVATE KEY" not in out.read_text() + result.text
    assert body[20:60] not in out.read_text() + result.text
    cli.write("keypairs:\n  - name: typed\n    description: |\n" +
              "".join(f"      {ln}\n" for ln in pasted.splitlines()), name="typed.yaml")
    checked = cli("validate", str(cli.manifests))
    assert checked.code == 1 and "the description holds a private key (not shown)" \
        in checked.err, checked.text
    assert body[20:60] not in checked.text


@pytest.mark.parametrize("suffix", ["", ".backup", ".journal", ".lock"])
def test_the_file_is_never_the_state_or_a_file_beside_it(emulator: Emulator, tmp_path: Path,
                                                         suffix: str) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write("keypairs: []\n")
    cli.client().import_keypair(name="web", public_key=keys.generate_keypair("ed25519")
                                .public_key)
    out = cli.state.with_name(cli.state.name + suffix)
    result = cli("import", "--all", "--generate-config-out", str(out), str(cli.manifests))
    assert result.code == 1, result.text
    assert "is where the state" in result.err and "Nothing was done" in result.err, result.err
    assert not cli.state.exists() and not out.exists()


def test_import_name_of_a_frozen_key_pair_says_it_is_frozen(emulator: Emulator,
                                                           tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    cli.client().create_keypair(name="cold")
    emulator.freeze("cold", 4)
    cli.write("keypairs:\n  - name: cold\n")
    result = cli("import", "cold", str(cli.manifests))
    assert result.code == 0, result.text
    assert "Warning: keypair.cold: the cloud has frozen this key pair (frozen_state 4)" \
        in result.err, result.err


def test_an_import_of_a_key_pair_declared_with_errors_names_only_those(
        emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path)
    cli.write("keypairs:\n  - name: web\n    prevent_destroy: true\n    rotate_after: 90d\n"
              "import:\n  - to: keypair.web\n")
    result = cli("validate", str(cli.manifests), globals_=False)
    assert result.code == 1 and "rotate_after replaces the key pair" in result.err, result.text
    assert "not declared in keypairs" not in result.err, result.err


def test_the_file_is_never_the_state_key_file(emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli(emulator, tmp_path, api="kps")
    cli.write("keypairs: []\n")
    cli.client().import_keypair(name="web", public_key=keys.generate_keypair("ed25519")
                                .public_key)
    key = tmp_path / "state.key"
    key.unlink(missing_ok=True)  # made by this run's first write, after FILE
    result = cli("import", "--all", "--generate-config-out", str(key), str(cli.manifests))
    assert result.code == 1 and "the state key file" in result.err, result.text
