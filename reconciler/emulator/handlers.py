"""The key pair operations of the three APIs (v2, v2.1 Nova os-keypairs; kps v3), per project.

``route`` maps a method and path to an ``ApiCall`` (which API, which operation, which project,
which name); ``Backend.handle`` carries it out on the store of the call's project and returns a
``Reply`` in that API's shape.
Signatures, faults and latency are the server's business, not this module's.

Operation names (also the counter names): ``list``, ``get``, ``create`` (the cloud generates),
``import`` (a public key given), ``delete``, ``update`` (description), ``export``,
``import_private_key``, ``clear_private_key``, ``batch_import`` (kps: up to 10 public keys
in one request, each one made or refused on its own).

May import: ``reconciler.emulator.{store,projects,views,keywork,jsonbody}``,
``reconciler.model``, the standard library.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from reconciler.emulator import views
from reconciler.emulator.jsonbody import BodyError, parse_json_body
from reconciler.emulator.keywork import KeyProblem, check_private_matches, fingerprint_of, generate
from reconciler.emulator.projects import Projects
from reconciler.emulator.store import Record, Store, StoreError, now_ms
from reconciler.model import NAME_PATTERN

NAME_RE = re.compile(NAME_PATTERN)
NOVA_PREFIXES = {"v2": "v2", "v2.1": "v2.1"}
KPS_MAX_LIMIT = 1000
KPS_DEFAULT_LIMIT = 50
NOVA_MAX_LIMIT = 1000
PAGINATION_MICROVERSION = (2, 35)
MAX_DESCRIPTION = 255
KPS_BATCH_LIMIT = 10  # "单次批量导入不得超过10条记录" (the SDK's batch_import_keypair)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any = None  # None: no body at all
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApiCall:
    api: str  # "v2" | "v2.1" | "kps"
    operation: str
    project_id: str
    name: str | None = None


class ApiProblem(Exception):
    """An error answer, rendered in the calling API's shape."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        self.status = status
        self.message = message
        self.code = code
        super().__init__(message)


def split_path(raw_path: str) -> list[str]:
    return [unquote(seg) for seg in raw_path.strip("/").split("/")] if raw_path.strip("/") else []


def project_of(segments: list[str]) -> str | None:
    """The project id of an API path (``/v2|v2.1|v3/{project_id}/…``), else None."""
    if len(segments) >= 2 and segments[0] in ("v2", "v2.1", "v3"):
        return segments[1]
    return None


def _nova_route(method: str, api: str, pid: str, rest: list[str]) -> ApiCall | None:
    if rest == ["os-keypairs"]:
        ops = {"GET": "list", "POST": "create"}
    elif len(rest) == 2 and rest[0] == "os-keypairs":
        ops = {"GET": "get", "DELETE": "delete", "PUT": "update"}
    else:
        return None
    if method not in ops:
        raise ApiProblem(405, f"method {method} is not allowed here")
    return ApiCall(api, ops[method], pid, rest[1] if len(rest) == 2 else None)


_KPS_FIXED = {
    ("private-key", "export"): "export",
    ("private-key", "import"): "import_private_key",
}


def _kps_route(method: str, pid: str, rest: list[str]) -> ApiCall | None:
    if not rest or rest[0] != "keypairs":
        return None
    tail = tuple(rest[1:])
    name: str | None = None
    if not tail:
        ops = {"GET": "list", "POST": "create"}
    elif tail == ("batch-import",) and method == "POST":
        ops = {"POST": "batch_import"}  # GET, PUT, DELETE: a key pair named batch-import
    elif tail in _KPS_FIXED:
        ops = {"POST": _KPS_FIXED[tail]}
    elif len(tail) == 1:
        ops, name = {"GET": "get", "PUT": "update", "DELETE": "delete"}, tail[0]
    elif len(tail) == 2 and tail[1] == "private-key":
        ops, name = {"DELETE": "clear_private_key"}, tail[0]
    else:
        return None
    if method not in ops:
        raise ApiProblem(405, f"method {method} is not allowed here")
    return ApiCall("kps", ops[method], pid, name)


def route(method: str, segments: list[str]) -> ApiCall | None:
    """The API call a request addresses; None for an unknown path; ``ApiProblem`` (405)."""
    if len(segments) < 3:
        return None
    prefix, pid, rest = segments[0], segments[1], segments[2:]
    if prefix in NOVA_PREFIXES:
        return _nova_route(method, NOVA_PREFIXES[prefix], pid, rest)
    if prefix == "v3":
        return _kps_route(method, pid, rest)
    return None


