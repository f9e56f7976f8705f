"""A real S3 server for the remote state tests (no tests here): moto's server in a child
process on 127.0.0.1, port 0, started once per test session, one fresh bucket per test.

Skips, naming the missing package, only where moto (with its server: flask, flask-cors) or
boto3 is not installed; ``pip install -e '.[test]'`` installs them.
"""

from __future__ import annotations

import atexit
import importlib.util
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from reconciler.model import S3Location
from reconciler.state.s3 import S3StateStore

SERVER = r"""
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the test process closes our stdin (or dies)
server.stop()
"""
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing-ak", "AWS_SECRET_ACCESS_KEY": "testing-sk"}
_server: subprocess.Popen[str] | None = None
_endpoint: str | None = None


def missing_package() -> str | None:
    for module, package in (("boto3", "boto3"), ("moto", "moto"), ("flask", "flask"),
                            ("flask_cors", "flask-cors")):
        if importlib.util.find_spec(module) is None:
            return package
    return None


def s3_endpoint() -> str:
    """The session's S3 server (started on first use, stopped at exit)."""
    global _server, _endpoint
    missing = missing_package()
    if missing is not None:
        pytest.skip(f"the S3 state tests need {missing} (pip install -e '.[test]')")
    if _endpoint is None:
        _server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert _server.stdout is not None
        port = _server.stdout.readline().strip()
        assert port.isdigit(), "the S3 server did not start"
        _endpoint = f"http://127.0.0.1:{port}"
        atexit.register(_stop)
    return _endpoint


def _stop() -> None:
    if _server is not None and _server.poll() is None:
        assert _server.stdin is not None
        _server.stdin.close()
        try:
            _server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _server.kill()
            _server.wait()
    if _server is not None and _server.stdout is not None:
        _server.stdout.close()


def s3_client() -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint(), region_name="us-east-1",
                        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


@dataclass
class Bucket:
    """A fresh bucket on the session's server, and a way to look inside it."""

    name: str
    endpoint: str
    client: Any

    def url(self, key: str = "team/state.json") -> str:
        return f"s3://{self.name}/{key}"

    def store(self, environ: dict[str, str], key: str = "team/state.json",
              **kw: Any) -> S3StateStore:
        location = S3Location(bucket=self.name, key=key, endpoint=self.endpoint)
        return S3StateStore(location, environ={**CREDENTIALS, **environ}, **kw)

    def listing(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name,
                                                                       Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))

    def read(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.name, Key=key)

    def snapshot(self) -> dict[str, bytes]:
        return {k: self.read(k) for k in self.listing()}


def new_bucket() -> Bucket:
    client = s3_client()
    name = f"state-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    return Bucket(name=name, endpoint=s3_endpoint(), client=client)
