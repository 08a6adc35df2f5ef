"""Helpers shared by the tests: a recording sink for sources, a clock and wake-up that tests drive."""

from __future__ import annotations

import threading
import time
from collections import Counter

from exporter.sources.position import Position


class RecordingSink:
    """A Sink that records every line delivered (with when it arrived), the last position and what happened."""

    def __init__(self) -> None:
        self.seen: Counter[bytes] = Counter()
        self.arrived: dict[bytes, float] = {}
        self.position: Position | None = None
        self.starts: list[Position] = []
        self.rotations: list[str] = []
        self.errors = 0
        self.changed = threading.Condition()

    def lines(self, source: str, lines: list[bytes], nbytes: int, position: Position | None) -> None:
        with self.changed:
            self.seen.update(lines)
            now = time.monotonic()
            for line in lines:
                self.arrived.setdefault(line, now)
            self.position = position or self.position
            self.changed.notify_all()

    def block(self, source: str, block: bytes, nbytes: int, position: Position | None) -> None:
        self.lines(source, block.splitlines(), nbytes, position)

    def started(self, source: str, position: Position) -> None:
        with self.changed:
            self.starts.append(position)
            self.position = position
            self.changed.notify_all()

    def rotated(self, source: str, kind: str) -> None:
        self.rotations.append(kind)

    def error(self, source: str) -> None:
        self.errors += 1

    def wait_for(self, line: bytes, timeout: float) -> float:
        """When `line` arrived; fails after `timeout` seconds without it."""
        with self.changed:
            assert self.changed.wait_for(lambda: line in self.arrived, timeout), f"{line!r} never arrived"
            return self.arrived[line]


class FakeClock:
    """A monotonic clock that moves only when a test (or a FakeWake's wait) moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeWake:
    """A wake-up whose wait() returns at once: set -> True; unset -> the clock moves by the timeout, False. An
    `announce_at` time makes a wait that reaches it return True there (an inotify event arriving late)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.is_set = False
        self.announce_at: float | None = None
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if self.is_set:
            return True
        if self.announce_at is not None and (timeout is None or self.clock.now + timeout >= self.announce_at):
            self.clock.now = max(self.clock.now, self.announce_at)
            self.announce_at = None
            self.is_set = True
            return True
        assert timeout is not None, "a wait without timeout and nothing to wake it"
        self.clock.advance(timeout)
        return False

    def set(self) -> None:
        self.is_set = True

    def clear(self) -> None:
        self.is_set = False
