"""Our exporter under measurement: `report` over the files, and the daemon following a file."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Final

from bench import promtext
from bench.generate import REPO, Truth
from bench.measure import Check, Counts, Measure, append_and_wait, as_ints, file_lines, fresh, percentile
from bench.procs import Server, cpu_seconds, free_port, memory_kb, run_timed, thread_runtimes
from exporter.rules import CATEGORIES, load_rules

EXPORTER: Final = (sys.executable, "-m", "exporter")


def report(path: Path, truth: Truth, repeat: int, label: str, jobs: int | None = None) -> Measure:
    """`report --format json` over one file (with `--jobs` when given): lines/s from spawn to exit, and its
    counts."""
    lines = file_lines(path)
    flags = [] if jobs is None else ["--jobs", str(jobs)]
    measure = Measure(f"report ({label}{', --jobs ' + str(jobs) if jobs else ''})", "lines/s")
    rss: list[int] = []
    data: dict[str, object] = {}
    for _ in range(repeat):
        done = run_timed([*EXPORTER, "report", "--format", "json", *flags, str(path)], cwd=REPO)
        if done.returncode != 0:
            raise RuntimeError(f"report failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
        data = json.loads(done.stdout)
        measure.samples.append(lines / done.seconds)
        rss.append(done.max_rss_kb)
    deliveries = data["deliveries"]
    categories = data["rejections_by_category"]
    assert isinstance(deliveries, dict) and isinstance(categories, dict)
    measure.checks = [
        Check("lines read", {"lines": lines}, {"lines": int(str(data["lines"]))}),
        Check("deliveries by status", as_ints(truth.deliveries), as_ints(deliveries)),
        Check("rejections by category", as_ints(truth.categories), as_ints(categories)),
    ]
    measure.extra = {"lines": lines, "peak_rss_mb": max(rss) / 1024}
    return measure


def floor(path: Path, repeat: int) -> Measure:
    """bench/floor.py over one file: reading and the byte-level prefilter only, what a pure-Python `report` cannot
    go below; lines/s from spawn to exit, like `report`."""
    lines = file_lines(path)
    measure = Measure("pure-Python floor (read + prefilter, no parsing)", "lines/s")
    data: dict[str, int] = {}
    for _ in range(repeat):
        done = run_timed([sys.executable, "-m", "bench.floor", str(path)], cwd=REPO)
        if done.returncode != 0:
            raise RuntimeError(f"floor failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
        data = json.loads(done.stdout)
        measure.samples.append(lines / done.seconds)
    measure.checks = [Check("lines read", {"lines": lines}, {"lines": data["lines"]})]
    measure.extra = {"lines": lines, "candidate_lines": data["candidates"]}
    return measure


def deliveries(text: str) -> Counts:
    return promtext.by_label(text, "gmail_deliveries_total", "status")


def categories(text: str) -> Counts:
    return promtext.by_label(text, "gmail_rejections_total", "category")


def lines_read(text: str) -> float:
    return promtext.total(text, "gmail_exporter_lines_total")


def _lines_read(text: str) -> Counts:
    return {"lines": lines_read(text)}


class Daemon(Server):
    """`gmail-rejection-exporter run` following one file, with its own state file and port."""

    def __init__(self, workdir: Path, log_path: Path) -> None:
        port = free_port()
        # State and output live away from the followed file: the daemon watches the log's directory, and its
        # own state writes there would wake it.
        run = workdir / "run"
        run.mkdir(parents=True, exist_ok=True)
        state = run / f"state-{port}.json"
        state.unlink(missing_ok=True)
        self.output_name = f"daemon-{port}.out"
        self._output = open(run / self.output_name, "wb")  # noqa: SIM115 - closed in stop()
        argv = [
            *EXPORTER,
            "run",
            "--log.path",
            str(log_path),
            "--web.listen-address",
            f"127.0.0.1:{port}",
            "--state.file",
            str(state),
        ]
        super().__init__(argv, port, self._output)
        # Until /-/ready says the log is open, not only /metrics: a file there at start is followed from its end as it
        # is when it is opened, so lines appended before that are not the daemon's to count.
        self.wait_ready(path="/-/ready")

    def stop(self) -> None:
        super().stop()
        self._output.close()


def daemon_throughput(
    workdir: Path, corpus: Path, truth: Truth, repeat: int, *, timeout: float
) -> tuple[Measure, Daemon, Path]:
    """A fresh daemon per round follows an empty file while the corpus is appended; lines/s from the first
    write to the scrape that shows every delivery. The last round's daemon is returned still running."""
    lines = file_lines(corpus)
    measure = Measure("daemon follow", "lines/s")
    hwm: list[int] = []
    expected = as_ints(truth.deliveries)
    daemon: Daemon | None = None
    target = workdir / "follow" / "followed.log"
    for round_ in range(repeat):
        if daemon is not None:
            daemon.stop()
        daemon = Daemon(workdir, fresh(target))
        followed = append_and_wait(daemon, corpus, target, deliveries, expected, timeout=timeout)
        measure.samples.append(lines / followed.seconds)
        hwm.append(memory_kb(daemon.pid, "VmHWM"))
        if round_ == repeat - 1 or not followed.complete:
            text = daemon.scrape()
            measure.checks = [
                Check("deliveries by status", expected, followed.counts),
                Check("rejections by category", as_ints(truth.categories), as_ints(categories(text))),
                Check("lines read", {"lines": lines}, {"lines": int(lines_read(text))}),
            ]
            if not followed.complete:
                measure.note = f"never reached the expected counts; output in run/{daemon.output_name}"
                break
    assert daemon is not None
    measure.extra = {"lines": lines, "peak_rss_mb": max(hwm) / 1024}
    return measure, daemon, target


