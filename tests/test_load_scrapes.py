"""Twenty scrapers at once while the exporter ingests at least 50,000 lines/s: no failed scrape, no line lost."""

from __future__ import annotations

import http.client
import os
import threading
import time
from pathlib import Path

import pytest
from daemon_harness import Exporter, parse_metrics
from fault_load import Totals, as_dict, block, exporter_totals

SCRAPERS = 20
TARGET_LINES_PER_SECOND = 50_000
WRITE_RATE = 60_000
"""The writer's pace: a little above the target, so the achieved rate shows whether the exporter keeps up."""
CHUNK = 6_000


class Scrapers:
    """SCRAPERS threads, each with one keep-alive connection (as Prometheus keeps one), scraping back to back."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(SCRAPERS)]

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                connection.request("GET", "/metrics", headers={"Accept-Encoding": "identity"})
                response = connection.getresponse()
                body = response.read()
                ok = response.status == 200 and b"gmail_exporter_lines_total" in body
                error = f"status {response.status}"
            except (OSError, http.client.HTTPException) as err:
                ok, error = False, repr(err)
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            elapsed = time.perf_counter() - started
            with self._lock:
                if ok:
                    self.latencies.append(elapsed)
                else:
                    self.failures.append(error)
        connection.close()

    def __enter__(self) -> Scrapers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _load(tmp_path: Path, seconds: float) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    writes = int(WRITE_RATE * seconds) // CHUNK
    pool = [block(i * CHUNK, CHUNK) for i in range(min(writes, 50))]  # pre-generated, reused in turn
    counted = []
    for data in pool:
        totals = Totals()
        totals.add(data)
        counted.append(totals)
    blocks = [pool[i % len(pool)] for i in range(writes)]
    expected = Totals()
    for i in range(writes):
        expected += counted[i % len(pool)]
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        assert exporter.proc is not None
        with Scrapers(exporter.port) as scrapers:
            fd = os.open(log, os.O_WRONLY | os.O_APPEND)
            started = time.monotonic()
            try:
                for i, data in enumerate(blocks):
                    os.write(fd, data)
                    pause = started + (i + 1) * CHUNK / WRITE_RATE - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
            finally:
                os.close(fd)
            written_in = time.monotonic() - started
            deadline = time.monotonic() + 60
            while (
                exporter.value("gmail_exporter_lines_total") < expected.lines and time.monotonic() < deadline
            ):
                time.sleep(0.02)
            ingested_in = time.monotonic() - started
        rate = expected.lines / ingested_in
        got = exporter_totals(parse_metrics(exporter.get("/metrics")[1].decode()))
        scrapes = len(scrapers.latencies)
        p50, p99 = scrapers.percentile(0.50), scrapers.percentile(0.99)
        print(
            f"\nload: {expected.lines} lines written in {written_in:.1f} s, all read in {ingested_in:.1f} s "
            f"({rate:.0f} lines/s) with {SCRAPERS} scrapers: {scrapes} scrapes ({scrapes / ingested_in:.0f}/s), "
            f"{len(scrapers.failures)} failed, p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"max {max(scrapers.latencies) * 1000:.1f} ms"
        )
    assert scrapers.failures == []
    assert as_dict(got) == as_dict(expected)
    assert rate >= TARGET_LINES_PER_SECOND
    assert scrapes >= SCRAPERS * seconds  # each scraper got at least one answer a second


def test_twenty_scrapers_while_ingesting_50k_lines_per_second(tmp_path: Path) -> None:
    _load(tmp_path, 10)


@pytest.mark.slow
def test_twenty_scrapers_for_60_s_while_ingesting_50k_lines_per_second(tmp_path: Path) -> None:
    _load(tmp_path, 60)
