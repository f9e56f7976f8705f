"""The secret values this process knows, and the one scrubber for text about to be shown.

Credentials taken from the environment (AK, SK, security tokens, S3 keys, the state
passphrase) are registered here once they are checked; ``scrub`` replaces every registered
value, and every PEM or OpenSSH private key block, with ``(sensitive value)``. The CLI applies
it to whatever it prints on its error paths (exception text, the ``--debug`` traceback) and
the debug log applies it to every record, so a secret that found its way into an exception
message or a library's log line is not shown.

``register_environment`` registers every secret variable of the environment as the CLI
starts, whether or not the command gets to use it (a passphrase is only read when a secret
is sealed, but an exception may quote it before that).

Private keys are caught by their armour rather than registered one by one: an apply of
10,000 key pairs would otherwise keep 10,000 copies alive. The registry is bounded.

May import: the standard library, ``reconciler.model``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping

from reconciler.model import SENSITIVE

MIN_LENGTH = 4  # shorter values would scrub ordinary words
MAX_VALUES = 64

SECRET_VARIABLES = (
    "HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_SECURITY_TOKEN",
    "HW_ACCESS_KEY", "HW_SECRET_KEY", "HW_SECURITY_TOKEN",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "OBS_ACCESS_KEY_ID", "OBS_SECRET_ACCESS_KEY", "OBS_SECURITY_TOKEN",
    "RECONCILER_PASSPHRASE", "HUAWEICLOUD_OIDC_ID_TOKEN",
)

_lock = threading.Lock()
_values: dict[str, None] = {}  # insertion-ordered: the oldest goes first when full
_PRIVATE_BLOCK = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)", re.S)
_PUTTY = re.compile(r"PuTTY-User-Key-File-\d+:.*?(?:Private-MAC:\s*\S+|\Z)", re.S)


def register(value: str) -> None:
    """Remember ``value`` as secret for ``scrub`` (values shorter than 4 characters are not)."""
    if len(value) < MIN_LENGTH:
        return
    with _lock:
        _values.pop(value, None)
        _values[value] = None
        while len(_values) > MAX_VALUES:
            del _values[next(iter(_values))]


def register_environment(environ: Mapping[str, str]) -> None:
    """Start over with the value of every secret variable that is set: as it is, stripped, and
    as a ``repr`` would show it (a value with a newline shows as ``\\n`` in a traceback).

    Each command starts over, so that what one run (of several in a process, as in a test
    suite or an embedding program) held secret does not blank words out of the next one's
    messages."""
    with _lock:
        _values.clear()
    for name in SECRET_VARIABLES:
        value = environ.get(name)
        if value:
            for form in {value, value.strip(), repr(value)[1:-1]}:
                register(form)


def scrub(text: str) -> str:
    """``text`` without any registered secret or private key block."""
    with _lock:
        values = sorted(_values, key=len, reverse=True)  # a longer secret may contain a shorter
    for value in values:
        if value in text:
            text = text.replace(value, SENSITIVE)
    text = _PRIVATE_BLOCK.sub(SENSITIVE, text)
    return _PUTTY.sub(SENSITIVE, text)
