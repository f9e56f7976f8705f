"""Every ```yaml and ```sh block of the README and the docs is parsed, and checked as far as it
can be without a cloud: YAML blocks load, manifest-shaped ones (or fragments of one) pass
`reconciler validate`; every `reconciler …` command line in a sh block parses with the real
CLI parser; the blocks marked RUN below are run with bash in a temporary directory."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reconciler.cli import main
from reconciler.env import Env
from reconciler.parser import build_parser
from tests.test_gitops_ci import reconciler_commands

ROOT = Path(__file__).parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
               *(ROOT / "examples").rglob("README.md")])
FENCE = re.compile(r"^```(yaml|sh)\n(.*?)^```$", re.M | re.S)
K1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKwIjAMYc6uhQM4LzeXgHN/O/kezk2t2iqOT16iKzSCu"
MANIFEST_KEYS = {"apiVersion", "kind", "provider", "backend", "keypairs", "targets", "import"}
# sh blocks that are safe to run as they stand (offline, inside a temporary directory)
RUN = {"mkdir -p schemas && reconciler schema > schemas/manifest.schema.json"}


def _blocks(kind: str) -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            if m.group(1) == kind:
                line = text[:m.start()].count("\n") + 1
                out.append((f"{doc.relative_to(ROOT)}:{line}", m.group(2)))
    return out


def test_the_docs_have_blocks_of_both_kinds() -> None:
    assert len(_blocks("yaml")) >= 4 and len(_blocks("sh")) >= 5


def _validate(body: str, tmp: Path) -> tuple[int, str]:
    """`reconciler validate` of a manifest-shaped block, its elisions filled in: a public key
    written `AAAAC3Nz...` becomes a real one, and a `public_key_file` is created."""
    body = re.sub(r'public_key: "ssh-[^"]*\.\.\.[^"]*"', f'public_key: "{K1}"', body)
    for rel in re.findall(r"public_key_file: (\S+)", body):
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(K1 + "\n")
    if "apiVersion" not in body:
        body = "apiVersion: reconciler/v1\nkind: KeyPairs\n" + body
    (tmp / "m.yaml").write_text(body)
    out, err = io.StringIO(), io.StringIO()
    env = Env(stdin=io.StringIO(), stdout=out, stderr=err, environ={}, cwd=tmp)
    # a block may show fields of every API (the README marks them "kps only"): kps has them all
    argv = ["validate", str(tmp / "m.yaml")] + (["--api", "kps"] if "kps only" in body else [])
    return main(argv, env), out.getvalue() + err.getvalue()


@pytest.mark.parametrize(("where", "body"), _blocks("yaml"), ids=lambda v: v[:40])
def test_yaml_block(where: str, body: str, tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all(body))
    if not docs:  # a block of comments only, such as a schema line
        assert all(ln.startswith("#") for ln in body.splitlines() if ln.strip()), where
        return
    mapping = docs[0] if isinstance(docs[0], dict) else {}
    if mapping and set(mapping) <= MANIFEST_KEYS:
        code, text = _validate(body, tmp_path)
        assert code == 0, f"{where}: {text}"


@pytest.mark.parametrize(("where", "body"), _blocks("sh"), ids=lambda v: v[:40])
def test_sh_block(where: str, body: str, tmp_path: Path) -> None:
    check = subprocess.run(["bash", "-n"], input=body, text=True, capture_output=True,
                           check=False)
    assert check.returncode == 0, f"{where}: {check.stderr}"
    scripts = [body.replace("python3 -m reconciler", "reconciler")]
    parser = build_parser()
    for argv in reconciler_commands(scripts):
        if argv in (["--version"], ["--help"]):
            continue
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            raise AssertionError(f"{where}: reconciler {' '.join(argv)} does not parse") from exc
    if body.strip() in RUN:
        bindir = tmp_path / "bin"
        bindir.mkdir()
        shim = f'#!/bin/sh\nexec "{sys.executable}" -m reconciler "$@"\n'
        (bindir / "reconciler").write_text(shim)
        (bindir / "reconciler").chmod(0o755)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=tmp_path,
                              env={"PATH": f"{bindir}:/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                                   "HOME": str(tmp_path)},
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{where}: {done.stderr}"
        assert (tmp_path / "schemas" / "manifest.schema.json").read_text().startswith("{")


def test_every_run_block_is_still_in_the_docs() -> None:
    bodies = {b.strip() for _, b in _blocks("sh")}
    assert bodies >= RUN
