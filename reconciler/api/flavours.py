"""The three key pair API flavours behind ``KeyPairApi``: Nova ``v2``, Nova ``v2.1``, KPS v3.

Paths, bodies, status codes, pagination and error shapes differ here and nowhere else.
``make_api(settings)`` builds the right adapter over a pooled, signing, retrying
``HttpClient``.

- Nova (v2, v2.1): one GET of the whole list (no microversion, so no pagination); 404 on
  show/delete means absent; no descriptions, no export. v2 refuses ``key_protection``.
  v2.1 sends ``type`` only for x509, with microversion ``compute 2.2`` (Nova rejects the
  field below 2.2); v2 (no microversions) always sends it.
- KPS: ``limit``/``marker`` pagination following ``page_info.next_marker``, bounded (see
  ``KpsApi.list_keypairs``); description updates; private-key import, export and clear;
  ``scope``; batch import of up to 10 public keys (``KpsApi.import_keypairs``), each made or
  refused alone.
- v2.1 has no custody calls of its own: it sends private-key import, export and clear to the
  KPS endpoints (``endpoints.custody_endpoint``), as the three APIs see the same key pairs.

Every success answer is checked against its documented shape (``shapes``) before anything
is read from it.

What each flavour can do is ``reconciler.capabilities``'s to say; the adapters follow it and
expose it as ``capabilities``.

May import: the standard library, ``reconciler.model``, ``reconciler.errors``,
``reconciler.capabilities``, ``reconciler.api.*``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from reconciler.api import shapes
from reconciler.api.client import HttpClient, HttpResult, Kind
from reconciler.api.endpoints import custody_endpoint
from reconciler.api.httplog import ECHO_WITHHELD
from reconciler.api.parse import (
    answer,
    fail,
    has_next_link,
    keypair_of,
    listed_keypairs,
    next_marker,
    private_key_of,
)
from reconciler.api.protocol import ApiSettings, BatchImported, ImportRequest, KeyPairApi
from reconciler.capabilities import Capabilities, apis_with, capabilities
from reconciler.errors import ApiError, OutcomeUnknownError, UsageError
from reconciler.model import (
    Api,
    CreatedKeyPair,
    KeyProtection,
    RemoteKeyPair,
    RemoteSnapshot,
    Secret,
)

KPS_PAGE_SIZE = 1000  # the documented maximum; sent explicitly (defaults differ by source)
MAX_PAGES = 10_000  # 10 million key pairs at the largest page: past this, the list is broken
_NOT_FOUND_TEXT = re.compile(r"not\s+(?:be\s+)?found|not\s+exist|no\s+such", re.IGNORECASE)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _protection_body(
    protection: KeyProtection, private_key: Secret | None
) -> dict[str, object]:
    body: dict[str, object] = {"encryption": protection.encryption.as_dict()}
    if private_key is not None:
        body["private_key"] = private_key.reveal()
    return body


class _Adapter:
    """What every flavour shares: the client, the project, counting, closing."""

    api: Api

    def __init__(self, http: HttpClient, *, project_id: str) -> None:
        self.http = http
        self.project_id = project_id

    @property
    def capabilities(self) -> Capabilities:
        return capabilities(self.api)

    @property
    def requests_sent(self) -> int:
        """HTTP requests this adapter's client has sent (every attempt counts)."""
        return self.http.requests_sent

    def close(self) -> None:
        self.http.close()

    @property
    def _base(self) -> str:
        raise NotImplementedError

    # Statuses that may mean "no such key pair": KPS documents every error as a 400.
    _absent_statuses: frozenset[int] = frozenset({404})

    def _absent(self, result: HttpResult, *, operation: str) -> bool:
        """True when an answer says the key pair does not exist; raises for other errors."""
        if result.status == 404:
            return True
        if result.status in self._absent_statuses:
            if _NOT_FOUND_TEXT.search(result.error_message or ""):
                return True
            raise self.http.error_for(result, operation=operation)
        return False

    def delete_keypair(self, name: str) -> bool:
        """Delete; False when it was already gone (the same call in every flavour)."""
        operation = f"delete key pair {name}"
        result = self.http.request(
            method="DELETE", path=f"{self._base}/{_seg(name)}", operation=operation,
            accept=self._absent_statuses,
        )
        # absent after a resend whose first answer was lost: that first attempt deleted it
        if self._absent(result, operation=operation):
            return result.resent_after_loss
        answer(result, shapes.NO_BODY, operation=operation)
        return True

    def _created(
        self, result: HttpResult, *, operation: str, asked: dict[str, object], generated: bool
    ) -> tuple[RemoteKeyPair, Secret | None]:
        try:
            body = answer(result, shapes.CREATED if generated else shapes.IMPORTED,
                          operation=operation)
            remote = keypair_of(body)
            if remote.name != asked["name"]:
                raise fail(result, operation=operation, path="keypair.name",
                           problem="the answer is for another key pair than the one asked for")
        except ApiError as exc:  # it was done (2xx), but what came back is unusable
            raise OutcomeUnknownError(
                f"{exc} The cloud accepted the request (HTTP {result.status}); re-read the "
                "key pair to find out what it holds.",
                status=result.status, request_id=result.request_id, operation=operation,
            ) from None
        filled = {k: v for k, v in asked.items() if k != "name" and getattr(remote, k) is None}
        private = private_key_of(body) if generated else None
        return dataclasses.replace(remote, **filled), private  # type: ignore[arg-type]


