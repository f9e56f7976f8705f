"""Durations on the command line: "0s", "30s", "1.5m", "2m30s", "500ms", "1h" -> seconds.

May import: ``reconciler.errors``.
"""

from __future__ import annotations

import math
import re

from reconciler.errors import UsageError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d)")


def parse_duration(text: str, *, option: str = "--lock-timeout") -> float:
    """Seconds in ``text``: a sequence of NUMBER+UNIT (ms, s, m, h, d), or a bare "0".

    A bare number is seconds. Anything else is a ``UsageError`` naming ``option``.
    """
    value = text.strip()
    total, pos = 0.0, 0
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        total, pos = float(value), len(value)
    for match in _PART.finditer(value if pos == 0 else ""):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not value or pos != len(value) or not math.isfinite(total):
        raise UsageError(
            f"{option}: {text!r} is not a duration; use a number with a unit, "
            "e.g. 0s, 30s, 2m, 1h30m, 500ms."
        )
    return total


def describe_duration(seconds: float) -> str:
    """``seconds`` for people, in the largest unit that says it: "83 days", "2 hours",
    "2 hours 10 minutes", "45 minutes", "30 seconds" (whole days once past a day)."""
    whole = max(0, int(seconds))

    def n(count: int, unit: str) -> str:
        return f"{count} {unit}{'' if count == 1 else 's'}"

    if whole >= 86400:
        return n(whole // 86400, "day")
    if whole >= 3600:
        minutes = whole % 3600 // 60
        return n(whole // 3600, "hour") + (f" {n(minutes, 'minute')}" if minutes else "")
    if whole >= 60:
        return n(whole // 60, "minute")
    return n(whole, "second")
