"""How the emulator shows key pairs and errors in each API's own JSON shape.

Nova (``v2``, ``v2.1``) and KPS (``kps``) render the same ``Record`` differently; errors are
Nova-style (``{"itemNotFound": {"message", "code"}}``), KPS-style
(``{"error_code": "KPS.…", "error_msg"}``) or, for the API gateway in front of both
(authentication, throttling, unknown paths), ``{"errorCode": "APIGW.…", "errorMsg"}``.

KPS codes used here (the real ones are undocumented): ``KPS.0001`` invalid request,
``KPS.0002`` key pair not found, ``KPS.0003`` name already in use, ``KPS.0004`` no private
key kept, ``KPS.0005`` private key does not match, ``KPS.0405`` method not allowed,
``KPS.0500`` internal error, ``KPS.0503`` service unavailable.

May import: ``reconciler.emulator.store``, the standard library.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from reconciler.emulator.store import Record

NOVA_ERROR_KEYS = {
    400: "badRequest",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    429: "overLimit",
    500: "computeFault",
    502: "computeFault",
    503: "serviceUnavailable",
}
KPS_ERROR_CODES = {
    400: "KPS.0001",
    403: "KPS.0403",
    404: "KPS.0002",
    405: "KPS.0405",
    409: "KPS.0003",
    413: "KPS.0001",
    429: "KPS.0429",
    500: "KPS.0500",
    502: "KPS.0502",
    503: "KPS.0503",
}


def nova_error(status: int, message: str) -> dict[str, Any]:
    key = NOVA_ERROR_KEYS.get(status, "computeFault" if status >= 500 else "badRequest")
    return {key: {"message": message, "code": status}}


def kps_error(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    return {"error_code": code or KPS_ERROR_CODES.get(status, "KPS.0001"), "error_msg": message}


def gateway_error(code: str, message: str, request_id: str) -> dict[str, Any]:
    return {"errorCode": code, "errorMsg": message, "request_id": request_id}


def error_body(api: str, status: int, message: str, code: str | None = None) -> dict[str, Any]:
    if api == "kps":
        return kps_error(status, message, code)
    return nova_error(status, message)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None).isoformat(
        timespec="microseconds"
    )


def nova_item(r: Record) -> dict[str, Any]:
    return {
        "name": r.name,
        "fingerprint": r.fingerprint,
        "public_key": r.public_key,
        "type": r.type,
    }


def nova_created(r: Record, private_key: str | None) -> dict[str, Any]:
    out = {**nova_item(r), "user_id": r.user_id}
    if private_key is not None:
        out["private_key"] = private_key
    return {"keypair": out}


def nova_detail(r: Record) -> dict[str, Any]:
    return {
        "keypair": {
            "name": r.name,
            "public_key": r.public_key,
            "fingerprint": r.fingerprint,
            "user_id": r.user_id,
            "id": r.id,
            "created_at": _iso(r.created_ms),
            "updated_at": _iso(r.updated_ms) if r.updated_ms != r.created_ms else None,
            "deleted_at": None,
            "deleted": False,
            "type": r.type,
            "description": r.description,
        }
    }


def kps_item(r: Record) -> dict[str, Any]:
    return {
        "name": r.name,
        "type": r.type,
        "scope": r.scope,
        "public_key": r.public_key,
        "fingerprint": r.fingerprint,
        "is_key_protection": r.key_protection,
        "frozen_state": str(r.frozen_state),  # a string in the list, as the SDK models it
    }


def kps_created(r: Record, private_key: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": r.name,
        "type": r.type,
        "public_key": r.public_key,
        "fingerprint": r.fingerprint,
        "user_id": r.user_id,
    }
    if private_key is not None:
        out["private_key"] = private_key
    return {"keypair": out}


def kps_detail(r: Record) -> dict[str, Any]:
    return {
        "keypair": {
            "name": r.name,
            "id": r.id,
            "type": r.type,
            "scope": r.scope,
            "public_key": r.public_key,
            "fingerprint": r.fingerprint,
            "is_key_protection": r.key_protection,
            "deleted": False,
            "description": r.description,
            "user_id": r.user_id,
            "create_time": r.created_ms,
            "update_time": r.updated_ms,
            "delete_time": 0,
            "frozen_state": r.frozen_state,
        }
    }
