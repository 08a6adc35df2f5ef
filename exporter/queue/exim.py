"""Exim: `exim -bpr` for the queue, and each message's last deferral from its message log (spool msglog/).

`-bpr` is `-bp` unsorted: Exim does not read every message id into memory first to sort them. Its listing:

     0m   379 1xZ42l-0003D1-09 <news@example.org>
              seed-07@gmail.com
            D accept-04@gmail.com

The listing says nothing of deferrals; the message log does, one line per attempt, the last one per recipient
counting (a host-level line before it names the host when the recipient's line does not):

    2026-12-03 10:28:03.615 H=alt2.gmail-smtp-in.l.google.com [127.0.0.4] Connection refused
    2026-12-03 10:28:03.619 queue-refused@workspace.example R=workspace T=remote_smtp defer (111): Connection refused
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from exporter import patterns
from exporter.queue.listing import ListingStats, QueuedRecipient, recipient

COMMAND: Final = ("exim", "-bpr")
MAX_LINE_BYTES: Final = 64 * 1024
MAX_MSGLOG_BYTES: Final = 64 * 1024
"""Only the end of a message log is read: the last attempts are there."""

MESSAGE_ID: Final = patterns.compile(r"[0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}")
"""Exim's message ids: 4.96's 1xZ42l-0003D1-09 and 4.97's longer 1xZ42l-000000003D1-09Ab."""
_HEAD: Final = patterns.compile(
    r"\s*(\d{1,6})([mhdw]?)\s+\S+\s+(" + MESSAGE_ID.pattern + r")\s+<[^>]{0,1024}>(?:\s.*)?"
)
_UNITS: Final = {"": 60.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DEFER: Final = patterns.compile(r"(\S{1,1024}) (?:<[^>]{0,1024}> )?R=\S* T=\S* defer \(-?\d{1,6}\)(.*)")
_HOST_LINE: Final = patterns.compile(r"H=\S+ \[[^\]]{1,64}\]")

MsglogReader = Callable[[str], bytes | None]
"""A message log's last bytes by message id; None when the message has none (yet) or is gone."""


def arrival(message_id: str, age_value: int, age_unit: str, now: float) -> float:
    """When the message arrived: the time in its id (seconds, base 62) when it agrees with the listed age (whose
    unit is the resolution), else now minus the age. Ids in base 36 (case-insensitive file systems) disagree."""
    unit = _UNITS.get(age_unit, 60.0)
    approximate = now - age_value * unit
    stamp = 0
    for char in message_id[:6]:
        stamp = stamp * 62 + _BASE62.index(char)
    if abs(stamp - approximate) <= unit + 60:
        return float(stamp)
    return approximate


def last_deferrals(msglog: bytes) -> dict[str, str]:
    """Recipient -> the message log's last deferral for it."""
    found: dict[str, str] = {}
    host_line = ""
    text = msglog.decode("utf-8", "replace")
    for line in text.splitlines():
        # '<date> <time> <event>': the event starts after the second space.
        parts = line.split(" ", 2)
        if len(parts) < 3:
            continue
        event = parts[2]
        if event.startswith("H="):
            host = _HOST_LINE.match(event)
            host_line = event if host else host_line
            continue
        defer = _DEFER.fullmatch(event)
        if defer is None:
            continue
        rcpt, why = defer.group(1), defer.group(2).strip().removeprefix(":").strip()
        if "retry time not reached" in why.lower():
            continue  # a skipped attempt: the earlier reason still holds
        if "H=" not in why and host_line:
            why = f"{host_line}: {why}"
        found[rcpt] = why
    return found


def parse(
    lines: Iterable[bytes], stats: ListingStats, msglog: MsglogReader, now: float | None = None
) -> Iterator[QueuedRecipient]:
    """The queued recipients of an `exim -bp` listing with each one's last deferral from `msglog`."""
    now = time.time() if now is None else now
    queue_id: str | None = None
    when: float | None = None
    deferrals: dict[str, str] = {}
    for raw in lines:
        line = raw.decode("utf-8", "replace")
        if not line.strip():
            queue_id = None
            continue
        head = _HEAD.fullmatch(line)
        if head is not None:
            queue_id = head.group(3)
            when = arrival(queue_id, int(head.group(1)), head.group(2), now)
            log = msglog(queue_id)
            deferrals = last_deferrals(log) if log else {}
            stats.messages += 1
            continue
        if queue_id is None or not line[:1].isspace():
            stats.skip("malformed")  # a recipient line is indented and follows its message's line
            continue
        words = line.split()
        if words[0] in ("D", "+D"):
            continue  # delivered
        address = words[1] if words[0] == "+" and len(words) > 1 else words[0]
        yield recipient(queue_id, when, address, deferrals.get(address))
