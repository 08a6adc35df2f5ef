"""Log lines in, classified Events out: the byte-level prefilter, the MTA parsers (entries of several lines for
free text), the reply normaliser and the rules, in order."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from exporter import mta, patterns
from exporter.events import Delivery, Event
from exporter.fastpath import Accepted, FastPath, Reference, Refused
from exporter.google import WORDINGS, GoogleHosts
from exporter.mta import generic, postfix
from exporter.mta.common import Context, classic_syslog
from exporter.mta.containers import Unwrapper
from exporter.reply import normalise
from exporter.rules import Rules
from exporter.timestamps import SYSLOG_LEADS, log_lead

if TYPE_CHECKING:
    from exporter.config import Config

MAX_LINE_BYTES: Final = 32 * 1024
"""Longer lines are skipped (reason too_long). Sources may cut a line at MAX_LINE_BYTES + 1 bytes and drop the
rest up to its newline: the analyser only needs to see that it is too long."""

SKIP_REASONS: Final = ("too_long", "not_text", "unparseable")

# Byte strings one of which every line about a delivery to Google holds, searched in the lower-cased line:
# its host names, its PTR names, its reply marker, the Gmail domain (a DNS failure for gmail.com, a connection
# to its address). Not plain "gmail": on an MX most lines holding it are about mail *from* Gmail users, and
# outbound lines name a google.com host anyway. The first marker and those that begin with its byte are one pass
# over every block read, together (see Analyser); each other marker is a pass of its own: a new one must begin with
# that byte, or be long (bytes.find skips through a block by the length of what it looks for).
_GOOGLE_MARKERS: Final = (b"google", b"gsmtp", b"1e100.net", b"gmail.com")
_WORDING_MARKERS: Final = tuple(wording.encode() for wording in WORDINGS)
"""Gmail's wordings mark a line too, but only a line that does not start with a log's timestamp (see
timestamps.log_lead): a mail log's lines about Google name its host or marker anyway, and a log's blocks of
timestamped lines are then spared one pass per wording."""
NEARBY_LINES: Final = 4
"""How many lines after free text that names a Google host a reply without other sign of Google is taken as
that host's (a telnet session, a DSN's Remote-MTA field before its Diagnostic-Code)."""
PARAGRAPH_LINES: Final = 200
"""How far back the start of a run of free-text lines is looked for."""
MAX_ENTRY_BYTES: Final = 16 * 1024
"""An entry of free text grows by no more lines once this long (Gmail's longest replies are under 1 KiB)."""


Parser = Callable[[str, Context], Delivery | None]


def _anything(text: str) -> bool:
    return True


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
class Shape:
    """What two C-speed passes tell of a block (a final newline is allowed), for the prefilter and the envelope
    test to share."""

    size: int
    """The block's length without its final newline."""
    count: int
    """Its lines."""
    led: bool
    """Whether every line starts with the same timestamp lead (see timestamps.log_lead)."""
    syslog: bool
    """Whether that lead is a classic syslog month: then no line is in a container's envelope."""

    @classmethod
    def of(cls, blob: bytes) -> Shape:
        size = len(blob) - 1 if blob.endswith(b"\n") else len(blob)
        # What deleting the newlines leaves tells how many there are: twice as fast as count(), whose loop checks a
        # limit at each byte found.
        newlines = len(blob) - len(blob.replace(b"\n", b"")) - (size < len(blob))
        lead = log_lead(blob, 0)
        led = lead is not None and _all_led(blob, size, lead, newlines)
        return cls(size, newlines + 1, led, led and lead in SYSLOG_LEADS)


_SHARED_START: Final = 15
"""How much of the first line's start (a syslog stamp's length) _all_led() looks for in every line first."""


def _all_led(blob: bytes, size: int, lead: bytes, newlines: int) -> bool:
    """Whether each of the `newlines` newlines of blob[:size] is followed by `lead`. A block's lines mostly share
    their stamp's day and hour, often its minute: the start that its first and last lines share (up to
    _SHARED_START bytes) is counted first, and the lead only when fewer lines start with that. Each newline is
    followed by at most one of either, and a line that starts with the longer starts with the lead, so the answer
    is the same; but counting a longer needle skips further at each step (a third of the time of the lead's,
    whose last byte, a space, is everywhere)."""
    last = blob.rfind(b"\n", 0, size) + 1
    shared = len(lead)
    limit = min(_SHARED_START, size - last)
    while shared < limit and blob[shared] == blob[last + shared]:  # no newline: the last line has none
        shared += 1
    if shared > len(lead) and blob.count(b"\n" + blob[:shared], 0, size) == newlines:
        return True
    return blob.count(b"\n" + lead, 0, size) == newlines


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
        self._unwrapper = Unwrapper(mta.envelope(log_format or mta.AUTO), MAX_LINE_BYTES)
        self._enveloped = self._unwrapper.only is not None
        """Whether the stream's lines come in a container runtime's envelope (then every block is unwrapped)."""
        self._origins: list[int] = []
        """For each line of an enveloped stream not counted yet (held free text), the number of the file's line
        where it began (kept only while the caller numbers lines)."""
        self._counted = 0
        """The lines counted so far (the sum of the counts returned)."""
        self._stamps: dict[int, bytes] = {}
        """Where a line of the next block analysed starts (held free text first) -> the container runtime's time of
        it, for lines that have no time of their own."""
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
        # The markers that begin with the first one's byte are searched together, in one pass: sre scans for that
        # byte at C speed and tries only them where it finds it, quicker than bytes.find does one of them.
        first = tuple(m for m in self._all_markers if m[:1] == self._all_markers[0][:1])
        self._first_pass = patterns.compile(b"|".join(map(re.escape, first)))
        self._other_markers = tuple(m for m in self._all_markers if m not in first)
        self._free = generic.FORMAT if generic.FORMAT in self._formats else None
        self._mta_formats = tuple(f for f in self._formats if f is not self._free)
        """The formats whose lines stand alone, in the order they are asked whether a line is theirs."""
        self._dispatch: tuple[tuple[Callable[[str], bool], Parser], ...] = (
            tuple((f.claims, f.parse) for f in self._mta_formats)
            if len(self._formats) > 1
            else tuple((_anything, f.parse) for f in self._mta_formats)  # a forced format takes every line
        )
        """The format of free text, which groups lines into entries (None when a log format is forced)."""
        self._held = b""
        """The start of a free-text entry that the last block ended with (see analyse_block)."""
        self._nearby_left = 0
        """Lines still to look at for the reply of the Google host that free text named (ctx.nearby_google)."""
        self._fast: FastPath | None = None
        """The fast path for Postfix's outcome lines, where Postfix is asked first and no join needs every line."""
        if self._formats[0] is postfix.FORMAT and not track_senders:
            # Bound methods, which look up the context's clock and join when called: `report --jobs` puts recording
            # ones in their place, and a copy of the analyser (copy.deepcopy) gets its own (a closure would keep
            # this one's).
            self._fast = FastPath(
                Reference(line=self._analyse_candidate, clock=self._stamp_time, deferred=self._deferred)
            )

    def _stamp_time(self, stamp: bytes) -> float | None:
        return self._ctx.clock.syslog_time(stamp)

    def _deferred(self, queue_id: str) -> None:
        self._ctx.google_queue_ids.remember(queue_id, "")

    def copy(self) -> Analyser:
        """An analyser in this one's exact state, none of its state shared, sharing what this one knows that no
        log's state shapes: the rules (with their caches of verdicts) and the fast path's reply templates. What
        either learns the other knows. A deepcopy that leaves those out is some 25 times quicker (the rules were
        most of its time)."""
        known: tuple[object, ...] = (self.rules, *(self._fast.knowledge() if self._fast is not None else ()))
        return deepcopy(self, {id(k): k for k in known})

    @classmethod
    def for_config(cls, cfg: Config, rules: Rules) -> Analyser:
        """The analyser a configuration asks for (every command builds its analysers here)."""
        return cls(
            rules,
            google_hosts=cfg.google_hosts,
            log_format=cfg.log.format,
            track_senders=bool(cfg.sender_domains),
        )

    def memory(self) -> dict[str, Any]:
        """The per-stream memory (queue-id joins, the log's year, the free-text entry held back, a container's line
        still in parts), JSON-able. The held entry's lines lie before the position saved with this memory: without
        it, a stop, a restart or a reload would lose them."""
        memory = self._ctx.state()
        if self._held:
            memory["held"] = self._held.decode("latin-1")  # any bytes, one character each, back unchanged
        parts = self._unwrapper.state()
        if parts:
            memory["containers"] = parts
        return memory

    def restore_memory(self, data: Any) -> None:
        """Continues from saved memory; raises ValueError when it is not valid (nothing is changed then)."""
        held = data.get("held", "") if isinstance(data, dict) else ""
        if not isinstance(held, str):
            raise ValueError(f"memory.held: expected a string, got {type(held).__name__}")
        try:
            raw = held.encode("latin-1")
        except UnicodeEncodeError as err:
            raise ValueError("memory.held: not a held entry (a character beyond one byte)") from err
        if raw.count(b"\n") >= PARAGRAPH_LINES or len(raw) > PARAGRAPH_LINES * (MAX_LINE_BYTES + 1):
            raise ValueError("memory.held: longer than a held entry can be")
        staged = Unwrapper(self._unwrapper.only, MAX_LINE_BYTES)
        if isinstance(data, dict) and "containers" in data:
            staged.restore(data["containers"])
        self._ctx.restore(data)
        self._held = raw
        self._unwrapper = staged

    @property
    def context(self) -> Context:
        """The per-stream state the parsers share (clock, joins): `report --jobs` records and merges it where
        it cuts a log into pieces."""
        return self._ctx

    def holding(self) -> bool:
        """Whether the lines read so far may still shape the results of the next ones: an entry of free text held
        back, or a Google host that free text named whose reply may follow."""
        return bool(self._held) or self._nearby_left > 0

    def mta_line(self, line: bytes) -> bool:
        """Whether an MTA format (not free text) claims a line: no entry of free text goes on across it."""
        return self._claimed(line)

    def analyse(self, line: bytes) -> Event | Skipped | None:
        """An Event for a line about a delivery to Google, Skipped for a line we refuse, else None: the line on
        its own, without the lines around it. Never raises."""
        if len(line) > MAX_LINE_BYTES:
            return Skipped("too_long")
        if b"\x00" in line:
            return Skipped("not_text")
        low = line.lower()
        if not any(marker in low for marker in self._all_markers) and (
            log_lead(line, 0) is not None or not any(marker in low for marker in _WORDING_MARKERS)
        ):
            return None
        self._ctx.nearby_google, self._nearby_left = None, 0
        result = self._analyse_candidate(line)
        if isinstance(result, str):
            return self._analyse_entry(line, result, candidate=True)
        return result

    def analyse_batch(self, lines: list[bytes]) -> list[Event | Skipped]:
        """The results of a batch of lines, in order, leaving out the lines about anything else: analyse_block()
        of the lines joined by newlines."""
        if not lines:
            return []
        return self.analyse_block(b"\n".join(lines))[1]

    def analyse_block(
        self, blob: bytes, lines_out: list[int] | None = None
    ) -> tuple[int, list[Event | Skipped]]:
        """The number of lines analysed and the results of a block of whole lines joined by newlines (a final
        newline is allowed), in order. Reading a log in blocks spares splitting it into a million small objects:
        the prefilter runs over the whole block at C speed, so Python only looks at the few lines that can
        concern Google.

        Free text that no MTA format claims comes in entries of several lines (a folded DSN header, a bounce
        notice, a stack trace): an entry still open at the end of the block is held back and analysed with the
        next block, or by flush(), so any cut of a stream into blocks gives the same results. `lines_out`, when
        given, receives for each result the index of its (first) line, counted from the first line not counted
        before.

        Lines in a container runtime's envelope are taken out of it first (see exporter.mta.containers): the count
        and the line numbers are then those of the file's lines."""
        if self._enveloped or self._unwrapper.wrapped(blob):
            found = self._analyse_enveloped(blob, lines_out)
            if found is not None:
                return found
        count, results = self._analyse_plain(blob, lines_out)
        self._counted += count
        return count, results

    def _analyse_plain(self, blob: bytes, lines_out: list[int] | None) -> tuple[int, list[Event | Skipped]]:
        if self._held:
            blob = self._held + b"\n" + blob if blob else self._held
            self._held = b""
        return self._analyse_blob(blob, hold=True, lines_out=lines_out)

    def _analyse_enveloped(
        self, blob: bytes, lines_out: list[int] | None
    ) -> tuple[int, list[Event | Skipped]] | None:
        """analyse_block() of a block that may hold enveloped lines; None when it holds none in a stream that had
        none so far (then it is analysed as plain lines)."""
        numbered = lines_out is not None
        unwrapper = self._unwrapper
        if not self._enveloped:
            # The first block with an envelope: lines of free text held from before get their numbers now.
            held = self._held.count(b"\n") + 1 if self._held else 0
            unwrapper.seen = self._counted + held
        unwrapped = unwrapper.unwrap(blob, numbered=numbered)
        if not unwrapped.enveloped and not self._enveloped:
            return None
        if not self._enveloped:
            self._enveloped = True
            if numbered:
                self._origins = list(range(self._counted, unwrapper.seen - unwrapped.lines))
        results: list[Event | Skipped] = [Skipped(reason) for _, reason in unwrapped.damaged]
        inner: list[int] | None = [] if numbered else None
        if unwrapped.stamps:
            shift = len(self._held) + 1 if self._held else 0
            self._stamps.update((shift + at, stamp) for at, stamp in unwrapped.stamps.items())
        count, found = self._analyse_plain(unwrapped.block, inner)
        results.extend(found)
        if lines_out is not None and inner is not None and unwrapped.origins is not None:
            lines_out.extend(index for index, _ in unwrapped.damaged)
            self._number(count, unwrapped.origins, inner, lines_out)
        self._counted += unwrapped.lines
        return unwrapped.lines, results

    def _number(self, count: int, origins: list[int], inner: list[int], lines_out: list[int]) -> None:
        """Numbers the results of unwrapped lines by the file's lines they began on, counted from the first line
        not counted before."""
        self._origins.extend(origins)
        taken, self._origins = self._origins[:count], self._origins[count:]
        lines_out.extend(taken[index] - self._counted for index in inner)

    def summarise_block(self, blob: bytes) -> tuple[int, list[Event | Skipped | Accepted | Refused]]:
        """analyse_block() for readers that count rather than list: the same results, except that runs of mail
        Google accepted can come as Accepted runs (whose events() are the Events that analyse_block() gives) and
        refusals as Refused (whose event() is the Event), read by the fast path (see exporter.fastpath). Lines in a container's envelope take analyse_block()'s way."""
        shape = None if self._held else Shape.of(blob)
        if self._enveloped or self._unwrapper.wrapped(blob, syslog=shape is not None and shape.syslog):
            return self.analyse_block(blob)  # type: ignore[return-value]
        if self._held:
            blob = self._held + b"\n" + blob if blob else self._held
            self._held = b""
        count, results = self._analyse_blob(blob, hold=True, lines_out=None, fast=self._fast, shape=shape)
        self._counted += count
        return count, results  # type: ignore[return-value]

    def flush(
        self, lines_out: list[int] | None = None, *, end: bool = True
    ) -> tuple[int, list[Event | Skipped]]:
        """Analyse what analyse_block() held back: at the end of a file or stream. A container's line still in
        parts is analysed as it is only at the `end` of the stream (the next file of a rotation may go on with it)."""
        if self._enveloped and end:
            unwrapped = self._unwrapper.flush(numbered=lines_out is not None)
            if unwrapped.block:
                tail = unwrapped.block[:-1]
                shift = len(self._held) + 1 if self._held else 0
                self._stamps.update((shift + at, stamp) for at, stamp in unwrapped.stamps.items())
                self._held = self._held + b"\n" + tail if self._held else tail
                self._origins.extend(unwrapped.origins or ())
        held, self._held = self._held, b""
        if not self._enveloped:
            count, results = self._analyse_blob(held, hold=False, lines_out=lines_out)
            self._counted += count
            return count, results
        inner: list[int] | None = [] if lines_out is not None else None
        count, results = self._analyse_blob(held, hold=False, lines_out=inner)
        if lines_out is not None and inner is not None:
            self._number(count, [], inner, lines_out)
        return 0, results

    def prefilter(
        self, blob: bytes, fast: FastPath | None = None, shape: Shape | None = None
    ) -> tuple[int, list[tuple[int, int]] | None]:
        """The byte-level prefilter of analyse_block(): the number of lines, and where the lines that can concern
        Google start and end, in order (None when the block holds a NUL byte or an overlong line: then each line
        must be judged on its own). With the fast path, each line the markers find is offered to it first: the lines
        it reads (it keeps them) or knows to give nothing are left out, and so are the lines that a format's
        byte-level test rules out. `shape` is the block's, when the caller has it."""
        if fast is not None:
            fast.begin()
        if not blob:
            return 0, []
        if shape is None:
            shape = Shape.of(blob)
        size, count = shape.size, shape.count
        if b"\x00" in blob or _has_long_line(blob, size):
            return count, None
        ends: dict[int, int] = {}
        left: list[tuple[int, int]] = []  # the lines found that the fast path leaves to the analyser
        low = blob.lower()  # same offsets; one pass instead of one search per letter case
        find, rfind = low.find, low.rfind
        take = fast.take if fast is not None else None

        def found(at: int) -> int:
            """Keeps the line that holds a hit at `at` (offered to the fast path first), once; where it ends."""
            start = rfind(b"\n", 0, at) + 1
            end = ends.get(start)
            if end is None:
                end = find(b"\n", at, size)
                if end < 0:
                    end = size
                ends[start] = end
                if take is None or not take(blob, start, end):
                    left.append((start, end))
            return end

        search = self._first_pass.search
        hit = search(low, 0, size)
        while hit is not None:  # each hit in a line after the last hit's
            hit = search(low, found(hit.start()), size)
        for marker in self._other_markers:
            at = find(marker, 0, size)
            while at >= 0:
                at = find(marker, found(at), size)
        if fast is not None:
            fast.done()
        if not shape.led:
            for marker in _WORDING_MARKERS:
                at = find(marker, 0, size)
                while at >= 0:
                    start = rfind(b"\n", 0, at) + 1
                    end = find(b"\n", at, size)
                    if end < 0:
                        end = size
                    if start not in ends and log_lead(blob, start) is None:
                        ends[start] = end
                        left.append((start, end))
                    at = find(marker, end, size)
        if fast is None:
            return count, sorted(ends.items())
        # The lines a byte-level test rules out (mail from Google's servers, on an MX) give nothing and change
        # nothing: left out here, they cost one test instead of a turn of the analysing loop each.
        ctx = self._ctx
        kept = left
        for test in self._byte_tests:
            kept = [(s, e) for s, e in kept if not test(blob[s:e], ctx)]
        return count, sorted(kept)

    def _analyse_blob(
        self,
        blob: bytes,
        *,
        hold: bool,
        lines_out: list[int] | None,
        fast: FastPath | None = None,
        shape: Shape | None = None,
    ) -> tuple[int, list[Event | Skipped]]:
        count, spans = self.prefilter(blob, fast, shape)
        if spans is None:
            return self._analyse_around_bad_lines(blob, hold=hold, lines_out=lines_out)
        size = len(blob) - 1 if blob.endswith(b"\n") else len(blob)
        cut = self._open_tail(blob, size) if hold else size
        results: list[Event | Skipped] = []
        offsets: list[int] = []  # where each result's line starts, when the caller wants lines numbered
        covered = 0
        if self._nearby_left:  # lines named Google's host at the end of the last block
            covered = self._look_nearby(blob, 0, cut, spans, results, offsets, fast)
        if cut < size:
            spans = spans[: bisect.bisect_left(spans, (cut, -1))]
        # With the fast path, the prefilter kept only the lines that the byte-level tests passed.
        analyse_candidate = self._analyse_candidate if fast is None else self._read_candidate
        append, mark = results.append, offsets.append
        numbered = lines_out is not None
        stamps, ctx = self._stamps, self._ctx
        for start, end in spans:
            if start < covered:
                continue
            if fast is not None:  # the fast path's lines before this one, in order
                fast.take_until(start, covered, results)
            if stamps:
                ctx.stamp = stamps.get(start)
            found = analyse_candidate(blob[start:end])
            if found is None:
                continue
            if found.__class__ is str:
                first, covered = self._entry(blob, start, end, cut, covered)
                if stamps:
                    ctx.stamp = stamps.get(first)
                entry = self._analyse_entry(blob[first:covered], None, candidate=True)
                if entry is not None:
                    append(entry)
                    mark(first)
                if self._nearby_left:
                    covered = self._look_nearby(blob, covered + 1, cut, spans, results, offsets, fast)
            else:
                append(found)  # type: ignore[arg-type]
                if numbered:
                    mark(start)
        ctx.stamp = None
        if fast is not None:
            fast.take_until(cut, covered, results)
        if cut < size:
            self._held = blob[cut:size]
            count -= self._held.count(b"\n") + 1
        if stamps:  # those of the lines held, from where they start now
            self._stamps = {at - cut: stamp for at, stamp in stamps.items() if at >= cut}
        if lines_out is not None:
            line, at = 0, 0
            for offset in offsets:
                line += blob.count(b"\n", at, offset)
                at = offset
                lines_out.append(line)
        return count, results

    def _analyse_around_bad_lines(
        self, blob: bytes, *, hold: bool, lines_out: list[int] | None
    ) -> tuple[int, list[Event | Skipped]]:
        """A block with a NUL byte or an overlong line: such a line is skipped with its reason and ends any
        entry of free text; the runs of lines between them are analysed as blocks of their own."""
        lines = (blob[:-1] if blob.endswith(b"\n") else blob).split(b"\n")
        count, run = 0, 0
        found: list[Event | Skipped] = []
        stamps, offset, run_offset = self._stamps, 0, 0
        self._stamps = {}
        for index, line in enumerate([*lines, None]):
            bad = line is not None and (len(line) > MAX_LINE_BYTES or b"\x00" in line)
            if line is not None and not bad:
                offset += len(line) + 1
                continue
            if run < index:
                at: list[int] | None = [] if lines_out is not None else None
                last = line is None
                text = b"\n".join(lines[run:index]) + b"\n"  # a final newline: b"\n" is one empty line
                if stamps:  # those of the run's lines, from where the run starts
                    self._stamps = {
                        k - run_offset: v
                        for k, v in stamps.items()
                        if run_offset <= k < run_offset + len(text)
                    }
                n, results = self._analyse_blob(text, hold=hold and last, lines_out=at)
                count, found = count + n, found + results
                if lines_out is not None and at is not None:
                    lines_out.extend(run + i for i in at)
            if line is not None:
                count += 1
                found.append(Skipped("too_long" if len(line) > MAX_LINE_BYTES else "not_text"))
                if lines_out is not None:
                    lines_out.append(index)
                offset += len(line) + 1
            run, run_offset = index + 1, offset
        return count, found

    def _open_tail(self, blob: bytes, size: int) -> int:
        """Where the paragraph of free text that ends the block starts (size when the block ends with an MTA's line
        or a blank one): its entry may go on in the next block."""
        start = blob.rfind(b"\n", 0, size) + 1
        line = blob[start:size]
        if not line.strip() or self._claimed(line):
            return size
        return self._paragraph_start(blob, start, 0)

    def _paragraph_start(self, blob: bytes, start: int, floor: int) -> int:
        """Where the run of free-text lines holding the line at `start` starts: after a blank line, an MTA's line or
        `floor`, at most PARAGRAPH_LINES lines back. Entries are grouped from there on, so the same text is
        grouped the same way wherever blocks cut it."""
        first = start
        for _ in range(PARAGRAPH_LINES):
            if first <= floor:
                break
            before = blob.rfind(b"\n", 0, first - 1) + 1
            previous = blob[before : first - 1]
            if before < floor or not previous.strip() or self._claimed(previous):
                break
            first = before
        return first

    def _entry(self, blob: bytes, start: int, end: int, cut: int, floor: int) -> tuple[int, int]:
        """Where the free-text entry holding the line blob[start:end] starts and ends: the entries of its paragraph
        (not before `floor`) are grouped line by line until one holds it; none goes past `cut`."""
        first = self._paragraph_start(blob, start, floor)
        while True:
            last = self._entry_end(blob, first, cut)
            if last >= end or last >= cut:
                return first, last
            first = last + 1

    def _entry_end(self, blob: bytes, first: int, cut: int) -> int:
        """Where the entry that starts at `first` ends: the next lines join it while they go on with it."""
        end = blob.find(b"\n", first, cut)
        end = cut if end < 0 else end
        entry = blob[first:end].decode("utf-8", "replace")
        lines = 1
        while end < cut and lines < generic.MAX_LINES and end - first < MAX_ENTRY_BYTES:
            after = blob.find(b"\n", end + 1, cut)
            after = cut if after < 0 else after
            following = blob[end + 1 : after]
            if self._claimed(following):
                break
            text = following.decode("utf-8", "replace")
            if not generic.continues(entry, text):
                break
            entry, end, lines = entry + "\n" + text, after, lines + 1
        return end

    def _look_nearby(
        self,
        blob: bytes,
        pos: int,
        cut: int,
        spans: list[tuple[int, int]],
        results: list[Event | Skipped],
        offsets: list[int],
        fast: FastPath | None = None,
    ) -> int:
        """After free text that named a Google host (or a Gmail recipient): the next lines without other sign of
        Google may carry its reply. They are analysed here, in order, an MTA's line as the prefilter's `spans`
        say; returns where the last line looked at ends (pos - 1 when none)."""
        covered = pos - 1
        # An empty last line of the block starts at its end: it is a line of the window too.
        last_empty = cut == len(blob) - 1 and blob.endswith(b"\n") and (cut == 0 or blob[cut - 1] == 10)
        while self._nearby_left and (pos < cut or (pos == cut and last_empty)):
            end = blob.find(b"\n", pos, cut)
            end = cut if end < 0 else end
            line = blob[pos:end]
            if not line.strip() or self._claimed(line):  # an MTA's line: its own parser, if it is a candidate
                at = bisect.bisect_left(spans, (pos, -1))
                if (at < len(spans) and spans[at][0] == pos) or (fast is not None and fast.has_line(pos)):
                    self._ctx.stamp = self._stamps.get(pos) if self._stamps else None
                    found = self._analyse_candidate(line)
                    if found is not None and not isinstance(found, str):
                        results.append(found)
                        offsets.append(pos)
                self._nearby_left -= 1
                covered, pos = end, end + 1
                continue
            first, covered = pos, self._entry_end(blob, pos, cut)
            entry = blob[first:covered]
            self._nearby_left = max(0, self._nearby_left - entry.count(b"\n") - 1)
            self._ctx.stamp = self._stamps.get(first) if self._stamps else None
            result = self._analyse_entry(entry, None, candidate=False)
            pos = covered + 1
            if result is not None:
                results.append(result)
                offsets.append(first)
                break
        if not self._nearby_left:
            self._ctx.nearby_google = None
        return covered

    def _claimed(self, line: bytes) -> bool:
        """Whether an MTA format (not the free-text fallback) claims a line."""
        if self._free is None:
            return True
        text = line.decode("utf-8", "replace")
        return any(f.claims(text) for f in self._mta_formats)

    def _analyse_candidate(self, line: bytes) -> Event | Skipped | str | None:
        """The result of a line that passed the prefilter, or its text when it is free text, which no MTA
        format claims (then its entry decides)."""
        for never_a_delivery in self._byte_tests:
            if never_a_delivery(line, self._ctx):
                return None
        return self._read_candidate(line)

    def _read_candidate(self, line: bytes) -> Event | Skipped | str | None:
        """_analyse_candidate() of a line that the formats' byte-level tests have passed already (the prefilter
        tests the lines it keeps when the fast path is on)."""
        try:
            text = line.decode("utf-8")
            valid = True
        except UnicodeDecodeError:
            text = line.decode("utf-8", "replace")
            valid = False
        text = classic_syslog(text.rstrip("\r\n"))
        for claims, parse in self._dispatch:  # noqa: B007 - the loop picks the parser used below
            if claims(text):
                break
        else:
            return text  # free text: its entry decides
        self._ctx.line = line
        try:
            delivery = parse(text, self._ctx)
            event = self._event(delivery) if delivery is not None else None
        except Exception:  # a parser bug must cost one line, never the daemon
            return Skipped("unparseable")
        if event is not None:
            return event
        if not valid:
            return Skipped("not_text")
        if "gsmtp" in text.lower():  # an MTA's line with Google's reply that its parser did not understand
            return Skipped("unparseable")
        return None

    def _analyse_entry(self, entry: bytes, text: str | None, *, candidate: bool) -> Event | Skipped | None:
        """The result of an entry of free text (one or more lines): Google's reply in it, a failure to reach
        Google, or nothing; an entry that names a Google host and says nothing more lends it to the next lines."""
        ctx = self._ctx
        valid = True
        if text is None:
            try:
                text = entry.decode("utf-8")
            except UnicodeDecodeError:
                text = entry.decode("utf-8", "replace")
                valid = False
        newline = entry.find(b"\n")
        ctx.line = entry if newline < 0 else entry[:newline]
        try:
            delivery = generic.parse(text, ctx)
            event = self._event(delivery) if delivery is not None else None
        except Exception:  # a parser bug must cost one entry, never the daemon
            return Skipped("unparseable")
        if event is not None:
            ctx.nearby_google, self._nearby_left = None, 0
            return event
        host = ctx.google.named_in(text)
        if host is not None:
            ctx.nearby_google, self._nearby_left = host, NEARBY_LINES
        elif "@gmail.com" in text.lower() or "@googlemail.com" in text.lower():
            # A Gmail recipient: the next lines are looked at too, but their reply must show Google's signs itself.
            ctx.nearby_google, self._nearby_left = None, NEARBY_LINES
        if candidate and not valid:
            return Skipped("not_text")
        return None

    def _event(self, delivery: Delivery) -> Event:
        reply = normalise(delivery.reply) if delivery.reply else None
        if delivery.status in ("sent", "expired") or delivery.connection_error is not None:
            return Event(delivery, reply, None)
        if reply is not None and reply.code is not None and reply.code.startswith("2"):
            return Event(delivery, reply, None)
        fallback = "temporary" if delivery.status == "deferred" else "permanent"
        return Event(delivery, reply, self.rules.classify(reply, fallback_severity=fallback))
