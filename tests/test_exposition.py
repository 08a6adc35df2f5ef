"""/metrics as exporter.metrics.exposition renders it is prometheus_client's own output byte for byte, in the text
format and in OpenMetrics, for every family the daemon serves (label values with quotes, backslashes, newlines
and non-ASCII text among them), after the values change, and for whatever it leaves to the library."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import pytest
from conftest import REPO
from prometheus_client import ProcessCollector
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector as PromCollector

from exporter import __version__
from exporter.analyse import SKIP_REASONS, Analyser
from exporter.events import Event
from exporter.metrics import Metrics
from exporter.metrics.exposition import Exposition
from exporter.metrics.families import Collector
from exporter.queue.collector import QueueCollector
from exporter.queue.reader import QueueSnapshot
from exporter.rules import CATEGORIES, load_rules
from exporter.sources import SourceStatus

HOSTILE = ['/var/log/"quoted"/mail.log', "C:\\logs\\mail.log", "two\nlines", "café/邮件.log", "trailing\\"]
ACCEPTS = [
    "",
    "text/plain",
    "text/plain;version=0.0.4",
    "application/openmetrics-text",
    "application/openmetrics-text; version=1.0.0",
    # What Prometheus 3 sends by default, and what Prometheus 2 sent.
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;"
    "version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "text/plain;version=1.0.0;escaping=underscores",
    # Escapings and versions rendered by the library alone.
    "text/plain;version=1.0.0;escaping=dots",
    "application/openmetrics-text;version=1.0.0;escaping=values",
    "application/openmetrics-text;version=2.0.0",
]


class Frozen(PromCollector):
    """Another collector's families as they were once: the same for both encoders."""

    def __init__(self, collector: PromCollector) -> None:
        self._metrics = list(collector.collect())

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


class Store:
    """A daemon's store with the events of the Postfix fixture log, a sender label, and sources with hostile
    names."""

    def __init__(self) -> None:
        self.metrics = Metrics(
            categories=CATEGORIES, skip_reasons=SKIP_REASONS, sender_domains=["example.org"]
        )
        analyser = Analyser(load_rules(), now=1_780_000_000)
        _, results = analyser.analyse_block((REPO / "tests/fixtures/logs/postfix.log").read_bytes())
        self.events = [r for r in results if isinstance(r, Event)]
        assert len(self.events) > 20
        for event in self.events[:-5]:
            self.metrics.observe(event)
        self.statuses = [SourceStatus(name, state="open", offset=10 * i) for i, name in enumerate(HOSTILE)]
        for i, name in enumerate(HOSTILE):
            self.metrics.read(name, 100 + i, 10_000 + i)
            self.metrics.skip(name, SKIP_REASONS[i % len(SKIP_REASONS)])
            self.metrics.rotated(name, "rename")
        self.collector = Collector(
            self.metrics, version=__version__, statuses=lambda: self.statuses, state_write_errors=lambda: 2.0
        )


def collectors(store: Store, queue: QueueSnapshot) -> list[PromCollector]:
    return [QueueCollector(lambda: queue), store.collector, Frozen(ProcessCollector(registry=None))]


def library(exposition: Exposition, accept: str) -> tuple[bytes, str]:
    encoder, content_type = choose_encoder(accept)
    return encoder(exposition.registry), content_type


@pytest.mark.parametrize("accept", ACCEPTS)
def test_the_page_is_the_librarys_byte_for_byte(accept: str) -> None:
    store = Store()
    queue = QueueSnapshot(True, oldest_age_seconds=1.5e7, duration_seconds=0.25, last_success_time=1.78e9)
    exposition = Exposition(collectors(store, queue))
    ours = exposition.render(accept)
    assert ours == library(exposition, accept)
    # The same series again, with new values and new series: nothing remembered is stale.
    for event in store.events[-5:]:
        store.metrics.observe(event)
    store.metrics.read("new.log", 7, 70)
    store.statuses.append(SourceStatus("new.log", state="missing"))
    again = exposition.render(accept)
    assert again == library(exposition, accept)
    assert again != ours


def test_hostile_labels_are_escaped_as_prometheus_reads_them() -> None:
    store = Store()
    exposition = Exposition([store.collector])
    body, content_type = exposition.render("")
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    lines = body.decode().splitlines()
    assert 'gmail_exporter_lines_total{source="/var/log/\\"quoted\\"/mail.log"} 100.0' in lines
    assert 'gmail_exporter_lines_total{source="C:\\\\logs\\\\mail.log"} 101.0' in lines
    assert 'gmail_exporter_lines_total{source="two\\nlines"} 102.0' in lines
    assert 'gmail_exporter_lines_total{source="café/邮件.log"} 103.0' in lines
    assert 'gmail_exporter_bytes_total{source="trailing\\\\"} 10004.0' in lines
    assert "# TYPE gmail_exporter_lines_total counter" in lines
    om, om_type = exposition.render("application/openmetrics-text; version=1.0.0")
    assert om_type.startswith("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert "# TYPE gmail_exporter_lines counter" in om.decode().splitlines()
    assert om.endswith(b"# EOF\n")


def test_families_it_does_not_render_go_to_the_library() -> None:
    store = Store()

    class Histogram(PromCollector):
        def collect(self) -> Iterator[Metric]:
            family = HistogramMetricFamily("gmail_test_seconds", "A histogram.", labels=["source"])
            family.add_metric(["a"], buckets=[("1.0", 2.0), ("+Inf", 3.0)], sum_value=4.5)
            yield family

    exposition = Exposition([store.collector, Histogram()])
    for accept in ("", "application/openmetrics-text; version=1.0.0"):
        assert exposition.render(accept) == library(exposition, accept)
        assert b"gmail_test_seconds_bucket" in exposition.render(accept)[0]


def cpu_seconds(render: Sequence[object], times: int) -> float:
    start = time.process_time()
    for _ in range(times):
        for call in render:
            call()  # type: ignore[operator]
    return time.process_time() - start


def test_a_scrape_costs_a_fraction_of_the_librarys() -> None:
    """Side by side, alternating, with a generous margin: the reason the module exists."""
    store = Store()
    exposition = Exposition([store.collector, ProcessCollector(registry=None)])
    ours = theirs = 0.0
    for _ in range(5):
        ours += cpu_seconds([lambda: exposition.render("")], 40)
        theirs += cpu_seconds([lambda: library(exposition, "")], 40)
    print(f"200 renders: {ours:.3f} s of CPU here, {theirs:.3f} s by the library")
    assert ours * 2 < theirs, (ours, theirs)
