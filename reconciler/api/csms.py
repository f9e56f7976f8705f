"""The CSMS client: secrets, their versions and stages, deletion and restore.

``CsmsClient`` speaks ``/v1/{project_id}/secrets…`` on the key pair API's signed host. A
value is a ``Secret`` both ways (never printed; ``secret_string`` on the wire). Writing a
new value adds a version, which becomes ``SYSCURRENT`` (the one before becomes
``SYSPREVIOUS``); the current value is read by its stage (``stages/SYSCURRENT``, then that
version), never by ``versions/latest``, which is the newest version whatever its stage.

Creating a secret and adding a version are creates: resent only when the cloud surely did
not act, else ``OutcomeUnknownError`` (re-read the secret's versions). Deleting, scheduling
a deletion and restoring are idempotent here: a secret already gone, already scheduled or
already restored is the state asked for.

May import: the standard library, ``reconciler.model``, ``reconciler.errors``,
``reconciler.api.{client,dewcall,dewshapes,protocol}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from reconciler.api import dewshapes
from reconciler.api.client import HttpClient, Kind
from reconciler.api.dewcall import DewHttp
from reconciler.api.protocol import ApiSettings
from reconciler.errors import AnswerShapeError, UsageError
from reconciler.model import Secret

NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # the SDK model's rule (reconciler's names fit)
MAX_VALUE_BYTES = 32 * 1024
MIN_RECOVERY_DAYS, MAX_RECOVERY_DAYS = 7, 30
CURRENT, PREVIOUS = "SYSCURRENT", "SYSPREVIOUS"
MAX_VERSION_PAGES = 1000
VERSION_PAGE = 50
# as the policy-based (1.1) and the identity-policy (5.0) references name them
ACTIONS = ("csms:secret:*, csms:secretVersion:* and csms:secretStage:* (in an identity "
           "policy, csms:secret:* holds them all)")


@dataclass(frozen=True, slots=True)
class SecretInfo:
    name: str
    state: str  # ENABLED, DISABLED, PENDING_DELETE, FROZEN
    kms_key_id: str | None
    scheduled_delete_time: int | None  # ms since the epoch, while PENDING_DELETE
    description: str = ""


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version_id: str
    stages: tuple[str, ...]
    kms_key_id: str | None = None  # the key that sealed it, when the answer says


@dataclass(frozen=True, slots=True)
class SecretValue:
    name: str
    version_id: str
    value: Secret
    stages: tuple[str, ...]
    kms_key_id: str | None = None  # the key that sealed it, when the answer says


def _check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise UsageError(f"{name!r} is not a valid CSMS secret name: use 1 to 64 letters, "
                         "digits, '_' or '-'")
    return name


def _check_value(name: str, value: Secret) -> str:
    text = value.reveal()
    size = len(text.encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise UsageError(f"the value for CSMS secret {name} is {size} bytes; CSMS keeps at "
                         f"most {MAX_VALUE_BYTES} (32 KiB): store a smaller value")
    return text


def _member(data: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = data.get(key)
    assert isinstance(value, Mapping)  # checked by the shape
    return value


def _secret_info(data: Mapping[str, object]) -> SecretInfo:
    secret = _member(data, "secret")
    when = secret.get("scheduled_delete_time")
    key = secret.get("kms_key_id")
    described = secret.get("description")
    return SecretInfo(name=str(secret["name"]), state=str(secret["state"]),
                      kms_key_id=key if isinstance(key, str) and key else None,
                      scheduled_delete_time=when if isinstance(when, int)
                      and not isinstance(when, bool) else None,
                      description=described if isinstance(described, str) else "")


def _version_info(meta: Mapping[str, object]) -> VersionInfo:
    stages = meta.get("version_stages")
    listed = tuple(str(s) for s in stages) if isinstance(stages, list) else ()
    key = meta.get("kms_key_id")
    return VersionInfo(version_id=str(meta["id"]), stages=listed,
                       kms_key_id=key if isinstance(key, str) and key else None)


def _hints(name: str) -> dict[str, str]:
    return {
        "CSMS.0005": f"The CSMS secret {name} (or the version asked for) does not exist.",
        "CSMS.0009": (f"A CSMS secret named {name} already exists: add a version to it, or "
                      "choose another name."),
        "CSMS.0103": (f"The CSMS secret {name} is scheduled for deletion: restore it "
                      "(CSMS console, or the restore call) before using it."),
        "CSMS.0012": (f"The KMS key that protects the CSMS secret {name} cannot be used: "
                      "enable it, or cancel its deletion."),
    }


class CsmsClient:
    """CSMS in one project (the settings of the key pair API of that project)."""

    def __init__(self, settings: ApiSettings, *, http: HttpClient | None = None) -> None:
        """``http``: a client of these settings to share (or with a test's clock)."""
        self._http = DewHttp(settings, service="CSMS", actions=ACTIONS, http=http)
        self._base = f"/v1/{settings.project_id}/secrets"

    def close(self) -> None:
        self._http.close()

    def _path(self, name: str, *rest: str) -> str:
        parts = [quote(_check_name(name), safe=""), *(quote(r, safe="") for r in rest)]
        return "/".join([self._base, *parts])

    def create_secret(self, name: str, value: Secret, *, kms_key_id: str | None = None,
                      description: str | None = None) -> SecretInfo:
        """A new secret whose first version (``SYSCURRENT``) holds ``value``; encrypted under
        ``kms_key_id`` (CSMS's ``csms/default`` key when None)."""
        body: dict[str, object] = {"name": _check_name(name),
                                   "secret_string": _check_value(name, value)}
        if kms_key_id:
            body["kms_key_id"] = kms_key_id
        if description:
            body["description"] = description
        data = self._http.call(method="POST", path=self._base,
                               operation=f"create CSMS secret {name}", shape=dewshapes.SECRET,
                               kind=Kind.CREATE, body=body, hints=_hints(name),
                               reread=f"Read the CSMS secret {name} to find out.")
        assert data is not None
        return _secret_info(data)

    def put_version(self, name: str, value: Secret) -> VersionInfo:
        """A new version holding ``value``; it becomes ``SYSCURRENT``."""
        operation = f"add a version to CSMS secret {name}"
        data = self._http.call(method="POST", path=self._path(name, "versions"),
                               operation=operation, shape=dewshapes.CREATED_VERSION,
                               kind=Kind.CREATE,
                               body={"secret_string": _check_value(name, value)},
                               hints=_hints(name),
                               reread=f"List the versions of CSMS secret {name} to find out.")
        assert data is not None
        info = _version_info(_member(data, "version_metadata"))
        if info.stages and CURRENT not in info.stages:
            raise AnswerShapeError(
                f"{operation} failed: the new version {info.version_id} is not {CURRENT} "
                f"(its stages: {', '.join(info.stages)}); nothing was decided from it. Check "
                f"the secret's stages in the CSMS console.",
                path="version_metadata.version_stages", operation=operation)
        return info

    def get_secret(self, name: str) -> SecretInfo | None:
        data = self._http.call(method="GET", path=self._path(name),
                               operation=f"read CSMS secret {name}", shape=dewshapes.SECRET,
                               hints=_hints(name), missing=True)
        return None if data is None else _secret_info(data)

    def stage(self, name: str, stage: str = CURRENT) -> str | None:
        """The version id in ``stage``; None when the secret or the stage does not exist."""
        data = self._http.call(method="GET", path=self._path(name, "stages", stage),
                               operation=f"read stage {stage} of CSMS secret {name}",
                               shape=dewshapes.STAGE, hints=_hints(name), missing=True)
        return None if data is None else str(_member(data, "stage")["version_id"])

    def get_version(self, name: str, version_id: str) -> SecretValue | None:
        """One version with its value; None when it does not exist."""
        operation = f"read version {version_id} of CSMS secret {name}"
        data = self._http.call(method="GET", path=self._path(name, "versions", version_id),
                               operation=operation, shape=dewshapes.VERSION,
                               hints=_hints(name), missing=True)
        if data is None:
            return None
        version = _member(data, "version")
        info = _version_info(_member(version, "version_metadata"))
        text = version.get("secret_string")
        if info.version_id != version_id or not isinstance(text, str):
            held = "another version" if info.version_id != version_id else "no secret_string"
            raise AnswerShapeError(
                f"{operation} failed: the answer holds {held}; nothing was read from it. Run "
                "the command again; if it persists, a proxy or gateway between here and the "
                "cloud is changing answers.", path="version", operation=operation)
        return SecretValue(name=name, version_id=version_id, value=Secret(text),
                           stages=info.stages, kms_key_id=info.kms_key_id)

    def current(self, name: str) -> SecretValue | None:
        """The ``SYSCURRENT`` value; None when the secret does not exist."""
        version_id = self.stage(name, CURRENT)
        return None if version_id is None else self.get_version(name, version_id)

    def list_versions(self, name: str) -> tuple[VersionInfo, ...]:
        """Every version (no values), following the pages to the end."""
        found: list[VersionInfo] = []
        marker = ""
        for _ in range(MAX_VERSION_PAGES):
            query = [("limit", str(VERSION_PAGE))] + ([("marker", marker)] if marker else [])
            data = self._http.call(method="GET", path=self._path(name, "versions"),
                                   operation=f"list the versions of CSMS secret {name}",
                                   shape=dewshapes.VERSIONS, query=query, hints=_hints(name))
            assert data is not None
            items = data["version_metadatas"]
            assert isinstance(items, list)
            found += [_version_info(item) for item in items]
            info = data.get("page_info")
            following = info.get("next_marker") if isinstance(info, Mapping) else None
            if not following or following == marker or not items:
                break
            marker = str(following)
        return tuple(found)

    def set_kms_key(self, name: str, kms_key_id: str | None) -> SecretInfo:
        """Seal the secret's versions from now on under ``kms_key_id`` (``csms/default`` when
        None); the versions before stay under the key that sealed them. Safe to repeat."""
        data = self._http.call(method="PUT", path=self._path(name),
                               operation=f"change the KMS key of CSMS secret {name}",
                               shape=dewshapes.SECRET, body={"kms_key_id": kms_key_id or ""},
                               hints=_hints(name))
        assert data is not None
        return _secret_info(data)

    def delete_secret(self, name: str) -> bool:
        """Delete at once, every version; False when it was already gone."""
        data = self._http.call(method="DELETE", path=self._path(name),
                               operation=f"delete CSMS secret {name}", shape=dewshapes.NO_BODY,
                               hints=_hints(name), missing=True)
        return data is not None

    def schedule_deletion(self, name: str, *, days: int = MAX_RECOVERY_DAYS) -> SecretInfo:
        """Delete after ``days`` (7 to 30); until then it can be restored."""
        if not MIN_RECOVERY_DAYS <= days <= MAX_RECOVERY_DAYS:
            raise UsageError(f"a CSMS secret's deletion can be scheduled {MIN_RECOVERY_DAYS} "
                             f"to {MAX_RECOVERY_DAYS} days ahead, not {days}")
        return self._task(name, "create", f"schedule the deletion of CSMS secret {name}",
                          body={"recovery_window_in_days": days}, settled="CSMS.0107")

    def restore(self, name: str) -> SecretInfo:
        """Cancel a scheduled deletion."""
        return self._task(name, "cancel", f"restore CSMS secret {name}", body=None,
                          settled="CSMS.0108")

    def _task(self, name: str, task: str, operation: str, *,
              body: Mapping[str, object] | None, settled: str) -> SecretInfo:
        """A deletion task; ``settled`` is the code for "already in that state"."""
        data = self._http.call(method="POST",
                               path=self._path(name, "scheduled-deleted-tasks", task),
                               operation=operation, shape=dewshapes.SECRET, body=body,
                               hints=_hints(name), settled=settled)
        if data is not None:
            return _secret_info(data)
        current = self.get_secret(name)
        if current is None:
            raise UsageError(f"{operation} failed: the CSMS secret {name} does not exist")
        return current
