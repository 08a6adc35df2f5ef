"""The metric families served from the store: one table row per family (name, help, labels, values), read under
the store's lock so that one scrape is one consistent snapshot."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.metrics.store import REJECTION_LABELS, Metrics
from exporter.sources import SOURCE_STATES, SourceStatus

Values = dict[Any, float]
"""Label values (a tuple in the order of the family's labels) -> sample value."""


@dataclass(frozen=True)
class View:
    """What a scrape reads: the store (lock held), the sources' statuses and the exporter's own state."""

    metrics: Metrics
    statuses: list[SourceStatus]
    version: str
    state_write_errors: float


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    labels: Callable[[Metrics], list[str]]
    values: Callable[[View], Values]
    counter: bool = False


def _sender(m: Metrics) -> list[str]:
    return ["sender_domain"] if m.by_sender else []


def _none(m: Metrics) -> list[str]:
    return []


def _source(m: Metrics) -> list[str]:
    return ["source"]


def _per_source(get: Callable[[SourceStatus], float]) -> Callable[[View], Values]:
    return lambda v: {(s.name,): get(s) for s in v.statuses}


def _keyed(values: dict[str, float]) -> Values:
    return {(k,): v for k, v in values.items()}


def _source_states(v: View) -> Values:
    return {(s.name, state): float(s.state == state) for s in v.statuses for state in SOURCE_STATES}


FAMILIES: tuple[Family, ...] = (
    Family("gmail_exporter_build_info", "Version of the exporter; the value is always 1.",
           lambda m: ["version"], lambda v: {(v.version,): 1.0}),
    Family("gmail_deliveries_total", "Delivery outcomes to Google hosts, one per recipient outcome line.",
           lambda m: ["status", *_sender(m)], lambda v: v.metrics.deliveries, counter=True),
    Family("gmail_rejections_total",
           "Recipient deliveries Google refused or deferred, by classification of its reply.",
           lambda m: [*REJECTION_LABELS, *_sender(m)], lambda v: v.metrics.rejections, counter=True),
    Family("gmail_connection_errors_total",
           "Deferrals to Google with no reply from Google (timeout, refused, lost connection, TLS, DNS).",
           lambda m: ["kind"], lambda v: _keyed(v.metrics.connection_errors), counter=True),
    Family("gmail_last_rejection_timestamp_seconds",
           "Log time of the latest rejection in each category (0: none yet; never later than when it was read).",
           lambda m: ["category"], lambda v: _keyed(v.metrics.last_rejection)),
    Family("gmail_last_delivery_timestamp_seconds",
           "Log time of the latest delivery outcome to Google (0: none yet; never later than when it was read).",
           _none, lambda v: {(): v.metrics.last_delivery}),
    Family("gmail_consecutive_rejections", "Rejections since the last accepted delivery (0 after a sent).",
           _none, lambda v: {(): float(v.metrics.consecutive)}),
    Family("gmail_exporter_lines_total", "Lines read per source.",
           _source, lambda v: _keyed(v.metrics.lines), counter=True),
    Family("gmail_exporter_bytes_total", "Bytes read per source.",
           _source, lambda v: _keyed(v.metrics.bytes), counter=True),
    Family("gmail_exporter_lines_skipped_total",
           "Lines not analysed: too_long, not_text, or unparseable (a Google line no parser understood).",
           lambda m: ["source", "reason"], lambda v: v.metrics.skipped, counter=True),
    Family("gmail_exporter_log_rotations_total",
           "Rotations of followed files: rename, truncate (copytruncate or a cut), recreate.",
           lambda m: ["source", "kind"], lambda v: v.metrics.rotations, counter=True),
    Family("gmail_exporter_source_errors_total",
           "Failures of a source that the exporter retries (cannot open, journalctl exiting, read errors).",
           _source, lambda v: _keyed(v.metrics.source_errors), counter=True),
    Family("gmail_exporter_source_up",
           "1 while a source is open and read, 0 while it is missing, unreadable, not a file or failing.",
           _source, _per_source(lambda s: float(s.state in ("open", "finished")))),
    Family("gmail_exporter_source_state",
           "The state of each source: 1 for the current one (opening, open, missing, permission_denied, "
           "not_regular_file, error, finished).",
           lambda m: ["source", "state"], _source_states),
    Family("gmail_exporter_log_offset_bytes", "Offset up to which a followed file has been read.",
           _source, _per_source(lambda s: float(s.offset))),
    Family("gmail_exporter_log_size_bytes", "Size of a followed file at the last look.",
           _source, _per_source(lambda s: float(s.size))),
    Family("gmail_exporter_last_line_timestamp_seconds",
           "Unix time at which a source last delivered a line (0: none yet).",
           _source, _per_source(lambda s: s.last_read)),
    Family("gmail_exporter_state_write_errors_total",
           "Failed writes of the state file (the exporter keeps serving).",
           _none, lambda v: {(): v.state_write_errors}, counter=True),
    Family("gmail_exporter_config_last_reload_successful",
           "1 if the last configuration load succeeded, else 0.",
           _none, lambda v: {(): v.metrics.reload_successful}),
    Family("gmail_exporter_config_last_reload_success_timestamp_seconds",
           "Unix time of the last successful configuration load.",
           _none, lambda v: {(): v.metrics.reload_success_time}),
)  # fmt: skip


Row = tuple[str, str, bool, list[str], Values]
"""A family as a scrape reads it: name, help, whether a counter, label names, values."""


def build(row: Row) -> Metric:
    name, help_text, counter, labels, values = row
    kind = CounterMetricFamily if counter else GaugeMetricFamily
    metric: CounterMetricFamily | GaugeMetricFamily = kind(name, help_text, labels=labels)
    for key, value in values.items():
        metric.add_metric(list(key), value)
    return metric


class Collector:
    """The prometheus_client collector of the exporter's families; exporter.metrics.exposition reads its rows()
    without the library's Metric objects."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        version: str,
        statuses: Callable[[], list[SourceStatus]],
        state_write_errors: Callable[[], float],
    ) -> None:
        self._metrics = metrics
        self._version = version
        self._statuses = statuses
        self._state_write_errors = state_write_errors

    def rows(self) -> list[Row]:
        """Every family, its values copied under the store's lock: one consistent snapshot."""
        statuses = self._statuses()
        with self._metrics.lock:
            view = View(self._metrics, statuses, self._version, float(self._state_write_errors()))
            return [
                (f.name, f.help, f.counter, f.labels(view.metrics), dict(f.values(view))) for f in FAMILIES
            ]

    def collect(self) -> Iterator[Metric]:
        yield from [build(row) for row in self.rows()]

    def describe(self) -> Iterator[Metric]:
        return iter(())
