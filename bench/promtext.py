"""Reading the Prometheus text format: just enough to sum the series a check needs."""

from __future__ import annotations

import re
from typing import Final

_SAMPLE: Final = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL: Final = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Labels = tuple[tuple[str, str], ...]


def samples(text: str, name: str) -> dict[Labels, float]:
    """Every sample of one metric name, keyed by its sorted labels."""
    found: dict[Labels, float] = {}
    prefix = name
    for line in text.splitlines():
        if not line.startswith(prefix) or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None or m.group(1) != name:
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
        found[labels] = float(m.group(3))
    return found


def by_label(text: str, name: str, label: str) -> dict[str, float]:
    """Samples of one metric summed by one label's value."""
    out: dict[str, float] = {}
    for labels, value in samples(text, name).items():
        key = dict(labels).get(label, "")
        out[key] = out.get(key, 0.0) + value
    return out


def total(text: str, name: str) -> float:
    """The sum of every sample of one metric name."""
    return sum(samples(text, name).values())


def series_count(text: str, name: str) -> int:
    return len(samples(text, name))
