"""OpenSMTPD: `smtpctl show queue`, one line per envelope (one recipient), fields separated by '|':

    id|source|type|flags|sender|recipient|destination|creation|expiry|last try|retries|state|next|last error

Only `mta` envelopes (relayed to another host) can wait for Google; `mda` is local delivery and `bounce` a report
to the sender. An envelope with no retries and no error has not been tried yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from exporter import patterns
from exporter.queue.listing import ListingStats, QueuedRecipient, recipient

COMMAND: Final = ("smtpctl", "show", "queue")
MAX_LINE_BYTES: Final = 64 * 1024
_FIELDS: Final = 14
_ID: Final = patterns.compile(r"[0-9a-f]{16}")
_TYPES: Final = frozenset(("mta", "mda", "bounce"))


def parse(lines: Iterable[bytes], stats: ListingStats) -> Iterator[QueuedRecipient]:
    """The queued remote recipients of a `smtpctl show queue` listing."""
    for raw in lines:
        if not raw.strip():
            continue
        fields = raw.decode("utf-8", "replace").split("|", _FIELDS - 1)
        if (
            len(fields) != _FIELDS
            or not _ID.fullmatch(fields[0])
            or fields[2] not in _TYPES
            or not (fields[7].isascii() and fields[7].isdigit())
            or not (fields[10].isascii() and fields[10].isdigit())
        ):
            stats.skip("malformed")
            continue
        stats.messages += 1
        if fields[2] != "mta":
            continue
        error = fields[13].strip()
        reason = error or None
        yield recipient(fields[0], float(fields[7]), fields[5], reason)
