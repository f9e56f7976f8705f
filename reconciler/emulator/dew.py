"""KMS and CSMS (Huawei Cloud's Data Encryption Workshop) on the emulator's signed host.

``Dew`` holds each project's ``KeyRing`` and ``Vault`` (made on first use, all forgotten by
``reset``; they live in memory only, never in the ``--data`` file), routes
``/v1.0/{project_id}/kms/…`` (``kmsapi``) and ``/v1/{project_id}/secrets…`` (``csmsapi``),
and renders their errors in each service's own shape: KMS
``{"error": {"error_code": "KMS.xxxx", "error_msg": …}}``, CSMS
``{"error_code": "CSMS.xxxx", "error_msg": …}``. Signatures, project checks, latency,
outages and faults are the server's business, as for the key pair APIs.

May import: ``reconciler.emulator.{kms,kmsapi,csms,csmsapi,handlers,jsonbody}``, the
standard library.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.emulator import csmsapi, kmsapi
from reconciler.emulator.csms import CsmsProblem, Vault
from reconciler.emulator.handlers import Reply
from reconciler.emulator.jsonbody import BodyError, parse_json_body
from reconciler.emulator.kms import KeyRing, KmsProblem
from reconciler.emulator.kmsapi import Where

KMS_PREFIX, CSMS_PREFIX = "v1.0", "v1"
OPERATIONS = (*kmsapi.OPERATIONS, *csmsapi.OPERATIONS)
# the operations that change something: an injected lost answer may hit these
WRITE_OPERATIONS = frozenset({*kmsapi.WRITE_OPERATIONS, *csmsapi.WRITE_OPERATIONS})


@dataclass(frozen=True, slots=True)
class DewCall:
    service: str  # "kms" | "csms"
    operation: str
    project_id: str
    args: tuple[str, ...] = ()  # CSMS: the secret name, "versions" or "stages", the id


def serves(segments: list[str]) -> bool:
    """Whether a path is KMS's or CSMS's (``/v1.0/{project}/kms/…``, ``/v1/{project}/…``)."""
    return len(segments) >= 2 and segments[0] in (KMS_PREFIX, CSMS_PREFIX)


def project_of(segments: list[str]) -> str | None:
    return segments[1] if serves(segments) else None


def service_of(segments: list[str]) -> str:
    return "kms" if segments[:1] == [KMS_PREFIX] else "csms"


def error_body(service: str, code: str, message: str) -> dict[str, object]:
    if service == "kms":
        return {"error": {"error_code": code, "error_msg": message}}
    return {"error_code": code, "error_msg": message}


def status_error(service: str, status: int, message: str) -> Reply:
    """An error of ``status`` with the service's generic code (injected faults, 5xx)."""
    prefix = "KMS" if service == "kms" else "CSMS"
    return Reply(status, error_body(service, f"{prefix}.{status:04d}", message))


def _problem(service: str, exc: KmsProblem | CsmsProblem) -> Reply:
    return Reply(exc.status, error_body(service, exc.code, exc.message))


class Dew:
    """Every project's keys and secrets; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._projects: dict[str, tuple[KeyRing, Vault]] = {}

    def of(self, project_id: str) -> tuple[KeyRing, Vault]:
        with self._lock:
            held = self._projects.get(project_id)
            if held is None:
                ring = KeyRing()
                held = (ring, Vault(ring))
                self._projects[project_id] = held
            return held

    def keys(self, project_id: str) -> KeyRing:
        return self.of(project_id)[0]

    def vault(self, project_id: str) -> Vault:
        return self.of(project_id)[1]

    def reset(self) -> None:
        with self._lock:
            self._projects.clear()

    def route(self, method: str, segments: list[str], *,
              request_id: str) -> DewCall | Reply:
        """The call a KMS or CSMS path addresses, or the error answer (404, 405)."""
        service, pid, rest = service_of(segments), segments[1], segments[2:]
        try:
            if service == "kms":
                operation = kmsapi.route(method, rest[1:]) if rest[:1] == ["kms"] else None
                call = None if operation is None else DewCall("kms", operation, pid)
            else:
                found = csmsapi.route(method, rest)
                call = None if found is None else DewCall("csms", found[0], pid, found[1])
        except (KmsProblem, CsmsProblem) as exc:
            return _problem(service, exc)
        if call is None:
            return Reply(404, {"errorCode": "APIGW.0101", "request_id": request_id,
                               "errorMsg": "The API does not exist or has not been published"})
        return call

    def handle(self, call: DewCall, *, body: bytes, query: Mapping[str, str],
               where: Where) -> Reply:
        try:
            parsed = parse_json_body(body)
        except BodyError as exc:
            code = "KMS.0202" if call.service == "kms" else "CSMS.0004"
            return Reply(400, error_body(call.service, code, str(exc)))
        ring, vault = self.of(call.project_id)
        try:
            if call.service == "kms":
                answer = kmsapi.KmsApi(ring, where).handle(call.operation, body=parsed,
                                                           query=query)
                return Reply(200, answer)
            status, doc = csmsapi.CsmsApi(vault).handle(call.operation, call.args,
                                                        body=parsed, query=query)
            return Reply(status, doc)
        except (KmsProblem, CsmsProblem) as exc:
            return _problem(call.service, exc)
