"""Running the real CLI in-process against the emulator, with captured streams."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.api.flavours import make_api
from reconciler.api.protocol import ApiSettings, Credentials, KeyPairApi
from reconciler.cli import main
from reconciler.emulator.server import Emulator
from reconciler.env import Env
from reconciler.model import Api, Secret

HEADER = "apiVersion: reconciler/v1\nkind: KeyPairs\n"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Cli:
    emulator: Emulator
    root: Path
    api: str = "v2.1"
    extra_env: dict[str, str] = field(default_factory=dict)
    # Where state lives: () for --state ROOT/reconciler.state.json, or global options of
    # their own, e.g. ("--backend", "s3://bucket/key", "--backend-endpoint", URL).
    state_options: tuple[str, ...] = ()
    # More of the Env: e.g. {"clock": ..., "heartbeat": 0.2}.
    env_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.manifests = self.root / "manifests"
        self.manifests.mkdir(parents=True, exist_ok=True)
        self.state = self.root / "reconciler.state.json"
        key = self.root / "state.key"
        if not key.exists():
            fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(32))
        self.environ = {
            "HUAWEICLOUD_SDK_AK": self.emulator.ak,
            "HUAWEICLOUD_SDK_SK": self.emulator.sk,
            "RECONCILER_KEY_FILE": str(key),
            "HOME": str(self.root),
            "NO_COLOR": "1",
            **self.extra_env,
        }

    def write(self, body: str, name: str = "keys.yaml") -> Path:
        path = self.manifests / name
        path.write_text(HEADER + body)
        return path

    def __call__(self, *argv: str, stdin: str = "", globals_: bool = True,
                 extra: list[str] | None = None) -> Result:
        """Run the CLI; ``globals_`` adds state, endpoint, project and API flags, ``extra``
        adds flags of the caller's own."""
        out, err = io.StringIO(), io.StringIO()
        env = Env(stdin=io.StringIO(stdin), stdout=out, stderr=err, environ=dict(self.environ),
                  cwd=self.root, **self.env_options)
        where = list(self.state_options) or ["--state", str(self.state)]
        flags = [*where, "--endpoint", self.emulator.endpoint,
                 "--project-id", self.emulator.project_id, "--api", self.api] if globals_ else []
        code = main([*argv, *flags, *(extra or [])], env)
        return Result(code, out.getvalue(), err.getvalue())

    def client(self, api: str | None = None) -> KeyPairApi:
        """A client of our own, for changes made "outside reconciler"."""
        return make_api(ApiSettings(
            api=Api(api or self.api), endpoint=self.emulator.endpoint,
            project_id=self.emulator.project_id,
            credentials=Credentials(ak=self.emulator.ak, sk=Secret(self.emulator.sk))))

    def writes(self) -> int:
        c = self.emulator.counters()
        return sum(c.get(op, 0) for op in ("create", "import", "delete", "update"))
