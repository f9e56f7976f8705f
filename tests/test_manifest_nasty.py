"""Inputs that once got past the loader's limits or escaped as an internal error."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.env import Env

HEAD = "apiVersion: reconciler/v1\nkind: KeyPairs\n"
MERGE_BOMB = "a0: &a0 {x: 1}\n" + "".join(
    f"a{i}: &a{i} {{<<: [{', '.join([f'*a{i - 1}'] * 10)}]}}\n" for i in range(1, 11))


@pytest.mark.parametrize("body, code, message", [
    (MERGE_BOMB, 1, "merge keys expand to more than 10,000 nodes"),
    ("keypairs:\n  - name: !!timestamp xyz\n", 0, "Success!"),  # a tag that fails: its text
    ("keypairs:\n  - name: 0x" + "f" * 5000 + "\n", 1, "keypairs[0].name"),
])
def test_nasty_manifest_is_handled_quickly(tmp_path: Path, body: str, code: int,
                                           message: str) -> None:
    (tmp_path / "m.yaml").write_text(HEAD + body)
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    got = main(["validate", str(tmp_path)], Env(stdout=out, stderr=err, environ={},
                                                 cwd=tmp_path))
    assert time.monotonic() - started < 5
    assert got == code
    assert message in out.getvalue() + err.getvalue()
    assert "internal error" not in err.getvalue() and "Traceback" not in err.getvalue()


def test_empty_and_comment_only_files_in_a_manifest_directory_are_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(HEAD + "keypairs: []\n")
    (tmp_path / "b.yaml").write_text("")
    (tmp_path / "c.yml").write_text("# only a comment\n")
    err = io.StringIO()
    code = main(["validate", str(tmp_path)], Env(stdout=io.StringIO(), stderr=err, environ={},
                                                  cwd=tmp_path))
    assert code == 1
    assert "b.yaml:1:1: error: the file holds no YAML document" in err.getvalue()
    assert "c.yml:1:1: error: the file holds no YAML document" in err.getvalue()
