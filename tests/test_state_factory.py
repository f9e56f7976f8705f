"""Choosing the state backend, and --lock-timeout durations."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.duration import parse_duration
from reconciler.env import Env
from reconciler.errors import UsageError
from reconciler.model import S3Location
from reconciler.state.factory import LocalBackend, choose_backend, open_store
from reconciler.state.local import LocalStateStore


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0.0), ("0s", 0.0), ("30s", 30.0), ("2m", 120.0), ("1h", 3600.0), ("1.5s", 1.5),
    ("500ms", 0.5), ("1m30s", 90.0), ("1d", 86400.0), (" 10s ", 10.0), ("7", 7.0),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "-1s", "10x", "1 s", "1s2", "forever", "1e9s"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match=r"--lock-timeout: .* is not a duration; .*30s"):
        parse_duration(text)


def _choose(tmp_path: Path, *, environ: dict[str, str] | None = None, **kw: object) -> object:
    args: dict[str, object] = {"state_path": None, "backend": None, "backend_endpoint": None,
                               "manifest_backend": None}
    args.update(kw)
    return choose_backend(env=Env(environ=environ or {}, cwd=tmp_path), **args)  # type: ignore[arg-type]


def test_precedence_flag_then_environment_then_manifest_then_default(tmp_path: Path) -> None:
    manifest = S3Location(bucket="b", key="k.json", endpoint="https://obs")
    env = {"RECONCILER_STATE": "from-env.json"}
    assert _choose(tmp_path) == LocalBackend(tmp_path / "reconciler.state.json")
    assert _choose(tmp_path, manifest_backend=manifest) == S3Location("b", "k.json", "https://obs")
    assert _choose(tmp_path, environ=env, manifest_backend=manifest) == LocalBackend(
        tmp_path / "from-env.json")
    assert _choose(tmp_path, environ=env, state_path="/abs/flag.json") == LocalBackend(
        Path("/abs/flag.json"))
    assert _choose(tmp_path, environ=env, backend="s3://bk/a/b.json",
                   backend_endpoint="http://127.0.0.1:9000") == S3Location(
        "bk", "a/b.json", "http://127.0.0.1:9000")


@pytest.mark.parametrize("kw", [
    {"backend": "s3://only-bucket"}, {"backend": "gs://b/k"},
    {"backend": "s3://b/k", "state_path": "x.json"},
])
def test_bad_backend_choices_are_usage_errors(tmp_path: Path, kw: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        _choose(tmp_path, **kw)


def test_open_store_gives_a_local_or_an_s3_store(tmp_path: Path) -> None:
    pytest.importorskip("boto3", reason="the s3 backend needs boto3 (pip install -e '.[test]')")
    from reconciler.state.s3 import S3StateStore

    env = Env(environ={}, cwd=tmp_path)
    store = open_store(state_path=None, backend=None, backend_endpoint=None,
                       manifest_backend=None, env=env, notice=print)
    assert isinstance(store, LocalStateStore)
    assert store.description == str(tmp_path / "reconciler.state.json")
    remote = open_store(state_path=None, backend="s3://b/k", backend_endpoint=None,
                        manifest_backend=None, env=env, notice=print)
    assert isinstance(remote, S3StateStore) and remote.description == "s3://b/k"
    assert not any(tmp_path.iterdir())
