"""The fast path: Postfix's outcome lines at Google relays, the lines that dominate a mail log about Google, read a
block at a time at C speed, with the same results as the analyser's line-by-line path.

The analyser's prefilter offers the fast path each line its searches for Google's markers find; one compiled
pattern, matched at the line's start, matches each such `postfix/smtp` line whole and captures what counting needs
(or tells a line of a Postfix service that never delivers, which gives nothing). The analyser's loop asks for
these lines between its own, in file order, so the clock, the queue-id joins and free text see every line as
before.
Mail Google accepted becomes an Accepted run: a count, the first and last timestamps and the lines, with no Event
made. A refusal is keyed by its reply up to Google's session id: the first line with a key goes through the
analyser's own path, whose reading vouches for the key (every later line with it gets that reply and verdict, as a
Refused that `report` counts by its template without making an Event) or not (every line with it goes that way). Whatever the pattern does not match (another layout, an odd recipient, a
reply of another shape, a character outside printable ASCII) stays with the line-by-line path, that line alone.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from exporter import patterns
from exporter.events import Delivery, Event, Reply, Verdict
from exporter.labels import reason_key
from exporter.mta.common import domain_of
from exporter.mta.postfix import NOT_DELIVERING, SERVICE_TAGS
from exporter.reply import normalise

# Written for sre's speed, which is per instruction: a class of ranges ([0-9], not \d or \w, the same bytes) is
# one bitmap test a byte, a category a call; an optional part as an alternative with an empty branch, (?:x|), takes
# no repeat context, (?:x)? one from the heap (together a sixth of a match).
_MONTH: Final = rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_ADDRESS: Final = rb"\[[0-9a-fA-F.:]{1,45}\](?::[0-9]{1,5}|)"
# Each part is as strict as the line-by-line parser's reading of it needs: a syslog stamp at the start (the clock
# reads that one), a recipient without '=' (so that the first 'relay=' of the line is the relay's), without '['
# (so that no service tag hides in it) and in printable ASCII, the fields Postfix writes between relay and status.
_LINE_START: Final = (
    rb"(?P<stamp>" + _MONTH + rb" {1,2}[0-9]{1,2} [0-9][0-9]:[0-9][0-9]:[0-9][0-9]) "
    rb"[0-9A-Za-z_.-]{1,255} [0-9A-Za-z_.-]{0,64}/"
)
"""A Postfix line's syslog stamp, host and syslog name, up to its service: no '/' before the service's."""
OUTCOME: Final = patterns.compile(
    _LINE_START + rb"(?:smtp\[[0-9]{1,10}\]: "
    rb"(?P<qid>(?!(?:warning|error|fatal|panic|info|statistics|NOQUEUE): )[0-9A-Za-z]{3,24}): "
    rb"to=<(?P<rcpt>[!-;?-Z\\\]-~]{1,254})>, relay=(?P<host>[a-z0-9][a-z0-9.-]{0,200}\.(?:l\.google|googlemail)\.com)"
    + _ADDRESS +
    rb"(?:, conn_use=[0-9]{1,9}|), delay=[0-9.]{1,20}, delays=[0-9./]{1,64}, dsn=[0-9]\.[0-9]{1,3}\.[0-9]{1,3}, status=(?:"
    rb"sent \((?=[^\[]+\)\Z)|(?P<status>deferred|bounced) \(host [A-Za-z0-9.-]{1,255}" + _ADDRESS +
    rb" (?:said|refused to talk to me): )|(?P<quiet>" + NOT_DELIVERING + rb")\[|(?P<qmgr>qmgr)\[)"
)  # fmt: skip
"""Matched at a line's start with the line's end as endpos: the start of an outcome line at a Google relay whose
name is its own canonical name (the parser lower-cases any other), up to where the reply starts; accepted mail's
reply is checked here too (it ends the line in parentheses and holds no '[', so no service tag hides in it: a
negated single character is one of the few things sre reads at C speed), a refusal's by take(). Or (group `quiet`)
the start of a line of a Postfix service that never delivers, or (group `qmgr`) of a qmgr line: never_a_delivery()
says so of the first, and of the second unless it holds 'status=expired' (the tag is the line's first), so the line
gives nothing and changes nothing."""
_ACCEPTED, _REFUSED, _QUIET, _QMGR = 4, 5, 6, 7
"""OUTCOME's lastindex for each kind of line (its last group that matched: host, status or quiet)."""
_SESSION_ID: Final = patterns.compile(rb"(?=[0-9A-Za-z_.-]*[0-9])[0-9A-Za-z_.-]{6,100}")
"""Google's session id, as exporter.reply strips it before its marker."""
_AFTER_MARKER: Final = frozenset(
    b"" if command is None else b" (in reply to " + command + b" command)"
    for command in (
        None,
        b"RCPT TO",
        b"MAIL FROM",
        b"end of DATA",
        b"DATA",
        b"HELO",
        b"EHLO",
        b"STARTTLS",
        b"AUTH",
    )
)
"""What Postfix may write after Google's marker: nothing, or the command replied to (no 'gsmtp' in it, so the
marker is the reply's last)."""
_STATUS: Final = {b"deferred": "deferred", b"bounced": "bounced"}
MAX_REPLY_BYTES: Final = 4000
"""Longer replies take the line-by-line path: below the normaliser's cut (MAX_REPLY_CHARS), a key's lines all keep
their whole reply."""

MAX_TEMPLATES: Final = 4096
"""Reply templates remembered with their verdict; past that the memory starts afresh."""


class Accepted:
    """Consecutive lines of mail Google accepted, counted rather than made into Events: the count and the
    timestamps that `report` and the metrics need, and the lines, so that events() gives the Events that the
    line-by-line path makes of them."""

    __slots__ = ("_lines", "_stamps", "first", "last", "unstamped")

    def __init__(self) -> None:
        self._stamps: list[float | None] = []
        self._lines: list[re.Match[bytes]] = []
        """Each line's match of OUTCOME."""
        self.first: float | None = None
        """The earliest timestamp (None when no line had one)."""
        self.last: float | None = None
        """The latest timestamp (None when no line had one)."""
        self.unstamped = False
        """Whether some line had no timestamp."""

    @property
    def count(self) -> int:
        return len(self._stamps)

    def _saw(self, when: float | None) -> None:
        """Takes a timestamp of its lines into first, last and unstamped (take_until() tells each one once, at
        least, rather than each line's)."""
        if when is None:
            self.unstamped = True
            return
        if self.first is None or when < self.first:
            self.first = when
        if self.last is None or when > self.last:
            self.last = when

    def recipient_domains(self) -> list[str | None]:
        """The recipient domain of each line, as its Delivery has it."""
        return [recipient_domain(m[3]) for m in self._lines]

    @property
    def queue_ids(self) -> list[str]:
        return [m.group("qid").decode() for m in self._lines]

    def deliveries(self) -> Iterator[Delivery]:
        for when, m in zip(self._stamps, self._lines, strict=True):
            blob = m.string
            end = blob.find(b"\n", m.end())
            yield Delivery(
                mta="postfix",
                scope="recipient",
                status="sent",
                timestamp=when,
                queue_id=m.group("qid").decode(),
                recipient_domain=recipient_domain(m[3]),
                google_host=m.group("host").decode(),
                reply=blob[m.end() : end - 1 if end >= 0 else len(blob) - 1].decode("utf-8", "replace"),
            )

    def events(self) -> Iterator[Event]:
        for delivery in self.deliveries():
            yield Event(delivery, normalise(delivery.reply) if delivery.reply else None, None)


@dataclass(frozen=True, slots=True)
class Reference:
    """What the fast path asks of the analyser's own path."""

    line: Callable[[bytes], object]
    """The result of one line that passed the prefilter (an Event, a Skipped or None)."""
    clock: Callable[[bytes], float | None]
    """The time of a line's syslog stamp (OUTCOME's group `stamp`): the stream's clock, which infers the year from
    the lines in order."""
    deferred: Callable[[str], None]
    """Remembers the queue id of a message Google deferred (for a later expiry)."""


@dataclass(slots=True, eq=False)
class Template:
    """A refusal's reply up to Google's session id, as the analyser's path read its first line."""

    status: str
    reply: Reply | None
    verdict: Verdict | None
    vouched: bool
    """False when the analyser's path read the template's first line otherwise than the pattern does: then every
    line of the template goes to it."""
    reason: tuple[str, str, str | None, str | None] | None
    """reason_key() of its verdict and reply (None without a verdict): what `report` counts it under."""


class Refused:
    """A refusal whose template the analyser's path vouched for: counted by its template, its Event made only
    when asked for (the Event the analyser's path makes of the line)."""

    __slots__ = ("_end", "_match", "template", "when")

    def __init__(self, template: Template, when: float | None, match: re.Match[bytes], end: int) -> None:
        self.template = template
        self.when = when
        self._match = match
        """The line's match of OUTCOME."""
        self._end = end
        """Where the line ends."""

    @property
    def queue_id(self) -> str:
        return self._match[2].decode()

    @property
    def recipient_domain(self) -> str | None:
        return recipient_domain(self._match[3])

    def event(self) -> Event:
        m = self._match
        delivery = Delivery(
            "postfix",
            "recipient",
            self.template.status,
            self.when,
            self.queue_id,
            self.recipient_domain,
            _host(m[4]),
            m.string[m.end() : self._end - 1].decode("utf-8", "replace"),
        )
        return Event(delivery, self.template.reply, self.template.verdict)


class FastPath:
    """Finds the outcome lines at Google relays in a block and reads them for one stream's analyser, which asks
    for each in its own order of lines (see the module)."""

    def __init__(self, reference: Reference) -> None:
        self._ref = reference
        self._clock = reference.clock
        self._templates: dict[tuple[bytes, bytes], Template] = {}
        self.starts: list[int] = []
        """Where the lines kept from the current block start: in the order take() kept them, then (done()) in
        order."""
        self._matches: list[re.Match[bytes]] = []
        """OUTCOME's match of each line kept: in the order take() kept them, then (done()) in the order of `starts`."""
        self._next = 0
        """The first line found that take_until() has not passed yet."""
        self._refusals: dict[int, tuple[int, int]] = {}
        """For the refusals among them: where the line ends and where the session id before Google's marker
        starts."""

    def knowledge(self) -> tuple[object, ...]:
        """What it has learnt that no log's state shapes, to share with a copy of its analyser: the reply templates
        (what the analyser's path read of a refusal's reply: any line of a log may teach one or use it)."""
        return (self._templates,)

    def begin(self) -> None:
        """Forgets the lines of the last block: take() then finds those of the next one."""
        self.starts, self._matches, self._next = [], [], 0
        self._refusals = {}

    def take(self, blob: bytes, start: int, end: int) -> bool:
        """Whether the fast path answers for the line blob[start:end] (whole, without its newline): it reads it (and
        keeps it), or knows it gives nothing; False leaves it to the analyser's path. The prefilter asks for each
        line it finds, in any order; done() puts those kept in order."""
        m = OUTCOME.match(blob, start, end)
        if m is None:
            return False
        kind = m.lastindex
        if kind == _ACCEPTED:
            self._matches.append(m)
            self.starts.append(start)
            return True
        if kind == _QUIET:
            return True
        if kind == _QMGR:
            return blob.find(b"status=expired", start, end) < 0
        reply = m.end()  # a refusal: its reply ends the line in parentheses, with Google's marker
        if blob[end - 1] != 41 or end - reply < 2:
            return False
        marker = blob.rfind(b" - gsmtp", reply, end)
        if marker < 0 or end - reply > MAX_REPLY_BYTES or blob[marker + 8 : end - 1] not in _AFTER_MARKER:
            return False
        space = blob.rfind(b" ", reply, marker)
        if space <= reply or _SESSION_ID.fullmatch(blob, space + 1, marker) is None:
            return False
        self._refusals[start] = (end, space)
        self._matches.append(m)
        self.starts.append(start)
        return True

    def done(self) -> None:
        """Puts the lines taken from the block in order, for take_until() (the prefilter's first marker finds them
        in order, unless a configured one comes first)."""
        starts = self.starts
        if starts != sorted(starts):
            self._matches.sort(key=_start)
            starts.sort()

    def has_line(self, start: int) -> bool:
        """Whether a line that take() kept starts there."""
        at = bisect.bisect_left(self.starts, start)
        return at < len(self.starts) and self.starts[at] == start

    def take_until(self, limit: int, covered: int, results: list[Any]) -> None:
        """Adds the results of the lines found that start before `limit` and not before `covered` (the analyser's
        path looked at those) to `results`, in order: accepted mail to the Accepted run that ends them."""
        starts, first = self.starts, self._next
        if first >= len(starts) or starts[first] >= limit:
            return
        last = bisect.bisect_left(starts, limit, first)
        self._next = last
        if starts[first] < covered:
            first = bisect.bisect_left(starts, covered, first, last)
        run = results[-1] if results else None
        if run.__class__ is not Accepted:
            run = None
        clock, stamp, when = self._clock, b"", None  # the clock, and the last stamp it read with its time
        for m in self._matches[first:last]:
            if m.lastindex == _ACCEPTED:
                if run is None:
                    run = Accepted()
                    results.append(run)
                new = m[1]
                if new != stamp:  # the first line of each run too: a refusal resets the stamp
                    stamp, when = new, clock(new)
                    run._saw(when)
                run._stamps.append(when)
                run._lines.append(m)
            else:
                self._take_refusal(m.start(), m, results)
                run, stamp = None, b""  # the analyser's path may have read the clock

    def _take_refusal(self, start: int, m: re.Match[bytes], results: list[Any]) -> None:
        end, space = self._refusals[start]
        blob = m.string
        ref = self._ref
        status = m[5]
        key = (status, blob[m.end() : space])
        template = self._templates.get(key)
        if template is None or not template.vouched:
            found = ref.line(blob[start:end])
            if template is None:
                self._learn(key, m, end, found)
            if found is not None:
                results.append(found)
            return
        when = ref.clock(m[1])
        if status == b"deferred":
            ref.deferred(m[2].decode())
        results.append(Refused(template, when, m, end))

    def _learn(self, key: tuple[bytes, bytes], m: re.Match[bytes], end: int, found: object) -> None:
        """Remembers a refusal's template from the analyser's reading of its first line: vouched for when that
        reading is the pattern's and no service tag in the reply can make a line of it look like another
        service's."""
        vouched = False
        reply: Reply | None = None
        verdict: Verdict | None = None
        if isinstance(found, Event):
            d = found.delivery
            reply, verdict = found.reply, found.verdict
            vouched = (
                SERVICE_TAGS.search(key[1]) is None
                and d.mta == "postfix"
                and d.scope == "recipient"
                and d.status == key[0].decode()
                and d.queue_id == m.group("qid").decode()
                and d.recipient_domain == domain_of(m.group("rcpt").decode())
                and d.google_host == m.group("host").decode()
                and d.reply == m.string[m.end() : end - 1].decode("utf-8", "replace")
                and d.connection_error is None
                and d.sender is None
            )
        if len(self._templates) >= MAX_TEMPLATES:
            self._templates.clear()
        reason = reason_key(verdict, reply) if verdict is not None else None
        self._templates[key] = Template(_STATUS[key[0]], reply, verdict, vouched, reason)


def _start(m: re.Match[bytes]) -> int:
    return m.start()


def recipient_domain(recipient: bytes) -> str | None:
    """domain_of() of a recipient the pattern matched (printable ASCII, no space or '<>'), which reads only what
    follows its last '@': remembered per domain, as a log names a few domains over and over."""
    at = recipient.rfind(b"@")
    return _domain(recipient[at:]) if at >= 0 else None


@functools.lru_cache(maxsize=4096)
def _domain(from_at: bytes) -> str | None:
    return domain_of(from_at.decode())


@functools.lru_cache(maxsize=1024)
def _host(name: bytes) -> str:
    return name.decode()
