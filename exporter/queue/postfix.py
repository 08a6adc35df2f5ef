"""Postfix: `postqueue -j` (Postfix 3.1 and later), one JSON object per queued message.

    {"queue_name": "deferred", "queue_id": "098CD20C1D7", "arrival_time": 1796293492, ...,
     "recipients": [{"address": "x@gmail.com", "delay_reason": "host gmail-smtp-in.l.google.com[…] said: 450-4.2.1 …"}]}

A recipient without delay_reason has not been tried yet. Every queue counts (incoming, active, deferred, hold):
a held message is mail that has not reached Gmail either.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from typing import Final

from exporter.queue.listing import ListingStats, QueuedRecipient, recipient

COMMAND: Final = ("postqueue", "-j")
MAX_LINE_BYTES: Final = 4 << 20
"""One message is one line: a bulk message with thousands of recipients and their reasons fits; longer lines are
skipped (too_long) rather than held."""


def parse(lines: Iterable[bytes], stats: ListingStats) -> Iterator[QueuedRecipient]:
    """The queued recipients of a `postqueue -j` listing; entries that are not Postfix's JSON are skipped."""
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            stats.skip("malformed")
            continue
        found = _recipients(entry)
        if found is None:
            stats.skip("malformed")
            continue
        stats.messages += 1
        yield from found


def _recipients(entry: object) -> list[QueuedRecipient] | None:
    """The entry's recipients, or None when it is not shaped like Postfix's."""
    if not isinstance(entry, dict):
        return None
    queue_id, arrival, recipients = entry.get("queue_id"), entry.get("arrival_time"), entry.get("recipients")
    if not isinstance(queue_id, str) or not queue_id or not isinstance(recipients, list):
        return None
    if isinstance(arrival, bool) or not isinstance(arrival, int | float):
        return None
    try:
        when = float(arrival)
    except OverflowError:  # an integer beyond any float
        return None
    if not math.isfinite(when):
        return None
    found: list[QueuedRecipient] = []
    for item in recipients:
        if not isinstance(item, dict):
            return None
        address, reason = item.get("address"), item.get("delay_reason")
        if not isinstance(address, str) or not (reason is None or isinstance(reason, str)):
            return None
        found.append(recipient(queue_id, when, address, reason))
    return found
