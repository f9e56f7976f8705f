"""The secret values this process knows, and the one scrubber for text about to be shown.

Credentials taken from the environment (AK, SK, security tokens, S3 keys, the state
passphrase) are registered here once they are checked; ``scrub`` replaces every registered
value, and every PEM or OpenSSH private key block, with ``(sensitive value)``. The CLI applies
it to whatever it prints on its error paths (exception text, the ``--debug`` traceback) and
the debug log applies it to every record, so a secret that found its way into an exception
message or a library's log line is not shown.

Private keys are caught by their armour rather than registered one by one: an apply of
10,000 key pairs would otherwise keep 10,000 copies alive. The registry is bounded.

May import: the standard library, ``reconciler.model``.
"""

from __future__ import annotations

import re
import threading

from reconciler.model import SENSITIVE

MIN_LENGTH = 4  # shorter values would scrub ordinary words
MAX_VALUES = 64

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


def scrub(text: str) -> str:
    """``text`` without any registered secret or private key block."""
    with _lock:
        values = sorted(_values, key=len, reverse=True)  # a longer secret may contain a shorter
    for value in values:
        if value in text:
            text = text.replace(value, SENSITIVE)
    text = _PRIVATE_BLOCK.sub(SENSITIVE, text)
    return _PUTTY.sub(SENSITIVE, text)
