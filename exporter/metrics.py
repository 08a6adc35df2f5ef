"""The metric families, how one Event updates them, and their values saved with the source positions.

Every label value is bounded whatever a log says: statuses, kinds, categories and severities come from closed
lists; reason, code and enhanced code must look like what the rules and RFC 3463 produce, and past
MAX_REJECTION_SERIES distinct series new ones are folded into "other". No address, IP or free text is a label.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.events import CONNECTION_ERROR_KINDS, STATUSES, Event
from exporter.labels import NONE, OTHER, REASON_SHAPE, code_label, enhanced_label
from exporter.redact import redact
from exporter.sources import ROTATION_KINDS, SourceStatus

MAX_REJECTION_SERIES: Final = 1000
"""Distinct gmail_rejections_total series before reason, code and enhanced_code fold into "other"."""
RECENT_REJECTIONS: Final = 20
LABEL_CACHE_SIZE: Final = 4096
"""Raw (verdict, reply codes) combinations whose label values are remembered, to skip the checks."""
SEVERITIES: Final = ("temporary", "permanent")
ORIGINS: Final = ("gsmtp", "gcdp")

REJECTION_LABELS: Final = ("category", "reason", "code", "enhanced_code", "severity", "origin")


def _pick(value: str | None, pattern: re.Pattern[str]) -> str:
    if value is None:
        return NONE
    return value if pattern.fullmatch(value) else OTHER


@dataclass(frozen=True, slots=True)
class RecentRejection:
    """One line of the landing page's list of latest rejections."""

    timestamp: float
    category: str
    reason: str
    code: str
    enhanced_code: str
    text: str


