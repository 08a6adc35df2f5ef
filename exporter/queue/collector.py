"""The queue metric families, built from the reader's latest snapshot at each scrape.

When the last listing failed, the gmail_queue_* families are left out rather than repeating the last good values:
Prometheus then marks them stale, so graphs show a gap and GmailQueueBacklog stops evaluating stale numbers, while
gmail_exporter_queue_scrape_success says why (0) and the last-scrape timestamp how old the last good listing is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.queue.classify import UNANSWERED_KINDS
from exporter.queue.listing import UNREADABLE_REASONS
from exporter.queue.reader import QueueSnapshot
from exporter.queue.shared import CATEGORIES


class QueueCollector(Collector):
    """The queue reader's metrics; label values come from closed lists only."""

    def __init__(self, snapshot: Callable[[], QueueSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        yield GaugeMetricFamily(
            "gmail_exporter_queue_scrape_success",
            "Whether the last listing of the MTA's queue succeeded (1) or failed or timed out (0).",
            value=1.0 if snap.success else 0.0,
        )
        yield GaugeMetricFamily(
            "gmail_exporter_queue_scrape_duration_seconds",
            "How long the last listing of the MTA's queue took.",
            value=snap.duration_seconds,
        )
        yield GaugeMetricFamily(
            "gmail_exporter_queue_last_scrape_timestamp_seconds",
            "When the last successful listing of the MTA's queue ended (Unix time; 0: none yet).",
            value=snap.last_success_time,
        )
        yield _by_label(
            "gmail_exporter_queue_unreadable_entries",
            "Entries of the last queue listing that could not be read, by reason.",
            "reason",
            UNREADABLE_REASONS,
            snap.unreadable,
        )
        if not snap.success:
            return
        yield _by_label(
            "gmail_queue_recipients",
            "Queued recipients bound for Google whose last attempt got a Google reply, by the reply's category.",
            "category",
            CATEGORIES,
            snap.recipients,
        )
        yield _by_label(
            "gmail_queue_unanswered_recipients",
            "Queued recipients bound for Google whose last attempt got no reply from Google, by connection error "
            "kind; not_tried: not attempted yet.",
            "kind",
            UNANSWERED_KINDS,
            snap.unanswered,
        )
        yield GaugeMetricFamily(
            "gmail_queue_oldest_message_age_seconds",
            "Age of the oldest queued message bound for Google (0 when there is none).",
            value=snap.oldest_age_seconds,
        )


def _by_label(
    name: str, help_text: str, label: str, values: Sequence[str], counts: Mapping[str, int]
) -> Metric:
    """A gauge with one series per value of a closed list (0 for those the snapshot lacks)."""
    family = GaugeMetricFamily(name, help_text, labels=[label])
    for value in values:
        family.add_metric([value], float(counts.get(value, 0)))
    return family
