"""The source distribution is the whole project: from the unpacked sdist the test suite runs
(its helpers, cases, golden files, data and manifests are all there), with the schemas,
examples, templates, the action, the docs and the licence. Built here with setuptools'
own backend (``build_meta.build_sdist``) in a copy of the tree, as ``python -m build`` does."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).parent.parent
SHIPPED = ("tests", "examples", "schemas", "templates", "docs", "bench")
TOP = ("LICENSE", "README.md", "pyproject.toml", "action.yml", "MANIFEST.in")
_JUNK = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache",
                               ".pytest_cache", ".hypothesis", ".benchmarks", "*.egg-info",
                               "build", "dist")


def _files(root: Path) -> set[str]:
    out = set()
    for top in SHIPPED:
        for path in (root / top).rglob("*"):
            rel = path.relative_to(root)
            caches = {"__pycache__", ".hypothesis"} & set(rel.parts)
            if (path.is_file() and not caches and path.suffix != ".pyc"
                    and not rel.as_posix().startswith("bench/results/")):
                out.add(rel.as_posix())
    return out


def _sdist(tmp: Path) -> set[str]:
    tree = tmp / "tree"
    shutil.copytree(ROOT, tree, symlinks=True, ignore=_JUNK)
    done = subprocess.run(
        [sys.executable, "-c", "from setuptools import build_meta as b; "
         "print(b.build_sdist('out'))"],
        cwd=tree, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    name = done.stdout.strip().splitlines()[-1]
    with tarfile.open(tree / "out" / name) as tar:
        prefix = name.removesuffix(".tar.gz") + "/"
        return {m.name.removeprefix(prefix) for m in tar.getmembers() if m.isfile()}


def test_the_sdist_holds_the_test_suite_and_everything_it_needs(tmp_path: Path) -> None:
    shipped = _sdist(tmp_path)
    missing = sorted((_files(ROOT) | set(TOP)) - shipped)
    assert not missing, f"not in the sdist: {missing[:20]}"
    for helper in ("conftest.py", "clihelp.py", "gitops_harness.py", "oidc_support.py",
                   "reliability_support.py"):
        assert f"tests/{helper}" in shipped
    assert "examples/gitops/.github/workflows/reconciler.yml" in shipped
    assert not [n for n in shipped if n.endswith(".pyc") or n.startswith(".ci/")]


def test_the_licence_is_the_apache_license_pyproject_names() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert 'license = {text = "Apache-2.0"}' in (ROOT / "pyproject.toml").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 11000
