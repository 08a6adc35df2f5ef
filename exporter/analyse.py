"""One log line in, one classified Event out: the MTA parsers, the reply normaliser and the rules, in order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from exporter import mta
from exporter.events import Delivery, Event
from exporter.google import GoogleHosts
from exporter.mta.common import REPLY_START, Context
from exporter.reply import normalise
from exporter.rules import Rules

if TYPE_CHECKING:
    from exporter.config import Config

MAX_LINE_BYTES: Final = 32 * 1024
"""Longer lines are skipped (reason too_long). Sources may cut a line at MAX_LINE_BYTES + 1 bytes and drop the
rest up to its newline: the analyser only needs to see that it is too long."""

SKIP_REASONS: Final = ("too_long", "not_text", "unparseable")

# Byte strings one of which every line about a delivery to Google holds, searched in the lower-cased line:
# its host names, its PTR names, its reply marker, a DNS failure for gmail.com. Not plain "gmail": on an MX
# most lines holding it are about mail *from* Gmail users, and outbound lines name a google.com host anyway
# (or smtp.gmail.com / smtp-relay.gmail.com, which ".gmail.com" finds and "@gmail.com" does not).
_GOOGLE_MARKERS: Final = (b"oogle", b"gsmtp", b"1e100", b".gmail.com", b"name=gmail")


def _has_long_line(blob: bytes, size: int) -> bool:
    """Whether some line of blob[:size] is longer than MAX_LINE_BYTES: jumps from the last newline of one window
    of that size to the next, so a block of short lines costs a few dozen searches, not one per line."""
    rfind, pos = blob.rfind, 0
    while size - pos > MAX_LINE_BYTES:
        newline = rfind(b"\n", pos, pos + MAX_LINE_BYTES + 1)
        if newline < 0:
            return True
        pos = newline + 1
    return False


@dataclass(frozen=True, slots=True)
class Skipped:
    """A line that was not analysed, and why (one of SKIP_REASONS)."""

    reason: str


class Analyser:
    """Turns raw log lines of one stream into Events. Keeps per-stream state (the log's year, queue-id
    joins), so use one Analyser per source."""

    def __init__(
        self,
        rules: Rules,
        *,
        google_hosts: Sequence[str] = (),
        log_format: str | None = None,
        track_senders: bool = False,
        now: float | None = None,
    ) -> None:
        self._formats = mta.formats(log_format or mta.AUTO)
        self._byte_tests = tuple(f.never_a_delivery for f in self._formats if f.never_a_delivery is not None)
        self.rules = rules
        google = GoogleHosts(google_hosts)
        self._ctx = Context(google, now=now, track_senders=track_senders)
        self._markers = _GOOGLE_MARKERS + tuple(m.lower() for m in google.markers)
        # Lines that do not name Google but feed a join: Postfix's expiry of a message Google deferred,
        # OpenSMTPD's recipient line for a reply refused at the greeting (see mta/opensmtpd.py), and
        # (when the sender_domain label is on) the MTA's sender lines.
        self._join_markers: tuple[bytes, ...] = (b"status=expired", b"network error on destination mxs")
        if track_senders:
            self._join_markers += (b"from=", b" <= ")
        # Each marker is one pass over a block: drop those that contain another (a user's *.googlemail.com).
        markers = dict.fromkeys(self._markers + self._join_markers)
        self._all_markers = tuple(m for m in markers if not any(o != m and o in m for o in markers))

    @classmethod
    def for_config(cls, cfg: Config, rules: Rules) -> Analyser:
        """The analyser a configuration asks for (every command builds its analysers here)."""
        return cls(
            rules,
            google_hosts=cfg.google_hosts,
            log_format=cfg.log.format,
            track_senders=bool(cfg.sender_domains),
        )

    def analyse(self, line: bytes) -> Event | Skipped | None:
        """An Event for a line about a delivery to Google, Skipped for a line we refuse, else None.
        Never raises."""
        if len(line) > MAX_LINE_BYTES:
            return Skipped("too_long")
        if b"\x00" in line:
            return Skipped("not_text")
        low = line.lower()
        for marker in self._all_markers:
            if marker in low:
                return self._analyse_candidate(line)
        return None

    def analyse_batch(self, lines: list[bytes]) -> list[Event | Skipped]:
        """The results of a batch of lines, in order, leaving out the lines about anything else.

        Same results as calling analyse() on each line, several times faster on a busy log: the prefilter
        runs over the whole batch at C speed (one substring search per marker), so Python only looks at the
        few lines that can concern Google."""
        if not lines:
            return []
        return self.analyse_block(b"\n".join(lines))[1]

    def analyse_block(self, blob: bytes) -> tuple[int, list[Event | Skipped]]:
        """analyse_batch() for lines already joined by newlines (a final newline is allowed): the number of
        lines and the results. Reading a log in blocks spares splitting it into a million small objects."""
        count, spans = self.prefilter(blob)
        if spans is None:
            lines = blob[:-1] if blob.endswith(b"\n") else blob
            return count, [r for r in map(self.analyse, lines.split(b"\n")) if r is not None]
        results: list[Event | Skipped] = []
        for start, end in spans:
            result = self._analyse_candidate(blob[start:end])
            if result is not None:
                results.append(result)
        return count, results

    def prefilter(self, blob: bytes) -> tuple[int, list[tuple[int, int]] | None]:
        """The byte-level prefilter of analyse_block(): the number of lines, and where the lines that can concern
        Google start and end, in order (None when the block holds a NUL byte or an overlong line: then each line
        must be judged on its own)."""
        if not blob:
            return 0, []
        size = len(blob) - 1 if blob.endswith(b"\n") else len(blob)
        count = blob.count(b"\n", 0, size) + 1
        if b"\x00" in blob or _has_long_line(blob, size):
            return count, None
        ends: dict[int, int] = {}
        low = blob.lower()  # same offsets; one pass instead of one search per letter case
        find, rfind = low.find, low.rfind
        for marker in self._all_markers:
            at = find(marker, 0, size)
            while at >= 0:
                start = rfind(b"\n", 0, at) + 1
                end = ends.get(start)
                if end is None:  # a line that an earlier marker did not find already
                    end = find(b"\n", at, size)
                    if end < 0:
                        end = size
                    ends[start] = end
                at = find(marker, end, size)
        return count, sorted(ends.items())

    def _analyse_candidate(self, line: bytes) -> Event | Skipped | None:
        """analyse() for a line that passed the prefilter."""
        for never_a_delivery in self._byte_tests:
            if never_a_delivery(line, self._ctx):
                return None
        try:
            text = line.decode("utf-8")
            valid = True
        except UnicodeDecodeError:
            text = line.decode("utf-8", "replace")
            valid = False
        text = text.rstrip("\r\n")
        self._ctx.line = line
        try:
            delivery = self._parse(text)
            event = self._event(delivery) if delivery is not None else None
        except Exception:  # a parser bug must cost one line, never the daemon
            return Skipped("unparseable")
        if event is not None:
            return event
        if not valid:
            return Skipped("not_text")
        if "gsmtp" in text.lower() and not self._ignorable(text):
            return Skipped("unparseable")
        return None

    def _parse(self, text: str) -> Delivery | None:
        formats = self._formats
        if len(formats) == 1:
            return formats[0].parse(text, self._ctx)
        for log_format in formats:
            if log_format.claims(text):
                return log_format.parse(text, self._ctx)
        return None

    @staticmethod
    def _ignorable(text: str) -> bool:
        """Lines that quote Google's marker but record no delivery: the rest of a multi-line entry, which
        starts with the reply code."""
        return REPLY_START.match(text) is not None

    def _event(self, delivery: Delivery) -> Event:
        reply = normalise(delivery.reply) if delivery.reply else None
        if delivery.status in ("sent", "expired") or delivery.connection_error is not None:
            return Event(delivery, reply, None)
        if reply is not None and reply.code is not None and reply.code.startswith("2"):
            return Event(delivery, reply, None)
        fallback = "temporary" if delivery.status == "deferred" else "permanent"
        return Event(delivery, reply, self.rules.classify(reply, fallback_severity=fallback))