class _NovaAdapter(_Adapter):
    """Nova os-keypairs, parameterised by path prefix and capabilities."""

    prefix: str

    @property
    def _base(self) -> str:
        return f"/{self.prefix}/{_seg(self.project_id)}/os-keypairs"

    def list_keypairs(self) -> RemoteSnapshot:
        operation = "list key pairs"
        result = self.http.request(method="GET", path=self._base, operation=operation)
        body = answer(result, shapes.NOVA_LIST, operation=operation)
        if has_next_link(body):  # paged although no page was asked for: the list is not whole
            raise fail(result, operation=operation, path="keypairs_links",
                       problem="the answer is one page of a longer list")
        pairs: dict[str, RemoteKeyPair] = {}
        _collect(pairs, listed_keypairs(body), result=result, operation=operation)
        return RemoteSnapshot(keypairs=pairs, api=self.api, requests=result.attempts)

    def get_keypair(self, name: str) -> RemoteKeyPair | None:
        operation = f"read key pair {name}"
        result = self.http.request(
            method="GET", path=f"{self._base}/{_seg(name)}", operation=operation,
            accept=frozenset({404}),
        )
        if result.status == 404:
            return None
        return _shown(result, name=name, operation=operation)

    def _type_fields(self, key_type: str) -> tuple[dict[str, object], dict[str, str]]:
        if self.prefix == "v2":
            return {"type": key_type}, {}
        if key_type == "ssh":
            return {}, {}
        return {"type": key_type}, {"OpenStack-API-Version": "compute 2.2"}

    def _post(
        self, *, name: str, operation: str, fields: dict[str, object], key_type: str,
        user_id: str | None, scope: str | None, protection: dict[str, object] | None,
    ) -> tuple[RemoteKeyPair, Secret | None]:
        if scope is not None:
            raise UsageError(f"{operation}: scope is supported only by api kps")
        if protection is not None and not self.capabilities.custody:
            raise UsageError(
                f"{operation}: key_protection is not supported by api {self.api}; "
                "use api v2.1 or kps"
            )
        type_fields, headers = self._type_fields(key_type)
        keypair: dict[str, object] = {"name": name, **type_fields, **fields}
        if user_id is not None:
            keypair["user_id"] = user_id
        if protection is not None:
            keypair["key_protection"] = protection
        result = self.http.request(
            method="POST", path=self._base, operation=operation, kind=Kind.CREATE,
            body={"keypair": keypair}, headers=headers,
        )
        asked: dict[str, object] = {"name": name, "type": key_type, "user_id": user_id}
        if protection is not None:  # Nova does not say; the request succeeded as asked
            asked["key_protection"] = True
        return self._created(result, operation=operation, asked=asked,
                             generated="public_key" not in fields)

    def create_keypair(
        self, *, name: str, type: str = "ssh", user_id: str | None = None,
        scope: str | None = None, key_protection: KeyProtection | None = None,
    ) -> CreatedKeyPair:
        protection = _protection_body(key_protection, None) if key_protection else None
        remote, private = self._post(
            name=name, operation=f"create key pair {name}", fields={}, key_type=type,
            user_id=user_id, scope=scope, protection=protection,
        )
        return CreatedKeyPair(remote=remote, private_key=private)

    def import_keypair(
        self, *, name: str, public_key: str, type: str = "ssh", user_id: str | None = None,
        scope: str | None = None, key_protection: KeyProtection | None = None,
        private_key: Secret | None = None,
    ) -> RemoteKeyPair:
        protection = _protection_body(key_protection, private_key) if key_protection else None
        remote, _ = self._post(
            name=name, operation=f"import key pair {name}", fields={"public_key": public_key},
            key_type=type, user_id=user_id, scope=scope, protection=protection,
        )
        return remote

    def import_keypairs(self, requests: Sequence[ImportRequest]) -> BatchImported:
        raise UsageError(f"api {self.api} imports one key pair a request; use api kps for "
                         "batch import")

    def update_description(self, name: str, description: str) -> None:
        raise UsageError(
            f"update key pair {name}: descriptions are supported only by api kps, "
            f"not {self.api}"
        )

    # -- custody: KPS's calls, at its endpoint (v2.1); v2 has none --------------------------

    custody: KpsApi | None = None  # set by make_api for a flavour with custody

    def _custody(self, operation: str) -> KpsApi:
        if self.custody is None:
            raise UsageError(f"{operation}: api {self.api} cannot hand a private key to the "
                             f"cloud's custody; use api {apis_with(lambda c: c.custody)}")
        return self.custody

    def export_private_key(self, name: str) -> Secret | None:
        if self.custody is None:
            return None
        return self.custody.export_private_key(name)

    def import_private_key(self, name: str, *, key_protection: KeyProtection,
                           private_key: Secret, user_id: str | None = None) -> None:
        self._custody(f"import the private key of {name}").import_private_key(
            name, key_protection=key_protection, private_key=private_key, user_id=user_id)

    def clear_private_key(self, name: str) -> None:
        self._custody(f"clear the private key of {name}").clear_private_key(name)

    @property
    def requests_sent(self) -> int:
        own = self.http.requests_sent
        if self.custody is not None and self.custody.http is not self.http:
            own += self.custody.http.requests_sent
        return own

    def close(self) -> None:
        if self.custody is not None and self.custody.http is not self.http:
            self.custody.close()
        self.http.close()


