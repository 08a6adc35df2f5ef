"""Where lines come from: followed files, the systemd journal, standard input.

A source reads lines and hands them, in batches, to a Sink together with the position that follows the batch.
The sink applies the batch and records the position under one lock, so a saved position always matches the
counters saved with it (exactly once across restarts).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

# Position is only named in annotations: `report` imports sources.lines without the state file's machinery.
if TYPE_CHECKING:
    from exporter.sources.position import Position

ROTATION_KINDS: Final = ("rename", "truncate", "recreate")
"""How a followed file was replaced: `rename` (logrotate `create`: the name now points to a new inode; the
old file is drained to its end first), `truncate` (copytruncate, or a cut to a middle offset), `recreate` (the
file was deleted and a new one appeared under the name)."""

MAX_RETIRED: Final = 256
"""How many sources no longer followed keep their saved position and join memory (a glob over dated logs retires
one a day): beyond that, the oldest are forgotten, so the state file stays bounded."""

SOURCE_STATES: Final = (
    "opening",
    "open",
    "missing",
    "permission_denied",
    "not_regular_file",
    "error",
    "finished",
)
"""What a source is doing, for people (the landing page) and Prometheus (gmail_exporter_source_state): `opening`
before its first look; `open` while it reads; `missing` (the log does not exist), `permission_denied`,
`not_regular_file` (a FIFO, device or directory at a log path) and `error` (anything else, retried);
`finished` when standard input closed."""


class Sink(Protocol):
    """Where sources deliver what they read; implemented by the ingest stage."""

    def lines(self, source: str, lines: list[bytes], nbytes: int, position: Position | None) -> None:
        """Complete lines (without newline) read from `source`; `position` is where reading resumes after
        them (None for sources that cannot resume)."""

    def block(self, source: str, block: bytes, nbytes: int, position: Position | None) -> None:
        """Like lines(), for complete lines joined by newlines (a followed file's reads): the analyser takes
        the block whole, which spares splitting a busy log into a million small objects."""

    def started(self, source: str, position: Position) -> None:
        """Where following began, before any new line: saved at once, so that a restart after a quiet spell
        reads the lines written while the exporter was down instead of starting at the end again."""

    def rotated(self, source: str, kind: str) -> None:
        """The followed file was rotated (one of ROTATION_KINDS)."""

    def error(self, source: str) -> None:
        """The source failed (journalctl exited, a read error) and will retry."""

    def retired(self, source: str) -> None:
        """The source is no longer followed (a glob's match that has been gone for a while); its position stays
        saved, among a bounded number of retired ones, in case its name comes back."""


@dataclass
class SourceStatus:
    """What the landing page, the readiness check and the source metrics show about one source; written by its
    reader thread."""

    name: str
    state: str = "opening"
    """One of SOURCE_STATES."""
    detail: str = ""
    """Why, when the state is not `open` (the operating system's words)."""
    open: bool = False
    offset: int = 0
    size: int = 0
    last_read: float = 0.0
    """Unix time at which the last line was read."""
    finished: bool = False
    """True when the source ended (standard input closed)."""
    failed: str = ""
    """Why the source's reader is not running (it failed unexpectedly and waits to start again); empty while it
    runs. The exporter is not healthy while a source has one."""
    started: bool = True
    """False until a followed file's first look is done and where following began is recorded: before that its
    first read may not have happened yet, so the exporter is not ready."""
    resumed: bool = True
    """False while a source restarted from a saved position reads what was logged while the exporter was down:
    its counters are then below what was served before the restart, so they are not served yet."""


class Source(Protocol):
    """A reader of one kind of input, run in its own thread until `stop` is set."""

    def statuses(self) -> list[SourceStatus]:
        """One entry per followed stream."""

    def run(self, stop: threading.Event) -> None:
        """Read and deliver lines until `stop` is set."""

    def stop_waking(self) -> None:
        """Wakes the source's loops so that a set `stop` is seen at once."""


def join(threads: Sequence[threading.Thread], timeout: float) -> list[str]:
    """Waits up to `timeout` seconds in all for the threads to end (a stuck one must not hold up shutdown once per
    thread); the names of those still running."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [thread.name for thread in threads if thread.is_alive()]
