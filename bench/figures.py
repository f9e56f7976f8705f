"""One row of the results table, and how it is shown and saved.

May import: the standard library.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Figure:
    """A measured figure against its floor and its target (DESIGN §8)."""

    id: str
    work: str
    measured: float
    unit: str
    floor: float | None
    target: str
    met: bool | None  # None: reported, no target
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.floor <= 0:
            return None
        return self.measured / self.floor

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ratio": self.ratio}


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "B":
        return f"{value / 1e6:.2f} MB" if value >= 1e5 else f"{value:.0f} B"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "req":
        return f"{value:.0f} req"
    return f"{value:g} {unit}".strip()


def render_table(figures: list[Figure]) -> str:
    """A Markdown table (also readable in a terminal)."""
    head = ("| id | work | measured | floor | ratio | target | met |\n"
            "|---|---|---|---|---|---|---|\n")
    rows = []
    for f in figures:
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}"
        met = "-" if f.met is None else ("yes" if f.met else "**NO**")
        rows.append(f"| {f.id} | {f.work} | {_num(f.measured, f.unit)} | "
                    f"{_num(f.floor, f.unit)} | {ratio} | {f.target} | {met} |")
    return head + "\n".join(rows) + "\n"


def render_scaling(rows: list[dict[str, Any]]) -> str:
    head = ("| command | N | wall | CPU | peak RSS | bytes written | API requests | "
            "wall/N | CPU/N |\n|---|---|---|---|---|---|---|---|---|\n")
    out = []
    for r in rows:
        n = r["n"]
        out.append(
            f"| {r['command']} | {n:,} | {r['wall']:.3f} s | {r['cpu']:.3f} s | "
            f"{r['rss_mb']:.1f} MB | {_num(r['written'], 'B')} | {r['requests']:.0f} | "
            f"{1000 * r['wall'] / n:.3f} ms | {1000 * r['cpu'] / n:.3f} ms |")
    return head + "\n".join(out) + "\n"
