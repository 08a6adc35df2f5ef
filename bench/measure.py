"""What one measurement yields, and the steps every follower measurement shares: append a corpus to a file a
server follows, then poll its metrics until it has counted everything."""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.procs import Server

APPEND_CHUNK: Final = 1 << 20
POLL_SECONDS: Final = 0.05
"""Polling interval while a follower catches up: the throughput's resolution, and light enough on the server."""
STALL_SECONDS: Final = 5.0
"""A follower whose counts have not moved for this long has counted all it ever will."""

SAMPLES_KEPT: Final = 20
"""results.json keeps at most this many raw samples per measure, else a summary."""

Counts = Mapping[str, float]


@dataclass
class Check:
    """Counts a tool reported next to what the generator wrote."""

    what: str
    expected: dict[str, int]
    got: dict[str, int]

    @property
    def ok(self) -> bool:
        return self.expected == self.got

    def differences(self) -> dict[str, tuple[int, int]]:
        keys = sorted(set(self.expected) | set(self.got))
        return {
            k: (self.expected.get(k, 0), self.got.get(k, 0))
            for k in keys
            if self.expected.get(k, 0) != self.got.get(k, 0)
        }


@dataclass
class Measure:
    """One quantity measured `len(samples)` times; `value` is the median."""

    name: str
    unit: str
    samples: list[float] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def value(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def best(self) -> float | None:
        """The round least disturbed by other work on the machine: the highest speed (a unit per second), the
        least of anything else (a time, a size)."""
        if not self.samples:
            return None
        return max(self.samples) if self.unit.endswith("/s") else min(self.samples)

    def absorb(self, other: Measure) -> None:
        """Adds the samples of another round of the same measure; its checks replace ours and peaks add up to
        the highest."""
        self.samples += other.samples
        self.checks = other.checks
        self.note = other.note
        for key, value in other.extra.items():
            mine = self.extra.get(key)
            self.extra[key] = max(mine, value) if key.startswith("peak_") and mine is not None else value

    @property
    def counts_ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def summary(self) -> dict[str, float]:
        """Many samples (latencies, scrapes) in a few numbers."""
        return {
            "count": len(self.samples),
            "min": min(self.samples),
            "p50": percentile(self.samples, 50),
            "p90": percentile(self.samples, 90),
            "p99": percentile(self.samples, 99),
            "max": max(self.samples),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "value": self.value,
            "best": self.best,
            "samples": self.samples if len(self.samples) <= SAMPLES_KEPT else self.summary(),
            "counts_ok": self.counts_ok,
            "checks": [
                {
                    "what": c.what,
                    "ok": c.ok,
                    "expected": c.expected,
                    "got": c.got,
                    "differences": c.differences(),
                }
                for c in self.checks
            ],
            "note": self.note,
            **self.extra,
        }


def as_ints(counts: Counts) -> dict[str, int]:
    """Counts without the zero entries (a metric's placeholder series), as integers."""
    return {k: int(v) for k, v in counts.items() if v}


@dataclass
class Followed:
    """How a follower took in one appended corpus."""

    seconds: float
    """From the first byte written to the scrape that showed the expected counts (or the last change)."""
    complete: bool
    counts: dict[str, int]
    peak_rss_kb: int = 0


def append_and_wait(
    server: Server,
    corpus: Path,
    target: Path,
    read_counts: Callable[[str], Counts],
    expected: Mapping[str, int],
    *,
    timeout: float,
) -> Followed:
    """Append `corpus` to `target` as fast as the disk takes it and poll until `read_counts` of the metrics
    page equals `expected`; a follower that stalls short of it is reported as incomplete."""
    expected_ints = dict(expected)
    start = time.perf_counter()
    with open(corpus, "rb") as src, open(target, "ab", buffering=0) as dst:
        while chunk := src.read(APPEND_CHUNK):
            dst.write(chunk)
    last_change = start
    last: dict[str, int] = {}
    deadline = start + timeout
    while True:
        now = time.perf_counter()
        counts = as_ints(read_counts(server.scrape()))
        if counts == expected_ints:
            return Followed(now - start, True, counts)
        if counts != last:
            last, last_change = counts, now
        elif now - last_change > STALL_SECONDS or now > deadline:
            return Followed(last_change - start, False, counts)
        time.sleep(POLL_SECONDS)


def wait_stable(read: Callable[[], float], *, settle: float = 0.5, timeout: float = 600.0) -> float:
    """The value once it has not changed for `settle` seconds."""
    deadline = time.monotonic() + timeout
    value = read()
    changed = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now_value = read()
        if now_value != value:
            value, changed = now_value, time.monotonic()
        elif time.monotonic() - changed >= settle:
            break
    return value


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def file_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            count += chunk.count(b"\n")
    return count


def fresh(path: Path) -> Path:
    """An empty file at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.unlink(path)
    path.touch()
    return path