def api_of(segments: list[str]) -> str:
    """Which API's error shape a path should get (kps for ``/v3``, else Nova)."""
    return "kps" if segments[:1] == ["v3"] else "v2.1"


def parse_body(raw: bytes) -> Any:
    """The body as strict JSON (``jsonbody``), or a 400 saying what is wrong with it."""
    try:
        return parse_json_body(raw)
    except BodyError as exc:
        raise ApiProblem(400, str(exc)) from None


def keypair_of(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("keypair"), dict):
        raise ApiProblem(400, "the request body must be {\"keypair\": {...}}")
    keypair: dict[str, Any] = body["keypair"]
    return keypair


def refine_operation(call: ApiCall, body: Any) -> ApiCall:
    """``create`` becomes ``import`` when the body carries a public key."""
    if call.operation != "create":
        return call
    kp = body.get("keypair") if isinstance(body, dict) else None
    if isinstance(kp, dict) and kp.get("public_key") not in (None, ""):
        return ApiCall(call.api, "import", call.project_id, call.name)
    return call


def _string(kp: Mapping[str, Any], key: str, *, default: str | None = None) -> str | None:
    value = kp.get(key, default)
    if value is not None and not isinstance(value, str):
        raise ApiProblem(400, f"{key} must be a string")
    return value


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ApiProblem(
            400,
            "invalid key pair name: use 1 to 64 letters, digits, underscores and hyphens",
        )
    return name


def _check_protection(kp: Mapping[str, Any], api: str) -> dict[str, Any] | None:
    prot = kp.get("key_protection")
    if prot is None:
        return None
    if api == "v2":
        raise ApiProblem(400, "key_protection is not supported by the v2 API; use v2.1 or kps")
    enc = prot.get("encryption") if isinstance(prot, dict) else None
    if not isinstance(enc, dict) or enc.get("type") not in ("default", "kms"):
        raise ApiProblem(400, "key_protection.encryption.type must be 'default' or 'kms'")
    if enc["type"] == "kms" and not (enc.get("kms_key_name") or enc.get("kms_key_id")):
        raise ApiProblem(400, "encryption type kms needs kms_key_name or kms_key_id")
    pk = prot.get("private_key")
    if pk is not None and not isinstance(pk, str):
        raise ApiProblem(400, "key_protection.private_key must be a string")
    assert isinstance(prot, dict)
    return prot


def _encryption(prot: Mapping[str, Any]) -> dict[str, str]:
    enc = prot["encryption"]
    return {k: str(v) for k, v in enc.items() if k in ("type", "kms_key_name", "kms_key_id")}


def _microversion(headers: Mapping[str, str]) -> tuple[int, int]:
    raw = headers.get("openstack-api-version", "")
    if raw.lower().startswith("compute"):
        raw = raw[len("compute") :]
    else:
        raw = headers.get("x-openstack-nova-api-version", "")
    raw = raw.strip()
    if raw == "latest":
        return (2, 999)
    major, _, minor = raw.partition(".")
    if major.isdigit() and minor.isdigit():
        return (int(major), int(minor))
    return (2, 1)


def _positive_int(value: str | None, *, what: str, maximum: int) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise ApiProblem(400, f"{what} must be an integer from 1 to {maximum}")
    return int(value)


class Backend:
    """The three APIs over every project: each call on the store of the project in its path."""

    def __init__(self, *, projects: Projects, user_id: str, keygen: str) -> None:
        self.projects = projects
        self.user_id = user_id
        self.keygen = keygen

    def handle(
        self,
        call: ApiCall,
        *,
        body: Any,
        query: Mapping[str, str],
        headers: Mapping[str, str],
    ) -> Reply:
        project = self.projects.get(call.project_id)
        if project is None:  # the gateway refuses these first; a defect if it did not
            raise ApiProblem(403, f"project {call.project_id} is not served here")
        api = ProjectApi(store=project.store, user_id=self.user_id, keygen=self.keygen)
        return api.handle(call, body=body, query=query, headers=headers)