class NovaV2Api(_NovaAdapter):
    """``/v2/{project_id}/os-keypairs``: ``type`` ssh|x509, no key_protection."""

    api = Api.V2
    prefix = "v2"


class NovaV21Api(_NovaAdapter):
    """``/v2.1/{project_id}/os-keypairs``: key_protection supported."""

    api = Api.V21
    prefix = "v2.1"


class KpsApi(_Adapter):
    """KPS v3 ``/v3/{project_id}/keypairs``."""

    api = Api.KPS
    _absent_statuses = frozenset({400, 404})

    def __init__(
        self, http: HttpClient, *, project_id: str, page_size: int = KPS_PAGE_SIZE
    ) -> None:
        super().__init__(http, project_id=project_id)
        if not 1 <= page_size <= KPS_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{KPS_PAGE_SIZE}")
        self.page_size = page_size

    @property
    def _base(self) -> str:
        return f"/v3/{_seg(self.project_id)}/keypairs"

    def list_keypairs(self) -> RemoteSnapshot:
        """Follow ``next_marker`` to the end, refusing a list that cannot be complete: a
        marker given twice, a page that brings no new name, a name on two pages, more pages
        than the names seen can need at the largest page the cloud has sent (it may send
        fewer than ``limit``), or more than ``MAX_PAGES``."""
        operation = "list key pairs"
        pairs: dict[str, RemoteKeyPair] = {}
        markers: set[str] = set()
        marker: str | None = None
        sent = pages = widest = 0
        while True:
            query = [("limit", str(self.page_size))]
            if marker is not None:
                query.append(("marker", marker))
            result = self.http.request(
                method="GET", path=self._base, operation=operation, query=query
            )
            sent += result.attempts
            pages += 1
            body = answer(result, shapes.KPS_LIST, operation=operation)
            page = listed_keypairs(body)
            _collect(pairs, page, result=result, operation=operation)
            widest = max(widest, len(page))
            marker = next_marker(body)
            if marker is None:
                break
            problem = _page_problem(page, marker=marker, markers=markers, seen=len(pairs),
                                    pages=pages, widest=widest)
            if problem is not None:
                raise fail(result, operation=operation, path="page_info.next_marker",
                           problem=problem)
            markers.add(marker)
        return RemoteSnapshot(keypairs=pairs, api=self.api, requests=sent)

    def get_keypair(self, name: str) -> RemoteKeyPair | None:
        operation = f"read key pair {name}"
        result = self.http.request(
            method="GET", path=f"{self._base}/{_seg(name)}", operation=operation,
            accept=self._absent_statuses,
        )
        if self._absent(result, operation=operation):
            return None
        return _shown(result, name=name, operation=operation)

    def _post(
        self, *, name: str, operation: str, keypair: dict[str, object],
        scope: str | None, protected: bool,
    ) -> tuple[RemoteKeyPair, Secret | None]:
        result = self.http.request(
            method="POST", path=self._base, operation=operation, kind=Kind.CREATE,
            body={"keypair": keypair},
        )
        asked: dict[str, object] = {
            "name": name, "type": keypair.get("type"), "user_id": keypair.get("user_id"),
            "scope": scope, "key_protection": protected,
        }
        return self._created(result, operation=operation, asked=asked,
                             generated="public_key" not in keypair)

    @staticmethod
    def _fields(
        *, name: str, key_type: str, user_id: str | None, scope: str | None,
    ) -> dict[str, object]:
        keypair: dict[str, object] = {"name": name, "type": key_type}
        if scope is not None:
            keypair["scope"] = scope
        if user_id is not None:
            keypair["user_id"] = user_id
        return keypair

    def create_keypair(
        self, *, name: str, type: str = "ssh", user_id: str | None = None,
        scope: str | None = None, key_protection: KeyProtection | None = None,
    ) -> CreatedKeyPair:
        keypair = self._fields(name=name, key_type=type, user_id=user_id, scope=scope)
        if key_protection is not None:
            keypair["key_protection"] = _protection_body(key_protection, None)
        remote, private = self._post(
            name=name, operation=f"create key pair {name}", keypair=keypair, scope=scope,
            protected=key_protection is not None,
        )
        return CreatedKeyPair(remote=remote, private_key=private)

    def import_keypair(
        self, *, name: str, public_key: str, type: str = "ssh", user_id: str | None = None,
        scope: str | None = None, key_protection: KeyProtection | None = None,
        private_key: Secret | None = None,
    ) -> RemoteKeyPair:
        keypair = self._fields(name=name, key_type=type, user_id=user_id, scope=scope)
        keypair["public_key"] = public_key
        if key_protection is not None:
            keypair["key_protection"] = _protection_body(key_protection, private_key)
        remote, _ = self._post(
            name=name, operation=f"import key pair {name}", keypair=keypair, scope=scope,
            protected=key_protection is not None,
        )
        return remote

    def import_keypairs(self, requests: Sequence[ImportRequest]) -> BatchImported:
        """``POST .../keypairs/batch-import``: a JSON array of ``{"keypair": ...}``, each as
        ``import_keypair`` sends it. The answer must account for the names asked and no
        other, each once; an answer that cannot be read after a 2xx is an
        ``OutcomeUnknownError`` (some may have been made)."""
        limit = self.capabilities.batch_import
        names = [r.name for r in requests]
        if not 1 <= len(requests) <= limit or len(set(names)) != len(names):
            raise ValueError(f"a batch import takes 1 to {limit} distinct names")
        body: list[object] = []
        asked: dict[str, dict[str, object]] = {}
        for r in requests:
            keypair = self._fields(name=r.name, key_type=r.type, user_id=r.user_id,
                                   scope=r.scope)
            keypair["public_key"] = r.public_key
            if r.key_protection is not None:
                keypair["key_protection"] = _protection_body(r.key_protection, r.private_key)
            body.append({"keypair": keypair})
            asked[r.name] = {"type": r.type, "user_id": r.user_id, "scope": r.scope,
                             "key_protection": r.key_protection is not None}
        operation = _batch_operation(names)
        result = self.http.request(
            method="POST", path=f"{self._base}/batch-import", operation=operation,
            kind=Kind.CREATE, body=body,
        )
        try:
            return _batch_imported(answer(result, shapes.BATCH_IMPORTED, operation=operation),
                                   asked, result=result, operation=operation)
        except ApiError as exc:  # done (2xx), but what came back is unusable
            raise OutcomeUnknownError(
                f"{exc} The cloud accepted the request (HTTP {result.status}); re-read the "
                "key pairs to find out what it holds.",
                status=result.status, request_id=result.request_id, operation=operation,
            ) from None

    def update_description(self, name: str, description: str) -> None:
        operation = f"update key pair {name}"
        result = self.http.request(
            method="PUT", path=f"{self._base}/{_seg(name)}", operation=operation,
            body={"keypair": {"description": description}},
        )
        answer(result, shapes.NO_BODY, operation=operation)

    def export_private_key(self, name: str) -> Secret | None:
        """The private key KPS keeps; None when the key pair does not exist (404)."""
        operation = f"export the private key of {name}"
        result = self.http.request(
            method="POST", path=f"{self._base}/private-key/export", operation=operation,
            body={"keypair": {"name": name}}, accept=self._absent_statuses,
        )
        if self._absent(result, operation=operation):
            return None
        return private_key_of(answer(result, shapes.EXPORTED, operation=operation))

    def import_private_key(self, name: str, *, key_protection: KeyProtection,
                           private_key: Secret, user_id: str | None = None) -> None:
        """``POST …/keypairs/private-key/import``: the same key sent again (a resend after a
        lost answer, a re-run after an interrupted apply) leaves the same custody."""
        operation = f"import the private key of {name}"
        keypair: dict[str, object] = {"name": name}
        if user_id is not None:
            keypair["user_id"] = user_id
        keypair["key_protection"] = _protection_body(key_protection, private_key)
        result = self.http.request(
            method="POST", path=f"{self._base}/private-key/import", operation=operation,
            body={"keypair": keypair},
        )
        body = answer(result, shapes.PRIVATE_KEY_IMPORTED, operation=operation)
        echoed = body.get("keypair")
        if isinstance(echoed, dict) and echoed.get("name") not in (None, name):
            raise fail(result, operation=operation, path="keypair.name",
                       problem="the answer is for another key pair than the one asked for")

    def clear_private_key(self, name: str) -> None:
        """``DELETE …/keypairs/{name}/private-key``: the key pair stays, without custody.
        An error answer while the key pair exists without custody (a clear sent again, after
        an apply killed before it recorded the first) is the clear done: KPS's own show says
        so, for v2.1 too, whose Nova answers say nothing of custody."""
        operation = f"clear the private key of {name}"
        try:
            result = self.http.request(
                method="DELETE", path=f"{self._base}/{_seg(name)}/private-key",
                operation=operation,
            )
        except ApiError as refused:
            try:
                now = self.get_keypair(name)
            except ApiError:
                raise refused from None
            if now is not None and now.key_protection is False:
                return
            raise
        answer(result, shapes.NO_BODY, operation=operation)