def latency(daemon: Daemon, target: Path, lines: list[bytes], count: int, rate: float) -> Measure:
    """Single outcome lines appended at a steady rate; after each, /metrics is polled until the delivery
    counter moves. The latency includes the scrape that shows it, as a Prometheus server would see it."""
    measure = Measure("append to metric", "ms")
    current = promtext.total(daemon.scrape(), "gmail_deliveries_total")
    interval = 1.0 / rate
    late = 0
    fd = os.open(target, os.O_WRONLY | os.O_APPEND)
    try:
        next_at = time.perf_counter()
        for i in range(count):
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            else:
                late += 1
            os.write(fd, lines[i % len(lines)])
            written = time.perf_counter()
            while True:
                seen = promtext.total(daemon.scrape(), "gmail_deliveries_total")
                if seen > current:
                    break
                time.sleep(0.001)  # leave the daemon the CPU it needs to read the line
            measure.samples.append((time.perf_counter() - written) * 1000)
            current = seen
            next_at += interval
    finally:
        os.close(fd)
    measure.checks = [
        Check("one delivery per append", {"deliveries": count}, {"deliveries": len(measure.samples)})
    ]
    measure.extra = {
        "p50_ms": percentile(measure.samples, 50),
        "p99_ms": percentile(measure.samples, 99),
        "max_ms": max(measure.samples),
        "appends": count,
        "rate_per_s": rate,
        "late_appends": late,
    }
    return measure


def idle_cpu(pid: int, seconds: float) -> Measure:
    """CPU used by a process doing nothing for `seconds`, as % of one core."""
    measure = Measure("idle CPU", "% of one core")
    before, threads_before = cpu_seconds(pid), thread_runtimes(pid)
    time.sleep(seconds)
    used = cpu_seconds(pid) - before
    threads_after = thread_runtimes(pid)
    # The scheduler's own accounting, in ns per thread, next to the tick-sampled total.
    per_thread = {
        tid: (threads_after[tid][0] - run_ns, threads_after[tid][1] - wakeups)
        for tid, (run_ns, wakeups) in threads_before.items()
        if tid in threads_after
    }
    measure.samples.append(100 * used / seconds)
    measure.extra = {
        "seconds": seconds,
        "cpu_seconds": used,
        "scheduler_percent": round(100 * sum(ns for ns, _ in per_thread.values()) / 1e9 / seconds, 3),
        "threads": {
            str(tid): {"cpu_ms": round(ns / 1e6, 1), "wakeups": wakeups}
            for tid, (ns, wakeups) in sorted(per_thread.items())
        },
    }
    return measure


def scrape_time(daemon: Daemon, count: int) -> Measure:
    """How long one /metrics request takes once every category and reason has a series."""
    measure = Measure("scrape /metrics", "ms")
    rules = load_rules()
    text = ""
    for _ in range(count):
        start = time.perf_counter()
        text = daemon.scrape()
        measure.samples.append((time.perf_counter() - start) * 1000)
    rejections = promtext.samples(text, "gmail_rejections_total")
    measure.extra = {
        "p99_ms": percentile(measure.samples, 99),
        "bytes": len(text.encode()),
        "series": sum(1 for line in text.splitlines() if line and not line.startswith("#")),
        "rejection_series": len(rejections),
        "reasons_with_counts": len({dict(k).get("reason") for k, v in rejections.items() if v}),
        "categories_with_counts": len({dict(k).get("category") for k, v in rejections.items() if v}),
        "reasons_in_rules": len(rules.reasons),
        "categories_in_rules": len(CATEGORIES),
    }
    return measure


def long_rss(workdir: Path, corpus: Path, factor: int) -> Measure:
    """A daemon fed the corpus `factor` times over: resident memory after each pass (it must stay flat)."""
    lines = file_lines(corpus)
    measure = Measure(f"RSS after {factor * lines:,} lines", "MB")
    target = workdir / "follow-long" / "long.log"
    rss_mb: list[float] = []
    start = time.perf_counter()
    with Daemon(workdir, fresh(target)) as daemon:
        for k in range(1, factor + 1):
            followed = append_and_wait(daemon, corpus, target, _lines_read, {"lines": k * lines}, timeout=600)
            rss_mb.append(memory_kb(daemon.pid, "VmRSS") / 1024)
            measure.checks = [Check("lines read", {"lines": k * lines}, followed.counts)]
            if not followed.complete:
                measure.note = f"stalled in pass {k}; output in run/{daemon.output_name}"
                break
        hwm = memory_kb(daemon.pid, "VmHWM") / 1024
    seconds = time.perf_counter() - start
    target.unlink(missing_ok=True)
    measure.samples.append(rss_mb[-1])
    measure.extra = {
        "lines": factor * lines,
        "rss_mb_after_each_pass": [round(x, 1) for x in rss_mb],
        "growth_mb_after_first_pass": round(rss_mb[-1] - rss_mb[0], 1),
        "growth_mb_second_half": round(rss_mb[-1] - rss_mb[(len(rss_mb) - 1) // 2], 1),
        "peak_rss_mb": hwm,
        "lines_per_s": factor * lines / seconds,
    }
    return measure