class ProjectApi:
    """The three APIs' behaviour over one project's ``Store``."""

    def __init__(self, *, store: Store, user_id: str, keygen: str) -> None:
        self.store = store
        self.user_id = user_id
        self.keygen = keygen

    def handle(
        self,
        call: ApiCall,
        *,
        body: Any,
        query: Mapping[str, str],
        headers: Mapping[str, str],
    ) -> Reply:
        try:
            if call.api == "kps":
                return self._kps(call, body=body, query=query)
            return self._nova(call, body=body, query=query, headers=headers)
        except StoreError as exc:
            if exc.kind == "exists":
                raise ApiProblem(409, f"key pair '{exc.name}' already exists") from None
            raise ApiProblem(404, f"key pair '{exc.name}' could not be found") from None
        except KeyProblem as exc:
            raise ApiProblem(400, f"invalid key: {exc}") from None

    # -- shared --------------------------------------------------------------------------

    def _require(self, name: str | None) -> Record:
        record = self.store.get(name or "")
        if record is None:
            raise StoreError("missing", name or "")
        return record

    def _create(self, api: str, body: Any) -> tuple[Record, str | None]:
        kp = keypair_of(body)
        name = _check_name(kp.get("name"))
        key_type = _string(kp, "type", default="ssh") or "ssh"
        if key_type not in ("ssh", "x509"):
            raise ApiProblem(400, "type must be 'ssh' or 'x509'")
        user_id = _string(kp, "user_id") or self.user_id
        scope = _string(kp, "scope", default="user") if api == "kps" else "user"
        if scope not in ("user", "domain"):
            raise ApiProblem(400, "scope must be 'user' or 'domain'")
        prot = _check_protection(kp, api)
        public_key = _string(kp, "public_key")
        generated: str | None = None
        custody: str | None = None
        if public_key:
            fingerprint = fingerprint_of(public_key, key_type=key_type)
            if prot is not None and prot.get("private_key"):
                custody = prot["private_key"]
                check_private_matches(custody, public_key=public_key, key_type=key_type)
        else:
            if prot is not None and prot.get("private_key"):
                raise ApiProblem(400, "key_protection.private_key needs the matching public_key")
            if key_type != "ssh":
                raise ApiProblem(400, "the cloud generates ssh key pairs only; import x509")
            if self.store.get(name) is not None:  # before the costly keygen
                raise StoreError("exists", name)
            public_key, generated = generate(self.keygen)
            fingerprint = fingerprint_of(public_key, key_type="ssh")
            custody = generated if prot is not None else None
        stamp = now_ms()
        record = self.store.add(
            lambda ident: Record(
                name=name,
                public_key=public_key,
                fingerprint=fingerprint,
                type=key_type,
                user_id=user_id,
                id=ident,
                created_ms=stamp,
                updated_ms=stamp,
                scope=scope,
                key_protection=prot is not None,
                encryption=_encryption(prot) if prot is not None else {},
                private_key=custody,
            )
        )
        return record, generated

    def _update_description(self, call: ApiCall, body: Any) -> Record:
        kp = keypair_of(body)
        description = _string(kp, "description")
        if description is None or len(description) > MAX_DESCRIPTION:
            raise ApiProblem(400, f"description must be a string of at most {MAX_DESCRIPTION}")
        return self.store.update(call.name or "", description=description)

    # -- Nova (v2, v2.1) -----------------------------------------------------------------

    def _nova(
        self,
        call: ApiCall,
        *,
        body: Any,
        query: Mapping[str, str],
        headers: Mapping[str, str],
    ) -> Reply:
        op = call.operation
        if op == "list":
            return self._nova_list(call, query=query, headers=headers)
        if op in ("create", "import"):
            record, generated = self._create(call.api, body)
            return Reply(200, views.nova_created(record, generated))
        if op == "get":
            return Reply(200, views.nova_detail(self._require(call.name)))
        if op == "update":
            return Reply(200, views.nova_detail(self._update_description(call, body)))
        self.store.delete(call.name or "")
        return Reply(202 if call.api == "v2" else 204)

    def _nova_list(
        self, call: ApiCall, *, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> Reply:
        if call.api == "v2" or _microversion(headers) < PAGINATION_MICROVERSION:
            records, _ = self.store.page(marker=None, limit=None)
            return Reply(200, {"keypairs": [{"keypair": views.nova_item(r)} for r in records]})
        limit = _positive_int(query.get("limit"), what="limit", maximum=2**31) or NOVA_MAX_LIMIT
        limit = min(limit, NOVA_MAX_LIMIT)
        marker = query.get("marker") or None
        if marker is not None and self.store.get(marker) is None:
            raise ApiProblem(400, f"marker {marker} could not be found")
        records, more = self.store.page(marker=marker, limit=limit)
        doc: dict[str, Any] = {"keypairs": [{"keypair": views.nova_item(r)} for r in records]}
        if more and records:
            query_part = f"limit={limit}&marker={records[-1].name}"
            href = f"/{call.api}/{call.project_id}/os-keypairs?{query_part}"
            doc["keypairs_links"] = [{"href": href, "rel": "next"}]
        return Reply(200, doc)

    # -- KPS (v3) ------------------------------------------------------------------------

    def _kps(self, call: ApiCall, *, body: Any, query: Mapping[str, str]) -> Reply:
        op = call.operation
        if op == "list":
            return self._kps_list(query)
        if op in ("create", "import"):
            record, generated = self._create("kps", body)
            return Reply(200, views.kps_created(record, generated))
        if op == "get":
            return Reply(200, views.kps_detail(self._require(call.name)))
        if op == "update":
            self._update_description(call, body)
            return Reply(200)
        if op == "delete":
            self.store.delete(call.name or "")
            return Reply(204)
        if op == "export":
            return self._kps_export(body)
        if op == "import_private_key":
            return self._kps_import_private(body)
        if op == "batch_import":
            return self._kps_batch_import(body)
        self._require(call.name)
        self.store.update(call.name or "", key_protection=False, private_key=None, encryption={})
        return Reply(204)

    def _kps_list(self, query: Mapping[str, str]) -> Reply:
        limit = _positive_int(query.get("limit"), what="limit", maximum=KPS_MAX_LIMIT)
        marker = query.get("marker") or None
        records, more = self.store.page(marker=marker, limit=limit or KPS_DEFAULT_LIMIT)
        page_info = {
            "next_marker": records[-1].name if more and records else None,
            "previous_marker": None,
            "current_count": len(records),
        }
        items = [{"keypair": views.kps_item(r)} for r in records]
        return Reply(200, {"keypairs": items, "page_info": page_info})

    def _kps_export(self, body: Any) -> Reply:
        record = self._require(_check_name(keypair_of(body).get("name")))
        if record.private_key is None:
            raise ApiProblem(
                400, f"the private key of '{record.name}' is not kept by the cloud", "KPS.0004"
            )
        return Reply(200, {"keypair": {"name": record.name, "private_key": record.private_key}})

    def _kps_import_private(self, body: Any) -> Reply:
        kp = keypair_of(body)
        record = self._require(_check_name(kp.get("name")))
        prot = _check_protection(kp, "kps")
        if prot is None or not prot.get("private_key"):
            raise ApiProblem(400, "key_protection.private_key is required")
        try:
            check_private_matches(
                prot["private_key"], public_key=record.public_key, key_type=record.type
            )
        except KeyProblem as exc:
            raise ApiProblem(400, f"invalid private key: {exc}", "KPS.0005") from None
        enc = _encryption(prot)
        self.store.update(
            record.name, key_protection=True, private_key=prot["private_key"], encryption=enc
        )
        user_id = _string(kp, "user_id") or record.user_id
        answer = {"name": record.name, "user_id": user_id, "key_protection": {"encryption": enc}}
        return Reply(200, {"keypair": answer})

    def _kps_batch_import(self, body: Any) -> Reply:
        """A JSON array of 1 to 10 ``{"keypair": CreateKeypairAction}``, each with its public
        key: each is imported or refused on its own (``failed_keypairs``: its name and why),
        in the order given; the request as a whole is refused only when it is malformed."""
        if not isinstance(body, list) or not 1 <= len(body) <= KPS_BATCH_LIMIT:
            raise ApiProblem(400, "the request body must be a JSON array of 1 to "
                             f"{KPS_BATCH_LIMIT} {{\"keypair\": {{...}}}} objects")
        succeeded: list[dict[str, Any]] = []
        failed: list[dict[str, str]] = []
        for item in body:
            kp = item.get("keypair") if isinstance(item, dict) else None
            name = kp.get("name") if isinstance(kp, dict) else None
            try:
                if not isinstance(kp, dict) or not kp.get("public_key"):
                    raise ApiProblem(400, "a batch import needs each key pair's public_key")
                record, _ = self._create("kps", item)
            except ApiProblem as exc:
                failed.append(_refusal(name, exc.message))
            except StoreError as exc:
                failed.append(_refusal(name, f"key pair '{exc.name}' already exists"
                                       if exc.kind == "exists" else str(exc)))
            except KeyProblem as exc:
                failed.append(_refusal(name, f"invalid key: {exc}"))
            else:
                succeeded.append(views.kps_created(record, None))
        return Reply(200, {"succeeded_keypairs": succeeded, "failed_keypairs": failed})


def _refusal(name: Any, reason: str) -> dict[str, str]:
    return {"keypair_name": name if isinstance(name, str) else "", "failed_reason": reason}
