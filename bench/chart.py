"""The throughput chart as a self-contained SVG: horizontal bars, one per tool, grouped by mode."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Final

WIDTH: Final = 820
LABEL_WIDTH: Final = 250
BAR_HEIGHT: Final = 24
GAP: Final = 8
GROUP_GAP: Final = 30
OURS: Final = "#1a73e8"
PEER: Final = "#9aa0a6"
WRONG: Final = "#d93025"


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    ours: bool
    counts_ok: bool = True


def _nice(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.2f} M"
    if value >= 1000:
        return f"{value / 1000:.0f} k"
    return f"{value:.0f}"


def throughput_svg(title: str, groups: list[tuple[str, list[Bar]]], footnote: str = "") -> str:
    """Bars scaled to the largest value; a tool whose counts were wrong is drawn red and says so."""
    top = max((b.value for _, bars in groups for b in bars), default=1.0) or 1.0
    plot = WIDTH - LABEL_WIDTH - 110
    parts: list[str] = []
    y = 50
    for name, bars in groups:
        parts.append(f'<text x="12" y="{y}" font-weight="bold">{escape(name)}</text>')
        y += 12
        for bar in bars:
            length = max(1.0, plot * bar.value / top)
            colour = (OURS if bar.ours else PEER) if bar.counts_ok else WRONG
            label = bar.label + ("" if bar.counts_ok else " (miscounts)")
            parts.append(f'<text x="{LABEL_WIDTH - 8}" y="{y + 16}" text-anchor="end">{escape(label)}</text>')
            parts.append(
                f'<rect x="{LABEL_WIDTH}" y="{y}" width="{length:.1f}" height="{BAR_HEIGHT}" fill="{colour}"/>'
            )
            parts.append(
                f'<text x="{LABEL_WIDTH + length + 6:.1f}" y="{y + 16}">{_nice(bar.value)} lines/s</text>'
            )
            y += BAR_HEIGHT + GAP
        y += GROUP_GAP - GAP
    if footnote:
        parts.append(f'<text x="12" y="{y + 4}" font-size="11" fill="#5f6368">{escape(footnote)}</text>')
        y += 16
    height = y + 4
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="13">\n'
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>\n'
        f'<text x="12" y="24" font-size="15" font-weight="bold">{escape(title)}</text>\n'
        + "\n".join(parts)
        + "\n</svg>\n"
    )
