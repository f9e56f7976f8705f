"""Credentials from the environment, checked before anything is sent.

An AK, SK or security token (the cloud's, or an S3 backend's) goes into an HTTP header and
the signature: it must be printable ASCII without whitespace. A line break that came with it
(a CI secret or a Kubernetes Secret saved with a trailing newline) would otherwise fail deep
inside the HTTP library, with the value in the message. The state passphrase may hold spaces
and any letter, but no control character.

Every error names the variable and what is wrong with it, never the value, nor where in
the value the problem is. A value that passes is registered with ``reconciler.redact``.

May import: the standard library, ``reconciler.errors``, ``reconciler.redact``.
"""

from __future__ import annotations

import re

from reconciler.errors import UsageError
from reconciler.redact import register

_LINE_BREAK = re.compile("[\r\n\u2028\u2029\x85]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_WHITESPACE = re.compile(r"\s")
_HEADER_SAFE = re.compile(r"[\x21-\x7e]*")


def _line_break(variable: str) -> UsageError:
    return UsageError(
        f"{variable} contains a line break; re-export it without the trailing newline "
        "(export VAR=\"$(cat FILE)\" drops it). The value is not shown.")


def header_credential(variable: str, value: str) -> str:
    """``value`` if it can go into an HTTP header as it is, else a ``UsageError``."""
    if _HEADER_SAFE.fullmatch(value) is None:
        if _LINE_BREAK.search(value):
            raise _line_break(variable)
        if _CONTROL.search(value):
            raise UsageError(f"{variable} contains a control character; re-export it as the "
                             "cloud console shows it. The value is not shown.")
        if _WHITESPACE.search(value):
            raise UsageError(f"{variable} contains a space or other whitespace; re-export it "
                             "without (an AK, SK or token never holds one). The value is not "
                             "shown.")
        raise UsageError(f"{variable} contains a non-ASCII character; an AK, SK or token is "
                         "ASCII only (HTTP headers carry nothing else): re-export it as the "
                         "cloud console shows it, not retyped. The value is not shown.")
    register(value)
    return value


def passphrase(variable: str, value: str) -> str:
    """The state passphrase: any text without a control character (a trailing newline is
    refused rather than silently becoming part of the key)."""
    if _LINE_BREAK.search(value):
        raise _line_break(variable)
    if _CONTROL.search(value):
        raise UsageError(f"{variable} contains a control character; a passphrase may hold "
                         "spaces and any letter but no control character: set it again. The "
                         "value is not shown.")
    register(value)
    return value
