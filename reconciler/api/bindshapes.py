"""The documented shape of the ECS server list and the KPS binding task answers (``docs/ecs.md``).

Described with ``shapes``' nodes and held to with ``shapes.check``, as the key pair answers
are. Only fields reconciler reads are constrained; numbers (``count``, ``total``) have no
node of their own and are checked by the clients that read them.

May import: the standard library, ``reconciler.api.shapes``.
"""

from __future__ import annotations

import re

from reconciler.api.shapes import NAME, Anything, Arr, Key, Node, Obj, Str

SERVER_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{0,63}")
TEXT = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
SUBMISSION_STATUS = re.compile(r"SUCCESS|FAILED")
TASK_STATUS = re.compile(r"(READY|RUNNING|SUCCESS|FAILED)_(RESET|REPLACE|UNBIND)")


def _optional(node: Node) -> Key:
    return Key(node, required=False, nullable=True)


_SERVER_ID = Str(pattern=SERVER_ID, rule="server id")
_KEY_NAME = Str(pattern=NAME)

# -- ECS ---------------------------------------------------------------------------------------

SERVER = Obj({
    "id": Key(_SERVER_ID),
    "name": Key(Str(pattern=TEXT, rule="server name")),
    "status": Key(Str(pattern=TEXT, rule="server status")),
    "key_name": _optional(Str()),  # "" and null: no key pair
    "image": _optional(Anything()),
    "metadata": _optional(Obj({
        "metering.imagetype": _optional(Str()),
        "metering.image_id": _optional(Str()),
    })),
})
SERVERS = Obj({
    "count": Key(Anything()),
    "servers": Key(Arr(SERVER)),
})

# -- KPS binding tasks ------------------------------------------------------------------------

SUBMITTED = Obj({
    "task_id": _optional(Str(pattern=TEXT, rule="task id")),
    "server_id": _optional(_SERVER_ID),
    "status": Key(Str(pattern=SUBMISSION_STATUS, rule="submission status (SUCCESS, FAILED)")),
    "error_code": _optional(Str()),
    "error_msg": _optional(Str()),
})
BATCH_SUBMITTED = Obj({"tasks": Key(Arr(SUBMITTED))})
TASK = Obj({
    "task_id": _optional(Str()),
    "server_id": _optional(Str()),
    "task_status": Key(Str(pattern=TASK_STATUS, rule="task status")),
})
_TASK_ITEM = {
    "task_id": Key(Str(pattern=TEXT, rule="task id")),
    "operate_type": _optional(Str()),
    "task_time": _optional(Anything()),
    "server_name": _optional(Str()),
    "server_id": _optional(Str()),
    "keypair_name": _optional(_KEY_NAME),
}
RUNNING_TASKS = Obj({"total": _optional(Anything()), "tasks": Key(Arr(Obj(_TASK_ITEM)))})
FAILED_TASKS = Obj({"total": _optional(Anything()), "tasks": Key(Arr(Obj({
    **_TASK_ITEM,
    "task_error_code": _optional(Str()),
    "task_error_msg": _optional(Str()),
})))})
NO_BODY = Obj()  # delete of a failed task: nothing is read