class Metrics:
    """The metric store. Methods that change it expect the caller to hold `lock` (the daemon also records
    source positions under it, so a snapshot pairs counters with exactly the positions they were read up to)."""

    def __init__(
        self,
        *,
        version: str,
        categories: Sequence[str],
        skip_reasons: Sequence[str],
        sender_domains: Sequence[str] = (),
        statuses: Callable[[], list[SourceStatus]] = list,
    ) -> None:
        self.lock = threading.Lock()
        self._version = version
        self.categories = tuple(categories)
        self._category_set = frozenset(self.categories)
        self._skip_reasons = tuple(skip_reasons)
        self.by_sender = bool(sender_domains)
        """Whether the two delivery counters carry a sender_domain label (fixed for the life of the process)."""
        self._sender_domains = frozenset(d.lower() for d in sender_domains)
        self._statuses = statuses
        self._labels: dict[tuple[str | None, ...], tuple[str, str, str, str, str, str]] = {}
        self.deliveries: dict[tuple[str, ...], float] = {}
        self.rejections: dict[tuple[str, ...], float] = {}
        self.connection_errors: dict[str, float] = dict.fromkeys(CONNECTION_ERROR_KINDS, 0.0)
        self.last_rejection: dict[str, float] = dict.fromkeys(self.categories, 0.0)
        self.last_delivery = 0.0
        self.consecutive = 0
        self.lines: dict[str, float] = {}
        self.bytes: dict[str, float] = {}
        self.skipped: dict[tuple[str, str], float] = {}
        self.rotations: dict[tuple[str, str], float] = {}
        self.source_errors: dict[str, float] = {}
        self.state_write_errors = 0.0
        self.reload_successful = 1.0
        self.reload_success_time = time.time()
        self._recent: deque[RecentRejection] = deque(maxlen=RECENT_REJECTIONS)
        """Reply texts as logged: redacted when they leave the store (redacting every event would cost more
        than the rest of counting)."""
        self._zero_delivery_series()

    # Zero series: dashboards and alerts see every status and category from the first scrape.
    def _zero_delivery_series(self) -> None:
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
        for reason in self._skip_reasons:
            self.skipped.setdefault((source, reason), 0.0)
        for kind in ROTATION_KINDS:
            self.rotations.setdefault((source, kind), 0.0)

    def set_sender_domains(self, domains: Sequence[str]) -> None:
        """Replaces the allowlist (a reload); turning the label on or off needs a restart."""
        self._sender_domains = frozenset(d.lower() for d in domains)
        self._zero_delivery_series()

    def _sender_label(self, sender: str | None) -> str:
        if not sender:
            return OTHER
        domain = sender.rpartition("@")[2].lower()
        return domain if domain in self._sender_domains else OTHER

    def observe(self, event: Event) -> None:
        """Counts one classified event."""
        delivery = event.delivery
        when = delivery.timestamp if delivery.timestamp is not None else time.time()
        sender = (self._sender_label(delivery.sender),) if self.by_sender else ()
        if delivery.scope != "recipient":
            # Connection-scope lines (Postfix trying the next MX, Exim's host line) repeat what the recipient
            # outcome line will say: counting them too would count one deferral several times.
            return
        if delivery.connection_error is not None:
            kind = delivery.connection_error if delivery.connection_error in self.connection_errors else OTHER
            self.connection_errors[kind] += 1
        status = delivery.status
        if status is not None and status in STATUSES:
            key = (status, *sender)
            self.deliveries[key] = self.deliveries.get(key, 0.0) + 1
            if when > self.last_delivery:
                self.last_delivery = when
            if status == "sent":
                self.consecutive = 0
        verdict = event.verdict
        if verdict is None:
            return
        reply = event.reply
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
            labels = self._rejection_labels(*raw)
            if len(self._labels) >= LABEL_CACHE_SIZE:
                self._labels.clear()
            self._labels[raw] = labels
        category, reason, code, enhanced, severity, origin = labels
        rkey = (category, reason, code, enhanced, severity, origin, *sender)
        if rkey not in self.rejections and len(self.rejections) >= MAX_REJECTION_SERIES:
            rkey = (category, OTHER, OTHER, OTHER, severity, origin, *sender)
        self.rejections[rkey] = self.rejections.get(rkey, 0.0) + 1
        self.consecutive += 1
        if when > self.last_rejection.get(category, 0.0):
            self.last_rejection[category] = when
        text = reply.text[:500] if reply is not None else ""
        self._recent.append(RecentRejection(when, category, reason, code, enhanced, text))

    def _rejection_labels(
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
        key = (source, reason if reason in self._skip_reasons else OTHER)
        self.skipped[key] = self.skipped.get(key, 0.0) + 1

    def read(self, source: str, lines: int, nbytes: int) -> None:
        self.lines[source] = self.lines.get(source, 0.0) + lines
        self.bytes[source] = self.bytes.get(source, 0.0) + nbytes

    def rotated(self, source: str, kind: str) -> None:
        key = (source, kind)
        self.rotations[key] = self.rotations.get(key, 0.0) + 1

    def source_error(self, source: str) -> None:
        self.source_errors[source] = self.source_errors.get(source, 0.0) + 1

    # -- persistence --

    def dump(self) -> dict[str, Any]:
        """The counter values as JSON-able data (caller holds the lock)."""
        sender = ("sender_domain",) if self.by_sender else ()
        return {
            "deliveries": [
                [dict(zip(("status", *sender), k, strict=True)), v] for k, v in self.deliveries.items()
            ],
            "rejections": [
                [dict(zip((*REJECTION_LABELS, *sender), k, strict=True)), v]
                for k, v in self.rejections.items()
            ],
            "connection_errors": dict(self.connection_errors),
            "last_rejection": dict(self.last_rejection),
            "last_delivery": self.last_delivery,
            "consecutive": self.consecutive,
            "lines": dict(self.lines),
            "bytes": dict(self.bytes),
            "skipped": [[k[0], k[1], v] for k, v in self.skipped.items()],
            "rotations": [[k[0], k[1], v] for k, v in self.rotations.items()],
            "source_errors": dict(self.source_errors),
            "state_write_errors": self.state_write_errors,
            "recent": [
                [r.timestamp, r.category, r.reason, r.code, r.enhanced_code, r.text] for r in self.recent()
            ],
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Continues from saved counter values (a restart must not reset counters)."""
        sender = ("sender_domain",) if self.by_sender else ()
        for labels, value in data.get("deliveries", []):
            key = tuple(str(labels.get(n, OTHER)) for n in ("status", *sender))
            self.deliveries[key] = self.deliveries.get(key, 0.0) + float(value)
        for labels, value in data.get("rejections", []):
            key = tuple(str(labels.get(n, OTHER)) for n in (*REJECTION_LABELS, *sender))
            self.rejections[key] = self.rejections.get(key, 0.0) + float(value)
        for kind, value in data.get("connection_errors", {}).items():
            self.connection_errors[kind] = float(value)
        for category, value in data.get("last_rejection", {}).items():
            self.last_rejection[category] = float(value)
        self.last_delivery = float(data.get("last_delivery", 0.0))
        self.consecutive = int(data.get("consecutive", 0))
        self.lines.update({k: float(v) for k, v in data.get("lines", {}).items()})
        self.bytes.update({k: float(v) for k, v in data.get("bytes", {}).items()})
        self.source_errors.update({k: float(v) for k, v in data.get("source_errors", {}).items()})
        for source, reason, value in data.get("skipped", []):
            self.skipped[(source, reason)] = float(value)
        for source, kind, value in data.get("rotations", []):
            self.rotations[(source, kind)] = float(value)
        self.state_write_errors = float(data.get("state_write_errors", 0.0))
        for item in data.get("recent", []):
            self._recent.append(RecentRejection(float(item[0]), *(str(x) for x in item[1:6])))

    def recent(self) -> list[RecentRejection]:
        """The latest rejections, oldest first, reply texts redacted (caller holds the lock)."""
        return [replace(r, text=redact(r.text)) for r in self._recent]

    # -- exposition --

    def collect(self) -> Iterator[Metric]:
        """The metric families, built under the lock so one scrape is one consistent snapshot."""
        statuses = self._statuses()
        with self.lock:
            families = list(self._families(statuses))
        yield from families

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def _families(self, statuses: list[SourceStatus]) -> Iterator[Metric]:
        sender = ["sender_domain"] if self.by_sender else []
        info = GaugeMetricFamily(
            "gmail_exporter_build_info", "Version of the exporter; the value is always 1.", labels=["version"]
        )
        info.add_metric([self._version], 1)
        yield info
        yield _counter(
            "gmail_deliveries_total",
            "Delivery outcomes to Google hosts, one per recipient outcome line.",
            ["status", *sender],
            self.deliveries,
        )
        yield _counter(
            "gmail_rejections_total",
            "Recipient deliveries Google refused or deferred, by classification of its reply.",
            [*REJECTION_LABELS, *sender],
            self.rejections,
        )
        yield _counter(
            "gmail_connection_errors_total",
            "Deferrals to Google with no reply from Google (timeout, refused, lost connection, TLS, DNS).",
            ["kind"],
            {(k,): v for k, v in self.connection_errors.items()},
        )
        yield _gauge(
            "gmail_last_rejection_timestamp_seconds",
            "Log time of the latest rejection in each category (0: none yet).",
            ["category"],
            {(k,): v for k, v in self.last_rejection.items()},
        )
        yield _gauge(
            "gmail_last_delivery_timestamp_seconds",
            "Log time of the latest delivery outcome to Google (0: none yet).",
            [],
            {(): self.last_delivery},
        )
        yield _gauge(
            "gmail_consecutive_rejections",
            "Rejections since the last accepted delivery (0 after a sent).",
            [],
            {(): float(self.consecutive)},
        )
        yield _counter(
            "gmail_exporter_lines_total",
            "Lines read per source.",
            ["source"],
            {(k,): v for k, v in self.lines.items()},
        )
        yield _counter(
            "gmail_exporter_bytes_total",
            "Bytes read per source.",
            ["source"],
            {(k,): v for k, v in self.bytes.items()},
        )
        yield _counter(
            "gmail_exporter_lines_skipped_total",
            "Lines not analysed: too_long, not_text, or unparseable (a Google line no parser understood).",
            ["source", "reason"],
            self.skipped,
        )
        yield _counter(
            "gmail_exporter_log_rotations_total",
            "Rotations of followed files: rename, truncate (copytruncate), recreate.",
            ["source", "kind"],
            self.rotations,
        )
        yield _counter(
            "gmail_exporter_source_errors_total",
            "Failures of a source that the exporter retries (journalctl exiting, read errors).",
            ["source"],
            {(k,): v for k, v in self.source_errors.items()},
        )
        yield _gauge(
            "gmail_exporter_log_offset_bytes",
            "Offset up to which a followed file has been read.",
            ["source"],
            {(s.name,): float(s.offset) for s in statuses},
        )
        yield _gauge(
            "gmail_exporter_log_size_bytes",
            "Size of a followed file at the last look.",
            ["source"],
            {(s.name,): float(s.size) for s in statuses},
        )
        yield _gauge(
            "gmail_exporter_last_line_timestamp_seconds",
            "Unix time at which a source last delivered a line (0: none yet).",
            ["source"],
            {(s.name,): s.last_read for s in statuses},
        )
        yield _counter(
            "gmail_exporter_state_write_errors_total",
            "Failed writes of the state file (the exporter keeps serving).",
            [],
            {(): self.state_write_errors},
        )
        yield _gauge(
            "gmail_exporter_config_last_reload_successful",
            "1 if the last configuration load succeeded, else 0.",
            [],
            {(): self.reload_successful},
        )
        yield _gauge(
            "gmail_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.",
            [],
            {(): self.reload_success_time},
        )

    # -- landing page --

    def by_category(self) -> dict[str, float]:
        """Rejections per category (caller holds the lock)."""
        totals = dict.fromkeys(self.categories, 0.0)
        for key, value in self.rejections.items():
            totals[key[0]] = totals.get(key[0], 0.0) + value
        return totals


def _counter(name: str, doc: str, labels: list[str], values: dict[Any, float]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in values.items():
        family.add_metric(list(key), value)
    return family


def _gauge(name: str, doc: str, labels: list[str], values: dict[Any, float]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in values.items():
        family.add_metric(list(key), value)
    return family
