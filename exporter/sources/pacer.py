"""When a followed file is looked at: at once when inotify announces a change, and by a stat safety net under it,
because inotify can overflow silently and does not see network filesystems.

The clock and the wait are passed in, so tests drive time instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Wake(Protocol):
    """What a reader loop sleeps on: set by inotify and by stop."""

    def wait(self, timeout: float | None = None) -> bool: ...

    def set(self) -> None: ...

    def clear(self) -> None: ...


@dataclass(frozen=True)
class Timing:
    """The safety net's periods."""

    poll: float = 1.0
    """Between looks while inotify may miss something."""
    quiet: float = 10.0
    """Between looks while inotify is trusted: the file open, its directory watched, nothing being drained, and no
    look in the last `distrust` seconds found news that inotify had not announced. An idle exporter's cost is its
    wake-ups."""
    distrust: float = 60.0
    announce_grace: float = 0.5
    """How long after a look found news inotify may still announce it (its events reach us from watchdog's thread)
    before the news counts as missed."""
    drain_grace: float = 5.0
    """How long a rotated file is still read after it last grew (the MTA may append after the rename)."""
    retry: tuple[float, float] = (1.0, 30.0)
    """First and longest wait before a reader that failed unexpectedly is started again."""
    retire_after: float = 600.0
    """How long a glob's match stays gone (its name missing, its last file read to the end) before it is no longer
    followed. A name that comes back sooner is a rotation; one that comes back later is followed again."""


DEFAULT_TIMING = Timing()


class Pacer:
    """Decides how long a reader loop sleeps before its next look."""

    def __init__(self, timing: Timing = DEFAULT_TIMING, clock: Callable[[], float] = time.monotonic) -> None:
        self.timing = timing
        self.clock = clock
        self._distrust_until = float("-inf")

    def timeout(self, trusted: bool) -> float:
        """The sleep before the next look; `trusted`: inotify watches all that can change."""
        if trusted and self.clock() >= self._distrust_until:
            return self.timing.quiet
        return self.timing.poll

    @property
    def distrusting(self) -> bool:
        return self.clock() < self._distrust_until

    def looked(self, *, woke: bool, news: bool, trusted: bool, wake: Wake) -> None:
        """After a look: news that a timed-out wait found, and that inotify does not announce within the grace,
        was missed by inotify; the safety net then looks every `poll` seconds for `distrust` seconds."""
        if woke or not news or not trusted:
            return
        if self.distrusting or not wake.wait(self.timing.announce_grace):
            self._distrust_until = self.clock() + self.timing.distrust


def new_wake() -> Wake:
    return threading.Event()
