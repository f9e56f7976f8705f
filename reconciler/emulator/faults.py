"""Injected faults and request counters of the emulator.

A fault is decided per API request, before it is acted on, from one seeded
``random.Random`` under a lock (so a seed gives a reproducible sequence for a given
request order):

- ``error``: answered with one of ``statuses`` without acting (429 carries ``Retry-After``);
- ``drop``: the connection is closed without any answer, without acting;
- ``lost``: a write is carried out, then the connection is closed without an answer.

May import: the standard library only.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

WRITE_OPERATIONS = frozenset(
    {"create", "import", "delete", "update", "import_private_key", "clear_private_key",
     "batch_import"}
)
DEFAULT_STATUSES: tuple[int, ...] = (500, 502, 503, 429)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    latency_ms: float = 0.0
    error_rate: float = 0.0
    statuses: tuple[int, ...] = DEFAULT_STATUSES
    retry_after: float = 0.0
    drop_rate: float = 0.0
    lost_response_rate: float = 0.0
    operations: frozenset[str] | None = None  # None: every API operation

    @classmethod
    def mixed(cls, *, latency_ms: float, fault_rate: float) -> FaultConfig:
        """The ``--fault-rate`` mix: four fifths error statuses (5xx, 429), one fifth drops."""
        return cls(
            latency_ms=latency_ms,
            error_rate=fault_rate * 0.8,
            drop_rate=fault_rate * 0.2,
        )


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str  # "error" | "drop" | "lost"
    status: int = 0
    retry_after: float = 0.0


def _check_rate(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, not {value}")
    return float(value)


def make_config(
    *,
    latency_ms: float,
    error_rate: float = 0.0,
    statuses: Sequence[int] = DEFAULT_STATUSES,
    retry_after: float = 0.0,
    drop_rate: float = 0.0,
    lost_response_rate: float = 0.0,
    operations: Sequence[str] | None = None,
) -> FaultConfig:
    """A checked ``FaultConfig`` (rates in [0, 1], statuses 4xx/5xx, latency >= 0)."""
    if latency_ms < 0 or retry_after < 0:
        raise ValueError("latency_ms and retry_after must not be negative")
    codes = tuple(int(s) for s in statuses)
    if not codes or any(not 400 <= s <= 599 for s in codes):
        raise ValueError("statuses must be HTTP error codes (400-599)")
    return FaultConfig(
        latency_ms=float(latency_ms),
        error_rate=_check_rate("error_rate", error_rate),
        statuses=codes,
        retry_after=float(retry_after),
        drop_rate=_check_rate("drop_rate", drop_rate),
        lost_response_rate=_check_rate("lost_response_rate", lost_response_rate),
        operations=frozenset(operations) if operations is not None else None,
    )


class Faults:
    """The current fault configuration and its random source."""

    def __init__(self, config: FaultConfig, *, seed: int | None) -> None:
        self._lock = threading.Lock()
        self._config = config
        self._random = random.Random(seed)

    @property
    def config(self) -> FaultConfig:
        with self._lock:
            return self._config

    def configure(self, config: FaultConfig, *, seed: int | None = None) -> None:
        with self._lock:
            self._config = config
            if seed is not None:
                self._random.seed(seed)

    def decide(self, operation: str, *, write: bool | None = None) -> Fault | None:
        """The fault to inject into one request of ``operation``, if any; ``write`` says
        whether its answer may be lost (by default: a key pair write)."""
        with self._lock:
            cfg = self._config
            if cfg.operations is not None and operation not in cfg.operations:
                return None
            if cfg.drop_rate and self._random.random() < cfg.drop_rate:
                return Fault("drop")
            if cfg.error_rate and self._random.random() < cfg.error_rate:
                status = self._random.choice(cfg.statuses)
                return Fault("error", status=status, retry_after=cfg.retry_after)
            if (
                cfg.lost_response_rate
                and (operation in WRITE_OPERATIONS if write is None else write)
                and self._random.random() < cfg.lost_response_rate
            ):
                return Fault("lost")
            return None


class Counters:
    """Request counts by name; increments are atomic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, *names: str) -> None:
        with self._lock:
            for name in names:
                self._counts[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
