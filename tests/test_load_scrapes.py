"""Twenty scrapers at once while the exporter ingests a burst of lines: no failed scrape, no line lost, and the
ingest not starved (compared with the same burst read without scrapers, side by side)."""

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
CHUNK = 6_000


class Scrapers:
    """SCRAPERS threads, each with one keep-alive connection (as Prometheus keeps one), scraping back to back."""

    def __init__(self, port: int, *, active: bool = True) -> None:
        self.port = port
        self.active = active
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
        for thread in self._threads if self.active else ():
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads if self.active else ():
            thread.join(15)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ingest(tmp_path: Path, lines: int, scraping: bool) -> tuple[float, int]:
    """Writes `lines` lines of the realistic mix at once and times the exporter until it has counted them all,
    with or without SCRAPERS scraping back to back meanwhile: (lines per second, scrapes answered)."""
    tmp_path.mkdir()
    log = tmp_path / "mail.log"
    log.touch()
    writes = lines // CHUNK
    pool = [block(i * CHUNK, CHUNK) for i in range(min(writes, 50))]  # pre-generated, reused in turn
    counted = []
    for data in pool:
        totals = Totals()
        totals.add(data)
        counted.append(totals)
    expected = Totals()
    for i in range(writes):
        expected += counted[i % len(pool)]
    with (
        Exporter(tmp_path, "--log.path", str(log)) as exporter,
        Scrapers(exporter.port, active=scraping) as scrapers,
    ):
        time.sleep(0.5)  # the scrapers are connected and scraping
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        started = time.monotonic()
        try:
            for i in range(writes):
                os.write(fd, pool[i % len(pool)])
        finally:
            os.close(fd)
        deadline = time.monotonic() + 120
        while exporter.value("gmail_exporter_lines_total") < expected.lines and time.monotonic() < deadline:
            time.sleep(0.02)
        took = time.monotonic() - started
        got = exporter_totals(parse_metrics(exporter.get("/metrics")[1].decode()))
    scrapes = len(scrapers.latencies)
    print(
        f"\n{'with' if scraping else 'without'} {SCRAPERS} scrapers: {expected.lines} lines read in {took:.1f} s "
        f"({expected.lines / took:.0f} lines/s), {scrapes} scrapes, {len(scrapers.failures)} failed"
        + (
            f", p50 {scrapers.percentile(0.5) * 1000:.1f} ms, p99 {scrapers.percentile(0.99) * 1000:.1f} ms"
            if scrapes
            else ""
        )
    )
    assert scrapers.failures == []
    assert as_dict(got) == as_dict(expected)
    return expected.lines / took, scrapes


def _load(tmp_path: Path, lines: int) -> None:
    alone, _ = _ingest(tmp_path / "alone", lines, scraping=False)
    scraped, scrapes = _ingest(tmp_path / "scraped", lines, scraping=True)
    # Measured side by side on the same machine: a busy or slow machine slows both. Scrapes cost the ingest some
    # CPU (they share a core with it); they must not starve it.
    assert scraped >= alone / 8, (scraped, alone)
    assert scrapes >= SCRAPERS * 3  # every scraper was answered, again and again, while lines poured in


def test_twenty_scrapers_while_ingesting_neither_fail_nor_starve_the_ingest(tmp_path: Path) -> None:
    _load(tmp_path, 300_000)


@pytest.mark.slow
def test_twenty_scrapers_while_ingesting_two_million_lines(tmp_path: Path) -> None:
    _load(tmp_path, 2_000_000)
