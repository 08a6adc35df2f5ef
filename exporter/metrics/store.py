"""The counter store and how one Event updates it.

Every label value is bounded whatever a log says: statuses, kinds, categories and severities come from closed
lists; reason, code and enhanced code must look like what the rules and RFC 3463 produce, and past
MAX_REJECTION_SERIES distinct series new ones are folded into "other". No address, IP or free text is a label.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final, NamedTuple

from exporter import patterns
from exporter.events import CONNECTION_ERROR_KINDS, STATUSES, Event, Reply, Verdict
from exporter.fastpath import Accepted, Refused, Template
from exporter.labels import NONE, OTHER, REASON_SHAPE, code_label, enhanced_label
from exporter.redact import redact, shorten
from exporter.sources import ROTATION_KINDS

MAX_REJECTION_SERIES: Final = 1000
"""Distinct gmail_rejections_total series before reason, code and enhanced_code fold into "other"."""
RECENT_REJECTIONS: Final = 20
RECENT_TEXT_CHARS: Final = 500
MAX_REASON_SUMMARIES: Final = 100
"""Distinct (category, reason) pairs summarised for the landing page; past it the one seen longest ago goes."""
LABEL_CACHE_SIZE: Final = 4096
"""Raw (verdict, reply codes) combinations whose label values are remembered, to skip the checks."""
SEVERITIES: Final = ("temporary", "permanent")
ORIGINS: Final = ("gsmtp", "gcdp")

_QUEUE_ID = patterns.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
"""Postfix, Exim, Sendmail and OpenSMTPD queue ids; nothing with an @ or a space (an address, free text)."""
REJECTION_LABELS: Final = ("category", "reason", "code", "enhanced_code", "severity", "origin")

Clock = Callable[[], float]


def _pick(value: str | None, pattern: re.Pattern[str]) -> str:
    if value is None:
        return NONE
    return value if pattern.fullmatch(value) else OTHER


def queue_id_of(value: str | None) -> str:
    """The queue id to show, or "" when there is none or it does not look like one."""
    return value if value is not None and _QUEUE_ID.fullmatch(value) else ""


class RecentRejection(NamedTuple):
    """One line of the landing page's list of latest rejections (a tuple: one is made for every rejection, and a
    frozen dataclass takes five times as long to make)."""

    timestamp: float
    category: str
    reason: str
    code: str
    enhanced_code: str
    text: str
    queue_id: str = ""
    """The MTA's queue id, to find the message in the log ("" when the line has none)."""


@dataclass(slots=True)
class ReasonSummary:
    """The landing page's line about one (category, reason): how often, from when to when, and its latest
    rejection (reply text as logged, redacted when it leaves the store)."""

    count: float
    first: float
    last: float
    code: str
    enhanced_code: str
    text: str
    queue_id: str


