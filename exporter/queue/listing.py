"""What every queue listing parser shares: the queued recipient it yields, the count of what it could not read,
and the bounded line splitter that keeps a listing of any size in bounded memory."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO, Final, NamedTuple

from exporter.queue.shared import domain_of

UNREADABLE_REASONS: Final = ("malformed", "too_long", "truncated")
"""Why a listing entry was skipped: not in the MTA's format, longer than the parser accepts, or cut off by the
listing's end (every MTA ends its listing with a newline)."""

MAX_REASON_CHARS: Final = 4096
"""A delay reason is cut here, like a logged reply (Gmail's longest replies are about 600 characters)."""
MAX_ID_CHARS: Final = 64


class QueuedRecipient(NamedTuple):
    """One recipient waiting in the MTA's queue. The address itself is never kept: only its domain."""

    queue_id: str
    arrival: float | None
    """When the message entered the queue (Unix time), as precisely as the listing says."""
    domain: str | None
    reason: str | None
    """The MTA's words about the last delivery attempt; None when it was not tried yet."""


class ListingStats:
    """What one listing held: messages read, and entries skipped by reason (UNREADABLE_REASONS)."""

    def __init__(self) -> None:
        self.messages = 0
        self.unreadable: dict[str, int] = dict.fromkeys(UNREADABLE_REASONS, 0)

    def skip(self, reason: str) -> None:
        self.unreadable[reason] += 1

    @property
    def skipped(self) -> int:
        return sum(self.unreadable.values())


def recipient(queue_id: str, arrival: float | None, address: str, reason: str | None) -> QueuedRecipient:
    """A QueuedRecipient with every field bounded."""
    return QueuedRecipient(
        queue_id[:MAX_ID_CHARS],
        arrival,
        domain_of(address[:1024]),
        reason[:MAX_REASON_CHARS] if reason else None,
    )


def split_lines(chunks: Iterable[bytes], max_bytes: int, stats: ListingStats) -> Iterator[bytes]:
    """The lines of a stream of byte chunks, without their newline. A line longer than `max_bytes` is skipped
    (too_long) without being held; a last line without a newline is dropped (truncated). A line holding a NUL byte
    is no MTA's listing: skipped as malformed."""
    parts: list[bytes] = []
    """The start of a line that spans chunks (joined once, when its newline comes)."""
    size = 0
    overlong = False
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                if not overlong and start < len(chunk):
                    parts.append(chunk[start:])
                    size += len(chunk) - start
                    if size > max_bytes:
                        overlong, parts, size = True, [], 0
                break
            if overlong:
                stats.skip("too_long")
                overlong = False
            else:
                line = b"".join((*parts, chunk[start:end])) if parts else chunk[start:end]
                parts, size = [], 0
                if len(line) > max_bytes:
                    stats.skip("too_long")
                elif b"\x00" in line:
                    stats.skip("malformed")
                else:
                    yield line
            start = end + 1
    if overlong:
        stats.skip("too_long")
    elif parts:
        stats.skip("truncated")


def read_chunks(stream: BinaryIO, size: int = 1 << 16) -> Iterator[bytes]:
    """Chunks of a binary file object (a recorded listing)."""
    while chunk := stream.read(size):
        yield chunk