def _batch_operation(names: Sequence[str]) -> str:
    if len(names) == 1:
        return f"import key pair {names[0]}"
    return f"batch import of {len(names)} key pairs ({names[0]} ... {names[-1]})"


def _batch_imported(body: Mapping[str, object], asked: Mapping[str, Mapping[str, object]], *,
                    result: HttpResult, operation: str) -> BatchImported:
    """The checked answer of a batch import, by name; ``AnswerShapeError`` for a name not
    asked or named twice."""
    imported: dict[str, RemoteKeyPair] = {}
    refused: dict[str, str] = {}
    seen: set[str] = set()

    def account(name: str, path: str) -> None:
        problem = ("the answer is for a key pair not asked for" if name not in asked else
                   "the answer names this key pair twice" if name in seen else None)
        if problem is not None:
            raise fail(result, operation=operation, path=path, problem=problem)
        seen.add(name)

    succeeded = body.get("succeeded_keypairs")
    for index, item in enumerate(succeeded if isinstance(succeeded, list) else []):
        remote = keypair_of(item if isinstance(item, Mapping) else {})
        account(remote.name, f"succeeded_keypairs[{index}].keypair.name")
        filled = {k: v for k, v in asked[remote.name].items() if getattr(remote, k) is None}
        imported[remote.name] = dataclasses.replace(remote, **filled)  # type: ignore[arg-type]
    failed = body.get("failed_keypairs")
    for index, item in enumerate(failed if isinstance(failed, list) else []):
        entry = item if isinstance(item, Mapping) else {}
        name = str(entry.get("keypair_name") or "")
        account(name, f"failed_keypairs[{index}].keypair_name")
        reason = entry.get("failed_reason")
        refused[name] = (ECHO_WITHHELD if result.echo.found_in(reason) else
                         shapes.escape(reason, 300)) if isinstance(reason, str) and \
            reason.strip() else "no reason given"
    return BatchImported(imported=imported, refused=refused,
                         unanswered=tuple(n for n in asked if n not in seen))