class Metrics:
    """The counter store. Methods that change it expect the caller to hold `lock` (the ingest stage also records
    source positions under it, so a snapshot pairs counters with exactly the positions they were read up to)."""

    def __init__(
        self,
        *,
        categories: Sequence[str],
        skip_reasons: Sequence[str],
        sender_domains: Sequence[str] = (),
        clock: Clock = time.time,
    ) -> None:
        self.lock = threading.Lock()
        self.categories = tuple(categories)
        self._category_set = frozenset(self.categories)
        self.skip_reasons = tuple(skip_reasons)
        self.by_sender = bool(sender_domains)
        """Whether the two delivery counters carry a sender_domain label (fixed for the life of the process)."""
        self._sender_domains = frozenset(d.lower() for d in sender_domains)
        self.clock = clock
        self._labels: dict[tuple[str | None, ...], tuple[str, str, str, str, str, str]] = {}
        self._by_template: dict[Template, tuple[tuple[str, str, str, str, str, str], str]] = {}
        """_counted_as() of a fast-path refusal's template (every refusal with it is counted the same)."""
        self.deliveries: dict[tuple[str, ...], float] = {}
        self.rejections: dict[tuple[str, ...], float] = {}
        self.connection_errors: dict[str, float] = dict.fromkeys(CONNECTION_ERROR_KINDS, 0.0)
        self.last_rejection: dict[str, float] = dict.fromkeys(self.categories, 0.0)
        self.last_delivery = 0.0
        self.last_sent = 0.0
        """Log time of the latest accepted delivery (0: none yet)."""
        self.consecutive = 0
        self.counting_since = clock()
        """When counting began: this start, or the first start whose counters the state file carries on
        (0: unknown, a state file written before this was kept)."""
        self.lines: dict[str, float] = {}
        self.bytes: dict[str, float] = {}
        self.skipped: dict[tuple[str, str], float] = {}
        self.rotations: dict[tuple[str, str], float] = {}
        self.source_errors: dict[str, float] = {}
        self.reload_successful = 1.0
        self.reload_success_time = clock()
        self.recent_rejections: deque[RecentRejection] = deque(maxlen=RECENT_REJECTIONS)
        """Reply texts as logged: redacted when they leave the store (redacting every event would cost more
        than the rest of counting)."""
        self.reasons: dict[tuple[str, str], ReasonSummary] = {}
        """(category, reason) -> its summary, at most MAX_REASON_SUMMARIES."""
        self.zero_delivery_series()

    @property
    def sender_domains(self) -> frozenset[str]:
        return self._sender_domains

    # Zero series: dashboards and alerts see every status and category from the first scrape.
    def zero_delivery_series(self) -> None:
        senders = (*sorted(self._sender_domains), OTHER) if self.by_sender else ()
        for status in STATUSES:
            for key in ((status, s) for s in senders) if senders else [(status,)]:
                self.deliveries.setdefault(key, 0.0)
        # One placeholder per category with every finer label "none": sum by (category) and rate() exist and
        # read 0 before the first rejection; filter reason!="none" to list real reasons only.
        for category in self.categories:
            placeholder: tuple[str, ...] = (category, NONE, NONE, NONE, NONE, NONE)
            self.rejections.setdefault((*placeholder, OTHER) if self.by_sender else placeholder, 0.0)

    def add_source(self, source: str) -> None:
        """Creates a source's series at 0."""
        self.lines.setdefault(source, 0.0)
        self.bytes.setdefault(source, 0.0)
        self.source_errors.setdefault(source, 0.0)
        for reason in self.skip_reasons:
            self.skipped.setdefault((source, reason), 0.0)
        for kind in ROTATION_KINDS:
            self.rotations.setdefault((source, kind), 0.0)

    def set_sender_domains(self, domains: Sequence[str]) -> None:
        """Replaces the allowlist (a reload); turning the label on or off needs a restart."""
        self._sender_domains = frozenset(d.lower() for d in domains)
        self.zero_delivery_series()

    def sender_label(self, sender: str | None) -> str:
        if not sender:
            return OTHER
        domain = sender.rpartition("@")[2].lower()
        return domain if domain in self._sender_domains else OTHER

    def log_time(self, timestamp: float | None) -> float:
        """The time an event is remembered at: its log time, but never later than now, so a line stamped in the
        future (a wrong clock, a forged line) cannot pin the "last" gauges ahead of every real event."""
        now = self.clock()
        return now if timestamp is None or timestamp > now else timestamp

    def observe_accepted(self, run: Accepted) -> None:
        """Counts a run of mail Google accepted, as observe() would count each of its events (no sender label:
        the fast path that makes runs is off when senders are tracked)."""
        if not run.count:
            return
        sender = (self.sender_label(None),) if self.by_sender else ()
        # log_time() of each line's stamp, at most: the latest stamp, or now when a line had none
        self._delivery("sent", sender, self.log_time(None if run.unstamped else run.last), run.count)

    def observe(self, event: Event) -> None:
        """Counts one classified event."""
        delivery = event.delivery
        if delivery.scope != "recipient":
            # Connection-scope lines (Postfix trying the next MX, Exim's host line) repeat what the recipient
            # outcome line will say: counting them too would count one deferral several times.
            return
        when = self.log_time(delivery.timestamp)
        sender = (self.sender_label(delivery.sender),) if self.by_sender else ()
        if delivery.connection_error is not None:
            kind = delivery.connection_error if delivery.connection_error in self.connection_errors else OTHER
            self.connection_errors[kind] += 1
        status = delivery.status
        if status is not None and status in STATUSES:
            self._delivery(status, sender, when, 1)
        if event.verdict is not None:
            self._rejection(*self._counted_as(event.verdict, event.reply), sender, when, delivery.queue_id)

    def observe_refused(self, refused: Refused) -> None:
        """Counts a refusal the fast path read as observe() counts its event(), without making it: a recipient's
        deferral or bounce, with its template's reply and verdict and no connection error (no sender label: the
        fast path is off when senders are tracked)."""
        template = refused.template
        when = self.log_time(refused.when)
        sender = (self.sender_label(None),) if self.by_sender else ()
        self._delivery(template.status, sender, when, 1)
        if template.verdict is not None:
            counted = self._by_template.get(template)
            if counted is None:
                counted = self._counted_as(template.verdict, template.reply)
                if len(self._by_template) >= LABEL_CACHE_SIZE:
                    self._by_template.clear()
                self._by_template[template] = counted
            self._rejection(*counted, sender, when, refused.queue_id)

    def _delivery(self, status: str, sender: tuple[str, ...], when: float, count: int) -> None:
        """Counts `count` recipient outcomes of one status, the latest at `when`."""
        key = (status, *sender)
        self.deliveries[key] = self.deliveries.get(key, 0.0) + count
        if when > self.last_delivery:
            self.last_delivery = when
        if status == "sent":
            self.consecutive = 0
            if when > self.last_sent:
                self.last_sent = when

    def _counted_as(
        self, verdict: Verdict, reply: Reply | None
    ) -> tuple[tuple[str, str, str, str, str, str], str]:
        """A rejection's label values and the text its recent line shows."""
        raw = (
            verdict.category,
            verdict.reason,
            verdict.severity,
            reply.code if reply else None,
            reply.enhanced_code if reply else None,
            reply.origin if reply else None,
        )
        labels = self._labels.get(raw)
        if labels is None:
            labels = self.rejection_labels(*raw)
            if len(self._labels) >= LABEL_CACHE_SIZE:
                self._labels.clear()
            self._labels[raw] = labels
        return labels, shorten(reply.text, RECENT_TEXT_CHARS) if reply is not None else ""

    def _rejection(
        self,
        labels: tuple[str, str, str, str, str, str],
        text: str,
        sender: tuple[str, ...],
        when: float,
        queue_id: str | None,
    ) -> None:
        self.count_rejection(labels, sender, 1.0)
        category, reason, code, enhanced, _, _ = labels
        self.consecutive += 1
        if when > self.last_rejection.get(category, 0.0):
            self.last_rejection[category] = when
        shown = queue_id_of(queue_id)
        self.recent_rejections.append(RecentRejection(when, category, reason, code, enhanced, text, shown))
        self.summarise(category, reason, ReasonSummary(1.0, when, when, code, enhanced, text, shown))

    def summarise(self, category: str, reason: str, seen: ReasonSummary) -> None:
        """Adds rejections to their reason's summary; the latest keeps its reply as the example."""
        key = (category, reason)
        summary = self.reasons.get(key)
        if summary is None:
            if len(self.reasons) >= MAX_REASON_SUMMARIES:
                del self.reasons[min(self.reasons, key=lambda k: self.reasons[k].last)]
            self.reasons[key] = seen
            return
        summary.count += seen.count
        summary.first = min(summary.first, seen.first)
        if seen.last >= summary.last:
            summary.last = seen.last
            summary.code, summary.enhanced_code = seen.code, seen.enhanced_code
            summary.text, summary.queue_id = seen.text, seen.queue_id

    def count_rejection(self, labels: tuple[str, ...], sender: tuple[str, ...], value: float) -> None:
        """Adds to a rejection series, folding a new one into "other" past MAX_REJECTION_SERIES."""
        category, _reason, _code, _enhanced, severity, origin = labels
        key = (*labels, *sender)
        if key not in self.rejections and len(self.rejections) >= MAX_REJECTION_SERIES:
            key = (category, OTHER, OTHER, OTHER, severity, origin, *sender)
        self.rejections[key] = self.rejections.get(key, 0.0) + value

    def rejection_labels(
        self,
        category: str,
        reason: str,
        severity: str,
        code: str | None,
        enhanced: str | None,
        origin: str | None,
    ) -> tuple[str, str, str, str, str, str]:
        """Label values of a rejection, each from a closed list or checked against its shape."""
        return (
            category if category in self._category_set else "unclassified",
            _pick(reason, REASON_SHAPE),
            code_label(code) or NONE,
            enhanced_label(enhanced) or NONE,
            severity if severity in SEVERITIES else OTHER,
            origin if origin in ORIGINS else "gsmtp",
        )

    def skip(self, source: str, reason: str) -> None:
        key = (source, reason if reason in self.skip_reasons else OTHER)
        self.skipped[key] = self.skipped.get(key, 0.0) + 1

    def read(self, source: str, lines: int, nbytes: int) -> None:
        self.lines[source] = self.lines.get(source, 0.0) + lines
        self.bytes[source] = self.bytes.get(source, 0.0) + nbytes

    def rotated(self, source: str, kind: str) -> None:
        key = (source, kind)
        self.rotations[key] = self.rotations.get(key, 0.0) + 1

    def forget_source(self, source: str) -> None:
        """Drops a source's own series (one no longer followed, forgotten with the oldest retired ones)."""
        self.lines.pop(source, None)
        self.bytes.pop(source, None)
        self.source_errors.pop(source, None)
        for keyed in (self.skipped, self.rotations):
            for key in [k for k in keyed if k[0] == source]:
                del keyed[key]

    def source_error(self, source: str) -> None:
        self.source_errors[source] = self.source_errors.get(source, 0.0) + 1

    def recent(self) -> list[RecentRejection]:
        """The latest rejections, oldest first, reply texts redacted (caller holds the lock)."""
        return [r._replace(text=redact(r.text)) for r in self.recent_rejections]

    def reason_summaries(self) -> list[tuple[str, str, ReasonSummary]]:
        """(category, reason, summary) latest first, reply texts redacted (caller holds the lock)."""
        found = sorted(self.reasons.items(), key=lambda item: item[1].last, reverse=True)
        return [(c, r, replace(s, text=redact(s.text))) for (c, r), s in found]

    def by_category(self) -> dict[str, float]:
        """Rejections per category (caller holds the lock)."""
        totals = dict.fromkeys(self.categories, 0.0)
        for key, value in self.rejections.items():
            totals[key[0]] = totals.get(key[0], 0.0) + value
        return totals
