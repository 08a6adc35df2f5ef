"""kill -9 at random moments under load, a full disk and a read-only state directory.

A scraper polls /metrics all the time, as Prometheus would, without waiting for readiness: no counter it sees
may ever go down (Prometheus would take that for a reset and invent a burst of events), and after the last
restart every total equals what the log files hold.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import random
import threading
import time
from pathlib import Path

import pytest
from daemon_harness import Exporter, parse_metrics
from fault_load import Totals, as_dict, exporter_totals
from fault_rotation import Rotator, Writer
from support import remount, small_tmpfs


class Scraper:
    """Scrapes every 50 ms; remembers the highest value seen of each counter and every decrease."""

    def __init__(self) -> None:
        self.exporter: Exporter | None = None
        self.scrapes = 0
        self.failures = 0
        self.decreases: list[str] = []
        self._last: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            exporter = self.exporter
            if exporter is None:
                continue
            try:
                status, body = exporter.get("/metrics")
            except (OSError, http.client.HTTPException):
                # Down, not listening yet, or killed in the middle of its answer (IncompleteRead): Prometheus
                # records up=0 and no sample.
                self.failures += 1
                continue
            if status != 200:
                self.failures += 1
                continue
            self.scrapes += 1
            totals = exporter_totals(parse_metrics(body.decode()))
            current = {"lines": float(totals.lines)}
            current.update({f"deliveries:{k}": float(v) for k, v in totals.deliveries.items()})
            current.update({f"rejections:{k}": float(v) for k, v in totals.rejections.items()})
            for key, value in current.items():
                if value < self._last.get(key, 0.0):
                    self.decreases.append(f"{key}: {self._last[key]} -> {value} (port {exporter.port})")
                self._last[key] = value

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _state_parses(path: Path) -> dict[str, object]:
    saved = json.loads(path.read_text())
    assert (
        saved["version"] == 2 and isinstance(saved["positions"], dict) and isinstance(saved["metrics"], dict)
    )
    return saved


def _crash_loop(tmp_path: Path, kills: int) -> None:
    rng = random.Random(kills)
    log = tmp_path / "mail.log"
    log.touch()
    state = tmp_path / "state.json"
    args = ("--log.path", str(log), "--from-beginning")  # the writer starts first; with state, state wins
    writer = Writer(log).start()
    rotator = Rotator(log, writer)
    exporter = Exporter(tmp_path, *args).start()
    started = time.monotonic()
    with Scraper() as scraper:
        scraper.exporter = exporter
        try:
            exporter.wait_until(state.exists, 10, "the first state flush")
            for kill in range(kills):
                time.sleep(rng.uniform(0.2, 2.5))
                if kill % 3 == 1:
                    rotator.rotate(rng.choice(("rename", "gzip", "copytruncate")))
                exporter.kill9()
                _state_parses(state)
                time.sleep(rng.uniform(0.0, 0.5))  # written while down
                if kill % 4 == 2:
                    rotator.rotate(rng.choice(("rename", "gzip", "copytruncate")))  # rotated while down
                exporter = Exporter(tmp_path, *args).start(wait=False)
                scraper.exporter = exporter
        finally:
            writer.stop()
        with exporter:
            exporter.wait_ready()
            expected = rotator.expected()
            with contextlib.suppress(AssertionError):
                exporter.wait_for("gmail_exporter_lines_total", expected.lines, timeout=30)
            got = exporter_totals(exporter.scrape())
            time.sleep(0.3)
            scraper.exporter = None
            assert exporter.stop() == 0
    seconds = time.monotonic() - started
    print(
        f"\ncrash loop: {kills} kills -9 survived in {seconds:.1f} s, rotations {dict(rotator.done)}; "
        f"{writer.written} lines written, {expected.lines} in the files, {got.lines} counted; "
        f"{scraper.scrapes} scrapes ({scraper.failures} while down or starting), counter decreases "
        f"{len(scraper.decreases)}"
    )
    assert scraper.decreases == [], "\n".join(scraper.decreases)
    assert as_dict(got) == as_dict(expected)
    assert expected.lines == writer.written
    saved = _state_parses(state)
    assert saved["positions"][str(log)]["offset"] == log.stat().st_size
    assert sorted(p.name for p in tmp_path.glob(".state-*")) == []  # no temporary file left behind


def test_kill_9_at_random_moments_under_load(tmp_path: Path) -> None:
    _crash_loop(tmp_path, kills=5)


@pytest.mark.slow
def test_kill_9_twenty_times_under_load(tmp_path: Path) -> None:
    _crash_loop(tmp_path, kills=20)


def _fill(directory: Path) -> Path:
    """Fills a filesystem to the last block; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(10_000):
            try:
                os.write(fd, b"\0" * 4096)
            except OSError as err:
                assert err.errno == errno.ENOSPC
                break
    finally:
        os.close(fd)
    return filler


def _write_trouble(tmp_path: Path, break_it: object, repair: object, symptom: str, failures: int) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    with small_tmpfs(tmp_path / "state") as state_dir:
        state = state_dir / "state.json"
        writer = Writer(log, lines_per_block=20, pause=0.02)
        with Exporter(tmp_path, "--log.path", str(log), state_file=state) as exporter:
            writer.start()
            try:
                exporter.wait_until(state.exists, 10, "the first state flush")
                assert callable(break_it) and callable(repair)
                break_it(state_dir)
                exporter.wait_until(
                    lambda: exporter.value("gmail_exporter_state_write_errors_total") >= 2,
                    15,
                    "failed writes",
                )
                before = _state_parses(state)  # the last good state is still whole
                lines = exporter.value("gmail_exporter_lines_total")
                exporter.wait_until(
                    lambda: exporter.value("gmail_exporter_lines_total") > lines, 5, "progress"
                )
                repair(state_dir)
                exporter.wait_until(
                    lambda: _state_parses(state)["written_at"] > before["written_at"],
                    15,
                    "a write after repair",
                )
                errors = exporter.value("gmail_exporter_state_write_errors_total")
            finally:
                writer.stop()
            expected = Totals()
            expected.add(log.read_bytes())
            exporter.wait_for("gmail_exporter_lines_total", expected.lines, timeout=15)
            assert exporter.value("gmail_exporter_state_write_errors_total") == errors
            output = exporter.output()
            exporter.kill9()  # the state written after the repair is good enough to resume exactly
        with Exporter(tmp_path, "--log.path", str(log), state_file=state) as again:
            again.wait_for("gmail_exporter_lines_total", expected.lines, timeout=15)
            assert as_dict(exporter_totals(again.scrape())) == as_dict(expected)
    print(
        f"\nstate write trouble ({symptom}): {int(errors)} failed writes, then written again; {expected.lines} lines"
    )
    assert (
        f"ERROR exporter.state: cannot write state file {state} (still serving; will retry): {symptom}"
        in output
    )
    assert f"INFO exporter.state: state file {state} written again" in output
    assert output.count("cannot write state file") == 1  # once per episode, not at every retry


def test_disk_full_keeps_serving_and_writes_again_when_space_returns(tmp_path: Path) -> None:
    fillers: list[Path] = []
    _write_trouble(
        tmp_path,
        lambda d: fillers.append(_fill(d)),
        lambda d: fillers.pop().unlink(),
        "[Errno 28] No space left on device",
        failures=2,
    )


def test_read_only_state_directory_keeps_serving_and_writes_again_when_writable(tmp_path: Path) -> None:
    _write_trouble(
        tmp_path,
        lambda d: remount(d, "ro"),
        lambda d: remount(d, "rw"),
        "[Errno 30] Read-only file system",
        failures=1,
    )
