"""The documented shape of every KMS and CSMS answer reconciler reads (``docs/kms-csms.md``).

Described with ``shapes``' nodes and held to with ``shapes.check``, as the key pair answers
are. Only fields reconciler reads are constrained; the data key in clear (``plain_text``,
``data_key``) and secret values (``secret_string``) are ``sensitive``: never echoed.

May import: the standard library, ``reconciler.api.shapes``.
"""

from __future__ import annotations

import re

from reconciler.api.shapes import Anything, Arr, Key, Node, Obj, Str

KEY_ID = re.compile(r"[0-9a-z]{8}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{12}")
HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
DIGITS = re.compile(r"[0-9]{1,5}")
KEY_STATE = re.compile(r"[1-5]")
SECRET_NAME = re.compile(r"[a-zA-Z0-9._-]{1,64}")
TEXT = re.compile(r"[^\x00-\x1f\x7f]{1,255}")


def _optional(node: Node) -> Key:
    return Key(node, required=False, nullable=True)


_KEY_ID = Str(pattern=KEY_ID, rule="KMS key id")

# -- KMS ---------------------------------------------------------------------------------------

CREATED_DATAKEY = Obj({
    "key_id": Key(_KEY_ID),
    "plain_text": Key(Str(pattern=HEX, sensitive=True, rule="hex string")),
    "cipher_text": Key(Str(pattern=HEX, rule="hex string")),
})
DECRYPTED_DATAKEY = Obj({
    "data_key": Key(Str(pattern=HEX, sensitive=True, rule="hex string")),
    "datakey_length": _optional(Str(pattern=DIGITS, rule="byte count")),
    "datakey_dgst": Key(Str(pattern=SHA256_HEX, rule="SHA-256 hex digest")),
})
KEY_DETAILS = Obj({"key_info": Key(Obj({
    "key_id": Key(_KEY_ID),
    "key_alias": _optional(Str()),
    "key_state": Key(Str(pattern=KEY_STATE, rule="KMS key state (1 to 5)")),
    "default_key_flag": _optional(Str()),
    "scheduled_deletion_date": _optional(Str()),
}))})
ALIASES = Obj({
    "aliases": Key(Arr(Obj({
        "key_id": Key(_KEY_ID),
        "alias": Key(Str(pattern=TEXT, rule="KMS alias")),
    }))),
    "page_info": _optional(Obj({"next_marker": _optional(Str()),
                                "current_count": _optional(Anything())})),
})

NO_BODY = Obj()  # delete: nothing is read

# -- CSMS --------------------------------------------------------------------------------------

_SECRET_FIELDS = Obj({
    "name": Key(Str(pattern=SECRET_NAME, rule="secret name")),
    "state": Key(Str(nonempty=True)),
    "id": _optional(Str()),
    "kms_key_id": _optional(Str()),
    "description": _optional(Str()),
    "scheduled_delete_time": _optional(Anything()),
})
SECRET = Obj({"secret": Key(_SECRET_FIELDS)})
_VERSION_METADATA = Obj({
    "id": Key(Str(pattern=TEXT, rule="version id")),
    "secret_name": _optional(Str()),
    "kms_key_id": _optional(Str()),
    "version_stages": _optional(Arr(Str(pattern=TEXT, rule="stage name"))),
})
CREATED_VERSION = Obj({"version_metadata": Key(_VERSION_METADATA)})
STAGE = Obj({"stage": Key(Obj({
    "name": Key(Str(pattern=TEXT, rule="stage name")),
    "version_id": Key(Str(pattern=TEXT, rule="version id")),
    "secret_name": _optional(Str()),
}))})
VERSION = Obj({"version": Key(Obj({
    "version_metadata": Key(_VERSION_METADATA),
    "secret_string": _optional(Str(sensitive=True)),
    "secret_binary": _optional(Str(sensitive=True)),
}))})
VERSIONS = Obj({
    "version_metadatas": Key(Arr(_VERSION_METADATA)),
    "page_info": _optional(Obj({"next_marker": _optional(Str()),
                                "current_count": _optional(Anything())})),
})