def _collect(pairs: dict[str, RemoteKeyPair], page: list[RemoteKeyPair], *,
             result: HttpResult, operation: str) -> None:
    """Add one page's key pairs; a name already listed means the pages overlap."""
    for index, kp in enumerate(page):
        if kp.name in pairs:
            raise fail(result, operation=operation, path=f"keypairs[{index}].keypair.name",
                       problem=f"key pair {shapes.escape(kp.name)!r} is listed twice")
        pairs[kp.name] = kp


def _page_problem(page: list[RemoteKeyPair], *, marker: str, markers: set[str], seen: int,
                  pages: int, widest: int) -> str | None:
    """Why following ``marker`` could never end in a whole list, or None."""
    if marker in markers:
        return "the same marker came back twice, so the pages would repeat"
    if not page:
        return "a page with no key pairs points to a further page"
    if pages > seen // max(1, widest) + 2 or pages >= MAX_PAGES:
        return f"{pages} pages have brought only {seen} key pairs, at most {widest} a page"
    return None


def _shown(result: HttpResult, *, name: str, operation: str) -> RemoteKeyPair:
    remote = keypair_of(answer(result, shapes.SHOW, operation=operation))
    if remote.name != name:
        raise fail(result, operation=operation, path="keypair.name",
                   problem="the answer is for another key pair than the one asked for")
    return remote


def make_api(
    settings: ApiSettings, *, http: HttpClient | None = None, page_size: int = KPS_PAGE_SIZE
) -> KeyPairApi:
    """The adapter for ``settings.api``; ``http`` lets tests inject sleep and randomness."""
    client = http if http is not None else HttpClient(settings)
    api = Api(settings.api)
    if api is Api.KPS:
        return KpsApi(client, project_id=settings.project_id, page_size=page_size)
    if api is Api.V2:
        return NovaV2Api(client, project_id=settings.project_id)
    adapter = NovaV21Api(client, project_id=settings.project_id)
    where = custody_endpoint(settings.endpoint, api, settings.custody_endpoint)
    custody_http = client if where == settings.endpoint else HttpClient(
        dataclasses.replace(settings, api=Api.KPS, endpoint=where, custody_endpoint=None))
    adapter.custody = KpsApi(custody_http, project_id=settings.project_id)
    return adapter


__all__ = ["KpsApi", "NovaV2Api", "NovaV21Api", "make_api"]
