"""P6 in a process of its own: reconciler's refresh against a per-key-pair GET refresh.

Usage: ``python -m bench.refresh_probe N PARALLELISM`` with the API settings in the
environment (``BENCH_ENDPOINT``, ``BENCH_PROJECT_ID``, ``BENCH_API`` and the usual
``HUAWEICLOUD_SDK_AK``/``_SK``). Prints one JSON object: for each way, wall seconds, requests
sent (every attempt counts) and how many of the N names it found.

The baseline is what the Terraform provider does on refresh: one GET per managed key pair
(``huaweicloud_compute_keypair``'s Read), ``PARALLELISM`` at a time as ``terraform plan``
walks resources (its default -parallelism is 10). Both ways use the same client
(``make_api``), over the same pooled connections, against the same emulator.

May import: the standard library, ``reconciler``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from reconciler.api.flavours import make_api
from reconciler.api.protocol import ApiSettings, Credentials, KeyPairApi
from reconciler.model import Api, Secret
from reconciler.refresh import refresh


def _api() -> KeyPairApi:
    """The same client the CLI builds (one pooled, signing, retrying session)."""
    env = os.environ
    return make_api(ApiSettings(
        api=Api(env["BENCH_API"]), endpoint=env["BENCH_ENDPOINT"],
        project_id=env["BENCH_PROJECT_ID"],
        credentials=Credentials(ak=env["HUAWEICLOUD_SDK_AK"],
                                sk=Secret(env["HUAWEICLOUD_SDK_SK"]))))


def _sent(api: KeyPairApi) -> int:
    """Requests the adapter's client sent, every attempt counted."""
    return int(getattr(api, "requests_sent", 0))


def by_list(names: list[str]) -> dict[str, float]:
    api = _api()
    try:
        start = time.perf_counter()
        snapshot = refresh(api)
        wall = time.perf_counter() - start
        found = sum(1 for n in names if n in snapshot.keypairs)
        return {"wall": wall, "requests": float(_sent(api)), "found": float(found)}
    finally:
        api.close()


def by_get(names: list[str], parallelism: int) -> dict[str, float]:
    api = _api()
    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=parallelism) as pool:
            got = list(pool.map(api.get_keypair, names))
        wall = time.perf_counter() - start
        found = sum(1 for g in got if g is not None)
        return {"wall": wall, "requests": float(_sent(api)), "found": float(found)}
    finally:
        api.close()


def main() -> None:
    n, parallelism = int(sys.argv[1]), int(sys.argv[2])
    names = [f"kp-{i:05d}" for i in range(n)]
    result = {"list": by_list(names), "get": by_get(names, parallelism)}
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
