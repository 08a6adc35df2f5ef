"""Sendmail: `mailq -v` (`sendmail -bp -v`). One message per head line, its status in parentheses below it,
then its recipients, each (with -v) followed by its own status:

    6B3ATewU013964       34      30165 Dec  3 10:29 news@example.org
                     (Deferred: 450-4.2.1 The user you are trying to contact is receiving mail too)
                            seed-07@gmail.com
             (Deferred: 450-4.2.1 The user you are trying to contact is receiving mail too)

Without -v the status is cut at 60 characters (a Google host's name too) and recipients have none of their own:
both forms are read. Sendmail keeps the first line of a reply only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Final

from exporter import patterns
from exporter.queue.listing import ListingStats, QueuedRecipient, recipient

COMMAND: Final = ("sendmail", "-bp", "-v")
MAX_LINE_BYTES: Final = 64 * 1024

_HEAD: Final = patterns.compile(
    r"(\w{6,32})[*X-]?\s+\d+\s+(?:\d+\s+)?(?:[A-Z][a-z]{2} )?([A-Z][a-z]{2}) +(\d{1,2}) (\d{1,2}):(\d{2})\s+(\S.*)"
)
_STATUS: Final = patterns.compile(r"\s+\((.*)\)\s*")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_NOISE: Final = ("-----Q-ID", "Total requests:", "QUARANTINE:", "Quarantined:")


def arrival(month: str, day: int, hour: int, minute: int, now: float) -> float | None:
    """The queue time Sendmail prints without a year (local time): the latest such moment not after now."""
    if month not in _MONTHS or not (1 <= day <= 31 and hour < 24 and minute < 60):
        return None
    year = time.localtime(now).tm_year
    for candidate in (year, year - 1):
        stamp = time.mktime((candidate, _MONTHS.index(month) + 1, day, hour, minute, 0, 0, 0, -1))
        if stamp <= now + 86400:  # a clock a little behind the MTA's is not a year ago
            return stamp
    return None


def parse(lines: Iterable[bytes], stats: ListingStats, now: float | None = None) -> Iterator[QueuedRecipient]:
    """The queued recipients of a `mailq` or `mailq -v` listing."""
    now = time.time() if now is None else now
    queue_id: str | None = None
    when: float | None = None
    status: str | None = None
    pending: str | None = None
    """A recipient waits one line for a status of its own (-v)."""
    pending_status: str | None = None
    for raw in lines:
        line = raw.decode("utf-8", "replace")
        found = _STATUS.fullmatch(line)
        if found is not None and queue_id is not None:
            if pending is not None:
                pending_status = found.group(1)
            else:
                status = found.group(1)
            continue
        if pending is not None:
            assert queue_id is not None
            yield recipient(queue_id, when, pending, pending_status or status)
            pending = pending_status = None
        stripped = line.strip()
        if (
            not stripped
            or stripped.startswith(_NOISE)
            or stripped.endswith(("requests)", "request)", "is empty"))
        ):
            continue
        head = _HEAD.fullmatch(line)
        if head is not None:
            queue_id = head.group(1)
            month, day, hour, minute = (
                head.group(2),
                int(head.group(3)),
                int(head.group(4)),
                int(head.group(5)),
            )
            when = arrival(month, day, hour, minute, now)
            status = None
            stats.messages += 1
            continue
        if queue_id is None or not line[:1].isspace():
            stats.skip("malformed")  # a recipient line is indented and follows its message's line
            continue
        pending = stripped.split()[0].strip("<>")
    if pending is not None and queue_id is not None:
        yield recipient(queue_id, when, pending, pending_status or status)
